//! The `rotate-secret-via-graph` step as the journal shows it: the operator's script honours
//! `Retry-After` while the applications API is throttled, stops at a policy refusal, and
//! rotates once Graph lets it; the rotation counts from the first `addPassword` answered 200.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

use std::path::Path;

use chrono::{DateTime, Utc};
use maildrill::runner::{Wiring, run_wired};

/// The scenario's report and its `addPassword` journal lines: (instant, status, line).
fn add_passwords(
    name: &str,
) -> (
    maildrill::runner::ScenarioReport,
    Vec<(DateTime<Utc>, u16, String)>,
) {
    let path = format!("{}/scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let path = Path::new(&path);
    let file = maildrill::scenario::load(path).unwrap();
    let (report, journal) = run_wired(path, &file, None, Wiring::Memory).unwrap();
    let lines = journal
        .lines()
        .filter(|l| l.contains(" graph add-password "))
        .map(|l| {
            let at = l.split(' ').next().unwrap().parse().unwrap();
            let status = l.split(" -> ").nth(1).unwrap()[..3].parse().unwrap();
            (at, status, l.to_string())
        })
        .collect();
    (report, lines)
}

#[test]
fn a_throttled_rotation_waits_out_each_retry_after_and_succeeds_when_it_ends() {
    let (report, calls) = add_passwords("rotation-throttled");
    assert!(report.passed, "{report:#?}");
    let (throttled, rest): (Vec<_>, Vec<_>) = calls.iter().partition(|(_, s, _)| *s == 429);
    assert!(throttled.len() > 100, "{} throttled calls", throttled.len());
    assert!(
        throttled
            .iter()
            .all(|(_, _, l)| l.contains("Request_ThrottledTemporarily")),
        "{throttled:?}"
    );
    for pair in calls.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= chrono::TimeDelta::seconds(150),
            "the script tried again {gap} after a Retry-After of 150 s: {pair:?}"
        );
    }
    assert_eq!(rest.len(), 1, "one success ends the script: {rest:?}");
    let (at, _, line) = rest[0];
    assert!(
        *at >= "2025-02-14T12:00:00Z".parse::<DateTime<Utc>>().unwrap(),
        "{line}"
    );
    assert!(line.contains(r#""secretText":"[redacted]""#), "{line}");
    assert_eq!(
        report.stats.rotated_at.as_deref(),
        Some("2025-02-14T12:00:30Z")
    );
}

#[test]
fn a_rotation_refused_by_policy_is_not_retried_and_a_compliant_one_rotates() {
    let (report, calls) = add_passwords("rotation-blocked-by-policy");
    assert!(report.passed, "{report:#?}");
    let statuses: Vec<u16> = calls.iter().map(|(_, s, _)| *s).collect();
    assert_eq!(statuses, [400, 200], "{calls:#?}");
    assert!(
        calls[0]
            .2
            .contains("CredentialInvalidLifetimeAsPerAppPolicy"),
        "{}",
        calls[0].2
    );
    // The refusal is no rotation: the alert stays open, and once the cached token runs out
    // after the secret's end (11:30), mail fails until the compliant rotation.
    assert_eq!(
        report.stats.rotated_at.as_deref(),
        Some("2025-02-14T13:00:30Z")
    );
    assert_eq!(
        report.stats.first_failure_at.as_deref(),
        Some("2025-02-14T12:00:00Z")
    );
}
