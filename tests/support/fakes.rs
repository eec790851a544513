//! In-memory fakes of the engine's ports, plus the one-rule accounting check.
//!
//! `FakeImages`: scripted replies per ARN and operation, per-ARN latency (tokio time, so
//! paused-time tests stay instant), call log and in-flight high-water mark. A successful
//! DeleteImage removes the image, so deleting it again is `ResourceNotFoundException`, as in
//! the real service. `FakeDlq`: records every message; can be down, or refuse chosen entries.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imagebuilder_reaper::arn::ImageArn;
use imagebuilder_reaper::error::ReaperError;
use imagebuilder_reaper::handler::Handled;
use imagebuilder_reaper::outcome::Subject;
use imagebuilder_reaper::ports::OutputResources;
use imagebuilder_reaper::ports::{
    CallError, DeadLetterMessage, DeadLetterSink, Deleted, ErrorClass, ImageInfo, Images,
};
use serde_json::Value;

/// One scripted reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ok,
    Err(ErrorClass, &'static str),
    /// Never answers (the engine must abandon it at the deadline margin).
    Hang,
}

impl Reply {
    pub fn throttled() -> Reply {
        Reply::Err(ErrorClass::Retryable, "CallRateLimitExceededException")
    }
    pub fn permanent() -> Reply {
        Reply::Err(ErrorClass::Permanent, "ResourceDependencyException")
    }
    pub fn not_found() -> Reply {
        Reply::Err(ErrorClass::NotFound, "ResourceNotFoundException")
    }
}

#[derive(Default)]
struct ImagesInner {
    /// (operation, arn) → replies, consumed in order; the last one repeats.
    scripts: Mutex<HashMap<(&'static str, String), VecDeque<Reply>>>,
    tags: Mutex<HashMap<String, HashMap<String, String>>>,
    /// GetImage `outputResources` per ARN (issue 5).
    outputs: Mutex<HashMap<String, OutputResources>>,
    deleted: Mutex<HashSet<String>>,
    latency: Mutex<HashMap<String, Duration>>,
    calls: Mutex<Vec<(&'static str, String)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// Fake EC2 Image Builder. Clones share state.
#[derive(Clone, Default)]
pub struct FakeImages(Arc<ImagesInner>);

impl FakeImages {
    pub fn new() -> Self {
        Self::default()
    }
    /// DeleteImage replies for `arn` (the last repeats forever).
    pub fn script(&self, arn: &str, replies: impl IntoIterator<Item = Reply>) -> &Self {
        self.script_op("DeleteImage", arn, replies)
    }
    pub fn script_op(
        &self,
        op: &'static str,
        arn: &str,
        replies: impl IntoIterator<Item = Reply>,
    ) -> &Self {
        self.0
            .scripts
            .lock()
            .unwrap()
            .insert((op, arn.to_string()), replies.into_iter().collect());
        self
    }
    pub fn tag(&self, arn: &str, key: &str, value: &str) -> &Self {
        self.0
            .tags
            .lock()
            .unwrap()
            .entry(arn.to_string())
            .or_default()
            .insert(key.into(), value.into());
        self
    }
    /// What GetImage reports as `outputResources` for `arn`.
    pub fn output_resources(&self, arn: &str, r: OutputResources) -> &Self {
        self.0.outputs.lock().unwrap().insert(arn.to_string(), r);
        self
    }
    /// Every call for `arn` takes this long.
    pub fn latency(&self, arn: &str, d: Duration) -> &Self {
        self.0.latency.lock().unwrap().insert(arn.to_string(), d);
        self
    }
    pub fn calls(&self) -> Vec<(&'static str, String)> {
        self.0.calls.lock().unwrap().clone()
    }
    pub fn calls_of(&self, op: &str, arn: &str) -> usize {
        self.calls()
            .iter()
            .filter(|(o, a)| *o == op && a == arn)
            .count()
    }
    pub fn delete_calls(&self) -> usize {
        self.calls()
            .iter()
            .filter(|(o, _)| *o == "DeleteImage")
            .count()
    }
    pub fn max_in_flight(&self) -> usize {
        self.0.max_in_flight.load(Ordering::SeqCst)
    }
    pub fn is_deleted(&self, arn: &str) -> bool {
        self.0.deleted.lock().unwrap().contains(arn)
    }

    fn next(&self, op: &'static str, arn: &str) -> Reply {
        let mut scripts = self.0.scripts.lock().unwrap();
        match scripts.get_mut(&(op, arn.to_string())) {
            Some(q) if q.len() > 1 => q.pop_front().unwrap(),
            Some(q) => q.front().cloned().unwrap_or(Reply::Ok),
            None => Reply::Ok,
        }
    }

    async fn call(&self, op: &'static str, arn: &ImageArn) -> Result<(), CallError> {
        let arn = arn.as_str().to_string();
        self.0.calls.lock().unwrap().push((op, arn.clone()));
        let now = self.0.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let _guard = InFlight(&self.0.in_flight);
        let latency = self.0.latency.lock().unwrap().get(&arn).copied();
        if let Some(d) = latency {
            tokio::time::sleep(d).await;
        }
        match self.next(op, &arn) {
            Reply::Ok if self.is_deleted(&arn) => Err(CallError::not_found(
                "ResourceNotFoundException",
                "the image does not exist",
            )),
            Reply::Ok => Ok(()),
            Reply::Err(class, code) => Err(CallError {
                request_id: Some(format!("req-{op}")),
                ..CallError::new(class, code, format!("scripted {code}"))
            }),
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
                Ok(())
            }
        }
    }
}

struct InFlight<'a>(&'a AtomicUsize);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Images for FakeImages {
    async fn delete_image(&self, arn: &ImageArn) -> Result<Deleted, CallError> {
        self.call("DeleteImage", arn).await?;
        self.0
            .deleted
            .lock()
            .unwrap()
            .insert(arn.as_str().to_string());
        Ok(Deleted {
            request_id: Some(format!("del-{}", arn.build())),
        })
    }

