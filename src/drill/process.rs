//! A subject in another process, in any language: started with the environment of CONTRACTS
//! section 2, ready when it prints `MAILDRILL_READY`, handed messages by an HTTP POST or a
//! command, stopped with SIGTERM and, after a grace period, SIGKILL.
//!
//! Whatever goes wrong with the process (it exits, never becomes ready, refuses a message,
//! ignores SIGTERM) is an incident in the report, never an error that loses the report: a
//! drill's verdicts come from the wire either way.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};

use super::output::{Output, Stream};
use super::{DrillOptions, Submit};
use crate::envfile::Environment;
use crate::sim::Credentials;
use crate::subject::{
    Capability, Diagnostics, Incident, Message, Process, Start, Subject, SubjectError,
};
use crate::time::{ClockExt as _, SharedClock};

/// The line a subject prints on standard output once it takes messages, optionally with
/// ` submit=URL`, where the drill posts them.
pub const READY: &str = "MAILDRILL_READY";

/// How long the drill waits for a message to be taken.
const SUBMIT_WITHIN: Duration = Duration::from_secs(10);
/// How long a killed process may take to go.
const KILL_WITHIN: Duration = Duration::from_secs(5);

/// A command line run as a subject: `sh -c COMMAND`.
#[derive(Debug)]
pub struct External {
    options: DrillOptions,
    log: Arc<Mutex<Log>>,
}

/// What the drill saw of the subject, across its restarts.
#[derive(Debug, Default)]
struct Log {
    incidents: Vec<Incident>,
    output: Output,
}

fn lock(log: &Mutex<Log>) -> MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

impl External {
    /// A subject that runs `options.exec`.
    pub fn new(options: DrillOptions) -> External {
        External {
            options,
            log: Arc::default(),
        }
    }

    fn incident(&self, clock: &SharedClock, what: String) {
        record(&self.log, clock, what);
    }
}

fn record(log: &Mutex<Log>, clock: &SharedClock, what: String) {
    lock(log).incidents.push(Incident {
        at: clock.now_utc(),
        what,
    });
}

/// How the process ended.
#[derive(Debug, Clone)]
struct Exit {
    at: DateTime<Utc>,
    status: String,
}

/// What the process said on its ready line.
#[derive(Debug)]
enum Readiness {
    Ready(Option<String>),
    Exited(Exit),
    TimedOut,
}

impl Subject for External {
    type Process = Running;

    fn name(&self) -> String {
        self.options.name()
    }

    fn capabilities(&self) -> Vec<Capability> {
        self.options.capabilities.clone()
    }

    async fn start(&self, start: Start) -> Result<Running, SubjectError> {
        let clock = start.clock.clone();
        let (env, synced_file) = environment(&start, self.options.env_file.as_ref())?;
        let mut child = spawn(&self.options.exec, &env)?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        let (ready_tx, ready_rx) = oneshot::channel();
        read_lines(&mut child, &self.log, ready_tx);
        let exited = watch_exit(child, clock.clone());
        let readiness = wait_ready(ready_rx, exited.clone(), &clock, self.options.ready_timeout);
        let mut running = Running {
            log: self.log.clone(),
            clock: clock.clone(),
            pid,
            exited,
            target: None,
            env,
            synced_file,
            grace: self.options.grace,
            refused: Refusals::default(),
            stopped: false,
        };
        let tail = || lock(&self.log).output.tail();
        match readiness.await {
            Readiness::Ready(announced) => {
                running.target = self.target(announced, &clock);
            }
            Readiness::Exited(exit) => self.incident(
                &clock,
                format!(
                    "exited with {} before it printed {READY}; {}",
                    exit.status,
                    tail()
                ),
            ),
            Readiness::TimedOut => {
                self.incident(
                    &clock,
                    format!(
                        "did not print {READY} within {}; stopped; {}",
                        humantime::format_duration(self.options.ready_timeout),
                        tail()
                    ),
                );
                running.kill().await;
            }
        }
        Ok(running)
    }

    fn diagnostics(&self) -> Diagnostics {
        let log = lock(&self.log);
        Diagnostics {
            incidents: log.incidents.clone(),
            output: log.output.text(),
        }
    }
}

impl External {
    /// Where messages go: the command or URL given, else the URL on the ready line.
    fn target(&self, announced: Option<String>, clock: &SharedClock) -> Option<Target> {
        match (&self.options.submit, announced) {
            (Submit::Command(command), _) => Some(Target::Command(command.clone())),
            (Submit::Url(url), _) => Some(Target::Url(url.clone(), reqwest::Client::new())),
            (Submit::Announced, Some(url)) => Some(Target::Url(url, reqwest::Client::new())),
            (Submit::Announced, None) => {
                self.incident(
                    clock,
                    format!(
                        "printed {READY} without submit=URL, and the drill was given no --submit-url or --submit-cmd: no message can reach it"
                    ),
                );
                None
            }
        }
    }
}

