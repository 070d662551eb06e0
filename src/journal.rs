//! The journal: every request a mock served and what it answered, on the virtual clock, with
//! secrets and tokens redacted.
//!
//! Checks query it, snapshots print it, and the wiring-equivalence test compares the journals
//! of the in-memory and socket wirings line by line. It can be bounded (a ring) so that
//! `maildrill serve` keeps flat memory under load.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Which mock served a request.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum MockName {
    /// The Entra ID token endpoint and discovery document.
    Entra,
    /// Microsoft Graph.
    Graph,
    /// The Office 365 SMTP submission server.
    Smtp,
    /// The alert sink.
    Alerts,
}

impl fmt::Display for MockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MockName::Entra => "entra",
            MockName::Graph => "graph",
            MockName::Smtp => "smtp",
            MockName::Alerts => "alerts",
        })
    }
}

/// One served request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct JournalEntry {
    /// Position in the journal, from 1, counting entries dropped from a bounded journal.
    pub seq: u64,
    /// Virtual time the request arrived.
    #[serde(serialize_with = "serialize_rfc3339")]
    pub at: DateTime<Utc>,
    /// The mock that served it.
    pub mock: MockName,
    /// The operation, e.g. `token`, `send-mail`, `delta`.
    pub operation: &'static str,
    /// The user a delegated token request (a code or a refresh token) was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `METHOD path?query`.
    pub request: String,
    /// The request body; it shows only redacted and shortened.
    pub request_body: Body,
    /// How the reply went out: `respond`, `respond after 30s`, `reset`, `hang`, `truncate 10`.
    pub delivery: Cow<'static, str>,
    /// The status, when a response head was sent.
    pub status: Option<u16>,
    /// The response body; it shows only redacted and shortened.
    pub response_body: Body,
    /// The fault that shaped the reply, if any.
    pub fault: Option<String>,
    /// Extra facts the checks read and the journal's text does not show; its JSON shows the
    /// reply's `Retry-After` (seconds) of them.
    #[serde(rename = "retry_after", serialize_with = "serialize_retry_after")]
    #[schemars(rename = "retry_after", with = "Option<u64>")]
    pub facts: Facts,
}

/// What a check needs of an entry beyond its text: when the reply left, what it asked of the
/// client, and which SMTP connection carried it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// How long after `at` the reply left (a latency fault, a throttled write).
    pub delay: std::time::Duration,
    /// The reply's `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
    /// The SMTP connection, numbered from 1 in the order the server accepted them (0 for HTTP).
    pub connection: u64,
}

/// A journaled body. It keeps the bytes (a cheap reference-counted clone, so journaling costs
/// little under load) and redacts whenever it is shown: `Display`, `Debug` and `Serialize` all
/// give the redacted, shortened text, never the secrets inside.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Body {
    bytes: bytes::Bytes,
    total: usize,
    // A header value, so keeping it is a reference count, not a copy.
    content_type: Option<http::HeaderValue>,
}

/// Bytes of a body the journal keeps. Copying a bounded prefix (rather than holding the
/// caller's `Bytes`, which may pin a much larger read buffer) keeps a bounded journal's memory
/// bounded too.
const BODY_KEEP: usize = 16 * 1024;

impl Body {
    /// A body and its `Content-Type`, copying at most 16 KiB of it.
    pub fn new(bytes: &[u8], content_type: Option<&http::HeaderValue>) -> Body {
        Body {
            bytes: bytes::Bytes::copy_from_slice(&bytes[..bytes.len().min(BODY_KEEP)]),
            total: bytes.len(),
            content_type: content_type.cloned(),
        }
    }

    /// A body the caller built for exactly this message (a mock's reply), kept without a copy
    /// when it is short: it cannot pin a larger buffer.
    pub fn owned(bytes: bytes::Bytes, content_type: Option<&http::HeaderValue>) -> Body {
        if bytes.len() > BODY_KEEP {
            return Body::new(&bytes, content_type);
        }
        Body {
            total: bytes.len(),
            bytes,
            content_type: content_type.cloned(),
        }
    }

    /// Plain text that holds nothing secret (an SMTP line, a note).
    pub fn text(text: impl Into<String>) -> Body {
        let bytes = bytes::Bytes::from(text.into());
        Body {
            total: bytes.len(),
            bytes,
            content_type: None,
        }
    }

