//! Observation: what the harness itself saw during a replay (the mocks' journal, the
//! mailboxes, the alert sink, what it submitted) read into [`Observations`], the same way for
//! any subject. Nothing here reads a subject's own records.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::check::connections::{ConnectionSeen, TokenAnswer};
use crate::check::{AlertSeen, AttemptKind, Leaks, Needles, Observations, WaitSeen};
use crate::fault::Target;
use crate::journal::{Journal, JournalEntry, MockName};
use crate::tenant::{Directory, SharedDirectory};
use crate::time::to_chrono;

use crate::scenario::plan::{Action, Plan};
use crate::tenant::{TenantEvent, UserEvent};
use crate::trace::MarkKind;

use super::trace::{Tracer, outbox_depth};

/// The alert kind (`payload.custom_details.kind`) of a notice that a user must reconnect,
/// naming the user in `payload.custom_details.user`.
pub const NEEDS_USER: &str = "connection-needs-user";

/// What the harness did and heard from the subject, besides what the mocks hold.
#[derive(Debug, Default)]
pub(super) struct Record {
    /// Each submitted message: its `Message-ID` and when it was submitted.
    pub submitted: Vec<(String, DateTime<Utc>)>,
    /// Each inbound message the harness put in the mailbox: Graph id and arrival.
    pub inbound: Vec<(String, DateTime<Utc>)>,
    /// What the subject's processes said they synced, with the instant each was asked.
    pub synced: Vec<(String, DateTime<Utc>)>,
    /// Each submitted message's user, by `Message-ID`, when users connected (delegated).
    pub senders: BTreeMap<String, String>,
}

/// One attempt of the subject as the wire shows it: a token request, a Graph `sendMail`, or
/// an SMTP transaction (from its connection or `MAIL` to its final reply).
#[derive(Debug, Clone, Copy)]
struct Attempt {
    kind: AttemptKind,
    start: DateTime<Utc>,
    /// When the outcome reached the subject.
    end: DateTime<Utc>,
    outcome: Outcome,
    /// No reply ever came: when the subject gave up is not on the wire.
    hung: bool,
    retry_after: Option<u64>,
}

/// What an attempt told the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed,
    /// The server took the message and the subject heard nothing (or a failure): not a failure
    /// to back off from, since for all the subject knows the message went.
    Unknown,
}

impl Outcome {
    /// How the timeline marks a send with this outcome.
    fn mark(self) -> MarkKind {
        match self {
            Outcome::Ok => MarkKind::SendOk,
            Outcome::Failed => MarkKind::SendFailed,
            Outcome::Unknown => MarkKind::SendUnknown,
        }
    }
}

/// Reads everything the harness saw into observations.
pub(super) fn observe(
    plan: &Plan,
    journal: &Journal,
    directory: &SharedDirectory,
    record: Record,
) -> Observations {
    let mut secrets = plan.secret_values();
    let (added_at, added) = added_through_graph(journal);
    secrets.extend(added);
    let accepted = accepted_by_id(directory, &record.submitted);
    let connections = connections(plan, &record, &accepted);
    let mut o = Observations {
        enqueued: record.submitted.len() as u64,
        rotated_at: plan.rotated_at.into_iter().chain(added_at).min(),
        secret_end: Some(plan.credential.end()),
        end: plan.end,
        backoff_cap: plan.settings.backoff_cap,
        inbound: record.inbound,
        ..Observations::default()
    };
    deliveries(&mut o, plan, &record.submitted, &accepted);
    o.connections = connections;
    if !o.connections.is_empty() {
        o.stalled_from = stalled_unaffected(&o, plan);
    }
    let mut tracer = Tracer::default();
    let (attempts, alerts) = read_journal(&mut o, &mut tracer, journal, &secrets, &plan.restarts());
    let alerts = notices(&mut o.connections, alerts);
    o.first_failure_at = attempts
        .iter()
        .filter(|a| a.outcome == Outcome::Failed)
        .map(|a| a.end)
        .min();
    o.waits = waits(&attempts, &plan.restarts());
    o.alerts = alerts;
    let depth = outbox_depth(&record.submitted, &accepted);
    o.trace = tracer.into_trace(plan, &o.alerts, depth, &o.inbound);
    for (id, at) in record.synced {
        o.synced.entry(id).or_insert((at, 0)).1 += 1;
    }
    o.secrets = secrets;
    o
}

