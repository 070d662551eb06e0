//! Key credentials (`keyCredentials`): certificates an app registration trusts for client
//! assertions, issued from the bundled test keys and stored as public key and thumbprints.
//!
//! The directory never keeps a private key; a [`CertificateSpec`] carries one only so the
//! harness can hand it to the client under test. Keys are not generated at run time (ring
//! cannot, and RSA generation is slow): `fixtures/keys/` holds four test-only keys, and a
//! certificate issued from one of them is the same bytes on every run.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_RSA_SHA256};
use ring::signature;

use super::app::CredentialState;

/// The bundled test keys (PKCS#8 PEM, RSA 2048), in the order scenarios use them.
pub const TEST_KEYS: [&str; 4] = [
    include_str!("../../fixtures/keys/test-rsa-1.pem"),
    include_str!("../../fixtures/keys/test-rsa-2.pem"),
    include_str!("../../fixtures/keys/test-rsa-3.pem"),
    include_str!("../../fixtures/keys/test-rsa-4.pem"),
];

/// A certificate could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// rcgen refused the key or the parameters.
    #[error("failed to issue a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    /// A validity date is out of the certificate's range.
    #[error("failed to issue a certificate: {0} is out of range")]
    Date(DateTime<Utc>),
}

/// The SHA-1 and SHA-256 thumbprints of a certificate's DER bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thumbprints {
    /// SHA-1: `x5t`, the portal's thumbprint and `customKeyIdentifier`.
    pub sha1: [u8; 20],
    /// SHA-256: `x5t#S256`.
    pub sha256: [u8; 32],
}

impl Thumbprints {
    /// The thumbprints of `der`.
    pub fn of(der: &[u8]) -> Thumbprints {
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
        let sha256 = ring::digest::digest(&ring::digest::SHA256, der);
        let mut out = Thumbprints {
            sha1: [0; 20],
            sha256: [0; 32],
        };
        out.sha1.copy_from_slice(sha1.as_ref());
        out.sha256.copy_from_slice(sha256.as_ref());
        out
    }

    /// The SHA-1 thumbprint as uppercase hex, as the portal and MSAL show it.
    pub fn sha1_hex(&self) -> String {
        upper_hex(&self.sha1)
    }

    /// The `x5t` header value: base64url of the SHA-1 thumbprint.
    pub fn x5t(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.sha1)
    }

    /// The `x5t#S256` header value: base64url of the SHA-256 thumbprint.
    pub fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.sha256)
    }
}

/// Uppercase hex of `bytes`.
pub fn upper_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    crate::seed::push_hex(&mut out, bytes);
    out.make_ascii_uppercase();
    out
}

/// A certificate as a scenario or a timeline step gives it: the public half for the tenant,
/// the private key for the client. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertificateSpec {
    /// The portal's description (`displayName`).
    pub display_name: String,
    /// `startDateTime`: the certificate's `notBefore`.
    pub start: DateTime<Utc>,
    /// `endDateTime`: the certificate's `notAfter`.
    pub end: DateTime<Utc>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    key_pem: String,
    /// The RSA public key (PKCS#1 `RSAPublicKey` DER), what a signature is checked against.
    public_key: Vec<u8>,
}

impl fmt::Debug for CertificateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateSpec")
            .field("display_name", &self.display_name)
            .field("start", &self.start)
            .field("end", &self.end)
            .field("thumbprint", &self.thumbprints().sha1_hex())
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

impl CertificateSpec {
    /// A self-signed certificate for the RSA key `key_pem` (PKCS#8), valid from `start` to
    /// `end`, named `CN={display_name}`. The same inputs give the same bytes.
    pub fn issue(
        key_pem: &str,
        display_name: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<CertificateSpec, CertificateError> {
        let key = KeyPair::from_pem_and_sign_algo(key_pem, &PKCS_RSA_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, display_name);
        params.distinguished_name = name;
        params.not_before = offset(start)?;
        params.not_after = offset(end)?;
        let cert = params.self_signed(&key)?;
        Ok(CertificateSpec {
            display_name: display_name.to_string(),
            start,
            end,
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key_pem.to_string(),
            public_key: key.public_key_raw().to_vec(),
        })
    }

    /// The private key, PEM (PKCS#8), for the one place that hands it to the client.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The certificate's thumbprints.
    pub fn thumbprints(&self) -> Thumbprints {
        Thumbprints::of(&self.cert_der)
    }
}

fn offset(at: DateTime<Utc>) -> Result<time::OffsetDateTime, CertificateError> {
    time::OffsetDateTime::from_unix_timestamp(at.timestamp())
        .map_err(|_| CertificateError::Date(at))
}

/// The signature algorithms Entra takes on a client assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (older MSALs).
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256 (the 2025 documentation).
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
}

