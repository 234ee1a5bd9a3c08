//! The diff: desired config + recorded state + observed nodes -> changes.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Action, Change, ConfigWarning, Filters, Flags, GroupError, GroupPlan, NodeChange, Operation, Plan, FORMAT_VERSION};
use crate::config::Config;
use crate::model::{Group, Kind, Pick};
use crate::provider::{Health, ObservedNode};
use crate::store::{NodeRecord, NodeStatus, Snapshot};

/// Everything the diff looks at.
#[derive(Debug)]
pub struct DiffInput<'a> {
    /// Desired: the compiled config.
    pub config: &'a Config,
    /// Recorded: the state.
    pub snapshot: &'a Snapshot,
    /// Observed: what providers report for this project.
    pub observed: &'a [ObservedNode],
    /// Apply or destroy.
    pub operation: Operation,
    /// `--target` / `--exclude`.
    pub filters: Filters,
    /// Explicit flags.
    pub flags: Flags,
    /// The providers this build has, by name: a group whose template names
    /// another is left out of the plan with a [`GroupError`].
    pub providers: BTreeSet<String>,
    /// The clock.
    pub now: DateTime<Utc>,
    /// For `scale_in.pick: least-busy`: the last value of each group's
    /// `scale_in.counter` per node name, read from the sample store by the
    /// caller (a node without one counts as the busiest).
    pub busy: BTreeMap<String, BTreeMap<String, f64>>,
}

/// `<prefix>-NN` for slot `index`.
pub fn node_name(group: &Group, index: u32) -> String {
    let prefix = group
        .naming
        .as_ref()
        .and_then(|n| n.prefix.clone())
        .unwrap_or_else(|| group.name.clone());
    let digits = usize::from(group.naming.as_ref().and_then(|n| n.digits).unwrap_or(2));
    format!("{prefix}-{index:0digits$}")
}

/// The highest slot number a group's naming allows.
fn max_index(group: &Group) -> u32 {
    let digits = u32::from(group.naming.as_ref().and_then(|n| n.digits).unwrap_or(2));
    10u32.saturating_pow(digits).saturating_sub(1)
}

/// How a recorded node stands against what the provider reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Ready, and running as recorded.
    Alive,
    /// Running, but its life cycle stopped before `ready` (a crash, a
    /// timeout, a failed stage): resumed or replaced, never capacity.
    Stuck,
    /// Recorded past `creating`, but the provider says it is gone.
    Died,
    /// Recorded as creating, never found running: the launch did not finish.
    Unfinished,
    /// Recorded as terminating: the termination did not finish.
    Terminating,
}

fn standing(rec: &NodeRecord, obs: Option<&ObservedNode>) -> Standing {
    let alive = obs.is_some_and(|o| o.health == Health::Running);
    match (rec.status, alive) {
        (NodeStatus::Terminating, _) => Standing::Terminating,
        (NodeStatus::Ready, true) => Standing::Alive,
        (_, true) => Standing::Stuck,
        (NodeStatus::Creating, false) => Standing::Unfinished,
        (_, false) => Standing::Died,
    }
}

/// The error of the stage a node's life cycle last failed in, as apply
/// records it in the node's attributes (`lifecycle_error`).
pub fn lifecycle_error(rec: &NodeRecord) -> Option<String> {
    let e = rec.attrs.get(LIFECYCLE_ERROR)?;
    Some(format!(
        "`{}` failed: {}",
        e.get("stage").and_then(Value::as_str).unwrap_or("?"),
        e.get("error").and_then(Value::as_str).unwrap_or("?")
    ))
}

/// Where scaler reaches an observed node (the template's `address`); a
/// setting that does not render leaves it unknown, for the resumed life
/// cycle to report.
fn address_of(template: Option<&crate::model::NodeTemplate>, o: &ObservedNode, index: u32) -> Option<String> {
    match template {
        Some(t) => crate::provider::node_address(t, o, index).ok().flatten(),
        None => o.address.clone(),
    }
}

/// The attribute under which apply records a failed life-cycle stage.
pub const LIFECYCLE_ERROR: &str = "lifecycle_error";

