//! Calibration for the init figure: the smallest Rust "function" there is. It only asks the
//! Runtime API for the next event (std only, no async runtime, no SDK), so its "init" is the
//! cost of spawning a process and one HTTP request. scripts/bench builds it with `rustc -O`.
use std::io::{Read, Write};
use std::net::TcpStream;

fn main() {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API").expect("AWS_LAMBDA_RUNTIME_API");
    let mut s = TcpStream::connect(&api).expect("connect");
    s.set_nodelay(true).ok();
    write!(s, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: {api}\r\n\r\n").unwrap();
    let mut buf = [0u8; 4096];
    let _ = s.read(&mut buf); // blocks until an event is handed out (or the harness stops us)
}
