//! Chaos runs: random 24-hour timelines thrown at the client, every case checked against the
//! invariants, and each failure shrunk to a minimal timeline written out as a scenario file.
//!
//! Case `i` of seed `S` is drawn from its own seeded stream, so a run is the same on any
//! machine and with any number of jobs, and `--seed S` repeats it; a shrunk failure is an
//! ordinary scenario file that `maildrill run` replays byte for byte (CONTRACTS §7).

pub mod case;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

pub use case::Case;

use crate::check::{CheckId, Grade};
use crate::runner::{self, RunError, ScenarioReport};
use crate::scenario::file::ScenarioFile;
use crate::seed::Seed;
use crate::subject::Profile;

/// How a chaos run goes.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Cases to run.
    pub cases: usize,
    /// The run's seed; case `i` draws from `seed` and `i` alone.
    pub seed: u64,
    /// The client profile under test.
    pub profile: Profile,
    /// Stop drawing new cases once this many have failed (`None`: run them all). The run
    /// keeps the cases up to the Nth failure in case order, whatever the number of jobs.
    pub max_failures: Option<usize>,
    /// Shrink failures to a minimal timeline.
    pub shrink: bool,
    /// Most replays spent shrinking one failure.
    pub shrink_budget: usize,
    /// Shrink every failure, not only the first with each set of failing checks.
    pub shrink_all: bool,
    /// Worker threads (each replays on its own runtime).
    pub jobs: usize,
    /// Draw delegated cases too: a multi-tenant app whose customers' users connect, with
    /// user- and tenant-level events among the app-level outages (for a subject that can
    /// connect users).
    pub delegated: bool,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        ChaosConfig {
            cases: 100,
            seed: 0,
            profile: Profile::Remediated,
            max_failures: None,
            shrink: true,
            shrink_budget: 128,
            shrink_all: false,
            jobs: 1,
            delegated: false,
        }
    }
}

/// One case's outcome.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// Its index in the run.
    pub index: usize,
    /// The case as a scenario (shrunk when it failed and shrinking was on).
    pub scenario: ScenarioFile,
    /// Its report.
    pub report: ScenarioReport,
    /// Ids of the checks that failed before shrinking.
    pub failed_checks: Vec<CheckId>,
    /// Replays spent shrinking.
    pub shrink_steps: usize,
    /// The earlier case that failed the same checks, when this one was left unshrunk for it.
    pub repeats: Option<usize>,
    /// The report of the case as first drawn, when it was shrunk (the HTML report shows both).
    pub before: Option<Box<ScenarioReport>>,
}

/// The calendar start of every generated case.
pub fn start() -> DateTime<Utc> {
    "2025-02-14T00:00:00Z"
        .parse()
        .expect("a valid RFC 3339 constant")
}

/// The name of case `index` of a run with `seed`.
pub fn case_name(seed: u64, index: usize) -> String {
    format!("chaos-{seed}-{index}")
}

fn failing(report: &ScenarioReport) -> Vec<CheckId> {
    report
        .checks
        .iter()
        .filter(|c| c.verdict != c.expected)
        .map(|c| c.id)
        .collect()
}

/// How a case is judged: a scenario in, its report out (the bundled client through
/// [`runner::run_scenario`], or any subject through [`runner::run_subject`]).
pub type Judge<'a> = dyn Fn(&Path, &ScenarioFile) -> Result<ScenarioReport, RunError> + Sync + 'a;

/// Replays a case. A replay the harness had to stop (a client that retries without ever
/// waiting, a subject that fails or hangs) is a failing case, not the end of the run: it is
/// shrunk and saved like any other.
fn replay(
    name: &str,
    case: &Case,
    profile: Profile,
    judge: &Judge<'_>,
) -> Result<(ScenarioFile, ScenarioReport), RunError> {
    let scenario = case.scenario(name, start(), profile);
    let report = match judge(Path::new(name), &scenario) {
        Ok(report) => report,
        Err(RunError::Harness { reason, .. }) => ScenarioReport {
            file: name.to_string(),
            name: name.to_string(),
            seed: scenario.seed,
            subject: String::new(),
            passed: false,
            skipped: None,
            incidents: Vec::new(),
            checks: vec![crate::check::Verdict {
                id: CheckId::ReplayCompletes,
                verdict: Grade::Fail,
                expected: Grade::Pass,
                observed: reason,
                detail: "the replay reaches the scenario's end".into(),
                at: None,
            }],
            stats: runner::Stats::default(),
            wall_ms: 0,
            events: std::collections::BTreeMap::new(),
            trace: crate::trace::Trace::default(),
        },
        Err(error) => return Err(error),
    };
    Ok((scenario, report))
}

