//! Handler + engine tests with in-memory fakes (no network): every row and column of the
//! routing table, FIFO order, dedup, dry run, the protect tag, the deadline, retries,
//! the report budget. Every test ends with the one-rule check (`assert_accounted`): each
//! named item ends in exactly one place.

use std::collections::HashMap;
use std::time::Duration;

use imagebuilder_reaper::config::Config;
use imagebuilder_reaper::engine::Invocation;
use imagebuilder_reaper::error::{ReaperError, ERROR_TYPES};
use imagebuilder_reaper::outcome::Status;
use imagebuilder_reaper::ports::ErrorClass;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::support::constants::{REQUEST_ID, STATUSES};
use crate::support::fakes::{DlqMode, FakeDlq, Reply};
use crate::support::fixtures::{arn, eventbridge_event, fifo_event, fixture, sqs_event};
use crate::support::harness::{config, from_source, invocation, Harness};

const NOT_AN_ARN: &str = "arn:aws:ec2:us-east-1::image/ami-0abcdef1234567890";

/// The strings of a direct invocation's `imageBuildVersionArns`.
fn arns_named_by(event: &Value) -> Vec<String> {
    event["imageBuildVersionArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

// -------------------------------------------------------------------------------------
// The routing table: every invocation kind × failure kind × DLQ state
// -------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Permanent,
    Rejected,
    RetryableExhausted,
    NotAttempted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dlq {
    Ok,
    PartialFailure,
    Down,
    NotConfigured,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqs,
    SqsFifo,
    EventBridge,
    Direct,
    StepFunctionsBatch,
}

#[derive(Debug, PartialEq, Eq)]
enum Place {
    DeadLettered,
    HandedBack,
}

/// , written out independently of the implementation.
fn expected_place(kind: Kind, failure: Failure, dlq: Dlq) -> Place {
    let sqs = matches!(kind, Kind::Sqs | Kind::SqsFifo);
    let needs_retry = matches!(failure, Failure::RetryableExhausted | Failure::NotAttempted);
    match (sqs, needs_retry, dlq) {
        (true, true, _) => Place::HandedBack,
        (_, _, Dlq::Ok) => Place::DeadLettered,
        _ => Place::HandedBack,
    }
}

#[tokio::test(start_paused = true)]
async fn routing_table_every_kind_failure_and_dlq_state() {
    let kinds = [
        Kind::Sqs,
        Kind::SqsFifo,
        Kind::EventBridge,
        Kind::Direct,
        Kind::StepFunctionsBatch,
    ];
    let failures = [
        Failure::Permanent,
        Failure::Rejected,
        Failure::RetryableExhausted,
        Failure::NotAttempted,
    ];
    let dlqs = [Dlq::Ok, Dlq::PartialFailure, Dlq::Down, Dlq::NotConfigured];
    for kind in kinds {
        for failure in failures {
            for dlq in dlqs {
                routing_case(kind, failure, dlq).await;
            }
        }
    }
}

async fn routing_case(kind: Kind, failure: Failure, dlq_state: Dlq) {
    let case = format!("{kind:?} × {failure:?} × {dlq_state:?}");
    // GIVEN a good ARN (named first) and a failing item in the same unit
    let good = arn("good", 1);
    let bad = match failure {
        Failure::Rejected => NOT_AN_ARN.to_string(),
        _ => arn("bad", 2),
    };
    let later = arn("later", 3); // FIFO only: a later record of the same group
    let mut cfg = config();
    cfg.max_concurrency = 1;
    let dlq_mode = match dlq_state {
        Dlq::Ok => Some(DlqMode::Up),
        Dlq::PartialFailure => Some(DlqMode::Refuse(bad.clone())),
        Dlq::Down => Some(DlqMode::Down),
        Dlq::NotConfigured => None,
    };
    let w = Harness::new(cfg, dlq_mode);
    match failure {
        Failure::Permanent => {
            w.images.script(&bad, [Reply::permanent()]);
        }
        Failure::RetryableExhausted => {
            w.images.script(&bad, [Reply::unavailable()]);
        }
        // The good ARN's call takes past the deadline margin, so `bad` never starts.
        Failure::NotAttempted => {
            w.images.latency(&good, Duration::from_secs(8));
        }
        Failure::Rejected => {}
    }
    let deadline = Duration::from_secs(10); // margin 3 s: nothing starts after 7 s
    let (event, source, items): (Value, &str, Vec<(&str, &str)>) = match kind {
        Kind::Sqs => {
            let body = json!([good, bad]).to_string();
            (
                sqs_event(&[("m1", &body)]),
                "m1",
                vec![("m1", &good), ("m1", &bad)],
            )
        }
        Kind::SqsFifo => {
            let body = json!([good, bad]).to_string();
            (
                fifo_event(&[("m1", "g", &body), ("m2", "g", &later)]),
                "m1",
                vec![("m1", &good), ("m1", &bad), ("m2", &later)],
            )
        }
        Kind::EventBridge => (
            eventbridge_event("ev-1", &[&good, &bad]),
            "ev-1",
            vec![("ev-1", &good), ("ev-1", &bad)],
        ),
        Kind::Direct => (
            json!({"imageBuildVersionArns": [good, bad]}),
            REQUEST_ID,
            vec![(REQUEST_ID, &good), (REQUEST_ID, &bad)],
        ),
        Kind::StepFunctionsBatch => (
            json!({"Items": [good, {"imageBuildVersionArn": bad}], "BatchInput": {}}),
            REQUEST_ID,
            vec![(REQUEST_ID, &good), (REQUEST_ID, &bad)],
        ),
    };

    // WHEN the function handles it
    let started = Instant::now();
    let h = w.run_until(&event, deadline).await;

    // THEN nothing is lost
    w.assert_accounted(&items, &h);
    assert!(
        Instant::now() < started + deadline,
        "{case}: returned after the deadline"
    );
    // AND the good ARN is deleted
    assert!(w.images.is_deleted(&good), "{case}");
    if h.result.is_ok() {
        assert_eq!(h.status(&good), Status::Deleted, "{case}");
    }
    // AND the failing item has the status gives it: in the report when there is
    // one, and in every dead letter offered for it (the DLQ sees it even when it refuses it)
    let (expected_status, expected_code) = match failure {
        Failure::Permanent => (Status::Failed, "ResourceDependencyException"),
        Failure::RetryableExhausted => (Status::Failed, "ServiceUnavailableException"),
        Failure::Rejected => (Status::Rejected, "NotAnImageBuildVersionArn"),
        Failure::NotAttempted => (Status::NotAttempted, "DeadlineReached"),
    };
    if h.result.is_ok() {
        assert_eq!(h.status(&bad), expected_status, "{case}");
    }
    let sqs = matches!(kind, Kind::Sqs | Kind::SqsFifo);
    let needs_retry = matches!(failure, Failure::RetryableExhausted | Failure::NotAttempted);
    let offered: Vec<Value> = w
        .dlq
        .as_ref()
        .map(FakeDlq::offered)
        .unwrap_or_default()
        .into_iter()
        .filter(|b| b["imageBuildVersionArn"] == bad || b["input"] == bad)
        .collect();
    assert_eq!(
        !offered.is_empty(),
        dlq_state != Dlq::NotConfigured && !(sqs && needs_retry),
        "{case}: offered to the DLQ"
    );
    for body in &offered {
        assert_eq!(body["errorCode"], expected_code, "{case}");
    }
    let in_dlq: Vec<_> = w
        .dead_letters()
        .into_iter()
        .filter(|m| m.body["imageBuildVersionArn"] == bad || m.body["input"] == bad)
        .collect();
    match expected_place(kind, failure, dlq_state) {
        Place::DeadLettered => {
            assert_eq!(in_dlq.len(), 1, "{case}: one dead letter");
            let body = &in_dlq[0].body;
            assert_eq!(body["source"]["id"], source, "{case}");
            assert_eq!(body["retryable"], needs_retry, "{case}");
            assert_eq!(
                in_dlq[0].error_code_attribute,
                body["errorCode"].as_str().unwrap()
            );
            if sqs {
                assert!(h.batch_failures().is_empty(), "{case}: record not failed");
            } else {
                assert_eq!(h.report().summary.dead_lettered, 1, "{case}");
            }
        }
        Place::HandedBack => {
            assert!(in_dlq.is_empty(), "{case}: not in the DLQ");
            if sqs {
                let mut expected = vec!["m1".to_string()];
                if kind == Kind::SqsFifo {
                    expected.push("m2".into());
                }
                assert_eq!(h.batch_failures(), expected, "{case}");
            } else {
                match &h.result {
                    Err(
                        e @ ReaperError::DeadLetterQueueUnavailable {
                            not_dead_lettered, ..
                        },
                    ) => {
                        assert_eq!(e.error_type(), "DeadLetterQueueUnavailable");
                        assert_eq!(not_dead_lettered, &vec![bad.clone()], "{case}");
                        assert!(e.to_string().contains(&bad), "{case}: {e}");
                    }
                    other => panic!("{case}: expected DeadLetterQueueUnavailable, got {other:?}"),
                }
            }
        }
    }
    // FIFO: the later record of the group is processed only if the first was not handed back
    if kind == Kind::SqsFifo {
        let first_handed_back = expected_place(kind, failure, dlq_state) == Place::HandedBack;
        assert_eq!(
            w.images.calls_of("DeleteImage", &later),
            usize::from(!first_handed_back),
            "{case}"
        );
    }
    // Retries: exactly MAX_ATTEMPTS calls for the exhausted ARN, never one for the others
    let bad_calls = w.images.calls_of("DeleteImage", &bad);
    let want_calls = match failure {
        Failure::RetryableExhausted => 3,
        Failure::Permanent => 1,
        Failure::Rejected | Failure::NotAttempted => 0,
    };
    assert_eq!(bad_calls, want_calls, "{case}");
}

// -------------------------------------------------------------------------------------
// SQS FIFO
// -------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn fifo_group_is_short_circuited_after_a_hand_back_and_other_groups_go_on() {
    // GIVEN group A: r1 (unavailable for good), r2, r3; group B: r4
    let w = Harness::new(config(), Some(DlqMode::Up));
    let (a1, a2, a3, b1) = (arn("a", 1), arn("a", 2), arn("a", 3), arn("b", 1));
    w.images.script(&a1, [Reply::unavailable()]);
    let event = fifo_event(&[
        ("r1", "A", &a1),
        ("r2", "A", &a2),
        ("r4", "B", &b1),
        ("r3", "A", &a3),
    ]);
    // WHEN handled
    let h = w.run(&event).await;
    // THEN r1 and every later record of A are handed back, in order; B is processed
    assert_eq!(h.batch_failures(), vec!["r1", "r2", "r3"]);
    assert_eq!(w.images.calls_of("DeleteImage", &a2), 0);
    assert_eq!(w.images.calls_of("DeleteImage", &a3), 0);
    assert_eq!(h.status(&b1), Status::Deleted);
    let blocked = h
        .report()
        .results
        .iter()
        .find(|r| r.status == Status::NotAttempted)
        .unwrap();
    assert_eq!(blocked.error_code.as_deref(), Some("FifoGroupBlocked"));
    assert!(
        blocked.message.as_ref().unwrap().contains("\"A\""),
        "names the group"
    );
    assert!(w.dead_letters().is_empty());
    w.assert_accounted(&[("r1", &a1), ("r2", &a2), ("r3", &a3), ("r4", &b1)], &h);
}

#[tokio::test(start_paused = true)]
async fn fifo_fixture_runs_groups_and_keeps_order_within_a_group() {
    let event = fixture("sqs-fifo.json");
    let w = Harness::new(config(), Some(DlqMode::Up));
    let first = &arn("web-server", 1);
    let second = &arn("web-server", 2);
    let other = &arn("base-ami", 1);
    w.images.script(
        first,
        [Reply::Err(
            ErrorClass::Retryable,
            "ServiceUnavailableException",
        )],
    );
    let h = w.run(&event).await;
    let ids: Vec<&str> = event["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["messageId"].as_str().unwrap())
        .collect();
    assert_eq!(
        h.batch_failures(),
        vec![ids[0].to_string(), ids[2].to_string()]
    );
    assert_eq!(w.images.calls_of("DeleteImage", second), 0);
    assert_eq!(h.status(other), Status::Deleted);
    w.assert_accounted(&[(ids[0], first), (ids[1], other), (ids[2], second)], &h);
}

#[tokio::test(start_paused = true)]
async fn fifo_blocked_record_whose_arn_was_settled_elsewhere_is_still_handed_back() {
    // GIVEN the same ARN in a blocked record of group A and in group B
    let w = Harness::new(config(), Some(DlqMode::Up));
    let (a1, shared) = (arn("a", 1), arn("shared", 1));
    w.images.script(&a1, [Reply::unavailable()]);
    let event = fifo_event(&[("r1", "A", &a1), ("r2", "A", &shared), ("r3", "B", &shared)]);
    let h = w.run(&event).await;
    // THEN it is deleted once (through B), and r2 is handed back to keep A's order
    assert_eq!(h.batch_failures(), vec!["r1", "r2"]);
    assert_eq!(w.images.calls_of("DeleteImage", &shared), 1);
    assert_eq!(h.status(&shared), Status::Deleted);
    w.assert_accounted(&[("r1", &a1), ("r2", &shared), ("r3", &shared)], &h);
}

// -------------------------------------------------------------------------------------
// Dedup
// -------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn the_same_arn_named_many_times_is_deleted_once_and_every_source_shares_the_outcome() {
    let w = Harness::new(config(), Some(DlqMode::Up));
    let (x, y) = (arn("x", 1), arn("y", 1));
    w.images.script(&y, [Reply::permanent()]);
    let both = json!([x, y, x]).to_string();
    let event = sqs_event(&[("m1", &x), ("m2", &both), ("m3", &y)]);
    let h = w.run(&event).await;
    assert_eq!(w.images.calls_of("DeleteImage", &x), 1);
    assert_eq!(w.images.calls_of("DeleteImage", &y), 1);
    // one report line per distinct ARN; each source that named y has its own dead letter
    assert_eq!(h.report().summary.requested, 2);
    let sources: Vec<String> = w
        .dead_letters()
        .iter()
        .map(|m| m.body["source"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sources.len(), 2);
    assert!(sources.contains(&"m2".to_string()) && sources.contains(&"m3".to_string()));
    assert!(h.batch_failures().is_empty());
    w.assert_accounted(&[("m1", &x), ("m2", &x), ("m2", &y), ("m3", &y)], &h);
}

#[tokio::test(start_paused = true)]
async fn dedup_scales_to_ten_thousand_arns() {
    // GIVEN 10,000 distinct ARNs, each named twice
    let arns: Vec<String> = (0..10_000).map(|i| arn("bulk", i)).collect();
    let mut all = arns.clone();
    all.extend(arns.iter().cloned());
    let mut cfg = config();
    cfg.max_concurrency = 64;
    let w = Harness::new(cfg, Some(DlqMode::Up));
    for a in &arns {
        w.images.latency(a, Duration::from_secs(1));
    }
    // WHEN one direct invocation names all 20,000
    let h = w.run(&json!({"imageBuildVersionArns": all})).await;
    // THEN each ARN is deleted by exactly one call
    assert_eq!(w.images.delete_calls(), 10_000);
    let mut calls: HashMap<String, usize> = HashMap::new();
    for (_, a) in w.images.calls() {
        *calls.entry(a).or_default() += 1;
    }
    assert_eq!(calls.len(), 10_000);
    assert!(calls.values().all(|n| *n == 1), "an ARN deleted twice");
    assert_eq!(h.report().summary.deleted, 10_000);
    // AND the calls ran MAX_CONCURRENCY at a time, not one by one
    assert_eq!(w.images.max_in_flight(), 64);
    // AND the report fits the response budget
    let json = h.report().to_json(5_000_000);
    assert!(json.len() < 5_000_000);
    w.assert_accounted(&from_source(REQUEST_ID, &arns), &h);
}

// -------------------------------------------------------------------------------------
// Dry run
// -------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn env_dry_run_decides_everything_and_deletes_nothing() {
    let w = Harness::new(
        Config {
            dry_run: true,
            ..config()
        },
        Some(DlqMode::Up),
    );
    let event = fixture("direct-mixed-invalid.json");
    let h = w.run(&event).await;
    assert_eq!(w.images.delete_calls(), 0);
    let r = h.report();
    assert!(r.summary.dry_run);
    assert_eq!(r.summary.would_delete, 1);
    assert_eq!(r.summary.rejected, 4);
    let items = arns_named_by(&event);
    w.assert_accounted(&from_source(REQUEST_ID, &items), &h);
}

#[tokio::test(start_paused = true)]
async fn per_invocation_dry_run_turns_it_on_and_false_never_turns_env_dry_run_off() {
    let x = arn("x", 1);
    // per invocation: on
    let w = Harness::new(config(), None);
    let h = w
        .run(&json!({"imageBuildVersionArn": x, "dryRun": true}))
        .await;
    assert_eq!(h.status(&x), Status::WouldDelete);
    assert!(h.report().summary.dry_run);
    assert_eq!(w.images.delete_calls(), 0);
    w.assert_accounted(&[(REQUEST_ID, &x)], &h);
    // env on, invocation says false: still a dry run
    let w = Harness::new(
        Config {
            dry_run: true,
            ..config()
        },
        None,
    );
    let h = w
        .run(&json!({"imageBuildVersionArn": x, "dryRun": false}))
        .await;
    assert_eq!(h.status(&x), Status::WouldDelete);
    assert_eq!(w.images.delete_calls(), 0);
    w.assert_accounted(&[(REQUEST_ID, &x)], &h);
}

#[tokio::test(start_paused = true)]
async fn step_functions_batch_input_dry_run_fixture() {
    let event = fixture("stepfunctions-itembatcher.json");
    let w = Harness::new(config(), Some(DlqMode::Up));
    let h = w.run(&event).await;
    assert_eq!(w.images.delete_calls(), 0);
    assert_eq!(h.report().summary.would_delete, 4);
    assert!(h.report().summary.dry_run);
    assert!(h.report().batch_item_failures.is_none());
}

#[tokio::test(start_paused = true)]
async fn dry_run_in_one_sqs_body_only_affects_that_record() {
    let (x, y) = (arn("x", 1), arn("y", 1));
    let w = Harness::new(config(), None);
    let dry = json!({"imageBuildVersionArn": x, "dryRun": true}).to_string();
    let h = w.run(&sqs_event(&[("m1", &dry), ("m2", &y)])).await;
    assert_eq!(h.status(&x), Status::WouldDelete);
    assert_eq!(h.status(&y), Status::Deleted);
    assert!(!h.report().summary.dry_run);
    w.assert_accounted(&[("m1", &x), ("m2", &y)], &h);
}

// -------------------------------------------------------------------------------------
// Protect tag
// -------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn protect_tag_skips_tagged_images_and_reads_each_image_first() {
    let cfg = Config {
        protect_tag_key: Some("keep".into()),
        ..config()
    };
    let w = Harness::new(cfg, Some(DlqMode::Up));
    let (kept, plain, gone, slow) = (
        arn("kept", 1),
        arn("plain", 1),
        arn("gone", 1),
        arn("slow", 1),
    );
    w.images
        .tag(&kept, "keep", "forever")
        .tag(&plain, "team", "web");
    w.images.script_op("GetImage", &gone, [Reply::not_found()]);
    w.images
        .script_op("GetImage", &slow, [Reply::throttled(), Reply::Ok]);
    let h = w.run(&json!([kept, plain, gone, slow])).await;
    assert_eq!(h.status(&kept), Status::Protected);
    assert_eq!(h.status(&plain), Status::Deleted);
    assert_eq!(h.status(&gone), Status::AlreadyDeleted);
    assert_eq!(h.status(&slow), Status::Deleted);
    assert_eq!(w.images.calls_of("DeleteImage", &kept), 0);
    assert_eq!(w.images.calls_of("DeleteImage", &gone), 0);
    assert_eq!(w.images.calls_of("GetImage", &slow), 2);
    let kept_record = h
        .report()
        .results
        .iter()
        .find(|r| r.status == Status::Protected)
        .unwrap();
    assert!(kept_record
        .message
        .as_ref()
        .unwrap()
        .contains("keep=forever"));
    w.assert_accounted(
        &[
            (REQUEST_ID, &kept),
            (REQUEST_ID, &plain),
            (REQUEST_ID, &gone),
            (REQUEST_ID, &slow),
        ],
        &h,
    );
}

