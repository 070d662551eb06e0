//! [`SimBuilder`]: the choices of a [`Sim`] (tenants, seed, clock, mock settings, wiring) and
//! the steps that stand it up: clock, tenant state, CA, listeners, mocks, transports.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use super::expect::{HttpExpectations, VerifyOnDrop};
use super::{Credentials, Sim, Sockets};
use crate::control::{Control, ControlOptions, ControlParts};
use crate::fault::{Fault, FaultError};
use crate::journal::Journal;
use crate::mock::smtp::{SmtpConfig, SmtpServer};
use crate::mock::{HttpMocks, HttpMocksConfig};
use crate::seed::Seed;
use crate::subject::Endpoints;
use crate::tenant::{Directory, DirectoryConfig, TenantSpec, demo};
use crate::time::{SharedClock, VirtualClock};
use crate::tls::{Pki, TlsError};
use crate::wiring::memory::{MemoryNet, MemorySmtp};
use crate::wiring::socket::{HttpListener, SmtpListener};

/// How the sim listens on loopback sockets (the socket wiring).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketOptions {
    /// Port of the HTTP(S) listener for the token endpoint, Graph and the alert sink (0 picks
    /// a free one).
    pub http_port: u16,
    /// Port of the SMTP listener (STARTTLS; 0 picks a free one).
    pub smtp_port: u16,
    /// Plain HTTP instead of HTTPS (load tests against plain-HTTP peers, plain test clients).
    pub plain_http: bool,
    /// The address to listen on (default `127.0.0.1`). Another one reaches the mocks from
    /// other hosts: the server certificate names it too, and the endpoints handed out use it
    /// (loopback when it is `0.0.0.0` or `::`).
    pub bind: Option<IpAddr>,
}

impl SocketOptions {
    /// The address listened on.
    pub fn bind_ip(&self) -> IpAddr {
        self.bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// The address the endpoints name: the one listened on, or loopback for a wildcard.
    fn advertised_ip(&self) -> IpAddr {
        match self.bind_ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        }
    }
}

/// The sim could not be stood up.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding a listener failed.
    #[error("failed to {what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Generating the CA or a server configuration failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A fault given to the builder does not make sense for its target.
    #[error(transparent)]
    Fault(#[from] FaultError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SimError {
    let what = what.into();
    move |source| SimError::Io { what, source }
}

/// The choices of a [`Sim`]; [`Sim::builder`] starts one with the defaults.
#[derive(Debug, Default)]
pub struct SimBuilder {
    tenants: Vec<TenantSpec>,
    seed: Seed,
    start: Option<DateTime<Utc>>,
    clock: Option<SharedClock>,
    http: HttpMocksConfig,
    smtp: SmtpConfig,
    journal: Option<Journal>,
    faults: Vec<Fault>,
    sockets: Option<SocketOptions>,
    control: Option<ControlOptions>,
}

/// The instant a sim starts at unless told otherwise: the morning of the 2025-02-14 incident.
/// A fixed instant, so a sim built twice with one seed journals the same bytes.
pub fn default_start() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2025, 2, 14)
        .and_then(|d| d.and_hms_opt(11, 0, 0))
        .expect("2025-02-14T11:00:00 is a valid instant")
        .and_utc()
}

/// The alphabet of generated client secrets (Entra's).
const SECRET_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789~._-";

impl SimBuilder {
    /// Adds a tenant. Without any, the sim serves the demo tenant ([`demo::tenant`]) with a
    /// secret drawn from the seed, valid from a day before the start for a year.
    pub fn tenant(mut self, spec: TenantSpec) -> SimBuilder {
        self.tenants.push(spec);
        self
    }

    /// The seed of everything the mocks draw: request ids, tokens, generated secrets, fault
    /// probabilities. It replaces the seeds of the configurations given to [`Self::http`]
    /// and [`Self::smtp`].
    pub fn seed(mut self, seed: Seed) -> SimBuilder {
        self.seed = seed;
        self
    }

    /// The calendar instant the clock starts at (default [`default_start`]); ignored when
    /// [`Self::clock`] gives a clock.
    pub fn start(mut self, at: DateTime<Utc>) -> SimBuilder {
        self.start = Some(at);
        self
    }

    /// The clock, instead of a [`VirtualClock`] at the start instant (which is virtual time on
    /// the paused replay runtime and real time from the start on a normal runtime): a
    /// [`crate::time::HarnessClock`] for sockets in virtual time on a multi-thread runtime.
    pub fn clock(mut self, clock: SharedClock) -> SimBuilder {
        self.clock = Some(clock);
        self
    }

    /// Settings of the token endpoint and Graph. On sockets their base URLs become the
    /// listener's.
    pub fn http(mut self, config: HttpMocksConfig) -> SimBuilder {
        self.http = config;
        self
    }

