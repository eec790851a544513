//! Issue 5 — deleting what DeleteImage leaves behind (AMIs, their snapshots, ECR images):
//! handler + engine tests with in-memory fakes of EC2 and ECR (and the shared fakes of Image
//! Builder and the DLQ). Each test ends with the one-rule check where an ARN could go astray.

#[path = "support/fakes.rs"]
mod fakes;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fakes::{assert_every_item_accounted_for, DlqMode, FakeDlq, FakeImages};
use imagebuilder_reaper::arn::ImageArn;
use imagebuilder_reaper::config::Config;
use imagebuilder_reaper::engine::Invocation;
use imagebuilder_reaper::error::ReaperError;
use imagebuilder_reaper::handler::{Handled, Handler};
use imagebuilder_reaper::outcome::{ResultRecord, Status, Subject};
use imagebuilder_reaper::output_resources::entry::{ResourceKind, ResourceStatus};
use imagebuilder_reaper::output_resources::mode::Mode;
use imagebuilder_reaper::ports::{
    AmiDescription, Amis, CallError, ContainerImages, Deleted, ImageInfo, ImageReference, Images,
    OutputAmi, OutputContainer, OutputResources, Removal,
};
use imagebuilder_reaper::report::Report;
use serde_json::{json, Value};
use tokio::time::Instant;

const ACCOUNT: &str = "123456789012";
const OTHER_ACCOUNT: &str = "210987654321";
const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:imagebuilder-reaper";
const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/reaper-dlq";
const IMAGE: &str = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/1";
const URI: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:1.0.0-1";

// -------------------------------------------------------------------------------------
// Fakes: one shared, ordered call log across Image Builder, EC2 and ECR
// -------------------------------------------------------------------------------------

type Log = Arc<Mutex<Vec<String>>>;

/// Image Builder that logs into the shared log (to check DeleteImage runs last).
#[derive(Clone)]
struct LoggedImages {
    inner: FakeImages,
    log: Log,
}

impl Images for LoggedImages {
    async fn delete_image(&self, arn: &ImageArn) -> Result<Deleted, CallError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("DeleteImage {}", arn.as_str()));
        self.inner.delete_image(arn).await
    }
    async fn get_image(&self, arn: &ImageArn) -> Result<ImageInfo, CallError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("GetImage {}", arn.as_str()));
        self.inner.get_image(arn).await
    }
}

#[derive(Clone)]
struct Ami {
    region: String,
    owner: String,
    snapshots: Vec<String>,
    tags: HashMap<String, String>,
}

#[derive(Default)]
struct Ec2State {
    amis: HashMap<String, Ami>,
    /// snapshot id → (region, the AMI whose description names it)
    snapshots: HashMap<String, (String, String)>,
    /// Snapshots another (unrelated) AMI also uses.
    shared: HashSet<String>,
    /// (operation, id) → errors returned by the next calls, in order.
    faults: HashMap<(String, String), VecDeque<CallError>>,
}

/// EC2 as the real service behaves for these calls: a snapshot of a registered AMI is
/// `InvalidSnapshot.InUse`; a deregistered AMI is gone from DescribeImages but its
/// snapshots are still found by description; wrong-region calls see nothing.
#[derive(Clone)]
struct FakeEc2 {
    state: Arc<Mutex<Ec2State>>,
    log: Log,
}

