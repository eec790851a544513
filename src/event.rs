//! Event decoding (pure: no AWS SDK): every input shape  → units of items.
//!
//! This is the one decoding point. A *unit* is what the caller can retry on its own: one SQS
//! record, or the whole invocation for EventBridge / direct / Step Functions. An *item* is
//! one candidate ARN string (validated later by [`crate::arn`]) or an input of no known shape.

use aws_lambda_events::sqs::SqsMessage;
use serde::Deserialize;
use serde_json::{Map, Value};

/// How the function was invoked; decides where failures go.
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
    /// An SQS record (id: `messageId`).
    Sqs,
    /// An EventBridge event (id: the event `id`).
    EventBridge,
    /// A Step Functions Distributed Map batch.
    StepFunctions,
    /// A direct invoke or a Step Functions task.
    Direct,
}

impl SourceKind {
    /// The stable name used in dead-letter messages and logs.
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
    /// What kind of invocation the item came from.
    pub kind: SourceKind,
    /// SQS `messageId` / EventBridge event `id`; `None` when the input has none.
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
    /// Where the unit came from (an SQS unit with `id: None` cannot be put in
    /// `batchItemFailures`; its only item is then an [`Item::Invalid`], see [`decode`]).
    pub source: Source,
    /// SQS FIFO `MessageGroupId` attribute (None for standard queues and non-SQS units).
    pub group_id: Option<String>,
    /// The unit's items, in input order.
    pub items: Vec<Item>,
    /// Dry run asked for by this unit: for SQS, a `"dryRun": true` inside the body (object,
    /// EventBridge `detail`, or either one wrapped in SNS); for every other unit, equal to
    /// [`Options::dry_run`]. Like the invocation option it can only turn dry run on.
    pub dry_run: bool,
}

/// Per-invocation options (direct, Step Functions, `BatchInput`, EventBridge `detail`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `"dryRun": true` (can only turn dry run on, never off).
    pub dry_run: bool,
    /// `"deleteOutputResources"`: passed through as given (only checked to be a string); read
    /// from the same places as `dryRun`, not from SQS bodies.
    pub delete_output_resources: Option<String>,
}

/// A decoded invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// How the function was invoked.
    pub kind: InvocationKind,
    /// The retryable units, in input order (exactly one unless SQS).
    pub units: Vec<Unit>,
    /// Invocation options (all default for SQS: options there are per unit).
    pub options: Options,
}

/// The whole invocation is of no known shape (error type `InvalidEvent`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidEvent(pub String);

/// How deep an SQS body may nest (SNS envelope → JSON string → dead-letter `input` → …)
/// before it is judged invalid; real inputs need at most 3, a cycle of re-wrapping is a bug.
const MAX_DEPTH: usize = 4;

/// Accepted whole-invocation shapes, named in every `InvalidEvent`.
const EXPECTED_EVENT: &str = "expected one of: an SQS event (Records with eventSource \"aws:sqs\"); an EventBridge event (detail-type, source, detail); an object with imageBuildVersionArn (string) and/or imageBuildVersionArns (array); a JSON array of ARNs; a Step Functions ItemBatcher batch {\"Items\": [...], \"BatchInput\": {...}}";

/// Accepted SQS body shapes, named in every invalid body.
const EXPECTED_BODY: &str = "expected an SQS body that is an image build version ARN, a JSON object with imageBuildVersionArn / imageBuildVersionArns, a JSON array of ARNs, an EventBridge event, an SNS notification, or a dead-letter message of this function";

/// Accepted array elements / batch items.
const EXPECTED_ELEMENT: &str =
    "expected an ARN string or an object with a string imageBuildVersionArn";

const ARN_KEY: &str = "imageBuildVersionArn";
const ARNS_KEY: &str = "imageBuildVersionArns";

