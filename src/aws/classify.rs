//! THE error classification: every failed call of every operation we call becomes a
//! [`CallError`] here, and only here — an SDK error by its [`SdkError`] variant, the
//! operation's modelled error enum and the error code from the response metadata; an EC2
//! Query error (the thin client in [`crate::aws::ec2`]) by its [`QueryFailure`] kind, error
//! code and HTTP status — never by parsing a flattened message. Both kinds of service error
//! go through the same rules ([`service_class`]).

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_imagebuilder::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_imagebuilder::operation::delete_image::DeleteImageError;
use aws_sdk_imagebuilder::operation::get_image::GetImageError;
use aws_sdk_imagebuilder::operation::list_image_build_versions::ListImageBuildVersionsError;
use aws_sdk_imagebuilder::operation::list_images::ListImagesError;
use aws_sdk_imagebuilder::operation::RequestId;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::put_object::PutObjectError;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError;
use aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityError;
// Every SDK crate's `SdkError` and `HttpResponse` are the same smithy types, re-exported.
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::SdkError;

use crate::ports::{CallError, ErrorClass, Removal};

/// The class of each *modelled* error of an operation; `None` for errors the model does not
/// name (decided by code and HTTP status instead).
pub trait ModelledClass {
    fn modelled_class(&self) -> Option<ErrorClass>;
}

impl ModelledClass for DeleteImageError {
    fn modelled_class(&self) -> Option<ErrorClass> {
        use DeleteImageError as E;
        match self {
            // 429 is not in the SDK's throttling list: we must say it is throttling ourselves.
            E::CallRateLimitExceededException(_) => Some(ErrorClass::Throttled),
            E::ServiceException(_) | E::ServiceUnavailableException(_) => {
                Some(ErrorClass::Retryable)
            }
            E::ClientException(_)
            | E::ForbiddenException(_)
            | E::InvalidRequestException(_)
            | E::ResourceDependencyException(_) => Some(ErrorClass::Permanent),
            // Includes ResourceNotFoundException, which DeleteImage does not model.
            _ => None,
        }
    }
}

impl ModelledClass for GetImageError {
    fn modelled_class(&self) -> Option<ErrorClass> {
        use GetImageError as E;
        match self {
            E::CallRateLimitExceededException(_) => Some(ErrorClass::Throttled),
            E::ServiceException(_) | E::ServiceUnavailableException(_) => {
                Some(ErrorClass::Retryable)
            }
            E::ClientException(_) | E::ForbiddenException(_) | E::InvalidRequestException(_) => {
                Some(ErrorClass::Permanent)
            }
            _ => None,
        }
    }
}

/// The two listings of a plan (ListImages, ListImageBuildVersions) model the same errors and
/// fail alike; one rule serves both error types.
macro_rules! listing_class {
    ($error:ident) => {
        impl ModelledClass for $error {
            fn modelled_class(&self) -> Option<ErrorClass> {
                use $error as E;
                match self {
                    // Throttling is waited out, as for DeleteImage: a plan is not given up
                    // for it.
                    E::CallRateLimitExceededException(_) => Some(ErrorClass::Throttled),
                    E::ServiceException(_) | E::ServiceUnavailableException(_) => {
                        Some(ErrorClass::Retryable)
                    }
                    // A refused pagination token cannot get better by sending it again.
                    E::ClientException(_)
                    | E::ForbiddenException(_)
                    | E::InvalidPaginationTokenException(_)
                    | E::InvalidRequestException(_) => Some(ErrorClass::Permanent),
                    _ => None,
                }
            }
        }
    };
}
listing_class!(ListImageBuildVersionsError);
listing_class!(ListImagesError);

