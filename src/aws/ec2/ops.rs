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
                        .list(
                            &format!("{at}.OptionValue"),
                            option.values.iter().map(String::as_str),
                        )
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
        deregistration_protection: text(item, "deregistrationProtection").filter(|t| !t.is_empty()),
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

#[cfg(test)]
mod tests {
    use super::super::fake::{self, error, ok};
    use super::super::query::parse;
    use super::*;
    use crate::ports::ErrorClass;

    /// The DescribeImages example of the EC2 API reference, with an ephemeral mapping, tags,
    /// `lastLaunchedTime` and `deregistrationProtection` added.
    const DESCRIBE_IMAGES: &str = r#"<DescribeImagesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
   <requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>
   <imagesSet>
      <item>
         <imageId>ami-1a2b3c4d</imageId>
         <imageLocation>123456789012/getting-started</imageLocation>
         <imageState>available</imageState>
         <imageOwnerId>123456789012</imageOwnerId>
         <isPublic>false</isPublic>
         <name>getting-started</name>
         <rootDeviceType>ebs</rootDeviceType>
         <rootDeviceName>/dev/sda1</rootDeviceName>
         <blockDeviceMapping>
            <item>
               <deviceName>/dev/sda1</deviceName>
               <ebs>
                  <snapshotId>snap-1a2b3c4d</snapshotId>
                  <volumeSize>15</volumeSize>
                  <deleteOnTermination>false</deleteOnTermination>
                  <volumeType>standard</volumeType>
               </ebs>
            </item>
            <item><deviceName>xvdca</deviceName><virtualName>ephemeral0</virtualName></item>
            <item><deviceName>/dev/sdb</deviceName><ebs><snapshotId>snap-2b3c4d5e</snapshotId></ebs></item>
         </blockDeviceMapping>
         <tagSet>
            <item><key>Name</key><value>web &amp; api</value></item>
            <item><key>keep</key><value/></item>
         </tagSet>
         <lastLaunchedTime>2024-02-10T15:05:26Z</lastLaunchedTime>
         <deregistrationProtection>disabled</deregistrationProtection>
      </item>
      <item>
         <imageId>ami-0000dead</imageId>
         <imageState>deregistered</imageState>
      </item>
   </imagesSet>
</DescribeImagesResponse>"#;

    fn images_of(body: &str) -> Vec<Image> {
        let doc = parse(body).unwrap();
        items(doc.root_element(), "imagesSet")
            .map(parse_image)
            .collect()
    }

    #[test]
    fn describe_images_reads_owner_state_snapshots_tags_and_the_in_use_fields() {
        let images = images_of(DESCRIBE_IMAGES);
        assert_eq!(
            images[0],
            Image {
                image_id: "ami-1a2b3c4d".into(),
                owner_id: Some("123456789012".into()),
                state: Some("available".into()),
                snapshot_ids: vec!["snap-1a2b3c4d".into(), "snap-2b3c4d5e".into()],
                tags: vec![
                    ("Name".into(), "web & api".into()),
                    ("keep".into(), String::new())
                ],
                last_launched_time: Some("2024-02-10T15:05:26Z".into()),
                deregistration_protection: Some("disabled".into()),
            }
        );
        assert_eq!(images[1].state.as_deref(), Some("deregistered"));
        assert!(images[1].snapshot_ids.is_empty() && images[1].owner_id.is_none());
    }

    #[test]
    fn a_reply_without_images_reads_as_none() {
        assert!(
            images_of("<DescribeImagesResponse><imagesSet/></DescribeImagesResponse>").is_empty()
        );
        assert!(images_of("<DescribeImagesResponse/>").is_empty());
    }

