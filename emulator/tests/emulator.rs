//! Wire-level tests of the emulator over loopback: response shapes, modelled errors,
//! authentication, state, scripted answers, fault rates, concurrency, rate limiting, the
//! control API and the binary.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{arn, auth, delete_target, seed_image, start, Conn};
use ib_emulator::{Faults, RateLimit, SeedImage, Step};
use serde_json::json;

// ---------------------------------------------------------------------------------------
// Success shapes and state

#[tokio::test]
async fn delete_existing_image_then_second_delete_is_not_found() {
    // GIVEN a seeded image
    let (emu, addr) = start(Faults::default()).await;
    emu.seed([seed_image(&arn(1))]);
    let mut c = Conn::connect(addr).await;

    // WHEN it is deleted
    let r = c.delete_image(&arn(1)).await;

    // THEN the answer has the DeleteImage output shape and the request id in header and body
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["imageBuildVersionArn"], arn(1));
    let rid = r.header("x-amzn-requestid").expect("request id header");
    assert_eq!(body["requestId"], rid);
    assert!(r.error_type().is_none());
    assert!(!emu.image_exists(&arn(1)));

    // WHEN it is deleted again (on the same keep-alive connection)
    let r = c.delete_image(&arn(1)).await;

    // THEN it is a modelled 404 ResourceNotFoundException
    assert_eq!(r.status, 404);
    assert_eq!(r.error_type(), Some("ResourceNotFoundException"));
    assert!(r.header("x-amzn-requestid").is_some());
    assert!(r.json()["message"].as_str().unwrap().contains(&arn(1)));

    // AND both calls were recorded with their signing region
    let calls = emu.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].operation, "DeleteImage");
    assert_eq!(calls[0].arn.as_deref(), Some(arn(1).as_str()));
    assert_eq!(calls[0].region.as_deref(), Some("us-east-1"));
    assert_eq!(calls[0].service.as_deref(), Some("imagebuilder"));
    assert_eq!((calls[0].status, calls[1].status), (200, 404));
    assert_eq!(
        calls[1].error_code.as_deref(),
        Some("ResourceNotFoundException")
    );
}

#[tokio::test]
async fn get_image_returns_the_image_structure() {
    // GIVEN an image seeded with tags, a state and container outputs
    let (emu, addr) = start(Faults::default()).await;
    let a = "arn:aws:imagebuilder:eu-west-1:123456789012:image/app_x/2.3.4/7";
    emu.seed([SeedImage {
        arn: a.into(),
        state: Some("FAILED".into()),
        tags: BTreeMap::from([("keep".to_string(), "yes".to_string())]),
        output_resources: Some(
            json!({"amis": [], "containers": [{"region": "eu-west-1", "imageUris": ["x"]}]}),
        ),
        ..Default::default()
    }]);
    let mut c = Conn::connect(addr).await;

    // WHEN GetImage is called
    let r = c.get_image(a).await;

    // THEN the Image carries arn, name, version "x.y.z/build", state, tags and outputs
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["requestId"], r.header("x-amzn-requestid").unwrap());
    let img = &body["image"];
    assert_eq!(img["arn"], a);
    assert_eq!(img["name"], "app_x");
    assert_eq!(img["version"], "2.3.4/7");
    assert_eq!(img["state"]["status"], "FAILED");
    assert_eq!(img["tags"]["keep"], "yes");
    assert_eq!(img["outputResources"]["containers"][0]["imageUris"][0], "x");

    // AND GetImage does not delete; an unknown image is 404
    assert!(emu.image_exists(a));
    let r = c.get_image(&arn(99)).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_type(), Some("ResourceNotFoundException"));
}

