//! The replay: the tenant and the mocks on one paused runtime, a subject started on them, the
//! scenario's traffic submitted and its timeline performed until the end; then what the
//! harness saw, read into [`Observations`] (`observe`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::observe::{self, Record};
use super::plan::{Action, Plan};
use super::{Wiring, Workspace};
use crate::check::Observations;
use crate::journal::Journal;
use crate::mock::smtp::{SmtpConfig, SmtpServer};
use crate::mock::{HttpMocks, HttpMocksConfig};
use crate::subject::{Endpoints, MemoryTransports, Message, Process, SecretHandle, Start, Subject};
use crate::tenant::{Directory, DirectoryConfig, SecretSpec, SharedDirectory};
use crate::time::{
    ClockExt as _, SharedClock, VirtualClock, replay_runtime, socket_replay_runtime, to_chrono,
};
use crate::wiring::memory::{MemoryNet, MemorySmtp};
use crate::wiring::socket::{HttpListener, ServerHandle, SmtpListener};

/// How long a subject may take to start, take a message or stop, on the replay's clock.
const START_WITHIN: Duration = Duration::from_secs(60);
const SUBMIT_WITHIN: Duration = Duration::from_secs(30);
const STOP_WITHIN: Duration = Duration::from_secs(60);

/// The simulated Microsoft side of one replay and how a subject reaches it.
struct World {
    clock: SharedClock,
    directory: SharedDirectory,
    journal: Journal,
    mocks: HttpMocks,
    endpoints: Endpoints,
    memory: Option<MemoryTransports>,
    /// On sockets, the listener's `https://127.0.0.1:PORT`, which the mocks' links name.
    socket_base: Option<String>,
    /// Loopback listeners, serving while they live.
    _servers: Vec<ServerHandle>,
}

/// Replays `plan` against `subject` through `wiring`.
pub(super) fn replay<S: Subject>(
    plan: &Plan,
    subject: &S,
    workspace: &Workspace,
    wiring: Wiring,
) -> Result<(Observations, Journal, Option<String>), String> {
    let secret = SecretHandle::create(workspace.secret_file.clone(), &plan.secret.value)
        .map_err(|e| format!("failed to write the secret file: {e}"))?;
    let runtime = match wiring {
        Wiring::Memory => replay_runtime(),
        Wiring::Sockets => socket_replay_runtime(),
    }
    .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let world = World::build(plan, wiring).await?;
        let record = tokio::select! {
            biased;
            at = world.journal.stalled() => {
                return Err(format!(
                    "the replay stopped moving at {}: {} requests at that instant without the clock advancing (a client retrying without waiting?)",
                    crate::time::rfc3339(at),
                    crate::journal::STALL_LIMIT
                ));
            }
            record = drive(plan, subject, &world, &secret, &workspace.state_dir) => record?,
        };
        let observations = observe::observe(plan, &world.journal, &world.directory, record);
        Ok((observations, world.journal.clone(), world.socket_base.clone()))
    })
}

