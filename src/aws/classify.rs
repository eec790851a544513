//! THE error classification: every SDK error of every operation we call becomes a
//! [`CallError`] here, and only here, by matching the [`SdkError`] variant, the operation's
//! modelled error enum and the error code from the response metadata — never by parsing a
//! flattened message.

use aws_sdk_imagebuilder::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_imagebuilder::operation::delete_image::DeleteImageError;
use aws_sdk_imagebuilder::operation::get_image::GetImageError;
use aws_sdk_imagebuilder::operation::list_image_build_versions::ListImageBuildVersionsError;
use aws_sdk_imagebuilder::operation::RequestId;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::put_object::PutObjectError;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

use crate::ports::{CallError, ErrorClass};

/// The class of each *modelled* error of an operation; `None` for errors the model does not
/// name (decided by code and HTTP status instead).
pub trait ModelledClass {
    fn modelled_class(&self) -> Option<ErrorClass>;
}

impl ModelledClass for DeleteImageError {
    fn modelled_class(&self) -> Option<ErrorClass> {
        use DeleteImageError as E;
        match self {
            // 429 is not in the SDK's throttling list: we must say it is retryable ourselves.
            E::CallRateLimitExceededException(_)
            | E::ServiceException(_)
            | E::ServiceUnavailableException(_) => Some(ErrorClass::Retryable),
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
            E::CallRateLimitExceededException(_)
            | E::ServiceException(_)
            | E::ServiceUnavailableException(_) => Some(ErrorClass::Retryable),
            E::ClientException(_) | E::ForbiddenException(_) | E::InvalidRequestException(_) => {
                Some(ErrorClass::Permanent)
            }
            _ => None,
        }
    }
}

impl ModelledClass for ListImageBuildVersionsError {
    fn modelled_class(&self) -> Option<ErrorClass> {
        use ListImageBuildVersionsError as E;
        match self {
            E::CallRateLimitExceededException(_)
            | E::ServiceException(_)
            | E::ServiceUnavailableException(_) => Some(ErrorClass::Retryable),
            // A refused pagination token cannot get better by sending it again.
            E::ClientException(_)
            | E::ForbiddenException(_)
            | E::InvalidPaginationTokenException(_)
            | E::InvalidRequestException(_) => Some(ErrorClass::Permanent),
            _ => None,
        }
    }
}

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

impl ModelledClass for SendMessageBatchError {
    fn modelled_class(&self) -> Option<ErrorClass> {
        use SendMessageBatchError as E;
        match self {
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

/// Codes that mean "slow down / try again" whatever the operation (the AWS-wide throttling
/// and transient names, for errors the operation's model does not list).
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "TransactionInProgressException",
    "EC2ThrottledException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
];

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
            let code = e.code().unwrap_or("").to_string();
            let class = if code == "ResourceNotFoundException" {
                // Modelled or not: the image is gone, which is what we wanted.
                ErrorClass::NotFound
            } else if let Some(class) = e.modelled_class() {
                class
            } else if RETRYABLE_CODES.contains(&code.as_str()) || status == 429 || status >= 500 {
                ErrorClass::Retryable
            } else {
                // Includes a bare 404 without ResourceNotFoundException: that is more likely
                // a wrong endpoint than a deleted image, so it must not count as deleted.
                ErrorClass::Permanent
            };
            let code = if code.is_empty() {
                format!("HttpStatus{status}")
            } else {
                code
            };
            let message = e
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {status}"));
            CallError::new(class, code, message)
        }
        SdkError::TimeoutError(_) => CallError::retryable(
            "Timeout",
            format!("no response in time: {}", DisplayErrorContext(err)),
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
            let class = if status == 429 || status >= 500 {
                ErrorClass::Retryable
            } else {
                ErrorClass::Permanent
            };
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
