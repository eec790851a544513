//! Deleting what DeleteImage leaves behind (AMIs, their snapshots, ECR images): handler +
//! engine tests with in-memory fakes of EC2 and ECR (and of Image Builder and the DLQ).
//! Each test ends with the one-rule check where an ARN could go astray.

use imagebuilder_reaper::config::Config;
use imagebuilder_reaper::error::ReaperError;
use imagebuilder_reaper::outcome::Status;
use imagebuilder_reaper::output_resources::entry::{ResourceKind, ResourceStatus};
use imagebuilder_reaper::output_resources::mode::Mode;
use imagebuilder_reaper::ports::CallError;
use imagebuilder_reaper::ports::{OutputAmi, OutputContainer, OutputResources};
use serde_json::{json, Value};

use crate::support::constants::{ACCOUNT, OTHER_ACCOUNT, REQUEST_ID};
use crate::support::fakes::{DlqMode, Reply};
use crate::support::fixtures::sqs_event;
use crate::support::harness::{config, Harness};

const IMAGE: &str = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/1";
const URI: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:1.0.0-1";

/// The in-memory configuration, deleting the output resources `mode` names.
fn cleanup(mode: Mode) -> Config {
    Config {
        delete_output_resources: mode,
        ..config()
    }
}

/// A harness whose image (ARN [`IMAGE`]) has ami-1 (us-east-1, snap-1 + snap-2), ami-2
/// (eu-west-1, snap-3) and one ECR image; GetImage lists all three.
fn with_standard_image(config: Config, dlq: Option<DlqMode>) -> Harness {
    let w = Harness::new(config, dlq);
    w.ec2
        .ami("us-east-1", "ami-1", ACCOUNT, &["snap-1", "snap-2"])
        .ami("eu-west-1", "ami-2", ACCOUNT, &["snap-3"]);
    w.ecr.image("us-east-1", ACCOUNT, "web", "1.0.0-1");
    w.images.output_resources(
        IMAGE,
        OutputResources {
            amis: vec![
                ami("us-east-1", "ami-1", ACCOUNT),
                ami("eu-west-1", "ami-2", ACCOUNT),
            ],
            containers: vec![OutputContainer {
                region: Some("us-east-1".into()),
                image_uris: vec![URI.into()],
            }],
        },
    );
    w
}

fn delete_image_called(w: &Harness) -> bool {
    w.log().iter().any(|l| l.starts_with("DeleteImage"))
}

fn ami(region: &str, id: &str, account: &str) -> OutputAmi {
    OutputAmi {
        region: Some(region.into()),
        image_id: Some(id.into()),
        account_id: Some(account.into()),
    }
}

fn direct(extra: Value) -> Value {
    let mut v = json!({"imageBuildVersionArn": IMAGE});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    v
}

fn retryable(code: &str) -> CallError {
    CallError::retryable(code, format!("scripted {code}"))
}

