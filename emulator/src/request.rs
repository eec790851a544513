//! Wire input of the Image Builder API: routing a request to its operation, the SigV4
//! signing scope, and parsing/validating each operation's input (query string or JSON
//! body) the way the service does, into what `state` consumes. Builds on `model` and
//! `state`; only `server` imports it.

use hyper::header::HeaderMap;
use hyper::Method;
use serde_json::{Map, Value};

use crate::model::{self, Filter};
use crate::state::ListQuery;

/// The operations the emulator serves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    DeleteImage,
    GetImage,
    ListImages,
    ListImageBuildVersions,
    Unknown,
}

impl Op {
    pub(crate) fn route(method: &Method, path: &str) -> Op {
        match (method, path.trim_end_matches('/')) {
            (&Method::DELETE, "/DeleteImage") => Op::DeleteImage,
            (&Method::GET, "/GetImage") => Op::GetImage,
            (&Method::POST, "/ListImages") => Op::ListImages,
            (&Method::POST, "/ListImageBuildVersions") => Op::ListImageBuildVersions,
            _ => Op::Unknown,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::DeleteImage => "DeleteImage",
            Op::GetImage => "GetImage",
            Op::ListImages => "ListImages",
            Op::ListImageBuildVersions => "ListImageBuildVersions",
            Op::Unknown => "Unknown",
        }
    }
}

/// Signing scope taken from a SigV4 `Authorization` header.
pub(crate) struct Scope {
    pub region: String,
    pub service: String,
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
/// SignedHeaders=…, Signature=…`. The signature itself is not verified.
pub(crate) fn parse_auth(headers: &HeaderMap) -> Option<Scope> {
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
pub(crate) type ApiError = (String, String);

pub(crate) fn err(code: &str, message: impl Into<String>) -> ApiError {
    (code.to_string(), message.into())
}

fn invalid(message: impl Into<String>) -> ApiError {
    err("InvalidRequestException", message)
}

/// The request as the operation sees it once routed and parsed.
pub(crate) struct Parsed {
    /// ARN named by the call (query parameter or body), valid or not.
    pub arn: Option<String>,
    /// List operations: the query (its `region` is filled in from the signing scope).
    pub list: Option<ListQuery>,
}

/// Reads the operation's input; an `Err` is the answer the service gives to a malformed
/// request (the ARN is still returned for the call log).
pub(crate) fn parse_input(
    op: Op,
    query: Option<&str>,
    body: &[u8],
) -> (Option<String>, Result<Parsed, ApiError>) {
    match op {
        Op::DeleteImage | Op::GetImage => {
            let arn = query_param(query, "imageBuildVersionArn").filter(|a| !a.is_empty());
            let result = match &arn {
                None => Err(invalid(
                    "The request is missing the required parameter imageBuildVersionArn.",
                )),
                Some(a) if model::parse_build_version_arn(a).is_none() => Err(invalid(format!(
                    "The value supplied for parameter 'imageBuildVersionArn' is not valid. \
                     The ARN {a} does not match the pattern of an image build version ARN."
                ))),
                Some(_) => Ok(Parsed {
                    arn: arn.clone(),
                    list: None,
                }),
            };
            (arn, result)
        }
        Op::ListImages | Op::ListImageBuildVersions => {
            let input = match json_object(body) {
                Ok(m) => m,
                Err(e) => return (None, Err(e)),
            };
            let arn = match input.get("imageVersionArn") {
                Some(Value::String(a)) if op == Op::ListImageBuildVersions => Some(a.clone()),
                _ => None,
            };
            let result = list_query(op, &input).map(|q| Parsed {
                arn: arn.clone(),
                list: Some(q),
            });
            (arn, result)
        }
        Op::Unknown => (None, Err(err("UnknownOperationException", ""))),
    }
}

/// The JSON body as an object; an empty body is `{}` (the SDKs send `{}`, curl may not).
fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(invalid("The request body must be a JSON object.")),
        Err(e) => Err(invalid(format!("The request body is not valid JSON: {e}"))),
    }
}

/// ListImages / ListImageBuildVersions input. Members the operation's model does not have
/// are ignored, as a REST-JSON service does.
fn list_query(op: Op, input: &Map<String, Value>) -> Result<ListQuery, ApiError> {
    let is_images = op == Op::ListImages;
    let version_arn = if is_images { None } else { version_arn(input)? };
    let owner = if is_images {
        opt_str(input, "owner")?
    } else {
        None
    };
    if let Some(o) = owner.as_deref().filter(|o| !model::OWNERSHIP.contains(o)) {
        return Err(invalid(format!(
            "Value '{o}' at 'owner' failed to satisfy constraint: Member must satisfy enum \
             value set: [{}]",
            model::OWNERSHIP.join(", ")
        )));
    }
    let filters = filters(input)?;
    let by_name = is_images && opt_bool(input, "byName")?;
    opt_bool(input, "includeDeprecated")?; // validated; own deprecated images are always listed
    if by_name && filters.iter().any(|f| f.name == "version") {
        return Err(invalid(
            "byName cannot be combined with the version filter.",
        ));
    }
    Ok(ListQuery {
        region: String::new(),
        version_arn,
        owner,
        filters,
        by_name,
        after: next_token(op, input)?,
        limit: max_results(input)?,
    })
}

