//! The integration tests, one test binary (`cargo test --test it`).
//!
//! - [`decode`]: every sample event in `events/` through the one decoding point.
//! - [`handler`]: the handler and engine over in-memory fakes: the routing table,
//!   FIFO order, dedup, dry run, the protect tag, the deadline, retries, the report.
//! - [`output_resources`]: deleting what DeleteImage leaves behind (AMIs, snapshots, ECR
//!   images), over in-memory fakes of EC2 and ECR.
//! - [`adapters`]: the real SDK adapters over HTTP against the Image Builder emulator and
//!   an SQS stub.
//! - [`e2e`] and [`e2e_output_resources`]: the real binary under an in-process Lambda
//!   Runtime API, against moto and the Image Builder emulator.
//! - [`statemachine`]: the bulk-delete state machine against the function's error contract.
//! - [`cli`] and [`cli_plan`]: the binary as the operator CLI (no Runtime API): arguments,
//!   exit codes, the confirmation and progress bar on a pseudo-terminal, `plan` / `apply`.
//!
//! [`support`] holds what they share: constants, fixtures, fakes, the in-memory harness
//! and the end-to-end world.

mod adapters;
mod architecture;
mod cli;
mod cli_plan;
mod decode;
mod e2e;
#[cfg(feature = "output-resources")]
mod e2e_output_resources;
mod handler;
mod hardening;
mod output_resources;
mod statemachine;
mod support;
