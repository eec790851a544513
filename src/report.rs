//! The report returned by every invocation (pure): counts per status, one entry per ARN or
//! rejected item, `batchItemFailures` for SQS, and serialisation within the response budget.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::outcome::{ResultRecord, Status, Subject};
use crate::output_resources::entry::{InUseReference, ResourceEntry};

/// `summary` of the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Result entries: distinct ARNs plus rejected items (so the status counts add up to it).
    pub requested: usize,
    pub deleted: usize,
    pub already_deleted: usize,
    pub would_delete: usize,
    pub protected: usize,
    pub in_use: usize,
    pub skipped_plan_drift: usize,
    pub rejected: usize,
    pub failed: usize,
    pub not_attempted: usize,
    pub dead_lettered: usize,
    /// Throttled calls (429s) over all ARNs: attempts refused for rate, not ARNs.
    pub throttled: u64,
    pub dry_run: bool,
}

impl Summary {
    /// Counts by status.
    pub fn count(&self, status: Status) -> usize {
        match status {
            Status::Deleted => self.deleted,
            Status::AlreadyDeleted => self.already_deleted,
            Status::WouldDelete => self.would_delete,
            Status::Protected => self.protected,
            Status::InUse => self.in_use,
            Status::SkippedPlanDrift => self.skipped_plan_drift,
            Status::Rejected => self.rejected,
            Status::Failed => self.failed,
            Status::NotAttempted => self.not_attempted,
        }
    }

    fn add(&mut self, status: Status) {
        let slot = match status {
            Status::Deleted => &mut self.deleted,
            Status::AlreadyDeleted => &mut self.already_deleted,
            Status::WouldDelete => &mut self.would_delete,
            Status::Protected => &mut self.protected,
            Status::InUse => &mut self.in_use,
            Status::SkippedPlanDrift => &mut self.skipped_plan_drift,
            Status::Rejected => &mut self.rejected,
            Status::Failed => &mut self.failed,
            Status::NotAttempted => &mut self.not_attempted,
        };
        *slot += 1;
    }
}

/// One entry of `results`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_build_version_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Calls refused for rate (absent when none were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttled: Option<u32>,
    /// Present for every entry that needed the dead-letter queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_lettered: Option<bool>,
    /// `true` when a source naming it was handed back for a retry.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub handed_back: bool,
    /// One entry per AMI / snapshot / container image (absent when none were looked at).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output_resources: Vec<ResourceEntry>,
    /// For `inUse`: what still uses the image's AMIs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<InUseReference>,
}

impl ResultEntry {
    fn from_record(r: &ResultRecord) -> Self {
        let (arn, input) = match &r.subject {
            Subject::Arn(a) => (Some(a.clone()), None),
            Subject::Input(v) => (None, Some(v.clone())),
        };
        let failure = !r.status.is_success();
        ResultEntry {
            image_build_version_arn: arn,
            input,
            status: r.status,
            request_id: r.request_id.clone(),
            error_code: r.error_code.clone(),
            message: r.message.clone(),
            retryable: r.retryable,
            attempts: (r.attempts > 0).then_some(r.attempts),
            throttled: (r.throttled > 0).then_some(r.throttled),
            dead_lettered: failure.then_some(r.dead_lettered),
            handed_back: r.handed_back,
            output_resources: r.output_resources.clone(),
            references: r.references.clone(),
        }
    }
}

/// `batchItemFailures[]` entry (SQS partial batch response).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    pub item_identifier: String,
}

/// The report returned by every invocation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub summary: Summary,
    pub results: Vec<ResultEntry>,
    /// Present (possibly empty) exactly when the event came from SQS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_item_failures: Option<Vec<BatchItemFailure>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub results_truncated: bool,
}

/// Longest `input` / `message` kept when even the failures alone exceed the budget.
const PREVIEW_CHARS: usize = 512;

impl Report {
    /// Builds the report. `sqs_failures` is `Some` exactly for SQS invocations.
    pub fn new(
        records: &[ResultRecord],
        dry_run: bool,
        sqs_failures: Option<Vec<String>>,
    ) -> Report {
        let mut summary = Summary {
            requested: records.len(),
            dry_run,
            ..Summary::default()
        };
        for r in records {
            summary.add(r.status);
            summary.throttled += u64::from(r.throttled);
            if r.dead_lettered && !r.status.is_success() {
                summary.dead_lettered += 1;
            }
        }
        Report {
            summary,
            results: records.iter().map(ResultEntry::from_record).collect(),
            batch_item_failures: sqs_failures.map(|ids| {
                ids.into_iter()
                    .map(|item_identifier| BatchItemFailure { item_identifier })
                    .collect()
            }),
            results_truncated: false,
        }
    }