/// `imageVersionArn`: optional (current model); when given, an exact `…/name/x.y.z`.
fn version_arn(input: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    let Some(a) = opt_str(input, "imageVersionArn")? else {
        return Ok(None);
    };
    if !model::is_image_version_arn(&a) {
        return Err(invalid(format!(
            "The value supplied for parameter 'imageVersionArn' is not valid: {a}. It must be \
             an image version ARN with an exact semantic version (no wildcards)."
        )));
    }
    Ok(Some(a))
}

fn opt_str(input: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("'{key}' must be a string."))),
    }
}

fn opt_bool(input: &Map<String, Value>, key: &str) -> Result<bool, ApiError> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid(format!("'{key}' must be a boolean."))),
    }
}

/// `maxResults`: the model's `RestrictedInteger`, 1..=25; default 25.
fn max_results(input: &Map<String, Value>) -> Result<usize, ApiError> {
    match input.get("maxResults") {
        None | Some(Value::Null) => Ok(MAX_RESULTS),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_RESULTS as u64).contains(&n) => Ok(n as usize),
            _ => Err(invalid(format!(
                "Value '{v}' at 'maxResults' failed to satisfy constraint: Member must have \
                 value between 1 and {MAX_RESULTS}."
            ))),
        },
    }
}

/// Upper bound (and default) of `maxResults` in the model.
pub(crate) const MAX_RESULTS: usize = 25;

/// `filters`: 1..=10 of `{name, values: [1..=10 strings]}` with names the operation documents.
fn filters(input: &Map<String, Value>) -> Result<Vec<Filter>, ApiError> {
    let list = match input.get("filters") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(l)) if (1..=10).contains(&l.len()) => l,
        Some(_) => return Err(invalid("'filters' must be a list of 1 to 10 filters.")),
    };
    list.iter()
        .map(|f| {
            let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
            if !model::IMAGE_FILTERS.contains(&name) {
                return Err(invalid(format!(
                    "Unsupported filter name {name:?}: expected one of {}.",
                    model::IMAGE_FILTERS.join(", ")
                )));
            }
            let values: Option<Vec<String>> = match f.get("values") {
                Some(Value::Array(vs)) if (1..=10).contains(&vs.len()) => {
                    vs.iter().map(|v| v.as_str().map(str::to_string)).collect()
                }
                _ => None,
            };
            let values = values.ok_or_else(|| {
                invalid(format!("Filter {name:?} needs 'values': 1 to 10 strings."))
            })?;
            Ok(Filter {
                name: name.to_string(),
                values,
            })
        })
        .collect()
}

/// `nextToken`: absent, or a token this operation handed out.
fn next_token(op: Op, input: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    let bad = || {
        err(
            "InvalidPaginationTokenException",
            "The provided nextToken is not valid.",
        )
    };
    let token = match input.get("nextToken") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(t)) => t,
        Some(_) => return Err(bad()),
    };
    let arn = model::decode_token(op.name(), token).ok_or_else(bad)?;
    let resumable = match op {
        Op::ListImages => model::is_image_version_arn(&arn),
        _ => model::parse_build_version_arn(&arn).is_some(),
    };
    if resumable {
        Ok(Some(arn))
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

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

    #[test]
    fn list_input_of_any_shape_is_answered_without_panicking() {
        // GIVEN bodies of every wrong shape
        let bodies: &[&[u8]] = &[
            b"",
            b"{}",
            b"[]",
            b"null",
            b"\"x\"",
            b"{",
            b"\xff",
            br#"{"maxResults": -1}"#,
            br#"{"maxResults": 1.5}"#,
            br#"{"filters": {}}"#,
            br#"{"filters": [1]}"#,
            br#"{"filters": [{"name": "name"}]}"#,
            br#"{"nextToken": 7}"#,
            br#"{"owner": 1}"#,
            br#"{"byName": "yes"}"#,
            br#"{"imageVersionArn": 3}"#,
        ];
        // THEN each parses to a query or a modelled 400 code
        for op in [Op::ListImages, Op::ListImageBuildVersions] {
            for body in bodies {
                if let (_, Err((code, _))) = parse_input(op, None, body) {
                    assert!(model::status_of(&code) == Some(400), "{code}");
                }
            }
        }
    }
}
