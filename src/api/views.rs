//! One view type per resource: what the API answers and what the CLI's
//! `--json` prints (`scaler status --json` uses [`TriggerView`] and
//! [`JobView`]), so both say the same thing.
//!
//! A view holds no secret: node attributes (a local node's token, its
//! command) are left out, and the API scrubs every answer once more
//! ([`crate::redact::scrub_json`]).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Config;
use crate::fleet::{Fleet, FleetError, Host, Origin};
use crate::rules::engine::state_word;
use crate::rules::{FireWhy, Record, Term};
use crate::store::{Job, JobStatus, NodeRecord, Snapshot};

/// An instant as RFC 3339 with milliseconds (UTC), or the number if out of range.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

fn duration_ms(d: Option<&crate::model::Duration>) -> Option<i64> {
    d.map(|d| i64::try_from(d.get().as_millis()).unwrap_or(i64::MAX))
}

/// A trigger with its saved state and why it last fired.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TriggerView {
    /// The trigger's name.
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    /// `inactive`, `pending`, `firing`, `cooldown`, `nodata` or `error`.
    pub state: &'static str,
    /// Why it is `nodata` or `error`.
    pub reason: Option<String>,
    /// Since when the condition holds (ms).
    pub pending_since_ms: Option<i64>,
    /// How long it has held, as of the view's `now` (ms).
    pub pending_ms: Option<i64>,
    /// The last fire (ms).
    pub last_fired_ms: Option<i64>,
    /// The last evaluation (ms).
    pub evaluated_ms: Option<i64>,
    /// How long the condition must hold before it fires (`for`, ms; none: at once).
    pub for_ms: Option<i64>,
    /// The operand values at the last evaluation.
    pub values: Vec<Term>,
    /// The values and the window of the last fire.
    pub last_fire: Option<FireWhy>,
}

impl TriggerView {
    /// The view of a trigger from its saved record (`None`: never saved).
    pub fn new(name: &str, description: Option<&str>, record: Option<&Record>, now_ms: i64) -> TriggerView {
        let fresh = Record::default();
        let r = record.unwrap_or(&fresh);
        let s = &r.state;
        TriggerView {
            name: name.to_string(),
            description: description.map(str::to_string),
            state: state_word(s.state),
            reason: s.reason.clone(),
            pending_since_ms: s.pending_since,
            pending_ms: s.pending_since.map(|p| now_ms - p),
            last_fired_ms: s.last_fired,
            evaluated_ms: r.evaluated_ms,
            for_ms: None,
            values: r.terms.clone(),
            last_fire: r.last_fire.clone(),
        }
    }

    /// Every trigger of the config, by name, with the saved records.
    pub fn all(config: &Config, records: &std::collections::HashMap<String, Record>, now_ms: i64) -> Vec<TriggerView> {
        config
            .triggers
            .iter()
            .map(|(name, t)| TriggerView {
                for_ms: duration_ms(t.spec.for_.as_ref()),
                ..TriggerView::new(name, t.spec.description.as_deref(), records.get(name), now_ms)
            })
            .collect()
    }
}

/// A job of the queue with its result.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct JobView {
    /// Its id (enqueue order).
    pub id: i64,
    /// Idempotency key, `<trigger>@<fire ms>`.
    pub key: String,
    /// The trigger that fired.
    pub trigger: String,
    /// The fire instant (ms).
    pub fired_at_ms: i64,
    /// The fire instant, RFC 3339.
    pub fired_at: String,
    /// `queued`, `leased`, `done` or `dead`.
    pub status: &'static str,
    /// Tries started.
    pub attempts: u32,
    /// Tries allowed.
    pub max_attempts: u32,
    /// How many of its actions are done.
    pub actions_done: u32,
    /// The config revision of the fire.
    pub revision: Option<String>,
    /// The values that made the trigger fire.
    pub values: Option<serde_json::Value>,
    /// What the actions returned.
    pub result: serde_json::Value,
    /// The last failure.
    pub last_error: Option<String>,
    /// Every action of the trigger's `then`, with its own id and state
    /// (those after the one a dead job stopped at are `skipped`).
    pub actions: Vec<ActionView>,
}

