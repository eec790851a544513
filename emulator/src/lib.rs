//! Local EC2 Image Builder emulator: serves the REST-JSON wire format of imagebuilder
//! 2019-12-02 (DeleteImage, GetImage, ListImageBuildVersions) over plain HTTP on loopback,
//! keeps image state, injects faults (latency, throttling, 5xx, a request-rate limit,
//! per-ARN scripted answers) and records every call, so that real AWS SDK clients
//! (pointed at it with `AWS_ENDPOINT_URL_IMAGEBUILDER`) can be tested and benchmarked.
//!
//! This module holds the public in-process API ([`Emulator`] and its data types); the HTTP
//! layer is in `server`, the wire model in [`model`].

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub mod ec2;
pub mod model;
mod server;

pub use ec2::Ec2Front;

use model::ImageRecord;

/// Fault injection settings. Every field has a neutral default (no faults).
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Fixed latency added to every Image Builder API response, in milliseconds.
    pub latency_ms: u64,
    /// Extra latency drawn uniformly from `0..=jitter_ms` per request.
    pub jitter_ms: u64,
    /// Fraction (0..=1) of calls answered 429 `CallRateLimitExceededException`.
    pub throttle_rate: f64,
    /// Fraction (0..=1) of calls answered with a 5xx, half `ServiceException` (500) and half
    /// `ServiceUnavailableException` (503).
    pub error_rate: f64,
    /// Maximum accepted requests per second (token bucket, burst = one second's worth, at
    /// least 1); calls beyond it are answered 429 `CallRateLimitExceededException`.
    pub max_rps: Option<f64>,
    /// When true, every syntactically valid build-version ARN that was not deleted counts
    /// as an existing image (for benchmarks with many ARNs and no seeding).
    pub implicit_images: bool,
}

/// An image to seed into the emulator.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SeedImage {
    /// The image build-version ARN. An ARN that does not match the model's
    /// `ImageBuildVersionArn` pattern is stored but can never be addressed, since the API
    /// rejects such ARNs with `InvalidRequestException` (as the service does).
    pub arn: String,
    /// `state.status` reported by GetImage (default `AVAILABLE`).
    pub state: Option<String>,
    /// Tags reported by GetImage.
    pub tags: BTreeMap<String, String>,
    /// `outputResources` reported by GetImage, verbatim; default: one AMI in the ARN's region.
    pub output_resources: Option<serde_json::Value>,
}

/// One scripted answer for a given (operation, ARN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Behave normally (state-based answer), bypassing random fault injection.
    Ok,
    /// Answer with this error code: its modelled HTTP status (see [`model::ERROR_CODES`]),
    /// or 400 for a code the model does not know.
    Error(String),
}

impl FromStr for Step {
    type Err = String;

    /// Parses `ok` (any case) or a modelled error code; unknown codes are refused so a typo
    /// in a script does not silently become a 400.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("ok") {
            Ok(Step::Ok)
        } else if model::status_of(s).is_some() {
            Ok(Step::Error(s.to_string()))
        } else {
            let known: Vec<&str> = model::ERROR_CODES.iter().map(|(c, _)| *c).collect();
            Err(format!(
                "unknown step {s:?}: expected \"ok\" or one of {}",
                known.join(", ")
            ))
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Ok => f.write_str("ok"),
            Step::Error(code) => f.write_str(code),
        }
    }
}

/// One recorded Image Builder API call.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    /// `DeleteImage`, `GetImage`, `ListImageBuildVersions`, or the request path of an
    /// unknown operation.
    pub operation: String,
    /// The ARN the call named (query parameter or body), if any.
    pub arn: Option<String>,
    /// Signing region from the SigV4 credential scope (`None` for unsigned calls).
    pub region: Option<String>,
    /// HTTP status answered.
    pub status: u16,
    /// `X-Amzn-ErrorType` answered, for errors.
    pub error_code: Option<String>,
    /// Signing service from the SigV4 credential scope (`imagebuilder` for a correct client).
    pub service: Option<String>,
    /// Milliseconds since the emulator was created at which the request arrived.
    pub at_ms: u64,
}