// -------------------------------------------------------------------------------------
// Tests
// -------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn full_cleanup_deletes_every_piece_in_its_own_region_and_delete_image_last() {
    // GIVEN an image with two AMIs in two regions (three snapshots) and an ECR image
    let w = with_standard_image(cleanup(Mode::All), Some(DlqMode::Up));
    // WHEN it is named
    let h = w.run(&direct(json!({}))).await;
    // THEN every piece is gone and reported deleted, the AMI before its snapshots
    use ResourceStatus::*;
    assert_eq!(
        h.pieces(IMAGE),
        [
            ("ami-1".into(), Deleted),
            ("snap-1".into(), Deleted),
            ("snap-2".into(), Deleted),
            ("ami-2".into(), Deleted),
            ("snap-3".into(), Deleted),
            (URI.into(), Deleted),
        ]
    );
    assert!(!w.ec2.registered("ami-1") && !w.ec2.registered("ami-2"));
    assert!(!w.ec2.snapshot_exists("snap-1") && !w.ec2.snapshot_exists("snap-3"));
    assert!(!w.ecr.exists("web", "1.0.0-1"));
    // AND the image itself is deleted, by the very last call
    assert_eq!(h.entry(IMAGE).status, Status::Deleted);
    assert!(w.images.is_deleted(IMAGE));
    assert_eq!(w.log().last().unwrap(), &format!("DeleteImage {IMAGE}"));
    assert_eq!(w.log().first().unwrap(), &format!("GetImage {IMAGE}"));
    // AND the report carries them in camelCase
    let json: Value = serde_json::from_str(&h.report().to_json(5_000_000)).unwrap();
    let entries = &json["results"][0]["outputResources"];
    assert_eq!(entries.as_array().unwrap().len(), 6);
    assert_eq!(entries[1]["type"], "snapshot");
    assert_eq!(entries[1]["amiId"], "ami-1");
    assert_eq!(entries[3]["region"], "eu-west-1");
    assert_eq!(entries[5]["type"], "containerImage");
    assert_eq!(entries[5]["status"], "deleted");
    w.assert_accounted(&[(REQUEST_ID, IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_still_in_use_by_its_just_deregistered_ami_is_retried_and_deleted() {
    // GIVEN EC2 still reports snap-2 in use by its own AMI twice after DeregisterImage
    let w = with_standard_image(cleanup(Mode::Amis), Some(DlqMode::Up));
    w.ec2.lagging("snap-2", 2);
    // WHEN the image is deleted with its AMIs
    let h = w.run(&direct(json!({}))).await;
    // THEN the snapshot is retried until it goes, and the image is deleted
    let r = h.entry(IMAGE);
    let snap2 = r
        .output_resources
        .iter()
        .find(|e| e.id == "snap-2")
        .unwrap();
    assert_eq!(snap2.status, ResourceStatus::Deleted, "{snap2:?}");
    assert!(!w.ec2.snapshot_exists("snap-2"));
    assert_eq!(r.status, Status::Deleted);
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_its_own_ami_keeps_in_use_fails_retryably_and_keeps_the_image() {
    // GIVEN EC2 keeps reporting snap-2 in use by its own, deregistered AMI
    let w = with_standard_image(cleanup(Mode::Amis), Some(DlqMode::Up));
    w.ec2.lagging("snap-2", 100);
    // WHEN the image is deleted with its AMIs
    let h = w.run(&direct(json!({}))).await;
    // THEN the snapshot is not orphaned as skipped: it fails retryably, and DeleteImage
    // waits for a later attempt that can still find it through GetImage
    let r = h.entry(IMAGE);
    let snap2 = r
        .output_resources
        .iter()
        .find(|e| e.id == "snap-2")
        .unwrap();
    assert_eq!(snap2.status, ResourceStatus::Failed, "{snap2:?}");
    assert_eq!(snap2.retryable, Some(true));
    assert_eq!((r.status, r.retryable), (Status::Failed, Some(true)));
    assert!(!w.images.is_deleted(IMAGE));
    w.assert_accounted(&[(REQUEST_ID, IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_used_by_another_ami_is_skipped_with_its_reason_and_does_not_block() {
    let w = with_standard_image(cleanup(Mode::Amis), Some(DlqMode::Up));
    w.ec2.shared("snap-2");
    let h = w.run(&direct(json!({}))).await;
    let r = h.entry(IMAGE);
    let snap2 = r
        .output_resources
        .iter()
        .find(|e| e.id == "snap-2")
        .unwrap();
    assert_eq!(snap2.status, ResourceStatus::SkippedInUse);
    assert!(snap2
        .message
        .as_deref()
        .unwrap()
        .contains("InvalidSnapshot.InUse"));
    assert_eq!(r.status, Status::Deleted);
    // mode `amis`: the container image is neither listed nor touched
    assert!(r
        .output_resources
        .iter()
        .all(|e| e.kind != ResourceKind::ContainerImage));
    assert!(w.ecr.exists("web", "1.0.0-1") && w.ecr.calls() == 0);
    w.assert_accounted(&[(REQUEST_ID, IMAGE)], &h);
}

fn foreign_world(require_complete: bool) -> Harness {
    let w = Harness::new(
        Config {
            require_complete_cleanup: require_complete,
            ..cleanup(Mode::All)
        },
        Some(DlqMode::Up),
    );
    w.ec2.ami("us-east-1", "ami-1", ACCOUNT, &["snap-1"]);
    w.images.output_resources(
        IMAGE,
        OutputResources {
            amis: vec![
                ami("us-east-1", "ami-1", ACCOUNT),
                ami("us-east-1", "ami-9", OTHER_ACCOUNT),
            ],
            containers: vec![],
        },
    );
    w
}

#[tokio::test(start_paused = true)]
async fn a_foreign_account_ami_is_not_touched_and_does_not_block_by_default() {
    let w = foreign_world(false);
    let h = w.run(&direct(json!({}))).await;
    let foreign = h
        .entry(IMAGE)
        .output_resources
        .iter()
        .find(|e| e.id == "ami-9")
        .unwrap()
        .clone();
    assert_eq!(foreign.status, ResourceStatus::SkippedForeignAccount);
    assert_eq!(foreign.account_id.as_deref(), Some(OTHER_ACCOUNT));
    assert!(
        !w.log().iter().any(|l| l.contains("ami-9")),
        "no call names it"
    );
    assert_eq!(h.entry(IMAGE).status, Status::Deleted);
    w.assert_accounted(&[(REQUEST_ID, IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn with_require_complete_cleanup_a_foreign_ami_blocks_delete_image_permanently() {
    let w = foreign_world(true);
    let h = w.run(&direct(json!({}))).await;
    let r = h.entry(IMAGE);
    // THEN what could be deleted is, but the image stays and the ARN is dead-lettered
    assert!(!w.ec2.registered("ami-1"));
    assert!(!delete_image_called(&w));
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.error_code.as_deref(), Some("IncompleteCleanup"));
    assert_eq!(r.retryable, Some(false));
    assert!(r.message.as_deref().unwrap().contains("ami-9"));
    let dl = w.dead_letters();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].body["errorCode"], "IncompleteCleanup");
    w.assert_accounted(&[(REQUEST_ID, IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn ecr_throttling_past_max_attempts_hands_an_sqs_record_back_without_delete_image() {
    // GIVEN ECR throttles every call
    let w = with_standard_image(cleanup(Mode::All), Some(DlqMode::Up));
    w.ecr.fail("web", 100, retryable("ThrottlingException"));
    // WHEN the image arrives from SQS
    let h = w.run(&sqs_event(&[("m-1", IMAGE)])).await;
    // THEN ECR was tried MAX_ATTEMPTS times, DeleteImage never, and the record is handed back
    assert_eq!(w.ecr.calls(), 3);
    assert!(!delete_image_called(&w));
    let r = h.entry(IMAGE);
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.retryable, Some(true));
    assert_eq!(r.error_code.as_deref(), Some("ThrottlingException"));
    assert!(r
        .message
        .as_deref()
        .unwrap()
        .contains("DeleteImage was not called"));
    let batch: Vec<_> = h
        .report()
        .batch_item_failures
        .as_ref()
        .unwrap()
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(batch, ["m-1"]);
    assert!(w.dead_letters().is_empty());
    let container = r.output_resources.iter().find(|e| e.id == URI).unwrap();
    assert_eq!(container.status, ResourceStatus::Failed);
    assert_eq!(
        (container.retryable, container.attempts),
        (Some(true), Some(3))
    );
    w.assert_accounted(&[("m-1", IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn ecr_throttling_past_max_attempts_dead_letters_a_direct_invocation_as_retryable() {
    let w = with_standard_image(cleanup(Mode::All), Some(DlqMode::Up));
    w.ecr.fail("web", 100, retryable("ThrottlingException"));
    let h = w.run(&direct(json!({}))).await;
    assert!(!delete_image_called(&w));
    let dl = w.dead_letters();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].body["retryable"], true);
    assert_eq!(dl[0].body["imageBuildVersionArn"], IMAGE);
    w.assert_accounted(&[(REQUEST_ID, IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn without_a_dlq_a_retryable_cleanup_failure_fails_a_direct_invocation() {
    let w = with_standard_image(cleanup(Mode::All), None);
    w.ecr.fail("web", 100, retryable("ThrottlingException"));
    let h = w.run(&direct(json!({}))).await;
    assert!(matches!(
        h.result,
        Err(ReaperError::DeadLetterQueueUnavailable { .. })
    ));
    assert!(!delete_image_called(&w));
    w.assert_accounted(&[(REQUEST_ID, IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn a_throttle_that_clears_within_max_attempts_is_invisible() {
    let w = with_standard_image(cleanup(Mode::All), Some(DlqMode::Up));
    w.ecr.fail("web", 2, retryable("ThrottlingException"));
    w.ec2.fail(
        "DeleteSnapshot",
        "snap-1",
        1,
        retryable("RequestLimitExceeded"),
    );
    let h = w.run(&direct(json!({}))).await;
    assert_eq!(h.entry(IMAGE).status, Status::Deleted);
    assert!(h
        .pieces(IMAGE)
        .iter()
        .all(|(_, s)| *s == ResourceStatus::Deleted));
    w.assert_accounted(&[(REQUEST_ID, IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_a_partial_cleanup_finds_the_rest_and_completes_the_job() {
    // GIVEN snap-2 cannot be deleted on the first delivery (ami-1 already deregistered by then)
    let w = with_standard_image(cleanup(Mode::All), Some(DlqMode::Up));
    w.ec2
        .fail("DeleteSnapshot", "snap-2", 3, retryable("InternalError"));
    let first = w.run(&sqs_event(&[("m-1", IMAGE)])).await;
    assert_eq!(first.entry(IMAGE).status, Status::Failed);
    assert_eq!(first.entry(IMAGE).retryable, Some(true));
    assert!(!w.ec2.registered("ami-1") && w.ec2.snapshot_exists("snap-2"));
    assert!(!delete_image_called(&w));
    assert_eq!(
        first.report().batch_item_failures.as_ref().unwrap().len(),
        1
    );
    // WHEN SQS redelivers it
    let second = w.run(&sqs_event(&[("m-1", IMAGE)])).await;
    // THEN GetImage still names ami-1; it is gone, but the snapshot it left is found and deleted
    use ResourceStatus::*;
    assert_eq!(
        second.pieces(IMAGE),
        [
            ("ami-1".into(), AlreadyDeleted),
            ("snap-2".into(), Deleted),
            ("ami-2".into(), AlreadyDeleted),
            (URI.into(), AlreadyDeleted),
        ]
    );
    assert!(!w.ec2.snapshot_exists("snap-2"));
    assert_eq!(second.entry(IMAGE).status, Status::Deleted);
    assert!(second
        .report()
        .batch_item_failures
        .as_ref()
        .unwrap()
        .is_empty());
    w.assert_accounted(&[("m-1", IMAGE)], &second);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_ec2_error_dead_letters_the_arn_and_leaves_its_snapshots_for_later() {
    let w = with_standard_image(cleanup(Mode::Amis), Some(DlqMode::Up));
    w.ec2.fail(
        "DeregisterImage",
        "ami-1",
        1,
        CallError::permanent("UnauthorizedOperation", "not allowed"),
    );
    let h = w.run(&direct(json!({}))).await;
    let r = h.entry(IMAGE);
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.retryable, Some(false));
    assert_eq!(r.error_code.as_deref(), Some("UnauthorizedOperation"));
    use ResourceStatus::*;
    assert_eq!(
        h.pieces(IMAGE)[..3],
        [
            ("ami-1".into(), Failed),
            ("snap-1".into(), NotAttempted),
            ("snap-2".into(), NotAttempted),
        ]
    );
    assert!(!delete_image_called(&w));
    assert_eq!(w.dead_letters().len(), 1);
    w.assert_accounted(&[(REQUEST_ID, IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn dry_run_previews_exactly_what_would_be_deleted_and_deletes_nothing() {
    let w = with_standard_image(cleanup(Mode::All), Some(DlqMode::Up));
    let h = w.run(&direct(json!({"dryRun": true}))).await;
    use ResourceStatus::*;
    assert_eq!(
        h.pieces(IMAGE),
        [
            ("ami-1".into(), WouldDelete),
            ("snap-1".into(), WouldDelete),
            ("snap-2".into(), WouldDelete),
            ("ami-2".into(), WouldDelete),
            ("snap-3".into(), WouldDelete),
            (URI.into(), WouldDelete),
        ]
    );
    assert_eq!(h.entry(IMAGE).status, Status::WouldDelete);
    // Only reads happened (the in-use guard's and the tag resolution's included)
    for call in w.log() {
        assert!(
            call.starts_with("GetImage")
                || call.starts_with("DescribeImage")
                || call.starts_with("BatchGetImage"),
            "{call}"
        );
    }
    assert!(w.ec2.registered("ami-1") && w.ecr.exists("web", "1.0.0-1"));
    assert!(!w.images.is_deleted(IMAGE));
}

#[tokio::test(start_paused = true)]
async fn the_protect_tag_on_an_ami_protects_the_whole_image() {
    let mut cfg = cleanup(Mode::All);
    cfg.protect_tag_key = Some("keep".into());
    let w = with_standard_image(cfg, Some(DlqMode::Up));
    w.ec2.tag("ami-2", "keep");
    let h = w.run(&direct(json!({}))).await;
    let r = h.entry(IMAGE);
    assert_eq!(r.status, Status::Protected);
    assert!(r.message.as_deref().unwrap().contains("ami-2"));
    for call in w.log() {
        assert!(
            call.starts_with("GetImage") || call.starts_with("DescribeImages"),
            "nothing but reads: {call}"
        );
    }
    assert!(w.ec2.registered("ami-1") && w.ec2.snapshot_exists("snap-1"));
    w.assert_accounted(&[(REQUEST_ID, IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn the_invocation_can_ask_for_a_cleanup_the_configuration_does_not_do() {
    // GIVEN the default configuration (none) WHEN a direct invocation asks for `amis`
    let w = with_standard_image(cleanup(Mode::None), Some(DlqMode::Up));
    let h = w
        .run(&direct(json!({"deleteOutputResources": "amis"})))
        .await;
    // THEN the AMIs go, the container image stays
    assert!(!w.ec2.registered("ami-1"));
    assert!(w.ecr.exists("web", "1.0.0-1"));
    assert_eq!(h.entry(IMAGE).status, Status::Deleted);
    // AND it can also turn the configured cleanup off for one invocation
    let w = with_standard_image(cleanup(Mode::All), Some(DlqMode::Up));
    let h = w
        .run(&direct(json!({"deleteOutputResources": "none"})))
        .await;
    assert!(h.entry(IMAGE).output_resources.is_empty());
    assert!(w.ec2.registered("ami-1"));
    assert_eq!(
        w.log(),
        [format!("DeleteImage {IMAGE}")],
        "not even GetImage"
    );
}

#[tokio::test(start_paused = true)]
async fn a_bad_per_invocation_value_fails_the_invocation_naming_the_field() {
    let w = with_standard_image(cleanup(Mode::All), Some(DlqMode::Up));
    let h = w
        .run(&direct(json!({"deleteOutputResources": "snapshots"})))
        .await;
    match h.result {
        Err(ReaperError::InvalidEvent(m)) => {
            assert!(
                m.contains("deleteOutputResources") && m.contains("snapshots"),
                "{m}"
            );
            assert!(m.contains("none, amis, containers or all"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(w.log().is_empty(), "nothing was called");
}

#[tokio::test(start_paused = true)]
async fn an_image_already_gone_is_already_deleted_and_nothing_else_is_called() {
    let w = with_standard_image(cleanup(Mode::All), Some(DlqMode::Up));
    w.images.script_op("GetImage", IMAGE, [Reply::not_found()]);
    let h = w.run(&direct(json!({}))).await;
    assert_eq!(h.entry(IMAGE).status, Status::AlreadyDeleted);
    assert_eq!(w.log(), [format!("GetImage {IMAGE}")]);
    w.assert_accounted(&[(REQUEST_ID, IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn the_default_configuration_never_reads_the_image_or_touches_ec2() {
    let w = with_standard_image(cleanup(Mode::None), Some(DlqMode::Up));
    let h = w.run(&direct(json!({}))).await;
    assert_eq!(h.entry(IMAGE).status, Status::Deleted);
    assert_eq!(w.log(), [format!("DeleteImage {IMAGE}")]);
    let json = h.report().to_json(5_000_000);
    assert!(!json.contains("outputResources"), "{json}");
}
