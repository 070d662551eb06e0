//! Checks: pure functions from a run's observations to verdicts. Each verdict says, in words
//! and numbers, what was required and what was observed.

pub mod connections;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

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
    /// The user a notice is about (`payload.custom_details.user`), if it names one.
    #[serde(skip)]
    pub user: Option<String>,
}

fn as_rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*at))
}

/// What kind of attempt a wait followed, as the wire shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttemptKind {
    /// A token request.
    Token,
    /// A send: an SMTP transaction or a Graph `sendMail`.
    Send,
}

/// A wait of the subject after a failed attempt, up to its next attempt of the same kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitSeen {
    /// When the failure reached the subject.
    pub at: DateTime<Utc>,
    /// How long until its next attempt.
    pub wait: Duration,
    /// The failure's `Retry-After`, if it carried one.
    pub retry_after: Option<Duration>,
    /// Failures in a row of this kind, this one included.
    pub streak: u32,
    /// Which attempts.
    pub kind: AttemptKind,
}

/// What a run observed; the checks read nothing else.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    /// Messages the harness submitted.
    pub enqueued: u64,
    /// Submitted messages the server accepted at least once (by `Message-ID`).
    pub delivered: u64,
    /// Submitted messages the server never accepted.
    pub lost: u64,
    /// Sends that got no reply after the server had the whole message (the connection ended
    /// after the final dot, or the reply never came): a subject must not send those again.
    pub unknown: u64,
    /// Sends whose outcome the subject could not know: a failure reply for a message the
    /// server kept (each may explain one duplicate).
    pub unknowable: u64,
    /// Messages the server accepted more than once (by `Message-ID`).
    pub duplicated: u64,
    /// Token requests: (instant, succeeded).
    pub token_requests: Vec<(DateTime<Utc>, bool)>,
    /// Alerts the sink accepted.
    pub alerts: Vec<AlertSeen>,
    /// The first delivery attempt that failed.
    pub first_failure_at: Option<DateTime<Utc>>,
    /// The enqueue instant of the first message that waited longer than the latency threshold.
    pub stalled_from: Option<DateTime<Utc>>,
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
    /// What a scan of everything the run wrote down (journals, alert bodies, the report) found.
    pub leaks: Leaks,
    /// Secret values that must never appear in what the run wrote.
    pub secrets: Vec<String>,
    /// The subject's waits after failed attempts, by kind, in order.
    pub waits: Vec<WaitSeen>,
    /// The longest wait the scenario allows between retries.
    pub backoff_cap: Duration,
    /// Inbound messages: (Graph id, arrival).
    pub inbound: Vec<(String, DateTime<Utc>)>,
    /// Messages the subject says it synced: id to (first time asked, how many times).
    pub synced: BTreeMap<String, (DateTime<Utc>, u64)>,
    /// The run's event stream in brief: each kind of event and how often it happened.
    pub events: BTreeMap<String, u64>,
    /// When the first message the server never accepted was submitted.
    pub first_lost_at: Option<DateTime<Utc>>,
    /// The first second acceptance of a message.
    pub first_duplicate_at: Option<DateTime<Utc>>,
    /// What the run showed over time, for the HTML report and the coverage map.
    pub trace: crate::trace::Trace,
    /// Each delegated connection (a multi-tenant app's user) by user principal name.
    pub connections: BTreeMap<String, connections::ConnectionSeen>,
}

impl Observations {
    /// The first alert naming the delivery problem, at or after the first failure.
    pub fn detected_at(&self) -> Option<DateTime<Utc>> {
        self.latency_alert_since(self.first_failure_at?)
    }

