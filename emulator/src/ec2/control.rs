//! The EC2 front's control API under `/_ec2/` (no auth, JSON): per-AMI launch time and
//! protection, extra references, scripted faults, the call log and its stats.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::references::{ImageReference, ResourceType};
use super::state::{Ec2Fault, ImageSettings, Shared};

type Resp = Response<Full<Bytes>>;

/// Routes one control request; unknown paths are 404, bad bodies 400, never a panic.
pub(crate) fn handle(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Resp {
    let path = path.trim_end_matches('/');
    let result = match (method.clone(), path) {
        (Method::GET, "/_ec2/health") => {
            Ok(json!({"status": "ok", "upstream": shared.upstream.base()}))
        }
        (Method::GET, "/_ec2/images") => Ok(json!(shared.lock().images)),
        (Method::DELETE, "/_ec2/images") => {
            shared.lock().images.clear();
            Ok(json!({}))
        }
        (m, p) if p.starts_with("/_ec2/images/") => {
            image(shared, &m, &p["/_ec2/images/".len()..], body)
        }
        (Method::GET, "/_ec2/references") => Ok(json!(shared.lock().references)),
        (Method::POST, "/_ec2/references") => add_references(shared, body),
        (Method::DELETE, "/_ec2/references") => {
            shared.lock().references.clear();
            Ok(json!({}))
        }
        (Method::GET, "/_ec2/faults") => Ok(faults_json(shared)),
        (Method::POST, "/_ec2/faults") => set_faults(shared, body),
        (Method::DELETE, "/_ec2/faults") => {
            shared.lock().faults.clear();
            Ok(json!({}))
        }
        (Method::GET, "/_ec2/calls") => Ok(json!(shared.lock().calls)),
        (Method::GET, "/_ec2/stats") => Ok(shared.stats()),
        (Method::POST, "/_ec2/reset-stats") => {
            shared.reset_stats();
            Ok(json!({}))
        }
        (Method::DELETE, "/_ec2/calls") => {
            shared.lock().calls.clear();
            Ok(json!({}))
        }
        _ => Err((
            StatusCode::NOT_FOUND,
            format!("no control endpoint {method} {path}"),
        )),
    };
    match result {
        Ok(v) => json_resp(StatusCode::OK, &v),
        Err((status, message)) => json_resp(status, &json!({ "message": message })),
    }
}

type Outcome = Result<Value, (StatusCode, String)>;

fn bad(message: impl Into<String>) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, message.into())
}

fn parse_body(body: &[u8]) -> Result<Value, (StatusCode, String)> {
    serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))
}

/// `GET|POST|DELETE /_ec2/images/{imageId}`: POST replaces the AMI's settings.
fn image(shared: &Shared, method: &Method, image_id: &str, body: &[u8]) -> Outcome {
    if image_id.is_empty() || image_id.contains('/') {
        return Err(bad(format!("not an image id: {image_id:?}")));
    }
    match *method {
        Method::GET => Ok(json!(shared.image(image_id))),
        Method::POST | Method::PUT => {
            let settings: ImageSettings = serde_json::from_slice(body).map_err(|e| {
                bad(format!(
                    "expected {{\"lastLaunchedTime\"?, \"deregistrationProtection\"?}}: {e}"
                ))
            })?;
            shared
                .lock()
                .images
                .insert(image_id.to_string(), settings.clone());
            Ok(json!(settings))
        }
        Method::DELETE => {
            shared.lock().images.remove(image_id);
            Ok(json!({}))
        }
        _ => Err((
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} not allowed"),
        )),
    }
}

/// `POST /_ec2/references`: one reference or an array, appended.
fn add_references(shared: &Shared, body: &[u8]) -> Outcome {
    let value = parse_body(body)?;
    let list = match value {
        Value::Array(a) => a,
        other => vec![other],
    };
    let mut refs = Vec::with_capacity(list.len());
    for v in list {
        let r: ImageReference = serde_json::from_value(v).map_err(|e| {
            bad(format!(
                "expected {{\"imageId\", \"resourceType\", \"arn\"}}: {e}"
            ))
        })?;
        if ResourceType::parse(&r.resource_type).is_none() {
            return Err(bad(format!("unknown resourceType {:?}", r.resource_type)));
        }
        refs.push(r);
    }
    let mut state = shared.lock();
    state.references.extend(refs);
    Ok(json!({ "references": state.references.len() }))
}

/// `POST /_ec2/faults`: `{"Operation": fault | null}`; null removes that operation's fault,
/// other operations keep theirs.
fn set_faults(shared: &Shared, body: &[u8]) -> Outcome {
    let value = parse_body(body)?;
    let obj = value
        .as_object()
        .ok_or_else(|| bad("expected {\"Operation\": {status, code, message, times} | null}"))?;
    let mut parsed: Vec<(String, Option<Ec2Fault>)> = Vec::new();
    for (op, v) in obj {
        let fault = match v {
            Value::Null => None,
            v => Some(Ec2Fault::from_json(v).map_err(|e| bad(format!("{op}: {e}")))?),
        };
        parsed.push((op.clone(), fault));
    }
    {
        let mut state = shared.lock();
        for (op, fault) in parsed {
            match fault {
                Some(f) => state.faults.insert(op, f),
                None => state.faults.remove(&op),
            };
        }
    }
    Ok(faults_json(shared))
}

fn faults_json(shared: &Shared) -> Value {
    let state = shared.lock();
    let map: Map<String, Value> = state
        .faults
        .iter()
        .map(|(op, f)| (op.clone(), f.to_json()))
        .collect();
    Value::Object(map)
}

fn json_resp(status: StatusCode, v: &Value) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(v.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
