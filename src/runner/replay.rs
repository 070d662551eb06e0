//! The replay: the tenant, the mocks, the client and the timeline on one paused runtime,
//! until the scenario's end; then what happened, read into [`Observations`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::Wiring;
use super::plan::{Action, Plan};
use crate::check::{AlertSeen, Leaks, Needles, Observations, WaitSeen};
use crate::client::alert::Alerter;
use crate::client::backoff::{BackoffConfig, Jitter};
use crate::client::monitor::{ExpiryConfig, LatencyConfig, default_lead_times};
use crate::client::outbox::{NewMessage, Outbox, OutboxError, State};
use crate::client::process::{Client, ClientConfig, Parts};
use crate::client::secret::{Secret, SecretSource};
use crate::client::send::{SmtpConnector, TcpSmtpConnector, Transport};
use crate::client::sync::{SyncConfig, SyncEvent, SyncState};
use crate::client::token::TokenConfig;
use crate::client::transport::HttpTransport;
use crate::client::worker::{Mutation, Profile, WorkerEvent};
use crate::journal::{Journal, MockName};
use crate::mock::smtp::{SmtpConfig, SmtpServer};
use crate::mock::{HttpMocks, HttpMocksConfig};
use crate::tenant::{Directory, DirectoryConfig, SecretSpec, SharedDirectory};
use crate::time::{
    ClockExt as _, SharedClock, VirtualClock, replay_runtime, socket_replay_runtime, to_chrono,
};
use crate::wiring::memory::{MemoryNet, MemorySmtp};
use crate::wiring::socket::{HttpListener, ServerHandle, SmtpListener, TcpNet};