#[tokio::test(start_paused = true)]
async fn protect_tag_read_failure_is_routed_like_a_delete_failure() {
    let cfg = Config {
        protect_tag_key: Some("keep".into()),
        ..config()
    };
    let w = Harness::new(cfg, Some(DlqMode::Up));
    let x = arn("x", 1);
    w.images.script_op(
        "GetImage",
        &x,
        [Reply::Err(ErrorClass::Permanent, "ForbiddenException")],
    );
    let h = w.run(&sqs_event(&[("m1", &x)])).await;
    assert_eq!(h.status(&x), Status::Failed);
    assert_eq!(w.images.calls_of("DeleteImage", &x), 0);
    let dl = w.dead_letters();
    assert_eq!(dl[0].body["errorCode"], "ForbiddenException");
    assert!(dl[0].body["message"]
        .as_str()
        .unwrap()
        .starts_with("GetImage"));
    w.assert_accounted(&[("m1", &x)], &h);
}

// -------------------------------------------------------------------------------------
// Deadline, retries, concurrency
// -------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn near_the_deadline_no_new_call_starts_and_the_invocation_returns_in_time() {
    // GIVEN 20 ARNs, 2 at a time, 1 s per call, 10 s to live, 3 s margin
    let mut cfg = config();
    cfg.max_concurrency = 2;
    let w = Harness::new(cfg, Some(DlqMode::Up));
    let arns: Vec<String> = (0..20).map(|i| arn("slow", i)).collect();
    for a in &arns {
        w.images.latency(a, Duration::from_secs(1));
    }
    let started = Instant::now();
    let h = w.run_until(&json!(arns), Duration::from_secs(10)).await;
    // THEN calls started before 7 s finish; the rest are notAttempted and dead-lettered
    let r = h.report();
    assert_eq!(r.summary.deleted, 14);
    assert_eq!(r.summary.not_attempted, 6);
    assert_eq!(w.images.delete_calls(), 14);
    assert!(Instant::now() < started + Duration::from_secs(10));
    let dl = w.dead_letters();
    assert_eq!(dl.len(), 6);
    assert!(dl
        .iter()
        .all(|m| m.body["errorCode"] == "DeadlineReached" && m.body["retryable"] == true));
    w.assert_accounted(&from_source(REQUEST_ID, &arns), &h);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_call_is_abandoned_before_the_deadline_and_handed_back() {
    let w = Harness::new(config(), None);
    let x = arn("hang", 1);
    w.images.script(&x, [Reply::Hang]);
    let started = Instant::now();
    let h = w
        .run_until(&sqs_event(&[("m1", &x)]), Duration::from_secs(10))
        .await;
    assert!(Instant::now() <= started + Duration::from_millis(8_500));
    let rec = &h.report().results[0];
    assert_eq!(rec.status, Status::Failed);
    assert_eq!(rec.retryable, Some(true));
    assert_eq!(rec.error_code.as_deref(), Some("Timeout"));
    assert_eq!(h.batch_failures(), vec!["m1"]);
    w.assert_accounted(&[("m1", &x)], &h);
}

