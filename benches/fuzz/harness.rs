//! The fuzz loop: generate, run under `catch_unwind`, check, time, watch for hangs, report.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use super::mutate::Rng;

/// Makes inputs: a pure function of the generator's fixed context and the random draws, so
/// the watchdog can regenerate the input that hung.
pub trait Gen: Send + Sync + 'static {
    /// One input.
    type Input;
    /// Generates one input.
    fn input(&self, r: &mut Rng) -> Self::Input;
    /// The input as escaped text, for reports.
    fn show(&self, input: &Self::Input) -> String;
}

/// Feeds one input to the code under test: `Ok(outcome)` (a class for the histogram) when
/// every answer was well formed, `Err(why)` otherwise.
pub trait Check<I> {
    /// Runs and checks one input.
    fn check(&mut self, input: &I) -> Result<u16, String>;
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Summary {
    /// Target name.
    pub name: &'static str,
    /// Inputs thrown.
    pub inputs: u64,
    /// Inputs that panicked.
    pub panics: u64,
    /// Inputs with an answer that was not well formed.
    pub malformed: u64,
    /// The slowest input.
    pub max: Duration,
    /// Wall time of the run.
    pub total: Duration,
    /// How often each outcome class came up.
    pub outcomes: BTreeMap<u16, u64>,
    /// The file the first failures were written to (when there were any).
    pub report: Option<String>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.total.as_secs_f64();
        write!(
            f,
            "{:<8} inputs {:>9}  panics {}  malformed {}  max {:.2} ms/input  total {:.1} s  {:.0} inputs/s",
            self.name,
            self.inputs,
            self.panics,
            self.malformed,
            self.max.as_secs_f64() * 1000.0,
            seconds,
            self.inputs as f64 / seconds.max(1e-9),
        )?;
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(k, n)| format!("{k}:{n}"))
            .collect();
        write!(f, "\n         outcomes {}", outcomes.join(" "))?;
        if let Some(report) = &self.report {
            write!(f, "\n         failures written to {report}")?;
        }
        Ok(())
    }
}

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static CAPTURED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A panic hook that, on a fuzzing thread, keeps the message instead of printing it.
fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CAPTURING.get() {
                CAPTURED.set(Some(info.to_string()));
            } else {
                previous(info);
            }
        }));
    });
}

/// Shared with the watchdog: which input runs, and since when (0: none).
struct Progress {
    index: AtomicU64,
    started_ns: AtomicU64,
    done: AtomicBool,
    base: Instant,
}

impl Progress {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX) | 1
    }
}

/// What a failure is, for grouping: the panic's site or the malformation's reason.
fn kind(failure: &str) -> String {
    let end = failure.find(['"', '\n']).unwrap_or(failure.len());
    failure[..end]
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .collect()
}

/// Where a target's failures go.
pub fn report_path(name: &str) -> String {
    format!("/tmp/maildrill-fuzz-{name}.txt")
}

/// Aborts the process with the input if one input runs longer than `limit`.
fn watchdog<G: Gen>(
    name: &'static str,
    generator: Arc<G>,
    seed: u64,
    limit: Duration,
    progress: Arc<Progress>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !progress.done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            let started = progress.started_ns.load(Ordering::Relaxed);
            if started == 0 || progress.now_ns().saturating_sub(started) < limit.as_nanos() as u64 {
                continue;
            }
            let index = progress.index.load(Ordering::Relaxed);
            let input = generator.input(&mut Rng::for_input(seed, index));
            let text = format!(
                "HANG in {name}: input {index} (seed {seed}) ran over {limit:?}\ninput: {}\n",
                generator.show(&input)
            );
            let path = report_path(name);
            let _ = std::fs::write(&path, &text);
            eprintln!("{text}(written to {path})");
            std::process::abort();
        }
    })
}

/// Throws `count` inputs of `generator` at `checker` and counts what went wrong; an input
/// that runs over `limit` aborts the process with that input.
pub fn run<G: Gen, C: Check<G::Input>>(
    name: &'static str,
    generator: G,
    checker: &mut C,
    count: u64,
    seed: u64,
    limit: Duration,
) -> Summary {
    install_hook();
    let generator = Arc::new(generator);
    let progress = Arc::new(Progress {
        index: AtomicU64::new(0),
        started_ns: AtomicU64::new(0),
        done: AtomicBool::new(false),
        base: Instant::now(),
    });
    let dog = watchdog(name, generator.clone(), seed, limit, progress.clone());
    let mut summary = Summary {
        name,
        ..Summary::default()
    };
    let mut failures = Vec::new();
    let mut kinds = BTreeMap::new();
    let start = Instant::now();
    for index in 0..count {
        let input = generator.input(&mut Rng::for_input(seed, index));
        progress.index.store(index, Ordering::Relaxed);
        progress
            .started_ns
            .store(progress.now_ns(), Ordering::Relaxed);
        let began = Instant::now();
        CAPTURING.set(true);
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| checker.check(&input)));
        CAPTURING.set(false);
        summary.max = summary.max.max(began.elapsed());
        progress.started_ns.store(0, Ordering::Relaxed);
        let failure = match result {
            Ok(Ok(outcome)) => {
                *summary.outcomes.entry(outcome).or_default() += 1;
                None
            }
            Ok(Err(why)) => {
                summary.malformed += 1;
                Some(format!("MALFORMED: {why}"))
            }
            Err(_) => {
                summary.panics += 1;
                let message = CAPTURED.take().unwrap_or_default();
                Some(format!("PANIC: {message}"))
            }
        };
        // A few of each kind (panic site, malformed reason), so one loud bug hides no other.
        let keep = failure.as_ref().is_some_and(|failure| {
            let seen = kinds.entry(kind(failure)).or_insert(0);
            *seen += 1;
            *seen <= 3 && failures.len() < 40
        });
        if let Some(failure) = failure.filter(|_| keep) {
            failures.push(format!(
                "#{index} (seed {seed}) {failure}\ninput: {}\n",
                generator.show(&input)
            ));
        }
    }
    summary.total = start.elapsed();
    summary.inputs = count;
    progress.done.store(true, Ordering::Relaxed);
    let _ = dog.join();
    if !failures.is_empty() {
        let path = report_path(name);
        if let Ok(mut file) = std::fs::File::create(&path) {
            let _ = file.write_all(failures.join("\n").as_bytes());
        }
        summary.report = Some(path);
    }
    summary
}
