//! [`CalendarClock`]: real time whose calendar a test can move forward, the clock of
//! `maildrill serve` that its control API moves.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::time::Instant;

use super::{Clock, SharedClock, Sleep, to_chrono};

/// Real time from an anchor, plus a shift the control API adds to (jump to five minutes
/// before a secret's end without waiting) or takes back to the start (a reset).
///
/// Only the calendar jumps: the monotonic clock, and with it every delay a mock is waiting
/// out, keeps running in real time. So `now_utc` moves by more than `now` across a jump,
/// which is what a jump means to a client (its token's `exp` and its secret's end arrive
/// sooner), and no timer fires early.
#[derive(Debug, Clone)]
pub struct CalendarClock {
    anchor: Instant,
    start: DateTime<Utc>,
    /// Microseconds added to the calendar.
    shift: Arc<AtomicI64>,
}

impl CalendarClock {
    /// Anchors the calendar at `start`, now. Must be called inside a tokio runtime.
    #[expect(
        clippy::disallowed_methods,
        reason = "the clock module is where tokio's clock is read"
    )]
    pub fn starting_at(start: DateTime<Utc>) -> CalendarClock {
        CalendarClock {
            anchor: Instant::now(),
            start,
            shift: Arc::new(AtomicI64::new(0)),
        }
    }

    /// The instant the calendar started at.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// Moves the calendar forward by `by`.
    pub fn advance(&self, by: Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.shift.fetch_add(micros, Ordering::SeqCst);
    }

    /// Puts the calendar back at its start instant, from which it runs on in real time.
    pub fn reset(&self) {
        let elapsed = i64::try_from((self.now() - self.anchor).as_micros()).unwrap_or(i64::MAX);
        self.shift.store(-elapsed, Ordering::SeqCst);
    }

    /// Wraps the clock for sharing; the handle and the wrapped clock move together.
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Clock for CalendarClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "the clock module is where tokio's clock is read"
    )]
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn now_utc(&self) -> DateTime<Utc> {
        let shift = TimeDelta::microseconds(self.shift.load(Ordering::SeqCst));
        self.start + to_chrono(self.now() - self.anchor) + shift
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "the clock module is where tokio's timers are armed"
    )]
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(tokio::time::sleep_until(deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{ClockExt as _, replay_runtime, rfc3339};

    #[test]
    fn the_calendar_jumps_forward_and_resets_to_its_start() {
        replay_runtime().unwrap().block_on(async {
            let clock = CalendarClock::starting_at("2025-02-14T11:00:00Z".parse().unwrap());
            let shared = clock.shared();
            clock.sleep(Duration::from_secs(60)).await;
            clock.advance(Duration::from_secs(3600));
            assert_eq!(rfc3339(shared.now_utc()), "2025-02-14T12:01:00Z");
            clock.reset();
            assert_eq!(rfc3339(shared.now_utc()), "2025-02-14T11:00:00Z");
            clock.sleep(Duration::from_secs(5)).await;
            assert_eq!(rfc3339(clock.now_utc()), "2025-02-14T11:00:05Z");
        });
    }
}
