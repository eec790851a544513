//! The in-use guard end to end: the real binary asks the EC2 front (in front of moto) what
//! uses an image's AMIs before deregistering anything. Instances and launch templates are
//! real moto resources; launch times and deregistration protection are set on the front.

use ib_emulator::ec2::Ec2Fault;
use imagebuilder_reaper::aws::ec2::{query, Params};
use serde_json::{json, Value};

use crate::e2e_output_resources::{ami_registered, ec2, seed_ami, world};
use crate::support::fixtures::arn;
use crate::support::moto;
use crate::support::world::{result_for, World};

const REGION: &str = "us-east-1";

/// Starts an instance of `ami` in moto; returns its id.
async fn run_instance(ami: &str) -> String {
    let run = Params::new("RunInstances")
        .set("ImageId", ami)
        .set("MinCount", "1")
        .set("MaxCount", "1")
        .set("InstanceType", "t3.micro");
    let reply = ec2(REGION).call(REGION, &run).await.expect("RunInstances");
    let doc = reply.document().expect("XML");
    let id = query::items(doc.root_element(), "instancesSet")
        .find_map(|i| query::text(i, "instanceId"))
        .expect("an instance id");
    id
}

/// A launch template whose version 1 uses `ami` and whose 11 later versions use `other`, so
/// `ami` is only in a version older than the newest ten; returns the template id.
async fn old_launch_template_version(ami: &str, other: &str) -> String {
    let name = moto::unique("e2e-lt");
    let create = Params::new("CreateLaunchTemplate")
        .set("LaunchTemplateName", name.as_str())
        .set("LaunchTemplateData.ImageId", ami);
    let reply = ec2(REGION)
        .call(REGION, &create)
        .await
        .expect("CreateLaunchTemplate");
    let doc = reply.document().expect("XML");
    let template = query::child(doc.root_element(), "launchTemplate")
        .and_then(|t| query::text(t, "launchTemplateId"))
        .expect("a launch template id");
    for _ in 0..11 {
        let version = Params::new("CreateLaunchTemplateVersion")
            .set("LaunchTemplateName", name.as_str())
            .set("LaunchTemplateData.ImageId", other);
        ec2(REGION)
            .call(REGION, &version)
            .await
            .expect("CreateLaunchTemplateVersion");
    }
    template
}

/// A world deleting AMIs, with one image (build `build`) whose only output is `ami`.
async fn image_of(ami: &str, build: u32, extra: &[(&str, &str)]) -> (World, String) {
    let w = world("amis", extra).await;
    let image = arn("web", build);
    w.seed_with_outputs(&image, &[(REGION, ami)], &[]);
    (w, image)
}

fn front(w: &World) -> &ib_emulator::Ec2Front {
    w.ec2.as_ref().expect("the world's EC2 front")
}

