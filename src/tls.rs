//! Certificates for the socket wiring: a CA and a loopback server certificate made with rcgen.
//!
//! Microsoft's client libraries refuse plain-HTTP authorities and lettre needs STARTTLS, so
//! `serve` speaks TLS with a CA generated at start-up and exported as PEM for clients to trust.
//! Keys come from the operating system's randomness: certificates never reach a journal or a
//! report, so they do not need to be seeded.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The names every server certificate carries (CONTRACTS section 2).
pub const SERVER_NAMES: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

/// The real services' names, also on the certificate: on the in-memory wiring a subject is
/// handed endpoints under these names (nothing resolves them; the bytes go through memory),
/// and its TLS checks them against this certificate as it would against Microsoft's.
pub const SERVICE_NAMES: [&str; 4] = [
    "login.microsoftonline.com",
    "graph.microsoft.com",
    "smtp.office365.com",
    "events.pagerduty.com",
];

/// A generated CA and a server certificate it signed.
pub struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivatePkcs8KeyDer<'static>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("ca_pem", &self.ca_pem)
            .finish_non_exhaustive()
    }
}

/// Certificate generation or TLS set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen refused the parameters.
    #[error("failed to generate a certificate")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate or key.
    #[error("failed to configure TLS")]
    Rustls(#[from] rustls::Error),
    /// A PEM file did not hold a certificate chain or a private key.
    #[error("failed to read PEM: {0}")]
    Pem(String),
}

impl Pki {
    /// Generates a CA ("maildrill test CA") and a server certificate for loopback names.
    pub fn generate() -> Result<Pki, TlsError> {
        Pki::generate_naming(&[])
    }

    /// [`Pki::generate`] with more names (IP literals or host names) on the server
    /// certificate: the address `serve --bind` listens on.
    pub fn generate_naming(extra: &[String]) -> Result<Pki, TlsError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params.distinguished_name = name("maildrill test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let names: Vec<String> = SERVER_NAMES
            .iter()
            .chain(&SERVICE_NAMES)
            .map(|s| s.to_string())
            .chain(extra.iter().cloned())
            .collect();
        let mut server_params = CertificateParams::new(names)?;
        server_params.distinguished_name = name("maildrill mock server");
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server = server_params.signed_by(&server_key, &ca)?;

        Ok(Pki {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            server_chain: vec![server.der().clone(), ca.der().clone()],
            server_key: PrivatePkcs8KeyDer::from(server_key.serialize_der()),
        })
    }

    /// The CA certificate as PEM, for `MAILDRILL_CA_CERT`.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate as DER, for Rust clients' root stores.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// A rustls server configuration (ring provider; HTTP/1.1 in ALPN when `alpn_http1`).
    pub fn server_config(&self, alpn_http1: bool) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                self.server_chain.clone(),
                PrivateKeyDer::Pkcs8(self.server_key.clone_key()),
            )?;
        if alpn_http1 {
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
        }
        Ok(Arc::new(config))
    }
}

/// A rustls server configuration from PEM certificate chain and key (e.g. the files a
/// benchmark hands over), for STARTTLS.
pub fn server_config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject as _;
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, "maildrill");
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pki_builds_a_server_config() {
        let pki = Pki::generate().unwrap();
        assert!(pki.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki.server_config(true).is_ok());
    }
}
