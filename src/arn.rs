//! ARN parsing and guards (pure: no AWS SDK).
//!
//! Accepts only Image Builder image **build version** ARNs, per the service model's
//! `ImageBuildVersionArn` pattern, and applies the configured partition / account / region
//! guards. Every refusal carries a named [`RejectCode`] and a message a human can act on.

use std::fmt;

/// Why an item was rejected before reaching DeleteImage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectCode {
    /// An SQS body or item of no known shape.
    InvalidMessage,
    /// Not an Image Builder image build-version ARN at all.
    NotAnImageBuildVersionArn,
    /// An image *version* ARN (no build number): DeleteImage needs a build version.
    ImageVersionArnNotSupported,
    /// The ARN's partition differs from the function's own.
    PartitionMismatch,
    /// The ARN's account is not in `ALLOWED_ACCOUNT_IDS`.
    AccountNotAllowed,
    /// The ARN's region is not in `ALLOWED_REGIONS`.
    RegionNotAllowed,
}

impl RejectCode {
    /// The stable name used in reports, dead-letter messages and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::InvalidMessage => "InvalidMessage",
            RejectCode::NotAnImageBuildVersionArn => "NotAnImageBuildVersionArn",
            RejectCode::ImageVersionArnNotSupported => "ImageVersionArnNotSupported",
            RejectCode::PartitionMismatch => "PartitionMismatch",
            RejectCode::AccountNotAllowed => "AccountNotAllowed",
            RejectCode::RegionNotAllowed => "RegionNotAllowed",
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejection: the code plus a message naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The named reason (stable; reports and dead-letter `errorCode`).
    pub code: RejectCode,
    /// What was wrong and what was expected, quoting the (truncated) input.
    pub message: String,
}

/// A validated image build-version ARN. Cheap accessors over the original string.
///
/// The parts are kept as byte offsets into `raw` so that parsing allocates exactly once (the
/// trimmed copy) — the function may see 10,000 ARNs per invocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageArn {
    raw: String,
    /// `[start, end)` byte ranges of partition, region, account, name, version, build.
    parts: [(u32, u32); 6],
}

/// Indexes into [`ImageArn::parts`].
const PARTITION: usize = 0;
const REGION: usize = 1;
const ACCOUNT: usize = 2;
const NAME: usize = 3;
const VERSION: usize = 4;
const BUILD: usize = 5;

impl ImageArn {
    /// The full ARN, exactly as given (after whitespace trimming).
    pub fn as_str(&self) -> &str {
        &self.raw
    }
    fn part(&self, i: usize) -> &str {
        let (start, end) = self.parts[i];
        &self.raw[start as usize..end as usize]
    }
    /// `aws`, `aws-cn`, `aws-us-gov`, …
    pub fn partition(&self) -> &str {
        self.part(PARTITION)
    }
    /// The region the image lives in; DeleteImage must be sent to this region.
    pub fn region(&self) -> &str {
        self.part(REGION)
    }
    /// A 12-digit account id, or an AWS-managed account form (`aws`, `aws-marketplace`, …)
    /// that the service pattern allows but [`Guards::check`] always refuses.
    pub fn account(&self) -> &str {
        self.part(ACCOUNT)
    }
    /// Image name (`[a-z0-9-_]+`).
    pub fn name(&self) -> &str {
        self.part(NAME)
    }
    /// Semantic version `x.y.z`.
    pub fn version(&self) -> &str {
        self.part(VERSION)
    }
    /// Build number.
    pub fn build(&self) -> &str {
        self.part(BUILD)
    }
    /// True for the `aws…` account form: images owned by AWS (Amazon-managed or Marketplace
    /// images), which no customer can delete.
    pub fn is_aws_managed(&self) -> bool {
        is_aws_managed_account(self.account())
    }
}

impl fmt::Display for ImageArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// The shape every accepted ARN has; quoted in rejection messages so the fix is obvious.
const EXPECTED: &str =
    "expected an Image Builder image build version ARN: arn:<partition>:imagebuilder:<region>:<12-digit account>:image/<name>/<x.y.z>/<build>";

/// Longest input quoted in a message: an item can be a whole (huge) message body.
const QUOTE_LIMIT: usize = 200;

