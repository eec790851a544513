//! Deleting output resources end to end: the real binary deletes an image's AMIs (in two
//! regions), their snapshots and its ECR image in moto, then the image in the Image Builder
//! emulator — all through the standard endpoint variables (`AWS_ENDPOINT_URL_EC2`,
//! `AWS_ENDPOINT_URL_ECR`).
//!
//! moto 5.2's RegisterImage ignores `BlockDeviceMappings`: every AMI it registers has exactly
//! one auto-created snapshot (described as "Auto-created snapshot for AMI ami-…"), so "an AMI
//! with several snapshots" and "a snapshot used by another AMI" are covered with fakes in
//! the `output_resources` tests, not here.

use std::time::Duration;

use imagebuilder_reaper::aws::ec2::{query, Ec2, Params};
use serde_json::{json, Value};

use crate::support::constants::ACCOUNT;
use crate::support::fixtures::arn;
use crate::support::moto::{self, Moto};
use crate::support::world::{result_for, Setup, World};

/// The crate's own EC2 client pointed at moto: seeding and checking go through the same
/// Query client the function uses (RegisterImage and CreateTags as raw calls).
pub(crate) fn ec2(region: &str) -> Ec2 {
    Moto::shared().ec2(region)
}

pub(crate) fn ecr(region: &str) -> aws_sdk_ecr::Client {
    Moto::shared().ecr(region)
}

/// Registers an AMI in moto; returns its id and its snapshots.
pub(crate) async fn seed_ami(region: &str, tags: &[(&str, &str)]) -> (String, Vec<String>) {
    let c = ec2(region);
    let register = Params::new("RegisterImage").set("Name", moto::unique("e2e-ami"));
    let reply = c.call(region, &register).await.expect("RegisterImage");
    let id =
        query::text(reply.document().expect("XML").root_element(), "imageId").expect("an AMI id");
    for (k, v) in tags {
        let create = Params::new("CreateTags")
            .list("ResourceId", [id.as_str()])
            .set("Tag.1.Key", *k)
            .set("Tag.1.Value", *v);
        c.call(region, &create).await.expect("CreateTags");
    }
    (id.clone(), snapshots_of(region, &id).await)
}

pub(crate) async fn snapshots_of(region: &str, ami: &str) -> Vec<String> {
    let images = ec2(region)
        .describe_images(region, &[ami])
        .await
        .expect("DescribeImages");
    images[0].snapshot_ids.clone()
}

pub(crate) async fn ami_registered(region: &str, ami: &str) -> bool {
    match ec2(region).describe_images(region, &[ami]).await {
        Ok(images) => !images.is_empty(),
        Err(_) => false, // InvalidAMIID.NotFound
    }
}

pub(crate) async fn snapshot_exists(region: &str, snap: &str) -> bool {
    let describe = Params::new("DescribeSnapshots").list("SnapshotId", [snap]);
    match ec2(region).call(region, &describe).await {
        Ok(reply) => reply
            .document()
            .is_ok_and(|d| query::items(d.root_element(), "snapshotSet").count() > 0),
        Err(_) => false, // InvalidSnapshot.NotFound
    }
}

/// Creates a repository holding the image of build `tag` (`1.0.0-<build>`, as Image Builder
/// tags a build's container image); returns the repository and the URI GetImage reports.
pub(crate) async fn seed_container(region: &str, tag: &str) -> (String, String) {
    let repo = moto::unique("e2e-web");
    ecr(region)
        .create_repository()
        .repository_name(&repo)
        .send()
        .await
        .expect("CreateRepository");
    push(region, &repo, tag, tag).await;
    let uri = format!("{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{repo}:{tag}");
    (repo, uri)
}

/// Pushes the image made of `content` to `repo` as `tag` (the same content again moves the
/// tag to that image); returns its digest.
pub(crate) async fn push(region: &str, repo: &str, tag: &str, content: &str) -> String {
    // moto derives an image's digest from its layers: one layer per content, its own digest.
    let hash = ring::digest::digest(&ring::digest::SHA256, content.as_bytes());
    let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let layer = format!("sha256:{hex}");
    let manifest = json!({"schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7023,
                   "digest": "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7"},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 32654, "digest": layer}]});
    ecr(region)
        .put_image()
        .repository_name(repo)
        .image_manifest(manifest.to_string())
        .image_tag(tag)
        .send()
        .await
        .expect("PutImage")
        .image()
        .and_then(|i| i.image_id())
        .and_then(|i| i.image_digest())
        .expect("a digest")
        .to_string()
}

/// The digest `repo:tag` names in moto now.
pub(crate) async fn digest_of(region: &str, repo: &str, tag: &str) -> Option<String> {
    ecr(region)
        .describe_images()
        .repository_name(repo)
        .send()
        .await
        .expect("DescribeImages")
        .image_details()
        .iter()
        .find(|d| d.image_tags().iter().any(|t| t == tag))
        .and_then(|d| d.image_digest().map(String::from))
}

