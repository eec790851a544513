//! Metrics: CloudWatch Embedded Metric Format records per invocation (one, plus one per
//! further 100 DeleteImage latencies).
//!
//! Built purely ([`emf_records`]) and printed by the handler, each as its own stdout line, so
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
const STATUS_METRICS: [(Status, &str); 9] = [
    (Status::Deleted, "Deleted"),
    (Status::AlreadyDeleted, "AlreadyDeleted"),
    (Status::WouldDelete, "WouldDelete"),
    (Status::Protected, "Protected"),
    (Status::InUse, "InUse"),
    (Status::SkippedPlanDrift, "SkippedPlanDrift"),
    (Status::Rejected, "Rejected"),
    (Status::Failed, "Failed"),
    (Status::NotAttempted, "NotAttempted"),
];

/// What the record says about the process rather than the invocation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// Dimension `FunctionName` when known.
    pub function_name: Option<&'a str>,
    /// The smallest in-flight limit of the rate limiters (`None`: no limiter was used).
    pub in_flight_limit: Option<usize>,
    pub timestamp_ms: u64,
}

/// Builds the EMF record: counts per status, `DeadLettered`, `HandedBack` (retryable units
/// returned to the caller), `Throttled` (calls refused for rate), `DeleteImageCalls` and
/// `DeleteImageLatency` (milliseconds; the first 100 values — [`emf_records`] carries the
/// rest in further records); `InFlightLimit` when a rate
/// limiter was used; with output resources also `OutputResourcesDeleted`,
/// `OutputResourcesSkipped` and `OutputResourcesFailed`.
pub fn emf_record(exec: &Execution, ctx: &Context<'_>) -> Value {
    let latencies = latency_values(&exec.delete_latencies);
    counts_record(exec, ctx, latencies.chunks(MAX_VALUES).next())
}

/// The invocation's EMF records: [`emf_record`]'s counts with the first 100 DeleteImage
/// latencies, then one record per further 100 latencies (EMF takes at most 100 values per
/// metric in one record; the AWS EMF libraries split the same way), so every latency counts
/// in the percentiles.
pub fn emf_records(exec: &Execution, ctx: &Context<'_>) -> Vec<Value> {
    let latencies = latency_values(&exec.delete_latencies);
    let mut chunks = latencies.chunks(MAX_VALUES);
    let mut records = vec![counts_record(exec, ctx, chunks.next())];
    records.extend(chunks.map(|chunk| {
        let definitions = vec![latency_definition()];
        let mut root = Map::new();
        root.insert("DeleteImageLatency".into(), json!(chunk));
        envelope(root, definitions, ctx)
    }));
    records
}

fn latency_definition() -> Value {
    json!({"Name": "DeleteImageLatency", "Unit": "Milliseconds"})
}

/// The counts and, when there are any, up to 100 latencies.
fn counts_record(exec: &Execution, ctx: &Context<'_>, latencies: Option<&[f64]>) -> Value {
    let mut counts = [0usize; STATUS_METRICS.len()];
    let mut dead_lettered = 0;
    let mut throttled = 0;
    for r in &exec.records {
        let i = STATUS_METRICS
            .iter()
            .position(|(s, _)| *s == r.status)
            .expect("every status has a metric");
        counts[i] += 1;
        throttled += r.throttled as usize;
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
    count("Throttled", throttled);
    count("DeleteImageCalls", exec.delete_latencies.len());
    if let Some(limit) = ctx.in_flight_limit {
        count("InFlightLimit", limit);
    }
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
        count(
            "OutputResourcesSkipped",
            n(|s| s.is_skipped() || s == ResourceStatus::SkippedMovedTag),
        );
        count("OutputResourcesFailed", n(|s| s == ResourceStatus::Failed));
    }
    if let Some(latencies) = latencies {
        definitions.push(latency_definition());
        root.insert("DeleteImageLatency".into(), json!(latencies));
    }
    envelope(root, definitions, ctx)
}

/// A record's dimension and `_aws` metadata.
fn envelope(mut root: Map<String, Value>, definitions: Vec<Value>, ctx: &Context<'_>) -> Value {
    let dimensions = match ctx.function_name {
        Some(name) => {
            root.insert("FunctionName".into(), json!(name));
            json!([["FunctionName"]])
        }
        None => json!([[]]),
    };
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": ctx.timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimensions,
                "Metrics": definitions,
            }]
        }),
    );
    Value::Object(root)
}

/// Latencies in milliseconds (microsecond precision).
fn latency_values(latencies: &[Duration]) -> Vec<f64> {
    latencies
        .iter()
        .map(|d| (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0)
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
            configuration: false,
            attempts: 1,
            throttled: 2,
            latency_ms: 1,
            dead_lettered,
            handed_back: false,
            output_resources: Vec::new(),
            references: Vec::new(),
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
        let ctx = Context {
            function_name: Some("reaper"),
            in_flight_limit: None,
            timestamp_ms: 1_700_000_000_000,
        };
        let v = emf_record(&exec(3), &ctx);
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
        assert_eq!(v["Throttled"], 6);
        assert!(v.get("InFlightLimit").is_none());
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
        assert!(emf_record(&exec(1), &Context::default())
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
        let v = emf_record(&e, &Context::default());
        assert_eq!(v["OutputResourcesDeleted"], 1);
        assert_eq!(v["OutputResourcesSkipped"], 1);
        assert_eq!(v["OutputResourcesFailed"], 1);
        let defs = v["_aws"]["CloudWatchMetrics"][0]["Metrics"].to_string();
        assert!(defs.contains("OutputResourcesFailed"));
    }

    #[test]
    fn the_in_flight_limit_appears_when_a_limiter_was_used() {
        // GIVEN a limiter cut to 5 calls in flight
        let ctx = Context {
            in_flight_limit: Some(5),
            ..Context::default()
        };
        // WHEN recorded THEN the limit is a metric with its definition
        let v = emf_record(&exec(1), &ctx);
        assert_eq!(v["InFlightLimit"], 5);
        let defs = v["_aws"]["CloudWatchMetrics"][0]["Metrics"].to_string();
        assert!(defs.contains("InFlightLimit"));
    }

    #[test]
    fn more_than_100_latencies_are_split_over_records_none_dropped() {
        // GIVEN 250 DeleteImage calls
        let records = emf_records(&exec(250), &Context::default());
        // THEN three records of 100, 100 and 50 latencies carry every value once
        let values: Vec<f64> = records
            .iter()
            .flat_map(|r| r["DeleteImageLatency"].as_array().unwrap().clone())
            .map(|v| v.as_f64().unwrap())
            .collect();
        let sizes: Vec<usize> = records
            .iter()
            .map(|r| r["DeleteImageLatency"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        assert_eq!(values, (0..250).map(f64::from).collect::<Vec<_>>());
        // AND the counts are in the first record only, every record is valid EMF
        assert_eq!(records[0]["DeleteImageCalls"], 250);
        assert!(records[1].get("DeleteImageCalls").is_none());
        for r in &records {
            let metrics = &r["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(metrics["Namespace"], NAMESPACE);
            assert_eq!(metrics["Dimensions"], json!([[]]));
        }
        // AND 100 latencies or fewer make one record
        assert_eq!(emf_records(&exec(100), &Context::default()).len(), 1);
    }
}
