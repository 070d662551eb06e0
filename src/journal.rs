//! The journal: every request a mock served and what it answered, on the virtual clock, with
//! secrets and tokens redacted.
//!
//! Checks query it, snapshots print it, and the wiring-equivalence test compares the journals
//! of the in-memory and socket wirings line by line. It can be bounded (a ring) so that
//! `maildrill serve` keeps flat memory under load.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Which mock served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalEntry {
    /// Position in the journal, from 1, counting entries dropped from a bounded journal.
    pub seq: u64,
    /// Virtual time the request arrived.
    #[serde(serialize_with = "serialize_rfc3339")]
    pub at: DateTime<Utc>,
    /// The mock that served it.
    pub mock: MockName,
    /// The operation, e.g. `token`, `send-mail`, `delta`.
    pub operation: String,
    /// `METHOD path?query`.
    pub request: String,
    /// The request body, redacted and shortened.
    pub request_body: String,
    /// How the reply went out: `respond`, `respond after 30s`, `reset`, `hang`, `truncate 10`.
    pub delivery: String,
    /// The status, when a response head was sent.
    pub status: Option<u16>,
    /// The response body, redacted and shortened.
    pub response_body: String,
    /// The fault that shaped the reply, if any.
    pub fault: Option<String>,
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

#[derive(Debug, Default)]
struct Inner {
    entries: VecDeque<JournalEntry>,
    total: u64,
    capacity: Option<usize>,
}

/// A shared, optionally bounded journal.
#[derive(Debug, Clone, Default)]
pub struct Journal {
    inner: Arc<Mutex<Inner>>,
}

impl Journal {
    /// An unbounded journal, for replays.
    pub fn new() -> Journal {
        Journal::default()
    }

    /// A journal that keeps only the last `capacity` entries.
    pub fn bounded(capacity: usize) -> Journal {
        let inner = Inner {
            capacity: Some(capacity.max(1)),
            ..Inner::default()
        };
        Journal {
            inner: Arc::new(Mutex::new(inner)),
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
        if inner.capacity.is_some_and(|c| inner.entries.len() >= c) {
            inner.entries.pop_front();
        }
        inner.entries.push_back(entry);
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
        for entry in &inner.entries {
            out.push_str(&entry.to_string());
            out.push('\n');
        }
        out
    }
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

/// A body as the journal keeps it: secrets redacted, text shortened, binary summarised.
pub fn redact_body(content_type: Option<&str>, body: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(body) else {
        return format!("<{} bytes, not UTF-8>", body.len());
    };
    let content_type = content_type.unwrap_or("").to_ascii_lowercase();
    let redacted = if content_type.starts_with("application/x-www-form-urlencoded") {
        redact_form(text)
    } else if let Ok(mut value) = serde_json::from_str::<serde_json::Value>(text) {
        redact_json(&mut value);
        serde_json::to_string(&value).expect("JSON values serialise")
    } else {
        redact_bearer_like(text)
    };
    shorten(redacted)
}

fn redact_form(text: &str) -> String {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(text).unwrap_or_default();
    if pairs.is_empty() && !text.is_empty() {
        return redact_bearer_like(text);
    }
    let pairs: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(k, v)| {
            let v = if SECRET_KEYS.contains(&k.as_str()) {
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

/// Redacts anything shaped like a JWT (three dot-separated base64url parts starting `eyJ`).
fn redact_bearer_like(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.starts_with("eyJ") && word.matches('.').count() >= 2 {
                "[redacted]"
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
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
        let json = redact_body(
            Some("application/json"),
            br#"{"token_type":"Bearer","access_token":"eyJ.a.b"}"#,
        );
        assert_eq!(
            json,
            r#"{"token_type":"Bearer","access_token":"[redacted]"}"#
        );
        assert_eq!(redact_body(None, b"user eyJhbGc.x.y"), "user [redacted]");
    }

    #[test]
    fn bounded_journal_keeps_the_newest_entries() {
        let journal = Journal::bounded(2);
        for i in 0..5 {
            journal.record(JournalEntry {
                seq: 0,
                at: DateTime::<Utc>::from_timestamp(i, 0).unwrap(),
                mock: MockName::Entra,
                operation: "token".into(),
                request: "POST /t".into(),
                request_body: String::new(),
                delivery: "respond".into(),
                status: Some(200),
                response_body: String::new(),
                fault: None,
            });
        }
        assert_eq!(journal.total(), 5);
        let seqs: Vec<u64> = journal.entries().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [4, 5]);
    }
}
