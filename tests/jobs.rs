//! Job workers (`scaler::jobs::run_worker`) on real SQLite files, each worker
//! with its own connection, as tokio tasks: exactly-once runs under
//! concurrency, take-over of a crashed worker's job after its lease, retries
//! that resume at the failed action, dead letters, state mutations committed
//! with progress, heartbeats, and shutdown between actions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use scaler::jobs::{run_worker, ActionOutput, ActionExecutor, ActionError, JobsError, WorkerOptions, WorkerStats};
use scaler::store::{Job, JobFilter, JobStatus, JobStore, Mutation, NewJob, SqliteStore, Store};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).expect("open state store")
}

fn job(key: &str, actions: Value, max_attempts: u32) -> NewJob {
    NewJob {
        key: key.into(),
        trigger: key.split('@').next().unwrap_or(key).into(),
        fired_at_ms: now_ms(),
        revision: None,
        payload: json!({ "actions": actions }),
        max_attempts,
    }
}

/// An executor driven by the actions themselves, recording every execution
/// per (job key, action index):
/// `{"ok": x}` succeeds with `x`; `{"flaky": n}` fails (retryably) its first
/// `n` runs; `{"broken": msg}` always fails retryably; `{"scale": {group, to}}`
/// sets a desired count; `{"slow_ms": n}` works for n ms; `{"gate": x}` waits
/// until the test opens the gate; anything else is an unknown action.
#[derive(Default)]
struct Recorder {
    runs: Mutex<HashMap<(String, usize), u32>>,
    started_at: Mutex<HashMap<String, i64>>,
    gate_reached: Notify,
    gate: Notify,
}

impl Recorder {
    fn runs(&self, key: &str, index: usize) -> u32 {
        self.runs.lock().unwrap().get(&(key.to_string(), index)).copied().unwrap_or(0)
    }
}

#[async_trait]
impl ActionExecutor for Recorder {
    async fn execute(&self, job: &Job, index: usize, action: &Value) -> Result<ActionOutput, ActionError> {
        let run = {
            let mut runs = self.runs.lock().unwrap();
            let n = runs.entry((job.key.clone(), index)).or_insert(0);
            *n += 1;
            *n
        };
        self.started_at.lock().unwrap().entry(job.key.clone()).or_insert_with(now_ms);
        let (name, arg) = action.as_object().and_then(|o| o.iter().next()).expect("an action is a one-key object");
        let ok = |result: Value| Ok(ActionOutput { result, mutations: vec![] });
        match name.as_str() {
            "ok" => ok(arg.clone()),
            "flaky" if u64::from(run) <= arg.as_u64().unwrap() => Err(ActionError::transient(format!("flaky: run {run} failed"))),
            "flaky" => ok(json!(format!("flaky: run {run} worked"))),
            "broken" => Err(ActionError::transient(format!("{} (run {run})", arg.as_str().unwrap())).with_result(json!({ "failed_run": run }))),
            "scale" => {
                let group = arg["group"].as_str().unwrap().to_string();
                let to = u32::try_from(arg["to"].as_u64().unwrap()).unwrap();
                Ok(ActionOutput { result: json!({ "desired": to }), mutations: vec![Mutation::SetDesired { group, desired: Some(to), base: None }] })
            }
            "slow_ms" => {
                // Simulated work that outlives the lease unless heartbeats renew it.
                tokio::time::sleep(Duration::from_millis(arg.as_u64().unwrap())).await;
                ok(json!("slow done"))
            }
            "gate" => {
                let opened = self.gate.notified();
                self.gate_reached.notify_one();
                opened.await;
                ok(arg.clone())
            }
            "panic" => panic!("{}", arg.as_str().unwrap()),
            other => Err(ActionError::permanent(format!("unknown action `{other}`"))),
        }
    }
}

fn options(name: &str) -> WorkerOptions {
    WorkerOptions {
        name: name.into(),
        lease_ms: 10_000,
        heartbeat_ms: 2_000,
        poll_ms: 20,
        backoff_base_ms: 10,
        backoff_max_ms: 40,
    }
}

/// Workers running on one store file, each with its own connection.
struct Pool {
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<Result<WorkerStats, JobsError>>>,
}