/// The environment of CONTRACTS section 2 plus the drill's keys; the env file is written
/// beside the secret file (and to `copy` when asked). Returns the environment and this
/// start's synced file.
fn environment(start: &Start, copy: Option<&PathBuf>) -> std::io::Result<(Environment, PathBuf)> {
    let root = start
        .secret
        .path()
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let ca_path = root.join("maildrill-ca.pem");
    crate::envfile::write_private(&ca_path, start.endpoints.ca_pem.as_bytes())?;
    let credentials = Credentials {
        tenant_id: start.tenant_id.clone(),
        client_id: start.client_id.clone(),
        secret: start.secret.current(),
        mailbox: start.mailbox.clone(),
    };
    let synced_file = root.join(format!("synced-{}.txt", start.generation));
    let env_file = root.join("maildrill.env");
    let env = Environment::new(
        &credentials,
        &start.endpoints,
        &ca_path,
        start.control.as_ref(),
    )
    .with(
        "MAILDRILL_CLIENT_SECRET_FILE",
        &start.secret.path().display().to_string(),
    )
    .with(
        "MAILDRILL_STATE_DIR",
        &start.state_dir.display().to_string(),
    )
    .with("MAILDRILL_SYNCED_FILE", &synced_file.display().to_string())
    .with("MAILDRILL_GENERATION", &start.generation.to_string())
    .with("MAILDRILL_ENV_FILE", &env_file.display().to_string());
    let env = match &start.certificate {
        // CONTRACTS section 2: present when the app has a certificate credential.
        Some(certificate) => env
            .with(
                "MAILDRILL_CLIENT_CERT",
                &certificate.cert_path().display().to_string(),
            )
            .with(
                "MAILDRILL_CLIENT_KEY",
                &certificate.key_path().display().to_string(),
            )
            .with(
                "MAILDRILL_CLIENT_CERT_THUMBPRINT",
                &certificate.thumbprint(),
            ),
        None => env,
    };
    let env = super::settings::export(env, &start.settings);
    env.write(&env_file)?;
    if let Some(copy) = copy {
        env.write(copy)?;
    }
    Ok((env, synced_file))
}

/// `sh -c COMMAND` in its own process group (so signals reach what it starts), with the
/// environment added to the drill's own.
fn spawn(command: &str, env: &Environment) -> std::io::Result<Child> {
    let mut child = Command::new("sh");
    child
        .arg("-c")
        .arg(command)
        .envs(env.pairs().iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    child.spawn()
}

/// Reads the child's output line by line into the log; the first ready line on standard
/// output is sent to `ready`.
fn read_lines(child: &mut Child, log: &Arc<Mutex<Log>>, ready: oneshot::Sender<Option<String>>) {
    if let Some(stdout) = child.stdout.take() {
        let log = log.clone();
        tokio::spawn(async move {
            let mut ready = Some(ready);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.trim().strip_prefix(READY)
                    && let Some(ready) = ready.take()
                {
                    let submit = rest
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("submit="))
                        .map(str::to_string);
                    let _ = ready.send(submit);
                }
                lock(&log).output.push(Stream::Stdout, &line);
            }
        });
    }
    if let Some(stderr) = child.stderr.take() {
        let log = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                lock(&log).output.push(Stream::Stderr, &line);
            }
        });
    }
}

/// Waits for the child on a task; the receiver learns how and when it ended.
fn watch_exit(mut child: Child, clock: SharedClock) -> watch::Receiver<Option<Exit>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(status) => describe(status),
            Err(e) => format!("an unknown status ({e})"),
        };
        let _ = tx.send(Some(Exit {
            at: clock.now_utc(),
            status,
        }));
    });
    rx
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => Signal::try_from(signal)
            .map_or_else(|_| format!("signal {signal}"), |s| format!("signal {s}")),
        (None, None) => "an unknown status".into(),
    }
}

async fn wait_ready(
    ready: oneshot::Receiver<Option<String>>,
    mut exited: watch::Receiver<Option<Exit>>,
    clock: &SharedClock,
    within: Duration,
) -> Readiness {
    let exit = async {
        match exited.wait_for(Option::is_some).await {
            Ok(exit) => exit.clone(),
            Err(_) => None,
        }
    };
    tokio::select! {
        biased;
        Ok(announced) = ready => Readiness::Ready(announced),
        Some(exit) = exit => Readiness::Exited(exit),
        () = clock.sleep(within) => Readiness::TimedOut,
    }
}

/// Where the drill hands messages.
#[derive(Debug)]
enum Target {
    Url(String, reqwest::Client),
    Command(String),
}

/// Messages the process did not take, for one incident at its stop.
#[derive(Debug, Default)]
struct Refusals {
    count: u64,
    first: Option<String>,
}

