//! ARN parsing and guards (pure: no AWS SDK).
//!
//! Accepts only Image Builder image **build version** ARNs, per the service model's
//! `ImageBuildVersionArn` pattern, and applies the configured partition / account / region
//! guards. Every refusal carries a named [`RejectCode`] and a message a human can act on.

use std::fmt;

/// Why an item was rejected before reaching DeleteImage (SPEC §6, in precedence order).
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
    pub code: RejectCode,
    pub message: String,
}

/// A validated image build-version ARN. Cheap accessors over the original string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageArn {
    raw: String,
    // PLACEHOLDER: the implementation may store byte ranges instead of owned parts.
}

impl ImageArn {
    /// The full ARN, exactly as given (after whitespace trimming).
    pub fn as_str(&self) -> &str {
        &self.raw
    }
    /// `aws`, `aws-cn`, `aws-us-gov`, …
    pub fn partition(&self) -> &str {
        todo!()
    }
    pub fn region(&self) -> &str {
        todo!()
    }
    pub fn account(&self) -> &str {
        todo!()
    }
    /// Image name (`[a-z0-9-_]+`).
    pub fn name(&self) -> &str {
        todo!()
    }
    /// Semantic version `x.y.z`.
    pub fn version(&self) -> &str {
        todo!()
    }
    /// Build number.
    pub fn build(&self) -> &str {
        todo!()
    }
}

impl fmt::Display for ImageArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Parses one candidate string (trims surrounding whitespace first).
/// Errors: `NotAnImageBuildVersionArn` or `ImageVersionArnNotSupported`.
pub fn parse(_input: &str) -> Result<ImageArn, Rejection> {
    todo!()
}

/// An allow-list from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowList {
    Any,
    Only(Vec<String>),
}

/// The guards an ARN must pass after parsing, resolved per invocation
/// (the default account is the function's own, from the invoked function ARN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guards {
    pub partition: String,
    pub accounts: AllowList,
    pub regions: AllowList,
}

impl Guards {
    /// First failing guard in SPEC order: PartitionMismatch, AccountNotAllowed, RegionNotAllowed.
    pub fn check(&self, _arn: &ImageArn) -> Result<(), Rejection> {
        todo!()
    }
}

/// Parse + guards: the single entry point the engine uses for a candidate string.
pub fn validate(input: &str, guards: &Guards) -> Result<ImageArn, Rejection> {
    let arn = parse(input)?;
    guards.check(&arn)?;
    Ok(arn)
}

/// The partition a region belongs to (`cn-*` → `aws-cn`, `us-gov-*` → `aws-us-gov`,
/// `us-iso-*` → `aws-iso`, `us-isob-*` → `aws-iso-b`, else `aws`).
pub fn partition_of_region(_region: &str) -> &'static str {
    todo!()
}
