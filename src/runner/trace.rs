//! Building a replay's [`Trace`]: windows and steps from the plan, marks and coverage hits from
//! the journal as `observe` reads it, outbox depth and sync lag from what was submitted and
//! accepted. It reads nothing a subject says about itself.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::check::AlertSeen;
use crate::fault::FaultName;
use crate::fault::Target;
use crate::journal::{JournalEntry, MockName};
use crate::scenario::plan::{Action, Credential, Plan};
use crate::trace::{FaultRow, Lane, Mark, MarkKind, Stage, TokenAnswer, Trace, Window};

/// The trace's frame, windows and steps, from the plan alone.
pub(super) fn from_plan(plan: &Plan) -> Trace {
    let mut trace = Trace {
        start: plan.start,
        end: plan.end,
        ..Trace::default()
    };
    credential_windows(plan, &mut trace);
    fault_windows(plan, &mut trace);
    for step in &plan.steps {
        let (lane, kind) = match &step.action {
            Action::Restart => (Lane::Restarts, MarkKind::Restart),
            Action::Rotate(_) | Action::RotateCertificate(_) | Action::RestoreApp => {
                (Lane::Credentials, MarkKind::Rotation)
            }
            // A rotation through Graph is an attempt (a policy or throttling may refuse it);
            // the working credential shows where the journal says the rotation took.
            Action::Paste(_)
            | Action::DeleteApp
            | Action::ExpireDeltaTokens
            | Action::RotateViaGraph(_)
            // A user's or a customer tenant's event (revoked sessions, withdrawn consent, ...)
            // changes what that user's credentials can do.
            | Action::User { .. }
            | Action::Tenant { .. }
            | Action::Reconnect { .. } => (Lane::Credentials, MarkKind::CredentialChange),
            Action::ClearFaults(_) => continue,
        };
        trace.marks.push(Mark {
            at: step.at,
            lane,
            kind,
            note: step.action.describe(),
        });
    }
    trace
}

/// Each secret's and certificate's validity, clipped to the run.
fn credential_windows(plan: &Plan, trace: &mut Trace) {
    let mut push = |from: DateTime<Utc>, until: DateTime<Utc>, label: String| {
        let (from, until) = (from.max(plan.start), until.min(plan.end));
        if from < until {
            trace.windows.push(Window {
                from,
                until,
                lane: Lane::Credentials,
                label,
            });
        }
    };
    for app in plan.tenant.apps.iter() {
        for secret in &app.secrets {
            let label = format!("secret {} valid", secret.display_name);
            push(secret.start, secret.end, label);
        }
        for cert in &app.certificates {
            let label = format!("certificate {} valid", cert.display_name);
            push(cert.start, cert.end, label);
        }
    }
    for step in &plan.steps {
        if let Action::RotateCertificate(c) = &step.action {
            push(
                step.at.max(c.start),
                c.end,
                "rotated certificate valid".into(),
            );
        }
    }
    if let Credential::Certificate(c) = &plan.credential
        && !plan.tenant.apps.iter().any(|a| !a.certificates.is_empty())
    {
        push(c.start, c.end, "certificate valid".into());
    }
}

