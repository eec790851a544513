//! Retention plans, wired: plan requests over the listing and the plan store, executions
//! with their drift check, in memory (the handler over fakes) and end to end (the real
//! binary against the Image Builder emulator's seeded history, and moto's S3).

use std::collections::BTreeMap;
use std::time::Duration;

use ib_emulator::{SeedImage, Step};
use imagebuilder_reaper::config::Config;
use imagebuilder_reaper::handler::{Handler, Response};
use imagebuilder_reaper::outcome::Status;
use imagebuilder_reaper::ports::{BuildVersionSummary, Unavailable};
use imagebuilder_reaper::report::Report;
use imagebuilder_reaper::retention::{plan_id, Plan, Selection};
use serde_json::{json, Value};

use crate::support::constants::{ACCOUNT, REGION};
use crate::support::fakes::{
    CallLog, DlqMode, FakeBuildVersions, FakeDlq, FakeImages, FakePlanStore, ListCall,
};
use crate::support::fixtures::{eventbridge_event, fixture, sqs_event};
use crate::support::harness::invocation;
use crate::support::moto::{self, Moto};
use crate::support::world::{result_for, Setup, World};

const BUCKET: &str = "reaper-plans";
const OTHER_REGION: &str = "eu-west-1";
const PROTECT: &str = "keep";
/// Far enough in the past that every build is older than any `olderThanDays` used here.
const HISTORY_START: &str = "2020-01-01T00:00:00.000Z";

// ---- in memory -------------------------------------------------------------------------------

type Fake =
    Handler<FakeImages, FakeDlq, Unavailable, Unavailable, FakeBuildVersions, FakePlanStore>;

struct Memory {
    images: FakeImages,
    listing: FakeBuildVersions,
    store: FakePlanStore,
    handler: Fake,
}

fn memory(bucket: Option<&str>) -> Memory {
    let images = FakeImages::new(CallLog::default());
    let listing = FakeBuildVersions::new(25);
    let store = FakePlanStore::default();
    let config = Config {
        own_region: Some(REGION.into()),
        protect_tag_key: Some(PROTECT.into()),
        plan_bucket: bucket.map(str::to_string),
        dead_letter_queue_url: Some("https://sqs.us-east-1.amazonaws.com/1/dlq".into()),
        ..Config::default()
    };
    let handler = Handler::new(config, images.clone(), Some(FakeDlq::new(DlqMode::Up)))
        .with_retention(listing.clone(), bucket.map(|_| store.clone()));
    Memory {
        images,
        listing,
        store,
        handler,
    }
}

impl Memory {
    async fn respond(
        &self,
        event: &Value,
    ) -> Result<Response, imagebuilder_reaper::error::ReaperError> {
        self.handler
            .respond(event, &invocation(Duration::from_secs(900)))
            .await
    }
    async fn plan(&self, event: &Value) -> Value {
        match self.respond(event).await {
            Ok(Response::Plan(plan)) => plan,
            other => panic!("expected a plan, got {other:?}"),
        }
    }
    async fn report(&self, event: &Value) -> Report {
        match self.respond(event).await {
            Ok(Response::Report(report)) => report,
            other => panic!("expected a report, got {other:?}"),
        }
    }
    async fn error_type(&self, event: &Value) -> (String, String) {
        match self.respond(event).await {
            Err(e) => (e.error_type().to_string(), e.to_string()),
            Ok(other) => panic!("expected an error, got {other:?}"),
        }
    }
    /// Adds an AVAILABLE build `name/1.0.0/<build>` in `region` created on day `day` of 2020.
    fn build(&self, region: &str, name: &str, build: u32, day: u32) -> String {
        self.build_of(region, name, "1.0.0", build, day)
    }
    /// Adds an AVAILABLE build `name/<version>/<build>` in `region` created on day `day`
    /// (1–28) of 2020.
    fn build_of(&self, region: &str, name: &str, version: &str, build: u32, day: u32) -> String {
        let arn = format!("arn:aws:imagebuilder:{region}:{ACCOUNT}:image/{name}/{version}/{build}");
        let date = format!("2020-01-{day:02}T00:00:00.000Z");
        self.listing.add(
            region,
            BuildVersionSummary {
                arn: arn.clone(),
                name: name.into(),
                version: format!("{version}/{build}"),
                status: "AVAILABLE".into(),
                date_created: date.clone(),
                tags: BTreeMap::new(),
            },
        );
        self.images.state(&arn, "AVAILABLE", &date);
        arn
    }
}

