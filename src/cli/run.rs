//! One CLI run: arguments → configuration → SDK → the caller's account → confirmation →
//! the same handler as the Lambda → output → exit code.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::error::ErrorKind;
use clap::Parser;
use serde_json::{json, Map, Value};

use super::args::{ApplyArgs, Cli, Command, Common, DeleteArgs, OutputFormat, PlanArgs};
use super::confirm::{self, Answer, Deletion};
use super::output;
use super::progress::Bar;
use crate::aws::{self, sts, SdkOverrides};
use crate::config::{Caller, Config, ConfigError};
use crate::engine::Invocation;
use crate::handler::{aws_handler, AwsHandler, Response};
use crate::ports::Progress;

/// Everything done (deleted, already gone, previewed, kept on purpose).
pub const EXIT_OK: u8 = 0;
/// Some ARNs failed, were rejected, were not attempted or went to the dead-letter queue.
pub const EXIT_ATTENTION: u8 = 1;
/// A usage or configuration error: nothing was deleted.
pub const EXIT_USAGE: u8 = 2;
/// The operator declined at the confirmation: nothing was deleted.
pub const EXIT_DECLINED: u8 = 3;

/// The name the function ARN of a CLI run carries (the Lambda's own is its real ARN).
const FUNCTION_NAME: &str = "imagebuilder-reaper-cli";
/// A CLI run has no Lambda deadline; this one is never reached in practice.
const NO_DEADLINE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why a run ends before (or instead of) a report.
#[derive(Debug)]
enum Stop {
    Usage(String),
    Declined,
}

/// A command as the handler's request, with what the confirmation shows.
struct Request {
    event: Value,
    /// The command is a preview: nothing will be deleted.
    dry_run: bool,
    /// A real delete needs the operator's yes; `None` for `plan`.
    asks: Option<Pending>,
    /// Standard input carries the ARNs, so it cannot carry an answer.
    reads_stdin: bool,
    /// Where `plan --out` writes the plan.
    out: Option<std::path::PathBuf>,
}

/// What a real delete would touch, from the command's own input.
struct Pending {
    count: usize,
    regions: BTreeSet<String>,
    yes: bool,
}

/// Parses `args` (the program name first), runs the command and returns the exit code. Never
/// panics on any input; errors are one line on standard error.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return argument_error(&e),
    };
    init_logging();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let code = match runtime {
        Ok(rt) => rt.block_on(execute(cli)),
        Err(e) => Err(Stop::Usage(format!("cannot start the async runtime: {e}"))),
    };
    let code = match code {
        Ok(code) => code,
        Err(Stop::Usage(message)) => {
            eprintln!("imagebuilder-reaper: error: {message}");
            EXIT_USAGE
        }
        Err(Stop::Declined) => {
            eprintln!("imagebuilder-reaper: declined: nothing was deleted");
            EXIT_DECLINED
        }
    };
    let _ = std::io::stdout().flush();
    code
}

/// Help and version go to standard output (exit 0); a missing subcommand prints the help
/// (exit 2); anything else is one error line plus clap's tips (exit 2).
fn argument_error(e: &clap::Error) -> u8 {
    let code = argument_exit_code(e.kind());
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            code
        }
        _ => {
            let text = e.render().to_string();
            let mut lines = text.lines().filter(|l| !l.trim().is_empty());
            let first = lines.next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("imagebuilder-reaper: error: {first} (see --help)");
            for tip in lines.filter(|l| l.trim_start().starts_with("tip:")) {
                eprintln!("  {}", tip.trim());
            }
            code
        }
    }
}

/// Help and version are answers (0); everything else clap refuses is a usage error (2).
fn argument_exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => EXIT_OK,
        _ => EXIT_USAGE,
    }
}

/// Logs go to standard error, and only when asked for (`RUST_LOG`): standard output is the
/// report's, and a terminal shows the table and the progress bar.
fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        lambda_runtime::tracing::init_default_subscriber_with_writer(std::io::stderr);
    }
}