#[tokio::test]
async fn list_image_build_versions_pages_through_seeded_builds() {
    // GIVEN three builds of web/1.0.0 and one of another version
    let (emu, addr) = start(Faults::default()).await;
    emu.seed([1, 2, 3].map(|n| seed_image(&arn(n))));
    emu.seed([seed_image(
        "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.1/1",
    )]);
    let mut c = Conn::connect(addr).await;
    let version = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0";

    // WHEN listed two at a time
    let first = c
        .send(
            "POST",
            "/ListImageBuildVersions",
            Some(&auth("us-east-1")),
            &json!({"imageVersionArn": version, "maxResults": 2}).to_string(),
        )
        .await
        .json();
    let token = first["nextToken"]
        .as_str()
        .expect("a second page")
        .to_string();
    let second = c
        .send(
            "POST",
            "/ListImageBuildVersions",
            Some(&auth("us-east-1")),
            &json!({"imageVersionArn": version, "maxResults": 2, "nextToken": token}).to_string(),
        )
        .await
        .json();

    // THEN the pages hold exactly the three builds, with version and owner
    let arns: Vec<String> = [&first, &second]
        .iter()
        .flat_map(|p| p["imageSummaryList"].as_array().unwrap().clone())
        .map(|s| s["arn"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(arns, vec![arn(1), arn(2), arn(3)]);
    assert_eq!(first["imageSummaryList"][0]["version"], "1.0.0/1");
    assert_eq!(first["imageSummaryList"][0]["owner"], "123456789012");
    assert!(second.get("nextToken").is_none());
}

#[tokio::test]
async fn implicit_images_exist_until_deleted_once() {
    // GIVEN implicit mode and no seeding
    let (emu, addr) = start(Faults {
        implicit_images: true,
        ..Default::default()
    })
    .await;
    let mut c = Conn::connect(addr).await;

    // WHEN any valid ARN is deleted twice
    let first = c.delete_image(&arn(4242)).await;
    let second = c.delete_image(&arn(4242)).await;

    // THEN it existed once, then not
    assert_eq!((first.status, second.status), (200, 404));
    assert!(!emu.image_exists(&arn(4242)));
    assert!(emu.image_exists(&arn(4243)));
}

// ---------------------------------------------------------------------------------------
// Authentication and validation

#[tokio::test]
async fn unsigned_requests_are_forbidden_and_change_nothing() {
    // GIVEN a seeded image
    let (emu, addr) = start(Faults::default()).await;
    emu.seed([seed_image(&arn(1))]);
    let mut c = Conn::connect(addr).await;

    // WHEN DeleteImage is sent without an Authorization header
    let r = c.send("DELETE", &delete_target(&arn(1)), None, "").await;

    // THEN it is 403 ForbiddenException, the image still exists, no region is recorded
    assert_eq!(r.status, 403);
    assert_eq!(r.error_type(), Some("ForbiddenException"));
    assert!(r.json()["message"].is_string());
    assert!(r.header("x-amzn-requestid").is_some());
    assert!(emu.image_exists(&arn(1)));
    assert_eq!(emu.calls()[0].region, None);

    // AND a header that is not SigV4 is rejected the same way
    let r = c
        .send("DELETE", &delete_target(&arn(1)), Some("Bearer x"), "")
        .await;
    assert_eq!(r.error_type(), Some("ForbiddenException"));

    // AND a credential scoped to another service is a signature error
    let wrong = auth("us-east-1").replace("/imagebuilder/", "/ec2/");
    let r = c
        .send("DELETE", &delete_target(&arn(1)), Some(&wrong), "")
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_type(), Some("InvalidSignatureException"));
    assert!(emu.image_exists(&arn(1)));
}

#[tokio::test]
async fn signing_region_is_recorded_per_call() {
    // GIVEN images in two regions
    let (emu, addr) = start(Faults {
        implicit_images: true,
        ..Default::default()
    })
    .await;
    let mut c = Conn::connect(addr).await;
    let eu = "arn:aws:imagebuilder:eu-central-1:123456789012:image/web/1.0.0/1";

    // WHEN each is deleted with a client signed for its region
    c.send(
        "DELETE",
        &delete_target(&arn(1)),
        Some(&auth("us-east-1")),
        "",
    )
    .await;
    c.send(
        "DELETE",
        &delete_target(eu),
        Some(&auth("eu-central-1")),
        "",
    )
    .await;

    // THEN the calls carry those regions
    let regions: Vec<_> = emu.calls().into_iter().map(|c| c.region.unwrap()).collect();
    assert_eq!(regions, ["us-east-1", "eu-central-1"]);
}

#[tokio::test]
async fn missing_or_malformed_arn_is_invalid_request() {
    let (_emu, addr) = start(Faults {
        implicit_images: true,
        ..Default::default()
    })
    .await;
    let mut c = Conn::connect(addr).await;
    let a = Some(auth("us-east-1"));

    // WHEN the query parameter is missing, empty, or not a build-version ARN
    let cases = [
        "/DeleteImage".to_string(),
        "/DeleteImage?imageBuildVersionArn=".to_string(),
        delete_target("arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0"),
        delete_target("arn:aws:ec2:us-east-1::image/ami-1"),
    ];
    for target in cases {
        let r = c.send("DELETE", &target, a.as_deref(), "").await;
        // THEN each is 400 InvalidRequestException
        assert_eq!(r.status, 400, "{target}");
        assert_eq!(r.error_type(), Some("InvalidRequestException"), "{target}");
    }

    // AND an unknown operation is 404 UnknownOperationException
    let r = c
        .send("POST", "/DeleteEverything", a.as_deref(), "{}")
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_type(), Some("UnknownOperationException"));
}

