//! Test support: an in-memory HTTP connector that records each request and answers with
//! the next scripted reply, and the [`Transport`] / [`Ec2`] over it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_s3::config::http::{HttpRequest, HttpResponse};
use aws_sdk_s3::error::ConnectorError;
use aws_sdk_s3::primitives::SdkBody;
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpConnector,
};
use aws_smithy_runtime_api::http::StatusCode;

use super::ops::Ec2;
use super::transport::Transport;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A reply with this status and body.
    Reply(u16, String),
    /// A connection that fails (refused).
    Refused,
    /// A reply that never comes.
    Never,
}

/// What the connector was sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Sent {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default, Clone)]
pub struct FakeConnector {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    pub sent: Arc<Mutex<Vec<Sent>>>,
}

impl FakeConnector {
    pub fn new(answers: impl IntoIterator<Item = Answer>) -> Self {
        FakeConnector {
            answers: Arc::new(Mutex::new(answers.into_iter().collect())),
            sent: Arc::default(),
        }
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }
}

impl HttpConnector for FakeConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        self.sent.lock().unwrap().push(Sent {
            uri: request.uri().to_string(),
            headers: request
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: String::from_utf8_lossy(request.body().bytes().unwrap_or_default()).into(),
        });
        let answer = self.answers.lock().unwrap().pop_front();
        match answer {
            Some(Answer::Reply(status, body)) => {
                let status = StatusCode::try_from(status).unwrap();
                let mut response = HttpResponse::new(status, SdkBody::from(body));
                response
                    .headers_mut()
                    .insert("x-amzn-requestid", "header-request-id");
                HttpConnectorFuture::ready(Ok(response))
            }
            Some(Answer::Refused) | None => {
                HttpConnectorFuture::ready(Err(ConnectorError::io("connection refused".into())))
            }
            Some(Answer::Never) => HttpConnectorFuture::new(std::future::pending()),
        }
    }
}

/// A configuration with static credentials, the given endpoint override, and a 10 s attempt
/// timeout, as the binary's.
pub fn sdk(endpoint: Option<&str>) -> SdkConfig {
    let mut b = SdkConfig::builder()
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            Some("session-token".into()),
            None,
            "test",
        )))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(10))
                .build(),
        );
    if let Some(url) = endpoint {
        b = b.endpoint_url(url);
    }
    b.build()
}

/// [`Ec2`] over a fake connector answering `answers`, with the endpoint `http://ec2.test`.
pub fn ec2(answers: impl IntoIterator<Item = Answer>) -> (Ec2, FakeConnector) {
    let fake = FakeConnector::new(answers);
    let transport = Transport::with_connector(
        &sdk(Some("http://ec2.test")),
        SharedHttpConnector::new(fake.clone()),
    );
    (Ec2::with_transport(transport), fake)
}

/// A 200 reply.
pub fn ok(body: &str) -> Answer {
    Answer::Reply(200, body.to_string())
}

/// An EC2 error reply.
pub fn error(status: u16, code: &str, message: &str) -> Answer {
    Answer::Reply(
        status,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
             <Message>{message}</Message></Error></Errors><RequestID>req-{code}</RequestID></Response>"
        ),
    )
}
