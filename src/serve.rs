//! `maildrill serve`: the mocks on loopback in real time, for clients in any language: the
//! token endpoint and Graph over HTTPS, SMTP submission with STARTTLS.
//!
//! It writes the environment file of CONTRACTS section 2 (mode 0600) and the CA certificate
//! next to it, prints where everything is (never the secret), and runs until Ctrl-C.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};

use crate::journal::Journal;
use crate::mock::smtp::{SmtpConfig, SmtpServer};
use crate::mock::{Endpoints, HttpMocks, HttpMocksConfig};
use crate::scenario::{self, LoadError};
use crate::seed::Seed;
use crate::tenant::{Directory, DirectoryConfig, TenantSpec, demo};
use crate::time::{SharedClock, VirtualClock};
use crate::tls::{Pki, TlsError};
use crate::wiring::socket::{HttpListener, SmtpListener};

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
    /// The environment written for clients, as `(key, value)` in file order.
    pub env: Vec<(String, String)>,
    /// The mocks (for tests that inspect the journal).
    pub mocks: HttpMocks,
    listener: HttpListener,
    smtp: SmtpListener,
}

impl Served {
    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let http = self.listener.run(wait(stopped.clone()));
        let smtp = self.smtp.run(wait(stopped));
        let signal = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        tokio::join!(http, smtp, signal);
    }
}

/// Binds the mocks, writes the env file and the CA, and returns the server ready to run.
#[expect(
    clippy::too_many_lines,
    reason = "to be split by the front-door builder (issue 12, part 5)"
)]
pub async fn start(
    options: &ServeOptions,
    clock_now: SharedClockFactory,
) -> Result<Served, ServeError> {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // The CA signs the HTTPS certificate and the STARTTLS one, so clients trust one file.
    let pki = Pki::generate()?;
    let tls = if options.plain_http {
        None
    } else {
        Some(pki.server_config(true)?)
    };
    let smtp_tls = match &options.smtp_tls_files {
        Some((cert, key)) => {
            let read =
                |path: &Path| std::fs::read(path).map_err(io(format!("read {}", path.display())));
            crate::tls::server_config_from_pem(&read(cert)?, &read(key)?)?
        }
        None => pki.server_config(false)?,
    };
    // Bind first: the URLs in links and the env file need the port.
    let tcp = tokio::net::TcpListener::bind(SocketAddr::new(loopback, options.http_port))
        .await
        .map_err(io(format!("bind 127.0.0.1:{}", options.http_port)))?;
    let http_addr = tcp.local_addr().map_err(io("read the bound address"))?;
    let smtp_tcp = tokio::net::TcpListener::bind(SocketAddr::new(loopback, options.smtp_port))
        .await
        .map_err(io(format!("bind 127.0.0.1:{}", options.smtp_port)))?;
    let smtp_addr = smtp_tcp
        .local_addr()
        .map_err(io("read the bound address"))?;

    let scheme = if options.plain_http { "http" } else { "https" };
    let base = format!("{scheme}://{http_addr}");
    let file = options
        .scenario
        .as_deref()
        .map(scenario::load)
        .transpose()?;
    let at = options.at.or(file.as_ref().map(|f| f.start()));
    let clock = clock_now(at);
    let start = clock.now_utc();
    let tenant = match (&file, options.scenario.as_deref()) {
        (Some(file), Some(path)) => file.tenant_spec(path)?,
        _ => {
            let secret = options
                .seed
                .stream("serve.secret")
                .string_from(SECRET_CHARS, 40);
            demo::tenant(start - TimeDelta::days(1), &secret, TimeDelta::days(365))
        }
    };
    let identity = Identity::of(&tenant, start);
    let directory = Directory::new(&DirectoryConfig {
        seed: options.seed,
        tenants: vec![tenant],
    });
    let config = HttpMocksConfig {
        seed: options.seed,
        endpoints: Endpoints {
            login_base: base.clone(),
            graph_base: base.clone(),
        },
        ..HttpMocksConfig::default()
    };
    let journal = Journal::bounded(options.journal_capacity);
    let directory = directory.shared();
    let mocks = HttpMocks::new(directory.clone(), clock.clone(), journal.clone(), config);
    let listener = HttpListener::new(tcp, mocks.clone(), tls);
    let smtp_config = SmtpConfig {
        seed: options.seed,
        tls: Some(smtp_tls),
        open: options.open_smtp,
        ..SmtpConfig::default()
    };
    let smtp = SmtpListener::new(
        smtp_tcp,
        SmtpServer::new(directory, clock, journal, smtp_config),
    );

    let ca_path = sibling(&options.env_file, "maildrill-ca.pem");
    write_private(&ca_path, pki.ca_pem().as_bytes())?;
    let ca_path = std::path::absolute(&ca_path)
        .unwrap_or(ca_path)
        .display()
        .to_string();
    let authority = format!("{base}/{}", identity.tenant_id);
    let env = vec![
        ("MAILDRILL_TENANT_ID".to_string(), identity.tenant_id),
        ("MAILDRILL_CLIENT_ID".to_string(), identity.client_id),
        ("MAILDRILL_CLIENT_SECRET".to_string(), identity.secret),
        ("MAILDRILL_MAILBOX".to_string(), identity.mailbox),
        ("MAILDRILL_CA_CERT".to_string(), ca_path),
        ("MAILDRILL_AUTHORITY".to_string(), authority.clone()),
        (
            "MAILDRILL_TOKEN_URL".to_string(),
            format!("{authority}/oauth2/v2.0/token"),
        ),
        ("MAILDRILL_GRAPH_URL".to_string(), format!("{base}/v1.0")),
        (
            "MAILDRILL_SMTP_HOST".to_string(),
            smtp_addr.ip().to_string(),
        ),
        (
            "MAILDRILL_SMTP_PORT".to_string(),
            smtp_addr.port().to_string(),
        ),
        // The PagerDuty-compatible sink shares the HTTPS listener (CONTRACTS section 2).
        (
            "MAILDRILL_ALERTS_URL".to_string(),
            format!("{base}/v2/enqueue"),
        ),
    ];
    let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    write_private(&options.env_file, text.as_bytes())?;
    Ok(Served {
        http_addr,
        smtp_addr,
        env,
        mocks,
        listener,
        smtp,
    })
}

