//! The SQLite state store through its public API: lineage and serial, atomic
//! commits, exact round-trips, schema versions, and the lock lease between
//! handles, threads and a killed process.

// Test helpers (not only `#[test]` fns) fail loudly on purpose.
#![allow(clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use scaler::store::sqlite::schema;
use scaler::store::{
    LockInfo, LockRequest, Mutation, NodeRecord, NodeStatus, SqliteStore, Store, StoreError,
    StoredObject,
};
use serde_json::json;

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join(".scaler").join("state.db")
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).expect("open state store")
}

fn put_object(kind: &str, name: &str, spec: serde_json::Value) -> Mutation {
    Mutation::PutObject {
        kind: kind.into(),
        name: name.into(),
        spec,
    }
}

fn at(secs: i64, nanos: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(1_714_564_800 + secs, nanos).expect("valid instant")
}

fn node(group: &str, index: u32) -> NodeRecord {
    NodeRecord {
        name: format!("{group}-{index:02}"),
        group: group.into(),
        index,
        provider: "local".into(),
        provider_id: None,
        status: NodeStatus::Creating,
        created_at: at(index.into(), 123_456_789),
        template_digest: "sha256:abc".into(),
        address: None,
        attrs: json!({}),
    }
}

fn request(owner: &str, ttl: Duration) -> LockRequest {
    LockRequest {
        owner: owner.into(),
        operation: "apply".into(),
        ttl,
    }
}

fn locked_by(result: Result<LockInfo, StoreError>) -> LockInfo {
    match result {
        Err(StoreError::Locked(holder)) => *holder,
        other => panic!("expected `Locked`, got {other:?}"),
    }
}

#[test]
fn lineage_is_fixed_at_creation_and_differs_between_states() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let first = open(&path).snapshot().expect("snapshot").meta;
    assert_eq!(first.serial, 0);
    assert_eq!(first.revision, None);
    assert_eq!(first.config_digest, None);
    uuid::Uuid::parse_str(&first.lineage).expect("lineage is a uuid");

    let mut store = open(&path);
    store
        .commit(&[put_object("group", "web", json!({}))])
        .expect("commit");
    drop(store);
    assert_eq!(
        open(&path).snapshot().expect("snapshot").meta.lineage,
        first.lineage
    );

    let other = open(&dir.path().join("other.db"))
        .snapshot()
        .expect("snapshot")
        .meta;
    assert_ne!(other.lineage, first.lineage);
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
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            )
        }
        other => panic!("expected `Db`, got {other:?}"),
    }
}

#[test]
fn serial_grows_by_one_per_commit_keeps_still_on_empty_ones_and_persists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let mut store = open(&path);
    assert_eq!(store.commit(&[]).expect("empty commit"), 0);
    for expected in 1..=3 {
        let serial = store
            .commit(&[Mutation::SetDesired {
                group: "web".into(),
                desired: Some(expected), base: None
            }])
            .expect("commit");
        assert_eq!(serial, u64::from(expected));
    }
    // many mutations, one commit, one step
    let serial = store
        .commit(&[
            put_object("group", "a", json!(1)),
            put_object("group", "b", json!(2)),
            put_object("group", "c", json!(3)),
        ])
        .expect("commit");
    assert_eq!(serial, 4);
    assert_eq!(store.commit(&[]).expect("empty commit"), 4);
    drop(store);

    let mut store = open(&path);
    assert_eq!(store.snapshot().expect("snapshot").meta.serial, 4);
    assert_eq!(
        store
            .commit(&[Mutation::DeleteNode {
                name: "none".into()
            }])
            .expect("commit"),
        5
    );
}

