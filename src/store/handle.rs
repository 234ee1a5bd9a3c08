//! The one handle to the state store: [`open`] a URL, get a [`StateStore`].
//!
//! A backend (SQLite, the default, or PostgreSQL) implements the store traits
//! ([`Store`], [`SampleStore`], [`JobStore`], [`TraceStore`], [`TaskStore`]) as blocking,
//! transactional calls on one connection. The handle owns a small pool of
//! such connections and runs each call on tokio's blocking pool
//! ([`StateStore::run`]), so async code never blocks a runtime thread and
//! never names a backend type. Sync code (a CLI command outside a runtime)
//! uses [`StateStore::run_blocking`].
//!
//! Cloning the handle is cheap; clones share the pool. Each call gets a
//! connection of its own for its duration, so a long sample write never
//! delays a lease renewal.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use secrecy::{ExposeSecret, SecretString};

use super::postgres::{redact, PostgresStore};
use super::sqlite::SqliteStore;
use super::{BackendErrorKind, JobStore, Mutation, Result, SampleStore, Snapshot, Store, StoreError, TaskStore, TraceStore};

/// Everything a state store backend does.
pub trait Backend: Store + SampleStore + JobStore + TraceStore + TaskStore + Send + 'static {}

impl<T: Store + SampleStore + JobStore + TraceStore + TaskStore + Send + 'static> Backend for T {}

/// Where a state store lives, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `sqlite:PATH` (relative to the config root), the default.
    Sqlite(PathBuf),
    /// `postgres://user@host:port/db`: a PostgreSQL database, which several
    /// scaler processes can share.
    Postgres {
        /// The URL, without a password.
        url: String,
        /// The password, from `state.password` (a secret reference).
        password: Option<Password>,
    },
}

/// The password of a PostgreSQL store: never shown (`Debug` prints `***`),
/// compared by value.
#[derive(Clone)]
pub struct Password(Arc<SecretString>);

