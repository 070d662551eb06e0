//! The monitors the post-mortem asked for: credential expiry (alerts a month ahead) and
//! delivery latency (the sendout process stalls).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::alert::{AlertEvent, Alerter, Severity};
use super::outbox::Outbox;
use super::send::GRAPH_SCOPE;
use super::token::TokenProvider;
use super::transport::HttpTransport;
use crate::time::{ClockExt as _, SharedClock, to_chrono};

/// Which of an app's credentials a [`KnownCredential`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CredentialKind {
    /// A client secret (`passwordCredentials`).
    #[default]
    Secret,
    /// A certificate (`keyCredentials`).
    Certificate,
}

impl CredentialKind {
    /// How alerts name it.
    fn noun(self) -> &'static str {
        match self {
            CredentialKind::Secret => "Client secret",
            CredentialKind::Certificate => "Certificate",
        }
    }

    /// The property of the application that lists it.
    fn property(self) -> &'static str {
        match self {
            CredentialKind::Secret => "passwordCredentials",
            CredentialKind::Certificate => "keyCredentials",
        }
    }
}

/// A credential as the monitor knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownCredential {
    /// A secret or a certificate.
    pub kind: CredentialKind,
    /// `keyId`.
    pub key_id: String,
    /// `displayName`.
    pub name: String,
    /// `startDateTime`.
    pub start: DateTime<Utc>,
    /// `endDateTime`.
    pub end: DateTime<Utc>,
}

/// Expiry monitor settings.
#[derive(Debug, Clone)]
pub struct ExpiryConfig {
    /// The app whose `passwordCredentials` and `keyCredentials` are watched.
    pub app_id: String,
    /// `https://graph.microsoft.com/v1.0`.
    pub graph_url: String,
    /// Alert this long before each credential's end (default 30 d, 14 d, 7 d, 1 d, 0).
    pub lead_times: Vec<Duration>,
    /// How often to read the credentials.
    pub poll_every: Duration,
    /// What to assume when Graph cannot be read and nothing was read before (configuration).
    pub fallback: Vec<KnownCredential>,
}

/// The default lead times: 30, 14, 7 and 1 days, and at expiry.
pub fn default_lead_times() -> Vec<Duration> {
    [30, 14, 7, 1, 0]
        .iter()
        .map(|d| Duration::from_secs(d * 86_400))
        .collect()
}

/// Reads `passwordCredentials` and `keyCredentials` through Graph and alerts at
/// `endDateTime - lead` exactly.
#[derive(Debug)]
pub struct ExpiryMonitor {
    /// Settings.
    pub config: ExpiryConfig,
    /// Tokens for Graph.
    pub tokens: Arc<TokenProvider>,
    /// HTTP to Graph.
    pub http: Arc<dyn HttpTransport>,
    /// Where alerts go.
    pub alerter: Arc<Alerter>,
    /// The clock.
    pub clock: SharedClock,
    /// Metrics to keep up to date, if any.
    pub metrics: Option<Arc<super::metrics::Metrics>>,
}

