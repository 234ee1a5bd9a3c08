//! Tasks and plans: the daemon's long work, durable.
//!
//! A task is one piece of long work the API started (a playbook run, an
//! ad-hoc command, a manual trigger fire, a plan, an apply): `POST` gives
//! its id at once, `GET` its state and result. A task that was pending or
//! running when its daemon stopped is ended `failure` ("daemon stopped")
//! when a daemon starts ([`TaskStore::end_interrupted_tasks`]).
//!
//! A stored plan is a plan the daemon made and holds for approval (the
//! full plan JSON with its digest), with its life cycle
//! (`held -> approved -> applying -> applied | failed`, or `superseded`
//! once a newer plan is recorded). State moves are conditional
//! ([`TaskStore::move_plan`]), so two approvals of one plan cannot both
//! win. The store keeps the JSON as given; what it means is the caller's.

use serde::{Deserialize, Serialize};

use super::Result;

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// A playbook run (`POST /api/v1/runs`).
    Run,
    /// An ad-hoc command (`POST /api/v1/exec`).
    Exec,
    /// A plan of the running revision (`POST /api/v1/plans`).
    Plan,
    /// The apply of a stored plan (approve, or apply now).
    Apply,
    /// A manual trigger fire: its actions as a job.
    Trigger,
}

/// How a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Accepted, not started.
    Pending,
    /// Started.
    Running,
    /// Ended well.
    Success,
    /// Ended badly (`error` says why).
    Failure,
    /// Ended on request before it was done.
    Cancelled,
}

macro_rules! words {
    ($ty:ident { $($v:ident => $w:literal),* $(,)? }) => {
        impl $ty {
            /// Every value, in order.
            pub const ALL: &'static [$ty] = &[$($ty::$v),*];

            /// The lowercase name.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$v => $w),* }
            }

            /// From the lowercase name.
            pub fn parse(text: &str) -> Option<$ty> {
                match text { $($w => Some($ty::$v),)* _ => None }
            }
        }
    };
}

words!(TaskKind { Run => "run", Exec => "exec", Plan => "plan", Apply => "apply", Trigger => "trigger" });
words!(TaskState { Pending => "pending", Running => "running", Success => "success", Failure => "failure", Cancelled => "cancelled" });
words!(PlanState { Held => "held", Approved => "approved", Applying => "applying", Applied => "applied", Superseded => "superseded", Failed => "failed" });

impl TaskState {
    /// Whether the task ended.
    pub fn is_final(self) -> bool {
        matches!(self, TaskState::Success | TaskState::Failure | TaskState::Cancelled)
    }
}

/// A task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// 32 hex characters.
    pub id: String,
    /// What it does.
    pub kind: TaskKind,
    /// How it stands.
    pub state: TaskState,
    /// When it was accepted (ms).
    pub created_ms: i64,
    /// When it started (ms).
    pub started_ms: Option<i64>,
    /// When it ended (ms).
    pub finished_ms: Option<i64>,
    /// What was asked (the request body, checked).
    pub request: serde_json::Value,
    /// What it gave, once ended (also on a failure, when there is one).
    pub result: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Which tasks [`TaskStore::tasks`] lists: newest first (by `created_ms`,
/// then id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only these kinds (empty: every kind).
    pub kinds: Vec<TaskKind>,
    /// Only this state.
    pub state: Option<TaskState>,
    /// Only tasks older than this one (by id; the cursor of a page).
    pub before: Option<String>,
    /// At most this many.
    pub limit: Option<usize>,
}

/// How a stored plan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanState {
    /// Waiting for approval (`daemon.auto_apply` is off).
    Held,
    /// Approved; the daemon applies it.
    Approved,
    /// Being applied.
    Applying,
    /// Applied.
    Applied,
    /// A newer plan replaced it; it can no longer be approved.
    Superseded,
    /// Its apply failed or was refused (`reason` says why).
    Failed,
}

/// A stored plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRecord {
    /// 32 hex characters.
    pub id: String,
    /// The config revision it was made from.
    pub revision: String,
    /// How it stands.
    pub state: PlanState,
    /// Why it is in that state (held: why it was not applied; superseded:
    /// by which plan; failed: the error).
    pub reason: Option<String>,
    /// When it was recorded (ms).
    pub created_ms: i64,
    /// When its state last moved (ms).
    pub updated_ms: i64,
    /// The plan (its JSON, digest included).
    pub plan: serde_json::Value,
}

/// What [`TaskStore::move_plan`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanMove {
    /// Moved; the plan as it is now.
    Moved(PlanRecord),
    /// No plan has that id.
    Missing,
    /// The plan was in this state, not one the move starts from; nothing changed.
    Was(PlanState),
}

