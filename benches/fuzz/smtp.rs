//! SMTP target: command streams through the pure session state machine, framed as the server
//! frames them, every reply checked against RFC 5321's reply grammar.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use maildrill::mock::mime;
use maildrill::mock::smtp::session::{
    Backend, Envelope, Login, Next, Refusal, Session, SessionConfig,
};
use maildrill::mock::wire::Vars;
use maildrill::tenant::demo;

use super::harness::{Check, Gen};
use super::mutate::{self, NASTY, Rng};

/// The token the fake backend accepts.
const GOOD: &str = "eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJodHRwczovL291dGxvb2sub2ZmaWNlMzY1LmNvbSJ9.c2ln";
/// RFC 5321 section 4.5.3.1.5: a reply line is at most 512 octets with its CRLF.
const REPLY_LINE_MAX: usize = 512;

/// One connection: how the server is set up, and the bytes the client sends.
pub struct Input {
    tls_available: bool,
    open: bool,
    bytes: Vec<u8>,
}

/// Generates client byte streams.
pub struct SmtpGen;

impl Gen for SmtpGen {
    type Input = Input;

    fn input(&self, r: &mut Rng) -> Input {
        let bytes = match r.below(10) {
            0..=5 => session(r),
            6..=8 => {
                let seed = session(r);
                let other = session(r);
                let dictionary: Vec<&[u8]> = VERBS.iter().map(|v| v.as_bytes()).collect();
                let mut dictionary = dictionary;
                dictionary.push(&other);
                mutate::mutate(r, &seed, &dictionary, 200_000)
            }
            _ => mutate::random_bytes(r, 20_000),
        };
        Input {
            tls_available: r.one_in(2),
            open: r.one_in(8),
            bytes,
        }
    }

    fn show(&self, input: &Input) -> String {
        format!(
            "tls_available={} open={} bytes=\"{}\"",
            input.tls_available,
            input.open,
            mutate::escape(&input.bytes)
        )
    }
}

const VERBS: &[&str] = &[
    "EHLO", "HELO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "VRFY",
    "QUIT", "XOAUTH2", "LOGIN", "PLAIN", "FROM:", "TO:", "SIZE=", "BODY=", "LAST", "*", ".",
];

/// A plausible session: commands in a mostly sensible order, with bodies and chunks.
fn session(r: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    if r.below(4) > 0 {
        line(&mut out, format!("EHLO {}", domain(r)).as_bytes(), r);
        if r.one_in(2) {
            line(&mut out, b"STARTTLS", r);
            line(&mut out, b"EHLO client.example", r);
        }
        line(&mut out, auth(r).as_bytes(), r);
    }
    let commands = r.range(1, 30);
    for _ in 0..commands {
        command(r, &mut out);
    }
    out
}

/// Appends `text` with a line end (mostly CRLF).
fn line(out: &mut Vec<u8>, text: &[u8], r: &mut Rng) {
    out.extend_from_slice(text);
    let end: &[u8] = match r.below(40) {
        0 => b"\n",
        1 => b"\r",
        2 => b"",
        3 => b"\r\r\n",
        _ => b"\r\n",
    };
    out.extend_from_slice(end);
}

fn domain(r: &mut Rng) -> String {
    let nasty = r.pick(NASTY);
    r.pick(&[
        "client.example",
        "c",
        "",
        "[127.0.0.1]",
        "[IPv6:::1]",
        "localhost localhost",
        &"d".repeat(3000),
        nasty,
    ])
    .to_string()
}

fn address(r: &mut Rng) -> String {
    let nasty = format!("a{}b@x.example", r.pick(NASTY));
    let long = format!("{}@x.example", "l".repeat(r.range(100, 4000)));
    r.pick(&[
        demo::MAILBOX,
        "MAILMAN@CONTOSO.ONMICROSOFT.COM",
        "other@contoso.onmicrosoft.com",
        "",
        "no-at-sign",
        "@x",
        "a@.x",
        "a@b@c",
        "\"quoted local\"@x.example",
        "ünïcødé@exämple.com",
        &nasty,
        &long,
    ])
    .to_string()
}

