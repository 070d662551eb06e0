//! Access tokens: JWT-shaped, signed by the directory, bound to tenant, app, audience, roles and
//! expiry.
//!
//! Mail clients treat access tokens as opaque, so the signature is an HMAC under a key derived
//! from the seed (`alg` says so honestly); what matters is that the SMTP and Graph mocks accept
//! exactly the tokens the token endpoint issued, until their own `exp`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Resource;

/// The claims the directory puts in an access token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenClaims {
    /// Audience: the resource URI.
    pub aud: String,
    /// Issuer: `https://sts.windows.net/{tid}/`.
    pub iss: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Not before, Unix seconds.
    pub nbf: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// The client's app id.
    pub appid: String,
    /// `app`: an application token.
    pub idtyp: String,
    /// The service principal's object id.
    pub oid: String,
    /// Application roles granted on the audience (none in a delegated token).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Subject: the service principal.
    pub sub: String,
    /// Tenant id.
    pub tid: String,
    /// Unique token id.
    pub uti: String,
    /// Token version.
    pub ver: String,
    /// Delegated permissions, space-separated (a delegated token only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    /// The signed-in user's principal name (a delegated token only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
}

impl TokenClaims {
    /// The resource this token is for, if it is one of ours.
    pub fn resource(&self) -> Option<Resource> {
        Resource::from_audience(&self.aud)
    }

    /// Whether a user signed in for this token (a delegated token), rather than an app.
    pub fn is_delegated(&self) -> bool {
        self.idtyp == "user"
    }

    /// Whether the token grants `permission`: a delegated permission in `scp` or an
    /// application role.
    pub fn grants(&self, permission: &str) -> bool {
        match &self.scp {
            Some(scp) => scp.split(' ').any(|s| s == permission),
            None => self.roles.iter().any(|r| r == permission),
        }
    }

    /// The expiry as a calendar instant.
    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.exp, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// An issued access token. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The bearer string.
    pub value: String,
    /// What it grants (shared: the directory hands the same claims to every check).
    pub claims: std::sync::Arc<TokenClaims>,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"[redacted]")
            .field("claims", &self.claims)
            .finish()
    }
}

/// Why a resource refuses a bearer token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was presented.
    #[error("no access token")]
    Missing,
    /// Not three base64url parts with JSON inside.
    #[error("access token is not well formed")]
    Malformed,
    /// Not signed by this directory.
    #[error("access token signature is invalid")]
    BadSignature,
    /// Past its `exp` (or before its `nbf`).
    #[error("access token expired at {0}")]
    Expired(DateTime<Utc>),
    /// Issued for another resource.
    #[error("access token audience is {0}")]
    WrongAudience(String),
    /// The app lacks the role the operation needs.
    #[error("access token lacks role {0}")]
    MissingRole(String),
}

const HEADER: &str = r#"{"typ":"JWT","alg":"HS256","kid":"maildrill"}"#;

pub(crate) fn sign(claims: TokenClaims, key: &[u8; 32]) -> AccessToken {
    let payload = serde_json::to_vec(&claims).expect("claims always serialise");
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = mac(key, signing_input.as_bytes());
    AccessToken {
        value: format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)),
        claims: claims.into(),
    }
}

/// Checks the signature and decodes the claims; expiry and audience are the caller's business.
pub(crate) fn verify(value: &str, key: &[u8; 32]) -> Result<TokenClaims, TokenError> {
    let mut parts = value.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    let signing_input = &value[..header.len() + 1 + payload.len()];
    let mut mac_check = Hmac::<Sha256>::new_from_slice(key).expect("any key length works");
    mac_check.update(signing_input.as_bytes());
    mac_check
        .verify_slice(&signature)
        .map_err(|_| TokenError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)
}

fn mac(key: &[u8; 32], input: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length works");
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> TokenClaims {
        TokenClaims {
            aud: "https://outlook.office365.com".into(),
            iss: "https://sts.windows.net/t/".into(),
            iat: 0,
            nbf: 0,
            exp: 3599,
            appid: "a".into(),
            idtyp: "app".into(),
            oid: "o".into(),
            roles: vec!["SMTP.SendAsApp".into()],
            sub: "o".into(),
            tid: "t".into(),
            uti: "u".into(),
            ver: "1.0".into(),
            scp: None,
            upn: None,
        }
    }

    #[test]
    fn signed_token_verifies_and_tampered_one_does_not() {
        let key = [7u8; 32];
        let token = sign(claims(), &key);
        assert_eq!(verify(&token.value, &key).unwrap(), claims());
        assert_eq!(
            verify(&token.value, &[8u8; 32]),
            Err(TokenError::BadSignature)
        );
        let mut tampered = token.value.clone();
        tampered.insert(40, 'x');
        assert!(verify(&tampered, &key).is_err());
        assert_eq!(verify("abc", &key), Err(TokenError::Malformed));
        assert!(!format!("{token:?}").contains(&token.value));
    }
}
