//! Container images by digest, never by tag: each listed tag is resolved (BatchGetImage)
//! and only the build's own digest is deleted; a tag a newer build has taken is left alone
//! (`skippedMovedTag`); a resolution that cannot be answered deletes nothing. Handler and
//! engine over the in-memory fakes.

use imagebuilder_reaper::config::Config;
use imagebuilder_reaper::outcome::Status;
use imagebuilder_reaper::output_resources::entry::ResourceStatus;
use imagebuilder_reaper::output_resources::mode::Mode;
use imagebuilder_reaper::ports::{CallError, OutputContainer, OutputResources};
use serde_json::json;

use crate::support::constants::{ACCOUNT, REQUEST_ID};
use crate::support::fakes::{fake_digest, DlqMode};
use crate::support::fixtures::sqs_event;
use crate::support::harness::{config, Harness};

const IMAGE: &str = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/1";
const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

fn uri(reference: &str) -> String {
    format!("{REGISTRY}/web{reference}")
}

fn containers(require_complete: bool) -> Config {
    Config {
        delete_output_resources: Mode::Containers,
        require_complete_cleanup: require_complete,
        ..config()
    }
}

/// A harness whose image [`IMAGE`] (build 1.0.0/1) pushed `web:1.0.0-1` and `web:latest`,
/// after which build 2 pushed `web:1.0.0-2` and took `latest`; GetImage of build 1 lists
/// `listed` (URI suffixes such as `:latest`).
fn moved_latest(config: Config, listed: &[&str]) -> Harness {
    let w = Harness::new(config, Some(DlqMode::Up));
    w.ecr
        .image("us-east-1", ACCOUNT, "web", "1.0.0-1")
        .retag("web", "latest", "1.0.0-1")
        .image("us-east-1", ACCOUNT, "web", "1.0.0-2")
        .retag("web", "latest", "1.0.0-2");
    lists(&w, IMAGE, listed);
    w
}

/// GetImage of `arn` lists these URIs (suffixes to `…/web`) as its container output.
fn lists(w: &Harness, arn: &str, listed: &[&str]) {
    w.images.output_resources(
        arn,
        OutputResources {
            amis: vec![],
            containers: vec![OutputContainer {
                region: Some("us-east-1".into()),
                image_uris: listed.iter().map(|r| uri(r)).collect(),
            }],
        },
    );
}

