//! Plan store adapter ([`PlanStore`] over S3 PutObject / GetObject).
//!
//! The plan bucket is in the function's own region (the SAM template creates it next to the
//! function), so one client of the shared configuration's region serves every call.

use aws_config::SdkConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use super::classify::classify;
use crate::ports::{CallError, PlanStore};

/// [`PlanStore`] backed by S3.
#[derive(Debug, Clone)]
pub struct S3Plans {
    client: Client,
}

impl S3Plans {
    /// A client of the shared configuration. `path_style`: address buckets as
    /// `endpoint/bucket/key` — what local S3 emulators (moto, MinIO, LocalStack) behind a
    /// custom endpoint expect; real S3 keeps virtual-hosted addressing.
    pub fn new(base: &SdkConfig, path_style: bool) -> Self {
        let conf = aws_sdk_s3::config::Builder::from(base)
            .force_path_style(path_style)
            .build();
        S3Plans {
            client: Client::from_conf(conf),
        }
    }
}

/// Whether S3 is reached through a custom endpoint (`AWS_ENDPOINT_URL_S3` or
/// `AWS_ENDPOINT_URL`, the standard variables aws-config honours): then buckets are
/// addressed path-style, as a local emulator has no per-bucket host names.
pub fn endpoint_overridden() -> bool {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()))
}

impl PlanStore for S3Plans {
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), CallError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, CallError> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let bytes = out.body.collect().await.map_err(|e| {
            CallError::retryable(
                "ResponseError",
                format!("reading s3://{bucket}/{key} failed mid-body: {e}"),
            )
        })?;
        Ok(bytes.into_bytes().to_vec())
    }
}
