//! The connection to moto: a pooled HTTP/1.1 client (hyper-util legacy) that sends a request
//! to the upstream's scheme and authority and reads the whole answer.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Headers that describe one connection, not the message: never forwarded (RFC 9110 §7.6.1).
/// `content-length` is recomputed from the body actually sent.
pub(crate) const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A whole upstream answer.
#[derive(Clone)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// moto's address and a client for it.
pub(crate) struct Upstream {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Upstream {
    /// Accepts `http://HOST:PORT` (a trailing `/` or path is ignored: EC2 lives at `/`).
    pub(crate) fn new(url: &str) -> Result<Upstream, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("invalid upstream URL {url:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("upstream URL {url:?} must start with http://"));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("upstream URL {url:?} has no host"))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            // moto's server closes idle connections on its own schedule; a short idle time
            // keeps the pool from handing out sockets it has already closed.
            .pool_idle_timeout(Duration::from_secs(2))
            .build(connector);
        Ok(Upstream {
            base: format!("http://{authority}"),
            client,
        })
    }

    /// `http://HOST:PORT` of the upstream.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Sends `method path_and_query` with these headers (hop-by-hop ones and
    /// `content-length` dropped) and body, and reads the whole answer.
    pub(crate) async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Answer, String> {
        let uri = format!("{}{}", self.base, path_and_query);
        let mut req = Request::builder()
            .method(method)
            .uri(&uri)
            .body(Full::new(body))
            .map_err(|e| format!("cannot build the request to {uri}: {e}"))?;
        for (name, value) in headers {
            let n = name.as_str();
            if !HOP_BY_HOP.contains(&n) && n != "content-length" {
                req.headers_mut().append(name.clone(), value.clone());
            }
        }
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("moto at {} did not answer: {e}", self.base))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("moto at {} broke off its answer: {e}", self.base))?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}
