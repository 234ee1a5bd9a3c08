//! A git remote as a config source: `git2` fetches the configured branch
//! every `poll` into a bare cache repository under `.scaler/source/`, and
//! each new commit is checked out into a directory of its own
//! (`trees/<pid>/<commit>`, removed when no revision holds it; a process
//! clears what dead processes left), so the running
//! config keeps reading its own files (`put.src`, `{ file: }` secrets) while
//! a newer commit is validated.
//!
//! Transports of this build: local paths, `file://`, `git://` and
//! `http://` (libgit2 is built without https and ssh). HTTP Basic
//! credentials ([`Credentials`]) are sent only to a loopback `http://` host:
//! anywhere else they would cross the network in clear text. A fetch is bounded by a timeout; a
//! failure is reported and retried after a backoff, and what runs is kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{watch, Notify};

use super::{is_inside, Checkout, ConfigSource, FetchHandle, Fetches, Revision, SourceError};
use crate::clock::SharedClock;
use crate::config::{Config, Diagnostic, Diagnostics, Tree};
use crate::reconcile::Backoff;

/// The branch followed when `daemon.source.branch` is not set.
pub const DEFAULT_BRANCH: &str = "main";
/// How often the remote is fetched when `daemon.source.poll` is not set.
pub const DEFAULT_POLL: Duration = Duration::from_secs(60);
/// The longest a fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait between fetches after failures.
pub const MAX_RETRY: Duration = Duration::from_secs(300);

/// What to fetch, how often, and where to keep it.
#[derive(Debug, Clone)]
pub struct GitSettings {
    /// The remote: a local path, `file://` or `git://` URL.
    pub url: String,
    /// The branch to follow.
    pub branch: String,
    /// The config's sub-directory in the repository.
    pub path: Option<String>,
    /// Time between fetches.
    pub poll: Duration,
    /// The longest a fetch may take.
    pub timeout: Duration,
    /// The cache directory (`.scaler/source`); one sub-directory per remote and branch.
    pub cache: PathBuf,
    /// HTTP Basic credentials (`daemon.source.credentials`), read at start-up.
    pub credentials: Option<Credentials>,
}

/// A user name and password for an `http://` remote; the password is
/// hidden in `Debug` and never logged.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: Arc<secrecy::SecretString>,
}

/// Whether `url` is `http://` to a host other than a loopback one.
fn clear_text_off_host(url: &str) -> bool {
    let Some(rest) = url.get(..7).filter(|p| p.eq_ignore_ascii_case("http://")).map(|_| &url[7..]) else { return false };
    let authority = rest.split('/').next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') { v6.split(']').next().unwrap_or("") } else { host_port.split(':').next().unwrap_or("") };
    let loopback = host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    !loopback
}

impl GitSettings {
    /// The settings of `daemon.source`, with the defaults, caching below `cache`.
    pub fn from_model(source: &crate::model::ConfigSource, cache: &Path) -> GitSettings {
        GitSettings {
            url: source.git.clone(),
            branch: source.branch.clone().unwrap_or_else(|| DEFAULT_BRANCH.to_string()),
            path: source.path.clone(),
            poll: source.poll.as_ref().map_or(DEFAULT_POLL, |d| d.get()),
            timeout: FETCH_TIMEOUT,
            cache: cache.to_path_buf(),
            credentials: None,
        }
    }

    /// `cache/<digest of url and branch>`.
    fn home(&self) -> PathBuf {
        let mut h = Sha256::new();
        h.update(self.url.as_bytes());
        h.update([0]);
        h.update(self.branch.as_bytes());
        self.cache.join(&hex::encode(h.finalize())[..16])
    }

    fn local_ref(&self) -> String {
        format!("refs/scaler/{}", self.branch)
    }
}

/// A followed git branch.
pub struct GitSource {
    settings: GitSettings,
    clock: SharedClock,
    /// The commit of the last revision returned.
    last: Option<String>,
    /// Consecutive failed fetches.
    failures: u32,
    /// The wait before the next fetch (zero for the first).
    wait: Duration,
    /// Whether dead processes' checkouts were cleared (once, before the first fetch).
    cleared: bool,
    /// Woken by a push webhook: fetch before the wait is over.
    wake: Arc<Notify>,
    /// What was fetched, for the handles.
    fetches: watch::Sender<Fetches>,
}

impl GitSource {
    /// Follows `settings.branch` of `settings.url`.
    pub fn new(settings: GitSettings, clock: SharedClock) -> GitSource {
        let (fetches, _) = watch::channel(Fetches::default());
        GitSource { settings, clock, last: None, failures: 0, wait: Duration::ZERO, cleared: false, wake: Arc::new(Notify::new()), fetches }
    }

    /// Waits `self.wait`, or less when woken.
    async fn pause(&self) {
        tokio::select! {
            _ = self.clock.sleep(self.wait) => {}
            _ = self.wake.notified() => {
                self.fetches.send_modify(|f| f.woken += 1);
                tracing::info!(source = %self.describe(), "woken by a push webhook: fetching now");
            }
        }
    }