/// A world whose function deletes the output resources `mode` names, in moto.
pub(crate) async fn world(mode: &str, extra: &[(&str, &str)]) -> World {
    let setup = extra
        .iter()
        .fold(Setup::default().output_resources(mode), |s, (k, v)| {
            s.env(k, v)
        });
    World::start(setup).await
}

/// (type, id, status) of the report's `outputResources` for `image`.
pub(crate) fn pieces(report: &Value, image: &str) -> Vec<(String, String, String)> {
    let result = result_for(report, image);
    result["outputResources"]
        .as_array()
        .unwrap_or_else(|| panic!("no outputResources: {result:#}"))
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["id"].as_str().unwrap().to_string(),
                e["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub(crate) fn p(t: &str, id: &str, s: &str) -> (String, String, String) {
    (t.to_string(), id.to_string(), s.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_output_resource_is_deleted_in_its_own_region_then_the_image() {
    // GIVEN an image whose AMIs are in us-east-1 and us-west-2 and whose container image is in
    // ECR, all in moto
    let (ami_east, snaps_east) = seed_ami("us-east-1", &[]).await;
    let (ami_west, snaps_west) = seed_ami("us-west-2", &[]).await;
    let (repo, uri) = seed_container("us-east-1", "1.0.0-101").await;
    let w = world("all", &[]).await;
    let image = arn("web", 101);
    w.seed_with_outputs(
        &image,
        &[("us-east-1", &ami_east), ("us-west-2", &ami_west)],
        &[("us-east-1", &uri)],
    );
    // WHEN the real binary is invoked with its ARN
    let reply = w.invoke(&json!({"imageBuildVersionArn": image})).await;
    let report = reply.response().clone();
    // THEN everything is gone and reported, piece by piece
    assert_eq!(
        pieces(&report, &image),
        [
            p("ami", &ami_east, "deleted"),
            p("snapshot", &snaps_east[0], "deleted"),
            p("ami", &ami_west, "deleted"),
            p("snapshot", &snaps_west[0], "deleted"),
            p("containerImage", &uri, "deleted"),
        ],
        "{report:#}"
    );
    assert!(!ami_registered("us-east-1", &ami_east).await);
    assert!(!ami_registered("us-west-2", &ami_west).await);
    assert!(!snapshot_exists("us-east-1", &snaps_east[0]).await);
    assert!(!snapshot_exists("us-west-2", &snaps_west[0]).await);
    assert_eq!(digest_of("us-east-1", &repo, "1.0.0-101").await, None);
    assert_eq!(
        result_for(&report, &image)["status"],
        "deleted",
        "{report:#}"
    );
    assert_eq!(w.delete_calls(&image), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_previews_the_cleanup_and_deletes_nothing() {
    let (ami, snaps) = seed_ami("us-east-1", &[]).await;
    let (repo, uri) = seed_container("us-east-1", "1.0.0-102").await;
    let w = world("all", &[]).await;
    let image = arn("web", 102);
    w.seed_with_outputs(&image, &[("us-east-1", &ami)], &[("us-east-1", &uri)]);
    let reply = w
        .invoke(&json!({"imageBuildVersionArn": image, "dryRun": true}))
        .await;
    let report = reply.response().clone();
    assert_eq!(
        pieces(&report, &image),
        [
            p("ami", &ami, "wouldDelete"),
            p("snapshot", &snaps[0], "wouldDelete"),
            p("containerImage", &uri, "wouldDelete"),
        ],
        "{report:#}"
    );
    assert_eq!(result_for(&report, &image)["status"], "wouldDelete");
    assert!(ami_registered("us-east-1", &ami).await);
    assert!(snapshot_exists("us-east-1", &snaps[0]).await);
    assert!(digest_of("us-east-1", &repo, "1.0.0-102").await.is_some());
    assert_eq!(w.delete_calls(&image), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_the_ami_was_deregistered_finds_and_deletes_its_leftover_snapshot() {
    // GIVEN an earlier attempt deregistered the AMI but its snapshot is still there
    let (ami, snaps) = seed_ami("us-east-1", &[]).await;
    ec2("us-east-1")
        .deregister_image("us-east-1", &ami)
        .await
        .expect("DeregisterImage");
    assert!(snapshot_exists("us-east-1", &snaps[0]).await);
    let w = world("amis", &[]).await;
    let image = arn("web", 103);
    w.seed_with_outputs(&image, &[("us-east-1", &ami)], &[]);
    // WHEN the ARN is retried
    let reply = w.invoke(&json!({"imageBuildVersionArn": image})).await;
    let report = reply.response().clone();
    // THEN the snapshot is found through DescribeSnapshots and deleted, then the image
    assert_eq!(
        pieces(&report, &image),
        [
            p("ami", &ami, "alreadyDeleted"),
            p("snapshot", &snaps[0], "deleted"),
        ],
        "{report:#}"
    );
    assert!(!snapshot_exists("us-east-1", &snaps[0]).await);
    assert_eq!(result_for(&report, &image)["status"], "deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_protect_tag_on_an_ami_protects_the_image_and_everything_it_made() {
    let (ami, snaps) = seed_ami("us-east-1", &[("keep", "yes")]).await;
    let w = world("all", &[("PROTECT_TAG_KEY", "keep")]).await;
    let image = arn("web", 104);
    w.seed_with_outputs(&image, &[("us-east-1", &ami)], &[]);
    let reply = w.invoke(&json!({"imageBuildVersionArn": image})).await;
    let report = reply.response().clone();
    assert_eq!(
        result_for(&report, &image)["status"],
        "protected",
        "{report:#}"
    );
    assert!(ami_registered("us-east-1", &ami).await);
    assert!(snapshot_exists("us-east-1", &snaps[0]).await);
    assert_eq!(w.delete_calls(&image), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_delete_output_resources_value_fails_init_naming_the_variable() {
    let w = world("snapshots", &[]).await;
    let err = w
        .runtime
        .init_error(Duration::from_secs(20))
        .await
        .expect("the function reports POST /runtime/init/error");
    assert_eq!(
        err.error_type.as_deref(),
        Some("ConfigurationError"),
        "{err:?}"
    );
    let message = err.error_message.as_deref().unwrap_or_default();
    assert!(
        message.contains("DELETE_OUTPUT_RESOURCES") && message.contains("containers"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_latest_tag_moved_to_a_newer_build_is_left_alone_and_only_the_own_digest_goes() {
    // GIVEN build 105 pushed 1.0.0-105 and `latest`, then build 106 took `latest`
    let (repo, own_uri) = seed_container("us-east-1", "1.0.0-105").await;
    let own = push("us-east-1", &repo, "latest", "1.0.0-105").await;
    let newer = push("us-east-1", &repo, "1.0.0-106", "1.0.0-106").await;
    push("us-east-1", &repo, "latest", "1.0.0-106").await;
    assert_ne!(own, newer);
    let latest_uri = own_uri.replace(":1.0.0-105", ":latest");
    // AND GetImage of build 105 still lists both tags, as Image Builder does
    let w = world("containers", &[]).await;
    let image = arn("web", 105);
    w.seed_with_outputs(
        &image,
        &[],
        &[("us-east-1", &own_uri), ("us-east-1", &latest_uri)],
    );
    // WHEN a dry run previews it, then the real run deletes it
    let preview = w
        .invoke(&json!({"imageBuildVersionArn": image, "dryRun": true}))
        .await
        .response()
        .clone();
    let report = w
        .invoke(&json!({"imageBuildVersionArn": image}))
        .await
        .response()
        .clone();
    // THEN both show `latest` left alone and the build's own image going
    assert_eq!(
        pieces(&preview, &image),
        [
            p("containerImage", &own_uri, "wouldDelete"),
            p("containerImage", &latest_uri, "skippedMovedTag"),
        ],
        "{preview:#}"
    );
    assert_eq!(
        pieces(&report, &image),
        [
            p("containerImage", &own_uri, "deleted"),
            p("containerImage", &latest_uri, "skippedMovedTag"),
        ],
        "{report:#}"
    );
    assert_eq!(
        result_for(&report, &image)["status"],
        "deleted",
        "{report:#}"
    );
    // AND in ECR the own digest is gone while `latest` still names the newer build's image
    assert_eq!(digest_of("us-east-1", &repo, "1.0.0-105").await, None);
    assert_eq!(
        digest_of("us-east-1", &repo, "latest").await,
        Some(newer.clone())
    );
    assert_eq!(
        digest_of("us-east-1", &repo, "1.0.0-106").await,
        Some(newer)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ecr_adapter_resolves_every_tag_of_an_image_to_its_digest() {
    use imagebuilder_reaper::aws::ecr::Ecr;
    use imagebuilder_reaper::ports::{CallError, ContainerImages, ErrorClass};
    // GIVEN one image tagged twice and another tagged once, in moto
    let (repo, _) = seed_container("us-east-1", "1.0.0-107").await;
    let first = push("us-east-1", &repo, "latest", "1.0.0-107").await;
    let second = push("us-east-1", &repo, "1.0.0-108", "1.0.0-108").await;
    let ecr = Ecr::new(&Moto::shared().sdk_config("us-east-1"));
    // WHEN the adapter resolves both tags of the first, the second's and a missing one
    let tags = ["1.0.0-107", "latest", "1.0.0-108", "nope"].map(String::from);
    let digests = ecr
        .resolve_tags("us-east-1", ACCOUNT, &repo, &tags)
        .await
        .expect("BatchGetImage");
    // THEN each tag has the digest it names, the missing one none
    assert_eq!(
        digests,
        [Some(first.clone()), Some(first), Some(second), None]
    );
    // AND a missing repository is NotFound: its images are gone with it
    let gone: CallError = ecr
        .resolve_tags("us-east-1", ACCOUNT, "no-such-repository", &tags)
        .await
        .expect_err("RepositoryNotFoundException");
    assert_eq!(gone.class, ErrorClass::NotFound, "{gone:?}");
}
