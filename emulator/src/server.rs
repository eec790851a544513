//! HTTP layer: the accept loop (TCP_NODELAY, HTTP/1.1 keep-alive), the Image Builder
//! REST-JSON operations, and the unauthenticated control API under `/_emulator/`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::model;
use crate::{Call, Decision, Faults, SeedImage, Shared, Step};

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
        control(shared, req).await
    } else {
        api(shared, req).await
    }
}

// ---------------------------------------------------------------------------------------
// Image Builder API

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    DeleteImage,
    GetImage,
    ListImageBuildVersions,
    Unknown,
}

impl Op {
    fn route(method: &Method, path: &str) -> Op {
        match (method, path.trim_end_matches('/')) {
            (&Method::DELETE, "/DeleteImage") => Op::DeleteImage,
            (&Method::GET, "/GetImage") => Op::GetImage,
            (&Method::POST, "/ListImageBuildVersions") => Op::ListImageBuildVersions,
            _ => Op::Unknown,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Op::DeleteImage => "DeleteImage",
            Op::GetImage => "GetImage",
            Op::ListImageBuildVersions => "ListImageBuildVersions",
            Op::Unknown => "Unknown",
        }
    }
}

/// Signing scope taken from a SigV4 `Authorization` header.
struct Scope {
    region: String,
    service: String,
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
/// SignedHeaders=…, Signature=…`. The signature itself is not verified.
fn parse_auth(headers: &HeaderMap) -> Option<Scope> {
    let value = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let mut credential = None;
    let (mut signed_headers, mut signature) = (false, false);
    for part in rest.split(',').map(str::trim) {
        if let Some(c) = part.strip_prefix("Credential=") {
            credential = Some(c);
        } else if part.starts_with("SignedHeaders=") {
            signed_headers = true;
        } else if part.starts_with("Signature=") {
            signature = true;
        }
    }
    if !signed_headers || !signature {
        return None;
    }
    let fields: Vec<&str> = credential?.split('/').collect();
    match fields.as_slice() {
        [akid, date, region, service, "aws4_request"]
            if !akid.is_empty() && !date.is_empty() && !region.is_empty() =>
        {
            Some(Scope {
                region: region.to_string(),
                service: service.to_string(),
            })
        }
        _ => None,
    }
}

/// Decodes `%XX` escapes (and `+` as a space, as form encoding does).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k)? == name).then(|| percent_decode(v))?
    })
}

/// An error answer before or instead of the state: (code, message).
type ApiError = (String, String);

fn err(code: &str, message: impl Into<String>) -> ApiError {
    (code.to_string(), message.into())
}

/// The request as the operation sees it once routed and parsed.
struct Parsed {
    /// ARN named by the call (query parameter or body), valid or not.
    arn: Option<String>,
    /// List paging.
    max_results: usize,
    offset: usize,
}

