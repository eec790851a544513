//! The in-memory harness: the real [`Handler`] over the [`fakes`](super::fakes) of Image
//! Builder, EC2, ECR and the dead-letter queue, an invocation builder, and the one-rule
//! check. The check audits where each item went through the fakes (what Image Builder
//! deleted, what the DLQ accepted) and the caller-facing result (what is handed back), not
//! through the engine's own records, so it does not trust what it checks.

use std::collections::HashSet;
use std::time::Duration;

use imagebuilder_reaper::config::Config;
use imagebuilder_reaper::engine::Invocation;
use imagebuilder_reaper::error::ReaperError;
use imagebuilder_reaper::handler::Handler;
use imagebuilder_reaper::outcome::Status;
use imagebuilder_reaper::output_resources::entry::ResourceStatus;
use imagebuilder_reaper::report::{Report, ResultEntry};
use serde_json::Value;
use tokio::time::Instant;

use super::constants::{DLQ_URL, FUNCTION_ARN, REQUEST_ID};
use super::fakes::{CallLog, DlqMode, FakeDlq, FakeEc2, FakeEcr, FakeImages, Received};

/// The configuration of most in-memory tests: the defaults, with 3 attempts per ARN.
pub fn config() -> Config {
    Config {
        max_attempts: 3,
        ..Config::default()
    }
}

/// An invocation with request id [`REQUEST_ID`] from [`FUNCTION_ARN`], whose Lambda
/// deadline is `deadline_in` from now (tokio time: paused in most tests).
pub fn invocation(deadline_in: Duration) -> Invocation {
    Invocation {
        request_id: REQUEST_ID.into(),
        invoked_function_arn: FUNCTION_ARN.into(),
        deadline: Instant::now() + deadline_in,
    }
}

/// The handler and its fakes. `dlq` is `Some` exactly when `DEAD_LETTER_QUEUE_URL` is set.
pub struct Harness {
    pub images: FakeImages,
    pub ec2: FakeEc2,
    pub ecr: FakeEcr,
    pub dlq: Option<FakeDlq>,
    log: CallLog,
    handler: Handler<FakeImages, FakeDlq, FakeEc2, FakeEcr>,
}

/// What one invocation returned: the report, or the whole-invocation error.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<Report, ReaperError>,
}

impl Harness {
    /// A handler with `config`, and a fake DLQ in `dlq` mode (`None`: no DLQ configured).
    pub fn new(mut config: Config, dlq: Option<DlqMode>) -> Harness {
        let log = CallLog::default();
        let images = FakeImages::new(log.clone());
        let ec2 = FakeEc2::new(log.clone());
        let ecr = FakeEcr::new(log.clone());
        let dlq = dlq.map(FakeDlq::new);
        config.dead_letter_queue_url = dlq.as_ref().map(|_| DLQ_URL.to_string());
        let handler = Handler::new(config, images.clone(), dlq.clone())
            .with_output_resources(ec2.clone(), ecr.clone());
        Harness {
            images,
            ec2,
            ecr,
            dlq,
            log,
            handler,
        }
    }

    /// Handles `event` with 15 minutes to live.
    pub async fn run(&self, event: &Value) -> Outcome {
        self.run_until(event, Duration::from_secs(900)).await
    }

    /// Handles `event` with `deadline_in` to live.
    pub async fn run_until(&self, event: &Value, deadline_in: Duration) -> Outcome {
        self.run_as(event, &invocation(deadline_in)).await
    }

    /// Handles `event` as `invocation`.
    pub async fn run_as(&self, event: &Value, invocation: &Invocation) -> Outcome {
        Outcome {
            result: self.handler.handle(event, invocation).await,
        }
    }

    /// The dead letters the fake DLQ accepted (none without a DLQ).
    pub fn dead_letters(&self) -> Vec<Received> {
        self.dlq.as_ref().map(FakeDlq::received).unwrap_or_default()
    }

    /// Every call to Image Builder, EC2 and ECR so far, in order, as `"<Operation> <id>"`.
    pub fn log(&self) -> Vec<String> {
        self.log.entries()
    }