#[tokio::test(start_paused = true)]
async fn backoff_never_sleeps_across_the_deadline() {
    // GIVEN an ARN failing with 5xx forever, 20 attempts allowed, 5 s to live
    let w = Harness::new(
        Config {
            max_attempts: 20,
            ..config()
        },
        None,
    );
    let x = arn("x", 1);
    w.images.script(&x, [Reply::unavailable()]);
    let started = Instant::now();
    let h = w
        .run_until(&sqs_event(&[("m1", &x)]), Duration::from_secs(5))
        .await;
    // THEN it stops retrying before the margin, with fewer than 20 attempts, and hands back
    assert!(
        Instant::now() < started + Duration::from_secs(2),
        "no attempt after deadline − margin"
    );
    let rec = &h.report().results[0];
    assert!(rec.attempts.is_some_and(|n| n < 20), "{rec:?}");
    assert!(rec.message.as_ref().unwrap().contains("deadline"));
    assert_eq!(h.batch_failures(), vec!["m1"]);
    w.assert_accounted(&[("m1", &x)], &h);
}

#[tokio::test(start_paused = true)]
async fn throttling_429_is_not_an_attempt_and_5xx_exhausts_max_attempts() {
    // GIVEN MAX_ATTEMPTS=5, 30 s to live, a DLQ; one ARN throttled 7 times then fine, one
    // throttled for good, one failing with 5xx for good
    let w = Harness::new(
        Config {
            max_attempts: 5,
            ..config()
        },
        Some(DlqMode::Up),
    );
    let (recovers, never, broken) = (arn("recovers", 1), arn("never", 1), arn("broken", 1));
    let mut replies = vec![Reply::throttled(); 7];
    replies.push(Reply::Ok);
    w.images.script(&recovers, replies);
    w.images.script(&never, [Reply::throttled()]);
    w.images.script(&broken, [Reply::unavailable()]);
    // WHEN a direct invocation names all three
    let h = w
        .run_until(&json!([recovers, never, broken]), Duration::from_secs(30))
        .await;
    // THEN the first is deleted on its first attempt, its 7 throttles counted apart
    let entry = |a: &str| h.entry(a).clone();
    let r = entry(&recovers);
    assert_eq!(r.status, Status::Deleted);
    assert_eq!((r.attempts, r.throttled), (Some(1), Some(7)));
    assert_eq!(w.images.calls_of("DeleteImage", &recovers), 8);
    // AND the one throttled for good is tried until the deadline: not attempted, retryable,
    // far more calls than MAX_ATTEMPTS and none of them an attempt
    let n = entry(&never);
    assert_eq!(n.status, Status::NotAttempted, "{n:?}");
    assert_eq!(n.error_code.as_deref(), Some("DeadlineReached"));
    assert_eq!((n.retryable, n.attempts), (Some(true), None));
    let never_calls = w.images.calls_of("DeleteImage", &never);
    assert!(never_calls > 5, "{never_calls}");
    assert_eq!(n.throttled, Some(never_calls as u32));
    // AND the 5xx one spends exactly MAX_ATTEMPTS calls
    let b = entry(&broken);
    assert_eq!(b.status, Status::Failed);
    assert_eq!(b.attempts, Some(5));
    assert_eq!(w.images.calls_of("DeleteImage", &broken), 5);
    // AND the summary counts throttled calls, not ARNs; both failures are dead-lettered
    assert_eq!(
        h.report().summary.throttled,
        7 + never_calls as u64,
        "{:?}",
        h.report().summary
    );
    assert_eq!(w.dead_letters().len(), 2);
    w.assert_accounted(
        &[
            (REQUEST_ID, &recovers),
            (REQUEST_ID, &never),
            (REQUEST_ID, &broken),
        ],
        &h,
    );
}

