//! The mail client under test (`maildrill::client`): what the 2025 post-mortem asked for, built
//! so the harness can test it and teams can use or compare it.
//!
//! This module never imports the mocks, the tenant or the runner: it knows its clock and its
//! transports, nothing else. Landed so far:
//!
//! - [`backoff`]: exponential backoff with seeded jitter, a cap, and `Retry-After` honoured.
//! - [`classify`]: what a failure means: a credential problem (open the circuit), a transient
//!   one (back off and retry), an authentication failure of a cached token (refresh once), or a
//!   permanent refusal of one message.
//! - [`transport`]: the HTTP transport trait (reqwest in production, duplex streams in replays).
//! - [`secret`]: where the client secret comes from, re-read so a rotation needs no redeploy.
//! - [`certificate`]: a client certificate (PEM files, re-read) signing client assertions.
//! - [`token`]: client credentials with a cache, refresh ahead of `exp` and single flight.
//! - [`outbox`]: the durable queue (SQLite, WAL) that survives the restart of 2025.
//! - [`send`]: one delivery attempt over SMTP (STARTTLS, XOAUTH2) or Graph `sendMail`, with one
//!   token refresh when the token is refused, and its outcome for the outbox.
//! - [`monitor`]: credential expiry alerts at `endDateTime - lead` and delivery latency alerts.
//! - [`metrics`]: Prometheus text: outbox depth and age, latency, token failures, expiry.
//! - [`alert`]: PagerDuty Events API v2 to a webhook, queued while the sink is down.
//! - [`sync`]: inbound Graph delta sync with resync after `410` and dedupe.
//! - [`process`]: one client process in one call (`Client::new`): worker, monitors, sync and
//!   alerter sharing one token provider.
//! - [`connection`]: delegated connections kept in the outbox database (user, tenant,
//!   refresh token, connected or needing the user).
//! - [`delegated`]: a multi-tenant app's users: the authorization-code flow, each user's
//!   tokens with one refresh in flight, one hold of the app for its own failures, a user's
//!   own failures marking only that connection.
//! - [`fleet`]: one delegated process: a worker and a sync per connected user, the monitors.
//! - [`worker`]: the sending loop: backoff, the circuit with one probe per interval, a rotated
//!   secret probed at once; or the fixed retries of the incident's client.

pub mod alert;
pub mod backoff;
pub mod certificate;
pub mod classify;
pub mod connection;
pub mod delegated;
pub mod fleet;
pub mod metrics;
pub mod monitor;
pub mod outbox;
pub mod process;
pub mod secret;
pub mod send;
pub mod sync;
pub mod token;
pub mod transport;
pub mod worker;

/// What a part of the client did, with the client's calendar time, for the run's event stream.
pub type EventLog<E> = std::sync::Arc<std::sync::Mutex<Vec<(chrono::DateTime<chrono::Utc>, E)>>>;
