//! The selection rules: one pure function from listed build versions, a [`Selection`], the
//! configured protect tag key and `now` to one [`Decision`] per build the plan covers.
//!
//! A kept build carries exactly one [`KeepReason`], the first that applies in this order:
//! `inProgress`, `protected`, `invalidArn`, `unknownStatus`, `unknownDate`, `keepNewest`,
//! `tooNew`, `statusNotSelected`, `newestAvailable`. The three in the middle are fail-safe
//! reasons: a build whose ARN, status or `dateCreated` cannot be read is never ranked or aged,
//! so it is kept rather than guessed about. A deleted build lists every rule that selected it
//! as [`DeleteReason`]s: `beyondKeepNewest`, `olderThan<D>Days`, `status<STATUS>`, and
//! `allowDeletingNewest` when it is the newest AVAILABLE build of its name.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::glob;
use super::request::{Selection, IMAGE_STATUSES};
use super::rfc3339;
use crate::arn;

/// Statuses of a build that is still being made; such a build is never selected.
pub const IN_PROGRESS_STATUSES: [&str; 6] = [
    "PENDING",
    "CREATING",
    "BUILDING",
    "TESTING",
    "DISTRIBUTING",
    "INTEGRATING",
];

/// The only status that takes a `keepNewest` slot or can be the newest usable build.
pub const AVAILABLE: &str = "AVAILABLE";

/// One image build version as listed (ListImageBuildVersions / ListImages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildVersion {
    /// The image build version ARN.
    pub arn: String,
    /// The image name (what `names` globs match).
    pub name: String,
    /// The semantic version `x.y.z`.
    pub version: String,
    /// The build number (the ARN's last segment).
    pub build: u64,
    /// `state.status`, as the service spells it (`AVAILABLE`, `FAILED`, …).
    pub status: String,
    /// `dateCreated` exactly as listed (an RFC 3339 string).
    pub date_created: String,
    /// The build's tags.
    pub tags: BTreeMap<String, String>,
}

/// Why a build is kept. Serialises as the camelCase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KeepReason {
    /// The build is in progress (PENDING … INTEGRATING).
    InProgress,
    /// It carries `PROTECT_TAG_KEY` or one of `excludeTagKeys`.
    Protected,
    /// Its ARN is not an image build version ARN, so nothing could delete it safely.
    InvalidArn,
    /// Its status is not one the service documents, so no rule can judge it.
    UnknownStatus,
    /// Its `dateCreated` is not an RFC 3339 date-time, so it can be neither ranked nor aged.
    UnknownDate,
    /// One of the K newest AVAILABLE builds of its name.
    KeepNewest,
    /// Created less than `olderThanDays` days ago.
    TooNew,
    /// `statuses` is given and does not name this build's status.
    StatusNotSelected,
    /// The newest AVAILABLE build of its name, and `allowDeletingNewest` is not set.
    NewestAvailable,
}

impl KeepReason {
    /// The camelCase name used in the plan document.
    pub fn as_str(self) -> &'static str {
        match self {
            KeepReason::InProgress => "inProgress",
            KeepReason::Protected => "protected",
            KeepReason::InvalidArn => "invalidArn",
            KeepReason::UnknownStatus => "unknownStatus",
            KeepReason::UnknownDate => "unknownDate",
            KeepReason::KeepNewest => "keepNewest",
            KeepReason::TooNew => "tooNew",
            KeepReason::StatusNotSelected => "statusNotSelected",
            KeepReason::NewestAvailable => "newestAvailable",
        }
    }
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule that selected a build for deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteReason {
    /// `keepNewest` is given and the build is not among the K newest AVAILABLE builds of its
    /// name (a build in any other status never is).
    BeyondKeepNewest,
    /// `olderThanDays: D` is given and the build is at least D days old: `olderThan<D>Days`.
    OlderThanDays(u32),
    /// `statuses` is given and names this build's status: `status<STATUS>`.
    Status(String),
    /// The build is the newest AVAILABLE one of its name and `allowDeletingNewest` lets it go.
    AllowDeletingNewest,
}

impl fmt::Display for DeleteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeleteReason::BeyondKeepNewest => f.write_str("beyondKeepNewest"),
            DeleteReason::OlderThanDays(days) => write!(f, "olderThan{days}Days"),
            DeleteReason::Status(status) => write!(f, "status{status}"),
            DeleteReason::AllowDeletingNewest => f.write_str("allowDeletingNewest"),
        }
    }
}

/// What the plan does with one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Keep(KeepReason),
    /// Never empty: at least one rule selected the build.
    Delete(Vec<DeleteReason>),
}

/// One build the plan covers, with its decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided<'a> {
    pub build: &'a BuildVersion,
    /// `dateCreated` as epoch milliseconds; `None` when unparseable (then kept `unknownDate`).
    pub date_created_ms: Option<i64>,
    pub decision: Decision,
}

/// A build with what the rules need, read once.
struct Candidate<'a> {
    build: &'a BuildVersion,
    arn: Option<arn::ImageArn>,
    date_ms: Option<i64>,
    version: Option<[u64; 3]>,
}

