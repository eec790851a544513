//! The invocation handler: decode → engine → report, or the whole-invocation error.
//!
//! Build once per process with [`Handler::new`] and call [`Handler::invoke`] from
//! `lambda_runtime` (or [`Handler::handle`] in tests, with an explicit [`Invocation`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::LambdaEvent;
use serde_json::value::RawValue;
use serde_json::Value;

use aws_config::SdkConfig;

#[cfg(feature = "output-resources")]
use crate::aws;
use crate::aws::{imagebuilder::ImageBuilder, sqs::SqsDeadLetters};
use crate::config::{self, Caller, Config};
use crate::engine::{Engine, Execution, Invocation, NotDeadLettered};
use crate::error::ReaperError;
use crate::event::{self, Decoded, InvocationKind};
use crate::metrics;
use crate::outcome::{ResultRecord, Subject};
use crate::output_resources::mode::Mode;
use crate::output_resources::run::Cleaners;
use crate::ports::{Amis, ContainerImages, DeadLetterSink, Images, Progress, Unavailable};
use crate::report::Report;

/// How many not-dead-lettered items the `DeadLetterQueueUnavailable` message lists by name.
const LISTED_IN_ERROR: usize = 20;
/// Longest rejected input written to a log line.
const LOGGED_INPUT_CHARS: usize = 1024;

/// The function: configuration and ports, built once and reused by every invocation.
#[derive(Debug)]
pub struct Handler<I, D, A = Unavailable, C = Unavailable> {
    config: Config,
    images: I,
    dead_letters: Option<D>,
    output: Cleaners<A, C>,
}

impl<I: Images, D: DeadLetterSink> Handler<I, D> {
    /// `dead_letters` must be `Some` exactly when `DEAD_LETTER_QUEUE_URL` is configured.
    /// Without [`Handler::with_output_resources`] there are no EC2/ECR ports.
    pub fn new(config: Config, images: I, dead_letters: Option<D>) -> Self {
        Handler {
            config,
            images,
            dead_letters,
            output: Cleaners::default(),
        }
    }
}