    /// THE ONE RULE: each named item (`(source id, ARN or raw rejected input)`) ends in
    /// exactly one place: done (Image Builder deleted it or found it gone; or, for what
    /// deletes nothing, such as a dry run or a protected image, the report says so),
    /// exactly one dead letter from that source, or handed back (its SQS record in
    /// `batchItemFailures`, or listed by the `DeadLetterQueueUnavailable` error).
    pub fn assert_accounted(&self, items: &[(&str, &str)], out: &Outcome) {
        let (failed_records, not_dead_lettered): (HashSet<String>, HashSet<String>) =
            match &out.result {
                Ok(report) => (
                    report
                        .batch_item_failures
                        .iter()
                        .flatten()
                        .map(|f| f.item_identifier.clone())
                        .collect(),
                    HashSet::new(),
                ),
                Err(ReaperError::DeadLetterQueueUnavailable {
                    not_dead_lettered, ..
                }) => (HashSet::new(), not_dead_lettered.iter().cloned().collect()),
                Err(other) => panic!("unexpected invocation error {other:?}"),
            };
        let received = self.dead_letters();
        for (source, item) in items {
            let entries = out
                .result
                .as_ref()
                .map(|r| entries_for(r, item))
                .unwrap_or_default();
            let gone = self.images.is_gone(item);
            let deletion = |s: Status| matches!(s, Status::Deleted | Status::AlreadyDeleted);
            // The report and Image Builder agree about what is gone.
            if let Some(e) = entries.iter().find(|e| deletion(e.status)) {
                assert!(
                    gone,
                    "{item}: reported {:?}, but Image Builder still has it",
                    e.status
                );
            }
            if gone && !entries.is_empty() {
                assert!(
                    entries.iter().any(|e| deletion(e.status)),
                    "{item}: Image Builder deleted it, but the report says {entries:?}"
                );
            }
            let done_without_deleting = entries
                .iter()
                .any(|e| e.status.is_success() && !deletion(e.status));
            let done = gone || done_without_deleting;
            let in_dlq = received
                .iter()
                .filter(|m| {
                    m.body["source"]["id"] == *source
                        && (m.body["imageBuildVersionArn"] == *item || m.body["input"] == *item)
                })
                .count();
            // A done item in a handed-back record is harmless (redelivered, it is found gone);
            // a dead-lettered one would be dead-lettered again, so that counts as two places.
            let handed_back =
                !done && (failed_records.contains(*source) || not_dead_lettered.contains(*item));
            assert!(
                in_dlq <= 1,
                "{item} from {source} dead-lettered {in_dlq} times"
            );
            let places = [done, in_dlq == 1, handed_back]
                .iter()
                .filter(|p| **p)
                .count();
            assert_eq!(
                places, 1,
                "{item} from {source} must end in exactly one place: done={done} \
                 dead-lettered={in_dlq} handed-back={handed_back}; result={:?}",
                out.result
            );
        }
    }
}

/// `(source, item)` for each of `items`, all named by the same source, as
/// [`Harness::assert_accounted`] takes them.
pub fn from_source<'a>(source: &'a str, items: &'a [String]) -> Vec<(&'a str, &'a str)> {
    items.iter().map(|i| (source, i.as_str())).collect()
}

/// The report's entries for `item` (an ARN, or the raw input of a rejected item).
fn entries_for<'a>(report: &'a Report, item: &str) -> Vec<&'a ResultEntry> {
    report
        .results
        .iter()
        .filter(|e| {
            e.image_build_version_arn.as_deref() == Some(item)
                || e.input.as_ref().is_some_and(|v| v == item)
        })
        .collect()
}

impl Outcome {
    /// The report; panics with the error if the invocation failed.
    pub fn report(&self) -> &Report {
        self.result.as_ref().expect("the invocation succeeds")
    }

    /// (id, status) of every output-resource entry of `item`, in report order.
    pub fn pieces(&self, item: &str) -> Vec<(String, ResourceStatus)> {
        self.entry(item)
            .output_resources
            .iter()
            .map(|e| (e.id.clone(), e.status))
            .collect()
    }

    /// The report's (first) entry for `item`.
    pub fn entry(&self, item: &str) -> &ResultEntry {
        entries_for(self.report(), item)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no result for {item}"))
    }

    /// The status the report gives `item`.
    pub fn status(&self, item: &str) -> Status {
        self.entry(item).status
    }

    /// The `messageId`s of `batchItemFailures`, in order.
    pub fn batch_failures(&self) -> Vec<String> {
        self.report()
            .batch_item_failures
            .as_ref()
            .expect("SQS reports carry batchItemFailures")
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect()
    }
}
