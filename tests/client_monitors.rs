//! The client's expiry and latency monitors and its alerts, against the mock Graph and the
//! mock alert sink, on the virtual clock.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use common::*;
use maildrill::client::alert::Alerter;
use maildrill::client::monitor::{
    ExpiryConfig, ExpiryMonitor, LatencyConfig, LatencyMonitor, default_lead_times,
};
use maildrill::client::outbox::{NewMessage, Outbox};
use maildrill::client::secret::{Secret, SecretSource};
use maildrill::client::token::ClientAuth;
use maildrill::fault::{Activation, Fault, FaultKind, Target};
use maildrill::seed::Seed;
use maildrill::tenant::{Directory, SecretSpec, demo};
use maildrill::time::{ClockExt as _, replay_runtime, rfc3339};

const ALERTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

fn alerter(sim: &Sim) -> Arc<Alerter> {
    Arc::new(Alerter::new(
        Arc::new(sim.net.clone()),
        ALERTS_URL.into(),
        "R0UTINGKEY".into(),
        sim.clock.clone(),
    ))
}

fn expiry_monitor(sim: &Sim, alerter: Arc<Alerter>) -> ExpiryMonitor {
    let tokens = token_provider(
        sim,
        SecretSource::Value(Secret::new(SECRET)),
        ClientAuth::Basic,
        Duration::from_secs(300),
    );
    ExpiryMonitor {
        config: ExpiryConfig {
            app_id: demo::APP_ID.into(),
            graph_url: "https://graph.microsoft.com/v1.0".into(),
            lead_times: default_lead_times(),
            poll_every: Duration::from_secs(6 * 3600),
            fallback: vec![],
        },
        tokens,
        http: Arc::new(sim.net.clone()),
        alerter,
        clock: sim.clock.clone(),
        metrics: None,
    }
}

fn raised(alerter: &Alerter) -> Vec<String> {
    alerter
        .raised
        .lock()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                rfc3339(e.at),
                e.action,
                e.dedup_key.rsplit('/').next().unwrap()
            )
        })
        .collect()
}

#[test]
fn expiry_alerts_fire_at_exactly_end_minus_lead_even_after_graph_becomes_unreadable() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-01-01T00:00:00Z"),
            tenant(at("2025-02-14T11:30:00Z")),
            81,
        );
        let alerter = alerter(&sim);
        expiry_monitor(&sim, alerter.clone())
            .run(at("2025-02-15T00:00:00Z"))
            .await;
        assert_eq!(
            raised(&alerter),
            [
                "2025-01-15T11:30:00Z trigger 30d",
                "2025-01-31T11:30:00Z trigger 14d",
                "2025-02-07T11:30:00Z trigger 7d",
                "2025-02-13T11:30:00Z trigger 1d",
                // The secret has expired: Graph cannot be read any more, the known date still fires.
                "2025-02-14T11:30:00Z trigger 0d",
            ]
        );
        assert_eq!(alerter.pending(), 0);
        let journal = sim.mocks.journal().render();
        assert!(
            journal.contains("2025-01-15T11:30:00Z alerts enqueue POST /v2/enqueue"),
            "{journal}"
        );
    });
}

#[test]
fn rotating_the_secret_resolves_its_alerts() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-01-01T00:00:00Z"),
            tenant(at("2025-02-14T11:30:00Z")),
            82,
        );
        let alerter = alerter(&sim);
        let monitor = expiry_monitor(&sim, alerter.clone());
        let rotate = async {
            sim.clock
                .sleep_until(sim.clock.instant_at(at("2025-02-10T00:00:00Z")))
                .await;
            let now = sim.clock.now_utc();
            let spec = SecretSpec {
                value: "New8Q~next".into(),
                display_name: "next".into(),
                start: now,
                end: now + TimeDelta::days(365),
            };
            Directory::lock(sim.mocks.directory()).add_secret(
                demo::TENANT_ID,
                demo::APP_ID,
                &spec,
                now,
            );
        };
        tokio::join!(monitor.run(at("2025-02-16T00:00:00Z")), rotate);
        let events = raised(&alerter);
        assert_eq!(
            events.iter().filter(|e| e.contains(" trigger ")).count(),
            3,
            "{events:#?}"
        );
        assert_eq!(
            events.iter().filter(|e| e.contains(" resolve ")).count(),
            3,
            "{events:#?}"
        );
        assert!(
            events[3].starts_with("2025-02-10T00:00:00Z resolve"),
            "{events:#?}"
        );
    });
}

/// A latency monitor with the default settings over an empty outbox at 11:00, and a message to
/// enqueue.
struct Stall {
    sim: Sim,
    alerter: Arc<Alerter>,
    outbox: Arc<Outbox>,
    monitor: LatencyMonitor,
    message: NewMessage,
}

