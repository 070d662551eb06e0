//! The `maildrill` command line: argument parsing, wiring and exit codes only.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use maildrill::seed::Seed;
use maildrill::serve::{self, ServeOptions};

/// Replays allocate and free many small objects on every core at once (requests, journal
/// entries, SQLite pages); mimalloc's per-thread heaps serve them faster than glibc's arenas
/// (measured in the README's benchmark section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Fault-injection harness for mail clients that depend on Microsoft Entra ID credentials.
#[derive(Debug, Parser)]
#[command(name = "maildrill", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay scenario files (or folders of them) in virtual time and check the client.
    Run {
        /// Scenario files or folders (default: scenarios/).
        paths: Vec<PathBuf>,
        /// Override every scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Write the JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write a JUnit XML report here.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Write the HTML report (a static site: index, a page per scenario, coverage) here.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Which fault kinds reach which protocol stages across scenario files (replays them).
    Coverage {
        /// Scenario files or folders (default: scenarios/).
        paths: Vec<PathBuf>,
        /// Write the map as JSON here (`-`: standard output).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Exit 1 when this cell (KIND@STAGE, e.g. respond@token-5xx) is empty; repeatable.
        #[arg(long = "require", value_name = "KIND@STAGE")]
        require: Vec<String>,
    },
    /// Play a scenario in real time against a client in another process (any language) and
    /// check it from the wire, as `run` does the bundled client.
    Drill {
        /// The scenario file (e.g. scenarios/drill/incident-in-minutes.toml).
        scenario: PathBuf,
        /// The subject's command line, run with `sh -c`; it prints MAILDRILL_READY [submit=URL]
        /// on standard output once it takes messages.
        #[arg(long)]
        exec: String,
        /// POST each message (JSON) here instead of the URL on the ready line.
        #[arg(long, conflicts_with = "submit_cmd")]
        submit_url: Option<String>,
        /// Hand each message to this command (`sh -c`) as JSON on its standard input.
        #[arg(long)]
        submit_cmd: Option<String>,
        /// What the subject does: smtp, graph-send, inbound-sync, alerts (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "smtp,graph-send,alerts")]
        capabilities: Vec<maildrill::subject::Capability>,
        /// How long the subject may take to print MAILDRILL_READY after a start.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        ready_timeout: std::time::Duration,
        /// How long the subject may take to end after SIGTERM before SIGKILL.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
        /// Also write the subject's environment file here.
        #[arg(long)]
        env_file: Option<PathBuf>,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Write the JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write a JUnit XML report here.
        #[arg(long)]
        junit: Option<PathBuf>,
    },
    /// Run the bundled reference client as a process of its own, configured by the environment
    /// of `serve` or `drill`; it takes messages at the URL it prints and stops on SIGTERM.
    Client {
        /// Read the environment from this file (else from the process's variables).
        #[arg(long)]
        env_file: Option<PathBuf>,
        /// The client profile: remediated, naive-2025 or mutant:NAME.
        #[arg(long, default_value = "remediated")]
        profile: maildrill::subject::Profile,
        /// Where it keeps its outbox (default MAILDRILL_STATE_DIR, else ./maildrill-client).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// The seed of its jitter.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Throw random 24-hour timelines at the client; shrink and save each failure.
    Chaos {
        /// Cases to run.
        #[arg(long, default_value_t = 200)]
        cases: usize,
        /// The run's seed (default: drawn from the clock, and printed first).
        #[arg(long)]
        seed: Option<u64>,
        /// The client profile: remediated, naive-2025 or mutant:NAME.
        #[arg(long, default_value = "remediated")]
        profile: maildrill::subject::Profile,
        /// Write each shrunk failure here as a scenario file.
        #[arg(long)]
        save_failures: Option<PathBuf>,
        /// Write the JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write a JUnit XML report here.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Write the HTML report (a page per failing case, before and after shrinking) here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Worker threads (default: the machine's cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Most replays spent shrinking one failure (0: no shrinking).
        #[arg(long, default_value_t = 128)]
        shrink_budget: usize,
        /// Stop drawing new cases after this many failures (0: run every case).
        #[arg(long, default_value_t = 3)]
        max_failures: usize,
        /// Shrink every failure, also those failing the same checks as one shrunk already.
        #[arg(long)]
        shrink_all: bool,
        /// Draw delegated cases too: customers' users connect to a multi-tenant app, with
        /// user- and tenant-level events among the outages.
        #[arg(long)]
        delegated: bool,
    },
    /// Print the JSON Schema of scenario files (for editor completion).
    Schema,
    /// Load and validate scenario files without running them.
    Check {
        /// Scenario files or folders (default: scenarios/).
        paths: Vec<PathBuf>,
    },
    /// Print a scenario's lowered timeline.
    Explain {
        /// The scenario file.
        file: PathBuf,
    },
    /// List the scenarios in files or folders.
    List {
        /// Scenario files or folders (default: scenarios/).
        paths: Vec<PathBuf>,
    },
    /// Run the mock Entra token endpoint, Graph and SMTP on loopback, in real time, for any client.
    Serve {
        /// Serve this scenario's tenant instead of the built-in demo tenant.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Start the clock at this instant (RFC 3339), e.g. 2025-02-14T11:00:00Z.
        #[arg(long, value_parser = parse_instant)]
        at: Option<DateTime<Utc>>,
        /// Where to write the environment file for clients.
        #[arg(long, default_value = "maildrill.env")]
        env_file: PathBuf,
        /// HTTPS port (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        http_port: u16,
        /// Serve plain HTTP instead of HTTPS (load tests against plain-HTTP peers only).
        #[arg(long)]
        plain_http: bool,
        /// SMTP submission port, STARTTLS (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        smtp_port: u16,
        /// No AUTH required and no per-mailbox limits at SMTP (load tests only).
        #[arg(long)]
        open_smtp: bool,
        /// PEM certificate chain for STARTTLS instead of the generated one (needs --smtp-key).
        #[arg(long, requires = "smtp_key")]
        smtp_cert: Option<PathBuf>,
        /// PEM private key for --smtp-cert.
        #[arg(long, requires = "smtp_cert")]
        smtp_key: Option<PathBuf>,
        /// Journal entries kept in memory.
        #[arg(long, default_value_t = 10_000)]
        journal_capacity: usize,
        /// Seed of request ids and the demo secret.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Runtime threads. One is fastest when the load generator shares the machine: no
        /// cross-thread wake-ups and no lock contention on the shared tenant.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Listen on this IP address instead of 127.0.0.1, so other hosts reach the mocks
        /// and the control API (which still requires its token). The server certificate
        /// names the address; with 0.0.0.0 or :: the environment file names loopback.
        #[arg(long)]
        bind: Option<std::net::IpAddr>,
    },
}

/// Set when standard output carries a machine-readable document (`coverage --json -`): the
/// lines for people go to standard error instead, so the document stays whole.
static HUMAN_ON_STDERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Prints a line; a closed stdout (a reader that went away) must not stop the mocks.
fn say(line: impl std::fmt::Display) {
    use std::io::Write as _;
    if HUMAN_ON_STDERR.load(std::sync::atomic::Ordering::Relaxed) {
        let _ = writeln!(std::io::stderr(), "{line}");
    } else {
        let _ = writeln!(std::io::stdout(), "{line}");
    }
}

fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 instant such as 2025-02-14T11:00:00Z: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// The scenario files named by `paths`: files as given, folders' `*.toml` in name order.
fn scenario_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let defaults = [PathBuf::from("scenarios")];
    let paths = if paths.is_empty() {
        &defaults[..]
    } else {
        paths
    };
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("failed to read {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// A progress bar on a terminal; hidden in CI and when piped.
fn progress_bar(len: usize, template: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() || std::env::var_os("CI").is_some() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// Prints a scenario's verdict line and, for a failure, each check that differs.
fn print_report(bar: &indicatif::ProgressBar, report: &maildrill::runner::ScenarioReport) {
    let status = match (&report.skipped, report.passed) {
        (Some(_), _) => "SKIP",
        (None, true) => "PASS",
        (None, false) => "FAIL",
    };
    bar.suspend(|| {
        say(format!(
            "{status} {} ({}, seed {}, {} ms)",
            report.name, report.file, report.seed, report.wall_ms
        ));
        if let Some(reason) = &report.skipped {
            say(format!("     skipped: {reason}"));
        }
        for incident in &report.incidents {
            let at = maildrill::time::rfc3339(incident.at);
            say(format!("     subject at {at}: {}", incident.what));
        }
        for check in report.checks.iter().filter(|c| c.verdict != c.expected) {
            say(format!(
                "     {}: expected {}, got {}: {} (required: {})",
                check.id, check.expected, check.verdict, check.observed, check.detail
            ));
        }
    });
}

/// Replays `files` on every core, printing each verdict; the reports in the files' order and
/// how many could not run.
fn replay_files(
    files: &[PathBuf],
    seed: Option<u64>,
) -> (Vec<maildrill::runner::ScenarioReport>, usize) {
    let mut reports = Vec::new();
    let mut errors = 0;
    let bar = if files.len() > 1 {
        progress_bar(files.len(), "{bar:30} {pos}/{len} scenarios {msg}")
    } else {
        indicatif::ProgressBar::hidden()
    };
    // Every core replays a file at a time; the output keeps the files' order.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let outcomes = maildrill::parallel::map_ordered(
        files.len(),
        cores,
        |i| {
            let outcome = maildrill::runner::run_file(&files[i], seed);
            bar.inc(1);
            outcome
        },
        |_| false,
    );
    for (file, outcome) in files.iter().zip(outcomes) {
        match outcome {
            Ok(report) => {
                print_report(&bar, &report);
                reports.push(report);
            }
            Err(error) => {
                errors += 1;
                bar.suspend(|| eprintln!("ERROR {}: {error}", file.display()));
            }
        }
    }
    bar.finish_and_clear();
    (reports, errors)
}

fn run_scenarios(
    paths: &[PathBuf],
    seed: Option<u64>,
    json: Option<&PathBuf>,
    junit: Option<&PathBuf>,
    report: Option<&PathBuf>,
) -> anyhow::Result<ExitCode> {
    let files = scenario_files(paths)?;
    let (reports, errors) = replay_files(&files, seed);
    write_reports(&reports, json, junit)?;
    if let Some(dir) = report {
        let commands: Vec<String> = reports
            .iter()
            .map(|r| format!("maildrill run {} --seed {}", r.file, r.seed))
            .collect();
        let pages: Vec<maildrill::report::html::Page<'_>> = reports
            .iter()
            .zip(&commands)
            .map(|(report, command)| maildrill::report::html::Page {
                report,
                before: None,
                command,
            })
            .collect();
        maildrill::report::html::write_site(dir, "maildrill run", &pages)
            .with_context(|| format!("failed to write the HTML report into {}", dir.display()))?;
        say(format!("report: {}", dir.join("index.html").display()));
    }
    let failed = reports.iter().filter(|r| !r.passed).count();
    say(format!(
        "{} scenarios: {} as expected, {failed} not, {errors} errors",
        files.len(),
        reports.len() - failed
    ));
    Ok(if errors > 0 {
        ExitCode::from(2)
    } else if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `maildrill drill`: one scenario in real time against a subject process.
fn drill(
    scenario: &std::path::Path,
    options: maildrill::drill::DrillOptions,
    seed: Option<u64>,
    json: Option<&PathBuf>,
    junit: Option<&PathBuf>,
) -> anyhow::Result<ExitCode> {
    say(format!(
        "maildrill drill: {} against `{}` in real time",
        scenario.display(),
        options.exec
    ));
    let report = maildrill::drill::drill(scenario, options, seed)?;
    let bar = indicatif::ProgressBar::hidden();
    print_report(&bar, &report);
    // What the harness itself cost (serve, timeline, checks); the subject's CPU is its own.
    if let Ok(usage) = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF) {
        let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        say(format!(
            "     harness CPU: {:.2} s user, {:.2} s system",
            seconds(usage.user_time()),
            seconds(usage.system_time())
        ));
    }
    write_reports(std::slice::from_ref(&report), json, junit)?;
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The JSON and JUnit reports of a run, where asked for.
fn write_reports(
    reports: &[maildrill::runner::ScenarioReport],
    json: Option<&PathBuf>,
    junit: Option<&PathBuf>,
) -> anyhow::Result<()> {
    if let Some(path) = json {
        let body = serde_json::json!({ "scenarios": reports });
        let text = serde_json::to_string_pretty(&body).context("failed to encode the report")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    if let Some(path) = junit {
        let xml = maildrill::report::junit(reports).context("failed to encode the JUnit report")?;
        std::fs::write(path, xml).with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(())
}

struct ChaosBar {
    bar: indicatif::ProgressBar,
    failures: std::sync::atomic::AtomicU64,
}

impl maildrill::chaos::Progress for ChaosBar {
    fn case_done(&self, failed: bool) {
        let failures = self
            .failures
            .fetch_add(u64::from(failed), std::sync::atomic::Ordering::Relaxed)
            + u64::from(failed);
        self.bar.set_message(format!("{failures} failing"));
        self.bar.inc(1);
    }

    fn found(&self, result: &maildrill::chaos::CaseResult) {
        print_report(&self.bar, &result.report);
        self.bar.suspend(|| {
            say(format!(
                "     case {} failed {}",
                result.index,
                checks(&result.failed_checks)
            ));
        });
    }

    fn shrinking(&self, index: usize) {
        self.bar.set_message(format!("shrinking case {index}"));
    }

    fn shrunk(&self, result: &maildrill::chaos::CaseResult) {
        self.bar.suspend(|| {
            say(format!(
                "     case {} shrunk in {} replays: {} timeline steps left",
                result.index,
                result.shrink_steps,
                result.scenario.timeline.len()
            ));
        });
    }
}

/// A failing chaos case: its report as first drawn (when shrunk), its position among the
/// reports, its case index.
type Failing = (Option<Box<maildrill::runner::ScenarioReport>>, usize, usize);

/// The HTML report of a chaos run: a page per failing case (the shrunk case, and the case as
/// first drawn beside it), and the coverage of every case.
fn chaos_site(
    dir: &std::path::Path,
    config: &maildrill::chaos::ChaosConfig,
    reports: &[maildrill::runner::ScenarioReport],
    failing: &[Failing],
) -> anyhow::Result<()> {
    let commands: Vec<String> = failing
        .iter()
        .map(|(_, at, index)| {
            if reports[*at].file.ends_with(".toml") {
                format!("maildrill run {}", reports[*at].file)
            } else {
                format!(
                    "maildrill chaos --seed {} --cases {} --profile {} --max-failures 0",
                    config.seed,
                    index + 1,
                    config.profile
                )
            }
        })
        .collect();
    let pages: Vec<maildrill::report::html::Page<'_>> = failing
        .iter()
        .zip(&commands)
        .map(|((before, at, _), command)| maildrill::report::html::Page {
            report: &reports[*at],
            before: before.as_deref(),
            command,
        })
        .collect();
    let slugs = maildrill::report::html::slugs(&pages);
    let page_of = |i: usize| {
        failing
            .iter()
            .position(|(_, at, _)| *at == i)
            .map(|p| format!("{}.html", slugs[p]))
    };
    let map = maildrill::coverage::Coverage::of(reports);
    let title = format!("maildrill chaos, seed {}", config.seed);
    maildrill::report::html::write_site_with(dir, &title, &pages, &map, &page_of)
        .with_context(|| format!("failed to write the HTML report into {}", dir.display()))?;
    say(format!("report: {}", dir.join("index.html").display()));
    Ok(())
}

/// `maildrill coverage`: replays the files, prints the map's filled cells, writes its JSON and
/// fails when a required cell is empty.
fn coverage(
    paths: &[PathBuf],
    json: Option<&PathBuf>,
    require: &[String],
) -> anyhow::Result<ExitCode> {
    let required = require
        .iter()
        .map(|r| maildrill::coverage::parse_cell(r).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let json_on_stdout = json.is_some_and(|path| path.as_os_str() == "-");
    HUMAN_ON_STDERR.store(json_on_stdout, std::sync::atomic::Ordering::Relaxed);
    let files = scenario_files(paths)?;
    let (reports, errors) = replay_files(&files, None);
    if errors > 0 {
        anyhow::bail!(
            "failed to replay {errors} of {} scenario files",
            files.len()
        );
    }
    let map = maildrill::coverage::Coverage::of(&reports);
    for ((row, stage), runs) in &map.cells {
        let names: Vec<&str> = runs.iter().map(|(i, _)| map.runs[*i].0.as_str()).collect();
        say(format!(
            "{}@{}: {}",
            row.name(),
            stage.name(),
            names.join(", ")
        ));
    }
    let empty = map.empty();
    say(format!(
        "{} of {} possible cells covered",
        map.cells.len(),
        maildrill::coverage::Coverage::possible()
    ));
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&map.json()).context("failed to encode the map")?;
        if json_on_stdout {
            use std::io::Write as _;
            let _ = writeln!(std::io::stdout(), "{text}");
        } else {
            std::fs::write(path, text)
                .with_context(|| format!("failed to write {}", path.display()))?;
        }
    }
    let missing: Vec<String> = required
        .iter()
        .filter(|cell| empty.contains(cell))
        .map(|(row, stage)| format!("{}@{}", row.name(), stage.name()))
        .collect();
    for cell in &missing {
        say(format!("required cell {cell} is empty"));
    }
    Ok(if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn checks(ids: &[maildrill::check::CheckId]) -> String {
    ids.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
}

fn chaos(
    config: &maildrill::chaos::ChaosConfig,
    save: Option<&PathBuf>,
    json: Option<&PathBuf>,
    junit: Option<&PathBuf>,
    report: Option<&PathBuf>,
) -> anyhow::Result<ExitCode> {
    say(format!(
        "maildrill chaos: seed {}, {} cases, profile {}, {} jobs",
        config.seed, config.cases, config.profile, config.jobs
    ));
    let progress = ChaosBar {
        bar: progress_bar(
            config.cases,
            "{bar:30} {pos}/{len} cases, {msg}, {per_sec} [{elapsed_precise}]",
        ),
        failures: std::sync::atomic::AtomicU64::new(0),
    };
    let (results, wall_ms) = maildrill::time::wall_ms(|| maildrill::chaos::run(config, &progress));
    let results = results?;
    progress.bar.finish_and_clear();
    let mut reports = Vec::new();
    let mut failures = 0;
    let mut failing = Vec::new();
    for mut result in results {
        if !result.failed_checks.is_empty() {
            failures += 1;
            if let Some(first) = result.repeats {
                say(format!(
                    "FAIL case {}: {}, as case {first} (not shrunk; --shrink-all shrinks it)",
                    result.index,
                    checks(&result.failed_checks)
                ));
            } else if let Some(dir) = save {
                let path = maildrill::chaos::save(dir, config, &result)
                    .with_context(|| format!("failed to write into {}", dir.display()))?;
                say(format!("     saved {}", path.display()));
                result.report.file = path.display().to_string();
            }
            failing.push((result.before.take(), reports.len(), result.index));
        }
        reports.push(result.report);
    }
    write_reports(&reports, json, junit)?;
    if let Some(dir) = report {
        chaos_site(dir, config, &reports, &failing)?;
    }
    let stopped = if reports.len() < config.cases {
        format!(
            "; stopped after {failures} failures (--max-failures), {} cases not drawn",
            config.cases - reports.len()
        )
    } else {
        String::new()
    };
    say(format!(
        "{} cases: {} passed, {failures} failed ({:.0} cases/min){stopped}",
        reports.len(),
        reports.len() - failures,
        reports.len() as f64 * 60_000.0 / wall_ms.max(1) as f64
    ));
    Ok(if failures > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[expect(
    clippy::too_many_lines,
    reason = "one arm per subcommand, each destructuring its flags"
)]
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run {
            paths,
            seed,
            json,
            junit,
            report,
        } => run_scenarios(&paths, seed, json.as_ref(), junit.as_ref(), report.as_ref()),
        Command::Coverage {
            paths,
            json,
            require,
        } => coverage(&paths, json.as_ref(), &require),
        Command::Chaos {
            cases,
            seed,
            profile,
            save_failures,
            json,
            junit,
            report,
            jobs,
            shrink_budget,
            max_failures,
            shrink_all,
            delegated,
        } => {
            let config = maildrill::chaos::ChaosConfig {
                delegated,
                cases,
                // Only the default seed reads the clock; it is printed so the run can be repeated.
                seed: seed.unwrap_or_else(maildrill::time::wall_seed),
                profile,
                max_failures: (max_failures > 0).then_some(max_failures),
                shrink: shrink_budget > 0,
                shrink_budget,
                shrink_all,
                jobs: jobs.unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
                }),
            };
            chaos(
                &config,
                save_failures.as_ref(),
                json.as_ref(),
                junit.as_ref(),
                report.as_ref(),
            )
        }
        Command::Drill {
            scenario,
            exec,
            submit_url,
            submit_cmd,
            capabilities,
            ready_timeout,
            grace,
            env_file,
            seed,
            json,
            junit,
        } => {
            let submit = match (submit_url, submit_cmd) {
                (Some(url), _) => maildrill::drill::Submit::Url(url),
                (None, Some(command)) => maildrill::drill::Submit::Command(command),
                (None, None) => maildrill::drill::Submit::Announced,
            };
            let options = maildrill::drill::DrillOptions {
                submit,
                capabilities,
                ready_timeout,
                grace,
                env_file,
                ..maildrill::drill::DrillOptions::new(exec)
            };
            drill(&scenario, options, seed, json.as_ref(), junit.as_ref())
        }
        Command::Client {
            env_file,
            profile,
            state_dir,
            seed,
        } => {
            let options = maildrill::drill::client::ClientOptions {
                env_file,
                profile,
                state_dir,
                seed: maildrill::Seed(seed),
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("failed to start the runtime")?;
            runtime.block_on(maildrill::drill::client::run(options))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema => {
            say(maildrill::scenario::schema());
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { paths } => check(&paths),
        Command::Explain { file } => {
            let plan = maildrill::runner::check_file(&file)?;
            say(plan.explain());
            Ok(ExitCode::SUCCESS)
        }
        Command::List { paths } => list(&paths),
        Command::Serve {
            scenario,
            at,
            env_file,
            http_port,
            plain_http,
            smtp_port,
            open_smtp,
            smtp_cert,
            smtp_key,
            journal_capacity,
            seed,
            threads,
            bind,
        } => {
            let options = ServeOptions {
                bind,
                scenario,
                at,
                env_file,
                http_port,
                plain_http,
                smtp_port,
                open_smtp,
                smtp_tls_files: smtp_cert.zip(smtp_key),
                journal_capacity,
                seed: Seed(seed),
            };
            serve_until_ctrl_c(&options, threads)
        }
    }
}

/// `maildrill check`: every file loaded and lowered; exit 2 if any cannot be.
fn check(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut errors = 0;
    for file in &scenario_files(paths)? {
        match maildrill::runner::check_file(file) {
            Ok(_) => say(format!("ok    {}", file.display())),
            Err(error) => {
                errors += 1;
                eprintln!("error {error}");
            }
        }
    }
    Ok(if errors > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// `maildrill list`: each scenario's name, file and description.
fn list(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    for file in scenario_files(paths)? {
        match maildrill::scenario::load(&file) {
            Ok(scenario) => say(format!(
                "{}  {}  {}",
                scenario.name,
                file.display(),
                scenario.description
            )),
            Err(error) => eprintln!("error {error}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `maildrill serve`: the mocks on loopback in real time until Ctrl-C.
fn serve_until_ctrl_c(options: &ServeOptions, threads: usize) -> anyhow::Result<ExitCode> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("failed to start the runtime")?;
    runtime.block_on(async {
        let served = serve::start(options, serve::real_time_clock)
            .await
            .context("failed to start serve")?;
        say(format!(
            "maildrill serve: HTTPS on {}, SMTP (STARTTLS) on {}",
            served.http_addr, served.smtp_addr
        ));
        for (key, value) in served.env.pairs() {
            if !maildrill::envfile::SECRET_KEYS.contains(&key.as_str()) {
                say(format!("  {key}={value}"));
            }
        }
        say(format!(
            "  environment written to {} (mode 0600)",
            options.env_file.display()
        ));
        say("  Ctrl-C stops");
        served
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await;
        say("maildrill serve: stopped");
        Ok(ExitCode::SUCCESS)
    })
}
