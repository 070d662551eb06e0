//! Serving the HTTP mocks over any byte stream with hyper, and carrying out each [`Reply`](crate::mock::Reply):
//! waiting its delay on the clock, then responding, cutting the body short, resetting, or
//! hanging.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::mock::{Action, HttpMocks, HttpRequest, HttpResponse};
use crate::time::ClockExt as _;

/// Why a connection ended without a clean response; hyper closes the connection on it.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A `reset_peer` fault.
    #[error("connection reset by fault")]
    Reset,
    /// The request body could not be read.
    #[error("failed to read the request body")]
    Body(#[from] hyper::Error),
}

/// A service in front of the mocks on a listener (the control API): it answers the requests
/// it claims, at once and outside the journal; the mocks answer the rest.
pub trait Front: Send + Sync + std::fmt::Debug {
    /// Whether a request for `path` is this service's.
    fn claims(&self, path: &str) -> bool;

    /// Answers a request it claims, from `peer`.
    fn answer(&self, peer: SocketAddr, request: HttpRequest) -> HttpResponse;
}

/// A [`Front`] shared by a listener's connections.
pub type SharedFront = Arc<dyn Front>;

/// Serves HTTP/1.1 on one connection until the peer closes it; `front` (with the peer's
/// address) sees each request first.
pub async fn serve_connection<IO>(
    io: IO,
    mocks: HttpMocks,
    front: Option<(SharedFront, SocketAddr)>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mocks = mocks.clone();
        let front = front.clone();
        async move { answer(&mocks, front, request).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Our replies carry a Date from the virtual clock; hyper's would read the wall clock.
    builder.auto_date_header(false);
    // A connection error (reset fault, client gone) only ends this connection.
    let _ = builder.serve_connection(TokioIo::new(io), service).await;
}

async fn answer(
    mocks: &HttpMocks,
    front: Option<(SharedFront, SocketAddr)>,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<ReplyBody>, ServeError> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let request = hyper::Request::from_parts(parts, body);
    if let Some((front, peer)) = front
        && front.claims(request.uri().path())
    {
        return Ok(front.answer(peer, request).map(ReplyBody::full));
    }
    let reply = mocks.handle(request);
    if !reply.delay.is_zero() {
        mocks.clock().park(reply.delay).await;
    }
    let response = match reply.action {
        Action::Respond(response) => response.map(ReplyBody::full),
        Action::Truncate(response, keep) => response.map(|body| ReplyBody::truncated(body, keep)),
        Action::Reset => return Err(ServeError::Reset),
        Action::Hang => {
            mocks.clock().park_forever().await;
            unreachable!("park_forever never completes")
        }
    };
    drop(reply.in_flight);
    Ok(response)
}

/// A response body that may stop short with an error, which makes hyper close the connection
/// before the promised `Content-Length` arrives (toxiproxy's `limit_data`).
pub struct ReplyBody {
    data: Option<Bytes>,
    cut: bool,
    size: u64,
}

impl ReplyBody {
    fn full(body: Bytes) -> ReplyBody {
        ReplyBody {
            size: body.len() as u64,
            data: Some(body),
            cut: false,
        }
    }

    fn truncated(body: Bytes, keep: usize) -> ReplyBody {
        let size = body.len() as u64;
        let kept = body.slice(..keep.min(body.len()));
        ReplyBody {
            data: Some(kept),
            cut: true,
            size,
        }
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(data) = self.data.take()
            && !data.is_empty()
        {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if self.cut {
            self.cut = false;
            let error = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "limit_data");
            return Poll::Ready(Some(Err(error)));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.as_ref().is_none_or(Bytes::is_empty) && !self.cut
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.size)
    }
}

/// An HTTP exchange failed, as on any connection: reset, cut short, or malformed.
#[derive(Debug, thiserror::Error)]
pub enum HttpExchangeError {
    /// hyper reported a protocol or connection error.
    #[error("failed to exchange HTTP over the connection")]
    Hyper(#[from] hyper::Error),
    /// The request could not be rebuilt in origin form.
    #[error("failed to build the request")]
    Uri(#[from] http::uri::InvalidUriParts),
    /// The connection could not be opened (socket wiring only).
    #[error("failed to connect")]
    Connect(#[source] std::io::Error),
}

/// The client half of one HTTP/1.1 connection; its connection task runs on the current
/// runtime until every handle is dropped.
pub type Connection = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Opens the client half of a connection over `io`.
pub async fn open<IO>(io: IO) -> Result<Connection, HttpExchangeError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(io)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends one request on an open connection and reads the whole response.
pub async fn send_on(
    connection: &mut Connection,
    request: http::Request<Vec<u8>>,
) -> Result<http::Response<Vec<u8>>, HttpExchangeError> {
    let request = origin_form(request)?;
    connection.ready().await?;
    let response = connection.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(http::Response::from_parts(parts, body.to_vec()))
}

/// Sends one request on `io`, a fresh connection, and reads the whole response: the client
/// half of both wirings, so a request crosses a duplex stream and a socket alike.
pub async fn exchange<IO>(
    io: IO,
    request: http::Request<Vec<u8>>,
) -> Result<http::Response<Vec<u8>>, HttpExchangeError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    send_on(&mut open(io).await?, request).await
}

/// HTTP/1.1 requests carry the path in the request line and the authority in `Host`.
fn origin_form(
    request: http::Request<Vec<u8>>,
) -> Result<http::Request<Full<Bytes>>, http::uri::InvalidUriParts> {
    let (mut parts, body) = request.into_parts();
    if let Some(authority) = parts.uri.authority().cloned()
        && !parts.headers.contains_key(http::header::HOST)
    {
        let host = http::HeaderValue::from_str(authority.as_str())
            .expect("a parsed authority is a valid header value");
        parts.headers.insert(http::header::HOST, host);
    }
    // The parsed path and query carry over as they are; only scheme and authority go.
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.scheme = None;
    uri.authority = None;
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    parts.uri = http::Uri::from_parts(uri)?;
    Ok(http::Request::from_parts(
        parts,
        Full::new(Bytes::from(body)),
    ))
}

/// An error and its sources on one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
