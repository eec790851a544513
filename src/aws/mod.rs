//! AWS adapters: the shared SDK configuration and one adapter per service.
//!
//! [`load_sdk_config`] is built once at init and shared: an explicit rustls + ring HTTPS
//! client, the SDK's own retries disabled (the engine's loop is the only retry layer, see
//! [`crate::engine::with_retries`]) and bounded timeouts. Endpoints come only from the
//! standard `AWS_ENDPOINT_URL*` variables aws-config already honours. Loading does no
//! network I/O when `AWS_REGION` is set (Lambda always sets it); credentials are resolved
//! lazily on the first call.

pub mod classify;
#[cfg(feature = "output-resources")]
pub mod ec2;
#[cfg(feature = "output-resources")]
pub mod ecr;
pub mod imagebuilder;
pub mod s3;
pub mod sqs;
pub mod sts;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_imagebuilder::config::Credentials;
use aws_smithy_http_client::tls;

/// How long establishing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One attempt of one call (the engine also cuts calls at the deadline margin).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Overrides of the SDK configuration: the Lambda passes `Default::default()` and relies on
/// the environment like any AWS tool; the operator CLI passes `--profile` / `--region`;
/// tests pass endpoints and static credentials.
#[derive(Debug, Clone, Default)]
pub struct SdkOverrides {
    /// Instead of `AWS_ENDPOINT_URL` (e.g. an in-process emulator).
    pub endpoint_url: Option<String>,
    /// Static credentials instead of the default provider chain.
    pub credentials: Option<Credentials>,
    /// Instead of `AWS_REGION`.
    pub region: Option<String>,
    /// A named profile of the shared config files instead of `AWS_PROFILE`.
    pub profile: Option<String>,
}

/// Builds the one shared SDK configuration.
pub async fn load_sdk_config(overrides: SdkOverrides) -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    // A dated behaviour version: a newer SDK must not change defaults under us unnoticed
    // (retries and timeouts are set explicitly below anyway).
    let mut loader = aws_config::defaults(BehaviorVersion::v2026_01_12())
        .http_client(http_client)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        );
    if let Some(url) = overrides.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(credentials) = overrides.credentials {
        loader = loader.credentials_provider(credentials);
    }
    if let Some(profile) = overrides.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = overrides.region {
        loader = loader.region(Region::new(region));
    }
    loader.load().await
}

/// One service's clients, one per region, built lazily from the shared [`SdkConfig`] and
/// cached for the life of the process: connections are reused across invocations, and each
/// resource is reached through a client of **its own** region, so the request is signed for
/// that region. Endpoints still come from `AWS_ENDPOINT_URL_<SERVICE>` through the config.
#[derive(Debug)]
pub struct RegionalClients<C> {
    base: SdkConfig,
    build: fn(&SdkConfig, Region) -> C,
    clients: Mutex<HashMap<String, C>>,
}

impl<C: Clone> RegionalClients<C> {
    /// No client is built (and nothing is resolved) until the first call for a region.
    pub fn new(base: &SdkConfig, build: fn(&SdkConfig, Region) -> C) -> Self {
        RegionalClients {
            base: base.clone(),
            build,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The cached client for `region` (cheap: clients are reference-counted handles).
    pub fn get(&self, region: &str) -> C {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(region.to_string())
            .or_insert_with(|| (self.build)(&self.base, Region::new(region.to_string())))
            .clone()
    }
}
