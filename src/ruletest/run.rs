//! Running one case on a virtual clock: the window is built as the daemon
//! builds it, inputs with `ts <= now` are inserted before each evaluation,
//! and every fire and the asked-for states are collected.
//!
//! Owns: [`window_for`], [`lookback_ms`], [`action_summary`], [`run_case`].
//! Must not depend on: the store's backends, the CLI, IO.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;

use super::spec::{Case, Problem, Pushed};
use super::series::Item;
use crate::config::Config;
use crate::fleet::{Fleet, FleetError};
use crate::model::Action;
use crate::rules::engine::state_word;
use crate::rules::{Engine, Point, Record, StateKind, Term, Window};
use crate::store::SeriesKey;

/// Most evaluations one case may run (a typo like `evaluation_interval: 1ms`
/// over a day must not hang).
const MAX_EVALUATIONS: i64 = 1_000_000;

/// How far back `last()` looks for a counter, as the daemon declares it:
/// 3 x its interval (the counter's, else the project default, else 10s);
/// `None` (a value holds until replaced) for `push`, `alertmanager` and
/// `trap` sources.
pub fn lookback_ms(config: &Config, counter: &str) -> Option<i64> {
    config.counters.get(counter).and_then(|c| crate::monitor::lookback_ms(config, &c.spec))
}

/// The window the daemon starts from: every counter declared (see
/// [`lookback_ms`]), and every Target and Group name mapped to its members
/// as the fleet gives them, with no recorded nodes. `hosts` gives members
/// by name; a Target of a group defaults to that group's members, a Target
/// with static `hosts` to them; anything else has no members.
pub fn window_for(config: &Config, hosts: &BTreeMap<String, Vec<String>>) -> Result<Window, FleetError> {
    let mut w = Window::with_counters(crate::monitor::lookbacks(config));
    let mut sets = Fleet::new(config, &[]).host_sets()?;
    let given = |name: &str| hosts.get(name).map(|list| list.iter().map(|h| vec![h.clone()]).collect::<Vec<_>>());
    for (name, t) in &config.targets {
        if let (None, Some(members)) = (&t.spec.hosts, t.spec.group.as_deref().and_then(given)) {
            sets.insert(name.clone(), members);
        }
    }
    for (name, members) in sets.iter_mut() {
        if let Some(m) = given(name) {
            *members = m;
        }
    }
    w.set_hosts(sets);
    Ok(w)
}

/// One line per action, for people and for `actions:` in test files:
/// `scale GROUP by N`, `scale GROUP to N`, `scale GROUP by P%`,
/// `scale GROUP target VALUE`, `run PLAYBOOK on TARGET` (the playbook's own
/// `on` when the action gives none), `notify webhook HOST`, `notify sns TOPIC`.
pub fn action_summary(config: &Config, action: &Action) -> String {
    match action {
        Action::Scale(s) => {
            let how = match (s.by, s.to, s.percent, &s.target_value) {
                (Some(by), _, _, _) => format!("by {by}"),
                (_, Some(to), _, _) => format!("to {to}"),
                (_, _, Some(p), _) => format!("by {}%", num(p)),
                (_, _, _, Some(tv)) => format!("target {}", num(tv.target)),
                _ => "(no amount)".into(),
            };
            format!("scale {} {how}", s.group)
        }
        Action::Run(r) => {
            let on = r.on.clone().or_else(|| config.playbooks.get(&r.playbook).and_then(|p| p.spec.on.clone()));
            match on {
                Some(on) => format!("run {} on {on}", r.playbook),
                None => format!("run {}", r.playbook),
            }
        }
        Action::Notify(n) => match (&n.webhook, &n.sns) {
            (Some(w), _) => format!("notify webhook {}", url_host(&w.url)),
            (None, Some(s)) => format!("notify sns {}", s.topic_arn.rsplit(':').next().unwrap_or(&s.topic_arn)),
            (None, None) => "notify".into(),
        },
    }
}

/// `12`, `12.5`: no trailing `.0`.
fn num(v: f64) -> String {
    format!("{v}")
}

/// The `host[:port]` of a URL (its whole text when it has none).
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.rsplit_once('@').map_or(authority, |(_, h)| h)
}

/// A fire that happened in a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GotFire {
    /// The trigger.
    pub trigger: String,
    /// The fire instant (ms from t0).
    pub at_ms: i64,
    /// Since when the condition had held (ms).
    pub pending_since_ms: i64,
    /// The actions' one-line summaries.
    pub actions: Vec<String>,
    /// The operand values at the fire.
    pub terms: Vec<Term>,
}

