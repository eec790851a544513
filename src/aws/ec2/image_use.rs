//! The [`ImageUse`] port over the thin EC2 client: DescribeImageReferences (≤ 10 AMIs per
//! call, every page), and DescribeImageAttribute for a protection or last launch field that
//! the cleanup's own DescribeImages answer left out.

use futures::future::try_join_all;

use super::ops::{Ec2, ImageAttribute, ResourceTypeOption, ResourceTypeRequest};
use crate::ports::{AmiReference, AmiUsage, CallError, ErrorClass, ImageUse, UsageFields};

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

    async fn usage(&self, region: &str, known: &[UsageFields]) -> Result<Vec<AmiUsage>, CallError> {
        let usages = try_join_all(known.iter().map(|fields| self.usage_of(region, fields))).await?;
        Ok(usages.into_iter().flatten().collect())
    }
}

impl Ec2 {
    /// One AMI's usage: each field DescribeImages left out is read with DescribeImageAttribute
    /// (both at once). `None`: the AMI is gone (so not in use).
    async fn usage_of(
        &self,
        region: &str,
        fields: &UsageFields,
    ) -> Result<Option<AmiUsage>, CallError> {
        let id = fields.image_id.as_str();
        let attribute = |known: Option<String>, attribute| async move {
            match known {
                Some(v) => Ok(Some(v)),
                None => self.describe_image_attribute(region, id, attribute).await,
            }
        };
        let (last_launched, protection) = futures::join!(
            attribute(
                fields.last_launched.clone(),
                ImageAttribute::LastLaunchedTime
            ),
            attribute(
                fields.deregistration_protection.clone(),
                ImageAttribute::DeregistrationProtection
            ),
        );
        let gone = |r: &Result<Option<String>, CallError>| matches!(r, Err(e) if e.class == ErrorClass::NotFound);
        if gone(&last_launched) || gone(&protection) {
            return Ok(None);
        }
        let complete = UsageFields {
            image_id: fields.image_id.clone(),
            last_launched: last_launched?,
            deregistration_protection: protection?,
        };
        Ok(Some(complete.usage()))
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

    fn fields(id: &str, launched: Option<&str>, protection: Option<&str>) -> UsageFields {
        UsageFields {
            image_id: id.into(),
            last_launched: launched.map(str::to_string),
            deregistration_protection: protection.map(str::to_string),
        }
    }

    #[tokio::test]
    async fn usage_asks_attributes_only_for_the_fields_describe_images_left_out() {
        // GIVEN ami-1 with both fields known, ami-2 with neither
        let (ec2, fake) = fake::ec2([
            ok("<R><imageId>ami-2</imageId><lastLaunchedTime/></R>"),
            ok("<R><imageId>ami-2</imageId><deregistrationProtection><value>enabled-with-cooldown</value></deregistrationProtection></R>"),
        ]);
        let known = [
            fields("ami-1", Some("2026-01-01T00:00:00Z"), Some("disabled")),
            fields("ami-2", None, None),
        ];
        // WHEN their usage is read
        let mut u = ec2.usage("us-east-1", &known).await.unwrap();
        u.sort_by(|a, b| a.image_id.cmp(&b.image_id));
        // THEN only ami-2's two attributes are asked for, and no DescribeImages
        let sent = fake.sent();
        assert_eq!(sent.len(), 2);
        assert!(sent
            .iter()
            .all(|s| s.body.contains("Action=DescribeImageAttribute")
                && s.body.contains("ImageId=ami-2")));
        assert_eq!(u[0].last_launched.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert!(!u[0].protected);
        assert_eq!(u[1].last_launched, None);
        assert!(u[1].protected);
    }

    #[tokio::test]
    async fn usage_leaves_out_an_ami_that_is_gone_and_passes_other_errors_on() {
        let (ec2, _) = fake::ec2([error(400, "InvalidAMIID.NotFound", "gone")]);
        let u = ec2
            .usage(
                "us-east-1",
                &[
                    fields("ami-1", Some("2020-01-01T00:00:00Z"), None),
                    fields("ami-2", Some("x"), Some("enabled")),
                ],
            )
            .await
            .unwrap();
        assert_eq!(u.len(), 1);
        assert!(u[0].protected);
        let (ec2, _) = fake::ec2([error(503, "Unavailable", "later")]);
        let e = ec2
            .usage("us-east-1", &[fields("ami-1", None, Some("disabled"))])
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::Retryable);
    }

    #[test]
    fn protection_is_anything_but_disabled() {
        use crate::ports::is_protected;
        assert!(!is_protected(None));
        assert!(!is_protected(Some("disabled")));
        assert!(!is_protected(Some("")));
        assert!(is_protected(Some("enabled")));
        assert!(is_protected(Some("enabled-with-cooldown until 2026-01-01")));
    }
}
