//! The daemon's side of the API's tasks ([`crate::api::tasks::Worker`]):
//! each accepted task runs on a tokio task of its own, and its progress
//! and end are written to the store (`pending -> running -> success |
//! failure`).
//!
//! ```text
//! run / exec  -> actions::run_playbook | run_command (no terminal) -> RunResult (every host, every step)
//! trigger     -> a job with the trigger's `then` (the queue's workers run it) -> followed to done | dead
//! plan        -> Session::plan -> held in the plan store (older held plans superseded)
//! apply       -> the stored plan (digest checked) -> state lock -> stale check -> apply
//!                stale: refused, the plan `failed`, a new plan of the running revision held
//! ```
//!
//! A task that was running when its daemon stopped is not resumed (a run
//! or an apply half done is not safely repeatable): [`end_interrupted`]
//! ends it `failure` ("daemon stopped") when a daemon starts, and fails
//! the plans it was applying.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::api::tasks::{new_id, Work, Worker};
use crate::api::views::JobView;
use crate::apply::ApplyError;
use crate::clock::SharedClock;
use crate::exec::{RunResult, Status};
use crate::plan::{Filters, Flags, Operation, Plan};
use crate::reconcile::{ReconcileError, Session};
use crate::store::{JobStatus, NewJob, PlanMove, PlanRecord, PlanState, StateStore, StoreError, TaskRecord, TaskState};

/// The error of a task whose daemon stopped while it ran.
pub const DAEMON_STOPPED: &str = "daemon stopped";

/// How often a trigger task looks at its job.
const JOB_POLL: Duration = Duration::from_millis(200);

/// Runs the API's tasks on the daemon's session.
pub struct Tasks {
    /// The config, store and providers the tasks use.
    pub session: Session,
    /// Where time comes from.
    pub clock: SharedClock,
    /// The revision recorded with a fired job.
    pub revision: Option<String>,
    /// Tries a fired job gets.
    pub max_attempts: u32,
}

impl Worker for Tasks {
    fn start(&self, task: TaskRecord, work: Work) {
        let run = Running { session: self.session.clone(), clock: self.clock.clone(), revision: self.revision.clone(), max_attempts: self.max_attempts };
        tokio::spawn(async move { run.task(task, work).await });
    }
}

/// One task's context (owned: it outlives the request and a revision switch).
struct Running {
    session: Session,
    clock: SharedClock,
    revision: Option<String>,
    max_attempts: u32,
}

/// What a task ended with: its result, and an error when it failed.
type Ended = (Option<Value>, Option<String>);

impl Running {
    fn store(&self) -> &StateStore {
        &self.session.store
    }

    async fn save(&self, task: &TaskRecord) {
        let t = task.clone();
        if let Err(e) = self.store().run(move |db| db.put_task(&t)).await {
            tracing::error!(task = %task.id, error = %e, "cannot record the task's state");
        }
    }

    async fn task(self, mut task: TaskRecord, work: Work) {
        task.state = TaskState::Running;
        task.started_ms = Some(self.clock.now_ms());
        self.save(&task).await;
        let (result, error) = match work {
            Work::Run { playbook, target, vars } => {
                let req = crate::actions::RunRequest { playbook: &playbook, target: target.as_deref(), vars, default_timeout: crate::actions::default_timeout(&self.session.config) };
                match self.store().snapshot().await {
                    Ok(s) => ran(crate::actions::run_playbook(&self.session.config, &s.nodes, req).await),
                    Err(e) => (None, Some(e.to_string())),
                }
            }
            Work::Exec { target, command } => match self.store().snapshot().await {
                Ok(s) => ran(crate::actions::run_command(&self.session.config, &s.nodes, &target, &command, crate::actions::default_timeout(&self.session.config)).await),
                Err(e) => (None, Some(e.to_string())),
            },
            Work::Fire { trigger } => self.fire(&task.id, &trigger).await,
            Work::Plan => self.plan().await,
            Work::Apply { plan } => self.apply(&plan).await,
        };
        task.state = if error.is_none() { TaskState::Success } else { TaskState::Failure };
        task.finished_ms = Some(self.clock.now_ms());
        task.result = result.map(|mut v| {
            crate::redact::scrub_json(&mut v);
            v
        });
        task.error = error.map(|e| crate::redact::scrub(&e));
        tracing::info!(task = %task.id, kind = task.kind.as_str(), state = task.state.as_str(), error = task.error.as_deref().unwrap_or(""), "task ended");
        self.save(&task).await;
    }

