//! Retention plans over the ports: making a plan (list every selected region, apply the
//! selection rules, store it) and turning an execution — a whole plan, a stored plan's
//! location, or Distributed Map items — into decoded units whose tasks carry their drift
//! check. Above the pure core ([`crate::retention`]), below the handler.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;

use futures::stream::{self, Stream, StreamExt, TryStreamExt};
use serde_json::{json, Value};

use crate::arn;
use crate::event::{self, Decoded, Item, ItemOptions, PlanCheck};
use crate::ports::{
    BuildVersionSummary, BuildVersions, CallError, ErrorClass, ImageVersionSummary, Page,
    PlanStore, MAX_NAME_FILTER_VALUES,
};
use crate::retention::{
    self, glob, is_plan_id, items, items_key, plan_key, BuildVersion, Expect, MapItem, Plan,
    PlanLocation, Selection,
};
use crate::retry::{with_retries, Attempted, RetryPolicy, Window};

/// The largest plan returned inline: the Step Functions payload limit.
pub const INLINE_PLAN_BYTES: usize = 256 * 1024;

/// What making or reading a plan needs besides the ports.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// The function's region: the default of a plan's `regions`.
    pub own_region: &'a str,
    /// `PROTECT_TAG_KEY`.
    pub protect_tag_key: Option<&'a str>,
    /// `PLAN_BUCKET`.
    pub bucket: Option<&'a str>,
    /// `MAX_CONCURRENCY`: listing calls (and ListImages listings) in flight at once.
    pub max_concurrency: usize,
    /// The largest response without a bucket (the report budget).
    pub response_budget: usize,
    pub policy: RetryPolicy,
    pub window: Window,
}

/// Why a plan could not be made or read. The handler reports each as its error type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// The request, the plan or a Map item is refused (`InvalidEvent`); nothing was deleted.
    Invalid(String),
    /// A listing failed after retries (`ListingFailed`).
    Listing(String),
    /// The plan bucket failed after retries (`PlanStoreUnavailable`).
    Store(String),
}

/// Makes the plan of a `{"plan": {…}}` request at `now_ms`; `unique` (random bits) makes
/// its id. Returns the response: the plan, or only its summary and location when it is too
/// large to return inline.
pub async fn make<L: BuildVersions, S: PlanStore>(
    listing: &L,
    store: Option<&S>,
    request: &Value,
    settings: &Settings<'_>,
    now_ms: i64,
    unique: u32,
) -> Result<Value, RunError> {
    let selection = retention::parse_plan_request(request, settings.own_region)
        .map_err(|e| RunError::Invalid(e.to_string()))?;
    let builds = list_all(listing, &selection, settings).await?;
    let decided = retention::select(&builds, &selection, settings.protect_tag_key, now_ms);
    let id = retention::plan_id(now_ms, unique);
    let mut plan = Plan::new(id, now_ms, selection, &decided);
    if let (Some(store), Some(bucket)) = (store, settings.bucket) {
        write(store, bucket, &mut plan, settings).await?;
    }
    response(&plan, settings.response_budget)
}

