//! The evidence a test reads while its client runs: the journal (filtered, paginated), the
//! mail each mailbox sent through the mocks, and the events the alert sink received.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Answer, Problem, json};
use crate::fault::FaultName;
use crate::journal::{Journal, JournalEntry, MockName, redact_json};
use crate::tenant::{Directory, SentMessage, SharedDirectory};

/// The journal's query parameters; every one optional.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JournalQuery {
    /// Only this mock.
    pub target: Option<MockName>,
    /// Only this operation (`token`, `send-mail`, `delta`, `end-of-data`, ...).
    pub operation: Option<String>,
    /// Only requests a fault of this kind shaped.
    pub fault: Option<FaultName>,
    /// Only requests at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Only requests before this instant.
    pub until: Option<DateTime<Utc>>,
    /// Only entries after this `seq` (the previous page's `next_after`).
    pub after: Option<u64>,
    /// Entries per page (default 100, at most 1000).
    #[schemars(range(min = 1, max = PAGE_MAX))]
    pub limit: Option<usize>,
}

/// A page of the journal.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct JournalPage {
    /// Matching entries, oldest first.
    pub entries: Vec<JournalEntry>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
    /// Requests journaled since the start (or the last reset).
    pub total: u64,
    /// Entries the journal still holds: it keeps the newest (`serve --journal-capacity`).
    pub kept: usize,
}

const PAGE: usize = 100;
const PAGE_MAX: usize = 1000;

fn query(text: Option<&str>) -> Result<JournalQuery, Problem> {
    let parse = form_urlencoded::parse(text.unwrap_or("").as_bytes());
    serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(parse)).map_err(|e| {
        let field = e.path().to_string();
        let message = e.inner().to_string();
        let valid: Vec<String> = message
            .split_once("expected one of ")
            .map(|(_, rest)| {
                rest.split(',')
                    .filter_map(|w| w.trim().split('`').nth(1))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let field = if field == "." {
            "query".to_string()
        } else {
            field
        };
        Problem::invalid(field, message).with_valid(valid)
    })
}

fn keeps(q: &JournalQuery, e: &JournalEntry) -> bool {
    q.after.is_none_or(|after| e.seq > after)
        && q.target.is_none_or(|t| e.mock == t)
        && q.operation.as_deref().is_none_or(|op| e.operation == op)
        && q.from.is_none_or(|from| e.at >= from)
        && q.until.is_none_or(|until| e.at < until)
        && q.fault.is_none_or(|kind| {
            // The journal names a fault as its kind, then its parameters.
            let name = serde_json::to_value(kind).ok();
            let name = name.as_ref().and_then(Value::as_str).unwrap_or("");
            e.fault
                .as_deref()
                .is_some_and(|f| f.split(' ').next() == Some(name))
        })
}

pub(super) fn journal(journal: &Journal, text: Option<&str>) -> Answer {
    let q = query(text)?;
    let limit = match q.limit {
        Some(0) => return Err(Problem::invalid("limit", "a page holds at least one entry")),
        Some(n) if n > PAGE_MAX => {
            return Err(Problem::invalid(
                "limit",
                format!("a page holds at most {PAGE_MAX} entries"),
            ));
        }
        Some(n) => n,
        None => PAGE,
    };
    let (entries, more) = journal.with_entries(|all| {
        let mut matching = all.filter(|e| keeps(&q, e));
        let page: Vec<JournalEntry> = matching.by_ref().take(limit).cloned().collect();
        (page, matching.next().is_some())
    });
    let next_after = more.then(|| entries.last().map(|e| e.seq)).flatten();
    Ok(json(
        200,
        &JournalPage {
            entries,
            next_after,
            total: journal.total(),
            kept: journal.len(),
        },
    ))
}

/// The mail a mailbox sent.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MessagesView {
    /// The mailbox's user principal name.
    pub mailbox: String,
    /// What the mocks accepted from it (over SMTP or Graph), oldest first.
    pub messages: Vec<SentMessage>,
}

pub(super) fn messages(directory: &SharedDirectory, upn: &str) -> Answer {
    let directory = Directory::lock(directory);
    let mailbox = directory
        .tenants()
        .iter()
        .flat_map(|t| &t.mailboxes)
        .find(|m| m.upn.eq_ignore_ascii_case(upn))
        .ok_or_else(|| {
            Problem::not_found(Some("upn"), format!("no mailbox `{upn}` in the tenant"))
        })?;
    Ok(json(
        200,
        &MessagesView {
            mailbox: mailbox.upn.clone(),
            messages: mailbox.sent().cloned().collect(),
        },
    ))
}

/// An event the alert sink received.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AlertView {
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// The sink's answer (`202` accepted; absent when a fault gave none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `event_action`: `trigger`, `acknowledge` or `resolve`.
    pub action: Option<String>,
    /// `dedup_key`.
    pub dedup_key: Option<String>,
    /// `payload.custom_details.kind`, how maildrill's checks read an alert's kind.
    pub kind: Option<String>,
    /// `payload.summary`.
    pub summary: Option<String>,
    /// The whole event, secrets redacted.
    pub event: Value,
}

/// The events the alert sink received.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AlertsView {
    /// Oldest first (those the journal still holds).
    pub alerts: Vec<AlertView>,
}

pub(super) fn alerts(journal: &Journal) -> AlertsView {
    let alerts = journal.with_entries(|entries| {
        entries
            .filter(|e| e.mock == MockName::Alerts && e.operation == "enqueue")
            .map(|e| {
                let mut event =
                    serde_json::from_slice::<Value>(e.request_body.raw()).unwrap_or(Value::Null);
                redact_json(&mut event);
                let text = |pointer: &str| {
                    event
                        .pointer(pointer)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                AlertView {
                    at: e.at,
                    status: e.status,
                    action: text("/event_action"),
                    dedup_key: text("/dedup_key"),
                    kind: text("/payload/custom_details/kind"),
                    summary: text("/payload/summary"),
                    event: event.clone(),
                }
            })
            .collect()
    });
    AlertsView { alerts }
}
