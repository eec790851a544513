//! imagebuilder-reaper: deletes EC2 Image Builder image build versions named by events.
//!
//! The data path, one module per step:
//! event ([`event`]) → ARN ([`arn`]) → plan + delete ([`engine`]) → dead letter
//! ([`deadletter`]) → report ([`outcome`]). [`ports`] holds the narrow traits the engine
//! talks through; [`aws`] holds one SDK-backed adapter per AWS service.

pub mod arn;
pub mod event;
