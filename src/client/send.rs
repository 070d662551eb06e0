//! Sending one message: a token, a transport (SMTP with STARTTLS and XOAUTH2, or Graph
//! `sendMail`), and what the outcome means for the outbox.
//!
//! On `535` or a Graph `401` the cached token is dropped, a new one fetched once, and the send
//! retried once. A send whose reply never came after the message went out is `Unknown`: the
//! server may have it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;

use super::classify::{self, CredentialProblem, Failure};
use super::outbox::Message;
use super::token::{Token, TokenSource};
use super::transport::{HttpTransport, TransportError, TransportFuture};
use crate::time::{ClockExt as _, SharedClock};

/// Scope of SMTP AUTH tokens.
pub const EXCHANGE_SCOPE: &str = "https://outlook.office365.com/.default";
/// Scope of Graph tokens.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Opens a byte stream to the SMTP server (TCP in production, a duplex stream in replays).
pub trait SmtpConnector: Send + Sync + fmt::Debug {
    /// A fresh connection.
    fn connect(&self) -> TransportFuture<'_, Box<dyn AsyncTokioStream>>;
}

/// SMTP over TCP, with `TCP_NODELAY` (lettre does not set it; every reply would wait ~40 ms).
#[derive(Debug, Clone)]
pub struct TcpSmtpConnector {
    /// `host:port`.
    pub address: String,
}

impl SmtpConnector for TcpSmtpConnector {
    fn connect(&self) -> TransportFuture<'_, Box<dyn AsyncTokioStream>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(&self.address)
                .await
                .map_err(|e| TransportError(e.to_string()))?;
            stream
                .set_nodelay(true)
                .map_err(|e| TransportError(e.to_string()))?;
            Ok(Box::new(stream) as Box<dyn AsyncTokioStream>)
        })
    }
}

/// The reason of a retry after a fresh token was refused as well.
pub const TOKEN_REFUSED_TWICE: &str = "token refused twice";

/// How to reach the server.
#[derive(Debug, Clone)]
pub enum Transport {
    /// SMTP submission with STARTTLS (required) and AUTH XOAUTH2.
    Smtp {
        /// Opens connections.
        connector: Arc<dyn SmtpConnector>,
        /// The TLS server name, e.g. `smtp.office365.com`.
        tls_domain: String,
        /// Extra CA to trust (PEM), e.g. the harness's generated CA.
        ca_pem: Option<String>,
        /// The EHLO name (set explicitly: lettre's default is the machine's host name).
        hello_name: String,
    },
    /// Graph `POST /users/{mailbox}/sendMail`.
    Graph {
        /// The HTTP transport.
        http: Arc<dyn HttpTransport>,
        /// `https://graph.microsoft.com/v1.0`.
        graph_url: String,
    },
    /// Graph `POST /me/sendMail` with a connected user's delegated token: the message goes
    /// as that user, from that user's mailbox.
    GraphDelegated {
        /// The HTTP transport.
        http: Arc<dyn HttpTransport>,
        /// `https://graph.microsoft.com/v1.0`.
        graph_url: String,
    },
}

