//! The bundled client's delegated mode replayed through the runner: customers' users connect
//! their mailboxes, the multi-tenant app's secret expires and is rotated, the client restarts,
//! one user resets a password. Judged by the report's verdicts, the Entra journal (refresh
//! grants while the secret is expired) and the alert sink's events.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use maildrill::check::CheckId;
use maildrill::runner::{ScenarioReport, Wiring, run_wired};

const EXPIRED: &str = "2025-02-14T11:30:00Z";
const ROTATED: &str = "2025-02-14T14:00:00Z";
const RESET: &str = "2025-02-14T17:00:00Z";
const USERS: usize = 12;
const RESET_USER: &str = "user2@fabrikam.onmicrosoft.com";

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// What a replay showed, read from its report and journal.
struct Seen {
    report: ScenarioReport,
    /// Refresh grants: instant and status.
    refreshes: Vec<(DateTime<Utc>, u16)>,
    /// Code redemptions (connects).
    redemptions: usize,
    /// Alert sink events: instant and body.
    alerts: Vec<(DateTime<Utc>, serde_json::Value)>,
    /// The journal as text.
    journal: String,
}

impl Seen {
    fn refreshes_between(&self, from: &str, until: &str) -> Vec<(DateTime<Utc>, u16)> {
        let (from, until) = (at(from), at(until));
        let refreshes = self.refreshes.iter();
        refreshes
            .filter(|(t, _)| *t >= from && *t < until)
            .copied()
            .collect()
    }

