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
use crate::store::{Job, NodeRecord, Snapshot};

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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
        }
    }
}

/// One host of a target.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
