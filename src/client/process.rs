//! One client process in one call: the worker, the monitors, the inbound sync and the alerter,
//! wired to one token provider, from a configuration and the parts that outlive the process.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::Notify;

use super::EventLog;
use super::alert::Alerter;
use super::monitor::{ExpiryConfig, ExpiryMonitor, LatencyConfig, LatencyMonitor};
use super::outbox::{NewMessage, Outbox, OutboxError};
use super::send::{Sender, SessionSlot, Transport};
use super::sync::{InboxSync, SyncConfig, SyncEvent, SyncState};
use super::token::{TokenConfig, TokenProvider};
use super::transport::HttpTransport;
use super::worker::{Worker, WorkerConfig, WorkerLog};
use crate::seed::SeedRng;
use crate::time::SharedClock;

/// What a client process is configured with.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// How the outbox is delivered: retries, backoff, the circuit.
    pub worker: WorkerConfig,
    /// The token endpoint, the app and where its secret is read.
    pub token: TokenConfig,
    /// SMTP or Graph.
    pub transport: Transport,
    /// The mailbox that sends (and is synced).
    pub mailbox: String,
    /// Give up on one delivery attempt after this long.
    pub send_timeout: Duration,
    /// The PagerDuty Events API v2 endpoint.
    pub alerts_url: String,
    /// Its routing key.
    pub routing_key: String,
    /// The credential expiry monitor, if any.
    pub expiry: Option<ExpiryConfig>,
    /// The delivery latency monitor, if any.
    pub latency: Option<LatencyConfig>,
    /// The inbound delta sync, if any.
    pub sync: Option<SyncConfig>,
}

/// What a process is given and what outlives it: the clock and transports, the outbox database,
/// the sync's persisted state, the wake-ups of an enqueue, jitter, and where events go.
#[derive(Debug)]
pub struct Parts {
    /// The clock.
    pub clock: SharedClock,
    /// HTTP (token endpoint, Graph, alert sink).
    pub http: Arc<dyn HttpTransport>,
    /// The durable queue; it also keeps a refused credential's hold across restarts.
    pub outbox: Arc<Outbox>,
    /// The sync's delta link and synced ids.
    pub sync_state: Arc<Mutex<SyncState>>,
    /// Woken on each enqueue: the worker.
    pub wake: Arc<Notify>,
    /// Woken on each enqueue: the latency monitor.
    pub monitor_wake: Arc<Notify>,
    /// The worker's jitter.
    pub jitter: SeedRng,
    /// The sync's jitter.
    pub sync_jitter: SeedRng,
    /// The token provider's hold jitter (`None`: holds exactly).
    pub token_jitter: Option<SeedRng>,
    /// Client assertion ids (`jti`), when the client authenticates with a certificate.
    pub assertion_ids: Option<SeedRng>,
    /// Where the worker notes what it did.
    pub worker_log: WorkerLog,
    /// Where the sync notes what it did.
    pub sync_log: EventLog<SyncEvent>,
}

/// One part of a running process.
pub(super) type Part<'a> = Pin<Box<dyn Future<Output = Result<(), OutboxError>> + Send + 'a>>;

/// The parts every process runs beside its senders: the monitors it has and the alerter.
pub(super) fn monitor_parts<'a>(
    expiry: Option<&'a ExpiryMonitor>,
    latency: Option<&'a LatencyMonitor>,
    alerter: &'a Alerter,
    until: DateTime<Utc>,
) -> FuturesUnordered<Part<'a>> {
    let parts = FuturesUnordered::<Part<'a>>::new();
    if let Some(expiry) = expiry {
        parts.push(Box::pin(async move {
            expiry.run(until).await;
            Ok(())
        }));
    }
    if let Some(latency) = latency {
        parts.push(Box::pin(async move {
            latency.run(until).await;
            Ok(())
        }));
    }
    parts.push(Box::pin(async move {
        alerter.run(until).await;
        Ok(())
    }));
    parts
}

/// A client process.
#[derive(Debug)]
pub struct Client {
    /// Delivers the outbox.
    pub worker: Worker,
    /// Alerts ahead of credential expiry.
    pub expiry: Option<ExpiryMonitor>,
    /// Alerts when delivery stalls.
    pub latency: Option<LatencyMonitor>,
    /// Syncs the inbox.
    pub sync: Option<InboxSync>,
    /// Sends the alerts.
    pub alerter: Arc<Alerter>,
    monitor_wake: Arc<Notify>,
}

