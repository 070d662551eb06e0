//! Chaos runs: the remediated client passes random timelines, every deliberately broken client
//! is caught within its case budget, runs repeat exactly, and a shrunk failure is a scenario
//! file that replays to the same verdicts.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

use maildrill::chaos::{self, ChaosConfig};
use maildrill::check::{CheckId, Grade};
use maildrill::subject::{Mutation, Profile};

/// Cases for the remediated client: modest in `cargo test`, raised for nightly or pre-release
/// runs with `MAILDRILL_CHAOS_CASES`.
fn cases() -> usize {
    std::env::var("MAILDRILL_CHAOS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

fn config(profile: Profile, cases: usize) -> ChaosConfig {
    ChaosConfig {
        cases,
        seed: 1,
        profile,
        max_failures: None,
        shrink_all: false,
        shrink: false,
        shrink_budget: 0,
        jobs: 2,
        delegated: false,
    }
}

fn without_wall_time(report: &maildrill::runner::ScenarioReport) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap();
    value.as_object_mut().unwrap().remove("wall_ms");
    value.as_object_mut().unwrap().remove("file");
    value
}

#[test]
fn the_remediated_client_passes_every_case() {
    let results = chaos::run(&config(Profile::Remediated, cases()), &()).unwrap();
    assert_eq!(results.len(), cases());
    for result in &results {
        assert!(
            result.failed_checks.is_empty(),
            "case {} failed {:?}:\n{:#}\n{}",
            result.index,
            result.failed_checks,
            serde_json::to_value(&result.report.checks).unwrap(),
            toml::to_string(&result.scenario).unwrap()
        );
    }
}

/// Each mutant, the checks that may catch it (the first is the one it was written against),
/// and the most cases it may take (seed 1).
const MUTANTS: [(Mutation, &[CheckId], usize); 8] = [
    (Mutation::NoJitter, &[CheckId::BackoffShape], 8),
    (Mutation::IgnoresRetryAfter, &[CheckId::BackoffShape], 16),
    (Mutation::DropsAfterAuthFailure, &[CheckId::NoLoss], 12),
    // Refusals retried every second, unheld: too many token requests, and waits that never
    // grow; whichever a case shows first.
    (
        Mutation::TightAuthLoop,
        &[CheckId::TokenRequestBudget, CheckId::BackoffShape],
        8,
    ),
    (Mutation::NoExpiryMonitor, &[CheckId::ExpiryAlertLead], 12),
    (
        Mutation::LatencyNeverFires,
        &[CheckId::LatencyAlertWithin],
        8,
    ),
    (Mutation::FailsUnknownSends, &[CheckId::NoDuplicates], 16),
    (Mutation::ForgetsOutbox, &[CheckId::NoLoss], 8),
];

#[test]
fn every_mutant_is_caught_within_its_budget_and_the_remediated_client_passes_the_same_cases() {
    let longest = MUTANTS.iter().map(|m| m.2).max().unwrap();
    let remediated = chaos::run(&config(Profile::Remediated, longest), &()).unwrap();
    assert!(
        remediated.iter().all(|r| r.failed_checks.is_empty()),
        "the remediated client fails the mutants' cases"
    );
    for (mutation, checks, budget) in MUTANTS {
        let mut config = config(Profile::Mutant(mutation), budget);
        config.max_failures = Some(1);
        let results = chaos::run(&config, &()).unwrap();
        let caught = results.iter().find(|r| !r.failed_checks.is_empty());
        let caught = caught.unwrap_or_else(|| {
            panic!("mutant {} passed {budget} cases of seed 1", mutation.name())
        });
        assert!(
            caught.failed_checks.iter().any(|c| checks.contains(c)),
            "mutant {} was caught by {:?}, not {checks:?}",
            mutation.name(),
            caught.failed_checks
        );
        println!(
            "mutant {} caught in case {} by {:?}",
            mutation.name(),
            caught.index,
            caught.failed_checks
        );
    }
}

/// Delegated cases (customers' users connect; user- and tenant-level events among the outages)
/// catch the client that disconnects users on the app's own `invalid_client`, and the
/// remediated client passes the same cases.
#[test]
fn delegated_chaos_catches_the_disconnecting_mutant_and_the_remediated_client_passes() {
    let budget = 8;
    let mut remediated = config(Profile::Remediated, budget);
    remediated.delegated = true;
    let passed = chaos::run(&remediated, &()).unwrap();
    assert!(
        passed.iter().all(|r| r.failed_checks.is_empty()),
        "the remediated client fails delegated cases: {:?}",
        passed
            .iter()
            .map(|r| (r.index, &r.failed_checks))
            .collect::<Vec<_>>()
    );
    assert!(
        passed.iter().any(|r| !r.scenario.customers.is_empty()),
        "no delegated case among the first {budget}"
    );
    let mut mutant = config(
        Profile::Mutant(Mutation::DisconnectsOnInvalidClient),
        budget,
    );
    mutant.delegated = true;
    mutant.max_failures = Some(1);
    let results = chaos::run(&mutant, &()).unwrap();
    let caught = results
        .iter()
        .find(|r| !r.failed_checks.is_empty())
        .unwrap_or_else(|| panic!("the disconnecting mutant passed {budget} delegated cases"));
    assert!(
        caught.failed_checks.contains(&CheckId::NoFalseDisconnect),
        "caught by {:?}",
        caught.failed_checks
    );
}

#[test]
fn a_run_is_the_same_with_any_number_of_jobs() {
    let one = chaos::run(
        &ChaosConfig {
            jobs: 1,
            ..config(Profile::Remediated, 4)
        },
        &(),
    )
    .unwrap();
    let two = chaos::run(&config(Profile::Remediated, 4), &()).unwrap();
    let reports = |results: &[chaos::CaseResult]| -> Vec<serde_json::Value> {
        results
            .iter()
            .map(|r| without_wall_time(&r.report))
            .collect()
    };
    assert_eq!(reports(&one), reports(&two));
    assert_eq!(
        one.iter().map(|r| &r.scenario.name).collect::<Vec<_>>(),
        ["chaos-1-0", "chaos-1-1", "chaos-1-2", "chaos-1-3"]
    );
}

#[test]
fn a_shrunk_failure_is_a_scenario_file_that_replays_byte_for_byte() {
    let config = ChaosConfig {
        max_failures: Some(1),
        shrink: true,
        shrink_budget: 24,
        ..config(Profile::Mutant(Mutation::ForgetsOutbox), 8)
    };
    let results = chaos::run(&config, &()).unwrap();
    let failure = results.last().unwrap();
    assert!(failure.failed_checks.contains(&CheckId::NoLoss));
    let dir = std::env::temp_dir().join(format!("maildrill-chaos-{}", std::process::id()));
    let path = chaos::save(&dir, &config, failure).unwrap();
    let replayed = maildrill::runner::run_file(&path, None).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        without_wall_time(&replayed),
        without_wall_time(&failure.report)
    );
    assert!(
        !replayed.passed,
        "every expectation of a saved failure is pass"
    );
}

