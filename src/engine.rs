//! The engine: plan → execute → dead-letter → route, for one decoded invocation.
//!
//! * **plan**: validate each candidate against this invocation's guards (rejections keep
//!   the raw input), deduplicate ARNs (a `HashMap`, so the same ARN named many times is
//!   deleted once and every source that named it shares that outcome);
//! * **execute**: at most `MAX_CONCURRENCY` ARNs in flight; each call goes through the one
//!   retry loop ([`with_retries`]: full-jitter exponential backoff, counts attempts,
//!   never starts an attempt or a backoff that would cross the deadline margin);
//! * **dead-letter** what SPEC §4 routes to the DLQ, **route** the rest (hand back).
//!
//! SQS FIFO: records of one message group run in waves, in order; once a record is handed
//! back, the later records of its group are handed back unprocessed. Everything else runs
//! as a single wave.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use serde_json::Value;
use tokio::time::Instant;

use crate::arn::{self, AllowList, Guards, ImageArn, RejectCode, Rejection};
use crate::config::{Backoff, Config, InvocationGuards};
use crate::deadletter::{self, Failure, SourceRef};
use crate::event::{Decoded, InvocationKind, Item, ItemOptions};
use crate::outcome::{
    destination, settle, Destination, Final, Need, ResultRecord, Status, Subject,
};
use crate::output_resources::run::{self as cleanup, Cleaners, Settings};
use crate::output_resources::{plan as output_plan, Mode, Verdict};
use crate::ports::{Amis, CallError, ContainerImages, DeadLetterSink, ErrorClass, Images};

// ---------------------------------------------------------------------------------------
// Retry loop
// ---------------------------------------------------------------------------------------

/// How many attempts and how long to wait between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff: Backoff,
}

/// When attempts may start and when any call in flight is abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// No attempt (and no backoff sleep) starts or ends after this.
    pub start_by: Instant,
    /// A call still in flight at this instant is abandoned (retryable `Timeout`).
    pub finish_by: Instant,
}

/// The result of [`with_retries`].
#[derive(Debug, Clone, PartialEq)]
pub enum Attempted<T> {
    Done {
        value: T,
        attempts: u32,
        latencies: Vec<Duration>,
    },
    /// Non-retryable error, retries exhausted, or the deadline stopped further attempts.
    Failed {
        error: CallError,
        attempts: u32,
        latencies: Vec<Duration>,
        stopped_by_deadline: bool,
    },
    /// The window closed before the first attempt.
    NotStarted,
}

/// Full-jitter exponential backoff: a delay uniformly drawn from
/// `[0, min(cap, base × 2^(attempt−1))]`; `unit` is the random draw in `[0, 1)`.
pub fn backoff_delay(backoff: &Backoff, attempt: u32, unit: f64) -> Duration {
    let exp = backoff
        .base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    exp.min(backoff.cap).mul_f64(unit.clamp(0.0, 1.0))
}

/// The one retry loop. We retry ourselves (the SDK's retry is disabled) because attempts
/// must be counted per ARN, the Lambda deadline must be respected, and 429
/// `CallRateLimitExceededException` is not in the SDK's throttling list. Only
/// [`ErrorClass::Retryable`] errors are retried.
pub async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    window: Window,
    mut call: F,
) -> Attempted<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut attempts = 0;
    let mut latencies = Vec::new();
    loop {
        if Instant::now() >= window.start_by {
            return Attempted::NotStarted;
        }
        attempts += 1;
        let started = Instant::now();
        let result = match tokio::time::timeout_at(window.finish_by, call()).await {
            Ok(r) => r,
            Err(_) => Err(CallError::retryable(
                "Timeout",
                "no response before the Lambda deadline margin; the call was abandoned",
            )),
        };
        latencies.push(started.elapsed());
        let error = match result {
            Ok(value) => {
                return Attempted::Done {
                    value,
                    attempts,
                    latencies,
                }
            }
            Err(e) => e,
        };
        if error.class != ErrorClass::Retryable || attempts >= policy.max_attempts {
            return Attempted::Failed {
                error,
                attempts,
                latencies,
                stopped_by_deadline: false,
            };
        }
        let delay = backoff_delay(&policy.backoff, attempts, fastrand::f64());
        // A backoff sleep never crosses the point after which no attempt may start.
        if Instant::now() + delay >= window.start_by {
            return Attempted::Failed {
                error,
                attempts,
                latencies,
                stopped_by_deadline: true,
            };
        }
        tokio::time::sleep(delay).await;
    }
}

