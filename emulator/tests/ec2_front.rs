//! The EC2 front against a real moto (from `.venv`): DescribeImageReferences computed from
//! moto's instances and launch templates, DescribeImages / DescribeImageAttribute
//! enrichment, protected DeregisterImage, scripted faults, the call log, the control API,
//! passthrough and the binary flags. Each test works in its own region of the shared moto.

mod ec2_support;

use std::time::Duration;

use ec2_support::{
    ec2, ec2_ok, front, http, references, references_params, register_image, run_instances, Moto,
};
use ib_emulator::ec2::{Ec2Fault, ImageReference, ImageSettings};

const DEEP: [&str; 4] = [
    "ResourceType.1.ResourceType=ec2%3ALaunchTemplate",
    "ResourceType.1.ResourceTypeOption.1.OptionName=version-depth",
    "ResourceType.1.ResourceTypeOption.1.OptionValue.1=10000",
    "ResourceType.2.ResourceType=ec2%3AInstance",
];

async fn describe_references(
    front: &ib_emulator::Ec2Front,
    region: &str,
    images: &[&str],
    extra: &[&str],
) -> ec2_support::Resp {
    let params = references_params(images, extra);
    let params: Vec<&str> = params.iter().map(String::as_str).collect();
    ec2_ok(front.addr(), region, "DescribeImageReferences", &params).await
}

#[tokio::test]
async fn launch_template_version_one_is_referenced_only_with_full_version_depth() {
    // GIVEN an AMI used only by version 1 of a launch template with 12 versions
    let region = "us-east-2";
    let f = front().await;
    let ami = register_image(f.addr(), region, "lt-ami").await;
    let other = register_image(f.addr(), region, "lt-other").await;
    let first = format!("LaunchTemplateData.ImageId={ami}");
    let created = ec2_ok(
        f.addr(),
        region,
        "CreateLaunchTemplate",
        &["LaunchTemplateName=twelve", &first],
    )
    .await;
    let lt = created.first("launchTemplateId").expect("launchTemplateId");
    let lt_param = format!("LaunchTemplateId={lt}");
    let later = format!("LaunchTemplateData.ImageId={other}");
    for _ in 2..=12 {
        ec2_ok(
            f.addr(),
            region,
            "CreateLaunchTemplateVersion",
            &[&lt_param, &later],
        )
        .await;
    }

    // WHEN references are asked with version-depth 10000
    let deep = describe_references(&f, region, &[&ami], &DEEP).await;

    // THEN the template is a reference, with its ARN in the signing region
    assert_eq!(
        references(&deep),
        [(
            "ec2:LaunchTemplate".to_string(),
            format!("arn:aws:ec2:{region}:123456789012:launch-template/{lt}")
        )]
    );
    assert_eq!(deep.first("imageId").as_deref(), Some(ami.as_str()));
    assert_eq!(deep.header("content-type"), Some("text/xml;charset=UTF-8"));

    // WHEN they are asked with the default depth (type only, or all types)
    let typed = describe_references(
        &f,
        region,
        &[&ami],
        &["ResourceType.1.ResourceType=ec2%3ALaunchTemplate"],
    )
    .await;
    let all = describe_references(&f, region, &[&ami], &["IncludeAllResourceTypes=true"]).await;

    // THEN version 1 is beyond the newest 10 and nothing references the AMI
    assert!(references(&typed).is_empty(), "{}", typed.body);
    assert!(references(&all).is_empty(), "{}", all.body);
    assert!(all.first("nextToken").is_none());
}

#[tokio::test]
async fn running_and_terminated_instances_reference_their_ami() {
    // GIVEN two instances of an AMI, one of them terminated
    let region = "us-west-1";
    let f = front().await;
    let ami = register_image(f.addr(), region, "inst-ami").await;
    let running = run_instances(f.addr(), region, &ami, 1).await.remove(0);
    let gone = run_instances(f.addr(), region, &ami, 1).await.remove(0);
    let gone_param = format!("InstanceId.1={gone}");
    ec2_ok(f.addr(), region, "TerminateInstances", &[&gone_param]).await;

    // WHEN references over every resource type are asked
    let r = describe_references(&f, region, &[&ami], &["IncludeAllResourceTypes=true"]).await;

    // THEN both instances are references (any state counts)
    let mut got = references(&r);
    got.sort();
    let arn = |id: &str| format!("arn:aws:ec2:{region}:123456789012:instance/{id}");
    let mut want = vec![
        ("ec2:Instance".to_string(), arn(&running)),
        ("ec2:Instance".to_string(), arn(&gone)),
    ];
    want.sort();
    assert_eq!(got, want);

    // WHEN only running instances are asked for (state-name option)
    let only_running = describe_references(
        &f,
        region,
        &[&ami],
        &[
            "ResourceType.1.ResourceType=ec2%3AInstance",
            "ResourceType.1.ResourceTypeOption.1.OptionName=state-name",
            "ResourceType.1.ResourceTypeOption.1.OptionValue.1=running",
        ],
    )
    .await;

    // THEN the terminated one is left out
    assert_eq!(
        references(&only_running),
        [("ec2:Instance".to_string(), arn(&running))]
    );
}

