//! The bulk-delete and retention state machines (statemachine/*.asl.json) against the function's
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
            !retried.contains("States.ALL"),
            "{name}: retrying States.ALL would retry failures that cannot succeed on retry"
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

/// The state a `Catch` entry of `task` goes to (in the `States` block that holds `task`).
fn catch_target<'a>(machine: &'a Value, task: &str, entry: &Value) -> &'a Value {
    let next = entry["Next"]
        .as_str()
        .expect("a Catch names its Next state");
    states_blocks(machine)
        .into_iter()
        .find(|states| states.contains_key(task))
        .and_then(|states| states.get(next))
        .unwrap_or_else(|| panic!("{task}: Catch goes to unknown state {next}"))
}

/// Every `States` block of the machine: the top level and each Map's `ItemProcessor`.
fn states_blocks(machine: &Value) -> Vec<&serde_json::Map<String, Value>> {
    let mut out = Vec::new();
    if let Some(states) = machine.get("States").and_then(Value::as_object) {
        out.push(states);
        for state in states.values() {
            if let Some(sub) = state.get("ItemProcessor") {
                out.extend(states_blocks(sub));
            }
        }
    }
    out
}

#[test]
fn dry_run_reaches_the_function_verbatim() {
    // The function judges dryRun (a string "true" is InvalidEvent, a misspelt key too); the
    // state machine must not turn it into a boolean of its own, so every key of the execution
    // input besides the ARN sources is forwarded as it is.
    let machine = asl();
    let maps: Vec<(String, Value)> = all_states(&machine)
        .into_iter()
        .filter(|(_, s)| s.get("ItemBatcher").is_some())
        .collect();
    assert!(!maps.is_empty(), "no Map with an ItemBatcher");
    for (name, map) in &maps {
        let batch_input = map["ItemBatcher"]["BatchInput"].to_string();
        assert!(
            !batch_input.contains("dryRun"),
            "{name}: BatchInput re-derives dryRun instead of passing it through: {batch_input}"
        );
        assert!(
            batch_input.contains("$sift($states.input")
                && batch_input.contains("$not($k in ['imageBuildVersionArns', 'itemsS3Key'])"),
            "{name}: BatchInput must forward every execution-input key but the ARN sources: {batch_input}"
        );
    }
    for (name, task) in lambda_tasks(&machine) {
        let payload = task["Arguments"]["Payload"].to_string();
        assert!(
            payload.contains("'BatchInput': $states.input.BatchInput.options")
                && !payload.contains("dryRun"),
            "{name}: the Payload must hand the forwarded options to the function unchanged: {payload}"
        );
    }
}

#[test]
fn a_batch_that_fails_for_good_is_dead_lettered_whole_or_fails_the_execution() {
    let machine = asl();
    for (name, task) in lambda_tasks(&machine) {
        let catches = task["Catch"].as_array().expect("Catch");
        let last = catches.last().unwrap();
        assert_eq!(
            last["ErrorEquals"],
            serde_json::json!(["States.ALL"]),
            "{name}: the last Catch takes every other error, so no batch can fail unseen"
        );
        for entry in catches {
            let target = catch_target(&machine, &name, entry);
            assert_eq!(
                target["Resource"], "arn:${Partition}:states:::sqs:sendMessage",
                "{name}: a caught batch goes to the dead-letter queue: {target}"
            );
            assert_eq!(target["Arguments"]["QueueUrl"], "${DeadLetterQueueUrl}");
            let body = target["Arguments"]["MessageBody"].to_string();
            for field in [
                "'input': $states.input.batch.items",
                "'errorCode'",
                "$states.input.batch.batchInput",
            ] {
                assert!(
                    body.contains(field),
                    "{name}: the dead letter lacks {field}: {body}"
                );
            }
            // A failed send must fail the child execution, hence the Map and the execution.
            assert!(
                target.get("Catch").is_none(),
                "{name}: the dead-letter send must not be caught"
            );
            let output = target["Output"].to_string();
            assert!(
                !output.contains("batch.items %")
                    && output.contains("$count($states.input.batch.items)"),
                "{name}: after the send only the count of items stays in the output: {output}"
            );
        }
    }
    for (name, state) in all_states(&machine) {
        for key in ["ToleratedFailurePercentage", "ToleratedFailureCount"] {
            assert!(
                state.get(key).is_none(),
                "{name}: {key} would let a batch whose dead-letter send failed vanish"
            );
        }
    }
    let summarize = all_states(&machine)
        .into_iter()
        .find(|(n, _)| n == "Summarize")
        .expect("Summarize state")
        .1;
    let text = summarize["Output"].to_string();
    assert!(
        text.contains("'failedBatches': $count([$batches.failedBatch])"),
        "the summary counts failed batches: {text}"
    );
}

#[test]
fn task_results_keep_counts_not_the_report() {
    // A batch's report can be large; the Map's result must stay far under 256 KiB.
    for (name, task) in lambda_tasks(&asl()) {
        let output = task["Output"].to_string();
        assert!(
            output.contains("$sift($states.result.Payload.summary"),
            "{name}: the task output keeps the summary's counts only: {output}"
        );
        assert!(
            !output.contains("Payload.results") && !output.contains("$states.result %"),
            "{name}: the task output must not keep the per-ARN results: {output}"
        );
    }
}

