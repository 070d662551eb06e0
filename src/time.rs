//! The clock: the only module that reads or waits on time.
//!
//! Every other module (mocks, tenant, client, runner) asks a [`Clock`] for the monotonic
//! instant, the calendar instant, or a future that completes at a deadline. Four clocks
//! implement it:
//!
//! - [`VirtualClock`]: calendar time anchored at a chosen instant and advanced by tokio's
//!   clock. On the replay runtime (paused, current-thread, no I/O driver, see
//!   [`replay_runtime`]) tokio jumps to the next timer whenever every task waits on one, so an
//!   18-hour outage replays in about a millisecond. On a normal runtime the same clock runs in
//!   real time from its anchor, which is what `maildrill serve --at` needs.
//! - [`HarnessClock`]: virtual time over real sockets for the socket wiring's replays,
//!   advanced only when every registered actor waits on it.
//! - [`CalendarClock`]: real time whose calendar `maildrill serve`'s control API moves forward.
//! - [`SystemClock`]: production time for the mail client outside the harness.
//!
//! The replay clocks deliberately offer no way to move time forward by hand: time advances
//! only when every task waits, so no test can race a timer against I/O (tokio issues 4522,
//! 7841, 2647). Only `serve`'s real-time [`CalendarClock`] jumps, and only its calendar.

mod calendar;
mod harness;

pub use calendar::CalendarClock;
pub use harness::{ActorGuard, HarnessClock};

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// A boxed future returned by [`Clock::sleep_until`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Monotonic and calendar time, and waiting on them.
///
/// Implementations must keep the two views consistent: moving the monotonic clock by `d` moves
/// the calendar clock by `d`.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The monotonic instant, for timers, timeouts and backoff.
    fn now(&self) -> Instant;

    /// The calendar instant in UTC, for secret end dates, token `exp` and expiry alerts.
    fn now_utc(&self) -> DateTime<Utc>;

    /// A future that completes once [`Clock::now`] has reached `deadline`. The caller waits on
    /// nothing else meanwhile: it is idle.
    fn sleep_until(&self, deadline: Instant) -> Sleep;

    /// A deadline for work that is still in progress (a request timeout): the caller is busy
    /// until the work or the deadline completes. Only the harness clock tells the difference.
    fn deadline_at(&self, deadline: Instant) -> Sleep {
        self.sleep_until(deadline)
    }

    /// A mock withholding its reply until `deadline` on behalf of the waiting client.
    fn park_until(&self, deadline: Instant) -> Sleep {
        self.sleep_until(deadline)
    }

    /// A mock withholding its reply for good (a `timeout` fault); the client gives up on its
    /// own deadline.
    fn park_forever(&self) -> Sleep {
        Box::pin(std::future::pending())
    }
}

/// A shared clock handle, as the mocks, tenant and client hold it.
pub type SharedClock = Arc<dyn Clock>;

/// Conveniences over any [`Clock`].
pub trait ClockExt: Clock {
    /// Waits for `duration` on this clock.
    fn sleep(&self, duration: Duration) -> Sleep {
        self.sleep_until(self.now() + duration)
    }

    /// Runs `future` and gives up after `duration` on this clock.
    ///
    /// The future is polled first, so a future that is already complete wins a tie with the
    /// deadline; this keeps replay outcomes independent of timer resolution.
    fn timeout<F: Future>(
        &self,
        duration: Duration,
        future: F,
    ) -> impl Future<Output = Result<F::Output, Elapsed>> {
        let sleep = self.deadline_at(self.now() + duration);
        async move {
            tokio::select! {
                biased;
                output = future => Ok(output),
                () = sleep => Err(Elapsed(duration)),
            }
        }
    }

    /// Withholds a mock's reply for `duration` (see [`Clock::park_until`]).
    fn park(&self, duration: Duration) -> Sleep {
        self.park_until(self.now() + duration)
    }

    /// Calendar time of a future monotonic instant on this clock.
    fn utc_at(&self, instant: Instant) -> DateTime<Utc> {
        let now = self.now();
        let now_utc = self.now_utc();
        if instant >= now {
            now_utc + to_chrono(instant - now)
        } else {
            now_utc - to_chrono(now - instant)
        }
    }

    /// The monotonic instant at which the calendar reaches `at` (now, if `at` has passed).
    fn instant_at(&self, at: DateTime<Utc>) -> Instant {
        let ahead = (at - self.now_utc()).to_std().unwrap_or(Duration::ZERO);
        self.now() + ahead
    }
}

impl<C: Clock + ?Sized> ClockExt for C {}

/// The error of [`ClockExt::timeout`]: the deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {}", humantime::format_duration(*.0))]
pub struct Elapsed(pub Duration);

/// Calendar time anchored at a chosen instant and advanced by tokio's clock.
///
/// On a paused runtime this is virtual time; on a normal runtime it is real time that started
/// at the anchor.
#[derive(Debug, Clone)]
pub struct VirtualClock {
    anchor: Instant,
    anchor_utc: DateTime<Utc>,
}

impl VirtualClock {
    /// Anchors the calendar at `start`, now. Must be called inside a tokio runtime.
    #[expect(
        clippy::disallowed_methods,
        reason = "the clock module is where tokio's clock is read"
    )]
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Self {
            anchor: Instant::now(),
            anchor_utc: start,
        }
    }

    /// The calendar instant the clock was anchored at.
    pub fn start(&self) -> DateTime<Utc> {
        self.anchor_utc
    }

    /// Wraps the clock for sharing.
    pub fn shared(self) -> SharedClock {
        Arc::new(self)
    }
}

