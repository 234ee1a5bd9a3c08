//! TLS for webhook and SNS requests: the client configs of [`crate::tls`]
//! (rustls on `ring`, the system's CA certificates) plus the CAs of an
//! action's `ca_file`, and certificate failures as action errors.
//!
//! Certificate verification is always on. A certificate that does not
//! verify is a permanent error that names the host and, when its issuer is
//! unknown, says to set `ca_file`.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, ClientConfig, RootCertStore};

use super::ActionError;

/// The trust anchors every client starts from: the system's CA certificates.
#[derive(Debug, Clone)]
pub(super) struct Roots {
    system: RootCertStore,
}

impl Roots {
    /// The system's CA certificates (see [`crate::tls::system_roots`]).
    pub(super) fn system() -> Roots {
        Roots { system: crate::tls::system_roots() }
    }

    /// How many system CA certificates are trusted.
    pub(super) fn len(&self) -> usize {
        self.system.len()
    }

    /// A client config trusting the system CAs.
    pub(super) fn config(&self) -> Result<ClientConfig, ActionError> {
        client_config(self.system.clone())
    }

    /// A client config trusting the system CAs and the certificates of
    /// `pem` (the content of `ca_file`, named in errors).
    pub(super) fn config_with(&self, ca_file: &str, pem: &[u8]) -> Result<ClientConfig, ActionError> {
        let mut roots = self.system.clone();
        for cert in parse_pem(ca_file, pem)? {
            roots
                .add(cert)
                .map_err(|e| ActionError::permanent(format!("`ca_file` `{ca_file}`: a certificate cannot be used as a CA: {e}")))?;
        }
        client_config(roots)
    }
}

fn client_config(roots: RootCertStore) -> Result<ClientConfig, ActionError> {
    crate::tls::client_config(roots).map_err(|e| ActionError::permanent(format!("tls: {e}")))
}

/// The certificates of a PEM text; none, or a broken block, is an error.
fn parse_pem(ca_file: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ActionError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ActionError::permanent(format!("`ca_file` `{ca_file}`: not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(ActionError::permanent(format!(
            "`ca_file` `{ca_file}` has no certificate (expected `-----BEGIN CERTIFICATE-----` blocks)"
        )));
    }
    Ok(certs)
}

/// Reads a `ca_file` (a repository file); a missing file, or one outside
/// the repository, is permanent.
pub(super) async fn read_ca_file(root: &Path, ca_file: &str) -> Result<Vec<u8>, ActionError> {
    let (root, rel) = (root.to_path_buf(), ca_file.to_string());
    match tokio::task::spawn_blocking(move || crate::config::repo::read(&root, &rel)).await {
        Ok(read) => read.map_err(|e| ActionError::permanent(format!("`ca_file` `{ca_file}`: {}", e.reason()))),
        Err(e) => Err(ActionError::transient(format!("`ca_file` `{ca_file}`: reading failed: {e}"))),
    }
}

/// The certificate problem behind a failed request, if that was the cause.
fn certificate_error(e: &(dyn std::error::Error + 'static)) -> Option<CertificateError> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(rustls::Error::InvalidCertificate(c)) = err.downcast_ref::<rustls::Error>() {
            return Some(c.clone());
        }
        // `io::Error::source` skips the error it wraps, so step into it.
        current = match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// A permanent error when a request failed on the server's certificate.
pub(super) fn certificate_failure(what: &str, e: &reqwest::Error, system_roots: usize) -> Option<ActionError> {
    let cert = certificate_error(e)?;
    let host = e.url().and_then(|u| u.host_str()).unwrap_or("the server");
    Some(ActionError::permanent(certificate_message(what, host, &cert, system_roots)))
}

fn certificate_message(what: &str, host: &str, cert: &CertificateError, system_roots: usize) -> String {
    let detail = rustls::Error::InvalidCertificate(cert.clone());
    match cert {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            let empty = if system_roots == 0 { " (no system CA certificates were found: install `ca-certificates`)" } else { "" };
            format!("{what}: certificate for {host} is not trusted: {detail}; set `ca_file` to trust a private CA{empty}")
        }
        _ => format!("{what}: certificate for {host} is not valid: {detail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_PEM: &[u8] = b"hello\n";

    #[test]
    fn a_ca_file_needs_at_least_one_certificate() {
        let e = parse_pem("ca.pem", NOT_PEM).unwrap_err();
        assert_eq!(e.message, "`ca_file` `ca.pem` has no certificate (expected `-----BEGIN CERTIFICATE-----` blocks)");
        assert!(!e.retryable);
        let broken = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let e = parse_pem("ca.pem", broken).unwrap_err();
        assert!(e.message.starts_with("`ca_file` `ca.pem`: not a PEM certificate file: "), "{}", e.message);
    }

    #[test]
    fn certificate_errors_are_found_through_io_errors() {
        let rustls_err = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls_err);
        assert_eq!(certificate_error(&io), Some(CertificateError::UnknownIssuer));
        // As hyper-rustls reports it: an io::Error inside an io::Error.
        let nested = std::io::Error::other(io);
        assert_eq!(certificate_error(&nested), Some(CertificateError::UnknownIssuer));
        let other = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(certificate_error(&other), None);
    }

    #[test]
    fn messages_say_what_to_do() {
        assert_eq!(
            certificate_message("webhook `https://h/x`", "h", &CertificateError::UnknownIssuer, 140),
            "webhook `https://h/x`: certificate for h is not trusted: invalid peer certificate: UnknownIssuer; set `ca_file` to trust a private CA"
        );
        assert!(certificate_message("w", "h", &CertificateError::UnknownIssuer, 0).ends_with("install `ca-certificates`)"));
        assert_eq!(
            certificate_message("w", "h", &CertificateError::Expired, 140),
            "w: certificate for h is not valid: invalid peer certificate: Expired"
        );
    }

    #[test]
    fn a_ca_file_adds_to_the_system_roots() {
        let roots = Roots { system: RootCertStore::empty() };
        assert!(roots.config().is_ok());
        assert_eq!(roots.len(), 0);
        let e = roots.config_with("ca.pem", NOT_PEM).unwrap_err();
        assert!(e.message.contains("has no certificate"), "{}", e.message);
    }
}
