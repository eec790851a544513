//! The local world of one end-to-end test: the real function binary, started under the
//! in-process Runtime API, talking to the in-process Image Builder emulator and to moto
//! (the SQS dead-letter queue; EC2 and ECR when it deletes output resources) only through
//! the standard endpoint variables (`AWS_ENDPOINT_URL_IMAGEBUILDER`, `AWS_ENDPOINT_URL_SQS`,
//! `AWS_ENDPOINT_URL_EC2`, `AWS_ENDPOINT_URL_ECR`). With output resources, EC2 is reached
//! through the emulator's EC2 front, which adds to moto what the in-use guard reads
//! (DescribeImageReferences, launch times, deregistration protection).

use std::process::Command;
use std::time::Duration;

use ib_emulator::{Ec2Front, Emulator, Faults, SeedImage};
use serde_json::Value;

use super::constants::REGION;
use super::moto::{self, Moto, Received};
use super::process::{repo_root, Proc};
use super::runtime_api::{Reply, RuntimeApi};

/// The function binary cargo built for this test run.
const FUNCTION_BIN: &str = env!("CARGO_BIN_EXE_imagebuilder-reaper");

/// Which dead-letter queue the function is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dlq {
    /// A fresh queue in moto.
    Fresh,
    /// The URL of a queue that was created and deleted again (sends fail).
    Deleted,
}

/// How to build a world.
pub struct Setup {
    pub faults: Faults,
    pub dlq: Dlq,
    /// Extra environment for the function (overrides the defaults).
    pub env: Vec<(String, String)>,
    pub seed: Vec<String>,
    /// Start an EC2 front before moto and point `AWS_ENDPOINT_URL_EC2` at it.
    pub ec2_front: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            faults: Faults::default(),
            dlq: Dlq::Fresh,
            env: Vec::new(),
            seed: Vec::new(),
            ec2_front: false,
        }
    }
}

impl Setup {
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
    pub fn seed<I: IntoIterator<Item = S>, S: Into<String>>(mut self, arns: I) -> Self {
        self.seed.extend(arns.into_iter().map(Into::into));
        self
    }
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }
    pub fn dlq(mut self, dlq: Dlq) -> Self {
        self.dlq = dlq;
        self
    }
    /// `DELETE_OUTPUT_RESOURCES=mode`, with ECR in moto and EC2 through this world's EC2
    /// front in front of moto.
    #[cfg(feature = "output-resources")]
    pub fn output_resources(mut self, mode: &str) -> Self {
        let moto = Moto::shared().url();
        self.ec2_front = true;
        self.env("DELETE_OUTPUT_RESOURCES", mode)
            .env("AWS_ENDPOINT_URL_ECR", &moto)
    }
}

/// A running world. Dropping it kills the function; if the test is panicking, the
/// function's output is printed first so the failure can be read.
pub struct World {
    pub emu: Emulator,
    pub runtime: RuntimeApi,
    pub function: Proc,
    pub moto: &'static Moto,
    pub sqs: aws_sdk_sqs::Client,
    /// The EC2 front the function's EC2 calls go through (worlds with output resources).
    pub ec2: Option<Ec2Front>,
    dlq_url: String,
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- function output (pid {}) ----\n{}---- end of function output ----",
                self.function.pid(),
                self.function.output()
            );
        }
    }
}

