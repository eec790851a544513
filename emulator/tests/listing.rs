//! Wire-level tests of listing (ListImages, ListImageBuildVersions) and of the generated
//! build history: shapes, region and owner scope, filters, pagination, validation, and that
//! listing goes through scripts and faults like every other operation.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{arn, seed_image, start, Conn};
use ib_emulator::{history, Faults, History, SeedImage, Step};
use serde_json::{json, Value};

const BUILDS: &str = "ListImageBuildVersions";
const IMAGES: &str = "ListImages";

fn arns(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["arn"].as_str().expect("arn").to_string())
        .collect()
}

fn image(arn: &str, date: &str, state: &str) -> SeedImage {
    SeedImage {
        arn: arn.into(),
        date_created: Some(date.into()),
        state: Some(state.into()),
        ..Default::default()
    }
}

fn us_history() -> Vec<SeedImage> {
    // 3 names × 11 versions × 3 builds: versions 1.0.0 … 1.10.0 exercise numeric order.
    history(
        "123456789012",
        "us-east-1",
        &["web", "api", "db"],
        11,
        3,
        "2026-11-01T10:00:00.000Z",
        Duration::from_secs(3600),
    )
    .expect("valid history")
}

// ---------------------------------------------------------------------------------------
// ListImageBuildVersions

#[tokio::test]
async fn build_versions_without_a_version_list_every_build_of_the_region_exactly_once() {
    // GIVEN 99 builds in us-east-1 and two in eu-west-1
    let (emu, addr) = start(Faults::default()).await;
    let seeded = us_history();
    emu.seed(seeded.clone());
    emu.seed([
        seed_image("arn:aws:imagebuilder:eu-west-1:123456789012:image/web/1.0.0/1"),
        seed_image("arn:aws:imagebuilder:eu-west-1:123456789012:image/web/1.0.0/2"),
    ]);
    let mut c = Conn::connect(addr).await;

    // WHEN every page is read, 7 at a time, signed for us-east-1
    let (items, pages) = c
        .list_all(
            BUILDS,
            "us-east-1",
            &json!({"maxResults": 7}),
            "imageSummaryList",
        )
        .await;

    // THEN each us-east-1 build appears exactly once, over ceil(99 / 7) pages
    let listed = arns(&items);
    let unique: BTreeSet<_> = listed.iter().cloned().collect();
    let expected: BTreeSet<_> = seeded.iter().map(|s| s.arn.clone()).collect();
    assert_eq!(listed.len(), 99);
    assert_eq!(unique, expected);
    assert_eq!(pages, 15);

    // AND the order is stable and numeric: api before db before web, 1.9.0 before 1.10.0
    assert!(listed[0].ends_with("image/api/1.0.0/1"), "{}", listed[0]);
    let web: Vec<&String> = listed.iter().filter(|a| a.contains("/web/")).collect();
    assert!(web[27].ends_with("/web/1.9.0/1") && web[30].ends_with("/web/1.10.0/1"));

    // AND each summary carries the ImageSummary members
    let s = &items[0];
    for member in ["name", "type", "version", "platform", "osVersion", "owner"] {
        assert!(s[member].is_string(), "{member}: {s}");
    }
    assert_eq!(s["version"], "1.0.0/1");
    assert_eq!(s["owner"], "123456789012");
    assert_eq!(s["dateCreated"], "2026-11-01T11:00:00.000Z");
    assert!(s["state"]["status"].is_string() && s["tags"].is_object());
    assert_eq!(s["buildType"], "USER_INITIATED");

    // AND eu-west-1 lists only its own two builds
    let (eu, _) = c
        .list_all(BUILDS, "eu-west-1", &json!({}), "imageSummaryList")
        .await;
    assert_eq!(eu.len(), 2);
}

