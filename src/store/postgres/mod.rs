//! The PostgreSQL backend of the store traits: a state store that several
//! scaler processes (and later several daemons) share over the network.
//!
//! Owns the connection (the synchronous `postgres` client: the store traits
//! are blocking, and the handle runs them on tokio's blocking pool), kept on
//! a thread of its own by [`PostgresStore`] ([`proxy`]), as a [`Session`];
//! the schema and its migrations ([`schema`]), a consistent [`Snapshot`],
//! atomic commits, the lock lease, trigger states and the job queue
//! ([`jobs`]), samples and trace tasks ([`samples`]). It mirrors the SQLite backend's
//! semantics exactly (one conformance suite runs on both) and knows nothing
//! of diffing, policy or providers.
//!
//! Concurrency: every read-modify-write is one transaction (READ COMMITTED)
//! that locks what it decides on: the `meta` row for a commit (so serials
//! never repeat), the `state_lock` table for the lease, the job row (`FOR
//! UPDATE`, and `SKIP LOCKED` when workers look for a due job). A snapshot is
//! one REPEATABLE READ, read-only transaction. Lock waits end after
//! [`LOCK_TIMEOUT`] with a retryable busy error, like SQLite's busy timeout.
//!
//! The lease's expiry is judged by the database's clock: [`Store::lock`] and
//! [`Store::renew`] read `clock_timestamp()` inside their transaction, so
//! members with skewed clocks agree on who holds it. `lock_at`/`renew_at`
//! take the instant from the caller (tests drive expiry with them).

pub mod jobs;
pub mod proxy;
pub mod samples;
pub mod schema;
mod tasks;

pub use proxy::PostgresStore;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::types::FromSql;
use postgres::{GenericClient, NoTls, Row};
use secrecy::{ExposeSecret, SecretString};

use super::lease;
use super::rows::{corrupt, parse_json, parse_u32, parse_u64, timestamp, LockRow, NodeRow};
use super::{BackendErrorKind, LockInfo, LockRequest, Mutation, NodeRecord, Result, SeriesKey, Snapshot, StateMeta, Store, StoreError, StoredObject};

/// How long a statement waits for a row or table lock another transaction
/// holds before it fails with a retryable busy error.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long connecting may take, unless the URL says (`connect_timeout=`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection to the PostgreSQL state store, used on one thread (see
/// [`proxy`]).
pub struct Session {
    /// A cell because the read methods of the store traits take `&self` and
    /// the client needs `&mut` for every query; never borrowed twice (each
    /// method borrows it once, helpers take the borrowed client).
    conn: RefCell<postgres::Client>,
    /// The URL without a password, for messages.
    label: String,
    /// Series ids already looked up or created (committed ones only).
    series_ids: HashMap<SeriesKey, i64>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("url", &self.label).finish()
    }
}

impl Session {
    /// Connects to the database at `url` (`postgres://user@host:port/db`,
    /// any libpq-style parameter the `postgres` crate knows; a password in
    /// the URL is used but never shown), with `password` when given, and
    /// migrates it to the current schema. The tables live in the
    /// connection's current schema (`options=-csearch_path=NAME` picks
    /// one). A new database gets a fresh lineage and serial 0.
    pub(crate) fn connect(url: &str, password: Option<&SecretString>) -> Result<Session> {
        let label = redact(url);
        let mut config: postgres::Config =
            url.parse().map_err(|e: postgres::Error| StoreError::Url { url: label.clone(), reason: e.to_string() })?;
        if let Some(p) = password {
            config.password(p.expose_secret());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("scaler");
        }
        let mut client = config.connect(NoTls).map_err(db_err(&label))?;
        client.batch_execute(&format!("SET lock_timeout = '{}ms'", LOCK_TIMEOUT.as_millis())).map_err(db_err(&label))?;
        schema::migrate(&mut client, &label)?;
        Ok(Session { conn: RefCell::new(client), label, series_ids: HashMap::new() })
    }

