//! Loading the config repository: files from a directory or a git commit,
//! YAML with positions, JSON Schema validation, typed model objects and
//! cross-object checks, with every problem of every file reported at once
//! as [`Diagnostics`].
//!
//! ```text
//! source (dir | git rev) -> yaml (spanned tree) -> document (kind, schema)
//!   -> compile (names, typed objects, checks) -> Config | Diagnostics
//! ```
//!
//! It also reads the secrets a config refers to ([`read_secret`]: an
//! environment variable or a file in the repo), for whoever needs one, and
//! confines the files it names to the repo ([`repo`]). A valid config also
//! carries warnings about settings this build accepts but ignores
//! ([`ignored`], [`Config::warnings`]).
//!
//! A [`Tree`] is the files of a directory read but not compiled, with a
//! digest: what the daemon's directory watch compares between rescans.
//!
//! Must not depend on: the store, providers, the network.

mod checks;
mod compile;
mod diag;
mod document;
mod explain;
mod ignore;
pub mod ignored;
pub mod repo;
mod schema;
mod secret;
mod source;
pub mod yaml;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use checks::TRIGGER_FUNCTIONS;
pub use compile::{parse_policies, Config, Located};
pub use diag::{did_you_mean, unknown_name, Diagnostic, Diagnostics};
pub use ignore::Ignore;
pub use schema::{schema_for, schema_id, schema_text, write_schemas};
pub use secret::read_secret;
pub use source::{worktree_revision, SourceFile};

/// Loads the config in the directory `root` (the working tree): every
/// `*.yaml`/`*.yml` below it except hidden paths, `.scaler/`,
/// `.scalerignore` matches and rule test files (`*.test.yaml`/`*.test.yml`).
pub fn load(root: &Path) -> Result<Config, Diagnostics> {
    let tree = Tree::read(root);
    tree.compile(worktree_revision(root))
}

/// The config files of a directory, read (as [`load`] reads them) but not
/// compiled, with the problems met while reading.
#[derive(Debug, Clone)]
pub struct Tree {
    root: PathBuf,
    files: Vec<SourceFile>,
    diags: Vec<Diagnostic>,
}

impl Tree {
    /// Reads every config file below `root`.
    pub fn read(root: &Path) -> Tree {
        let (files, diags) = source::read_dir(root);
        Tree { root: root.to_path_buf(), files, diags }
    }

    /// Hex SHA-256 over every file's path and text and every read problem:
    /// equal digests mean the same files (a rescan that found no change).
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for f in &self.files {
            h.update(f.path.as_bytes());
            h.update([0]);
            h.update(f.text.as_bytes());
            h.update([0]);
        }
        for d in &self.diags {
            h.update(d.to_string().as_bytes());
            h.update([b'\n']);
        }
        hex::encode(h.finalize())
    }

    /// Compiles the files into a Config that records `revision`.
    pub fn compile(&self, revision: String) -> Result<Config, Diagnostics> {
        compile::compile(compile::Input { root: &self.root, files: &self.files, revision, diags: self.diags.clone() })
    }
}

/// Loads the config as committed at `rev` (`HEAD`, a branch, a commit id)
/// from the git work tree directory `repo_root` (which may be a
/// sub-directory of the repository: only files below it are read).
pub fn load_rev(repo_root: &Path, rev: &str) -> Result<Config, Diagnostics> {
    let (files, commit, diags) =
        source::read_rev(repo_root, rev).map_err(|d| Diagnostics(vec![*d]))?;
    compile::compile(compile::Input {
        root: repo_root,
        files: &files,
        revision: commit,
        diags,
    })
}
