//! The front door: one builder call stands up the tenant and the mocks (token endpoint, Graph,
//! SMTP, alert sink) on either wiring, and returns a [`Sim`] handle with the endpoints, the CA,
//! faults injected under guards, HTTP expectations verified on drop, the journal and the mail.
//!
//! - [`Sim::builder`]: tenants (default: [`crate::tenant::demo`]), seed, start instant or clock,
//!   mock settings, faults from the start, and the wiring: in memory (duplex streams, for the
//!   paused replay runtime) or loopback sockets (HTTPS with the generated CA, SMTP with
//!   STARTTLS).
//! - [`Sim::inject`] returns a [`FaultGuard`] that clears the fault when it drops.
//! - [`Sim::expect`] and [`Sim::expect_scoped`]: wiremock-style expectations on HTTP requests,
//!   verified when the sim (or the guard) drops, panicking with every request seen.
//!
//! It does not drive a client or a timeline: the runner (`runner::replay`) does that on top of
//! it, and so can any test.
//!
//! ```
//! use maildrill::{HttpExpectation, RequestMatcher, Sim, Times};
//! use maildrill::fault::{Activation, Fault, FaultKind, Target};
//!
//! maildrill::time::replay_runtime().unwrap().block_on(async {
//!     let sim = Sim::builder().build_in_memory().unwrap();
//!     let net = sim.net().expect("in memory");
//!     let token = || sim.credentials().token_request(&sim.endpoints().token_url);
//!     sim.expect(HttpExpectation::new(RequestMatcher::token(), Times::exactly(2)));
//!     {
//!         let _down = sim.inject(Fault {
//!             target: Target::Entra,
//!             operation: Some("token".into()),
//!             kind: FaultKind::ResetPeer,
//!             activation: Activation::default(),
//!         }).unwrap();
//!         assert!(net.send(token()).await.is_err());
//!     }
//!     // The guard has dropped: the token endpoint answers again.
//!     assert_eq!(net.send(token()).await.unwrap().status(), 200);
//! });
//! ```

mod builder;
mod expect;
mod guard;

use std::net::SocketAddr;

pub use builder::{SimBuilder, SimError, SocketOptions, default_start};
pub use expect::{HttpExpectation, HttpExpectationGuard, HttpVerificationReport, RequestMatcher};
pub use guard::FaultGuard;

use crate::fault::{Fault, FaultError};
use crate::journal::Journal;
use crate::mock::HttpMocks;
use crate::mock::smtp::{Expectation, ExpectationGuard, ReceivedMessage, SmtpServer};
use crate::subject::{Endpoints, MemoryTransports};
use crate::tenant::{Directory, SentMessage, SharedDirectory, TenantSpec};
use crate::time::SharedClock;
use crate::tls::Pki;
use crate::wiring::memory::{MemoryNet, MemorySmtp};
use crate::wiring::socket::ServerHandle;
use expect::{HttpExpectations, VerifyOnDrop};

/// The simulated Microsoft side, stood up: tenant state, mocks, clock, journal and the way a
/// client reaches them. Listeners (on sockets) serve while it lives; HTTP expectations
/// registered with [`Sim::expect`] are verified when it drops.
#[derive(Debug)]
pub struct Sim {
    clock: SharedClock,
    directory: SharedDirectory,
    journal: Journal,
    mocks: HttpMocks,
    smtp: SmtpServer,
    pki: Pki,
    credentials: Credentials,
    endpoints: Endpoints,
    memory: Option<(MemoryNet, MemorySmtp)>,
    sockets: Option<Sockets>,
    expectations: HttpExpectations,
    /// Verifies the unscoped expectations when the sim drops: a field of its own, so the sim
    /// has no `Drop` and `shutdown` can take it apart.
    _verify_on_drop: VerifyOnDrop,
}

/// The listeners of the socket wiring.
#[derive(Debug)]
struct Sockets {
    http_addr: SocketAddr,
    smtp_addr: SocketAddr,
    /// `https://127.0.0.1:PORT` (or `http://`), which the mocks' links name.
    base: String,
    servers: Vec<ServerHandle>,
}

impl Sim {
    /// A builder with the defaults: the demo tenant, seed 0, a virtual clock at
    /// [`default_start`], in memory.
    pub fn builder() -> SimBuilder {
        SimBuilder::default()
    }

    /// The clock every mock reads.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The tenant state (apps, secrets, tokens, mailboxes); lock it with [`Directory::lock`].
    pub fn directory(&self) -> &SharedDirectory {
        &self.directory
    }

    /// The journal of every request the mocks served.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The token endpoint, Graph and the alert sink as one service.
    pub fn mocks(&self) -> &HttpMocks {
        &self.mocks
    }

    /// The SMTP mock (its received messages, its own expectations).
    pub fn smtp(&self) -> &SmtpServer {
        &self.smtp
    }

    /// The generated CA and the server certificate it signed.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The CA every server certificate chains to, as PEM.
    pub fn ca_pem(&self) -> &str {
        self.pki.ca_pem()
    }

    /// Where each service answers, as a client is configured with it.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The first tenant's first app, its secret valid at the start, its first mailbox.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// maildrill's own transports to the mocks on the in-memory wiring; `None` on sockets.
    pub fn memory(&self) -> Option<MemoryTransports> {
        self.memory.as_ref().map(|(http, smtp)| MemoryTransports {
            http: std::sync::Arc::new(http.clone()),
            smtp: std::sync::Arc::new(smtp.clone()),
        })
    }