/// Decodes any supported invocation payload. SQS records are judged one by one: a poison
/// record becomes an `Item::Invalid`, never an `Err`.
///
/// Recognition order for a top-level object: `Records` (SQS), EventBridge
/// (`detail-type` + `source` + `detail`), `Items` (ItemBatcher), then the direct object.
/// Two choices the contract leaves open:
/// - an SQS record without a `messageId` (never sent by SQS, but possible in a hand-made
///   event) cannot be named in `batchItemFailures`, so nothing of it may ever need a retry:
///   it becomes a unit with `id: None` whose single item is `Item::Invalid` (input: its body),
///   i.e. it is dead-lettered instead of processed;
/// - an SQS body or EventBridge event that names no ARN at all yields one `Item::Invalid`
///   rather than nothing, so a mistaken message is visible in the DLQ. A direct invocation
///   with an empty list is simply a request for nothing.
pub fn decode(event: &Value) -> Result<Decoded, InvalidEvent> {
    match event {
        Value::Object(obj) => {
            if let Some(records) = obj.get("Records") {
                return decode_sqs(records);
            }
            if is_eventbridge(obj) {
                return decode_eventbridge(obj);
            }
            if let Some(items) = obj.get("Items") {
                return decode_item_batch(items, obj.get("BatchInput"));
            }
            if obj.contains_key(ARN_KEY) || obj.contains_key(ARNS_KEY) {
                let options = read_options(obj).map_err(InvalidEvent)?;
                let mut body = Body::default();
                body.arn_fields(obj);
                return Ok(single(
                    InvocationKind::Direct,
                    Source {
                        kind: SourceKind::Direct,
                        id: None,
                    },
                    body.items,
                    options,
                ));
            }
            Err(InvalidEvent(format!(
                "unrecognised event: an object with keys [{}]; {EXPECTED_EVENT}",
                key_list(obj)
            )))
        }
        Value::Array(elements) => {
            let mut body = Body::default();
            body.items.reserve(elements.len());
            elements.iter().for_each(|e| body.element(e));
            Ok(single(
                InvocationKind::Direct,
                Source {
                    kind: SourceKind::Direct,
                    id: None,
                },
                body.items,
                Options::default(),
            ))
        }
        other => Err(InvalidEvent(format!(
            "unrecognised event: {}; {EXPECTED_EVENT}",
            describe(other)
        ))),
    }
}

/// A non-SQS invocation: one unit that carries the invocation's dry-run option.
fn single(kind: InvocationKind, source: Source, items: Vec<Item>, options: Options) -> Decoded {
    Decoded {
        kind,
        units: vec![Unit {
            source,
            group_id: None,
            items,
            dry_run: options.dry_run,
        }],
        options,
    }
}

fn is_eventbridge(obj: &Map<String, Value>) -> bool {
    obj.contains_key("detail-type") && obj.contains_key("source") && obj.contains_key("detail")
}

/// Reads `dryRun` / `deleteOutputResources`; a wrongly typed option is an error (naming the
/// field) rather than ignored, because a `"dryRun": "true"` ignored would delete.
fn read_options(obj: &Map<String, Value>) -> Result<Options, String> {
    let dry_run = match obj.get("dryRun") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(format!("dryRun must be a boolean, got {}", describe(other))),
    };
    let delete_output_resources = match obj.get("deleteOutputResources") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(format!(
                "deleteOutputResources must be a string, got {}",
                describe(other)
            ))
        }
    };
    Ok(Options {
        dry_run,
        delete_output_resources,
    })
}

fn decode_eventbridge(obj: &Map<String, Value>) -> Result<Decoded, InvalidEvent> {
    let options = match obj.get("detail") {
        Some(Value::Object(detail)) => {
            read_options(detail).map_err(|e| InvalidEvent(format!("EventBridge detail: {e}")))?
        }
        _ => Options::default(),
    };
    let mut body = Body::default();
    body.eventbridge_items(obj);
    let id = obj.get("id").and_then(Value::as_str).map(str::to_owned);
    Ok(single(
        InvocationKind::EventBridge,
        Source {
            kind: SourceKind::EventBridge,
            id,
        },
        body.items,
        options,
    ))
}

