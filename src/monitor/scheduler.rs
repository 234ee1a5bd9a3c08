//! The scheduler: every job on its own task, at its interval, with a fixed
//! per-job phase (jitter spreads jobs over the interval), a timeout, and a
//! semaphore bounding how many collections run at once.
//!
//! A slow or hanging host holds at most one permit for at most its timeout,
//! and only its own task waits for it; every other job keeps its schedule.
//! A cycle that overruns its interval skips the missed ticks instead of
//! bursting. Time comes from tokio (`tokio::time::pause` in tests) and sample
//! timestamps from a [`Clock`].

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::parse::RateTracker;
use super::{to_samples, CollectError, Collector, Job, Outcome};
use crate::store::Sample;

use crate::clock::Clock;

/// Scheduler settings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Collections running at once.
    pub concurrency: usize,
    /// Spread jobs over their interval (a fixed phase per job); off runs
    /// every job at once at start.
    pub jitter: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { concurrency: 64, jitter: true }
    }
}

/// The job's phase within its interval: a stable hash of counter and host,
/// so restarts keep the spread.
pub fn phase(job: &Job) -> Duration {
    let mut h = DefaultHasher::new();
    job.describe().hash(&mut h);
    let ms = job.interval.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % ms)
}

/// Runs one collection of `job` under the timeout.
pub async fn collect_one(collector: &dyn Collector, job: &Job) -> Vec<Outcome> {
    match tokio::time::timeout(job.timeout, collector.collect(job)).await {
        Ok(mut outcomes) => {
            // a collector that returned too few outcomes must not hide a counter
            while outcomes.len() < job.counters.len() {
                outcomes.push(Err(CollectError::Protocol("no result from the collector".into())));
            }
            outcomes
        }
        Err(_) => job.counters.iter().map(|_| Err(CollectError::Timeout(job.timeout))).collect(),
    }
}

/// Runs every job once, all at once under the concurrency bound; returns the
/// samples when the last one is done (or timed out).
pub async fn run_once(jobs: Vec<Job>, collector: Arc<dyn Collector>, clock: Arc<dyn Clock>, options: Options) -> Vec<Sample> {
    let semaphore = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut set = JoinSet::new();
    for job in jobs {
        let (collector, clock, semaphore) = (collector.clone(), clock.clone(), semaphore.clone());
        set.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let ts = clock.now_ms();
            let outcomes = collect_one(collector.as_ref(), &job).await;
            to_samples(&job, ts, outcomes, &mut RateTracker::new())
        });
    }
    let mut out = Vec::new();
    while let Some(done) = set.join_next().await {
        match done {
            Ok(samples) => out.extend(samples),
            Err(e) => tracing::error!(error = %e, "collection task failed"),
        }
    }
    out
}