/// Mutable state behind one lock: every operation touches it briefly and never across an
/// await, so a std mutex is cheaper than an async one.
struct Inner {
    faults: Faults,
    bucket: Option<TokenBucket>,
    images: BTreeMap<String, ImageRecord>,
    /// ARNs deleted while in implicit mode (they stop existing).
    deleted: HashSet<String>,
    scripts: HashMap<(String, String), VecDeque<Step>>,
    calls: Vec<Call>,
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    verbose: AtomicBool,
    epoch: Instant,
    addr: OnceLock<SocketAddr>,
}

/// Token bucket for `max_rps`: refilled continuously at `rate`, holding at most `capacity`.
struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: f64) -> Self {
        let capacity = rate.max(1.0);
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    fn try_take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What fault injection decided for one call, before the state is consulted.
pub(crate) enum Decision {
    /// Answer from the state (DeleteImage deletes, GetImage reads, …).
    Normal,
    /// Answer with this error code.
    Fail(String),
}

/// The emulator: cheap to clone (all clones share one state).
#[derive(Clone)]
pub struct Emulator {
    shared: Arc<Shared>,
}

impl Default for Emulator {
    fn default() -> Self {
        Emulator::new(Faults::default())
    }
}

fn sanitize(mut faults: Faults) -> Faults {
    faults.throttle_rate = clamp_rate(faults.throttle_rate);
    faults.error_rate = clamp_rate(faults.error_rate);
    faults.max_rps = faults.max_rps.filter(|r| r.is_finite() && *r > 0.0);
    faults
}

fn clamp_rate(rate: f64) -> f64 {
    if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    }
}

