//! The operator CLI: the same handler as the Lambda, driven from a terminal or a script.
//!
//! [`args`] parses the command line, [`run`] wires configuration, the SDK and the handler
//! and decides the exit code, [`confirm`] asks before a real delete, [`progress`] draws the
//! progress bar and [`output`] prints the report or plan.

pub mod args;
pub mod confirm;
pub mod output;
pub mod progress;
pub mod run;

pub use run::run;