    /// Serialises within `budget` bytes. Past it, the entries of successful outcomes are
    /// dropped first; if the failures and rejections alone are still too large, their raw
    /// `input`s and messages are shortened to previews (they are in the DLQ or handed back in
    /// full) and then the last of them are dropped too. The counts stay, `resultsTruncated`
    /// and `resultsOmitted` say what is missing, and `batchItemFailures` is never cut.
    pub fn to_json(&self, budget: usize) -> String {
        let full = serde_json::to_string(self).unwrap_or_default();
        if full.len() <= budget {
            return full;
        }
        let failures: Vec<&ResultEntry> = self
            .results
            .iter()
            .filter(|e| !e.status.is_success())
            .collect();
        let skeleton = self.view(Vec::new(), self.results.len()).len();
        let room = budget.saturating_sub(skeleton);
        let mut entries: Vec<String> = failures.iter().map(|e| json_of(e)).collect();
        if joined_len(&entries) > room {
            entries = failures.iter().map(|e| json_of(&shorten(e))).collect();
        }
        // The longest prefix that fits: n entries take their bytes plus n - 1 commas.
        let mut used = 0;
        let kept = entries
            .iter()
            .take_while(|e| {
                used += e.len() + 1;
                used - 1 <= room
            })
            .count();
        entries.truncate(kept);
        let results = entries
            .into_iter()
            .filter_map(|e| RawValue::from_string(e).ok())
            .collect::<Vec<_>>();
        let omitted = self.results.len() - results.len();
        self.view(results, omitted)
    }

    /// The report with only `results` (already serialised) and the truncation markers.
    fn view(&self, results: Vec<Box<RawValue>>, omitted: usize) -> String {
        let view = ReportView {
            summary: &self.summary,
            results,
            batch_item_failures: self.batch_item_failures.as_deref(),
            results_truncated: true,
            results_omitted: omitted,
        };
        serde_json::to_string(&view).unwrap_or_default()
    }

