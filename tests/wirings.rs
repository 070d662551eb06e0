//! Every shipped scenario replayed through both wirings (duplex streams, and loopback TCP with
//! SMTP STARTTLS) gives the same report and the same journal, so the in-memory path the
//! replays use cannot drift from what a client sees on real sockets (CONTRACTS section 1).
//!
//! The journals are compared in [`canonical`] form: requests that arrive at one instant are
//! concurrent, and each wiring may serve them in its own order.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

use std::path::PathBuf;

use maildrill::journal::canonical;
use maildrill::runner::{Wiring, run_wired};

fn report_without_wall_time(report: &maildrill::runner::ScenarioReport) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap();
    value.as_object_mut().unwrap().remove("wall_ms");
    value["events"] = serde_json::to_value(&report.events).unwrap();
    value
}

/// The journal without the tails of shortened bodies. A delta page's links name the listener
/// (`https://127.0.0.1:PORT`) on sockets; the journal shows them as the in-memory wiring names
/// them, but a body shown shortened then ends a few characters apart, and its total size
/// differs by as many. Such lines are compared on their first 1,024 characters.
fn without_sizes(journal: &str) -> String {
    journal
        .lines()
        .map(|line| match line.rfind("...(") {
            Some(cut) if line.ends_with(" bytes)") || line.ends_with(" bytes in all)") => {
                let keep = cut.min(1024);
                let keep = (0..=keep)
                    .rev()
                    .find(|i| line.is_char_boundary(*i))
                    .unwrap_or(0);
                format!("{}...", &line[..keep])
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn both_wirings_give_the_same_report_and_journal_for_every_shipped_scenario() {
    let mut paths: Vec<PathBuf> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
    paths.sort();
    assert!(paths.len() >= 17, "{} scenarios", paths.len());
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mismatches = maildrill::parallel::map_ordered(
        paths.len(),
        threads,
        |i| {
            let path = &paths[i];
            let file = maildrill::scenario::load(path).unwrap();
            let (memory, memory_journal) = run_wired(path, &file, None, Wiring::Memory).unwrap();
            let (sockets, sockets_journal) = run_wired(path, &file, None, Wiring::Sockets).unwrap();
            let mut problems = Vec::new();
            if report_without_wall_time(&memory) != report_without_wall_time(&sockets) {
                problems.push(format!(
                    "{}: reports differ:\nmemory  {:#}\nsockets {:#}",
                    path.display(),
                    report_without_wall_time(&memory),
                    report_without_wall_time(&sockets)
                ));
            }
            let (memory_journal, sockets_journal) = (
                canonical(&without_sizes(&memory_journal)),
                canonical(&without_sizes(&sockets_journal)),
            );
            if memory_journal != sockets_journal {
                let (line, (m, s)) = memory_journal
                    .lines()
                    .zip(sockets_journal.lines())
                    .enumerate()
                    .find(|(_, (m, s))| m != s)
                    .unwrap_or((0, ("(shorter)", "(shorter)")));
                problems.push(format!(
                    "{}: journals differ ({} and {} lines), first at line {}:\nmemory  {m}\nsockets {s}",
                    path.display(),
                    memory_journal.lines().count(),
                    sockets_journal.lines().count(),
                    line + 1
                ));
            }
            assert!(
                !memory_journal.is_empty(),
                "{}: an empty journal proves nothing",
                path.display()
            );
            problems
        },
        |_| false,
    );
    let mismatches: Vec<String> = mismatches.into_iter().flatten().collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}
