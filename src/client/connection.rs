//! The durable store of delegated connections: one row per user who connected a mailbox (the
//! user, the tenant, the refresh token, connected or needing the user, and when), in the
//! outbox database, so a restarted process resumes every connection without a reconnect.
//! It holds no access tokens: those live in memory and are cheap to get again.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension as _, params};

use super::outbox::{Outbox, OutboxError, parse_time, time};

/// Where a connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Its refresh token works (or fails for reasons that are not the user's).
    Connected,
    /// The user must sign in again; the reason is one the product can show (an AADSTS code).
    NeedsUser(String),
}

/// One user's connection.
#[derive(Clone, PartialEq, Eq)]
pub struct Connection {
    /// The user's principal name (the mailbox).
    pub upn: String,
    /// The user's tenant id.
    pub tenant_id: String,
    /// The latest refresh token (empty once forgotten).
    pub refresh_token: String,
    /// Where it stands.
    pub status: Status,
    /// When the user connected.
    pub connected_at: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("upn", &self.upn)
            .field("tenant_id", &self.tenant_id)
            .field("refresh_token", &"[redacted]")
            .field("status", &self.status)
            .field("connected_at", &self.connected_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Connection> {
    let status: String = r.get(3)?;
    let reason: Option<String> = r.get(4)?;
    Ok(Connection {
        upn: r.get(0)?,
        tenant_id: r.get(1)?,
        refresh_token: r.get(2)?,
        status: match status.as_str() {
            "needs-user" => Status::NeedsUser(reason.unwrap_or_default()),
            _ => Status::Connected,
        },
        connected_at: parse_time(r.get(5)?),
        updated_at: parse_time(r.get(6)?),
    })
}

const COLUMNS: &str = "upn, tenant_id, refresh_token, status, reason, connected_at, updated_at";

impl Outbox {
    /// A user connected (or reconnected): a fresh refresh token, connected from `now`.
    pub fn connected(
        &self,
        upn: &str,
        tenant_id: &str,
        refresh_token: &str,
        now: DateTime<Utc>,
    ) -> Result<(), OutboxError> {
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO connections (upn, tenant_id, refresh_token, status, reason, connected_at, updated_at)
                 VALUES (?1, ?2, ?3, 'connected', NULL, ?4, ?4)",
            )?
            .execute(params![upn, tenant_id, refresh_token, time(now)])?;
        Ok(())
    }

    /// Every connection, in user order.
    pub fn connections(&self) -> Result<Vec<Connection>, OutboxError> {
        let conn = self.conn();
        let mut statement =
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM connections ORDER BY upn"))?;
        let rows = statement.query_map([], read)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One user's connection.
    pub fn connection(&self, upn: &str) -> Result<Option<Connection>, OutboxError> {
        let conn = self.conn();
        let mut statement =
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM connections WHERE upn = ?1"))?;
        Ok(statement.query_row(params![upn], read).optional()?)
    }

    /// Keeps a rotated refresh token (the endpoint returns a new one with each redemption).
    pub fn rotated(
        &self,
        upn: &str,
        refresh_token: &str,
        now: DateTime<Utc>,
    ) -> Result<(), OutboxError> {
        self.conn()
            .prepare_cached(
                "UPDATE connections SET refresh_token = ?2, updated_at = ?3 WHERE upn = ?1",
            )?
            .execute(params![upn, refresh_token, time(now)])?;
        Ok(())
    }

    /// A connection that needed its tenant's admin works again.
    pub fn restored(&self, upn: &str, now: DateTime<Utc>) -> Result<(), OutboxError> {
        self.conn()
            .prepare_cached(
                "UPDATE connections SET status = 'connected', reason = NULL, updated_at = ?2 WHERE upn = ?1",
            )?
            .execute(params![upn, time(now)])?;
        Ok(())
    }

    /// The user must sign in again, for `reason`; `forget` also drops the refresh token and
    /// the user's queued mail (what a client that "disconnects" the user does).
    pub fn needs_user(
        &self,
        upn: &str,
        reason: &str,
        forget: bool,
        now: DateTime<Utc>,
    ) -> Result<(), OutboxError> {
        let conn = self.conn();
        conn.prepare_cached(
            "UPDATE connections SET status = 'needs-user', reason = ?2, updated_at = ?3 WHERE upn = ?1",
        )?
        .execute(params![upn, reason, time(now)])?;
        if forget {
            conn.prepare_cached("UPDATE connections SET refresh_token = '' WHERE upn = ?1")?
                .execute(params![upn])?;
            conn.prepare_cached(
                "DELETE FROM messages WHERE sender = ?1 AND state IN ('queued', 'sending')",
            )?
            .execute(params![upn])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("an RFC 3339 instant")
    }

    #[test]
    fn connections_survive_a_restart_with_their_latest_refresh_token_and_status() {
        let dir =
            std::env::temp_dir().join(format!("maildrill-connections-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let path = dir.join("outbox.sqlite3");
        let _ = std::fs::remove_file(&path);
        {
            let outbox = Outbox::open(&path).expect("opens");
            let t = at("2025-02-14T09:00:00Z");
            outbox
                .connected("a@x.example", "tid-x", "rt-a-1", t)
                .expect("kept");
            outbox
                .connected("b@y.example", "tid-y", "rt-b-1", t)
                .expect("kept");
            outbox
                .rotated("a@x.example", "rt-a-2", at("2025-02-14T10:00:00Z"))
                .expect("kept");
            outbox
                .needs_user(
                    "b@y.example",
                    "AADSTS50173",
                    false,
                    at("2025-02-14T11:00:00Z"),
                )
                .expect("kept");
        }
        let outbox = Outbox::open(&path).expect("opens again");
        let all = outbox.connections().expect("reads");
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].refresh_token, "rt-a-2");
        assert_eq!(all[0].status, Status::Connected);
        assert_eq!(all[0].updated_at, at("2025-02-14T10:00:00Z"));
        assert_eq!(all[1].status, Status::NeedsUser("AADSTS50173".into()));
        assert_eq!(
            all[1].refresh_token, "rt-b-1",
            "a user-level failure keeps the token"
        );
        assert!(
            !format!("{:?}", all[0]).contains("rt-a-2"),
            "Debug redacts the token"
        );
        // A reconnect makes it whole again.
        outbox
            .connected("b@y.example", "tid-y", "rt-b-2", at("2025-02-14T12:00:00Z"))
            .expect("kept");
        let b = outbox
            .connection("b@y.example")
            .expect("reads")
            .expect("there");
        assert_eq!(
            (b.status, b.refresh_token.as_str()),
            (Status::Connected, "rt-b-2")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
