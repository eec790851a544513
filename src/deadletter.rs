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

use crate::event::ItemOptions;
use crate::outcome::Subject;
use crate::output_resources::mode::Mode;
use crate::ports::{CallError, DeadLetterMessage, DeadLetterSink};
use crate::retry::{with_retries, Attempted, RetryPolicy, Window};

/// Whether each entry was sent, in entry order.
type SendResults = Vec<Result<(), CallError>>;

/// SQS: at most 10 entries per SendMessageBatch.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// SQS: at most 256 KiB of payload per SendMessageBatch (and per message).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

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
    /// The item's effective options: carried so a redrive repeats the request as it was made.
    pub options: ItemOptions,
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
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    delete_output_resources: Option<&'static str>,
    dedup_key: &'a str,
}

#[derive(Serialize)]
struct BodySource<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: &'a str,
}

/// Builds one message. `id` must be unique within any batch it is sent in. The
/// body is within SQS's character set and, with its attribute, within one message's 256 KiB:
/// an `input` too large is cut (`inputTruncated`), keeping as much of it as fits.
pub fn message(id: String, failure: Failure<'_>, failed_at: SystemTime) -> DeadLetterMessage {
    let (arn, input) = match failure.subject {
        Subject::Arn(a) => (Some(a.as_str()), None),
        Subject::Input(v) => (None, Some(v)),
    };
    let dedup_key = dedup_key(&failure);
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
        dry_run: failure.options.dry_run,
        delete_output_resources: failure.options.delete_output_resources.map(Mode::as_str),
        dedup_key: &dedup_key,
    };
    let limit = MAX_BATCH_BYTES - attribute_bytes(failure.error_code);
    let mut json = sqs_json(&body);
    let cut;
    if json.len() > limit {
        // A poison SQS body can itself be 256 KiB: keep what fits (the report and logs say it
        // was rejected; the full body stays in the source queue only if it is handed back).
        let text = match input {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        body.input = Some(&Value::Null);
        body.input_truncated = true;
        let room = limit.saturating_sub(sqs_json(&body).len());
        cut = Value::String(prefix_within(&text, room));
        body.input = Some(&cut);
        json = sqs_json(&body);
    }
    DeadLetterMessage {
        id,
        body: json,
        error_code: failure.error_code.to_string(),
        dedup_key,
    }
}

/// Bytes the `errorCode` message attribute counts for (see [`DeadLetterMessage::payload_bytes`]).
fn attribute_bytes(error_code: &str) -> usize {
    "errorCode".len() + "String".len() + error_code.len()
}