impl Clock for VirtualClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "the clock module is where tokio's clock is read"
    )]
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn now_utc(&self) -> DateTime<Utc> {
        self.anchor_utc + to_chrono(self.now() - self.anchor)
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "the clock module is where tokio's timers are armed"
    )]
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(tokio::time::sleep_until(deadline))
    }
}

/// Real time, for the mail client in production.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "the clock module is where tokio's clock is read"
    )]
    fn now(&self) -> Instant {
        Instant::now()
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "the production clock reads the system calendar"
    )]
    fn now_utc(&self) -> DateTime<Utc> {
        DateTime::<Utc>::from(std::time::SystemTime::now())
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "the clock module is where tokio's timers are armed"
    )]
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(tokio::time::sleep_until(deadline))
    }
}

/// Wall-clock milliseconds spent running `f`, for reports' `wall_ms` and benchmarks only.
#[expect(
    clippy::disallowed_methods,
    reason = "wall time is measured here and only reported, never acted on"
)]
pub fn wall_ms<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let started = std::time::Instant::now();
    let output = f();
    let elapsed = started.elapsed().as_millis();
    (output, u64::try_from(elapsed).unwrap_or(u64::MAX))
}

/// A seed from the wall clock, for a run whose user gave none (it is printed, so the run can
/// be repeated with `--seed`).
#[expect(
    clippy::disallowed_methods,
    reason = "only picks a default seed, which is then printed"
)]
pub fn wall_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The runtime replays run on: current-thread, time paused, and no I/O driver.
///
/// Without an I/O driver any accidental kernel socket fails at once instead of letting the
/// paused clock jump while bytes are in flight on another thread. Build one per replay.
pub fn replay_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
}

/// The runtime of a replay through the socket wiring: [`replay_runtime`] plus the I/O driver,
/// for mocks and client on loopback TCP. Still deterministic because everything runs on this
/// one thread: a loopback write is readable by the time the runtime polls for I/O, and since
/// tokio 1.54 (#8595) a task woken by I/O keeps the paused clock from jumping. Measured in
/// `reference/virtual-time.md` (variant A5: 1000 of 1000 runs identical). Listeners and
/// clients must use IP literals: resolving a name runs on a blocking thread.
pub fn socket_replay_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .start_paused(true)
        .build()
}

/// Converts a std duration to chrono's, saturating at chrono's range.
pub fn to_chrono(duration: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(duration).unwrap_or(chrono::TimeDelta::MAX)
}

/// A strftime pattern parsed once: parsing the pattern is most of the cost of formatting a
/// date, and the mocks format several per reply.
#[derive(Debug)]
pub struct Pattern {
    text: &'static str,
    items: std::sync::OnceLock<Vec<chrono::format::Item<'static>>>,
}

impl Pattern {
    /// A pattern in chrono's strftime syntax.
    pub const fn new(text: &'static str) -> Pattern {
        Pattern {
            text,
            items: std::sync::OnceLock::new(),
        }
    }

    /// `at` formatted with this pattern.
    pub fn format(&self, at: DateTime<Utc>) -> String {
        let items = self.items.get_or_init(|| {
            chrono::format::StrftimeItems::new(self.text)
                .parse_to_owned()
                .expect("patterns are literals in this crate, checked by their tests")
        });
        at.format_with_items(items.iter()).to_string()
    }
}

/// Formats an instant as RFC 3339 UTC with a `Z` suffix and whole seconds unless a fraction
/// is present, the form every report and journal uses.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn virtual_clock_moves_calendar_with_paused_time() {
        let rt = replay_runtime().unwrap();
        rt.block_on(async {
            let clock = VirtualClock::starting_at(at("2025-02-14T11:00:00Z"));
            clock.sleep(Duration::from_secs(18 * 3600)).await;
            assert_eq!(rfc3339(clock.now_utc()), "2025-02-15T05:00:00Z");
        });
    }

    #[test]
    fn timeout_prefers_a_ready_future_over_an_equal_deadline() {
        let rt = replay_runtime().unwrap();
        rt.block_on(async {
            let clock = VirtualClock::starting_at(at("2025-01-01T00:00:00Z"));
            let ready = clock.timeout(Duration::ZERO, async { 7 }).await;
            assert_eq!(ready, Ok(7));
            let slow = clock.timeout(
                Duration::from_secs(30),
                clock.sleep(Duration::from_secs(31)),
            );
            assert_eq!(slow.await, Err(Elapsed(Duration::from_secs(30))));
            assert_eq!(rfc3339(clock.now_utc()), "2025-01-01T00:00:30Z");
        });
    }

    #[test]
    fn instant_at_and_utc_at_round_trip() {
        let rt = replay_runtime().unwrap();
        rt.block_on(async {
            let clock = VirtualClock::starting_at(at("2025-01-01T00:00:00Z"));
            let expiry = at("2025-02-14T11:30:00Z");
            let instant = clock.instant_at(expiry);
            assert_eq!(clock.utc_at(instant), expiry);
            clock.sleep_until(instant).await;
            assert_eq!(clock.now_utc(), expiry);
            assert_eq!(clock.instant_at(at("2024-01-01T00:00:00Z")), clock.now());
        });
    }
}
