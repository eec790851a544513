//! Event decoding (pure: no AWS SDK): every input shape of SPEC §2 → units of items.
//!
//! This is the one decoding point. A *unit* is what the caller can retry on its own: one SQS
//! record, or the whole invocation for EventBridge / direct / Step Functions. An *item* is
//! one candidate ARN string (validated later by [`crate::arn`]) or an input of no known shape.

use serde_json::Value;

/// How the function was invoked; decides where failures go (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationKind {
    /// SQS event source; `fifo` when the queue ARN ends in `.fifo`.
    Sqs { fifo: bool },
    /// An EventBridge rule target (async invoke).
    EventBridge,
    /// Step Functions Distributed Map with ItemBatcher (`{"Items", "BatchInput"}`).
    StepFunctionsBatch,
    /// A direct / Step Functions task invoke with an object or a bare array.
    Direct,
}

/// `source.type` in dead-letter messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Sqs,
    EventBridge,
    StepFunctions,
    Direct,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Sqs => "sqs",
            SourceKind::EventBridge => "eventbridge",
            SourceKind::StepFunctions => "stepfunctions",
            SourceKind::Direct => "direct",
        }
    }
}

/// Where an item came from: SQS `messageId`, EventBridge event `id`; `None` for direct and
/// Step Functions invocations (the handler fills in the Lambda request id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub kind: SourceKind,
    pub id: Option<String>,
}

/// One candidate from the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A string that should be an image build-version ARN (not yet validated).
    Candidate(String),
    /// Input of no known shape: rejected with `InvalidMessage`; `input` is the raw item/body.
    Invalid { input: Value, message: String },
}

/// One retryable unit: an SQS record, or the whole invocation otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub source: Source,
    /// SQS FIFO `MessageGroupId` attribute (None for standard queues and non-SQS units).
    pub group_id: Option<String>,
    pub items: Vec<Item>,
}

/// Per-invocation options (direct, Step Functions, `BatchInput`, EventBridge `detail`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `"dryRun": true` (can only turn dry run on, never off).
    pub dry_run: bool,
}

/// A decoded invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub kind: InvocationKind,
    pub units: Vec<Unit>,
    pub options: Options,
}

/// The whole invocation is of no known shape (error type `InvalidEvent`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidEvent(pub String);

/// Decodes any supported invocation payload. SQS records are judged one by one: a poison
/// record becomes an `Item::Invalid`, never an `Err`.
pub fn decode(_event: &Value) -> Result<Decoded, InvalidEvent> {
    todo!()
}
