//! The real SDK adapters over HTTP: Image Builder against the in-process emulator
//! (`ib-emulator`), SQS against a small SendMessageBatch stub. Checks the wire request,
//! region signing, the one error classification, and the engine's retry loop through the
//! real clients.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use ib_emulator::{Emulator, Faults, SeedImage, Step};
use imagebuilder_reaper::arn::{self, ImageArn};
use imagebuilder_reaper::aws::imagebuilder::ImageBuilder;
use imagebuilder_reaper::aws::sqs::SqsDeadLetters;
use imagebuilder_reaper::aws::{load_sdk_config, SdkOverrides};
use imagebuilder_reaper::config::Config;
use imagebuilder_reaper::error::ReaperError;
use imagebuilder_reaper::handler::Handler;
use imagebuilder_reaper::ports::{DeadLetterMessage, DeadLetterSink, ErrorClass, Images};
use imagebuilder_reaper::retry::Backoff;
use serde_json::{json, Value};

use crate::support::constants::{ACCOUNT, REGION, REQUEST_ID};
use crate::support::fixtures::arn_in;
use crate::support::harness::invocation;

fn parsed(s: &str) -> ImageArn {
    arn::parse(s).unwrap()
}

/// The SDK configuration exactly as the binary builds it, pointed at `endpoint`.
async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    load_sdk_config(SdkOverrides {
        endpoint_url: Some(endpoint.to_string()),
        credentials: Some(aws_sdk_imagebuilder::config::Credentials::new(
            "test", "test", None, None, "tests",
        )),
        region: Some(REGION.into()),
        ..SdkOverrides::default()
    })
    .await
}

async fn emulator() -> (Emulator, ImageBuilder) {
    let emu = Emulator::new(Faults::default());
    emu.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let images = ImageBuilder::new(&sdk(&emu.endpoint_url().unwrap()).await);
    (emu, images)
}

fn seed(emu: &Emulator, arns: &[&str]) {
    emu.seed(arns.iter().map(|a| SeedImage {
        arn: a.to_string(),
        ..Default::default()
    }));
}

#[tokio::test]
async fn delete_is_signed_for_each_arns_own_region() {
    // GIVEN images in two regions
    let (emu, images) = emulator().await;
    let east = arn_in("us-east-1", "web", 1);
    let west = arn_in("eu-west-1", "web", 1);
    seed(&emu, &[&east, &west]);
    // WHEN each is deleted
    let a = images.delete_image(&parsed(&east)).await.unwrap();
    let b = images.delete_image(&parsed(&west)).await.unwrap();
    // THEN DELETE /DeleteImage went out signed for imagebuilder in the ARN's region
    assert!(a.request_id.is_some() && b.request_id.is_some());
    let calls = emu.calls();
    assert_eq!(calls.len(), 2);
    for (call, (arn, region)) in calls
        .iter()
        .zip([(&east, "us-east-1"), (&west, "eu-west-1")])
    {
        assert_eq!(call.operation, "DeleteImage");
        assert_eq!(call.arn.as_deref(), Some(arn.as_str()));
        assert_eq!(call.region.as_deref(), Some(region));
        assert_eq!(call.service.as_deref(), Some("imagebuilder"));
        assert_eq!(call.status, 200);
    }
    assert!(!emu.image_exists(&east) && !emu.image_exists(&west));
}

#[tokio::test]
async fn every_modelled_error_lands_in_its_class() {
    let (emu, images) = emulator().await;
    let cases = [
        ("CallRateLimitExceededException", ErrorClass::Throttled),
        ("ServiceException", ErrorClass::Retryable),
        ("ServiceUnavailableException", ErrorClass::Retryable),
        ("ClientException", ErrorClass::Permanent),
        ("InvalidRequestException", ErrorClass::Permanent),
        ("ForbiddenException", ErrorClass::Permanent),
        ("ResourceDependencyException", ErrorClass::Permanent),
        ("ResourceNotFoundException", ErrorClass::NotFound),
    ];
    for (i, (code, class)) in cases.iter().enumerate() {
        let a = arn_in("us-east-1", "err", i as u32);
        seed(&emu, &[&a]);
        emu.script(&a, vec![Step::Error(code.to_string())]);
        let e = images.delete_image(&parsed(&a)).await.unwrap_err();
        assert_eq!(e.class, *class, "DeleteImage {code}");
        assert_eq!(e.code, *code);
        assert!(!e.message.is_empty());
        // GetImage is classified by the same function
        emu.script_op("GetImage", &a, vec![Step::Error(code.to_string())]);
        let e = images.get_image(&parsed(&a)).await.unwrap_err();
        assert_eq!(e.class, *class, "GetImage {code}");
    }
}

