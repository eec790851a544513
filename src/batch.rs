//! The work of one invocation (pure): decoded units of items → validated, deduplicated
//! tasks, the rejected items, and the lanes the units run in.
//!
//! Each candidate goes through [`arn::validate`] (a rejection keeps the raw input). The same
//! ARN named many times with the same effective dry run becomes one [`Task`], shared by every
//! unit that named it; when those sources ask for different output resources, only what all
//! of them asked for is deleted. SQS FIFO records of one message group share a lane and run in order;
//! every other unit is a lane of its own, so everything else runs as a single wave.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::arn::{self, Guards, ImageArn, RejectCode, Rejection};
use crate::event::{Decoded, InvocationKind, Item, ItemOptions, PlanCheck};
use crate::outcome::Subject;
use crate::output_resources::mode::Mode;

/// One distinct ARN to decide.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub arn: ImageArn,
    /// Effective: the dry run of every level and of the configuration; the
    /// `deleteOutputResources` asked for (`None`: the invocation's mode).
    pub options: ItemOptions,
    /// A retention plan's build: checked for drift before anything else.
    pub plan: Option<Box<PlanCheck>>,
}

/// An item refused before any call.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The raw input (always [`Subject::Input`]), as the report and the DLQ name it.
    pub subject: Subject,
    pub rejection: Rejection,
    /// Carried into the dead letter, so a redrive repeats the request as it was made.
    pub options: ItemOptions,
}

/// One retryable unit (an SQS record, or the whole invocation) and what it named.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// `source.type` of its dead letters (`sqs`, `eventbridge`, …).
    pub kind: &'static str,
    /// SQS `messageId`, EventBridge event id, or the Lambda request id.
    pub id: String,
    /// The SQS FIFO message group, when the queue is FIFO.
    pub group: Option<String>,
    /// Indices into [`Batch::tasks`]: distinct, in first-named order.
    pub tasks: Vec<usize>,
    /// Indices into [`Batch::rejected`], in input order.
    pub rejected: Vec<usize>,
}

/// The validated, deduplicated work of one invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub kind: InvocationKind,
    pub tasks: Vec<Task>,
    pub rejected: Vec<Rejected>,
    pub units: Vec<Unit>,
    /// Unit indices that run in order: one lane per FIFO group, else one per unit.
    pub lanes: Vec<Vec<usize>>,
}

impl Batch {
    /// Whether the invocation came from an SQS FIFO queue.
    pub fn is_fifo(&self) -> bool {
        matches!(self.kind, InvocationKind::Sqs { fifo: true })
    }
}

/// Builds the batch. `dry_run` is the configured-or-invocation dry run (a unit or an element
/// can only turn it on); `output_mode` is the invocation's. `request_id` names units that
/// carry no id of their own.
pub fn build(
    decoded: &Decoded,
    guards: &Guards,
    dry_run: bool,
    output_mode: Mode,
    request_id: &str,
) -> Batch {
    let mut batch = Batch {
        kind: decoded.kind,
        tasks: Vec::new(),
        rejected: Vec::new(),
        units: Vec::with_capacity(decoded.units.len()),
        lanes: Vec::new(),
    };
    let mut task_of: HashMap<(String, bool), usize> = HashMap::new();
    let mut lane_of_group: HashMap<String, usize> = HashMap::new();
    for (u, unit) in decoded.units.iter().enumerate() {
        let unit_options = ItemOptions {
            dry_run: dry_run || unit.dry_run,
            delete_output_resources: None,
        };
        let mut planned = Unit {
            kind: unit.source.kind.as_str(),
            id: unit_id(unit.source.id.as_deref(), decoded.kind, request_id),
            group: unit.group_id.clone().filter(|_| batch.is_fifo()),
            tasks: Vec::new(),
            rejected: Vec::new(),
        };
        let mut named = HashSet::new();
        for item in &unit.items {
            match validate(item, guards, unit_options) {
                Ok(task) => {
                    let t = add_task(&mut batch.tasks, &mut task_of, task, output_mode);
                    if named.insert(t) {
                        planned.tasks.push(t);
                    }
                }
                Err(rejected) => {
                    batch.rejected.push(rejected);
                    planned.rejected.push(batch.rejected.len() - 1);
                }
            }
        }
        match &planned.group {
            Some(g) => {
                let lane = *lane_of_group.entry(g.clone()).or_insert_with(|| {
                    batch.lanes.push(Vec::new());
                    batch.lanes.len() - 1
                });
                batch.lanes[lane].push(u);
            }
            None => batch.lanes.push(vec![u]),
        }
        batch.units.push(planned);
    }
    batch
}

