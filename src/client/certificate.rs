//! A client certificate for `private_key_jwt`: read from PEM files on every use (so a rotated
//! certificate needs no redeploy) and turned into client assertions signed with its key.
//!
//! The assertion is what Entra's certificate-credentials page describes: header `alg`, `typ`
//! and `x5t#S256` (or the older `x5t`), claims `aud` (the token URL), `iss` = `sub` = the
//! client id, `jti`, `nbf`, `iat` and `exp` ten minutes later. It is signed RS256
//! (RSASSA-PKCS1-v1_5), which Entra accepts as it accepts PS256: PKCS#1 v1.5 signatures are the
//! same bytes for the same input, where PSS draws a random salt that no seed can reach through
//! `ring`, and a seeded run must send the same bytes every time. The private key never shows
//! in `Debug` or errors.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::json;

/// `client_assertion_type` for a JWT client assertion (RFC 7523).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Which thumbprint header names the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThumbprintHeader {
    /// `x5t#S256`: base64url SHA-256 (the 2025 documentation).
    #[default]
    Sha256,
    /// `x5t`: base64url SHA-1 (older MSALs).
    Sha1,
}

/// Where the certificate and its key live.
#[derive(Clone, PartialEq, Eq)]
pub enum CertificateSource {
    /// A certificate file and a private key file (PEM; the key PKCS#8), read on every use.
    Files {
        /// The certificate (`MAILDRILL_CLIENT_CERT`).
        cert: PathBuf,
        /// The private key (`MAILDRILL_CLIENT_KEY`).
        key: PathBuf,
    },
    /// Both as PEM text, fixed.
    Pem {
        /// The certificate.
        cert: String,
        /// The private key (PKCS#8).
        key: String,
    },
}

impl fmt::Debug for CertificateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertificateSource::Files { cert, key } => f
                .debug_struct("Files")
                .field("cert", cert)
                .field("key", key)
                .finish(),
            CertificateSource::Pem { .. } => f.write_str("Pem([redacted])"),
        }
    }
}

/// The certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// A file could not be read.
    #[error("failed to read the client certificate from {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The certificate file holds no PEM certificate.
    #[error("failed to read the client certificate: no PEM CERTIFICATE block")]
    NoCertificate,
    /// The key file holds no RSA private key ring can use (PKCS#8 PEM).
    #[error("failed to read the client certificate's private key: {0}")]
    Key(String),
    /// The key and the certificate do not belong together (a rotation read half-way).
    #[error("the client certificate and its private key do not match")]
    Mismatch,
}

impl CertificateSource {
    /// The certificate and its key as they are now.
    pub fn current(&self) -> Result<ClientCertificate, CertificateError> {
        let (cert, key) = match self {
            CertificateSource::Files { cert, key } => (read(cert)?, read(key)?),
            CertificateSource::Pem { cert, key } => (cert.clone(), key.clone()),
        };
        ClientCertificate::from_pem(&cert, &key)
    }
}

fn read(path: &PathBuf) -> Result<String, CertificateError> {
    std::fs::read_to_string(path).map_err(|e| CertificateError::File {
        path: path.clone(),
        reason: e.to_string(),
    })
}

