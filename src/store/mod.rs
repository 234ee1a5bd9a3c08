//! The state store seam: what scaler recorded about the fleet.
//!
//! State = applied revision and config digest, applied config objects, nodes,
//! runtime desired counts per group, all versioned by a lineage id (fixed at
//! creation) and a serial that increases on every commit. Plus the state lock,
//! a lease (id, owner, host, pid, operation, created, expires).
//!
//! Samples: the time-series side ([`samples`]): series, samples and failures,
//! compressed chunks ([`codec`]), range queries, window aggregates, retention
//! with rollups, raw events.
//!
//! Jobs: the durable job queue and persisted trigger states ([`jobs`]).
//!
//! Tasks: the API's long work and the plans held for approval ([`tasks`]).
//!
//! Backends: SQLite (default, embedded) and PostgreSQL (a server several
//! scaler processes share), behind the same traits. Every backend runs the
//! one conformance suite
//! (`tests/store_conformance.rs`: a harness and one line per backend).
//! Everything outside this module opens a store with
//! [`open`] and uses the one async handle, [`StateStore`]; no other module
//! names a backend type. Must not contain domain logic (no diffing, no policy).

pub mod codec;
mod handle;
pub mod jobs;
mod lease;
#[doc(hidden)]
pub mod postgres;
mod rows;
pub mod samples;
#[doc(hidden)]
pub mod sqlite;
pub mod tasks;
pub mod traces;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use jobs::{Enqueued, Job, JobFilter, JobStatus, JobStore, NewJob, TriggerRecord};
pub use samples::{Agg, Event, Latest, MaintainReport, RangeQuery, Retention, Sample, SampleStore, SampleValue, SeriesKey, SeriesPoints, Selector};
pub use handle::{open, Backend, Location, StateStore};
/// The PostgreSQL backend, for its own tests (schema version, the
/// database's clock); everything else uses [`StateStore`].
#[doc(hidden)]
pub use self::postgres::PostgresStore;
/// The SQLite backend, for its own tests (WAL, schema version, chosen
/// instants); everything else uses [`StateStore`].
#[doc(hidden)]
pub use sqlite::SqliteStore;
pub use tasks::{PlanMove, PlanRecord, PlanState, TaskFilter, TaskKind, TaskRecord, TaskState, TaskStore};
pub use traces::{TraceStatus, TraceStore, TraceTask};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be opened or used (the database driver's
    /// error, whatever the backend).
    #[error("state store `{path}`: {source}")]
    Backend {
        /// The database path or URL (never with a password).
        path: String,
        /// What kind of failure it is; decides [`StoreError::is_retryable`].
        kind: BackendErrorKind,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The state URL names no backend this build has, or is malformed.
    #[error("state url `{url}`: {reason}")]
    Url {
        /// The URL as written.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The state directory could not be created.
    #[error("cannot create state directory `{path}`: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The database was written by a newer scaler.
    #[error("state store `{path}` has schema version {found}, newer than this scaler understands ({supported}); upgrade scaler")]
    TooNew {
        /// The database path.
        path: String,
        /// Version found.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// Stored data could not be decoded.
    #[error("state store `{path}`: corrupt record {what}: {detail}")]
    Corrupt {
        /// The database path.
        path: String,
        /// Which record.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// The lock is held by someone else (boxed: it keeps `StoreError`, and
    /// every `Result` carrying it, small).
    #[error("state is locked by {} (lock `{}`, {} since {}, expires {}); wait, or break it with `scaler unlock {}`", .0.who(), .0.id, .0.operation, .0.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), .0.expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), .0.id)]
    Locked(Box<LockInfo>),
    /// The lock we hold was lost (expired and taken, or broken).
    #[error("state lock `{0}` was lost (expired or broken by `scaler unlock`)")]
    LockLost(String),
    /// A sample chunk could not be encoded or decoded.
    #[error("state store `{path}`: {source}")]
    Codec {
        /// The database path.
        path: String,
        /// The cause.
        #[source]
        source: codec::CodecError,
    },
    /// No trace task matches.
    #[error("no trace task `{0}`; see `scaler trace list`")]
    NoSuchTrace(String),
    /// A prefix matches several trace tasks.
    #[error("`{prefix}` matches {count} trace tasks; give more characters of the id")]
    AmbiguousTrace {
        /// The prefix given.
        prefix: String,
        /// How many tasks match.
        count: usize,
    },
    /// A task id prefix shorter than 8 characters.
    #[error("`{0}` is too short: give at least 8 characters of the trace task id")]
    TracePrefixTooShort(String),
    /// No lock with this id.
    #[error("no state lock `{0}` is held")]
    NoSuchLock(String),
    /// A worker wrote to a job whose lease it no longer holds (it expired
    /// and another worker took the job, or the job ended).
    #[error("job {id}: worker `{worker}` no longer holds its lease (it expired and was taken over, or the job ended)")]
    LeaseLost {
        /// The job.
        id: i64,
        /// The worker that lost it.
        worker: String,
    },
}

/// The kind of a backend failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendErrorKind {
    /// Another writer held the database for too long; try again.
    Busy,
    /// The connection to the database was lost or could not be made.
    Connection,
    /// A constraint refused the write (a bug or a conflicting record).
    Constraint,
    /// The file or database is not a state store, or another failure.
    Other,
}

impl StoreError {
    /// Whether the same operation may succeed when tried again later
    /// (a busy database, a lost connection, a lease that moved is not).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Backend { kind: BackendErrorKind::Busy | BackendErrorKind::Connection, .. })
    }
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Lineage, serial and what was last applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateMeta {
    /// Fixed when the state is created; a plan from another lineage is stale.
    pub lineage: String,
    /// Increases by one on every non-empty commit.
    pub serial: u64,
    /// The applied revision (git commit id, or `dir:<digest>` for a plain directory).
    pub revision: Option<String>,
    /// Digest of the applied config.
    pub config_digest: Option<String>,
}

/// An applied config object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredObject {
    /// `Kind::slug()` (`group`, `counter`...).
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// The object as applied (canonical JSON of the model type).
    pub spec: serde_json::Value,
    /// The serial of the commit that last wrote it.
    pub serial: u64,
}

/// The life-cycle status of a recorded node (DESIGN §5): `creating` ->
/// `running` -> `reachable` -> `provisioned` -> `ready`, or `terminating`.
/// Only a `ready` node is capacity and a host of its group's target; a node
/// in an earlier stage is unfinished work that the next apply resumes or
/// replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// A launch was started and may or may not have finished.
    Creating,
    /// The provider says the node runs.
    Running,
    /// It answers where scaler reaches it (SSH, or the readiness port).
    Reachable,
    /// Its Puppet manifest and bootstrap playbook ran successfully.
    Provisioned,
    /// Every stage is done: it counts as capacity and is a host.
    Ready,
    /// A terminate was started and may or may not have finished.
    Terminating,
}

impl NodeStatus {
    /// The stages of a node's life before `terminating`, in order.
    pub const STAGES: [NodeStatus; 5] =
        [NodeStatus::Creating, NodeStatus::Running, NodeStatus::Reachable, NodeStatus::Provisioned, NodeStatus::Ready];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Creating => "creating",
            NodeStatus::Running => "running",
            NodeStatus::Reachable => "reachable",
            NodeStatus::Provisioned => "provisioned",
            NodeStatus::Ready => "ready",
            NodeStatus::Terminating => "terminating",
        }
    }

    /// The status named `text`.
    pub fn parse(text: &str) -> Option<NodeStatus> {
        NodeStatus::STAGES.into_iter().chain([NodeStatus::Terminating]).find(|s| s.as_str() == text)
    }
}

