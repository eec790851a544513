//! One ARN, decided: read the image (a retention plan's drift check, protect tag, output
//! resources), clean up the output resources, then DeleteImage last → its [`ResultRecord`].
//!
//! Each step talks only to the port it needs, and every call goes through the one retry
//! loop. A dry run performs every read and check and calls no deleting API.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use tokio::time::Instant;

use crate::batch::Task;
use crate::outcome::{ResultRecord, Status, Subject};
use crate::output_resources::entry::Verdict;
use crate::output_resources::guard::Clock;
use crate::output_resources::mode::Mode;
use crate::output_resources::plan;
use crate::output_resources::run::{clean, Cleaners, Settings};
use crate::ports::{Amis, ContainerImages, ErrorClass, ImageInfo, ImageUse, Images};
use crate::retention::{check_drift, DriftCheck, Observed};
use crate::retry::{with_retries, Attempted, RetryPolicy, Window};

/// Error code of an ARN not attempted because the deadline margin was reached.
pub const DEADLINE_REACHED: &str = "DeadlineReached";

/// The rules one ARN is decided by.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// `PROTECT_TAG_KEY`.
    pub protect_tag_key: Option<&'a str>,
    /// Which output resources to delete before DeleteImage, unless the item asks otherwise.
    pub output_mode: Mode,
    /// `REQUIRE_COMPLETE_CLEANUP`.
    pub require_complete: bool,
    pub policy: RetryPolicy,
    /// The deadline window of image calls.
    pub window: Window,
    /// `DEADLINE_MARGIN_MS`, named in not-attempted messages.
    pub deadline_margin: Duration,
    /// Now and `IN_USE_GRACE_DAYS`, for the in-use guard.
    pub clock: Clock,
}

/// The decision for one ARN, with the duration of every DeleteImage attempt (for metrics).
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub record: ResultRecord,
    pub delete_latencies: Vec<Duration>,
}

/// Decides one distinct ARN.
pub async fn decide<I: Images, A: Amis + ImageUse, C: ContainerImages>(
    images: &I,
    cleaners: &Cleaners<A, C>,
    task: &Task,
    rules: &Rules<'_>,
) -> Decided {
    let started = Instant::now();
    let mut rec = ResultRecord::new(
        Subject::Arn(task.arn.as_str().to_string()),
        Status::WouldDelete,
    );
    let mut delete_latencies = Vec::new();
    if prepare(images, cleaners, task, rules, &mut rec).await && !task.options.dry_run {
        let attempted = with_retries(&rules.policy, rules.window, || {
            images.delete_image(&task.arn)
        })
        .await;
        delete_latencies = attempted.latencies().to_vec();
        rec.throttled += attempted.throttled();
        match attempted {
            Attempted::Done {
                value, attempts, ..
            } => {
                rec.status = Status::Deleted;
                rec.attempts = attempts;
                rec.request_id = value.request_id;
            }
            other => apply_failure(&mut rec, other, "DeleteImage", rules),
        }
    }
    rec.latency_ms = started.elapsed().as_millis() as u64;
    Decided {
        record: rec,
        delete_latencies,
    }
}

/// Everything before DeleteImage. `true`: DeleteImage may run (or, in a dry run, the image
/// would be deleted); `false`: `rec` already holds the final status.
async fn prepare<I: Images, A: Amis + ImageUse, C: ContainerImages>(
    images: &I,
    cleaners: &Cleaners<A, C>,
    task: &Task,
    rules: &Rules<'_>,
    rec: &mut ResultRecord,
) -> bool {
    let mode = task
        .options
        .delete_output_resources
        .unwrap_or(rules.output_mode);
    if rules.protect_tag_key.is_none() && !mode.any() && task.plan.is_none() {
        return true;
    }
    let Some(info) = read_image(images, task, rules, rec).await else {
        return false;
    };
    if !mode.any() {
        return true;
    }
    let plan = plan::build(&info.output_resources, &task.arn, mode);
    let throttled = AtomicU32::new(0);
    let settings = Settings {
        dry_run: task.options.dry_run,
        protect_tag_key: rules.protect_tag_key,
        require_complete: rules.require_complete,
        policy: rules.policy,
        window: rules.window,
        throttled: &throttled,
        clock: rules.clock,
    };
    // The EC2 adapter answers both the cleanup and the in-use guard.
    let done = clean(
        &cleaners.amis,
        &cleaners.amis,
        &cleaners.containers,
        &plan,
        &settings,
    )
    .await;
    rec.throttled += throttled.into_inner();
    rec.output_resources = done.entries;
    apply_verdict(rec, done.verdict)
}

