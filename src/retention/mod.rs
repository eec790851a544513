//! Retention plans, the pure core: a plan request becomes a [`Selection`], the selection rules
//! turn listed build versions into [`Decision`]s, and those become a [`Plan`] document whose
//! Map items an execution works through, each checked for drift first.
//!
//! No I/O and nothing of the crate but [`crate::arn`]: listing, S3 and GetImage are the
//! caller's; this module only decides.

pub mod document;
pub mod glob;
pub mod request;
pub mod rfc3339;
pub mod select;

pub use document::{
    check_drift, is_plan_id, items, items_key, plan_id, plan_key, DeleteEntry, DriftCheck, Expect,
    KeepEntry, MapItem, Observed, Plan, PlanError, PlanLocation, Summary, PLAN_TTL_MS,
};
pub use request::{parse_plan_request, RequestError, Selection, IMAGE_STATUSES, PLAN_KEYS};
pub use select::{
    select, BuildVersion, Decided, Decision, DeleteReason, KeepReason, AVAILABLE,
    IN_PROGRESS_STATUSES,
};
