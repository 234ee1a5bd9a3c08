//! A local node's directory: its paths, its `node.json` metadata (written
//! atomically) and the archiving of its log when it is terminated.
//!
//! Layout: `<state_dir>/nodes/<project>/<name>/{node.log,node.json,lock}`;
//! logs of terminated nodes go to `<state_dir>/nodes/<project>/.logs/`.
//! Must not depend on: processes or locks.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File names inside a node directory.
pub(super) const LOG: &str = "node.log";
pub(super) const META: &str = "node.json";
pub(super) const LOCK: &str = "lock";
/// Directory (in the project directory) of the logs of terminated nodes.
pub(super) const LOGS: &str = ".logs";

/// What `node.json` records about a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct NodeMeta {
    pub name: String,
    pub group: String,
    pub index: u32,
    pub port: u16,
    pub token: String,
    /// `None` between the write before spawning and the update after it.
    pub pid: Option<u32>,
    /// RFC 3339.
    pub started_at: String,
    /// The rendered command.
    pub command: String,
}

/// Whether `s` can be used as one path component: not empty, no `/` or NUL,
/// and not starting with `.` (which also rules out `.`, `..` and `.logs`).
pub(super) fn is_path_component(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && !s.contains(['/', '\0'])
}

/// Reads `node.json`; `Ok(None)` when it does not exist.
pub(super) fn read(dir: &Path) -> io::Result<Option<NodeMeta>> {
    let text = match std::fs::read(dir.join(META)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("`{META}`: {e}")))
}

/// Writes `node.json` atomically: a temp file, fsync, rename.
pub(super) fn write(dir: &Path, meta: &NodeMeta) -> io::Result<()> {
    let tmp = dir.join(format!(".{META}.tmp"));
    let text = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&text)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(META))
}

/// Infers a node's group from its name when `node.json` is missing
/// (`web-03` -> `web`).
pub(super) fn group_from_name(name: &str) -> String {
    match name.rsplit_once('-') {
        Some((group, n)) if !group.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            group.to_string()
        }
        _ => name.to_string(),
    }
}

/// Moves `<dir>/node.log` to `<project dir>/.logs/<name>.<unix-ts>.log`
/// (with a `-N` suffix if that exists) and returns the new path; `None` when
/// the node has no log.
pub(super) fn archive_log(project_dir: &Path, dir: &Path, name: &str, unix_ts: u64) -> io::Result<Option<PathBuf>> {
    let log = dir.join(LOG);
    if !log.exists() {
        return Ok(None);
    }
    let logs = project_dir.join(LOGS);
    std::fs::create_dir_all(&logs)?;
    let mut dest = logs.join(format!("{name}.{unix_ts}.log"));
    let mut n = 1;
    while dest.exists() {
        dest = logs.join(format!("{name}.{unix_ts}-{n}.log"));
        n += 1;
    }
    std::fs::rename(&log, &dest)?;
    Ok(Some(dest))
}

/// The last non-empty line of a log (at most its last 4 KiB), for errors.
pub(super) fn last_log_line(log: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(log).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_components() {
        assert!(is_path_component("web-01"));
        assert!(is_path_component("my project; touch x"));
        for bad in ["", ".", "..", ".logs", "a/b", "a\0b"] {
            assert!(!is_path_component(bad), "{bad:?}");
        }
    }

    #[test]
    fn groups_are_inferred_from_names() {
        assert_eq!(group_from_name("web-03"), "web");
        assert_eq!(group_from_name("api-west-12"), "api-west");
        assert_eq!(group_from_name("solo"), "solo");
        assert_eq!(group_from_name("web-x"), "web-x");
        assert_eq!(group_from_name("-1"), "-1");
    }

    #[test]
    fn meta_round_trips_and_logs_are_archived_without_overwriting() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("web-01");
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(read(&dir).unwrap(), None);
        let meta = NodeMeta {
            name: "web-01".into(),
            group: "web".into(),
            index: 1,
            port: 18001,
            token: "t".into(),
            pid: None,
            started_at: "2024-01-01T00:00:00Z".into(),
            command: "sleep 1".into(),
        };
        write(&dir, &meta).unwrap();
        assert_eq!(read(&dir).unwrap(), Some(meta));

        assert_eq!(archive_log(root.path(), &dir, "web-01", 7).unwrap(), None);
        std::fs::write(dir.join(LOG), "one\n\nlast line\n\n").unwrap();
        assert_eq!(last_log_line(&dir.join(LOG)).as_deref(), Some("last line"));
        let first = archive_log(root.path(), &dir, "web-01", 7).unwrap().unwrap();
        assert_eq!(first, root.path().join(".logs/web-01.7.log"));
        std::fs::write(dir.join(LOG), "again").unwrap();
        let second = archive_log(root.path(), &dir, "web-01", 7).unwrap().unwrap();
        assert_eq!(second, root.path().join(".logs/web-01.7-1.log"));
        assert_eq!(std::fs::read_to_string(first).unwrap(), "one\n\nlast line\n\n");
    }
}