    /// Takes the lock as of `at`, or as of the database's clock.
    fn lock_as_of(&mut self, req: &LockRequest, at: Option<DateTime<Utc>>) -> Result<LockInfo> {
        let label = &self.label;
        let db = db_err(label);
        let mut tx = self.conn.get_mut().transaction().map_err(&db)?;
        lock_table(&mut tx, label)?;
        let now = match at {
            Some(t) => t,
            None => db_now(&mut tx, label)?,
        };
        let taken = lease::take(label, read_lock(&mut tx, label)?, req, now)?;
        tx.execute(
            "INSERT INTO state_lock (slot, id, owner, host, pid, operation, created, expires) VALUES (1, $1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (slot) DO UPDATE SET id = excluded.id, owner = excluded.owner, host = excluded.host, pid = excluded.pid,
                 operation = excluded.operation, created = excluded.created, expires = excluded.expires",
            &[&taken.id, &taken.owner, &taken.host, &i64::from(taken.pid), &taken.operation, &timestamp(taken.created), &timestamp(taken.expires)],
        )
        .map_err(&db)?;
        tx.commit().map_err(&db)?;
        tracing::info!(path = %label, lock = %taken.id, operation = %taken.operation, "state lock taken");
        Ok(taken)
    }

    /// Renews our lease as of `at`, or as of the database's clock.
    fn renew_as_of(&mut self, id: &str, ttl: Duration, at: Option<DateTime<Utc>>) -> Result<LockInfo> {
        let label = &self.label;
        let db = db_err(label);
        let mut tx = self.conn.get_mut().transaction().map_err(&db)?;
        lock_table(&mut tx, label)?;
        let mut held = match read_lock(&mut tx, label)? {
            Some(held) if held.id == id => held,
            _ => return Err(StoreError::LockLost(id.to_owned())),
        };
        let now = match at {
            Some(t) => t,
            None => db_now(&mut tx, label)?,
        };
        held.expires = lease::expiry(now, ttl);
        tx.execute("UPDATE state_lock SET expires = $1 WHERE id = $2", &[&timestamp(held.expires), &held.id]).map_err(&db)?;
        tx.commit().map_err(&db)?;
        tracing::debug!(path = %label, lock = %held.id, expires = %held.expires.to_rfc3339(), "state lock renewed");
        Ok(held)
    }
}

impl Store for Session {
    fn snapshot(&self) -> Result<Snapshot> {
        let db = db_err(&self.label);
        let mut conn = self.conn.borrow_mut();
        let mut tx = conn
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(&db)?;
        let (desired, desired_base) = read_desired(&mut tx, &self.label)?;
        let snapshot = Snapshot {
            meta: read_meta(&mut tx, &self.label)?,
            objects: read_objects(&mut tx, &self.label)?,
            nodes: read_nodes(&mut tx, &self.label)?,
            desired,
            desired_base,
        };
        tx.commit().map_err(&db)?;
        Ok(snapshot)
    }

    /// An empty commit changes nothing and keeps the serial (returning it),
    /// as on SQLite.
    fn commit(&mut self, mutations: &[Mutation]) -> Result<u64> {
        let label = &self.label;
        let db = db_err(label);
        let conn = self.conn.get_mut();
        if mutations.is_empty() {
            return Ok(read_meta(conn, label)?.serial);
        }
        let mut tx = conn.transaction().map_err(&db)?;
        let serial = commit_in(&mut tx, label, mutations)?;
        tx.commit().map_err(&db)?;
        tracing::debug!(path = %label, serial, mutations = mutations.len(), "state committed");
        Ok(serial)
    }

    /// Judged by the database's clock.
    fn lock(&mut self, req: &LockRequest) -> Result<LockInfo> {
        self.lock_as_of(req, None)
    }

    fn lock_at(&mut self, req: &LockRequest, now: DateTime<Utc>) -> Result<LockInfo> {
        self.lock_as_of(req, Some(now))
    }

