//! The binary as the operator CLI: no Runtime API, the world's emulator and moto reached
//! through the standard endpoint variables (moto's STS answers GetCallerIdentity with
//! account 123456789012), run with pipes or on a pseudo-terminal.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::process::repo_root;
use super::world::World;

/// The binary cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_imagebuilder-reaper");

/// What one run of the CLI left behind.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Standard output as the one JSON document it must be.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:#?}"))
    }
}

/// The environment of an operator's shell pointed at `world`: region, test credentials and
/// the endpoints, with no Lambda variable and no dead-letter queue; `extra` adds to it.
pub fn operator_env(world: &World, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = world
        .function_env("unused", &[])
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AWS_LAMBDA_") && k != "DEAD_LETTER_QUEUE_URL")
        .collect();
    env.push(("AWS_ENDPOINT_URL_STS".into(), world.moto.url()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// The dead-letter queue URL the world's function is configured with.
pub fn world_dlq_url(world: &World) -> String {
    world
        .function_env("unused", &[])
        .into_iter()
        .find(|(k, _)| k == "DEAD_LETTER_QUEUE_URL")
        .map(|(_, v)| v)
        .expect("the world has a dead-letter queue")
}

/// Runs the CLI with exactly `env`, standard input `stdin` (none: `/dev/null`) and pipes for
/// its output; off the test's runtime threads, so the in-process emulator keeps serving.
pub async fn run(env: Vec<(String, String)>, args: &[&str], stdin: Option<&str>) -> Ran {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || run_blocking(&env, &args, stdin.as_deref()))
        .await
        .expect("the CLI run")
}

fn run_blocking(env: &[(String, String)], args: &[String], stdin: Option<&str>) -> Ran {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .envs(env.iter().cloned())
        .args(args)
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().expect("start the CLI");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .expect("write the CLI's stdin");
    }
    let out = child.wait_with_output().expect("the CLI's output");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The CLI on a pseudo-terminal (standard input and standard error), its standard output
/// redirected to `stdout_file` so what reaches the terminal is standard error alone.
pub fn on_terminal(
    env: &[(String, String)],
    args: &[&str],
    stdout_file: &Path,
) -> expectrl::session::OsSession {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("exec \"$0\" \"$@\" >\"$CLI_STDOUT\"")
        .arg(BIN)
        .args(args)
        .env_clear()
        .envs(env.iter().cloned())
        .env("CLI_STDOUT", stdout_file)
        .env("TERM", "xterm")
        .current_dir(repo_root());
    let mut session = expectrl::Session::spawn(cmd).expect("spawn the CLI on a pseudo-terminal");
    session.set_expect_timeout(Some(Duration::from_secs(60)));
    session
}
