//! ECR adapter ([`ContainerImages`] over the SDK): BatchGetImage (which digest a tag names
//! now) and BatchDeleteImage. Feature `output-resources`.
//!
//! One client per region (the registry's, from the image URI), built lazily and cached.
//! Whole-call errors are classified by the shared [`classify`] with this operation's
//! modelled errors ([`ModelledClass`]); per-image failures by their [`ImageFailureCode`],
//! here, once ([`failure_class`]).

use aws_config::SdkConfig;
use aws_sdk_ecr::operation::batch_delete_image::BatchDeleteImageError;
use aws_sdk_ecr::operation::batch_get_image::{BatchGetImageError, BatchGetImageOutput};
use aws_sdk_ecr::types::{ImageFailure, ImageFailureCode, ImageIdentifier};
use aws_sdk_ecr::Client;

use super::classify::{classify, ModelledClass};
use super::RegionalClients;
use crate::ports::ImageReference;
use crate::ports::{CallError, ContainerImages, ErrorClass, Removal};

impl ModelledClass for BatchDeleteImageError {
    fn modelled_class(&self) -> Option<ErrorClass> {
        use BatchDeleteImageError as E;
        match self {
            // The repository is gone, and every image that was in it.
            E::RepositoryNotFoundException(_) => Some(ErrorClass::NotFound),
            E::ServerException(_) => Some(ErrorClass::Retryable),
            E::InvalidParameterException(_) => Some(ErrorClass::Permanent),
            // Throttling (ThrottlingException), 5xx, access denied: the shared rules.
            _ => None,
        }
    }
}

impl ModelledClass for BatchGetImageError {
    fn modelled_class(&self) -> Option<ErrorClass> {
        use BatchGetImageError as E;
        match self {
            E::RepositoryNotFoundException(_) => Some(ErrorClass::NotFound),
            E::ServerException(_) | E::UnableToGetUpstreamImageException(_) => {
                Some(ErrorClass::Retryable)
            }
            E::InvalidParameterException(_) => Some(ErrorClass::Permanent),
            _ => None,
        }
    }
}

/// Every manifest kind ECR stores, so that no tag fails as `UnsupportedImageType` only
/// because of its image's format.
const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

/// What one per-image failure of BatchDeleteImage (or BatchGetImage) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// `ImageNotFound`: already gone.
    Gone,
    /// `ImageReferencedByManifestList`: still used; skipped with its reason.
    InUse,
    Error(ErrorClass),
}

/// The one classification of per-image failure codes.
pub fn failure_class(code: Option<&ImageFailureCode>) -> FailureClass {
    use ImageFailureCode as C;
    match code {
        Some(C::ImageNotFound) => FailureClass::Gone,
        Some(C::ImageReferencedByManifestList) => FailureClass::InUse,
        Some(C::KmsError | C::UpstreamTooManyRequests | C::UpstreamUnavailable) => {
            FailureClass::Error(ErrorClass::Retryable)
        }
        // Bad tag/digest, access denied upstream, unknown future codes: retrying cannot help.
        _ => FailureClass::Error(ErrorClass::Permanent),
    }
}

/// [`ContainerImages`] backed by the AWS SDK.
#[derive(Debug)]
pub struct Ecr {
    clients: RegionalClients<Client>,
}

impl Ecr {
    /// No client is built until the first call for a region.
    pub fn new(base: &SdkConfig) -> Self {
        Ecr {
            clients: RegionalClients::new(base, |base, region| {
                Client::from_conf(
                    aws_sdk_ecr::config::Builder::from(base)
                        .region(region)
                        .build(),
                )
            }),
        }
    }

    /// The cached client for `region` (endpoint from `AWS_ENDPOINT_URL_ECR`).
    pub fn client(&self, region: &str) -> Client {
        self.clients.get(region)
    }
}

fn identifier(r: &ImageReference) -> ImageIdentifier {
    match r {
        ImageReference::Tag(t) => ImageIdentifier::builder().image_tag(t).build(),
        ImageReference::Digest(d) => ImageIdentifier::builder().image_digest(d).build(),
    }
}

/// Whether an answered identifier (of an image or a failure) is about this image: ECR
/// echoes the identifier as it was sent.
fn names(id: Option<&ImageIdentifier>, r: &ImageReference) -> bool {
    let Some(id) = id else {
        return false;
    };
    match r {
        ImageReference::Tag(t) => id.image_tag() == Some(t.as_str()),
        ImageReference::Digest(d) => id.image_digest() == Some(d.as_str()),
    }
}

/// A per-image failure's code (its `ImageFailureCode`, `Unknown` without one) and reason.
fn code_and_reason(f: &ImageFailure) -> (String, String) {
    let code = f
        .failure_code()
        .map_or("Unknown".to_string(), |c| c.as_str().to_string());
    (code, f.failure_reason().unwrap_or("").to_string())
}

impl Ecr {
    async fn batch_get(
        &self,
        region: &str,
        registry_id: &str,
        repository: &str,
        tags: &[String],
    ) -> Result<BatchGetImageOutput, CallError> {
        self.client(region)
            .batch_get_image()
            .registry_id(registry_id)
            .repository_name(repository)
            .set_image_ids(Some(
                tags.iter()
                    .map(|t| ImageIdentifier::builder().image_tag(t).build())
                    .collect(),
            ))
            .set_accepted_media_types(Some(MANIFEST_TYPES.map(String::from).to_vec()))
            .send()
            .await
            .map_err(|e| classify(&e))
    }

