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
