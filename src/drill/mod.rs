//! `maildrill drill`: a scenario played in real time against a client in another process, in
//! any language, with the same checks, reports and exit codes as `maildrill run`.
//!
//! The mocks stand up on loopback sockets with the scenario's tenant and the control API; the
//! subject is started with the environment of CONTRACTS section 2 (plus the drill's keys),
//! handed the scenario's messages, stopped and started again at `restart-client`, while faults
//! and rotations happen at their instants; then the checks are computed from the wire.

pub mod client;
mod output;
mod process;
mod settings;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use process::{External, READY};

use crate::runner::{RunError, ScenarioReport, Wiring};
use crate::subject::Capability;

/// How the drill hands the subject messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Submit {
    /// POST to the URL the subject names on its ready line (`MAILDRILL_READY submit=URL`).
    #[default]
    Announced,
    /// POST to this URL.
    Url(String),
    /// Run this command (`sh -c`) with the message as JSON on its standard input; exit status
    /// 0 means taken.
    Command(String),
}

/// What to drill and how.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The subject's command line, run with `sh -c`.
    pub exec: String,
    /// How messages reach it.
    pub submit: Submit,
    /// What it can do (a scenario needing more is skipped).
    pub capabilities: Vec<Capability>,
    /// How long it may take to print `MAILDRILL_READY` after a start.
    pub ready_timeout: Duration,
    /// How long it may take to end after SIGTERM before SIGKILL.
    pub grace: Duration,
    /// Also write the subject's environment file here (rewritten at each start).
    pub env_file: Option<PathBuf>,
}

impl DrillOptions {
    /// A subject run as `exec`, sending over SMTP and Graph and raising alerts, ready within
    /// 30 s, given 5 s to stop.
    pub fn new(exec: impl Into<String>) -> DrillOptions {
        DrillOptions {
            exec: exec.into(),
            submit: Submit::Announced,
            capabilities: vec![Capability::Smtp, Capability::GraphSend, Capability::Alerts],
            ready_timeout: Duration::from_secs(30),
            grace: Duration::from_secs(5),
            env_file: None,
        }
    }

    /// The subject's name in reports: its program's file name.
    pub fn name(&self) -> String {
        let program = self.exec.split_whitespace().next().unwrap_or("subject");
        Path::new(program)
            .file_name()
            .map_or_else(|| program.to_string(), |n| n.to_string_lossy().into_owned())
    }
}

/// Drills the scenario at `path` against the subject `options` describe, its instants moved
/// to start now; `seed` overrides the file's.
pub fn drill(
    path: &Path,
    options: DrillOptions,
    seed: Option<u64>,
) -> Result<ScenarioReport, RunError> {
    use crate::time::Clock as _;
    let file = crate::scenario::load(path)?;
    let plan = crate::scenario::lower(path, &file, seed)?;
    // The subject's clock reads today's calendar: the scenario is played on it.
    let now = crate::time::SystemClock.now_utc();
    let by = now - plan.start();
    let plan = plan.shifted(by);
    let subject = External::new(options);
    crate::runner::run_lowered(path, &file, &plan, &subject, Wiring::RealTime)
}
