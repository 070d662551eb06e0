//! The seam between the harness and a client under test: what a subject is handed when it
//! starts, the three things the harness calls, and what a subject says it can do.
//!
//! The harness owns the clock, the tenant, the traffic and the timeline. It starts a subject
//! with [`Start`] (endpoints, credentials, a secret or a certificate it rotates, a state directory, the clock, a
//! seeded random stream), submits the scenario's messages to it, stops it at a
//! `restart-client` step and starts it again on the same state directory. It judges the
//! subject only by what the mocks, the mailboxes and the alert sink saw; the one thing it asks
//! is which inbound messages the subject synced, which only the subject can know.
//!
//! A subject in a few lines (it sends each message as it comes, over SMTP with lettre):
//!
//! ```
//! use maildrill::subject::{Capability, Message, Process, Start, Subject, SubjectError};
//!
//! struct Mailer;
//!
//! struct Running {
//!     start: Start,
//! }
//!
//! impl Subject for Mailer {
//!     type Process = Running;
//!     fn name(&self) -> String {
//!         "mailer".into()
//!     }
//!     fn capabilities(&self) -> Vec<Capability> {
//!         vec![Capability::Smtp]
//!     }
//!     async fn start(&self, start: Start) -> Result<Running, SubjectError> {
//!         Ok(Running { start })
//!     }
//! }
//!
//! impl Process for Running {
//!     async fn submit(&mut self, message: Message) -> Result<(), SubjectError> {
//!         // A real client queues it and sends it with its token, on its own time.
//!         let _ = (&self.start.endpoints.smtp_host, message.message_id);
//!         Ok(())
//!     }
//!     async fn stop(self) -> Result<(), SubjectError> {
//!         Ok(())
//!     }
//! }
//! ```

pub mod bundled;
mod fleet;
pub mod profile;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::send::SmtpConnector;
use crate::client::transport::HttpTransport;
pub use crate::envfile::ControlAccess;
use crate::seed::SeedRng;
use crate::time::SharedClock;

pub use bundled::Bundled;
pub use profile::{Mutation, Profile};

/// Whatever went wrong in a subject, for the harness error that names it.
pub type SubjectError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a subject can do. A scenario that needs more is skipped, with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Sends over SMTP submission (STARTTLS, AUTH XOAUTH2).
    Smtp,
    /// Sends through Graph `sendMail`.
    GraphSend,
    /// Syncs the inbox through Graph delta and says which messages it synced.
    InboundSync,
    /// Posts PagerDuty Events v2 alerts to the alert sink.
    Alerts,
    /// Authenticates with a certificate ([`Start::certificate`]: a client assertion signed
    /// with its key) instead of a client secret.
    Certificate,
    /// Takes maildrill's in-memory transports ([`Start::memory`]) instead of opening sockets,
    /// so it can run on the fastest wiring.
    InMemory,
    /// Connects users of customer tenants through the authorization-code flow
    /// ([`Process::connect`]) and sends and syncs as each of them with their refresh tokens
    /// (a multi-tenant app, [`Start::delegated`]).
    Delegated,
}

impl Capability {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Smtp => "smtp",
            Capability::GraphSend => "graph-send",
            Capability::InboundSync => "inbound-sync",
            Capability::Alerts => "alerts",
            Capability::Certificate => "certificate",
            Capability::InMemory => "in-memory",
            Capability::Delegated => "delegated",
        }
    }
}

impl std::str::FromStr for Capability {
    type Err = String;

