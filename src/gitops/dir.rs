//! A local directory as a config source: watched with `notify` through a
//! debouncer, and re-listed whole on every event (a file written right
//! after `mkdir` can produce no event of its own, so the event only says
//! "look again"). A revision is new when the digest of the config files
//! changed; a slow periodic rescan covers lost events, and replaces the
//! watch when the directory cannot be watched.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_full::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};
use tokio::sync::mpsc;

use super::{ConfigSource, Revision, SourceError};
use crate::clock::SharedClock;
use crate::config::{worktree_revision, Tree};

/// How long the debouncer waits for a burst of events to end.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// How often the tree is re-listed without an event.
pub const RESCAN: Duration = Duration::from_secs(30);

/// A watched config directory.
pub struct DirSource {
    root: PathBuf,
    clock: SharedClock,
    /// The digest of the last revision returned.
    last: Option<String>,
    /// One message per debounced burst of relevant events (capacity 1: a
    /// pending rescan covers every later event).
    events: mpsc::Receiver<()>,
    /// Keeps the watch running; `None` when it could not start.
    _watch: Option<Debouncer<RecommendedWatcher, RecommendedCache>>,
    /// Why the watch could not start, reported once.
    watch_error: Option<SourceError>,
    rescan: Duration,
}

/// Whether an event at `path` may change the config: not inside a hidden
/// directory or file (`.scaler/`, `.git/`: the state store writes there),
/// except `.scalerignore`.
fn relevant(root: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(root) else { return true };
    if rel == Path::new(".scalerignore") {
        return true;
    }
    !rel.components().any(|c| matches!(c, Component::Normal(n) if n.to_string_lossy().starts_with('.')))
}

impl DirSource {
    /// Watches `root` (recursively).
    pub fn new(root: &Path, clock: SharedClock) -> DirSource {
        let (tx, events) = mpsc::channel(1);
        let base = root.to_path_buf();
        let handler = move |res: DebounceEventResult| {
            let wanted = match &res {
                Ok(events) => events.iter().any(|e| e.paths.iter().any(|p| relevant(&base, p))),
                // The watcher lost track (overflow, a removed watch): look again.
                Err(_) => true,
            };
            if wanted {
                // Full: a rescan is already due, and it will see this change too.
                let _ = tx.try_send(());
            }
        };
        let watch = new_debouncer(DEBOUNCE, None, handler).and_then(|mut d| d.watch(root, RecursiveMode::Recursive).map(|()| d));
        let (watch, watch_error, rescan) = match watch {
            Ok(d) => (Some(d), None, RESCAN),
            Err(e) => {
                let err = SourceError::Watch { path: root.display().to_string(), detail: e.to_string() };
                (None, Some(err), Duration::from_secs(2))
            }
        };
        DirSource { root: root.to_path_buf(), clock, last: None, events, _watch: watch, watch_error, rescan }
    }

    /// Waits for a relevant event or the rescan period.
    async fn wait(&mut self) {
        let mut sleep = self.clock.sleep(self.rescan);
        tokio::select! {
            got = self.events.recv() => {
                if got.is_none() {
                    // The watch is gone: rescans only.
                    sleep.await;
                }
            }
            _ = &mut sleep => {}
        }
    }
}

#[async_trait::async_trait]
impl ConfigSource for DirSource {
    fn describe(&self) -> String {
        format!("directory {}", self.root.display())
    }

    async fn next(&mut self) -> Result<Revision, SourceError> {
        if let Some(e) = self.watch_error.take() {
            return Err(e);
        }
        loop {
            if self.last.is_some() {
                self.wait().await;
            }
            let (root, last) = (self.root.clone(), self.last.clone());
            let scanned = tokio::task::spawn_blocking(move || {
                let tree = Tree::read(&root);
                let digest = tree.digest();
                if last.as_deref() == Some(digest.as_str()) {
                    return None;
                }
                let config = tree.compile(worktree_revision(&root)).map(Arc::new);
                Some((digest, config))
            })
            .await
            .map_err(|e| SourceError::Watch { path: self.root.display().to_string(), detail: format!("rescan failed: {e}") })?;
            let Some((digest, config)) = scanned else { continue };
            self.last = Some(digest.clone());
            return Ok(Revision { id: digest, seen_ms: self.clock.now_ms(), config, checkout: None });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_paths_do_not_change_the_config() {
        let root = Path::new("/srv/fleet");
        assert!(relevant(root, Path::new("/srv/fleet/triggers.yaml")));
        assert!(relevant(root, Path::new("/srv/fleet/sub")));
        assert!(relevant(root, Path::new("/srv/fleet")));
        assert!(relevant(root, Path::new("/srv/fleet/.scalerignore")));
        assert!(relevant(root, Path::new("/elsewhere/x.yaml")));
        assert!(!relevant(root, Path::new("/srv/fleet/.scaler/state.db-wal")));
        assert!(!relevant(root, Path::new("/srv/fleet/.git/index.lock")));
        assert!(!relevant(root, Path::new("/srv/fleet/sub/.x.yaml.swp")));
    }
}