#[tokio::test]
async fn unreferenced_ami_has_an_empty_reference_set() {
    // GIVEN an AMI nothing uses, next to one that an instance uses
    let region = "us-west-2";
    let f = front().await;
    let idle = register_image(f.addr(), region, "idle").await;
    let used = register_image(f.addr(), region, "used").await;
    run_instances(f.addr(), region, &used, 1).await;

    // WHEN references of the idle AMI are asked over every type
    let mut params = DEEP.to_vec();
    params.push("IncludeAllResourceTypes=true");
    let r = describe_references(&f, region, &[&idle], &params).await;

    // THEN the answer is a valid, empty reference set without a next token
    assert!(
        r.body.contains("<imageReferenceSet></imageReferenceSet>"),
        "{}",
        r.body
    );
    assert!(r.first("nextToken").is_none());
    assert!(r.first("requestId").is_some());
}

#[tokio::test]
async fn references_paginate_with_next_token() {
    // GIVEN 7 instances of one AMI
    let region = "eu-west-2";
    let f = front().await;
    let ami = register_image(f.addr(), region, "many").await;
    let mut ids = run_instances(f.addr(), region, &ami, 7).await;
    assert_eq!(ids.len(), 7);

    // WHEN references are read 5 at a time
    let p1 = describe_references(
        &f,
        region,
        &[&ami],
        &["IncludeAllResourceTypes=true", "MaxResults=5"],
    )
    .await;
    let token = p1
        .first("nextToken")
        .expect("a next token after a full page");
    let token_param = format!("NextToken={}", ec2_support::encode(&token));
    let p2 = describe_references(
        &f,
        region,
        &[&ami],
        &["IncludeAllResourceTypes=true", "MaxResults=5", &token_param],
    )
    .await;

    // THEN the pages hold 5 and 2 references, the last without a token, together every instance
    assert_eq!((references(&p1).len(), references(&p2).len()), (5, 2));
    assert!(p2.first("nextToken").is_none());
    let mut seen: Vec<String> = references(&p1)
        .into_iter()
        .chain(references(&p2))
        .map(|(_, arn)| arn.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);

    // AND a made-up token or a page size below 5 is an EC2 InvalidParameterValue
    let bad = ec2(
        f.addr(),
        region,
        "DescribeImageReferences",
        &[
            &format!("ImageId.1={ami}"),
            "IncludeAllResourceTypes=true",
            "NextToken=nope",
        ],
    )
    .await;
    assert_eq!(
        (bad.status, bad.error_code().as_deref()),
        (400, Some("InvalidParameterValue"))
    );
    let small = ec2(
        f.addr(),
        region,
        "DescribeImageReferences",
        &[
            &format!("ImageId.1={ami}"),
            "IncludeAllResourceTypes=true",
            "MaxResults=4",
        ],
    )
    .await;
    assert_eq!(small.error_code().as_deref(), Some("InvalidParameterValue"));
}

