//! The one retry loop, its backoff and the deadline windows it respects.
//!
//! Every call the function makes (DeleteImage, GetImage, the EC2/ECR cleanup calls, the
//! dead-letter sends) goes through [`with_retries`]. The SDK's own retry is disabled because
//! attempts must be counted per ARN, the Lambda deadline must be respected, and 429
//! `CallRateLimitExceededException` is not in the SDK's throttling list. This module sits
//! below the engine, the dead-letter sender and the output-resource cleanup, which all use it.
//! A throttled call is not an attempt: the rate limiter around the port paces the next one,
//! and only the deadline bounds how long an ARN keeps trying.

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

/// SendMessageBatch calls in flight when dead-lettering: SQS takes far more than the image
/// APIs, and a deadline backlog must drain fast.
pub const DEAD_LETTER_CALLS_IN_FLIGHT: usize = 32;
/// A generous SendMessageBatch round trip, for reserving time for the dead letters.
pub const DEAD_LETTER_ROUND_TRIP: Duration = Duration::from_millis(100);
/// Entries per SendMessageBatch.
const DEAD_LETTERS_PER_CALL: usize = 10;

/// The time `backlog` items may need to be dead-lettered, should none of them be decided:
/// rounds of [`DEAD_LETTER_CALLS_IN_FLIGHT`] batches of ten, one generous round trip each.
pub fn dead_letter_reserve(backlog: usize) -> Duration {
    let per_round = DEAD_LETTER_CALLS_IN_FLIGHT * DEAD_LETTERS_PER_CALL;
    DEAD_LETTER_ROUND_TRIP * backlog.div_ceil(per_round) as u32
}

/// The three instants derived from the Lambda deadline, `DEADLINE_MARGIN_MS` and the
/// backlog that may have to be dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// `deadline − margin − reserve(backlog)`: no image call or retry starts after this, so
    /// whatever is still undecided can be dead-lettered in time, however many items it is.
    pub start_by: Instant,
    /// `deadline − margin/2`: image calls still in flight are abandoned (retryable).
    pub calls_by: Instant,
    /// `deadline − margin/4`: dead-letter sends are abandoned; the last quarter of the
    /// margin is left for building and returning the report.
    pub dead_letters_by: Instant,
}

