//! Exponential backoff with jitter drawn from the harness seed, capped, honouring `Retry-After`.
//!
//! The n-th wait is `base * 2^n`, capped, then jittered into its upper half ("equal jitter":
//! a spread of waits without ever dropping near zero), never below `base`, and never shorter
//! than a server's `Retry-After`. A `Retry-After` longer than the cap is honoured as given: the
//! server's demand outranks the client's preference.

use std::time::Duration;

use crate::seed::SeedRng;

/// How waits are spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// A uniform draw from the upper half of the capped exponential wait.
    #[default]
    Equal,
    /// No spread: every client waits the same, and clients that failed together retry together.
    None,
}

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first wait, and the floor of every wait.
    pub base: Duration,
    /// The longest computed wait (default 5 min).
    pub cap: Duration,
    /// How waits are spread.
    pub jitter: Jitter,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
            jitter: Jitter::Equal,
        }
    }
}

/// The backoff state of one retry loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
    rng: SeedRng,
}

impl Backoff {
    /// A fresh backoff drawing jitter from `rng`.
    pub fn new(config: BackoffConfig, rng: SeedRng) -> Backoff {
        Backoff {
            config,
            failures: 0,
            rng,
        }
    }

    /// The wait after one more failure; `retry_after` is the server's demand, if any.
    pub fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        let config = self.config;
        let base = config.base.max(Duration::from_millis(1));
        let cap = config.cap.max(base);
        let exponent = self.failures.min(32);
        self.failures = self.failures.saturating_add(1);
        let exponential = base.saturating_mul(2u32.saturating_pow(exponent)).min(cap);
        let jittered = match config.jitter {
            Jitter::None => exponential,
            Jitter::Equal => exponential.mul_f64(0.5 + 0.5 * self.rng.unit()),
        };
        jittered
            .clamp(base, cap)
            .max(retry_after.unwrap_or(Duration::ZERO))
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A success: the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::seed::Seed;

    fn backoff(seed: u64, jitter: Jitter) -> Backoff {
        Backoff::new(
            BackoffConfig {
                jitter,
                ..BackoffConfig::default()
            },
            Seed(seed).stream("backoff"),
        )
    }

    #[test]
    fn waits_grow_then_stay_under_the_cap() {
        let mut b = backoff(1, Jitter::None);
        let waits: Vec<u64> = (0..12).map(|_| b.next(None).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        b.reset();
        assert_eq!(b.next(None), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_is_a_floor_even_above_the_cap() {
        let mut b = backoff(1, Jitter::Equal);
        assert_eq!(
            b.next(Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
        assert_eq!(
            b.next(Some(Duration::from_secs(600))),
            Duration::from_secs(600)
        );
        // A Retry-After shorter than the computed wait changes nothing (fractions included).
        let mut twin = b.clone();
        assert_eq!(b.next(Some(Duration::from_millis(249))), twin.next(None));
    }

    proptest! {
        #[test]
        fn waits_respect_floor_cap_and_retry_after_and_follow_the_seed(
            seed in any::<u64>(),
            retry_after in proptest::collection::vec(proptest::option::of(0u64..900_000), 1..40),
        ) {
            let config = BackoffConfig::default();
            let mut a = backoff(seed, Jitter::Equal);
            let mut b = backoff(seed, Jitter::Equal);
            for ra in retry_after {
                let ra = ra.map(Duration::from_millis);
                let wait = a.next(ra);
                prop_assert_eq!(wait, b.next(ra));
                prop_assert!(wait >= config.base);
                prop_assert!(wait >= ra.unwrap_or_default());
                prop_assert!(wait <= config.cap.max(ra.unwrap_or_default()));
            }
        }

        #[test]
        fn jitter_spreads_waits_across_seeds(exponent in 2u32..8) {
            let waits: std::collections::BTreeSet<Duration> = (0..16)
                .map(|seed| {
                    let mut b = backoff(seed, Jitter::Equal);
                    (0..exponent).map(|_| b.next(None)).last().unwrap_or_default()
                })
                .collect();
            prop_assert!(waits.len() > 1, "sixteen clients all waited the same");
        }
    }
}
