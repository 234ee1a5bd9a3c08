//! The PostgreSQL schema and its versioned migrations.
//!
//! `schema_migrations` records every script applied (version, when); the
//! database's version is the highest. Scripts are append-only: once released,
//! a script is never edited; a change is a new script. A database written by
//! a newer scaler is refused before anything is changed.
//!
//! Opening connections migrate concurrently without harm: the migration
//! transaction takes a transaction-scoped advisory lock keyed by the schema
//! the tables live in, and re-reads the version under it, so each script runs
//! exactly once.
//!
//! Column types mirror the SQLite schema: integers are `bigint`, JSON is
//! `json` (kept as written, key order included; read back as text),
//! instants are RFC 3339 text with nine fraction digits (exact to the
//! nanosecond, as on SQLite), times of the job queue and samples are ms since
//! the epoch. Sorted text columns use the `"C"` collation, so that order is
//! byte order, as on SQLite, whatever the database's locale.

use postgres::{Client, GenericClient};
use uuid::Uuid;

use super::{col, db_err};
use crate::store::rows::corrupt;
use crate::store::{Result, StoreError};

/// Version 1: everything SQLite's version 5 has. Lineage/serial, applied
/// objects, nodes, desired counts (with their base), the lock lease; trigger
/// states and the job queue; series, samples (one row each), failures,
/// rollups, raw events; trace tasks.
const V1: &str = r#"
CREATE TABLE meta (
    id            integer PRIMARY KEY CHECK (id = 1),
    lineage       text    NOT NULL,
    serial        bigint  NOT NULL CHECK (serial >= 0),
    revision      text,
    config_digest text
);

CREATE TABLE objects (
    kind   text COLLATE "C" NOT NULL,
    name   text COLLATE "C" NOT NULL,
    spec   json   NOT NULL,
    serial bigint NOT NULL CHECK (serial >= 0),
    PRIMARY KEY (kind, name)
);

-- One node per slot of a group.
CREATE TABLE nodes (
    name            text COLLATE "C" PRIMARY KEY,
    "group"         text COLLATE "C" NOT NULL,
    idx             bigint NOT NULL CHECK (idx >= 0),
    provider        text   NOT NULL,
    provider_id     text,
    status          text   NOT NULL CHECK (status IN ('creating', 'running', 'terminating')),
    created_at      text   NOT NULL,
    template_digest text   NOT NULL,
    address         text,
    attrs           json   NOT NULL,
    UNIQUE ("group", idx)
);

CREATE TABLE desired (
    "group" text COLLATE "C" PRIMARY KEY,
    count   bigint NOT NULL CHECK (count >= 0),
    base    bigint CHECK (base IS NULL OR base >= 0)
);

-- The state lock: at most one lease (slot 1).
CREATE TABLE state_lock (
    slot      integer PRIMARY KEY CHECK (slot = 1),
    id        text   NOT NULL,
    owner     text   NOT NULL,
    host      text   NOT NULL,
    pid       bigint NOT NULL CHECK (pid >= 0),
    operation text   NOT NULL,
    created   text   NOT NULL,
    expires   text   NOT NULL
);

CREATE TABLE trigger_states (
    name       text COLLATE "C" NOT NULL,
    state_key  text COLLATE "C" NOT NULL,
    state      json   NOT NULL,
    updated_ms bigint NOT NULL,
    PRIMARY KEY (name, state_key)
);

-- A job's idem_key (`<trigger>@<fire ms>`) is unique: a second enqueue of
-- one fire is a no-op. Ids come from a sequence: increasing, with gaps
-- where a transaction rolled back.
CREATE TABLE jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idem_key         text   NOT NULL UNIQUE,
    trigger_name     text   NOT NULL,
    fired_at_ms      bigint NOT NULL,
    revision         text,
    payload          json   NOT NULL,
    status           text   NOT NULL CHECK (status IN ('queued', 'leased', 'done', 'dead')),
    attempts         bigint NOT NULL CHECK (attempts >= 0),
    max_attempts     bigint NOT NULL CHECK (max_attempts >= 1),
    run_after_ms     bigint NOT NULL,
    lease_owner      text,
    lease_expires_ms bigint,
    actions_done     bigint NOT NULL CHECK (actions_done >= 0),
    result           json   NOT NULL,
    last_error       text,
    created_ms       bigint NOT NULL,
    updated_ms       bigint NOT NULL
);
CREATE INDEX jobs_due ON jobs (status, run_after_ms);
CREATE INDEX jobs_lease ON jobs (status, lease_expires_ms);
CREATE INDEX jobs_by_trigger ON jobs (trigger_name, id);

CREATE TABLE series (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    counter text COLLATE "C" NOT NULL,
    host    text COLLATE "C" NOT NULL,
    labels  text COLLATE "C" NOT NULL,
    UNIQUE (counter, host, labels)
);

-- One row per sample; the primary key is the (series, time) index.
CREATE TABLE samples (
    series bigint NOT NULL,
    ts     bigint NOT NULL,
    value  double precision NOT NULL,
    PRIMARY KEY (series, ts)
);

CREATE TABLE sample_failures (
    series bigint NOT NULL,
    ts     bigint NOT NULL,
    error  text   NOT NULL,
    PRIMARY KEY (series, ts)
);