impl ExpiryMonitor {
    /// Reads the credentials; `None` when Graph cannot be read (e.g. the secret has expired
    /// and no token can be had: the monitor then relies on what it learned before).
    async fn read(&self) -> Option<Vec<KnownCredential>> {
        let token = self.tokens.token(GRAPH_SCOPE).await.ok()?;
        let url = format!(
            "{}/applications(appId='{}')",
            self.config.graph_url, self.config.app_id
        );
        let request = http::Request::get(url)
            .header(http::header::AUTHORIZATION, token.authorization())
            .body(Vec::new())
            .ok()?;
        let response = self
            .clock
            .timeout(Duration::from_secs(30), self.http.send(request))
            .await
            .ok()?
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body: Value = serde_json::from_slice(response.body()).ok()?;
        let time = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        };
        let credentials = body.get("passwordCredentials")?.as_array()?;
        let kinds = [CredentialKind::Secret, CredentialKind::Certificate];
        let listed = kinds.into_iter().flat_map(|kind| {
            let list = match kind {
                CredentialKind::Secret => Some(credentials),
                // An application without certificates may leave the property out.
                CredentialKind::Certificate => body.get(kind.property()).and_then(Value::as_array),
            };
            list.into_iter().flatten().map(move |c| (kind, c))
        });
        Some(
            listed
                .filter_map(|(kind, c)| {
                    Some(KnownCredential {
                        kind,
                        key_id: c.get("keyId")?.as_str()?.to_string(),
                        name: c
                            .get("displayName")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        start: time(c, "startDateTime")?,
                        end: time(c, "endDateTime")?,
                    })
                })
                .collect(),
        )
    }

    /// Watches until `until`.
    pub async fn run(&self, until: DateTime<Utc>) {
        let mut known: Vec<KnownCredential> = self.config.fallback.clone();
        let mut fired: BTreeSet<(String, u64)> = BTreeSet::new();
        let mut next_poll = self.clock.now_utc();
        loop {
            let now = self.clock.now_utc();
            if now >= until {
                return;
            }
            if now >= next_poll {
                if let Some(read) = self.read().await {
                    known = read;
                }
                if let Some(metrics) = &self.metrics {
                    for credential in &known {
                        let label = super::metrics::Credential {
                            key_id: credential.key_id.clone(),
                        };
                        metrics
                            .credential_expiry
                            .get_or_create(&label)
                            .set(credential.end.timestamp());
                    }
                }
                next_poll = now + to_chrono(self.config.poll_every);
                self.resolve_rotated(&known, &mut fired, now).await;
            }
            for credential in &known {
                for lead in &self.config.lead_times {
                    let key = (credential.key_id.clone(), lead.as_secs());
                    if credential.end - to_chrono(*lead) <= now
                        && !fired.contains(&key)
                        && !rotated_away(credential, &known, now, self.max_lead())
                    {
                        self.alerter
                            .raise(self.trigger(credential, *lead, now))
                            .await;
                        fired.insert(key);
                    }
                }
            }
            let next_alert = known
                .iter()
                .flat_map(|c| self.config.lead_times.iter().map(move |l| (c, *l)))
                .filter(|(c, l)| !fired.contains(&(c.key_id.clone(), l.as_secs())))
                .map(|(c, l)| c.end - to_chrono(l))
                .filter(|at| *at > now)
                .min();
            let wake = next_alert
                .map_or(next_poll, |at| at.min(next_poll))
                .min(until);
            self.clock.sleep_until(self.clock.instant_at(wake)).await;
        }
    }

    fn max_lead(&self) -> Duration {
        self.config
            .lead_times
            .iter()
            .copied()
            .max()
            .unwrap_or_default()
    }

    async fn resolve_rotated(
        &self,
        known: &[KnownCredential],
        fired: &mut BTreeSet<(String, u64)>,
        now: DateTime<Utc>,
    ) {
        let max_lead = self.max_lead();
        let keys: BTreeMap<String, KnownCredential> = known
            .iter()
            .map(|c| (c.key_id.clone(), c.clone()))
            .collect();
        let resolved: Vec<(String, u64)> = fired
            .iter()
            .filter(|(key_id, _)| {
                keys.get(key_id)
                    .is_none_or(|c| rotated_away(c, known, now, max_lead))
            })
            .cloned()
            .collect();
        for (key_id, lead) in resolved {
            fired.remove(&(key_id.clone(), lead));
            let event = AlertEvent {
                action: "resolve",
                kind: "credential-expiry",
                dedup_key: dedup(&self.config.app_id, &key_id, lead),
                summary: match keys.get(&key_id).map(|c| c.kind) {
                    Some(CredentialKind::Certificate) => {
                        format!("certificate {key_id} was rotated")
                    }
                    _ => format!("client secret {key_id} was rotated"),
                },
                severity: Severity::Info,
                at: now,
                details: Value::Null,
            };
            self.alerter.raise(event).await;
        }
    }

    fn trigger(
        &self,
        credential: &KnownCredential,
        lead: Duration,
        now: DateTime<Utc>,
    ) -> AlertEvent {
        let app = &self.config.app_id;
        let end = crate::time::rfc3339(credential.end);
        let (summary, severity) = if lead.is_zero() {
            (
                format!(
                    "{} '{}' of app {app} expired at {end}: mail cannot be sent",
                    credential.kind.noun(),
                    credential.name
                ),
                Severity::Critical,
            )
        } else {
            let days = lead.as_secs() / 86_400;
            let severity = if days <= 7 {
                Severity::Error
            } else {
                Severity::Warning
            };
            (
                format!(
                    "{} '{}' of app {app} expires at {end}, in {days} days: rotate it",
                    credential.kind.noun(),
                    credential.name
                ),
                severity,
            )
        };
        AlertEvent {
            action: "trigger",
            kind: "credential-expiry",
            dedup_key: dedup(app, &credential.key_id, lead.as_secs()),
            summary,
            severity,
            at: now,
            details: json!({"app_id": app, "key_id": credential.key_id, "end_date_time": end, "lead_days": lead.as_secs() / 86_400}),
        }
    }
}

fn dedup(app: &str, key_id: &str, lead_secs: u64) -> String {
    format!("credential-expiry/{app}/{key_id}/{}d", lead_secs / 86_400)
}

