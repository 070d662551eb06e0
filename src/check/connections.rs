//! The checks of delegated connections (a multi-tenant app's users), from the wire: which
//! connections the subject gave up and why, whether one user's failure reached other users,
//! whether every connection came back after the rotation, and token requests per user.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::Observations;
use crate::time::{rfc3339, to_chrono};

/// How long after a connection's last failed token request the subject must have tried again,
/// while mail waited, for the connection to count as still held rather than given up.
const GIVEN_UP_AFTER: TimeDelta = TimeDelta::hours(1);

/// What the token endpoint told the subject about one user's code or refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TokenAnswer {
    /// A token.
    Ok,
    /// The app's own credential or registration failed (`invalid_client`,
    /// `unauthorized_client`): every user's refresh fails alike, none is the user's fault.
    App,
    /// The user's grant failed (`invalid_grant`, `interaction_required`, `consent_required`):
    /// only the user can mend it.
    User,
    /// The app is disabled or gone in the user's tenant (`unauthorized_client`): only that
    /// tenant's admin can mend it (or, in every tenant at once, the app's own registration).
    Tenant,
    /// Throttled, unavailable, cut or unanswered: try again later.
    Transient,
}

impl TokenAnswer {
    /// The answer of a token response with `status` and body `error`.
    pub fn of(status: Option<u16>, error: Option<&str>) -> TokenAnswer {
        match (status, error) {
            (Some(200), _) => TokenAnswer::Ok,
            (Some(s), _) if s == 429 || s >= 500 => TokenAnswer::Transient,
            (None, _) => TokenAnswer::Transient,
            (_, Some("invalid_grant" | "interaction_required" | "consent_required")) => {
                TokenAnswer::User
            }
            (_, Some("unauthorized_client")) => TokenAnswer::Tenant,
            (_, Some("invalid_client")) => TokenAnswer::App,
            // Any other refusal (a malformed request, an unknown tenant) is not the user's.
            (Some(_), _) => TokenAnswer::App,
        }
    }

    fn failed(self) -> bool {
        self != TokenAnswer::Ok
    }

    fn name(self) -> &'static str {
        match self {
            TokenAnswer::Ok => "success",
            TokenAnswer::App => "app-level failure",
            TokenAnswer::User => "user-level failure",
            TokenAnswer::Tenant => "tenant-level failure",
            TokenAnswer::Transient => "transient failure",
        }
    }
}

/// What the harness saw of one user's connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionSeen {
    /// Token requests with this user's code or refresh token, in time order.
    pub token_requests: Vec<(DateTime<Utc>, TokenAnswer)>,
    /// Messages submitted as this user: when, and when the server first accepted each.
    pub messages: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)>,
    /// When the subject told the product this user must act (a `connection-needs-user`
    /// notice at the alert sink).
    pub notified_at: Option<DateTime<Utc>>,
    /// When the timeline first hit this user (or the user's tenant) with an event only the
    /// user or an admin can mend.
    pub user_event_at: Option<DateTime<Utc>>,
}

/// A connection the subject gave up: when, and the answer it gave up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GivenUp {
    /// The failed token request it gave up after (or the notice, if earlier).
    pub at: DateTime<Utc>,
    /// What that request was told.
    pub cause: TokenAnswer,
    /// The user's messages never accepted.
    pub thrown_away: usize,
}

