//! The plan (pure): from GetImage's `outputResources` to the pieces to delete.
//!
//! Decided here, before any call: which pieces the mode covers, which belong to another
//! account (distributed copies: never touched), which container URIs cannot be parsed, and
//! how container images group into one BatchDeleteImage call per repository.

use crate::arn::ImageArn;
use crate::output_resources::entry::{ResourceEntry, ResourceKind, ResourceStatus};
use crate::output_resources::mode::Mode;
use crate::output_resources::uri;
use crate::ports::{ImageReference, OutputResources};

/// BatchDeleteImage takes at most 100 image ids per call.
pub const ECR_BATCH_LIMIT: usize = 100;

/// What to do for one image build version's output resources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Own-account AMIs, in GetImage order, deduplicated.
    pub amis: Vec<AmiTask>,
    /// Own-account container images, one group per (region, registry, repository).
    pub containers: Vec<ContainerGroup>,
    /// Pieces decided without any call: foreign-account skips and unparseable URIs.
    pub settled: Vec<ResourceEntry>,
}

impl Plan {
    /// Whether there is nothing to call for (settled entries may still exist).
    pub fn has_work(&self) -> bool {
        !self.amis.is_empty() || !self.containers.is_empty()
    }
}

/// One own-account AMI to deregister (with its snapshots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmiTask {
    pub region: String,
    pub image_id: String,
    /// The image's (and so the AMI's) account.
    pub account_id: String,
}

/// Container images in one repository: one BatchDeleteImage call per 100.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerGroup {
    pub region: String,
    pub registry_id: String,
    pub repository: String,
    /// `<x.y.z>-<build>`: the tag Image Builder gives this build's own container image.
    pub version_tag: String,
    pub images: Vec<ContainerImage>,
}

/// One container image: its URI as GetImage reported it, and the parsed tag or digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage {
    pub uri: String,
    pub reference: ImageReference,
}

/// Error code of a container URI that is not an ECR image URI (permanent: a retry cannot
/// parse it either).
pub const INVALID_IMAGE_URI: &str = "InvalidImageUri";

/// Builds the plan for the image build version `arn`: an AMI or registry in another account
/// than the ARN's is a distributed copy (`skippedForeignAccount`); an entry without a region
/// is taken to be in the ARN's region.
pub fn build(resources: &OutputResources, arn: &ImageArn, mode: Mode) -> Plan {
    let (image_account, image_region) = (arn.account(), arn.region());
    let mut plan = Plan::default();
    if mode.amis() {
        plan_amis(&mut plan, resources, image_account, image_region);
    }
    if mode.containers() {
        let version_tag = format!("{}-{}", arn.version(), arn.build());
        plan_containers(
            &mut plan,
            resources,
            image_account,
            image_region,
            &version_tag,
        );
    }
    plan
}

/// Own-account AMIs, once each in GetImage order; foreign ones settled.
fn plan_amis(
    plan: &mut Plan,
    resources: &OutputResources,
    image_account: &str,
    image_region: &str,
) {
    for ami in &resources.amis {
        // An AMI entry without an id (a failed distribution) names nothing to delete.
        let Some(image_id) = ami.image_id.as_deref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let region = ami.region.as_deref().unwrap_or(image_region).to_string();
        let account = ami.account_id.as_deref().unwrap_or(image_account);
        if plan
            .amis
            .iter()
            .any(|t| t.image_id == image_id && t.region == region)
            || plan
                .settled
                .iter()
                .any(|e| e.id == image_id && e.region == region)
        {
            continue;
        }
        if account != image_account {
            plan.settled.push(foreign(
                ResourceKind::Ami,
                image_id,
                &region,
                account,
                image_account,
            ));
            continue;
        }
        plan.amis.push(AmiTask {
            region,
            image_id: image_id.to_string(),
            account_id: image_account.to_string(),
        });
    }
}

/// Own-account container images grouped per repository; foreign and unparseable URIs settled.
fn plan_containers(
    plan: &mut Plan,
    resources: &OutputResources,
    image_account: &str,
    image_region: &str,
    version_tag: &str,
) {
    for container in &resources.containers {
        let entry_region = container.region.as_deref().unwrap_or(image_region);
        for raw in &container.image_uris {
            let parsed = match uri::parse(raw) {
                Ok(p) => p,
                Err(e) => {
                    plan.settled.push(
                        ResourceEntry::new(
                            ResourceKind::ContainerImage,
                            raw.clone(),
                            entry_region,
                            None,
                            ResourceStatus::Failed,
                        )
                        .failed(INVALID_IMAGE_URI, e.to_string(), false),
                    );
                    continue;
                }
            };
            // The URI's host names the registry that holds the image; it wins over the
            // entry's region should the two ever disagree.
            if parsed.registry_id != image_account {
                if !plan.settled.iter().any(|e| &e.id == raw) {
                    plan.settled.push(foreign(
                        ResourceKind::ContainerImage,
                        raw,
                        &parsed.region,
                        &parsed.registry_id,
                        image_account,
                    ));
                }
                continue;
            }
            let group = match plan.containers.iter_mut().position(|g| {
                g.region == parsed.region
                    && g.registry_id == parsed.registry_id
                    && g.repository == parsed.repository
            }) {
                Some(i) => &mut plan.containers[i],
                None => {
                    plan.containers.push(ContainerGroup {
                        region: parsed.region.clone(),
                        registry_id: parsed.registry_id.clone(),
                        repository: parsed.repository.clone(),
                        version_tag: version_tag.to_string(),
                        images: Vec::new(),
                    });
                    plan.containers.last_mut().expect("just pushed")
                }
            };
            if !group.images.iter().any(|i| i.reference == parsed.reference) {
                group.images.push(ContainerImage {
                    uri: raw.clone(),
                    reference: parsed.reference,
                });
            }
        }
    }
}

