//! The SMTP server: reads lines from any byte stream, feeds the session, writes replies,
//! upgrades to TLS on STARTTLS, and answers the session's questions from the tenant.
//!
//! The same code serves the in-memory wiring (duplex streams on the replay runtime) and TCP.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, TimeDelta, Utc};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::expect::{Expectation, ReceivedMessage, VerificationReport};
use super::replies;
use super::session::{Backend, Envelope, Login, Next, Refusal, Session, SessionConfig, Step};
use crate::fault::{
    CatalogueReply, Fault, FaultError, FaultId, FaultKind, FaultSet, Party, SharedFaults, Target,
};
use crate::journal::{Body, Facts, Journal, JournalEntry, MockName};
use crate::mock::wire::Vars;
use crate::mock::{InFlightCounter, mime};
use crate::seed::{Seed, SeedRng};
use crate::tenant::{Directory, Resource, SentMessage, SentVia, SharedDirectory};
use crate::time::ClockExt as _;
use crate::time::SharedClock;

/// Settings of the SMTP mock.
#[derive(Clone)]
pub struct SmtpConfig {
    /// Seed of host names, banner ids and trailers.
    pub seed: Seed,
    /// TLS for STARTTLS; `None` means STARTTLS is not offered.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `--open-smtp`: no AUTH required and no per-mailbox limits (load tests).
    pub open: bool,
    /// Concurrent authenticated connections per mailbox (Exchange Online: 3).
    pub connections_per_mailbox: usize,
    /// Messages per minute per mailbox before delivery is delayed (Exchange Online: 30).
    pub messages_per_minute: usize,
    /// Recipients per mailbox per 24 hours (Exchange Online: 10,000).
    pub recipients_per_day: usize,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("seed", &self.seed)
            .field("tls", &self.tls.is_some())
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            seed: Seed(0),
            tls: None,
            open: false,
            connections_per_mailbox: 3,
            messages_per_minute: 30,
            recipients_per_day: 10_000,
        }
    }
}

/// Per-mailbox submission history, for the rate and daily limits.
#[derive(Debug, Default)]
struct Usage {
    /// (accepted at, recipients) within the last 24 hours.
    recipients: VecDeque<(DateTime<Utc>, usize)>,
    /// Delivery instants of the last minute's messages (delayed past 30 a minute).
    deliveries: VecDeque<DateTime<Utc>>,
}

#[derive(Debug)]
struct State {
    ids: SeedRng,
    usage: BTreeMap<String, Usage>,
    accepted: u64,
    /// Connections accepted so far: each gets the next number, for the journal's facts.
    connections: u64,
    received: VecDeque<ReceivedMessage>,
    expectations: Vec<(u64, Expectation)>,
    next_expectation: u64,
}

/// How many received messages the server keeps for queries (serve runs for days).
const RECEIVED_KEEP: usize = 10_000;

/// The SMTP mock over the tenant, the clock and the journal.
#[derive(Debug, Clone)]
pub struct SmtpServer {
    directory: SharedDirectory,
    clock: SharedClock,
    journal: Journal,
    config: Arc<SmtpConfig>,
    state: Arc<Mutex<State>>,
    slots: InFlightCounter,
    faults: SharedFaults,
}

impl SmtpServer {
    /// An SMTP mock.
    pub fn new(
        directory: SharedDirectory,
        clock: SharedClock,
        journal: Journal,
        config: SmtpConfig,
    ) -> SmtpServer {
        let state = State {
            ids: config.seed.stream("smtp.ids"),
            usage: BTreeMap::new(),
            accepted: 0,
            connections: 0,
            received: VecDeque::new(),
            expectations: Vec::new(),
            next_expectation: 1,
        };
        SmtpServer {
            directory,
            clock,
            journal,
            faults: Arc::new(Mutex::new(FaultSet::new(config.seed))),
            config: Arc::new(config),
            state: Arc::new(Mutex::new(state)),
            slots: InFlightCounter::default(),
        }
    }

    /// Shares a fault set (e.g. the HTTP mocks'), so one schedule drives every mock.
    pub fn with_faults(mut self, faults: SharedFaults) -> SmtpServer {
        self.faults = faults;
        self
    }

