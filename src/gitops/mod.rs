//! Config sources: where the daemon's revisions come from. Each source
//! yields [`Revision`]s (an id, the config loaded from it or its
//! diagnostics, the time it was seen) through one seam, [`ConfigSource`].
//!
//! ```text
//! DirSource: notify + debouncer -> any event -> re-list the tree -> digest changed? -> Revision
//! GitSource: every `poll` -> git2 fetch `branch` into .scaler/source/<key>/repo.git
//!            -> new commit? -> check out into trees/<commit> -> load -> Revision
//!            a failed fetch -> SourceError (retryable), next try after a backoff
//!            a push webhook (`webhook`, `FetchHandle::wake`) -> fetch at once
//! ```
//!
//! A source only loads: deciding what runs (the newest valid revision) is
//! the daemon's job (`daemon::reload`).
//!
//! Must not depend on: the store, providers, the daemon, the CLI.

mod dir;
mod git;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Notify};

use crate::config::{Config, Diagnostics};

pub use dir::DirSource;
pub use git::{Credentials, GitSettings, GitSource, DEFAULT_BRANCH, DEFAULT_POLL};

/// What a git source says about its fetches (for `scaler status`, the
/// API, and to spot a webhook for a commit already fetched).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Fetches {
    /// The commit the branch pointed to at the last successful fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetched: Option<String>,
    /// When that fetch ended (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetched_ms: Option<i64>,
    /// When the next fetch starts unless a webhook wakes the source first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fetch_ms: Option<i64>,
    /// Fetches that failed since the daemon started.
    #[serde(default)]
    pub failed: u64,
    /// Fetches started early by a push webhook.
    #[serde(default)]
    pub woken: u64,
}

/// A handle on a running git source: wake it for a fetch now, read what
/// it fetched. Cloned into the webhook handler and the status writer.
#[derive(Debug, Clone)]
pub struct FetchHandle {
    wake: Arc<Notify>,
    fetches: watch::Receiver<Fetches>,
    /// The followed branch.
    pub branch: String,
}

impl FetchHandle {
    /// Asks for a fetch of the configured remote and branch at once (a
    /// fetch running now is followed by another; many wakes before it
    /// starts make one fetch).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// What was fetched so far.
    pub fn fetches(&self) -> Fetches {
        self.fetches.borrow().clone()
    }

    /// Changes as they happen.
    pub fn watch(&self) -> watch::Receiver<Fetches> {
        self.fetches.clone()
    }
}

/// One revision of the config source.
#[derive(Debug, Clone)]
pub struct Revision {
    /// The commit id (git), or the digest of the directory's config files.
    pub id: String,
    /// When the source saw it (ms since the epoch, on the daemon's clock).
    pub seen_ms: i64,
    /// The config at this revision, or every problem that makes it invalid.
    pub config: Result<Arc<Config>, Diagnostics>,
    /// The checked-out files the config was loaded from, kept on disk while
    /// anyone holds this revision (git sources; `None` for a directory).
    pub checkout: Option<Arc<Checkout>>,
}

impl Revision {
    /// The id shortened for logs (12 characters, as `git log --oneline`).
    pub fn short(&self) -> &str {
        short(&self.id)
    }
}

/// The first 12 characters of a revision id.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// A directory of checked-out files, removed when the last holder drops it.
#[derive(Debug)]
pub struct Checkout {
    /// The directory.
    pub path: PathBuf,
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove an old checkout");
            }
        }
    }
}

/// Why a source could not give a revision.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The directory cannot be watched (the source falls back to rescans).
    #[error("cannot watch `{path}`: {detail}")]
    Watch {
        /// The watched directory.
        path: String,
        /// The cause.
        detail: String,
    },
    /// A fetch failed or timed out; the next try comes after `retry_in`.
    #[error("cannot fetch `{branch}` from `{url}`: {detail}")]
    Fetch {
        /// The remote.
        url: String,
        /// The branch.
        branch: String,
        /// The cause.
        detail: String,
        /// Consecutive failures, this one included.
        attempt: u32,
        /// When the next try starts.
        retry_in: std::time::Duration,
    },
    /// The local cache (bare repository, checkouts) cannot be written.
    #[error("config cache `{path}`: {detail}")]
    Cache {
        /// The cache directory.
        path: String,
        /// The cause.
        detail: String,
    },
}

impl SourceError {
    /// Whether the source may succeed later without a change of settings
    /// (every source error is: the running revision is kept meanwhile).
    pub fn is_retryable(&self) -> bool {
        true
    }
}

/// A place revisions come from.
#[async_trait::async_trait]
pub trait ConfigSource: Send {
    /// What is watched (`directory /srv/fleet`, `git file:///srv/fleet.git main`), for logs and status.
    fn describe(&self) -> String;

    /// The handle of a source that fetches (git); `None` for a directory.
    fn handle(&self) -> Option<FetchHandle> {
        None
    }

    /// Waits for the next revision: the first call returns the current one
    /// at once; later calls return only when the id changed. An error is
    /// for logging and counting: call again to go on.
    async fn next(&mut self) -> Result<Revision, SourceError>;
}

/// What a running source reports.
#[derive(Debug)]
pub enum Event {
    /// A new revision.
    Revision(Revision),
    /// A failed try (the last revision keeps running).
    Failed(SourceError),
}

/// Runs `source` until `stop` turns true (or the receiver is gone),
/// sending every revision and error to `tx`.
pub async fn pump(mut source: Box<dyn ConfigSource>, tx: mpsc::Sender<Event>, mut stop: watch::Receiver<bool>) {
    loop {
        let event = tokio::select! {
            r = source.next() => match r {
                Ok(rev) => Event::Revision(rev),
                Err(e) => Event::Failed(e),
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

/// Whether `rel` (a config sub-directory) stays inside its repository:
/// relative, with no `..`.
fn is_inside(rel: &str) -> bool {
    let p = Path::new(rel);
    !rel.is_empty() && p.components().all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_shortened_to_twelve_characters() {
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }

    #[test]
    fn a_sub_directory_stays_inside() {
        assert!(is_inside("config"));
        assert!(is_inside("a/./b"));
        assert!(!is_inside("../x"));
        assert!(!is_inside("a/../../x"));
        assert!(!is_inside("/etc"));
        assert!(!is_inside(""));
    }
}