#[test]
fn the_committed_regression_of_a_mutant_stays_green() {
    let report = maildrill::runner::run_file(
        std::path::Path::new("tests/chaos/forgets-outbox.toml"),
        None,
    )
    .unwrap();
    assert!(
        report.passed,
        "{:#}",
        serde_json::to_value(&report.checks).unwrap()
    );
    let no_loss = report
        .checks
        .iter()
        .find(|c| c.id == CheckId::NoLoss)
        .unwrap();
    assert_eq!(
        (no_loss.verdict, no_loss.expected),
        (Grade::Fail, Grade::Fail)
    );
    // The same timeline loses nothing with the remediated client: the loss is the mutant's.
    let path = std::path::Path::new("tests/chaos/forgets-outbox.toml");
    let mut file = maildrill::scenario::load(path).unwrap();
    file.client.as_mut().unwrap().profile = Profile::Remediated;
    for expect in &mut file.expect {
        expect.verdict = Grade::Pass;
    }
    let remediated = maildrill::runner::run_scenario(path, &file, None).unwrap();
    assert!(
        remediated.passed,
        "{:#}",
        serde_json::to_value(&remediated.checks).unwrap()
    );
}

/// Failures chaos found in the remediated client (or in how the harness read it), kept as
/// files: each must pass.
#[test]
fn the_committed_regressions_of_the_remediated_client_stay_green() {
    for file in [
        "stale-smtp-reply.toml",
        "unknown-sends-end-a-wait.toml",
        "abandoned-smtp-transaction.toml",
        "retry-after-outlives-a-new-secret.toml",
        "late-greeting.toml",
    ] {
        let path = std::path::Path::new("tests/chaos").join(file);
        let report = maildrill::runner::run_file(&path, None).unwrap();
        assert!(
            report.passed,
            "{file}: {:#}",
            serde_json::to_value(&report.checks).unwrap()
        );
    }
}