    /// Adds a fault on the SMTP target.
    pub fn inject(&self, fault: Fault) -> Result<FaultId, FaultError> {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .inject(fault)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Messages accepted so far (also in open mode, which stores nothing).
    pub fn accepted(&self) -> u64 {
        self.state().accepted
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The messages received so far (the last 10,000), oldest first.
    pub fn received(&self) -> Vec<ReceivedMessage> {
        self.state().received.iter().cloned().collect()
    }

    /// Forgets the messages received and each mailbox's sending quota used (a control API
    /// reset); expectations stay.
    pub fn clear_received(&self) {
        let mut state = self.state();
        state.received.clear();
        state.usage.clear();
    }

    /// Registers an expectation; the guard verifies it when dropped and panics with a report
    /// of what was expected and what was received, as wiremock's `MockServer` does.
    pub fn expect(&self, expectation: Expectation) -> ExpectationGuard {
        let mut state = self.state();
        let id = state.next_expectation;
        state.next_expectation += 1;
        state.expectations.push((id, expectation));
        ExpectationGuard {
            server: self.clone(),
            id,
        }
    }

    /// Checks every registered expectation now.
    pub fn verify(&self) -> VerificationReport {
        let state = self.state();
        let expectations: Vec<Expectation> =
            state.expectations.iter().map(|(_, e)| e.clone()).collect();
        let received: Vec<ReceivedMessage> = state.received.iter().cloned().collect();
        VerificationReport::check(&expectations, &received)
    }

    /// Serves one connection until it closes. `client_ip` shows in the EHLO reply.
    pub async fn serve<IO>(&self, io: IO, client_ip: &str)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (config, vars) = self.session_setup(client_ip);
        let mut session = Session::new(config, vars);
        let id = {
            let mut state = self.state();
            state.connections += 1;
            state.connections
        };
        let mut conn = Conn {
            id,
            stream: Box::new(io),
            buffer: Vec::with_capacity(4096),
            start: 0,
        };
        let fault = self.decide("connect", Party::default());
        let greeting = match &fault {
            Some(FaultKind::ResetPeer) => {
                self.record(id, "connect", "<connect>", "", fault.as_ref(), "reset");
                return;
            }
            Some(FaultKind::Timeout) => {
                self.record(id, "connect", "<connect>", "", fault.as_ref(), "hang");
                self.clock.park_forever().await;
                return;
            }
            Some(FaultKind::Respond {
                reply: CatalogueReply::Smtp(key),
                ..
            }) => session.render(key, &mut self.backend()),
            _ => session.greeting(),
        };
        // Journaled when the connection arrives, as every command is: a late greeting's delay
        // is a fact of the entry, not its instant.
        self.record(
            id,
            "connect",
            "<connect>",
            &greeting,
            fault.as_ref(),
            "respond",
        );
        if let Some(FaultKind::Latency { delay }) = &fault {
            self.clock.park(*delay).await;
        }
        if conn.stream.write_all(greeting.as_bytes()).await.is_err() || greeting.starts_with("421")
        {
            let _ = conn.stream.shutdown().await;
            return;
        }
        let _ = self.run(&mut session, &mut conn).await;
    }

    fn session_setup(&self, client_ip: &str) -> (SessionConfig, Vars) {
        let now = self.clock.now_utc();
        let mut state = self.state();
        // Front-end names look like SY5P282CA0097.
        let host = format!(
            "SY5P{}CA{}",
            digits(&mut state.ids, 3),
            digits(&mut state.ids, 4)
        );
        let banner_id = state.ids.hex_upper(16);
        drop(state);
        let fqdn = format!("{host}.outlook.office365.com");
        let vars = Vars::default()
            .set("fqdn", fqdn)
            .set("client_ip", client_ip)
            .set("date", BANNER_DATE.format(now))
            .set("banner_id", banner_id)
            .set("region", replies::region())
            .set("host", host.clone());
        let config = SessionConfig {
            host,
            client_ip: client_ip.to_string(),
            tls_available: self.config.tls.is_some(),
            open: self.config.open,
        };
        (config, vars)
    }

    /// Serves one connection: each command read, its fault decided, the session's reply
    /// written (replies to pipelined commands flushed together).
    async fn run(&self, session: &mut Session, conn: &mut Conn) -> std::io::Result<()> {
        let mut out = String::new();
        loop {
            if !conn.has_line() && !out.is_empty() {
                // Pipelining: flush once every buffered command has its reply.
                conn.stream.write_all(out.as_bytes()).await?;
                out.clear();
            }
            let line = match conn.read_line(session.line_limit()).await? {
                Read::Eof => return Ok(()),
                Read::TooLong => None,
                Read::Line(line) => Some(line),
            };
            let operation = line
                .as_deref()
                .map_or("overlong", |l| session.operation_of(l));
            let fault = match operation {
                "data-line" => None,
                _ => {
                    let (app, mailbox) = self.party(session, line.as_deref());
                    let party = Party {
                        app: app.as_deref(),
                        mailbox: mailbox.as_deref(),
                    };
                    self.decide(operation, party)
                }
            };
            let command = Command {
                operation,
                line: line.as_deref(),
                fault: fault.as_ref(),
            };
            match self.pre_empt(session, conn, &mut out, &command).await? {
                Flow::Go => {}
                Flow::Skip => continue,
                Flow::End => return Ok(()),
            }
            let step = match command.line {
                None => session.on_overlong_line(),
                Some(line) => session.on_line(line, &mut self.backend()),
            };
            self.record_step(conn.id, &command, &step);
            if let Flow::End = self
                .fault_on_reply(conn, &mut out, &step, command.fault)
                .await?
            {
                return Ok(());
            }
            out.push_str(&step.reply);
            if let Flow::End = self
                .follow(session, conn, &mut out, &step, command.fault)
                .await?
            {
                return Ok(());
            }
        }
    }

    /// Faults that stop a command before the session sees it: a reset, a hang (except after
    /// the final dot, where the message is taken and only the reply hangs), a catalogue reply.
    async fn pre_empt(
        &self,
        session: &mut Session,
        conn: &mut Conn,
        out: &mut String,
        command: &Command<'_>,
    ) -> std::io::Result<Flow> {
        let (operation, fault) = (command.operation, command.fault);
        match fault {
            Some(FaultKind::ResetPeer) => {
                self.record(conn.id, operation, "<reset>", "", fault, "reset");
                conn.stream.write_all(out.as_bytes()).await?;
                Ok(Flow::End)
            }
            Some(FaultKind::Timeout) if operation != "end-of-data" => {
                self.record(conn.id, operation, "<no reply>", "", fault, "hang");
                conn.stream.write_all(out.as_bytes()).await?;
                self.clock.park_forever().await;
                Ok(Flow::End)
            }
            Some(FaultKind::Respond {
                reply: CatalogueReply::Smtp(key),
                ..
            }) => {
                let text = session.render(key, &mut self.backend());
                let shown = command
                    .line
                    .map_or_else(|| "<line too long>".into(), show_line);
                self.record(conn.id, operation, &shown, &text, fault, "respond");
                out.push_str(&text);
                if text.starts_with("421") {
                    conn.stream.write_all(out.as_bytes()).await?;
                    conn.stream.shutdown().await?;
                    return Ok(Flow::End);
                }
                Ok(Flow::Skip)
            }
            _ => Ok(Flow::Go),
        }
    }

    /// The journal entry of a command the session answered, with what the fault does to it.
    fn record_step(&self, connection: u64, command: &Command<'_>, step: &Step) {
        let delivery = match command.fault {
            Some(FaultKind::DropAfterData) if step.accepted => "drop after data",
            Some(FaultKind::Timeout) => "hang",
            Some(FaultKind::TlsFailure) if step.next == Next::StartTls => "tls failure",
            // The reply leaves cut short and the connection closes: the client never reads it.
            Some(FaultKind::LimitData { .. }) => "limit data",
            _ => "respond",
        };
        if let Some(shown) = &step.command {
            // A hung reply never leaves: the journal shows none.
            let reply = if delivery == "hang" { "" } else { &step.reply };
            self.record(
                connection,
                command.operation,
                shown,
                reply,
                command.fault,
                delivery,
            );
        }
    }

    /// Faults on the way the reply goes out: late, slow, never, cut, or not at all after a
    /// message was stored.
    async fn fault_on_reply(
        &self,
        conn: &mut Conn,
        out: &mut String,
        step: &Step,
        fault: Option<&FaultKind>,
    ) -> std::io::Result<Flow> {
        match fault {
            Some(FaultKind::Latency { delay }) => {
                conn.stream.write_all(out.as_bytes()).await?;
                out.clear();
                self.clock.park(*delay).await;
            }
            Some(FaultKind::Bandwidth { bytes_per_second }) => {
                conn.stream.write_all(out.as_bytes()).await?;
                out.clear();
                let bytes = step.reply.len() as f64;
                let delay =
                    std::time::Duration::from_secs_f64(bytes / (*bytes_per_second).max(1) as f64);
                self.clock.park(delay).await;
            }
            Some(FaultKind::Timeout) => {
                conn.stream.write_all(out.as_bytes()).await?;
                self.clock.park_forever().await;
                return Ok(Flow::End);
            }
            Some(FaultKind::DropAfterData) if step.accepted => {
                // Stored, but the client never hears: the duplicate-send trap.
                conn.stream.write_all(out.as_bytes()).await?;
                return Ok(Flow::End);
            }
            Some(FaultKind::LimitData { bytes }) => {
                out.push_str(&step.reply);
                let cut = (*bytes).min(out.len());
                conn.stream.write_all(&out.as_bytes()[..cut]).await?;
                return Ok(Flow::End);
            }
            _ => {}
        }
        Ok(Flow::Go)
    }

    /// What the session asked for after its reply: the next line, a BDAT chunk, the TLS
    /// upgrade, or the end.
    async fn follow(
        &self,
        session: &mut Session,
        conn: &mut Conn,
        out: &mut String,
        step: &Step,
        fault: Option<&FaultKind>,
    ) -> std::io::Result<Flow> {
        match step.next {
            Next::Line => {}
            Next::Close => {
                conn.stream.write_all(out.as_bytes()).await?;
                conn.stream.shutdown().await?;
                return Ok(Flow::End);
            }
            Next::Chunk(size) => {
                conn.stream.write_all(out.as_bytes()).await?;
                out.clear();
                // A chunk past the message size limit is read and dropped, not buffered: the
                // session refuses the message either way, and memory stays bounded.
                let step = if size > session.max_message_size() {
                    conn.discard(size).await?;
                    session.on_dropped_chunk(size, &mut self.backend())
                } else {
                    let chunk = conn.read_exact(size).await?;
                    session.on_chunk(&chunk, &mut self.backend())
                };
                if let Some(command) = &step.command {
                    self.record(conn.id, "bdat", command, &step.reply, None, "respond");
                }
                out.push_str(&step.reply);
            }
            Next::StartTls => {
                conn.stream.write_all(out.as_bytes()).await?;
                out.clear();
                let Some(tls) = self.config.tls.clone() else {
                    return Ok(Flow::End);
                };
                if matches!(fault, Some(FaultKind::TlsFailure)) {
                    // The client starts its handshake into a closed connection.
                    conn.stream.shutdown().await?;
                    return Ok(Flow::End);
                }
                // Anything pipelined after STARTTLS is discarded (RFC 3207, section 4).
                conn.buffer.clear();
                conn.start = 0;
                let plain = std::mem::replace(&mut conn.stream, Box::new(tokio::io::duplex(1).0));
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                match acceptor.accept(plain).await {
                    Ok(stream) => conn.stream = Box::new(stream),
                    Err(_) => return Ok(Flow::End),
                }
                session.tls_started();
            }
        }
        Ok(Flow::Go)
    }

    fn decide(&self, operation: &str, party: Party<'_>) -> Option<FaultKind> {
        let now = self.clock.now_utc();
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .decide(Target::Smtp, operation, party, now)
    }

    /// The app and mailbox a session names, for faults scoped to them: its login once
    /// authenticated, and on an `AUTH XOAUTH2` line with its initial response, the `user=` and
    /// the token's app there.
    fn party(&self, session: &Session, line: Option<&[u8]>) -> (Option<String>, Option<String>) {
        let scoped = self
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .any_scoped();
        if !scoped {
            return (None, None);
        }
        if let Some(login) = session.login() {
            let app = Some(login.app.clone()).filter(|a| !a.is_empty());
            return (app, Some(login.user.clone()));
        }
        let Some((user, token)) = line.and_then(xoauth2_initial_response) else {
            return (None, None);
        };
        let directory = Directory::lock(&self.directory);
        let app = directory.token_claims(&token).map(|c| c.appid.clone());
        (app, Some(user))
    }

    fn record(
        &self,
        connection: u64,
        operation: &'static str,
        command: &str,
        reply: &str,
        fault: Option<&FaultKind>,
        delivery: &str,
    ) {
        let status = reply.get(..3).and_then(|c| c.parse().ok());
        // The status shows on its own; keep the text after the first code.
        let text = reply.get(4..).unwrap_or("");
        let reply = text.trim_end().replace("\r\n", " | ");
        self.journal.record(JournalEntry {
            seq: 0,
            at: self.clock.now_utc(),
            mock: MockName::Smtp,
            operation,
            user: None,
            request: command.to_string(),
            request_body: Body::default(),
            delivery: delivery.to_string().into(),
            status,
            response_body: Body::text(reply),
            fault: fault.map(|f| f.to_string()),
            facts: Facts {
                delay: match fault {
                    Some(FaultKind::Latency { delay }) => *delay,
                    _ => std::time::Duration::ZERO,
                },
                retry_after: None,
                connection,
            },
        });
    }

    fn backend(&self) -> TenantBackend<'_> {
        TenantBackend {
            server: self,
            now: self.clock.now_utc(),
        }
    }
}

