//! What the CLI prints on standard output: the function's JSON as it is, or a table for
//! people (one row per outcome, then the counts by status).

use std::fmt::Write as _;

use serde_json::Value;

/// The status counts of a report's summary, in the order a person reads them.
const STATUSES: [&str; 10] = [
    "deleted",
    "alreadyDeleted",
    "wouldDelete",
    "protected",
    "inUse",
    "skippedPlanDrift",
    "rejected",
    "failed",
    "notAttempted",
    "deadLettered",
];

/// Longest message shown in a table cell.
const MESSAGE_CHARS: usize = 160;

/// A report as a table: STATUS, ARN (or rejected input), DETAIL; then the counts.
pub fn report_table(report: &Value) -> String {
    let results = report["results"].as_array().map_or(&[][..], Vec::as_slice);
    let rows: Vec<[String; 3]> = results.iter().map(report_row).collect();
    let mut out = table(["STATUS", "ARN", "DETAIL"], &rows);
    let summary = &report["summary"];
    let counts: Vec<String> = STATUSES
        .iter()
        .filter_map(|s| {
            let n = summary[*s].as_u64().unwrap_or(0);
            (n > 0).then(|| format!("{n} {s}"))
        })
        .collect();
    let requested = summary["requested"].as_u64().unwrap_or(0);
    let _ = write!(out, "\n{requested} requested");
    if !counts.is_empty() {
        let _ = write!(out, ": {}", counts.join(", "));
    }
    out.push('\n');
    if report["resultsTruncated"].as_bool() == Some(true) {
        let _ = writeln!(out, "({} entries omitted)", report["resultsOmitted"]);
    }
    if summary["dryRun"].as_bool() == Some(true) {
        out.push_str("Dry run: nothing was deleted.\n");
    }
    out
}

fn report_row(r: &Value) -> [String; 3] {
    let subject = match (&r["imageBuildVersionArn"], &r["input"]) {
        (Value::String(arn), _) => arn.clone(),
        (_, Value::String(s)) => s.clone(),
        (_, v) => v.to_string(),
    };
    let mut detail = Vec::new();
    if let Some(code) = r["errorCode"].as_str() {
        detail.push(code.to_string());
    }
    if let Some(m) = r["message"].as_str() {
        detail.push(shorten(m));
    }
    if r["retryable"].as_bool() == Some(true) {
        detail.push("retryable".into());
    }
    if r["deadLettered"].as_bool() == Some(true) {
        detail.push("dead-lettered".into());
    }
    if r["handedBack"].as_bool() == Some(true) {
        detail.push("not dead-lettered".into());
    }
    let status = r["status"].as_str().unwrap_or("?").to_string();
    [status, subject, detail.join("; ")]
}

/// A plan as a table: what would be deleted and what is kept, with why; then the counts.
pub fn plan_table(plan: &Value) -> String {
    let mut rows: Vec<[String; 3]> = Vec::new();
    for d in plan["delete"].as_array().map_or(&[][..], Vec::as_slice) {
        let reasons = d["reasons"].as_array().map_or(&[][..], Vec::as_slice);
        let reasons: Vec<&str> = reasons.iter().filter_map(Value::as_str).collect();
        rows.push([
            "delete".into(),
            d["imageBuildVersionArn"].as_str().unwrap_or("?").into(),
            reasons.join(", "),
        ]);
    }
    for k in plan["keep"].as_array().map_or(&[][..], Vec::as_slice) {
        rows.push([
            "keep".into(),
            k["imageBuildVersionArn"].as_str().unwrap_or("?").into(),
            k["reason"].as_str().unwrap_or("").into(),
        ]);
    }
    let mut out = table(["PLAN", "ARN", "WHY"], &rows);
    let s = &plan["summary"];
    let _ = writeln!(
        out,
        "\nPlan {}: {} scanned, {} to delete, {} to keep; expires {}",
        plan["planId"].as_str().unwrap_or("?"),
        s["scanned"],
        s["delete"],
        s["keep"],
        plan["expiresAt"].as_str().unwrap_or("?")
    );
    out
}

/// Left-aligned columns, two spaces apart.
fn table(header: [&str; 3], rows: &[[String; 3]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = header.map(str::to_string);
    for row in std::iter::once(&header).chain(rows) {
        let line = format!(
            "{:w0$}  {:w1$}  {}",
            row[0],
            row[1],
            row[2],
            w0 = widths[0],
            w1 = widths[1]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= MESSAGE_CHARS {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(MESSAGE_CHARS).collect::<String>())
    }
}

/// Whether a report asks for exit code 1: something failed, was rejected, was not
/// attempted, or went to the dead-letter queue.
pub fn report_needs_attention(report: &Value) -> bool {
    let s = &report["summary"];
    ["failed", "rejected", "notAttempted", "deadLettered"]
        .iter()
        .any(|k| s[*k].as_u64().unwrap_or(0) > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_report_table_has_a_row_per_outcome_and_the_counts() {
        // GIVEN a report with a deletion and a rejection
        let report = json!({
            "summary": {"requested": 2, "deleted": 1, "rejected": 1, "dryRun": false},
            "results": [
                {"imageBuildVersionArn": "arn:aws:imagebuilder:us-east-1:1:image/a/1.0.0/1", "status": "deleted"},
                {"input": "nope", "status": "rejected", "errorCode": "NotAnImageBuildVersionArn",
                 "message": "m", "handedBack": true}]
        });
        // WHEN it is printed as a table
        let t = report_table(&report);
        // THEN each outcome has a row and the counts close it; the report needs attention
        assert!(t.starts_with("STATUS"));
        assert!(t.contains("rejected  nope"));
        assert!(t.contains("NotAnImageBuildVersionArn; m; not dead-lettered"));
        assert!(t.contains("2 requested: 1 deleted, 1 rejected"));
        assert!(report_needs_attention(&report));
    }

    #[test]
    fn only_done_outcomes_need_no_attention() {
        let report = json!({"summary": {"requested": 2, "deleted": 1, "protected": 1}});
        assert!(!report_needs_attention(&report));
    }
}
