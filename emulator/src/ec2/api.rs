//! The in-process handle of the EC2 front ([`Ec2Front`]): starts it in front of moto (with an
//! injected latency, if any) and sets what moto cannot hold (launch times, deregistration
//! protection, SSM/recipe references, scripted faults), and reads the call log and stats.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use super::front;
use super::references::ImageReference;
use super::state::{Ec2Call, Ec2Fault, Ec2Latency, ImageSettings, Shared};
use super::upstream::Upstream;

/// A running EC2 front; cheap to clone (clones share one state).
#[derive(Clone)]
pub struct Ec2Front {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl Ec2Front {
    /// Binds `addr` (use `127.0.0.1:0` for a free port), serves on the current tokio runtime
    /// and forwards to `upstream` (moto, `http://HOST:PORT`).
    pub async fn start(upstream: &str, addr: SocketAddr) -> io::Result<Ec2Front> {
        Ec2Front::start_with_latency(upstream, addr, Ec2Latency::default()).await
    }

    /// [`Ec2Front::start`], adding `latency` to every EC2 request (not to control calls).
    pub async fn start_with_latency(
        upstream: &str,
        addr: SocketAddr,
        latency: Ec2Latency,
    ) -> io::Result<Ec2Front> {
        let upstream =
            Upstream::new(upstream).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(upstream, latency));
        tokio::spawn(front::accept_loop(listener, shared.clone()));
        Ok(Ec2Front { shared, addr })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the value for `AWS_ENDPOINT_URL_EC2`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces what is stored for `image_id` (an empty [`ImageSettings`] clears it).
    pub fn set_image(&self, image_id: &str, settings: ImageSettings) {
        let mut state = self.shared.lock();
        if settings == ImageSettings::default() {
            state.images.remove(image_id);
        } else {
            state.images.insert(image_id.to_string(), settings);
        }
    }

    /// Sets (or with `None` clears) the AMI's last launch time, keeping its protection.
    pub fn set_last_launched_time(&self, image_id: &str, time: Option<&str>) {
        let mut settings = self.image(image_id);
        settings.last_launched_time = time.map(str::to_string);
        self.set_image(image_id, settings);
    }

    /// Sets (or with `None` clears) the AMI's deregistration protection, e.g. `enabled`,
    /// keeping its launch time.
    pub fn set_deregistration_protection(&self, image_id: &str, value: Option<&str>) {
        let mut settings = self.image(image_id);
        settings.deregistration_protection = value.map(str::to_string);
        self.set_image(image_id, settings);
    }

    /// What is stored for `image_id` (default when nothing is).
    pub fn image(&self, image_id: &str) -> ImageSettings {
        self.shared.image(image_id)
    }

    /// Every AMI with stored settings.
    pub fn images(&self) -> BTreeMap<String, ImageSettings> {
        self.shared.lock().images.clone()
    }

    /// Adds a reference DescribeImageReferences reports when its type is in scope (for
    /// `ssm:Parameter` and the recipe types, which moto cannot link to AMIs).
    pub fn add_reference(&self, reference: ImageReference) {
        self.shared.lock().references.push(reference);
    }

    /// Replaces every added reference.
    pub fn set_references(&self, references: Vec<ImageReference>) {
        self.shared.lock().references = references;
    }

    /// The added references.
    pub fn references(&self) -> Vec<ImageReference> {
        self.shared.lock().references.clone()
    }

    /// Scripts an error for every call of `operation` (EC2 `Action`), or its next
    /// `fault.times` calls; replaces an earlier fault for it.
    pub fn set_fault(&self, operation: &str, fault: Ec2Fault) {
        self.shared
            .lock()
            .faults
            .insert(operation.to_string(), fault);
    }

    /// Removes the fault for `operation`.
    pub fn clear_fault(&self, operation: &str) {
        self.shared.lock().faults.remove(operation);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// The faults still pending, by operation.
    pub fn faults(&self) -> BTreeMap<String, Ec2Fault> {
        self.shared.lock().faults.clone()
    }

    /// Every EC2 request received (control calls excluded), in completion order.
    pub fn calls(&self) -> Vec<Ec2Call> {
        self.shared.lock().calls.clone()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.shared.lock().calls.clear();
    }

    /// Calls by operation, status and who answered, the most EC2 requests seen in flight at
    /// once, and the injected latency (the JSON of `GET /_ec2/stats`).
    pub fn stats(&self) -> serde_json::Value {
        self.shared.stats()
    }

    /// Forgets the recorded calls and restarts the concurrency high-water mark.
    pub fn reset_stats(&self) {
        self.shared.reset_stats();
    }
}
