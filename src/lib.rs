//! maildrill: a fault-injection harness for mail clients that depend on Microsoft Entra ID
//! OAuth2 credentials.
//!
//! It simulates the Microsoft side of an expired-client-secret incident (a token endpoint, Graph
//! and Office 365 SMTP submission over one tenant state) on a clock the harness owns, so an
//! 18-hour outage replays in milliseconds and the same seed always gives the same bytes.
//!
//! # Map of the crate
//!
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
//! - [`scenario`]: scenario files (the tenant section so far).
//! - [`serve`]: `maildrill serve`.
//! - [`client`]: the mail client under test (backoff and failure classification so far).
//!
//! # Example: an expired secret, replayed in virtual time
//!
//! ```
//! use std::time::Duration;
//!
//! use chrono::TimeDelta;
//! use maildrill::journal::Journal;
//! use maildrill::mock::{HttpMocks, HttpMocksConfig};
//! use maildrill::tenant::{demo, Directory, DirectoryConfig};
//! use maildrill::time::{replay_runtime, ClockExt, VirtualClock};
//! use maildrill::wiring::memory::MemoryNet;
//!
//! replay_runtime().unwrap().block_on(async {
//!     let start = "2025-02-14T11:00:00Z".parse().unwrap();
//!     let clock = VirtualClock::starting_at(start).shared();
//!     // The demo app's secret expires 30 minutes after the clock starts.
//!     let tenant = demo::tenant(start - TimeDelta::days(365), "s3cret", TimeDelta::days(365) + TimeDelta::minutes(30));
//!     let directory = Directory::new(&DirectoryConfig { seed: Default::default(), tenants: vec![tenant] });
//!     let mocks = HttpMocks::new(directory.shared(), clock.clone(), Journal::new(), HttpMocksConfig::default());
//!     let net = MemoryNet::new(mocks.clone());
//!     let form = format!(
//!         "grant_type=client_credentials&client_id={}&client_secret=s3cret&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default",
//!         demo::APP_ID
//!     );
//!     let request = || {
//!         http::Request::post(format!("https://login.microsoftonline.com/{}/oauth2/v2.0/token", demo::TENANT_ID))
//!             .header("Content-Type", "application/x-www-form-urlencoded")
//!             .body(form.clone().into_bytes())
//!             .unwrap()
//!     };
//!     assert_eq!(net.send(request()).await.unwrap().status(), 200);
//!     // Eighteen virtual hours pass in no time at all.
//!     clock.sleep(Duration::from_secs(18 * 3600)).await;
//!     let expired = net.send(request()).await.unwrap();
//!     assert_eq!(expired.status(), 401);
//!     assert!(String::from_utf8_lossy(expired.body()).contains("AADSTS7000222"));
//!     assert_eq!(mocks.journal().len(), 2);
//! });
//! ```
#![warn(missing_docs)]

pub mod chaos;
pub mod check;
pub mod client;
pub mod fault;
pub mod journal;
pub mod mock;
pub mod parallel;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod seed;
pub mod serve;
pub mod subject;
pub mod tenant;
pub mod time;
pub mod tls;
pub mod wiring;