// ---------------------------------------------------------------------------------------
// Scripts and modelled errors

#[tokio::test]
async fn every_modelled_error_has_its_status_header_and_body() {
    let (emu, addr) = start(Faults::default()).await;
    emu.seed([seed_image(&arn(1))]);
    let mut c = Conn::connect(addr).await;
    let table = [
        ("ServiceException", 500),
        ("ClientException", 400),
        ("InvalidRequestException", 400),
        ("ServiceUnavailableException", 503),
        ("ForbiddenException", 403),
        ("CallRateLimitExceededException", 429),
        ("ResourceDependencyException", 400),
        ("ResourceNotFoundException", 404),
    ];
    for (code, status) in table {
        // GIVEN a script answering this code once
        emu.script(&arn(1), vec![Step::Error(code.into())]);
        // WHEN DeleteImage is called
        let r = c.delete_image(&arn(1)).await;
        // THEN the status, X-Amzn-ErrorType, JSON message and request id are as modelled
        assert_eq!(r.status, status, "{code}");
        assert_eq!(r.error_type(), Some(code));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.header("x-amzn-requestid").is_some());
        assert!(r.json()["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // AND no scripted error deleted the image
    assert!(emu.image_exists(&arn(1)));
}

#[tokio::test]
async fn scripted_steps_answer_in_order_then_normal_behaviour_resumes() {
    // GIVEN ARN 1 scripted 429, 503, ok — and ARN 2 unscripted
    let (emu, addr) = start(Faults::default()).await;
    emu.seed([seed_image(&arn(1)), seed_image(&arn(2))]);
    emu.script(
        &arn(1),
        vec![
            Step::Error("CallRateLimitExceededException".into()),
            Step::Error("ServiceUnavailableException".into()),
            Step::Ok,
        ],
    );
    let mut c = Conn::connect(addr).await;

    // WHEN ARN 1 is deleted four times (ARN 2 once in between)
    let mut statuses = vec![];
    for i in 0..4 {
        statuses.push(c.delete_image(&arn(1)).await.status);
        if i == 0 {
            assert_eq!(c.delete_image(&arn(2)).await.status, 200);
        }
    }

    // THEN the script plays in order, "ok" really deletes, and then state answers 404
    assert_eq!(statuses, [429, 503, 200, 404]);
}

#[tokio::test]
async fn scripts_are_per_operation() {
    // GIVEN a GetImage script for an ARN
    let (emu, addr) = start(Faults::default()).await;
    emu.seed([seed_image(&arn(1))]);
    emu.script_op(
        "GetImage",
        &arn(1),
        vec!["ForbiddenException".parse().unwrap()],
    );
    let mut c = Conn::connect(addr).await;

    // WHEN GetImage then DeleteImage are called
    let get = c.get_image(&arn(1)).await;
    let del = c.delete_image(&arn(1)).await;

    // THEN only GetImage is affected
    assert_eq!(get.error_type(), Some("ForbiddenException"));
    assert_eq!(del.status, 200);
}

#[test]
fn steps_parse_from_control_api_strings() {
    assert_eq!("ok".parse::<Step>(), Ok(Step::Ok));
    assert_eq!("OK".parse::<Step>(), Ok(Step::Ok));
    assert_eq!(
        "ResourceDependencyException".parse::<Step>(),
        Ok(Step::Error("ResourceDependencyException".into()))
    );
    assert!("ThrottlingExceptoin".parse::<Step>().is_err());
}

// ---------------------------------------------------------------------------------------
// Random faults, concurrency and rate limiting

#[tokio::test]
async fn throttle_rate_is_roughly_as_configured() {
    // GIVEN a 25 % throttle rate
    let (emu, addr) = start(Faults {
        throttle_rate: 0.25,
        implicit_images: true,
        ..Default::default()
    })
    .await;
    let mut c = Conn::connect(addr).await;

    // WHEN 400 distinct ARNs are deleted
    let mut throttled = 0;
    for n in 0..400 {
        let r = c.delete_image(&arn(n)).await;
        match r.status {
            429 => {
                assert_eq!(r.error_type(), Some("CallRateLimitExceededException"));
                throttled += 1;
            }
            200 => {}
            other => panic!("unexpected {other}"),
        }
    }

    // THEN about a quarter were throttled (mean 100, sd ≈ 8.7: bounds are > 4 sd wide)
    assert!((60..=140).contains(&throttled), "throttled {throttled}");
    assert_eq!(emu.stats()["byStatus"]["429"], throttled);
}

#[tokio::test]
async fn error_rate_answers_500_and_503() {
    // GIVEN every call fails with a 5xx
    let (_emu, addr) = start(Faults {
        error_rate: 1.0,
        implicit_images: true,
        ..Default::default()
    })
    .await;
    let mut c = Conn::connect(addr).await;
    let mut codes = std::collections::BTreeSet::new();
    for n in 0..60 {
        let r = c.delete_image(&arn(n)).await;
        codes.insert((r.status, r.error_type().unwrap().to_string()));
    }
    // THEN both modelled 5xx errors occur, nothing else
    let expected: std::collections::BTreeSet<_> = [
        (500, "ServiceException".to_string()),
        (503, "ServiceUnavailableException".to_string()),
    ]
    .into();
    assert_eq!(codes, expected);
}

#[tokio::test]
async fn sixty_four_concurrent_requests_overlap_with_latency() {
    // GIVEN 200 ms latency
    let (emu, addr) = start(Faults {
        latency_ms: 200,
        implicit_images: true,
        ..Default::default()
    })
    .await;

    // WHEN 64 requests are sent at once on 64 connections
    let started = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|n| tokio::spawn(async move { Conn::connect(addr).await.delete_image(&arn(n)).await }))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().status, 200);
    }
    let elapsed = started.elapsed();

    // THEN they were all in flight together (the high-water mark proves the latency was
    // slept concurrently; how long that took is for scripts/bench, not a test), and no
    // answer came before its latency
    assert_eq!(emu.max_concurrency(), 64);
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert_eq!(emu.in_flight(), 0);

    // AND reset_stats clears the log and the high-water mark
    emu.reset_stats();
    assert_eq!((emu.calls().len(), emu.max_concurrency()), (0, 0));
}