    /// Settings of the SMTP mock; without `tls`, STARTTLS uses a certificate the generated CA
    /// signed.
    pub fn smtp(mut self, config: SmtpConfig) -> SimBuilder {
        self.smtp = config;
        self
    }

    /// The journal every mock writes to (default: unbounded; [`Journal::bounded`] for a
    /// long-running server).
    pub fn journal(mut self, journal: Journal) -> SimBuilder {
        self.journal = Some(journal);
        self
    }

    /// A fault in force from the start, for good (a scenario's schedule); for a fault that
    /// ends with a scope, use [`Sim::inject`].
    pub fn fault(mut self, fault: Fault) -> SimBuilder {
        self.faults.push(fault);
        self
    }

    /// On sockets, serves the control API (`/_maildrill/`, CONTRACTS section 9) on the HTTP
    /// listener, and runs the mocks on its clock (replacing any [`Self::clock`]). Ignored in
    /// memory.
    pub fn control(mut self, options: ControlOptions) -> SimBuilder {
        self.control = Some(options);
        self
    }

    /// Serves on loopback sockets instead of in memory.
    pub fn sockets(mut self, options: SocketOptions) -> SimBuilder {
        self.sockets = Some(options);
        self
    }

    /// Stands the sim up on the wiring chosen: in memory unless [`Self::sockets`] was called,
    /// in which case the listeners are bound (on the current runtime) and serving.
    pub async fn build(self) -> Result<Sim, SimError> {
        let listeners = match self.sockets {
            Some(options) => Some(Listeners::bind(options).await?),
            None => None,
        };
        self.assemble(listeners)
    }

    /// Stands the sim up in memory, without awaiting (nothing to bind). Must be called inside
    /// a tokio runtime: the clock anchors on it, and connections are served by its tasks.
    pub fn build_in_memory(mut self) -> Result<Sim, SimError> {
        self.sockets = None;
        self.control = None;
        self.assemble(None)
    }

    /// The clock, the tenant state and the mocks, then the wiring's way to them.
    fn assemble(self, listeners: Option<Listeners>) -> Result<Sim, SimError> {
        let seed = self.seed;
        let start = self.start.unwrap_or_else(default_start);
        let clock = match (&self.control, self.clock) {
            (Some(control), _) => control.clock.shared(),
            (None, Some(clock)) => clock,
            (None, None) => VirtualClock::starting_at(start).shared(),
        };
        let now = clock.now_utc();
        let tenants = if self.tenants.is_empty() {
            vec![demo_tenant(seed, now)]
        } else {
            self.tenants
        };
        let credentials = Credentials::of(&tenants[0], now);
        let initial = DirectoryConfig { seed, tenants };
        let directory = Directory::new(&initial).shared();
        // A listener on another address than loopback puts it on the server certificate.
        let extra_names: Vec<String> = listeners
            .as_ref()
            .map(|l| l.advertised)
            .filter(|ip| !ip.is_loopback())
            .map(|ip| ip.to_string())
            .into_iter()
            .collect();
        let pki = Pki::generate_naming(&extra_names)?;
        let journal = self.journal.unwrap_or_default();
        let mut http = HttpMocksConfig { seed, ..self.http };
        if let Some(listeners) = &listeners {
            // The mocks write their address into the links they hand out (a delta page's
            // nextLink), which a client follows as it is.
            http.endpoints = listeners.bases.clone();
        }
        let http_bases = http.endpoints.clone();
        let mocks = HttpMocks::new(directory.clone(), clock.clone(), journal.clone(), http);
        for fault in self.faults {
            mocks.inject(fault)?;
        }
        let smtp = SmtpConfig {
            seed,
            tls: match self.smtp.tls {
                Some(tls) => Some(tls),
                None => Some(pki.server_config(false)?),
            },
            ..self.smtp
        };
        let smtp = SmtpServer::new(directory.clone(), clock.clone(), journal.clone(), smtp)
            .with_faults(mocks.faults_handle());
        let parts = Parts {
            bases: http_bases,
            clock,
            directory,
            journal,
            mocks,
            smtp,
            pki,
            credentials,
        };
        match listeners {
            None => Ok(parts.in_memory()),
            Some(listeners) => {
                let control = self.control.map(|options| {
                    let parts = ControlParts {
                        directory: parts.directory.clone(),
                        initial,
                        mocks: parts.mocks.clone(),
                        smtp: parts.smtp.clone(),
                        journal: parts.journal.clone(),
                    };
                    Control::new(&options, parts)
                });
                listeners.serve(parts, control)
            }
        }
    }
}

/// The demo tenant as `serve` has always served it: a secret drawn from the seed, valid from a
/// day before `now` for a year. (The stream keeps its first name, so a seed gives `serve` the
/// secret it gave before.)
fn demo_tenant(seed: Seed, now: DateTime<Utc>) -> TenantSpec {
    let secret = seed.stream("serve.secret").string_from(SECRET_CHARS, 40);
    demo::tenant(now - TimeDelta::days(1), &secret, TimeDelta::days(365))
}

