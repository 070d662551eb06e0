//! The site's pages: the index of runs, a page per run (and, for a shrunk chaos case, its page
//! before shrinking), the coverage page, one stylesheet inlined in each. Pages hold virtual
//! times only, never the wall clock, so the same runs give the same bytes.

use std::path::Path;

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{checks, coverage, timeline};
use crate::coverage::Coverage;
use crate::runner::ScenarioReport;

/// A run's page.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The run.
    pub report: &'a ScenarioReport,
    /// For a shrunk chaos case, the case as first drawn.
    pub before: Option<&'a ScenarioReport>,
    /// The one command that reproduces the run.
    pub command: &'a str,
}

/// Nothing leaves the page: no script, no fetch, no font; styles inline, images as data.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

const CSS: &str = include_str!("style.css");

/// Writes `index.html`, a page per run and `coverage.html` (the map of the pages' runs) into
/// `dir`.
pub fn write_site(dir: &Path, title: &str, pages: &[Page<'_>]) -> std::io::Result<()> {
    let reports: Vec<&ScenarioReport> = pages.iter().map(|p| p.report).collect();
    let map = Coverage::of(&reports);
    let slugs = slugs(pages);
    let page_of = |i: usize| Some(format!("{}.html", slugs[i]));
    write_site_with(dir, title, pages, &map, &page_of)
}

/// [`write_site`] with the coverage of other runs (every case of a chaos run, when only the
/// failing ones have pages); `page_of(i)` is the page of run `i` of the map, if it has one.
pub fn write_site_with(
    dir: &Path,
    title: &str,
    pages: &[Page<'_>],
    map: &Coverage,
    page_of: &dyn Fn(usize) -> Option<String>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let slugs = slugs(pages);
    std::fs::write(
        dir.join("index.html"),
        index(title, pages, &slugs).into_string(),
    )?;
    for (page, slug) in pages.iter().zip(&slugs) {
        let before = page.before.map(|_| format!("{slug}-before.html"));
        let main = run_page(page.report, page.command, before.as_deref(), None);
        std::fs::write(dir.join(format!("{slug}.html")), main.into_string())?;
        if let (Some(report), Some(name)) = (page.before, &before) {
            let shrunk = format!("{slug}.html");
            let first = run_page(report, page.command, None, Some(&shrunk));
            std::fs::write(dir.join(name), first.into_string())?;
        }
    }
    let body = coverage::page_body(map, page_of);
    std::fs::write(
        dir.join("coverage.html"),
        frame("Fault coverage", html! { h1 { "Fault coverage" } (body) }).into_string(),
    )?;
    Ok(())
}

/// A file name for each page: its run's name, made safe, numbered until unused. `index` and
/// `coverage` are the site's own pages, and `-before` ends only a shrunk case's first form.
pub fn slugs(pages: &[Page<'_>]) -> Vec<String> {
    file_names(pages.iter().map(|p| p.report.name.as_str()))
}

fn file_names<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut taken: std::collections::BTreeSet<String> =
        ["index", "coverage"].map(String::from).into();
    names
        .map(|name| {
            let mut base: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            if base.is_empty() || base.ends_with("-before") {
                base.push_str("-run");
            }
            let mut slug = base.clone();
            let mut n = 1;
            while taken.contains(&slug) {
                n += 1;
                slug = format!("{base}-{n}");
            }
            taken.insert(slug.clone());
            slug
        })
        .collect()
}

/// A page with the stylesheet and the content security policy.
fn frame(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content=(CSP);
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · maildrill" }
                style { (PreEscaped(CSS)) }
            }
            body {
                nav { a href="index.html" { "all runs" } " · " a href="coverage.html" { "fault coverage" } }
                main { (body) }
            }
        }
    }
}

fn status(report: &ScenarioReport) -> (&'static str, &'static str) {
    match (&report.skipped, report.passed) {
        (Some(_), _) => ("skip", "– SKIP"),
        (None, true) => ("pass", "✓ PASS"),
        (None, false) => ("fail", "✗ FAIL"),
    }
}

fn index(title: &str, pages: &[Page<'_>], slugs: &[String]) -> Markup {
    let failed = pages.iter().filter(|p| !p.report.passed).count();
    frame(
        title,
        html! {
            h1 { (title) }
            p { (pages.len()) " runs, " (pages.len() - failed) " as expected, " (failed) " not." }
            table class="runs" {
                thead { tr { th scope="col" { "verdict" } th scope="col" { "run" } th scope="col" { "file" }
                    th scope="col" { "seed" } th scope="col" { "checks that differ" } } }
                tbody {
                    @for (page, slug) in pages.iter().zip(slugs) {
                        @let (class, text) = status(page.report);
                        tr class=(class) {
                            td class={ "grade " (class) } { (text) }
                            th scope="row" { a href={ (slug) ".html" } { (page.report.name) } }
                            td { code { (page.report.file) } }
                            td { (page.report.seed) }
                            td { @for c in page.report.checks.iter().filter(|c| c.verdict != c.expected) { (c.id.name()) " " } }
                        }
                    }
                }
            }
        },
    )
}

/// A run's page; `before` links to the case as first drawn, `shrunk` back to the shrunk one.
fn run_page(
    report: &ScenarioReport,
    command: &str,
    before: Option<&str>,
    shrunk: Option<&str>,
) -> Markup {
    let (class, text) = status(report);
    let heading = if shrunk.is_some() {
        format!("{} (before shrinking)", report.name)
    } else {
        report.name.clone()
    };
    frame(
        &heading,
        html! {
            h1 { (heading) " " span class={ "grade " (class) } { (text) } }
            @if let Some(link) = before { p { "A shrunk chaos case. " a href=(link) { "The case as first drawn" } "." } }
            @if let Some(link) = shrunk { p { "The chaos case as first drawn. " a href=(link) { "After shrinking" } "." } }
            (checks::facts(report, command))
            @if let Some(reason) = &report.skipped { p class="skipped" { "Skipped: " (reason) } }
            @for incident in &report.incidents { p class="incident" { "Subject at " (crate::time::rfc3339(incident.at)) ": " (incident.what) } }
            @if report.skipped.is_none() {
                h2 { "Timeline" }
                figure { (timeline::svg(&report.trace, &report.checks, "tl")) figcaption { (timeline::legend()) } }
                h2 { "Checks" }
                (checks::table(&report.checks))
                h2 { "Events" }
                (checks::events(&report.trace))
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_run_name_takes_another_pages_file() {
        let names = [
            "index", "a b", "a-b", "a-b-2", "coverage", "", "x-before", "x",
        ];
        let files = file_names(names.into_iter());
        assert_eq!(
            files,
            [
                "index-2",
                "a-b",
                "a-b-2",
                "a-b-2-2",
                "coverage-2",
                "-run",
                "x-before-run",
                "x"
            ]
        );
    }
}