fn references(result: &Value) -> Vec<(String, String)> {
    result["references"]
        .as_array()
        .unwrap_or_else(|| panic!("no references: {result:#}"))
        .iter()
        .map(|r| {
            (
                r["resourceType"].as_str().unwrap().to_string(),
                r["arn"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ami_in_an_old_launch_template_version_keeps_the_image() {
    // GIVEN an AMI used only by version 1 of a launch template with 12 versions
    let (ami, _) = seed_ami(REGION, &[]).await;
    let (other, _) = seed_ami(REGION, &[]).await;
    let template = old_launch_template_version(&ami, &other).await;
    let (w, image) = image_of(&ami, 201, &[]).await;
    // WHEN the image is named
    let reply = w.invoke(&json!({"imageBuildVersionArn": image})).await;
    let report = reply.response().clone();
    // THEN it is inUse, naming the template, and nothing is deleted
    let result = result_for(&report, &image);
    assert_eq!(result["status"], "inUse", "{report:#}");
    let refs = references(result);
    assert!(
        refs.iter()
            .any(|(t, a)| t == "ec2:LaunchTemplate" && a.ends_with(&template)),
        "{report:#}"
    );
    assert_eq!(report["summary"]["inUse"], 1);
    assert!(ami_registered(REGION, &ami).await);
    assert_eq!(w.delete_calls(&image), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ami_of_a_running_instance_keeps_the_image_and_a_dry_run_shows_it() {
    // GIVEN an AMI a running instance was started from
    let (ami, _) = seed_ami(REGION, &[]).await;
    let instance = run_instance(&ami).await;
    let (w, image) = image_of(&ami, 202, &[]).await;
    // WHEN previewed THEN the preview says inUse with the instance
    let preview = w
        .invoke(&json!({"imageBuildVersionArn": image, "dryRun": true}))
        .await;
    let report = preview.response().clone();
    let result = result_for(&report, &image);
    assert_eq!(result["status"], "inUse", "{report:#}");
    let refs = references(result);
    assert!(
        refs.iter()
            .any(|(t, a)| t == "ec2:Instance" && a.ends_with(&instance)),
        "{report:#}"
    );
    // WHEN deleted for real THEN it is kept the same way
    let reply = w.invoke(&json!({"imageBuildVersionArn": image})).await;
    assert_eq!(
        result_for(reply.response(), &image)["status"],
        "inUse",
        "{:#}",
        reply.response()
    );
    assert!(ami_registered(REGION, &ami).await);
    assert_eq!(w.delete_calls(&image), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn protection_or_a_recent_launch_keeps_the_image() {
    let (protected, _) = seed_ami(REGION, &[]).await;
    let (launched, _) = seed_ami(REGION, &[]).await;
    let w = world("amis", &[]).await;
    let (a, b) = (arn("web", 203), arn("web", 204));
    w.seed_with_outputs(&a, &[(REGION, &protected)], &[]);
    w.seed_with_outputs(&b, &[(REGION, &launched)], &[]);
    front(&w).set_deregistration_protection(&protected, Some("enabled"));
    front(&w).set_last_launched_time(&launched, Some("2999-01-01T00:00:00Z"));
    let reply = w.invoke(&json!({"imageBuildVersionArns": [a, b]})).await;
    let report = reply.response().clone();
    for (image, why) in [
        (&a, "protected from deregistration"),
        (&b, "IN_USE_GRACE_DAYS"),
    ] {
        let result = result_for(&report, image);
        assert_eq!(result["status"], "inUse", "{report:#}");
        assert!(
            result["message"].as_str().unwrap().contains(why),
            "{report:#}"
        );
    }
    assert!(ami_registered(REGION, &protected).await && ami_registered(REGION, &launched).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reference_check_that_fails_keeps_everything_as_a_retryable_failure() {
    // GIVEN DescribeImageReferences answers 503 every time
    let (ami, _) = seed_ami(REGION, &[]).await;
    let (w, image) = image_of(&ami, 205, &[("MAX_ATTEMPTS", "2")]).await;
    front(&w).set_fault(
        "DescribeImageReferences",
        Ec2Fault {
            status: 503,
            code: "ServiceUnavailable".into(),
            message: "scripted".into(),
            times: None,
        },
    );
    // WHEN the image is named
    let reply = w.invoke(&json!({"imageBuildVersionArn": image})).await;
    let report = reply.response().clone();
    // THEN it fails retryably with the cause, is dead-lettered as retryable, nothing deleted
    let result = result_for(&report, &image);
    assert_eq!(result["status"], "failed", "{report:#}");
    assert_eq!(result["retryable"], true);
    assert_eq!(result["errorCode"], "ServiceUnavailable");
    let dead = w.dead_letters(1).await;
    assert_eq!(dead[0].json()["retryable"], true);
    assert!(ami_registered(REGION, &ami).await);
    assert_eq!(w.delete_calls(&image), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreferenced_ami_launched_long_ago_is_still_deleted() {
    let (ami, _) = seed_ami(REGION, &[]).await;
    let (w, image) = image_of(&ami, 206, &[]).await;
    front(&w).set_last_launched_time(&ami, Some("2020-01-01T00:00:00Z"));
    front(&w).set_deregistration_protection(&ami, Some("disabled"));
    let reply = w.invoke(&json!({"imageBuildVersionArn": image})).await;
    let report = reply.response().clone();
    assert_eq!(
        result_for(&report, &image)["status"],
        "deleted",
        "{report:#}"
    );
    assert!(!ami_registered(REGION, &ami).await);
    assert_eq!(w.delete_calls(&image), 1);
}
