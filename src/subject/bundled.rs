//! The bundled reference client (`maildrill::client`) as a subject: its profile (remediated,
//! `naive-2025`, a mutant) lowered into a client configuration, its outbox and sync state kept
//! in the state directory across restarts.

use std::path::Path;

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::profile::{Mutation, Profile};
use super::{Capability, Message, Process, Start, Subject, SubjectError};
use crate::client::backoff::{BackoffConfig, Jitter};
use crate::client::certificate::CertificateSource;
use crate::client::fleet::Fleet;
use crate::client::monitor::{ExpiryConfig, LatencyConfig, default_lead_times};
use crate::client::outbox::{NewMessage, Outbox};
use crate::client::process::{Client, ClientConfig, Parts};
use crate::client::secret::{Secret, SecretSource};
use crate::client::send::{SmtpConnector, TcpSmtpConnector, Transport};
use crate::client::sync::{SyncConfig, SyncEvent, SyncState};
use crate::client::token::TokenConfig;
use crate::client::transport::{HttpTransport, ReqwestTransport};
use crate::client::worker::{OnRefused, OnUnknown, Retries, WorkerConfig};

/// A latency threshold no stall reaches (the `latency-never-fires` mutant).
const NEVER: Duration = Duration::from_secs(100 * 365 * 86_400);
/// The outbox database in the state directory.
const OUTBOX_FILE: &str = "outbox.sqlite3";
/// The sync's delta link and the ids it has seen, in the state directory.
const SYNC_FILE: &str = "sync.json";

/// The bundled client with one profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bundled {
    /// How it behaves.
    pub profile: Profile,
}

impl Bundled {
    /// The bundled client with `profile`.
    pub fn new(profile: Profile) -> Bundled {
        Bundled { profile }
    }
}

/// A running bundled client: its tasks, and what it keeps for the next process.
#[derive(Debug)]
pub struct BundledProcess {
    pub(super) running: Running,
    pub(super) task: tokio::task::JoinHandle<Result<(), crate::client::outbox::OutboxError>>,
    pub(super) ids: crate::seed::SeedRng,
    pub(super) sync_state: Arc<Mutex<SyncState>>,
    pub(super) sync_log: crate::client::EventLog<SyncEvent>,
    pub(super) state_dir: std::path::PathBuf,
}

/// The process that runs: the app's own client, or the delegated one of a multi-tenant app.
#[derive(Debug)]
pub(super) enum Running {
    /// Sends as the app's mailbox with client credentials.
    App(Arc<Client>),
    /// Sends and syncs as each connected user, with each user's own sync state.
    Delegated(Arc<Fleet>, super::fleet::SyncStates),
}

impl Subject for Bundled {
    type Process = BundledProcess;

    fn name(&self) -> String {
        format!("maildrill::client ({})", self.profile)
    }

    fn capabilities(&self) -> Vec<Capability> {
        vec![
            Capability::Smtp,
            Capability::GraphSend,
            Capability::InboundSync,
            Capability::Alerts,
            Capability::Certificate,
            Capability::InMemory,
            Capability::Delegated,
        ]
    }

    async fn start(&self, start: Start) -> Result<BundledProcess, SubjectError> {
        if start.delegated.is_some() {
            return self.start_delegated(start);
        }
        let (http, smtp) = transports(&start)?;
        let outbox = Arc::new(self.outbox(&start)?);
        outbox.recover(start.clock.now_utc())?;
        let sync_state = Arc::new(Mutex::new(read_sync_state(&start.state_dir)));
        let sync_log: crate::client::EventLog<SyncEvent> = Arc::default();
        let config = self.config(&start, &http, &smtp);
        let mut rng = start.rng;
        let (jitter, sync_jitter, ids) = (rng.fork(), rng.fork(), rng.fork());
        // Drawn after the others, so their streams stay what they were.
        let token_jitter = (!self.profile.has(Mutation::NoJitter)).then(|| rng.fork());
        let assertion_ids = start.certificate.is_some().then(|| rng.fork());
        let wake = Arc::new(tokio::sync::Notify::new());
        let client = Arc::new(Client::new(
            config,
            Parts {
                clock: start.clock.clone(),
                http,
                outbox,
                sync_state: sync_state.clone(),
                wake,
                monitor_wake: Arc::new(tokio::sync::Notify::new()),
                jitter,
                sync_jitter,
                token_jitter,
                assertion_ids,
                worker_log: Arc::default(),
                sync_log: sync_log.clone(),
            },
        ));
        let running = client.clone();
        // It runs until stopped: a deploy, not a deadline, ends a process.
        let task = tokio::spawn(async move { running.run(DateTime::<Utc>::MAX_UTC).await });
        Ok(BundledProcess {
            running: Running::App(client),
            task,
            ids,
            sync_state,
            sync_log,
            state_dir: start.state_dir,
        })
    }
}