// ---------------------------------------------------------------------------------------
// Deadlines
// ---------------------------------------------------------------------------------------

/// The three instants derived from the Lambda deadline and `DEADLINE_MARGIN_MS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// `deadline − margin`: no image call or retry starts after this.
    pub start_by: Instant,
    /// `deadline − margin/2`: image calls still in flight are abandoned (retryable).
    pub calls_by: Instant,
    /// `deadline − margin/4`: dead-letter sends are abandoned; the last quarter of the
    /// margin is left for building and returning the report.
    pub dead_letters_by: Instant,
}

impl Deadlines {
    pub fn new(deadline: Instant, margin: Duration) -> Self {
        let before = |d: Duration| deadline.checked_sub(d).unwrap_or(deadline);
        Deadlines {
            start_by: before(margin),
            calls_by: before(margin / 2),
            dead_letters_by: before(margin / 4),
        }
    }
}

/// What the engine needs to know about the invocation besides the event.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The Lambda request id (source id of direct / Step Functions units).
    pub request_id: String,
    /// `arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME` (own account and partition).
    pub invoked_function_arn: String,
    /// The Lambda deadline.
    pub deadline: Instant,
}

impl Invocation {
    /// From the Lambda context: the deadline (epoch ms) becomes a monotonic instant now,
    /// so everything downstream works on tokio time.
    pub fn from_context(ctx: &lambda_runtime::Context) -> Self {
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Invocation {
            request_id: ctx.request_id.clone(),
            invoked_function_arn: ctx.invoked_function_arn.clone(),
            deadline: Instant::now() + remaining_until(ctx.deadline, now_ms),
        }
    }
}

/// Deadlines below this (2001-09-09 in epoch ms) cannot be wall-clock times.
const EPOCH_MS_FLOOR: u64 = 1_000_000_000_000;

/// Time left before `deadline_ms`. Lambda sends Unix epoch milliseconds; some local
/// runtimes (cargo-lambda 1.9 sends `600000`) send the *remaining* milliseconds instead.
/// Read literally such a value lies in 1970 and nothing would ever be attempted, so a value
/// too small to be a wall-clock time is taken as a duration.
pub fn remaining_until(deadline_ms: u64, now_ms: u64) -> Duration {
    if deadline_ms < EPOCH_MS_FLOOR {
        Duration::from_millis(deadline_ms)
    } else {
        Duration::from_millis(deadline_ms.saturating_sub(now_ms))
    }
}

// ---------------------------------------------------------------------------------------
// Plan
// ---------------------------------------------------------------------------------------

/// Error code of an ARN not attempted because the deadline margin was reached.
pub const DEADLINE_REACHED: &str = "DeadlineReached";
/// Error code of an item not processed because an earlier record of its FIFO group is
/// being retried.
pub const FIFO_GROUP_BLOCKED: &str = "FifoGroupBlocked";

struct Task {
    arn: ImageArn,
    /// Effective: the dry run of every level and of the configuration; the
    /// `deleteOutputResources` asked for (`None`: the engine's mode).
    options: ItemOptions,
}

struct Rejected {
    input: Value,
    rejection: Rejection,
    /// Carried into the dead letter, so a redrive repeats the request as it was made.
    options: ItemOptions,
}

struct PlannedUnit {
    kind: &'static str,
    id: String,
    /// Distinct task indices, in first-named order.
    tasks: Vec<usize>,
    /// Indices into the rejected list.
    rejected: Vec<usize>,
}

struct Plan {
    tasks: Vec<Task>,
    rejected: Vec<Rejected>,
    units: Vec<PlannedUnit>,
    /// Lanes of unit indices processed in order (one per FIFO group, else one per unit).
    lanes: Vec<(Option<String>, Vec<usize>)>,
}

fn check(
    candidate: &str,
    g: &InvocationGuards,
    partition_only: &Guards,
) -> Result<ImageArn, Rejection> {
    let arn = arn::parse(candidate)?;
    if let Some(reason) = &g.unresolved_account {
        // SPEC order: the partition is judged before the (unknown) account.
        partition_only.check_partition(&arn)?;
        return Err(Rejection {
            code: RejectCode::AccountNotAllowed,
            message: format!("account {} is not allowed: {reason}", arn.account()),
        });
    }
    g.guards.check(&arn)?;
    Ok(arn)
}

