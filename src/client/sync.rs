//! Inbound sync: Graph delta on the inbox at an interval, resuming from the `deltaLink`; after
//! `410 SyncStateNotFound` a full resync, deduplicated, so every message is synced once.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::backoff::{Backoff, BackoffConfig};
use super::classify::{self, Failure};
use super::send::GRAPH_SCOPE;
use super::token::TokenSource;
use super::transport::HttpTransport;
use crate::seed::SeedRng;
use crate::time::{ClockExt as _, SharedClock};

/// Sync settings.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// `https://graph.microsoft.com/v1.0`.
    pub graph_url: String,
    /// The mailbox.
    pub mailbox: String,
    /// Whether the token is the mailbox user's own (delegated): the inbox is then `/me`'s.
    pub delegated: bool,
    /// Time between rounds.
    pub interval: Duration,
    /// `Prefer: odata.maxpagesize`.
    pub page_size: usize,
    /// Backoff when a round fails.
    pub backoff: BackoffConfig,
    /// How long to wait before the first round: a client syncing many mailboxes spreads their
    /// rounds over the interval, so they do not all ask (and refresh their tokens) at once.
    pub phase: Duration,
}

/// What the sync did, for the run's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncEvent {
    /// A message was synced (first time seen).
    Synced {
        /// Graph message id.
        id: String,
    },
    /// The delta token was gone: a full resync started.
    Resync,
    /// A round failed and the sync waits.
    Failed {
        /// Why.
        reason: String,
    },
}

/// What the sync keeps between rounds and across restarts (a client persists it): the
/// `deltaLink` to resume from and the ids already synced.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct SyncState {
    /// Where the next round starts; `None` for a full sync.
    pub delta_link: Option<String>,
    /// Ids synced so far, so a resync reports each message once.
    pub seen: BTreeSet<String>,
}

/// The inbox sync.
#[derive(Debug)]
pub struct InboxSync {
    /// Settings.
    pub config: SyncConfig,
    /// Tokens for Graph (the app's, or a connected user's).
    pub tokens: Arc<dyn TokenSource>,
    /// HTTP to Graph.
    pub http: Arc<dyn HttpTransport>,
    /// The clock.
    pub clock: SharedClock,
    /// What happened.
    pub log: super::EventLog<SyncEvent>,
    /// Jitter.
    pub rng: SeedRng,
    /// The persisted state, shared with the next process after a restart.
    pub state: Arc<std::sync::Mutex<SyncState>>,
}

enum Round {
    Done(String),
    Gone,
}

/// What the sync reads of a delta page; other members are ignored.
#[derive(serde::Deserialize)]
struct DeltaPage<'a> {
    #[serde(default, borrow)]
    value: Vec<DeltaItem<'a>>,
    #[serde(rename = "@odata.nextLink", borrow)]
    next_link: Option<Cow<'a, str>>,
    #[serde(rename = "@odata.deltaLink", borrow)]
    delta_link: Option<Cow<'a, str>>,
}

/// A message, or a removal, in a delta page.
#[derive(serde::Deserialize)]
struct DeltaItem<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(rename = "@removed")]
    removed: Option<serde::de::IgnoredAny>,
}

impl InboxSync {
    fn note(&self, event: SyncEvent) {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((self.clock.now_utc(), event));
    }

    fn initial_url(&self) -> String {
        if self.config.delegated {
            return format!(
                "{}/me/mailFolders/inbox/messages/delta",
                self.config.graph_url
            );
        }
        format!(
            "{}/users/{}/mailFolders/inbox/messages/delta",
            self.config.graph_url, self.config.mailbox
        )
    }

