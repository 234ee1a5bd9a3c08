//! The SQLite schema and its versioned migrations.
//!
//! [`MIGRATIONS`] is an ordered list of SQL scripts; script `i` takes the
//! database from version `i` to `i + 1`, and `PRAGMA user_version` records the
//! version reached. Scripts are append-only: once released, a script is never
//! edited; a change is a new script.

use rusqlite::{Connection, TransactionBehavior};
use uuid::Uuid;

use super::db_err;
use crate::store::{Result, StoreError};

/// Version 1: lineage/serial, applied objects, nodes, desired counts, the lock.
///
/// Tables are `STRICT`, so a value of the wrong type is refused instead of
/// stored. Timestamps are RFC 3339 UTC text with a fixed nine-digit fraction
/// (`2024-05-01T12:00:00.123456789Z`), readable and sortable as text.
const V1: &str = r#"
CREATE TABLE meta (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    lineage       TEXT    NOT NULL,
    serial        INTEGER NOT NULL CHECK (serial >= 0),
    revision      TEXT,
    config_digest TEXT
) STRICT;

CREATE TABLE objects (
    kind   TEXT    NOT NULL,
    name   TEXT    NOT NULL,
    spec   TEXT    NOT NULL CHECK (json_valid(spec)),
    serial INTEGER NOT NULL CHECK (serial >= 0),
    PRIMARY KEY (kind, name)
) STRICT;

-- One node per slot of a group: the name is derived from group and index,
-- and a launch is idempotent per slot.
CREATE TABLE nodes (
    name            TEXT    PRIMARY KEY,
    "group"         TEXT    NOT NULL,
    idx             INTEGER NOT NULL CHECK (idx >= 0),
    provider        TEXT    NOT NULL,
    provider_id     TEXT,
    status          TEXT    NOT NULL CHECK (status IN ('creating', 'running', 'terminating')),
    created_at      TEXT    NOT NULL,
    template_digest TEXT    NOT NULL,
    address         TEXT,
    attrs           TEXT    NOT NULL CHECK (json_valid(attrs)),
    UNIQUE ("group", idx)
) STRICT;

CREATE TABLE desired (
    "group" TEXT    PRIMARY KEY,
    count   INTEGER NOT NULL CHECK (count >= 0)
) STRICT;

-- The state lock: at most one lease (slot 1).
CREATE TABLE lock (
    slot      INTEGER PRIMARY KEY CHECK (slot = 1),
    id        TEXT    NOT NULL,
    owner     TEXT    NOT NULL,
    host      TEXT    NOT NULL,
    pid       INTEGER NOT NULL CHECK (pid >= 0),
    operation TEXT    NOT NULL,
    created   TEXT    NOT NULL,
    expires   TEXT    NOT NULL
) STRICT;
"#;

/// Version 2: time series. Series ids; a head of recent samples (one row
/// each, durable as soon as committed); sealed chunks (pco-compressed
/// timestamp and value columns of one series); failures (a collection error
/// is never a number); rollups (min/max/sum/count per bucket, for data past
/// raw retention); raw events (stream lines). Timestamps are ms since the
/// epoch.
const V2: &str = r#"
CREATE TABLE series (
    id      INTEGER PRIMARY KEY,
    counter TEXT    NOT NULL,
    host    TEXT    NOT NULL,
    labels  TEXT    NOT NULL CHECK (json_valid(labels)),
    UNIQUE (counter, host, labels)
) STRICT;

CREATE TABLE sample_head (
    series INTEGER NOT NULL,
    ts     INTEGER NOT NULL,
    value  REAL    NOT NULL,
    PRIMARY KEY (series, ts)
) STRICT, WITHOUT ROWID;

CREATE TABLE sample_chunks (
    id       INTEGER PRIMARY KEY,
    series   INTEGER NOT NULL,
    start_ts INTEGER NOT NULL,
    end_ts   INTEGER NOT NULL CHECK (end_ts >= start_ts),
    count    INTEGER NOT NULL CHECK (count > 0),
    ts       BLOB    NOT NULL,
    vals     BLOB    NOT NULL
) STRICT;
CREATE INDEX sample_chunks_by_end ON sample_chunks (series, end_ts);

CREATE TABLE sample_failures (
    series INTEGER NOT NULL,
    ts     INTEGER NOT NULL,
    error  TEXT    NOT NULL,
    PRIMARY KEY (series, ts)
) STRICT, WITHOUT ROWID;