    /// Whether there is no body.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The kept bytes, unredacted: for a leak scan to look through, never to show.
    pub(crate) fn raw(&self) -> &[u8] {
        &self.bytes
    }

    /// The redacted, shortened text.
    pub fn redacted(&self) -> String {
        if self.bytes.is_empty() {
            return String::new();
        }
        let content_type = self.content_type.as_ref().and_then(|v| v.to_str().ok());
        if self.bytes.len() < self.total {
            return redact_prefix(content_type, &self.bytes, self.total);
        }
        redact_body(content_type, &self.bytes)
    }
}

impl fmt::Display for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

impl schemars::JsonSchema for Body {
    fn schema_name() -> Cow<'static, str> {
        "Body".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "The body as text, secrets and tokens redacted, long bodies shortened."
        })
    }
}

impl Serialize for Body {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

fn serialize_retry_after<S: serde::Serializer>(facts: &Facts, s: S) -> Result<S::Ok, S::Error> {
    facts.retry_after.serialize(s)
}

fn serialize_rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::time::rfc3339(*at))
}

impl fmt::Display for JournalEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            crate::time::rfc3339(self.at),
            self.mock,
            self.operation,
            self.request
        )?;
        if !self.request_body.is_empty() {
            write!(f, " {}", self.request_body)?;
        }
        match self.status {
            Some(status) => write!(f, " -> {status}")?,
            None => write!(f, " -> no reply")?,
        }
        if self.delivery != "respond" {
            write!(f, " [{}]", self.delivery)?;
        }
        if let Some(fault) = &self.fault {
            write!(f, " (fault {fault})")?;
        }
        if !self.response_body.is_empty() {
            write!(f, " {}", self.response_body)?;
        }
        Ok(())
    }
}

/// Entries per chunk of an unbounded journal: about a megabyte.
const CHUNK: usize = 4096;

/// Where entries live. A replay's journal only grows, in fixed chunks, so a long replay never
/// copies what it already holds (a 45-day replay journals ~70,000 requests); a bounded journal
/// is a ring.
#[derive(Debug)]
enum Store {
    Chunks(Vec<Vec<JournalEntry>>),
    /// The newest entries, at most `capacity`.
    Ring {
        entries: VecDeque<JournalEntry>,
        capacity: usize,
    },
}

impl Default for Store {
    fn default() -> Store {
        Store::Chunks(Vec::new())
    }
}

impl Store {
    fn push(&mut self, entry: JournalEntry) {
        match self {
            Store::Chunks(chunks) => match chunks.last_mut() {
                Some(last) if last.len() < CHUNK => last.push(entry),
                _ => {
                    let mut chunk = Vec::with_capacity(CHUNK);
                    chunk.push(entry);
                    chunks.push(chunk);
                }
            },
            Store::Ring { entries, capacity } => {
                if entries.len() >= *capacity {
                    entries.pop_front();
                }
                entries.push_back(entry);
            }
        }
    }

    fn iter(&self) -> Entries<'_> {
        Entries(match self {
            Store::Chunks(chunks) => EntriesIter::Chunks(chunks.iter().flatten()),
            Store::Ring { entries, .. } => EntriesIter::Ring(entries.iter()),
        })
    }

    fn len(&self) -> usize {
        match self {
            Store::Chunks(chunks) => chunks.iter().map(Vec::len).sum(),
            Store::Ring { entries, .. } => entries.len(),
        }
    }

    fn clear(&mut self) {
        match self {
            Store::Chunks(chunks) => chunks.clear(),
            Store::Ring { entries, .. } => entries.clear(),
        }
    }
}

/// The entries a journal holds, oldest first, borrowed.
#[derive(Debug, Clone)]
pub struct Entries<'a>(EntriesIter<'a>);

