//! imagebuilder-reaper: deletes EC2 Image Builder image build versions named by events.
//!
//! The data path, one module per step:
//! event ([`event`]) → ARN ([`arn`]) → plan + delete ([`engine`]) → dead letter
//! ([`deadletter`]) → report ([`outcome`]), orchestrated per invocation by [`handler`].
//! [`ports`] holds the narrow traits the engine talks through; [`aws`] holds one SDK-backed
//! adapter per AWS service; [`config`], [`error`] and [`metrics`] are the edges.
//! [`limiter`] paces the calls to each service and region; [`limited`] wraps the ports in it.
//! [`retention`] is the pure core of retention plans (selection rules, plan documents);
//! [`retention_run`] makes and reads plans over the ports.
//! [`cli`] is the operator's face of the same handler: the binary outside Lambda.

pub mod arn;
pub mod aws;
pub mod batch;
pub mod cli;
pub mod config;
pub mod deadletter;
pub mod delete;
pub mod engine;
pub mod error;
pub mod event;
pub mod handler;
pub mod limited;
pub mod limiter;
pub mod metrics;
pub mod outcome;
pub mod output_resources;
pub mod ports;
pub mod report;
pub mod retention;
pub mod retention_run;
pub mod retry;