CREATE TABLE sample_rollups (
    series bigint NOT NULL,
    ts     bigint NOT NULL,
    min    double precision NOT NULL,
    max    double precision NOT NULL,
    sum    double precision NOT NULL,
    count  bigint NOT NULL CHECK (count > 0),
    PRIMARY KEY (series, ts)
);

CREATE TABLE events (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source text   NOT NULL,
    host   text   NOT NULL,
    ts     bigint NOT NULL,
    text   text   NOT NULL
);
CREATE INDEX events_by_source ON events (source, ts, id);

CREATE TABLE trace_tasks (
    id         text COLLATE "C" PRIMARY KEY,
    counter    text   NOT NULL,
    host       text   NOT NULL,
    command    text   NOT NULL,
    worker_pid bigint,
    pid        bigint,
    started_ms bigint NOT NULL,
    ended_ms   bigint,
    status     text   NOT NULL CHECK (status IN ('running', 'stopped', 'exited', 'failed')),
    detail     text
);
"#;

/// Version 2: what SQLite's version 6 adds: API tasks and stored plans.
const V2: &str = r#"
CREATE TABLE tasks (
    id          text COLLATE "C" PRIMARY KEY,
    kind        text   NOT NULL CHECK (kind IN ('run', 'exec', 'plan', 'apply', 'trigger')),
    state       text   NOT NULL CHECK (state IN ('pending', 'running', 'success', 'failure', 'cancelled')),
    created_ms  bigint NOT NULL,
    started_ms  bigint,
    finished_ms bigint,
    request     json   NOT NULL,
    result      json,
    error       text
);
CREATE INDEX tasks_by_time ON tasks (created_ms, id);
CREATE INDEX tasks_by_state ON tasks (state);

CREATE TABLE plans (
    id         text COLLATE "C" PRIMARY KEY,
    revision   text   NOT NULL,
    state      text   NOT NULL CHECK (state IN ('held', 'approved', 'applying', 'applied', 'superseded', 'failed')),
    reason     text,
    created_ms bigint NOT NULL,
    updated_ms bigint NOT NULL,
    plan       json   NOT NULL
);
CREATE INDEX plans_by_time ON plans (created_ms, id);
"#;

/// Version 3: the node life cycle (`creating` -> `running` -> `reachable`
/// -> `provisioned` -> `ready`). A node recorded `running` before had passed
/// its launch and readiness check, which is `ready` now.
const V3: &str = r#"
ALTER TABLE nodes DROP CONSTRAINT nodes_status_check;
UPDATE nodes SET status = 'ready' WHERE status = 'running';
ALTER TABLE nodes ADD CONSTRAINT nodes_status_check
    CHECK (status IN ('creating', 'running', 'reachable', 'provisioned', 'ready', 'terminating'));
"#;

/// The migrations, oldest first.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3];

/// The schema version this build writes and understands.
pub const LATEST: i32 = MIGRATIONS.len() as i32;

/// Scope of the migration's advisory lock (with the schema's name as the
/// second key): "scal" in ASCII.
const LOCK_CLASS: i32 = 0x7363_616c;

/// The version of the schema the connection sees: 0 when it has no
/// `schema_migrations` table yet.
pub fn version(conn: &mut impl GenericClient, label: &str) -> Result<i32> {
    let db = db_err(label);
    let row = conn.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[]).map_err(&db)?;
    if !col::<bool>(&row, 0, label)? {
        return Ok(0);
    }
    let row = conn.query_one("SELECT coalesce(max(version), 0) FROM schema_migrations", &[]).map_err(&db)?;
    col(&row, 0, label)
}

/// Fails with [`StoreError::TooNew`] if `found` is newer than this build.
pub fn check_version(found: i32, label: &str) -> Result<()> {
    if found > LATEST {
        return Err(StoreError::TooNew { path: label.to_owned(), found: found.into(), supported: LATEST.into() });
    }
    Ok(())
}

/// Brings the database to [`LATEST`] in one transaction; on a fresh
/// database also records a new lineage and serial 0.
pub fn migrate(client: &mut Client, label: &str) -> Result<()> {
    let db = db_err(label);
    let found = version(client, label)?;
    check_version(found, label)?;
    if found == LATEST {
        return Ok(());
    }
    let mut tx = client.transaction().map_err(&db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))", &[&LOCK_CLASS]).map_err(&db)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer     PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .map_err(&db)?;
    let found = version(&mut tx, label)?;
    check_version(found, label)?;
    let from = usize::try_from(found).map_err(|_| corrupt(label, "schema_migrations", format_args!("negative schema version {found}")))?;
    for (done, script) in MIGRATIONS.iter().enumerate().skip(from) {
        tx.batch_execute(script).map_err(&db)?;
        let reached = done as i32 + 1;
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&reached]).map_err(&db)?;
        tracing::info!(path = label, version = reached, "state store schema migrated");
    }
    if found == 0 {
        let lineage = Uuid::new_v4().to_string();
        tx.execute("INSERT INTO meta (id, lineage, serial) VALUES (1, $1, 0)", &[&lineage]).map_err(&db)?;
        tracing::info!(path = label, %lineage, "new state created");
    }
    tx.commit().map_err(&db)
}