    fn from_str(text: &str) -> Result<Capability, String> {
        const ALL: [Capability; 7] = [
            Capability::Smtp,
            Capability::GraphSend,
            Capability::InboundSync,
            Capability::Alerts,
            Capability::Certificate,
            Capability::InMemory,
            Capability::Delegated,
        ];
        ALL.into_iter().find(|c| c.name() == text).ok_or_else(|| {
            let names: Vec<&str> = ALL.iter().map(|c| c.name()).collect();
            format!("`{text}` is not a capability: {}", names.join(", "))
        })
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the simulated Microsoft side answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// `https://HOST/{tenant-id}`, no trailing slash (MSAL's authority).
    pub authority: String,
    /// `{authority}/oauth2/v2.0/token`.
    pub token_url: String,
    /// Graph's base URL, e.g. `https://HOST/v1.0`; calls append `/users/{id}/sendMail`.
    pub graph_url: String,
    /// The SMTP submission host (STARTTLS required).
    pub smtp_host: String,
    /// Its port.
    pub smtp_port: u16,
    /// The alert sink: PagerDuty Events API v2 `enqueue`.
    pub alerts_url: String,
    /// The CA that signed every server certificate, as PEM.
    pub ca_pem: String,
}

/// maildrill's own transports to the mocks, for a subject that runs on the in-memory wiring.
#[derive(Debug, Clone)]
pub struct MemoryTransports {
    /// HTTP to the token endpoint, Graph and the alert sink.
    pub http: Arc<dyn HttpTransport>,
    /// Connections to the SMTP server (plain; the subject starts TLS itself).
    pub smtp: Arc<dyn SmtpConnector>,
}

/// The client secret as the timeline sets it: a file the harness rewrites atomically at each
/// rotation or paste, and the same value in process.
#[derive(Clone)]
pub struct SecretHandle {
    path: PathBuf,
    value: Arc<Mutex<String>>,
}

impl std::fmt::Debug for SecretHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretHandle")
            .field("path", &self.path)
            .field("value", &"[redacted]")
            .finish()
    }
}

impl SecretHandle {
    /// A handle whose file is `path`, holding `value` from now on.
    pub fn create(path: PathBuf, value: &str) -> std::io::Result<SecretHandle> {
        let handle = SecretHandle {
            path,
            value: Arc::new(Mutex::new(String::new())),
        };
        handle.set(value)?;
        Ok(handle)
    }

    /// A handle on a file someone else rewrites (a drill's subject process): its value now.
    pub fn open(path: PathBuf) -> std::io::Result<SecretHandle> {
        let value = std::fs::read_to_string(&path)?.trim().to_string();
        Ok(SecretHandle {
            path,
            value: Arc::new(Mutex::new(value)),
        })
    }

    /// The file that holds the current value (as `MAILDRILL_CLIENT_SECRET_FILE` names it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current value.
    pub fn current(&self) -> String {
        self.value.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets a new value: the file is replaced by a rename, so a reader never sees half of it.
    pub fn set(&self, value: &str) -> std::io::Result<()> {
        let partial = self.path.with_extension("partial");
        std::fs::write(&partial, value)?;
        std::fs::rename(&partial, &self.path)?;
        *self.value.lock().unwrap_or_else(|p| p.into_inner()) = value.to_string();
        Ok(())
    }
}

/// The client certificate as the timeline sets it: a certificate and a private key file
/// (PEM, as `MAILDRILL_CLIENT_CERT` and `MAILDRILL_CLIENT_KEY` name them) that the harness
/// replaces at each `rotate-certificate`, and the certificate's SHA-1 thumbprint (hex, as
/// `MAILDRILL_CLIENT_CERT_THUMBPRINT` gives it).
#[derive(Clone)]
pub struct CertificateHandle {
    cert_path: PathBuf,
    key_path: PathBuf,
    thumbprint: Arc<Mutex<String>>,
}

impl std::fmt::Debug for CertificateHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateHandle")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("thumbprint", &self.thumbprint())
            .finish()
    }
}

impl CertificateHandle {
    /// A handle whose files are `cert_path` and `key_path`, holding `cert_pem` and `key_pem`.
    pub fn create(
        cert_path: PathBuf,
        key_path: PathBuf,
        cert_pem: &str,
        key_pem: &str,
        thumbprint: &str,
    ) -> std::io::Result<CertificateHandle> {
        let handle = CertificateHandle {
            cert_path,
            key_path,
            thumbprint: Arc::new(Mutex::new(String::new())),
        };
        handle.set(cert_pem, key_pem, thumbprint)?;
        Ok(handle)
    }

