//! What a failure means to the client, from the bytes it actually gets.
//!
//! The oauth2 crate hides the HTTP status and headers of a token error and keeps the AADSTS
//! code only inside `error_description`; a throttled token request arrives as plain text it
//! cannot parse (wire reference, section 4.2). So token failures are classified from the
//! crate's error plus what the client's own transport saw ([`Seen`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use oauth2::RequestTokenError;
use oauth2::basic::{BasicErrorResponse, BasicErrorResponseType};

/// Which credential problem the token endpoint reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialProblem {
    /// AADSTS7000222: the secret expired (or is not usable yet).
    Expired,
    /// AADSTS7000215: wrong or deleted secret.
    Invalid,
    /// AADSTS7000218: no secret sent.
    Missing,
    /// AADSTS700016: the app is not in the directory.
    UnknownApp,
    /// AADSTS90002: the tenant does not exist.
    UnknownTenant,
    /// Another refusal that retrying will not fix (bad scope, unsupported grant, a 403).
    Other(Option<u32>),
}

impl CredentialProblem {
    /// The problem an AADSTS code names.
    pub fn from_code(code: Option<u32>) -> CredentialProblem {
        match code {
            Some(7000222) => CredentialProblem::Expired,
            Some(7000215) => CredentialProblem::Invalid,
            Some(7000218) => CredentialProblem::Missing,
            Some(700016) => CredentialProblem::UnknownApp,
            Some(90002) => CredentialProblem::UnknownTenant,
            other => CredentialProblem::Other(other),
        }
    }

    /// Its AADSTS code, if it has one.
    pub fn code(self) -> Option<u32> {
        match self {
            CredentialProblem::Expired => Some(7000222),
            CredentialProblem::Invalid => Some(7000215),
            CredentialProblem::Missing => Some(7000218),
            CredentialProblem::UnknownApp => Some(700016),
            CredentialProblem::UnknownTenant => Some(90002),
            CredentialProblem::Other(code) => code,
        }
    }
}

/// A failure as the client acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The credentials are refused: open the circuit, keep the queue, probe once per backoff.
    Credential(CredentialProblem),
    /// Try again later, no sooner than `retry_after` when the server said so.
    Transient {
        /// What happened, for logs and reports.
        reason: String,
        /// The server's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// The resource refused the cached access token: drop it, fetch a new one once, retry once.
    TokenRejected,
    /// This message can never be sent as it is.
    Permanent {
        /// The server's reason.
        reason: String,
    },
}

/// What the client's HTTP transport saw of the last token response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The status code.
    pub status: u16,
    /// The parsed `Retry-After`.
    pub retry_after: Option<Duration>,
}