fn delete_arns(plan: &Value) -> Vec<String> {
    plan["delete"]
        .as_array()
        .unwrap_or_else(|| panic!("plan without delete: {plan:#}"))
        .iter()
        .map(|e| e["imageBuildVersionArn"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_plan_lists_every_page_of_every_region_and_is_stored_with_its_items() {
    // GIVEN 30 builds of "web" in us-east-1 (two pages of 25) and 2 in eu-west-1
    let m = memory(Some(BUCKET));
    for b in 1..=30 {
        m.build(REGION, "web", b, b);
    }
    m.build(OTHER_REGION, "web", 1, 1);
    m.build(OTHER_REGION, "web", 2, 2);
    // WHEN a plan keeping the newest 2 per name over both regions is made
    let plan = m
        .plan(&json!({"plan": {"regions": [REGION, OTHER_REGION], "keepNewest": 2}}))
        .await;
    // THEN each region's one image version was listed, then every page of its builds
    let calls = m.listing.calls();
    let builds_pages = |region: &str| {
        calls
            .iter()
            .filter(|c| matches!(c, ListCall::Builds { .. }) && c.region() == region)
            .count()
    };
    assert_eq!(builds_pages(REGION), 2, "{calls:?}");
    assert_eq!(builds_pages(OTHER_REGION), 1, "{calls:?}");
    assert_eq!(calls.len(), 5, "{calls:?}");
    // AND per region the 2 newest are kept (an image is a name in one region and account)
    assert_eq!(
        plan["summary"],
        json!({"scanned": 32, "delete": 28, "keep": 4})
    );
    // AND the plan and its Map items are in the bucket, and the response says where
    let id = plan["planId"].as_str().unwrap();
    let key = format!("plans/{id}.json");
    assert_eq!(plan["planLocation"], json!({"bucket": BUCKET, "key": key}));
    assert_eq!(m.store.json(BUCKET, &key).unwrap(), plan);
    let items = m
        .store
        .json(BUCKET, &format!("plans/{id}/items.json"))
        .unwrap();
    assert_eq!(items.as_array().unwrap().len(), 28);
    assert_eq!(items[0]["planId"], id);
    assert_eq!(items[0]["expect"]["status"], "AVAILABLE");
    // AND the items were written before the plan that names them
    let log = m.store.log();
    assert!(
        log[0].ends_with("/items.json") && log[1].ends_with(&key),
        "{log:?}"
    );
}

#[tokio::test]
async fn a_plan_too_large_to_return_inline_returns_its_summary_and_location() {
    // GIVEN 2,000 builds (the plan's JSON is well over 256 KiB)
    let m = memory(Some(BUCKET));
    for b in 1..=2000 {
        m.build(REGION, "web", b, 1 + b % 28);
    }
    // WHEN planned
    let plan = m.plan(&json!({"plan": {"keepNewest": 1}})).await;
    // THEN the response carries the summary and where the whole plan is, not the lists
    assert!(plan.get("delete").is_none(), "{plan:#}");
    assert_eq!(plan["summary"]["scanned"], 2000);
    let key = plan["planLocation"]["key"].as_str().unwrap();
    let stored = m.store.json(BUCKET, key).unwrap();
    assert_eq!(stored["delete"].as_array().unwrap().len(), 1999);
    // AND executing it by location reads the stored plan (a dry run: nothing is deleted)
    let report = m
        .report(&json!({"executePlan": {"planLocation": plan["planLocation"]}, "dryRun": true}))
        .await;
    assert_eq!(report.summary.would_delete, 1999);
    assert_eq!(m.images.delete_calls(), 0);
}

#[tokio::test]
async fn a_listing_failure_makes_no_plan() {
    // GIVEN a region whose listing is refused
    let m = memory(Some(BUCKET));
    m.build(REGION, "web", 1, 1);
    m.listing.fail(OTHER_REGION);
    // WHEN a plan covers it
    let (error_type, message) = m
        .error_type(&json!({"plan": {"regions": [REGION, OTHER_REGION], "statuses": ["FAILED"]}}))
        .await;
    // THEN the invocation fails as ListingFailed, naming the region, and nothing is stored
    assert_eq!(error_type, "ListingFailed");
    assert!(message.contains(OTHER_REGION), "{message}");
    assert!(m.store.log().is_empty());
}

/// The image version ARN of `name/<version>` in `region`.
fn version_arn(region: &str, name: &str, version: &str) -> String {
    format!("arn:aws:imagebuilder:{region}:{ACCOUNT}:image/{name}/{version}")
}

#[tokio::test]
async fn a_plan_lists_every_image_version_page_and_every_build_page_of_each_version() {
    // GIVEN 3 names × 9 versions (27 versions: two ListImages pages of 25), one build each,
    // except "web"/1.0.0 with 30 builds (two pages), and a version without builds
    let m = memory(None);
    for name in ["api", "db", "web"] {
        for v in 0..9 {
            m.build_of(REGION, name, &format!("1.{v}.0"), 1, 1 + v);
        }
    }
    for b in 2..=30 {
        m.build_of(REGION, "web", "1.0.0", b, 1);
    }
    m.listing
        .add_empty_version(REGION, &version_arn(REGION, "web", "2.0.0"), "web");
    // WHEN a plan of every name is made
    let plan = m.plan(&json!({"plan": {"keepNewest": 1}})).await;
    // THEN every build of every version is in it: a skipped page or version would be missing
    assert_eq!(plan["summary"]["scanned"], 27 + 29, "{:#}", plan["summary"]);
    // AND ListImages was read page after page, without a name filter
    let calls = m.listing.calls();
    let versions: Vec<&ListCall> = calls
        .iter()
        .filter(|c| matches!(c, ListCall::Versions { .. }))
        .collect();
    let expected_pages = [None, Some("25".to_string())].map(|token| ListCall::Versions {
        region: REGION.into(),
        names: vec![],
        token,
    });
    assert_eq!(versions, expected_pages.iter().collect::<Vec<_>>());
    // AND each of the 28 versions was listed once from its first page, the big one twice
    let mut builds: Vec<(String, Option<String>)> = calls
        .iter()
        .filter_map(|c| match c {
            ListCall::Builds {
                version_arn, token, ..
            } => Some((version_arn.clone(), token.clone())),
            ListCall::Versions { .. } => None,
        })
        .collect();
    builds.sort();
    let big = version_arn(REGION, "web", "1.0.0");
    assert_eq!(builds.len(), 29, "{builds:?}");
    assert_eq!(builds.iter().filter(|(_, t)| t.is_none()).count(), 28);
    assert!(builds.contains(&(big, Some("25".into()))), "{builds:?}");
}

#[tokio::test]
async fn exact_names_filter_list_images_and_globs_skip_versions_of_other_names() {
    // GIVEN versions of "web", "api" and "db"
    let m = memory(None);
    for (i, name) in ["web", "api", "db"].into_iter().enumerate() {
        m.build_of(REGION, name, "1.0.0", 1, 1 + i as u32);
        m.build_of(REGION, name, "1.1.0", 1, 10 + i as u32);
    }
    let listed_versions = |m: &Memory| -> Vec<String> {
        m.listing
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                ListCall::Builds { version_arn, .. } => Some(version_arn),
                ListCall::Versions { .. } => None,
            })
            .collect()
    };
    // WHEN a plan names "web" and "api" exactly
    let plan = m
        .plan(&json!({"plan": {"names": ["web", "api"], "statuses": ["AVAILABLE"]}}))
        .await;
    // THEN ListImages carried both names as its `name` filter, and "db" was never listed
    let calls = m.listing.calls();
    let ListCall::Versions { names, .. } = &calls[0] else {
        panic!("{calls:?}")
    };
    let mut names = names.clone();
    names.sort();
    assert_eq!(names, ["api", "web"]);
    let versions = listed_versions(&m);
    assert_eq!(versions.len(), 4, "{versions:?}");
    assert!(versions.iter().all(|v| !v.contains("/db/")), "{versions:?}");
    assert_eq!(plan["summary"]["scanned"], 4);
    // GIVEN a fresh fake WHEN the plan names a glob ("w*")
    let m2 = memory(None);
    for name in ["web", "api", "db"] {
        m2.build_of(REGION, name, "1.0.0", 1, 1);
    }
    let plan = m2
        .plan(&json!({"plan": {"names": ["w*"], "statuses": ["AVAILABLE"]}}))
        .await;
    // THEN ListImages has no name filter (the service matches exact names only), and only
    // the versions of matching names have their builds listed
    assert!(matches!(&m2.listing.calls()[0], ListCall::Versions { names, .. } if names.is_empty()));
    assert_eq!(listed_versions(&m2), [version_arn(REGION, "web", "1.0.0")]);
    assert_eq!(plan["summary"]["scanned"], 1);
}

#[tokio::test]
async fn more_exact_names_than_one_filter_takes_are_listed_ten_at_a_time() {
    // GIVEN 12 names, each with one build
    let m = memory(None);
    let names: Vec<String> = (0..12).map(|i| format!("img-{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        m.build_of(REGION, name, "1.0.0", 1, 1 + i as u32);
    }
    // WHEN all 12 are named exactly
    let plan = m
        .plan(&json!({"plan": {"names": names, "statuses": ["AVAILABLE"]}}))
        .await;
    // THEN two ListImages listings cover them (10 + 2 names: the filter takes at most 10),
    // and every build is in the plan
    let mut filters: Vec<Vec<String>> = m
        .listing
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            ListCall::Versions { names, .. } => Some(names),
            ListCall::Builds { .. } => None,
        })
        .collect();
    filters.sort_by_key(Vec::len);
    assert_eq!(
        filters.iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 10],
        "{filters:?}"
    );
    let mut all: Vec<String> = filters.concat();
    all.sort();
    assert_eq!(all, names);
    assert_eq!(plan["summary"]["scanned"], 12);
}

