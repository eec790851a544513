//! The events tests feed the function: the sample events in `events/` (the README's
//! examples and the demo's inputs), image build-version ARNs, and builders for the event
//! shapes tests make up (SQS, SQS FIFO, EventBridge).

use std::path::PathBuf;

use serde_json::{json, Value};

use super::constants::{ACCOUNT, REGION, WORK_QUEUE_ARN};
use super::process::repo_root;

/// `events/`.
pub fn events_dir() -> PathBuf {
    repo_root().join("events")
}

/// The fixture `events/<name>` as JSON.
pub fn fixture(name: &str) -> Value {
    let path = events_dir().join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The names of every `events/*.json`, sorted.
pub fn fixture_names() -> Vec<String> {
    let dir = events_dir();
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    out.sort();
    out
}

/// An image build-version ARN (`<name>/1.0.0/<build>`) in [`REGION`] of [`ACCOUNT`].
pub fn arn(name: &str, build: u32) -> String {
    arn_in(REGION, name, build)
}

/// An image build-version ARN (`<name>/1.0.0/<build>`) in `region` of [`ACCOUNT`].
pub fn arn_in(region: &str, name: &str, build: u32) -> String {
    format!("arn:aws:imagebuilder:{region}:{ACCOUNT}:image/{name}/1.0.0/{build}")
}

/// One SQS record as Lambda's event source mapping delivers it; `group` makes it a
/// record of a FIFO queue (`queue_arn` then ends in `.fifo`).
pub fn sqs_record(queue_arn: &str, id: &str, body: Value, group: Option<&str>) -> Value {
    let mut attributes = json!({
        "ApproximateReceiveCount": "1",
        "SentTimestamp": "1767225600000",
        "SenderId": "AIDAEXAMPLE",
        "ApproximateFirstReceiveTimestamp": "1767225600001"
    });
    if let Some(g) = group {
        attributes["MessageGroupId"] = json!(g);
    }
    json!({
        "messageId": id,
        "receiptHandle": format!("AQEB{id}"),
        "body": body,
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION
    })
}

/// An SQS event from the standard work queue, one record per `(messageId, body)`.
pub fn sqs_event(records: &[(&str, &str)]) -> Value {
    sqs_event_from(WORK_QUEUE_ARN, records)
}

/// An SQS event from the queue `queue_arn`, one record per `(messageId, body)`.
pub fn sqs_event_from(queue_arn: &str, records: &[(&str, &str)]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|(id, body)| sqs_record(queue_arn, id, json!(body), None))
        .collect();
    json!({ "Records": records })
}

/// An SQS event from a FIFO work queue, one record per `(messageId, group, body)`.
pub fn fifo_event(records: &[(&str, &str, &str)]) -> Value {
    let queue = format!("{WORK_QUEUE_ARN}.fifo");
    let records: Vec<Value> = records
        .iter()
        .map(|(id, group, body)| sqs_record(&queue, id, json!(body), Some(group)))
        .collect();
    json!({ "Records": records })
}

/// A custom EventBridge event (rule target: the function) naming `arns` in its detail.
pub fn eventbridge_event(id: &str, arns: &[&str]) -> Value {
    json!({
        "version": "0", "id": id, "detail-type": "Retire images", "source": "custom.retire",
        "account": ACCOUNT, "time": "2026-01-01T00:00:00Z", "region": REGION, "resources": [],
        "detail": {"imageBuildVersionArns": arns}
    })
}
