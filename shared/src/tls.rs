//! Trust anchors compiled into the binary.
//!
//! Both HTTP clients (Bitbucket's reqwest, AWS's hyper-util under it) would otherwise
//! read and parse the system's ~150 PEM root certificates while the function starts: several milliseconds of every cold
//! start. Compiled-in anchors cost nothing to load.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// For user-supplied Bitbucket servers: any public CA (Mozilla's set, via
/// webpki-roots), plus the operator's private CAs (PEM).
pub fn bitbucket_client_config(extra_roots_pem: &[Vec<u8>]) -> Result<rustls::ClientConfig, String> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    client_config(roots, extra_roots_pem)
}

/// For AWS endpoints: Amazon's roots, plus the PEM bundle `AWS_CA_BUNDLE` names
/// (a TLS-inspecting proxy's CA, or a test's).
pub fn aws_client_config(extra_roots_pem: &[Vec<u8>]) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    add_pem(&mut roots, AMAZON_ROOTS_PEM)?;
    client_config(roots, extra_roots_pem)
}

/// Whether `pem` holds trust anchors `aws_client_config` would accept.
pub fn check_roots(pem: &[u8]) -> Result<(), String> {
    add_pem(&mut rustls::RootCertStore::empty(), pem)
}

fn add_pem(roots: &mut rustls::RootCertStore, pem: &[u8]) -> Result<(), String> {
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("invalid extra root certificate: {e}"))?;
        roots.add(cert).map_err(|e| format!("invalid extra root certificate: {e}"))?;
    }
    Ok(())
}

fn client_config(
    mut roots: rustls::RootCertStore,
    extra_roots_pem: &[Vec<u8>],
) -> Result<rustls::ClientConfig, String> {
    for pem in extra_roots_pem {
        add_pem(&mut roots, pem)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Amazon Trust Services' roots (Amazon Root CA 1-4, Starfield Services Root
/// G2), which every AWS service certificate chains to. Kept as five PEM blocks
/// so that start-up parses five certificates, not Mozilla's whole set; a test
/// checks them against webpki-root-certs.
const AMAZON_ROOTS_PEM: &[u8] = include_bytes!("amazon-roots.pem");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_amazon_roots_are_mozillas_amazon_roots() {
        let mut ours: Vec<CertificateDer> =
            CertificateDer::pem_slice_iter(AMAZON_ROOTS_PEM).map(Result::unwrap).collect();
        let subjects = ["Amazon Root CA", "Starfield Services Root Certificate Authority"];
        let mut mozilla: Vec<CertificateDer> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .filter(|der| subjects.iter().any(|s| der.windows(s.len()).any(|w| w == s.as_bytes())))
            .cloned()
            .collect();
        ours.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        mozilla.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        assert_eq!(ours.len(), 5);
        assert!(ours == mozilla, "amazon-roots.pem differs from webpki-root-certs' Amazon roots");
    }

    #[test]
    fn aws_trust_is_amazons_roots_plus_a_bundle_that_parses() {
        assert_eq!(aws_client_config(&[]).map(|_| ()), Ok(()));
        assert_eq!(aws_client_config(&[AMAZON_ROOTS_PEM.to_vec()]).map(|_| ()), Ok(()));
        let bad = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec();
        assert!(aws_client_config(&[bad]).is_err(), "a bundle that does not parse is an error, not ignored");
    }

    #[test]
    fn bitbucket_trust_includes_public_cas_and_rejects_bad_extras() {
        assert!(bitbucket_client_config(&[]).is_ok());
        let bad = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec();
        assert!(bitbucket_client_config(&[bad]).is_err());
    }
}
