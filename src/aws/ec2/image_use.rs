//! The [`ImageUse`] port over the thin EC2 client: DescribeImageReferences (≤ 10 AMIs per
//! call, every page) and the AMIs' deregistration protection and last launch time
//! (DescribeImages, and DescribeImageAttribute for a field its reply leaves out).

use futures::future::{join_all, try_join_all};

use super::ops::{Ec2, Image, ImageAttribute, ResourceTypeOption, ResourceTypeRequest};
use crate::ports::{AmiReference, AmiUsage, CallError, ErrorClass, ImageUse};

/// DescribeImageReferences takes at most 10 AMI ids per call.
const IDS_PER_CALL: usize = 10;

/// Launch-template versions to search: every version a template can have (EC2 allows 10,000
/// per template), not just the newest ten that `IncludeAllResourceTypes` checks by default.
const VERSION_DEPTH: &str = "10000";

/// The resource types asked for besides `IncludeAllResourceTypes=true`: EC2 applies its
/// defaults to every type, and options given here replace the defaults of their type.
fn resource_types() -> Vec<ResourceTypeRequest> {
    vec![ResourceTypeRequest {
        resource_type: "ec2:LaunchTemplate".into(),
        options: vec![ResourceTypeOption {
            name: "version-depth".into(),
            values: vec![VERSION_DEPTH.into()],
        }],
    }]
}

/// Whether EC2's `deregistrationProtection` text means protected: anything but `disabled`
/// (`enabled`, `enabled-with-cooldown …`), so a wording this function does not know keeps
/// the AMI rather than losing it.
fn is_protected(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.trim().is_empty() && !v.trim().starts_with("disabled"))
}

impl ImageUse for Ec2 {
    async fn references(
        &self,
        region: &str,
        image_ids: &[String],
    ) -> Result<Vec<AmiReference>, CallError> {
        let types = resource_types();
        let pages = try_join_all(image_ids.chunks(IDS_PER_CALL).map(|chunk| {
            let ids: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let types = &types;
            async move {
                self.describe_image_references(region, &ids, true, types)
                    .await
            }
        }))
        .await?;
        Ok(pages
            .into_iter()
            .flatten()
            .map(|r| AmiReference {
                image_id: r.image_id,
                resource_type: r.resource_type,
                arn: r.arn,
            })
            .collect())
    }

    async fn usage(&self, region: &str, image_ids: &[String]) -> Result<Vec<AmiUsage>, CallError> {
        let images = self.images_still_there(region, image_ids).await?;
        let usages =
            try_join_all(images.into_iter().map(|image| self.usage_of(region, image))).await?;
        Ok(usages.into_iter().flatten().collect())
    }
}