/// A node scaler launched (or is launching).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NodeRecord {
    /// The node's name (`web-03`); unique.
    pub name: String,
    /// Its group.
    pub group: String,
    /// Its slot number in the group (3 for `web-03`).
    pub index: u32,
    /// Provider name (`local`, `ec2`).
    pub provider: String,
    /// The provider's id (pid, instance id), once known.
    pub provider_id: Option<String>,
    /// Life-cycle status.
    pub status: NodeStatus,
    /// When the launch was recorded.
    pub created_at: DateTime<Utc>,
    /// Digest of the template it was launched from.
    pub template_digest: String,
    /// Address to reach it (`127.0.0.1:18001`, an IP), once known.
    pub address: Option<String>,
    /// Provider-specific attributes.
    pub attrs: serde_json::Value,
}

/// One change inside a commit.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Insert or replace an applied object.
    PutObject {
        /// Kind slug.
        kind: String,
        /// Name.
        name: String,
        /// Spec.
        spec: serde_json::Value,
    },
    /// Remove an applied object.
    DeleteObject {
        /// Kind slug.
        kind: String,
        /// Name.
        name: String,
    },
    /// Insert or replace a node (by name).
    PutNode(NodeRecord),
    /// Remove a node record.
    DeleteNode {
        /// The node's name.
        name: String,
    },
    /// Set (or with `None` forget) the runtime desired count of a group.
    SetDesired {
        /// The group.
        group: String,
        /// The count.
        desired: Option<u32>,
        /// The config's `desired` value (or `min`) the count was set
        /// against; see `plan::desired`. `None`: unknown.
        base: Option<u32>,
    },
    /// Record the applied revision and config digest.
    SetRevision {
        /// Revision.
        revision: String,
        /// Config digest.
        config_digest: String,
    },
}

