//! Ports: the narrow traits the engine talks through (one per AWS service it needs).
//!
//! Generic, not `dyn`: the binary uses the SDK adapters in [`crate::aws`], tests use
//! in-memory fakes. Adapters classify their errors into [`CallError`] (the engine never sees
//! an SDK type), so retry decisions are made on [`ErrorClass`], not on strings.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use std::fmt;

use crate::arn::ImageArn;

/// What a failed call means for the ARN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// 5xx, timeouts, connection errors: try again, up to `MAX_ATTEMPTS`.
    Retryable,
    /// The service refused the call for rate (HTTP 429 and the throttling codes): try again
    /// once the rate limiter allows; not a failed attempt.
    Throttled,
    /// Any other 4xx: trying again cannot help.
    Permanent,
    /// `ResourceNotFoundException`: the image is already gone.
    NotFound,
    /// The function's own credentials were refused or could not be had (expired token,
    /// unknown key, bad signature): not the ARN's fault, and the same for every ARN. The ARN
    /// is handed back (SQS) or fails the invocation; it is never dead-lettered.
    Configuration,
}

impl ErrorClass {
    /// Whether trying again can help (a retryable or a throttled call).
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Retryable | ErrorClass::Throttled)
    }
}

/// A classified failure of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub class: ErrorClass,
    /// The service error code (e.g. `CallRateLimitExceededException`) or our own name for
    /// a transport failure (`Timeout`, `DispatchFailure`, …).
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
}

impl CallError {
    /// A retryable error without a request id.
    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Retryable, code, message)
    }
    /// A throttling error without a request id.
    pub fn throttled(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Throttled, code, message)
    }
    /// A permanent error without a request id.
    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Permanent, code, message)
    }
    /// A not-found error without a request id.
    pub fn not_found(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::NotFound, code, message)
    }
    /// An error of the given class without a request id.
    pub fn new(class: ErrorClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        CallError {
            class,
            code: code.into(),
            message: message.into(),
            request_id: None,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// DeleteImage succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Deleted {
    pub request_id: Option<String>,
}

/// What GetImage told us (only what the engine needs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageInfo {
    pub tags: HashMap<String, String>,
    /// `image.state.status` (a retention plan's drift check compares it).
    pub status: Option<String>,
    /// `image.dateCreated`, as the service returns it (the drift check compares the instant).
    pub date_created: Option<String>,
    /// `image.outputResources`: the AMIs and container images DeleteImage leaves behind.
    pub output_resources: OutputResources,
    pub request_id: Option<String>,
}

/// EC2 Image Builder, as the engine needs it. Each call goes to the ARN's own region.
pub trait Images: Send + Sync {
    /// `DeleteImage(imageBuildVersionArn)`.
    fn delete_image(
        &self,
        arn: &ImageArn,
    ) -> impl Future<Output = Result<Deleted, CallError>> + Send;
    /// `GetImage(imageBuildVersionArn)` (used for the protect tag).
    fn get_image(
        &self,
        arn: &ImageArn,
    ) -> impl Future<Output = Result<ImageInfo, CallError>> + Send;
}

/// One page of a paginated listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The token of the next page; `None` on the last page.
    pub next_token: Option<String>,
}

/// One image build version as ListImageBuildVersions lists it (`ImageSummary`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildVersionSummary {
    pub arn: String,
    pub name: String,
    /// As listed (the service says `x.y.z/build`).
    pub version: String,
    /// `state.status`; empty when the service did not say.
    pub status: String,
    /// `dateCreated` exactly as listed; empty when the service did not say.
    pub date_created: String,
    pub tags: BTreeMap<String, String>,
}

/// One image version as ListImages lists it (`ImageVersion`): what its builds are listed by.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageVersionSummary {
    /// The image version ARN (`…:image/<name>/<x.y.z>`).
    pub arn: String,
    pub name: String,
}

/// The account's images as a retention plan lists them: its own image versions (ListImages),
/// then the build versions of each (ListImageBuildVersions of one exact version). Each call
/// goes to `region`'s endpoint.
pub trait BuildVersions: Send + Sync {
    /// One page of `region`'s image versions owned by the account (deprecated ones too),
    /// starting at `next_token`; only those named exactly in `names` when it is not empty (at
    /// most [`MAX_NAME_FILTER_VALUES`]).
    fn list_image_versions(
        &self,
        region: &str,
        names: &[String],
        next_token: Option<String>,
    ) -> impl Future<Output = Result<Page<ImageVersionSummary>, CallError>> + Send;
    /// One page of the build versions of the image version `version_arn` (in `region`),
    /// starting at `next_token`.
    fn list_build_versions(
        &self,
        region: &str,
        version_arn: &str,
        next_token: Option<String>,
    ) -> impl Future<Output = Result<Page<BuildVersionSummary>, CallError>> + Send;
}