    /// The users the product was told must reconnect, with each event's severity.
    fn needs_user(&self) -> Vec<(String, String, String)> {
        self.alerts
            .iter()
            .filter(|(_, body)| {
                body["payload"]["custom_details"]["kind"] == "connection-needs-user"
            })
            .map(|(_, body)| {
                let details = &body["payload"]["custom_details"];
                (
                    details["user"].as_str().unwrap().to_string(),
                    details["reason"].as_str().unwrap().to_string(),
                    body["payload"]["severity"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn failed(&self) -> BTreeSet<CheckId> {
        let checks = self.report.checks.iter();
        checks
            .filter(|c| c.verdict != c.expected)
            .map(|c| c.id)
            .collect()
    }
}

/// A user-level failure after the recovery: one user resets their password, which only that
/// user can fix.
const RESET_STEP: &str = "\n[[timeline]]\nat = \"2025-02-14T17:00:00Z\"\naction = \"reset-password\"\nuser = \"user2@fabrikam.onmicrosoft.com\"\n";

/// The incident file with `profile`, `transport` and `more` steps, written where the test can
/// load it.
fn scenario(profile: &str, transport: &str, more: &str) -> PathBuf {
    let source = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/delegated/secret-expiry.toml"
    );
    let text = std::fs::read_to_string(source)
        .unwrap()
        .replace("PROFILE", profile)
        .replace("TRANSPORT", transport)
        + more;
    let name = format!(
        "secret-expiry-{}-{transport}-{}.toml",
        profile.replace(':', "-"),
        more.len()
    );
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn run(profile: &str, transport: &str, more: &str) -> Seen {
    let path = scenario(profile, transport, more);
    let file = maildrill::scenario::load(&path).unwrap();
    let (report, journal) =
        run_wired(&path, &file, None, Wiring::Memory).unwrap_or_else(|e| panic!("{e}"));
    let instant = |line: &str| at(line.split(' ').next().unwrap());
    let status = |line: &str| line.split(" -> ").nth(1).unwrap()[..3].parse().unwrap();
    let mut seen = Seen {
        report,
        refreshes: Vec::new(),
        redemptions: 0,
        alerts: Vec::new(),
        journal: String::new(),
    };
    for line in journal.lines() {
        if line.contains(" entra token ") && line.contains("grant_type=refresh_token") {
            seen.refreshes.push((instant(line), status(line)));
        } else if line.contains(" entra token ") && line.contains("grant_type=authorization_code") {
            seen.redemptions += 1;
        } else if line.contains(" alerts enqueue POST ") {
            let body = line.split_once("/v2/enqueue ").unwrap().1;
            let body = &body[..body.rfind(" -> ").unwrap()];
            seen.alerts
                .push((instant(line), serde_json::from_str(body).unwrap()));
        }
    }
    seen
}

/// The remediated client's invariants on a replay of the incident.
fn holds_the_app_and_loses_nothing(seen: &Seen) {
    let failed = seen.failed();
    assert!(
        failed.is_empty(),
        "failed checks {failed:?}: {:#?}",
        seen.report.checks
    );
    let expired = seen.refreshes_between(EXPIRED, ROTATED);
    assert!(expired.iter().all(|(_, s)| *s == 401), "{expired:?}");
    // One probe per interval for the whole app: the hold doubles from 1 s to the 5 min cap
    // (jittered over its last quarter), whichever user's token runs out.
    assert!(
        !expired.is_empty() && expired.len() <= 45,
        "{} refreshes while the secret was expired: {expired:?}",
        expired.len()
    );
    for pair in expired.windows(2).skip(10) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= TimeDelta::seconds(200),
            "probes {gap} apart: {pair:?}"
        );
    }
    // The rotation ends the hold at once: a refresh works within the secret poll.
    let after = seen.refreshes_between(ROTATED, "2025-02-14T14:01:00Z");
    assert!(after.iter().any(|(_, s)| *s == 200), "{after:?}");
    assert_eq!(
        seen.redemptions, USERS,
        "connections resume after the restart"
    );
    assert!(
        seen.needs_user().is_empty(),
        "no user is blamed for the app's secret"
    );
}

#[test]
fn remediated_over_graph_holds_the_app_once_for_every_user_and_loses_nothing() {
    let seen = run("remediated", "graph", "");
    holds_the_app_and_loses_nothing(&seen);
    let again = run("remediated", "graph", "");
    assert!(
        seen.journal == again.journal,
        "seed {} replays to different journals",
        seen.report.seed
    );
}

#[test]
fn remediated_over_smtp_holds_the_app_once_for_every_user_and_loses_nothing() {
    holds_the_app_and_loses_nothing(&run("remediated", "smtp", ""));
}

#[test]
fn a_password_reset_tells_only_that_user_to_reconnect_and_pages_no_one() {
    let seen = run("remediated", "graph", RESET_STEP);
    // The user's mail is held for the reconnect, which the scenario never makes: until the
    // delegated checks land, held mail reads as lost to `no-loss`, and nothing else fails.
    let failed = seen.failed();
    assert!(failed.iter().all(|c| *c == CheckId::NoLoss), "{failed:?}");
    let told = seen.needs_user();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].0, RESET_USER);
    assert_eq!(
        (told[0].1.as_str(), told[0].2.as_str()),
        ("AADSTS50173", "info")
    );
    let pages_after_reset = seen.alerts.iter().filter(|(t, body)| {
        *t >= at(RESET)
            && body["payload"]["severity"] != "info"
            && body["event_action"] == "trigger"
    });
    assert_eq!(pages_after_reset.count(), 0, "{:#?}", seen.alerts);
    // No more refreshes for that user: the others' go on as their tokens run out.
    let after = seen.refreshes_between(RESET, "2025-02-14T20:00:00Z");
    assert!(
        after.iter().filter(|(_, s)| *s != 200).count() <= 1,
        "{after:?}"
    );
}

#[test]
fn naive_delegated_disconnects_every_user_after_five_tries_each_and_loses_their_mail() {
    let seen = run("naive-2025-delegated", "graph", "");
    let failed = seen.failed();
    assert!(
        failed.contains(&CheckId::NoLoss),
        "{:#?}",
        seen.report.checks
    );
    let expired = seen.refreshes_between(EXPIRED, ROTATED);
    assert_eq!(
        expired.len(),
        5 * USERS,
        "five attempts for each user, then the user is disconnected: {expired:?}"
    );
    let told: BTreeSet<String> = seen.needs_user().into_iter().map(|(u, _, _)| u).collect();
    assert_eq!(told.len(), USERS, "every user told to reconnect: {told:?}");
    // A disconnected user is never tried again: no refresh after the rotation.
    assert!(
        seen.refreshes_between(ROTATED, "2025-02-15T00:00:00Z")
            .is_empty()
    );
}

#[test]
fn the_disconnecting_mutant_tells_users_to_reconnect_for_the_apps_secret_and_is_caught() {
    let seen = run("mutant:disconnects-on-invalid-client", "graph", "");
    assert!(
        seen.failed().contains(&CheckId::NoLoss),
        "{:#?}",
        seen.report.checks
    );
    let told = seen.needs_user();
    assert!(
        told.iter().any(|(_, reason, _)| reason == "AADSTS7000222"),
        "{told:?}"
    );
}