impl FakeEc2 {
    fn ami(&self, region: &str, id: &str, owner: &str, snapshots: &[&str]) -> &Self {
        let mut s = self.state.lock().unwrap();
        for snap in snapshots {
            s.snapshots
                .insert(snap.to_string(), (region.to_string(), id.to_string()));
        }
        s.amis.insert(
            id.to_string(),
            Ami {
                region: region.into(),
                owner: owner.into(),
                snapshots: snapshots.iter().map(|s| s.to_string()).collect(),
                tags: HashMap::new(),
            },
        );
        self
    }
    fn tag(&self, id: &str, key: &str) -> &Self {
        let mut s = self.state.lock().unwrap();
        s.amis
            .get_mut(id)
            .unwrap()
            .tags
            .insert(key.into(), "yes".into());
        self
    }
    fn shared(&self, snap: &str) -> &Self {
        self.state.lock().unwrap().shared.insert(snap.into());
        self
    }
    fn fail(&self, op: &str, id: &str, times: usize, err: CallError) -> &Self {
        self.state.lock().unwrap().faults.insert(
            (op.into(), id.into()),
            std::iter::repeat_n(err, times).collect(),
        );
        self
    }
    fn registered(&self, id: &str) -> bool {
        self.state.lock().unwrap().amis.contains_key(id)
    }
    fn snapshot_exists(&self, id: &str) -> bool {
        self.state.lock().unwrap().snapshots.contains_key(id)
    }
    fn enter(&self, op: &str, id: &str) -> Result<std::sync::MutexGuard<'_, Ec2State>, CallError> {
        self.log.lock().unwrap().push(format!("{op} {id}"));
        let mut s = self.state.lock().unwrap();
        if let Some(e) = s
            .faults
            .get_mut(&(op.to_string(), id.to_string()))
            .and_then(VecDeque::pop_front)
        {
            return Err(e);
        }
        Ok(s)
    }
}

impl Amis for FakeEc2 {
    async fn describe_image(
        &self,
        region: &str,
        id: &str,
    ) -> Result<Option<AmiDescription>, CallError> {
        let s = self.enter("DescribeImages", id)?;
        match s.amis.get(id) {
            Some(a) if a.region == region => Ok(Some(AmiDescription {
                owner_id: Some(a.owner.clone()),
                snapshot_ids: a.snapshots.clone(),
                tags: a.tags.clone(),
            })),
            _ => Err(CallError::not_found(
                "InvalidAMIID.NotFound",
                format!("The image id '[{id}]' does not exist"),
            )),
        }
    }
    async fn snapshots_left_by(&self, region: &str, id: &str) -> Result<Vec<String>, CallError> {
        let s = self.enter("DescribeSnapshots", id)?;
        let mut found: Vec<String> = s
            .snapshots
            .iter()
            .filter(|(_, (r, ami))| r == region && ami == id)
            .map(|(snap, _)| snap.clone())
            .collect();
        found.sort();
        Ok(found)
    }
    async fn deregister_image(&self, region: &str, id: &str) -> Result<(), CallError> {
        let mut s = self.enter("DeregisterImage", id)?;
        match s.amis.get(id) {
            Some(a) if a.region == region => {
                s.amis.remove(id);
                Ok(())
            }
            _ => Err(CallError::not_found("InvalidAMIID.NotFound", "no such AMI")),
        }
    }
    async fn delete_snapshot(&self, region: &str, id: &str) -> Result<Removal, CallError> {
        let mut s = self.enter("DeleteSnapshot", id)?;
        let Some((r, ami)) = s.snapshots.get(id).cloned() else {
            return Err(CallError::not_found(
                "InvalidSnapshot.NotFound",
                "no such snapshot",
            ));
        };
        if r != region {
            return Err(CallError::not_found(
                "InvalidSnapshot.NotFound",
                "wrong region",
            ));
        }
        if s.amis.contains_key(&ami) || s.shared.contains(id) {
            return Ok(Removal::InUse(format!(
                "InvalidSnapshot.InUse: The snapshot {id} is currently in use by ami-other"
            )));
        }
        s.snapshots.remove(id);
        Ok(Removal::Removed)
    }
}

#[derive(Default)]
struct EcrState {
    /// (region, registry, repository) → image references present.
    repos: HashMap<(String, String, String), HashSet<ImageReference>>,
    /// repository → whole-call errors of the next calls.
    faults: HashMap<String, VecDeque<CallError>>,
}

#[derive(Clone)]
struct FakeEcr {
    state: Arc<Mutex<EcrState>>,
    log: Log,
}

impl FakeEcr {
    fn image(&self, region: &str, registry: &str, repo: &str, tag: &str) -> &Self {
        self.state
            .lock()
            .unwrap()
            .repos
            .entry((region.into(), registry.into(), repo.into()))
            .or_default()
            .insert(ImageReference::Tag(tag.into()));
        self
    }
    fn fail(&self, repo: &str, times: usize, err: CallError) -> &Self {
        self.state
            .lock()
            .unwrap()
            .faults
            .insert(repo.into(), std::iter::repeat_n(err, times).collect());
        self
    }
    fn exists(&self, repo: &str, tag: &str) -> bool {
        self.state
            .lock()
            .unwrap()
            .repos
            .iter()
            .any(|((_, _, r), refs)| r == repo && refs.contains(&ImageReference::Tag(tag.into())))
    }
    fn calls(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("BatchDeleteImage"))
            .count()
    }
}