fn plan(
    decoded: &Decoded,
    guards: &InvocationGuards,
    dry_run: bool,
    output_mode: Mode,
    request_id: &str,
) -> Plan {
    let partition_only = Guards {
        partition: guards.guards.partition.clone(),
        accounts: AllowList::Any,
        regions: AllowList::Any,
    };
    let fifo = matches!(decoded.kind, InvocationKind::Sqs { fifo: true });
    let mut index: HashMap<(String, bool), usize> = HashMap::new();
    let mut tasks = Vec::new();
    let mut rejected = Vec::new();
    let mut units = Vec::with_capacity(decoded.units.len());
    let mut lanes: Vec<(Option<String>, Vec<usize>)> = Vec::new();
    let mut lane_of_group: HashMap<String, usize> = HashMap::new();

    for (u, unit) in decoded.units.iter().enumerate() {
        let mut planned = PlannedUnit {
            kind: unit.source.kind.as_str(),
            id: match (&unit.source.id, decoded.kind) {
                (Some(id), _) => id.clone(),
                // An SQS record without a messageId: an empty identifier makes Lambda treat
                // the whole batch as failed, which is the safe direction.
                (None, InvocationKind::Sqs { .. }) => String::new(),
                (None, _) => request_id.to_string(),
            },
            tasks: Vec::new(),
            rejected: Vec::new(),
        };
        // Dry run can only be turned on: by configuration, the invocation or the unit.
        let unit_options = ItemOptions {
            dry_run: dry_run || unit.dry_run,
            delete_output_resources: None,
        };
        let mut seen_in_unit: HashMap<usize, ()> = HashMap::new();
        for item in &unit.items {
            let (input, rejection, options) = match item {
                Item::Invalid { input, message } => (
                    input.clone(),
                    Rejection {
                        code: RejectCode::InvalidMessage,
                        message: message.clone(),
                    },
                    unit_options,
                ),
                Item::Candidate { arn: s, options } => {
                    let options = unit_options.within(*options);
                    match check(s, guards, &partition_only) {
                        Ok(arn) => {
                            let t = add_task(&mut tasks, &mut index, arn, options, output_mode);
                            if seen_in_unit.insert(t, ()).is_none() {
                                planned.tasks.push(t);
                            }
                            continue;
                        }
                        Err(rejection) => (Value::String(s.clone()), rejection, options),
                    }
                }
            };
            rejected.push(Rejected {
                input,
                rejection,
                options,
            });
            planned.rejected.push(rejected.len() - 1);
        }
        units.push(planned);
        match (&unit.group_id, fifo) {
            (Some(g), true) => {
                let lane = *lane_of_group.entry(g.clone()).or_insert_with(|| {
                    lanes.push((Some(g.clone()), Vec::new()));
                    lanes.len() - 1
                });
                lanes[lane].1.push(u);
            }
            _ => lanes.push((None, vec![u])),
        }
    }
    Plan {
        tasks,
        rejected,
        units,
        lanes,
    }
}

/// The task of `arn` with these options: one per (ARN, effective dry run). When the sources
/// that name it ask for different output resources, only what all of them asked for goes.
fn add_task(
    tasks: &mut Vec<Task>,
    index: &mut HashMap<(String, bool), usize>,
    arn: ImageArn,
    options: ItemOptions,
    default_mode: Mode,
) -> usize {
    let key = (arn.as_str().to_string(), options.dry_run);
    if let Some(&t) = index.get(&key) {
        let known = &mut tasks[t].options.delete_output_resources;
        if *known != options.delete_output_resources {
            let mode = |m: Option<Mode>| m.unwrap_or(default_mode);
            *known = Some(mode(*known).narrowest(mode(options.delete_output_resources)));
        }
        return t;
    }
    tasks.push(Task { arn, options });
    index.insert(key, tasks.len() - 1);
    tasks.len() - 1
}

// ---------------------------------------------------------------------------------------
// Execute + route
// ---------------------------------------------------------------------------------------

/// An item (ARN or rejected input) that had to be dead-lettered and was not, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotDeadLettered {
    /// The ARN, or the raw input of a rejected item.
    pub what: String,
    pub reason: String,
}

