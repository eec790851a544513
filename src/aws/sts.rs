//! STS adapter: who is calling (the operator CLI's own account and partition).
//!
//! The Lambda reads its account from the invoked function ARN; a person at a terminal has
//! none, so the CLI asks STS `GetCallerIdentity`, which needs no permission.

use aws_config::SdkConfig;

use super::classify::classify;
use crate::ports::CallError;

/// The caller's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    /// The 12-digit account id.
    pub account: String,
    /// The caller's ARN (`arn:PARTITION:iam::ACCOUNT:…` or `…:sts::…:assumed-role/…`).
    pub arn: String,
}

impl CallerIdentity {
    /// The partition named by the caller's ARN (`aws` when it names none).
    pub fn partition(&self) -> &str {
        self.arn
            .split(':')
            .nth(1)
            .filter(|p| !p.is_empty())
            .unwrap_or("aws")
    }
}

/// Calls `GetCallerIdentity` once with the shared configuration (its region, credentials and
/// `AWS_ENDPOINT_URL_STS`).
pub async fn caller_identity(sdk: &SdkConfig) -> Result<CallerIdentity, CallError> {
    let out = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| classify(&e))?;
    Ok(CallerIdentity {
        account: out.account().unwrap_or_default().to_string(),
        arn: out.arn().unwrap_or_default().to_string(),
    })
}