    /// Enqueues the trigger's actions as a job and follows it to its end.
    async fn fire(&self, task_id: &str, trigger: &str) -> Ended {
        let Some(t) = self.session.config.triggers.get(trigger) else {
            return (None, Some(format!("no trigger `{trigger}` in the running config")));
        };
        let now = self.clock.now_ms();
        let short: String = task_id.chars().take(8).collect();
        let job = NewJob {
            key: format!("{trigger}@{now}/manual-{short}"),
            trigger: trigger.to_string(),
            fired_at_ms: now,
            revision: self.revision.clone(),
            payload: json!({ "trigger": trigger, "fired_at_ms": now, "actions": t.spec.then, "manual": { "task": task_id } }),
            max_attempts: self.max_attempts,
        };
        let id = match self.store().run(move |db| db.enqueue(&job, now)).await {
            Ok(e) => e.id(),
            Err(e) => return (None, Some(format!("cannot enqueue the job: {e}"))),
        };
        tracing::info!(trigger, job = id, "trigger fired by hand: job enqueued");
        loop {
            match self.store().run(move |db| db.job(id)).await {
                Ok(Some(j)) if matches!(j.status, JobStatus::Done | JobStatus::Dead) => {
                    let view = serde_json::to_value(JobView::from(&j)).ok();
                    let error = (j.status == JobStatus::Dead).then(|| j.last_error.clone().unwrap_or_else(|| "the job is dead".into()));
                    return (view, error);
                }
                Ok(Some(_)) => {}
                Ok(None) => return (None, Some(format!("job {id} is gone"))),
                Err(e) => tracing::warn!(job = id, error = %e, "cannot read the job; trying again"),
            }
            self.clock.sleep(JOB_POLL).await;
        }
    }

    /// Plans the running revision and holds the plan.
    async fn plan(&self) -> Ended {
        let plan = match self.session.plan(Operation::Apply, Filters::default(), Flags::default()).await {
            Ok(p) => p,
            Err(e) => return (None, Some(format!("plan failed: {e}"))),
        };
        let s = plan.summary;
        let summary = json!({ "add": s.add, "change": s.change, "destroy": s.destroy });
        if !plan.has_changes() {
            return (Some(json!({ "plan": null, "summary": summary, "in_sync": true })), None);
        }
        let allowed = plan.is_allowed();
        match hold(self.store(), plan, &self.session.config.revision, "planned on request (`POST /api/v1/plans`)", self.clock.now_ms()).await {
            Ok(id) => (Some(json!({ "plan": id, "summary": summary, "in_sync": false, "allowed": allowed })), None),
            Err(e) => (None, Some(format!("cannot record the plan: {e}"))),
        }
    }

    async fn move_plan(&self, id: &str, from: &'static [PlanState], to: PlanState, reason: Option<String>) -> Result<PlanMove, StoreError> {
        let (pid, now) = (id.to_string(), self.clock.now_ms());
        self.store().run(move |db| db.move_plan(&pid, from, to, reason.as_deref(), now)).await
    }

