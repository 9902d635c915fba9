//! Trust anchors compiled into the binary.
//!
//! Both HTTP clients would otherwise read and parse the system's ~150 PEM root
//! certificates while the function starts: several milliseconds of every cold
//! start. Compiled-in anchors cost nothing to load.

use std::sync::Arc;

use aws_smithy_http_client::tls::TrustStore;
use base64::Engine;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// For user-supplied Bitbucket servers: any public CA (Mozilla's set, via
/// webpki-roots), plus the operator's private CAs (PEM).
pub fn bitbucket_client_config(extra_roots_pem: &[Vec<u8>]) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    for pem in extra_roots_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("invalid extra root certificate: {e}"))?;
            roots.add(cert).map_err(|e| format!("invalid extra root certificate: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// For AWS endpoints (DynamoDB, KMS): Amazon Trust Services' roots, which every
/// AWS service certificate chains to.
pub fn aws_trust_store() -> TrustStore {
    amazon_roots()
        .iter()
        .fold(TrustStore::empty().with_native_roots(false), |store, der| store.with_pem_certificate(to_pem(der)))
}

fn amazon_roots() -> Vec<&'static CertificateDer<'static>> {
    // A SIMD substring search: this runs on every cold start.
    let subjects = [
        memchr::memmem::Finder::new(b"Amazon Root CA"),
        memchr::memmem::Finder::new(b"Starfield Services Root Certificate Authority"),
    ];
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .filter(|der| subjects.iter().any(|subject| subject.find(der).is_some()))
        .collect()
}

fn to_pem(der: &[u8]) -> Vec<u8> {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amazon_roots_are_all_there() {
        // Amazon Root CA 1-4 and Starfield Services Root G2.
        assert_eq!(amazon_roots().len(), 5);
        for der in amazon_roots() {
            let pem = to_pem(der);
            let parsed = CertificateDer::from_pem_slice(&pem).unwrap();
            assert_eq!(parsed.as_ref(), der.as_ref());
        }
    }

    #[test]
    fn bitbucket_trust_includes_public_cas_and_rejects_bad_extras() {
        assert!(bitbucket_client_config(&[]).is_ok());
        let bad = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec();
        assert!(bitbucket_client_config(&[bad]).is_err());
    }
}
