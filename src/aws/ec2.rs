//! EC2 adapter ([`Amis`] over the SDK): DescribeImages, DescribeSnapshots, DeregisterImage,
//! DeleteSnapshot. Feature `output-resources`.
//!
//! One client per region, built lazily from the shared [`SdkConfig`] and cached (an image's
//! AMIs live in every region it was distributed to). EC2 models no errors: its codes are
//! classified here, once, through [`ModelledClass`] on each operation's error (matching
//! [`ProvideErrorMetadata::code`]), and everything else by the shared [`classify`].

use aws_config::SdkConfig;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::operation::delete_snapshot::DeleteSnapshotError;
use aws_sdk_ec2::operation::deregister_image::DeregisterImageError;
use aws_sdk_ec2::operation::describe_images::DescribeImagesError;
use aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsError;
use aws_sdk_ec2::types::{Filter, ImageState};
use aws_sdk_ec2::Client;
use aws_smithy_runtime_api::client::result::SdkError;

use super::classify::{classify, ModelledClass};
use super::RegionalClients;
use crate::ports::{AmiDescription, Amis, CallError, ErrorClass, Removal};

/// EC2 codes meaning "already gone" (an AMI deregistered or never there, a deleted snapshot).
const GONE: &[&str] = &[
    "InvalidAMIID.NotFound",
    "InvalidAMIID.Unavailable",
    "InvalidSnapshot.NotFound",
];

/// A snapshot still used by another AMI: skipped with its reason, never a failure.
const SNAPSHOT_IN_USE: &str = "InvalidSnapshot.InUse";

/// EC2's own codes; throttling (`RequestLimitExceeded`), 5xx and transport errors are
/// retryable through the shared [`classify`], anything else permanent.
fn ec2_class(code: Option<&str>) -> Option<ErrorClass> {
    code.filter(|c| GONE.contains(c))
        .map(|_| ErrorClass::NotFound)
}

macro_rules! ec2_errors {
    ($($error:ty),*) => {$(
        impl ModelledClass for $error {
            fn modelled_class(&self) -> Option<ErrorClass> {
                ec2_class(self.code())
            }
        }
    )*};
}
ec2_errors!(
    DescribeImagesError,
    DescribeSnapshotsError,
    DeregisterImageError,
    DeleteSnapshotError
);

/// [`Amis`] backed by the AWS SDK.
#[derive(Debug)]
pub struct Ec2 {
    clients: RegionalClients<Client>,
}

impl Ec2 {
    /// No client is built until the first call for a region.
    pub fn new(base: &SdkConfig) -> Self {
        Ec2 {
            clients: RegionalClients::new(base, |base, region| {
                Client::from_conf(
                    aws_sdk_ec2::config::Builder::from(base)
                        .region(region)
                        .build(),
                )
            }),
        }
    }

    /// The cached client for `region` (endpoint from `AWS_ENDPOINT_URL_EC2`).
    pub fn client(&self, region: &str) -> Client {
        self.clients.get(region)
    }
}

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
        let out = self
            .client(region)
            .describe_images()
            .image_ids(image_id)
            // An owner sees these anyway; say so explicitly so they are never missed.
            .include_deprecated(true)
            .include_disabled(true)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let Some(image) = out.images().iter().find(|i| i.image_id() == Some(image_id)) else {
            return Ok(None);
        };
        if image.state() == Some(&ImageState::Deregistered) {
            return Ok(None);
        }
        Ok(Some(AmiDescription {
            owner_id: image.owner_id().map(str::to_string),
            snapshot_ids: image
                .block_device_mappings()
                .iter()
                .filter_map(|m| m.ebs()?.snapshot_id().map(str::to_string))
                .collect(),
            tags: image
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
                .collect(),
        }))
    }

    async fn snapshots_left_by(
        &self,
        region: &str,
        image_id: &str,
    ) -> Result<Vec<String>, CallError> {
        let client = self.client(region);
        let mut found = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = client
                .describe_snapshots()
                .owner_ids("self")
                .filters(
                    Filter::builder()
                        .name("description")
                        .set_values(Some(snapshot_descriptions(image_id)))
                        .build(),
                )
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| classify(&e))?;
            found.extend(
                out.snapshots()
                    .iter()
                    .filter_map(|s| s.snapshot_id().map(str::to_string)),
            );
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => return Ok(found),
            }
        }
    }

    async fn deregister_image(&self, region: &str, image_id: &str) -> Result<(), CallError> {
        self.client(region)
            .deregister_image()
            .image_id(image_id)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }

    async fn delete_snapshot(&self, region: &str, snapshot_id: &str) -> Result<Removal, CallError> {
        match self
            .client(region)
            .delete_snapshot()
            .snapshot_id(snapshot_id)
            .send()
            .await
        {
            Ok(_) => Ok(Removal::Removed),
            Err(SdkError::ServiceError(se)) if se.err().code() == Some(SNAPSHOT_IN_USE) => {
                Ok(Removal::InUse(format!(
                    "{SNAPSHOT_IN_USE}: {}",
                    se.err()
                        .message()
                        .unwrap_or("the snapshot is used by another AMI")
                )))
            }
            Err(e) => Err(classify(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_codes_are_not_found_and_others_are_left_to_the_shared_rules() {
        for code in GONE {
            assert_eq!(ec2_class(Some(code)), Some(ErrorClass::NotFound));
        }
        for code in [
            "RequestLimitExceeded",
            "UnauthorizedOperation",
            SNAPSHOT_IN_USE,
        ] {
            assert_eq!(ec2_class(Some(code)), None, "{code}");
        }
        assert_eq!(ec2_class(None), None);
    }

    #[test]
    fn snapshot_search_names_the_ami_only_as_creator_or_copy_destination() {
        let d = snapshot_descriptions("ami-0abc");
        assert!(d.iter().all(|p| p.contains("ami-0abc")));
        assert!(!d.iter().any(|p| p.contains("SourceAmi")));
    }
}
