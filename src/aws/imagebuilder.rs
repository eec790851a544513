//! EC2 Image Builder adapter ([`Images`] over the SDK).
//!
//! One client per region, built lazily from the shared [`SdkConfig`] and cached for the
//! life of the process (so connections are reused across invocations); each ARN is sent
//! through the client of **its own** region, so the request is signed for that region.

use aws_config::SdkConfig;
use aws_sdk_imagebuilder::operation::RequestId;
use aws_sdk_imagebuilder::Client;

use super::classify::classify;
use super::RegionalClients;
use crate::arn::ImageArn;
use crate::ports::{CallError, Deleted, ImageInfo, Images};
use crate::ports::{OutputAmi, OutputContainer, OutputResources};

/// [`Images`] backed by the AWS SDK.
#[derive(Debug)]
pub struct ImageBuilder {
    clients: RegionalClients<Client>,
}

impl ImageBuilder {
    /// No client is built until the first call for a region.
    pub fn new(base: &SdkConfig) -> Self {
        ImageBuilder {
            clients: RegionalClients::new(base, |base, region| {
                Client::from_conf(
                    aws_sdk_imagebuilder::config::Builder::from(base)
                        .region(region)
                        .build(),
                )
            }),
        }
    }

    /// The cached client for `region`.
    pub fn client(&self, region: &str) -> Client {
        self.clients.get(region)
    }
}

impl Images for ImageBuilder {
    async fn delete_image(&self, arn: &ImageArn) -> Result<Deleted, CallError> {
        let out = self
            .client(arn.region())
            .delete_image()
            .image_build_version_arn(arn.as_str())
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(Deleted {
            // The service's own requestId (body), else the x-amzn-requestid header.
            request_id: out
                .request_id()
                .or_else(|| RequestId::request_id(&out))
                .map(str::to_string),
        })
    }

    async fn get_image(&self, arn: &ImageArn) -> Result<ImageInfo, CallError> {
        let out = self
            .client(arn.region())
            .get_image()
            .image_build_version_arn(arn.as_str())
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(ImageInfo {
            tags: out
                .image()
                .and_then(|i| i.tags())
                .cloned()
                .unwrap_or_default(),
            output_resources: out
                .image()
                .and_then(|i| i.output_resources())
                .map(output_resources)
                .unwrap_or_default(),
            request_id: out
                .request_id()
                .or_else(|| RequestId::request_id(&out))
                .map(str::to_string),
        })
    }
}

/// GetImage's `outputResources` in the SDK's types → the pure core's.
fn output_resources(r: &aws_sdk_imagebuilder::types::OutputResources) -> OutputResources {
    OutputResources {
        amis: r
            .amis()
            .iter()
            .map(|a| OutputAmi {
                region: a.region().map(str::to_string),
                image_id: a.image().map(str::to_string),
                account_id: a.account_id().map(str::to_string),
            })
            .collect(),
        containers: r
            .containers()
            .iter()
            .map(|c| OutputContainer {
                region: c.region().map(str::to_string),
                image_uris: c.image_uris().to_vec(),
            })
            .collect(),
    }
}
