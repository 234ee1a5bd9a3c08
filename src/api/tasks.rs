//! Long work with an id: tasks, and the plans held for approval.
//!
//! ```text
//! POST /api/v1/runs | exec | triggers/{name}/fire | plans | plans/{id}/approve | plans/{id}/apply
//!   -> body checked (400), names checked (404 + did-you-mean), plan state checked (409)
//!   -> task stored `pending` -> Worker::start (the daemon runs it) -> 202 {"task": id}
//! GET /api/v1/tasks[?kind=&state=] | tasks/{id} | runs | runs/{id} | plans | plans/{id} | traces
//! ```
//!
//! The routes only check and record; the work itself is the daemon's (a
//! [`Worker`] given in [`ApiState::work`]), so this module names no
//! executor, provider or reconciler.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::views::{PlanView, TaskView, TraceView};
use super::{answer, unknown, ApiError, ApiState, Listing, Params, PAGING};
use crate::store::{PlanMove, PlanState, TaskFilter, TaskKind, TaskRecord, TaskState};

/// What a task does, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// Run a playbook on a target (`None`: the playbook's `on`).
    Run {
        /// The playbook.
        playbook: String,
        /// The target selector.
        target: Option<String>,
        /// Parameters and prompt answers.
        vars: BTreeMap<String, String>,
    },
    /// Run one command on a target.
    Exec {
        /// The target selector.
        target: String,
        /// The command.
        command: String,
    },
    /// Enqueue a trigger's actions as a job, and follow it.
    Fire {
        /// The trigger.
        trigger: String,
    },
    /// Plan the running revision and hold the plan.
    Plan,
    /// Apply a stored plan (already moved to `approved`).
    Apply {
        /// The plan's id.
        plan: String,
    },
}

/// Runs tasks: the daemon's side of the task routes.
pub trait Worker: Send + Sync {
    /// Starts `task` (stored `pending`) doing `work`, and returns at once;
    /// the worker records the task's progress and end in the store.
    fn start(&self, task: TaskRecord, work: Work);
}

/// A new task id: 32 hex characters.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn body<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, ApiError> {
    serde_json::from_str(text).map_err(|e| ApiError::bad_request(format!("the body must be JSON {what}: {e}")))
}

/// Stores the task and starts it: 202 `{"task": id}`.
async fn start(st: &ApiState, kind: TaskKind, request: Value, work: Work) -> Result<Response, ApiError> {
    let Some(worker) = st.work.clone() else {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "this daemon runs no tasks"));
    };
    let task = TaskRecord {
        id: new_id(),
        kind,
        state: TaskState::Pending,
        created_ms: st.clock.now_ms(),
        started_ms: None,
        finished_ms: None,
        request,
        result: None,
        error: None,
    };
    let stored = task.clone();
    st.store.run(move |db| db.put_task(&stored)).await?;
    tracing::info!(task = %task.id, kind = kind.as_str(), "task accepted");
    let id = task.id.clone();
    worker.start(task, work);
    Ok((StatusCode::ACCEPTED, Json(json!({ "task": id }))).into_response())
}

