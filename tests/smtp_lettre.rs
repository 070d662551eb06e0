//! The SMTP mock driven by lettre over the in-memory wiring: STARTTLS with the generated CA,
//! AUTH XOAUTH2 with a token from the mock token endpoint, and the refusals that follow an
//! expired token or a token for the wrong audience.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use std::time::Duration;

use common::*;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use maildrill::journal::Journal;
use maildrill::mock::smtp::{SmtpConfig, SmtpServer};
use maildrill::seed::Seed;
use maildrill::tenant::{Directory, demo};
use maildrill::time::{ClockExt as _, replay_runtime};
use maildrill::tls::Pki;
use maildrill::wiring::memory::{MemorySmtp, MemoryStream};
use oauth2::{Scope, TokenResponse as _};

struct World {
    sim: Sim,
    smtp: MemorySmtp,
    server: SmtpServer,
    ca_pem: String,
}

fn world() -> World {
    let sim = Sim::new(
        at("2025-02-14T11:00:00Z"),
        tenant(at("2025-03-01T00:00:00Z")),
        21,
    );
    let pki = Pki::generate().unwrap();
    let config = SmtpConfig {
        seed: Seed(21),
        tls: Some(pki.server_config(false).unwrap()),
        ..SmtpConfig::default()
    };
    let server = SmtpServer::new(
        sim.mocks.directory().clone(),
        sim.clock.clone(),
        Journal::new(),
        config,
    );
    let smtp = MemorySmtp::new(server.clone());
    World {
        sim,
        smtp,
        server,
        ca_pem: pki.ca_pem().to_string(),
    }
}

impl World {
    async fn token(&self, scope: &str) -> String {
        let net = self.sim.net.clone();
        let send = move |request| {
            let net = net.clone();
            async move { net.send(request).await }
        };
        let token = oauth_client(SECRET, &self.sim.token_url())
            .exchange_client_credentials()
            .add_scope(Scope::new(scope.into()))
            .request_async(&send)
            .await
            .unwrap();
        token.access_token().secret().clone()
    }

    async fn connect(&self) -> AsyncSmtpConnection {
        let hello = ClientId::Domain("client.example".into());
        let mut conn = AsyncSmtpConnection::connect_with_transport(
            Box::new(MemoryStream(self.smtp.connect())),
            &hello,
        )
        .await
        .unwrap();
        conn.starttls(self.tls(), &hello).await.unwrap();
        conn
    }