/// A judge that replays nothing: case `i` fails `no-loss` when `i % 3 == 0`, `no-loss` and
/// `no-duplicates` when `i % 3 == 1`, and passes otherwise.
fn scripted(
    path: &std::path::Path,
    file: &maildrill::scenario::ScenarioFile,
) -> Result<maildrill::runner::ScenarioReport, maildrill::runner::RunError> {
    let index: usize = file.name.rsplit('-').next().unwrap().parse().unwrap();
    let failing: &[CheckId] = match index % 3 {
        0 => &[CheckId::NoLoss],
        1 => &[CheckId::NoLoss, CheckId::NoDuplicates],
        _ => &[],
    };
    let checks = [CheckId::NoLoss, CheckId::NoDuplicates]
        .into_iter()
        .map(|id| maildrill::check::Verdict {
            id,
            verdict: Grade::of(!failing.contains(&id)),
            expected: Grade::Pass,
            observed: String::new(),
            detail: String::new(),
            at: None,
        })
        .collect();
    Ok(maildrill::runner::ScenarioReport {
        file: path.display().to_string(),
        name: file.name.clone(),
        seed: file.seed,
        subject: "scripted".into(),
        passed: failing.is_empty(),
        skipped: None,
        incidents: Vec::new(),
        checks,
        stats: maildrill::runner::Stats::default(),
        wall_ms: 0,
        events: Default::default(),
        trace: Default::default(),
    })
}

#[test]
fn a_run_stops_after_max_failures_the_same_with_any_number_of_jobs() {
    let run = |jobs| {
        let config = ChaosConfig {
            max_failures: Some(4),
            jobs,
            ..config(Profile::Remediated, 50)
        };
        chaos::run_with(&config, &(), &scripted).unwrap()
    };
    let indexes =
        |results: &[chaos::CaseResult]| -> Vec<usize> { results.iter().map(|r| r.index).collect() };
    let two = run(2);
    // Failures at 0, 1, 3 and 4: the run ends with the fourth.
    assert_eq!(indexes(&two), [0, 1, 2, 3, 4]);
    assert_eq!(indexes(&run(1)), indexes(&two));
}

#[test]
fn a_failure_with_the_checks_of_one_already_shrunk_is_listed_not_shrunk() {
    let config = ChaosConfig {
        max_failures: Some(4),
        shrink: true,
        shrink_budget: 3,
        ..config(Profile::Remediated, 50)
    };
    let results = chaos::run_with(&config, &(), &scripted).unwrap();
    let summary: Vec<(usize, bool, Option<usize>)> = results
        .iter()
        .filter(|r| !r.failed_checks.is_empty())
        .map(|r| (r.index, r.shrink_steps > 0, r.repeats))
        .collect();
    assert_eq!(
        summary,
        [
            (0, true, None),
            (1, true, None),
            (3, false, Some(0)),
            (4, false, Some(1))
        ]
    );
    let all = chaos::run_with(
        &ChaosConfig {
            shrink_all: true,
            ..config
        },
        &(),
        &scripted,
    )
    .unwrap();
    assert!(
        all.iter()
            .filter(|r| !r.failed_checks.is_empty())
            .all(|r| r.shrink_steps > 0 && r.repeats.is_none())
    );
}