/// A trigger's state after the evaluation at an instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GotState {
    /// The instant (ms from t0).
    pub at_ms: i64,
    /// The trigger.
    pub trigger: String,
    /// The state's name.
    pub state: &'static str,
    /// Why, for `nodata` and `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip)]
    kind: StateKind,
}

impl GotState {
    /// The state.
    pub fn kind(&self) -> StateKind {
        self.kind
    }
}

/// What a run gave.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CaseRun {
    /// The last instant evaluated (ms).
    pub duration_ms: i64,
    /// How many evaluations ran.
    pub evaluations: usize,
    /// Every fire, in order.
    pub fires: Vec<GotFire>,
    /// The states the case asks about.
    pub states: Vec<GotState>,
}

/// One input point, timed.
struct Input {
    ts_ms: i64,
    key: SeriesKey,
    point: Point,
}

/// Checks a case's names against the config, then runs it.
pub fn run_case(config: &Config, engine: &Engine, case: &Case) -> Result<CaseRun, Vec<Problem>> {
    let problems = check_names(config, case);
    if !problems.is_empty() {
        return Err(problems);
    }
    let hosts: BTreeMap<String, Vec<String>> = case.hosts.iter().map(|h| (h.name.clone(), h.hosts.clone())).collect();
    let mut window = Arc::new(window_for(config, &hosts).map_err(|e| vec![Problem::new(case.pos, "hosts", e.to_string())])?);
    let inputs = inputs(case);
    let interval = case.interval_ms;
    let last_input = inputs.iter().map(|i| i.ts_ms).max().unwrap_or(0);
    let series_end = case.series.iter().map(|s| s.items.len() as i64 * interval).max().unwrap_or(0);
    let asked = case.states.iter().map(|s| s.at_ms).chain(case.fires.iter().map(|f| f.at_ms)).max().unwrap_or(0);
    let duration_ms = case.duration_ms.unwrap_or_else(|| series_end.max(last_input + interval).max(asked));
    let tick = case.evaluation_interval_ms;
    let mut problems = Vec::new();
    if duration_ms / tick >= MAX_EVALUATIONS {
        problems.push(Problem::new(
            case.pos,
            "duration",
            format!("{} at one evaluation every {} is more than {MAX_EVALUATIONS} evaluations", ms(duration_ms), ms(tick)),
        ));
        return Err(problems);
    }
    for s in &case.states {
        if s.at_ms % tick != 0 || s.at_ms > duration_ms {
            problems.push(Problem::new(
                s.pos,
                "expect.states",
                format!(
                    "state of `{}` at {}: not an evaluation instant (every {} from 0s to {})",
                    s.trigger,
                    ms(s.at_ms),
                    ms(tick),
                    ms(duration_ms)
                ),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let wanted: BTreeSet<(i64, &str)> = case.states.iter().map(|s| (s.at_ms, s.trigger.as_str())).collect();
    let mut run = CaseRun { duration_ms, ..CaseRun::default() };
    let mut prev: HashMap<String, Record> = HashMap::new();
    // Pushed values are judged at their receipt instants too (DESIGN §3),
    // as the daemon does: the triggers that read a passive counter are
    // evaluated at every push instant between two ticks, in order.
    let passive = engine.passive_triggers(&window);
    let receipts: BTreeSet<i64> = case.pushes.iter().map(|p| p.at_ms).filter(|t| *t % tick != 0 && *t <= duration_ms).collect();
    let mut receipts = receipts.into_iter().peekable();
    let mut next = 0;
    let mut tick_at = Some(0);
    // Instants in order: the next receipt before the next tick, else the tick.
    loop {
        let (now, at_tick) = match (receipts.peek().copied(), tick_at.filter(|t| *t <= duration_ms)) {
            (Some(r), Some(t)) if r < t => (receipts.next().unwrap_or(r), false),
            (_, Some(t)) => (t, true),
            (Some(r), None) => (receipts.next().unwrap_or(r), false),
            (None, None) => break,
        };
        if next < inputs.len() && inputs[next].ts_ms <= now {
            let w = Arc::make_mut(&mut window);
            while let Some(i) = inputs.get(next).filter(|i| i.ts_ms <= now) {
                w.insert_point(&i.key, i.ts_ms, i.point.clone());
                next += 1;
            }
        }
        let evaluations = if at_tick { engine.evaluate(now, &window, &prev) } else { engine.evaluate_where(now, &window, &prev, |t| passive.contains(&t.name)) };
        for ev in evaluations {
            let t = &engine.triggers[ev.index];
            record_fire(&mut run, config, t, &ev);
            if at_tick && wanted.contains(&(now, t.name.as_str())) {
                let s = &ev.record.state;
                run.states.push(GotState { at_ms: now, trigger: t.name.clone(), state: state_word(s.state), reason: s.reason.clone(), kind: s.state });
            }
            prev.insert(t.name.clone(), ev.record);
        }
        run.evaluations += 1;
        if at_tick {
            tick_at = now.checked_add(tick);
        }
    }
    Ok(run)
}

/// Keeps the fire of an evaluation, if it fired.
fn record_fire(run: &mut CaseRun, config: &Config, t: &crate::rules::CompiledTrigger, ev: &crate::rules::Evaluation) {
    if let Some(f) = &ev.fire {
        run.fires.push(GotFire {
            trigger: t.name.clone(),
            at_ms: f.at_ms,
            pending_since_ms: f.pending_since_ms,
            actions: t.spec.then.iter().map(|a| action_summary(config, a)).collect(),
            terms: f.terms.clone(),
        });
    }
}

/// Series items and pushes as points, sorted by time (series first at
/// equal instants, in file order).
fn inputs(case: &Case) -> Vec<Input> {
    let mut out = Vec::new();
    for s in &case.series {
        let key = SeriesKey { counter: s.name.counter.clone(), host: s.name.host.clone(), labels: s.name.labels.clone() };
        for (k, item) in s.items.iter().enumerate() {
            let ts_ms = k as i64 * case.interval_ms;
            let point = match item {
                Item::Value(v) => Point::Value(*v),
                Item::Error => Point::Error(Arc::from("collection failed (`err` in the test series)")),
                Item::Skip => continue,
            };
            out.push(Input { ts_ms, key: key.clone(), point });
        }
    }
    for p in &case.pushes {
        let key = SeriesKey { counter: p.counter.clone(), host: p.host.clone(), labels: p.labels.clone() };
        let point = match &p.value {
            Pushed::Value(v) => Point::Value(*v),
            Pushed::Text(t) => Point::Error(Arc::from(format!("pushed value {t:?} is not a number").as_str())),
        };
        out.push(Input { ts_ms: p.at_ms, key, point });
    }
    out.sort_by_key(|i| i.ts_ms);
    out
}

/// Unknown counters, triggers, targets and groups, each named.
fn check_names(config: &Config, case: &Case) -> Vec<Problem> {
    let mut problems = Vec::new();
    let counter_names = || config.counters.keys().map(String::as_str);
    for s in &case.series {
        if !config.counters.contains_key(&s.name.counter) {
            problems.push(Problem::new(s.pos, format!("series[{:?}]", s.text), unknown("counter", &s.name.counter, counter_names())));
        }
    }
    for (i, p) in case.pushes.iter().enumerate() {
        if !config.counters.contains_key(&p.counter) {
            problems.push(Problem::new(p.pos, format!("pushes[{i}].counter"), unknown("counter", &p.counter, counter_names())));
        }
    }
    let trigger_names = || config.triggers.keys().map(String::as_str);
    for (i, s) in case.states.iter().enumerate() {
        if !config.triggers.contains_key(&s.trigger) {
            problems.push(Problem::new(s.pos, format!("expect.states[{i}].trigger"), unknown("trigger", &s.trigger, trigger_names())));
        }
    }
    for (i, f) in case.fires.iter().enumerate() {
        if !config.triggers.contains_key(&f.trigger) {
            problems.push(Problem::new(f.pos, format!("expect.fires[{i}].trigger"), unknown("trigger", &f.trigger, trigger_names())));
        }
    }
    for h in &case.hosts {
        if !config.targets.contains_key(&h.name) && !config.groups.contains_key(&h.name) {
            let names = config.targets.keys().chain(config.groups.keys()).map(String::as_str);
            problems.push(Problem::new(h.pos, format!("hosts.{}", h.name), unknown("target or group", &h.name, names)));
        }
    }
    problems
}

fn unknown<'a>(what: &str, name: &str, known: impl Iterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.collect();
    let best = known
        .iter()
        .map(|k| (strsim::jaro_winkler(k, name), *k))
        .filter(|(s, _)| *s > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    let list = if known.is_empty() {
        "none".to_string()
    } else {
        known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
    };
    format!("unknown {what} `{name}`{best} (the config has: {list})")
}

pub use crate::rules::engine::human_ms as ms;
