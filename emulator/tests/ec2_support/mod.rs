//! Test support for the EC2 front: one moto server per test binary (from the project's
//! `.venv`, on a free port, behind a Python launcher whose stdin is a pipe held by this
//! process, so moto exits whenever the test process ends — also by panic or signal — even
//! though a `static` is never dropped), and a raw EC2 Query client over HTTP/1.1.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ib_emulator::Ec2Front;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs moto's server and exits as soon as stdin reaches end of file.
const LAUNCHER: &str = r#"
import os, sys, threading
def lifeline():
    try:
        sys.stdin.buffer.read()
    finally:
        os._exit(0)
threading.Thread(target=lifeline, daemon=True).start()
from moto.server import main
main(sys.argv[1:])
"#;

/// The shared moto server of this test binary.
pub struct Moto {
    pub port: u16,
    // Held only so that moto lives exactly as long as this process (see module docs).
    _child: Mutex<Child>,
    _lifeline: Mutex<ChildStdin>,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// `.venv/bin/NAME` at the repository root; panics (failing the test, never skipping it)
/// with the fix when it is missing.
fn venv_tool(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join(".venv/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: the EC2 front tests need moto. Run scripts/setup (it installs moto \
         into ./.venv), or in a worktree link the main checkout's: ln -s /path/to/main/.venv .venv",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn wait_port(port: u16, child: &mut Child, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

impl Moto {
    /// The shared server, started on first use.
    pub fn shared() -> &'static Moto {
        MOTO.get_or_init(Moto::start)
    }

    fn start() -> Moto {
        venv_tool("moto_server");
        let python = venv_tool("python");
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port();
            // moto logs every request: into a file, since an unread pipe would fill and
            // stall it.
            let log_path = std::env::temp_dir()
                .join(format!("ec2-front-moto-{}-{port}.log", std::process::id()));
            let log = std::fs::File::create(&log_path).expect("moto log file");
            let mut child = Command::new(&python)
                .arg("-c")
                .arg(LAUNCHER)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start moto with {}: {e}", python.display()));
            let lifeline = child.stdin.take().expect("piped stdin");
            if wait_port(port, &mut child, Duration::from_secs(30)) {
                return Moto {
                    port,
                    _child: Mutex::new(child),
                    _lifeline: Mutex::new(lifeline),
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_error = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("moto did not start (3 attempts); its log:\n{last_error}");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// A front on a free port in front of the shared moto.
pub async fn front() -> Ec2Front {
    Ec2Front::start(&Moto::shared().url(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("start the EC2 front")
}

/// A whole HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Text of every `<name>…</name>` in the body, in order (a test-only scan, enough for
    /// EC2's flat element names).
    pub fn all(&self, name: &str) -> Vec<String> {
        let (open, close) = (format!("<{name}>"), format!("</{name}>"));
        let mut out = Vec::new();
        let mut rest = self.body.as_str();
        while let Some(i) = rest.find(&open) {
            rest = &rest[i + open.len()..];
            let Some(j) = rest.find(&close) else { break };
            out.push(rest[..j].to_string());
            rest = &rest[j + close.len()..];
        }
        out
    }

    /// The first `<name>` text.
    pub fn first(&self, name: &str) -> Option<String> {
        self.all(name).into_iter().next()
    }

    /// `Code` of an EC2 error answer.
    pub fn error_code(&self) -> Option<String> {
        self.first("Code")
    }
}

/// A SigV4-looking Authorization header scoped to `region` / ec2 (moto does not verify it).
pub fn auth(region: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261130/{region}/ec2/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date, Signature=00"
    )
}

/// Sends one HTTP/1.1 request (`Connection: close`) and reads the whole answer.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw))
        .await
        .expect("an answer within a minute")
        .expect("read");
    let raw = String::from_utf8(raw).expect("UTF-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("header end");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

/// One EC2 Query call: `POST /` with `Action=…&Version=2016-11-15&params`, signed for
/// `region`. `params` are `key=value` pairs, already encoded.
pub async fn ec2(addr: SocketAddr, region: &str, action: &str, params: &[&str]) -> Resp {
    let mut body = format!("Action={action}&Version=2016-11-15");
    for p in params {
        body.push('&');
        body.push_str(p);
    }
    let auth = auth(region);
    let headers = [
        (
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        ),
        ("X-Amz-Date", "20261130T120000Z"),
        ("Authorization", auth.as_str()),
    ];
    http(addr, "POST", "/", &headers, &body).await
}

/// Like [`ec2`], panicking with the answer unless it is a 200.
pub async fn ec2_ok(addr: SocketAddr, region: &str, action: &str, params: &[&str]) -> Resp {
    let r = ec2(addr, region, action, params).await;
    assert_eq!(r.status, 200, "{action} failed: {}", r.body);
    r
}

/// Registers an EBS-backed AMI named `name` and returns its ID.
pub async fn register_image(addr: SocketAddr, region: &str, name: &str) -> String {
    let name = format!("Name={name}");
    let r = ec2_ok(
        addr,
        region,
        "RegisterImage",
        &[
            &name,
            "RootDeviceName=%2Fdev%2Fxvda",
            "BlockDeviceMapping.1.DeviceName=%2Fdev%2Fxvda",
            "BlockDeviceMapping.1.Ebs.VolumeSize=8",
        ],
    )
    .await;
    r.first("imageId").expect("imageId")
}

/// Runs `count` instances of `image` and returns their IDs.
pub async fn run_instances(addr: SocketAddr, region: &str, image: &str, count: u32) -> Vec<String> {
    let image = format!("ImageId={image}");
    let n = format!("MinCount={count}");
    let m = format!("MaxCount={count}");
    let r = ec2_ok(
        addr,
        region,
        "RunInstances",
        &[&image, &n, &m, "InstanceType=t3.micro"],
    )
    .await;
    r.all("instanceId")
}

/// The DescribeImageReferences form for these images, plus `extra` parameters.
pub fn references_params(images: &[&str], extra: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = images
        .iter()
        .enumerate()
        .map(|(i, id)| format!("ImageId.{}={id}", i + 1))
        .collect();
    out.extend(extra.iter().map(|s| s.to_string()));
    out
}

/// `(resourceType, arn)` pairs of a DescribeImageReferences answer.
pub fn references(r: &Resp) -> Vec<(String, String)> {
    r.all("resourceType")
        .into_iter()
        .zip(r.all("arn"))
        .collect()
}

/// Percent-encodes a form value the way the SDKs do.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