/// The AADSTS number at the start of an Entra `error_description`.
pub fn aadsts_code(description: &str) -> Option<u32> {
    let rest = &description[description.find("AADSTS")? + 6..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Classifies a failed client-credentials request.
pub fn token_failure<E: std::error::Error>(
    error: &RequestTokenError<E, BasicErrorResponse>,
    seen: Option<Seen>,
) -> Failure {
    let retry_after = seen.and_then(|s| s.retry_after);
    match error {
        RequestTokenError::ServerResponse(response) => {
            let code = response.error_description().and_then(|d| aadsts_code(d));
            let problem = CredentialProblem::from_code(code);
            match response.error() {
                BasicErrorResponseType::Extension(kind) if kind == "temporarily_unavailable" => {
                    Failure::Transient {
                        reason: format!("{kind} {}", code_text(code)),
                        retry_after,
                    }
                }
                // A 5xx with an error body is the service's trouble, not the credential's.
                _ if seen.is_some_and(|s| s.status >= 500 || s.status == 429) => {
                    Failure::Transient {
                        reason: format!(
                            "status {} {}",
                            seen.map_or(0, |s| s.status),
                            code_text(code)
                        ),
                        retry_after,
                    }
                }
                _ => Failure::Credential(problem),
            }
        }
        // A plain-text 429 or an HTML 503: the body is not an OAuth error at all.
        RequestTokenError::Parse(_, body) => Failure::Transient {
            reason: format!(
                "unparseable reply{} ({} bytes)",
                status_text(seen),
                body.len()
            ),
            retry_after,
        },
        RequestTokenError::Request(error) => Failure::Transient {
            reason: format!("request failed: {error}"),
            retry_after,
        },
        RequestTokenError::Other(text) => Failure::Transient {
            reason: format!("{text}{}", status_text(seen)),
            retry_after,
        },
    }
}

fn code_text(code: Option<u32>) -> String {
    code.map_or_else(String::new, |c| format!("AADSTS{c}"))
}

fn status_text(seen: Option<Seen>) -> String {
    seen.map_or_else(String::new, |s| format!(" with status {}", s.status))
}

/// Classifies an SMTP failure (lettre's error). `535` rejects the token; `554 5.2.0` (the
/// daily quota) clears with time although lettre calls it permanent; other 5xx fail the
/// message; 4xx and connection trouble are transient.
pub fn smtp_failure(error: &lettre::transport::smtp::Error) -> Failure {
    let text = error.to_string();
    let code = error.status().map(|c| c.to_string());
    match code.as_deref() {
        Some("535") => Failure::TokenRejected,
        Some("554") if text.contains("SubmissionQuotaExceeded") => Failure::Transient {
            reason: text,
            retry_after: None,
        },
        Some("530") => Failure::TokenRejected,
        _ if error.is_permanent() => Failure::Permanent { reason: text },
        _ => Failure::Transient {
            reason: text,
            retry_after: None,
        },
    }
}

/// Classifies a Graph reply that was not a success.
pub fn graph_failure(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Failure {
    let code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/code")
                .and_then(|c| c.as_str())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let reason = format!("{status} {code}").trim().to_string();
    match status {
        401 => Failure::TokenRejected,
        // The app lacks a permission: a configuration problem, never the message's fault.
        403 => Failure::Credential(CredentialProblem::Other(None)),
        408 | 429 | 500..=599 => Failure::Transient {
            reason,
            retry_after,
        },
        _ => Failure::Permanent { reason },
    }
}

/// Parses `Retry-After`: seconds (whole or fractional, as Graph sends `0.249`) or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(86_400.0)));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use oauth2::basic::BasicErrorResponse;
    use oauth2::{RequestTokenError, StandardErrorResponse};

    use super::*;

    type Error = RequestTokenError<std::io::Error, BasicErrorResponse>;

    fn server(kind: BasicErrorResponseType, description: &str) -> Error {
        RequestTokenError::ServerResponse(StandardErrorResponse::new(
            kind,
            Some(description.into()),
            None,
        ))
    }

    #[test]
    fn aadsts_codes_come_out_of_the_description() {
        assert_eq!(
            aadsts_code("AADSTS7000222: The provided client secret keys ... Trace ID: x"),
            Some(7000222)
        );
        assert_eq!(aadsts_code("no code here"), None);
    }

    #[test]
    fn credential_failures_open_the_circuit() {
        let cases = [
            ("AADSTS7000222: expired", CredentialProblem::Expired),
            ("AADSTS7000215: invalid", CredentialProblem::Invalid),
            ("AADSTS7000218: missing", CredentialProblem::Missing),
        ];
        for (description, problem) in cases {
            let error = server(BasicErrorResponseType::InvalidClient, description);
            assert_eq!(
                token_failure(
                    &error,
                    Some(Seen {
                        status: 401,
                        retry_after: None
                    })
                ),
                Failure::Credential(problem)
            );
        }
        let app = server(
            BasicErrorResponseType::UnauthorizedClient,
            "AADSTS700016: Application ...",
        );
        assert_eq!(
            token_failure(&app, None),
            Failure::Credential(CredentialProblem::UnknownApp)
        );
        let tenant = server(
            BasicErrorResponseType::InvalidRequest,
            "AADSTS90002: Tenant ...",
        );
        assert_eq!(
            token_failure(&tenant, None),
            Failure::Credential(CredentialProblem::UnknownTenant)
        );
    }

    #[test]
    fn throttling_and_outages_are_transient() {
        let unavailable = server(
            BasicErrorResponseType::Extension("temporarily_unavailable".into()),
            "AADSTS90033: A transient error",
        );
        assert!(matches!(
            token_failure(&unavailable, None),
            Failure::Transient { .. }
        ));
        let mut json = serde_json::Deserializer::from_slice(b"Too Many Requests");
        let serde_error = serde_path_to_error::deserialize::<_, u8>(&mut json).unwrap_err();
        let parse: Error = RequestTokenError::Parse(serde_error, b"Too Many Requests".to_vec());
        let seen = Seen {
            status: 429,
            retry_after: Some(Duration::from_secs(60)),
        };
        assert_eq!(
            token_failure(&parse, Some(seen)),
            Failure::Transient {
                reason: "unparseable reply with status 429 (17 bytes)".into(),
                retry_after: Some(Duration::from_secs(60))
            }
        );
        let network: Error = RequestTokenError::Request(std::io::Error::other("connection reset"));
        assert!(matches!(
            token_failure(&network, None),
            Failure::Transient { .. }
        ));
    }

    #[test]
    fn graph_replies_are_classified_by_status() {
        let expired = br#"{"error":{"code":"InvalidAuthenticationToken","message":"Access token has expired or is not yet valid."}}"#;
        assert_eq!(graph_failure(401, None, expired), Failure::TokenRejected);
        let throttled = graph_failure(
            429,
            Some(Duration::from_millis(249)),
            br#"{"error":{"code":"ApplicationThrottled"}}"#,
        );
        assert_eq!(
            throttled,
            Failure::Transient {
                reason: "429 ApplicationThrottled".into(),
                retry_after: Some(Duration::from_millis(249))
            }
        );
        assert!(matches!(
            graph_failure(503, None, b"<HTML>"),
            Failure::Transient { .. }
        ));
        assert!(matches!(
            graph_failure(400, None, br#"{"error":{"code":"ErrorInvalidRecipients"}}"#),
            Failure::Permanent { .. }
        ));
        assert!(matches!(
            graph_failure(403, None, b""),
            Failure::Credential(_)
        ));
    }

    #[test]
    fn retry_after_takes_seconds_fractions_and_dates() {
        let now: DateTime<Utc> = "2025-02-14T11:30:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("60", now), Some(Duration::from_secs(60)));
        assert_eq!(
            parse_retry_after("0.249", now),
            Some(Duration::from_millis(249))
        );
        assert_eq!(
            parse_retry_after("Fri, 14 Feb 2025 11:31:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