static BANNER_DATE: crate::time::Pattern = crate::time::Pattern::new("%a, %-d %b %Y %H:%M:%S");
static TRAILER_TIME: crate::time::Pattern = crate::time::Pattern::new("%Y-%m-%dT%H:%M:%S%.3fZ");

fn digits(rng: &mut SeedRng, n: usize) -> String {
    rng.string_from(b"0123456789", n)
}

/// A command line as the journal shows it (AUTH arguments redacted).
fn show_line(line: &[u8]) -> String {
    super::session::show_command(line.strip_suffix(b"\r\n").unwrap_or(line))
}

/// Verifies its expectation when dropped (unless the thread is already panicking).
#[derive(Debug)]
pub struct ExpectationGuard {
    server: SmtpServer,
    id: u64,
}

impl ExpectationGuard {
    /// Checks this guard's expectation now.
    pub fn verify(&self) -> VerificationReport {
        let state = self.server.state();
        let expectations: Vec<Expectation> = state
            .expectations
            .iter()
            .filter(|(id, _)| *id == self.id)
            .map(|(_, e)| e.clone())
            .collect();
        let received: Vec<ReceivedMessage> = state.received.iter().cloned().collect();
        VerificationReport::check(&expectations, &received)
    }
}

impl Drop for ExpectationGuard {
    fn drop(&mut self) {
        let report = self.verify();
        self.server
            .state()
            .expectations
            .retain(|(id, _)| *id != self.id);
        if !report.is_ok() && !std::thread::panicking() {
            // This is a test API: a failed expectation fails the test, like wiremock's.
            panic!("{report}");
        }
    }
}

