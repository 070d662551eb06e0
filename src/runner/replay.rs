//! The replay: the tenant and the mocks stood up by [`Sim`] on one paused runtime, a subject
//! started on them, the scenario's traffic submitted and its timeline performed until the end;
//! then what the harness saw, read into [`Observations`] (`observe`).
//!
//! The steps, in order: [`runtime`] for the wiring, [`World::build`] (the sim with the
//! scenario's tenant, seed and faults), [`run`] (the subject driven by [`drive`] through the
//! [`schedule`], each timeline step carried out by [`perform`], unless the replay stalls), then
//! `observe`.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::observe::{self, Record};
use super::{Wiring, Workspace};
use crate::check::Observations;
use crate::control::ControlOptions;
use crate::journal::Journal;
use crate::scenario::plan::{Action, Delegated, Plan};
use crate::sim::{Sim, SocketOptions};
use crate::subject::{
    CertificateHandle, Connect, ControlAccess, DelegatedApp, MemoryTransports, Message, Process,
    SecretHandle, Start, Subject,
};
use crate::tenant::{Directory, SecretSpec};
use crate::time::{
    CalendarClock, ClockExt as _, SharedClock, replay_runtime, socket_replay_runtime, to_chrono,
};

/// How long a subject may take to start, take a message or stop, on the replay's clock.
const START_WITHIN: Duration = Duration::from_secs(60);
const SUBMIT_WITHIN: Duration = Duration::from_secs(30);
const STOP_WITHIN: Duration = Duration::from_secs(60);
const CONNECT_WITHIN: Duration = Duration::from_secs(120);

/// Replays `plan` against `subject` through `wiring`.
pub(super) fn replay<S: Subject>(
    plan: &Plan,
    subject: &S,
    workspace: &Workspace,
    wiring: Wiring,
) -> Result<(Observations, Journal, Option<String>), String> {
    let secret = SecretHandle::create(
        workspace.secret_file.clone(),
        plan.credential.secret_value(),
    )
    .map_err(|e| format!("failed to write the secret file: {e}"))?;
    let certificate = plan
        .credential
        .certificate()
        .map(|c| {
            CertificateHandle::create(
                workspace.cert_file.clone(),
                workspace.key_file.clone(),
                &c.cert_pem,
                c.key_pem(),
                &c.thumbprints().sha1_hex(),
            )
        })
        .transpose()
        .map_err(|e| format!("failed to write the certificate files: {e}"))?;
    let handles = Handles {
        secret,
        certificate,
    };
    runtime(wiring)?.block_on(async {
        let world = World::build(plan, wiring).await?;
        let record = run(plan, subject, &world, &handles, &workspace.state_dir).await?;
        let sim = &world.sim;
        let observations = observe::observe(plan, sim.journal(), sim.directory(), record);
        let socket_base = sim.socket_base().map(str::to_string);
        Ok((observations, sim.journal().clone(), socket_base))
    })
}

/// The replay's runtime: paused and current-thread, with the I/O driver only on sockets; a
/// drill's runs in real time.
fn runtime(wiring: Wiring) -> Result<tokio::runtime::Runtime, String> {
    match wiring {
        Wiring::Memory => replay_runtime(),
        Wiring::Sockets => socket_replay_runtime(),
        Wiring::RealTime => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
    }
    .map_err(|e| e.to_string())
}

/// The credentials the timeline sets: the secret file, and the certificate files when the
/// client authenticates with a certificate.
struct Handles {
    secret: SecretHandle,
    certificate: Option<CertificateHandle>,
}

/// The simulated Microsoft side of one replay and how a subject reaches it.
struct World {
    sim: Sim,
    /// What a subject is handed on the in-memory wiring (built once: every start shares it).
    memory: Option<MemoryTransports>,
    /// The control API, on a drill.
    control: Option<ControlAccess>,
}

