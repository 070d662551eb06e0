//! Inbound sync against the mock Graph delta endpoint: paging, a lost delta token (410) and a
//! full resync, an expired secret and a rotation; every message synced exactly once.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeDelta;
use common::*;
use maildrill::client::backoff::BackoffConfig;
use maildrill::client::secret::SecretSource;
use maildrill::client::sync::{InboxSync, SyncConfig, SyncEvent};
use maildrill::client::token::ClientAuth;
use maildrill::seed::Seed;
use maildrill::tenant::{Directory, SecretSpec, demo};
use maildrill::time::{ClockExt as _, replay_runtime};

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one story told in order: mail, resync, rotation, check"
)]
fn every_inbound_message_is_synced_exactly_once_through_resync_and_rotation() {
    replay_runtime().unwrap().block_on(async {
        let start = at("2025-02-14T09:00:00Z");
        let end = start + TimeDelta::hours(4);
        let sim = Sim::new(start, tenant(at("2025-02-14T11:00:00Z")), 91);
        let secret_file =
            std::env::temp_dir().join(format!("maildrill-sync-{}", std::process::id()));
        std::fs::write(&secret_file, SECRET).unwrap();
        let tokens = token_provider(
            &sim,
            SecretSource::File(secret_file.clone()),
            ClientAuth::Basic,
            Duration::from_secs(300),
        );
        let log = Arc::new(Mutex::new(Vec::new()));
        let sync = InboxSync {
            config: SyncConfig {
                graph_url: "https://graph.microsoft.com/v1.0".into(),
                mailbox: demo::MAILBOX.into(),
                delegated: false,
                interval: Duration::from_secs(60),
                page_size: 5,
                backoff: BackoffConfig::default(),
                phase: std::time::Duration::ZERO,
            },
            tokens,
            http: Arc::new(sim.net.clone()),
            clock: sim.clock.clone(),
            log: log.clone(),
            rng: Seed(91).stream("sync"),
            state: Arc::default(),
        };
        let directory = sim.mocks.directory().clone();
        let inbound = async {
            while sim.clock.now_utc() < end - TimeDelta::minutes(30) {
                {
                    let mut directory = Directory::lock(&directory);
                    let id = directory.next_message_id();
                    let now = sim.clock.now_utc();
                    directory
                        .mailbox_mut(demo::TENANT_ID, demo::MAILBOX)
                        .unwrap()
                        .deliver(id, now, "customer@example.com", "re: order");
                }
                sim.clock.sleep(Duration::from_secs(7 * 60)).await;
            }
        };
        let timeline = async {
            // 10:00: Exchange evicts the delta token. 11:00: the secret expires. 12:00: rotation.
            sim.clock
                .sleep_until(sim.clock.instant_at(at("2025-02-14T10:00:00Z")))
                .await;
            Directory::lock(&directory)
                .mailbox_mut(demo::TENANT_ID, demo::MAILBOX)
                .unwrap()
                .reset_sync_state();
            sim.clock
                .sleep_until(sim.clock.instant_at(at("2025-02-14T12:00:00Z")))
                .await;
            let now = sim.clock.now_utc();
            let spec = SecretSpec {
                value: "New8Q~sync".into(),
                display_name: "rotated".into(),
                start: now,
                end: now + TimeDelta::days(90),
            };
            Directory::lock(&directory).add_secret(demo::TENANT_ID, demo::APP_ID, &spec, now);
            std::fs::write(&secret_file, "New8Q~sync").unwrap();
        };
        tokio::join!(sync.run(end), inbound, timeline);
        let _ = std::fs::remove_file(&secret_file);

        let inbox: Vec<String> = Directory::lock(&directory)
            .mailbox(demo::TENANT_ID, demo::MAILBOX)
            .unwrap()
            .inbox()
            .iter()
            .map(|m| m.id.clone())
            .collect();
        let log = log.lock().unwrap();
        let mut synced: BTreeMap<String, usize> = BTreeMap::new();
        for (_, event) in log.iter() {
            if let SyncEvent::Synced { id } = event {
                *synced.entry(id.clone()).or_default() += 1;
            }
        }
        assert_eq!(synced.len(), inbox.len(), "every inbound message synced");
        assert!(synced.values().all(|n| *n == 1), "none twice");
        assert!(log.iter().any(
            |(at, e)| *e == SyncEvent::Resync && at.to_rfc3339().starts_with("2025-02-14T10:0")
        ));
        let failures = log
            .iter()
            .filter(|(_, e)| matches!(e, SyncEvent::Failed { .. }))
            .count();
        // An hour of expired secret with a cached token's last minutes: backed off, not hammered.
        assert!((5..=40).contains(&failures), "{failures} failed rounds");
    });
}
