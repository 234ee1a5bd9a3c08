//! Following the config source: the daemon runs the newest valid revision.
//!
//! ```text
//! source (gitops::pump) -> Revision
//!   invalid (diagnostics, or triggers/receivers that do not start) -> logged; the running one stays
//!   valid, same objects and root  -> recorded; nothing restarts
//!   valid, changed                -> stop the task set, start it with the new Session
//!                                    (trigger states live in the store, so they resume)
//!   then: auto_apply ? plan + apply (retried with backoff)
//!                    : plan, record it held in the plan store (older held plans superseded)
//!                      until `scaler approve` / `POST /api/v1/plans/{id}/approve` applies it
//! ```
//!
//! A newer revision supersedes the plan or the retries of an older one.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::source_status::{Noted, SourceStatus, StatusFile};
use super::{run, DaemonError, Options};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::gitops::{self, ConfigSource, Event, Revision};
use crate::plan::{Filters, Flags, Operation};
use crate::reconcile::{Backoff, Outcome, ReconcileError, Session, Settings};
use crate::rules::Engine;

/// How the daemon follows its source.
pub struct Follow {
    /// Where revisions come from.
    pub source: Box<dyn ConfigSource>,
    /// Apply every new revision (`daemon.auto_apply`); else plan it and hold the plan.
    pub auto_apply: bool,
    /// Where to write what the daemon says about its source for `scaler
    /// status` (the state directory; `None`: nowhere).
    pub state_dir: Option<PathBuf>,
}

