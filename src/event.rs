//! Event decoding (pure: no AWS SDK): every input shape  → units of items.
//!
//! This is the one decoding point. A *unit* is what the caller can retry on its own: one SQS
//! record, or the whole invocation for EventBridge / direct / Step Functions. An *item* is
//! one candidate ARN string (validated later by [`crate::arn`]) or an input of no known shape.

use aws_lambda_events::sqs::SqsMessage;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::output_resources::mode::Mode;
use crate::retention::{Expect, MapItem};

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

/// The options of one item, decided at decode time from every level that names them
/// (invocation / `BatchInput` / EventBridge `detail`, SQS body, array element).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemOptions {
    /// The OR of every level's `dryRun`: a level can turn a dry run on, never off.
    pub dry_run: bool,
    /// The innermost level's `deleteOutputResources`; `None`: `DELETE_OUTPUT_RESOURCES`.
    pub delete_output_resources: Option<Mode>,
}

impl ItemOptions {
    /// `inner` (a level nested in this one) applied on top of these options.
    pub fn within(self, inner: ItemOptions) -> ItemOptions {
        ItemOptions {
            dry_run: self.dry_run || inner.dry_run,
            delete_output_resources: inner
                .delete_output_resources
                .or(self.delete_output_resources),
        }
    }
}

/// One candidate from the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A string that should be an image build-version ARN (not yet validated), with the
    /// options in effect for it.
    /// `plan`: the item comes from a retention plan and must still look as planned.
    Candidate {
        arn: String,
        options: ItemOptions,
        plan: Option<Box<PlanCheck>>,
    },
    /// Input of no known shape: rejected with `InvalidMessage`; `input` is the raw item/body.
    Invalid { input: Value, message: String },
}

/// What a build of a retention plan must still look like before it is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanCheck {
    pub plan_id: String,
    /// `status` and `dateCreated` as planned.
    pub expect: Expect,
    /// The plan's `excludeTagKeys`: one of them on the build now is drift. Empty until the
    /// plan a Map item names has been read.
    pub exclude_tag_keys: Vec<String>,
}

/// The top-level keys of a retention plan request and of a plan execution.
pub const PLAN_REQUEST_KEYS: [&str; 2] = ["plan", "executePlan"];

/// The keys that make an element a retention plan's Map item.
const PLAN_ITEM_KEYS: [&str; 2] = ["planId", "expect"];

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
    /// Dry run asked for at the unit's level: for SQS, a `"dryRun": true` of the body (object,
    /// EventBridge `detail`, dead-letter message, or one of them wrapped in SNS); for every
    /// other unit, equal to [`Options::dry_run`]. Array elements may add a dry run of their
    /// own: each candidate's [`ItemOptions`] has the effective value.
    pub dry_run: bool,
}

/// Per-invocation options (direct, Step Functions, `BatchInput`, EventBridge `detail`).
/// Already part of every candidate's [`ItemOptions`]; kept for the invocation as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `"dryRun": true` (can only turn dry run on, never off).
    pub dry_run: bool,
    /// `"deleteOutputResources"`, validated and normalised (`none`, `amis`, `containers`,
    /// `all`).
    pub delete_output_resources: Option<String>,
}

