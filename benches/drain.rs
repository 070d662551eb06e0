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
use maildrill::journal::Journal;
use maildrill::mock::smtp::{SmtpConfig, SmtpServer};
use maildrill::mock::{Endpoints, HttpMocks, HttpMocksConfig};
use maildrill::seed::Seed;
use maildrill::tenant::{Directory, DirectoryConfig, SharedDirectory, demo};
use maildrill::time::{SharedClock, VirtualClock};
use maildrill::tls::Pki;
use maildrill::wiring::memory::{MemoryNet, MemorySmtp};
use maildrill::wiring::socket::{HttpListener, SmtpListener};

const SECRET: &str = "Rot8Q~rotated-secret-for-the-drain-00000";

fn start() -> DateTime<Utc> {
    "2025-02-15T02:08:00Z".parse().unwrap()
}

fn directory() -> SharedDirectory {
    let mut tenant = demo::tenant(start() - TimeDelta::days(1), SECRET, TimeDelta::days(365));
    tenant.settings.sent_capacity = 10_000;
    Directory::new(&DirectoryConfig {
        seed: Seed(7),
        tenants: vec![tenant],
    })
    .shared()
}

fn smtp_config(pki: &Pki) -> SmtpConfig {
    // The tenant's limits off: the figure measures maildrill, not Exchange's quotas.
    SmtpConfig {
        seed: Seed(7),
        tls: Some(pki.server_config(false).unwrap()),
        messages_per_minute: usize::MAX / 2,
        recipients_per_day: usize::MAX / 2,
        ..SmtpConfig::default()
    }
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
        let clock = VirtualClock::starting_at(start()).shared();
        let pki = Pki::generate().unwrap();
        let directory = directory();
        let journal = Journal::bounded(10_000);
        let mocks = HttpMocks::new(
            directory.clone(),
            clock.clone(),
            journal.clone(),
            HttpMocksConfig {
                seed: Seed(7),
                ..HttpMocksConfig::default()
            },
        );
        let smtp = SmtpServer::new(directory, clock.clone(), journal, smtp_config(&pki));
        let token_url = format!(
            "https://login.microsoftonline.com/{}/oauth2/v2.0/token",
            demo::TENANT_ID
        );
        let worker = worker(
            clock,
            Arc::new(MemoryNet::new(mocks)),
            token_url,
            Arc::new(MemorySmtp::new(smtp.clone())),
            pki.ca_pem().to_string(),
            outbox,
        );
        let started = Instant::now();
        worker.run(start() + TimeDelta::days(1)).await.unwrap();
        (smtp.accepted() as usize, started.elapsed())
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
        let clock = VirtualClock::starting_at(start()).shared();
        let pki = Pki::generate().unwrap();
        let directory = directory();
        let journal = Journal::bounded(10_000);
        let http_tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!(
            "https://localhost:{}",
            http_tcp.local_addr().unwrap().port()
        );
        let config = HttpMocksConfig {
            seed: Seed(7),
            endpoints: Endpoints {
                login_base: base.clone(),
                graph_base: base.clone(),
            },
            ..HttpMocksConfig::default()
        };
        let mocks = HttpMocks::new(directory.clone(), clock.clone(), journal.clone(), config);
        let _http =
            HttpListener::new(http_tcp, mocks, Some(pki.server_config(true).unwrap())).spawn();
        let smtp_tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let smtp_addr = smtp_tcp.local_addr().unwrap();
        let smtp = SmtpServer::new(directory, clock.clone(), journal, smtp_config(&pki));
        let _smtp = SmtpListener::new(smtp_tcp, smtp.clone()).spawn();
        let reqwest = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let token_url = format!("{base}/{}/oauth2/v2.0/token", demo::TENANT_ID);
        let connector = Arc::new(TcpSmtpConnector {
            address: smtp_addr.to_string(),
        });
        let worker = worker(
            clock,
            Arc::new(ReqwestTransport::new(reqwest)),
            token_url,
            connector,
            pki.ca_pem().to_string(),
            outbox,
        );
        let started = Instant::now();
        worker.run(start() + TimeDelta::days(1)).await.unwrap();
        (smtp.accepted() as usize, started.elapsed())
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