#[tokio::test]
async fn ssm_and_recipe_references_come_from_the_control_api() {
    // GIVEN an SSM parameter reference set in process and a recipe reference set over HTTP
    let region = "eu-west-3";
    let f = front().await;
    let ami = register_image(f.addr(), region, "ssm").await;
    let param_arn = format!("arn:aws:ssm:{region}:123456789012:parameter/golden");
    f.add_reference(ImageReference {
        image_id: ami.clone(),
        resource_type: "ssm:Parameter".into(),
        arn: param_arn.clone(),
    });
    let recipe_arn = format!("arn:aws:imagebuilder:{region}:123456789012:image-recipe/web/1.0.0");
    let body = format!(
        r#"[{{"imageId":"{ami}","resourceType":"imagebuilder:ImageRecipe","arn":"{recipe_arn}"}}]"#
    );
    let set = http(f.addr(), "POST", "/_ec2/references", &[], &body).await;
    assert_eq!(set.status, 200, "{}", set.body);

    // WHEN every type is asked, and then only instances
    let all = describe_references(&f, region, &[&ami], &["IncludeAllResourceTypes=true"]).await;
    let instances = describe_references(
        &f,
        region,
        &[&ami],
        &["ResourceType.1.ResourceType=ec2%3AInstance"],
    )
    .await;

    // THEN both appear in type order when in scope, and neither when out of scope
    assert_eq!(
        references(&all),
        [
            ("ssm:Parameter".to_string(), param_arn),
            ("imagebuilder:ImageRecipe".to_string(), recipe_arn)
        ]
    );
    assert!(references(&instances).is_empty());

    // AND an unknown resource type is refused by the control API
    let bad = http(
        f.addr(),
        "POST",
        "/_ec2/references",
        &[],
        r#"{"imageId":"ami-1","resourceType":"s3:Bucket","arn":"x"}"#,
    )
    .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn describe_images_carries_launch_time_and_protection_set_through_the_control_api() {
    // GIVEN two AMIs, one given a launch time and protection over the control API
    let region = "eu-central-1";
    let f = front().await;
    let launched = register_image(f.addr(), region, "launched").await;
    let plain = register_image(f.addr(), region, "plain").await;
    let ids = [
        format!("ImageId.1={launched}"),
        format!("ImageId.2={plain}"),
    ];
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let before = ec2_ok(f.addr(), region, "DescribeImages", &ids).await;
    let set = http(
        f.addr(),
        "POST",
        &format!("/_ec2/images/{launched}"),
        &[],
        r#"{"lastLaunchedTime": "2026-11-28T10:00:00Z", "deregistrationProtection": "enabled"}"#,
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);

    // WHEN DescribeImages is called through the front
    let after = ec2_ok(f.addr(), region, "DescribeImages", &ids).await;

    // THEN before, neither field was there (moto leaves them out, as AWS does when unset) …
    assert!(before.first("lastLaunchedTime").is_none());
    assert!(before.first("deregistrationProtection").is_none());
    // … and now exactly the configured AMI carries both, inside its own item
    assert_eq!(after.all("lastLaunchedTime"), ["2026-11-28T10:00:00Z"]);
    assert_eq!(after.all("deregistrationProtection"), ["enabled"]);
    let item = after
        .body
        .split("<item>")
        .find(|chunk| chunk.contains(&format!("<imageId>{launched}</imageId>")))
        .expect("the launched AMI's item");
    assert!(item.contains("<lastLaunchedTime>2026-11-28T10:00:00Z</lastLaunchedTime>"));

    // AND the control API reads the settings back
    let got = http(
        f.addr(),
        "GET",
        &format!("/_ec2/images/{launched}"),
        &[],
        "",
    )
    .await;
    assert!(got.body.contains("2026-11-28T10:00:00Z"), "{}", got.body);
}

#[tokio::test]
async fn describe_image_attribute_answers_launch_time_and_protection() {
    // GIVEN an AMI with a launch time and nothing else
    let region = "eu-north-1";
    let f = front().await;
    let ami = register_image(f.addr(), region, "attr").await;
    f.set_last_launched_time(&ami, Some("2026-11-29T08:30:00Z"));
    let id = format!("ImageId={ami}");

    // WHEN both attributes are read
    let launched = ec2_ok(
        f.addr(),
        region,
        "DescribeImageAttribute",
        &[&id, "Attribute=lastLaunchedTime"],
    )
    .await;
    let protection = ec2_ok(
        f.addr(),
        region,
        "DescribeImageAttribute",
        &[&id, "Attribute=deregistrationProtection"],
    )
    .await;

    // THEN each comes as {value} under its element, protection `disabled` when never set
    assert!(launched
        .body
        .contains("<lastLaunchedTime><value>2026-11-29T08:30:00Z</value></lastLaunchedTime>"));
    assert_eq!(launched.first("imageId").as_deref(), Some(ami.as_str()));
    assert!(protection
        .body
        .contains("<deregistrationProtection><value>disabled</value></deregistrationProtection>"));

    // WHEN the launch time is cleared, and an unknown AMI is asked
    f.set_last_launched_time(&ami, None);
    let never = ec2_ok(
        f.addr(),
        region,
        "DescribeImageAttribute",
        &[&id, "Attribute=lastLaunchedTime"],
    )
    .await;
    let unknown = ec2(
        f.addr(),
        region,
        "DescribeImageAttribute",
        &[
            "ImageId=ami-0000000000000dead",
            "Attribute=lastLaunchedTime",
        ],
    )
    .await;

    // THEN the attribute has no value, and the unknown AMI is moto's InvalidAMIID.NotFound
    assert!(never.body.contains("<lastLaunchedTime/>"), "{}", never.body);
    assert_eq!(unknown.status, 400);
    assert_eq!(
        unknown.error_code().as_deref(),
        Some("InvalidAMIID.NotFound")
    );

    // AND other attributes are still moto's
    let desc = ec2_ok(
        f.addr(),
        region,
        "DescribeImageAttribute",
        &[&id, "Attribute=description"],
    )
    .await;
    assert!(desc.body.contains("<description>"), "{}", desc.body);
}

#[tokio::test]
async fn deregister_image_of_a_protected_ami_fails_until_protection_is_off() {
    // GIVEN a protected AMI
    let region = "ap-south-1";
    let f = front().await;
    let ami = register_image(f.addr(), region, "protected").await;
    f.set_image(
        &ami,
        ImageSettings {
            deregistration_protection: Some("enabled-without-cooldown".into()),
            ..Default::default()
        },
    );
    let id = format!("ImageId={ami}");

    // WHEN it is deregistered
    let refused = ec2(f.addr(), region, "DeregisterImage", &[&id]).await;

    // THEN EC2's error comes back and the AMI is still there
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.error_code().as_deref(),
        Some("OperationNotPermitted")
    );
    let still = ec2_ok(
        f.addr(),
        region,
        "DescribeImages",
        &[&format!("ImageId.1={ami}")],
    )
    .await;
    assert_eq!(still.first("imageId").as_deref(), Some(ami.as_str()));

    // WHEN protection is disabled and it is deregistered again
    f.set_deregistration_protection(&ami, Some("disabled"));
    let done = ec2(f.addr(), region, "DeregisterImage", &[&id]).await;

    // THEN moto deregisters it (DescribeImages no longer lists it)
    assert_eq!(done.status, 200, "{}", done.body);
    let gone = ec2_ok(
        f.addr(),
        region,
        "DescribeImages",
        &[&format!("ImageId.1={ami}")],
    )
    .await;
    assert!(gone.first("imageId").is_none(), "{}", gone.body);
}

