//! `maildrill drill` against processes: the bundled client out of process gets the verdicts
//! its in-memory replay gets; a subject that exits early, never becomes ready or ignores
//! SIGTERM is reported (its output redacted and leak-scanned) and still judged from the wire.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

use std::path::PathBuf;
use std::time::Duration;

use maildrill::check::Grade;
use maildrill::drill::{DrillOptions, Submit};
use maildrill::runner::ScenarioReport;

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/drill/{name}.toml"))
}

fn verdicts(report: &ScenarioReport) -> Vec<(String, Grade)> {
    report
        .checks
        .iter()
        .map(|c| (c.id.to_string(), c.verdict))
        .collect()
}

fn verdict(report: &ScenarioReport, id: &str) -> Grade {
    report
        .checks
        .iter()
        .find(|c| c.id.to_string() == id)
        .unwrap()
        .verdict
}

#[test]
fn the_bundled_client_out_of_process_gets_its_in_memory_verdicts() {
    let path = scenario("short-incident");
    let memory = maildrill::runner::run_file(&path, None).unwrap();
    let exec = format!("{} client", env!("CARGO_BIN_EXE_maildrill"));
    let drill = maildrill::drill::drill(&path, DrillOptions::new(exec), None).unwrap();
    assert!(drill.incidents.is_empty(), "{:?}", drill.incidents);
    assert_eq!(verdicts(&drill), verdicts(&memory), "{:#?}", drill.checks);
    assert!(drill.passed, "{:#?}", drill.checks);
    assert_eq!(
        drill.stats.messages_enqueued,
        memory.stats.messages_enqueued
    );
    assert_eq!(
        drill.stats.messages_delivered,
        drill.stats.messages_enqueued
    );
    assert!(drill.stats.rotated_at.is_some() && drill.stats.recovered_at.is_some());
}

#[test]
fn a_subject_that_exits_early_is_reported_and_its_output_scanned_for_leaks() {
    let exec = "echo starting; echo \"using $MAILDRILL_CLIENT_SECRET\" >&2; exit 3";
    let report =
        maildrill::drill::drill(&scenario("ten-seconds"), DrillOptions::new(exec), None).unwrap();
    assert!(!report.passed);
    let incident = &report.incidents[0].what;
    assert!(incident.contains("exit status 3"), "{incident}");
    assert!(incident.contains("err| using [redacted]"), "{incident}");
    assert!(!incident.contains("Xk78Q~"), "{incident}");
    assert_eq!(verdict(&report, "no-loss"), Grade::Fail);
    assert_eq!(verdict(&report, "no-secret-leak"), Grade::Fail);
}

#[test]
fn a_subject_that_never_becomes_ready_is_stopped_and_reported() {
    let options = DrillOptions {
        ready_timeout: Duration::from_secs(2),
        ..DrillOptions::new("echo warming up; sleep 60")
    };
    let report = maildrill::drill::drill(&scenario("ten-seconds"), options, None).unwrap();
    let incident = &report.incidents[0].what;
    assert!(
        incident.contains("did not print MAILDRILL_READY within 2s"),
        "{incident}"
    );
    assert!(incident.contains("out| warming up"), "{incident}");
    assert!(
        report
            .incidents
            .iter()
            .any(|i| i.what.contains("3 message(s) could not be handed")),
        "{:?}",
        report.incidents
    );
    assert_eq!(verdict(&report, "no-loss"), Grade::Fail);
}

#[test]
fn a_subject_that_ignores_sigterm_is_killed_and_reported() {
    let exec = "trap '' TERM; echo MAILDRILL_READY; while true; do sleep 1; done";
    let options = DrillOptions {
        grace: Duration::from_secs(1),
        submit: Submit::Command("cat > /dev/null".into()),
        ..DrillOptions::new(exec)
    };
    let report = maildrill::drill::drill(&scenario("ten-seconds"), options, None).unwrap();
    assert_eq!(report.incidents.len(), 1, "{:?}", report.incidents);
    let incident = &report.incidents[0].what;
    assert!(incident.contains("ignored SIGTERM for 1s"), "{incident}");
    // It took the messages (the command exited 0) and sent none.
    assert_eq!(report.stats.messages_enqueued, 3);
    assert_eq!(verdict(&report, "no-loss"), Grade::Fail);
    assert_eq!(verdict(&report, "no-secret-leak"), Grade::Pass);
}
