//! The 2025 incident against the client, compressed to its essentials: the secret expires at
//! 11:30, traffic keeps coming, the secret is rotated by file at 02:08 the next day. The
//! remediated client keeps every message and recovers within a minute without a restart, with
//! a bounded number of token requests; the naive-2025 profile loses mail and hammers Entra.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use maildrill::client::outbox::{NewMessage, Outbox, State};
use maildrill::client::secret::{Secret, SecretSource};
use maildrill::client::send::{Sender, Transport};
use maildrill::client::token::TokenConfig;
use maildrill::client::worker::{Retries, Worker, WorkerConfig, WorkerEvent};
use maildrill::seed::Seed;
use maildrill::tenant::{Directory, SecretSpec, demo};
use maildrill::time::{ClockExt as _, replay_runtime};
use maildrill::wiring::memory::MemorySmtp;

const ROTATED: &str = "New8Q~rotated-after-the-incident-0000000";

struct Outcome {
    enqueued: u64,
    counts: Vec<(State, u64)>,
    token_requests: u64,
    token_requests_in_outage: usize,
    first_delivery_after_rotation: Option<DateTime<Utc>>,
}

/// The two clients of the incident, as configurations of the one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    /// Backoff, the circuit, the secret re-read from its file.
    Remediated,
    /// A fixed 1 s retry, five attempts, the secret read once, no hold after a refusal.
    Naive2025,
}

#[expect(
    clippy::too_many_lines,
    reason = "the incident wired by hand, in the order its parts depend on each other"
)]
fn incident(profile: Profile, seed: u64) -> Outcome {
    replay_runtime().unwrap().block_on(async move {
        let start = at("2025-02-14T11:00:00Z");
        let rotation = at("2025-02-15T02:08:00Z");
        let end = at("2025-02-15T06:08:00Z");
        let sim = Sim::new(start, tenant(at("2025-02-14T11:30:00Z")), seed);
        let (smtp, ca_pem) = sim.smtp(seed);
        let secret_file = std::env::temp_dir().join(format!(
            "maildrill-incident-{}-{profile:?}-{seed}",
            std::process::id()
        ));
        std::fs::write(&secret_file, SECRET).unwrap();
        // The naive client read its secret once at start: rotation only by restart.
        let secret = match profile {
            Profile::Naive2025 => SecretSource::Value(Secret::new(SECRET)),
            Profile::Remediated => SecretSource::File(secret_file.clone()),
        };
        let mut config = TokenConfig::new(sim.token_url(), demo::APP_ID, secret.clone());
        if profile == Profile::Naive2025 {
            // The 2025 client asked Entra every time: no hold after a refusal.
            config.refusal_hold_cap = Duration::ZERO;
        }
        let tokens = provider(&sim, config);
        let outbox = Arc::new(Outbox::in_memory().unwrap());
        let wake = Arc::new(tokio::sync::Notify::new());
        let log = Arc::new(Mutex::new(Vec::new()));
        let metrics = Arc::new(maildrill::client::metrics::Metrics::default());
        let worker = Worker {
            config: WorkerConfig {
                retries: match profile {
                    Profile::Remediated => Retries::Backoff,
                    Profile::Naive2025 => Retries::Fixed {
                        every: Duration::from_secs(1),
                        attempts: 5,
                    },
                },
                ..WorkerConfig::default()
            },
            outbox: outbox.clone(),
            sender: Sender {
                tokens: tokens.clone(),
                transport: Transport::Smtp {
                    connector: Arc::new(MemorySmtp::new(smtp.clone())),
                    tls_domain: "localhost".into(),
                    ca_pem: Some(ca_pem.clone()),
                    hello_name: "mailman.contoso.example".into(),
                },
                clock: sim.clock.clone(),
                mailbox: demo::MAILBOX.into(),
                timeout: Duration::from_secs(120),
                session: Default::default(),
            },
            secret,
            clock: sim.clock.clone(),
            wake: wake.clone(),
            log: log.clone(),
            rng: std::sync::Mutex::new(Seed(seed).stream("client.jitter")),
            metrics: Some(metrics.clone()),
        };
        // Traffic: one message every two minutes until 06:00.
        let traffic = {
            let (clock, outbox, wake) = (sim.clock.clone(), outbox.clone(), wake.clone());
            async move {
                let mut ids = Seed(seed).stream("client.ids");
                let mut n: u64 = 0;
                while clock.now_utc() < at("2025-02-15T06:00:00Z") {
                    let message = NewMessage {
                        from: demo::MAILBOX.into(),
                        to: vec!["customer@example.com".into()],
                        subject: format!("order {n}"),
                        body: "Thanks.".into(),
                        message_id: None,
                    };
                    outbox.enqueue(&message, clock.now_utc(), &mut ids).unwrap();
                    wake.notify_one();
                    n += 1;
                    clock.sleep(Duration::from_secs(120)).await;
                }
                n
            }
        };
        // The fix of 02:08: a new secret in the tenant, and in the file the client reads.
        let fix = {
            let (clock, directory, path) = (
                sim.clock.clone(),
                sim.mocks.directory().clone(),
                secret_file.clone(),
            );
            async move {
                clock.sleep_until(clock.instant_at(rotation)).await;
                let now = clock.now_utc();
                let spec = SecretSpec {
                    value: ROTATED.into(),
                    display_name: "rotated".into(),
                    start: now,
                    end: now + TimeDelta::days(365),
                };
                Directory::lock(&directory).add_secret(demo::TENANT_ID, demo::APP_ID, &spec, now);
                std::fs::write(&path, ROTATED).unwrap();
            }
        };
        let (result, enqueued, ()) = tokio::join!(worker.run(end), traffic, fix);
        result.unwrap();
        let _ = std::fs::remove_file(&secret_file);
        let journal = sim.mocks.journal().entries();
        let outage = |e: &&maildrill::journal::JournalEntry| {
            e.operation == "token" && e.at > at("2025-02-14T12:00:00Z") && e.at < rotation
        };
        let first_delivery_after_rotation = log
            .lock()
            .unwrap()
            .iter()
            .find(|(at, event)| *at >= rotation && matches!(event, WorkerEvent::Delivered { .. }))
            .map(|(at, _)| *at);
        let exposition = metrics.encode();
        assert!(!exposition.contains(SECRET) && !exposition.contains(ROTATED));
        assert!(
            exposition.contains("maildrill_client_outbox_depth 0"),
            "{exposition}"
        );
        Outcome {
            enqueued,
            counts: outbox.counts().unwrap(),
            token_requests: tokens.requests(),
            token_requests_in_outage: journal.iter().filter(outage).count(),
            first_delivery_after_rotation,
        }
    })
}

