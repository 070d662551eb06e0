//! The SMTP session state machine: lines in, replies and instructions out. Pure: it does no
//! I/O and reads no clock; what it must ask the tenant (is this token good, may this mailbox
//! send, store this message) goes through [`Backend`], so it is unit-tested with a fake.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::proto::{Command, CommandError, parse_command};
use super::replies;
use crate::mock::wire::Vars;

/// How the session is set up.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Front-end host name, e.g. `SY5P282CA0097`.
    pub host: String,
    /// The client's address as shown in the EHLO reply.
    pub client_ip: String,
    /// Whether STARTTLS can be offered.
    pub tls_available: bool,
    /// `--open-smtp`: no AUTH required (load tests).
    pub open: bool,
}

/// An authenticated identity.
#[derive(Debug)]
pub struct Login {
    /// The `user=` of XOAUTH2: the mailbox.
    pub user: String,
    /// The app the token was issued to (empty with `--open-smtp`).
    pub app: String,
    /// The tenant the token belongs to.
    pub tenant: String,
    /// Whether the mailbox was over its connection limit when this session authenticated.
    pub over_connection_limit: bool,
    /// Held for the session's life; releases the mailbox's connection slot on drop.
    pub slot: Option<crate::mock::InFlight>,
    /// When the token the session authenticated with expires (`None`: never).
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
}

/// Why the backend refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `535 5.7.3`.
    AuthFailed,
    /// `535 5.7.139 ... SmtpClientAuthentication is disabled for the Tenant`.
    SmtpAuthDisabled,
    /// `432 4.3.2 ... sender thread limit exceeded`.
    SenderThreadLimit,
    /// `554 5.2.0 ... SubmissionQuotaExceededException`.
    QuotaExceeded,
    /// `554 5.2.252 SendAsDenied`.
    SendAsDenied {
        /// The authenticated user.
        user: String,
        /// The sender it tried to send as.
        from: String,
    },
}

/// A message handed to the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Reverse path.
    pub from: String,
    /// Forward paths.
    pub to: Vec<String>,
}

/// What the tenant side answers.
pub trait Backend {
    /// Checks an XOAUTH2 login.
    fn xoauth2(&mut self, user: &str, token: &str) -> Result<Login, Refusal>;
    /// Stores an accepted message; returns the id for the `250` reply.
    fn submit(
        &mut self,
        login: Option<&Login>,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<String, Refusal>;
    /// The failure trailer `[HOST.REGION.PROD.OUTLOOK.COM time id]` for this instant.
    fn trailer(&mut self) -> String;
    /// Whether an authenticated session may still submit: false once its token has expired.
    fn login_valid(&mut self, login: &Login) -> bool;
}

/// What the I/O layer must do after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read the next line.
    Line,
    /// Upgrade the stream to TLS, then read the next line.
    StartTls,
    /// Read exactly this many bytes and pass them to [`Session::on_chunk`].
    Chunk(usize),
    /// Close the connection after writing the replies.
    Close,
}

/// The result of one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Reply text to write, CRLF-terminated lines (may be empty, e.g. inside DATA).
    pub reply: String,
    /// What to do next.
    pub next: Next,
    /// The command as the journal shows it (AUTH payloads redacted); `None` for data lines.
    pub command: Option<String>,
    /// Set when a message was accepted.
    pub accepted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Fresh,
    Ready,
    AuthXoauth2,
    AuthLoginUser,
    AuthLoginPass,
    Data,
}

#[derive(Debug, Default)]
struct Transaction {
    from: String,
    to: Vec<String>,
    body: Vec<u8>,
    too_big: bool,
    bdat: bool,
}

/// One SMTP session.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    vars: Vars,
    phase: Phase,
    tls: bool,
    login: Option<Login>,
    transaction: Option<Transaction>,
    pending_bdat: Option<bool>,
    max_size: usize,
}

/// Command lines may be this long (AUTH lines: [`AUTH_LINE_MAX`]).
pub const COMMAND_LINE_MAX: usize = 2048;
/// AUTH lines and their continuations may be this long (RFC 4954, CONTRACTS section 3).
pub const AUTH_LINE_MAX: usize = 12_288;

impl Session {
    /// A new session; `vars` holds host, fqdn, client_ip, date and banner_id for the greeting.
    pub fn new(config: SessionConfig, vars: Vars) -> Session {
        Session {
            config,
            vars,
            phase: Phase::Fresh,
            tls: false,
            login: None,
            transaction: None,
            pending_bdat: None,
            max_size: replies::max_message_size(),
        }
    }

    /// The greeting to send on connect.
    pub fn greeting(&self) -> String {
        replies::greeting(&self.vars)
    }