impl ConnectionSeen {
    /// Whether and why the subject gave this connection up: it told the product the user must
    /// act, or its last token request for the user failed and it never tried again in the hour
    /// after, while the user's mail waited and a working credential existed.
    pub fn given_up(&self, working_from: DateTime<Utc>, end: DateTime<Utc>) -> Option<GivenUp> {
        let thrown_away = self.messages.iter().filter(|(_, a)| a.is_none()).count();
        let cause_before = |at: DateTime<Utc>| {
            self.token_requests
                .iter()
                .rfind(|(t, answer)| *t <= at && answer.failed())
                .map_or(TokenAnswer::App, |(_, answer)| *answer)
        };
        if let Some(at) = self.notified_at {
            let cause = cause_before(at);
            return Some(GivenUp {
                at,
                cause,
                thrown_away,
            });
        }
        let &(last_at, last) = self.token_requests.last()?;
        let waited = self.messages.iter().any(|(at, accepted)| {
            accepted.is_none_or(|a| a > last_at + GIVEN_UP_AFTER) && *at <= end - GIVEN_UP_AFTER
        });
        let quiet_since = last_at.max(working_from);
        (last.failed() && waited && quiet_since + GIVEN_UP_AFTER <= end).then_some(GivenUp {
            at: last_at,
            cause: last,
            thrown_away,
        })
    }
}

/// Connections given up when neither the user nor the user's tenant had done anything only
/// they can mend (the timeline knows): the customers who would have had to reconnect for
/// nothing. Whatever the error said: an app deleted at home and one removed from a customer
/// tenant answer alike.
fn false_disconnects(o: &Observations) -> Vec<(&str, GivenUp)> {
    let working_from = o.rotated_at.unwrap_or(o.trace.start);
    o.connections
        .iter()
        .filter_map(|(upn, c)| Some((upn.as_str(), c.given_up(working_from, o.end)?, c)))
        .filter(|(_, given_up, c)| c.user_event_at.is_none_or(|e| e > given_up.at))
        .map(|(upn, given_up, _)| (upn, given_up))
        .collect()
}

/// `no-false-disconnect`.
pub(super) fn no_false_disconnect(o: &Observations) -> (bool, String, String) {
    let wrong = false_disconnects(o);
    let thrown: usize = wrong.iter().map(|(_, g)| g.thrown_away).sum();
    let tenants = o.connections.len();
    let observed = match wrong.first() {
        None => format!("0 of {tenants} connections given up without the user's own failure"),
        Some((upn, first)) => format!(
            "{} of {tenants} connections given up without the user's own failure: these customers would have had to reconnect; {thrown} of their messages thrown away (first: {upn}, after a {} at {})",
            wrong.len(),
            first.cause.name(),
            rfc3339(first.at)
        ),
    };
    (
        wrong.is_empty(),
        observed,
        "no connection given up (a needs-user notice, or no more tries while mail waits) unless the user or the user's tenant had an event only they can mend".into(),
    )
}

/// `no-false-disconnect`'s instant: the first connection given up wrongly.
pub(super) fn no_false_disconnect_at(o: &Observations) -> Option<DateTime<Utc>> {
    false_disconnects(o).iter().map(|(_, g)| g.at).min()
}

/// Windows in which the app's own credential failed for anyone: from an app-level or
/// transient answer to the next success for any user.
fn app_outages(o: &Observations) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut answers: Vec<(DateTime<Utc>, TokenAnswer)> = o
        .connections
        .values()
        .flat_map(|c| c.token_requests.iter().copied())
        .collect();
    answers.sort();
    let mut outages = Vec::new();
    let mut open: Option<DateTime<Utc>> = None;
    for (at, answer) in answers {
        match (answer, open) {
            (TokenAnswer::App | TokenAnswer::Transient, None) => open = Some(at),
            (TokenAnswer::Ok, Some(from)) => {
                outages.push((from, at));
                open = None;
            }
            _ => {}
        }
    }
    outages.extend(open.map(|from| (from, o.end)));
    outages
}