/// Each delegated connection's messages (submitted, first accepted) and the first instant the
/// timeline hit the user or the user's tenant with an event only they can mend.
fn connections(
    plan: &Plan,
    record: &Record,
    accepted: &BTreeMap<String, Vec<DateTime<Utc>>>,
) -> BTreeMap<String, ConnectionSeen> {
    let Some(delegated) = &plan.delegated else {
        return BTreeMap::new();
    };
    let mut seen: BTreeMap<String, ConnectionSeen> = delegated
        .connections
        .iter()
        .map(|c| (c.upn.clone(), ConnectionSeen::default()))
        .collect();
    for (id, at) in &record.submitted {
        let first = accepted.get(id).and_then(|t| t.first().copied());
        if let Some(c) = record.senders.get(id).and_then(|u| seen.get_mut(u)) {
            c.messages.push((*at, first));
        }
    }
    for step in &plan.steps {
        let hit: Vec<&str> = match &step.action {
            Action::User { event, .. } if *event == UserEvent::EnableUser => vec![],
            Action::User { upn, .. } => vec![upn.as_str()],
            Action::Tenant { event, .. } if *event == TenantEvent::EnableApp => vec![],
            Action::Tenant { tenant, .. } => delegated
                .connections
                .iter()
                .filter(|c| c.tenant_id.eq_ignore_ascii_case(tenant))
                .map(|c| c.upn.as_str())
                .collect(),
            _ => vec![],
        };
        for upn in hit {
            if let Some(c) = seen.get_mut(upn) {
                c.user_event_at = Some(c.user_event_at.map_or(step.at, |e| e.min(step.at)));
            }
        }
    }
    seen
}

/// The first stalled message of a user whom no user- or tenant-level event hit: mail that
/// waits for its user to reconnect is the product's to show, not a delivery stall to page.
fn stalled_unaffected(o: &Observations, plan: &Plan) -> Option<DateTime<Utc>> {
    let threshold = to_chrono(plan.settings.latency_threshold);
    o.connections
        .values()
        .filter(|c| c.user_event_at.is_none())
        .flat_map(|c| &c.messages)
        .filter(|(at, accepted)| accepted.unwrap_or(plan.end) - *at > threshold)
        .map(|(at, _)| *at)
        .min()
}

/// What the token endpoint told a delegated token request, from its status and `error`.
fn token_answer(e: &JournalEntry) -> TokenAnswer {
    let body = serde_json::from_slice::<Value>(e.response_body.raw()).ok();
    let error = body.as_ref().and_then(|b| b.get("error")?.as_str());
    let status = if cut(e) { None } else { e.status };
    TokenAnswer::of(status, error)
}

/// The alerts without the notices that a user must reconnect (`connection-needs-user`: the
/// product tells the customer, it pages nobody), each notice noted on its connection.
fn notices(
    connections: &mut BTreeMap<String, ConnectionSeen>,
    alerts: Vec<AlertSeen>,
) -> Vec<AlertSeen> {
    let (notices, alerts): (Vec<AlertSeen>, Vec<AlertSeen>) = alerts
        .into_iter()
        .partition(|a| a.kind == NEEDS_USER && a.user.is_some());
    for notice in notices.iter().filter(|n| n.action == "trigger") {
        let c = notice.user.as_ref().and_then(|u| connections.get_mut(u));
        if let Some(c) = c.filter(|c| c.notified_at.is_none()) {
            c.notified_at = Some(notice.at);
        }
    }
    alerts
}

