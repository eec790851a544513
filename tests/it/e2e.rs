//! End-to-end tests of the real `imagebuilder-reaper` binary in the local world.
//!
//! Each test starts the binary cargo built (`CARGO_BIN_EXE_imagebuilder-reaper`) under a
//! Lambda Runtime API (in-process, `support/runtime_api.rs`, or cargo-lambda), points it at
//! the in-process Image Builder emulator and at moto's SQS through the standard endpoint
//! variables only, invokes it, and checks the report, the emulator's record of calls and
//! what landed in the moto dead-letter queue. moto must be installed (`scripts/setup`);
//! without it these tests fail, they never skip.

use std::collections::BTreeSet;
use std::time::Duration;

use ib_emulator::{Faults, RateLimit, Step};
use serde_json::{json, Value};

use crate::support::cargo_lambda::CargoLambda;
use crate::support::constants::{ACCOUNT, STATUSES};
use crate::support::fixtures::{arn, arn_in, fixture, fixture_names, sqs_event, sqs_event_from};
use crate::support::moto::{self, Received};
use crate::support::world::{result_for, spawn_function, Dlq, Setup, World};

// ---------------------------------------------------------------------------------------
// Report helpers
// ---------------------------------------------------------------------------------------

/// The results of a report.
fn results(report: &Value) -> Vec<&Value> {
    report["results"]
        .as_array()
        .unwrap_or_else(|| panic!("report without results: {report}"))
        .iter()
        .collect()
}

fn failed_items(report: &Value) -> BTreeSet<String> {
    report["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("report without batchItemFailures: {report}"))
        .iter()
        .map(|f| {
            f["itemIdentifier"]
                .as_str()
                .expect("itemIdentifier")
                .to_string()
        })
        .collect()
}

/// The summary agrees with the per-ARN results (when they are not truncated).
fn assert_summary_matches_results(report: &Value) {
    let summary = &report["summary"];
    let total: u64 = STATUSES
        .iter()
        .map(|s| summary[*s].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        summary["requested"].as_u64(),
        Some(total),
        "requested equals the sum of the status counts: {report:#}"
    );
    if report["resultsTruncated"] == true {
        return;
    }
    for status in STATUSES {
        let n = results(report)
            .iter()
            .filter(|r| r["status"] == *status)
            .count() as u64;
        assert_eq!(
            summary[*status].as_u64().unwrap_or(0),
            n,
            "summary.{status}: {report:#}"
        );
    }
    let dead = results(report)
        .iter()
        .filter(|r| r["deadLettered"] == true)
        .count() as u64;
    assert_eq!(
        summary["deadLettered"].as_u64().unwrap_or(0),
        dead,
        "summary.deadLettered: {report:#}"
    );
}

/// `(messageId, ARN)`: one SQS record per image, with ids `<prefix>-0`, `<prefix>-1`, …
fn one_record_per_image(prefix: &str, images: &[String]) -> Vec<(String, String)> {
    images
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("{prefix}-{i}"), a.clone()))
        .collect()
}

/// `records` borrowed, as [`sqs_event`] takes them.
fn as_refs(records: &[(String, String)]) -> Vec<(&str, &str)> {
    records
        .iter()
        .map(|(id, a)| (id.as_str(), a.as_str()))
        .collect()
}

