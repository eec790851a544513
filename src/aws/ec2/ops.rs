//! The EC2 operations this function calls, typed: each builds its [`Params`] under EC2's
//! query names and reads the few reply elements it needs into plain structs. Adding an
//! operation is a request builder and a parser here; signing, sending, errors and paging
//! are [`Transport`]'s.
//!
//! Parsers never fail on a missing element (it reads as absent or empty, as with the SDK's
//! deserialisers); only a body that is not XML is an error.

use aws_config::SdkConfig;
use roxmltree::Node;

use super::query::{items, text, Params};
use super::transport::{Reply, Transport};
use crate::ports::CallError;

/// One AMI as DescribeImages describes it (the members this function reads).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    pub image_id: String,
    /// `imageOwnerId`.
    pub owner_id: Option<String>,
    /// `imageState`: `available`, `pending`, `deregistered`, `disabled`, …
    pub state: Option<String>,
    /// The EBS snapshots of its block-device mappings, in mapping order.
    pub snapshot_ids: Vec<String>,
    /// Its tags, in reply order (a tag without a value has `""`).
    pub tags: Vec<(String, String)>,
    /// When an instance was last launched from it (ISO 8601), if ever.
    pub last_launched_time: Option<String>,
    /// `disabled`, or `enabled` / `enabled-with-cooldown` with its date, as EC2 words it.
    pub deregistration_protection: Option<String>,
}

/// One resource DescribeImageReferences says uses an AMI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    pub image_id: String,
    /// `ec2:Instance`, `ec2:LaunchTemplate`, `ssm:Parameter`, `imagebuilder:ImageRecipe`, …
    pub resource_type: String,
    pub arn: String,
}

/// A resource type DescribeImageReferences should check, with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceTypeRequest {
    pub resource_type: String,
    pub options: Vec<ResourceTypeOption>,
}

/// One option of a [`ResourceTypeRequest`] (e.g. `state-name` = `running`, `stopped`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceTypeOption {
    pub name: String,
    pub values: Vec<String>,
}

/// The DescribeImageAttribute attributes this function reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageAttribute {
    LastLaunchedTime,
    DeregistrationProtection,
}

impl ImageAttribute {
    /// The `Attribute` parameter value, which is also the reply's element name.
    pub fn name(self) -> &'static str {
        match self {
            ImageAttribute::LastLaunchedTime => "lastLaunchedTime",
            ImageAttribute::DeregistrationProtection => "deregistrationProtection",
        }
    }
}

/// The thin EC2 client: one per process, any region per call.
#[derive(Debug)]
pub struct Ec2 {
    transport: Transport,
}

impl Ec2 {
    /// Everything from the shared configuration; no I/O until the first call.
    pub fn new(sdk: &SdkConfig) -> Self {
        Ec2 {
            transport: Transport::new(sdk),
        }
    }

    /// Over a given transport (tests: a fake HTTP connector).
    pub fn with_transport(transport: Transport) -> Self {
        Ec2 { transport }
    }

    /// Any EC2 action, raw: for an operation without a typed method here.
    pub async fn call(&self, region: &str, params: &Params) -> Result<Reply, CallError> {
        self.transport.call(region, params).await
    }

    /// `DescribeImages(ImageId.N, IncludeDeprecated, IncludeDisabled)`, every page. An owner
    /// sees deprecated and disabled AMIs anyway; asking explicitly means none is missed.
    pub async fn describe_images(
        &self,
        region: &str,
        image_ids: &[&str],
    ) -> Result<Vec<Image>, CallError> {
        let params = Params::new("DescribeImages")
            .list("ImageId", image_ids.iter().copied())
            .flag("IncludeDeprecated", true)
            .flag("IncludeDisabled", true);
        self.transport
            .paginate(region, &params, |root| {
                items(root, "imagesSet").map(parse_image).collect()
            })
            .await
    }

    /// `DescribeSnapshots(Owner.1=self, Filter description=…)`, every page: the ids of our own
    /// snapshots whose description matches one of `descriptions` (`*` is a wildcard).
    pub async fn own_snapshots_described(
        &self,
        region: &str,
        descriptions: &[String],
    ) -> Result<Vec<String>, CallError> {
        let params = Params::new("DescribeSnapshots")
            .list("Owner", ["self"])
            .structs("Filter", &[descriptions], |p, at, values| {
                p.set(format!("{at}.Name"), "description")
                    .list(&format!("{at}.Value"), values.iter().map(String::as_str))
            });
        self.transport
            .paginate(region, &params, |root| {
                items(root, "snapshotSet")
                    .filter_map(|s| text(s, "snapshotId"))
                    .collect()
            })
            .await
    }