fn foreign(
    kind: ResourceKind,
    id: &str,
    region: &str,
    account: &str,
    image_account: &str,
) -> ResourceEntry {
    ResourceEntry::new(
        kind,
        id,
        region,
        Some(account.to_string()),
        ResourceStatus::SkippedForeignAccount,
    )
    .with_message(format!(
        "in account {account}, not the image's account {image_account}: a distributed copy, not touched"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{OutputAmi, OutputContainer};

    fn arn(region: &str) -> ImageArn {
        crate::arn::parse(&format!(
            "arn:aws:imagebuilder:{region}:{OWN}:image/web/1.0.0/1"
        ))
        .expect("a valid ARN")
    }

    const OWN: &str = "123456789012";
    const OTHER: &str = "210987654321";

    fn ami(region: &str, id: &str, account: Option<&str>) -> OutputAmi {
        OutputAmi {
            region: Some(region.into()),
            image_id: Some(id.into()),
            account_id: account.map(String::from),
        }
    }

    fn resources() -> OutputResources {
        OutputResources {
            amis: vec![
                ami("us-east-1", "ami-1", Some(OWN)),
                ami("eu-west-1", "ami-2", None),
                ami("us-east-1", "ami-3", Some(OTHER)),
                ami("us-east-1", "ami-1", Some(OWN)),
                OutputAmi {
                    region: Some("us-west-2".into()),
                    image_id: None,
                    account_id: None,
                },
            ],
            containers: vec![OutputContainer {
                region: Some("us-east-1".into()),
                image_uris: vec![
                    format!("{OWN}.dkr.ecr.us-east-1.amazonaws.com/web:1.0.0-1"),
                    format!("{OWN}.dkr.ecr.us-east-1.amazonaws.com/web:latest"),
                    format!("{OWN}.dkr.ecr.us-east-1.amazonaws.com/web:latest"),
                    format!("{OWN}.dkr.ecr.us-east-1.amazonaws.com/api:1"),
                    format!("{OTHER}.dkr.ecr.us-east-1.amazonaws.com/web:1"),
                    "not a uri".into(),
                ],
            }],
        }
    }

    #[test]
    fn all_mode_plans_own_amis_groups_images_by_repository_and_settles_the_rest() {
        // GIVEN a GetImage output with own, foreign, duplicate and id-less AMIs and mixed URIs
        // WHEN planned for everything
        let plan = build(&resources(), &arn("us-east-1"), Mode::All);
        // THEN own AMIs once each, in order, an id-less entry ignored
        let amis: Vec<(&str, &str)> = plan
            .amis
            .iter()
            .map(|t| (t.region.as_str(), t.image_id.as_str()))
            .collect();
        assert_eq!(amis, [("us-east-1", "ami-1"), ("eu-west-1", "ami-2")]);
        // AND one group per repository, duplicates dropped
        assert_eq!(plan.containers.len(), 2);
        assert_eq!(plan.containers[0].repository, "web");
        assert_eq!(plan.containers[0].version_tag, "1.0.0-1");
        assert_eq!(
            plan.containers[0]
                .images
                .iter()
                .map(|i| i.reference.clone())
                .collect::<Vec<_>>(),
            [
                ImageReference::Tag("1.0.0-1".into()),
                ImageReference::Tag("latest".into())
            ]
        );
        assert_eq!(plan.containers[1].repository, "api");
        // AND the foreign AMI, the foreign image and the bad URI are settled up front
        let settled: Vec<(&str, ResourceStatus)> = plan
            .settled
            .iter()
            .map(|e| (e.id.as_str(), e.status))
            .collect();
        assert_eq!(
            settled,
            [
                ("ami-3", ResourceStatus::SkippedForeignAccount),
                (
                    "210987654321.dkr.ecr.us-east-1.amazonaws.com/web:1",
                    ResourceStatus::SkippedForeignAccount
                ),
                ("not a uri", ResourceStatus::Failed),
            ]
        );
        assert_eq!(
            plan.settled[2].error_code.as_deref(),
            Some(INVALID_IMAGE_URI)
        );
        assert_eq!(plan.settled[2].retryable, Some(false));
        assert_eq!(plan.settled[0].account_id.as_deref(), Some(OTHER));
    }

    #[test]
    fn the_mode_selects_what_is_planned() {
        let amis = build(&resources(), &arn("us-east-1"), Mode::Amis);
        assert_eq!(amis.amis.len(), 2);
        assert!(amis.containers.is_empty());
        assert_eq!(amis.settled.len(), 1);

        let containers = build(&resources(), &arn("us-east-1"), Mode::Containers);
        assert!(containers.amis.is_empty());
        assert_eq!(containers.containers.len(), 2);

        let none = build(&resources(), &arn("us-east-1"), Mode::None);
        assert_eq!(none, Plan::default());
        assert!(!none.has_work());
    }

    #[test]
    fn an_ami_without_region_is_in_the_images_region() {
        let r = OutputResources {
            amis: vec![OutputAmi {
                region: None,
                image_id: Some("ami-9".into()),
                account_id: None,
            }],
            containers: vec![],
        };
        let plan = build(&r, &arn("ap-south-1"), Mode::All);
        assert_eq!(plan.amis[0].region, "ap-south-1");
        assert_eq!(plan.amis[0].account_id, OWN);
    }
}
