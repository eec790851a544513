//! The EC2 front's HTTP side: the accept loop, per-request dispatch (control API, injected
//! latency, scripted faults, the operations answered here) and the passthrough to moto for
//! everything else.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::control;
use super::query::{self, Params};
use super::references::{self, Inventory, ReferenceQuery, ResourceType};
use super::state::{Ec2Call, Shared};
use super::upstream::{Answer, HOP_BY_HOP};
use super::xml;

pub(crate) type Resp = Response<Full<Bytes>>;

/// Guards against a runaway upstream pagination loop (a token that never ends).
const MAX_PAGES: usize = 1000;

/// Accepts connections until the runtime shuts down; one task per connection.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // e.g. EMFILE: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(shared, req).await) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// One incoming EC2 request, read whole.
struct Received {
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
    body: Bytes,
    params: Params,
    /// Signing region from the SigV4 credential scope.
    region: Option<String>,
}

/// The answer plus what the call log needs to know about it.
struct Outcome {
    resp: Resp,
    error_code: Option<String>,
    answered_by: &'static str,
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("unreadable body: {e}")),
    };
    if parts.uri.path().starts_with("/_ec2") {
        return control::handle(&shared, &parts.method, parts.uri.path(), &body);
    }
    let region = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(query::credential_scope)
        .map(|(region, _)| region);
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    let req = Received {
        params: Params::parse(parts.uri.query(), &body),
        method: parts.method,
        path_and_query,
        headers: parts.headers,
        body,
        region,
    };
    let operation = req.params.get("Action").unwrap_or_default().to_string();
    let _in_flight = shared.enter();
    let at_ms = shared.elapsed_ms();
    // Every EC2 request waits alike, whoever answers it, so that a per-operation latency
    // prices exactly that operation.
    let delay = shared.latency.of(&operation);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let outcome = dispatch(&shared, &req, &operation).await;
    shared.record(Ec2Call {
        operation,
        region: req.region.clone(),
        status: outcome.resp.status().as_u16(),
        error_code: outcome.error_code,
        answered_by: outcome.answered_by.to_string(),
        at_ms,
    });
    outcome.resp
}

async fn dispatch(shared: &Shared, req: &Received, operation: &str) -> Outcome {
    if let Some(fault) = shared.take_fault(operation) {
        let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return Outcome {
            resp: ec2_error(status, &fault.code, &fault.message),
            error_code: Some(fault.code),
            answered_by: "fault",
        };
    }
    let attribute = req.params.get("Attribute").unwrap_or_default();
    let own = match operation {
        "DescribeImageReferences" => Some(describe_image_references(shared, req).await),
        "DescribeImageAttribute"
            if matches!(attribute, "lastLaunchedTime" | "deregistrationProtection") =>
        {
            Some(describe_image_attribute(shared, req, attribute).await)
        }
        "DeregisterImage" => refuse_protected(shared, req),
        _ => None,
    };
    if let Some(resp) = own {
        let error_code = (!resp.status().is_success())
            .then(|| code_of(&resp))
            .flatten();
        return Outcome {
            resp,
            error_code,
            answered_by: "front",
        };
    }
    let resp = passthrough(shared, req, operation == "DescribeImages").await;
    let error_code = (!resp.status().is_success())
        .then(|| code_of(&resp))
        .flatten();
    Outcome {
        resp,
        error_code,
        answered_by: "moto",
    }
}

fn code_of(resp: &Resp) -> Option<String> {
    resp.extensions().get::<ErrorCode>().map(|c| c.0.clone())
}

/// The EC2 error code of an answer, carried alongside it for the call log.
#[derive(Clone)]
struct ErrorCode(String);