impl World {
    /// The tenant and the mocks with the scenario's faults, on `wiring` (on sockets, the
    /// listeners bound on this runtime).
    async fn build(plan: &Plan, wiring: Wiring) -> Result<World, String> {
        let mut builder = Sim::builder()
            .seed(plan.seed)
            .start(plan.start)
            .tenant(plan.tenant.clone());
        for customer in &plan.customers {
            builder = builder.tenant(customer.clone());
        }
        for fault in &plan.faults {
            builder = builder.fault(fault.clone());
        }
        let mut token = None;
        if wiring != Wiring::Memory {
            builder = builder.sockets(SocketOptions::default());
        }
        if wiring == Wiring::RealTime {
            // A drill's mocks run on the calendar from the scenario's start, in real time,
            // with the control API for the subject's own test suite.
            let options = ControlOptions::new(CalendarClock::starting_at(plan.start))
                .map_err(|e| format!("failed to draw the control token: {e}"))?;
            token = Some(options.token.clone());
            builder = builder.control(options);
        }
        let sim = builder.build().await.map_err(|e| e.to_string())?;
        let control = token.map(|token| ControlAccess {
            url: format!(
                "{}{}",
                sim.socket_base().unwrap_or_default(),
                crate::control::BASE.trim_end_matches('/')
            ),
            token,
        });
        Ok(World {
            memory: sim.memory(),
            sim,
            control,
        })
    }

    fn clock(&self) -> &SharedClock {
        self.sim.clock()
    }
}

/// Drives the subject until the end, or fails when the replay stops moving (a million
/// journal entries at one instant).
async fn run<S: Subject>(
    plan: &Plan,
    subject: &S,
    world: &World,
    handles: &Handles,
    state_dir: &Path,
) -> Result<Record, String> {
    tokio::select! {
        biased;
        at = world.sim.journal().stalled() => Err(format!(
            "the replay stopped moving at {}: {} requests at that instant without the clock advancing (a client retrying without waiting?)",
            crate::time::rfc3339(at),
            crate::journal::STALL_LIMIT
        )),
        record = drive(plan, subject, world, handles, state_dir) => record,
    }
}

/// What happens at an instant of the replay, in the order it happens. A message's user is
/// the index of a delegated connection (always 0 for the app's own mailbox).
enum Event<'a> {
    Outbound(usize, usize),
    Inbound(usize),
    Step(&'a Action),
}

