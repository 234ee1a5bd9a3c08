//! Errors of remote execution, with the host (and path) they concern.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong talking to a host or moving a file.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The TCP connection or SSH handshake failed.
    #[error("cannot connect to `{host}`: {detail}")]
    Connect {
        /// The host.
        host: String,
        /// The cause.
        detail: String,
    },
    /// Connecting took longer than the connect timeout.
    #[error("cannot connect to `{host}`: no answer within {}", humantime::format_duration(*.after))]
    ConnectTimeout {
        /// The host.
        host: String,
        /// The timeout.
        after: Duration,
    },
    /// The host's key is not in known_hosts and the policy is `strict`.
    #[error("host key of `{host}` is not in `{}`: the server offers {offer}; check it and add it (`ssh-keyscan -p {} {} >> {}`), or set `host_key_policy: accept-new`", .known_hosts.display(), .offer.port, .offer.address, .known_hosts.display())]
    HostKeyUnknown {
        /// The host.
        host: String,
        /// The known_hosts file.
        known_hosts: PathBuf,
        /// The key the server offered.
        offer: Box<HostKeyOffer>,
    },
    /// The host's key differs from the one recorded: refused whatever the policy.
    #[error("host key of `{host}` CHANGED: the server offers {offer}, but `{}` line {line} records another: refusing to connect; if the change is expected, remove that line", .known_hosts.display())]
    HostKeyChanged {
        /// The host.
        host: String,
        /// The known_hosts file.
        known_hosts: PathBuf,
        /// The line of the recorded key.
        line: usize,
        /// The key the server offered.
        offer: Box<HostKeyOffer>,
    },
    /// known_hosts could not be read or written.
    #[error("known_hosts `{}` for `{host}`: {detail}", .path.display())]
    KnownHosts {
        /// The host.
        host: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        detail: String,
    },
    /// The private key could not be loaded.
    #[error("cannot load the key `{}`: {detail}", .path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// The cause.
        detail: String,
    },
    /// The server refused every offered key.
    #[error("authentication as `{user}` on `{host}` failed: {detail}")]
    Auth {
        /// The host.
        host: String,
        /// The user.
        user: String,
        /// What was tried.
        detail: String,
    },
    /// A command ran longer than its timeout.
    #[error("command on `{host}` timed out after {}", humantime::format_duration(*.after))]
    Timeout {
        /// The host.
        host: String,
        /// The timeout.
        after: Duration,
    },
    /// The SSH session failed after connecting.
    #[error("ssh session with `{host}` failed: {detail}")]
    Session {
        /// The host.
        host: String,
        /// The cause.
        detail: String,
    },
    /// A file transfer failed.
    #[error("file transfer on `{host}` for `{path}` failed: {detail}")]
    Transfer {
        /// The host.
        host: String,
        /// The remote (or local) path.
        path: String,
        /// The cause.
        detail: String,
    },
    /// A local file could not be read or written.
    #[error("`{}`: {source}", .path.display())]
    LocalIo {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A process could not be started on the scaler host.
    #[error("cannot start `sh` on the scaler host: {0}")]
    Spawn(#[source] std::io::Error),
    /// A request is invalid (an environment variable name, say).
    #[error("{0}")]
    Invalid(String),
}

impl ExecError {
    /// The host could not be reached at all (connection, host key,
    /// authentication): the host's result is `unreachable`.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ExecError::Connect { .. }
                | ExecError::ConnectTimeout { .. }
                | ExecError::HostKeyUnknown { .. }
                | ExecError::HostKeyChanged { .. }
                | ExecError::KnownHosts { .. }
                | ExecError::Key { .. }
                | ExecError::Auth { .. }
        )
    }

    /// Trying again may help (network trouble, a timeout); a refused host
    /// key or key file problem will not go away by itself.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ExecError::Connect { .. } | ExecError::ConnectTimeout { .. } | ExecError::Timeout { .. } | ExecError::Session { .. }
        )
    }
}

/// A host key a server offered, as OpenSSH describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyOffer {
    /// The address connected to.
    pub address: String,
    /// The port connected to.
    pub port: u16,
    /// The key's type (`ssh-ed25519`).
    pub key_type: String,
    /// Its fingerprint (`SHA256:...`).
    pub fingerprint: String,
}

impl HostKeyOffer {
    /// The name known_hosts lists the host by: `[address]:port`, or the
    /// address alone on port 22.
    pub fn known_as(&self) -> String {
        known_hosts_name(&self.address, self.port)
    }
}

/// How known_hosts names a host: `[address]:port`, or the address on port 22.
pub fn known_hosts_name(address: &str, port: u16) -> String {
    if port == 22 {
        address.to_string()
    } else {
        format!("[{address}]:{port}")
    }
}

impl std::fmt::Display for HostKeyOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} key {} for `{}`", self.key_type, self.fingerprint, self.known_as())
    }
}