/// The plan-or-apply of one revision, running beside the task set.
struct Settle {
    cancel: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What to do with a revision.
enum Decision {
    /// Already decided on (the same id again).
    Seen,
    /// Invalid: the running revision stays.
    Refused(Noted),
    /// Valid, with the objects and files that run already.
    Same,
    /// Valid and different: restart the task set with it.
    Switch(Session),
}

/// Runs the daemon on `session` (the config it was started with), then on
/// every newer valid revision of `follow.source`, until `stop` turns true.
pub async fn follow(session: Session, mut opts: Options, follow: Follow, stop: watch::Receiver<bool>) -> Result<(), DaemonError> {
    let Follow { source, auto_apply, state_dir } = follow;
    let described = source.describe();
    tracing::info!(source = %described, auto_apply, "following the config source");
    let clock = opts.clock.clone();
    let status = StatusFile::new(
        state_dir.as_deref(),
        SourceStatus { source: described, auto_apply, pid: std::process::id(), ..SourceStatus::default() },
    );
    status.update(clock.now_ms(), |_| {});
    super::end_interrupted(&session.store, clock.now_ms()).await?;
    if let Some(handle) = source.handle() {
        tokio::spawn(super::source_status::mirror(handle, status.clone(), clock.clone(), stop.clone()));
    }
    let (tx, mut events) = mpsc::channel(4);
    tokio::spawn(gitops::pump(source, tx, stop.clone()));

    let mut current = session;
    // The revision that runs (`None`: the config the daemon was started with)
    // and the id of the last revision decided on.
    let mut running: Option<Revision> = None;
    let mut seen: Option<String> = None;
    let mut samples = opts.samples.take();
    let mut settle: Option<Settle> = None;
    let mut stop_outer = stop.clone();
    let mut source_open = true;
    loop {
        let (stop_tx, stop_rx) = watch::channel(false);
        let run_opts = Options {
            clock: opts.clock.clone(),
            samples: samples.take(),
            listen: opts.listen.clone(),
            evaluation_interval_ms: opts.evaluation_interval_ms,
            collect: opts.collect,
            evaluate: opts.evaluate,
            workers: opts.workers,
            token: opts.token.clone(),
            read_token: opts.read_token.clone(),
            revision: Some(current.config.revision.clone()),
            reconcile: opts.reconcile,
            http: opts.http.clone(),
            hooks: opts.hooks.clone(),
            fetches: opts.fetches.clone(),
        };
        let mut task = tokio::spawn(run(current.clone(), run_opts, stop_rx));
        let next = loop {
            tokio::select! {
                done = &mut task => {
                    // The task set ended without being asked: a failure.
                    end_settle(settle.take()).await;
                    return joined(done);
                }
                _ = stop_outer.wait_for(|s| *s) => {
                    let _ = stop_tx.send(true);
                    let r = joined(task.await);
                    end_settle(settle.take()).await;
                    return r;
                }
                event = events.recv(), if source_open => {
                    let Some(event) = event else {
                        // The source ended (stopping): only the stop is awaited now.
                        source_open = false;
                        continue;
                    };
                    let rev = match event {
                        Event::Failed(e) => {
                            log_failure(&e, running.as_ref());
                            let at_ms = clock.now_ms();
                            let revision = running.as_ref().map(|r| r.id.clone()).unwrap_or_default();
                            status.update(at_ms, |s| s.source_error = Some(Noted { revision, at_ms, detail: Some(e.to_string()), diagnostics: Vec::new() }));
                            continue;
                        }
                        Event::Revision(rev) => rev,
                    };
                    match decide(&rev, &current, running.as_ref(), &mut seen, &opts) {
                        Decision::Seen => {}
                        Decision::Refused(noted) => status.update(clock.now_ms(), |s| {
                            s.source_error = None;
                            s.last_failed = Some(noted);
                        }),
                        Decision::Same => {
                            let first = running.is_none();
                            tracing::info!(revision = %rev.id, "revision {} has the objects that run; nothing restarts", rev.short());
                            note_running(&status, &rev, clock.now_ms());
                            running = Some(rev.clone());
                            if first && opts.reconcile {
                                settle = Some(start_settle(settle.take(), current.clone(), &rev, auto_apply, &status, clock.clone()));
                            }
                        }
                        Decision::Switch(next) => break (rev, next),
                    }
                }
            }
        };
        let (rev, next) = next;
        let _ = stop_tx.send(true);
        if let Err(e) = joined(task.await) {
            end_settle(settle.take()).await;
            return Err(e);
        }
        current = next;
        tracing::info!(
            revision = %rev.id,
            config_revision = %current.config.revision,
            triggers = current.config.triggers.len(),
            counters = current.config.counters.len(),
            "running revision {}",
            rev.short()
        );
        note_running(&status, &rev, clock.now_ms());
        if opts.reconcile {
            settle = Some(start_settle(settle.take(), current.clone(), &rev, auto_apply, &status, clock.clone()));
        }
        // Dropping the old revision removes its checkout: nothing runs on it now.
        running = Some(rev);
    }
}

/// The result of the task set.
fn joined(done: Result<Result<(), DaemonError>, tokio::task::JoinError>) -> Result<(), DaemonError> {
    match done {
        Ok(r) => r,
        Err(e) => Err(DaemonError::Other(format!("the daemon's task set failed: {e}"))),
    }
}

fn note_running(status: &StatusFile, rev: &Revision, at_ms: i64) {
    status.update(at_ms, |s| {
        s.source_error = None;
        s.running = Some(Noted { revision: rev.id.clone(), at_ms, detail: None, diagnostics: Vec::new() });
    });
}

fn running_id(running: Option<&Revision>) -> &str {
    running.map_or("the start-up config", Revision::short)
}

fn log_failure(e: &gitops::SourceError, running: Option<&Revision>) {
    match e {
        gitops::SourceError::Fetch { attempt, retry_in, .. } => tracing::warn!(
            error = %e,
            attempt,
            retry_in_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
            "config fetch failed; still running {}",
            running_id(running)
        ),
        _ => tracing::warn!(error = %e, "config source: {e}; still running {}", running_id(running)),
    }
}

/// Validates `rev` against what runs.
fn decide(rev: &Revision, current: &Session, running: Option<&Revision>, seen: &mut Option<String>, opts: &Options) -> Decision {
    if seen.as_deref() == Some(rev.id.as_str()) {
        return Decision::Seen;
    }
    *seen = Some(rev.id.clone());
    let refused = |detail: String, diagnostics: Vec<String>| {
        Decision::Refused(Noted { revision: rev.id.clone(), at_ms: rev.seen_ms, detail: Some(detail), diagnostics })
    };
    let config = match &rev.config {
        Ok(c) => c.clone(),
        Err(diags) => {
            tracing::error!(
                revision = %rev.id,
                errors = diags.len(),
                "revision {} is invalid and is not run; still running {}:\n{}",
                rev.short(),
                running_id(running),
                diags.render(false).trim_end()
            );
            let n = diags.len();
            return refused(format!("invalid: {n} config {}", if n == 1 { "error" } else { "errors" }), diags.0.iter().map(ToString::to_string).collect());
        }
    };
    if let Err(e) = startable(&config, opts) {
        tracing::error!(revision = %rev.id, "revision {} cannot run: {e}; still running {}", rev.short(), running_id(running));
        return refused(format!("cannot run: {e}"), Vec::new());
    }
    if config.digest == current.config.digest && config.root == current.config.root {
        return Decision::Same;
    }
    for w in &config.warnings.0 {
        tracing::warn!(revision = %rev.id, "{w}");
    }
    Decision::Switch(Session {
        settings: Settings::from_config(&config, current.settings.owner.clone()),
        config,
        store: current.store.clone(),
        providers: current.providers.clone(),
    })
}

/// What the task set would refuse at start: triggers that do not compile,
/// receivers whose secrets cannot be read.
fn startable(config: &Config, opts: &Options) -> Result<(), DaemonError> {
    Engine::compile(config.triggers.values().map(|t| &t.spec)).map_err(DaemonError::Triggers)?;
    if opts.evaluate {
        crate::inputs::InputConfig::from_config(config).map_err(|e| DaemonError::Other(e.to_string()))?;
    }
    Ok(())
}

/// Supersedes `old` (it stops at its next retry; an apply in progress
/// finishes under the state lock) and plans or applies `rev`.
fn start_settle(old: Option<Settle>, session: Session, rev: &Revision, auto_apply: bool, status: &StatusFile, clock: SharedClock) -> Settle {
    if let Some(old) = old {
        let _ = old.cancel.send(true);
    }
    let (cancel, cancelled) = watch::channel(false);
    let id = rev.id.clone();
    let status = status.clone();
    // The revision's files stay while its plan or apply runs, even when a
    // newer revision already replaced it.
    let checkout = rev.checkout.clone();
    let task = tokio::spawn(async move {
        settle_revision(session, id, auto_apply, (status, clock), cancelled).await;
        drop(checkout);
    });
    Settle { cancel, task }
}

/// Stops the retries of `settle` and waits for a change in progress.
async fn end_settle(settle: Option<Settle>) {
    if let Some(s) = settle {
        let _ = s.cancel.send(true);
        let _ = s.task.await;
    }
}

/// Plans the revision and applies it (`auto_apply`) or logs the plan as
/// held. A failure that may pass is retried with backoff until it passes
/// or a newer revision supersedes this one.
async fn settle_revision(
    session: Session,
    id: String,
    auto_apply: bool,
    (status, clock): (StatusFile, SharedClock),
    mut cancelled: watch::Receiver<bool>,
) {
    let short = gitops::short(&id).to_string();
    let backoff = Backoff { base: Duration::from_secs(1), max: Duration::from_secs(300) };
    let mut failures: u32 = 0;
    loop {
        let result = settle_once(&session, &id, auto_apply).await;
        let at_ms = clock.now_ms();
        let detail = match &result {
            Ok(done) => done.clone(),
            Err(e) => format!("failed: {e}"),
        };
        status.update(at_ms, |s| s.last_settled = Some(Noted { revision: id.clone(), at_ms, detail: Some(detail), diagnostics: Vec::new() }));
        match result {
            Ok(_) => return,
            Err(e) if e.is_retryable() => {
                failures = failures.saturating_add(1);
                let wait = backoff.delay(failures);
                tracing::error!(revision = %id, error = %e, attempt = failures, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "revision {short}: reconcile failed; will retry");
                tokio::select! {
                    _ = clock.sleep(wait) => {}
                    _ = cancelled.wait_for(|c| *c) => return,
                }
            }
            Err(e) => {
                tracing::error!(revision = %id, error = %e, "revision {short}: reconcile failed; waiting for a new revision");
                return;
            }
        }
    }
}

/// Plans (and applies); what happened, in a few words.
async fn settle_once(session: &Session, id: &str, auto_apply: bool) -> Result<String, ReconcileError> {
    let short = gitops::short(id);
    if auto_apply {
        return Ok(match session.reconcile(Filters::default()).await? {
            Outcome::NoChanges => {
                tracing::info!(revision = %id, "revision {short} is in sync: no changes");
                "in sync: no changes".to_string()
            }
            Outcome::Refused(why) => {
                tracing::warn!(revision = %id, "revision {short} not applied: {why}");
                format!("not applied: {why}")
            }
            applied => {
                tracing::info!(revision = %id, result = %applied, "revision {short} applied");
                format!("applied: {applied}")
            }
        });
    }
    let plan = session.plan(Operation::Apply, Filters::default(), Flags::default()).await?;
    let s = &plan.summary;
    let held = format!("plan held ({} to add, {} to change, {} to destroy)", s.add, s.change, s.destroy);
    if plan.has_changes() {
        let plan_id = super::hold(&session.store, plan.clone(), id, "`daemon.auto_apply` is off", chrono::Utc::now().timestamp_millis()).await?;
        tracing::info!(
            revision = %id,
            plan = %plan_id,
            add = s.add,
            change = s.change,
            destroy = s.destroy,
            "revision {short}: {held} as plan {plan_id}: `daemon.auto_apply` is off; `scaler approve {plan_id}` (or `POST /api/v1/plans/{plan_id}/approve`) applies it"
        );
        Ok(held)
    } else {
        tracing::info!(revision = %id, "revision {short} is in sync: no changes");
        Ok("in sync: no changes".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_up_config_is_named_when_no_revision_runs() {
        assert_eq!(running_id(None), "the start-up config");
    }
}
