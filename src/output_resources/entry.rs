//! The report's `outputResources` entries and the rules that turn them into a verdict on the
//! image (pure): whether DeleteImage may run after the cleanup.

use serde::Serialize;

/// What one entry of the report's `outputResources` is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ResourceKind {
    Ami,
    Snapshot,
    ContainerImage,
}

impl ResourceKind {
    /// The camelCase name used in the report and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Ami => "ami",
            ResourceKind::Snapshot => "snapshot",
            ResourceKind::ContainerImage => "containerImage",
        }
    }
}

/// What happened to one output resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ResourceStatus {
    Deleted,
    /// Gone before we got to it (not found, already deregistered): counts as done.
    AlreadyDeleted,
    /// Dry run: would be deleted.
    WouldDelete,
    /// In another account (a distributed copy): not touched.
    SkippedForeignAccount,
    /// A snapshot still used by another AMI (or an ECR image referenced by a manifest list).
    SkippedInUse,
    /// A container image tag that now names another build's digest: left alone.
    SkippedMovedTag,
    Failed,
    /// Not tried: an earlier step for it failed, or the Lambda deadline was near.
    NotAttempted,
}

impl ResourceStatus {
    /// The camelCase name used in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceStatus::Deleted => "deleted",
            ResourceStatus::AlreadyDeleted => "alreadyDeleted",
            ResourceStatus::WouldDelete => "wouldDelete",
            ResourceStatus::SkippedForeignAccount => "skippedForeignAccount",
            ResourceStatus::SkippedInUse => "skippedInUse",
            ResourceStatus::SkippedMovedTag => "skippedMovedTag",
            ResourceStatus::Failed => "failed",
            ResourceStatus::NotAttempted => "notAttempted",
        }
    }

    /// Whether this piece is left behind on purpose (never a failure by itself). A moved tag
    /// is not: it no longer names anything of this image.
    pub fn is_skipped(self) -> bool {
        matches!(
            self,
            ResourceStatus::SkippedForeignAccount | ResourceStatus::SkippedInUse
        )
    }
}