/// Every dead-letter message carries the fields and the `errorCode` attribute.
fn assert_dead_letter_shape(m: &Received) {
    let body = m.json();
    let code = body["errorCode"]
        .as_str()
        .unwrap_or_else(|| panic!("DLQ body without errorCode: {body}"));
    assert_eq!(
        m.error_code.as_deref(),
        Some(code),
        "errorCode attribute equals the body's: {body}"
    );
    assert!(
        body.get("imageBuildVersionArn").is_some() || body.get("input").is_some(),
        "DLQ body names the ARN or the input: {body}"
    );
    assert!(
        body["message"].as_str().is_some_and(|s| !s.is_empty()),
        "DLQ message: {body}"
    );
    assert!(
        body["source"]["type"].is_string(),
        "DLQ source.type: {body}"
    );
    assert!(
        body["failedAt"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z') && s.contains('T')),
        "DLQ failedAt is an RFC 3339 UTC time: {body}"
    );
}

/// What the function must do with one input string under the default test configuration
/// (function account 123456789012, partition aws, any region): a status and, for a
/// rejection, the acceptable codes.
fn oracle(item: &str, dry_run: bool) -> (&'static str, Vec<&'static str>) {
    let s = item.trim();
    let not_arn = (
        "rejected",
        vec!["NotAnImageBuildVersionArn", "InvalidMessage"],
    );
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" {
        return not_arn;
    }
    let (partition, service, region, account, resource) =
        (parts[1], parts[2], parts[3], parts[4], parts[5]);
    if !partition.starts_with("aws") || service != "imagebuilder" || region.is_empty() {
        return ("rejected", vec!["NotAnImageBuildVersionArn"]);
    }
    let account_ok = (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
        || account == "aws"
        || account.starts_with("aws-");
    let segs: Vec<&str> = resource.split('/').collect();
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    let name_ok = |x: &str| {
        !x.is_empty()
            && x.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    let semver = |x: &str, wild: bool| {
        let n: Vec<&str> = x.split('.').collect();
        n.len() == 3 && n.iter().all(|p| digits(p) || (wild && *p == "x"))
    };
    let build_version = segs.len() == 4
        && segs[0] == "image"
        && name_ok(segs[1])
        && semver(segs[2], false)
        && digits(segs[3]);
    let image_version =
        segs.len() == 3 && segs[0] == "image" && name_ok(segs[1]) && semver(segs[2], true);
    if !account_ok || !(build_version || image_version) {
        return ("rejected", vec!["NotAnImageBuildVersionArn"]);
    }
    if image_version {
        return ("rejected", vec!["ImageVersionArnNotSupported"]);
    }
    if partition != "aws" {
        return ("rejected", vec!["PartitionMismatch"]);
    }
    if account != ACCOUNT {
        return ("rejected", vec!["AccountNotAllowed"]);
    }
    (if dry_run { "wouldDelete" } else { "deleted" }, vec![])
}

/// Every string in `v`, descending into strings that are themselves JSON (SQS bodies,
/// SNS messages, EventBridge details).
fn strings_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            out.push(s.clone());
            if let Ok(inner) = serde_json::from_str::<Value>(s) {
                if inner.is_object() || inner.is_array() {
                    strings_in(&inner, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| strings_in(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings_in(x, out)),
        _ => {}
    }
}

/// Whether some part of the event (descending into JSON strings) says `"dryRun": true`.
fn asks_dry_run(v: &Value) -> bool {
    match v {
        Value::Object(o) => o
            .iter()
            .any(|(k, x)| (k == "dryRun" && *x == true) || asks_dry_run(x)),
        Value::Array(a) => a.iter().any(asks_dry_run),
        Value::String(s) => serde_json::from_str::<Value>(s)
            .is_ok_and(|inner| (inner.is_object() || inner.is_array()) && asks_dry_run(&inner)),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// Every fixture
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_produces_a_report_consistent_with_its_contents() {
    // GIVEN the function with a DLQ, and every events/*.json delete request (the retention
    // plan samples, plan-*.json, have tests of their own)
    let all: Vec<String> = fixture_names()
        .into_iter()
        .filter(|n| !n.starts_with("plan-"))
        .collect();
    assert!(!all.is_empty(), "events/ holds the sample events");
    let w = World::start(Setup::default()).await;
    for name in all {
        let event = fixture(&name);
        let mut strings = Vec::new();
        strings_in(&event, &mut strings);
        // AND every valid build-version ARN the fixture names exists in the emulator
        w.emu.clear_images();
        w.emu.reset_stats();
        let seeded: BTreeSet<String> = strings
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| ib_emulator::model::parse_build_version_arn(s).is_some())
            .collect();
        w.emu.seed(seeded.iter().map(|a| ib_emulator::SeedImage {
            arn: a.clone(),
            ..Default::default()
        }));

        // WHEN the fixture is the invocation's event
        let reply = w.invoke(&event).await;

        // THEN an invalid-* fixture fails the invocation with InvalidEvent …
        if name.starts_with("invalid-") {
            let err = reply.error();
            assert_eq!(
                err.error_type.as_deref(),
                Some("InvalidEvent"),
                "{name}: {err:?}"
            );
            assert!(
                err.error_message.as_deref().is_some_and(|m| !m.is_empty()),
                "{name}: message names what was expected"
            );
            assert!(
                w.emu.calls().is_empty(),
                "{name}: nothing reaches Image Builder"
            );
            continue;
        }
        // … and any other produces a report consistent with its contents
        let report = reply.response().clone();
        let ctx = format!("fixture events/{name} → {report:#}");
        assert_summary_matches_results(&report);
        let from_sqs = event["Records"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["eventSource"] == "aws:sqs"));
        assert_eq!(
            report.get("batchItemFailures").is_some(),
            from_sqs,
            "batchItemFailures exactly for SQS: {ctx}"
        );
        if from_sqs {
            // nothing is retryable here: every outcome is final (deleted, or dead-lettered)
            assert!(
                failed_items(&report).is_empty(),
                "no record handed back: {ctx}"
            );
        }
        let dry_run = report["summary"]["dryRun"] == true;
        let mut dead_lettered = 0;
        for r in results(&report) {
            let item = match (&r["imageBuildVersionArn"], &r["input"]) {
                (Value::String(a), _) => a.clone(),
                (_, Value::String(s)) => s.clone(),
                (_, other) => {
                    // an input of no known shape
                    assert_eq!(
                        r["errorCode"], "InvalidMessage",
                        "{other} → InvalidMessage: {ctx}"
                    );
                    assert_eq!(r["deadLettered"], true, "{ctx}");
                    dead_lettered += 1;
                    continue;
                }
            };
            assert!(
                strings.iter().any(|s| s.trim() == item.trim()),
                "{item} comes from the fixture: {ctx}"
            );
            let (mut status, codes) = oracle(&item, dry_run);
            // a dry run can also be asked for by one part of the event (an SQS body, an
            // EventBridge detail): then only the items it covers are wouldDelete
            if status == "deleted" && r["status"] == "wouldDelete" && asks_dry_run(&event) {
                status = "wouldDelete";
            }
            assert_eq!(r["status"], status, "{item}: {ctx}");
            match status {
                "rejected" => {
                    assert!(
                        codes.iter().any(|c| r["errorCode"] == *c),
                        "{item} rejected with one of {codes:?}: {ctx}"
                    );
                    assert_eq!(
                        r["deadLettered"], true,
                        "rejections are dead-lettered: {ctx}"
                    );
                    assert_eq!(
                        w.delete_calls(&item),
                        0,
                        "a rejected item never reaches DeleteImage: {ctx}"
                    );
                    dead_lettered += 1;
                }
                "deleted" => {
                    assert!(!w.emu.image_exists(&item), "{item} is gone: {ctx}");
                    assert_eq!(
                        w.delete_calls(&item),
                        1,
                        "{item} is deleted once, however often it is named: {ctx}"
                    );
                }
                "wouldDelete" => {
                    assert!(
                        w.emu.image_exists(&item),
                        "a dry run deletes nothing: {ctx}"
                    );
                    assert_eq!(w.delete_calls(&item), 0, "{ctx}");
                }
                _ => unreachable!(),
            }
        }
        // AND exactly the dead-lettered items are in the DLQ, each with its errorCode
        let dlq = w.dead_letters(dead_lettered).await;
        assert_eq!(dlq.len(), dead_lettered, "DLQ messages {dlq:#?}: {ctx}");
        for m in &dlq {
            assert_dead_letter_shape(m);
            if from_sqs {
                assert_eq!(m.json()["source"]["type"], "sqs", "{ctx}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// EventBridge → SQS → function
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_builder_state_change_routed_by_an_eventbridge_rule_to_sqs_deletes_the_image() {
    // GIVEN an image, and in moto an EventBridge rule for Image Builder state changes with
    // an SQS work queue as its target
    let image = arn("eventbridge-routed", 1);
    let w = World::start(Setup::default().seed([image.clone()])).await;
    let work = moto::create_queue(&w.sqs, &moto::unique("e2e-work")).await;
    let work_arn = moto::queue_arn(&w.sqs, &work).await;
    let rule = moto::unique("e2e-imagebuilder-available");
    w.moto.events(
        "PutRule",
        json!({
            "Name": rule,
            "EventPattern": json!({
                "source": ["aws.imagebuilder"],
                "detail-type": ["EC2 Image Builder Image State Change"],
                "resources": [image],
            }).to_string(),
            "State": "ENABLED",
        }),
    );
    w.moto.events(
        "PutTargets",
        json!({"Rule": rule, "Targets": [{"Id": "work-queue", "Arn": work_arn}]}),
    );

    // WHEN Image Builder reports the image AVAILABLE
    let put = w.moto.events(
        "PutEvents",
        json!({"Entries": [{
            "Source": "aws.imagebuilder",
            "DetailType": "EC2 Image Builder Image State Change",
            "Resources": [image],
            "Detail": json!({"previous-state": {"status": "DISTRIBUTING"}, "state": {"status": "AVAILABLE"}}).to_string(),
        }]}),
    );
    assert_eq!(put["FailedEntryCount"], 0, "{put}");
    // AND the queue's message reaches the function as an SQS event
    let delivered = moto::drain(&w.sqs, &work, 1, Duration::from_secs(10)).await;
    assert_eq!(
        delivered.len(),
        1,
        "the rule delivered the event to the queue"
    );
    let m = &delivered[0];
    assert_eq!(
        m.json()["resources"][0],
        image,
        "EventBridge delivers the event verbatim: {}",
        m.body
    );
    let reply = w
        .invoke(&sqs_event_from(&work_arn, &[(&m.message_id, &m.body)]))
        .await;

    // THEN the image is deleted and nothing is handed back or dead-lettered
    let report = reply.response();
    assert_eq!(
        result_for(report, &image)["status"],
        "deleted",
        "{report:#}"
    );
    assert!(failed_items(report).is_empty(), "{report:#}");
    assert!(!w.emu.image_exists(&image));
    assert!(w.dead_letters(0).await.is_empty());
}

// ---------------------------------------------------------------------------------------
// Permanent failures, the DLQ, and its redrive
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_is_dead_lettered_and_its_redriven_message_succeeds() {
    // GIVEN two images, one of them blocked by a dependency exactly once
    let blocked = arn("blocked-by-dependency", 1);
    let free = arn("free-to-go", 1);
    let w = World::start(Setup::default().seed([blocked.clone(), free.clone()])).await;
    w.emu.script(
        &blocked,
        vec![Step::Error("ResourceDependencyException".into()), Step::Ok],
    );

    // WHEN an SQS batch names both
    let reply = w
        .invoke(&sqs_event(&[
            ("msg-blocked", &blocked),
            ("msg-free", &free),
        ]))
        .await;

    // THEN the blocked one failed permanently after one attempt and was dead-lettered, and
    // its record is NOT handed back to SQS
    let report = reply.response();
    assert_summary_matches_results(report);
    let r = result_for(report, &blocked);
    assert_eq!(r["status"], "failed", "{report:#}");
    assert_eq!(r["errorCode"], "ResourceDependencyException");
    assert_eq!(r["retryable"], false);
    assert_eq!(r["attempts"], 1);
    assert_eq!(r["deadLettered"], true);
    assert_eq!(result_for(report, &free)["status"], "deleted");
    assert!(
        failed_items(report).is_empty(),
        "permanent failures go to the DLQ, not back to SQS: {report:#}"
    );
    assert_eq!(
        w.delete_calls(&blocked),
        1,
        "a permanent failure is not retried"
    );
    // AND the DLQ holds the message
    let dlq = w.dead_letters(1).await;
    assert_eq!(dlq.len(), 1, "{dlq:#?}");
    assert_dead_letter_shape(&dlq[0]);
    let body = dlq[0].json();
    assert_eq!(
        dlq[0].error_code.as_deref(),
        Some("ResourceDependencyException")
    );
    assert_eq!(body["imageBuildVersionArn"], blocked);
    assert_eq!(body["errorCode"], "ResourceDependencyException");
    assert_eq!(body["retryable"], false);
    assert_eq!(body["attempts"], 1);
    assert_eq!(body["source"], json!({"type": "sqs", "id": "msg-blocked"}));

    // WHEN the dependency is gone and the DLQ message is redriven into the work queue
    let reply = w
        .invoke(&sqs_event(&[(&dlq[0].message_id, &dlq[0].body)]))
        .await;

    // THEN the image is deleted and nothing new is dead-lettered
    let report = reply.response();
    assert_eq!(
        result_for(report, &blocked)["status"],
        "deleted",
        "{report:#}"
    );
    assert!(failed_items(report).is_empty());
    assert!(!w.emu.image_exists(&blocked));
    assert!(w.dead_letters(0).await.is_empty());
}

// ---------------------------------------------------------------------------------------
// Throttling storm: the one rule
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_throttling_storm_every_arn_ends_in_exactly_one_place() {
    // GIVEN 40 images behind an Image Builder that throttles half of all calls
    let images: Vec<String> = (1..=40).map(|i| arn("storm", i)).collect();
    let w = World::start(
        Setup::default()
            .seed(images.clone())
            .faults(Faults {
                throttle_rate: 0.5,
                ..Default::default()
            })
            .env("MAX_ATTEMPTS", "8"),
    )
    .await;
    let records = one_record_per_image("storm", &images);

    // WHEN one SQS batch names them all
    let reply = w.invoke(&sqs_event(&as_refs(&records))).await;

    // THEN every ARN is in exactly one place: deleted, dead-lettered, or handed back
    let report = reply.response();
    assert_summary_matches_results(report);
    let handed_back = failed_items(report);
    let dlq: Vec<String> = w
        .dead_letters(0)
        .await
        .iter()
        .map(|m| {
            m.json()["imageBuildVersionArn"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let calls = w.emu.calls();
    let throttled = calls.iter().filter(|c| c.status == 429).count();
    assert!(throttled > 0, "the storm happened");
    for (id, image) in &records {
        let r = result_for(report, image);
        let deleted = !w.emu.image_exists(image);
        let back = handed_back.contains(id);
        let dead = dlq.iter().any(|a| a == image);
        let places = [deleted, back, dead].iter().filter(|x| **x).count();
        assert_eq!(
            places, 1,
            "{image}: deleted={deleted} handed back={back} dead-lettered={dead}; {r}"
        );
        // Throttles are not attempts: with the deadline far away, every ARN is deleted on
        // its first attempt, however often it was throttled.
        assert_eq!(r["status"], "deleted", "{r}");
        assert_eq!(r["attempts"], 1, "{r}");
        let mine: Vec<_> = calls
            .iter()
            .filter(|c| c.arn.as_deref() == Some(image.as_str()) && c.operation == "DeleteImage")
            .collect();
        assert!(
            mine.iter().filter(|c| c.status == 200).count() <= 1,
            "{image} deleted at most once"
        );
    }
    assert!(
        dlq.is_empty(),
        "retryable failures of an SQS batch go back to SQS, not the DLQ: {dlq:?}"
    );
    // AND the summary counts every throttled call
    assert_eq!(report["summary"]["throttled"], throttled, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_service_rate_limit_every_arn_is_deleted_and_none_given_up() {
    // GIVEN DeleteImage limited to 50 calls/s (burst 5), MAX_CONCURRENCY=16, MAX_ATTEMPTS=2
    let images: Vec<String> = (1..=300).map(|i| arn("rate-limited", i)).collect();
    let w = World::start(
        Setup::default()
            .seed(images.clone())
            .faults(Faults {
                rate_limits: [(
                    "DeleteImage".to_string(),
                    RateLimit {
                        rate: 50.0,
                        burst: 5.0,
                    },
                )]
                .into(),
                ..Default::default()
            })
            .env("MAX_CONCURRENCY", "16")
            .env("MAX_ATTEMPTS", "2"),
    )
    .await;

    // WHEN one direct invocation names all 300 (6 s of the service's rate; 60 s to live)
    let reply = w.invoke(&json!({ "imageBuildVersionArns": images })).await;

    // THEN every ARN is deleted, none dead-lettered or handed back
    let report = reply.response();
    assert_summary_matches_results(report);
    assert_eq!(report["summary"]["deleted"], 300, "{}", report["summary"]);
    for image in &images {
        assert!(!w.emu.image_exists(image), "{image} still exists");
        assert_eq!(result_for(report, image)["attempts"], 1);
    }
    assert!(w.dead_letters(0).await.is_empty());
    // AND the throttled calls the service answered are the ones the report counts
    let throttled = w.emu.throttled("DeleteImage");
    assert_eq!(
        report["summary"]["throttled"], throttled,
        "{}",
        report["summary"]
    );
}

// ---------------------------------------------------------------------------------------
// The DLQ is down
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_dlq_is_gone_sqs_records_are_handed_back_and_direct_invocations_fail() {
    // GIVEN DEAD_LETTER_QUEUE_URL names a deleted queue, and an image that fails permanently
    let blocked = arn("dlq-gone-blocked", 1);
    let blocked2 = arn("dlq-gone-blocked", 2);
    let fine = arn("dlq-gone-fine", 1);
    let w = World::start(Setup::default().dlq(Dlq::Deleted).seed([
        blocked.clone(),
        blocked2.clone(),
        fine.clone(),
    ]))
    .await;
    w.emu.script(
        &blocked,
        vec![Step::Error("ResourceDependencyException".into())],
    );
    w.emu.script(
        &blocked2,
        vec![Step::Error("ResourceDependencyException".into())],
    );

    // WHEN an SQS batch holds the failing image, a poison record and a good image
    let reply = w
        .invoke(&sqs_event(&[
            ("m-blocked", &blocked),
            ("m-poison", "this is not an ARN"),
            ("m-fine", &fine),
        ]))
        .await;

    // THEN the records that could not be dead-lettered are handed back to SQS
    let report = reply.response();
    assert_eq!(
        failed_items(report),
        BTreeSet::from(["m-blocked".to_string(), "m-poison".to_string()]),
        "{report:#}"
    );
    assert_eq!(result_for(report, &fine)["status"], "deleted");
    assert!(!w.emu.image_exists(&fine));

    // WHEN a direct invocation names a failing image
    let reply = w
        .invoke(&json!({"imageBuildVersionArns": [blocked2]}))
        .await;

    // THEN the invocation fails with DeadLetterQueueUnavailable (its caller retries)
    let err = reply.error();
    assert_eq!(
        err.error_type.as_deref(),
        Some("DeadLetterQueueUnavailable"),
        "{err:?}"
    );
    assert!(
        err.header_error_type.is_some(),
        "the error is flagged by the Lambda-Runtime-Function-Error-Type header"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_hand_records_back_and_fail_direct_invocations() {
    // GIVEN Image Builder refuses the function's credentials for two images
    let (sqs_arn, direct_arn) = (arn("creds-refused", 1), arn("creds-refused", 2));
    let w = World::start(Setup::default().seed([sqs_arn.clone(), direct_arn.clone()])).await;
    for a in [&sqs_arn, &direct_arn] {
        w.emu
            .script(a, vec![Step::Error("ExpiredTokenException".into())]);
    }

    // WHEN an SQS batch names one of them
    let reply = w.invoke(&sqs_event(&[("m-creds", &sqs_arn)])).await;

    // THEN its record is handed back for a retry and nothing is dead-lettered
    let report = reply.response();
    assert_eq!(
        failed_items(report),
        BTreeSet::from(["m-creds".to_string()]),
        "{report:#}"
    );
    assert_eq!(
        result_for(report, &sqs_arn)["errorCode"],
        "ExpiredTokenException"
    );
    assert_eq!(report["summary"]["deadLettered"], 0);

    // WHEN a direct invocation names the other
    let reply = w
        .invoke(&json!({"imageBuildVersionArns": [direct_arn]}))
        .await;

    // THEN the invocation fails with ConfigurationError naming the cause
    let err = reply.error();
    assert_eq!(
        err.error_type.as_deref(),
        Some("ConfigurationError"),
        "{err:?}"
    );
    assert!(
        err.error_message
            .as_deref()
            .unwrap_or_default()
            .contains("ExpiredTokenException"),
        "{err:?}"
    );
    assert!(w.dead_letters(0).await.is_empty());
    assert!(w.emu.image_exists(&direct_arn));
}

// ---------------------------------------------------------------------------------------
// The Lambda deadline
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_the_deadline_the_rest_of_the_batch_is_handed_back_unattempted() {
    // GIVEN 12 images behind a slow Image Builder (700 ms per call), one call at a time,
    // and an invocation with 4.5 s to live (3 s of which are the default safety margin)
    let images: Vec<String> = (1..=12).map(|i| arn("slow", i)).collect();
    let w = World::start(
        Setup::default()
            .seed(images.clone())
            .faults(Faults {
                latency_ms: 700,
                ..Default::default()
            })
            .env("MAX_CONCURRENCY", "1"),
    )
    .await;
    let records = one_record_per_image("slow", &images);

    // WHEN the batch arrives
    let reply = w
        .invoke_within(&sqs_event(&as_refs(&records)), Duration::from_millis(4500))
        .await;

    // THEN the function answers with a report (it is not cut off by the deadline) …
    let report = reply.response();
    assert_summary_matches_results(report);
    // … in which every DeleteImage it started has finished: Image Builder saw them one at
    // a time, in batch order, each answered, exactly the ARNs reported deleted
    let deleted = report["summary"]["deleted"].as_u64().unwrap_or(0) as usize;
    let calls = w.emu.calls();
    let started: Vec<&str> = calls
        .iter()
        .filter(|c| c.operation == "DeleteImage")
        .map(|c| c.arn.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(started, &images[..deleted], "{report:#}");
    assert!(calls.iter().all(|c| c.status == 200), "{calls:?}");
    assert_eq!(w.emu.max_concurrency(), 1, "MAX_CONCURRENCY=1");
    // AND what it could not start is notAttempted, handed back, untouched
    let handed_back = failed_items(report);
    let mut not_attempted = 0;
    for (id, image) in &records {
        let r = result_for(report, image);
        match r["status"].as_str() {
            Some("deleted") => assert!(!handed_back.contains(id), "{r}"),
            Some("notAttempted") => {
                not_attempted += 1;
                assert!(handed_back.contains(id), "{id} handed back: {report:#}");
                assert_eq!(w.delete_calls(image), 0, "no DeleteImage for {image}");
                assert!(w.emu.image_exists(image));
            }
            other => panic!("unexpected status {other:?}: {r}"),
        }
    }
    assert!(not_attempted > 0, "the deadline cut the batch: {report:#}");
    assert!(
        report["summary"]["deleted"].as_u64().unwrap_or(0) > 0,
        "work started before the margin: {report:#}"
    );
    assert!(
        w.dead_letters(0).await.is_empty(),
        "SQS hands back, nothing is dead-lettered"
    );
}

// ---------------------------------------------------------------------------------------
// Regions, retries, configuration
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arn_in_another_region_is_deleted_through_a_client_signed_for_that_region() {
    // GIVEN images in the function's region and in eu-west-1
    let home = arn("home-region", 1);
    let away = arn_in("eu-west-1", "other-region", 1);
    let w = World::start(Setup::default().seed([home.clone(), away.clone()])).await;

    // WHEN a direct invocation names both
    let reply = w
        .invoke(&json!({"imageBuildVersionArns": [home, away]}))
        .await;

    // THEN both are deleted, each by a request signed for its own region
    let report = reply.response();
    assert_eq!(result_for(report, &home)["status"], "deleted", "{report:#}");
    assert_eq!(result_for(report, &away)["status"], "deleted", "{report:#}");
    let region_of = |a: &str| {
        w.emu
            .calls()
            .into_iter()
            .filter(|c| c.operation == "DeleteImage" && c.arn.as_deref() == Some(a))
            .map(|c| (c.region, c.service))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        region_of(&home),
        vec![(
            Some("us-east-1".to_string()),
            Some("imagebuilder".to_string())
        )]
    );
    assert_eq!(
        region_of(&away),
        vec![(
            Some("eu-west-1".to_string()),
            Some("imagebuilder".to_string())
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_429_is_not_an_attempt_and_5xx_is_retried_up_to_max_attempts() {
    // GIVEN MAX_ATTEMPTS=3, one image throttled 5 times then fine, one failing with 500
    let recovers = arn("throttled-five-times", 1);
    let stuck = arn("service-exception", 1);
    let w = World::start(
        Setup::default()
            .seed([recovers.clone(), stuck.clone()])
            .env("MAX_ATTEMPTS", "3"),
    )
    .await;
    let throttle = || Step::Error("CallRateLimitExceededException".into());
    w.emu
        .script(&recovers, (0..5).map(|_| throttle()).collect());
    w.emu.script(
        &stuck,
        (0..10)
            .map(|_| Step::Error("ServiceException".into()))
            .collect(),
    );

    // WHEN a direct invocation names both
    let reply = w
        .invoke(&json!({"imageBuildVersionArns": [recovers, stuck]}))
        .await;

    // THEN the first is deleted on its first attempt after 5 throttled calls; the second
    // gives up after three attempts and is dead-lettered as retryable; Image Builder saw
    // exactly those calls
    let report = reply.response();
    let r = result_for(report, &recovers);
    assert_eq!(r["status"], "deleted", "{report:#}");
    assert_eq!(r["attempts"], 1, "{report:#}");
    assert_eq!(r["throttled"], 5, "{report:#}");
    assert_eq!(report["summary"]["throttled"], 5, "{report:#}");
    let s = result_for(report, &stuck);
    assert_eq!(s["status"], "failed", "{report:#}");
    assert_eq!(s["errorCode"], "ServiceException");
    assert_eq!(s["retryable"], true);
    assert_eq!(s["attempts"], 3);
    assert_eq!(s["deadLettered"], true);
    assert_eq!(w.delete_calls(&recovers), 6);
    assert_eq!(
        w.delete_calls(&stuck),
        3,
        "no call beyond MAX_ATTEMPTS (and no hidden SDK retries)"
    );
    let dlq = w.dead_letters(1).await;
    assert_eq!(dlq.len(), 1);
    assert_dead_letter_shape(&dlq[0]);
    assert_eq!(dlq[0].json()["imageBuildVersionArn"], stuck);
    assert_eq!(dlq[0].json()["retryable"], true);
    assert_eq!(dlq[0].json()["attempts"], 3);
    assert_eq!(dlq[0].json()["source"]["type"], "direct");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_configuration_value_fails_init_with_configuration_error() {
    // GIVEN MAX_CONCURRENCY is not a number
    let mut w = World::start(Setup::default().env("MAX_CONCURRENCY", "lots")).await;

    // WHEN the function starts
    let err = w.runtime.init_error(Duration::from_secs(20)).await;

    // THEN it reports an init error of type ConfigurationError naming the variable, and exits
    let err = err.expect("the function reports POST /runtime/init/error");
    assert_eq!(
        err.error_type.as_deref(),
        Some("ConfigurationError"),
        "{err:?}"
    );
    assert!(
        err.error_message
            .as_deref()
            .unwrap_or_default()
            .contains("MAX_CONCURRENCY"),
        "{err:?}"
    );
    let status = w.function.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| !s.success()),
        "the process exits with a failure: {status:?}"
    );
    assert!(w.emu.calls().is_empty());
}

// ---------------------------------------------------------------------------------------
// Through cargo-lambda
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_cargo_lambda_watch_an_invocation_deletes_the_image() {
    // GIVEN `cargo lambda watch --only-lambda-apis`, the function connected to it (with the
    // account allow-list set: cargo-lambda's invoked-function ARN names no account), and an
    // image in the emulator
    let image = arn("via-cargo-lambda", 1);
    let w = World::start(Setup::default().seed([image.clone()])).await;
    let cl = CargoLambda::start();
    let env = w.function_env(
        &cl.runtime_api(),
        &[("ALLOWED_ACCOUNT_IDS".to_string(), ACCOUNT.to_string())],
    );
    let function = spawn_function(&env);
    let event_file =
        std::env::temp_dir().join(format!("e2e-cargo-lambda-{}.json", fastrand::u64(..)));
    std::fs::write(
        &event_file,
        json!({"imageBuildVersionArn": image}).to_string(),
    )
    .unwrap();

    // WHEN `cargo lambda invoke _` sends a direct invocation
    let (ok, output) = tokio::task::spawn_blocking({
        let path = event_file.clone();
        move || {
            let out = cl.invoke(&path, Duration::from_secs(60));
            drop(cl);
            out
        }
    })
    .await
    .unwrap();
    let _ = std::fs::remove_file(&event_file);

    // THEN the report says deleted and the image is gone
    let logs = function.output();
    assert!(
        ok,
        "cargo lambda invoke failed:\n{output}\nfunction:\n{logs}"
    );
    let report: Value = serde_json::from_str(output.trim())
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {output}"));
    assert_eq!(
        result_for(&report, &image)["status"],
        "deleted",
        "{report:#}\nfunction:\n{logs}"
    );
    assert!(!w.emu.image_exists(&image));
}