#[tokio::test]
async fn a_build_listed_twice_is_planned_once() {
    // GIVEN a build that the listing returns twice (pages shifting under a concurrent build)
    let m = memory(None);
    let arn = m.build(REGION, "web", 1, 1);
    m.build(REGION, "web", 1, 1);
    m.build(REGION, "web", 2, 2);
    // WHEN planned
    let plan = m
        .plan(&json!({"plan": {"keepNewest": 0, "allowDeletingNewest": true}}))
        .await;
    // THEN it is scanned and planned once
    assert_eq!(plan["summary"]["scanned"], 2, "{:#}", plan["summary"]);
    let delete = delete_arns(&plan);
    assert_eq!(
        delete.iter().filter(|a| **a == arn).count(),
        1,
        "{delete:?}"
    );
}

#[tokio::test]
async fn a_version_whose_listing_fails_makes_no_plan() {
    // GIVEN two versions of "web", the builds of one of them cannot be listed
    let m = memory(Some(BUCKET));
    m.build_of(REGION, "web", "1.0.0", 1, 1);
    m.build_of(REGION, "web", "1.1.0", 1, 2);
    let failing = version_arn(REGION, "web", "1.1.0");
    m.listing.fail(&failing);
    // WHEN planned
    let (error_type, message) = m.error_type(&json!({"plan": {"keepNewest": 1}})).await;
    // THEN ListingFailed naming that version, and no (partial) plan is stored
    assert_eq!(error_type, "ListingFailed");
    assert!(message.contains(&failing), "{message}");
    assert!(m.store.log().is_empty());
}

