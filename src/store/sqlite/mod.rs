//! The SQLite backend of the [`Store`]: the default, embedded state store
//! (`.scaler/state.db` beside the config).
//!
//! Owns the database file: opening it (WAL, durable commits, busy timeout),
//! the schema and its migrations ([`schema`]), reading a consistent
//! [`Snapshot`], applying a commit atomically, and the lock lease (whose pure
//! rules live in [`lease`]), trigger states and the job queue ([`jobs`]).
//! It knows nothing of diffing, policy or providers.
//!
//! Concurrency: every write is one `BEGIN IMMEDIATE` transaction, so writers
//! from several handles or processes queue on SQLite's write lock (up to
//! [`BUSY_TIMEOUT`]) instead of failing; a snapshot is one read transaction and
//! never blocks nor is blocked by writers (WAL).

pub mod jobs;
pub mod samples;
pub mod schema;
mod tasks;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use super::lease;
use super::rows::{parse_u64, stored_serial, timestamp, LockRow, NodeRow};
pub(crate) use super::rows::{corrupt, parse_json, parse_u32};
use super::{LockInfo, LockRequest, Mutation, NodeRecord, Result, Snapshot, StateMeta, Store, StoreError, StoredObject};

/// How long a write waits for another writer before failing with "database is locked".
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite state store.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    /// `path` for error messages.
    label: String,
    /// Series ids already looked up or created (committed ones only).
    series_ids: std::collections::HashMap<crate::store::SeriesKey, i64>,
    /// Newest sample time per series id written through this handle.
    last_ts: std::collections::HashMap<i64, i64>,
}

impl SqliteStore {
    /// Opens (creating if needed, with its parent directories) the state
    /// database at `path` and migrates it to the current schema. A new
    /// database gets a fresh lineage and serial 0.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let label = path.display().to_string();
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let conn = connect(path, &label)?;
        Ok(SqliteStore {
            conn,
            path: path.to_owned(),
            label,
            series_ids: Default::default(),
            last_ts: Default::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Store for SqliteStore {
    fn snapshot(&self) -> Result<Snapshot> {
        let db = db_err(&self.label);
        // Deferred: the read transaction starts at the first SELECT and sees
        // one consistent version of the database until it ends.
        let tx = self.conn.unchecked_transaction().map_err(&db)?;
        let (desired, desired_base) = read_desired(&tx, &self.label)?;
        let snapshot = Snapshot {
            meta: read_meta(&tx, &self.label)?,
            objects: read_objects(&tx, &self.label)?,
            nodes: read_nodes(&tx, &self.label)?,
            desired,
            desired_base,
        };
        tx.commit().map_err(&db)?;
        Ok(snapshot)
    }

    /// An empty commit changes nothing and keeps the serial (returning it):
    /// the serial counts changes, and a plan made before a no-op stays fresh.
    fn commit(&mut self, mutations: &[Mutation]) -> Result<u64> {
        let db = db_err(&self.label);
        if mutations.is_empty() {
            return Ok(read_meta(&self.conn, &self.label)?.serial);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&db)?;
        let serial = commit_in(&tx, &self.label, mutations)?;
        tx.commit().map_err(&db)?;
        tracing::debug!(path = %self.label, serial, mutations = mutations.len(), "state committed");
        Ok(serial)
    }

    fn lock_at(&mut self, req: &LockRequest, now: DateTime<Utc>) -> Result<LockInfo> {
        let db = db_err(&self.label);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&db)?;
        let taken = lease::take(&self.label, read_lock(&tx, &self.label)?, req, now)?;
        tx.execute(
            "INSERT OR REPLACE INTO lock (slot, id, owner, host, pid, operation, created, expires)
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                taken.id,
                taken.owner,
                taken.host,
                taken.pid,
                taken.operation,
                timestamp(taken.created),
                timestamp(taken.expires),
            ],
        )
        .map_err(&db)?;
        tx.commit().map_err(&db)?;
        tracing::info!(path = %self.label, lock = %taken.id, operation = %taken.operation, "state lock taken");
        Ok(taken)
    }

    fn renew_at(&mut self, id: &str, ttl: Duration, now: DateTime<Utc>) -> Result<LockInfo> {
        let db = db_err(&self.label);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&db)?;
        let mut held = match read_lock(&tx, &self.label)? {
            Some(held) if held.id == id => held,
            _ => return Err(StoreError::LockLost(id.to_owned())),
        };
        held.expires = lease::expiry(now, ttl);
        tx.execute(
            "UPDATE lock SET expires = ?1 WHERE id = ?2",
            params![timestamp(held.expires), held.id],
        )
        .map_err(&db)?;
        tx.commit().map_err(&db)?;
        tracing::debug!(path = %self.label, lock = %held.id, expires = %held.expires.to_rfc3339(), "state lock renewed");
        Ok(held)
    }

    fn unlock(&mut self, id: &str) -> Result<()> {
        let released = self
            .conn
            .execute("DELETE FROM lock WHERE id = ?1", [id])
            .map_err(db_err(&self.label))?;
        if released > 0 {
            tracing::info!(path = %self.label, lock = %id, "state lock released");
        }
        Ok(())
    }

