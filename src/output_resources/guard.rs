//! The in-use guard: before any AMI of an image is deregistered (and in a dry run, for the
//! preview), EC2 is asked what references the image's own AMIs and how they are used. One
//! check per region: DescribeImageReferences for at most 10 AMIs per call; protection and
//! last launch come from the cleanup's own DescribeImages answer, and only a field that
//! answer left out is asked for (DescribeImageAttribute), alongside. So an image costs one
//! extra round trip per region, not per AMI, and no second DescribeImages.
//!
//! An AMI that is referenced, protected from deregistration, or launched within the grace
//! period keeps the whole image ([`Answer::InUse`]). A check that cannot be answered keeps it
//! too ([`Answer::Unanswered`]): the guard fails closed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::future::join_all;

use crate::output_resources::entry::InUseReference;
use crate::ports::{AmiReference, AmiUsage, CallError, ImageUse, UsageFields};
use crate::retention::rfc3339;
use crate::retry::{with_retries, Attempted, RetryPolicy, Window};

/// DescribeImageReferences takes at most 10 AMI ids per call.
pub const REFERENCE_BATCH_LIMIT: usize = 10;

/// One AMI to check: its region, its id and what DescribeImages said of its use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub region: String,
    pub usage: UsageFields,
}

/// When the check runs and how long a launch keeps an AMI in use.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Now, in milliseconds since the Unix epoch.
    pub now_ms: i64,
    /// `IN_USE_GRACE_DAYS`, in milliseconds.
    pub grace_ms: i64,
}

/// How the check went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Nothing uses the AMIs: the cleanup may go on.
    Clear,
    /// Something does: the image is kept.
    InUse {
        references: Vec<InUseReference>,
        reason: String,
    },
    /// A call failed after its retries: nothing may be deleted.
    Unanswered {
        region: String,
        error: CallError,
        attempts: u32,
    },
    /// The deadline window closed before a call could start.
    NotStarted,
}

/// How one region's calls ended.
enum Region {
    Answered(Vec<AmiReference>, Vec<AmiUsage>),
    Failed(CallError, u32),
    NotStarted,
}

/// How the guard's calls run: the engine's retry loop and deadline window, and where their
/// throttled attempts are counted (the ARN's `throttled`).
#[derive(Debug, Clone, Copy)]
pub struct Calls<'a> {
    pub policy: &'a RetryPolicy,
    pub window: Window,
    pub throttled: &'a AtomicU32,
}

/// Checks `amis` (grouped by region, every region at once) and judges the answers.
pub async fn check<U: ImageUse>(
    usage: &U,
    amis: &[Checked],
    calls: Calls<'_>,
    clock: Clock,
) -> Answer {
    let mut by_region: BTreeMap<&str, Vec<UsageFields>> = BTreeMap::new();
    for a in amis {
        let known = by_region.entry(a.region.as_str()).or_default();
        if !known.iter().any(|k| k.image_id == a.usage.image_id) {
            known.push(a.usage.clone());
        }
    }
    let answers = join_all(
        by_region
            .iter()
            .map(|(region, known)| check_region(usage, region, known, calls)),
    )
    .await;
    let mut references = Vec::new();
    let mut usages = Vec::new();
    let mut not_started = false;
    for ((region, _), answer) in by_region.iter().zip(answers) {
        match answer {
            Region::Answered(r, u) => {
                references.extend(r.into_iter().map(|r| (region.to_string(), r)));
                usages.extend(u.into_iter().map(|u| (region.to_string(), u)));
            }
            Region::Failed(error, attempts) => {
                return Answer::Unanswered {
                    region: region.to_string(),
                    error,
                    attempts,
                }
            }
            Region::NotStarted => not_started = true,
        }
    }
    if not_started {
        return Answer::NotStarted;
    }
    judge(&references, &usages, clock)
}

/// One region: the references of its AMIs (10 per call) and, concurrently, the usage fields
/// DescribeImages left out (no call when it gave them all).
async fn check_region<U: ImageUse>(
    usage: &U,
    region: &str,
    known: &[UsageFields],
    calls: Calls<'_>,
) -> Region {
    let (policy, window) = (calls.policy, calls.window);
    let ids: Vec<String> = known.iter().map(|k| k.image_id.clone()).collect();
    let reference_calls = join_all(
        ids.chunks(REFERENCE_BATCH_LIMIT)
            .map(|chunk| with_retries(policy, window, move || usage.references(region, chunk))),
    );
    let (complete, missing): (Vec<&UsageFields>, Vec<&UsageFields>) =
        known.iter().partition(|k| k.complete());
    let missing: Vec<UsageFields> = missing.into_iter().cloned().collect();
    let usage_call = async {
        if missing.is_empty() {
            return None;
        }
        Some(with_retries(policy, window, || usage.usage(region, &missing)).await)
    };
    let (reference_answers, usage_answer) = futures::join!(reference_calls, usage_call);
    let throttled: u32 = reference_answers
        .iter()
        .map(Attempted::throttled)
        .sum::<u32>()
        + usage_answer.as_ref().map_or(0, Attempted::throttled);
    calls.throttled.fetch_add(throttled, Ordering::Relaxed);
    let mut references = Vec::new();
    for answer in reference_answers {
        match answer {
            Attempted::Done { value, .. } => references.extend(value),
            Attempted::Failed {
                error, attempts, ..
            } => return Region::Failed(error, attempts),
            Attempted::NotStarted { .. } => return Region::NotStarted,
        }
    }
    let mut usages: Vec<AmiUsage> = complete.into_iter().map(UsageFields::usage).collect();
    match usage_answer {
        None => {}
        Some(Attempted::Done { value, .. }) => usages.extend(value),
        Some(Attempted::Failed {
            error, attempts, ..
        }) => return Region::Failed(error, attempts),
        Some(Attempted::NotStarted { .. }) => return Region::NotStarted,
    }
    Region::Answered(references, usages)
}

