//! The in-use guard over in-memory fakes: an image whose AMI is referenced, protected from
//! deregistration or recently launched is kept (`inUse`), an unanswered check keeps it too
//! (a retryable failure), and an unused AMI is deleted as before — with one batched check
//! per region, and no usage read of its own when DescribeImages already answered it.

use std::time::{SystemTime, UNIX_EPOCH};

use imagebuilder_reaper::config::Config;
use imagebuilder_reaper::outcome::Status;
use imagebuilder_reaper::output_resources::mode::Mode;
use imagebuilder_reaper::ports::{CallError, OutputAmi, OutputContainer, OutputResources};
use imagebuilder_reaper::retention::rfc3339::{format_ms, DAY_MS};
use serde_json::{json, Value};

use crate::support::constants::{ACCOUNT, REQUEST_ID};
use crate::support::fakes::DlqMode;
use crate::support::fixtures::sqs_event;
use crate::support::harness::{config, Harness};

const IMAGE: &str = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/1";
const URI: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:1.0.0-1";
const INSTANCE: &str = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0";

fn cleanup(grace_days: u32) -> Config {
    Config {
        delete_output_resources: Mode::All,
        in_use_grace_days: grace_days,
        ..config()
    }
}

fn ami(region: &str, id: &str) -> OutputAmi {
    OutputAmi {
        region: Some(region.into()),
        image_id: Some(id.into()),
        account_id: Some(ACCOUNT.into()),
    }
}

/// An image with 11 AMIs in us-east-1 (ami-00 … ami-10) and one in eu-west-1 (ami-eu): more
/// than one DescribeImageReferences call in a region; the AMI ids, in that order.
fn eleven_and_one() -> (Harness, Vec<String>) {
    let mut amis: Vec<(&str, String)> = (0..11)
        .map(|i| ("us-east-1", format!("ami-{i:02}")))
        .collect();
    amis.push(("eu-west-1", "ami-eu".into()));
    let refs: Vec<(&str, &str)> = amis.iter().map(|(r, id)| (*r, id.as_str())).collect();
    let w = world(cleanup(7), &refs);
    (w, amis.into_iter().map(|(_, id)| id).collect())
}

/// An image with `amis` (each `(region, id)` with one snapshot) and one ECR image.
fn world(config: Config, amis: &[(&str, &str)]) -> Harness {
    let w = Harness::new(config, Some(DlqMode::Up));
    for (region, id) in amis {
        w.ec2.ami(region, id, ACCOUNT, &[&format!("snap-{id}")]);
    }
    w.ecr.image("us-east-1", ACCOUNT, "web", "1.0.0-1");
    w.images.output_resources(
        IMAGE,
        OutputResources {
            amis: amis.iter().map(|(r, id)| ami(r, id)).collect(),
            containers: vec![OutputContainer {
                region: Some("us-east-1".into()),
                image_uris: vec![URI.into()],
            }],
        },
    );
    w
}

fn direct(dry_run: bool) -> Value {
    json!({"imageBuildVersionArn": IMAGE, "dryRun": dry_run})
}

/// `days` ago, as EC2 writes `lastLaunchedTime`.
fn days_ago(days: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    format_ms(now - days * DAY_MS)
}

