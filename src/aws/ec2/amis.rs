//! The [`Amis`] port over the thin EC2 client: DescribeImages (which also carries the
//! protection and last launch the in-use guard reads), DescribeSnapshots, DeregisterImage,
//! DeleteSnapshot. Errors arrive classified (by
//! [`crate::aws::classify::classify_query`]); only "the snapshot is still used" is turned
//! into a [`Removal`] here, by the same module's [`ec2_refusal`].

use super::ops::Ec2;
use crate::aws::classify::ec2_refusal;
use crate::ports::{AmiDescription, Amis, CallError, Removal, UsageFields};

/// Descriptions EC2 gives the snapshots of an AMI, as `description` filter values (`*` is a
/// wildcard): CreateImage's, CopyImage's (as the *destination* only — a copy's description
/// also names its source AMI, whose snapshots these are not), and the local emulator's
/// (moto's RegisterImage auto-creates one snapshot per AMI).
fn snapshot_descriptions(image_id: &str) -> Vec<String> {
    vec![
        format!("Created by CreateImage(*) for {image_id}"),
        format!("Created by CreateImage(*) for {image_id} *"),
        format!("Copied for DestinationAmi {image_id} *"),
        format!("Auto-created snapshot for AMI {image_id}"),
    ]
}

impl Amis for Ec2 {
    async fn describe_image(
        &self,
        region: &str,
        image_id: &str,
    ) -> Result<Option<AmiDescription>, CallError> {
        let images = self.describe_images(region, &[image_id]).await?;
        let Some(image) = images.into_iter().find(|i| i.image_id == image_id) else {
            return Ok(None);
        };
        if image.state.as_deref() == Some("deregistered") {
            return Ok(None);
        }
        Ok(Some(AmiDescription {
            usage: UsageFields {
                image_id: image.image_id,
                last_launched: image.last_launched_time,
                deregistration_protection: image.deregistration_protection,
            },
            owner_id: image.owner_id,
            snapshot_ids: image.snapshot_ids,
            tags: image.tags.into_iter().collect(),
        }))
    }

    async fn snapshots_left_by(
        &self,
        region: &str,
        image_id: &str,
    ) -> Result<Vec<String>, CallError> {
        self.own_snapshots_described(region, &snapshot_descriptions(image_id))
            .await
    }

    async fn deregister_image(&self, region: &str, image_id: &str) -> Result<(), CallError> {
        Ec2::deregister_image(self, region, image_id).await
    }

    async fn delete_snapshot(&self, region: &str, snapshot_id: &str) -> Result<Removal, CallError> {
        match Ec2::delete_snapshot(self, region, snapshot_id).await {
            Ok(()) => Ok(Removal::Removed),
            Err(e) => ec2_refusal(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{self, error, ok};
    use super::*;
    use crate::ports::ErrorClass;

    const TWO_IMAGES: &str = "<DescribeImagesResponse><imagesSet>\
        <item><imageId>ami-other</imageId><imageState>available</imageState></item>\
        <item><imageId>ami-1</imageId><imageState>available</imageState><imageOwnerId>111</imageOwnerId>\
        <blockDeviceMapping><item><ebs><snapshotId>snap-1</snapshotId></ebs></item></blockDeviceMapping>\
        <tagSet><item><key>keep</key><value>yes</value></item></tagSet>\
        <lastLaunchedTime>2025-01-01T00:00:00Z</lastLaunchedTime></item>\
        </imagesSet></DescribeImagesResponse>";

    #[tokio::test]
    async fn describe_image_reads_the_asked_ami_and_a_deregistered_or_missing_one_is_none() {
        let (ec2, _) = fake::ec2([
            ok(TWO_IMAGES),
            ok("<R><imagesSet><item><imageId>ami-1</imageId><imageState>deregistered</imageState></item></imagesSet></R>"),
            ok("<R><imagesSet/></R>"),
            error(400, "InvalidAMIID.NotFound", "The image id '[ami-1]' does not exist"),
        ]);
        let d = ec2
            .describe_image("us-east-1", "ami-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.owner_id.as_deref(), Some("111"));
        assert_eq!(d.snapshot_ids, ["snap-1"]);
        assert_eq!(d.tags.get("keep").map(String::as_str), Some("yes"));
        assert_eq!(d.usage.image_id, "ami-1");
        // AND the guard's fields ride along: the launch time given, the protection left out
        assert_eq!(
            d.usage.last_launched.as_deref(),
            Some("2025-01-01T00:00:00Z")
        );
        assert_eq!(d.usage.deregistration_protection, None);
        assert_eq!(
            ec2.describe_image("us-east-1", "ami-1").await.unwrap(),
            None
        );
        assert_eq!(
            ec2.describe_image("us-east-1", "ami-1").await.unwrap(),
            None
        );
        let e = ec2.describe_image("us-east-1", "ami-1").await.unwrap_err();
        assert_eq!(e.class, ErrorClass::NotFound);
    }

    #[tokio::test]
    async fn a_snapshot_in_use_is_a_skip_with_its_reason_and_other_errors_stay_errors() {
        let (ec2, _) = fake::ec2([
            ok("<DeleteSnapshotResponse><return>true</return></DeleteSnapshotResponse>"),
            error(
                400,
                "InvalidSnapshot.InUse",
                "The snapshot snap-1 is currently in use by ami-2",
            ),
            error(400, "InvalidSnapshot.NotFound", "gone"),
            error(503, "Unavailable", "try later"),
        ]);
        // The port's method, not the inherent one of the same name.
        let delete = |id| <Ec2 as Amis>::delete_snapshot(&ec2, "us-east-1", id);
        assert_eq!(delete("snap-0").await.unwrap(), Removal::Removed);
        assert_eq!(
            delete("snap-1").await.unwrap(),
            Removal::InUse(
                "InvalidSnapshot.InUse: The snapshot snap-1 is currently in use by ami-2".into()
            )
        );
        assert_eq!(
            delete("snap-2").await.unwrap_err().class,
            ErrorClass::NotFound
        );
        assert_eq!(
            delete("snap-3").await.unwrap_err().class,
            ErrorClass::Retryable
        );
    }

    #[tokio::test]
    async fn leftover_snapshots_are_searched_by_the_amis_descriptions() {
        let (ec2, fake) = fake::ec2([ok(
            "<R><snapshotSet><item><snapshotId>snap-9</snapshotId></item></snapshotSet></R>",
        )]);
        let found = ec2.snapshots_left_by("us-east-1", "ami-1").await.unwrap();
        assert_eq!(found, ["snap-9"]);
        let body = &fake.sent()[0].body;
        assert!(body.contains("&Owner.1=self&Filter.1.Name=description&Filter.1.Value.1="));
        assert!(body.contains("&Filter.1.Value.4=Auto-created%20snapshot%20for%20AMI%20ami-1"));
    }

    #[test]
    fn snapshot_search_names_the_ami_only_as_creator_or_copy_destination() {
        let d = snapshot_descriptions("ami-0abc");
        assert!(d.iter().all(|p| p.contains("ami-0abc")));
        assert!(!d.iter().any(|p| p.contains("SourceAmi")));
    }
}
