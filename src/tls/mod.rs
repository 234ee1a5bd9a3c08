//! Every outgoing HTTP client (trigger actions, collectors) and its TLS:
//! one reqwest builder ([`http_client`]: timeouts, pool, no proxy, the
//! user agent), rustls with the `ring` provider, passed explicitly to each
//! config (nothing relies on a process-wide provider), and the system's CA
//! certificates. Certificate verification is always on. (`survey` keeps its
//! own hyper client: see docs/decisions.md.)
//!
//! reqwest is built with `rustls-no-provider`: a `reqwest::Client` built
//! without [`client_config`] (via `tls_backend_preconfigured`) panics unless
//! a process-wide provider is installed, so every client here takes one.
//!
//! Must not depend on: any other scaler module.

use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, RootCertStore};

/// How an HTTP client behaves; see [`http_client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpClientOptions {
    /// Longest wait for a connection (request timeouts are per request).
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept (`None`: reqwest's default).
    pub pool_idle_timeout: Option<Duration>,
    /// Whether redirects are followed (up to 10); actions never follow them.
    pub follow_redirects: bool,
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TLS settings were refused.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// reqwest refused the settings.
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The one way scaler builds a reqwest client: no proxy (targets are
/// reached directly), scaler's user agent, `opts`, and TLS from `tls`
/// (`None`: the system's CA certificates).
pub fn http_client(opts: &HttpClientOptions, tls: Option<ClientConfig>) -> Result<reqwest::Client, ClientError> {
    let tls = match tls {
        Some(t) => t,
        None => system_client_config()?,
    };
    let redirects = if opts.follow_redirects { reqwest::redirect::Policy::limited(10) } else { reqwest::redirect::Policy::none() };
    let mut builder = reqwest::Client::builder()
        .connect_timeout(opts.connect_timeout)
        .redirect(redirects)
        .user_agent(concat!("scaler/", env!("CARGO_PKG_VERSION")))
        .no_proxy()
        .tls_backend_preconfigured(tls);
    if let Some(idle) = opts.pool_idle_timeout {
        builder = builder.pool_idle_timeout(idle);
    }
    Ok(builder.build()?)
}

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

    #[test]
    fn a_client_builds_on_the_system_roots_without_a_process_wide_provider() {
        let opts = HttpClientOptions { connect_timeout: Duration::from_secs(1), pool_idle_timeout: None, follow_redirects: false };
        assert!(http_client(&opts, None).is_ok());
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    }
}
