//! EC2 adapter: a thin EC2 Query-protocol client (feature `output-resources`) in place of
//! the generated SDK crate, which is by far the costliest crate of the tree to build. It is
//! built from the SDK's own parts — aws-config (credentials chain, region, endpoint
//! override), aws-sigv4 (signing) and aws-smithy-http-client (HTTPS) — plus roxmltree for
//! the XML replies.
//!
//! - [`query`]: request encoding and XML reading, pure;
//! - [`transport`]: endpoint, credentials, signing, sending, error extraction, pagination;
//! - [`endpoint`]: the endpoint of a region, or the configured override;
//! - [`ops`]: the typed operations ([`Ec2`]) and their reply parsers;
//! - `amis`: the [`crate::ports::Amis`] port over [`Ec2`];
//! - `image_use`: the [`crate::ports::ImageUse`] port over [`Ec2`] (the in-use guard).
//!
//! Modules import only downwards (amis, image_use → ops → transport → query / endpoint); this one only
//! declares and re-exports.

mod amis;
pub mod endpoint;
#[cfg(test)]
mod fake;
mod image_use;
pub mod ops;
pub mod query;
pub mod transport;

pub use ops::{
    Ec2, Image, ImageAttribute, ImageReference, ResourceTypeOption, ResourceTypeRequest,
};
pub use query::Params;
pub use transport::{Reply, Transport};
