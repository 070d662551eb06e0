//! HTTP expectations in the manner of wiremock's `Mock::expect`: declare how many requests of
//! a kind the token endpoint, Graph or the alert sink should see, and have them verified when
//! the [`Sim`](super::Sim) or a guard drops, with a report of every HTTP request seen.
//!
//! They count journal entries, so they see exactly what the journal shows (a bounded journal
//! forgets its oldest entries, and so do they). SMTP has its own expectations
//! ([`crate::mock::smtp::Expectation`]), on the messages the server accepted.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::journal::{Journal, JournalEntry, MockName};
use crate::mock::smtp::Times;

/// Which HTTP requests an expectation counts. Every condition given must hold; none given
/// means every HTTP request (SMTP commands never count).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMatcher {
    /// The mock that served it.
    pub mock: Option<MockName>,
    /// Its operation, as the journal names it (`token`, `send-mail`, `delta`, ...).
    pub operation: Option<String>,
    /// Text the request line (`METHOD path?query`) contains.
    pub request_contains: Option<String>,
    /// The status of the reply (a request that got no reply has none).
    pub status: Option<u16>,
}

impl RequestMatcher {
    /// Requests to `mock` for `operation`.
    pub fn operation(mock: MockName, operation: &str) -> RequestMatcher {
        RequestMatcher {
            mock: Some(mock),
            operation: Some(operation.to_string()),
            ..RequestMatcher::default()
        }
    }

    /// Token requests (`POST /{tenant}/oauth2/v2.0/token`).
    pub fn token() -> RequestMatcher {
        RequestMatcher::operation(MockName::Entra, "token")
    }

    /// Graph `sendMail` requests.
    pub fn send_mail() -> RequestMatcher {
        RequestMatcher::operation(MockName::Graph, "send-mail")
    }

    /// Only those answered with `status`.
    pub fn with_status(mut self, status: u16) -> RequestMatcher {
        self.status = Some(status);
        self
    }

    /// Whether `entry` matches.
    pub fn matches(&self, entry: &JournalEntry) -> bool {
        entry.mock != MockName::Smtp
            && self.mock.is_none_or(|m| m == entry.mock)
            && self
                .operation
                .as_deref()
                .is_none_or(|op| op == entry.operation)
            && self
                .request_contains
                .as_deref()
                .is_none_or(|text| entry.request.contains(text))
            && self.status.is_none_or(|s| entry.status == Some(s))
    }
}

impl fmt::Display for RequestMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        match (&self.mock, &self.operation) {
            (Some(mock), Some(op)) => parts.push(format!("{mock} {op}")),
            (Some(mock), None) => parts.push(mock.to_string()),
            (None, Some(op)) => parts.push(op.clone()),
            (None, None) => parts.push("any HTTP request".into()),
        }
        if let Some(text) = &self.request_contains {
            parts.push(format!("request containing {text:?}"));
        }
        if let Some(status) = self.status {
            parts.push(format!("answered {status}"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// A named expectation on HTTP requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpExpectation {
    /// Shown in the report.
    pub name: String,
    /// Which requests count.
    pub matcher: RequestMatcher,
    /// How many.
    pub times: Times,
}

impl HttpExpectation {
    /// `times` requests matching `matcher`, named after the matcher.
    pub fn new(matcher: RequestMatcher, times: Times) -> HttpExpectation {
        HttpExpectation {
            name: matcher.to_string(),
            matcher,
            times,
        }
    }

    /// The same expectation under another name in the report.
    pub fn named(mut self, name: impl Into<String>) -> HttpExpectation {
        self.name = name.into();
        self
    }
}

/// The outcome of checking HTTP expectations against the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpVerificationReport {
    /// `(expectation, matched count)` for those not met.
    pub unmet: Vec<(HttpExpectation, u64)>,
    /// Every HTTP request seen since the earliest expectation checked, one line each.
    pub seen: Vec<String>,
}

impl HttpVerificationReport {
    /// Whether every expectation was met.
    pub fn is_ok(&self) -> bool {
        self.unmet.is_empty()
    }
}

/// Requests listed in a report at most: a replay's journal can hold tens of thousands.
const SEEN_SHOWN: usize = 100;

impl fmt::Display for HttpVerificationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "HTTP mock expectations not met:")?;
        for (expectation, matched) in &self.unmet {
            writeln!(
                f,
                "- {}: expected {} request(s) ({}), received {matched}",
                expectation.name, expectation.times, expectation.matcher
            )?;
        }
        writeln!(f, "Received {} HTTP request(s):", self.seen.len())?;
        for (i, line) in self.seen.iter().enumerate().take(SEEN_SHOWN) {
            writeln!(f, "{}. {line}", i + 1)?;
        }
        if self.seen.len() > SEEN_SHOWN {
            writeln!(f, "... and {} more", self.seen.len() - SEEN_SHOWN)?;
        }
        Ok(())
    }
}