    /// When a latency alert was first active at or after `since`: `since` itself if one
    /// triggered earlier and was still open then, else the next trigger.
    fn latency_alert_since(&self, since: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let latency = || self.alerts.iter().filter(|a| a.kind == "delivery-latency");
        let open_at_since = latency()
            .rfind(|a| a.at <= since)
            .is_some_and(|a| a.action == "trigger");
        if open_at_since {
            return Some(since);
        }
        latency()
            .filter(|a| a.action == "trigger" && a.at >= since)
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
    /// `token-request-budget`: requests per hour for one user's connection.
    pub per_user: Option<u64>,
    /// `no-duplicates`: allow one duplicate per send whose outcome was unknowable.
    pub allow_unknowable: bool,
}

/// A check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The check.
    pub id: CheckId,
    /// Whether it held.
    pub verdict: Grade,
    /// The verdict the scenario expects.
    pub expected: Grade,
    /// What was observed, in numbers.
    pub observed: String,
    /// What was required.
    pub detail: String,
    /// The instant it went wrong (or, for a check that held, the instant it is about); not in
    /// the JSON report, which CONTRACTS section 4 fixes.
    #[serde(skip)]
    pub at: Option<DateTime<Utc>>,
}

/// A check, as scenarios name it (`no-loss`, ...).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum CheckId {
    /// Every submitted message accepted by the server.
    NoLoss,
    /// No message accepted twice.
    NoDuplicates,
    /// An expiry alert at least a lead before the credential ends.
    ExpiryAlertLead,
    /// The expiry alert stays open until a working credential exists.
    ExpiryAlertOpenUntilRotated,
    /// A latency alert within a bound of the first failed delivery.
    LatencyAlertWithin,
    /// At most so many token requests in any hour while credentials fail.
    TokenRequestBudget,
    /// Waits after failures honour Retry-After, grow, stay capped and are jittered.
    BackoffShape,
    /// The first delivery within a bound of the rotation.
    RecoveryWithin,
    /// The backlog delivered within a bound of the rotation.
    DrainedWithin,
    /// Every alert triggered is resolved by the end.
    AlertsResolved,
    /// Every inbound message synced exactly once.
    SyncComplete,
    /// No secret or token in the journal, the alerts, the report or the subject's output.
    NoSecretLeak,
    /// No delegated connection given up unless its user or tenant had an event only they
    /// can mend.
    NoFalseDisconnect,
    /// A user-level failure stops mail for that user only.
    UserFailuresIsolated,
    /// Every connection sends again within a bound of the rotation, with no user action.
    AllConnectionsRecoveredWithin,
    /// Chaos only, never written in a scenario: the replay reached the scenario's end.
    #[serde(skip_deserializing)]
    #[schemars(skip)]
    ReplayCompletes,
}

impl CheckId {
    /// Its name in scenarios and reports.
    pub fn name(self) -> &'static str {
        match self {
            CheckId::NoLoss => "no-loss",
            CheckId::NoDuplicates => "no-duplicates",
            CheckId::ExpiryAlertLead => "expiry-alert-lead",
            CheckId::ExpiryAlertOpenUntilRotated => "expiry-alert-open-until-rotated",
            CheckId::LatencyAlertWithin => "latency-alert-within",
            CheckId::TokenRequestBudget => "token-request-budget",
            CheckId::BackoffShape => "backoff-shape",
            CheckId::RecoveryWithin => "recovery-within",
            CheckId::DrainedWithin => "drained-within",
            CheckId::AlertsResolved => "alerts-resolved",
            CheckId::SyncComplete => "sync-complete",
            CheckId::NoSecretLeak => "no-secret-leak",
            CheckId::NoFalseDisconnect => "no-false-disconnect",
            CheckId::UserFailuresIsolated => "user-failures-isolated",
            CheckId::AllConnectionsRecoveredWithin => "all-connections-recovered-within",
            CheckId::ReplayCompletes => "replay-completes",
        }
    }
}

impl std::fmt::Display for CheckId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Pass or fail: a check's verdict, or the one a scenario expects.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Grade {
    /// The check holds.
    #[default]
    Pass,
    /// The check does not hold.
    Fail,
}

