//! The [`Amis`] port over the thin EC2 client: DescribeImages, DescribeSnapshots,
//! DeregisterImage, DeleteSnapshot. Errors arrive classified (by
//! [`crate::aws::classify::classify_query`]); only "the snapshot is still used" is turned
//! into a [`Removal`] here, by the same module's [`ec2_refusal`].

use super::ops::Ec2;
use crate::aws::classify::ec2_refusal;
use crate::ports::{AmiDescription, Amis, CallError, Removal};

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
    use super::*;

    #[test]
    fn snapshot_search_names_the_ami_only_as_creator_or_copy_destination() {
        let d = snapshot_descriptions("ami-0abc");
        assert!(d.iter().all(|p| p.contains("ami-0abc")));
        assert!(!d.iter().any(|p| p.contains("SourceAmi")));
    }
}