impl World {
    /// The tenant, the mocks with the scenario's faults, and the wiring's way to them.
    async fn build(plan: &Plan, wiring: Wiring) -> Result<World, String> {
        let seed = plan.seed;
        let pki = crate::tls::Pki::generate().map_err(|e| e.to_string())?;
        let clock: SharedClock = VirtualClock::starting_at(plan.start).shared();
        let directory = Directory::new(&DirectoryConfig {
            seed,
            tenants: vec![plan.tenant.clone()],
        })
        .shared();
        let journal = Journal::new();
        // On sockets the listeners come first: the mocks write their address into the links
        // they hand out (a delta page's nextLink), which a subject follows as it is.
        let listeners = match wiring {
            Wiring::Memory => None,
            Wiring::Sockets => Some(Listeners::bind().await.map_err(|e| e.to_string())?),
        };
        let mut config = HttpMocksConfig {
            seed,
            ..HttpMocksConfig::default()
        };
        let socket_base = listeners.as_ref().map(|l| l.endpoints.graph_base.clone());
        if let Some(listeners) = &listeners {
            config.endpoints = listeners.endpoints.clone();
        }
        let mocks = HttpMocks::new(directory.clone(), clock.clone(), journal.clone(), config);
        for fault in &plan.faults {
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
        let tenant = &plan.tenant.id;
        let (endpoints, memory, servers) = match listeners {
            None => {
                let memory = MemoryTransports {
                    http: Arc::new(MemoryNet::new(mocks.clone())),
                    smtp: Arc::new(MemorySmtp::new(smtp)),
                };
                let base = crate::mock::Endpoints::default();
                let endpoints = endpoints(
                    &base,
                    tenant,
                    "https://events.pagerduty.com",
                    ("smtp.office365.com", 587),
                    &pki,
                );
                (endpoints, Some(memory), Vec::new())
            }
            Some(listeners) => listeners.serve(tenant, &mocks, smtp, &pki)?,
        };
        Ok(World {
            clock,
            directory,
            journal,
            mocks,
            endpoints,
            memory,
            socket_base,
            _servers: servers,
        })
    }
}

/// What a subject is handed: the mocks' bases, the SMTP host and port, the CA.
fn endpoints(
    base: &crate::mock::Endpoints,
    tenant: &str,
    alerts: &str,
    (smtp_host, smtp_port): (&str, u16),
    pki: &crate::tls::Pki,
) -> Endpoints {
    let authority = format!("{}/{tenant}", base.login_base);
    Endpoints {
        token_url: format!("{authority}/oauth2/v2.0/token"),
        authority,
        graph_url: format!("{}/v1.0", base.graph_base),
        smtp_host: smtp_host.to_string(),
        smtp_port,
        alerts_url: format!("{alerts}/v2/enqueue"),
        ca_pem: pki.ca_pem().to_string(),
    }
}

/// Loopback listeners bound on this runtime before the mocks exist: HTTPS for the token
/// endpoint, Graph and the alert sink on one port, SMTP with STARTTLS on another. IP literals
/// only: a host name would be resolved on a blocking thread, off the replay's clock.
struct Listeners {
    http: tokio::net::TcpListener,
    smtp: tokio::net::TcpListener,
    endpoints: crate::mock::Endpoints,
}

impl Listeners {
    async fn bind() -> std::io::Result<Listeners> {
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let http = tokio::net::TcpListener::bind(loopback).await?;
        let smtp = tokio::net::TcpListener::bind(loopback).await?;
        let base = format!("https://{}", http.local_addr()?);
        let endpoints = crate::mock::Endpoints {
            login_base: base.clone(),
            graph_base: base,
        };
        Ok(Listeners {
            http,
            smtp,
            endpoints,
        })
    }

