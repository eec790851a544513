//! EC2 Query protocol input: decodes form-encoded parameters (body and URL query), reads the
//! SigV4 credential scope, and turns a DescribeImageReferences request into a
//! [`ReferenceQuery`], validating it the way EC2 does (missing or out-of-range values are
//! `MissingParameter` / `InvalidParameterValue`).

use std::collections::BTreeMap;

use super::references::{ReferenceQuery, ResourceType, Scope, TypeOptions};

/// Decoded `key=value` pairs in arrival order (URL query first, then the body).
#[derive(Clone, Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

/// A request that EC2 would refuse: (error code, message), answered with HTTP 400.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub code: &'static str,
    pub message: String,
}

fn invalid(code: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        code,
        message: message.into(),
    }
}

impl Params {
    /// Parses the URL query (if any) and a form-encoded body; undecodable bytes become U+FFFD
    /// rather than an error, so any input yields some parameters.
    pub(crate) fn parse(query: Option<&str>, body: &[u8]) -> Params {
        let mut pairs = Vec::new();
        let body = String::from_utf8_lossy(body);
        for part in [query.unwrap_or(""), body.as_ref()] {
            for item in part.split('&').filter(|s| !s.is_empty()) {
                let (k, v) = item.split_once('=').unwrap_or((item, ""));
                pairs.push((decode(k), decode(v)));
            }
        }
        Params(pairs)
    }

    /// The first value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Groups `PREFIX.N[.rest]` keys by N, ascending; each group holds `(rest, value)` pairs,
    /// `rest` being empty for `PREFIX.N` itself. Keys with a non-numeric N are ignored.
    fn groups(&self, prefix: &str) -> BTreeMap<u32, Params> {
        let mut out: BTreeMap<u32, Params> = BTreeMap::new();
        for (k, v) in &self.0 {
            let Some(tail) = k.strip_prefix(prefix).and_then(|t| t.strip_prefix('.')) else {
                continue;
            };
            let (index, rest) = tail.split_once('.').unwrap_or((tail, ""));
            if let Ok(n) = index.parse::<u32>() {
                out.entry(n)
                    .or_default()
                    .0
                    .push((rest.to_string(), v.clone()));
            }
        }
        out
    }

    /// The values of the flattened list `PREFIX.1`, `PREFIX.2`, … in index order.
    pub(crate) fn list(&self, prefix: &str) -> Vec<String> {
        self.groups(prefix)
            .into_values()
            .filter_map(|g| g.get("").map(str::to_string))
            .collect()
    }

    /// The same parameters with list names written the way the model's member names read
    /// (`ResourceTypes`, `ResourceTypeOptions`, `OptionValues`) mapped to the wire names the
    /// SDKs send (`ResourceType`, `ResourceTypeOption`, `OptionValue`), so both spellings work.
    fn with_wire_names(&self) -> Params {
        let map = |seg: &str| match seg {
            "ResourceTypes" => "ResourceType".to_string(),
            "ResourceTypeOptions" => "ResourceTypeOption".to_string(),
            "OptionValues" => "OptionValue".to_string(),
            other => other.to_string(),
        };
        let pairs = self
            .0
            .iter()
            .map(|(k, v)| {
                (
                    k.split('.').map(map).collect::<Vec<_>>().join("."),
                    v.clone(),
                )
            })
            .collect();
        Params(pairs)
    }
}

/// Percent-decodes a form component (`+` is a space); invalid escapes are kept literally.
pub(crate) fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a form component (RFC 3986 unreserved characters stay as they are).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `(region, service)` from a SigV4 `Authorization` header's `Credential=AKID/DATE/REGION/
/// SERVICE/aws4_request`; `None` when the header has no such scope.
pub(crate) fn credential_scope(authorization: &str) -> Option<(String, String)> {
    let start = authorization.find("Credential=")? + "Credential=".len();
    let cred = authorization[start..]
        .split([',', ' '])
        .next()
        .unwrap_or_default();
    let mut parts = cred.split('/');
    let (_akid, _date) = (parts.next()?, parts.next()?);
    let (region, service) = (parts.next()?, parts.next()?);
    if region.is_empty() || service.is_empty() {
        return None;
    }
    Some((region.to_string(), service.to_string()))
}