/// Quotes `input` for a message, cut at [`QUOTE_LIMIT`] bytes on a char boundary.
pub fn quote(input: &str) -> String {
    if input.len() <= QUOTE_LIMIT {
        return format!("{input:?}");
    }
    let mut end = QUOTE_LIMIT;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &input[..end], input.len())
}

fn not_build_version(input: &str, why: &str) -> Rejection {
    Rejection {
        code: RejectCode::NotAnImageBuildVersionArn,
        message: format!(
            "{} is not an image build version ARN: {why}; {EXPECTED}",
            quote(input)
        ),
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `[0-9]{12}` or `aws(?:-[a-z-]+)?` (the service model's account alternatives).
fn is_valid_account(s: &str) -> bool {
    (s.len() == 12 && is_digits(s)) || is_aws_managed_account(s)
}

fn is_aws_managed_account(s: &str) -> bool {
    match s.strip_prefix("aws") {
        Some("") => true,
        Some(rest) => match rest.strip_prefix('-') {
            Some(tail) => {
                !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
            }
            None => false,
        },
        None => false,
    }
}

/// `[a-z0-9-_]+`
fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// `[0-9]+\.[0-9]+\.[0-9]+`
fn is_numeric_version(s: &str) -> bool {
    let mut n = 0;
    for part in s.split('.') {
        n += 1;
        if n > 3 || !is_digits(part) {
            return false;
        }
    }
    n == 3
}

/// A version as it appears in an image *version* ARN: each component digits or the `x`
/// wildcard (`1.0.0`, `1.x.x`, `x.x.x`).
fn is_version_or_wildcard(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| *p == "x" || is_digits(p))
}

fn range(base: &str, part: &str) -> (u32, u32) {
    // `part` is always a sub-slice of `base`, so the pointer difference is its offset.
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    (start as u32, (start + part.len()) as u32)
}

/// Parses one candidate string (trims surrounding whitespace first).
/// Errors: `NotAnImageBuildVersionArn` or `ImageVersionArnNotSupported`.
///
/// Accepts exactly the service model's `ImageBuildVersionArn` pattern
/// (`^arn:aws[^:]*:imagebuilder:[^:]+:(?:[0-9]{12}|aws(?:-[a-z-]+)?):image/[a-z0-9-_]+/[0-9]+\.[0-9]+\.[0-9]+/[0-9]+$`),
/// hand-written because it runs for every item and a regex engine would be a dependency for
/// one line. The AWS-managed account form (`aws`, `aws-marketplace`) *is* parsed — it is a
/// well-formed build version ARN — and refused by [`Guards::check`] with `AccountNotAllowed`,
/// because "you may not delete this account's images" is the accurate reason, not "this is
/// not an ARN".
pub fn parse(input: &str) -> Result<ImageArn, Rejection> {
    let s = input.trim();
    if s.is_empty() {
        return Err(not_build_version(input, "it is empty"));
    }
    let fields: Vec<&str> = s.splitn(6, ':').collect();
    if fields.len() != 6 || fields[0] != "arn" {
        return Err(not_build_version(input, "it is not an ARN"));
    }
    let (partition, service, region, account, resource) =
        (fields[1], fields[2], fields[3], fields[4], fields[5]);
    if service != "imagebuilder" {
        return Err(not_build_version(
            input,
            &format!("it is an ARN of service {service:?}, not \"imagebuilder\""),
        ));
    }
    if !partition.starts_with("aws") {
        return Err(not_build_version(
            input,
            &format!("unknown partition {partition:?}"),
        ));
    }
    if region.is_empty() {
        return Err(not_build_version(input, "the region is empty"));
    }
    if !is_valid_account(account) {
        return Err(not_build_version(
            input,
            &format!("account {account:?} is not a 12-digit account id"),
        ));
    }
    let Some(path) = resource.strip_prefix("image/") else {
        let kind = resource.split('/').next().unwrap_or(resource);
        return Err(not_build_version(
            input,
            &format!("it names an Image Builder {kind:?} resource, not an image"),
        ));
    };
    let segments: Vec<&str> = path.split('/').collect();
    let name = segments[0];
    if !is_valid_name(name) {
        return Err(not_build_version(
            input,
            &format!("image name {name:?} must be non-empty lowercase letters, digits, '-' or '_'"),
        ));
    }
    match segments.len() {
        1 => Err(not_build_version(
            input,
            "it names an image, not a build version (the /<x.y.z>/<build> suffix is missing)",
        )),
        2 if is_version_or_wildcard(segments[1]) => Err(Rejection {
            code: RejectCode::ImageVersionArnNotSupported,
            message: format!(
                "{} is an image version ARN without a build number; DeleteImage needs an image build version ARN ending in /<x.y.z>/<build>, e.g. .../image/{name}/{}/1",
                quote(input),
                if is_numeric_version(segments[1]) { segments[1] } else { "1.0.0" },
            ),
        }),
        2 => Err(not_build_version(
            input,
            &format!("version {:?} is not <x.y.z> and the build number is missing", segments[1]),
        )),
        3 => {
            let (version, build) = (segments[1], segments[2]);
            if !is_numeric_version(version) {
                return Err(not_build_version(
                    input,
                    &format!("version {version:?} must be three numbers <x.y.z> (no wildcards)"),
                ));
            }
            if !is_digits(build) {
                return Err(not_build_version(
                    input,
                    &format!("build {build:?} must be a number"),
                ));
            }
            let raw = s.to_owned();
            let base = s;
            let parts = [
                range(base, partition),
                range(base, region),
                range(base, account),
                range(base, name),
                range(base, version),
                range(base, build),
            ];
            Ok(ImageArn { raw, parts })
        }
        n => Err(not_build_version(
            input,
            &format!("it has {} extra path segment(s) after /<name>/<x.y.z>/<build>", n - 3),
        )),
    }
}

/// An allow-list from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowList {
    /// `*`: every value is allowed.
    Any,
    /// Only these exact values.
    Only(Vec<String>),
}

impl AllowList {
    /// Whether `value` is allowed (exact match).
    pub fn allows(&self, value: &str) -> bool {
        match self {
            AllowList::Any => true,
            AllowList::Only(values) => values.iter().any(|v| v == value),
        }
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowList::Any => f.write_str("*"),
            AllowList::Only(values) => f.write_str(&values.join(",")),
        }
    }
}