/// Reads the operation's input; an `Err` is the answer the service gives to a malformed
/// request (the ARN is still returned for the call log).
fn parse_input(
    op: Op,
    query: Option<&str>,
    body: &[u8],
) -> (Option<String>, Result<Parsed, ApiError>) {
    match op {
        Op::DeleteImage | Op::GetImage => {
            let arn = query_param(query, "imageBuildVersionArn").filter(|a| !a.is_empty());
            let result = match &arn {
                None => Err(err(
                    "InvalidRequestException",
                    "The request is missing the required parameter imageBuildVersionArn.",
                )),
                Some(a) if model::parse_build_version_arn(a).is_none() => Err(err(
                    "InvalidRequestException",
                    format!(
                        "The value supplied for parameter 'imageBuildVersionArn' is not valid. \
                         The ARN {a} does not match the pattern of an image build version ARN."
                    ),
                )),
                Some(_) => Ok(Parsed {
                    arn: arn.clone(),
                    max_results: 0,
                    offset: 0,
                }),
            };
            (arn, result)
        }
        Op::ListImageBuildVersions => {
            let input: Value = if body.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                match serde_json::from_slice(body) {
                    Ok(v) => v,
                    Err(e) => {
                        return (
                            None,
                            Err(err(
                                "InvalidRequestException",
                                format!("The request body is not valid JSON: {e}"),
                            )),
                        )
                    }
                }
            };
            let arn = input["imageVersionArn"].as_str().map(str::to_string);
            let result = (|| {
                let a = arn.as_deref().ok_or_else(|| {
                    err(
                        "InvalidRequestException",
                        "The request is missing the required parameter imageVersionArn.",
                    )
                })?;
                if !model::is_image_version_arn(a) {
                    return Err(err(
                        "InvalidRequestException",
                        format!(
                            "The value supplied for parameter 'imageVersionArn' is not valid: {a}"
                        ),
                    ));
                }
                let max_results = match &input["maxResults"] {
                    Value::Null => 25,
                    v => match v.as_u64() {
                        Some(n @ 1..=25) => n as usize,
                        _ => {
                            return Err(err(
                                "InvalidRequestException",
                                "maxResults must be between 1 and 25.",
                            ))
                        }
                    },
                };
                let offset = match &input["nextToken"] {
                    Value::Null => 0,
                    v => v
                        .as_str()
                        .and_then(|t| t.strip_prefix("ibemu-"))
                        .and_then(|t| t.parse().ok())
                        .ok_or_else(|| {
                            err(
                                "InvalidPaginationTokenException",
                                "The provided nextToken is not valid.",
                            )
                        })?,
                };
                Ok(Parsed {
                    arn: arn.clone(),
                    max_results,
                    offset,
                })
            })();
            (arn, result)
        }
        Op::Unknown => (None, Err(err("UnknownOperationException", ""))),
    }
}

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
    let scope = parse_auth(&parts.headers);
    let (arn, input) = parse_input(op, parts.uri.query(), &body);

    // Authentication comes before validation, as in the service.
    let pre: Result<Parsed, ApiError> = match &scope {
        None => Err(err(
            "ForbiddenException",
            "Missing or malformed AWS4-HMAC-SHA256 Authorization header: the request must be signed.",
        )),
        Some(s) if s.service != "imagebuilder" => Err(err(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to correct service: 'imagebuilder'. Found '{}'.",
                s.service
            ),
        )),
        Some(_) if op == Op::Unknown => Err(err(
            "UnknownOperationException",
            format!("Unknown operation {} {}", parts.method, parts.uri.path()),
        )),
        Some(_) => input,
    };

    let (decision, delay) = match &pre {
        Ok(p) => shared.decide(op.name(), p.arn.as_deref()),
        Err(_) => (Decision::Normal, shared.latency()),
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    let resp = match (pre, decision) {
        (Err((code, message)), _) => error_response(&request_id, &code, &message),
        (Ok(p), Decision::Fail(code)) => error_response(
            &request_id,
            &code,
            &injected_message(&code, op, p.arn.as_deref()),
        ),
        (Ok(p), Decision::Normal) => execute(&shared, op, &p, &request_id),
    };

    let operation = if op == Op::Unknown {
        parts.uri.path().to_string()
    } else {
        op.name().to_string()
    };
    shared.record(Call {
        operation,
        arn,
        region: scope.as_ref().map(|s| s.region.clone()),
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
fn execute(shared: &Shared, op: Op, p: &Parsed, request_id: &str) -> Resp {
    let arn = p.arn.as_deref().unwrap_or_default();
    let not_found = || {
        error_response(
            request_id,
            "ResourceNotFoundException",
            &injected_message("ResourceNotFoundException", op, Some(arn)),
        )
    };
    match op {
        Op::DeleteImage => {
            if shared.delete_image(arn) {
                json_response(
                    StatusCode::OK,
                    request_id,
                    &json!({"requestId": request_id, "imageBuildVersionArn": arn}),
                )
            } else {
                not_found()
            }
        }
        Op::GetImage => match shared.get_image(arn) {
            Some(record) => json_response(
                StatusCode::OK,
                request_id,
                &json!({"requestId": request_id, "image": model::image_json(arn, &record)}),
            ),
            None => not_found(),
        },
        Op::ListImageBuildVersions => {
            let all = shared.list_build_versions(arn);
            let page: Vec<Value> = all
                .iter()
                .skip(p.offset)
                .take(p.max_results)
                .map(|(a, r)| model::image_summary_json(a, r))
                .collect();
            let mut out = json!({"requestId": request_id, "imageSummaryList": page});
            let next = p.offset + p.max_results;
            if next < all.len() {
                out["nextToken"] = json!(format!("ibemu-{next}"));
            }
            json_response(StatusCode::OK, request_id, &out)
        }
        Op::Unknown => error_response(request_id, "UnknownOperationException", "Unknown operation"),
    }
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

// ---------------------------------------------------------------------------------------
// Control API

/// `POST /_emulator/script` body.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScriptRequest {
    arn: String,
    #[serde(default)]
    operation: Option<String>,
    steps: Vec<String>,
}

/// `POST /_emulator/images` accepts an array or a single image.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum SeedBody {
    Many(Vec<SeedImage>),
    One(SeedImage),
}

fn control_json(status: StatusCode, body: &Value) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn bad_request(message: impl std::fmt::Display) -> Resp {
    control_json(
        StatusCode::BAD_REQUEST,
        &json!({"message": message.to_string()}),
    )
}

async fn control(shared: Arc<Shared>, req: Request<Incoming>) -> Resp {
    let emu = shared.emulator();
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => return bad_request(format!("could not read body: {e}")),
    };
    let ok = |v: Value| control_json(StatusCode::OK, &v);
    match (&parts.method, parts.uri.path().trim_end_matches('/')) {
        (&Method::GET, "/_emulator/health") => ok(json!({"status": "ok"})),
        (&Method::GET, "/_emulator/images") => ok(json!(emu.images())),
        (&Method::POST, "/_emulator/images") => match serde_json::from_slice::<SeedBody>(&body) {
            Ok(seed) => {
                let images = match seed {
                    SeedBody::Many(v) => v,
                    SeedBody::One(i) => vec![i],
                };
                let n = images.len();
                emu.seed(images);
                ok(json!({"seeded": n}))
            }
            Err(e) => bad_request(format!("expected a JSON array of images: {e}")),
        },
        (&Method::DELETE, "/_emulator/images") => {
            emu.clear_images();
            ok(json!({"cleared": true}))
        }
        (&Method::GET, "/_emulator/faults") => ok(json!(emu.faults())),
        (&Method::POST, "/_emulator/faults") => match serde_json::from_slice::<Faults>(&body) {
            Ok(f) => {
                emu.set_faults(f);
                ok(json!(emu.faults()))
            }
            Err(e) => bad_request(format!("expected a Faults object: {e}")),
        },
        (&Method::PATCH, "/_emulator/faults") => {
            // Merge: only the fields present change (POST replaces the whole settings).
            let mut current = json!(emu.faults());
            match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(patch)) => {
                    for (k, v) in patch {
                        current[k] = v;
                    }
                    match serde_json::from_value::<Faults>(current) {
                        Ok(f) => {
                            emu.set_faults(f);
                            ok(json!(emu.faults()))
                        }
                        Err(e) => bad_request(format!("invalid Faults field: {e}")),
                    }
                }
                Ok(_) => bad_request("expected a JSON object of Faults fields"),
                Err(e) => bad_request(format!("expected a JSON object of Faults fields: {e}")),
            }
        }
        (&Method::POST, "/_emulator/script") => {
            let req: ScriptRequest = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => {
                    return bad_request(format!(
                        "expected {{\"arn\", \"operation\"?, \"steps\": [...]}}: {e}"
                    ))
                }
            };
            let steps: Result<Vec<Step>, String> = req.steps.iter().map(|s| s.parse()).collect();
            match steps {
                Ok(steps) => {
                    let op = req.operation.unwrap_or_else(|| "DeleteImage".to_string());
                    let echo: Vec<String> = steps.iter().map(Step::to_string).collect();
                    emu.script_op(&op, &req.arn, steps);
                    ok(json!({"arn": req.arn, "operation": op, "steps": echo}))
                }
                Err(e) => bad_request(e),
            }
        }
        (&Method::DELETE, "/_emulator/script") => {
            emu.clear_scripts();
            ok(json!({"cleared": true}))
        }
        (&Method::GET, "/_emulator/calls") => ok(json!(emu.calls())),
        (&Method::GET, "/_emulator/stats") => ok(emu.stats()),
        (&Method::POST, "/_emulator/reset-stats") => {
            emu.reset_stats();
            ok(json!({"reset": true}))
        }
        (method, path) => control_json(
            StatusCode::NOT_FOUND,
            &json!({"message": format!("no control endpoint {method} {path}")}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_param_decodes_sdk_encoding() {
        // GIVEN the query string the SDK sends for an ARN
        let q = "imageBuildVersionArn=arn%3Aaws%3Aimagebuilder%3Aus-east-1%3A123456789012%3Aimage%2Fweb%2F1.0.0%2F1";
        // THEN the ARN decodes intact
        assert_eq!(
            query_param(Some(q), "imageBuildVersionArn").as_deref(),
            Some("arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/1")
        );
        assert_eq!(query_param(Some("x=1"), "imageBuildVersionArn"), None);
        assert_eq!(query_param(Some("a=%zz"), "a"), None);
    }

    #[test]
    fn auth_header_yields_signing_scope() {
        let mut h = HeaderMap::new();
        h.insert(
            hyper::header::AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKID/20240101/eu-west-2/imagebuilder/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=abcdef",
            ),
        );
        let s = parse_auth(&h).expect("valid header");
        assert_eq!(
            (s.region.as_str(), s.service.as_str()),
            ("eu-west-2", "imagebuilder")
        );

        // A header without a signature is not a signed request.
        h.insert(
            hyper::header::AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKID/20240101/eu-west-2/imagebuilder/aws4_request",
            ),
        );
        assert!(parse_auth(&h).is_none());
    }
}