const GRAPH_URL: &str = "https://graph.microsoft.com/v1.0";
const ALERTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// A latency threshold no stall reaches (the `latency-never-fires` mutant).
const NEVER: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Replays `plan`; the client's secret file lives at `secret_file` for the run.
#[allow(
    clippy::too_many_lines,
    reason = "one linear set-up of a run, read top to bottom"
)]
pub(super) fn replay(
    plan: &Plan,
    secret_file: &Path,
    wiring: Wiring,
) -> Result<(Observations, Journal), String> {
    let Plan {
        seed,
        start,
        end,
        ref tenant,
        ref app,
        ref secret,
        ref mailbox,
        profile,
        graph,
        ref faults,
        ref steps,
        rotated_at,
        ref traffic,
        latency_threshold,
        backoff_cap,
        refresh_ahead,
        sync_interval,
    } = *plan;
    std::fs::write(secret_file, &secret.value).map_err(|e| e.to_string())?;
    let pki = crate::tls::Pki::generate().map_err(|e| e.to_string())?;
    let runtime = match wiring {
        Wiring::Memory => replay_runtime(),
        Wiring::Sockets => socket_replay_runtime(),
    }
    .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let clock: SharedClock = VirtualClock::starting_at(start).shared();
        let directory = Directory::new(&DirectoryConfig {
            seed,
            tenants: vec![tenant.clone()],
        })
        .shared();
        let journal = Journal::new();
        let mocks = HttpMocks::new(
            directory.clone(),
            clock.clone(),
            journal.clone(),
            HttpMocksConfig {
                seed,
                ..HttpMocksConfig::default()
            },
        );
        for fault in faults {
            mocks.inject(fault.clone()).map_err(|e| e.to_string())?;
        }
        let smtp = SmtpServer::new(
            directory.clone(),
            clock.clone(),
            journal.clone(),
            SmtpConfig {
                seed,
                tls: Some(pki.server_config(false).map_err(|e| e.to_string())?),
                ..SmtpConfig::default()
            },
        )
        .with_faults(mocks.faults_handle());
        let (net, smtp_connector, _servers) = connect(wiring, &mocks, &smtp).await?;
        // The naive client reads its secret once at start: a rotation needs a restart.
        let secret_source = |value: String| match profile {
            Profile::Naive2025 => SecretSource::Value(Secret::new(value)),
            Profile::Remediated | Profile::Mutant(_) => {
                SecretSource::File(secret_file.to_path_buf())
            }
        };
        let token_url = format!(
            "https://login.microsoftonline.com/{}/oauth2/v2.0/token",
            tenant.id
        );
        let token_config = |source: SecretSource| {
            let mut config = TokenConfig::new(token_url.clone(), app.app_id.clone(), source);
            config.refresh_ahead = refresh_ahead;
            if profile.has(Mutation::TightAuthLoop) || profile == Profile::Naive2025 {
                config.refusal_hold_cap = Duration::ZERO;
            }
            config
        };
        let transport = if graph {
            Transport::Graph {
                http: net.clone(),
                graph_url: GRAPH_URL.into(),
            }
        } else {
            Transport::Smtp {
                connector: smtp_connector,
                tls_domain: "localhost".into(),
                ca_pem: Some(pki.ca_pem().to_string()),
                hello_name: "mailman.client.example".into(),
            }
        };
        // Each process's outbox: one database, unless the process forgets it on restart.
        let outboxes = Mutex::new(vec![Arc::new(
            Outbox::in_memory().map_err(|e| e.to_string())?,
        )]);
        let current_outbox = || {
            outboxes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last()
                .cloned()
                .expect("there is always an outbox")
        };
        let wake = Arc::new(tokio::sync::Notify::new());
        let monitor_wake = Arc::new(tokio::sync::Notify::new());
        let worker_log: crate::client::worker::WorkerLog = Arc::default();
        let backoff = BackoffConfig {
            cap: backoff_cap,
            jitter: if profile.has(Mutation::NoJitter) {
                Jitter::None
            } else {
                Jitter::Equal
            },
            ..BackoffConfig::default()
        };
        let sync_log: crate::client::EventLog<SyncEvent> = Arc::default();
        // What a client persists besides its outbox: the sync's delta link and synced ids.
        let sync_state: Arc<Mutex<SyncState>> = Arc::default();
        let syncing = traffic.iter().any(|t| t.inbound);
        let alerters: Mutex<Vec<Arc<Alerter>>> = Mutex::new(Vec::new());
        // One client process until `until`: worker, monitors and sync sharing one token cache
        // and the secret as read when the process starts; the outbox and the sync state are
        // what survives it.
        let process = |secret_now: String,
                       outbox: Arc<Outbox>,
                       until: DateTime<Utc>,
                       process_index: usize| {
            let config = ClientConfig {
                profile,
                token: token_config(secret_source(secret_now)),
                transport: transport.clone(),
                mailbox: mailbox.clone(),
                backoff,
                send_timeout: Duration::from_secs(120),
                alerts_url: ALERTS_URL.into(),
                routing_key: "maildrill".into(),
                // The 2025 client had no monitors.
                expiry: (profile.remediated() && !profile.has(Mutation::NoExpiryMonitor)).then(
                    || ExpiryConfig {
                        app_id: app.app_id.clone(),
                        graph_url: GRAPH_URL.into(),
                        lead_times: default_lead_times(),
                        poll_every: Duration::from_secs(6 * 3600),
                        fallback: vec![],
                    },
                ),
                latency: profile.remediated().then(|| LatencyConfig {
                    threshold: if profile.has(Mutation::LatencyNeverFires) {
                        NEVER
                    } else {
                        latency_threshold
                    },
                    ..LatencyConfig::default()
                }),
                sync: syncing.then(|| SyncConfig {
                    graph_url: GRAPH_URL.into(),
                    mailbox: mailbox.clone(),
                    interval: sync_interval,
                    page_size: 50,
                    backoff,
                }),
            };
            let client = Client::new(
                config,
                Parts {
                    clock: clock.clone(),
                    http: net.clone(),
                    outbox,
                    sync_state: sync_state.clone(),
                    wake: wake.clone(),
                    monitor_wake: monitor_wake.clone(),
                    jitter: seed.stream(&format!("client.jitter.{process_index}")),
                    sync_jitter: seed.stream(&format!("client.sync.{process_index}")),
                    worker_log: worker_log.clone(),
                    sync_log: sync_log.clone(),
                },
            );
            alerters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(client.alerter.clone());
            async move { client.run(until).await }
        };
        let restarts: Vec<DateTime<Utc>> = steps
            .iter()
            .filter(|s| matches!(s.action, Action::Restart))
            .map(|s| s.at)
            .collect();
        let client_task = async {
            let mut secret_now = secret.value.clone();
            for (i, boundary) in restarts.iter().copied().chain([end]).enumerate() {
                process(secret_now.clone(), current_outbox(), boundary.min(end), i).await?;
                if boundary < end {
                    if profile.has(Mutation::ForgetsOutbox) {
                        let fresh = Arc::new(Outbox::in_memory()?);
                        outboxes
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(fresh);
                    }
                    // The new process: in-flight messages go back to the queue, and the secret
                    // is whatever the file holds now (how a redeploy picks up a rotation).
                    current_outbox().recover(clock.now_utc())?;
                    secret_now = std::fs::read_to_string(secret_file)
                        .unwrap_or(secret_now)
                        .trim()
                        .to_string();
                }
            }
            Ok::<_, OutboxError>(())
        };
        let enqueued = Mutex::new(0u64);
        let inbound = Mutex::new(Vec::<(String, DateTime<Utc>)>::new());
        let traffic_task = async {
            let mut ids = seed.stream("client.ids");
            // Every message of every window, in time order (windows may overlap).
            let mut arrivals: Vec<(DateTime<Utc>, bool)> = Vec::new();
            for window in traffic {
                let mut at = window.from;
                while at < window.until.min(end) {
                    arrivals.push((at, window.inbound));
                    at += to_chrono(window.every);
                }
            }
            arrivals.sort();
            for (n, (at, is_inbound)) in arrivals.into_iter().enumerate() {
                clock.sleep_until(clock.instant_at(at)).await;
                if is_inbound {
                    let mut directory = Directory::lock(&directory);
                    let id = directory.next_message_id();
                    if let Some(mailbox) = directory.mailbox_mut(&tenant.id, mailbox) {
                        mailbox.deliver(id.clone(), at, "customer@example.com", "a reply");
                        inbound
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((id, at));
                    }
                    continue;
                }
                let message = NewMessage {
                    from: mailbox.clone(),
                    to: vec!["customer@example.com".into()],
                    subject: format!("message {n}"),
                    body: "Hello.".into(),
                };
                if current_outbox()
                    .enqueue(&message, clock.now_utc(), &mut ids)
                    .is_err()
                {
                    return;
                }
                *enqueued.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                wake.notify_one();
                monitor_wake.notify_one();
            }
        };
        let timeline_task = async {
            for step in steps {
                clock.sleep_until(clock.instant_at(step.at)).await;
                perform(
                    &step.action,
                    clock.now_utc(),
                    &directory,
                    plan,
                    &mocks,
                    secret_file,
                );
            }
        };
        let (worked, (), ()) = tokio::select! {
            biased;
            at = journal.stalled() => {
                return Err(format!(
                    "the replay stopped moving at {}: {} requests at that instant without the clock advancing (a client retrying without waiting?)",
                    crate::time::rfc3339(at),
                    crate::journal::STALL_LIMIT
                ));
            }
            done = async { tokio::join!(client_task, traffic_task, timeline_task) } => done,
        };
        worked.map_err(|e| e.to_string())?;
        let alerters = alerters.into_inner().unwrap_or_else(|p| p.into_inner());
        // The last alerts of a run that ended while the sink was down still count as raised.
        if let Some(last) = alerters.last() {
            last.flush().await;
        }

        let mut summaries = Vec::new();
        for outbox in outboxes.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            summaries.extend(outbox.summaries().map_err(|e| e.to_string())?);
        }
        let count = |state: State| summaries.iter().filter(|s| s.state == state).count() as u64;
        let mut keys = BTreeMap::<String, u64>::new();
        for tenant in Directory::lock(&directory).tenants() {
            for mailbox in &tenant.mailboxes {
                for sent in mailbox.sent() {
                    if let Some(key) = &sent.idempotency_key {
                        *keys.entry(key.clone()).or_default() += 1;
                    }
                }
            }
        }
        let log = worker_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let first_failure_at = log
            .iter()
            .find(|(_, e)| matches!(e, WorkerEvent::Deferred { .. } | WorkerEvent::Failed { .. }))
            .map(|(at, _)| *at);
        let recovered_at = rotated_at.and_then(|r| {
            log.iter()
                .find(|(at, e)| *at >= r && matches!(e, WorkerEvent::Delivered { .. }))
                .map(|(at, _)| *at)
        });
        let drained_at = rotated_at.and_then(|r| {
            let backlog: Vec<_> = summaries.iter().filter(|s| s.enqueued_at < r).collect();
            if backlog.iter().any(|s| s.state != State::Delivered) {
                None
            } else {
                backlog
                    .iter()
                    .filter_map(|s| s.delivered_at)
                    .max()
                    .map(|d| d.max(r))
            }
        });
        // The first message that waited longer than the threshold: where a stall begins.
        // A message never delivered waited until the end; one with an unknown outcome may
        // have been delivered, so it tells nothing about a stall.
        let stalled_from = summaries
            .iter()
            .filter(|s| s.state != State::Unknown)
            .filter(|s| {
                let done = s.delivered_at.unwrap_or(end);
                done - s.enqueued_at > to_chrono(latency_threshold)
            })
            .map(|s| s.enqueued_at)
            .min();
        let waits = log
            .iter()
            .filter_map(|(at, e)| match e {
                WorkerEvent::Waited {
                    wait,
                    retry_after,
                    streak,
                    probe,
                } => Some(WaitSeen {
                    at: *at,
                    wait: *wait,
                    retry_after: *retry_after,
                    streak: *streak,
                    probe: *probe,
                }),
                _ => None,
            })
            .collect();
        let mut secrets: Vec<String> = tenant
            .apps
            .iter()
            .flat_map(|a| a.secrets.iter().map(|s| s.value.clone()))
            .collect();
        secrets.extend(steps.iter().filter_map(|s| match &s.action {
            Action::Rotate(value) | Action::Paste(value) => Some(value.clone()),
            _ => None,
        }));
        // One pass over the journal, in place: a 45-day journal is tens of megabytes.
        let mut leaks = Leaks::default();
        let mut events = BTreeMap::<String, u64>::new();
        let (token_requests, fail_but_deliver) = journal.with_entries(|entries| {
            let mut line = String::new();
            // A tally of the run's event stream: what each service answered, what the client
            // did. Counted on borrowed keys, named once at the end.
            let mut answered = BTreeMap::<(MockName, &str, Result<u16, &str>), u64>::new();
            let mut token_requests = Vec::new();
            let mut fail_but_deliver = 0;
            let needles = Needles::new(&secrets);
            for e in entries {
                // What a journal line shows, piece by piece; a body is rendered (redacted) only
                // when its bytes could show a secret or a token at all.
                leaks.scan_with(&needles, &e.request);
                if let Some(fault) = &e.fault {
                    leaks.scan_with(&needles, fault);
                }
                for body in [&e.request_body, &e.response_body] {
                    if needles.may_hold(body.raw()) {
                        line.clear();
                        let _ = write!(line, "{body}");
                        leaks.scan_with(&needles, &line);
                    }
                }
                *answered
                    .entry((e.mock, e.operation, e.status.ok_or(&*e.delivery)))
                    .or_default() += 1;
                if e.operation == "token" {
                    token_requests.push((e.at, e.status == Some(200)));
                }
                if e
                    .fault
                    .as_deref()
                    .is_some_and(|f| f.starts_with("fail_but_deliver"))
                {
                    fail_but_deliver += 1;
                }
            }
            for ((mock, operation, status), n) in answered {
                let status = status.map_or_else(str::to_string, |s| s.to_string());
                *events
                    .entry(format!("{mock} {operation} {status}"))
                    .or_default() += n;
            }
            (token_requests, fail_but_deliver)
        });
        let raised: Vec<_> = alerters
            .iter()
            .flat_map(|a| a.raised.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect();
        let alerts = raised
            .iter()
            .map(|e| AlertSeen {
                kind: e.kind.to_string(),
                key: e.dedup_key.clone(),
                action: e.action.to_string(),
                at: e.at,
            })
            .collect();
        for event in &raised {
            let body = event.body("maildrill", "maildrill-client").to_string();
            leaks.scan(&secrets, &body);
        }
        let mut synced = BTreeMap::<String, (DateTime<Utc>, u64)>::new();
        for (at, event) in sync_log.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if let SyncEvent::Synced { id } = event {
                synced.entry(id.clone()).or_insert((*at, 0)).1 += 1;
            }
        }
        for (_, e) in &log {
            let kind = match e {
                WorkerEvent::Delivered { .. } => "delivered",
                WorkerEvent::Deferred { .. } => "deferred",
                WorkerEvent::Failed { .. } => "failed",
                WorkerEvent::Unknown { .. } => "unknown",
                WorkerEvent::Waited { probe: true, .. } => "probe wait",
                WorkerEvent::Waited { probe: false, .. } => "retry wait",
                WorkerEvent::CircuitOpened => "circuit opened",
                WorkerEvent::CircuitClosed => "circuit closed",
            };
            *events.entry(format!("client {kind}")).or_default() += 1;
        }
        for (_, e) in sync_log.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let kind = match e {
                SyncEvent::Synced { .. } => "synced",
                SyncEvent::Resync => "resync",
                SyncEvent::Failed { .. } => "round failed",
            };
            *events.entry(format!("sync {kind}")).or_default() += 1;
        }
        for e in &raised {
            *events
                .entry(format!("alert {} {}", e.action, e.kind))
                .or_default() += 1;
        }
        let delivered = count(State::Delivered);
        let unknown = count(State::Unknown);
        let failed = count(State::Failed);
        let enqueued = *enqueued.lock().unwrap_or_else(|p| p.into_inner());
        let observations = Observations {
            enqueued,
            delivered,
            failed,
            // Whatever is neither delivered, failed nor unknown waits, or was forgotten.
            waiting: enqueued.saturating_sub(delivered + failed + unknown),
            unknown,
            unknowable: unknown + fail_but_deliver,
            duplicated: keys.values().filter(|n| **n > 1).count() as u64,
            token_requests,
            alerts,
            first_failure_at,
            stalled_from,
            rotated_at,
            recovered_at,
            drained_at,
            secret_end: Some(secret.end),
            end,
            leaks,
            secrets,
            waits,
            backoff_cap,
            inbound: inbound.into_inner().unwrap_or_else(|p| p.into_inner()),
            synced,
            events,
        };
        Ok((observations, journal))
    })
}