/// The most values one ListImages `name` filter takes (the model's `FilterValues`).
pub const MAX_NAME_FILTER_VALUES: usize = 10;

/// Where retention plans are kept (S3 objects).
pub trait PlanStore: Send + Sync {
    /// Writes `body` (JSON) at `bucket`/`key`.
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Reads `bucket`/`key`; a missing object is an `Err` of class [`ErrorClass::NotFound`].
    fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Vec<u8>, CallError>> + Send;
}

/// One dead-letter message, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterMessage {
    /// Batch entry id, unique within one call (`[A-Za-z0-9_-]{1,80}`).
    pub id: String,
    /// The JSON body.
    pub body: String,
    /// The `errorCode` String message attribute.
    pub error_code: String,
    /// The body's `dedupKey`: the same for the same source, item and error, so a repeated
    /// send can be recognised (a FIFO queue's MessageDeduplicationId).
    pub dedup_key: String,
}

impl DeadLetterMessage {
    /// Bytes this message counts for against SQS's per-call payload limit (body plus the
    /// `errorCode` attribute's name, type and value).
    pub fn payload_bytes(&self) -> usize {
        self.body.len() + "errorCode".len() + "String".len() + self.error_code.len()
    }
}

/// The dead-letter queue (SQS SendMessageBatch).
pub trait DeadLetterSink: Send + Sync {
    /// Sends up to 10 messages in one call. `Ok` holds one result per entry, in the order
    /// given (an entry the service did not confirm is an `Err`); `Err` means the whole call
    /// failed.
    fn send_batch(
        &self,
        entries: &[DeadLetterMessage],
    ) -> impl Future<Output = Result<Vec<Result<(), CallError>>, CallError>> + Send;
}

// ---- Output resources: EC2 AMIs + snapshots, ECR images ----------------------------------

/// `outputResources` of GetImage, as the Image Builder adapter hands it over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputResources {
    pub amis: Vec<OutputAmi>,
    pub containers: Vec<OutputContainer>,
}

impl OutputResources {
    /// Whether GetImage listed nothing.
    pub fn is_empty(&self) -> bool {
        self.amis.is_empty() && self.containers.is_empty()
    }
}

/// `outputResources.amis[]`: one AMI per distribution target (region × account).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputAmi {
    pub region: Option<String>,
    /// The AMI id (`image` in the service model).
    pub image_id: Option<String>,
    /// The account the AMI was distributed to; `None` means the image's own account.
    pub account_id: Option<String>,
}

/// `outputResources.containers[]`: the URIs of one distribution target's container images.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputContainer {
    pub region: Option<String>,
    pub image_uris: Vec<String>,
}
/// How one image inside a repository is named.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImageReference {
    /// `REPO:TAG`.
    Tag(String),
    /// `REPO@sha256:HEX` (the whole `algorithm:hex` string).
    Digest(String),
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageReference::Tag(t) => write!(f, ":{t}"),
            ImageReference::Digest(d) => write!(f, "@{d}"),
        }
    }
}

/// One AMI as DescribeImages reports it (only what the cleanup needs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AmiDescription {
    /// The owning account (`OwnerId`).
    pub owner_id: Option<String>,
    /// EBS snapshots of its block-device mappings, in mapping order.
    pub snapshot_ids: Vec<String>,
    /// The AMI's tags (the protect tag also protects an image whose AMI carries it).
    pub tags: HashMap<String, String>,
    /// `lastLaunchedTime` and `deregistrationProtection` as this same answer gave them: the
    /// in-use guard reads them here rather than asking EC2 again.
    pub usage: UsageFields,
}

/// A deleting call that succeeded, or found the piece still needed elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Deleted / deregistered.
    Removed,
    /// Not deleted because something else still uses it (`InvalidSnapshot.InUse`, ECR
    /// `ImageReferencedByManifestList`): a reason, not a failure.
    InUse(String),
}

