//! The emulator's shared state ([`Shared`]): images, scripts, fault settings and their rate
//! buckets, the call log, and the per-call fault decision. Also the public data types that
//! go into and come out of it ([`SeedImage`], [`Step`], [`Call`]). Builds on `model` and
//! `faults`; the HTTP layer and the public facade build on this module, never the reverse.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::faults::{self, Faults, RateLimit, TokenBucket};
use crate::model::{self, Filter, ImageRecord, SortKey};

/// An image to seed into the emulator.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SeedImage {
    /// The image build-version ARN. An ARN that does not match the model's
    /// `ImageBuildVersionArn` pattern is stored but can never be addressed, since the API
    /// rejects such ARNs with `InvalidRequestException` (as the service does).
    pub arn: String,
    /// `state.status` reported by GetImage and the lists (default `AVAILABLE`).
    pub state: Option<String>,
    /// Tags reported by GetImage and ListImageBuildVersions.
    pub tags: BTreeMap<String, String>,
    /// `outputResources` reported by GetImage, verbatim; default: one AMI in the ARN's region.
    pub output_resources: Option<serde_json::Value>,
    /// `dateCreated` as the service returns it (`2026-11-01T10:00:00.000Z`), verbatim;
    /// default [`model::DEFAULT_DATE_CREATED`].
    pub date_created: Option<String>,
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

/// Script key matching any ARN (and calls that name none, like an unfiltered list).
pub const ANY_ARN: &str = "*";

/// One recorded Image Builder API call.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    /// `DeleteImage`, `GetImage`, `ListImages`, `ListImageBuildVersions`, or the request
    /// path of an unknown operation.
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

/// What fault injection decided for one call, before the state is consulted.
pub(crate) enum Decision {
    /// Answer from the state (DeleteImage deletes, GetImage reads, …).
    Normal,
    /// Answer with this error code.
    Fail(String),
}

/// A list request as the state sees it once parsed and validated.
pub(crate) struct ListQuery {
    /// Signing region: the service is regional, so only that region's images are listed.
    pub region: String,
    /// ListImageBuildVersions: only the builds of this exact image version.
    pub version_arn: Option<String>,
    /// ListImages: `owner` (one of [`model::OWNERSHIP`]).
    pub owner: Option<String>,
    pub filters: Vec<Filter>,
    /// ListImages: one entry per image name (its newest version).
    pub by_name: bool,
    /// Resume after this ARN (decoded `nextToken`).
    pub after: Option<String>,
    /// `maxResults`.
    pub limit: usize,
}

/// One page of a list: the items and, when more follow, the ARN to resume after.
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    pub last: Option<String>,
}

/// Mutable state behind one lock: every operation touches it briefly and never across an
/// await, so a std mutex is cheaper than an async one.
struct Inner {
    faults: Faults,
    bucket: Option<TokenBucket>,
    op_buckets: HashMap<String, TokenBucket>,
    images: BTreeMap<String, ImageRecord>,
    /// ARNs deleted while in implicit mode (they stop existing).
    deleted: HashSet<String>,
    scripts: HashMap<(String, String), VecDeque<Step>>,
    calls: Vec<Call>,
}

/// Everything one emulator instance shares between its listeners, handlers and facade.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    verbose: AtomicBool,
    epoch: Instant,
    pub(crate) addr: OnceLock<SocketAddr>,
}

impl Inner {
    fn exists(&self, arn: &str) -> bool {
        self.images.contains_key(arn)
            || (self.faults.implicit_images
                && !self.deleted.contains(arn)
                && model::parse_build_version_arn(arn).is_some())
    }

    /// Pops the next scripted step for (operation, ARN), falling back to the wildcard
    /// script of the operation.
    fn next_step(&mut self, operation: &str, arn: Option<&str>) -> Option<Step> {
        let keys = arn
            .into_iter()
            .chain(std::iter::once(ANY_ARN))
            .map(|a| (operation.to_string(), a.to_string()));
        for key in keys {
            if let Some(queue) = self.scripts.get_mut(&key) {
                let step = queue.pop_front();
                if queue.is_empty() {
                    self.scripts.remove(&key);
                }
                if step.is_some() {
                    return step;
                }
            }
        }
        None
    }

