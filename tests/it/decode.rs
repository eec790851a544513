//! Decoding of every sample event in `events/`: the fixtures are the README's
//! examples and the demo's inputs, so each one is pinned here, and a fixture added without a
//! test fails `every_fixture_is_covered`.

use imagebuilder_reaper::event::{
    decode, Decoded, InvalidEvent, InvocationKind, Item, ItemOptions, Options, SourceKind, Unit,
};
use serde_json::{json, Value};

use crate::support::constants::WORK_QUEUE_ARN;
use crate::support::fixtures::{fixture, fixture_names, sqs_record};

/// Where the fixtures' image ARNs live (`{A}/<name>/<version>/<build>`).
const A: &str = "arn:aws:imagebuilder:us-east-1:123456789012:image";

fn decode_fixture(name: &str) -> Decoded {
    decode(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A candidate without options of its own.
fn candidate(arn: String) -> Item {
    Item::Candidate {
        arn,
        options: ItemOptions::default(),
        plan: None,
    }
}

fn candidates(unit: &Unit) -> Vec<&str> {
    unit.items
        .iter()
        .filter_map(|item| match item {
            Item::Candidate { arn, .. } => Some(arn.as_str()),
            Item::Invalid { .. } => None,
        })
        .collect()
}

fn invalids(unit: &Unit) -> Vec<(&Value, &str)> {
    unit.items
        .iter()
        .filter_map(|item| match item {
            Item::Invalid { input, message } => Some((input, message.as_str())),
            Item::Candidate { .. } => None,
        })
        .collect()
}

/// The `messageId`s of an SQS fixture, in order.
fn message_ids(event: &Value) -> Vec<String> {
    event["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["messageId"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts an SQS decode: kind, one unit per record with its messageId, no group ids
/// (standard queue), no invocation options.
fn assert_standard_sqs(name: &str) -> Decoded {
    let decoded = decode_fixture(name);
    assert_eq!(decoded.kind, InvocationKind::Sqs { fifo: false }, "{name}");
    assert_eq!(decoded.options, Options::default(), "{name}");
    let ids: Vec<Option<String>> = decoded.units.iter().map(|u| u.source.id.clone()).collect();
    let expected: Vec<Option<String>> = message_ids(&fixture(name)).into_iter().map(Some).collect();
    assert_eq!(ids, expected, "{name}: one unit per record, in order");
    for unit in &decoded.units {
        assert_eq!(unit.source.kind, SourceKind::Sqs);
        assert_eq!(unit.group_id, None);
    }
    decoded
}

fn only_unit(decoded: &Decoded) -> &Unit {
    assert_eq!(decoded.units.len(), 1, "non-SQS invocations are one unit");
    &decoded.units[0]
}

// ---------------------------------------------------------------- SQS

#[test]
fn sqs_bare_arn() {
    // GIVEN a record whose body is a bare ARN with a trailing newline
    // WHEN decoded
    let decoded = assert_standard_sqs("sqs-bare-arn.json");
    // THEN the trimmed ARN is the record's only candidate
    let unit = only_unit(&decoded);
    assert_eq!(candidates(unit), [format!("{A}/web-server/1.2.0/3")]);
    assert_eq!(unit.items.len(), 1);
    assert!(!unit.dry_run);
}

#[test]
fn sqs_json_object() {
    // GIVEN one body with imageBuildVersionArn and one with imageBuildVersionArns + dryRun
    let decoded = assert_standard_sqs("sqs-json-object.json");
    assert_eq!(decoded.units.len(), 2);
    // THEN each record carries its own ARNs
    assert_eq!(
        candidates(&decoded.units[0]),
        [format!("{A}/base-ami/2.0.1/1")]
    );
    assert_eq!(
        candidates(&decoded.units[1]),
        [
            format!("{A}/api_gateway/1.0.0/7"),
            format!("{A}/api_gateway/1.0.0/8")
        ]
    );
    // AND the body's dryRun applies to that record only
    assert!(!decoded.units[0].dry_run);
    assert!(decoded.units[1].dry_run);
}

#[test]
fn sqs_json_array() {
    let decoded = assert_standard_sqs("sqs-json-array.json");
    assert_eq!(
        candidates(only_unit(&decoded)),
        [
            format!("{A}/web-server/1.1.0/1"),
            format!("{A}/web-server/1.1.0/2")
        ]
    );
}

#[test]
fn sqs_eventbridge_event() {
    // GIVEN an Image Builder state-change event delivered verbatim by an SQS-target rule
    let decoded = assert_standard_sqs("sqs-eventbridge-event.json");
    // THEN the ARN comes from the event's resources, and the unit is the SQS record
    let unit = only_unit(&decoded);
    assert_eq!(candidates(unit), [format!("{A}/base-ami/3.1.0/2")]);
    assert_eq!(unit.items.len(), 1);
}

#[test]
fn sqs_sns_envelope() {
    // GIVEN an SNS notification (raw delivery off) whose Message is a JSON object string
    let decoded = assert_standard_sqs("sqs-sns-envelope.json");
    // THEN the ARNs inside the Message are the candidates
    assert_eq!(
        candidates(only_unit(&decoded)),
        [
            format!("{A}/web-server/1.0.0/1"),
            format!("{A}/web-server/1.0.0/2")
        ]
    );
}

#[test]
fn sqs_dead_letter_redrive() {
    // GIVEN two of our own dead letters redriven into the work queue: a failed ARN, and a
    // rejected input (account not allowed at the time)
    let decoded = assert_standard_sqs("sqs-dead-letter-redrive.json");
    // THEN both are candidates again, so a redrive after a fix (e.g. ALLOWED_ACCOUNT_IDS) works
    assert_eq!(
        candidates(&decoded.units[0]),
        [format!("{A}/web-server/1.2.0/3")]
    );
    assert_eq!(
        candidates(&decoded.units[1]),
        ["arn:aws:imagebuilder:us-east-1:111122223333:image/base-ami/2.0.0/5"]
    );
    assert!(decoded.units.iter().all(|u| u.items.len() == 1));
}

#[test]
fn sqs_fifo() {
    // GIVEN a FIFO batch with two message groups interleaved
    let event = fixture("sqs-fifo.json");
    let decoded = decode(&event).unwrap();
    // THEN the invocation is FIFO and every unit keeps its group and position
    assert_eq!(decoded.kind, InvocationKind::Sqs { fifo: true });
    let groups: Vec<Option<&str>> = decoded
        .units
        .iter()
        .map(|u| u.group_id.as_deref())
        .collect();
    assert_eq!(
        groups,
        [Some("web-server"), Some("base-ami"), Some("web-server")]
    );
    let ids: Vec<String> = decoded
        .units
        .iter()
        .map(|u| u.source.id.clone().unwrap())
        .collect();
    assert_eq!(ids, message_ids(&event));
    assert_eq!(
        candidates(&decoded.units[2]),
        [format!("{A}/web-server/1.0.0/2")]
    );
}

#[test]
fn sqs_poison_records_are_judged_one_by_one() {
    // GIVEN good records mixed with garbage, an EC2 AMI ARN and truncated JSON
    let decoded = assert_standard_sqs("sqs-poison.json");
    let u = &decoded.units;
    assert_eq!(u.len(), 5);
    // THEN the good records decode normally
    assert_eq!(candidates(&u[0]), [format!("{A}/web-server/1.3.0/1")]);
    assert_eq!(candidates(&u[4]), [format!("{A}/web-server/1.3.0/2")]);
    // AND the garbage body is an invalid item quoting the raw body and naming the shapes
    let garbage = invalids(&u[1]);
    assert_eq!(garbage.len(), 1);
    assert_eq!(garbage[0].0, &json!("hello, this is not an ARN"));
    assert!(
        garbage[0].1.contains("imageBuildVersionArn"),
        "{}",
        garbage[0].1
    );
    // AND the AMI ARN is passed on as a candidate, so it gets NotAnImageBuildVersionArn
    assert_eq!(
        candidates(&u[2]),
        ["arn:aws:ec2:us-east-1::image/ami-0abcdef1234567890"]
    );
    // AND the truncated JSON is invalid, saying it is not valid JSON
    let truncated = invalids(&u[3]);
    assert_eq!(truncated[0].0, &json!("{\"imageBuildVersionArn\": "));
    assert!(
        truncated[0].1.contains("not valid JSON"),
        "{}",
        truncated[0].1
    );
}

// ---------------------------------------------------------------- EventBridge

#[test]
fn eventbridge_custom() {
    // GIVEN a custom event with detail.imageBuildVersionArns
    let event = fixture("eventbridge-custom.json");
    let decoded = decode(&event).unwrap();
    // THEN one EventBridge unit identified by the event id, with the detail's ARNs
    assert_eq!(decoded.kind, InvocationKind::EventBridge);
    let unit = only_unit(&decoded);
    assert_eq!(unit.source.kind, SourceKind::EventBridge);
    assert_eq!(unit.source.id.as_deref(), event["id"].as_str());
    assert_eq!(
        candidates(unit),
        [
            format!("{A}/web-server/0.9.0/1"),
            format!("{A}/api_gateway/0.9.0/3")
        ]
    );
    assert_eq!(decoded.options, Options::default());
}

#[test]
fn eventbridge_imagebuilder_state_change() {
    // GIVEN the real aws.imagebuilder state-change event: the ARN only in resources[0]
    let event = fixture("eventbridge-imagebuilder-state-change.json");
    let decoded = decode(&event).unwrap();
    // THEN that ARN is the one candidate
    assert_eq!(decoded.kind, InvocationKind::EventBridge);
    let unit = only_unit(&decoded);
    assert_eq!(
        unit.source.id.as_deref(),
        Some("a2f7e3c1-0b4d-4e8f-9a6b-5c3d2e1f0a9b")
    );
    assert_eq!(unit.items, [candidate(format!("{A}/web-server/1.2.0/4"))]);
}

#[test]
fn eventbridge_resources_keep_image_arns_only_and_detail_wins() {
    // GIVEN resources mixing an image build version, an image version, a recipe and an AMI
    let mut event = fixture("eventbridge-imagebuilder-state-change.json");
    event["resources"] = json!([
        format!("{A}/web-server/1.2.0/4"),
        "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/web-server/1.2.0",
        "arn:aws:ec2:us-east-1::image/ami-0abcdef1234567890",
        format!("{A}/web-server/1.2.0"),
    ]);
    // THEN every Image Builder image ARN is kept (the version ARN gets its named rejection later)
    let decoded = decode(&event).unwrap();
    assert_eq!(
        candidates(only_unit(&decoded)),
        [
            format!("{A}/web-server/1.2.0/4"),
            format!("{A}/web-server/1.2.0")
        ]
    );
    // WHEN the detail names an ARN too THEN only the detail counts
    event["detail"]["imageBuildVersionArn"] = json!(format!("{A}/base-ami/1.0.0/1"));
    let decoded = decode(&event).unwrap();
    assert_eq!(
        candidates(only_unit(&decoded)),
        [format!("{A}/base-ami/1.0.0/1")]
    );
}

#[test]
fn eventbridge_without_any_arn_is_one_invalid_item() {
    // GIVEN an EventBridge event with no ARN in detail and no image ARN in resources
    let event = json!({"id": "e-1", "detail-type": "Something", "source": "custom", "resources": [],
                       "detail": {"state": {"status": "AVAILABLE"}}});
    // THEN it is not silently a no-op: one invalid item carries detail and resources
    let decoded = decode(&event).unwrap();
    let unit = only_unit(&decoded);
    let bad = invalids(unit);
    assert_eq!(unit.items.len(), 1);
    assert_eq!(
        bad[0].0,
        &json!({"detail": {"state": {"status": "AVAILABLE"}}, "resources": []})
    );
    assert!(
        bad[0].1.contains("no image build version ARN"),
        "{}",
        bad[0].1
    );
}

#[test]
fn eventbridge_detail_options() {
    // GIVEN dryRun and deleteOutputResources in the detail
    let mut event = fixture("eventbridge-custom.json");
    event["detail"]["dryRun"] = json!(true);
    event["detail"]["deleteOutputResources"] = json!("amis");
    let decoded = decode(&event).unwrap();
    // THEN they are the invocation's options, and the unit is a dry run
    assert!(decoded.options.dry_run);
    assert_eq!(
        decoded.options.delete_output_resources.as_deref(),
        Some("amis")
    );
    assert!(only_unit(&decoded).dry_run);
    // AND a non-boolean dryRun fails the invocation naming the field
    event["detail"]["dryRun"] = json!("yes");
    let err = decode(&event).unwrap_err();
    assert!(err.0.contains("dryRun"), "{err}");
}

// ---------------------------------------------------------------- direct / Step Functions

fn assert_direct(decoded: &Decoded) -> &Unit {
    assert_eq!(decoded.kind, InvocationKind::Direct);
    let unit = only_unit(decoded);
    assert_eq!(unit.source.kind, SourceKind::Direct);
    assert_eq!(unit.source.id, None);
    assert_eq!(unit.group_id, None);
    unit
}

#[test]
fn direct_single() {
    let decoded = decode_fixture("direct-single.json");
    let unit = assert_direct(&decoded);
    assert_eq!(unit.items, [candidate(format!("{A}/web-server/1.2.0/3"))]);
    assert!(!decoded.options.dry_run && !unit.dry_run);
}

#[test]
fn direct_multiple_keeps_duplicates_and_order() {
    // GIVEN a list naming one ARN twice and dryRun: false
    let decoded = decode_fixture("direct-multiple.json");
    let unit = assert_direct(&decoded);
    // THEN decoding keeps both mentions in order (deduplication is the engine's job: every
    // mention gets the one outcome)
    assert_eq!(
        candidates(unit),
        [
            format!("{A}/web-server/1.2.0/1"),
            format!("{A}/base-ami/2.0.1/1"),
            format!("{A}/web-server/1.2.0/1")
        ]
    );
    assert!(!decoded.options.dry_run);
}

#[test]
fn direct_array() {
    let decoded = decode_fixture("direct-array.json");
    let unit = assert_direct(&decoded);
    assert_eq!(
        candidates(unit),
        [
            format!("{A}/web-server/1.2.0/1"),
            format!("{A}/api_gateway/1.0.0/2")
        ]
    );
    assert_eq!(decoded.options, Options::default());
}

#[test]
fn direct_dry_run() {
    let decoded = decode_fixture("direct-dry-run.json");
    let unit = assert_direct(&decoded);
    assert!(decoded.options.dry_run);
    assert!(unit.dry_run);
    assert_eq!(unit.items.len(), 2);
}

#[test]
fn direct_mixed_invalid_passes_every_string_on_as_a_candidate() {
    // GIVEN a version ARN, an AMI ARN, another partition and a foreign account
    let decoded = decode_fixture("direct-mixed-invalid.json");
    let unit = assert_direct(&decoded);
    // THEN all are candidates, in order: the ARN guards (not decoding) name their rejections
    assert_eq!(
        candidates(unit),
        [
            format!("{A}/web-server/1.2.0/1"),
            format!("{A}/web-server/1.2.0"),
            "arn:aws:ec2:us-east-1::image/ami-0abcdef1234567890".to_owned(),
            "arn:aws-cn:imagebuilder:cn-north-1:123456789012:image/base-ami/1.0.0/1".to_owned(),
            "arn:aws:imagebuilder:us-east-1:111122223333:image/base-ami/1.0.0/1".to_owned(),
        ]
    );
}

#[test]
fn stepfunctions_itembatcher() {
    // GIVEN Items mixing ARN strings and objects, and BatchInput with dryRun
    let decoded = decode_fixture("stepfunctions-itembatcher.json");
    // THEN one Step Functions unit with every item in order, and the batch is a dry run
    assert_eq!(decoded.kind, InvocationKind::StepFunctionsBatch);
    let unit = only_unit(&decoded);
    assert_eq!(unit.source.kind, SourceKind::StepFunctions);
    assert_eq!(unit.source.id, None);
    assert_eq!(
        candidates(unit),
        [
            format!("{A}/web-server/1.0.0/1"),
            format!("{A}/web-server/1.0.0/2"),
            format!("{A}/base-ami/1.0.0/1"),
            format!("{A}/api_gateway/1.0.0/1")
        ]
    );
    assert!(decoded.options.dry_run && unit.dry_run);
}

#[test]
fn itembatcher_bad_items_are_invalid_one_by_one() {
    // GIVEN Items with a number, an object without an ARN, and no BatchInput
    let event = json!({"Items": [format!("{A}/web-server/1.0.0/1"), 42, {"name": "web-server"}]});
    let decoded = decode(&event).unwrap();
    let unit = only_unit(&decoded);
    // THEN only those two are invalid, in place
    assert_eq!(unit.items.len(), 3);
    assert_eq!(unit.items[0], candidate(format!("{A}/web-server/1.0.0/1")));
    assert!(matches!(&unit.items[1], Item::Invalid { input, .. } if *input == json!(42)));
    assert!(
        matches!(&unit.items[2], Item::Invalid { input, .. } if *input == json!({"name": "web-server"}))
    );
    assert!(!decoded.options.dry_run);
}

#[test]
fn direct_wrongly_typed_fields_are_invalid_items() {
    // GIVEN a non-string imageBuildVersionArn and a non-string element in imageBuildVersionArns
    let event = json!({"imageBuildVersionArn": 7,
                       "imageBuildVersionArns": [null, format!("{A}/web-server/1.0.0/1")]});
    let unit = decode(&event).unwrap().units.remove(0);
    // THEN each bad value is its own invalid item; the good ARN still decodes
    assert_eq!(unit.items.len(), 3);
    assert!(matches!(&unit.items[0], Item::Invalid { input, message }
        if *input == json!(7) && message.contains("imageBuildVersionArn must be a string")));
    assert!(matches!(&unit.items[1], Item::Invalid { input, .. } if input.is_null()));
    assert_eq!(unit.items[2], candidate(format!("{A}/web-server/1.0.0/1")));
}

// ---------------------------------------------------------------- malformed invocations

fn assert_invalid_event(event: &Value) -> InvalidEvent {
    let err = decode(event).expect_err("must be InvalidEvent");
    assert!(
        err.0.contains("imageBuildVersionArn") || err.0.contains("dryRun"),
        "the message names what was expected: {err}"
    );
    err
}

#[test]
fn invalid_not_an_event() {
    let err = assert_invalid_event(&fixture("invalid-not-an-event.json"));
    assert!(err.0.contains("hello"), "names the keys it saw: {err}");
    assert!(
        err.0.contains("aws:sqs") && err.0.contains("Items"),
        "{err}"
    );
}

#[test]
fn invalid_string() {
    // GIVEN a bare ARN string as the whole payload (a common mistake)
    let err = assert_invalid_event(&fixture("invalid-string.json"));
    assert!(err.0.contains("string"), "{err}");
}

#[test]
fn invalid_dry_run_not_boolean() {
    // GIVEN "dryRun": "true" — ignoring it would delete what was meant as a dry run
    let err = assert_invalid_event(&fixture("invalid-dry-run-not-boolean.json"));
    assert!(err.0.contains("dryRun must be a boolean"), "{err}");
}

#[test]
fn other_malformed_invocations() {
    for event in [
        json!(null),
        json!(42),
        json!(true),
        json!({}),
        json!({"Records": "nope"}),
        json!({"Records": []}),
        json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "x"}}]}),
        json!({"Records": [{"eventSource": "aws:sqs", "body": "x"}, {"eventSource": "aws:s3"}]}),
        json!({"Items": "nope"}),
        json!({"Items": [], "BatchInput": "nope"}),
        json!({"Items": [], "BatchInput": {"dryRun": 1}}),
        json!({"imageBuildVersionArns": [], "deleteOutputResources": true}),
    ] {
        let err = decode(&event).expect_err(&event.to_string());
        assert!(!err.0.is_empty());
    }
}