/// Who asks for the lock, and for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRequest {
    /// `user@host` or a daemon id.
    pub owner: String,
    /// The operation (`apply`, `destroy`...).
    pub operation: String,
    /// Lease length; the holder renews it before it runs out.
    pub ttl: std::time::Duration,
}

/// A held state lock (a lease).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Random id; `scaler unlock ID` breaks it.
    pub id: String,
    /// Who holds it.
    pub owner: String,
    /// Host name of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// The operation.
    pub operation: String,
    /// When it was taken.
    pub created: DateTime<Utc>,
    /// When it expires unless renewed.
    pub expires: DateTime<Utc>,
}

impl LockInfo {
    /// `owner (pid P on HOST)`.
    pub fn who(&self) -> String {
        format!("{} (pid {} on {})", self.owner, self.pid, self.host)
    }
}

/// The whole recorded state, read in one transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Lineage, serial, revision.
    pub meta: StateMeta,
    /// Applied objects, sorted by kind then name.
    pub objects: Vec<StoredObject>,
    /// Nodes, sorted by group then index.
    pub nodes: Vec<NodeRecord>,
    /// Runtime desired counts.
    pub desired: BTreeMap<String, u32>,
    /// For each runtime desired count that has one, the config value it
    /// was set against.
    #[serde(default)]
    pub desired_base: BTreeMap<String, u32>,
}

/// The state store. Every `commit` is atomic and increases the serial by one;
/// an empty one changes nothing.
pub trait Store: Send {
    /// Reads the whole state consistently.
    fn snapshot(&self) -> Result<Snapshot>;
    /// Applies the mutations atomically (all or none); returns the new serial.
    /// An empty list changes nothing and returns the current serial.
    fn commit(&mut self, mutations: &[Mutation]) -> Result<u64>;
    /// Takes the lock, or fails with [`StoreError::Locked`] if another live
    /// lease holds it. An expired lease is taken over.
    fn lock(&mut self, req: &LockRequest) -> Result<LockInfo> {
        self.lock_at(req, Utc::now())
    }
    /// [`Store::lock`] as of the instant `now`: a lease is live until its
    /// `expires`, and the new one runs from `now` (tests pass chosen
    /// instants to drive expiry).
    fn lock_at(&mut self, req: &LockRequest, now: DateTime<Utc>) -> Result<LockInfo>;
    /// Extends our lease; fails with [`StoreError::LockLost`] if it is gone.
    fn renew(&mut self, id: &str, ttl: std::time::Duration) -> Result<LockInfo> {
        self.renew_at(id, ttl, Utc::now())
    }
    /// [`Store::renew`] as of the instant `now`: the lease then expires at
    /// `now + ttl`.
    fn renew_at(&mut self, id: &str, ttl: std::time::Duration, now: DateTime<Utc>) -> Result<LockInfo>;
    /// Releases our lease (no error if it is already gone).
    fn unlock(&mut self, id: &str) -> Result<()>;
    /// Breaks a lease on purpose (`scaler unlock ID`); returns what was broken.
    fn force_unlock(&mut self, id: &str) -> Result<LockInfo>;
    /// The current lease, if any (expired ones included, marked by `expires`).
    fn current_lock(&self) -> Result<Option<LockInfo>>;
    /// Whether this connection is gone for good (the server closed it), so
    /// that [`StateStore`] drops it instead of reusing it.
    fn is_closed(&self) -> bool {
        false
    }
}