/// The client's way to the mocks: duplex streams, or loopback listeners on this runtime (kept
/// serving while the returned handles live).
async fn connect(
    wiring: Wiring,
    mocks: &HttpMocks,
    smtp: &SmtpServer,
) -> Result<
    (
        Arc<dyn HttpTransport>,
        Arc<dyn SmtpConnector>,
        Vec<ServerHandle>,
    ),
    String,
> {
    Ok(match wiring {
        Wiring::Memory => (
            Arc::new(MemoryNet::new(mocks.clone())),
            Arc::new(MemorySmtp::new(smtp.clone())),
            Vec::new(),
        ),
        Wiring::Sockets => {
            // IP literals only: a host name would be resolved on a blocking thread.
            let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            let io = |e: std::io::Error| e.to_string();
            let http = HttpListener::bind(loopback, mocks.clone(), None)
                .await
                .map_err(io)?;
            let smtp_listener = SmtpListener::new(
                tokio::net::TcpListener::bind(loopback).await.map_err(io)?,
                smtp.clone(),
            );
            let net = TcpNet::new(http.local_addr().map_err(io)?);
            let connector = TcpSmtpConnector {
                address: smtp_listener.local_addr().map_err(io)?.to_string(),
            };
            (
                Arc::new(net),
                Arc::new(connector),
                vec![http.spawn(), smtp_listener.spawn()],
            )
        }
    })
}

