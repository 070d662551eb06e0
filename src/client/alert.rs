//! Alerts as PagerDuty Events API v2 JSON, posted to a webhook over HTTP: never over the
//! failing mail path. Alerts that cannot be delivered wait in a queue and are retried.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::transport::HttpTransport;
use crate::time::{ClockExt as _, SharedClock};

/// PagerDuty's severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// `critical`.
    Critical,
    /// `error`.
    Error,
    /// `warning`.
    Warning,
    /// `info`.
    Info,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One alert event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEvent {
    /// `trigger` or `resolve`.
    pub action: &'static str,
    /// What kind (`credential-expiry`, `delivery-latency`), for reports.
    pub kind: &'static str,
    /// Groups a trigger and its resolve.
    pub dedup_key: String,
    /// One line for a person.
    pub summary: String,
    /// How bad.
    pub severity: Severity,
    /// When it was raised (the client's calendar).
    pub at: DateTime<Utc>,
    /// Details for the responder.
    pub details: serde_json::Value,
}

impl AlertEvent {
    /// The Events API v2 body.
    pub fn body(&self, routing_key: &str, source: &str) -> serde_json::Value {
        let mut body = json!({
            "routing_key": routing_key,
            "event_action": self.action,
            "dedup_key": self.dedup_key,
        });
        if self.action == "trigger" {
            // The kind travels in the event itself, so whoever receives it (a responder, the
            // harness's sink) can tell an expiry warning from a stalled sendout.
            let mut details = match &self.details {
                serde_json::Value::Object(map) => map.clone(),
                _ => serde_json::Map::new(),
            };
            details.insert("kind".into(), self.kind.into());
            body["payload"] = json!({
                "summary": self.summary,
                "source": source,
                "severity": self.severity.as_str(),
                "timestamp": crate::time::rfc3339(self.at),
                "component": "mail-sendout",
                "custom_details": details,
            });
        }
        body
    }
}

/// Posts alerts to the webhook, keeping those it could not deliver for the next flush.
#[derive(Debug)]
pub struct Alerter {
    http: Arc<dyn HttpTransport>,
    url: String,
    routing_key: String,
    source: String,
    clock: SharedClock,
    pending: Mutex<VecDeque<AlertEvent>>,
    /// Woken when an event is left pending, so [`Alerter::run`] starts retrying.
    undelivered: tokio::sync::Notify,
    /// Every event raised, delivered or not (the harness judges by what the sink received;
    /// this is for the client's own tests).
    pub raised: Mutex<Vec<AlertEvent>>,
}

impl Alerter {
    /// An alerter posting to `url` (the PagerDuty-compatible sink).
    pub fn new(
        http: Arc<dyn HttpTransport>,
        url: String,
        routing_key: String,
        clock: SharedClock,
    ) -> Alerter {
        Alerter {
            http,
            url,
            routing_key,
            source: "maildrill-client".into(),
            clock,
            pending: Mutex::new(VecDeque::new()),
            undelivered: tokio::sync::Notify::new(),
            raised: Mutex::new(Vec::new()),
        }
    }

    /// Retries pending events until `until`: a minute after the sink refused, doubling to ten
    /// minutes, so a page goes out soon after the sink is back rather than with the next alert.
    pub async fn run(&self, until: DateTime<Utc>) {
        const FIRST: Duration = Duration::from_secs(60);
        const LONGEST: Duration = Duration::from_secs(600);
        let end = self.clock.instant_at(until);
        let mut wait = FIRST;
        while self.clock.now_utc() < until {
            if self.pending() == 0 {
                wait = FIRST;
                tokio::select! {
                    () = self.undelivered.notified() => {}
                    () = self.clock.sleep_until(end) => return,
                }
                continue;
            }
            let retry_at = (self.clock.now() + wait).min(end);
            self.clock.sleep_until(retry_at).await;
            self.flush().await;
            wait = (wait * 2).min(LONGEST);
        }
    }

    /// Raises an event and tries to deliver everything pending.
    pub async fn raise(&self, event: AlertEvent) {
        self.raised
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event.clone());
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(event);
        self.flush().await;
    }

    /// Tries every pending event once, oldest first. Events of one alert (same dedup key) keep
    /// their order: one waits while an earlier one is undelivered, so a resolve never overtakes
    /// its trigger; other alerts are not held up behind it.
    pub async fn flush(&self) {
        let events: Vec<AlertEvent> = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        let mut blocked = std::collections::BTreeSet::new();
        for event in events {
            if blocked.contains(&event.dedup_key) {
                continue;
            }
            if self.post(&event).await {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(i) = pending.iter().position(|e| *e == event) {
                    pending.remove(i);
                }
            } else {
                blocked.insert(event.dedup_key.clone());
            }
        }
        if !blocked.is_empty() {
            self.undelivered.notify_one();
        }
    }

    /// Posts one event; whether the sink accepted it.
    async fn post(&self, event: &AlertEvent) -> bool {
        let body = serde_json::to_vec(&event.body(&self.routing_key, &self.source))
            .expect("JSON values serialise");
        let request = http::Request::post(&self.url)
            .header("Content-Type", "application/json")
            .body(body);
        let Ok(request) = request else { return false };
        let sent = self
            .clock
            .timeout(Duration::from_secs(10), self.http.send(request))
            .await;
        matches!(sent, Ok(Ok(response)) if response.status().is_success())
    }

    /// Events not yet delivered.
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
