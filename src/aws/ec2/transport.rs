//! EC2 Query protocol, the I/O half: one signed `POST /` to a region's endpoint, its reply
//! read whole, and every way that can fail classified once (through
//! [`classify_query`]). Also NextToken pagination, which only needs "call again".
//!
//! Everything comes from the loaded [`SdkConfig`], like any SDK client built from it: the
//! credentials provider chain, the endpoint override ([`endpoint::configured`]), FIPS /
//! dual-stack, the time source and the timeouts. The HTTP stack is the SDK's own
//! (aws-smithy-http-client, rustls + ring — the TLS choice of [`crate::aws::load_sdk_config`]),
//! used as a bare connector: there is no retry layer here (the engine's loop is the only
//! one) and no orchestrator, which is what keeps this client small to build.

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_async::time::SharedTimeSource;
use aws_smithy_http_client::tls;
// The SDK's body and error types through the SDK crates' own re-exports; the connector
// traits (sending through the SDK's HTTP client) and `Identity` are re-exported by none, so
// they come from aws-smithy-runtime-api itself.
use aws_sdk_s3::config::http::HttpRequest;
use aws_sdk_s3::primitives::{ByteStream, SdkBody};
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::identity::Identity;
use roxmltree::Document;
use tokio::sync::Mutex;

use super::endpoint;
use super::query::{self, Params};
use crate::aws::classify::{classify_query, QueryFailure};
use crate::ports::CallError;

/// The signing name of EC2.
const SERVICE: &str = "ec2";
const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// Credentials are refreshed this long before they expire, so none expires in flight.
const EXPIRY_BUFFER: Duration = Duration::from_secs(60);
/// Credentials without an expiry are re-resolved this often (the SDK's lazy cache default).
const UNBOUNDED_TTL: Duration = Duration::from_secs(15 * 60);
/// Pages one paginated call may read: far past any real listing, short of a server that
/// keeps returning fresh tokens forever.
const MAX_PAGES: usize = 1000;

/// A successful (2xx) reply, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub request_id: Option<String>,
}

impl Reply {
    /// The body as an XML document; malformed XML is a classified error.
    pub fn document(&self) -> Result<Document<'_>, CallError> {
        query::parse(&self.body).map_err(|detail| self.unreadable(detail))
    }

    fn unreadable(&self, detail: String) -> CallError {
        classify_query(
            QueryFailure::Unreadable {
                status: self.status,
                detail,
            },
            self.request_id.clone(),
        )
    }
}

/// Credentials as last resolved, and when to resolve them again.
#[derive(Debug)]
struct Cached {
    credentials: Credentials,
    refresh_at: SystemTime,
}

/// Sends EC2 Query requests to any region (one per call); cheap to share.
#[derive(Debug)]
pub struct Transport {
    connector: SharedHttpConnector,
    credentials: Option<SharedCredentialsProvider>,
    cache: Mutex<Option<Cached>>,
    endpoint_override: Option<String>,
    fips: bool,
    dual_stack: bool,
    time: SharedTimeSource,
    attempt_timeout: Option<Duration>,
}

impl Transport {
    /// Reads everything from `sdk`; no I/O (credentials are resolved on the first call).
    pub fn new(sdk: &SdkConfig) -> Self {
        Self::with_connector(sdk, https_connector(sdk))
    }

    /// Like [`Transport::new`], with the given HTTP connector (tests pass a fake one).
    pub fn with_connector(sdk: &SdkConfig, connector: SharedHttpConnector) -> Self {
        let timeouts = sdk.timeout_config();
        Transport {
            connector,
            credentials: sdk.credentials_provider(),
            cache: Mutex::new(None),
            endpoint_override: endpoint::configured(sdk),
            fips: sdk.use_fips().unwrap_or(false),
            dual_stack: sdk.use_dual_stack().unwrap_or(false),
            time: sdk.time_source().unwrap_or_default(),
            attempt_timeout: timeouts.and_then(|t| {
                t.operation_attempt_timeout()
                    .or_else(|| t.operation_timeout())
            }),
        }
    }

