//! One client process in delegated mode: every connected user's worker (sending that user's
//! mail only, so one user's held mail never blocks another's) and inbound sync, the app's
//! monitors and the alerter, all in one task, over one [`AppTokens`] (the app's shared hold).
//! Users connected while it runs join at once; a restarted process resumes every kept
//! connection from the outbox database.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::Notify;

use super::EventLog;
use super::alert::Alerter;
use super::delegated::{AppTokens, ConnectError, DelegatedConfig, UserTokens};
use super::monitor::{ExpiryConfig, ExpiryMonitor, LatencyConfig, LatencyMonitor};
use super::outbox::{NewMessage, Outbox, OutboxError};
use super::process::{Part, monitor_parts};
use super::send::{Sender, SessionSlot, Transport};
use super::sync::{InboxSync, SyncConfig, SyncEvent, SyncState};
use super::token::{TokenConfig, TokenProvider};
use super::transport::HttpTransport;
use super::worker::{Worker, WorkerConfig, WorkerLog};
use crate::seed::SeedRng;
use crate::time::SharedClock;

/// What a delegated process is configured with.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The app's delegated flow, its hold and how failures are blamed.
    pub tokens: DelegatedConfig,
    /// How each user's mail is delivered: retries, backoff, the circuit.
    pub worker: WorkerConfig,
    /// SMTP (as each user) or Graph `/me/sendMail`.
    pub transport: Transport,
    /// Give up on one delivery attempt after this long.
    pub send_timeout: Duration,
    /// The PagerDuty Events API v2 endpoint (pages and the product's notifications).
    pub alerts_url: String,
    /// Its routing key.
    pub routing_key: String,
    /// The app's credential expiry monitor (with the app's own client-credentials token to
    /// read its registration), if any.
    pub expiry: Option<(ExpiryConfig, TokenConfig)>,
    /// The delivery latency monitor, if any.
    pub latency: Option<LatencyConfig>,
    /// Each user's inbound sync (the mailbox is the user's), if any.
    pub sync: Option<SyncConfig>,
}

/// What a delegated process is given and what outlives it.
#[derive(Debug)]
pub struct FleetParts {
    /// The clock.
    pub clock: SharedClock,
    /// HTTP (token endpoint, Graph, alert sink).
    pub http: Arc<dyn HttpTransport>,
    /// The outbox database, which keeps the connections too.
    pub outbox: Arc<Outbox>,
    /// Each user's sync state (delta link, synced ids), kept by the caller across restarts.
    pub sync_states: Arc<Mutex<BTreeMap<String, Arc<Mutex<SyncState>>>>>,
    /// Jitter of the workers, the syncs and the app's hold (`None`: holds exactly), and
    /// the connect flow's PKCE verifiers and states.
    pub rng: SeedRng,
    /// Whether the app's hold is jittered.
    pub hold_jitter: bool,
    /// Where the workers note what they did.
    pub worker_log: WorkerLog,
    /// Where the syncs note what they did.
    pub sync_log: EventLog<SyncEvent>,
}

/// One user's lane: tokens, worker, sync.
#[derive(Debug)]
struct Lane {
    tokens: Arc<UserTokens>,
    worker: Worker,
    sync: Option<InboxSync>,
}

/// A delegated client process.
#[derive(Debug)]
pub struct Fleet {
    config: FleetConfig,
    app: Arc<AppTokens>,
    clock: SharedClock,
    http: Arc<dyn HttpTransport>,
    outbox: Arc<Outbox>,
    sync_states: Arc<Mutex<BTreeMap<String, Arc<Mutex<SyncState>>>>>,
    rng: Mutex<SeedRng>,
    worker_log: WorkerLog,
    sync_log: EventLog<SyncEvent>,
    lanes: Mutex<BTreeMap<String, Arc<Lane>>>,
    /// Lanes not yet running, and the wake-up of the running process when one is added (a
    /// flag the loop checks on each poll, cheaper than a channel: it is polled at every wake
    /// of any user's worker or sync).
    joining: Mutex<Vec<Arc<Lane>>>,
    joined: Notify,
    expiry: Option<ExpiryMonitor>,
    latency: Option<LatencyMonitor>,
    /// Sends pages and the product's notifications.
    pub alerter: Arc<Alerter>,
    monitor_wake: Arc<Notify>,
}

impl Fleet {
    /// Wires a process and resumes every connection kept in the outbox database.
    pub fn new(config: FleetConfig, parts: FleetParts) -> Result<Fleet, OutboxError> {
        let FleetParts {
            clock,
            http,
            outbox,
            sync_states,
            mut rng,
            hold_jitter,
            worker_log,
            sync_log,
        } = parts;
        let alerter = Arc::new(Alerter::new(
            http.clone(),
            config.alerts_url.clone(),
            config.routing_key.clone(),
            clock.clone(),
        ));
        let mut app = AppTokens::new(
            config.tokens.clone(),
            clock.clone(),
            http.clone(),
            outbox.clone(),
            alerter.clone(),
        );
        if hold_jitter {
            app = app.with_jitter(rng.fork());
        }
        let monitor_wake = Arc::new(Notify::new());
        let expiry = config.expiry.clone().map(|(expiry, token)| ExpiryMonitor {
            config: expiry,
            tokens: Arc::new(TokenProvider::new(token, clock.clone(), http.clone())),
            http: http.clone(),
            alerter: alerter.clone(),
            clock: clock.clone(),
            metrics: None,
        });
        let latency = config.latency.map(|latency| LatencyMonitor {
            config: latency,
            outbox: outbox.clone(),
            alerter: alerter.clone(),
            clock: clock.clone(),
            wake: Some(monitor_wake.clone()),
        });
        let fleet = Fleet {
            config,
            app: Arc::new(app),
            clock,
            http,
            outbox,
            sync_states,
            rng: Mutex::new(rng),
            worker_log,
            sync_log,
            lanes: Mutex::default(),
            joining: Mutex::default(),
            joined: Notify::new(),
            expiry,
            latency,
            alerter,
            monitor_wake,
        };
        for connection in fleet.outbox.connections()? {
            let tokens = Arc::new(UserTokens::new(fleet.app.clone(), &connection));
            fleet.join(tokens);
        }
        Ok(fleet)
    }