impl Bundled {
    /// The outbox in the state directory; the `forgets-outbox` mutant starts each restarted
    /// process on an empty one.
    pub(super) fn outbox(&self, start: &Start) -> Result<Outbox, SubjectError> {
        if start.generation > 0 && self.profile.has(Mutation::ForgetsOutbox) {
            return Ok(Outbox::in_memory()?);
        }
        Ok(Outbox::open(&start.state_dir.join(OUTBOX_FILE))?)
    }

    /// The token provider: where the secret is read, how far ahead a token is refreshed,
    /// whether `Retry-After` and a refused credential's hold are kept.
    pub(super) fn token_config(&self, start: &Start) -> TokenConfig {
        let profile = self.profile;
        // The naive client reads its secret once at start: a rotation needs a restart.
        let source = match (profile, &start.certificate) {
            (Profile::Naive2025 | Profile::Naive2025Delegated, Some(certificate)) => {
                let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
                SecretSource::Certificate(CertificateSource::Pem {
                    cert: read(certificate.cert_path()),
                    key: read(certificate.key_path()),
                })
            }
            (Profile::Remediated | Profile::Mutant(_), Some(certificate)) => {
                SecretSource::Certificate(CertificateSource::Files {
                    cert: certificate.cert_path().to_path_buf(),
                    key: certificate.key_path().to_path_buf(),
                })
            }
            (Profile::Naive2025 | Profile::Naive2025Delegated, None) => {
                SecretSource::Value(Secret::new(start.secret.current()))
            }
            (Profile::Remediated | Profile::Mutant(_), None) => {
                SecretSource::File(start.secret.path().to_path_buf())
            }
        };
        let endpoints = &start.endpoints;
        let mut token =
            TokenConfig::new(endpoints.token_url.clone(), start.client_id.clone(), source);
        token.refresh_ahead = start.settings.refresh_ahead;
        token.read_retry_after = !profile.has(Mutation::IgnoresRetryAfter);
        if profile.has(Mutation::TightAuthLoop) || !profile.remediated() {
            token.refusal_hold_cap = Duration::ZERO;
        }
        token
    }

    /// The profile and the scenario's settings lowered into one process's configuration.
    pub(super) fn config(
        &self,
        start: &Start,
        http: &Arc<dyn HttpTransport>,
        smtp: &Arc<dyn SmtpConnector>,
    ) -> ClientConfig {
        let profile = self.profile;
        let settings = start.settings;
        let endpoints = &start.endpoints;
        let token = self.token_config(start);
        let transport = if settings.graph {
            Transport::Graph {
                http: http.clone(),
                graph_url: endpoints.graph_url.clone(),
            }
        } else {
            Transport::Smtp {
                connector: smtp.clone(),
                tls_domain: endpoints.smtp_host.clone(),
                ca_pem: Some(endpoints.ca_pem.clone()),
                hello_name: "mailman.client.example".into(),
            }
        };
        let backoff = backoff_config(profile, settings);
        ClientConfig {
            worker: worker_config(profile, backoff),
            token,
            transport,
            mailbox: start.mailbox.clone(),
            send_timeout: Duration::from_secs(120),
            alerts_url: endpoints.alerts_url.clone(),
            routing_key: "maildrill".into(),
            // The 2025 client had no monitors.
            expiry: (profile.remediated() && !profile.has(Mutation::NoExpiryMonitor)).then(|| {
                ExpiryConfig {
                    app_id: start.client_id.clone(),
                    graph_url: endpoints.graph_url.clone(),
                    lead_times: default_lead_times(),
                    poll_every: Duration::from_secs(6 * 3600),
                    fallback: vec![],
                }
            }),
            latency: profile.remediated().then(|| LatencyConfig {
                threshold: if profile.has(Mutation::LatencyNeverFires) {
                    NEVER
                } else {
                    settings.latency_threshold
                },
                ..LatencyConfig::default()
            }),
            sync: settings.inbound.then(|| SyncConfig {
                graph_url: endpoints.graph_url.clone(),
                mailbox: start.mailbox.clone(),
                delegated: false,
                interval: settings.sync_interval,
                page_size: 50,
                backoff,
                phase: std::time::Duration::ZERO,
            }),
        }
    }
}

/// The profile's backoff under the scenario's cap.
pub(super) fn backoff_config(profile: Profile, settings: super::Settings) -> BackoffConfig {
    BackoffConfig {
        cap: settings.backoff_cap,
        jitter: if profile.has(Mutation::NoJitter) {
            Jitter::None
        } else {
            Jitter::Equal
        },
        ..BackoffConfig::default()
    }
}

