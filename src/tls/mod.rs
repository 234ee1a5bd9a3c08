//! TLS client settings for every outgoing HTTPS request (trigger actions,
//! collectors): rustls with the `ring` provider, passed explicitly to each
//! config (nothing relies on a process-wide provider), and the system's CA
//! certificates. Certificate verification is always on.
//!
//! reqwest is built with `rustls-no-provider`: a `reqwest::Client` built
//! without [`client_config`] (via `tls_backend_preconfigured`) panics unless
//! a process-wide provider is installed, so every client here takes one.
//!
//! Must not depend on: any other scaler module.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

/// The system's CA certificates (`/etc/ssl/certs` on Debian, or
/// `SSL_CERT_FILE` / `SSL_CERT_DIR`). Unreadable entries are logged and
/// skipped; an empty store still verifies (and rejects) every server.
pub fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "reading the system CA certificates");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::debug!(added, ignored, "system CA certificates that could not be used");
    }
    if added == 0 {
        tracing::warn!("no system CA certificates found: https to public endpoints will fail (install `ca-certificates`)");
    }
    roots
}

/// A client config on the `ring` provider that trusts `roots`.
pub fn client_config(roots: impl Into<Arc<RootCertStore>>) -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A client config that trusts the system's CA certificates.
pub fn system_client_config() -> Result<ClientConfig, rustls::Error> {
    client_config(system_roots())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_builds_without_a_process_wide_provider() {
        // No `install_default` anywhere: the provider is passed explicitly.
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
        let config = client_config(RootCertStore::empty()).unwrap();
        assert!(config.crypto_provider().cipher_suites.iter().any(|s| s.version() == &rustls::version::TLS13));
    }
}
