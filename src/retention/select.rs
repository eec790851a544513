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
    if protect_tag_key.is_some_and(protected)
        || selection.exclude_tag_keys.iter().any(|k| protected(k))
    {
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
        let key = (
            arn.region().to_owned(),
            arn.account().to_owned(),
            build.name.clone(),
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-01T00:00:00Z: every test passes this as `now`.
    const NOW: i64 = 1_793_491_200_000;

    fn build(name: &str, version: &str, build: u64, status: &str, days_ago: f64) -> BuildVersion {
        build_in("us-east-1", name, version, build, status, days_ago)
    }

    fn build_in(
        region: &str,
        name: &str,
        version: &str,
        build: u64,
        status: &str,
        days_ago: f64,
    ) -> BuildVersion {
        BuildVersion {
            arn: format!(
                "arn:aws:imagebuilder:{region}:123456789012:image/{name}/{version}/{build}"
            ),
            name: name.to_owned(),
            version: version.to_owned(),
            build,
            status: status.to_owned(),
            date_created: rfc3339::format_ms(NOW - (days_ago * rfc3339::DAY_MS as f64) as i64),
            tags: BTreeMap::new(),
        }
    }

    fn tagged(mut b: BuildVersion, key: &str) -> BuildVersion {
        b.tags.insert(key.to_owned(), "yes".to_owned());
        b
    }

    fn selection() -> Selection {
        Selection {
            names: vec!["*".into()],
            regions: vec!["us-east-1".into()],
            keep_newest: None,
            older_than_days: None,
            statuses: None,
            exclude_tag_keys: vec!["pinned".into()],
            allow_deleting_newest: false,
        }
    }

    fn keep_newest(k: u32) -> Selection {
        Selection {
            keep_newest: Some(k),
            ..selection()
        }
    }

    /// (ARN suffix after `image/`, decision as a short string) in result order.
    fn outcome(
        builds: &[BuildVersion],
        selection: &Selection,
        protect: Option<&str>,
    ) -> Vec<(String, String)> {
        select(builds, selection, protect, NOW)
            .into_iter()
            .map(|d| {
                let id = d.build.arn.split("image/").nth(1).unwrap().to_owned();
                let decision = match d.decision {
                    Decision::Keep(reason) => reason.to_string(),
                    Decision::Delete(reasons) => {
                        let names: Vec<String> = reasons.iter().map(ToString::to_string).collect();
                        format!("delete {}", names.join(","))
                    }
                };
                (id, decision)
            })
            .collect()
    }

    fn expect(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn keep_newest_counts_per_name_across_versions() {
        // GIVEN web 1.0.0, 1.0.1 and 1.1.0, all AVAILABLE, and api with one build
        let builds = [
            build("web", "1.0.0", 1, "AVAILABLE", 30.0),
            build("web", "1.1.0", 1, "AVAILABLE", 10.0),
            build("web", "1.0.1", 1, "AVAILABLE", 20.0),
            build("api", "2.0.0", 4, "AVAILABLE", 90.0),
        ];
        // WHEN keepNewest is 2
        // THEN the two newest web builds share the slots whatever their version; api keeps its own
        assert_eq!(
            outcome(&builds, &keep_newest(2), None),
            expect(&[
                ("api/2.0.0/4", "keepNewest"),
                ("web/1.1.0/1", "keepNewest"),
                ("web/1.0.1/1", "keepNewest"),
                ("web/1.0.0/1", "delete beyondKeepNewest"),
            ])
        );
    }

    #[test]
    fn builds_that_are_not_available_never_take_a_slot() {
        // GIVEN newer FAILED, CANCELLED, DEPRECATED and DISABLED builds above two AVAILABLE ones
        let builds = [
            build("web", "1.0.0", 6, "FAILED", 1.0),
            build("web", "1.0.0", 5, "CANCELLED", 2.0),
            build("web", "1.0.0", 4, "DEPRECATED", 3.0),
            build("web", "1.0.0", 3, "DISABLED", 4.0),
            build("web", "1.0.0", 2, "AVAILABLE", 5.0),
            build("web", "1.0.0", 1, "AVAILABLE", 6.0),
        ];
        // WHEN keepNewest is 2
        // THEN both AVAILABLE builds are kept and the newer ones are beyond keepNewest
        assert_eq!(
            outcome(&builds, &keep_newest(2), None),
            expect(&[
                ("web/1.0.0/6", "delete beyondKeepNewest"),
                ("web/1.0.0/5", "delete beyondKeepNewest"),
                ("web/1.0.0/4", "delete beyondKeepNewest"),
                ("web/1.0.0/3", "delete beyondKeepNewest"),
                ("web/1.0.0/2", "keepNewest"),
                ("web/1.0.0/1", "keepNewest"),
            ])
        );
    }

    #[test]
    fn protected_builds_do_not_use_a_slot() {
        // GIVEN the newest build carries an excluded tag key, the second the protect tag key
        let builds = [
            tagged(build("web", "1.0.0", 5, "AVAILABLE", 1.0), "pinned"),
            tagged(build("web", "1.0.0", 4, "AVAILABLE", 2.0), "keep-me"),
            build("web", "1.0.0", 3, "AVAILABLE", 3.0),
            build("web", "1.0.0", 2, "AVAILABLE", 4.0),
            tagged(build("web", "1.0.0", 1, "FAILED", 5.0), "pinned"),
        ];
        // WHEN keepNewest is 1 with PROTECT_TAG_KEY=keep-me
        // THEN both tagged builds are protected and the slot goes to the newest untagged build
        assert_eq!(
            outcome(&builds, &keep_newest(1), Some("keep-me")),
            expect(&[
                ("web/1.0.0/5", "protected"),
                ("web/1.0.0/4", "protected"),
                ("web/1.0.0/3", "keepNewest"),
                ("web/1.0.0/2", "delete beyondKeepNewest"),
                ("web/1.0.0/1", "protected"),
            ])
        );
        // AND without PROTECT_TAG_KEY the protect-tagged build is an ordinary one
        assert_eq!(outcome(&builds, &keep_newest(1), None)[1].1, "keepNewest");
    }

    #[test]
    fn keep_newest_zero_keeps_nothing_by_count_but_the_newest_stays() {
        // GIVEN three AVAILABLE builds
        let builds = [
            build("web", "1.0.0", 3, "AVAILABLE", 1.0),
            build("web", "1.0.0", 2, "AVAILABLE", 2.0),
            build("web", "1.0.0", 1, "AVAILABLE", 3.0),
        ];
        // WHEN keepNewest is 0 THEN only the newest AVAILABLE build is kept, as newestAvailable
        assert_eq!(
            outcome(&builds, &keep_newest(0), None),
            expect(&[
                ("web/1.0.0/3", "newestAvailable"),
                ("web/1.0.0/2", "delete beyondKeepNewest"),
                ("web/1.0.0/1", "delete beyondKeepNewest"),
            ])
        );
        // WHEN allowDeletingNewest is also set THEN the newest goes too, and says why
        let all = Selection {
            allow_deleting_newest: true,
            ..keep_newest(0)
        };
        assert_eq!(
            outcome(&builds, &all, None)[0].1,
            "delete beyondKeepNewest,allowDeletingNewest"
        );
    }

    #[test]
    fn newest_available_is_per_image_and_ignores_other_statuses() {
        // GIVEN per name: a newer FAILED build above the newest AVAILABLE one, all old
        let builds = [
            build("web", "1.0.0", 2, "FAILED", 40.0),
            build("web", "1.0.0", 1, "AVAILABLE", 50.0),
            build("api", "1.0.0", 1, "AVAILABLE", 60.0),
            build("api", "1.0.0", 2, "AVAILABLE", 45.0),
        ];
        // WHEN only olderThanDays 30 applies
        let older = Selection {
            older_than_days: Some(30),
            ..selection()
        };
        // THEN each name keeps its newest AVAILABLE build; the FAILED one is not "newest"
        assert_eq!(
            outcome(&builds, &older, None),
            expect(&[
                ("api/1.0.0/2", "newestAvailable"),
                ("api/1.0.0/1", "delete olderThan30Days"),
                ("web/1.0.0/2", "delete olderThan30Days"),
                ("web/1.0.0/1", "newestAvailable"),
            ])
        );
    }

    #[test]
    fn in_progress_builds_are_never_selected() {
        // GIVEN an old build in each in-progress status, the plan selecting exactly those statuses
        let builds: Vec<BuildVersion> = IN_PROGRESS_STATUSES
            .iter()
            .enumerate()
            .map(|(i, status)| build("web", "1.0.0", i as u64 + 1, status, 100.0 + i as f64))
            .collect();
        let greedy = Selection {
            keep_newest: Some(0),
            older_than_days: Some(0),
            statuses: Some(IN_PROGRESS_STATUSES.iter().map(|s| s.to_string()).collect()),
            allow_deleting_newest: true,
            ..selection()
        };
        // WHEN selected THEN every one is kept as inProgress
        for (id, decision) in outcome(&builds, &greedy, None) {
            assert_eq!(decision, "inProgress", "{id}");
        }
    }

    #[test]
    fn older_than_days_boundary() {
        // GIVEN builds just under, exactly at, and over 30 days old, plus one dated in the future
        let mut future = build("web", "1.0.0", 5, "FAILED", 0.0);
        future.date_created = rfc3339::format_ms(NOW + 60_000);
        let mut just_under = build("web", "1.0.0", 3, "FAILED", 0.0);
        just_under.date_created = rfc3339::format_ms(NOW - 30 * rfc3339::DAY_MS + 1);
        let builds = [
            future,
            just_under,
            build("web", "1.0.0", 2, "FAILED", 30.0),
            build("web", "1.0.0", 1, "FAILED", 31.0),
        ];
        // WHEN olderThanDays is 30 THEN "less than 30 days ago" is tooNew, 30 days is old enough
        let older = Selection {
            older_than_days: Some(30),
            ..selection()
        };
        assert_eq!(
            outcome(&builds, &older, None),
            expect(&[
                ("web/1.0.0/5", "tooNew"),
                ("web/1.0.0/3", "tooNew"),
                ("web/1.0.0/2", "delete olderThan30Days"),
                ("web/1.0.0/1", "delete olderThan30Days"),
            ])
        );
        // WHEN olderThanDays is 0 THEN only the future-dated build is too new
        let zero = Selection {
            older_than_days: Some(0),
            ..selection()
        };
        let decisions = outcome(&builds, &zero, None);
        assert_eq!(decisions[0].1, "tooNew");
        assert!(decisions[1..]
            .iter()
            .all(|(_, d)| d == "delete olderThan0Days"));
    }

    #[test]
    fn statuses_select_only_the_named_statuses() {
        // GIVEN an old AVAILABLE pair and old FAILED and DEPRECATED builds
        let builds = [
            build("web", "1.0.0", 4, "AVAILABLE", 10.0),
            build("web", "1.0.0", 3, "FAILED", 20.0),
            build("web", "1.0.0", 2, "AVAILABLE", 30.0),
            build("web", "1.0.0", 1, "DEPRECATED", 40.0),
        ];
        // WHEN statuses is [FAILED, DEPRECATED]
        let failed = Selection {
            statuses: Some(vec!["DEPRECATED".into(), "FAILED".into()]),
            ..selection()
        };
        // THEN only those go, each naming its status
        assert_eq!(
            outcome(&builds, &failed, None),
            expect(&[
                ("web/1.0.0/4", "statusNotSelected"),
                ("web/1.0.0/3", "delete statusFAILED"),
                ("web/1.0.0/2", "statusNotSelected"),
                ("web/1.0.0/1", "delete statusDEPRECATED"),
            ])
        );
    }

    #[test]
    fn every_selecting_rule_is_listed_in_a_fixed_order() {
        // GIVEN an old FAILED build beyond keepNewest
        let builds = [
            build("web", "1.0.0", 2, "AVAILABLE", 1.0),
            build("web", "1.0.0", 1, "FAILED", 90.0),
        ];
        // WHEN all three rules are given
        let all = Selection {
            keep_newest: Some(1),
            older_than_days: Some(30),
            statuses: Some(vec!["FAILED".into()]),
            ..selection()
        };
        // THEN its reasons name all three, in rule order
        let decided = select(&builds, &all, None, NOW);
        assert_eq!(
            decided[1].decision,
            Decision::Delete(vec![
                DeleteReason::BeyondKeepNewest,
                DeleteReason::OlderThanDays(30),
                DeleteReason::Status("FAILED".into()),
            ])
        );
        assert_eq!(
            outcome(&builds, &all, None)[1].1,
            "delete beyondKeepNewest,olderThan30Days,statusFAILED"
        );
    }

    /// A build of `web` 1.0.0, build 9, for the priority tables.
    fn target(status: &str, days_ago: f64) -> BuildVersion {
        build("web", "1.0.0", 9, status, days_ago)
    }

    fn undated(mut b: BuildVersion) -> BuildVersion {
        b.date_created = "yesterday".into();
        b
    }

    fn unversioned_arn(mut b: BuildVersion) -> BuildVersion {
        b.arn = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0".into();
        b
    }

    /// keepNewest K, olderThanDays 30, statuses [FAILED].
    fn all_rules(k: u32) -> Selection {
        Selection {
            keep_newest: Some(k),
            older_than_days: Some(30),
            statuses: Some(vec!["FAILED".into()]),
            ..selection()
        }
    }

    /// The keep reason of build 9 when selected next to an older AVAILABLE sibling.
    fn reason_of_target(target: BuildVersion, selection: &Selection) -> &'static str {
        let builds = [target, build("web", "1.0.0", 1, "AVAILABLE", 100.0)];
        let decided = select(&builds, selection, Some("keep-me"), NOW);
        match &decided
            .iter()
            .find(|d| d.build.build == 9)
            .unwrap()
            .decision
        {
            Decision::Keep(reason) => reason.as_str(),
            Decision::Delete(_) => "delete",
        }
    }

    /// Checks rows of (`"winner > loser"`, build 9, selection): the winner is build 9's reason.
    fn assert_winners(table: Vec<(&str, BuildVersion, Selection)>) {
        for (pair, target, selection) in table {
            let winner = pair.split(" > ").next().unwrap();
            assert_eq!(reason_of_target(target, &selection), winner, "{pair}");
        }
    }

    #[test]
    fn in_progress_and_protected_win_over_every_later_reason() {
        // GIVEN for each pair of keep reasons a build to which both apply
        let pin = |b| tagged(b, "pinned");
        let available = |days| target("AVAILABLE", days);
        // WHEN selected THEN the earlier reason wins
        assert_winners(vec![
            (
                "inProgress > protected",
                pin(target("BUILDING", 90.0)),
                all_rules(0),
            ),
            (
                "inProgress > unknownDate",
                undated(target("TESTING", 90.0)),
                all_rules(0),
            ),
            (
                "protected > invalidArn",
                pin(unversioned_arn(available(90.0))),
                all_rules(0),
            ),
            (
                "protected > unknownDate",
                pin(undated(available(90.0))),
                all_rules(0),
            ),
            ("protected > keepNewest", pin(available(1.0)), all_rules(5)),
            (
                "protected > tooNew",
                pin(target("FAILED", 1.0)),
                all_rules(0),
            ),
            (
                "protected > statusNotSelected",
                pin(available(90.0)),
                all_rules(0),
            ),
            (
                "protected > newestAvailable",
                pin(available(90.0)),
                keep_newest(0),
            ),
        ]);
    }

    #[test]
    fn fail_safe_reasons_win_over_the_rules() {
        // GIVEN for each pair of keep reasons a build to which both apply
        let available = |days| target("AVAILABLE", days);
        // WHEN selected THEN the earlier reason wins
        assert_winners(vec![
            (
                "invalidArn > unknownStatus",
                unversioned_arn(target("ARCHIVED", 90.0)),
                all_rules(0),
            ),
            (
                "invalidArn > keepNewest",
                unversioned_arn(available(90.0)),
                all_rules(5),
            ),
            (
                "unknownStatus > unknownDate",
                undated(target("ARCHIVED", 90.0)),
                all_rules(0),
            ),
            (
                "unknownStatus > statusNotSelected",
                target("ARCHIVED", 90.0),
                all_rules(0),
            ),
            (
                "unknownDate > keepNewest",
                undated(available(90.0)),
                all_rules(5),
            ),
            (
                "unknownDate > tooNew",
                undated(target("FAILED", 1.0)),
                all_rules(0),
            ),
            (
                "unknownDate > newestAvailable",
                undated(available(90.0)),
                keep_newest(0),
            ),
        ]);
    }

    #[test]
    fn each_rule_reason_wins_over_every_later_one() {
        // GIVEN for each pair of rule reasons a build to which both apply
        let older = Selection {
            older_than_days: Some(30),
            ..selection()
        };
        let available = |days| target("AVAILABLE", days);
        // WHEN selected THEN the earlier reason wins
        assert_winners(vec![
            ("keepNewest > tooNew", available(1.0), all_rules(1)),
            (
                "keepNewest > statusNotSelected",
                available(90.0),
                all_rules(1),
            ),
            (
                "keepNewest > newestAvailable",
                available(90.0),
                keep_newest(1),
            ),
            ("tooNew > statusNotSelected", available(1.0), all_rules(0)),
            ("tooNew > newestAvailable", available(1.0), older),
            (
                "statusNotSelected > newestAvailable",
                available(90.0),
                all_rules(0),
            ),
        ]);
    }

    #[test]
    fn names_outside_the_globs_and_regions_outside_the_selection_are_not_in_the_plan() {
        // GIVEN builds of web, api-gateway and api in two regions
        let builds = [
            build("web", "1.0.0", 1, "FAILED", 90.0),
            build("api-gateway", "1.0.0", 1, "FAILED", 90.0),
            build("api", "1.0.0", 1, "FAILED", 90.0),
            build_in("eu-west-1", "api-orders", "1.0.0", 1, "FAILED", 90.0),
        ];
        // WHEN the plan names api-* in us-east-1
        let failed = Selection {
            names: vec!["api-*".into()],
            statuses: Some(vec!["FAILED".into()]),
            ..selection()
        };
        // THEN only api-gateway is covered: nothing else is kept or deleted
        assert_eq!(
            outcome(&builds, &failed, None),
            expect(&[("api-gateway/1.0.0/1", "delete statusFAILED")])
        );
    }

    #[test]
    fn the_same_name_in_two_regions_is_two_images() {
        // GIVEN web in us-east-1 and eu-west-1
        let builds = [
            build_in("us-east-1", "web", "1.0.0", 2, "AVAILABLE", 1.0),
            build_in("us-east-1", "web", "1.0.0", 1, "AVAILABLE", 3.0),
            build_in("eu-west-1", "web", "1.0.0", 2, "AVAILABLE", 2.0),
            build_in("eu-west-1", "web", "1.0.0", 1, "AVAILABLE", 4.0),
        ];
        // WHEN both regions are scanned with keepNewest 1
        let both = Selection {
            regions: vec!["eu-west-1".into(), "us-east-1".into()],
            ..keep_newest(1)
        };
        let decided = select(&builds, &both, None, NOW);
        // THEN each region keeps its own newest build
        let kept: Vec<&str> = decided
            .iter()
            .filter(|d| d.decision == Decision::Keep(KeepReason::KeepNewest))
            .map(|d| d.build.arn.as_str())
            .collect();
        assert_eq!(kept.len(), 2);
        assert!(kept
            .iter()
            .any(|a| a.contains(":us-east-1:") && a.ends_with("/2")));
        assert!(kept
            .iter()
            .any(|a| a.contains(":eu-west-1:") && a.ends_with("/2")));
    }

    #[test]
    fn order_is_name_then_newest_first_with_ties_by_version_build_and_arn() {
        // GIVEN same-instant builds, out of order, and one unreadable date
        let mut no_date = build("web", "1.0.0", 7, "FAILED", 0.0);
        no_date.date_created = "2026-11-01".into();
        let builds = [
            no_date,
            build("web", "1.0.0", 1, "FAILED", 5.0),
            build("web", "1.0.0", 2, "FAILED", 5.0),
            build("web", "1.10.0", 1, "FAILED", 5.0),
            build("web", "1.9.0", 3, "FAILED", 5.0),
            build("web", "1.0.0", 3, "FAILED", 1.0),
            build("app", "1.0.0", 1, "FAILED", 9.0),
        ];
        // WHEN selected
        let failed = Selection {
            statuses: Some(vec!["FAILED".into()]),
            ..selection()
        };
        let ids: Vec<String> = outcome(&builds, &failed, None)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        // THEN names ascend, dates descend, ties go to the higher version then build, unknown last
        assert_eq!(
            ids,
            [
                "app/1.0.0/1",
                "web/1.0.0/3",
                "web/1.10.0/1",
                "web/1.9.0/3",
                "web/1.0.0/2",
                "web/1.0.0/1",
                "web/1.0.0/7"
            ]
        );
        // AND the same input in another order gives the same result
        let mut reversed = builds.to_vec();
        reversed.reverse();
        assert_eq!(
            select(&reversed, &failed, None, NOW),
            select(&builds, &failed, None, NOW)
        );
    }

    #[test]
    fn unreadable_builds_are_kept_and_take_no_slot() {
        // GIVEN the newest build's dateCreated cannot be read, then two AVAILABLE builds
        let mut no_date = build("web", "1.0.0", 3, "AVAILABLE", 0.0);
        no_date.date_created = "Sun, 01 Nov 2026 00:00:00 GMT".into();
        let builds = [
            no_date,
            build("web", "1.0.0", 2, "AVAILABLE", 2.0),
            build("web", "1.0.0", 1, "AVAILABLE", 3.0),
        ];
        // WHEN keepNewest is 1
        // THEN it is kept as unknownDate, and the slot and the newest-available guard go to the next
        assert_eq!(
            outcome(&builds, &keep_newest(1), None),
            expect(&[
                ("web/1.0.0/2", "keepNewest"),
                ("web/1.0.0/1", "delete beyondKeepNewest"),
                ("web/1.0.0/3", "unknownDate"),
            ])
        );
    }

    #[test]
    fn reason_names_are_stable() {
        // GIVEN every reason WHEN named THEN the names are the documented camelCase ones
        let keep: Vec<String> = [
            KeepReason::InProgress,
            KeepReason::Protected,
            KeepReason::InvalidArn,
            KeepReason::UnknownStatus,
            KeepReason::UnknownDate,
            KeepReason::KeepNewest,
            KeepReason::TooNew,
            KeepReason::StatusNotSelected,
            KeepReason::NewestAvailable,
        ]
        .iter()
        .map(|r| {
            serde_json::to_value(r)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
        assert_eq!(
            keep,
            [
                "inProgress",
                "protected",
                "invalidArn",
                "unknownStatus",
                "unknownDate",
                "keepNewest",
                "tooNew",
                "statusNotSelected",
                "newestAvailable"
            ]
        );
        let delete: Vec<String> = [
            DeleteReason::BeyondKeepNewest,
            DeleteReason::OlderThanDays(30),
            DeleteReason::Status("FAILED".into()),
            DeleteReason::AllowDeletingNewest,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            delete,
            [
                "beyondKeepNewest",
                "olderThan30Days",
                "statusFAILED",
                "allowDeletingNewest"
            ]
        );
    }
}