async fn execute(cli: Cli) -> Result<u8, Stop> {
    let mut config = configuration(&cli.common)?;
    let request = request(&cli.command, &cli.common)?;
    config.dry_run |= request.dry_run;
    let asks = request.asks.as_ref().filter(|p| !p.yes && !config.dry_run);
    // Before any call: a delete nobody can confirm calls nothing.
    if asks.is_some() && (request.reads_stdin || !confirm::can_ask()) {
        return Err(Stop::Usage(
            "refusing to delete without --yes when not on a terminal; preview with --dry-run, \
             or confirm with --yes"
                .into(),
        ));
    }
    let sdk = aws::load_sdk_config(SdkOverrides {
        profile: cli.common.profile.clone(),
        region: cli.common.regions.first().cloned(),
        ..SdkOverrides::default()
    })
    .await;
    let region = sdk.region().map(ToString::to_string).ok_or_else(|| {
        Stop::Usage("no region: pass --region, set AWS_REGION, or use a profile with one".into())
    })?;
    config.own_region = Some(region.clone());
    let identity = sts::caller_identity(&sdk).await.map_err(|e| {
        Stop::Usage(format!(
            "cannot identify the caller (STS GetCallerIdentity): {e}"
        ))
    })?;
    if let Some(pending) = asks {
        let deletion = Deletion {
            account: identity.account.clone(),
            regions: pending.regions.clone(),
            count: pending.count,
            output_resources: config.delete_output_resources.as_str().to_string(),
        };
        match confirm::ask(&deletion) {
            Ok(Answer::Confirmed) => {}
            Ok(Answer::Declined) | Err(_) => return Err(Stop::Declined),
        }
    }
    config.caller = Caller::Operator;
    // The operator's report is not a Lambda response: no 6 MB budget, every entry is kept.
    config.report_budget_bytes = usize::MAX;
    let handler = aws_handler(config, &sdk);
    let invocation = Invocation {
        request_id: request_id(),
        invoked_function_arn: format!(
            "arn:{}:lambda:{region}:{}:function:{FUNCTION_NAME}",
            identity.partition(),
            identity.account
        ),
        deadline: tokio::time::Instant::now() + NO_DEADLINE,
    };
    respond(&handler, &request, &invocation, cli.common.output).await
}

/// Runs the request through the handler and prints the outcome.
async fn respond(
    handler: &AwsHandler,
    request: &Request,
    invocation: &Invocation,
    format: OutputFormat,
) -> Result<u8, Stop> {
    let budget = handler.config().report_budget_bytes;
    let is_plan = request.event.get("plan").is_some();
    let bar = (!is_plan && std::io::stderr().is_terminal()).then(Bar::on_stderr);
    let progress = bar.as_ref().map(|b| b as &dyn Progress);
    // A plan request returns the plan; everything else (deletes, plan executions) a report.
    let result = if is_plan {
        handler
            .respond(&request.event, invocation)
            .await
            .map(|response| match response {
                Response::Plan(plan) => plan.to_string(),
                Response::Report(report) => report.to_json(budget),
            })
    } else {
        handler
            .handle_observed(&request.event, invocation, progress)
            .await
            .map(|report| report.to_json(budget))
    };
    if let Some(bar) = &bar {
        bar.finish();
    }
    let json = result.map_err(|e| Stop::Usage(format!("{}: {e}", e.error_type())))?;
    let value: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
    if let (true, Some(out)) = (is_plan, &request.out) {
        std::fs::write(out, format!("{json}\n"))
            .map_err(|e| Stop::Usage(format!("cannot write {}: {e}", out.display())))?;
        eprintln!("plan written to {}", out.display());
    }
    let text = match (format, is_plan) {
        (OutputFormat::Json, _) => format!("{json}\n"),
        (OutputFormat::Table, true) => output::plan_table(&value),
        (OutputFormat::Table, false) => output::report_table(&value),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    Ok(if !is_plan && output::report_needs_attention(&value) {
        EXIT_ATTENTION
    } else {
        EXIT_OK
    })
}

/// The configuration of the environment, with the flags in place of their variables; a bad
/// flag value is named by its flag.
fn configuration(common: &Common) -> Result<Config, Stop> {
    let flags: [(&str, &str, Option<&String>); 3] = [
        (
            "MAX_CONCURRENCY",
            "--max-concurrency",
            common.max_concurrency.as_ref(),
        ),
        (
            "DELETE_OUTPUT_RESOURCES",
            "--delete-output-resources",
            common.delete_output_resources.as_ref(),
        ),
        (
            "DEAD_LETTER_QUEUE_URL",
            "--dead-letter-queue-url",
            common.dead_letter_queue_url.as_ref(),
        ),
    ];
    let lookup = |k: &str| {
        flags
            .iter()
            .find(|(var, _, v)| *var == k && v.is_some())
            .and_then(|(_, _, v)| v.cloned())
            .or_else(|| std::env::var(k).ok())
    };
    Config::from_lookup(lookup).map_err(|e: ConfigError| {
        let flag = flags
            .iter()
            .find(|(var, _, v)| *var == e.variable && v.is_some())
            .map(|(_, flag, _)| *flag);
        Stop::Usage(match flag {
            Some(flag) => format!("{flag} {:?} is not valid; expected {}", e.value, e.expected),
            None => e.to_string(),
        })
    })
}

fn request(command: &Command, common: &Common) -> Result<Request, Stop> {
    if !matches!(command, Command::Plan(_)) && common.regions.len() > 1 {
        return Err(Stop::Usage(
            "--region is given more than once; only `plan` scans several regions".into(),
        ));
    }
    match command {
        Command::Delete(a) => delete_request(a),
        Command::Plan(a) => Ok(plan_request(a, &common.regions)),
        Command::Apply(a) => apply_request(a),
    }
}

fn delete_request(a: &DeleteArgs) -> Result<Request, Stop> {
    let mut arns = a.arns.clone();
    let reads_stdin = a.from_file.as_deref() == Some(Path::new("-"));
    match &a.from_file {
        None if arns.is_empty() => {
            return Err(Stop::Usage(
                "name at least one ARN, or --from-file FILE (- for standard input)".into(),
            ))
        }
        None => {}
        Some(path) => arns.extend(arns_in(&read_input(path)?)),
    }
    let distinct: BTreeSet<&String> = arns.iter().collect();
    let pending = Pending {
        count: distinct.len(),
        regions: distinct.iter().filter_map(|a| region_of(a)).collect(),
        yes: a.yes,
    };
    Ok(Request {
        event: json!({"imageBuildVersionArns": arns, "dryRun": a.dry_run}),
        dry_run: a.dry_run,
        asks: Some(pending),
        reads_stdin,
        out: None,
    })
}

fn plan_request(a: &PlanArgs, regions: &[String]) -> Request {
    let mut plan = Map::new();
    let lists = [
        ("names", &a.names),
        ("regions", &regions.to_vec()),
        ("statuses", &a.statuses),
        ("excludeTagKeys", &a.exclude_tag_keys),
    ];
    for (key, list) in lists {
        if !list.is_empty() {
            plan.insert(key.into(), json!(list));
        }
    }
    if let Some(k) = a.keep_newest {
        plan.insert("keepNewest".into(), json!(k));
    }
    if let Some(d) = a.older_than_days {
        plan.insert("olderThanDays".into(), json!(d));
    }
    if a.allow_deleting_newest {
        plan.insert("allowDeletingNewest".into(), json!(true));
    }
    Request {
        event: json!({ "plan": plan }),
        dry_run: false,
        asks: None,
        reads_stdin: false,
        out: a.out.clone(),
    }
}

fn apply_request(a: &ApplyArgs) -> Result<Request, Stop> {
    let text = read_input(&a.plan)?;
    let plan: Value = serde_json::from_str(&text)
        .map_err(|e| Stop::Usage(format!("{} is not a plan (JSON): {e}", a.plan.display())))?;
    let listed = plan["delete"].as_array();
    let arns: Vec<&str> = listed
        .map(|d| {
            d.iter()
                .filter_map(|e| e["imageBuildVersionArn"].as_str())
                .collect()
        })
        .unwrap_or_default();
    let count = match listed {
        Some(_) => arns.len(),
        // A plan too large to travel inline carries only its summary and location.
        None => plan["summary"]["delete"].as_u64().unwrap_or(0) as usize,
    };
    let mut regions: BTreeSet<String> = arns.iter().filter_map(|a| region_of(a)).collect();
    if regions.is_empty() {
        let selected = plan["selection"]["regions"].as_array();
        regions.extend(
            selected
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(String::from)),
        );
    }
    Ok(Request {
        event: json!({ "executePlan": plan }),
        dry_run: a.dry_run,
        asks: Some(Pending {
            count,
            regions,
            yes: a.yes,
        }),
        reads_stdin: a.plan == Path::new("-"),
        out: None,
    })
}

