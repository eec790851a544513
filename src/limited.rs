//! Rate-limited ports: [`Limited`] wraps an Image Builder, EC2 or ECR port so that every call
//! waits for a permit of the adaptive limiter of its service and region, and reports to it
//! how the call ended.
//!
//! It sits between the engine and the ports: the engine and the adapters are unchanged, and
//! the binary wraps each adapter once. [`CallLimits`] is shared by every wrapped port of the
//! process: one limiter per (service, region), and one cap on the calls in flight over all of
//! them, so an ARN whose cleanup reads and deletes several AMIs at once cannot take the total
//! past `MAX_CONCURRENCY`. The dead-letter sender is not wrapped: SQS is not the constrained
//! service, and its sends must not queue behind image calls at the deadline.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::arn::ImageArn;
use crate::limiter::{Limiters, Permit};
use crate::ports::{
    AmiDescription, AmiReference, AmiUsage, Amis, BuildVersionSummary, BuildVersions, CallError,
    ContainerImages, Deleted, ErrorClass, ImageInfo, ImageReference, ImageUse, ImageVersionSummary,
    Images, Page, Removal, UsageFields,
};

/// Limiter name of EC2 Image Builder.
pub const IMAGEBUILDER: &str = "imagebuilder";
/// Limiter name of EC2 (AMIs and snapshots).
pub const EC2: &str = "ec2";
/// Limiter name of ECR.
pub const ECR: &str = "ecr";

/// The call limits of one process: cheap to clone, clones share state.
#[derive(Debug, Clone)]
pub struct CallLimits {
    limiters: Arc<Limiters>,
    /// Calls in flight over every service and region.
    total: Arc<Semaphore>,
}

impl CallLimits {
    /// At most `max_in_flight` calls in flight in total (at least 1), each limiter within it.
    pub fn new(max_in_flight: usize) -> Self {
        let max = max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        CallLimits {
            limiters: Arc::new(Limiters::new(max)),
            total: Arc::new(Semaphore::new(max)),
        }
    }

    /// The smallest in-flight limit of the limiters used so far (the most throttled service
    /// and region); `None` before the first call.
    pub fn min_in_flight_limit(&self) -> Option<usize> {
        self.limiters.in_flight_limits().into_iter().min()
    }

    /// Runs `call` under a slot of the total and a permit of (`service`, `region`). The slot
    /// comes first, so time spent waiting for the service's start rate holds no permit.
    async fn run<T>(
        &self,
        service: &'static str,
        region: &str,
        call: impl Future<Output = Result<T, CallError>>,
    ) -> Result<T, CallError> {
        // The semaphore is never closed; were it, the call would go ahead unbounded.
        let _slot = self.total.acquire().await.ok();
        let permit = self.limiters.get(service, region).acquire().await;
        let result = call.await;
        report(permit, &result);
        result
    }
}

/// What the limiter learns from a call: a throttle shrinks its limits, a call without a
/// usable answer (5xx, timeout, connection) says nothing, any answer lets them grow.
fn report<T>(permit: Permit, result: &Result<T, CallError>) {
    match result {
        Err(e) if e.class == ErrorClass::Throttled => permit.throttled(),
        Err(e) if e.class == ErrorClass::Retryable => permit.other_error(),
        _ => permit.success(),
    }
}

/// A port whose calls go through [`CallLimits`].
#[derive(Debug, Clone)]
pub struct Limited<P> {
    inner: P,
    limits: CallLimits,
}

impl<P> Limited<P> {
    pub fn new(inner: P, limits: CallLimits) -> Self {
        Limited { inner, limits }
    }

    /// The wrapped port.
    pub fn inner(&self) -> &P {
        &self.inner
    }
}

impl<P: Images> Images for Limited<P> {
    async fn delete_image(&self, arn: &ImageArn) -> Result<Deleted, CallError> {
        let call = self.inner.delete_image(arn);
        self.limits.run(IMAGEBUILDER, arn.region(), call).await
    }

    async fn get_image(&self, arn: &ImageArn) -> Result<ImageInfo, CallError> {
        let call = self.inner.get_image(arn);
        self.limits.run(IMAGEBUILDER, arn.region(), call).await
    }
}

impl<P: Amis> Amis for Limited<P> {
    async fn describe_image(
        &self,
        region: &str,
        image_id: &str,
    ) -> Result<Option<AmiDescription>, CallError> {
        let call = self.inner.describe_image(region, image_id);
        self.limits.run(EC2, region, call).await
    }

    async fn snapshots_left_by(
        &self,
        region: &str,
        image_id: &str,
    ) -> Result<Vec<String>, CallError> {
        let call = self.inner.snapshots_left_by(region, image_id);
        self.limits.run(EC2, region, call).await
    }

    async fn deregister_image(&self, region: &str, image_id: &str) -> Result<(), CallError> {
        let call = self.inner.deregister_image(region, image_id);
        self.limits.run(EC2, region, call).await
    }