impl From<&Job> for JobView {
    fn from(j: &Job) -> JobView {
        JobView {
            id: j.id,
            key: j.key.clone(),
            trigger: j.trigger.clone(),
            fired_at_ms: j.fired_at_ms,
            fired_at: rfc3339_ms(j.fired_at_ms),
            status: j.status.as_str(),
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            actions_done: j.actions_done,
            revision: j.revision.clone(),
            values: j.payload.get("values").cloned(),
            result: j.result.clone(),
            last_error: j.last_error.clone(),
            actions: action_views(j),
        }
    }
}

/// One host of a target.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct HostView {
    /// The node's name, or the static entry as written.
    pub name: String,
    /// The address series carry.
    pub address: String,
    /// `static` (the target's `hosts`) or `node` (a running node of its group).
    pub origin: &'static str,
    /// The group of a node.
    pub group: Option<String>,
}

impl From<&Host> for HostView {
    fn from(h: &Host) -> HostView {
        let (origin, group) = match &h.origin {
            Origin::Static => ("static", None),
            Origin::Node { group, .. } => ("node", Some(group.clone())),
        };
        HostView { name: h.name.clone(), address: h.address.clone(), origin, group }
    }
}

/// A target and the hosts it names now.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TargetView {
    /// The target's name.
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    /// The group whose running nodes are its hosts.
    pub group: Option<String>,
    /// Its hosts (static, or the group's running nodes).
    pub hosts: Vec<HostView>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

impl TargetView {
    /// Every target of the fleet's config, by name.
    pub fn all(fleet: &Fleet<'_>) -> Result<Vec<TargetView>, FleetError> {
        fleet
            .config()
            .targets
            .iter()
            .map(|(name, t)| {
                Ok(TargetView {
                    name: name.clone(),
                    description: t.spec.description.clone(),
                    group: t.spec.group.clone(),
                    hosts: fleet.hosts_of(name)?.iter().map(HostView::from).collect(),
                    labels: t.spec.labels.clone(),
                })
            })
            .collect()
    }
}

/// A counter as configured.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct CounterView {
    /// The counter's name.
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    /// Its source (`ssh`, `local`, `http`, `push`...).
    pub source: &'static str,
    /// The targets it is collected on.
    pub targets: Vec<String>,
    /// Collection interval (ms), when set on the counter.
    pub interval_ms: Option<i64>,
    /// Its unit.
    pub unit: Option<String>,
    /// Whether values are turned into a per-second rate.
    pub rate: bool,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

impl CounterView {
    /// Every counter of the config, by name.
    pub fn all(config: &Config) -> Vec<CounterView> {
        config
            .counters
            .iter()
            .map(|(name, c)| CounterView {
                name: name.clone(),
                description: c.spec.description.clone(),
                source: c.spec.source.name(),
                targets: c.spec.targets.clone(),
                interval_ms: duration_ms(c.spec.interval.as_ref()),
                unit: c.spec.unit.clone(),
                rate: c.spec.rate,
                labels: c.spec.labels.clone(),
            })
            .collect()
    }
}

/// A recorded node (without its provider attributes: they may hold a secret).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct NodeView {
    /// The node's name.
    pub name: String,
    /// Its group.
    pub group: String,
    /// Its slot in the group.
    pub index: u32,
    /// Provider name.
    pub provider: String,
    /// The provider's id, once known.
    pub provider_id: Option<String>,
    /// `creating`, `running` or `terminating`.
    pub status: &'static str,
    /// When its launch was recorded (RFC 3339).
    pub created_at: String,
    /// Where to reach it, once known.
    pub address: Option<String>,
    /// Digest of the template it was launched from.
    pub template_digest: String,
}

impl From<&NodeRecord> for NodeView {
    fn from(n: &NodeRecord) -> NodeView {
        NodeView {
            name: n.name.clone(),
            group: n.group.clone(),
            index: n.index,
            provider: n.provider.clone(),
            provider_id: n.provider_id.clone(),
            status: n.status.as_str(),
            created_at: n.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            address: n.address.clone(),
            template_digest: n.template_digest.clone(),
        }
    }
}

