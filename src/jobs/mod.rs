//! Jobs: the workers that run the durable job queue's jobs (trigger actions),
//! with leases, heartbeats, retries and idempotency.
//!
//! A job's payload is `{"actions": [...], ...}`. A worker ([`run_worker`])
//! leases the oldest due job, renews the lease by heartbeats while it runs,
//! and hands each remaining action to an [`ActionExecutor`] in order. After
//! each action it records "the first N actions are done" together with the
//! action's state [`Mutation`]s in one store transaction, so a job taken over
//! after a crash resumes after its last recorded action and never applies a
//! state change twice. The first failure stops the job: a retryable one is
//! retried after an exponential backoff with full jitter ([`backoff_ms`]), a
//! non-retryable one (or the last try) dead-letters it with its error.
//!
//! Delivery of an action's outside effect (a webhook, a playbook run) is at
//! least once: a worker that dies after the effect but before recording it
//! leaves the action to be run again by the next worker.
//!
//! Owns no global state: every worker opens its own store connection, so
//! embedding several (or several processes) on one store is fine. Must not
//! depend on the CLI nor print.

mod worker;

use async_trait::async_trait;

use crate::model::JobSettings;
use crate::store::{Job, Mutation, StoreError};

pub use worker::{run_worker, WorkerStats};

/// Default number of workers.
pub const DEFAULT_WORKERS: u32 = 4;
/// Default lease (ms).
pub const DEFAULT_LEASE_MS: i64 = 30_000;
/// Default tries per job.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Default first retry delay bound (ms).
pub const DEFAULT_BACKOFF_MS: i64 = 1_000;
/// Default longest retry delay (ms).
pub const DEFAULT_BACKOFF_MAX_MS: i64 = 300_000;

/// Errors of a worker.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// The store could not be opened or used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blocking store call did not finish (it panicked or was cancelled).
    #[error("worker `{worker}`: a store call did not finish: {detail}")]
    Task {
        /// The worker.
        worker: String,
        /// What happened.
        detail: String,
    },
}

/// Why an action failed, and whether trying again may help: the one error
/// type of every action executor (the daemon's is `actions::Executor`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ActionError {
    /// What went wrong, for `last_error` (never a secret).
    pub message: String,
    /// Whether another try may succeed (a timeout, a 5xx, a failed host:
    /// yes; an unknown action name, a bad config, a 4xx: no).
    pub retryable: bool,
    /// What the failed action did before it failed (a run's per-host
    /// outcome), kept in the job's `result` at the action's index.
    pub result: Option<serde_json::Value>,
}

impl ActionError {
    /// A failure that another try may not meet again (a timeout, a refused connection).
    pub fn transient(message: impl Into<String>) -> ActionError {
        ActionError { message: message.into(), retryable: true, result: None }
    }

    /// A failure that every try would repeat: the job is dead-lettered at once.
    pub fn permanent(message: impl Into<String>) -> ActionError {
        ActionError { message: message.into(), retryable: false, result: None }
    }

    /// The error with what the action did before it failed.
    pub fn with_result(self, result: serde_json::Value) -> ActionError {
        ActionError { result: Some(result), ..self }
    }

    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

/// What a successful action produced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ActionOutput {
    /// A JSON summary (kept in the job's `result`, by action index; never a secret).
    pub result: serde_json::Value,
    /// State changes to commit together with "this action is done" (a scale
    /// action's new desired count).
    pub mutations: Vec<Mutation>,
}

/// Runs one action of a job. Implemented by `actions::Executor` (scale, run, notify).
#[async_trait]
pub trait ActionExecutor: Send + Sync {
    /// Runs `action`, the `index`th (from 0) of `job`'s actions. An action it
    /// does not know is a non-retryable failure.
    async fn execute(&self, job: &Job, index: usize, action: &serde_json::Value) -> Result<ActionOutput, ActionError>;
}

/// How a worker works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerOptions {
    /// The worker's name (logs; the lease owner is this plus a random suffix,
    /// so two workers never share a lease even with one name).
    pub name: String,
    /// Lease length (ms).
    pub lease_ms: i64,
    /// Heartbeat period (ms); kept between 1 and half the lease.
    pub heartbeat_ms: i64,
    /// How long an idle worker waits before looking for due jobs again (ms).
    pub poll_ms: i64,
    /// Bound of the first retry delay (ms).
    pub backoff_base_ms: i64,
    /// Longest retry delay (ms).
    pub backoff_max_ms: i64,
}

impl Default for WorkerOptions {
    fn default() -> WorkerOptions {
        WorkerOptions {
            name: "worker".to_owned(),
            lease_ms: DEFAULT_LEASE_MS,
            heartbeat_ms: DEFAULT_LEASE_MS / 3,
            poll_ms: 1_000,
            backoff_base_ms: DEFAULT_BACKOFF_MS,
            backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
        }
    }
}