/// Forwards the request to moto as received and returns moto's answer; DescribeImages
/// answers gain the stored launch times and protection values.
async fn passthrough(shared: &Shared, req: &Received, enrich: bool) -> Resp {
    let answer = match shared
        .upstream
        .send(
            req.method.clone(),
            &req.path_and_query,
            &req.headers,
            req.body.clone(),
        )
        .await
    {
        Ok(a) => a,
        Err(e) => return ec2_error(StatusCode::BAD_GATEWAY, "InternalError", &e),
    };
    let mut body = answer.body.clone();
    if enrich && answer.status.is_success() {
        if let Some(enriched) = enrich_images(shared, &answer.body) {
            body = Bytes::from(enriched);
        }
    }
    relay(answer, body)
}

fn enrich_images(shared: &Shared, body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let images = shared.lock().images.clone();
    xml::enrich_images(text, |id| match images.get(id) {
        Some(s) => xml::Extra {
            last_launched_time: s.last_launched_time.as_deref(),
            deregistration_protection: s.deregistration_protection.as_deref(),
        },
        None => xml::Extra::default(),
    })
}

/// moto's answer with `body`, minus connection-level headers (hyper sets its own framing).
fn relay(answer: Answer, body: Bytes) -> Resp {
    let code = (!answer.status.is_success())
        .then(|| {
            std::str::from_utf8(&answer.body)
                .ok()
                .and_then(xml::error_code)
        })
        .flatten();
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = answer.status;
    for (name, value) in &answer.headers {
        let n = name.as_str();
        if !HOP_BY_HOP.contains(&n) && n != "content-length" {
            resp.headers_mut().append(name.clone(), value.clone());
        }
    }
    if let Some(code) = code {
        resp.extensions_mut().insert(ErrorCode(code));
    }
    resp
}

/// moto's error answer, relayed as it is.
fn relay_error(answer: Answer) -> Resp {
    let body = answer.body.clone();
    relay(answer, body)
}

/// DeregisterImage of a protected AMI fails here, before moto sees it; otherwise `None`
/// (moto deregisters).
fn refuse_protected(shared: &Shared, req: &Received) -> Option<Resp> {
    let image_id = req.params.get("ImageId")?;
    if !shared.image(image_id).is_protected() {
        return None;
    }
    let message = format!(
        "The image {image_id} has deregistration protection enabled; disable it before \
         deregistering the image"
    );
    Some(ec2_error(
        StatusCode::BAD_REQUEST,
        "OperationNotPermitted",
        &message,
    ))
}

async fn describe_image_attribute(shared: &Shared, req: &Received, attribute: &str) -> Resp {
    let Some(image_id) = req.params.get("ImageId").filter(|i| !i.is_empty()) else {
        return ec2_error(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            "The request must contain the parameter ImageId",
        );
    };
    // The AMI must exist in moto; moto's own error (InvalidAMIID.NotFound, …) is the answer
    // when it does not.
    let form = format!(
        "Action=DescribeImages&Version=2016-11-15&ImageId.1={}",
        query::encode(image_id)
    );
    match call_moto(shared, req, form).await {
        Ok(_) => {}
        Err(Failure::Answer(a)) => return relay_error(a),
        Err(Failure::Broken(e)) => return ec2_error(StatusCode::BAD_GATEWAY, "InternalError", &e),
    }
    let settings = shared.image(image_id);
    let value = match attribute {
        "lastLaunchedTime" => settings.last_launched_time,
        // EC2 reports `disabled` for an AMI whose protection was never turned on.
        _ => Some(
            settings
                .deregistration_protection
                .unwrap_or_else(|| "disabled".to_string()),
        ),
    };
    let body = xml::image_attribute_response(&request_id(), image_id, attribute, value.as_deref());
    xml_ok(body)
}

async fn describe_image_references(shared: &Shared, req: &Received) -> Resp {
    let query = match query::reference_query(&req.params) {
        Ok(q) => q,
        Err(bad) => return ec2_error(StatusCode::BAD_REQUEST, bad.code, &bad.message),
    };
    let inventory = match inventory(shared, req, &query).await {
        Ok(i) => i,
        Err(Failure::Answer(a)) => return relay_error(a),
        Err(Failure::Broken(e)) => return ec2_error(StatusCode::BAD_GATEWAY, "InternalError", &e),
    };
    let region = req.region.as_deref().unwrap_or("us-east-1");
    let extra = shared.lock().references.clone();
    let all = references::compute(&query, region, &inventory, &extra);
    match references::page(all, query.max_results, query.next_token.as_deref()) {
        Ok((items, next)) => xml_ok(xml::references_response(
            &request_id(),
            &items,
            next.as_deref(),
        )),
        Err(e) => ec2_error(StatusCode::BAD_REQUEST, "InvalidParameterValue", &e),
    }
}