fn decode_item_batch(items: &Value, batch_input: Option<&Value>) -> Result<Decoded, InvalidEvent> {
    let Value::Array(items) = items else {
        return Err(InvalidEvent(format!(
            "Step Functions ItemBatcher batch: Items must be an array, got {}; {EXPECTED_EVENT}",
            describe(items)
        )));
    };
    // Step Functions omits BatchInput when the state machine sets none.
    let options = match batch_input {
        None | Some(Value::Null) => Options::default(),
        Some(Value::Object(input)) => {
            read_options(input).map_err(|e| InvalidEvent(format!("BatchInput: {e}")))?
        }
        Some(other) => {
            return Err(InvalidEvent(format!(
                "Step Functions ItemBatcher batch: BatchInput must be an object, got {}",
                describe(other)
            )))
        }
    };
    let mut body = Body::default();
    body.items.reserve(items.len());
    items.iter().for_each(|e| body.element(e));
    Ok(single(
        InvocationKind::StepFunctionsBatch,
        Source {
            kind: SourceKind::StepFunctions,
            id: None,
        },
        body.items,
        options,
    ))
}

/// `eventSource` of an SQS record; SNS records spell it `EventSource`.
fn event_source(record: &Value) -> Option<&str> {
    record
        .get("eventSource")
        .or_else(|| record.get("EventSource"))
        .and_then(Value::as_str)
}

fn decode_sqs(records: &Value) -> Result<Decoded, InvalidEvent> {
    let Value::Array(records) = records else {
        return Err(InvalidEvent(format!(
            "Records must be an array of SQS records, got {}; {EXPECTED_EVENT}",
            describe(records)
        )));
    };
    // The batch is SQS when its records say so; a record of another service means the function
    // is wired to a source it does not support, which must fail loudly, not be dead-lettered.
    let mut any_sqs = false;
    for record in records {
        match event_source(record) {
            Some("aws:sqs") => any_sqs = true,
            Some("aws:sns") => {
                return Err(InvalidEvent(
                    "SNS records are not supported directly: subscribe an SQS queue to the topic and use the queue as the event source; ".to_owned()
                        + EXPECTED_EVENT,
                ))
            }
            Some(other) => {
                return Err(InvalidEvent(format!(
                    "Records from event source {other:?} are not supported; {EXPECTED_EVENT}"
                )))
            }
            None => {}
        }
    }
    if !any_sqs {
        return Err(InvalidEvent(format!(
            "Records without any eventSource \"aws:sqs\" record; {EXPECTED_EVENT}"
        )));
    }
    let fifo = records.iter().any(|r| {
        r.get("eventSourceARN")
            .and_then(Value::as_str)
            .is_some_and(|arn| arn.ends_with(".fifo"))
    });
    Ok(Decoded {
        kind: InvocationKind::Sqs { fifo },
        units: records.iter().map(sqs_unit).collect(),
        options: Options::default(),
    })
}

/// One SQS record → one unit. Never fails: a record that does not fit the SQS message shape
/// is read field by field, and what cannot be read becomes an `Item::Invalid`.
fn sqs_unit(record: &Value) -> Unit {
    let (message_id, group_id, body) = match SqsMessage::deserialize(record) {
        Ok(mut m) => {
            let group = m.attributes.remove("MessageGroupId");
            let body = m
                .body
                .ok_or_else(|| "the SQS record has no body".to_owned());
            (m.message_id, group, body)
        }
        Err(e) => {
            // Something other than the body is off (e.g. attribute types); keep what is usable.
            let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
            let body = text(record.get("body")).ok_or_else(|| {
                format!("the SQS record has no string body (it does not fit the SQS message shape: {e})")
            });
            (
                text(record.get("messageId")),
                text(record.pointer("/attributes/MessageGroupId")),
                body,
            )
        }
    };
    let source = Source {
        kind: SourceKind::Sqs,
        id: message_id,
    };
    let mut decoded = Body::default();
    match body {
        _ if source.id.is_none() => decoded.invalid(
            record.get("body").unwrap_or(record).clone(),
            "the SQS record has no messageId, so it could not be retried through batchItemFailures; it is dead-lettered unprocessed".to_owned(),
        ),
        Ok(body) => {
            decoded.body_str(&body, 0);
            if decoded.items.is_empty() {
                let input = serde_json::from_str(&body).unwrap_or(Value::String(body));
                decoded.invalid(input, format!("the body names no ARN; {EXPECTED_BODY}"));
            }
        }
        Err(message) => decoded.invalid(record.clone(), format!("{message}; {EXPECTED_BODY}")),
    }
    Unit {
        source,
        group_id,
        items: decoded.items,
        dry_run: decoded.dry_run,
    }
}