    /// moto's RegisterImage AMI as its DescribeImages renders it (no namespace prefix games,
    /// an auto-created snapshot).
    #[test]
    fn describe_images_reads_motos_reply() {
        let body = r#"<DescribeImagesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>4a0a6d6a-example</requestId>
  <imagesSet>
    <item>
      <imageId>ami-4f1d1a5e6b8c2c1f9</imageId>
      <imageLocation>amazon/getting-started</imageLocation>
      <imageState>available</imageState>
      <imageOwnerId>123456789012</imageOwnerId>
      <isPublic>false</isPublic>
      <blockDeviceMapping>
        <item>
          <deviceName>/dev/sda1</deviceName>
          <ebs>
            <snapshotId>snap-0b3a0e0e9b1f7d1c2</snapshotId>
            <volumeSize>15</volumeSize>
            <deleteOnTermination>false</deleteOnTermination>
            <volumeType>standard</volumeType>
          </ebs>
        </item>
      </blockDeviceMapping>
      <tagSet></tagSet>
    </item>
  </imagesSet>
</DescribeImagesResponse>"#;
        let images = images_of(body);
        assert_eq!(images[0].snapshot_ids, ["snap-0b3a0e0e9b1f7d1c2"]);
        assert!(images[0].tags.is_empty() && images[0].last_launched_time.is_none());
    }

    #[tokio::test]
    async fn describe_images_asks_for_deprecated_and_disabled_amis_too() {
        let (ec2, fake) = fake::ec2([ok(DESCRIBE_IMAGES)]);
        let images = ec2
            .describe_images("us-east-1", &["ami-1a2b3c4d"])
            .await
            .unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!(
            fake.sent()[0].body,
            "Action=DescribeImages&Version=2016-11-15&ImageId.1=ami-1a2b3c4d\
             &IncludeDeprecated=true&IncludeDisabled=true"
        );
    }

    #[tokio::test]
    async fn own_snapshots_are_searched_by_description_over_every_page() {
        let (ec2, fake) = fake::ec2([
            ok("<DescribeSnapshotsResponse><snapshotSet><item><snapshotId>snap-1</snapshotId>\
                <description>Created by CreateImage(i-1) for ami-1</description></item></snapshotSet>\
                <nextToken>abc=</nextToken></DescribeSnapshotsResponse>"),
            ok("<DescribeSnapshotsResponse><snapshotSet><item><snapshotId>snap-2</snapshotId></item>\
                </snapshotSet></DescribeSnapshotsResponse>"),
        ]);
        let descriptions = [
            "Created by CreateImage(*) for ami-1".to_string(),
            "x y".into(),
        ];
        let ids = ec2
            .own_snapshots_described("us-east-1", &descriptions)
            .await
            .unwrap();
        assert_eq!(ids, ["snap-1", "snap-2"]);
        let sent = fake.sent();
        assert_eq!(
            sent[0].body,
            "Action=DescribeSnapshots&Version=2016-11-15&Owner.1=self&Filter.1.Name=description\
             &Filter.1.Value.1=Created%20by%20CreateImage%28%2A%29%20for%20ami-1&Filter.1.Value.2=x%20y"
        );
        assert!(
            sent[1].body.ends_with("&NextToken=abc%3D"),
            "{}",
            sent[1].body
        );
    }

