//! The engine: runs one invocation's [`Batch`] and accounts for every item.
//!
//! Units run in waves (one wave unless SQS FIFO, where the records of a message group run in
//! order, one per wave). Per wave: decide the wave's undecided ARNs with at most
//! `MAX_CONCURRENCY` in flight ([`delete::decide`]); route each item by the routing table;
//! dead-letter what goes to the DLQ; hand back the rest. A unit with any item that must be
//! handed back is handed back whole and none of its items is dead-lettered: the redelivered
//! unit brings them back, so each item still ends in exactly one place. Once a FIFO record is
//! handed back, the later records of its group are handed back unprocessed.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde_json::Value;
use tokio::time::Instant;

use crate::batch::{self, Batch, Rejected, Unit};
use crate::config::Config;
use crate::deadletter::{self, Failure, SourceRef};
use crate::delete::{self, Rules};
use crate::event::{Decoded, InvocationKind};
use crate::outcome::{
    destination, settle, Destination, Final, Need, ResultRecord, Status, Subject,
};
use crate::output_resources::guard::Clock;
use crate::output_resources::mode::Mode;
use crate::output_resources::run::Cleaners;
use crate::ports::{Amis, ContainerImages, DeadLetterSink, ImageUse, Images, Progress};
use crate::retention::rfc3339::DAY_MS;
use crate::retry::{Deadlines, RetryPolicy, DEAD_LETTER_CALLS_IN_FLIGHT};

/// Error code of an item not processed because an earlier record of its FIFO group is
/// being retried.
pub const FIFO_GROUP_BLOCKED: &str = "FifoGroupBlocked";

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

/// Runs decoded invocations against the ports.
pub struct Engine<'a, I, D, A, C> {
    config: &'a Config,
    images: &'a I,
    dead_letters: Option<&'a D>,
    cleaners: &'a Cleaners<A, C>,
    progress: Option<&'a dyn Progress>,
}

