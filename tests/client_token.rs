//! The client's token provider against the mock token endpoint, on the virtual clock.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use common::*;
use maildrill::client::classify::{CredentialProblem, Failure};
use maildrill::client::secret::{Secret, SecretSource};
use maildrill::client::token::{ClientAuth, TokenProvider};
use maildrill::fault::{Activation, CatalogueReply, Fault, FaultKind, Target};
use maildrill::tenant::{Directory, SecretSpec, demo};
use maildrill::time::{ClockExt as _, replay_runtime};

fn provider(sim: &Sim, secret: SecretSource) -> Arc<TokenProvider> {
    token_provider(sim, secret, ClientAuth::Basic, Duration::from_secs(300))
}

fn secret() -> SecretSource {
    SecretSource::Value(Secret::new(SECRET))
}

fn entra_fault(kind: FaultKind) -> Fault {
    Fault {
        target: Target::Entra,
        operation: Some("token".into()),
        kind,
        activation: Activation::default(),
    }
}

#[test]
fn tokens_are_cached_and_refreshed_ahead_of_exp() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-02-14T09:00:00Z"),
            tenant(at("2025-03-01T00:00:00Z")),
            51,
        );
        let tokens = provider(&sim, secret());
        let first = tokens.token(GRAPH_SCOPE).await.unwrap();
        let again = tokens.token(GRAPH_SCOPE).await.unwrap();
        assert_eq!(first.expose(), again.expose());
        assert_eq!(tokens.requests(), 1);
        tokens.token(EXCHANGE_SCOPE).await.unwrap();
        assert_eq!(tokens.requests(), 2, "one token per scope");
        // 3599 s lifetime, refreshed 300 s ahead.
        sim.clock.sleep(Duration::from_secs(3299)).await;
        let refreshed = tokens.token(GRAPH_SCOPE).await.unwrap();
        assert_ne!(refreshed.expose(), first.expose());
        assert!(!format!("{refreshed:?}").contains(refreshed.expose()));
    });
}

#[test]
fn many_waiting_senders_share_one_request() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-02-14T09:00:00Z"),
            tenant(at("2025-03-01T00:00:00Z")),
            52,
        );
        sim.mocks
            .inject(entra_fault(FaultKind::Latency {
                delay: Duration::from_secs(2),
            }))
            .unwrap();
        let tokens = provider(&sim, secret());
        let handles: Vec<_> = (0..10)
            .map(|_| {
                let tokens = tokens.clone();
                tokio::spawn(async move {
                    tokens
                        .token(GRAPH_SCOPE)
                        .await
                        .map(|t| t.expose().to_string())
                })
            })
            .collect();
        let mut values = std::collections::BTreeSet::new();
        for handle in handles {
            values.insert(handle.await.unwrap().unwrap());
        }
        assert_eq!(values.len(), 1);
        assert_eq!(tokens.requests(), 1);
    });
}

#[test]
fn an_expired_secret_is_a_credential_failure_once_the_cached_token_ends() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-02-14T11:00:00Z"),
            tenant(at("2025-02-14T11:30:00Z")),
            53,
        );
        let tokens = provider(&sim, secret());
        let token = tokens.token(GRAPH_SCOPE).await.unwrap();
        // Past the secret's end and inside the refresh window: the refresh fails, the token works.
        sim.clock.sleep(Duration::from_secs(3400)).await;
        assert_eq!(
            tokens.token(GRAPH_SCOPE).await.unwrap().expose(),
            token.expose()
        );
        sim.clock.sleep(Duration::from_secs(200)).await;
        assert_eq!(
            tokens.token(GRAPH_SCOPE).await.unwrap_err(),
            Failure::Credential(CredentialProblem::Expired)
        );
    });
}

