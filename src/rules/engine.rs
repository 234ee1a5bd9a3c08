//! Every trigger of a config, compiled once, evaluated at an instant:
//! `evaluate(now, window, previous records) -> records + fires`. Pure: the
//! caller owns the clock, persists the records and enqueues the fires.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::condition::{combine, Outcome};
use super::expr::{Condition, Operand, Scope, Term};
use super::state::{min_coverage_pct, step, Fire, StateKind, Timing, TriggerState};
use super::window::Window;
use crate::model::{Action, Trigger};

/// A trigger ready to evaluate.
#[derive(Debug)]
pub struct CompiledTrigger {
    /// The trigger's name.
    pub name: String,
    /// Its conditions (all must hold at the same instant).
    pub conditions: Vec<Condition>,
    /// `for` and cooldown.
    pub timing: Timing,
    /// `min_coverage` in percent.
    pub min_coverage_pct: f64,
    /// `target_value.metric` expressions of its scale actions, evaluated at a fire.
    pub metrics: Vec<Operand>,
    /// The trigger as configured (its actions become the job).
    pub spec: Trigger,
    /// The names its conditions read (counters among them): after a fire,
    /// pending restarts only on a sample of these newer than the fire.
    pub inputs: Vec<String>,
}

impl CompiledTrigger {
    /// The longest `over` any of its conditions or metrics reads (ms), 0
    /// when none does.
    pub fn lookback_ms(&self) -> i64 {
        let conditions = self.conditions.iter().map(Condition::lookback_ms);
        conditions.chain(self.metrics.iter().map(Operand::lookback_ms)).max().unwrap_or(0)
    }
}

/// What scaler keeps about a trigger between evaluations (persisted on
/// every transition).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Record {
    /// The state machine.
    pub state: TriggerState,
    /// When it was last evaluated (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated_ms: Option<i64>,
    /// The operand values at that evaluation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terms: Vec<Term>,
    /// Why it last fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fire: Option<FireWhy>,
}

/// Why a trigger fired: the values and the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FireWhy {
    /// The fire instant (ms).
    pub at_ms: i64,
    /// Since when the condition had held (ms): the window is
    /// `[pending_since_ms, at_ms]`.
    pub pending_since_ms: i64,
    /// The operand values at the fire.
    pub terms: Vec<Term>,
    /// `target_value` metrics at the fire (`null` with no value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, Option<f64>>,
}

/// One trigger's evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Index into [`Engine::triggers`].
    pub index: usize,
    /// The new record.
    pub record: Record,
    /// The fire, when it fired.
    pub fire: Option<FireWhy>,
    /// Whether the state machine changed (a transition to persist).
    pub changed: bool,
}

/// The compiled triggers of a config.
#[derive(Debug, Default)]
pub struct Engine {
    /// The triggers, in name order.
    pub triggers: Vec<CompiledTrigger>,
}

impl Engine {
    /// Compiles triggers; every error is returned (`trigger `x`: when[1]: ...`).
    pub fn compile<'a>(triggers: impl IntoIterator<Item = &'a Trigger>) -> Result<Engine, Vec<String>> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for t in triggers {
            let mut conditions = Vec::new();
            let exprs = t.when.exprs();
            let many = exprs.len() > 1;
            for (i, e) in exprs.iter().enumerate() {
                match Condition::compile(e) {
                    Ok(c) => conditions.push(c),
                    Err(err) => {
                        let at = if many { format!("when[{i}]") } else { "when".into() };
                        errors.push(format!("trigger `{}`: {at}: {err}", t.name));
                    }
                }
            }
            let mut metrics = Vec::new();
            for (i, a) in t.then.iter().enumerate() {
                if let Action::Scale(s) = a {
                    if let Some(tv) = &s.target_value {
                        match Operand::compile(&tv.metric) {
                            Ok(o) => metrics.push(o),
                            Err(err) => errors.push(format!("trigger `{}`: then[{i}].scale.target_value.metric: {err}", t.name)),
                        }
                    }
                }
            }
            let inputs: Vec<String> = conditions.iter().flat_map(Condition::names).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
            out.push(CompiledTrigger {
                name: t.name.clone(),
                inputs,
                conditions,
                timing: Timing::from_trigger(t),
                min_coverage_pct: min_coverage_pct(t),
                metrics,
                spec: t.clone(),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Engine { triggers: out })
    }

    /// Evaluates every trigger at `now_ms`. `prev` holds the records by
    /// trigger name (missing: a fresh trigger).
    pub fn evaluate(&self, now_ms: i64, window: &Arc<Window>, prev: &HashMap<String, Record>) -> Vec<Evaluation> {
        self.evaluate_where(now_ms, window, prev, |_| true)
    }

    /// Like [`Engine::evaluate`], for the triggers `which` picks (at a
    /// receipt instant: those that read a passive counter).
    pub fn evaluate_where(&self, now_ms: i64, window: &Arc<Window>, prev: &HashMap<String, Record>, which: impl Fn(&CompiledTrigger) -> bool) -> Vec<Evaluation> {
        let empty = Record::default();
        self.triggers
            .iter()
            .enumerate()
            .filter(|(_, t)| which(t))
            .map(|(index, t)| evaluate_one(index, t, now_ms, window, prev.get(&t.name).unwrap_or(&empty)))
            .collect()
    }

    /// The triggers that read a passive counter (one whose value holds until
    /// replaced: push, Alertmanager, traps): they are also evaluated at every
    /// receipt instant.
    pub fn passive_triggers(&self, window: &Window) -> std::collections::BTreeSet<String> {
        self.triggers
            .iter()
            .filter(|t| t.inputs.iter().any(|i| window.counter(i).is_some_and(|c| c.lookback_ms.is_none())))
            .map(|t| t.name.clone())
            .collect()
    }
}

