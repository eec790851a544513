//! The one retry loop, its backoff and the deadline windows it respects.
//!
//! Every call the function makes (DeleteImage, GetImage, the EC2/ECR cleanup calls, the
//! dead-letter sends) goes through [`with_retries`]. The SDK's own retry is disabled because
//! attempts must be counted per ARN, the Lambda deadline must be respected, and 429
//! `CallRateLimitExceededException` is not in the SDK's throttling list. This module sits
//! below the engine, the dead-letter sender and the output-resource cleanup, which all use it.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::ports::{CallError, ErrorClass};

/// Full-jitter exponential backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Upper bound of the first delay.
    pub base: Duration,
    /// No delay is ever longer than this.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        }
    }
}

/// How many attempts and how long to wait between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff: Backoff,
}

/// When attempts may start and when any call in flight is abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// No attempt (and no backoff sleep) starts or ends after this.
    pub start_by: Instant,
    /// A call still in flight at this instant is abandoned (retryable `Timeout`).
    pub finish_by: Instant,
}

/// The three instants derived from the Lambda deadline and `DEADLINE_MARGIN_MS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// `deadline − margin`: no image call or retry starts after this.
    pub start_by: Instant,
    /// `deadline − margin/2`: image calls still in flight are abandoned (retryable).
    pub calls_by: Instant,
    /// `deadline − margin/4`: dead-letter sends are abandoned; the last quarter of the
    /// margin is left for building and returning the report.
    pub dead_letters_by: Instant,
}

impl Deadlines {
    pub fn new(deadline: Instant, margin: Duration) -> Self {
        let before = |d: Duration| deadline.checked_sub(d).unwrap_or(deadline);
        Deadlines {
            start_by: before(margin),
            calls_by: before(margin / 2),
            dead_letters_by: before(margin / 4),
        }
    }

    /// The window of image calls (Image Builder, EC2, ECR).
    pub fn calls(&self) -> Window {
        Window {
            start_by: self.start_by,
            finish_by: self.calls_by,
        }
    }

    /// The window of dead-letter sends.
    pub fn dead_letters(&self) -> Window {
        Window {
            start_by: self.dead_letters_by,
            finish_by: self.dead_letters_by,
        }
    }
}

/// The result of [`with_retries`].
#[derive(Debug, Clone, PartialEq)]
pub enum Attempted<T> {
    Done {
        value: T,
        attempts: u32,
        latencies: Vec<Duration>,
    },
    /// Non-retryable error, retries exhausted, or the deadline stopped further attempts.
    Failed {
        error: CallError,
        attempts: u32,
        latencies: Vec<Duration>,
        stopped_by_deadline: bool,
    },
    /// The window closed before the first attempt.
    NotStarted,
}

impl<T> Attempted<T> {
    /// The duration of every attempt made.
    pub fn latencies(&self) -> &[Duration] {
        match self {
            Attempted::Done { latencies, .. } | Attempted::Failed { latencies, .. } => latencies,
            Attempted::NotStarted => &[],
        }
    }
}

/// Full-jitter exponential backoff: a delay uniformly drawn from
/// `[0, min(cap, base × 2^(attempt−1))]`; `unit` is the random draw in `[0, 1)`.
pub fn backoff_delay(backoff: &Backoff, attempt: u32, unit: f64) -> Duration {
    let exp = backoff
        .base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    exp.min(backoff.cap).mul_f64(unit.clamp(0.0, 1.0))
}