#[test]
fn a_commit_with_a_failing_mutation_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let mut store = open(&path);
    store
        .commit(&[
            put_object("group", "web", json!({"max": 3})),
            Mutation::PutNode(node("web", 1)),
        ])
        .expect("first commit");
    let before = store.snapshot().expect("snapshot");

    // A second node in slot web/1 breaks the one-node-per-slot rule, after
    // several mutations that would each succeed on their own.
    let mut twin = node("web", 1);
    twin.name = "web-01-twin".into();
    let err = store
        .commit(&[
            put_object("group", "web", json!({"max": 9})),
            put_object("counter", "load1", json!({})),
            Mutation::SetDesired {
                group: "web".into(),
                desired: Some(4), base: None
            },
            Mutation::SetRevision {
                revision: "abc123".into(),
                config_digest: "sha256:def".into(),
            },
            Mutation::DeleteNode {
                name: "web-01".into(),
            },
            Mutation::PutNode(node("web", 2)),
            Mutation::PutNode(node("web", 1)),
            Mutation::PutNode(twin),
        ])
        .expect_err("the slot is taken twice");
    assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
    assert!(err.to_string().contains("UNIQUE"), "{err}");

    assert_eq!(store.snapshot().expect("snapshot"), before);
    assert_eq!(
        open(&path).snapshot().expect("snapshot from a new handle"),
        before
    );
    // the store stays usable, and the failed commit did not use up a serial
    assert_eq!(
        store
            .commit(&[Mutation::PutNode(node("web", 2))])
            .expect("commit"),
        2
    );
}

#[test]
fn objects_nodes_and_desired_counts_round_trip_exactly_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let mut store = open(&path);

    let spec = json!({
        "name": "web-hot",
        "zeta": [1, 2.5, -3, null, true, "ünïcødé ✓"],
        "alpha": {"nested": {"b": 1, "a": 2}},
        "big": 18_446_744_073_709_551_615_u64,
        "empty": {},
    });
    let mut db = node("db", 10);
    db.provider = "ec2".into();
    db.provider_id = Some("i-0123456789abcdef0".into());
    db.status = NodeStatus::Running;
    db.address = Some("10.0.0.7".into());
    db.created_at = at(0, 1); // one nanosecond past the second
    db.attrs =
        json!({"zone": "eu-west-1a", "tags": {"team": "db", "Name": "db-10"}, "ebs": [8, 100]});
    let mut web2 = node("web", 2);
    web2.status = NodeStatus::Terminating;
    web2.created_at = DateTime::from_timestamp(0, 999_999_999).expect("instant");
    let web10 = node("web", 10);

    let serial = store
        .commit(&[
            put_object("trigger", "web-hot", spec.clone()),
            put_object("counter", "load1", json!({"every": "10s"})),
            put_object("counter", "conns", json!(null)),
            Mutation::PutNode(web10.clone()),
            Mutation::PutNode(db.clone()),
            Mutation::PutNode(web2.clone()),
            Mutation::SetDesired {
                group: "web".into(),
                desired: Some(3), base: None
            },
            Mutation::SetDesired {
                group: "db".into(),
                desired: Some(0), base: None
            },
            Mutation::SetRevision {
                revision: "0123abc".into(),
                config_digest: "sha256:feed".into(),
            },
        ])
        .expect("commit");
    assert_eq!(serial, 1);
    // a later commit rewrites one object: only it carries the new serial
    let newer = json!({"every": "30s"});
    assert_eq!(
        store
            .commit(&[put_object("counter", "load1", newer.clone())])
            .expect("commit"),
        2
    );
    drop(store);

    let snapshot = open(&path).snapshot().expect("snapshot");
    assert_eq!(snapshot.meta.serial, 2);
    assert_eq!(snapshot.meta.revision.as_deref(), Some("0123abc"));
    assert_eq!(snapshot.meta.config_digest.as_deref(), Some("sha256:feed"));
    let object = |kind: &str, name: &str, spec: serde_json::Value, serial| StoredObject {
        kind: kind.into(),
        name: name.into(),
        spec,
        serial,
    };
    assert_eq!(
        snapshot.objects,
        vec![
            object("counter", "conns", json!(null), 1),
            object("counter", "load1", newer, 2),
            object("trigger", "web-hot", spec.clone(), 1),
        ]
    );
    // key order inside specs and attrs is kept, not sorted
    assert_eq!(snapshot.objects[2].spec.to_string(), spec.to_string());
    assert_eq!(snapshot.nodes, vec![db.clone(), web2, web10]);
    assert_eq!(snapshot.nodes[0].attrs.to_string(), db.attrs.to_string());
    assert_eq!(
        snapshot.desired.into_iter().collect::<Vec<_>>(),
        vec![("db".to_owned(), 0), ("web".to_owned(), 3)]
    );
}