#[tokio::test(start_paused = true)]
async fn at_most_max_concurrency_calls_are_in_flight() {
    let mut cfg = config();
    cfg.max_concurrency = 4;
    let w = Harness::new(cfg, None);
    let arns: Vec<String> = (0..40).map(|i| arn("c", i)).collect();
    for a in &arns {
        w.images.latency(a, Duration::from_millis(100));
    }
    let h = w.run(&json!(arns)).await;
    assert_eq!(w.images.max_in_flight(), 4);
    assert_eq!(h.report().summary.deleted, 40);
}

#[tokio::test(start_paused = true)]
async fn not_found_is_already_deleted_and_needs_nothing() {
    let w = Harness::new(config(), None);
    let x = arn("x", 1);
    w.images.script(&x, [Reply::not_found()]);
    let h = w.run(&eventbridge_event("ev-1", &[&x])).await;
    assert_eq!(h.status(&x), Status::AlreadyDeleted);
    assert!(h.result.is_ok());
    w.assert_accounted(&[("ev-1", &x)], &h);
}

// -------------------------------------------------------------------------------------
// Rejections, poison records, guards
// -------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn sqs_poison_records_are_dead_lettered_and_never_block_the_batch() {
    let event = fixture("sqs-poison.json");
    let w = Harness::new(config(), Some(DlqMode::Up));
    let h = w.run(&event).await;
    assert!(h.batch_failures().is_empty());
    let r = h.report();
    assert_eq!(r.summary.deleted, 2);
    assert_eq!(r.summary.rejected, 3);
    let dl = w.dead_letters();
    assert_eq!(dl.len(), 3);
    for m in &dl {
        assert!(m.body.get("input").is_some());
        assert!(m.body.get("imageBuildVersionArn").is_none());
    }
    // each record's item: the ARN it names, or (poison) the raw body as the rejected input
    let records = event["Records"].as_array().unwrap();
    let id = |i: usize| records[i]["messageId"].as_str().unwrap();
    let body = |i: usize| records[i]["body"].as_str().unwrap();
    let second = "arn:aws:imagebuilder:us-east-1:123456789012:image/web-server/1.3.0/2";
    w.assert_accounted(
        &[
            (id(0), body(0)),
            (id(1), body(1)),
            (id(2), body(2)),
            (id(3), body(3)),
            (id(4), second),
        ],
        &h,
    );
}

