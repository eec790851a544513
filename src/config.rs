//! Configuration: the environment , read and validated once at init.
//!
//! [`Config::from_lookup`] is pure (it takes the lookup function) so every rule is unit
//! tested without touching the process environment. Per-invocation facts (the function's own
//! account and partition, from the invoked function ARN) are resolved by [`Config::guards`].

use std::time::Duration;

use crate::arn::{self, AllowList, Guards};
use crate::output_resources::mode::Mode;
use crate::retry::Backoff;

/// The validated configuration. Construct with [`Config::from_env`] (the binary) or
/// [`Config::from_lookup`] / [`Config::default`] (tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `DEAD_LETTER_QUEUE_URL`; `None`: failures are handed back to the caller.
    pub dead_letter_queue_url: Option<String>,
    /// `DRY_RUN`: decide and report everything, call no deleting API.
    pub dry_run: bool,
    /// `MAX_CONCURRENCY`: ARNs (hence image calls) in flight at once.
    pub max_concurrency: usize,
    /// `MAX_ATTEMPTS`: attempts per call for retryable errors.
    pub max_attempts: u32,
    /// `ALLOWED_ACCOUNT_IDS`.
    pub allowed_accounts: AccountPolicy,
    /// `ALLOWED_REGIONS` (`Any` when unset or `*`).
    pub allowed_regions: AllowList,
    /// `PROTECT_TAG_KEY`: when set, GetImage first and skip images carrying this tag key.
    pub protect_tag_key: Option<String>,
    /// `DEADLINE_MARGIN_MS`.
    pub deadline_margin: Duration,
    /// `AWS_REGION`: only used to find the function's partition when the invoked function
    /// ARN does not say it.
    pub own_region: Option<String>,
    /// `AWS_LAMBDA_FUNCTION_NAME`: the metrics dimension (none when unset).
    pub function_name: Option<String>,
    /// Backoff between attempts (not configurable by environment).
    pub backoff: Backoff,
    /// Report size budget in bytes (Lambda's response limit is 6 MB; not configurable by
    /// environment, tests shrink it).
    pub report_budget_bytes: usize,
    /// `DELETE_OUTPUT_RESOURCES`: which of the image's AMIs (+ snapshots) and ECR images to
    /// delete before DeleteImage; overridable per invocation.
    pub delete_output_resources: Mode,
    /// `REQUIRE_COMPLETE_CLEANUP`: output resources left behind on purpose (another account,
    /// a snapshot in use) block DeleteImage too.
    pub require_complete_cleanup: bool,
    /// `IN_USE_GRACE_DAYS`: an AMI launched more recently than this many days keeps its image.
    pub in_use_grace_days: u32,
    /// `PLAN_BUCKET`: the S3 bucket retention plans are written to and read from; `None`:
    /// plans are only returned inline and Map items cannot be executed.
    pub plan_bucket: Option<String>,
    /// Who reads the outcome (not configurable by environment; the binary's face decides).
    pub caller: Caller,
}

/// Who reads an invocation's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Caller {
    /// The Lambda service: an EMF metrics record on stdout, and items outside SQS that could
    /// not be dead-lettered fail the invocation (`DeadLetterQueueUnavailable`) so the caller
    /// retries.
    #[default]
    Lambda,
    /// An operator at the command line: no metrics record (stdout is the operator's), and
    /// what could not be dead-lettered stays in the report, marked handed back.
    Operator,
}

/// Which accounts' images may be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountPolicy {
    /// Unset: only the function's own account (from the invoked function ARN).
    OwnAccount,
    /// `*` or an explicit list.
    Allow(AllowList),
}

/// A bad environment value: names the variable, the value and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {variable}={value:?} is not valid; expected {expected}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub expected: String,
}

/// Default report budget: 5 MB, well under Lambda's 6 MB response limit.
pub const DEFAULT_REPORT_BUDGET_BYTES: usize = 5_000_000;

impl Default for Config {
    /// defaults (no DLQ, own account only, any region).
    fn default() -> Self {
        Config {
            dead_letter_queue_url: None,
            dry_run: false,
            max_concurrency: 8,
            max_attempts: 5,
            allowed_accounts: AccountPolicy::OwnAccount,
            allowed_regions: AllowList::Any,
            protect_tag_key: None,
            deadline_margin: Duration::from_millis(3000),
            own_region: None,
            function_name: None,
            backoff: Backoff::default(),
            report_budget_bytes: DEFAULT_REPORT_BUDGET_BYTES,
            delete_output_resources: Mode::None,
            require_complete_cleanup: false,
            in_use_grace_days: 7,
            plan_bucket: None,
            caller: Caller::Lambda,
        }
    }
}