CREATE TABLE sample_rollups (
    series INTEGER NOT NULL,
    ts     INTEGER NOT NULL,
    min    REAL    NOT NULL,
    max    REAL    NOT NULL,
    sum    REAL    NOT NULL,
    count  INTEGER NOT NULL CHECK (count > 0),
    PRIMARY KEY (series, ts)
) STRICT, WITHOUT ROWID;

CREATE TABLE events (
    id     INTEGER PRIMARY KEY,
    source TEXT    NOT NULL,
    host   TEXT    NOT NULL,
    ts     INTEGER NOT NULL,
    text   TEXT    NOT NULL
) STRICT;
CREATE INDEX events_by_source ON events (source, ts);
"#;

/// Version 3: trace tasks (long-running `stream` commands started with
/// `scaler trace start`): the worker's and the command's process ids, and
/// how the task ended.
const V3: &str = r#"
CREATE TABLE trace_tasks (
    id         TEXT    PRIMARY KEY,
    counter    TEXT    NOT NULL,
    host       TEXT    NOT NULL,
    command    TEXT    NOT NULL,
    worker_pid INTEGER,
    pid        INTEGER,
    started_ms INTEGER NOT NULL,
    ended_ms   INTEGER,
    status     TEXT    NOT NULL CHECK (status IN ('running', 'stopped', 'exited', 'failed')),
    detail     TEXT
) STRICT;
"#;

/// Version 4: persisted trigger states (opaque JSON per trigger and key) and
/// the durable job queue. A job's `idem_key` (`<trigger>@<fire ms>`) is
/// unique: a second enqueue of one fire is a no-op. Times are ms since the
/// epoch.
const V4: &str = r#"
CREATE TABLE trigger_states (
    name       TEXT    NOT NULL,
    state_key  TEXT    NOT NULL,
    state      TEXT    NOT NULL CHECK (json_valid(state)),
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (name, state_key)
) STRICT;

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY,
    idem_key         TEXT    NOT NULL UNIQUE,
    trigger_name     TEXT    NOT NULL,
    fired_at_ms      INTEGER NOT NULL,
    revision         TEXT,
    payload          TEXT    NOT NULL CHECK (json_valid(payload)),
    status           TEXT    NOT NULL CHECK (status IN ('queued', 'leased', 'done', 'dead')),
    attempts         INTEGER NOT NULL CHECK (attempts >= 0),
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    run_after_ms     INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_ms INTEGER,
    actions_done     INTEGER NOT NULL CHECK (actions_done >= 0),
    result           TEXT    NOT NULL CHECK (json_valid(result)),
    last_error       TEXT,
    created_ms       INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL
) STRICT;
CREATE INDEX jobs_due ON jobs (status, run_after_ms);
CREATE INDEX jobs_lease ON jobs (status, lease_expires_ms);
CREATE INDEX jobs_by_trigger ON jobs (trigger_name, id);
"#;

/// Version 5: the config `desired` value a runtime desired count was set
/// against (NULL for counts written before), so that the one desired-count
/// rule (`plan::desired`) can tell a runtime change made on top of a git
/// change from one that a later git change overrides.
const V5: &str = r#"
ALTER TABLE desired ADD COLUMN base INTEGER CHECK (base IS NULL OR base >= 0);
"#;

/// Version 6: API tasks (long work with an id: runs, commands, trigger
/// fires, plans, applies) and stored plans (held for approval, with their
/// life cycle). Times are ms since the epoch; request, result and plan are
/// JSON.
const V6: &str = r#"
CREATE TABLE tasks (
    id          TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL CHECK (kind IN ('run', 'exec', 'plan', 'apply', 'trigger')),
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'running', 'success', 'failure', 'cancelled')),
    created_ms  INTEGER NOT NULL,
    started_ms  INTEGER,
    finished_ms INTEGER,
    request     TEXT    NOT NULL CHECK (json_valid(request)),
    result      TEXT    CHECK (result IS NULL OR json_valid(result)),
    error       TEXT
) STRICT;
CREATE INDEX tasks_by_time ON tasks (created_ms, id);
CREATE INDEX tasks_by_state ON tasks (state);

CREATE TABLE plans (
    id         TEXT    PRIMARY KEY,
    revision   TEXT    NOT NULL,
    state      TEXT    NOT NULL CHECK (state IN ('held', 'approved', 'applying', 'applied', 'superseded', 'failed')),
    reason     TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    plan       TEXT    NOT NULL CHECK (json_valid(plan))
) STRICT;
CREATE INDEX plans_by_time ON plans (created_ms, id);
"#;

