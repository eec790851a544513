//! The plan request: `{"plan": {…}}` → a validated, normalised [`Selection`].
//!
//! Validation is strict on purpose: a plan decides what gets deleted, so an unknown key (a
//! typo such as `keepNewst`), a wrong type, or a plan without any rule is an error, never a
//! silently wider plan. The normalised selection (defaults filled in, lists sorted and
//! de-duplicated) is what the plan document records, and it parses back through the same
//! validation, so a stored plan cannot carry a selection a request could not have made.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::arn::quote;

/// The keys a `plan` object may carry, in the order messages list them.
pub const PLAN_KEYS: [&str; 7] = [
    "names",
    "regions",
    "keepNewest",
    "olderThanDays",
    "statuses",
    "excludeTagKeys",
    "allowDeletingNewest",
];

/// Every value of the service's `ImageStatus` enum (imagebuilder 2019-12-02).
pub const IMAGE_STATUSES: [&str; 12] = [
    "PENDING",
    "CREATING",
    "BUILDING",
    "TESTING",
    "DISTRIBUTING",
    "INTEGRATING",
    "AVAILABLE",
    "CANCELLED",
    "FAILED",
    "DEPRECATED",
    "DELETED",
    "DISABLED",
];

/// The longest tag key the service accepts.
const MAX_TAG_KEY_LEN: usize = 128;

/// What a plan covers and which rules select builds for deletion, normalised: `names`
/// defaults to `["*"]`, `regions` to the function's region, lists are sorted and free of
/// duplicates. Serialises (camelCase) as the plan's `selection`; deserialises through the
/// same validation as a request, with `regions` required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", try_from = "Value")]
pub struct Selection {
    /// Globs (`*`, `?`) over image names; builds of other names are not in the plan.
    pub names: Vec<String>,
    /// The regions the plan scans.
    pub regions: Vec<String>,
    /// Keep the K newest AVAILABLE builds per image name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_newest: Option<u32>,
    /// Keep builds created less than D days ago.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub older_than_days: Option<u32>,
    /// Delete only builds in one of these statuses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statuses: Option<Vec<String>>,
    /// A build carrying any of these tag keys is kept (`protected`).
    pub exclude_tag_keys: Vec<String>,
    /// Whether the newest AVAILABLE build of a name may be deleted.
    pub allow_deleting_newest: bool,
}

/// Why a plan request (or a stored plan's selection) was refused. The caller reports it as
/// `InvalidEvent`; [`fmt::Display`] is the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The request, or its `plan`, is not a JSON object.
    NotAnObject { what: &'static str, found: String },
    /// A key outside [`PLAN_KEYS`] (or, at the top level, anything but `plan`).
    UnknownKey {
        key: String,
        suggestion: Option<&'static str>,
        allowed: &'static [&'static str],
    },
    /// None of `keepNewest`, `olderThanDays`, `statuses` is given.
    NoRule,
    /// A key that must be present is missing (`regions` of a stored selection).
    Missing { key: &'static str },
    /// A key's value has the wrong type or an invalid element.
    Invalid { key: &'static str, message: String },
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::NotAnObject { what, found } => {
                write!(f, "{what} must be a JSON object, got {found}")
            }
            RequestError::UnknownKey { key, suggestion, allowed } => {
                write!(f, "unknown key {} in the plan request", quote(key))?;
                if let Some(s) = suggestion {
                    write!(f, " (did you mean {s:?}?)")?;
                }
                write!(
                    f,
                    "; the keys are {}; an unknown key is refused so that a typo cannot widen a plan",
                    allowed.join(", ")
                )
            }
            RequestError::NoRule => f.write_str(
                "a plan needs at least one rule: keepNewest (an integer >= 0; 0 keeps nothing by count), olderThanDays (an integer >= 0) or statuses (a list of image statuses)",
            ),
            RequestError::Missing { key } => write!(f, "plan selection: {key} is required"),
            RequestError::Invalid { key, message } => write!(f, "plan: {key} {message}"),
        }
    }
}

impl std::error::Error for RequestError {}

