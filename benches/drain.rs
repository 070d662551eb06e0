//! Drain benchmark (not a timed test): 100,000 queued messages through the SMTP mock after a
//! rotation, with the tenant's limits off, over both wirings. Reports messages/s, time to
//! drain and peak memory (VmHWM).
//!
//!   cargo bench --bench drain [-- MESSAGES]

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "a benchmark measures wall time and stops on any error"
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use maildrill::client::outbox::{NewMessage, Outbox};
use maildrill::client::secret::{Secret, SecretSource};
use maildrill::client::send::{Sender, SmtpConnector, TcpSmtpConnector, Transport};
use maildrill::client::token::{TokenConfig, TokenProvider};
use maildrill::client::transport::{HttpTransport, ReqwestTransport};
use maildrill::client::worker::{Worker, WorkerConfig};
use maildrill::mock::smtp::SmtpConfig;
use maildrill::tenant::demo;
use maildrill::{Journal, Seed, SharedClock, Sim, SimBuilder, SocketOptions};

const SECRET: &str = "Rot8Q~rotated-secret-for-the-drain-00000";

fn start() -> DateTime<Utc> {
    "2025-02-15T02:08:00Z".parse().unwrap()
}

/// The sim of both wirings: the demo tenant holding the sent mail, the SMTP mock with the
/// tenant's limits off (the figure measures maildrill, not Exchange's quotas), a bounded
/// journal.
fn sim() -> SimBuilder {
    let mut tenant = demo::tenant(start() - TimeDelta::days(1), SECRET, TimeDelta::days(365));
    tenant.settings.sent_capacity = 10_000;
    Sim::builder()
        .start(start())
        .seed(Seed(7))
        .tenant(tenant)
        .journal(Journal::bounded(10_000))
        .smtp(SmtpConfig {
            messages_per_minute: usize::MAX / 2,
            recipients_per_day: usize::MAX / 2,
            ..SmtpConfig::default()
        })
}

fn fill(messages: usize) -> (Arc<Outbox>, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("maildrill-drain-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let outbox = Arc::new(Outbox::open(&path).unwrap());
    let mut ids = Seed(7).stream("ids");
    for i in 0..messages {
        let message = NewMessage {
            from: demo::MAILBOX.into(),
            to: vec!["customer@example.com".into()],
            subject: format!("order {i}"),
            body: "Thank you for your order.".into(),
            message_id: None,
        };
        outbox
            .enqueue(&message, start() - TimeDelta::hours(14), &mut ids)
            .unwrap();
    }
    (outbox, path)
}

fn worker(
    clock: SharedClock,
    http: Arc<dyn HttpTransport>,
    token_url: String,
    connector: Arc<dyn SmtpConnector>,
    ca_pem: String,
    outbox: Arc<Outbox>,
) -> Worker {
    let secret = SecretSource::Value(Secret::new(SECRET));
    let tokens = Arc::new(TokenProvider::new(
        TokenConfig::new(token_url, demo::APP_ID, secret.clone()),
        clock.clone(),
        http,
    ));
    Worker {
        config: WorkerConfig {
            stop_when_empty: true,
            ..WorkerConfig::default()
        },
        outbox,
        sender: Sender {
            tokens,
            transport: Transport::Smtp {
                connector,
                tls_domain: "localhost".into(),
                ca_pem: Some(ca_pem),
                hello_name: "mailman.contoso.example".into(),
            },
            clock: clock.clone(),
            mailbox: demo::MAILBOX.into(),
            timeout: Duration::from_secs(120),
            session: Default::default(),
        },
        secret,
        clock,
        wake: Arc::new(tokio::sync::Notify::new()),
        log: Arc::new(Mutex::new(Vec::new())),
        rng: std::sync::Mutex::new(Seed(7).stream("jitter")),
        metrics: None,
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn report(wiring: &str, messages: usize, delivered: usize, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    println!(
        "drain wiring={wiring} messages={messages} delivered={delivered} secs={secs:.2} rate={:.0} msg/s peak_rss_mib={:.0}",
        delivered as f64 / secs,
        peak_rss_mib()
    );
}

fn in_memory(messages: usize) {
    let (outbox, path) = fill(messages);
    let runtime = maildrill::time::replay_runtime().unwrap();
    let (delivered, elapsed) = runtime.block_on(async {
        let sim = sim().build_in_memory().unwrap();
        let memory = sim.memory().unwrap();
        let worker = worker(
            sim.clock().clone(),
            memory.http,
            sim.endpoints().token_url.clone(),
            memory.smtp,
            sim.ca_pem().to_string(),
            outbox,
        );
        let started = Instant::now();
        worker.run(start() + TimeDelta::days(1)).await.unwrap();
        (sim.smtp().accepted() as usize, started.elapsed())
    });
    report("in-memory", messages, delivered, elapsed);
    cleanup(&path);
}

fn sockets(messages: usize) {
    let (outbox, path) = fill(messages);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (delivered, elapsed) = runtime.block_on(async {
        let sim = sim()
            .sockets(SocketOptions::default())
            .build()
            .await
            .unwrap();
        let reqwest = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let connector = Arc::new(TcpSmtpConnector {
            address: sim.smtp_addr().unwrap().to_string(),
        });
        let worker = worker(
            sim.clock().clone(),
            Arc::new(ReqwestTransport::new(reqwest)),
            sim.endpoints().token_url.clone(),
            connector,
            sim.ca_pem().to_string(),
            outbox,
        );
        let started = Instant::now();
        worker.run(start() + TimeDelta::days(1)).await.unwrap();
        (sim.smtp().accepted() as usize, started.elapsed())
    });
    report("sockets", messages, delivered, elapsed);
    cleanup(&path);
}

fn cleanup(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

fn main() {
    let messages = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let wiring = std::env::var("DRAIN_WIRING").unwrap_or_default();
    if wiring != "sockets" {
        in_memory(messages);
    }
    if wiring != "in-memory" {
        sockets(messages);
    }
}