#[tokio::test]
async fn build_versions_with_a_version_take_exactly_that_version() {
    // GIVEN builds of 1.0.1 and of versions sharing its prefix (1.0.10, 1.0.1x)
    let (emu, addr) = start(Faults::default()).await;
    let base = "arn:aws:imagebuilder:us-east-1:123456789012:image/web";
    emu.seed(
        ["1.0.1/1", "1.0.1/2", "1.0.10/1", "1.0.0/1", "1.1.0/1"]
            .map(|v| seed_image(&format!("{base}/{v}"))),
    );
    let mut c = Conn::connect(addr).await;

    // WHEN the builds of 1.0.1 are listed
    let (items, _) = c
        .list_all(
            BUILDS,
            "us-east-1",
            &json!({"imageVersionArn": format!("{base}/1.0.1")}),
            "imageSummaryList",
        )
        .await;

    // THEN only its two builds come back
    assert_eq!(
        arns(&items),
        [format!("{base}/1.0.1/1"), format!("{base}/1.0.1/2")]
    );

    // AND wildcard or malformed versions are InvalidRequestException
    for bad in ["x.x.x", "1.0.x", "1.0", "1.0.1/1"] {
        let body = json!({"imageVersionArn": format!("{base}/{bad}")});
        let r = c.list(BUILDS, "us-east-1", &body).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.error_type(), Some("InvalidRequestException"), "{bad}");
    }
}

#[tokio::test]
async fn pagination_resumes_after_the_last_item_even_when_earlier_items_are_deleted() {
    // GIVEN ten builds
    let (emu, addr) = start(Faults::default()).await;
    emu.seed((1..=10).map(|n| seed_image(&arn(n))));
    let mut c = Conn::connect(addr).await;

    // WHEN the first page of four is read and its builds are deleted
    let first = c
        .list(BUILDS, "us-east-1", &json!({"maxResults": 4}))
        .await
        .json();
    for a in arns(first["imageSummaryList"].as_array().unwrap()) {
        assert_eq!(c.delete_image(&a).await.status, 200);
    }
    let token = first["nextToken"].as_str().expect("more pages").to_string();
    let (rest, _) = c
        .list_all(
            BUILDS,
            "us-east-1",
            &json!({"maxResults": 4, "nextToken": token}),
            "imageSummaryList",
        )
        .await;

    // THEN the remaining six follow, none skipped or repeated
    assert_eq!(arns(&rest), (5..=10).map(arn).collect::<Vec<_>>());
}

#[tokio::test]
async fn date_created_and_status_are_reported_as_seeded() {
    // GIVEN a failed build with its own creation date, and one without a date
    let (emu, addr) = start(Faults::default()).await;
    emu.seed([
        image(&arn(1), "2026-11-01T10:00:00.000Z", "FAILED"),
        seed_image(&arn(2)),
    ]);
    let mut c = Conn::connect(addr).await;

    // WHEN it is read with GetImage and listed
    let got = c.get_image(&arn(1)).await.json();
    let (listed, _) = c
        .list_all(BUILDS, "us-east-1", &json!({}), "imageSummaryList")
        .await;

    // THEN both report the seeded date and status (with a reason for FAILED)
    assert_eq!(got["image"]["dateCreated"], "2026-11-01T10:00:00.000Z");
    assert_eq!(listed[0]["dateCreated"], "2026-11-01T10:00:00.000Z");
    assert_eq!(listed[0]["state"]["status"], "FAILED");
    assert!(listed[0]["state"]["reason"].is_string());
    // AND an undated image has the fixed default date and no reason
    assert_eq!(listed[1]["dateCreated"], "2024-01-01T00:00:00.000Z");
    assert!(listed[1]["state"].get("reason").is_none());
}

// ---------------------------------------------------------------------------------------
// ListImages

#[tokio::test]
async fn list_images_returns_one_entry_per_image_version_owned_by_self() {
    // GIVEN the history (3 names × 11 versions) and one Amazon-managed image
    let (emu, addr) = start(Faults::default()).await;
    emu.seed(us_history());
    let managed = "arn:aws:imagebuilder:us-east-1:aws:image/amazon-linux/2024.1.0/1";
    emu.seed([seed_image(managed)]);
    let mut c = Conn::connect(addr).await;

    // WHEN the images are listed with owner Self, 10 per page
    let body = json!({"owner": "Self", "maxResults": 10});
    let (items, pages) = c
        .list_all(IMAGES, "us-east-1", &body, "imageVersionList")
        .await;

    // THEN each (name, version) appears once, with its version ARN and earliest build date
    assert_eq!((items.len(), pages), (33, 4));
    let versions: BTreeSet<String> = arns(&items).into_iter().collect();
    assert_eq!(versions.len(), 33);
    let first = &items[0];
    assert_eq!(
        first["arn"],
        "arn:aws:imagebuilder:us-east-1:123456789012:image/api/1.0.0"
    );
    assert_eq!(
        (&first["name"], &first["version"]),
        (&json!("api"), &json!("1.0.0"))
    );
    assert_eq!(first["dateCreated"], "2026-11-01T11:00:00.000Z");
    for member in [
        "type",
        "platform",
        "osVersion",
        "owner",
        "buildType",
        "imageSource",
    ] {
        assert!(first[member].is_string(), "{member}");
    }

    // AND the default owner is Self; Amazon lists only the managed image; Shared nothing
    let (default_owner, _) = c
        .list_all(IMAGES, "us-east-1", &json!({}), "imageVersionList")
        .await;
    assert_eq!(default_owner.len(), 33);
    let (amazon, _) = c
        .list_all(
            IMAGES,
            "us-east-1",
            &json!({"owner": "Amazon"}),
            "imageVersionList",
        )
        .await;
    assert_eq!(arns(&amazon), [managed.rsplit_once('/').unwrap().0]);
    let (shared, _) = c
        .list_all(
            IMAGES,
            "us-east-1",
            &json!({"owner": "Shared"}),
            "imageVersionList",
        )
        .await;
    assert!(shared.is_empty());

    // AND an owner outside the model's enum is InvalidRequestException
    let r = c.list(IMAGES, "us-east-1", &json!({"owner": "Me"})).await;
    assert_eq!(r.error_type(), Some("InvalidRequestException"));
}

