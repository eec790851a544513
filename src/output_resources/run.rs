//! Running a [`Plan`] through the ports: read everything, then delete, then judge.
//!
//! Order per image: (1) DescribeImages for every own AMI (read-only, also in a dry run) — an
//! AMI already gone is searched for the snapshots it left behind; (2) the protect tag on any
//! AMI protects the whole image, before anything is deleted; (3) the in-use guard
//! ([`guard::check`]) over the image's own AMIs keeps an image whose AMI is still used, and
//! keeps it too when it cannot be answered; (4) per AMI: DeregisterImage,
//! then DeleteSnapshot for each of its snapshots (EC2 refuses to delete a snapshot its AMI
//! still uses); per repository: BatchGetImage to learn which digests are the build's own,
//! then BatchDeleteImage of those digests only; (5) [`verdict`] decides whether DeleteImage
//! may run. No AWS SDK types here: the ports classify errors.

use futures::future::join_all;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use crate::output_resources::digest::{self, Fate};
use crate::output_resources::entry::{
    verdict, ResourceEntry, ResourceKind, ResourceStatus, Verdict,
};
use crate::output_resources::guard::{self, Answer, Checked, Clock};
use crate::output_resources::plan::{AmiTask, ContainerGroup, Plan, ECR_BATCH_LIMIT};
use crate::ports::{
    AmiDescription, Amis, CallError, ContainerImages, ErrorClass, ImageReference, ImageUse,
    Removal, UsageFields,
};
use crate::retry::{with_retries, Attempted, RetryPolicy, Window};

/// The two output-resource ports, as the engine holds them.
#[derive(Debug, Clone, Default)]
pub struct Cleaners<A, C> {
    pub amis: A,
    pub containers: C,
}

/// How to run one image's cleanup.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// Read (DescribeImages / DescribeSnapshots) but delete nothing.
    pub dry_run: bool,
    /// `PROTECT_TAG_KEY`: an AMI carrying it protects the whole image.
    pub protect_tag_key: Option<&'a str>,
    /// `REQUIRE_COMPLETE_CLEANUP`: skipped pieces block DeleteImage.
    pub require_complete: bool,
    /// `MAX_ATTEMPTS` and backoff: every cleanup call goes through the engine's one retry
    /// loop, like DeleteImage.
    pub policy: RetryPolicy,
    /// The deadline window of image calls: no call or backoff starts past it.
    pub window: Window,
    /// Throttled calls of this cleanup, for the ARN's `throttled` count.
    pub throttled: &'a AtomicU32,
    /// Now and `IN_USE_GRACE_DAYS`, for the in-use guard.
    pub clock: Clock,
}

/// The cleanup's result for one image build version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleanup {
    /// The report's `outputResources` for this ARN.
    pub entries: Vec<ResourceEntry>,
    pub verdict: Verdict,
}

/// What reading one own-account AMI found.
enum AmiState {
    /// Still registered: deregister it, then delete these snapshots.
    Present(AmiDescription),
    /// DescribeImages says it belongs to another account (shared with us): not touched.
    Foreign(String),
    /// Already deregistered; these snapshots of it are still there.
    Gone { leftover: Vec<String> },
}

/// How one call through the retry loop ended, as far as a piece's status is concerned.
enum Call<T> {
    Ok(T),
    /// `ErrorClass::NotFound`: the piece is already gone.
    Gone,
    Failed(CallError, u32),
    /// The deadline window closed before (another) attempt could start.
    NotStarted,
}

