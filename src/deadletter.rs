//! Dead letters: the message body, batching for SendMessageBatch, and sending with the
//! per-entry fallback.
//!
//! One message per failed or rejected item (per source that named it). A batch holds at
//! most 10 entries and 256 KiB; entries a batch call did not confirm are retried one by
//! one, and whatever is still not sent is reported back so the engine can hand it back.

use std::ops::Range;
use std::time::SystemTime;

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use crate::outcome::Subject;
use crate::ports::{CallError, DeadLetterMessage, DeadLetterSink, ErrorClass};
use crate::retry::{with_retries, Attempted, RetryPolicy, Window};

/// Whether each entry was sent, in entry order.
type SendResults = Vec<Result<(), CallError>>;

/// SQS: at most 10 entries per SendMessageBatch.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// SQS: at most 256 KiB of payload per SendMessageBatch (and per message).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// A rejected `input` larger than this is replaced by a preview so the message fits.
const MAX_INPUT_BYTES: usize = 200 * 1024;
/// Size of the preview kept for an oversized `input`.
const INPUT_PREVIEW_CHARS: usize = 16 * 1024;

/// Where the failed item came from (`source` in the body).
#[derive(Debug, Clone, Copy)]
pub struct SourceRef<'a> {
    /// `sqs`, `eventbridge`, `stepfunctions`, `direct`.
    pub kind: &'a str,
    /// SQS messageId, EventBridge event id, or the Lambda request id.
    pub id: &'a str,
}

/// The facts one dead-letter message carries.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    pub subject: &'a Subject,
    pub error_code: &'a str,
    pub message: &'a str,
    pub retryable: bool,
    pub attempts: u32,
    pub source: SourceRef<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    image_build_version_arn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'a Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    input_truncated: bool,
    error_code: &'a str,
    message: &'a str,
    retryable: bool,
    attempts: u32,
    source: BodySource<'a>,
    failed_at: String,
}

#[derive(Serialize)]
struct BodySource<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: &'a str,
}

