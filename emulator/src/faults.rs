//! Fault-injection settings ([`Faults`], [`RateLimit`]) and the token bucket behind the
//! request-rate limits. Plain data and arithmetic: depends on nothing else in the crate.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Fault injection settings. Every field has a neutral default (no faults).
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize, serde::Serialize)]
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
    /// Maximum accepted requests per second over all operations (token bucket, burst = one
    /// second's worth, at least 1); calls beyond it are answered 429
    /// `CallRateLimitExceededException`.
    pub max_rps: Option<f64>,
    /// Per-operation token buckets (`{"DeleteImage": {"rate": 100, "burst": 10}}`), each
    /// shared by every caller, as the service's per-account, per-operation quotas are.
    /// A call over its operation's bucket is answered 429 `CallRateLimitExceededException`.
    pub rate_limits: BTreeMap<String, RateLimit>,
    /// When true, every syntactically valid build-version ARN that was not deleted counts
    /// as an existing image (for benchmarks with many ARNs and no seeding).
    pub implicit_images: bool,
}

/// One operation's request-rate limit.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Tokens added per second (0 = the bucket never refills).
    pub rate: f64,
    /// Bucket size, and its content at start. Missing: one second's worth, at least 1.
    #[serde(default = "unset_burst")]
    pub burst: f64,
}

/// Serde default marking a burst to derive from the rate in [`sanitize`].
fn unset_burst() -> f64 {
    f64::NAN
}

impl RateLimit {
    /// `rate` per second with a burst of one second's worth (at least 1).
    pub fn per_second(rate: f64) -> Self {
        RateLimit {
            rate,
            burst: rate.max(1.0),
        }
    }
}

/// Clamps rates to 0..=1 and drops limits that cannot work (negative, infinite or NaN), so a
/// bad control-API value degrades to "no fault" instead of a panic or a stuck bucket.
pub(crate) fn sanitize(mut faults: Faults) -> Faults {
    faults.throttle_rate = clamp_rate(faults.throttle_rate);
    faults.error_rate = clamp_rate(faults.error_rate);
    faults.max_rps = faults.max_rps.filter(|r| r.is_finite() && *r > 0.0);
    faults
        .rate_limits
        .retain(|_, l| l.rate.is_finite() && l.rate >= 0.0);
    for limit in faults.rate_limits.values_mut() {
        if limit.burst.is_nan() {
            limit.burst = limit.rate.max(1.0);
        }
    }
    faults
        .rate_limits
        .retain(|_, l| l.burst.is_finite() && l.burst >= 0.0);
    faults
}

fn clamp_rate(rate: f64) -> f64 {
    if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    }
}

/// Fixed latency plus uniform jitter.
pub(crate) fn latency_of(f: &Faults) -> Duration {
    let jitter = if f.jitter_ms > 0 {
        fastrand::u64(0..=f.jitter_ms)
    } else {
        0
    };
    Duration::from_millis(f.latency_ms.saturating_add(jitter))
}

/// Token bucket: refilled continuously at `rate`, holding at most `capacity`; starts full.
pub(crate) struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(limit: RateLimit) -> Self {
        TokenBucket {
            rate: limit.rate,
            capacity: limit.burst,
            tokens: limit.burst,
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_derives_missing_bursts_and_drops_unusable_limits() {
        // GIVEN limits as they may arrive over the control API
        let faults: Faults = serde_json::from_value(serde_json::json!({
            "rateLimits": {
                "DeleteImage": {"rate": 5},
                "GetImage": {"rate": 0.5},
                "ListImages": {"rate": 0, "burst": 3},
                "Bad": {"rate": -1, "burst": 1}
            }
        }))
        .unwrap();
        // WHEN sanitized
        let f = sanitize(faults);
        // THEN a missing burst is one second's worth (at least 1), a negative rate is dropped
        assert_eq!(
            f.rate_limits["DeleteImage"],
            RateLimit {
                rate: 5.0,
                burst: 5.0
            }
        );
        assert_eq!(f.rate_limits["GetImage"].burst, 1.0);
        assert_eq!(
            f.rate_limits["ListImages"],
            RateLimit {
                rate: 0.0,
                burst: 3.0
            }
        );
        assert!(!f.rate_limits.contains_key("Bad"));
    }

    #[test]
    fn a_bucket_without_refill_grants_exactly_its_burst() {
        // GIVEN a bucket of 3 that never refills
        let mut b = TokenBucket::new(RateLimit {
            rate: 0.0,
            burst: 3.0,
        });
        // THEN exactly three takes succeed
        let granted = (0..10).filter(|_| b.try_take()).count();
        assert_eq!(granted, 3);
    }
}
