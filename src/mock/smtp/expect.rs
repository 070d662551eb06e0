//! Received messages and expectations on them, in the manner of wiremock's `MockServer`:
//! declare what should arrive, and the guard checks it when it goes out of scope, panicking
//! with a report of what was expected and everything that was received.

use std::fmt;

use chrono::{DateTime, Utc};

/// A message the SMTP mock accepted, as tests query it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReceivedMessage {
    /// Virtual time of the final reply.
    #[serde(serialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    /// The authenticated user, if any.
    pub user: Option<String>,
    /// Envelope sender.
    pub from: String,
    /// Envelope recipients.
    pub to: Vec<String>,
    /// The `Subject` header.
    pub subject: String,
    /// The `Message-ID` (or the id the server gave it).
    pub message_id: String,
    /// Size in bytes.
    pub size: usize,
}

fn rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::time::rfc3339(*at))
}

impl fmt::Display for ReceivedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} from {} to {} subject {:?} ({} bytes, {})",
            crate::time::rfc3339(self.at),
            self.from,
            self.to.join(", "),
            self.subject,
            self.size,
            self.message_id
        )
    }
}

/// Which messages an expectation counts. Every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageMatcher {
    /// Envelope sender (case-insensitive).
    pub from: Option<String>,
    /// One of the envelope recipients (case-insensitive).
    pub to: Option<String>,
    /// Text the subject contains.
    pub subject_contains: Option<String>,
}

impl MessageMatcher {
    /// Whether `message` matches.
    pub fn matches(&self, message: &ReceivedMessage) -> bool {
        self.from
            .as_ref()
            .is_none_or(|f| f.eq_ignore_ascii_case(&message.from))
            && self
                .to
                .as_ref()
                .is_none_or(|t| message.to.iter().any(|r| r.eq_ignore_ascii_case(t)))
            && self
                .subject_contains
                .as_ref()
                .is_none_or(|s| message.subject.contains(s.as_str()))
    }
}

impl fmt::Display for MessageMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(from) = &self.from {
            parts.push(format!("from {from}"));
        }
        if let Some(to) = &self.to {
            parts.push(format!("to {to}"));
        }
        if let Some(subject) = &self.subject_contains {
            parts.push(format!("subject containing {subject:?}"));
        }
        if parts.is_empty() {
            f.write_str("any message")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// How many matching messages an expectation wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    /// At least this many.
    pub min: u64,
    /// At most this many.
    pub max: u64,
}

impl Times {
    /// Exactly `n`.
    pub fn exactly(n: u64) -> Times {
        Times { min: n, max: n }
    }

    /// At least `n`.
    pub fn at_least(n: u64) -> Times {
        Times {
            min: n,
            max: u64::MAX,
        }
    }
}

impl fmt::Display for Times {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.min, self.max) {
            (min, max) if min == max => write!(f, "exactly {min}"),
            (min, u64::MAX) => write!(f, "at least {min}"),
            (min, max) => write!(f, "between {min} and {max}"),
        }
    }
}

/// A named expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// Shown in the report.
    pub name: String,
    /// Which messages count.
    pub matcher: MessageMatcher,
    /// How many.
    pub times: Times,
}

/// The outcome of checking expectations against what arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationReport {
    /// `(expectation, matched count)` for those not met.
    pub unmet: Vec<(Expectation, u64)>,
    /// Everything received.
    pub received: Vec<ReceivedMessage>,
}

impl VerificationReport {
    /// Checks `expectations` against `received`.
    pub fn check(expectations: &[Expectation], received: &[ReceivedMessage]) -> VerificationReport {
        let unmet = expectations
            .iter()
            .map(|e| {
                (
                    e.clone(),
                    received.iter().filter(|m| e.matcher.matches(m)).count() as u64,
                )
            })
            .filter(|(e, n)| *n < e.times.min || *n > e.times.max)
            .collect();
        VerificationReport {
            unmet,
            received: received.to_vec(),
        }
    }

    /// Whether every expectation was met.
    pub fn is_ok(&self) -> bool {
        self.unmet.is_empty()
    }
}

impl fmt::Display for VerificationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "SMTP mock expectations not met:")?;
        for (expectation, matched) in &self.unmet {
            writeln!(
                f,
                "- {}: expected {} message(s) ({}), received {matched}",
                expectation.name, expectation.times, expectation.matcher
            )?;
        }
        writeln!(f, "Received {} message(s):", self.received.len())?;
        for (i, message) in self.received.iter().enumerate() {
            writeln!(f, "{}. {message}", i + 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(to: &str, subject: &str) -> ReceivedMessage {
        ReceivedMessage {
            at: "2025-02-14T11:00:00Z".parse().unwrap(),
            user: None,
            from: "a@x".into(),
            to: vec![to.into()],
            subject: subject.into(),
            message_id: "<1@x>".into(),
            size: 10,
        }
    }

    #[test]
    fn report_lists_unmet_expectations_and_everything_received() {
        let expectations = [
            Expectation {
                name: "invoice".into(),
                matcher: MessageMatcher {
                    to: Some("b@y".into()),
                    ..MessageMatcher::default()
                },
                times: Times::exactly(1),
            },
            Expectation {
                name: "receipts".into(),
                matcher: MessageMatcher {
                    subject_contains: Some("receipt".into()),
                    ..MessageMatcher::default()
                },
                times: Times::at_least(2),
            },
        ];
        let received = [message("b@y", "invoice"), message("c@z", "receipt 1")];
        let report = VerificationReport::check(&expectations, &received);
        assert!(!report.is_ok());
        let text = report.to_string();
        assert!(text.contains("- receipts: expected at least 2 message(s) (subject containing \"receipt\"), received 1"), "{text}");
        assert!(!text.contains("- invoice"), "{text}");
        assert!(
            text.contains("2. 2025-02-14T11:00:00Z from a@x to c@z subject \"receipt 1\""),
            "{text}"
        );
    }
}
