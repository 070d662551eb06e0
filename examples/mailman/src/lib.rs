//! Mailman: a mail sendout for Office 365 written the way a product team writes one, with plain
//! `oauth2`, `reqwest`, `lettre` and tokio: a token cache, exponential retry, a small durable
//! queue (one JSON file a message), and a page when sending keeps failing.
//!
//! It knows nothing of maildrill. Its tests (`tests/maildrill.rs`) replay maildrill's
//! scenarios against it through a 20-line adapter, which is all a team writes to test its own
//! client. It is not a model client: it retries without jitter, reads no `Retry-After`, resends
//! a message whose reply was lost, and has no expiry monitor. maildrill's verdicts say so.

mod queue;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use oauth2::basic::BasicClient;
use oauth2::{ClientSecret, Scope, TokenResponse, TokenUrl};
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

pub use queue::{Outgoing, Queue};

/// A page of a delta query, as far as Mailman reads it.
#[derive(Debug, serde::Deserialize)]
struct DeltaPage {
    #[serde(default)]
    value: Vec<DeltaItem>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    delta_link: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct DeltaItem {
    id: String,
}

/// How mail leaves.
#[derive(Debug, Clone)]
pub enum Transport {
    /// SMTP submission with STARTTLS and XOAUTH2.
    Smtp {
        /// Host (`smtp.office365.com`).
        host: String,
        /// Port (587).
        port: u16,
    },
    /// Graph `sendMail`.
    Graph {
        /// Base URL (`https://graph.microsoft.com/v1.0`).
        url: String,
    },
}

/// Mailman's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Entra token endpoint.
    pub token_url: String,
    /// The app's client id.
    pub client_id: String,
    /// A file holding the client secret; read at each token request, so a rotation needs no
    /// redeploy.
    pub secret_file: PathBuf,
    /// The mailbox that sends.
    pub mailbox: String,
    /// SMTP or Graph.
    pub transport: Transport,
    /// An extra CA to trust, as PEM (a test environment's).
    pub ca_pem: Option<String>,
    /// A PagerDuty Events v2 URL, if pages are wanted.
    pub alerts_url: Option<String>,
    /// Where the queue (and the inbox sync's delta link) live.
    pub state_dir: PathBuf,
    /// The inbox sync, if wanted.
    pub sync: Option<SyncConfig>,
}

/// The inbox sync: Graph delta on the inbox at an interval.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Graph's base URL (`https://graph.microsoft.com/v1.0`).
    pub graph_url: String,
    /// How often.
    pub every: Duration,
}

/// Anything that went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The queue's files.
    #[error("queue: {0}")]
    Queue(#[from] std::io::Error),
    /// HTTP.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The token endpoint.
    #[error("token: {0}")]
    Token(String),
    /// SMTP.
    #[error("smtp: {0}")]
    Smtp(String),
    /// Graph refused the message.
    #[error("graph: {0}")]
    Graph(reqwest::StatusCode),
}

/// A running sendout.
#[derive(Debug)]
pub struct Mailman {
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    http: reqwest::Client,
    /// Tokens by scope, each until a minute before it expires.
    tokens: Mutex<BTreeMap<&'static str, (String, Instant)>>,
    queue: Queue,
    wake: Notify,
    /// Inbox messages handed on, by Graph id.
    synced: std::sync::Mutex<Vec<String>>,
}

const SMTP_SCOPE: &str = "https://outlook.office365.com/.default";
const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// The longest wait between retries.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// Failures in a row before a page.
const PAGE_AFTER: u32 = 5;

