//! The rate limiters wired around the ports: the real handler over a fake Image Builder that
//! answers 429 above a simulated rate (a token bucket in tokio's paused time), with the ports
//! wrapped in [`Limited`] as the binary wraps them.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imagebuilder_reaper::arn::ImageArn;
use imagebuilder_reaper::config::Config;
use imagebuilder_reaper::handler::Handler;
use imagebuilder_reaper::limited::{CallLimits, Limited};
use imagebuilder_reaper::outcome::Status;
use imagebuilder_reaper::ports::{CallError, Deleted, ImageInfo, Images};
use imagebuilder_reaper::report::Report;
use tokio::time::Instant;

use crate::support::constants::DLQ_URL;
use crate::support::fakes::{DlqMode, FakeDlq};
use crate::support::fixtures::{arn, sqs_event};
use crate::support::harness::invocation;

/// Every DeleteImage call takes this long.
const LATENCY: Duration = Duration::from_millis(20);

/// A token bucket: `rate` calls per second, `burst` at most saved up.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

/// Image Builder with a service rate limit: a call over the rate is answered 429.
#[derive(Clone)]
struct RateLimitedImages {
    bucket: Arc<Mutex<Bucket>>,
    deleted: Arc<Mutex<HashSet<String>>>,
    calls: Arc<AtomicUsize>,
    throttled: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
}

impl RateLimitedImages {
    fn new(rate: f64, burst: f64) -> Self {
        RateLimitedImages {
            bucket: Arc::new(Mutex::new(Bucket {
                rate,
                burst,
                tokens: burst,
                at: Instant::now(),
            })),
            deleted: Arc::default(),
            calls: Arc::default(),
            throttled: Arc::default(),
            in_flight: Arc::default(),
            most_in_flight: Arc::default(),
        }
    }

    fn take_token(&self) -> bool {
        let mut b = self.bucket.lock().unwrap();
        let now = Instant::now();
        let earned = now.duration_since(b.at).as_secs_f64() * b.rate;
        b.tokens = (b.tokens + earned).min(b.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn is_deleted(&self, arn: &str) -> bool {
        self.deleted.lock().unwrap().contains(arn)
    }
}

impl Images for RateLimitedImages {
    async fn delete_image(&self, arn: &ImageArn) -> Result<Deleted, CallError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(LATENCY).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !self.take_token() {
            self.throttled.fetch_add(1, Ordering::SeqCst);
            return Err(CallError::throttled(
                "CallRateLimitExceededException",
                "Rate exceeded for DeleteImage.",
            ));
        }
        self.deleted
            .lock()
            .unwrap()
            .insert(arn.as_str().to_string());
        Ok(Deleted::default())
    }

    async fn get_image(&self, _: &ImageArn) -> Result<ImageInfo, CallError> {
        Ok(ImageInfo::default())
    }
}

/// The handler as the binary wires it: Image Builder behind one [`CallLimits`].
fn handler(
    images: &RateLimitedImages,
    max_concurrency: usize,
    max_attempts: u32,
) -> Handler<Limited<RateLimitedImages>, FakeDlq> {
    let config = Config {
        max_concurrency,
        max_attempts,
        dead_letter_queue_url: Some(DLQ_URL.to_string()),
        ..Config::default()
    };
    let limits = CallLimits::new(max_concurrency);
    let limited = Limited::new(images.clone(), limits.clone());
    Handler::new(config, limited, Some(FakeDlq::new(DlqMode::Up))).with_limits(limits)
}

#[tokio::test(start_paused = true)]
async fn under_a_service_rate_limit_every_arn_is_deleted_and_throttles_are_not_attempts() {
    // GIVEN Image Builder answering 429 above 50 calls/s (burst 5), MAX_CONCURRENCY=16,
    // MAX_ATTEMPTS=2, and 300 ARNs in one SQS batch with 15 minutes to live
    let images = RateLimitedImages::new(50.0, 5.0);
    let handler = handler(&images, 16, 2);
    let arns: Vec<String> = (0..300).map(|i| arn("limited", i)).collect();
    let ids: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
    let records: Vec<(&str, &str)> = ids
        .iter()
        .zip(&arns)
        .map(|(i, a)| (i.as_str(), a.as_str()))
        .collect();
    // WHEN handled
    let report: Report = handler
        .handle(&sqs_event(&records), &invocation(Duration::from_secs(900)))
        .await
        .unwrap();
    // THEN every ARN is deleted on its first attempt: none dead-lettered or handed back
    assert_eq!(report.summary.deleted, 300, "{:?}", report.summary);
    assert_eq!(report.summary.dead_lettered, 0);
    assert_eq!(report.batch_item_failures, Some(Vec::new()));
    assert!(arns.iter().all(|a| images.is_deleted(a)));
    assert!(report
        .results
        .iter()
        .all(|r| r.status == Status::Deleted && r.attempts == Some(1)));
    // AND the service did throttle, and the report counts exactly its 429s
    let throttled = images.throttled.load(Ordering::SeqCst);
    assert!(throttled > 0, "the rate limit was reached");
    assert_eq!(report.summary.throttled, throttled as u64);
    let per_arn: u64 = report
        .results
        .iter()
        .map(|r| r.throttled.unwrap_or(0) as u64)
        .sum();
    assert_eq!(per_arn, throttled as u64);
    // AND the limiter kept the calls near the rate: few throttled calls per ARN (without it,
    // 16 calls in flight every 20 ms would meet 429 about 15 times out of 16)
    let calls = images.calls.load(Ordering::SeqCst);
    assert_eq!(calls, 300 + throttled);
    assert!(calls < 300 * 3 / 2, "{calls} calls for 300 ARNs");
    // AND never more than MAX_CONCURRENCY calls were in flight
    assert!(images.most_in_flight.load(Ordering::SeqCst) <= 16);
}

#[tokio::test(start_paused = true)]
async fn an_arn_throttled_until_the_deadline_is_not_attempted_and_handed_back() {
    // GIVEN Image Builder that grants no call at all after its burst of 2, and 5 s to live
    let images = RateLimitedImages::new(0.0, 2.0);
    let handler = handler(&images, 4, 2);
    let (a, b, c) = (arn("t", 1), arn("t", 2), arn("t", 3));
    let event = sqs_event(&[("m1", &a), ("m2", &b), ("m3", &c)]);
    // WHEN handled
    let report = handler
        .handle(&event, &invocation(Duration::from_secs(5)))
        .await
        .unwrap();
    // THEN two are deleted and the third, throttled until the deadline, is not attempted
    // (no attempt spent) and handed back to SQS, never dead-lettered
    assert_eq!(report.summary.deleted, 2, "{:?}", report.summary);
    let left = report
        .results
        .iter()
        .find(|r| r.status != Status::Deleted)
        .expect("one ARN is left");
    assert_eq!(left.status, Status::NotAttempted, "{left:?}");
    assert_eq!(left.error_code.as_deref(), Some("DeadlineReached"));
    assert_eq!((left.retryable, left.attempts), (Some(true), None));
    assert!(left.throttled.is_some_and(|n| n > 0), "{left:?}");
    assert_eq!(report.summary.dead_lettered, 0);
    let handed_back = report.batch_item_failures.unwrap_or_default();
    assert_eq!(handed_back.len(), 1);
    assert_eq!(
        report.summary.throttled,
        images.throttled.load(Ordering::SeqCst) as u64
    );
}
