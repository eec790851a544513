//! Outcomes (pure): per-ARN statuses, the routing table (where each outcome goes) and the
//! per-ARN record the report is built from.
//!
//! Nothing here does I/O. The engine produces one [`ResultRecord`] per distinct ARN (and one
//! per rejected item); [`Report::new`] counts them and [`Report::to_json`] serialises within
//! the response budget.

use serde::Serialize;
use serde_json::Value;

use crate::event::InvocationKind;
use crate::output_resources::entry::{InUseReference, ResourceEntry};

/// Per-ARN status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Deleted,
    AlreadyDeleted,
    WouldDelete,
    Protected,
    /// An output AMI is still in use: kept, like `protected`.
    InUse,
    /// A retention plan's build changed since the plan was made: left alone.
    SkippedPlanDrift,
    Rejected,
    Failed,
    NotAttempted,
}

impl Status {
    /// The camelCase name used in reports, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Deleted => "deleted",
            Status::AlreadyDeleted => "alreadyDeleted",
            Status::WouldDelete => "wouldDelete",
            Status::Protected => "protected",
            Status::InUse => "inUse",
            Status::SkippedPlanDrift => "skippedPlanDrift",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
            Status::NotAttempted => "notAttempted",
        }
    }

    /// Whether the ARN is settled without any further action (counts as success).
    pub fn is_success(self) -> bool {
        matches!(
            self,
            Status::Deleted
                | Status::AlreadyDeleted
                | Status::WouldDelete
                | Status::Protected
                | Status::InUse
                | Status::SkippedPlanDrift
        )
    }

    /// What this outcome still needs: nothing, a dead letter (permanent), or a retry.
    pub fn need(self, retryable: bool) -> Need {
        match self {
            s if s.is_success() => Need::Nothing,
            Status::Rejected => Need::DeadLetter,
            Status::Failed if !retryable => Need::DeadLetter,
            _ => Need::Retry,
        }
    }
}

/// What an outcome still needs (the rows of the routing table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Need {
    /// Deleted, already gone, would be deleted, protected, in use, or skipped for plan drift.
    Nothing,
    /// Permanent failure or rejection: retrying cannot help.
    DeadLetter,
    /// Retryable failure after `MAX_ATTEMPTS`, or not attempted (deadline, FIFO order).
    Retry,
    /// The function's own credentials failed: a retry after the fix, never a dead letter.
    Reconfigure,
}

impl ResultRecord {
    /// What this outcome still needs.
    pub fn need(&self) -> Need {
        if self.configuration {
            return Need::Reconfigure;
        }
        self.status.need(self.retryable.unwrap_or(false))
    }
}

/// Where an outcome goes first, before any dead-letter send is attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// Nothing further to do.
    Done,
    /// Send to the dead-letter queue; if that fails, hand back.
    DeadLetter,
    /// Hand back to the caller: SQS `batchItemFailures`, otherwise the invocation fails
    /// with `DeadLetterQueueUnavailable`.
    HandBack,
}

/// The routing table : invocation kind × what the outcome needs × whether a DLQ
/// is configured. A `DeadLetter` destination whose send fails becomes `HandBack`
/// ([`settle`]).
pub fn destination(kind: InvocationKind, need: Need, dlq_configured: bool) -> Destination {
    match (need, kind) {
        (Need::Nothing, _) => Destination::Done,
        // Not the ARN's fault: SQS redelivers it, anything else fails the invocation.
        (Need::Reconfigure, _) => Destination::HandBack,
        // SQS redelivers the record; the queue's own redrive policy ends the story.
        (Need::Retry, InvocationKind::Sqs { .. }) => Destination::HandBack,
        // EventBridge / direct / Step Functions: permanent and retryable alike go to the DLQ
        // (retryable ones with `retryable: true`); without one the caller must retry.
        (Need::DeadLetter | Need::Retry, _) if dlq_configured => Destination::DeadLetter,
        (Need::DeadLetter | Need::Retry, _) => Destination::HandBack,
    }
}

/// Where an outcome finally went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Final {
    Done,
    DeadLettered,
    HandedBack,
}