#[test]
fn putting_a_node_again_replaces_it_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&db_path(&dir));
    store
        .commit(&[Mutation::PutNode(node("web", 1))])
        .expect("commit");
    let mut launched = node("web", 1);
    launched.status = NodeStatus::Running;
    launched.provider_id = Some("4242".into());
    launched.address = Some("127.0.0.1:18001".into());
    launched.attrs = json!({"dir": "/tmp/web-01"});
    store
        .commit(&[Mutation::PutNode(launched.clone())])
        .expect("commit");
    assert_eq!(store.snapshot().expect("snapshot").nodes, vec![launched]);
}

#[test]
fn deletes_remove_exactly_what_they_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&db_path(&dir));
    store
        .commit(&[
            put_object("group", "web", json!({})),
            put_object("group", "db", json!({})),
            put_object("counter", "web", json!({})),
            Mutation::PutNode(node("web", 1)),
            Mutation::PutNode(node("web", 2)),
            Mutation::SetDesired {
                group: "web".into(),
                desired: Some(2), base: None
            },
            Mutation::SetDesired {
                group: "db".into(),
                desired: Some(1), base: None
            },
        ])
        .expect("commit");
    let serial = store
        .commit(&[
            Mutation::DeleteObject {
                kind: "group".into(),
                name: "web".into(),
            },
            Mutation::DeleteNode {
                name: "web-01".into(),
            },
            Mutation::SetDesired {
                group: "web".into(),
                desired: None, base: None
            },
            // deleting what is not there is not an error
            Mutation::DeleteNode {
                name: "web-09".into(),
            },
            Mutation::DeleteObject {
                kind: "trigger".into(),
                name: "web".into(),
            },
            Mutation::SetDesired {
                group: "cache".into(),
                desired: None, base: None
            },
        ])
        .expect("commit");
    assert_eq!(serial, 2);
    let snapshot = store.snapshot().expect("snapshot");
    let objects: Vec<_> = snapshot
        .objects
        .iter()
        .map(|o| (o.kind.as_str(), o.name.as_str()))
        .collect();
    assert_eq!(objects, vec![("counter", "web"), ("group", "db")]);
    assert_eq!(snapshot.nodes, vec![node("web", 2)]);
    assert_eq!(
        snapshot.desired.into_iter().collect::<Vec<_>>(),
        vec![("db".to_owned(), 1)]
    );
}

#[test]
fn the_database_is_in_wal_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let _store = open(&path);
    let conn = rusqlite::Connection::open(&path).expect("open");
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
}

#[test]
fn a_fresh_database_is_at_the_latest_schema_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    drop(open(&path));
    let conn = rusqlite::Connection::open(&path).expect("open");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("user_version");
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
    assert_eq!(tables, ["desired", "events", "jobs", "lock", "meta", "nodes", "objects", "sample_chunks", "sample_failures", "sample_head", "sample_rollups", "series", "trace_tasks", "trigger_states"]);
    // reopening an up-to-date database changes nothing
    let lineage = open(&path).snapshot().expect("snapshot").meta.lineage;
    assert_eq!(
        open(&path).snapshot().expect("snapshot").meta.lineage,
        lineage
    );
}