    /// Whether the global and the operation's buckets both grant the call.
    fn within_rate_limits(&mut self, operation: &str) -> bool {
        if let Some(bucket) = self.bucket.as_mut() {
            if !bucket.try_take() {
                return false;
            }
        }
        self.op_buckets
            .get_mut(operation)
            .is_none_or(TokenBucket::try_take)
    }
}

impl Shared {
    pub(crate) fn new(faults: Faults) -> Self {
        let faults = faults::sanitize(faults);
        Shared {
            inner: Mutex::new(Inner {
                bucket: faults
                    .max_rps
                    .map(|r| TokenBucket::new(RateLimit::per_second(r))),
                op_buckets: buckets_for(&faults.rate_limits),
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
        }
    }

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

    pub(crate) fn set_verbose(&self, verbose: bool) {
        self.verbose.store(verbose, Ordering::Relaxed);
    }

    /// Marks a request in flight until the guard drops (also when the connection dies
    /// mid-request and hyper drops the handler future).
    pub(crate) fn enter(self: &Arc<Self>) -> InFlightGuard {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn max_concurrency(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// Scripts first (deterministic), then the rate limits (global, then per operation),
    /// then random throttling and 5xx. Also returns the latency to inject. Every operation,
    /// listing included, goes through here.
    pub(crate) fn decide(&self, operation: &str, arn: Option<&str>) -> (Decision, Duration) {
        let mut inner = self.lock();
        let delay = faults::latency_of(&inner.faults);
        match inner.next_step(operation, arn) {
            Some(Step::Ok) => return (Decision::Normal, delay),
            Some(Step::Error(code)) => return (Decision::Fail(code), delay),
            None => {}
        }
        let throttled = Decision::Fail("CallRateLimitExceededException".into());
        if !inner.within_rate_limits(operation) {
            return (throttled, delay);
        }
        let f = &inner.faults;
        if f.throttle_rate > 0.0 && fastrand::f64() < f.throttle_rate {
            return (throttled, delay);
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
        faults::latency_of(&self.lock().faults)
    }

    /// The current fault settings.
    pub(crate) fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Replaces the fault settings. A bucket restarts full only when its own limit changed,
    /// so re-posting the same settings does not hand out a fresh burst.
    pub(crate) fn set_faults(&self, faults: Faults) {
        let faults = faults::sanitize(faults);
        let mut inner = self.lock();
        if inner.faults.max_rps != faults.max_rps {
            inner.bucket = faults
                .max_rps
                .map(|r| TokenBucket::new(RateLimit::per_second(r)));
        }
        let mut old = std::mem::take(&mut inner.op_buckets);
        for (op, limit) in &faults.rate_limits {
            let bucket = match old.remove(op) {
                Some(b) if inner.faults.rate_limits.get(op) == Some(limit) => b,
                _ => TokenBucket::new(*limit),
            };
            inner.op_buckets.insert(op.clone(), bucket);
        }
        inner.faults = faults;
    }

    /// Adds (or replaces) images; a seeded ARN exists even if it was deleted before.
    pub(crate) fn seed(&self, images: impl IntoIterator<Item = SeedImage>) -> usize {
        let mut inner = self.lock();
        let mut n = 0;
        for img in images {
            inner.deleted.remove(&img.arn);
            inner.images.insert(
                img.arn,
                ImageRecord {
                    status: img.state,
                    tags: img.tags,
                    output_resources: img.output_resources,
                    date_created: img.date_created,
                },
            );
            n += 1;
        }
        n
    }

    /// Removes every image and forgets implicit-mode deletions.
    pub(crate) fn clear_images(&self) {
        let mut inner = self.lock();
        inner.images.clear();
        inner.deleted.clear();
    }

    /// Explicitly seeded ARNs that still exist, sorted.
    pub(crate) fn image_arns(&self) -> Vec<String> {
        self.lock().images.keys().cloned().collect()
    }

    pub(crate) fn image_exists(&self, arn: &str) -> bool {
        self.lock().exists(arn)
    }

    /// Sets (or, with no steps, removes) the script of (operation, ARN).
    pub(crate) fn script(&self, operation: &str, arn: &str, steps: Vec<Step>) {
        let key = (operation.to_string(), arn.to_string());
        let mut inner = self.lock();
        if steps.is_empty() {
            inner.scripts.remove(&key);
        } else {
            inner.scripts.insert(key, steps.into());
        }
    }

    pub(crate) fn clear_scripts(&self) {
        self.lock().scripts.clear();
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

    /// ListImageBuildVersions against the state: seeded build versions (implicit images are
    /// not listed) of the query's exact version, or of its region when it names none.
    pub(crate) fn list_build_versions(&self, q: &ListQuery) -> Page<(String, ImageRecord)> {
        let inner = self.lock();
        // A version's builds share the prefix `…/name/x.y.z/`: a range of the ARN-ordered map,
        // so a listing per version does not walk every image of the account.
        let prefix = q.version_arn.as_ref().map(|v| format!("{v}/"));
        let scope: Box<dyn Iterator<Item = (&String, &ImageRecord)>> = match &prefix {
            Some(p) => Box::new(
                inner
                    .images
                    .range::<String, _>(p.clone()..)
                    .take_while(|(arn, _)| arn.starts_with(p.as_str())),
            ),
            None => Box::new(inner.images.iter()),
        };
        let mut rows: Vec<(SortKey, &String, &ImageRecord)> = scope
            .filter_map(|(arn, rec)| {
                let parsed = model::parse_build_version_arn(arn)?;
                let in_scope = match &q.version_arn {
                    Some(v) => model::version_arn_of(arn) == v,
                    None => parsed.region == q.region,
                };
                (in_scope && model::filters_match(&q.filters, &parsed, Some(parsed.build)))
                    .then(|| (parsed.sort_key(), arn, rec))
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        // Only the page's own rows are cloned.
        let rows = rows.into_iter().map(|(k, a, r)| (k, (a, r)));
        let page = paginate(rows, q, |arn| {
            model::parse_build_version_arn(arn).map(|p| p.sort_key())
        });
        Page {
            items: page
                .items
                .into_iter()
                .map(|(a, r)| (a.clone(), r.clone()))
                .collect(),
            last: page.last,
        }
    }

    /// ListImages against the state: one `(version ARN, earliest dateCreated)` per image
    /// version with a seeded build in the query's region, owner and filters; with `by_name`,
    /// only the newest version of each name.
    pub(crate) fn list_image_versions(&self, q: &ListQuery) -> Page<(String, String)> {
        let inner = self.lock();
        let owner = q.owner.as_deref().unwrap_or("Self");
        // The map is in ARN order, so a version's builds are adjacent: one entry (and its
        // allocations) per version, not per build.
        let mut runs: Vec<(&str, &str, SortKey)> = Vec::new();
        for (arn, rec) in &inner.images {
            let version_arn = model::version_arn_of(arn);
            let date = rec.date_created();
            if let Some(run) = runs.last_mut().filter(|r| r.0 == version_arn) {
                run.1 = run.1.min(date);
                continue;
            }
            let Some(parsed) = model::parse_build_version_arn(arn) else {
                continue;
            };
            if parsed.region != q.region
                || model::owner_of(parsed.account) != owner
                || !model::filters_match(&q.filters, &parsed, None)
            {
                continue;
            }
            let mut key = parsed.sort_key();
            key.4 = 0; // one entry per version, whatever the build
            runs.push((version_arn, date, key));
        }
        let versions: BTreeMap<SortKey, (String, String)> = runs
            .into_iter()
            .map(|(v, d, k)| (k, (v.to_string(), d.to_string())))
            .collect();
        let rows: Vec<(SortKey, (String, String))> = if q.by_name {
            newest_per_name(versions)
        } else {
            versions.into_iter().collect()
        };
        paginate(rows.into_iter(), q, |arn| {
            let as_build = format!("{arn}/1");
            let parsed = model::parse_build_version_arn(&as_build)?;
            Some(version_key(parsed.sort_key(), q.by_name))
        })
    }

    /// Appends a call to the log (and to stderr when verbose).
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

    pub(crate) fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Clears the call log and restarts the concurrency high-water mark from the requests
    /// in flight now.
    pub(crate) fn reset_stats(&self) {
        let mut inner = self.lock();
        inner.calls.clear();
        let now = self.in_flight.load(Ordering::SeqCst);
        self.max_in_flight.store(now, Ordering::SeqCst);
    }

    /// Calls of `operation` answered 429 `CallRateLimitExceededException` (any cause).
    pub(crate) fn throttled(&self, operation: &str) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.operation == operation && is_throttle(c))
            .count()
    }

    /// `{"maxConcurrency", "inFlight", "calls", "byStatus", "byErrorCode", "byOperation",
    /// "throttledByOperation"}`.
    pub(crate) fn stats(&self) -> serde_json::Value {
        let inner = self.lock();
        let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_code: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_op: BTreeMap<String, u64> = BTreeMap::new();
        let mut throttled: BTreeMap<String, u64> = BTreeMap::new();
        for call in &inner.calls {
            *by_status.entry(call.status.to_string()).or_default() += 1;
            *by_op.entry(call.operation.clone()).or_default() += 1;
            if let Some(code) = &call.error_code {
                *by_code.entry(code.clone()).or_default() += 1;
            }
            if is_throttle(call) {
                *throttled.entry(call.operation.clone()).or_default() += 1;
            }
        }
        serde_json::json!({
            "maxConcurrency": self.max_concurrency(),
            "inFlight": self.in_flight(),
            "calls": inner.calls.len(),
            "byStatus": by_status,
            "byErrorCode": by_code,
            "byOperation": by_op,
            "throttledByOperation": throttled,
        })
    }
}

fn is_throttle(call: &Call) -> bool {
    call.error_code.as_deref() == Some("CallRateLimitExceededException")
}

fn buckets_for(limits: &BTreeMap<String, RateLimit>) -> HashMap<String, TokenBucket> {
    limits
        .iter()
        .map(|(op, l)| (op.clone(), TokenBucket::new(*l)))
        .collect()
}

/// ListImages ordering key: the version's, or only (region, account, name) with `by_name`.
fn version_key(mut key: SortKey, by_name: bool) -> SortKey {
    key.4 = 0;
    if by_name {
        key.3 = [0; 3];
    }
    key
}

/// Keeps the highest version of each (region, account, name), keyed by name only.
fn newest_per_name(
    versions: BTreeMap<SortKey, (String, String)>,
) -> Vec<(SortKey, (String, String))> {
    let mut newest: BTreeMap<SortKey, (String, String)> = BTreeMap::new();
    // Ascending order: a later version of the same name overwrites an earlier one.
    for (key, row) in versions {
        newest.insert(version_key(key, true), row);
    }
    newest.into_iter().collect()
}

/// Cuts one page out of `rows` (sorted by key): the items after `q.after` (compared by the
/// key `key_of` derives from it), at most `q.limit` of them, and the ARN to resume after
/// when more remain.
fn paginate<T: ArnOf>(
    rows: impl Iterator<Item = (SortKey, T)>,
    q: &ListQuery,
    key_of: impl Fn(&str) -> Option<SortKey>,
) -> Page<T> {
    let after = q.after.as_deref().and_then(&key_of);
    let mut rest = rows.filter(|(k, _)| after.as_ref().is_none_or(|a| k > a));
    let items: Vec<T> = rest.by_ref().take(q.limit).map(|(_, t)| t).collect();
    let more = rest.next().is_some();
    let last = if more {
        items.last().map(|t| t.arn().to_string())
    } else {
        None
    };
    Page { items, last }
}

/// The ARN a listed item resumes from.
trait ArnOf {
    fn arn(&self) -> &str;
}

impl<R> ArnOf for (String, R) {
    fn arn(&self) -> &str {
        &self.0
    }
}

impl<R> ArnOf for (&String, R) {
    fn arn(&self) -> &str {
        self.0
    }
}

/// Decrements the in-flight count on drop.
pub(crate) struct InFlightGuard(Arc<Shared>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
