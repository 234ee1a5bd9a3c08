//! The store conformance suite: every behaviour of the store traits
//! (`Store`, `SampleStore`, `JobStore`, `TraceStore`, `TaskStore`), written once against
//! `&mut dyn Backend` and run on each backend.
//!
//! - [`state`]: lineage and serial, atomic commits, exact round-trips,
//!   concurrent writers;
//! - [`lock`]: the state lock lease between connections, threads and a
//!   killed process;
//! - [`jobs`]: the job queue and trigger states;
//! - [`samples`]: samples, failures, range queries, aggregates, retention,
//!   events;
//! - [`traces`]: trace tasks;
//! - [`tasks`]: API tasks and stored plans.
//!
//! A backend takes part with a [`Harness`] (a fresh empty store, and
//! connections to it) and one line: `store_conformance_suite!(name,
//! Harness)`. What only one backend does (SQLite's WAL mode, schema
//! versions, file errors) is tested beside it (`store_sqlite`,
//! `store_postgres`).

// Test helpers (not only `#[test]` fns) fail loudly on purpose.
#![allow(clippy::expect_used)]

mod jobs;
mod lock;
pub(crate) mod samples;
mod state;
mod tasks;
mod traces;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use scaler::store::{Backend, LockInfo, LockRequest, Mutation, NodeRecord, NodeStatus, PostgresStore, SqliteStore, StoreError};
use serde_json::json;

/// A backend under test: one fresh, empty store per test, and as many
/// connections to it as the test asks for (each one like another process).
pub trait Harness: Sync + Sized {
    /// A fresh, empty store nobody has connected to yet; it goes away when
    /// the harness is dropped.
    fn new() -> Self;
    /// How a connection names the store (a path, a URL), for a child
    /// process.
    fn address(&self) -> String;
    /// A new connection to the store at `address`; the first one to a fresh
    /// store creates it.
    fn connect_to(address: &str) -> Box<dyn Backend>;
    /// Makes the store refuse, with a backend error inside the transaction,
    /// every job enqueued with `key` from now on (`None`: refuse none).
    /// Real failure in the middle of a write, for atomicity tests.
    fn refuse_job_key(&self, key: Option<&str>);

    /// A new connection to this store.
    fn connect(&self) -> Box<dyn Backend> {
        Self::connect_to(&self.address())
    }
}

/// Runs the suite on a backend: `store_conformance_suite!(sqlite,
/// SqliteHarness);` makes `store_conformance::sqlite::<test>` for every
/// test of the suite.
macro_rules! store_conformance_suite {
    (@tests $harness:ty; $($area:ident: [$($test:ident),* $(,)?]),* $(,)?) => {
        $($(
            #[test]
            fn $test() {
                super::$area::$test::<$harness>()
            }
        )*)*
    };
    ($name:ident, $harness:ty) => {
        mod $name {
            use super::*;

            store_conformance_suite!(@tests $harness;
                state: [
                    lineage_is_fixed_at_creation_and_differs_between_states,
                    serial_grows_by_one_per_commit_keeps_still_on_empty_ones_and_persists,
                    a_commit_with_a_failing_mutation_changes_nothing,
                    objects_nodes_and_desired_counts_round_trip_exactly_in_order,
                    desired_counts_remember_the_base_they_were_set_against,
                    putting_a_node_again_replaces_it_by_name,
                    every_life_cycle_status_round_trips,
                    deletes_remove_exactly_what_they_name,
                    two_threads_committing_on_separate_handles_never_lose_a_commit,
                ],
                lock: [
                    a_second_handle_is_refused_with_the_holders_lease,
                    an_expired_lease_is_taken_over_and_its_holder_loses_it,
                    renewing_extends_the_lease_from_now,
                    force_unlock_takes_the_full_id_or_a_prefix_of_eight,
                    unlocking_someone_elses_id_leaves_their_lease,
                ],
                jobs: [
                    a_second_enqueue_with_the_same_key_is_a_no_op_returning_the_first_job,
                    save_evaluation_writes_states_and_jobs_together_or_not_at_all,
                    trigger_states_of_removed_triggers_are_deleted,
                    an_expired_lease_is_taken_over_after_expiry_not_before_and_the_stale_worker_is_refused,
                    a_lease_that_runs_out_on_the_last_try_dead_letters_the_job,
                    failed_tries_are_retried_at_their_time_then_dead_with_the_last_error,
                    a_released_job_is_due_at_once_and_its_try_is_not_counted,
                    progress_commits_the_action_count_and_its_state_mutations_in_one_transaction,
                    jobs_are_listed_newest_first_by_status_and_trigger_and_counted,
                    four_threads_with_their_own_connections_lease_every_job_exactly_once,
                ],
                samples: [
                    appended_samples_and_failures_come_back_exactly,
                    range_queries_step_and_put_null_where_there_is_no_data,
                    aggregates_per_host_and_across_a_group_of_hosts,
                    retention_downsamples_old_data_into_rollups_and_drops_the_oldest,
                    series_are_told_apart_by_labels,
                    events_are_kept_in_order_per_source,
                    a_sample_at_an_instant_already_stored_replaces_it,
                ],
                traces: [
                    trace_tasks_are_replaced_by_id_and_listed_newest_first,
                    trace_tasks_are_found_by_id_or_a_unique_prefix_of_eight,
                ],
                tasks: [
                    tasks_round_trip_are_replaced_by_id_and_listed_newest_first_by_kind_and_state,
                    interrupted_tasks_are_ended_failure_and_ended_ones_are_left,
                    a_new_plan_supersedes_the_held_ones_and_lists_newest_first,
                    plan_moves_are_conditional_on_the_state_found,
                ],
            );

            /// Not a test: the lock holder that
            /// `a_killed_holders_lease_is_refused_until_it_expires` runs in
            /// a child process and kills.
            #[test]
            #[ignore = "child process of a_killed_holders_lease_is_refused_until_it_expires"]
            fn lock_holder_child_process() {
                super::lock::lock_holder_child_process::<$harness>()
            }

            #[test]
            fn a_killed_holders_lease_is_refused_until_it_expires() {
                super::lock::a_killed_holders_lease_is_refused_until_it_expires::<$harness>(module_path!())
            }
        }
    };
}

