//! In-memory fakes of every port the engine talks through, and the one-rule check that
//! audits an invocation through them.
//!
//! - [`FakeImages`] (Image Builder): scripted replies per ARN and operation, per-ARN latency
//!   (tokio time, so paused-time tests stay instant), call log and in-flight high-water
//!   mark. A successful DeleteImage removes the image, so deleting it again is
//!   `ResourceNotFoundException`, as in the real service.
//! - [`FakeDlq`] (the SQS dead-letter queue): records every message it accepts and every
//!   one it is offered; can be down, or refuse chosen entries.
//! - [`FakeEc2`] and [`FakeEcr`]: AMIs, snapshots and container images as the real services
//!   keep them.
//!
//! - [`FakeBuildVersions`] (ListImages, ListImageBuildVersions) and [`FakePlanStore`] (the
//!   S3 plan bucket): retention plans.
//!
//! Image Builder, EC2 and ECR write to one ordered [`CallLog`], so tests can check the
//! order of calls across services (DeleteImage last).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imagebuilder_reaper::arn::ImageArn;
use imagebuilder_reaper::ports::{
    AmiDescription, Amis, BuildVersionSummary, BuildVersions, CallError, ContainerImages,
    DeadLetterMessage, DeadLetterSink, Deleted, ErrorClass, ImageInfo, ImageVersionSummary, Images,
    Page, PlanStore, Removal,
};
use imagebuilder_reaper::ports::{
    AmiReference, AmiUsage, ImageReference, ImageUse, OutputResources, UsageFields,
};
use serde_json::Value;

/// One ordered log of the calls made to the fakes, as `"<Operation> <id>"`. Clones share it.
#[derive(Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<String>>>);

