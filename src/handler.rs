//! The invocation handler: decode → engine → report, or the whole-invocation error.
//!
//! Build once per process with [`Handler::new`] and call [`Handler::invoke`] from
//! `lambda_runtime` (or [`Handler::handle`] in tests, with an explicit [`Invocation`]).

use std::time::{SystemTime, UNIX_EPOCH};

use lambda_runtime::LambdaEvent;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::config::{self, Config};
use crate::engine::{Engine, Execution, Invocation, NotDeadLettered};
use crate::error::ReaperError;
use crate::event::{self, InvocationKind};
use crate::metrics;
use crate::outcome::{Report, ResultRecord, Subject};
use crate::output_resources::run::{Cleaners, Unavailable};
use crate::ports::{Amis, ContainerImages, DeadLetterSink, Images};

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
    /// The EC2 and ECR ports that delete an image's output resources (issue 5).
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
        let invocation = Invocation::from_context(&event.context);
        let payload = event::parse_payload(event.payload.get().as_bytes()).inspect_err(
            |e| tracing::error!(errorType = "InvalidEvent", error = %e, "invocation rejected"),
        )?;
        let report = self.handle(&payload, &invocation).await?;
        Ok(report.to_raw_json(self.config.report_budget_bytes))
    }

    /// Handles one event. `Err` only for `InvalidEvent` (nothing decodable) and
    /// `DeadLetterQueueUnavailable` (EventBridge / direct / Step Functions items that had to
    /// be dead-lettered and could not be).
    pub async fn handle(
        &self,
        event: &Value,
        invocation: &Invocation,
    ) -> Result<Report, ReaperError> {
        self.handle_detailed(event, invocation).await.result
    }

    /// [`Handler::handle`], also returning what the engine did (every record, even when the
    /// invocation fails), for tests and tools that audit where each item went.
    pub async fn handle_detailed(&self, event: &Value, invocation: &Invocation) -> Handled {
        let decoded = match event::decode(event) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(errorType = "InvalidEvent", error = %e, "invocation rejected");
                return Handled {
                    execution: None,
                    result: Err(e.into()),
                };
            }
        };
        // A bad per-invocation value fails the whole invocation, naming the field.
        let output_mode = match &decoded.options.delete_output_resources {
            None => self.config.delete_output_resources,
            Some(v) => match config::parse_output_resources("deleteOutputResources", v) {
                Ok(mode) => mode,
                Err(e) => {
                    let e = ReaperError::InvalidEvent(format!(
                        "\"deleteOutputResources\": {v:?} is not valid; expected {}",
                        e.expected
                    ));
                    tracing::error!(errorType = "InvalidEvent", error = %e, "invocation rejected");
                    return Handled {
                        execution: None,
                        result: Err(e),
                    };
                }
            },
        };
        let engine = Engine {
            config: &self.config,
            images: &self.images,
            dead_letters: self.dead_letters.as_ref(),
            output: &self.output,
            output_mode,
        };
        let exec = engine.run(&decoded, invocation).await;
        log_outcomes(&exec.records);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // EMF must be a line of its own on stdout, whatever the log format.
        println!(
            "{}",
            metrics::emf_record(&exec, self.config.function_name.as_deref(), now_ms)
        );

        let sqs = matches!(exec.kind, InvocationKind::Sqs { .. });
        let result = if !sqs && !exec.not_dead_lettered.is_empty() {
            let err = dead_letter_queue_unavailable(&exec);
            tracing::error!(errorType = "DeadLetterQueueUnavailable", error = %err, "invocation failed");
            Err(err)
        } else {
            let report = Report::new(
                &exec.records,
                exec.dry_run,
                sqs.then(|| exec.handed_back.clone()),
            );
            tracing::info!(summary = ?report.summary, "invocation done");
            Ok(report)
        };
        Handled {
            execution: Some(exec),
            result,
        }
    }
}

/// The result of [`Handler::handle_detailed`].
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// `None` only when the event could not be decoded.
    pub execution: Option<Execution>,
    pub result: Result<Report, ReaperError>,
}

/// One log line per ARN (or rejected item) outcome, with the SPEC §7 fields.
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