    /// Syncs until `until`.
    pub async fn run(&self, until: DateTime<Utc>) {
        let mut backoff = Backoff::new(self.config.backoff, self.rng.clone());
        let prefer =
            http::HeaderValue::from_str(&format!("odata.maxpagesize={}", self.config.page_size))
                .expect("a number makes a valid header value");
        if !self.config.phase.is_zero() {
            self.clock.sleep(self.config.phase).await;
        }
        while self.clock.now_utc() < until {
            let start = self
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .delta_link
                .clone()
                .unwrap_or_else(|| self.initial_url());
            let round = self.round(start, &prefer).await;
            let wait = {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                match round {
                    Ok(Round::Done(link)) => {
                        state.delta_link = Some(link);
                        backoff.reset();
                        self.config.interval
                    }
                    Ok(Round::Gone) if state.delta_link.is_some() => {
                        // SyncStateNotFound means "start over", not "retry": resync at once.
                        state.delta_link = None;
                        self.note(SyncEvent::Resync);
                        continue;
                    }
                    Ok(Round::Gone) => {
                        // A full sync refused as well: the server is at fault, not the delta link.
                        // Starting over again at once would loop without end; back off instead.
                        self.note(SyncEvent::Failed {
                            reason: "410 on a full sync".into(),
                        });
                        backoff.next(None)
                    }
                    Err(failure) => {
                        let retry_after = match &failure {
                            Failure::Transient { retry_after, .. } => *retry_after,
                            _ => None,
                        };
                        self.note(SyncEvent::Failed {
                            reason: format!("{failure:?}"),
                        });
                        backoff.next(retry_after)
                    }
                }
            };
            let next = (self.clock.now_utc() + crate::time::to_chrono(wait)).min(until);
            self.clock.sleep_until(self.clock.instant_at(next)).await;
        }
    }

    /// Takes a page's messages, each once: a resync returns messages already seen.
    fn take(&self, page: &DeltaPage<'_>) {
        for message in &page.value {
            let Some(id) = &message.id else {
                continue;
            };
            if message.removed.is_none()
                && self
                    .state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .seen
                    .insert(id.to_string())
            {
                self.note(SyncEvent::Synced { id: id.to_string() });
            }
        }
    }

    /// Follows `nextLink`s from `url` to the `deltaLink`.
    async fn round(&self, mut url: String, prefer: &http::HeaderValue) -> Result<Round, Failure> {
        let mut refreshed = false;
        loop {
            let token = self.tokens.token(GRAPH_SCOPE).await?;
            let request = http::Request::get(&url)
                .header(http::header::AUTHORIZATION, token.authorization())
                .header("Prefer", prefer.clone())
                .body(Vec::new())
                .map_err(|e| Failure::Permanent {
                    reason: e.to_string(),
                })?;
            let response = self
                .clock
                .timeout(Duration::from_secs(30), self.http.send(request))
                .await
                .map_err(|e| Failure::Transient {
                    reason: e.to_string(),
                    retry_after: None,
                })?
                .map_err(|e| Failure::Transient {
                    reason: e.to_string(),
                    retry_after: None,
                })?;
            let status = response.status().as_u16();
            if status == 410 {
                return Ok(Round::Gone);
            }
            if status != 200 {
                let retry_after = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| classify::parse_retry_after(v, self.clock.now_utc()));
                match classify::graph_failure(status, retry_after, response.body()) {
                    Failure::TokenRejected if !refreshed => {
                        self.tokens.invalidate(GRAPH_SCOPE);
                        refreshed = true;
                        continue;
                    }
                    failure => return Err(failure),
                }
            }
            let page: DeltaPage<'_> =
                serde_json::from_slice(response.body()).map_err(|e| Failure::Transient {
                    reason: format!("unreadable delta page: {e}"),
                    retry_after: None,
                })?;
            self.take(&page);
            if let Some(next) = page.next_link {
                url = next.into_owned();
            } else if let Some(delta) = page.delta_link {
                return Ok(Round::Done(delta.into_owned()));
            } else {
                return Err(Failure::Transient {
                    reason: "delta page without a link".into(),
                    retry_after: None,
                });
            }
        }
    }
}