    /// The endpoint requests for `region` go to.
    pub fn endpoint(&self, region: &str) -> String {
        match &self.endpoint_override {
            Some(url) => url.clone(),
            None => endpoint::regional(region, self.fips, self.dual_stack),
        }
    }

    /// One call: `params` to `region`'s endpoint, signed for `region`. Within the attempt
    /// timeout, or it fails as a retryable `Timeout`.
    pub async fn call(&self, region: &str, params: &Params) -> Result<Reply, CallError> {
        let attempt = self.attempt(region, params);
        let result = match self.attempt_timeout {
            Some(limit) => match tokio::time::timeout(limit, attempt).await {
                Ok(result) => result,
                Err(_) => Err((
                    QueryFailure::Timeout(format!("{} took over {limit:?}", params.action())),
                    None,
                )),
            },
            None => attempt.await,
        };
        result.map_err(|(failure, request_id)| classify_query(failure, request_id))
    }

    /// Every page of a paginated call: `params` again with each `NextToken` until a reply has
    /// none (or repeats the token it was asked with), `page` reading each reply's items.
    pub async fn paginate<T>(
        &self,
        region: &str,
        params: &Params,
        page: impl Fn(roxmltree::Node<'_, '_>) -> Vec<T>,
    ) -> Result<Vec<T>, CallError> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let request = match &token {
                Some(t) => params.clone().set("NextToken", t.as_str()),
                None => params.clone(),
            };
            let reply = self.call(region, &request).await?;
            let next = {
                let doc = reply.document()?;
                found.extend(page(doc.root_element()));
                query::next_token(doc.root_element())
            };
            match next {
                Some(t) if Some(&t) != token.as_ref() => token = Some(t),
                _ => return Ok(found),
            }
        }
        Err(classify_query(
            QueryFailure::Unreadable {
                status: 200,
                detail: format!("{} returned over {MAX_PAGES} pages", params.action()),
            },
            None,
        ))
    }

    /// Credentials, signing, the exchange and reading the reply, without the timeout.
    async fn attempt(
        &self,
        region: &str,
        params: &Params,
    ) -> Result<Reply, (QueryFailure, Option<String>)> {
        let url = endpoint::request_url(&self.endpoint(region));
        check_url(&url).map_err(|detail| (QueryFailure::Dispatch { user: true, detail }, None))?;
        let identity: Identity = self.credentials().await.map_err(|f| (f, None))?.into();
        let body = params.encode();
        let request = self
            .signed_request(&url, body, region, &identity)
            .map_err(|detail| (QueryFailure::Construction(detail), None))?;
        let response = self.connector.call(request).await.map_err(|e| {
            let detail = DisplayErrorContext(&e).to_string();
            let failure = QueryFailure::Dispatch {
                user: e.is_user(),
                detail,
            };
            (failure, None)
        })?;
        let status = response.status().as_u16();
        let header_id = ["x-amzn-requestid", "x-amz-request-id"]
            .iter()
            .find_map(|h| response.headers().get(*h))
            .map(str::to_string);
        let bytes = ByteStream::new(response.into_body())
            .collect()
            .await
            .map_err(|e| {
                let detail = format!("reading the body: {}", DisplayErrorContext(&e));
                (
                    QueryFailure::Unreadable { status, detail },
                    header_id.clone(),
                )
            })?
            .into_bytes();
        let body = String::from_utf8_lossy(&bytes).into_owned();
        if (200..300).contains(&status) {
            return Ok(Reply {
                status,
                body,
                request_id: header_id,
            });
        }
        let doc = query::error_document(&body).unwrap_or_default();
        let failure = QueryFailure::Service {
            status,
            code: doc.code,
            message: doc.message,
        };
        Err((failure, doc.request_id.or(header_id)))
    }

    /// The cached credentials, or fresh ones from the provider chain when they are due.
    async fn credentials(&self) -> Result<Credentials, QueryFailure> {
        let Some(provider) = &self.credentials else {
            return Err(QueryFailure::Credentials(
                "no credentials provider is configured".into(),
            ));
        };
        let mut cache = self.cache.lock().await;
        let now = self.time.now();
        if let Some(cached) = cache.as_ref().filter(|c| c.refresh_at > now) {
            return Ok(cached.credentials.clone());
        }
        let fresh = provider
            .provide_credentials()
            .await
            .map_err(|e| QueryFailure::Credentials(DisplayErrorContext(&e).to_string()))?;
        let refresh_at = match fresh.expiry() {
            Some(expiry) => expiry.checked_sub(EXPIRY_BUFFER).unwrap_or(now),
            None => now.checked_add(UNBOUNDED_TTL).unwrap_or(now),
        };
        *cache = Some(Cached {
            credentials: fresh.clone(),
            refresh_at,
        });
        Ok(fresh)
    }

    /// The HTTP request, signed with SigV4 for `region` and service `ec2`.
    fn signed_request(
        &self,
        url: &str,
        body: String,
        region: &str,
        identity: &Identity,
    ) -> Result<HttpRequest, String> {
        let settings = v4::SigningParams::builder()
            .identity(identity)
            .region(region)
            .name(SERVICE)
            .time(self.time.now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| format!("signing parameters: {e}"))?
            .into();
        let headers = [("content-type", CONTENT_TYPE)];
        let signable = SignableRequest::new(
            "POST",
            url,
            headers.into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| format!("signing: {}", DisplayErrorContext(&e)))?;
        let (instructions, _signature) = sign(signable, &settings)
            .map_err(|e| format!("signing: {}", DisplayErrorContext(&e)))?
            .into_parts();
        let mut request = HttpRequest::new(SdkBody::from(body));
        request
            .set_uri(url)
            .map_err(|e| format!("request URL {url}: {e}"))?;
        request
            .set_method("POST")
            .map_err(|e| format!("method: {e}"))?;
        let (signed_headers, _) = instructions.into_parts();
        let all = headers.iter().map(|(k, v)| (*k, (*v).to_string())).chain(
            signed_headers
                .iter()
                .map(|h| (h.name(), h.value().to_string())),
        );
        for (name, value) in all {
            request
                .headers_mut()
                .try_insert(name, value)
                .map_err(|e| format!("header {name}: {e}"))?;
        }
        Ok(request)
    }
}