/// Version 7: the node life cycle (`creating` -> `running` -> `reachable`
/// -> `provisioned` -> `ready`). SQLite cannot alter a CHECK constraint, so
/// the table is rebuilt. A node recorded `running` before had passed its
/// launch and readiness check, which is `ready` now.
const V7: &str = r#"
CREATE TABLE nodes_v7 (
    name            TEXT    PRIMARY KEY,
    "group"         TEXT    NOT NULL,
    idx             INTEGER NOT NULL CHECK (idx >= 0),
    provider        TEXT    NOT NULL,
    provider_id     TEXT,
    status          TEXT    NOT NULL CHECK (status IN ('creating', 'running', 'reachable', 'provisioned', 'ready', 'terminating')),
    created_at      TEXT    NOT NULL,
    template_digest TEXT    NOT NULL,
    address         TEXT,
    attrs           TEXT    NOT NULL CHECK (json_valid(attrs)),
    UNIQUE ("group", idx)
) STRICT;
INSERT INTO nodes_v7 (name, "group", idx, provider, provider_id, status, created_at, template_digest, address, attrs)
    SELECT name, "group", idx, provider, provider_id,
           CASE status WHEN 'running' THEN 'ready' ELSE status END,
           created_at, template_digest, address, attrs
    FROM nodes;
DROP TABLE nodes;
ALTER TABLE nodes_v7 RENAME TO nodes;
"#;

/// The migrations, oldest first.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7];

/// The schema version this build writes and understands.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// The database's `user_version`.
pub fn version(conn: &Connection, label: &str) -> Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(db_err(label))
}

/// Fails with [`StoreError::TooNew`] if `found` is newer than this build.
pub fn check_version(found: i64, label: &str) -> Result<()> {
    if found > LATEST {
        return Err(StoreError::TooNew {
            path: label.to_owned(),
            found,
            supported: LATEST,
        });
    }
    Ok(())
}

/// Brings the database to [`LATEST`] in one `BEGIN IMMEDIATE` transaction; on
/// a fresh database also records a new lineage and serial 0. Concurrent
/// openers are serialised by the write lock and re-read the version inside it,
/// so each script runs exactly once.
pub fn migrate(conn: &mut Connection, label: &str) -> Result<()> {
    let db = db_err(label);
    if version(conn, label)? == LATEST {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&db)?;
    let found = version(&tx, label)?;
    check_version(found, label)?;
    let from = usize::try_from(found).map_err(|_| StoreError::Corrupt {
        path: label.to_owned(),
        what: "user_version".into(),
        detail: format!("negative schema version {found}"),
    })?;
    for (done, script) in MIGRATIONS.iter().enumerate().skip(from) {
        tx.execute_batch(script).map_err(&db)?;
        let reached = done + 1;
        tx.pragma_update(None, "user_version", reached as i64)
            .map_err(&db)?;
        tracing::info!(
            path = label,
            version = reached,
            "state store schema migrated"
        );
    }
    if found == 0 {
        let lineage = Uuid::new_v4().to_string();
        tx.execute(
            "INSERT INTO meta (id, lineage, serial) VALUES (1, ?1, 0)",
            [&lineage],
        )
        .map_err(&db)?;
        tracing::info!(path = label, %lineage, "new state created");
    }
    tx.commit().map_err(&db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_applies_in_order_on_an_empty_database() {
        let mut conn = Connection::open_in_memory().expect("in-memory db");
        migrate(&mut conn, ":memory:").expect("migrate");
        assert_eq!(version(&conn, ":memory:").expect("version"), LATEST);
        let serial: i64 = conn
            .query_row("SELECT serial FROM meta", [], |row| row.get(0))
            .expect("meta row");
        assert_eq!(serial, 0);
        // idempotent
        migrate(&mut conn, ":memory:").expect("migrate again");
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM meta", [], |row| row.get(0))
            .expect("count");
        assert_eq!(rows, 1);
    }

    #[test]
    fn newer_versions_are_refused() {
        assert!(check_version(LATEST, "x").is_ok());
        assert!(matches!(
            check_version(LATEST + 1, "x"),
            Err(StoreError::TooNew { found, supported, .. }) if found == LATEST + 1 && supported == LATEST
        ));
    }
}