/// The items (and dry-run wish) of one SQS body, or of a non-SQS event's ARN fields.
#[derive(Default)]
struct Body {
    items: Vec<Item>,
    dry_run: bool,
}

impl Body {
    fn invalid(&mut self, input: Value, message: String) {
        self.items.push(Item::Invalid { input, message });
    }

    /// A body (or a string nested in one): a bare ARN, or JSON of a known shape.
    fn body_str(&mut self, raw: &str, depth: usize) {
        let text = raw.trim();
        if text.starts_with("arn:") {
            self.items.push(Item::Candidate(text.to_owned()));
            return;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(value) => self.value(&value, depth + 1),
            Err(e) if text.starts_with(['{', '[', '"']) => self.invalid(
                Value::String(raw.to_owned()),
                format!("the body is not valid JSON ({e}); {EXPECTED_BODY}"),
            ),
            Err(_) => self.invalid(
                Value::String(raw.to_owned()),
                format!("the body is neither an ARN nor JSON; {EXPECTED_BODY}"),
            ),
        }
    }

    /// A parsed body value.
    fn value(&mut self, value: &Value, depth: usize) {
        if depth > MAX_DEPTH {
            self.invalid(
                value.clone(),
                format!("the body nests more than {MAX_DEPTH} levels deep; {EXPECTED_BODY}"),
            );
            return;
        }
        match value {
            Value::String(s) => self.body_str(s, depth),
            Value::Array(elements) => {
                self.items.reserve(elements.len());
                elements.iter().for_each(|e| self.element(e));
            }
            Value::Object(obj) => self.object(obj, value, depth),
            other => self.invalid(
                other.clone(),
                format!("the body is {}; {EXPECTED_BODY}", describe(other)),
            ),
        }
    }

    fn object(&mut self, obj: &Map<String, Value>, value: &Value, depth: usize) {
        if is_eventbridge(obj) {
            if let Some(Value::Object(detail)) = obj.get("detail") {
                if !self.body_dry_run(detail, value, "EventBridge detail: ") {
                    return;
                }
            }
            self.eventbridge_items(obj);
        } else if obj.get("Type").and_then(Value::as_str) == Some("Notification") {
            match obj.get("Message") {
                Some(Value::String(message)) => self.body_str(message, depth),
                _ => self.invalid(
                    value.clone(),
                    format!("the SNS notification has no string Message; {EXPECTED_BODY}"),
                ),
            }
        } else if obj.contains_key(ARN_KEY) || obj.contains_key(ARNS_KEY) {
            if self.body_dry_run(obj, value, "") {
                self.arn_fields(obj);
            }
        } else if let (Some(input), true) = (obj.get("input"), obj.contains_key("errorCode")) {
            // Our dead letter of a rejected input: judge the original input again, so a
            // redrive after a configuration fix (e.g. ALLOWED_ACCOUNT_IDS) succeeds.
            self.value(input, depth + 1);
        } else {
            self.invalid(
                value.clone(),
                format!(
                    "the body is an object with keys [{}]; {EXPECTED_BODY}",
                    key_list(obj)
                ),
            );
        }
    }

    /// Honours `"dryRun": true` inside an SQS body. A non-boolean `dryRun` makes the object
    /// invalid (returns false): deleting what the sender may have meant as a dry run is not safe.
    fn body_dry_run(&mut self, obj: &Map<String, Value>, value: &Value, context: &str) -> bool {
        match obj.get("dryRun") {
            None => true,
            Some(Value::Bool(b)) => {
                self.dry_run |= *b;
                true
            }
            Some(other) => {
                self.invalid(
                    value.clone(),
                    format!("{context}dryRun must be a boolean, got {}", describe(other)),
                );
                false
            }
        }
    }