/// A file's text, or standard input's for `-`.
fn read_input(path: &Path) -> Result<String, Stop> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|e| Stop::Usage(format!("cannot read {}: {e}", path.display())))?;
    Ok(text)
}

/// One ARN per line; blank lines and `#` comments (whole lines or line ends) are skipped.
pub fn arns_in(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The region field of an ARN-like string (the handler judges the rest).
fn region_of(arn: &str) -> Option<String> {
    arn.split(':')
        .nth(3)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
}

/// A request id for the run's log lines and the dead-letter messages' `source.id`.
fn request_id() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("cli-{ms}-{:08x}", fastrand::u32(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_files_skip_blank_lines_and_comments() {
        // GIVEN a file with a comment line, a blank line and a trailing comment
        let text = "# old builds\n\narn:a:1 \n  arn:b:2 # keep for now? no\n";
        // THEN only the two ARNs remain, trimmed
        assert_eq!(arns_in(text), ["arn:a:1", "arn:b:2"]);
    }

    #[test]
    fn every_argument_error_is_exit_2_and_help_is_exit_0() {
        // GIVEN no subcommand, an unknown flag, a bad --output and --help
        let code = |args: &[&str]| match Cli::try_parse_from(args) {
            Ok(_) => 99,
            Err(e) => argument_exit_code(e.kind()),
        };
        assert_eq!(code(&["imagebuilder-reaper"]), EXIT_USAGE);
        assert_eq!(
            code(&["imagebuilder-reaper", "delete", "--bogus"]),
            EXIT_USAGE
        );
        assert_eq!(
            code(&["imagebuilder-reaper", "--output", "xml", "delete"]),
            EXIT_USAGE
        );
        assert_eq!(code(&["imagebuilder-reaper", "--help"]), EXIT_OK);
    }

    #[test]
    fn common_options_may_follow_the_subcommand() {
        // WHEN --output and --region come after `delete`
        let cli = Cli::try_parse_from([
            "imagebuilder-reaper",
            "delete",
            "x",
            "--output",
            "json",
            "--region",
            "eu-west-1",
        ])
        .unwrap();
        // THEN they are the common options
        assert_eq!(cli.common.output, OutputFormat::Json);
        assert_eq!(cli.common.regions, ["eu-west-1"]);
    }
}
