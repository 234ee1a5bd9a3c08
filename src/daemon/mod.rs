//! `scaler daemon`: the monitoring pipeline, running continuously.
//!
//! ```text
//! collectors (scheduler) ─┐
//! push / alerts (HTTP) ───┼─> store (samples, durable) ─> window (memory)
//! SNMP traps (UDP) ───────┘
//! read API + /metrics (HTTP, same listener): config + store + api::Metrics
//! evaluator: every tick t (aligned to the evaluation interval):
//!   Engine::evaluate(t, window, records) -> transitions + fires
//!   -> store.save_evaluation(states, jobs)   (one transaction)
//! workers: lease job -> actions (scale / run / notify) -> progress -> done | retry | dead
//! reconciler: a changed desired count -> plan -> policies -> apply
//! ```
//!
//! [`follow`] runs that task set on the newest valid revision of a config
//! source (a watched directory or a git branch): a new revision restarts it
//! with the new config, and is planned and applied (`auto_apply`) or held.
//!
//! Every piece reads and writes the state store through its own
//! connection, so a `kill -9` at any moment leaves the truth in the store:
//! trigger states are saved on every transition, a fire and its job are
//! one transaction, and a job's lease runs out when its worker dies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::actions::{Executor, ExecutorOptions};
use crate::api::{self, ApiState, DaemonInfo, Metrics};
use crate::fleet::{Fleet, FleetError};
use crate::inputs::{self, InputConfig, InputSink};
use crate::jobs::{self, ActionExecutor, WorkerOptions};
use crate::clock::SharedClock;
use crate::monitor::scheduler;
use crate::monitor::{lookbacks, plan_jobs, Collector, JobFilter, Sources};
use crate::reconcile::{self, Backoff, Outcome, Session};
use crate::rules::{Engine, Window};
use crate::store::{Backend, Sample, Selector, StateStore};

mod evaluator;
mod observe;
mod reload;
mod source_status;
mod tasks;

pub use evaluator::{load_records, step, JobSettings, Step};
pub use reload::{follow, Follow};
pub use source_status::{Noted, SourceStatus};
pub use tasks::{end_interrupted, hold, Tasks, DAEMON_STOPPED};

/// How the daemon runs.
#[derive(Debug)]
pub struct Options {
    /// Where time comes from (the wall clock, or paused tokio time in tests).
    pub clock: SharedClock,
    /// More sample sources beside the collectors and receivers (samples
    /// sent here are stored and evaluated like collected ones; for embedding
    /// the daemon, e.g. in-process tests).
    pub samples: Option<mpsc::Receiver<Vec<Sample>>>,
    /// HTTP listen address (push, alerts, the read API and `/metrics`).
    pub listen: String,
    /// Evaluation tick (ms).
    pub evaluation_interval_ms: i64,
    /// Run the collectors.
    pub collect: bool,
    /// Run the trigger evaluator (and the HTTP and trap receivers).
    pub evaluate: bool,
    /// Job workers (0: none).
    pub workers: u32,
    /// The bearer token the HTTP receivers and the API require.
    pub token: SecretString,
    /// A read-only token: it reads the API and `/metrics`; a change made
    /// with it (push, alerts) gets 403.
    pub read_token: Option<SecretString>,
    /// The config revision, recorded with every job.
    pub revision: Option<String>,
    /// Plan and apply the nodes of a group whose desired count changed.
    pub reconcile: bool,
    /// The HTTP listener's limits and safety nets.
    pub http: api::HttpOptions,
    /// The push webhook `POST /hooks/git` (`None`: it answers 404).
    pub hooks: Option<Arc<api::GitHooks>>,
    /// The git source's fetches, for `/api/v1/status` and `/metrics`.
    pub fetches: Option<crate::gitops::FetchHandle>,
}

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A trigger does not compile.
    #[error("triggers do not compile:\n  {}", .0.join("\n  "))]
    Triggers(Vec<String>),
    /// A listener could not start.
    #[error("{0}")]
    Listen(String),
    /// A target's hosts cannot be given.
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// Something else that stops the daemon.
    #[error("{0}")]
    Other(String),
}

/// The first tick at or after `t` on the grid of `interval_ms`.
pub fn next_tick(t: i64, interval_ms: i64) -> i64 {
    let iv = interval_ms.max(1);
    t.div_euclid(iv) * iv + if t.rem_euclid(iv) == 0 { 0 } else { iv }
}