impl CallLog {
    fn push(&self, entry: String) {
        self.0.lock().unwrap().push(entry);
    }
    /// Every call so far, in order.
    pub fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// One scripted reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ok,
    Err(ErrorClass, &'static str),
    /// Never answers (the engine must abandon it at the deadline margin).
    Hang,
}

impl Reply {
    pub fn throttled() -> Reply {
        Reply::Err(ErrorClass::Throttled, "CallRateLimitExceededException")
    }
    /// A 5xx: retryable, counted against `MAX_ATTEMPTS`.
    pub fn unavailable() -> Reply {
        Reply::Err(ErrorClass::Retryable, "ServiceUnavailableException")
    }
    pub fn permanent() -> Reply {
        Reply::Err(ErrorClass::Permanent, "ResourceDependencyException")
    }
    pub fn not_found() -> Reply {
        Reply::Err(ErrorClass::NotFound, "ResourceNotFoundException")
    }
}

#[derive(Default)]
struct ImagesInner {
    /// (operation, arn) → replies, consumed in order; the last one repeats.
    scripts: Mutex<HashMap<(&'static str, String), VecDeque<Reply>>>,
    tags: Mutex<HashMap<String, HashMap<String, String>>>,
    /// GetImage `state.status` and `dateCreated` per ARN.
    states: Mutex<HashMap<String, (String, String)>>,
    /// GetImage `outputResources` per ARN.
    outputs: Mutex<HashMap<String, OutputResources>>,
    deleted: Mutex<HashSet<String>>,
    /// ARNs a call answered `ResourceNotFoundException` for (already gone).
    not_found: Mutex<HashSet<String>>,
    log: CallLog,
    latency: Mutex<HashMap<String, Duration>>,
    calls: Mutex<Vec<(&'static str, String)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// Fake EC2 Image Builder. Clones share state.
#[derive(Clone)]
pub struct FakeImages(Arc<ImagesInner>);

impl FakeImages {
    /// Every image exists until deleted; calls are also written to `log`.
    pub fn new(log: CallLog) -> Self {
        FakeImages(Arc::new(ImagesInner {
            log,
            ..ImagesInner::default()
        }))
    }
    /// DeleteImage replies for `arn` (the last repeats forever).
    pub fn script(&self, arn: &str, replies: impl IntoIterator<Item = Reply>) -> &Self {
        self.script_op("DeleteImage", arn, replies)
    }
    pub fn script_op(
        &self,
        op: &'static str,
        arn: &str,
        replies: impl IntoIterator<Item = Reply>,
    ) -> &Self {
        self.0
            .scripts
            .lock()
            .unwrap()
            .insert((op, arn.to_string()), replies.into_iter().collect());
        self
    }
    pub fn tag(&self, arn: &str, key: &str, value: &str) -> &Self {
        self.0
            .tags
            .lock()
            .unwrap()
            .entry(arn.to_string())
            .or_default()
            .insert(key.into(), value.into());
        self
    }
    /// What GetImage reports as `outputResources` for `arn`.
    /// GetImage's `state.status` and `dateCreated` for `arn`.
    pub fn state(&self, arn: &str, status: &str, date_created: &str) -> &Self {
        self.0.states.lock().unwrap().insert(
            arn.to_string(),
            (status.to_string(), date_created.to_string()),
        );
        self
    }
    pub fn output_resources(&self, arn: &str, r: OutputResources) -> &Self {
        self.0.outputs.lock().unwrap().insert(arn.to_string(), r);
        self
    }
    /// Every call for `arn` takes this long.
    pub fn latency(&self, arn: &str, d: Duration) -> &Self {
        self.0.latency.lock().unwrap().insert(arn.to_string(), d);
        self
    }
    pub fn calls(&self) -> Vec<(&'static str, String)> {
        self.0.calls.lock().unwrap().clone()
    }
    pub fn calls_of(&self, op: &str, arn: &str) -> usize {
        self.calls()
            .iter()
            .filter(|(o, a)| *o == op && a == arn)
            .count()
    }
    pub fn delete_calls(&self) -> usize {
        self.calls()
            .iter()
            .filter(|(o, _)| *o == "DeleteImage")
            .count()
    }
    pub fn max_in_flight(&self) -> usize {
        self.0.max_in_flight.load(Ordering::SeqCst)
    }
    /// A DeleteImage call for `arn` succeeded.
    pub fn is_deleted(&self, arn: &str) -> bool {
        self.0.deleted.lock().unwrap().contains(arn)
    }
    /// `arn` is gone: deleted by a call, or a call found it already gone.
    pub fn is_gone(&self, arn: &str) -> bool {
        self.is_deleted(arn) || self.0.not_found.lock().unwrap().contains(arn)
    }

    fn next(&self, op: &'static str, arn: &str) -> Reply {
        let mut scripts = self.0.scripts.lock().unwrap();
        match scripts.get_mut(&(op, arn.to_string())) {
            Some(q) if q.len() > 1 => q.pop_front().unwrap(),
            Some(q) => q.front().cloned().unwrap_or(Reply::Ok),
            None => Reply::Ok,
        }
    }

    async fn call(&self, op: &'static str, arn: &ImageArn) -> Result<(), CallError> {
        let arn = arn.as_str().to_string();
        self.0.calls.lock().unwrap().push((op, arn.clone()));
        self.0.log.push(format!("{op} {arn}"));
        let now = self.0.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let _guard = InFlight(&self.0.in_flight);
        let latency = self.0.latency.lock().unwrap().get(&arn).copied();
        if let Some(d) = latency {
            tokio::time::sleep(d).await;
        }
        let result = match self.next(op, &arn) {
            Reply::Ok if self.is_deleted(&arn) => Err(CallError::not_found(
                "ResourceNotFoundException",
                "the image does not exist",
            )),
            Reply::Ok => Ok(()),
            Reply::Err(class, code) => Err(CallError {
                request_id: Some(format!("req-{op}")),
                ..CallError::new(class, code, format!("scripted {code}"))
            }),
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
                Ok(())
            }
        };
        if matches!(&result, Err(e) if e.class == ErrorClass::NotFound) {
            self.0.not_found.lock().unwrap().insert(arn);
        }
        result
    }
}

struct InFlight<'a>(&'a AtomicUsize);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Images for FakeImages {
    async fn delete_image(&self, arn: &ImageArn) -> Result<Deleted, CallError> {
        self.call("DeleteImage", arn).await?;
        self.0
            .deleted
            .lock()
            .unwrap()
            .insert(arn.as_str().to_string());
        Ok(Deleted {
            request_id: Some(format!("del-{}", arn.build())),
        })
    }