impl Emulator {
    /// Creates an emulator with no images and the given faults.
    pub fn new(faults: Faults) -> Self {
        let faults = sanitize(faults);
        Emulator {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    bucket: faults.max_rps.map(TokenBucket::new),
                    faults,
                    images: BTreeMap::new(),
                    deleted: HashSet::new(),
                    scripts: HashMap::new(),
                    calls: Vec::new(),
                }),
                in_flight: AtomicUsize::new(0),
                max_in_flight: AtomicUsize::new(0),
                verbose: AtomicBool::new(false),
                epoch: Instant::now(),
                addr: OnceLock::new(),
            }),
        }
    }

    /// Binds (use "127.0.0.1:0" for a free port), spawns the accept loop on the current
    /// tokio runtime, returns the bound address.
    pub async fn start(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let _ = self.shared.addr.set(bound);
        tokio::spawn(server::accept_loop(listener, self.shared.clone()));
        Ok(bound)
    }

    /// `http://ADDR` of the first started listener (the value for
    /// `AWS_ENDPOINT_URL_IMAGEBUILDER`), or `None` before [`Emulator::start`].
    pub fn endpoint_url(&self) -> Option<String> {
        self.shared.addr.get().map(|a| format!("http://{a}"))
    }

    /// Adds (or replaces) images; a seeded ARN exists even if it was deleted before.
    pub fn seed(&self, images: impl IntoIterator<Item = SeedImage>) {
        let mut inner = self.shared.lock();
        for img in images {
            inner.deleted.remove(&img.arn);
            inner.images.insert(
                img.arn,
                ImageRecord {
                    status: img.state,
                    tags: img.tags,
                    output_resources: img.output_resources,
                },
            );
        }
    }

    /// Removes every image and forgets implicit-mode deletions.
    pub fn clear_images(&self) {
        let mut inner = self.shared.lock();
        inner.images.clear();
        inner.deleted.clear();
    }

    /// Replaces the fault settings (rates are clamped to 0..=1). The rate limiter restarts
    /// with a full bucket when `max_rps` changes.
    pub fn set_faults(&self, faults: Faults) {
        let faults = sanitize(faults);
        let mut inner = self.shared.lock();
        if inner.faults.max_rps != faults.max_rps {
            inner.bucket = faults.max_rps.map(TokenBucket::new);
        }
        inner.faults = faults;
    }

    /// The current fault settings.
    pub fn faults(&self) -> Faults {
        self.shared.lock().faults.clone()
    }

    /// Scripts the next DeleteImage answers for `arn` (replacing any earlier script); once
    /// the steps are used up, normal behaviour resumes.
    pub fn script(&self, arn: &str, steps: Vec<Step>) {
        self.script_op("DeleteImage", arn, steps);
    }

    /// Like [`Emulator::script`] for any operation (`DeleteImage`, `GetImage`,
    /// `ListImageBuildVersions` — for the last, `arn` is the image version ARN).
    pub fn script_op(&self, operation: &str, arn: &str, steps: Vec<Step>) {
        let key = (operation.to_string(), arn.to_string());
        let mut inner = self.shared.lock();
        if steps.is_empty() {
            inner.scripts.remove(&key);
        } else {
            inner.scripts.insert(key, steps.into());
        }
    }

    /// Drops every pending script.
    pub fn clear_scripts(&self) {
        self.shared.lock().scripts.clear();
    }

    /// Every recorded call since creation or the last [`Emulator::reset_stats`], in
    /// completion order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// The highest number of Image Builder API requests in flight at once (high-water mark).
    pub fn max_concurrency(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Image Builder API requests in flight right now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Whether DeleteImage/GetImage would find `arn` now.
    pub fn image_exists(&self, arn: &str) -> bool {
        self.shared.lock().exists(arn)
    }

    /// Explicitly seeded ARNs that still exist (implicit images are not listed), sorted.
    pub fn images(&self) -> Vec<String> {
        self.shared.lock().images.keys().cloned().collect()
    }

    /// Clears the call log and restarts the concurrency high-water mark from the requests
    /// in flight now.
    pub fn reset_stats(&self) {
        let mut inner = self.shared.lock();
        inner.calls.clear();
        let now = self.shared.in_flight.load(Ordering::SeqCst);
        self.shared.max_in_flight.store(now, Ordering::SeqCst);
    }

    /// Logs every call to stderr when true.
    pub fn set_verbose(&self, verbose: bool) {
        self.shared.verbose.store(verbose, Ordering::Relaxed);
    }

    /// Summary used by `GET /_emulator/stats`:
    /// `{"maxConcurrency", "inFlight", "calls", "byStatus", "byErrorCode", "byOperation"}`.
    pub fn stats(&self) -> serde_json::Value {
        let inner = self.shared.lock();
        let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_code: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_op: BTreeMap<String, u64> = BTreeMap::new();
        for call in &inner.calls {
            *by_status.entry(call.status.to_string()).or_default() += 1;
            *by_op.entry(call.operation.clone()).or_default() += 1;
            if let Some(code) = &call.error_code {
                *by_code.entry(code.clone()).or_default() += 1;
            }
        }
        serde_json::json!({
            "maxConcurrency": self.max_concurrency(),
            "inFlight": self.in_flight(),
            "calls": inner.calls.len(),
            "byStatus": by_status,
            "byErrorCode": by_code,
            "byOperation": by_op,
        })
    }
}

impl Inner {
    fn exists(&self, arn: &str) -> bool {
        self.images.contains_key(arn)
            || (self.faults.implicit_images
                && !self.deleted.contains(arn)
                && model::parse_build_version_arn(arn).is_some())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave Inner half-updated in a way that
        // matters to a test double, so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn elapsed_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(crate) fn verbose(&self) -> bool {
        self.verbose.load(Ordering::Relaxed)
    }