impl Pool {
    fn start(path: &Path, exec: &Arc<Recorder>, n: usize, opts: &WorkerOptions) -> Pool {
        let (stop, rx) = watch::channel(false);
        let store = scaler::store::open(&scaler::store::Location::Sqlite(path.to_path_buf())).unwrap();
        let workers = (0..n)
            .map(|i| {
                let exec: Arc<dyn ActionExecutor> = exec.clone();
                let opts = WorkerOptions { name: format!("{}-{i}", opts.name), ..opts.clone() };
                tokio::spawn(run_worker(store.clone(), exec, scaler::clock::system(), opts, rx.clone()))
            })
            .collect();
        Pool { stop, workers }
    }

    async fn stop(self) -> Vec<WorkerStats> {
        self.stop.send_replace(true);
        let mut stats = Vec::new();
        for w in self.workers {
            stats.push(w.await.unwrap().unwrap());
        }
        stats
    }
}

/// Polls `f` every 20 ms until it holds; fails after 60 s.
async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn settled(store: &SqliteStore, total: u64) -> bool {
    let depth = store.queue_depth().unwrap();
    depth["done"] + depth["dead"] == total
}

fn get(store: &SqliteStore, key: &str) -> Job {
    store.jobs(&JobFilter::default()).unwrap().into_iter().find(|j| j.key == key).expect("job by key")
}

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_jobs_on_four_workers_each_run_exactly_once() {
    let (_dir, path) = temp_db();
    let mut store = open(&path);
    let jobs: Vec<NewJob> = (0..1000).map(|i| job(&format!("t{}@{i}", i % 7), json!([{ "ok": i }]), 5)).collect();
    store.save_evaluation(&[], &jobs, now_ms()).unwrap();
    let exec = Arc::new(Recorder::default());
    let started = Instant::now();
    let pool = Pool::start(&path, &exec, 4, &options("w"));
    wait_for("1,000 jobs done", || settled(&store, 1000)).await;
    let stats = pool.stop().await;
    eprintln!("1,000 jobs on 4 workers: {:?}", started.elapsed());

    let runs = exec.runs.lock().unwrap();
    assert_eq!(runs.len(), 1000, "every job ran");
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "jobs run more than once: {twice:?}");
    let depth = store.queue_depth().unwrap();
    assert_eq!((depth["done"], depth["queued"], depth["leased"], depth["dead"]), (1000, 0, 0, 0));
    assert_eq!(stats.iter().map(|s| s.completed).sum::<u64>(), 1000);
    assert!(stats.iter().filter(|s| s.completed > 0).count() >= 2, "the work was shared: {stats:?}");
    let one = get(&store, "t3@10");
    assert_eq!((one.attempts, one.actions_done, one.result), (1, 1, json!([10])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_workers_job_is_run_by_another_worker_once_its_lease_has_expired() {
    let (_dir, path) = temp_db();
    let mut crashed = open(&path);
    crashed.enqueue(&job("orphan@1", json!([{ "ok": "a" }, { "ok": "b" }]), 5), now_ms()).unwrap();
    let leased = crashed.lease_job("crashed-worker", now_ms(), 1_500).unwrap().expect("leased");
    let expires = leased.lease_expires_ms.unwrap();
    // The crashed worker had finished action 1 before dying.
    crashed.job_progress(leased.id, "crashed-worker", 1, &json!(["a"]), &[]).unwrap();
    crashed.enqueue(&job("fresh@1", json!([{ "ok": "c" }]), 5), now_ms()).unwrap();

    let exec = Arc::new(Recorder::default());
    let pool = Pool::start(&path, &exec, 1, &options("live"));
    wait_for("both jobs done", || settled(&crashed, 2)).await;
    pool.stop().await;

    let started = exec.started_at.lock().unwrap()["orphan@1"];
    assert!(started >= expires, "taken over {} ms before the lease expired", expires - started);
    assert_eq!((exec.runs("orphan@1", 0), exec.runs("orphan@1", 1)), (0, 1), "resumed after the recorded action");
    let orphan = get(&crashed, "orphan@1");
    assert_eq!((orphan.status, orphan.attempts, orphan.result), (JobStatus::Done, 2, json!(["a", "b"])));
    assert!(orphan.lease_owner.is_none());
    // The crashed worker, were it to come back, is refused.
    let stale = crashed.complete_job(leased.id, "crashed-worker", &json!([]), now_ms());
    assert!(matches!(stale, Err(scaler::store::StoreError::LeaseLost { .. })), "{stale:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_middle_action_is_retried_from_that_action_and_the_first_is_not_rerun() {
    let (_dir, path) = temp_db();
    let mut store = open(&path);
    let actions = json!([{ "ok": 1 }, { "flaky": 1 }, { "ok": 3 }]);
    store.save_evaluation(&[], &[job("before@1", json!([{ "ok": 0 }]), 5), job("flaky@1", actions, 5), job("after@1", json!([{ "ok": 9 }]), 5)], now_ms()).unwrap();
    let exec = Arc::new(Recorder::default());
    let pool = Pool::start(&path, &exec, 2, &options("w"));
    wait_for("jobs done", || settled(&store, 3)).await;
    let stats = pool.stop().await;

    assert_eq!([0, 1, 2].map(|i| exec.runs("flaky@1", i)), [1, 2, 1]);
    let j = get(&store, "flaky@1");
    assert_eq!((j.status, j.attempts, j.actions_done), (JobStatus::Done, 2, 3));
    assert_eq!(j.result, json!([1, "flaky: run 2 worked", 3]));
    assert_eq!(j.last_error.as_deref(), Some("action 2 of 3: flaky: run 1 failed"), "the failure of try 1 is kept");
    assert_eq!(get(&store, "before@1").status, JobStatus::Done);
    assert_eq!(get(&store, "after@1").status, JobStatus::Done);
    assert_eq!(stats.iter().map(|s| s.retried).sum::<u64>(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_failed_try_dead_letters_the_job_with_its_error_and_the_others_still_run() {
    let (_dir, path) = temp_db();
    let mut store = open(&path);
    let actions = json!([{ "ok": 1 }, { "broken": "webhook returned 503" }, { "ok": 3 }]);
    let jobs = [job("good@1", json!([{ "ok": "x" }]), 3), job("broken@1", actions, 3), job("good@2", json!([{ "ok": "y" }]), 3)];
    store.save_evaluation(&[], &jobs, now_ms()).unwrap();
    let exec = Arc::new(Recorder::default());
    let pool = Pool::start(&path, &exec, 2, &options("w"));
    wait_for("jobs settled", || settled(&store, 3)).await;
    let stats = pool.stop().await;

    let j = get(&store, "broken@1");
    assert_eq!((j.status, j.attempts, j.actions_done), (JobStatus::Dead, 3, 1));
    assert_eq!(j.last_error.as_deref(), Some("action 2 of 3: webhook returned 503 (run 3)"));
    // The failed action's own outcome is kept at its index, not only a text.
    assert_eq!(j.result.get(1), Some(&json!({ "failed_run": 3 })), "{:?}", j.result);
    assert_eq!([0, 1, 2].map(|i| exec.runs("broken@1", i)), [1, 3, 0], "the good first action ran once, the last never");
    assert_eq!((get(&store, "good@1").status, get(&store, "good@2").status), (JobStatus::Done, JobStatus::Done));
    assert_eq!((stats.iter().map(|s| s.retried).sum::<u64>(), stats.iter().map(|s| s.dead).sum::<u64>()), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_action_or_a_panic_dead_letters_the_job_on_its_first_try() {
    let (_dir, path) = temp_db();
    let mut store = open(&path);
    let jobs = [
        job("typo@1", json!([{ "ok": 1 }, { "frobnicate": {} }, { "ok": 3 }]), 5),
        job("no-actions@1", json!(null), 5),
        job("bug@1", json!([{ "panic": "index out of bounds" }]), 5),
        job("fine@1", json!([{ "ok": 1 }]), 5),
    ];
    store.save_evaluation(&[], &jobs, now_ms()).unwrap();
    let exec = Arc::new(Recorder::default());
    let pool = Pool::start(&path, &exec, 1, &options("w"));
    wait_for("jobs settled", || settled(&store, 4)).await;
    let stats = pool.stop().await;
    assert_eq!((stats[0].dead, stats[0].completed), (3, 1), "the panic did not stop the worker");
    let j = get(&store, "bug@1");
    assert_eq!((j.status, j.attempts, j.last_error.as_deref()), (JobStatus::Dead, 1, Some("action 1 of 1: the action panicked: index out of bounds")));

    let j = get(&store, "typo@1");
    assert_eq!((j.status, j.attempts), (JobStatus::Dead, 1));
    assert_eq!(j.last_error.as_deref(), Some("action 2 of 3: unknown action `frobnicate`"));
    assert_eq!([0, 1, 2].map(|i| exec.runs("typo@1", i)), [1, 1, 0]);
    let j = get(&store, "no-actions@1");
    assert_eq!((j.status, j.attempts, j.last_error.as_deref()), (JobStatus::Dead, 1, Some("the job's payload has no `actions` list")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_action_commits_its_desired_count_with_its_progress() {
    let (_dir, path) = temp_db();
    let mut store = open(&path);
    let before = store.snapshot().unwrap().meta.serial;
    let actions = json!([{ "scale": { "group": "web", "to": 3 } }, { "ok": "notified" }]);
    store.enqueue(&job("web-hot@1", actions, 5), now_ms()).unwrap();
    let exec = Arc::new(Recorder::default());
    let pool = Pool::start(&path, &exec, 1, &options("w"));
    wait_for("job done", || settled(&store, 1)).await;
    pool.stop().await;

    let snap = store.snapshot().unwrap();
    assert_eq!((snap.meta.serial, snap.desired.get("web")), (before + 1, Some(&3)), "one commit: the scale");
    let j = get(&store, "web-hot@1");
    assert_eq!((j.status, j.actions_done, j.result), (JobStatus::Done, 2, json!([{ "desired": 3 }, "notified"])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_long_job_from_being_taken_over() {
    let (_dir, path) = temp_db();
    let mut store = open(&path);
    store.enqueue(&job("long@1", json!([{ "slow_ms": 3_000 }]), 5), now_ms()).unwrap();
    let exec = Arc::new(Recorder::default());
    // A 1 s lease renewed every 100 ms, and a second worker waiting for it to lapse.
    let opts = WorkerOptions { lease_ms: 1_000, heartbeat_ms: 100, ..options("w") };
    let pool = Pool::start(&path, &exec, 2, &opts);
    wait_for("job done", || settled(&store, 1)).await;
    let stats = pool.stop().await;

    assert_eq!(exec.runs("long@1", 0), 1);
    let j = get(&store, "long@1");
    assert_eq!((j.status, j.attempts), (JobStatus::Done, 1));
    assert_eq!(stats.iter().map(|s| s.lost).sum::<u64>(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_current_action_and_gives_the_job_back() {
    let (_dir, path) = temp_db();
    let mut store = open(&path);
    store.enqueue(&job("gated@1", json!([{ "gate": "first" }, { "ok": "second" }]), 5), now_ms()).unwrap();
    let exec = Arc::new(Recorder::default());
    let reached = exec.gate_reached.notified();
    let pool = Pool::start(&path, &exec, 1, &options("w"));
    reached.await;
    pool.stop.send_replace(true);
    exec.gate.notify_one();
    let stats = pool.stop().await;
    assert_eq!((stats[0].actions, stats[0].released, stats[0].completed), (1, 1, 0));

    let j = get(&store, "gated@1");
    assert_eq!((j.status, j.attempts, j.actions_done, j.result.clone()), (JobStatus::Queued, 0, 1, json!(["first"])));
    assert!(j.lease_owner.is_none());

    // The next worker runs only what is left.
    let pool = Pool::start(&path, &exec, 1, &options("next"));
    wait_for("job done", || settled(&store, 1)).await;
    pool.stop().await;
    assert_eq!((exec.runs("gated@1", 0), exec.runs("gated@1", 1)), (1, 1));
    assert_eq!(get(&store, "gated@1").result, json!(["first", "second"]));
}
