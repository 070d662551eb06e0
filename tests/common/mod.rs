//! Shared set-up for integration tests: the demo tenant, mocks and in-memory wiring on the
//! replay runtime, stood up by `maildrill::Sim`.
#![allow(dead_code)]

pub mod python;
pub mod serve;
pub mod smtp;

use chrono::{DateTime, TimeDelta, Utc};
use maildrill::journal::Journal;
use maildrill::mock::{HttpMocks, HttpMocksConfig};
use maildrill::seed::Seed;
use maildrill::tenant::{TenantSpec, demo};
use maildrill::time::SharedClock;
use maildrill::wiring::memory::MemoryNet;

/// The demo app's secret in tests.
pub const SECRET: &str = "Mlm8Q~test-secret-value-000000000000000";
/// Scope for Graph.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// Scope for Exchange Online (SMTP).
pub const EXCHANGE_SCOPE: &str = "https://outlook.office365.com/.default";

pub fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("test instants are valid RFC 3339")
}

/// The demo tenant whose secret ends at `secret_end`.
pub fn tenant(secret_end: DateTime<Utc>) -> TenantSpec {
    let start = secret_end - TimeDelta::days(365);
    demo::tenant(start, SECRET, TimeDelta::days(365))
}

/// Mocks, their wiring and the clock, built inside a runtime: a [`maildrill::Sim`] in memory,
/// with its parts as the tests name them.
pub struct Sim {
    pub clock: SharedClock,
    pub mocks: HttpMocks,
    pub net: MemoryNet,
    pub sim: maildrill::Sim,
}

impl Sim {
    pub fn new(start: DateTime<Utc>, spec: TenantSpec, seed: u64) -> Sim {
        Sim::with_config(
            start,
            spec,
            HttpMocksConfig {
                seed: Seed(seed),
                ..HttpMocksConfig::default()
            },
        )
    }

    pub fn with_config(start: DateTime<Utc>, spec: TenantSpec, config: HttpMocksConfig) -> Sim {
        let sim = maildrill::Sim::builder()
            .start(start)
            .seed(config.seed)
            .tenant(spec)
            .http(config)
            .build_in_memory()
            .expect("an in-memory sim needs nothing that can fail");
        Sim {
            clock: sim.clock().clone(),
            mocks: sim.mocks().clone(),
            net: sim.net().expect("built in memory").clone(),
            sim,
        }
    }

    /// An SMTP mock with STARTTLS on this tenant and clock (its own journal and fault set,
    /// unlike the sim's), and the PEM of the CA its client must trust.
    pub fn smtp(&self, seed: u64) -> (maildrill::mock::smtp::SmtpServer, String) {
        let pki = self.sim.pki();
        let config = maildrill::mock::smtp::SmtpConfig {
            seed: Seed(seed),
            tls: Some(pki.server_config(false).unwrap()),
            ..maildrill::mock::smtp::SmtpConfig::default()
        };
        let server = maildrill::mock::smtp::SmtpServer::new(
            self.mocks.directory().clone(),
            self.clock.clone(),
            Journal::new(),
            config,
        );
        (server, pki.ca_pem().to_string())
    }

    /// A Graph token of the demo app, issued by the directory now.
    pub fn graph_token(&self) -> String {
        let now = maildrill::time::Clock::now_utc(self.clock.as_ref());
        maildrill::tenant::Directory::lock(self.mocks.directory())
            .issue_token(
                demo::TENANT_ID,
                demo::APP_ID,
                maildrill::tenant::Resource::Graph,
                now,
            )
            .expect("the demo app gets a token")
            .value
    }

    pub fn token_url(&self) -> String {
        format!(
            "https://login.microsoftonline.com/{}/oauth2/v2.0/token",
            demo::TENANT_ID
        )
    }

    /// Sends a raw request over a fresh in-memory connection and returns every byte of the
    /// response as the client receives it.
    pub async fn raw(&self, request: &str) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = self.net.connect();
        stream
            .write_all(request.as_bytes())
            .await
            .expect("duplex write");
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.expect("duplex read");
        String::from_utf8(out).expect("mock replies are UTF-8")
    }

    /// A form POST to the token endpoint, as raw bytes.
    pub async fn raw_token(&self, form: &str) -> String {
        let request = format!(
            "POST /{}/oauth2/v2.0/token HTTP/1.1\r\nHost: login.microsoftonline.com\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            demo::TENANT_ID,
            form.len()
        );
        self.raw(&request).await
    }
}

/// The oauth2 crate's client-credentials client for the demo app.
pub fn oauth_client(
    secret: &str,
    token_url: &str,
) -> oauth2::basic::BasicClient<
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
> {
    oauth2::basic::BasicClient::new(oauth2::ClientId::new(demo::APP_ID.into()))
        .set_client_secret(oauth2::ClientSecret::new(secret.into()))
        .set_token_uri(oauth2::TokenUrl::new(token_url.into()).expect("valid URL"))
}

/// The client's token provider for the demo app against the mock token endpoint in memory.
pub fn token_provider(
    sim: &Sim,
    secret: maildrill::client::secret::SecretSource,
    auth: maildrill::client::token::ClientAuth,
    refresh_ahead: std::time::Duration,
) -> std::sync::Arc<maildrill::client::token::TokenProvider> {
    let mut config =
        maildrill::client::token::TokenConfig::new(sim.token_url(), demo::APP_ID, secret);
    config.auth = auth;
    config.refresh_ahead = refresh_ahead;
    provider(sim, config)
}

/// A token provider with `config` over the in-memory wiring.
pub fn provider(
    sim: &Sim,
    config: maildrill::client::token::TokenConfig,
) -> std::sync::Arc<maildrill::client::token::TokenProvider> {
    std::sync::Arc::new(maildrill::client::token::TokenProvider::new(
        config,
        sim.clock.clone(),
        std::sync::Arc::new(sim.net.clone()),
    ))
}