#[tokio::test]
async fn an_unknown_image_is_not_found_so_already_deleted() {
    let (_emu, images) = emulator().await;
    let e = images
        .delete_image(&parsed(&arn_in("us-east-1", "never", 1)))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::NotFound);
    assert_eq!(e.code, "ResourceNotFoundException");
}

#[tokio::test]
async fn connection_errors_are_retryable() {
    // GIVEN an endpoint nobody listens on
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let images = ImageBuilder::new(&sdk(&format!("http://127.0.0.1:{port}")).await);
    let e = images
        .delete_image(&parsed(&arn_in("us-east-1", "x", 1)))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Retryable, "{e:?}");
    assert_eq!(e.code, "DispatchFailure");
}

#[tokio::test]
async fn get_image_reads_the_tags() {
    let (emu, images) = emulator().await;
    let a = arn_in("us-west-2", "tagged", 1);
    emu.seed([SeedImage {
        arn: a.clone(),
        tags: BTreeMap::from([("keep".into(), "yes".into())]),
        ..Default::default()
    }]);
    let info = images.get_image(&parsed(&a)).await.unwrap();
    assert_eq!(info.tags.get("keep").map(String::as_str), Some("yes"));
    assert_eq!(emu.calls()[0].region.as_deref(), Some("us-west-2"));
}

fn fast_config(max_attempts: u32) -> Config {
    Config {
        max_attempts,
        backoff: Backoff {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(20),
        },
        ..Config::default()
    }
}