impl<'a, I: Images, D: DeadLetterSink, A: Amis + ImageUse, C: ContainerImages>
    Engine<'a, I, D, A, C>
{
    /// `dead_letters` is `Some` exactly when `DEAD_LETTER_QUEUE_URL` is configured.
    pub fn new(
        config: &'a Config,
        images: &'a I,
        dead_letters: Option<&'a D>,
        cleaners: &'a Cleaners<A, C>,
    ) -> Self {
        Engine {
            config,
            images,
            dead_letters,
            cleaners,
            progress: None,
        }
    }

    /// Tells `progress` the number of distinct ARNs, then each one as it is decided.
    pub fn with_progress(mut self, progress: &'a dyn Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Builds the batch, then runs it wave by wave. Never fails: every item ends in
    /// [`Execution::records`] as done, dead-lettered or handed back.
    pub async fn run(&self, decoded: &Decoded, inv: &Invocation, output_mode: Mode) -> Execution {
        let base_dry_run = self.config.dry_run || decoded.options.dry_run;
        let guards = self.config.guards(&inv.invoked_function_arn);
        let batch = batch::build(decoded, &guards, base_dry_run, output_mode, &inv.request_id);
        let backlog = batch.tasks.len() + batch.rejected.len();
        let deadlines = Deadlines::new(inv.deadline, self.config.deadline_margin, backlog);
        let rules = Rules {
            protect_tag_key: self.config.protect_tag_key.as_deref(),
            output_mode,
            require_complete: self.config.require_complete_cleanup,
            policy: self.policy(),
            window: deadlines.calls(),
            deadline_margin: self.config.deadline_margin,
            clock: Clock {
                now_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
                grace_ms: i64::from(self.config.in_use_grace_days) * DAY_MS,
            },
        };
        if let Some(p) = self.progress {
            p.start(batch.tasks.len());
        }
        let mut run = Run::new(&batch);
        for wave in 0.. {
            let units = run.wave(wave);
            if units.is_empty() {
                break;
            }
            self.decide(&mut run, &units, &rules).await;
            let routes = run.route(&units, self.dead_letters.is_some());
            let settled = self.dead_letter(&run, routes, &deadlines).await;
            run.settle(&units, settled);
            run.block_fifo(wave);
        }
        // The report's `dryRun`: the whole invocation was a dry run.
        run.into_execution(base_dry_run || decoded.is_dry_run())
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.config.max_attempts,
            backoff: self.config.backoff,
        }
    }

    /// Decides the wave's ARNs not decided yet, each distinct ARN once.
    async fn decide(&self, run: &mut Run<'_>, units: &[usize], rules: &Rules<'_>) {
        let mut todo = Vec::new();
        let mut queued = HashSet::new();
        for &u in units {
            for &t in &run.batch.units[u].tasks {
                if run.tasks[t].record.is_none() && queued.insert(t) {
                    todo.push(t);
                }
            }
        }
        let tasks = &run.batch.tasks;
        let decided: Vec<(usize, delete::Decided)> = futures::stream::iter(todo)
            .map(|t| async move {
                (
                    t,
                    delete::decide(self.images, self.cleaners, &tasks[t], rules).await,
                )
            })
            .buffer_unordered(self.config.max_concurrency.max(1))
            .inspect(|_| {
                if let Some(p) = self.progress {
                    p.decided();
                }
            })
            .collect()
            .await;
        for (t, d) in decided {
            run.delete_latencies.extend(d.delete_latencies);
            run.tasks[t].record = Some(d.record);
        }
    }

    /// Sends what is routed to the DLQ and settles every route: dead-lettered, or handed
    /// back with the reason the send failed (or that no DLQ is configured).
    async fn dead_letter(
        &self,
        run: &Run<'_>,
        routes: Vec<Route>,
        deadlines: &Deadlines,
    ) -> Vec<Settled> {
        let failed_at = SystemTime::now();
        let (to_send, to_hand_back): (Vec<Route>, Vec<Route>) = routes
            .into_iter()
            .partition(|r| r.destination == Destination::DeadLetter);
        let messages: Vec<_> = to_send
            .iter()
            .enumerate()
            .map(|(i, r)| deadletter::message(format!("m{i}"), run.failure(r), failed_at))
            .collect();
        let sent = match self.dead_letters {
            Some(sink) if !messages.is_empty() => {
                let window = deadlines.dead_letters();
                let limit = DEAD_LETTER_CALLS_IN_FLIGHT;
                deadletter::send_all(sink, &messages, &self.policy(), window, limit).await
            }
            _ => Vec::new(),
        };
        let sent = to_send
            .into_iter()
            .zip(sent)
            .map(|(route, result)| Settled {
                reason: result
                    .as_ref()
                    .err()
                    .map(|e| format!("SendMessageBatch failed: {e}")),
                fin: settle(Destination::DeadLetter, result.is_ok()),
                route,
            });
        let handed_back = to_hand_back.into_iter().map(|route| Settled {
            fin: settle(route.destination, false),
            reason: Some(NO_DLQ.to_string()),
            route,
        });
        sent.chain(handed_back).collect()
    }
}

const NO_DLQ: &str = "DEAD_LETTER_QUEUE_URL is not set";

/// One item of a unit: a distinct ARN or a rejected input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemRef {
    Task(usize),
    Rejected(usize),
}

/// Where one item of one unit goes (only items that are not simply done).
#[derive(Debug, Clone, Copy)]
struct Route {
    unit: usize,
    item: ItemRef,
    destination: Destination,
}

/// A route after the dead-letter send.
struct Settled {
    route: Route,
    fin: Final,
    /// Why the item was handed back, when it was.
    reason: Option<String>,
}

/// The state of one distinct ARN.
#[derive(Default)]
struct TaskState {
    record: Option<ResultRecord>,
    /// Dead letters this ARN needed (one per unit that named it) and how many were sent.
    dead_letters_needed: u32,
    dead_letters_sent: u32,
    handed_back: bool,
}

/// The state of one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnitState {
    Pending,
    Done,
    HandedBack,
    /// A FIFO record after one of its group that was handed back: not processed.
    Blocked,
}

/// The state of one run: a record per task, per rejected item, per unit and per lane.
struct Run<'b> {
    batch: &'b Batch,
    tasks: Vec<TaskState>,
    rejected: Vec<Option<Final>>,
    units: Vec<UnitState>,
    lane_blocked: Vec<bool>,
    not_dead_lettered: Vec<NotDeadLettered>,
    delete_latencies: Vec<Duration>,
}

