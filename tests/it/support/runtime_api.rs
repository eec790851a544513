//! An in-process AWS Lambda Runtime API (version 2018-06-01) for end-to-end tests of the
//! real function binary.
//!
//! It serves what a custom runtime calls: `GET /2018-06-01/runtime/invocation/next` (long
//! poll; answers with the event and the `Lambda-Runtime-*` headers),
//! `POST …/invocation/{id}/response`, `POST …/invocation/{id}/error` (the `errorType` is
//! taken from the JSON body and from the `Lambda-Runtime-Function-Error-Type` header) and
//! `POST /2018-06-01/runtime/init/error`. The test side calls [`RuntimeApi::invoke`] with
//! the event and the time budget of that invocation (the `Lambda-Runtime-Deadline-Ms`
//! header is `now + budget`, in Unix milliseconds, as in Lambda).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, Notify};

use super::constants::FUNCTION_ARN;

/// How an invocation ended, as the function reported it.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `POST …/invocation/{id}/response`: the returned JSON.
    Response(Value),
    /// `POST …/invocation/{id}/error` or `…/init/error`.
    Error(ErrorReply),
}

/// An error reported by the function.
#[derive(Debug, Clone)]
pub struct ErrorReply {
    /// `errorType` of the JSON body.
    pub error_type: Option<String>,
    /// `errorMessage` of the JSON body.
    pub error_message: Option<String>,
    /// The `Lambda-Runtime-Function-Error-Type` request header.
    pub header_error_type: Option<String>,
}

impl Reply {
    /// The response JSON; panics with the error otherwise.
    pub fn response(&self) -> &Value {
        match self {
            Reply::Response(v) => v,
            Reply::Error(e) => panic!("expected a response, the function reported an error: {e:?}"),
        }
    }

    /// The error; panics with the response otherwise.
    pub fn error(&self) -> &ErrorReply {
        match self {
            Reply::Error(e) => e,
            Reply::Response(v) => panic!("expected an error, the function responded: {v}"),
        }
    }
}

struct Pending {
    request_id: String,
    body: Bytes,
    deadline_ms: u64,
    reply: oneshot::Sender<Reply>,
}

struct Shared {
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>,
    in_flight: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    init_error: Mutex<Option<ErrorReply>>,
    init_error_notify: Notify,
}

/// A running Runtime API server; stops when dropped (its tasks live on the test's runtime).
pub struct RuntimeApi {
    addr: SocketAddr,
    tx: mpsc::UnboundedSender<Pending>,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl RuntimeApi {
    /// Binds 127.0.0.1 on a free port and serves on the current tokio runtime.
    pub async fn start() -> RuntimeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Runtime API on 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(rx),
            in_flight: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
            init_error_notify: Notify::new(),
        });
        let for_loop = shared.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = for_loop.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(route(shared, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        RuntimeApi {
            addr,
            tx,
            shared,
            accept,
        }
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API` (host:port, no scheme).
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Queues `event` with a deadline `budget` from now (from when the function picks it
    /// up, as Lambda does) and waits for the function's reply. Panics after `budget` + 60 s.
    pub async fn invoke(&self, event: &Value, budget: Duration) -> Reply {
        self.invoke_raw(Bytes::from(serde_json::to_vec(event).unwrap()), budget)
            .await
    }

    /// [`RuntimeApi::invoke`] with the payload as given, byte for byte (JSON that
    /// `serde_json::Value` cannot hold: numbers outside an f64, deep nesting).
    pub async fn invoke_raw(&self, payload: Bytes, budget: Duration) -> Reply {
        let request_id = new_request_id();
        let (reply_tx, reply_rx) = oneshot::channel();
        self.tx
            .send(Pending {
                request_id: request_id.clone(),
                body: payload,
                deadline_ms: budget.as_millis() as u64,
                reply: reply_tx,
            })
            .expect("the Runtime API is running");
        let wait = budget + Duration::from_secs(60);
        tokio::time::timeout(wait, reply_rx)
            .await
            .unwrap_or_else(|_| {
                panic!("the function did not answer invocation {request_id} within {wait:?}")
            })
            .expect("the Runtime API dropped the invocation")
    }

    /// Waits up to `timeout` for a `POST /runtime/init/error`.
    pub async fn init_error(&self, timeout: Duration) -> Option<ErrorReply> {
        let wait = async {
            loop {
                let notified = self.shared.init_error_notify.notified();
                if let Some(e) = self.shared.init_error.lock().unwrap().clone() {
                    return e;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }
}

fn new_request_id() -> String {
    let a = fastrand::u128(..);
    let h = format!("{a:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

async fn route(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["2018-06-01", "runtime", "invocation", "next"]) => {
            let next = { shared.queue.lock().await.recv().await };
            let Some(p) = next else {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"errorMessage":"shut down"}"#,
                );
            };
            // The budget starts when the function gets the event, as in Lambda.
            let deadline = now_ms() + p.deadline_ms;
            shared
                .in_flight
                .lock()
                .unwrap()
                .insert(p.request_id.clone(), p.reply);
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .header("lambda-runtime-aws-request-id", &p.request_id)
                .header("lambda-runtime-deadline-ms", deadline.to_string())
                .header("lambda-runtime-invoked-function-arn", FUNCTION_ARN)
                .header(
                    "lambda-runtime-trace-id",
                    format!(
                        "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
                        now_ms() / 1000,
                        fastrand::u128(..) >> 32,
                        fastrand::u64(..)
                    ),
                )
                .body(Full::new(p.body))
                .unwrap()
        }
        ("POST", ["2018-06-01", "runtime", "invocation", id, kind @ ("response" | "error")]) => {
            let id = id.to_string();
            let is_error = *kind == "error";
            let (header_error_type, body) = error_type_and_body(req).await;
            let Some(tx) = shared.in_flight.lock().unwrap().remove(&id) else {
                return text(
                    StatusCode::BAD_REQUEST,
                    r#"{"errorMessage":"unknown or finished request id"}"#,
                );
            };
            let reply =
                if is_error {
                    Reply::Error(error_reply(&body, header_error_type))
                } else {
                    Reply::Response(serde_json::from_slice(&body).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&body).into_owned())
                    }))
                };
            let _ = tx.send(reply);
            text(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        ("POST", ["2018-06-01", "runtime", "init", "error"]) => {
            let (header_error_type, body) = error_type_and_body(req).await;
            *shared.init_error.lock().unwrap() = Some(error_reply(&body, header_error_type));
            shared.init_error_notify.notify_waiters();
            text(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        _ => text(
            StatusCode::NOT_FOUND,
            r#"{"errorMessage":"no such Runtime API route"}"#,
        ),
    }
}

/// The `Lambda-Runtime-Function-Error-Type` header and the body of a function's POST.
async fn error_type_and_body(req: Request<Incoming>) -> (Option<String>, Bytes) {
    let header_error_type = req
        .headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (header_error_type, body)
}

fn error_reply(body: &[u8], header_error_type: Option<String>) -> ErrorReply {
    let body: Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
    ErrorReply {
        error_type: body
            .get("errorType")
            .and_then(Value::as_str)
            .map(str::to_string),
        error_message: body
            .get("errorMessage")
            .and_then(Value::as_str)
            .map(str::to_string),
        header_error_type,
    }
}