#[tokio::test]
async fn list_images_filters_by_exact_name_and_by_name_keeps_the_newest_version() {
    // GIVEN the history
    let (emu, addr) = start(Faults::default()).await;
    emu.seed(us_history());
    let mut c = Conn::connect(addr).await;

    // WHEN filtered on two names (exact values; a prefix matches nothing)
    let body = json!({"filters": [{"name": "name", "values": ["web", "db", "we"]}]});
    let (items, _) = c
        .list_all(IMAGES, "us-east-1", &body, "imageVersionList")
        .await;

    // THEN only their versions come back
    let names: BTreeMap<String, usize> = items.iter().fold(BTreeMap::new(), |mut m, i| {
        *m.entry(i["name"].as_str().unwrap().to_string())
            .or_default() += 1;
        m
    });
    assert_eq!(
        names,
        BTreeMap::from([("db".into(), 11), ("web".into(), 11)])
    );

    // AND a version filter narrows to that version; byName gives one entry per name
    let body = json!({"filters": [{"name": "version", "values": ["1.10.0"]}]});
    let (items, _) = c
        .list_all(IMAGES, "us-east-1", &body, "imageVersionList")
        .await;
    assert_eq!(items.len(), 3);
    let (by_name, _) = c
        .list_all(
            IMAGES,
            "us-east-1",
            &json!({"byName": true, "maxResults": 1}),
            "imageVersionList",
        )
        .await;
    let latest: Vec<&str> = by_name
        .iter()
        .map(|i| i["version"].as_str().unwrap())
        .collect();
    assert_eq!(latest, ["1.10.0"; 3]);

    // AND unknown filter names, and byName with a version filter, are InvalidRequestException
    let bad = [
        json!({"filters": [{"name": "status", "values": ["AVAILABLE"]}]}),
        json!({"filters": [{"name": "name", "values": []}]}),
        json!({"byName": true, "filters": [{"name": "version", "values": ["1.0.0"]}]}),
    ];
    for body in bad {
        let r = c.list(IMAGES, "us-east-1", &body).await;
        assert_eq!(r.error_type(), Some("InvalidRequestException"), "{body}");
    }
}

#[tokio::test]
async fn list_images_stops_listing_a_version_once_all_its_builds_are_deleted() {
    // GIVEN two builds of 1.0.0 and one of 1.0.1
    let (emu, addr) = start(Faults::default()).await;
    let v101 = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.1/1";
    emu.seed([seed_image(&arn(1)), seed_image(&arn(2)), seed_image(v101)]);
    let mut c = Conn::connect(addr).await;

    // WHEN both builds of 1.0.0 are deleted
    c.delete_image(&arn(1)).await;
    c.delete_image(&arn(2)).await;

    // THEN only 1.0.1 is listed
    let (items, _) = c
        .list_all(IMAGES, "us-east-1", &json!({}), "imageVersionList")
        .await;
    assert_eq!(arns(&items), [v101.rsplit_once('/').unwrap().0]);
}

// ---------------------------------------------------------------------------------------
// Validation, tokens, faults