/// What one send attempt means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted.
    Delivered,
    /// Try again later (not before `retry_after`, when given).
    Retry {
        /// Why.
        reason: String,
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The credentials are refused: keep the message, open the circuit.
    Credential(CredentialProblem),
    /// No token could be had for a transient reason (throttled, unavailable): keep the
    /// message and pause every send, not just this one, until the token endpoint is back.
    TokenUnavailable {
        /// Why.
        reason: String,
        /// The endpoint's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Refused for good.
    Failed(String),
    /// It went out but no reply came.
    Unknown(String),
}

/// Sends messages for one mailbox.
#[derive(Debug)]
pub struct Sender {
    /// Where tokens come from (the app's, or a connected user's).
    pub tokens: Arc<dyn TokenSource>,
    /// The transport.
    pub transport: Transport,
    /// The client's clock.
    pub clock: SharedClock,
    /// The mailbox sending (the XOAUTH2 user and the Graph user).
    pub mailbox: String,
    /// Give up on a whole attempt after this long.
    pub timeout: Duration,
    /// The SMTP connection kept between messages.
    pub session: SessionSlot,
}

/// Why an attempt did not deliver.
enum Attempt {
    Failed(Failure),
    Unknown(String),
}

impl Sender {
    /// The token scope of this sender's transport.
    pub fn scope(&self) -> &'static str {
        match self.transport {
            Transport::Smtp { .. } => EXCHANGE_SCOPE,
            Transport::Graph { .. } | Transport::GraphDelegated { .. } => GRAPH_SCOPE,
        }
    }

    /// One delivery attempt of `message`, with one token refresh if the token is refused.
    pub async fn deliver(&self, message: &Message) -> Outcome {
        let scope = self.scope();
        let mut refreshed = false;
        loop {
            let token = match self.tokens.token(scope).await {
                Ok(token) => token,
                // The token endpoint is throttling or down: no message can go until it is back.
                Err(Failure::Transient {
                    reason,
                    retry_after,
                }) => {
                    return Outcome::TokenUnavailable {
                        reason,
                        retry_after,
                    };
                }
                Err(failure) => return outcome(failure),
            };
            // A timeout before the whole message went out is a failure to retry (the server
            // cannot have the message); after it, an unknown outcome.
            self.session.sent_whole.store(false, Ordering::Relaxed);
            let attempt = self
                .clock
                .timeout(self.timeout, self.attempt(&token, message))
                .await;
            if attempt.is_err() {
                // The connection may still owe a reply to the command that timed out: reused,
                // it would answer the next message's MAIL with this one's `250 OK`, and every
                // reply after would be one behind (a message taken for sent that never went).
                *self.session.session.lock().await = None;
            }
            let attempt = match attempt {
                Ok(result) => result,
                Err(elapsed) if self.session.sent_whole.load(Ordering::Relaxed) => {
                    Err(Attempt::Unknown(format!("no reply: {elapsed}")))
                }
                Err(elapsed) => Err(Attempt::Failed(Failure::Transient {
                    reason: format!("no reply before the message went: {elapsed}"),
                    retry_after: None,
                })),
            };
            match attempt {
                Ok(()) => return Outcome::Delivered,
                Err(Attempt::Unknown(reason)) => return Outcome::Unknown(reason),
                Err(Attempt::Failed(Failure::TokenRejected)) if !refreshed => {
                    self.tokens.invalidate(scope);
                    refreshed = true;
                }
                Err(Attempt::Failed(Failure::TokenRejected)) => {
                    return Outcome::Retry {
                        reason: TOKEN_REFUSED_TWICE.into(),
                        retry_after: None,
                    };
                }
                Err(Attempt::Failed(failure)) => return outcome(failure),
            }
        }
    }

    async fn attempt(&self, token: &Token, message: &Message) -> Result<(), Attempt> {
        match &self.transport {
            Transport::Smtp {
                connector,
                tls_domain,
                ca_pem,
                hello_name,
            } => {
                self.smtp(
                    connector.as_ref(),
                    tls_domain,
                    ca_pem.as_deref(),
                    hello_name,
                    token,
                    message,
                )
                .await
            }
            Transport::Graph { http, graph_url } => {
                let url = format!("{graph_url}/users/{}/sendMail", self.mailbox);
                self.graph(http.as_ref(), url, token, message).await
            }
            Transport::GraphDelegated { http, graph_url } => {
                let url = format!("{graph_url}/me/sendMail");
                self.graph(http.as_ref(), url, token, message).await
            }
        }
    }

    async fn smtp(
        &self,
        connector: &dyn SmtpConnector,
        tls_domain: &str,
        ca_pem: Option<&str>,
        hello_name: &str,
        token: &Token,
        message: &Message,
    ) -> Result<(), Attempt> {
        let mut session = self.session.session.lock().await;
        // Reuse the authenticated connection while it holds the token in hand: a drain of a
        // backlog then costs one TLS handshake, not one per message.
        if session
            .as_ref()
            .is_some_and(|s| s.token != token.expose() || s.conn.has_broken())
        {
            *session = None;
        }
        for fresh in [session.is_none(), true] {
            if fresh {
                let tls = self.session.tls(tls_domain, ca_pem)?;
                let conn = open_smtp(connector, tls, hello_name, &self.mailbox, token).await?;
                *session = Some(SmtpSession {
                    conn,
                    token: token.expose().to_string(),
                });
            }
            let conn = &mut session.as_mut().expect("opened just above or reused").conn;
            match transaction(conn, message, &self.session.sent_whole).await {
                Ok(()) => return Ok(()),
                // A reused connection may have gone stale before anything went out: one
                // fresh connection, then the failure stands.
                Err(Attempt::Failed(Failure::Transient { .. })) if !fresh => *session = None,
                Err(error) => {
                    *session = None;
                    return Err(error);
                }
            }
        }
        Err(Attempt::Failed(Failure::Transient {
            reason: "SMTP connection failed twice".into(),
            retry_after: None,
        }))
    }

    async fn graph(
        &self,
        http: &dyn HttpTransport,
        url: String,
        token: &Token,
        message: &Message,
    ) -> Result<(), Attempt> {
        let recipients: Vec<serde_json::Value> = message
            .to
            .iter()
            .map(|a| serde_json::json!({"emailAddress": {"address": a}}))
            .collect();
        let body = serde_json::json!({
            "message": {
                "subject": message.subject,
                "body": {"contentType": "Text", "content": message.body},
                "toRecipients": recipients,
                // Graph keeps a Message-ID a client sets on a new message, so the message is
                // found by it in Sent Items, as over SMTP.
                "internetMessageId": message.message_id,
                "internetMessageHeaders": [{"name": "X-Maildrill-Idempotency-Key", "value": message.idempotency_key}],
            },
            "saveToSentItems": false,
        });
        let request = http::Request::post(url)
            .header(http::header::AUTHORIZATION, token.authorization())
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&body).expect("JSON values serialise"))
            .map_err(|e| {
                Attempt::Failed(Failure::Permanent {
                    reason: e.to_string(),
                })
            })?;
        // A reset or cut exchange is retried: Graph takes no idempotency key, and a message
        // sent twice (findable by its internetMessageId) beats one lost. A reply that never
        // comes at all is Unknown (the timeout in `deliver`): Graph may still be sending it.
        self.session.sent_whole.store(true, Ordering::Relaxed);
        let response = http.send(request).await.map_err(|e| {
            Attempt::Failed(Failure::Transient {
                reason: format!("Graph exchange failed: {e}"),
                retry_after: None,
            })
        })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| classify::parse_retry_after(v, self.clock.now_utc()));
        Err(Attempt::Failed(classify::graph_failure(
            status,
            retry_after,
            response.body(),
        )))
    }
}

