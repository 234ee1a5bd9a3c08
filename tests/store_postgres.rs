//! What only the PostgreSQL backend does: its versioned migrations (a
//! version table, concurrent first connections, a newer schema refused),
//! the lease judged by the database's clock, a server that is not there or
//! that drops the connection, byte order of text whatever the server's
//! locale, and rows corrupted behind its back. Everything the store traits
//! promise is in `store_conformance`, run on PostgreSQL too.

// Test helpers (not only `#[test]` fns) fail loudly on purpose.
#![allow(clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use scaler::store::postgres::schema;
use scaler::store::{self, BackendErrorKind, LockRequest, Location, Mutation, PostgresStore, Store, StoreError};
use serde_json::json;

use crate::harness::{free_port, stderr, stdout, Cli};
use crate::harness::pg::{with_param, PgSchema};
use crate::store_conformance::node;

fn open(schema: &PgSchema) -> PostgresStore {
    PostgresStore::connect(&schema.url(), None).expect("connect to the PostgreSQL state store")
}

fn db_clock(client: &mut postgres::Client) -> DateTime<Utc> {
    client.query_one("SELECT clock_timestamp()", &[]).expect("clock_timestamp").get(0)
}

#[test]
fn a_fresh_database_records_every_migration_and_a_newer_one_is_refused() {
    let pg = PgSchema::new();
    let lineage = open(&pg).snapshot().expect("snapshot").meta.lineage;
    let mut raw = pg.client();
    let versions: Vec<i32> = raw.query("SELECT version FROM schema_migrations ORDER BY version", &[]).expect("versions").iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, (1..=schema::LATEST).collect::<Vec<_>>());
    assert_eq!(schema::LATEST, schema::MIGRATIONS.len() as i32);
    let tables: Vec<String> = raw
        .query("SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", &[&pg.name()])
        .expect("tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        tables,
        ["desired", "events", "jobs", "meta", "nodes", "objects", "plans", "sample_failures", "sample_rollups", "samples", "schema_migrations", "series", "state_lock", "tasks", "trace_tasks", "trigger_states"]
    );
    // reconnecting to an up-to-date database changes nothing
    assert_eq!(open(&pg).snapshot().expect("snapshot").meta.lineage, lineage);

    raw.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&(schema::LATEST + 1)]).expect("a newer version");
    match PostgresStore::connect(&pg.url(), None) {
        Err(err @ StoreError::TooNew { .. }) => {
            let StoreError::TooNew { found, supported, .. } = &err else { unreachable!() };
            assert_eq!((*found, *supported), (i64::from(schema::LATEST) + 1, i64::from(schema::LATEST)));
            assert!(err.to_string().contains("upgrade scaler"), "{err}");
        }
        other => panic!("expected `TooNew`, got {other:?}"),
    }
}

#[test]
fn connections_racing_to_create_a_fresh_store_migrate_it_once() {
    let pg = PgSchema::new();
    let url = pg.url();
    let start = std::sync::Barrier::new(4);
    let lineages: Vec<String> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..4)
            .map(|_| {
                let (url, start) = (&url, &start);
                s.spawn(move || {
                    start.wait();
                    PostgresStore::connect(url, None).expect("connect").snapshot().expect("snapshot").meta.lineage
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().expect("racer panicked")).collect()
    });
    assert!(lineages.iter().all(|l| *l == lineages[0]), "{lineages:?}");
    let mut raw = pg.client();
    let rows: i64 = raw.query_one("SELECT count(*) FROM schema_migrations", &[]).expect("count").get(0);
    assert_eq!(rows, i64::from(schema::LATEST));
    let metas: i64 = raw.query_one("SELECT count(*) FROM meta", &[]).expect("count").get(0);
    assert_eq!(metas, 1);
}

