//! ECR image URI parsing (pure).
//!
//! Image Builder reports a container image's output as URIs of the form
//! `ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG` or `…/REPO@sha256:HEX`. BatchDeleteImage
//! needs the parts: registry id (account), region, repository name and a tag or digest.

use std::fmt;

use crate::ports::ImageReference;

/// A parsed ECR image URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EcrImageUri {
    /// The registry id: the 12-digit account that owns the repository.
    pub registry_id: String,
    /// The registry's region (from the host name).
    pub region: String,
    /// Repository name, possibly with namespaces (`team/web`).
    pub repository: String,
    /// The tag or digest. When a URI carries both (`REPO:TAG@sha256:…`) the digest wins:
    /// it names the exact image Image Builder produced even if the tag has moved since.
    pub reference: ImageReference,
}

impl fmt::Display for EcrImageUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.dkr.ecr.{}.amazonaws.com/{}{}",
            self.registry_id, self.region, self.repository, self.reference
        )
    }
}

/// Why a URI could not be parsed (the message names the expected form).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{uri:?} is not an ECR image URI ({reason}); expected ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG or …/REPOSITORY@sha256:DIGEST")]
pub struct InvalidImageUri {
    pub uri: String,
    pub reason: &'static str,
}

/// Parses an ECR image URI. Accepted hosts: `ACCOUNT.dkr.ecr.REGION.amazonaws.com`, its
/// China (`.amazonaws.com.cn`) and FIPS (`dkr.ecr-fips`) forms and the dual-stack
/// `ACCOUNT.dkr-ecr.REGION.on.aws`. A leading `https://` is tolerated.
pub fn parse(uri: &str) -> Result<EcrImageUri, InvalidImageUri> {
    let bad = |reason| InvalidImageUri {
        uri: uri.to_string(),
        reason,
    };
    let s = uri.trim();
    let s = s.strip_prefix("https://").unwrap_or(s);
    let (host, path) = s.split_once('/').ok_or_else(|| bad("no repository path"))?;
    let (registry_id, region) =
        parse_host(host).ok_or_else(|| bad("the host is not an ECR registry"))?;

    // The digest is everything after '@'; a tag is after the last ':' of the last path segment
    // (repository names cannot contain ':' or '@').
    let (name_and_tag, digest) = match path.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (path, None),
    };
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match name_and_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_and_tag[..last_slash + i],
            Some(&name_and_tag[last_slash + i + 1..]),
        ),
        None => (name_and_tag, None),
    };
    if !is_repository_name(repository) {
        return Err(bad("invalid repository name"));
    }
    let reference = match (digest, tag) {
        (Some(d), _) => {
            if !is_digest(d) {
                return Err(bad("invalid digest"));
            }
            ImageReference::Digest(d.to_string())
        }
        (None, Some(t)) => {
            if !is_tag(t) {
                return Err(bad("invalid tag"));
            }
            ImageReference::Tag(t.to_string())
        }
        (None, None) => return Err(bad("neither a tag nor a digest")),
    };
    Ok(EcrImageUri {
        registry_id: registry_id.to_string(),
        region: region.to_string(),
        repository: repository.to_string(),
        reference,
    })
}

/// `ACCOUNT.dkr.ecr[-fips].REGION.amazonaws.com[.cn]` or `ACCOUNT.dkr-ecr.REGION.on.aws` →
/// (account, region).
fn parse_host(host: &str) -> Option<(&str, &str)> {
    let Some(h) = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))
    else {
        return parse_dual_stack_host(host);
    };
    let (account, rest) = h.split_once('.')?;
    let region = rest
        .strip_prefix("dkr.ecr.")
        .or_else(|| rest.strip_prefix("dkr.ecr-fips."))?;
    (is_account(account) && is_region(region)).then_some((account, region))
}

