//! The two wirings that carry bytes between clients and the mocks.
//!
//! - [`memory`]: duplex streams on the replay runtime (paused, current-thread, no I/O driver).
//!   Scenario replay and chaos use it; deterministic by construction.
//! - [`socket`]: loopback TCP, optionally with TLS, for `maildrill serve` and contract tests.
//!
//! Both serve HTTP through [`http::serve_connection`], so a mock cannot behave differently
//! depending on how it is reached.

pub mod http;
pub mod memory;
pub mod socket;

/// `AsyncWrite` for a newtype over a stream (`.0`), every call passed through: the newtypes
/// here change how a stream reads or what it says of its peer, never how it writes.
macro_rules! write_through {
    ($type:ty) => {
        impl tokio::io::AsyncWrite for $type {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.0).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
            }
        }
    };
}
pub(crate) use write_through;