#[tokio::test]
async fn latency_and_jitter_delay_each_answer() {
    // GIVEN 30 ms latency + up to 20 ms jitter
    let (_emu, addr) = start(Faults {
        latency_ms: 30,
        jitter_ms: 20,
        implicit_images: true,
        ..Default::default()
    })
    .await;
    let mut c = Conn::connect(addr).await;
    // WHEN 5 sequential calls are made
    for n in 0..5 {
        let t = Instant::now();
        c.delete_image(&arn(n)).await;
        let ms = t.elapsed().as_millis();
        // THEN no answer comes before its latency (an upper bound would only measure how
        // busy the machine is)
        assert!(ms >= 30, "{ms} ms");
    }
}

#[tokio::test]
async fn max_rps_limits_accepted_calls() {
    // GIVEN a limit of 20 requests per second (burst 20)
    let (emu, addr) = start(Faults {
        max_rps: Some(20.0),
        implicit_images: true,
        ..Default::default()
    })
    .await;
    let mut c = Conn::connect(addr).await;

    // WHEN 100 calls are made as fast as possible
    let started = Instant::now();
    let mut accepted = 0;
    for n in 0..100 {
        let r = c.delete_image(&arn(n)).await;
        match r.status {
            200 => accepted += 1,
            429 => assert_eq!(r.error_type(), Some("CallRateLimitExceededException")),
            other => panic!("unexpected {other}"),
        }
    }
    let secs = started.elapsed().as_secs_f64();

    // THEN about the burst plus what refilled meanwhile was accepted, the rest throttled
    let ceiling = 20.0 + 20.0 * secs + 1.0;
    assert!(accepted >= 20, "accepted {accepted}");
    assert!(
        f64::from(accepted) <= ceiling,
        "accepted {accepted} in {secs}s"
    );

    // AND after half a second, tokens are back
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(emu.faults().max_rps, Some(20.0));
    let mut ok_after = 0;
    for n in 100..105 {
        if c.delete_image(&arn(n)).await.status == 200 {
            ok_after += 1;
        }
    }
    assert_eq!(ok_after, 5);
}

