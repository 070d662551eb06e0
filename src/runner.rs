//! The runner: replays a scenario on the virtual clock against the client, through the
//! in-memory wiring, and turns what happened into observations and verdicts.
//!
//! 1. Build the replay runtime (paused, current-thread, no I/O driver) and, on it, the tenant,
//!    the mocks (one fault set), the client (worker, monitors, alerter) and the timeline.
//! 2. Run them all until the scenario's end; tokio jumps the clock whenever every task waits.
//! 3. Read the outbox, the mocks' journal and the client's logs into [`Observations`], and
//!    evaluate the expected checks. Nothing here reads the wall clock except `wall_ms`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::check::{self, AlertSeen, Observations, Params, Verdict};
use crate::client::alert::Alerter;
use crate::client::backoff::BackoffConfig;
use crate::client::monitor::{
    ExpiryConfig, ExpiryMonitor, LatencyConfig, LatencyMonitor, default_lead_times,
};
use crate::client::outbox::{NewMessage, Outbox, State};
use crate::client::secret::{Secret, SecretSource};
use crate::client::send::{Sender, Transport};
use crate::client::token::{ClientAuth, TokenConfig, TokenProvider};
use crate::client::worker::{Profile, Worker, WorkerConfig, WorkerEvent};
use crate::fault::{Activation, CatalogueReply, Fault, FaultKind, Target};
use crate::journal::Journal;
use crate::mock::smtp::{SmtpConfig, SmtpServer};
use crate::mock::{HttpMocks, HttpMocksConfig};
use crate::scenario::file::{LoadError, ScenarioFile};
use crate::seed::Seed;
use crate::tenant::{Directory, DirectoryConfig, SecretSpec};
use crate::time::{ClockExt as _, SharedClock, VirtualClock, replay_runtime, to_chrono};
use crate::wiring::memory::{MemoryNet, MemorySmtp};

/// A scenario's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScenarioReport {
    /// The file.
    pub file: String,
    /// The scenario's name.
    pub name: String,
    /// The seed used.
    pub seed: u64,
    /// Whether every verdict equals its expectation.
    pub passed: bool,
    /// The verdicts.
    pub checks: Vec<Verdict>,
    /// Counts and instants.
    pub stats: Stats,
    /// Wall milliseconds of the replay (the only field that differs between runs).
    pub wall_ms: u64,
}

/// The report's `stats` (CONTRACTS section 4).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    /// Enqueued.
    pub messages_enqueued: u64,
    /// Delivered.
    pub messages_delivered: u64,
    /// Failed or never sent.
    pub messages_lost: u64,
    /// Held twice by the server.
    pub messages_duplicated: u64,
    /// Sent with no reply.
    pub messages_unknown: u64,
    /// Token requests.
    pub token_requests: u64,
    /// Alerts raised.
    pub alerts: Vec<AlertSeen>,
    /// See CONTRACTS section 4.
    pub first_failure_at: Option<String>,
    /// The first alert naming the delivery problem.
    pub detected_at: Option<String>,
    /// The rotation step.
    pub rotated_at: Option<String>,
    /// The first delivery after it.
    pub recovered_at: Option<String>,
    /// When the backlog was delivered.
    pub drained_at: Option<String>,
}