impl Client {
    /// Wires one process: one token provider (holding a refused credential in the outbox
    /// database) shared by the worker, the monitors and the sync.
    #[expect(
        clippy::too_many_lines,
        reason = "one struct literal per part, in the order they share the token provider"
    )]
    pub fn new(config: ClientConfig, parts: Parts) -> Client {
        let Parts {
            clock,
            http,
            outbox,
            sync_state,
            wake,
            monitor_wake,
            jitter,
            sync_jitter,
            token_jitter,
            assertion_ids,
            worker_log,
            sync_log,
        } = parts;
        let secret = config.token.secret.clone();
        let mut tokens = TokenProvider::new(config.token, clock.clone(), http.clone())
            .with_hold_store(outbox.clone());
        if let Some(rng) = token_jitter {
            tokens = tokens.with_jitter(rng);
        }
        if let Some(rng) = assertion_ids {
            tokens = tokens.with_assertion_ids(rng);
        }
        let tokens = Arc::new(tokens);
        let alerter = Arc::new(Alerter::new(
            http.clone(),
            config.alerts_url,
            config.routing_key,
            clock.clone(),
        ));
        let worker = Worker {
            config: config.worker,
            outbox: outbox.clone(),
            sender: Sender {
                tokens: tokens.clone(),
                transport: config.transport,
                clock: clock.clone(),
                mailbox: config.mailbox,
                timeout: config.send_timeout,
                session: SessionSlot::default(),
            },
            secret,
            clock: clock.clone(),
            wake,
            log: worker_log,
            rng: Mutex::new(jitter),
            metrics: None,
        };
        let expiry = config.expiry.map(|config| ExpiryMonitor {
            config,
            tokens: tokens.clone(),
            http: http.clone(),
            alerter: alerter.clone(),
            clock: clock.clone(),
            metrics: None,
        });
        let latency = config.latency.map(|config| LatencyMonitor {
            config,
            outbox,
            alerter: alerter.clone(),
            clock: clock.clone(),
            wake: Some(monitor_wake.clone()),
        });
        let sync = config.sync.map(|config| InboxSync {
            config,
            tokens,
            http,
            clock,
            log: sync_log,
            rng: sync_jitter,
            state: sync_state,
        });
        Client {
            worker,
            expiry,
            latency,
            sync,
            alerter,
            monitor_wake,
        }
    }

    /// Runs every part until `until` on the client's calendar. The parts run side by side in
    /// one task, and a wake-up polls only the part it woke (a replay wakes the sync every
    /// virtual minute for weeks; the others need not look each time).
    pub async fn run(&self, until: DateTime<Utc>) -> Result<(), OutboxError> {
        let mut parts = FuturesUnordered::<Part<'_>>::new();
        parts.push(Box::pin(self.worker.run(until)));
        if let Some(expiry) = &self.expiry {
            parts.push(Box::pin(async move {
                expiry.run(until).await;
                Ok(())
            }));
        }
        if let Some(latency) = &self.latency {
            parts.push(Box::pin(async move {
                latency.run(until).await;
                Ok(())
            }));
        }
        if let Some(sync) = &self.sync {
            parts.push(Box::pin(async move {
                sync.run(until).await;
                Ok(())
            }));
        }
        let alerter = &self.alerter;
        parts.push(Box::pin(async move {
            alerter.run(until).await;
            Ok(())
        }));
        let mut worked = Ok(());
        while let Some(done) = parts.next().await {
            worked = worked.and(done);
        }
        worked
    }

    /// Queues a message for delivery and wakes the worker and the latency monitor.
    pub fn enqueue(
        &self,
        message: &NewMessage,
        now: DateTime<Utc>,
        ids: &mut SeedRng,
    ) -> Result<super::outbox::Message, OutboxError> {
        let queued = self.worker.outbox.enqueue(message, now, ids)?;
        self.worker.wake.notify_one();
        self.monitor_wake.notify_one();
        Ok(queued)
    }
}