/// An SQS record without a `messageId` gets an empty identifier: Lambda then treats the
/// whole batch as failed, which is the safe direction. Other units without an id are the
/// invocation itself, named by the Lambda request id.
fn unit_id(id: Option<&str>, kind: InvocationKind, request_id: &str) -> String {
    match (id, kind) {
        (Some(id), _) => id.to_string(),
        (None, InvocationKind::Sqs { .. }) => String::new(),
        (None, _) => request_id.to_string(),
    }
}

/// The task of one valid item (with its effective options), or its rejection.
fn validate(item: &Item, guards: &Guards, unit: ItemOptions) -> Result<Task, Rejected> {
    match item {
        Item::Invalid { input, message } => Err(Rejected {
            subject: Subject::Input(input.clone()),
            rejection: Rejection {
                code: RejectCode::InvalidMessage,
                message: message.clone(),
            },
            options: unit,
        }),
        Item::Candidate {
            arn: s,
            options,
            plan,
        } => {
            let options = unit.within(*options);
            match arn::validate(s, guards) {
                Ok(arn) => Ok(Task {
                    arn,
                    options,
                    plan: plan.clone(),
                }),
                Err(rejection) => Err(Rejected {
                    subject: Subject::Input(Value::String(s.clone())),
                    rejection,
                    options,
                }),
            }
        }
    }
}