#[test]
fn a_database_from_a_newer_scaler_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    drop(open(&path));
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.pragma_update(None, "user_version", schema::LATEST + 1)
        .expect("set user_version");
    drop(conn);
    match SqliteStore::open(&path) {
        Err(err @ StoreError::TooNew { .. }) => {
            let StoreError::TooNew {
                found, supported, ..
            } = &err
            else {
                unreachable!()
            };
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
    store
        .commit(&[Mutation::PutNode(node("web", 1))])
        .expect("commit");

    let conn = rusqlite::Connection::open(&path).expect("open");
    // what a hand edit (or another tool) could leave behind
    conn.execute_batch("PRAGMA ignore_check_constraints = ON; UPDATE nodes SET attrs = '{oops';")
        .expect("corrupt attrs");
    match store.snapshot() {
        Err(StoreError::Corrupt { what, .. }) => assert_eq!(what, "node web-01"),
        other => panic!("expected `Corrupt`, got {other:?}"),
    }
    conn.execute_batch(
        "UPDATE nodes SET attrs = '{}', created_at = 'yesterday'; UPDATE nodes SET status = 'gone';",
    )
    .expect("corrupt status");
    assert!(matches!(store.snapshot(), Err(StoreError::Corrupt { .. })));
}

#[test]
fn a_second_handle_is_refused_with_the_holders_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let mut first = open(&path);
    let mut second = open(&path);
    let held = first
        .lock(&request("ann@box", Duration::from_secs(600)))
        .expect("lock");
    assert_eq!(held.id.len(), 32);
    assert_eq!(held.owner, "ann@box");
    assert_eq!(held.operation, "apply");
    assert_eq!(held.pid, std::process::id());
    assert_eq!(held.expires - held.created, TimeDelta::seconds(600));

    let holder = locked_by(second.lock(&request("bob@box", Duration::from_secs(60))));
    assert_eq!(holder, held);
    assert_eq!(
        second.current_lock().expect("current lock"),
        Some(held.clone())
    );
    // the holder itself does not get it twice either
    assert_eq!(
        locked_by(first.lock(&request("ann@box", Duration::from_secs(60)))),
        held
    );

    first.unlock(&held.id).expect("unlock");
    assert_eq!(second.current_lock().expect("current lock"), None);
    let taken = second
        .lock(&request("bob@box", Duration::from_secs(60)))
        .expect("lock after unlock");
    assert_ne!(taken.id, held.id);
    // unlocking a lease that is already gone is fine
    first.unlock(&held.id).expect("unlock again");
}

#[test]
fn the_locked_error_tells_who_holds_it_and_how_to_break_it() {
    let holder = LockInfo {
        id: "0123456789abcdef0123456789abcdef".into(),
        owner: "ann@box".into(),
        host: "box".into(),
        pid: 4242,
        operation: "apply".into(),
        created: at(0, 0),
        expires: at(600, 0),
    };
    insta::assert_snapshot!(
        StoreError::Locked(Box::new(holder)).to_string(),
        @"state is locked by ann@box (pid 4242 on box) (lock `0123456789abcdef0123456789abcdef`, apply since 2024-05-01T12:00:00Z, expires 2024-05-01T12:10:00Z); wait, or break it with `scaler unlock 0123456789abcdef0123456789abcdef`"
    );
}

#[test]
fn an_expired_lease_is_taken_over_and_its_holder_loses_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let mut first = open(&path);
    let mut second = open(&path);
    let t0 = at(0, 0);
    let ttl = Duration::from_secs(30);

    let held = first.lock_at(&request("ann@box", ttl), t0).expect("lock");
    assert_eq!(held.expires, at(30, 0));
    let just_before = held.expires - TimeDelta::nanoseconds(1);
    assert_eq!(
        locked_by(second.lock_at(&request("bob@box", ttl), just_before)),
        held
    );

    let taken = second
        .lock_at(&request("bob@box", ttl), held.expires)
        .expect("take over at expiry");
    assert_eq!(taken.owner, "bob@box");
    assert_eq!(taken.created, held.expires);
    assert_ne!(taken.id, held.id);

    match first.renew_at(&held.id, ttl, at(31, 0)) {
        Err(StoreError::LockLost(id)) => assert_eq!(id, held.id),
        other => panic!("expected `LockLost`, got {other:?}"),
    }
    // the old holder's unlock does not release the new lease
    first.unlock(&held.id).expect("unlock");
    assert_eq!(first.current_lock().expect("current lock"), Some(taken));
}