/// The window shared by the writers (collectors, receivers) and the
/// evaluator. Writers change it in place; the evaluator takes a cheap
/// snapshot (`Arc` clone) per tick.
#[derive(Clone)]
struct SharedWindow(Arc<Mutex<Arc<Window>>>);

impl SharedWindow {
    fn insert(&self, samples: &[Sample]) {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let w = Arc::make_mut(&mut guard);
        for s in samples {
            w.insert(s);
        }
    }

    fn snapshot(&self) -> Arc<Window> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Window) -> R) -> R {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(Arc::make_mut(&mut guard))
    }
}

/// Appends samples durably, then shows them to the evaluator.
struct SampleWriter {
    store: StateStore,
    window: SharedWindow,
    metrics: Arc<Metrics>,
    /// Receipt instants of passive samples, for the evaluator (`None`: no
    /// evaluator runs).
    receipts: Option<mpsc::UnboundedSender<i64>>,
    /// The passive counters (push, Alertmanager, traps).
    passive: std::collections::HashSet<String>,
}

impl SampleWriter {
    fn write(&self, samples: &[Sample]) -> Result<(), String> {
        if samples.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.store.run_blocking(|db| db.append(samples)) {
            self.metrics.write_failed(samples.len());
            return Err(e.to_string());
        }
        self.metrics.stored(samples);
        self.window.insert(samples);
        if let Some(tx) = &self.receipts {
            for s in samples.iter().filter(|s| self.passive.contains(&s.series.counter)) {
                let _ = tx.send(s.ts_ms);
            }
        }
        Ok(())
    }
}

impl InputSink for SampleWriter {
    fn accept(&self, samples: Vec<Sample>) -> Result<(), String> {
        self.write(&samples)
    }
}

/// Stores (then shows to the evaluator) every batch `rx` yields.
async fn write_all(writer: Arc<SampleWriter>, mut rx: mpsc::Receiver<Vec<Sample>>, mut stop: watch::Receiver<bool>) -> Result<(), DaemonError> {
    loop {
        let batch = tokio::select! {
            b = rx.recv() => b,
            // Stopping: store what is already queued, then end (the sender
            // may outlive the daemon).
            _ = stop.wait_for(|s| *s) => None,
        };
        let batch = match batch {
            Some(b) => Some(b),
            None => {
                rx.close();
                rx.recv().await
            }
        };
        let Some(batch) = batch else { return Ok(()) };
        let w = writer.clone();
        match tokio::task::spawn_blocking(move || w.write(&batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot store samples"),
            Err(e) => tracing::error!(error = %e, "sample writer failed"),
        }
    }
}

/// How much history the window keeps: the longest `over` any compiled
/// trigger reads or the longest counter lookback, plus a margin; at least
/// 10 minutes.
fn keep_ms(engine: &Engine, window: &Window) -> i64 {
    let triggers = engine.triggers.iter().map(|t| t.lookback_ms());
    let counters = window.counter_names().filter_map(|name| window.counter(name).and_then(|c| c.lookback_ms));
    triggers.chain(counters).map(|ms| ms.saturating_add(60_000)).fold(600_000, i64::max)
}

/// Loads recent samples and failures of every counter from the store.
fn seed(store: &mut dyn Backend, window: &mut Window, now: i64, keep: i64) -> crate::store::Result<usize> {
    let names: Vec<String> = window.counter_names().map(str::to_string).collect();
    let mut n = 0;
    for name in names {
        let sel = Selector::counter(&name);
        for (key, pts) in store.raw(&sel, now - keep, now)? {
            for (ts, v) in pts {
                window.insert(&Sample::value(key.clone(), ts, v));
                n += 1;
            }
        }
        for (key, ts, err) in store.failures(&sel, now - keep, now)? {
            window.insert(&Sample::error(key, ts, err));
            n += 1;
        }
        // A value that holds until replaced may be older than `keep`.
        if window.counter(&name).is_some_and(|c| c.lookback_ms.is_none()) {
            for latest in store.latest(&sel, now)? {
                window.insert(&Sample { series: latest.series, ts_ms: latest.ts_ms, value: latest.value });
                n += 1;
            }
        }
    }
    Ok(n)
}

/// What a daemon with these options does, as `/api/v1/status` shows it.
fn roles(opts: &Options) -> Vec<&'static str> {
    let mut roles = Vec::new();
    for (on, role) in [(opts.collect, "collect"), (opts.evaluate, "evaluate"), (opts.evaluate, "receive"), (opts.workers > 0, "work"), (opts.reconcile, "reconcile")] {
        if on {
            roles.push(role);
        }
    }
    roles
}