async fn call<T, F, Fut>(s: &Settings<'_>, f: F) -> Call<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CallError>>,
{
    let attempted = with_retries(&s.policy, s.window, f).await;
    s.throttled
        .fetch_add(attempted.throttled(), Ordering::Relaxed);
    match attempted {
        Attempted::Done { value, .. } => Call::Ok(value),
        Attempted::Failed { error, .. } if error.class == ErrorClass::NotFound => Call::Gone,
        Attempted::Failed {
            error, attempts, ..
        } => Call::Failed(error, attempts),
        Attempted::NotStarted { .. } => Call::NotStarted,
    }
}

/// Runs the plan. Every piece ends in exactly one entry; service errors never escape.
pub async fn clean<A: Amis, U: ImageUse, C: ContainerImages>(
    amis: &A,
    usage: &U,
    containers: &C,
    plan: &Plan,
    s: &Settings<'_>,
) -> Cleanup {
    // (1) Read every AMI first: the protect tag must be known before anything is deleted.
    let reads = join_all(plan.amis.iter().map(|t| read_ami(amis, t, s))).await;

    // (2) Protection wins over everything, even over a failed read of another AMI.
    if let Some(protected) = protected_by_tag(plan, &reads, s) {
        return protected;
    }
    let mut entries = if reads.iter().any(|r| !matches!(r, Call::Ok(_))) {
        unread(plan, reads)
    } else {
        let states: Vec<AmiState> = reads
            .into_iter()
            .filter_map(|r| match r {
                Call::Ok(state) => Some(state),
                _ => None,
            })
            .collect();
        // (3) Nothing still in use is deleted, and nothing at all while that is unknown.
        let calls = guard::Calls {
            policy: &s.policy,
            window: s.window,
            throttled: s.throttled,
        };
        match guard::check(usage, &in_scope(plan, &states), calls, s.clock).await {
            Answer::Clear => delete_all(amis, containers, plan, states, s).await,
            Answer::InUse { references, reason } => {
                return Cleanup {
                    entries: Vec::new(),
                    verdict: Verdict::InUse { references, reason },
                }
            }
            Answer::Unanswered {
                region,
                error,
                attempts,
            } => unanswered(plan, &region, &error, attempts),
            Answer::NotStarted => not_started(plan),
        }
    };
    entries.extend(plan.settled.iter().cloned());
    let verdict = verdict(&entries, s.require_complete);
    Cleanup { entries, verdict }
}

/// The image's own AMIs that are still registered: the ones the guard asks about, with what
/// their DescribeImages answer said of their use.
fn in_scope(plan: &Plan, states: &[AmiState]) -> Vec<Checked> {
    plan.amis
        .iter()
        .zip(states)
        .filter_map(|(task, state)| match state {
            AmiState::Present(d) => Some(Checked {
                region: task.region.clone(),
                usage: UsageFields {
                    image_id: task.image_id.clone(),
                    ..d.usage.clone()
                },
            }),
            _ => None,
        })
        .collect()
}

/// The whole image protected, when one of its AMIs carries the protect tag.
fn protected_by_tag(plan: &Plan, reads: &[Call<AmiState>], s: &Settings<'_>) -> Option<Cleanup> {
    let key = s.protect_tag_key?;
    plan.amis.iter().zip(reads).find_map(|(task, read)| {
        let Call::Ok(AmiState::Present(d)) = read else {
            return None;
        };
        let v = d.tags.get(key)?;
        Some(Cleanup {
            entries: Vec::new(),
            verdict: Verdict::Protected {
                message: format!(
                    "skipped: its AMI {} ({}) carries the protect tag {key}={v}; nothing was deleted",
                    task.image_id, task.region
                ),
            },
        })
    })
}

/// Entries when an AMI could not be read: nothing is deleted until every AMI has been read
/// (protect tag, snapshot list).
fn unread(plan: &Plan, reads: Vec<Call<AmiState>>) -> Vec<ResourceEntry> {
    let mut entries = Vec::new();
    for (task, read) in plan.amis.iter().zip(reads) {
        let e = ami_entry(task, ResourceStatus::NotAttempted);
        entries.push(match read {
            Call::Failed(err, attempts) => failed(e, &err, attempts),
            Call::NotStarted => e.not_attempted(DEADLINE),
            _ => e.not_attempted(NOT_ALL_READ),
        });
    }
    entries.extend(containers_not_attempted(plan, NOT_ALL_READ));
    entries
}

/// Entries when the in-use check failed: the AMIs of the failing region are `failed` with its
/// cause, always retryable (the answer may come next time), the rest not attempted.
fn unanswered(plan: &Plan, region: &str, err: &CallError, attempts: u32) -> Vec<ResourceEntry> {
    let mut entries: Vec<ResourceEntry> = plan
        .amis
        .iter()
        .map(|task| {
            let e = ami_entry(task, ResourceStatus::NotAttempted);
            if task.region == region {
                fails_closed(
                    e,
                    err,
                    attempts,
                    "the in-use check could not be answered, so nothing was deleted",
                )
            } else {
                e.not_attempted(NOT_CHECKED)
            }
        })
        .collect();
    entries.extend(containers_not_attempted(plan, NOT_CHECKED));
    entries
}

/// Entries when the deadline stopped the in-use check before it started.
fn not_started(plan: &Plan) -> Vec<ResourceEntry> {
    let mut entries: Vec<ResourceEntry> = plan
        .amis
        .iter()
        .map(|t| ami_entry(t, ResourceStatus::NotAttempted).not_attempted(DEADLINE))
        .collect();
    entries.extend(containers_not_attempted(plan, DEADLINE));
    entries
}

fn containers_not_attempted<'p>(
    plan: &'p Plan,
    why: &'static str,
) -> impl Iterator<Item = ResourceEntry> + 'p {
    plan.containers.iter().flat_map(move |group| {
        group
            .images
            .iter()
            .map(move |image| container_entry(group, &image.uri).not_attempted(why))
    })
}