/// AWS accepts at most 10 image IDs per DescribeImageReferences call.
const MAX_IMAGE_IDS: usize = 10;
/// The model's minimum page size; the maximum is this emulator's choice.
const MAX_RESULTS_RANGE: std::ops::RangeInclusive<usize> = 5..=1000;
const VERSION_DEPTH_RANGE: std::ops::RangeInclusive<u32> = 1..=10_000;
const INSTANCE_STATES: [&str; 6] = [
    "pending",
    "running",
    "shutting-down",
    "terminated",
    "stopping",
    "stopped",
];

/// Reads and validates a DescribeImageReferences request.
pub(crate) fn reference_query(params: &Params) -> Result<ReferenceQuery, Invalid> {
    let params = params.with_wire_names();
    let image_ids = params.list("ImageId");
    if image_ids.is_empty() {
        return Err(invalid(
            "MissingParameter",
            "The request must contain the parameter ImageId",
        ));
    }
    if image_ids.len() > MAX_IMAGE_IDS {
        return Err(invalid(
            "InvalidParameterValue",
            format!("At most {MAX_IMAGE_IDS} image IDs can be specified"),
        ));
    }
    let include_all = params
        .get("IncludeAllResourceTypes")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut scope = Scope::default();
    if include_all {
        for t in ResourceType::ALL {
            scope.0.insert(t, TypeOptions::default());
        }
    }
    for group in params.groups("ResourceType").into_values() {
        let (t, options) = resource_type_request(&group)?;
        scope.0.insert(t, options);
    }
    if scope.0.is_empty() {
        return Err(invalid(
            "MissingParameter",
            "Either IncludeAllResourceTypes or ResourceTypes must be specified",
        ));
    }
    let max_results = match params.get("MaxResults") {
        None => None,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if MAX_RESULTS_RANGE.contains(&n) => Some(n),
            _ => {
                return Err(invalid(
                    "InvalidParameterValue",
                    format!("MaxResults must be between 5 and 1000, got {v:?}"),
                ))
            }
        },
    };
    Ok(ReferenceQuery {
        image_ids,
        scope,
        max_results,
        next_token: params.get("NextToken").map(str::to_string),
    })
}

/// One `ResourceType.N` entry: its type and options.
fn resource_type_request(group: &Params) -> Result<(ResourceType, TypeOptions), Invalid> {
    let name = group.get("ResourceType").unwrap_or_default();
    let t = ResourceType::parse(name).ok_or_else(|| {
        invalid(
            "InvalidParameterValue",
            format!("Unsupported resource type {name:?}"),
        )
    })?;
    let mut options = TypeOptions::default();
    for option in group.groups("ResourceTypeOption").into_values() {
        let name = option.get("OptionName").unwrap_or_default();
        let values = option.list("OptionValue");
        match (t, name) {
            (ResourceType::Instance, "state-name") => {
                if let Some(bad) = values
                    .iter()
                    .find(|v| !INSTANCE_STATES.contains(&v.as_str()))
                {
                    return Err(invalid(
                        "InvalidParameterValue",
                        format!("Invalid state-name {bad:?}"),
                    ));
                }
                options.states = Some(values);
            }
            (ResourceType::LaunchTemplate, "version-depth") => {
                options.version_depth = Some(version_depth(&values)?);
            }
            _ => {
                return Err(invalid(
                    "InvalidParameterValue",
                    format!(
                        "Option {name:?} is not valid for resource type {}",
                        t.as_str()
                    ),
                ))
            }
        }
    }
    Ok((t, options))
}