#[tokio::test(start_paused = true)]
async fn every_rejection_code_is_dead_lettered_with_its_reason() {
    let event = fixture("direct-mixed-invalid.json");
    let w = Harness::new(config(), Some(DlqMode::Up));
    let h = w.run(&event).await;
    let codes: Vec<String> = w
        .dead_letters()
        .iter()
        .map(|m| m.body["errorCode"].as_str().unwrap().to_string())
        .collect();
    for code in [
        "ImageVersionArnNotSupported",
        "NotAnImageBuildVersionArn",
        "PartitionMismatch",
        "AccountNotAllowed",
    ] {
        assert!(codes.contains(&code.to_string()), "{code} in {codes:?}");
    }
    assert_eq!(w.images.delete_calls(), 1);
    let items = arns_named_by(&event);
    w.assert_accounted(&from_source(REQUEST_ID, &items), &h);
}

#[tokio::test(start_paused = true)]
async fn unknown_own_account_rejects_everything_with_a_reason() {
    let w = Harness::new(config(), Some(DlqMode::Up));
    let x = arn("x", 1);
    let inv = Invocation {
        invoked_function_arn: String::new(),
        ..invocation(Duration::from_secs(60))
    };
    let h = w.run_as(&json!([x]), &inv).await;
    assert_eq!(h.status(&x), Status::Rejected);
    let dl = w.dead_letters();
    assert_eq!(dl[0].body["errorCode"], "AccountNotAllowed");
    assert!(dl[0].body["message"]
        .as_str()
        .unwrap()
        .contains("ALLOWED_ACCOUNT_IDS"));
    assert_eq!(w.images.delete_calls(), 0);
    w.assert_accounted(&[(REQUEST_ID, &x)], &h);
}

