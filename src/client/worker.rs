//! The sending worker: takes due messages from the outbox and delivers them, backing off on
//! failure and opening a circuit when the credentials are refused.
//!
//! While the circuit is open nothing is sent and the queue is kept; one token probe goes out
//! per backoff interval (no tight loop against Entra), and a new secret value is probed at
//! once. The `naive-2025` profile keeps the behaviour of the incident: a fixed 1 s retry, no
//! circuit, and a message failed after five attempts whatever the reason.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::backoff::{Backoff, BackoffConfig};
use super::classify::Failure;
use super::outbox::{Outbox, OutboxError};
use super::secret::SecretSource;
use super::send::{Outcome, Sender};
use crate::seed::SeedRng;
use crate::time::{ClockExt as _, SharedClock};

/// The client's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Everything the post-mortem asked for.
    #[default]
    Remediated,
    /// The behaviour of 2025: fixed 1 s retries, five attempts, no circuit.
    Naive2025,
    /// The remediated client with one deliberate bug, to prove the harness catches it.
    Mutant(Mutation),
}

/// One deliberate bug in an otherwise remediated client (mutation testing of the harness).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mutation {
    /// Every client waits the same: no jitter in the backoff.
    NoJitter,
    /// `Retry-After` is not read.
    IgnoresRetryAfter,
    /// A message whose credentials or token are refused is failed, not kept.
    DropsAfterAuthFailure,
    /// Refused credentials are retried every second, with no hold at the token provider.
    TightAuthLoop,
    /// No credential expiry monitor.
    NoExpiryMonitor,
    /// The latency monitor's threshold is never reached.
    LatencyNeverFires,
    /// A send with no reply after the final dot is taken for a failure and sent again (the
    /// server may have it: a duplicate).
    FailsUnknownSends,
    /// A restarted process starts with an empty outbox.
    ForgetsOutbox,
}

impl Mutation {
    /// Every mutation, in a fixed order.
    pub const ALL: [Mutation; 8] = [
        Mutation::NoJitter,
        Mutation::IgnoresRetryAfter,
        Mutation::DropsAfterAuthFailure,
        Mutation::TightAuthLoop,
        Mutation::NoExpiryMonitor,
        Mutation::LatencyNeverFires,
        Mutation::FailsUnknownSends,
        Mutation::ForgetsOutbox,
    ];

    /// Its name in a profile (`mutant:NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Mutation::NoJitter => "no-jitter",
            Mutation::IgnoresRetryAfter => "ignores-retry-after",
            Mutation::DropsAfterAuthFailure => "drops-after-auth-failure",
            Mutation::TightAuthLoop => "tight-auth-loop",
            Mutation::NoExpiryMonitor => "no-expiry-monitor",
            Mutation::LatencyNeverFires => "latency-never-fires",
            Mutation::FailsUnknownSends => "fails-unknown-sends",
            Mutation::ForgetsOutbox => "forgets-outbox",
        }
    }
}

impl Profile {
    /// Parses `remediated`, `naive-2025` or `mutant:NAME`.
    pub fn parse(name: &str) -> Option<Profile> {
        match name {
            "remediated" => Some(Profile::Remediated),
            "naive-2025" => Some(Profile::Naive2025),
            _ => {
                let mutation = name.strip_prefix("mutant:")?;
                Mutation::ALL
                    .into_iter()
                    .find(|m| m.name() == mutation)
                    .map(Profile::Mutant)
            }
        }
    }

    /// Every profile name `parse` accepts.
    pub fn names() -> Vec<String> {
        let mut names = vec!["remediated".to_string(), "naive-2025".to_string()];
        names.extend(Mutation::ALL.iter().map(|m| format!("mutant:{}", m.name())));
        names
    }

    /// Whether this profile carries `mutation`.
    pub fn has(self, mutation: Mutation) -> bool {
        self == Profile::Mutant(mutation)
    }