impl ModelledClass for GetObjectError {
    fn modelled_class(&self) -> Option<ErrorClass> {
        match self {
            // The plan object is gone (expired by the bucket's lifecycle, or never written).
            GetObjectError::NoSuchKey(_) => Some(ErrorClass::NotFound),
            // An archived object cannot be read until restored: a human must act.
            GetObjectError::InvalidObjectState(_) => Some(ErrorClass::Permanent),
            // S3 reports throttling as `SlowDown` / 503 and other errors by code and status.
            _ => None,
        }
    }
}

impl ModelledClass for PutObjectError {
    fn modelled_class(&self) -> Option<ErrorClass> {
        // PutObject's modelled errors concern conditional writes and encryption settings we
        // never send; everything is decided by code and HTTP status.
        None
    }
}

impl ModelledClass for GetCallerIdentityError {
    /// GetCallerIdentity models no errors: its code and HTTP status decide.
    fn modelled_class(&self) -> Option<ErrorClass> {
        None
    }
}

impl ModelledClass for SendMessageBatchError {
    fn modelled_class(&self) -> Option<ErrorClass> {
        use SendMessageBatchError as E;
        match self {
            // No rate limiter paces the dead-letter sends (SQS is not the constrained
            // service), so its throttles are ordinary attempts with exponential backoff.
            E::RequestThrottled(_) | E::KmsThrottled(_) => Some(ErrorClass::Retryable),
            // Missing queue, KMS access, bad batch: a human must act; the entries are then
            // handed back, not lost.
            E::BatchEntryIdsNotDistinct(_)
            | E::BatchRequestTooLong(_)
            | E::EmptyBatchRequest(_)
            | E::InvalidAddress(_)
            | E::InvalidBatchEntryId(_)
            | E::InvalidSecurity(_)
            | E::KmsAccessDenied(_)
            | E::KmsDisabled(_)
            | E::KmsInvalidKeyUsage(_)
            | E::KmsInvalidState(_)
            | E::KmsNotFound(_)
            | E::KmsOptInRequired(_)
            | E::QueueDoesNotExist(_)
            | E::TooManyEntriesInBatchRequest(_)
            | E::UnsupportedOperation(_) => Some(ErrorClass::Permanent),
            _ => None,
        }
    }
}

/// Codes that mean "slow down" whatever the operation (the AWS-wide throttling names, for
/// errors the operation's model does not list).
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "EC2ThrottledException",
];

/// Codes that mean "try again" whatever the operation (the AWS-wide transient names).
const RETRYABLE_CODES: &[&str] = &[
    "PriorRequestNotComplete",
    "TransactionInProgressException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
];

/// The class of a reply that could not be read, by its HTTP status alone.
fn status_class(status: u16) -> ErrorClass {
    match status {
        429 => ErrorClass::Throttled,
        s if s >= 500 => ErrorClass::Retryable,
        _ => ErrorClass::Permanent,
    }
}

/// Codes that mean the function's own credentials were refused: a configuration problem,
/// the same for every ARN.
const CONFIGURATION_CODES: &[&str] = &[
    "ExpiredToken",
    "ExpiredTokenException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "RequestExpired",
    "SignatureDoesNotMatch",
    "AuthFailure",
];