/// Why a call to moto gave nothing usable.
enum Failure {
    /// moto answered with an error: relayed to the client as it is.
    Answer(Answer),
    /// No answer, or one that does not parse.
    Broken(String),
}

/// Reads from moto only what the scope needs: instances, and templates with their versions.
async fn inventory(
    shared: &Shared,
    req: &Received,
    query: &ReferenceQuery,
) -> Result<Inventory, Failure> {
    let mut inv = Inventory::default();
    if query.scope.0.contains_key(&ResourceType::Instance) {
        inv.instances = paged(
            shared,
            req,
            "Action=DescribeInstances&Version=2016-11-15",
            xml::instances,
        )
        .await?;
    }
    if query.scope.0.contains_key(&ResourceType::LaunchTemplate) {
        let ids = paged(
            shared,
            req,
            "Action=DescribeLaunchTemplates&Version=2016-11-15",
            xml::launch_template_ids,
        )
        .await?;
        for id in ids {
            let form = format!(
                "Action=DescribeLaunchTemplateVersions&Version=2016-11-15&LaunchTemplateId={}",
                query::encode(&id)
            );
            inv.versions
                .extend(paged(shared, req, &form, xml::template_versions).await?);
        }
    }
    Ok(inv)
}

/// Calls moto with `form`, following `nextToken` until the last page.
async fn paged<T>(
    shared: &Shared,
    req: &Received,
    form: &str,
    parse: fn(&str) -> xml::Page<T>,
) -> Result<Vec<T>, Failure> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page_form = match &token {
            Some(t) => format!("{form}&NextToken={}", query::encode(t)),
            None => form.to_string(),
        };
        let body = call_moto(shared, req, page_form).await?;
        let (items, next) = parse(&body).map_err(Failure::Broken)?;
        out.extend(items);
        match next {
            Some(t) if Some(&t) != token.as_ref() => token = Some(t),
            _ => return Ok(out),
        }
    }
    Err(Failure::Broken(format!(
        "moto kept paginating {form} past {MAX_PAGES} pages"
    )))
}

/// POSTs `form` to moto with the client's credentials (moto reads the region and account from
/// them) and returns the body of a 2xx answer.
async fn call_moto(shared: &Shared, req: &Received, form: String) -> Result<String, Failure> {
    let mut headers = HeaderMap::new();
    for name in ["authorization", "x-amz-date", "x-amz-security-token"] {
        if let Some(v) = req.headers.get(name) {
            headers.insert(name, v.clone());
        }
    }
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
    );
    let answer = shared
        .upstream
        .send(Method::POST, "/", &headers, Bytes::from(form))
        .await
        .map_err(Failure::Broken)?;
    if !answer.status.is_success() {
        return Err(Failure::Answer(answer));
    }
    String::from_utf8(answer.body.to_vec())
        .map_err(|_| Failure::Broken("moto answered with a body that is not UTF-8".into()))
}

/// A request id shaped like EC2's (a UUID).
fn request_id() -> String {
    let hex: String = (0..32)
        .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn xml_ok(body: String) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/xml;charset=UTF-8"),
    );
    resp
}

/// An EC2 error answer; the code also rides along for the call log.
pub(crate) fn ec2_error(status: StatusCode, code: &str, message: &str) -> Resp {
    let mut resp = xml_ok(xml::error_response(code, message, &request_id()));
    *resp.status_mut() = status;
    resp.extensions_mut().insert(ErrorCode(code.to_string()));
    resp
}

pub(crate) fn plain(status: StatusCode, text: &str) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(text.to_string())));
    *resp.status_mut() = status;
    resp
}