impl Grade {
    /// `Pass` when `holds`.
    pub fn of(holds: bool) -> Grade {
        if holds { Grade::Pass } else { Grade::Fail }
    }
}

impl std::fmt::Display for Grade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Grade::Pass => "pass",
            Grade::Fail => "fail",
        })
    }
}

/// Secret values and access tokens found in what a run wrote, scanned piece by piece (a
/// journal entry, an alert body, the report) rather than in one copy of everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leaks {
    /// Which of the run's secret values appeared (indices into [`Observations::secrets`]).
    pub secrets: std::collections::BTreeSet<usize>,
    /// Pieces holding something shaped like an access token.
    pub tokens: u64,
}

impl Leaks {
    /// Scans one piece of written text for `secrets` and access tokens.
    pub fn scan(&mut self, secrets: &[String], text: &str) {
        self.scan_with(&Needles::new(secrets), text);
    }

    /// Scans one piece of written text for the needles' secrets and access tokens.
    pub fn scan_with(&mut self, needles: &Needles, text: &str) {
        for (i, finder) in &needles.secrets {
            if finder.find(text.as_bytes()).is_some() {
                self.secrets.insert(*i);
            }
        }
        if has_jwt(&needles.jwt, text) {
            self.tokens += 1;
        }
    }
}

/// A run's secret values and the token marker, prepared once for a scan of many pieces.
#[derive(Debug, Clone)]
pub struct Needles {
    secrets: Vec<(usize, memchr::memmem::Finder<'static>)>,
    jwt: memchr::memmem::Finder<'static>,
}

impl Needles {
    /// Needles for `secrets` (an empty value finds nothing).
    pub fn new(secrets: &[String]) -> Needles {
        Needles {
            secrets: secrets
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.is_empty())
                .map(|(i, s)| (i, memchr::memmem::Finder::new(s.as_bytes()).into_owned()))
                .collect(),
            jwt: memchr::memmem::Finder::new(b"eyJ").into_owned(),
        }
    }

    /// Whether `bytes` hold a secret value or the start of a token at all. Redaction only
    /// replaces and shortens, so text shown from bytes without either cannot leak: a scan
    /// renders only what this says yes to.
    pub fn may_hold(&self, bytes: &[u8]) -> bool {
        self.jwt.find(bytes).is_some() || self.secrets.iter().any(|(_, f)| f.find(bytes).is_some())
    }
}

/// Whether `text` holds something shaped like a JWT access token.
fn has_jwt(marker: &memchr::memmem::Finder<'_>, text: &str) -> bool {
    marker.find_iter(text.as_bytes()).any(|i| {
        let token = text[i..]
            .bytes()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
        let (mut len, mut dots) = (0, 0);
        for c in token {
            len += 1;
            dots += usize::from(c == b'.');
        }
        dots >= 2 && len > 20
    })
}

/// `text` with every secret value and every access token (a JWT) in it replaced: what a
/// subject printed, fit to show in a report.
pub fn redact_text(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret.as_str(), "[redacted]");
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("eyJ") {
        let len = rest[i..]
            .bytes()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            .count();
        let token = &rest[i..i + len];
        out.push_str(&rest[..i]);
        if token.matches('.').count() >= 2 && len > 20 {
            out.push_str("[redacted token]");
        } else {
            out.push_str(token);
        }
        rest = &rest[i + len..];
    }
    out.push_str(rest);
    out
}