/// The bundled client as `config.profile` says.
fn bundled(path: &Path, file: &ScenarioFile) -> Result<ScenarioReport, RunError> {
    runner::run_scenario(path, file, None)
}

/// Runs case `index`: draws it, replays it and, if it fails, shrinks it while a check that
/// failed at first still fails.
pub fn run_case(config: &ChaosConfig, index: usize) -> Result<CaseResult, RunError> {
    run_case_with(config, index, &bundled)
}

/// [`run_case`] with another judge (a subject of the user's).
pub fn run_case_with(
    config: &ChaosConfig,
    index: usize,
    judge: &Judge<'_>,
) -> Result<CaseResult, RunError> {
    let mut found = draw(config, index, judge)?;
    if found.failed_checks.is_empty() {
        // A passing case is drawn on no page; its coverage hits are all a report needs.
        found.report.trace.keep_hits_only();
        return Ok(found);
    }
    if !config.shrink {
        return Ok(found);
    }
    shrink(config, found, judge)
}

/// Case `index`'s value tree: the case and the way to simpler ones.
fn tree(config: &ChaosConfig, index: usize) -> Result<impl ValueTree<Value = Case>, RunError> {
    let seed: [u8; 32] = Seed(config.seed)
        .stream(&format!("chaos.case.{index}"))
        .bytes();
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
    );
    case::strategy(config.delegated)
        .new_tree(&mut runner)
        .map_err(|reason| RunError::Harness {
            path: PathBuf::from(case_name(config.seed, index)),
            reason: reason.to_string(),
        })
}

/// Draws case `index` and replays it once.
fn draw(config: &ChaosConfig, index: usize, judge: &Judge<'_>) -> Result<CaseResult, RunError> {
    let name = case_name(config.seed, index);
    let (scenario, report) = replay(
        &name,
        &tree(config, index)?.current(),
        config.profile,
        judge,
    )?;
    Ok(CaseResult {
        index,
        failed_checks: failing(&report),
        scenario,
        report,
        shrink_steps: 0,
        repeats: None,
        before: None,
    })
}

/// Shrinks a failing case while a check that failed at first still fails: proptest's own
/// loop, simplifying while the case fails and complicating when it passes.
fn shrink(
    config: &ChaosConfig,
    found: CaseResult,
    judge: &Judge<'_>,
) -> Result<CaseResult, RunError> {
    let name = case_name(config.seed, found.index);
    let mut tree = tree(config, found.index)?;
    let CaseResult {
        index,
        mut scenario,
        mut report,
        failed_checks,
        ..
    } = found;
    let mut shrink_steps = 0;
    let before = Some(Box::new(report.clone()));
    if tree.simplify() {
        while shrink_steps < config.shrink_budget {
            shrink_steps += 1;
            let (candidate, outcome) = replay(&name, &tree.current(), config.profile, judge)?;
            let still = failing(&outcome)
                .iter()
                .any(|id| failed_checks.contains(id));
            if still {
                (scenario, report) = (candidate, outcome);
                if !tree.simplify() {
                    break;
                }
            } else if !tree.complicate() {
                break;
            }
        }
    }
    Ok(CaseResult {
        index,
        scenario,
        report,
        failed_checks,
        shrink_steps,
        repeats: None,
        before,
    })
}

/// Progress of a run, for a progress bar and for printing failures as they come.
pub trait Progress: Sync {
    /// A case finished.
    fn case_done(&self, failed: bool);
    /// A case failed (before any shrinking).
    fn found(&self, _result: &CaseResult) {}
    /// Shrinking of the failure of case `index` began.
    fn shrinking(&self, _index: usize) {}
    /// A failure was shrunk.
    fn shrunk(&self, _result: &CaseResult) {}
}