/// One entry of a result's `outputResources` in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceEntry {
    #[serde(rename = "type")]
    pub kind: ResourceKind,
    /// `ami-…`, `snap-…`, or the container image URI as GetImage gave it.
    pub id: String,
    pub region: String,
    /// The owning account (the ECR registry id for container images).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// For a snapshot: the AMI it belonged to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ami_id: Option<String>,
    pub status: ResourceStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Set for `failed` and `notAttempted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// Calls made for this piece when more than one was needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

impl ResourceEntry {
    /// An entry with just a status (no error).
    pub fn new(
        kind: ResourceKind,
        id: impl Into<String>,
        region: impl Into<String>,
        account_id: Option<String>,
        status: ResourceStatus,
    ) -> Self {
        ResourceEntry {
            kind,
            id: id.into(),
            region: region.into(),
            account_id,
            ami_id: None,
            status,
            error_code: None,
            message: None,
            retryable: None,
            attempts: None,
        }
    }

    /// Marks the entry failed with the given error.
    pub fn failed(mut self, code: &str, message: impl Into<String>, retryable: bool) -> Self {
        self.status = ResourceStatus::Failed;
        self.error_code = Some(code.to_string());
        self.message = Some(message.into());
        self.retryable = Some(retryable);
        self
    }

    /// Adds a human-readable reason (for skips and not-attempted pieces).
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// `notAttempted` with the reason; retryable because a later invocation can do it.
    pub fn not_attempted(mut self, reason: impl Into<String>) -> Self {
        self.status = ResourceStatus::NotAttempted;
        self.message = Some(reason.into());
        self.retryable = Some(true);
        self
    }

    fn label(&self) -> String {
        let what = match self.kind {
            ResourceKind::Ami => "AMI",
            ResourceKind::Snapshot => "snapshot",
            ResourceKind::ContainerImage => "container image",
        };
        format!("{what} {} ({})", self.id, self.region)
    }
}

/// A resource that still uses one of the image's AMIs, as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InUseReference {
    pub resource_type: String,
    pub arn: String,
}

/// What the engine does with the ARN after the cleanup (the outcome rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every output resource is gone (or deliberately left): call DeleteImage (or, in a dry
    /// run, report `wouldDelete`).
    Proceed,
    /// An AMI carries the protect tag: status `protected`, nothing was deleted.
    Protected { message: String },
    /// An AMI is still in use (referenced, protected from deregistration, or launched within
    /// the grace period): status `inUse`, nothing was deleted, DeleteImage is not called.
    InUse {
        references: Vec<InUseReference>,
        reason: String,
    },
    /// Something is still there: status `failed` with this code; DeleteImage is NOT called.
    /// `retryable` routes it per (retry vs dead letter).
    Failed {
        code: String,
        message: String,
        retryable: bool,
    },
    /// The deadline stopped the cleanup before it finished: status `notAttempted` (retry).
    NotAttempted { message: String },
}

/// Error code of an ARN whose cleanup is incomplete only because pieces were skipped while
/// `REQUIRE_COMPLETE_CLEANUP=true`.
pub const INCOMPLETE_CLEANUP: &str = "IncompleteCleanup";

/// The outcome rules, from the entries alone (pure):
/// 1. any retryable failure → `Failed { retryable: true }` (a retry can finish the job);
/// 2. else any permanent failure → `Failed { retryable: false }`;
/// 3. else any `notAttempted` piece → `NotAttempted` (deadline);
/// 4. else, with `require_complete`, any skipped piece (foreign account, in use) →
///    `Failed { code: IncompleteCleanup, retryable: false }`;
/// 5. else `Proceed`.
///
/// Failures win over `notAttempted` because pieces not attempted *after* a failure are a
/// consequence of it. The ARN takes the first failure's code; the message names the piece
/// and how many others failed.
pub fn verdict(entries: &[ResourceEntry], require_complete: bool) -> Verdict {
    let failed: Vec<&ResourceEntry> = entries
        .iter()
        .filter(|e| e.status == ResourceStatus::Failed)
        .collect();
    let first = failed
        .iter()
        .find(|e| e.retryable == Some(true))
        .or_else(|| failed.first());
    if let Some(first) = first {
        let retryable = first.retryable == Some(true);
        let code = first.error_code.clone().unwrap_or_else(|| "Unknown".into());
        let others = failed.len() - 1;
        let mut message = format!(
            "output resource cleanup: {} failed: {}: {}",
            first.label(),
            code,
            first.message.as_deref().unwrap_or("")
        );
        if others > 0 {
            message.push_str(&format!(" (and {others} more output resource(s) failed)"));
        }
        message
            .push_str("; DeleteImage was not called, so a retry finds them again through GetImage");
        return Verdict::Failed {
            code,
            message,
            retryable,
        };
    }
    let pending: Vec<&ResourceEntry> = entries
        .iter()
        .filter(|e| e.status == ResourceStatus::NotAttempted)
        .collect();
    if let Some(first) = pending.first() {
        return Verdict::NotAttempted {
            message: format!(
                "output resource cleanup stopped before {} ({} piece(s) left): {}; DeleteImage was not called",
                first.label(),
                pending.len(),
                first.message.as_deref().unwrap_or("not attempted")
            ),
        };
    }
    if require_complete {
        let skipped: Vec<String> = entries
            .iter()
            .filter(|e| e.status.is_skipped())
            .map(|e| format!("{} {}", e.label(), e.status.as_str()))
            .collect();
        if !skipped.is_empty() {
            return Verdict::Failed {
                code: INCOMPLETE_CLEANUP.into(),
                message: format!(
                    "REQUIRE_COMPLETE_CLEANUP=true and {} output resource(s) were left: {}; DeleteImage was not called",
                    skipped.len(),
                    skipped.join(", ")
                ),
                retryable: false,
            };
        }
    }
    Verdict::Proceed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: ResourceKind, id: &str, status: ResourceStatus) -> ResourceEntry {
        ResourceEntry::new(kind, id, "us-east-1", None, status)
    }

    #[test]
    fn everything_gone_or_deliberately_left_lets_delete_image_run() {
        // GIVEN deleted, already-deleted, in-use and foreign pieces
        let entries = vec![
            entry(ResourceKind::Ami, "ami-1", ResourceStatus::Deleted),
            entry(
                ResourceKind::Snapshot,
                "snap-1",
                ResourceStatus::AlreadyDeleted,
            ),
            entry(
                ResourceKind::Snapshot,
                "snap-2",
                ResourceStatus::SkippedInUse,
            ),
            entry(
                ResourceKind::Ami,
                "ami-2",
                ResourceStatus::SkippedForeignAccount,
            ),
        ];
        // WHEN judged without REQUIRE_COMPLETE_CLEANUP THEN DeleteImage may run
        assert_eq!(verdict(&entries, false), Verdict::Proceed);
        // WHEN judged with it THEN the skipped pieces block it, permanently
        match verdict(&entries, true) {
            Verdict::Failed {
                code,
                message,
                retryable,
            } => {
                assert_eq!(code, INCOMPLETE_CLEANUP);
                assert!(!retryable);
                assert!(
                    message.contains("snap-2") && message.contains("ami-2"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_retryable_failure_wins_over_a_permanent_one_and_names_the_piece() {
        let entries = vec![
            entry(ResourceKind::Ami, "ami-1", ResourceStatus::Failed).failed(
                "UnauthorizedOperation",
                "no",
                false,
            ),
            entry(ResourceKind::ContainerImage, "uri", ResourceStatus::Failed).failed(
                "ThrottlingException",
                "slow down",
                true,
            ),
            entry(
                ResourceKind::Snapshot,
                "snap-1",
                ResourceStatus::NotAttempted,
            ),
        ];
        match verdict(&entries, false) {
            Verdict::Failed {
                code,
                message,
                retryable,
            } => {
                assert_eq!(code, "ThrottlingException");
                assert!(retryable);
                assert!(message.contains("container image uri") && message.contains("1 more"));
                assert!(message.contains("DeleteImage was not called"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_permanent_failures_make_a_permanent_verdict() {
        let entries = vec![
            entry(ResourceKind::Ami, "ami-1", ResourceStatus::Failed).failed(
                "UnauthorizedOperation",
                "no",
                false,
            ),
        ];
        assert!(matches!(
            verdict(&entries, false),
            Verdict::Failed { retryable: false, ref code, .. } if code == "UnauthorizedOperation"
        ));
    }

    #[test]
    fn pieces_left_by_the_deadline_mean_not_attempted() {
        let entries = vec![
            entry(ResourceKind::Ami, "ami-1", ResourceStatus::Deleted),
            entry(ResourceKind::Snapshot, "snap-1", ResourceStatus::Deleted)
                .not_attempted("deadline"),
        ];
        assert!(matches!(
            verdict(&entries, false),
            Verdict::NotAttempted { .. }
        ));
    }

    #[test]
    fn entries_serialise_in_camel_case_without_empty_fields() {
        let mut e = ResourceEntry::new(
            ResourceKind::Snapshot,
            "snap-1",
            "eu-west-1",
            Some("123456789012".into()),
            ResourceStatus::SkippedInUse,
        )
        .with_message("in use by ami-9");
        e.ami_id = Some("ami-1".into());
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "snapshot", "id": "snap-1", "region": "eu-west-1",
                "accountId": "123456789012", "amiId": "ami-1", "status": "skippedInUse",
                "message": "in use by ami-9"})
        );
    }
}