/// The target part of a selector (`web/web-02` -> `web`) must be a
/// configured target (or `local`).
fn check_target(st: &ApiState, selector: &str) -> Result<(), ApiError> {
    let name = selector.split('/').next().unwrap_or(selector);
    if name.is_empty() {
        return Err(ApiError::bad_request("`target` must not be empty"));
    }
    if name == "local" || st.config.targets.contains_key(name) {
        return Ok(());
    }
    Err(unknown("target", name, st.config.targets.keys()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    playbook: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    vars: BTreeMap<String, Value>,
}

/// `POST /api/v1/runs` `{"playbook", "target", "vars": {}}`.
pub(super) async fn post_run(State(st): State<ApiState>, uri: Uri, text: String) -> Result<Response, ApiError> {
    Params::parse(uri.query(), &[])?;
    let b: RunBody = body(&text, r#"{"playbook": NAME, "target": SELECTOR, "vars": {...}}"#)?;
    let Some(pb) = st.config.playbooks.get(&b.playbook) else {
        return Err(unknown("playbook", &b.playbook, st.config.playbooks.keys()));
    };
    let target = b.target.clone().or_else(|| pb.spec.on.clone());
    match &target {
        Some(t) => check_target(&st, t)?,
        None => return Err(ApiError::bad_request(format!("playbook `{}` has no `on`: give `target`", b.playbook))),
    }
    let mut vars = BTreeMap::new();
    for (k, v) in &b.vars {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            _ => return Err(ApiError::bad_request(format!("`vars.{k}` must be a string, a number or a boolean"))),
        };
        vars.insert(k.clone(), text);
    }
    let request = json!({ "playbook": b.playbook, "target": target, "vars": vars });
    start(&st, TaskKind::Run, request, Work::Run { playbook: b.playbook, target, vars }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecBody {
    target: String,
    command: String,
}

/// `POST /api/v1/exec` `{"target", "command"}`.
pub(super) async fn post_exec(State(st): State<ApiState>, uri: Uri, text: String) -> Result<Response, ApiError> {
    Params::parse(uri.query(), &[])?;
    let b: ExecBody = body(&text, r#"{"target": SELECTOR, "command": TEXT}"#)?;
    if b.command.trim().is_empty() {
        return Err(ApiError::bad_request("`command` must not be empty"));
    }
    check_target(&st, &b.target)?;
    let request = json!({ "target": b.target, "command": b.command });
    start(&st, TaskKind::Exec, request, Work::Exec { target: b.target, command: b.command }).await
}

/// A body that must be empty (or `{}`).
fn no_body(text: &str) -> Result<(), ApiError> {
    let t = text.trim();
    if t.is_empty() || t == "{}" {
        return Ok(());
    }
    Err(ApiError::bad_request("this route takes no body (or `{}`)"))
}

/// `POST /api/v1/triggers/{name}/fire`: its actions as a job, now.
pub(super) async fn post_fire(State(st): State<ApiState>, Path(name): Path<String>, uri: Uri, text: String) -> Result<Response, ApiError> {
    Params::parse(uri.query(), &[])?;
    no_body(&text)?;
    if !st.config.triggers.contains_key(&name) {
        return Err(unknown("trigger", &name, st.config.triggers.keys()));
    }
    start(&st, TaskKind::Trigger, json!({ "trigger": name }), Work::Fire { trigger: name }).await
}

/// `POST /api/v1/plans`: plan the running revision now.
pub(super) async fn post_plan(State(st): State<ApiState>, uri: Uri, text: String) -> Result<Response, ApiError> {
    Params::parse(uri.query(), &[])?;
    no_body(&text)?;
    start(&st, TaskKind::Plan, json!({ "revision": st.config.revision }), Work::Plan).await
}

/// Moves plan `id` to `approved` from one of `from`: 404 unknown, 409 in
/// another state, 503 (and nothing moved) when no worker would apply it.
async fn approve(st: &ApiState, id: &str, from: &'static [PlanState]) -> Result<(), ApiError> {
    if st.work.is_none() {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "this daemon runs no tasks"));
    }
    let (pid, now) = (id.to_string(), st.clock.now_ms());
    match st.store.run(move |db| db.move_plan(&pid, from, PlanState::Approved, None, now)).await? {
        PlanMove::Moved(_) => Ok(()),
        PlanMove::Missing => Err(ApiError::not_found(format!("no plan `{id}` (`GET /api/v1/plans` lists them)"))),
        PlanMove::Was(s) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "plan `{id}` is {}; only a {} plan can be approved{}",
                s.as_str(),
                from.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(" or "),
                if s == PlanState::Superseded { " (a newer plan replaced it: approve that one)" } else { "" }
            ),
        )),
    }
}

/// `POST /api/v1/plans/{id}/approve`: approve a held plan; the daemon applies it.
pub(super) async fn post_approve(State(st): State<ApiState>, Path(id): Path<String>, uri: Uri, text: String) -> Result<Response, ApiError> {
    Params::parse(uri.query(), &[])?;
    no_body(&text)?;
    approve(&st, &id, &[PlanState::Held]).await?;
    start(&st, TaskKind::Apply, json!({ "plan": id, "approve": true }), Work::Apply { plan: id }).await
}

/// `POST /api/v1/plans/{id}/apply`: apply this plan now (held, or approved and not started).
pub(super) async fn post_apply(State(st): State<ApiState>, Path(id): Path<String>, uri: Uri, text: String) -> Result<Response, ApiError> {
    Params::parse(uri.query(), &[])?;
    no_body(&text)?;
    approve(&st, &id, &[PlanState::Held, PlanState::Approved]).await?;
    start(&st, TaskKind::Apply, json!({ "plan": id, "approve": false }), Work::Apply { plan: id }).await
}