impl Mailman {
    /// Opens the queue and starts sending what it holds.
    pub async fn start(config: Config) -> Result<Mailman, Error> {
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if let Some(pem) = &config.ca_pem {
            http = http.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?);
        }
        let queue = Queue::open(config.state_dir.join("queue"))?;
        let inner = Arc::new(Inner {
            http: http.build()?,
            config,
            tokens: Mutex::new(BTreeMap::new()),
            queue,
            wake: Notify::new(),
            synced: std::sync::Mutex::new(Vec::new()),
        });
        let mut tasks = vec![tokio::spawn(inner.clone().work())];
        if let Some(sync) = inner.config.sync.clone() {
            tasks.push(tokio::spawn(inner.clone().sync(sync)));
        }
        Ok(Mailman { inner, tasks })
    }

    /// The inbox messages synced so far, by Graph id.
    pub fn synced(&self) -> Vec<String> {
        self.inner
            .synced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Queues a message; it is on disk when this returns.
    pub async fn send(&self, message: Outgoing) -> Result<(), Error> {
        self.inner.queue.push(&message)?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Stops sending; the queue stays on disk for the next start.
    pub async fn shutdown(self) {
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Inner {
    /// Sends the queue, oldest first, retrying with exponential backoff.
    async fn work(self: Arc<Self>) {
        let mut failures = 0u32;
        let mut paged = false;
        loop {
            let Ok(Some((name, message))) = self.queue.oldest() else {
                self.wake.notified().await;
                continue;
            };
            match self.deliver(&message).await {
                Ok(()) => {
                    let _ = self.queue.remove(&name);
                    failures = 0;
                    if paged {
                        paged = !self.page("resolve", "").await;
                    }
                }
                Err(error) => {
                    failures += 1;
                    if failures >= PAGE_AFTER && !paged {
                        paged = self.page("trigger", &error.to_string()).await;
                    }
                    let wait = Duration::from_secs(1 << failures.min(9)).min(MAX_WAIT);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn deliver(&self, message: &Outgoing) -> Result<(), Error> {
        let scope = match self.config.transport {
            Transport::Smtp { .. } => SMTP_SCOPE,
            Transport::Graph { .. } => GRAPH_SCOPE,
        };
        let token = self.token(scope).await?;
        let sent = match &self.config.transport {
            Transport::Smtp { host, port } => self.smtp(host, *port, &token, message).await,
            Transport::Graph { url } => self.graph(url, &token, message).await,
        };
        if sent.is_err() {
            // The token may be the reason: fetch a fresh one next time.
            self.tokens.lock().await.remove(scope);
        }
        sent
    }

    /// A cached token for `scope`, or a new one when it has less than a minute left.
    async fn token(&self, scope: &'static str) -> Result<String, Error> {
        let mut cached = self.tokens.lock().await;
        if let Some((token, until)) = cached.get(scope)
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let secret = std::fs::read_to_string(&self.config.secret_file)?;
        let token_url = TokenUrl::new(self.config.token_url.clone())
            .map_err(|e| Error::Token(e.to_string()))?;
        let response = BasicClient::new(oauth2::ClientId::new(self.config.client_id.clone()))
            .set_client_secret(ClientSecret::new(secret.trim().to_string()))
            .set_token_uri(token_url)
            .exchange_client_credentials()
            .add_scope(Scope::new(scope.into()))
            .request_async(&self.http)
            .await
            .map_err(|e| Error::Token(e.to_string()))?;
        let lifetime = response.expires_in().unwrap_or(Duration::from_secs(3600));
        let token = response.access_token().secret().clone();
        let until = Instant::now() + lifetime.saturating_sub(Duration::from_secs(60));
        cached.insert(scope, (token.clone(), until));
        Ok(token)
    }

    async fn smtp(&self, host: &str, port: u16, token: &str, m: &Outgoing) -> Result<(), Error> {
        let smtp = |e: lettre::transport::smtp::Error| Error::Smtp(e.to_string());
        let mut tls = TlsParameters::builder(host.to_string());
        if let Some(pem) = &self.config.ca_pem {
            tls = tls.add_root_certificate(Certificate::from_pem(pem.as_bytes()).map_err(smtp)?);
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(Tls::Required(tls.build_rustls().map_err(smtp)?))
            .credentials(Credentials::new(self.config.mailbox.clone(), token.into()))
            .authentication(vec![Mechanism::Xoauth2])
            .hello_name(ClientId::Domain("mailman.client.example".into()))
            .build();
        let email = m.to_email().map_err(|e| Error::Smtp(e.to_string()))?;
        transport.send(email).await.map_err(smtp)?;
        Ok(())
    }

    async fn graph(&self, url: &str, token: &str, m: &Outgoing) -> Result<(), Error> {
        let body = serde_json::json!({"message": {
            "subject": m.subject,
            "body": {"contentType": "Text", "content": m.body},
            "toRecipients": m.to.iter().map(|a| serde_json::json!({"emailAddress": {"address": a}})).collect::<Vec<_>>(),
            "internetMessageId": m.message_id,
        }});
        let response = self
            .http
            .post(format!("{url}/users/{}/sendMail", self.config.mailbox))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status => Err(Error::Graph(status)),
        }
    }

    /// Syncs the inbox every `sync.every`, resuming from the last delta link.
    async fn sync(self: Arc<Self>, sync: SyncConfig) {
        let link_file = self.config.state_dir.join("delta-link");
        let full = format!(
            "{}/users/{}/mailFolders/inbox/messages/delta",
            sync.graph_url, self.config.mailbox
        );
        let mut seen = BTreeSet::new();
        loop {
            let start = std::fs::read_to_string(&link_file).unwrap_or_else(|_| full.clone());
            match self.sync_round(start, &mut seen).await {
                Ok(link) => {
                    let _ = std::fs::write(&link_file, link);
                }
                // The delta link expired: start over with a full sync.
                Err(Error::Graph(reqwest::StatusCode::GONE)) => {
                    let _ = std::fs::remove_file(&link_file);
                }
                Err(_) => {
                    self.tokens.lock().await.remove(GRAPH_SCOPE);
                }
            }
            tokio::time::sleep(sync.every).await;
        }
    }

    /// Follows a delta query's pages to its delta link, handing on each new message.
    async fn sync_round(
        &self,
        mut url: String,
        seen: &mut BTreeSet<String>,
    ) -> Result<String, Error> {
        let token = self.token(GRAPH_SCOPE).await?;
        loop {
            let response = self.http.get(&url).bearer_auth(&token).send().await?;
            if !response.status().is_success() {
                return Err(Error::Graph(response.status()));
            }
            let page: DeltaPage = response.json().await?;
            for message in page.value {
                if seen.insert(message.id.clone()) {
                    self.synced
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(message.id);
                }
            }
            match (page.next_link, page.delta_link) {
                (Some(next), _) => url = next,
                (None, Some(delta)) => return Ok(delta),
                (None, None) => return Err(Error::Graph(reqwest::StatusCode::BAD_GATEWAY)),
            }
        }
    }

    /// Posts a PagerDuty event; whether it went through.
    async fn page(&self, action: &str, why: &str) -> bool {
        let Some(url) = &self.config.alerts_url else {
            return false;
        };
        let mut event = serde_json::json!({
            "routing_key": "mailman",
            "event_action": action,
            "dedup_key": "mailman-sendout",
        });
        if action == "trigger" {
            event["payload"] = serde_json::json!({
                "summary": format!("Mailman cannot send: {why}"),
                "source": "mailman",
                "severity": "critical",
                "custom_details": {"kind": "delivery-latency"},
            });
        }
        let sent = self.http.post(url).json(&event).send().await;
        sent.is_ok_and(|r| r.status().is_success())
    }
}

/// The maildrill README's code ("Test your own client" shows this crate's adapter), compiled
/// as doc tests here, where both crates are at hand, so the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