/// A running subject process.
#[derive(Debug)]
pub struct Running {
    log: Arc<Mutex<Log>>,
    clock: SharedClock,
    pid: Option<Pid>,
    exited: watch::Receiver<Option<Exit>>,
    target: Option<Target>,
    env: Environment,
    synced_file: PathBuf,
    grace: Duration,
    refused: Refusals,
    stopped: bool,
}

impl Running {
    fn exit(&self) -> Option<Exit> {
        self.exited.borrow().clone()
    }

    /// Sends `signal` to the process group.
    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid {
            let _ = killpg(pid, signal);
        }
    }

    /// Waits up to `within` for the process to end; whether it did.
    async fn ended_within(&mut self, within: Duration) -> bool {
        let exited = &mut self.exited;
        let ended = self
            .clock
            .timeout(within, exited.wait_for(Option::is_some))
            .await;
        matches!(ended, Ok(Ok(_)))
    }

    /// SIGKILL, and wait for the end.
    async fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        self.ended_within(KILL_WITHIN).await;
        self.stopped = true;
    }

    /// Hands one message over; why not, if it was not taken.
    async fn hand_over(&self, message: &Message) -> Result<(), String> {
        if let Some(exit) = self.exit() {
            return Err(format!("it had exited ({})", exit.status));
        }
        let json = serde_json::json!({
            "message_id": message.message_id,
            "from": message.from,
            "to": message.to,
            "subject": message.subject,
            "body": message.body,
        });
        match &self.target {
            None => Err("no way to hand it messages".into()),
            Some(Target::Url(url, client)) => {
                let sent = self
                    .clock
                    .timeout(SUBMIT_WITHIN, client.post(url).json(&json).send())
                    .await;
                match sent {
                    Ok(Ok(response)) if response.status().is_success() => Ok(()),
                    Ok(Ok(response)) => Err(format!("POST {url} answered {}", response.status())),
                    Ok(Err(e)) => Err(format!("POST {url} failed: {e}")),
                    Err(_) => Err(format!("POST {url} got no answer within {SUBMIT_WITHIN:?}")),
                }
            }
            Some(Target::Command(command)) => self.run_submit(command, &json).await,
        }
    }

    /// Runs the submit command with the message as JSON on its standard input.
    async fn run_submit(&self, command: &str, json: &serde_json::Value) -> Result<(), String> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .envs(self.env.pairs().iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("`{command}` did not start: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(json.to_string().as_bytes()).await;
        }
        match self.clock.timeout(SUBMIT_WITHIN, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("`{command}` ended with {}", describe(status))),
            Ok(Err(e)) => Err(format!("`{command}` failed: {e}")),
            Err(_) => Err(format!("`{command}` did not end within {SUBMIT_WITHIN:?}")),
        }
    }

    /// The incidents of a stop: an earlier exit, refused messages.
    fn report_stop(&self, ignored_term: bool) {
        let tail = || lock(&self.log).output.tail();
        if ignored_term {
            record(
                &self.log,
                &self.clock,
                format!(
                    "ignored SIGTERM for {}: killed with SIGKILL; {}",
                    humantime::format_duration(self.grace),
                    tail()
                ),
            );
        }
        if self.refused.count > 0 {
            record(
                &self.log,
                &self.clock,
                format!(
                    "{} message(s) could not be handed to it; the first because {}",
                    self.refused.count,
                    self.refused
                        .first
                        .as_deref()
                        .unwrap_or("of an unknown cause")
                ),
            );
        }
    }
}

impl Process for Running {
    async fn submit(&mut self, message: Message) -> Result<(), SubjectError> {
        if let Err(why) = self.hand_over(&message).await {
            self.refused.count += 1;
            self.refused.first.get_or_insert(why);
        }
        Ok(())
    }

    async fn stop(mut self) -> Result<(), SubjectError> {
        if self.stopped {
            self.report_stop(false);
            return Ok(());
        }
        if let Some(exit) = self.exit() {
            let tail = lock(&self.log).output.tail();
            let what = format!(
                "exited with {} at {} before the drill stopped it; {tail}",
                exit.status,
                crate::time::rfc3339(exit.at)
            );
            lock(&self.log)
                .incidents
                .push(Incident { at: exit.at, what });
            self.stopped = true;
            self.report_stop(false);
            return Ok(());
        }
        self.signal(Signal::SIGTERM);
        let ignored = !self.ended_within(self.grace).await;
        if ignored {
            self.kill().await;
        }
        self.stopped = true;
        self.report_stop(ignored);
        Ok(())
    }

    fn synced(&self) -> Vec<String> {
        std::fs::read_to_string(&self.synced_file)
            .map(|text| {
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A drill that ends early (a harness error) must not leave the subject running.
        if !self.stopped && self.exit().is_none() {
            self.signal(Signal::SIGKILL);
        }
    }
}
