//! Wire model of EC2 Image Builder (imagebuilder 2019-12-02, REST-JSON) as far as the
//! emulator serves it: error codes and their HTTP statuses, the `ImageBuildVersionArn`
//! pattern, and the JSON shapes of `Image` / `ImageSummary`.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use serde_json::{json, Value};

/// Error codes of the service model with their modelled HTTP status.
///
/// `ResourceNotFoundException` is what the service answers for an unknown image;
/// `InvalidPaginationTokenException` belongs to the List operations.
pub const ERROR_CODES: &[(&str, u16)] = &[
    ("ServiceException", 500),
    ("ClientException", 400),
    ("InvalidRequestException", 400),
    ("ServiceUnavailableException", 503),
    ("ForbiddenException", 403),
    ("CallRateLimitExceededException", 429),
    ("ResourceDependencyException", 400),
    ("ResourceNotFoundException", 404),
    ("InvalidPaginationTokenException", 400),
];

/// The modelled HTTP status of `code`, or `None` for a code the model does not know.
pub fn status_of(code: &str) -> Option<u16> {
    ERROR_CODES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, status)| *status)
}

/// The parts of a syntactically valid image build-version ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildVersionArn<'a> {
    /// e.g. `us-east-1`.
    pub region: &'a str,
    /// 12-digit account, or `aws` / `aws-…` for AWS-managed images.
    pub account: &'a str,
    /// Image name (`[a-z0-9-_]+`).
    pub name: &'a str,
    /// Semantic version `x.y.z`.
    pub semver: &'a str,
    /// Build number.
    pub build: &'a str,
}

/// Parses `arn` against the model's `ImageBuildVersionArn` pattern:
/// `^arn:aws[^:]*:imagebuilder:[^:]+:(?:[0-9]{12}|aws(?:-[a-z-]+)?):image/[a-z0-9-_]+/[0-9]+\.[0-9]+\.[0-9]+/[0-9]+$`.
pub fn parse_build_version_arn(arn: &str) -> Option<BuildVersionArn<'_>> {
    let mut parts = arn.splitn(6, ':');
    let (prefix, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if prefix != "arn" || !partition.starts_with("aws") || service != "imagebuilder" {
        return None;
    }
    if region.is_empty() {
        return None;
    }
    let account_ok = (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
        || account == "aws"
        || account.strip_prefix("aws-").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        });
    if !account_ok {
        return None;
    }
    let mut segs = resource.split('/');
    let (kind, name, semver, build) = (segs.next()?, segs.next()?, segs.next()?, segs.next()?);
    if segs.next().is_some() || kind != "image" {
        return None;
    }
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let semver_ok = {
        let nums: Vec<&str> = semver.split('.').collect();
        nums.len() == 3 && nums.iter().all(|n| digits(n))
    };
    if !name_ok || !semver_ok || !digits(build) {
        return None;
    }
    Some(BuildVersionArn {
        region,
        account,
        name,
        semver,
        build,
    })
}

/// Parses an image *version* ARN (`…:image/<name>/<x.y.z>`), the input of
/// ListImageBuildVersions; returns it unchanged when valid.
pub fn is_image_version_arn(arn: &str) -> bool {
    // Reuse the build-version parser by appending a build number.
    parse_build_version_arn(&format!("{arn}/1")).is_some()
}

/// A fixed creation date: the emulator's images have no real history, and a constant keeps
/// responses reproducible.
const DATE_CREATED: &str = "2024-01-01T00:00:00.000Z";

/// Default `outputResources` for an image that was seeded without any: one AMI in the
/// image's region with an id derived from the ARN (stable across runs).
fn default_output_resources(arn: &BuildVersionArn<'_>, full_arn: &str) -> Value {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    full_arn.hash(&mut hasher);
    let ami = format!("ami-{:017x}", hasher.finish());
    json!({
        "amis": [{
            "region": arn.region,
            "image": ami,
            "name": format!("{} {}", arn.name, DATE_CREATED),
            "description": format!("Image Builder image {}", arn.name),
            "state": {"status": "AVAILABLE"},
            "accountId": arn.account,
        }],
        "containers": [],
    })
}

/// An image as the emulator stores it.
#[derive(Clone, Debug, Default)]
pub struct ImageRecord {
    /// `state.status`, e.g. `AVAILABLE`.
    pub status: Option<String>,
    /// Image tags.
    pub tags: BTreeMap<String, String>,
    /// `outputResources` verbatim, if seeded.
    pub output_resources: Option<Value>,
}