// ---------------------------------------------------------------- SQS body rules

/// An SQS event with one record per body, `messageId`s `m0`, `m1`, …
fn sqs_event(bodies: &[Value]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| sqs_record(WORK_QUEUE_ARN, &format!("m{i}"), body.clone(), None))
        .collect();
    json!({ "Records": records })
}

fn sqs_units(bodies: &[Value]) -> Vec<Unit> {
    decode(&sqs_event(bodies)).unwrap().units
}

#[test]
fn sqs_body_shapes() {
    let arn = format!("{A}/web-server/1.0.0/1");
    let sns = json!({"Type": "Notification", "Message": format!("  {arn}  ")}).to_string();
    let units = sqs_units(&[
        // a JSON string body
        json!(json!(arn).to_string()),
        // an array mixing strings and objects
        json!(json!([arn, {"imageBuildVersionArn": arn}]).to_string()),
        // an SNS envelope whose Message is a bare ARN (whitespace trimmed)
        json!(sns),
        // SNS wrapping our dead letter of a rejected input
        json!(json!({"Type": "Notification",
                     "Message": json!({"input": arn, "errorCode": "RegionNotAllowed"}).to_string()})
        .to_string()),
    ]);
    for unit in &units {
        assert_eq!(
            unit.items
                .iter()
                .filter(|i| matches!(i, Item::Candidate { arn: c, .. } if *c == arn))
                .count(),
            unit.items.len(),
            "{unit:?}"
        );
        assert!(!unit.items.is_empty());
    }
    assert_eq!(units[1].items.len(), 2);
}

