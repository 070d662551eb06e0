//! The CI slice of the fuzz run (issue 16): 20,000 inputs per target at a fixed seed, no
//! panics and no malformed answers. `cargo bench --bench fuzz` throws 10^6.

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "the fuzz loop times inputs on the wall clock; a test fails loudly"
)]

#[path = "../benches/fuzz/mod.rs"]
mod fuzz;

use std::time::Duration;

const INPUTS: u64 = 20_000;
const SEED: u64 = 16;

fn slice(target: &str) {
    assert!(fuzz::TARGETS.contains(&target));
    // Debug builds are slower: the hang watchdog allows ten seconds an input here.
    let summary = fuzz::run(target, INPUTS, SEED, Duration::from_secs(10)).unwrap();
    println!("{summary}");
    assert_eq!((summary.panics, summary.malformed), (0, 0), "{summary}");
}

#[test]
fn smtp_sessions() {
    slice("smtp");
}

#[test]
fn token_forms() {
    slice("token");
}

#[test]
fn graph_requests() {
    slice("graph");
}

#[test]
fn scenario_files() {
    slice("scenario");
}