/// Applies the selection rules to `builds`.
///
/// Builds whose name matches no `names` glob, or whose ARN is in a region the selection does
/// not scan, are not in the plan: they are left out of the result entirely (the caller lists
/// only what it scans, so they are not "kept" either). The result is ordered by name, then
/// newest first (`dateCreated` desc, ties by version desc then build desc), then ARN, with
/// unparseable dates last within a name.
pub fn select<'a>(
    builds: &'a [BuildVersion],
    selection: &Selection,
    protect_tag_key: Option<&str>,
    now_ms: i64,
) -> Vec<Decided<'a>> {
    let mut candidates: Vec<Candidate<'a>> = builds
        .iter()
        .filter(|b| selection.names.iter().any(|g| glob::matches(g, &b.name)))
        .map(|build| Candidate {
            build,
            arn: arn::parse(&build.arn).ok(),
            date_ms: rfc3339::parse_ms(&build.date_created),
            version: parse_version(&build.version),
        })
        .filter(|c| match &c.arn {
            Some(arn) => selection.regions.iter().any(|r| r == arn.region()),
            None => true,
        })
        .collect();
    candidates.sort_by(newest_first);
    // Per image (region, account, name): how many rankable AVAILABLE builds came before.
    let mut available_seen: HashMap<(String, String, String), u32> = HashMap::new();
    candidates
        .iter()
        .map(|c| Decided {
            build: c.build,
            date_created_ms: c.date_ms,
            decision: decide(c, selection, protect_tag_key, now_ms, &mut available_seen),
        })
        .collect()
}

/// The order of the result and of `keepNewest` ranking.
fn newest_first(a: &Candidate<'_>, b: &Candidate<'_>) -> std::cmp::Ordering {
    a.build
        .name
        .cmp(&b.build.name)
        // `Some` sorts after `None`, so reversing puts known dates first, newest first.
        .then_with(|| b.date_ms.cmp(&a.date_ms))
        .then_with(|| b.version.cmp(&a.version))
        .then_with(|| b.build.build.cmp(&a.build.build))
        .then_with(|| a.build.arn.cmp(&b.build.arn))
}

/// One build's decision. `available_seen` must be fed the builds in [`newest_first`] order.
fn decide(
    c: &Candidate<'_>,
    selection: &Selection,
    protect_tag_key: Option<&str>,
    now_ms: i64,
    available_seen: &mut HashMap<(String, String, String), u32>,
) -> Decision {
    let build = c.build;
    let status = build.status.as_str();
    if IN_PROGRESS_STATUSES.contains(&status) {
        return Decision::Keep(KeepReason::InProgress);
    }
    let protected = |key: &str| build.tags.contains_key(key);
    if protect_tag_key.is_some_and(protected) || selection.exclude_tag_keys.iter().any(|k| protected(k)) {
        return Decision::Keep(KeepReason::Protected);
    }
    let Some(arn) = &c.arn else {
        return Decision::Keep(KeepReason::InvalidArn);
    };
    if !IMAGE_STATUSES.contains(&status) {
        return Decision::Keep(KeepReason::UnknownStatus);
    }
    let Some(date_ms) = c.date_ms else {
        return Decision::Keep(KeepReason::UnknownDate);
    };
    // The 0-based rank among this image's AVAILABLE builds that reached this point; protected
    // and unreadable ones returned above, so they never use up a slot.
    let rank = (status == AVAILABLE).then(|| {
        let key = (arn.region().to_owned(), arn.account().to_owned(), build.name.clone());
        let seen = available_seen.entry(key).or_insert(0);
        *seen += 1;
        *seen - 1
    });
    if let (Some(k), Some(rank)) = (selection.keep_newest, rank) {
        if rank < k {
            return Decision::Keep(KeepReason::KeepNewest);
        }
    }
    if let Some(days) = selection.older_than_days {
        if now_ms.saturating_sub(date_ms) < i64::from(days) * rfc3339::DAY_MS {
            return Decision::Keep(KeepReason::TooNew);
        }
    }
    if let Some(statuses) = &selection.statuses {
        if !statuses.iter().any(|s| s == status) {
            return Decision::Keep(KeepReason::StatusNotSelected);
        }
    }
    let newest = rank == Some(0);
    if newest && !selection.allow_deleting_newest {
        return Decision::Keep(KeepReason::NewestAvailable);
    }
    Decision::Delete(delete_reasons(selection, status, newest))
}

/// The rules that selected a build that no rule keeps.
fn delete_reasons(selection: &Selection, status: &str, newest: bool) -> Vec<DeleteReason> {
    let mut reasons = Vec::new();
    if selection.keep_newest.is_some() {
        reasons.push(DeleteReason::BeyondKeepNewest);
    }
    if let Some(days) = selection.older_than_days {
        reasons.push(DeleteReason::OlderThanDays(days));
    }
    if selection.statuses.is_some() {
        reasons.push(DeleteReason::Status(status.to_owned()));
    }
    if newest {
        reasons.push(DeleteReason::AllowDeletingNewest);
    }
    reasons
}

/// `x.y.z` as numbers, for ordering versions numerically (`1.10.0` after `1.9.0`).
fn parse_version(version: &str) -> Option<[u64; 3]> {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
    let v = [parts.next()??, parts.next()??, parts.next()??];
    parts.next().is_none().then_some(v)
}
