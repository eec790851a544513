//! DescribeImageReferences semantics, with no I/O: which resources reference which AMIs,
//! given the instances and launch-template versions read from moto and the references set
//! through the control API; plus ARNs and pagination.

use std::collections::{BTreeMap, BTreeSet};

/// The resource types EC2 checks for image references (the model's
/// `ImageReferenceResourceType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Instance,
    LaunchTemplate,
    SsmParameter,
    ImageRecipe,
    ContainerRecipe,
}

impl ResourceType {
    /// Every type, in the order EC2's documentation lists them (also the answer order).
    pub const ALL: [ResourceType; 5] = [
        ResourceType::Instance,
        ResourceType::LaunchTemplate,
        ResourceType::SsmParameter,
        ResourceType::ImageRecipe,
        ResourceType::ContainerRecipe,
    ];

    /// The wire name, e.g. `ec2:Instance`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Instance => "ec2:Instance",
            ResourceType::LaunchTemplate => "ec2:LaunchTemplate",
            ResourceType::SsmParameter => "ssm:Parameter",
            ResourceType::ImageRecipe => "imagebuilder:ImageRecipe",
            ResourceType::ContainerRecipe => "imagebuilder:ContainerRecipe",
        }
    }

    /// The type with this wire name (exact, as EC2 matches enum values).
    pub fn parse(s: &str) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One resource that references an AMI (the model's `ImageReference`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageReference {
    pub image_id: String,
    /// Wire name of the resource type, e.g. `ssm:Parameter`.
    pub resource_type: String,
    pub arn: String,
}

/// Options for one resource type; `None` means EC2's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TypeOptions {
    /// `state-name` for instances (default: every state).
    pub states: Option<Vec<String>>,
    /// `version-depth` for launch templates (default [`DEFAULT_VERSION_DEPTH`]).
    pub version_depth: Option<u32>,
}

/// The resource types a request checks, with their options.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scope(pub BTreeMap<ResourceType, TypeOptions>);

/// A validated DescribeImageReferences request.
#[derive(Clone, Debug)]
pub(crate) struct ReferenceQuery {
    pub image_ids: Vec<String>,
    pub scope: Scope,
    pub max_results: Option<usize>,
    pub next_token: Option<String>,
}

/// EC2 checks the newest 10 versions of each launch template unless told otherwise.
pub(crate) const DEFAULT_VERSION_DEPTH: u32 = 10;
/// moto's account when an answer does not name one.
pub(crate) const DEFAULT_ACCOUNT: &str = "123456789012";

/// An instance as DescribeInstances reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Instance {
    pub instance_id: String,
    pub image_id: String,
    pub state: String,
    pub owner_id: Option<String>,
}

/// One launch-template version as DescribeLaunchTemplateVersions reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TemplateVersion {
    pub template_id: String,
    pub version: u64,
    pub image_id: Option<String>,
    /// `createdBy`, an IAM ARN whose account is the template's.
    pub created_by: Option<String>,
}

/// What moto holds that can reference an AMI.
#[derive(Clone, Debug, Default)]
pub(crate) struct Inventory {
    pub instances: Vec<Instance>,
    pub versions: Vec<TemplateVersion>,
}