#[test]
fn lock_and_renew_run_the_lease_from_the_database_clock() {
    let pg = PgSchema::new();
    let mut store = open(&pg);
    let mut raw = pg.client();
    let ttl = Duration::from_secs(30);
    let before = db_clock(&mut raw);
    let held = store.lock(&LockRequest { owner: "ann@box".into(), operation: "apply".into(), ttl }).expect("lock");
    let after = db_clock(&mut raw);
    assert!(before <= held.created && held.created <= after, "{before} <= {} <= {after}", held.created);
    assert_eq!(held.expires - held.created, chrono::TimeDelta::seconds(30));

    let before = db_clock(&mut raw);
    let renewed = store.renew(&held.id, ttl).expect("renew");
    let after = db_clock(&mut raw);
    let from = renewed.expires - chrono::TimeDelta::seconds(30);
    assert!(before <= from && from <= after, "{before} <= {from} <= {after}");
}

#[test]
fn an_unreachable_server_is_a_retryable_connection_error_naming_the_url_without_its_password() {
    let port = free_port();
    let url = format!("postgres://ann:hunter2@127.0.0.1:{port}/fleet?connect_timeout=5");
    match PostgresStore::connect(&url, None) {
        Err(err @ StoreError::Backend { kind: BackendErrorKind::Connection, .. }) => {
            assert!(err.is_retryable(), "{err:?}");
            let text = err.to_string();
            assert!(text.contains(&format!("postgres://ann:***@127.0.0.1:{port}/fleet")), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
        other => panic!("expected a connection error, got {other:?}"),
    }
}

#[test]
fn a_connection_the_server_kills_leaves_the_pool_and_the_next_call_reconnects() {
    let pg = PgSchema::new();
    let app = format!("scaler-test-{}", uuid::Uuid::new_v4().simple());
    let location = Location::parse(Some(&with_param(&pg.url(), &format!("application_name={app}"))), std::path::Path::new("/")).expect("a postgres url");
    assert!(matches!(location, Location::Postgres { .. }), "{location:?}");
    let handle = store::open(&location).expect("open");
    let set = |n| vec![Mutation::SetDesired { group: "web".into(), desired: Some(n), base: None }];
    assert_eq!(handle.run_blocking(|db| db.commit(&set(2))).expect("commit"), 1);

    let killed: i64 = pg
        .client()
        .query_one("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", &[&app])
        .expect("terminate")
        .get(0);
    assert_eq!(killed, 1, "the pool holds one idle connection");
    match handle.run_blocking(|db| db.snapshot()) {
        Err(err @ StoreError::Backend { kind: BackendErrorKind::Connection, .. }) => assert!(err.is_retryable(), "{err:?}"),
        other => panic!("expected a connection error, got {other:?}"),
    }
    // the dead connection was not given back: this call gets a new one
    assert_eq!(handle.run_blocking(|db| db.commit(&set(3))).expect("commit after reconnecting"), 2);
    assert_eq!(handle.run_blocking(|db| db.snapshot()).expect("snapshot").desired.get("web"), Some(&3));
}

#[test]
fn text_is_sorted_by_bytes_whatever_the_servers_locale() {
    let pg = PgSchema::new();
    let mut store = open(&pg);
    let names = ["b", "B", "a", "_x", "é", "A1"];
    store.commit(&names.map(|n| Mutation::PutObject { kind: "group".into(), name: n.into(), spec: json!({}) })).expect("commit");
    let got: Vec<String> = store.snapshot().expect("snapshot").objects.into_iter().map(|o| o.name).collect();
    assert_eq!(got, ["A1", "B", "_x", "a", "b", "é"]);
}

#[test]
fn a_refused_commit_carries_postgres_own_message_and_the_url() {
    let pg = PgSchema::new();
    let mut store = open(&pg);
    let mut twin = node("web", 1);
    twin.name = "web-01-twin".into();
    let err = store.commit(&[Mutation::PutNode(node("web", 1)), Mutation::PutNode(twin)]).expect_err("the slot is taken twice");
    assert!(matches!(err, StoreError::Backend { kind: BackendErrorKind::Constraint, .. }), "{err:?}");
    let text = format!("{err} ({:?})", std::error::Error::source(&err));
    assert!(text.contains("nodes_group_idx_key"), "{text}");
    assert!(text.contains(pg.name()), "{text}");
}

#[test]
fn undecodable_stored_records_are_reported_as_corrupt() {
    let pg = PgSchema::new();
    let mut store = open(&pg);
    store.commit(&[Mutation::PutNode(node("web", 1))]).expect("commit");
    pg.client().execute("UPDATE nodes SET created_at = 'yesterday'", &[]).expect("corrupt the row");
    match store.snapshot() {
        Err(StoreError::Corrupt { what, detail, .. }) => {
            assert_eq!(what, "node web-01");
            assert!(detail.contains("yesterday"), "{detail}");
        }
        other => panic!("expected `Corrupt`, got {other:?}"),
    }
}

#[test]
fn a_config_keeps_its_state_on_postgres_with_the_password_given_apart() {
    let pg = PgSchema::new();
    let repo = tempfile::tempdir().expect("tempdir");
    let config = |url: &str| format!("kind: Project\nname: pgtest\nstate:\n  url: \"{url}\"\n  password: {{ env: SCALER_TEST_STATE_PASSWORD }}\n");
    std::fs::write(repo.path().join("scaler.yaml"), config(&pg.url())).expect("write config");
    let cli = Cli::new().env("SCALER_TEST_STATE_PASSWORD", "hunter2-sekrit");
    let out = cli.run(repo.path(), &["apply", "--auto-approve", "."]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let listed: serde_json::Value = serde_json::from_str(&stdout(&cli.run(repo.path(), &["state", "list", "--json", "."]))).expect("state list --json");
    // the state is in the schema, where a direct connection finds it
    let snapshot = open(&pg).snapshot().expect("snapshot");
    assert_eq!(listed["lineage"], json!(snapshot.meta.lineage));
    assert_eq!(snapshot.objects.iter().map(|o| format!("{}.{}", o.kind, o.name)).collect::<Vec<_>>(), ["project.pgtest"]);

    let unset = Cli::new().run(repo.path(), &["state", "show", "."]);
    assert!(!unset.status.success());
    assert!(stderr(&unset).contains("state.password: secret environment variable `SCALER_TEST_STATE_PASSWORD` is not set"), "{}", stderr(&unset));

    let url = pg.url();
    let (scheme, rest) = url.split_once("://").expect("a url");
    let (user, host) = rest.split_once('@').unwrap_or(("postgres", rest));
    let with_password = format!("{scheme}://{user}:hunter2-sekrit@{host}");
    std::fs::write(repo.path().join("scaler.yaml"), config(&with_password)).expect("write config");
    let refused = cli.run(repo.path(), &["state", "show", "."]);
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(err.contains(&format!("{user}:***@")) && err.contains("state.password"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn the_async_handle_runs_postgres_calls_on_the_blocking_pool() {
    // The sync client runs a runtime of its own per connection, which tokio
    // refuses to start inside an async task. Connecting, calling (on the
    // blocking pool, or blocking right in a task as a receiver's sample
    // writer does) and dropping the handle all happen inside the runtime here.
    let pg = PgSchema::new();
    let location = Location::parse(Some(&pg.url()), std::path::Path::new("/")).expect("a postgres url");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let desired = runtime.block_on(async {
        let handle = store::open(&location).expect("open");
        let set = vec![Mutation::SetDesired { group: "web".into(), desired: Some(5), base: None }];
        let (a, b) = tokio::join!(handle.commit(set.clone()), handle.commit(set));
        let mut serials = [a.expect("commit"), b.expect("commit")];
        serials.sort_unstable();
        assert_eq!(serials, [1, 2]);
        assert_eq!(handle.run_blocking(|db| db.current_lock()).expect("a blocking call inside a task"), None);
        handle.snapshot().await.expect("snapshot").desired.get("web").copied()
    });
    assert_eq!(desired, Some(5));
}
