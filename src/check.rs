//! Checks: pure functions from a run's observations to verdicts. Each verdict says, in words
//! and numbers, what was required and what was observed.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::time::{rfc3339, to_chrono};

/// An alert as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertSeen {
    /// `credential-expiry` or `delivery-latency`.
    pub kind: String,
    /// Which alert of the kind (its dedup key's last part).
    #[serde(skip)]
    pub key: String,
    /// `trigger` or `resolve`.
    pub action: String,
    /// When (RFC 3339).
    #[serde(serialize_with = "as_rfc3339")]
    pub at: DateTime<Utc>,
}

fn as_rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*at))
}

/// What a run observed; the checks read nothing else.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    /// Messages enqueued.
    pub enqueued: u64,
    /// Delivered.
    pub delivered: u64,
    /// Failed for good.
    pub failed: u64,
    /// Still queued or in flight at the end.
    pub waiting: u64,
    /// Sent with no reply (the server may have them).
    pub unknown: u64,
    /// Messages the server holds more than once (by idempotency key).
    pub duplicated: u64,
    /// Token requests: (instant, succeeded).
    pub token_requests: Vec<(DateTime<Utc>, bool)>,
    /// Alerts the client raised.
    pub alerts: Vec<AlertSeen>,
    /// The first delivery attempt that failed.
    pub first_failure_at: Option<DateTime<Utc>>,
    /// When the timeline made a working credential available.
    pub rotated_at: Option<DateTime<Utc>>,
    /// The first successful delivery at or after `rotated_at`.
    pub recovered_at: Option<DateTime<Utc>>,
    /// When everything enqueued before `rotated_at` was delivered.
    pub drained_at: Option<DateTime<Utc>>,
    /// The end date of the secret in use at the start.
    pub secret_end: Option<DateTime<Utc>>,
    /// The end of the run.
    pub end: DateTime<Utc>,
    /// Everything the run wrote down (journals, alert bodies), to search for leaks.
    pub written: String,
    /// Secret values that must never appear in `written` or the report.
    pub secrets: Vec<String>,
}

impl Observations {
    /// The first alert naming the delivery problem, at or after the first failure.
    pub fn detected_at(&self) -> Option<DateTime<Utc>> {
        let since = self.first_failure_at?;
        self.alerts
            .iter()
            .filter(|a| a.action == "trigger" && a.at >= since && a.kind == "delivery-latency")
            .map(|a| a.at)
            .min()
    }
}

/// A check's parameters from the scenario.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Params {
    /// `*-within`: the bound.
    pub within: Option<Duration>,
    /// `expiry-alert-lead`: the lead.
    pub lead: Option<Duration>,
    /// `token-request-budget`: requests per hour.
    pub per_hour: Option<u64>,
}

/// A check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The check's id.
    pub id: String,
    /// `pass` or `fail`.
    pub verdict: String,
    /// The verdict the scenario expects.
    pub expected: String,
    /// What was observed, in numbers.
    pub observed: String,
    /// What was required.
    pub detail: String,
}

/// The ids of every check.
pub const CHECKS: [&str; 9] = [
    "no-loss",
    "no-duplicates",
    "expiry-alert-lead",
    "latency-alert-within",
    "token-request-budget",
    "recovery-within",
    "drained-within",
    "alerts-resolved",
    "no-secret-leak",
];

/// Whether `text` holds something shaped like a JWT access token.
fn has_jwt(text: &str) -> bool {
    text.match_indices("eyJ").any(|(i, _)| {
        let rest = &text[i..];
        let token: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        token.matches('.').count() >= 2 && token.len() > 20
    })
}