#[tokio::test]
async fn scripted_503_fails_the_next_calls_and_is_recorded() {
    // GIVEN DescribeImageReferences scripted over HTTP to fail 3 times
    let region = "eu-west-1";
    let f = front().await;
    let ami = register_image(f.addr(), region, "faulty").await;
    let set = http(
        f.addr(),
        "POST",
        "/_ec2/faults",
        &[],
        r#"{"DescribeImageReferences": {"status": 503, "code": "ServiceUnavailable", "times": 3}}"#,
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    f.clear_calls();
    let params = [
        format!("ImageId.1={ami}"),
        "IncludeAllResourceTypes=true".to_string(),
    ];
    let params: Vec<&str> = params.iter().map(String::as_str).collect();

    // WHEN it is called 4 times
    let mut answers = Vec::new();
    for _ in 0..4 {
        let r = ec2(f.addr(), region, "DescribeImageReferences", &params).await;
        answers.push((r.status, r.error_code()));
    }

    // THEN three EC2-shaped 503s come first, then the real answer
    let unavailable = (503, Some("ServiceUnavailable".to_string()));
    assert_eq!(
        answers,
        [
            unavailable.clone(),
            unavailable.clone(),
            unavailable,
            (200, None)
        ]
    );
    // AND every call is recorded with its operation, signing region and who answered
    let summary: Vec<(String, Option<String>, u16, String)> = f
        .calls()
        .into_iter()
        .map(|c| (c.operation, c.region, c.status, c.answered_by))
        .collect();
    let call = |status: u16, by: &str| {
        let op = "DescribeImageReferences".to_string();
        (op, Some(region.to_string()), status, by.to_string())
    };
    assert_eq!(
        summary,
        [
            call(503, "fault"),
            call(503, "fault"),
            call(503, "fault"),
            call(200, "front")
        ]
    );
    let over_http = http(f.addr(), "GET", "/_ec2/calls", &[], "").await;
    assert!(
        over_http.body.contains("\"answeredBy\":\"fault\""),
        "{}",
        over_http.body
    );
    // AND the used-up fault is gone
    assert!(f.faults().is_empty());
}

#[tokio::test]
async fn fault_set_to_always_stays_until_cleared() {
    // GIVEN DescribeImages scripted in process to fail on every call
    let f = front().await;
    f.set_fault(
        "DescribeImages",
        Ec2Fault {
            status: 500,
            code: "InternalError".into(),
            message: "boom".into(),
            times: None,
        },
    );

    // WHEN it is called twice
    for _ in 0..2 {
        let r = ec2(f.addr(), "sa-east-1", "DescribeImages", &[]).await;
        // THEN each call fails with the scripted error and moto is not asked
        assert_eq!(
            (r.status, r.error_code().as_deref()),
            (500, Some("InternalError"))
        );
        assert!(r.body.contains("<Message>boom</Message>"));
    }
    assert_eq!(
        f.calls().last().map(|c| c.error_code.clone()),
        Some(Some("InternalError".into()))
    );

    // WHEN the fault is cleared
    f.clear_faults();

    // THEN moto answers again
    ec2_ok(f.addr(), "sa-east-1", "DescribeImages", &[]).await;
}

#[tokio::test]
async fn unrelated_calls_pass_through_byte_equal() {
    // GIVEN the front in front of moto
    let f = front().await;
    let moto = Moto::shared();

    // WHEN the same DescribeRegions call goes to moto and through the front
    let direct = ec2(moto.addr(), "us-east-1", "DescribeRegions", &[]).await;
    let proxied = ec2(f.addr(), "us-east-1", "DescribeRegions", &[]).await;

    // THEN status, content type and body are moto's, byte for byte
    assert_eq!(direct.status, 200);
    assert_eq!(proxied.status, direct.status);
    assert_eq!(
        proxied.header("content-type"),
        direct.header("content-type")
    );
    assert_eq!(proxied.body, direct.body);
    // AND moto's errors pass through unchanged too
    let direct = ec2(
        moto.addr(),
        "us-east-1",
        "DescribeImages",
        &["ImageId.1=ami-00000000"],
    )
    .await;
    let proxied = ec2(
        f.addr(),
        "us-east-1",
        "DescribeImages",
        &["ImageId.1=ami-00000000"],
    )
    .await;
    assert_eq!(
        (proxied.status, &proxied.body),
        (direct.status, &direct.body)
    );
    assert_eq!(
        f.calls().last().map(|c| c.answered_by.clone()).as_deref(),
        Some("moto")
    );
}

#[tokio::test]
async fn malformed_reference_requests_get_ec2_errors() {
    // GIVEN the front
    let f = front().await;
    let eleven: Vec<String> = (1..=11)
        .map(|i| format!("ImageId.{i}=ami-{i:08}"))
        .collect();
    let mut too_many: Vec<&str> = eleven.iter().map(String::as_str).collect();
    too_many.push("IncludeAllResourceTypes=true");

    // WHEN requests lack image IDs, lack a type, name too many images or a bad depth
    let cases: [(&[&str], &str); 4] = [
        (&["IncludeAllResourceTypes=true"], "MissingParameter"),
        (&["ImageId.1=ami-1"], "MissingParameter"),
        (&too_many, "InvalidParameterValue"),
        (
            &[
                "ImageId.1=ami-1",
                "ResourceType.1.ResourceType=ec2%3ALaunchTemplate",
                "ResourceType.1.ResourceTypeOption.1.OptionName=version-depth",
                "ResourceType.1.ResourceTypeOption.1.OptionValue.1=0",
            ],
            "InvalidParameterValue",
        ),
    ];
    for (params, code) in cases {
        let r = ec2(f.addr(), "us-east-1", "DescribeImageReferences", params).await;
        // THEN each is a 400 with EC2's error shape and code
        assert_eq!(r.status, 400, "{params:?}: {}", r.body);
        assert_eq!(r.error_code().as_deref(), Some(code), "{params:?}");
        assert!(r.body.starts_with("<?xml") && r.body.contains("<RequestID>"));
    }
    // AND a bad control request is a 400 / 404, not a crash
    let bad_fault = http(
        f.addr(),
        "POST",
        "/_ec2/faults",
        &[],
        r#"{"X": {"status": 200}}"#,
    )
    .await;
    assert_eq!(bad_fault.status, 400);
    let nowhere = http(f.addr(), "GET", "/_ec2/nowhere", &[], "").await;
    assert_eq!(nowhere.status, 404);
    let health = http(f.addr(), "GET", "/_ec2/health", &[], "").await;
    assert!(health.body.contains("\"ok\""));
}

#[tokio::test]
async fn binary_runs_the_front_with_ec2_flags() {
    use tokio::io::AsyncBufReadExt;

    // WHEN the binary starts with --ec2-upstream (moto) and --ec2-port 0
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ib-emulator"))
        .args([
            "--port",
            "0",
            "--ec2-upstream",
            &Moto::shared().url(),
            "--ec2-port",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ib-emulator");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut read = Vec::new();
    for _ in 0..2 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("a line in time")
            .expect("stdout readable")
            .expect("a line");
        read.push(line);
    }
    let (first, second) = (&read[0], &read[1]);

    // THEN the Image Builder line is unchanged and the EC2 line follows, and the front answers
    assert!(first.starts_with("listening on 127.0.0.1:"), "{first:?}");
    let addr: std::net::SocketAddr = second
        .strip_prefix("ec2 listening on ")
        .unwrap_or_else(|| panic!("unexpected line {second:?}"))
        .parse()
        .expect("an address");
    let r = ec2(addr, "us-east-1", "DescribeRegions", &[]).await;
    assert_eq!(r.status, 200);
    let health = http(addr, "GET", "/_ec2/health", &[], "").await;
    assert!(
        health.body.contains(&Moto::shared().url()),
        "{}",
        health.body
    );
}

#[tokio::test]
async fn injected_latency_delays_answered_and_passed_through_calls_per_operation() {
    use ib_emulator::ec2::Ec2Latency;
    use std::time::Instant;

    // GIVEN a front adding 150 ms to every EC2 call and 400 ms to DescribeRegions
    let latency = Ec2Latency {
        default_ms: 150,
        by_operation: [("DescribeRegions".to_string(), 400)].into(),
    };
    let f = ib_emulator::Ec2Front::start_with_latency(
        &Moto::shared().url(),
        "127.0.0.1:0".parse().unwrap(),
        latency,
    )
    .await
    .expect("start the EC2 front");
    let region = "ap-northeast-3";
    let image = register_image(f.addr(), region, "latency").await;
    f.reset_stats();

    // WHEN a call the front answers, one moto answers, and the overridden one are timed
    let timed = |action: &'static str, params: Vec<String>| {
        let addr = f.addr();
        async move {
            let params: Vec<&str> = params.iter().map(String::as_str).collect();
            let t = Instant::now();
            ec2_ok(addr, region, action, &params).await;
            t.elapsed()
        }
    };
    let answered = timed(
        "DescribeImageReferences",
        references_params(&[&image], &["IncludeAllResourceTypes=true"]),
    )
    .await;
    let passed = timed("DescribeImages", vec![format!("ImageId.1={image}")]).await;
    let own = timed("DescribeRegions", Vec::new()).await;

    // THEN each took at least its latency (lower bounds only: the machine may be slow)
    assert!(answered >= Duration::from_millis(150), "{answered:?}");
    assert!(passed >= Duration::from_millis(150), "{passed:?}");
    assert!(own >= Duration::from_millis(400), "{own:?}");

    // AND calls made at once overlap in the front, as its stats show
    f.reset_stats();
    let one = || timed("DescribeImages", vec![format!("ImageId.1={image}")]);
    tokio::join!(one(), one(), one());
    let stats = f.stats();
    assert_eq!(stats["byOperation"]["DescribeImages"], 3, "{stats}");
    assert_eq!(stats["maxConcurrency"], 3, "{stats}");
    assert_eq!(stats["latency"]["byOperation"]["DescribeRegions"], 400);
    let over_http = http(f.addr(), "GET", "/_ec2/stats", &[], "").await;
    assert!(
        over_http.body.contains("\"maxConcurrency\":3"),
        "{}",
        over_http.body
    );
}