/// Whether SQS accepts `c` in a message body: `#x9 | #xA | #xD | #x20–#xD7FF |
/// #xE000–#xFFFD | #x10000–#x10FFFF`.
fn sqs_accepts(c: char) -> bool {
    matches!(c as u32, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

/// The body as JSON that SQS accepts. serde_json already escapes the control characters;
/// U+FFFE and U+FFFF it writes as they are, and SQS refuses them, so they become `\uXXXX`
/// escapes (they can only occur inside JSON strings, where the escape means the same).
fn sqs_json(body: &Body<'_>) -> String {
    // Serialising strings, numbers and JSON values cannot fail.
    let json = serde_json::to_string(body).unwrap_or_default();
    if json.chars().all(sqs_accepts) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 64);
    for c in json.chars() {
        if sqs_accepts(c) {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{:04x}", c as u32));
        }
    }
    out
}

/// Bytes `c` takes inside a JSON string written by [`sqs_json`].
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if !sqs_accepts(c) || (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// The longest prefix of `text` whose escaped form takes at most `room` bytes.
fn prefix_within(text: &str, room: usize) -> String {
    let mut used = 0;
    let end = text
        .char_indices()
        .find(|(_, c)| {
            used += escaped_len(*c);
            used > room
        })
        .map_or(text.len(), |(i, _)| i);
    text[..end].to_string()
}

/// A deterministic key for one dead letter: SHA-256 (hex) over the source, the item (ARN or
/// input, in full even when the body carries a cut one), the error code and the item's
/// options (a dry run and a real run of one ARN are two items). A message sent again (after
/// a partial DLQ failure, or by a redelivered record) has the same key.
fn dedup_key(failure: &Failure<'_>) -> String {
    let item = match failure.subject {
        Subject::Arn(a) => format!("arn:{a}"),
        Subject::Input(v) => format!("input:{v}"),
    };
    let options = format!(
        "dryRun={} deleteOutputResources={}",
        failure.options.dry_run,
        failure
            .options
            .delete_output_resources
            .map_or("", Mode::as_str)
    );
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [
        failure.source.kind,
        failure.source.id,
        &item,
        failure.error_code,
        &options,
    ] {
        // Length-prefixed, so no two different field lists hash the same bytes.
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
        Attempted::Failed { error, .. } if error.class.is_retryable() => {
            return vec![Err(error); batch.len()];
        }
        // A permanent whole-call error (e.g. the batch as a whole was refused): single
        // entries may still go through.
        Attempted::Failed { error, .. } => vec![Err(error); batch.len()],
        Attempted::NotStarted { .. } => {
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
            dedup_key: format!("k{i}"),
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
                options: ItemOptions::default(),
            },
            SystemTime::UNIX_EPOCH,
        );
        // THEN the body is the shape and the attribute carries the code
        let mut v: Value = serde_json::from_str(&m.body).unwrap();
        let key = v.as_object_mut().unwrap().remove("dedupKey").unwrap();
        assert_eq!(key, m.dedup_key.as_str());
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
                options: ItemOptions::default(),
            },
            SystemTime::now(),
        );
        let v: Value = serde_json::from_str(&m.body).unwrap();
        assert!(v.get("imageBuildVersionArn").is_none());
        assert_eq!(v["inputTruncated"], true);
        assert!(m.payload_bytes() <= MAX_BATCH_BYTES);
    }

    fn failure<'a>(subject: &'a Subject, code: &'a str, source_id: &'a str) -> Failure<'a> {
        Failure {
            subject,
            error_code: code,
            message: "no known shape",
            retryable: false,
            attempts: 0,
            source: SourceRef {
                kind: "sqs",
                id: source_id,
            },
            options: ItemOptions::default(),
        }
    }

    /// SQS's character set for message bodies.
    fn sqs_accepts(c: char) -> bool {
        matches!(c as u32, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
    }

    #[test]
    fn bodies_escape_what_sqs_refuses() {
        // GIVEN an input with characters SQS refuses (U+FFFE, U+FFFF, controls)
        let text = "a\u{FFFE}b\u{FFFF}c\u{1}d\u{7}e\u{10FFFF}";
        let subject = Subject::Input(Value::String(text.into()));
        let m = message(
            "m0".into(),
            failure(&subject, "InvalidMessage", "m-1"),
            SystemTime::now(),
        );
        // THEN the body has none of them, and the JSON still reads back the same input
        let bad: Vec<char> = m.body.chars().filter(|c| !sqs_accepts(*c)).collect();
        assert!(bad.is_empty(), "{bad:?} in {}", m.body);
        let v: Value = serde_json::from_str(&m.body).unwrap();
        assert_eq!(v["input"], text);
    }

    #[test]
    fn an_input_that_escapes_past_the_limit_is_cut_to_fit() {
        // GIVEN an input that is 180 KB as UTF-8 but twice that once escaped for SQS
        let text = "\u{FFFF}".repeat(60_000);
        let subject = Subject::Input(Value::String(text.clone()));
        let m = message(
            "m0".into(),
            failure(&subject, "InvalidMessage", "m-1"),
            SystemTime::now(),
        );
        // THEN the message fits one SQS message, in SQS's character set, and says it was cut
        assert!(
            m.payload_bytes() <= MAX_BATCH_BYTES,
            "{}",
            m.payload_bytes()
        );
        assert!(m.body.chars().all(sqs_accepts));
        let v: Value = serde_json::from_str(&m.body).unwrap();
        assert_eq!(v["inputTruncated"], true);
        let kept = v["input"].as_str().unwrap();
        assert!(text.starts_with(kept));
        // AND as much as fits is kept, not a token preview
        assert!(kept.chars().count() > 40_000, "{}", kept.chars().count());
    }

    #[test]
    fn every_body_has_a_deterministic_dedup_key() {
        let key = |subject: &Subject, code: &str, id: &str, at: SystemTime| {
            let m = message("m0".into(), failure(subject, code, id), at);
            let v: Value = serde_json::from_str(&m.body).unwrap();
            v["dedupKey"].as_str().expect("dedupKey").to_string()
        };
        let a = Subject::Input(Value::String("x".into()));
        let b = Subject::Arn("x".into());
        let later = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(60);
        let k = key(&a, "InvalidMessage", "m-1", SystemTime::UNIX_EPOCH);
        // Same source, input and error, sent again later: the same key.
        assert_eq!(k, key(&a, "InvalidMessage", "m-1", later));
        // Anything else different: another key.
        assert_ne!(k, key(&b, "InvalidMessage", "m-1", later));
        assert_ne!(k, key(&a, "NotAnImageBuildVersionArn", "m-1", later));
        assert_ne!(k, key(&a, "InvalidMessage", "m-2", later));
        assert!(k.len() <= 128 && k.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    /// The candidates (ARN, options) that decoding a dead-letter body as an SQS body yields.
    fn redriven(body: &str) -> Vec<crate::event::Item> {
        let event = serde_json::json!({"Records": [
            {"messageId": "r-1", "body": body, "eventSource": "aws:sqs"}]});
        crate::event::decode(&event).unwrap().units.remove(0).items
    }

    #[test]
    fn options_survive_the_round_trip_through_a_dead_letter() {
        use crate::event::Item;
        let options = ItemOptions {
            dry_run: true,
            delete_output_resources: Some(Mode::Amis),
        };
        let arn = "arn:aws:imagebuilder:us-east-1:111122223333:image/web/1.0.0/1";
        // A failed ARN and a rejected input, each with the item's options
        for subject in [
            Subject::Arn(arn.into()),
            Subject::Input(serde_json::json!([arn])),
        ] {
            let mut f = failure(&subject, "AccountNotAllowed", "m-1");
            f.options = options;
            let m = message("m0".into(), f, SystemTime::now());
            let v: Value = serde_json::from_str(&m.body).unwrap();
            assert_eq!(v["dryRun"], true);
            assert_eq!(v["deleteOutputResources"], "amis");
            // WHEN redriven, the item comes back with the same options
            assert_eq!(
                redriven(&m.body),
                [Item::Candidate {
                    arn: arn.into(),
                    options,
                    plan: None,
                }]
            );
        }
    }

    #[test]
    fn options_not_set_are_not_written_and_a_cut_input_is_not_retried() {
        let subject = Subject::Input(Value::String(format!("arn:{}", "x".repeat(300 * 1024))));
        let m = message(
            "m0".into(),
            failure(&subject, "NotAnImageBuildVersionArn", "m-1"),
            SystemTime::now(),
        );
        let v: Value = serde_json::from_str(&m.body).unwrap();
        assert!(v.get("dryRun").is_none() && v.get("deleteOutputResources").is_none());
        // Only part of the request survived: a redrive must not act on the part.
        assert!(
            matches!(&redriven(&m.body)[..], [crate::event::Item::Invalid { message, .. }]
            if message.contains("inputTruncated"))
        );
    }
}