    /// Whether the client has the post-mortem's features (remediated, or a mutant of it).
    pub fn remediated(self) -> bool {
        self != Profile::Naive2025
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Profile::Remediated => f.write_str("remediated"),
            Profile::Naive2025 => f.write_str("naive-2025"),
            Profile::Mutant(m) => write!(f, "mutant:{}", m.name()),
        }
    }
}

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The profile.
    pub profile: Profile,
    /// Backoff of retries and circuit probes (remediated).
    pub backoff: BackoffConfig,
    /// Attempts before a message fails (naive: 5).
    pub naive_attempts: u32,
    /// How often to look for a changed secret while the circuit is open.
    pub secret_poll: Duration,
    /// Return once nothing is queued (a drain), instead of waiting for more mail.
    pub stop_when_empty: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            profile: Profile::Remediated,
            backoff: BackoffConfig::default(),
            naive_attempts: 5,
            secret_poll: Duration::from_secs(10),
            stop_when_empty: false,
        }
    }
}

/// Something the worker did, for the run's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEvent {
    /// A message was accepted.
    Delivered {
        /// Outbox id.
        id: i64,
    },
    /// A delivery attempt failed and the message waits.
    Deferred {
        /// Outbox id.
        id: i64,
        /// Why.
        reason: String,
    },
    /// A message failed for good.
    Failed {
        /// Outbox id.
        id: i64,
        /// Why.
        reason: String,
    },
    /// No reply came after the message went out.
    Unknown {
        /// Outbox id.
        id: i64,
    },
    /// A failure was followed by a wait before the next try (a retry or a circuit probe).
    Waited {
        /// The wait chosen.
        wait: Duration,
        /// What the server asked for, if anything.
        retry_after: Option<Duration>,
        /// Failures in a row in this loop, this one included.
        streak: u32,
        /// Whether it is the circuit's probe loop (else the per-message retry loop).
        probe: bool,
    },
    /// The credentials were refused: sending stops.
    CircuitOpened,
    /// A probe worked: sending resumes.
    CircuitClosed,
}

/// The worker's event log, shared with whoever reports on the run.
pub type WorkerLog = super::EventLog<WorkerEvent>;

/// Delivers the outbox.
#[derive(Debug)]
pub struct Worker {
    /// Settings.
    pub config: WorkerConfig,
    /// The queue.
    pub outbox: Arc<Outbox>,
    /// Delivery.
    pub sender: Sender,
    /// Where the secret is read (to notice a rotation).
    pub secret: SecretSource,
    /// The clock.
    pub clock: SharedClock,
    /// Woken when a message is enqueued.
    pub wake: Arc<Notify>,
    /// What happened.
    pub log: WorkerLog,
    /// Jitter: each backoff (the retries, each opening of the circuit) draws its own stream.
    pub rng: std::sync::Mutex<SeedRng>,
    /// Metrics to keep up to date, if any.
    pub metrics: Option<Arc<super::metrics::Metrics>>,
}

impl Worker {
    fn note(&self, event: WorkerEvent) {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((self.clock.now_utc(), event));
    }