fn auth(r: &mut Rng) -> String {
    let user = match r.below(4) {
        0 => address(r),
        _ => demo::MAILBOX.to_string(),
    };
    let token = r
        .pick(&[GOOD, GOOD, "crowded", "expiring", "disabled", "bad", ""])
        .to_string();
    let mut payload = format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes();
    if r.one_in(6) {
        payload = mutate::mutate(
            r,
            &payload,
            &[b"\x01", b"auth=", b"user=", b"Bearer "],
            20_000,
        );
    }
    let encoded = STANDARD.encode(&payload);
    match r.below(8) {
        0 => format!("AUTH XOAUTH2 {}", &encoded[..r.below(encoded.len() + 1)]),
        1 => format!("AUTH xoauth2 {encoded}="),
        2 => "AUTH LOGIN".into(),
        3 => format!("AUTH PLAIN {encoded}"),
        4 => "AUTH".into(),
        _ => format!("AUTH XOAUTH2 {encoded}"),
    }
}

fn params(r: &mut Rng, known: &[&str]) -> String {
    let mut out = String::new();
    for _ in 0..r.below(4) {
        out.push(' ');
        match r.below(4) {
            0 => out.push_str(r.pick(known)),
            1 => out.push_str(&format!("SIZE={}", r.pick(mutate::HUGE_NUMBERS))),
            2 => out.push_str(&format!("{}={}", r.pick(known), r.pick(NASTY))),
            _ => out.push_str(r.pick(&["XFOO", "=", "SIZE", "BODY=", "=x"])),
        }
    }
    out
}

fn command(r: &mut Rng, out: &mut Vec<u8>) {
    match r.below(16) {
        0 => line(out, format!("EHLO {}", domain(r)).as_bytes(), r),
        1 => line(out, format!("HELO {}", domain(r)).as_bytes(), r),
        2 => line(out, auth(r).as_bytes(), r),
        3 => line(
            out,
            r.pick(&["AUTH XOAUTH2", "AUTH LOGIN", "*", "dXNlcg==", "=", ""])
                .as_bytes(),
            r,
        ),
        4 | 5 => {
            let known = [
                "BODY=8BITMIME",
                "BODY=7bit",
                "SMTPUTF8",
                "RET=FULL",
                "ENVID=x",
                "AUTH=<>",
            ];
            let text = format!("MAIL FROM:<{}>{}", address(r), params(r, &known));
            line(out, text.as_bytes(), r);
        }
        6 | 7 => {
            let known = ["NOTIFY=NEVER", "ORCPT=rfc822;b@y", "NOTIFY"];
            let text = format!("RCPT TO:<{}>{}", address(r), params(r, &known));
            line(out, text.as_bytes(), r);
        }
        8 => data(r, out),
        9 => bdat(r, out),
        10 => line(
            out,
            r.pick(&[
                "RSET", "NOOP", "NOOP x", "VRFY x", "QUIT", "STARTTLS", "DATA x",
            ])
            .as_bytes(),
            r,
        ),
        11 => line(
            out,
            r.pick(&[
                "mail from: <a@x>",
                "MAIL FROM:a@x SIZE=1",
                "RCPT TO: b@y",
                "MAIL",
                "RCPT",
            ])
            .as_bytes(),
            r,
        ),
        12 => {
            let garbage = mutate::random_bytes(r, 3000);
            line(out, &garbage, r);
        }
        13 => line(
            out,
            format!("{}{}", r.pick(VERBS), r.pick(NASTY)).as_bytes(),
            r,
        ),
        14 => line(
            out,
            &vec![
                b'X';
                r.pick(&[&2047usize, &2049, &12_287, &12_289, &20_000])
                    .to_owned()
            ],
            r,
        ),
        _ => line(out, b"", r),
    }
}