impl<'b> Run<'b> {
    fn new(batch: &'b Batch) -> Self {
        Run {
            batch,
            tasks: batch.tasks.iter().map(|_| TaskState::default()).collect(),
            rejected: vec![None; batch.rejected.len()],
            units: vec![UnitState::Pending; batch.units.len()],
            lane_blocked: vec![false; batch.lanes.len()],
            not_dead_lettered: Vec::new(),
            delete_latencies: Vec::new(),
        }
    }

    /// The units of a wave: the `wave`-th unit of every lane that is not blocked.
    fn wave(&self, wave: usize) -> Vec<usize> {
        self.batch
            .lanes
            .iter()
            .zip(&self.lane_blocked)
            .filter(|(_, blocked)| !**blocked)
            .filter_map(|(lane, _)| lane.get(wave).copied())
            .collect()
    }

    /// Routes every item of the given units that is not simply done.
    fn route(&self, units: &[usize], dlq_configured: bool) -> Vec<Route> {
        let kind = self.batch.kind;
        let mut routes = Vec::new();
        for &u in units {
            let unit = &self.batch.units[u];
            let items = unit
                .tasks
                .iter()
                .map(|&t| (ItemRef::Task(t), self.need(t)))
                .chain(
                    unit.rejected
                        .iter()
                        .map(|&r| (ItemRef::Rejected(r), Need::DeadLetter)),
                )
                .map(|(item, need)| (item, destination(kind, need, dlq_configured)))
                .filter(|(_, d)| *d != Destination::Done)
                .collect::<Vec<_>>();
            let whole = items.iter().any(|(_, d)| *d == Destination::HandBack);
            routes.extend(items.into_iter().map(|(item, destination)| Route {
                unit: u,
                item,
                destination: if whole {
                    Destination::HandBack
                } else {
                    destination
                },
            }));
        }
        routes
    }

    fn need(&self, t: usize) -> Need {
        self.record(t).need()
    }

    fn record(&self, t: usize) -> &ResultRecord {
        self.tasks[t]
            .record
            .as_ref()
            .expect("the wave's tasks are decided before they are routed")
    }