/// Persistence of tasks and plans.
pub trait TaskStore {
    /// Inserts or replaces a task (by id).
    fn put_task(&mut self, task: &TaskRecord) -> Result<()>;
    /// The task with this id.
    fn task(&self, id: &str) -> Result<Option<TaskRecord>>;
    /// Tasks, newest first (see [`TaskFilter`]).
    fn tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>>;
    /// Ends every pending or running task `failure` with `error`, finished
    /// at `now_ms` (a daemon starting: their daemon stopped); how many.
    fn end_interrupted_tasks(&mut self, error: &str, now_ms: i64) -> Result<u64>;
    /// Records a new plan (state as given, normally `held`) and, in the same
    /// transaction, marks every other held or approved plan `superseded`
    /// ("superseded by plan ID"); the ids superseded.
    fn record_plan(&mut self, plan: &PlanRecord) -> Result<Vec<String>>;
    /// The plan with this id.
    fn plan(&self, id: &str) -> Result<Option<PlanRecord>>;
    /// Plans, newest first (by `created_ms`, then id), only those older
    /// than `before` (an id) when given, at most `limit`.
    fn plans(&self, before: Option<&str>, limit: usize) -> Result<Vec<PlanRecord>>;
    /// Moves plan `id` to `to` (with `reason`, when given, replacing the
    /// old one) if it is in one of `from`; atomic.
    fn move_plan(&mut self, id: &str, from: &[PlanState], to: PlanState, reason: Option<&str>, now_ms: i64) -> Result<PlanMove>;
}

/// The reason a superseded plan carries.
pub fn superseded_by(id: &str) -> String {
    format!("superseded by plan {id}")
}

/// The columns of a task, in the order both backends read them.
pub(crate) const TASK_COLUMNS: &str = "id, kind, state, created_ms, started_ms, finished_ms, request, result, error";
/// The columns of a plan, in the order both backends read them.
pub(crate) const PLAN_COLUMNS: &str = "id, revision, state, reason, created_ms, updated_ms, plan";

/// The query of [`TaskStore::tasks`]; `param` is the backend's first
/// placeholder (`?1`, `$1`), bound to `filter.before` when the query
/// has it (the second value). Kinds and states are written as literals
/// (they are enum words, never user text).
pub(crate) fn tasks_query(filter: &TaskFilter, param: &str) -> (String, bool) {
    let mut wheres = Vec::new();
    if !filter.kinds.is_empty() {
        let kinds: Vec<String> = filter.kinds.iter().map(|k| format!("'{}'", k.as_str())).collect();
        wheres.push(format!("kind IN ({})", kinds.join(", ")));
    }
    if let Some(s) = filter.state {
        wheres.push(format!("state = '{}'", s.as_str()));
    }
    if filter.before.is_some() {
        wheres.push(format!("(created_ms, id) < (SELECT created_ms, id FROM tasks WHERE id = {param})"));
    }
    let mut q = format!("SELECT {TASK_COLUMNS} FROM tasks");
    if !wheres.is_empty() {
        q.push_str(" WHERE ");
        q.push_str(&wheres.join(" AND "));
    }
    q.push_str(" ORDER BY created_ms DESC, id DESC");
    if let Some(n) = filter.limit {
        q.push_str(&format!(" LIMIT {n}"));
    }
    (q, filter.before.is_some())
}

/// A task as stored.
pub(crate) struct TaskRow {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub request: String,
    pub result: Option<String>,
    pub error: Option<String>,
}

impl TaskRow {
    pub(crate) fn decode(self, label: &str) -> Result<TaskRecord> {
        use super::rows::{corrupt, parse_json};
        let what = || format!("task {}", self.id);
        Ok(TaskRecord {
            kind: TaskKind::parse(&self.kind).ok_or_else(|| corrupt(label, what(), format_args!("unknown kind `{}`", self.kind)))?,
            state: TaskState::parse(&self.state).ok_or_else(|| corrupt(label, what(), format_args!("unknown state `{}`", self.state)))?,
            request: parse_json(label, what(), &self.request)?,
            result: self.result.as_deref().map(|r| parse_json(label, what(), r)).transpose()?,
            created_ms: self.created_ms,
            started_ms: self.started_ms,
            finished_ms: self.finished_ms,
            error: self.error,
            id: self.id,
        })
    }
}

/// A plan as stored.
pub(crate) struct PlanRow {
    pub id: String,
    pub revision: String,
    pub state: String,
    pub reason: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub plan: String,
}

impl PlanRow {
    pub(crate) fn decode(self, label: &str) -> Result<PlanRecord> {
        use super::rows::{corrupt, parse_json};
        let what = || format!("plan {}", self.id);
        Ok(PlanRecord {
            state: PlanState::parse(&self.state).ok_or_else(|| corrupt(label, what(), format_args!("unknown state `{}`", self.state)))?,
            plan: parse_json(label, what(), &self.plan)?,
            revision: self.revision,
            reason: self.reason,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            id: self.id,
        })
    }
}

/// What a plan move decides, given the state found.
pub(crate) fn may_move(found: Option<PlanState>, from: &[PlanState]) -> Option<PlanMove> {
    match found {
        None => Some(PlanMove::Missing),
        Some(s) if !from.contains(&s) => Some(PlanMove::Was(s)),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for k in TaskKind::ALL {
            assert_eq!(TaskKind::parse(k.as_str()), Some(*k));
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::json!(k.as_str()));
        }
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.as_str()), Some(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        for s in PlanState::ALL {
            assert_eq!(PlanState::parse(s.as_str()), Some(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        assert_eq!(TaskKind::parse("nope"), None);
        assert!(TaskState::Cancelled.is_final() && !TaskState::Running.is_final());
    }
}