#[tokio::test]
async fn max_results_outside_1_to_25_is_invalid_request() {
    let (emu, addr) = start(Faults::default()).await;
    emu.seed((1..=30).map(|n| seed_image(&arn(n))));
    let mut c = Conn::connect(addr).await;
    for op in [IMAGES, BUILDS] {
        // WHEN maxResults is out of the model's range or not an integer
        for bad in [
            json!(0),
            json!(26),
            json!(100),
            json!(-1),
            json!("5"),
            json!(2.5),
        ] {
            let r = c.list(op, "us-east-1", &json!({"maxResults": bad})).await;
            // THEN the answer is 400 InvalidRequestException
            assert_eq!(r.status, 400, "{op} {bad}");
            assert_eq!(
                r.error_type(),
                Some("InvalidRequestException"),
                "{op} {bad}"
            );
        }
    }
    // AND 25 (the maximum) and the default both give 25 items
    let r = c
        .list(BUILDS, "us-east-1", &json!({"maxResults": 25}))
        .await
        .json();
    assert_eq!(r["imageSummaryList"].as_array().unwrap().len(), 25);
    let r = c.list(BUILDS, "us-east-1", &json!({})).await.json();
    assert_eq!(r["imageSummaryList"].as_array().unwrap().len(), 25);
    assert!(r["nextToken"].is_string());
}

