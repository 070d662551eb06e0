//! The harness clock: virtual time over real sockets, for the socket wiring's replays.
//!
//! tokio's paused clock cannot be trusted while bytes travel through the kernel (it jumps to
//! the next timer whenever no task is ready, even with a reply in flight), so this clock
//! advances only when every registered actor is provably waiting on it:
//!
//! 1. Each actor (a client task) registers and counts as busy.
//! 2. [`Clock::sleep_until`] makes its caller idle until the deadline fires.
//! 3. [`Clock::deadline_at`] (request timeouts) leaves its caller busy: its I/O is in flight.
//!    Such a deadline can only fire once a mock parked on the caller's behalf (step 4).
//! 4. A mock withholding a reply parks on behalf of the waiting client
//!    ([`Clock::park_until`], [`Clock::park_forever`]): the client counts as idle.
//! 5. The driver waits for zero busy actors, then fires the earliest timer (ties by
//!    registration order), moves `now` to its deadline and counts one actor busy again: the
//!    one it woke. Actors therefore run one at a time, in a deterministic order.
//!
//! Known limit: a mock delay longer than the client's own timeout leaves a parked timer behind
//! when the client gives up; if it is still registered when the driver next looks, the busy
//! count is off by one. Keep socket-wiring delays shorter than client timeouts (hangs are fine).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Clock, Sleep, to_chrono};

/// Virtual time advanced only when every actor waits on it (see the module docs).
#[derive(Debug, Clone)]
pub struct HarnessClock {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Notify,
    base: Instant,
    anchor_utc: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct State {
    now: Duration,
    busy: usize,
    seq: u64,
    timers: BTreeMap<(Duration, u64), Arc<Mutex<Entry>>>,
}

#[derive(Debug, Default)]
struct Entry {
    fired: bool,
    waker: Option<Waker>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The caller is idle until it fires; dropping it unfired means the caller runs again.
    Sleep,
    /// The caller stays busy.
    Deadline,
    /// A mock waits on behalf of its peer; dropping it unfired changes nothing, because the
    /// peer was woken by its own deadline.
    Park,
}

impl HarnessClock {
    /// A clock at calendar instant `start`, with no actors yet.
    #[expect(
        clippy::disallowed_methods,
        reason = "the base instant only anchors virtual offsets; it is never compared with real time"
    )]
    pub fn starting_at(start: DateTime<Utc>) -> HarnessClock {
        HarnessClock {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                changed: Notify::new(),
                base: Instant::now(),
                anchor_utc: start,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an actor, busy from now until the guard drops.
    pub fn actor(&self) -> ActorGuard {
        self.state().busy += 1;
        ActorGuard {
            clock: self.clone(),
        }
    }

    /// Fires timers whenever every actor waits, until no actor is left. Run it beside the
    /// actors (e.g. `tokio::join!`).
    pub async fn drive(&self) {
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.state();
                if state.busy == 0 {
                    match state.timers.pop_first() {
                        Some(((deadline, _), entry)) => {
                            state.now = state.now.max(deadline);
                            state.busy += 1;
                            let mut entry = entry.lock().unwrap_or_else(|p| p.into_inner());
                            entry.fired = true;
                            if let Some(waker) = entry.waker.take() {
                                waker.wake();
                            }
                            continue;
                        }
                        None if self.actors_done(&state) => return,
                        None => {}
                    }
                }
            }
            notified.await;
        }
    }

    fn actors_done(&self, state: &State) -> bool {
        // With no busy actor and no timer nothing can ever run again.
        state.busy == 0 && state.timers.is_empty()
    }

    fn timer(&self, deadline: Instant, kind: Kind) -> Sleep {
        let offset = deadline.saturating_duration_since(self.shared.base);
        Box::pin(HarnessSleep {
            clock: self.clone(),
            offset: Some(offset),
            kind,
            key: None,
            entry: None,
        })
    }
}

/// Keeps an actor registered; dropping it means the actor finished.
#[derive(Debug)]
pub struct ActorGuard {
    clock: HarnessClock,
}

impl Drop for ActorGuard {
    fn drop(&mut self) {
        let mut state = self.clock.state();
        state.busy = state.busy.saturating_sub(1);
        drop(state);
        self.clock.shared.changed.notify_one();
    }
}

struct HarnessSleep {
    clock: HarnessClock,
    /// `None` waits forever.
    offset: Option<Duration>,
    kind: Kind,
    key: Option<(Duration, u64)>,
    entry: Option<Arc<Mutex<Entry>>>,
}