    fn force_unlock(&mut self, id: &str) -> Result<LockInfo> {
        let db = db_err(&self.label);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&db)?;
        let broken = match read_lock(&tx, &self.label)? {
            Some(held) if lease::names(&held.id, id) => held,
            _ => return Err(StoreError::NoSuchLock(id.to_owned())),
        };
        tx.execute("DELETE FROM lock WHERE id = ?1", [&broken.id])
            .map_err(&db)?;
        tx.commit().map_err(&db)?;
        tracing::warn!(path = %self.label, lock = %broken.id, holder = %broken.who(), "state lock broken");
        Ok(broken)
    }

    fn current_lock(&self) -> Result<Option<LockInfo>> {
        read_lock(&self.conn, &self.label)
    }
}

/// Opens the connection, sets it up and migrates the schema.
fn connect(path: &Path, label: &str) -> Result<Connection> {
    let db = db_err(label);
    let mut conn = Connection::open(path).map_err(&db)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(&db)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(&db)?;
    // FULL rather than NORMAL: in WAL mode both survive a `kill -9` of the
    // process (committed pages are in the OS cache), but only FULL syncs
    // the WAL on every commit, so a commit also survives a power loss or
    // kernel crash. A commit records e.g. "instance i-123 launched"; losing
    // it would make the state lie. Commits are per apply step, so the
    // extra fsync costs nothing that matters.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(&db)?;
    // Refuse a newer schema before changing anything in the file.
    schema::check_version(schema::version(&conn, label)?, label)?;
    let mode = enable_wal(&conn, label)?;
    if !mode.eq_ignore_ascii_case("wal") {
        // E.g. a file system without shared memory: still correct, only
        // readers and the writer block each other.
        tracing::warn!(path = %label, %mode, "state store could not switch to WAL mode");
    }
    schema::migrate(&mut conn, label)?;
    Ok(conn)
}

/// Switches the database to WAL (a persistent setting, so only the first open
/// of a new file really switches) and returns the journal mode in effect.
///
/// The switch needs an exclusive lock, and when two connections switch a new
/// file at once SQLite answers one of them `SQLITE_BUSY` at once, without the
/// busy handler (waiting could deadlock). By then the other has switched, so
/// that one retries, within [`BUSY_TIMEOUT`] as the busy handler would.
fn enable_wal(conn: &Connection, label: &str) -> Result<String> {
    let db = db_err(label);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .map_err(&db)?;
    if mode.eq_ignore_ascii_case("wal") {
        return Ok(mode);
    }
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
            Err(e)
                if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            result => return result.map_err(&db),
        }
    }
}

/// Wraps a SQLite error with the database path.
pub(crate) fn db_err(label: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| {
        let kind = match source.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => crate::store::BackendErrorKind::Busy,
            Some(ErrorCode::CannotOpen) => crate::store::BackendErrorKind::Connection,
            Some(ErrorCode::ConstraintViolation) => crate::store::BackendErrorKind::Constraint,
            _ => crate::store::BackendErrorKind::Other,
        };
        StoreError::Backend { path: label.to_owned(), kind, source: Box::new(source) }
    }
}

/// Applies `mutations` and bumps the serial inside the caller's write
/// transaction (the body of [`Store::commit`], shared with job progress);
/// returns the new serial. The caller ensures `mutations` is not empty.
pub(crate) fn commit_in(tx: &Connection, label: &str, mutations: &[Mutation]) -> Result<u64> {
    let db = db_err(label);
    let serial = read_meta(tx, label)?.serial + 1;
    let stored = stored_serial(label, serial)?;
    for mutation in mutations {
        apply(tx, mutation, stored).map_err(&db)?;
    }
    tx.execute("UPDATE meta SET serial = ?1 WHERE id = 1", [stored])
        .map_err(&db)?;
    Ok(serial)
}