/// The diff result before policies.
pub fn diff(input: &DiffInput<'_>) -> Plan {
    let cfg = input.config;
    let mut changes = Vec::new();

    // Config objects.
    let recorded: BTreeMap<(String, String), &Value> = input
        .snapshot
        .objects
        .iter()
        .map(|o| ((o.kind.clone(), o.name.clone()), &o.spec))
        .collect();
    let desired: Vec<(Kind, String, Value)> = cfg.objects();
    let desired_keys: BTreeSet<(String, String)> =
        desired.iter().map(|(k, n, _)| (k.slug().to_string(), n.clone())).collect();
    let mut deletes = Vec::new();
    if input.operation == Operation::Apply {
        for (kind, name, after) in &desired {
            let key = (kind.slug().to_string(), name.clone());
            match recorded.get(&key) {
                None => changes.push(object_change(*kind, name, Action::Create, None, Some(after.clone()))),
                Some(before) if *before != after => {
                    let mut c = object_change(*kind, name, Action::Update, Some((*before).clone()), Some(after.clone()));
                    c.diff = super::field_diff(before, after);
                    changes.push(c);
                }
                Some(_) => {}
            }
        }
        for kind in Kind::ALL.iter().rev() {
            for o in input.snapshot.objects.iter().filter(|o| o.kind == kind.slug()) {
                if !desired_keys.contains(&(o.kind.clone(), o.name.clone())) {
                    deletes.push(object_change(*kind, &o.name, Action::Delete, Some(o.spec.clone()), None));
                }
            }
        }
    }

    // Nodes, group by group.
    let observed: BTreeMap<&str, &ObservedNode> = input.observed.iter().map(|o| (o.name.as_str(), o)).collect();
    let mut group_names: BTreeSet<String> = cfg.groups.keys().cloned().collect();
    group_names.extend(input.snapshot.nodes.iter().map(|n| n.group.clone()));
    group_names.extend(
        input.snapshot.objects.iter().filter(|o| o.kind == Kind::Group.slug()).map(|o| o.name.clone()),
    );
    let mut nodes = NodePlan::default();
    for g in &group_names {
        let recorded_spec: Option<Group> = recorded
            .get(&(Kind::Group.slug().to_string(), g.clone()))
            .and_then(|v| serde_json::from_value((*v).clone()).ok());
        let desired_spec = cfg.groups.get(g).map(|l| &l.spec);
        let Some(spec) = desired_spec.or(recorded_spec.as_ref()) else {
            // Nodes of a group we know nothing else about: remove them.
            let fallback = Group {
                name: g.clone(),
                description: None,
                template: String::new(),
                min: 0,
                max: 0,
                desired: None,
                scale_in: None,
                naming: None,
                prevent_destroy: false,
                labels: BTreeMap::new(),
            };
            plan_group(input, &fallback, None, true, &observed, &mut nodes);
            continue;
        };
        let removed = desired_spec.is_none();
        let target = if removed || input.operation == Operation::Destroy {
            0
        } else {
            super::desired::combine(
                spec,
                recorded_spec.as_ref(),
                input.snapshot.desired.get(g).copied(),
                input.snapshot.desired_base.get(g).copied(),
            )
        };
        plan_group(input, spec, Some(target), removed, &observed, &mut nodes);
    }
    let NodePlan { changes: node_changes, mut errors, mut group_errors, mut group_plans, refresh } = nodes;
    changes.extend(node_changes);
    changes.extend(deletes);

    // Filters.
    changes.retain(|c| input.filters.allows(&c.address));
    group_errors.retain(|e| input.filters.allows(&format!("group.{}", e.group)) || input.filters.allows(&format!("node.{}/", e.group)));
    // Figures per group from what remains.
    for gp in &mut group_plans {
        let mine = |c: &&Change| c.node.as_ref().is_some_and(|n| n.group == gp.name);
        gp.create = changes.iter().filter(mine).filter(|c| matches!(c.action, Action::Create | Action::Replace)).count() as u32;
        gp.destroy = changes
            .iter()
            .filter(mine)
            .filter(|c| c.action == Action::Delete && c.node.as_ref().is_some_and(|n| n.was_alive))
            .count() as u32;
        // A resumed node becomes capacity when its life cycle finishes.
        let resumed = changes.iter().filter(mine).filter(|c| c.action == Action::Update).count() as u32;
        gp.nodes_after = (gp.nodes_before + gp.create + resumed).saturating_sub(gp.destroy);
    }
    // prevent_destroy: live nodes of protected groups must not be destroyed.
    for c in &changes {
        let Some(n) = &c.node else { continue };
        if c.action != Action::Delete || !n.was_alive {
            continue;
        }
        if group_plans.iter().any(|g| g.name == n.group && g.prevent_destroy) {
            errors.push(format!(
                "group `{}` has `prevent_destroy: true`; this plan would destroy node `{}`",
                n.group, c.name
            ));
        }
    }

    let mut plan = Plan {
        format_version: FORMAT_VERSION.to_string(),
        created_at: input.now,
        operation: input.operation,
        root: cfg.root.display().to_string(),
        lineage: input.snapshot.meta.lineage.clone(),
        serial: input.snapshot.meta.serial,
        config_digest: cfg.digest.clone(),
        revision: cfg.revision.clone(),
        filters: input.filters.clone(),
        flags: input.flags,
        changes,
        summary: Default::default(),
        groups: group_plans,
        errors,
        violations: Vec::new(),
        group_errors,
        warnings: cfg.warnings.0.iter().map(ConfigWarning::from).collect(),
        refresh,
        digest: String::new(),
    };
    plan.recount();
    plan
}

/// Reason text of a delete that only cleans up state (nothing alive).
pub(crate) const REASON_GONE: &str = "already gone; forget it";

/// What planning the groups adds to the plan.
#[derive(Default)]
struct NodePlan {
    changes: Vec<Change>,
    errors: Vec<String>,
    group_errors: Vec<GroupError>,
    group_plans: Vec<GroupPlan>,
    refresh: Vec<NodeRecord>,
}

fn group_plan(spec: &Group, target: u32, nodes_before: u32, removed: bool) -> GroupPlan {
    GroupPlan {
        name: spec.name.clone(),
        min: spec.min,
        max: spec.max,
        desired: target,
        nodes_before,
        nodes_after: 0,
        create: 0,
        destroy: 0,
        prevent_destroy: spec.prevent_destroy,
        removed,
    }
}