/// The environment a Lambda execution environment gives the function, plus the local
/// endpoints; `extra` overrides.
fn lambda_env(
    runtime_api: &str,
    imagebuilder: &str,
    sqs: &str,
    dlq_url: &str,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("PATH", std::env::var("PATH").unwrap_or_default().as_str()),
        ("AWS_LAMBDA_RUNTIME_API", runtime_api),
        ("AWS_LAMBDA_FUNCTION_NAME", "imagebuilder-reaper"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/imagebuilder-reaper",
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]e2e"),
        ("AWS_REGION", REGION),
        ("AWS_DEFAULT_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_ENDPOINT_URL_IMAGEBUILDER", imagebuilder),
        ("AWS_ENDPOINT_URL_SQS", sqs),
        ("DEAD_LETTER_QUEUE_URL", dlq_url),
        ("RUST_BACKTRACE", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// Starts the function binary with exactly `env` (nothing inherited).
pub fn spawn_function(env: &[(String, String)]) -> Proc {
    let mut cmd = Command::new(FUNCTION_BIN);
    cmd.env_clear().current_dir(repo_root());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc::spawn("imagebuilder-reaper", cmd)
}

impl World {
    pub async fn start(setup: Setup) -> World {
        let moto = Moto::shared();
        let sqs = moto.sqs();
        let dlq_url = match setup.dlq {
            Dlq::Fresh => moto::create_queue(&sqs, &moto::unique("e2e-dlq")).await,
            Dlq::Deleted => {
                let url = moto::create_queue(&sqs, &moto::unique("e2e-gone")).await;
                sqs.delete_queue()
                    .queue_url(&url)
                    .send()
                    .await
                    .expect("DeleteQueue");
                url
            }
        };
        let emu = Emulator::new(setup.faults);
        emu.start("127.0.0.1:0".parse().unwrap())
            .await
            .expect("start the Image Builder emulator");
        emu.seed(setup.seed.iter().map(|arn| SeedImage {
            arn: arn.clone(),
            ..Default::default()
        }));
        let mut extra = setup.env.clone();
        let ec2 = if setup.ec2_front {
            let front = Ec2Front::start(&moto.url(), "127.0.0.1:0".parse().unwrap())
                .await
                .expect("start the EC2 front");
            extra.push(("AWS_ENDPOINT_URL_EC2".into(), front.endpoint_url()));
            Some(front)
        } else {
            None
        };
        let runtime = RuntimeApi::start().await;
        let env = lambda_env(
            &runtime.address(),
            &emu.endpoint_url().unwrap(),
            &moto.url(),
            &dlq_url,
            &extra,
        );
        let function = spawn_function(&env);
        World {
            emu,
            runtime,
            function,
            moto,
            sqs,
            ec2,
            dlq_url,
        }
    }

    /// Invokes with a 60 s budget.
    pub async fn invoke(&self, event: &Value) -> Reply {
        self.invoke_within(event, Duration::from_secs(60)).await
    }

    /// Invokes with the given time budget (the Lambda deadline is that far from the moment
    /// the function receives the event).
    pub async fn invoke_within(&self, event: &Value, budget: Duration) -> Reply {
        self.runtime.invoke(event, budget).await
    }

    /// Reads and deletes the dead-letter messages, waiting for at least `expected`.
    pub async fn dead_letters(&self, expected: usize) -> Vec<Received> {
        moto::drain(&self.sqs, &self.dlq_url, expected, Duration::from_secs(10)).await
    }

    /// The environment of this world's function for one served by another Runtime API
    /// (`AWS_LAMBDA_RUNTIME_API=runtime_api`); `extra` overrides.
    pub fn function_env(
        &self,
        runtime_api: &str,
        extra: &[(String, String)],
    ) -> Vec<(String, String)> {
        lambda_env(
            runtime_api,
            &self.emu.endpoint_url().unwrap(),
            &self.moto.url(),
            &self.dlq_url,
            extra,
        )
    }

    /// Puts `image` into the emulator with GetImage `outputResources` naming the AMIs
    /// `(region, ami id)` and the container images `(region, image URI)`.
    #[cfg(feature = "output-resources")]
    pub fn seed_with_outputs(&self, image: &str, amis: &[(&str, &str)], uris: &[(&str, &str)]) {
        use super::constants::ACCOUNT;
        use serde_json::json;
        self.emu.seed([SeedImage {
            arn: image.to_string(),
            output_resources: Some(json!({
                "amis": amis.iter().map(|(region, id)| json!({
                    "region": region, "image": id, "name": "web 2026-01-01",
                    "state": {"status": "AVAILABLE"}, "accountId": ACCOUNT
                })).collect::<Vec<_>>(),
                "containers": uris.iter().map(|(region, uri)| json!({
                    "region": region, "imageUris": [uri]
                })).collect::<Vec<_>>(),
            })),
            ..Default::default()
        }]);
    }

    /// How many DeleteImage calls the emulator received for `arn`.
    pub fn delete_calls(&self, arn: &str) -> usize {
        self.emu
            .calls()
            .iter()
            .filter(|c| c.operation == "DeleteImage" && c.arn.as_deref() == Some(arn))
            .count()
    }
}

/// The entry of `report` (the JSON the function returned) for `arn`.
pub fn result_for<'a>(report: &'a Value, arn: &str) -> &'a Value {
    report["results"]
        .as_array()
        .unwrap_or_else(|| panic!("report without results: {report:#}"))
        .iter()
        .find(|r| r["imageBuildVersionArn"] == arn)
        .unwrap_or_else(|| panic!("no result for {arn} in {report:#}"))
}
