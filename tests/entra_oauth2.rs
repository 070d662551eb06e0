//! The mock token endpoint driven by the real `oauth2` crate over the in-memory wiring.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use std::time::Duration;

use common::*;
use maildrill::fault::{Activation, CatalogueReply, Fault, FaultKind, Target};
use maildrill::time::{ClockExt as _, replay_runtime};
use oauth2::basic::BasicErrorResponseType;
use oauth2::{AuthType, RequestTokenError, Scope, TokenResponse as _};

type TokenResult = Result<
    oauth2::basic::BasicTokenResponse,
    RequestTokenError<
        maildrill::wiring::http::HttpExchangeError,
        oauth2::basic::BasicErrorResponse,
    >,
>;

async fn fetch(sim: &Sim, secret: &str, scope: &str, auth: AuthType) -> TokenResult {
    let client = oauth_client(secret, &sim.token_url()).set_auth_type(auth);
    let send = |request| sim.net.send(request);
    client
        .exchange_client_credentials()
        .add_scope(Scope::new(scope.into()))
        .request_async(&send)
        .await
}

fn server_error(result: TokenResult) -> (BasicErrorResponseType, String) {
    match result {
        Err(RequestTokenError::ServerResponse(e)) => (
            e.error().clone(),
            e.error_description().cloned().unwrap_or_default(),
        ),
        other => panic!("expected a server error response, got {other:?}"),
    }
}

#[test]
fn client_credentials_succeed_with_basic_and_post_auth() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-02-14T11:00:00Z"),
            tenant(at("2025-02-14T11:30:00Z")),
            1,
        );
        for auth in [AuthType::BasicAuth, AuthType::RequestBody] {
            let token = fetch(&sim, SECRET, GRAPH_SCOPE, auth).await.unwrap();
            assert_eq!(token.expires_in(), Some(Duration::from_secs(3599)));
            assert!(token.access_token().secret().starts_with("eyJ"));
        }
    });
}

#[test]
fn expired_secret_is_401_invalid_client_with_7000222() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-02-14T11:00:00Z"),
            tenant(at("2025-02-14T11:30:00Z")),
            1,
        );
        sim.clock.sleep(Duration::from_secs(30 * 60)).await;
        let (error, description) =
            server_error(fetch(&sim, SECRET, GRAPH_SCOPE, AuthType::BasicAuth).await);
        assert_eq!(error, BasicErrorResponseType::InvalidClient);
        assert!(description.starts_with("AADSTS7000222: The provided client secret keys for app"));
        assert!(description.contains(" Trace ID: "), "{description}");
        assert!(
            description.ends_with("Timestamp: 2025-02-14 11:30:00Z"),
            "{description}"
        );
    });
}

#[test]
fn wrong_secret_is_7000215_and_unknown_app_and_tenant_are_refused() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-02-14T11:00:00Z"),
            tenant(at("2025-02-14T11:30:00Z")),
            1,
        );
        let (error, description) =
            server_error(fetch(&sim, "wrong", GRAPH_SCOPE, AuthType::RequestBody).await);
        assert_eq!(error, BasicErrorResponseType::InvalidClient);
        assert!(description.starts_with("AADSTS7000215:"));

        let other_app = oauth2::basic::BasicClient::new(oauth2::ClientId::new(
            "00000000-0000-4000-8000-000000000001".into(),
        ))
        .set_client_secret(oauth2::ClientSecret::new(SECRET.into()))
        .set_token_uri(oauth2::TokenUrl::new(sim.token_url()).unwrap());
        let send = |request| sim.net.send(request);
        let result = other_app
            .exchange_client_credentials()
            .add_scope(Scope::new(GRAPH_SCOPE.into()))
            .request_async(&send)
            .await;
        let (error, description) = server_error(result);
        assert_eq!(error, BasicErrorResponseType::UnauthorizedClient);
        assert!(description.starts_with("AADSTS700016:"));

        let wrong_tenant = oauth_client(
            SECRET,
            "https://login.microsoftonline.com/fabrikam.onmicrosoft.com/oauth2/v2.0/token",
        );
        let result = wrong_tenant
            .exchange_client_credentials()
            .add_scope(Scope::new(GRAPH_SCOPE.into()))
            .request_async(&send)
            .await;
        let (error, description) = server_error(result);
        assert_eq!(error, BasicErrorResponseType::InvalidRequest);
        assert!(
            description.starts_with("AADSTS90002: Tenant 'fabrikam.onmicrosoft.com' not found.")
        );
    });
}