    /// `imageBuildVersionArn` then `imageBuildVersionArns`, each wrongly typed value an
    /// `Item::Invalid` of its own.
    fn arn_fields(&mut self, obj: &Map<String, Value>) {
        match obj.get(ARN_KEY) {
            None => {}
            Some(Value::String(s)) => self.items.push(Item::Candidate(s.clone())),
            Some(other) => self.invalid(
                other.clone(),
                format!("{ARN_KEY} must be a string, got {}", describe(other)),
            ),
        }
        match obj.get(ARNS_KEY) {
            None => {}
            Some(Value::Array(elements)) => {
                self.items.reserve(elements.len());
                elements.iter().for_each(|e| self.element(e));
            }
            Some(other) => self.invalid(
                other.clone(),
                format!(
                    "{ARNS_KEY} must be an array of ARNs, got {}",
                    describe(other)
                ),
            ),
        }
    }

    /// One element of an ARN array or ItemBatcher `Items`.
    fn element(&mut self, element: &Value) {
        match element {
            Value::String(s) => self.items.push(Item::Candidate(s.clone())),
            Value::Object(obj) => match obj.get(ARN_KEY) {
                Some(Value::String(s)) => self.items.push(Item::Candidate(s.clone())),
                _ => self.invalid(element.clone(), EXPECTED_ELEMENT.to_owned()),
            },
            other => self.invalid(
                other.clone(),
                format!("{EXPECTED_ELEMENT}, got {}", describe(other)),
            ),
        }
    }

    /// An EventBridge event's ARNs: the `detail` fields, else the Image Builder image ARNs in
    /// `resources` (where `aws.imagebuilder` state-change events carry them); never nothing.
    fn eventbridge_items(&mut self, event: &Map<String, Value>) {
        let before = self.items.len();
        let detail = event.get("detail");
        match detail {
            Some(Value::Object(d)) if d.contains_key(ARN_KEY) || d.contains_key(ARNS_KEY) => {
                self.arn_fields(d);
            }
            _ => {
                let resources = event.get("resources").and_then(Value::as_array);
                for resource in resources.into_iter().flatten() {
                    if let Some(arn) = resource.as_str().filter(|s| is_imagebuilder_image_arn(s)) {
                        self.items.push(Item::Candidate(arn.to_owned()));
                    }
                }
            }
        }
        if self.items.len() == before {
            let mut input = Map::new();
            input.insert("detail".to_owned(), detail.cloned().unwrap_or(Value::Null));
            input.insert(
                "resources".to_owned(),
                event.get("resources").cloned().unwrap_or(Value::Null),
            );
            self.invalid(
                Value::Object(input),
                format!("the EventBridge event names no image build version ARN: expected detail.{ARN_KEY}, detail.{ARNS_KEY}, or an Image Builder image ARN in resources"),
            );
        }
    }
}

/// `arn:<partition>:imagebuilder:<region>:<account>:image/…` — any image ARN, build version
/// or not, so a version ARN in `resources` still gets its named rejection later.
fn is_imagebuilder_image_arn(s: &str) -> bool {
    let mut fields = s.trim().splitn(6, ':');
    fields.next() == Some("arn")
        && fields.next().is_some()
        && fields.next() == Some("imagebuilder")
        && fields
            .nth(2)
            .is_some_and(|resource| resource.starts_with("image/"))
}

/// The keys of an object for a message (at most 10).
fn key_list(obj: &Map<String, Value>) -> String {
    let mut keys: Vec<&str> = obj.keys().take(10).map(String::as_str).collect();
    if obj.len() > 10 {
        keys.push("…");
    }
    keys.join(", ")
}

/// A short description of a JSON value for a message (quoted and truncated if a string).
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {}", crate::arn::quote(s)),
        Value::Array(a) => format!("an array of {} element(s)", a.len()),
        Value::Object(o) => format!("an object with keys [{}]", key_list(o)),
    }
}
