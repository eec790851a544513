//! Running a [`Plan`] through the ports: read everything, then delete, then judge.
//!
//! Order per image: (1) DescribeImages for every own AMI (read-only, also in a dry run) — an
//! AMI already gone is searched for the snapshots it left behind; (2) the protect tag on any
//! AMI protects the whole image, before anything is deleted; (3) per AMI: DeregisterImage,
//! then DeleteSnapshot for each of its snapshots (EC2 refuses to delete a snapshot its AMI
//! still uses); per repository: BatchDeleteImage; (4) [`verdict`] decides whether DeleteImage
//! may run. No AWS SDK types here: the ports classify errors.

use std::future::Future;
use std::time::Duration;

use futures::future::join_all;
use tokio::time::Instant;

use super::plan::{AmiTask, ContainerGroup, Plan, ECR_BATCH_LIMIT};
use super::{verdict, ResourceEntry, ResourceKind, ResourceStatus, Verdict};
use crate::ports::{AmiDescription, Amis, CallError, ContainerImages, ErrorClass, Removal};

/// Attempts and full-jitter exponential backoff for each cleanup call (the same policy as
/// DeleteImage's: `MAX_ATTEMPTS`, and the engine's backoff).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    /// Upper bound of the first delay.
    pub base: Duration,
    /// No delay is longer than this.
    pub cap: Duration,
}

impl RetryPolicy {
    /// Full jitter: uniform in `[0, min(cap, base · 2^(attempt-1))]`.
    fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX));
        let max = exp.min(self.cap).as_millis() as u64;
        Duration::from_millis(fastrand::u64(0..=max))
    }
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
    pub retry: RetryPolicy,
    /// No deleting call starts, and no backoff sleeps, past this instant (the Lambda deadline
    /// minus `DEADLINE_MARGIN_MS`).
    pub deadline: Option<Instant>,
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

/// Runs the plan. Never panics on service errors: every piece ends in an entry.
pub async fn clean<A: Amis, C: ContainerImages>(
    amis: &A,
    containers: &C,
    plan: &Plan,
    s: &Settings<'_>,
) -> Cleanup {
    // (1) Read every AMI first: the protect tag must be known before anything is deleted.
    let reads = join_all(plan.amis.iter().map(|t| read_ami(amis, t, s))).await;

    // (2) Protection wins over everything, even over a failed read of another AMI.
    if let Some(key) = s.protect_tag_key {
        for (task, read) in plan.amis.iter().zip(&reads) {
            if let Ok(AmiState::Present(d)) = read {
                if d.tags.contains_key(key) {
                    return Cleanup {
                        entries: Vec::new(),
                        verdict: Verdict::Protected {
                            message: format!(
                                "its AMI {} ({}) carries the protect tag key {key:?}; nothing was deleted",
                                task.image_id, task.region
                            ),
                        },
                    };
                }
            }
        }
    }

    let mut entries = Vec::new();
    if reads.iter().any(Result::is_err) {
        // Nothing is deleted until every AMI has been read (protect tag, snapshot list).
        for (task, read) in plan.amis.iter().zip(reads) {
            let e = ami_entry(task, ResourceStatus::NotAttempted);
            entries.push(match read {
                Err((err, attempts)) => failed(e, &err, attempts),
                Ok(_) => e.not_attempted(NOT_ALL_READ),
            });
        }
        for group in &plan.containers {
            for image in &group.images {
                entries.push(container_entry(group, &image.uri).not_attempted(NOT_ALL_READ));
            }
        }
    } else {
        let states: Vec<AmiState> = reads.into_iter().map(|r| r.ok().expect("checked")).collect();
        let ami_entries = join_all(
            plan.amis
                .iter()
                .zip(states)
                .map(|(task, state)| delete_ami(amis, task, state, s)),
        )
        .await;
        entries.extend(ami_entries.into_iter().flatten());
        let container_entries =
            join_all(plan.containers.iter().map(|g| delete_group(containers, g, s))).await;
        entries.extend(container_entries.into_iter().flatten());
    }
    entries.extend(plan.settled.iter().cloned());
    let verdict = verdict(&entries, s.require_complete);
    Cleanup { entries, verdict }
}