#[test]
fn throttling_outages_and_hangs_are_transient() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-02-14T11:00:00Z"),
            tenant(at("2025-03-01T00:00:00Z")),
            54,
        );
        let tokens = provider(&sim, secret());
        let mut once = entra_fault(FaultKind::Respond {
            reply: CatalogueReply::EntraThrottled,
            retry_after: None,
        });
        once.activation.first = Some(1);
        sim.mocks.inject(once).unwrap();
        match tokens.token(GRAPH_SCOPE).await.unwrap_err() {
            Failure::Transient { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(60)))
            }
            other => panic!("{other:?}"),
        }
        // Held until Retry-After: callers get the refusal again without a request.
        let sent = tokens.requests();
        sim.clock.sleep(Duration::from_secs(59)).await;
        match tokens.token(GRAPH_SCOPE).await.unwrap_err() {
            Failure::Transient { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(1)))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(tokens.requests(), sent, "no request while held");
        sim.clock.sleep(Duration::from_secs(1)).await;
        sim.mocks.clear_target(Target::Entra);
        let mut unavailable = entra_fault(FaultKind::Respond {
            reply: CatalogueReply::parse(Target::Entra, "unavailable").unwrap(),
            retry_after: None,
        });
        unavailable.activation.first = Some(1);
        sim.mocks.inject(unavailable).unwrap();
        assert!(matches!(
            tokens.token(GRAPH_SCOPE).await.unwrap_err(),
            Failure::Transient { .. }
        ));
        // The second failure in a row is held twice as long as the caller waited after the
        // first (the 60 s of its Retry-After): 120 s.
        sim.clock.sleep(Duration::from_secs(119)).await;
        assert_eq!(tokens.requests(), sent + 1, "no request while held");
        sim.clock.sleep(Duration::from_secs(1)).await;
        sim.mocks.clear_target(Target::Entra);
        let mut hang = entra_fault(FaultKind::Timeout);
        hang.activation.first = Some(1);
        sim.mocks.inject(hang).unwrap();
        let before = sim.clock.now_utc();
        assert!(matches!(
            tokens.token(GRAPH_SCOPE).await.unwrap_err(),
            Failure::Transient { .. }
        ));
        assert_eq!(sim.clock.now_utc() - before, TimeDelta::seconds(30));
        // 150 s since the failure before: held the 5 min cap.
        sim.clock.sleep(Duration::from_secs(299)).await;
        assert!(tokens.token(GRAPH_SCOPE).await.is_err());
        sim.clock.sleep(Duration::from_secs(1)).await;
        assert!(tokens.token(GRAPH_SCOPE).await.is_ok());
    });
}

#[test]
fn a_rotated_secret_file_works_after_the_propagation_delay() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-02-14T12:00:00Z"),
            tenant(at("2025-02-14T11:30:00Z")),
            55,
        );
        let path = std::env::temp_dir().join(format!("maildrill-rotation-{}", std::process::id()));
        std::fs::write(&path, SECRET).unwrap();
        let tokens = provider(&sim, SecretSource::File(path.clone()));
        assert_eq!(
            tokens.token(GRAPH_SCOPE).await.unwrap_err(),
            Failure::Credential(CredentialProblem::Expired)
        );
        let now = sim.clock.now_utc();
        let rotated = SecretSpec {
            value: "New8Q~rotated".into(),
            display_name: "rotated".into(),
            start: now,
            end: now + TimeDelta::days(180),
        };
        Directory::lock(sim.mocks.directory()).add_secret(
            demo::TENANT_ID,
            demo::APP_ID,
            &rotated,
            now,
        );
        std::fs::write(&path, "New8Q~rotated\n").unwrap();
        // Within the 10 s propagation delay the new secret still fails.
        assert!(matches!(
            tokens.token(GRAPH_SCOPE).await.unwrap_err(),
            Failure::Credential(_)
        ));
        sim.clock.sleep(Duration::from_secs(10)).await;
        assert!(tokens.token(GRAPH_SCOPE).await.is_ok());
        std::fs::remove_file(&path).unwrap();
    });
}

