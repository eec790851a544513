//! HTTP layer: the accept loop (TCP_NODELAY, HTTP/1.1 keep-alive), dispatch to the Image
//! Builder operations or the control API, fault decisions, answers and the call log. Imports
//! `request` (input), `control`, `state` and `model`; only the facade imports this module.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::control;
use crate::model;
use crate::request::{self, ApiError, Op, Parsed};
use crate::state::{Call, Decision, Shared};

type Resp = Response<Full<Bytes>>;

/// Header carrying the error code, read first by the AWS SDKs.
const ERROR_TYPE: &str = "x-amzn-errortype";
/// Header carrying the request id on every response.
const REQUEST_ID: &str = "x-amzn-requestid";

/// Accepts connections forever; each connection is served on its own task so that a slow
/// (latency-injected) request never holds up others.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // e.g. EMFILE under a connection storm: back off instead of spinning.
                if shared.verbose() {
                    eprintln!("ib-emulator: accept failed: {err}");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Without this, small responses can sit ~40 ms waiting for a delayed ACK (Nagle).
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(shared, req).await) }
            });
            // Connection errors (client hung up) only end this connection.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Resp {
    if req.uri().path().starts_with("/_emulator") {
        control::control(&shared, req).await
    } else {
        api(shared, req).await
    }
}

// ---------------------------------------------------------------------------------------
// Image Builder API

fn injected_message(code: &str, op: Op, arn: Option<&str>) -> String {
    let arn = arn.unwrap_or("-");
    match code {
        "CallRateLimitExceededException" => format!("Rate exceeded for {}.", op.name()),
        "ServiceException" => "An internal service error occurred. Please retry.".into(),
        "ServiceUnavailableException" => "The service is temporarily unavailable.".into(),
        "ResourceDependencyException" => {
            format!("Resource dependency error: the image {arn} is in use by another resource.")
        }
        "ResourceNotFoundException" => format!("The image {arn} does not exist."),
        "ForbiddenException" => {
            format!("You are not authorized to perform {} on {arn}.", op.name())
        }
        other => format!("{other} (injected by ib-emulator) for {arn}."),
    }
}

/// Authentication comes before validation, as in the service: an unsigned or wrongly
/// scoped request is refused whatever its input.
fn authenticate(
    scope: Option<&request::Scope>,
    op: Op,
    parts: &hyper::http::request::Parts,
    input: Result<Parsed, ApiError>,
) -> Result<Parsed, ApiError> {
    match scope {
        None => Err(request::err(
            "ForbiddenException",
            "Missing or malformed AWS4-HMAC-SHA256 Authorization header: the request must be signed.",
        )),
        Some(s) if s.service != "imagebuilder" => Err(request::err(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to correct service: 'imagebuilder'. Found '{}'.",
                s.service
            ),
        )),
        Some(_) if op == Op::Unknown => Err(request::err(
            "UnknownOperationException",
            format!("Unknown operation {} {}", parts.method, parts.uri.path()),
        )),
        Some(_) => input,
    }
}

async fn api(shared: Arc<Shared>, req: Request<Incoming>) -> Resp {
    let _in_flight = shared.enter();
    let at_ms = shared.elapsed_ms();
    let request_id = model::request_id();
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let op = Op::route(&parts.method, parts.uri.path());
    let scope = request::parse_auth(&parts.headers);
    let (arn, input) = request::parse_input(op, parts.uri.query(), &body);
    let pre = authenticate(scope.as_ref(), op, &parts, input);

    // Every well-formed call, listing included, goes through the same fault decision.
    let (decision, delay) = match &pre {
        Ok(p) => shared.decide(op.name(), p.arn.as_deref()),
        Err(_) => (Decision::Normal, shared.latency()),
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    let region = scope.as_ref().map(|s| s.region.clone());
    let resp = match (pre, decision) {
        (Err((code, message)), _) => error_response(&request_id, &code, &message),
        (Ok(p), Decision::Fail(code)) => error_response(
            &request_id,
            &code,
            &injected_message(&code, op, p.arn.as_deref()),
        ),
        (Ok(p), Decision::Normal) => {
            execute(&shared, op, p, region.as_deref().unwrap_or(""), &request_id)
        }
    };

    let operation = if op == Op::Unknown {
        parts.uri.path().to_string()
    } else {
        op.name().to_string()
    };
    shared.record(Call {
        operation,
        arn,
        region,
        status: resp.status().as_u16(),
        error_code: resp
            .headers()
            .get(ERROR_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        service: scope.map(|s| s.service),
        at_ms,
    });
    resp
}

/// The state-based answer of a well-formed, non-faulted call.
fn execute(shared: &Shared, op: Op, p: Parsed, region: &str, request_id: &str) -> Resp {
    let arn = p.arn.as_deref().unwrap_or_default();
    let not_found = || {
        error_response(
            request_id,
            "ResourceNotFoundException",
            &injected_message("ResourceNotFoundException", op, Some(arn)),
        )
    };
    let ok = |body: Value| json_response(StatusCode::OK, request_id, &body);
    match (op, p.list) {
        (Op::DeleteImage, _) => {
            if shared.delete_image(arn) {
                ok(json!({"requestId": request_id, "imageBuildVersionArn": arn}))
            } else {
                not_found()
            }
        }
        (Op::GetImage, _) => match shared.get_image(arn) {
            Some(record) => ok(json!({
                "requestId": request_id,
                "image": model::image_json(arn, &record),
            })),
            None => not_found(),
        },
        (Op::ListImageBuildVersions, Some(mut q)) => {
            q.region = region.to_string();
            let page = shared.list_build_versions(&q);
            let items: Vec<Value> = page
                .items
                .iter()
                .map(|(a, r)| model::image_summary_json(a, r))
                .collect();
            ok(list_body(
                request_id,
                "imageSummaryList",
                items,
                op,
                page.last,
            ))
        }
        (Op::ListImages, Some(mut q)) => {
            q.region = region.to_string();
            let page = shared.list_image_versions(&q);
            let items: Vec<Value> = page
                .items
                .iter()
                .map(|(v, date)| model::image_version_json(v, date))
                .collect();
            ok(list_body(
                request_id,
                "imageVersionList",
                items,
                op,
                page.last,
            ))
        }
        _ => error_response(request_id, "UnknownOperationException", "Unknown operation"),
    }
}

/// `{"requestId", <list>: [...], "nextToken"?}`.
fn list_body(
    request_id: &str,
    list: &str,
    items: Vec<Value>,
    op: Op,
    last: Option<String>,
) -> Value {
    let mut out = json!({"requestId": request_id, list: items});
    if let Some(last) = last {
        out["nextToken"] = json!(model::encode_token(op.name(), &last));
    }
    out
}

fn json_response(status: StatusCode, request_id: &str, body: &Value) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, v);
    }
    resp
}

/// A modelled error: its HTTP status (400 for codes the model does not know; 403 for
/// signature errors; 404 for unknown operations), `X-Amzn-ErrorType`, body `{"message"}`.
pub(crate) fn error_response(request_id: &str, code: &str, message: &str) -> Resp {
    let status = model::status_of(code).unwrap_or(match code {
        "InvalidSignatureException" => 403,
        "UnknownOperationException" => 404,
        _ => 400,
    });
    let mut resp = json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        request_id,
        &json!({"message": message}),
    );
    if let Ok(v) = HeaderValue::from_str(code) {
        resp.headers_mut().insert(ERROR_TYPE, v);
    }
    resp
}