/// Secrets added through Graph (`addPassword` answered 200, whoever called it): when the first
/// answer left, and every secret's text, which must not show anywhere either.
fn added_through_graph(journal: &Journal) -> (Option<DateTime<Utc>>, Vec<String>) {
    journal.with_entries(|entries| {
        let mut first = None;
        let mut secrets = Vec::new();
        for e in entries {
            if e.mock != MockName::Graph || e.operation != "add-password" || e.status != Some(200) {
                continue;
            }
            first = first.or(Some(e.at + to_chrono(e.facts.delay)));
            let text = serde_json::from_slice::<Value>(e.response_body.raw())
                .ok()
                .and_then(|v| v.get("secretText")?.as_str().map(str::to_string));
            secrets.extend(text);
        }
        (first, secrets)
    })
}

/// Each submitted message's acceptances by the server, by `Message-ID`, in time order.
fn accepted_by_id(
    directory: &SharedDirectory,
    submitted: &[(String, DateTime<Utc>)],
) -> BTreeMap<String, Vec<DateTime<Utc>>> {
    let mut accepted: BTreeMap<String, Vec<DateTime<Utc>>> = submitted
        .iter()
        .map(|(id, _)| (id.clone(), Vec::new()))
        .collect();
    for tenant in Directory::lock(directory).tenants() {
        for mailbox in &tenant.mailboxes {
            for sent in mailbox.sent() {
                if let Some(times) = sent
                    .message_id
                    .as_deref()
                    .and_then(|id| accepted.get_mut(id))
                {
                    times.push(sent.accepted_at);
                }
            }
        }
    }
    for times in accepted.values_mut() {
        times.sort();
    }
    accepted
}

/// Delivered, lost and duplicated messages, the stall, the recovery and the drain.
fn deliveries(
    o: &mut Observations,
    plan: &Plan,
    submitted: &[(String, DateTime<Utc>)],
    accepted: &BTreeMap<String, Vec<DateTime<Utc>>>,
) {
    let first = |id: &str| accepted.get(id).and_then(|t| t.first().copied());
    o.delivered = accepted.values().filter(|t| !t.is_empty()).count() as u64;
    o.duplicated = accepted.values().filter(|t| t.len() > 1).count() as u64;
    o.lost = o.enqueued - o.delivered;
    o.first_lost_at = submitted
        .iter()
        .filter(|(id, _)| first(id).is_none())
        .map(|(_, at)| *at)
        .min();
    o.first_duplicate_at = accepted.values().filter_map(|t| t.get(1)).min().copied();
    let threshold = to_chrono(plan.settings.latency_threshold);
    o.stalled_from = submitted
        .iter()
        .filter(|(id, at)| first(id).unwrap_or(plan.end) - *at > threshold)
        .map(|(_, at)| *at)
        .min();
    let Some(rotated) = o.rotated_at else {
        return;
    };
    o.recovered_at = accepted
        .values()
        .flatten()
        .filter(|at| **at >= rotated)
        .min()
        .copied();
    let backlog: Vec<Option<DateTime<Utc>>> = submitted
        .iter()
        .filter(|(_, at)| *at < rotated)
        .map(|(id, _)| first(id))
        .collect();
    o.drained_at = backlog
        .iter()
        .copied()
        .collect::<Option<Vec<_>>>()
        .map(|times| times.into_iter().max().map_or(rotated, |d| d.max(rotated)));
}

