//! RFC 9457 problem details: every refused control call says what is wrong, with which
//! field, and for a vocabulary word which values are valid.

use serde::Serialize;

use crate::mock::HttpResponse;

/// A problem details object (`application/problem+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Problem {
    /// What kind of problem: `about:blank` (the status says it all) or a
    /// `urn:maildrill:problem:*` URN.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A short summary of the kind.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this call.
    pub detail: String,
    /// The field, query parameter or path segment at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For a vocabulary word: every value accepted there.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub valid: Vec<String>,
    /// A `405`'s `Allow` header: the methods the resource answers, as bits of [`METHODS`]
    /// (a byte, so that a problem stays small enough to return by value).
    #[serde(skip)]
    allow: u8,
}

/// The methods an `Allow` header can name, by bit.
const METHODS: [http::Method; 4] = [
    http::Method::GET,
    http::Method::POST,
    http::Method::PUT,
    http::Method::DELETE,
];

/// The methods of `bits`, as an `Allow` header lists them.
fn allow_list(bits: u8) -> String {
    METHODS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, m)| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Problem {
    fn new(
        status: u16,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            kind,
            title,
            status,
            detail: detail.into(),
            field: None,
            valid: Vec::new(),
            allow: 0,
        }
    }

    /// `400`: a body, query or path value that cannot be used.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Problem {
        Problem {
            field: Some(field.into()),
            ..Problem::new(
                400,
                "urn:maildrill:problem:invalid-request",
                "Invalid request",
                detail,
            )
        }
    }

    /// Adds the values valid at the field.
    pub fn with_valid<S: ToString>(mut self, valid: impl IntoIterator<Item = S>) -> Problem {
        self.valid = valid.into_iter().map(|v| v.to_string()).collect();
        self
    }

    /// `401`: no bearer token, or not the control token.
    pub fn unauthorized() -> Problem {
        Problem::new(
            401,
            "about:blank",
            "Unauthorized",
            "every control call needs `Authorization: Bearer $MAILDRILL_CONTROL_TOKEN`",
        )
    }

    /// `403`: a call from another host while remote control is off.
    pub fn remote() -> Problem {
        Problem::new(
            403,
            "about:blank",
            "Forbidden",
            "the control API answers loopback clients only",
        )
    }

    /// `404`: no such resource.
    pub fn not_found(field: Option<&str>, detail: impl Into<String>) -> Problem {
        Problem {
            field: field.map(str::to_string),
            ..Problem::new(404, "about:blank", "Not Found", detail)
        }
    }

    /// `405`: the path exists, the method does not; `allowed` goes in `Allow`.
    pub fn method(allowed: &[http::Method]) -> Problem {
        let allow = METHODS
            .iter()
            .enumerate()
            .filter(|(_, m)| allowed.contains(m))
            .fold(0, |bits, (i, _)| bits | (1 << i));
        Problem {
            allow,
            ..Problem::new(
                405,
                "about:blank",
                "Method Not Allowed",
                format!("this resource answers {}", allow_list(allow)),
            )
        }
    }

    /// `409`: a valid call the current state refuses (a clock moved backwards).
    pub fn conflict(field: &str, detail: impl Into<String>) -> Problem {
        Problem {
            field: Some(field.to_string()),
            ..Problem::new(409, "urn:maildrill:problem:conflict", "Conflict", detail)
        }
    }

    /// The response.
    pub fn response(&self) -> HttpResponse {
        let body = serde_json::to_vec(self).expect("a problem serialises");
        let mut builder = http::Response::builder()
            .status(self.status)
            .header("Content-Type", "application/problem+json");
        if self.status == 401 {
            builder = builder.header("WWW-Authenticate", "Bearer realm=\"maildrill\"");
        }
        if self.allow != 0 {
            builder = builder.header("Allow", allow_list(self.allow));
        }
        builder
            .body(body.into())
            .expect("static response parts are valid")
    }
}

/// A JSON body that does not fit its type, as a problem naming the field and, for an enum,
/// the valid values (serde lists them as "expected one of `a`, `b`").
pub fn from_json_error(error: &serde_path_to_error::Error<serde_json::Error>) -> Problem {
    let path = error.path().to_string();
    let field = if path == "." {
        "body".to_string()
    } else {
        path
    };
    let message = error.inner().to_string();
    let valid = message
        .split_once("expected one of ")
        .map(|(_, rest)| {
            rest.split(',')
                .filter_map(|w| w.trim().split('`').nth(1))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let detail = strip_position(&message);
    Problem::invalid(field, detail).with_valid(valid)
}

/// serde_json's "at line 1 column 17" means little to a caller who sent one line.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[expect(dead_code, reason = "only parsed")]
    struct Body {
        target: crate::fault::Target,
    }

    #[test]
    fn a_wrong_word_names_its_field_and_the_valid_words() {
        let json = br#"{"target": "exchange"}"#;
        let error = serde_path_to_error::deserialize::<_, Body>(
            &mut serde_json::Deserializer::from_slice(json),
        )
        .unwrap_err();
        let problem = from_json_error(&error);
        assert_eq!(problem.field.as_deref(), Some("target"));
        assert_eq!(problem.valid, ["entra", "graph", "smtp", "alerts"]);
        assert!(
            problem.detail.contains("unknown variant `exchange`"),
            "{problem:?}"
        );
        assert!(!problem.detail.contains("line"), "{problem:?}");
    }
}
