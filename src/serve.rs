//! `maildrill serve`: the mocks on loopback in real time, for clients in any language: the
//! token endpoint and Graph over HTTPS, SMTP submission with STARTTLS, and the control API
//! (`/_maildrill/`) that moves the clock, rotates secrets and injects faults meanwhile.
//!
//! It writes the environment file of CONTRACTS section 2 (mode 0600) and the CA certificate
//! next to it, prints where everything is (never the secret or the control token), and runs
//! until Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::control::ControlOptions;
use crate::envfile::{ControlAccess, Environment, write_private};
use crate::journal::Journal;
use crate::mock::HttpMocks;
use crate::mock::smtp::SmtpConfig;
use crate::scenario::{self, LoadError};
use crate::seed::Seed;
use crate::sim::{Sim, SimError, SocketOptions};
use crate::tenant::CertificateSpec;
use crate::time::CalendarClock;
use crate::tls::TlsError;

/// Options of `maildrill serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The calendar instant the clock starts at (default: now).
    pub at: Option<DateTime<Utc>>,
    /// Where to write the environment file.
    pub env_file: PathBuf,
    /// Port of the HTTPS endpoint (0 picks a free one).
    pub http_port: u16,
    /// Serve plain HTTP instead of HTTPS (load tests against plain-HTTP peers only).
    pub plain_http: bool,
    /// Port of the SMTP submission endpoint (STARTTLS; 0 picks a free one).
    pub smtp_port: u16,
    /// No AUTH required and no per-mailbox limits at SMTP (load tests only).
    pub open_smtp: bool,
    /// PEM certificate chain and key for STARTTLS instead of the generated ones.
    pub smtp_tls_files: Option<(PathBuf, PathBuf)>,
    /// How many journal entries to keep.
    pub journal_capacity: usize,
    /// Seed of request ids and the demo secret.
    pub seed: Seed,
    /// The tenant to serve instead of the demo tenant, from a scenario file.
    pub scenario: Option<PathBuf>,
    /// Listen on this address instead of `127.0.0.1`: the explicit step that makes the mocks
    /// and the control API (still behind its token) reachable from other hosts.
    pub bind: Option<std::net::IpAddr>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            at: None,
            env_file: PathBuf::from("maildrill.env"),
            http_port: 0,
            plain_http: false,
            smtp_port: 0,
            open_smtp: false,
            smtp_tls_files: None,
            journal_capacity: 10_000,
            seed: Seed(0),
            scenario: None,
            bind: None,
        }
    }
}

