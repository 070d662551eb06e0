//! Wall time of the 45-day incident replayed against Mailman over loopback sockets, in a
//! release build: `cargo bench -p mailman --bench incident [RUNS]` (default 3; prints each run
//! and the best, and checks the journals of every run are identical).
#![allow(
    clippy::unwrap_used,
    reason = "a benchmark stops on the first broken run"
)]

// The allocator `maildrill`'s own binary runs with, so the figure compares with its replays.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scenarios/sell-2025-02-14.toml"
    ));
    let file = maildrill::scenario::load(path).unwrap();
    let mut journals = Vec::new();
    let mut best = u64::MAX;
    for run in 1..=runs {
        let (report, journal) = maildrill::runner::run_subject(
            path,
            &file,
            None,
            &support::MailmanSubject,
            maildrill::runner::Wiring::Sockets,
        )
        .unwrap();
        println!(
            "run {run}: {} ms wall, {} journal lines",
            report.wall_ms,
            journal.lines().count()
        );
        best = best.min(report.wall_ms);
        journals.push(journal);
    }
    let identical = journals.windows(2).all(|w| w[0] == w[1]);
    println!(
        "mailman, incident over sockets: best {best} ms of {runs}; journals identical: {identical}"
    );
    assert!(identical, "the socket replays gave different journals");
}