/// One pass over the journal, in place (a 45-day journal is tens of megabytes): token
/// requests, attempts, alerts the sink accepted, unknowable sends, leaks and the tally.
fn read_journal(
    o: &mut Observations,
    tracer: &mut Tracer,
    journal: &Journal,
    secrets: &[String],
    restarts: &[DateTime<Utc>],
) -> (Vec<Attempt>, Vec<AlertSeen>) {
    journal.with_entries(|entries| {
        let needles = Needles::new(secrets);
        let mut line = String::new();
        let mut answered = BTreeMap::<(MockName, &str, Result<u16, &str>), u64>::new();
        let mut attempts = Vec::new();
        let mut smtp = SmtpAttempts::default();
        let mut alerts = AlertReader::default();
        for e in entries {
            scan(&mut o.leaks, &needles, &mut line, e);
            tracer.entry(e);
            *answered
                .entry((e.mock, e.operation, e.status.ok_or(&*e.delivery)))
                .or_default() += 1;
            if unknowable(e) || killed_in_flight(e, restarts) {
                o.unknowable += 1;
            }
            if unknown(e) {
                o.unknown += 1;
            }
            match (e.mock, e.operation) {
                (MockName::Entra, "token") => {
                    o.token_requests.push((e.at, e.status == Some(200)));
                    if let Some(c) = e.user.as_ref().and_then(|u| o.connections.get_mut(u)) {
                        c.token_requests.push((e.at, token_answer(e)));
                    }
                    attempts.push(http_attempt(AttemptKind::Token, e));
                }
                (MockName::Graph, "send-mail") => {
                    let attempt = http_attempt(AttemptKind::Send, e);
                    tracer.send(Target::Graph, attempt.end, attempt.outcome.mark());
                    attempts.push(attempt);
                }
                (MockName::Smtp, _) => {
                    let before = attempts.len();
                    smtp.read(e, &mut attempts);
                    for a in &attempts[before..] {
                        tracer.send(Target::Smtp, a.end, a.outcome.mark());
                    }
                }
                (MockName::Alerts, "enqueue") => alerts.read(e),
                _ => {}
            }
        }
        for ((mock, operation, status), n) in answered {
            let status = status.map_or_else(str::to_string, |s| s.to_string());
            *o.events
                .entry(format!("{mock} {operation} {status}"))
                .or_default() += n;
        }
        attempts.sort_by_key(|a| (a.kind, a.start));
        (attempts, alerts.seen)
    })
}

/// What a journal line shows, piece by piece; a body is rendered (redacted) only when its
/// bytes could show a secret or a token at all.
fn scan(leaks: &mut Leaks, needles: &Needles, line: &mut String, e: &JournalEntry) {
    leaks.scan_with(needles, &e.request);
    if let Some(fault) = &e.fault {
        leaks.scan_with(needles, fault);
    }
    for body in [&e.request_body, &e.response_body] {
        if needles.may_hold(body.raw()) {
            line.clear();
            let _ = write!(line, "{body}");
            leaks.scan_with(needles, line);
        }
    }
}

/// A send the server accepted whose reply was still on its way (a latency or bandwidth fault)
/// when the harness restarted the subject: the process that sent it never heard, and the next
/// one cannot know (one duplicate forgiven each, as for a failure reply).
fn killed_in_flight(e: &JournalEntry, restarts: &[DateTime<Utc>]) -> bool {
    let accepted_send = match e.mock {
        MockName::Graph => e.operation == "send-mail",
        MockName::Smtp => e.operation == "end-of-data",
        _ => false,
    } && e.status.is_some_and(|s| s < 300);
    let reply_at = e.at + to_chrono(e.facts.delay);
    accepted_send && restarts.iter().any(|r| e.at <= *r && *r < reply_at)
}

/// A send the server kept while the subject heard a failure: it could not know, and may send
/// it again (one duplicate forgiven each).
fn unknowable(e: &JournalEntry) -> bool {
    e.mock == MockName::Graph
        && e.operation == "send-mail"
        && e.status.is_some()
        && e.fault
            .as_deref()
            .is_some_and(|f| f.starts_with("fail_but_deliver"))
}

/// A send that got no reply after the server had the whole message: the subject must count it
/// as maybe sent, never send it again.
fn unknown(e: &JournalEntry) -> bool {
    let smtp = e.mock == MockName::Smtp
        && e.operation == "end-of-data"
        && matches!(
            &*e.delivery,
            "drop after data" | "reset" | "hang" | "limit data"
        );
    let graph = e.mock == MockName::Graph
        && e.operation == "send-mail"
        && (e.delivery.starts_with("hang") || cut(e));
    smtp || graph
}

