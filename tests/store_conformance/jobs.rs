//! The job queue and trigger states (`JobStore`): idempotent enqueue, atomic
//! evaluation saves, leases that expire and are taken over, stale holders
//! refused, retries and dead letters, progress atomic with state commits.

use std::sync::Barrier;

use scaler::store::{Enqueued, JobFilter, JobStatus, Mutation, NewJob, StoreError, TriggerRecord};
use serde_json::json;

use super::{node, Harness};

const T0: i64 = 1_714_564_800_000;

fn new_job(trigger: &str, fired_at_ms: i64, max_attempts: u32) -> NewJob {
    NewJob {
        key: format!("{trigger}@{fired_at_ms}"),
        trigger: trigger.into(),
        fired_at_ms,
        revision: Some("abc123".into()),
        payload: json!({"actions": [{"scale": {"group": "web", "by": 1}}], "values": {"cpu": 91.5}}),
        max_attempts,
    }
}

fn state(name: &str, pending_since: i64) -> TriggerRecord {
    TriggerRecord { name: name.into(), key: String::new(), state: json!({"pending_since": pending_since}), updated_ms: pending_since }
}

fn lease_lost<T: std::fmt::Debug>(result: Result<T, StoreError>, id: i64, worker: &str) {
    match result {
        Err(StoreError::LeaseLost { id: got, worker: w }) => assert_eq!((got, w.as_str()), (id, worker)),
        other => panic!("expected `LeaseLost`, got {other:?}"),
    }
}

pub(super) fn a_second_enqueue_with_the_same_key_is_a_no_op_returning_the_first_job<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    let first = store.enqueue(&new_job("web-hot", T0, 5), T0).unwrap();
    let Enqueued::New(id) = first else { panic!("expected a new job, got {first:?}") };
    // Another connection (another process, in real life) enqueues the same fire.
    let mut other = h.connect();
    let mut again = new_job("web-hot", T0, 5);
    again.payload = json!({"actions": []});
    assert_eq!(other.enqueue(&again, T0 + 5).unwrap(), Enqueued::Duplicate(id));
    assert_eq!(store.enqueue(&new_job("web-hot", T0 + 60_000, 5), T0).unwrap(), Enqueued::New(id + 1));

    let all = store.jobs(&JobFilter::default()).unwrap();
    assert_eq!(all.iter().map(|j| j.key.as_str()).collect::<Vec<_>>(), ["web-hot@1714564860000", "web-hot@1714564800000"]);
    let job = store.job(id).unwrap().expect("job");
    assert_eq!(job.payload, new_job("web-hot", T0, 5).payload, "the duplicate changed nothing");
    assert_eq!((job.status, job.attempts, job.max_attempts, job.run_after_ms, job.created_ms), (JobStatus::Queued, 0, 5, T0, T0));
    assert_eq!((job.trigger.as_str(), job.fired_at_ms, job.revision.as_deref()), ("web-hot", T0, Some("abc123")));
    assert_eq!(store.job(id + 7).unwrap(), None);
}

pub(super) fn save_evaluation_writes_states_and_jobs_together_or_not_at_all<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    // Make the store itself refuse one job (a real failure in the middle of
    // the transaction, after the states were written).
    h.refuse_job_key(Some("bad@1"));
    let mut bad = new_job("bad", 1, 5);
    bad.key = "bad@1".into();
    let states = [state("web-hot", T0), state("db-slow", T0)];
    let failed = store.save_evaluation(&states, &[new_job("web-hot", T0, 5), bad], T0);
    assert!(matches!(failed, Err(StoreError::Backend { .. })), "{failed:?}");
    assert_eq!(store.trigger_states().unwrap(), [], "no state without its job");
    assert_eq!(store.queue_depth().unwrap()["queued"], 0, "no job without its state");

    h.refuse_job_key(None);
    let saved = store.save_evaluation(&states, &[new_job("web-hot", T0, 5)], T0).unwrap();
    assert!(matches!(saved[..], [Enqueued::New(_)]), "{saved:?}");
    let names: Vec<_> = store.trigger_states().unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["db-slow", "web-hot"]);

    // A replay of the same evaluation updates the states and dedupes the job.
    let later = [TriggerRecord { state: json!({"last_fired": T0}), updated_ms: T0 + 10, ..state("web-hot", T0) }];
    let again = store.save_evaluation(&later, &[new_job("web-hot", T0, 5)], T0 + 10).unwrap();
    assert_eq!(again, [Enqueued::Duplicate(saved[0].id())]);
    let states = h.connect().trigger_states().unwrap();
    assert_eq!(states[1], later[0]);
    assert_eq!(store.queue_depth().unwrap()["queued"], 1);
}

