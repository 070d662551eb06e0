//! The client's transports, as small traits: the harness plugs in-memory versions, production
//! uses reqwest over TCP. The client never learns which.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A boxed future of a transport call.
pub type TransportFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, TransportError>> + Send + 'a>>;

/// A request could not be exchanged: the connection failed, was reset, or the reply was cut.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to exchange HTTP: {0}")]
pub struct TransportError(pub String);

/// One HTTP exchange: a request out, the whole response in. Timeouts are the caller's, on its
/// clock, never the transport's.
pub trait HttpTransport: Send + Sync + fmt::Debug {
    /// Sends `request` and reads the whole response.
    fn send(&self, request: http::Request<Vec<u8>>)
    -> TransportFuture<'_, http::Response<Vec<u8>>>;
}

/// Production HTTP: reqwest over TCP with rustls, no redirects (as oauth2 advises) and no
/// reqwest timeout (the client times out on its own clock).
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl ReqwestTransport {
    /// Wraps a configured reqwest client.
    pub fn new(client: reqwest::Client) -> ReqwestTransport {
        ReqwestTransport { client }
    }
}

impl HttpTransport for ReqwestTransport {
    fn send(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> TransportFuture<'_, http::Response<Vec<u8>>> {
        Box::pin(async move {
            let request =
                reqwest::Request::try_from(request).map_err(|e| TransportError(e.to_string()))?;
            let response = self
                .client
                .execute(request)
                .await
                .map_err(|e| TransportError(e.to_string()))?;
            let mut builder = http::Response::builder().status(response.status());
            if let Some(headers) = builder.headers_mut() {
                headers.extend(
                    response
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone())),
                );
            }
            let body = response
                .bytes()
                .await
                .map_err(|e| TransportError(e.to_string()))?;
            builder
                .body(body.to_vec())
                .map_err(|e| TransportError(e.to_string()))
        })
    }
}