    /// Works until `until` on the client's calendar.
    pub async fn run(&self, until: DateTime<Utc>) -> Result<(), OutboxError> {
        let mut retry = Backoff::new(self.config.backoff, self.jitter());
        let mut circuit: Option<Backoff> = None;
        let mut probe_at = self.clock.now_utc();
        let mut last_secret = self.secret.current().ok();
        let mut paused_until = self.clock.now_utc();
        while self.clock.now_utc() < until {
            let now = self.clock.now_utc();
            if let Some(probe_backoff) = circuit.as_mut() {
                let secret = self.secret.current().ok();
                let rotated = secret != last_secret;
                if rotated {
                    // A new value: probe at once, and start the backoff afresh for it.
                    last_secret = secret;
                    probe_backoff.reset();
                    probe_at = now;
                }
                if now >= probe_at {
                    let retry_after = match self.sender.tokens.token(self.sender.scope()).await {
                        Ok(_) => {
                            circuit = None;
                            retry.reset();
                            self.note(WorkerEvent::CircuitClosed);
                            continue;
                        }
                        Err(Failure::Transient { retry_after, .. }) => retry_after,
                        Err(_) => None,
                    };
                    let wait = self.wait(probe_backoff, retry_after, true);
                    probe_at = self.clock.now_utc() + crate::time::to_chrono(wait);
                }
                let next = probe_at
                    .min(self.clock.now_utc() + crate::time::to_chrono(self.config.secret_poll))
                    .min(until);
                self.sleep_until(next).await;
                continue;
            }
            if now < paused_until {
                // The last send failed: the server is unwell, not the message, so no message
                // goes before the backoff (or the server's Retry-After) has passed.
                self.sleep_until(paused_until.min(until)).await;
                continue;
            }
            let Some(message) = self.outbox.claim_due(now)? else {
                if self.config.stop_when_empty && self.outbox.depth()? == 0 {
                    return Ok(());
                }
                let next = self.outbox.next_due_at()?.unwrap_or(until).min(until);
                self.idle_until(next).await;
                continue;
            };
            let outcome = self.sender.deliver(&message).await;
            let now = self.clock.now_utc();
            let observed = outcome.clone();
            match (self.config.profile, outcome) {
                (_, Outcome::Delivered) => {
                    self.outbox.delivered(message.id, now)?;
                    retry.reset();
                    self.note(WorkerEvent::Delivered { id: message.id });
                }
                (_, Outcome::Failed(reason)) => {
                    self.outbox.failed(message.id, &reason)?;
                    self.note(WorkerEvent::Failed {
                        id: message.id,
                        reason,
                    });
                }
                (profile, Outcome::Unknown(reason)) if profile.has(Mutation::FailsUnknownSends) => {
                    // Taken for a failure, so sent again: a duplicate whenever the server had it.
                    self.outbox.retry(message.id, now, &reason)?;
                    self.note(WorkerEvent::Deferred {
                        id: message.id,
                        reason,
                    });
                }
                (profile, Outcome::Credential(problem))
                    if profile.has(Mutation::DropsAfterAuthFailure) =>
                {
                    let reason = format!("credential refused: {problem:?}");
                    self.outbox.failed(message.id, &reason)?;
                    self.note(WorkerEvent::Failed {
                        id: message.id,
                        reason,
                    });
                }
                (_, Outcome::Unknown(_)) => {
                    self.outbox
                        .unknown(message.id, "no reply after the message went out")?;
                    self.note(WorkerEvent::Unknown { id: message.id });
                }
                (
                    profile,
                    Outcome::Retry {
                        reason,
                        retry_after,
                    },
                ) if profile.remediated() => {
                    if profile.has(Mutation::DropsAfterAuthFailure)
                        && reason == super::send::TOKEN_REFUSED_TWICE
                    {
                        self.outbox.failed(message.id, &reason)?;
                        self.note(WorkerEvent::Failed {
                            id: message.id,
                            reason,
                        });
                        continue;
                    }
                    let wait = self.wait(&mut retry, retry_after, false);
                    paused_until = now + crate::time::to_chrono(wait);
                    self.outbox.retry(message.id, paused_until, &reason)?;
                    self.note(WorkerEvent::Deferred {
                        id: message.id,
                        reason,
                    });
                }
                (
                    profile,
                    Outcome::TokenUnavailable {
                        reason,
                        retry_after,
                    },
                ) if profile.remediated() => {
                    // A throttled token endpoint throttles the app, not the message: hold every
                    // send and probe once per interval, never sooner than its Retry-After.
                    self.outbox.retry(message.id, now, &reason)?;
                    self.note(WorkerEvent::Deferred {
                        id: message.id,
                        reason,
                    });
                    let (probes, first_probe) = self.open_circuit(now, retry_after);
                    (circuit, probe_at) = (Some(probes), first_probe);
                    last_secret = self.secret.current().ok();
                }
                (profile, Outcome::Credential(problem)) if profile.remediated() => {
                    // Auth failures never fail a message: it waits for the circuit to close.
                    self.outbox.retry(
                        message.id,
                        now,
                        &format!("credential refused: {problem:?}"),
                    )?;
                    self.note(WorkerEvent::Deferred {
                        id: message.id,
                        reason: format!("{problem:?}"),
                    });
                    let (probes, first_probe) = self.open_circuit(now, None);
                    (circuit, probe_at) = (Some(probes), first_probe);
                    last_secret = self.secret.current().ok();
                }
                (_, outcome) => {
                    // 2025: retry every second, give up after five attempts, whatever the cause.
                    let reason = describe(&outcome);
                    if message.attempts >= self.config.naive_attempts {
                        self.outbox.failed(message.id, &reason)?;
                        self.note(WorkerEvent::Failed {
                            id: message.id,
                            reason,
                        });
                    } else {
                        self.note(WorkerEvent::Waited {
                            wait: Duration::from_secs(1),
                            retry_after: None,
                            streak: message.attempts,
                            probe: false,
                        });
                        self.outbox.retry(
                            message.id,
                            now + chrono::TimeDelta::seconds(1),
                            &reason,
                        )?;
                        self.note(WorkerEvent::Deferred {
                            id: message.id,
                            reason,
                        });
                    }
                }
            }
            self.observe(&message, &observed, now);
        }
        Ok(())
    }

