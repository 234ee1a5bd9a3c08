//! The daemon in-process on paused tokio time: trigger timing, restarts and
//! action jobs, measured to the millisecond on a virtual clock. (The real
//! process tests with `kill -9` are in `daemon.rs`.)
//!
//! Paused time moves only when every task waits, and the store's calls run
//! on the blocking pool, which holds time still while they run; so each
//! assertion is about exact instants, and minutes pass in milliseconds.

use std::path::Path;
use std::sync::Arc;

use scaler::clock::{SharedClock, TokioClock};
use scaler::daemon::{self, Options};
use scaler::reconcile::{Session, Settings};
use scaler::store::{JobFilter, JobStatus, Location, Sample, SeriesKey};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// A multiple of the 10 s evaluation interval.
const T0: i64 = 1_800_000_000_000;

fn write_config(dir: &Path, then: &str) {
    std::fs::write(dir.join("scaler.yaml"), "kind: Project\nname: t\ndaemon:\n  jobs: { lease: 2s, backoff: 100ms, max_attempts: 3 }\n").unwrap();
    std::fs::write(
        dir.join("triggers.yaml"),
        format!(
            "kind: Counter\nname: queue\nsource: {{ push: {{}} }}\n---\nkind: Trigger\nname: deep\nwhen: last(queue) > 10\nfor: 30s\ncooldown: 5m\nthen:\n{then}\n---\nkind: NodeTemplate\nname: n\nprovider: local\nlocal: {{ command: exec sleep 600 }}\n---\nkind: Group\nname: web\ntemplate: n\nmin: 1\nmax: 5\ndesired: 1\n"
        ),
    )
    .unwrap();
}

fn session(dir: &Path) -> Session {
    let config = Arc::new(scaler::config::load(dir).unwrap_or_else(|d| panic!("config: {d}")));
    let store = scaler::store::open(&Location::Sqlite(dir.join(".scaler/state.db"))).unwrap();
    let settings = Settings::from_config(&config, "test".into());
    Session { config, store, providers: Default::default(), settings }
}

/// A daemon running in this runtime.
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), daemon::DaemonError>>,
    samples: mpsc::Sender<Vec<Sample>>,
}

fn start(session: &Session, clock: &SharedClock, workers: u32) -> Running {
    let (tx, rx) = mpsc::channel(16);
    let opts = Options {
        clock: clock.clone(),
        samples: Some(rx),
        listen: "127.0.0.1:0".into(),
        evaluation_interval_ms: 10_000,
        collect: false,
        evaluate: true,
        workers,
        token: "t0k3n-for-tests-only".to_string().into(),
        read_token: None,
        http: Default::default(),
        revision: Some("r1".into()),
        reconcile: false,
        hooks: None,
        fetches: None,
    };
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(daemon::run(session.clone(), opts, stop_rx));
    Running { stop, task, samples: tx }
}

impl Running {
    async fn push(&self, at_ms: i64, value: f64) {
        self.samples.send(vec![Sample::value(SeriesKey::new("queue", "push"), at_ms, value)]).await.unwrap();
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// A daemon on paused time at T0 whose trigger notifies a webhook.
fn notifying_daemon(dir: &Path) -> (Session, SharedClock, Running) {
    write_config(dir, "  - notify: { webhook: { url: \"http://127.0.0.1:9/\" } }");
    let s = session(dir);
    let clock: SharedClock = Arc::new(TokioClock::starting_at(T0));
    let d = start(&s, &clock, 0);
    (s, clock, d)
}

/// Waits (on the virtual clock) until `t`.
async fn until(clock: &SharedClock, t: i64) {
    clock.sleep_until_ms(t).await;
}

async fn fires(session: &Session) -> Vec<i64> {
    let jobs = session.store.run(|db| db.jobs(&JobFilter::default())).await.unwrap();
    let mut at: Vec<i64> = jobs.iter().map(|j| j.fired_at_ms).collect();
    at.sort();
    at
}

#[tokio::test(start_paused = true)]
async fn a_trigger_fires_at_the_tick_that_completes_for_and_the_cooldown_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, clock, d) = notifying_daemon(tmp.path());
    d.push(T0 + 1_000, 50.0).await;
    // pending from the receipt at T0+1s; `for: 30s` completes at T0+31s,
    // and the first evaluation after it is the tick at T0+40s.
    until(&clock, T0 + 39_999).await;
    assert_eq!(fires(&s).await, Vec::<i64>::new());
    until(&clock, T0 + 40_001).await;
    assert_eq!(fires(&s).await, vec![T0 + 40_000]);
    // Still breached, but inside the 5m cooldown: no second fire.
    until(&clock, T0 + 300_000).await;
    assert_eq!(fires(&s).await, vec![T0 + 40_000]);
    assert_eq!(clock.now_ms(), T0 + 300_000);
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_resumes_pending_from_its_saved_instant() {
    let tmp = tempfile::tempdir().unwrap();
    write_config(tmp.path(), "  - notify: { webhook: { url: \"http://127.0.0.1:9/\" } }");
    let clock: SharedClock = Arc::new(TokioClock::starting_at(T0));
    let s = session(tmp.path());
    let d = start(&s, &clock, 0);
    d.push(T0 + 1_000, 50.0).await;
    until(&clock, T0 + 25_000).await;
    d.stop().await;
    // Down for a while; a new daemon (a new store handle too) resumes.
    until(&clock, T0 + 33_000).await;
    let s2 = session(tmp.path());
    let d2 = start(&s2, &clock, 0);
    until(&clock, T0 + 45_000).await;
    // Pending since T0+10s survived the restart: the fire is at T0+40s,
    // not 30 s after the restart.
    assert_eq!(fires(&s2).await, vec![T0 + 40_000]);
    d2.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_scale_job_runs_on_a_worker_and_records_the_desired_count() {
    let tmp = tempfile::tempdir().unwrap();
    write_config(tmp.path(), "  - scale: { group: web, by: 2 }");
    let clock: SharedClock = Arc::new(TokioClock::starting_at(T0));
    let s = session(tmp.path());
    let d = start(&s, &clock, 1);
    d.push(T0 + 1_000, 50.0).await;
    until(&clock, T0 + 60_000).await;
    let jobs = s.store.run(|db| db.jobs(&JobFilter::default())).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].status, JobStatus::Done, "{jobs:?}");
    assert_eq!(jobs[0].revision.as_deref(), Some("r1"));
    let snap = s.store.snapshot().await.unwrap();
    assert_eq!(snap.desired.get("web"), Some(&3));
    assert_eq!(snap.desired_base.get("web"), Some(&1), "the scale remembers the config value it was made against");
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_pushed_dip_between_two_ticks_resets_pending_at_its_receipt_instant() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, clock, d) = notifying_daemon(tmp.path());
    // 50 at 1s, a dip to 1 at 12s, 50 again at 15s: on the 10 s ticks alone
    // the dip is never seen (the fire would be at 40s). Judged at each
    // receipt instant, pending restarts at 15s: `for: 30s` ends at 45s,
    // and the fire is at the first evaluation after it, the tick at 50s.
    d.push(T0 + 1_000, 50.0).await;
    d.push(T0 + 12_000, 1.0).await;
    d.push(T0 + 15_000, 50.0).await;
    until(&clock, T0 + 45_001).await;
    assert_eq!(fires(&s).await, Vec::<i64>::new());
    until(&clock, T0 + 50_001).await;
    assert_eq!(fires(&s).await, vec![T0 + 50_000]);
    d.stop().await;
}
