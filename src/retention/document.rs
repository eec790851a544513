//! The plan document and its Map items: built from the selection's decisions, serialised
//! (camelCase) as the plan response and the S3 objects, parsed back for execution with
//! validation, plus the two checks execution makes — expiry and drift.
//!
//! A plan is the only thing an execution deletes from, so parsing is strict: unknown keys,
//! a malformed `planId` (it becomes an S3 key), an `expiresAt` that is not exactly
//! `createdAt` + 24 h, counts that disagree with the lists, or a `delete` entry that a plan
//! could not have produced are all refused.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::request::{Selection, IMAGE_STATUSES};
use super::rfc3339;
use super::select::{Decided, Decision, KeepReason, IN_PROGRESS_STATUSES};
use crate::arn::{self, quote};

/// How long a plan stays executable after it is made.
pub const PLAN_TTL_MS: i64 = 24 * 3_600_000;

/// A retention plan: what was scanned, what goes, what stays and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Plan {
    pub plan_id: String,
    /// RFC 3339, millisecond precision, UTC.
    pub created_at: String,
    /// `created_at` + 24 h.
    pub expires_at: String,
    pub selection: Selection,
    pub delete: Vec<DeleteEntry>,
    pub keep: Vec<KeepEntry>,
    pub summary: Summary,
    /// Where the plan is stored, when it is (`PLAN_BUCKET`); the response carries it, so a
    /// response passed back as `executePlan` parses too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_location: Option<PlanLocation>,
}

/// A build the plan deletes, with what it looked like when planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteEntry {
    pub image_build_version_arn: String,
    pub status: String,
    /// As listed by the service.
    pub date_created: String,
    /// The rules that selected it (`beyondKeepNewest`, `olderThan30Days`, `statusFAILED`, …).
    pub reasons: Vec<String>,
}

/// A build the plan keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeepEntry {
    pub image_build_version_arn: String,
    pub reason: KeepReason,
}

/// Counts: `scanned` = `delete` + `keep` (builds outside `names` / `regions` are not scanned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub scanned: usize,
    pub delete: usize,
    pub keep: usize,
}

/// `s3://bucket/key` of a stored plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanLocation {
    pub bucket: String,
    pub key: String,
}

/// One Distributed Map item: a build to delete, the plan it belongs to, and what it must
/// still look like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MapItem {
    pub image_build_version_arn: String,
    pub plan_id: String,
    pub expect: Expect,
}

/// What a build looked like when planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expect {
    pub status: String,
    pub date_created: String,
}

/// Why a plan document or Map item was refused. The caller reports it as `InvalidEvent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// Not a plan this function could have made (shape, values or consistency).
    Malformed(String),
    /// `expiresAt` has passed: nothing is called.
    Expired { plan_id: String, expires_at: String },
    /// A Map item that does not match the plan it names.
    ItemMismatch(String),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Malformed(why) => write!(f, "not a valid retention plan: {why}"),
            PlanError::Expired { plan_id, expires_at } => write!(
                f,
                "plan {plan_id} expired at {expires_at}; make a new plan (plans are executable for 24 hours)"
            ),
            PlanError::ItemMismatch(why) => write!(f, "plan item refused: {why}"),
        }
    }
}

impl std::error::Error for PlanError {}

/// A plan id: `plan-<createdAt as YYYYMMDDThhmmssZ>-<8 hex digits of unique>`. Sorts by
/// time, and is safe as an S3 key segment. `unique` comes from the caller (random bits).
pub fn plan_id(created_at_ms: i64, unique: u32) -> String {
    format!(
        "plan-{}-{unique:08x}",
        rfc3339::format_compact(created_at_ms)
    )
}

