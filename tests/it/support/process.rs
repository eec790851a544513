//! Child processes for end-to-end tests: the function binary, cargo-lambda, moto.
//!
//! Every child runs in its own process group, has its stdout/stderr collected by reader
//! threads, and is killed (the whole group) when its handle is dropped — also when a test
//! panics, since unwinding drops the handle.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The repository root (the root crate's manifest directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool installed by `scripts/setup` into `.venv/bin`; panics (failing the test, never
/// skipping it) with the fix when it is missing.
pub fn venv_tool(name: &str) -> PathBuf {
    let path = repo_root().join(".venv/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup first (it installs moto, cargo-lambda, SAM CLI and \
         cfn-lint into ./.venv)",
        path.display()
    );
    path
}

/// A running child with collected output, killed on drop.
pub struct Proc {
    child: Child,
    output: Arc<Mutex<String>>,
    lifeline: Option<std::process::ChildStdin>,
}

/// Runs `argv[1:]` and kills it when stdin reaches end of file (the test process is gone).
const LIFELINE: &str = r#"
import os, signal, subprocess, sys, threading
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)
def lifeline():
    try:
        sys.stdin.buffer.read()
    finally:
        child.kill()
        os._exit(0)
threading.Thread(target=lifeline, daemon=True).start()
sys.exit(child.wait())
"#;

impl Proc {
    /// Starts `cmd` (stdout and stderr captured, stdin null unless the caller set it) in a
    /// new process group.
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        use std::os::unix::process::CommandExt;
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let echo = std::env::var_os("E2E_ECHO").is_some();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            let tag = name.to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if echo {
                        eprintln!("[{tag}] {line}");
                    }
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        Proc {
            child,
            output,
            lifeline: None,
        }
    }

    /// Like [`Proc::spawn`], for a long-running server: the program runs under a small
    /// Python wrapper (from `.venv`) that kills it when this test process ends in any way,
    /// even by SIGKILL, when `Drop` never runs.
    pub fn spawn_with_lifeline(name: &str, program: &Path, args: &[&str]) -> Proc {
        let mut cmd = Command::new(venv_tool("python"));
        cmd.arg("-c")
            .arg(LIFELINE)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped());
        cmd.current_dir(repo_root());
        let mut proc = Proc::spawn(name, cmd);
        proc.lifeline = proc.child.stdin.take();
        proc
    }

    /// The child's stdin, if it was piped (the moto launcher uses it as a lifeline).
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote so far (stdout and stderr interleaved by line).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The exit status if the process has exited by `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader threads drain the pipes.
                std::thread::sleep(Duration::from_millis(50));
                return Some(status);
            }
            if start.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // The whole group: cargo-lambda and moto may have children of their own.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (bound then released; callers retry on a lost race).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_port(port: u16, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}