pub(super) fn trigger_states_of_removed_triggers_are_deleted<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    let mut per_host = state("disk-full", T0);
    per_host.key = "web-01".into();
    store.save_evaluation(&[state("web-hot", T0), state("disk-full", T0), per_host, state("gone", T0)], &[], T0).unwrap();
    assert_eq!(store.trigger_states().unwrap().len(), 4);
    assert_eq!(store.delete_trigger_states(&["web-hot".into(), "disk-full".into()]).unwrap(), 1);
    let left: Vec<_> = store.trigger_states().unwrap().into_iter().map(|s| (s.name, s.key)).collect();
    assert_eq!(left, [("disk-full".into(), String::new()), ("disk-full".into(), "web-01".into()), ("web-hot".into(), String::new())]);
    assert_eq!(store.delete_trigger_states(&[]).unwrap(), 3);
    assert_eq!(store.trigger_states().unwrap(), []);
}

pub(super) fn an_expired_lease_is_taken_over_after_expiry_not_before_and_the_stale_worker_is_refused<H: Harness>() {
    let h = H::new();
    let mut crashed = h.connect();
    let id = crashed.enqueue(&new_job("web-hot", T0, 5), T0).unwrap().id();
    let job = crashed.lease_job("w-crashed", T0, 30_000).unwrap().expect("a due job");
    assert_eq!((job.id, job.status, job.attempts), (id, JobStatus::Leased, 1));
    assert_eq!((job.lease_owner.as_deref(), job.lease_expires_ms), (Some("w-crashed"), Some(T0 + 30_000)));
    // The worker "crashes": it never touches the job again.

    let mut other = h.connect();
    assert_eq!(other.lease_job("w-live", T0 + 29_999, 30_000).unwrap(), None, "lease still valid");
    let taken = other.lease_job("w-live", T0 + 30_000, 30_000).unwrap().expect("expired lease taken over");
    assert_eq!((taken.id, taken.attempts, taken.lease_owner.as_deref()), (id, 2, Some("w-live")));
    assert_eq!(taken.lease_expires_ms, Some(T0 + 60_000));

    lease_lost(crashed.heartbeat(id, "w-crashed", T0 + 30_001, 30_000), id, "w-crashed");
    lease_lost(crashed.job_progress(id, "w-crashed", 1, &json!(["x"]), &[]), id, "w-crashed");
    lease_lost(crashed.complete_job(id, "w-crashed", &json!(["x"]), T0 + 30_002), id, "w-crashed");
    lease_lost(crashed.fail_job(id, "w-crashed", "boom", None, T0 + 30_003), id, "w-crashed");
    lease_lost(crashed.release_job(id, "w-crashed", T0 + 30_004), id, "w-crashed");
    let job = other.job(id).unwrap().unwrap();
    assert_eq!((job.status, job.actions_done, job.result, job.lease_owner.as_deref()), (JobStatus::Leased, 0, json!(null), Some("w-live")));

    // The live worker's heartbeat moves the expiry; nobody takes it at the old one.
    other.heartbeat(id, "w-live", T0 + 50_000, 30_000).unwrap();
    assert_eq!(crashed.lease_job("w-crashed", T0 + 60_000, 30_000).unwrap(), None);
    other.complete_job(id, "w-live", &json!(["ok"]), T0 + 61_000).unwrap();
    let job = crashed.job(id).unwrap().unwrap();
    assert_eq!((job.status, job.result, job.lease_owner, job.updated_ms), (JobStatus::Done, json!(["ok"]), None, T0 + 61_000));
    lease_lost(other.heartbeat(id, "w-live", T0 + 62_000, 30_000), id, "w-live");
    assert_eq!(crashed.lease_job("w-crashed", T0 + 999_000, 30_000).unwrap(), None, "a done job is never leased");
}

