//! The durable job queue and the persisted trigger states.
//!
//! Trigger states are opaque JSON here (the store must not know the rules'
//! types): one [`TriggerRecord`] per trigger (and later per host). A fire and
//! its job are written together by [`JobStore::save_evaluation`], so a fire is
//! never recorded without its job, nor a job without its fire.
//!
//! Jobs are enqueued with an idempotency key (`<trigger>@<fire ms>`): a second
//! enqueue of the same key is a no-op. Workers lease a job for a while and
//! renew the lease by heartbeats; a job whose lease ran out (its worker died)
//! is leased again by another worker, and the old holder's later writes are
//! refused ([`StoreError::LeaseLost`]). Progress (how many of the job's actions
//! are done) is committed together with the actions' state mutations, so a
//! re-leased job resumes after its last recorded action and a state change is
//! never applied twice.
//!
//! Times are milliseconds since the epoch, passed in by the caller.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Mutation, Result};

/// The persisted state of one trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerRecord {
    /// The trigger's name.
    pub name: String,
    /// `""` for the trigger as a whole (later: a host, for per-host state).
    pub key: String,
    /// The state, as the rules engine serialises it.
    pub state: serde_json::Value,
    /// When it was last written (ms).
    pub updated_ms: i64,
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// Idempotency key, `<trigger>@<fire ms>`: one job per key, ever.
    pub key: String,
    /// The trigger that fired.
    pub trigger: String,
    /// The fire instant (ms).
    pub fired_at_ms: i64,
    /// The config revision the trigger was evaluated under.
    pub revision: Option<String>,
    /// What to do: `{"actions": [...], ...}` (the values that made it fire, too).
    pub payload: serde_json::Value,
    /// How many tries before the job is dead (0 counts as 1).
    pub max_attempts: u32,
}

/// The outcome of an enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Enqueued {
    /// A new job with this id.
    New(i64),
    /// The key was already enqueued, as this job; nothing changed.
    Duplicate(i64),
}

impl Enqueued {
    /// The job's id, new or existing.
    pub fn id(self) -> i64 {
        match self {
            Enqueued::New(id) | Enqueued::Duplicate(id) => id,
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting to run (at or after `run_after_ms`).
    Queued,
    /// Held by a worker until `lease_expires_ms` unless renewed.
    Leased,
    /// Every action done.
    Done,
    /// Given up: a non-retryable failure, or the last try failed.
    Dead,
}

impl JobStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [JobStatus; 4] = [JobStatus::Queued, JobStatus::Leased, JobStatus::Done, JobStatus::Dead];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Leased => "leased",
            JobStatus::Done => "done",
            JobStatus::Dead => "dead",
        }
    }

    /// From the lowercase name.
    pub fn parse(text: &str) -> Option<JobStatus> {
        Some(match text {
            "queued" => JobStatus::Queued,
            "leased" => JobStatus::Leased,
            "done" => JobStatus::Done,
            "dead" => JobStatus::Dead,
            _ => return None,
        })
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Its id (enqueue order).
    pub id: i64,
    /// Idempotency key.
    pub key: String,
    /// The trigger that fired.
    pub trigger: String,
    /// The fire instant (ms).
    pub fired_at_ms: i64,
    /// The config revision.
    pub revision: Option<String>,
    /// `{"actions": [...], ...}`.
    pub payload: serde_json::Value,
    /// Where it stands.
    pub status: JobStatus,
    /// Tries started (leases taken), including the current one.
    pub attempts: u32,
    /// Tries allowed.
    pub max_attempts: u32,
    /// Not leased before this instant (ms).
    pub run_after_ms: i64,
    /// The worker holding the lease.
    pub lease_owner: Option<String>,
    /// When the lease runs out (ms).
    pub lease_expires_ms: Option<i64>,
    /// The first this many actions are done.
    pub actions_done: u32,
    /// What the actions returned (as recorded by the worker).
    pub result: serde_json::Value,
    /// The last failure.
    pub last_error: Option<String>,
    /// Enqueued at (ms).
    pub created_ms: i64,
    /// Last change of status: enqueued, leased, retried, done, dead (ms).
    pub updated_ms: i64,
}