    /// The dead-letter facts of a routed item.
    fn failure(&self, route: &Route) -> Failure<'_> {
        let unit = &self.batch.units[route.unit];
        let source = SourceRef {
            kind: unit.kind,
            id: &unit.id,
        };
        match route.item {
            ItemRef::Task(t) => {
                let rec = self.record(t);
                Failure {
                    subject: &rec.subject,
                    error_code: rec.error_code.as_deref().unwrap_or("Unknown"),
                    message: rec.message.as_deref().unwrap_or(""),
                    retryable: rec.retryable.unwrap_or(false),
                    attempts: rec.attempts,
                    source,
                    options: self.batch.tasks[t].options,
                }
            }
            ItemRef::Rejected(r) => {
                let rej = &self.batch.rejected[r];
                Failure {
                    subject: &rej.subject,
                    error_code: rej.rejection.code.as_str(),
                    message: &rej.rejection.message,
                    retryable: false,
                    attempts: 0,
                    source,
                    options: rej.options,
                }
            }
        }
    }

    /// Applies the wave's settled routes to the task, item and unit states.
    fn settle(&mut self, units: &[usize], settled: Vec<Settled>) {
        for &u in units {
            self.units[u] = UnitState::Done;
        }
        let sqs = matches!(self.batch.kind, InvocationKind::Sqs { .. });
        for Settled { route, fin, reason } in settled {
            if fin == Final::HandedBack {
                self.units[route.unit] = UnitState::HandedBack;
            }
            match route.item {
                ItemRef::Task(t) => {
                    let state = &mut self.tasks[t];
                    state.dead_letters_needed += 1;
                    state.dead_letters_sent += u32::from(fin == Final::DeadLettered);
                    state.handed_back |= fin == Final::HandedBack;
                }
                ItemRef::Rejected(r) => self.rejected[r] = Some(fin),
            }
            // For SQS a hand-back is routine (redelivery); elsewhere it fails the invocation,
            // and the error lists what is not in the DLQ.
            if fin == Final::HandedBack && !sqs {
                self.not_dead_lettered.push(NotDeadLettered {
                    what: self.label(route.item),
                    reason: reason.unwrap_or_else(|| NO_DLQ.to_string()),
                });
            }
        }
    }

    fn label(&self, item: ItemRef) -> String {
        match item {
            ItemRef::Task(t) => self.batch.tasks[t].arn.as_str().to_string(),
            ItemRef::Rejected(r) => match &self.batch.rejected[r].subject {
                Subject::Input(Value::String(s)) => s.clone(),
                Subject::Input(v) => v.to_string(),
                Subject::Arn(a) => a.clone(),
            },
        }
    }

    /// SQS FIFO: a handed-back record blocks the later records of its group.
    fn block_fifo(&mut self, wave: usize) {
        if !self.batch.is_fifo() {
            return;
        }
        for (lane, units) in self.batch.lanes.iter().enumerate() {
            if units.get(wave).map(|&u| self.units[u]) == Some(UnitState::HandedBack) {
                self.lane_blocked[lane] = true;
                for &later in &units[wave + 1..] {
                    self.units[later] = UnitState::Blocked;
                }
            }
        }
    }

    /// Records: distinct ARNs, then rejected items.
    fn into_execution(self, dry_run: bool) -> Execution {
        let blocked_by = |item: ItemRef| {
            self.batch.units.iter().enumerate().find(|(u, unit)| {
                self.units[*u] == UnitState::Blocked
                    && match item {
                        ItemRef::Task(t) => unit.tasks.contains(&t),
                        ItemRef::Rejected(r) => unit.rejected.contains(&r),
                    }
            })
        };
        let mut records = Vec::with_capacity(self.tasks.len() + self.rejected.len());
        for (t, state) in self.tasks.iter().enumerate() {
            records.push(match &state.record {
                Some(rec) => ResultRecord {
                    dead_lettered: state.dead_letters_needed > 0
                        && state.dead_letters_needed == state.dead_letters_sent,
                    handed_back: state.handed_back,
                    ..rec.clone()
                },
                None => blocked_record(
                    Subject::Arn(self.batch.tasks[t].arn.as_str().to_string()),
                    blocked_by(ItemRef::Task(t)).map(|(_, unit)| unit),
                ),
            });
        }
        for (r, fin) in self.rejected.iter().enumerate() {
            let rej = &self.batch.rejected[r];
            records.push(match fin {
                Some(fin) => rejected_record(rej, *fin),
                None => blocked_record(
                    rej.subject.clone(),
                    blocked_by(ItemRef::Rejected(r)).map(|(_, unit)| unit),
                ),
            });
        }
        let handed_back = self
            .batch
            .units
            .iter()
            .zip(&self.units)
            .filter(|(_, s)| matches!(s, UnitState::HandedBack | UnitState::Blocked))
            .map(|(u, _)| u.id.clone())
            .collect();
        Execution {
            kind: self.batch.kind,
            dry_run,
            records,
            handed_back,
            not_dead_lettered: self.not_dead_lettered,
            delete_latencies: self.delete_latencies,
        }
    }
}

fn rejected_record(rej: &Rejected, fin: Final) -> ResultRecord {
    ResultRecord {
        error_code: Some(rej.rejection.code.as_str().to_string()),
        message: Some(rej.rejection.message.clone()),
        dead_lettered: fin == Final::DeadLettered,
        handed_back: fin == Final::HandedBack,
        ..ResultRecord::new(rej.subject.clone(), Status::Rejected)
    }
}

/// An item of a FIFO record not processed because an earlier record of its group is handed
/// back: handed back too, with the group named.
fn blocked_record(subject: Subject, unit: Option<&Unit>) -> ResultRecord {
    let group = unit.and_then(|u| u.group.as_deref()).unwrap_or_default();
    ResultRecord {
        error_code: Some(FIFO_GROUP_BLOCKED.to_string()),
        message: Some(format!(
            "not processed: an earlier record of FIFO message group {group:?} in this batch \
             needs a retry, so this record is handed back to keep the group's order"
        )),
        retryable: Some(true),
        handed_back: true,
        ..ResultRecord::new(subject, Status::NotAttempted)
    }
}