    async fn get_image(&self, arn: &ImageArn) -> Result<ImageInfo, CallError> {
        self.call("GetImage", arn).await?;
        Ok(ImageInfo {
            tags: self
                .0
                .tags
                .lock()
                .unwrap()
                .get(arn.as_str())
                .cloned()
                .unwrap_or_default(),
            output_resources: self
                .0
                .outputs
                .lock()
                .unwrap()
                .get(arn.as_str())
                .cloned()
                .unwrap_or_default(),
            request_id: Some("get".into()),
        })
    }
}

/// How the fake DLQ behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlqMode {
    Up,
    /// Every call fails (retryable, like a 5xx or a network error).
    Down,
    /// Entries whose body contains this text are refused (in batches and alone).
    Refuse(String),
    /// In a batch of several entries every entry fails; alone each one succeeds.
    FlakyBatches,
}

/// A message the fake DLQ accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub body: Value,
    pub error_code_attribute: String,
}

struct DlqInner {
    mode: Mutex<DlqMode>,
    received: Mutex<Vec<Received>>,
    batch_sizes: Mutex<Vec<usize>>,
}

/// Fake SQS dead-letter queue. Clones share state.
#[derive(Clone)]
pub struct FakeDlq(Arc<DlqInner>);

impl FakeDlq {
    pub fn new(mode: DlqMode) -> Self {
        FakeDlq(Arc::new(DlqInner {
            mode: Mutex::new(mode),
            received: Mutex::new(Vec::new()),
            batch_sizes: Mutex::new(Vec::new()),
        }))
    }
    pub fn received(&self) -> Vec<Received> {
        self.0.received.lock().unwrap().clone()
    }
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.0.batch_sizes.lock().unwrap().clone()
    }
}

impl DeadLetterSink for FakeDlq {
    async fn send_batch(
        &self,
        entries: &[DeadLetterMessage],
    ) -> Result<Vec<Result<(), CallError>>, CallError> {
        self.0.batch_sizes.lock().unwrap().push(entries.len());
        assert!(
            entries.len() <= 10,
            "SendMessageBatch takes at most 10 entries"
        );
        let bytes: usize = entries.iter().map(|e| e.payload_bytes()).sum();
        assert!(
            bytes <= 256 * 1024,
            "SendMessageBatch takes at most 256 KiB"
        );
        let mode = self.0.mode.lock().unwrap().clone();
        if mode == DlqMode::Down {
            return Err(CallError::retryable(
                "ServiceUnavailable",
                "queue unreachable",
            ));
        }
        let mut out = Vec::new();
        for e in entries {
            let refused = match &mode {
                DlqMode::Refuse(text) => e.body.contains(text.as_str()),
                DlqMode::FlakyBatches => entries.len() > 1,
                _ => false,
            };
            if refused {
                out.push(Err(CallError::retryable("InternalError", "entry failed")));
            } else {
                self.0.received.lock().unwrap().push(Received {
                    body: serde_json::from_str(&e.body).expect("body is JSON"),
                    error_code_attribute: e.error_code.clone(),
                });
                out.push(Ok(()));
            }
        }
        Ok(out)
    }
}

/// THE ONE RULE, checked for every test: each named item (`(source id, item)`; the item is
/// the ARN or the raw rejected input) ends in exactly one place: a successful outcome
/// (deleted / alreadyDeleted / wouldDelete / protected), exactly one dead-letter message
/// from that source, or handed back (its SQS record in `batchItemFailures`, or listed by the
/// `DeadLetterQueueUnavailable` invocation error).
pub fn assert_every_item_accounted_for(
    items: &[(&str, Value)],
    handled: &Handled,
    dlq: Option<&FakeDlq>,
) {
    let exec = handled
        .execution
        .as_ref()
        .expect("the event decoded, so every item must have a record");
    let (batch_failures, error_list): (HashSet<String>, HashSet<String>) = match &handled.result {
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
    let received = dlq.map(FakeDlq::received).unwrap_or_default();
    for (source, item) in items {
        let record = exec
            .records
            .iter()
            .find(|r| match &r.subject {
                Subject::Arn(a) => Value::String(a.clone()) == *item,
                Subject::Input(v) => v == item,
            })
            .unwrap_or_else(|| panic!("no record for {item} (from {source}): LOST"));
        let success = record.status.is_success();
        let in_dlq = received
            .iter()
            .filter(|m| {
                m.body["source"]["id"] == *source
                    && (m.body["imageBuildVersionArn"] == *item || m.body["input"] == *item)
            })
            .count();
        let label = match item {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let handed_back = !success
            && in_dlq == 0
            && (batch_failures.contains(*source) || error_list.contains(&label));
        assert!(
            in_dlq <= 1,
            "{item} from {source} dead-lettered {in_dlq} times"
        );
        let places = [success, in_dlq == 1, handed_back]
            .iter()
            .filter(|p| **p)
            .count();
        assert_eq!(
            places, 1,
            "{item} from {source} must end in exactly one place: success={success} \
             dead-lettered={in_dlq} handed-back={handed_back}; record={record:?}; result={:?}",
            handled.result
        );
    }
}
