//! Client assertions (`private_key_jwt`): a JWT signed with the key of a certificate the app
//! registration holds, checked as Entra checks it.
//!
//! Checked in this order, each refusal its own [`AssertionError`]: the JWT's shape, the key
//! its `x5t#S256` or `x5t` header names, the signature, the key's validity, the assertion's
//! `nbf`/`exp` (with five minutes' leeway), `aud` (this tenant's token endpoint, v2 or v1, or
//! its v2 issuer; the host is not compared, since a client reaches the mock by any name), and
//! `iss`/`sub` against the client id. Claims and header fields it does not know are ignored,
//! as Entra ignores them: a mock must never be stricter than the service. It does no I/O.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use super::app::{App, CredentialState};
use super::certificate::{AssertionAlg, KeyCredential, upper_hex};

/// How far `nbf` may lie ahead and `exp` behind the clock.
pub const CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);

/// Why a client assertion is refused, with what Entra's message shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// Not a JWT of three base64url parts with JSON header and claims (AADSTS50027).
    #[error("client assertion is not a well-formed JWT")]
    Malformed,
    /// No key of the app has the thumbprint the header names (AADSTS700027).
    #[error("the key the client assertion names is not registered")]
    UnknownKey {
        /// The thumbprint the client sent, uppercase hex; `None` without `x5t` or `x5t#S256`.
        thumbprint: Option<String>,
    },
    /// The key was found but the signature does not verify with it (AADSTS700027).
    #[error("the client assertion's signature does not verify")]
    BadSignature(FoundKey),
    /// The key's certificate has ended or not yet started (AADSTS700027, "expired").
    #[error("the key used to sign the client assertion is expired")]
    ExpiredKey(FoundKey),
    /// `nbf`/`exp` do not cover now (AADSTS700024).
    #[error("client assertion is not within its valid time range")]
    OutsideWindow {
        /// `nbf`, if the assertion has one.
        nbf: Option<DateTime<Utc>>,
        /// `exp`, if the assertion has one.
        exp: Option<DateTime<Utc>>,
    },
    /// `aud` is not this tenant's token endpoint (AADSTS50012).
    #[error("client assertion audience does not match the tenant")]
    Audience,
    /// `iss` or `sub` is not the client id (AADSTS700021).
    #[error("client assertion application identifier does not match the client id")]
    ClientMismatch,
}

/// The key an assertion named, as Entra's message shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundKey {
    /// The thumbprint the client sent, uppercase hex.
    pub thumbprint: String,
    /// The key's `startDateTime`.
    pub start: DateTime<Utc>,
    /// The key's `endDateTime`.
    pub end: DateTime<Utc>,
}

/// The parts of an assertion the checks read.
#[derive(Debug)]
struct Jwt {
    alg: Option<AssertionAlg>,
    x5t: Option<Vec<u8>>,
    x5t_s256: Option<Vec<u8>>,
    claims: serde_json::Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

fn parse(assertion: &str) -> Result<Jwt, AssertionError> {
    let mut parts = assertion.trim().split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AssertionError::Malformed);
    };
    let json = |part: &str| -> Result<serde_json::Map<String, Value>, AssertionError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| AssertionError::Malformed)?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(AssertionError::Malformed),
        }
    };
    let head = json(header)?;
    let thumbprint = |name: &str| {
        head.get(name)
            .and_then(Value::as_str)
            .and_then(|t| URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')).ok())
    };
    Ok(Jwt {
        alg: head
            .get("alg")
            .and_then(Value::as_str)
            .and_then(AssertionAlg::from_name),
        x5t: thumbprint("x5t"),
        x5t_s256: thumbprint("x5t#S256"),
        claims: json(claims)?,
        signing_input: format!("{header}.{claims}"),
        signature: URL_SAFE_NO_PAD
            .decode(signature.trim_end_matches('='))
            .map_err(|_| AssertionError::Malformed)?,
    })
}

/// What an assertion is checked against besides the app.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The tenant id.
    pub tenant_id: &'a str,
    /// The tenant's initial domain.
    pub tenant_domain: &'a str,
    /// The `client_id` of the request.
    pub client_id: &'a str,
    /// How long a new key keeps failing.
    pub propagation: std::time::Duration,
    /// The instant of the request.
    pub now: DateTime<Utc>,
}

/// Checks `assertion` for `app`, in Entra's order.
pub fn check(app: &App, assertion: &str, expected: Expected<'_>) -> Result<(), AssertionError> {
    let jwt = parse(assertion)?;
    let key = find_key(app, &jwt, expected)?;
    let found = FoundKey {
        thumbprint: sent_thumbprint(&jwt).unwrap_or_default(),
        start: key.start,
        end: key.end,
    };
    let verified = jwt
        .alg
        .is_some_and(|alg| key.verifies(alg, jwt.signing_input.as_bytes(), &jwt.signature));
    if !verified {
        return Err(AssertionError::BadSignature(found));
    }
    if key.state_at(expected.now, std::time::Duration::ZERO) != CredentialState::Valid {
        return Err(AssertionError::ExpiredKey(found));
    }
    check_window(&jwt, expected.now)?;
    if !audience_matches(jwt.claims.get("aud"), expected) {
        return Err(AssertionError::Audience);
    }
    let claim = |name: &str| jwt.claims.get(name).and_then(Value::as_str);
    let client = expected.client_id;
    if !claim("iss").is_some_and(|v| v.eq_ignore_ascii_case(client))
        || !claim("sub").is_some_and(|v| v.eq_ignore_ascii_case(client))
    {
        return Err(AssertionError::ClientMismatch);
    }
    Ok(())
}