/// Everything the engine did in one invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub kind: InvocationKind,
    pub dry_run: bool,
    /// One per distinct ARN, then one per rejected item (input order within each).
    pub records: Vec<ResultRecord>,
    /// Source ids (SQS messageIds) of the units handed back, in input order.
    pub handed_back: Vec<String>,
    /// Items that needed the DLQ and are not in it (non-empty ⇒ hand back).
    pub not_dead_lettered: Vec<NotDeadLettered>,
    /// Duration of every DeleteImage call made (for metrics).
    pub delete_latencies: Vec<Duration>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum UnitState {
    Pending,
    Done,
    HandedBack,
    Blocked,
}

/// Runs one decoded invocation against the ports.
pub struct Engine<'a, I, D, A, C> {
    pub config: &'a Config,
    pub images: &'a I,
    pub dead_letters: Option<&'a D>,
    /// EC2 / ECR, for the output resources (issue 5).
    pub output: &'a Cleaners<A, C>,
    /// `DELETE_OUTPUT_RESOURCES`, or this invocation's valid `"deleteOutputResources"`.
    pub output_mode: Mode,
}

impl<I: Images, D: DeadLetterSink, A: Amis, C: ContainerImages> Engine<'_, I, D, A, C> {
    /// Plans, executes, dead-letters and routes. Never fails: every item ends in
    /// [`Execution::records`] as done, dead-lettered or handed back.
    pub async fn run(&self, decoded: &Decoded, inv: &Invocation) -> Execution {
        let cfg = self.config;
        let base_dry_run = cfg.dry_run || decoded.options.dry_run;
        // The report's `dryRun`: the whole invocation was a dry run.
        let dry_run = base_dry_run || decoded.is_dry_run();
        let guards = cfg.guards(&inv.invoked_function_arn);
        let plan = plan(
            decoded,
            &guards,
            base_dry_run,
            self.output_mode,
            &inv.request_id,
        );
        let deadlines = Deadlines::new(inv.deadline, cfg.deadline_margin);
        let policy = RetryPolicy {
            max_attempts: cfg.max_attempts,
            backoff: cfg.backoff,
        };
        let image_window = Window {
            start_by: deadlines.start_by,
            finish_by: deadlines.calls_by,
        };
        let dlq_window = Window {
            start_by: deadlines.dead_letters_by,
            finish_by: deadlines.dead_letters_by,
        };
        let fifo = matches!(decoded.kind, InvocationKind::Sqs { fifo: true });

        let mut outcomes: Vec<Option<ResultRecord>> = vec![None; plan.tasks.len()];
        let mut task_dlq: Vec<(u32, u32)> = vec![(0, 0); plan.tasks.len()]; // (needed, sent)
        let mut task_handed_back = vec![false; plan.tasks.len()];
        let mut rejected_final: Vec<Option<Final>> = vec![None; plan.rejected.len()];
        let mut unit_state = vec![UnitState::Pending; plan.units.len()];
        let mut lane_blocked = vec![false; plan.lanes.len()];
        let mut delete_latencies = Vec::new();
        let mut not_dead_lettered = Vec::new();

        for wave in 0.. {
            let wave_units: Vec<usize> = plan
                .lanes
                .iter()
                .zip(&lane_blocked)
                .filter(|(_, blocked)| !**blocked)
                .filter_map(|((_, lane), _)| lane.get(wave).copied())
                .collect();
            if wave_units.is_empty() {
                break;
            }

            // Execute the ARNs of this wave not decided yet (each distinct ARN once).
            let mut todo: Vec<usize> = Vec::new();
            let mut queued = vec![false; 0];
            queued.resize(plan.tasks.len(), false);
            for &u in &wave_units {
                for &t in &plan.units[u].tasks {
                    if outcomes[t].is_none() && !queued[t] {
                        queued[t] = true;
                        todo.push(t);
                    }
                }
            }
            let done: Vec<(usize, ResultRecord, Vec<Duration>)> = futures::stream::iter(todo)
                .map(|t| {
                    let task = &plan.tasks[t];
                    async move {
                        let (record, lat) = self.run_arn(task, &policy, image_window).await;
                        (t, record, lat)
                    }
                })
                .buffer_unordered(cfg.max_concurrency.max(1))
                .collect()
                .await;
            for (t, record, lat) in done {
                delete_latencies.extend(lat);
                outcomes[t] = Some(record);
            }

            // Route each item of the wave; collect what goes to the DLQ. A unit with any item
            // that must be handed back is handed back whole, and none of its items is
            // dead-lettered: the redelivered unit brings them back, so each item still ends
            // in exactly one place (no DLQ duplicate per redelivery).
            enum Ref {
                Task(usize),
                Rejected(usize),
            }
            let failed_at = SystemTime::now();
            let dlq_configured = self.dead_letters.is_some();
            let mut messages = Vec::new();
            let mut owners: Vec<(usize, Ref)> = Vec::new(); // (unit, item) per message
            let mut pending: Vec<(usize, Ref, Destination)> = Vec::new();
            for &u in &wave_units {
                let unit = &plan.units[u];
                let source = SourceRef {
                    kind: unit.kind,
                    id: &unit.id,
                };
                let task_dest = |t: usize| {
                    let rec = outcomes[t].as_ref().expect("executed above");
                    let need = rec.status.need(rec.retryable.unwrap_or(false));
                    destination(decoded.kind, need, dlq_configured)
                };
                let rejected_dest = destination(decoded.kind, Need::DeadLetter, dlq_configured);
                let hand_back_whole = unit
                    .tasks
                    .iter()
                    .any(|&t| task_dest(t) == Destination::HandBack)
                    || (!unit.rejected.is_empty() && rejected_dest == Destination::HandBack);
                for &t in &unit.tasks {
                    let dest = match task_dest(t) {
                        Destination::DeadLetter if hand_back_whole => Destination::HandBack,
                        d => d,
                    };
                    if dest == Destination::DeadLetter {
                        let rec = outcomes[t].as_ref().expect("executed above");
                        messages.push(deadletter::message(
                            format!("m{}", messages.len()),
                            failure_of(rec, source, plan.tasks[t].options),
                            failed_at,
                        ));
                        owners.push((u, Ref::Task(t)));
                    } else {
                        pending.push((u, Ref::Task(t), dest));
                    }
                }
                for &r in &unit.rejected {
                    let rej = &plan.rejected[r];
                    if hand_back_whole {
                        pending.push((u, Ref::Rejected(r), Destination::HandBack));
                        continue;
                    }
                    let subject = Subject::Input(rej.input.clone());
                    messages.push(deadletter::message(
                        format!("m{}", messages.len()),
                        Failure {
                            subject: &subject,
                            error_code: rej.rejection.code.as_str(),
                            message: &rej.rejection.message,
                            retryable: false,
                            attempts: 0,
                            source,
                            options: rej.options,
                        },
                        failed_at,
                    ));
                    owners.push((u, Ref::Rejected(r)));
                }
            }
            let sent = match self.dead_letters {
                Some(sink) if !messages.is_empty() => {
                    deadletter::send_all(sink, &messages, &policy, dlq_window, cfg.max_concurrency)
                        .await
                }
                _ => Vec::new(),
            };
            let no_dlq_reason = "DEAD_LETTER_QUEUE_URL is not set".to_string();
            let mut settled: Vec<(usize, Ref, Final, Option<String>)> = Vec::new();
            for ((u, what), result) in owners.into_iter().zip(sent) {
                let reason = result
                    .as_ref()
                    .err()
                    .map(|e| format!("SendMessageBatch failed: {e}"));
                settled.push((
                    u,
                    what,
                    settle(Destination::DeadLetter, result.is_ok()),
                    reason,
                ));
            }
            for (u, what, dest) in pending {
                let reason = (dest == Destination::HandBack).then(|| no_dlq_reason.clone());
                settled.push((u, what, settle(dest, false), reason));
            }
            for &u in &wave_units {
                unit_state[u] = UnitState::Done;
            }
            let non_sqs = !matches!(decoded.kind, InvocationKind::Sqs { .. });
            for (u, what, fin, reason) in settled {
                if fin == Final::HandedBack {
                    unit_state[u] = UnitState::HandedBack;
                }
                let label = match what {
                    Ref::Task(t) => {
                        if fin != Final::Done {
                            task_dlq[t].0 += 1;
                        }
                        if fin == Final::DeadLettered {
                            task_dlq[t].1 += 1;
                        }
                        if fin == Final::HandedBack {
                            task_handed_back[t] = true;
                        }
                        plan.tasks[t].arn.as_str().to_string()
                    }
                    Ref::Rejected(r) => {
                        rejected_final[r] = Some(fin);
                        match &plan.rejected[r].input {
                            Value::String(s) => s.clone(),
                            v => v.to_string(),
                        }
                    }
                };
                // For SQS a hand-back is routine (redelivery); elsewhere it fails the
                // invocation, and the error lists what is not in the DLQ.
                if fin == Final::HandedBack && non_sqs {
                    not_dead_lettered.push(NotDeadLettered {
                        what: label,
                        reason: reason.unwrap_or_else(|| no_dlq_reason.clone()),
                    });
                }
            }
            if fifo {
                for (lane, (_, units)) in plan.lanes.iter().enumerate() {
                    if let Some(&u) = units.get(wave) {
                        if unit_state[u] == UnitState::HandedBack {
                            lane_blocked[lane] = true;
                            for &later in &units[wave + 1..] {
                                unit_state[later] = UnitState::Blocked;
                            }
                        }
                    }
                }
            }
        }

        // Records: distinct ARNs, then rejected items.
        let group_of_unit: HashMap<usize, &str> = plan
            .lanes
            .iter()
            .filter_map(|(g, units)| g.as_deref().map(|g| (g, units)))
            .flat_map(|(g, units)| units.iter().map(move |&u| (u, g)))
            .collect();
        // An item of a FIFO record that was not processed because an earlier record of its
        // group is handed back: handed back too, with the group named.
        let blocked_record = |subject: Subject, u: usize| ResultRecord {
            subject,
            status: Status::NotAttempted,
            request_id: None,
            error_code: Some(FIFO_GROUP_BLOCKED.to_string()),
            message: Some(format!(
                "not processed: an earlier record of FIFO message group {:?} in this batch \
                 needs a retry, so this record is handed back to keep the group's order",
                group_of_unit.get(&u).copied().unwrap_or_default()
            )),
            retryable: Some(true),
            attempts: 0,
            latency_ms: 0,
            dead_lettered: false,
            handed_back: true,
            output_resources: Vec::new(),
        };
        let mut blocked_by: Vec<Option<usize>> = vec![None; plan.tasks.len()];
        let mut rejected_blocked_by: Vec<Option<usize>> = vec![None; plan.rejected.len()];
        for (u, unit) in plan.units.iter().enumerate() {
            if unit_state[u] == UnitState::Blocked {
                for &t in &unit.tasks {
                    blocked_by[t].get_or_insert(u);
                }
                for &r in &unit.rejected {
                    rejected_blocked_by[r] = Some(u);
                }
            }
        }
        let mut records = Vec::with_capacity(plan.tasks.len() + plan.rejected.len());
        for (t, outcome) in outcomes.into_iter().enumerate() {
            let rec = match outcome {
                Some(mut rec) => {
                    let (needed, sent) = task_dlq[t];
                    rec.dead_lettered = needed > 0 && needed == sent;
                    rec.handed_back = task_handed_back[t];
                    rec
                }
                None => blocked_record(
                    Subject::Arn(plan.tasks[t].arn.as_str().to_string()),
                    blocked_by[t].unwrap_or_default(),
                ),
            };
            records.push(rec);
        }
        for (r, rej) in plan.rejected.into_iter().enumerate() {
            let rec = match (rejected_final[r], rejected_blocked_by[r]) {
                (Some(fin), _) => ResultRecord {
                    subject: Subject::Input(rej.input),
                    status: Status::Rejected,
                    request_id: None,
                    error_code: Some(rej.rejection.code.as_str().to_string()),
                    message: Some(rej.rejection.message),
                    retryable: None,
                    attempts: 0,
                    latency_ms: 0,
                    dead_lettered: fin == Final::DeadLettered,
                    handed_back: fin == Final::HandedBack,
                    output_resources: Vec::new(),
                },
                (None, u) => blocked_record(Subject::Input(rej.input), u.unwrap_or_default()),
            };
            records.push(rec);
        }
        let handed_back = plan
            .units
            .iter()
            .zip(&unit_state)
            .filter(|(_, s)| matches!(s, UnitState::HandedBack | UnitState::Blocked))
            .map(|(u, _)| u.id.clone())
            .collect();
        Execution {
            kind: decoded.kind,
            dry_run,
            records,
            handed_back,
            not_dead_lettered,
            delete_latencies,
        }
    }

    /// Decides one distinct ARN: GetImage (protect tag, output resources), the output
    /// resources' cleanup, dry run, and DeleteImage last.
    async fn run_arn(
        &self,
        task: &Task,
        policy: &RetryPolicy,
        window: Window,
    ) -> (ResultRecord, Vec<Duration>) {
        let started = Instant::now();
        let arn = &task.arn;
        let mut rec = ResultRecord {
            subject: Subject::Arn(arn.as_str().to_string()),
            status: Status::WouldDelete,
            request_id: None,
            error_code: None,
            message: None,
            retryable: None,
            attempts: 0,
            latency_ms: 0,
            dead_lettered: false,
            handed_back: false,
            output_resources: Vec::new(),
        };
        let finish = |mut rec: ResultRecord, lat: Vec<Duration>| {
            rec.latency_ms = started.elapsed().as_millis() as u64;
            (rec, lat)
        };

        let mode = task
            .options
            .delete_output_resources
            .unwrap_or(self.output_mode);
        let protect_key = self.config.protect_tag_key.as_deref();
        if protect_key.is_some() || mode.any() {
            let info = match with_retries(policy, window, || self.images.get_image(arn)).await {
                Attempted::Done {
                    value, attempts, ..
                } => {
                    rec.attempts = attempts;
                    if let Some((key, v)) = protect_key.and_then(|k| Some((k, value.tags.get(k)?)))
                    {
                        rec.status = Status::Protected;
                        rec.request_id = value.request_id;
                        rec.message = Some(format!(
                            "skipped: the image carries the protect tag {key}={v}"
                        ));
                        return finish(rec, Vec::new());
                    }
                    value
                }
                other => {
                    // Not found: the image is gone, and GetImage can no longer name its output
                    // resources: `alreadyDeleted` as without the cleanup.
                    apply_failure(&mut rec, other, "GetImage", self.config);
                    return finish(rec, Vec::new());
                }
            };
            if mode.any() {
                let plan =
                    output_plan::build(&info.output_resources, arn.account(), arn.region(), mode);
                let settings = Settings {
                    dry_run: task.options.dry_run,
                    protect_tag_key: protect_key,
                    require_complete: self.config.require_complete_cleanup,
                    policy: *policy,
                    window,
                };
                let done =
                    cleanup::clean(&self.output.amis, &self.output.containers, &plan, &settings)
                        .await;
                rec.output_resources = done.entries;
                match done.verdict {
                    Verdict::Proceed => {}
                    Verdict::Protected { message } => {
                        rec.status = Status::Protected;
                        rec.message = Some(message);
                        return finish(rec, Vec::new());
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
                        return finish(rec, Vec::new());
                    }
                    Verdict::NotAttempted { message } => {
                        rec.status = Status::NotAttempted;
                        rec.error_code = Some(DEADLINE_REACHED.to_string());
                        rec.message = Some(message);
                        rec.retryable = Some(true);
                        return finish(rec, Vec::new());
                    }
                }
            }
        }
        if task.options.dry_run {
            rec.status = Status::WouldDelete;
            return finish(rec, Vec::new());
        }
        let attempted = with_retries(policy, window, || self.images.delete_image(arn)).await;
        let latencies = match &attempted {
            Attempted::Done { latencies, .. } | Attempted::Failed { latencies, .. } => {
                latencies.clone()
            }
            Attempted::NotStarted => Vec::new(),
        };
        match attempted {
            Attempted::Done {
                value, attempts, ..
            } => {
                rec.status = Status::Deleted;
                rec.attempts = attempts;
                rec.request_id = value.request_id;
            }
            other => apply_failure(&mut rec, other, "DeleteImage", self.config),
        }
        finish(rec, latencies)
    }
}