#[tokio::test(start_paused = true)]
async fn a_latest_tag_a_newer_build_took_is_left_alone_and_only_the_own_digest_is_deleted() {
    // GIVEN build 1 still lists `latest`, which build 2 has taken
    let w = moved_latest(containers(false), &[":1.0.0-1", ":latest"]);
    let own = fake_digest("web", "1.0.0-1");
    // WHEN build 1 is deleted
    let h = w.run(&json!({"imageBuildVersionArn": IMAGE})).await;
    // THEN its own image goes and `latest` is reported left alone, saying where it points
    use ResourceStatus::*;
    assert_eq!(
        h.pieces(IMAGE),
        [
            (uri(":1.0.0-1"), Deleted),
            (uri(":latest"), SkippedMovedTag)
        ]
    );
    let latest = &h.entry(IMAGE).output_resources[1];
    let newer = fake_digest("web", "1.0.0-2");
    assert!(
        latest
            .message
            .as_deref()
            .is_some_and(|m| m.contains(&newer)),
        "{latest:?}"
    );
    // AND ECR was asked to delete exactly one digest, never a tag
    assert_eq!(w.ecr.deleted_references(), [format!("@{own}")]);
    assert!(!w.ecr.has_digest("web", &own));
    assert_eq!(w.ecr.digest("web", "latest"), Some(newer.clone()));
    assert_eq!(w.ecr.digest("web", "1.0.0-2"), Some(newer));
    // AND the moved tag does not hold DeleteImage back
    assert_eq!(h.entry(IMAGE).status, Status::Deleted);
    assert!(w.images.is_deleted(IMAGE));
    w.assert_accounted(&[(REQUEST_ID, IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn a_moved_tag_is_not_left_on_purpose_so_a_complete_cleanup_still_deletes_the_image() {
    let w = moved_latest(containers(true), &[":1.0.0-1", ":latest"]);
    let h = w.run(&json!({"imageBuildVersionArn": IMAGE})).await;
    assert_eq!(h.entry(IMAGE).status, Status::Deleted);
    w.assert_accounted(&[(REQUEST_ID, IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_resolves_the_tags_and_previews_which_stay() {
    let w = moved_latest(containers(false), &[":1.0.0-1", ":latest"]);
    let h = w
        .run(&json!({"imageBuildVersionArn": IMAGE, "dryRun": true}))
        .await;
    use ResourceStatus::*;
    assert_eq!(
        h.pieces(IMAGE),
        [
            (uri(":1.0.0-1"), WouldDelete),
            (uri(":latest"), SkippedMovedTag)
        ]
    );
    assert_eq!((w.ecr.resolves(), w.ecr.calls()), (1, 0));
    assert!(w.ecr.exists("web", "1.0.0-1") && !w.images.is_deleted(IMAGE));
}

#[tokio::test(start_paused = true)]
async fn a_tag_still_naming_the_own_image_goes_with_it() {
    // GIVEN build 2's own record lists its version tag and `latest`, which still names it
    let w = moved_latest(containers(false), &[]);
    let build2 = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/2";
    lists(&w, build2, &[":1.0.0-2", ":latest"]);
    let h = w.run(&json!({"imageBuildVersionArn": build2})).await;
    let statuses: Vec<ResourceStatus> = h
        .entry(build2)
        .output_resources
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(statuses, [ResourceStatus::Deleted, ResourceStatus::Deleted]);
    assert!(!w.ecr.exists("web", "latest") && w.ecr.exists("web", "1.0.0-1"));
    assert_eq!(
        w.ecr.deleted_references(),
        [format!("@{}", fake_digest("web", "1.0.0-2"))]
    );
}

#[tokio::test(start_paused = true)]
async fn without_the_version_tag_a_listed_tag_cannot_be_proven_the_builds_and_is_left_alone() {
    // GIVEN build 1's version tag is gone, and GetImage lists only `latest` (build 2's now)
    let w = Harness::new(containers(false), Some(DlqMode::Up));
    w.ecr
        .image("us-east-1", ACCOUNT, "web", "1.0.0-2")
        .retag("web", "latest", "1.0.0-2");
    lists(&w, IMAGE, &[":latest"]);
    // WHEN build 1 is deleted
    let h = w.run(&json!({"imageBuildVersionArn": IMAGE})).await;
    // THEN `latest` is not touched, and nothing was sent to BatchDeleteImage
    assert_eq!(
        h.pieces(IMAGE),
        [(uri(":latest"), ResourceStatus::SkippedMovedTag)]
    );
    assert_eq!(w.ecr.calls(), 0);
    assert!(w.ecr.exists("web", "latest"));
    assert_eq!(h.entry(IMAGE).status, Status::Deleted);
}

#[tokio::test(start_paused = true)]
async fn a_listed_digest_is_deleted_as_it_is() {
    let own = fake_digest("web", "1.0.0-1");
    let w = moved_latest(containers(false), &[&format!("@{own}")]);
    let h = w.run(&json!({"imageBuildVersionArn": IMAGE})).await;
    assert_eq!(
        h.pieces(IMAGE),
        [(uri(&format!("@{own}")), ResourceStatus::Deleted)]
    );
    assert!(!w.ecr.has_digest("web", &own) && w.ecr.exists("web", "latest"));
}

#[tokio::test(start_paused = true)]
async fn tags_that_cannot_be_resolved_delete_nothing_and_hand_the_record_back() {
    // GIVEN ECR throttles every BatchGetImage
    let w = moved_latest(containers(false), &[":1.0.0-1", ":latest"]);
    w.ecr.fail_resolving(
        "web",
        100,
        CallError::retryable("ThrottlingException", "scripted"),
    );
    // WHEN the ARN arrives from SQS
    let h = w.run(&sqs_event(&[("m-1", IMAGE)])).await;
    // THEN nothing is deleted: no BatchDeleteImage, no DeleteImage; the record is retried
    assert_eq!((w.ecr.resolves(), w.ecr.calls()), (3, 0));
    let r = h.entry(IMAGE);
    assert_eq!((r.status, r.retryable), (Status::Failed, Some(true)));
    assert!(r
        .output_resources
        .iter()
        .all(|e| e.status == ResourceStatus::Failed && e.retryable == Some(true)));
    assert!(!w.images.is_deleted(IMAGE) && w.ecr.exists("web", "1.0.0-1"));
    w.assert_accounted(&[("m-1", IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn a_repository_that_is_gone_took_its_images_with_it() {
    let w = moved_latest(containers(false), &[]);
    let elsewhere = "arn:aws:imagebuilder:us-east-1:123456789012:image/api/1.0.0/1";
    let gone = format!("{REGISTRY}/api:1.0.0-1");
    w.images.output_resources(
        elsewhere,
        OutputResources {
            amis: vec![],
            containers: vec![OutputContainer {
                region: None,
                image_uris: vec![gone.clone()],
            }],
        },
    );
    let h = w.run(&json!({"imageBuildVersionArn": elsewhere})).await;
    let r = h.entry(elsewhere);
    assert_eq!(r.output_resources[0].status, ResourceStatus::AlreadyDeleted);
    assert_eq!(r.status, Status::Deleted);
}

#[tokio::test(start_paused = true)]
async fn even_a_refused_resolution_fails_closed_as_retryable() {
    // GIVEN BatchGetImage is refused (say, a missing permission)
    let w = moved_latest(containers(false), &[":1.0.0-1", ":latest"]);
    w.ecr.fail_resolving(
        "web",
        100,
        CallError::permanent("AccessDeniedException", "not allowed"),
    );
    // WHEN build 1 is named directly
    let h = w.run(&json!({"imageBuildVersionArn": IMAGE})).await;
    // THEN nothing is deleted and the ARN is a retryable failure naming the cause
    let r = h.entry(IMAGE);
    assert_eq!((r.status, r.retryable), (Status::Failed, Some(true)));
    assert_eq!(r.error_code.as_deref(), Some("AccessDeniedException"));
    assert_eq!(w.ecr.calls(), 0);
    assert!(!w.images.is_deleted(IMAGE) && w.ecr.exists("web", "1.0.0-1"));
    w.assert_accounted(&[(REQUEST_ID, IMAGE)], &h);
}