impl Config {
    /// Reads the process environment (once, at init).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads configuration through `lookup` (a variable name → its value). Empty or
    /// whitespace-only values count as unset (CloudFormation parameters often default to "").
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let d = Config::default();
        Ok(Config {
            dead_letter_queue_url: get("DEAD_LETTER_QUEUE_URL")
                .map(|v| parse_queue_url(&v))
                .transpose()?,
            dry_run: get("DRY_RUN")
                .map(|v| parse_bool("DRY_RUN", &v))
                .transpose()?
                .unwrap_or(d.dry_run),
            max_concurrency: get("MAX_CONCURRENCY")
                .map(|v| parse_range("MAX_CONCURRENCY", &v, 1, 1000))
                .transpose()?
                .map_or(d.max_concurrency, |n| n as usize),
            max_attempts: get("MAX_ATTEMPTS")
                .map(|v| parse_range("MAX_ATTEMPTS", &v, 1, 20))
                .transpose()?
                .map_or(d.max_attempts, |n| n as u32),
            allowed_accounts: get("ALLOWED_ACCOUNT_IDS")
                .map(|v| parse_accounts(&v))
                .transpose()?
                .unwrap_or(d.allowed_accounts),
            allowed_regions: get("ALLOWED_REGIONS")
                .map(|v| parse_regions(&v))
                .transpose()?
                .unwrap_or(d.allowed_regions),
            protect_tag_key: get("PROTECT_TAG_KEY")
                .map(|v| parse_tag_key(&v))
                .transpose()?,
            deadline_margin: get("DEADLINE_MARGIN_MS")
                .map(|v| parse_range("DEADLINE_MARGIN_MS", &v, 0, 600_000))
                .transpose()?
                .map_or(d.deadline_margin, Duration::from_millis),
            own_region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            function_name: get("AWS_LAMBDA_FUNCTION_NAME"),
            backoff: d.backoff,
            report_budget_bytes: d.report_budget_bytes,
            delete_output_resources: get("DELETE_OUTPUT_RESOURCES")
                .map(|v| parse_output_resources("DELETE_OUTPUT_RESOURCES", &v))
                .transpose()?
                .unwrap_or(d.delete_output_resources),
            require_complete_cleanup: get("REQUIRE_COMPLETE_CLEANUP")
                .map(|v| parse_bool("REQUIRE_COMPLETE_CLEANUP", &v))
                .transpose()?
                .unwrap_or(d.require_complete_cleanup),
            in_use_grace_days: get("IN_USE_GRACE_DAYS")
                .map(|v| parse_range("IN_USE_GRACE_DAYS", &v, 0, 3650))
                .transpose()?
                .map_or(d.in_use_grace_days, |n| n as u32),
            plan_bucket: get("PLAN_BUCKET").map(|v| parse_bucket(&v)).transpose()?,
            caller: d.caller,
        })
    }

    /// Resolves this invocation's guards from the invoked function ARN
    /// (`arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`).
    pub fn guards(&self, invoked_function_arn: &str) -> Guards {
        let fn_arn = FunctionArn::parse(invoked_function_arn);
        let partition = fn_arn
            .as_ref()
            .map(|a| a.partition.clone())
            .or_else(|| {
                self.own_region
                    .as_deref()
                    .map(|r| arn::partition_of_region(r).to_string())
            })
            // Neither the ARN nor AWS_REGION: only happens outside Lambda; the commercial
            // partition is the only sensible guess and PartitionMismatch still guards it.
            .unwrap_or_else(|| "aws".to_string());
        let (accounts, accounts_unknown) = match &self.allowed_accounts {
            AccountPolicy::Allow(list) => (list.clone(), None),
            AccountPolicy::OwnAccount => match fn_arn.and_then(|a| a.account) {
                Some(account) => (AllowList::Only(vec![account]), None),
                None => (
                    AllowList::Only(Vec::new()),
                    Some(format!(
                        "ALLOWED_ACCOUNT_IDS is unset, so only the function's own account is \
                         allowed, but it could not be read from the invoked function ARN {:?}; \
                         set ALLOWED_ACCOUNT_IDS to allow accounts explicitly",
                        invoked_function_arn
                    )),
                ),
            },
        };
        Guards {
            partition,
            accounts,
            regions: self.allowed_regions.clone(),
            accounts_unknown,
        }
    }
}