#[tokio::test(start_paused = true)]
async fn regions_not_allowed_are_rejected() {
    let cfg = Config {
        allowed_regions: imagebuilder_reaper::arn::AllowList::Only(vec!["eu-west-1".into()]),
        ..config()
    };
    let w = Harness::new(cfg, Some(DlqMode::Up));
    let x = arn("x", 1);
    let h = w.run(&json!([x])).await;
    assert_eq!(w.dead_letters()[0].body["errorCode"], "RegionNotAllowed");
    w.assert_accounted(&[(REQUEST_ID, &x)], &h);
}

// -------------------------------------------------------------------------------------
// Dead-letter queue behaviour
// -------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn dead_letters_go_in_batches_of_at_most_ten() {
    let w = Harness::new(config(), Some(DlqMode::Up));
    let arns: Vec<String> = (0..25).map(|i| arn("dep", i)).collect();
    for a in &arns {
        w.images.script(a, [Reply::permanent()]);
    }
    let h = w.run(&json!(arns)).await;
    let mut sizes = w.dlq.as_ref().unwrap().batch_sizes();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![5, 10, 10]);
    assert_eq!(h.report().summary.dead_lettered, 25);
    w.assert_accounted(&from_source(REQUEST_ID, &arns), &h);
}

#[tokio::test(start_paused = true)]
async fn a_partially_failed_batch_is_retried_entry_by_entry() {
    let w = Harness::new(config(), Some(DlqMode::FlakyBatches));
    let arns: Vec<String> = (0..3).map(|i| arn("dep", i)).collect();
    for a in &arns {
        w.images.script(a, [Reply::permanent()]);
    }
    let h = w.run(&sqs_event(&[("m1", &json!(arns).to_string())])).await;
    assert_eq!(w.dlq.as_ref().unwrap().batch_sizes(), vec![3, 1, 1, 1]);
    assert_eq!(w.dead_letters().len(), 3);
    assert!(h.batch_failures().is_empty());
    w.assert_accounted(&from_source("m1", &arns), &h);
}