#[tokio::test]
async fn a_bad_plan_request_is_an_invalid_event_and_lists_nothing() {
    let m = memory(None);
    for request in [
        json!({"plan": {"names": ["web"]}}),
        json!({"plan": {"keepNewst": 3}}),
        json!({"plan": {"keepNewest": 3}, "dryRun": true}),
    ] {
        // WHEN planned THEN InvalidEvent, and no listing call
        let (error_type, _) = m.error_type(&request).await;
        assert_eq!(error_type, "InvalidEvent", "{request}");
    }
    assert!(m.listing.calls().is_empty());
}

/// A valid plan of one build made at `created_ms`.
fn plan_made_at(created_ms: i64, arn: &str, date: &str) -> Plan {
    let selection = Selection::from_plan(
        &json!({"regions": [REGION], "keepNewest": 0, "allowDeletingNewest": true}),
        None,
    )
    .unwrap();
    let mut plan = Plan::new(plan_id(created_ms, 7), created_ms, selection, &[]);
    plan.delete
        .push(imagebuilder_reaper::retention::DeleteEntry {
            image_build_version_arn: arn.into(),
            status: "AVAILABLE".into(),
            date_created: date.into(),
            reasons: vec!["beyondKeepNewest".into()],
        });
    plan.summary.scanned = 1;
    plan.summary.delete = 1;
    plan
}

#[tokio::test]
async fn an_expired_plan_is_refused_and_nothing_is_called() {
    // GIVEN a plan made in 2020 (expired since), inline and stored
    let m = memory(Some(BUCKET));
    let arn = m.build(REGION, "web", 1, 1);
    let plan = plan_made_at(1_577_836_800_000, &arn, "2020-01-01T00:00:00.000Z");
    let value = serde_json::to_value(&plan).unwrap();
    m.store
        .insert(BUCKET, &format!("plans/{}.json", plan.plan_id), &value);
    let item = json!({"imageBuildVersionArn": arn, "planId": plan.plan_id,
                      "expect": {"status": "AVAILABLE", "dateCreated": "2020-01-01T00:00:00.000Z"}});
    for event in [
        json!({"executePlan": value}),
        json!({"executePlan": {"planLocation": {"bucket": BUCKET, "key": format!("plans/{}.json", plan.plan_id)}}}),
        json!({"Items": [item], "BatchInput": {}}),
        item.clone(),
    ] {
        // WHEN executed THEN InvalidEvent naming the expiry
        let (error_type, message) = m.error_type(&event).await;
        assert_eq!(error_type, "InvalidEvent");
        assert!(message.contains("expired"), "{message}");
    }
    // AND Image Builder was never called
    assert!(m.images.calls().is_empty(), "{:?}", m.images.calls());
}

