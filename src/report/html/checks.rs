//! A scenario page's facts and verdicts: the run's identity (seed, file, subject, the command
//! that reproduces it), the check table with links to the timeline, and the events as a table
//! for readers who cannot see the SVG.

use maud::{Markup, html};

use crate::check::{Grade, Verdict};
use crate::runner::ScenarioReport;
use crate::time::rfc3339;
use crate::trace::{Lane, Trace};

/// Seed, file, subject and the command that reproduces the run.
pub fn facts(report: &ScenarioReport, command: &str) -> Markup {
    html! {
        dl class="facts" {
            dt { "scenario file" } dd { code { (report.file) } }
            dt { "seed" } dd { code { (report.seed) } }
            dt { "subject" } dd { (report.subject) }
            dt { "virtual time" } dd { (rfc3339(report.trace.start)) " to " (rfc3339(report.trace.end)) }
            dt { "reproduce" } dd { code class="command" { (command) } }
        }
    }
}

/// The check table: required, observed, verdict, expected; a failing check links to its
/// instant on the timeline.
pub fn table(checks: &[Verdict]) -> Markup {
    html! {
        table class="checks" {
            caption { "Checks (a row differs from its expectation when marked ✗)" }
            thead { tr { th scope="col" { "check" } th scope="col" { "required" } th scope="col" { "observed" }
                th scope="col" { "verdict" } th scope="col" { "expected" } th scope="col" { "where" } } }
            tbody {
                @for check in checks {
                    @let differs = check.verdict != check.expected;
                    tr class=(if differs { "differs" } else { "as-expected" }) {
                        th scope="row" { (if differs { "✗ " } else { "✓ " }) (check.id.name()) }
                        td { (check.detail) }
                        td { (check.observed) }
                        td class={ "grade " (check.verdict.to_string()) } { (check.verdict.to_string()) }
                        td { (check.expected.to_string()) }
                        td { (instant(check)) }
                    }
                }
            }
        }
    }
}

fn instant(check: &Verdict) -> Markup {
    html! {
        @match check.at {
            Some(at) if check.verdict == Grade::Fail => a class="went-wrong" href={ "#t-" (check.id.name()) } data-at=(rfc3339(at)) {
                "went wrong at " (rfc3339(at))
            },
            Some(at) => a href={ "#t-" (check.id.name()) } { (rfc3339(at)) },
            None => "—",
        }
    }
}

/// The timeline as a table: windows, then marks with runs of the same lane and kind folded
/// into one row (first, last, how many).
pub fn events(trace: &Trace) -> Markup {
    let rows = folded(trace);
    html! {
        details class="events" {
            summary { "Events as a table (" (rows.len()) " rows, " (trace.marks.len()) " events, " (trace.windows.len()) " windows)" }
            table {
                thead { tr { th scope="col" { "from" } th scope="col" { "until" } th scope="col" { "lane" }
                    th scope="col" { "what" } th scope="col" { "count" } } }
                tbody {
                    @for w in &trace.windows {
                        tr { td { (rfc3339(w.from)) } td { (rfc3339(w.until)) } td { (w.lane.label()) } td { (w.label) } td { "window" } }
                    }
                    @for row in &rows {
                        tr { td { (rfc3339(row.from)) } td { (rfc3339(row.until)) } td { (row.lane.label()) } td { (row.what) } td { (row.count) } }
                    }
                }
            }
        }
    }
}

/// Marks of one lane and kind in a row, folded.
struct Row {
    from: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
    lane: Lane,
    what: String,
    count: usize,
}

fn folded(trace: &Trace) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut open: std::collections::BTreeMap<Lane, usize> = std::collections::BTreeMap::new();
    for mark in &trace.marks {
        let what = if mark.note.is_empty() || matches!(mark.lane, Lane::Token) {
            mark.kind.label().to_string()
        } else {
            format!("{} ({})", mark.kind.label(), mark.note)
        };
        match open.get(&mark.lane).and_then(|i| rows.get_mut(*i)) {
            Some(row) if row.what == what => {
                row.until = mark.at;
                row.count += 1;
            }
            _ => {
                open.insert(mark.lane, rows.len());
                rows.push(Row {
                    from: mark.at,
                    until: mark.at,
                    lane: mark.lane,
                    what,
                    count: 1,
                });
            }
        }
    }
    rows
}