    /// Starts serving; the servers run while the returned handles live.
    fn serve(
        self,
        tenant: &str,
        mocks: &HttpMocks,
        smtp: SmtpServer,
        pki: &crate::tls::Pki,
    ) -> Result<(Endpoints, Option<MemoryTransports>, Vec<ServerHandle>), String> {
        let tls = pki.server_config(true).map_err(|e| e.to_string())?;
        let smtp_port = self.smtp.local_addr().map_err(|e| e.to_string())?.port();
        // The alert sink shares the HTTP listener.
        let alerts = &self.endpoints.login_base;
        let endpoints = endpoints(
            &self.endpoints,
            tenant,
            alerts,
            ("127.0.0.1", smtp_port),
            pki,
        );
        let http = HttpListener::new(self.http, mocks.clone(), Some(tls));
        let smtp = SmtpListener::new(self.smtp, smtp);
        Ok((endpoints, None, vec![http.spawn(), smtp.spawn()]))
    }
}

/// What happens at an instant of the replay, in the order it happens.
enum Event<'a> {
    Outbound(usize),
    Inbound,
    Step(&'a Action),
}

/// Every message of every traffic window and every timeline step, in time order; at one
/// instant, traffic before steps (windows may overlap).
fn schedule(plan: &Plan) -> Vec<(DateTime<Utc>, Event<'_>)> {
    let mut events = Vec::new();
    for window in &plan.traffic {
        let mut at = window.from;
        while at < window.until.min(plan.end) {
            events.push((at, 0, window.inbound));
            at += to_chrono(window.every);
        }
    }
    events.sort_by_key(|(at, _, inbound)| (*at, *inbound));
    let mut outbound = 0;
    let mut timeline: Vec<(DateTime<Utc>, u8, Event<'_>)> = events
        .into_iter()
        .map(|(at, order, inbound)| {
            let event = if inbound {
                Event::Inbound
            } else {
                outbound += 1;
                Event::Outbound(outbound - 1)
            };
            (at, order, event)
        })
        .collect();
    timeline.extend(plan.steps.iter().map(|s| (s.at, 1, Event::Step(&s.action))));
    timeline.sort_by_key(|(at, order, _)| (*at, *order));
    timeline.into_iter().map(|(at, _, e)| (at, e)).collect()
}

/// Starts the subject, plays the schedule against it until the end, and stops it.
async fn drive<S: Subject>(
    plan: &Plan,
    subject: &S,
    world: &World,
    secret: &SecretHandle,
    state_dir: &Path,
) -> Result<Record, String> {
    let mut record = Record::default();
    let mut generation = 0;
    let mut process = start(plan, subject, world, secret, state_dir, generation).await?;
    for (at, event) in schedule(plan) {
        world.clock.sleep_until(world.clock.instant_at(at)).await;
        match event {
            Event::Outbound(n) => {
                let message = message(plan, n);
                record.submitted.push((message.message_id.clone(), at));
                let submitted = world
                    .clock
                    .timeout(SUBMIT_WITHIN, process.submit(message))
                    .await;
                check(subject, "submit", submitted)?;
            }
            Event::Inbound => record.inbound.push(deliver_inbound(plan, world, at)),
            Event::Step(Action::Restart) => {
                stop(subject, process, world, &mut record).await?;
                generation += 1;
                process = start(plan, subject, world, secret, state_dir, generation).await?;
            }
            Event::Step(action) => perform(action, at, plan, world, secret),
        }
    }
    world
        .clock
        .sleep_until(world.clock.instant_at(plan.end))
        .await;
    stop(subject, process, world, &mut record).await?;
    Ok(record)
}

async fn start<S: Subject>(
    plan: &Plan,
    subject: &S,
    world: &World,
    secret: &SecretHandle,
    state_dir: &Path,
    generation: u32,
) -> Result<S::Process, String> {
    let start = Start {
        endpoints: world.endpoints.clone(),
        tenant_id: plan.tenant.id.clone(),
        client_id: plan.app.app_id.clone(),
        mailbox: plan.mailbox.clone(),
        secret: secret.clone(),
        state_dir: state_dir.to_path_buf(),
        clock: world.clock.clone(),
        rng: plan.seed.stream(&format!("subject.{generation}")),
        memory: world.memory.clone(),
        settings: plan.settings,
        generation,
    };
    let started = world
        .clock
        .timeout(START_WITHIN, subject.start(start))
        .await;
    check(subject, "start", started)
}

async fn stop<S: Subject>(
    subject: &S,
    process: S::Process,
    world: &World,
    record: &mut Record,
) -> Result<(), String> {
    let now = world.clock.now_utc();
    record
        .synced
        .extend(process.synced().into_iter().map(|id| (id, now)));
    let stopped = world.clock.timeout(STOP_WITHIN, process.stop()).await;
    check(subject, "stop", stopped)
}

/// A subject's answer to one call, or the harness error that names the subject and the call.
fn check<S: Subject, T>(
    subject: &S,
    call: &str,
    outcome: Result<Result<T, crate::subject::SubjectError>, crate::time::Elapsed>,
) -> Result<T, String> {
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("subject {} failed to {call}: {e}", subject.name())),
        Err(elapsed) => Err(format!(
            "subject {} did not {call} within {} of the replay's clock",
            subject.name(),
            humantime::format_duration(elapsed.0)
        )),
    }
}

/// The `n`th outbound message, under a `Message-ID` the harness chose.
fn message(plan: &Plan, n: usize) -> Message {
    let domain = plan
        .mailbox
        .rsplit_once('@')
        .map_or("maildrill.invalid", |(_, d)| d);
    Message {
        message_id: format!("<maildrill.{}.{n}@{domain}>", plan.seed.0),
        from: plan.mailbox.clone(),
        to: vec!["customer@example.com".into()],
        subject: format!("message {n}"),
        body: "Hello.".into(),
    }
}

/// An inbound message lands in the mailbox: its Graph id and arrival.
fn deliver_inbound(plan: &Plan, world: &World, at: DateTime<Utc>) -> (String, DateTime<Utc>) {
    let mut directory = Directory::lock(&world.directory);
    let id = directory.next_message_id();
    if let Some(mailbox) = directory.mailbox_mut(&plan.tenant.id, &plan.mailbox) {
        mailbox.deliver(id.clone(), at, "customer@example.com", "a reply");
    }
    (id, at)
}

/// Performs one timeline step on the tenant, the mocks or the secret.
fn perform(action: &Action, now: DateTime<Utc>, plan: &Plan, world: &World, secret: &SecretHandle) {
    let (tenant, app) = (&plan.tenant.id, &plan.app.app_id);
    let mut directory = Directory::lock(&world.directory);
    match action {
        Action::Rotate(value) => {
            let spec = SecretSpec {
                value: value.clone(),
                display_name: "rotated".into(),
                start: now,
                end: now + TimeDelta::days(365),
            };
            directory.add_secret(tenant, app, &spec, now);
            let _ = secret.set(value);
        }
        Action::Paste(value) => {
            let _ = secret.set(value);
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
        Action::ClearFaults(target) => world.mocks.clear_target(*target),
        // The driver stops and starts the subject at these instants.
        Action::Restart => {}
    }
}