/// Applies one mutation inside the commit's transaction; `serial` is the
/// commit's new serial.
fn apply(tx: &Connection, mutation: &Mutation, serial: i64) -> rusqlite::Result<()> {
    match mutation {
        Mutation::PutObject { kind, name, spec } => tx.execute(
            "INSERT INTO objects (kind, name, spec, serial) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (kind, name) DO UPDATE SET spec = excluded.spec, serial = excluded.serial",
            params![kind, name, spec.to_string(), serial],
        ),
        Mutation::DeleteObject { kind, name } => tx.execute(
            "DELETE FROM objects WHERE kind = ?1 AND name = ?2",
            params![kind, name],
        ),
        // An upsert on the name, not `INSERT OR REPLACE`: REPLACE would
        // silently delete another node holding the same (group, idx) slot;
        // here that is a constraint error and the commit fails whole.
        Mutation::PutNode(node) => tx.execute(
            r#"INSERT INTO nodes (name, "group", idx, provider, provider_id, status, created_at,
                                  template_digest, address, attrs)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
               ON CONFLICT (name) DO UPDATE SET
                   "group" = excluded."group", idx = excluded.idx, provider = excluded.provider,
                   provider_id = excluded.provider_id, status = excluded.status,
                   created_at = excluded.created_at, template_digest = excluded.template_digest,
                   address = excluded.address, attrs = excluded.attrs"#,
            params![
                node.name,
                node.group,
                node.index,
                node.provider,
                node.provider_id,
                node.status.as_str(),
                timestamp(node.created_at),
                node.template_digest,
                node.address,
                node.attrs.to_string(),
            ],
        ),
        Mutation::DeleteNode { name } => tx.execute("DELETE FROM nodes WHERE name = ?1", [name]),
        Mutation::SetDesired {
            group,
            desired: Some(count),
            base,
        } => tx.execute(
            r#"INSERT INTO desired ("group", count, base) VALUES (?1, ?2, ?3)
               ON CONFLICT ("group") DO UPDATE SET count = excluded.count, base = excluded.base"#,
            params![group, count, base],
        ),
        Mutation::SetDesired {
            group,
            desired: None,
            ..
        } => tx.execute(r#"DELETE FROM desired WHERE "group" = ?1"#, [group]),
        Mutation::SetRevision {
            revision,
            config_digest,
        } => tx.execute(
            "UPDATE meta SET revision = ?1, config_digest = ?2 WHERE id = 1",
            params![revision, config_digest],
        ),
    }
    .map(drop)
}

fn read_meta(conn: &Connection, label: &str) -> Result<StateMeta> {
    let row = conn
        .query_row(
            "SELECT lineage, serial, revision, config_digest FROM meta WHERE id = 1",
            [],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, Option<String>>(3)?,
                ))
            },
        )
        .optional()
        .map_err(db_err(label))?;
    let (lineage, serial, revision, config_digest) =
        row.ok_or_else(|| corrupt(label, "meta", "the lineage/serial row is missing"))?;
    Ok(StateMeta {
        lineage,
        serial: parse_u64(label, "meta.serial", serial)?,
        revision,
        config_digest,
    })
}

fn read_objects(conn: &Connection, label: &str) -> Result<Vec<StoredObject>> {
    let db = db_err(label);
    let mut stmt = conn
        .prepare("SELECT kind, name, spec, serial FROM objects ORDER BY kind, name")
        .map_err(&db)?;
    let rows = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })
        .map_err(&db)?;
    let mut objects = Vec::new();
    for row in rows {
        let (kind, name, spec, serial) = row.map_err(&db)?;
        let what = format!("object {kind}/{name}");
        objects.push(StoredObject {
            spec: parse_json(label, what.clone(), &spec)?,
            serial: parse_u64(label, what, serial)?,
            kind,
            name,
        });
    }
    Ok(objects)
}

fn read_nodes(conn: &Connection, label: &str) -> Result<Vec<NodeRecord>> {
    let db = db_err(label);
    let mut stmt = conn
        .prepare(
            r#"SELECT name, "group", idx, provider, provider_id, status, created_at,
                      template_digest, address, attrs
               FROM nodes ORDER BY "group", idx"#,
        )
        .map_err(&db)?;
    let rows = stmt
        .query_map([], |row| {
            Ok(NodeRow {
                name: row.get(0)?,
                group: row.get(1)?,
                idx: row.get(2)?,
                provider: row.get(3)?,
                provider_id: row.get(4)?,
                status: row.get(5)?,
                created_at: row.get(6)?,
                template_digest: row.get(7)?,
                address: row.get(8)?,
                attrs: row.get(9)?,
            })
        })
        .map_err(&db)?;
    let mut nodes = Vec::new();
    for row in rows {
        nodes.push(row.map_err(&db)?.decode(label)?);
    }
    Ok(nodes)
}

/// Runtime desired counts, and the config value each was set against.
type DesiredRows = (BTreeMap<String, u32>, BTreeMap<String, u32>);

fn read_desired(conn: &Connection, label: &str) -> Result<DesiredRows> {
    let db = db_err(label);
    let mut stmt = conn
        .prepare(r#"SELECT "group", count, base FROM desired"#)
        .map_err(&db)?;
    let rows = stmt
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, Option<i64>>(2)?))
        })
        .map_err(&db)?;
    let mut desired = BTreeMap::new();
    let mut bases = BTreeMap::new();
    for row in rows {
        let (group, count, base) = row.map_err(&db)?;
        let count = parse_u32(label, format!("desired count of {group}"), count)?;
        if let Some(b) = base {
            bases.insert(group.clone(), parse_u32(label, format!("desired base of {group}"), b)?);
        }
        desired.insert(group, count);
    }
    Ok((desired, bases))
}

fn read_lock(conn: &Connection, label: &str) -> Result<Option<LockInfo>> {
    let row = conn
        .query_row("SELECT id, owner, host, pid, operation, created, expires FROM lock WHERE slot = 1", [], |row| {
            Ok(LockRow {
                id: row.get(0)?,
                owner: row.get(1)?,
                host: row.get(2)?,
                pid: row.get(3)?,
                operation: row.get(4)?,
                created: row.get(5)?,
                expires: row.get(6)?,
            })
        })
        .optional()
        .map_err(db_err(label))?;
    row.map(|row| row.decode(label)).transpose()
}
