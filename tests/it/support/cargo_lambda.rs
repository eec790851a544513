//! cargo-lambda as the Runtime API: `cargo lambda watch --only-lambda-apis` serves the
//! Runtime API only (the function binary is started by the test, with
//! `AWS_LAMBDA_RUNTIME_API=127.0.0.1:PORT/.rt`), and `cargo lambda invoke -P PORT _`
//! sends an event to it (the function name `_` addresses whatever function is connected).
//!
//! cargo-lambda 1.9 hands the function `Lambda-Runtime-Invoked-Function-Arn: function-arn`
//! (no account in it) and `Lambda-Runtime-Deadline-Ms: 600000` (a relative value, not Unix
//! milliseconds), so `ALLOWED_ACCOUNT_IDS` must be set explicitly under it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::process::{free_port, repo_root, venv_tool, wait_port, Proc};

/// A running `cargo lambda watch --only-lambda-apis`, killed on drop.
pub struct CargoLambda {
    pub port: u16,
    pub proc: Proc,
}

impl CargoLambda {
    pub fn start() -> CargoLambda {
        let bin = venv_tool("cargo-lambda");
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let port_arg = port.to_string();
            let args = [
                "lambda",
                "watch",
                "--only-lambda-apis",
                "--invoke-address",
                "127.0.0.1",
                "-P",
                &port_arg,
            ];
            let mut proc = Proc::spawn_with_lifeline("cargo-lambda", &bin, &args);
            if wait_port(port, Duration::from_secs(30)) && proc.is_running() {
                return CargoLambda { port, proc };
            }
            last = proc.output();
        }
        panic!("cargo lambda watch did not start (3 attempts); its output:\n{last}");
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`: with a path, the Rust runtime client needs
    /// the scheme too (`127.0.0.1:PORT/.rt` does not parse as a URI and panics at start).
    pub fn runtime_api(&self) -> String {
        format!("http://127.0.0.1:{}/.rt", self.port)
    }

    /// `cargo lambda invoke -P PORT _ --data-file FILE`: (success, output). On success the
    /// output is the function's response; on a function error, cargo-lambda's rendering of
    /// it (`Error: <errorType>` and the message). Panics if it has not finished in `timeout`.
    pub fn invoke(&self, data_file: &Path, timeout: Duration) -> (bool, String) {
        let mut cmd = Command::new(venv_tool("cargo-lambda"));
        cmd.current_dir(repo_root())
            .args([
                "lambda",
                "invoke",
                "--invoke-address",
                "127.0.0.1",
                "-P",
                &self.port.to_string(),
                "_",
                "--data-file",
            ])
            .arg(data_file)
            .stdin(Stdio::null());
        let mut proc = Proc::spawn("cargo-lambda-invoke", cmd);
        let status = proc.wait_exit(timeout);
        let status = status.unwrap_or_else(|| {
            panic!(
                "cargo lambda invoke did not finish within {timeout:?}; its output:\n{}\ncargo lambda watch:\n{}",
                proc.output(),
                self.proc.output()
            )
        });
        (status.success(), proc.output())
    }
}
