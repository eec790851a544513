//! EC2 Image Builder adapter ([`Images`] and [`BuildVersions`] over the SDK).
//!
//! One client per region, built lazily from the shared [`SdkConfig`] and cached for the
//! life of the process (so connections are reused across invocations); each ARN is sent
//! through the client of **its own** region, so the request is signed for that region.

use aws_config::SdkConfig;
use aws_sdk_imagebuilder::operation::RequestId;
use aws_sdk_imagebuilder::types::{Filter, Ownership};
use aws_sdk_imagebuilder::Client;

use super::classify::classify;
use super::RegionalClients;
use crate::arn::ImageArn;
use crate::ports::{
    BuildVersionSummary, BuildVersions, CallError, Deleted, ImageInfo, ImageVersionSummary, Images,
    Page,
};
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
        let image = out.image();
        Ok(ImageInfo {
            status: image
                .and_then(|i| i.state())
                .and_then(|s| s.status())
                .map(|s| s.as_str().to_string()),
            date_created: image.and_then(|i| i.date_created()).map(str::to_string),
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

/// The largest page ListImages and ListImageBuildVersions serve.
const LIST_PAGE_SIZE: i32 = 25;

impl BuildVersions for ImageBuilder {
    /// ListImages with `owner=Self` (the account's own images; deprecated ones are always
    /// listed, `includeDeprecated` says so anyway) and, for exact names, the `name` filter.
    async fn list_image_versions(
        &self,
        region: &str,
        names: &[String],
        next_token: Option<String>,
    ) -> Result<Page<ImageVersionSummary>, CallError> {
        let filter = (!names.is_empty()).then(|| {
            vec![Filter::builder()
                .name("name")
                .set_values(Some(names.to_vec()))
                .build()]
        });
        let out = self
            .client(region)
            .list_images()
            .owner(Ownership::SelfValue)
            .include_deprecated(true)
            .set_filters(filter)
            .max_results(LIST_PAGE_SIZE)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let text = |v: Option<&str>| v.unwrap_or_default().to_string();
        Ok(Page {
            items: out
                .image_version_list()
                .iter()
                .map(|v| ImageVersionSummary {
                    arn: text(v.arn()),
                    name: text(v.name()),
                })
                .collect(),
            next_token: more(out.next_token()),
        })
    }

    async fn list_build_versions(
        &self,
        region: &str,
        version_arn: &str,
        next_token: Option<String>,
    ) -> Result<Page<BuildVersionSummary>, CallError> {
        let out = self
            .client(region)
            .list_image_build_versions()
            .image_version_arn(version_arn)
            .max_results(LIST_PAGE_SIZE)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(Page {
            items: out.image_summary_list().iter().map(summary).collect(),
            next_token: more(out.next_token()),
        })
    }
}

/// The token of the next page. An empty token would restart the listing: it means "no more
/// pages" too.
fn more(token: Option<&str>) -> Option<String> {
    token.filter(|t| !t.is_empty()).map(str::to_string)
}

/// One `ImageSummary` in the SDK's types → the port's.
fn summary(s: &aws_sdk_imagebuilder::types::ImageSummary) -> BuildVersionSummary {
    let text = |v: Option<&str>| v.unwrap_or_default().to_string();
    BuildVersionSummary {
        arn: text(s.arn()),
        name: text(s.name()),
        version: text(s.version()),
        status: text(s.state().and_then(|st| st.status()).map(|st| st.as_str())),
        date_created: text(s.date_created()),
        tags: s
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
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