/// Dual-stack form, checked separately so the common path above stays simple.
fn parse_dual_stack_host(host: &str) -> Option<(&str, &str)> {
    let h = host.strip_suffix(".on.aws")?;
    let (account, rest) = h.split_once('.')?;
    let region = rest.strip_prefix("dkr-ecr.")?;
    (is_account(account) && is_region(region)).then_some((account, region))
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_region(s: &str) -> bool {
    !s.is_empty()
        && !s.contains('.')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.contains('-')
}

/// ECR repository names: 2–256 characters, lowercase, components of `[a-z0-9._-]` separated
/// by `/`, each starting with a letter or digit.
fn is_repository_name(s: &str) -> bool {
    (2..=256).contains(&s.len())
        && s.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
        })
}

/// ECR tags: 1–300 characters of `[A-Za-z0-9_.-]` (Docker's own limit is 128; ECR allows 300).
fn is_tag(s: &str) -> bool {
    (1..=300).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `sha256:` followed by 64 lowercase hex digits (the only algorithm ECR produces).
fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7";

    #[test]
    fn tag_uri_is_split_into_registry_region_repository_and_tag() {
        // GIVEN the URI Image Builder reports for a tagged container image
        // WHEN parsed THEN every part BatchDeleteImage needs is there
        let u = parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/web:1.0.0-1").unwrap();
        assert_eq!(u.registry_id, "123456789012");
        assert_eq!(u.region, "us-east-1");
        assert_eq!(u.repository, "web");
        assert_eq!(u.reference, ImageReference::Tag("1.0.0-1".into()));
    }

    #[test]
    fn digest_uri_and_namespaced_repository() {
        let u = parse(&format!(
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/web-app@{DIGEST}"
        ))
        .unwrap();
        assert_eq!(u.repository, "team/web-app");
        assert_eq!(u.reference, ImageReference::Digest(DIGEST.into()));
    }

    #[test]
    fn digest_wins_over_tag_when_both_are_given() {
        let u = parse(&format!(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:latest@{DIGEST}"
        ))
        .unwrap();
        assert_eq!(u.repository, "web");
        assert_eq!(u.reference, ImageReference::Digest(DIGEST.into()));
    }

    #[test]
    fn china_fips_dual_stack_and_https_forms_are_accepted() {
        for (uri, region) in [
            (
                "210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn/web:1",
                "cn-north-1",
            ),
            (
                "210987654321.dkr.ecr-fips.us-gov-west-1.amazonaws.com/web:1",
                "us-gov-west-1",
            ),
            ("210987654321.dkr-ecr.ap-south-1.on.aws/web:1", "ap-south-1"),
            (
                "https://210987654321.dkr.ecr.us-east-2.amazonaws.com/web:1",
                "us-east-2",
            ),
        ] {
            let u = parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert_eq!(u.region, region, "{uri}");
            assert_eq!(u.registry_id, "210987654321");
        }
    }

    #[test]
    fn display_round_trips_the_canonical_form() {
        let s = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web:1.0.0-1";
        assert_eq!(parse(s).unwrap().to_string(), s);
    }

    #[test]
    fn malformed_uris_are_refused_with_the_reason_and_the_expected_form() {
        for (uri, reason) in [
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                "no repository path",
            ),
            ("docker.io/library/nginx:1", "not an ECR registry"),
            (
                "12345.dkr.ecr.us-east-1.amazonaws.com/web:1",
                "not an ECR registry",
            ),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/web",
                "neither a tag nor a digest",
            ),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/Web:1",
                "invalid repository name",
            ),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:",
                "invalid tag",
            ),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/web@sha256:xyz",
                "invalid digest",
            ),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:a b",
                "invalid tag",
            ),
        ] {
            let e = parse(uri).unwrap_err();
            assert!(e.reason.contains(reason), "{uri}: {}", e.reason);
            let msg = e.to_string();
            assert!(msg.contains(uri) && msg.contains("REPOSITORY:TAG"), "{msg}");
        }
    }
}