#[tokio::test]
async fn an_operation_bucket_throttles_exactly_the_calls_beyond_its_burst() {
    // GIVEN DeleteImage limited to a burst of 5, refilling too slowly to matter in a test
    // (one token per 1000 s)
    let (emu, addr) = start(Faults {
        rate_limits: BTreeMap::from([(
            "DeleteImage".into(),
            RateLimit {
                rate: 0.001,
                burst: 5.0,
            },
        )]),
        implicit_images: true,
        ..Default::default()
    })
    .await;
    let mut c = Conn::connect(addr).await;

    // WHEN 5 + 3 deletes are sent back to back
    let mut statuses = Vec::new();
    for n in 0..8 {
        let r = c.delete_image(&arn(n)).await;
        statuses.push(r.status);
        if r.status == 429 {
            assert_eq!(r.error_type(), Some("CallRateLimitExceededException"));
        }
    }

    // THEN the first 5 pass and exactly the 3 beyond the burst are throttled
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    assert_eq!(emu.throttled("DeleteImage"), 3);
    assert_eq!(
        emu.stats()["throttledByOperation"],
        json!({"DeleteImage": 3})
    );
    // AND a throttled delete deleted nothing
    assert!(emu.image_exists(&arn(7)));
}

#[tokio::test]
async fn a_limited_operation_does_not_limit_the_others() {
    // GIVEN DeleteImage limited to one call in total
    let (emu, addr) = start(Faults {
        rate_limits: BTreeMap::from([(
            "DeleteImage".into(),
            RateLimit {
                rate: 0.0,
                burst: 1.0,
            },
        )]),
        implicit_images: true,
        ..Default::default()
    })
    .await;
    let mut c = Conn::connect(addr).await;

    // WHEN DeleteImage uses its call, then GetImage and ListImageBuildVersions run freely
    assert_eq!(c.delete_image(&arn(1)).await.status, 200);
    for n in 2..22 {
        assert_eq!(c.get_image(&arn(n)).await.status, 200);
    }
    let list = c
        .list("ListImageBuildVersions", "us-east-1", &json!({}))
        .await;

    // THEN only DeleteImage is throttled
    assert_eq!(list.status, 200);
    assert_eq!(c.delete_image(&arn(2)).await.status, 429);
    assert_eq!(
        (emu.throttled("DeleteImage"), emu.throttled("GetImage")),
        (1, 0)
    );
}