    /// The certificate file (PEM).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The private key file (PEM, PKCS#8).
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// The current certificate's SHA-1 thumbprint, uppercase hex.
    pub fn thumbprint(&self) -> String {
        self.thumbprint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets a new certificate and key: each file is replaced by a rename, the key first, so a
    /// reader never sees half of one (a reader between the two renames sees a new key with the
    /// old certificate, which a careful client notices as a mismatch and reads again).
    pub fn set(&self, cert_pem: &str, key_pem: &str, thumbprint: &str) -> std::io::Result<()> {
        replace(&self.key_path, key_pem.as_bytes(), true)?;
        replace(&self.cert_path, cert_pem.as_bytes(), false)?;
        *self.thumbprint.lock().unwrap_or_else(|p| p.into_inner()) = thumbprint.to_string();
        Ok(())
    }
}

/// Replaces `path` with `bytes` by a rename; `private` files are readable by the owner only.
fn replace(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let partial = path.with_extension("partial");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&partial)?;
    file.write_all(bytes)?;
    std::fs::rename(&partial, path)
}

/// The scenario's `[client]` settings, for a subject that lets a scenario tune it (the bundled
/// client does; any other subject may ignore them). The checks read the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Send over Graph `sendMail` (else SMTP).
    pub graph: bool,
    /// A message older than this is a stalled sendout.
    pub latency_threshold: Duration,
    /// The longest wait between retries.
    pub backoff_cap: Duration,
    /// Refresh a token this long before it expires.
    pub refresh_ahead: Duration,
    /// How often to sync the inbox.
    pub sync_interval: Duration,
    /// Whether the scenario has inbound mail to sync.
    pub inbound: bool,
}

/// Everything a subject is handed when it starts.
#[derive(Debug)]
pub struct Start {
    /// Where each service answers.
    pub endpoints: Endpoints,
    /// The directory (tenant) id.
    pub tenant_id: String,
    /// The app registration's client id.
    pub client_id: String,
    /// The mailbox's user principal name: the sender, and the inbox to sync.
    pub mailbox: String,
    /// The client secret, as the timeline rotates it (empty when the app has no secret and
    /// the client authenticates with [`Start::certificate`]).
    pub secret: SecretHandle,
    /// The client certificate, as the timeline rotates it, when the client authenticates with
    /// a certificate (a scenario that needs [`Capability::Certificate`]).
    pub certificate: Option<CertificateHandle>,
    /// A directory that survives `restart-client` (for an outbox, a delta link).
    pub state_dir: PathBuf,
    /// Calendar time (`now_utc`); sleeps and timeouts go through tokio's time, which the
    /// harness drives.
    pub clock: SharedClock,
    /// A seeded random stream: same seed, same draws.
    pub rng: SeedRng,
    /// maildrill's transports on the in-memory wiring; `None` on sockets, where the subject
    /// opens its own connections to [`Start::endpoints`].
    pub memory: Option<MemoryTransports>,
    /// The scenario's client settings.
    pub settings: Settings,
    /// 0 for the first start, `n` after the `n`th restart.
    pub generation: u32,
    /// The control API, on a drill (`maildrill drill`); `None` on a replay.
    pub control: Option<ControlAccess>,
    /// The multi-tenant app's delegated flow, when the scenario has customers who connect
    /// their mailboxes ([`Capability::Delegated`]); [`Start::client_id`] is that app and
    /// [`Start::secret`] its secret.
    pub delegated: Option<DelegatedApp>,
}

/// Where a multi-tenant app's users sign in and its refresh tokens are redeemed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegatedApp {
    /// `https://HOST/organizations/oauth2/v2.0/authorize`: any work account signs in there.
    pub authorize_url: String,
    /// `https://HOST/organizations/oauth2/v2.0/token`: codes and refresh tokens of users of
    /// every tenant are redeemed there.
    pub token_url: String,
    /// The redirect URI registered for the app; the browser comes back to it.
    pub redirect_uri: String,
}

/// A user connecting a mailbox: who, and a browser in which the user signs in and consents.
#[derive(Debug, Clone)]
pub struct Connect {
    /// The user's principal name (the mailbox to send and sync as).
    pub upn: String,
    /// The user's tenant id.
    pub tenant_id: String,
    /// The browser the user signs in with.
    pub browser: Browser,
}