pub(super) fn a_lease_that_runs_out_on_the_last_try_dead_letters_the_job<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    let id = store.enqueue(&new_job("once", T0, 1), T0).unwrap().id();
    let next = store.enqueue(&new_job("next", T0, 1), T0).unwrap().id();
    assert_eq!(store.lease_job("w1", T0, 1_000).unwrap().unwrap().id, id);
    // w1 dies; at expiry the job has had its one try: dead, and the next job is leased.
    let leased = store.lease_job("w2", T0 + 1_000, 1_000).unwrap().unwrap();
    assert_eq!(leased.id, next);
    let dead = store.job(id).unwrap().unwrap();
    assert_eq!((dead.status, dead.attempts), (JobStatus::Dead, 1));
    let error = dead.last_error.unwrap();
    assert!(error.contains("`w1`") && error.contains("try 1 of 1"), "{error}");
}

pub(super) fn failed_tries_are_retried_at_their_time_then_dead_with_the_last_error<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    let id = store.enqueue(&new_job("flaky", T0, 2), T0).unwrap().id();
    store.lease_job("w", T0, 10_000).unwrap().unwrap();
    assert_eq!(store.fail_job(id, "w", "timeout", Some(T0 + 5_000), T0 + 100).unwrap(), JobStatus::Queued);
    let job = store.job(id).unwrap().unwrap();
    assert_eq!((job.status, job.run_after_ms, job.last_error.as_deref(), job.lease_owner), (JobStatus::Queued, T0 + 5_000, Some("timeout"), None));
    assert_eq!(store.lease_job("w", T0 + 4_999, 10_000).unwrap(), None, "not before its retry time");
    let job = store.lease_job("w", T0 + 5_000, 10_000).unwrap().unwrap();
    assert_eq!((job.id, job.attempts), (id, 2));
    // Tries used up: a retry time is ignored.
    assert_eq!(store.fail_job(id, "w", "timeout again", Some(T0 + 9_000), T0 + 5_100).unwrap(), JobStatus::Dead);
    let job = store.job(id).unwrap().unwrap();
    assert_eq!((job.status, job.attempts, job.last_error.as_deref()), (JobStatus::Dead, 2, Some("timeout again")));
    assert_eq!(store.lease_job("w", T0 + 99_000, 10_000).unwrap(), None);

    // Without a retry time the first failure is final.
    let id = store.enqueue(&new_job("bad", T0, 5), T0).unwrap().id();
    store.lease_job("w", T0, 10_000).unwrap().unwrap();
    assert_eq!(store.fail_job(id, "w", "unknown action `frobnicate`", None, T0).unwrap(), JobStatus::Dead);
    assert_eq!(store.job(id).unwrap().unwrap().attempts, 1);
}

pub(super) fn a_released_job_is_due_at_once_and_its_try_is_not_counted<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    let id = store.enqueue(&new_job("web-hot", T0, 3), T0).unwrap().id();
    store.lease_job("w1", T0, 10_000).unwrap().unwrap();
    store.job_progress(id, "w1", 1, &json!(["first"]), &[]).unwrap();
    store.release_job(id, "w1", T0 + 10).unwrap();
    let job = store.lease_job("w2", T0 + 10, 10_000).unwrap().unwrap();
    assert_eq!((job.id, job.attempts, job.actions_done, job.result), (id, 1, 1, json!(["first"])));
}

pub(super) fn progress_commits_the_action_count_and_its_state_mutations_in_one_transaction<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    let id = store.enqueue(&new_job("web-hot", T0, 5), T0).unwrap().id();
    store.lease_job("w1", T0, 1_000).unwrap().unwrap();
    let serial = store.snapshot().unwrap().meta.serial;
    let scale = [Mutation::SetDesired { group: "web".into(), desired: Some(4), base: None }];
    store.job_progress(id, "w1", 1, &json!([{"desired": 4}]), &scale).unwrap();
    let snap = store.snapshot().unwrap();
    assert_eq!((snap.meta.serial, snap.desired.get("web")), (serial + 1, Some(&4)));
    let job = store.job(id).unwrap().unwrap();
    assert_eq!((job.actions_done, job.result), (1, json!([{"desired": 4}])));

    // Progress without mutations leaves the serial alone.
    store.job_progress(id, "w1", 2, &json!([{"desired": 4}, "notified"]), &[]).unwrap();
    assert_eq!(store.snapshot().unwrap().meta.serial, serial + 1);

    // A worker whose lease was taken over can neither count the action nor
    // apply its scale: the job resumes after action 2 with desired still 4.
    let mut other = h.connect();
    other.lease_job("w2", T0 + 1_000, 1_000).unwrap().unwrap();
    let again = [Mutation::SetDesired { group: "web".into(), desired: Some(5), base: None }];
    lease_lost(store.job_progress(id, "w1", 3, &json!([]), &again), id, "w1");
    let snap = other.snapshot().unwrap();
    assert_eq!((snap.meta.serial, snap.desired.get("web")), (serial + 1, Some(&4)));
    assert_eq!(other.job(id).unwrap().unwrap().actions_done, 2);

    // A mutation that fails (a node in an occupied slot) rolls back the count too.
    let mut twin = node("web", 1);
    twin.name = "web-99".into();
    other.commit(&[Mutation::PutNode(node("web", 1))]).unwrap();
    let clash = other.job_progress(id, "w2", 3, &json!([1, 2, 3]), &[Mutation::PutNode(twin)]);
    assert!(matches!(clash, Err(StoreError::Backend { .. })), "{clash:?}");
    assert_eq!(other.job(id).unwrap().unwrap().actions_done, 2);
    assert_eq!(other.snapshot().unwrap().meta.serial, serial + 2);
}