impl Progress for () {
    fn case_done(&self, _: bool) {}
}

/// Runs the cases on `config.jobs` threads; results come back in case order.
pub fn run(config: &ChaosConfig, progress: &dyn Progress) -> Result<Vec<CaseResult>, RunError> {
    run_with(config, progress, &bundled)
}

/// [`run`] with another judge (a subject of the user's): every case drawn and replayed on
/// `config.jobs` threads until `config.max_failures`, then the failures shrunk, the first of
/// each set of failing checks only unless `config.shrink_all`.
pub fn run_with(
    config: &ChaosConfig,
    progress: &dyn Progress,
    judge: &Judge<'_>,
) -> Result<Vec<CaseResult>, RunError> {
    let mut done = found(config, progress, judge)?;
    if !config.shrink {
        return Ok(done);
    }
    let mut seen = std::collections::BTreeMap::new();
    let mut to_shrink = Vec::new();
    for (position, result) in done.iter_mut().enumerate() {
        if result.failed_checks.is_empty() {
            continue;
        }
        let checks: std::collections::BTreeSet<CheckId> =
            result.failed_checks.iter().copied().collect();
        match seen.get(&checks) {
            Some(first) if !config.shrink_all => result.repeats = Some(*first),
            _ => {
                seen.entry(checks).or_insert(result.index);
                to_shrink.push(position);
            }
        }
    }
    let shrunk = crate::parallel::map_ordered(
        to_shrink.len(),
        config.jobs,
        |k| {
            let found = done[to_shrink[k]].clone();
            progress.shrinking(found.index);
            let result = shrink(config, found, judge);
            if let Ok(result) = &result {
                progress.shrunk(result);
            }
            result
        },
        |_| false,
    );
    for (position, result) in to_shrink.into_iter().zip(shrunk) {
        done[position] = result?;
    }
    Ok(done)
}

/// Every case drawn and replayed once, in case order, up to the `max_failures`th failure.
fn found(
    config: &ChaosConfig,
    progress: &dyn Progress,
    judge: &Judge<'_>,
) -> Result<Vec<CaseResult>, RunError> {
    let failures = std::sync::atomic::AtomicUsize::new(0);
    let failed =
        |r: &Result<CaseResult, RunError>| r.as_ref().map_or(true, |r| !r.failed_checks.is_empty());
    let results = crate::parallel::map_ordered(
        config.cases,
        config.jobs,
        |index| {
            let result = draw(config, index, judge);
            progress.case_done(failed(&result));
            if let Ok(found) = &result
                && !found.failed_checks.is_empty()
            {
                progress.found(found);
            }
            result
        },
        |result| {
            failed(result)
                && config.max_failures.is_some_and(|most| {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 >= most
                })
        },
    );
    let mut done = Vec::with_capacity(results.len());
    for result in results {
        done.push(result?);
    }
    if let Some(most) = config.max_failures {
        // Every case below the last one started has finished, so the first `most` failures in
        // case order are here whatever the number of jobs: keep the run up to the last of them.
        let mut seen = 0;
        if let Some(last) = done.iter().position(|r| {
            seen += usize::from(!r.failed_checks.is_empty());
            seen >= most
        }) {
            done.truncate(last + 1);
        }
    }
    Ok(done)
}

/// Writes a failure as a scenario file in `dir`, with a header saying how it was found.
pub fn save(dir: &Path, config: &ChaosConfig, result: &CaseResult) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}.toml", result.scenario.name));
    let body = toml::to_string(&result.scenario).map_err(std::io::Error::other)?;
    let header = format!(
        "# Found by `maildrill chaos --seed {} --profile {}` (case {}), shrunk in {} replays.\n\
         # Failing checks: {}.\n\
         # Every expectation is \"pass\": `maildrill run` on this file exits 1 until the client\n\
         # is fixed.\n",
        config.seed,
        config.profile,
        result.index,
        result.shrink_steps,
        failing(&result.report)
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    std::fs::write(&path, header + &body)?;
    Ok(path)
}