/// `DATA`, a message (headers with odd values, dot-stuffing), and usually the final dot.
fn data(r: &mut Rng, out: &mut Vec<u8>) {
    line(out, b"DATA", r);
    let id = match r.below(3) {
        0 => format!("<{}{}@x>", "i".repeat(r.size(3000)), r.pick(NASTY)),
        1 => format!("<{}@x>", r.word()),
        _ => mutate::escape(&r.some_bytes(40)),
    };
    let headers = [
        format!("From: {}", address(r)),
        format!("To: {}", address(r)),
        format!("Subject: {}", r.pick(NASTY)),
        format!("Message-ID: {id}"),
        format!("X-Maildrill-Idempotency-Key: {}", r.word()),
        format!(" folded{}", r.pick(NASTY)),
    ];
    for _ in 0..r.below(7) {
        let header = &headers[r.below(headers.len())];
        line(out, header.as_bytes(), r);
    }
    line(out, b"", r);
    for _ in 0..r.below(6) {
        let body = r
            .pick(&["body", "..dot", ".", "..", ". ", "x\0y", "", "\u{feff}"])
            .as_bytes()
            .to_vec();
        line(out, &body, r);
    }
    if r.below(8) > 0 {
        out.extend_from_slice(b".\r\n");
    }
}

/// `BDAT n [LAST]` and (usually) exactly n bytes.
fn bdat(r: &mut Rng, out: &mut Vec<u8>) {
    let n = r.size(5000);
    let last = if r.one_in(2) { " LAST" } else { "" };
    let announced = match r.below(10) {
        0 => r.pick(mutate::HUGE_NUMBERS).to_string(),
        1 => (n + 1).to_string(),
        _ => n.to_string(),
    };
    line(out, format!("BDAT {announced}{last}").as_bytes(), r);
    let chunk = if r.one_in(2) {
        format!("Message-ID: <{}@x>\r\n\r\nhi", r.word()).into_bytes()
    } else {
        r.bytes(n)
    };
    out.extend_from_slice(&chunk[..n.min(chunk.len())]);
    out.resize(out.len() + n.saturating_sub(chunk.len()), b'b');
}

/// The tenant side as the server's backend answers it: one mailbox, one good token, and the
/// message id taken from the message's own `Message-ID` as the server takes it.
#[derive(Default)]
struct Fake {
    accepted: usize,
}

impl Backend for Fake {
    fn xoauth2(&mut self, user: &str, token: &str) -> Result<Login, Refusal> {
        // The server looks the mailbox up and logs in as its canonical name.
        if !user.eq_ignore_ascii_case(demo::MAILBOX) {
            return Err(Refusal::AuthFailed);
        }
        let login = |over, expires| Login {
            user: demo::MAILBOX.to_string(),
            app: demo::APP_ID.into(),
            tenant: demo::TENANT_ID.into(),
            over_connection_limit: over,
            slot: None,
            expires,
        };
        match token {
            GOOD => Ok(login(false, None)),
            "crowded" => Ok(login(true, None)),
            "expiring" => Ok(login(false, Some(chrono::DateTime::UNIX_EPOCH))),
            "disabled" => Err(Refusal::SmtpAuthDisabled),
            _ => Err(Refusal::AuthFailed),
        }
    }