store_conformance_suite!(sqlite, SqliteHarness);
store_conformance_suite!(postgres, PostgresHarness);

/// SQLite: a database file in a temp dir, under a directory that does not
/// exist yet (the first connection creates both).
pub struct SqliteHarness {
    dir: tempfile::TempDir,
}

impl SqliteHarness {
    fn path(&self) -> PathBuf {
        self.dir.path().join(".scaler").join("state.db")
    }
}

impl Harness for SqliteHarness {
    fn new() -> Self {
        SqliteHarness { dir: tempfile::tempdir().expect("tempdir") }
    }

    fn address(&self) -> String {
        self.path().display().to_string()
    }

    fn connect_to(address: &str) -> Box<dyn Backend> {
        Box::new(SqliteStore::open(std::path::Path::new(address)).expect("open state store"))
    }

    fn refuse_job_key(&self, key: Option<&str>) {
        let raw = rusqlite::Connection::open(self.path()).expect("open the database file");
        raw.execute_batch("DROP TRIGGER IF EXISTS refuse_job_key").expect("drop trigger");
        if let Some(key) = key {
            // a trigger takes no parameters: the key as an SQL string literal
            let key = key.replace('\'', "''");
            raw.execute_batch(&format!(
                "CREATE TRIGGER refuse_job_key BEFORE INSERT ON jobs WHEN NEW.idem_key = '{key}'
                 BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
            ))
            .expect("create trigger");
        }
    }
}

/// PostgreSQL: a schema of its own on the test server
/// (`SCALER_TEST_PG_URL`), empty until the first connection migrates it;
/// dropped with the harness.
pub struct PostgresHarness {
    schema: crate::harness::pg::PgSchema,
}

impl Harness for PostgresHarness {
    fn new() -> Self {
        PostgresHarness { schema: crate::harness::pg::PgSchema::new() }
    }

    fn address(&self) -> String {
        self.schema.url()
    }

    fn connect_to(address: &str) -> Box<dyn Backend> {
        Box::new(PostgresStore::connect(address, None).expect("connect to the PostgreSQL state store"))
    }

    fn refuse_job_key(&self, key: Option<&str>) {
        let mut raw = self.schema.client();
        raw.batch_execute("DROP TRIGGER IF EXISTS refuse_job_key ON jobs").expect("drop trigger");
        if let Some(key) = key {
            // the key as an SQL string literal
            let key = key.replace('\'', "''");
            raw.batch_execute(&format!(
                "CREATE OR REPLACE FUNCTION refuse_job_key() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN IF NEW.idem_key = '{key}' THEN RAISE EXCEPTION 'refused by test'; END IF; RETURN NEW; END $$;
                 CREATE TRIGGER refuse_job_key BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION refuse_job_key();"
            ))
            .expect("create trigger");
        }
    }
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

// Fixtures shared by the areas of the suite.

fn put_object(kind: &str, name: &str, spec: serde_json::Value) -> Mutation {
    Mutation::PutObject { kind: kind.into(), name: name.into(), spec }
}

/// `secs` (and `nanos`) after 2024-05-01T12:00:00Z.
fn at(secs: i64, nanos: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(1_714_564_800 + secs, nanos).expect("valid instant")
}

pub(crate) fn node(group: &str, index: u32) -> NodeRecord {
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

fn request(owner: &str, ttl: std::time::Duration) -> LockRequest {
    LockRequest { owner: owner.into(), operation: "apply".into(), ttl }
}

fn locked_by(result: Result<LockInfo, StoreError>) -> LockInfo {
    match result {
        Err(StoreError::Locked(holder)) => *holder,
        other => panic!("expected `Locked`, got {other:?}"),
    }
}