/// Every reference to the requested AMIs within the scope, ordered by the request's image
/// order, then resource type, then ARN, without duplicates. `extra` are the references set
/// through the control API (any type; kept when in scope).
pub(crate) fn compute(
    query: &ReferenceQuery,
    region: &str,
    inventory: &Inventory,
    extra: &[ImageReference],
) -> Vec<ImageReference> {
    let wanted: BTreeSet<&str> = query.image_ids.iter().map(String::as_str).collect();
    let mut found: BTreeSet<(ResourceType, ImageReference)> = BTreeSet::new();
    let scope = &query.scope.0;
    if let Some(opts) = scope.get(&ResourceType::Instance) {
        for i in &inventory.instances {
            let state_ok = opts.states.as_ref().is_none_or(|s| s.contains(&i.state));
            if state_ok && wanted.contains(i.image_id.as_str()) {
                let account = i.owner_id.as_deref().unwrap_or(DEFAULT_ACCOUNT);
                let arn = arn(region, account, "instance", &i.instance_id);
                found.insert((
                    ResourceType::Instance,
                    reference(&i.image_id, ResourceType::Instance, arn),
                ));
            }
        }
    }
    if let Some(opts) = scope.get(&ResourceType::LaunchTemplate) {
        let depth = opts.version_depth.unwrap_or(DEFAULT_VERSION_DEPTH);
        for v in newest_versions(&inventory.versions, depth) {
            let Some(image) = v.image_id.as_deref().filter(|i| wanted.contains(i)) else {
                continue;
            };
            let account = v
                .created_by
                .as_deref()
                .and_then(account_of)
                .unwrap_or(DEFAULT_ACCOUNT);
            let arn = arn(region, account, "launch-template", &v.template_id);
            found.insert((
                ResourceType::LaunchTemplate,
                reference(image, ResourceType::LaunchTemplate, arn),
            ));
        }
    }
    for r in extra {
        let Some(t) = ResourceType::parse(&r.resource_type) else {
            continue;
        };
        if scope.contains_key(&t) && wanted.contains(r.image_id.as_str()) {
            found.insert((t, r.clone()));
        }
    }
    let mut out: Vec<(usize, ResourceType, ImageReference)> = found
        .into_iter()
        .map(|(t, r)| {
            let pos = query.image_ids.iter().position(|i| *i == r.image_id);
            (pos.unwrap_or(usize::MAX), t, r)
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, _, r)| r).collect()
}

fn reference(image_id: &str, t: ResourceType, arn: String) -> ImageReference {
    ImageReference {
        image_id: image_id.to_string(),
        resource_type: t.as_str().to_string(),
        arn,
    }
}

/// The newest `depth` versions of each template (highest version numbers).
fn newest_versions(versions: &[TemplateVersion], depth: u32) -> Vec<&TemplateVersion> {
    let mut by_template: BTreeMap<&str, Vec<&TemplateVersion>> = BTreeMap::new();
    for v in versions {
        by_template
            .entry(v.template_id.as_str())
            .or_default()
            .push(v);
    }
    let depth = usize::try_from(depth).unwrap_or(usize::MAX);
    by_template
        .into_values()
        .flat_map(|mut vs| {
            vs.sort_by_key(|v| std::cmp::Reverse(v.version));
            vs.truncate(depth);
            vs
        })
        .collect()
}

/// The partition a region belongs to, for ARNs.
pub(crate) fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else {
        "aws"
    }
}

/// `arn:PARTITION:ec2:REGION:ACCOUNT:KIND/ID`.
pub(crate) fn arn(region: &str, account: &str, kind: &str, id: &str) -> String {
    format!(
        "arn:{}:ec2:{region}:{account}:{kind}/{id}",
        partition(region)
    )
}

/// The account field of an ARN (`arn:aws:iam::123456789012:root` → `123456789012`).
fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// Tokens are `ir.OFFSET`: opaque to clients, and stateless here because every page is
/// recomputed from moto's current state.
const TOKEN_PREFIX: &str = "ir.";