/// An authenticated SMTP connection and the token it authenticated with.
pub struct SmtpSession {
    conn: AsyncSmtpConnection,
    token: String,
}

impl fmt::Debug for SmtpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSession").finish_non_exhaustive()
    }
}

/// The reusable SMTP connection of a [`Sender`], and its TLS settings, built once: parsing
/// the CA and building a TLS configuration for every connection costs more than the handshake,
/// and one configuration lets a reconnect resume the TLS session.
#[derive(Default)]
pub struct SessionSlot {
    session: tokio::sync::Mutex<Option<SmtpSession>>,
    tls: std::sync::OnceLock<TlsParameters>,
    /// Whether the message of the attempt under way has gone out whole (its final dot over
    /// SMTP, its request over Graph).
    sent_whole: AtomicBool,
}

impl fmt::Debug for SessionSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionSlot").finish_non_exhaustive()
    }
}

impl SessionSlot {
    fn tls(&self, tls_domain: &str, ca_pem: Option<&str>) -> Result<TlsParameters, Attempt> {
        if let Some(tls) = self.tls.get() {
            return Ok(tls.clone());
        }
        let mut tls = TlsParameters::builder(tls_domain.to_string());
        if let Some(pem) = ca_pem {
            let certificate = Certificate::from_pem(pem.as_bytes()).map_err(|e| transient(&e))?;
            tls = tls
                .certificate_store(CertificateStore::None)
                .add_root_certificate(certificate);
        }
        let tls = tls.build_rustls().map_err(|e| transient(&e))?;
        Ok(self.tls.get_or_init(|| tls).clone())
    }
}

