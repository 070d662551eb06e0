//! The restart path of 2025, without the loss: a client killed in the middle of the outage
//! comes back on the same outbox database, the secret rotated by restart, and every message
//! goes out, in-flight ones included.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeDelta;
use common::*;
use maildrill::client::outbox::{NewMessage, Outbox, State};
use maildrill::client::secret::{Secret, SecretSource};
use maildrill::client::send::{Sender, Transport};
use maildrill::client::token::ClientAuth;
use maildrill::client::worker::{Worker, WorkerConfig};
use maildrill::mock::smtp::SmtpServer;
use maildrill::seed::Seed;
use maildrill::tenant::{Directory, SecretSpec, demo};
use maildrill::time::{ClockExt as _, replay_runtime};
use maildrill::wiring::memory::MemorySmtp;

fn worker(
    sim: &Sim,
    smtp: &SmtpServer,
    ca_pem: &str,
    outbox: Arc<Outbox>,
    secret: &str,
    seed: u64,
) -> Worker {
    let source = SecretSource::Value(Secret::new(secret));
    let tokens = token_provider(
        sim,
        source.clone(),
        ClientAuth::Body,
        Duration::from_secs(300),
    );
    Worker {
        config: WorkerConfig::default(),
        outbox,
        sender: Sender {
            tokens,
            transport: Transport::Smtp {
                connector: Arc::new(MemorySmtp::new(smtp.clone())),
                tls_domain: "localhost".into(),
                ca_pem: Some(ca_pem.to_string()),
                hello_name: "mailman.contoso.example".into(),
            },
            clock: sim.clock.clone(),
            mailbox: demo::MAILBOX.into(),
            timeout: Duration::from_secs(120),
            session: Default::default(),
        },
        secret: source,
        clock: sim.clock.clone(),
        wake: Arc::new(tokio::sync::Notify::new()),
        log: Arc::new(Mutex::new(Vec::new())),
        rng: std::sync::Mutex::new(Seed(seed).stream("client.jitter")),
        metrics: None,
    }
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one story told in order: send, kill, restart, check"
)]
fn a_killed_client_resumes_from_its_database_with_nothing_lost() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-02-14T11:00:00Z"),
            tenant(at("2025-02-14T11:30:00Z")),
            101,
        );
        let (smtp, ca_pem) = sim.smtp(101);
        let path =
            std::env::temp_dir().join(format!("maildrill-restart-{}.db", std::process::id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let mut ids = Seed(101).stream("ids");
        // Traffic arrives after the secret expired at 11:30.
        sim.clock
            .sleep_until(sim.clock.instant_at(at("2025-02-14T12:00:00Z")))
            .await;
        {
            let outbox = Arc::new(Outbox::open(&path).unwrap());
            for i in 0..20 {
                let message = NewMessage {
                    from: demo::MAILBOX.into(),
                    to: vec!["a@example.com".into()],
                    subject: format!("m{i}"),
                    body: "b".into(),
                    message_id: None,
                };
                outbox
                    .enqueue(&message, sim.clock.now_utc(), &mut ids)
                    .unwrap();
            }
            // The first process runs into the outage and is killed at 16:00.
            let first = worker(&sim, &smtp, &ca_pem, outbox.clone(), SECRET, 1);
            let _ = sim
                .clock
                .timeout(
                    Duration::from_secs(4 * 3600),
                    first.run(at("2025-02-15T00:00:00Z")),
                )
                .await;
        }
        // The fix: a new secret, and a redeploy that reads it.
        let now = sim.clock.now_utc();
        let spec = SecretSpec {
            value: "New8Q~redeployed".into(),
            display_name: "rotated".into(),
            start: now,
            end: now + TimeDelta::days(365),
        };
        Directory::lock(sim.mocks.directory()).add_secret(
            demo::TENANT_ID,
            demo::APP_ID,
            &spec,
            now,
        );
        sim.clock.sleep(Duration::from_secs(60)).await;
        let outbox = Arc::new(Outbox::open(&path).unwrap());
        outbox.recover(sim.clock.now_utc()).unwrap();
        assert_eq!(
            outbox.depth().unwrap(),
            20,
            "nothing was lost or failed while the secret was expired"
        );
        let second = worker(&sim, &smtp, &ca_pem, outbox.clone(), "New8Q~redeployed", 2);
        second
            .run(sim.clock.now_utc() + TimeDelta::minutes(10))
            .await
            .unwrap();
        assert_eq!(outbox.counts().unwrap(), [(State::Delivered, 20)]);
        assert_eq!(smtp.received().len(), 20);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    });
}