#[tokio::test(start_paused = true)]
async fn dead_letter_body_is_a_valid_input_for_a_redrive() {
    let w = Harness::new(config(), Some(DlqMode::Up));
    let x = arn("x", 1);
    w.images.script(&x, [Reply::permanent()]);
    let h = w.run(&json!({"imageBuildVersionArn": x})).await;
    w.assert_accounted(&[(REQUEST_ID, &x)], &h);
    let body = w.dead_letters()[0].body.clone();
    assert_eq!(body["imageBuildVersionArn"], x);
    assert_eq!(body["source"], json!({"type": "direct", "id": REQUEST_ID}));
    assert!(body["failedAt"].as_str().unwrap().ends_with('Z'));
    humantime::parse_rfc3339(body["failedAt"].as_str().unwrap()).unwrap();
    // WHEN the DLQ message is redriven into the work queue and the image is now gone
    let w2 = Harness::new(config(), Some(DlqMode::Up));
    w2.images.script(&x, [Reply::not_found()]);
    let h2 = w2
        .run(&sqs_event(&[("redrive-1", &body.to_string())]))
        .await;
    assert_eq!(h2.status(&x), Status::AlreadyDeleted);
    w2.assert_accounted(&[("redrive-1", &x)], &h2);
}

#[tokio::test(start_paused = true)]
async fn dlq_unavailable_error_counts_and_lists_what_was_not_dead_lettered() {
    let w = Harness::new(config(), Some(DlqMode::Down));
    let arns: Vec<String> = (0..30).map(|i| arn("dep", i)).collect();
    for a in &arns {
        w.images.script(a, [Reply::permanent()]);
    }
    let h = w
        .run(&eventbridge_event(
            "ev-9",
            &arns.iter().map(String::as_str).collect::<Vec<_>>(),
        ))
        .await;
    let err = h.result.as_ref().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("30 item(s) could not be dead-lettered"),
        "{msg}"
    );
    assert!(msg.contains("and 10 more"), "{msg}");
    let diag: lambda_runtime::Diagnostic = err.clone().into();
    assert_eq!(diag.error_type, "DeadLetterQueueUnavailable");
    w.assert_accounted(&from_source("ev-9", &arns), &h);
}