fn plan_group(
    input: &DiffInput<'_>,
    spec: &Group,
    target: Option<u32>,
    removed: bool,
    observed: &BTreeMap<&str, &ObservedNode>,
    out: &mut NodePlan,
) {
    let g = &spec.name;
    let template = input.config.templates.get(&spec.template).map(|t| &t.spec);
    let provider = template.map_or("local", |t| t.provider.as_str()).to_string();
    let target = target.unwrap_or(0);

    let mut recs: Vec<&NodeRecord> = input.snapshot.nodes.iter().filter(|n| &n.group == g).collect();
    recs.sort_by_key(|n| n.index);
    if !input.providers.contains(&provider) {
        // Nothing can be launched, observed or terminated: leave the group
        // out, and say so unless there is nothing to do (no node recorded,
        // and the group is destroyed or removed from the config).
        if (input.operation == Operation::Apply && !removed) || !recs.is_empty() {
            out.group_errors.push(GroupError {
                group: g.clone(),
                message: format!("group `{g}`: provider `{provider}` is not in this build; its nodes are left out of this plan"),
            });
        }
        let recorded = recs.iter().filter(|n| n.status != NodeStatus::Terminating).count() as u32;
        out.group_plans.push(group_plan(spec, target, recorded, removed));
        return;
    }
    let recorded_names: BTreeSet<&str> = recs.iter().map(|n| n.name.as_str()).collect();

    // Slots taken by running nodes: ready ones (capacity) and stuck ones
    // (unfinished work, resumed or replaced below).
    let mut alive: Vec<(NodeRecord, bool)> = Vec::new();
    let mut dead: Vec<(&NodeRecord, Standing)> = Vec::new();
    let mut terminating: Vec<(&NodeRecord, bool)> = Vec::new();
    for rec in &recs {
        let obs = observed.get(rec.name.as_str()).copied();
        match standing(rec, obs) {
            Standing::Alive => alive.push(((*rec).clone(), false)),
            Standing::Stuck => {
                let mut r = (*rec).clone();
                if r.status == NodeStatus::Creating {
                    if let Some(o) = obs {
                        // The launch finished unrecorded (a crash): record
                        // what the provider says, then resume.
                        r.status = NodeStatus::Running;
                        r.provider_id = o.provider_id.clone();
                        r.address = address_of(template, o, r.index);
                        r.attrs = serde_json::to_value(&o.attrs).unwrap_or(Value::Null);
                        out.refresh.push(r.clone());
                    }
                }
                alive.push((r, true));
            }
            Standing::Terminating => {
                terminating.push((rec, obs.is_some_and(|o| o.health == Health::Running)));
            }
            s => dead.push((rec, s)),
        }
    }
    // Running nodes the provider reports that state does not know (a crash
    // after launch and before the record, or lost state): adopt them, then
    // resume their life cycle.
    for o in observed.values() {
        if &o.group != g || recorded_names.contains(o.name.as_str()) || o.health != Health::Running {
            continue;
        }
        let Some(index) = o.name.rsplit('-').next().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let rec = NodeRecord {
            name: o.name.clone(),
            group: g.clone(),
            index,
            provider: provider.clone(),
            provider_id: o.provider_id.clone(),
            status: NodeStatus::Running,
            created_at: input.now,
            template_digest: String::new(),
            address: address_of(template, o, index),
            attrs: serde_json::to_value(&o.attrs).unwrap_or(Value::Null),
        };
        out.refresh.push(rec.clone());
        alive.push((rec, true));
    }
    alive.sort_by_key(|(n, _)| n.index);
    let nodes_before = alive.iter().filter(|(_, stuck)| !stuck).count() as u32;

    let node_change = |name: &str, index: u32, action: Action, reason: Option<String>, was_alive: bool| Change {
        address: format!("node.{g}/{name}"),
        kind: "node".to_string(),
        name: name.to_string(),
        action,
        reason,
        summary: Some(match (action, template) {
            (Action::Update, _) => "finish its life cycle, then ready".to_string(),
            (Action::Create | Action::Replace, Some(t)) => format!("{} from template {}", t.provider.as_str(), t.name),
            (Action::Create | Action::Replace, None) => "no template".to_string(),
            _ => spec
                .scale_in
                .as_ref()
                .and_then(|s| s.drain.as_ref())
                .map_or_else(|| "terminate".to_string(), |d| format!("drain with {d}, then terminate")),
        }),
        diff: Vec::new(),
        before: None,
        after: None,
        node: Some(NodeChange {
            group: g.clone(),
            index,
            template: (!removed).then(|| spec.template.clone()),
            provider: provider.clone(),
            was_alive,
        }),
    };

    // Scale in: pick the nodes to remove; unfinished ones go first.
    let mut removals = Vec::new();
    if alive.len() as u32 > target {
        let excess = alive.len() - target as usize;
        let pick = spec.scale_in.as_ref().and_then(|s| s.pick).unwrap_or(Pick::Newest);
        let mut order: Vec<usize> = (0..alive.len()).collect();
        let newest = |i: usize| (!alive[i].1, std::cmp::Reverse(alive[i].0.created_at), std::cmp::Reverse(alive[i].0.index));
        match pick {
            Pick::Oldest => order.sort_by_key(|&i| (!alive[i].1, alive[i].0.created_at, alive[i].0.index)),
            Pick::Newest => order.sort_by_key(|&i| newest(i)),
            Pick::LeastBusy => {
                // Lowest last value first; unknown values last; ties newest first.
                let values = input.busy.get(g);
                let busy = |i: usize| values.and_then(|v| v.get(&alive[i].0.name)).copied().unwrap_or(f64::INFINITY);
                order.sort_by(|&a, &b| {
                    (!alive[a].1).cmp(&!alive[b].1).then(busy(a).total_cmp(&busy(b))).then(newest(a).cmp(&newest(b)))
                })
            }
        }
        let chosen: BTreeSet<usize> = order.into_iter().take(excess).collect();
        let reason = if removed {
            "group removed from config".to_string()
        } else if input.operation == Operation::Destroy {
            "destroy".to_string()
        } else {
            let pick = match pick {
                Pick::Newest => "newest",
                Pick::Oldest => "oldest",
                Pick::LeastBusy => "least busy",
            };
            format!("scale in to {target}, {pick} first")
        };
        let mut keep = Vec::new();
        for (i, (n, stuck)) in alive.into_iter().enumerate() {
            if !chosen.contains(&i) {
                keep.push((n, stuck));
            } else if stuck {
                // Never capacity: terminated without a drain.
                let why = format!("{reason}; it is {}, not ready", n.status.as_str());
                removals.push(node_change(&n.name, n.index, Action::Delete, Some(why), false));
            } else {
                removals.push(node_change(&n.name, n.index, Action::Delete, Some(reason.clone()), true));
            }
        }
        alive = keep;
    }
    // Unfinished life cycles: resumed where they stopped, or replaced when
    // their last attempt failed.
    for (n, stuck) in &alive {
        if !stuck || template.is_none() {
            continue;
        }
        match lifecycle_error(n) {
            Some(e) => {
                let why = format!("stuck `{}`: {e}", n.status.as_str());
                out.changes.push(node_change(&n.name, n.index, Action::Replace, Some(why), false));
            }
            None => {
                let why = format!("resume: it is `{}`, not ready", n.status.as_str());
                out.changes.push(node_change(&n.name, n.index, Action::Update, Some(why), false));
            }
        }
    }

    // Scale out / repair: fill dead slots first, then the lowest free numbers.
    let mut need = target.saturating_sub(alive.len() as u32);
    let mut used: BTreeSet<u32> = alive.iter().map(|(n, _)| n.index).collect();
    for (rec, s) in &dead {
        if need > 0 && template.is_some() {
            need -= 1;
            used.insert(rec.index);
            let (action, reason) = match s {
                Standing::Died => (Action::Replace, "process died outside scaler".to_string()),
                _ => (Action::Create, "launch did not finish".to_string()),
            };
            out.changes.push(node_change(&rec.name, rec.index, action, Some(reason), false));
        } else {
            out.changes.push(node_change(&rec.name, rec.index, Action::Delete, Some(REASON_GONE.to_string()), false));
        }
    }
    for (rec, running) in &terminating {
        let reason = if *running { "finish interrupted termination" } else { REASON_GONE };
        out.changes.push(node_change(&rec.name, rec.index, Action::Delete, Some(reason.to_string()), *running));
        used.insert(rec.index);
    }
    if need > 0 && template.is_none() {
        out.errors.push(format!("group `{g}`: template `{}` not found", spec.template));
        need = 0;
    }
    let limit = max_index(spec);
    let mut next = 1u32;
    while need > 0 {
        while used.contains(&next) {
            next += 1;
        }
        if next > limit {
            out.errors.push(format!(
                "group `{g}` is at its limit: no free node number left (naming allows {limit}); nothing launched"
            ));
            break;
        }
        used.insert(next);
        out.changes.push(node_change(&node_name(spec, next), next, Action::Create, Some(format!("scale out to {target}")), false));
        need -= 1;
    }
    out.changes.extend(removals);
    out.group_plans.push(group_plan(spec, target, nodes_before, removed));
}