/// One trigger at one instant.
pub fn evaluate_one(index: usize, t: &CompiledTrigger, now_ms: i64, window: &Arc<Window>, prev: &Record) -> Evaluation {
    let scope = Scope { now_ms, window, min_coverage_pct: t.min_coverage_pct };
    let mut terms = Vec::new();
    let outcomes: Vec<Outcome> = t.conditions.iter().map(|c| c.eval(scope, &mut terms)).collect();
    let outcome = combine(&outcomes);
    let newest = window.newest_at(&t.inputs, now_ms);
    let (state, fire) = step(now_ms, &outcome, &t.timing, &prev.state, newest);
    let changed = state != prev.state;
    let fire = fire.map(|Fire { at_ms, pending_since_ms }| FireWhy {
        at_ms,
        pending_since_ms,
        terms: terms.clone(),
        metrics: t
            .metrics
            .iter()
            .map(|m| (m.source().to_string(), m.number(scope).ok()))
            .collect(),
    });
    let record = Record {
        state,
        evaluated_ms: Some(now_ms),
        terms,
        last_fire: fire.clone().or_else(|| prev.last_fire.clone()),
    };
    Evaluation { index, record, fire, changed }
}

/// The records saved in the store, by trigger name; an unreadable one is
/// logged and left out (the trigger starts fresh).
pub fn records_from(saved: Vec<crate::store::TriggerRecord>) -> HashMap<String, Record> {
    let mut out = HashMap::new();
    for r in saved {
        match serde_json::from_value::<Record>(r.state) {
            Ok(rec) => {
                out.insert(r.name, rec);
            }
            Err(e) => tracing::warn!(trigger = %r.name, error = %e, "unreadable trigger state; starting it fresh"),
        }
    }
    out
}

/// A state for people: `pending 40s`, `cooldown`, `error: ...`.
pub fn describe(record: &Record, now_ms: i64) -> String {
    let s = &record.state;
    match s.state {
        StateKind::Pending => match s.pending_since {
            Some(p) => format!("pending {}", human_ms(now_ms.saturating_sub(p))),
            None => "pending".into(),
        },
        StateKind::NoData | StateKind::Error => {
            format!("{}: {}", state_word(s.state), s.reason.as_deref().unwrap_or("no reason recorded"))
        }
        k => state_word(k).into(),
    }
}

/// The state's name as shown and serialized.
pub fn state_word(k: StateKind) -> &'static str {
    match k {
        StateKind::Inactive => "inactive",
        StateKind::Pending => "pending",
        StateKind::Firing => "firing",
        StateKind::Cooldown => "cooldown",
        StateKind::NoData => "nodata",
        StateKind::Error => "error",
    }
}