fn stall(seed: u64) -> Stall {
    let sim = Sim::new(
        at("2025-02-14T11:00:00Z"),
        tenant(at("2025-03-01T00:00:00Z")),
        seed,
    );
    let alerter = alerter(&sim);
    let outbox = Arc::new(Outbox::in_memory().unwrap());
    let monitor = LatencyMonitor {
        config: LatencyConfig::default(),
        outbox: outbox.clone(),
        alerter: alerter.clone(),
        clock: sim.clock.clone(),
        wake: None,
    };
    let message = NewMessage {
        from: demo::MAILBOX.into(),
        to: vec!["a@example.com".into()],
        subject: "s".into(),
        body: "b".into(),
        message_id: None,
    };
    Stall {
        sim,
        alerter,
        outbox,
        monitor,
        message,
    }
}

#[test]
fn a_stalled_queue_alerts_at_the_threshold_and_resolves_after_recovery() {
    replay_runtime().unwrap().block_on(async {
        let Stall {
            sim,
            alerter,
            outbox,
            monitor,
            message,
        } = stall(83);
        let stuck = outbox
            .enqueue(&message, sim.clock.now_utc(), &mut Seed(83).stream("ids"))
            .unwrap();
        let deliver = async {
            sim.clock.sleep(Duration::from_secs(600)).await;
            outbox.delivered(stuck.id, sim.clock.now_utc()).unwrap();
        };
        tokio::join!(monitor.run(at("2025-02-14T11:40:00Z")), deliver);
        let events = raised(&alerter);
        assert_eq!(events.len(), 2, "{events:#?}");
        assert!(
            events[0].starts_with("2025-02-14T11:05:00.001Z trigger mail-sendout"),
            "{events:#?}"
        );
        // The 10-minute delivery keeps the p95 high until it leaves the 15-minute window at
        // 11:25; the alert resolves after five healthy minutes more.
        assert!(
            events[1].starts_with("2025-02-14T11:30:") && events[1].contains("resolve"),
            "{events:#?}"
        );
    });
}

#[test]
fn a_queue_stalling_again_soon_after_recovery_pages_once() {
    replay_runtime().unwrap().block_on(async {
        let Stall {
            sim,
            alerter,
            outbox,
            monitor,
            message,
        } = stall(84);
        let mut ids = Seed(84).stream("ids");
        // Nineteen prompt deliveries keep the p95 low while one slow delivery is in it.
        for _ in 0..19 {
            let fast = outbox
                .enqueue(&message, sim.clock.now_utc(), &mut ids)
                .unwrap();
            outbox.delivered(fast.id, sim.clock.now_utc()).unwrap();
        }
        // Two stalls of six minutes, back to back: healthy for a moment in between. Each
        // ends 5 s past a 30-second check, so no delivery ties with a check at one instant
        // (which of two tied wake-ups runs first is the runtime's choice, not the monitor's).
        let stalls = async {
            for _ in 0..2 {
                let stuck = outbox
                    .enqueue(&message, sim.clock.now_utc(), &mut ids)
                    .unwrap();
                sim.clock.sleep(Duration::from_secs(365)).await;
                outbox.delivered(stuck.id, sim.clock.now_utc()).unwrap();
                sim.clock.sleep(Duration::from_secs(1)).await;
            }
        };
        tokio::join!(monitor.run(at("2025-02-14T12:00:00Z")), stalls);
        let events = raised(&alerter);
        assert_eq!(events.len(), 2, "one trigger, one resolve: {events:#?}");
        assert!(events[0].contains("trigger"), "{events:#?}");
        assert!(events[1].contains("resolve"), "{events:#?}");
    });
}

#[test]
fn alerts_wait_while_the_sink_is_down_and_go_out_after() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-02-14T11:00:00Z"),
            tenant(at("2025-03-01T00:00:00Z")),
            84,
        );
        sim.mocks
            .inject(Fault {
                target: Target::Alerts,
                operation: None,
                kind: FaultKind::ResetPeer,
                activation: Activation {
                    until: Some(at("2025-02-14T12:00:00Z")),
                    ..Activation::default()
                },
            })
            .unwrap();
        let alerter = alerter(&sim);
        let outbox = Arc::new(Outbox::in_memory().unwrap());
        let message = NewMessage {
            from: demo::MAILBOX.into(),
            to: vec!["a@example.com".into()],
            subject: "s".into(),
            body: "b".into(),
            message_id: None,
        };
        outbox
            .enqueue(&message, sim.clock.now_utc(), &mut Seed(84).stream("ids"))
            .unwrap();
        let monitor = LatencyMonitor {
            config: LatencyConfig::default(),
            outbox,
            alerter: alerter.clone(),
            clock: sim.clock.clone(),
            wake: None,
        };
        monitor.run(at("2025-02-14T11:10:00Z")).await;
        assert_eq!(alerter.pending(), 1);
        sim.clock
            .sleep_until(sim.clock.instant_at(at("2025-02-14T12:00:00Z")))
            .await;
        alerter.flush().await;
        assert_eq!(alerter.pending(), 0);
        let journal = sim.mocks.journal().render();
        assert!(
            journal.contains("alerts enqueue POST /v2/enqueue") && journal.contains("-> 202"),
            "{journal}"
        );
    });
}