#[tokio::test]
async fn map_items_are_checked_against_their_stored_plan() {
    // GIVEN a fresh stored plan of one build
    let m = memory(Some(BUCKET));
    let arn = m.build(REGION, "web", 1, 1);
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let plan = plan_made_at(created, &arn, "2020-01-01T00:00:00.000Z");
    let key = format!("plans/{}.json", plan.plan_id);
    m.store
        .insert(BUCKET, &key, &serde_json::to_value(&plan).unwrap());
    let item = |arn: &str, status: &str| {
        json!({"imageBuildVersionArn": arn, "planId": plan.plan_id,
               "expect": {"status": status, "dateCreated": "2020-01-01T00:00:00.000Z"}})
    };
    // WHEN an item the plan does not delete as it says arrives THEN InvalidEvent, no call
    let (error_type, _) = m
        .error_type(&json!({"Items": [item(&arn, "FAILED")], "BatchInput": {}}))
        .await;
    assert_eq!(error_type, "InvalidEvent");
    let other = m.build(REGION, "web", 2, 2);
    let (error_type, _) = m
        .error_type(&json!({"Items": [item(&other, "AVAILABLE")]}))
        .await;
    assert_eq!(error_type, "InvalidEvent");
    assert!(m.images.calls().is_empty());
    // WHEN the matching item arrives THEN it is deleted after its drift check
    let report = m
        .report(&json!({"Items": [item(&arn, "AVAILABLE")], "BatchInput": {}}))
        .await;
    assert_eq!(report.summary.deleted, 1);
    assert_eq!(m.images.calls_of("GetImage", &arn), 1);
}

#[tokio::test]
async fn drift_since_the_plan_skips_the_build() {
    // GIVEN a fresh inline plan of three builds
    let m = memory(None);
    let a = m.build(REGION, "web", 1, 1);
    let b = m.build(REGION, "web", 2, 2);
    let c = m.build(REGION, "web", 3, 3);
    m.build(REGION, "web", 4, 4);
    let plan = m
        .plan(&json!({"plan": {"keepNewest": 1, "excludeTagKeys": ["pinned"]}}))
        .await;
    assert_eq!(delete_arns(&plan).len(), 3);
    // AND since then: a FAILED status, a protect tag, an exclude tag
    m.images.state(&a, "FAILED", "2020-01-01T00:00:00.000Z");
    m.images.tag(&b, PROTECT, "yes");
    m.images.tag(&c, "pinned", "yes");
    // WHEN executed
    let report = m.report(&json!({"executePlan": plan})).await;
    // THEN all three are skippedPlanDrift (done, not dead-lettered) and nothing is deleted
    assert_eq!(report.summary.skipped_plan_drift, 3);
    assert_eq!(report.summary.dead_lettered, 0);
    assert_eq!(m.images.delete_calls(), 0);
    for entry in &report.results {
        assert_eq!(entry.status, Status::SkippedPlanDrift);
    }
}

#[tokio::test]
async fn plans_never_come_from_a_queue_or_an_event() {
    let m = memory(Some(BUCKET));
    let arn = m.build(REGION, "web", 1, 1);
    // GIVEN an SQS record whose body is a plan request, and one with a Map item
    let plan_body = json!({"plan": {"keepNewest": 1}}).to_string();
    let item_body = json!({"imageBuildVersionArns": [{"imageBuildVersionArn": arn,
        "planId": "plan-20200101T000000Z-00000007",
        "expect": {"status": "AVAILABLE", "dateCreated": "2020-01-01T00:00:00.000Z"}}]})
    .to_string();
    let event = sqs_event(&[("m1", plan_body.as_str()), ("m2", item_body.as_str())]);
    // WHEN handled THEN both are rejected as InvalidMessage and dead-lettered, nothing listed
    let report = m.report(&event).await;
    assert_eq!(report.summary.rejected, 2);
    assert!(report
        .results
        .iter()
        .all(|r| r.error_code.as_deref() == Some("InvalidMessage")));
    assert!(m.listing.calls().is_empty() && m.images.calls().is_empty());
    // GIVEN an EventBridge event whose detail asks to execute a plan THEN InvalidEvent
    let mut event = eventbridge_event("e1", &[]);
    event["detail"] =
        json!({"executePlan": {"planLocation": {"bucket": BUCKET, "key": "plans/x.json"}}});
    assert_eq!(m.error_type(&event).await.0, "InvalidEvent");
}

// ---- end to end ------------------------------------------------------------------------------

/// The generated history of `names` in `region` (3 versions × 4 builds per name, a day
/// apart from 2020-01-01), with `tags` added to the builds named by ARN.
fn history(region: &str, names: &[&str], tags: &[(&str, &str)]) -> Vec<SeedImage> {
    let mut images = ib_emulator::history(
        ACCOUNT,
        region,
        names,
        3,
        4,
        HISTORY_START,
        Duration::from_secs(86_400),
    )
    .unwrap();
    for image in &mut images {
        for (arn, key) in tags {
            if image.arn == *arn {
                image.tags.insert(key.to_string(), "yes".into());
            }
        }
    }
    images
}

fn web(version: &str, build: u32) -> String {
    format!("arn:aws:imagebuilder:{REGION}:{ACCOUNT}:image/web/{version}/{build}")
}

async fn plan_of(world: &World, request: Value) -> Value {
    world.invoke(&request).await.response().clone()
}