    async fn get_image(&self, arn: &ImageArn) -> Result<ImageInfo, CallError> {
        self.call("GetImage", arn).await?;
        let state = self.0.states.lock().unwrap().get(arn.as_str()).cloned();
        Ok(ImageInfo {
            status: state.as_ref().map(|s| s.0.clone()),
            date_created: state.map(|s| s.1),
            tags: self
                .0
                .tags
                .lock()
                .unwrap()
                .get(arn.as_str())
                .cloned()
                .unwrap_or_default(),
            output_resources: self
                .0
                .outputs
                .lock()
                .unwrap()
                .get(arn.as_str())
                .cloned()
                .unwrap_or_default(),
            request_id: Some("get".into()),
        })
    }
}

/// How the fake DLQ behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlqMode {
    Up,
    /// Every call fails (retryable, like a 5xx or a network error).
    Down,
    /// Entries whose body contains this text are refused (in batches and alone).
    Refuse(String),
    /// In a batch of several entries every entry fails; alone each one succeeds.
    FlakyBatches,
}

/// A message the fake DLQ accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub body: Value,
    pub error_code_attribute: String,
}

struct DlqInner {
    mode: Mutex<DlqMode>,
    latency: Mutex<Duration>,
    received: Mutex<Vec<Received>>,
    offered: Mutex<Vec<Value>>,
    batch_sizes: Mutex<Vec<usize>>,
}

/// Fake SQS dead-letter queue. Clones share state.
#[derive(Clone)]
pub struct FakeDlq(Arc<DlqInner>);

impl FakeDlq {
    pub fn new(mode: DlqMode) -> Self {
        FakeDlq(Arc::new(DlqInner {
            mode: Mutex::new(mode),
            latency: Mutex::new(Duration::ZERO),
            received: Mutex::new(Vec::new()),
            offered: Mutex::new(Vec::new()),
            batch_sizes: Mutex::new(Vec::new()),
        }))
    }
    /// The messages the queue accepted (the dead letters).
    pub fn received(&self) -> Vec<Received> {
        self.0.received.lock().unwrap().clone()
    }
    /// The body of every entry the function tried to send, accepted or not, in order.
    pub fn offered(&self) -> Vec<Value> {
        self.0.offered.lock().unwrap().clone()
    }
    /// Every SendMessageBatch call takes `d` (tokio time) before it answers.
    pub fn latency(&self, d: Duration) -> &Self {
        *self.0.latency.lock().unwrap() = d;
        self
    }
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.0.batch_sizes.lock().unwrap().clone()
    }
}

impl DeadLetterSink for FakeDlq {
    async fn send_batch(
        &self,
        entries: &[DeadLetterMessage],
    ) -> Result<Vec<Result<(), CallError>>, CallError> {
        self.0.batch_sizes.lock().unwrap().push(entries.len());
        let latency = *self.0.latency.lock().unwrap();
        tokio::time::sleep(latency).await;
        assert!(
            entries.len() <= 10,
            "SendMessageBatch takes at most 10 entries"
        );
        let bytes: usize = entries.iter().map(|e| e.payload_bytes()).sum();
        assert!(
            bytes <= 256 * 1024,
            "SendMessageBatch takes at most 256 KiB"
        );
        self.0.offered.lock().unwrap().extend(
            entries
                .iter()
                .map(|e| serde_json::from_str::<Value>(&e.body).expect("body is JSON")),
        );
        let mode = self.0.mode.lock().unwrap().clone();
        if mode == DlqMode::Down {
            return Err(CallError::retryable(
                "ServiceUnavailable",
                "queue unreachable",
            ));
        }
        let mut out = Vec::new();
        for e in entries {
            let refused = match &mode {
                DlqMode::Refuse(text) => e.body.contains(text.as_str()),
                DlqMode::FlakyBatches => entries.len() > 1,
                _ => false,
            };
            if refused {
                out.push(Err(CallError::retryable("InternalError", "entry failed")));
            } else {
                self.0.received.lock().unwrap().push(Received {
                    body: serde_json::from_str(&e.body).expect("body is JSON"),
                    error_code_attribute: e.error_code.clone(),
                });
                out.push(Ok(()));
            }
        }
        Ok(out)
    }
}

