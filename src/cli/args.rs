//! The command line: `delete`, `plan` and `apply`, with the options they share.
//!
//! Shared options are global, so they may come before or after the subcommand. Values the
//! configuration also reads from the environment are validated once, by the configuration.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  # Preview, then delete two build versions (asks for the account id on a terminal)
  imagebuilder-reaper delete --dry-run arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.2.0/3
  imagebuilder-reaper delete --from-file old-builds.txt --region us-east-1

  # Plan: keep the 3 newest builds of every image whose name starts with web-
  imagebuilder-reaper plan --name 'web-*' --keep-newest 3 --out plan.json

  # Apply the plan without a prompt (scripts, CI)
  imagebuilder-reaper apply plan.json --yes --output json

Exit codes: 0 everything done, 1 some ARNs failed or were rejected or dead-lettered,
2 usage or configuration error, 3 declined at the confirmation.";

/// Deletes EC2 Image Builder image build versions: the Lambda function's engine, run by hand.
#[derive(Debug, Parser)]
#[command(
    name = "imagebuilder-reaper",
    version,
    arg_required_else_help = true,
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub common: Common,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Delete the image build versions named by ARN, on the command line or in a file.
    #[command(after_help = "Example:\n  imagebuilder-reaper delete --dry-run \
        arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.2.0/3\n  \
        grep -v keep builds.txt | imagebuilder-reaper delete --from-file - --yes")]
    Delete(DeleteArgs),
    /// Select the build versions a retention policy would delete; deletes nothing.
    #[command(
        after_help = "Example:\n  imagebuilder-reaper plan --name 'web-*' --name api \
        --keep-newest 3 --older-than-days 30 --region us-east-1 --region eu-west-1 --out plan.json"
    )]
    Plan(PlanArgs),
    /// Execute a plan written by `plan --out`, checking each build for drift first.
    #[command(
        after_help = "Example:\n  imagebuilder-reaper apply plan.json --dry-run\n  \
        imagebuilder-reaper apply plan.json --yes"
    )]
    Apply(ApplyArgs),
}

/// `delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Image build version ARNs (arn:aws:imagebuilder:REGION:ACCOUNT:image/NAME/X.Y.Z/BUILD).
    #[arg(value_name = "ARN")]
    pub arns: Vec<String>,
    /// Also read ARNs from FILE, one per line (blank lines and # comments ignored); `-` is
    /// standard input.
    #[arg(long, value_name = "FILE|-")]
    pub from_file: Option<PathBuf>,
    /// Decide and report everything, delete nothing (never asks).
    #[arg(long)]
    pub dry_run: bool,
    /// Delete without asking for the account id (needed off a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Image names to scan, globs with * and ? (default: every image the account owns).
    #[arg(long = "name", value_name = "GLOB", num_args = 1..)]
    pub names: Vec<String>,
    /// Keep the K newest AVAILABLE builds of each image name.
    #[arg(long, value_name = "K")]
    pub keep_newest: Option<u64>,
    /// Keep builds created less than D days ago.
    #[arg(long, value_name = "D")]
    pub older_than_days: Option<u64>,
    /// Delete only builds in these statuses (AVAILABLE, FAILED, CANCELLED, DEPRECATED, DISABLED…).
    #[arg(long = "status", value_name = "S", num_args = 1..)]
    pub statuses: Vec<String>,
    /// Keep builds carrying this tag key (besides PROTECT_TAG_KEY).
    #[arg(long = "exclude-tag-key", value_name = "KEY", num_args = 1..)]
    pub exclude_tag_keys: Vec<String>,
    /// Let the newest AVAILABLE build of a name be deleted too.
    #[arg(long)]
    pub allow_deleting_newest: bool,
    /// Also write the plan to this file (the input of `apply`).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan written by `plan --out`.
    #[arg(value_name = "PLAN.json")]
    pub plan: PathBuf,
    /// Check and report everything, delete nothing (never asks).
    #[arg(long)]
    pub dry_run: bool,
    /// Delete without asking for the account id (needed off a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Options of every command.
#[derive(Debug, Args)]
pub struct Common {
    /// table: outcomes for people; json: exactly the function's report (or plan), nothing else.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,
    /// Image calls in flight at once (MAX_CONCURRENCY).
    #[arg(long, value_name = "N", global = true)]
    pub max_concurrency: Option<String>,
    /// none, amis, containers or all: also delete the image's AMIs, snapshots and ECR images
    /// (DELETE_OUTPUT_RESOURCES).
    #[arg(long, value_name = "MODE", global = true)]
    pub delete_output_resources: Option<String>,
    /// Send failures and rejections to this SQS queue (DEAD_LETTER_QUEUE_URL); without one
    /// they are only reported.
    #[arg(long, value_name = "URL", global = true)]
    pub dead_letter_queue_url: Option<String>,
    /// The named profile of the shared AWS config files (AWS_PROFILE).
    #[arg(long, value_name = "NAME", global = true)]
    pub profile: Option<String>,
    /// The region of the AWS clients (AWS_REGION); for `plan`, repeat it to scan several.
    #[arg(long = "region", value_name = "R", global = true)]
    pub regions: Vec<String>,
}

/// How the outcome is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}