/// The guards an ARN must pass after parsing, resolved per invocation
/// (the default account is the function's own, from the invoked function ARN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guards {
    /// The function's own partition (`aws`, `aws-cn`, …).
    pub partition: String,
    /// `ALLOWED_ACCOUNT_IDS` (default: the function's own account).
    pub accounts: AllowList,
    /// `ALLOWED_REGIONS` (`Any`: any region of `partition`).
    pub regions: AllowList,
    /// Why no account is allowed at all: `ALLOWED_ACCOUNT_IDS` is unset and the function's
    /// own account is unknown. Every ARN is then refused with this reason (never delete from
    /// an account nobody allowed).
    pub accounts_unknown: Option<String>,
}

impl Guards {
    /// The first guard alone: the ARN's partition is the function's own.
    fn check_partition(&self, arn: &ImageArn) -> Result<(), Rejection> {
        if arn.partition() == self.partition {
            return Ok(());
        }
        Err(Rejection {
            code: RejectCode::PartitionMismatch,
            message: format!(
                "{} is in partition {:?} but this function runs in partition {:?}",
                quote(arn.as_str()),
                arn.partition(),
                self.partition
            ),
        })
    }

    /// First failing guard in the contract's order: PartitionMismatch, AccountNotAllowed,
    /// RegionNotAllowed (a malformed region first, then the allow-list).
    ///
    /// Two refusals go beyond a plain allow-list lookup, both because the delete could never
    /// succeed: an AWS-managed account (`aws`, `aws-marketplace`) is refused even with
    /// `ALLOWED_ACCOUNT_IDS=*`, and with `ALLOWED_REGIONS` unset ("any region of the function's
    /// partition") a region of another partition is refused with `RegionNotAllowed`.
    pub fn check(&self, arn: &ImageArn) -> Result<(), Rejection> {
        self.check_partition(arn)?;
        if arn.is_aws_managed() {
            return Err(Rejection {
                code: RejectCode::AccountNotAllowed,
                message: format!(
                    "{} names an AWS-managed image (account {:?}); AWS-managed images cannot be deleted",
                    quote(arn.as_str()),
                    arn.account()
                ),
            });
        }
        if let Some(reason) = &self.accounts_unknown {
            return Err(Rejection {
                code: RejectCode::AccountNotAllowed,
                message: format!("account {} is not allowed: {reason}", arn.account()),
            });
        }
        if !self.accounts.allows(arn.account()) {
            return Err(Rejection {
                code: RejectCode::AccountNotAllowed,
                message: format!(
                    "account {:?} of {} is not in ALLOWED_ACCOUNT_IDS ({})",
                    arn.account(),
                    quote(arn.as_str()),
                    self.accounts
                ),
            });
        }
        if !is_well_formed_region(arn.region()) {
            return Err(Rejection {
                code: RejectCode::RegionNotAllowed,
                message: format!(
                    "region {:?} of {} is not a well-formed region name (expected lowercase like \"us-east-1\": ^[a-z]{{2}}(-[a-z]+)+-[0-9]+$)",
                    arn.region(),
                    quote(arn.as_str())
                ),
            });
        }
        match &self.regions {
            AllowList::Any if partition_of_region(arn.region()) != self.partition => {
                Err(Rejection {
                    code: RejectCode::RegionNotAllowed,
                    message: format!(
                        "region {:?} of {} is not a region of partition {:?} (ALLOWED_REGIONS is unset: any region of the function's partition)",
                        arn.region(),
                        quote(arn.as_str()),
                        self.partition
                    ),
                })
            }
            regions if !regions.allows(arn.region()) => Err(Rejection {
                code: RejectCode::RegionNotAllowed,
                message: format!(
                    "region {:?} of {} is not in ALLOWED_REGIONS ({})",
                    arn.region(),
                    quote(arn.as_str()),
                    regions
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// `^[a-z]{2}(-[a-z]+)+-[0-9]+$`: how every AWS region name is spelt. A client for any
/// other string would sign for a region that does not exist.
pub fn is_well_formed_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let lower = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    match parts.as_slice() {
        [first, middle @ .., last] if !middle.is_empty() => {
            first.len() == 2
                && lower(first)
                && middle.iter().all(lower)
                && !last.is_empty()
                && last.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

/// Parse + guards: the single entry point for a candidate string.
pub fn validate(input: &str, guards: &Guards) -> Result<ImageArn, Rejection> {
    let arn = parse(input)?;
    guards.check(&arn)?;
    Ok(arn)
}

/// The partition a region belongs to (`cn-*` → `aws-cn`, `us-gov-*` → `aws-us-gov`,
/// `us-iso-*` → `aws-iso`, `us-isob-*` → `aws-iso-b`, `eu-isoe-*` → `aws-iso-e`,
/// `us-isof-*` → `aws-iso-f`, else `aws`).
pub fn partition_of_region(region: &str) -> &'static str {
    // Longer prefixes first: `us-isob-` also starts with `us-iso`.
    const PREFIXES: [(&str, &str); 6] = [
        ("cn-", "aws-cn"),
        ("us-gov-", "aws-us-gov"),
        ("us-isob-", "aws-iso-b"),
        ("us-isof-", "aws-iso-f"),
        ("us-iso-", "aws-iso"),
        ("eu-isoe-", "aws-iso-e"),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| region.starts_with(prefix))
        .map_or("aws", |(_, partition)| partition)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "arn:aws:imagebuilder:us-east-1:123456789012:image/web-server/1.2.0/3";

    fn guards() -> Guards {
        Guards {
            partition: "aws".into(),
            accounts: AllowList::Only(vec!["123456789012".into()]),
            regions: AllowList::Any,
            accounts_unknown: None,
        }
    }

    fn rejected(input: &str) -> Rejection {
        parse(input).expect_err(input)
    }

    #[test]
    fn build_version_arn_is_parsed_into_its_parts() {
        // GIVEN a build version ARN WHEN it is parsed
        let arn = parse(GOOD).unwrap();
        // THEN every accessor returns its own part
        assert_eq!(arn.as_str(), GOOD);
        assert_eq!(arn.partition(), "aws");
        assert_eq!(arn.region(), "us-east-1");
        assert_eq!(arn.account(), "123456789012");
        assert_eq!(arn.name(), "web-server");
        assert_eq!(arn.version(), "1.2.0");
        assert_eq!(arn.build(), "3");
        assert_eq!(arn.to_string(), GOOD);
        assert!(!arn.is_aws_managed());
    }

    #[test]
    fn surrounding_whitespace_is_trimmed() {
        // GIVEN an ARN with spaces, tabs and newlines around it (as pasted into an SQS body)
        let arn = parse(&format!(" \t{GOOD}\r\n")).unwrap();
        // THEN the stored ARN is the trimmed one, and the parts still line up
        assert_eq!(arn.as_str(), GOOD);
        assert_eq!(arn.partition(), "aws");
        assert_eq!(arn.build(), "3");
    }

    #[test]
    fn other_partitions_are_parsed() {
        for (arn, partition, region) in [
            (
                "arn:aws-cn:imagebuilder:cn-north-1:123456789012:image/base-ami/1.0.0/1",
                "aws-cn",
                "cn-north-1",
            ),
            (
                "arn:aws-us-gov:imagebuilder:us-gov-west-1:123456789012:image/base-ami/10.20.30/42",
                "aws-us-gov",
                "us-gov-west-1",
            ),
        ] {
            let parsed = parse(arn).unwrap();
            assert_eq!(parsed.partition(), partition);
            assert_eq!(parsed.region(), region);
        }
    }

    #[test]
    fn names_may_contain_hyphen_underscore_and_digits() {
        let arn = parse("arn:aws:imagebuilder:us-east-1:123456789012:image/api_gateway-2/0.0.1/17")
            .unwrap();
        assert_eq!(arn.name(), "api_gateway-2");
        assert_eq!(arn.version(), "0.0.1");
        assert_eq!(arn.build(), "17");
    }

    #[test]
    fn non_build_version_inputs_are_not_an_image_build_version_arn() {
        for input in [
            "",
            "   ",
            "hello world",
            "arn:aws:ec2:us-east-1::image/ami-0123456789abcdef0",
            "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/web-server/1.0.0",
            "arn:aws:imagebuilder:us-east-1:123456789012:image/web-server",
            // uppercase names are not allowed by the service pattern
            "arn:aws:imagebuilder:us-east-1:123456789012:image/Web-Server/1.2.0/3",
            // version with non-digits, wildcard version with a build
            "arn:aws:imagebuilder:us-east-1:123456789012:image/web-server/1.2.a/3",
            "arn:aws:imagebuilder:us-east-1:123456789012:image/web-server/x.x.x/3",
            "arn:aws:imagebuilder:us-east-1:123456789012:image/web-server/1.2/3",
            "arn:aws:imagebuilder:us-east-1:123456789012:image/web-server/1.2.0.0/3",
            // build with non-digits, empty build
            "arn:aws:imagebuilder:us-east-1:123456789012:image/web-server/1.2.0/3a",
            "arn:aws:imagebuilder:us-east-1:123456789012:image/web-server/1.2.0/",
            // extra path segments
            "arn:aws:imagebuilder:us-east-1:123456789012:image/web-server/1.2.0/3/extra",
            // account not 12 digits, empty region, partition not aws*, missing fields
            "arn:aws:imagebuilder:us-east-1:12345678901:image/web-server/1.2.0/3",
            "arn:aws:imagebuilder::123456789012:image/web-server/1.2.0/3",
            "arn:gcp:imagebuilder:us-east-1:123456789012:image/web-server/1.2.0/3",
            "arn:aws:imagebuilder:us-east-1:image/web-server/1.2.0/3",
            "urn:aws:imagebuilder:us-east-1:123456789012:image/web-server/1.2.0/3",
            // an inner space is not whitespace to trim
            "arn:aws:imagebuilder:us-east-1:123456789012:image/web server/1.2.0/3",
        ] {
            let r = rejected(input);
            assert_eq!(
                r.code,
                RejectCode::NotAnImageBuildVersionArn,
                "{input:?}: {}",
                r.message
            );
            assert!(
                r.message.contains("arn:<partition>:imagebuilder:"),
                "{}",
                r.message
            );
        }
    }

    #[test]
    fn image_version_arns_name_the_missing_build_number() {
        for input in [
            "arn:aws:imagebuilder:us-east-1:123456789012:image/web-server/1.2.0",
            "arn:aws:imagebuilder:us-east-1:123456789012:image/web-server/x.x.x",
            "arn:aws:imagebuilder:us-east-1:123456789012:image/web-server/1.x.x",
        ] {
            let r = rejected(input);
            assert_eq!(r.code, RejectCode::ImageVersionArnNotSupported, "{input}");
            assert!(r.message.contains("build number"), "{}", r.message);
            assert!(
                r.message.contains(input),
                "message quotes the input: {}",
                r.message
            );
        }
    }

    #[test]
    fn messages_quote_a_long_input_truncated() {
        // GIVEN a 10 kB garbage candidate
        let input = "é".repeat(5000);
        // THEN the message quotes at most ~200 bytes of it, cut on a char boundary
        let r = rejected(&input);
        assert!(r.message.len() < 600, "{}", r.message.len());
        assert!(r.message.contains("10000 bytes"));
    }

    #[test]
    fn aws_managed_images_parse_but_are_refused_by_the_account_guard() {
        // GIVEN an AWS-managed image build version ARN (matches the service pattern)
        let arn =
            parse("arn:aws:imagebuilder:us-east-1:aws:image/amazon-linux-2023-x86/2024.1.1/1")
                .unwrap();
        assert!(arn.is_aws_managed());
        let marketplace =
            parse("arn:aws:imagebuilder:us-east-1:aws-marketplace:image/cis-hardened/1.0.0/1")
                .unwrap();
        // WHEN checked, even with ALLOWED_ACCOUNT_IDS=*
        let any = Guards {
            accounts: AllowList::Any,
            ..guards()
        };
        for arn in [&arn, &marketplace] {
            let r = any.check(arn).unwrap_err();
            // THEN it is AccountNotAllowed, saying why
            assert_eq!(r.code, RejectCode::AccountNotAllowed);
            assert!(r.message.contains("AWS-managed"), "{}", r.message);
        }
        // AND a malformed managed form is not an ARN at all
        assert_eq!(
            rejected("arn:aws:imagebuilder:us-east-1:aws-Market:image/x/1.0.0/1").code,
            RejectCode::NotAnImageBuildVersionArn
        );
    }

    #[test]
    fn guards_pass_an_allowed_arn() {
        assert!(validate(GOOD, &guards()).is_ok());
        let listed = Guards {
            regions: AllowList::Only(vec!["eu-west-1".into(), "us-east-1".into()]),
            accounts_unknown: None,
            ..guards()
        };
        assert!(validate(GOOD, &listed).is_ok());
    }

    #[test]
    fn partition_mismatch_comes_first() {
        // GIVEN an aws-cn ARN whose account and region are not allowed either
        let arn = parse("arn:aws-cn:imagebuilder:cn-north-1:111122223333:image/base-ami/1.0.0/1")
            .unwrap();
        // THEN the partition is reported, naming both partitions
        let r = guards().check(&arn).unwrap_err();
        assert_eq!(r.code, RejectCode::PartitionMismatch);
        assert!(
            r.message.contains("\"aws-cn\"") && r.message.contains("\"aws\""),
            "{}",
            r.message
        );
    }

    #[test]
    fn account_not_allowed_names_the_account_and_the_variable() {
        // GIVEN a foreign account in a region that is also not allowed
        let g = Guards {
            regions: AllowList::Only(vec!["us-east-1".into()]),
            accounts_unknown: None,
            ..guards()
        };
        let arn =
            parse("arn:aws:imagebuilder:eu-west-1:111122223333:image/web-server/1.0.0/1").unwrap();
        // THEN the account guard fires before the region guard
        let r = g.check(&arn).unwrap_err();
        assert_eq!(r.code, RejectCode::AccountNotAllowed);
        assert!(r.message.contains("111122223333"));
        assert!(
            r.message.contains("ALLOWED_ACCOUNT_IDS (123456789012)"),
            "{}",
            r.message
        );
    }

    #[test]
    fn region_not_allowed_names_the_region_and_the_variable() {
        let g = Guards {
            regions: AllowList::Only(vec!["us-east-1".into(), "us-west-2".into()]),
            accounts_unknown: None,
            ..guards()
        };
        let arn =
            parse("arn:aws:imagebuilder:eu-west-1:123456789012:image/web-server/1.0.0/1").unwrap();
        let r = g.check(&arn).unwrap_err();
        assert_eq!(r.code, RejectCode::RegionNotAllowed);
        assert!(r.message.contains("eu-west-1"));
        assert!(
            r.message.contains("ALLOWED_REGIONS (us-east-1,us-west-2)"),
            "{}",
            r.message
        );
    }

    #[test]
    fn any_region_means_any_region_of_the_function_partition() {
        // GIVEN ALLOWED_REGIONS unset and an aws-partition ARN naming a China region
        let arn =
            parse("arn:aws:imagebuilder:cn-north-1:123456789012:image/web-server/1.0.0/1").unwrap();
        // THEN it is refused: no aws-partition client can reach cn-north-1
        let r = guards().check(&arn).unwrap_err();
        assert_eq!(r.code, RejectCode::RegionNotAllowed);
        assert!(r.message.contains("ALLOWED_REGIONS"));
        // AND an ordinary region of the partition passes
        let ok = parse("arn:aws:imagebuilder:ap-southeast-2:123456789012:image/web-server/1.0.0/1")
            .unwrap();
        assert!(guards().check(&ok).is_ok());
    }

    #[test]
    fn any_account_allows_every_customer_account() {
        let g = Guards {
            accounts: AllowList::Any,
            ..guards()
        };
        let arn =
            parse("arn:aws:imagebuilder:us-east-1:111122223333:image/web-server/1.0.0/1").unwrap();
        assert!(g.check(&arn).is_ok());
    }

    #[test]
    fn ten_thousand_distinct_arns_all_validate() {
        // GIVEN 10,000 distinct build version ARNs (the per-invocation ceiling we plan for)
        let arns: Vec<String> = (0..10_000)
            .map(|i| {
                format!("arn:aws:imagebuilder:us-east-1:123456789012:image/web-server/1.{i}.0/{i}")
            })
            .collect();
        // WHEN all are validated
        let ok = arns
            .iter()
            .filter(|a| validate(a, &guards()).is_ok())
            .count();
        // THEN all pass (their speed is measured by scripts/bench, not asserted here)
        assert_eq!(ok, 10_000);
    }

    #[test]
    fn partitions_of_regions() {
        assert_eq!(partition_of_region("us-east-1"), "aws");
        assert_eq!(partition_of_region("eu-central-2"), "aws");
        assert_eq!(partition_of_region("cn-northwest-1"), "aws-cn");
        assert_eq!(partition_of_region("us-gov-east-1"), "aws-us-gov");
        assert_eq!(partition_of_region("us-iso-east-1"), "aws-iso");
        assert_eq!(partition_of_region("us-isob-east-1"), "aws-iso-b");
        assert_eq!(partition_of_region("eu-isoe-west-1"), "aws-iso-e");
        assert_eq!(partition_of_region("us-isof-south-1"), "aws-iso-f");
    }

    #[test]
    fn a_malformed_region_is_region_not_allowed_before_any_call() {
        for region in [
            "US-EAST-1",
            "us_east_1",
            "useast1",
            "us-east",
            "u-east-1",
            "us-east-1a",
            "us--east-1",
        ] {
            let input = format!("arn:aws:imagebuilder:{region}:123456789012:image/web/1.0.0/1");
            // It is well formed as an ARN (the shape comes first) ...
            let arn = parse(&input).unwrap();
            // ... and refused by the region guard, even with ALLOWED_REGIONS unset or listing it
            for regions in [AllowList::Any, AllowList::Only(vec![region.to_string()])] {
                let g = Guards {
                    regions,
                    ..guards()
                };
                let r = g.check(&arn).unwrap_err();
                assert_eq!(r.code, RejectCode::RegionNotAllowed, "{region}");
                assert!(
                    r.message.contains("not a well-formed region"),
                    "{}",
                    r.message
                );
            }
        }
        for region in [
            "us-east-1",
            "us-gov-west-1",
            "ap-southeast-2",
            "eu-isoe-west-1",
        ] {
            assert!(is_well_formed_region(region), "{region}");
        }
    }

    #[test]
    fn a_malformed_region_comes_after_partition_and_account() {
        let foreign =
            parse("arn:aws:imagebuilder:US-EAST-1:111122223333:image/web/1.0.0/1").unwrap();
        assert_eq!(
            guards().check(&foreign).unwrap_err().code,
            RejectCode::AccountNotAllowed
        );
        let other =
            parse("arn:aws-cn:imagebuilder:CN-NORTH-1:123456789012:image/web/1.0.0/1").unwrap();
        assert_eq!(
            guards().check(&other).unwrap_err().code,
            RejectCode::PartitionMismatch
        );
    }
}
