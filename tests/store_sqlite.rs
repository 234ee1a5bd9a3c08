//! What only the SQLite backend does: the database file (parent directories,
//! a file that is not a database), WAL mode, schema versions, corrupt rows
//! written behind its back, SQLite's own error text, and the sample chunk
//! layout (head, sealed chunks, whole-chunk rollups). Everything the store
//! traits promise is in `store_conformance`, run on SQLite too.

// Test helpers (not only `#[test]` fns) fail loudly on purpose.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};

use scaler::store::sqlite::schema;
use scaler::store::{Agg, BackendErrorKind, Mutation, NodeStatus, Retention, Sample, SampleStore, SeriesKey, Selector, SqliteStore, Store, StoreError};

use crate::store_conformance::node;
use crate::store_conformance::samples::{two_days_of_samples, S, T0};

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join(".scaler").join("state.db")
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).expect("open state store")
}

#[test]
fn open_creates_missing_parent_directories_and_reports_the_ones_it_cannot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a").join("b").join("state.db");
    let store = open(&path);
    assert_eq!(store.path(), path);
    assert!(path.is_file());

    let file = dir.path().join("plain-file");
    std::fs::write(&file, "not a directory").expect("write");
    match SqliteStore::open(&file.join("state.db")) {
        Err(StoreError::Dir { path, .. }) => assert_eq!(path, file.display().to_string()),
        other => panic!("expected `Dir`, got {other:?}"),
    }
}

#[test]
fn a_file_that_is_not_a_database_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    std::fs::write(&path, vec![b'x'; 4096]).expect("write");
    match SqliteStore::open(&path) {
        Err(err @ StoreError::Backend { .. }) => {
            assert!(err.to_string().contains(&path.display().to_string()), "{err}")
        }
        other => panic!("expected `Db`, got {other:?}"),
    }
}

#[test]
fn a_refused_commit_carries_sqlites_own_message_and_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let mut store = open(&path);
    // two nodes in slot web/1
    let mut twin = node("web", 1);
    twin.name = "web-01-twin".into();
    let err = store.commit(&[Mutation::PutNode(node("web", 1)), Mutation::PutNode(twin)]).expect_err("the slot is taken twice");
    assert!(matches!(err, StoreError::Backend { kind: BackendErrorKind::Constraint, .. }), "{err:?}");
    assert!(err.to_string().contains("UNIQUE"), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

#[test]
fn the_database_is_in_wal_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let _store = open(&path);
    let conn = rusqlite::Connection::open(&path).expect("open");
    let mode: String = conn.pragma_query_value(None, "journal_mode", |row| row.get(0)).expect("journal_mode");
    assert_eq!(mode, "wal");
}

#[test]
fn a_node_recorded_running_before_the_life_cycle_is_ready_after_the_migration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let conn = rusqlite::Connection::open(&path).expect("open");
    // Version 5: `running` meant launched and past the readiness check.
    for script in &schema::MIGRATIONS[..5] {
        conn.execute_batch(script).expect("migrate");
    }
    conn.pragma_update(None, "user_version", 5).expect("user_version");
    conn.execute_batch(
        "INSERT INTO meta (id, lineage, serial) VALUES (1, 'l', 1);
         INSERT INTO nodes (name, \"group\", idx, provider, status, created_at, template_digest, attrs)
         VALUES ('web-01', 'web', 1, 'local', 'running', '2024-05-01T12:00:00.000000000Z', '', '{}'),
                ('web-02', 'web', 2, 'local', 'creating', '2024-05-01T12:00:00.000000000Z', '', '{}');",
    )
    .expect("insert");
    drop(conn);
    let nodes = open(&path).snapshot().expect("snapshot").nodes;
    let got: Vec<(&str, NodeStatus)> = nodes.iter().map(|n| (n.name.as_str(), n.status)).collect();
    assert_eq!(got, [("web-01", NodeStatus::Ready), ("web-02", NodeStatus::Creating)]);
}

#[test]
fn a_fresh_database_is_at_the_latest_schema_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    drop(open(&path));
    let conn = rusqlite::Connection::open(&path).expect("open");
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0)).expect("user_version");
    assert_eq!(version, schema::LATEST);
    assert_eq!(schema::LATEST, schema::MIGRATIONS.len() as i64);
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .expect("prepare")
        .query_map([], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    tables.retain(|t| !t.starts_with("sqlite_"));
    assert_eq!(tables, ["desired", "events", "jobs", "lock", "meta", "nodes", "objects", "plans", "sample_chunks", "sample_failures", "sample_head", "sample_rollups", "series", "tasks", "trace_tasks", "trigger_states"]);
    // reopening an up-to-date database changes nothing
    let lineage = open(&path).snapshot().expect("snapshot").meta.lineage;
    assert_eq!(open(&path).snapshot().expect("snapshot").meta.lineage, lineage);
}

