//! The sending worker: takes due messages from the outbox and delivers them, backing off on
//! failure and opening a circuit when the credentials are refused.
//!
//! While the circuit is open nothing is sent and the queue is kept; one token probe goes out
//! per backoff interval (no tight loop against Entra), and a new secret value is probed at
//! once. [`Retries::Fixed`] keeps the behaviour of the incident: a fixed retry, no circuit, and
//! a message failed after a few attempts whatever the reason.

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

/// How a message that failed to go out is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    /// What the post-mortem asked for: a jittered exponential backoff between attempts, no
    /// message sent while the last failure's wait runs, and a circuit (one token probe per
    /// interval) while the credentials are refused or the token endpoint throttles.
    Backoff,
    /// A fixed wait and a fixed number of attempts, whatever went wrong (the 2025 client).
    Fixed {
        /// The wait between attempts.
        every: Duration,
        /// Attempts before the message is failed.
        attempts: u32,
    },
}

/// What the worker does with a send that got no reply after the whole message went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnknown {
    /// Keep it aside, unsent again: the server may have it, and a resend would be a duplicate.
    Hold,
    /// Send it again (at-least-once delivery: a duplicate whenever the server had it).
    Resend,
}

/// What a refused credential does to the message that met it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRefused {
    /// The message waits, with every other, until a credential works again.
    Keep,
    /// The message is failed (the mail is lost unless someone resends it).
    Fail,
}

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How failed sends are tried again.
    pub retries: Retries,
    /// Backoff of retries (with [`Retries::Backoff`]).
    pub backoff: BackoffConfig,
    /// Backoff of the circuit's token probes while credentials are refused.
    pub probe_backoff: BackoffConfig,
    /// Whether a server's `Retry-After` sets the least wait.
    pub honour_retry_after: bool,
    /// Sends with no reply after the whole message.
    pub on_unknown: OnUnknown,
    /// Messages that met a refused credential.
    pub on_refused: OnRefused,
    /// How often to look for a changed secret while the circuit is open.
    pub secret_poll: Duration,
    /// Return once nothing is queued (a drain), instead of waiting for more mail.
    pub stop_when_empty: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            retries: Retries::Backoff,
            backoff: BackoffConfig::default(),
            probe_backoff: BackoffConfig::default(),
            honour_retry_after: true,
            on_unknown: OnUnknown::Hold,
            on_refused: OnRefused::Keep,
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

