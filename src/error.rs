//! Whole-invocation errors: the stable `errorType` names.
//!
//! Step Functions `Retry` / `Catch` and alarms match these names, so they are spelled out
//! here once ([`ERROR_TYPES`]) and mapped to [`lambda_runtime::Diagnostic`] explicitly instead
//! of relying on Rust type names.

use lambda_runtime::Diagnostic;

use crate::config::ConfigError;

/// Every `errorType` this function can fail an invocation (or its init) with.
pub const ERROR_TYPES: [&str; 5] = [
    "InvalidEvent",
    "DeadLetterQueueUnavailable",
    "ConfigurationError",
    "ListingFailed",
    "PlanStoreUnavailable",
];

/// An error that fails the whole invocation (or init). Per-ARN failures never end up here:
/// they are reported, dead-lettered or handed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReaperError {
    /// The payload is not JSON of any known shape.
    #[error("{0}")]
    InvalidEvent(String),
    /// Something had to go to the dead-letter queue and could not: the caller must retry.
    #[error("{message}")]
    DeadLetterQueueUnavailable {
        /// Human-readable: why, how many, and which ARNs / inputs were not dead-lettered.
        message: String,
        /// The ARNs (or raw inputs, for rejections) that were not dead-lettered.
        not_dead_lettered: Vec<String>,
    },
    /// A bad environment value at init.
    #[error(transparent)]
    ConfigurationError(#[from] ConfigError),
    /// The function's own credentials were refused during the invocation (not the ARNs'
    /// fault): nothing was dead-lettered; the caller retries once they are fixed.
    #[error("{0}")]
    CredentialsRefused(String),
    /// A retention plan could not list every build version it covers (after retries): no
    /// partial plan is made, since what a plan keeps depends on every build of a name.
    #[error("{0}")]
    ListingFailed(String),
    /// The plan bucket (`PLAN_BUCKET`) could not be written or read (after retries).
    #[error("{0}")]
    PlanStoreUnavailable(String),
}

impl ReaperError {
    /// The stable `errorType` (one of [`ERROR_TYPES`]).
    pub fn error_type(&self) -> &'static str {
        match self {
            ReaperError::InvalidEvent(_) => ERROR_TYPES[0],
            ReaperError::DeadLetterQueueUnavailable { .. } => ERROR_TYPES[1],
            ReaperError::ConfigurationError(_) | ReaperError::CredentialsRefused(_) => {
                ERROR_TYPES[2]
            }
            ReaperError::ListingFailed(_) => ERROR_TYPES[3],
            ReaperError::PlanStoreUnavailable(_) => ERROR_TYPES[4],
        }
    }
}

impl From<crate::event::InvalidEvent> for ReaperError {
    fn from(e: crate::event::InvalidEvent) -> Self {
        ReaperError::InvalidEvent(e.0)
    }
}

impl From<ReaperError> for Diagnostic {
    fn from(e: ReaperError) -> Self {
        Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: e.to_string(),
        }
    }
}

/// The Runtime API's URI from `AWS_LAMBDA_RUNTIME_API`, read as the runtime reads it: Lambda
/// sets `host:port`, local runtimes sometimes a full `http://host:port`.
fn runtime_api_uri(api: &str) -> Option<http::Uri> {
    let api = api.trim();
    if api.starts_with("http://") || api.starts_with("https://") {
        api.parse().ok()
    } else {
        format!("http://{api}").parse().ok()
    }
}

/// Reports an init failure the way Lambda understands it: a JSON error line on stderr with
/// the stable `errorType`, and a POST to the Runtime API's `/runtime/init/error` (when
/// `AWS_LAMBDA_RUNTIME_API` is set), so the init failure carries `errorType`
/// `ConfigurationError` instead of a bare process exit. The caller then exits non-zero.
pub async fn report_init_error(e: &ReaperError) {
    let diagnostic = Diagnostic {
        error_type: e.error_type().to_string(),
        error_message: e.to_string(),
    };
    let body = serde_json::to_vec(&diagnostic).expect("diagnostic serialises");
    eprintln!("{}", String::from_utf8_lossy(&body));
    let Some(endpoint) = std::env::var("AWS_LAMBDA_RUNTIME_API")
        .ok()
        .and_then(|api| runtime_api_uri(&api))
    else {
        return;
    };
    let client = match lambda_runtime_api_client::Client::builder()
        .with_endpoint(endpoint)
        .build()
    {
        Ok(c) => c,
        Err(err) => {
            eprintln!("could not build the Runtime API client: {err}");
            return;
        }
    };
    let request = lambda_runtime_api_client::build_request()
        .method("POST")
        .uri("/2018-06-01/runtime/init/error")
        .header("Lambda-Runtime-Function-Error-Type", e.error_type())
        .header("Content-Type", "application/json")
        .body(lambda_runtime_api_client::body::Body::from(body));
    match request {
        Ok(req) => {
            if let Err(err) = client.call(req).await {
                eprintln!("could not report the init error to the Runtime API: {err}");
            }
        }
        Err(err) => eprintln!("could not build the init error request: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_api_is_found_with_or_without_a_scheme() {
        // GIVEN the forms AWS_LAMBDA_RUNTIME_API takes
        // THEN each names the same endpoint; a malformed one names none
        for api in [
            "127.0.0.1:9001",
            "http://127.0.0.1:9001",
            " 127.0.0.1:9001 ",
        ] {
            let uri = runtime_api_uri(api).expect("an endpoint");
            assert_eq!(uri.authority().unwrap().as_str(), "127.0.0.1:9001", "{api}");
            assert_eq!(uri.scheme_str(), Some("http"));
        }
        assert_eq!(runtime_api_uri("http://[bad"), None);
    }
}
