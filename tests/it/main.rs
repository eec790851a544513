//! The integration tests, one test binary (`cargo test --test it`).
//!
//! - [`decode`]: every sample event in `events/` through the one decoding point.
//! - [`handler`]: the handler and engine over in-memory fakes: the routing table,
//!   FIFO order, dedup, dry run, the protect tag, the deadline, retries, the report.
//! - [`limits`]: the rate limiters wired around the ports, against a fake Image Builder
//!   that answers 429 above a simulated rate.
//! - [`output_resources`]: deleting what DeleteImage leaves behind (AMIs, snapshots, ECR
//!   images), over in-memory fakes of EC2 and ECR.
//! - [`container_digests`]: container images deleted by digest, never by tag (a moved
//!   `latest` is left alone).
//! - [`in_use_guard`]: the in-use guard (references, protection, recent launches, fail
//!   closed) over the same fakes.
//! - [`adapters`]: the real SDK adapters over HTTP against the Image Builder emulator and
//!   an SQS stub.
//! - [`e2e`] and [`e2e_output_resources`]: the real binary under an in-process Lambda
//!   Runtime API, against moto and the Image Builder emulator.
//! - [`retention`]: retention plans, wired: plan requests over the listing and the plan
//!   store, executions with their drift check, in memory and end to end (seeded history,
//!   moto S3).
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
mod container_digests;
mod decode;
mod e2e;
#[cfg(feature = "output-resources")]
mod e2e_in_use_guard;
#[cfg(feature = "output-resources")]
mod e2e_output_resources;
mod handler;
mod hardening;
mod in_use_guard;
mod limits;
mod output_resources;
mod retention;
mod statemachine;
mod support;
