//! Hardening rules through the whole handler, with in-memory fakes: options on every level
//! (a preview never becomes a delete), options in dead letters and their redrive, a
//! malformed region, a report that always fits, and payloads a JSON parser refuses
//! (through the real binary and an in-process Runtime API).

use std::time::Duration;

use imagebuilder_reaper::config::Config;
use imagebuilder_reaper::engine::Invocation;
use imagebuilder_reaper::error::ReaperError;
use imagebuilder_reaper::outcome::Status;
use imagebuilder_reaper::ports::ErrorClass;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::support::constants::{ACCOUNT, REQUEST_ID};
use crate::support::fakes::{DlqMode, Reply};
use crate::support::fixtures::{arn, sqs_event};
use crate::support::harness::{from_source, Harness, Outcome};
use crate::support::{process, runtime_api};

/// A harness with a working DLQ.
fn world(config: Config) -> Harness {
    Harness::new(config, Some(DlqMode::Up))
}

/// Runs `event` as the function `function_arn`.
async fn run_as(w: &Harness, function_arn: &str, event: &Value) -> Outcome {
    let invocation = Invocation {
        request_id: REQUEST_ID.into(),
        invoked_function_arn: function_arn.into(),
        deadline: Instant::now() + Duration::from_secs(900),
    };
    w.run_as(event, &invocation).await
}

fn dead_letters(w: &Harness) -> Vec<Value> {
    w.dead_letters().into_iter().map(|r| r.body).collect()
}

/// An SQS event of one record per body (`m-0`, `m-1`, …).
fn sqs_bodies(bodies: &[&str]) -> Value {
    let ids: Vec<String> = (0..bodies.len()).map(|i| format!("m-{i}")).collect();
    let records: Vec<(&str, &str)> = ids
        .iter()
        .map(String::as_str)
        .zip(bodies.iter().copied())
        .collect();
    sqs_event(&records)
}

fn invalid_event(h: &Outcome) -> &str {
    match &h.result {
        Err(ReaperError::InvalidEvent(m)) => m,
        other => panic!("expected InvalidEvent, got {other:?}"),
    }
}

fn rejection_code(h: &Outcome, input: &str) -> String {
    h.entry(input)
        .error_code
        .clone()
        .unwrap_or_else(|| panic!("no rejection for {input}"))
}