/// Which jobs [`JobStore::jobs`] lists (newest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs with this status.
    pub status: Option<JobStatus>,
    /// Only jobs of this trigger.
    pub trigger: Option<String>,
    /// Only the job with this idempotency key (`<trigger>@<fire ms>`).
    pub key: Option<String>,
    /// Only jobs with an id below this one (the next page after a job).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: Option<usize>,
}

/// Persistence of trigger states and the job queue.
///
/// Every read-modify-write is one write transaction, so several handles or
/// processes on one store can work the queue at once: a job is leased by one
/// worker at a time.
pub trait JobStore {
    /// Every persisted trigger state, by name then key.
    fn trigger_states(&self) -> Result<Vec<TriggerRecord>>;
    /// In one transaction: upserts `states` (by name and key) and enqueues
    /// `jobs` (as [`JobStore::enqueue`]); all or nothing.
    fn save_evaluation(&mut self, states: &[TriggerRecord], jobs: &[NewJob], now_ms: i64) -> Result<Vec<Enqueued>>;
    /// Deletes the states of triggers whose name is not in `keep`; returns how
    /// many records went.
    fn delete_trigger_states(&mut self, keep: &[String]) -> Result<usize>;

    /// Enqueues a job, due at once; a key already enqueued is a no-op
    /// returning the existing job's id.
    fn enqueue(&mut self, job: &NewJob, now_ms: i64) -> Result<Enqueued>;
    /// Leases the oldest due job to `worker` until `now_ms + ttl_ms`: a queued
    /// job whose `run_after_ms <= now_ms`, or a leased one whose lease ran out
    /// (`lease_expires_ms <= now_ms`). Counts an attempt. A job whose lease ran
    /// out on its last allowed attempt is dead-lettered instead.
    fn lease_job(&mut self, worker: &str, now_ms: i64, ttl_ms: i64) -> Result<Option<Job>>;
    /// Extends `worker`'s lease on job `id` to `now_ms + ttl_ms`; fails with
    /// [`StoreError::LeaseLost`](super::StoreError::LeaseLost) if `worker` no
    /// longer holds it.
    fn heartbeat(&mut self, id: i64, worker: &str, now_ms: i64, ttl_ms: i64) -> Result<()>;
    /// Records that the first `actions_done` actions are done and what they
    /// returned, in one transaction with `mutations` (a state commit that
    /// bumps the serial when not empty). Refused if `worker` does not hold
    /// the lease.
    fn job_progress(&mut self, id: i64, worker: &str, actions_done: u32, result: &serde_json::Value, mutations: &[Mutation]) -> Result<()>;
    /// Marks the job done with its result and ends the lease.
    fn complete_job(&mut self, id: i64, worker: &str, result: &serde_json::Value, now_ms: i64) -> Result<()>;
    /// Records a failed try: queued again at `retry_at_ms` when given and
    /// tries remain, else dead; `error` is kept as `last_error`. Returns the
    /// new status.
    fn fail_job(&mut self, id: i64, worker: &str, error: &str, retry_at_ms: Option<i64>, now_ms: i64) -> Result<JobStatus>;
    /// Gives the job back without counting the try (a worker shutting down
    /// between actions): queued again, due at `now_ms`.
    fn release_job(&mut self, id: i64, worker: &str, now_ms: i64) -> Result<()>;
    /// Jobs matching `filter`, newest first.
    fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>>;
    /// One job.
    fn job(&self, id: i64) -> Result<Option<Job>>;
    /// How many jobs have each status (every status present, zeros included).
    fn queue_depth(&self) -> Result<BTreeMap<String, u64>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in JobStatus::ALL {
            assert_eq!(JobStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), serde_json::json!(status.as_str()));
        }
        assert_eq!(JobStatus::parse("running"), None);
        assert_eq!(Enqueued::Duplicate(7).id(), 7);
    }
}