/// The run loop's state between two attempts.
struct LoopState {
    /// The backoff of failed sends.
    retry: Backoff,
    /// The probes' backoff while the circuit is open.
    circuit: Option<Backoff>,
    probe_at: DateTime<Utc>,
    /// The secret value the circuit was opened with (a new one is probed at once).
    last_secret: Option<super::secret::Secret>,
    /// No send before this instant: the last one failed.
    paused_until: DateTime<Utc>,
}

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
        let mut state = LoopState {
            retry: Backoff::new(self.config.backoff, self.jitter()),
            circuit: None,
            probe_at: self.clock.now_utc(),
            last_secret: self.secret.current().ok(),
            paused_until: self.clock.now_utc(),
        };
        while self.clock.now_utc() < until {
            let now = self.clock.now_utc();
            if state.circuit.is_some() {
                self.probe(&mut state, until).await;
                continue;
            }
            if now < state.paused_until {
                // The last send failed: the server is unwell, not the message, so no message
                // goes before the backoff (or the server's Retry-After) has passed.
                self.sleep_until(state.paused_until.min(until)).await;
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
            self.settle(&message, outcome.clone(), now, &mut state)?;
            self.observe(&message, &outcome, now);
        }
        Ok(())
    }

    /// While the circuit is open: one token probe when it is due (at once for a new secret
    /// value), then a sleep until the next probe or the next look at the secret.
    async fn probe(&self, state: &mut LoopState, until: DateTime<Utc>) {
        let now = self.clock.now_utc();
        let Some(probes) = state.circuit.as_mut() else {
            return;
        };
        let secret = self.secret.current().ok();
        if secret != state.last_secret {
            // A new value: probe at once, and start the backoff afresh for it.
            state.last_secret = secret;
            probes.reset();
            state.probe_at = now;
        }
        if now >= state.probe_at {
            let retry_after = match self.sender.tokens.token(self.sender.scope()).await {
                Ok(_) => {
                    state.circuit = None;
                    state.retry.reset();
                    self.note(WorkerEvent::CircuitClosed);
                    return;
                }
                Err(Failure::Transient { retry_after, .. }) => retry_after,
                Err(_) => None,
            };
            let wait = self.wait(probes, retry_after, true);
            state.probe_at = self.clock.now_utc() + crate::time::to_chrono(wait);
        }
        let next = state
            .probe_at
            .min(self.clock.now_utc() + crate::time::to_chrono(self.config.secret_poll))
            .min(until);
        self.sleep_until(next).await;
    }

    /// Records what one delivery attempt came to, as the configuration says.
    fn settle(
        &self,
        message: &super::outbox::Message,
        outcome: Outcome,
        now: DateTime<Utc>,
        state: &mut LoopState,
    ) -> Result<(), OutboxError> {
        let id = message.id;
        let refused_fails = self.config.on_refused == OnRefused::Fail;
        match outcome {
            Outcome::Delivered => {
                self.outbox.delivered(id, now)?;
                state.retry.reset();
                self.note(WorkerEvent::Delivered { id });
            }
            Outcome::Failed(reason) => self.fail(id, reason)?,
            Outcome::Unknown(reason) if self.config.on_unknown == OnUnknown::Resend => {
                self.defer(id, now, reason)?;
            }
            Outcome::Unknown(_) => {
                self.outbox
                    .unknown(id, "no reply after the message went out")?;
                self.note(WorkerEvent::Unknown { id });
            }
            Outcome::Credential(problem) if refused_fails => {
                self.fail(id, format!("credential refused: {problem:?}"))?;
            }
            Outcome::Retry { reason, .. }
                if refused_fails && reason == super::send::TOKEN_REFUSED_TWICE =>
            {
                self.fail(id, reason)?;
            }
            outcome => {
                if let Retries::Fixed { every, attempts } = self.config.retries {
                    return self.retry_fixed(message, &outcome, now, every, attempts);
                }
                self.retry_backoff(id, outcome, now, state)?;
            }
        }
        Ok(())
    }

    /// [`Retries::Backoff`]: a failed send pauses every send; a throttled token endpoint or a
    /// refused credential opens the circuit, and the message waits for it to close.
    fn retry_backoff(
        &self,
        id: i64,
        outcome: Outcome,
        now: DateTime<Utc>,
        state: &mut LoopState,
    ) -> Result<(), OutboxError> {
        let (reason, retry_after) = match outcome {
            Outcome::Retry {
                reason,
                retry_after,
            } => {
                let wait = self.wait(&mut state.retry, retry_after, false);
                state.paused_until = now + crate::time::to_chrono(wait);
                return self.defer(id, state.paused_until, reason);
            }
            // A throttled token endpoint throttles the app, not the message: hold every send
            // and probe once per interval, never sooner than its Retry-After.
            Outcome::TokenUnavailable {
                reason,
                retry_after,
            } => (reason, retry_after),
            // Auth failures never fail a message: it waits for the circuit to close.
            Outcome::Credential(problem) => (format!("credential refused: {problem:?}"), None),
            other => return self.defer(id, now, describe(&other)),
        };
        self.defer(id, now, reason)?;
        let (probes, first_probe) = self.open_circuit(now, retry_after);
        (state.circuit, state.probe_at) = (Some(probes), first_probe);
        state.last_secret = self.secret.current().ok();
        Ok(())
    }

    /// [`Retries::Fixed`]: the same wait whatever the cause, and the message failed after
    /// `attempts`.
    fn retry_fixed(
        &self,
        message: &super::outbox::Message,
        outcome: &Outcome,
        now: DateTime<Utc>,
        every: Duration,
        attempts: u32,
    ) -> Result<(), OutboxError> {
        let reason = describe(outcome);
        if message.attempts >= attempts {
            return self.fail(message.id, reason);
        }
        self.note(WorkerEvent::Waited {
            wait: every,
            retry_after: None,
            streak: message.attempts,
            probe: false,
        });
        self.defer(message.id, now + crate::time::to_chrono(every), reason)
    }

    fn fail(&self, id: i64, reason: String) -> Result<(), OutboxError> {
        self.outbox.failed(id, &reason)?;
        self.note(WorkerEvent::Failed { id, reason });
        Ok(())
    }

    fn defer(&self, id: i64, due: DateTime<Utc>, reason: String) -> Result<(), OutboxError> {
        self.outbox.retry(id, due, &reason)?;
        self.note(WorkerEvent::Deferred { id, reason });
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
        let mut probes = Backoff::new(self.config.probe_backoff, self.jitter());
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
        let heard = retry_after.filter(|_| self.config.honour_retry_after);
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