/// A reply the subject got only the first bytes of (`limit_data`): whatever its status, the
/// subject saw a broken exchange.
fn cut(e: &JournalEntry) -> bool {
    e.delivery.starts_with("truncate") || e.delivery == "limit data"
}

fn http_attempt(kind: AttemptKind, e: &JournalEntry) -> Attempt {
    let hung = e.status.is_none() && e.delivery.starts_with("hang");
    let outcome = if e.status.is_some_and(|s| (200..300).contains(&s)) && !cut(e) {
        Outcome::Ok
    } else if unknown(e) {
        Outcome::Unknown
    } else {
        Outcome::Failed
    };
    Attempt {
        kind,
        start: e.at,
        end: e.at + to_chrono(e.facts.delay),
        outcome,
        hung,
        retry_after: e.facts.retry_after,
    }
}

/// SMTP transactions, from each connection's entries: the first starts at the connection,
/// later ones at `MAIL`; each ends at its final reply to the message, or at the first reply
/// that refuses (or a connection that drops). A transaction left without its end when the
/// subject opens another connection was given up (the subject's own timeout): a failed attempt
/// that ends at its last entry, and no wait of its own is measured.
#[derive(Debug, Default)]
struct SmtpAttempts {
    /// Open transactions by connection: when each began and its latest entry.
    open: BTreeMap<u64, (DateTime<Utc>, DateTime<Utc>)>,
}

impl SmtpAttempts {
    fn read(&mut self, e: &JournalEntry, attempts: &mut Vec<Attempt>) {
        let connection = e.facts.connection;
        if e.operation == "connect" {
            self.abandoned(connection, e.at, attempts);
        }
        if e.operation == "connect" || e.operation == "mail" {
            self.open.entry(connection).or_insert((e.at, e.at));
        }
        let Some((start, last)) = self.open.get_mut(&connection) else {
            return;
        };
        *last = e.at;
        let start = *start;
        let refused = e.status.is_none_or(|s| s >= 400)
            || matches!(
                &*e.delivery,
                "drop after data" | "tls failure" | "limit data"
            );
        let done = matches!(e.operation, "end-of-data")
            || (e.operation == "bdat" && e.request.to_ascii_uppercase().contains("LAST"));
        if refused || done {
            self.open.remove(&connection);
            let outcome = match (refused, unknown(e)) {
                (_, true) => Outcome::Unknown,
                (true, false) => Outcome::Failed,
                (false, false) => Outcome::Ok,
            };
            attempts.push(Attempt {
                kind: AttemptKind::Send,
                start,
                end: e.at + to_chrono(e.facts.delay),
                outcome,
                hung: e.delivery == "hang",
                retry_after: None,
            });
        }
    }

    /// Closes the transactions of other connections idle since before `at`, when `connection`
    /// opens: the subject gave up on them.
    fn abandoned(&mut self, connection: u64, at: DateTime<Utc>, attempts: &mut Vec<Attempt>) {
        let given_up: Vec<u64> = self
            .open
            .iter()
            .filter(|(c, (_, last))| **c != connection && *last < at)
            .map(|(c, _)| *c)
            .collect();
        for c in given_up {
            if let Some((start, last)) = self.open.remove(&c) {
                attempts.push(Attempt {
                    kind: AttemptKind::Send,
                    start,
                    end: last,
                    outcome: Outcome::Failed,
                    hung: true,
                    retry_after: None,
                });
            }
        }
    }
}

/// Alerts as the sink saw them, each at the first time the subject posted it: a sink the
/// scenario takes down does not make a subject late, and retries of an event the sink has not
/// accepted yet are the same alert. A trigger's kind is `payload.custom_details.kind`, else read
/// from its summary; a resolve takes the kind of the trigger with its `dedup_key`.
#[derive(Debug, Default)]
struct AlertReader {
    kinds: BTreeMap<String, String>,
    /// Events posted and not accepted yet: (action, dedup key).
    pending: std::collections::BTreeSet<(String, String)>,
    seen: Vec<AlertSeen>,
}

