//! What the daemon says about its config source, for `scaler status`: the
//! source, the running revision, the last invalid one with its
//! diagnostics, a failing fetch, the last plan or apply. Kept in a JSON file
//! in the state directory (`.scaler/source.json`), replaced atomically on
//! every change; a daemon that is not running leaves its last word there.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// The file name, in the state directory.
pub const FILE: &str = "source.json";

/// A revision and when it was decided on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Noted {
    /// The revision id.
    pub revision: String,
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// What happened (`invalid`, `applied: ...`, `held: ...`, the error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The diagnostics of an invalid revision (`file:line:column: message`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<String>,
}

/// The daemon's view of its source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// What is followed (`directory /srv/fleet`, `git URL branch main`).
    pub source: String,
    /// Whether new revisions are applied.
    pub auto_apply: bool,
    /// The daemon's process id.
    pub pid: u32,
    /// The revision that runs (`None`: the start-up config).
    pub running: Option<Noted>,
    /// The last revision refused, with its diagnostics or reason.
    pub last_failed: Option<Noted>,
    /// The last plan or apply of a revision and its result.
    pub last_settled: Option<Noted>,
    /// The last failed fetch (or watch) while it is failing: cleared by the next revision.
    pub source_error: Option<Noted>,
    /// The git source's last fetched commit, the time of the next fetch,
    /// failed fetches (`None`: a directory source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<crate::gitops::Fetches>,
    /// When this was written.
    pub updated_ms: i64,
}

impl SourceStatus {
    /// Reads `state_dir/source.json`; `None` when no daemon wrote one (or it is unreadable).
    pub fn read(state_dir: &Path) -> Option<SourceStatus> {
        let text = std::fs::read_to_string(state_dir.join(FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// The status shared by the daemon's tasks, written on every change.
#[derive(Debug, Clone)]
pub struct StatusFile {
    path: Option<PathBuf>,
    status: Arc<Mutex<SourceStatus>>,
}

impl StatusFile {
    /// Writes to `state_dir/source.json` (or nowhere for `None`).
    pub fn new(state_dir: Option<&Path>, status: SourceStatus) -> StatusFile {
        StatusFile { path: state_dir.map(|d| d.join(FILE)), status: Arc::new(Mutex::new(status)) }
    }

    /// Changes the status at `now_ms` and writes it.
    pub fn update(&self, now_ms: i64, f: impl FnOnce(&mut SourceStatus)) {
        let text = {
            let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut s);
            s.updated_ms = now_ms;
            serde_json::to_string_pretty(&*s)
        };
        let (Some(path), Ok(text)) = (&self.path, text) else { return };
        if let Err(e) = write_atomic(path, &text) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the source status");
        }
    }
}

/// Copies what the git source says about its fetches into the status,
/// on every change, until `stop`.
pub(super) async fn mirror(handle: crate::gitops::FetchHandle, status: StatusFile, clock: crate::clock::SharedClock, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut rx = handle.watch();
    loop {
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        let fetches = rx.borrow_and_update().clone();
        status.update(clock.now_ms(), |s| s.fetch = Some(fetches));
    }
}

fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_status_reads_back() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = StatusFile::new(Some(tmp.path()), SourceStatus { source: "directory /x".into(), ..SourceStatus::default() });
        file.update(7, |s| {
            s.last_failed = Some(Noted { revision: "abc".into(), at_ms: 5, detail: Some("invalid".into()), diagnostics: vec!["a.yaml:1:2: bad".into()] })
        });
        let back = SourceStatus::read(tmp.path()).unwrap_or_else(|| panic!("no status"));
        assert_eq!(back.updated_ms, 7);
        assert_eq!(back.source, "directory /x");
        assert_eq!(back.last_failed.map(|n| n.diagnostics), Some(vec!["a.yaml:1:2: bad".to_string()]));
        assert_eq!(SourceStatus::read(&tmp.path().join("none")), None);
    }
}