    fn cache_error(&self, detail: impl std::fmt::Display) -> SourceError {
        SourceError::Cache { path: self.settings.home().display().to_string(), detail: detail.to_string() }
    }

    /// Fetches in a blocking thread, bounded by the timeout.
    async fn fetch(&self) -> Result<git2::Oid, String> {
        let settings = self.settings.clone();
        let job = tokio::task::spawn_blocking(move || fetch(&settings));
        // The transfer callbacks abort a slow transfer at the deadline; this
        // bounds what they cannot see (connecting, negotiating).
        match tokio::time::timeout(self.settings.timeout + Duration::from_secs(5), job).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(format!("fetch failed: {e}")),
            Err(_) => Err(format!("timed out after {}", humantime::format_duration(self.settings.timeout))),
        }
    }
}

fn lower(e: &git2::Error) -> String {
    let m = e.message();
    let mut c = m.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The bare cache repository, created on first use.
fn open_cache(dir: &Path) -> Result<git2::Repository, String> {
    match git2::Repository::open_bare(dir) {
        Ok(r) => Ok(r),
        Err(_) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
            git2::Repository::init_bare(dir).map_err(|e| format!("cannot create a cache repository in `{}`: {}", dir.display(), lower(&e)))
        }
    }
}

/// Fetches the branch into the cache; the commit it points to.
fn fetch(s: &GitSettings) -> Result<git2::Oid, String> {
    let remote_ref = format!("refs/heads/{}", s.branch);
    if !git2::Reference::is_valid_name(&remote_ref) {
        return Err(format!("`{}` is not a valid branch name", s.branch));
    }
    let repo = open_cache(&s.home().join("repo.git"))?;
    let mut remote = repo.remote_anonymous(&s.url).map_err(|e| lower(&e))?;
    let deadline = Instant::now() + s.timeout;
    let mut callbacks = git2::RemoteCallbacks::new();
    callbacks.transfer_progress(move |_| Instant::now() < deadline);
    callbacks.sideband_progress(move |_| Instant::now() < deadline);
    if let Some(c) = s.credentials.clone() {
        if clear_text_off_host(&s.url) {
            return Err("`daemon.source.credentials` are not sent over `http://` to a host other than a loopback one (they would travel in clear text)".into());
        }
        let mut asked = 0u32;
        callbacks.credentials(move |_url, _user_in_url, allowed| {
            asked += 1;
            if asked > 1 {
                return Err(git2::Error::from_str("the remote refused `daemon.source.credentials`"));
            }
            if !allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
                return Err(git2::Error::from_str("the remote asks for credentials other than a user name and password"));
            }
            git2::Cred::userpass_plaintext(&c.username, secrecy::ExposeSecret::expose_secret(&*c.password))
        });
    }
    let mut opts = git2::FetchOptions::new();
    opts.remote_callbacks(callbacks).download_tags(git2::AutotagOption::None);
    let refspec = format!("+{remote_ref}:{}", s.local_ref());
    remote.fetch(&[refspec.as_str()], Some(&mut opts), None).map_err(|e| {
        if Instant::now() >= deadline {
            format!("timed out after {}", humantime::format_duration(s.timeout))
        } else {
            crate::redact::scrub(&lower(&e))
        }
    })?;
    repo.refname_to_id(&s.local_ref()).map_err(|_| format!("the remote has no branch `{}`", s.branch))
}

