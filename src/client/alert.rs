//! Alerts as PagerDuty Events API v2 JSON, posted to a webhook over HTTP: never over the
//! failing mail path. Alerts that cannot be delivered wait in a queue and are retried.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::json;

use super::transport::HttpTransport;
use crate::time::SharedClock;

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
            body["payload"] = json!({
                "summary": self.summary,
                "source": source,
                "severity": self.severity.as_str(),
                "timestamp": crate::time::rfc3339(self.at),
                "component": "mail-sendout",
                "custom_details": self.details,
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
    /// Every event raised, delivered or not, for the run's report.
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
            raised: Mutex::new(Vec::new()),
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

    /// Delivers pending events in order; stops at the first the sink refuses.
    pub async fn flush(&self) {
        loop {
            let Some(event) = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .front()
                .cloned()
            else {
                return;
            };
            let body = serde_json::to_vec(&event.body(&self.routing_key, &self.source))
                .expect("JSON values serialise");
            let request = http::Request::post(&self.url)
                .header("Content-Type", "application/json")
                .body(body);
            let Ok(request) = request else { return };
            let sent = crate::time::ClockExt::timeout(
                &*self.clock,
                std::time::Duration::from_secs(10),
                self.http.send(request),
            )
            .await;
            match sent {
                Ok(Ok(response)) if response.status().is_success() => {
                    self.pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .pop_front();
                }
                // The sink is down or refused: keep the event for the next flush.
                _ => return,
            }
        }
    }

    /// Events not yet delivered.
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
