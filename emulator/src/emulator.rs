//! The public in-process facade, [`Emulator`]: starts listeners and exposes the state to
//! tests (seed, script, configure faults, inspect calls). A thin layer over `state` and
//! `server`; nothing in the crate imports it back.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::faults::Faults;
use crate::history::History;
use crate::server;
use crate::state::{Call, SeedImage, Shared, Step};

/// The emulator: cheap to clone (all clones share one state).
#[derive(Clone)]
pub struct Emulator {
    shared: Arc<Shared>,
}

impl Default for Emulator {
    fn default() -> Self {
        Emulator::new(Faults::default())
    }
}

impl Emulator {
    /// Creates an emulator with no images and the given faults.
    pub fn new(faults: Faults) -> Self {
        Emulator {
            shared: Arc::new(Shared::new(faults)),
        }
    }

    /// Binds (use "127.0.0.1:0" for a free port), spawns the accept loop on the current
    /// tokio runtime, returns the bound address.
    pub async fn start(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let _ = self.shared.addr.set(bound);
        tokio::spawn(server::accept_loop(listener, self.shared.clone()));
        Ok(bound)
    }

    /// `http://ADDR` of the first started listener (the value for
    /// `AWS_ENDPOINT_URL_IMAGEBUILDER`), or `None` before [`Emulator::start`].
    pub fn endpoint_url(&self) -> Option<String> {
        self.shared.addr.get().map(|a| format!("http://{a}"))
    }

    /// Adds (or replaces) images; a seeded ARN exists even if it was deleted before.
    pub fn seed(&self, images: impl IntoIterator<Item = SeedImage>) {
        self.shared.seed(images);
    }

    /// Seeds the images of a generated [`History`]; returns how many.
    pub fn seed_history(&self, history: &History) -> Result<usize, String> {
        Ok(self.shared.seed(history.images()?))
    }

    /// Removes every image and forgets implicit-mode deletions.
    pub fn clear_images(&self) {
        self.shared.clear_images();
    }

    /// Replaces the fault settings (rates are clamped to 0..=1). A rate limiter restarts
    /// with a full bucket when its own limit changes.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults);
    }

    /// The current fault settings.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Scripts the next DeleteImage answers for `arn` (replacing any earlier script); once
    /// the steps are used up, normal behaviour resumes.
    pub fn script(&self, arn: &str, steps: Vec<Step>) {
        self.script_op("DeleteImage", arn, steps);
    }

    /// Like [`Emulator::script`] for any operation. `arn` is the ARN the call names (for
    /// ListImageBuildVersions the image version ARN), or `"*"` for any call of the operation
    /// without a script of its own — the way to script ListImages and unfiltered lists.
    pub fn script_op(&self, operation: &str, arn: &str, steps: Vec<Step>) {
        self.shared.script(operation, arn, steps);
    }

    /// Drops every pending script.
    pub fn clear_scripts(&self) {
        self.shared.clear_scripts();
    }

    /// Every recorded call since creation or the last [`Emulator::reset_stats`], in
    /// completion order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls()
    }

    /// Recorded calls of `operation` answered 429 `CallRateLimitExceededException`.
    pub fn throttled(&self, operation: &str) -> usize {
        self.shared.throttled(operation)
    }

    /// The highest number of Image Builder API requests in flight at once (high-water mark).
    pub fn max_concurrency(&self) -> usize {
        self.shared.max_concurrency()
    }

    /// Image Builder API requests in flight right now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// Whether DeleteImage/GetImage would find `arn` now.
    pub fn image_exists(&self, arn: &str) -> bool {
        self.shared.image_exists(arn)
    }

    /// Explicitly seeded ARNs that still exist (implicit images are not listed), sorted.
    pub fn images(&self) -> Vec<String> {
        self.shared.image_arns()
    }

    /// Clears the call log and restarts the concurrency high-water mark from the requests
    /// in flight now.
    pub fn reset_stats(&self) {
        self.shared.reset_stats();
    }

    /// Logs every call to stderr when true.
    pub fn set_verbose(&self, verbose: bool) {
        self.shared.set_verbose(verbose);
    }

    /// Summary used by `GET /_emulator/stats`: `{"maxConcurrency", "inFlight", "calls",
    /// "byStatus", "byErrorCode", "byOperation", "throttledByOperation"}`.
    pub fn stats(&self) -> serde_json::Value {
        self.shared.stats()
    }
}