/// One page of `all`: the items from the token's offset, at most `max_results` (all when
/// `None`), and the token for the next page. An unreadable token is an error message.
pub(crate) fn page(
    all: Vec<ImageReference>,
    max_results: Option<usize>,
    next_token: Option<&str>,
) -> Result<(Vec<ImageReference>, Option<String>), String> {
    let start = match next_token.filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= all.len())
            .ok_or_else(|| format!("Invalid NextToken {t:?}"))?,
    };
    let size = max_results.unwrap_or(usize::MAX);
    let end = start.saturating_add(size).min(all.len());
    let next = (end < all.len()).then(|| format!("{TOKEN_PREFIX}{end}"));
    let items = all.into_iter().skip(start).take(end - start).collect();
    Ok((items, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(ids: &[&str], types: &[(ResourceType, TypeOptions)]) -> ReferenceQuery {
        ReferenceQuery {
            image_ids: ids.iter().map(|s| s.to_string()).collect(),
            scope: Scope(types.iter().cloned().collect()),
            max_results: None,
            next_token: None,
        }
    }

    fn lt_versions(n: u64, image_at: u64) -> Vec<TemplateVersion> {
        (1..=n)
            .map(|v| TemplateVersion {
                template_id: "lt-1".into(),
                version: v,
                image_id: Some(if v == image_at { "ami-a" } else { "ami-z" }.into()),
                created_by: Some("arn:aws:iam::111122223333:root".into()),
            })
            .collect()
    }

    #[test]
    fn launch_template_depth_counts_from_the_newest_version() {
        // GIVEN a template with 12 versions, only version 1 using ami-a
        let inv = Inventory {
            instances: vec![],
            versions: lt_versions(12, 1),
        };
        let deep = TypeOptions {
            version_depth: Some(10_000),
            ..Default::default()
        };
        // THEN the default depth misses it and depth 10000 finds it, with the template's account
        let shallow = query(
            &["ami-a"],
            &[(ResourceType::LaunchTemplate, TypeOptions::default())],
        );
        assert!(compute(&shallow, "us-east-1", &inv, &[]).is_empty());
        let deep = query(&["ami-a"], &[(ResourceType::LaunchTemplate, deep)]);
        let refs = compute(&deep, "us-east-1", &inv, &[]);
        assert_eq!(refs.len(), 1);
        assert_eq!(
            refs[0].arn,
            "arn:aws:ec2:us-east-1:111122223333:launch-template/lt-1"
        );
        assert_eq!(refs[0].resource_type, "ec2:LaunchTemplate");
    }

    #[test]
    fn instances_filter_by_state_and_order_follows_the_request() {
        let inst = |id: &str, img: &str, state: &str| Instance {
            instance_id: id.into(),
            image_id: img.into(),
            state: state.into(),
            owner_id: None,
        };
        let inv = Inventory {
            instances: vec![
                inst("i-1", "ami-a", "terminated"),
                inst("i-2", "ami-b", "running"),
                inst("i-3", "ami-c", "running"),
            ],
            versions: vec![],
        };
        let extra = [ImageReference {
            image_id: "ami-b".into(),
            resource_type: "ssm:Parameter".into(),
            arn: "arn:aws:ssm:us-east-1:123456789012:parameter/x".into(),
        }];
        let all = query(
            &["ami-b", "ami-a"],
            &[
                (ResourceType::Instance, TypeOptions::default()),
                (ResourceType::SsmParameter, TypeOptions::default()),
            ],
        );
        let refs = compute(&all, "cn-north-1", &inv, &extra);
        let arns: Vec<&str> = refs.iter().map(|r| r.arn.as_str()).collect();
        assert_eq!(
            arns,
            [
                "arn:aws-cn:ec2:cn-north-1:123456789012:instance/i-2",
                "arn:aws:ssm:us-east-1:123456789012:parameter/x",
                "arn:aws-cn:ec2:cn-north-1:123456789012:instance/i-1",
            ]
        );
        let running = TypeOptions {
            states: Some(vec!["running".into()]),
            ..Default::default()
        };
        let only_running = query(&["ami-a"], &[(ResourceType::Instance, running)]);
        assert!(compute(&only_running, "us-east-1", &inv, &extra).is_empty());
    }

    #[test]
    fn pages_through_with_tokens_and_rejects_bad_ones() {
        let all: Vec<ImageReference> = (0..7)
            .map(|i| reference("ami-a", ResourceType::Instance, format!("arn-{i}")))
            .collect();
        let (p1, t1) = page(all.clone(), Some(5), None).unwrap();
        assert_eq!((p1.len(), t1.as_deref()), (5, Some("ir.5")));
        let (p2, t2) = page(all.clone(), Some(5), t1.as_deref()).unwrap();
        assert_eq!((p2.len(), t2), (2, None));
        assert_eq!(page(all.clone(), None, None).unwrap().0.len(), 7);
        for bad in ["x", "ir.99", "ir.-1"] {
            assert!(page(all.clone(), Some(5), Some(bad)).is_err());
        }
    }
}