/// Builds one message (SPEC §5). `id` must be unique within any batch it is sent in.
pub fn message(id: String, failure: Failure<'_>, failed_at: SystemTime) -> DeadLetterMessage {
    let (arn, input) = match failure.subject {
        Subject::Arn(a) => (Some(a.as_str()), None),
        Subject::Input(v) => (None, Some(v)),
    };
    let mut body = Body {
        image_build_version_arn: arn,
        input,
        input_truncated: false,
        error_code: failure.error_code,
        message: failure.message,
        retryable: failure.retryable,
        attempts: failure.attempts,
        source: BodySource {
            kind: failure.source.kind,
            id: failure.source.id,
        },
        failed_at: humantime::format_rfc3339_millis(failed_at).to_string(),
    };
    let mut json = serde_json::to_string(&body).expect("dead letter serialises");
    let preview;
    if json.len() > MAX_INPUT_BYTES {
        // A poison SQS body can itself be 256 KiB: keep a preview so the message still fits
        // (the report and logs say it was rejected; the full body stays in the source queue
        // only if it is handed back, so the preview is the best record we can keep).
        let text = match input {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        preview = Value::String(text.chars().take(INPUT_PREVIEW_CHARS).collect());
        body.input = Some(&preview);
        body.input_truncated = true;
        json = serde_json::to_string(&body).expect("dead letter serialises");
    }
    DeadLetterMessage {
        id,
        body: json,
        error_code: failure.error_code.to_string(),
    }
}

/// Splits messages into consecutive batches of ≤ 10 entries and ≤ 256 KiB.
pub fn batches(messages: &[DeadLetterMessage]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, m) in messages.iter().enumerate() {
        let size = m.payload_bytes();
        if i > start && (i - start == MAX_BATCH_ENTRIES || bytes + size > MAX_BATCH_BYTES) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < messages.len() {
        out.push(start..messages.len());
    }
    out
}

/// Sends every message; returns one result per message, in order. Batches go out
/// concurrently (at most `concurrency` calls in flight); whole-call retryable errors are
/// retried with backoff within `window`; entries a batch did not confirm are retried one by
/// one, once.
pub async fn send_all<D: DeadLetterSink>(
    sink: &D,
    messages: &[DeadLetterMessage],
    policy: &RetryPolicy,
    window: Window,
    concurrency: usize,
) -> Vec<Result<(), CallError>> {
    let mut results: Vec<Result<(), CallError>> = messages
        .iter()
        .map(|_| Err(CallError::retryable("NotSent", "not sent")))
        .collect();
    let per_batch: Vec<(Range<usize>, SendResults)> = futures::stream::iter(batches(messages))
        .map(|range| async move {
            let batch = &messages[range.clone()];
            let first = send_one_batch(sink, batch, policy, window).await;
            (range, first)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    for (range, batch_results) in per_batch {
        for (slot, r) in results[range].iter_mut().zip(batch_results) {
            *slot = r;
        }
    }
    results
}

async fn send_one_batch<D: DeadLetterSink>(
    sink: &D,
    batch: &[DeadLetterMessage],
    policy: &RetryPolicy,
    window: Window,
) -> Vec<Result<(), CallError>> {
    let mut results = match with_retries(policy, window, || sink.send_batch(batch)).await {
        Attempted::Done { value, .. } if value.len() == batch.len() => value,
        Attempted::Done { value, .. } => {
            // A sink that answers for the wrong number of entries: trust none of it.
            let e = CallError::retryable(
                "InvalidBatchResponse",
                format!("{} results for {} entries", value.len(), batch.len()),
            );
            vec![Err(e); batch.len()]
        }
        // The queue is unreachable or throttling after every attempt: sending entries one
        // by one would only multiply the wait.
        Attempted::Failed { error, .. } if error.class == ErrorClass::Retryable => {
            return vec![Err(error); batch.len()];
        }
        // A permanent whole-call error (e.g. the batch as a whole was refused): single
        // entries may still go through.
        Attempted::Failed { error, .. } => vec![Err(error); batch.len()],
        Attempted::NotStarted => {
            let e =
                CallError::retryable("DeadlineReached", "not sent: the Lambda deadline is near");
            return vec![Err(e); batch.len()];
        }
    };
    if batch.len() > 1 {
        for (i, slot) in results.iter_mut().enumerate() {
            if slot.is_err() {
                let one = std::slice::from_ref(&batch[i]);
                let single = RetryPolicy {
                    max_attempts: 1,
                    ..*policy
                };
                *slot = match with_retries(&single, window, || sink.send_batch(one)).await {
                    Attempted::Done { mut value, .. } if value.len() == 1 => value.remove(0),
                    Attempted::Failed { error, .. } => Err(error),
                    _ => slot.clone(),
                };
            }
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: usize, body_len: usize) -> DeadLetterMessage {
        DeadLetterMessage {
            id: format!("m{i}"),
            body: "x".repeat(body_len),
            error_code: "ClientException".into(),
        }
    }

    #[test]
    fn batches_hold_at_most_ten_entries() {
        let msgs: Vec<_> = (0..25).map(|i| msg(i, 100)).collect();
        assert_eq!(batches(&msgs), vec![0..10, 10..20, 20..25]);
    }

    #[test]
    fn batches_hold_at_most_256_kib() {
        let msgs: Vec<_> = (0..4).map(|i| msg(i, 100 * 1024)).collect();
        let b = batches(&msgs);
        assert_eq!(b, vec![0..2, 2..4]);
        for r in b {
            let bytes: usize = msgs[r].iter().map(|m| m.payload_bytes()).sum();
            assert!(bytes <= MAX_BATCH_BYTES);
        }
    }

    #[test]
    fn body_has_the_spec_fields() {
        // GIVEN a permanent failure from an SQS record
        let subject =
            Subject::Arn("arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.2.0/3".into());
        let m = message(
            "m0".into(),
            Failure {
                subject: &subject,
                error_code: "ResourceDependencyException",
                message: "in use",
                retryable: false,
                attempts: 1,
                source: SourceRef {
                    kind: "sqs",
                    id: "msg-1",
                },
            },
            SystemTime::UNIX_EPOCH,
        );
        // THEN the body is the SPEC §5 shape and the attribute carries the code
        let v: Value = serde_json::from_str(&m.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "imageBuildVersionArn": "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.2.0/3",
                "errorCode": "ResourceDependencyException", "message": "in use",
                "retryable": false, "attempts": 1,
                "source": {"type": "sqs", "id": "msg-1"},
                "failedAt": "1970-01-01T00:00:00.000Z"})
        );
        assert_eq!(m.error_code, "ResourceDependencyException");
    }

    #[test]
    fn rejected_input_is_carried_raw_and_huge_inputs_still_fit() {
        let subject = Subject::Input(Value::String("z".repeat(300 * 1024)));
        let m = message(
            "m0".into(),
            Failure {
                subject: &subject,
                error_code: "InvalidMessage",
                message: "no known shape",
                retryable: false,
                attempts: 0,
                source: SourceRef {
                    kind: "sqs",
                    id: "msg-1",
                },
            },
            SystemTime::now(),
        );
        let v: Value = serde_json::from_str(&m.body).unwrap();
        assert!(v.get("imageBuildVersionArn").is_none());
        assert_eq!(v["inputTruncated"], true);
        assert!(m.payload_bytes() <= MAX_BATCH_BYTES);
    }
}