/// Nothing but reads: no DeregisterImage, DeleteSnapshot, BatchDeleteImage or DeleteImage.
fn assert_nothing_deleted(w: &Harness) {
    for call in w.log() {
        assert!(
            !call.starts_with("Deregister")
                && !call.starts_with("DeleteSnapshot")
                && !call.starts_with("BatchDeleteImage")
                && !call.starts_with("DeleteImage"),
            "a deleting call was made: {call}"
        );
    }
    assert_eq!(w.ecr.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_ami_referenced_by_an_instance_keeps_the_whole_image_as_in_use() {
    // GIVEN an image whose AMI an instance uses
    let w = world(cleanup(7), &[("us-east-1", "ami-1")]);
    w.ec2.referenced_by("ami-1", "ec2:Instance", INSTANCE);
    // WHEN it is named
    let h = w.run(&direct(false)).await;
    // THEN it is inUse, with the reference, and nothing at all is deleted
    let r = h.entry(IMAGE);
    assert_eq!(r.status, Status::InUse);
    assert_eq!(r.references.len(), 1);
    assert_eq!(r.references[0].resource_type, "ec2:Instance");
    assert_eq!(r.references[0].arn, INSTANCE);
    assert!(r.message.as_deref().unwrap().contains("ami-1"));
    assert_nothing_deleted(&w);
    assert!(w.ec2.registered("ami-1") && w.ecr.exists("web", "1.0.0-1"));
    // AND it is done: counted, never dead-lettered, never handed back
    assert_eq!(h.report().summary.in_use, 1);
    assert!(w.dead_letters().is_empty());
    let json: Value = serde_json::from_str(&h.report().to_json(5_000_000)).unwrap();
    assert_eq!(json["summary"]["inUse"], 1);
    assert_eq!(json["results"][0]["status"], "inUse");
    assert_eq!(
        json["results"][0]["references"],
        json!([{"resourceType": "ec2:Instance", "arn": INSTANCE}])
    );
    w.assert_accounted(&[(REQUEST_ID, IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn an_in_use_image_from_sqs_is_not_handed_back() {
    let w = world(cleanup(7), &[("us-east-1", "ami-1")]);
    w.ec2.referenced_by(
        "ami-1",
        "ec2:LaunchTemplate",
        "arn:aws:ec2:us-east-1:123456789012:launch-template/lt-1",
    );
    let h = w.run(&sqs_event(&[("m-1", IMAGE)])).await;
    assert_eq!(h.entry(IMAGE).status, Status::InUse);
    assert!(h.report().batch_item_failures.as_ref().unwrap().is_empty());
    assert!(w.dead_letters().is_empty());
    w.assert_accounted(&[("m-1", IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn deregistration_protection_keeps_the_image_with_the_reason() {
    let w = world(cleanup(7), &[("us-east-1", "ami-1")]);
    w.ec2.protect("ami-1");
    let h = w.run(&direct(false)).await;
    let r = h.entry(IMAGE);
    assert_eq!(r.status, Status::InUse);
    assert!(r.references.is_empty());
    assert!(r
        .message
        .as_deref()
        .unwrap()
        .contains("protected from deregistration"));
    assert_nothing_deleted(&w);
}

#[tokio::test(start_paused = true)]
async fn a_launch_within_the_grace_days_keeps_the_image_and_an_older_one_does_not() {
    // GIVEN an AMI launched 2 days ago, with 7 grace days
    let w = world(cleanup(7), &[("us-east-1", "ami-1")]);
    w.ec2.launched("ami-1", &days_ago(2));
    let h = w.run(&direct(false)).await;
    // THEN the image is kept, naming the grace period
    assert_eq!(h.entry(IMAGE).status, Status::InUse);
    assert!(h
        .entry(IMAGE)
        .message
        .as_deref()
        .unwrap()
        .contains("IN_USE_GRACE_DAYS (7 days)"));
    assert_nothing_deleted(&w);
    // GIVEN the same launch with 1 grace day WHEN named THEN it is deleted
    let w = world(cleanup(1), &[("us-east-1", "ami-1")]);
    w.ec2.launched("ami-1", &days_ago(2));
    let h = w.run(&direct(false)).await;
    assert_eq!(h.entry(IMAGE).status, Status::Deleted);
    assert!(!w.ec2.registered("ami-1"));
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_previews_in_use_with_the_references() {
    let w = world(cleanup(7), &[("us-east-1", "ami-1")]);
    w.ec2.referenced_by("ami-1", "ec2:Instance", INSTANCE);
    let h = w.run(&direct(true)).await;
    let r = h.entry(IMAGE);
    assert_eq!(r.status, Status::InUse);
    assert_eq!(r.references[0].arn, INSTANCE);
    assert_nothing_deleted(&w);
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_check_fails_closed_as_a_retryable_failure() {
    // GIVEN DescribeImageReferences keeps failing in us-east-1
    let w = world(cleanup(7), &[("us-east-1", "ami-1")]);
    w.ec2.fail(
        "DescribeImageReferences",
        "us-east-1",
        100,
        CallError::retryable("RequestLimitExceeded", "slow down"),
    );
    // WHEN the image arrives from SQS
    let h = w.run(&sqs_event(&[("m-1", IMAGE)])).await;
    // THEN the ARN is a retryable failure with the cause, handed back, nothing deleted
    let r = h.entry(IMAGE);
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.retryable, Some(true));
    assert_eq!(r.error_code.as_deref(), Some("RequestLimitExceeded"));
    assert_eq!(h.batch_failures(), ["m-1"]);
    assert_nothing_deleted(&w);
    assert!(w.ec2.registered("ami-1"));
    w.assert_accounted(&[("m-1", IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn even_a_permanent_check_error_fails_closed_as_retryable() {
    // GIVEN the usage read is refused (say, a missing permission)
    let w = world(cleanup(7), &[("us-east-1", "ami-1")]);
    w.ec2.fail(
        "DescribeImageUsage",
        "us-east-1",
        100,
        CallError::permanent("UnauthorizedOperation", "not allowed"),
    );
    let h = w.run(&direct(false)).await;
    let r = h.entry(IMAGE);
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.retryable, Some(true));
    assert_eq!(r.error_code.as_deref(), Some("UnauthorizedOperation"));
    assert_nothing_deleted(&w);
    w.assert_accounted(&[(REQUEST_ID, IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn one_batched_check_per_region_at_most_ten_amis_per_reference_call() {
    // GIVEN 11 AMIs in us-east-1 and one in eu-west-1, none in use
    let (w, _) = eleven_and_one();
    // WHEN the image is deleted
    let h = w.run(&direct(false)).await;
    // THEN every AMI went, after one usage read per region and reference calls of ≤ 10
    assert_eq!(h.entry(IMAGE).status, Status::Deleted);
    let usage_reads = w
        .log()
        .iter()
        .filter(|l| l.starts_with("DescribeImageUsage"))
        .count();
    assert_eq!(usage_reads, 2);
    let mut batches: Vec<usize> = w.ec2.reference_batches().iter().map(Vec::len).collect();
    batches.sort();
    assert_eq!(batches, [1, 1, 10]);
    // AND the check ran before the first deregistration
    let log = w.log();
    let first_deregister = log
        .iter()
        .position(|l| l.starts_with("Deregister"))
        .unwrap();
    let last_check = log
        .iter()
        .rposition(|l| l.starts_with("DescribeImageReferences"))
        .unwrap();
    assert!(last_check < first_deregister, "{log:?}");
}

#[tokio::test(start_paused = true)]
async fn an_unused_ami_is_still_deleted() {
    let w = world(cleanup(7), &[("us-east-1", "ami-1")]);
    w.ec2.launched("ami-1", &days_ago(30));
    let h = w.run(&direct(false)).await;
    assert_eq!(h.entry(IMAGE).status, Status::Deleted);
    assert!(!w.ec2.registered("ami-1"));
    assert!(w.images.is_deleted(IMAGE));
    w.assert_accounted(&[(REQUEST_ID, IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn a_reference_to_one_of_two_amis_keeps_the_other_too() {
    let w = world(
        cleanup(7),
        &[("us-east-1", "ami-1"), ("eu-west-1", "ami-2")],
    );
    w.ec2.referenced_by(
        "ami-2",
        "ssm:Parameter",
        "arn:aws:ssm:eu-west-1:123456789012:parameter/golden",
    );
    let h = w.run(&direct(false)).await;
    assert_eq!(h.entry(IMAGE).status, Status::InUse);
    assert!(w.ec2.registered("ami-1") && w.ec2.registered("ami-2"));
    assert_nothing_deleted(&w);
}

#[tokio::test(start_paused = true)]
async fn a_throttled_check_is_waited_out_and_counted_in_the_arns_throttled() {
    // GIVEN EC2 throttles the reference check four times, then answers
    let w = world(cleanup(7), &[("us-east-1", "ami-1")]);
    w.ec2.fail(
        "DescribeImageReferences",
        "us-east-1",
        4,
        CallError::throttled("RequestLimitExceeded", "slow down"),
    );
    // WHEN the image is named
    let h = w.run(&direct(false)).await;
    // THEN throttling is no failed attempt: the image is deleted, and the report says how
    // often EC2 pushed back
    let r = h.entry(IMAGE);
    assert_eq!(r.status, Status::Deleted);
    assert_eq!(r.throttled, Some(4));
    w.assert_accounted(&[(REQUEST_ID, IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn when_describe_images_carries_protection_and_launch_the_guard_adds_only_reference_calls() {
    // GIVEN 11 AMIs in us-east-1 and one in eu-west-1, launched long ago, and EC2's
    // DescribeImages carrying protection and last launch
    let (w, amis) = eleven_and_one();
    w.ec2.describes_usage();
    for id in &amis {
        w.ec2.launched(id, &days_ago(30));
    }
    // WHEN the image is deleted
    let h = w.run(&direct(false)).await;
    // THEN every AMI went; each was read once (the cleanup's DescribeImages), the guard
    // asked only for references (≤ 10 AMIs per call) and read no usage of its own
    assert_eq!(h.entry(IMAGE).status, Status::Deleted);
    let log = w.log();
    let count = |op: &str| log.iter().filter(|l| l.starts_with(op)).count();
    assert_eq!(count("DescribeImages "), 12, "{log:?}");
    assert_eq!(count("DescribeImageUsage"), 0, "{log:?}");
    let mut batches: Vec<usize> = w.ec2.reference_batches().iter().map(Vec::len).collect();
    batches.sort();
    assert_eq!(batches, [1, 1, 10]);
}

#[tokio::test(start_paused = true)]
async fn protection_or_a_recent_launch_read_from_describe_images_keeps_the_image() {
    // GIVEN DescribeImages carrying protection on one image's AMI (launched long ago, so both
    // fields are there), a recent launch on another's
    let protected = world(cleanup(7), &[("us-east-1", "ami-1")]);
    protected
        .ec2
        .describes_usage()
        .protect("ami-1")
        .launched("ami-1", &days_ago(30));
    let launched = world(cleanup(7), &[("us-east-1", "ami-1")]);
    launched
        .ec2
        .describes_usage()
        .launched("ami-1", &days_ago(2));
    for (w, why) in [
        (protected, "protected from deregistration"),
        (launched, "IN_USE_GRACE_DAYS (7 days)"),
    ] {
        // WHEN each is named
        let h = w.run(&direct(false)).await;
        // THEN it is kept with the reason, nothing deleted, without a usage read of its own
        let r = h.entry(IMAGE);
        assert_eq!(r.status, Status::InUse);
        assert!(
            r.message.as_deref().unwrap().contains(why),
            "{:?}",
            r.message
        );
        assert_nothing_deleted(&w);
        assert!(!w.log().iter().any(|l| l.starts_with("DescribeImageUsage")));
    }
}
