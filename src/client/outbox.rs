//! The outbox: a durable queue of outgoing mail in SQLite (WAL mode).
//!
//! States: `queued` (waiting for its next attempt), `sending` (an attempt is in flight),
//! `delivered`, `failed` (permanently, with the reason) and `unknown` (sent, but no reply ever
//! came: the outcome cannot be known). A Message-ID and an idempotency key are fixed at
//! enqueue, so every retry of a message carries the same ones. Times are the client's calendar
//! clock, passed in: the outbox never reads a clock itself.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension as _, params};

use crate::seed::SeedRng;

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// Waiting for its next attempt.
    Queued,
    /// An attempt is in flight.
    Sending,
    /// Accepted by the server.
    Delivered,
    /// Refused for good.
    Failed,
    /// Sent, but no reply came.
    Unknown,
}

impl State {
    /// The name stored in the database and shown in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Sending => "sending",
            State::Delivered => "delivered",
            State::Failed => "failed",
            State::Unknown => "unknown",
        }
    }

    fn parse(text: &str) -> State {
        match text {
            "sending" => State::Sending,
            "delivered" => State::Delivered,
            "failed" => State::Failed,
            "unknown" => State::Unknown,
            _ => State::Queued,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Envelope sender (the mailbox).
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// The `Message-ID` to send it under (a caller that tracks its mail by id, such as the
    /// harness, chooses it); `None` for one the outbox makes up.
    pub message_id: Option<String>,
}

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Row id.
    pub id: i64,
    /// `Message-ID`, fixed at enqueue.
    pub message_id: String,
    /// Idempotency key, fixed at enqueue.
    pub idempotency_key: String,
    /// Envelope sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Body.
    pub body: String,
    /// Where it stands.
    pub state: State,
    /// Attempts so far.
    pub attempts: u32,
    /// When it was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// When it may next be tried.
    pub next_attempt_at: DateTime<Utc>,
    /// Why it failed, for `failed`.
    pub reason: Option<String>,
}

/// The database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// SQLite refused an operation.
    #[error("failed to use the outbox database")]
    Sqlite(#[from] rusqlite::Error),
    /// The file holds an outbox of another layout (an older maildrill's).
    #[error(
        "the outbox database has schema version {found}; this client reads version {SCHEMA_VERSION} (move the old file aside)"
    )]
    Schema {
        /// The file's `user_version`.
        found: i64,
    },
}

/// The layout's version, kept in SQLite's `user_version`: 2 stores times as integer
/// microseconds (version 1 stored RFC 3339 text, which compares wrongly with integers).
const SCHEMA_VERSION: i64 = 2;

/// The durable queue. A view of one sender's mail ([`Outbox::for_sender`]) shares the
/// database with the whole queue: a delegated client's worker per user claims that user's mail
/// only, so one user's held mail never blocks another's.
#[derive(Debug)]
pub struct Outbox {
    conn: Arc<Mutex<Connection>>,
    sender: Option<String>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    idempotency_key TEXT NOT NULL UNIQUE,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'delivered', 'failed', 'unknown')),
    attempts INTEGER NOT NULL DEFAULT 0,
    enqueued_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    delivered_at INTEGER,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS due ON messages (next_attempt_at, id) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS waiting ON messages (enqueued_at) WHERE state IN ('queued', 'sending');