#[tokio::test]
async fn one_bucket_per_operation_is_shared_by_every_caller() {
    // GIVEN GetImage limited to a burst of 4 (no refill)
    let (emu, addr) = start(Faults {
        rate_limits: BTreeMap::from([(
            "GetImage".into(),
            RateLimit {
                rate: 0.0,
                burst: 4.0,
            },
        )]),
        implicit_images: true,
        ..Default::default()
    })
    .await;

    // WHEN 10 callers on 10 connections call at once (like 10 function instances)
    let tasks: Vec<_> = (0..10)
        .map(|n| {
            tokio::spawn(async move { Conn::connect(addr).await.get_image(&arn(n)).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }

    // THEN 4 in total pass and 6 are throttled, whoever sent them
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 4);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 6);
    assert_eq!(emu.throttled("GetImage"), 6);
}

#[tokio::test]
async fn rate_limits_are_set_over_the_control_api() {
    let (emu, addr) = start(Faults {
        implicit_images: true,
        ..Default::default()
    })
    .await;
    let mut c = Conn::connect(addr).await;

    // GIVEN GetImage limited to 2 calls over HTTP (missing burst would be one second's worth)
    let limits = r#"{"implicitImages": true, "rateLimits": {"GetImage": {"rate": 0, "burst": 2}}}"#;
    let f = c.control("POST", "/_emulator/faults", limits).await.json();
    assert_eq!(
        f["rateLimits"]["GetImage"],
        json!({"rate": 0.0, "burst": 2.0})
    );

    // WHEN GetImage is called 3 times
    let mut statuses = Vec::new();
    for n in 0..3 {
        statuses.push(c.get_image(&arn(n)).await.status);
    }

    // THEN the third is throttled
    assert_eq!(statuses, [200, 200, 429]);

    // AND re-sending the same limit does not hand out a fresh burst
    let same = r#"{"rateLimits": {"GetImage": {"rate": 0, "burst": 2}}}"#;
    c.control("PATCH", "/_emulator/faults", same).await;
    assert_eq!(c.get_image(&arn(9)).await.status, 429);

    // AND a changed limit starts full; PATCH leaves the other fields alone
    let more = r#"{"rateLimits": {"GetImage": {"rate": 0, "burst": 1}}}"#;
    let f = c.control("PATCH", "/_emulator/faults", more).await.json();
    assert_eq!(f["implicitImages"], true);
    assert_eq!(c.get_image(&arn(10)).await.status, 200);
    assert_eq!(c.get_image(&arn(11)).await.status, 429);
    assert_eq!(emu.stats()["throttledByOperation"]["GetImage"], 3);

    // AND an invalid limit is refused with 400 and changes nothing
    let bad = r#"{"rateLimits": {"GetImage": {"burst": 1}}}"#;
    assert_eq!(
        c.control("PATCH", "/_emulator/faults", bad).await.status,
        400
    );
    assert_eq!(emu.faults().rate_limits["GetImage"].burst, 1.0);
}

// ---------------------------------------------------------------------------------------
// Control API

#[tokio::test]
async fn control_api_seeds_scripts_configures_and_reports() {
    let (emu, addr) = start(Faults::default()).await;
    let mut c = Conn::connect(addr).await;

    // GIVEN images seeded and a script set over HTTP
    let r = c.control("GET", "/_emulator/health", "").await;
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("ok")));
    let seed = json!([{"arn": arn(1)}, {"arn": arn(2), "tags": {"k": "v"}}]).to_string();
    assert_eq!(
        c.control("POST", "/_emulator/images", &seed).await.json()["seeded"],
        2
    );
    let script = json!({"arn": arn(1), "steps": ["ResourceDependencyException", "ok"]});
    assert_eq!(
        c.control("POST", "/_emulator/script", &script.to_string())
            .await
            .status,
        200
    );
    let bad = json!({"arn": arn(1), "steps": ["Nope"]}).to_string();
    assert_eq!(
        c.control("POST", "/_emulator/script", &bad).await.status,
        400
    );

    // WHEN ARN 1 is deleted twice
    let first = c.delete_image(&arn(1)).await;
    let second = c.delete_image(&arn(1)).await;

    // THEN the script played and the image list reflects the deletion
    assert_eq!(first.error_type(), Some("ResourceDependencyException"));
    assert_eq!(second.status, 200);
    let images = c.control("GET", "/_emulator/images", "").await.json();
    assert_eq!(images, json!([arn(2)]));

    // AND calls and stats report them
    let calls = c.control("GET", "/_emulator/calls", "").await.json();
    assert_eq!(calls.as_array().unwrap().len(), 2);
    assert_eq!(calls[0]["errorCode"], "ResourceDependencyException");
    assert_eq!(calls[0]["region"], "us-east-1");
    let stats = c.control("GET", "/_emulator/stats", "").await.json();
    assert_eq!(stats["calls"], 2);
    assert_eq!(stats["maxConcurrency"], 1);
    assert_eq!(stats["byStatus"], json!({"200": 1, "400": 1}));

    // WHEN faults are set over HTTP (missing fields default)
    let f = c
        .control(
            "POST",
            "/_emulator/faults",
            r#"{"throttleRate": 1.0, "latencyMs": 1}"#,
        )
        .await
        .json();
    assert_eq!(f["throttleRate"], 1.0);
    // THEN they apply to the next call
    assert_eq!(c.delete_image(&arn(2)).await.status, 429);
    assert_eq!(emu.faults().latency_ms, 1);

    // AND PATCH changes only the fields it names
    let f = c
        .control("PATCH", "/_emulator/faults", r#"{"throttleRate": 0}"#)
        .await
        .json();
    assert_eq!(
        (f["throttleRate"].as_f64(), f["latencyMs"].as_u64()),
        (Some(0.0), Some(1))
    );
    assert_eq!(c.delete_image(&arn(2)).await.status, 200);

    // AND reset-stats empties the log
    c.control("POST", "/_emulator/reset-stats", "").await;
    assert!(emu.calls().is_empty());
    assert_eq!(c.control("GET", "/_emulator/nope", "").await.status, 404);
}