    /// [`Report::to_json`] as a raw JSON value (what the Lambda handler returns, so the
    /// runtime does not serialise it a second time).
    pub fn to_raw_json(&self, budget: usize) -> Box<RawValue> {
        RawValue::from_string(self.to_json(budget)).expect("valid JSON")
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportView<'a> {
    summary: &'a Summary,
    results: Vec<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_item_failures: Option<&'a [BatchItemFailure]>,
    results_truncated: bool,
    results_omitted: usize,
}

/// One entry as JSON (serialising strings, numbers and JSON values cannot fail).
fn json_of(e: &ResultEntry) -> String {
    serde_json::to_string(e).unwrap_or_default()
}

/// Bytes of `entries` written as the elements of one JSON array.
fn joined_len(entries: &[String]) -> usize {
    entries
        .iter()
        .map(|e| e.len() + 1)
        .sum::<usize>()
        .saturating_sub(1)
}

fn preview(s: &str) -> String {
    if s.chars().count() <= PREVIEW_CHARS {
        s.to_string()
    } else {
        let cut: String = s.chars().take(PREVIEW_CHARS).collect();
        format!("{cut}…")
    }
}

fn shorten(e: &ResultEntry) -> ResultEntry {
    let mut e = e.clone();
    if let Some(input) = &e.input {
        let text = match input {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        e.input = Some(Value::String(preview(&text)));
    }
    e.message = e.message.as_deref().map(preview);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize, status: Status) -> ResultRecord {
        ResultRecord {
            subject: Subject::Arn(format!(
                "arn:aws:imagebuilder:us-east-1:123456789012:image/img/1.0.0/{n}"
            )),
            status,
            request_id: Some(format!("req-{n}")),
            error_code: (!status.is_success()).then(|| "ClientException".into()),
            message: None,
            retryable: (status == Status::Failed).then_some(false),
            configuration: false,
            attempts: 1,
            throttled: n as u32,
            latency_ms: 3,
            dead_lettered: status == Status::Failed,
            handed_back: false,
            output_resources: Vec::new(),
            references: Vec::new(),
        }
    }

    #[test]
    fn report_is_camel_case_and_counts_add_up() {
        let records = vec![record(1, Status::Deleted), record(2, Status::Failed)];
        let report = Report::new(&records, false, Some(vec!["m-1".into()]));
        let v: Value = serde_json::from_str(&report.to_json(usize::MAX)).unwrap();
        assert_eq!(v["summary"]["requested"], 2);
        assert_eq!(v["summary"]["deleted"], 1);
        assert_eq!(v["summary"]["failed"], 1);
        assert_eq!(v["summary"]["deadLettered"], 1);
        assert_eq!(v["summary"]["alreadyDeleted"], 0);
        assert_eq!(v["summary"]["dryRun"], false);
        // throttled counts calls over all ARNs (1 + 2), and each entry its own
        assert_eq!(v["summary"]["throttled"], 3);
        assert_eq!(v["results"][1]["throttled"], 2);
        assert_eq!(
            v["results"][0]["imageBuildVersionArn"],
            records[0].subject_arn()
        );
        assert_eq!(v["results"][0]["requestId"], "req-1");
        assert_eq!(v["results"][1]["errorCode"], "ClientException");
        assert_eq!(v["results"][1]["deadLettered"], true);
        assert_eq!(v["batchItemFailures"][0]["itemIdentifier"], "m-1");
        assert!(v.get("resultsTruncated").is_none());
    }

    #[test]
    fn batch_item_failures_absent_for_non_sqs() {
        let report = Report::new(&[record(1, Status::Deleted)], false, None);
        let v: Value = serde_json::from_str(&report.to_json(usize::MAX)).unwrap();
        assert!(v.get("batchItemFailures").is_none());
    }

    #[test]
    fn past_the_budget_successes_are_dropped_first_and_failures_kept() {
        // GIVEN 10,000 deleted ARNs and 3 failures
        let mut records: Vec<_> = (0..10_000).map(|n| record(n, Status::Deleted)).collect();
        records.extend((0..3).map(|n| record(20_000 + n, Status::Failed)));
        let report = Report::new(&records, false, Some(vec!["m".into()]));
        // WHEN serialised with a budget smaller than the full report
        let json = report.to_json(100_000);
        // THEN only the failures remain, the counts stay, and it is flagged
        let v: Value = serde_json::from_str(&json).unwrap();
        assert!(json.len() <= 100_000);
        assert_eq!(v["resultsTruncated"], true);
        assert_eq!(v["results"].as_array().unwrap().len(), 3);
        assert_eq!(v["summary"]["deleted"], 10_000);
        assert_eq!(v["batchItemFailures"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn huge_rejected_inputs_are_shortened_not_dropped() {
        let mut r = record(1, Status::Rejected);
        r.subject = Subject::Input(Value::String("x".repeat(200_000)));
        let report = Report::new(&[r], false, None);
        let json = report.to_json(10_000);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["results"].as_array().unwrap().len(), 1);
        assert!(json.len() < 10_000);
    }

    #[test]
    fn past_the_budget_failures_go_too_from_the_end_and_are_counted() {
        // GIVEN 2 successes and 1,000 rejections whose entries alone exceed the budget
        let mut records: Vec<_> = (0..2).map(|n| record(n, Status::Deleted)).collect();
        records.extend((0..1_000).map(|n| {
            let mut r = record(10 + n, Status::Rejected);
            r.message = Some("m".repeat(300));
            r
        }));
        let failures: Vec<String> = (0..500).map(|i| format!("m-{i}")).collect();
        let report = Report::new(&records, false, Some(failures.clone()));
        // WHEN serialised within 60 kB
        let json = report.to_json(60_000);
        // THEN it fits, the first rejections are kept in order, the rest are counted
        assert!(json.len() <= 60_000, "{}", json.len());
        let v: Value = serde_json::from_str(&json).unwrap();
        let kept = v["results"].as_array().unwrap();
        assert!(!kept.is_empty() && kept.len() < 1_000);
        assert_eq!(kept[0]["imageBuildVersionArn"], records[2].subject_arn());
        assert!(kept.iter().all(|e| e["status"] == "rejected"));
        assert_eq!(v["resultsOmitted"], 1_002 - kept.len());
        assert_eq!(v["summary"]["rejected"], 1_000);
        // AND batchItemFailures is whole, even when it alone exceeds the budget
        let json = report.to_json(100);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["batchItemFailures"].as_array().unwrap().len(), 500);
        assert_eq!(v["resultsOmitted"], 1_002);
    }

    impl ResultRecord {
        fn subject_arn(&self) -> &str {
            match &self.subject {
                Subject::Arn(a) => a,
                Subject::Input(_) => "",
            }
        }
    }
}
