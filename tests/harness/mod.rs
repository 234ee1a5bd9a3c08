//! Test harness shared by every integration test module: the built `scaler`
//! binary with an isolated environment ([`cli`]), git repositories with
//! isolated config and `git daemon` ([`git`]), a real `sshd` on loopback with temp keys
//! ([`sshd`]), `moto_server` for AWS APIs ([`moto`]), a schema per test on
//! PostgreSQL ([`pg`]), free ports and polling with deadlines ([`wait`]).
//!
//! A missing server binary fails the test with an install hint; nothing is
//! silently skipped. Tests never sleep to synchronise: they poll an
//! observable condition with [`wait_until`].

#![allow(dead_code, unused_imports)]
// Test code: a failed step panics with a message, like an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod cli;
pub mod git;
pub mod moto;
pub mod pg;
pub mod servers;
pub mod sshd;
pub mod wait;

pub use cli::{scaler, scaler_bin, scaler_with_stdin, stderr, stdout, Cli};
pub use git::{GitDaemon, GitHttp, GitRepo};
pub use servers::{HttpServer, HungServer, Server};
pub use sshd::Sshd;
pub use wait::{free_port, wait_until};

/// A reqwest client for talking to test servers. reqwest is built with
/// `rustls-no-provider`, so `reqwest::Client::new()` would panic: every
/// client takes scaler's TLS config (rustls on `ring`).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(scaler::tls::system_client_config().expect("tls config"))
        .build()
        .expect("http client")
}
