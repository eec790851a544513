//! Metrics: one CloudWatch Embedded Metric Format record per invocation.
//!
//! Built purely ([`emf_record`]) and printed by the handler as its own stdout line, so
//! CloudWatch extracts the metrics from the log without any API call.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::engine::Execution;
use crate::outcome::Status;
use crate::output_resources::entry::ResourceStatus;

/// The CloudWatch namespace.
pub const NAMESPACE: &str = "ImagebuilderReaper";

/// EMF accepts at most 100 values per metric in one record.
const MAX_VALUES: usize = 100;

/// Per-status metric names, in report order.
const STATUS_METRICS: [(Status, &str); 8] = [
    (Status::Deleted, "Deleted"),
    (Status::AlreadyDeleted, "AlreadyDeleted"),
    (Status::WouldDelete, "WouldDelete"),
    (Status::Protected, "Protected"),
    (Status::SkippedPlanDrift, "SkippedPlanDrift"),
    (Status::Rejected, "Rejected"),
    (Status::Failed, "Failed"),
    (Status::NotAttempted, "NotAttempted"),
];

/// Builds the EMF record: counts per status, `DeadLettered`, `HandedBack` (retryable units
/// returned to the caller), `DeleteImageCalls` and `DeleteImageLatency` (milliseconds; at
/// most 100 values — past that, 100 evenly spaced quantiles of the sorted latencies, so
/// percentiles stay right); with output resources also `OutputResourcesDeleted`,
/// `OutputResourcesSkipped` and `OutputResourcesFailed`. Dimension `FunctionName` when known.
pub fn emf_record(exec: &Execution, function_name: Option<&str>, timestamp_ms: u64) -> Value {
    let mut counts = [0usize; STATUS_METRICS.len()];
    let mut dead_lettered = 0;
    for r in &exec.records {
        let i = STATUS_METRICS
            .iter()
            .position(|(s, _)| *s == r.status)
            .expect("every status has a metric");
        counts[i] += 1;
        if r.dead_lettered && !r.status.is_success() {
            dead_lettered += 1;
        }
    }
    let mut definitions = Vec::new();
    let mut root = Map::new();
    let mut count = |name: &str, value: usize| {
        definitions.push(json!({"Name": name, "Unit": "Count"}));
        root.insert(name.to_string(), json!(value));
    };
    count("Requested", exec.records.len());
    for ((_, name), n) in STATUS_METRICS.iter().zip(counts) {
        count(name, n);
    }
    count("DeadLettered", dead_lettered);
    count("HandedBack", exec.handed_back.len());
    count("DeleteImageCalls", exec.delete_latencies.len());
    // Only when output resources were looked at, so the default record is unchanged.
    let pieces: Vec<ResourceStatus> = exec
        .records
        .iter()
        .flat_map(|r| r.output_resources.iter().map(|e| e.status))
        .collect();
    if !pieces.is_empty() {
        let n = |f: fn(ResourceStatus) -> bool| pieces.iter().filter(|s| f(**s)).count();
        count(
            "OutputResourcesDeleted",
            n(|s| s == ResourceStatus::Deleted),
        );
        count("OutputResourcesSkipped", n(ResourceStatus::is_skipped));
        count("OutputResourcesFailed", n(|s| s == ResourceStatus::Failed));
    }
    if !exec.delete_latencies.is_empty() {
        definitions.push(json!({"Name": "DeleteImageLatency", "Unit": "Milliseconds"}));
        root.insert(
            "DeleteImageLatency".into(),
            json!(latency_values(&exec.delete_latencies)),
        );
    }
    let dimensions = match function_name {
        Some(name) => {
            root.insert("FunctionName".into(), json!(name));
            json!([["FunctionName"]])
        }
        None => json!([[]]),
    };
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimensions,
                "Metrics": definitions,
            }]
        }),
    );
    Value::Object(root)
}

fn latency_values(latencies: &[Duration]) -> Vec<f64> {
    let mut ms: Vec<f64> = latencies
        .iter()
        .map(|d| (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0)
        .collect();
    if ms.len() <= MAX_VALUES {
        return ms;
    }
    ms.sort_by(f64::total_cmp);
    (0..MAX_VALUES)
        .map(|i| ms[i * (ms.len() - 1) / (MAX_VALUES - 1)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::InvocationKind;
    use crate::outcome::{ResultRecord, Subject};

    fn rec(status: Status, dead_lettered: bool) -> ResultRecord {
        ResultRecord {
            subject: Subject::Arn("a".into()),
            status,
            request_id: None,
            error_code: None,
            message: None,
            retryable: None,
            attempts: 1,
            latency_ms: 1,
            dead_lettered,
            handed_back: false,
            output_resources: Vec::new(),
        }
    }

    fn exec(latencies: usize) -> Execution {
        Execution {
            kind: InvocationKind::Direct,
            dry_run: false,
            records: vec![
                rec(Status::Deleted, false),
                rec(Status::Deleted, false),
                rec(Status::Failed, true),
            ],
            handed_back: vec![],
            not_dead_lettered: vec![],
            delete_latencies: (0..latencies)
                .map(|i| Duration::from_millis(i as u64))
                .collect(),
        }
    }

    #[test]
    fn one_record_with_counts_per_status_and_latency() {
        let v = emf_record(&exec(3), Some("reaper"), 1_700_000_000_000);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["FunctionName"]])
        );
        assert_eq!(v["FunctionName"], "reaper");
        assert_eq!(v["Deleted"], 2);
        assert_eq!(v["Failed"], 1);
        assert_eq!(v["DeadLettered"], 1);
        assert_eq!(v["Protected"], 0);
        assert_eq!(v["DeleteImageLatency"], json!([0.0, 1.0, 2.0]));
        // every value has a definition
        let defs = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        for d in defs {
            assert!(v.get(d["Name"].as_str().unwrap()).is_some());
        }
    }

    #[test]
    fn output_resource_counts_appear_only_when_output_resources_were_looked_at() {
        use crate::output_resources::entry::{ResourceEntry, ResourceKind};
        // GIVEN no output resources THEN no such metric
        assert!(emf_record(&exec(1), None, 0)
            .get("OutputResourcesDeleted")
            .is_none());
        // GIVEN an ARN with a deleted AMI, a skipped snapshot and a failed container image
        let mut e = exec(1);
        let piece = |status| ResourceEntry::new(ResourceKind::Ami, "x", "us-east-1", None, status);
        e.records[0].output_resources = vec![
            piece(ResourceStatus::Deleted),
            piece(ResourceStatus::SkippedInUse),
            piece(ResourceStatus::Failed),
        ];
        // WHEN recorded THEN each is counted, with a definition
        let v = emf_record(&e, None, 0);
        assert_eq!(v["OutputResourcesDeleted"], 1);
        assert_eq!(v["OutputResourcesSkipped"], 1);
        assert_eq!(v["OutputResourcesFailed"], 1);
        let defs = v["_aws"]["CloudWatchMetrics"][0]["Metrics"].to_string();
        assert!(defs.contains("OutputResourcesFailed"));
    }

    #[test]
    fn latency_is_capped_at_100_values_keeping_the_extremes() {
        let v = emf_record(&exec(10_000), None, 0);
        let values = v["DeleteImageLatency"].as_array().unwrap();
        assert_eq!(values.len(), 100);
        assert_eq!(values[0], 0.0);
        assert_eq!(values[99], 9999.0);
        assert_eq!(v["DeleteImageCalls"], 10_000);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
    }
}