CREATE INDEX IF NOT EXISTS delivered ON messages (delivered_at) WHERE state = 'delivered';
CREATE INDEX IF NOT EXISTS due_by_sender ON messages (sender, next_attempt_at, id) WHERE state = 'queued';
CREATE TABLE IF NOT EXISTS credential_hold (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    secret TEXT NOT NULL,
    code INTEGER,
    until INTEGER NOT NULL,
    refusals INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS connections (
    upn TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('connected', 'needs-user')),
    reason TEXT,
    connected_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
";

/// Times are stored as microseconds since the Unix epoch: integer order is time order in the
/// indexes, and nothing is formatted or parsed on every claim and update.
pub(super) fn time(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(super) fn parse_time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl Outbox {
    /// Opens (or creates) the outbox at `path`, in WAL mode.
    pub fn open(path: &Path) -> Result<Outbox, OutboxError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let fresh: bool = conn.query_row(
            "SELECT NOT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'messages')",
            [],
            |r| r.get(0),
        )?;
        if !fresh && found != SCHEMA_VERSION {
            return Err(OutboxError::Schema { found });
        }
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Outbox {
            conn: Arc::new(Mutex::new(conn)),
            sender: None,
        })
    }

    /// The same database, seen as the mail of `sender` only: claims, the next due instant and
    /// the depth count that sender's messages.
    pub fn for_sender(&self, sender: &str) -> Outbox {
        Outbox {
            conn: self.conn.clone(),
            sender: Some(sender.to_string()),
        }
    }

    /// An outbox in memory (benchmarks of the sending path; not durable).
    pub fn in_memory() -> Result<Outbox, OutboxError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        Ok(Outbox {
            conn: Arc::new(Mutex::new(conn)),
            sender: None,
        })
    }

    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enqueues a message, fixing its Message-ID and idempotency key.
    pub fn enqueue(
        &self,
        message: &NewMessage,
        now: DateTime<Utc>,
        ids: &mut SeedRng,
    ) -> Result<Message, OutboxError> {
        let key = ids.guid();
        let domain = message
            .from
            .rsplit_once('@')
            .map_or("maildrill.invalid", |(_, d)| d);
        let message_id = message
            .message_id
            .clone()
            .unwrap_or_else(|| format!("<{key}@{domain}>"));
        let recipients = serde_json::to_string(&message.to).expect("strings serialise");
        let conn = self.conn();
        conn.prepare_cached("INSERT INTO messages (message_id, idempotency_key, sender, recipients, subject, body, state, enqueued_at, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7, ?7)")?.execute(
            params![message_id, key, message.from, recipients, message.subject, message.body, time(now)],
        )?;
        // As the row reads back: times at the database's microsecond precision.
        let at = parse_time(time(now));
        Ok(Message {
            id: conn.last_insert_rowid(),
            message_id,
            idempotency_key: key,
            from: message.from.clone(),
            to: message.to.clone(),
            subject: message.subject.clone(),
            body: message.body.clone(),
            state: State::Queued,
            attempts: 0,
            enqueued_at: at,
            next_attempt_at: at,
            reason: None,
        })
    }

    /// A message by row id.
    pub fn get(&self, id: i64) -> Result<Option<Message>, OutboxError> {
        let conn = self.conn();
        let mut statement =
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM messages WHERE id = ?1"))?;
        Ok(statement.query_row(params![id], row).optional()?)
    }

    /// The next message due at `now`, marked `sending` (one attempt more).
    pub fn claim_due(&self, now: DateTime<Utc>) -> Result<Option<Message>, OutboxError> {
        // One statement, so one implicit transaction: the claim is atomic without BEGIN and
        // COMMIT around a SELECT and an UPDATE, and an empty queue costs one index probe.
        let conn = self.conn();
        let found = match &self.sender {
            None => conn
                .prepare_cached(&format!(
                    "UPDATE messages SET state = 'sending', attempts = attempts + 1 WHERE id = (
                     SELECT id FROM messages WHERE state = 'queued' AND next_attempt_at <= ?1
                     ORDER BY next_attempt_at, id LIMIT 1)
                 RETURNING {COLUMNS}"
                ))?
                .query_row(params![time(now)], row)
                .optional()?,
            Some(sender) => conn
                .prepare_cached(&format!(
                    "UPDATE messages SET state = 'sending', attempts = attempts + 1 WHERE id = (
                     SELECT id FROM messages WHERE state = 'queued' AND sender = ?2
                     AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT 1)
                 RETURNING {COLUMNS}"
                ))?
                .query_row(params![time(now), sender], row)
                .optional()?,
        };
        Ok(found)
    }

    /// When the next queued message becomes due, if any is queued.
    pub fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, OutboxError> {
        let conn = self.conn();
        let at: Option<i64> = match &self.sender {
            None => conn
                .prepare_cached("SELECT MIN(next_attempt_at) FROM messages WHERE state = 'queued'")?
                .query_row([], |r| r.get(0))?,
            Some(sender) => conn
                .prepare_cached(
                    "SELECT MIN(next_attempt_at) FROM messages WHERE state = 'queued' AND sender = ?1",
                )?
                .query_row(params![sender], |r| r.get(0))?,
        };
        Ok(at.map(parse_time))
    }

    /// The server accepted it.
    pub fn delivered(&self, id: i64, now: DateTime<Utc>) -> Result<(), OutboxError> {
        self.conn().prepare_cached("UPDATE messages SET state = 'delivered', delivered_at = ?2, reason = NULL WHERE id = ?1")?.execute(
            params![id, time(now)],
        )?;
        Ok(())
    }

    /// Try again at `at`; `reason` notes why (auth failures land here, never in `failed`).
    pub fn retry(&self, id: i64, at: DateTime<Utc>, reason: &str) -> Result<(), OutboxError> {
        self.conn().prepare_cached("UPDATE messages SET state = 'queued', next_attempt_at = ?2, reason = ?3 WHERE id = ?1")?.execute(
            params![id, time(at), reason],
        )?;
        Ok(())
    }

    /// Refused for good.
    pub fn failed(&self, id: i64, reason: &str) -> Result<(), OutboxError> {
        self.conn()
            .prepare_cached("UPDATE messages SET state = 'failed', reason = ?2 WHERE id = ?1")?
            .execute(params![id, reason])?;
        Ok(())
    }

    /// Sent, but no reply came.
    pub fn unknown(&self, id: i64, reason: &str) -> Result<(), OutboxError> {
        self.conn()
            .prepare_cached("UPDATE messages SET state = 'unknown', reason = ?2 WHERE id = ?1")?
            .execute(params![id, reason])?;
        Ok(())
    }

    /// After a restart: messages caught `sending` go back to the queue (due now), so nothing is
    /// lost; they keep their Message-ID and idempotency key. Returns how many.
    pub fn recover(&self, now: DateTime<Utc>) -> Result<usize, OutboxError> {
        let changed = self.conn().prepare_cached("UPDATE messages SET state = 'queued', next_attempt_at = ?1, reason = 'interrupted by a restart' WHERE state = 'sending'")?.execute(
            params![time(now)],
        )?;
        Ok(changed)
    }

    /// How many messages are in each state.
    pub fn counts(&self) -> Result<Vec<(State, u64)>, OutboxError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare_cached("SELECT state, COUNT(*) FROM messages GROUP BY state ORDER BY state")?;
        let rows = statement.query_map([], |r| {
            Ok((State::parse(&r.get::<_, String>(0)?), r.get::<_, u64>(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Queued and in-flight messages.
    pub fn depth(&self) -> Result<u64, OutboxError> {
        let conn = self.conn();
        Ok(match &self.sender {
            None => conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM messages WHERE state IN ('queued', 'sending')",
                )?
                .query_row([], |r| r.get(0))?,
            Some(sender) => conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM messages WHERE state IN ('queued', 'sending') AND sender = ?1",
                )?
                .query_row(params![sender], |r| r.get(0))?,
        })
    }

    /// When the oldest message still waiting was enqueued. Mail held for a user who must
    /// reconnect is not waiting on the client: it does not count as a stall.
    pub fn oldest_waiting(&self) -> Result<Option<DateTime<Utc>>, OutboxError> {
        let conn = self.conn();
        let at: Option<i64> = conn
            .prepare_cached(
                "SELECT MIN(enqueued_at) FROM messages WHERE state IN ('queued', 'sending')
                 AND sender NOT IN (SELECT upn FROM connections WHERE status = 'needs-user')",
            )?
            .query_row([], |r| r.get(0))?;
        Ok(at.map(parse_time))
    }
}

/// A message's life in brief, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Row id.
    pub id: i64,
    /// Where it stands.
    pub state: State,
    /// When it was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Its idempotency key.
    pub idempotency_key: String,
}

impl Outbox {
    /// Every message in brief, in enqueue order.
    pub fn summaries(&self) -> Result<Vec<Summary>, OutboxError> {
        let conn = self.conn();
        let mut statement =
            conn.prepare_cached("SELECT id, state, enqueued_at, delivered_at, idempotency_key FROM messages ORDER BY id")?;
        let rows = statement.query_map([], |r| {
            Ok(Summary {
                id: r.get(0)?,
                state: State::parse(&r.get::<_, String>(1)?),
                enqueued_at: parse_time(r.get::<_, i64>(2)?),
                delivered_at: r.get::<_, Option<i64>>(3)?.map(parse_time),
                idempotency_key: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Enqueue-to-delivery latencies of messages delivered at or after `since`.
    pub fn latencies_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<std::time::Duration>, OutboxError> {
        let conn = self.conn();
        let mut statement = conn.prepare_cached(
            "SELECT enqueued_at, delivered_at FROM messages WHERE state = 'delivered' AND delivered_at >= ?1",
        )?;
        let rows = statement.query_map(params![time(since)], |r| {
            Ok((
                parse_time(r.get::<_, i64>(0)?),
                parse_time(r.get::<_, i64>(1)?),
            ))
        })?;
        let mut latencies = Vec::new();
        for row in rows {
            let (enqueued, delivered) = row?;
            latencies.push((delivered - enqueued).to_std().unwrap_or_default());
        }
        Ok(latencies)
    }
}

const COLUMNS: &str = "id, message_id, idempotency_key, sender, recipients, subject, body, state, attempts, enqueued_at, next_attempt_at, reason";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let recipients: String = r.get(4)?;
    Ok(Message {
        id: r.get(0)?,
        message_id: r.get(1)?,
        idempotency_key: r.get(2)?,
        from: r.get(3)?,
        to: serde_json::from_str(&recipients).unwrap_or_default(),
        subject: r.get(5)?,
        body: r.get(6)?,
        state: State::parse(&r.get::<_, String>(7)?),
        attempts: r.get(8)?,
        enqueued_at: parse_time(r.get::<_, i64>(9)?),
        next_attempt_at: parse_time(r.get::<_, i64>(10)?),
        reason: r.get(11)?,
    })
}

/// The outbox database keeps the token provider's hold on a refused credential, so a restarted
/// process does not probe Entra afresh.
impl super::token::HoldStore for Outbox {
    fn load(&self) -> Option<super::token::StoredHold> {
        let conn = self.conn();
        conn.prepare_cached("SELECT secret, code, until, refusals FROM credential_hold")
            .and_then(|mut s| {
                s.query_row([], |r| {
                    Ok(super::token::StoredHold {
                        secret: r.get(0)?,
                        code: r.get(1)?,
                        until: parse_time(r.get::<_, i64>(2)?),
                        refusals: r.get(3)?,
                    })
                })
                .optional()
            })
            .ok()
            .flatten()
    }

    fn save(&self, hold: Option<&super::token::StoredHold>) {
        let conn = self.conn();
        // A lost hold only costs an early probe: a write error is not worth failing a send.
        let _ = match hold {
            Some(h) => conn
                .prepare_cached("INSERT OR REPLACE INTO credential_hold (id, secret, code, until, refusals) VALUES (1, ?1, ?2, ?3, ?4)")
                .and_then(|mut s| s.execute(params![h.secret, h.code, time(h.until), h.refusals])),
            None => conn
                .prepare_cached("DELETE FROM credential_hold")
                .and_then(|mut s| s.execute([])),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::Seed;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn message(subject: &str) -> NewMessage {
        NewMessage {
            from: "mailman@contoso.example".into(),
            to: vec!["a@example.com".into()],
            subject: subject.into(),
            body: "hi".into(),
            message_id: None,
        }
    }

    fn path(name: &str) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("maildrill-outbox-{name}-{}.db", std::process::id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        path
    }

    #[test]
    fn messages_move_through_their_states_in_due_order() {
        let outbox = Outbox::in_memory().unwrap();
        let mut ids = Seed(1).stream("outbox");
        let now = at("2025-02-14T11:00:00Z");
        let first = outbox.enqueue(&message("one"), now, &mut ids).unwrap();
        let second = outbox.enqueue(&message("two"), now, &mut ids).unwrap();
        assert!(first.message_id.ends_with("@contoso.example>"));
        assert_ne!(first.idempotency_key, second.idempotency_key);
        let claimed = outbox.claim_due(now).unwrap().unwrap();
        assert_eq!(
            (claimed.id, claimed.state, claimed.attempts),
            (first.id, State::Sending, 1)
        );
        outbox
            .retry(first.id, at("2025-02-14T11:05:00Z"), "535 5.7.3")
            .unwrap();
        assert_eq!(outbox.claim_due(now).unwrap().unwrap().id, second.id);
        assert!(
            outbox.claim_due(now).unwrap().is_none(),
            "the first is not due yet"
        );
        assert_eq!(
            outbox.next_due_at().unwrap(),
            Some(at("2025-02-14T11:05:00Z"))
        );
        outbox.delivered(second.id, now).unwrap();
        let again = outbox
            .claim_due(at("2025-02-14T11:05:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (again.id, again.attempts, again.message_id),
            (first.id, 2, first.message_id)
        );
        outbox.failed(first.id, "550 5.1.1 no such user").unwrap();
        assert_eq!(
            outbox.counts().unwrap(),
            [(State::Delivered, 1), (State::Failed, 1)]
        );
        assert_eq!(outbox.depth().unwrap(), 0);
    }

    #[test]
    fn a_restart_resumes_every_queued_and_in_flight_message() {
        let path = path("restart");
        let mut ids = Seed(2).stream("outbox");
        let now = at("2025-02-14T11:30:00Z");
        let in_flight = {
            let outbox = Outbox::open(&path).unwrap();
            for i in 0..3 {
                outbox
                    .enqueue(&message(&format!("m{i}")), now, &mut ids)
                    .unwrap();
            }
            outbox.claim_due(now).unwrap().unwrap()
            // The process dies here, mid-send.
        };
        let outbox = Outbox::open(&path).unwrap();
        assert_eq!(outbox.depth().unwrap(), 3);
        assert_eq!(outbox.recover(at("2025-02-15T02:08:00Z")).unwrap(), 1);
        let resumed = outbox.get(in_flight.id).unwrap().unwrap();
        assert_eq!(
            (resumed.state, resumed.message_id),
            (State::Queued, in_flight.message_id)
        );
        assert_eq!(outbox.oldest_waiting().unwrap(), Some(now));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[test]
    fn an_outbox_of_another_layout_is_refused_not_misread() {
        let path = path("old-layout");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE messages (id INTEGER PRIMARY KEY, enqueued_at TEXT NOT NULL);",
            )
            .unwrap();
        }
        let error = Outbox::open(&path).unwrap_err();
        assert!(matches!(error, OutboxError::Schema { found: 0 }), "{error}");
        assert!(error.to_string().contains("schema version 0"), "{error}");
        std::fs::remove_file(&path).unwrap();
        // A fresh file gets the current layout, and opens again.
        drop(Outbox::open(&path).unwrap());
        drop(Outbox::open(&path).unwrap());
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