/// Parses a whole plan request, `{"plan": {…}}`, into a [`Selection`]. `default_region` (the
/// function's own) is used when `regions` is absent. Any top-level key besides `plan` is
/// refused, like an unknown key inside it.
pub fn parse_plan_request(
    request: &Value,
    default_region: &str,
) -> Result<Selection, RequestError> {
    let object = as_object(request, "a plan request")?;
    const TOP: &[&str] = &["plan"];
    if let Some(key) = object.keys().find(|k| k.as_str() != "plan") {
        return Err(unknown_key(key, TOP));
    }
    let plan = object
        .get("plan")
        .ok_or(RequestError::Missing { key: "plan" })?;
    Selection::from_plan(plan, Some(default_region))
}

impl Selection {
    /// Validates and normalises the `plan` object. Without `default_region`, `regions` is
    /// required (a stored selection always lists them).
    pub fn from_plan(plan: &Value, default_region: Option<&str>) -> Result<Self, RequestError> {
        let object = as_object(plan, "plan")?;
        if let Some(key) = object.keys().find(|k| !PLAN_KEYS.contains(&k.as_str())) {
            return Err(unknown_key(key, &PLAN_KEYS));
        }
        let names = match object.get("names") {
            Some(v) => string_list(v, "names", check_name_glob, true)?,
            None => vec!["*".to_owned()],
        };
        let regions = match (object.get("regions"), default_region) {
            (Some(v), _) => string_list(v, "regions", check_region, true)?,
            (None, Some(region)) => vec![region.to_owned()],
            (None, None) => return Err(RequestError::Missing { key: "regions" }),
        };
        let statuses = object
            .get("statuses")
            .map(|v| string_list(v, "statuses", check_status, true))
            .transpose()?;
        let exclude_tag_keys = match object.get("excludeTagKeys") {
            Some(v) => string_list(v, "excludeTagKeys", check_tag_key, false)?,
            None => Vec::new(),
        };
        let selection = Selection {
            names,
            regions,
            keep_newest: optional_count(object, "keepNewest")?,
            older_than_days: optional_count(object, "olderThanDays")?,
            statuses,
            exclude_tag_keys,
            allow_deleting_newest: optional_bool(object, "allowDeletingNewest")?,
        };
        if selection.keep_newest.is_none()
            && selection.older_than_days.is_none()
            && selection.statuses.is_none()
        {
            return Err(RequestError::NoRule);
        }
        Ok(selection)
    }
}

impl TryFrom<Value> for Selection {
    type Error = RequestError;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        Selection::from_plan(&value, None)
    }
}

fn as_object<'a>(
    value: &'a Value,
    what: &'static str,
) -> Result<&'a Map<String, Value>, RequestError> {
    value.as_object().ok_or_else(|| RequestError::NotAnObject {
        what,
        found: kind(value).to_owned(),
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn unknown_key(key: &str, allowed: &'static [&'static str]) -> RequestError {
    RequestError::UnknownKey {
        key: key.to_owned(),
        suggestion: suggest(key, allowed),
        allowed,
    }
}

/// The allowed key `key` most likely misspells: equal once case, `_` and `-` are ignored, or
/// within two edits.
fn suggest(key: &str, allowed: &[&'static str]) -> Option<&'static str> {
    let fold = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let folded = fold(key);
    if folded.len() > 64 {
        return None;
    }
    allowed
        .iter()
        .map(|a| (edit_distance(&folded, &fold(a)), *a))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

/// Levenshtein distance over chars (inputs are short keys).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// An element check: `Err(message)` names what is wrong with one string.
type Check = fn(&str) -> Result<(), String>;

/// A JSON array of strings, each passing `check`, sorted and de-duplicated. `required` also
/// refuses an empty list: an empty `names`, `regions` or `statuses` would make a plan that can
/// never select anything, which is never what was meant.
fn string_list(
    value: &Value,
    key: &'static str,
    check: Check,
    required: bool,
) -> Result<Vec<String>, RequestError> {
    let invalid = |message: String| RequestError::Invalid { key, message };
    let items = value
        .as_array()
        .ok_or_else(|| invalid(format!("must be a list of strings, got {}", kind(value))))?;
    if required && items.is_empty() {
        return Err(invalid(
            "must not be empty (leave it out to use the default)".to_owned(),
        ));
    }
    let mut list = Vec::with_capacity(items.len());
    for item in items {
        let s = item.as_str().ok_or_else(|| {
            invalid(format!(
                "must be a list of strings, got {} in it",
                kind(item)
            ))
        })?;
        check(s).map_err(|why| invalid(format!("entry {} {why}", quote(s))))?;
        list.push(s.to_owned());
    }
    list.sort();
    list.dedup();
    Ok(list)
}

fn check_name_glob(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'*' | b'?')
        });
    if ok {
        Ok(())
    } else {
        Err("is not a name glob: image names are lowercase letters, digits, '-' and '_', and a glob adds '*' (any run) and '?' (one character)".to_owned())
    }
}

/// `^[a-z]{2}(-[a-z]+)+-[0-9]+$`
fn check_region(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split('-').collect();
    let letters = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1].iter().all(letters)
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err("is not a well-formed region (e.g. us-east-1)".to_owned())
    }
}