/// GetImage, a plan item's drift check and the protect tag. `None`: `rec` holds the final
/// status (skipped for drift, protected, gone — GetImage can then no longer name the output
/// resources, so `alreadyDeleted` as without the cleanup — or failed).
async fn read_image<I: Images>(
    images: &I,
    task: &Task,
    rules: &Rules<'_>,
    rec: &mut ResultRecord,
) -> Option<ImageInfo> {
    let attempted = with_retries(&rules.policy, rules.window, || images.get_image(&task.arn)).await;
    rec.throttled += attempted.throttled();
    match attempted {
        Attempted::Done {
            value, attempts, ..
        } => {
            rec.attempts = attempts;
            if let Some(reason) = drift(task, &value, rules) {
                rec.status = Status::SkippedPlanDrift;
                rec.message = Some(format!(
                    "skipped: the build changed since the plan: {reason}"
                ));
                rec.request_id = value.request_id;
                return None;
            }
            let tag = rules
                .protect_tag_key
                .and_then(|k| Some((k, value.tags.get(k)?.clone())));
            let Some((key, v)) = tag else {
                return Some(value);
            };
            rec.status = Status::Protected;
            rec.message = Some(format!(
                "skipped: the image carries the protect tag {key}={v}"
            ));
            rec.request_id = value.request_id;
            None
        }
        other => {
            apply_failure(rec, other, "GetImage", rules);
            None
        }
    }
}

/// Why a retention plan's build no longer matches its plan, if it is one and it does not.
fn drift(task: &Task, info: &ImageInfo, rules: &Rules<'_>) -> Option<String> {
    let plan = task.plan.as_deref()?;
    let tags = info
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let observed = Observed {
        status: info.status.as_deref(),
        date_created: info.date_created.as_deref(),
        tags: &tags,
    };
    match check_drift(
        &plan.expect,
        &observed,
        rules.protect_tag_key,
        &plan.exclude_tag_keys,
    ) {
        DriftCheck::Proceed => None,
        DriftCheck::Drift(reason) => Some(reason),
    }
}

/// The cleanup's verdict on the record. `true`: DeleteImage may run.
fn apply_verdict(rec: &mut ResultRecord, verdict: Verdict) -> bool {
    match verdict {
        Verdict::Proceed => return true,
        Verdict::Protected { message } => {
            rec.status = Status::Protected;
            rec.message = Some(message);
        }
        Verdict::InUse { references, reason } => {
            rec.status = Status::InUse;
            rec.message = Some(reason);
            rec.references = references;
        }
        Verdict::Failed {
            code,
            message,
            retryable,
        } => {
            rec.status = Status::Failed;
            rec.error_code = Some(code);
            rec.message = Some(message);
            rec.retryable = Some(retryable);
            rec.attempts = rec
                .output_resources
                .iter()
                .filter_map(|e| e.attempts)
                .max()
                .unwrap_or(1);
        }
        Verdict::NotAttempted { message } => {
            rec.status = Status::NotAttempted;
            rec.error_code = Some(DEADLINE_REACHED.to_string());
            rec.message = Some(message);
            rec.retryable = Some(true);
        }
    }
    false
}

/// Maps a non-`Done` attempt onto the record (NotFound ⇒ `alreadyDeleted`).
fn apply_failure<T>(
    rec: &mut ResultRecord,
    attempted: Attempted<T>,
    operation: &str,
    rules: &Rules<'_>,
) {
    let (error, attempts, stopped_by_deadline) = match attempted {
        Attempted::Done { .. } => return,
        Attempted::NotStarted { .. } => {
            rec.status = Status::NotAttempted;
            rec.retryable = Some(true);
            rec.error_code = Some(DEADLINE_REACHED.to_string());
            rec.message = Some(format!(
                "{operation} not attempted: less than DEADLINE_MARGIN_MS ({} ms) remained before the Lambda deadline",
                rules.deadline_margin.as_millis()
            ));
            return;
        }
        Attempted::Failed {
            error,
            attempts,
            stopped_by_deadline,
            ..
        } => (error, attempts, stopped_by_deadline),
    };
    rec.attempts = attempts;
    rec.request_id = error.request_id.clone();
    if error.class == ErrorClass::NotFound {
        rec.status = Status::AlreadyDeleted;
        return;
    }
    rec.configuration = error.class == ErrorClass::Configuration;
    let retryable = error.class.is_retryable() || rec.configuration;
    let why = if stopped_by_deadline {
        format!("; gave up after {attempts} attempt(s) because the Lambda deadline is near")
    } else if rec.configuration {
        "; the function's credentials were refused: fix them, then retry".to_string()
    } else if retryable {
        format!("; still failing after {attempts} attempt(s) (MAX_ATTEMPTS)")
    } else {
        String::new()
    };
    rec.status = Status::Failed;
    rec.retryable = Some(retryable);
    rec.message = Some(format!("{operation} failed: {}{why}", error.message));
    rec.error_code = Some(error.code);
}