/// (4) Every AMI with its snapshots, and every repository, once nothing is in use.
async fn delete_all<A: Amis, C: ContainerImages>(
    amis: &A,
    containers: &C,
    plan: &Plan,
    states: Vec<AmiState>,
    s: &Settings<'_>,
) -> Vec<ResourceEntry> {
    let ami_entries = join_all(
        plan.amis
            .iter()
            .zip(states)
            .map(|(task, state)| delete_ami(amis, task, state, s)),
    )
    .await;
    let container_entries = join_all(
        plan.containers
            .iter()
            .map(|g| delete_group(containers, g, s)),
    )
    .await;
    ami_entries
        .into_iter()
        .flatten()
        .chain(container_entries.into_iter().flatten())
        .collect()
}

const NOT_CHECKED: &str =
    "not attempted: the in-use check of this image's AMIs could not be answered, and nothing is deleted before it is";

const NOT_ALL_READ: &str =
    "not attempted: another AMI of this image could not be read, and nothing is deleted before all are";

const DEADLINE: &str =
    "not attempted: less than DEADLINE_MARGIN_MS remained before the Lambda deadline";

/// DescribeImages, and DescribeSnapshots for an AMI that is already gone.
async fn read_ami<A: Amis>(amis: &A, task: &AmiTask, s: &Settings<'_>) -> Call<AmiState> {
    match call(s, || amis.describe_image(&task.region, &task.image_id)).await {
        Call::Ok(Some(d)) => match &d.owner_id {
            Some(owner) if owner != &task.account_id => Call::Ok(AmiState::Foreign(owner.clone())),
            _ => Call::Ok(AmiState::Present(d)),
        },
        Call::Ok(None) | Call::Gone => {
            match call(s, || amis.snapshots_left_by(&task.region, &task.image_id)).await {
                Call::Ok(leftover) => Call::Ok(AmiState::Gone { leftover }),
                // Nothing is found by a search that found nothing.
                Call::Gone => Call::Ok(AmiState::Gone {
                    leftover: Vec::new(),
                }),
                Call::Failed(e, n) => Call::Failed(e, n),
                Call::NotStarted => Call::NotStarted,
            }
        }
        Call::Failed(e, n) => Call::Failed(e, n),
        Call::NotStarted => Call::NotStarted,
    }
}