/// The parts of a Lambda function ARN we need.
struct FunctionArn {
    partition: String,
    account: Option<String>,
}

impl FunctionArn {
    fn parse(s: &str) -> Option<FunctionArn> {
        let mut parts = s.split(':');
        if parts.next()? != "arn" {
            return None;
        }
        let partition = parts.next()?;
        if parts.next()? != "lambda" || !partition.starts_with("aws") {
            return None;
        }
        let _region = parts.next()?;
        let account = parts.next()?;
        Some(FunctionArn {
            partition: partition.to_string(),
            account: is_account_id(account).then(|| account.to_string()),
        })
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn err(variable: &'static str, value: &str, expected: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        value: value.to_string(),
        expected: expected.into(),
    }
}

fn parse_bool(variable: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(err(variable, v, "true, false, 1 or 0 (case-insensitive)")),
    }
}

fn parse_range(variable: &'static str, v: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(err(
            variable,
            v,
            format!("a whole number from {min} to {max}"),
        )),
    }
}

fn parse_queue_url(v: &str) -> Result<String, ConfigError> {
    // http:// is accepted for local emulators (AWS_ENDPOINT_URL_SQS); real queues use https.
    if (v.starts_with("https://") || v.starts_with("http://")) && v.len() > "https://".len() {
        Ok(v.to_string())
    } else {
        Err(err(
            "DEAD_LETTER_QUEUE_URL",
            v,
            "an SQS queue URL such as https://sqs.us-east-1.amazonaws.com/123456789012/reaper-dlq",
        ))
    }
}

fn split_list(v: &str) -> Vec<&str> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

fn parse_accounts(v: &str) -> Result<AccountPolicy, ConfigError> {
    const EXPECTED: &str = "* (any account) or a comma-separated list of 12-digit account ids";
    if v == "*" {
        return Ok(AccountPolicy::Allow(AllowList::Any));
    }
    let ids = split_list(v);
    if ids.is_empty() || !ids.iter().all(|id| is_account_id(id)) {
        return Err(err("ALLOWED_ACCOUNT_IDS", v, EXPECTED));
    }
    Ok(AccountPolicy::Allow(AllowList::Only(
        ids.into_iter().map(String::from).collect(),
    )))
}