/// Everything but the wiring.
struct Parts {
    /// The base URLs the mocks name in links.
    bases: crate::mock::Endpoints,
    clock: SharedClock,
    directory: crate::tenant::SharedDirectory,
    journal: Journal,
    mocks: HttpMocks,
    smtp: SmtpServer,
    pki: Pki,
    credentials: Credentials,
}

impl Parts {
    fn into_sim(
        self,
        endpoints: Endpoints,
        memory: Option<(MemoryNet, MemorySmtp)>,
        sockets: Option<Sockets>,
    ) -> Sim {
        let expectations = HttpExpectations::new(self.journal.clone());
        Sim {
            clock: self.clock,
            directory: self.directory,
            journal: self.journal,
            mocks: self.mocks,
            smtp: self.smtp,
            pki: self.pki,
            credentials: self.credentials,
            endpoints,
            memory,
            sockets,
            _verify_on_drop: VerifyOnDrop(expectations.clone()),
            expectations,
        }
    }

    /// The in-memory wiring: duplex streams to the mocks, under Microsoft's own names.
    fn in_memory(self) -> Sim {
        let endpoints = endpoints(
            &self.bases,
            &self.credentials.tenant_id,
            "https://events.pagerduty.com",
            ("smtp.office365.com", 587),
            &self.pki,
        );
        let memory = (
            MemoryNet::new(self.mocks.clone()),
            MemorySmtp::new(self.smtp.clone()),
        );
        self.into_sim(endpoints, Some(memory), None)
    }
}

/// What a client is handed: the mocks' bases, the SMTP host and port, the CA.
fn endpoints(
    bases: &crate::mock::Endpoints,
    tenant: &str,
    alerts: &str,
    (smtp_host, smtp_port): (&str, u16),
    pki: &Pki,
) -> Endpoints {
    let authority = format!("{}/{tenant}", bases.login_base);
    Endpoints {
        token_url: format!("{authority}/oauth2/v2.0/token"),
        authority,
        graph_url: format!("{}/v1.0", bases.graph_base),
        smtp_host: smtp_host.to_string(),
        smtp_port,
        alerts_url: format!("{alerts}/v2/enqueue"),
        ca_pem: pki.ca_pem().to_string(),
    }
}

/// Loopback listeners bound before the mocks exist (the mocks' links need the port): HTTP(S)
/// for the token endpoint, Graph and the alert sink on one port, SMTP with STARTTLS on
/// another. IP literals only: a host name would be resolved on a blocking thread, off a
/// replay's clock.
struct Listeners {
    http: tokio::net::TcpListener,
    smtp: tokio::net::TcpListener,
    advertised: IpAddr,
    plain_http: bool,
    bases: crate::mock::Endpoints,
}

impl Listeners {
    async fn bind(options: SocketOptions) -> Result<Listeners, SimError> {
        let ip = options.bind_ip();
        let bind = |port| async move {
            let addr = SocketAddr::new(ip, port);
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(io(format!("bind {addr}")))
        };
        let http = bind(options.http_port).await?;
        let smtp = bind(options.smtp_port).await?;
        let port = http
            .local_addr()
            .map_err(io("read the bound address"))?
            .port();
        let advertised = options.advertised_ip();
        let scheme = if options.plain_http { "http" } else { "https" };
        let base = format!("{scheme}://{}", SocketAddr::new(advertised, port));
        Ok(Listeners {
            http,
            smtp,
            advertised,
            plain_http: options.plain_http,
            bases: crate::mock::Endpoints {
                login_base: base.clone(),
                graph_base: base,
            },
        })
    }

    /// Starts serving, with the control API before the mocks when given; the servers run
    /// while the sim lives.
    fn serve(self, parts: Parts, control: Option<Control>) -> Result<Sim, SimError> {
        let http_addr = self
            .http
            .local_addr()
            .map_err(io("read the bound address"))?;
        let smtp_addr = self
            .smtp
            .local_addr()
            .map_err(io("read the bound address"))?;
        // The alert sink shares the HTTP listener (CONTRACTS section 2).
        let base = &self.bases.login_base;
        let endpoints = endpoints(
            &self.bases,
            &parts.credentials.tenant_id,
            base,
            (&self.advertised.to_string(), smtp_addr.port()),
            &parts.pki,
        );
        let tls = if self.plain_http {
            None
        } else {
            Some(parts.pki.server_config(true)?)
        };
        let mut http = HttpListener::new(self.http, parts.mocks.clone(), tls);
        if let Some(control) = control {
            http = http.with_front(std::sync::Arc::new(control));
        }
        let http = http.spawn();
        let smtp = SmtpListener::new(self.smtp, parts.smtp.clone()).spawn();
        let sockets = Sockets {
            http_addr,
            smtp_addr,
            base: base.clone(),
            servers: vec![http, smtp],
        };
        Ok(parts.into_sim(endpoints, None, Some(sockets)))
    }
}