/// The scenario could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The file does not load or lower.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The harness itself failed.
    #[error("failed to run {path}: {reason}")]
    Harness {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

struct Step {
    at: DateTime<Utc>,
    action: Action,
}

enum Action {
    Rotate(String),
    ClearFaults(Target),
    /// Kill the client and start it again: a new process reads its secret afresh, starts with
    /// an empty token cache, and resumes from the same outbox database.
    Restart,
}

/// Replays one scenario file; `seed` overrides the file's.
pub fn run_file(path: &Path, seed: Option<u64>) -> Result<ScenarioReport, RunError> {
    let file = crate::scenario::load(path)?;
    let (report, wall_ms) = crate::time::wall_ms(|| run(path, &file, seed));
    let mut report = report?;
    report.wall_ms = wall_ms;
    Ok(report)
}

fn semantic(path: &Path, key: String, message: impl Into<String>) -> RunError {
    RunError::Load(LoadError::Semantic {
        path: path.to_path_buf(),
        key,
        message: message.into(),
    })
}

fn harness(path: &Path, reason: impl std::fmt::Display) -> RunError {
    RunError::Harness {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn target(path: &Path, i: usize, name: Option<&str>) -> Result<Target, RunError> {
    match name {
        Some("entra") => Ok(Target::Entra),
        Some("graph") => Ok(Target::Graph),
        Some("smtp") => Ok(Target::Smtp),
        Some("alerts") => Ok(Target::Alerts),
        other => Err(semantic(
            path,
            format!("timeline[{i}].target"),
            format!(
                "expected entra, graph, smtp or alerts, got {}",
                other.map_or("nothing".into(), |o| format!("{o:?}"))
            ),
        )),
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "one linear set-up of a run, read top to bottom"
)]
/// A scenario lowered and validated: everything a replay needs, nothing run yet.
pub struct Plan {
    seed: Seed,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    tenant: crate::tenant::TenantSpec,
    app: crate::tenant::AppSpec,
    secret: SecretSpec,
    mailbox: String,
    profile: Profile,
    graph: bool,
    faults: Vec<Fault>,
    steps: Vec<Step>,
    rotated_at: Option<DateTime<Utc>>,
    traffic: Vec<(DateTime<Utc>, DateTime<Utc>, Duration)>,
    latency_threshold: Duration,
    backoff_cap: Duration,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("seed", &self.seed)
            .field("start", &self.start)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

/// Loads and validates a scenario file without running it (`maildrill check`).
pub fn check_file(path: &Path) -> Result<Plan, RunError> {
    let file = crate::scenario::load(path)?;
    lower(path, &file, None)
}

#[allow(
    clippy::too_many_lines,
    reason = "one linear validation of a scenario, read top to bottom"
)]
fn lower(path: &Path, file: &ScenarioFile, seed: Option<u64>) -> Result<Plan, RunError> {
    let seed = Seed(seed.unwrap_or(file.seed));
    let start = file.start();
    let end = file
        .end
        .map_or(start + TimeDelta::days(1), |e| e.resolve(start));
    let tenant = file.tenant_spec(path)?;
    let app = tenant
        .apps
        .first()
        .ok_or_else(|| semantic(path, "tenant.apps".into(), "at least one app is needed"))?
        .clone();
    let secret = app
        .secrets
        .first()
        .ok_or_else(|| {
            semantic(
                path,
                "tenant.apps[0].secrets".into(),
                "at least one secret is needed",
            )
        })?
        .clone();
    let mailbox = tenant
        .mailboxes
        .first()
        .ok_or_else(|| {
            semantic(
                path,
                "tenant.mailboxes".into(),
                "at least one mailbox is needed",
            )
        })?
        .upn
        .clone();
    let client = file.client.clone();
    let profile = match client.as_ref().map_or("remediated", |c| c.profile.as_str()) {
        "remediated" => Profile::Remediated,
        "naive-2025" => Profile::Naive2025,
        other => {
            return Err(semantic(
                path,
                "client.profile".into(),
                format!("expected remediated or naive-2025, got {other:?}"),
            ));
        }
    };
    let graph = match client.as_ref().map_or("smtp", |c| c.transport.as_str()) {
        "smtp" => false,
        "graph" => true,
        other => {
            return Err(semantic(
                path,
                "client.transport".into(),
                format!("expected smtp or graph, got {other:?}"),
            ));
        }
    };
    for (i, expect) in file.expect.iter().enumerate() {
        if !check::CHECKS.contains(&expect.check.as_str()) {
            return Err(semantic(
                path,
                format!("expect[{i}].check"),
                format!(
                    "expected one of {}, got {:?}",
                    check::CHECKS.join(", "),
                    expect.check
                ),
            ));
        }
        if !matches!(expect.verdict.as_str(), "pass" | "fail") {
            return Err(semantic(
                path,
                format!("expect[{i}].verdict"),
                "expected pass or fail",
            ));
        }
    }
    // Faults are windows from the start; rotations and clears are steps the timeline performs.
    let mut faults = Vec::new();
    let mut steps = Vec::new();
    for (i, step) in file.timeline.iter().enumerate() {
        let at = step.at.resolve(start);
        match step.action.as_str() {
            "rotate-secret" => {
                let value = step.value.clone().ok_or_else(|| {
                    semantic(
                        path,
                        format!("timeline[{i}].value"),
                        "rotate-secret needs the new secret's value",
                    )
                })?;
                steps.push(Step {
                    at,
                    action: Action::Rotate(value),
                });
            }
            "restart-client" => steps.push(Step {
                at,
                action: Action::Restart,
            }),
            "clear-faults" => steps.push(Step {
                at,
                action: Action::ClearFaults(target(path, i, step.target.as_deref())?),
            }),
            "fault" => {
                let target = target(path, i, step.target.as_deref())?;
                let kind = match step.kind.as_deref() {
                    Some("latency") => FaultKind::Latency {
                        delay: step.delay.map_or(Duration::from_secs(30), |d| d.0),
                    },
                    Some("timeout") => FaultKind::Timeout,
                    Some("reset_peer") => FaultKind::ResetPeer,
                    Some("drop_after_data") => FaultKind::DropAfterData,
                    Some("tls_failure") => FaultKind::TlsFailure,
                    Some("malformed_body") => FaultKind::MalformedBody,
                    Some(kind @ ("respond" | "fail_but_deliver")) => {
                        let key = step.reply.as_deref().ok_or_else(|| {
                            semantic(
                                path,
                                format!("timeline[{i}].reply"),
                                "a catalogue reply key is needed",
                            )
                        })?;
                        let reply = CatalogueReply::parse(target, key).map_err(|e| {
                            semantic(path, format!("timeline[{i}].reply"), e.to_string())
                        })?;
                        if kind == "respond" {
                            FaultKind::Respond {
                                reply,
                                retry_after: None,
                            }
                        } else {
                            FaultKind::FailButDeliver {
                                reply,
                                retry_after: None,
                            }
                        }
                    }
                    other => {
                        return Err(semantic(
                            path,
                            format!("timeline[{i}].kind"),
                            format!(
                                "expected latency, timeout, reset_peer, drop_after_data, tls_failure, malformed_body, respond or fail_but_deliver, got {}",
                                other.map_or("nothing".into(), |o| format!("{o:?}"))
                            ),
                        ));
                    }
                };
                let fault = Fault {
                    target,
                    operation: step.operation.clone(),
                    kind,
                    activation: Activation {
                        from: Some(at),
                        until: step.duration.map(|d| at + to_chrono(d.0)),
                        first: step.first,
                        probability: None,
                    },
                };
                fault
                    .validate()
                    .map_err(|e| semantic(path, format!("timeline[{i}]"), e.to_string()))?;
                faults.push(fault);
            }
            other => {
                return Err(semantic(
                    path,
                    format!("timeline[{i}].action"),
                    format!(
                        "expected rotate-secret, restart-client, fault or clear-faults, got {other:?}"
                    ),
                ));
            }
        }
    }
    steps.sort_by_key(|s| s.at);
    let rotated_at = steps
        .iter()
        .find(|s| matches!(s.action, Action::Rotate(_)))
        .map(|s| s.at);
    let traffic: Vec<(DateTime<Utc>, DateTime<Utc>, Duration)> = file
        .traffic
        .iter()
        .map(|t| (t.from.resolve(start), t.until.resolve(start), t.every.0))
        .collect();
    if traffic.iter().any(|(_, _, every)| every.is_zero()) {
        return Err(semantic(
            path,
            "traffic.every".into(),
            "must be longer than 0s",
        ));
    }
    let latency_threshold = client
        .as_ref()
        .and_then(|c| c.latency_threshold)
        .map_or(Duration::from_secs(300), |d| d.0);
    let backoff_cap = client
        .as_ref()
        .and_then(|c| c.backoff_cap)
        .map_or(Duration::from_secs(300), |d| d.0);

    Ok(Plan {
        seed,
        start,
        end,
        tenant,
        app,
        secret,
        mailbox,
        profile,
        graph,
        faults,
        steps,
        rotated_at,
        traffic,
        latency_threshold,
        backoff_cap,
    })
}

impl Plan {
    /// The lowered timeline, one line per instant (`maildrill explain`).
    pub fn explain(&self) -> String {
        let t = crate::time::rfc3339;
        let mut lines = vec![
            format!("{} start; seed {}", t(self.start), self.seed),
            format!(
                "{} secret {} works until here ({})",
                t(self.secret.end),
                self.secret.display_name,
                t(self.secret.start)
            ),
        ];
        for (from, until, every) in &self.traffic {
            lines.push(format!(
                "{} traffic: one message every {} until {}",
                t(*from),
                humantime::format_duration(*every),
                t(*until)
            ));
        }
        for fault in &self.faults {
            let from = fault.activation.from.unwrap_or(self.start);
            let until = fault.activation.until.map_or_else(|| "cleared".into(), t);
            let op = fault.operation.as_deref().unwrap_or("every operation");
            lines.push(format!(
                "{} fault on {} ({op}): {} until {until}",
                t(from),
                fault.target.name(),
                fault.kind
            ));
        }
        for step in &self.steps {
            let what = match &step.action {
                Action::Rotate(_) => {
                    "rotate the secret (new value in the tenant and the client's secret file)"
                        .to_string()
                }
                Action::ClearFaults(target) => format!("clear the faults on {}", target.name()),
                Action::Restart => {
                    "restart the client (new process, same outbox, secret read afresh)".to_string()
                }
            };
            lines.push(format!("{} {what}", t(step.at)));
        }
        lines.push(format!(
            "{} end; client {:?} over {}",
            t(self.end),
            self.profile,
            if self.graph { "Graph" } else { "SMTP" }
        ));
        lines.sort();
        lines.join("\n")
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "one linear set-up of a run, read top to bottom"
)]
fn run(path: &Path, file: &ScenarioFile, seed: Option<u64>) -> Result<ScenarioReport, RunError> {
    let Plan {
        seed,
        start,
        end,
        tenant,
        app,
        secret,
        mailbox,
        profile,
        graph,
        faults,
        steps,
        rotated_at,
        traffic,
        latency_threshold,
        backoff_cap,
    } = lower(path, file, seed)?;
    let secret_file = std::env::temp_dir().join(format!(
        "maildrill-run-{}-{}-{}.secret",
        std::process::id(),
        file.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        seed
    ));
    std::fs::write(&secret_file, &secret.value).map_err(|e| harness(path, e))?;
    let pki = crate::tls::Pki::generate().map_err(|e| harness(path, e))?;
    let runtime = replay_runtime().map_err(|e| harness(path, e))?;
    let observations = runtime.block_on(async {
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
            mocks.inject(fault).map_err(|e| harness(path, e))?;
        }
        let smtp_config = SmtpConfig {
            seed,
            tls: Some(pki.server_config(false).map_err(|e| harness(path, e))?),
            ..SmtpConfig::default()
        };
        let smtp = SmtpServer::new(
            directory.clone(),
            clock.clone(),
            journal.clone(),
            smtp_config,
        )
        .with_faults(mocks.faults_handle());
        let net = Arc::new(MemoryNet::new(mocks.clone()));
        // The naive client reads its secret once at start: a rotation needs a restart.
        let secret_source = |value: String| match profile {
            Profile::Remediated => SecretSource::File(secret_file.clone()),
            Profile::Naive2025 => SecretSource::Value(Secret::new(value)),
        };
        let token_url = format!(
            "https://login.microsoftonline.com/{}/oauth2/v2.0/token",
            tenant.id
        );
        let token_provider = |source: SecretSource| {
            let config = TokenConfig {
                token_url: token_url.clone(),
                client_id: app.app_id.clone(),
                secret: source,
                auth: ClientAuth::Basic,
                refresh_ahead: Duration::from_secs(300),
                request_timeout: Duration::from_secs(30),
            };
            Arc::new(TokenProvider::new(config, clock.clone(), net.clone()))
        };
        let tokens = token_provider(secret_source(secret.value.clone()));
        let graph_url = "https://graph.microsoft.com/v1.0".to_string();
        let transport = if graph {
            Transport::Graph {
                http: net.clone(),
                graph_url: graph_url.clone(),
            }
        } else {
            Transport::Smtp {
                connector: Arc::new(MemorySmtp::new(smtp.clone())),
                tls_domain: "localhost".into(),
                ca_pem: Some(pki.ca_pem().to_string()),
                hello_name: "mailman.client.example".into(),
            }
        };
        let outbox = Arc::new(Outbox::in_memory().map_err(|e| harness(path, e))?);
        let wake = Arc::new(tokio::sync::Notify::new());
        let monitor_wake = Arc::new(tokio::sync::Notify::new());
        let worker_log: crate::client::worker::WorkerLog = Default::default();
        // One client process: its own token cache and secret, read when it starts.
        // The first process shares its token cache with the monitors, as one process would.
        let process = |secret_now: String, first: bool| {
            let source = secret_source(secret_now);
            let tokens = if first {
                tokens.clone()
            } else {
                token_provider(source.clone())
            };
            Worker {
                config: WorkerConfig {
                    profile,
                    backoff: BackoffConfig {
                        cap: backoff_cap,
                        ..BackoffConfig::default()
                    },
                    ..WorkerConfig::default()
                },
                outbox: outbox.clone(),
                sender: Sender {
                    tokens,
                    transport: transport.clone(),
                    clock: clock.clone(),
                    mailbox: mailbox.clone(),
                    timeout: Duration::from_secs(120),
                    session: Default::default(),
                },
                secret: source,
                clock: clock.clone(),
                wake: wake.clone(),
                log: worker_log.clone(),
                rng: seed.stream("client.jitter"),
                metrics: None,
            }
        };
        let restarts: Vec<DateTime<Utc>> = steps
            .iter()
            .filter(|s| matches!(s.action, Action::Restart))
            .map(|s| s.at)
            .collect();
        let client_task = async {
            let mut secret_now = secret.value.clone();
            for (i, boundary) in restarts.iter().copied().chain([end]).enumerate() {
                process(secret_now.clone(), i == 0)
                    .run(boundary.min(end))
                    .await?;
                if boundary < end {
                    // The new process: in-flight messages go back to the queue, and the secret
                    // is whatever the file holds now (how a redeploy picks up a rotation).
                    outbox.recover(clock.now_utc())?;
                    secret_now = std::fs::read_to_string(&secret_file)
                        .unwrap_or(secret_now)
                        .trim()
                        .to_string();
                }
            }
            Ok::<_, crate::client::outbox::OutboxError>(())
        };
        let alerter = Arc::new(Alerter::new(
            net.clone(),
            "https://events.pagerduty.com/v2/enqueue".into(),
            "maildrill".into(),
            clock.clone(),
        ));
        let expiry = ExpiryMonitor {
            config: ExpiryConfig {
                app_id: app.app_id.clone(),
                graph_url,
                lead_times: default_lead_times(),
                poll_every: Duration::from_secs(6 * 3600),
                fallback: vec![],
            },
            tokens: tokens.clone(),
            http: net.clone(),
            alerter: alerter.clone(),
            clock: clock.clone(),
            metrics: None,
        };
        let latency = LatencyMonitor {
            config: LatencyConfig {
                threshold: latency_threshold,
                ..LatencyConfig::default()
            },
            outbox: outbox.clone(),
            alerter: alerter.clone(),
            clock: clock.clone(),
            wake: Some(monitor_wake.clone()),
        };
        let monitors = async {
            // The 2025 client had no monitors.
            if profile == Profile::Remediated {
                tokio::join!(expiry.run(end), latency.run(end));
            }
        };
        let traffic_task = async {
            let mut ids = seed.stream("client.ids");
            let mut windows = traffic.clone();
            windows.sort_by_key(|w| w.0);
            let mut n = 0u64;
            for (from, until, every) in windows {
                let mut at = from;
                while at < until.min(end) {
                    clock.sleep_until(clock.instant_at(at)).await;
                    let message = NewMessage {
                        from: mailbox.clone(),
                        to: vec!["customer@example.com".into()],
                        subject: format!("message {n}"),
                        body: "Hello.".into(),
                    };
                    if outbox.enqueue(&message, clock.now_utc(), &mut ids).is_err() {
                        return;
                    }
                    wake.notify_one();
                    monitor_wake.notify_one();
                    n += 1;
                    at += to_chrono(every);
                }
            }
        };
        let timeline_task = async {
            for step in &steps {
                clock.sleep_until(clock.instant_at(step.at)).await;
                let now = clock.now_utc();
                match &step.action {
                    Action::Rotate(value) => {
                        let spec = SecretSpec {
                            value: value.clone(),
                            display_name: "rotated".into(),
                            start: now,
                            end: now + TimeDelta::days(365),
                        };
                        Directory::lock(&directory).add_secret(&tenant.id, &app.app_id, &spec, now);
                        let _ = std::fs::write(&secret_file, value);
                    }
                    Action::ClearFaults(target) => mocks.clear_target(*target),
                    // The client task restarts itself at these instants.
                    Action::Restart => {}
                }
            }
        };
        let (worked, (), (), ()) = tokio::join!(client_task, monitors, traffic_task, timeline_task);
        worked.map_err(|e| harness(path, e))?;
        // The last alerts of a run that ended while the sink was down still count as raised.
        alerter.flush().await;

        let summaries = outbox.summaries().map_err(|e| harness(path, e))?;
        let count = |state: State| summaries.iter().filter(|s| s.state == state).count() as u64;
        let mut keys = std::collections::BTreeMap::<String, u64>::new();
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
        let token_requests = journal
            .entries()
            .iter()
            .filter(|e| e.operation == "token")
            .map(|e| (e.at, e.status == Some(200)))
            .collect();
        let alerts = alerter
            .raised
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|e| AlertSeen {
                kind: e.kind.to_string(),
                key: e.dedup_key.clone(),
                action: e.action.to_string(),
                at: e.at,
            })
            .collect();
        let mut written = journal.render();
        for event in alerter
            .raised
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            written.push_str(&event.body("maildrill", "maildrill-client").to_string());
        }
        let mut secrets: Vec<String> = tenant
            .apps
            .iter()
            .flat_map(|a| a.secrets.iter().map(|s| s.value.clone()))
            .collect();
        secrets.extend(steps.iter().filter_map(|s| match &s.action {
            Action::Rotate(value) => Some(value.clone()),
            Action::ClearFaults(_) | Action::Restart => None,
        }));
        Ok::<_, RunError>(Observations {
            enqueued: summaries.len() as u64,
            delivered: count(State::Delivered),
            failed: count(State::Failed),
            waiting: count(State::Queued) + count(State::Sending),
            unknown: count(State::Unknown),
            duplicated: keys.values().filter(|n| **n > 1).count() as u64,
            token_requests,
            alerts,
            first_failure_at,
            rotated_at,
            recovered_at,
            drained_at,
            secret_end: Some(secret.end),
            end,
            written,
            secrets,
        })
    });
    let _ = std::fs::remove_file(&secret_file);
    let observations = observations?;
    Ok(report(path, file, seed, &observations))
}