    async fn delete_snapshot(&self, region: &str, snapshot_id: &str) -> Result<Removal, CallError> {
        let call = self.inner.delete_snapshot(region, snapshot_id);
        self.limits.run(EC2, region, call).await
    }
}

impl<P: BuildVersions> BuildVersions for Limited<P> {
    async fn list_image_versions(
        &self,
        region: &str,
        names: &[String],
        next_token: Option<String>,
    ) -> Result<Page<ImageVersionSummary>, CallError> {
        let call = self.inner.list_image_versions(region, names, next_token);
        self.limits.run(IMAGEBUILDER, region, call).await
    }

    async fn list_build_versions(
        &self,
        region: &str,
        version_arn: &str,
        next_token: Option<String>,
    ) -> Result<Page<BuildVersionSummary>, CallError> {
        let call = self
            .inner
            .list_build_versions(region, version_arn, next_token);
        self.limits.run(IMAGEBUILDER, region, call).await
    }
}

impl<P: ImageUse> ImageUse for Limited<P> {
    async fn references(
        &self,
        region: &str,
        image_ids: &[String],
    ) -> Result<Vec<AmiReference>, CallError> {
        let call = self.inner.references(region, image_ids);
        self.limits.run(EC2, region, call).await
    }

    async fn usage(&self, region: &str, known: &[UsageFields]) -> Result<Vec<AmiUsage>, CallError> {
        let call = self.inner.usage(region, known);
        self.limits.run(EC2, region, call).await
    }
}

impl<P: ContainerImages> ContainerImages for Limited<P> {
    async fn batch_delete_image(
        &self,
        region: &str,
        registry_id: &str,
        repository: &str,
        images: &[ImageReference],
    ) -> Result<Vec<Result<Removal, CallError>>, CallError> {
        let call = self
            .inner
            .batch_delete_image(region, registry_id, repository, images);
        self.limits.run(ECR, region, call).await
    }

    async fn resolve_tags(
        &self,
        region: &str,
        registry_id: &str,
        repository: &str,
        tags: &[String],
    ) -> Result<Vec<Option<String>>, CallError> {
        let call = self
            .inner
            .resolve_tags(region, registry_id, repository, tags);
        self.limits.run(ECR, region, call).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// An EC2 port that counts the calls in flight and remembers the most seen at once.
    #[derive(Default)]
    struct Counting {
        now: AtomicUsize,
        most: AtomicUsize,
    }

    impl Amis for Counting {
        async fn describe_image(
            &self,
            _: &str,
            _: &str,
        ) -> Result<Option<AmiDescription>, CallError> {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            Ok(None)
        }
        async fn snapshots_left_by(&self, _: &str, _: &str) -> Result<Vec<String>, CallError> {
            Err(CallError::throttled("Throttling", "slow down"))
        }
        async fn deregister_image(&self, _: &str, _: &str) -> Result<(), CallError> {
            Err(CallError::retryable("InternalError", "boom"))
        }
        async fn delete_snapshot(&self, _: &str, _: &str) -> Result<Removal, CallError> {
            Ok(Removal::Removed)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn calls_in_flight_never_exceed_the_total_over_every_region() {
        // GIVEN limits of 4 in flight and 40 concurrent calls spread over 4 regions
        let limited = Limited::new(Counting::default(), CallLimits::new(4));
        let regions = ["us-east-1", "us-west-2", "eu-west-1", "ap-south-1"];
        // WHEN they all run at once
        let calls = (0..40).map(|i| limited.describe_image(regions[i % 4], "ami-1"));
        let results = futures::future::join_all(calls).await;
        // THEN every call is answered and never more than 4 were in flight together
        assert!(results.iter().all(|r| r == &Ok(None)));
        assert_eq!(limited.inner().most.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn throttles_shrink_the_limiter_of_the_calls_service_and_region_only() {
        // GIVEN limits of 8 in flight
        let limits = CallLimits::new(8);
        let limited = Limited::new(Counting::default(), limits.clone());
        assert_eq!(limits.min_in_flight_limit(), None);
        // WHEN one region answers, another throttles and fails
        let _ = limited.describe_image("us-east-1", "ami-1").await;
        let throttled = limited.snapshots_left_by("eu-west-1", "ami-1").await;
        let failed = limited.deregister_image("eu-west-1", "ami-1").await;
        // THEN the errors pass through unchanged, the throttle cut only eu-west-1's limiter
        assert_eq!(throttled.unwrap_err().class, ErrorClass::Throttled);
        assert_eq!(failed.unwrap_err().class, ErrorClass::Retryable);
        let limiters = &limits.limiters;
        assert_eq!(limiters.get(EC2, "eu-west-1").throttled(), 1);
        assert_eq!(limiters.get(EC2, "us-east-1").throttled(), 0);
        assert_eq!(limiters.get(EC2, "us-east-1").in_flight_limit(), 8);
        assert!(limits.min_in_flight_limit() < Some(8));
    }
}
