//! The bundled client's delegated mode as a subject: when the scenario has customers who
//! connect their mailboxes, the profile is lowered into a `client::fleet` configuration (the
//! app's hold, whom `invalid_client` is blamed on, what a disconnected user keeps) and each
//! user's sync state is kept in the state directory across restarts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::bundled::{BundledProcess, Running, transports};
use super::profile::{Mutation, Profile};
use super::{Bundled, Start, SubjectError};
use crate::client::delegated::{Blame, DelegatedConfig, OnNeedsUser};
use crate::client::fleet::{Fleet, FleetConfig, FleetParts};
use crate::client::secret::{Secret, SecretSource, Throttled};
use crate::client::send::Transport;
use crate::client::sync::SyncState;

/// Each user's delta link and synced ids, in the state directory.
const SYNC_FILE: &str = "sync-delegated.json";

/// Each user's sync state, shared with the running process.
pub(super) type SyncStates = Arc<Mutex<BTreeMap<String, Arc<Mutex<SyncState>>>>>;

impl Bundled {
    /// Starts the delegated client: the connections kept in the outbox database resume.
    pub(super) fn start_delegated(&self, start: Start) -> Result<BundledProcess, SubjectError> {
        let (http, smtp) = transports(&start)?;
        let outbox = Arc::new(self.outbox(&start)?);
        outbox.recover(start.clock.now_utc())?;
        let states = read_sync_states(&start.state_dir);
        let sync_log: crate::client::EventLog<crate::client::sync::SyncEvent> = Arc::default();
        let config = self.fleet_config(&start, &http, &smtp)?;
        let mut rng = start.rng;
        let (ids, fleet_rng) = (rng.fork(), rng.fork());
        let fleet = Arc::new(Fleet::new(
            config,
            FleetParts {
                clock: start.clock.clone(),
                http,
                outbox,
                sync_states: states.clone(),
                rng: fleet_rng,
                hold_jitter: !self.profile.has(Mutation::NoJitter),
                worker_log: Arc::default(),
                sync_log: sync_log.clone(),
            },
        )?);
        let running = fleet.clone();
        // It runs until stopped: a deploy, not a deadline, ends a process.
        let task = tokio::spawn(async move { running.run(DateTime::<Utc>::MAX_UTC).await });
        Ok(BundledProcess {
            running: Running::Delegated(fleet, states),
            task,
            ids,
            sync_state: Arc::default(),
            sync_log,
            state_dir: start.state_dir,
        })
    }

    /// The profile and the scenario's settings lowered into the delegated process's
    /// configuration: the app's own parts (monitors, worker, sync) as the app-only client has
    /// them, sends as each user, and the profile's way with the app's and users' failures.
    fn fleet_config(
        &self,
        start: &Start,
        http: &Arc<dyn crate::client::transport::HttpTransport>,
        smtp: &Arc<dyn crate::client::send::SmtpConnector>,
    ) -> Result<FleetConfig, SubjectError> {
        let delegated = start
            .delegated
            .as_ref()
            .ok_or("no delegated app to connect users to")?;
        let app = self.config(start, http, smtp);
        let transport = match app.transport {
            Transport::Graph { http, graph_url }
            | Transport::GraphDelegated { http, graph_url } => {
                Transport::GraphDelegated { http, graph_url }
            }
            smtp @ Transport::Smtp { .. } => smtp,
        };
        Ok(FleetConfig {
            tokens: self.delegated_config(start, delegated),
            worker: app.worker,
            transport,
            send_timeout: app.send_timeout,
            alerts_url: app.alerts_url,
            routing_key: app.routing_key,
            expiry: app.expiry.map(|expiry| (expiry, app.token)),
            latency: app.latency,
            sync: app.sync,
        })
    }

    /// How the profile treats the app's and the users' failures.
    fn delegated_config(&self, start: &Start, app: &super::DelegatedApp) -> DelegatedConfig {
        let profile = self.profile;
        let naive = profile == Profile::Naive2025Delegated;
        // The naive client reads its secret once at start: a rotation needs a restart.
        // The remediated one re-reads the file, at most once a second for all its users.
        let secret = if naive {
            SecretSource::Value(Secret::new(start.secret.current()))
        } else {
            let file = SecretSource::File(start.secret.path().to_path_buf());
            SecretSource::Throttled(Throttled::new(
                file,
                start.clock.clone(),
                Duration::from_secs(1),
            ))
        };
        let mut config = DelegatedConfig::new(
            start.client_id.clone(),
            app.authorize_url.clone(),
            app.token_url.clone(),
            app.redirect_uri.clone(),
            secret,
        );
        config.refresh_ahead = start.settings.refresh_ahead;
        config.read_retry_after = !profile.has(Mutation::IgnoresRetryAfter);
        config.app_hold_cap =
            (!naive && !profile.has(Mutation::TightAuthLoop)).then_some(start.settings.backoff_cap);
        if naive || profile.has(Mutation::DisconnectsOnInvalidClient) {
            config.client_refusal = Blame::User;
        }
        if naive {
            config.on_needs_user = OnNeedsUser::Forget;
            config.refresh_attempts = 5;
            config.refresh_every = Duration::from_secs(1);
        }
        config
    }
}

fn read_sync_states(dir: &Path) -> SyncStates {
    let states: BTreeMap<String, SyncState> = std::fs::read(dir.join(SYNC_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let shared = states
        .into_iter()
        .map(|(upn, state)| (upn, Arc::new(Mutex::new(state))))
        .collect();
    Arc::new(Mutex::new(shared))
}

/// Keeps every user's sync state for the next process (once, at stop: not a write per round).
pub(super) fn write_sync_states(dir: &Path, states: &SyncStates) -> std::io::Result<()> {
    let states: BTreeMap<String, SyncState> = states
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(upn, state)| {
            let state = state.lock().unwrap_or_else(|p| p.into_inner()).clone();
            (upn.clone(), state)
        })
        .collect();
    let bytes = serde_json::to_vec(&states).map_err(std::io::Error::other)?;
    std::fs::write(dir.join(SYNC_FILE), bytes)
}
