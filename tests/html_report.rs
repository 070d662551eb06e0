//! The HTML report as a person sees it: the incident replay's page and a chaos failure's pages,
//! checked as files (size, same bytes twice, no secret, alert marks at the JSON report's
//! instants, a failing check's link at its instant) and in headless Chromium (`MAILDRILL_CHROMIUM`,
//! default `chromium`): the DOM it builds, no console message, no request, a screenshot.
//! Without Chromium the browser test is skipped with a message, unless
//! `MAILDRILL_REQUIRE_CLIENTS` is set (CI installs it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use maildrill::chaos::{self, ChaosConfig};
use maildrill::check::{CheckId, Leaks};
use maildrill::report::html::{Page, write_site};
use maildrill::runner::{ScenarioReport, run_file};
use maildrill::subject::{Mutation, Profile};

const INCIDENT: &str = "scenarios/sell-2025-02-14.toml";
const NAIVE: &str = "scenarios/sell-2025-02-14-naive.toml";

/// The two 45-day replays, once per test binary (each takes seconds in a debug build).
fn incident() -> &'static (ScenarioReport, ScenarioReport) {
    static REPORTS: OnceLock<(ScenarioReport, ScenarioReport)> = OnceLock::new();
    REPORTS.get_or_init(|| {
        std::thread::scope(|s| {
            let naive =
                s.spawn(|| run_file(Path::new(NAIVE), None).expect("the naive replay runs"));
            let remediated = run_file(Path::new(INCIDENT), None).expect("the incident replays");
            (
                remediated,
                naive.join().expect("the naive replay does not panic"),
            )
        })
    })
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("maildrill-html-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn site(name: &str, reports: &[&ScenarioReport]) -> PathBuf {
    let dir = scratch(name);
    let commands: Vec<String> = reports
        .iter()
        .map(|r| format!("maildrill run {} --seed {}", r.file, r.seed))
        .collect();
    let pages: Vec<Page<'_>> = reports
        .iter()
        .zip(&commands)
        .map(|(report, command)| Page {
            report,
            before: None,
            command,
        })
        .collect();
    write_site(&dir, "maildrill run", &pages).expect("the site is written");
    dir
}

/// The secret values a scenario file names (`value = "..."`).
fn secrets(path: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("the scenario file reads");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("value = \""))
        .filter_map(|v| v.strip_suffix('"'))
        .map(str::to_string)
        .collect()
}

/// Every file of the site, scanned for the run's secrets and for anything shaped like a token.
fn assert_no_leak(dir: &Path, secrets: &[String]) {
    assert!(!secrets.is_empty(), "the scenario names its secrets");
    for entry in std::fs::read_dir(dir).expect("the site lists") {
        let path = entry.expect("an entry").path();
        let text = std::fs::read_to_string(&path).expect("a page reads");
        let mut leaks = Leaks::default();
        leaks.scan(secrets, &text);
        assert_eq!(leaks, Leaks::default(), "{} leaks", path.display());
    }
}

