//! Container images by digest, never by tag (pure): which digests a build owns, and what
//! becomes of each URI GetImage lists for it.
//!
//! Image Builder keeps listing every tag it ever pushed for a build, `latest` included, even
//! after a newer build took the tag. Deleting by tag would untag the newer build's image, so
//! each listed tag is resolved to the digest it names now (by the port) and only the build's
//! own digests are deleted: the one its version tag (`<x.y.z>-<build>`) names and any digest
//! listed outright (`…@sha256:…`). A tag naming anything else is left alone.

use std::collections::{BTreeSet, HashMap};

use crate::output_resources::plan::ContainerGroup;
use crate::ports::ImageReference;

/// What becomes of one listed container image URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// The build's own image: deleted by this digest (with every tag it still has).
    Delete(String),
    /// The tag no longer exists: nothing to delete under it.
    Gone,
    /// The tag names an image that is not provably this build's: left alone, with why.
    Moved(String),
}

/// The tags to resolve for a repository: the build's version tag first (it identifies the
/// build's own digest even when GetImage does not list it), then every listed tag, once.
pub fn tags_to_resolve(group: &ContainerGroup) -> Vec<String> {
    let mut tags = vec![group.version_tag.clone()];
    for image in &group.images {
        if let ImageReference::Tag(t) = &image.reference {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
    }
    tags
}

/// The fate of each of the group's images, in order. `resolved` maps each tag of
/// [`tags_to_resolve`] to the digest it names now (`None`: the tag is gone).
pub fn fates(group: &ContainerGroup, resolved: &HashMap<String, Option<String>>) -> Vec<Fate> {
    let now = |tag: &str| resolved.get(tag).cloned().flatten();
    let own: BTreeSet<String> = group
        .images
        .iter()
        .filter_map(|i| match &i.reference {
            ImageReference::Digest(d) => Some(d.clone()),
            ImageReference::Tag(_) => None,
        })
        .chain(now(&group.version_tag))
        .collect();
    group
        .images
        .iter()
        .map(|image| match &image.reference {
            ImageReference::Digest(d) => Fate::Delete(d.clone()),
            ImageReference::Tag(t) => match now(t) {
                None => Fate::Gone,
                Some(d) if own.contains(&d) => Fate::Delete(d),
                Some(d) => Fate::Moved(moved(group, t, &d, &own)),
            },
        })
        .collect()
}

fn moved(group: &ContainerGroup, tag: &str, now: &str, own: &BTreeSet<String>) -> String {
    match own.first() {
        Some(mine) => format!(
            "the tag {tag} now names {now}, not this build's image {mine}: left alone"
        ),
        None => format!(
            "the tag {tag} names {now}, and this build's own image cannot be identified (its version tag {} is gone and no digest is listed): left alone",
            group.version_tag
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output_resources::plan::ContainerImage;

    const MINE: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const NEWER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn group(refs: &[ImageReference]) -> ContainerGroup {
        ContainerGroup {
            region: "us-east-1".into(),
            registry_id: "123456789012".into(),
            repository: "web".into(),
            version_tag: "1.0.0-1".into(),
            images: refs
                .iter()
                .map(|r| ContainerImage {
                    uri: format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/web{r}"),
                    reference: r.clone(),
                })
                .collect(),
        }
    }

    fn tag(t: &str) -> ImageReference {
        ImageReference::Tag(t.into())
    }

    fn resolved(pairs: &[(&str, Option<&str>)]) -> HashMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(t, d)| (t.to_string(), d.map(String::from)))
            .collect()
    }

    #[test]
    fn the_version_tag_comes_first_and_each_tag_is_resolved_once() {
        let g = group(&[tag("latest"), tag("1.0.0-1"), tag("latest")]);
        assert_eq!(tags_to_resolve(&g), ["1.0.0-1", "latest"]);
        let g = group(&[ImageReference::Digest(MINE.into())]);
        assert_eq!(tags_to_resolve(&g), ["1.0.0-1"]);
    }

    #[test]
    fn a_tag_moved_to_a_newer_build_is_left_alone_and_the_own_digest_is_deleted() {
        // GIVEN the build's version tag and `latest`, which a newer build has taken
        let g = group(&[tag("1.0.0-1"), tag("latest")]);
        let r = resolved(&[("1.0.0-1", Some(MINE)), ("latest", Some(NEWER))]);
        // WHEN sorted
        let f = fates(&g, &r);
        // THEN the own image goes by digest and `latest` stays, saying where it points
        assert_eq!(f[0], Fate::Delete(MINE.into()));
        let Fate::Moved(why) = &f[1] else {
            panic!("latest must be left alone: {f:?}")
        };
        assert!(why.contains(NEWER) && why.contains(MINE), "{why}");
    }

    #[test]
    fn a_tag_still_naming_the_own_image_is_deleted_with_it() {
        let g = group(&[tag("1.0.0-1"), tag("latest")]);
        let r = resolved(&[("1.0.0-1", Some(MINE)), ("latest", Some(MINE))]);
        assert_eq!(
            fates(&g, &r),
            [Fate::Delete(MINE.into()), Fate::Delete(MINE.into())]
        );
    }

    #[test]
    fn an_unlisted_version_tag_still_identifies_the_own_image() {
        // GIVEN only `latest` is listed, but the version tag still names the build's image
        let g = group(&[tag("latest")]);
        let r = resolved(&[("1.0.0-1", Some(MINE)), ("latest", Some(MINE))]);
        // THEN `latest` names it too, so it goes
        assert_eq!(fates(&g, &r), [Fate::Delete(MINE.into())]);
    }

    #[test]
    fn without_a_way_to_tell_the_own_image_a_tag_is_left_alone() {
        // GIVEN the version tag is gone and only `latest` is listed
        let g = group(&[tag("latest")]);
        let r = resolved(&[("1.0.0-1", None), ("latest", Some(NEWER))]);
        // THEN `latest` is not deleted: it might be anyone's
        let f = fates(&g, &r);
        assert!(
            matches!(&f[0], Fate::Moved(why) if why.contains("cannot be identified")),
            "{f:?}"
        );
    }

    #[test]
    fn a_listed_digest_is_the_builds_own_and_a_gone_tag_is_gone() {
        let g = group(&[ImageReference::Digest(MINE.into()), tag("latest")]);
        let r = resolved(&[("1.0.0-1", None), ("latest", Some(MINE))]);
        assert_eq!(
            fates(&g, &r),
            [Fate::Delete(MINE.into()), Fate::Delete(MINE.into())]
        );
        let g = group(&[tag("1.0.0-1")]);
        assert_eq!(fates(&g, &resolved(&[("1.0.0-1", None)])), [Fate::Gone]);
    }
}