// ---------------------------------------------------------------------------------------
// Binary

#[tokio::test]
async fn binary_announces_its_port_serves_seed_and_exits_on_sigterm() {
    use tokio::io::AsyncBufReadExt;

    // GIVEN a seed file
    let dir = std::env::temp_dir().join(format!("ib-emulator-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seed = dir.join("seed.json");
    std::fs::write(&seed, json!([{"arn": arn(7)}]).to_string()).unwrap();

    // WHEN the binary starts on port 0
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ib-emulator"))
        .args(["--port", "0", "--seed"])
        .arg(&seed)
        .arg("--latency-ms=1")
        .args(["--rate-limit", "GetImage=0/1"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ib-emulator");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("announced in time")
        .unwrap()
        .expect("a line");

    // THEN it prints exactly "listening on 127.0.0.1:PORT" and serves the seeded image
    let addr: std::net::SocketAddr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .parse()
        .unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let mut c = Conn::connect(addr).await;
    // AND applies the --rate-limit flag to its operation only
    assert_eq!(c.get_image(&arn(7)).await.status, 200);
    assert_eq!(c.get_image(&arn(7)).await.status, 429);
    assert_eq!(c.delete_image(&arn(7)).await.status, 200);

    // WHEN it receives SIGTERM
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());

    // THEN it exits with status 0 and printed nothing else
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("exits in time")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(lines.next_line().await.unwrap(), None);
    let _ = std::fs::remove_dir_all(&dir);
}