    /// TLS parameters that trust the generated CA.
    fn tls(&self) -> TlsParameters {
        TlsParameters::builder("localhost".into())
            .certificate_store(CertificateStore::None)
            .add_root_certificate(Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .build_rustls()
            .unwrap()
    }

    fn sent_subjects(&self) -> Vec<String> {
        let directory = Directory::lock(self.sim.mocks.directory());
        directory
            .mailbox(demo::TENANT_ID, demo::MAILBOX)
            .unwrap()
            .sent()
            .map(|m| m.subject.clone())
            .collect()
    }
}

fn message(subject: &str) -> (lettre::address::Envelope, Vec<u8>) {
    let envelope = lettre::address::Envelope::new(
        Some(demo::MAILBOX.parse().unwrap()),
        vec!["customer@example.com".parse().unwrap()],
    )
    .unwrap();
    let body = format!(
        "From: {}\r\nTo: customer@example.com\r\nSubject: {subject}\r\nMessage-ID: <{subject}@contoso>\r\n\r\nHello.\r\n.leading dot\r\n",
        demo::MAILBOX
    );
    (envelope, body.into_bytes())
}

#[test]
fn lettre_sends_over_starttls_with_xoauth2() {
    replay_runtime().unwrap().block_on(async {
        let world = world();
        let token = world.token(EXCHANGE_SCOPE).await;
        let mut conn = world.connect().await;
        conn.auth(
            &[Mechanism::Xoauth2],
            &Credentials::new(demo::MAILBOX.into(), token),
        )
        .await
        .unwrap();
        let (envelope, body) = message("invoice-1");
        let response = conn.send(&envelope, &body).await.unwrap();
        assert_eq!(response.code().to_string(), "250");
        assert!(
            response
                .message()
                .next()
                .unwrap()
                .starts_with("2.0.0 OK <invoice-1@contoso> [Hostname=")
        );
        conn.quit().await.unwrap();
        assert_eq!(world.sent_subjects(), ["invoice-1"]);
        let directory = Directory::lock(world.sim.mocks.directory());
        let sent = directory
            .mailbox(demo::TENANT_ID, demo::MAILBOX)
            .unwrap()
            .sent()
            .next()
            .cloned()
            .unwrap();
        // lettre always sends CRLF.CRLF after the body, so a body ending in CRLF gains a line.
        let tail = b"\r\n.leading dot\r\n\r\n";
        assert!(
            sent.raw.ends_with(tail),
            "dot-stuffing round-trips: {:?}",
            String::from_utf8_lossy(&sent.raw)
        );
    });
}

#[test]
fn after_the_token_expires_auth_is_a_permanent_535() {
    replay_runtime().unwrap().block_on(async {
        let world = world();
        let token = world.token(EXCHANGE_SCOPE).await;
        world.sim.clock.sleep(Duration::from_secs(3600)).await;
        let mut conn = world.connect().await;
        let error = conn
            .auth(
                &[Mechanism::Xoauth2],
                &Credentials::new(demo::MAILBOX.into(), token),
            )
            .await
            .unwrap_err();
        assert!(error.is_permanent(), "{error}");
        assert_eq!(error.status().unwrap().to_string(), "535");
        assert!(
            error
                .to_string()
                .contains("5.7.3 Authentication unsuccessful"),
            "{error}"
        );
        assert!(world.sent_subjects().is_empty());
    });
}

#[test]
fn a_graph_token_is_refused_at_smtp() {
    replay_runtime().unwrap().block_on(async {
        let world = world();
        let token = world.token(GRAPH_SCOPE).await;
        let mut conn = world.connect().await;
        let error = conn
            .auth(
                &[Mechanism::Xoauth2],
                &Credentials::new(demo::MAILBOX.into(), token),
            )
            .await
            .unwrap_err();
        assert_eq!(error.status().unwrap().to_string(), "535");
    });
}

#[test]
fn the_transcript_redacts_auth_and_is_deterministic() {
    let transcript = || {
        replay_runtime().unwrap().block_on(async {
            let world = world();
            let token = world.token(EXCHANGE_SCOPE).await;
            let mut conn = world.connect().await;
            conn.auth(
                &[Mechanism::Xoauth2],
                &Credentials::new(demo::MAILBOX.into(), token.clone()),
            )
            .await
            .unwrap();
            let (envelope, body) = message("invoice-2");
            conn.send(&envelope, &body).await.unwrap();
            conn.quit().await.unwrap();
            let journal = world.server.journal().render();
            assert!(!journal.contains(&token));
            journal
        })
    };
    let first = transcript();
    assert_eq!(first, transcript());
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../fixtures/snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!("smtp__happy_path_transcript", first));
}

#[test]
fn a_tls_failure_fault_breaks_the_starttls_handshake() {
    replay_runtime().unwrap().block_on(async {
        let world = world();
        world
            .server
            .inject(maildrill::fault::Fault {
                target: maildrill::fault::Target::Smtp,
                operation: Some("starttls".into()),
                kind: maildrill::fault::FaultKind::TlsFailure,
                activation: maildrill::fault::Activation::default(),
            })
            .unwrap();
        let hello = ClientId::Domain("client.example".into());
        let mut conn = AsyncSmtpConnection::connect_with_transport(
            Box::new(MemoryStream(world.smtp.connect())),
            &hello,
        )
        .await
        .unwrap();
        let error = conn.starttls(world.tls(), &hello).await.unwrap_err();
        assert!(
            error.is_tls() || error.to_string().to_lowercase().contains("connection"),
            "{error}"
        );
        let journal = world.server.journal().render();
        assert!(
            journal.contains("[tls failure] (fault tls_failure)"),
            "{journal}"
        );
    });
}