/// A group: its bounds, its desired count and its nodes.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct GroupView {
    /// The group's name.
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    /// Its node template.
    pub template: String,
    /// Fewest nodes.
    pub min: u32,
    /// Most nodes.
    pub max: u32,
    /// The config's `desired`.
    pub desired: Option<u32>,
    /// The desired count recorded at run time (a scale), if any.
    pub desired_runtime: Option<u32>,
    /// Recorded nodes by status.
    pub nodes: BTreeMap<&'static str, u32>,
    /// Its hosts: running nodes with an address.
    pub hosts: Vec<String>,
}

impl GroupView {
    /// Every group of the config, by name.
    pub fn all(fleet: &Fleet<'_>, snapshot: &Snapshot) -> Vec<GroupView> {
        fleet
            .config()
            .groups
            .iter()
            .map(|(name, g)| {
                let mut nodes = BTreeMap::new();
                for n in snapshot.nodes.iter().filter(|n| n.group == *name) {
                    *nodes.entry(n.status.as_str()).or_insert(0) += 1;
                }
                GroupView {
                    name: name.clone(),
                    description: g.spec.description.clone(),
                    template: g.spec.template.clone(),
                    min: g.spec.min,
                    max: g.spec.max,
                    desired: g.spec.desired,
                    desired_runtime: snapshot.desired.get(name).copied(),
                    nodes,
                    hosts: fleet.group_hosts(name).iter().map(|h| h.name.clone()).collect(),
                }
            })
            .collect()
    }
}

/// What the daemon runs.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct StatusView {
    /// This scaler's version.
    pub version: &'static str,
    /// The config revision the daemon runs (a git commit, `-dirty`, or `none`).
    pub revision: String,
    /// Digest of the running config.
    pub config_digest: String,
    /// The config repo's directory.
    pub config_root: String,
    /// The revision last applied, as recorded in the state store.
    pub applied_revision: Option<String>,
    /// The state's serial.
    pub state_serial: u64,
    /// The state store (a path; never a password).
    pub state_store: String,
    /// What this daemon does: `collect`, `evaluate`, `receive`, `work`, `reconcile`.
    pub roles: Vec<&'static str>,
    /// Job workers.
    pub workers: u32,
    /// The HTTP listen address.
    pub listen: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it started (ms).
    pub started_at_ms: i64,
    /// Since when it runs (ms).
    pub uptime_ms: i64,
    /// Counts of what the config holds.
    pub counts: BTreeMap<&'static str, usize>,
    /// What the git source fetched and when it fetches next (`None`: a directory source).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch: Option<crate::gitops::Fetches>,
    /// What the request's token may do: `write` (`daemon.token`) or `read`
    /// (`daemon.read_token`); the web UI shows change buttons for `write` only.
    pub token_scope: &'static str,
}

impl StatusView {
    /// How many objects of each kind the config holds.
    pub fn counts(config: &Config) -> BTreeMap<&'static str, usize> {
        BTreeMap::from([
            ("targets", config.targets.len()),
            ("counters", config.counters.len()),
            ("triggers", config.triggers.len()),
            ("groups", config.groups.len()),
            ("playbooks", config.playbooks.len()),
            ("policies", config.policies.len()),
        ])
    }
}

/// A task: `{"id","kind","state","created_ms","started_ms","finished_ms","request","result","error"}`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TaskView {
    /// 32 hex characters.
    pub id: String,
    /// `run`, `exec`, `plan`, `apply` or `trigger`.
    pub kind: &'static str,
    /// `pending`, `running`, `success`, `failure` or `cancelled`.
    pub state: &'static str,
    /// When it was accepted (ms).
    pub created_ms: i64,
    /// When it started (ms).
    pub started_ms: Option<i64>,
    /// When it ended (ms).
    pub finished_ms: Option<i64>,
    /// What was asked.
    pub request: serde_json::Value,
    /// What it gave (a run: every host and step; a plan: the plan's id
    /// and summary; an apply: what changed; a trigger: the job view).
    pub result: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
}

impl From<&crate::store::TaskRecord> for TaskView {
    fn from(t: &crate::store::TaskRecord) -> TaskView {
        TaskView {
            id: t.id.clone(),
            kind: t.kind.as_str(),
            state: t.state.as_str(),
            created_ms: t.created_ms,
            started_ms: t.started_ms,
            finished_ms: t.finished_ms,
            request: t.request.clone(),
            result: t.result.clone(),
            error: t.error.clone(),
        }
    }
}

