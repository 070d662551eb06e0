//! The key that signs ID tokens (RS256), and its public half as the mock publishes it at the
//! discovery document's `jwks_uri`; it does not sign access tokens (an HMAC does, `token.rs`).
//!
//! The key is `fixtures/keys/id-token-rsa.pem`, a test-only key no scenario certificate uses,
//! so a client that validates ID tokens against the published keys (OIDC middleware does; MSAL
//! does not) meets the same bytes on every run: PKCS#1 v1.5 signatures depend only on the key
//! and the input, and the published certificate is issued from the key with fixed dates.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

use super::certificate::CertificateSpec;

/// The ID-token signing key, PKCS#8 PEM (test-only: its private half is public).
const KEY_PEM: &str = include_str!("../../fixtures/keys/id-token-rsa.pem");

/// The common name of the published certificate, as Entra's signing certificates are named.
const CERTIFICATE_SUBJECT: &str = "accounts.accesscontrol.windows.net";

/// The ID-token signing key with what the JWKS publishes of it.
pub struct SigningKey {
    key: RsaKeyPair,
    /// `kid` (and `x5t`): base64url of the certificate's SHA-1 thumbprint, as Entra's v2 keys.
    pub kid: String,
    /// `n`: the modulus, base64url, big-endian without leading zeros.
    pub n: String,
    /// `e`: the public exponent, base64url.
    pub e: String,
    /// `x5c`: the self-signed certificate, standard base64 of its DER.
    pub x5c: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The one ID-token signing key, loaded on first use.
pub fn id_token_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let der = pem_body(KEY_PEM).expect("fixtures/keys/id-token-rsa.pem is one PEM block");
        let key = RsaKeyPair::from_pkcs8(&der).expect("the fixture key is RSA PKCS#8");
        let components = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(key.public());
        // Fixed dates: the certificate, its thumbprint and so the `kid` are the same every run.
        let start = fixed("2025-01-01T00:00:00Z");
        let end = fixed("2035-01-01T00:00:00Z");
        let certificate = CertificateSpec::issue(KEY_PEM, CERTIFICATE_SUBJECT, start, end)
            .expect("the fixture key issues a certificate");
        SigningKey {
            kid: certificate.thumbprints().x5t(),
            n: URL_SAFE_NO_PAD.encode(&components.n),
            e: URL_SAFE_NO_PAD.encode(&components.e),
            x5c: STANDARD.encode(&certificate.cert_der),
            key,
        }
    })
}

impl SigningKey {
    /// A JWT of `claims` signed RS256, its header naming this key (`kid`) as Entra's v2 ID
    /// tokens do.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("JSON serialises")),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("JSON serialises")),
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
            .expect("a 2048-bit key signs any input");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

fn fixed(at: &str) -> DateTime<Utc> {
    at.parse().expect("a literal RFC 3339 instant")
}

/// The body of a single-block PEM file, decoded.
fn pem_body(text: &str) -> Option<Vec<u8>> {
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_tokens_verify_against_the_published_modulus_and_exponent_only() {
        let key = id_token_key();
        let token = key.sign(&serde_json::json!({"tid": "t"}));
        let (input, signature) = token.rsplit_once('.').unwrap();
        let public = ring::signature::RsaPublicKeyComponents {
            n: URL_SAFE_NO_PAD.decode(&key.n).unwrap(),
            e: URL_SAFE_NO_PAD.decode(&key.e).unwrap(),
        };
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        let params = &ring::signature::RSA_PKCS1_2048_8192_SHA256;
        assert!(public.verify(params, input.as_bytes(), &signature).is_ok());
        assert!(public.verify(params, b"other", &signature).is_err());
        assert_eq!(
            token,
            key.sign(&serde_json::json!({"tid": "t"})),
            "same bytes"
        );
        assert_eq!(key.e, "AQAB");
        assert!(!format!("{key:?}").contains(&key.n));
    }
}
