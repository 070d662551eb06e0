//! maildrill: a fault-injection harness for mail clients that depend on Microsoft Entra ID
//! OAuth2 credentials.
//!
//! It simulates the Microsoft side of an expired-client-secret incident (a token endpoint, Graph
//! and Office 365 SMTP submission over one tenant state) on a clock the harness owns, so an
//! 18-hour outage replays in milliseconds and the same seed always gives the same bytes.
//!
//! # Map of the crate
//!
//! - [`Sim`] (module [`sim`]): the front door. One builder call stands up the tenant and the
//!   mocks in memory or on loopback sockets, and hands back the endpoints, the CA, faults
//!   under guards, HTTP expectations verified on drop, the journal and the mail.
//! - [`time`]: the clock (virtual on the replay runtime, harness-driven over sockets, real in
//!   production) and [`time::replay_runtime`].
//! - [`seed`]: the only source of randomness.
//! - [`tenant`]: apps, secrets, tokens and mailboxes shared by every mock.
//! - [`mock`]: the Entra token endpoint, Graph and SMTP as plain services, with the wire
//!   catalogue of `fixtures/wire/`.
//! - [`fault`]: what can go wrong, and when.
//! - [`journal`]: what every mock served, on the virtual clock, redacted.
//! - [`wiring`]: in-memory duplex streams (replay) and loopback sockets (`serve`).
//! - [`tls`]: the generated CA and certificates.
//! - [`subject`]: the seam a client under test sits behind ([`Subject`], [`Process`]).
//! - [`runner`]: a scenario replayed against a subject, judged into a report.
//! - [`trace`]: what a run showed over time; [`report`]: JUnit and the HTML site drawn from it;
//!   [`coverage`]: which fault kinds reached which protocol stages.
//! - [`scenario`]: scenario files; [`chaos`]: generated ones.
//! - [`serve`]: `maildrill serve`.
//! - [`client`]: the bundled mail client, one subject among many.
//!
//! The types an embedding test needs most are re-exported here, so it writes
//! `maildrill::{Sim, Fault, FaultKind, Target, Subject, ...}`.
//!
//! # Example: an expired secret, replayed in virtual time
//!
//! ```
//! use std::time::Duration;
//!
//! use chrono::TimeDelta;
//! use maildrill::tenant::demo;
//! use maildrill::time::{replay_runtime, ClockExt};
//! use maildrill::Sim;
//!
//! replay_runtime().unwrap().block_on(async {
//!     let start = "2025-02-14T11:00:00Z".parse().unwrap();
//!     // The demo app's secret expires 30 minutes after the clock starts.
//!     let tenant = demo::tenant(start - TimeDelta::days(365), "s3cret", TimeDelta::days(365) + TimeDelta::minutes(30));
//!     let sim = Sim::builder().start(start).tenant(tenant).build_in_memory().unwrap();
//!     let net = sim.net().expect("built in memory");
//!     let request = || sim.credentials().token_request(&sim.endpoints().token_url);
//!     assert_eq!(net.send(request()).await.unwrap().status(), 200);
//!     // Eighteen virtual hours pass in no time at all.
//!     sim.clock().sleep(Duration::from_secs(18 * 3600)).await;
//!     let expired = net.send(request()).await.unwrap();
//!     assert_eq!(expired.status(), 401);
//!     assert!(String::from_utf8_lossy(expired.body()).contains("AADSTS7000222"));
//!     assert_eq!(sim.journal().len(), 2);
//! });
//! ```
#![warn(missing_docs)]

pub mod chaos;
pub mod check;
pub mod client;
pub mod control;
pub mod coverage;
pub mod drill;
pub mod envfile;
pub mod fault;
pub mod journal;
pub mod mock;
pub mod parallel;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod seed;
pub mod serve;
pub mod sim;
pub mod subject;
pub mod tenant;
pub mod time;
pub mod tls;
pub mod trace;
pub mod wiring;

pub use fault::{Activation, Fault, FaultKind, Target};
pub use journal::{Journal, JournalEntry, MockName};
pub use mock::smtp::{Expectation as MailExpectation, MessageMatcher, ReceivedMessage, Times};
pub use runner::{ScenarioReport, Wiring, run_subject};
pub use seed::Seed;
pub use sim::{
    Credentials, FaultGuard, HttpExpectation, HttpExpectationGuard, RequestMatcher, Sim,
    SimBuilder, SimError, SocketOptions,
};
pub use subject::{Capability, Endpoints, MemoryTransports, Message, Process, Start, Subject};
pub use tenant::{Directory, TenantSpec};
pub use time::{Clock, ClockExt, HarnessClock, SharedClock, VirtualClock, replay_runtime};
