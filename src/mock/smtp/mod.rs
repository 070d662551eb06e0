//! The mock Office 365 SMTP submission server (`smtp.office365.com:587`).
//!
//! - [`proto`]: the command parser (pure).
//! - [`session`]: the session state machine (pure; asks a [`session::Backend`]).
//! - [`replies`]: the reply texts from `fixtures/wire/smtp.toml`.
//! - [`server`]: the tokio I/O around a session, over any stream: STARTTLS with rustls,
//!   AUTH XOAUTH2 checked against the tenant on the clock, the journal.
//! - [`expect`]: received messages and wiremock-style expectations verified on drop.

pub mod expect;
pub mod proto;
pub mod replies;
pub mod server;
pub mod session;

pub use expect::{Expectation, MessageMatcher, ReceivedMessage, Times, VerificationReport};
pub use server::{ExpectationGuard, SmtpConfig, SmtpServer};