/// One entry of a report: the request and how it was answered, without bodies.
fn seen_line(entry: &JournalEntry) -> String {
    let status = entry
        .status
        .map_or_else(|| "no reply".to_string(), |s| s.to_string());
    let mut line = format!(
        "{} {} {} {} -> {status}",
        crate::time::rfc3339(entry.at),
        entry.mock,
        entry.operation,
        entry.request
    );
    if entry.delivery != "respond" {
        line.push_str(&format!(" [{}]", entry.delivery));
    }
    if let Some(fault) = &entry.fault {
        line.push_str(&format!(" (fault {fault})"));
    }
    line
}

/// An expectation as registered: it counts requests journaled after `since`.
#[derive(Debug, Clone)]
struct Registered {
    id: u64,
    expectation: HttpExpectation,
    since: u64,
    scoped: bool,
}

#[derive(Debug, Default)]
struct Registry {
    next: u64,
    list: Vec<Registered>,
}

/// The expectations of one [`Sim`](super::Sim), over its journal.
#[derive(Debug, Clone)]
pub(crate) struct HttpExpectations {
    journal: Journal,
    registry: Arc<Mutex<Registry>>,
}

impl HttpExpectations {
    pub(crate) fn new(journal: Journal) -> HttpExpectations {
        HttpExpectations {
            journal,
            registry: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `expectation`, counting requests from now on (as wiremock counts from
    /// mounting); a scoped one is verified by its guard, the rest when the sim drops.
    pub(crate) fn register(&self, expectation: HttpExpectation, scoped: bool) -> u64 {
        let since = self.journal.total();
        let mut registry = self.lock();
        registry.next += 1;
        let id = registry.next;
        registry.list.push(Registered {
            id,
            expectation,
            since,
            scoped,
        });
        id
    }

    /// Checks the expectations `which` selects, now.
    pub(crate) fn verify(&self, which: impl Fn(u64, bool) -> bool) -> HttpVerificationReport {
        let chosen: Vec<Registered> = self
            .lock()
            .list
            .iter()
            .filter(|r| which(r.id, r.scoped))
            .cloned()
            .collect();
        let Some(since) = chosen.iter().map(|r| r.since).min() else {
            // Nothing to check: a replay's sim drops with none, and its journal is long.
            return HttpVerificationReport {
                unmet: Vec::new(),
                seen: Vec::new(),
            };
        };
        let mut counts = vec![0u64; chosen.len()];
        let mut seen = Vec::new();
        self.journal.with_entries(|entries| {
            for entry in entries.filter(|e| e.seq > since && e.mock != MockName::Smtp) {
                seen.push(seen_line(entry));
                for (count, registered) in counts.iter_mut().zip(&chosen) {
                    if entry.seq > registered.since && registered.expectation.matcher.matches(entry)
                    {
                        *count += 1;
                    }
                }
            }
        });
        let unmet = chosen
            .into_iter()
            .zip(counts)
            .filter(|(r, n)| *n < r.expectation.times.min || *n > r.expectation.times.max)
            .map(|(r, n)| (r.expectation, n))
            .collect();
        HttpVerificationReport { unmet, seen }
    }

    /// Forgets the expectations `which` selects.
    pub(crate) fn remove(&self, which: impl Fn(u64, bool) -> bool) {
        self.lock().list.retain(|r| !which(r.id, r.scoped));
    }

    /// Verifies and forgets the expectations `which` selects; panics with the report when one
    /// is not met, unless the thread is already panicking (a second panic would abort and
    /// hide the first failure).
    pub(crate) fn verify_on_drop(&self, which: impl Fn(u64, bool) -> bool + Copy) {
        let report = self.verify(which);
        self.remove(which);
        if !report.is_ok() && !std::thread::panicking() {
            // This is a test API: an unmet expectation fails the test, as wiremock's do.
            panic!("{report}");
        }
    }
}

/// Verifies one expectation when dropped (see [`Sim::expect_scoped`](super::Sim::expect_scoped)).
#[derive(Debug)]
#[must_use = "the expectation is verified when the guard drops, so dropping it at once checks nothing"]
pub struct HttpExpectationGuard {
    expectations: HttpExpectations,
    id: u64,
}

impl HttpExpectationGuard {
    pub(crate) fn new(expectations: HttpExpectations, id: u64) -> HttpExpectationGuard {
        HttpExpectationGuard { expectations, id }
    }

    /// Checks this guard's expectation now, without panicking.
    pub fn verify(&self) -> HttpVerificationReport {
        let id = self.id;
        self.expectations.verify(move |other, _| other == id)
    }
}

impl Drop for HttpExpectationGuard {
    fn drop(&mut self) {
        let id = self.id;
        self.expectations
            .verify_on_drop(move |other, _| other == id);
    }
}

/// Verifies the sim's unscoped expectations when the sim drops.
#[derive(Debug)]
pub(crate) struct VerifyOnDrop(pub(crate) HttpExpectations);

impl Drop for VerifyOnDrop {
    fn drop(&mut self) {
        self.0.verify_on_drop(|_, scoped| !scoped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Body, Facts};

    fn entry(mock: MockName, operation: &'static str, status: u16) -> JournalEntry {
        JournalEntry {
            seq: 0,
            at: "2025-02-14T11:00:00Z".parse().expect("a valid instant"),
            mock,
            operation,
            user: None,
            request: format!("POST /{operation}"),
            request_body: Body::default(),
            delivery: "respond".into(),
            status: Some(status),
            response_body: Body::default(),
            fault: None,
            facts: Facts::default(),
        }
    }

    #[test]
    fn report_names_the_unmet_expectation_and_lists_every_request_seen() {
        let journal = Journal::new();
        let expectations = HttpExpectations::new(journal.clone());
        expectations.register(
            HttpExpectation::new(RequestMatcher::send_mail(), Times::exactly(2)),
            false,
        );
        expectations.register(
            HttpExpectation::new(RequestMatcher::token(), Times::exactly(1)).named("one token"),
            false,
        );
        journal.record(entry(MockName::Entra, "token", 200));
        journal.record(entry(MockName::Graph, "send-mail", 202));
        journal.record(entry(MockName::Smtp, "data", 250));
        let report = expectations.verify(|_, _| true);
        let text = report.to_string();
        assert!(
            text.contains(
                "- graph send-mail: expected exactly 2 request(s) (graph send-mail), received 1"
            ),
            "{text}"
        );
        assert!(!text.contains("one token"), "{text}");
        assert!(text.contains("Received 2 HTTP request(s):"), "{text}");
        assert!(
            text.contains("2. 2025-02-14T11:00:00Z graph send-mail POST /send-mail -> 202"),
            "{text}"
        );
    }

    #[test]
    fn an_expectation_counts_only_requests_after_it_was_registered() {
        let journal = Journal::new();
        let expectations = HttpExpectations::new(journal.clone());
        journal.record(entry(MockName::Entra, "token", 200));
        expectations.register(
            HttpExpectation::new(RequestMatcher::token().with_status(200), Times::exactly(1)),
            true,
        );
        journal.record(entry(MockName::Entra, "token", 401));
        journal.record(entry(MockName::Entra, "token", 200));
        assert!(expectations.verify(|_, _| true).is_ok());
    }
}