fn keep_reasons(plan: &Value) -> BTreeMap<String, String> {
    plan["keep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["imageBuildVersionArn"].as_str().unwrap().to_string(),
                k["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn e2e_a_plan_of_a_seeded_history_follows_the_rules_and_executes() {
    // GIVEN the history of "web": builds n = 0..11 (1.0.0/1 … 1.2.0/4), n = 3 FAILED,
    // 7 CANCELLED, 9 DEPRECATED, the newest BUILDING; 1.0.0/1 carries the protect tag and
    // 1.0.0/2 the exclude tag "pinned"
    let world = World::start(Setup::default().env("PROTECT_TAG_KEY", PROTECT)).await;
    world.emu.seed(history(
        REGION,
        &["web"],
        &[(&web("1.0.0", 1), PROTECT), (&web("1.0.0", 2), "pinned")],
    ));
    // WHEN a plan keeping the 3 newest is made through the binary
    let plan = plan_of(
        &world,
        json!({"plan": {"names": ["w?b", "api-*"], "keepNewest": 3, "excludeTagKeys": ["pinned"]}}),
    )
    .await;
    // THEN the keep reasons are the rules', first applicable reason each
    let expected_keep: BTreeMap<String, String> = [
        (web("1.2.0", 4), "inProgress"),
        (web("1.2.0", 3), "keepNewest"),
        (web("1.2.0", 1), "keepNewest"),
        (web("1.1.0", 3), "keepNewest"),
        (web("1.0.0", 2), "protected"),
        (web("1.0.0", 1), "protected"),
    ]
    .into_iter()
    .map(|(a, r)| (a, r.to_string()))
    .collect();
    assert_eq!(keep_reasons(&plan), expected_keep, "{plan:#}");
    // AND the other six (DEPRECATED, CANCELLED and FAILED take no slot) are deleted
    let mut delete = delete_arns(&plan);
    delete.sort();
    let mut expected: Vec<String> = [
        web("1.2.0", 2),
        web("1.1.0", 4),
        web("1.1.0", 2),
        web("1.1.0", 1),
        web("1.0.0", 4),
        web("1.0.0", 3),
    ]
    .into();
    expected.sort();
    assert_eq!(delete, expected);
    assert_eq!(plan["selection"]["regions"], json!([REGION]));
    // AND nothing was deleted by planning
    assert!(world
        .emu
        .calls()
        .iter()
        .all(|c| c.operation.starts_with("List")));
    // WHEN the plan is executed
    let report = world.invoke(&json!({"executePlan": plan})).await;
    let report = report.response();
    // THEN exactly the planned builds are deleted; the kept ones still exist
    assert_eq!(report["summary"]["deleted"], 6, "{report:#}");
    for arn in &expected {
        assert!(!world.emu.image_exists(arn), "{arn}");
    }
    for arn in expected_keep.keys() {
        assert!(world.emu.image_exists(arn), "{arn}");
    }
}

#[tokio::test]
async fn e2e_drift_between_plan_and_execution_is_skipped() {
    // GIVEN a history of "web" and a plan deleting every FAILED, CANCELLED or AVAILABLE build
    // older than a day (except the newest AVAILABLE)
    let world = World::start(Setup::default().env("PROTECT_TAG_KEY", PROTECT)).await;
    world.emu.seed(history(REGION, &["web"], &[]));
    let plan = plan_of(
        &world,
        json!({"plan": {"olderThanDays": 1, "statuses": ["AVAILABLE", "FAILED"]}}),
    )
    .await;
    let planned = delete_arns(&plan);
    assert!(planned.contains(&web("1.0.0", 4)) && planned.contains(&web("1.0.0", 1)));
    // AND since then: the FAILED 1.0.0/4 is seeded again AVAILABLE, 1.0.0/1 got the
    // protect tag, 1.0.0/2 was rebuilt (another dateCreated)
    let seed = |arn: String, state: &str, date: &str, tags: &[&str]| SeedImage {
        arn,
        state: Some(state.into()),
        date_created: Some(date.into()),
        tags: tags
            .iter()
            .map(|k| (k.to_string(), "yes".to_string()))
            .collect(),
        ..Default::default()
    };
    world.emu.seed([
        seed(
            web("1.0.0", 4),
            "AVAILABLE",
            "2020-01-04T00:00:00.000Z",
            &[],
        ),
        seed(
            web("1.0.0", 1),
            "AVAILABLE",
            "2020-01-01T00:00:00.000Z",
            &[PROTECT],
        ),
        seed(
            web("1.0.0", 2),
            "AVAILABLE",
            "2024-06-01T00:00:00.000Z",
            &[],
        ),
    ]);
    // WHEN the plan is executed
    let reply = world.invoke(&json!({"executePlan": plan})).await;
    let report = reply.response();
    // THEN the three changed builds are skippedPlanDrift and kept, the rest deleted
    for arn in [web("1.0.0", 4), web("1.0.0", 1), web("1.0.0", 2)] {
        assert_eq!(
            result_for(report, &arn)["status"],
            "skippedPlanDrift",
            "{report:#}"
        );
        assert!(world.emu.image_exists(&arn));
        assert_eq!(world.delete_calls(&arn), 0);
    }
    assert_eq!(report["summary"]["skippedPlanDrift"], 3);
    assert_eq!(report["summary"]["deleted"], planned.len() - 3);
    assert_eq!(report["summary"]["deadLettered"], 0);
}

/// The image version ARNs the emulator was asked to list builds of, in call order.
fn listed_versions(world: &World) -> Vec<String> {
    world
        .emu
        .calls()
        .into_iter()
        .filter(|c| c.operation == "ListImageBuildVersions")
        .map(|c| {
            c.arn
                .unwrap_or_else(|| panic!("a listing without imageVersionArn"))
        })
        .collect()
}

#[tokio::test]
async fn e2e_a_throttled_listing_is_waited_out_not_given_up() {
    // GIVEN a seeded history, and Image Builder throttling the first ListImages page and one
    // version's listing five times each (more than MAX_ATTEMPTS)
    let world = World::start(Setup::default()).await;
    world.emu.seed(history(REGION, &["web"], &[]));
    let throttled = || {
        (0..5)
            .map(|_| Step::Error("CallRateLimitExceededException".into()))
            .collect::<Vec<_>>()
    };
    world.emu.script_op("ListImages", "*", throttled());
    let version = format!("arn:aws:imagebuilder:{REGION}:{ACCOUNT}:image/web/1.0.0");
    world
        .emu
        .script_op("ListImageBuildVersions", &version, throttled());
    // WHEN a plan is made through the binary
    let plan = plan_of(&world, json!({"plan": {"keepNewest": 2}})).await;
    // THEN throttling cost time, not the plan: every build is in it
    assert_eq!(plan["summary"]["scanned"], 12, "{plan:#}");
    let calls = world.emu.calls();
    let refused = calls.iter().filter(|c| c.status == 429).count();
    assert_eq!(refused, 10, "{calls:?}");
}

#[tokio::test]
async fn e2e_every_version_page_is_listed_and_exact_names_narrow_the_listing() {
    // GIVEN 12 names × 3 versions × 4 builds: 36 image versions, two ListImages pages
    let world = World::start(Setup::default()).await;
    let names: Vec<String> = (0..12).map(|i| format!("app-{i:02}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    world.emu.seed(history(REGION, &name_refs, &[]));
    // WHEN a plan of every name is made through the binary
    let plan = plan_of(&world, json!({"plan": {"keepNewest": 2}})).await;
    // THEN all 144 builds are in it, from both ListImages pages and every version, once each
    assert_eq!(plan["summary"]["scanned"], 144, "{:#}", plan["summary"]);
    let calls = world.emu.calls();
    let list_images = calls.iter().filter(|c| c.operation == "ListImages").count();
    assert_eq!(list_images, 2);
    let mut versions = listed_versions(&world);
    versions.sort();
    versions.dedup();
    assert_eq!(versions.len(), 36);
    assert_eq!(listed_versions(&world).len(), 36);
    // WHEN a plan names two of them exactly
    world.emu.reset_stats();
    let plan = plan_of(
        &world,
        json!({"plan": {"names": ["app-03", "app-07"], "keepNewest": 2}}),
    )
    .await;
    // THEN only their builds are scanned, ListImages filtered by name (one page, not two),
    // and only their 6 versions were listed
    assert_eq!(plan["summary"]["scanned"], 24);
    let calls = world.emu.calls();
    let list_images = calls.iter().filter(|c| c.operation == "ListImages").count();
    assert_eq!(list_images, 1);
    let versions = listed_versions(&world);
    assert_eq!(versions.len(), 6, "{versions:?}");
    assert!(
        versions
            .iter()
            .all(|v| v.contains("/app-03/") || v.contains("/app-07/")),
        "{versions:?}"
    );
}

#[tokio::test]
async fn e2e_a_plan_over_two_regions_lists_and_deletes_in_each() {
    // GIVEN "web" in us-east-1 and "api" in eu-west-1
    let world = World::start(Setup::default()).await;
    world.emu.seed(history(REGION, &["web"], &[]));
    world.emu.seed(history(OTHER_REGION, &["api"], &[]));
    // WHEN a plan of FAILED builds covers both regions
    let plan = plan_of(
        &world,
        json!({"plan": {"regions": [OTHER_REGION, REGION], "statuses": ["FAILED"]}}),
    )
    .await;
    // THEN each region's FAILED build is in it (listed through a client of that region)
    let delete = delete_arns(&plan);
    let regions: Vec<&str> = delete
        .iter()
        .map(|a| a.split(':').nth(3).unwrap())
        .collect();
    assert_eq!(delete.len(), 2, "{plan:#}");
    assert!(regions.contains(&REGION) && regions.contains(&OTHER_REGION));
    // WHEN executed THEN both are deleted, each in its own region
    let reply = world.invoke(&json!({"executePlan": plan})).await;
    assert_eq!(reply.response()["summary"]["deleted"], 2);
    for arn in &delete {
        assert!(!world.emu.image_exists(arn));
    }
}

#[tokio::test]
async fn e2e_a_plan_stored_in_s3_is_executed_by_location_and_by_map_items() {
    // GIVEN a bucket in moto's S3 and the function configured with it
    let moto = Moto::shared();
    let s3 = moto.s3();
    let bucket = moto::unique("plans").to_lowercase();
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    let world = World::start(
        Setup::default()
            .env("PLAN_BUCKET", &bucket)
            .env("AWS_ENDPOINT_URL_S3", &moto.url()),
    )
    .await;
    world.emu.seed(history(REGION, &["web"], &[]));
    // WHEN a plan is made
    let plan = plan_of(&world, json!({"plan": {"keepNewest": 2}})).await;
    let id = plan["planId"].as_str().unwrap().to_string();
    // THEN it and its Map items are in the bucket
    let location = plan["planLocation"].clone();
    assert_eq!(
        location,
        json!({"bucket": bucket, "key": format!("plans/{id}.json")})
    );
    let items_key = format!("plans/{id}/items.json");
    let object = s3
        .get_object()
        .bucket(&bucket)
        .key(&items_key)
        .send()
        .await
        .unwrap();
    let items: Value =
        serde_json::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap();
    let planned = delete_arns(&plan);
    assert_eq!(items.as_array().unwrap().len(), planned.len());
    // WHEN executed by location as a dry run THEN every planned build would be deleted
    let reply = world
        .invoke(&json!({"executePlan": {"planLocation": location}, "dryRun": true}))
        .await;
    let report = reply.response();
    assert_eq!(
        report["summary"]["wouldDelete"],
        planned.len(),
        "{report:#}"
    );
    assert_eq!(report["summary"]["dryRun"], true);
    assert!(planned.iter().all(|a| world.delete_calls(a) == 0));
    // WHEN the Map items are executed as a Distributed Map batch would
    let reply = world
        .invoke(&json!({"Items": items, "BatchInput": {}}))
        .await;
    // THEN every planned build is deleted after its drift check
    assert_eq!(reply.response()["summary"]["deleted"], planned.len());
    for arn in &planned {
        assert!(!world.emu.image_exists(arn));
    }
}

#[tokio::test]
async fn the_sample_plan_request_makes_the_plan_it_describes() {
    // GIVEN demo-app with three AVAILABLE builds, the oldest pinned
    let m = memory(None);
    let oldest = format!("arn:aws:imagebuilder:{REGION}:{ACCOUNT}:image/demo-app/1.0.0/1");
    m.listing.add(
        REGION,
        BuildVersionSummary {
            arn: oldest.clone(),
            name: "demo-app".into(),
            version: "1.0.0/1".into(),
            status: "AVAILABLE".into(),
            date_created: "2020-01-01T00:00:00.000Z".into(),
            tags: BTreeMap::from([("pinned".to_string(), "yes".to_string())]),
        },
    );
    let middle = m.build(REGION, "demo-app", 2, 2);
    m.build(REGION, "demo-app", 3, 3);
    m.build(REGION, "demo-app", 4, 4);
    // WHEN events/plan-request.json is sent
    let plan = m.plan(&fixture("plan-request.json")).await;
    // THEN the two newest are kept, the pinned one is protected, the other is selected
    assert_eq!(delete_arns(&plan), [middle], "{plan:#}");
    assert_eq!(keep_reasons(&plan)[&oldest], "protected", "{plan:#}");
}

#[tokio::test]
async fn the_sample_stored_plan_execution_previews_that_plan() {
    // GIVEN a plan stored where events/plan-execute-stored.json points
    let event = fixture("plan-execute-stored.json");
    let location = &event["executePlan"]["planLocation"];
    let key = location["key"].as_str().unwrap();
    let m = memory(location["bucket"].as_str());
    let arn = m.build(REGION, "web", 1, 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut plan = plan_made_at(now, &arn, "2020-01-01T00:00:00.000Z");
    plan.plan_id = key["plans/".len()..key.len() - ".json".len()].to_string();
    m.store.insert(
        location["bucket"].as_str().unwrap(),
        key,
        &serde_json::to_value(&plan).unwrap(),
    );
    // WHEN the sample is sent
    let report = m.report(&event).await;
    // THEN it previews the stored plan's build and deletes nothing
    assert_eq!(report.results.len(), 1);
    assert_eq!(report.results[0].status, Status::WouldDelete);
    assert!(!m.images.is_deleted(&arn));
}
