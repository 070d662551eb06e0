//! An 18-hour token outage replayed on the virtual clock: through the in-memory wiring it gives
//! one timeline however often it runs, and through the socket wiring on the harness clock it
//! gives the same journal byte for byte.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use maildrill::tenant::{Directory, SecretSpec, SharedDirectory, demo};
use maildrill::{
    Activation, ClockExt as _, Fault, FaultKind, HarnessClock, Seed, SharedClock, Sim, SimBuilder,
    SocketOptions, Target, replay_runtime,
};
use oauth2::{AsyncHttpClient, Scope};

const START: &str = "2025-02-14T09:30:00Z";
const ROTATED_SECRET: &str = "New8Q~rotated-secret-value-00000000000000";

fn start() -> DateTime<Utc> {
    at(START)
}

/// The sim's choices: the secret expires 2 h in; the token endpoint hangs in [50:00, 51:40).
fn sim(seed: u64) -> SimBuilder {
    let secret_end = start() + TimeDelta::hours(2);
    Sim::builder()
        .start(start())
        .seed(Seed(seed))
        .tenant(tenant(secret_end))
        .fault(Fault {
            target: Target::Entra,
            operation: Some("token".into()),
            kind: FaultKind::Timeout,
            activation: Activation {
                from: Some(start() + TimeDelta::minutes(50)),
                until: Some(start() + TimeDelta::seconds(51 * 60 + 40)),
                ..Activation::default()
            },
        })
}

/// A token loop like a mail client's: refresh every 50 min, back off 1 s doubling to 15 min on
/// failure, 30 s per request; the secret is rotated at the first attempt after 16 h.
async fn token_loop<C>(clock: SharedClock, http: &C, token_url: &str, directory: SharedDirectory)
where
    C: for<'c> AsyncHttpClient<'c>,
{
    let end = start() + TimeDelta::hours(18);
    let rotate_at = start() + TimeDelta::hours(16);
    let mut secret = SECRET.to_string();
    let mut backoff = Duration::from_secs(1);
    while clock.now_utc() < end {
        if secret == SECRET && clock.now_utc() >= rotate_at {
            let spec = SecretSpec {
                value: ROTATED_SECRET.into(),
                display_name: "rotated".into(),
                start: clock.now_utc(),
                end: clock.now_utc() + TimeDelta::days(180),
            };
            Directory::lock(&directory).add_secret(
                demo::TENANT_ID,
                demo::APP_ID,
                &spec,
                clock.now_utc(),
            );
            secret = ROTATED_SECRET.to_string();
        }
        let client = oauth_client(&secret, token_url);
        let request = client
            .exchange_client_credentials()
            .add_scope(Scope::new(GRAPH_SCOPE.into()));
        let outcome = clock
            .timeout(Duration::from_secs(30), request.request_async(http))
            .await;
        let wait = match outcome {
            Ok(Ok(_)) => {
                backoff = Duration::from_secs(1);
                Duration::from_secs(50 * 60)
            }
            _ => {
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(15 * 60));
                wait
            }
        };
        clock.sleep(wait).await;
    }
}

fn replay_in_memory(seed: u64) -> String {
    replay_runtime().unwrap().block_on(async {
        let sim = sim(seed).build_in_memory().unwrap();
        let net = sim.net().unwrap().clone();
        let send = move |request| {
            let net = net.clone();
            async move { net.send(request).await }
        };
        let url = sim.endpoints().token_url.clone();
        token_loop(sim.clock().clone(), &send, &url, sim.directory().clone()).await;
        sim.journal().render()
    })
}

fn replay_over_sockets(seed: u64) -> String {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let harness = HarnessClock::starting_at(start());
        let clock: SharedClock = std::sync::Arc::new(harness.clone());
        let sim = sim(seed)
            .clock(clock.clone())
            .sockets(SocketOptions {
                plain_http: true,
                ..SocketOptions::default()
            })
            .build()
            .await
            .unwrap();
        let url = sim.endpoints().token_url.clone();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let actor = harness.actor();
        let directory = sim.directory().clone();
        let client = tokio::spawn(async move {
            let _actor = actor;
            token_loop(clock, &http, &url, directory).await;
        });
        harness.drive().await;
        client.await.unwrap();
        let journal = sim.journal().render();
        sim.shutdown().await;
        journal
    })
}

#[test]
fn the_outage_timeline_has_the_expected_shape() {
    let journal = replay_in_memory(42);
    let lines: Vec<&str> = journal.lines().collect();
    assert!(
        lines[0].starts_with("2025-02-14T09:30:00Z entra token POST"),
        "{}",
        lines[0]
    );
    // The hang window: four requests get no reply, 30 s apart plus backoff.
    let hangs: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains("[hang]"))
        .map(|l| &l[..20])
        .collect();
    assert_eq!(
        hangs,
        [
            "2025-02-14T10:20:00Z",
            "2025-02-14T10:20:31Z",
            "2025-02-14T10:21:03Z",
            "2025-02-14T10:21:37Z"
        ]
    );
    // The secret expires at 11:30; the cached token hides it until the 12:0x refresh.
    let first_expired = lines.iter().find(|l| l.contains("AADSTS7000222")).unwrap();
    assert!(
        first_expired.starts_with("2025-02-14T12:0"),
        "{first_expired}"
    );
    let expired = lines.iter().filter(|l| l.contains("AADSTS7000222")).count();
    assert!(expired > 10, "{expired} expired-secret replies");
    // Backoff is capped at 15 min, so the outage costs a bounded number of requests.
    let outage: Vec<&&str> = lines
        .iter()
        .filter(|l| l[..20] > *"2025-02-14T12:00:00Z" && l[..20] < *"2025-02-15T01:30:00Z")
        .collect();
    assert!(outage.iter().all(|l| l.contains("-> 401")));
    // The ramp 1 s, 2 s, ... 512 s is ten requests, then four an hour at the 15 min cap.
    assert!(
        outage.len() <= 10 + 13 * 4 + 2,
        "{} requests in 13 h",
        outage.len()
    );
    let last = lines.last().unwrap();
    assert!(last.contains("-> 200"), "recovered after rotation: {last}");
}

#[test]
fn a_thousand_replays_give_one_timeline() {
    // Four threads of 250 replays each, so both cores work and each thread has its own runtime.
    let threads: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| (0..250).map(|_| replay_in_memory(42)).collect::<Vec<_>>()))
        .collect();
    let distinct: BTreeSet<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(distinct.len(), 1);
    assert_ne!(
        replay_in_memory(42),
        replay_in_memory(43),
        "the seed reaches the journal"
    );
}

#[test]
fn socket_wiring_on_the_harness_clock_gives_the_same_journal() {
    let memory = replay_in_memory(7);
    for _ in 0..3 {
        let sockets = replay_over_sockets(7);
        assert_eq!(sockets, memory);
    }
}