/// Checks `commit` out into its own directory and loads the config there.
fn check_out(s: &GitSettings, commit: git2::Oid) -> Result<(Checkout, Result<Config, Diagnostics>), String> {
    let repo = open_cache(&s.home().join("repo.git"))?;
    let tree = repo.find_commit(commit).and_then(|c| c.tree()).map_err(|e| lower(&e))?;
    let dir = s.home().join("trees").join(std::process::id().to_string()).join(commit.to_string());
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("cannot clear `{}`: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    let checkout = Checkout { path: dir.clone() };
    let mut co = git2::build::CheckoutBuilder::new();
    co.force().target_dir(&dir).update_index(false);
    repo.checkout_tree(tree.as_object(), Some(&mut co)).map_err(|e| format!("cannot check out {commit}: {}", lower(&e)))?;
    let config = match s.path.as_deref() {
        Some(p) if !is_inside(p) => Err(Diagnostics(vec![Diagnostic::new(
            "git",
            format!("`daemon.source.path` `{p}` leaves the repository (give a relative path without `..`)"),
        )])),
        Some(p) if !dir.join(p).is_dir() => {
            Err(Diagnostics(vec![Diagnostic::new("git", format!("`{p}` (`daemon.source.path`) is not a directory in commit {commit}"))]))
        }
        Some(p) => Tree::read(&dir.join(p)).compile(commit.to_string()),
        None => Tree::read(&dir).compile(commit.to_string()),
    };
    Ok((checkout, config))
}

/// Removes the checkouts of processes that no longer run (`trees/<pid>`):
/// nothing holds them now. Another daemon on the same cache (a `--role
/// worker` beside the main one) keeps its own.
fn clear_dead(trees: &Path) -> Result<(), String> {
    let entries = match std::fs::read_dir(trees) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot read `{}`: {e}", trees.display())),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let alive = name.parse::<i32>().is_ok_and(|pid| {
            // EPERM: it runs, as another user.
            pid as u32 != std::process::id() && !matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(nix::errno::Errno::ESRCH))
        });
        if !alive {
            std::fs::remove_dir_all(entry.path()).map_err(|e| format!("cannot clear `{}`: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl ConfigSource for GitSource {
    fn describe(&self) -> String {
        format!("git {} branch {}", self.settings.url, self.settings.branch)
    }

    fn handle(&self) -> Option<FetchHandle> {
        Some(FetchHandle { wake: self.wake.clone(), fetches: self.fetches.subscribe(), branch: self.settings.branch.clone() })
    }

    async fn next(&mut self) -> Result<Revision, SourceError> {
        if !self.cleared {
            let trees = self.settings.home().join("trees");
            tokio::task::spawn_blocking(move || clear_dead(&trees)).await.map_err(|e| self.cache_error(e))?.map_err(|e| self.cache_error(e))?;
            self.cleared = true;
        }
        loop {
            if !self.wait.is_zero() {
                self.pause().await;
            }
            let commit = match self.fetch().await {
                Ok(c) => c,
                Err(detail) => {
                    self.failures = self.failures.saturating_add(1);
                    let backoff = Backoff { base: self.settings.poll, max: MAX_RETRY.max(self.settings.poll) };
                    self.wait = backoff.delay(self.failures);
                    let next = self.clock.now_ms().saturating_add(i64::try_from(self.wait.as_millis()).unwrap_or(i64::MAX));
                    self.fetches.send_modify(|f| {
                        f.failed += 1;
                        f.next_fetch_ms = Some(next);
                    });
                    return Err(SourceError::Fetch {
                        url: self.settings.url.clone(),
                        branch: self.settings.branch.clone(),
                        detail,
                        attempt: self.failures,
                        retry_in: self.wait,
                    });
                }
            };
            self.failures = 0;
            self.wait = self.settings.poll;
            let id = commit.to_string();
            let now = self.clock.now_ms();
            let next = now.saturating_add(i64::try_from(self.wait.as_millis()).unwrap_or(i64::MAX));
            self.fetches.send_modify(|f| {
                f.last_fetched = Some(id.clone());
                f.fetched_ms = Some(now);
                f.next_fetch_ms = Some(next);
            });
            if self.last.as_deref() == Some(id.as_str()) {
                tracing::debug!(source = %self.describe(), revision = %id, "fetched; no new commit");
                continue;
            }
            let settings = self.settings.clone();
            let (checkout, config) = tokio::task::spawn_blocking(move || check_out(&settings, commit))
                .await
                .map_err(|e| self.cache_error(e))?
                .map_err(|e| self.cache_error(e))?;
            self.last = Some(id.clone());
            return Ok(Revision { id, seen_ms: self.clock.now_ms(), config: config.map(Arc::new), checkout: Some(Arc::new(checkout)) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_checkouts_of_running_processes_are_kept() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let trees = tmp.path().join("trees");
        let own = std::process::id().to_string();
        for d in ["1", "999999999", own.as_str(), "junk"] {
            std::fs::create_dir_all(trees.join(d).join("abc")).unwrap_or_else(|e| panic!("{e}"));
        }
        clear_dead(&trees).unwrap_or_else(|e| panic!("{e}"));
        let mut left: Vec<String> = std::fs::read_dir(&trees)
            .unwrap_or_else(|e| panic!("{e}"))
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(left, vec!["1".to_string()], "pid 1 runs; the others are dead, junk, or this process (which holds nothing yet)");
        assert_eq!(clear_dead(&tmp.path().join("none")), Ok(()));
    }

    #[test]
    fn credentials_go_in_clear_text_only_to_a_loopback_host() {
        for url in ["http://127.0.0.1:8080/r.git", "http://localhost/r", "HTTP://[::1]:9/r", "http://u@127.0.0.2/r", "file:///r", "git://h/r"] {
            assert!(!clear_text_off_host(url), "{url}");
        }
        for url in ["http://git.example/r.git", "http://10.0.0.1:8080/r", "http://127.0.0.1.example/r", "http://[2001:db8::1]/r"] {
            assert!(clear_text_off_host(url), "{url}");
        }
    }

    #[test]
    fn the_cache_is_one_directory_per_remote_and_branch() {
        let s = |url: &str, branch: &str| GitSettings {
            url: url.into(),
            branch: branch.into(),
            path: None,
            poll: DEFAULT_POLL,
            timeout: FETCH_TIMEOUT,
            cache: PathBuf::from("/c"),
            credentials: None,
        };
        assert_eq!(s("file:///a", "main").home(), s("file:///a", "main").home());
        assert_ne!(s("file:///a", "main").home(), s("file:///a", "prod").home());
        assert_ne!(s("file:///a", "main").home(), s("file:///b", "main").home());
        assert!(s("file:///a", "main").home().starts_with("/c"));
    }
}
