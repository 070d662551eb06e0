//! Reports of a run: JUnit XML (one testsuite per scenario file, one testcase per check). The
//! JSON report is the serde form of [`crate::runner::ScenarioReport`] under `scenarios`.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::runner::ScenarioReport;

/// The JUnit XML of a run.
pub fn junit(reports: &[ScenarioReport]) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new("maildrill");
    for scenario in reports {
        let mut suite = TestSuite::new(scenario.file.clone());
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
            let mut case = TestCase::new(check.id.clone(), status);
            case.set_classname(scenario.name.clone());
            case.set_system_out(format!("{} (required: {})", check.observed, check.detail));
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string()
}