/// Answers the session from the tenant, at one instant.
struct TenantBackend<'a> {
    server: &'a SmtpServer,
    now: DateTime<Utc>,
}

impl TenantBackend<'_> {
    fn received(
        &self,
        user: Option<&str>,
        envelope: &Envelope,
        fields: &[(String, String)],
        message_id: &str,
        size: usize,
    ) -> ReceivedMessage {
        ReceivedMessage {
            at: self.now,
            user: user.map(str::to_string),
            from: envelope.from.clone(),
            to: envelope.to.clone(),
            subject: mime::field(fields, "subject").unwrap_or_default(),
            message_id: message_id.to_string(),
            size,
        }
    }
}

impl State {
    fn remember(&mut self, message: ReceivedMessage) {
        if self.received.len() == RECEIVED_KEEP {
            self.received.pop_front();
        }
        self.received.push_back(message);
    }
}

impl Backend for TenantBackend<'_> {
    fn xoauth2(&mut self, user: &str, token: &str) -> Result<Login, Refusal> {
        if self.server.config.open {
            // --open-smtp: AUTH is off, so any well-formed XOAUTH2 login passes (load tests).
            let _ = token;
            return Ok(Login {
                user: user.to_string(),
                app: String::new(),
                tenant: String::new(),
                over_connection_limit: false,
                slot: None,
                expires: None,
            });
        }
        let directory = Directory::lock(&self.server.directory);
        let claims = directory
            .validate_token(Some(token), Resource::Exchange, None, self.now)
            .map_err(|_| Refusal::AuthFailed)?;
        // An app token needs the SMTP.SendAsApp role; a user's delegated token SMTP.Send.
        let permission = if claims.is_delegated() {
            "SMTP.Send"
        } else {
            "SMTP.SendAsApp"
        };
        if !claims.grants(permission) {
            return Err(Refusal::AuthFailed);
        }
        let tenant = directory.tenant(&claims.tid).ok_or(Refusal::AuthFailed)?;
        if !tenant.settings.smtp_auth_enabled {
            return Err(Refusal::SmtpAuthDisabled);
        }
        let mailbox = directory
            .mailbox(&claims.tid, user)
            .ok_or(Refusal::AuthFailed)?;
        // A delegated token opens its own user's mailbox only: another user's (or a shared
        // mailbox) as `user=` is 535 5.7.3, as Exchange answers it (wire reference §8.6).
        if claims.is_delegated() && !mailbox.id.eq_ignore_ascii_case(&claims.oid) {
            return Err(Refusal::AuthFailed);
        }
        let key = format!("smtp|{}|{}", claims.tid, mailbox.upn.to_ascii_lowercase());
        let config = &self.server.config;
        let (slot, over) = if config.open {
            (None, false)
        } else {
            match self
                .server
                .slots
                .try_acquire(&key, config.connections_per_mailbox)
            {
                Some(slot) => (Some(slot), false),
                None => (None, true),
            }
        };
        Ok(Login {
            user: mailbox.upn.clone(),
            app: claims.appid.clone(),
            tenant: claims.tid.clone(),
            over_connection_limit: over,
            slot,
            expires: Some(claims.expires_at()),
        })
    }

    fn login_valid(&mut self, login: &Login) -> bool {
        login.expires.is_none_or(|end| self.now < end)
    }

    fn submit(
        &mut self,
        login: Option<&Login>,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<String, Refusal> {
        let server = self.server;
        let fields = mime::header_fields(message);
        let mut state = server.state();
        let message_id = mime::field(&fields, "message-id").unwrap_or_else(|| {
            format!(
                "<{}@{}.{}.PROD.OUTLOOK.COM>",
                state.ids.guid(),
                state.ids.hex_upper(8),
                replies::region()
            )
        });
        let Some(login) = login.filter(|_| !server.config.open) else {
            state.accepted += 1;
            let received = self.received(None, envelope, &fields, &message_id, message.len());
            state.remember(received);
            return Ok(message_id);
        };
        if !envelope.from.eq_ignore_ascii_case(&login.user) {
            return Err(Refusal::SendAsDenied {
                user: login.user.clone(),
                from: envelope.from.clone(),
            });
        }
        let config = server.config.clone();
        let usage = state
            .usage
            .entry(login.user.to_ascii_lowercase())
            .or_default();
        let day_ago = self.now - TimeDelta::days(1);
        while usage
            .recipients
            .front()
            .is_some_and(|(at, _)| *at <= day_ago)
        {
            usage.recipients.pop_front();
        }
        let sent_today: usize = usage.recipients.iter().map(|(_, n)| n).sum();
        if sent_today + envelope.to.len() > config.recipients_per_day {
            return Err(Refusal::QuotaExceeded);
        }
        usage.recipients.push_back((self.now, envelope.to.len()));
        let delivered_at =
            schedule_delivery(&mut usage.deliveries, self.now, config.messages_per_minute);
        state.accepted += 1;
        let received = self.received(
            Some(&login.user),
            envelope,
            &fields,
            &message_id,
            message.len(),
        );
        state.remember(received);
        drop(state);
        let sent = SentMessage {
            via: SentVia::Smtp,
            at: delivered_at,
            accepted_at: self.now,
            message_id: Some(message_id.clone()),
            idempotency_key: mime::field(&fields, mime::IDEMPOTENCY_HEADER),
            from: envelope.from.clone(),
            to: envelope.to.clone(),
            subject: mime::field(&fields, "subject").unwrap_or_default(),
            raw: bytes::Bytes::copy_from_slice(message),
        };
        let mut directory = Directory::lock(&server.directory);
        if let Some(mailbox) = directory.mailbox_mut(&login.tenant, &login.user) {
            mailbox.record_sent(sent);
        }
        Ok(message_id)
    }

    fn trailer(&mut self) -> String {
        let mut state = self.server.state();
        let trace_id = state.ids.hex_upper(16);
        let host = format!(
            "SY5P{}CA{}",
            digits(&mut state.ids, 3),
            digits(&mut state.ids, 4)
        );
        drop(state);
        Vars::default()
            .set("host", host)
            .set("region", replies::region())
            .set("iso_time", TRAILER_TIME.format(self.now))
            .set("trace_id", trace_id)
            .fill(replies::trailer_template())
    }
}

