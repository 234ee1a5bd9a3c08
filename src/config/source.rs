//! Where config files come from: a directory (the working tree) or a git
//! commit, plus the revision they represent.
//!
//! Owns: listing `*.yaml`/`*.yml` files (hidden paths, `.scaler/`,
//! `.scalerignore` matches and `*.test.yaml` rule tests left out), reading them, [`worktree_revision`].
//! Must not depend on: the store, the network (git is read locally only).

use std::path::{Path, PathBuf};

use super::diag::Diagnostic;
use super::ignore::Ignore;

/// One config file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to the config root, `/`-separated.
    pub path: String,
    /// The text.
    pub text: String,
}

/// The largest config file read, in bytes; `SCALER_MAX_CONFIG_BYTES`
/// raises it.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The file size limit in force.
pub fn max_file_bytes() -> u64 {
    std::env::var("SCALER_MAX_CONFIG_BYTES").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(DEFAULT_MAX_FILE_BYTES)
}

/// The error for a file over the size limit.
fn too_big(path: &str, size: u64, limit: u64) -> Diagnostic {
    Diagnostic::new("limit", format!("file is {size} bytes, over the limit of {limit} bytes"))
        .at(path, 0, 0)
        .help("split it into smaller files, or raise the limit with SCALER_MAX_CONFIG_BYTES")
}

/// `*.yaml`/`*.yml`, except rule test files (`*.test.yaml`, `*.test.yml`:
/// they are read by `scaler test`, not loaded as config).
fn is_config_file(name: &str) -> bool {
    (name.ends_with(".yaml") || name.ends_with(".yml")) && !name.ends_with(".test.yaml") && !name.ends_with(".test.yml")
}

fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// Reads every config file below `root`, sorted by path. Unreadable files
/// are reported and skipped.
pub fn read_dir(root: &Path) -> (Vec<SourceFile>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut diags = Vec::new();
    let meta = std::fs::metadata(root);
    if !meta.as_ref().is_ok_and(std::fs::Metadata::is_dir) {
        let why = match meta {
            Err(e) => e.to_string(),
            Ok(_) => "not a directory".to_string(),
        };
        diags.push(Diagnostic::new(
            "io",
            format!(
                "cannot read config directory `{}`: {}",
                root.display(),
                lower_first(&why)
            ),
        ));
        return (files, diags);
    }
    let ignore = match std::fs::read_to_string(root.join(".scalerignore")) {
        Ok(text) => Ignore::parse(&text),
        Err(_) => Ignore::default(),
    };
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                diags.push(
                    Diagnostic::new(
                        "io",
                        format!("cannot read directory: {}", lower_first(&e.to_string())),
                    )
                    .at(&rel, 0, 0),
                );
                continue;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if is_hidden(&name) {
                continue;
            }
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            // Symlinked directories are not followed (no loops); symlinked files are.
            let Ok(ft) = entry.file_type() else { continue };
            let is_dir = ft.is_dir();
            if ignore.is_ignored(&child_rel, is_dir) {
                continue;
            }
            if is_dir {
                stack.push((entry.path(), child_rel));
            } else if is_config_file(&name) {
                let limit = max_file_bytes();
                let size = std::fs::metadata(entry.path()).map(|m| m.len()).unwrap_or(0);
                if size > limit {
                    diags.push(too_big(&child_rel, size, limit));
                    continue;
                }
                match std::fs::read(entry.path()) {
                    Ok(bytes) => match String::from_utf8(bytes) {
                        Ok(text) => files.push(SourceFile {
                            path: child_rel,
                            text,
                        }),
                        Err(_) => diags.push(
                            Diagnostic::new("yaml", "file is not valid UTF-8").at(&child_rel, 0, 0),
                        ),
                    },
                    Err(e) => diags.push(
                        Diagnostic::new(
                            "io",
                            format!("cannot read file: {}", lower_first(&e.to_string())),
                        )
                        .at(&child_rel, 0, 0),
                    ),
                }
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    (files, diags)
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn git_error(e: &git2::Error) -> String {
    lower_first(e.message())
}

/// The repository containing `path` and `path` relative to its working
/// tree (`/`-separated, empty for the top).
fn open_repo(path: &Path) -> Option<(git2::Repository, String)> {
    let repo = git2::Repository::discover(path).ok()?;
    let workdir = repo.workdir()?.canonicalize().ok()?;
    let here = path.canonicalize().ok()?;
    let rel = here.strip_prefix(&workdir).ok()?;
    let prefix = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect::<Vec<_>>()
        .join("/");
    Some((repo, prefix))
}

/// The revision of a working tree: the HEAD commit id, with `-dirty` when
/// files under `root` differ from it; `none` outside a git work tree.
pub fn worktree_revision(root: &Path) -> String {
    let Some((repo, prefix)) = open_repo(root) else {
        return "none".to_string();
    };
    let Ok(head) = repo.head().and_then(|h| h.peel_to_commit()) else {
        return "none".to_string();
    };
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .exclude_submodules(true);
    if !prefix.is_empty() {
        opts.pathspec(format!("{prefix}/"));
    }
    let dirty = repo
        .statuses(Some(&mut opts))
        .map(|s| s.iter().any(|e| e.status() != git2::Status::CURRENT))
        .unwrap_or(false);
    let id = head.id().to_string();
    if dirty {
        format!("{id}-dirty")
    } else {
        id
    }
}

/// Reads the config files of commit `rev` (any revspec: `HEAD`, a branch, a
/// commit id) below the directory `root` of a git work tree. Returns the
/// files, the commit id and problems with single files.
pub fn read_rev(
    root: &Path,
    rev: &str,
) -> Result<(Vec<SourceFile>, String, Vec<Diagnostic>), Box<Diagnostic>> {
    let (repo, prefix) = open_repo(root).ok_or_else(|| {
        Diagnostic::new(
            "git",
            format!("`{}` is not inside a git work tree", root.display()),
        )
    })?;
    let commit = repo
        .revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| {
            Diagnostic::new(
                "git",
                format!("cannot resolve revision `{rev}`: {}", git_error(&e)),
            )
        })?;
    let tree = commit.tree().map_err(|e| {
        Diagnostic::new(
            "git",
            format!("cannot read commit `{rev}`: {}", git_error(&e)),
        )
    })?;
    let tree = if prefix.is_empty() {
        tree
    } else {
        tree.get_path(Path::new(&prefix))
            .and_then(|entry| entry.to_object(&repo))
            .and_then(|o| o.peel_to_tree())
            .map_err(|_| {
                Diagnostic::new(
                    "git",
                    format!("`{prefix}` does not exist in revision `{rev}`"),
                )
            })?
    };
    let blob_text = |id: git2::Oid| -> Option<Result<String, ()>> {
        let blob = repo.find_blob(id).ok()?;
        Some(String::from_utf8(blob.content().to_vec()).map_err(|_| ()))
    };
    let ignore = tree
        .get_name(".scalerignore")
        .and_then(|e| blob_text(e.id()))
        .and_then(Result::ok)
        .map(|t| Ignore::parse(&t))
        .unwrap_or_default();
    let mut files = Vec::new();
    let mut diags = Vec::new();
    let mut blobs: Vec<(String, git2::Oid)> = Vec::new();
    let walked = tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        let Ok(name) = entry.name() else {
            return git2::TreeWalkResult::Skip;
        };
        let rel = format!("{dir}{name}");
        let is_dir = entry.kind() == Some(git2::ObjectType::Tree);
        if is_hidden(name) || ignore.is_ignored(&rel, is_dir) {
            return git2::TreeWalkResult::Skip;
        }
        if !is_dir && entry.kind() == Some(git2::ObjectType::Blob) && is_config_file(name) {
            blobs.push((rel, entry.id()));
        }
        git2::TreeWalkResult::Ok
    });
    walked.map_err(|e| {
        Diagnostic::new(
            "git",
            format!("cannot read revision `{rev}`: {}", git_error(&e)),
        )
    })?;
    let limit = max_file_bytes();
    for (path, id) in blobs {
        let size = repo.find_blob(id).map(|b| b.size() as u64).unwrap_or(0);
        if size > limit {
            diags.push(too_big(&path, size, limit));
            continue;
        }
        match blob_text(id) {
            Some(Ok(text)) => files.push(SourceFile { path, text }),
            Some(Err(())) => {
                diags.push(Diagnostic::new("yaml", "file is not valid UTF-8").at(&path, 0, 0))
            }
            None => diags.push(Diagnostic::new("git", "cannot read file from git").at(&path, 0, 0)),
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((files, commit.id().to_string(), diags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_test_files_are_not_config() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(dir.path().join("tests")).unwrap_or_else(|e| panic!("{e}"));
        for f in ["scaler.yaml", "tests/triggers.test.yaml", "tests/other.test.yml", "tests/test.yaml", "notes.test.yaml.txt"] {
            std::fs::write(dir.path().join(f), "kind: Project\nname: p\n").unwrap_or_else(|e| panic!("{e}"));
        }
        let (files, diags) = read_dir(dir.path());
        assert!(diags.is_empty(), "{diags:?}");
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, vec!["scaler.yaml", "tests/test.yaml"]);
    }
}