impl ContainerImages for FakeEcr {
    async fn batch_delete_image(
        &self,
        region: &str,
        registry: &str,
        repo: &str,
        images: &[ImageReference],
    ) -> Result<Vec<Result<Removal, CallError>>, CallError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("BatchDeleteImage {repo} {}", images.len()));
        let mut s = self.state.lock().unwrap();
        if let Some(e) = s.faults.get_mut(repo).and_then(VecDeque::pop_front) {
            return Err(e);
        }
        let Some(refs) =
            s.repos
                .get_mut(&(region.to_string(), registry.to_string(), repo.to_string()))
        else {
            return Err(CallError::not_found(
                "RepositoryNotFoundException",
                "no repo",
            ));
        };
        Ok(images
            .iter()
            .map(|r| {
                if refs.remove(r) {
                    Ok(Removal::Removed)
                } else {
                    Err(CallError::not_found(
                        "ImageNotFound",
                        "Requested image not found",
                    ))
                }
            })
            .collect())
    }
}

// -------------------------------------------------------------------------------------
// World
// -------------------------------------------------------------------------------------

struct World {
    images: FakeImages,
    ec2: FakeEc2,
    ecr: FakeEcr,
    dlq: Option<FakeDlq>,
    log: Log,
    handler: Handler<LoggedImages, FakeDlq, FakeEc2, FakeEcr>,
}

fn config(mode: Mode) -> Config {
    Config {
        max_attempts: 3,
        delete_output_resources: mode,
        ..Config::default()
    }
}

impl World {
    fn new(mut config: Config, dlq: Option<DlqMode>) -> World {
        let log: Log = Arc::default();
        let images = FakeImages::new();
        let ec2 = FakeEc2 {
            state: Arc::default(),
            log: log.clone(),
        };
        let ecr = FakeEcr {
            state: Arc::default(),
            log: log.clone(),
        };
        let dlq = dlq.map(FakeDlq::new);
        config.dead_letter_queue_url = dlq.as_ref().map(|_| QUEUE.to_string());
        let handler = Handler::new(
            config,
            LoggedImages {
                inner: images.clone(),
                log: log.clone(),
            },
            dlq.clone(),
        )
        .with_output_resources(ec2.clone(), ecr.clone());
        World {
            images,
            ec2,
            ecr,
            dlq,
            log,
            handler,
        }
    }

    /// The usual image: ami-1 (us-east-1, snap-1 + snap-2), ami-2 (eu-west-1, snap-3), one
    /// ECR image; GetImage lists all three.
    fn with_standard_image(self) -> Self {
        self.ec2
            .ami("us-east-1", "ami-1", ACCOUNT, &["snap-1", "snap-2"])
            .ami("eu-west-1", "ami-2", ACCOUNT, &["snap-3"]);
        self.ecr.image("us-east-1", ACCOUNT, "web", "1.0.0-1");
        self.images.output_resources(
            IMAGE,
            OutputResources {
                amis: vec![
                    ami("us-east-1", "ami-1", ACCOUNT),
                    ami("eu-west-1", "ami-2", ACCOUNT),
                ],
                containers: vec![OutputContainer {
                    region: Some("us-east-1".into()),
                    image_uris: vec![URI.into()],
                }],
            },
        );
        self
    }