/// What the env file tells a client: the first app, its first secret valid at the start (or
/// its first secret, so an expired-only tenant still shows its failure), the first mailbox.
struct Identity {
    tenant_id: String,
    client_id: String,
    secret: String,
    mailbox: String,
}

impl Identity {
    fn of(tenant: &TenantSpec, now: DateTime<Utc>) -> Identity {
        let app = tenant.apps.first();
        let secret = app.and_then(|a| {
            a.secrets
                .iter()
                .find(|s| s.start <= now && now < s.end)
                .or(a.secrets.first())
        });
        Identity {
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
}

/// Makes the clock `serve` runs on, from the `--at` instant.
pub type SharedClockFactory = fn(Option<DateTime<Utc>>) -> SharedClock;

/// The real-time clock for `serve`: anchored at `--at`, or at the system calendar.
pub fn real_time_clock(at: Option<DateTime<Utc>>) -> SharedClock {
    use crate::time::Clock as _;
    let start = at.unwrap_or_else(|| crate::time::SystemClock.now_utc());
    VirtualClock::starting_at(start).shared()
}

const SECRET_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789~._-";

fn sibling(path: &Path, name: &str) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from(name), |p| p.join(name))
}

/// Writes a file only its owner can read: it holds a client secret.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ServeError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let what = || format!("write {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(what()))?;
    // `mode` applies only when the file is created; tighten an existing file too.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(what()))?;
    file.write_all(bytes).map_err(io(what()))
}