/// The destination after the dead-letter send (`sent` is ignored unless the destination is
/// `DeadLetter`).
pub fn settle(destination: Destination, sent: bool) -> Final {
    match destination {
        Destination::Done => Final::Done,
        Destination::DeadLetter if sent => Final::DeadLettered,
        Destination::DeadLetter | Destination::HandBack => Final::HandedBack,
    }
}

/// What a result is about: an accepted ARN, or the raw input of a rejected item.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    Arn(String),
    Input(Value),
}

/// One line of the report: a distinct ARN (deduplicated) or one rejected item.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRecord {
    pub subject: Subject,
    pub status: Status,
    pub request_id: Option<String>,
    pub error_code: Option<String>,
    pub message: Option<String>,
    /// Set for `failed` and `notAttempted`.
    pub retryable: Option<bool>,
    /// The failure is the function's own credentials, not the ARN's (never dead-lettered).
    pub configuration: bool,
    /// Calls made for this ARN's deciding operation (0 for rejected / not attempted).
    pub attempts: u32,
    /// Calls for this ARN the services refused for rate (not counted in `attempts`).
    pub throttled: u32,
    /// Wall time spent on this ARN's calls, including backoff.
    pub latency_ms: u64,
    /// Every dead-letter message this record needed was sent.
    pub dead_lettered: bool,
    /// At least one source that named it was handed back for a retry because of it.
    pub handed_back: bool,
    /// What happened to each of the image's AMIs, snapshots and container images
    /// (`DELETE_OUTPUT_RESOURCES`; empty when not asked for).
    pub output_resources: Vec<ResourceEntry>,
    /// For `inUse`: what still uses the image's AMIs (empty when the reason is protection or
    /// a recent launch).
    pub references: Vec<InUseReference>,
}

impl ResultRecord {
    /// A record with just a subject and a status; the decision fills in the rest.
    pub fn new(subject: Subject, status: Status) -> Self {
        ResultRecord {
            subject,
            status,
            request_id: None,
            error_code: None,
            message: None,
            retryable: None,
            configuration: false,
            attempts: 0,
            throttled: 0,
            latency_ms: 0,
            dead_lettered: false,
            handed_back: false,
            output_resources: Vec::new(),
            references: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQS: InvocationKind = InvocationKind::Sqs { fifo: false };
    const FIFO: InvocationKind = InvocationKind::Sqs { fifo: true };

    #[test]
    fn routing_table_matches_spec_section_4() {
        use Destination::*;
        use InvocationKind::*;
        for kind in [SQS, FIFO] {
            assert_eq!(destination(kind, Need::DeadLetter, true), DeadLetter);
            assert_eq!(destination(kind, Need::DeadLetter, false), HandBack);
            assert_eq!(destination(kind, Need::Retry, true), HandBack);
            assert_eq!(destination(kind, Need::Retry, false), HandBack);
            assert_eq!(destination(kind, Need::Nothing, false), Done);
        }
        for kind in [EventBridge, Direct, StepFunctionsBatch] {
            assert_eq!(destination(kind, Need::DeadLetter, true), DeadLetter);
            assert_eq!(destination(kind, Need::Retry, true), DeadLetter);
            assert_eq!(destination(kind, Need::DeadLetter, false), HandBack);
            assert_eq!(destination(kind, Need::Retry, false), HandBack);
            assert_eq!(destination(kind, Need::Nothing, true), Done);
        }
        assert_eq!(settle(DeadLetter, true), Final::DeadLettered);
        assert_eq!(settle(DeadLetter, false), Final::HandedBack);
        assert_eq!(settle(HandBack, true), Final::HandedBack);
    }

    #[test]
    fn needs_follow_status_and_retryability() {
        assert_eq!(Status::Deleted.need(false), Need::Nothing);
        assert_eq!(Status::Protected.need(false), Need::Nothing);
        assert_eq!(Status::InUse.need(false), Need::Nothing);
        assert_eq!(Status::Rejected.need(false), Need::DeadLetter);
        assert_eq!(Status::Failed.need(false), Need::DeadLetter);
        assert_eq!(Status::Failed.need(true), Need::Retry);
        assert_eq!(Status::NotAttempted.need(true), Need::Retry);
    }
}
