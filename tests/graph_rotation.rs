//! Rotations that fail at Graph: `addPassword` refused by the tenant's app management policy
//! (the real bodies, `fixtures/wire/graph.toml`) and the applications API throttled (429 with
//! `Retry-After`), as a client or script sees them over the in-memory wiring.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use std::time::Duration;

use common::*;
use maildrill::fault::{Activation, CatalogueReply, Fault, FaultKind, Target};
use maildrill::tenant::{AppPolicy, Directory, TenantSpec, demo};
use maildrill::time::replay_runtime;
use serde_json::Value;

const NOW: &str = "2025-02-14T11:00:00Z";

fn policed(policy: AppPolicy) -> TenantSpec {
    let mut spec = tenant(at("2025-03-01T00:00:00Z"));
    spec.settings.app_policy = Some(policy);
    spec
}

fn add_password(token: &str, end: Option<&str>) -> http::Request<Vec<u8>> {
    let body = match end {
        Some(end) => {
            format!(r#"{{"passwordCredential":{{"displayName":"next","endDateTime":"{end}"}}}}"#)
        }
        None => r#"{"passwordCredential":{"displayName":"next"}}"#.to_string(),
    };
    http::Request::post(format!(
        "https://graph.microsoft.com/v1.0/applications(appId='{}')/addPassword",
        demo::APP_ID
    ))
    .header("Authorization", format!("Bearer {token}"))
    .header("Content-Type", "application/json")
    .body(body.into_bytes())
    .unwrap()
}

fn secrets(sim: &Sim) -> usize {
    Directory::lock(sim.mocks.directory())
        .app(demo::TENANT_ID, demo::APP_ID)
        .unwrap()
        .credentials
        .len()
}

/// The body without its `innerError` (request ids and the date vary), and the inner keys.
fn without_inner(body: &[u8]) -> (String, Vec<String>) {
    let mut value: Value = serde_json::from_slice(body).unwrap();
    let inner = value["error"]
        .as_object_mut()
        .unwrap()
        .remove("innerError")
        .unwrap();
    let keys = inner.as_object().unwrap().keys().cloned().collect();
    (value.to_string(), keys)
}

#[test]
fn a_secret_over_the_policys_lifetime_is_400_credential_invalid_lifetime() {
    replay_runtime().unwrap().block_on(async {
        let policy = AppPolicy {
            id: "9d2624cb-b59a-459a-bb1a-3c2b6f1d0e47".into(),
            secrets_allowed: true,
            max_secret_lifetime: Some(Duration::from_secs(180 * 86_400)),
        };
        let sim = Sim::new(at(NOW), policed(policy), 3);
        let token = sim.graph_token();
        let before = secrets(&sim);
        // Graph's default lifetime (two years) is over the policy's 180 days.
        let refused = sim.net.send(add_password(&token, None)).await.unwrap();
        assert_eq!(refused.status(), 400);
        let (body, inner) = without_inner(refused.body());
        assert_eq!(
            body,
            r#"{"error":{"code":"CredentialInvalidLifetimeAsPerAppPolicy","message":"Credential lifetime exceeds the max value allowed as per assigned policy '9d2624cb-b59a-459a-bb1a-3c2b6f1d0e47'.","details":[{"code":"InvalidKeyEndDate","message":"Credential lifetime exceeds the max value allowed as per assigned policy '9d2624cb-b59a-459a-bb1a-3c2b6f1d0e47'.","target":"EndDate"}]}}"#
        );
        assert_eq!(inner, ["date", "request-id", "client-request-id"]);
        let over = sim
            .net
            .send(add_password(&token, Some("2025-08-14T11:00:01Z")))
            .await
            .unwrap();
        assert_eq!(over.status(), 400, "181 days is over 180");
        assert_eq!(secrets(&sim), before, "a refused secret is not added");
        let within = sim
            .net
            .send(add_password(&token, Some("2025-08-13T11:00:00Z")))
            .await
            .unwrap();
        assert_eq!(within.status(), 200, "180 days exactly is allowed");
        assert_eq!(secrets(&sim), before + 1);
    });
}

#[test]
fn no_secret_is_allowed_where_the_policy_blocks_password_addition() {
    replay_runtime().unwrap().block_on(async {
        let policy = AppPolicy {
            id: AppPolicy::DEFAULT_ID.into(),
            secrets_allowed: false,
            max_secret_lifetime: Some(Duration::from_secs(180 * 86_400)),
        };
        let sim = Sim::new(at(NOW), policed(policy), 3);
        let token = sim.graph_token();
        let refused = sim
            .net
            .send(add_password(&token, Some("2025-03-14T11:00:00Z")))
            .await
            .unwrap();
        assert_eq!(refused.status(), 400);
        assert_eq!(
            without_inner(refused.body()).0,
            r#"{"error":{"code":"CredentialTypeNotAllowedAsPerAppPolicy","message":"Credential type not allowed as per assigned policy '00000000-0000-0000-0000-000000000000'."}}"#
        );
    });
}

#[test]
fn a_throttled_applications_write_is_429_with_retry_after_and_adds_nothing() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(at(NOW), tenant(at("2025-03-01T00:00:00Z")), 3);
        sim.mocks
            .inject(Fault {
                target: Target::Graph,
                operation: Some("add-password".into()),
                kind: FaultKind::Respond {
                    reply: CatalogueReply::parse(Target::Graph, "directory_throttled").unwrap(),
                    retry_after: None,
                },
                activation: Activation {
                    first: Some(1),
                    ..Activation::default()
                },
            })
            .unwrap();
        let token = sim.graph_token();
        let before = secrets(&sim);
        let throttled = sim.net.send(add_password(&token, None)).await.unwrap();
        assert_eq!(throttled.status(), 429);
        assert_eq!(throttled.headers()["retry-after"], "150");
        assert_eq!(
            without_inner(throttled.body()).0,
            r#"{"error":{"code":"Request_ThrottledTemporarily","message":"Your request is throttled temporarily. Please try after 150 seconds."}}"#
        );
        assert_eq!(secrets(&sim), before, "a throttled write changes nothing");
        let journal = sim.mocks.journal().render();
        assert!(
            journal.contains("-> 429 (fault respond directory_throttled)"),
            "{journal}"
        );
        let again = sim.net.send(add_password(&token, None)).await.unwrap();
        assert_eq!(again.status(), 200, "the fault was for the first call only");
    });
}