/// `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding or writing files failed.
    #[error("failed to {what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// TLS set-up failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The scenario file could not be loaded.
    #[error(transparent)]
    Scenario(#[from] LoadError),
    /// The mocks could not be stood up (a port taken, TLS).
    #[error(transparent)]
    Sim(#[from] SimError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// A running `serve`: its address, files and mocks.
#[derive(Debug)]
pub struct Served {
    /// The HTTP(S) address.
    pub http_addr: SocketAddr,
    /// The SMTP address.
    pub smtp_addr: SocketAddr,
    /// The environment written for clients.
    pub env: Environment,
    /// The mocks (for tests that inspect the journal).
    pub mocks: HttpMocks,
    sim: Sim,
}

impl Served {
    /// Serves until `shutdown` completes (the listeners serve from `start` on).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        shutdown.await;
        self.sim.shutdown().await;
    }
}

/// Stands the mocks up on loopback, writes the env file and the CA, and returns the server.
pub async fn start(
    options: &ServeOptions,
    clock_now: SharedClockFactory,
) -> Result<Served, ServeError> {
    let file = options
        .scenario
        .as_deref()
        .map(scenario::load)
        .transpose()?;
    let at = options.at.or(file.as_ref().map(|f| f.start()));
    let mut control = ControlOptions::new(clock_now(at)).map_err(io("draw the control token"))?;
    control.allow_remote = options.bind.is_some_and(|ip| !ip.is_loopback());
    let token = control.token.clone();
    let mut builder = Sim::builder()
        .control(control)
        .seed(options.seed)
        .journal(Journal::bounded(options.journal_capacity))
        .smtp(SmtpConfig {
            tls: smtp_tls(options)?,
            open: options.open_smtp,
            ..SmtpConfig::default()
        })
        .sockets(SocketOptions {
            http_port: options.http_port,
            smtp_port: options.smtp_port,
            plain_http: options.plain_http,
            bind: options.bind,
        });
    let mut certificate = None;
    let mut delegated = None;
    if let (Some(file), Some(path)) = (&file, options.scenario.as_deref()) {
        let spec = file.tenant_spec(path)?;
        certificate = client_certificate(&spec, at.unwrap_or_else(|| file.start()));
        let customers = file.customer_specs(path)?;
        delegated = multi_tenant(&spec, &customers);
        builder = builder.tenant(spec);
        for customer in customers {
            builder = builder.tenant(customer);
        }
    }
    let sim = builder.build().await?;
    let env = write_files(options, &sim, &token)?;
    let env = match delegated {
        Some((redirect_uri, users)) => write_delegated(options, &sim, env, &redirect_uri, &users)?,
        None => env,
    };
    let env = match certificate {
        Some(certificate) => write_certificate(options, env, &certificate)?,
        None => env,
    };
    Ok(Served {
        http_addr: sim.http_addr().expect("serve's sim is on sockets"),
        smtp_addr: sim.smtp_addr().expect("serve's sim is on sockets"),
        env,
        mocks: sim.mocks().clone(),
        sim,
    })
}

/// The first app's certificate a client would use at `now` (valid then, else its first), when
/// it has one.
fn client_certificate(
    spec: &crate::tenant::TenantSpec,
    now: DateTime<Utc>,
) -> Option<CertificateSpec> {
    let certificates = &spec.apps.first()?.certificates;
    certificates
        .iter()
        .find(|c| c.start <= now && now < c.end)
        .or(certificates.first())
        .cloned()
}

/// Writes the client's certificate and key beside the env file, and their keys into it
/// (CONTRACTS section 2: present when the app has a certificate credential).
fn write_certificate(
    options: &ServeOptions,
    env: Environment,
    certificate: &CertificateSpec,
) -> Result<Environment, ServeError> {
    let cert_path = sibling(&options.env_file, "maildrill-client-cert.pem");
    let key_path = sibling(&options.env_file, "maildrill-client-key.pem");
    for (path, pem) in [
        (&cert_path, certificate.cert_pem.as_str()),
        (&key_path, certificate.key_pem()),
    ] {
        write_private(path, pem.as_bytes()).map_err(io(format!("write {}", path.display())))?;
    }
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or(p.to_path_buf());
    let env = env
        .with(
            "MAILDRILL_CLIENT_CERT",
            &absolute(&cert_path).display().to_string(),
        )
        .with(
            "MAILDRILL_CLIENT_KEY",
            &absolute(&key_path).display().to_string(),
        )
        .with(
            "MAILDRILL_CLIENT_CERT_THUMBPRINT",
            &certificate.thumbprints().sha1_hex(),
        );
    env.write(&options.env_file)
        .map_err(io(format!("write {}", options.env_file.display())))?;
    Ok(env)
}

/// The first app's first redirect URI and the customers' users, when the app is multi-tenant.
fn multi_tenant(
    spec: &crate::tenant::TenantSpec,
    customers: &[crate::tenant::TenantSpec],
) -> Option<(String, Vec<String>)> {
    let app = spec.apps.iter().find(|a| {
        a.audience == crate::tenant::SignInAudience::MultiTenant && !a.redirect_uris.is_empty()
    })?;
    let users = customers
        .iter()
        .flat_map(|t| t.mailboxes.iter().map(|m| m.upn.clone()))
        .collect();
    Some((app.redirect_uris.first()?.clone(), users))
}

/// The keys of a multi-tenant app (CONTRACTS section 2): the `common` authority, the redirect
/// URI, and a file of the users who can connect, one UPN a line.
fn write_delegated(
    options: &ServeOptions,
    sim: &Sim,
    env: Environment,
    redirect_uri: &str,
    users: &[String],
) -> Result<Environment, ServeError> {
    let users_path = sibling(&options.env_file, "maildrill-users.txt");
    let mut text = users.join("\n");
    text.push('\n');
    write_private(&users_path, text.as_bytes())
        .map_err(io(format!("write {}", users_path.display())))?;
    let absolute = std::path::absolute(&users_path).unwrap_or(users_path);
    let common = format!("{}/common", sim.socket_base().unwrap_or_default());
    let env = env
        .with("MAILDRILL_COMMON_AUTHORITY", &common)
        .with("MAILDRILL_REDIRECT_URI", redirect_uri)
        .with("MAILDRILL_USERS", &absolute.display().to_string());
    env.write(&options.env_file)
        .map_err(io(format!("write {}", options.env_file.display())))?;
    Ok(env)
}

/// STARTTLS from the PEM files given; `None` lets the sim's CA sign it, so clients trust one
/// file.
fn smtp_tls(options: &ServeOptions) -> Result<Option<Arc<rustls::ServerConfig>>, ServeError> {
    let Some((cert, key)) = &options.smtp_tls_files else {
        return Ok(None);
    };
    let read = |path: &Path| std::fs::read(path).map_err(io(format!("read {}", path.display())));
    Ok(Some(crate::tls::server_config_from_pem(
        &read(cert)?,
        &read(key)?,
    )?))
}

/// Writes the CA next to the env file and the env file (CONTRACTS section 2); returns the
/// environment in file order.
fn write_files(
    options: &ServeOptions,
    sim: &Sim,
    control_token: &str,
) -> Result<Environment, ServeError> {
    let ca_path = sibling(&options.env_file, "maildrill-ca.pem");
    let what = |path: &Path| format!("write {}", path.display());
    write_private(&ca_path, sim.ca_pem().as_bytes()).map_err(io(what(&ca_path)))?;
    // The control API shares the listener too (CONTRACTS section 9).
    let control = ControlAccess {
        url: format!(
            "{}{}",
            sim.socket_base().unwrap_or_default(),
            crate::control::BASE.trim_end_matches('/')
        ),
        token: control_token.to_string(),
    };
    let env = Environment::new(sim.credentials(), sim.endpoints(), &ca_path, Some(&control));
    env.write(&options.env_file)
        .map_err(io(what(&options.env_file)))?;
    Ok(env)
}

/// Makes the clock `serve` runs on, from the `--at` instant.
pub type SharedClockFactory = fn(Option<DateTime<Utc>>) -> CalendarClock;

/// The real-time clock for `serve`: anchored at `--at`, or at the system calendar; the
/// control API moves its calendar.
pub fn real_time_clock(at: Option<DateTime<Utc>>) -> CalendarClock {
    use crate::time::Clock as _;
    let start = at.unwrap_or_else(|| crate::time::SystemClock.now_utc());
    CalendarClock::starting_at(start)
}

fn sibling(path: &Path, name: &str) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from(name), |p| p.join(name))
}