/// Whether `err` (or anything it was caused by) is the credentials provider chain failing.
fn credentials_failed(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.is::<CredentialsError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Classifies any SDK error of the operations we call.
pub fn classify<E>(err: &SdkError<E, HttpResponse>) -> CallError
where
    E: ProvideErrorMetadata + ModelledClass + std::error::Error + 'static,
{
    let request_id = err.request_id().map(str::to_string);
    let mut call = match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let status = se.raw().status().as_u16();
            let code = e.code().unwrap_or("");
            let class = service_class(code, status, e.modelled_class());
            service_error(class, code, e.message(), status)
        }
        SdkError::TimeoutError(_) => CallError::retryable(
            "Timeout",
            format!("no response in time: {}", DisplayErrorContext(err)),
        ),
        // Identity resolution runs while dispatching: a provider chain that yields no
        // credentials is the function's configuration, not the ARN's.
        SdkError::DispatchFailure(_) if credentials_failed(err) => CallError::new(
            ErrorClass::Configuration,
            "CredentialsError",
            format!(
                "the function's credentials could not be resolved: {}",
                DisplayErrorContext(err)
            ),
        ),
        SdkError::DispatchFailure(d) if d.is_user() => CallError::permanent(
            "DispatchFailure",
            format!(
                "request could not be sent (configuration): {}",
                DisplayErrorContext(err)
            ),
        ),
        // Connection refused/reset, DNS, TLS, I/O timeouts: transient by nature.
        SdkError::DispatchFailure(_) => CallError::retryable(
            "DispatchFailure",
            format!("connection error: {}", DisplayErrorContext(err)),
        ),
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            let class = status_class(status);
            CallError::new(
                class,
                "ResponseError",
                format!(
                    "unreadable response (HTTP {status}): {}",
                    DisplayErrorContext(err)
                ),
            )
        }
        SdkError::ConstructionFailure(_) => CallError::permanent(
            "ConstructionFailure",
            format!("request could not be built: {}", DisplayErrorContext(err)),
        ),
        // A variant added by a future SDK: retrying is the direction that loses nothing.
        _ => CallError::retryable("SdkError", DisplayErrorContext(err).to_string()),
    };
    call.request_id = request_id;
    call
}

/// The class of a service error reply (SDK or EC2 Query alike): by its code, the operation's
/// own class for it (`modelled`), and its HTTP status.
pub fn service_class(code: &str, status: u16, modelled: Option<ErrorClass>) -> ErrorClass {
    if code == "ResourceNotFoundException" {
        // Modelled or not: the image is gone, which is what we wanted.
        ErrorClass::NotFound
    } else if CONFIGURATION_CODES.contains(&code) {
        ErrorClass::Configuration
    } else if let Some(class) = modelled {
        class
    } else if THROTTLING_CODES.contains(&code) || status == 429 {
        ErrorClass::Throttled
    } else if RETRYABLE_CODES.contains(&code) || status >= 500 {
        ErrorClass::Retryable
    } else {
        // Includes a bare 404 without ResourceNotFoundException: that is more likely a wrong
        // endpoint than a deleted image, so it must not count as deleted. A refused
        // permission (`UnauthorizedOperation`, `AccessDenied…`) lands here too: a human must
        // act, and it may be this ARN's alone.
        ErrorClass::Permanent
    }
}

/// A service error reply as a [`CallError`]; a reply without a code is named by its status.
fn service_error(class: ErrorClass, code: &str, message: Option<&str>, status: u16) -> CallError {
    let code = if code.is_empty() {
        format!("HttpStatus{status}")
    } else {
        code.to_string()
    };
    let message = message
        .map(str::to_string)
        .unwrap_or_else(|| format!("HTTP {status}"));
    CallError::new(class, code, message)
}

// ---- EC2 Query protocol (the thin client in crate::aws::ec2) ------------------------------

/// EC2 codes meaning "already gone" (an AMI deregistered or never there, a deleted snapshot).
pub const EC2_GONE: &[&str] = &[
    "InvalidAMIID.NotFound",
    "InvalidAMIID.Unavailable",
    "InvalidSnapshot.NotFound",
];

/// A snapshot still used by another AMI: skipped with its reason, never a failure.
pub const EC2_SNAPSHOT_IN_USE: &str = "InvalidSnapshot.InUse";

/// EC2's own class for a code (what the SDK path calls the modelled class): `None` leaves it
/// to the shared rules of [`service_class`].
fn ec2_class(code: &str) -> Option<ErrorClass> {
    EC2_GONE.contains(&code).then_some(ErrorClass::NotFound)
}