/// Over `per_minute` messages a minute, delivery (not the reply) is pushed into later minutes.
fn schedule_delivery(
    deliveries: &mut VecDeque<DateTime<Utc>>,
    now: DateTime<Utc>,
    per_minute: usize,
) -> DateTime<Utc> {
    let minute = TimeDelta::minutes(1);
    while deliveries.len() > per_minute.max(1) * 4 {
        deliveries.pop_front();
    }
    let at = if deliveries.len() >= per_minute.max(1) {
        let window_start = deliveries[deliveries.len() - per_minute.max(1)];
        now.max(window_start + minute)
    } else {
        now
    };
    deliveries.push_back(at);
    at
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One command as read, and the fault decided for it.
struct Command<'a> {
    operation: &'static str,
    /// `None` for a line over the limit.
    line: Option<&'a [u8]>,
    fault: Option<&'a FaultKind>,
}

/// Whether the connection loop goes on after a stage.
enum Flow {
    /// To the next stage of this command.
    Go,
    /// To the next command (the reply is already written).
    Skip,
    /// The connection is over.
    End,
}

struct Conn {
    /// The connection's number (journal facts).
    id: u64,
    stream: Box<dyn Stream>,
    buffer: Vec<u8>,
    start: usize,
}

enum Read {
    Line(Vec<u8>),
    TooLong,
    Eof,
}

