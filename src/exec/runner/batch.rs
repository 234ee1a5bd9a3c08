//! Batches: the hosts in rolling batches of `serial` hosts (all at once
//! without it), at most `forks` hosts at once within a batch, the run
//! stopped between batches once more than `max_fail_percentage` of the
//! hosts run so far failed (the rest are skipped), and the overall result.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use super::{ms, Runner};
use crate::exec::{HostResult, HostSpec, RunResult, Status, Transport};
use crate::model::Serial;

/// Hosts per batch for `total` hosts (at least one).
fn batch_size(serial: Option<&Serial>, total: usize) -> usize {
    match serial {
        None => total.max(1),
        Some(Serial::Count(n)) => (*n as usize).max(1),
        Some(Serial::Percent(p)) => ((total as f64 * p.get() / 100.0).ceil() as usize).max(1),
    }
}

/// Why the run stops after the hosts run so far, if more than
/// `max_fail_percentage` of them failed or were unreachable.
fn stop_reason(results: &[HostResult], max_fail_percentage: u8) -> Option<String> {
    let failed = results.iter().filter(|r| matches!(r.status, Status::Failed | Status::Unreachable)).count();
    let pct = failed as f64 * 100.0 / results.len().max(1) as f64;
    (failed > 0 && pct > f64::from(max_fail_percentage)).then(|| {
        format!("max_fail_percentage {max_fail_percentage}% exceeded: {failed} of {} hosts failed ({pct:.0}%)", results.len())
    })
}

impl Runner {
    /// Runs on `hosts` and returns every result.
    pub async fn run(&self, hosts: Vec<HostSpec>) -> RunResult {
        let inner = &self.inner;
        let start = Instant::now();
        let size = batch_size(inner.serial.as_ref(), hosts.len());
        let mut results: Vec<HostResult> = Vec::new();
        let mut stopped: Option<String> = None;
        let batches: Vec<Vec<HostSpec>> = hosts.chunks(size).map(<[HostSpec]>::to_vec).collect();
        let n_batches = batches.len();
        for (b, batch) in batches.into_iter().enumerate() {
            let number = b + 1;
            if let Some(reason) = &stopped {
                for h in batch {
                    results.push(HostResult {
                        id: String::new(),
                        state: "",
                        host: h.name.clone(),
                        address: h.ssh.as_ref().map(|p| p.address.clone()),
                        port: h.ssh.as_ref().map(|p| p.port),
                        batch: number,
                        status: Status::Skipped,
                        exit_code: None,
                        message: Some(format!("not run: {reason}")),
                        duration_ms: 0,
                        steps: inner.steps.iter().map(|c| c.not_run(reason)).collect(),
                    });
                }
                continue;
            }
            inner.progress.batch(number, &batch.iter().map(|h| h.name.clone()).collect::<Vec<_>>());
            let sem = Arc::new(Semaphore::new(inner.forks));
            let mut set = tokio::task::JoinSet::new();
            for (i, host) in batch.iter().cloned().enumerate() {
                let inner = self.inner.clone();
                let sem = sem.clone();
                set.spawn(async move {
                    let _permit = sem.acquire_owned().await;
                    let r = inner.run_host(&host, number).await;
                    inner.progress.host(&r);
                    (i, r)
                });
            }
            let mut batch_results: Vec<Option<HostResult>> = vec![None; batch.len()];
            while let Some(joined) = set.join_next().await {
                if let Ok((i, r)) = joined {
                    if let Some(slot) = batch_results.get_mut(i) {
                        *slot = Some(r);
                    }
                }
            }
            for (i, r) in batch_results.into_iter().enumerate() {
                let spec = batch.get(i);
                results.push(r.unwrap_or_else(|| HostResult {
                        id: String::new(),
                        state: "",
                    host: spec.map(|h| h.name.clone()).unwrap_or_default(),
                    address: spec.and_then(|h| h.ssh.as_ref()).map(|p| p.address.clone()),
                    port: spec.and_then(|h| h.ssh.as_ref()).map(|p| p.port),
                    batch: number,
                    status: Status::Failed,
                    exit_code: None,
                    message: Some("internal error: the host's task ended abnormally".into()),
                    duration_ms: 0,
                    steps: Vec::new(),
                }));
            }
            if number < n_batches {
                stopped = stop_reason(&results, inner.max_fail_percentage);
            }
        }
        let pool: Vec<Arc<dyn Transport>> = inner.pool.lock().await.drain().map(|(_, t)| t).collect();
        for t in pool {
            t.close().await;
        }
        RunResult::label(&mut results);
        RunResult {
            playbook: inner.name.clone(),
            target: inner.opts.target.clone(),
            check: inner.opts.check,
            status: RunResult::overall(&results),
            stopped,
            duration_ms: ms(start.elapsed()),
            hosts: results,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Percent;

    fn host(status: Status) -> HostResult {
        HostResult { id: String::new(), state: "", host: "h".into(), address: None, port: None, batch: 1, status, exit_code: None, message: None, duration_ms: 0, steps: Vec::new() }
    }

    #[test]
    fn batch_sizes() {
        assert_eq!(batch_size(None, 5), 5);
        assert_eq!(batch_size(None, 0), 1);
        assert_eq!(batch_size(Some(&Serial::Count(2)), 5), 2);
        assert_eq!(batch_size(Some(&Serial::Count(0)), 5), 1);
        assert_eq!(batch_size(Some(&Serial::Percent(Percent::new(30.0).unwrap())), 5), 2);
        assert_eq!(batch_size(Some(&Serial::Percent(Percent::new(1.0).unwrap())), 5), 1);
    }

    #[test]
    fn stops_only_past_the_failure_percentage() {
        let two_of_four = [host(Status::Ok), host(Status::Failed), host(Status::Unreachable), host(Status::Changed)];
        assert_eq!(stop_reason(&two_of_four, 50), None);
        assert_eq!(
            stop_reason(&two_of_four, 49).as_deref(),
            Some("max_fail_percentage 49% exceeded: 2 of 4 hosts failed (50%)")
        );
        assert_eq!(stop_reason(&[host(Status::Ok), host(Status::Skipped)], 0), None);
        assert_eq!(stop_reason(&[], 0), None);
    }
}