/// A credential is rotated away when another of its kind works now and outlives every lead
/// time.
fn rotated_away(
    credential: &KnownCredential,
    known: &[KnownCredential],
    now: DateTime<Utc>,
    max_lead: Duration,
) -> bool {
    known.iter().any(|other| {
        other.key_id != credential.key_id
            && other.kind == credential.kind
            && other.start <= now
            && other.end > credential.end
            && other.end - now > to_chrono(max_lead)
    })
}

/// Latency monitor settings.
#[derive(Debug, Clone, Copy)]
pub struct LatencyConfig {
    /// Alert when the oldest waiting message, or the p95 of recent deliveries, is older.
    pub threshold: Duration,
    /// The window of the p95.
    pub window: Duration,
    /// How often to look while messages wait (and while the alert is active).
    pub check_every: Duration,
    /// How long delivery must stay healthy before the alert resolves: a backlog draining
    /// around the threshold pages once, not on every other check.
    pub resolve_after: Duration,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        LatencyConfig {
            threshold: Duration::from_secs(300),
            window: Duration::from_secs(900),
            check_every: Duration::from_secs(30),
            resolve_after: Duration::from_secs(300),
        }
    }
}

/// Watches the outbox for stalled delivery.
#[derive(Debug)]
pub struct LatencyMonitor {
    /// Settings.
    pub config: LatencyConfig,
    /// The queue.
    pub outbox: Arc<Outbox>,
    /// Where alerts go.
    pub alerter: Arc<Alerter>,
    /// The clock.
    pub clock: SharedClock,
    /// Woken on enqueue, so an empty queue costs nothing while idle.
    pub wake: Option<Arc<tokio::sync::Notify>>,
}

impl LatencyMonitor {
    /// Watches until `until`.
    pub async fn run(&self, until: DateTime<Utc>) {
        let threshold = to_chrono(self.config.threshold);
        let mut active = false;
        let mut healthy_since: Option<DateTime<Utc>> = None;
        loop {
            let now = self.clock.now_utc();
            if now >= until {
                return;
            }
            let oldest = self.outbox.oldest_waiting().ok().flatten();
            let age = oldest.map(|t| now - t).unwrap_or_default();
            let mut latencies = self
                .outbox
                .latencies_since(now - to_chrono(self.config.window))
                .unwrap_or_default();
            let p95 = percentile_95(&mut latencies);
            let breach = age > threshold || p95 > self.config.threshold;
            // Trigger at once; resolve after `resolve_after` without a breach.
            let change = if breach {
                healthy_since = None;
                !active
            } else {
                let since = *healthy_since.get_or_insert(now);
                active && now - since >= to_chrono(self.config.resolve_after)
            };
            if change {
                active = !active;
                let breach = active;
                let event = AlertEvent {
                    action: if breach { "trigger" } else { "resolve" },
                    kind: "delivery-latency",
                    dedup_key: "delivery-latency/mail-sendout".into(),
                    summary: format!(
                        "Mail delivery is stalled: oldest waiting message {} s old, p95 latency {} s (threshold {} s)",
                        age.num_seconds(),
                        p95.as_secs(),
                        self.config.threshold.as_secs()
                    ),
                    severity: Severity::Critical,
                    at: now,
                    details: json!({"oldest_age_s": age.num_seconds(), "p95_s": p95.as_secs()}),
                };
                self.alerter.raise(event).await;
            }
            // Sleep until the oldest waiting message would cross the threshold, or poll while
            // something waits. An empty, healthy queue cannot breach before the next enqueue,
            // which wakes the monitor; without that wake-up, it is looked at every threshold.
            let next = match oldest {
                Some(oldest) if !active && oldest + threshold > now => {
                    oldest + threshold + chrono::TimeDelta::milliseconds(1)
                }
                Some(_) => now + to_chrono(self.config.check_every),
                // Empty but still alerting: while the p95 breaches, look every `check_every`;
                // once healthy, when the alert may resolve.
                None if active => healthy_since
                    .map_or(now + to_chrono(self.config.check_every), |since| {
                        since + to_chrono(self.config.resolve_after)
                    }),
                None if self.wake.is_some() => until,
                None => now + threshold,
            };
            let sleep = self
                .clock
                .sleep_until(self.clock.instant_at(next.min(until)));
            match (&self.wake, oldest) {
                // An empty queue: the next enqueue starts the watch at once.
                (Some(wake), None) => {
                    tokio::select! {
                        biased;
                        () = wake.notified() => {}
                        () = sleep => {}
                    }
                }
                _ => sleep.await,
            }
        }
    }
}

fn percentile_95(latencies: &mut [Duration]) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    latencies.sort();
    let rank = (latencies.len() * 95).div_ceil(100).max(1) - 1;
    latencies[rank]
}