impl From<ItemOptions> for Options {
    fn from(o: ItemOptions) -> Self {
        Options {
            dry_run: o.dry_run,
            delete_output_resources: o.delete_output_resources.map(|m| m.as_str().to_owned()),
        }
    }
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

impl Decoded {
    /// Whether everything this invocation names is a dry run: every unit asked for one, or
    /// every candidate did (and there is at least one).
    pub fn is_dry_run(&self) -> bool {
        let mut candidates = self
            .units
            .iter()
            .flat_map(|u| &u.items)
            .filter_map(|i| match i {
                Item::Candidate { options, .. } => Some(options.dry_run),
                Item::Invalid { .. } => None,
            });
        let all_units = !self.units.is_empty() && self.units.iter().all(|u| u.dry_run);
        all_units || (candidates.clone().next().is_some() && candidates.all(|d| d))
    }
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
const DRY_RUN_KEY: &str = "dryRun";
const OUTPUT_KEY: &str = "deleteOutputResources";

/// Arrays and objects inside each other from this many on are refused: serde_json's own
/// recursion limit (it reads at most 127), which [`parse_payload`] turns into a named
/// `InvalidEvent`.
pub const MAX_PAYLOAD_DEPTH: usize = 128;

/// Parses the raw invocation payload. Every payload a JSON parser refuses is `InvalidEvent`
/// with a message naming why (a number outside an f64, [`MAX_PAYLOAD_DEPTH`] levels of
/// nesting or more, not JSON at all), not a runtime deserialisation error.
pub fn parse_payload(bytes: &[u8]) -> Result<Value, InvalidEvent> {
    if nests_deeper_than(bytes, MAX_PAYLOAD_DEPTH - 1) {
        return Err(InvalidEvent(format!(
            "the payload cannot be read: it nests arrays/objects {MAX_PAYLOAD_DEPTH} levels deep or more (at most {} are read); {EXPECTED_EVENT}",
            MAX_PAYLOAD_DEPTH - 1
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let text = e.to_string();
        let why = if text.starts_with("number out of range") {
            format!("it holds a number outside the range of a 64-bit float ({e})")
        } else if text.starts_with("recursion limit exceeded") {
            format!("it nests arrays/objects {MAX_PAYLOAD_DEPTH} levels deep or more ({e})")
        } else {
            format!("it is not valid JSON ({e})")
        };
        InvalidEvent(format!(
            "the payload cannot be read: {why}; {EXPECTED_EVENT}"
        ))
    })
}

/// Whether the arrays and objects of `json` nest deeper than `limit` (brackets inside strings
/// do not count). A scan, so a hostile payload is refused before anything recurses into it.
fn nests_deeper_than(json: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        match (in_string, b) {
            (true, _) if escaped => escaped = false,
            (true, b'\\') => escaped = true,
            (true, b'"') | (false, b'"') => in_string = !in_string,
            (false, b'[' | b'{') => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            (false, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

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
            if is_plan_item(obj) {
                // A Distributed Map without ItemBatcher passes each item as the whole input.
                let mut body = Body::direct();
                body.element(event, ItemOptions::default());
                let opts = ItemOptions::default();
                return body.single(InvocationKind::Direct, SourceKind::Direct, None, opts);
            }
            if obj.contains_key(ARN_KEY) || obj.contains_key(ARNS_KEY) {
                let level = read_level(obj).map_err(InvalidEvent)?;
                let mut body = Body::direct();
                body.arn_fields(obj, level);
                return body.single(InvocationKind::Direct, SourceKind::Direct, None, level);
            }
            Err(InvalidEvent(format!(
                "unrecognised event: an object with keys [{}]; {EXPECTED_EVENT}",
                key_list(obj)
            )))
        }
        Value::Array(elements) => {
            let mut body = Body::direct();
            body.items.reserve(elements.len());
            elements
                .iter()
                .for_each(|e| body.element(e, ItemOptions::default()));
            body.single(
                InvocationKind::Direct,
                SourceKind::Direct,
                None,
                ItemOptions::default(),
            )
        }
        other => Err(InvalidEvent(format!(
            "unrecognised event: {}; {EXPECTED_EVENT}",
            describe(other)
        ))),
    }
}

/// A retention plan execution, `{"executePlan": …, "dryRun"?, "deleteOutputResources"?}`:
/// the value of `executePlan` and the options of the request. Any other key is refused: a
/// mistyped option must not turn a preview into a delete.
pub fn plan_execution(event: &Value) -> Result<(&Value, ItemOptions), InvalidEvent> {
    let obj = event.as_object().ok_or_else(|| {
        InvalidEvent(format!(
            "a plan execution must be a JSON object, got {}",
            describe(event)
        ))
    })?;
    let plan = obj
        .get("executePlan")
        .ok_or_else(|| InvalidEvent("a plan execution needs executePlan".to_owned()))?;
    let level = read_level(obj).map_err(InvalidEvent)?;
    if let Some(key) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "executePlan" | DRY_RUN_KEY | OUTPUT_KEY))
    {
        return Err(InvalidEvent(format!(
            "unknown key {} in a plan execution; the keys are executePlan, dryRun and deleteOutputResources",
            crate::arn::quote(key)
        )));
    }
    Ok((plan, level))
}

/// The decoded invocation of a plan execution: one direct unit of the plan's items.
pub fn planned(items: Vec<Item>, level: ItemOptions) -> Decoded {
    Decoded {
        kind: InvocationKind::Direct,
        units: vec![Unit {
            source: Source {
                kind: SourceKind::Direct,
                id: None,
            },
            group_id: None,
            items,
            dry_run: level.dry_run,
        }],
        options: level.into(),
    }
}

fn is_eventbridge(obj: &Map<String, Value>) -> bool {
    obj.contains_key("detail-type") && obj.contains_key("source") && obj.contains_key("detail")
}

/// Reads the options of one level (`dryRun`, `deleteOutputResources`). Anything that could
/// be a mistaken option is an error naming the field, never ignored: an ignored
/// `"dryRun": "true"` or `"dry_run": true` would turn a preview into a delete.
fn read_level(obj: &Map<String, Value>) -> Result<ItemOptions, String> {
    if let Some((key, meant)) = obj.keys().find_map(|k| Some((k, misspelt_option(k)?))) {
        return Err(format!(
            "{key:?} is not an option: option names are exact, did you mean {meant:?}?"
        ));
    }
    let dry_run = match obj.get(DRY_RUN_KEY) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(format!("dryRun must be a boolean, got {}", describe(other))),
    };
    let delete_output_resources = match obj.get(OUTPUT_KEY) {
        None => None,
        Some(Value::String(s)) => match crate::config::parse_output_resources(OUTPUT_KEY, s) {
            Ok(mode) => Some(mode),
            Err(e) => {
                return Err(format!(
                    "\"deleteOutputResources\": {s:?} is not valid; expected {}",
                    e.expected
                ))
            }
        },
        Some(other) => {
            return Err(format!(
                "deleteOutputResources must be a string, got {}",
                describe(other)
            ))
        }
    };
    Ok(ItemOptions {
        dry_run,
        delete_output_resources,
    })
}

/// The option `key` is a variant of (by case, `_` or `-`: `dry_run`, `DryRun`, `dryrun`),
/// unless it is the option itself.
fn misspelt_option(key: &str) -> Option<&'static str> {
    if key == DRY_RUN_KEY || key == OUTPUT_KEY || key.len() > OUTPUT_KEY.len() * 2 {
        return None;
    }
    let folded: String = key
        .chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    [DRY_RUN_KEY, OUTPUT_KEY]
        .into_iter()
        .find(|option| option.eq_ignore_ascii_case(&folded))
}

