//! The unauthenticated control API under `/_emulator/`: seed images (one by one or a
//! generated history), set faults and scripts, read calls and stats. Works on `state`
//! directly; only `server` imports it.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::faults::Faults;
use crate::history::History;
use crate::state::{SeedImage, Shared, Step};

type Resp = Response<Full<Bytes>>;

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

fn ok(body: Value) -> Resp {
    control_json(StatusCode::OK, &body)
}

fn bad_request(message: impl std::fmt::Display) -> Resp {
    control_json(
        StatusCode::BAD_REQUEST,
        &json!({"message": message.to_string()}),
    )
}

/// Routes one control request.
pub(crate) async fn control(shared: &Shared, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => return bad_request(format!("could not read body: {e}")),
    };
    match (&parts.method, parts.uri.path().trim_end_matches('/')) {
        (&Method::GET, "/_emulator/health") => ok(json!({"status": "ok"})),
        (&Method::GET, "/_emulator/images") => ok(json!(shared.image_arns())),
        (&Method::POST, "/_emulator/images") => seed(shared, &body),
        (&Method::DELETE, "/_emulator/images") => {
            shared.clear_images();
            ok(json!({"cleared": true}))
        }
        (&Method::POST, "/_emulator/history") => seed_history(shared, &body),
        (&Method::GET, "/_emulator/faults") => ok(json!(shared.faults())),
        (&Method::POST, "/_emulator/faults") => match serde_json::from_slice::<Faults>(&body) {
            Ok(f) => {
                shared.set_faults(f);
                ok(json!(shared.faults()))
            }
            Err(e) => bad_request(format!("expected a Faults object: {e}")),
        },
        (&Method::PATCH, "/_emulator/faults") => patch_faults(shared, &body),
        (&Method::POST, "/_emulator/script") => script(shared, &body),
        (&Method::DELETE, "/_emulator/script") => {
            shared.clear_scripts();
            ok(json!({"cleared": true}))
        }
        (&Method::GET, "/_emulator/calls") => ok(json!(shared.calls())),
        (&Method::GET, "/_emulator/stats") => ok(shared.stats()),
        (&Method::POST, "/_emulator/reset-stats") => {
            shared.reset_stats();
            ok(json!({"reset": true}))
        }
        (method, path) => control_json(
            StatusCode::NOT_FOUND,
            &json!({"message": format!("no control endpoint {method} {path}")}),
        ),
    }
}

fn seed(shared: &Shared, body: &[u8]) -> Resp {
    match serde_json::from_slice::<SeedBody>(body) {
        Ok(SeedBody::Many(images)) => ok(json!({"seeded": shared.seed(images)})),
        Ok(SeedBody::One(image)) => ok(json!({"seeded": shared.seed([image])})),
        Err(e) => bad_request(format!("expected a JSON array of images: {e}")),
    }
}

fn seed_history(shared: &Shared, body: &[u8]) -> Resp {
    let history: History = match serde_json::from_slice(body) {
        Ok(h) => h,
        Err(e) => return bad_request(format!("expected a History object: {e}")),
    };
    match history.images() {
        Ok(images) => ok(json!({"seeded": shared.seed(images)})),
        Err(e) => bad_request(e),
    }
}

/// Merge: only the fields present change (POST replaces the whole settings). A field is
/// replaced as a whole, so `rateLimits` in a PATCH is the new set of limits.
fn patch_faults(shared: &Shared, body: &[u8]) -> Resp {
    let mut current = json!(shared.faults());
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(patch)) => {
            for (k, v) in patch {
                current[k] = v;
            }
            match serde_json::from_value::<Faults>(current) {
                Ok(f) => {
                    shared.set_faults(f);
                    ok(json!(shared.faults()))
                }
                Err(e) => bad_request(format!("invalid Faults field: {e}")),
            }
        }
        Ok(_) => bad_request("expected a JSON object of Faults fields"),
        Err(e) => bad_request(format!("expected a JSON object of Faults fields: {e}")),
    }
}

fn script(shared: &Shared, body: &[u8]) -> Resp {
    let req: ScriptRequest = match serde_json::from_slice(body) {
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
            shared.script(&op, &req.arn, steps);
            ok(json!({"arn": req.arn, "operation": op, "steps": echo}))
        }
        Err(e) => bad_request(e),
    }
}