impl Password {
    /// Wraps a secret read from the config.
    pub fn new(secret: SecretString) -> Password {
        Password(Arc::new(secret))
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl PartialEq for Password {
    fn eq(&self, other: &Password) -> bool {
        self.0.expose_secret() == other.0.expose_secret()
    }
}

impl Eq for Password {}

impl Location {
    /// Parses a `state.url`: `sqlite:PATH` (or `sqlite://PATH`), relative
    /// paths taken from `root`, or `postgres://user@host:port/db` (also
    /// `postgresql://`, with libpq-style parameters), whose password is not
    /// written in the URL (which lives in the config repository) but given
    /// with [`Location::with_password`]. `None` is the default
    /// `.scaler/state.db`.
    pub fn parse(url: Option<&str>, root: &Path) -> Result<Location> {
        let Some(u) = url else {
            return Ok(Location::Sqlite(root.join(".scaler").join("state.db")));
        };
        if let Some(rest) = u.strip_prefix("sqlite:") {
            let p = rest.trim_start_matches("//");
            if p.is_empty() {
                return Err(StoreError::Url { url: u.to_string(), reason: "no file path after `sqlite:`".into() });
            }
            return Ok(Location::Sqlite(root.join(p)));
        }
        if u.starts_with("postgres://") || u.starts_with("postgresql://") {
            let refuse = |reason: String| StoreError::Url { url: redact(u), reason };
            let config: postgres::Config = u.parse().map_err(|e: postgres::Error| refuse(e.to_string()))?;
            if config.get_password().is_some() {
                return Err(refuse("a password in `state.url` would be kept in the config repository; give it as `state.password` (`{ env: NAME }` or `{ file: PATH }`)".into()));
            }
            return Ok(Location::Postgres { url: u.to_string(), password: None });
        }
        Err(StoreError::Url { url: redact(u), reason: "unsupported scheme: expected `sqlite:PATH` or `postgres://USER@HOST:PORT/DB`".into() })
    }

    /// The location with the password of a PostgreSQL store
    /// (`state.password`); a SQLite store has none, and refuses one.
    pub fn with_password(self, secret: SecretString) -> Result<Location> {
        match self {
            Location::Postgres { url, .. } => Ok(Location::Postgres { url, password: Some(Password::new(secret)) }),
            Location::Sqlite(p) => Err(StoreError::Url {
                url: format!("sqlite:{}", p.display()),
                reason: "`state.password` is for a `postgres://` state url; a SQLite file has no password".into(),
            }),
        }
    }

    /// The directory beside the store where scaler keeps local files
    /// (local nodes, the daemon token): the SQLite file's folder. A
    /// PostgreSQL store has none (the caller uses `.scaler/` in the repo).
    pub fn state_dir(&self) -> Option<&Path> {
        match self {
            Location::Sqlite(p) => p.parent(),
            Location::Postgres { .. } => None,
        }
    }

    /// Whether the store was created already (a SQLite file exists only
    /// once a command has opened it). A PostgreSQL store is taken to exist:
    /// the first connection creates its tables, and a server that is not
    /// there is an error worth seeing.
    pub fn exists(&self) -> bool {
        match self {
            Location::Sqlite(p) => p.exists(),
            Location::Postgres { .. } => true,
        }
    }

    /// How the store is named in messages (never with a password).
    pub fn label(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres { url, .. } => redact(url),
        }
    }

    fn connect(&self) -> Result<Box<dyn Backend>> {
        match self {
            Location::Sqlite(p) => Ok(Box::new(SqliteStore::open(p)?)),
            Location::Postgres { url, password } => Ok(Box::new(PostgresStore::connect(url, password.as_ref().map(|p| &*p.0))?)),
        }
    }
}

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 4;

struct Pool {
    location: Location,
    label: String,
    idle: Mutex<Vec<Box<dyn Backend>>>,
}

/// The state store: a cheap, cloneable handle over a pool of backend
/// connections.
#[derive(Clone)]
pub struct StateStore {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore").field("location", &self.pool.label).finish()
    }
}

/// Opens the state store at `location`, creating and migrating it if
/// needed (one connection is made at once, so a bad path or a newer schema
/// fails here rather than at first use).
pub fn open(location: &Location) -> Result<StateStore> {
    let first = location.connect()?;
    Ok(StateStore {
        pool: Arc::new(Pool { location: location.clone(), label: location.label(), idle: Mutex::new(vec![first]) }),
    })
}

impl StateStore {
    /// Where the store lives.
    pub fn location(&self) -> &Location {
        &self.pool.location
    }

    /// The store's name for messages (a path or a URL; never a password).
    pub fn label(&self) -> &str {
        &self.pool.label
    }