/// Fields shared by `Image` (GetImage) and `ImageSummary` (ListImageBuildVersions).
fn common_fields(arn: &str, record: &ImageRecord) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("arn".into(), json!(arn));
    m.insert("type".into(), json!("AMI"));
    m.insert("platform".into(), json!("Linux"));
    m.insert(
        "state".into(),
        json!({"status": record.status.as_deref().unwrap_or("AVAILABLE")}),
    );
    m.insert("dateCreated".into(), json!(DATE_CREATED));
    m.insert("tags".into(), json!(record.tags));
    m.insert("buildType".into(), json!("USER_INITIATED"));
    m.insert("imageSource".into(), json!("CUSTOM"));
    if let Some(parsed) = parse_build_version_arn(arn) {
        m.insert("name".into(), json!(parsed.name));
        // Image.version is "x.y.z/build", as the service returns it.
        m.insert(
            "version".into(),
            json!(format!("{}/{}", parsed.semver, parsed.build)),
        );
        m.insert(
            "outputResources".into(),
            record
                .output_resources
                .clone()
                .unwrap_or_else(|| default_output_resources(&parsed, arn)),
        );
        m.insert("owner".into(), json!(parsed.account));
    } else if let Some(out) = &record.output_resources {
        m.insert("outputResources".into(), out.clone());
    }
    m
}

/// The `Image` structure of a GetImage response.
pub fn image_json(arn: &str, record: &ImageRecord) -> Value {
    let mut m = common_fields(arn, record);
    m.remove("owner");
    m.insert("enhancedImageMetadataEnabled".into(), json!(true));
    Value::Object(m)
}

/// The `ImageSummary` structure of a ListImageBuildVersions response.
pub fn image_summary_json(arn: &str, record: &ImageRecord) -> Value {
    Value::Object(common_fields(arn, record))
}

/// A request id shaped like the service's (a random UUID v4).
pub fn request_id() -> String {
    let a = fastrand::u128(..);
    let hex = format!("{a:032x}");
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        8 + (a as u8 & 3),
        &hex[17..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_pattern_accepts_build_versions_and_managed_accounts() {
        // GIVEN ARNs the model's pattern accepts / rejects
        let good = [
            "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.2.0/3",
            "arn:aws-cn:imagebuilder:cn-north-1:123456789012:image/a_b-c/0.0.1/10",
            "arn:aws:imagebuilder:us-east-1:aws:image/amazon-linux/2024.1.0/1",
            "arn:aws:imagebuilder:us-east-1:aws-marketplace:image/x/1.0.0/1",
        ];
        let bad = [
            "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.2.0",
            "arn:aws:imagebuilder:us-east-1:123456789012:image/web/x.x.x/1",
            "arn:aws:imagebuilder:us-east-1:12345678901:image/web/1.0.0/1",
            "arn:aws:imagebuilder:us-east-1:123456789012:image/Web/1.0.0/1",
            "arn:aws:imagebuilder:us-east-1:123456789012:component/web/1.0.0/1",
            "arn:aws:ec2:us-east-1::image/ami-1",
            "arn:aws:imagebuilder::123456789012:image/web/1.0.0/1",
            "",
        ];
        // THEN each is classified as the pattern says
        for arn in good {
            assert!(parse_build_version_arn(arn).is_some(), "{arn}");
        }
        for arn in bad {
            assert!(parse_build_version_arn(arn).is_none(), "{arn}");
        }
    }

    #[test]
    fn image_version_is_semver_slash_build() {
        // GIVEN a seeded image without output resources
        let arn = "arn:aws:imagebuilder:eu-west-1:123456789012:image/web/1.2.0/3";
        // WHEN it is rendered as a GetImage Image
        let img = image_json(arn, &ImageRecord::default());
        // THEN version, state and a default AMI in the image's region are present
        assert_eq!(img["version"], "1.2.0/3");
        assert_eq!(img["name"], "web");
        assert_eq!(img["state"]["status"], "AVAILABLE");
        assert_eq!(img["outputResources"]["amis"][0]["region"], "eu-west-1");
        assert_eq!(
            img["outputResources"]["amis"][0]["accountId"],
            "123456789012"
        );
    }

    #[test]
    fn request_ids_are_uuid_shaped_and_distinct() {
        let (a, b) = (request_id(), request_id());
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        assert_ne!(a, b);
    }
}
