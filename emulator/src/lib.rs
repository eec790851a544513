//! Local EC2 Image Builder emulator: serves the REST-JSON wire format of imagebuilder
//! 2019-12-02 (DeleteImage, GetImage, ListImages, ListImageBuildVersions) over plain HTTP on
//! loopback, keeps image state, injects faults (latency, throttling, 5xx, request-rate
//! limits overall and per operation, per-ARN scripted answers) and records every call, so
//! that real AWS SDK clients (pointed at it with `AWS_ENDPOINT_URL_IMAGEBUILDER`) can be
//! tested and benchmarked.
//!
//! This file only declares the modules and re-exports the public API; no module imports it.
//! Imports point one way, from the facade down: `emulator` → `server` → `request` /
//! `control` → `history` → `state` → `faults` / `model`, where `model` (wire facts) and
//! `faults` (settings, token bucket) import nothing from the crate. No module imports one
//! that (transitively) imports it back.

mod control;
pub mod ec2;
mod emulator;
mod faults;
mod history;
pub mod model;
mod request;
mod server;
mod state;

pub use ec2::Ec2Front;
pub use emulator::Emulator;
pub use faults::{Faults, RateLimit};
pub use history::{history, History};
pub use state::{Call, SeedImage, Step, ANY_ARN};
