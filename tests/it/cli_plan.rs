//! The operator CLI's retention plans: `plan` makes the handler's plan, `apply` executes it.
//!
//! These need the handler's plan and plan-execution requests and the emulator's build-version
//! listing; until both are in the tree the handler answers `InvalidEvent` and these fail.

use ib_emulator::SeedImage;

use crate::cli::tempdir;
use crate::support::cli::{self, operator_env};
use crate::support::fixtures::arn;
use crate::support::world::{result_for, Setup, World};

/// Three AVAILABLE builds of one image, oldest first.
async fn three_builds(name: &str) -> (World, [String; 3]) {
    let arns = [arn(name, 1), arn(name, 2), arn(name, 3)];
    let w = World::start(Setup::default()).await;
    w.emu.seed(arns.iter().enumerate().map(|(i, a)| SeedImage {
        arn: a.clone(),
        date_created: Some(format!("2025-0{}-01T10:00:00.000Z", i + 1)),
        ..Default::default()
    }));
    (w, arns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_json_is_the_handlers_plan_and_deletes_nothing() {
    // GIVEN three builds of one image
    let (w, arns) = three_builds("cli-plan").await;
    // WHEN a plan keeps the newest one
    let args = [
        "plan",
        "--name",
        "cli-plan",
        "--keep-newest",
        "1",
        "--output",
        "json",
    ];
    let ran = cli::run(operator_env(&w, &[]), &args, None).await;
    // THEN exit 0, one JSON plan: the two older builds to delete, the newest kept
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    let plan = ran.json();
    let delete: Vec<&str> = plan["delete"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["imageBuildVersionArn"].as_str().unwrap())
        .collect();
    assert_eq!(delete.len(), 2, "{plan:#}");
    assert!(delete.contains(&arns[0].as_str()) && delete.contains(&arns[1].as_str()));
    assert_eq!(plan["keep"][0]["imageBuildVersionArn"], arns[2].as_str());
    assert!(arns.iter().all(|a| w.delete_calls(a) == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_previews_then_deletes_what_the_plan_file_names() {
    // GIVEN a plan written to a file by `plan --out`
    let (w, arns) = three_builds("cli-apply").await;
    let dir = tempdir();
    let file = dir.join("plan.json");
    let file_arg = file.to_str().unwrap();
    let args = [
        "plan",
        "--name",
        "cli-apply",
        "--keep-newest",
        "1",
        "--out",
        file_arg,
    ];
    let made = cli::run(operator_env(&w, &[]), &args, None).await;
    assert_eq!(made.code, Some(0), "{made:#?}");
    // WHEN it is applied as a dry run off a terminal
    let args = ["apply", file_arg, "--dry-run", "--output", "json"];
    let preview = cli::run(operator_env(&w, &[]), &args, None).await;
    // THEN wouldDelete for the two, nothing called
    assert_eq!(preview.code, Some(0), "{preview:#?}");
    assert_eq!(preview.json()["summary"]["wouldDelete"], 2);
    assert!(arns.iter().all(|a| w.delete_calls(a) == 0));
    // WHEN it is applied for real without --yes off a terminal THEN refused, exit 2
    let refused = cli::run(operator_env(&w, &[]), &["apply", file_arg], None).await;
    assert_eq!(refused.code, Some(2), "{refused:#?}");
    // WHEN it is applied with --yes
    let args = ["apply", file_arg, "--yes", "--output", "json"];
    let applied = cli::run(operator_env(&w, &[]), &args, None).await;
    // THEN the two older builds are deleted, the newest is not
    assert_eq!(applied.code, Some(0), "{applied:#?}");
    let report = applied.json();
    for a in &arns[..2] {
        assert_eq!(result_for(&report, a)["status"], "deleted");
    }
    assert_eq!(w.delete_calls(&arns[2]), 0);
    let _ = std::fs::remove_dir_all(dir);
}