/// Performs one timeline step on the tenant, the mocks or the client's secret file.
fn perform(
    action: &Action,
    now: DateTime<Utc>,
    directory: &SharedDirectory,
    plan: &Plan,
    mocks: &HttpMocks,
    secret_file: &Path,
) {
    let (tenant, app) = (&plan.tenant.id, &plan.app.app_id);
    let mut directory = Directory::lock(directory);
    match action {
        Action::Rotate(value) => {
            let spec = SecretSpec {
                value: value.clone(),
                display_name: "rotated".into(),
                start: now,
                end: now + TimeDelta::days(365),
            };
            directory.add_secret(tenant, app, &spec, now);
            let _ = std::fs::write(secret_file, value);
        }
        Action::Paste(value) => {
            let _ = std::fs::write(secret_file, value);
        }
        Action::DeleteApp => {
            directory.delete_app(tenant, app);
        }
        Action::RestoreApp => {
            directory.restore_app(tenant, app);
        }
        Action::ExpireDeltaTokens => {
            if let Some(mailbox) = directory.mailbox_mut(tenant, &plan.mailbox) {
                mailbox.reset_sync_state();
            }
        }
        Action::ClearFaults(target) => mocks.clear_target(*target),
        // The client task restarts itself at these instants.
        Action::Restart => {}
    }
}
