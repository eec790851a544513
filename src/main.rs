//! The binary, two faces of one code path: under a Lambda Runtime API
//! (`AWS_LAMBDA_RUNTIME_API` set) the function — init tracing, read configuration once, build
//! the clients once, run; anywhere else the operator CLI ([`imagebuilder_reaper::cli`]).

use imagebuilder_reaper::aws;
use imagebuilder_reaper::config::Config;
use imagebuilder_reaper::error::{report_init_error, ReaperError};
use imagebuilder_reaper::handler::aws_handler;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::value::RawValue;

fn main() -> Result<(), lambda_runtime::Error> {
    // Only the variable is read on the Lambda path: no arguments, no terminal, same init.
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return lambda();
    }
    std::process::exit(i32::from(
        imagebuilder_reaper::cli::run(std::env::args_os()),
    ));
}

// One thread: the work is I/O-bound, and Lambda below ~1.8 GB gives less than one vCPU, so the
// multi-thread scheduler's cross-thread wake-ups only cost CPU (scripts/bench, 256 MB CPU
// share, 10,000 ARNs: 6.07 s → 4.47 s).
#[tokio::main(flavor = "current_thread")]
async fn lambda() -> Result<(), lambda_runtime::Error> {
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
    let handler = &aws_handler(config, &sdk);
    // The payload arrives raw: lambda_runtime's own deserialiser would refuse JSON that
    // serde_json::Value cannot hold (1e400, deep nesting) with an error type of its own.
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        handler.invoke(event)
    }))
    .await
}