fn is_region(s: &str) -> bool {
    // e.g. us-east-1, eu-central-2, us-gov-west-1, cn-north-1, us-isob-east-1
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

fn parse_regions(v: &str) -> Result<AllowList, ConfigError> {
    const EXPECTED: &str =
        "* (any region) or a comma-separated list of region names such as us-east-1,eu-west-1";
    if v == "*" {
        return Ok(AllowList::Any);
    }
    let regions = split_list(v);
    if regions.is_empty() || !regions.iter().all(|r| is_region(r)) {
        return Err(err("ALLOWED_REGIONS", v, EXPECTED));
    }
    Ok(AllowList::Only(
        regions.into_iter().map(String::from).collect(),
    ))
}

/// An S3 general purpose bucket name: 3–63 lowercase letters, digits, `.` and `-`, starting
/// and ending with a letter or digit, no `..`, not shaped like an IPv4 address, and none of
/// the prefixes and suffixes S3 reserves.
fn parse_bucket(v: &str) -> Result<String, ConfigError> {
    const EXPECTED: &str = "an S3 bucket name (3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit), not an ARN or s3:// URL";
    let b = v.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ipv4 = v.split('.').count() == 4
        && v.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
    let reserved = ["xn--", "sthree-", "amzn-s3-demo-"]
        .iter()
        .any(|p| v.starts_with(p))
        || ["-s3alias", "--ol-s3", "--x-s3", ".mrap"]
            .iter()
            .any(|s| v.ends_with(s));
    let ok = (3..=63).contains(&b.len())
        && b.iter().all(|&c| edge(c) || c == b'.' || c == b'-')
        && edge(b[0])
        && edge(b[b.len() - 1])
        && !v.contains("..")
        && !ipv4
        && !reserved;
    if ok {
        Ok(v.to_string())
    } else {
        Err(err("PLAN_BUCKET", v, EXPECTED))
    }
}

fn parse_tag_key(v: &str) -> Result<String, ConfigError> {
    // Image Builder tag keys: 1..=128 characters, and `aws:` is reserved for AWS.
    if v.chars().count() <= 128 {
        Ok(v.to_string())
    } else {
        Err(err(
            "PROTECT_TAG_KEY",
            v,
            "a tag key of 1 to 128 characters",
        ))
    }
}

/// `none`, `amis`, `containers` or `all`; anything but `none` needs a build with the
/// `output-resources` cargo feature (the EC2 and ECR clients). Also used for the
/// per-invocation `"deleteOutputResources"` (with that field's name as `variable`).
pub fn parse_output_resources(variable: &'static str, v: &str) -> Result<Mode, ConfigError> {
    let mode = Mode::parse(v).map_err(|accepted| err(variable, v, accepted))?;
    if mode.any() && !cfg!(feature = "output-resources") {
        return Err(err(
            variable,
            v,
            "none: this build has no EC2/ECR support (rebuild with the default cargo feature \
             `output-resources`)",
        ));
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_spec() {
        // GIVEN no variables WHEN read THEN defaults
        let c = config(&[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.max_concurrency, 8);
        assert_eq!(c.max_attempts, 5);
        assert_eq!(c.deadline_margin, Duration::from_millis(3000));
        assert!(!c.dry_run);
        assert_eq!(c.dead_letter_queue_url, None);
        assert_eq!(c.allowed_accounts, AccountPolicy::OwnAccount);
        assert_eq!(c.in_use_grace_days, 7);
    }

    #[test]
    fn in_use_grace_days_is_read_and_bounded() {
        // GIVEN a value in range WHEN read THEN it is used
        assert_eq!(
            config(&[("IN_USE_GRACE_DAYS", "0")])
                .unwrap()
                .in_use_grace_days,
            0
        );
        assert_eq!(
            config(&[("IN_USE_GRACE_DAYS", "3650")])
                .unwrap()
                .in_use_grace_days,
            3650
        );
        // GIVEN a value out of range or not a number WHEN read THEN init fails naming it
        for bad in ["3651", "-1", "seven", "1.5"] {
            let e = config(&[("IN_USE_GRACE_DAYS", bad)]).unwrap_err();
            assert_eq!(e.variable, "IN_USE_GRACE_DAYS");
            assert!(e.expected.contains("0 to 3650"), "{e}");
        }
    }

    #[test]
    fn plan_bucket_is_an_s3_bucket_name() {
        // GIVEN valid names THEN kept as written
        for ok in ["reaper-plans", "abc", "plans.example-123"] {
            let c = config(&[("PLAN_BUCKET", ok)]).unwrap();
            assert_eq!(c.plan_bucket.as_deref(), Some(ok));
        }
        // AND an unset or blank value means no bucket
        assert_eq!(config(&[("PLAN_BUCKET", " ")]).unwrap().plan_bucket, None);
        // GIVEN what is not a bucket name THEN init fails naming the variable
        for bad in [
            "ab",
            "Plans",
            "s3://plans",
            "arn:aws:s3:::plans",
            "-plans",
            "plans-",
            "a..b",
            "192.168.1.10",
            "xn--plans",
            "plans-s3alias",
            &"a".repeat(64),
        ] {
            let e = config(&[("PLAN_BUCKET", bad)]).unwrap_err();
            assert_eq!(e.variable, "PLAN_BUCKET", "{bad}");
        }
    }

    #[test]
    fn every_variable_is_read() {
        let c = config(&[
            (
                "DEAD_LETTER_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/123456789012/dlq",
            ),
            ("DRY_RUN", "TRUE"),
            ("MAX_CONCURRENCY", "32"),
            ("MAX_ATTEMPTS", "7"),
            ("ALLOWED_ACCOUNT_IDS", "123456789012, 210987654321"),
            ("ALLOWED_REGIONS", "us-east-1,eu-west-1"),
            ("PROTECT_TAG_KEY", "keep"),
            ("DEADLINE_MARGIN_MS", "500"),
        ])
        .unwrap();
        assert!(c.dry_run);
        assert_eq!(c.max_concurrency, 32);
        assert_eq!(c.max_attempts, 7);
        assert_eq!(
            c.allowed_accounts,
            AccountPolicy::Allow(AllowList::Only(vec![
                "123456789012".into(),
                "210987654321".into()
            ]))
        );
        assert_eq!(
            c.allowed_regions,
            AllowList::Only(vec!["us-east-1".into(), "eu-west-1".into()])
        );
        assert_eq!(c.protect_tag_key.as_deref(), Some("keep"));
        assert_eq!(c.deadline_margin, Duration::from_millis(500));
    }

    #[test]
    fn bad_values_name_the_variable_the_value_and_the_accepted_values() {
        for (var, value, hint) in [
            ("DRY_RUN", "yes", "true, false, 1 or 0"),
            ("MAX_CONCURRENCY", "0", "from 1 to 1000"),
            ("MAX_CONCURRENCY", "lots", "from 1 to 1000"),
            ("MAX_ATTEMPTS", "21", "from 1 to 20"),
            ("ALLOWED_ACCOUNT_IDS", "12345", "12-digit"),
            ("ALLOWED_REGIONS", "us_east_1", "region names"),
            ("DEADLINE_MARGIN_MS", "-1", "from 0 to 600000"),
            ("DEAD_LETTER_QUEUE_URL", "my-dlq", "SQS queue URL"),
        ] {
            let e = config(&[(var, value)]).unwrap_err();
            let msg = e.to_string();
            assert_eq!(e.variable, var);
            assert!(
                msg.contains(var) && msg.contains(value) && msg.contains(hint),
                "{msg}"
            );
        }
    }

    #[test]
    fn output_resource_settings_are_read_and_checked() {
        // GIVEN the two output-resource variables WHEN read THEN parsed case-insensitively
        let c = config(&[
            ("DELETE_OUTPUT_RESOURCES", "All"),
            ("REQUIRE_COMPLETE_CLEANUP", "true"),
        ])
        .unwrap();
        assert_eq!(c.delete_output_resources, Mode::All);
        assert!(c.require_complete_cleanup);
        assert_eq!(config(&[]).unwrap().delete_output_resources, Mode::None);
        // GIVEN a bad value THEN the error names the variable, the value and every accepted value
        let e = config(&[("DELETE_OUTPUT_RESOURCES", "snapshots")]).unwrap_err();
        assert_eq!(e.variable, "DELETE_OUTPUT_RESOURCES");
        let msg = e.to_string();
        for word in ["snapshots", "none", "amis", "containers", "all"] {
            assert!(msg.contains(word), "{msg}");
        }
        assert_eq!(
            config(&[("REQUIRE_COMPLETE_CLEANUP", "maybe")])
                .unwrap_err()
                .variable,
            "REQUIRE_COMPLETE_CLEANUP"
        );
    }

    #[test]
    fn dry_run_accepts_the_documented_spellings() {
        for (v, want) in [("true", true), ("1", true), ("False", false), ("0", false)] {
            assert_eq!(config(&[("DRY_RUN", v)]).unwrap().dry_run, want);
        }
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = config(&[("ALLOWED_ACCOUNT_IDS", ""), ("DEAD_LETTER_QUEUE_URL", "  ")]).unwrap();
        assert_eq!(c.allowed_accounts, AccountPolicy::OwnAccount);
        assert_eq!(c.dead_letter_queue_url, None);
    }

    #[test]
    fn own_account_and_partition_come_from_the_invoked_function_arn() {
        let c = config(&[]).unwrap();
        let g = c.guards("arn:aws-cn:lambda:cn-north-1:123456789012:function:reaper:live");
        assert_eq!(g.partition, "aws-cn");
        assert_eq!(g.accounts, AllowList::Only(vec!["123456789012".into()]));
        assert_eq!(g.accounts_unknown, None);
    }

    #[test]
    fn unknown_own_account_is_a_safe_rejection_not_an_allow() {
        let c = Config {
            own_region: Some("us-east-1".into()),
            ..Config::default()
        };
        let g = c.guards("");
        assert_eq!(g.accounts, AllowList::Only(vec![]));
        assert!(g.accounts_unknown.unwrap().contains("ALLOWED_ACCOUNT_IDS"));
    }

    #[test]
    fn star_allows_any_account_without_needing_the_function_arn() {
        let c = config(&[("ALLOWED_ACCOUNT_IDS", "*")]).unwrap();
        let g = c.guards("not an arn");
        assert_eq!(g.accounts, AllowList::Any);
        assert_eq!(g.accounts_unknown, None);
    }
}
