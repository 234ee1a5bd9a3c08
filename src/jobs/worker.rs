//! The worker loop: lease, heartbeat, run the remaining actions, record.
//!
//! Store calls go through the state store handle, each on a connection of
//! its own, so the heartbeat never waits for the job's own writes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use super::{backoff_ms, ActionOutput, ActionExecutor, ActionError, JobsError, WorkerOptions};
use crate::clock::SharedClock;
use crate::store::{Backend, Job, JobStatus, Mutation, StateStore, StoreError};

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WorkerStats {
    /// Leases taken.
    pub leased: u64,
    /// Actions that succeeded and were recorded.
    pub actions: u64,
    /// Jobs completed.
    pub completed: u64,
    /// Failed tries queued for a retry.
    pub retried: u64,
    /// Jobs dead-lettered.
    pub dead: u64,
    /// Jobs given back on shutdown between actions.
    pub released: u64,
    /// Jobs whose lease was lost while they ran (taken over by another worker).
    pub lost: u64,
}

/// The worker's store handle, shared with its heartbeat task.
#[derive(Clone)]
struct Db {
    store: StateStore,
    worker: Arc<str>,
    clock: SharedClock,
}

impl Db {
    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Runs `f` on a store connection off the async threads.
    async fn call<T, F>(&self, f: F) -> Result<T, JobsError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Backend) -> crate::store::Result<T> + Send + 'static,
    {
        self.store.run(f).await.map_err(JobsError::from)
    }
}

fn is_lease_lost(e: &JobsError) -> bool {
    matches!(e, JobsError::Store(StoreError::LeaseLost { .. }))
}

/// True once shutdown is asked for (or its sender is gone).
fn stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// Runs jobs from `store` until `shutdown` turns true (or
/// its sender is dropped): lease the oldest due job, run its remaining
/// actions through `exec` while a heartbeat renews the lease, record each
/// action's progress, then complete, retry or dead-letter the job. On
/// shutdown the current action is finished and recorded, the job is given
/// back, and the worker returns what it did.
///
/// Store errors are logged and the loop goes on (a job whose outcome could
/// not be written is run again once its lease runs out).
pub async fn run_worker(
    store: StateStore,
    exec: Arc<dyn ActionExecutor>,
    clock: SharedClock,
    opts: WorkerOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<WorkerStats, JobsError> {
    let opts = WorkerOptions {
        lease_ms: opts.lease_ms.max(1),
        heartbeat_ms: opts.heartbeat_ms.clamp(1, (opts.lease_ms / 2).max(1)),
        poll_ms: opts.poll_ms.max(1),
        ..opts
    };
    let owner: Arc<str> = format!("{}#{}", opts.name, &uuid::Uuid::new_v4().simple().to_string()[..8]).into();
    let db = Db { store, worker: Arc::clone(&owner), clock };
    tracing::info!(worker = %owner, "job worker started");
    let mut stats = WorkerStats::default();
    while !stopping(&shutdown) {
        let (o, lease_ms, now) = (Arc::clone(&owner), opts.lease_ms, db.now_ms());
        match db.call(move |s| s.lease_job(&o, now, lease_ms)).await {
            Ok(Some(job)) => {
                stats.leased += 1;
                let run = Run { db: &db, exec: &exec, opts: &opts, shutdown: &shutdown };
                run.job(job, &mut stats).await;
            }
            Ok(None) => idle(&db.clock, opts.poll_ms, &mut shutdown).await,
            Err(e) => {
                tracing::warn!(worker = %owner, error = %e, "could not lease a job");
                idle(&db.clock, opts.poll_ms, &mut shutdown).await;
            }
        }
    }
    tracing::info!(worker = %owner, ?stats, "job worker stopped");
    Ok(stats)
}

/// Waits `poll_ms`, or less if shutdown is asked for.
async fn idle(clock: &SharedClock, poll_ms: i64, shutdown: &mut watch::Receiver<bool>) {
    let wait = Duration::from_millis(poll_ms.unsigned_abs());
    tokio::select! {
        () = clock.sleep(wait) => {}
        _ = shutdown.changed() => {}
    }
}

/// How running a job's actions ended.
enum Outcome {
    /// Every action done; the results by index.
    Completed(Vec<Value>),
    /// Action `index` failed.
    Failed { index: usize, failure: ActionError },
    /// Shutdown between actions.
    Stopped,
    /// Another worker holds the job now.
    Lost,
    /// Progress could not be recorded.
    StoreFailed(JobsError),
}

/// One leased job being run.
struct Run<'a> {
    db: &'a Db,
    exec: &'a Arc<dyn ActionExecutor>,
    opts: &'a WorkerOptions,
    shutdown: &'a watch::Receiver<bool>,
}