/// A page of tasks of `kinds`, newest first; the cursor is a task id.
async fn task_page(st: &ApiState, uri: &Uri, kinds: Vec<TaskKind>, allow_kind: bool) -> Result<Response, ApiError> {
    let allowed: &[&str] = if allow_kind { &["kind", "state", "page", "limit", "after"] } else { &["state", "page", "limit", "after"] };
    let p = Params::parse(uri.query(), allowed)?;
    let mut page = p.page()?;
    if page.after.is_none() {
        page.after = p.one("page")?.map(str::to_string);
    }
    let words = |all: &[&str]| all.join(", ");
    let mut kinds = kinds;
    if let Some(k) = p.one("kind")? {
        kinds = vec![TaskKind::parse(k).ok_or_else(|| {
            ApiError::bad_request(format!("`kind` must be one of {}, received {k:?}", words(&TaskKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>())))
        })?];
    }
    let state = match p.one("state")? {
        None => None,
        Some(s) => Some(TaskState::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("`state` must be one of {}, received {s:?}", words(&TaskState::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>())))
        })?),
    };
    let filter = TaskFilter { kinds, state, before: page.after.clone(), limit: Some(page.limit + 1) };
    let mut list = st.store.run(move |db| db.tasks(&filter)).await?;
    let more = list.len() > page.limit;
    list.truncate(page.limit);
    let next = if more { list.last().map(|t| t.id.clone()) } else { None };
    answer(&Listing { items: list.iter().map(TaskView::from).collect::<Vec<_>>(), next })
}

async fn one_task(st: &ApiState, uri: &Uri, id: String, kinds: &[TaskKind], what: &str) -> Result<Response, ApiError> {
    Params::parse(uri.query(), &[])?;
    let i = id.clone();
    match st.store.run(move |db| db.task(&i)).await? {
        Some(t) if kinds.is_empty() || kinds.contains(&t.kind) => answer(&TaskView::from(&t)),
        _ => Err(ApiError::not_found(format!("no {what} `{id}` (`GET /api/v1/{what}s` lists them)"))),
    }
}

/// `GET /api/v1/tasks?kind=&state=&page=`.
pub(super) async fn tasks(State(st): State<ApiState>, uri: Uri) -> Result<Response, ApiError> {
    task_page(&st, &uri, Vec::new(), true).await
}

/// `GET /api/v1/tasks/{id}`.
pub(super) async fn task(State(st): State<ApiState>, Path(id): Path<String>, uri: Uri) -> Result<Response, ApiError> {
    one_task(&st, &uri, id, &[], "task").await
}

const RUN_KINDS: [TaskKind; 2] = [TaskKind::Run, TaskKind::Exec];

/// `GET /api/v1/runs`: the tasks that run playbooks or commands.
pub(super) async fn runs(State(st): State<ApiState>, uri: Uri) -> Result<Response, ApiError> {
    task_page(&st, &uri, RUN_KINDS.to_vec(), false).await
}

/// `GET /api/v1/runs/{id}`.
pub(super) async fn run(State(st): State<ApiState>, Path(id): Path<String>, uri: Uri) -> Result<Response, ApiError> {
    one_task(&st, &uri, id, &RUN_KINDS, "run").await
}

/// `GET /api/v1/plans`: newest first; the cursor is a plan id.
pub(super) async fn plans(State(st): State<ApiState>, uri: Uri) -> Result<Response, ApiError> {
    let page = Params::parse(uri.query(), &PAGING)?.page()?;
    let (after, limit) = (page.after.clone(), page.limit);
    let mut list = st.store.run(move |db| db.plans(after.as_deref(), limit + 1)).await?;
    let more = list.len() > limit;
    list.truncate(limit);
    let next = if more { list.last().map(|p| p.id.clone()) } else { None };
    answer(&Listing { items: list.iter().map(PlanView::from).collect::<Vec<_>>(), next })
}

/// `GET /api/v1/plans/{id}`.
pub(super) async fn plan(State(st): State<ApiState>, Path(id): Path<String>, uri: Uri) -> Result<Response, ApiError> {
    Params::parse(uri.query(), &[])?;
    let i = id.clone();
    match st.store.run(move |db| db.plan(&i)).await? {
        Some(p) => answer(&PlanView::from(&p)),
        None => Err(ApiError::not_found(format!("no plan `{id}` (`GET /api/v1/plans` lists them)"))),
    }
}

/// `GET /api/v1/traces`: trace tasks, newest first.
pub(super) async fn traces(State(st): State<ApiState>, uri: Uri) -> Result<Response, ApiError> {
    let page = Params::parse(uri.query(), &PAGING)?.page()?;
    let list = st.store.run(|db| db.traces()).await?;
    // newest first: the cursor is the position-independent id, so page by index of it
    let mut items: Vec<TraceView> = list.iter().map(TraceView::from).collect();
    if let Some(a) = &page.after {
        if let Some(i) = items.iter().position(|t| &t.id == a) {
            items.drain(..=i);
        }
    }
    let more = items.len() > page.limit;
    items.truncate(page.limit);
    let next = if more { items.last().map(|t| t.id.clone()) } else { None };
    answer(&Listing { items, next })
}