/// Runs every job at its interval until `stop` turns true, sending each
/// collection's samples to `sink`. Returns when every task has stopped.
pub async fn run(jobs: Vec<Job>, collector: Arc<dyn Collector>, clock: Arc<dyn Clock>, options: Options, sink: mpsc::Sender<Vec<Sample>>, stop: watch::Receiver<bool>) {
    let semaphore = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for job in jobs {
        let (collector, clock, semaphore, sink, mut stop) = (collector.clone(), clock.clone(), semaphore.clone(), sink.clone(), stop.clone());
        set.spawn(async move {
            let mut next = start + if options.jitter { phase(&job) } else { Duration::ZERO };
            let mut rates = RateTracker::new();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let outcomes = {
                    let Ok(_permit) = semaphore.acquire().await else { return };
                    let ts = clock.now_ms();
                    let outcomes = tokio::select! {
                        o = collect_one(collector.as_ref(), &job) => o,
                        _ = stop.wait_for(|s| *s) => return,
                    };
                    (ts, outcomes)
                };
                let samples = to_samples(&job, outcomes.0, outcomes.1, &mut rates);
                tracing::debug!(job = %job.describe(), samples = samples.len(), "collected");
                if sink.send(samples).await.is_err() {
                    return;
                }
                next += job.interval;
                let now = Instant::now();
                if next <= now {
                    // overran: skip the missed ticks, keep the phase
                    let behind = (now - next).as_nanos() / job.interval.as_nanos().max(1) + 1;
                    next += job.interval * behind as u32;
                }
            }
        });
    }
    drop(sink);
    while set.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TokioClock;
    use crate::model::Counter;
    use crate::monitor::parse::Reading;
    use crate::monitor::{CounterSpec, DEFAULT_TIMEOUT};
    use crate::store::SampleValue;
    use async_trait::async_trait;

    /// Host `hung` never answers; `bad` fails counter `b`; others answer 1.
    struct Fake;

    #[async_trait]
    impl Collector for Fake {
        async fn collect(&self, job: &Job) -> Vec<Outcome> {
            if job.host == "hung" {
                std::future::pending::<()>().await;
            }
            job.counters
                .iter()
                .map(|c| if job.host == "bad" && c.name() == "b" { Err(CollectError::Protocol("boom".into())) } else { Ok(vec![Reading::plain(1.0)]) })
                .collect()
        }
    }

    fn job(name: &str, host: &str, interval_ms: u64, timeout_ms: u64) -> Job {
        let counter: Counter = serde_json::from_value(serde_json::json!({"name": name, "source": {"local": {"command": "x"}}})).unwrap();
        Job {
            counters: vec![Arc::new(CounterSpec::compile(&counter).unwrap())],
            host: host.into(),
            address: crate::fleet::HostPort { host: host.into(), port: None },
            target: None,
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(timeout_ms),
            ssh: None,
            credentials: crate::monitor::no_secrets(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_host_never_delays_other_hosts_or_counters() {
        let clock = Arc::new(TokioClock::starting_at(0));
        let (tx, mut rx) = mpsc::channel(1000);
        let (stop_tx, stop) = watch::channel(false);
        // concurrency 2: the hung host may hold one permit, never both
        let jobs = vec![job("a", "hung", 1000, 5000), job("a", "ok", 1000, 5000), job("b", "ok", 1000, 5000)];
        let runner = tokio::spawn(run(jobs, Arc::new(Fake), clock, Options { concurrency: 2, jitter: false }, tx, stop));
        let mut got: Vec<Sample> = Vec::new();
        while let Some(batch) = rx.recv().await {
            got.extend(batch);
            if got.iter().filter(|s| s.series.host == "hung").count() == 2 {
                break;
            }
        }
        stop_tx.send(true).unwrap();
        runner.await.unwrap();
        let times = |counter: &str, host: &str| -> Vec<i64> { got.iter().filter(|s| s.series.counter == counter && s.series.host == host).map(|s| s.ts_ms).collect() };
        // the healthy host kept its 1 s schedule while the hung one timed out at 5 s
        assert_eq!(times("a", "ok")[..10], [0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000]);
        assert_eq!(times("b", "ok")[..10], [0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000]);
        // the hung host: a failure per cycle, at 0 and (after the timeout
        // overran the 1 s interval) at the next tick, 6 s
        let hung: Vec<&Sample> = got.iter().filter(|s| s.series.host == "hung").collect();
        assert_eq!(hung.iter().map(|s| s.ts_ms).collect::<Vec<_>>(), [0, 6000]);
        assert_eq!(hung[0].value, SampleValue::Error("timed out after 5s".into()));
    }

    #[tokio::test(start_paused = true)]
    async fn one_failing_counter_leaves_the_hosts_other_counters() {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(0));
        let samples = run_once(vec![job("a", "bad", 1000, 1000), job("b", "bad", 1000, 1000), job("c", "hung", 1000, 300)], Arc::new(Fake), clock, Options::default()).await;
        let of = |c: &str| samples.iter().find(|s| s.series.counter == c).map(|s| s.value.clone());
        assert_eq!(of("a"), Some(SampleValue::Value(1.0)));
        assert_eq!(of("b"), Some(SampleValue::Error("boom".into())));
        assert_eq!(of("c"), Some(SampleValue::Error("timed out after 300ms".into())));
        assert_eq!(DEFAULT_TIMEOUT, Duration::from_secs(10));
    }

    #[test]
    fn phases_are_stable_and_within_the_interval() {
        let j = job("a", "h1", 10_000, 1000);
        assert_eq!(phase(&j), phase(&j.clone()));
        assert!(phase(&j) < Duration::from_secs(10));
        let phases: std::collections::BTreeSet<Duration> = (0..20).map(|i| phase(&job("a", &format!("h{i}"), 10_000, 1000))).collect();
        assert!(phases.len() > 15, "jobs are spread: {phases:?}");
    }
}