impl Run<'_> {
    async fn job(&self, job: Job, stats: &mut WorkerStats) {
        let Some(actions) = job.payload.get("actions").and_then(Value::as_array).cloned() else {
            let failure = ActionError::permanent("the job's payload has no `actions` list");
            self.fail(&job, &failure.message, false, stats).await;
            return;
        };
        tracing::debug!(worker = %self.db.worker, job = job.id, key = %job.key, attempt = job.attempts, from = job.actions_done, "running job");
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = tokio::spawn(heartbeat(self.db.clone(), job.id, self.opts.clone(), Arc::clone(&lost)));
        let outcome = self.actions(&job, &actions, &lost, stats).await;
        heartbeat.abort();
        // Aborted on purpose; only a panic would be worth a word.
        if let Err(e) = heartbeat.await {
            if e.is_panic() {
                tracing::warn!(worker = %self.db.worker, job = job.id, "heartbeat task panicked");
            }
        }
        self.record(&job, &actions, outcome, stats).await;
    }

    /// Runs `actions[job.actions_done..]` in order, recording each.
    async fn actions(&self, job: &Job, actions: &[Value], lost: &AtomicBool, stats: &mut WorkerStats) -> Outcome {
        let mut results = match &job.result {
            Value::Array(done) => done.clone(),
            _ => Vec::new(),
        };
        let from = usize::try_from(job.actions_done).unwrap_or(usize::MAX);
        for (index, action) in actions.iter().enumerate().skip(from) {
            if stopping(self.shutdown) {
                return Outcome::Stopped;
            }
            if lost.load(Ordering::SeqCst) {
                return Outcome::Lost;
            }
            let done = match self.execute(job, index, action).await {
                Ok(done) => done,
                Err(failure) => {
                    // Keep what the failed action did (each host's outcome)
                    // at its index; `actions_done` stays, so a retry runs it again.
                    if let Some(partial) = &failure.result {
                        results.resize(index, Value::Null);
                        results.push(partial.clone());
                        if let Err(e) = self.progress(job.id, index, Value::Array(results.clone()), Vec::new()).await {
                            tracing::warn!(job = job.id, error = %e, "could not keep the failed action's result");
                        }
                    }
                    return Outcome::Failed { index, failure };
                }
            };
            results.resize(index, Value::Null);
            results.push(done.result);
            let recorded = self.progress(job.id, index + 1, Value::Array(results.clone()), done.mutations).await;
            match recorded {
                Ok(()) => stats.actions += 1,
                Err(e) if is_lease_lost(&e) => return Outcome::Lost,
                Err(e) => return Outcome::StoreFailed(e),
            }
        }
        Outcome::Completed(results)
    }

    /// Runs one action in its own task, so that a panicking executor fails
    /// the job (for good: a panic is a bug) instead of killing the worker.
    async fn execute(&self, job: &Job, index: usize, action: &Value) -> Result<ActionOutput, ActionError> {
        let (exec, job, action) = (Arc::clone(self.exec), job.clone(), action.clone());
        match tokio::spawn(async move { exec.execute(&job, index, &action).await }).await {
            Ok(outcome) => outcome,
            Err(e) => {
                let detail = match e.try_into_panic() {
                    Ok(payload) => panic_message(payload.as_ref()),
                    Err(e) => e.to_string(),
                };
                Err(ActionError::permanent(format!("the action panicked: {detail}")))
            }
        }
    }

    async fn progress(&self, id: i64, done: usize, result: Value, mutations: Vec<Mutation>) -> Result<(), JobsError> {
        let owner = Arc::clone(&self.db.worker);
        let done = u32::try_from(done).unwrap_or(u32::MAX);
        self.db.call(move |s| s.job_progress(id, &owner, done, &result, &mutations)).await
    }

    async fn record(&self, job: &Job, actions: &[Value], outcome: Outcome, stats: &mut WorkerStats) {
        let (id, owner, now) = (job.id, Arc::clone(&self.db.worker), self.db.now_ms());
        match outcome {
            Outcome::Completed(results) => {
                let result = Value::Array(results);
                match self.db.call(move |s| s.complete_job(id, &owner, &result, now)).await {
                    Ok(()) => {
                        stats.completed += 1;
                        tracing::info!(worker = %self.db.worker, job = id, key = %job.key, attempt = job.attempts, "job done");
                    }
                    Err(e) => self.not_recorded(job, &e, stats),
                }
            }
            Outcome::Failed { index, failure } => {
                let message = format!("action {} of {}: {}", index + 1, actions.len(), failure.message);
                self.fail(job, &message, failure.retryable, stats).await;
            }
            Outcome::Stopped => match self.db.call(move |s| s.release_job(id, &owner, now)).await {
                Ok(()) => {
                    stats.released += 1;
                    tracing::info!(worker = %self.db.worker, job = id, "job given back on shutdown");
                }
                Err(e) => self.not_recorded(job, &e, stats),
            },
            Outcome::Lost => {
                stats.lost += 1;
                tracing::warn!(worker = %self.db.worker, job = id, "lease lost while running; another worker took the job over");
            }
            Outcome::StoreFailed(e) => self.not_recorded(job, &e, stats),
        }
    }

    /// Records a failed try: retried after a backoff when `retryable` and
    /// tries remain, else dead.
    async fn fail(&self, job: &Job, message: &str, retryable: bool, stats: &mut WorkerStats) {
        let now = self.db.now_ms();
        let retry_at = (retryable && job.attempts < job.max_attempts).then(|| {
            now.saturating_add(backoff_ms(job.attempts, self.opts.backoff_base_ms, self.opts.backoff_max_ms, fastrand::f64()))
        });
        let (id, owner, error) = (job.id, Arc::clone(&self.db.worker), message.to_owned());
        match self.db.call(move |s| s.fail_job(id, &owner, &error, retry_at, now)).await {
            Ok(JobStatus::Queued) => {
                stats.retried += 1;
                tracing::warn!(worker = %self.db.worker, job = id, attempt = job.attempts, retry_in_ms = retry_at.map(|at| at - now), error = %message, "job failed; will retry");
            }
            Ok(status) => {
                stats.dead += 1;
                tracing::warn!(worker = %self.db.worker, job = id, attempt = job.attempts, status = status.as_str(), error = %message, "job dead-lettered");
            }
            Err(e) => self.not_recorded(job, &e, stats),
        }
    }

    fn not_recorded(&self, job: &Job, e: &JobsError, stats: &mut WorkerStats) {
        if is_lease_lost(e) {
            stats.lost += 1;
            tracing::warn!(worker = %self.db.worker, job = job.id, "lease lost before the outcome was recorded; another worker took the job over");
        } else {
            tracing::error!(worker = %self.db.worker, job = job.id, error = %e, "could not record the job's progress; it runs again once its lease runs out");
        }
    }
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// Renews the lease every `heartbeat_ms` until aborted, or until the lease is
/// lost (then sets `lost`, so no further action starts).
async fn heartbeat(db: Db, id: i64, opts: WorkerOptions, lost: Arc<AtomicBool>) {
    let period = Duration::from_millis(opts.heartbeat_ms.unsigned_abs());
    loop {
        db.clock.sleep(period).await;
        let (owner, lease_ms, now) = (Arc::clone(&db.worker), opts.lease_ms, db.now_ms());
        match db.call(move |s| s.heartbeat(id, &owner, now, lease_ms)).await {
            Ok(()) => {}
            Err(e) if is_lease_lost(&e) => {
                lost.store(true, Ordering::SeqCst);
                tracing::warn!(worker = %db.worker, job = id, "lease lost: the job was taken over");
                return;
            }
            Err(e) => tracing::warn!(worker = %db.worker, job = id, error = %e, "could not renew the job's lease"),
        }
    }
}