/// Calls `call` until it succeeds, fails for good, runs out of attempts or the window
/// closes. Only [`ErrorClass::Retryable`] errors are retried.
pub async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    window: Window,
    mut call: F,
) -> Attempted<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut attempts = 0;
    let mut latencies = Vec::new();
    loop {
        if Instant::now() >= window.start_by {
            return Attempted::NotStarted;
        }
        attempts += 1;
        let started = Instant::now();
        let result = match tokio::time::timeout_at(window.finish_by, call()).await {
            Ok(r) => r,
            Err(_) => Err(CallError::retryable(
                "Timeout",
                "no response before the Lambda deadline margin; the call was abandoned",
            )),
        };
        latencies.push(started.elapsed());
        let error = match result {
            Ok(value) => {
                return Attempted::Done {
                    value,
                    attempts,
                    latencies,
                }
            }
            Err(e) => e,
        };
        let failed = |stopped_by_deadline, error, latencies| Attempted::Failed {
            error,
            attempts,
            latencies,
            stopped_by_deadline,
        };
        if error.class != ErrorClass::Retryable || attempts >= policy.max_attempts {
            return failed(false, error, latencies);
        }
        let delay = backoff_delay(&policy.backoff, attempts, fastrand::f64());
        // A backoff sleep never crosses the point after which no attempt may start.
        if Instant::now() + delay >= window.start_by {
            return failed(true, error, latencies);
        }
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_exponential_and_capped() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        };
        assert_eq!(backoff_delay(&b, 1, 0.999_999).as_millis(), 99);
        assert_eq!(backoff_delay(&b, 3, 0.5), Duration::from_millis(200));
        assert_eq!(backoff_delay(&b, 10, 1.0), Duration::from_secs(5));
        assert_eq!(backoff_delay(&b, 60, 1.0), Duration::from_secs(5));
        assert_eq!(backoff_delay(&b, 4, 0.0), Duration::ZERO);
    }

    #[test]
    fn deadlines_split_the_margin() {
        // GIVEN a deadline 10 s away and a 4 s margin
        let now = Instant::now();
        let d = Deadlines::new(now + Duration::from_secs(10), Duration::from_secs(4));
        // THEN calls start until 6 s, are abandoned at 8 s, dead letters stop at 9 s
        assert_eq!(d.start_by, now + Duration::from_secs(6));
        assert_eq!(d.calls_by, now + Duration::from_secs(8));
        assert_eq!(d.dead_letters_by, now + Duration::from_secs(9));
        assert_eq!(d.dead_letters().start_by, d.dead_letters().finish_by);
    }

    fn window(ms: u64) -> Window {
        let end = Instant::now() + Duration::from_millis(ms);
        Window {
            start_by: end,
            finish_by: end,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_errors_are_retried_up_to_max_attempts_and_no_further() {
        let policy = RetryPolicy {
            max_attempts: 4,
            backoff: Backoff::default(),
        };
        let mut calls = 0;
        let r: Attempted<()> = with_retries(&policy, window(600_000), || {
            calls += 1;
            async { Err(CallError::retryable("ServiceException", "boom")) }
        })
        .await;
        assert_eq!(calls, 4);
        assert!(matches!(
            r,
            Attempted::Failed {
                attempts: 4,
                stopped_by_deadline: false,
                ..
            }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_and_not_found_errors_are_not_retried() {
        let policy = RetryPolicy {
            max_attempts: 5,
            backoff: Backoff::default(),
        };
        for class in [ErrorClass::Permanent, ErrorClass::NotFound] {
            let mut calls = 0;
            let _: Attempted<()> = with_retries(&policy, window(600_000), || {
                calls += 1;
                async move { Err(CallError::new(class, "X", "x")) }
            })
            .await;
            assert_eq!(calls, 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_attempt_starts_after_the_window_and_sleeps_never_cross_it() {
        let policy = RetryPolicy {
            max_attempts: 20,
            backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(1),
            },
        };
        let w = window(3_000);
        let r: Attempted<()> = with_retries(&policy, w, || async {
            Err(CallError::retryable("ServiceException", "boom"))
        })
        .await;
        assert!(Instant::now() < w.start_by);
        assert!(matches!(
            r,
            Attempted::Failed {
                stopped_by_deadline: true,
                ..
            }
        ));
        let r: Attempted<()> = with_retries(&policy, window(0), || async { Ok(()) }).await;
        assert_eq!(r, Attempted::NotStarted);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_still_running_at_the_finish_line_is_abandoned_as_retryable() {
        let policy = RetryPolicy {
            max_attempts: 1,
            backoff: Backoff::default(),
        };
        let r: Attempted<()> = with_retries(&policy, window(1_000), || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        })
        .await;
        match r {
            Attempted::Failed { error, .. } => {
                assert_eq!(error.class, ErrorClass::Retryable);
                assert_eq!(error.code, "Timeout");
            }
            other => panic!("{other:?}"),
        }
    }
}