fn version_depth(values: &[String]) -> Result<u32, Invalid> {
    let raw = values.first().map(String::as_str).unwrap_or_default();
    match raw.parse::<u32>() {
        Ok(n) if values.len() == 1 && VERSION_DEPTH_RANGE.contains(&n) => Ok(n),
        _ => Err(invalid(
            "InvalidParameterValue",
            format!("version-depth must be one integer between 1 and 10000, got {values:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_percent_and_broken_escapes() {
        assert_eq!(decode("a+b%2Fc%3a%zz%"), "a b/c:%zz%");
        assert_eq!(decode("%E2%82%AC"), "€");
        assert_eq!(encode("a b/€"), "a%20b%2F%E2%82%AC");
    }

    #[test]
    fn reads_the_credential_scope() {
        let auth = "AWS4-HMAC-SHA256 Credential=AKID/20261130/eu-west-1/ec2/aws4_request, \
                    SignedHeaders=host, Signature=00";
        assert_eq!(
            credential_scope(auth),
            Some(("eu-west-1".into(), "ec2".into()))
        );
        assert_eq!(credential_scope("Bearer x"), None);
        assert_eq!(credential_scope("Credential=AKID"), None);
    }

    #[test]
    fn parses_sdk_wire_names_and_model_names_alike() {
        for (list, opt, val) in [
            ("ResourceType", "ResourceTypeOption", "OptionValue"),
            ("ResourceTypes", "ResourceTypeOptions", "OptionValues"),
        ] {
            let body = format!(
                "Action=DescribeImageReferences&ImageId.2=ami-b&ImageId.1=ami-a&\
                 {list}.1.ResourceType=ec2%3ALaunchTemplate&\
                 {list}.1.{opt}.1.OptionName=version-depth&{list}.1.{opt}.1.{val}.1=10000&\
                 {list}.2.ResourceType=ec2%3AInstance&MaxResults=5"
            );
            let q = reference_query(&Params::parse(None, body.as_bytes())).unwrap();
            assert_eq!(q.image_ids, vec!["ami-a", "ami-b"]);
            assert_eq!(q.scope.0.len(), 2);
            let lt = &q.scope.0[&ResourceType::LaunchTemplate];
            assert_eq!(lt.version_depth, Some(10000));
            assert_eq!(q.max_results, Some(5));
        }
    }

    #[test]
    fn refuses_what_ec2_refuses() {
        let cases = [
            ("IncludeAllResourceTypes=true", "MissingParameter"),
            ("ImageId.1=ami-a", "MissingParameter"),
            (
                "ImageId.1=a&ResourceType.1.ResourceType=ec2:Nope",
                "InvalidParameterValue",
            ),
            (
                "ImageId.1=a&IncludeAllResourceTypes=true&MaxResults=4",
                "InvalidParameterValue",
            ),
            (
                "ImageId.1=a&ResourceType.1.ResourceType=ec2:LaunchTemplate&\
                 ResourceType.1.ResourceTypeOption.1.OptionName=version-depth&\
                 ResourceType.1.ResourceTypeOption.1.OptionValue.1=10001",
                "InvalidParameterValue",
            ),
            (
                "ImageId.1=a&ResourceType.1.ResourceType=ssm:Parameter&\
                 ResourceType.1.ResourceTypeOption.1.OptionName=version-depth",
                "InvalidParameterValue",
            ),
        ];
        for (body, code) in cases {
            let err = reference_query(&Params::parse(None, body.as_bytes())).unwrap_err();
            assert_eq!(err.code, code, "{body}");
        }
        let eleven: String = (1..=11).map(|i| format!("ImageId.{i}=a{i}&")).collect();
        let body = format!("{eleven}IncludeAllResourceTypes=true");
        let err = reference_query(&Params::parse(None, body.as_bytes())).unwrap_err();
        assert_eq!(err.code, "InvalidParameterValue");
    }
}