/// EC2 as the output-resource cleanup needs it. `region` is the AMI's own region (distributed
/// copies live in other regions than the image). Already-gone pieces are `Err` with
/// [`ErrorClass::NotFound`] (`InvalidAMIID.NotFound`, `InvalidAMIID.Unavailable`,
/// `InvalidSnapshot.NotFound`).
pub trait Amis: Send + Sync {
    /// `DescribeImages(ImageIds=[image_id])`. `Ok(None)`: the AMI is gone (not found, or
    /// already `deregistered`).
    fn describe_image(
        &self,
        region: &str,
        image_id: &str,
    ) -> impl Future<Output = Result<Option<AmiDescription>, CallError>> + Send;
    /// The snapshots an already-deregistered AMI left behind: `DescribeSnapshots` of our own
    /// snapshots whose description names the AMI id (EC2 writes it into the description of
    /// every snapshot CreateImage / CopyImage makes). Lets a retry finish a cleanup that
    /// deregistered the AMI but failed on a snapshot.
    fn snapshots_left_by(
        &self,
        region: &str,
        image_id: &str,
    ) -> impl Future<Output = Result<Vec<String>, CallError>> + Send;
    /// `DeregisterImage(image_id)`.
    fn deregister_image(
        &self,
        region: &str,
        image_id: &str,
    ) -> impl Future<Output = Result<(), CallError>> + Send;
    /// `DeleteSnapshot(snapshot_id)`.
    fn delete_snapshot(
        &self,
        region: &str,
        snapshot_id: &str,
    ) -> impl Future<Output = Result<Removal, CallError>> + Send;
}

/// A resource EC2 says uses an AMI (DescribeImageReferences).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmiReference {
    /// The AMI it uses.
    pub image_id: String,
    /// `ec2:Instance`, `ec2:LaunchTemplate`, `ssm:Parameter`, `imagebuilder:ImageRecipe`, …
    pub resource_type: String,
    pub arn: String,
}

/// How an AMI is used apart from references: its deregistration protection and last launch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AmiUsage {
    pub image_id: String,
    /// When an instance was last launched from it (RFC 3339); `None`: never.
    pub last_launched: Option<String>,
    /// Deregistration protection is on (also while its cooldown runs).
    pub protected: bool,
}

/// An AMI's last launch and deregistration protection as DescribeImages gave them; `None`:
/// its answer left the field out (then it is asked for alone, see [`ImageUse::usage`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsageFields {
    pub image_id: String,
    /// `lastLaunchedTime` (RFC 3339).
    pub last_launched: Option<String>,
    /// `deregistrationProtection`: `disabled`, `enabled`, `enabled-with-cooldown …`.
    pub deregistration_protection: Option<String>,
}

impl UsageFields {
    /// Both fields are known: no further call is needed.
    pub fn complete(&self) -> bool {
        self.last_launched.is_some() && self.deregistration_protection.is_some()
    }

    /// The usage these fields give, a missing one read as never launched / not protected.
    pub fn usage(&self) -> AmiUsage {
        AmiUsage {
            image_id: self.image_id.clone(),
            last_launched: self.last_launched.clone().filter(|t| !t.trim().is_empty()),
            protected: is_protected(self.deregistration_protection.as_deref()),
        }
    }
}

/// Whether EC2's `deregistrationProtection` text means protected: anything but `disabled`
/// (`enabled`, `enabled-with-cooldown …`), so a wording this function does not know keeps
/// the AMI rather than losing it.
pub fn is_protected(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.trim().is_empty() && !v.trim().starts_with("disabled"))
}

/// EC2's answer to "is this AMI still in use?", for the guard that runs before any AMI is
/// deregistered. `region` is the AMIs' own region; every call names AMIs of one region.
pub trait ImageUse: Send + Sync {
    /// Every resource that references any of `image_ids` (instances in any state, every
    /// launch-template version, SSM parameters, Image Builder recipes), over every page.
    fn references(
        &self,
        region: &str,
        image_ids: &[String],
    ) -> impl Future<Output = Result<Vec<AmiReference>, CallError>> + Send;
    /// Protection and last launch of each AMI of `known`, completing the fields its
    /// DescribeImages answer left out (DescribeImageAttribute, one per missing field); an AMI
    /// EC2 no longer knows is left out: it is gone, so not in use.
    fn usage(
        &self,
        region: &str,
        known: &[UsageFields],
    ) -> impl Future<Output = Result<Vec<AmiUsage>, CallError>> + Send;
}