    fn take(&self) -> Result<Box<dyn Backend>> {
        let idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => self.pool.location.connect(),
        }
    }

    fn give_back(&self, conn: Box<dyn Backend>) {
        if conn.is_closed() {
            return;
        }
        let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// Runs `f` on a connection of its own, on the calling thread. For
    /// code that is not async; async code uses [`StateStore::run`]. `f`
    /// may make several calls (each its own transaction).
    pub fn run_blocking<T>(&self, f: impl FnOnce(&mut dyn Backend) -> Result<T>) -> Result<T> {
        self.run_blocking_as(f)
    }

    /// [`StateStore::run_blocking`] for a closure that returns its caller's
    /// error type (a store error converts into it).
    pub fn run_blocking_as<T, E>(&self, f: impl FnOnce(&mut dyn Backend) -> std::result::Result<T, E>) -> std::result::Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut conn = self.take()?;
        let out = f(conn.as_mut());
        self.give_back(conn);
        out
    }

    /// Runs `f` on a connection of its own, on tokio's blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Backend) -> Result<T> + Send + 'static,
    {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.run_blocking(f)).await {
            Ok(out) => out,
            Err(e) => Err(StoreError::Backend {
                path: self.pool.label.clone(),
                kind: BackendErrorKind::Other,
                source: format!("state store call failed: {e}").into(),
            }),
        }
    }

    /// [`Store::snapshot`].
    pub async fn snapshot(&self) -> Result<Snapshot> {
        self.run(|db| db.snapshot()).await
    }

    /// [`Store::commit`].
    pub async fn commit(&self, mutations: Vec<Mutation>) -> Result<u64> {
        self.run(move |db| db.commit(&mutations)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_backend_or_say_why_not() {
        let root = Path::new("/repo");
        assert_eq!(Location::parse(None, root).ok(), Some(Location::Sqlite(PathBuf::from("/repo/.scaler/state.db"))));
        assert_eq!(Location::parse(Some("sqlite:state/s.db"), root).ok(), Some(Location::Sqlite(PathBuf::from("/repo/state/s.db"))));
        assert_eq!(Location::parse(Some("sqlite:///abs/s.db"), root).ok(), Some(Location::Sqlite(PathBuf::from("/abs/s.db"))));
        let pg = Location::parse(Some("postgres://scaler@db.internal:5433/fleet?connect_timeout=3"), root);
        assert_eq!(pg.ok(), Some(Location::Postgres { url: "postgres://scaler@db.internal:5433/fleet?connect_timeout=3".into(), password: None }));
        assert!(matches!(Location::parse(Some("postgresql://db/fleet"), root), Ok(Location::Postgres { .. })));
        // a password in the URL would sit in the config repository
        let Err(StoreError::Url { url, reason }) = Location::parse(Some("postgres://u:hunter2@db/x"), root) else {
            panic!("a password in the url must be refused")
        };
        assert_eq!(url, "postgres://u:***@db/x");
        assert!(reason.contains("state.password"), "{reason}");
        let Err(StoreError::Url { url, .. }) = Location::parse(Some("postgres://u@db/x?password=hunter2"), root) else {
            panic!("a password parameter must be refused")
        };
        assert_eq!(url, "postgres://u@db/x?password=***");
        assert!(matches!(Location::parse(Some("postgres://db:notaport/x"), root), Err(StoreError::Url { .. })));
        assert!(matches!(Location::parse(Some("mysql://x"), root), Err(StoreError::Url { .. })));
        assert!(matches!(Location::parse(Some("sqlite:"), root), Err(StoreError::Url { .. })));
    }

    #[test]
    fn a_password_is_given_apart_never_shown_and_only_to_postgres() {
        let root = Path::new("/repo");
        let pg = Location::parse(Some("postgres://scaler@db/fleet"), root).and_then(|l| l.with_password(SecretString::from("hunter2")));
        let Ok(pg) = pg else { panic!("{pg:?}") };
        assert!(matches!(&pg, Location::Postgres { password: Some(_), .. }));
        assert!(!format!("{pg:?}").contains("hunter2"), "{pg:?}");
        assert_eq!(pg.label(), "postgres://scaler@db/fleet");
        assert_eq!(pg.state_dir(), None);
        let sqlite = Location::parse(None, root).and_then(|l| l.with_password(SecretString::from("hunter2")));
        assert!(matches!(sqlite, Err(StoreError::Url { .. })), "{sqlite:?}");
    }

    #[test]
    fn connections_are_reused_and_calls_see_each_others_commits() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = open(&Location::Sqlite(dir.path().join("s.db"))).unwrap_or_else(|e| panic!("{e}"));
        let a = store.run_blocking(|db| db.commit(&[Mutation::SetDesired { group: "web".into(), desired: Some(3), base: None }]));
        assert_eq!(a.ok(), Some(1));
        let other = store.clone();
        let desired = other.run_blocking(|db| Ok(db.snapshot()?.desired.get("web").copied()));
        assert_eq!(desired.ok(), Some(Some(3)));
        assert_eq!(store.pool.idle.lock().map(|i| i.len()).unwrap_or(0), 1);
    }
}