#[test]
fn template_routes_async_failures_to_a_queue_of_their_own_and_alarms_on_losses() {
    let template = repo_file("template.yaml");
    let function = template
        .split("\n  ReaperFunction:\n")
        .nth(1)
        .expect("ReaperFunction resource");
    let async_dlq = function
        .split("      DeadLetterQueue:\n")
        .nth(1)
        .and_then(|rest| {
            rest.lines()
                .find(|l| l.trim_start().starts_with("TargetArn:"))
        })
        .expect("ReaperFunction has a DeadLetterQueue TargetArn");
    assert_eq!(
        async_dlq.trim(),
        "TargetArn: !GetAtt AsyncFailureQueue.Arn",
        "failed async invocations must not go to the queue the function itself writes to"
    );
    assert!(template.contains("\n  AsyncFailureQueue:\n    Type: AWS::SQS::Queue\n"));
    for metric in [
        "MetricName: DeadLetterErrors",
        "MetricName: AsyncEventsDropped",
        "Value: !GetAtt DeadLetterQueue.QueueName",
        "Value: !GetAtt AsyncFailureQueue.QueueName",
    ] {
        assert!(
            template.contains(metric),
            "template.yaml has no alarm with {metric}"
        );
    }
}

// ---- the retention state machine ------------------------------------------------------------

const RETENTION_ASL_PATH: &str = "statemachine/retention.asl.json";

fn retention_asl() -> Value {
    serde_json::from_str(&repo_file(RETENTION_ASL_PATH))
        .unwrap_or_else(|e| panic!("{RETENTION_ASL_PATH} is not valid JSON: {e}"))
}

#[test]
fn retention_matches_only_service_errors_and_the_functions_error_types() {
    // GIVEN every Retry / Catch of the retention state machine
    let m = matchers(&retention_asl());
    assert!(
        !m.is_empty(),
        "{RETENTION_ASL_PATH} has no Retry/Catch at all"
    );
    // THEN each name is a Lambda.* / States.* error or one the function returns
    for matcher in &m {
        for name in &matcher.names {
            let ok = name.starts_with("Lambda.")
                || name.starts_with("States.")
                || ERROR_TYPES.contains(&name.as_str());
            assert!(
                ok,
                "{}.{} matches {name:?}, which is neither a Lambda.*/States.* service error nor \
                 one of the function's error types {ERROR_TYPES:?}",
                matcher.state, matcher.kind
            );
        }
    }
}

#[test]
fn retention_retries_what_the_function_says_is_worth_retrying() {
    let machine = retention_asl();
    let tasks: std::collections::BTreeMap<String, Value> =
        lambda_tasks(&machine).into_iter().collect();
    // GIVEN the plan task and the batch task
    let plan = &tasks["MakePlan"];
    let batch = &tasks["DeletePlanBatch"];
    // THEN a failed listing or plan bucket is retried when planning
    let retried = names_in(plan, "Retry");
    assert!(retried.contains("ListingFailed") && retried.contains("PlanStoreUnavailable"));
    // AND a batch retries an unavailable DLQ and plan bucket, never InvalidEvent (an expired
    // plan stays expired)
    let retried = names_in(batch, "Retry");
    assert!(retried.contains("DeadLetterQueueUnavailable"));
    assert!(retried.contains("PlanStoreUnavailable"));
    assert!(!retried.contains("InvalidEvent") && !retried.contains("States.ALL"));
}

#[test]
fn retention_approval_waits_for_a_token_and_can_be_skipped() {
    let machine = retention_asl();
    let states = &machine["States"];
    // GIVEN the approval task
    let approval = &states["RequestApproval"];
    assert!(approval["Resource"]
        .as_str()
        .unwrap()
        .ends_with(":states:::sns:publish.waitForTaskToken"));
    let message = approval["Arguments"]["Message"].as_str().unwrap();
    assert!(message.contains("$states.context.Task.Token") && message.contains("planId"));
    // AND it gives up before the plan's 24 hours are over
    assert!(approval["TimeoutSeconds"].as_u64().unwrap() < 24 * 3600);
    // THEN a Choice leads to it or straight to the Map, and nothing but approval leads on
    let choice = serde_json::to_string(&states["AnythingToDelete"]).unwrap();
    assert!(choice.contains("RequestApproval") && choice.contains("ExecutePlan"));
    assert_eq!(states["Approved"]["Default"], "PlanRejected");
    // AND the Map reads the plan's items from the plan bucket
    let reader = &states["ExecutePlan"]["ItemReader"];
    assert_eq!(reader["Arguments"]["Bucket"], "${PlanBucketName}");
    let key = reader["Arguments"]["Key"].as_str().unwrap();
    assert!(
        key.contains("'plans/'") && key.contains("'/items.json'"),
        "{key}"
    );
}

#[test]
fn template_deploys_the_retention_definition_with_every_substitution() {
    let template = repo_file("template.yaml");
    let lines: Vec<&str> = template.lines().collect();
    // GIVEN the state machine that deploys the retention ASL
    let at = lines
        .iter()
        .position(|l| l.trim() == format!("DefinitionUri: {RETENTION_ASL_PATH}"))
        .expect("template.yaml does not deploy the retention ASL");
    let start = at
        + lines[at..]
            .iter()
            .position(|l| l.trim() == "DefinitionSubstitutions:")
            .expect("no DefinitionSubstitutions after the retention DefinitionUri");
    let indent = |l: &str| l.len() - l.trim_start().len();
    let base = indent(lines[start]);
    let keys: BTreeSet<String> = lines[start + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent(l) > base)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k.to_string()))
        .collect();
    // THEN its substitutions are exactly the ASL's placeholders
    let text = repo_file(RETENTION_ASL_PATH);
    let used: BTreeSet<String> = text
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(k, _)| k.to_string()))
        .collect();
    assert_eq!(used, keys);
    // AND the function is told where plans live, and a disabled schedule can start the run
    assert!(template.contains("PLAN_BUCKET: !Ref PlanBucket"));
    assert!(template.contains("Type: AWS::Scheduler::Schedule"));
    assert!(template.contains("Default: DISABLED\n    AllowedValues: [ENABLED, DISABLED]\n    Description: The schedule that starts the retention state machine."));
}
