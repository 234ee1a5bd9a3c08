//! A loaded config repo, where its state store lives, and the providers
//! this build has: what the commands share. The CLI is a composition root:
//! it builds the backends here and hands them to the library
//! ([`crate::reconcile::Session`] for plan and apply).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::{Failure, Ui};
use crate::apply::Providers;
use crate::config::{self, Config};
use crate::provider::{LocalProvider, Provider};
use crate::reconcile::{Session, Settings};
use crate::store::{Location, StateStore};

/// The global `-C DIR`/`--dir DIR`, set once by `main` before any command
/// runs.
static DIR_OPTION: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Records the global `-C DIR`/`--dir DIR` (called once, by `main`).
pub fn set_dir_option(dir: Option<PathBuf>) {
    let _ = DIR_OPTION.set(dir);
}

/// The repo named by `-C DIR`/`--dir DIR` or SCALER_DIR, if any (no
/// discovery).
pub fn named_dir() -> Option<PathBuf> {
    DIR_OPTION.get().cloned().flatten().or_else(|| std::env::var_os("SCALER_DIR").filter(|v| !v.is_empty()).map(PathBuf::from))
}

/// The one convention for naming the config repo, used by every command
/// (through [`Workspace::load`] or [`load_config`]), in this order:
/// the command's positional DIR (where it has one), the global
/// `-C DIR`/`--dir DIR`, `SCALER_DIR`, else the nearest directory, from the
/// working directory up, holding a Project document (like git and cargo
/// find their repo).
pub fn repo_dir(positional: Option<&Path>) -> Result<PathBuf, Failure> {
    let option = DIR_OPTION.get().and_then(Option::as_ref);
    match (positional, option) {
        (Some(p), Some(o)) if p != o => {
            return Err(Failure {
                code: 2,
                message: format!("the config repo is named twice (`{}` and `-C {}`); give one", p.display(), o.display()),
            })
        }
        (Some(p), _) => return Ok(p.to_path_buf()),
        (None, _) => {}
    }
    if let Some(dir) = named_dir() {
        return Ok(dir);
    }
    let cwd = std::env::current_dir().map_err(|e| Failure::new(format!("cannot read the working directory: {e}")))?;
    discover(&cwd).ok_or_else(|| {
        Failure::new(format!(
            "no config repo found: no Project document (`kind: Project`) in the YAML files of `{}` or any parent directory\n  \
             hint: run inside a config repo, name one with `-C DIR` (or `--dir DIR`), or set SCALER_DIR=DIR; `scaler init DIR` creates one",
            cwd.display()
        ))
    })
}

/// The nearest of `start` and its parents whose top-level `*.yaml`/`*.yml`
/// files hold a `kind: Project` document.
pub fn discover(start: &Path) -> Option<PathBuf> {
    start.ancestors().find(|d| holds_project(d)).map(Path::to_path_buf)
}

fn holds_project(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let yaml = (name.ends_with(".yaml") || name.ends_with(".yml")) && !name.contains(".test.") && !name.starts_with('.');
        // Config files are small; a huge file is not read just to look.
        yaml && e.metadata().is_ok_and(|m| m.is_file() && m.len() <= 4 * 1024 * 1024)
            && std::fs::read_to_string(e.path()).is_ok_and(|text| text.lines().any(is_project_line))
    })
}

/// `kind: Project`, quoted or not, with an optional comment.
fn is_project_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("kind:") else { return false };
    let value = rest.split('#').next().unwrap_or("").trim().trim_matches(|c| c == '"' || c == '\'');
    value == "Project"
}

/// A loaded repo.
pub struct Workspace {
    /// The compiled config.
    pub config: Arc<Config>,
    /// Where the state store lives.
    pub location: Location,
    /// Where local nodes live (`.scaler/`).
    pub state_dir: PathBuf,
}

/// Loads and compiles the config repo named by `dir` or [`repo_dir`]'s
/// convention (or at `rev` of its git repo), printing every diagnostic on
/// failure.
pub fn load_config(dir: Option<&Path>, rev: Option<&str>, ui: &Ui) -> Result<Config, Failure> {
    let dir = &repo_dir(dir)?;
    if !dir.is_dir() {
        return Err(Failure::new(format!("`{}` is not a directory", dir.display())));
    }
    // Absolute, so that saved plans and node directories do not depend on the
    // working directory of a later command.
    let dir = &std::path::absolute(dir).map_err(|e| Failure::new(format!("`{}`: {e}", dir.display())))?;
    let result = match rev {
        Some(r) => config::load_rev(dir, r),
        None => config::load(dir),
    };
    result.map_err(|d| {
        eprint!("{}", d.render(ui.err_color));
        Failure::printed(1)
    })
}

/// One `warning: FILE:LINE:COLUMN: MESSAGE` line on stderr per setting of
/// `config` this build ignores (none with `--quiet`); `scaler validate`
/// shows them in full.
pub fn warn_ignored(config: &Config, ui: &Ui) {
    for w in &config.warnings.0 {
        ui.warn(&w.to_string());
    }
}

/// Where the state store of a config lives: `state.url` (`sqlite:PATH`
/// relative to the root, or `postgres://...` with `state.password`),
/// default `.scaler/state.db`.
pub fn location(config: &Config) -> Result<Location, Failure> {
    let state = config.project.spec.state.as_ref();
    let location = Location::parse(state.and_then(|s| s.url.as_deref()), &config.root)?;
    match state.and_then(|s| s.password.as_ref()) {
        Some(r) => {
            let password = crate::config::read_secret(&config.root, r).map_err(|e| Failure::new(format!("state.password: {e}")))?;
            Ok(location.with_password(password)?)
        }
        None => Ok(location),
    }
}

impl Workspace {
    /// Loads the repo named by `dir` or by [`repo_dir`]'s convention.
    pub fn load(dir: Option<&Path>, rev: Option<&str>, ui: &Ui) -> Result<Workspace, Failure> {
        let config = load_config(dir, rev, ui)?;
        let location = location(&config)?;
        let state_dir = location.state_dir().map(Path::to_path_buf).unwrap_or_else(|| config.root.join(".scaler"));
        Ok(Workspace { config: Arc::new(config), location, state_dir })
    }

    /// Opens (creating if needed) the state store.
    pub fn store(&self) -> Result<StateStore, Failure> {
        Ok(crate::store::open(&self.location)?)
    }

    /// Whether the state store exists yet (a SQLite file is only created
    /// by the first command that writes).
    pub fn store_exists(&self) -> bool {
        self.location.exists()
    }

    /// The providers this build has.
    pub fn providers(&self) -> Providers {
        let mut p = Providers::new();
        let local: Arc<dyn Provider> = Arc::new(LocalProvider::new(self.state_dir.clone()));
        p.insert("local".to_string(), local);
        p
    }

    /// A plan-and-apply session over this config, its store and providers.
    pub fn session(&self) -> Result<Session, Failure> {
        Ok(Session {
            config: self.config.clone(),
            store: self.store()?,
            providers: self.providers(),
            settings: Settings::from_config(&self.config, owner()),
        })
    }
}

/// `user@host`.
pub fn owner() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

/// A tokio runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start the async runtime: {e}")))
}