/// Runs the daemon until `stop` turns true.
///
/// `session` gives the one loaded config that every part runs (collectors,
/// evaluator, workers, reconciler), the state store and the providers.
pub async fn run(session: Session, mut opts: Options, stop: watch::Receiver<bool>) -> Result<(), DaemonError> {
    let config = session.config.clone();
    let engine = Arc::new(Engine::compile(config.triggers.values().map(|t| &t.spec)).map_err(DaemonError::Triggers)?);
    let store = session.store.clone();
    let snapshot = store.snapshot().await?;
    let fleet = Fleet::new(&config, &snapshot.nodes);
    let mut window = Window::with_counters(lookbacks(&config));
    window.set_hosts(fleet.host_sets()?);
    let keep = keep_ms(&engine, &window);
    let now = opts.clock.now_ms();
    let (window, seeded) = store
        .run(move |db| {
            let n = seed(db, &mut window, now, keep)?;
            Ok((window, n))
        })
        .await?;
    tracing::info!(samples = seeded, "window seeded from the store");
    let window = SharedWindow(Arc::new(Mutex::new(Arc::new(window))));
    let metrics = Arc::new(Metrics::default());
    let passive: std::collections::HashSet<String> =
        lookbacks(&config).filter(|(_, lookback)| lookback.is_none()).map(|(name, _)| name.to_string()).collect();
    let (receipts_tx, receipts_rx) = mpsc::unbounded_channel();
    let writer = Arc::new(SampleWriter {
        store: store.clone(),
        window: window.clone(),
        metrics: metrics.clone(),
        receipts: opts.evaluate.then_some(receipts_tx),
        passive,
    });

    let mut tasks: JoinSet<Result<(), DaemonError>> = JoinSet::new();

    if opts.collect {
        let (jobs, skipped) = plan_jobs(&fleet, &JobFilter::default());
        let passive = |name: &str| {
            config.counters.get(name).is_some_and(|c| {
                matches!(c.spec.source, crate::model::Source::Push(_) | crate::model::Source::Alertmanager(_) | crate::model::Source::Trap(_))
            })
        };
        for s in skipped.iter().filter(|s| !passive(&s.counter)) {
            tracing::warn!(counter = %s.counter, reason = %s.reason, "counter not collected");
        }
        if !jobs.is_empty() {
            let sources: Arc<dyn Collector> = Arc::new(Sources::new().map_err(|e| DaemonError::Other(e.to_string()))?);
            let collector: Arc<dyn Collector> = Arc::new(observe::TimedCollector { inner: sources, metrics: metrics.clone() });
            let clock = opts.clock.clone();
            let (tx, rx) = mpsc::channel::<Vec<Sample>>(1024);
            let stop_c = stop.clone();
            tasks.spawn(async move {
                scheduler::run(jobs, collector, clock, scheduler::Options::default(), tx, stop_c).await;
                Ok(())
            });
            tasks.spawn(write_all(writer.clone(), rx, stop.clone()));
        }
    }
    if let Some(rx) = opts.samples.take() {
        tasks.spawn(write_all(writer.clone(), rx, stop.clone()));
    }

    if opts.evaluate {
        let input_cfg = InputConfig::from_config(&config).map_err(|e| DaemonError::Other(e.to_string()))?;
        let input_cfg = InputConfig { token: Some(opts.token.clone()), ..input_cfg };
        let shared = inputs::shared(input_cfg);
        let sink: Arc<dyn InputSink> = writer.clone();
        for t in std::iter::once(&opts.token).chain(opts.read_token.as_ref()) {
            crate::redact::register(secrecy::ExposeSecret::expose_secret(t));
        }
        let api_state = ApiState {
            config: config.clone(),
            store: store.clone(),
            token: opts.token.clone(),
            read_token: opts.read_token.clone(),
            clock: opts.clock.clone(),
            metrics: metrics.clone(),
            daemon: Arc::new(DaemonInfo { started_ms: now, roles: roles(&opts), workers: opts.workers, listen: opts.listen.clone() }),
            work: Some(Arc::new(Tasks {
                session: session.clone(),
                clock: opts.clock.clone(),
                revision: opts.revision.clone(),
                max_attempts: jobs::max_attempts(config.project.spec.daemon.as_ref().and_then(|d| d.jobs.as_ref())),
            })),
            hooks: opts.hooks.clone(),
            fetches: opts.fetches.clone(),
        };
        // The trap receiver is bound before the HTTP listener, so a daemon
        // that answers HTTP also receives traps.
        if inputs::wants_traps(&config) {
            let at = inputs::trap_listen(&config);
            let receiver = inputs::TrapReceiver::bind(&at, shared.clone(), sink.clone(), opts.clock.clone())
                .await
                .map_err(|e| DaemonError::Listen(e.to_string()))?;
            tracing::info!(addr = %receiver.local_addr(), "SNMP trap receiver listening");
            let mut stop_t = stop.clone();
            tasks.spawn(async move {
                tokio::select! {
                    _ = receiver.run() => {}
                    _ = stop_t.wait_for(|s| *s) => {}
                }
                Ok(())
            });
        }
        let listener = tokio::net::TcpListener::bind(&opts.listen)
            .await
            .map_err(|e| DaemonError::Listen(format!("cannot listen on `{}`: {e}", opts.listen)))?;
        let addr = listener.local_addr().map_err(|e| DaemonError::Listen(e.to_string()))?;
        api::security::check_listen(addr, &opts.listen, opts.http.insecure_listen).map_err(DaemonError::Listen)?;
        let routes = inputs::router(shared.clone(), sink.clone(), opts.clock.clone()).merge(api::router(api_state.clone())).merge(crate::web::router());
        let app = api::guard(api::security::protect(routes, addr, &opts.http), &api_state);
        tracing::info!(%addr, "HTTP listening (web UI: GET /; receivers: PUT /api/v1/push/NAME, POST /api/v1/alerts, POST /hooks/git; read API: GET /api/v1/...; GET /metrics, GET /healthz)");
        if !crate::web::built() {
            tracing::warn!("this binary was built without its web UI (no npm at build time); `/` says how to build it");
        }
        let stop_h = stop.clone();
        let http = opts.http.clone();
        tasks.spawn(async move {
            api::serve::serve(listener, app, &http, stop_h).await;
            Ok(())
        });
        let ev = evaluator::Evaluator {
            engine: engine.clone(),
            window: window.clone(),
            store: store.clone(),
            clock: opts.clock.clone(),
            interval_ms: opts.evaluation_interval_ms.max(1),
            job: JobSettings {
                revision: opts.revision.clone(),
                max_attempts: jobs::max_attempts(config.project.spec.daemon.as_ref().and_then(|d| d.jobs.as_ref())),
            },
            keep_ms: keep,
            config: config.clone(),
            metrics: metrics.clone(),
            receipts: receipts_rx,
        };
        let stop_e = stop.clone();
        tasks.spawn(async move { ev.run(stop_e).await });
    }

    if opts.workers > 0 {
        let executor = Executor::new(config.clone(), ExecutorOptions::new(store.clone()))
            .map_err(|e| DaemonError::Other(e.message))?;
        let executor: Arc<dyn ActionExecutor> = Arc::new(observe::CountedExecutor { inner: Arc::new(executor), metrics: metrics.clone() });
        let settings = config.project.spec.daemon.as_ref().and_then(|d| d.jobs.as_ref());
        for i in 0..opts.workers {
            let wopts = WorkerOptions::from_settings(&format!("worker-{i}"), settings);
            let (store, executor, stop_w, clock) = (store.clone(), executor.clone(), stop.clone(), opts.clock.clone());
            tasks.spawn(async move {
                jobs::run_worker(store, executor, clock, wopts, stop_w).await.map(|_| ()).map_err(|e| DaemonError::Other(e.to_string()))
            });
        }
    }

    if opts.reconcile {
        let (stop_r, every) = (stop.clone(), opts.evaluation_interval_ms.max(250));
        let (session, clock, metrics) = (session.clone(), opts.clock.clone(), metrics.clone());
        tasks.spawn(async move { reconcile_loop(session, clock, every, metrics, stop_r).await });
    }

    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "daemon task failed");
                first_error.get_or_insert(e);
            }
            Err(e) => {
                tracing::error!(error = %e, "daemon task panicked");
                first_error.get_or_insert(DaemonError::Other(format!("a daemon task failed: {e}")));
            }
        }
        if first_error.is_some() && !*stop.borrow() {
            tasks.abort_all();
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Plans and applies whenever a group's desired count changed. A failure
/// that may pass ([`ReconcileError::is_retryable`]) is retried with
/// exponential backoff; one that waits for a new input (a plan error, a
/// refused plan) is not retried until the desired counts change again.
async fn reconcile_loop(session: Session, clock: SharedClock, every_ms: i64, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) -> Result<(), DaemonError> {
    let every = Duration::from_millis(u64::try_from(every_ms).unwrap_or(250));
    let backoff = Backoff { base: every, max: Duration::from_secs(300).max(every) };
    // Nothing seen yet: the first pass reconciles every group with a
    // recorded desired count (a scale may have landed while no daemon ran).
    let mut seen = std::collections::BTreeMap::new();
    let mut failures: u32 = 0;
    let mut wait = Duration::ZERO;
    loop {
        if !wait.is_zero() {
            tokio::select! {
                _ = clock.sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
        wait = every;
        let desired = match session.store.snapshot().await {
            Ok(s) => s.desired,
            Err(e) => {
                tracing::error!(error = %e, "cannot read desired counts");
                continue;
            }
        };
        let groups: Vec<String> = desired
            .iter()
            .filter(|(g, n)| seen.get(*g) != Some(*n))
            .map(|(g, _)| g.clone())
            .collect();
        if groups.is_empty() {
            seen = desired;
            continue;
        }
        tracing::info!(?groups, "desired counts changed; planning their nodes");
        let started = std::time::Instant::now();
        let done = session.reconcile(reconcile::nodes_of(&groups)).await;
        let result = match &done {
            Ok(Outcome::Refused(_)) => "refused",
            Ok(_) => "ok",
            Err(_) => "failed",
        };
        metrics.applied(result, started.elapsed().as_secs_f64());
        match done {
            Ok(Outcome::Refused(why)) => {
                tracing::warn!(violations = %why, "scaling plan refused by policy (or a plan error); not applied");
                failures = 0;
                seen = desired;
            }
            Ok(outcome) => {
                tracing::info!(result = %outcome, "reconciled");
                failures = 0;
                seen = desired;
            }
            Err(e) if e.is_retryable() => {
                failures = failures.saturating_add(1);
                wait = backoff.delay(failures);
                tracing::error!(error = %e, retry_in_ms = wait.as_millis() as u64, attempt = failures, "reconcile failed; will retry");
            }
            Err(e) => {
                tracing::error!(error = %e, "reconcile failed; waiting for the desired counts or the config to change");
                failures = 0;
                seen = desired;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_aligned_to_the_interval() {
        assert_eq!(next_tick(0, 1000), 0);
        assert_eq!(next_tick(1, 1000), 1000);
        assert_eq!(next_tick(1000, 1000), 1000);
        assert_eq!(next_tick(1999, 250), 2000);
    }

    #[test]
    fn the_window_keeps_the_longest_compiled_over_or_lookback_plus_a_minute() {
        let trigger = |when: &str| crate::model::Trigger {
            name: "t".into(),
            description: None,
            when: crate::model::Condition::One(when.into()),
            for_: None,
            cooldown: None,
            cooldown_up: None,
            cooldown_down: None,
            min_coverage: None,
            then: vec![],
        };
        let keep = |when: &str, lookback: Option<i64>| {
            let engine = Engine::compile([&trigger(when)]).unwrap_or_else(|e| panic!("{e:?}"));
            let mut window = Window::new();
            window.declare("cpu", lookback);
            keep_ms(&engine, &window)
        };
        assert_eq!(keep("avg(cpu, over=\"30m\") > 1", Some(30_000)), 1_860_000);
        assert_eq!(keep("last(cpu, host=\"over='9h'\") > 1", Some(30_000)), 600_000, "a string is not a window");
        assert_eq!(keep("last(cpu) > 1", Some(3_600_000)), 3_660_000);
        assert_eq!(keep("last(cpu) > 1", None), 600_000);
    }
}