const NOT_ALL_READ: &str =
    "not attempted: another AMI of this image could not be read, and nothing is deleted before all are";

/// DescribeImages, and DescribeSnapshots for an AMI that is already gone.
async fn read_ami<A: Amis>(
    amis: &A,
    task: &AmiTask,
    s: &Settings<'_>,
) -> Result<AmiState, (CallError, u32)> {
    let (described, n) = retry(s, || amis.describe_image(&task.region, &task.image_id)).await;
    match described {
        Ok(Some(d)) => match &d.owner_id {
            Some(owner) if owner != &task.account_id => Ok(AmiState::Foreign(owner.clone())),
            _ => Ok(AmiState::Present(d)),
        },
        Ok(None) => left_behind(amis, task, s).await,
        Err(e) if e.class == ErrorClass::NotFound => left_behind(amis, task, s).await,
        Err(e) => Err((e, n)),
    }
}

async fn left_behind<A: Amis>(
    amis: &A,
    task: &AmiTask,
    s: &Settings<'_>,
) -> Result<AmiState, (CallError, u32)> {
    let (found, n) = retry(s, || amis.snapshots_left_by(&task.region, &task.image_id)).await;
    found
        .map(|leftover| AmiState::Gone { leftover })
        .map_err(|e| (e, n))
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
            let mut e = ami_entry(task, ResourceStatus::SkippedForeignAccount).with_message(format!(
                "owned by account {owner}, not the image's account {}: not touched",
                task.account_id
            ));
            e.account_id = Some(owner);
            return vec![e];
        }
        AmiState::Gone { leftover } => (
            ami_entry(task, ResourceStatus::AlreadyDeleted),
            leftover,
        ),
        AmiState::Present(d) if s.dry_run => (
            ami_entry(task, ResourceStatus::WouldDelete),
            d.snapshot_ids,
        ),
        AmiState::Present(d) => {
            let e = ami_entry(task, ResourceStatus::Deleted);
            let e = if past(s.deadline) {
                e.not_attempted(DEADLINE)
            } else {
                match retry(s, || amis.deregister_image(&task.region, &task.image_id)).await {
                    (Ok(()), _) => e,
                    (Err(err), _) if err.class == ErrorClass::NotFound => {
                        ami_entry(task, ResourceStatus::AlreadyDeleted)
                    }
                    (Err(err), n) => failed(e, &err, n),
                }
            };
            (e, d.snapshot_ids)
        }
    };
    let blocked = matches!(ami.status, ResourceStatus::Failed | ResourceStatus::NotAttempted);
    let mut out = vec![ami];
    for snap in snapshots {
        let e = snapshot_entry(task, &snap, ResourceStatus::Deleted);
        out.push(if s.dry_run {
            snapshot_entry(task, &snap, ResourceStatus::WouldDelete)
        } else if blocked {
            e.not_attempted(
                "not attempted: its AMI is still registered, and EC2 refuses to delete a snapshot its AMI uses",
            )
        } else if past(s.deadline) {
            e.not_attempted(DEADLINE)
        } else {
            match retry(s, || amis.delete_snapshot(&task.region, &snap)).await {
                (Ok(Removal::Removed), _) => e,
                (Ok(Removal::InUse(why)), _) => {
                    snapshot_entry(task, &snap, ResourceStatus::SkippedInUse).with_message(why)
                }
                (Err(err), _) if err.class == ErrorClass::NotFound => {
                    snapshot_entry(task, &snap, ResourceStatus::AlreadyDeleted)
                }
                (Err(err), n) => failed(e, &err, n),
            }
        });
    }
    out
}