impl Future for HarnessSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(entry) = &self.entry {
            let mut entry = entry.lock().unwrap_or_else(|p| p.into_inner());
            if entry.fired {
                drop(entry);
                self.key = None;
                return Poll::Ready(());
            }
            entry.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        if self.key.is_some() {
            // Parked forever: registered, no timer.
            return Poll::Pending;
        }
        let clock = self.clock.clone();
        let mut state = clock.state();
        if let Some(offset) = self.offset
            && offset <= state.now
        {
            return Poll::Ready(());
        }
        if self.kind != Kind::Deadline {
            state.busy = state.busy.saturating_sub(1);
        }
        state.seq += 1;
        let seq = state.seq;
        match self.offset {
            Some(offset) => {
                let entry = Arc::new(Mutex::new(Entry {
                    fired: false,
                    waker: Some(cx.waker().clone()),
                }));
                state.timers.insert((offset, seq), entry.clone());
                self.key = Some((offset, seq));
                self.entry = Some(entry);
            }
            None => self.key = Some((Duration::MAX, seq)),
        }
        drop(state);
        clock.shared.changed.notify_one();
        Poll::Pending
    }
}

impl Drop for HarnessSleep {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut state = self.clock.state();
        let fired = self
            .entry
            .as_ref()
            .is_some_and(|e| e.lock().unwrap_or_else(|p| p.into_inner()).fired);
        if fired {
            // Fired but never polled to completion: the driver already counted the waiter busy.
            return;
        }
        state.timers.remove(&key);
        if self.kind == Kind::Sleep {
            state.busy += 1;
        }
        drop(state);
        self.clock.shared.changed.notify_one();
    }
}

impl Clock for HarnessClock {
    fn now(&self) -> Instant {
        self.shared.base + self.state().now
    }

    fn now_utc(&self) -> DateTime<Utc> {
        self.shared.anchor_utc + to_chrono(self.state().now)
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        self.timer(deadline, Kind::Sleep)
    }

    fn deadline_at(&self, deadline: Instant) -> Sleep {
        self.timer(deadline, Kind::Deadline)
    }

    fn park_until(&self, deadline: Instant) -> Sleep {
        self.timer(deadline, Kind::Park)
    }

    fn park_forever(&self) -> Sleep {
        Box::pin(HarnessSleep {
            clock: self.clone(),
            offset: None,
            kind: Kind::Park,
            key: None,
            entry: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::ClockExt as _;

    #[test]
    fn actors_advance_time_only_when_all_wait() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let clock = HarnessClock::starting_at("2025-02-14T00:00:00Z".parse().unwrap());
            let log = Arc::new(Mutex::new(Vec::new()));
            let actor = |name: &'static str, step: u64| {
                let clock = clock.clone();
                let log = log.clone();
                let guard = clock.actor();
                tokio::spawn(async move {
                    let _guard = guard;
                    for _ in 0..3 {
                        clock.sleep(Duration::from_secs(step)).await;
                        log.lock()
                            .unwrap()
                            .push(format!("{name}@{}", crate::time::rfc3339(clock.now_utc())));
                    }
                })
            };
            let a = actor("a", 2);
            let b = actor("b", 3);
            clock.drive().await;
            a.await.unwrap();
            b.await.unwrap();
            assert_eq!(
                log.lock().unwrap().join(" "),
                concat!(
                    "a@2025-02-14T00:00:02Z b@2025-02-14T00:00:03Z a@2025-02-14T00:00:04Z ",
                    // Ties go to the timer registered first: b armed its 6 s timer at 3 s.
                    "b@2025-02-14T00:00:06Z a@2025-02-14T00:00:06Z b@2025-02-14T00:00:09Z"
                )
            );
        });
    }

    #[test]
    fn a_parked_reply_lets_the_client_deadline_fire() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let clock = HarnessClock::starting_at("2025-02-14T00:00:00Z".parse().unwrap());
            let guard = clock.actor();
            let server_clock = clock.clone();
            let client_clock = clock.clone();
            let client = tokio::spawn(async move {
                let _guard = guard;
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                // The "server" hangs on behalf of the client, on another task.
                let server = tokio::spawn(async move {
                    server_clock.park_forever().await;
                    let _ = tx.send(());
                });
                let outcome = client_clock.timeout(Duration::from_secs(30), rx).await;
                server.abort();
                assert!(outcome.is_err());
                client_clock.sleep(Duration::from_secs(5)).await;
                crate::time::rfc3339(client_clock.now_utc())
            });
            clock.drive().await;
            assert_eq!(client.await.unwrap(), "2025-02-14T00:00:35Z");
        });
    }
}
