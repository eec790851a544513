//! The invocation handler: decode → engine → report, or the whole-invocation error; a
//! retention plan request → the plan.
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
use crate::aws::imagebuilder::ImageBuilder;
use crate::aws::s3::{self, S3Plans};
use crate::aws::sqs::SqsDeadLetters;
use crate::config::{self, Caller, Config};
use crate::engine::{Engine, Execution, Invocation, NotDeadLettered};
use crate::error::ReaperError;
use crate::event::{self, Decoded, InvocationKind};
use crate::limited::{CallLimits, Limited};
use crate::metrics;
use crate::outcome::{ResultRecord, Subject};
use crate::output_resources::mode::Mode;
use crate::output_resources::run::Cleaners;
use crate::ports::{
    Amis, BuildVersions, ContainerImages, DeadLetterSink, ImageUse, Images, PlanStore, Progress,
    Unavailable,
};
use crate::report::{Report, Summary};
use crate::retention_run::{self, RunError, Settings};
use crate::retry::{Deadlines, RetryPolicy};

/// How many not-dead-lettered items the `DeadLetterQueueUnavailable` message lists by name.
const LISTED_IN_ERROR: usize = 20;
/// Longest rejected input written to a log line.
const LOGGED_INPUT_CHARS: usize = 1024;

/// The function: configuration and ports, built once and reused by every invocation.
#[derive(Debug)]
pub struct Handler<I, D, A = Unavailable, C = Unavailable, L = Unavailable, S = Unavailable> {
    config: Config,
    images: I,
    dead_letters: Option<D>,
    output: Cleaners<A, C>,
    /// The rate limiters the ports are wrapped in, for the in-flight limit metric.
    limits: Option<CallLimits>,
    /// Retention plans: the build-version listing and, with `PLAN_BUCKET`, the plan store.
    listing: L,
    plans: Option<S>,
}

/// What one invocation returns.
#[derive(Debug)]
pub enum Response {
    /// The per-ARN report of a delete request or a plan execution.
    Report(Report),
    /// A retention plan (or its summary and location).
    Plan(Value),
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
            limits: None,
            listing: Unavailable,
            plans: None,
        }
    }
}

