//! `maildrill drill` against the Python subject `tests/python/subject.py`: its verdicts, pinned.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use maildrill::check::Grade;
use maildrill::drill::DrillOptions;
use maildrill::runner::ScenarioReport;
use maildrill::subject::Capability;

const SUBJECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/subject.py");

/// Every check of both scenarios, in their order, and the verdict the subject earns.
const ALL_PASS: [(&str, Grade); 5] = [
    ("no-loss", Grade::Pass),
    ("no-duplicates", Grade::Pass),
    ("recovery-within", Grade::Pass),
    ("drained-within", Grade::Pass),
    ("no-secret-leak", Grade::Pass),
];

/// Drills `tests/drill/{name}.toml` against the subject, which sends mail over SMTP or Graph
/// and raises alerts (credential expiry, delivery latency). A drill plays the scenario's 40 s
/// on the wall clock; the tests of this binary run at the same time.
fn drill(python: &str, name: &str) -> ScenarioReport {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/drill/{name}.toml"));
    let options = DrillOptions {
        capabilities: vec![Capability::Smtp, Capability::GraphSend, Capability::Alerts],
        ..DrillOptions::new(format!("{python} {SUBJECT}"))
    };
    maildrill::drill::drill(&path, options, None).unwrap()
}

fn verdicts(report: &ScenarioReport) -> Vec<(String, Grade)> {
    report
        .checks
        .iter()
        .map(|c| (c.id.to_string(), c.verdict))
        .collect()
}

/// The subject rode out the expired secret: every check passed, nothing went wrong with the
/// process, the 13 messages were each accepted once, it was refused while the secret was
/// expired and delivered again after the rotation, and it paged: an expiry alert before the
/// secret's end (the sink saw it), and a latency alert once the outage stalled the queue.
fn assert_rode_it_out(report: &ScenarioReport) {
    assert!(report.skipped.is_none(), "{:?}", report.skipped);
    assert!(report.incidents.is_empty(), "{:#?}", report.incidents);
    let expected: Vec<(String, Grade)> = ALL_PASS
        .iter()
        .map(|(id, grade)| ((*id).to_string(), *grade))
        .collect();
    assert_eq!(verdicts(report), expected, "{:#?}", report.checks);
    assert!(report.passed, "{:#?}", report.checks);
    let stats = &report.stats;
    assert_eq!(stats.messages_enqueued, 13, "{stats:?}");
    assert_eq!(
        stats.messages_delivered, stats.messages_enqueued,
        "{stats:?}"
    );
    assert_eq!(
        (stats.messages_lost, stats.messages_duplicated),
        (0, 0),
        "{stats:?}"
    );
    assert!(stats.first_failure_at.is_some(), "{stats:?}");
    assert!(
        stats.rotated_at.is_some() && stats.recovered_at.is_some(),
        "{stats:?}"
    );
    // The expired secret reached it: Entra refused its token requests.
    let refused = report.events.get("entra token 401").copied().unwrap_or(0);
    assert!(refused > 0, "{:?}", report.events);
    // The secret ends 10 s in: the expiry alert (30 days ahead by default) went out at once,
    // before the secret failed.
    let first_trigger = |kind: &str| {
        stats
            .alerts
            .iter()
            .filter(|a| a.kind == kind && a.action == "trigger")
            .map(|a| a.at)
            .min()
    };
    let first_failure: DateTime<Utc> = stats.first_failure_at.as_deref().unwrap().parse().unwrap();
    let expiry = first_trigger("credential-expiry");
    assert!(
        expiry.is_some_and(|at| at < first_failure),
        "{:?}",
        stats.alerts
    );
    // Messages waited longer than the 8 s threshold while the secret was expired.
    assert!(
        first_trigger("delivery-latency").is_some() && stats.detected_at.is_some(),
        "{stats:?}"
    );
}

#[test]
fn the_python_subject_rides_out_the_short_incident() {
    let Some(python) = common::python::python_with(&["msal", "requests"]) else {
        return;
    };
    let report = drill(&python, "short-incident");
    assert_rode_it_out(&report);
}

#[test]
fn the_python_subject_loses_nothing_when_restarted_mid_outage() {
    let Some(python) = common::python::python_with(&["msal", "requests"]) else {
        return;
    };
    let report = drill(&python, "restart-mid-outage");
    assert_rode_it_out(&report);
}