impl AssertionAlg {
    /// The JOSE `alg` name's algorithm, if it is one of these.
    pub fn from_name(name: &str) -> Option<AssertionAlg> {
        Some(match name {
            "RS256" => AssertionAlg::Rs256,
            "RS384" => AssertionAlg::Rs384,
            "RS512" => AssertionAlg::Rs512,
            "PS256" => AssertionAlg::Ps256,
            "PS384" => AssertionAlg::Ps384,
            "PS512" => AssertionAlg::Ps512,
            _ => return None,
        })
    }

    fn verification(self) -> &'static signature::RsaParameters {
        match self {
            AssertionAlg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            AssertionAlg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            AssertionAlg::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            AssertionAlg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            AssertionAlg::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
            AssertionAlg::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
        }
    }
}

/// A certificate credential as the directory stores it: metadata, thumbprints and the public
/// key, never the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyCredential {
    /// `keyId`.
    pub key_id: String,
    /// `displayName`.
    pub display_name: String,
    /// `startDateTime`.
    pub start: DateTime<Utc>,
    /// `endDateTime`.
    pub end: DateTime<Utc>,
    /// When the credential was added; it works once the propagation delay has passed.
    pub added_at: DateTime<Utc>,
    /// The certificate's thumbprints (`customKeyIdentifier` is the SHA-1 one).
    pub thumbprints: Thumbprints,
    /// The certificate, DER (Graph's `key`).
    pub cert_der: Vec<u8>,
    public_key: Vec<u8>,
}

impl fmt::Debug for KeyCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCredential")
            .field("key_id", &self.key_id)
            .field("display_name", &self.display_name)
            .field("start", &self.start)
            .field("end", &self.end)
            .field("added_at", &self.added_at)
            .field("thumbprint", &self.thumbprints.sha1_hex())
            .finish_non_exhaustive()
    }
}

impl KeyCredential {
    pub(crate) fn new(
        spec: &CertificateSpec,
        key_id: String,
        added_at: DateTime<Utc>,
    ) -> KeyCredential {
        KeyCredential {
            key_id,
            display_name: spec.display_name.clone(),
            start: spec.start,
            end: spec.end,
            added_at,
            thumbprints: spec.thumbprints(),
            cert_der: spec.cert_der.clone(),
            public_key: spec.public_key.clone(),
        }
    }

    /// Whether `signature` over `message` was made with this certificate's key.
    pub fn verifies(&self, alg: AssertionAlg, message: &[u8], signature: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(alg.verification(), &self.public_key)
            .verify(message, signature)
            .is_ok()
    }

    /// Whether the credential has propagated and lies within its validity window at `now`.
    pub fn state_at(
        &self,
        now: DateTime<Utc>,
        propagation: std::time::Duration,
    ) -> CredentialState {
        if now >= self.end {
            CredentialState::Expired
        } else if now < self.start {
            CredentialState::NotYetValid
        } else if now < self.added_at + crate::time::to_chrono(propagation) {
            CredentialState::Propagating
        } else {
            CredentialState::Valid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_certificate_from_a_test_key_is_the_same_bytes_every_time() {
        let issue = || {
            CertificateSpec::issue(
                TEST_KEYS[0],
                "mailman",
                at("2024-02-14T00:00:00Z"),
                at("2025-02-14T11:30:00Z"),
            )
            .unwrap()
        };
        let (a, b) = (issue(), issue());
        assert_eq!(a.cert_der, b.cert_der);
        assert!(a.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(a.thumbprints().sha1_hex().len(), 40);
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_signature_by_the_key_verifies_and_another_does_not() {
        let spec = CertificateSpec::issue(
            TEST_KEYS[1],
            "mailman",
            at("2024-02-14T00:00:00Z"),
            at("2025-02-14T11:30:00Z"),
        )
        .unwrap();
        let credential = KeyCredential::new(&spec, "k".into(), spec.start);
        let der = pem_body(spec.key_pem());
        let key = signature::RsaKeyPair::from_pkcs8(&der).unwrap();
        let mut sig = vec![0; key.public().modulus_len()];
        let rng = ring::rand::SystemRandom::new();
        key.sign(&signature::RSA_PKCS1_SHA256, &rng, b"msg", &mut sig)
            .unwrap();
        assert!(credential.verifies(AssertionAlg::Rs256, b"msg", &sig));
        assert!(!credential.verifies(AssertionAlg::Rs256, b"other", &sig));
        assert!(!credential.verifies(AssertionAlg::Ps256, b"msg", &sig));
    }

    fn pem_body(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    }
}