#[test]
fn the_remediated_client_keeps_every_message_and_recovers_without_a_restart() {
    let outcome = incident(Profile::Remediated, 71);
    assert_eq!(outcome.enqueued, 570, "11:00 to 05:58, every two minutes");
    assert_eq!(outcome.counts, [(State::Delivered, outcome.enqueued)]);
    let recovered = outcome.first_delivery_after_rotation.unwrap();
    assert!(
        recovered - at("2025-02-15T02:08:00Z") <= TimeDelta::seconds(60),
        "recovered at {recovered}"
    );
    // One probe per backoff interval, jittered within [2.5 min, 5 min] once capped: at most 24
    // an hour over the 14 hours, plus the ramp.
    assert!(
        outcome.token_requests_in_outage <= 14 * 24 + 10,
        "{} token requests in the outage",
        outcome.token_requests_in_outage
    );
}

#[test]
fn the_naive_2025_client_loses_mail_and_hammers_entra() {
    let outcome = incident(Profile::Naive2025, 71);
    let failed = outcome
        .counts
        .iter()
        .find(|(s, _)| *s == State::Failed)
        .map_or(0, |(_, n)| *n);
    assert!(failed >= 400, "{:?}", outcome.counts);
    assert!(
        outcome.first_delivery_after_rotation.is_none(),
        "no recovery without a restart"
    );
    // Five attempts a second apart per message, each one a token request.
    assert!(
        outcome.token_requests_in_outage > 2000,
        "{} token requests in the outage",
        outcome.token_requests_in_outage
    );
}

#[test]
fn the_incident_replays_to_the_same_outcome() {
    let a = incident(Profile::Remediated, 72);
    let b = incident(Profile::Remediated, 72);
    assert_eq!(
        (a.counts, a.token_requests, a.first_delivery_after_rotation),
        (b.counts, b.token_requests, b.first_delivery_after_rotation)
    );
}
