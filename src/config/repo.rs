//! Files that the config names inside its repository (`put.src`, `ca_file`,
//! `{ file: }` secrets, templates included by an uploaded file): resolved
//! after `..` and symlinks, and refused when they leave the repository
//! root. An error never shows a file's contents.

use std::path::{Component, Path, PathBuf};

/// Why a repository path cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoPathError {
    /// Absolute, above the root with `..`, or a symlink to outside.
    #[error("`{path}` escapes the repository (paths are relative to the repository root and stay inside it)")]
    Escapes {
        /// The path as written.
        path: String,
    },
    /// It does not exist or cannot be read.
    #[error("cannot read `{path}`: {detail}")]
    Unreadable {
        /// The path as written.
        path: String,
        /// The operating system's reason.
        detail: String,
    },
}

impl RepoPathError {
    /// What is wrong, without the path (for messages that name it already).
    pub fn reason(&self) -> String {
        match self {
            RepoPathError::Escapes { .. } => "escapes the repository (paths are relative to the repository root and stay inside it)".into(),
            RepoPathError::Unreadable { detail, .. } => detail.clone(),
        }
    }
}

/// Whether `rel`, read lexically, stays below the root: relative, and no
/// `..` climbs above where it started.
fn lexically_inside(rel: &str) -> bool {
    let mut depth: i64 = 0;
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// The real path of `rel` below `root`, after `..` and symlinks; refused
/// unless it stays inside the root. The file must exist.
pub fn resolve(root: &Path, rel: &str) -> Result<PathBuf, RepoPathError> {
    let escapes = || RepoPathError::Escapes { path: rel.to_string() };
    if rel.is_empty() || !lexically_inside(rel) {
        return Err(escapes());
    }
    let unreadable = |e: std::io::Error| RepoPathError::Unreadable { path: rel.to_string(), detail: e.to_string() };
    let real_root = root.canonicalize().map_err(unreadable)?;
    let real = real_root.join(rel).canonicalize().map_err(unreadable)?;
    if real.starts_with(&real_root) {
        Ok(real)
    } else {
        Err(escapes())
    }
}

/// Checks a path at validate time: a path that escapes is refused; one
/// that does not exist (yet) is not this check's business.
pub fn check(root: &Path, rel: &str) -> Result<(), RepoPathError> {
    match resolve(root, rel) {
        Err(e @ RepoPathError::Escapes { .. }) => Err(e),
        _ => Ok(()),
    }
}

/// The bytes of the repository file `rel`.
pub fn read(root: &Path, rel: &str) -> Result<Vec<u8>, RepoPathError> {
    let path = resolve(root, rel)?;
    std::fs::read(&path).map_err(|e| RepoPathError::Unreadable { path: rel.to_string(), detail: e.to_string() })
}

/// The text of the repository file `rel`.
pub fn read_to_string(root: &Path, rel: &str) -> Result<String, RepoPathError> {
    let bytes = read(root, rel)?;
    String::from_utf8(bytes).map_err(|_| RepoPathError::Unreadable { path: rel.to_string(), detail: "not UTF-8 text".into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("files/sub")).unwrap();
        std::fs::write(dir.path().join("files/a.conf"), "a").unwrap();
        std::fs::write(dir.path().join("files/sub/b.conf"), "b").unwrap();
        dir
    }

    #[test]
    fn paths_inside_resolve() {
        let r = repo();
        assert_eq!(read(r.path(), "files/a.conf").unwrap(), b"a");
        assert_eq!(read(r.path(), "./files/sub/../a.conf").unwrap(), b"a");
        assert_eq!(read_to_string(r.path(), "files/sub/b.conf").unwrap(), "b");
    }

    #[test]
    fn absolute_and_climbing_paths_escape() {
        let r = repo();
        for p in ["/etc/passwd", "../x", "files/../../etc/passwd", "files/sub/../../../etc", ""] {
            assert_eq!(resolve(r.path(), p), Err(RepoPathError::Escapes { path: p.into() }), "{p}");
            assert!(check(r.path(), p).is_err(), "{p}");
        }
    }

    #[test]
    fn a_symlink_out_of_the_repository_escapes_and_one_inside_does_not() {
        let r = repo();
        std::os::unix::fs::symlink("/etc/passwd", r.path().join("files/passwd")).unwrap();
        std::os::unix::fs::symlink("a.conf", r.path().join("files/alias")).unwrap();
        std::os::unix::fs::symlink("/etc", r.path().join("etc")).unwrap();
        assert!(matches!(read(r.path(), "files/passwd"), Err(RepoPathError::Escapes { .. })));
        assert!(matches!(read(r.path(), "etc/passwd"), Err(RepoPathError::Escapes { .. })));
        assert_eq!(read(r.path(), "files/alias").unwrap(), b"a");
        let msg = read(r.path(), "files/passwd").unwrap_err().to_string();
        assert!(msg.contains("escapes the repository") && !msg.contains("root:"), "{msg}");
    }

    #[test]
    fn a_missing_file_is_unreadable_at_run_time_and_passes_the_check() {
        let r = repo();
        assert!(matches!(read(r.path(), "files/nope"), Err(RepoPathError::Unreadable { .. })));
        assert_eq!(check(r.path(), "files/nope"), Ok(()));
    }
}