/// A future the browser returns: where the authorization endpoint sent it back.
pub type Navigation = futures_util::future::BoxFuture<'static, Result<String, SubjectError>>;

/// The user's browser in the authorization-code flow. A subject builds its authorization
/// request (its `state`, PKCE, scopes) and opens it here, as a product redirects a user who
/// clicks "connect your mailbox"; the user signs in as [`Connect::upn`] (the account they
/// pick, when the request has no `login_hint`) and consents, and the browser returns the URL
/// the authorization endpoint redirected to: the subject's `redirect_uri` with `code` and
/// `state`, or with `error` and `error_description`. The subject then redeems the code.
#[derive(Clone)]
pub struct Browser {
    open: std::sync::Arc<dyn Fn(String) -> Navigation + Send + Sync>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Browser")
    }
}

impl Browser {
    /// A browser that opens a URL with `open`.
    pub fn new(open: impl Fn(String) -> Navigation + Send + Sync + 'static) -> Browser {
        Browser {
            open: std::sync::Arc::new(open),
        }
    }

    /// Opens `url` (an authorization request) and returns where the user was sent back.
    pub async fn open(&self, url: &str) -> Result<String, SubjectError> {
        (self.open)(url.to_string()).await
    }
}

/// A message the harness submits. Its `Message-ID` is the harness's: a subject must send the
/// message under it, since that is how the harness finds it in the mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `<...@...>`, angle brackets included.
    pub message_id: String,
    /// The sender (the mailbox).
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// A client under test: how to start it and what it can do. `start` is called at the start of
/// a run and again after each `restart-client`.
pub trait Subject: Sync {
    /// A started process.
    type Process: Process;

    /// A short name for reports and errors.
    fn name(&self) -> String;

    /// What it can do.
    fn capabilities(&self) -> Vec<Capability>;

    /// Starts a process. It should return once the process accepts messages; background work
    /// (sending, syncing, monitoring) goes on tasks it spawns.
    fn start(&self, start: Start) -> impl Future<Output = Result<Self::Process, SubjectError>>;

    /// What went wrong with the subject itself during the run (a process that crashed, never
    /// became ready, ignored SIGTERM), and what it printed, for the report and its leak scan.
    /// Asked once, after the last stop.
    fn diagnostics(&self) -> Diagnostics {
        Diagnostics::default()
    }
}

/// A subject's own troubles during a run, reported beside the verdicts (never instead of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics {
    /// What happened, when, in order.
    pub incidents: Vec<Incident>,
    /// Everything the subject printed (bounded), which the leak scan reads.
    pub output: String,
}

/// One thing that went wrong with a subject.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Incident {
    /// When the harness saw it (calendar time).
    pub at: chrono::DateTime<chrono::Utc>,
    /// What happened, with the tail of the subject's output where it helps.
    pub what: String,
}

/// A started client process.
pub trait Process {
    /// Takes one outbound message; returns once the process holds it (queued, or sent).
    fn submit(&mut self, message: Message) -> impl Future<Output = Result<(), SubjectError>>;

    /// Stops the process as a deploy would; whatever it keeps must be in the state directory.
    fn stop(self) -> impl Future<Output = Result<(), SubjectError>>;

    /// The inbound messages this process handed to its application, by Graph `id` (or
    /// `internetMessageId`), once per time it did so: an id twice means processed twice.
    fn synced(&self) -> Vec<String> {
        Vec::new()
    }

    /// A user connects a mailbox ([`Capability::Delegated`]): the subject runs the
    /// authorization-code flow in [`Connect::browser`], redeems the code and keeps the
    /// connection in its state directory; it returns once the connection is kept. Messages
    /// whose `from` is that user are then sent as that user. A subject without the capability
    /// is never asked.
    fn connect(&mut self, user: Connect) -> impl Future<Output = Result<(), SubjectError>> {
        let upn = user.upn;
        async move { Err(format!("this subject cannot connect {upn}: no delegated mode").into()) }
    }
}