/// Maps a non-`Done` attempt onto the record (NotFound ⇒ `alreadyDeleted`).
fn apply_failure<T>(
    rec: &mut ResultRecord,
    attempted: Attempted<T>,
    operation: &str,
    cfg: &Config,
) {
    match attempted {
        Attempted::Done { .. } => unreachable!("only failures are applied"),
        Attempted::NotStarted => {
            rec.status = Status::NotAttempted;
            rec.retryable = Some(true);
            rec.error_code = Some(DEADLINE_REACHED.to_string());
            rec.message = Some(format!(
                "{operation} not attempted: less than DEADLINE_MARGIN_MS ({} ms) remained before the Lambda deadline",
                cfg.deadline_margin.as_millis()
            ));
        }
        Attempted::Failed {
            error, attempts, ..
        } if error.class == ErrorClass::NotFound => {
            rec.status = Status::AlreadyDeleted;
            rec.attempts = attempts;
            rec.request_id = error.request_id;
        }
        Attempted::Failed {
            error,
            attempts,
            stopped_by_deadline,
            ..
        } => {
            let retryable = error.class == ErrorClass::Retryable;
            let why = if stopped_by_deadline {
                format!("; gave up after {attempts} attempt(s) because the Lambda deadline is near")
            } else if retryable {
                format!("; still failing after {attempts} attempt(s) (MAX_ATTEMPTS)")
            } else {
                String::new()
            };
            rec.status = Status::Failed;
            rec.attempts = attempts;
            rec.retryable = Some(retryable);
            rec.request_id = error.request_id;
            rec.message = Some(format!("{operation} failed: {}{why}", error.message));
            rec.error_code = Some(error.code);
        }
    }
}