/// The index of `task`'s task: one per (ARN, effective dry run). When the sources that name
/// it ask for different output resources, only what all of them asked for goes; when one of
/// them is a retention plan's item, its drift check applies.
fn add_task(
    tasks: &mut Vec<Task>,
    task_of: &mut HashMap<(String, bool), usize>,
    task: Task,
    default_mode: Mode,
) -> usize {
    let key = (task.arn.as_str().to_string(), task.options.dry_run);
    if let Some(&t) = task_of.get(&key) {
        if tasks[t].plan.is_none() {
            tasks[t].plan = task.plan;
        }
        let known = &mut tasks[t].options.delete_output_resources;
        if *known != task.options.delete_output_resources {
            let mode = |m: Option<Mode>| m.unwrap_or(default_mode);
            *known = Some(mode(*known).narrowest(mode(task.options.delete_output_resources)));
        }
        return t;
    }
    tasks.push(task);
    task_of.insert(key, tasks.len() - 1);
    tasks.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arn::AllowList;
    use crate::event::{Source, SourceKind, Unit as DecodedUnit};

    const A: &str = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/1";
    const B: &str = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/2";
    const FOREIGN: &str = "arn:aws:imagebuilder:us-east-1:999999999999:image/web/1.0.0/1";

    fn guards() -> Guards {
        Guards {
            partition: "aws".into(),
            accounts: AllowList::Only(vec!["123456789012".into()]),
            regions: AllowList::Any,
            accounts_unknown: None,
        }
    }

    fn sqs_unit(id: &str, group: Option<&str>, items: &[&str], dry_run: bool) -> DecodedUnit {
        DecodedUnit {
            source: Source {
                kind: SourceKind::Sqs,
                id: Some(id.into()),
            },
            group_id: group.map(str::to_string),
            items: items
                .iter()
                .map(|s| Item::Candidate {
                    arn: s.to_string(),
                    options: ItemOptions::default(),
                    plan: None,
                })
                .collect(),
            dry_run,
        }
    }

    fn sqs(fifo: bool, units: Vec<DecodedUnit>) -> Decoded {
        Decoded {
            kind: InvocationKind::Sqs { fifo },
            units,
            options: Default::default(),
        }
    }

    #[test]
    fn the_same_arn_named_by_several_units_is_one_task_shared_by_all() {
        // GIVEN A named twice in one record and again in another, B once
        let d = sqs(
            false,
            vec![
                sqs_unit("m1", None, &[A, A, B], false),
                sqs_unit("m2", None, &[A], false),
            ],
        );
        // WHEN the batch is built
        let b = build(&d, &guards(), false, Mode::None, "req");
        // THEN two tasks; each unit lists its distinct tasks in first-named order
        assert_eq!(b.tasks.len(), 2);
        assert_eq!(b.units[0].tasks, vec![0, 1]);
        assert_eq!(b.units[1].tasks, vec![0]);
        assert_eq!(b.lanes, vec![vec![0], vec![1]]);
    }

    #[test]
    fn a_dry_run_and_a_real_request_for_one_arn_are_two_tasks() {
        // GIVEN A in a dry-run record and in a real one
        let d = sqs(
            false,
            vec![
                sqs_unit("m1", None, &[A], true),
                sqs_unit("m2", None, &[A], false),
            ],
        );
        // WHEN built without a configured dry run
        let b = build(&d, &guards(), false, Mode::None, "req");
        // THEN the preview never shares the real delete's task
        let runs: Vec<bool> = b.tasks.iter().map(|t| t.options.dry_run).collect();
        assert_eq!(runs, vec![true, false]);
        // AND a configured dry run makes both one dry-run task
        let b = build(&d, &guards(), true, Mode::None, "req");
        assert_eq!(b.tasks.len(), 1);
        assert!(b.tasks[0].options.dry_run);
    }

    #[test]
    fn rejections_keep_the_raw_input_and_the_first_failing_guard() {
        // GIVEN a foreign account, a non-ARN and an invalid item
        let mut unit = sqs_unit("m1", None, &[FOREIGN, "ami-1"], false);
        unit.items.push(Item::Invalid {
            input: Value::from(7),
            message: "not an ARN".into(),
        });
        let b = build(&sqs(false, vec![unit]), &guards(), false, Mode::None, "req");
        // THEN three rejections, in input order, with their codes
        let codes: Vec<RejectCode> = b.rejected.iter().map(|r| r.rejection.code).collect();
        assert_eq!(
            codes,
            vec![
                RejectCode::AccountNotAllowed,
                RejectCode::NotAnImageBuildVersionArn,
                RejectCode::InvalidMessage
            ]
        );
        assert_eq!(
            b.rejected[0].subject,
            Subject::Input(Value::String(FOREIGN.into()))
        );
        assert_eq!(b.units[0].rejected, vec![0, 1, 2]);
        assert!(b.tasks.is_empty());
    }

    #[test]
    fn an_unknown_own_account_rejects_every_arn_with_the_reason() {
        let g = Guards {
            accounts_unknown: Some("own account unknown".into()),
            ..guards()
        };
        let b = build(
            &sqs(false, vec![sqs_unit("m1", None, &[A], false)]),
            &g,
            false,
            Mode::None,
            "r",
        );
        assert_eq!(b.rejected[0].rejection.code, RejectCode::AccountNotAllowed);
        assert!(b.rejected[0]
            .rejection
            .message
            .contains("own account unknown"));
    }

    #[test]
    fn fifo_records_of_one_group_share_a_lane_in_order() {
        // GIVEN a FIFO batch: g1, g2, g1
        let d = sqs(
            true,
            vec![
                sqs_unit("m1", Some("g1"), &[A], false),
                sqs_unit("m2", Some("g2"), &[B], false),
                sqs_unit("m3", Some("g1"), &[B], false),
            ],
        );
        let b = build(&d, &guards(), false, Mode::None, "req");
        // THEN g1's records run in one lane, g2's in another
        assert_eq!(b.lanes, vec![vec![0, 2], vec![1]]);
        assert_eq!(b.units[2].group.as_deref(), Some("g1"));
        // AND on a standard queue a group id means nothing
        let d = sqs(false, d.units);
        let b = build(&d, &guards(), false, Mode::None, "req");
        assert_eq!(b.lanes, vec![vec![0], vec![1], vec![2]]);
        assert_eq!(b.units[0].group, None);
    }

    #[test]
    fn units_without_an_id_are_named_safely() {
        // An SQS record without messageId: empty (Lambda fails the whole batch); anything
        // else: the Lambda request id.
        assert_eq!(unit_id(None, InvocationKind::Sqs { fifo: false }, "r"), "");
        assert_eq!(unit_id(None, InvocationKind::Direct, "r"), "r");
        assert_eq!(unit_id(Some("e1"), InvocationKind::EventBridge, "r"), "e1");
    }
}