fn check_status(s: &str) -> Result<(), String> {
    if IMAGE_STATUSES.contains(&s) {
        return Ok(());
    }
    let hint = IMAGE_STATUSES
        .iter()
        .find(|status| status.eq_ignore_ascii_case(s))
        .map(|status| format!(" (did you mean {status:?}?)"))
        .unwrap_or_default();
    Err(format!(
        "is not an image status{hint}; the statuses are {}",
        IMAGE_STATUSES.join(", ")
    ))
}

fn check_tag_key(s: &str) -> Result<(), String> {
    if s.is_empty() || s.chars().count() > MAX_TAG_KEY_LEN {
        return Err(format!(
            "must be a tag key of 1 to {MAX_TAG_KEY_LEN} characters"
        ));
    }
    Ok(())
}

/// An optional non-negative integer (`keepNewest`, `olderThanDays`). `null` is refused rather
/// than read as "absent": a rule someone wrote down must not quietly disappear.
fn optional_count(
    object: &Map<String, Value>,
    key: &'static str,
) -> Result<Option<u32>, RequestError> {
    let Some(value) = object.get(key) else {
        return Ok(None);
    };
    match value.as_u64().map(u32::try_from) {
        Some(Ok(n)) => Ok(Some(n)),
        Some(Err(_)) => Err(RequestError::Invalid {
            key,
            message: format!("must be at most {}", u32::MAX),
        }),
        None => Err(RequestError::Invalid {
            key,
            message: format!("must be an integer >= 0, got {}", quote(&value.to_string())),
        }),
    }
}

