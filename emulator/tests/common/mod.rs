//! Test support: a minimal HTTP/1.1 client over a raw `TcpStream` (keep-alive, Content-Length
//! bodies only — all the emulator sends), so the emulator is tested on the wire without an
//! HTTP client dependency, plus request helpers shaped like the SDK's requests.

#![allow(dead_code)]

use std::net::SocketAddr;

use ib_emulator::{Emulator, Faults, SeedImage};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One keep-alive connection.
pub struct Conn {
    stream: BufReader<TcpStream>,
}

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    /// First header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("bad JSON {:?}: {e}", self.body))
    }

    pub fn error_type(&self) -> Option<&str> {
        self.header("x-amzn-errortype")
    }
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        Conn {
            stream: BufReader::new(stream),
        }
    }

    /// Sends one request and reads its response; the connection stays open.
    pub async fn send(
        &mut self,
        method: &str,
        target: &str,
        auth: Option<&str>,
        body: &str,
    ) -> Resp {
        let mut req = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(a) = auth {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.stream
            .get_mut()
            .write_all(req.as_bytes())
            .await
            .expect("write");

        let mut line = String::new();
        self.stream.read_line(&mut line).await.expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').expect("header colon");
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut buf = vec![0; len];
        self.stream.read_exact(&mut buf).await.expect("body");
        Resp {
            status,
            headers,
            body: String::from_utf8(buf).unwrap(),
        }
    }

    pub async fn delete_image(&mut self, arn: &str) -> Resp {
        self.send("DELETE", &delete_target(arn), Some(&auth("us-east-1")), "")
            .await
    }

    pub async fn get_image(&mut self, arn: &str) -> Resp {
        let target = format!("/GetImage?imageBuildVersionArn={}", enc(arn));
        self.send("GET", &target, Some(&auth("us-east-1")), "")
            .await
    }

    /// `POST /<operation>` with a JSON body, signed for `region`.
    pub async fn list(&mut self, operation: &str, region: &str, body: &Value) -> Resp {
        let target = format!("/{operation}");
        self.send("POST", &target, Some(&auth(region)), &body.to_string())
            .await
    }

    /// Every page of a list operation from `body` (its `nextToken` is set per page): the
    /// pages' items in order, and the number of pages. Panics on a non-200 page.
    pub async fn list_all(
        &mut self,
        operation: &str,
        region: &str,
        body: &Value,
        items: &str,
    ) -> (Vec<Value>, usize) {
        let (mut all, mut pages, mut body) = (Vec::new(), 0, body.clone());
        loop {
            let r = self.list(operation, region, &body).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let page = r.json();
            pages += 1;
            all.extend(page[items].as_array().expect("item list").iter().cloned());
            match page.get("nextToken").and_then(Value::as_str) {
                Some(t) => body["nextToken"] = Value::from(t),
                None => return (all, pages),
            }
            assert!(pages < 10_000, "pagination does not end");
        }
    }

    pub async fn control(&mut self, method: &str, path: &str, body: &str) -> Resp {
        self.send(method, path, None, body).await
    }
}

/// A SigV4 Authorization header scoped to `region` / imagebuilder (signature not checked).
pub fn auth(region: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/{region}/imagebuilder/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature=0123456789abcdef"
    )
}

/// Percent-encodes like the SDK does for query values.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn delete_target(arn: &str) -> String {
    format!("/DeleteImage?imageBuildVersionArn={}", enc(arn))
}

/// A valid build-version ARN in us-east-1.
pub fn arn(build: u32) -> String {
    format!("arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/{build}")
}

pub fn seed_image(arn: &str) -> SeedImage {
    SeedImage {
        arn: arn.to_string(),
        ..Default::default()
    }
}

/// Starts an emulator on a free loopback port.
pub async fn start(faults: Faults) -> (Emulator, SocketAddr) {
    let emu = Emulator::new(faults);
    let addr = emu
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("start emulator");
    (emu, addr)
}
