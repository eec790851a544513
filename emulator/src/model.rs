//! Wire model of EC2 Image Builder (imagebuilder 2019-12-02, REST-JSON) as far as the
//! emulator serves it: error codes and their HTTP statuses, the ARN patterns, list filters,
//! pagination tokens, ISO-8601 timestamps, and the JSON shapes of `Image`, `ImageSummary`
//! and `ImageVersion`. Pure functions only: this module imports nothing from the crate.

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
    // Not in the service model: what AWS's front end answers when the caller's own
    // credentials are refused, whatever the service.
    ("ExpiredTokenException", 403),
    ("UnrecognizedClientException", 403),
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

/// Whether `arn` is an image *version* ARN (`…:image/<name>/<x.y.z>`, the input of
/// ListImageBuildVersions). Exact versions only: the `x` wildcards other operations accept
/// do not match the model's pattern here.
pub fn is_image_version_arn(arn: &str) -> bool {
    // Reuse the build-version parser by appending a build number.
    parse_build_version_arn(&format!("{arn}/1")).is_some()
}

impl BuildVersionArn<'_> {
    /// Sort key giving the listing order: region, account, name, then the semantic version
    /// and build *numerically* (so `1.10.0` follows `1.9.0` and build 10 follows build 9).
    pub fn sort_key(&self) -> SortKey {
        let num = |s: &str| s.parse::<u64>().unwrap_or(u64::MAX);
        let mut semver = [0u64; 3];
        for (slot, part) in semver.iter_mut().zip(self.semver.split('.')) {
            *slot = num(part);
        }
        (
            self.region.to_string(),
            self.account.to_string(),
            self.name.to_string(),
            semver,
            num(self.build),
        )
    }
}

/// (region, account, name, [major, minor, patch], build).
pub type SortKey = (String, String, String, [u64; 3], u64);

/// The image version ARN (`…/name/x.y.z`) of a build-version ARN (`…/name/x.y.z/N`).
pub fn version_arn_of(build_arn: &str) -> &str {
    build_arn.rsplit_once('/').map_or(build_arn, |(v, _)| v)
}

/// `owner` values of the model's `Ownership` enum (ListImages).
pub const OWNERSHIP: &[&str] = &["Self", "Shared", "Amazon", "ThirdParty", "AWSMarketplace"];

/// Which `owner` of ListImages an image of `account` answers to. The emulator does not know
/// the caller's account, so every 12-digit account counts as the caller's own (`Self`);
/// `aws` is Amazon-managed, `aws-marketplace` the Marketplace, other `aws-…` third parties.
/// Nothing is ever `Shared`.
pub fn owner_of(account: &str) -> &'static str {
    match account {
        "aws" => "Amazon",
        "aws-marketplace" => "AWSMarketplace",
        a if a.starts_with("aws-") => "ThirdParty",
        _ => "Self",
    }
}

/// Filter names the model documents for ListImages and ListImageBuildVersions.
pub const IMAGE_FILTERS: &[&str] = &["name", "osVersion", "platform", "type", "version"];

/// One list filter: matches when the field equals any of `values` (exact, case-sensitive,
/// as the service documents); several filters must all match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

/// Whether an image (`build` = `None` for an image version) passes every filter. The
/// `version` filter takes `x.y.z`, or `x.y.z/N` for a build version.
pub fn filters_match(filters: &[Filter], arn: &BuildVersionArn<'_>, build: Option<&str>) -> bool {
    filters.iter().all(|f| {
        f.values.iter().any(|v| match f.name.as_str() {
            "name" => v == arn.name,
            "platform" => v == PLATFORM,
            "type" => v == IMAGE_TYPE,
            "osVersion" => v == OS_VERSION,
            "version" => {
                v == arn.semver
                    || build.is_some_and(|b| v.strip_prefix(arn.semver) == Some(&format!("/{b}")))
            }
            _ => false,
        })
    })
}

/// Opaque `nextToken`: the operation and the last ARN returned, hex-encoded. Resuming
/// *after* an ARN (rather than at an offset) keeps every remaining item exactly once even
/// when items before the cursor are deleted between pages.
pub fn encode_token(operation: &str, after_arn: &str) -> String {
    let hex: String = after_arn.bytes().map(|b| format!("{b:02x}")).collect();
    format!("ibemu1.{operation}.{hex}")
}

/// The ARN inside a token made by [`encode_token`] for `operation`; `None` for anything else
/// (another operation's token, a truncated or forged one).
pub fn decode_token(operation: &str, token: &str) -> Option<String> {
    let rest = token.strip_prefix("ibemu1.")?;
    let (op, hex) = rest.split_once('.')?;
    if op != operation || hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// `dateCreated` of an image seeded without one: a constant keeps responses reproducible.
pub const DEFAULT_DATE_CREATED: &str = "2024-01-01T00:00:00.000Z";
/// `platform` of every emulated image.
pub const PLATFORM: &str = "Linux";
/// `osVersion` of every emulated image.
pub const OS_VERSION: &str = "Amazon Linux 2023";
/// `type` of every emulated image.
pub const IMAGE_TYPE: &str = "AMI";

/// Milliseconds since the Unix epoch of `YYYY-MM-DDTHH:MM:SS[.fff]Z` (the form the service
/// returns timestamps in); `None` for anything else.
pub fn parse_iso_ms(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
    let ms_digits: String = frac.chars().chain("000".chars()).take(3).collect();
    let ms = ms_digits.parse::<i64>().ok()?;
    let valid = (1..=12).contains(&mo)
        && (1..=31).contains(&day)
        && (0..24).contains(&h)
        && (0..60).contains(&mi)
        && (0..=60).contains(&sec)
        && (0..=9999).contains(&y);
    if !valid || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let days = days_from_civil(y, mo, day);
    Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + ms)
}

/// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.fffZ`.
pub fn format_iso_ms(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = civil_from_days(days);
    let (h, rem) = (rem / 3_600_000, rem % 3_600_000);
    let (mi, rem) = (rem / 60_000, rem % 60_000);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{:02}.{:03}Z",
        rem / 1000,
        rem % 1000
    )
}

// Proleptic Gregorian calendar <-> days since 1970-01-01 (H. Hinnant's algorithms), so the
// crate needs no date library for one format.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Default `outputResources` for an image that was seeded without any: one AMI in the
/// image's region with an id derived from the ARN (stable across runs).
fn default_output_resources(arn: &BuildVersionArn<'_>, full_arn: &str, date: &str) -> Value {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    full_arn.hash(&mut hasher);
    let ami = format!("ami-{:017x}", hasher.finish());
    json!({
        "amis": [{
            "region": arn.region,
            "image": ami,
            "name": format!("{} {}", arn.name, date),
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
    /// `dateCreated` verbatim, if seeded.
    pub date_created: Option<String>,
}

impl ImageRecord {
    /// `dateCreated` as answered.
    pub fn date_created(&self) -> &str {
        self.date_created.as_deref().unwrap_or(DEFAULT_DATE_CREATED)
    }
}

/// `state` (`ImageState`): the status, with a `reason` for the statuses that end a build
/// unsuccessfully, as the service reports one.
fn state_json(status: &str) -> Value {
    match status {
        "FAILED" => {
            json!({"status": status, "reason": "Image build failed: a workflow step failed."})
        }
        "CANCELLED" => json!({"status": status, "reason": "Image build cancelled by the user."}),
        _ => json!({"status": status}),
    }
}

/// Fields shared by `Image` (GetImage) and `ImageSummary` (ListImageBuildVersions).
fn common_fields(arn: &str, record: &ImageRecord) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("arn".into(), json!(arn));
    m.insert("type".into(), json!(IMAGE_TYPE));
    m.insert("platform".into(), json!(PLATFORM));
    m.insert("osVersion".into(), json!(OS_VERSION));
    m.insert(
        "state".into(),
        state_json(record.status.as_deref().unwrap_or("AVAILABLE")),
    );
    m.insert("dateCreated".into(), json!(record.date_created()));
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
                .unwrap_or_else(|| default_output_resources(&parsed, arn, record.date_created())),
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

/// The `ImageVersion` structure of a ListImages response, for the image version
/// `version_arn` whose earliest build was created at `date_created`.
pub fn image_version_json(version_arn: &str, date_created: &str) -> Value {
    let as_build = format!("{version_arn}/1");
    let parsed = parse_build_version_arn(&as_build);
    let (name, semver, account) = parsed
        .as_ref()
        .map_or(("", "", ""), |p| (p.name, p.semver, p.account));
    json!({
        "arn": version_arn,
        "name": name,
        "type": IMAGE_TYPE,
        "version": semver,
        "platform": PLATFORM,
        "osVersion": OS_VERSION,
        "owner": account,
        "dateCreated": date_created,
        "buildType": "USER_INITIATED",
        "imageSource": "CUSTOM",
    })
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

    #[test]
    fn iso_timestamps_round_trip_and_reject_other_forms() {
        // GIVEN timestamps in the service's form
        for ts in [
            "1970-01-01T00:00:00.000Z",
            "2024-02-29T23:59:59.999Z",
            "2026-11-01T10:00:00.000Z",
        ] {
            // THEN they round-trip through epoch milliseconds
            assert_eq!(format_iso_ms(parse_iso_ms(ts).unwrap()), ts);
        }
        assert_eq!(
            parse_iso_ms("2026-11-01T10:00:00Z"),
            Some(1_793_527_200_000)
        );
        assert_eq!(
            parse_iso_ms("2026-11-01T10:00:00.5Z"),
            Some(1_793_527_200_500)
        );
        for bad in [
            "",
            "2026-11-01",
            "2026-13-01T00:00:00Z",
            "2026-11-01T10:00:00",
            "x",
        ] {
            assert_eq!(parse_iso_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn tokens_round_trip_for_their_operation_only() {
        let arn = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/3";
        let token = encode_token("ListImageBuildVersions", arn);
        assert_eq!(
            decode_token("ListImageBuildVersions", &token).as_deref(),
            Some(arn)
        );
        assert_eq!(decode_token("ListImages", &token), None);
        assert_eq!(
            decode_token("ListImageBuildVersions", "ibemu1.ListImageBuildVersions.f"),
            None
        );
        assert_eq!(
            decode_token("ListImageBuildVersions", "ibemu1.ListImageBuildVersions.ff"),
            None
        );
    }

    #[test]
    fn sort_keys_order_versions_and_builds_numerically() {
        let key = |a: &str| parse_build_version_arn(a).unwrap().sort_key();
        let base = "arn:aws:imagebuilder:us-east-1:123456789012:image/web";
        assert!(key(&format!("{base}/1.9.0/1")) < key(&format!("{base}/1.10.0/1")));
        assert!(key(&format!("{base}/1.0.0/9")) < key(&format!("{base}/1.0.0/10")));
        // A number too large for u64 sorts last instead of panicking.
        assert!(
            key(&format!("{base}/1.0.0/9")) < key(&format!("{base}/1.0.0/99999999999999999999999"))
        );
    }
}