/// The attributes of every `<TAG ...>` start tag in `html` that holds `marker`.
fn tags(html: &str, tag: &str, marker: &str) -> Vec<Vec<(String, String)>> {
    let open = format!("<{tag} ");
    let mut out = Vec::new();
    for (i, _) in html.match_indices(&open) {
        let rest = &html[i + open.len()..];
        let head = &rest[..rest.find('>').unwrap_or(rest.len())];
        if !head.contains(marker) {
            continue;
        }
        let mut attrs = Vec::new();
        let mut s = head;
        while let Some(eq) = s.find("=\"") {
            let name = s[..eq].trim().rsplit(' ').next().unwrap_or("").to_string();
            let value_start = eq + 2;
            let value_end = s[value_start..]
                .find('"')
                .map_or(s.len(), |e| value_start + e);
            attrs.push((name, s[value_start..value_end].replace("&amp;", "&")));
            s = &s[(value_end + 1).min(s.len())..];
        }
        out.push(attrs);
    }
    out
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The alert marks on a page: (kind, action, instant).
fn alert_marks(html: &str) -> BTreeSet<(String, String, String)> {
    tags(html, "g", "data-lane=\"alerts\"")
        .iter()
        .filter(|a| attr(a, "class").is_some_and(|c| c.starts_with("mark")))
        .map(|a| {
            let action = match attr(a, "data-kind") {
                Some("alert triggered") => "trigger",
                Some("alert resolved") => "resolve",
                other => panic!("an alert mark of kind {other:?}"),
            };
            (
                attr(a, "data-note").unwrap_or("").to_string(),
                action.to_string(),
                attr(a, "data-at").unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The alerts of the JSON report: (kind, action, instant).
fn json_alerts(report: &ScenarioReport) -> BTreeSet<(String, String, String)> {
    let json = serde_json::to_value(report).expect("the report encodes");
    json["stats"]["alerts"]
        .as_array()
        .expect("stats.alerts is a list")
        .iter()
        .map(|a| {
            let text = |k: &str| a[k].as_str().expect("alert fields are text").to_string();
            (text("kind"), text("action"), text("at"))
        })
        .collect()
}

/// Where a failing check's link leads: the anchor's instant.
fn anchor_at(html: &str, check: CheckId) -> Option<String> {
    let link = tags(html, "a", &format!("href=\"#t-{}\"", check.name()));
    assert!(
        link.iter().any(|a| attr(a, "class") == Some("went-wrong")),
        "no went-wrong link to #t-{check}"
    );
    tags(html, "g", &format!("id=\"t-{}\"", check.name()))
        .first()
        .and_then(|a| attr(a, "data-at").map(str::to_string))
}

#[test]
fn the_incident_page_is_under_2_mb_names_no_secret_and_marks_the_alerts_of_the_json_report() {
    let (remediated, naive) = incident();
    let dir = site("incident", &[remediated, naive]);
    let page = std::fs::read_to_string(dir.join("sell-2025-02-14.html")).expect("the page");
    let size = page.len();
    eprintln!("incident page: {size} bytes");
    assert!(size < 2_000_000, "the 45-day page is {size} bytes");
    for lane in maildrill::trace::Lane::ALL {
        assert!(
            page.contains(&format!("data-lane=\"{}\"", lane.label())),
            "no lane {}",
            lane.label()
        );
    }
    let marks = alert_marks(&page);
    assert!(!marks.is_empty(), "the remediated client alerts");
    assert_eq!(marks, json_alerts(remediated));
    for file in [INCIDENT, NAIVE] {
        assert_no_leak(&dir, &secrets(file));
    }
    // No wall time in a page: wall_ms differs between runs, pages may not.
    assert!(!page.contains("wall"), "a page shows wall time");
}

#[test]
fn a_failing_check_links_to_the_instant_it_went_wrong() {
    let (_, naive) = incident();
    let dir = site("naive", &[naive]);
    let page = std::fs::read_to_string(dir.join("sell-2025-02-14-naive.html")).expect("the page");
    let check = naive
        .checks
        .iter()
        .find(|c| c.id == CheckId::RecoveryWithin)
        .expect("the naive scenario checks recovery");
    assert_eq!(check.verdict.to_string(), "fail");
    // Required: "first delivery within 1m of the rotation"; it went wrong when the bound
    // passed without one, the rotation (stats.rotated_at) plus the bound.
    let bound = check
        .detail
        .split("within ")
        .nth(1)
        .and_then(|rest| rest.split(" of").next())
        .and_then(|b| humantime::parse_duration(b).ok())
        .expect("the bound is in the requirement");
    let rotated: chrono::DateTime<chrono::Utc> = naive
        .stats
        .rotated_at
        .as_deref()
        .expect("the naive scenario rotates")
        .parse()
        .expect("RFC 3339");
    let expected =
        maildrill::time::rfc3339(rotated + chrono::TimeDelta::from_std(bound).expect("small"));
    assert_eq!(anchor_at(&page, CheckId::RecoveryWithin), Some(expected));
}

#[test]
fn the_same_run_gives_the_same_pages() {
    let file = Path::new("scenarios/smtp-drop-after-data.toml");
    let a = run_file(file, None).expect("replays");
    let b = run_file(file, None).expect("replays");
    let (da, db) = (site("same-a", &[&a]), site("same-b", &[&b]));
    for name in ["index.html", "coverage.html", "smtp-drop-after-data.html"] {
        let pa = std::fs::read(da.join(name)).expect("a page");
        let pb = std::fs::read(db.join(name)).expect("a page");
        assert!(pa == pb, "{name} differs between two runs of the same seed");
    }
}

/// A chaos run of a mutant that never warns of expiry, its first failure shrunk a little.
fn chaos_site() -> PathBuf {
    let config = ChaosConfig {
        cases: 12,
        seed: 1,
        profile: Profile::Mutant(Mutation::NoExpiryMonitor),
        max_failures: Some(1),
        shrink: true,
        shrink_budget: 6,
        shrink_all: false,
        jobs: 2,
        delegated: false,
    };
    let results = chaos::run(&config, &()).expect("chaos runs");
    let failed = results
        .iter()
        .find(|r| !r.failed_checks.is_empty())
        .expect("the mutant is caught within 12 cases of seed 1");
    let command = format!("maildrill chaos --seed 1 --cases {}", failed.index + 1);
    let pages = [Page {
        report: &failed.report,
        before: failed.before.as_deref(),
        command: &command,
    }];
    let dir = scratch("chaos");
    write_site(&dir, "maildrill chaos, seed 1", &pages).expect("the site is written");
    let name = &failed.report.name;
    let shrunk = std::fs::read_to_string(dir.join(format!("{name}.html"))).expect("the case");
    assert!(shrunk.contains(&format!("href=\"{name}-before.html\"")));
    let before = std::fs::read_to_string(dir.join(format!("{name}-before.html"))).expect("before");
    assert!(before.contains("(before shrinking)"));
    assert!(anchor_at(&shrunk, CheckId::ExpiryAlertLead).is_some());
    dir
}

#[test]
fn a_chaos_failure_has_a_page_before_and_after_shrinking() {
    chaos_site();
}

/// Chromium, if it is there.
fn chromium() -> Option<String> {
    let browser = std::env::var("MAILDRILL_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = Command::new(&browser)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("MAILDRILL_REQUIRE_CLIENTS").is_none(),
            "{browser} is missing, required here (MAILDRILL_REQUIRE_CLIENTS is set)"
        );
        eprintln!("skipping: no {browser} (apt-get install chromium, or set MAILDRILL_CHROMIUM)");
    }
    found.then_some(browser)
}

/// Runs headless Chromium on a page with network off; its standard output and log.
fn browse(browser: &str, page: &Path, extra: &[String]) -> (String, String) {
    let profile = scratch(&format!(
        "profile-{}",
        page.file_stem().and_then(|s| s.to_str()).unwrap_or("page")
    ));
    let url = format!("file://{}", page.display());
    let output = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--enable-logging=stderr",
            "--v=0",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(extra)
        .arg(&url)
        .output()
        .expect("chromium starts");
    assert!(output.status.success(), "chromium failed on {url}");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What Chromium logged about the page itself: console messages (a CSP refusal is one) and
/// requests that left the file system.
fn page_complaints(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Refused to") || l.contains("net::ERR"))
        .collect()
}

/// A page has the CSP, no script, no reference out, and Chromium builds it and logs nothing
/// about it.
fn assert_quiet(browser: &str, page: &Path) {
    let html = std::fs::read_to_string(page).expect("a page");
    assert!(
        html.contains("default-src 'none'"),
        "{} has no CSP",
        page.display()
    );
    assert!(!html.contains("<script"), "{} has a script", page.display());
    for reference in ["src=\"", "href=\"http", "url("] {
        assert!(
            !html.contains(reference),
            "{} refers to {reference}",
            page.display()
        );
    }
    let (dom, log) = browse(browser, page, &["--dump-dom".into()]);
    assert!(dom.contains("</html>"), "no DOM for {}", page.display());
    let complaints = page_complaints(&log);
    assert!(complaints.is_empty(), "{}: {complaints:#?}", page.display());
}

#[test]
fn the_pages_open_in_chromium_with_no_console_message_and_no_request() {
    let Some(browser) = chromium() else {
        return;
    };
    let (remediated, naive) = incident();
    let dir = site("browser", &[remediated, naive]);
    let chaos = chaos_site();
    let incident_page = dir.join("sell-2025-02-14.html");
    let mut pages = vec![
        incident_page.clone(),
        dir.join("index.html"),
        dir.join("coverage.html"),
    ];
    pages.extend(
        std::fs::read_dir(&chaos)
            .expect("the chaos site lists")
            .map(|e| e.expect("an entry").path()),
    );
    for page in &pages {
        assert_quiet(&browser, page);
    }
    // The same look finds a request when a page makes one (the CSP refuses it, the log says so).
    let bad = dir.join("with-a-foreign-image.html");
    let html = std::fs::read_to_string(&incident_page).expect("the page");
    std::fs::write(
        &bad,
        html.replacen("<main>", "<main><img src=\"http://example.com/x.png\">", 1),
    )
    .expect("the bad page is written");
    let (_, log) = browse(&browser, &bad, &["--dump-dom".into()]);
    assert!(
        !page_complaints(&log).is_empty(),
        "a foreign image went unnoticed:\n{log}"
    );
    let (dom, _) = browse(&browser, &incident_page, &["--dump-dom".into()]);
    for lane in maildrill::trace::Lane::ALL {
        assert!(
            dom.contains(&format!("data-lane=\"{}\"", lane.label())),
            "no lane {}",
            lane.label()
        );
    }
    assert_eq!(alert_marks(&dom), json_alerts(remediated));
    let shot = scratch("shot").with_extension("png");
    let (_, log) = browse(
        &browser,
        &incident_page,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1300,1500".into(),
            "--hide-scrollbars".into(),
        ],
    );
    let bytes = std::fs::read(&shot).unwrap_or_else(|_| panic!("no screenshot: {log}"));
    assert!(bytes.starts_with(b"\x89PNG"), "the screenshot is a PNG");
    assert!(
        bytes.len() > 20_000,
        "the screenshot is {} bytes: blank?",
        bytes.len()
    );
    if let Some(keep) = std::env::var_os("MAILDRILL_SCREENSHOT") {
        std::fs::copy(&shot, keep).expect("the screenshot is kept");
    }
}
