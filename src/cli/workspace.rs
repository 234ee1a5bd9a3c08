//! A loaded config repo with its state store and providers: what `plan`,
//! `apply`, `destroy`, `scale` and `state` share.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{Failure, Ui};
use crate::apply::{ApplyOptions, Providers};
use crate::config::{self, Config};
use crate::plan::{self, DiffInput, Filters, Flags, Operation, Plan};
use crate::provider::{LocalProvider, ObservedNode, Provider};
use crate::store::{SqliteStore, Store};

/// Default lease of the state lock.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(120);
/// Default number of node changes at once.
pub const DEFAULT_PARALLELISM: usize = 4;

/// A loaded repo.
pub struct Workspace {
    /// The compiled config.
    pub config: Config,
    /// The state database.
    pub store_path: PathBuf,
    /// Where local nodes live (`.scaler/`).
    pub state_dir: PathBuf,
}

/// Loads and compiles the config at `dir` (or at `rev` of its git repo),
/// printing every diagnostic on failure.
pub fn load_config(dir: &Path, rev: Option<&str>, ui: &Ui) -> Result<Config, Failure> {
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

/// The state database of a config: `state.url` `sqlite:PATH` relative to
/// the root, default `.scaler/state.db`.
pub fn store_path(config: &Config) -> Result<PathBuf, Failure> {
    let url = config.project.spec.state.as_ref().and_then(|s| s.url.clone());
    match url.as_deref() {
        None => Ok(config.root.join(".scaler").join("state.db")),
        Some(u) if u.starts_with("sqlite:") => {
            let p = u.trim_start_matches("sqlite:").trim_start_matches("//");
            Ok(config.root.join(p))
        }
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => Err(Failure::new(
            "the PostgreSQL state backend is not part of this scaler build yet; use `sqlite:PATH` (the default)",
        )),
        Some(u) => Err(Failure::new(format!("unsupported state url `{u}`: expected `sqlite:PATH`"))),
    }
}

impl Workspace {
    /// Loads the repo at `dir`.
    pub fn load(dir: &Path, rev: Option<&str>, ui: &Ui) -> Result<Workspace, Failure> {
        let config = load_config(dir, rev, ui)?;
        let store_path = store_path(&config)?;
        let state_dir = store_path.parent().map(Path::to_path_buf).unwrap_or_else(|| config.root.join(".scaler"));
        Ok(Workspace { config, store_path, state_dir })
    }

    /// Opens (creating if needed) the state store.
    pub fn store(&self) -> Result<SqliteStore, Failure> {
        Ok(SqliteStore::open(&self.store_path)?)
    }

    /// The providers this build has.
    pub fn providers(&self) -> Providers {
        let mut p = Providers::new();
        let local: Arc<dyn Provider> = Arc::new(LocalProvider::new(self.state_dir.clone()));
        p.insert("local".to_string(), local);
        p
    }

    /// What the providers report for this project.
    pub async fn observe(&self, providers: &Providers) -> Result<Vec<ObservedNode>, Failure> {
        let mut all = Vec::new();
        for p in providers.values() {
            let nodes = p
                .describe(&self.config.project.spec.name)
                .await
                .map_err(|e| Failure::new(format!("provider `{}`: {e}", p.name())))?;
            all.extend(nodes);
        }
        Ok(all)
    }

    /// Diffs and checks policies.
    pub async fn plan(&self, operation: Operation, filters: Filters, flags: Flags) -> Result<Plan, Failure> {
        let store = self.store()?;
        let snapshot = store.snapshot()?;
        let providers = self.providers();
        let observed = self.observe(&providers).await?;
        let input = DiffInput {
            config: &self.config,
            snapshot: &snapshot,
            observed: &observed,
            operation,
            filters,
            flags,
            now: Utc::now(),
        };
        let mut plan = plan::diff(&input);
        let mut policies = crate::policy::builtin().map_err(|d| Failure::new(format!("built-in policies are invalid: {d}")))?;
        policies.extend(self.config.policies.values().map(|p| p.spec.clone()));
        plan.violations = crate::policy::check(&plan, &policies);
        Ok(plan)
    }

    /// Apply options from the project and flags.
    pub fn apply_options(&self, parallelism: Option<usize>, interrupted: Arc<AtomicBool>) -> ApplyOptions {
        let project = &self.config.project.spec;
        ApplyOptions {
            store_path: self.store_path.clone(),
            parallelism: parallelism
                .or_else(|| project.apply.as_ref().and_then(|a| a.parallelism).map(|p| p as usize))
                .unwrap_or(DEFAULT_PARALLELISM),
            lock_ttl: project
                .state
                .as_ref()
                .and_then(|s| s.lock_ttl.as_ref())
                .map_or(DEFAULT_LOCK_TTL, |d| d.get()),
            owner: owner(),
            interrupted,
        }
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
