//! moto (local SQS, EventBridge, EC2 and ECR) for end-to-end tests.
//!
//! One moto server per test binary, started on first use on a free 127.0.0.1 port. Tests
//! share it and stay apart by using queues with unique names. moto runs behind a small
//! Python launcher whose stdin is a pipe held by the test process: when the test process
//! ends — normally, by panic or by a signal — the pipe closes and moto exits, so no server
//! is left behind even though a `static` is never dropped.
//!
//! SQS and ECR are driven with the AWS SDK for Rust (the crate's own clients), EC2 with the
//! crate's own thin Query client; EventBridge, which the crate has no SDK for, with its JSON
//! protocol over a plain HTTP/1.1 request.

use std::io::{Read, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::Value;

use super::constants::REGION;
use super::process::{free_port, venv_tool, wait_port, Proc};

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
    // Kept only so that moto lives exactly as long as this process (see module docs).
    _proc: Mutex<Proc>,
    _lifeline: Mutex<ChildStdin>,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

impl Moto {
    /// The shared server, started on first use. Fails (never skips) when `.venv` lacks moto.
    pub fn shared() -> &'static Moto {
        MOTO.get_or_init(Moto::start)
    }

    fn start() -> Moto {
        venv_tool("moto_server");
        let python = venv_tool("python");
        let mut last_output = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(&python);
            cmd.arg("-c")
                .arg(LAUNCHER)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::piped());
            let mut proc = Proc::spawn("moto", cmd);
            let lifeline = proc.take_stdin().expect("piped stdin");
            if wait_port(port, Duration::from_secs(30)) && proc.is_running() {
                return Moto {
                    port,
                    _proc: Mutex::new(proc),
                    _lifeline: Mutex::new(lifeline),
                };
            }
            last_output = proc.output();
        }
        panic!("moto did not start (3 attempts); its output:\n{last_output}");
    }

    /// `http://127.0.0.1:PORT`, the value for `AWS_ENDPOINT_URL_SQS`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The SDK configuration of a client of this moto: `region`, test credentials, plain
    /// HTTP.
    pub fn sdk_config(&self, region: &str) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "test", "test", None, None, "e2e",
            )))
            .endpoint_url(self.url())
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build()
    }

    /// An SQS client for this moto, in the function's region.
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config(REGION))
    }

    /// An S3 client for this moto, in the function's region (path-style: moto has no
    /// per-bucket host names).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk_config(REGION))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// The crate's own thin EC2 Query client for this moto (each call names its region):
    /// seeding and checking go through the client the function uses.
    #[cfg(feature = "output-resources")]
    pub fn ec2(&self, region: &str) -> imagebuilder_reaper::aws::ec2::Ec2 {
        imagebuilder_reaper::aws::ec2::Ec2::new(&self.sdk_config(region))
    }

    /// An ECR client for this moto, in `region`.
    #[cfg(feature = "output-resources")]
    pub fn ecr(&self, region: &str) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::new(&self.sdk_config(region))
    }

    /// One EventBridge API call (JSON 1.1 protocol), e.g. `events("PutRule", json!({…}))`;
    /// panics on an HTTP error with moto's answer.
    pub fn events(&self, operation: &str, body: Value) -> Value {
        let body = body.to_string();
        let request = format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-amz-json-1.1\r\n\
             X-Amz-Target: AWSEvents.{operation}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/events/aws4_request, \
             SignedHeaders=host, Signature=00\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{body}",
            port = self.port,
            len = body.len()
        );
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
        stream.write_all(request.as_bytes()).expect("send to moto");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read moto's answer");
        let raw = String::from_utf8_lossy(&raw);
        let (head, payload) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!(
            (200..300).contains(&status),
            "EventBridge {operation} failed in moto: {head}\n{payload}"
        );
        serde_json::from_str(payload).unwrap_or(Value::Null)
    }
}

/// A unique queue name for this test (`prefix-<random>`), so parallel tests never share one.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", fastrand::u64(..))
}

/// Creates a standard queue and returns its URL.
pub async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateQueue {name} in moto: {e:?}"))
        .queue_url
        .expect("queue url")
}

/// The queue's ARN.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .expect("QueueArn")
}

/// A message read from a queue.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub body: String,
    /// The `errorCode` message attribute (String), if present.
    pub error_code: Option<String>,
    pub receipt_handle: String,
}

impl Received {
    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("message body is not JSON ({e}): {}", self.body))
    }
}

/// Reads (and deletes) messages until `expected` have arrived or `timeout` passed, then
/// once more briefly to catch extras. Returns all of them.
pub async fn drain(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<Received> {
    let start = Instant::now();
    let mut got: Vec<Received> = Vec::new();
    let mut empty_after_expected = 0;
    loop {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .wait_time_seconds(0)
            .send()
            .await
            .unwrap_or_else(|e| panic!("ReceiveMessage {url}: {e:?}"));
        let batch = out.messages.unwrap_or_default();
        let was_empty = batch.is_empty();
        for m in batch {
            let error_code = m
                .message_attributes
                .as_ref()
                .and_then(|a| a.get("errorCode"))
                .and_then(|v| v.string_value.clone());
            let r = Received {
                message_id: m.message_id.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
                error_code,
                receipt_handle: m.receipt_handle.unwrap_or_default(),
            };
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(&r.receipt_handle)
                .send()
                .await
                .expect("DeleteMessage");
            got.push(r);
        }
        if got.len() >= expected && was_empty {
            empty_after_expected += 1;
            if empty_after_expected >= 2 {
                return got;
            }
        }
        if start.elapsed() > timeout {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(if was_empty { 100 } else { 0 })).await;
    }
}