/// The thumbprint the header names, as uppercase hex (`x5t#S256` first, as Entra prefers it).
fn sent_thumbprint(jwt: &Jwt) -> Option<String> {
    jwt.x5t_s256
        .as_deref()
        .or(jwt.x5t.as_deref())
        .map(upper_hex)
}

/// The app's key the header names; a key still propagating is not found yet.
fn find_key<'a>(
    app: &'a App,
    jwt: &Jwt,
    expected: Expected<'_>,
) -> Result<&'a KeyCredential, AssertionError> {
    let named = app.key_credentials.iter().find(|k| {
        jwt.x5t_s256.as_deref() == Some(&k.thumbprints.sha256[..])
            || jwt.x5t.as_deref() == Some(&k.thumbprints.sha1[..])
    });
    named
        .filter(|k| k.state_at(expected.now, expected.propagation) != CredentialState::Propagating)
        .ok_or_else(|| AssertionError::UnknownKey {
            thumbprint: sent_thumbprint(jwt),
        })
}

fn check_window(jwt: &Jwt, now: DateTime<Utc>) -> Result<(), AssertionError> {
    // RFC 7519 NumericDate may have a fraction: MSAL for Python writes `time.time() + 600`.
    let time = |name: &str| {
        let value = jwt.claims.get(name)?;
        let seconds = value.as_i64().or_else(|| {
            value
                .as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.floor() as i64)
        })?;
        DateTime::<Utc>::from_timestamp(seconds, 0)
    };
    let (nbf, exp) = (time("nbf"), time("exp"));
    let early = nbf.is_some_and(|nbf| now + CLOCK_SKEW < nbf);
    let late = exp.is_none_or(|exp| now - CLOCK_SKEW >= exp);
    if early || late {
        return Err(AssertionError::OutsideWindow { nbf, exp });
    }
    Ok(())
}

/// `aud` names this tenant's token endpoint (v2 or v1) or its v2 issuer, by id or domain; a
/// one-element array counts as its element.
fn audience_matches(aud: Option<&Value>, expected: Expected<'_>) -> bool {
    let aud = match aud {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Array(items)) if items.len() == 1 => match items[0].as_str() {
            Some(s) => s,
            None => return false,
        },
        _ => return false,
    };
    let Ok(uri) = aud.parse::<http::Uri>() else {
        return false;
    };
    let path = uri.path().trim_end_matches('/');
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let tenant = segments.next().unwrap_or("");
    let rest = segments.next().unwrap_or("");
    let ours = tenant.eq_ignore_ascii_case(expected.tenant_id)
        || tenant.eq_ignore_ascii_case(expected.tenant_domain);
    ours && ["oauth2/v2.0/token", "oauth2/token", "v2.0"].contains(&rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "11111111-1111-4111-8111-111111111111";

    fn expected(now: &str) -> Expected<'static> {
        Expected {
            tenant_id: TENANT,
            tenant_domain: "contoso.onmicrosoft.com",
            client_id: "app",
            propagation: std::time::Duration::ZERO,
            now: now.parse().unwrap(),
        }
    }

    #[test]
    fn audience_is_the_token_endpoint_or_the_issuer_of_this_tenant() {
        let e = expected("2025-01-01T00:00:00Z");
        let ok = |aud: Value| audience_matches(Some(&aud), e);
        assert!(ok(Value::from(format!(
            "https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
        ))));
        assert!(ok(Value::from(
            "https://127.0.0.1:4443/contoso.onmicrosoft.com/oauth2/token"
        )));
        assert!(ok(serde_json::json!([format!(
            "https://login.microsoftonline.com/{TENANT}/v2.0"
        )])));
        assert!(!ok(Value::from(
            "https://login.microsoftonline.com/common/oauth2/v2.0/token"
        )));
        assert!(!ok(Value::from(format!(
            "https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/authorize"
        ))));
        assert!(!audience_matches(None, e));
    }

    #[test]
    fn malformed_assertions_are_refused_before_any_key_lookup() {
        for text in ["", "a.b", "a.b.c.d", "eyJ.eyJ.x", "bm90IGpzb24.e30.AA"] {
            assert_eq!(
                parse(text).unwrap_err(),
                AssertionError::Malformed,
                "{text}"
            );
        }
    }

    #[test]
    fn the_window_allows_five_minutes_of_skew_either_side() {
        let jwt = |nbf: i64, exp: i64| Jwt {
            alg: None,
            x5t: None,
            x5t_s256: None,
            claims: serde_json::json!({"nbf": nbf, "exp": exp})
                .as_object()
                .cloned()
                .unwrap(),
            signing_input: String::new(),
            signature: vec![],
        };
        let now: DateTime<Utc> = "2025-01-01T00:10:00Z".parse().unwrap();
        let t = now.timestamp();
        assert!(check_window(&jwt(t + 299, t + 600), now).is_ok());
        assert!(check_window(&jwt(t - 600, t - 299), now).is_ok());
        assert!(check_window(&jwt(t + 301, t + 600), now).is_err());
        assert!(check_window(&jwt(t - 900, t - 300), now).is_err());
    }

    #[test]
    fn fractional_numeric_dates_are_read_as_msal_for_python_writes_them() {
        let now: DateTime<Utc> = "2025-01-01T00:10:00Z".parse().unwrap();
        let t = now.timestamp() as f64;
        let jwt = |claims: serde_json::Value| Jwt {
            alg: None,
            x5t: None,
            x5t_s256: None,
            claims: claims.as_object().cloned().unwrap(),
            signing_input: String::new(),
            signature: vec![],
        };
        let fresh = serde_json::json!({"iat": t + 0.25, "exp": t + 600.25});
        assert!(check_window(&jwt(fresh), now).is_ok());
        let stale = serde_json::json!({"iat": t - 900.5, "exp": t - 300.5});
        assert!(check_window(&jwt(stale), now).is_err());
    }
}