/// Whether `s` has the shape [`plan_id`] produces.
pub fn is_plan_id(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 30
        && s.starts_with("plan-")
        && digits(5..13)
        && b[13] == b'T'
        && digits(14..20)
        && &b[20..22] == b"Z-"
        && b[22..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// The S3 key of a stored plan: `plans/<planId>.json`.
pub fn plan_key(plan_id: &str) -> String {
    format!("plans/{plan_id}.json")
}

/// The S3 key of a plan's Map items: `plans/<planId>/items.json`.
pub fn items_key(plan_id: &str) -> String {
    format!("plans/{plan_id}/items.json")
}

/// The Map items of a plan: one per `delete` entry, in the plan's order.
pub fn items(plan: &Plan) -> Vec<MapItem> {
    plan.delete
        .iter()
        .map(|entry| MapItem {
            image_build_version_arn: entry.image_build_version_arn.clone(),
            plan_id: plan.plan_id.clone(),
            expect: Expect {
                status: entry.status.clone(),
                date_created: entry.date_created.clone(),
            },
        })
        .collect()
}

impl Plan {
    /// Builds the plan from [`select`](super::select::select)'s decisions (already in plan order).
    pub fn new(
        plan_id: String,
        created_at_ms: i64,
        selection: Selection,
        decided: &[Decided<'_>],
    ) -> Plan {
        let mut delete = Vec::new();
        let mut keep = Vec::new();
        for d in decided {
            let arn = d.build.arn.clone();
            match &d.decision {
                Decision::Delete(reasons) => delete.push(DeleteEntry {
                    image_build_version_arn: arn,
                    status: d.build.status.clone(),
                    date_created: d.build.date_created.clone(),
                    reasons: reasons.iter().map(ToString::to_string).collect(),
                }),
                Decision::Keep(reason) => keep.push(KeepEntry {
                    image_build_version_arn: arn,
                    reason: *reason,
                }),
            }
        }
        let summary = Summary {
            scanned: decided.len(),
            delete: delete.len(),
            keep: keep.len(),
        };
        Plan {
            plan_id,
            created_at: rfc3339::format_ms(created_at_ms),
            expires_at: rfc3339::format_ms(created_at_ms.saturating_add(PLAN_TTL_MS)),
            selection,
            delete,
            keep,
            summary,
            plan_location: None,
        }
    }

    /// Parses and validates a plan document (an `executePlan` value or a stored plan).
    /// Expiry is a separate check: [`Plan::check_not_expired`].
    pub fn parse(value: Value) -> Result<Plan, PlanError> {
        let plan: Plan =
            serde_json::from_value(value).map_err(|e| PlanError::Malformed(e.to_string()))?;
        plan.validate()?;
        Ok(plan)
    }

    /// [`Plan::parse`] from JSON bytes (a stored plan object).
    pub fn parse_slice(bytes: &[u8]) -> Result<Plan, PlanError> {
        let plan: Plan =
            serde_json::from_slice(bytes).map_err(|e| PlanError::Malformed(e.to_string()))?;
        plan.validate()?;
        Ok(plan)
    }

    /// `Err(Expired)` once `now_ms` has reached `expiresAt`.
    pub fn check_not_expired(&self, now_ms: i64) -> Result<(), PlanError> {
        match rfc3339::parse_ms(&self.expires_at) {
            Some(expires_ms) if now_ms < expires_ms => Ok(()),
            Some(_) => Err(PlanError::Expired {
                plan_id: self.plan_id.clone(),
                expires_at: self.expires_at.clone(),
            }),
            None => Err(malformed(format!(
                "expiresAt {} is not an RFC 3339 date-time",
                quote(&self.expires_at)
            ))),
        }
    }

    /// The `delete` entry of `arn`, if the plan deletes it.
    pub fn delete_entry(&self, arn: &str) -> Option<&DeleteEntry> {
        self.delete
            .iter()
            .find(|e| e.image_build_version_arn == arn)
    }

    /// Checks a Distributed Map item against this plan (the one its `planId` names): the
    /// plan must delete its ARN and expect the same status and creation instant.
    pub fn check_item(&self, item: &MapItem) -> Result<&DeleteEntry, PlanError> {
        let mismatch = |why: String| {
            PlanError::ItemMismatch(format!("{}: {why}", quote(&item.image_build_version_arn)))
        };
        if item.plan_id != self.plan_id {
            return Err(mismatch(format!(
                "it names plan {}, not {}",
                quote(&item.plan_id),
                self.plan_id
            )));
        }
        let entry = self
            .delete_entry(&item.image_build_version_arn)
            .ok_or_else(|| mismatch(format!("plan {} does not delete it", self.plan_id)))?;
        let same_date = same_instant(&entry.date_created, &item.expect.date_created);
        if entry.status != item.expect.status || !same_date {
            return Err(mismatch(format!(
                "it expects status {} created {}, the plan says {} created {}",
                quote(&item.expect.status),
                quote(&item.expect.date_created),
                entry.status,
                entry.date_created
            )));
        }
        Ok(entry)
    }

    /// Everything serde cannot check: ids, times, counts and each `delete` entry.
    fn validate(&self) -> Result<(), PlanError> {
        if !is_plan_id(&self.plan_id) {
            return Err(malformed(format!(
                "planId {} is not plan-<YYYYMMDDThhmmssZ>-<8 hex digits>",
                quote(&self.plan_id)
            )));
        }
        let time = |field: &str, s: &str| {
            rfc3339::parse_ms(s).ok_or_else(|| {
                malformed(format!("{field} {} is not an RFC 3339 date-time", quote(s)))
            })
        };
        let created = time("createdAt", &self.created_at)?;
        let expires = time("expiresAt", &self.expires_at)?;
        if expires != created.saturating_add(PLAN_TTL_MS) {
            return Err(malformed(
                "expiresAt must be exactly 24 hours after createdAt".to_owned(),
            ));
        }
        let (scanned, delete, keep) = (self.summary.scanned, self.delete.len(), self.keep.len());
        if self.summary.delete != delete || self.summary.keep != keep || scanned != delete + keep {
            return Err(malformed(format!(
                "summary {{scanned: {scanned}, delete: {}, keep: {}}} does not match {delete} delete and {keep} keep entries",
                self.summary.delete, self.summary.keep
            )));
        }
        let mut seen = BTreeSet::new();
        for arn in self.keep.iter().map(|k| &k.image_build_version_arn) {
            if !seen.insert(arn.as_str()) {
                return Err(malformed(format!("{} is listed twice", quote(arn))));
            }
        }
        for entry in &self.delete {
            self.validate_delete_entry(entry)?;
            if !seen.insert(entry.image_build_version_arn.as_str()) {
                return Err(malformed(format!(
                    "{} is listed twice",
                    quote(&entry.image_build_version_arn)
                )));
            }
        }
        Ok(())
    }

    /// A `delete` entry must be one the selection could have produced: a build version ARN in
    /// a selected region, a settled status, a readable date and at least one reason.
    fn validate_delete_entry(&self, entry: &DeleteEntry) -> Result<(), PlanError> {
        let arn = arn::parse(&entry.image_build_version_arn).map_err(|r| malformed(r.message))?;
        let what = quote(arn.as_str());
        if !self.selection.regions.iter().any(|r| r == arn.region()) {
            return Err(malformed(format!(
                "{what} is in a region the selection does not scan"
            )));
        }
        let status = entry.status.as_str();
        if !IMAGE_STATUSES.contains(&status) || IN_PROGRESS_STATUSES.contains(&status) {
            return Err(malformed(format!(
                "{what} has status {}, which a plan never deletes",
                quote(status)
            )));
        }
        if rfc3339::parse_ms(&entry.date_created).is_none() {
            return Err(malformed(format!(
                "{what} has dateCreated {}, not an RFC 3339 date-time",
                quote(&entry.date_created)
            )));
        }
        if entry.reasons.is_empty() {
            return Err(malformed(format!("{what} has no reasons")));
        }
        Ok(())
    }
}

fn malformed(why: String) -> PlanError {
    PlanError::Malformed(why)
}

/// Whether two RFC 3339 strings name the same instant (both must parse).
fn same_instant(a: &str, b: &str) -> bool {
    matches!((rfc3339::parse_ms(a), rfc3339::parse_ms(b)), (Some(x), Some(y)) if x == y)
}

/// What GetImage says about a planned build now.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// `image.state.status`.
    pub status: Option<&'a str>,
    /// `image.dateCreated`.
    pub date_created: Option<&'a str>,
    /// `image.tags`.
    pub tags: &'a BTreeMap<String, String>,
}

/// The drift check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftCheck {
    /// The build is as planned: take the normal delete path.
    Proceed,
    /// The build changed since the plan: skip it (`skippedPlanDrift`) with this reason.
    Drift(String),
}

/// Compares a planned build with what GetImage returns now. Drift when the status differs,
/// `dateCreated` is another instant (an image rebuilt under the same ARN) or cannot be read,
/// or the build now carries the protect tag key or one of the plan's `excludeTagKeys`.
/// GetImage's "not found" (`alreadyDeleted`) is the caller's.
pub fn check_drift(
    expect: &Expect,
    observed: &Observed<'_>,
    protect_tag_key: Option<&str>,
    exclude_tag_keys: &[String],
) -> DriftCheck {
    let status = observed.status.unwrap_or("");
    if status != expect.status {
        return DriftCheck::Drift(format!(
            "status is {} now, the plan expected {}",
            quote(status),
            quote(&expect.status)
        ));
    }
    let date = observed.date_created.unwrap_or("");
    if !same_instant(date, &expect.date_created) {
        return DriftCheck::Drift(format!(
            "dateCreated is {} now, the plan expected {}",
            quote(date),
            quote(&expect.date_created)
        ));
    }
    if let Some(key) = protect_tag_key.filter(|k| observed.tags.contains_key(*k)) {
        return DriftCheck::Drift(format!("it now carries the protect tag key {}", quote(key)));
    }
    if let Some(key) = exclude_tag_keys
        .iter()
        .find(|k| observed.tags.contains_key(*k))
    {
        return DriftCheck::Drift(format!(
            "it now carries the excluded tag key {}",
            quote(key)
        ));
    }
    DriftCheck::Proceed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::select::{select, BuildVersion};
    use serde_json::json;

    /// One change to a valid value, for the refusal tables.
    type Edit<T> = fn(&mut T);

    /// (case, observed status, observed dateCreated, observed tag key, part of the drift reason).
    type DriftRow<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        &'a str,
        Option<&'a str>,
    );

    /// 2026-11-01T10:00:00Z.
    const CREATED: i64 = 1_793_527_200_000;
    const ARN1: &str = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/1";
    const ARN2: &str = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/2";

    fn selection() -> Selection {
        Selection::from_plan(
            &json!({"names": ["web"], "keepNewest": 1}),
            Some("us-east-1"),
        )
        .unwrap()
    }

    fn listed(arn: &str, build: u64, date: &str) -> BuildVersion {
        BuildVersion {
            arn: arn.to_owned(),
            name: "web".into(),
            version: "1.0.0".into(),
            build,
            status: "AVAILABLE".into(),
            date_created: date.into(),
            tags: BTreeMap::new(),
        }
    }

    /// A plan deleting web/1.0.0/1 and keeping web/1.0.0/2.
    fn plan() -> Plan {
        let builds = [
            listed(ARN1, 1, "2026-10-01T10:00:00.000Z"),
            listed(ARN2, 2, "2026-10-20T10:00:00.000Z"),
        ];
        let decided = select(&builds, &selection(), None, CREATED);
        Plan::new(
            plan_id(CREATED, 0x1a2b_3c4d),
            CREATED,
            selection(),
            &decided,
        )
    }

    fn plan_json() -> Value {
        serde_json::to_value(plan()).unwrap()
    }

    #[test]
    fn plan_document_has_the_documented_shape() {
        // GIVEN two listed builds and keepNewest 1
        // WHEN the plan is built THEN its JSON is exactly the documented document
        assert_eq!(
            plan_json(),
            json!({
                "planId": "plan-20261101T100000Z-1a2b3c4d",
                "createdAt": "2026-11-01T10:00:00.000Z",
                "expiresAt": "2026-11-02T10:00:00.000Z",
                "selection": {"names": ["web"], "regions": ["us-east-1"], "keepNewest": 1,
                    "excludeTagKeys": [], "allowDeletingNewest": false},
                "delete": [{"imageBuildVersionArn": ARN1, "status": "AVAILABLE",
                    "dateCreated": "2026-10-01T10:00:00.000Z", "reasons": ["beyondKeepNewest"]}],
                "keep": [{"imageBuildVersionArn": ARN2, "reason": "keepNewest"}],
                "summary": {"scanned": 2, "delete": 1, "keep": 1}
            })
        );
    }

    #[test]
    fn plan_ids_have_one_shape() {
        // GIVEN ids made by plan_id and hand-made ones
        // WHEN checked THEN only the plan_id shape passes (it becomes an S3 key)
        assert_eq!(plan_id(CREATED, 7), "plan-20261101T100000Z-00000007");
        assert!(is_plan_id(&plan_id(CREATED, u32::MAX)));
        for bad in [
            "",
            "plan-20261101T100000Z-1A2B3C4D",
            "plan-20261101T100000Z-1a2b3c4",
            "plan-20261101T100000Z-1a2b3c4d0",
            "plan-2026110xT100000Z-1a2b3c4d",
            "plan-20261101T100000Z/../../x",
            "../plans/plan-20261101T100000Z",
        ] {
            assert!(!is_plan_id(bad), "{bad}");
        }
        assert_eq!(plan_key("plan-x"), "plans/plan-x.json");
        assert_eq!(items_key("plan-x"), "plans/plan-x/items.json");
    }

    #[test]
    fn a_plan_parses_back_to_itself() {
        // GIVEN a serialised plan, with and without planLocation
        let mut located = plan();
        located.plan_location = Some(PlanLocation {
            bucket: "b".into(),
            key: plan_key(&located.plan_id),
        });
        for original in [plan(), located] {
            let value = serde_json::to_value(&original).unwrap();
            let bytes = serde_json::to_vec(&original).unwrap();
            // WHEN parsed back THEN it is the same plan
            assert_eq!(Plan::parse(value).unwrap(), original);
            assert_eq!(Plan::parse_slice(&bytes).unwrap(), original);
        }
    }

    #[test]
    fn a_plan_this_function_could_not_have_made_is_refused() {
        // GIVEN a valid plan with one thing changed
        let edits: Vec<(&str, Edit<Value>)> = vec![
            ("unknown key", |p| p["deleteAll"] = json!(true)),
            ("unknown entry key", |p| {
                p["delete"][0]["force"] = json!(true)
            }),
            ("unknown selection key", |p| {
                p["selection"]["keepNewst"] = json!(1)
            }),
            ("selection without a rule", |p| {
                p["selection"].as_object_mut().unwrap().remove("keepNewest");
            }),
            ("unknown keep reason", |p| {
                p["keep"][0]["reason"] = json!("because")
            }),
            ("missing summary", |p| {
                p.as_object_mut().unwrap().remove("summary");
            }),
            ("path in planId", |p| {
                p["planId"] = json!("../../etc/passwd")
            }),
            ("extended expiry", |p| {
                p["expiresAt"] = json!("2026-11-09T10:00:00.000Z")
            }),
            ("unreadable createdAt", |p| p["createdAt"] = json!("today")),
            ("summary mismatch", |p| p["summary"]["delete"] = json!(2)),
            ("scanned mismatch", |p| p["summary"]["scanned"] = json!(3)),
            ("duplicate ARN", |p| {
                p["keep"][0]["imageBuildVersionArn"] = json!(ARN1)
            }),
            ("not a build version", |p| {
                p["delete"][0]["imageBuildVersionArn"] = json!("arn:aws:ec2:us-east-1::image/ami-1")
            }),
            ("region not scanned", |p| {
                p["delete"][0]["imageBuildVersionArn"] =
                    json!("arn:aws:imagebuilder:eu-west-1:123456789012:image/web/1.0.0/1")
            }),
            ("in-progress status", |p| {
                p["delete"][0]["status"] = json!("BUILDING")
            }),
            ("unknown status", |p| {
                p["delete"][0]["status"] = json!("ARCHIVED")
            }),
            ("unreadable dateCreated", |p| {
                p["delete"][0]["dateCreated"] = json!("2026-10-01")
            }),
            ("no reasons", |p| p["delete"][0]["reasons"] = json!([])),
            ("not an object", |p| *p = json!([1, 2])),
        ];
        for (what, edit) in edits {
            let mut value = plan_json();
            edit(&mut value);
            // WHEN parsed THEN Malformed, with a message
            let err = Plan::parse(value).unwrap_err();
            assert!(matches!(err, PlanError::Malformed(_)), "{what}: {err:?}");
            assert!(
                err.to_string().starts_with("not a valid retention plan: "),
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn expiry_is_checked_against_the_given_now() {
        // GIVEN a plan created at CREATED, expiring 24 h later
        let plan = plan();
        // WHEN checked just before, at and after expiry THEN only before passes
        assert_eq!(plan.check_not_expired(CREATED), Ok(()));
        assert_eq!(plan.check_not_expired(CREATED + PLAN_TTL_MS - 1), Ok(()));
        for now in [CREATED + PLAN_TTL_MS, CREATED + 2 * PLAN_TTL_MS] {
            let err = plan.check_not_expired(now).unwrap_err();
            assert_eq!(
                err,
                PlanError::Expired {
                    plan_id: plan.plan_id.clone(),
                    expires_at: "2026-11-02T10:00:00.000Z".into()
                }
            );
            assert!(err.to_string().contains("make a new plan"), "{err}");
        }
    }

    #[test]
    fn map_items_are_the_delete_list_with_expectations() {
        // GIVEN a plan WHEN its Map items are made THEN one per delete entry, in order
        let plan = plan();
        let items = items(&plan);
        assert_eq!(
            serde_json::to_value(&items).unwrap(),
            json!([{"imageBuildVersionArn": ARN1, "planId": "plan-20261101T100000Z-1a2b3c4d",
                "expect": {"status": "AVAILABLE", "dateCreated": "2026-10-01T10:00:00.000Z"}}])
        );
        // AND each checks out against the plan
        assert_eq!(
            plan.check_item(&items[0]).unwrap().image_build_version_arn,
            ARN1
        );
    }

    #[test]
    fn map_items_that_do_not_match_the_plan_are_refused() {
        // GIVEN the plan's one item with one thing changed
        let plan = plan();
        let item = items(&plan).remove(0);
        let edits: Vec<(&str, Edit<MapItem>)> = vec![
            ("other plan", |i| {
                i.plan_id = "plan-20261101T100000Z-00000000".into()
            }),
            ("kept ARN", |i| i.image_build_version_arn = ARN2.into()),
            ("other status", |i| i.expect.status = "FAILED".into()),
            ("other instant", |i| {
                i.expect.date_created = "2026-10-01T10:00:00.001Z".into()
            }),
        ];
        for (what, edit) in edits {
            let mut changed = item.clone();
            edit(&mut changed);
            // WHEN checked THEN ItemMismatch
            let err = plan.check_item(&changed).unwrap_err();
            assert!(matches!(err, PlanError::ItemMismatch(_)), "{what}: {err:?}");
        }
        // AND the same instant written another way is the same item
        let mut same = item;
        same.expect.date_created = "2026-10-01T12:00:00+02:00".into();
        assert!(plan.check_item(&same).is_ok());
        // AND an unknown key in an item is refused when it is decoded
        let extra = json!({"imageBuildVersionArn": ARN1, "planId": plan.plan_id, "expect":
            {"status": "AVAILABLE", "dateCreated": "2026-10-01T10:00:00.000Z"}, "force": true});
        assert!(serde_json::from_value::<MapItem>(extra).is_err());
    }

    /// The verdict for a build observed as (status, dateCreated, one tag key or "") against a
    /// plan entry expecting AVAILABLE created `PLANNED`, with PROTECT_TAG_KEY=keep-me and
    /// excludeTagKeys [pinned].
    fn drift(status: Option<&str>, date_created: Option<&str>, tag: &str) -> DriftCheck {
        const PLANNED: &str = "2026-10-01T10:00:00.000Z";
        let expect = Expect {
            status: "AVAILABLE".into(),
            date_created: PLANNED.into(),
        };
        let tags = BTreeMap::from([(tag.to_owned(), String::new())]);
        let observed = Observed {
            status,
            date_created,
            tags: &tags,
        };
        check_drift(&expect, &observed, Some("keep-me"), &["pinned".to_owned()])
    }

    #[test]
    fn drift_check_table() {
        // GIVEN a plan entry expecting AVAILABLE created 2026-10-01T10:00:00.000Z
        const AV: Option<&str> = Some("AVAILABLE");
        const AT: Option<&str> = Some("2026-10-01T10:00:00.000Z");
        let table: Vec<DriftRow<'_>> = vec![
            ("unchanged", AV, AT, "", None),
            (
                "same instant, no fraction",
                AV,
                Some("2026-10-01T10:00:00Z"),
                "",
                None,
            ),
            (
                "same instant, offset",
                AV,
                Some("2026-10-01T11:00:00+01:00"),
                "",
                None,
            ),
            ("unrelated tag", AV, AT, "owner", None),
            ("status changed", Some("DEPRECATED"), AT, "", Some("status")),
            ("status missing", None, AT, "", Some("status")),
            (
                "rebuilt",
                AV,
                Some("2026-10-05T10:00:00.000Z"),
                "",
                Some("dateCreated"),
            ),
            (
                "one ms later",
                AV,
                Some("2026-10-01T10:00:00.001Z"),
                "",
                Some("dateCreated"),
            ),
            (
                "date unreadable",
                AV,
                Some("2026-10-01"),
                "",
                Some("dateCreated"),
            ),
            ("date missing", AV, None, "", Some("dateCreated")),
            ("now protected", AV, AT, "keep-me", Some("protect tag key")),
            ("now excluded", AV, AT, "pinned", Some("excluded tag key")),
        ];
        for (case, status, date_created, tag, want) in table {
            // WHEN GetImage returns this THEN Proceed, or Drift naming what changed
            match (drift(status, date_created, tag), want) {
                (DriftCheck::Proceed, None) => {}
                (DriftCheck::Drift(why), Some(part)) => {
                    assert!(why.contains(part), "{case}: {why}")
                }
                (verdict, _) => panic!("{case}: {verdict:?}"),
            }
        }
    }
}