// ---------------------------------------------------------------------------------------
// Options on every level
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_dry_run_on_an_element_of_an_sqs_body_deletes_nothing() {
    // GIVEN an SQS body that is an array: one element asks for a dry run, one does not
    let w = world(Config::default());
    let (preview, real) = (arn("web", 1), arn("web", 2));
    let body = json!([{"imageBuildVersionArn": preview, "dryRun": true}, real]).to_string();

    // WHEN the batch is handled
    let h = w.run(&sqs_bodies(&[&body])).await;

    // THEN the element with dryRun is previewed, not deleted; the other one is deleted
    assert_eq!(h.status(&preview), Status::WouldDelete);
    assert!(!w.images.is_deleted(&preview));
    assert_eq!(w.images.calls_of("DeleteImage", &preview), 0);
    assert_eq!(h.status(&real), Status::Deleted);
    assert!(h.report().batch_item_failures.as_ref().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_on_an_element_of_a_direct_invocation_deletes_nothing() {
    let w = world(Config::default());
    let (preview, real) = (arn("web", 1), arn("web", 2));
    let event =
        json!({"imageBuildVersionArns": [{"imageBuildVersionArn": preview, "dryRun": true}, real]});
    let h = w.run(&event).await;
    assert_eq!(h.status(&preview), Status::WouldDelete);
    assert_eq!(h.status(&real), Status::Deleted);
    assert!(!h.report().summary.dry_run, "only part of it was a dry run");
    assert_eq!(w.images.delete_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_misspelt_or_mistyped_option_in_an_sqs_body_rejects_that_record_only() {
    // GIVEN three records: `dry_run`, `DryRun` on an element, `"dryRun": "true"` on an
    // element, and a fourth, plain record
    let w = world(Config::default());
    let (a, b, c, d) = (arn("a", 1), arn("b", 1), arn("c", 1), arn("d", 1));
    let bodies = [
        json!({"imageBuildVersionArn": a, "dry_run": true}).to_string(),
        json!([{"imageBuildVersionArn": b, "DryRun": true}]).to_string(),
        json!({"imageBuildVersionArns": [c, {"imageBuildVersionArn": d, "dryRun": "true"}]})
            .to_string(),
        arn("e", 1),
    ];
    let h = w
        .run(&sqs_bodies(&bodies.each_ref().map(String::as_str)))
        .await;

    // THEN nothing of the first three records is deleted: each is rejected InvalidMessage
    // whole, naming the option, and dead-lettered as sent
    for x in [&a, &b, &c, &d] {
        assert!(!w.images.is_deleted(x), "{x} must not be deleted");
    }
    let dead = dead_letters(&w);
    assert_eq!(dead.len(), 3, "{dead:#?}");
    for (m, (body, word)) in dead
        .iter()
        .zip(bodies.iter().zip(["dry_run", "DryRun", "dryRun"]))
    {
        assert_eq!(m["errorCode"], "InvalidMessage");
        assert_eq!(m["input"], serde_json::from_str::<Value>(body).unwrap());
        assert!(m["message"].as_str().unwrap().contains(word), "{m}");
    }
    // AND the batch goes on: the plain record is deleted, nothing is handed back
    assert!(w.images.is_deleted(&arn("e", 1)));
    assert!(h.report().batch_item_failures.as_ref().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_misspelt_or_mistyped_option_of_an_invocation_is_invalid_event() {
    let x = arn("web", 1);
    for event in [
        json!({"imageBuildVersionArns": [x], "DryRun": true}),
        json!({"imageBuildVersionArn": x, "dry-run": true}),
        json!({"imageBuildVersionArn": x, "delete_output_resources": "none"}),
        json!([{"imageBuildVersionArn": x, "dryRun": "true"}]),
        json!([{"imageBuildVersionArn": x, "dryrun": true}]),
        json!({"Items": [x], "BatchInput": {"DRY_RUN": true}}),
        json!({"Items": [{"imageBuildVersionArn": x, "deleteOutputResources": "everything"}]}),
        json!({"version": "0", "id": "e-1", "detail-type": "t", "source": "s",
               "detail": {"imageBuildVersionArns": [{"imageBuildVersionArn": x, "Dry_Run": true}]}}),
    ] {
        let w = world(Config::default());
        let h = w.run(&event).await;
        let m = invalid_event(&h);
        assert!(
            m.contains("dryRun") || m.contains("deleteOutputResources"),
            "{event}: {m}"
        );
        assert!(w.images.calls().is_empty(), "{event}: nothing is called");
    }
}

// ---------------------------------------------------------------------------------------
// Options in dead-letter messages
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_redriven_dry_run_stays_a_dry_run() {
    // GIVEN a dry-run request for an image of an account that is not allowed (yet)
    let foreign = "arn:aws:imagebuilder:us-east-1:111122223333:image/web/1.0.0/1";
    let w = world(Config::default());
    let body = json!({"imageBuildVersionArn": foreign, "dryRun": true}).to_string();
    let h = w.run(&sqs_bodies(&[&body])).await;
    assert_eq!(h.report().summary.rejected, 1);

    // THEN its dead letter carries the dry run
    let dead = dead_letters(&w);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["errorCode"], "AccountNotAllowed");
    assert_eq!(dead[0]["dryRun"], true, "{}", dead[0]);

    // WHEN the allow-list is fixed and the dead letter is redriven into the work queue
    let fixed = world(Config {
        allowed_accounts: imagebuilder_reaper::config::AccountPolicy::Allow(
            imagebuilder_reaper::arn::AllowList::Any,
        ),
        ..Config::default()
    });
    let h = fixed.run(&sqs_bodies(&[&dead[0].to_string()])).await;

    // THEN it is still a preview: nothing is deleted
    assert_eq!(h.status(foreign), Status::WouldDelete);
    assert_eq!(fixed.images.delete_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn dead_letters_carry_the_items_options_and_only_when_set() {
    // GIVEN a direct invocation naming output resources, with one bad and one foreign ARN
    let foreign = "arn:aws:imagebuilder:us-east-1:111122223333:image/web/1.0.0/1";
    let w = world(Config::default());
    let event = json!({"imageBuildVersionArns": ["not-an-arn", foreign],
                       "deleteOutputResources": "none"});
    w.run(&event).await;
    // THEN both dead letters say so, and none claims a dry run that was not asked for
    let dead = dead_letters(&w);
    assert_eq!(dead.len(), 2);
    for m in &dead {
        assert_eq!(m["deleteOutputResources"], "none", "{m}");
        assert!(m.get("dryRun").is_none(), "{m}");
    }
}

// ---------------------------------------------------------------------------------------
// Region syntax
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_malformed_region_is_rejected_before_any_call() {
    let w = world(Config::default());
    let bad: Vec<String> = ["US-EAST-1", "us_east_1", "useast1"]
        .iter()
        .map(|r| format!("arn:aws:imagebuilder:{r}:{ACCOUNT}:image/web/1.0.0/1"))
        .collect();
    let h = w.run(&json!({ "imageBuildVersionArns": bad })).await;
    for input in &bad {
        assert_eq!(rejection_code(&h, input), "RegionNotAllowed", "{input}");
    }
    assert!(w.images.calls().is_empty(), "{:?}", w.images.calls());
}

#[tokio::test(start_paused = true)]
async fn with_an_unknown_own_account_the_account_is_judged_before_the_region() {
    // GIVEN no ALLOWED_ACCOUNT_IDS and an invoked function ARN without an account
    let w = world(Config::default());
    let input = format!("arn:aws:imagebuilder:US-EAST-1:{ACCOUNT}:image/web/1.0.0/1");
    let h = run_as(
        &w,
        "arn:aws:lambda:us-east-1::function:reaper",
        &json!([input]),
    )
    .await;
    // THEN the contract's order: AccountNotAllowed comes before RegionNotAllowed
    assert_eq!(rejection_code(&h, &input), "AccountNotAllowed");
}

// ---------------------------------------------------------------------------------------
// The report always fits
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_body_of_sixty_thousand_items_still_gets_a_report_within_the_budget() {
    // GIVEN one SQS record whose 256 KiB body is an array of 60,000 short strings
    let config = Config::default();
    let budget = config.report_budget_bytes;
    let w = world(config);
    let items: Vec<String> = (0..60_000).map(|i| (i % 10).to_string()).collect();
    let body = serde_json::to_string(&items).unwrap();
    assert!(body.len() <= 256 * 1024);
    let h = w.run(&sqs_bodies(&[&body])).await;

    // WHEN the report is serialised
    let r = h.report();
    let json = r.to_json(budget);

    // THEN it fits, the counts stay, and it says how many entries were left out
    assert!(json.len() <= budget, "{} > {budget}", json.len());
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["summary"]["rejected"], 60_000);
    assert_eq!(v["resultsTruncated"], true);
    let kept = v["results"].as_array().unwrap().len();
    assert!(kept > 0);
    assert_eq!(v["resultsOmitted"], 60_000 - kept);
    assert_eq!(v["batchItemFailures"], json!([]));
}

// ---------------------------------------------------------------------------------------
// Payloads a parser refuses, through the real binary
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_a_json_parser_refuses_fail_the_invocation_with_invalid_event() {
    // GIVEN the function binary under an in-process Runtime API (no AWS call is needed)
    let api = runtime_api::RuntimeApi::start().await;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_imagebuilder-reaper"));
    cmd.env_clear().envs([
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("AWS_LAMBDA_RUNTIME_API", api.address()),
        ("AWS_LAMBDA_FUNCTION_NAME", "imagebuilder-reaper".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/imagebuilder-reaper".into(),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/01/01/[$LATEST]hardening".into(),
        ),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
    ]);
    let _function = process::Proc::spawn("imagebuilder-reaper", cmd);
    let deep = format!(
        "{}\"{}\"{}",
        "[".repeat(300),
        arn("web", 1),
        "]".repeat(300)
    );
    for (payload, named) in [
        (
            r#"{"imageBuildVersionArns": [1e400]}"#.to_string(),
            "number",
        ),
        (r#"[-1e999, "x"]"#.to_string(), "number"),
        (deep, "128"),
    ] {
        // WHEN invoked with JSON that a parser refuses
        let inv = api
            .invoke_raw(payload.clone().into(), Duration::from_secs(30))
            .await;
        // THEN the invocation fails with InvalidEvent, naming what is wrong
        let e = inv.error();
        assert_eq!(
            e.error_type.as_deref(),
            Some("InvalidEvent"),
            "{payload:.80}: {e:?}"
        );
        let message = e.error_message.as_deref().unwrap_or_default();
        assert!(message.contains(named), "{message}");
    }
    // AND the function is still serving: a plain invalid event is InvalidEvent too
    let inv = api.invoke(&json!(42), Duration::from_secs(30)).await;
    assert_eq!(inv.error().error_type.as_deref(), Some("InvalidEvent"));
}

// ---------------------------------------------------------------------------------------
// The deadline has room for the backlog
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_large_backlog_at_the_deadline_is_dead_lettered_in_time() {
    // GIVEN 5,000 ARNs whose DeleteImage takes 1 s, a DLQ answering in 50 ms, 10 s to live
    // (3 s margin, 8 calls in flight: most ARNs cannot be attempted)
    let w = world(Config::default());
    w.dlq
        .as_ref()
        .expect("a DLQ")
        .latency(Duration::from_millis(50));
    let arns: Vec<String> = (0..5_000).map(|i| arn("bulk", i)).collect();
    for a in &arns {
        w.images.latency(a, Duration::from_secs(1));
    }
    // WHEN invoked directly
    let event = json!({ "imageBuildVersionArns": arns });
    let h = w.run_until(&event, Duration::from_secs(10)).await;
    // THEN the invocation succeeds: every ARN is deleted or dead-lettered in time
    let summary = &h.report().summary;
    assert_eq!(
        summary.deleted + summary.dead_lettered,
        5_000,
        "{summary:?}"
    );
    assert!(summary.deleted > 0);
    w.assert_accounted(&from_source(REQUEST_ID, &arns), &h);
}

// ---------------------------------------------------------------------------------------
// The function's own credentials are a configuration problem, not the ARN's
// ---------------------------------------------------------------------------------------

fn expired_token() -> Reply {
    Reply::Err(ErrorClass::Configuration, "ExpiredTokenException")
}

#[tokio::test(start_paused = true)]
async fn expired_credentials_fail_a_direct_invocation_and_dead_letter_nothing() {
    // GIVEN Image Builder refuses the function's credentials
    let w = world(Config::default());
    let (a, b) = (arn("web", 1), arn("web", 2));
    w.images
        .script(&a, [expired_token()])
        .script(&b, [expired_token()]);
    // WHEN invoked directly
    let h = w.run(&json!({ "imageBuildVersionArns": [a, b] })).await;
    // THEN the invocation fails with ConfigurationError naming the cause, nothing is
    // dead-lettered, and nothing was retried
    match &h.result {
        Err(e) => {
            assert_eq!(e.error_type(), "ConfigurationError", "{e}");
            assert!(e.to_string().contains("ExpiredTokenException"), "{e}");
        }
        Ok(r) => panic!("expected ConfigurationError, got {r:?}"),
    }
    assert!(dead_letters(&w).is_empty());
    assert_eq!(w.images.calls_of("DeleteImage", &a), 1);
}

#[tokio::test(start_paused = true)]
async fn expired_credentials_hand_an_sqs_record_back_without_dead_lettering_it() {
    // GIVEN Image Builder refuses the function's credentials for the ARN of one record
    let w = world(Config::default());
    let (bad, good) = (arn("web", 1), arn("web", 2));
    w.images.script(&bad, [expired_token()]);
    // WHEN an SQS batch names it and another ARN
    let h = w.run(&sqs_bodies(&[&bad, &good])).await;
    // THEN its record is handed back, the other deleted, and nothing is dead-lettered
    assert_eq!(h.batch_failures(), vec!["m-0".to_string()]);
    assert_eq!(h.status(&bad), Status::Failed);
    assert_eq!(h.entry(&bad).retryable, Some(true));
    assert_eq!(h.status(&good), Status::Deleted);
    assert!(dead_letters(&w).is_empty());
}