#[tokio::test]
async fn throttling_429_is_not_an_attempt_and_5xx_exhausts_max_attempts_through_the_real_client() {
    // GIVEN MAX_ATTEMPTS = 2: one ARN throttled 6 times then fine, one failing with 500
    let (emu, images) = emulator().await;
    let recovers = arn_in("us-east-1", "recovers", 1);
    let broken = arn_in("eu-central-1", "broken", 1);
    seed(&emu, &[&recovers, &broken]);
    let throttled = || Step::Error("CallRateLimitExceededException".into());
    let mut steps = vec![throttled(); 6];
    steps.push(Step::Ok);
    emu.script(&recovers, steps);
    // Scripts are consumed: more than MAX_ATTEMPTS.
    emu.script(&broken, vec![Step::Error("ServiceException".into()); 10]);
    let handler: Handler<_, SqsDeadLetters> = Handler::new(fast_config(2), images, None);
    // WHEN the handler runs with the real client
    let result = handler
        .handle(
            &json!([recovers, broken]),
            &invocation(Duration::from_secs(60)),
        )
        .await;
    // THEN the 429s do not count: the first is deleted on its 7th call, its first attempt
    let statuses = |a: &str| {
        emu.calls()
            .iter()
            .filter(|c| c.arn.as_deref() == Some(a))
            .map(|c| c.status)
            .collect::<Vec<_>>()
    };
    assert_eq!(statuses(&recovers), [429, 429, 429, 429, 429, 429, 200]);
    assert!(!emu.image_exists(&recovers));
    // AND the second failed retryably after exactly 2 calls (no hidden SDK retries)
    assert_eq!(statuses(&broken), [500, 500]);
    assert!(emu.image_exists(&broken));
    // AND with no DLQ configured, a direct invocation hands it back as the invocation error
    match result {
        Err(ReaperError::DeadLetterQueueUnavailable {
            not_dead_lettered, ..
        }) => {
            assert_eq!(not_dead_lettered, vec![broken.clone()])
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn protect_tag_through_the_real_client() {
    let (emu, images) = emulator().await;
    let (kept, gone) = (
        arn_in("us-east-1", "kept", 1),
        arn_in("us-east-1", "gone", 1),
    );
    emu.seed([SeedImage {
        arn: kept.clone(),
        tags: BTreeMap::from([("do-not-delete".into(), "".into())]),
        ..Default::default()
    }]);
    let cfg = Config {
        protect_tag_key: Some("do-not-delete".into()),
        ..fast_config(3)
    };
    let handler: Handler<_, SqsDeadLetters> = Handler::new(cfg, images, None);
    let report = handler
        .handle(&json!([kept, gone]), &invocation(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(report.summary.protected, 1);
    assert_eq!(report.summary.already_deleted, 1);
    assert!(emu.image_exists(&kept));
    assert!(emu.calls().iter().all(|c| c.operation == "GetImage"));
}

// -------------------------------------------------------------------------------------
// SQS SendMessageBatch (JSON protocol) against a stub
// -------------------------------------------------------------------------------------

#[derive(Default)]
struct SqsStub {
    requests: Mutex<Vec<(String, Value)>>,
    /// Entry ids to answer as failed.
    fail_ids: Mutex<Vec<String>>,
}

async fn start_sqs_stub(stub: Arc<SqsStub>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let stub = stub.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let stub = stub.clone();
                    async move {
                        let target = req
                            .headers()
                            .get("x-amz-target")
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let body: Value = serde_json::from_slice(&body).unwrap();
                        let fail = stub.fail_ids.lock().unwrap().clone();
                        let mut ok = Vec::new();
                        let mut failed = Vec::new();
                        for e in body["Entries"].as_array().unwrap() {
                            let id = e["Id"].as_str().unwrap().to_string();
                            if fail.contains(&id) {
                                failed.push(json!({"Id": id, "SenderFault": false, "Code": "InternalError", "Message": "try again"}));
                            } else {
                                ok.push(json!({"Id": id, "MessageId": format!("mid-{id}"), "MD5OfMessageBody": "00"}));
                            }
                        }
                        stub.requests.lock().unwrap().push((target, body));
                        let resp = json!({"Successful": ok, "Failed": failed}).to_string();
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/x-amz-json-1.0")
                                .body(Full::new(Bytes::from(resp)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn sqs_adapter_sends_bodies_with_the_error_code_attribute_and_reports_per_entry() {
    let stub = Arc::new(SqsStub::default());
    let endpoint = start_sqs_stub(stub.clone()).await;
    let queue = format!("{endpoint}/{ACCOUNT}/reaper-dlq");
    let sink = SqsDeadLetters::new(&sdk(&endpoint).await, queue.clone());
    *stub.fail_ids.lock().unwrap() = vec!["m1".into()];
    let msgs: Vec<DeadLetterMessage> = (0..3)
        .map(|i| DeadLetterMessage {
            id: format!("m{i}"),
            body: json!({"imageBuildVersionArn": arn_in("us-east-1", "x", i)}).to_string(),
            error_code: "ClientException".into(),
            dedup_key: format!("k{i}"),
        })
        .collect();
    let results = sink.send_batch(&msgs).await.unwrap();
    assert!(results[0].is_ok() && results[2].is_ok());
    let e = results[1].as_ref().unwrap_err();
    assert_eq!(
        (e.class, e.code.as_str()),
        (ErrorClass::Retryable, "InternalError")
    );
    let requests = stub.requests.lock().unwrap();
    let (target, body) = &requests[0];
    assert_eq!(target, "AmazonSQS.SendMessageBatch");
    assert_eq!(body["QueueUrl"], queue);
    assert_eq!(
        body["Entries"][0]["MessageAttributes"]["errorCode"],
        json!({"DataType": "String", "StringValue": "ClientException"})
    );
    assert_eq!(body["Entries"][2]["MessageBody"], msgs[2].body);
}

#[tokio::test]
async fn end_to_end_dead_letters_through_both_real_clients() {
    // GIVEN a permanent failure, the real Image Builder client and the real SQS client
    let (emu, images) = emulator().await;
    let stub = Arc::new(SqsStub::default());
    let endpoint = start_sqs_stub(stub.clone()).await;
    let a = arn_in("us-east-1", "dep", 1);
    seed(&emu, &[&a]);
    emu.script(&a, vec![Step::Error("ResourceDependencyException".into())]);
    let sqs_sdk = sdk(&endpoint).await;
    let sink = SqsDeadLetters::new(&sqs_sdk, format!("{endpoint}/{ACCOUNT}/dlq"));
    let cfg = Config {
        dead_letter_queue_url: Some(format!("{endpoint}/{ACCOUNT}/dlq")),
        ..fast_config(3)
    };
    let handler = Handler::new(cfg, images, Some(sink));
    let report = handler
        .handle(
            &json!({"imageBuildVersionArn": a}),
            &invocation(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(report.summary.dead_lettered, 1);
    let requests = stub.requests.lock().unwrap();
    let body: Value =
        serde_json::from_str(requests[0].1["Entries"][0]["MessageBody"].as_str().unwrap()).unwrap();
    assert_eq!(body["imageBuildVersionArn"], a);
    assert_eq!(body["errorCode"], "ResourceDependencyException");
    assert_eq!(body["retryable"], false);
    assert_eq!(body["source"], json!({"type": "direct", "id": REQUEST_ID}));
}
