//! Mailboxes: mail sent through Graph or SMTP, and an inbox that delta sync pages through.
//!
//! Delta links are opaque to clients, as Graph's are; inside they carry the sync epoch, the
//! sequence range and the issue instant, so a token that is too old or from before a reset
//! gets `410 SyncStateNotFound`.

use std::collections::VecDeque;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use chrono::{DateTime, Utc};

/// How a scenario or `serve` describes a mailbox.
#[derive(Debug, Clone)]
pub struct MailboxSpec {
    /// The user's object id.
    pub id: String,
    /// The user principal name, also the SMTP address.
    pub upn: String,
    /// `displayName`.
    pub display_name: String,
}

/// Which mock accepted a sent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SentVia {
    /// Graph `sendMail`.
    Graph,
    /// SMTP submission.
    Smtp,
}

/// A message the mailbox sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct SentMessage {
    /// Which mock accepted it.
    pub via: SentVia,
    /// When it reached the mailbox (virtual time): later than `accepted_at` when Exchange
    /// Online's rate limit holds an SMTP submission back.
    pub at: DateTime<Utc>,
    /// When the server accepted it: the instant of its success reply.
    pub accepted_at: DateTime<Utc>,
    /// The `Message-ID` (or Graph `internetMessageId`), when the client set one.
    pub message_id: Option<String>,
    /// The idempotency key header (`X-Maildrill-Idempotency-Key`), when the client set one.
    pub idempotency_key: Option<String>,
    /// Envelope or JSON sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Subject.
    pub subject: String,
    /// The message as received (JSON or MIME), kept for assertions.
    #[serde(skip)]
    pub raw: Bytes,
}

/// A message in the inbox, as delta sync returns it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InboxMessage {
    /// Position in arrival order, starting at 1.
    pub seq: u64,
    /// Graph message id.
    pub id: String,
    /// `receivedDateTime`.
    pub received_at: DateTime<Utc>,
    /// `internetMessageId`.
    pub internet_message_id: String,
    /// Sender address.
    pub from: String,
    /// Subject.
    pub subject: String,
}

/// A mailbox.
#[derive(Debug, Clone)]
pub struct Mailbox {
    /// The user's object id.
    pub id: String,
    /// The user principal name.
    pub upn: String,
    /// `displayName`.
    pub display_name: String,
    sent: VecDeque<SentMessage>,
    sent_total: u64,
    sent_capacity: usize,
    inbox: Vec<InboxMessage>,
    sync_epoch: u64,
}

/// One page of a delta round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaPage {
    /// The messages on this page.
    pub messages: Vec<InboxMessage>,
    /// The opaque `$skiptoken` of the next page, if the round goes on.
    pub skip_token: Option<String>,
    /// The opaque `$deltatoken` that ends the round.
    pub delta_token: Option<String>,
}

/// Why a delta request cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    /// The token is not one this mailbox issued.
    #[error("delta token is malformed")]
    Malformed,
    /// The token is too old or predates a sync reset: the client must resync.
    #[error("sync state not found")]
    SyncStateNotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    epoch: u64,
    after: u64,
    upto: u64,
    issued: i64,
}

impl Mailbox {
    pub(crate) fn new(spec: &MailboxSpec, sent_capacity: usize) -> Mailbox {
        Mailbox {
            id: spec.id.clone(),
            upn: spec.upn.clone(),
            display_name: spec.display_name.clone(),
            sent: VecDeque::new(),
            sent_total: 0,
            sent_capacity,
            inbox: Vec::new(),
            sync_epoch: 1,
        }
    }

    /// Stores a sent message, dropping the oldest when over capacity (serve runs for days).
    pub fn record_sent(&mut self, message: SentMessage) {
        if self.sent.len() == self.sent_capacity {
            self.sent.pop_front();
        }
        self.sent.push_back(message);
        self.sent_total += 1;
    }

    /// The sent messages still held, oldest first.
    pub fn sent(&self) -> impl ExactSizeIterator<Item = &SentMessage> {
        self.sent.iter()
    }

    /// How many messages were ever sent, including those dropped from the bounded store.
    pub fn sent_total(&self) -> u64 {
        self.sent_total
    }

    /// The inbox in arrival order.
    pub fn inbox(&self) -> &[InboxMessage] {
        &self.inbox
    }

    /// Delivers a message to the inbox; ids come from the caller so they stay seeded.
    pub fn deliver(
        &mut self,
        id: String,
        at: DateTime<Utc>,
        from: &str,
        subject: &str,
    ) -> &InboxMessage {
        let seq = self.inbox.len() as u64 + 1;
        let internet_message_id = format!("<inbound-{seq}@{}>", domain_of(from));
        self.inbox.push(InboxMessage {
            seq,
            id,
            received_at: at,
            internet_message_id,
            from: from.to_string(),
            subject: subject.to_string(),
        });
        self.inbox.last().expect("just pushed")
    }

    /// Invalidates every delta and skip token issued so far, as Exchange does when its delta
    /// token cache evicts them.
    pub fn reset_sync_state(&mut self) {
        self.sync_epoch += 1;
    }