/// The other users' mail after the first user-level event: (messages, lost, longest wait,
/// when the longest wait began), leaving out mail that waited through an app-wide outage.
fn others_mail(o: &Observations) -> Option<(usize, usize, TimeDelta, DateTime<Utc>)> {
    let first_event = o
        .connections
        .values()
        .filter_map(|c| c.user_event_at)
        .min()?;
    let outages = app_outages(o);
    let mut seen = (0, 0, TimeDelta::zero(), first_event);
    for c in o.connections.values().filter(|c| c.user_event_at.is_none()) {
        for &(at, accepted) in c.messages.iter().filter(|(at, _)| *at >= first_event) {
            let until = accepted.unwrap_or(o.end);
            if outages.iter().any(|(from, to)| *from < until && at < *to) {
                continue;
            }
            seen.0 += 1;
            seen.1 += usize::from(accepted.is_none());
            if until - at > seen.2 {
                (seen.2, seen.3) = (until - at, at);
            }
        }
    }
    Some(seen)
}

/// `user-failures-isolated`.
pub(super) fn user_failures_isolated(o: &Observations, within: Duration) -> (bool, String, String) {
    let required = format!(
        "after a user-level event, every other user's message accepted within {} (mail that waited through an app-wide outage aside)",
        humantime::format_duration(within)
    );
    match others_mail(o) {
        None => (true, "no user-level event in the run".into(), required),
        Some((count, lost, longest, _)) => (
            lost == 0 && longest <= to_chrono(within),
            format!(
                "{count} messages of unaffected users after the first user-level event: {lost} never accepted, the longest wait {}",
                format_delta(longest)
            ),
            required,
        ),
    }
}

/// `user-failures-isolated`'s instant: when the longest wait began.
pub(super) fn user_failures_isolated_at(o: &Observations) -> Option<DateTime<Utc>> {
    others_mail(o).map(|(_, _, _, at)| at)
}

/// Each unaffected connection's recovery after `rotated`: the wait of its first message
/// pending at or submitted after the rotation (`None`: never accepted).
fn recoveries(o: &Observations, rotated: DateTime<Utc>) -> Vec<(&str, Option<TimeDelta>)> {
    o.connections
        .iter()
        .filter(|(_, c)| c.user_event_at.is_none())
        .filter_map(|(upn, c)| {
            let (at, accepted) = c
                .messages
                .iter()
                .find(|(_, accepted)| accepted.is_none_or(|a| a >= rotated))?;
            Some((upn.as_str(), accepted.map(|a| a - (*at).max(rotated))))
        })
        .collect()
}

/// `all-connections-recovered-within`.
pub(super) fn all_recovered_within(o: &Observations, within: Duration) -> (bool, String, String) {
    let required = format!(
        "every connection without a user-level event sends again within {} of the rotation, with no user action",
        humantime::format_duration(within)
    );
    let Some(rotated) = o.rotated_at else {
        return (false, "no rotation in the timeline".into(), required);
    };
    let all = recoveries(o, rotated);
    let never = all.iter().filter(|(_, r)| r.is_none()).count();
    let slowest = all
        .iter()
        .filter_map(|(upn, r)| Some((r.as_ref()?, upn)))
        .max();
    let bound = to_chrono(within);
    let late = all
        .iter()
        .filter(|(_, r)| r.is_some_and(|r| r > bound))
        .count();
    let observed = format!(
        "{} of {} connections sent again after the rotation; {never} never did; {late} later than the bound{}",
        all.len() - never,
        all.len(),
        slowest
            .map(|(r, upn)| format!("; the slowest {upn}, {}", format_delta(*r)))
            .unwrap_or_default()
    );
    (never == 0 && late == 0, observed, required)
}

/// `all-connections-recovered-within`'s instant: the rotation plus the bound.
pub(super) fn all_recovered_at(o: &Observations, within: Duration) -> Option<DateTime<Utc>> {
    o.rotated_at.map(|r| r + to_chrono(within))
}