    /// Applies stored plan `id` (approved by the route); see the module doc.
    async fn apply(&self, id: &str) -> Ended {
        let failed = |why: String| async move {
            if let Err(e) = self.move_plan(id, &[PlanState::Approved, PlanState::Applying], PlanState::Failed, Some(why.clone())).await {
                tracing::error!(plan = %id, error = %e, "cannot record the plan's failure");
            }
            (Some(json!({ "plan": id })), Some(why))
        };
        let pid = id.to_string();
        let record = match self.store().run(move |db| db.plan(&pid)).await {
            Ok(Some(r)) => r,
            Ok(None) => return (None, Some(format!("no plan `{id}`"))),
            Err(e) => return (None, Some(e.to_string())),
        };
        let plan: Plan = match serde_json::from_value(record.plan.clone()) {
            Ok(p) => p,
            Err(e) => return failed(format!("the stored plan cannot be read: {e}")).await,
        };
        if plan.digest.is_empty() || crate::plan::digest(&plan) != plan.digest {
            return failed("the stored plan does not match its digest (it was changed after it was made); make a new plan".into()).await;
        }
        if !plan.is_allowed() {
            let mut why: Vec<String> = plan.errors.clone();
            why.extend(plan.violations.iter().map(|v| format!("policy `{}` rule `{}`: {}", v.policy, v.rule, v.message)));
            return failed(format!("the plan cannot be applied: {}", why.join("; "))).await;
        }
        let held = match self.session.lock(Operation::Apply).await {
            Ok(h) => h,
            Err(e) => return failed(format!("cannot take the state lock: {e}")).await,
        };
        let outcome = match self.move_plan(id, &[PlanState::Approved], PlanState::Applying, None).await {
            Ok(PlanMove::Moved(_)) => self.session.apply_held(&plan, None, Arc::new(AtomicBool::new(false)), &crate::apply::Silent, &held).await,
            Ok(other) => {
                held.release().await;
                return (Some(json!({ "plan": id })), Some(format!("plan `{id}` is no longer approved ({other:?})")));
            }
            Err(e) => {
                held.release().await;
                return failed(e.to_string()).await;
            }
        };
        held.release().await;
        match outcome {
            Ok(report) => {
                let s = plan.summary;
                if let Err(e) = self.move_plan(id, &[PlanState::Applying], PlanState::Applied, Some(format!("applied; state serial {}", report.serial))).await {
                    tracing::error!(plan = %id, error = %e, "cannot record the plan as applied");
                }
                tracing::info!(plan = %id, serial = report.serial, "plan applied");
                let result = json!({ "plan": id, "summary": { "add": s.add, "change": s.change, "destroy": s.destroy }, "done": report.done, "serial": report.serial });
                (Some(result), None)
            }
            Err(ReconcileError::Apply(ApplyError::Stale(why))) => {
                // The base state moved: refused, and planned again from what is now.
                let replanned = match self.session.plan(Operation::Apply, Filters::default(), Flags::default()).await {
                    Ok(p) if p.has_changes() => hold(self.store(), p, &self.session.config.revision, &format!("re-planned: plan {id} was stale"), self.clock.now_ms()).await.ok(),
                    _ => None,
                };
                let then = match &replanned {
                    Some(n) => format!("; a new plan `{n}` is held for approval"),
                    None => "; a new plan has no changes or could not be made".into(),
                };
                let (_, err) = failed(format!("plan `{id}` is stale and was not applied: {why}{then}")).await;
                (Some(json!({ "plan": id, "replanned": replanned })), err)
            }
            Err(e) => failed(format!("apply failed: {e}")).await,
        }
    }
}

/// A run's result, and its error when some host did not succeed.
fn ran(r: Result<RunResult, String>) -> Ended {
    match r {
        Err(e) => (None, Some(e)),
        Ok(r) => {
            let value = serde_json::to_value(&r).ok();
            let bad = r.hosts.iter().filter(|h| matches!(h.status, Status::Failed | Status::Unreachable)).count();
            let error = (bad > 0).then(|| format!("{bad} of {} hosts did not succeed", r.hosts.len()));
            (value, error)
        }
    }
}

/// Records `plan` (signed with its digest) as held; older held plans are
/// superseded. Its id.
pub async fn hold(store: &StateStore, mut plan: Plan, revision: &str, reason: &str, now_ms: i64) -> Result<String, StoreError> {
    plan.digest = crate::plan::digest(&plan);
    let value = serde_json::to_value(&plan).map_err(|e| StoreError::Corrupt { path: store.label().to_string(), what: "plan".into(), detail: e.to_string() })?;
    let record = PlanRecord { id: new_id(), revision: revision.to_string(), state: PlanState::Held, reason: Some(reason.to_string()), created_ms: now_ms, updated_ms: now_ms, plan: value };
    let id = record.id.clone();
    let superseded = store.run(move |db| db.record_plan(&record)).await?;
    for old in &superseded {
        tracing::info!(plan = %old, by = %id, "held plan superseded");
    }
    Ok(id)
}

/// At start-up: tasks left pending or running by a daemon that stopped
/// end `failure` ("daemon stopped"); plans it was applying (or had
/// approved) are `failed` (their state lock lease runs out on its own).
pub async fn end_interrupted(store: &StateStore, now_ms: i64) -> Result<(), StoreError> {
    let n = store.run(move |db| db.end_interrupted_tasks(DAEMON_STOPPED, now_ms)).await?;
    if n > 0 {
        tracing::warn!(tasks = n, "tasks of a daemon that stopped ended `failure` (daemon stopped)");
    }
    let plans = store.run(|db| db.plans(None, crate::api::MAX_PAGE)).await?;
    for p in plans.into_iter().filter(|p| matches!(p.state, PlanState::Approved | PlanState::Applying)) {
        let id = p.id.clone();
        let why = "the daemon stopped before its apply ended; make a new plan (`POST /api/v1/plans`)".to_string();
        store.run(move |db| db.move_plan(&id, &[PlanState::Approved, PlanState::Applying], PlanState::Failed, Some(&why), now_ms)).await?;
        tracing::warn!(plan = %p.id, "plan interrupted by a daemon stop: failed");
    }
    Ok(())
}