/// Evaluates check `id`: whether it holds, what was observed, what was required.
#[expect(clippy::too_many_lines, reason = "one arm per check, each a few lines")]
pub fn evaluate(id: CheckId, params: Params, o: &Observations) -> (bool, String, String) {
    let within = |default_s: u64| params.within.unwrap_or(Duration::from_secs(default_s));
    // To the millisecond: a drill's real-time instants carry nanoseconds no reader needs.
    let fmt_duration = |d: TimeDelta| {
        let millis = u64::try_from(d.num_milliseconds()).unwrap_or(0);
        humantime::format_duration(Duration::from_millis(millis)).to_string()
    };
    match id {
        CheckId::NoLoss => (
            o.lost == 0,
            format!(
                "{} of {} lost (never accepted by the server); {} send(s) with no reply after the message went",
                o.lost, o.enqueued, o.unknown
            ),
            "every submitted message accepted by the server (matched by Message-ID)".into(),
        ),
        CheckId::NoDuplicates if params.allow_unknowable => (
            o.duplicated <= o.unknowable,
            format!(
                "{} of {} delivered more than once; {} failure repl(ies) for a message the server kept",
                o.duplicated, o.delivered, o.unknowable
            ),
            "no message accepted twice by the server, except one per failure reply for a message the server kept".into(),
        ),
        CheckId::NoDuplicates => (
            o.duplicated == 0,
            format!(
                "{} of {} delivered more than once",
                o.duplicated, o.delivered
            ),
            "no message accepted twice by the server (by Message-ID)".into(),
        ),
        CheckId::ExpiryAlertLead => {
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
        CheckId::LatencyAlertWithin => {
            let bound = within(600);
            let required = format!(
                "a latency alert within {} of the first message that waited longer than the threshold",
                humantime::format_duration(bound)
            );
            match o.stalled_from {
                None => (true, "no message waited longer than the threshold".into(), required),
                Some(stalled) => match o.latency_alert_since(stalled) {
                    Some(alert) => (
                        alert - stalled <= to_chrono(bound),
                        format!(
                            "alert {} after the first stalled message was enqueued ({})",
                            fmt_duration(alert - stalled),
                            rfc3339(stalled)
                        ),
                        required,
                    ),
                    None => (
                        false,
                        format!(
                            "no latency alert after the first stalled message was enqueued ({})",
                            rfc3339(stalled)
                        ),
                        required,
                    ),
                },
            }
        }
        CheckId::TokenRequestBudget => token_request_budget(params, o),
        CheckId::NoFalseDisconnect => connections::no_false_disconnect(o),
        CheckId::UserFailuresIsolated => connections::user_failures_isolated(o, within(900)),
        CheckId::AllConnectionsRecoveredWithin => {
            connections::all_recovered_within(o, within(3600))
        }
        CheckId::RecoveryWithin => {
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
        CheckId::DrainedWithin => {
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
        CheckId::AlertsResolved => {
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
        CheckId::BackoffShape => backoff_shape(o),
        CheckId::ExpiryAlertOpenUntilRotated => expiry_alert_open_until_rotated(o),
        CheckId::SyncComplete => {
            let grace = to_chrono(within(900));
            let due: Vec<&(String, DateTime<Utc>)> =
                o.inbound.iter().filter(|(_, at)| *at + grace <= o.end).collect();
            let missing = due.iter().filter(|(id, _)| !o.synced.contains_key(id)).count();
            let twice = o.synced.values().filter(|(_, n)| *n > 1).count();
            (
                missing == 0 && twice == 0,
                format!(
                    "{} of {} inbound messages synced ({missing} missing, {twice} synced more than once)",
                    due.len() - missing,
                    due.len()
                ),
                format!(
                    "every inbound message that arrived at least {} before the end synced exactly once",
                    fmt_duration(grace)
                ),
            )
        }
        CheckId::NoSecretLeak => {
            let (secrets, tokens) = (o.leaks.secrets.len(), o.leaks.tokens);
            (
                secrets == 0 && tokens == 0,
                format!(
                    "{secrets} secret value(s) and {tokens} access token(s) found in journals, alerts and the report"
                ),
                "no secret or token value anywhere in what the run wrote".into(),
            )
        }
        CheckId::ReplayCompletes => (
            true,
            "the replay reached its end".into(),
            "the replay reaches the scenario's end".into(),
        ),
    }
}

/// `expiry-alert-open-until-rotated`: a credential-expiry alert was triggered before a working
/// credential existed (the rotation, `rotated_at`, or the end when none came), and no
/// credential-expiry alert was resolved before then: a failed rotation (refused, throttled)
/// leaves the incident open.
fn expiry_alert_open_until_rotated(o: &Observations) -> (bool, String, String) {
    let required = "a credential-expiry alert triggered before a working credential existed, and none resolved before then".to_string();
    let until = o.rotated_at.unwrap_or(o.end);
    let until_text = match o.rotated_at {
        Some(at) => format!("the rotation at {}", rfc3339(at)),
        None => "the end (no working credential came)".to_string(),
    };
    let expiry = || o.alerts.iter().filter(|a| a.kind == "credential-expiry");
    let first = expiry()
        .filter(|a| a.action == "trigger" && a.at < until)
        .map(|a| a.at)
        .min();
    let early: Vec<&AlertSeen> = expiry()
        .filter(|a| a.action == "resolve" && a.at < until)
        .collect();
    match first {
        None => (
            false,
            format!("no expiry alert triggered before {until_text}"),
            required,
        ),
        Some(first) => (
            early.is_empty(),
            format!(
                "first expiry alert at {}; {} resolved before {until_text}{}",
                rfc3339(first),
                early.len(),
                early
                    .first()
                    .map(|a| format!(", the first at {}", rfc3339(a.at)))
                    .unwrap_or_default()
            ),
            required,
        ),
    }
}

/// The instant check `id` is about: where it went wrong when it fails (the first lost
/// message's submission, the deadline an alert or a recovery missed, the busiest hour's first
/// failed token request, the first wait that broke the shape, the first alert left open).
pub fn instant(id: CheckId, params: Params, o: &Observations) -> Option<DateTime<Utc>> {
    let within =
        |default_s: u64| to_chrono(params.within.unwrap_or(Duration::from_secs(default_s)));
    match id {
        CheckId::NoLoss => o.first_lost_at,
        CheckId::NoDuplicates => o.first_duplicate_at,
        CheckId::ExpiryAlertLead => {
            let lead = to_chrono(params.lead.unwrap_or(Duration::from_secs(30 * 86_400)));
            o.secret_end.map(|end| (end - lead).max(o.trace.start))
        }
        CheckId::LatencyAlertWithin => o.stalled_from.map(|s| s + within(600)),
        CheckId::TokenRequestBudget => busiest_hour(o),
        CheckId::NoFalseDisconnect => connections::no_false_disconnect_at(o),
        CheckId::UserFailuresIsolated => connections::user_failures_isolated_at(o),
        CheckId::AllConnectionsRecoveredWithin => {
            connections::all_recovered_at(o, params.within.unwrap_or(Duration::from_secs(3600)))
        }
        CheckId::RecoveryWithin => o.rotated_at.map(|r| r + within(60)),
        CheckId::DrainedWithin => o.rotated_at.map(|r| r + within(3600)),
        CheckId::AlertsResolved => {
            let mut open = BTreeMap::new();
            for alert in &o.alerts {
                let key = (alert.kind.as_str(), alert.key.as_str());
                if alert.action == "trigger" {
                    open.insert(key, alert.at);
                } else {
                    open.remove(&key);
                }
            }
            open.values().min().copied()
        }
        CheckId::BackoffShape => {
            let ra = |w: &WaitSeen| w.retry_after.unwrap_or_default();
            o.waits
                .iter()
                .find(|w| {
                    w.wait < ra(w)
                        || (w.kind == AttemptKind::Send && w.wait > o.backoff_cap.max(ra(w)))
                })
                .or(o.waits.iter().find(|w| w.streak >= 4))
                .or(o.waits.first())
                .map(|w| w.at)
        }
        CheckId::SyncComplete => o
            .inbound
            .iter()
            .filter(|(id, _)| !o.synced.contains_key(id))
            .map(|(_, at)| *at)
            .min(),
        CheckId::ExpiryAlertOpenUntilRotated => {
            // The first early resolve; else the first trigger; else the deadline it missed.
            let until = o.rotated_at.unwrap_or(o.end);
            let expiry = || {
                o.alerts
                    .iter()
                    .filter(|a| a.kind == "credential-expiry" && a.at < until)
            };
            let first = |action: &str| expiry().find(|a| a.action == action).map(|a| a.at);
            first("resolve")
                .or_else(|| first("trigger"))
                .or(Some(until))
        }
        CheckId::NoSecretLeak | CheckId::ReplayCompletes => None,
    }
}

/// The first failed token request of the busiest hour while credentials failed.
fn busiest_hour(o: &Observations) -> Option<DateTime<Utc>> {
    connections::peak_hour(&failed_token_requests(o)).map(|(_, at)| at)
}

/// Failed token requests until the rotation (or the end), in time order.
fn failed_token_requests(o: &Observations) -> Vec<DateTime<Utc>> {
    let window_end = o.rotated_at.unwrap_or(o.end);
    let mut failing: Vec<DateTime<Utc>> = o
        .token_requests
        .iter()
        .filter(|(at, ok)| !ok && *at <= window_end)
        .map(|(at, _)| *at)
        .collect();
    failing.sort();
    failing
}

/// `token-request-budget`: failed token requests in any hour while credentials fail, for
/// the whole app, and for one user's connection when `per_user` is given.
fn token_request_budget(params: Params, o: &Observations) -> (bool, String, String) {
    let budget = params.per_hour.unwrap_or(30);
    let failing = failed_token_requests(o);
    let peak = connections::peak_hour(&failing).map_or(0, |(n, _)| n);
    let mut holds = peak as u64 <= budget;
    let mut observed = format!(
        "at most {peak} token requests in an hour while credentials failed ({} failed requests in all)",
        failing.len()
    );
    let mut required =
        format!("at most {budget} token requests in any hour while credentials fail");
    if let Some(per_user) = params.per_user {
        let until = o.rotated_at.unwrap_or(o.end);
        let busiest = connections::busiest_user_hour(o, until);
        let user_peak = busiest.map_or(0, |(n, _, _)| n);
        holds &= user_peak as u64 <= per_user;
        let _ = write!(
            observed,
            "; for one user at most {user_peak}{}",
            busiest
                .map(|(_, upn, _)| format!(" ({upn})"))
                .unwrap_or_default()
        );
        let _ = write!(required, ", at most {per_user} for one user's connection");
    }
    (holds, observed, required)
}

/// `backoff-shape`, from the gaps on the wire between a failed attempt and the next attempt of
/// the same kind: waits honour `Retry-After`, a send's wait stays under the cap, waits grow over
/// a run of failures, and they are spread by jitter. The token endpoint's pace has no cap here
/// (a client may hold a refused credential longer, to keep within `token-request-budget`).
fn backoff_shape(o: &Observations) -> (bool, String, String) {
    let required = format!(
        "every wait at least its Retry-After; a send's wait at most {} (or the Retry-After); the longest wait of each run of 4 or more failures in a row at least twice its shortest; jittered",
        humantime::format_duration(o.backoff_cap)
    );
    if o.waits.is_empty() {
        return (true, "no failure, no wait".into(), required);
    }
    let ra = |w: &WaitSeen| w.retry_after.unwrap_or_default();
    let short = o.waits.iter().filter(|w| w.wait < ra(w)).count();
    let over = o
        .waits
        .iter()
        .filter(|w| w.kind == AttemptKind::Send && w.wait > o.backoff_cap.max(ra(w)))
        .count();
    let (runs, flat) = flat_runs(o);
    // Jitter: waits the backoff chose (not a Retry-After) should rarely repeat exactly.
    let chosen: Vec<Duration> = o
        .waits
        .iter()
        .filter(|w| w.streak >= 2 && w.wait > ra(w))
        .map(|w| w.wait)
        .collect();
    let distinct = chosen
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let jitter_ok = chosen.len() < 8 || distinct * 2 >= chosen.len();
    let longest = o.waits.iter().map(|w| w.wait).max().unwrap_or_default();
    (
        short == 0 && over == 0 && flat == 0 && jitter_ok,
        format!(
            "{} waits, longest {}; {short} shorter than Retry-After, {over} sends over the cap; {flat} of {runs} runs of 4 or more failures did not grow; {distinct} distinct of {} chosen waits",
            o.waits.len(),
            humantime::format_duration(Duration::from_millis(
                u64::try_from(longest.as_millis()).unwrap_or(u64::MAX)
            )),
            chosen.len()
        ),
        required,
    )
}

/// Runs of 4 or more failures in a row (of one kind), and how many of them did not grow: their
/// longest wait under twice their shortest, while the shortest was still under half the cap.
/// Waits a `Retry-After` set say nothing about growth and are left out.
fn flat_runs(o: &Observations) -> (usize, usize) {
    let (mut runs, mut flat) = (0, 0);
    let mut run: Vec<Duration> = Vec::new();
    let mut last: Option<&WaitSeen> = None;
    let mut close = |run: &mut Vec<Duration>| {
        if run.len() >= 4 {
            runs += 1;
            let (min, max) = (run.iter().min(), run.iter().max());
            if let (Some(min), Some(max)) = (min, max)
                && *max < min.saturating_mul(2)
                && *min < o.backoff_cap / 2
            {
                flat += 1;
            }
        }
        run.clear();
    };
    for w in &o.waits {
        let continues = last.is_some_and(|l| l.kind == w.kind && w.streak > l.streak);
        if !continues {
            close(&mut run);
        }
        if w.retry_after.is_none() {
            run.push(w.wait);
        }
        last = Some(w);
    }
    close(&mut run);
    (runs, flat)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expiry(action: &str, at_: &str) -> AlertSeen {
        AlertSeen {
            user: None,
            kind: "credential-expiry".into(),
            key: "7d".into(),
            action: action.into(),
            at: at(at_),
        }
    }

    #[test]
    fn an_expiry_alert_resolved_before_the_rotation_fails_open_until_rotated() {
        let rotated = Observations {
            alerts: vec![
                expiry("trigger", "2025-02-13T09:00:00Z"),
                expiry("resolve", "2025-02-14T13:05:00Z"),
            ],
            rotated_at: Some(at("2025-02-14T13:00:00Z")),
            end: at("2025-02-15T00:00:00Z"),
            ..Observations::default()
        };
        let check =
            |o: &Observations| evaluate(CheckId::ExpiryAlertOpenUntilRotated, Params::default(), o);
        let (ok, observed, _) = check(&rotated);
        assert!(ok, "{observed}");
        assert_eq!(
            observed,
            "first expiry alert at 2025-02-13T09:00:00Z; 0 resolved before the rotation at 2025-02-14T13:00:00Z"
        );
        let mut early = rotated.clone();
        early.alerts[1].at = at("2025-02-13T10:00:00Z");
        let (ok, observed, _) = check(&early);
        assert!(!ok, "{observed}");
        assert!(
            observed.ends_with(", the first at 2025-02-13T10:00:00Z"),
            "{observed}"
        );
        let never = Observations {
            rotated_at: None,
            ..rotated.clone()
        };
        assert!(
            !check(&never).0,
            "resolved although no working credential came"
        );
        let silent = Observations {
            alerts: Vec::new(),
            ..rotated
        };
        assert_eq!(
            check(&silent).1,
            "no expiry alert triggered before the rotation at 2025-02-14T13:00:00Z"
        );
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_check_names_the_instant_it_is_about() {
        let o = Observations {
            first_lost_at: Some(at("2025-02-14T11:40:00Z")),
            rotated_at: Some(at("2025-02-15T02:08:00Z")),
            stalled_from: Some(at("2025-02-14T11:48:00Z")),
            alerts: vec![
                AlertSeen {
                    user: None,
                    kind: "delivery-latency".into(),
                    key: "a".into(),
                    action: "trigger".into(),
                    at: at("2025-02-14T11:50:00Z"),
                },
                AlertSeen {
                    user: None,
                    kind: "credential-expiry".into(),
                    key: "b".into(),
                    action: "trigger".into(),
                    at: at("2025-01-15T11:30:00Z"),
                },
                AlertSeen {
                    user: None,
                    kind: "credential-expiry".into(),
                    key: "b".into(),
                    action: "resolve".into(),
                    at: at("2025-02-15T02:10:00Z"),
                },
            ],
            token_requests: [10, 20, 50, 65, 70, 75]
                .iter()
                .map(|m| (at("2025-02-14T11:30:00Z") + TimeDelta::minutes(*m), false))
                .collect(),
            end: at("2025-02-15T06:00:00Z"),
            ..Observations::default()
        };
        let p = Params {
            within: Some(Duration::from_secs(60)),
            ..Params::default()
        };
        let instant = |id| instant(id, p, &o);
        assert_eq!(instant(CheckId::NoLoss), Some(at("2025-02-14T11:40:00Z")));
        assert_eq!(
            instant(CheckId::RecoveryWithin),
            Some(at("2025-02-15T02:09:00Z"))
        );
        assert_eq!(
            instant(CheckId::LatencyAlertWithin),
            Some(at("2025-02-14T11:49:00Z"))
        );
        // Left open: the latency alert; the expiry alert was resolved.
        assert_eq!(
            instant(CheckId::AlertsResolved),
            Some(at("2025-02-14T11:50:00Z"))
        );
        // Failed requests at 11:40, 11:50, 12:20, 12:35, 12:40, 12:45: the hour from 11:50
        // holds five, every other hour fewer.
        assert_eq!(
            instant(CheckId::TokenRequestBudget),
            Some(at("2025-02-14T11:50:00Z"))
        );
        assert_eq!(instant(CheckId::NoSecretLeak), None);
    }

    #[test]
    fn checks_say_what_was_required_and_observed() {
        let o = Observations {
            enqueued: 10,
            delivered: 9,
            lost: 1,
            first_failure_at: Some(at("2025-02-14T12:30:00Z")),
            alerts: vec![AlertSeen {
                user: None,
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
        let (ok, observed, _) = evaluate(CheckId::NoLoss, Params::default(), &o);
        assert!(!ok);
        assert_eq!(
            observed,
            "1 of 10 lost (never accepted by the server); 0 send(s) with no reply after the message went"
        );
        let (ok, observed, _) = evaluate(
            CheckId::LatencyAlertWithin,
            Params {
                within: Some(Duration::from_secs(300)),
                ..Params::default()
            },
            &o,
        );
        assert!(ok, "{observed}");
        let (ok, observed, _) = evaluate(CheckId::TokenRequestBudget, Params::default(), &o);
        assert!(!ok);
        assert!(
            observed.starts_with("at most 40 token requests in an hour"),
            "{observed}"
        );
        let (ok, _, _) = evaluate(CheckId::AlertsResolved, Params::default(), &o);
        assert!(!ok, "the latency alert was never resolved");
        let mut leaks = Leaks::default();
        leaks.scan(
            &[],
            "token eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ4In0.c2lnbmF0dXJl",
        );
        let leaky = Observations { leaks, ..o.clone() };
        assert!(!evaluate(CheckId::NoSecretLeak, Params::default(), &leaky).0);
        let secrets = vec!["Xk78Q~x".to_string()];
        let mut leaks = Leaks::default();
        leaks.scan(&secrets, "nothing here");
        assert_eq!(leaks, Leaks::default());
        leaks.scan(&secrets, "client_secret=Xk78Q~x");
        let secret = Observations {
            leaks,
            secrets,
            ..o
        };
        assert!(!evaluate(CheckId::NoSecretLeak, Params::default(), &secret).0);
    }
}