/// The rules, on the answers alone (pure): any reference, any protection, or any launch
/// within the grace period (or a launch time that cannot be read — a misread date must not
/// let an AMI in use go) keeps the image. The reason names every AMI and why.
pub fn judge(
    references: &[(String, AmiReference)],
    usages: &[(String, AmiUsage)],
    clock: Clock,
) -> Answer {
    let mut reasons = Vec::new();
    let mut listed: Vec<InUseReference> = Vec::new();
    for (region, r) in references {
        reasons.push(format!(
            "AMI {} ({region}) is referenced by {} {}",
            r.image_id, r.resource_type, r.arn
        ));
        let entry = InUseReference {
            resource_type: r.resource_type.clone(),
            arn: r.arn.clone(),
        };
        if !listed.contains(&entry) {
            listed.push(entry);
        }
    }
    for (region, u) in usages {
        if u.protected {
            reasons.push(format!(
                "AMI {} ({region}) is protected from deregistration",
                u.image_id
            ));
        }
        if let Some(at) = &u.last_launched {
            match rfc3339::parse_ms(at) {
                Some(ms) if clock.now_ms.saturating_sub(ms) >= clock.grace_ms => {}
                Some(_) => reasons.push(format!(
                    "AMI {} ({region}) was last launched at {at}, within IN_USE_GRACE_DAYS ({} days)",
                    u.image_id,
                    clock.grace_ms / rfc3339::DAY_MS
                )),
                None => reasons.push(format!(
                    "AMI {} ({region}) has a last launch time that cannot be read ({at:?})",
                    u.image_id
                )),
            }
        }
    }
    if reasons.is_empty() {
        return Answer::Clear;
    }
    Answer::InUse {
        references: listed,
        reason: format!(
            "kept: {}; nothing was deleted and DeleteImage was not called",
            reasons.join("; ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = rfc3339::DAY_MS;
    // 2026-01-10T00:00:00Z
    const NOW: i64 = 1_768_003_200_000;
    const CLOCK: Clock = Clock {
        now_ms: NOW,
        grace_ms: 7 * DAY,
    };

    fn used(id: &str, launched: Option<&str>, protected: bool) -> (String, AmiUsage) {
        (
            "us-east-1".into(),
            AmiUsage {
                image_id: id.into(),
                last_launched: launched.map(str::to_string),
                protected,
            },
        )
    }

    #[test]
    fn an_unused_ami_is_clear() {
        // GIVEN no reference, no protection, a launch long ago
        let usages = [used("ami-1", Some("2025-01-01T00:00:00.000Z"), false)];
        // WHEN judged THEN the cleanup may go on
        assert_eq!(judge(&[], &usages, CLOCK), Answer::Clear);
        assert_eq!(
            judge(&[], &[used("ami-1", None, false)], CLOCK),
            Answer::Clear
        );
    }

    #[test]
    fn a_reference_keeps_the_image_and_is_listed_once() {
        let r = AmiReference {
            image_id: "ami-1".into(),
            resource_type: "ec2:Instance".into(),
            arn: "arn:aws:ec2:us-east-1:123456789012:instance/i-1".into(),
        };
        let refs = [
            ("us-east-1".to_string(), r.clone()),
            ("us-east-1".into(), r),
        ];
        match judge(&refs, &[], CLOCK) {
            Answer::InUse { references, reason } => {
                assert_eq!(references.len(), 1);
                assert_eq!(references[0].resource_type, "ec2:Instance");
                assert!(reason.contains("ami-1") && reason.contains("instance/i-1"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn protection_and_a_recent_or_unreadable_launch_keep_the_image() {
        for (usage, why) in [
            (used("ami-1", None, true), "protected"),
            (
                used("ami-1", Some("2026-01-05T00:00:00Z"), false),
                "within IN_USE_GRACE_DAYS (7 days)",
            ),
            (used("ami-1", Some("yesterday"), false), "cannot be read"),
        ] {
            match judge(&[], &[usage], CLOCK) {
                Answer::InUse { references, reason } => {
                    assert!(references.is_empty());
                    assert!(reason.contains(why), "{reason}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn the_grace_period_ends_exactly_after_its_days_and_zero_days_ignore_launches() {
        let at = |ms: i64| used("ami-1", Some(&rfc3339::format_ms(ms)), false);
        assert!(matches!(
            judge(&[], &[at(NOW - 7 * DAY)], CLOCK),
            Answer::Clear
        ));
        assert!(matches!(
            judge(&[], &[at(NOW - 7 * DAY + 1)], CLOCK),
            Answer::InUse { .. }
        ));
        let zero = Clock {
            now_ms: NOW,
            grace_ms: 0,
        };
        assert!(matches!(judge(&[], &[at(NOW)], zero), Answer::Clear));
    }
}