/// Deregisters one AMI, then deletes its snapshots; entries: the AMI's, then its snapshots'.
async fn delete_ami<A: Amis>(
    amis: &A,
    task: &AmiTask,
    state: AmiState,
    s: &Settings<'_>,
) -> Vec<ResourceEntry> {
    let (ami, snapshots) = match state {
        AmiState::Foreign(owner) => {
            let mut e =
                ami_entry(task, ResourceStatus::SkippedForeignAccount).with_message(format!(
                    "owned by account {owner}, not the image's account {}: not touched",
                    task.account_id
                ));
            e.account_id = Some(owner);
            return vec![e];
        }
        AmiState::Gone { leftover } => (ami_entry(task, ResourceStatus::AlreadyDeleted), leftover),
        AmiState::Present(d) if s.dry_run => {
            (ami_entry(task, ResourceStatus::WouldDelete), d.snapshot_ids)
        }
        AmiState::Present(d) => {
            let e = ami_entry(task, ResourceStatus::Deleted);
            let e = match call(s, || amis.deregister_image(&task.region, &task.image_id)).await {
                Call::Ok(()) => e,
                Call::Gone => e.with_status(ResourceStatus::AlreadyDeleted),
                Call::Failed(err, n) => failed(e, &err, n),
                Call::NotStarted => e.not_attempted(DEADLINE),
            };
            (e, d.snapshot_ids)
        }
    };
    let blocked = matches!(
        ami.status,
        ResourceStatus::Failed | ResourceStatus::NotAttempted
    );
    let mut out = vec![ami];
    for snap in snapshots {
        let e = snapshot_entry(task, &snap);
        out.push(if s.dry_run {
            e.with_status(ResourceStatus::WouldDelete)
        } else if blocked {
            e.not_attempted(
                "not attempted: its AMI is still registered, and EC2 refuses to delete a snapshot its AMI uses",
            )
        } else {
            delete_snapshot(amis, task, &snap, e, s).await
        });
    }
    out
}

/// The code EC2 refuses a snapshot in use with.
const SNAPSHOT_IN_USE: &str = "InvalidSnapshot.InUse";

/// DeleteSnapshot. EC2 is eventually consistent: right after DeregisterImage it may still
/// refuse the snapshot as in use by that very AMI (it names the AMI only in the message).
/// Such a refusal is retried like any retryable error and, if it outlasts the attempts,
/// fails retryably, so a later attempt finishes the job instead of orphaning the snapshot.
/// In use by another AMI: skipped with the reason.
async fn delete_snapshot<A: Amis>(
    amis: &A,
    task: &AmiTask,
    snap: &str,
    e: ResourceEntry,
    s: &Settings<'_>,
) -> ResourceEntry {
    let attempt = || async {
        match amis.delete_snapshot(&task.region, snap).await {
            Ok(Removal::InUse(why)) if why.contains(task.image_id.as_str()) => {
                Err(CallError::retryable(SNAPSHOT_IN_USE, why))
            }
            other => other,
        }
    };
    match call(s, attempt).await {
        Call::Ok(Removal::Removed) => e.with_status(ResourceStatus::Deleted),
        Call::Ok(Removal::InUse(why)) => e
            .with_status(ResourceStatus::SkippedInUse)
            .with_message(why),
        Call::Gone => e.with_status(ResourceStatus::AlreadyDeleted),
        Call::Failed(err, n) => failed(e, &err, n),
        Call::NotStarted => e.not_attempted(DEADLINE),
    }
}

