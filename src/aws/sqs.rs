//! Dead-letter queue adapter ([`DeadLetterSink`] over SQS SendMessageBatch).
//!
//! Each entry carries the JSON body and a String message attribute `errorCode`. The result
//! is per entry: an entry counts as sent only if SQS lists it under `Successful`.

use std::collections::{HashMap, HashSet};

use aws_config::{Region, SdkConfig};
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;

use super::classify::classify;
use crate::ports::{CallError, DeadLetterMessage, DeadLetterSink, ErrorClass};

/// [`DeadLetterSink`] backed by SQS.
#[derive(Debug, Clone)]
pub struct SqsDeadLetters {
    client: Client,
    queue_url: String,
    fifo: bool,
}

impl SqsDeadLetters {
    /// A client for the queue's own region (parsed from `https://sqs.REGION.amazonaws.com/…`
    /// when the URL says it, else the shared configuration's region).
    pub fn new(base: &SdkConfig, queue_url: String) -> Self {
        let mut conf = aws_sdk_sqs::config::Builder::from(base);
        if let Some(region) = region_of_queue_url(&queue_url) {
            conf = conf.region(Region::new(region));
        }
        SqsDeadLetters {
            client: Client::from_conf(conf.build()),
            fifo: queue_url.ends_with(".fifo"),
            queue_url,
        }
    }
}

/// `https://sqs.us-east-1.amazonaws.com/…` → `us-east-1` (also `.amazonaws.com.cn`).
fn region_of_queue_url(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split('/').next()?;
    let rest = host.strip_prefix("sqs.")?;
    let region = rest.split('.').next()?;
    rest[region.len()..]
        .starts_with(".amazonaws.com")
        .then(|| region.to_string())
}

fn entry(m: &DeadLetterMessage, fifo: bool) -> Result<SendMessageBatchRequestEntry, CallError> {
    let attr = MessageAttributeValue::builder()
        .data_type("String")
        .string_value(&m.error_code)
        .build()
        .map_err(|e| CallError::permanent("ConstructionFailure", e.to_string()))?;
    let mut b = SendMessageBatchRequestEntry::builder()
        .id(&m.id)
        .message_body(&m.body)
        .message_attributes("errorCode", attr);
    if fifo {
        // A FIFO dead-letter queue needs a group; the body's dedupKey (same source, item and
        // error) makes the deduplication id, so a send repeated after a partial failure, or
        // by a redelivered record, is not duplicated.
        b = b
            .message_group_id("imagebuilder-reaper")
            .message_deduplication_id(&m.dedup_key);
    }
    b.build()
        .map_err(|e| CallError::permanent("ConstructionFailure", e.to_string()))
}

impl DeadLetterSink for SqsDeadLetters {
    async fn send_batch(
        &self,
        entries: &[DeadLetterMessage],
    ) -> Result<Vec<Result<(), CallError>>, CallError> {
        let request: Vec<_> = entries
            .iter()
            .map(|m| entry(m, self.fifo))
            .collect::<Result<_, _>>()?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(request))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let ok: HashSet<&str> = out.successful().iter().map(|s| s.id()).collect();
        let failed: HashMap<&str, CallError> = out
            .failed()
            .iter()
            .map(|f| {
                // SenderFault: the entry itself is wrong; otherwise SQS had a problem.
                let class = if f.sender_fault() {
                    ErrorClass::Permanent
                } else {
                    ErrorClass::Retryable
                };
                let e = CallError::new(class, f.code(), f.message().unwrap_or("entry failed"));
                (f.id(), e)
            })
            .collect();
        Ok(entries
            .iter()
            .map(|m| {
                if ok.contains(m.id.as_str()) {
                    Ok(())
                } else {
                    Err(failed.get(m.id.as_str()).cloned().unwrap_or_else(|| {
                        CallError::retryable(
                            "MissingFromResponse",
                            "SQS reported neither success nor failure for this entry",
                        )
                    }))
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::{entry, region_of_queue_url};
    use crate::ports::DeadLetterMessage;

    #[test]
    fn a_fifo_entry_is_deduplicated_by_the_dedup_key() {
        let m = DeadLetterMessage {
            id: "m0".into(),
            body: "{}".into(),
            error_code: "InvalidMessage".into(),
            dedup_key: "0123abcd".into(),
        };
        let e = entry(&m, true).unwrap();
        assert_eq!(e.message_deduplication_id(), Some("0123abcd"));
        assert!(e.message_group_id().is_some());
        assert_eq!(entry(&m, false).unwrap().message_deduplication_id(), None);
    }

    #[test]
    fn queue_region_is_read_from_the_url() {
        assert_eq!(
            region_of_queue_url("https://sqs.eu-west-1.amazonaws.com/123456789012/dlq").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of_queue_url("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/dlq")
                .as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(
            region_of_queue_url("http://localhost:9324/000000000000/dlq"),
            None
        );
    }
}