pub(super) fn jobs_are_listed_newest_first_by_status_and_trigger_and_counted<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    for i in 0..5 {
        store.enqueue(&new_job(if i % 2 == 0 { "even" } else { "odd" }, T0 + i, 5), T0).unwrap();
    }
    let a = store.lease_job("w", T0, 1_000).unwrap().unwrap();
    store.complete_job(a.id, "w", &json!([]), T0).unwrap();
    let b = store.lease_job("w", T0, 1_000).unwrap().unwrap();
    store.fail_job(b.id, "w", "no", None, T0).unwrap();
    store.lease_job("w", T0, 1_000).unwrap().unwrap();

    let depth = store.queue_depth().unwrap();
    let want: Vec<(String, u64)> = [("dead", 1), ("done", 1), ("leased", 1), ("queued", 2)].iter().map(|(s, n)| (s.to_string(), *n)).collect();
    assert_eq!(depth.into_iter().collect::<Vec<_>>(), want);

    let ids = |f: JobFilter| store.jobs(&f).unwrap().into_iter().map(|j| j.fired_at_ms - T0).collect::<Vec<_>>();
    assert_eq!(ids(JobFilter::default()), [4, 3, 2, 1, 0]);
    assert_eq!(ids(JobFilter { trigger: Some("even".into()), ..Default::default() }), [4, 2, 0]);
    assert_eq!(ids(JobFilter { status: Some(JobStatus::Queued), ..Default::default() }), [4, 3]);
    assert_eq!(ids(JobFilter { status: Some(JobStatus::Queued), trigger: Some("odd".into()), limit: None, ..Default::default() }), [3]);
    assert_eq!(ids(JobFilter { limit: Some(2), ..Default::default() }), [4, 3]);
    assert_eq!(ids(JobFilter { status: Some(JobStatus::Dead), ..Default::default() }), [1]);
    let key = format!("even@{}", T0 + 2);
    assert_eq!(ids(JobFilter { key: Some(key), ..Default::default() }), [2], "by idempotency key");
    assert_eq!(ids(JobFilter { key: Some("even@0".into()), ..Default::default() }), [0; 0]);
    let third = store.jobs(&JobFilter::default()).unwrap()[2].id;
    assert_eq!(ids(JobFilter { before_id: Some(third), limit: Some(1), ..Default::default() }), [1], "the page after the third job");
}

pub(super) fn four_threads_with_their_own_connections_lease_every_job_exactly_once<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    let jobs: Vec<NewJob> = (0..200).map(|i| new_job("burst", T0 + i, 5)).collect();
    store.save_evaluation(&[], &jobs, T0).unwrap();
    let barrier = Barrier::new(4);
    let mut all: Vec<i64> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (h, barrier) = (&h, &barrier);
                s.spawn(move || {
                    let mut store = h.connect();
                    let worker = format!("t{t}");
                    barrier.wait();
                    let mut got = Vec::new();
                    while let Some(job) = store.lease_job(&worker, T0, 60_000).unwrap() {
                        store.complete_job(job.id, &worker, &json!([]), T0).unwrap();
                        got.push(job.id);
                    }
                    got
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    all.sort_unstable();
    let want: Vec<i64> = (1..=200).collect();
    assert_eq!(all, want, "every job leased once, by one thread");
    assert_eq!(store.queue_depth().unwrap()["done"], 200);
}