/// The body of the first PEM block labelled `label`.
fn pem_block(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = text[start..].find(&end)? + start;
    let body: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

/// A certificate with its key, ready to sign assertions.
#[derive(Clone)]
pub struct ClientCertificate {
    der: Vec<u8>,
    key: Arc<RsaKeyPair>,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("sha1", &self.sha1_hex())
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// A certificate and its PKCS#8 RSA key, both PEM.
    pub fn from_pem(cert: &str, key: &str) -> Result<ClientCertificate, CertificateError> {
        let der = pem_block(cert, "CERTIFICATE").ok_or(CertificateError::NoCertificate)?;
        let key_der = pem_block(key, "PRIVATE KEY")
            .ok_or_else(|| CertificateError::Key("no PEM PRIVATE KEY block".into()))?;
        let key =
            RsaKeyPair::from_pkcs8(&key_der).map_err(|e| CertificateError::Key(e.to_string()))?;
        // The key's modulus must appear in the certificate's public key.
        let public = ring::signature::KeyPair::public_key(&key).as_ref().to_vec();
        if memchr::memmem::find(&der, &public).is_none() {
            return Err(CertificateError::Mismatch);
        }
        Ok(ClientCertificate {
            der,
            key: Arc::new(key),
        })
    }

    /// The SHA-1 thumbprint, uppercase hex (what the portal and MSAL show).
    pub fn sha1_hex(&self) -> String {
        hex(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &self.der).as_ref())
    }

    /// The SHA-256 thumbprint, uppercase hex: the certificate's identity for the token
    /// provider (a new certificate ends a refused credential's hold, as a new secret does).
    pub fn sha256_hex(&self) -> String {
        hex(ring::digest::digest(&ring::digest::SHA256, &self.der).as_ref())
    }

    /// A client assertion for `client_id` at the token endpoint `audience`, valid from `now`
    /// for `lifetime`, with the given `jti`.
    pub fn assertion(&self, claims: &AssertionClaims<'_>) -> Result<String, CertificateError> {
        let (name, digest) = match claims.header {
            ThumbprintHeader::Sha256 => (
                "x5t#S256",
                ring::digest::digest(&ring::digest::SHA256, &self.der),
            ),
            ThumbprintHeader::Sha1 => (
                "x5t",
                ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &self.der),
            ),
        };
        let mut header = serde_json::Map::new();
        header.insert("alg".into(), json!("RS256"));
        header.insert("typ".into(), json!("JWT"));
        header.insert(name.into(), json!(URL_SAFE_NO_PAD.encode(digest)));
        let now = claims.now.timestamp();
        let body = json!({
            "aud": claims.audience,
            "exp": now + claims.lifetime.as_secs() as i64,
            "iss": claims.client_id,
            "jti": claims.jti,
            "nbf": now,
            "iat": now,
            "sub": claims.client_id,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("JSON serialises")),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&body).expect("JSON serialises"))
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        // PKCS#1 v1.5 padding draws nothing from this generator (ring's encoder ignores it):
        // the signature is a function of the key and the input alone.
        let unused = ring::rand::SystemRandom::new();
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &unused,
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|e| CertificateError::Key(e.to_string()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// What one assertion says.
#[derive(Debug, Clone, Copy)]
pub struct AssertionClaims<'a> {
    /// `iss` and `sub`.
    pub client_id: &'a str,
    /// `aud`: the token URL.
    pub audience: &'a str,
    /// `jti`, unique per assertion.
    pub jti: &'a str,
    /// `nbf` and `iat`.
    pub now: DateTime<Utc>,
    /// `exp` - `nbf`.
    pub lifetime: Duration,
    /// Which thumbprint header to send.
    pub header: ThumbprintHeader,
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    crate::seed::push_hex(&mut out, bytes);
    out.make_ascii_uppercase();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../fixtures/keys/test-rsa-1.pem");
    const OTHER_KEY: &str = include_str!("../../fixtures/keys/test-rsa-2.pem");

    /// A self-signed certificate for `key`, made with rcgen as any tool would.
    fn certificate(key: &str) -> String {
        let key = rcgen::KeyPair::from_pem_and_sign_algo(key, &rcgen::PKCS_RSA_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["client".to_string()]).unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn an_assertion_is_a_signed_jwt_naming_the_certificate() {
        let cert = ClientCertificate::from_pem(&certificate(KEY), KEY).unwrap();
        let claims = AssertionClaims {
            client_id: "app",
            audience: "https://login.example/t/oauth2/v2.0/token",
            jti: "00000000-0000-4000-8000-000000000000",
            now: "2025-02-14T00:00:00Z".parse().unwrap(),
            lifetime: Duration::from_secs(600),
            header: ThumbprintHeader::Sha256,
        };
        let jwt = cert.assertion(&claims).unwrap();
        assert_eq!(
            jwt,
            cert.assertion(&claims).unwrap(),
            "the same bytes each time"
        );
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        let named = URL_SAFE_NO_PAD
            .decode(header["x5t#S256"].as_str().unwrap())
            .unwrap();
        assert_eq!(hex(&named), cert.sha256_hex());
        let body: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            body["exp"].as_i64().unwrap() - body["nbf"].as_i64().unwrap(),
            600
        );
        assert_eq!(body["iss"], "app");
        assert!(!format!("{cert:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let mismatch = ClientCertificate::from_pem(&certificate(KEY), OTHER_KEY);
        assert_eq!(mismatch.unwrap_err(), CertificateError::Mismatch);
        assert_eq!(
            ClientCertificate::from_pem("nothing", KEY).unwrap_err(),
            CertificateError::NoCertificate
        );
    }
}