#[test]
fn a_database_from_a_newer_scaler_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    drop(open(&path));
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.pragma_update(None, "user_version", schema::LATEST + 1).expect("set user_version");
    drop(conn);
    match SqliteStore::open(&path) {
        Err(err @ StoreError::TooNew { .. }) => {
            let StoreError::TooNew { found, supported, .. } = &err else { unreachable!() };
            assert_eq!((*found, *supported), (schema::LATEST + 1, schema::LATEST));
            assert!(err.to_string().contains("upgrade scaler"), "{err}");
        }
        other => panic!("expected `TooNew`, got {other:?}"),
    }
}

#[test]
fn undecodable_stored_records_are_reported_as_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let mut store = open(&path);
    store.commit(&[Mutation::PutNode(node("web", 1))]).expect("commit");

    let conn = rusqlite::Connection::open(&path).expect("open");
    // what a hand edit (or another tool) could leave behind
    conn.execute_batch("PRAGMA ignore_check_constraints = ON; UPDATE nodes SET attrs = '{oops';").expect("corrupt attrs");
    match store.snapshot() {
        Err(StoreError::Corrupt { what, .. }) => assert_eq!(what, "node web-01"),
        other => panic!("expected `Corrupt`, got {other:?}"),
    }
    conn.execute_batch("UPDATE nodes SET attrs = '{}', created_at = 'yesterday'; UPDATE nodes SET status = 'gone';").expect("corrupt status");
    assert!(matches!(store.snapshot(), Err(StoreError::Corrupt { .. })));
}

#[test]
fn sealed_chunks_and_head_are_read_together_and_compress() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut st = open(&db_path(&dir));
    let k = SeriesKey::new("req", "h1");
    // 3000 samples in small batches (the live path: the head), then seal
    for batch in 0..30i64 {
        let samples: Vec<Sample> = (batch * 100..batch * 100 + 100).map(|i| Sample::value(k.clone(), T0 + i * S, (i * 7) as f64)).collect();
        st.append(&samples).unwrap();
    }
    assert_eq!(st.sample_stats().unwrap().head_samples, 3000);
    let report = st.maintain(T0 + 3000 * S, &Retention::default()).unwrap();
    assert_eq!(report.sealed, 3000);
    let stats = st.sample_stats().unwrap();
    assert_eq!((stats.chunk_samples, stats.head_samples), (3000, 0));
    assert!(stats.chunk_bytes < 3000, "{} bytes for 3000 samples", stats.chunk_bytes);
    // more samples land in the head; a query spans both
    st.append(&[Sample::value(k.clone(), T0 + 3000 * S, 21000.0)]).unwrap();
    let raw = &st.raw(&Selector::counter("req"), T0 + 2998 * S, T0 + 4000 * S).unwrap()[0].1;
    assert_eq!(raw, &vec![(T0 + 2998 * S, 20986.0), (T0 + 2999 * S, 20993.0), (T0 + 3000 * S, 21000.0)]);
    // a bulk batch of newer samples is sealed directly
    let bulk: Vec<Sample> = (3001..5000i64).map(|i| Sample::value(k.clone(), T0 + i * S, (i * 7) as f64)).collect();
    st.append(&bulk).unwrap();
    assert_eq!(st.sample_stats().unwrap().head_samples, 1);
    assert_eq!(st.aggregate(&Selector::counter("req"), Agg::Count, T0, T0 + 5000 * S).unwrap()[0].1, Some(5000.0));
    assert_eq!(st.aggregate(&Selector::counter("req"), Agg::Rate, T0, T0 + 5000 * S).unwrap()[0].1, Some(0.7));
    assert_eq!(st.latest(&Selector::counter("req"), T0 + 10_000 * S).unwrap()[0].ts_ms, T0 + 4999 * S);
}

#[test]
fn retention_rolls_up_whole_sealed_chunks_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut st = open(&db_path(&dir));
    let retention = two_days_of_samples(&mut st);
    let report = st.maintain(T0 + 2 * 86_400_000, &retention).unwrap();
    // whole chunks of 1024 samples that end before the cutoff (8 of them);
    // the chunk straddling the cutoff waits until it is wholly past it
    assert_eq!(report.rolled_up, 8192, "{report:?}");
    let cutoff = T0 + 86_400_000;
    let kept = &st.raw(&Selector::counter("mem"), T0, cutoff - 1).unwrap()[0].1;
    assert_eq!((kept.len(), kept.first().map(|p| p.0)), (8640 - 8192, Some(T0 + 8192 * S)));
}