/// Each fault's window: from its `from` (or the start) until its `until`, the first step that
/// clears its target, or the end.
fn fault_windows(plan: &Plan, trace: &mut Trace) {
    for fault in &plan.faults {
        let from = fault.activation.from.unwrap_or(plan.start).max(plan.start);
        let cleared = plan
            .steps
            .iter()
            .filter(|s| matches!(s.action, Action::ClearFaults(t) if t == fault.target))
            .map(|s| s.at)
            .filter(|at| *at >= from)
            .min();
        let until = [fault.activation.until, cleared, Some(plan.end)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(plan.end);
        let on = fault.operation.as_deref().unwrap_or("every operation");
        let mut label = format!("{} on {} {on}", fault.kind, fault.target.name());
        if let Some(n) = fault.activation.first {
            label.push_str(&format!(", first {n}"));
        }
        if let Some(p) = fault.activation.probability {
            label.push_str(&format!(", probability {p}"));
        }
        if from < until {
            trace.windows.push(Window {
                from,
                until,
                lane: Lane::Faults,
                label,
            });
        }
    }
}

/// What the token endpoint's reply was, as the timeline and the map tell it apart.
fn token_answer(e: &JournalEntry) -> TokenAnswer {
    let cut = e.delivery.starts_with("truncate") || e.delivery == "limit data";
    match e.status {
        _ if cut => TokenAnswer::NoReply,
        None => TokenAnswer::NoReply,
        Some(200..=299) => TokenAnswer::Ok,
        Some(429) => TokenAnswer::Throttled,
        Some(401) if has_error(e, "invalid_client") => TokenAnswer::InvalidClient,
        Some(400..=499) => TokenAnswer::OtherRefusal,
        Some(_) => TokenAnswer::Unavailable,
    }
}

fn has_error(e: &JournalEntry, error: &str) -> bool {
    let needle = format!("\"error\":\"{error}\"");
    memchr::memmem::find(e.response_body.raw(), needle.as_bytes()).is_some()
}

/// The stage an entry reached, if the map has a column for it.
fn stage(e: &JournalEntry) -> Option<Stage> {
    Some(match (e.mock, e.operation) {
        (MockName::Entra, "token") => Stage::Token(token_answer(e)),
        (MockName::Smtp, "connect") => Stage::SmtpConnect,
        (MockName::Smtp, "ehlo" | "helo") => Stage::SmtpEhlo,
        (MockName::Smtp, "starttls") => Stage::SmtpStartTls,
        (MockName::Smtp, "auth") => Stage::SmtpAuth,
        (MockName::Smtp, "mail") => Stage::SmtpMail,
        (MockName::Smtp, "rcpt") => Stage::SmtpRcpt,
        (MockName::Smtp, "data" | "data-line" | "bdat") => Stage::SmtpData,
        (MockName::Smtp, "end-of-data") => Stage::SmtpAfterDot,
        (MockName::Graph, "send-mail") => Stage::GraphSendMail,
        (MockName::Graph, "delta") => Stage::GraphDelta,
        (MockName::Graph, "applications" | "add-password" | "remove-password") => {
            Stage::GraphApplications
        }
        (MockName::Alerts, _) => Stage::AlertSink,
        _ => return None,
    })
}

/// What `observe` hands over entry by entry: token marks, coverage hits, successful syncs.
#[derive(Debug, Default)]
pub(super) struct Tracer {
    pub marks: Vec<Mark>,
    pub hits: BTreeMap<(FaultRow, Stage), u64>,
    /// Instants of delta syncs answered 200.
    pub synced_at: Vec<DateTime<Utc>>,
}

impl Tracer {
    /// Reads one journal entry.
    pub fn entry(&mut self, e: &JournalEntry) {
        let Some(stage) = stage(e) else {
            return;
        };
        let row = match e.fault.as_deref().map(FaultName::of_journal) {
            Some(Some(name)) => Some(FaultRow::Fault(name)),
            Some(None) => None,
            None => FaultRow::Credential
                .applies_to(stage)
                .then_some(FaultRow::Credential),
        };
        if let Some(row) = row {
            *self.hits.entry((row, stage)).or_default() += 1;
        }
        if let Stage::Token(answer) = stage {
            let kind = match answer {
                TokenAnswer::Ok => MarkKind::TokenOk,
                TokenAnswer::InvalidClient | TokenAnswer::OtherRefusal => MarkKind::TokenCredential,
                TokenAnswer::Throttled => MarkKind::TokenThrottled,
                TokenAnswer::Unavailable | TokenAnswer::NoReply => MarkKind::TokenTransient,
            };
            let note = e
                .status
                .map_or_else(|| e.delivery.to_string(), |s| s.to_string());
            self.marks.push(Mark {
                at: e.at,
                lane: Lane::Token,
                kind,
                note,
            });
        }
        if stage == Stage::GraphDelta && e.status == Some(200) {
            self.synced_at.push(e.at);
        }
    }

    /// A send attempt's outcome reached the subject.
    pub fn send(&mut self, target: Target, at: DateTime<Utc>, kind: MarkKind) {
        let lane = if target == Target::Smtp {
            Lane::Smtp
        } else {
            Lane::Graph
        };
        self.marks.push(Mark {
            at,
            lane,
            kind,
            note: String::new(),
        });
    }

    /// The trace: the plan's frame and steps with everything read from the wire.
    pub fn into_trace(
        self,
        plan: &Plan,
        alerts: &[AlertSeen],
        depth: Vec<(DateTime<Utc>, u64)>,
        inbound: &[(String, DateTime<Utc>)],
    ) -> Trace {
        let mut trace = from_plan(plan);
        trace.marks.extend(self.marks);
        trace.marks.extend(alerts.iter().map(|a| Mark {
            at: a.at,
            lane: Lane::Alerts,
            kind: if a.action == "trigger" {
                MarkKind::AlertTrigger
            } else {
                MarkKind::AlertResolve
            },
            note: a.kind.clone(),
        }));
        trace.outbox = depth;
        trace.sync_lag = inbound
            .iter()
            .map(|(_, arrived)| {
                let next = self.synced_at.iter().find(|s| **s > *arrived);
                (*arrived, next.and_then(|s| (*s - *arrived).to_std().ok()))
            })
            .collect();
        trace.hits = self.hits;
        trace.finish();
        trace
    }
}

/// Outbox depth over time: +1 at each submission, -1 at each message's first acceptance.
pub(super) fn outbox_depth(
    submitted: &[(String, DateTime<Utc>)],
    accepted: &BTreeMap<String, Vec<DateTime<Utc>>>,
) -> Vec<(DateTime<Utc>, u64)> {
    let mut changes: Vec<(DateTime<Utc>, i64)> = submitted.iter().map(|(_, at)| (*at, 1)).collect();
    changes.extend(
        accepted
            .values()
            .filter_map(|times| times.first())
            .map(|at| (*at, -1)),
    );
    changes.sort();
    let mut depth: i64 = 0;
    let mut out: Vec<(DateTime<Utc>, u64)> = Vec::new();
    for (at, change) in changes {
        depth += change;
        let value = u64::try_from(depth).unwrap_or(0);
        match out.last_mut() {
            Some(last) if last.0 == at => last.1 = value,
            _ => out.push((at, value)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("a valid instant")
    }

    #[test]
    fn outbox_depth_rises_with_submissions_and_falls_with_first_acceptances() {
        let submitted = vec![
            ("a".to_string(), at("2025-02-14T10:00:00Z")),
            ("b".to_string(), at("2025-02-14T11:00:00Z")),
        ];
        let accepted = BTreeMap::from([
            (
                "a".to_string(),
                vec![at("2025-02-14T12:00:00Z"), at("2025-02-14T13:00:00Z")],
            ),
            ("b".to_string(), vec![]),
        ]);
        let depth = outbox_depth(&submitted, &accepted);
        assert_eq!(
            depth,
            vec![
                (at("2025-02-14T10:00:00Z"), 1),
                (at("2025-02-14T11:00:00Z"), 2),
                (at("2025-02-14T12:00:00Z"), 1),
            ]
        );
    }
}
