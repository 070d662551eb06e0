//! Fuzz run (issue 16): 10^6 seeded inputs each at the SMTP session, the token form, Graph's
//! JSON bodies and the scenario loader; prints panics, malformed answers, time and rate.
//!
//!   cargo bench --bench fuzz [-- [TARGET|all] [COUNT] [SEED]]

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "a fuzz run measures wall time and stops on a broken set-up"
)]

#[path = "fuzz/mod.rs"]
mod fuzz;

use std::time::Duration;

fn main() {
    // `cargo bench` passes `--bench`; positional arguments are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let target = args.first().map_or("all", String::as_str);
    let count = args.get(1).map_or(1_000_000, |c| c.parse().unwrap());
    let seed = args.get(2).map_or(16, |s| s.parse().unwrap());
    let targets: Vec<&str> = match target {
        "all" => fuzz::TARGETS.to_vec(),
        one => vec![one],
    };
    let mut clean = true;
    for target in targets {
        let Some(summary) = fuzz::run(target, count, seed, Duration::from_secs(1)) else {
            eprintln!("unknown target {target}; one of {:?} or all", fuzz::TARGETS);
            std::process::exit(2);
        };
        println!("{summary}");
        clean &= summary.panics == 0 && summary.malformed == 0;
    }
    if !clean {
        std::process::exit(1);
    }
}