fn transient(error: &dyn fmt::Display) -> Attempt {
    Attempt::Failed(Failure::Transient {
        reason: error.to_string(),
        retry_after: None,
    })
}

fn smtp_error(error: lettre::transport::smtp::Error) -> Attempt {
    Attempt::Failed(classify::smtp_failure(&error))
}

/// Connects, upgrades with STARTTLS (required: a token never goes in the clear) and
/// authenticates with XOAUTH2.
async fn open_smtp(
    connector: &dyn SmtpConnector,
    tls: TlsParameters,
    hello_name: &str,
    mailbox: &str,
    token: &Token,
) -> Result<AsyncSmtpConnection, Attempt> {
    let stream = connector.connect().await.map_err(|e| transient(&e))?;
    let hello = ClientId::Domain(hello_name.to_string());
    let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &hello)
        .await
        .map_err(smtp_error)?;
    conn.starttls(tls, &hello).await.map_err(smtp_error)?;
    let credentials = Credentials::new(mailbox.to_string(), token.expose().to_string());
    conn.auth(&[Mechanism::Xoauth2], &credentials)
        .await
        .map_err(smtp_error)?;
    Ok(conn)
}

/// MAIL, RCPT, DATA and the message; a missing final reply leaves the outcome unknown.
async fn transaction(
    conn: &mut AsyncSmtpConnection,
    message: &Message,
    sent_whole: &AtomicBool,
) -> Result<(), Attempt> {
    let address = |a: &str| {
        a.parse().map_err(|e: lettre::address::AddressError| {
            Attempt::Failed(Failure::Permanent {
                reason: e.to_string(),
            })
        })
    };
    conn.command(Mail::new(Some(address(&message.from)?), vec![]))
        .await
        .map_err(smtp_error)?;
    for to in &message.to {
        conn.command(Rcpt::new(address(to)?, vec![]))
            .await
            .map_err(smtp_error)?;
    }
    conn.command(Data).await.map_err(smtp_error)?;
    // From here the server may have the message even if no reply arrives. (Marked before the
    // write: once it starts, a timeout cannot tell how much went.)
    sent_whole.store(true, Ordering::Relaxed);
    match conn.message(&mime(message)).await {
        Ok(_) => Ok(()),
        Err(error) if error.status().is_some() => Err(smtp_error(error)),
        Err(error) => Err(Attempt::Unknown(error.to_string())),
    }
}

fn outcome(failure: Failure) -> Outcome {
    match failure {
        Failure::Credential(problem) => Outcome::Credential(problem),
        Failure::Transient {
            reason,
            retry_after,
        } => Outcome::Retry {
            reason,
            retry_after,
        },
        Failure::TokenRejected => Outcome::Retry {
            reason: "token refused".into(),
            retry_after: None,
        },
        Failure::Permanent { reason } => Outcome::Failed(reason),
    }
}

/// The message as MIME, with the fixed Message-ID and idempotency key, and no `Date` from the
/// wall clock (the server stamps it).
fn mime(message: &Message) -> Vec<u8> {
    format!(
        "From: {}\r\nTo: {}\r\nSubject: {}\r\nMessage-ID: {}\r\nX-Maildrill-Idempotency-Key: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n",
        message.from,
        message.to.join(", "),
        message.subject.replace(['\r', '\n'], " "),
        message.message_id,
        message.idempotency_key,
        message.body
    )
    .into_bytes()
}