impl Ec2 {
    /// DescribeImages of all `image_ids` at once; when EC2 refuses the call because one of
    /// them is gone, each is asked alone and the gone ones are left out.
    async fn images_still_there(
        &self,
        region: &str,
        image_ids: &[String],
    ) -> Result<Vec<Image>, CallError> {
        let ids: Vec<&str> = image_ids.iter().map(String::as_str).collect();
        match self.describe_images(region, &ids).await {
            Err(e) if e.class == ErrorClass::NotFound && ids.len() > 1 => {
                let each = join_all(
                    ids.iter()
                        .map(|id| async move { self.describe_images(region, &[*id]).await }),
                )
                .await;
                let mut images = Vec::new();
                for answer in each {
                    match answer {
                        Ok(found) => images.extend(found),
                        Err(e) if e.class == ErrorClass::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(images)
            }
            Err(e) if e.class == ErrorClass::NotFound => Ok(Vec::new()),
            other => other,
        }
    }

    /// One AMI's usage; a field DescribeImages left out is read with DescribeImageAttribute.
    /// `None`: the AMI is gone (so not in use).
    async fn usage_of(&self, region: &str, image: Image) -> Result<Option<AmiUsage>, CallError> {
        if image.state.as_deref() == Some("deregistered") {
            return Ok(None);
        }
        let id = image.image_id.as_str();
        let attribute = |known: Option<String>, attribute| async move {
            match known {
                Some(v) => Ok(Some(v)),
                None => self.describe_image_attribute(region, id, attribute).await,
            }
        };
        let (last_launched, protection) = futures::join!(
            attribute(
                image.last_launched_time.clone(),
                ImageAttribute::LastLaunchedTime
            ),
            attribute(
                image.deregistration_protection.clone(),
                ImageAttribute::DeregistrationProtection
            ),
        );
        let gone = |r: &Result<Option<String>, CallError>| matches!(r, Err(e) if e.class == ErrorClass::NotFound);
        if gone(&last_launched) || gone(&protection) {
            return Ok(None);
        }
        Ok(Some(AmiUsage {
            image_id: image.image_id.clone(),
            last_launched: last_launched?,
            protected: is_protected(protection?.as_deref()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{self, error, ok};
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("ami-{i}")).collect()
    }

    #[tokio::test]
    async fn references_ask_ten_amis_per_call_with_every_type_and_every_template_version() {
        // GIVEN 11 AMIs and EC2 answering one reference per call
        let reply = |id: &str| {
            ok(&format!(
                "<R><imageReferenceSet><item><imageId>{id}</imageId>\
                 <resourceType>ec2:Instance</resourceType><arn>arn:i-{id}</arn></item>\
                 </imageReferenceSet></R>"
            ))
        };
        let (ec2, fake) = fake::ec2([reply("ami-0"), reply("ami-10")]);
        // WHEN their references are asked for
        let refs = ec2.references("us-east-1", &ids(11)).await.unwrap();
        // THEN two calls, ten and one AMI, each with IncludeAllResourceTypes and the
        // launch-template option
        assert_eq!(refs.len(), 2);
        let sent = fake.sent();
        assert_eq!(sent.len(), 2);
        assert!(sent[0].body.contains("ImageId.10=ami-9") && !sent[0].body.contains("ImageId.11"));
        for s in &sent {
            assert!(
                s.body.contains("IncludeAllResourceTypes=true"),
                "{}",
                s.body
            );
            assert!(s.body.contains(
                "ResourceType.1.ResourceType=ec2%3ALaunchTemplate\
                 &ResourceType.1.ResourceTypeOption.1.OptionName=version-depth\
                 &ResourceType.1.ResourceTypeOption.1.OptionValue.1=10000"
            ));
        }
    }

    #[tokio::test]
    async fn usage_reads_describe_images_and_asks_attributes_only_for_missing_fields() {
        // GIVEN ami-1 with both fields, ami-2 with neither
        let (ec2, fake) = fake::ec2([
            ok("<R><imagesSet>\
                <item><imageId>ami-1</imageId><imageState>available</imageState>\
                <lastLaunchedTime>2026-01-01T00:00:00Z</lastLaunchedTime>\
                <deregistrationProtection>disabled</deregistrationProtection></item>\
                <item><imageId>ami-2</imageId><imageState>available</imageState></item>\
                </imagesSet></R>"),
            ok("<R><imageId>ami-2</imageId><lastLaunchedTime/></R>"),
            ok("<R><imageId>ami-2</imageId><deregistrationProtection><value>enabled-with-cooldown</value></deregistrationProtection></R>"),
        ]);
        // WHEN their usage is read
        let mut u = ec2
            .usage("us-east-1", &["ami-1".into(), "ami-2".into()])
            .await
            .unwrap();
        u.sort_by(|a, b| a.image_id.cmp(&b.image_id));
        // THEN one DescribeImages and two DescribeImageAttribute calls for ami-2
        assert_eq!(fake.sent().len(), 3);
        assert_eq!(u[0].last_launched.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert!(!u[0].protected);
        assert_eq!(u[1].last_launched, None);
        assert!(u[1].protected);
    }

    #[tokio::test]
    async fn usage_leaves_out_an_ami_that_is_gone_and_passes_other_errors_on() {
        let (ec2, _) = fake::ec2([
            error(400, "InvalidAMIID.NotFound", "gone"),
            error(400, "InvalidAMIID.NotFound", "gone"),
            ok("<R><imagesSet><item><imageId>ami-2</imageId>\
                <lastLaunchedTime>x</lastLaunchedTime>\
                <deregistrationProtection>enabled</deregistrationProtection></item></imagesSet></R>"),
        ]);
        let u = ec2
            .usage("us-east-1", &["ami-1".into(), "ami-2".into()])
            .await
            .unwrap();
        assert_eq!(u.len(), 1);
        assert!(u[0].protected);
        let (ec2, _) = fake::ec2([error(503, "Unavailable", "later")]);
        let e = ec2.usage("us-east-1", &["ami-1".into()]).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Retryable);
    }

    #[test]
    fn protection_is_anything_but_disabled() {
        assert!(!is_protected(None));
        assert!(!is_protected(Some("disabled")));
        assert!(!is_protected(Some("")));
        assert!(is_protected(Some("enabled")));
        assert!(is_protected(Some("enabled-with-cooldown until 2026-01-01")));
    }
}