/// One repository: its tags are resolved to digests (in a dry run too: the preview shows
/// which tags stay), then the build's own digests are deleted ([`digest::fates`]).
async fn delete_group<C: ContainerImages>(
    containers: &C,
    group: &ContainerGroup,
    s: &Settings<'_>,
) -> Vec<ResourceEntry> {
    let entries = group
        .images
        .iter()
        .map(|image| container_entry(group, &image.uri));
    let resolved = match resolve(containers, group, s).await {
        Call::Ok(resolved) => resolved,
        // The repository is gone, and every image in it.
        Call::Gone => {
            return entries
                .map(|e| e.with_status(ResourceStatus::AlreadyDeleted))
                .collect()
        }
        Call::Failed(err, n) => {
            let why = "its tags could not be resolved to digests, so nothing in this repository was deleted";
            return entries.map(|e| fails_closed(e, &err, n, why)).collect();
        }
        Call::NotStarted => return entries.map(|e| e.not_attempted(DEADLINE)).collect(),
    };
    let fates = digest::fates(group, &resolved);
    let mut own: Vec<String> = Vec::new();
    for fate in &fates {
        if let Fate::Delete(d) = fate {
            if !own.contains(d) {
                own.push(d.clone());
            }
        }
    }
    let removed = if s.dry_run {
        HashMap::new()
    } else {
        remove_digests(containers, group, &own, s).await
    };
    entries
        .zip(fates)
        .map(|(e, fate)| match fate {
            Fate::Delete(_) if s.dry_run => e.with_status(ResourceStatus::WouldDelete),
            Fate::Delete(d) => match removed.get(&d) {
                Some(r) => r.apply(e),
                None => e.not_attempted(DEADLINE),
            },
            Fate::Gone => e.with_status(ResourceStatus::AlreadyDeleted),
            Fate::Moved(why) => e
                .with_status(ResourceStatus::SkippedMovedTag)
                .with_message(why),
        })
        .collect()
}

/// BatchGetImage of the repository's tags, 100 per call, each through the retry loop.
async fn resolve<C: ContainerImages>(
    containers: &C,
    group: &ContainerGroup,
    s: &Settings<'_>,
) -> Call<HashMap<String, Option<String>>> {
    let tags = digest::tags_to_resolve(group);
    let mut resolved = HashMap::new();
    for chunk in tags.chunks(ECR_BATCH_LIMIT) {
        let answer = call(s, || {
            containers.resolve_tags(&group.region, &group.registry_id, &group.repository, chunk)
        })
        .await;
        match answer {
            Call::Ok(digests) => resolved.extend(chunk.iter().cloned().zip(digests)),
            Call::Gone => return Call::Gone,
            Call::Failed(err, n) => return Call::Failed(err, n),
            Call::NotStarted => return Call::NotStarted,
        }
    }
    Call::Ok(resolved)
}

/// How deleting one digest ended.
#[derive(Debug, Clone)]
enum Removed {
    Done,
    InUse(String),
    Gone,
    Failed(CallError, u32),
    NotStarted,
}

impl Removed {
    /// The entry of a URI naming the removed digest.
    fn apply(&self, e: ResourceEntry) -> ResourceEntry {
        match self {
            Removed::Done => e.with_status(ResourceStatus::Deleted),
            Removed::InUse(why) => e
                .with_status(ResourceStatus::SkippedInUse)
                .with_message(why.clone()),
            Removed::Gone => e.with_status(ResourceStatus::AlreadyDeleted),
            Removed::Failed(err, n) => failed(e, err, *n),
            Removed::NotStarted => e.not_attempted(DEADLINE),
        }
    }
}

