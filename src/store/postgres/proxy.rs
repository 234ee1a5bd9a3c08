//! [`PostgresStore`]: the store traits, run on a [`Session`] that lives on a
//! thread of its own.
//!
//! The synchronous `postgres` client drives its connection with a tokio
//! runtime of its own, which tokio refuses to start (it panics) on a thread
//! that already runs async tasks; that includes dropping the client. Store
//! calls are blocking and may come from anywhere: tokio's blocking pool, a
//! plain thread, or (briefly, like a SQLite call) an async task, and a
//! handle's pool may be dropped inside the daemon's runtime. So each
//! connection's client stays on one plain thread, which runs the calls sent
//! to it one at a time; the caller blocks until its call is done. The
//! arguments are copied to that thread (the calls are not hot enough for
//! that to matter next to a round trip to the server).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::{redact, Session};
use crate::store::jobs::{Enqueued, Job, JobFilter, JobStatus, JobStore, NewJob, TriggerRecord};
use crate::store::samples::{Event, Latest, MaintainReport, Points, RangeQuery, Retention, Sample, SampleStore, SeriesKey, SeriesPoints, Selector};
use crate::store::tasks::{PlanMove, PlanRecord, PlanState, TaskFilter, TaskRecord, TaskStore};
use crate::store::{BackendErrorKind, LockInfo, LockRequest, Mutation, Result, Snapshot, Store, StoreError, TraceStore, TraceTask};

/// A call run on the session's thread.
type Call = Box<dyn FnOnce(&mut Session) + Send>;

