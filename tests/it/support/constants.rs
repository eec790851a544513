//! The names every test agrees on: the function's account, region and ARN, the request id
//! of in-memory invocations, and the queues. One definition each.

/// The function's own account: the account of [`FUNCTION_ARN`], so the default
/// `ALLOWED_ACCOUNT_IDS`.
pub const ACCOUNT: &str = "123456789012";

/// An account that is not the function's (images it owns are never touched).
pub const OTHER_ACCOUNT: &str = "210987654321";

/// The function's region (`AWS_REGION`) and the region of [`fixtures::arn`](super::fixtures::arn).
pub const REGION: &str = "us-east-1";

/// The invoked-function ARN every invocation carries (in-memory and end to end).
pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:imagebuilder-reaper";

/// The request id of an in-memory invocation, which is also the source id of direct and
/// Step Functions items (in dead letters and in the one-rule check).
pub const REQUEST_ID: &str = "req-0001";

/// `DEAD_LETTER_QUEUE_URL` of an in-memory handler (the fake DLQ never calls it).
pub const DLQ_URL: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/reaper-dlq";

/// The standard work queue that made-up SQS events come from.
pub const WORK_QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:work";

/// The per-item statuses of the report, each also a count in its `summary`.
pub const STATUSES: &[&str] = &[
    "deleted",
    "alreadyDeleted",
    "wouldDelete",
    "protected",
    "skippedPlanDrift",
    "rejected",
    "failed",
    "notAttempted",
];