fn optional_bool(object: &Map<String, Value>, key: &'static str) -> Result<bool, RequestError> {
    match object.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(RequestError::Invalid {
            key,
            message: format!("must be true or false, got {}", kind(other)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(plan: Value) -> Result<Selection, RequestError> {
        parse_plan_request(&json!({ "plan": plan }), "us-east-1")
    }

    #[test]
    fn full_request_is_validated_and_normalised() {
        // GIVEN the documented example, with names out of order and a duplicate
        let plan = json!({"names": ["web", "api-*", "web"], "regions": ["us-west-2", "us-east-1"],
            "keepNewest": 3, "olderThanDays": 30, "statuses": ["FAILED", "AVAILABLE"],
            "excludeTagKeys": ["pinned"], "allowDeletingNewest": false});
        // WHEN parsed
        let selection = parse(plan).unwrap();
        // THEN every field is kept, lists sorted and de-duplicated
        assert_eq!(
            selection,
            Selection {
                names: vec!["api-*".into(), "web".into()],
                regions: vec!["us-east-1".into(), "us-west-2".into()],
                keep_newest: Some(3),
                older_than_days: Some(30),
                statuses: Some(vec!["AVAILABLE".into(), "FAILED".into()]),
                exclude_tag_keys: vec!["pinned".into()],
                allow_deleting_newest: false,
            }
        );
    }

    #[test]
    fn defaults_fill_names_regions_and_flags() {
        // GIVEN a plan with one rule only
        // WHEN parsed THEN names covers every image, regions is the function's, flags are off
        let selection = parse(json!({"olderThanDays": 0})).unwrap();
        assert_eq!(selection.names, vec!["*"]);
        assert_eq!(selection.regions, vec!["us-east-1"]);
        assert_eq!(selection.older_than_days, Some(0));
        assert_eq!(
            (selection.keep_newest, selection.statuses.clone()),
            (None, None)
        );
        assert!(selection.exclude_tag_keys.is_empty());
        assert!(!selection.allow_deleting_newest);
    }

    #[test]
    fn each_rule_alone_is_enough_and_keep_newest_zero_counts() {
        // GIVEN plans naming exactly one rule, including keepNewest 0
        for plan in [
            json!({"keepNewest": 0}),
            json!({"olderThanDays": 7}),
            json!({"statuses": ["FAILED"]}),
        ] {
            // WHEN parsed THEN each is accepted
            assert!(parse(plan.clone()).is_ok(), "{plan}");
        }
        assert_eq!(
            parse(json!({"keepNewest": 0})).unwrap().keep_newest,
            Some(0)
        );
    }

    #[test]
    fn a_plan_without_a_rule_is_refused_naming_the_three_rules() {
        // GIVEN plans without keepNewest, olderThanDays or statuses
        for plan in [
            json!({}),
            json!({"names": ["web"], "excludeTagKeys": ["pinned"], "allowDeletingNewest": true}),
        ] {
            // WHEN parsed THEN NoRule, whose message names all three rules
            let err = parse(plan).unwrap_err();
            assert_eq!(err, RequestError::NoRule);
            let message = err.to_string();
            for rule in ["keepNewest", "olderThanDays", "statuses"] {
                assert!(message.contains(rule), "{message}");
            }
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_a_suggestion() {
        // GIVEN a typo, a case variant, a snake_case variant and an unrelated key
        let table: &[(&str, Option<&str>)] = &[
            ("keepNewst", Some("keepNewest")),
            ("KeepNewest", Some("keepNewest")),
            ("older_than_days", Some("olderThanDays")),
            ("exclude-tag-keys", Some("excludeTagKeys")),
            ("name", Some("names")),
            ("dryRun", None),
        ];
        for &(key, suggestion) in table {
            // WHEN a plan with a valid rule carries it
            let mut plan = json!({"keepNewest": 3});
            plan[key] = json!(1);
            let err = parse(plan).unwrap_err();
            // THEN UnknownKey, with the likely intended key, and a message saying why
            match &err {
                RequestError::UnknownKey {
                    key: k,
                    suggestion: s,
                    ..
                } => {
                    assert_eq!((k.as_str(), *s), (key, suggestion));
                }
                other => panic!("{key}: {other:?}"),
            }
            assert!(
                err.to_string().contains("typo cannot widen a plan"),
                "{err}"
            );
        }
    }

    #[test]
    fn top_level_keys_besides_plan_are_refused() {
        // GIVEN a request with a key next to `plan`
        let request = json!({"plan": {"keepNewest": 1}, "plans": {}});
        // WHEN parsed THEN it is an unknown key
        let err = parse_plan_request(&request, "us-east-1").unwrap_err();
        assert!(
            matches!(err, RequestError::UnknownKey { ref key, .. } if key == "plans"),
            "{err:?}"
        );
    }

    #[test]
    fn non_objects_are_refused() {
        // GIVEN a request or plan that is not an object WHEN parsed THEN NotAnObject
        let table = [
            json!(["plan"]),
            json!({"plan": "keepNewest=3"}),
            json!({"plan": null}),
        ];
        for request in table {
            let err = parse_plan_request(&request, "us-east-1").unwrap_err();
            assert!(
                matches!(err, RequestError::NotAnObject { .. }),
                "{request}: {err:?}"
            );
        }
    }

    #[test]
    fn invalid_values_are_refused_naming_the_key() {
        // GIVEN a valid rule plus one invalid value
        let table: &[(&str, Value, &str)] = &[
            ("keepNewest", json!(-1), "integer >= 0"),
            ("keepNewest", json!(1.5), "integer >= 0"),
            ("keepNewest", json!("3"), "integer >= 0"),
            ("keepNewest", json!(null), "integer >= 0"),
            ("keepNewest", json!(4_294_967_296u64), "at most"),
            ("olderThanDays", json!(-30), "integer >= 0"),
            ("olderThanDays", json!(true), "integer >= 0"),
            ("statuses", json!(["failed"]), "did you mean \"FAILED\""),
            ("statuses", json!(["GONE"]), "not an image status"),
            ("statuses", json!([]), "must not be empty"),
            ("statuses", json!("FAILED"), "list of strings"),
            ("names", json!([]), "must not be empty"),
            ("names", json!([""]), "not a name glob"),
            ("names", json!(["Web"]), "not a name glob"),
            ("names", json!(["web/1.0.0"]), "not a name glob"),
            ("names", json!(["[a-z]*"]), "not a name glob"),
            ("names", json!([3]), "list of strings"),
            ("regions", json!([]), "must not be empty"),
            ("regions", json!(["us-east"]), "well-formed region"),
            ("regions", json!(["US-EAST-1"]), "well-formed region"),
            ("regions", json!(["use-east-1"]), "well-formed region"),
            ("regions", json!(["us--1"]), "well-formed region"),
            ("regions", json!(["us-east-1a"]), "well-formed region"),
            ("excludeTagKeys", json!([""]), "tag key of 1 to 128"),
            (
                "excludeTagKeys",
                json!(["k".repeat(129)]),
                "tag key of 1 to 128",
            ),
            ("excludeTagKeys", json!({"pinned": true}), "list of strings"),
            ("allowDeletingNewest", json!("yes"), "true or false"),
            ("allowDeletingNewest", json!(null), "true or false"),
        ];
        for (key, value, needle) in table {
            let mut plan = json!({"olderThanDays": 30});
            plan[*key] = value.clone();
            // WHEN parsed THEN Invalid for that key, with a message that says what is expected
            let err = parse(plan).unwrap_err();
            assert!(
                matches!(err, RequestError::Invalid { key: k, .. } if k == *key),
                "{key}={value}: {err:?}"
            );
            assert!(err.to_string().contains(needle), "{key}={value}: {err}");
        }
    }

    #[test]
    fn valid_edge_values_are_accepted() {
        // GIVEN unusual but valid values
        let plan = json!({"names": ["*", "a?c", "web_1-x"], "regions": ["us-gov-west-1", "cn-north-1"],
            "statuses": IMAGE_STATUSES, "excludeTagKeys": ["aws:cloudformation:stack-name", "k".repeat(128)],
            "keepNewest": u32::MAX});
        // WHEN parsed THEN accepted
        let selection = parse(plan).unwrap();
        assert_eq!(selection.statuses.unwrap().len(), IMAGE_STATUSES.len());
        assert_eq!(selection.regions, vec!["cn-north-1", "us-gov-west-1"]);
    }

    #[test]
    fn selection_serialises_camel_case_and_parses_back() {
        // GIVEN a normalised selection without olderThanDays
        let selection =
            parse(json!({"names": ["web"], "keepNewest": 2, "statuses": ["FAILED"]})).unwrap();
        // WHEN serialised
        let value = serde_json::to_value(&selection).unwrap();
        // THEN it is camelCase, absent rules are left out, defaults are explicit
        assert_eq!(
            value,
            json!({"names": ["web"], "regions": ["us-east-1"], "keepNewest": 2, "statuses": ["FAILED"],
                "excludeTagKeys": [], "allowDeletingNewest": false})
        );
        // AND it deserialises to the same selection
        assert_eq!(
            serde_json::from_value::<Selection>(value).unwrap(),
            selection
        );
    }

    #[test]
    fn a_stored_selection_goes_through_the_same_validation() {
        // GIVEN stored selections without regions, with an unknown key, without a rule
        let table = [
            json!({"names": ["*"], "keepNewest": 1}),
            json!({"names": ["*"], "regions": ["us-east-1"], "keepNewest": 1, "keepOldest": 1}),
            json!({"names": ["*"], "regions": ["us-east-1"]}),
        ];
        for value in table {
            // WHEN deserialised THEN refused
            assert!(
                serde_json::from_value::<Selection>(value.clone()).is_err(),
                "{value}"
            );
        }
        let err = Selection::from_plan(&json!({"keepNewest": 1}), None).unwrap_err();
        assert_eq!(err, RequestError::Missing { key: "regions" });
    }

    #[test]
    fn suggestions_stay_close() {
        // GIVEN keys far from any allowed one WHEN suggested THEN nothing is offered
        assert_eq!(suggest("completelyDifferent", &PLAN_KEYS), None);
        assert_eq!(suggest(&"x".repeat(1000), &PLAN_KEYS), None);
        // AND near ones get the closest key
        assert_eq!(suggest("statuss", &PLAN_KEYS), Some("statuses"));
        assert_eq!(suggest("region", &PLAN_KEYS), Some("regions"));
    }
}