/// The PostgreSQL state store: one connection, on a thread of its own.
pub struct PostgresStore {
    /// `None` only while dropping.
    calls: Option<mpsc::Sender<Call>>,
    thread: Option<JoinHandle<()>>,
    /// Set by the thread when the server closed the connection.
    closed: Arc<AtomicBool>,
    label: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("url", &self.label).finish()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` and migrates it (see
    /// [`Session::connect`]), on a new thread that then keeps the
    /// connection.
    pub fn connect(url: &str, password: Option<&SecretString>) -> Result<PostgresStore> {
        let label = redact(url);
        let failed = |e: std::io::Error| StoreError::Backend { path: label.clone(), kind: BackendErrorKind::Other, source: Box::new(e) };
        let url = url.to_owned();
        let password = password.map(|p| SecretString::from(p.expose_secret()));
        let closed = Arc::new(AtomicBool::new(false));
        let (calls, queue) = mpsc::channel::<Call>();
        let (ready, opened) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("scaler-postgres".into())
            .spawn(move || {
                let mut session = match Session::connect(&url, password.as_ref()) {
                    Ok(session) => session,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                for call in queue {
                    call(&mut session);
                }
                // the sender is gone: the session (and its client) ends here
            })
            .map_err(failed)?;
        let store = PostgresStore { calls: Some(calls), thread: Some(thread), closed, label };
        match opened.recv() {
            Ok(Ok(())) => Ok(store),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(store.gone()),
        }
    }

    /// The URL, without a password.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn gone(&self) -> StoreError {
        StoreError::Backend { path: self.label.clone(), kind: BackendErrorKind::Connection, source: "the connection's thread stopped".into() }
    }

    /// Runs `f` on the session's thread and waits for its result.
    fn call<T: Send + 'static>(&self, f: impl FnOnce(&mut Session) -> Result<T> + Send + 'static) -> Result<T> {
        let (reply, result) = mpsc::sync_channel(1);
        let closed = self.closed.clone();
        let call: Call = Box::new(move |session| {
            let out = f(session);
            // before the caller sees the result, so that it can drop a dead connection
            closed.store(session.is_closed(), Ordering::Relaxed);
            let _ = reply.send(out);
        });
        let sent = self.calls.as_ref().map(|calls| calls.send(call));
        match sent {
            Some(Ok(())) => result.recv().unwrap_or_else(|_| Err(self.gone())),
            _ => Err(self.gone()),
        }
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Closing the queue ends the thread, which closes the connection.
        drop(self.calls.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Store for PostgresStore {
    fn snapshot(&self) -> Result<Snapshot> {
        self.call(|s| s.snapshot())
    }

    fn commit(&mut self, mutations: &[Mutation]) -> Result<u64> {
        let mutations = mutations.to_vec();
        self.call(move |s| s.commit(&mutations))
    }

    fn lock(&mut self, req: &LockRequest) -> Result<LockInfo> {
        let req = req.clone();
        self.call(move |s| s.lock(&req))
    }

    fn lock_at(&mut self, req: &LockRequest, now: DateTime<Utc>) -> Result<LockInfo> {
        let req = req.clone();
        self.call(move |s| s.lock_at(&req, now))
    }

    fn renew(&mut self, id: &str, ttl: Duration) -> Result<LockInfo> {
        let id = id.to_owned();
        self.call(move |s| s.renew(&id, ttl))
    }

    fn renew_at(&mut self, id: &str, ttl: Duration, now: DateTime<Utc>) -> Result<LockInfo> {
        let id = id.to_owned();
        self.call(move |s| s.renew_at(&id, ttl, now))
    }

    fn unlock(&mut self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.call(move |s| s.unlock(&id))
    }

    fn force_unlock(&mut self, id: &str) -> Result<LockInfo> {
        let id = id.to_owned();
        self.call(move |s| s.force_unlock(&id))
    }

    fn current_lock(&self) -> Result<Option<LockInfo>> {
        self.call(|s| s.current_lock())
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed) || self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl SampleStore for PostgresStore {
    fn append(&mut self, samples: &[Sample]) -> Result<()> {
        let samples = samples.to_vec();
        self.call(move |s| s.append(&samples))
    }

    fn append_events(&mut self, events: &[Event], samples: &[Sample]) -> Result<()> {
        let (events, samples) = (events.to_vec(), samples.to_vec());
        self.call(move |s| s.append_events(&events, &samples))
    }

    fn series(&self, selector: &Selector) -> Result<Vec<SeriesKey>> {
        let selector = selector.clone();
        self.call(move |s| s.series(&selector))
    }

    fn range(&self, query: &RangeQuery) -> Result<Vec<SeriesPoints>> {
        let query = query.clone();
        self.call(move |s| s.range(&query))
    }

    fn raw(&self, selector: &Selector, from_ms: i64, to_ms: i64) -> Result<Vec<(SeriesKey, Points)>> {
        let selector = selector.clone();
        self.call(move |s| s.raw(&selector, from_ms, to_ms))
    }

    fn failures(&self, selector: &Selector, from_ms: i64, to_ms: i64) -> Result<Vec<(SeriesKey, i64, String)>> {
        let selector = selector.clone();
        self.call(move |s| s.failures(&selector, from_ms, to_ms))
    }

    fn latest(&self, selector: &Selector, at_ms: i64) -> Result<Vec<Latest>> {
        let selector = selector.clone();
        self.call(move |s| s.latest(&selector, at_ms))
    }

    fn events(&self, source: &str, from_ms: i64, to_ms: i64, limit: usize) -> Result<Vec<Event>> {
        let source = source.to_owned();
        self.call(move |s| s.events(&source, from_ms, to_ms, limit))
    }

    fn maintain(&mut self, now_ms: i64, retention: &Retention) -> Result<MaintainReport> {
        let retention = *retention;
        self.call(move |s| s.maintain(now_ms, &retention))
    }
}

impl JobStore for PostgresStore {
    fn trigger_states(&self) -> Result<Vec<TriggerRecord>> {
        self.call(|s| s.trigger_states())
    }

    fn save_evaluation(&mut self, states: &[TriggerRecord], jobs: &[NewJob], now_ms: i64) -> Result<Vec<Enqueued>> {
        let (states, jobs) = (states.to_vec(), jobs.to_vec());
        self.call(move |s| s.save_evaluation(&states, &jobs, now_ms))
    }

    fn delete_trigger_states(&mut self, keep: &[String]) -> Result<usize> {
        let keep = keep.to_vec();
        self.call(move |s| s.delete_trigger_states(&keep))
    }

    fn enqueue(&mut self, job: &NewJob, now_ms: i64) -> Result<Enqueued> {
        let job = job.clone();
        self.call(move |s| s.enqueue(&job, now_ms))
    }

    fn lease_job(&mut self, worker: &str, now_ms: i64, ttl_ms: i64) -> Result<Option<Job>> {
        let worker = worker.to_owned();
        self.call(move |s| s.lease_job(&worker, now_ms, ttl_ms))
    }

    fn heartbeat(&mut self, id: i64, worker: &str, now_ms: i64, ttl_ms: i64) -> Result<()> {
        let worker = worker.to_owned();
        self.call(move |s| s.heartbeat(id, &worker, now_ms, ttl_ms))
    }

    fn job_progress(&mut self, id: i64, worker: &str, actions_done: u32, result: &serde_json::Value, mutations: &[Mutation]) -> Result<()> {
        let (worker, result, mutations) = (worker.to_owned(), result.clone(), mutations.to_vec());
        self.call(move |s| s.job_progress(id, &worker, actions_done, &result, &mutations))
    }

    fn complete_job(&mut self, id: i64, worker: &str, result: &serde_json::Value, now_ms: i64) -> Result<()> {
        let (worker, result) = (worker.to_owned(), result.clone());
        self.call(move |s| s.complete_job(id, &worker, &result, now_ms))
    }

    fn fail_job(&mut self, id: i64, worker: &str, error: &str, retry_at_ms: Option<i64>, now_ms: i64) -> Result<JobStatus> {
        let (worker, error) = (worker.to_owned(), error.to_owned());
        self.call(move |s| s.fail_job(id, &worker, &error, retry_at_ms, now_ms))
    }

    fn release_job(&mut self, id: i64, worker: &str, now_ms: i64) -> Result<()> {
        let worker = worker.to_owned();
        self.call(move |s| s.release_job(id, &worker, now_ms))
    }

    fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let filter = filter.clone();
        self.call(move |s| s.jobs(&filter))
    }

    fn job(&self, id: i64) -> Result<Option<Job>> {
        self.call(move |s| s.job(id))
    }

    fn queue_depth(&self) -> Result<BTreeMap<String, u64>> {
        self.call(|s| s.queue_depth())
    }
}

impl TraceStore for PostgresStore {
    fn put_trace(&mut self, task: &TraceTask) -> Result<()> {
        let task = task.clone();
        self.call(move |s| s.put_trace(&task))
    }

    fn traces(&self) -> Result<Vec<TraceTask>> {
        self.call(|s| s.traces())
    }

    fn find_trace(&self, id: &str) -> Result<TraceTask> {
        let id = id.to_owned();
        self.call(move |s| s.find_trace(&id))
    }
}

impl TaskStore for PostgresStore {
    fn put_task(&mut self, task: &TaskRecord) -> Result<()> {
        let task = task.clone();
        self.call(move |s| s.put_task(&task))
    }

    fn task(&self, id: &str) -> Result<Option<TaskRecord>> {
        let id = id.to_owned();
        self.call(move |s| s.task(&id))
    }

    fn tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>> {
        let filter = filter.clone();
        self.call(move |s| s.tasks(&filter))
    }

    fn end_interrupted_tasks(&mut self, error: &str, now_ms: i64) -> Result<u64> {
        let error = error.to_owned();
        self.call(move |s| s.end_interrupted_tasks(&error, now_ms))
    }

    fn record_plan(&mut self, plan: &PlanRecord) -> Result<Vec<String>> {
        let plan = plan.clone();
        self.call(move |s| s.record_plan(&plan))
    }

    fn plan(&self, id: &str) -> Result<Option<PlanRecord>> {
        let id = id.to_owned();
        self.call(move |s| s.plan(&id))
    }

    fn plans(&self, before: Option<&str>, limit: usize) -> Result<Vec<PlanRecord>> {
        let before = before.map(str::to_owned);
        self.call(move |s| s.plans(before.as_deref(), limit))
    }

    fn move_plan(&mut self, id: &str, from: &[PlanState], to: PlanState, reason: Option<&str>, now_ms: i64) -> Result<PlanMove> {
        let (id, from, reason) = (id.to_owned(), from.to_vec(), reason.map(str::to_owned));
        self.call(move |s| s.move_plan(&id, &from, to, reason.as_deref(), now_ms))
    }
}