fn report(path: &Path, file: &ScenarioFile, seed: Seed, o: &Observations) -> ScenarioReport {
    // The report is written too: what the stats say must not leak either.
    let mut o = o.clone();
    o.written
        .push_str(&serde_json::to_string(&o.alerts).unwrap_or_default());
    let o = &o;
    let checks: Vec<Verdict> = file
        .expect
        .iter()
        .map(|e| {
            let params = Params {
                within: e.within.map(|d| d.0),
                lead: e.lead.map(|d| d.0),
                per_hour: e.per_hour,
            };
            let (ok, observed, detail) = check::evaluate(&e.check, params, o)
                .expect("check ids were validated when the scenario was lowered");
            Verdict {
                id: e.check.clone(),
                verdict: if ok { "pass" } else { "fail" }.into(),
                expected: e.verdict.clone(),
                observed,
                detail,
            }
        })
        .collect();
    let time = |t: Option<DateTime<Utc>>| t.map(crate::time::rfc3339);
    ScenarioReport {
        file: path.display().to_string(),
        name: file.name.clone(),
        seed: seed.0,
        passed: checks.iter().all(|c| c.verdict == c.expected),
        checks,
        stats: Stats {
            messages_enqueued: o.enqueued,
            messages_delivered: o.delivered,
            messages_lost: o.failed + o.waiting,
            messages_duplicated: o.duplicated,
            messages_unknown: o.unknown,
            token_requests: o.token_requests.len() as u64,
            alerts: o.alerts.clone(),
            first_failure_at: time(o.first_failure_at),
            detected_at: time(o.detected_at()),
            rotated_at: time(o.rotated_at),
            recovered_at: time(o.recovered_at),
            drained_at: time(o.drained_at),
        },
        wall_ms: 0,
    }
}