/// A duration for people, exact to the millisecond: `0s`, `250ms`,
/// `1m30s`, `2m30s250ms`, `1h`, `-5s`.
pub fn human_ms(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    if rest < 0 {
        out.push('-');
        rest = rest.saturating_neg();
    }
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Condition as When, Duration, ScaleAction, TargetValue};
    use crate::store::{Sample, SeriesKey};

    fn trigger(name: &str, when: &str, for_: &str, cooldown: &str) -> Trigger {
        Trigger {
            name: name.into(),
            description: None,
            when: When::One(when.into()),
            for_: Duration::parse(for_).ok(),
            cooldown: Duration::parse(cooldown).ok(),
            cooldown_up: None,
            cooldown_down: None,
            min_coverage: None,
            then: vec![],
        }
    }

    /// Pushes `cpu` samples and evaluates every second; returns the fire instants.
    fn fires(t: &Trigger, samples: &[(i64, f64)], until_ms: i64) -> Vec<i64> {
        let engine = Engine::compile([t]).unwrap_or_else(|e| panic!("{e:?}"));
        let mut w = Window::new();
        w.declare("cpu", Some(30_000));
        let mut prev: HashMap<String, Record> = HashMap::new();
        let mut out = Vec::new();
        let mut i = 0;
        let mut now = 0;
        while now <= until_ms {
            while i < samples.len() && samples[i].0 <= now {
                w.insert(&Sample::value(SeriesKey::new("cpu", "h1"), samples[i].0, samples[i].1));
                i += 1;
            }
            let w2 = Arc::new(w.clone());
            for ev in engine.evaluate(now, &w2, &prev) {
                if let Some(f) = &ev.fire {
                    out.push(f.at_ms);
                }
                prev.insert(t.name.clone(), ev.record);
            }
            now += 1_000;
        }
        out
    }

    #[test]
    fn continuous_breach_fires_at_for_then_every_cooldown() {
        let t = trigger("hot", "last(cpu) > 80", "10s", "30s");
        let samples: Vec<(i64, f64)> = (0..=100).map(|s| (s * 1_000, 90.0)).collect();
        assert_eq!(fires(&t, &samples, 100_000), vec![10_000, 40_000, 70_000, 100_000]);
    }

    #[test]
    fn a_dip_restarts_the_wait() {
        let t = trigger("hot", "last(cpu) > 80", "10s", "0s");
        let mut samples: Vec<(i64, f64)> = (0..=30).map(|s| (s * 1_000, 90.0)).collect();
        samples[5].1 = 10.0;
        assert_eq!(fires(&t, &samples, 16_000), vec![16_000]);
    }

    #[test]
    fn records_why_it_fired() {
        let t = trigger("hot", "avg(cpu, over=\"5s\") >= 80", "2s", "1m");
        let engine = Engine::compile([&t]).unwrap_or_else(|e| panic!("{e:?}"));
        let mut w = Window::new();
        w.declare("cpu", Some(30_000));
        for s in 0..5 {
            w.insert(&Sample::value(SeriesKey::new("cpu", "h1"), s * 1_000, 80.0));
        }
        let w = Arc::new(w);
        let mut prev = HashMap::new();
        let a = engine.evaluate(2_000, &w, &prev).remove(0);
        assert!(a.changed);
        assert_eq!(describe(&a.record, 3_000), "pending 1s");
        prev.insert("hot".to_string(), a.record);
        let b = engine.evaluate(4_000, &w, &prev).remove(0);
        let why = b.fire.unwrap_or_else(|| panic!("no fire"));
        assert_eq!((why.at_ms, why.pending_since_ms), (4_000, 2_000));
        assert_eq!(why.terms, vec![Term { expr: "avg(cpu, over=\"5s\")".into(), value: Some(80.0), reason: None }]);
        assert_eq!(b.record.last_fire.as_ref().map(|f| f.at_ms), Some(4_000));
    }

    #[test]
    fn compile_reports_every_bad_expression() {
        let a = trigger("a", "last(cpu) >", "0s", "0s");
        let b = trigger("b", "(last(cpu) > 1", "0s", "0s");
        let errs = Engine::compile([&a, &b]).err().unwrap_or_default();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("trigger `a`: when:"), "{errs:?}");
    }

    #[test]
    fn lookback_covers_conditions_and_target_value_metrics() {
        let mut t = trigger("hot", "avg(cpu, over=\"5m\") > 80", "0s", "0s");
        t.when = When::All(vec!["avg(cpu, over=\"5m\") > 80".into(), "max(cpu, over=\"20m\") < 99".into()]);
        let engine = Engine::compile([&t]).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(engine.triggers[0].lookback_ms(), 1_200_000);
        let scale = ScaleAction {
            group: "web".into(),
            by: None,
            to: None,
            percent: None,
            target_value: Some(TargetValue { metric: "avg(cpu, over=\"1h\", group=\"web\")".into(), target: 50.0 }),
        };
        t.then = vec![Action::Scale(scale)];
        let engine = Engine::compile([&t]).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(engine.triggers[0].lookback_ms(), 3_600_000);
        let plain = Engine::compile([&trigger("q", "last(cpu) > 1", "0s", "0s")]).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(plain.triggers[0].lookback_ms(), 0);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_ms(250), "250ms");
        assert_eq!(human_ms(90_000), "1m30s");
        assert_eq!(human_ms(3_600_000), "1h");
        assert_eq!(human_ms(150_250), "2m30s250ms");
        assert_eq!(human_ms(0), "0s");
        assert_eq!(human_ms(-5_000), "-5s");
    }
}