/// Writes the Map items, then the plan (which then names its own location): a stored plan
/// always has its items.
async fn write<S: PlanStore>(
    store: &S,
    bucket: &str,
    plan: &mut Plan,
    settings: &Settings<'_>,
) -> Result<(), RunError> {
    plan.plan_location = Some(PlanLocation {
        bucket: bucket.to_owned(),
        key: plan_key(&plan.plan_id),
    });
    let items = to_json(&items(plan))?;
    put(store, bucket, &items_key(&plan.plan_id), items, settings).await?;
    put(
        store,
        bucket,
        &plan_key(&plan.plan_id),
        to_json(plan)?,
        settings,
    )
    .await
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, RunError> {
    serde_json::to_vec(value).map_err(|e| RunError::Invalid(format!("plan not serialisable: {e}")))
}

async fn put<S: PlanStore>(
    store: &S,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    settings: &Settings<'_>,
) -> Result<(), RunError> {
    let attempted = with_retries(&settings.policy, settings.window, || {
        store.put(bucket, key, body.clone())
    })
    .await;
    settle(attempted, || format!("PutObject s3://{bucket}/{key}")).map_err(RunError::Store)
}

/// The plan inline when it fits the Step Functions payload limit (or, without a bucket, the
/// response budget); else its summary and location.
fn response(plan: &Plan, budget: usize) -> Result<Value, RunError> {
    let full = serde_json::to_value(plan)
        .map_err(|e| RunError::Invalid(format!("plan not serialisable: {e}")))?;
    let size = full.to_string().len();
    match &plan.plan_location {
        _ if size <= INLINE_PLAN_BYTES => Ok(full),
        Some(location) => Ok(json!({
            "planId": plan.plan_id,
            "createdAt": plan.created_at,
            "expiresAt": plan.expires_at,
            "selection": plan.selection,
            "summary": plan.summary,
            "planLocation": location,
        })),
        None if size <= budget => Ok(full),
        None => Err(RunError::Invalid(format!(
            "the plan covers {} builds and its JSON ({size} bytes) does not fit a response; narrow names or regions, or set PLAN_BUCKET so the plan is stored and returned by location",
            plan.summary.scanned
        ))),
    }
}

/// Every build version of the selection: per region, the image versions ListImages lists
/// (page after page; with the `name` filter when every name is exact), then the builds of
/// each version whose name is selected (ListImageBuildVersions of that version, every page).
/// The ListImages listings run ahead on slots of their own ([`slots`]), so the next page is
/// already coming while the versions of the last one are listed. The first listing that
/// fails after retries fails the whole listing: a plan is made from all of it or not at
/// all. A version or an ARN listed twice (pages shifting under a concurrent build) is kept
/// once.
async fn list_all<L: BuildVersions>(
    listing: &L,
    selection: &Selection,
    settings: &Settings<'_>,
) -> Result<Vec<BuildVersion>, RunError> {
    let names = name_chains(&selection.names);
    let listings = selection.regions.len() * names.len();
    let (chain_slots, version_slots) = slots(settings.max_concurrency, listings);
    let chains = selection
        .regions
        .iter()
        .flat_map(|region| names.iter().map(move |names| (region.as_str(), names)));
    let (found, queue) = tokio::sync::mpsc::unbounded_channel();
    let produce = async move {
        let mut versions = stream::iter(chains)
            .map(|(region, names)| Box::pin(image_versions(listing, region, names, settings)))
            .flatten_unordered(chain_slots);
        let mut seen = HashSet::new();
        while let Some((region, version)) = versions.try_next().await? {
            let wanted = is_selected(selection, &version) && seen.insert(version.arn.clone());
            // The queue is gone only when a version listing failed, and that error wins.
            if wanted && found.send((region, version)).is_err() {
                break;
            }
        }
        Ok(())
    };
    let consume = stream::unfold(queue, |mut queue| async move {
        queue.recv().await.map(|v| (v, queue))
    })
    .map(|(region, version)| version_builds(listing, region, version.arn, settings))
    .buffer_unordered(version_slots)
    .try_collect::<Vec<Vec<BuildVersion>>>();
    let ((), lists) = futures::try_join!(produce, consume)?;
    let mut seen = HashSet::new();
    let mut builds: Vec<BuildVersion> = lists
        .into_iter()
        .flatten()
        .filter(|b| seen.insert(b.arn.clone()))
        .collect();
    // Versions finish in any order; the plan must not depend on it.
    builds.sort_by(|a, b| a.arn.cmp(&b.arn));
    Ok(builds)
}

/// How `MAX_CONCURRENCY` is shared between `listings` ListImages listings and the version
/// listings: (ListImages listings, version listings) at once. Up to one ListImages listing
/// per 8 slots (at least one) keeps the versions coming; the rest list versions, so at most
/// `MAX_CONCURRENCY` calls are in flight (two when it is 1).
fn slots(max_concurrency: usize, listings: usize) -> (usize, usize) {
    let chains = (max_concurrency / 8).clamp(1, listings.max(1));
    (chains, max_concurrency.saturating_sub(chains).max(1))
}

/// The `name` filters of ListImages: none (one listing of every name) when any name is a
/// glob, since the service matches exact values only; else the exact names, at most
/// [`MAX_NAME_FILTER_VALUES`] per listing.
fn name_chains(names: &[String]) -> Vec<Vec<String>> {
    if names.iter().any(|n| n.contains(['*', '?'])) {
        return vec![Vec::new()];
    }
    names
        .chunks(MAX_NAME_FILTER_VALUES)
        .map(<[String]>::to_vec)
        .collect()
}

/// Whether the builds of a listed image version can be in the plan: its name matches a
/// glob of `names` (a version listed without a name is listed, not guessed about).
fn is_selected(selection: &Selection, version: &ImageVersionSummary) -> bool {
    version.name.is_empty()
        || selection
            .names
            .iter()
            .any(|g| glob::matches(g, &version.name))
}

/// The image versions of one ListImages listing (`region`; only `names` when not empty),
/// each with its region, page after page. A call that fails after retries ends the stream
/// with its error.
fn image_versions<'a, L: BuildVersions>(
    listing: &'a L,
    region: &'a str,
    names: &'a [String],
    settings: &'a Settings<'a>,
) -> impl Stream<Item = Result<(&'a str, ImageVersionSummary), RunError>> + Send + 'a {
    let what = format!("ListImages in {region}");
    stream::try_unfold(Cursor::default(), move |mut cursor| {
        let what = what.clone();
        async move {
            if cursor.done {
                return Ok(None);
            }
            let token = cursor.token.clone();
            let page = fetch(&what, settings, || {
                listing.list_image_versions(region, names, token.clone())
            })
            .await?;
            cursor.advance(page.next_token, &what)?;
            Ok(Some((page.items, cursor)))
        }
    })
    .map_ok(move |items| stream::iter(items.into_iter().map(move |v| Ok((region, v)))))
    .try_flatten()
}

/// Every build of the image version `version_arn` (in `region`), page after page.
async fn version_builds<L: BuildVersions>(
    listing: &L,
    region: &str,
    version_arn: String,
    settings: &Settings<'_>,
) -> Result<Vec<BuildVersion>, RunError> {
    let what = format!("ListImageBuildVersions of {version_arn}");
    let mut cursor = Cursor::default();
    let mut builds = Vec::new();
    while !cursor.done {
        let token = cursor.token.clone();
        let page = fetch(&what, settings, || {
            listing.list_build_versions(region, &version_arn, token.clone())
        })
        .await?;
        builds.extend(page.items.into_iter().map(build_version));
        cursor.advance(page.next_token, &what)?;
    }
    Ok(builds)
}

/// Where a paginated listing is: the token of the next page (`None` for the first), every
/// token served so far, and whether the last page has been read.
#[derive(Debug, Default)]
struct Cursor {
    token: Option<String>,
    seen: HashSet<String>,
    done: bool,
}

impl Cursor {
    /// Moves past a page whose `nextToken` was `next`. A token served twice would list
    /// forever, so it fails the listing.
    fn advance(&mut self, next: Option<String>, what: &str) -> Result<(), RunError> {
        match next {
            None => self.done = true,
            Some(t) if !self.seen.insert(t.clone()) => {
                return Err(RunError::Listing(format!(
                    "{what} returned the same nextToken twice"
                )))
            }
            Some(t) => self.token = Some(t),
        }
        Ok(())
    }
}

/// One page of a listing, with retries; `what` names the call in the error.
async fn fetch<T, F, Fut>(what: &str, settings: &Settings<'_>, call: F) -> Result<Page<T>, RunError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Page<T>, CallError>>,
{
    let attempted = with_retries(&settings.policy, settings.window, call).await;
    settle(attempted, || what.to_owned()).map_err(RunError::Listing)
}

/// The value of a finished call, or why it failed, naming `what`.
fn settle<T>(attempted: Attempted<T>, what: impl Fn() -> String) -> Result<T, String> {
    match attempted {
        Attempted::Done { value, .. } => Ok(value),
        Attempted::Failed {
            error, attempts, ..
        } => Err(format!(
            "{} failed after {attempts} attempt(s): {error}",
            what()
        )),
        Attempted::NotStarted { .. } => Err(format!(
            "{} not attempted: the Lambda deadline (less DEADLINE_MARGIN_MS) was reached",
            what()
        )),
    }
}

/// A listed summary as the selection rules read it. Name, version and build come from the
/// ARN (what gets deleted); a summary whose ARN does not parse keeps what it listed, and the
/// rules keep such a build (`invalidArn`).
fn build_version(s: BuildVersionSummary) -> BuildVersion {
    let parsed = arn::parse(&s.arn).ok();
    let (name, version, build) = match &parsed {
        Some(a) => (
            a.name().to_owned(),
            a.version().to_owned(),
            a.build().parse().unwrap_or(0),
        ),
        None => {
            let version = s.version.split('/').next().unwrap_or_default().to_owned();
            (s.name.clone(), version, 0)
        }
    };
    BuildVersion {
        arn: s.arn,
        name,
        version,
        build,
        status: s.status,
        date_created: s.date_created,
        tags: s.tags,
    }
}

/// The decoded invocation of `{"executePlan": <plan> | {"planLocation": …}}` at `now_ms`:
/// every `delete` entry of the plan, each with its drift check. An expired plan is refused
/// before anything is called.
pub async fn execution<S: PlanStore>(
    store: Option<&S>,
    event: &Value,
    settings: &Settings<'_>,
    now_ms: i64,
) -> Result<Decoded, RunError> {
    let (value, level) = event::plan_execution(event).map_err(|e| RunError::Invalid(e.0))?;
    let plan = match location_only(value) {
        Some(location) => read_location(store, location, settings).await?,
        None => Plan::parse(value.clone()).map_err(|e| RunError::Invalid(e.to_string()))?,
    };
    plan.check_not_expired(now_ms)
        .map_err(|e| RunError::Invalid(e.to_string()))?;
    let exclude = &plan.selection.exclude_tag_keys;
    let planned_items = plan
        .delete
        .iter()
        .map(|entry| Item::Candidate {
            arn: entry.image_build_version_arn.clone(),
            options: ItemOptions::default(),
            plan: Some(Box::new(PlanCheck {
                plan_id: plan.plan_id.clone(),
                expect: Expect {
                    status: entry.status.clone(),
                    date_created: entry.date_created.clone(),
                },
                exclude_tag_keys: exclude.clone(),
            })),
        })
        .collect();
    Ok(event::planned(planned_items, level))
}

/// `{"planLocation": {…}}` (and nothing else): the stored plan to execute.
fn location_only(value: &Value) -> Option<&Value> {
    let obj = value.as_object()?;
    (obj.len() == 1).then(|| obj.get("planLocation")).flatten()
}

/// Reads the plan a `planLocation` names. Only plans of this function's own bucket, at the
/// key a plan is stored under, are read.
async fn read_location<S: PlanStore>(
    store: Option<&S>,
    location: &Value,
    settings: &Settings<'_>,
) -> Result<Plan, RunError> {
    let location: PlanLocation = serde_json::from_value(location.clone()).map_err(|e| {
        RunError::Invalid(format!(
            "executePlan.planLocation must be {{\"bucket\", \"key\"}}: {e}"
        ))
    })?;
    let id = location
        .key
        .strip_prefix("plans/")
        .and_then(|k| k.strip_suffix(".json"))
        .filter(|id| is_plan_id(id))
        .ok_or_else(|| {
            RunError::Invalid(format!(
                "executePlan.planLocation.key {} is not plans/<planId>.json",
                arn::quote(&location.key)
            ))
        })?;
    if settings.bucket != Some(location.bucket.as_str()) {
        return Err(RunError::Invalid(format!(
            "executePlan.planLocation.bucket {} is not this function's PLAN_BUCKET ({})",
            arn::quote(&location.bucket),
            settings.bucket.unwrap_or("unset")
        )));
    }
    read_plan(store, &location.bucket, id, settings).await
}

/// The stored plan `plan_id`, parsed and validated (expiry is the caller's).
async fn read_plan<S: PlanStore>(
    store: Option<&S>,
    bucket: &str,
    plan_id: &str,
    settings: &Settings<'_>,
) -> Result<Plan, RunError> {
    let Some(store) = store else {
        return Err(RunError::Invalid(
            "PLAN_BUCKET is not set, so no stored plan can be read".to_owned(),
        ));
    };
    let key = plan_key(plan_id);
    let attempted = with_retries(&settings.policy, settings.window, || {
        store.get(bucket, &key)
    })
    .await;
    let bytes = match attempted {
        Attempted::Failed { error, .. } if error.class == ErrorClass::NotFound => {
            return Err(RunError::Invalid(format!(
                "no plan at s3://{bucket}/{key} ({}): it was never stored, or the bucket's lifecycle removed it",
                error.code
            )))
        }
        other => settle(other, || format!("GetObject s3://{bucket}/{key}"))
            .map_err(RunError::Store)?,
    };
    let plan = Plan::parse_slice(&bytes).map_err(|e| RunError::Invalid(e.to_string()))?;
    if plan.plan_id != plan_id {
        return Err(RunError::Invalid(format!(
            "s3://{bucket}/{key} holds plan {}, not {plan_id}",
            plan.plan_id
        )));
    }
    Ok(plan)
}

/// Checks every Distributed Map item of `decoded` against the plan its `planId` names (read
/// from `PLAN_BUCKET`) and gives it the plan's `excludeTagKeys`. An expired plan, or an item
/// its plan does not delete as it says, refuses the whole invocation: nothing is called.
pub async fn check_items<S: PlanStore>(
    store: Option<&S>,
    decoded: &mut Decoded,
    settings: &Settings<'_>,
    now_ms: i64,
) -> Result<(), RunError> {
    let mut plans: BTreeMap<String, Option<Plan>> = BTreeMap::new();
    for check in plan_checks(decoded) {
        plans.entry(check.plan_id.clone()).or_insert(None);
    }
    if plans.is_empty() {
        return Ok(());
    }
    let Some(bucket) = settings.bucket else {
        return Err(RunError::Invalid(
            "plan items need PLAN_BUCKET to be checked against their plan, and it is not set"
                .to_owned(),
        ));
    };
    for (id, slot) in &mut plans {
        if !is_plan_id(id) {
            return Err(RunError::Invalid(format!(
                "plan item refused: planId {} is not plan-<YYYYMMDDThhmmssZ>-<8 hex digits>",
                arn::quote(id)
            )));
        }
        let plan = read_plan(store, bucket, id, settings).await?;
        plan.check_not_expired(now_ms)
            .map_err(|e| RunError::Invalid(e.to_string()))?;
        *slot = Some(plan);
    }
    for (arn, check) in plan_items_mut(decoded) {
        let plan = plans.get(&check.plan_id).and_then(Option::as_ref);
        let plan =
            plan.ok_or_else(|| RunError::Invalid(format!("plan {} unread", check.plan_id)))?;
        let item = MapItem {
            image_build_version_arn: arn.to_owned(),
            plan_id: check.plan_id.clone(),
            expect: check.expect.clone(),
        };
        plan.check_item(&item)
            .map_err(|e| RunError::Invalid(e.to_string()))?;
        check.exclude_tag_keys = plan.selection.exclude_tag_keys.clone();
    }
    Ok(())
}

fn plan_checks(decoded: &Decoded) -> impl Iterator<Item = &PlanCheck> {
    decoded
        .units
        .iter()
        .flat_map(|u| &u.items)
        .filter_map(|i| match i {
            Item::Candidate { plan, .. } => plan.as_deref(),
            Item::Invalid { .. } => None,
        })
}

fn plan_items_mut(decoded: &mut Decoded) -> impl Iterator<Item = (&str, &mut PlanCheck)> {
    decoded
        .units
        .iter_mut()
        .flat_map(|u| &mut u.items)
        .filter_map(|i| match i {
            Item::Candidate {
                arn,
                plan: Some(plan),
                ..
            } => Some((arn.as_str(), plan.as_mut())),
            _ => None,
        })
}