impl<I: Images, D: DeadLetterSink, A: Amis, C: ContainerImages> Handler<I, D, A, C> {
    /// The EC2 and ECR ports that delete an image's output resources.
    pub fn with_output_resources<A2: Amis, C2: ContainerImages>(
        self,
        amis: A2,
        containers: C2,
    ) -> Handler<I, D, A2, C2> {
        Handler {
            config: self.config,
            images: self.images,
            dead_letters: self.dead_letters,
            output: Cleaners { amis, containers },
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The `lambda_runtime` entry point: the report as pre-serialised JSON (within the
    /// response budget), or the whole-invocation error. The payload arrives raw (the runtime
    /// only checks that it is JSON), so a payload a parser refuses is `InvalidEvent` here.
    pub async fn invoke(
        &self,
        event: LambdaEvent<Box<RawValue>>,
    ) -> Result<Box<RawValue>, ReaperError> {
        let invocation = invocation_from(&event.context);
        let payload = event::parse_payload(event.payload.get().as_bytes()).inspect_err(
            |e| tracing::error!(errorType = "InvalidEvent", error = %e, "invocation rejected"),
        )?;
        let report = self.handle(&payload, &invocation).await?;
        Ok(report.to_raw_json(self.config.report_budget_bytes))
    }

    /// Handles one event. `Err` only for `InvalidEvent` (nothing decodable),
    /// `DeadLetterQueueUnavailable` (EventBridge / direct / Step Functions items that had to
    /// be dead-lettered and could not be; never for [`Caller::Operator`]) and refused
    /// credentials.
    pub async fn handle(
        &self,
        event: &Value,
        invocation: &Invocation,
    ) -> Result<Report, ReaperError> {
        self.handle_observed(event, invocation, None).await
    }

    /// [`Handler::handle`], telling `progress` (when given) how the ARNs are decided.
    pub async fn handle_observed(
        &self,
        event: &Value,
        invocation: &Invocation,
        progress: Option<&dyn Progress>,
    ) -> Result<Report, ReaperError> {
        let (decoded, output_mode) = self.decode(event).inspect_err(|e| {
            tracing::error!(errorType = e.error_type(), error = %e, "invocation rejected");
        })?;
        let mut engine = Engine::new(
            &self.config,
            &self.images,
            self.dead_letters.as_ref(),
            &self.output,
        );
        if let Some(p) = progress {
            engine = engine.with_progress(p);
        }
        let exec = engine.run(&decoded, invocation, output_mode).await;
        log_outcomes(&exec.records);
        if self.config.caller == Caller::Lambda {
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            // EMF must be a line of its own on stdout, whatever the log format.
            println!(
                "{}",
                metrics::emf_record(&exec, self.config.function_name.as_deref(), now_ms)
            );
        }
        conclude(&exec, self.config.caller)
    }

    /// The decoded event and this invocation's output-resource mode; a bad per-invocation
    /// value fails the whole invocation, naming the field.
    fn decode(&self, event: &Value) -> Result<(Decoded, Mode), ReaperError> {
        let decoded = event::decode(event)?;
        let mode = match &decoded.options.delete_output_resources {
            None => self.config.delete_output_resources,
            Some(v) => config::parse_output_resources("deleteOutputResources", v).map_err(|e| {
                ReaperError::InvalidEvent(format!(
                    "\"deleteOutputResources\": {v:?} is not valid; expected {}",
                    e.expected
                ))
            })?,
        };
        Ok((decoded, mode))
    }
}

/// The handler on AWS: the SDK-backed ports, as the Lambda and the operator CLI both run it.
#[cfg(feature = "output-resources")]
pub type AwsHandler = Handler<ImageBuilder, SqsDeadLetters, aws::ec2::Ec2, aws::ecr::Ecr>;
/// The handler on AWS: the SDK-backed ports, as the Lambda and the operator CLI both run it.
#[cfg(not(feature = "output-resources"))]
pub type AwsHandler = Handler<ImageBuilder, SqsDeadLetters>;

/// Builds the [`AwsHandler`] from the configuration and the shared SDK configuration. No
/// client is built (and nothing is resolved) before the first call.
pub fn aws_handler(config: Config, sdk: &SdkConfig) -> AwsHandler {
    let images = ImageBuilder::new(sdk);
    let dead_letters = config
        .dead_letter_queue_url
        .clone()
        .map(|url| SqsDeadLetters::new(sdk, url));
    let handler = Handler::new(config, images, dead_letters);
    // EC2 + ECR clients (per region, built on first use) for DELETE_OUTPUT_RESOURCES.
    #[cfg(feature = "output-resources")]
    let handler = handler.with_output_resources(aws::ec2::Ec2::new(sdk), aws::ecr::Ecr::new(sdk));
    handler
}

/// The report, or `DeadLetterQueueUnavailable` when items outside SQS that had to be
/// dead-lettered could not be and the caller is Lambda (an operator reads them in the report).
fn conclude(exec: &Execution, caller: Caller) -> Result<Report, ReaperError> {
    let sqs = matches!(exec.kind, InvocationKind::Sqs { .. });
    if let Some(rec) = exec
        .records
        .iter()
        .find(|r| r.configuration)
        .filter(|_| !sqs)
    {
        let err = ReaperError::CredentialsRefused(format!(
            "{}: {}; nothing was dead-lettered, retry once the function's credentials are fixed",
            rec.error_code.as_deref().unwrap_or("CredentialsError"),
            rec.message.as_deref().unwrap_or("")
        ));
        tracing::error!(errorType = err.error_type(), error = %err, "invocation failed");
        return Err(err);
    }
    if !sqs && caller == Caller::Lambda && !exec.not_dead_lettered.is_empty() {
        let err = dead_letter_queue_unavailable(exec);
        tracing::error!(errorType = "DeadLetterQueueUnavailable", error = %err, "invocation failed");
        return Err(err);
    }
    let report = Report::new(
        &exec.records,
        exec.dry_run,
        sqs.then(|| exec.handed_back.clone()),
    );
    tracing::info!(summary = ?report.summary, "invocation done");
    Ok(report)
}

/// From the Lambda context: the deadline (epoch ms) becomes a monotonic instant now, so
/// everything downstream works on tokio time.
fn invocation_from(ctx: &lambda_runtime::Context) -> Invocation {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Invocation {
        request_id: ctx.request_id.clone(),
        invoked_function_arn: ctx.invoked_function_arn.clone(),
        deadline: tokio::time::Instant::now() + remaining_until(ctx.deadline, now_ms),
    }
}

/// Deadlines below this (2001-09-09 in epoch ms) cannot be wall-clock times.
const EPOCH_MS_FLOOR: u64 = 1_000_000_000_000;

/// Time left before `deadline_ms`. Lambda sends Unix epoch milliseconds; some local
/// runtimes (cargo-lambda 1.9 sends `600000`) send the *remaining* milliseconds instead.
/// Read literally such a value lies in 1970 and nothing would ever be attempted, so a value
/// too small to be a wall-clock time is taken as a duration.
fn remaining_until(deadline_ms: u64, now_ms: u64) -> Duration {
    if deadline_ms < EPOCH_MS_FLOOR {
        Duration::from_millis(deadline_ms)
    } else {
        Duration::from_millis(deadline_ms.saturating_sub(now_ms))
    }
}

/// One log line per ARN (or rejected item) outcome: arn, status, errorCode, attempts,
/// latencyMs.
fn log_outcomes(records: &[ResultRecord]) {
    for r in records {
        // A rejected input can be a whole 256 KiB SQS body: the log gets a preview (the DLQ
        // message carries it in full).
        let arn = match &r.subject {
            Subject::Arn(a) => a.clone(),
            Subject::Input(Value::String(s)) => shorten(s, LOGGED_INPUT_CHARS),
            Subject::Input(v) => shorten(&v.to_string(), LOGGED_INPUT_CHARS),
        };
        let status = r.status.as_str();
        let error_code = r.error_code.as_deref().unwrap_or("");
        let message = r.message.as_deref().unwrap_or("");
        // An audit trail of every AMI / snapshot / ECR image touched (or left) for this ARN.
        for e in &r.output_resources {
            tracing::info!(
                arn,
                resourceType = e.kind.as_str(),
                resourceId = e.id.as_str(),
                region = e.region.as_str(),
                status = e.status.as_str(),
                errorCode = e.error_code.as_deref().unwrap_or(""),
                message = e.message.as_deref().unwrap_or(""),
                "output resource"
            );
        }
        if r.status.is_success() {
            tracing::info!(
                arn,
                status,
                errorCode = error_code,
                attempts = r.attempts,
                latencyMs = r.latency_ms,
                "outcome"
            );
        } else {
            tracing::warn!(
                arn,
                status,
                errorCode = error_code,
                attempts = r.attempts,
                latencyMs = r.latency_ms,
                deadLettered = r.dead_lettered,
                handedBack = r.handed_back,
                message,
                "outcome"
            );
        }
    }
}

fn dead_letter_queue_unavailable(exec: &Execution) -> ReaperError {
    let items: &[NotDeadLettered] = &exec.not_dead_lettered;
    let mut reasons: Vec<&str> = items.iter().map(|n| n.reason.as_str()).collect();
    reasons.sort_unstable();
    reasons.dedup();
    let listed: Vec<String> = items
        .iter()
        .take(LISTED_IN_ERROR)
        .map(|n| shorten(&n.what, 200))
        .collect();
    let more = items.len().saturating_sub(LISTED_IN_ERROR);
    let message = format!(
        "{} item(s) could not be dead-lettered ({}); failing the invocation so the caller \
         retries (deletion is idempotent): {}{}",
        items.len(),
        reasons.join("; "),
        listed.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    );
    ReaperError::DeadLetterQueueUnavailable {
        message,
        not_dead_lettered: items.iter().map(|n| n.what.clone()).collect(),
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_in_epoch_ms_is_measured_from_now() {
        // GIVEN Lambda's wall-clock deadline 90 s after "now"
        let now = 1_790_000_000_000;
        // THEN 90 s remain; a deadline already passed leaves nothing
        assert_eq!(remaining_until(now + 90_000, now), Duration::from_secs(90));
        assert_eq!(remaining_until(now - 5, now), Duration::ZERO);
    }

    #[test]
    fn deadline_too_small_for_a_wall_clock_is_a_duration() {
        // GIVEN cargo-lambda's relative "600000" (10 minutes) WHEN read at any time
        // THEN it means 10 minutes from now, not a date in 1970
        assert_eq!(
            remaining_until(600_000, 1_790_000_000_000),
            Duration::from_secs(600)
        );
    }
}