    #[tokio::test]
    async fn deregister_and_delete_send_one_id_and_pass_errors_on_classified() {
        let (ec2, fake) = fake::ec2([
            ok("<DeregisterImageResponse><return>true</return></DeregisterImageResponse>"),
            error(
                400,
                "InvalidSnapshot.NotFound",
                "The snapshot 'snap-1' does not exist.",
            ),
        ]);
        ec2.deregister_image("us-east-1", "ami-1").await.unwrap();
        let e = ec2
            .delete_snapshot("us-east-1", "snap-1")
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::NotFound);
        let bodies: Vec<_> = fake.sent().into_iter().map(|s| s.body).collect();
        assert_eq!(
            bodies,
            [
                "Action=DeregisterImage&Version=2016-11-15&ImageId=ami-1",
                "Action=DeleteSnapshot&Version=2016-11-15&SnapshotId=snap-1"
            ]
        );
    }

    #[test]
    fn image_references_params_use_ec2_query_names() {
        let types = [
            ResourceTypeRequest {
                resource_type: "ec2:Instance".into(),
                options: vec![ResourceTypeOption {
                    name: "state-name".into(),
                    values: vec!["running".into(), "stopped".into()],
                }],
            },
            ResourceTypeRequest {
                resource_type: "ssm:Parameter".into(),
                options: vec![],
            },
        ];
        let p = image_references_params(&["ami-1", "ami-2"], false, &types);
        assert_eq!(
            p.encode(),
            "Action=DescribeImageReferences&Version=2016-11-15&ImageId.1=ami-1&ImageId.2=ami-2\
             &ResourceType.1.ResourceType=ec2%3AInstance\
             &ResourceType.1.ResourceTypeOption.1.OptionName=state-name\
             &ResourceType.1.ResourceTypeOption.1.OptionValue.1=running\
             &ResourceType.1.ResourceTypeOption.1.OptionValue.2=stopped\
             &ResourceType.2.ResourceType=ssm%3AParameter"
        );
        let all = image_references_params(&["ami-1"], true, &[]);
        assert!(all
            .encode()
            .ends_with("&ImageId.1=ami-1&IncludeAllResourceTypes=true"));
    }

    #[tokio::test]
    async fn image_references_are_read_over_every_page() {
        let (ec2, fake) = fake::ec2([
            ok(r#"<DescribeImageReferencesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>1a2b3c4d-example</requestId>
    <imageReferenceSet>
        <item>
            <arn>arn:aws:ec2:us-east-1:123456789012:instance/i-1234567890abcdef0</arn>
            <imageId>ami-0abcdef1234567890</imageId>
            <resourceType>ec2:Instance</resourceType>
        </item>
    </imageReferenceSet>
    <nextToken>page-2</nextToken>
</DescribeImageReferencesResponse>"#),
            ok("<DescribeImageReferencesResponse><imageReferenceSet><item>\
                <arn>arn:aws:ec2:us-east-1:123456789012:launch-template/lt-1</arn>\
                <imageId>ami-0abcdef1234567890</imageId><resourceType>ec2:LaunchTemplate</resourceType>\
                </item></imageReferenceSet></DescribeImageReferencesResponse>"),
        ]);
        let refs = ec2
            .describe_image_references("us-east-1", &["ami-0abcdef1234567890"], true, &[])
            .await
            .unwrap();
        assert_eq!(
            refs,
            [
                ImageReference {
                    image_id: "ami-0abcdef1234567890".into(),
                    resource_type: "ec2:Instance".into(),
                    arn: "arn:aws:ec2:us-east-1:123456789012:instance/i-1234567890abcdef0".into(),
                },
                ImageReference {
                    image_id: "ami-0abcdef1234567890".into(),
                    resource_type: "ec2:LaunchTemplate".into(),
                    arn: "arn:aws:ec2:us-east-1:123456789012:launch-template/lt-1".into(),
                },
            ]
        );
        assert!(fake.sent()[1].body.ends_with("&NextToken=page-2"));
    }

    #[tokio::test]
    async fn image_attributes_are_read_from_their_value_element() {
        let (ec2, fake) = fake::ec2([
            ok(r#"<DescribeImageAttributeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>
  <imageId>ami-1234567890EXAMPLE</imageId>
  <lastLaunchedTime><value>2022-02-10T15:05:26Z</value></lastLaunchedTime>
</DescribeImageAttributeResponse>"#),
            ok("<DescribeImageAttributeResponse><imageId>ami-1</imageId>\
                <deregistrationProtection><value>enabled-with-cooldown</value></deregistrationProtection>\
                </DescribeImageAttributeResponse>"),
            ok("<DescribeImageAttributeResponse><imageId>ami-1</imageId><lastLaunchedTime/>\
                </DescribeImageAttributeResponse>"),
            ok("<DescribeImageAttributeResponse><imageId>ami-1</imageId>"),
        ]);
        let last = ImageAttribute::LastLaunchedTime;
        let protection = ImageAttribute::DeregistrationProtection;
        let get = |a| ec2.describe_image_attribute("us-east-1", "ami-1", a);
        assert_eq!(
            get(last).await.unwrap().as_deref(),
            Some("2022-02-10T15:05:26Z")
        );
        assert_eq!(
            get(protection).await.unwrap().as_deref(),
            Some("enabled-with-cooldown")
        );
        assert_eq!(get(last).await.unwrap(), None);
        let e = get(last).await.unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Permanent, "ResponseError")
        );
        assert_eq!(
            fake.sent()[1].body,
            "Action=DescribeImageAttribute&Version=2016-11-15&Attribute=deregistrationProtection\
             &ImageId=ami-1"
        );
    }
}