/// Every message of every traffic window and every timeline step, in time order; at one
/// instant, traffic before steps (windows may overlap). With delegated connections every user
/// sends and receives on each window, user `k` of `n` offset by `k/n` of the interval.
fn schedule(plan: &Plan) -> Vec<(DateTime<Utc>, Event<'_>)> {
    let users = plan
        .delegated
        .as_ref()
        .map_or(1, |d| d.connections.len().max(1));
    let mut events = Vec::new();
    for window in &plan.traffic {
        let every = to_chrono(window.every);
        for user in 0..users {
            let offset = every * i32::try_from(user).unwrap_or(i32::MAX) / users as i32;
            let mut at = window.from + offset;
            while at < window.until.min(plan.end) {
                events.push((at, window.inbound, user));
                at += every;
            }
        }
    }
    events.sort_by_key(|(at, inbound, user)| (*at, *inbound, *user));
    let mut outbound = 0;
    let mut timeline: Vec<(DateTime<Utc>, u8, Event<'_>)> = events
        .into_iter()
        .map(|(at, inbound, user)| {
            let event = if inbound {
                Event::Inbound(user)
            } else {
                outbound += 1;
                Event::Outbound(outbound - 1, user)
            };
            (at, 0, event)
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
    handles: &Handles,
    state_dir: &Path,
) -> Result<Record, String> {
    let mut record = Record::default();
    let mut generation = 0;
    let mut operators = Vec::new();
    let mut process = start(plan, subject, world, handles, state_dir, generation).await?;
    connect(plan, subject, world, &mut process).await?;
    for (at, event) in schedule(plan) {
        world
            .clock()
            .sleep_until(world.clock().instant_at(at))
            .await;
        match event {
            Event::Outbound(n, user) => {
                let message = message(plan, n, user);
                if plan.delegated.is_some() {
                    record
                        .senders
                        .insert(message.message_id.clone(), message.from.clone());
                }
                record.submitted.push((message.message_id.clone(), at));
                let submitted = world
                    .clock()
                    .timeout(SUBMIT_WITHIN, process.submit(message))
                    .await;
                check(subject, "submit", submitted)?;
            }
            Event::Inbound(user) => record.inbound.push(deliver_inbound(plan, world, at, user)),
            Event::Step(Action::Restart) => {
                stop(subject, process, world, &mut record).await?;
                generation += 1;
                process = start(plan, subject, world, handles, state_dir, generation).await?;
            }
            // The operator's script runs beside the traffic: it may wait out throttling.
            Event::Step(Action::RotateViaGraph(lifetime)) => {
                let operator = operator(plan, world, handles);
                let (lifetime, until) = (*lifetime, plan.end);
                operators.push(tokio::spawn(async move {
                    operator.rotate(lifetime, until).await
                }));
            }
            Event::Step(Action::Reconnect { tenant, upn }) => {
                connect_user(subject, world, &mut process, tenant, upn).await?;
            }
            Event::Step(action) => perform(action, at, plan, world, handles),
        }
    }
    world
        .clock()
        .sleep_until(world.clock().instant_at(plan.end))
        .await;
    for script in &operators {
        script.abort();
    }
    stop(subject, process, world, &mut record).await?;
    Ok(record)
}

/// Starts the subject (generation 0, or again after a restart on the same state directory),
/// handing it the sim's endpoints and, in memory, its transports.
async fn start<S: Subject>(
    plan: &Plan,
    subject: &S,
    world: &World,
    handles: &Handles,
    state_dir: &Path,
    generation: u32,
) -> Result<S::Process, String> {
    let start = Start {
        endpoints: world.sim.endpoints().clone(),
        tenant_id: plan.tenant.id.clone(),
        client_id: plan.app.app_id.clone(),
        mailbox: plan.mailbox.clone(),
        secret: handles.secret.clone(),
        certificate: handles.certificate.clone(),
        state_dir: state_dir.to_path_buf(),
        clock: world.clock().clone(),
        rng: plan.seed.stream(&format!("subject.{generation}")),
        memory: world.memory.clone(),
        settings: plan.settings,
        generation,
        control: world.control.clone(),
        delegated: plan.delegated.as_ref().map(|d| delegated_app(world, d)),
    };
    let started = world
        .clock()
        .timeout(START_WITHIN, subject.start(start))
        .await;
    check(subject, "start", started)
}

/// Where the multi-tenant app's users sign in: the `organizations` authority of the sim.
fn delegated_app(world: &World, delegated: &Delegated) -> DelegatedApp {
    let authority = &world.sim.endpoints().authority;
    let login = authority
        .rsplit_once('/')
        .map_or(authority.as_str(), |(l, _)| l);
    DelegatedApp {
        authorize_url: format!("{login}/organizations/oauth2/v2.0/authorize"),
        token_url: format!("{login}/organizations/oauth2/v2.0/token"),
        redirect_uri: delegated.redirect_uri.clone(),
    }
}

/// Every user of the scenario connects a mailbox at the start, one after the other, in a
/// browser the harness drives.
async fn connect<S: Subject>(
    plan: &Plan,
    subject: &S,
    world: &World,
    process: &mut S::Process,
) -> Result<(), String> {
    let Some(delegated) = &plan.delegated else {
        return Ok(());
    };
    for connection in &delegated.connections {
        connect_user(
            subject,
            world,
            process,
            &connection.tenant_id,
            &connection.upn,
        )
        .await?;
    }
    Ok(())
}

/// One user connects a mailbox through the subject, in a browser the harness drives.
async fn connect_user<S: Subject>(
    subject: &S,
    world: &World,
    process: &mut S::Process,
    tenant_id: &str,
    upn: &str,
) -> Result<(), String> {
    let user = Connect {
        upn: upn.to_string(),
        tenant_id: tenant_id.to_string(),
        browser: super::browser::browser(
            world.sim.mocks().clone(),
            world.clock().clone(),
            upn.to_string(),
        ),
    };
    let connected = world
        .clock()
        .timeout(CONNECT_WITHIN, process.connect(user))
        .await;
    check(subject, &format!("connect {upn}"), connected)
}

/// Stops the subject, first asking what it synced: only the subject can say.
async fn stop<S: Subject>(
    subject: &S,
    process: S::Process,
    world: &World,
    record: &mut Record,
) -> Result<(), String> {
    let now = world.clock().now_utc();
    record
        .synced
        .extend(process.synced().into_iter().map(|id| (id, now)));
    let stopped = world.clock().timeout(STOP_WITHIN, process.stop()).await;
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

/// The mailbox of traffic's user `user`: a delegated connection's, else the app's own.
fn sender(plan: &Plan, user: usize) -> (&str, &str) {
    match plan
        .delegated
        .as_ref()
        .and_then(|d| d.connections.get(user))
    {
        Some(connection) => (&connection.tenant_id, &connection.upn),
        None => (&plan.tenant.id, &plan.mailbox),
    }
}

/// The `n`th outbound message, from `user`, under a `Message-ID` the harness chose.
fn message(plan: &Plan, n: usize, user: usize) -> Message {
    let (_, from) = sender(plan, user);
    let domain = from
        .rsplit_once('@')
        .map_or("maildrill.invalid", |(_, d)| d);
    Message {
        message_id: format!("<maildrill.{}.{n}@{domain}>", plan.seed.0),
        from: from.to_string(),
        to: vec!["customer@example.com".into()],
        subject: format!("message {n}"),
        body: "Hello.".into(),
    }
}

/// An inbound message lands in `user`'s mailbox: its Graph id and arrival.
fn deliver_inbound(
    plan: &Plan,
    world: &World,
    at: DateTime<Utc>,
    user: usize,
) -> (String, DateTime<Utc>) {
    let (tenant, upn) = sender(plan, user);
    let mut directory = Directory::lock(world.sim.directory());
    let id = directory.next_message_id();
    if let Some(mailbox) = directory.mailbox_mut(tenant, upn) {
        mailbox.deliver(id.clone(), at, "customer@example.com", "a reply");
    }
    (id, at)
}

/// The operator's rotation script for the scenario's first app and the subject's secret file.
fn operator(plan: &Plan, world: &World, handles: &Handles) -> super::operator::Operator {
    super::operator::Operator {
        mocks: world.sim.mocks().clone(),
        clock: world.clock().clone(),
        tenant: plan.tenant.id.clone(),
        app: plan.app.app_id.clone(),
        secret: handles.secret.clone(),
    }
}

/// Performs one timeline step on the tenant, the mocks or the secret.
fn perform(action: &Action, now: DateTime<Utc>, plan: &Plan, world: &World, handles: &Handles) {
    let secret = &handles.secret;
    let (tenant, app) = (&plan.tenant.id, &plan.app.app_id);
    let mut directory = Directory::lock(world.sim.directory());
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
        Action::RotateCertificate(certificate) => {
            directory.add_certificate(tenant, app, certificate, now);
            if let Some(handle) = &handles.certificate {
                let thumbprint = certificate.thumbprints().sha1_hex();
                let _ = handle.set(&certificate.cert_pem, certificate.key_pem(), &thumbprint);
            }
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
        Action::ClearFaults(target) => world.sim.mocks().clear_target(*target),
        // The driver stops and starts the subject, or starts the operator's script, at these
        // instants.
        Action::User {
            tenant: user_tenant,
            upn,
            event,
        } => {
            directory.user_event(user_tenant, upn, *event, now);
        }
        Action::Tenant {
            tenant: customer,
            event,
        } => {
            // The event is about the app customers consented to: the multi-tenant one.
            let multi_tenant = plan
                .tenant
                .apps
                .iter()
                .find(|a| a.audience == crate::tenant::SignInAudience::MultiTenant)
                .map_or(app.as_str(), |a| a.app_id.as_str());
            directory.tenant_event(customer, multi_tenant, *event);
        }
        Action::Restart | Action::RotateViaGraph(_) | Action::Reconnect { .. } => {}
    }
}