#[test]
fn renewing_extends_the_lease_from_now() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let mut first = open(&path);
    let mut second = open(&path);
    let ttl = Duration::from_secs(30);
    let held = first
        .lock_at(&request("ann@box", ttl), at(0, 0))
        .expect("lock");

    let renewed = first.renew_at(&held.id, ttl, at(20, 0)).expect("renew");
    assert_eq!(renewed.expires, at(50, 0));
    assert_eq!(
        (renewed.id.as_str(), renewed.created),
        (held.id.as_str(), held.created)
    );
    assert_eq!(
        second.current_lock().expect("current lock"),
        Some(renewed.clone())
    );
    // past the original expiry the lease still holds
    assert_eq!(
        locked_by(second.lock_at(&request("bob@box", ttl), at(40, 0))),
        renewed
    );
    // renewing with the real clock works too
    assert!(first.renew(&held.id, ttl).expect("renew").expires > Utc::now());
    match first.renew(&"f".repeat(32), ttl) {
        Err(StoreError::LockLost(_)) => {}
        other => panic!("expected `LockLost`, got {other:?}"),
    }
}

#[test]
fn force_unlock_takes_the_full_id_or_a_prefix_of_eight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let mut holder = open(&path);
    let mut operator = open(&path);
    let ttl = Duration::from_secs(600);

    let held = holder.lock(&request("ann@box", ttl)).expect("lock");
    for wrong in [&held.id[..7], "", "ffffffff", &format!("{}0", held.id)] {
        match operator.force_unlock(wrong) {
            Err(StoreError::NoSuchLock(id)) => assert_eq!(id, wrong),
            other => panic!("`{wrong}`: expected `NoSuchLock`, got {other:?}"),
        }
    }
    assert_eq!(
        operator.current_lock().expect("current lock"),
        Some(held.clone())
    );

    assert_eq!(
        operator
            .force_unlock(&held.id[..8])
            .expect("break by prefix"),
        held
    );
    assert_eq!(operator.current_lock().expect("current lock"), None);
    match holder.renew(&held.id, ttl) {
        Err(StoreError::LockLost(_)) => {}
        other => panic!("expected `LockLost`, got {other:?}"),
    }

    let held = holder.lock(&request("ann@box", ttl)).expect("lock again");
    assert_eq!(
        operator.force_unlock(&held.id).expect("break by full id"),
        held
    );
    match operator.force_unlock(&held.id) {
        Err(StoreError::NoSuchLock(_)) => {}
        other => panic!("expected `NoSuchLock`, got {other:?}"),
    }
}

#[test]
fn unlocking_someone_elses_id_leaves_their_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let mut holder = open(&path);
    let mut other = open(&path);
    let held = holder
        .lock(&request("ann@box", Duration::from_secs(600)))
        .expect("lock");
    other.unlock(&"0".repeat(32)).expect("unlock of another id");
    // a prefix is not enough for a plain unlock
    other.unlock(&held.id[..8]).expect("unlock of a prefix");
    assert_eq!(
        other.current_lock().expect("current lock"),
        Some(held.clone())
    );
    assert_eq!(
        locked_by(other.lock(&request("bob@box", Duration::from_secs(60)))),
        held
    );
}

