//! The bulk-delete state machine (statemachine/bulk-delete.asl.json) against the function's
//! error contract (: the `errorType` names Step Functions `Retry` / `Catch` match) and
//! against the SAM template that deploys it. Offline, no AWS: JSON and plain text only
//! (asl-validator and cfn-lint run in scripts/check-template).

use std::collections::BTreeSet;

use imagebuilder_reaper::error::ERROR_TYPES;
use serde_json::Value;

use crate::support::process::repo_root;

const ASL_PATH: &str = "statemachine/bulk-delete.asl.json";

fn repo_file(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn asl() -> Value {
    serde_json::from_str(&repo_file(ASL_PATH))
        .unwrap_or_else(|e| panic!("{ASL_PATH} is not valid JSON: {e}"))
}

/// One `Retry` or `Catch` entry's `ErrorEquals` names, with where it was found.
#[derive(Debug)]
struct Matcher {
    state: String,
    kind: &'static str, // "Retry" | "Catch"
    names: Vec<String>,
}

/// Every state of the machine, including those nested in Map `ItemProcessor`s /
/// `Iterator`s and Parallel `Branches`, as (name, definition).
fn all_states(machine: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let Some(states) = machine.get("States").and_then(Value::as_object) else {
        return out;
    };
    for (name, state) in states {
        out.push((name.clone(), state.clone()));
        for key in ["ItemProcessor", "Iterator"] {
            if let Some(sub) = state.get(key) {
                out.extend(all_states(sub));
            }
        }
        if let Some(branches) = state.get("Branches").and_then(Value::as_array) {
            for b in branches {
                out.extend(all_states(b));
            }
        }
    }
    out
}

fn matchers(machine: &Value) -> Vec<Matcher> {
    let mut out = Vec::new();
    for (state, def) in all_states(machine) {
        for kind in ["Retry", "Catch"] {
            let Some(entries) = def.get(kind) else {
                continue;
            };
            let entries = entries
                .as_array()
                .unwrap_or_else(|| panic!("{state}.{kind} must be an array"));
            for entry in entries {
                let names = entry
                    .get("ErrorEquals")
                    .and_then(Value::as_array)
                    .unwrap_or_else(|| panic!("{state}.{kind} entry without ErrorEquals array"))
                    .iter()
                    .map(|n| {
                        n.as_str()
                            .unwrap_or_else(|| panic!("{state}.{kind}: non-string error name {n}"))
                            .to_string()
                    })
                    .collect();
                out.push(Matcher {
                    state: state.clone(),
                    kind,
                    names,
                });
            }
        }
    }
    out
}

/// The Task states that invoke the reaper function.
fn lambda_tasks(machine: &Value) -> Vec<(String, Value)> {
    all_states(machine)
        .into_iter()
        .filter(|(_, s)| {
            s.get("Type").and_then(Value::as_str) == Some("Task")
                && s.get("Resource")
                    .and_then(Value::as_str)
                    .is_some_and(|r| r.ends_with(":states:::lambda:invoke"))
        })
        .collect()
}

fn names_in(def: &Value, kind: &str) -> BTreeSet<String> {
    def.get(kind)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|e| e["ErrorEquals"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect()
}

#[test]
fn every_matched_error_name_is_a_service_error_or_one_the_function_returns() {
    let m = matchers(&asl());
    assert!(!m.is_empty(), "{ASL_PATH} has no Retry/Catch at all");
    for matcher in &m {
        for name in &matcher.names {
            let ok = name.starts_with("Lambda.")
                || name.starts_with("States.")
                || ERROR_TYPES.contains(&name.as_str());
            assert!(
                ok,
                "{}.{} matches {name:?}, which is neither a Lambda.*/States.* service error nor \
                 one of the function's error types {ERROR_TYPES:?} (a typo never matches)",
                matcher.state, matcher.kind
            );
        }
    }
}

#[test]
fn dead_letter_queue_unavailable_is_retried_and_invalid_event_is_caught() {
    let machine = asl();
    let m = matchers(&machine);
    assert!(
        m.iter().any(|x| x.kind == "Retry" && x.names.iter().any(|n| n == "DeadLetterQueueUnavailable")),
        "no Retry matches DeadLetterQueueUnavailable"
    );
    assert!(
        m.iter()
            .any(|x| x.kind == "Catch" && x.names.iter().any(|n| n == "InvalidEvent")),
        "no Catch matches InvalidEvent"
    );

    // And for every state that invokes the function, not just somewhere.
    let tasks = lambda_tasks(&machine);
    assert!(
        !tasks.is_empty(),
        "no Task invokes the function (arn:<partition>:states:::lambda:invoke)"
    );
    for (name, def) in &tasks {
        let retried = names_in(def, "Retry");
        let caught = names_in(def, "Catch");
        for transient in [
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
            "Lambda.TooManyRequestsException",
            "DeadLetterQueueUnavailable",
        ] {
            assert!(
                retried.contains(transient),
                "{name} does not retry {transient}"
            );
        }
        assert!(
            caught.contains("InvalidEvent"),
            "{name} does not catch InvalidEvent"
        );
        // Deterministic failures: retrying them only delays the same answer.
        for permanent in ["InvalidEvent", "ConfigurationError"] {
            assert!(
                !retried.contains(permanent),
                "{name} retries {permanent}, which cannot succeed on retry"
            );
        }
        assert!(
            !retried.contains("States.ALL") && !caught.contains("States.ALL"),
            "{name}: States.ALL would hide failures that must fail the batch (and be redriven)"
        );
        // Retries back off.
        for entry in def["Retry"].as_array().unwrap() {
            let rate = entry
                .get("BackoffRate")
                .and_then(Value::as_f64)
                .unwrap_or(2.0);
            assert!(
                rate > 1.0,
                "{name}: a Retry without exponential backoff: {entry}"
            );
        }
    }
}

#[test]
fn a_caught_invalid_batch_keeps_its_items_and_error_in_the_output() {
    for (name, def) in lambda_tasks(&asl()) {
        for entry in def["Catch"].as_array().unwrap() {
            let text = entry.to_string();
            assert!(
                text.contains("$states.errorOutput") && text.contains("$states.input.Items"),
                "{name}: a Catch must keep the error and the batch's Items in its output: {entry}"
            );
        }
    }
}

#[test]
fn fail_states_use_only_the_functions_error_names() {
    for (name, def) in all_states(&asl()) {
        if def.get("Type").and_then(Value::as_str) == Some("Fail") {
            let error = def.get("Error").and_then(Value::as_str).unwrap_or_default();
            assert!(
                ERROR_TYPES.contains(&error),
                "Fail state {name} fails with {error:?}; callers are told to expect only {ERROR_TYPES:?}"
            );
        }
    }
}

#[test]
fn template_deploys_this_definition_with_every_substitution() {
    let template = repo_file("template.yaml");
    assert!(
        template
            .lines()
            .any(|l| l.trim() == format!("DefinitionUri: {ASL_PATH}")),
        "template.yaml does not deploy {ASL_PATH} (DefinitionUri)"
    );

    // Plain-text read of the DefinitionSubstitutions block: the keys one indent deeper.
    let lines: Vec<&str> = template.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == "DefinitionSubstitutions:")
        .expect("template.yaml has no DefinitionSubstitutions");
    let indent = |l: &str| l.len() - l.trim_start().len();
    let base = indent(lines[start]);
    let keys: BTreeSet<String> = lines[start + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent(l) > base)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k.to_string()))
        .collect();

    let asl_text = repo_file(ASL_PATH);
    let mut used = BTreeSet::new();
    let mut rest = asl_text.as_str();
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let end = after.find('}').expect("unterminated ${ in the ASL");
        used.insert(after[..end].to_string());
        rest = &after[end..];
    }
    assert_eq!(
        used, keys,
        "the ASL's ${{placeholders}} and template.yaml's DefinitionSubstitutions must name the same keys"
    );
}