    /// The longest line the I/O layer should accept now.
    pub fn line_limit(&self) -> usize {
        match self.phase {
            Phase::Data => usize::MAX,
            Phase::AuthXoauth2 | Phase::AuthLoginUser | Phase::AuthLoginPass => AUTH_LINE_MAX,
            _ => AUTH_LINE_MAX.max(COMMAND_LINE_MAX),
        }
    }

    /// Whether a body is being read (the I/O layer journals data lines differently).
    pub fn in_data(&self) -> bool {
        self.phase == Phase::Data
    }

    /// Whether the session is authenticated.
    pub fn login(&self) -> Option<&Login> {
        self.login.as_ref()
    }

    /// The TLS upgrade finished: the client must greet again.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.phase = Phase::Fresh;
        self.transaction = None;
    }

    fn reply(&self, key: &str) -> String {
        replies::reply(key, &self.vars)
    }

    /// A catalogue reply in this session's terms (host, trailer), for `respond` faults.
    pub fn render(&self, key: &str, backend: &mut dyn Backend) -> String {
        self.reply_with(
            key,
            backend,
            &[("size", "0".into()), ("message_id", String::new())],
        )
    }

    /// The operation a line is, before the session sees it: the verb in lower case, `auth`
    /// for AUTH continuations, `data-line` or `end-of-data` inside DATA. Faults and the
    /// journal use these names.
    pub fn operation_of(&self, line: &[u8]) -> &'static str {
        match self.phase {
            Phase::Data if trim_eol(line) == b"." => "end-of-data",
            Phase::Data => "data-line",
            Phase::AuthXoauth2 | Phase::AuthLoginUser | Phase::AuthLoginPass => "auth",
            Phase::Fresh | Phase::Ready => {
                let verb = line
                    .split(|b| *b == b' ')
                    .next()
                    .map(trim_eol)
                    .unwrap_or(b"");
                match verb.to_ascii_uppercase().as_slice() {
                    b"HELO" => "helo",
                    b"EHLO" => "ehlo",
                    b"STARTTLS" => "starttls",
                    b"AUTH" => "auth",
                    b"MAIL" => "mail",
                    b"RCPT" => "rcpt",
                    b"DATA" => "data",
                    b"BDAT" => "bdat",
                    b"RSET" => "rset",
                    b"NOOP" => "noop",
                    b"VRFY" => "vrfy",
                    b"QUIT" => "quit",
                    _ => "unknown",
                }
            }
        }
    }

    fn reply_with(
        &self,
        key: &str,
        backend: &mut dyn Backend,
        extra: &[(&'static str, String)],
    ) -> String {
        let vars = extra.iter().fold(
            self.vars.clone().set("trailer", backend.trailer()),
            |v, (k, x)| v.set(k, x.clone()),
        );
        replies::reply(key, &vars)
    }

    fn step(reply: String, command: impl Into<String>) -> Step {
        Step {
            reply,
            next: Next::Line,
            command: Some(command.into()),
            accepted: false,
        }
    }

    /// A line longer than [`Session::line_limit`] arrived (and was discarded).
    pub fn on_overlong_line(&mut self) -> Step {
        Session::step(self.reply("line_too_long"), "<line too long>")
    }

    /// One line, with its line ending.
    pub fn on_line(&mut self, line: &[u8], backend: &mut dyn Backend) -> Step {
        match self.phase {
            Phase::Data => self.data_line(line, backend),
            Phase::AuthXoauth2 => self.xoauth2_response(trim_eol(line), backend),
            Phase::AuthLoginUser => {
                if trim_eol(line) == b"*" {
                    return self.cancel_auth();
                }
                self.phase = Phase::AuthLoginPass;
                // "Password:" in base64.
                Session::step("334 UGFzc3dvcmQ6\r\n".into(), "[redacted]")
            }
            Phase::AuthLoginPass => {
                if trim_eol(line) == b"*" {
                    return self.cancel_auth();
                }
                self.phase = Phase::Ready;
                let reply = self.reply_with("basic_auth_disabled", backend, &[]);
                Step {
                    next: Next::Close,
                    ..Session::step(reply, "[redacted]")
                }
            }
            Phase::Fresh | Phase::Ready => self.command(trim_eol(line), backend),
        }
    }

    fn cancel_auth(&mut self) -> Step {
        self.phase = Phase::Ready;
        Session::step(self.reply("auth_cancelled"), "*")
    }

    fn command(&mut self, line: &[u8], backend: &mut dyn Backend) -> Step {
        let shown = show_command(line);
        let command = match parse_command(line) {
            Ok(command) => command,
            Err(error) => {
                let reply = match error {
                    CommandError::Unknown(verb) => {
                        replies::reply("unknown_command", &self.vars.clone().set("verb", verb))
                    }
                    CommandError::Arguments => self.reply("bad_arguments"),
                    CommandError::Sender => self.reply("bad_sender"),
                    CommandError::Recipient => self.reply("bad_recipient"),
                };
                return Session::step(reply, shown);
            }
        };
        match command {
            Command::Helo(_) => {
                self.phase = Phase::Ready;
                self.transaction = None;
                Session::step(self.reply("helo"), shown)
            }
            Command::Ehlo(_) => {
                self.phase = Phase::Ready;
                self.transaction = None;
                let offer_tls = self.config.tls_available && !self.tls;
                Session::step(replies::ehlo(&self.vars, self.tls, offer_tls), shown)
            }
            Command::StartTls if self.tls => Session::step(self.reply("already_tls"), shown),
            Command::StartTls if !self.config.tls_available => {
                let reply = replies::reply(
                    "unknown_command",
                    &self.vars.clone().set("verb", "STARTTLS"),
                );
                Session::step(reply, shown)
            }
            Command::StartTls => Step {
                next: Next::StartTls,
                ..Session::step(self.reply("starttls"), shown)
            },
            Command::Auth { mechanism, initial } => self.auth(&mechanism, initial, backend, shown),
            Command::Mail { from, params } => self.mail(from, &params, backend, shown),
            Command::Rcpt { to, params } => self.rcpt(to, &params, shown),
            Command::Data => self.data(shown),
            Command::Bdat { size, last } => {
                self.pending_bdat = Some(last);
                Step {
                    next: Next::Chunk(size),
                    ..Session::step(String::new(), shown)
                }
            }
            Command::Rset => {
                self.transaction = None;
                Session::step(self.reply("rset"), shown)
            }
            Command::Noop => Session::step(self.reply("noop"), shown),
            Command::Vrfy(_) => Session::step(self.reply("vrfy"), shown),
            Command::Quit => Step {
                next: Next::Close,
                ..Session::step(self.reply("quit"), shown)
            },
        }
    }

    fn auth(
        &mut self,
        mechanism: &str,
        initial: Option<String>,
        backend: &mut dyn Backend,
        shown: String,
    ) -> Step {
        if self.phase == Phase::Fresh {
            return Session::step(self.reply("need_hello"), shown);
        }
        // AUTH is advertised only after STARTTLS.
        if !self.tls && self.config.tls_available {
            return Session::step(
                self.reply_with("unsupported_mechanism", backend, &[]),
                shown,
            );
        }
        if self.login.is_some() {
            return Session::step(self.reply("already_authenticated"), shown);
        }
        if self.transaction.is_some() {
            return Session::step(self.reply("auth_in_transaction"), shown);
        }
        match (mechanism, initial) {
            ("XOAUTH2", Some(initial)) => {
                let mut step = self.xoauth2_response(initial.as_bytes(), backend);
                step.command = Some(shown);
                step
            }
            ("XOAUTH2", None) => {
                self.phase = Phase::AuthXoauth2;
                Session::step("334 \r\n".into(), shown)
            }
            ("LOGIN", None) => {
                self.phase = Phase::AuthLoginUser;
                // "Username:" in base64.
                Session::step("334 VXNlcm5hbWU6\r\n".into(), shown)
            }
            ("LOGIN", Some(_)) => {
                self.phase = Phase::AuthLoginPass;
                Session::step("334 UGFzc3dvcmQ6\r\n".into(), shown)
            }
            _ => Session::step(
                self.reply_with("unsupported_mechanism", backend, &[]),
                shown,
            ),
        }
    }

    fn xoauth2_response(&mut self, response: &[u8], backend: &mut dyn Backend) -> Step {
        self.phase = Phase::Ready;
        if response == b"*" {
            return self.cancel_auth();
        }
        let Ok(decoded) = STANDARD.decode(response) else {
            return Session::step(self.reply("bad_base64"), "[redacted]");
        };
        let outcome = match parse_xoauth2(&decoded) {
            Some((user, token)) => backend.xoauth2(&user, &token),
            None => Err(Refusal::AuthFailed),
        };
        match outcome {
            Ok(login) => {
                self.login = Some(login);
                Session::step(self.reply("auth_ok"), "[redacted]")
            }
            Err(refusal) => {
                let reply = self.refusal(&refusal, backend);
                // Exchange closes the session after a failed AUTH.
                Step {
                    next: Next::Close,
                    ..Session::step(reply, "[redacted]")
                }
            }
        }
    }

    fn refusal(&self, refusal: &Refusal, backend: &mut dyn Backend) -> String {
        match refusal {
            Refusal::AuthFailed => self.reply_with("auth_failed", backend, &[]),
            Refusal::SmtpAuthDisabled => self.reply_with("smtp_auth_disabled", backend, &[]),
            Refusal::SenderThreadLimit => self.reply_with("sender_thread_limit", backend, &[]),
            Refusal::QuotaExceeded => self.reply_with("quota_exceeded", backend, &[]),
            Refusal::SendAsDenied { user, from } => self.reply_with(
                "send_as_denied",
                backend,
                &[("user", user.clone()), ("from", from.clone())],
            ),
        }
    }

    fn mail(
        &mut self,
        from: String,
        params: &[(String, Option<String>)],
        backend: &mut dyn Backend,
        shown: String,
    ) -> Step {
        if self.phase == Phase::Fresh {
            return Session::step(self.reply("need_hello"), shown);
        }
        if self.login.is_none() && !self.config.open {
            return Session::step(self.reply_with("not_authenticated", backend, &[]), shown);
        }
        if self.transaction.is_some() {
            return Session::step(self.reply("sender_already"), shown);
        }
        if let Some(login) = &self.login
            && !backend.login_valid(login)
        {
            // The session outlived its token: refused as a failed AUTH is, and closed (see
            // `expired_session` in fixtures/wire/smtp.toml for why).
            self.login = None;
            return Step {
                next: Next::Close,
                ..Session::step(self.reply_with("auth_failed", backend, &[]), shown)
            };
        }
        for (keyword, value) in params {
            let ok = match (keyword.as_str(), value.as_deref()) {
                ("SIZE", Some(size)) => match size.parse::<usize>() {
                    Ok(size) if size > self.max_size => {
                        return Session::step(self.reply("too_big"), shown);
                    }
                    Ok(_) => true,
                    Err(_) => false,
                },
                ("BODY", Some(body)) => ["7BIT", "8BITMIME", "BINARYMIME"]
                    .iter()
                    .any(|b| b.eq_ignore_ascii_case(body)),
                ("SMTPUTF8", None) => true,
                ("RET", Some(_)) | ("ENVID", Some(_)) | ("AUTH", Some(_)) => true,
                _ => false,
            };
            if !ok {
                return Session::step(self.reply("bad_arguments"), shown);
            }
        }
        if self.login.as_ref().is_some_and(|l| l.over_connection_limit) {
            return Session::step(self.reply_with("sender_thread_limit", backend, &[]), shown);
        }
        self.transaction = Some(Transaction {
            from,
            ..Transaction::default()
        });
        Session::step(self.reply("mail_ok"), shown)
    }

    fn rcpt(&mut self, to: String, params: &[(String, Option<String>)], shown: String) -> Step {
        if self.phase == Phase::Fresh {
            return Session::step(self.reply("need_hello"), shown);
        }
        let Some(transaction) = self.transaction.as_mut() else {
            return Session::step(self.reply("need_mail"), shown);
        };
        let known = params
            .iter()
            .all(|(k, v)| matches!((k.as_str(), v), ("NOTIFY" | "ORCPT", Some(_))));
        if !known {
            return Session::step(self.reply("bad_arguments"), shown);
        }
        transaction.to.push(to);
        Session::step(self.reply("rcpt_ok"), shown)
    }

    fn data(&mut self, shown: String) -> Step {
        match &self.transaction {
            _ if self.phase == Phase::Fresh => Session::step(self.reply("need_hello"), shown),
            None => Session::step(self.reply("need_mail"), shown),
            Some(t) if t.to.is_empty() => Session::step(self.reply("need_rcpt"), shown),
            Some(t) if t.bdat => Session::step(self.reply("bdat_mixed"), shown),
            Some(_) => {
                self.phase = Phase::Data;
                Session::step(self.reply("data_go"), shown)
            }
        }
    }

    fn data_line(&mut self, line: &[u8], backend: &mut dyn Backend) -> Step {
        if line == b".\r\n" || line == b".\n" {
            self.phase = Phase::Ready;
            return self.finish(backend, "<end of data>");
        }
        // Dot-unstuffing (RFC 5321 4.5.2).
        let line = line.strip_prefix(b".").unwrap_or(line);
        let max_size = self.max_size;
        if let Some(transaction) = self.transaction.as_mut() {
            if transaction.body.len() + line.len() > max_size {
                transaction.too_big = true;
                transaction.body.clear();
            } else if !transaction.too_big {
                transaction.body.extend_from_slice(line);
            }
        }
        Step {
            reply: String::new(),
            next: Next::Line,
            command: None,
            accepted: false,
        }
    }

    /// The bytes of a BDAT chunk announced by the previous step.
    pub fn on_chunk(&mut self, chunk: &[u8], backend: &mut dyn Backend) -> Step {
        self.chunk(Some(chunk), chunk.len(), backend)
    }

    /// A BDAT chunk of `size` bytes the server read without keeping, being over
    /// [`Self::max_message_size`] on its own: the message is refused as too big.
    pub fn on_dropped_chunk(&mut self, size: usize, backend: &mut dyn Backend) -> Step {
        self.chunk(None, size, backend)
    }

    /// The largest message this session takes (BDAT chunks past it are not buffered).
    pub fn max_message_size(&self) -> usize {
        self.max_size
    }

    fn chunk(&mut self, chunk: Option<&[u8]>, size: usize, backend: &mut dyn Backend) -> Step {
        let last = self.pending_bdat.take().unwrap_or(false);
        let shown = format!(
            "<{} bytes of BDAT{}>",
            size,
            if last { " LAST" } else { "" }
        );
        let reply = match &mut self.transaction {
            _ if self.phase == Phase::Fresh => Some(self.reply("need_hello")),
            None => Some(self.reply("need_mail")),
            Some(t) if t.to.is_empty() => Some(self.reply("need_rcpt")),
            Some(t) => {
                t.bdat = true;
                match chunk {
                    Some(chunk) if t.body.len() + size <= self.max_size => {
                        if !t.too_big {
                            t.body.extend_from_slice(chunk);
                        }
                    }
                    _ => {
                        t.too_big = true;
                        t.body.clear();
                    }
                }
                None
            }
        };
        match reply {
            Some(reply) => Session::step(reply, shown),
            None if last => self.finish(backend, &shown),
            None => {
                let reply =
                    replies::reply("bdat_ok", &self.vars.clone().set("size", size.to_string()));
                Session::step(reply, shown)
            }
        }
    }

    fn finish(&mut self, backend: &mut dyn Backend, shown: &str) -> Step {
        let Some(transaction) = self.transaction.take() else {
            return Session::step(self.reply("need_mail"), shown);
        };
        if transaction.too_big {
            return Session::step(self.reply("too_big"), shown);
        }
        let envelope = Envelope {
            from: transaction.from,
            to: transaction.to,
        };
        match backend.submit(self.login.as_ref(), &envelope, &transaction.body) {
            Ok(message_id) => {
                let reply =
                    replies::reply("queued", &self.vars.clone().set("message_id", message_id));
                Step {
                    accepted: true,
                    ..Session::step(reply, shown)
                }
            }
            Err(refusal) => Session::step(self.refusal(&refusal, backend), shown),
        }
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The command as the journal shows it: AUTH arguments are secrets.
pub(crate) fn show_command(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut words = text.splitn(3, ' ');
    let verb = words.next().unwrap_or("");
    if verb.eq_ignore_ascii_case("AUTH") {
        let mechanism = words.next().unwrap_or("");
        return match words.next() {
            Some(_) => format!("{verb} {mechanism} [redacted]"),
            None => format!("{verb} {mechanism}"),
        };
    }
    text.chars().take(512).collect()
}

/// `user=U^Aauth=Bearer T^A^A` into (U, T).
pub fn parse_xoauth2(decoded: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(decoded).ok()?;
    let mut user = None;
    let mut token = None;
    for field in text.split('\x01').filter(|f| !f.is_empty()) {
        if let Some(value) = field.strip_prefix("user=") {
            user = Some(value.to_string());
        } else if let Some(value) = field.strip_prefix("auth=") {
            let (scheme, value) = value.split_once(' ')?;
            if scheme.eq_ignore_ascii_case("bearer") {
                token = Some(value.trim().to_string());
            }
        }
    }
    Some((user?, token?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts the token `good` for any user and stores nothing.
    #[derive(Default)]
    struct Fake {
        submitted: Vec<(Envelope, Vec<u8>)>,
    }

    impl Backend for Fake {
        fn xoauth2(&mut self, user: &str, token: &str) -> Result<Login, Refusal> {
            match token {
                "good" => Ok(Login {
                    user: user.into(),
                    app: "a".into(),
                    tenant: "t".into(),
                    over_connection_limit: false,
                    slot: None,
                    expires: None,
                }),
                "crowded" => Ok(Login {
                    user: user.into(),
                    app: "a".into(),
                    tenant: "t".into(),
                    over_connection_limit: true,
                    slot: None,
                    expires: None,
                }),
                "expiring" => Ok(Login {
                    user: user.into(),
                    app: "a".into(),
                    tenant: "t".into(),
                    over_connection_limit: false,
                    slot: None,
                    expires: Some(chrono::DateTime::UNIX_EPOCH),
                }),
                _ => Err(Refusal::AuthFailed),
            }
        }

        fn submit(
            &mut self,
            _: Option<&Login>,
            envelope: &Envelope,
            message: &[u8],
        ) -> Result<String, Refusal> {
            self.submitted.push((envelope.clone(), message.to_vec()));
            Ok("<m1@x>".into())
        }

        fn login_valid(&mut self, login: &Login) -> bool {
            login.expires.is_none()
        }

        fn trailer(&mut self) -> String {
            "[H.R.PROD.OUTLOOK.COM 2025-02-14T11:30:00.000Z 0123456789ABCDEF]".into()
        }
    }

    fn session(tls_available: bool) -> Session {
        let config = SessionConfig {
            host: "H".into(),
            client_ip: "127.0.0.1".into(),
            tls_available,
            open: false,
        };
        let vars = Vars::default()
            .set("fqdn", "H.outlook.office365.com")
            .set("client_ip", "127.0.0.1")
            .set("host", "H")
            .set("region", "R")
            .set("date", "Fri, 14 Feb 2025 11:30:00")
            .set("banner_id", "0123456789ABCDEF");
        Session::new(config, vars)
    }

    fn xoauth2(user: &str, token: &str) -> String {
        STANDARD.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"))
    }

    /// Feeds lines and returns every reply, one string per input.
    fn talk(session: &mut Session, backend: &mut Fake, lines: &[&str]) -> Vec<String> {
        lines
            .iter()
            .map(|l| {
                session
                    .on_line(format!("{l}\r\n").as_bytes(), backend)
                    .reply
            })
            .collect()
    }

    #[test]
    fn greeting_matches_the_office_365_banner() {
        assert_eq!(
            session(true).greeting(),
            "220 H.outlook.office365.com Microsoft ESMTP MAIL Service ready at Fri, 14 Feb 2025 11:30:00 +0000 [0123456789ABCDEF]\r\n"
        );
    }

    #[test]
    fn without_starttls_there_is_no_auth_and_mail_is_530() {
        let mut s = session(true);
        let mut b = Fake::default();
        let replies = talk(
            &mut s,
            &mut b,
            &[
                "EHLO c",
                &format!("AUTH XOAUTH2 {}", xoauth2("a@x", "good")),
                "MAIL FROM:<a@x>",
            ],
        );
        assert!(!replies[0].contains("AUTH"));
        assert!(replies[1].starts_with("504 5.7.4 Unrecognized authentication type"));
        assert!(replies[2].starts_with("530 5.7.57 Client not authenticated to send mail."));
    }

    #[test]
    fn a_session_that_outlived_its_token_gets_535_at_mail_and_is_closed() {
        let mut s = session(true);
        let mut b = Fake::default();
        s.on_line(b"EHLO c\r\n", &mut b);
        s.on_line(b"STARTTLS\r\n", &mut b);
        s.tls_started();
        let auth = format!("AUTH XOAUTH2 {}", xoauth2("a@x", "expiring"));
        let replies = talk(&mut s, &mut b, &["EHLO c", &auth]);
        assert!(replies[1].starts_with("235 2.7.0"), "{replies:?}");
        let step = s.on_line(b"MAIL FROM:<a@x>\r\n", &mut b);
        assert!(
            step.reply
                .starts_with("535 5.7.3 Authentication unsuccessful [H.R."),
            "{}",
            step.reply
        );
        assert_eq!(step.next, Next::Close);
    }

    #[test]
    fn starttls_then_xoauth2_then_a_message_with_dot_unstuffing() {
        let mut s = session(true);
        let mut b = Fake::default();
        assert_eq!(s.on_line(b"EHLO c\r\n", &mut b).next, Next::Line);
        let step = s.on_line(b"STARTTLS\r\n", &mut b);
        assert_eq!(
            (step.reply.as_str(), step.next),
            ("220 2.0.0 SMTP server ready\r\n", Next::StartTls)
        );
        s.tls_started();
        let auth = format!("AUTH XOAUTH2 {}", xoauth2("a@x", "good"));
        let replies = talk(
            &mut s,
            &mut b,
            &[
                "EHLO c",
                &auth,
                "MAIL FROM:<a@x> SIZE=20",
                "RCPT TO:<b@y>",
                "DATA",
                "Subject: s",
                "",
                "..dot",
                ".",
                "QUIT",
            ],
        );
        assert!(replies[0].contains("250-AUTH LOGIN XOAUTH2\r\n"));
        assert_eq!(replies[1], "235 2.7.0 Authentication successful\r\n");
        assert_eq!(replies[2], "250 2.1.0 Sender OK\r\n");
        assert_eq!(replies[3], "250 2.1.5 Recipient OK\r\n");
        assert_eq!(
            replies[4],
            "354 Start mail input; end with <CRLF>.<CRLF>\r\n"
        );
        assert_eq!(replies[5..8].concat(), "");
        assert_eq!(
            replies[8],
            "250 2.0.0 OK <m1@x> [Hostname=H.R.PROD.OUTLOOK.COM]\r\n"
        );
        assert_eq!(
            replies[9],
            "221 2.0.0 Service closing transmission channel\r\n"
        );
        assert_eq!(b.submitted[0].1, b"Subject: s\r\n\r\n.dot\r\n");
    }

    #[test]
    fn a_refused_token_is_535_and_closes_without_a_challenge() {
        let mut s = session(false);
        let mut b = Fake::default();
        s.on_line(b"EHLO c\r\n", &mut b);
        let step = s.on_line(
            format!("AUTH XOAUTH2 {}\r\n", xoauth2("a@x", "expired")).as_bytes(),
            &mut b,
        );
        assert!(
            step.reply
                .starts_with("535 5.7.3 Authentication unsuccessful [H.R.PROD.OUTLOOK.COM ")
        );
        assert_eq!(step.next, Next::Close);
        assert_eq!(step.command.as_deref(), Some("AUTH XOAUTH2 [redacted]"));
    }

    #[test]
    fn two_step_xoauth2_and_auth_login_with_basic_auth_disabled() {
        let mut s = session(false);
        let mut b = Fake::default();
        let replies = talk(
            &mut s,
            &mut b,
            &["EHLO c", "AUTH XOAUTH2", &xoauth2("a@x", "good")],
        );
        assert_eq!(replies[1], "334 \r\n");
        assert_eq!(replies[2], "235 2.7.0 Authentication successful\r\n");
        let mut s = session(false);
        let replies = talk(
            &mut s,
            &mut b,
            &["EHLO c", "AUTH LOGIN", "dXNlcg==", "cGFzcw=="],
        );
        assert_eq!(replies[1], "334 VXNlcm5hbWU6\r\n");
        assert_eq!(replies[2], "334 UGFzc3dvcmQ6\r\n");
        assert!(replies[3].starts_with(
            "535 5.7.139 Authentication unsuccessful, basic authentication is disabled."
        ));
    }

    #[test]
    fn commands_out_of_sequence_get_the_right_reply() {
        let mut s = session(false);
        let mut b = Fake::default();
        let replies = talk(
            &mut s,
            &mut b,
            &[
                "MAIL FROM:<a@x>",
                "EHLO c",
                "RCPT TO:<b@y>",
                "DATA",
                &format!("AUTH XOAUTH2 {}", xoauth2("a@x", "good")),
                "MAIL FROM:<a@x>",
                "MAIL FROM:<a@x>",
                "DATA",
                "FOO",
                "MAIL FROM:<a@x> SIZE=999999999",
                "RSET",
                "NOOP",
                "VRFY x",
            ],
        );
        assert!(replies[0].starts_with("503 5.5.2 Send hello first"));
        assert!(replies[2].starts_with("503 5.5.2 Need mail command"));
        assert!(replies[3].starts_with("503 5.5.2 Need mail command"));
        assert!(replies[6].starts_with("503 5.5.2 Sender already specified"));
        assert!(replies[7].starts_with("503 5.5.2 Need rcpt command"));
        assert_eq!(replies[8], "500 5.3.3 Unrecognized command 'FOO'\r\n");
        assert!(replies[9].starts_with("503 5.5.2 Sender already specified"));
        assert_eq!(replies[10], "250 2.0.0 Resetting\r\n");
        assert!(replies[11].starts_with("250 2.0.0 OK"));
        assert!(replies[12].starts_with("252 "));
        assert!(
            b.submitted.is_empty(),
            "nothing is stored from a broken transaction"
        );
    }

    #[test]
    fn the_fourth_connection_of_a_mailbox_is_432_at_mail_from() {
        let mut s = session(false);
        let mut b = Fake::default();
        let replies = talk(
            &mut s,
            &mut b,
            &[
                "EHLO c",
                &format!("AUTH XOAUTH2 {}", xoauth2("a@x", "crowded")),
                "MAIL FROM:<a@x>",
            ],
        );
        assert!(
            replies[2].starts_with("432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded")
        );
    }

    /// A session past `RCPT TO`, ready for the message.
    fn with_a_recipient() -> (Session, Fake) {
        let mut s = session(false);
        let mut b = Fake::default();
        talk(
            &mut s,
            &mut b,
            &[
                "EHLO c",
                &format!("AUTH XOAUTH2 {}", xoauth2("a@x", "good")),
                "MAIL FROM:<a@x>",
                "RCPT TO:<b@y>",
            ],
        );
        (s, b)
    }

    #[test]
    fn bdat_chunks_make_a_message() {
        let (mut s, mut b) = with_a_recipient();
        let step = s.on_line(b"BDAT 5\r\n", &mut b);
        assert_eq!(step.next, Next::Chunk(5));
        assert_eq!(
            s.on_chunk(b"Hello", &mut b).reply,
            "250 2.0.0 5 bytes received\r\n"
        );
        s.on_line(b"BDAT 6 LAST\r\n", &mut b);
        assert!(s.on_chunk(b" world", &mut b).accepted);
        assert_eq!(b.submitted[0].1, b"Hello world");
    }

    #[test]
    fn a_chunk_over_the_size_limit_is_refused_without_its_bytes() {
        let (mut s, mut b) = with_a_recipient();
        let huge = s.max_message_size() + 1;
        let step = s.on_line(format!("BDAT {huge} LAST\r\n").as_bytes(), &mut b);
        assert_eq!(step.next, Next::Chunk(huge));
        let step = s.on_dropped_chunk(huge, &mut b);
        assert!(!step.accepted);
        assert_eq!(step.reply, s.reply("too_big"));
        assert!(b.submitted.is_empty());
    }

    fn well_formed(reply: &str) -> bool {
        if reply.is_empty() {
            return true;
        }
        let lines: Vec<&str> = reply.split_terminator("\r\n").collect();
        let code = &reply[..3.min(reply.len())];
        reply.ends_with("\r\n")
            && lines.iter().enumerate().all(|(i, line)| {
                let last = i + 1 == lines.len();
                line.len() >= 4
                    && line[..3].bytes().all(|b| b.is_ascii_digit())
                    && &line[..3] == code
                    && matches!(line.as_bytes()[0], b'2'..=b'5')
                    && line.as_bytes()[3] == if last { b' ' } else { b'-' }
            })
    }

    fn line() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let verbs = prop_oneof![
            Just("EHLO c"),
            Just("HELO c"),
            Just("STARTTLS"),
            Just("AUTH XOAUTH2"),
            Just("AUTH LOGIN"),
            Just("AUTH PLAIN"),
            Just("MAIL FROM:<a@x>"),
            Just("MAIL FROM:<a@x> SIZE=10 BODY=8BITMIME"),
            Just("RCPT TO:<b@y>"),
            Just("DATA"),
            Just("BDAT 3"),
            Just("BDAT 2 LAST"),
            Just("RSET"),
            Just("NOOP"),
            Just("VRFY x"),
            Just("QUIT"),
            Just("."),
            Just("..x"),
            Just("*"),
        ]
        .prop_map(|v| v.as_bytes().to_vec());
        let token = prop_oneof![Just("good"), Just("bad"), Just("crowded")]
            .prop_map(|t| format!("AUTH XOAUTH2 {}", xoauth2("a@x", t)).into_bytes());
        let garbage = proptest::collection::vec(any::<u8>(), 0..80);
        prop_oneof![4 => verbs, 1 => token, 2 => garbage].prop_map(|mut l| {
            l.extend_from_slice(b"\r\n");
            l
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, failure_persistence: None, ..Default::default() })]

        #[test]
        fn arbitrary_sessions_get_well_formed_replies_and_store_only_whole_messages(
            lines in proptest::collection::vec(line(), 0..40),
        ) {
            let mut s = session(false);
            let mut b = Fake::default();
            let mut data_ends = 0;
            // Split as the server does: a line ends at each LF.
            let lines: Vec<Vec<u8>> = lines
                .concat()
                .split_inclusive(|b| *b == b'\n')
                .map(<[u8]>::to_vec)
                .collect();
            for line in &lines {
                let in_data = s.in_data();
                let step = s.on_line(line, &mut b);
                proptest::prop_assert!(well_formed(&step.reply), "{:?} -> {:?}", String::from_utf8_lossy(line), step.reply);
                if in_data && line.as_slice() == b".\r\n" {
                    data_ends += 1;
                }
                match step.next {
                    Next::Close => break,
                    Next::Chunk(n) => {
                        let step = s.on_chunk(&vec![b'x'; n], &mut b);
                        proptest::prop_assert!(well_formed(&step.reply));
                        if step.accepted {
                            data_ends += 1;
                        }
                    }
                    Next::Line | Next::StartTls => {}
                }
            }
            proptest::prop_assert!(b.submitted.len() <= data_ends);
            for (envelope, _) in &b.submitted {
                proptest::prop_assert!(!envelope.to.is_empty());
                proptest::prop_assert_eq!(envelope.from.as_str(), "a@x");
            }
        }
    }
}