#[test]
fn sqs_bad_bodies_are_invalid_items_not_errors() {
    let units = sqs_units(&[
        json!("42"),
        json!(""),
        json!("[]"),
        json!(r#"{"imageBuildVersionArns": []}"#),
        json!(r#"{"foo": 1}"#),
        json!(r#"{"Type": "Notification", "Message": 5}"#),
        json!(r#"{"imageBuildVersionArn": "arn:x", "dryRun": "true"}"#),
        json!(5), // body not a string: the record does not fit SqsMessage
    ]);
    for (i, unit) in units.iter().enumerate() {
        // THEN each record yields exactly one invalid item, none an error or a silent no-op
        assert_eq!(unit.source.id.as_deref(), Some(format!("m{i}").as_str()));
        assert_eq!(invalids(unit).len(), 1, "record {i}: {unit:?}");
        assert_eq!(unit.items.len(), 1, "record {i}");
        assert!(!unit.dry_run);
    }
    // AND a body that parsed is quoted as JSON, one that did not as the raw string
    assert_eq!(invalids(&units[4])[0].0, &json!({"foo": 1}));
    assert_eq!(invalids(&units[1])[0].0, &json!(""));
    assert!(invalids(&units[6])[0]
        .1
        .contains("dryRun must be a boolean"));
}

#[test]
fn sqs_body_recursion_is_bounded() {
    // GIVEN an ARN wrapped in SNS envelopes ten times over
    let mut body = format!("{A}/web-server/1.0.0/1");
    for _ in 0..10 {
        body = json!({"Type": "Notification", "Message": body}).to_string();
    }
    // THEN it is invalid (nested too deep), not a stack overflow or a candidate
    let units = sqs_units(&[json!(body)]);
    let bad = invalids(&units[0]);
    assert_eq!(units[0].items.len(), 1);
    assert!(bad[0].1.contains("nests more than"), "{}", bad[0].1);
}

#[test]
fn sqs_body_dry_run_inside_eventbridge_and_sns() {
    // GIVEN an EventBridge event with detail.dryRun, wrapped in an SNS envelope
    let event = json!({"id": "e", "detail-type": "x", "source": "y", "resources": [],
                       "detail": {"imageBuildVersionArn": format!("{A}/web-server/1.0.0/1"), "dryRun": true}});
    let sns = json!({"Type": "Notification", "Message": event.to_string()});
    let units = sqs_units(&[
        json!(sns.to_string()),
        json!(format!("{A}/web-server/1.0.0/2")),
    ]);
    // THEN that record is a dry run and the next one is not
    assert!(units[0].dry_run);
    assert_eq!(candidates(&units[0]), [format!("{A}/web-server/1.0.0/1")]);
    assert!(!units[1].dry_run);
}

#[test]
fn sqs_record_without_message_id_is_dead_lettered_unprocessed() {
    // GIVEN a hand-made record with a good body but no messageId
    let event =
        json!({"Records": [{"eventSource": "aws:sqs", "body": format!("{A}/web-server/1.0.0/1")}]});
    let unit = decode(&event).unwrap().units.remove(0);
    // THEN it cannot be reported in batchItemFailures, so its one item is invalid (input: body)
    assert_eq!(unit.source.id, None);
    assert_eq!(unit.items.len(), 1);
    assert_eq!(
        invalids(&unit)[0].0,
        &json!(format!("{A}/web-server/1.0.0/1"))
    );
    assert!(invalids(&unit)[0].1.contains("messageId"));
}

#[test]
fn sqs_record_with_odd_fields_still_decodes_its_body() {
    // GIVEN a record whose attributes do not fit the SQS message type (a number)
    let event = json!({"Records": [{"messageId": "m0", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work.fifo",
        "attributes": {"MessageGroupId": "g1", "ApproximateReceiveCount": 1},
        "body": format!("{A}/web-server/1.0.0/1")}]});
    let decoded = decode(&event).unwrap();
    // THEN its id, group and body are still read
    assert_eq!(decoded.kind, InvocationKind::Sqs { fifo: true });
    let unit = &decoded.units[0];
    assert_eq!(unit.source.id.as_deref(), Some("m0"));
    assert_eq!(unit.group_id.as_deref(), Some("g1"));
    assert_eq!(candidates(unit), [format!("{A}/web-server/1.0.0/1")]);
}

// ---------------------------------------------------------------- coverage and scale

/// Every fixture and the test that pins it. A new `events/*.json` must be added here
/// (`plan-*.json` are pinned by the retention tests).
const FIXTURES: &[&str] = &[
    "direct-array.json",
    "direct-dry-run.json",
    "direct-mixed-invalid.json",
    "direct-multiple.json",
    "direct-single.json",
    "eventbridge-custom.json",
    "eventbridge-imagebuilder-state-change.json",
    "invalid-dry-run-not-boolean.json",
    "invalid-not-an-event.json",
    "invalid-string.json",
    "plan-execute-stored.json",
    "plan-request.json",
    "sqs-bare-arn.json",
    "sqs-dead-letter-redrive.json",
    "sqs-eventbridge-event.json",
    "sqs-fifo.json",
    "sqs-json-array.json",
    "sqs-json-object.json",
    "sqs-poison.json",
    "sqs-sns-envelope.json",
    "stepfunctions-itembatcher.json",
];

#[test]
fn every_fixture_is_covered() {
    // GIVEN every events/*.json
    let found = fixture_names();
    // THEN each one is listed above (and so has its own test)
    assert_eq!(
        found, FIXTURES,
        "add a test and a FIXTURES entry for a new fixture"
    );
    for name in &found {
        let result = decode(&fixture(name));
        if name.starts_with("plan-") {
            // Retention plan requests and executions go their own way (the retention tests
            // pin them); as delete requests they are InvalidEvent
            assert!(result.is_err(), "{name} is not a delete request");
        } else if name.starts_with("invalid-") {
            // AND invalid-* fail as a whole with InvalidEvent
            assert!(result.is_err(), "{name} must be InvalidEvent");
        } else {
            // AND all others decode, every unit naming at least one item
            let decoded = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!decoded.units.is_empty(), "{name}");
            assert!(decoded.units.iter().all(|u| !u.items.is_empty()), "{name}");
        }
    }
}

#[test]
fn ten_thousand_arns_decode_in_order() {
    // GIVEN a direct invocation and an SQS body, each naming 10,000 ARNs
    let arns: Vec<String> = (0..10_000)
        .map(|i| format!("{A}/web-server/1.0.{i}/1"))
        .collect();
    let direct = json!({ "imageBuildVersionArns": arns });
    let sqs = sqs_event(&[json!(json!(arns).to_string())]);
    // WHEN decoded
    let direct = decode(&direct).unwrap();
    let sqs = decode(&sqs).unwrap();
    // THEN each is one unit of 10,000 candidates, in input order, none invalid (how fast
    // is scripts/bench's business, not a test's)
    for decoded in [&direct, &sqs] {
        assert_eq!(decoded.units.len(), 1);
        let unit = &decoded.units[0];
        assert_eq!(unit.items.len(), 10_000);
        assert!(invalids(unit).is_empty());
        let got = candidates(unit);
        assert_eq!(got.len(), 10_000);
        assert!(got.iter().zip(&arns).all(|(a, b)| a == b));
    }
}