/// BatchDeleteImage for one repository, 100 images per call; retryable per-image failures
/// are retried (only those images) like whole-call failures.
async fn delete_group<C: ContainerImages>(
    containers: &C,
    group: &ContainerGroup,
    s: &Settings<'_>,
) -> Vec<ResourceEntry> {
    let mut out: Vec<ResourceEntry> = Vec::with_capacity(group.images.len());
    for chunk in group.images.chunks(ECR_BATCH_LIMIT) {
        let mut slots: Vec<Option<ResourceEntry>> = vec![None; chunk.len()];
        if s.dry_run {
            for (slot, image) in slots.iter_mut().zip(chunk) {
                *slot = Some(container_entry(group, &image.uri).with_status(ResourceStatus::WouldDelete));
            }
        } else {
            let mut pending: Vec<usize> = (0..chunk.len()).collect();
            let mut attempt = 0;
            while !pending.is_empty() {
                if past(s.deadline) {
                    for &i in &pending {
                        slots[i] = Some(container_entry(group, &chunk[i].uri).not_attempted(DEADLINE));
                    }
                    break;
                }
                attempt += 1;
                let refs: Vec<_> = pending.iter().map(|&i| chunk[i].reference.clone()).collect();
                let last = attempt >= s.retry.max_attempts;
                let mut again = Vec::new();
                let mut last_error = None;
                match containers
                    .batch_delete_image(&group.region, &group.registry_id, &group.repository, &refs)
                    .await
                {
                    Ok(results) => {
                        for (k, &i) in pending.iter().enumerate() {
                            let e = container_entry(group, &chunk[i].uri);
                            let result = results.get(k).cloned().unwrap_or_else(|| {
                                Err(CallError::retryable(
                                    "MissingResult",
                                    "BatchDeleteImage returned no result for this image",
                                ))
                            });
                            slots[i] = Some(match result {
                                Ok(Removal::Removed) => e.with_status(ResourceStatus::Deleted),
                                Ok(Removal::InUse(why)) => {
                                    e.with_status(ResourceStatus::SkippedInUse).with_message(why)
                                }
                                Err(err) if err.class == ErrorClass::NotFound => {
                                    e.with_status(ResourceStatus::AlreadyDeleted)
                                }
                                Err(err) if err.class == ErrorClass::Retryable && !last => {
                                    again.push(i);
                                    last_error = Some(err);
                                    continue;
                                }
                                Err(err) => failed(e, &err, attempt),
                            });
                        }
                    }
                    // The repository is gone, and every image with it.
                    Err(err) if err.class == ErrorClass::NotFound => {
                        for &i in &pending {
                            slots[i] = Some(
                                container_entry(group, &chunk[i].uri)
                                    .with_status(ResourceStatus::AlreadyDeleted),
                            );
                        }
                    }
                    Err(err) if err.class == ErrorClass::Retryable && !last => {
                        again = pending.clone();
                        last_error = Some(err);
                    }
                    Err(err) => {
                        for &i in &pending {
                            slots[i] = Some(failed(container_entry(group, &chunk[i].uri), &err, attempt));
                        }
                    }
                }
                pending = again;
                if let Some(err) = last_error.filter(|_| !pending.is_empty()) {
                    let delay = s.retry.delay(attempt);
                    if s.deadline.is_some_and(|d| Instant::now() + delay >= d) {
                        for &i in &pending {
                            slots[i] = Some(failed(container_entry(group, &chunk[i].uri), &err, attempt));
                        }
                        break;
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
        out.extend(slots.into_iter().map(|e| e.expect("every image got an entry")));
    }
    out
}

const DEADLINE: &str = "not attempted: the Lambda deadline (minus DEADLINE_MARGIN_MS) was near";

fn past(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// Calls `call` until it succeeds, fails other than retryably, `max_attempts` is reached, or
/// the next backoff would end past the deadline. Returns the last result and the calls made.
async fn retry<T, F, Fut>(s: &Settings<'_>, mut call: F) -> (Result<T, CallError>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Err(e) if e.class == ErrorClass::Retryable && attempt < s.retry.max_attempts => {
                let delay = s.retry.delay(attempt);
                if s.deadline.is_some_and(|d| Instant::now() + delay >= d) {
                    return (Err(e), attempt);
                }
                tokio::time::sleep(delay).await;
            }
            other => return (other, attempt),
        }
    }
}

fn failed(e: ResourceEntry, err: &CallError, attempts: u32) -> ResourceEntry {
    let mut e = e.failed(&err.code, err.message.clone(), err.class == ErrorClass::Retryable);
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

fn snapshot_entry(task: &AmiTask, snapshot_id: &str, status: ResourceStatus) -> ResourceEntry {
    let mut e = ResourceEntry::new(
        ResourceKind::Snapshot,
        snapshot_id,
        &task.region,
        Some(task.account_id.clone()),
        status,
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