    /// From the database's clock.
    fn renew(&mut self, id: &str, ttl: Duration) -> Result<LockInfo> {
        self.renew_as_of(id, ttl, None)
    }

    fn renew_at(&mut self, id: &str, ttl: Duration, now: DateTime<Utc>) -> Result<LockInfo> {
        self.renew_as_of(id, ttl, Some(now))
    }

    fn unlock(&mut self, id: &str) -> Result<()> {
        let released = self.conn.get_mut().execute("DELETE FROM state_lock WHERE id = $1", &[&id]).map_err(db_err(&self.label))?;
        if released > 0 {
            tracing::info!(path = %self.label, lock = %id, "state lock released");
        }
        Ok(())
    }

    fn force_unlock(&mut self, id: &str) -> Result<LockInfo> {
        let label = &self.label;
        let db = db_err(label);
        let mut tx = self.conn.get_mut().transaction().map_err(&db)?;
        lock_table(&mut tx, label)?;
        let broken = match read_lock(&mut tx, label)? {
            Some(held) if lease::names(&held.id, id) => held,
            _ => return Err(StoreError::NoSuchLock(id.to_owned())),
        };
        tx.execute("DELETE FROM state_lock WHERE id = $1", &[&broken.id]).map_err(&db)?;
        tx.commit().map_err(&db)?;
        tracing::warn!(path = %label, lock = %broken.id, holder = %broken.who(), "state lock broken");
        Ok(broken)
    }

    fn current_lock(&self) -> Result<Option<LockInfo>> {
        read_lock(&mut *self.conn.borrow_mut(), &self.label)
    }

    fn is_closed(&self) -> bool {
        self.conn.borrow().is_closed()
    }
}

/// A URL without its password (`user:secret@` becomes `user:***@`, and a
/// `password=` parameter becomes `password=***`).
pub(crate) fn redact(url: &str) -> String {
    let masked = match url.split_once("://").and_then(|(scheme, rest)| Some((scheme, rest.split_once('@')?))) {
        Some((scheme, (auth, host))) => match auth.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    };
    let Some((base, query)) = masked.split_once('?') else { return masked };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_string(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

/// Wraps a driver error with the URL (without password) and its kind.
pub(crate) fn db_err(label: &str) -> impl Fn(postgres::Error) -> StoreError + '_ {
    move |source| StoreError::Backend { path: label.to_owned(), kind: error_kind(&source), source: Box::new(source) }
}

fn error_kind(e: &postgres::Error) -> BackendErrorKind {
    if e.is_closed() {
        return BackendErrorKind::Connection;
    }
    match e.code().map(|c| c.code()) {
        Some(code) if code.starts_with("23") => BackendErrorKind::Constraint,
        // connection exceptions; the server shutting down or refusing
        Some(code) if code.starts_with("08") || code.starts_with("57P") => BackendErrorKind::Connection,
        // serialization failure, deadlock, lock wait timed out
        Some("40001" | "40P01" | "55P03") => BackendErrorKind::Busy,
        Some(_) => BackendErrorKind::Other,
        None if std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()) => BackendErrorKind::Connection,
        None => BackendErrorKind::Other,
    }
}

/// Reads a column, as an error (not a panic) when its type is not `T`.
pub(crate) fn col<'a, T: FromSql<'a>>(row: &'a Row, idx: usize, label: &str) -> Result<T> {
    row.try_get(idx).map_err(db_err(label))
}

/// Serialises writers of the lease (and waits for a reader's snapshot to
/// end no longer than [`LOCK_TIMEOUT`]); plain reads go on.
fn lock_table(tx: &mut impl GenericClient, label: &str) -> Result<()> {
    tx.batch_execute("LOCK TABLE state_lock IN SHARE ROW EXCLUSIVE MODE").map_err(db_err(label))
}

/// The database's clock, now (not the transaction's start).
fn db_now(tx: &mut impl GenericClient, label: &str) -> Result<DateTime<Utc>> {
    let row = tx.query_one("SELECT clock_timestamp()", &[]).map_err(db_err(label))?;
    col(&row, 0, label)
}

