//! The coverage page: fault kinds by protocol stage, each cell the number of runs that reached
//! the stage with that fault, linking to the list of them; empty cells are the blind spots.

use maud::{Markup, html};

use crate::coverage::Coverage;
use crate::trace::{FaultRow, Stage, TokenAnswer};

/// The group a stage's column sits under.
fn group(stage: Stage) -> &'static str {
    match stage {
        Stage::Token(_) => "token endpoint",
        Stage::SmtpConnect
        | Stage::SmtpEhlo
        | Stage::SmtpStartTls
        | Stage::SmtpAuth
        | Stage::SmtpMail
        | Stage::SmtpRcpt
        | Stage::SmtpData
        | Stage::SmtpAfterDot => "SMTP",
        Stage::GraphSendMail | Stage::GraphDelta | Stage::GraphApplications => "Graph",
        Stage::AlertSink => "alerts",
    }
}

/// A column's short heading.
fn heading(stage: Stage) -> &'static str {
    match stage {
        Stage::Token(TokenAnswer::Ok) => "200",
        Stage::Token(TokenAnswer::InvalidClient) => "401 invalid_client",
        Stage::Token(TokenAnswer::OtherRefusal) => "other 4xx",
        Stage::Token(TokenAnswer::Throttled) => "429",
        Stage::Token(TokenAnswer::Unavailable) => "5xx",
        Stage::Token(TokenAnswer::NoReply) => "no reply",
        Stage::SmtpConnect => "connect",
        Stage::SmtpEhlo => "EHLO",
        Stage::SmtpStartTls => "STARTTLS",
        Stage::SmtpAuth => "AUTH",
        Stage::SmtpMail => "MAIL",
        Stage::SmtpRcpt => "RCPT",
        Stage::SmtpData => "DATA",
        Stage::SmtpAfterDot => "after the dot",
        Stage::GraphSendMail => "sendMail",
        Stage::GraphDelta => "delta",
        Stage::GraphApplications => "applications",
        Stage::AlertSink => "sink",
    }
}

fn cell_id(row: FaultRow, stage: Stage) -> String {
    format!("c-{}-{}", row.name(), stage.name())
}

/// The grid and, below it, the runs of each non-empty cell; `page_of(i)` is run `i`'s page, if
/// it has one.
pub fn page_body(map: &Coverage, page_of: &dyn Fn(usize) -> Option<String>) -> Markup {
    let groups = ["token endpoint", "SMTP", "Graph", "alerts"];
    html! {
        p { (map.runs.len()) " runs; " (map.empty().len()) " of " (Coverage::possible())
            " possible cells empty (n/a: that fault cannot reach that stage). A cell counts the runs in which a request reached that stage and the fault shaped its reply "
            "(the journal entry names the fault); the credential row counts token requests refused (401 invalid_client or another 4xx) with no fault in force: an ended, wrong or deleted credential. "
            "An empty cell (·) is a blind spot." }
        table class="coverage" {
            caption { "Fault kinds (rows) by protocol stage (columns)" }
            thead {
                tr { td {} @for g in groups { th scope="colgroup" colspan=(Stage::ALL.iter().filter(|s| group(**s) == g).count()) { (g) } } }
                tr { th scope="col" { "fault" } @for stage in Stage::ALL { th scope="col" title=(stage.name()) { (heading(stage)) } } }
            }
            tbody {
                @for row in FaultRow::all() {
                    tr {
                        th scope="row" { (row.name()) }
                        @for stage in Stage::ALL {
                            @let runs = map.cell(row, stage);
                            @if !row.applies_to(stage) {
                                td class="na" title={ (row.name()) " never reaches " (stage.name()) } { "n/a" }
                            } @else if runs.is_empty() {
                                td class="empty" title={ (row.name()) "@" (stage.name()) ": no run" } { "·" }
                            } @else {
                                td class="hit" { a href={ "#" (cell_id(row, stage)) } title={ (row.name()) "@" (stage.name()) } { (runs.len()) } }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Runs by cell" }
        dl class="cells" {
            @for ((row, stage), runs) in &map.cells {
                dt id=(cell_id(*row, *stage)) { code { (row.name()) "@" (stage.name()) } }
                dd { @for (i, hits) in runs {
                    @match page_of(*i) {
                        Some(page) => a href=(page) { (map.runs[*i].0) },
                        None => (map.runs[*i].0),
                    }
                    " (" (hits) " requests) "
                } }
            }
        }
    }
}