/// ECR as the output-resource cleanup needs it.
pub trait ContainerImages: Send + Sync {
    /// `BatchDeleteImage` of up to 100 images of one repository. `Ok` holds one result per
    /// image, in the order given (per-image failures: `ImageNotFound` → [`ErrorClass::NotFound`]);
    /// `Err` means the whole call failed (`RepositoryNotFoundException` → `NotFound`).
    fn batch_delete_image(
        &self,
        region: &str,
        registry_id: &str,
        repository: &str,
        images: &[ImageReference],
    ) -> impl Future<Output = Result<Vec<Result<Removal, CallError>>, CallError>> + Send;

    /// `BatchGetImage` of up to 100 tags of one repository: the digest each tag names now,
    /// one per tag in the order given, `None` for a tag the repository no longer has. A tag
    /// that cannot be resolved for any other reason fails the whole call with its class (the
    /// digest decides what may be deleted, so nothing is guessed);
    /// `RepositoryNotFoundException` → [`ErrorClass::NotFound`].
    fn resolve_tags(
        &self,
        region: &str,
        registry_id: &str,
        repository: &str,
        tags: &[String],
    ) -> impl Future<Output = Result<Vec<Option<String>>, CallError>> + Send;
}

// ---- Progress ------------------------------------------------------------------------------

/// Watches the engine decide ARNs (the operator's progress bar). The Lambda passes none, so
/// its path does not change.
pub trait Progress: Send + Sync {
    /// Once per run, before any call: how many distinct ARNs will be decided.
    fn start(&self, total: usize);
    /// Once per decided ARN, whatever its outcome.
    fn decided(&self);
}

// ---- Null adapters ------------------------------------------------------------------------

/// Ports of a function built or wired without EC2/ECR (every call fails permanently with
/// [`Unavailable::CODE`]; configuration refuses any mode but `none` in a build without the
/// `output-resources` feature, so these are reached only by a miswired handler), or without
/// the retention plan listing and store ([`Unavailable::PLANS_CODE`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unavailable;

impl Unavailable {
    pub const CODE: &'static str = "OutputResourcesUnavailable";
    fn error() -> CallError {
        CallError::permanent(
            Self::CODE,
            "this function has no EC2/ECR clients (built without the output-resources feature)",
        )
    }
}

impl Amis for Unavailable {
    async fn describe_image(&self, _: &str, _: &str) -> Result<Option<AmiDescription>, CallError> {
        Err(Self::error())
    }
    async fn snapshots_left_by(&self, _: &str, _: &str) -> Result<Vec<String>, CallError> {
        Err(Self::error())
    }
    async fn deregister_image(&self, _: &str, _: &str) -> Result<(), CallError> {
        Err(Self::error())
    }
    async fn delete_snapshot(&self, _: &str, _: &str) -> Result<Removal, CallError> {
        Err(Self::error())
    }
}

impl ImageUse for Unavailable {
    async fn references(&self, _: &str, _: &[String]) -> Result<Vec<AmiReference>, CallError> {
        Err(Self::error())
    }
    async fn usage(&self, _: &str, _: &[UsageFields]) -> Result<Vec<AmiUsage>, CallError> {
        Err(Self::error())
    }
}

impl Unavailable {
    /// The error code of a retention call on a miswired handler.
    pub const PLANS_CODE: &'static str = "RetentionPlansUnavailable";
    fn plans_error() -> CallError {
        CallError::permanent(
            Self::PLANS_CODE,
            "this function has no Image Builder listing or S3 client for retention plans",
        )
    }
}

impl BuildVersions for Unavailable {
    async fn list_image_versions(
        &self,
        _: &str,
        _: &[String],
        _: Option<String>,
    ) -> Result<Page<ImageVersionSummary>, CallError> {
        Err(Self::plans_error())
    }
    async fn list_build_versions(
        &self,
        _: &str,
        _: &str,
        _: Option<String>,
    ) -> Result<Page<BuildVersionSummary>, CallError> {
        Err(Self::plans_error())
    }
}

impl PlanStore for Unavailable {
    async fn put(&self, _: &str, _: &str, _: Vec<u8>) -> Result<(), CallError> {
        Err(Self::plans_error())
    }
    async fn get(&self, _: &str, _: &str) -> Result<Vec<u8>, CallError> {
        Err(Self::plans_error())
    }
}

impl ContainerImages for Unavailable {
    async fn batch_delete_image(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &[ImageReference],
    ) -> Result<Vec<Result<Removal, CallError>>, CallError> {
        Err(Self::error())
    }
    async fn resolve_tags(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &[String],
    ) -> Result<Vec<Option<String>>, CallError> {
        Err(Self::error())
    }
}