    /// Marks a request in flight until the guard drops (also when the connection dies
    /// mid-request and hyper drops the handler future).
    pub(crate) fn enter(self: &Arc<Self>) -> InFlightGuard {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    /// Scripts first (deterministic), then the rate limit, then random throttling and 5xx.
    /// Also returns the latency to inject.
    pub(crate) fn decide(&self, operation: &str, arn: Option<&str>) -> (Decision, Duration) {
        let mut inner = self.lock();
        let delay = latency_of(&inner.faults);
        if let Some(arn) = arn {
            let key = (operation.to_string(), arn.to_string());
            if let Some(queue) = inner.scripts.get_mut(&key) {
                let step = queue.pop_front();
                if queue.is_empty() {
                    inner.scripts.remove(&key);
                }
                match step {
                    Some(Step::Ok) => return (Decision::Normal, delay),
                    Some(Step::Error(code)) => return (Decision::Fail(code), delay),
                    None => {}
                }
            }
        }
        if let Some(bucket) = inner.bucket.as_mut() {
            if !bucket.try_take() {
                return (
                    Decision::Fail("CallRateLimitExceededException".into()),
                    delay,
                );
            }
        }
        let f = &inner.faults;
        if f.throttle_rate > 0.0 && fastrand::f64() < f.throttle_rate {
            return (
                Decision::Fail("CallRateLimitExceededException".into()),
                delay,
            );
        }
        if f.error_rate > 0.0 && fastrand::f64() < f.error_rate {
            let code = if fastrand::bool() {
                "ServiceException"
            } else {
                "ServiceUnavailableException"
            };
            return (Decision::Fail(code.into()), delay);
        }
        (Decision::Normal, delay)
    }

    /// Latency to inject into an answer that fault injection does not decide (e.g. 403).
    pub(crate) fn latency(&self) -> Duration {
        latency_of(&self.lock().faults)
    }

    /// DeleteImage against the state: true if the image existed (and is now gone).
    pub(crate) fn delete_image(&self, arn: &str) -> bool {
        let mut inner = self.lock();
        if !inner.exists(arn) {
            return false;
        }
        inner.images.remove(arn);
        // Remembered in either mode, so that switching implicit mode on later keeps it gone.
        inner.deleted.insert(arn.to_string());
        true
    }

    /// GetImage against the state.
    pub(crate) fn get_image(&self, arn: &str) -> Option<ImageRecord> {
        let inner = self.lock();
        if let Some(rec) = inner.images.get(arn) {
            Some(rec.clone())
        } else if inner.exists(arn) {
            Some(ImageRecord::default())
        } else {
            None
        }
    }

    /// Seeded build versions under an image version ARN, sorted.
    pub(crate) fn list_build_versions(&self, version_arn: &str) -> Vec<(String, ImageRecord)> {
        let prefix = format!("{version_arn}/");
        let inner = self.lock();
        inner
            .images
            .range(prefix.clone()..)
            .take_while(|(arn, _)| arn.starts_with(&prefix))
            .filter(|(arn, _)| model::parse_build_version_arn(arn).is_some())
            .map(|(arn, rec)| (arn.clone(), rec.clone()))
            .collect()
    }

    pub(crate) fn record(&self, call: Call) {
        if self.verbose() {
            eprintln!(
                "{} {} {} arn={} region={} {}",
                call.at_ms,
                call.operation,
                call.status,
                call.arn.as_deref().unwrap_or("-"),
                call.region.as_deref().unwrap_or("-"),
                call.error_code.as_deref().unwrap_or(""),
            );
        }
        self.lock().calls.push(call);
    }

    pub(crate) fn emulator(self: &Arc<Self>) -> Emulator {
        Emulator {
            shared: self.clone(),
        }
    }
}

/// Fixed latency plus uniform jitter.
fn latency_of(f: &Faults) -> Duration {
    let jitter = if f.jitter_ms > 0 {
        fastrand::u64(0..=f.jitter_ms)
    } else {
        0
    };
    Duration::from_millis(f.latency_ms.saturating_add(jitter))
}

/// Decrements the in-flight count on drop.
pub(crate) struct InFlightGuard(Arc<Shared>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
