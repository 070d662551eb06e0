//! The in-memory wiring: clients reach the HTTP mocks through `tokio::io::duplex` streams on
//! the same runtime.
//!
//! On the replay runtime (paused, current-thread, no I/O driver) nothing here can wait on
//! anything but other tasks and the clock, so tokio advances time only when every task waits
//! on a timer: the replay is deterministic by construction.

use std::sync::{Arc, Mutex};

use tokio::io::DuplexStream;

use super::http::{Connection, HttpExchangeError, error_chain, open, send_on, serve_connection};
use crate::mock::HttpMocks;

/// Bytes a duplex stream buffers in each direction.
const DUPLEX_BUFFER: usize = 64 * 1024;

/// HTTP mocks reachable through in-memory connections, kept alive between requests as an
/// HTTP client's pool keeps them (a replay's minute-by-minute sync would otherwise open tens
/// of thousands).
#[derive(Debug, Clone)]
pub struct MemoryNet {
    mocks: HttpMocks,
    /// Idle connections, the most recently used last.
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl MemoryNet {
    /// Wires `mocks` for in-memory clients.
    pub fn new(mocks: HttpMocks) -> MemoryNet {
        MemoryNet {
            mocks,
            idle: Arc::default(),
        }
    }

    /// The mocks behind this wiring.
    pub fn mocks(&self) -> &HttpMocks {
        &self.mocks
    }

    /// Opens a connection: the server half is served by a task on the current runtime.
    pub fn connect(&self) -> DuplexStream {
        let (client, server) = tokio::io::duplex(DUPLEX_BUFFER);
        tokio::spawn(serve_connection(server, self.mocks.clone(), None));
        client
    }

    /// Sends one request on an idle connection, or a fresh one, and reads the whole
    /// response. A connection goes back to the pool only after a complete exchange: one that
    /// was reset, cut short or abandoned mid-request is dropped, as a client's pool drops it.
    /// Its signature fits oauth2's `AsyncHttpClient` and any client's HTTP transport trait.
    pub async fn send(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, HttpExchangeError> {
        let idle = self.pool().pop().filter(|c| !c.is_closed());
        let mut connection = match idle {
            Some(connection) => connection,
            None => open(self.connect()).await?,
        };
        let response = send_on(&mut connection, request).await?;
        self.pool().push(connection);
        Ok(response)
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The SMTP mock reachable through in-memory connections.
#[derive(Debug, Clone)]
pub struct MemorySmtp {
    server: crate::mock::smtp::SmtpServer,
}

impl MemorySmtp {
    /// Wires `server` for in-memory clients.
    pub fn new(server: crate::mock::smtp::SmtpServer) -> MemorySmtp {
        MemorySmtp { server }
    }

    /// Opens a connection; the server greets on it at once.
    pub fn connect(&self) -> DuplexStream {
        let (client, server_side) = tokio::io::duplex(DUPLEX_BUFFER);
        let server = self.server.clone();
        tokio::spawn(async move { server.serve(server_side, "127.0.0.1").await });
        client
    }
}

impl crate::client::transport::HttpTransport for MemoryNet {
    fn send(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> crate::client::transport::TransportFuture<'_, http::Response<Vec<u8>>> {
        Box::pin(async move {
            MemoryNet::send(self, request)
                .await
                .map_err(|e| crate::client::transport::TransportError(error_chain(&e)))
        })
    }
}

/// A duplex stream as lettre's custom transport: it needs to know a peer address.
#[derive(Debug)]
pub struct MemoryStream(pub DuplexStream);

impl tokio::io::AsyncRead for MemoryStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

super::write_through!(MemoryStream);

impl lettre::transport::smtp::client::AsyncTokioStream for MemoryStream {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        // What the client would see for smtp.office365.com:587; nothing routes by it.
        Ok(std::net::SocketAddr::from(([127, 0, 0, 1], 587)))
    }
}

impl crate::client::send::SmtpConnector for MemorySmtp {
    fn connect(
        &self,
    ) -> crate::client::transport::TransportFuture<
        '_,
        Box<dyn lettre::transport::smtp::client::AsyncTokioStream>,
    > {
        let stream = MemorySmtp::connect(self);
        Box::pin(async move {
            Ok(Box::new(MemoryStream(stream))
                as Box<
                    dyn lettre::transport::smtp::client::AsyncTokioStream,
                >)
        })
    }
}
