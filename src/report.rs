//! Reports of a run: JUnit XML (one testsuite per scenario file, one testcase per check, one
//! `<skipped>` case for a scenario the subject could not be judged by; a drill's incidents in the
//! testsuite's `<system-err>`). The JSON report is the
//! serde form of [`crate::runner::ScenarioReport`] under `scenarios`. The HTML site is in
//! [`html`].

pub mod html;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::runner::ScenarioReport;

/// The JUnit XML of a run.
pub fn junit(reports: &[ScenarioReport]) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new("maildrill");
    for scenario in reports {
        let mut suite = TestSuite::new(scenario.file.clone());
        if let Some(reason) = &scenario.skipped {
            // One skipped case says why the scenario was not run against this subject.
            let mut status = TestCaseStatus::skipped();
            status.set_message(reason.clone());
            let mut case = TestCase::new(scenario.name.clone(), status);
            case.set_classname(scenario.name.clone());
            suite.add_test_case(case);
        }
        for check in &scenario.checks {
            let status = if check.verdict == check.expected {
                TestCaseStatus::success()
            } else {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(format!(
                    "expected {}, got {}: {}",
                    check.expected, check.verdict, check.observed
                ));
                status.set_description(check.detail.clone());
                status
            };
            let mut case = TestCase::new(check.id.name(), status);
            case.set_classname(scenario.name.clone());
            case.set_system_out(format!("{} (required: {})", check.observed, check.detail));
            suite.add_test_case(case);
        }
        if !scenario.incidents.is_empty() {
            // What went wrong with the subject itself (a drill's process), already redacted.
            let lines: Vec<String> = scenario
                .incidents
                .iter()
                .map(|i| format!("{} {}", crate::time::rfc3339(i.at), i.what))
                .collect();
            suite.set_system_err(lines.join("\n"));
        }
        report.add_test_suite(suite);
    }
    report.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skipped_scenario_is_a_skipped_case_with_its_reason() {
        let report = ScenarioReport {
            file: "scenarios/delta-token-expired.toml".into(),
            name: "delta-token-expired".into(),
            seed: 410,
            subject: "mailer".into(),
            passed: true,
            skipped: Some("subject mailer lacks inbound-sync that the scenario needs".into()),
            incidents: Vec::new(),
            checks: Vec::new(),
            stats: crate::runner::Stats::default(),
            wall_ms: 0,
            events: std::collections::BTreeMap::new(),
            trace: crate::trace::Trace::default(),
        };
        let xml = junit(&[report]).expect("the report encodes");
        assert!(
            xml.contains("<skipped message=\"subject mailer lacks inbound-sync"),
            "{xml}"
        );
    }
}