#[derive(Clone)]
struct Ami {
    region: String,
    owner: String,
    snapshots: Vec<String>,
    tags: HashMap<String, String>,
    /// (resource type, ARN) of what references it.
    references: Vec<(String, String)>,
    last_launched: Option<String>,
    protected: bool,
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
    /// snapshot id → how many more DeleteSnapshot calls still see its own, already
    /// deregistered AMI using it (EC2's eventual consistency).
    lagging: HashMap<String, usize>,
    /// The AMI ids of every DescribeImageReferences call, in order.
    reference_batches: Vec<Vec<String>>,
    /// DescribeImages carries `lastLaunchedTime` (when launched) and
    /// `deregistrationProtection`; otherwise it leaves both out, as moto does.
    describes_usage: bool,
}

/// EC2 as the real service behaves for these calls: a snapshot of a registered AMI is
/// `InvalidSnapshot.InUse`; a deregistered AMI is gone from DescribeImages but its
/// snapshots are still found by description; wrong-region calls see nothing. Clones share
/// state.
#[derive(Clone)]
pub struct FakeEc2 {
    state: Arc<Mutex<Ec2State>>,
    log: CallLog,
}

impl FakeEc2 {
    /// No AMIs yet; calls are written to `log`.
    pub fn new(log: CallLog) -> Self {
        FakeEc2 {
            state: Arc::default(),
            log,
        }
    }
    /// Registers AMI `id` in `region`, owned by `owner`, with `snapshots`.
    pub fn ami(&self, region: &str, id: &str, owner: &str, snapshots: &[&str]) -> &Self {
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
                references: Vec::new(),
                last_launched: None,
                protected: false,
            },
        );
        self
    }
    /// Tags AMI `id` with `key`.
    pub fn tag(&self, id: &str, key: &str) -> &Self {
        let mut s = self.state.lock().unwrap();
        s.amis
            .get_mut(id)
            .unwrap()
            .tags
            .insert(key.into(), "yes".into());
        self
    }
    /// Records that a resource of `resource_type` with `arn` references AMI `id`.
    pub fn referenced_by(&self, id: &str, resource_type: &str, arn: &str) -> &Self {
        self.with_ami(id, |a| {
            a.references.push((resource_type.into(), arn.into()))
        })
    }
    /// Sets AMI `id`'s last launch time (RFC 3339).
    pub fn launched(&self, id: &str, at: &str) -> &Self {
        self.with_ami(id, |a| a.last_launched = Some(at.into()))
    }
    /// Turns on AMI `id`'s deregistration protection.
    pub fn protect(&self, id: &str) -> &Self {
        self.with_ami(id, |a| a.protected = true)
    }
    /// From now on DescribeImages carries protection (`enabled` / `disabled`) and the last
    /// launch time (when there is one), as EC2 does.
    pub fn describes_usage(&self) -> &Self {
        self.state.lock().unwrap().describes_usage = true;
        self
    }
    /// The AMI ids of every DescribeImageReferences call so far.
    pub fn reference_batches(&self) -> Vec<Vec<String>> {
        self.state.lock().unwrap().reference_batches.clone()
    }
    fn with_ami(&self, id: &str, f: impl FnOnce(&mut Ami)) -> &Self {
        f(self.state.lock().unwrap().amis.get_mut(id).unwrap());
        self
    }
    /// Marks `snap` as used by another AMI as well.
    pub fn shared(&self, snap: &str) -> &Self {
        self.state.lock().unwrap().shared.insert(snap.into());
        self
    }
    /// The next `times` DeleteSnapshot calls for `snap` still find it in use by its own AMI,
    /// even once that AMI is deregistered.
    pub fn lagging(&self, snap: &str, times: usize) -> &Self {
        self.state
            .lock()
            .unwrap()
            .lagging
            .insert(snap.into(), times);
        self
    }
    /// The next `times` calls of `op` for `id` fail with `err` (for DescribeImageReferences
    /// and the usage read, `id` is the region).
    pub fn fail(&self, op: &str, id: &str, times: usize, err: CallError) -> &Self {
        self.state.lock().unwrap().faults.insert(
            (op.into(), id.into()),
            std::iter::repeat_n(err, times).collect(),
        );
        self
    }
    pub fn registered(&self, id: &str) -> bool {
        self.state.lock().unwrap().amis.contains_key(id)
    }
    pub fn snapshot_exists(&self, id: &str) -> bool {
        self.state.lock().unwrap().snapshots.contains_key(id)
    }
    fn enter(&self, op: &str, id: &str) -> Result<std::sync::MutexGuard<'_, Ec2State>, CallError> {
        self.log.push(format!("{op} {id}"));
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
                usage: UsageFields {
                    image_id: id.into(),
                    last_launched: a.last_launched.clone().filter(|_| s.describes_usage),
                    deregistration_protection: s
                        .describes_usage
                        .then(|| if a.protected { "enabled" } else { "disabled" }.to_string()),
                },
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
        if let Some(n) = s.lagging.get_mut(id).filter(|n| **n > 0) {
            *n -= 1;
            return Ok(Removal::InUse(format!(
                "InvalidSnapshot.InUse: The snapshot {id} is currently in use by {ami}"
            )));
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

/// The in-use guard's calls answer per region: `DescribeImageReferences <region>` and
/// `DescribeImageUsage <region>` (the attribute reads of fields DescribeImages left out) in
/// the log, faults keyed by the region.
impl ImageUse for FakeEc2 {
    async fn references(
        &self,
        region: &str,
        ids: &[String],
    ) -> Result<Vec<AmiReference>, CallError> {
        let mut s = self.enter("DescribeImageReferences", region)?;
        s.reference_batches.push(ids.to_vec());
        let mut out = Vec::new();
        for id in ids {
            if let Some(a) = s.amis.get(id).filter(|a| a.region == region) {
                out.extend(a.references.iter().map(|(t, arn)| AmiReference {
                    image_id: id.clone(),
                    resource_type: t.clone(),
                    arn: arn.clone(),
                }));
            }
        }
        Ok(out)
    }
    /// Completes the fields DescribeImages left out from the fake's state.
    async fn usage(&self, region: &str, known: &[UsageFields]) -> Result<Vec<AmiUsage>, CallError> {
        let s = self.enter("DescribeImageUsage", region)?;
        Ok(known
            .iter()
            .filter_map(|k| {
                let a = s.amis.get(&k.image_id).filter(|a| a.region == region)?;
                let protected = if a.protected { "enabled" } else { "disabled" };
                let fields = UsageFields {
                    image_id: k.image_id.clone(),
                    last_launched: k.last_launched.clone().or(a.last_launched.clone()),
                    deregistration_protection: k
                        .deregistration_protection
                        .clone()
                        .or(Some(protected.into())),
                };
                Some(fields.usage())
            })
            .collect())
    }
}

/// One repository's images: digest → the tags naming it.
type Repository = BTreeMap<String, BTreeSet<String>>;

#[derive(Default)]
struct EcrState {
    /// (region, registry, repository) → its images.
    repos: HashMap<(String, String, String), Repository>,
    /// repository → whole-call errors of the next BatchDeleteImage calls.
    delete_faults: HashMap<String, VecDeque<CallError>>,
    /// repository → whole-call errors of the next BatchGetImage calls.
    get_faults: HashMap<String, VecDeque<CallError>>,
}

impl EcrState {
    fn repo_named(&mut self, repo: &str) -> Option<&mut Repository> {
        self.repos
            .iter_mut()
            .find(|((_, _, r), _)| r == repo)
            .map(|(_, images)| images)
    }
}

/// ECR as the cleanup sees it: images by digest with the tags naming them (a tag names one
/// image at a time), BatchGetImage and BatchDeleteImage with ECR's per-image results, and
/// whole-call errors per repository and operation. Clones share state.
#[derive(Clone)]
pub struct FakeEcr {
    state: Arc<Mutex<EcrState>>,
    log: CallLog,
}

/// The digest the fake gives the image first pushed as `repo:tag` (stable, well formed).
pub fn fake_digest(repo: &str, tag: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (repo, tag).hash(&mut h);
    format!("sha256:{:064x}", h.finish())
}

impl FakeEcr {
    /// No repositories yet; calls are written to `log`.
    pub fn new(log: CallLog) -> Self {
        FakeEcr {
            state: Arc::default(),
            log,
        }
    }
    /// Pushes a new image as `repo:tag` into `registry` in `region` (digest
    /// [`fake_digest`]); the tag leaves whatever image it named before.
    pub fn image(&self, region: &str, registry: &str, repo: &str, tag: &str) -> &Self {
        let digest = fake_digest(repo, tag);
        let mut s = self.state.lock().unwrap();
        let images = s
            .repos
            .entry((region.into(), registry.into(), repo.into()))
            .or_default();
        images.values_mut().for_each(|tags| {
            tags.remove(tag);
        });
        images.entry(digest).or_default().insert(tag.into());
        self
    }
    /// Moves `tag` to the image `target` names now (as a newer build's push moves `latest`).
    pub fn retag(&self, repo: &str, tag: &str, target: &str) -> &Self {
        let mut s = self.state.lock().unwrap();
        let images = s.repo_named(repo).expect("a repository of the fake");
        images.values_mut().for_each(|tags| {
            tags.remove(tag);
        });
        let (_, tags) = images
            .iter_mut()
            .find(|(_, tags)| tags.contains(target))
            .expect("an existing target tag");
        tags.insert(tag.into());
        self
    }
    /// The next `times` BatchDeleteImage calls for `repo` fail with `err`.
    pub fn fail(&self, repo: &str, times: usize, err: CallError) -> &Self {
        let mut s = self.state.lock().unwrap();
        s.delete_faults
            .insert(repo.into(), std::iter::repeat_n(err, times).collect());
        drop(s);
        self
    }
    /// The next `times` BatchGetImage calls for `repo` fail with `err`.
    pub fn fail_resolving(&self, repo: &str, times: usize, err: CallError) -> &Self {
        let mut s = self.state.lock().unwrap();
        s.get_faults
            .insert(repo.into(), std::iter::repeat_n(err, times).collect());
        drop(s);
        self
    }
    /// The digest `repo:tag` names now.
    pub fn digest(&self, repo: &str, tag: &str) -> Option<String> {
        let mut s = self.state.lock().unwrap();
        let images = s.repo_named(repo)?;
        images
            .iter()
            .find(|(_, tags)| tags.contains(tag))
            .map(|(d, _)| d.clone())
    }
    pub fn exists(&self, repo: &str, tag: &str) -> bool {
        self.digest(repo, tag).is_some()
    }
    /// Whether the image `digest` is still in `repo` (tagged or not).
    pub fn has_digest(&self, repo: &str, digest: &str) -> bool {
        let mut s = self.state.lock().unwrap();
        s.repo_named(repo).is_some_and(|i| i.contains_key(digest))
    }
    /// BatchDeleteImage calls so far.
    pub fn calls(&self) -> usize {
        self.counted("BatchDeleteImage")
    }
    /// BatchGetImage calls so far.
    pub fn resolves(&self) -> usize {
        self.counted("BatchGetImage")
    }
    /// The image references sent to BatchDeleteImage, in order.
    pub fn deleted_references(&self) -> Vec<String> {
        self.log
            .entries()
            .iter()
            .filter_map(|l| l.strip_prefix("BatchDeleteImage "))
            .flat_map(|l| l.split(' ').skip(1).map(String::from).collect::<Vec<_>>())
            .collect()
    }
    fn counted(&self, operation: &str) -> usize {
        self.log
            .entries()
            .iter()
            .filter(|l| l.split(' ').next() == Some(operation))
            .count()
    }
    fn enter(
        &self,
        faults: impl Fn(&mut EcrState) -> &mut HashMap<String, VecDeque<CallError>>,
        key: (&str, &str, &str),
    ) -> Result<std::sync::MutexGuard<'_, EcrState>, CallError> {
        let mut s = self.state.lock().unwrap();
        if let Some(e) = faults(&mut s).get_mut(key.2).and_then(VecDeque::pop_front) {
            return Err(e);
        }
        if !s
            .repos
            .contains_key(&(key.0.to_string(), key.1.to_string(), key.2.to_string()))
        {
            return Err(CallError::not_found(
                "RepositoryNotFoundException",
                "no repo",
            ));
        }
        Ok(s)
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
        let sent: Vec<String> = images.iter().map(ToString::to_string).collect();
        self.log
            .push(format!("BatchDeleteImage {repo} {}", sent.join(" ")));
        let mut s = self.enter(|s| &mut s.delete_faults, (region, registry, repo))?;
        let key = (region.to_string(), registry.to_string(), repo.to_string());
        let repository = s.repos.get_mut(&key).expect("checked by enter");
        Ok(images
            .iter()
            .map(|r| {
                let removed = match r {
                    ImageReference::Digest(d) => repository.remove(d).is_some(),
                    // Untagging the last tag of an image deletes the image, as in ECR.
                    ImageReference::Tag(t) => {
                        let found = repository
                            .iter_mut()
                            .find(|(_, tags)| tags.contains(t))
                            .map(|(d, tags)| {
                                tags.remove(t);
                                (d.clone(), tags.is_empty())
                            });
                        if let Some((d, true)) = &found {
                            repository.remove(d);
                        }
                        found.is_some()
                    }
                };
                if removed {
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

    async fn resolve_tags(
        &self,
        region: &str,
        registry: &str,
        repo: &str,
        tags: &[String],
    ) -> Result<Vec<Option<String>>, CallError> {
        self.log
            .push(format!("BatchGetImage {repo} {}", tags.join(" ")));
        let s = self.enter(|s| &mut s.get_faults, (region, registry, repo))?;
        let key = (region.to_string(), registry.to_string(), repo.to_string());
        let repository = &s.repos[&key];
        Ok(tags
            .iter()
            .map(|t| {
                repository
                    .iter()
                    .find(|(_, named)| named.contains(t))
                    .map(|(d, _)| d.clone())
            })
            .collect())
    }
}

// ---- Retention plans ------------------------------------------------------------------------

/// One listing call, as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListCall {
    /// ListImages in `region`, with the `name` filter's values (empty: no filter).
    Versions {
        region: String,
        names: Vec<String>,
        token: Option<String>,
    },
    /// ListImageBuildVersions of one image version.
    Builds {
        region: String,
        version_arn: String,
        token: Option<String>,
    },
}

impl ListCall {
    pub fn region(&self) -> &str {
        match self {
            ListCall::Versions { region, .. } | ListCall::Builds { region, .. } => region,
        }
    }
}

/// A stored object's address: (bucket, key).
type ObjectKey = (String, String);
/// An image version: (version ARN, name).
type VersionRow = (String, String);

/// ListImages and ListImageBuildVersions over a fixed set of builds per region, `page_size`
/// per page (tokens are offsets), with a log of every call. An image version exists when it
/// has a build (or was added empty); ListImages lists versions in ARN order. A region or one
/// version can be made to fail.
#[derive(Clone, Default)]
pub struct FakeBuildVersions {
    builds: Arc<Mutex<BTreeMap<String, Vec<BuildVersionSummary>>>>,
    /// Image versions listed by ListImages without any build: region → (version ARN, name).
    empty_versions: Arc<Mutex<BTreeMap<String, Vec<VersionRow>>>>,
    failing: Arc<Mutex<HashSet<String>>>,
    calls: Arc<Mutex<Vec<ListCall>>>,
    page_size: usize,
}

impl FakeBuildVersions {
    pub fn new(page_size: usize) -> Self {
        FakeBuildVersions {
            page_size: page_size.max(1),
            ..Default::default()
        }
    }
    /// Adds a build listed in `region` (its image version is the ARN less its build number).
    pub fn add(&self, region: &str, summary: BuildVersionSummary) -> &Self {
        let mut builds = self.builds.lock().unwrap();
        builds.entry(region.to_string()).or_default().push(summary);
        self
    }
    /// Adds an image version ListImages lists but whose build list is empty.
    pub fn add_empty_version(&self, region: &str, version_arn: &str, name: &str) -> &Self {
        let mut versions = self.empty_versions.lock().unwrap();
        let entry = versions.entry(region.to_string()).or_default();
        entry.push((version_arn.to_string(), name.to_string()));
        self
    }
    /// Every call in `region`, or every listing of the image version `region` names, fails
    /// permanently.
    pub fn fail(&self, region_or_version: &str) -> &Self {
        let mut failing = self.failing.lock().unwrap();
        failing.insert(region_or_version.to_string());
        self
    }
    /// Every call, in order.
    pub fn calls(&self) -> Vec<ListCall> {
        self.calls.lock().unwrap().clone()
    }
    fn version_of(arn: &str) -> &str {
        arn.rsplit_once('/').map_or(arn, |(v, _)| v)
    }
    /// `region`'s image versions in ARN order: (version ARN, name).
    fn versions(&self, region: &str) -> Vec<VersionRow> {
        let mut versions: BTreeMap<String, String> = BTreeMap::new();
        for b in self
            .builds
            .lock()
            .unwrap()
            .get(region)
            .into_iter()
            .flatten()
        {
            let version = Self::version_of(&b.arn).to_string();
            versions.entry(version).or_insert_with(|| b.name.clone());
        }
        let empty = self.empty_versions.lock().unwrap();
        versions.extend(empty.get(region).into_iter().flatten().cloned());
        versions.into_iter().collect()
    }
    fn page<T: Clone>(&self, all: &[T], token: Option<String>) -> Page<T> {
        let start: usize = token.map_or(0, |t| t.parse().unwrap_or(0));
        let end = (start + self.page_size).min(all.len());
        Page {
            items: all.get(start..end).unwrap_or_default().to_vec(),
            next_token: (end < all.len()).then(|| end.to_string()),
        }
    }
    fn check(&self, keys: &[&str]) -> Result<(), CallError> {
        let failing = self.failing.lock().unwrap();
        if keys.iter().any(|k| failing.contains(*k)) {
            return Err(CallError::permanent("AccessDeniedException", "denied"));
        }
        Ok(())
    }
}

impl BuildVersions for FakeBuildVersions {
    async fn list_image_versions(
        &self,
        region: &str,
        names: &[String],
        next_token: Option<String>,
    ) -> Result<Page<ImageVersionSummary>, CallError> {
        self.calls.lock().unwrap().push(ListCall::Versions {
            region: region.to_string(),
            names: names.to_vec(),
            token: next_token.clone(),
        });
        self.check(&[region])?;
        let versions: Vec<ImageVersionSummary> = self
            .versions(region)
            .into_iter()
            .filter(|(_, name)| names.is_empty() || names.contains(name))
            .map(|(arn, name)| ImageVersionSummary { arn, name })
            .collect();
        Ok(self.page(&versions, next_token))
    }

    async fn list_build_versions(
        &self,
        region: &str,
        version_arn: &str,
        next_token: Option<String>,
    ) -> Result<Page<BuildVersionSummary>, CallError> {
        self.calls.lock().unwrap().push(ListCall::Builds {
            region: region.to_string(),
            version_arn: version_arn.to_string(),
            token: next_token.clone(),
        });
        self.check(&[region, version_arn])?;
        let builds: Vec<BuildVersionSummary> = self
            .builds
            .lock()
            .unwrap()
            .get(region)
            .into_iter()
            .flatten()
            .filter(|b| Self::version_of(&b.arn) == version_arn)
            .cloned()
            .collect();
        Ok(self.page(&builds, next_token))
    }
}

/// The plan bucket in memory: objects by (bucket, key), and a log of every call.
#[derive(Clone, Default)]
pub struct FakePlanStore {
    objects: Arc<Mutex<BTreeMap<ObjectKey, Vec<u8>>>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl FakePlanStore {
    /// The object at `bucket`/`key`, as JSON.
    pub fn json(&self, bucket: &str, key: &str) -> Option<Value> {
        let objects = self.objects.lock().unwrap();
        let bytes = objects.get(&(bucket.to_string(), key.to_string()))?;
        serde_json::from_slice(bytes).ok()
    }
    /// Writes an object as a test fixture (not logged).
    pub fn insert(&self, bucket: &str, key: &str, body: &Value) {
        let mut objects = self.objects.lock().unwrap();
        objects.insert(
            (bucket.to_string(), key.to_string()),
            body.to_string().into_bytes(),
        );
    }
    /// Every call, as `"<Operation> <bucket>/<key>"`, in order.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl PlanStore for FakePlanStore {
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), CallError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("PutObject {bucket}/{key}"));
        let mut objects = self.objects.lock().unwrap();
        objects.insert((bucket.to_string(), key.to_string()), body);
        Ok(())
    }
    async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, CallError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("GetObject {bucket}/{key}"));
        let objects = self.objects.lock().unwrap();
        objects
            .get(&(bucket.to_string(), key.to_string()))
            .cloned()
            .ok_or_else(|| CallError::not_found("NoSuchKey", "The specified key does not exist."))
    }
}
