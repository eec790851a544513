//! A deterministic, realistic build history to seed: several image names, each with several
//! semantic versions of several builds, spread over time, mostly AVAILABLE with some
//! FAILED / CANCELLED / DEPRECATED builds and possibly a newest build still BUILDING.
//! Produces [`SeedImage`]s; depends on `state` (the type) and `model` (timestamps) only.

use std::time::Duration;

use crate::model;
use crate::state::SeedImage;

/// What [`History::images`] generates. JSON (control API):
/// `{"account", "region", "names", "versionsPerName", "buildsPerVersion", "start", "stepSeconds"}`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct History {
    /// 12-digit account of every ARN.
    pub account: String,
    /// Region of every ARN.
    pub region: String,
    /// Image names (`[a-z0-9-_]+`).
    pub names: Vec<String>,
    /// Semantic versions per name: `1.0.0`, `1.1.0`, …
    pub versions_per_name: u32,
    /// Builds per version: `/1`, `/2`, …
    pub builds_per_version: u32,
    /// `dateCreated` of the oldest build (`2026-11-01T10:00:00.000Z`).
    pub start: String,
    /// Time between consecutive builds, in seconds.
    pub step_seconds: u64,
}

impl Default for History {
    fn default() -> Self {
        History {
            account: "123456789012".into(),
            region: "us-east-1".into(),
            names: vec!["web".into()],
            versions_per_name: 3,
            builds_per_version: 4,
            start: "2026-01-01T00:00:00.000Z".into(),
            step_seconds: 24 * 3600,
        }
    }
}

impl History {
    /// The seeded images, oldest first. Builds of a name are created in version then build
    /// order; names interleave, so every build has its own `dateCreated`.
    ///
    /// Status of a name's `n`-th build (0-based): `n % 10 == 3` FAILED, `== 7` CANCELLED,
    /// `== 9` DEPRECATED, otherwise AVAILABLE; the very newest build of every other name
    /// (the 1st, 3rd, …) is BUILDING. FAILED, CANCELLED and BUILDING builds have no output
    /// resources, as such builds produce none.
    pub fn images(&self) -> Result<Vec<SeedImage>, String> {
        let start = model::parse_iso_ms(&self.start).ok_or_else(|| {
            format!(
                "start {:?} is not an ISO-8601 UTC timestamp like 2026-11-01T10:00:00.000Z",
                self.start
            )
        })?;
        let step = i64::try_from(self.step_seconds.saturating_mul(1000))
            .map_err(|_| "stepSeconds is too large".to_string())?;
        let per_name = u64::from(self.versions_per_name) * u64::from(self.builds_per_version);
        let total = per_name.saturating_mul(self.names.len() as u64);
        if total > MAX_IMAGES {
            return Err(format!("{total} builds requested; at most {MAX_IMAGES}"));
        }
        let stride = self.names.len() as i64;
        let mut out = Vec::new();
        for (name_idx, name) in self.names.iter().enumerate() {
            for n in 0..per_name {
                let (v, b) = (
                    n / u64::from(self.builds_per_version),
                    n % u64::from(self.builds_per_version) + 1,
                );
                let arn = format!(
                    "arn:aws:imagebuilder:{}:{}:image/{name}/1.{v}.0/{b}",
                    self.region, self.account
                );
                let newest_building = n + 1 == per_name && name_idx % 2 == 0;
                let status = if newest_building {
                    "BUILDING"
                } else {
                    status_of(n)
                };
                let slot = (n as i64).saturating_mul(stride) + name_idx as i64;
                let ms = start.saturating_add(slot.saturating_mul(step));
                out.push(SeedImage {
                    arn,
                    state: Some(status.to_string()),
                    output_resources: matches!(status, "FAILED" | "CANCELLED" | "BUILDING")
                        .then(|| serde_json::json!({"amis": [], "containers": []})),
                    date_created: Some(model::format_iso_ms(ms)),
                    ..Default::default()
                });
            }
        }
        Ok(out)
    }
}

/// Upper bound on one history, so a typo in a request cannot exhaust memory.
const MAX_IMAGES: u64 = 1_000_000;

fn status_of(n: u64) -> &'static str {
    match n % 10 {
        3 => "FAILED",
        7 => "CANCELLED",
        9 => "DEPRECATED",
        _ => "AVAILABLE",
    }
}

/// [`History::images`] from plain arguments: `names` × `versions_per_name` ×
/// `builds_per_version` builds from `start`, `step` apart.
pub fn history(
    account: &str,
    region: &str,
    names: &[&str],
    versions_per_name: u32,
    builds_per_version: u32,
    start: &str,
    step: Duration,
) -> Result<Vec<SeedImage>, String> {
    History {
        account: account.into(),
        region: region.into(),
        names: names.iter().map(|n| n.to_string()).collect(),
        versions_per_name,
        builds_per_version,
        start: start.into(),
        step_seconds: step.as_secs(),
    }
    .images()
}