impl<I, D, A, C, L, S> Handler<I, D, A, C, L, S>
where
    I: Images,
    D: DeadLetterSink,
    A: Amis + ImageUse,
    C: ContainerImages,
    L: BuildVersions,
    S: PlanStore,
{
    /// The EC2 and ECR ports that delete an image's output resources; the EC2 one also
    /// answers the in-use guard.
    pub fn with_output_resources<A2: Amis + ImageUse, C2: ContainerImages>(
        self,
        amis: A2,
        containers: C2,
    ) -> Handler<I, D, A2, C2, L, S> {
        Handler {
            config: self.config,
            images: self.images,
            dead_letters: self.dead_letters,
            output: Cleaners { amis, containers },
            limits: self.limits,
            listing: self.listing,
            plans: self.plans,
        }
    }

    /// The ports of retention plans: the build-version listing, and the plan store, which
    /// must be `Some` exactly when `PLAN_BUCKET` is configured.
    pub fn with_retention<L2: BuildVersions, S2: PlanStore>(
        self,
        listing: L2,
        plans: Option<S2>,
    ) -> Handler<I, D, A, C, L2, S2> {
        Handler {
            config: self.config,
            images: self.images,
            dead_letters: self.dead_letters,
            output: self.output,
            limits: self.limits,
            listing,
            plans,
        }
    }

    /// The limits the ports are wrapped in ([`crate::limited::Limited`]): their current
    /// in-flight limit goes into the metrics.
    pub fn with_limits(mut self, limits: CallLimits) -> Self {
        self.limits = Some(limits);
        self
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
        match self.respond(&payload, &invocation).await? {
            Response::Report(report) => Ok(report.to_raw_json(self.config.report_budget_bytes)),
            Response::Plan(plan) => serde_json::value::to_raw_value(&plan)
                .map_err(|e| ReaperError::InvalidEvent(format!("plan not serialisable: {e}"))),
        }
    }

    /// Handles one event of any kind: a retention plan request gets its plan, everything
    /// else its report.
    pub async fn respond(
        &self,
        event: &Value,
        invocation: &Invocation,
    ) -> Result<Response, ReaperError> {
        if !is_plan_request(event) {
            return self.handle(event, invocation).await.map(Response::Report);
        }
        let settings = self.settings(invocation);
        // Boxed: the plan path's future stays out of the invocation future's layout.
        let plan = Box::pin(retention_run::make(
            &self.listing,
            self.plans.as_ref(),
            event,
            &settings,
            now_ms(),
            fastrand::u32(..),
        ))
        .await
        .map_err(run_error)
        .inspect_err(|e| {
            tracing::error!(errorType = e.error_type(), error = %e, "plan request failed");
        })?;
        tracing::info!(planId = %plan["planId"], summary = %plan["summary"], "plan made");
        Ok(Response::Plan(plan))
    }

    /// What retention plans need of the configuration and this invocation.
    fn settings(&self, invocation: &Invocation) -> Settings<'_> {
        let deadlines = Deadlines::new(invocation.deadline, self.config.deadline_margin, 0);
        Settings {
            own_region: self.config.own_region.as_deref().unwrap_or("us-east-1"),
            protect_tag_key: self.config.protect_tag_key.as_deref(),
            bucket: self.config.plan_bucket.as_deref(),
            max_concurrency: self.config.max_concurrency,
            response_budget: self.config.report_budget_bytes,
            policy: RetryPolicy {
                max_attempts: self.config.max_attempts,
                backoff: self.config.backoff,
            },
            window: deadlines.calls(),
        }
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
        let (decoded, output_mode) = self.decode(event, invocation).await.inspect_err(|e| {
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
            let ctx = metrics::Context {
                function_name: self.config.function_name.as_deref(),
                in_flight_limit: self
                    .limits
                    .as_ref()
                    .and_then(CallLimits::min_in_flight_limit),
                timestamp_ms: u64::try_from(now_ms()).unwrap_or(0),
            };
            // EMF must be a line of its own on stdout, whatever the log format.
            for record in metrics::emf_records(&exec, &ctx) {
                println!("{record}");
            }
        }
        conclude(&exec, self.config.caller)
    }

    /// The decoded event (a plan execution: the plan's items, each with its drift check;
    /// Map items: checked against their stored plan) and this invocation's output-resource
    /// mode; a bad per-invocation value fails the whole invocation, naming the field.
    async fn decode(
        &self,
        event: &Value,
        invocation: &Invocation,
    ) -> Result<(Decoded, Mode), ReaperError> {
        if is_plan_request(event) {
            return Err(ReaperError::InvalidEvent(
                "a plan request returns a plan, not a report".to_owned(),
            ));
        }
        let settings = self.settings(invocation);
        let store = self.plans.as_ref();
        let decoded = if event.get("executePlan").is_some() {
            // The plan's own items: already checked against the plan they come from.
            Box::pin(retention_run::execution(store, event, &settings, now_ms()))
                .await
                .map_err(run_error)?
        } else {
            let mut decoded = event::decode(event)?;
            Box::pin(retention_run::check_items(
                store,
                &mut decoded,
                &settings,
                now_ms(),
            ))
            .await
            .map_err(run_error)?;
            decoded
        };
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

/// Whether `event` asks for a retention plan (`{"plan": …}`).
fn is_plan_request(event: &Value) -> bool {
    event.get("plan").is_some()
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A retention plan failure as the whole invocation's error.
fn run_error(e: RunError) -> ReaperError {
    match e {
        RunError::Invalid(m) => ReaperError::InvalidEvent(m),
        RunError::Listing(m) => ReaperError::ListingFailed(m),
        RunError::Store(m) => ReaperError::PlanStoreUnavailable(m),
    }
}

/// The handler on AWS: the SDK-backed ports, each image service behind the limiter of its
/// service and region, as the Lambda and the operator CLI both run it.
#[cfg(feature = "output-resources")]
pub type AwsHandler = Handler<
    Limited<ImageBuilder>,
    SqsDeadLetters,
    Limited<aws::ec2::Ec2>,
    Limited<aws::ecr::Ecr>,
    Limited<ImageBuilder>,
    S3Plans,
>;
/// The handler on AWS, built without the EC2/ECR clients.
#[cfg(not(feature = "output-resources"))]
pub type AwsHandler = Handler<
    Limited<ImageBuilder>,
    SqsDeadLetters,
    Unavailable,
    Unavailable,
    Limited<ImageBuilder>,
    S3Plans,
>;

/// Builds the [`AwsHandler`] from the configuration and the shared SDK configuration. No
/// client is built (and nothing is resolved) before the first call. One set of limits per
/// process: every image call waits for the limiter of its service and region, and the calls
/// in flight stay within `MAX_CONCURRENCY` in total.
pub fn aws_handler(config: Config, sdk: &SdkConfig) -> AwsHandler {
    let limits = CallLimits::new(config.max_concurrency);
    let images = Limited::new(ImageBuilder::new(sdk), limits.clone());
    let dead_letters = config
        .dead_letter_queue_url
        .clone()
        .map(|url| SqsDeadLetters::new(sdk, url));
    // Retention plans: a second Image Builder adapter for the listing (clients per region
    // are cheap handles), and S3 only when PLAN_BUCKET is set.
    let plans = config
        .plan_bucket
        .is_some()
        .then(|| S3Plans::new(sdk, s3::endpoint_overridden()));
    let listing = Limited::new(ImageBuilder::new(sdk), limits.clone());
    let handler = Handler::new(config, images, dead_letters)
        .with_limits(limits.clone())
        .with_retention(listing, plans);
    // EC2 + ECR clients (per region, built on first use) for DELETE_OUTPUT_RESOURCES.
    #[cfg(feature = "output-resources")]
    let handler = handler.with_output_resources(
        Limited::new(aws::ec2::Ec2::new(sdk), limits.clone()),
        Limited::new(aws::ecr::Ecr::new(sdk), limits),
    );
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
    log_summary(&report.summary);
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

/// The invocation's counts as fields of one log line, so Logs Insights can query them.
fn log_summary(s: &Summary) {
    tracing::info!(
        requested = s.requested,
        deleted = s.deleted,
        alreadyDeleted = s.already_deleted,
        wouldDelete = s.would_delete,
        protected = s.protected,
        inUse = s.in_use,
        skippedPlanDrift = s.skipped_plan_drift,
        rejected = s.rejected,
        failed = s.failed,
        notAttempted = s.not_attempted,
        deadLettered = s.dead_lettered,
        throttled = s.throttled,
        dryRun = s.dry_run,
        "invocation done"
    );
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