    fn observe(&self, message: &super::outbox::Message, outcome: &Outcome, now: DateTime<Utc>) {
        let Some(metrics) = &self.metrics else { return };
        match outcome {
            Outcome::Delivered => {
                let latency = (now - message.enqueued_at).to_std().unwrap_or_default();
                metrics.delivery_latency.observe(latency.as_secs_f64());
            }
            Outcome::Credential(problem) => {
                metrics.token_failure(&super::classify::Failure::Credential(*problem));
            }
            _ => {}
        }
        if let Ok(depth) = self.outbox.depth() {
            metrics
                .outbox_depth
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
        if let Ok(oldest) = self.outbox.oldest_waiting() {
            let age = oldest.map_or(0, |t| (now - t).num_seconds().max(0));
            metrics.oldest_age_seconds.set(age);
        }
    }

    /// Opens the circuit: the probes' backoff and the first probe, never before `retry_after`.
    fn open_circuit(
        &self,
        now: DateTime<Utc>,
        retry_after: Option<Duration>,
    ) -> (Backoff, DateTime<Utc>) {
        let mut config = self.config.backoff;
        if self.config.profile.has(Mutation::TightAuthLoop) {
            config.cap = config.base;
        }
        let mut probes = Backoff::new(config, self.jitter());
        self.note(WorkerEvent::CircuitOpened);
        let first_probe = now + crate::time::to_chrono(self.wait(&mut probes, retry_after, true));
        (probes, first_probe)
    }

    /// A fresh jitter stream: a clone of one stream would repeat the same waits every time.
    fn jitter(&self) -> SeedRng {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).fork()
    }

    /// The next wait of `backoff` after a failure, noted for the run's event stream.
    fn wait(&self, backoff: &mut Backoff, retry_after: Option<Duration>, probe: bool) -> Duration {
        let heard = if self.config.profile.has(Mutation::IgnoresRetryAfter) {
            None
        } else {
            retry_after
        };
        let wait = backoff.next(heard);
        self.note(WorkerEvent::Waited {
            wait,
            retry_after,
            streak: backoff.failures(),
            probe,
        });
        wait
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        let instant = self.clock.instant_at(at);
        self.clock.sleep_until(instant).await;
    }

    /// Sleeps until `at`, or until a message is enqueued.
    async fn idle_until(&self, at: DateTime<Utc>) {
        let instant = self.clock.instant_at(at);
        tokio::select! {
            biased;
            () = self.wake.notified() => {}
            () = self.clock.sleep_until(instant) => {}
        }
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Retry { reason, .. }
        | Outcome::TokenUnavailable { reason, .. }
        | Outcome::Failed(reason)
        | Outcome::Unknown(reason) => reason.clone(),
        Outcome::Credential(problem) => format!("credential refused: {problem:?}"),
        Outcome::Delivered => "delivered".into(),
    }
}