impl Deadlines {
    pub fn new(deadline: Instant, margin: Duration, backlog: usize) -> Self {
        let before = |d: Duration| deadline.checked_sub(d).unwrap_or(deadline);
        Deadlines {
            start_by: before(margin + dead_letter_reserve(backlog)),
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

/// The result of [`with_retries`]. `throttled` counts the throttled calls, which are not
/// attempts.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempted<T> {
    Done {
        value: T,
        attempts: u32,
        throttled: u32,
        latencies: Vec<Duration>,
    },
    /// Non-retryable error, retries exhausted, or the deadline stopped further attempts.
    Failed {
        error: CallError,
        attempts: u32,
        throttled: u32,
        latencies: Vec<Duration>,
        stopped_by_deadline: bool,
    },
    /// The window closed before the first attempt: nothing was tried, or every call made
    /// was throttled.
    NotStarted { throttled: u32 },
}

impl<T> Attempted<T> {
    /// The duration of every call made, throttled ones included.
    pub fn latencies(&self) -> &[Duration] {
        match self {
            Attempted::Done { latencies, .. } | Attempted::Failed { latencies, .. } => latencies,
            Attempted::NotStarted { .. } => &[],
        }
    }

    /// Calls the service refused for rate.
    pub fn throttled(&self) -> u32 {
        match self {
            Attempted::Done { throttled, .. }
            | Attempted::Failed { throttled, .. }
            | Attempted::NotStarted { throttled } => *throttled,
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

/// The pause after a throttled call. The rate limiter a port is wrapped in does the pacing
/// (the next call waits for its permit); this only keeps a caller without one from spinning:
/// a few milliseconds after the first throttles, growing with consecutive ones.
pub const THROTTLE_PAUSE: Backoff = Backoff {
    base: Duration::from_millis(2),
    cap: Duration::from_millis(500),
};

/// Calls `call` until it succeeds, fails for good, runs out of attempts or the window
/// closes. Retryable errors are retried up to `max_attempts` attempts; throttled calls are
/// not attempts and are retried for as long as the window allows.
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
    let mut throttled = 0;
    let mut streak = 0;
    let mut latencies = Vec::new();
    let mut last_error = None;
    loop {
        if Instant::now() >= window.start_by {
            return stopped(attempts, throttled, latencies, last_error);
        }
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
                    attempts: attempts + 1,
                    throttled,
                    latencies,
                }
            }
            Err(e) => e,
        };
        let delay = if error.class == ErrorClass::Throttled {
            throttled += 1;
            streak += 1;
            backoff_delay(&THROTTLE_PAUSE, streak, fastrand::f64())
        } else {
            attempts += 1;
            streak = 0;
            if error.class != ErrorClass::Retryable || attempts >= policy.max_attempts {
                return Attempted::Failed {
                    error,
                    attempts,
                    throttled,
                    latencies,
                    stopped_by_deadline: false,
                };
            }
            backoff_delay(&policy.backoff, attempts, fastrand::f64())
        };
        last_error = Some(error);
        // A pause never crosses the point after which no attempt may start.
        if Instant::now() + delay >= window.start_by {
            return stopped(attempts, throttled, latencies, last_error);
        }
        tokio::time::sleep(delay).await;
    }
}

/// The window closed: not started if no call got past throttling, else failed with the last
/// error, stopped by the deadline.
fn stopped<T>(
    attempts: u32,
    throttled: u32,
    latencies: Vec<Duration>,
    last_error: Option<CallError>,
) -> Attempted<T> {
    match last_error {
        Some(error) if attempts > 0 => Attempted::Failed {
            error,
            attempts,
            throttled,
            latencies,
            stopped_by_deadline: true,
        },
        _ => Attempted::NotStarted { throttled },
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
        let d = Deadlines::new(now + Duration::from_secs(10), Duration::from_secs(4), 1);
        // THEN calls start until 6 s less one dead-letter round trip, are abandoned at 8 s,
        // dead letters stop at 9 s
        assert_eq!(d.start_by, now + Duration::from_millis(5_900));
        assert_eq!(d.calls_by, now + Duration::from_secs(8));
        assert_eq!(d.dead_letters_by, now + Duration::from_secs(9));
        assert_eq!(d.dead_letters().start_by, d.dead_letters().finish_by);
    }

    #[test]
    fn the_reserve_grows_with_the_backlog() {
        // GIVEN backlogs of 0, one round (320 items) and 5,000 items
        // THEN nothing, one round trip, and 16 round trips are reserved
        assert_eq!(dead_letter_reserve(0), Duration::ZERO);
        assert_eq!(dead_letter_reserve(320), DEAD_LETTER_ROUND_TRIP);
        assert_eq!(dead_letter_reserve(321), DEAD_LETTER_ROUND_TRIP * 2);
        assert_eq!(dead_letter_reserve(5_000), DEAD_LETTER_ROUND_TRIP * 16);
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
        assert_eq!(r, Attempted::NotStarted { throttled: 0 });
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_calls_are_not_attempts_and_are_retried_until_an_answer() {
        // GIVEN MAX_ATTEMPTS=2 and a call throttled 50 times, then failing once, then fine
        let policy = RetryPolicy {
            max_attempts: 2,
            backoff: Backoff::default(),
        };
        let mut calls = 0;
        // WHEN it runs through the retry loop
        let r: Attempted<u32> = with_retries(&policy, window(600_000), || {
            calls += 1;
            let n = calls;
            async move {
                match n {
                    1..=50 => Err(CallError::throttled(
                        "CallRateLimitExceededException",
                        "429",
                    )),
                    51 => Err(CallError::retryable("ServiceException", "500")),
                    _ => Ok(n),
                }
            }
        })
        .await;
        // THEN it succeeds on its second attempt, the 50 throttles counted apart
        match r {
            Attempted::Done {
                value,
                attempts,
                throttled,
                latencies,
            } => {
                assert_eq!((value, attempts, throttled), (52, 2, 50));
                assert_eq!(latencies.len(), 52);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_throttled_until_the_window_closes_is_not_started() {
        // GIVEN a call throttled for ever
        let policy = RetryPolicy {
            max_attempts: 1,
            backoff: Backoff::default(),
        };
        let w = window(5_000);
        // WHEN the window closes
        let r: Attempted<()> = with_retries(&policy, w, || async {
            Err(CallError::throttled("Throttling", "slow down"))
        })
        .await;
        // THEN no attempt counted: not started, with every throttle counted, before the end
        assert!(Instant::now() < w.start_by);
        match r {
            Attempted::NotStarted { throttled } => assert!(throttled > 10, "{throttled}"),
            other => panic!("{other:?}"),
        }
        // AND after a real attempt (of 3 allowed) it is a failure stopped by the deadline
        let policy = RetryPolicy {
            max_attempts: 3,
            ..policy
        };
        let mut calls = 0;
        let r: Attempted<()> = with_retries(&policy, window(5_000), || {
            calls += 1;
            let first = calls == 1;
            async move {
                if first {
                    Err(CallError::retryable("ServiceException", "500"))
                } else {
                    Err(CallError::throttled("Throttling", "slow down"))
                }
            }
        })
        .await;
        assert!(matches!(
            r,
            Attempted::Failed {
                attempts: 1,
                stopped_by_deadline: true,
                ..
            }
        ));
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
