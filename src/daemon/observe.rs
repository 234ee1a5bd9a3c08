//! Wrappers that time and count the daemon's work for `/metrics`, around
//! the seams the work already goes through: a [`Collector`] (collection
//! durations per counter) and an [`ActionExecutor`] (actions run, per
//! result). The wrapped piece does not know it is observed.

use std::sync::Arc;
use std::time::Instant;

use crate::api::Metrics;
use crate::jobs::{ActionError, ActionExecutor, ActionOutput};
use crate::store::Job as ActionJob;
use crate::monitor::{Collector, Job, Outcome};

/// A collector whose collections are timed, per counter.
pub(super) struct TimedCollector {
    pub inner: Arc<dyn Collector>,
    pub metrics: Arc<Metrics>,
}

#[async_trait::async_trait]
impl Collector for TimedCollector {
    async fn collect(&self, job: &Job) -> Vec<Outcome> {
        let started = Instant::now();
        let outcomes = self.inner.collect(job).await;
        let secs = started.elapsed().as_secs_f64();
        for c in &job.counters {
            self.metrics.collected(&c.counter.name, secs);
        }
        outcomes
    }
}

/// An action executor whose runs are counted, per result.
pub(super) struct CountedExecutor {
    pub inner: Arc<dyn ActionExecutor>,
    pub metrics: Arc<Metrics>,
}

#[async_trait::async_trait]
impl ActionExecutor for CountedExecutor {
    async fn execute(&self, job: &ActionJob, index: usize, action: &serde_json::Value) -> Result<ActionOutput, ActionError> {
        let result = self.inner.execute(job, index, action).await;
        self.metrics.action_ran(result.is_ok());
        result
    }
}