    /// Serves one delta page.
    ///
    /// `token` is `None` for the first request of an initial round, otherwise the opaque
    /// `$skiptoken` or `$deltatoken` value. Tokens older than `max_age` are refused.
    pub fn delta(
        &self,
        token: Option<&str>,
        page_size: usize,
        now: DateTime<Utc>,
        max_age: std::time::Duration,
    ) -> Result<DeltaPage, DeltaError> {
        let high = self.inbox.len() as u64;
        let (after, upto) = match token {
            None => (0, high),
            Some(token) => {
                let cursor = decode(token).ok_or(DeltaError::Malformed)?;
                let age = now.timestamp().saturating_sub(cursor.issued);
                if cursor.epoch != self.sync_epoch || age > max_age.as_secs() as i64 {
                    return Err(DeltaError::SyncStateNotFound);
                }
                if cursor.upto == u64::MAX {
                    (cursor.after, high)
                } else {
                    (cursor.after, cursor.upto.min(high))
                }
            }
        };
        let page_size = page_size.max(1);
        // Message `seq` is at index `seq - 1`: the page is a slice, not a scan.
        let from = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(self.inbox.len());
        let to = usize::try_from(upto)
            .unwrap_or(usize::MAX)
            .min(self.inbox.len());
        let messages: Vec<InboxMessage> = self.inbox[from..to.max(from)]
            .iter()
            .take(page_size)
            .cloned()
            .collect();
        let last = messages.last().map_or(after, |m| m.seq);
        let issued = now.timestamp();
        let epoch = self.sync_epoch;
        if last < upto {
            let skip = Cursor {
                epoch,
                after: last,
                upto,
                issued,
            };
            Ok(DeltaPage {
                messages,
                skip_token: Some(encode(skip)),
                delta_token: None,
            })
        } else {
            let delta = Cursor {
                epoch,
                after: upto,
                upto: u64::MAX,
                issued,
            };
            Ok(DeltaPage {
                messages,
                skip_token: None,
                delta_token: Some(encode(delta)),
            })
        }
    }
}

fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("example.com", |(_, d)| d)
}

fn encode(cursor: Cursor) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(64);
    let _ = write!(text, "md1.{}.{}.", cursor.epoch, cursor.after);
    if cursor.upto == u64::MAX {
        text.push('-');
    } else {
        let _ = write!(text, "{}", cursor.upto);
    }
    let _ = write!(text, ".{}", cursor.issued);
    URL_SAFE_NO_PAD.encode(text)
}

fn decode(token: &str) -> Option<Cursor> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let mut parts = text.split('.');
    if parts.next()? != "md1" {
        return None;
    }
    let epoch = parts.next()?.parse().ok()?;
    let after = parts.next()?.parse().ok()?;
    let upto = match parts.next()? {
        "-" => u64::MAX,
        n => n.parse().ok()?,
    };
    let issued = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(Cursor {
        epoch,
        after,
        upto,
        issued,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn mailbox_with(n: u64) -> Mailbox {
        let spec = MailboxSpec {
            id: "u1".into(),
            upn: "a@x".into(),
            display_name: "A".into(),
        };
        let mut mailbox = Mailbox::new(&spec, 10);
        let at: DateTime<Utc> = "2025-02-14T00:00:00Z".parse().unwrap();
        for i in 0..n {
            mailbox.deliver(format!("m{i}"), at, "b@y", "hi");
        }
        mailbox
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn delta_pages_then_returns_only_new_messages() {
        let mut mailbox = mailbox_with(5);
        let now: DateTime<Utc> = "2025-02-14T01:00:00Z".parse().unwrap();
        let first = mailbox.delta(None, 2, now, DAY).unwrap();
        assert_eq!(first.messages.len(), 2);
        let second = mailbox
            .delta(first.skip_token.as_deref(), 2, now, DAY)
            .unwrap();
        let third = mailbox
            .delta(second.skip_token.as_deref(), 2, now, DAY)
            .unwrap();
        assert_eq!(third.messages.len(), 1);
        let delta = third.delta_token.unwrap();
        assert!(
            mailbox
                .delta(Some(&delta), 2, now, DAY)
                .unwrap()
                .messages
                .is_empty()
        );
        mailbox.deliver("m5".into(), now, "c@z", "new");
        let next = mailbox.delta(Some(&delta), 2, now, DAY).unwrap();
        assert_eq!(next.messages[0].id, "m5");
    }

    #[test]
    fn old_or_reset_tokens_are_sync_state_not_found() {
        let mut mailbox = mailbox_with(1);
        let now: DateTime<Utc> = "2025-02-14T01:00:00Z".parse().unwrap();
        let delta = mailbox
            .delta(None, 10, now, DAY)
            .unwrap()
            .delta_token
            .unwrap();
        let later = now + chrono::TimeDelta::days(2);
        assert_eq!(
            mailbox.delta(Some(&delta), 10, later, DAY),
            Err(DeltaError::SyncStateNotFound)
        );
        mailbox.reset_sync_state();
        assert_eq!(
            mailbox.delta(Some(&delta), 10, now, DAY),
            Err(DeltaError::SyncStateNotFound)
        );
        assert_eq!(
            mailbox.delta(Some("garbage"), 10, now, DAY),
            Err(DeltaError::Malformed)
        );
    }
}
