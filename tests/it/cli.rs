//! The operator CLI: the real binary outside Lambda (no Runtime API), its arguments, exit
//! codes, confirmation, progress bar and output, against the emulator and moto.
//!
//! Processes are run with `std::process::Command` (no `assert_cmd`): the tests need the
//! exit code and both outputs of one run, which the standard library gives directly.

use expectrl::{Eof, Expect};
use serde_json::{json, Value};

use crate::support::cli::{self, operator_env, world_dlq_url};
use crate::support::constants::ACCOUNT;
use crate::support::fixtures::arn;
use crate::support::world::{result_for, Setup, World};

const NOT_AN_ARN: &str = "arn:aws:ec2:us-east-1::image/ami-1";

fn bare_env() -> Vec<(String, String)> {
    vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())]
}

#[tokio::test]
async fn by_hand_with_no_arguments_prints_usage_and_exits_2() {
    // GIVEN the binary outside Lambda WHEN run with no arguments
    let ran = cli::run(bare_env(), &[], None).await;
    // THEN usage on stderr, exit 2, no panic
    assert_eq!(ran.code, Some(2), "{ran:#?}");
    assert!(ran.stderr.contains("Usage:"), "{ran:#?}");
    assert!(!ran.stderr.contains("panicked"), "{ran:#?}");
}

#[tokio::test]
async fn help_shows_an_example_for_each_command() {
    for (args, example) in [
        (&["--help"][..], "imagebuilder-reaper apply plan.json"),
        (
            &["delete", "--help"][..],
            "imagebuilder-reaper delete --dry-run",
        ),
        (&["plan", "--help"][..], "imagebuilder-reaper plan --name"),
        (
            &["apply", "--help"][..],
            "imagebuilder-reaper apply plan.json --yes",
        ),
    ] {
        // WHEN help is asked for
        let ran = cli::run(bare_env(), args, None).await;
        // THEN it is on stdout with an example, exit 0
        assert_eq!(ran.code, Some(0), "{args:?}: {ran:#?}");
        assert!(ran.stdout.contains(example), "{args:?}: {}", ran.stdout);
    }
}