impl Conn {
    fn has_line(&self) -> bool {
        self.buffer[self.start..].contains(&b'\n')
    }

    async fn fill(&mut self) -> std::io::Result<bool> {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// The next line with its ending; lines over `limit` are discarded whole.
    async fn read_line(&mut self, limit: usize) -> std::io::Result<Read> {
        let mut discarding = false;
        loop {
            let pending = &self.buffer[self.start..];
            if let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line = pending[..=end].to_vec();
                self.start += end + 1;
                if discarding || line.len() > limit.saturating_add(2) {
                    return Ok(Read::TooLong);
                }
                return Ok(Read::Line(line));
            }
            if pending.len() > limit.saturating_add(2) {
                // Keep memory bounded: drop what we have and skip to the next line end.
                discarding = true;
                self.start = self.buffer.len();
            }
            if !self.fill().await? {
                return Ok(Read::Eof);
            }
        }
    }

    /// Reads `size` bytes and keeps none of them.
    async fn discard(&mut self, mut size: usize) -> std::io::Result<()> {
        loop {
            let buffered = (self.buffer.len() - self.start).min(size);
            self.start += buffered;
            size -= buffered;
            if size == 0 {
                return Ok(());
            }
            if !self.fill().await? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    async fn read_exact(&mut self, size: usize) -> std::io::Result<Vec<u8>> {
        while self.buffer.len() - self.start < size {
            if !self.fill().await? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        let chunk = self.buffer[self.start..self.start + size].to_vec();
        self.start += size;
        Ok(chunk)
    }
}

/// `AUTH XOAUTH2 <base64>`'s user and token, when the line carries them.
fn xoauth2_initial_response(line: &[u8]) -> Option<(String, String)> {
    use base64::Engine as _;
    let super::proto::Command::Auth {
        mechanism,
        initial: Some(initial),
    } = super::proto::parse_command(line).ok()?
    else {
        return None;
    };
    if mechanism != "XOAUTH2" {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(initial)
        .ok()?;
    super::session::parse_xoauth2(&decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_is_delayed_past_thirty_a_minute() {
        let mut deliveries = VecDeque::new();
        let now: DateTime<Utc> = "2025-02-14T11:00:00Z".parse().unwrap();
        let times: Vec<_> = (0..31)
            .map(|_| schedule_delivery(&mut deliveries, now, 30))
            .collect();
        assert!(times[..30].iter().all(|t| *t == now));
        assert_eq!(times[30], now + TimeDelta::minutes(1));
    }
}