/// Applies `mutations` and bumps the serial inside the caller's
/// transaction (the body of [`Store::commit`], shared with job progress);
/// returns the new serial. The caller ensures `mutations` is not empty.
///
/// The serial is bumped first: the update locks the `meta` row, so a
/// concurrent commit waits and then gets the next serial.
pub(crate) fn commit_in(tx: &mut impl GenericClient, label: &str, mutations: &[Mutation]) -> Result<u64> {
    let db = db_err(label);
    let row = tx
        .query_opt("UPDATE meta SET serial = serial + 1 WHERE id = 1 RETURNING serial", &[])
        .map_err(&db)?
        .ok_or_else(|| corrupt(label, "meta", "the lineage/serial row is missing"))?;
    let serial: i64 = col(&row, 0, label)?;
    for mutation in mutations {
        apply(tx, mutation, serial).map_err(&db)?;
    }
    parse_u64(label, "meta.serial", serial)
}

/// Applies one mutation inside the commit's transaction; `serial` is the
/// commit's new serial.
fn apply(tx: &mut impl GenericClient, mutation: &Mutation, serial: i64) -> std::result::Result<u64, postgres::Error> {
    match mutation {
        Mutation::PutObject { kind, name, spec } => tx.execute(
            "INSERT INTO objects (kind, name, spec, serial) VALUES ($1, $2, $3::text::json, $4)
             ON CONFLICT (kind, name) DO UPDATE SET spec = excluded.spec, serial = excluded.serial",
            &[kind, name, &spec.to_string(), &serial],
        ),
        Mutation::DeleteObject { kind, name } => tx.execute("DELETE FROM objects WHERE kind = $1 AND name = $2", &[kind, name]),
        // An upsert on the name: another node in the same (group, idx) slot
        // is a constraint error and the commit fails whole.
        Mutation::PutNode(node) => tx.execute(
            r#"INSERT INTO nodes (name, "group", idx, provider, provider_id, status, created_at, template_digest, address, attrs)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::json)
               ON CONFLICT (name) DO UPDATE SET
                   "group" = excluded."group", idx = excluded.idx, provider = excluded.provider,
                   provider_id = excluded.provider_id, status = excluded.status,
                   created_at = excluded.created_at, template_digest = excluded.template_digest,
                   address = excluded.address, attrs = excluded.attrs"#,
            &[
                &node.name,
                &node.group,
                &i64::from(node.index),
                &node.provider,
                &node.provider_id,
                &node.status.as_str(),
                &timestamp(node.created_at),
                &node.template_digest,
                &node.address,
                &node.attrs.to_string(),
            ],
        ),
        Mutation::DeleteNode { name } => tx.execute("DELETE FROM nodes WHERE name = $1", &[name]),
        Mutation::SetDesired { group, desired: Some(count), base } => tx.execute(
            r#"INSERT INTO desired ("group", count, base) VALUES ($1, $2, $3)
               ON CONFLICT ("group") DO UPDATE SET count = excluded.count, base = excluded.base"#,
            &[group, &i64::from(*count), &base.map(i64::from)],
        ),
        Mutation::SetDesired { group, desired: None, .. } => tx.execute(r#"DELETE FROM desired WHERE "group" = $1"#, &[group]),
        Mutation::SetRevision { revision, config_digest } => {
            tx.execute("UPDATE meta SET revision = $1, config_digest = $2 WHERE id = 1", &[revision, config_digest])
        }
    }
}

fn read_meta(conn: &mut impl GenericClient, label: &str) -> Result<StateMeta> {
    let row = conn
        .query_opt("SELECT lineage, serial, revision, config_digest FROM meta WHERE id = 1", &[])
        .map_err(db_err(label))?
        .ok_or_else(|| corrupt(label, "meta", "the lineage/serial row is missing"))?;
    Ok(StateMeta {
        lineage: col(&row, 0, label)?,
        serial: parse_u64(label, "meta.serial", col(&row, 1, label)?)?,
        revision: col(&row, 2, label)?,
        config_digest: col(&row, 3, label)?,
    })
}

fn read_objects(conn: &mut impl GenericClient, label: &str) -> Result<Vec<StoredObject>> {
    let rows = conn.query("SELECT kind, name, spec::text, serial FROM objects ORDER BY kind, name", &[]).map_err(db_err(label))?;
    let mut objects = Vec::with_capacity(rows.len());
    for row in &rows {
        let (kind, name): (String, String) = (col(row, 0, label)?, col(row, 1, label)?);
        let what = format!("object {kind}/{name}");
        objects.push(StoredObject {
            spec: parse_json(label, what.clone(), col(row, 2, label)?)?,
            serial: parse_u64(label, what, col(row, 3, label)?)?,
            kind,
            name,
        });
    }
    Ok(objects)
}

fn read_nodes(conn: &mut impl GenericClient, label: &str) -> Result<Vec<NodeRecord>> {
    let rows = conn
        .query(
            r#"SELECT name, "group", idx, provider, provider_id, status, created_at, template_digest, address, attrs::text
               FROM nodes ORDER BY "group", idx"#,
            &[],
        )
        .map_err(db_err(label))?;
    let mut nodes = Vec::with_capacity(rows.len());
    for row in &rows {
        let stored = NodeRow {
            name: col(row, 0, label)?,
            group: col(row, 1, label)?,
            idx: col(row, 2, label)?,
            provider: col(row, 3, label)?,
            provider_id: col(row, 4, label)?,
            status: col(row, 5, label)?,
            created_at: col(row, 6, label)?,
            template_digest: col(row, 7, label)?,
            address: col(row, 8, label)?,
            attrs: col(row, 9, label)?,
        };
        nodes.push(stored.decode(label)?);
    }
    Ok(nodes)
}

/// Runtime desired counts, and the config value each was set against.
type DesiredRows = (BTreeMap<String, u32>, BTreeMap<String, u32>);

fn read_desired(conn: &mut impl GenericClient, label: &str) -> Result<DesiredRows> {
    let rows = conn.query(r#"SELECT "group", count, base FROM desired"#, &[]).map_err(db_err(label))?;
    let mut desired = BTreeMap::new();
    let mut bases = BTreeMap::new();
    for row in &rows {
        let group: String = col(row, 0, label)?;
        let count = parse_u32(label, format!("desired count of {group}"), col(row, 1, label)?)?;
        if let Some(b) = col::<Option<i64>>(row, 2, label)? {
            bases.insert(group.clone(), parse_u32(label, format!("desired base of {group}"), b)?);
        }
        desired.insert(group, count);
    }
    Ok((desired, bases))
}

fn read_lock(conn: &mut impl GenericClient, label: &str) -> Result<Option<LockInfo>> {
    let row = conn
        .query_opt("SELECT id, owner, host, pid, operation, created, expires FROM state_lock WHERE slot = 1", &[])
        .map_err(db_err(label))?;
    let Some(row) = row else { return Ok(None) };
    let stored = LockRow {
        id: col(&row, 0, label)?,
        owner: col(&row, 1, label)?,
        host: col(&row, 2, label)?,
        pid: col(&row, 3, label)?,
        operation: col(&row, 4, label)?,
        created: col(&row, 5, label)?,
        expires: col(&row, 6, label)?,
    };
    stored.decode(label).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_a_label() {
        assert_eq!(redact("postgres://u:hunter2@db:5432/x"), "postgres://u:***@db:5432/x");
        assert_eq!(redact("postgres://u@db/x?password=hunter2&sslmode=disable"), "postgres://u@db/x?password=***&sslmode=disable");
        assert_eq!(redact("postgresql://db/x"), "postgresql://db/x");
        assert_eq!(redact("postgres://u@db/x?application_name=a"), "postgres://u@db/x?application_name=a");
    }
}