/// Arguments, extra environment, and what the error line must say.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn usage_and_configuration_errors_are_one_line_and_exit_2() {
    let cases: &[Case] = &[
        (&["delete", "--bogus"], &[], "unexpected argument '--bogus'"),
        (&["delete"], &[], "name at least one ARN"),
        (
            &["--output", "xml", "delete", "x"],
            &[],
            "invalid value 'xml'",
        ),
        (
            &[
                "delete",
                "--dry-run",
                "x",
                "--delete-output-resources",
                "most",
            ],
            &[],
            "--delete-output-resources \"most\" is not valid",
        ),
        (
            &["delete", "--dry-run", "x"],
            &[("MAX_ATTEMPTS", "0")],
            "MAX_ATTEMPTS",
        ),
        (
            &["apply", "/nonexistent/plan.json", "--dry-run"],
            &[],
            "cannot read",
        ),
        (
            &[
                "delete",
                "--dry-run",
                "x",
                "--region",
                "a-1",
                "--region",
                "b-1",
            ],
            &[],
            "more than once",
        ),
    ];
    for (args, env, expected) in cases {
        // GIVEN a bad argument or setting WHEN the CLI runs
        let mut e = bare_env();
        e.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let ran = cli::run(e, args, None).await;
        // THEN exit 2 and one error line naming the problem
        assert_eq!(ran.code, Some(2), "{args:?}: {ran:#?}");
        let first = ran.stderr.lines().next().unwrap_or("");
        assert!(
            first.starts_with("imagebuilder-reaper: error: "),
            "{args:?}: {ran:#?}"
        );
        assert!(first.contains(expected), "{args:?}: {ran:#?}");
        assert!(ran.stdout.is_empty(), "{args:?}: {ran:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_delete_off_a_terminal_without_yes_is_refused_and_calls_nothing() {
    // GIVEN an existing image and no terminal
    let a = arn("cli-refused", 1);
    let w = World::start(Setup::default().seed([a.clone()])).await;
    // WHEN a real delete runs without --yes
    let ran = cli::run(operator_env(&w, &[]), &["delete", &a], None).await;
    // THEN refused with exit 2, and nothing was called
    assert_eq!(ran.code, Some(2), "{ran:#?}");
    assert!(ran.stderr.contains("--yes"), "{ran:#?}");
    assert!(w.emu.calls().is_empty(), "{:?}", w.emu.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_off_a_terminal_previews_and_deletes_nothing() {
    // GIVEN two images, their ARNs on stdin with a comment and a blank line
    let (a, b) = (arn("cli-dry", 1), arn("cli-dry", 2));
    let w = World::start(Setup::default().seed([a.clone(), b.clone()])).await;
    let input = format!("# builds to go\n{a}\n\n{b}  # the second\n");
    // WHEN a dry run reads them from standard input
    let args = [
        "delete",
        "--from-file",
        "-",
        "--dry-run",
        "--output",
        "json",
    ];
    let ran = cli::run(operator_env(&w, &[]), &args, Some(&input)).await;
    // THEN exit 0, both wouldDelete in the one JSON document, no DeleteImage
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    let report = ran.json();
    assert_eq!(report["summary"]["wouldDelete"], 2, "{report:#}");
    assert_eq!(report["summary"]["dryRun"], true);
    assert_eq!(w.delete_calls(&a) + w.delete_calls(&b), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dead_letter_queue_failures_are_reported_and_exit_1() {
    // GIVEN one image and no dead-letter queue (the CLI's default)
    let a = arn("cli-nodlq", 1);
    let w = World::start(Setup::default().seed([a.clone()])).await;
    // WHEN it is deleted with --yes alongside something that is not a build-version ARN
    let args = ["delete", "--yes", &a, NOT_AN_ARN, "--output", "json"];
    let ran = cli::run(operator_env(&w, &[]), &args, None).await;
    // THEN exit 1: the image deleted, the rejection reported, not dead-lettered
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    let report = ran.json();
    assert_eq!(result_for(&report, &a)["status"], "deleted");
    let rejected = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["input"] == NOT_AN_ARN)
        .expect("the rejection is reported");
    assert_eq!(rejected["errorCode"], "NotAnImageBuildVersionArn");
    assert_eq!(rejected["handedBack"], true);
    assert_eq!(report["summary"]["deadLettered"], 0);
    assert_eq!(w.delete_calls(&a), 1);
}

/// The report without what differs between two runs (the service's request ids).
fn comparable(mut report: Value) -> Value {
    for r in report["results"].as_array_mut().into_iter().flatten() {
        r.as_object_mut().map(|o| o.remove("requestId"));
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_is_the_lambdas_report_for_the_same_input() {
    // GIVEN two identical worlds: an image, a missing one, and a rejected input
    let (a, gone) = (arn("cli-same", 1), arn("cli-same", 2));
    let lambda = World::start(Setup::default().seed([a.clone()])).await;
    let operator = World::start(Setup::default().seed([a.clone()])).await;
    // WHEN the Lambda is invoked directly and the CLI deletes the same ARNs, both with a DLQ
    let event = json!({"imageBuildVersionArns": [a, gone, NOT_AN_ARN], "dryRun": false});
    let by_lambda = lambda.invoke(&event).await.response().clone();
    let dlq = world_dlq_url(&operator);
    let args = ["delete", "--yes", &a, &gone, NOT_AN_ARN, "--output", "json"];
    let args: Vec<&str> = args
        .into_iter()
        .chain(["--dead-letter-queue-url", &dlq])
        .collect();
    let ran = cli::run(operator_env(&operator, &[]), &args, None).await;
    // THEN the CLI's stdout is the Lambda's report, and exit 1 (something was dead-lettered)
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert_eq!(comparable(ran.json()), comparable(by_lambda));
    assert_eq!(operator.dead_letters(1).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_typing_the_account_id_deletes_with_a_progress_bar() {
    // GIVEN an image and an operator at a terminal
    let a = arn("cli-confirm", 1);
    let w = World::start(Setup::default().seed([a.clone()])).await;
    let env = operator_env(&w, &[("NO_COLOR", "1")]);
    let dir = tempdir();
    let out = dir.join("stdout.txt");
    let (arn_, out_) = (a.clone(), out.clone());
    let (code, terminal) = tokio::task::spawn_blocking(move || {
        let mut s = cli::on_terminal(&env, &["delete", &arn_], &out_);
        // WHEN the prompt shows account, region and count, and the account id is typed
        let prompt = s.expect("to delete: ").expect("the prompt");
        let prompt = String::from_utf8_lossy(prompt.before()).into_owned();
        assert!(
            prompt.contains(ACCOUNT) && prompt.contains("us-east-1"),
            "{prompt}"
        );
        assert!(
            prompt.contains("DELETE 1 image build version(s)"),
            "{prompt}"
        );
        s.send_line(ACCOUNT).expect("type the account id");
        let rest = s.expect(Eof).expect("the CLI ends");
        let rest: Vec<u8> = rest
            .before()
            .iter()
            .chain(rest.matches().flatten())
            .copied()
            .collect();
        let rest = String::from_utf8_lossy(&rest).into_owned();
        (exit_code(&s), rest)
    })
    .await
    .unwrap();
    // THEN the image is deleted, exit 0, a progress bar on stderr and the table on stdout
    assert_eq!(code, Some(0), "{terminal}");
    assert_eq!(w.delete_calls(&a), 1);
    assert!(
        terminal.contains("1/1 ARNs"),
        "no progress bar on stderr: {terminal:?}"
    );
    let table = std::fs::read_to_string(&out).unwrap();
    assert!(table.contains("1 requested: 1 deleted"), "{table}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_anything_but_the_account_id_declines_with_exit_3() {
    // GIVEN an image and an operator at a terminal
    let a = arn("cli-decline", 1);
    let w = World::start(Setup::default().seed([a.clone()])).await;
    let env = operator_env(&w, &[]);
    let dir = tempdir();
    let out = dir.join("stdout.txt");
    let arn_ = a.clone();
    let code = tokio::task::spawn_blocking(move || {
        let mut s = cli::on_terminal(&env, &["delete", &arn_], &out);
        s.expect("to delete: ").expect("the prompt");
        // WHEN "yes" is typed instead of the account id
        s.send_line("yes").expect("type");
        s.expect(Eof).expect("the CLI ends");
        exit_code(&s)
    })
    .await
    .unwrap();
    // THEN declined: exit 3, nothing deleted
    assert_eq!(code, Some(3));
    assert_eq!(w.delete_calls(&a), 0);
    let _ = std::fs::remove_dir_all(dir);
}

fn exit_code(s: &expectrl::session::OsSession) -> Option<i32> {
    match s.get_process().wait() {
        Ok(expectrl::process::unix::WaitStatus::Exited(_, code)) => Some(code),
        other => panic!("the CLI did not exit normally: {other:?}"),
    }
}

/// A fresh directory for one test's files.
pub fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(crate::support::moto::unique("reaper-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