/// The most failed token requests one user's connection made in any hour until `until`: the
/// count, the user and the hour's start.
pub(super) fn busiest_user_hour(
    o: &Observations,
    until: DateTime<Utc>,
) -> Option<(usize, &str, DateTime<Utc>)> {
    let mut best: Option<(usize, &str, DateTime<Utc>)> = None;
    for (upn, c) in &o.connections {
        let failed: Vec<DateTime<Utc>> = c
            .token_requests
            .iter()
            .filter(|(at, answer)| answer.failed() && *at <= until)
            .map(|(at, _)| *at)
            .collect();
        if let Some((count, start)) = peak_hour(&failed)
            && best.is_none_or(|(n, _, _)| count > n)
        {
            best = Some((count, upn.as_str(), start));
        }
    }
    best
}

/// The most instants of sorted `times` in any hour, and the earliest hour's start: a window
/// sliding over the instants, linear in their number.
pub(super) fn peak_hour(times: &[DateTime<Utc>]) -> Option<(usize, DateTime<Utc>)> {
    let mut best: Option<(usize, DateTime<Utc>)> = None;
    let mut end = 0;
    for (i, start) in times.iter().enumerate() {
        end = end.max(i);
        while end < times.len() && times[end] < *start + TimeDelta::hours(1) {
            end += 1;
        }
        if best.is_none_or(|(n, _)| end - i > n) {
            best = Some((end - i, *start));
        }
    }
    best
}

/// A duration to the second, for observed values.
fn format_delta(d: TimeDelta) -> String {
    let seconds = u64::try_from(d.num_seconds()).unwrap_or(0);
    humantime::format_duration(Duration::from_secs(seconds)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("a valid instant")
    }

    #[test]
    fn a_peak_hour_counts_the_densest_window() {
        let times: Vec<DateTime<Utc>> = [
            "2025-02-14T10:00:00Z",
            "2025-02-14T10:30:00Z",
            "2025-02-14T11:10:00Z",
            "2025-02-14T11:20:00Z",
            "2025-02-14T11:25:00Z",
        ]
        .into_iter()
        .map(at)
        .collect();
        assert_eq!(peak_hour(&times), Some((4, at("2025-02-14T10:30:00Z"))));
        assert_eq!(peak_hour(&[]), None);
    }

    #[test]
    fn a_connection_left_after_an_app_failure_is_given_up_and_one_retried_is_not() {
        let mut c = ConnectionSeen {
            token_requests: vec![
                (at("2025-02-14T12:00:00Z"), TokenAnswer::Ok),
                (at("2025-02-14T13:00:00Z"), TokenAnswer::App),
            ],
            messages: vec![(at("2025-02-14T14:00:00Z"), None)],
            ..ConnectionSeen::default()
        };
        let (rotated, end) = (at("2025-02-15T02:00:00Z"), at("2025-02-16T00:00:00Z"));
        let given_up = c.given_up(rotated, end).expect("given up");
        assert_eq!(given_up.cause, TokenAnswer::App);
        assert_eq!(given_up.thrown_away, 1);
        c.token_requests
            .push((at("2025-02-15T02:01:00Z"), TokenAnswer::Ok));
        c.messages[0].1 = Some(at("2025-02-15T02:02:00Z"));
        assert_eq!(c.given_up(rotated, end), None);
    }

    #[test]
    fn answers_follow_the_error_not_only_the_status() {
        assert_eq!(
            TokenAnswer::of(Some(401), Some("invalid_client")),
            TokenAnswer::App
        );
        assert_eq!(
            TokenAnswer::of(Some(400), Some("unauthorized_client")),
            TokenAnswer::Tenant
        );
        assert_eq!(
            TokenAnswer::of(Some(400), Some("invalid_grant")),
            TokenAnswer::User
        );
        assert_eq!(
            TokenAnswer::of(Some(400), Some("interaction_required")),
            TokenAnswer::User
        );
        assert_eq!(TokenAnswer::of(Some(429), None), TokenAnswer::Transient);
        assert_eq!(TokenAnswer::of(None, None), TokenAnswer::Transient);
        assert_eq!(TokenAnswer::of(Some(200), None), TokenAnswer::Ok);
    }
}