fn decode_eventbridge(obj: &Map<String, Value>) -> Result<Decoded, InvalidEvent> {
    if let Some(key) = obj
        .get("detail")
        .and_then(Value::as_object)
        .and_then(|d| PLAN_REQUEST_KEYS.into_iter().find(|k| d.contains_key(*k)))
    {
        return Err(InvalidEvent(format!(
            "EventBridge detail.{key}: retention plans are made and executed only by a direct invocation or Step Functions, on purpose, never from an event"
        )));
    }
    let level = match obj.get("detail") {
        Some(Value::Object(detail)) => {
            read_level(detail).map_err(|e| InvalidEvent(format!("EventBridge detail: {e}")))?
        }
        _ => ItemOptions::default(),
    };
    let mut body = Body::default();
    body.eventbridge_items(obj, level);
    let id = obj.get("id").and_then(Value::as_str).map(str::to_owned);
    body.single(
        InvocationKind::EventBridge,
        SourceKind::EventBridge,
        id,
        level,
    )
}

fn decode_item_batch(items: &Value, batch_input: Option<&Value>) -> Result<Decoded, InvalidEvent> {
    let Value::Array(items) = items else {
        return Err(InvalidEvent(format!(
            "Step Functions ItemBatcher batch: Items must be an array, got {}; {EXPECTED_EVENT}",
            describe(items)
        )));
    };
    // Step Functions omits BatchInput when the state machine sets none.
    let level = match batch_input {
        None | Some(Value::Null) => ItemOptions::default(),
        Some(Value::Object(input)) => {
            read_level(input).map_err(|e| InvalidEvent(format!("BatchInput: {e}")))?
        }
        Some(other) => {
            return Err(InvalidEvent(format!(
                "Step Functions ItemBatcher batch: BatchInput must be an object, got {}",
                describe(other)
            )))
        }
    };
    let mut body = Body::direct();
    body.items.reserve(items.len());
    items.iter().for_each(|e| body.element(e, level));
    body.single(
        InvocationKind::StepFunctionsBatch,
        SourceKind::StepFunctions,
        None,
        level,
    )
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
            decoded.body_str(&body, 0, ItemOptions::default());
            if let Some(error) = decoded.option_error.take() {
                // A bad option anywhere in the body puts the sender's intent for every item
                // in doubt: the whole record is rejected, as it was sent.
                decoded.items.clear();
                decoded.invalid(
                    body_input(body),
                    format!("{error}; nothing of this record is processed"),
                );
            } else if decoded.items.is_empty() {
                decoded.invalid(body_input(body), format!("the body names no ARN; {EXPECTED_BODY}"));
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

/// An SQS body as the `input` of its rejection: the JSON it holds, else the text.
fn body_input(body: String) -> Value {
    serde_json::from_str(&body).unwrap_or(Value::String(body))
}

/// The items (and dry-run wish) of one SQS body, or of a non-SQS event's ARN fields.
#[derive(Default)]
struct Body {
    items: Vec<Item>,
    /// A `dryRun` of the body's own levels (object, `detail`, dead-letter message).
    dry_run: bool,
    /// The first bad option met (misspelt, wrongly typed, invalid value).
    option_error: Option<String>,
    /// Whether retention plan Map items are accepted (direct and Step Functions only).
    plan_items: bool,
}

impl Body {
    /// A direct or Step Functions input, where retention plan Map items are accepted.
    fn direct() -> Self {
        Body {
            plan_items: true,
            ..Body::default()
        }
    }

    fn invalid(&mut self, input: Value, message: String) {
        self.items.push(Item::Invalid { input, message });
    }

    fn candidate(&mut self, arn: &str, options: ItemOptions) {
        self.items.push(Item::Candidate {
            arn: arn.to_owned(),
            options,
            plan: None,
        });
    }

    /// Reads one level's options on top of `outer`; `None` (and the error noted) when they
    /// are bad. `context` prefixes the message.
    fn level(
        &mut self,
        obj: &Map<String, Value>,
        outer: ItemOptions,
        context: &str,
    ) -> Option<ItemOptions> {
        match read_level(obj) {
            Ok(level) => Some(outer.within(level)),
            Err(e) => {
                self.option_error.get_or_insert(format!("{context}{e}"));
                None
            }
        }
    }

    /// A non-SQS invocation: one unit, or `InvalidEvent` when any level had a bad option.
    fn single(
        self,
        kind: InvocationKind,
        source: SourceKind,
        id: Option<String>,
        level: ItemOptions,
    ) -> Result<Decoded, InvalidEvent> {
        if let Some(e) = self.option_error {
            return Err(InvalidEvent(e));
        }
        Ok(Decoded {
            kind,
            units: vec![Unit {
                source: Source { kind: source, id },
                group_id: None,
                items: self.items,
                dry_run: level.dry_run,
            }],
            options: level.into(),
        })
    }

    /// A body (or a string nested in one): a bare ARN, or JSON of a known shape.
    fn body_str(&mut self, raw: &str, depth: usize, opts: ItemOptions) {
        let text = raw.trim();
        if text.starts_with("arn:") {
            self.candidate(text, opts);
            return;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(value) => self.value(&value, depth + 1, opts),
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
    fn value(&mut self, value: &Value, depth: usize, opts: ItemOptions) {
        if depth > MAX_DEPTH {
            self.invalid(
                value.clone(),
                format!("the body nests more than {MAX_DEPTH} levels deep; {EXPECTED_BODY}"),
            );
            return;
        }
        match value {
            Value::String(s) => self.body_str(s, depth, opts),
            Value::Array(elements) => {
                self.items.reserve(elements.len());
                elements.iter().for_each(|e| self.element(e, opts));
            }
            Value::Object(obj) => self.object(obj, value, depth, opts),
            other => self.invalid(
                other.clone(),
                format!("the body is {}; {EXPECTED_BODY}", describe(other)),
            ),
        }
    }

    fn object(&mut self, obj: &Map<String, Value>, value: &Value, depth: usize, opts: ItemOptions) {
        if is_eventbridge(obj) {
            let opts = match obj.get("detail") {
                Some(Value::Object(detail)) => {
                    let Some(level) = self.level(detail, opts, "EventBridge detail: ") else {
                        return;
                    };
                    self.dry_run |= level.dry_run;
                    level
                }
                _ => opts,
            };
            self.eventbridge_items(obj, opts);
        } else if obj.get("Type").and_then(Value::as_str) == Some("Notification") {
            match obj.get("Message") {
                Some(Value::String(message)) => self.body_str(message, depth, opts),
                _ => self.invalid(
                    value.clone(),
                    format!("the SNS notification has no string Message; {EXPECTED_BODY}"),
                ),
            }
        } else if obj.contains_key(ARN_KEY) || obj.contains_key(ARNS_KEY) {
            if let Some(level) = self.level(obj, opts, "") {
                self.dry_run |= level.dry_run;
                self.arn_fields(obj, level);
            }
        } else if let Some(key) = PLAN_REQUEST_KEYS.into_iter().find(|k| obj.contains_key(*k)) {
            self.invalid(
                value.clone(),
                format!("a retention plan request ({key}) is not accepted from a queue or an event: plans are made and executed only by a direct invocation or Step Functions"),
            );
        } else if let (Some(input), true) = (obj.get("input"), obj.contains_key("errorCode")) {
            self.dead_letter_input(obj, input, depth, opts);
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

    /// Our dead letter of a rejected input: judge the original input again with the options
    /// it was sent with, so a redrive after a configuration fix (e.g. ALLOWED_ACCOUNT_IDS)
    /// repeats the request as it was made. A cut input cannot be judged again: only part of
    /// the request survived.
    fn dead_letter_input(
        &mut self,
        obj: &Map<String, Value>,
        input: &Value,
        depth: usize,
        opts: ItemOptions,
    ) {
        if obj.get("inputTruncated") == Some(&Value::Bool(true)) {
            self.invalid(
                Value::Object(obj.clone()),
                "the dead-letter message's input was cut to fit SQS's size limit (inputTruncated), so it cannot be retried; resend the original request".to_owned(),
            );
            return;
        }
        if let Some(level) = self.level(obj, opts, "") {
            self.dry_run |= level.dry_run;
            self.value(input, depth + 1, level);
        }
    }

    /// `imageBuildVersionArn` then `imageBuildVersionArns`, each wrongly typed value an
    /// `Item::Invalid` of its own.
    fn arn_fields(&mut self, obj: &Map<String, Value>, opts: ItemOptions) {
        match obj.get(ARN_KEY) {
            None => {}
            Some(Value::String(s)) => self.candidate(s, opts),
            Some(other) => self.invalid(
                other.clone(),
                format!("{ARN_KEY} must be a string, got {}", describe(other)),
            ),
        }
        match obj.get(ARNS_KEY) {
            None => {}
            Some(Value::Array(elements)) => {
                self.items.reserve(elements.len());
                elements.iter().for_each(|e| self.element(e, opts));
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

    /// One element of an ARN array or ItemBatcher `Items`: an ARN, or an object with one and
    /// options of its own.
    fn element(&mut self, element: &Value, opts: ItemOptions) {
        match element {
            Value::String(s) => self.candidate(s, opts),
            Value::Object(obj) if is_plan_item(obj) => self.plan_item(element, opts),
            Value::Object(obj) => match obj.get(ARN_KEY) {
                Some(Value::String(s)) => {
                    let context = format!("the element for {}: ", crate::arn::quote(s));
                    if let Some(level) = self.level(obj, opts, &context) {
                        self.candidate(s, level);
                    }
                }
                _ => self.invalid(element.clone(), EXPECTED_ELEMENT.to_owned()),
            },
            other => self.invalid(
                other.clone(),
                format!("{EXPECTED_ELEMENT}, got {}", describe(other)),
            ),
        }
    }

    /// A retention plan's Map item `{"imageBuildVersionArn", "planId", "expect"}`: a
    /// candidate that must still look as planned. Refused outside direct and Step Functions
    /// inputs, and when it has any other key (options travel in `BatchInput`).
    fn plan_item(&mut self, element: &Value, opts: ItemOptions) {
        if !self.plan_items {
            self.invalid(
                element.clone(),
                "a retention plan item is not accepted from a queue or an event: plans are executed only by a direct invocation or Step Functions".to_owned(),
            );
            return;
        }
        match serde_json::from_value::<MapItem>(element.clone()) {
            Ok(item) => self.items.push(Item::Candidate {
                arn: item.image_build_version_arn,
                options: opts,
                plan: Some(Box::new(PlanCheck {
                    plan_id: item.plan_id,
                    expect: item.expect,
                    exclude_tag_keys: Vec::new(),
                })),
            }),
            Err(e) => self.invalid(
                element.clone(),
                format!("not a retention plan item ({e}); expected {{\"imageBuildVersionArn\", \"planId\", \"expect\": {{\"status\", \"dateCreated\"}}}}"),
            ),
        }
    }

    /// An EventBridge event's ARNs: the `detail` fields, else the Image Builder image ARNs in
    /// `resources` (where `aws.imagebuilder` state-change events carry them); never nothing.
    fn eventbridge_items(&mut self, event: &Map<String, Value>, opts: ItemOptions) {
        let before = self.items.len();
        let detail = event.get("detail");
        match detail {
            Some(Value::Object(d)) if d.contains_key(ARN_KEY) || d.contains_key(ARNS_KEY) => {
                self.arn_fields(d, opts);
            }
            _ => {
                let resources = event.get("resources").and_then(Value::as_array);
                for resource in resources.into_iter().flatten() {
                    if let Some(arn) = resource.as_str().filter(|s| is_imagebuilder_image_arn(s)) {
                        self.candidate(arn, opts);
                    }
                }
            }
        }
        if self.items.len() == before && self.option_error.is_none() {
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

/// Whether an object is (meant as) a retention plan's Map item.
fn is_plan_item(obj: &Map<String, Value>) -> bool {
    PLAN_ITEM_KEYS.iter().any(|k| obj.contains_key(*k))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const X: &str = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/1";
    const Y: &str = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/2";

    fn sqs(body: &str) -> Value {
        json!({"Records": [{"messageId": "m-1", "body": body, "eventSource": "aws:sqs"}]})
    }

    /// (ARN, options) of every candidate of every unit, in order.
    fn candidates(decoded: &Decoded) -> Vec<(&str, ItemOptions)> {
        let items = decoded.units.iter().flat_map(|u| &u.items);
        items
            .filter_map(|i| match i {
                Item::Candidate { arn, options, .. } => Some((arn.as_str(), *options)),
                Item::Invalid { .. } => None,
            })
            .collect()
    }

    const DRY: ItemOptions = ItemOptions {
        dry_run: true,
        delete_output_resources: None,
    };

    #[test]
    fn an_element_option_applies_to_that_element_only() {
        let body = json!([{"imageBuildVersionArn": X, "dryRun": true}, Y]).to_string();
        let decoded = decode(&sqs(&body)).unwrap();
        assert_eq!(
            candidates(&decoded),
            [(X, DRY), (Y, ItemOptions::default())]
        );
        assert!(
            !decoded.units[0].dry_run,
            "the body itself asked for nothing"
        );
    }

    #[test]
    fn dry_run_is_the_or_of_every_level() {
        // GIVEN a body-level dry run and an element that says false
        let body = json!({"dryRun": true,
            "imageBuildVersionArns": [{"imageBuildVersionArn": X, "dryRun": false}]});
        let decoded = decode(&sqs(&body.to_string())).unwrap();
        // THEN the element is still a dry run: no level can turn it off
        assert_eq!(candidates(&decoded), [(X, DRY)]);
        // AND the same holds for BatchInput and the Items of a Step Functions batch
        let batch = json!({"Items": [{"imageBuildVersionArn": X, "dryRun": false}, Y],
                           "BatchInput": {"dryRun": true}});
        assert_eq!(candidates(&decode(&batch).unwrap()), [(X, DRY), (Y, DRY)]);
    }

    #[test]
    fn the_innermost_delete_output_resources_wins() {
        let event = json!({"Items": [{"imageBuildVersionArn": X, "deleteOutputResources": "NONE"}, Y],
                           "BatchInput": {"deleteOutputResources": "all"}});
        let decoded = decode(&event).unwrap();
        let modes: Vec<_> = candidates(&decoded)
            .into_iter()
            .map(|(_, o)| o.delete_output_resources)
            .collect();
        assert_eq!(modes, [Some(Mode::None), Some(Mode::All)]);
        assert_eq!(
            decoded.options.delete_output_resources.as_deref(),
            Some("all")
        );
    }

    #[test]
    fn option_names_are_exact() {
        for key in [
            "dry_run",
            "DryRun",
            "dryrun",
            "DRY-RUN",
            "Dry_Run",
            "delete_output_resources",
            "DeleteOutputResources",
            "delete-output-resources",
        ] {
            assert!(misspelt_option(key).is_some(), "{key}");
            let event = json!({ "imageBuildVersionArn": X, key: true });
            let err = decode(&event).unwrap_err();
            assert!(
                err.0.contains(key) && err.0.contains("did you mean"),
                "{err}"
            );
            // In an SQS body the record is rejected whole, as it was sent.
            let decoded = decode(&sqs(&event.to_string())).unwrap();
            assert!(
                matches!(&decoded.units[0].items[..], [Item::Invalid { input, .. }] if *input == event),
                "{key}: {decoded:?}"
            );
        }
        for key in [
            "dryRun",
            "deleteOutputResources",
            "dryRunX",
            "imageBuildVersionArn",
            "dry",
        ] {
            assert_eq!(misspelt_option(key), None, "{key}");
        }
    }

    #[test]
    fn a_bad_option_on_an_element_is_invalid_event_outside_sqs() {
        for event in [
            json!([{"imageBuildVersionArn": X, "dryRun": "true"}]),
            json!({"imageBuildVersionArns": [{"imageBuildVersionArn": X, "deleteOutputResources": 1}]}),
            json!({"Items": [{"imageBuildVersionArn": X, "deleteOutputResources": "snapshots"}]}),
        ] {
            let err = decode(&event).unwrap_err();
            assert!(err.0.contains(X), "the message names the element: {err}");
        }
    }

    #[test]
    fn payloads_a_parser_refuses_are_invalid_event_naming_why() {
        let nested = |n: usize| format!("{}\"{X}\"{}", "[".repeat(n), "]".repeat(n));
        for (payload, named) in [
            (
                r#"{"imageBuildVersionArns": [1e400]}"#.to_string(),
                "64-bit float",
            ),
            ("[-1e999]".to_string(), "64-bit float"),
            (format!("[{}]", "9".repeat(400)), "64-bit float"),
            (nested(300), "128 levels deep or more"),
            (nested(MAX_PAYLOAD_DEPTH), "128 levels deep or more"),
            ("{\"a\": ".to_string(), "not valid JSON"),
        ] {
            let err = parse_payload(payload.as_bytes()).unwrap_err();
            assert!(err.0.contains(named), "{payload:.40}: {err}");
            assert!(err.0.contains("expected one of"), "{err}");
        }
        // Brackets inside strings do not nest; 127 levels are read.
        let text = format!("[\"{}\\\"\"]", "[".repeat(500));
        assert!(parse_payload(text.as_bytes()).is_ok());
        assert!(parse_payload(nested(MAX_PAYLOAD_DEPTH - 1).as_bytes()).is_ok());
        let v = parse_payload(br#"{"imageBuildVersionArns": [1.5e300]}"#).unwrap();
        assert!(decode(&v).is_ok());
    }
}

/// Property tests of the decoding point: arbitrary JSON (with the SQS, SNS, EventBridge and
/// dead-letter shapes mixed in) and arbitrary SQS bodies never panic and never lose a
/// record; `arn::parse` never panics. 256 cases per property (or `PROPTEST_CASES`).
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Strings that steer decoding: ARNs good and bad, option keys and their misspellings.
    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/1".to_string()),
            Just("arn:aws:imagebuilder:US-EAST-1:123456789012:image/web/1.0.0".to_string()),
            Just("arn:aws-cn:imagebuilder:cn-north-1:aws:image/x/1.2.3/4".to_string()),
            Just("arn:aws:ec2:us-east-1::image/ami-1".to_string()),
            Just(ARN_KEY.to_string()),
            Just(ARNS_KEY.to_string()),
            Just("dryRun".to_string()),
            Just("dry_run".to_string()),
            Just("deleteOutputResources".to_string()),
            Just("Type".to_string()),
            Just("Notification".to_string()),
            Just("Message".to_string()),
            Just("errorCode".to_string()),
            Just("input".to_string()),
            Just("inputTruncated".to_string()),
            Just("Items".to_string()),
            Just("BatchInput".to_string()),
            Just("detail".to_string()),
            Just("detail-type".to_string()),
            Just("source".to_string()),
            Just("resources".to_string()),
            ".{0,12}",
            "arn:[a-z:/0-9.-]{0,60}",
        ]
    }

    /// Arbitrary JSON, nested a few levels, built from [`word`]s.
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<f64>().prop_map(|f| json!(f)),
            any::<i64>().prop_map(|i| json!(i)),
            word().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((word(), inner.clone()), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
                // A JSON text inside a string, as SQS bodies and SNS Messages carry them.
                inner.prop_map(|v| Value::String(v.to_string())),
            ]
        })
    }

    /// An SQS body: arbitrary text, or the JSON text of an arbitrary value.
    fn body() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), word(), value().prop_map(|v| v.to_string())]
    }

    fn sqs_event(bodies: &[String]) -> Value {
        let records: Vec<Value> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| json!({"messageId": format!("m-{i}"), "body": b, "eventSource": "aws:sqs"}))
            .collect();
        json!({ "Records": records })
    }

    proptest! {
        #[test]
        fn decode_never_panics(v in value()) {
            let _ = decode(&v);
            let _ = decode(&json!({"Records": [{"messageId": "m", "body": v.to_string(),
                "eventSource": "aws:sqs"}]}));
            let _ = decode(&json!({"Items": [v.clone()], "BatchInput": v.clone()}));
            let _ = decode(&json!({"detail-type": "t", "source": "s", "detail": v}));
        }

        #[test]
        fn every_sqs_record_is_accounted_for(bodies in prop::collection::vec(body(), 1..6)) {
            let decoded = decode(&sqs_event(&bodies)).expect("an SQS event always decodes");
            prop_assert_eq!(decoded.units.len(), bodies.len());
            for (i, unit) in decoded.units.iter().enumerate() {
                let id = format!("m-{i}");
                prop_assert_eq!(unit.source.id.as_deref(), Some(id.as_str()));
                prop_assert!(!unit.items.is_empty(), "record {} yields nothing: {:?}", i, bodies[i]);
            }
        }

        #[test]
        fn parsing_never_panics(s in any::<String>(), w in word(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            for text in [&s, &w] {
                if let Ok(arn) = crate::arn::parse(text) {
                    prop_assert_eq!(arn.as_str(), text.trim());
                    prop_assert!(arn.as_str().contains(arn.region()));
                }
            }
            let _ = parse_payload(&bytes);
            let _ = parse_payload(s.as_bytes());
        }
    }
}
