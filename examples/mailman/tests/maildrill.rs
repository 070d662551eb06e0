//! Mailman under maildrill: every shipped scenario replayed against it over loopback sockets
//! (its verdicts pinned in a snapshot), the 45-day incident replayed to identical journals, and
//! a chaos batch that finds, shrinks and replays one of its failures.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

use std::path::{Path, PathBuf};

use maildrill::runner::{ScenarioReport, Wiring, run_subject};

mod support;
use support::MailmanSubject;

fn scenarios() -> Vec<PathBuf> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths
}

fn replay(path: &Path) -> (ScenarioReport, String) {
    let file = maildrill::scenario::load(path).unwrap();
    run_subject(path, &file, None, &MailmanSubject, Wiring::Sockets)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the snapshot pins of a report: the verdicts, or why it was skipped.
fn verdicts(report: &ScenarioReport) -> serde_json::Value {
    let file = Path::new(&report.file)
        .file_name()
        .unwrap()
        .to_string_lossy();
    serde_json::json!({
        "file": file,
        "skipped": report.skipped,
        "as_expected": report.passed,
        "checks": report.checks.iter().map(|c| format!("{} {}: {}", c.id, c.verdict, c.observed)).collect::<Vec<_>>(),
    })
}

#[test]
fn every_shipped_scenario_replays_against_mailman_over_sockets() {
    let paths = scenarios();
    assert!(paths.len() >= 17, "{} scenarios", paths.len());
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let reports =
        maildrill::parallel::map_ordered(paths.len(), threads, |i| replay(&paths[i]).0, |_| false);
    let all: Vec<serde_json::Value> = reports.iter().map(verdicts).collect();
    let skipped = reports.iter().filter(|r| r.skipped.is_some()).count();
    assert!(
        skipped < reports.len() / 2,
        "{skipped} of {} skipped",
        reports.len()
    );
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_json_snapshot!("mailman_verdicts", all));
}

#[test]
fn the_incident_replays_against_mailman_to_identical_journals() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scenarios/sell-2025-02-14.toml"
    ));
    let (first_report, first) = replay(path);
    assert!(first_report.skipped.is_none());
    assert!(
        first.lines().count() > 1000,
        "{} journal lines",
        first.lines().count()
    );
    for run in 2..=5 {
        let (_, again) = replay(path);
        assert!(
            again == first,
            "socket replay {run} of the incident gave another journal"
        );
    }
}

#[test]
fn chaos_finds_shrinks_and_replays_a_mailman_failure() {
    let config = maildrill::chaos::ChaosConfig {
        cases: 8,
        seed: 1,
        max_failures: Some(1),
        shrink_budget: 24,
        ..maildrill::chaos::ChaosConfig::default()
    };
    let judge = |path: &Path, file: &maildrill::scenario::file::ScenarioFile| {
        run_subject(path, file, None, &MailmanSubject, Wiring::Sockets).map(|(r, _)| r)
    };
    let results = maildrill::chaos::run_with(&config, &(), &judge).unwrap();
    let failure = results
        .iter()
        .find(|r| !r.failed_checks.is_empty())
        .expect("chaos finds a weakness of mailman within 8 cases");
    let dir = std::env::temp_dir().join(format!("mailman-chaos-{}", std::process::id()));
    let saved = maildrill::chaos::save(&dir, &config, failure).unwrap();
    let file = maildrill::scenario::load(&saved).unwrap();
    let (replayed, _) = run_subject(&saved, &file, None, &MailmanSubject, Wiring::Sockets).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let failing: Vec<&str> = replayed
        .checks
        .iter()
        .filter(|c| c.verdict != c.expected)
        .map(|c| c.id.name())
        .collect();
    assert!(!replayed.passed, "the saved failure replays to a failure");
    assert!(
        failing
            .iter()
            .any(|id| failure.failed_checks.iter().any(|f| f.name() == *id)),
        "the saved file fails {failing:?}, the case failed {:?}",
        failure.failed_checks
    );
}
