//! Every reply in the wire catalogue, as the exact bytes a client receives, snapshotted into
//! `fixtures/snapshots/` so a change to any status, header or text shows up in review.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use common::*;
use maildrill::fault::{Activation, CatalogueReply, Fault, FaultKind, Target};
use maildrill::mock::wire::{EntraError, GraphError};
use maildrill::tenant::demo;
use maildrill::time::replay_runtime;

fn snapshot(name: &str, bytes: &str) {
    assert!(
        !bytes.contains("${"),
        "{name} has an unfilled placeholder:\n{bytes}"
    );
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../fixtures/snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(name, redact_tokens(bytes)));
}

/// Access tokens and generated secrets never go into snapshots.
fn redact_tokens(text: &str) -> String {
    let mut out = text.to_string();
    for key in ["\"access_token\":\"", "\"secretText\":\""] {
        if let Some(start) = out.find(key) {
            let value_start = start + key.len();
            let end = out[value_start..].find('"').unwrap() + value_start;
            out.replace_range(value_start..end, "[redacted]");
        }
    }
    out
}

fn force(sim: &Sim, target: Target, reply: CatalogueReply) {
    sim.mocks
        .inject(Fault {
            target,
            operation: None,
            kind: FaultKind::Respond {
                reply,
                retry_after: None,
            },
            activation: Activation {
                first: Some(1),
                ..Activation::default()
            },
        })
        .unwrap();
}

fn send_mail_request() -> String {
    let body = r#"{"message":{"subject":"s","toRecipients":[{"emailAddress":{"address":"a@example.com"}}]}}"#;
    format!(
        "POST /v1.0/users/{}/sendMail HTTP/1.1\r\nHost: graph.microsoft.com\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        demo::MAILBOX,
        body.len()
    )
}

const FORM: &str = "grant_type=client_credentials&client_id=9b2e7c41-3f5a-4d8b-b6e0-1c4a7f9d2e53&client_secret=Mlm8Q~test-secret-value-000000000000000&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default";

#[test]
fn every_entra_catalogue_reply_has_a_byte_snapshot() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(at("2025-02-14T11:30:00Z"), tenant(at("2025-03-01T00:00:00Z")), 7);
        snapshot("entra__success", &sim.raw_token(FORM).await);
        for error in EntraError::ALL {
            force(&sim, Target::Entra, CatalogueReply::Entra(error));
            snapshot(&format!("entra__{}", error.key()), &sim.raw_token(FORM).await);
        }
        force(&sim, Target::Entra, CatalogueReply::EntraThrottled);
        snapshot("entra__throttled", &sim.raw_token(FORM).await);
        let discovery = format!(
            "GET /{}/v2.0/.well-known/openid-configuration HTTP/1.1\r\nHost: login.microsoftonline.com\r\nConnection: close\r\n\r\n",
            demo::TENANT_ID
        );
        snapshot("entra__discovery", &sim.raw(&discovery).await);
        let keys = format!(
            "GET /{}/discovery/v2.0/keys HTTP/1.1\r\nHost: login.microsoftonline.com\r\nConnection: close\r\n\r\n",
            demo::TENANT_ID
        );
        snapshot("entra__keys", &sim.raw(&keys).await);
    });
}

#[test]
fn every_graph_catalogue_reply_has_a_byte_snapshot() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-02-14T11:30:00Z"),
            tenant(at("2025-03-01T00:00:00Z")),
            7,
        );
        for error in GraphError::ALL {
            force(&sim, Target::Graph, CatalogueReply::Graph(error));
            snapshot(
                &format!("graph__{}", error.key()),
                &sim.raw(&send_mail_request()).await,
            );
        }
        force(&sim, Target::Graph, CatalogueReply::GraphHtmlUnavailable);
        snapshot(
            "graph__html_unavailable",
            &sim.raw(&send_mail_request()).await,
        );
    });
}

#[test]
fn real_triggers_give_the_catalogue_replies() {
    replay_runtime().unwrap().block_on(async {
        // The secret expired 30 minutes before the clock starts.
        let sim = Sim::new(at("2025-02-14T12:00:00Z"), tenant(at("2025-02-14T11:30:00Z")), 7);
        let expired = sim.raw_token(FORM).await;
        assert!(expired.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{expired}");
        assert!(expired.contains(r#""error_codes":[7000222]"#));
        snapshot("trigger__expired_secret", &expired);
        let no_grant = sim.raw_token("client_id=x").await;
        assert!(no_grant.contains("AADSTS900144: The request body must contain the following parameter: 'grant_type'."));
        let get = format!(
            "GET /{}/oauth2/v2.0/token HTTP/1.1\r\nHost: login.microsoftonline.com\r\nConnection: close\r\n\r\n",
            demo::TENANT_ID
        );
        assert!(sim.raw(&get).await.contains("AADSTS900561"));
        let no_token = sim.raw(&send_mail_request()).await;
        assert!(no_token.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        assert!(no_token.contains(r#""message":"Access token is empty.""#));
        snapshot("trigger__graph_no_token", &no_token);
    });
}