    fn submit(
        &mut self,
        login: Option<&Login>,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<String, Refusal> {
        if let Some(login) = login
            && !envelope.from.eq_ignore_ascii_case(&login.user)
        {
            return Err(Refusal::SendAsDenied {
                user: login.user.clone(),
                from: envelope.from.clone(),
            });
        }
        if self.accepted >= 3 {
            return Err(Refusal::QuotaExceeded);
        }
        self.accepted += 1;
        let fields = mime::header_fields(message);
        Ok(mime::field(&fields, "message-id")
            .unwrap_or_else(|| "<0f1e2d3c@SY5P282CA0097.AUSP282.PROD.OUTLOOK.COM>".into()))
    }

    fn trailer(&mut self) -> String {
        "[SY5P282CA0097.AUSP282.PROD.OUTLOOK.COM 2025-02-14T11:30:00.000Z 08DD4C0A1B2C3D4E]".into()
    }

    fn login_valid(&mut self, login: &Login) -> bool {
        login.expires.is_none()
    }
}

/// Runs sessions as the server does: lines split at LF, over-long lines refused, BDAT chunks
/// read whole, STARTTLS completed, the connection closed when the session says so.
pub struct SmtpCheck;

impl Check<Input> for SmtpCheck {
    fn check(&mut self, input: &Input) -> Result<u16, String> {
        let mut session = new_session(input);
        let mut backend = Fake::default();
        let bytes = &input.bytes;
        let mut at = 0;
        let mut last = 220;
        let mut steps = 0;
        while at < bytes.len() {
            steps += 1;
            if steps > bytes.len() + 1 {
                return Err(format!("no progress after {steps} steps"));
            }
            let Some(end) = bytes[at..].iter().position(|b| *b == b'\n') else {
                break;
            };
            let line = &bytes[at..at + end + 1];
            at += end + 1;
            let in_data = session.in_data();
            let step = if line.len() > session.line_limit().saturating_add(2) {
                session.on_overlong_line()
            } else {
                session.on_line(line, &mut backend)
            };
            let chunked = matches!(step.next, Next::Chunk(_));
            well_formed(&step.reply, !in_data && !chunked)
                .map_err(|why| format!("{why}: line \"{}\"", mutate::escape(line)))?;
            last = code(&step.reply).unwrap_or(last);
            match step.next {
                Next::Line => {}
                Next::Close => break,
                Next::StartTls => session.tls_started(),
                Next::Chunk(size) => {
                    if bytes.len() - at < size {
                        break;
                    }
                    let chunk_step = session.on_chunk(&bytes[at..at + size], &mut backend);
                    at += size;
                    well_formed(&chunk_step.reply, true)
                        .map_err(|why| format!("{why}: after a BDAT chunk of {size}"))?;
                    last = code(&chunk_step.reply).unwrap_or(last);
                }
            }
        }
        Ok(if backend.accepted > 0 { 250 } else { last })
    }
}

fn new_session(input: &Input) -> Session {
    let config = SessionConfig {
        host: "SY5P282CA0097".into(),
        client_ip: "127.0.0.1".into(),
        tls_available: input.tls_available,
        open: input.open,
    };
    let vars = Vars::default()
        .set("fqdn", "SY5P282CA0097.outlook.office365.com")
        .set("client_ip", "127.0.0.1")
        .set("date", "Fri, 14 Feb 2025 11:30:00")
        .set("banner_id", "08DD4C0A1B2C3D4E")
        .set("region", "AUSP282")
        .set("host", "SY5P282CA0097");
    Session::new(config, vars)
}

fn code(reply: &str) -> Option<u16> {
    reply.get(..3)?.parse().ok()
}

/// RFC 5321 section 4.2: `code SP text CRLF`, or `code - text CRLF` for all but the last
/// line of a multi-line reply; one code throughout; no bare CR or LF or other controls in the
/// text; each line at most 512 octets. An empty reply is allowed only where the session owes
/// none (inside DATA, before a BDAT chunk).
pub fn well_formed(reply: &str, owed: bool) -> Result<(), String> {
    if reply.is_empty() {
        return if owed {
            Err("no reply to a command".into())
        } else {
            Ok(())
        };
    }
    if !reply.ends_with("\r\n") {
        return Err(format!(
            "reply not CRLF-terminated: \"{}\"",
            reply.escape_default()
        ));
    }
    let lines: Vec<&str> = reply.split_terminator("\r\n").collect();
    let first = lines[0].get(..3).unwrap_or("");
    for (i, text) in lines.iter().enumerate() {
        let bytes = text.as_bytes();
        let separator = if i + 1 == lines.len() { b' ' } else { b'-' };
        let shown = text.escape_default();
        if bytes.len() < 4
            || !bytes[..3].iter().all(u8::is_ascii_digit)
            || !(b'2'..=b'5').contains(&bytes[0])
            || &text[..3] != first
            || bytes[3] != separator
        {
            return Err(format!("bad reply line \"{shown}\""));
        }
        if bytes.len() + 2 > REPLY_LINE_MAX {
            return Err(format!(
                "reply line of {} octets: \"{shown}\"",
                bytes.len() + 2
            ));
        }
        if bytes.iter().any(|b| b.is_ascii_control() && *b != b'\t') {
            return Err(format!("control character in reply line \"{shown}\""));
        }
    }
    Ok(())
}