/// How one EC2 Query exchange failed, before classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryFailure {
    /// A non-2xx reply; `code` and `message` come from its error document when it has a
    /// readable one.
    Service {
        status: u16,
        code: Option<String>,
        message: Option<String>,
    },
    /// A reply whose body could not be read or is not the XML expected.
    Unreadable { status: u16, detail: String },
    /// No reply within the attempt timeout.
    Timeout(String),
    /// The request got no reply (connection refused or reset, DNS, TLS, I/O). `user`: the
    /// request itself is unsendable (a malformed endpoint URL), so retrying cannot help.
    Dispatch { user: bool, detail: String },
    /// The credentials provider chain gave no credentials.
    Credentials(String),
    /// The request could not be built or signed.
    Construction(String),
}

/// Classifies one failed EC2 Query exchange exactly as [`classify`] does an SDK error of the
/// same kind: the same codes, the same classes, the same transport error names.
pub fn classify_query(failure: QueryFailure, request_id: Option<String>) -> CallError {
    let mut call = match failure {
        QueryFailure::Service {
            status,
            code,
            message,
        } => {
            let code = code.unwrap_or_default();
            let class = service_class(&code, status, ec2_class(&code));
            service_error(class, &code, message.as_deref(), status)
        }
        QueryFailure::Unreadable { status, detail } => {
            let class = status_class(status);
            CallError::new(
                class,
                "ResponseError",
                format!("unreadable response (HTTP {status}): {detail}"),
            )
        }
        QueryFailure::Timeout(detail) => {
            CallError::retryable("Timeout", format!("no response in time: {detail}"))
        }
        QueryFailure::Dispatch { user: true, detail } => CallError::permanent(
            "DispatchFailure",
            format!("request could not be sent (configuration): {detail}"),
        ),
        // Connection refused/reset, DNS, TLS, I/O timeouts: transient by nature.
        QueryFailure::Dispatch {
            user: false,
            detail,
        } => CallError::retryable("DispatchFailure", format!("connection error: {detail}")),
        QueryFailure::Credentials(detail) => CallError::new(
            ErrorClass::Configuration,
            "CredentialsError",
            format!("the function's credentials could not be resolved: {detail}"),
        ),
        QueryFailure::Construction(detail) => CallError::permanent(
            "ConstructionFailure",
            format!("request could not be built: {detail}"),
        ),
    };
    call.request_id = request_id;
    call
}

