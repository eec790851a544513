//! What the EC2 front remembers between requests: per-AMI launch time and deregistration
//! protection, references set by tests (SSM parameters, recipes), scripted faults and the
//! call log, behind one short-held lock; plus the upstream client, the injected latency and
//! the count of requests in flight.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::references::ImageReference;
use super::upstream::Upstream;

/// Values EC2 keeps per AMI that moto does not: absent fields are left out of DescribeImages.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ImageSettings {
    /// ISO 8601 time of the last launch, e.g. `2026-11-28T10:00:00Z`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_launched_time: Option<String>,
    /// `disabled`, `enabled-without-cooldown`, `enabled-with-cooldown`, … — any value that
    /// starts with `enabled` blocks DeregisterImage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deregistration_protection: Option<String>,
}

impl ImageSettings {
    /// Whether DeregisterImage is refused for this AMI.
    pub fn is_protected(&self) -> bool {
        self.deregistration_protection
            .as_deref()
            .is_some_and(|p| p.starts_with("enabled"))
    }
}

/// Latency the front adds to every EC2 request it receives — answered here, failed by a
/// scripted fault or passed through to moto alike — before handling it: a default, and
/// per-operation values (EC2 `Action`) that replace it for their operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ec2Latency {
    /// Milliseconds for every operation without its own value.
    pub default_ms: u64,
    /// Milliseconds by operation, e.g. `DescribeImageReferences` → 0.
    pub by_operation: BTreeMap<String, u64>,
}

impl Ec2Latency {
    /// The latency of one request of `operation`.
    pub fn of(&self, operation: &str) -> Duration {
        let ms = self
            .by_operation
            .get(operation)
            .copied()
            .unwrap_or(self.default_ms);
        Duration::from_millis(ms)
    }

    /// `{"defaultMs": N, "byOperation": {"Op": N}}`, as the stats show it.
    pub fn to_json(&self) -> Value {
        json!({"defaultMs": self.default_ms, "byOperation": self.by_operation})
    }
}

/// A scripted error for one operation (EC2 `Action`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ec2Fault {
    /// HTTP status, 400..=599.
    pub status: u16,
    /// EC2 error code, e.g. `ServiceUnavailable`, `RequestLimitExceeded`.
    pub code: String,
    pub message: String,
    /// How many more calls fail; `None` = every call until cleared.
    pub times: Option<u32>,
}

impl Ec2Fault {
    /// Reads `{"status"?: 503, "code"?: "ServiceUnavailable", "message"?, "times"?: N |
    /// "always"}` (defaults shown; `times` defaults to always).
    pub fn from_json(v: &Value) -> Result<Ec2Fault, String> {
        let obj = v
            .as_object()
            .ok_or("a fault must be an object {status, code, message, times}")?;
        let status = match obj.get("status") {
            None => 503,
            Some(s) => s
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| (400..=599).contains(s))
                .ok_or(format!("status must be 400..=599, got {s}"))?,
        };
        let code = match obj.get("code") {
            None => default_code(status).to_string(),
            Some(c) => c.as_str().ok_or("code must be a string")?.to_string(),
        };
        let message = match obj.get("message") {
            None => format!("scripted {code} from the EC2 front"),
            Some(m) => m.as_str().ok_or("message must be a string")?.to_string(),
        };
        let times = match obj.get("times") {
            None => None,
            Some(Value::String(s)) if s == "always" => None,
            Some(t) => Some(
                t.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or(format!("times must be a count or \"always\", got {t}"))?,
            ),
        };
        Ok(Ec2Fault {
            status,
            code,
            message,
            times,
        })
    }

    /// The JSON form [`Ec2Fault::from_json`] reads.
    pub fn to_json(&self) -> Value {
        let times = self.times.map_or(json!("always"), |n| json!(n));
        json!({"status": self.status, "code": self.code, "message": self.message, "times": times})
    }
}

fn default_code(status: u16) -> &'static str {
    match status {
        503 => "ServiceUnavailable",
        500..=599 => "InternalError",
        429 => "RequestLimitExceeded",
        403 => "UnauthorizedOperation",
        _ => "InvalidParameterValue",
    }
}

/// One request the front received.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ec2Call {
    /// The EC2 `Action` (empty when the request named none).
    pub operation: String,
    /// Signing region from the SigV4 credential scope.
    pub region: Option<String>,
    pub status: u16,
    /// EC2 error code of an error answer.
    pub error_code: Option<String>,
    /// Who answered: `front` (computed here), `fault` (scripted) or `moto` (passed through,
    /// possibly enriched).
    pub answered_by: String,
    /// Milliseconds since the front started.
    pub at_ms: u64,
}

#[derive(Default)]
pub(crate) struct State {
    pub images: BTreeMap<String, ImageSettings>,
    pub references: Vec<ImageReference>,
    pub faults: BTreeMap<String, Ec2Fault>,
    pub calls: Vec<Ec2Call>,
}