    /// HTTP to the mocks in memory (oauth2's client slot, raw connections); `None` on sockets.
    pub fn net(&self) -> Option<&MemoryNet> {
        self.memory.as_ref().map(|(http, _)| http)
    }

    /// SMTP connections in memory; `None` on sockets.
    pub fn memory_smtp(&self) -> Option<&MemorySmtp> {
        self.memory.as_ref().map(|(_, smtp)| smtp)
    }

    /// The HTTP(S) listener's address on sockets.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.sockets.as_ref().map(|s| s.http_addr)
    }

    /// The SMTP listener's address on sockets.
    pub fn smtp_addr(&self) -> Option<SocketAddr> {
        self.sockets.as_ref().map(|s| s.smtp_addr)
    }

    /// On sockets, `https://127.0.0.1:PORT` (or `http://`): the base the mocks' links name.
    pub fn socket_base(&self) -> Option<&str> {
        self.sockets.as_ref().map(|s| s.base.as_str())
    }

    /// Injects a fault into the one fault set every mock shares; it is cleared when the guard
    /// drops, unless [`FaultGuard::keep`] keeps it.
    pub fn inject(&self, fault: Fault) -> Result<FaultGuard, FaultError> {
        let id = self.mocks.inject(fault)?;
        Ok(FaultGuard::new(self.mocks.clone(), id))
    }

    /// Expects HTTP requests from now on, verified when the sim drops: an unmet expectation
    /// panics there (unless the thread is already panicking) with what was expected and every
    /// HTTP request seen. For tests, as wiremock's `Mock::expect`.
    pub fn expect(&self, expectation: HttpExpectation) {
        self.expectations.register(expectation, false);
    }

    /// Expects HTTP requests from now on, verified when the returned guard drops (wiremock's
    /// `mount_as_scoped`).
    pub fn expect_scoped(&self, expectation: HttpExpectation) -> HttpExpectationGuard {
        let id = self.expectations.register(expectation, true);
        HttpExpectationGuard::new(self.expectations.clone(), id)
    }

    /// Checks every HTTP expectation registered on the sim now, without panicking.
    pub fn verify(&self) -> HttpVerificationReport {
        self.expectations.verify(|_, _| true)
    }

    /// Expects messages at the SMTP mock, verified when the guard drops.
    pub fn expect_mail(&self, expectation: Expectation) -> ExpectationGuard {
        self.smtp.expect(expectation)
    }

    /// The messages the SMTP mock accepted (the newest 10,000).
    pub fn received(&self) -> Vec<ReceivedMessage> {
        self.smtp.received()
    }

    /// The mail every mailbox sent, over SMTP or Graph, in tenant and mailbox order.
    pub fn sent_mail(&self) -> Vec<SentMessage> {
        let directory = Directory::lock(&self.directory);
        directory
            .tenants()
            .iter()
            .flat_map(|t| &t.mailboxes)
            .flat_map(|m| m.sent().cloned())
            .collect()
    }

    /// Stops the listeners and waits for their accept loops to end (dropping the sim stops
    /// them too, without waiting). HTTP expectations are verified here, as at a drop.
    pub async fn shutdown(self) {
        let Sim { sockets, .. } = self;
        for server in sockets.into_iter().flat_map(|s| s.servers) {
            server.shutdown().await;
        }
    }
}

/// What a client needs besides the endpoints: the tenant, the app, its secret, the mailbox (the
/// values of `maildrill serve`'s environment file).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The directory (tenant) id.
    pub tenant_id: String,
    /// The app registration's client id.
    pub client_id: String,
    /// The app's first secret valid at the start (or its first secret, so an expired-only
    /// tenant still shows its failure).
    pub secret: String,
    /// The first mailbox's user principal name.
    pub mailbox: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("secret", &"[redacted]")
            .field("mailbox", &self.mailbox)
            .finish()
    }
}

impl Credentials {
    /// Reads them off a tenant at `now`.
    pub fn of(tenant: &TenantSpec, now: chrono::DateTime<chrono::Utc>) -> Credentials {
        let app = tenant.apps.first();
        let secret = app.and_then(|a| {
            a.secrets
                .iter()
                .find(|s| s.start <= now && now < s.end)
                .or(a.secrets.first())
        });
        Credentials {
            tenant_id: tenant.id.clone(),
            client_id: app.map(|a| a.app_id.clone()).unwrap_or_default(),
            secret: secret.map(|s| s.value.clone()).unwrap_or_default(),
            mailbox: tenant
                .mailboxes
                .first()
                .map(|m| m.upn.clone())
                .unwrap_or_default(),
        }
    }

    /// A client-credentials token request for Graph to `token_url`, secret in the body, as a
    /// plain client sends it.
    pub fn token_request(&self, token_url: &str) -> http::Request<Vec<u8>> {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.client_id)
            .append_pair("client_secret", &self.secret)
            .append_pair("scope", "https://graph.microsoft.com/.default")
            .finish();
        let request = http::Request::post(token_url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form.into_bytes());
        // Only the URI can be invalid; a bad one is a caller's mistake worth failing on.
        request.expect("token_url is a valid URI")
    }
}