    async fn run(&self, event: &Value) -> Handled {
        let inv = Invocation {
            request_id: "req-1".into(),
            invoked_function_arn: FUNCTION_ARN.into(),
            deadline: Instant::now() + Duration::from_secs(900),
        };
        self.handler.handle_detailed(event, &inv).await
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn delete_image_called(&self) -> bool {
        self.log().iter().any(|l| l.starts_with("DeleteImage"))
    }

    fn assert_accounted(&self, items: &[(&str, &str)], handled: &Handled) {
        let items: Vec<(&str, Value)> = items.iter().map(|(s, i)| (*s, json!(i))).collect();
        assert_every_item_accounted_for(&items, handled, self.dlq.as_ref());
    }
}

fn ami(region: &str, id: &str, account: &str) -> OutputAmi {
    OutputAmi {
        region: Some(region.into()),
        image_id: Some(id.into()),
        account_id: Some(account.into()),
    }
}

fn direct(extra: Value) -> Value {
    let mut v = json!({"imageBuildVersionArn": IMAGE});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    v
}

fn sqs(id: &str) -> Value {
    json!({"Records": [{
        "messageId": id, "receiptHandle": "rh", "body": IMAGE, "attributes": {},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work", "awsRegion": "us-east-1"
    }]})
}

fn record(h: &Handled) -> &ResultRecord {
    h.execution
        .as_ref()
        .expect("decoded")
        .records
        .iter()
        .find(|r| r.subject == Subject::Arn(IMAGE.into()))
        .expect("a record for the image")
}

fn report(h: &Handled) -> &Report {
    h.result.as_ref().expect("the invocation succeeds")
}

/// (id, status) of every output-resource entry, in report order.
fn pieces(h: &Handled) -> Vec<(String, ResourceStatus)> {
    record(h)
        .output_resources
        .iter()
        .map(|e| (e.id.clone(), e.status))
        .collect()
}

fn retryable(code: &str) -> CallError {
    CallError::retryable(code, format!("scripted {code}"))
}

// -------------------------------------------------------------------------------------
// Tests
// -------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn full_cleanup_deletes_every_piece_in_its_own_region_and_delete_image_last() {
    // GIVEN an image with two AMIs in two regions (three snapshots) and an ECR image
    let w = World::new(config(Mode::All), Some(DlqMode::Up)).with_standard_image();
    // WHEN it is named
    let h = w.run(&direct(json!({}))).await;
    // THEN every piece is gone and reported deleted, the AMI before its snapshots
    use ResourceStatus::*;
    assert_eq!(
        pieces(&h),
        [
            ("ami-1".into(), Deleted),
            ("snap-1".into(), Deleted),
            ("snap-2".into(), Deleted),
            ("ami-2".into(), Deleted),
            ("snap-3".into(), Deleted),
            (URI.into(), Deleted),
        ]
    );
    assert!(!w.ec2.registered("ami-1") && !w.ec2.registered("ami-2"));
    assert!(!w.ec2.snapshot_exists("snap-1") && !w.ec2.snapshot_exists("snap-3"));
    assert!(!w.ecr.exists("web", "1.0.0-1"));
    // AND the image itself is deleted, by the very last call
    assert_eq!(record(&h).status, Status::Deleted);
    assert!(w.images.is_deleted(IMAGE));
    assert_eq!(w.log().last().unwrap(), &format!("DeleteImage {IMAGE}"));
    assert_eq!(w.log().first().unwrap(), &format!("GetImage {IMAGE}"));
    // AND the report carries them in camelCase
    let json: Value = serde_json::from_str(&report(&h).to_json(5_000_000)).unwrap();
    let entries = &json["results"][0]["outputResources"];
    assert_eq!(entries.as_array().unwrap().len(), 6);
    assert_eq!(entries[1]["type"], "snapshot");
    assert_eq!(entries[1]["amiId"], "ami-1");
    assert_eq!(entries[3]["region"], "eu-west-1");
    assert_eq!(entries[5]["type"], "containerImage");
    assert_eq!(entries[5]["status"], "deleted");
    w.assert_accounted(&[("req-1", IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_used_by_another_ami_is_skipped_with_its_reason_and_does_not_block() {
    let w = World::new(config(Mode::Amis), Some(DlqMode::Up)).with_standard_image();
    w.ec2.shared("snap-2");
    let h = w.run(&direct(json!({}))).await;
    let r = record(&h);
    let snap2 = r
        .output_resources
        .iter()
        .find(|e| e.id == "snap-2")
        .unwrap();
    assert_eq!(snap2.status, ResourceStatus::SkippedInUse);
    assert!(snap2
        .message
        .as_deref()
        .unwrap()
        .contains("InvalidSnapshot.InUse"));
    assert_eq!(r.status, Status::Deleted);
    // mode `amis`: the container image is neither listed nor touched
    assert!(r
        .output_resources
        .iter()
        .all(|e| e.kind != ResourceKind::ContainerImage));
    assert!(w.ecr.exists("web", "1.0.0-1") && w.ecr.calls() == 0);
    w.assert_accounted(&[("req-1", IMAGE)], &h);
}

fn foreign_world(require_complete: bool) -> World {
    let w = World::new(
        Config {
            require_complete_cleanup: require_complete,
            ..config(Mode::All)
        },
        Some(DlqMode::Up),
    );
    w.ec2.ami("us-east-1", "ami-1", ACCOUNT, &["snap-1"]);
    w.images.output_resources(
        IMAGE,
        OutputResources {
            amis: vec![
                ami("us-east-1", "ami-1", ACCOUNT),
                ami("us-east-1", "ami-9", OTHER_ACCOUNT),
            ],
            containers: vec![],
        },
    );
    w
}

#[tokio::test(start_paused = true)]
async fn a_foreign_account_ami_is_not_touched_and_does_not_block_by_default() {
    let w = foreign_world(false);
    let h = w.run(&direct(json!({}))).await;
    let foreign = record(&h)
        .output_resources
        .iter()
        .find(|e| e.id == "ami-9")
        .unwrap()
        .clone();
    assert_eq!(foreign.status, ResourceStatus::SkippedForeignAccount);
    assert_eq!(foreign.account_id.as_deref(), Some(OTHER_ACCOUNT));
    assert!(
        !w.log().iter().any(|l| l.contains("ami-9")),
        "no call names it"
    );
    assert_eq!(record(&h).status, Status::Deleted);
    w.assert_accounted(&[("req-1", IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn with_require_complete_cleanup_a_foreign_ami_blocks_delete_image_permanently() {
    let w = foreign_world(true);
    let h = w.run(&direct(json!({}))).await;
    let r = record(&h);
    // THEN what could be deleted is, but the image stays and the ARN is dead-lettered
    assert!(!w.ec2.registered("ami-1"));
    assert!(!w.delete_image_called());
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.error_code.as_deref(), Some("IncompleteCleanup"));
    assert_eq!(r.retryable, Some(false));
    assert!(r.message.as_deref().unwrap().contains("ami-9"));
    let dl = w.dlq.as_ref().unwrap().received();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].body["errorCode"], "IncompleteCleanup");
    w.assert_accounted(&[("req-1", IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn ecr_throttling_past_max_attempts_hands_an_sqs_record_back_without_delete_image() {
    // GIVEN ECR throttles every call
    let w = World::new(config(Mode::All), Some(DlqMode::Up)).with_standard_image();
    w.ecr.fail("web", 100, retryable("ThrottlingException"));
    // WHEN the image arrives from SQS
    let h = w.run(&sqs("m-1")).await;
    // THEN ECR was tried MAX_ATTEMPTS times, DeleteImage never, and the record is handed back
    assert_eq!(w.ecr.calls(), 3);
    assert!(!w.delete_image_called());
    let r = record(&h);
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.retryable, Some(true));
    assert_eq!(r.error_code.as_deref(), Some("ThrottlingException"));
    assert!(r
        .message
        .as_deref()
        .unwrap()
        .contains("DeleteImage was not called"));
    let batch: Vec<_> = report(&h)
        .batch_item_failures
        .as_ref()
        .unwrap()
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(batch, ["m-1"]);
    assert!(w.dlq.as_ref().unwrap().received().is_empty());
    let container = r.output_resources.iter().find(|e| e.id == URI).unwrap();
    assert_eq!(container.status, ResourceStatus::Failed);
    assert_eq!(
        (container.retryable, container.attempts),
        (Some(true), Some(3))
    );
    w.assert_accounted(&[("m-1", IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn ecr_throttling_past_max_attempts_dead_letters_a_direct_invocation_as_retryable() {
    let w = World::new(config(Mode::All), Some(DlqMode::Up)).with_standard_image();
    w.ecr.fail("web", 100, retryable("ThrottlingException"));
    let h = w.run(&direct(json!({}))).await;
    assert!(!w.delete_image_called());
    let dl = w.dlq.as_ref().unwrap().received();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].body["retryable"], true);
    assert_eq!(dl[0].body["imageBuildVersionArn"], IMAGE);
    w.assert_accounted(&[("req-1", IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn without_a_dlq_a_retryable_cleanup_failure_fails_a_direct_invocation() {
    let w = World::new(config(Mode::All), None).with_standard_image();
    w.ecr.fail("web", 100, retryable("ThrottlingException"));
    let h = w.run(&direct(json!({}))).await;
    assert!(matches!(
        h.result,
        Err(ReaperError::DeadLetterQueueUnavailable { .. })
    ));
    assert!(!w.delete_image_called());
    w.assert_accounted(&[("req-1", IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn a_throttle_that_clears_within_max_attempts_is_invisible() {
    let w = World::new(config(Mode::All), Some(DlqMode::Up)).with_standard_image();
    w.ecr.fail("web", 2, retryable("ThrottlingException"));
    w.ec2.fail(
        "DeleteSnapshot",
        "snap-1",
        1,
        retryable("RequestLimitExceeded"),
    );
    let h = w.run(&direct(json!({}))).await;
    assert_eq!(record(&h).status, Status::Deleted);
    assert!(pieces(&h)
        .iter()
        .all(|(_, s)| *s == ResourceStatus::Deleted));
    w.assert_accounted(&[("req-1", IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_a_partial_cleanup_finds_the_rest_and_completes_the_job() {
    // GIVEN snap-2 cannot be deleted on the first delivery (ami-1 already deregistered by then)
    let w = World::new(config(Mode::All), Some(DlqMode::Up)).with_standard_image();
    w.ec2
        .fail("DeleteSnapshot", "snap-2", 3, retryable("InternalError"));
    let first = w.run(&sqs("m-1")).await;
    assert_eq!(record(&first).status, Status::Failed);
    assert_eq!(record(&first).retryable, Some(true));
    assert!(!w.ec2.registered("ami-1") && w.ec2.snapshot_exists("snap-2"));
    assert!(!w.delete_image_called());
    assert_eq!(
        report(&first).batch_item_failures.as_ref().unwrap().len(),
        1
    );
    // WHEN SQS redelivers it
    let second = w.run(&sqs("m-1")).await;
    // THEN GetImage still names ami-1; it is gone, but the snapshot it left is found and deleted
    use ResourceStatus::*;
    assert_eq!(
        pieces(&second),
        [
            ("ami-1".into(), AlreadyDeleted),
            ("snap-2".into(), Deleted),
            ("ami-2".into(), AlreadyDeleted),
            (URI.into(), AlreadyDeleted),
        ]
    );
    assert!(!w.ec2.snapshot_exists("snap-2"));
    assert_eq!(record(&second).status, Status::Deleted);
    assert!(report(&second)
        .batch_item_failures
        .as_ref()
        .unwrap()
        .is_empty());
    w.assert_accounted(&[("m-1", IMAGE)], &second);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_ec2_error_dead_letters_the_arn_and_leaves_its_snapshots_for_later() {
    let w = World::new(config(Mode::Amis), Some(DlqMode::Up)).with_standard_image();
    w.ec2.fail(
        "DeregisterImage",
        "ami-1",
        1,
        CallError::permanent("UnauthorizedOperation", "not allowed"),
    );
    let h = w.run(&direct(json!({}))).await;
    let r = record(&h);
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.retryable, Some(false));
    assert_eq!(r.error_code.as_deref(), Some("UnauthorizedOperation"));
    use ResourceStatus::*;
    assert_eq!(
        pieces(&h)[..3],
        [
            ("ami-1".into(), Failed),
            ("snap-1".into(), NotAttempted),
            ("snap-2".into(), NotAttempted),
        ]
    );
    assert!(!w.delete_image_called());
    assert_eq!(w.dlq.as_ref().unwrap().received().len(), 1);
    w.assert_accounted(&[("req-1", IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn dry_run_previews_exactly_what_would_be_deleted_and_deletes_nothing() {
    let w = World::new(config(Mode::All), Some(DlqMode::Up)).with_standard_image();
    let h = w.run(&direct(json!({"dryRun": true}))).await;
    use ResourceStatus::*;
    assert_eq!(
        pieces(&h),
        [
            ("ami-1".into(), WouldDelete),
            ("snap-1".into(), WouldDelete),
            ("snap-2".into(), WouldDelete),
            ("ami-2".into(), WouldDelete),
            ("snap-3".into(), WouldDelete),
            (URI.into(), WouldDelete),
        ]
    );
    assert_eq!(record(&h).status, Status::WouldDelete);
    // Only reads happened
    for call in w.log() {
        assert!(
            call.starts_with("GetImage") || call.starts_with("DescribeImages"),
            "{call}"
        );
    }
    assert!(w.ec2.registered("ami-1") && w.ecr.exists("web", "1.0.0-1"));
    assert!(!w.images.is_deleted(IMAGE));
}

#[tokio::test(start_paused = true)]
async fn the_protect_tag_on_an_ami_protects_the_whole_image() {
    let mut cfg = config(Mode::All);
    cfg.protect_tag_key = Some("keep".into());
    let w = World::new(cfg, Some(DlqMode::Up)).with_standard_image();
    w.ec2.tag("ami-2", "keep");
    let h = w.run(&direct(json!({}))).await;
    let r = record(&h);
    assert_eq!(r.status, Status::Protected);
    assert!(r.message.as_deref().unwrap().contains("ami-2"));
    for call in w.log() {
        assert!(
            call.starts_with("GetImage") || call.starts_with("DescribeImages"),
            "nothing but reads: {call}"
        );
    }
    assert!(w.ec2.registered("ami-1") && w.ec2.snapshot_exists("snap-1"));
    w.assert_accounted(&[("req-1", IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn the_invocation_can_ask_for_a_cleanup_the_configuration_does_not_do() {
    // GIVEN the default configuration (none) WHEN a direct invocation asks for `amis`
    let w = World::new(config(Mode::None), Some(DlqMode::Up)).with_standard_image();
    let h = w
        .run(&direct(json!({"deleteOutputResources": "amis"})))
        .await;
    // THEN the AMIs go, the container image stays
    assert!(!w.ec2.registered("ami-1"));
    assert!(w.ecr.exists("web", "1.0.0-1"));
    assert_eq!(record(&h).status, Status::Deleted);
    // AND it can also turn the configured cleanup off for one invocation
    let w = World::new(config(Mode::All), Some(DlqMode::Up)).with_standard_image();
    let h = w
        .run(&direct(json!({"deleteOutputResources": "none"})))
        .await;
    assert!(record(&h).output_resources.is_empty());
    assert!(w.ec2.registered("ami-1"));
    assert_eq!(
        w.log(),
        [format!("DeleteImage {IMAGE}")],
        "not even GetImage"
    );
}

#[tokio::test(start_paused = true)]
async fn a_bad_per_invocation_value_fails_the_invocation_naming_the_field() {
    let w = World::new(config(Mode::All), Some(DlqMode::Up)).with_standard_image();
    let h = w
        .run(&direct(json!({"deleteOutputResources": "snapshots"})))
        .await;
    match h.result {
        Err(ReaperError::InvalidEvent(m)) => {
            assert!(
                m.contains("deleteOutputResources") && m.contains("snapshots"),
                "{m}"
            );
            assert!(m.contains("none, amis, containers or all"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(w.log().is_empty(), "nothing was called");
}

#[tokio::test(start_paused = true)]
async fn an_image_already_gone_is_already_deleted_and_nothing_else_is_called() {
    let w = World::new(config(Mode::All), Some(DlqMode::Up)).with_standard_image();
    w.images
        .script_op("GetImage", IMAGE, [fakes::Reply::not_found()]);
    let h = w.run(&direct(json!({}))).await;
    assert_eq!(record(&h).status, Status::AlreadyDeleted);
    assert_eq!(w.log(), [format!("GetImage {IMAGE}")]);
    w.assert_accounted(&[("req-1", IMAGE)], &h);
}

#[tokio::test(start_paused = true)]
async fn the_default_configuration_never_reads_the_image_or_touches_ec2() {
    let w = World::new(config(Mode::None), Some(DlqMode::Up)).with_standard_image();
    let h = w.run(&direct(json!({}))).await;
    assert_eq!(record(&h).status, Status::Deleted);
    assert_eq!(w.log(), [format!("DeleteImage {IMAGE}")]);
    let json = report(&h).to_json(5_000_000);
    assert!(!json.contains("outputResources"), "{json}");
}