#[test]
fn two_threads_committing_on_separate_handles_never_lose_a_commit() {
    const EACH: u64 = 50;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let start = Arc::new(Barrier::new(2));
    let workers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|worker| {
            let path = path.clone();
            let start = Arc::clone(&start);
            std::thread::spawn(move || -> Result<Vec<u64>, StoreError> {
                start.wait();
                // both also race to create and migrate the fresh database
                let mut store = SqliteStore::open(&path)?;
                (0..EACH)
                    .map(|i| store.commit(&[put_object(worker, &i.to_string(), json!(i))]))
                    .collect()
            })
        })
        .collect();
    let mut serials = Vec::new();
    for worker in workers {
        let got = worker
            .join()
            .expect("worker panicked")
            .expect("worker failed");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
        serials.extend(got);
    }
    serials.sort_unstable();
    assert_eq!(serials, (1..=2 * EACH).collect::<Vec<_>>());
    let snapshot = open(&path).snapshot().expect("snapshot");
    assert_eq!(snapshot.meta.serial, 2 * EACH);
    assert_eq!(snapshot.objects.len() as u64, 2 * EACH);
}

/// Set for the child process of [`a_killed_holders_lease_is_refused_until_it_expires`].
const HOLDER_DB_ENV: &str = "SCALER_TEST_LOCK_HOLDER_DB";

/// Not a test: the lock holder that
/// [`a_killed_holders_lease_is_refused_until_it_expires`] runs in a child
/// process and kills. It commits, takes the lock, says so, and waits.
#[test]
#[ignore = "child process of a_killed_holders_lease_is_refused_until_it_expires"]
fn lock_holder_child_process() {
    let Some(path) = std::env::var_os(HOLDER_DB_ENV) else {
        return;
    };
    let mut store = open(Path::new(&path));
    let serial = store
        .commit(&[put_object(
            "group",
            "web",
            json!({"written": "before the kill"}),
        )])
        .expect("commit");
    let held = store
        .lock(&request("child@box", Duration::from_secs(3600)))
        .expect("lock");
    println!("LOCKED {} {serial}", held.id);
    // Hold on until killed (or until the parent goes away and stdin closes).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

#[test]
fn a_killed_holders_lease_is_refused_until_it_expires() {
    use std::os::unix::process::ExitStatusExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "store::lock_holder_child_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLDER_DB_ENV, &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the lock holder");
    let stdout = child.stdout.take().expect("child stdout");
    let mut reported = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child stdout");
        // libtest may print `test NAME ... ` on the same line first
        if let Some((_, rest)) = line.split_once("LOCKED ") {
            reported = Some(rest.to_owned());
            break;
        }
    }
    // Killed while holding the lock: no unlock, no destructor, no exit code.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill -9");
    let status = child.wait().expect("wait");
    let reported = reported.expect("the child took the lock before it was killed");
    assert_eq!(status.signal(), Some(9), "{status}");
    let (id, serial) = reported.split_once(' ').expect("`ID SERIAL`");

    let mut store = open(&path);
    // its commit survived the kill
    let snapshot = store.snapshot().expect("snapshot");
    assert_eq!(snapshot.meta.serial.to_string(), serial);
    assert_eq!(
        snapshot.objects[0].spec,
        json!({"written": "before the kill"})
    );
    // its lease is still there, refused while live
    let lease = store
        .current_lock()
        .expect("current lock")
        .expect("the dead holder's lease");
    assert_eq!((lease.id.as_str(), lease.pid), (id, child.id()));
    let req = request("ann@box", Duration::from_secs(60));
    assert_eq!(locked_by(store.lock(&req)), lease);
    let just_before = lease.expires - TimeDelta::milliseconds(1);
    assert_eq!(locked_by(store.lock_at(&req, just_before)), lease);
    // and taken over once it expires
    let taken = store.lock_at(&req, lease.expires).expect("take over");
    assert_eq!(taken.pid, std::process::id());
    assert_eq!(store.current_lock().expect("current lock"), Some(taken));
}
