//! The Lambda binary: init tracing, read configuration once, build the clients once, run.

use imagebuilder_reaper::aws::{self, imagebuilder::ImageBuilder, s3, sqs::SqsDeadLetters};
use imagebuilder_reaper::config::Config;
use imagebuilder_reaper::error::{report_init_error, ReaperError};
use imagebuilder_reaper::handler::Handler;
use imagebuilder_reaper::limited::{CallLimits, Limited};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::value::RawValue;

// One thread: the work is I/O-bound, and Lambda below ~1.8 GB gives less than one vCPU, so the
// multi-thread scheduler's cross-thread wake-ups only cost CPU (scripts/bench, 256 MB CPU
// share, 10,000 ARNs: 6.07 s → 4.47 s).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            let e = ReaperError::from(e);
            tracing::error!(errorType = e.error_type(), error = %e, "init failed");
            report_init_error(&e).await;
            std::process::exit(1);
        }
    };
    let sdk = aws::load_sdk_config(aws::SdkOverrides::default()).await;
    // One set of limits per process: every image call waits for the limiter of its service
    // and region, and the calls in flight stay within MAX_CONCURRENCY in total.
    let limits = CallLimits::new(config.max_concurrency);
    let images = Limited::new(ImageBuilder::new(&sdk), limits.clone());
    let dead_letters = config
        .dead_letter_queue_url
        .clone()
        .map(|url| SqsDeadLetters::new(&sdk, url));
    // Retention plans: a second Image Builder adapter for the listing (clients per region are
    // cheap handles), and S3 only when PLAN_BUCKET is set.
    let plans = config
        .plan_bucket
        .is_some()
        .then(|| s3::S3Plans::new(&sdk, s3::endpoint_overridden()));
    let listing = Limited::new(ImageBuilder::new(&sdk), limits.clone());
    let handler = Handler::new(config, images, dead_letters)
        .with_limits(limits.clone())
        .with_retention(listing, plans);
    // EC2 + ECR clients (per region, built on first use) for DELETE_OUTPUT_RESOURCES.
    #[cfg(feature = "output-resources")]
    let handler = handler.with_output_resources(
        Limited::new(aws::ec2::Ec2::new(&sdk), limits.clone()),
        Limited::new(aws::ecr::Ecr::new(&sdk), limits),
    );
    let handler = &handler;
    // The payload arrives raw: lambda_runtime's own deserialiser would refuse JSON that
    // serde_json::Value cannot hold (1e400, deep nesting) with an error type of its own.
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        handler.invoke(event)
    }))
    .await
}