/// How the profile's worker retries: the 2025 client's fixed second and five attempts, or the
/// remediated backoff with the mutant's one change.
pub(super) fn worker_config(profile: Profile, backoff: BackoffConfig) -> WorkerConfig {
    let retries = if profile.remediated() {
        Retries::Backoff
    } else {
        Retries::Fixed {
            every: Duration::from_secs(1),
            attempts: 5,
        }
    };
    let probe_backoff = if profile.has(Mutation::TightAuthLoop) {
        BackoffConfig {
            cap: backoff.base,
            ..backoff
        }
    } else {
        backoff
    };
    WorkerConfig {
        retries,
        backoff,
        probe_backoff,
        honour_retry_after: !profile.has(Mutation::IgnoresRetryAfter),
        on_unknown: if profile.has(Mutation::FailsUnknownSends) {
            OnUnknown::Resend
        } else {
            OnUnknown::Hold
        },
        on_refused: if profile.has(Mutation::DropsAfterAuthFailure) {
            OnRefused::Fail
        } else {
            OnRefused::Keep
        },
        ..WorkerConfig::default()
    }
}

impl BundledProcess {
    fn clock(&self) -> crate::time::SharedClock {
        match &self.running {
            Running::App(client) => client.worker.clock.clone(),
            Running::Delegated(fleet, _) => fleet.clock().clone(),
        }
    }
}

impl Process for BundledProcess {
    async fn submit(&mut self, message: Message) -> Result<(), SubjectError> {
        let Message {
            message_id,
            from,
            to,
            subject,
            body,
        } = message;
        let new = NewMessage {
            from,
            to,
            subject,
            body,
            message_id: Some(message_id),
        };
        let now = self.clock().now_utc();
        match &self.running {
            Running::App(client) => client.enqueue(&new, now, &mut self.ids)?,
            Running::Delegated(fleet, _) => fleet.enqueue(&new, now, &mut self.ids)?,
        };
        Ok(())
    }

    async fn stop(self) -> Result<(), SubjectError> {
        // A kill, as a deploy's SIGKILL: whatever was in flight is recovered by the next
        // process from the outbox.
        self.task.abort();
        match self.task.await {
            Ok(worked) => worked?,
            Err(e) if e.is_cancelled() => {}
            Err(e) => return Err(format!("the client's task failed: {e}").into()),
        }
        if let Running::Delegated(_, states) = &self.running {
            super::fleet::write_sync_states(&self.state_dir, states)?;
            return Ok(());
        }
        let state = self
            .sync_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        write_sync_state(&self.state_dir, &state)?;
        Ok(())
    }

    async fn connect(&mut self, user: super::Connect) -> Result<(), SubjectError> {
        let Running::Delegated(fleet, _) = &self.running else {
            return Err(format!(
                "cannot connect {}: started without a delegated app",
                user.upn
            )
            .into());
        };
        let browser = user.browser;
        let open =
            move |url: String| async move { browser.open(&url).await.map_err(|e| e.to_string()) };
        fleet.connect(&user.upn, &user.tenant_id, open).await?;
        Ok(())
    }

    fn synced(&self) -> Vec<String> {
        self.sync_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(_, event)| match event {
                SyncEvent::Synced { id } => Some(id.clone()),
                _ => None,
            })
            .collect()
    }
}

/// HTTP (token endpoint, Graph, alert sink) and SMTP connections.
pub(super) type Transports = (Arc<dyn HttpTransport>, Arc<dyn SmtpConnector>);

/// maildrill's transports on the in-memory wiring; reqwest (trusting the harness's CA) and
/// plain TCP on sockets.
pub(super) fn transports(start: &Start) -> Result<Transports, SubjectError> {
    if let Some(memory) = &start.memory {
        return Ok((memory.http.clone(), memory.smtp.clone()));
    }
    let ca = reqwest::Certificate::from_pem(start.endpoints.ca_pem.as_bytes())?;
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?;
    let smtp = TcpSmtpConnector {
        address: format!(
            "{}:{}",
            start.endpoints.smtp_host, start.endpoints.smtp_port
        ),
    };
    Ok((Arc::new(ReqwestTransport::new(http)), Arc::new(smtp)))
}

fn read_sync_state(dir: &Path) -> SyncState {
    std::fs::read(dir.join(SYNC_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn write_sync_state(dir: &Path, state: &SyncState) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(state).map_err(std::io::Error::other)?;
    std::fs::write(dir.join(SYNC_FILE), bytes)
}
