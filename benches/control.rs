//! Control API benchmark (not a timed test): fault inject + clear pairs per second through a
//! running server's admin API, the same driver for `maildrill serve`'s control API and for
//! Java WireMock's `/__admin/mappings`, with the server's memory before and after.
//!
//!   cargo bench --bench control -- KIND BASE_URL PID [PAIRS] [CONCURRENCY] [TOKEN]
//!
//! KIND is `maildrill` (POST `BASE/faults`, DELETE `BASE/faults/{id}`) or `wiremock` (POST
//! `BASE/__admin/mappings` with a fault stub, DELETE `BASE/__admin/mappings/{id}`). PID is the
//! server's, for its resident memory. `benches/control.sh` starts both servers and runs both.

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "a benchmark measures wall time and stops on any error"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Maildrill,
    WireMock,
}

struct Target {
    kind: Kind,
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Target {
    /// One inject and one clear; panics on any answer but the documented success.
    async fn pair(&self, n: u64) {
        let (url, body) = match self.kind {
            Kind::Maildrill => (
                format!("{}/faults", self.base),
                json!({"target": "graph", "kind": "respond", "reply": "too_many_requests",
                       "operation": "send-mail", "first": n % 7 + 1}),
            ),
            Kind::WireMock => (
                format!("{}/__admin/mappings", self.base),
                json!({"request": {"method": "POST", "urlPath": format!("/v1.0/users/u{}/sendMail", n % 7)},
                       "response": {"fault": "CONNECTION_RESET_BY_PEER"}}),
            ),
        };
        let created: Value = self
            .client
            .post(url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = match &created["id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let path = match self.kind {
            Kind::Maildrill => format!("{}/faults/{id}", self.base),
            Kind::WireMock => format!("{}/__admin/mappings/{id}", self.base),
        };
        let cleared = self
            .client
            .delete(path)
            .bearer_auth(&self.token)
            .send()
            .await;
        cleared.unwrap().error_for_status().unwrap();
    }
}

fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Runs `pairs` pairs over `concurrency` workers; returns pairs per second.
async fn run(target: Arc<Target>, pairs: u64, concurrency: u64) -> f64 {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (target, next) = (target.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= pairs {
                        return;
                    }
                    target.pair(n).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    pairs as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let kind = match args.first().map(String::as_str) {
        Some("maildrill") => Kind::Maildrill,
        Some("wiremock") => Kind::WireMock,
        _ => panic!("usage: control KIND BASE_URL PID [PAIRS] [CONCURRENCY] [TOKEN]"),
    };
    let (base, pid) = (args[1].clone(), args[2].clone());
    let pairs: u64 = args.get(3).map_or(100_000, |p| p.parse().unwrap());
    let concurrency: u64 = args.get(4).map_or(8, |c| c.parse().unwrap());
    let token = args.get(5).cloned().unwrap_or_default();
    let target = Arc::new(Target {
        kind,
        base,
        token,
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Warm-up (the JVM's JIT, connection pools), not recorded.
        run(target.clone(), 2_000, concurrency).await;
        let before = rss_kib(&pid);
        let rate = run(target, pairs, concurrency).await;
        let after = rss_kib(&pid);
        println!(
            "RESULT kind={kind:?} pairs={pairs} concurrency={concurrency} pairs_per_s={rate:.0} rss_before_kib={before} rss_after_kib={after}"
        );
    });
}