/// What a refused EC2 removal means: `InvalidSnapshot.InUse` is [`Removal::InUse`] with its
/// reason (a skip, not a failure); any other error stays an error.
pub fn ec2_refusal(err: CallError) -> Result<Removal, CallError> {
    if err.code == EC2_SNAPSHOT_IN_USE {
        // A reply without a message carries the status as its message (`HTTP 400`).
        let bare = err
            .message
            .strip_prefix("HTTP ")
            .is_some_and(|rest| rest.len() == 3 && rest.bytes().all(|b| b.is_ascii_digit()));
        let why = if err.message.is_empty() || bare {
            "the snapshot is used by another AMI"
        } else {
            &err.message
        };
        Ok(Removal::InUse(format!("{EC2_SNAPSHOT_IN_USE}: {why}")))
    } else {
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(status: u16, code: &str) -> CallError {
        classify_query(
            QueryFailure::Service {
                status,
                code: Some(code.into()),
                message: Some("m".into()),
            },
            Some("r".into()),
        )
    }

    #[test]
    fn ec2_gone_codes_are_not_found() {
        for code in EC2_GONE.iter().chain(&["ResourceNotFoundException"]) {
            assert_eq!(service(400, code).class, ErrorClass::NotFound, "{code}");
        }
    }

    #[test]
    fn throttling_codes_and_429_are_throttled_and_5xx_retryable() {
        for code in ["RequestLimitExceeded", "Throttling", "SlowDown"] {
            assert_eq!(service(400, code).class, ErrorClass::Throttled, "{code}");
        }
        assert_eq!(service(429, "SomethingNew").class, ErrorClass::Throttled);
        for (status, code) in [(400, "InternalError"), (503, "Unavailable")] {
            assert_eq!(service(status, code).class, ErrorClass::Retryable, "{code}");
        }
        let unreadable = |status| {
            classify_query(
                QueryFailure::Unreadable {
                    status,
                    detail: "x".into(),
                },
                None,
            )
            .class
        };
        assert_eq!(unreadable(429), ErrorClass::Throttled);
        assert_eq!(unreadable(500), ErrorClass::Retryable);
    }

    #[test]
    fn refused_credentials_are_a_configuration_problem() {
        // GIVEN the codes of the function's own credentials being refused
        for code in CONFIGURATION_CODES {
            // THEN they are neither the ARN's failure nor worth retrying as such
            assert_eq!(
                service(400, code).class,
                ErrorClass::Configuration,
                "{code}"
            );
        }
        let e = classify_query(QueryFailure::Credentials("no provider".into()), None);
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Configuration, "CredentialsError")
        );
    }

    #[test]
    fn permission_codes_and_other_4xx_are_permanent() {
        for code in [
            "UnauthorizedOperation",
            "AccessDeniedException",
            "InvalidParameterValue",
            EC2_SNAPSHOT_IN_USE,
        ] {
            let e = service(400, code);
            assert_eq!((e.class, e.code.as_str()), (ErrorClass::Permanent, code));
            assert_eq!(e.request_id.as_deref(), Some("r"));
        }
    }

    #[test]
    fn a_reply_without_a_code_is_named_and_classed_by_its_status() {
        let bare = |status| {
            classify_query(
                QueryFailure::Service {
                    status,
                    code: None,
                    message: None,
                },
                None,
            )
        };
        let e = bare(404);
        assert_eq!(
            (e.class, e.code.as_str(), e.message.as_str()),
            (ErrorClass::Permanent, "HttpStatus404", "HTTP 404")
        );
        assert_eq!(bare(502).class, ErrorClass::Retryable);
    }

    #[test]
    fn transport_failures_keep_the_sdk_paths_names_and_classes() {
        let cases = [
            (
                QueryFailure::Timeout("t".into()),
                ErrorClass::Retryable,
                "Timeout",
            ),
            (
                QueryFailure::Dispatch {
                    user: false,
                    detail: "refused".into(),
                },
                ErrorClass::Retryable,
                "DispatchFailure",
            ),
            (
                QueryFailure::Dispatch {
                    user: true,
                    detail: "bad URL".into(),
                },
                ErrorClass::Permanent,
                "DispatchFailure",
            ),
            (
                QueryFailure::Construction("x".into()),
                ErrorClass::Permanent,
                "ConstructionFailure",
            ),
            (
                QueryFailure::Unreadable {
                    status: 200,
                    detail: "x".into(),
                },
                ErrorClass::Permanent,
                "ResponseError",
            ),
            (
                QueryFailure::Unreadable {
                    status: 503,
                    detail: "x".into(),
                },
                ErrorClass::Retryable,
                "ResponseError",
            ),
        ];
        for (failure, class, code) in cases {
            let e = classify_query(failure.clone(), None);
            assert_eq!((e.class, e.code.as_str()), (class, code), "{failure:?}");
        }
    }

    #[test]
    fn only_a_snapshot_in_use_refusal_becomes_a_removal() {
        let in_use = service(400, EC2_SNAPSHOT_IN_USE);
        assert_eq!(
            ec2_refusal(in_use),
            Ok(Removal::InUse("InvalidSnapshot.InUse: m".into()))
        );
        let bare = classify_query(
            QueryFailure::Service {
                status: 400,
                code: Some(EC2_SNAPSHOT_IN_USE.into()),
                message: None,
            },
            None,
        );
        assert_eq!(
            ec2_refusal(bare),
            Ok(Removal::InUse(
                "InvalidSnapshot.InUse: the snapshot is used by another AMI".into()
            ))
        );
        let other = service(400, "InvalidSnapshot.NotFound");
        assert_eq!(ec2_refusal(other.clone()), Err(other));
    }
}