#[test]
fn scope_must_be_one_known_resource_with_default_suffix() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-02-14T11:00:00Z"),
            tenant(at("2025-02-14T11:30:00Z")),
            1,
        );
        let (error, description) =
            server_error(fetch(&sim, SECRET, "Mail.Send", AuthType::BasicAuth).await);
        assert_eq!(error, BasicErrorResponseType::InvalidScope);
        assert!(description.starts_with("AADSTS1002012:"));
        let (error, _) = server_error(
            fetch(
                &sim,
                SECRET,
                "https://example.com/.default",
                AuthType::BasicAuth,
            )
            .await,
        );
        assert_eq!(
            error,
            BasicErrorResponseType::Extension("invalid_resource".into())
        );
        assert!(
            fetch(&sim, SECRET, EXCHANGE_SCOPE, AuthType::BasicAuth)
                .await
                .is_ok()
        );
    });
}

#[test]
fn throttling_is_plain_text_that_oauth2_cannot_parse_and_503_is_temporarily_unavailable() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-02-14T11:00:00Z"),
            tenant(at("2025-02-14T11:30:00Z")),
            1,
        );
        let respond = |reply| Fault {
            target: Target::Entra,
            operation: Some("token".into()),
            kind: FaultKind::Respond {
                reply,
                retry_after: None,
            },
            activation: Activation {
                first: Some(1),
                ..Activation::default()
            },
        };
        sim.mocks
            .inject(respond(CatalogueReply::EntraThrottled))
            .unwrap();
        match fetch(&sim, SECRET, GRAPH_SCOPE, AuthType::BasicAuth).await {
            Err(RequestTokenError::Parse(_, body)) => assert_eq!(body, b"Too Many Requests"),
            other => panic!("expected a parse error, got {other:?}"),
        }
        let unavailable = CatalogueReply::parse(Target::Entra, "unavailable").unwrap();
        sim.mocks.inject(respond(unavailable)).unwrap();
        let (error, description) =
            server_error(fetch(&sim, SECRET, GRAPH_SCOPE, AuthType::BasicAuth).await);
        assert_eq!(
            error,
            BasicErrorResponseType::Extension("temporarily_unavailable".into())
        );
        assert!(description.starts_with("AADSTS90033:"));
        assert!(
            fetch(&sim, SECRET, GRAPH_SCOPE, AuthType::BasicAuth)
                .await
                .is_ok()
        );
    });
}

#[test]
fn reset_and_truncation_faults_surface_as_transport_errors() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-02-14T11:00:00Z"),
            tenant(at("2025-02-14T11:30:00Z")),
            1,
        );
        for kind in [FaultKind::ResetPeer, FaultKind::LimitData { bytes: 20 }] {
            sim.mocks
                .inject(Fault {
                    target: Target::Entra,
                    operation: None,
                    kind,
                    activation: Activation {
                        first: Some(1),
                        ..Activation::default()
                    },
                })
                .unwrap();
            let result = fetch(&sim, SECRET, GRAPH_SCOPE, AuthType::BasicAuth).await;
            assert!(
                matches!(result, Err(RequestTokenError::Request(_))),
                "{result:?}"
            );
        }
        assert!(
            fetch(&sim, SECRET, GRAPH_SCOPE, AuthType::BasicAuth)
                .await
                .is_ok()
        );
        let journal = sim.mocks.journal().render();
        assert!(
            journal.contains("-> no reply [reset] (fault reset_peer)"),
            "{journal}"
        );
        assert!(
            journal.contains("[truncate 20] (fault limit_data 20)"),
            "{journal}"
        );
    });
}

#[test]
fn timeout_fault_hangs_until_the_client_gives_up_on_the_virtual_clock() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-02-14T11:00:00Z"),
            tenant(at("2025-02-14T11:30:00Z")),
            1,
        );
        sim.mocks
            .inject(Fault {
                target: Target::Entra,
                operation: Some("token".into()),
                kind: FaultKind::Timeout,
                activation: Activation::default(),
            })
            .unwrap();
        let attempt = fetch(&sim, SECRET, GRAPH_SCOPE, AuthType::BasicAuth);
        let outcome = sim.clock.timeout(Duration::from_secs(30), attempt).await;
        assert!(outcome.is_err());
        assert_eq!(
            maildrill::time::rfc3339(sim.clock.now_utc()),
            "2025-02-14T11:00:30Z"
        );
    });
}

#[test]
fn secrets_and_tokens_never_reach_the_journal() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-02-14T11:00:00Z"),
            tenant(at("2025-02-14T11:30:00Z")),
            1,
        );
        let token = fetch(&sim, SECRET, GRAPH_SCOPE, AuthType::RequestBody)
            .await
            .unwrap();
        let journal = sim.mocks.journal().render();
        assert!(!journal.contains(SECRET));
        assert!(!journal.contains(token.access_token().secret()));
        assert!(
            journal.contains("client_secret=%5Bredacted%5D"),
            "{journal}"
        );
        assert!(
            journal.contains(r#""access_token":"[redacted]""#),
            "{journal}"
        );
    });
}
