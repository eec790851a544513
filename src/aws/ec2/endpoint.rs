//! Where EC2 requests go: the configured endpoint override, read from the loaded
//! [`SdkConfig`] exactly as a generated SDK client reads it (`AWS_ENDPOINT_URL_EC2`, the
//! profile's `endpoint_url` for EC2, then `AWS_ENDPOINT_URL`), else the region's public
//! endpoint in its partition.

use aws_config::SdkConfig;
use aws_types::service_config::ServiceConfigKey;

/// EC2's service id, from which aws-config derives `AWS_ENDPOINT_URL_EC2` and the profile's
/// `[services]` section key.
const SERVICE_ID: &str = "EC2";

/// The endpoint override the SDK would use for EC2, if any. An endpoint URL set in code on
/// the loader wins over the environment, as it does for every SDK client.
pub fn configured(sdk: &SdkConfig) -> Option<String> {
    if sdk.get_origin("endpoint_url").is_client_config() {
        return sdk.endpoint_url().map(str::to_string);
    }
    let key = ServiceConfigKey::builder()
        .service_id(SERVICE_ID)
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok();
    key.and_then(|key| sdk.service_config()?.load_config(key))
        .or_else(|| sdk.endpoint_url().map(str::to_string))
}

/// The public EC2 endpoint of `region` (the rules of the EC2 endpoint ruleset, for the
/// partitions a Lambda function can run in).
pub fn regional(region: &str, fips: bool, dual_stack: bool) -> String {
    let (dns, dual_dns, gov) = partition(region);
    let host = match (fips, dual_stack) {
        (true, true) => format!("ec2-fips.{region}.{dual_dns}"),
        // GovCloud's regular endpoints are already FIPS endpoints.
        (true, false) if gov => format!("ec2.{region}.{dns}"),
        (true, false) => format!("ec2-fips.{region}.{dns}"),
        (false, true) => format!("ec2.{region}.{dual_dns}"),
        (false, false) => format!("ec2.{region}.{dns}"),
    };
    format!("https://{host}")
}

/// The partition's DNS suffix, its dual-stack suffix, and whether it is GovCloud.
fn partition(region: &str) -> (&'static str, &'static str, bool) {
    if region.starts_with("cn-") {
        ("amazonaws.com.cn", "api.amazonwebservices.com.cn", false)
    } else if region.starts_with("us-gov-") {
        ("amazonaws.com", "api.aws", true)
    } else if region.starts_with("us-isob-") {
        ("sc2s.sgov.gov", "sc2s.sgov.gov", false)
    } else if region.starts_with("us-isof-") {
        ("csp.hci.ic.gov", "csp.hci.ic.gov", false)
    } else if region.starts_with("us-iso-") {
        ("c2s.ic.gov", "c2s.ic.gov", false)
    } else if region.starts_with("eu-isoe-") {
        ("cloud.adc-e.uk", "cloud.adc-e.uk", false)
    } else if region.starts_with("eusc-") {
        ("amazonaws.eu", "amazonaws.eu", false)
    } else {
        ("amazonaws.com", "api.aws", false)
    }
}

/// The request URL for an endpoint: EC2 takes every action as `POST /` (an endpoint with a
/// path keeps it, as the SDK's endpoint merging does).
pub fn request_url(endpoint: &str) -> String {
    if endpoint.ends_with('/') {
        endpoint.to_string()
    } else {
        format!("{endpoint}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::Region;

    #[test]
    fn public_endpoints_follow_the_partition() {
        assert_eq!(
            regional("us-east-1", false, false),
            "https://ec2.us-east-1.amazonaws.com"
        );
        assert_eq!(
            regional("cn-north-1", false, false),
            "https://ec2.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            regional("us-gov-west-1", false, false),
            "https://ec2.us-gov-west-1.amazonaws.com"
        );
        assert_eq!(
            regional("us-gov-west-1", true, false),
            "https://ec2.us-gov-west-1.amazonaws.com"
        );
        assert_eq!(
            regional("eu-west-1", true, false),
            "https://ec2-fips.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            regional("eu-west-1", false, true),
            "https://ec2.eu-west-1.api.aws"
        );
        assert_eq!(
            regional("us-iso-east-1", false, false),
            "https://ec2.us-iso-east-1.c2s.ic.gov"
        );
    }

    #[test]
    fn the_request_url_is_the_endpoint_root() {
        assert_eq!(
            request_url("http://127.0.0.1:5000"),
            "http://127.0.0.1:5000/"
        );
        assert_eq!(request_url("http://h/"), "http://h/");
    }

    #[test]
    fn an_endpoint_set_on_the_loader_is_the_override() {
        let sdk = SdkConfig::builder()
            .region(Region::new("us-east-1"))
            .endpoint_url("http://localhost:4566")
            .build();
        assert_eq!(configured(&sdk).as_deref(), Some("http://localhost:4566"));
        let bare = SdkConfig::builder()
            .region(Region::new("us-east-1"))
            .build();
        assert_eq!(configured(&bare), None);
    }
}