/// Evaluates check `id`; `None` for an unknown id (scenario lowering rejects those).
pub fn evaluate(id: &str, params: Params, o: &Observations) -> Option<(bool, String, String)> {
    let within = |default_s: u64| params.within.unwrap_or(Duration::from_secs(default_s));
    let fmt_duration =
        |d: TimeDelta| humantime::format_duration(d.to_std().unwrap_or_default()).to_string();
    Some(match id {
        "no-loss" => {
            let lost = o.failed + o.waiting;
            (
                lost == 0,
                format!("{lost} of {} lost ({} failed, {} still waiting, {} unknown)", o.enqueued, o.failed, o.waiting, o.unknown),
                "every enqueued message delivered; a send with unknown outcome is counted, not lost".into(),
            )
        }
        "no-duplicates" => (
            o.duplicated == 0,
            format!(
                "{} of {} delivered more than once",
                o.duplicated, o.delivered
            ),
            "no message held twice by the server (by idempotency key)".into(),
        ),
        "expiry-alert-lead" => {
            let lead = params.lead.unwrap_or(Duration::from_secs(30 * 86_400));
            let first = o
                .alerts
                .iter()
                .filter(|a| a.kind == "credential-expiry" && a.action == "trigger")
                .map(|a| a.at)
                .min();
            let required = format!(
                "first expiry alert at least {} before the secret's end",
                humantime::format_duration(lead)
            );
            match (first, o.secret_end) {
                (Some(at), Some(end)) => (
                    end - at >= to_chrono(lead),
                    format!(
                        "first expiry alert {} before the end, at {}",
                        fmt_duration(end - at),
                        rfc3339(at)
                    ),
                    required,
                ),
                (None, _) => (false, "no expiry alert".into(), required),
                (Some(_), None) => (false, "no secret end date known".into(), required),
            }
        }
        "latency-alert-within" => {
            let bound = within(600);
            let required = format!(
                "a latency alert within {} of the first failed delivery",
                humantime::format_duration(bound)
            );
            match (o.first_failure_at, o.detected_at()) {
                (None, _) => (true, "no delivery failed".into(), required),
                (Some(failure), Some(alert)) => (
                    alert - failure <= to_chrono(bound),
                    format!(
                        "alert {} after the first failure ({})",
                        fmt_duration(alert - failure),
                        rfc3339(failure)
                    ),
                    required,
                ),
                (Some(failure), None) => (
                    false,
                    format!(
                        "no latency alert after the first failure at {}",
                        rfc3339(failure)
                    ),
                    required,
                ),
            }
        }
        "token-request-budget" => {
            let budget = params.per_hour.unwrap_or(30);
            let window_end = o.rotated_at.unwrap_or(o.end);
            let failing: Vec<DateTime<Utc>> = o
                .token_requests
                .iter()
                .filter(|(at, ok)| !ok && *at <= window_end)
                .map(|(at, _)| *at)
                .collect();
            let peak = failing
                .iter()
                .map(|start| {
                    failing
                        .iter()
                        .filter(|t| **t >= *start && **t < *start + TimeDelta::hours(1))
                        .count()
                })
                .max()
                .unwrap_or(0);
            (
                peak as u64 <= budget,
                format!(
                    "at most {peak} token requests in an hour while credentials failed ({} failed requests in all)",
                    failing.len()
                ),
                format!("at most {budget} token requests in any hour while credentials fail"),
            )
        }
        "recovery-within" => {
            let bound = within(60);
            let required = format!(
                "first delivery within {} of the rotation",
                humantime::format_duration(bound)
            );
            match (o.rotated_at, o.recovered_at) {
                (None, _) => (false, "no rotation in the timeline".into(), required),
                (Some(rotated), Some(recovered)) => (
                    recovered - rotated <= to_chrono(bound),
                    format!(
                        "first delivery {} after the rotation",
                        fmt_duration(recovered - rotated)
                    ),
                    required,
                ),
                (Some(_), None) => (false, "no delivery after the rotation".into(), required),
            }
        }
        "drained-within" => {
            let bound = within(3600);
            let required = format!(
                "backlog delivered within {} of the rotation",
                humantime::format_duration(bound)
            );
            match (o.rotated_at, o.drained_at) {
                (None, _) => (false, "no rotation in the timeline".into(), required),
                (Some(rotated), Some(drained)) => (
                    drained - rotated <= to_chrono(bound),
                    format!(
                        "backlog drained {} after the rotation",
                        fmt_duration((drained - rotated).max(TimeDelta::zero()))
                    ),
                    required,
                ),
                (Some(_), None) => (false, "backlog never drained".into(), required),
            }
        }
        "alerts-resolved" => {
            let mut open = std::collections::BTreeSet::new();
            for alert in &o.alerts {
                let key = (alert.kind.clone(), alert.key.clone());
                if alert.action == "trigger" {
                    open.insert(key);
                } else {
                    open.remove(&key);
                }
            }
            (
                open.is_empty(),
                format!(
                    "{} alert(s) still open at the end: {:?}",
                    open.len(),
                    open.iter()
                        .map(|(k, d)| format!("{k} {d}"))
                        .collect::<Vec<_>>()
                ),
                "every triggered alert resolved by the end".into(),
            )
        }
        "no-secret-leak" => {
            let secrets = o
                .secrets
                .iter()
                .filter(|s| !s.is_empty() && o.written.contains(s.as_str()))
                .count();
            let tokens = has_jwt(&o.written);
            (
                secrets == 0 && !tokens,
                format!(
                    "{secrets} secret value(s) and {} access token(s) found in journals, alerts and the report",
                    usize::from(tokens)
                ),
                "no secret or token value anywhere in what the run wrote".into(),
            )
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn checks_say_what_was_required_and_observed() {
        let o = Observations {
            enqueued: 10,
            delivered: 9,
            failed: 1,
            first_failure_at: Some(at("2025-02-14T12:30:00Z")),
            alerts: vec![AlertSeen {
                kind: "delivery-latency".into(),
                key: "k".into(),
                action: "trigger".into(),
                at: at("2025-02-14T12:35:00Z"),
            }],
            token_requests: (0..40)
                .map(|i| (at("2025-02-14T12:30:00Z") + TimeDelta::minutes(i), false))
                .collect(),
            end: at("2025-02-15T00:00:00Z"),
            ..Observations::default()
        };
        let (ok, observed, _) = evaluate("no-loss", Params::default(), &o).unwrap();
        assert!(!ok);
        assert_eq!(
            observed,
            "1 of 10 lost (1 failed, 0 still waiting, 0 unknown)"
        );
        let (ok, observed, _) = evaluate(
            "latency-alert-within",
            Params {
                within: Some(Duration::from_secs(300)),
                ..Params::default()
            },
            &o,
        )
        .unwrap();
        assert!(ok, "{observed}");
        let (ok, observed, _) = evaluate("token-request-budget", Params::default(), &o).unwrap();
        assert!(!ok);
        assert!(
            observed.starts_with("at most 40 token requests in an hour"),
            "{observed}"
        );
        assert!(evaluate("unknown-check", Params::default(), &o).is_none());
        let (ok, _, _) = evaluate("alerts-resolved", Params::default(), &o).unwrap();
        assert!(!ok, "the latency alert was never resolved");
        let leaky = Observations {
            written: "token eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ4In0.c2lnbmF0dXJl".into(),
            ..o.clone()
        };
        assert!(
            !evaluate("no-secret-leak", Params::default(), &leaky)
                .unwrap()
                .0
        );
        let secret = Observations {
            written: "client_secret=Xk78Q~x".into(),
            secrets: vec!["Xk78Q~x".into()],
            ..o
        };
        assert!(
            !evaluate("no-secret-leak", Params::default(), &secret)
                .unwrap()
                .0
        );
    }
}