    /// One tag on its own: the one image answered is the tag's, whichever tag it is
    /// answered under.
    async fn resolve_alone(
        &self,
        region: &str,
        registry_id: &str,
        repository: &str,
        tag: &str,
    ) -> Result<Option<String>, CallError> {
        let tags = [tag.to_string()];
        let out = self
            .batch_get(region, registry_id, repository, &tags)
            .await?;
        if let Some(known) = answer_for(&out, tag)? {
            return Ok(known);
        }
        match out.images().first() {
            Some(image) => digest_of(image.image_id(), tag).map(Some),
            None => Err(CallError::retryable(
                "MissingResult",
                format!("BatchGetImage answered nothing for the tag {tag}"),
            )),
        }
    }
}

/// What a BatchGetImage answer says of `tag`: `Some(Some(digest))`, `Some(None)` when the
/// repository has no such tag, `None` when the answer does not name the tag. ECR echoes
/// the identifier as it was sent, but an image with several tags may be answered under
/// another of them; such a tag is asked again on its own.
fn answer_for(out: &BatchGetImageOutput, tag: &str) -> Result<Option<Option<String>>, CallError> {
    let asked = ImageReference::Tag(tag.to_string());
    if let Some(image) = out.images().iter().find(|i| names(i.image_id(), &asked)) {
        return digest_of(image.image_id(), tag).map(|d| Some(Some(d)));
    }
    let Some(f) = out.failures().iter().find(|f| names(f.image_id(), &asked)) else {
        return Ok(None);
    };
    let (code, reason) = code_and_reason(f);
    match failure_class(f.failure_code()) {
        FailureClass::Gone => Ok(Some(None)),
        FailureClass::Error(class) => Err(CallError::new(class, code, reason)),
        FailureClass::InUse => Err(CallError::new(ErrorClass::Permanent, code, reason)),
    }
}

fn digest_of(id: Option<&ImageIdentifier>, tag: &str) -> Result<String, CallError> {
    id.and_then(|i| i.image_digest())
        .map(String::from)
        .ok_or_else(|| {
            CallError::retryable(
                "MissingDigest",
                format!("BatchGetImage answered the tag {tag} without a digest"),
            )
        })
}

impl ContainerImages for Ecr {
    async fn resolve_tags(
        &self,
        region: &str,
        registry_id: &str,
        repository: &str,
        tags: &[String],
    ) -> Result<Vec<Option<String>>, CallError> {
        let out = self
            .batch_get(region, registry_id, repository, tags)
            .await?;
        let mut digests = Vec::with_capacity(tags.len());
        for tag in tags {
            digests.push(match answer_for(&out, tag)? {
                Some(known) => known,
                None => {
                    self.resolve_alone(region, registry_id, repository, tag)
                        .await?
                }
            });
        }
        Ok(digests)
    }

    async fn batch_delete_image(
        &self,
        region: &str,
        registry_id: &str,
        repository: &str,
        images: &[ImageReference],
    ) -> Result<Vec<Result<Removal, CallError>>, CallError> {
        let out = self
            .client(region)
            .batch_delete_image()
            .registry_id(registry_id)
            .repository_name(repository)
            .set_image_ids(Some(images.iter().map(identifier).collect()))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(images
            .iter()
            .map(|r| {
                let Some(f) = out.failures().iter().find(|f| names(f.image_id(), r)) else {
                    return Ok(Removal::Removed);
                };
                let (code, reason) = code_and_reason(f);
                match failure_class(f.failure_code()) {
                    FailureClass::Gone => Err(CallError::not_found(code, reason)),
                    FailureClass::InUse => Ok(Removal::InUse(format!("{code}: {reason}"))),
                    FailureClass::Error(class) => Err(CallError::new(class, code, reason)),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_image_failure_codes_are_classified_once() {
        use ImageFailureCode as C;
        assert_eq!(failure_class(Some(&C::ImageNotFound)), FailureClass::Gone);
        assert_eq!(
            failure_class(Some(&C::ImageReferencedByManifestList)),
            FailureClass::InUse
        );
        assert_eq!(
            failure_class(Some(&C::UpstreamTooManyRequests)),
            FailureClass::Error(ErrorClass::Retryable)
        );
        assert_eq!(
            failure_class(Some(&C::InvalidImageTag)),
            FailureClass::Error(ErrorClass::Permanent)
        );
        assert_eq!(
            failure_class(None),
            FailureClass::Error(ErrorClass::Permanent)
        );
    }

    #[test]
    fn failures_are_matched_to_the_image_by_tag_or_digest() {
        let f = ImageFailure::builder()
            .image_id(ImageIdentifier::builder().image_tag("1.0").build())
            .build();
        assert!(names(f.image_id(), &ImageReference::Tag("1.0".into())));
        assert!(!names(f.image_id(), &ImageReference::Tag("2.0".into())));
        assert!(!names(
            f.image_id(),
            &ImageReference::Digest("sha256:00".into())
        ));
    }
}