#[test]
fn a_refused_credential_stays_held_across_a_restart_until_the_secret_changes() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-02-14T12:00:00Z"),
            tenant(at("2025-02-14T11:30:00Z")),
            56,
        );
        let outbox = Arc::new(maildrill::client::outbox::Outbox::in_memory().unwrap());
        let process = || {
            let config =
                maildrill::client::token::TokenConfig::new(sim.token_url(), demo::APP_ID, secret());
            Arc::new(
                TokenProvider::new(config, sim.clock.clone(), Arc::new(sim.net.clone()))
                    .with_hold_store(outbox.clone()),
            )
        };
        let first = process();
        for n in 0..4 {
            assert!(matches!(
                first.token(GRAPH_SCOPE).await.unwrap_err(),
                Failure::Credential(CredentialProblem::Expired)
            ));
            // Just past each hold: 1 s, 2 s, 4 s, then 8 s.
            sim.clock.sleep(Duration::from_secs(1 << n)).await;
        }
        assert_eq!(first.requests(), 4);
        assert!(matches!(
            first.token(GRAPH_SCOPE).await.unwrap_err(),
            Failure::Credential(_)
        ));
        // A new process with the same database resumes the 16 s hold: no request at start.
        let second = process();
        assert!(matches!(
            second.token(GRAPH_SCOPE).await.unwrap_err(),
            Failure::Credential(CredentialProblem::Expired)
        ));
        assert_eq!(
            second.requests(),
            0,
            "the restarted process waits out the hold"
        );
        sim.clock.sleep(Duration::from_secs(16)).await;
        assert!(second.token(GRAPH_SCOPE).await.is_err());
        assert_eq!(second.requests(), 1);
    });
}

/// Token requests in the busiest rolling hour of `times` (seconds).
fn busiest_hour(times: &[i64]) -> usize {
    times
        .iter()
        .map(|start| {
            times
                .iter()
                .filter(|t| (*start..start + 3600).contains(t))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn failed_requests_stay_within_the_hourly_budget_however_short_the_hold() {
    let failures_in_busiest_hour = |budget: u32| {
        replay_runtime().unwrap().block_on(async {
            let sim = Sim::new(
                at("2025-02-14T09:00:00Z"),
                tenant(at("2025-03-01T00:00:00Z")),
                55,
            );
            let mut config = maildrill::client::token::TokenConfig::new(
                sim.token_url(),
                demo::APP_ID,
                SecretSource::Value(Secret::new("a wrong secret")),
            );
            // A one-minute hold alone would allow sixty refusals an hour.
            config.refusal_hold_cap = Duration::from_secs(60);
            config.failure_budget = budget;
            let tokens = common::provider(&sim, config);
            for _ in 0..(3 * 360) {
                assert!(tokens.token(GRAPH_SCOPE).await.is_err());
                sim.clock.sleep(Duration::from_secs(10)).await;
            }
            let times: Vec<i64> = sim
                .mocks
                .journal()
                .entries()
                .iter()
                .filter(|e| e.operation == "token")
                .map(|e| e.at.timestamp())
                .collect();
            busiest_hour(&times)
        })
    };
    assert_eq!(failures_in_busiest_hour(20), 20);
    assert!(
        failures_in_busiest_hour(0) > 50,
        "the budget is what bounds it"
    );
}

/// A `Retry-After` is the endpoint's, asked of the whole app: a new secret value ends a
/// refused credential's hold at once, but not the wait a throttled endpoint asked for.
#[test]
fn a_throttled_endpoints_retry_after_stands_for_a_new_secret() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-02-14T11:00:00Z"),
            tenant(at("2025-03-01T00:00:00Z")),
            57,
        );
        let path = std::env::temp_dir().join(format!("maildrill-throttled-{}", std::process::id()));
        std::fs::write(&path, SECRET).unwrap();
        let tokens = provider(&sim, SecretSource::File(path.clone()));
        sim.mocks
            .inject(entra_fault(FaultKind::Respond {
                reply: CatalogueReply::EntraThrottled,
                retry_after: None,
            }))
            .unwrap();
        assert!(matches!(
            tokens.token(GRAPH_SCOPE).await.unwrap_err(),
            Failure::Transient { .. }
        ));
        std::fs::write(&path, "New8Q~pasted-while-throttled\n").unwrap();
        sim.clock.sleep(Duration::from_secs(30)).await;
        match tokens.token(GRAPH_SCOPE).await.unwrap_err() {
            Failure::Transient { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(30)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(tokens.requests(), 1, "no request inside the Retry-After");
        sim.clock.sleep(Duration::from_secs(30)).await;
        assert!(tokens.token(GRAPH_SCOPE).await.is_err());
        assert_eq!(
            tokens.requests(),
            2,
            "the new value is tried once the wait is over"
        );
        std::fs::remove_file(&path).unwrap();
    });
}