/// A plan's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct SummaryView {
    /// Nodes or objects to add.
    pub add: usize,
    /// To change.
    pub change: usize,
    /// To destroy.
    pub destroy: usize,
}

/// A stored plan.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PlanView {
    /// 32 hex characters.
    pub id: String,
    /// The config revision it was made from.
    pub revision: String,
    /// `held`, `approved`, `applying`, `applied`, `superseded` or `failed`.
    pub state: &'static str,
    /// Why it is in that state.
    pub reason: Option<String>,
    /// When it was recorded (ms).
    pub created_ms: i64,
    /// Its counts.
    pub summary: SummaryView,
    /// The plan as `scaler plan` renders it, without colour.
    pub diff: String,
    /// The changes, in apply order (as in a plan file).
    pub changes: serde_json::Value,
}

impl From<&crate::store::PlanRecord> for PlanView {
    fn from(p: &crate::store::PlanRecord) -> PlanView {
        let (summary, diff) = match serde_json::from_value::<crate::plan::Plan>(p.plan.clone()) {
            Ok(plan) => (
                SummaryView { add: plan.summary.add, change: plan.summary.change, destroy: plan.summary.destroy },
                crate::plan::render(&plan, crate::plan::RenderOptions { color: false }),
            ),
            Err(e) => (SummaryView { add: 0, change: 0, destroy: 0 }, format!("(the stored plan cannot be read by this build: {e})")),
        };
        PlanView {
            id: p.id.clone(),
            revision: p.revision.clone(),
            state: p.state.as_str(),
            reason: p.reason.clone(),
            created_ms: p.created_ms,
            summary,
            diff,
            changes: p.plan.get("changes").cloned().unwrap_or_else(|| serde_json::json!([])),
        }
    }
}

/// A trace task (`scaler trace start`).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TraceView {
    /// 32 hex characters.
    pub id: String,
    /// The stream counter.
    pub counter: String,
    /// Where it runs.
    pub host: String,
    /// The command.
    pub command: String,
    /// `running`, `stopped`, `exited` or `failed`.
    pub status: &'static str,
    /// When it started (ms).
    pub started_ms: i64,
    /// When it ended (ms).
    pub ended_ms: Option<i64>,
    /// Exit status or error.
    pub detail: Option<String>,
}

impl From<&crate::store::TraceTask> for TraceView {
    fn from(t: &crate::store::TraceTask) -> TraceView {
        TraceView {
            id: t.id.clone(),
            counter: t.counter.clone(),
            host: t.host.clone(),
            command: t.command.clone(),
            status: t.status.as_str(),
            started_ms: t.started_ms,
            ended_ms: t.ended_ms,
            detail: t.detail.clone(),
        }
    }
}

/// One action of a job, with its own id and state.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ActionView {
    /// `<job id>#<1-based index>`.
    pub id: String,
    /// 1-based position in the trigger's `then`.
    pub index: usize,
    /// The action's type (`scale`, `run`, `notify`...).
    #[serde(rename = "type")]
    pub kind: String,
    /// `success` (done), `running`, `pending`, `failure` (the action a dead
    /// job stopped at) or `skipped` (after it: never run).
    pub state: &'static str,
}

/// The actions of a job and where it stands on each.
pub fn action_views(j: &Job) -> Vec<ActionView> {
    let actions = j.payload.get("actions").and_then(|a| a.as_array()).cloned().unwrap_or_default();
    let done = j.actions_done as usize;
    actions
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let kind = a.as_object().and_then(|o| o.keys().next().cloned()).unwrap_or_else(|| "action".into());
            let state = match (i.cmp(&done), j.status) {
                (std::cmp::Ordering::Less, _) => "success",
                (_, JobStatus::Done) => "success",
                (std::cmp::Ordering::Equal, JobStatus::Leased) => "running",
                (std::cmp::Ordering::Equal, JobStatus::Dead) => "failure",
                (_, JobStatus::Dead) => "skipped",
                _ => "pending",
            };
            ActionView { id: format!("{}#{}", j.id, i + 1), index: i + 1, kind, state }
        })
        .collect()
}
