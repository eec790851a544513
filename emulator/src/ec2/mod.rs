//! EC2 front: a Query-protocol EC2 endpoint in front of moto that answers what moto lacks —
//! DescribeImageReferences, `lastLaunchedTime` / `deregistrationProtection` (in DescribeImages
//! and DescribeImageAttribute), DeregisterImage refused for protected AMIs — injects latency
//! (per operation) and scripted faults, records calls and the concurrency it sees, and passes
//! every other request through unchanged.
//!
//! Layers, each importing only those below it: `api` (public handle) → `front` (HTTP,
//! dispatch, passthrough) → `control` (control API) → `state`; `query`, `xml` →
//! `references` (pure semantics); `upstream` (moto client).

mod api;
mod control;
mod front;
mod query;
mod references;
mod state;
mod upstream;
mod xml;

pub use api::Ec2Front;
pub use references::{ImageReference, ResourceType};
pub use state::{Ec2Call, Ec2Fault, Ec2Latency, ImageSettings};
