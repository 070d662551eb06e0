//! The fuzz targets and their loop, shared by `benches/fuzz.rs` (10^6 inputs each) and
//! `tests/fuzz_slice.rs` (the CI slice).

pub mod graph;
pub mod harness;
pub mod http;
pub mod mutate;
pub mod scenario;
pub mod smtp;
pub mod token;

use std::time::Duration;

use harness::Summary;

/// The targets, in the order a full run takes them.
pub const TARGETS: [&str; 4] = ["smtp", "token", "graph", "scenario"];

/// Throws `count` inputs of `target` (seeded by `seed`); an input over `limit` aborts.
pub fn run(target: &str, count: u64, seed: u64, limit: Duration) -> Option<Summary> {
    let summary = match target {
        "smtp" => harness::run(
            "smtp",
            smtp::SmtpGen,
            &mut smtp::SmtpCheck,
            count,
            seed,
            limit,
        ),
        "token" => {
            let (generator, tenant) = token::setup();
            let mut check = token::TokenCheck(http::Target::new(tenant, 50_000));
            harness::run("token", generator, &mut check, count, seed, limit)
        }
        "graph" => {
            let mut check = graph::GraphCheck(http::Target::new(http::tenant(), 5_000));
            harness::run("graph", graph::GraphGen, &mut check, count, seed, limit)
        }
        "scenario" => {
            let generator = scenario::ScenarioGen::new();
            assert!(generator.seed_count() > 0, "no scenario files found");
            harness::run(
                "scenario",
                generator,
                &mut scenario::ScenarioCheck,
                count,
                seed,
                limit,
            )
        }
        _ => return None,
    };
    Some(summary)
}