/// Everything a request handler needs.
pub(crate) struct Shared {
    state: Mutex<State>,
    pub upstream: Upstream,
    pub latency: Ec2Latency,
    epoch: Instant,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Shared {
    pub(crate) fn new(upstream: Upstream, latency: Ec2Latency) -> Shared {
        Shared {
            state: Mutex::new(State::default()),
            upstream,
            latency,
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }

    /// Counts one EC2 request in flight until the returned guard is dropped, and keeps the
    /// high-water mark.
    pub(crate) fn enter(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(self)
    }

    /// Clears the call log and restarts the concurrency high-water mark from the requests in
    /// flight now.
    pub(crate) fn reset_stats(&self) {
        self.lock().calls.clear();
        let now = self.in_flight.load(Ordering::SeqCst);
        self.max_in_flight.store(now, Ordering::SeqCst);
    }

    /// `{"maxConcurrency", "inFlight", "calls", "byOperation", "byStatus", "byAnsweredBy",
    /// "latency"}` over the calls logged since the last reset.
    pub(crate) fn stats(&self) -> Value {
        let state = self.lock();
        let mut by_op: BTreeMap<&str, u64> = BTreeMap::new();
        let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_answer: BTreeMap<&str, u64> = BTreeMap::new();
        for call in &state.calls {
            *by_op.entry(call.operation.as_str()).or_default() += 1;
            *by_status.entry(call.status.to_string()).or_default() += 1;
            *by_answer.entry(call.answered_by.as_str()).or_default() += 1;
        }
        json!({
            "maxConcurrency": self.max_in_flight.load(Ordering::SeqCst),
            "inFlight": self.in_flight.load(Ordering::SeqCst),
            "calls": state.calls.len(),
            "byOperation": by_op,
            "byStatus": by_status,
            "byAnsweredBy": by_answer,
            "latency": self.latency.to_json(),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every await-free step, so a poisoned lock (a panic
        // elsewhere while holding it) is still safe to use.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The scripted fault for `operation`, if any, counting one use.
    pub(crate) fn take_fault(&self, operation: &str) -> Option<Ec2Fault> {
        let mut state = self.lock();
        let fault = state.faults.get_mut(operation)?;
        let out = fault.clone();
        if let Some(n) = fault.times.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.faults.remove(operation);
            }
        }
        (out.times != Some(0)).then_some(out)
    }

    /// The settings stored for `image_id` (default when none).
    pub(crate) fn image(&self, image_id: &str) -> ImageSettings {
        self.lock()
            .images
            .get(image_id)
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn record(&self, call: Ec2Call) {
        self.lock().calls.push(call);
    }
}

/// One request in flight; counted down on drop.
pub(crate) struct InFlight<'a>(&'a Shared);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_read_defaults_counts_and_always() {
        let f = Ec2Fault::from_json(&json!({"times": 2})).unwrap();
        assert_eq!(
            (f.status, f.code.as_str(), f.times),
            (503, "ServiceUnavailable", Some(2))
        );
        let f = Ec2Fault::from_json(&json!({"status": 500, "times": "always"})).unwrap();
        assert_eq!((f.code.as_str(), f.times), ("InternalError", None));
        assert_eq!(Ec2Fault::from_json(&f.to_json()).unwrap(), f);
        for bad in [json!(1), json!({"status": 200}), json!({"times": "often"})] {
            assert!(Ec2Fault::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counted_faults_run_out() {
        let shared = Shared::new(
            Upstream::new("http://127.0.0.1:1").unwrap(),
            Ec2Latency::default(),
        );
        let fault = Ec2Fault::from_json(&json!({"times": 2})).unwrap();
        shared.lock().faults.insert("X".into(), fault);
        assert!(shared.take_fault("X").is_some());
        assert!(shared.take_fault("X").is_some());
        assert!(shared.take_fault("X").is_none());
        let zero = Ec2Fault::from_json(&json!({"times": 0})).unwrap();
        shared.lock().faults.insert("Y".into(), zero);
        assert!(shared.take_fault("Y").is_none());
    }

    #[test]
    fn an_operation_latency_replaces_the_default_for_that_operation_only() {
        let latency = Ec2Latency {
            default_ms: 20,
            by_operation: [("DescribeImageReferences".to_string(), 0)].into(),
        };
        assert_eq!(latency.of("DescribeImages"), Duration::from_millis(20));
        assert_eq!(latency.of("DescribeImageReferences"), Duration::ZERO);
        assert_eq!(Ec2Latency::default().of("X"), Duration::ZERO);
    }

    #[test]
    fn stats_count_by_operation_and_keep_the_concurrency_high_water_mark() {
        let shared = Shared::new(
            Upstream::new("http://127.0.0.1:1").unwrap(),
            Ec2Latency::default(),
        );
        let (a, b) = (shared.enter(), shared.enter());
        drop(a);
        let call = |op: &str| Ec2Call {
            operation: op.into(),
            region: None,
            status: 200,
            error_code: None,
            answered_by: "moto".into(),
            at_ms: 0,
        };
        shared.record(call("DescribeImages"));
        shared.record(call("DescribeImages"));
        shared.record(call("DeregisterImage"));
        let s = shared.stats();
        assert_eq!(
            (s["maxConcurrency"].as_u64(), s["inFlight"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(s["byOperation"]["DescribeImages"], 2);
        assert_eq!(s["byAnsweredBy"]["moto"], 3);
        // AND a reset forgets the calls and restarts the mark from what is in flight
        shared.reset_stats();
        let s = shared.stats();
        assert_eq!(
            (s["calls"].as_u64(), s["maxConcurrency"].as_u64()),
            (Some(0), Some(1))
        );
        drop(b);
    }
}