// -------------------------------------------------------------------------------------
// Report and errors
// -------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn past_the_budget_the_report_drops_successes_and_keeps_failures() {
    let cfg = Config {
        report_budget_bytes: 4_000,
        ..config()
    };
    let w = Harness::new(cfg, None);
    let mut records = Vec::new();
    let arns: Vec<String> = (0..200).map(|i| arn("ok", i)).collect();
    let bad = arn("bad", 1);
    w.images.script(&bad, [Reply::unavailable()]);
    records.push(("m-bad".to_string(), bad.clone()));
    for (i, a) in arns.iter().enumerate() {
        records.push((format!("m{i}"), a.clone()));
    }
    let recs: Vec<(&str, &str)> = records
        .iter()
        .map(|(i, b)| (i.as_str(), b.as_str()))
        .collect();
    let h = w.run(&sqs_event(&recs)).await;
    let json: Value = serde_json::from_str(&h.report().to_json(4_000)).unwrap();
    assert_eq!(json["resultsTruncated"], true);
    assert_eq!(json["results"].as_array().unwrap().len(), 1);
    assert_eq!(json["results"][0]["imageBuildVersionArn"], bad);
    assert_eq!(json["summary"]["deleted"], 200);
    assert_eq!(
        json["batchItemFailures"],
        json!([{"itemIdentifier": "m-bad"}])
    );
    w.assert_accounted(&recs, &h);
}

#[tokio::test(start_paused = true)]
async fn report_shape_for_sqs_and_for_other_invocations() {
    let w = Harness::new(config(), None);
    let x = arn("x", 1);
    let h = w.run(&sqs_event(&[("m1", &x)])).await;
    let v: Value = serde_json::from_str(&h.report().to_json(usize::MAX)).unwrap();
    assert_eq!(v["batchItemFailures"], json!([]));
    assert_eq!(
        v["results"][0],
        json!({"imageBuildVersionArn": x, "status": "deleted", "requestId": "del-1", "attempts": 1})
    );
    let h = w.run(&json!([arn("y", 2)])).await;
    let v: Value = serde_json::from_str(&h.report().to_json(usize::MAX)).unwrap();
    assert!(v.get("batchItemFailures").is_none());
    for key in STATUSES
        .iter()
        .copied()
        .chain(["requested", "deadLettered", "dryRun"])
    {
        assert!(v["summary"].get(key).is_some(), "summary.{key}");
    }
}

#[tokio::test(start_paused = true)]
async fn undecodable_invocations_fail_with_invalid_event() {
    let w = Harness::new(config(), Some(DlqMode::Up));
    for name in ["invalid-not-an-event.json", "invalid-string.json"] {
        let h = w.run(&fixture(name)).await;
        let err = h.result.unwrap_err();
        assert_eq!(err.error_type(), "InvalidEvent", "{name}");
        assert!(err.to_string().contains("expected"), "{name}: {err}");
    }
    assert!(w.dead_letters().is_empty());
    assert_eq!(w.images.delete_calls(), 0);
}

#[test]
fn error_types_are_the_stable_names() {
    assert_eq!(
        ERROR_TYPES,
        [
            "InvalidEvent",
            "DeadLetterQueueUnavailable",
            "ConfigurationError",
            "ListingFailed",
            "PlanStoreUnavailable"
        ]
    );
    let e = ReaperError::from(
        Config::from_lookup(|k| (k == "MAX_ATTEMPTS").then(|| "0".to_string())).unwrap_err(),
    );
    let d: lambda_runtime::Diagnostic = e.into();
    assert_eq!(d.error_type, "ConfigurationError");
    assert!(d.error_message.contains("MAX_ATTEMPTS"));
}

#[tokio::test(start_paused = true)]
async fn fixtures_of_every_shape_are_fully_accounted_for() {
    for name in [
        "direct-array.json",
        "direct-single.json",
        "direct-multiple.json",
        "eventbridge-custom.json",
        "eventbridge-imagebuilder-state-change.json",
        "sqs-bare-arn.json",
        "sqs-json-array.json",
        "sqs-json-object.json",
        "sqs-sns-envelope.json",
        "sqs-eventbridge-event.json",
        "sqs-dead-letter-redrive.json",
        "direct-dry-run.json",
    ] {
        // GIVEN a fixture of every shape, and every image present
        let w = Harness::new(config(), Some(DlqMode::Up));
        // WHEN handled
        let h = w.run(&fixture(name)).await;
        // THEN every item the report names is done, dead-lettered (the DLQ holds it), or
        // handed back
        assert!(h.result.is_ok(), "{name}: {:?}", h.result);
        let report = h.report();
        assert!(!report.results.is_empty(), "{name}");
        let dead_letters = w.dead_letters();
        let records_failed = report
            .batch_item_failures
            .as_ref()
            .is_some_and(|f| !f.is_empty());
        for r in &report.results {
            let item = match (&r.image_build_version_arn, &r.input) {
                (Some(a), _) => Value::String(a.clone()),
                (None, Some(input)) => input.clone(),
                (None, None) => panic!("{name}: a result naming nothing: {r:?}"),
            };
            let gone = item.as_str().is_some_and(|a| w.images.is_gone(a));
            let in_dlq = dead_letters
                .iter()
                .any(|m| m.body["imageBuildVersionArn"] == item || m.body["input"] == item);
            assert!(
                r.status.is_success() || gone || in_dlq || (r.handed_back && records_failed),
                "{name}: {r:?}"
            );
        }
    }
}