#[derive(Debug, Clone)]
enum EntriesIter<'a> {
    Chunks(std::iter::Flatten<std::slice::Iter<'a, Vec<JournalEntry>>>),
    Ring(std::collections::vec_deque::Iter<'a, JournalEntry>),
}

impl<'a> Iterator for Entries<'a> {
    type Item = &'a JournalEntry;

    fn next(&mut self) -> Option<&'a JournalEntry> {
        match &mut self.0 {
            EntriesIter::Chunks(iter) => iter.next(),
            EntriesIter::Ring(iter) => iter.next(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    entries: Store,
    total: u64,
    /// The instant of the last entry and how many entries share it.
    instant: Option<(DateTime<Utc>, u64)>,
}

/// Entries at one virtual instant beyond which a replay has stopped moving: a client that
/// retries without ever waiting (a livelock) would otherwise run, and grow, for ever.
pub const STALL_LIMIT: u64 = 1_000_000;

/// A shared, optionally bounded journal.
#[derive(Debug, Clone, Default)]
pub struct Journal {
    inner: Arc<Mutex<Inner>>,
    stalled: Arc<tokio::sync::Notify>,
}

impl Journal {
    /// An unbounded journal, for replays.
    pub fn new() -> Journal {
        Journal::default()
    }

    /// A journal that keeps only the last `capacity` entries.
    pub fn bounded(capacity: usize) -> Journal {
        let capacity = capacity.max(1);
        let inner = Inner {
            entries: Store::Ring {
                entries: VecDeque::with_capacity(capacity.min(CHUNK)),
                capacity,
            },
            ..Inner::default()
        };
        Journal {
            inner: Arc::new(Mutex::new(inner)),
            stalled: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends an entry; its `seq` is assigned here.
    pub fn record(&self, mut entry: JournalEntry) {
        let mut inner = self.lock();
        inner.total += 1;
        entry.seq = inner.total;
        let same = match inner.instant {
            Some((at, n)) if at == entry.at => n + 1,
            _ => 1,
        };
        inner.instant = Some((entry.at, same));
        if same == STALL_LIMIT {
            self.stalled.notify_one();
        }
        inner.entries.push(entry);
    }

    /// Forgets every entry; the next is `seq` 1 again (a control API reset).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.total = 0;
        inner.instant = None;
    }

    /// Resolves once [`STALL_LIMIT`] entries were recorded at one instant, with that instant.
    pub async fn stalled(&self) -> DateTime<Utc> {
        self.stalled.notified().await;
        self.lock()
            .instant
            .map_or(DateTime::<Utc>::MIN_UTC, |(at, _)| at)
    }

    /// Calls `f` with the entries held, oldest first, without copying them.
    pub fn with_entries<R>(&self, f: impl FnOnce(Entries<'_>) -> R) -> R {
        f(self.lock().entries.iter())
    }

    /// The entries held, oldest first.
    pub fn entries(&self) -> Vec<JournalEntry> {
        self.lock().entries.iter().cloned().collect()
    }

    /// How many entries were ever recorded.
    pub fn total(&self) -> u64 {
        self.lock().total
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One line per entry, for snapshots and comparisons.
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        for entry in inner.entries.iter() {
            let _ = writeln!(out, "{entry}");
        }
        out
    }
}

/// A rendered journal with the lines of each instant sorted: requests that arrive at one
/// instant are concurrent, and the in-memory and socket wirings may serve them in different
/// orders. Everything else (which lines, at which instants, in which instant order) must match.
pub fn canonical(rendered: &str) -> String {
    let mut out = String::with_capacity(rendered.len());
    let mut group: Vec<&str> = Vec::new();
    let mut flush = |group: &mut Vec<&str>| {
        group.sort_unstable();
        for line in group.drain(..) {
            out.push_str(line);
            out.push('\n');
        }
    };
    for line in rendered.lines() {
        let at = line.split(' ').next().unwrap_or_default();
        if group
            .first()
            .is_some_and(|first| first.split(' ').next().unwrap_or_default() != at)
        {
            flush(&mut group);
        }
        group.push(line);
    }
    flush(&mut group);
    out
}

/// Longest body text kept in a journal entry.
pub const BODY_LIMIT: usize = 2048;

/// Keys whose values are secrets or tokens, in forms and JSON alike.
const SECRET_KEYS: [&str; 7] = [
    "client_secret",
    "client_assertion",
    "access_token",
    "refresh_token",
    "id_token",
    "secretText",
    "password",
];

/// Form keys whose values are secrets too (an authorization code, a PKCE verifier); only in
/// forms, since `code` in JSON is Graph's error code.
const FORM_SECRET_KEYS: [&str; 2] = ["code", "code_verifier"];

/// A body as the journal keeps it: secrets redacted, text shortened, binary summarised.
pub fn redact_body(content_type: Option<&str>, body: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(body) else {
        return format!("<{} bytes, not UTF-8>", body.len());
    };
    let content_type = content_type.unwrap_or("").to_ascii_lowercase();
    // Most bodies carry no secret at all; skip the parse for them (this runs per request).
    let is_form = content_type.starts_with("application/x-www-form-urlencoded");
    let may_hold_secret = SECRET_KEYS.iter().any(|k| text.contains(k))
        || text.contains("eyJ")
        || (is_form && text.contains("code"));
    let redacted = if !may_hold_secret {
        text.to_string()
    } else if is_form {
        redact_form(text)
    } else if let Some(redacted) = redact_compact_json(text) {
        redacted
    } else if let Ok(mut value) = serde_json::from_str::<serde_json::Value>(text) {
        redact_json(&mut value);
        serde_json::to_string(&value).expect("JSON values serialise")
    } else {
        text.to_string()
    };
    shorten(scrub_jwts(&redacted))
}

/// A body cut at [`BODY_KEEP`]: shown only where redaction is certain on a prefix.
fn redact_prefix(content_type: Option<&str>, prefix: &[u8], total: usize) -> String {
    let text = String::from_utf8_lossy(prefix);
    let is_form = content_type.is_some_and(|c| {
        c.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    let shown = if is_form {
        Some(redact_form(&text))
    } else {
        redact_compact_json(&text)
    };
    match shown {
        Some(text) => shorten(scrub_jwts(&text)) + &format!(" ({total} bytes in all)"),
        None => format!("<{total} bytes>"),
    }
}

/// Redacts `"key":"value"` pairs in compact JSON (what the mocks themselves write) without a
/// parse; `None` when a secret key appears in any other shape, so the caller parses instead.
fn redact_compact_json(text: &str) -> Option<String> {
    let mut out = text.to_string();
    for key in SECRET_KEYS {
        let pattern = format!("\"{key}\":\"");
        let mut from = 0;
        while let Some(found) = out[from..].find(&pattern) {
            let value_start = from + found + pattern.len();
            let value_end = string_end(&out[value_start..])? + value_start;
            out.replace_range(value_start..value_end, "[redacted]");
            from = value_start + "[redacted]".len();
        }
        // Any other occurrence (spaces around the colon, a non-string value) needs a parse.
        let quoted = format!("\"{key}\"");
        if out.matches(&quoted).count() != out.matches(&pattern).count() {
            return None;
        }
    }
    Some(out)
}

/// Byte length of a JSON string body up to its closing quote, honouring escapes.
fn string_end(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, byte) in text.bytes().enumerate() {
        match byte {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(i),
            _ => {}
        }
    }
    None
}

fn redact_form(text: &str) -> String {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(text).unwrap_or_default();
    if pairs.is_empty() && !text.is_empty() {
        return text.to_string();
    }
    let pairs: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(k, v)| {
            let v = if SECRET_KEYS.contains(&k.as_str()) || FORM_SECRET_KEYS.contains(&k.as_str()) {
                "[redacted]".to_string()
            } else {
                v
            };
            (k, v)
        })
        .collect();
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// Replaces every secret-bearing value inside a JSON document.
pub fn redact_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if SECRET_KEYS.contains(&key.as_str()) && !child.is_null() {
                    *child = serde_json::Value::String("[redacted]".into());
                } else {
                    redact_json(child);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        _ => {}
    }
}

/// Redacts anything shaped like a JWT: `eyJ`, then base64url, a dot, base64url, a dot and
/// base64url, wherever it stands (a header, a form value, a JSON string under any key).
fn scrub_jwts(text: &str) -> String {
    if !text.contains("eyJ") {
        return text.to_string();
    }
    let bytes = text.as_bytes();
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"eyJ") {
            let mut end = i;
            let mut dots = 0;
            while end < bytes.len() && (is_b64(bytes[end]) || (bytes[end] == b'.' && dots < 2)) {
                if bytes[end] == b'.' {
                    dots += 1;
                }
                end += 1;
            }
            if dots == 2 {
                out.push_str("[redacted]");
                i = end;
                continue;
            }
        }
        let ch = text[i..].chars().next().expect("i is on a char boundary");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn shorten(mut text: String) -> String {
    if text.len() > BODY_LIMIT {
        let total = text.len();
        let mut cut = BODY_LIMIT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(&format!("...({total} bytes)"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_secrets_and_json_tokens_are_redacted() {
        let form = redact_body(
            Some("application/x-www-form-urlencoded"),
            b"client_id=a&client_secret=s3cr3t&scope=x",
        );
        assert_eq!(form, "client_id=a&client_secret=%5Bredacted%5D&scope=x");
        let code = redact_body(
            Some("application/x-www-form-urlencoded"),
            b"grant_type=authorization_code&code=1.AQabc&code_verifier=v3r&redirect_uri=x",
        );
        assert_eq!(
            code,
            "grant_type=authorization_code&code=%5Bredacted%5D&code_verifier=%5Bredacted%5D&redirect_uri=x"
        );
        let graph_error = redact_body(Some("application/json"), br#"{"error":{"code":"X"}}"#);
        assert_eq!(graph_error, r#"{"error":{"code":"X"}}"#);
        let json = redact_body(
            Some("application/json"),
            br#"{"token_type":"Bearer","access_token":"eyJ.a.b"}"#,
        );
        assert_eq!(
            json,
            r#"{"token_type":"Bearer","access_token":"[redacted]"}"#
        );
        assert_eq!(redact_body(None, b"user eyJhbGc.x.y"), "user [redacted]");
        assert_eq!(
            redact_body(None, br#"{"t":"eyJa.b.c"}"#),
            r#"{"t":"[redacted]"}"#
        );
        assert_eq!(redact_body(None, "é eyJ no".as_bytes()), "é eyJ no");
        let spaced = redact_body(None, br#"{"access_token" : "abc", "n": 1}"#);
        assert_eq!(spaced, r#"{"access_token":"[redacted]","n":1}"#);
        let escaped = redact_body(None, br#"{"secretText":"a\"b","x":"y"}"#);
        assert_eq!(escaped, r#"{"secretText":"[redacted]","x":"y"}"#);
    }

    #[test]
    fn a_million_entries_at_one_instant_mean_the_replay_stopped_moving() {
        let journal = Journal::bounded(4);
        let at = DateTime::<Utc>::from_timestamp(1_739_532_600, 0).unwrap();
        let entry = JournalEntry {
            seq: 0,
            at,
            mock: MockName::Graph,
            operation: "delta",
            user: None,
            request: "GET /delta".into(),
            request_body: Body::default(),
            delivery: "respond".into(),
            status: Some(410),
            response_body: Body::default(),
            fault: None,
            facts: Facts::default(),
        };
        for _ in 0..STALL_LIMIT {
            journal.record(entry.clone());
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(runtime.block_on(journal.stalled()), at);
    }

    #[test]
    fn canonical_form_sorts_within_an_instant_only() {
        let rendered = "t1 b\nt1 a\nt2 z\nt3 y\nt3 x\n";
        assert_eq!(canonical(rendered), "t1 a\nt1 b\nt2 z\nt3 x\nt3 y\n");
        // Order across instants is kept, so a reordering across instants still differs.
        assert_ne!(canonical("t2 z\nt1 a\n"), canonical("t1 a\nt2 z\n"));
    }

    #[test]
    fn bounded_journal_keeps_the_newest_entries() {
        let journal = Journal::bounded(2);
        for i in 0..5 {
            journal.record(JournalEntry {
                seq: 0,
                at: DateTime::<Utc>::from_timestamp(i, 0).unwrap(),
                mock: MockName::Entra,
                operation: "token",
                user: None,
                request: "POST /t".into(),
                request_body: Body::default(),
                delivery: "respond".into(),
                status: Some(200),
                response_body: Body::text("{\"access_token\":\"eyJ.a.b\"}"),
                fault: None,
                facts: Facts::default(),
            });
        }
        assert_eq!(journal.total(), 5);
        let shown = format!("{} {:?}", journal.render(), journal.entries());
        assert!(!shown.contains("eyJ.a.b"), "{shown}");
        let seqs: Vec<u64> = journal.entries().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [4, 5]);
    }
}