    /// `DeregisterImage(ImageId)`.
    pub async fn deregister_image(&self, region: &str, image_id: &str) -> Result<(), CallError> {
        let params = Params::new("DeregisterImage").set("ImageId", image_id);
        self.transport.call(region, &params).await.map(drop)
    }

    /// `DeleteSnapshot(SnapshotId)`.
    pub async fn delete_snapshot(&self, region: &str, snapshot_id: &str) -> Result<(), CallError> {
        let params = Params::new("DeleteSnapshot").set("SnapshotId", snapshot_id);
        self.transport.call(region, &params).await.map(drop)
    }

    /// `DescribeImageReferences`, every page: what uses these AMIs, among `resource_types`
    /// (or every type EC2 can check, with `include_all_resource_types`).
    pub async fn describe_image_references(
        &self,
        region: &str,
        image_ids: &[&str],
        include_all_resource_types: bool,
        resource_types: &[ResourceTypeRequest],
    ) -> Result<Vec<ImageReference>, CallError> {
        let params = image_references_params(image_ids, include_all_resource_types, resource_types);
        self.transport
            .paginate(region, &params, |root| {
                items(root, "imageReferenceSet")
                    .map(parse_image_reference)
                    .collect()
            })
            .await
    }

    /// `DescribeImageAttribute(ImageId, Attribute)`: the attribute's value, `None` when the
    /// AMI has none (never launched, say).
    pub async fn describe_image_attribute(
        &self,
        region: &str,
        image_id: &str,
        attribute: ImageAttribute,
    ) -> Result<Option<String>, CallError> {
        let params = Params::new("DescribeImageAttribute")
            .set("Attribute", attribute.name())
            .set("ImageId", image_id);
        let reply = self.transport.call(region, &params).await?;
        let doc = reply.document()?;
        Ok(parse_image_attribute(doc.root_element(), attribute))
    }
}

/// DescribeImageReferences' parameters: `ImageId.N`, `IncludeAllResourceTypes`,
/// `ResourceType.N.ResourceType`, `ResourceType.N.ResourceTypeOption.M.OptionName` and
/// `….OptionValue.K` (EC2's query names for the `ResourceTypes` / `ResourceTypeOptions` /
/// `OptionValues` members).
fn image_references_params(
    image_ids: &[&str],
    include_all_resource_types: bool,
    resource_types: &[ResourceTypeRequest],
) -> Params {
    let params = Params::new("DescribeImageReferences").list("ImageId", image_ids.iter().copied());
    let params = if include_all_resource_types {
        params.flag("IncludeAllResourceTypes", true)
    } else {
        params
    };
    params.structs("ResourceType", resource_types, |p, at, request| {
        p.set(format!("{at}.ResourceType"), request.resource_type.as_str())
            .structs(
                &format!("{at}.ResourceTypeOption"),
                &request.options,
                |p, at, option| {
                    p.set(format!("{at}.OptionName"), option.name.as_str())
                        .list(&format!("{at}.OptionValue"), option.values.iter().map(String::as_str))
                },
            )
    })
}

/// One `imagesSet/item`.
fn parse_image(item: Node<'_, '_>) -> Image {
    Image {
        image_id: text(item, "imageId").unwrap_or_default(),
        owner_id: text(item, "imageOwnerId"),
        state: text(item, "imageState"),
        snapshot_ids: items(item, "blockDeviceMapping")
            .filter_map(|m| super::query::child(m, "ebs"))
            .filter_map(|ebs| text(ebs, "snapshotId"))
            .filter(|id| !id.is_empty())
            .collect(),
        tags: items(item, "tagSet")
            .filter_map(|t| Some((text(t, "key")?, text(t, "value").unwrap_or_default())))
            .collect(),
        last_launched_time: text(item, "lastLaunchedTime").filter(|t| !t.is_empty()),
        deregistration_protection: text(item, "deregistrationProtection")
            .filter(|t| !t.is_empty()),
    }
}

/// One `imageReferenceSet/item`.
fn parse_image_reference(item: Node<'_, '_>) -> ImageReference {
    ImageReference {
        image_id: text(item, "imageId").unwrap_or_default(),
        resource_type: text(item, "resourceType").unwrap_or_default(),
        arn: text(item, "arn").unwrap_or_default(),
    }
}

/// `<lastLaunchedTime><value>…</value></lastLaunchedTime>` (an attribute without a value is
/// sent as an empty element).
fn parse_image_attribute(root: Node<'_, '_>, attribute: ImageAttribute) -> Option<String> {
    let element = super::query::child(root, attribute.name())?;
    text(element, "value").filter(|v| !v.is_empty())
}