fn failure_of<'a>(
    rec: &'a ResultRecord,
    source: SourceRef<'a>,
    options: ItemOptions,
) -> Failure<'a> {
    Failure {
        subject: &rec.subject,
        error_code: rec.error_code.as_deref().unwrap_or("Unknown"),
        message: rec.message.as_deref().unwrap_or(""),
        retryable: rec.retryable.unwrap_or(false),
        attempts: rec.attempts,
        source,
        options,
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

    #[test]
    fn backoff_is_full_jitter_exponential_and_capped() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        };
        assert_eq!(backoff_delay(&b, 1, 0.999_999).as_millis(), 99);
        assert_eq!(backoff_delay(&b, 3, 0.5), Duration::from_millis(200));
        assert_eq!(backoff_delay(&b, 10, 1.0), Duration::from_secs(5));
        assert_eq!(backoff_delay(&b, 60, 1.0), Duration::from_secs(5));
        assert_eq!(backoff_delay(&b, 4, 0.0), Duration::ZERO);
    }

    fn window(ms: u64) -> Window {
        let end = Instant::now() + Duration::from_millis(ms);
        Window {
            start_by: end,
            finish_by: end,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_errors_are_retried_up_to_max_attempts_and_no_further() {
        let policy = RetryPolicy {
            max_attempts: 4,
            backoff: Backoff::default(),
        };
        let mut calls = 0;
        let r: Attempted<()> = with_retries(&policy, window(600_000), || {
            calls += 1;
            async {
                Err(CallError::retryable(
                    "CallRateLimitExceededException",
                    "slow down",
                ))
            }
        })
        .await;
        assert_eq!(calls, 4);
        assert!(matches!(
            r,
            Attempted::Failed {
                attempts: 4,
                stopped_by_deadline: false,
                ..
            }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_and_not_found_errors_are_not_retried() {
        let policy = RetryPolicy {
            max_attempts: 5,
            backoff: Backoff::default(),
        };
        for class in [ErrorClass::Permanent, ErrorClass::NotFound] {
            let mut calls = 0;
            let _: Attempted<()> = with_retries(&policy, window(600_000), || {
                calls += 1;
                async move { Err(CallError::new(class, "X", "x")) }
            })
            .await;
            assert_eq!(calls, 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_attempt_starts_after_the_window_and_sleeps_never_cross_it() {
        let policy = RetryPolicy {
            max_attempts: 20,
            backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(1),
            },
        };
        let w = window(3_000);
        let r: Attempted<()> = with_retries(&policy, w, || async {
            Err(CallError::retryable("ServiceException", "boom"))
        })
        .await;
        assert!(Instant::now() < w.start_by);
        assert!(matches!(
            r,
            Attempted::Failed {
                stopped_by_deadline: true,
                ..
            }
        ));
        let r: Attempted<()> = with_retries(&policy, window(0), || async { Ok(()) }).await;
        assert_eq!(r, Attempted::NotStarted);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_still_running_at_the_finish_line_is_abandoned_as_retryable() {
        let policy = RetryPolicy {
            max_attempts: 1,
            backoff: Backoff::default(),
        };
        let r: Attempted<()> = with_retries(&policy, window(1_000), || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        })
        .await;
        match r {
            Attempted::Failed { error, .. } => {
                assert_eq!(error.class, ErrorClass::Retryable);
                assert_eq!(error.code, "Timeout");
            }
            other => panic!("{other:?}"),
        }
    }
}