#[tokio::test]
async fn foreign_or_forged_tokens_are_invalid_pagination_token() {
    // GIVEN a real ListImages token
    let (emu, addr) = start(Faults::default()).await;
    emu.seed(us_history());
    let mut c = Conn::connect(addr).await;
    let images_token = c
        .list(IMAGES, "us-east-1", &json!({"maxResults": 1}))
        .await
        .json()["nextToken"]
        .as_str()
        .expect("a token")
        .to_string();

    // WHEN tokens that this operation did not hand out are sent
    let bad = [
        json!(images_token), // another operation's
        json!("garbage"),
        json!("ibemu1.ListImageBuildVersions.zz"),
        json!("ibemu1.ListImageBuildVersions.6172"), // decodes to "ar": not an ARN
        json!(""),
        json!(7),
    ];
    for token in bad {
        let r = c
            .list(BUILDS, "us-east-1", &json!({"nextToken": token}))
            .await;
        // THEN each is 400 InvalidPaginationTokenException
        assert_eq!(r.status, 400, "{token}");
        assert_eq!(
            r.error_type(),
            Some("InvalidPaginationTokenException"),
            "{token}"
        );
    }
    // AND the token works where it came from
    let r = c
        .list(IMAGES, "us-east-1", &json!({"nextToken": images_token}))
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn malformed_list_bodies_are_modelled_invalid_requests() {
    let (_emu, addr) = start(Faults::default()).await;
    let mut c = Conn::connect(addr).await;
    for op in [IMAGES, BUILDS] {
        for body in [
            "{",
            "[]",
            "\"x\"",
            "{\"filters\": 3}",
            "{\"includeDeprecated\": 1}",
        ] {
            let r = c
                .send(
                    "POST",
                    &format!("/{op}"),
                    Some(&common::auth("us-east-1")),
                    body,
                )
                .await;
            assert_eq!(r.status, 400, "{op} {body}");
            assert_eq!(
                r.error_type(),
                Some("InvalidRequestException"),
                "{op} {body}"
            );
            assert!(r.json()["message"].is_string());
        }
        // AND an unsigned list is forbidden before anything else
        let r = c.send("POST", &format!("/{op}"), None, "{").await;
        assert_eq!(r.error_type(), Some("ForbiddenException"));
    }
}

#[tokio::test]
async fn listing_goes_through_scripts_and_faults_like_every_operation() {
    // GIVEN scripts for ListImages (any call) and for one version's builds
    let (emu, addr) = start(Faults::default()).await;
    emu.seed([seed_image(&arn(1))]);
    let version = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0";
    emu.script_op(
        IMAGES,
        "*",
        vec![Step::Error("CallRateLimitExceededException".into())],
    );
    emu.script_op(
        BUILDS,
        version,
        vec![Step::Error("ServiceUnavailableException".into())],
    );
    let mut c = Conn::connect(addr).await;

    // WHEN each is called twice
    let i1 = c.list(IMAGES, "us-east-1", &json!({})).await;
    let i2 = c.list(IMAGES, "us-east-1", &json!({})).await;
    let body = json!({"imageVersionArn": version});
    let b1 = c.list(BUILDS, "us-east-1", &body).await;
    let b2 = c.list(BUILDS, "us-east-1", &body).await;

    // THEN the scripted answer comes first, then normal behaviour
    assert_eq!((i1.status, i2.status), (429, 200));
    assert_eq!((b1.status, b2.status), (503, 200));
    assert_eq!(emu.throttled(IMAGES), 1);

    // AND random throttling applies to listing too
    emu.set_faults(Faults {
        throttle_rate: 1.0,
        ..Default::default()
    });
    let r = c.list(BUILDS, "us-east-1", &json!({})).await;
    assert_eq!(r.error_type(), Some("CallRateLimitExceededException"));
    let calls = emu.calls();
    assert_eq!(calls.last().unwrap().operation, BUILDS);
    assert_eq!(calls[2].arn.as_deref(), Some(version));
}

// ---------------------------------------------------------------------------------------
// History generator

#[test]
fn history_is_deterministic_mixed_and_dated_in_build_order() {
    // GIVEN a history of 2 names × 4 versions × 5 builds, one hour apart
    let spec = History {
        names: vec!["web".into(), "api".into()],
        versions_per_name: 4,
        builds_per_version: 5,
        start: "2026-11-01T10:00:00.000Z".into(),
        step_seconds: 3600,
        ..Default::default()
    };

    // WHEN generated twice
    let a = spec.images().unwrap();
    let b = spec.images().unwrap();

    // THEN it is the same 40 distinct builds both times
    assert_eq!(a.len(), 40);
    let render = |v: &[SeedImage]| serde_json::to_string(v).unwrap();
    assert_eq!(render(&a), render(&b));
    let unique: BTreeSet<_> = a.iter().map(|s| s.arn.clone()).collect();
    assert_eq!(unique.len(), 40);

    // AND statuses are mostly AVAILABLE with some of each failure kind
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for s in &a {
        *by_status.entry(s.state.clone().unwrap()).or_default() += 1;
    }
    assert!(by_status["AVAILABLE"] > 20, "{by_status:?}");
    for s in ["FAILED", "CANCELLED", "DEPRECATED", "BUILDING"] {
        assert!(
            by_status.get(s).is_some_and(|n| *n > 0),
            "{s}: {by_status:?}"
        );
    }

    // AND only the newest build of the first name is BUILDING
    let building: Vec<&str> = a
        .iter()
        .filter(|s| s.state.as_deref() == Some("BUILDING"))
        .map(|s| s.arn.as_str())
        .collect();
    assert_eq!(
        building,
        ["arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.3.0/5"]
    );

    // AND dates start at `start`, are distinct, and rise with version then build
    let dates: Vec<&str> = a
        .iter()
        .map(|s| s.date_created.as_deref().unwrap())
        .collect();
    assert_eq!(dates[0], "2026-11-01T10:00:00.000Z");
    assert_eq!(dates[1], "2026-11-01T12:00:00.000Z"); // the other name took 11:00
    let web = &dates[..20];
    assert!(web.windows(2).all(|w| w[0] < w[1]), "{web:?}");
    let all: BTreeSet<&str> = dates.iter().copied().collect();
    assert_eq!(all.len(), 40);

    // AND failed builds have no output resources
    let failed = a
        .iter()
        .find(|s| s.state.as_deref() == Some("FAILED"))
        .unwrap();
    assert_eq!(
        failed.output_resources,
        Some(json!({"amis": [], "containers": []}))
    );

    // AND a start that is not an ISO-8601 UTC timestamp is refused, not guessed
    let bad = History {
        start: "yesterday".into(),
        ..spec
    };
    assert!(bad.images().is_err());
}

#[tokio::test]
async fn history_is_seeded_over_the_control_api() {
    // GIVEN an empty emulator
    let (emu, addr) = start(Faults::default()).await;
    let mut c = Conn::connect(addr).await;

    // WHEN a history is posted (missing fields take their defaults)
    let body = json!({"names": ["web", "api"], "versionsPerName": 2, "buildsPerVersion": 3});
    let r = c
        .control("POST", "/_emulator/history", &body.to_string())
        .await;

    // THEN its builds exist and are listed
    assert_eq!((r.status, r.json()["seeded"].as_u64()), (200, Some(12)));
    assert_eq!(emu.images().len(), 12);
    let (items, _) = c
        .list_all(BUILDS, "us-east-1", &json!({}), "imageSummaryList")
        .await;
    assert_eq!(items.len(), 12);

    // AND a bad history is a 400 with a message
    let r = c
        .control("POST", "/_emulator/history", r#"{"start": "soon"}"#)
        .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("ISO-8601"));
}