fn object_change(kind: Kind, name: &str, action: Action, before: Option<Value>, after: Option<Value>) -> Change {
    let summary = after.as_ref().or(before.as_ref()).and_then(|v| describe(kind, v));
    Change {
        address: format!("{}.{name}", kind.slug()),
        kind: kind.slug().to_string(),
        name: name.to_string(),
        action,
        reason: None,
        summary,
        diff: Vec::new(),
        before,
        after,
        node: None,
    }
}

/// A one-line description of a config object.
fn describe(kind: Kind, v: &Value) -> Option<String> {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    match kind {
        Kind::Counter => {
            let source = v.get("source").and_then(Value::as_object).and_then(|m| m.keys().next().cloned())?;
            let targets: Vec<&str> = v
                .get("targets")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let on = if targets.is_empty() { String::new() } else { format!(" on {}", targets.join(", ")) };
            let every = s("interval").map(|i| format!(", every {i}")).unwrap_or_default();
            Some(format!("{source}{on}{every}"))
        }
        Kind::Group => Some(format!(
            "template {}, {}..{}{}",
            s("template")?,
            v.get("min")?,
            v.get("max")?,
            v.get("desired").map(|d| format!(", desired {d}")).unwrap_or_default()
        )),
        Kind::NodeTemplate => s("provider").map(|p| format!("provider {p}")),
        Kind::Target => match (v.get("hosts").and_then(Value::as_array), s("group")) {
            (Some(h), _) => Some(format!("{} host(s)", h.len())),
            (None, Some(g)) => Some(format!("nodes of group {g}")),
            _ => None,
        },
        Kind::Trigger => match v.get("when") {
            Some(Value::String(w)) => Some(format!("when {w}")),
            Some(Value::Array(a)) if a.len() == 1 => a[0].as_str().map(|w| format!("when {w}")),
            Some(Value::Array(a)) => Some(format!("when all of {} conditions hold", a.len())),
            _ => None,
        },
        Kind::Playbook => v.get("steps").and_then(Value::as_array).map(|a| format!("{} step(s)", a.len())),
        Kind::Policy => v.get("rules").and_then(Value::as_array).map(|a| format!("{} rule(s)", a.len())),
        Kind::Project => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Action::*;
    use crate::store::{StateMeta, StoredObject};
    use chrono::TimeZone;

    const BASE: &str = "kind: Project\nname: p\n---\nkind: NodeTemplate\nname: t\nprovider: local\nlocal: { command: sleep 100 }\n";

    fn config(group: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("scaler.yaml"), format!("{BASE}---\n{group}")).unwrap();
        crate::config::load(dir.path()).unwrap()
    }

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn rec(name: &str, index: u32, status: NodeStatus, at: i64) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            group: "web".into(),
            index,
            provider: "local".into(),
            provider_id: Some(format!("{}", 100 + index)),
            status,
            created_at: t(at),
            template_digest: String::new(),
            address: None,
            attrs: Value::Null,
        }
    }

    fn alive(name: &str) -> ObservedNode {
        ObservedNode {
            name: name.into(),
            group: "web".into(),
            provider_id: Some("1".into()),
            health: Health::Running,
            address: Some("127.0.0.1:1".into()),
            attrs: BTreeMap::new(),
        }
    }

    /// State as if `cfg` had been applied, with these nodes and runtime desired.
    fn applied(cfg: &Config, nodes: Vec<NodeRecord>, desired: Option<u32>) -> Snapshot {
        Snapshot {
            meta: StateMeta { lineage: "l".into(), serial: 7, revision: None, config_digest: None },
            objects: cfg
                .objects()
                .into_iter()
                .map(|(k, n, spec)| StoredObject { kind: k.slug().into(), name: n, spec, serial: 1 })
                .collect(),
            nodes,
            desired: desired.map(|d| BTreeMap::from([("web".to_string(), d)])).unwrap_or_default(),
            desired_base: BTreeMap::new(),
        }
    }

    /// The providers of this build.
    fn local() -> BTreeSet<String> {
        BTreeSet::from(["local".to_string()])
    }

    fn input<'a>(cfg: &'a Config, snap: &'a Snapshot) -> DiffInput<'a> {
        DiffInput {
            config: cfg,
            snapshot: snap,
            observed: &[],
            operation: Operation::Apply,
            filters: Filters::default(),
            flags: Flags::default(),
            providers: local(),
            now: t(1000),
            busy: BTreeMap::new(),
        }
    }

    fn run(cfg: &Config, snap: &Snapshot, observed: &[ObservedNode]) -> Plan {
        diff(&DiffInput { observed, ..input(cfg, snap) })
    }

    fn summary(plan: &Plan) -> Vec<(Action, String)> {
        plan.changes.iter().map(|c| (c.action, c.address.clone())).collect()
    }

    const WEB: &str = "kind: Group\nname: web\ntemplate: t\nmin: 1\nmax: 5\ndesired: 2\n";

    #[test]
    fn empty_state_creates_objects_then_nodes() {
        let cfg = config(WEB);
        let snap = Snapshot { objects: vec![], nodes: vec![], ..applied(&cfg, vec![], None) };
        let plan = run(&cfg, &snap, &[]);
        assert_eq!(
            summary(&plan),
            vec![
                (Create, "project.p".into()),
                (Create, "nodetemplate.t".into()),
                (Create, "group.web".into()),
                (Create, "node.web/web-01".into()),
                (Create, "node.web/web-02".into()),
            ]
        );
        assert_eq!((plan.summary.add, plan.summary.change, plan.summary.destroy), (5, 0, 0));
        assert_eq!(plan.groups[0].nodes_after, 2);
        assert_eq!(plan.serial, 7);
    }

    #[test]
    fn matching_state_has_no_changes() {
        let cfg = config(WEB);
        let snap = applied(&cfg, vec![rec("web-01", 1, NodeStatus::Ready, 0), rec("web-02", 2, NodeStatus::Ready, 1)], Some(2));
        let plan = run(&cfg, &snap, &[alive("web-01"), alive("web-02")]);
        assert!(plan.changes.is_empty(), "{:?}", summary(&plan));
        assert!(plan.refresh.is_empty());
    }

    #[test]
    fn a_dead_node_is_replaced_in_its_slot() {
        let cfg = config(WEB);
        let snap = applied(&cfg, vec![rec("web-01", 1, NodeStatus::Ready, 0), rec("web-02", 2, NodeStatus::Ready, 1)], Some(2));
        let plan = run(&cfg, &snap, &[alive("web-01")]);
        assert_eq!(summary(&plan), vec![(Replace, "node.web/web-02".into())]);
        assert_eq!(plan.changes[0].reason.as_deref(), Some("process died outside scaler"));
        assert_eq!((plan.summary.add, plan.summary.destroy), (1, 1));
        assert_eq!(plan.groups[0].nodes_after, 2);
    }

    #[test]
    fn an_unfinished_launch_is_adopted_or_redone() {
        let cfg = config(WEB);
        let snap = applied(&cfg, vec![rec("web-01", 1, NodeStatus::Creating, 0), rec("web-02", 2, NodeStatus::Creating, 1)], Some(2));
        let plan = run(&cfg, &snap, &[alive("web-01")]);
        // web-01 runs (its launch finished unrecorded): recorded `running`,
        // then resumed; it is not capacity until ready.
        assert_eq!(summary(&plan), vec![(Update, "node.web/web-01".into()), (Create, "node.web/web-02".into())]);
        assert_eq!(plan.changes[0].reason.as_deref(), Some("resume: it is `running`, not ready"));
        assert_eq!(plan.changes[1].reason.as_deref(), Some("launch did not finish"));
        assert_eq!(plan.refresh.len(), 1);
        assert_eq!(plan.refresh[0].name, "web-01");
        assert_eq!(plan.refresh[0].status, NodeStatus::Running);
        assert_eq!((plan.groups[0].nodes_before, plan.groups[0].nodes_after), (0, 2));
    }

    #[test]
    fn a_node_stuck_before_ready_is_resumed_or_replaced_and_never_capacity() {
        let cfg = config(WEB);
        let mut failed = rec("web-02", 2, NodeStatus::Reachable, 1);
        failed.attrs = serde_json::json!({ LIFECYCLE_ERROR: { "stage": "provisioned", "error": "puppet exited 4" } });
        let snap = applied(&cfg, vec![rec("web-01", 1, NodeStatus::Running, 0), failed], Some(2));
        let plan = run(&cfg, &snap, &[alive("web-01"), alive("web-02")]);
        assert_eq!(summary(&plan), vec![(Update, "node.web/web-01".into()), (Replace, "node.web/web-02".into())]);
        assert_eq!(plan.changes[1].reason.as_deref(), Some("stuck `reachable`: `provisioned` failed: puppet exited 4"));
        assert_eq!((plan.groups[0].nodes_before, plan.groups[0].nodes_after), (0, 2));
        // Scale-in takes a stuck node first, without a drain.
        let snap = applied(&cfg, vec![rec("web-01", 1, NodeStatus::Ready, 0), rec("web-02", 2, NodeStatus::Provisioned, 9)], Some(1));
        let plan = run(&cfg, &snap, &[alive("web-01"), alive("web-02")]);
        assert_eq!(summary(&plan), vec![(Delete, "node.web/web-02".into())]);
        assert!(!plan.changes[0].node.as_ref().unwrap().was_alive);
        assert_eq!(plan.changes[0].reason.as_deref(), Some("scale in to 1, newest first; it is provisioned, not ready"));
    }

    #[test]
    fn an_unrecorded_running_node_is_adopted() {
        let cfg = config(WEB);
        let snap = applied(&cfg, vec![rec("web-01", 1, NodeStatus::Ready, 0)], Some(2));
        let plan = run(&cfg, &snap, &[alive("web-01"), alive("web-02")]);
        assert_eq!(summary(&plan), vec![(Update, "node.web/web-02".into())], "adopted, then its life cycle resumed");
        assert_eq!(plan.refresh.iter().map(|r| (r.name.as_str(), r.index, r.status)).collect::<Vec<_>>(), [("web-02", 2, NodeStatus::Running)]);
    }

    #[test]
    fn scale_in_picks_newest_or_oldest() {
        let nodes = vec![rec("web-01", 1, NodeStatus::Ready, 5), rec("web-02", 2, NodeStatus::Ready, 1), rec("web-03", 3, NodeStatus::Ready, 3)];
        let obs = [alive("web-01"), alive("web-02"), alive("web-03")];
        let cfg = config(WEB);
        let plan = run(&cfg, &applied(&cfg, nodes.clone(), Some(2)), &obs);
        assert_eq!(summary(&plan), vec![(Delete, "node.web/web-01".into())]);
        assert_eq!(plan.changes[0].reason.as_deref(), Some("scale in to 2, newest first"));
        let cfg = config(&format!("{WEB}scale_in: {{ pick: oldest }}\n"));
        let plan = run(&cfg, &applied(&cfg, nodes, Some(1)), &obs);
        assert_eq!(summary(&plan), vec![(Delete, "node.web/web-02".into()), (Delete, "node.web/web-03".into())]);
        assert_eq!(plan.groups[0].nodes_after, 1);
    }

    #[test]
    fn least_busy_picks_the_lowest_last_value_and_unknown_values_last() {
        let nodes = vec![rec("web-01", 1, NodeStatus::Ready, 5), rec("web-02", 2, NodeStatus::Ready, 1), rec("web-03", 3, NodeStatus::Ready, 3)];
        let obs = [alive("web-01"), alive("web-02"), alive("web-03")];
        let cfg = config(&format!("{WEB}scale_in: {{ pick: least-busy, counter: c }}\n---\nkind: Counter\nname: c\nsource: {{ push: {{}} }}\n"));
        let snap = applied(&cfg, nodes, Some(1));
        let busy = BTreeMap::from([("web".to_string(), BTreeMap::from([("web-01".to_string(), 7.0), ("web-03".to_string(), 2.5)]))]);
        let plan = diff(&DiffInput { observed: &obs, busy, ..input(&cfg, &snap) });
        // web-03 (2.5) then web-01 (7); web-02 has no value and stays.
        assert_eq!(summary(&plan), vec![(Delete, "node.web/web-01".into()), (Delete, "node.web/web-03".into())]);
        assert_eq!(plan.changes[0].reason.as_deref(), Some("scale in to 1, least busy first"));
    }

    #[test]
    fn new_nodes_take_the_lowest_free_numbers() {
        let cfg = config(WEB);
        let snap = applied(&cfg, vec![rec("web-01", 1, NodeStatus::Ready, 0), rec("web-03", 3, NodeStatus::Ready, 1)], Some(4));
        let plan = run(&cfg, &snap, &[alive("web-01"), alive("web-03")]);
        assert_eq!(summary(&plan), vec![(Create, "node.web/web-02".into()), (Create, "node.web/web-04".into())]);
    }

    #[test]
    fn runtime_desired_wins_until_git_changes_it() {
        let cfg = config(WEB);
        let nodes = vec![rec("web-01", 1, NodeStatus::Ready, 0), rec("web-02", 2, NodeStatus::Ready, 1)];
        let obs = [alive("web-01"), alive("web-02")];
        // `scaler scale web --to 3` recorded 3; config still says 2.
        let plan = run(&cfg, &applied(&cfg, nodes.clone(), Some(3)), &obs);
        assert_eq!(summary(&plan), vec![(Create, "node.web/web-03".into())]);
        // Now git says desired: 1: the config change takes over.
        let cfg2 = config(&WEB.replace("desired: 2", "desired: 1"));
        let mut snap = applied(&cfg, nodes, Some(3));
        snap.objects.retain(|o| o.kind != "group" || o.name != "web");
        snap.objects.extend(applied(&cfg, vec![], None).objects.into_iter().filter(|o| o.kind == "group"));
        let plan = run(&cfg2, &snap, &obs);
        let s = summary(&plan);
        assert_eq!(s[0], (Update, "group.web".into()));
        assert_eq!(s[1], (Delete, "node.web/web-02".into()));
        assert_eq!(plan.changes[0].diff, vec!["- desired: 2", "+ desired: 1"]);
        // Runtime values are clamped into min..max.
        let plan = run(&cfg, &applied(&cfg, vec![], Some(50)), &[]);
        assert_eq!(plan.groups[0].desired, 5);
    }

    #[test]
    fn a_group_at_its_naming_limit_refuses_to_grow() {
        let cfg = config("kind: Group\nname: web\ntemplate: t\nmin: 1\nmax: 12\ndesired: 12\nnaming: { digits: 1 }\n");
        let plan = run(&cfg, &applied(&cfg, vec![], None), &[]);
        assert_eq!(plan.changes.iter().filter(|c| c.action == Create).count(), 9);
        assert!(plan.errors.iter().any(|e| e.contains("group `web` is at its limit")), "{:?}", plan.errors);
        assert!(!plan.is_allowed());
        assert_eq!(plan.changes[0].name, "web-1");
    }

    #[test]
    fn removing_a_group_destroys_its_nodes_and_prevent_destroy_blocks_it() {
        let with = config(&format!("{WEB}prevent_destroy: true\n"));
        let nodes = vec![rec("web-01", 1, NodeStatus::Ready, 0)];
        let snap = applied(&with, nodes, Some(1));
        let without = config("kind: Target\nname: x\nhosts: [a]\n");
        let plan = run(&without, &snap, &[alive("web-01")]);
        let s = summary(&plan);
        assert!(s.contains(&(Delete, "node.web/web-01".into())) && s.contains(&(Delete, "group.web".into())), "{s:?}");
        assert!(plan.groups[0].removed);
        assert_eq!(plan.groups[0].nodes_after, 0);
        assert_eq!(plan.errors, vec!["group `web` has `prevent_destroy: true`; this plan would destroy node `web-01`"]);
    }

    #[test]
    fn a_group_whose_provider_is_missing_is_left_out_and_the_others_are_planned() {
        let ec2 = "kind: NodeTemplate\nname: e\nprovider: ec2\nec2: { region: r, image: i, instance_type: t }\n---\nkind: Group\nname: cloud\ntemplate: e\nmin: 1\nmax: 3\n";
        let cfg = config(&format!("{WEB}---\n{ec2}"));
        let snap = Snapshot { objects: vec![], nodes: vec![], ..applied(&cfg, vec![], None) };
        let plan = run(&cfg, &snap, &[]);
        let nodes: Vec<(Action, String)> = summary(&plan).into_iter().filter(|(_, a)| a.starts_with("node.")).collect();
        assert_eq!(nodes, vec![(Create, "node.web/web-01".into()), (Create, "node.web/web-02".into())]);
        assert!(summary(&plan).contains(&(Create, "group.cloud".into())));
        assert_eq!(
            plan.group_errors,
            vec![GroupError {
                group: "cloud".into(),
                message: "group `cloud`: provider `ec2` is not in this build; its nodes are left out of this plan".into()
            }]
        );
        assert!(plan.is_allowed() && !plan.is_complete());
        let cloud = plan.groups.iter().find(|g| g.name == "cloud").unwrap();
        assert_eq!((cloud.desired, cloud.create, cloud.nodes_after), (1, 0, 0));
        assert_eq!(plan.warnings.iter().map(|w| w.field.as_str()).collect::<Vec<_>>(), vec!["provider"]);

        let only_web = diff(&DiffInput { filters: Filters { targets: vec![], excludes: vec!["group.cloud".into()] }, ..input(&cfg, &snap) });
        assert!(only_web.group_errors.is_empty());
        let destroy = diff(&DiffInput { operation: Operation::Destroy, ..input(&cfg, &snap) });
        assert!(destroy.group_errors.is_empty(), "a group without nodes has nothing to destroy");
    }

    #[test]
    fn destroy_removes_every_node_but_no_objects() {
        let cfg = config(WEB);
        let snap = applied(&cfg, vec![rec("web-01", 1, NodeStatus::Ready, 0), rec("web-02", 2, NodeStatus::Ready, 1)], Some(2));
        let plan = diff(&DiffInput {
            config: &cfg,
            snapshot: &snap,
            observed: &[alive("web-01")],
            operation: Operation::Destroy,
            filters: Filters::default(),
            flags: Flags { allow_destroy_all: true },
            providers: local(),
            now: t(1000),
            busy: BTreeMap::new(),
        });
        assert_eq!(summary(&plan), vec![(Delete, "node.web/web-02".into()), (Delete, "node.web/web-01".into())]);
        assert_eq!(plan.changes[0].reason.as_deref(), Some(REASON_GONE));
        assert_eq!(plan.groups[0].destroy, 1);
    }

    #[test]
    fn updates_show_field_diffs() {
        let cfg = config(WEB);
        let snap = applied(&cfg, vec![], None);
        let cfg2 = config(&WEB.replace("max: 5", "max: 6"));
        let plan = run(&cfg2, &snap, &[]);
        let c = plan.changes.iter().find(|c| c.address == "group.web").unwrap();
        assert_eq!(c.action, Update);
        assert_eq!(c.diff, vec!["- max: 5", "+ max: 6"]);
    }

    /// A tiny deterministic generator (no dependency needed for this).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    /// Carries out a plan on in-memory state and observations, as apply does.
    fn carry_out(plan: &Plan, snap: &mut Snapshot, observed: &mut Vec<ObservedNode>) {
        for r in &plan.refresh {
            snap.nodes.retain(|n| n.name != r.name);
            snap.nodes.push(r.clone());
        }
        for g in &plan.groups {
            if g.removed {
                snap.desired.remove(&g.name);
            } else {
                snap.desired.insert(g.name.clone(), g.desired);
            }
        }
        for c in &plan.changes {
            let Some(n) = &c.node else { continue };
            if c.action == Update {
                if let Some(r) = snap.nodes.iter_mut().find(|r| r.name == c.name) {
                    r.status = NodeStatus::Ready;
                }
                continue;
            }
            snap.nodes.retain(|r| r.name != c.name);
            observed.retain(|o| o.name != c.name);
            if matches!(c.action, Create | Replace) {
                let mut r = rec(&c.name, n.index, NodeStatus::Ready, 2000 + i64::from(n.index));
                r.group = n.group.clone();
                snap.nodes.push(r);
                observed.push(alive(&c.name));
            }
        }
    }

    #[test]
    fn after_carrying_out_a_plan_the_next_plan_is_empty_and_desired_is_within_bounds() {
        let mut rng = Lcg(42);
        for case in 0..300 {
            let min = rng.next(4) as u32;
            let max = min + rng.next(5) as u32;
            let desired = min + rng.next(u64::from(max - min) + 1) as u32;
            let cfg = config(&format!("kind: Group\nname: web\ntemplate: t\nmin: {min}\nmax: {max}\ndesired: {desired}\n"));
            let runtime = (rng.next(2) == 0).then(|| rng.next(12) as u32);
            let mut nodes = Vec::new();
            let mut observed = Vec::new();
            for index in 1..=(rng.next(8) as u32) {
                if rng.next(4) == 0 {
                    continue; // a gap in the numbering
                }
                let name = format!("web-{index:02}");
                let status = match rng.next(8) {
                    0 => NodeStatus::Creating,
                    1 => NodeStatus::Terminating,
                    2 => NodeStatus::Running,
                    3 => NodeStatus::Provisioned,
                    _ => NodeStatus::Ready,
                };
                nodes.push(rec(&name, index, status, rng.next(100) as i64));
                if rng.next(4) != 0 {
                    observed.push(alive(&name));
                }
            }
            if rng.next(5) == 0 {
                observed.push(alive("web-09")); // an unrecorded survivor
            }
            let mut snap = applied(&cfg, nodes, runtime);
            let plan = run(&cfg, &snap, &observed);
            let g = &plan.groups[0];
            assert!(g.desired >= min && g.desired <= max, "case {case}: desired {} not in {min}..{max}", g.desired);
            assert!(plan.errors.is_empty(), "case {case}: {:?}", plan.errors);
            carry_out(&plan, &mut snap, &mut observed);
            let again = run(&cfg, &snap, &observed);
            assert!(again.changes.is_empty(), "case {case}: still {:?} after {:?}", summary(&again), summary(&plan));
            let live = snap.nodes.iter().filter(|n| observed.iter().any(|o| o.name == n.name)).count() as u32;
            assert_eq!(live, g.desired, "case {case}");
            let mut names: Vec<&str> = snap.nodes.iter().map(|n| n.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), snap.nodes.len(), "case {case}: a slot recorded twice");
        }
    }
}