impl AlertReader {
    fn read(&mut self, e: &JournalEntry) {
        let Ok(event) = serde_json::from_slice::<Value>(e.request_body.raw()) else {
            return;
        };
        let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str);
        let action = text("/event_action").unwrap_or("").to_string();
        let key = text("/dedup_key").unwrap_or("").to_string();
        let accepted = e.status == Some(202);
        let event_key = (action.clone(), key.clone());
        if self.pending.contains(&event_key) {
            if accepted {
                self.pending.remove(&event_key);
            }
            return;
        }
        if !accepted && e.status.is_none_or(|s| s >= 500 || s == 429) {
            self.pending.insert(event_key);
        } else if !accepted {
            // The sink refused the event itself (400): it is no alert.
            return;
        }
        let kind = if action == "trigger" {
            let kind = text("/payload/custom_details/kind").map_or_else(
                || kind_from_summary(text("/payload/summary").unwrap_or("")),
                str::to_string,
            );
            self.kinds.insert(key.clone(), kind.clone());
            kind
        } else {
            self.kinds
                .get(&key)
                .cloned()
                .unwrap_or_else(|| "other".into())
        };
        let user = text("/payload/custom_details/user").map(str::to_string);
        self.seen.push(AlertSeen {
            kind,
            key,
            action,
            at: e.at,
            user,
        });
    }
}

/// An alert kind from a summary without `custom_details.kind`.
fn kind_from_summary(summary: &str) -> String {
    let summary = summary.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| summary.contains(w));
    if has(&["expir", "secret", "certificate", "credential"]) {
        "credential-expiry".into()
    } else if has(&["latency", "delay", "stall", "stuck", "queue", "backlog"]) {
        "delivery-latency".into()
    } else {
        "other".into()
    }
}

/// The subject's waits: from each failed attempt's outcome to its next attempt of the same
/// kind, whatever came of that one. Left out: a hung attempt's wait (not on the wire: the
/// subject's own timeout ran first), an attempt that began before the failure came back (it ran
/// beside it), a gap in which the subject tried the other kind (its trouble moved: a send waits
/// while the token endpoint is probed), and a gap across a restart (a new process starts
/// afresh). Attempts with an unknown outcome end a wait but are neither failures nor successes.
fn waits(attempts: &[Attempt], restarts: &[DateTime<Utc>]) -> Vec<WaitSeen> {
    let between =
        |from: DateTime<Utc>, to: DateTime<Utc>| restarts.iter().any(|r| *r >= from && *r <= to);
    let other_inside = |kind: AttemptKind, from: DateTime<Utc>, to: DateTime<Utc>| {
        attempts
            .iter()
            .any(|a| a.kind != kind && a.start > from && a.start < to)
    };
    let mut waits = Vec::new();
    let mut streak = 0;
    let mut previous: Option<&Attempt> = None;
    for (i, attempt) in attempts.iter().enumerate() {
        if attempt.outcome == Outcome::Unknown {
            continue;
        }
        if previous.is_none_or(|p| p.kind != attempt.kind || between(p.end, attempt.start)) {
            streak = 0;
        }
        previous = Some(attempt);
        if attempt.outcome == Outcome::Ok {
            streak = 0;
            continue;
        }
        streak += 1;
        let Some(next) = attempts.get(i + 1).filter(|n| n.kind == attempt.kind) else {
            continue;
        };
        if attempt.hung
            || next.start < attempt.end
            || between(attempt.end, next.start)
            || other_inside(attempt.kind, attempt.end, next.start)
        {
            continue;
        }
        waits.push(WaitSeen {
            at: attempt.end,
            wait: (next.start - attempt.end).to_std().unwrap_or_default(),
            retry_after: attempt.retry_after.map(std::time::Duration::from_secs),
            streak,
            kind: attempt.kind,
        });
    }
    waits
}