/// The endpoint must be an absolute `http`/`https` URL with a host (the signer needs the
/// host; anything else is a configuration error, found before any I/O).
fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("endpoint {url:?} is not a URL: {e}"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if scheme_ok && uri.host().is_some_and(|h| !h.is_empty()) {
        Ok(())
    } else {
        Err(format!(
            "endpoint {url:?} is not an absolute http(s) URL with a host"
        ))
    }
}

/// The SDK's HTTPS connector (plain HTTP too, for emulators), with the configured connect
/// and read timeouts when the configuration has a sleep implementation to run them on.
fn https_connector(sdk: &SdkConfig) -> SharedHttpConnector {
    let mut builder = aws_smithy_http_client::Connector::builder();
    if let Some(sleep) = sdk.sleep_impl() {
        builder.set_sleep_impl(Some(sleep));
        if let Some(t) = sdk.timeout_config() {
            let mut settings = HttpConnectorSettings::builder();
            settings.set_connect_timeout(t.connect_timeout());
            settings.set_read_timeout(t.read_timeout());
            builder.set_connector_settings(Some(settings.build()));
        }
    }
    let connector = builder
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build();
    SharedHttpConnector::new(connector)
}

#[cfg(test)]
mod tests {
    use super::super::fake::{self, error, ok, Answer, FakeConnector};
    use super::*;
    use crate::ports::ErrorClass;