impl WorkerOptions {
    /// Options from the project's `daemon.jobs` settings (defaults where
    /// unset), for a worker named `name`.
    pub fn from_settings(name: &str, settings: Option<&JobSettings>) -> WorkerOptions {
        let ms = |d: Option<&crate::model::Duration>, default: i64| {
            d.map_or(default, |d| i64::try_from(d.get().as_millis()).unwrap_or(i64::MAX))
        };
        let lease_ms = ms(settings.and_then(|s| s.lease.as_ref()), DEFAULT_LEASE_MS);
        WorkerOptions {
            name: name.to_owned(),
            lease_ms,
            heartbeat_ms: lease_ms / 3,
            backoff_base_ms: ms(settings.and_then(|s| s.backoff.as_ref()), DEFAULT_BACKOFF_MS),
            backoff_max_ms: ms(settings.and_then(|s| s.backoff_max.as_ref()), DEFAULT_BACKOFF_MAX_MS),
            ..WorkerOptions::default()
        }
    }
}

/// How many workers `settings` ask for (default [`DEFAULT_WORKERS`]).
pub fn worker_count(settings: Option<&JobSettings>) -> u32 {
    settings.and_then(|s| s.workers).unwrap_or(DEFAULT_WORKERS).max(1)
}

/// Tries per job that `settings` allow (default [`DEFAULT_MAX_ATTEMPTS`]).
pub fn max_attempts(settings: Option<&JobSettings>) -> u32 {
    settings.and_then(|s| s.max_attempts).unwrap_or(DEFAULT_MAX_ATTEMPTS).max(1)
}

/// The delay before the retry that follows try `attempt` (1 for the first
/// try): "full jitter", `rand * min(max, base * 2^(attempt-1))` with `rand`
/// in `[0, 1]` (clamped), so retries of many jobs spread out instead of
/// arriving together. Never negative, never above `max`.
pub fn backoff_ms(attempt: u32, base: i64, max: i64, rand: f64) -> i64 {
    let (base, max) = (base.max(0), max.max(0));
    let shift = attempt.saturating_sub(1);
    let bound = if shift >= 62 { max } else { base.saturating_mul(1_i64 << shift).min(max) };
    let rand = if rand.is_nan() { 0.0 } else { rand.clamp(0.0, 1.0) };
    // `as` saturates; bound <= i64::MAX and rand <= 1.
    ((bound as f64) * rand).floor().min(bound as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let bounds: Vec<i64> = (1..=8).map(|a| backoff_ms(a, 1_000, 30_000, 1.0)).collect();
        assert_eq!(bounds, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
        assert_eq!(backoff_ms(0, 1_000, 30_000, 1.0), 1_000, "attempt 0 counts as the first");
        assert_eq!(backoff_ms(200, 1_000, 30_000, 1.0), 30_000, "no overflow on huge attempts");
        assert_eq!(backoff_ms(63, i64::MAX, i64::MAX, 1.0), i64::MAX);
    }

    #[test]
    fn backoff_jitter_stays_within_zero_and_the_bound() {
        assert_eq!(backoff_ms(3, 1_000, 30_000, 0.0), 0);
        assert_eq!(backoff_ms(3, 1_000, 30_000, 0.5), 2_000);
        assert_eq!(backoff_ms(3, 1_000, 30_000, 7.0), 4_000, "rand above 1 is clamped");
        assert_eq!(backoff_ms(3, 1_000, 30_000, -1.0), 0, "rand below 0 is clamped");
        assert_eq!(backoff_ms(3, 1_000, 30_000, f64::NAN), 0);
        let mut r: u64 = 0x9E37_79B9_7F4A_7C15;
        for attempt in 1..=20 {
            let bound = (1_000_i64 << (attempt - 1).min(20)).min(60_000);
            for _ in 0..200 {
                // xorshift: a fixed, reproducible sequence in [0, 1)
                r ^= r << 13;
                r ^= r >> 7;
                r ^= r << 17;
                let rand = (r >> 11) as f64 / (1u64 << 53) as f64;
                let d = backoff_ms(attempt, 1_000, 60_000, rand);
                assert!((0..=bound).contains(&d), "attempt {attempt}: {d} outside 0..={bound}");
            }
        }
    }

    #[test]
    fn backoff_grows_with_the_attempt_for_one_draw() {
        for rand in [0.1, 0.37, 0.5, 0.99] {
            let delays: Vec<i64> = (1..=12).map(|a| backoff_ms(a, 250, 120_000, rand)).collect();
            assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
            assert!(delays[11] > delays[0], "{delays:?}");
        }
    }

    #[test]
    fn options_follow_the_settings_and_their_defaults() {
        let d = |t: &str| Some(crate::model::Duration::parse(t).unwrap());
        let settings = JobSettings { workers: Some(2), lease: d("9s"), max_attempts: Some(3), backoff: d("250ms"), backoff_max: d("1m") };
        let opts = WorkerOptions::from_settings("w", Some(&settings));
        assert_eq!((opts.lease_ms, opts.heartbeat_ms, opts.backoff_base_ms, opts.backoff_max_ms), (9_000, 3_000, 250, 60_000));
        assert_eq!((worker_count(Some(&settings)), max_attempts(Some(&settings))), (2, 3));
        let opts = WorkerOptions::from_settings("w", None);
        assert_eq!((opts.lease_ms, opts.backoff_base_ms, opts.backoff_max_ms), (30_000, 1_000, 300_000));
        assert_eq!((worker_count(None), max_attempts(None)), (4, 5));
    }
}