    /// The process's clock.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The app's delegated tokens (its hold, its request count).
    pub fn app(&self) -> &Arc<AppTokens> {
        &self.app
    }

    /// A user's tokens, if the user ever connected.
    pub fn user(&self, upn: &str) -> Option<Arc<UserTokens>> {
        let lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        lanes.get(upn).map(|lane| lane.tokens.clone())
    }

    fn fork(&self) -> SeedRng {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).fork()
    }

    /// A lane for `tokens`' user, handed to the running process.
    fn join(&self, tokens: Arc<UserTokens>) {
        let upn = tokens.upn().to_string();
        let sender = Sender {
            tokens: tokens.clone(),
            transport: self.config.transport.clone(),
            clock: self.clock.clone(),
            mailbox: upn.clone(),
            timeout: self.config.send_timeout,
            session: SessionSlot::default(),
        };
        let worker = Worker {
            config: self.config.worker.clone(),
            outbox: Arc::new(self.outbox.for_sender(&upn)),
            sender,
            secret: self.config.tokens.secret.clone(),
            clock: self.clock.clone(),
            wake: Arc::new(Notify::new()),
            log: self.worker_log.clone(),
            rng: Mutex::new(self.fork()),
            metrics: None,
        };
        let sync = self.config.sync.clone().map(|mut config| {
            config.mailbox.clone_from(&upn);
            config.delegated = true;
            let mut rng = self.fork();
            // Each user's rounds at a phase of their own: in step, every user whose token is
            // about to end would refresh in the same instant, before any of them hears that
            // the app's credential failed.
            config.phase = config.interval.mul_f64(rng.unit());
            let state = self
                .sync_states
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(upn.clone())
                .or_default()
                .clone();
            InboxSync {
                config,
                tokens: tokens.clone(),
                http: self.http.clone(),
                clock: self.clock.clone(),
                log: self.sync_log.clone(),
                rng,
                state,
            }
        });
        let lane = Arc::new(Lane {
            tokens,
            worker,
            sync,
        });
        self.lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(upn, lane.clone());
        self.joining
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(lane);
        self.joined.notify_one();
    }

    /// A user connects a mailbox (or reconnects one that needs the user): the
    /// authorization-code flow through `open`, the connection kept, and the user's lane
    /// started or resumed.
    pub async fn connect<F, Fut>(
        &self,
        upn: &str,
        tenant_id: &str,
        open: F,
    ) -> Result<(), ConnectError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<String, String>>,
    {
        let mut rng = self.fork();
        let connected = self.app.connect(upn, tenant_id, &mut rng, open).await?;
        let existing = self
            .lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(upn)
            .cloned();
        match existing {
            Some(lane) => {
                lane.tokens.reconnected(&connected);
                lane.worker.wake.notify_one();
            }
            None => {
                let connection =
                    self.outbox
                        .connection(upn)
                        .ok()
                        .flatten()
                        .ok_or_else(|| ConnectError {
                            upn: upn.to_string(),
                            reason: "the connection was not kept".into(),
                        })?;
                let tokens = Arc::new(UserTokens::new(self.app.clone(), &connection));
                tokens.reconnected(&connected);
                self.join(tokens);
            }
        }
        Ok(())
    }

    /// Queues a message and wakes its user's worker and the latency monitor. A message of a
    /// user who never connected waits in the outbox for that user.
    pub fn enqueue(
        &self,
        message: &NewMessage,
        now: DateTime<Utc>,
        ids: &mut SeedRng,
    ) -> Result<super::outbox::Message, OutboxError> {
        let queued = self.outbox.enqueue(message, now, ids)?;
        if let Some(lane) = self
            .lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&message.from)
        {
            lane.worker.wake.notify_one();
        }
        self.monitor_wake.notify_one();
        Ok(queued)
    }

    /// Runs every part until `until`, in one task; lanes of users who connect meanwhile join.
    pub async fn run(&self, until: DateTime<Utc>) -> Result<(), OutboxError> {
        let mut parts = monitor_parts(
            self.expiry.as_ref(),
            self.latency.as_ref(),
            &self.alerter,
            until,
        );
        let mut worked = Ok(());
        loop {
            let joining =
                std::mem::take(&mut *self.joining.lock().unwrap_or_else(|p| p.into_inner()));
            for lane in joining {
                push_lane(&mut parts, lane, until);
            }
            // Biased, so the order of polls (and of requests at one instant) is the seed's.
            tokio::select! {
                biased;
                done = parts.next() => match done {
                    Some(done) => worked = worked.and(done),
                    None => break,
                },
                () = self.joined.notified() => {}
            }
        }
        worked
    }
}

/// A lane's worker and sync as parts of the running process.
fn push_lane(parts: &mut FuturesUnordered<Part<'_>>, lane: Arc<Lane>, until: DateTime<Utc>) {
    let worker = lane.clone();
    parts.push(Box::pin(async move { worker.worker.run(until).await }));
    if lane.sync.is_some() {
        parts.push(Box::pin(async move {
            if let Some(sync) = &lane.sync {
                sync.run(until).await;
            }
            Ok(())
        }));
    }
}