/// BatchDeleteImage of digests, 100 per call. The whole call goes through the engine's
/// retry loop; an attempt that leaves some digests failing retryably fails retryably
/// itself, so the next attempt sends only those.
async fn remove_digests<C: ContainerImages>(
    containers: &C,
    group: &ContainerGroup,
    digests: &[String],
    s: &Settings<'_>,
) -> HashMap<String, Removed> {
    let mut out = HashMap::new();
    for chunk in digests.chunks(ECR_BATCH_LIMIT) {
        // Per digest: how it ended, or None while it still needs a (re)try.
        let slots: Mutex<Vec<Option<Removed>>> = Mutex::new(vec![None; chunk.len()]);
        let attempt = |n: u32| {
            let pending: Vec<usize> = lock(&slots)
                .iter()
                .enumerate()
                .filter(|(_, e)| e.is_none())
                .map(|(i, _)| i)
                .collect();
            let refs: Vec<ImageReference> = pending
                .iter()
                .map(|&i| ImageReference::Digest(chunk[i].clone()))
                .collect();
            let slots = &slots;
            async move {
                let results = containers
                    .batch_delete_image(&group.region, &group.registry_id, &group.repository, &refs)
                    .await?;
                let mut retry_error = None;
                let mut slots = lock(slots);
                for (k, &i) in pending.iter().enumerate() {
                    slots[i] = match results.get(k).cloned().unwrap_or_else(|| Err(missing())) {
                        Ok(Removal::Removed) => Some(Removed::Done),
                        Ok(Removal::InUse(why)) => Some(Removed::InUse(why)),
                        Err(err) if err.class == ErrorClass::NotFound => Some(Removed::Gone),
                        Err(err) if err.class.is_retryable() => {
                            retry_error.get_or_insert(err);
                            None
                        }
                        Err(err) => Some(Removed::Failed(err, n)),
                    };
                }
                retry_error.map_or(Ok(()), Err)
            }
        };
        let mut n = 0;
        let result = call(s, || {
            n += 1;
            attempt(n)
        })
        .await;
        let slots = slots.into_inner().unwrap_or_else(|p| p.into_inner());
        for (digest, slot) in chunk.iter().zip(slots) {
            let removed = slot.unwrap_or_else(|| match &result {
                // The repository is gone, and every image in it.
                Call::Gone => Removed::Gone,
                Call::Failed(err, n) => Removed::Failed(err.clone(), *n),
                Call::NotStarted => Removed::NotStarted,
                Call::Ok(()) => Removed::Failed(missing(), 1),
            });
            out.insert(digest.clone(), removed);
        }
    }
    out
}

fn missing() -> CallError {
    CallError::retryable(
        "MissingResult",
        "BatchDeleteImage returned no result for this image",
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The entry of a piece a protective check (the in-use guard, the tag resolution) could not
/// clear: it fails closed, always retryably (the answer may come next time), whatever the
/// cause, saying `why` nothing was deleted.
fn fails_closed(e: ResourceEntry, err: &CallError, attempts: u32, why: &str) -> ResourceEntry {
    let mut e = e.failed(&err.code, format!("{why}: {}", err.message), true);
    e.attempts = (attempts > 1).then_some(attempts);
    e
}

fn failed(e: ResourceEntry, err: &CallError, attempts: u32) -> ResourceEntry {
    let mut e = e.failed(&err.code, err.message.clone(), err.class.is_retryable());
    e.attempts = (attempts > 1).then_some(attempts);
    e
}

fn ami_entry(task: &AmiTask, status: ResourceStatus) -> ResourceEntry {
    ResourceEntry::new(
        ResourceKind::Ami,
        &task.image_id,
        &task.region,
        Some(task.account_id.clone()),
        status,
    )
}

fn snapshot_entry(task: &AmiTask, snapshot_id: &str) -> ResourceEntry {
    let mut e = ResourceEntry::new(
        ResourceKind::Snapshot,
        snapshot_id,
        &task.region,
        Some(task.account_id.clone()),
        ResourceStatus::NotAttempted,
    );
    e.ami_id = Some(task.image_id.clone());
    e
}

fn container_entry(group: &ContainerGroup, uri: &str) -> ResourceEntry {
    ResourceEntry::new(
        ResourceKind::ContainerImage,
        uri,
        &group.region,
        Some(group.registry_id.clone()),
        ResourceStatus::NotAttempted,
    )
}

impl ResourceEntry {
    fn with_status(mut self, status: ResourceStatus) -> Self {
        self.status = status;
        self
    }
}
