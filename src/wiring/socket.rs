//! The socket wiring: the same HTTP mocks on loopback TCP, with TLS when configured.
//!
//! Used by `maildrill serve` (real time from the chosen instant) and by contract tests that
//! drive the mocks with reqwest and oauth2's own transport.

use std::net::SocketAddr;
use std::sync::Arc;

use std::future::Future;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::http::{HttpExchangeError, SharedFront, error_chain, exchange, serve_connection};
use crate::client::transport::{HttpTransport, TransportError, TransportFuture};
use crate::mock::HttpMocks;

/// A bound HTTP(S) listener for the mocks.
pub struct HttpListener {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mocks: HttpMocks,
    front: Option<SharedFront>,
}

impl std::fmt::Debug for HttpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpListener")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .field("front", &self.front)
            .finish_non_exhaustive()
    }
}

impl HttpListener {
    /// Binds `addr` (port 0 picks a free port); TLS when `tls` is given.
    pub async fn bind(
        addr: SocketAddr,
        mocks: HttpMocks,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<HttpListener> {
        let listener = TcpListener::bind(addr).await?;
        Ok(HttpListener::new(listener, mocks, tls))
    }

    /// Serves the mocks on an already bound listener.
    pub fn new(
        listener: TcpListener,
        mocks: HttpMocks,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> HttpListener {
        HttpListener {
            listener,
            tls: tls.map(TlsAcceptor::from),
            mocks,
            front: None,
        }
    }

    /// Puts `front` before the mocks: it answers the requests it claims (the control API).
    pub fn with_front(mut self, front: SharedFront) -> HttpListener {
        self.front = Some(front);
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until `shutdown` completes; each connection runs on its own task.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let HttpListener {
            listener,
            tls,
            mocks,
            front,
        } = self;
        accept_until(&listener, shutdown, |stream, peer| {
            let mocks = mocks.clone();
            let front = front.clone().map(|f| (f, peer));
            match tls.clone() {
                Some(acceptor) => {
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            serve_connection(tls, mocks, front).await;
                        }
                    });
                }
                None => {
                    tokio::spawn(serve_connection(stream, mocks, front));
                }
            }
        })
        .await;
    }

    /// Runs the listener on a spawned task; the server stops when the returned handle drops.
    pub fn spawn(self) -> ServerHandle {
        ServerHandle::spawn(|stopped| self.run(stopped))
    }
}

/// Accepts connections until `shutdown` completes, handing each to `serve`.
async fn accept_until(
    listener: &TcpListener,
    shutdown: impl Future<Output = ()>,
    mut serve: impl FnMut(TcpStream, SocketAddr),
) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        // Accept errors (e.g. too many open files) affect one connection, not the server.
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        // Without TCP_NODELAY every small reply waits for the peer's delayed ACK (~40 ms).
        let _ = stream.set_nodelay(true);
        serve(stream, peer);
    }
}

/// Keeps a spawned listener running; dropping it stops accepting.
#[derive(Debug)]
pub struct ServerHandle {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    fn spawn<F: Future<Output = ()> + Send + 'static>(
        run: impl FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> F,
    ) -> ServerHandle {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(Box::pin(async move {
            let _ = stopped.await;
        })));
        ServerHandle { stop, task }
    }

    /// Stops accepting and waits for the accept loop to end.
    pub async fn shutdown(self) {
        drop(self.stop);
        let _ = self.task.await;
    }
}

/// A bound SMTP listener (plain TCP; TLS comes with STARTTLS inside the session).
#[derive(Debug)]
pub struct SmtpListener {
    listener: TcpListener,
    server: crate::mock::smtp::SmtpServer,
}

impl SmtpListener {
    /// Serves the SMTP mock on an already bound listener.
    pub fn new(listener: TcpListener, server: crate::mock::smtp::SmtpServer) -> SmtpListener {
        SmtpListener { listener, server }
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let SmtpListener { listener, server } = self;
        accept_until(&listener, shutdown, |stream, peer| {
            let server = server.clone();
            let stream = QuickAck(stream);
            tokio::spawn(async move { server.serve(stream, &peer.ip().to_string()).await });
        })
        .await;
    }

    /// Runs the listener on a spawned task; it stops when the handle drops.
    pub fn spawn(self) -> ServerHandle {
        ServerHandle::spawn(|stopped| self.run(stopped))
    }
}

/// Plain HTTP to the mocks' listener over loopback TCP, one connection per request as over
/// [`MemoryNet`](super::memory::MemoryNet): every request goes to `addr` whatever its URL's
/// host, as a hosts-file entry would send `login.microsoftonline.com` there.
#[derive(Debug, Clone)]
pub struct TcpNet {
    addr: SocketAddr,
}

impl TcpNet {
    /// Sends every request to `addr`.
    pub fn new(addr: SocketAddr) -> TcpNet {
        TcpNet { addr }
    }

    /// Sends one request on a fresh connection and reads the whole response.
    pub async fn send(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, HttpExchangeError> {
        let stream = match TcpStream::connect(self.addr).await {
            Ok(stream) => stream,
            Err(error) => return Err(HttpExchangeError::Connect(error)),
        };
        // As on the server side: no delayed-ACK wait on small requests.
        let _ = stream.set_nodelay(true);
        exchange(stream, request).await
    }
}

impl HttpTransport for TcpNet {
    fn send(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> TransportFuture<'_, http::Response<Vec<u8>>> {
        Box::pin(async move {
            TcpNet::send(self, request)
                .await
                .map_err(|e| TransportError(error_chain(&e)))
        })
    }
}

/// A served connection that acknowledges what it reads at once (`TCP_QUICKACK` after each
/// read). A client that writes twice without reading in between (lettre writes a message's
/// body, then the final dot, on a socket without `TCP_NODELAY`) has its second write held by
/// Nagle until the first is acknowledged, and a delayed ACK holds that ~40 ms of real time:
/// time a replay on the paused clock would jump over, the bytes sitting unseen in the kernel.
/// Acknowledging at once releases them before the runtime next looks for I/O.
#[derive(Debug)]
struct QuickAck(TcpStream);

impl tokio::io::AsyncRead for QuickAck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let read = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        if read.is_ready() {
            #[cfg(target_os = "linux")]
            let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        }
        read
    }
}

super::write_through!(QuickAck);