    fn transport(answers: impl IntoIterator<Item = Answer>) -> (Transport, FakeConnector) {
        let fake = FakeConnector::new(answers);
        let t = Transport::with_connector(
            &fake::sdk(Some("http://127.0.0.1:5000")),
            SharedHttpConnector::new(fake.clone()),
        );
        (t, fake)
    }

    #[tokio::test]
    async fn a_call_is_a_signed_form_post_to_the_endpoint_root() {
        let (t, fake) = transport([ok(
            "<DeleteSnapshotResponse><return>true</return></DeleteSnapshotResponse>",
        )]);
        let params = Params::new("DeleteSnapshot").set("SnapshotId", "snap-1");
        let reply = t.call("eu-west-1", &params).await.unwrap();
        assert_eq!(reply.request_id.as_deref(), Some("header-request-id"));
        let sent = &fake.sent()[0];
        assert_eq!(sent.uri, "http://127.0.0.1:5000/");
        assert_eq!(
            sent.body,
            "Action=DeleteSnapshot&Version=2016-11-15&SnapshotId=snap-1"
        );
        assert_eq!(sent.header("content-type"), Some(CONTENT_TYPE));
        assert_eq!(sent.header("x-amz-security-token"), Some("session-token"));
        assert!(sent.header("x-amz-date").is_some());
        let auth = sent.header("authorization").unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
                && auth.contains("/eu-west-1/ec2/aws4_request")
                && auth.contains("SignedHeaders=content-type;host;"),
            "{auth}"
        );
    }

    #[tokio::test]
    async fn without_an_override_the_regional_endpoint_is_used() {
        let fake = FakeConnector::new([ok("<R/>")]);
        let t = Transport::with_connector(&fake::sdk(None), SharedHttpConnector::new(fake.clone()));
        t.call("cn-north-1", &Params::new("DescribeImages"))
            .await
            .unwrap();
        assert_eq!(
            fake.sent()[0].uri,
            "https://ec2.cn-north-1.amazonaws.com.cn/"
        );
    }

    #[tokio::test]
    async fn an_error_reply_is_classified_by_its_code_with_its_request_id() {
        let (t, _) = transport([
            error(
                400,
                "InvalidAMIID.NotFound",
                "The image id '[ami-1]' does not exist",
            ),
            error(503, "RequestLimitExceeded", "Request limit exceeded."),
            error(403, "UnauthorizedOperation", "You are not authorized"),
        ]);
        let p = Params::new("DescribeImages");
        let e = t.call("us-east-1", &p).await.unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str(), e.request_id.as_deref()),
            (
                ErrorClass::NotFound,
                "InvalidAMIID.NotFound",
                Some("req-InvalidAMIID.NotFound")
            )
        );
        assert_eq!(e.message, "The image id '[ami-1]' does not exist");
        let e = t.call("us-east-1", &p).await.unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Throttled, "RequestLimitExceeded")
        );
        let e = t.call("us-east-1", &p).await.unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Permanent, "UnauthorizedOperation")
        );
    }

    #[tokio::test]
    async fn an_error_reply_without_a_document_is_named_by_its_status() {
        let (t, _) = transport([
            Answer::Reply(502, "<html>Bad Gateway</html".into()),
            Answer::Reply(404, String::new()),
        ]);
        let p = Params::new("DescribeImages");
        let e = t.call("us-east-1", &p).await.unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Retryable, "HttpStatus502")
        );
        assert_eq!(e.request_id.as_deref(), Some("header-request-id"));
        let e = t.call("us-east-1", &p).await.unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Permanent, "HttpStatus404")
        );
    }

    #[tokio::test]
    async fn a_malformed_success_body_is_a_permanent_response_error() {
        let (t, _) = transport([ok("<DescribeImagesResponse><imagesSet>")]);
        let reply = t
            .call("us-east-1", &Params::new("DescribeImages"))
            .await
            .unwrap();
        let e = reply.document().unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Permanent, "ResponseError")
        );
        assert!(e.message.contains("malformed XML"), "{}", e.message);
    }

    #[tokio::test]
    async fn transport_failures_are_classified_like_the_sdk_path() {
        let (t, _) = transport([Answer::Refused]);
        let e = t
            .call("us-east-1", &Params::new("DescribeImages"))
            .await
            .unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Retryable, "DispatchFailure")
        );

        let fake = FakeConnector::new([]);
        let bad = Transport::with_connector(
            &fake::sdk(Some("localhost:4566")),
            SharedHttpConnector::new(fake.clone()),
        );
        let e = bad
            .call("us-east-1", &Params::new("DescribeImages"))
            .await
            .unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Permanent, "DispatchFailure")
        );
        assert!(fake.sent().is_empty());

        let no_credentials = SdkConfig::builder().endpoint_url("http://ec2.test").build();
        let t = Transport::with_connector(&no_credentials, SharedHttpConnector::new(fake));
        let e = t
            .call("us-east-1", &Params::new("DescribeImages"))
            .await
            .unwrap_err();
        // No credentials at all is the function's configuration, not the ARN's.
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Configuration, "CredentialsError")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reply_that_never_comes_is_a_retryable_timeout() {
        let (t, _) = transport([Answer::Never]);
        let e = t
            .call("us-east-1", &Params::new("DeregisterImage"))
            .await
            .unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Retryable, "Timeout")
        );
    }

    fn page(ids: &[&str], next: Option<&str>) -> Answer {
        let items: String = ids
            .iter()
            .map(|id| format!("<item><snapshotId>{id}</snapshotId></item>"))
            .collect();
        let next = next.map_or(String::new(), |t| format!("<nextToken>{t}</nextToken>"));
        ok(&format!(
            "<DescribeSnapshotsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
             <snapshotSet>{items}</snapshotSet>{next}</DescribeSnapshotsResponse>"
        ))
    }

    fn snapshot_ids(root: roxmltree::Node<'_, '_>) -> Vec<String> {
        query::items(root, "snapshotSet")
            .filter_map(|i| query::text(i, "snapshotId"))
            .collect()
    }

    #[tokio::test]
    async fn pagination_follows_next_token_until_there_is_none() {
        let (t, fake) = transport([
            page(&["snap-1", "snap-2"], Some("t 1")),
            page(&["snap-3"], Some("t2")),
            page(&[], None),
        ]);
        let p = Params::new("DescribeSnapshots").list("Owner", ["self"]);
        let ids = t.paginate("us-east-1", &p, snapshot_ids).await.unwrap();
        assert_eq!(ids, ["snap-1", "snap-2", "snap-3"]);
        let bodies: Vec<_> = fake.sent().into_iter().map(|s| s.body).collect();
        let base = "Action=DescribeSnapshots&Version=2016-11-15&Owner.1=self";
        assert_eq!(
            bodies,
            [
                base.to_string(),
                format!("{base}&NextToken=t%201"),
                format!("{base}&NextToken=t2")
            ]
        );
    }

    #[tokio::test]
    async fn pagination_stops_on_a_repeated_token_and_fails_on_a_failed_page() {
        let (t, fake) = transport([
            page(&["snap-1"], Some("same")),
            page(&["snap-2"], Some("same")),
        ]);
        let p = Params::new("DescribeSnapshots");
        let ids = t.paginate("us-east-1", &p, snapshot_ids).await.unwrap();
        assert_eq!((ids.len(), fake.sent().len()), (2, 2));

        let (t, _) = transport([
            page(&["snap-1"], Some("t2")),
            error(500, "InternalError", "oops"),
        ]);
        let e = t.paginate("us-east-1", &p, snapshot_ids).await.unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Retryable, "InternalError")
        );
    }
}
