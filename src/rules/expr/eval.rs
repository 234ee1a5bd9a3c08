//! Evaluation: a compiled condition against the [`Window`] at an instant.
//! Plainly written calls run natively; any other operand runs in minijinja,
//! whose trigger functions check their arguments with the same
//! [`parse_call`] and read the window through the same [`run_call`].

use std::sync::{Arc, LazyLock};

use minijinja::value::{Kwargs, Object, Value as JValue};
use minijinja::{Environment, Error, ErrorKind, State};

use super::calls::{parse_call, Args, Call, Fun, KwVal, Parsed, TRIGGER_FUNCTIONS};
use super::parse::Node;
use super::{Condition, Operand, Scope, Term};
use crate::rules::condition::{combine, compare, group_outcome, Outcome, Value};
use crate::rules::window::{CounterData, HostSet, Point, SeriesData, Window};
use crate::store::Agg;

/// Prefix of a function error that means "no data" (not "error").
const NODATA: &str = "\u{1}nodata:";

pub(super) static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = crate::template::expr_env();
    for name in TRIGGER_FUNCTIONS {
        env.add_function(name, move |state: &State, counter: JValue, kwargs: Kwargs| jinja_fn(state, name, &counter, &kwargs));
    }
    env
});

#[derive(Debug)]
struct Ctx {
    now_ms: i64,
    window: Arc<Window>,
    min_coverage_pct: f64,
}

impl Object for Ctx {
    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        let key = key.as_str()?;
        if key == "__scaler" {
            return Some(JValue::from_dyn_object(self.clone()));
        }
        self.window.has_counter(key).then(|| JValue::from(key))
    }
}

impl Condition {
    /// Evaluates at `scope.now_ms`; `terms` receives every non-literal
    /// operand's value.
    pub fn eval(&self, scope: Scope<'_>, terms: &mut Vec<Term>) -> Outcome {
        eval_node(&self.node, &Ev::new(scope), terms)
    }

    /// Checks arguments against a window that declares `counters` and
    /// `groups` but has no samples: unknown keyword arguments, bad
    /// durations, unknown groups and non-counter names are errors, missing
    /// data is not.
    /// `window` comes from [`check_window`].
    pub fn check(&self, window: &Arc<Window>) -> Result<(), String> {
        let mut terms = Vec::new();
        match self.eval(Scope { now_ms: 0, window, min_coverage_pct: 100.0 }, &mut terms) {
            Outcome::Error(e) => Err(e),
            _ => Ok(()),
        }
    }
}

impl Operand {
    /// Like [`Condition::check`], for an operand.
    pub fn check(&self, window: &Arc<Window>) -> Result<(), String> {
        match self.number(Scope { now_ms: 0, window, min_coverage_pct: 100.0 }) {
            Err(Outcome::Error(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// The operand's number at `scope`, or why there is none.
    pub fn number(&self, scope: Scope<'_>) -> Result<f64, Outcome> {
        let mut terms = Vec::new();
        number(self, &Ev::new(scope), &mut terms)
    }
}

/// A window for [`Condition::check`]: the counters and groups exist, with
/// no samples and no hosts.
pub fn check_window<'a>(counters: impl IntoIterator<Item = &'a str>, groups: impl IntoIterator<Item = &'a str>) -> Arc<Window> {
    let mut w = Window::new();
    for c in counters {
        w.declare(c, Some(1));
    }
    for g in groups {
        w.groups.insert((*g).to_string(), HostSet::default());
    }
    Arc::new(w)
}

/// One evaluation: the scope, and the minijinja context, made only when an
/// operand needs minijinja.
struct Ev<'a> {
    scope: Scope<'a>,
    jinja: std::cell::OnceCell<JValue>,
}

impl<'a> Ev<'a> {
    fn new(scope: Scope<'a>) -> Ev<'a> {
        Ev { scope, jinja: std::cell::OnceCell::new() }
    }

    fn jinja(&self) -> JValue {
        self.jinja
            .get_or_init(|| {
                let s = self.scope;
                JValue::from_object(Ctx { now_ms: s.now_ms, window: s.window.clone(), min_coverage_pct: s.min_coverage_pct })
            })
            .clone()
    }

    fn env(&self) -> Env<'a> {
        Env { now_ms: self.scope.now_ms, window: self.scope.window.as_ref(), min_coverage_pct: self.scope.min_coverage_pct }
    }
}

/// An operand's value: a number, a boolean, or what minijinja gave.
enum OpValue {
    Num(f64),
    Bool(bool),
    Other(JValue),
}

fn operand_value(op: &Operand, ev: &Ev<'_>) -> Result<OpValue, Outcome> {
    if let Some(native) = &op.native {
        let parsed = native.as_ref().map_err(|e| Outcome::Error(e.clone()))?;
        return match run_call(parsed, &ev.env()) {
            Ok(CallOut::Num(n)) => Ok(OpValue::Num(n)),
            Ok(CallOut::Bool(b)) => Ok(OpValue::Bool(b)),
            Err(FnErr::NoData(r)) => Err(Outcome::NoData(r)),
            Err(FnErr::Error(r)) => Err(Outcome::Error(r)),
        };
    }
    match op.expr.eval(ev.jinja()) {
        Ok(v) => Ok(match v.kind() {
            minijinja::value::ValueKind::Bool => OpValue::Bool(v.is_true()),
            minijinja::value::ValueKind::Number => match f64::try_from(v.clone()) {
                Ok(n) => OpValue::Num(n),
                Err(_) => OpValue::Other(v),
            },
            _ => OpValue::Other(v),
        }),
        Err(e) => Err(outcome_of(&e)),
    }
}

fn eval_node(node: &Node, ctx: &Ev<'_>, terms: &mut Vec<Term>) -> Outcome {
    match node {
        Node::And(list) => {
            let outs: Vec<Outcome> = list.iter().map(|n| eval_node(n, ctx, terms)).collect();
            combine(&outs)
        }
        Node::Or(list) => {
            let outs: Vec<Outcome> = list.iter().map(|n| eval_node(n, ctx, terms)).collect();
            let bad: Vec<Outcome> = outs.iter().filter(|o| !matches!(o, Outcome::True | Outcome::False)).cloned().collect();
            if !bad.is_empty() {
                return combine(&bad);
            }
            if outs.contains(&Outcome::True) {
                Outcome::True
            } else {
                Outcome::False
            }
        }
        Node::Not(inner) => match eval_node(inner, ctx, terms) {
            Outcome::True => Outcome::False,
            Outcome::False => Outcome::True,
            other => other,
        },
        Node::Cmp(l, op, r) => {
            let lv = number(l, ctx, terms);
            let rv = number(r, ctx, terms);
            match (lv, rv) {
                (Ok(a), Ok(b)) => compare(*op, &Value::Number(a), b),
                (Err(a), Err(b)) => combine(&[a, b]),
                (Err(o), _) | (_, Err(o)) => o,
            }
        }
        Node::Bool(operand) => {
            let not_a_condition = |what: String| {
                Outcome::Error(format!("`{}` gives {what}, not a condition; compare it (e.g. `{} > 80`)", operand.text, operand.text))
            };
            match operand_value(operand, ctx) {
                Ok(OpValue::Bool(true)) => Outcome::True,
                Ok(OpValue::Bool(false)) => Outcome::False,
                Ok(OpValue::Num(n)) => not_a_condition(format!("the number {n}")),
                Ok(OpValue::Other(v)) => not_a_condition(describe_value(&v)),
                Err(o) => o,
            }
        }
    }
}

/// An operand's number; records it as a term unless it is a literal.
fn number(op: &Operand, ctx: &Ev<'_>, terms: &mut Vec<Term>) -> Result<f64, Outcome> {
    if let Some(v) = op.literal {
        return Ok(v);
    }
    let result = match operand_value(op, ctx) {
        Ok(OpValue::Num(n)) if n.is_nan() => Err(Outcome::Error(format!("`{}` is NaN", op.text))),
        Ok(OpValue::Num(n)) => Ok(n),
        Ok(OpValue::Bool(b)) => Err(Outcome::Error(format!("`{}` gives the boolean {b}, which is not a number", op.text))),
        Ok(OpValue::Other(v)) => Err(Outcome::Error(format!("`{}` gives {}, which is not a number", op.text, describe_value(&v)))),
        Err(o) => Err(o),
    };
    let reason = match &result {
        Err(Outcome::NoData(r) | Outcome::Error(r)) => Some(r.clone()),
        _ => None,
    };
    terms.push(Term { expr: op.text.clone(), value: result.as_ref().ok().copied(), reason });
    result
}

fn describe_value(v: &JValue) -> String {
    match v.kind() {
        minijinja::value::ValueKind::String => format!("the text {:?}", v.as_str().unwrap_or_default()),
        minijinja::value::ValueKind::Undefined => "nothing (undefined)".into(),
        minijinja::value::ValueKind::None => "none".into(),
        k => format!("a {k}"),
    }
}

fn outcome_of(e: &Error) -> Outcome {
    match e.detail().and_then(|d| d.strip_prefix(NODATA)) {
        Some(reason) => Outcome::NoData(reason.to_string()),
        None => Outcome::Error(match e.detail() {
            Some(d) if e.kind() == ErrorKind::InvalidOperation => d.to_string(),
            _ => crate::template::describe_error(e),
        }),
    }
}

// ------------------------------------------------------------------ functions

fn nodata(reason: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("{NODATA}{reason}"))
}

fn fail(reason: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, reason)
}

fn ctx_of(state: &State) -> Result<Arc<Ctx>, Error> {
    state
        .lookup("__scaler")
        .and_then(|v| v.downcast_object::<Ctx>())
        .ok_or_else(|| fail("trigger functions only work in trigger conditions".into()))
}

fn counter_name(v: &JValue) -> Result<String, String> {
    match v.as_str() {
        Some(s) => Ok(s.to_string()),
        None => Err(format!(
            "the first argument must be a counter (a name, or a string for names with dashes), found {}",
            describe_value(v)
        )),
    }
}

impl KwVal {
    fn from_jinja(v: &JValue) -> KwVal {
        match v.kind() {
            minijinja::value::ValueKind::String => KwVal::Str(v.as_str().unwrap_or_default().to_string()),
            minijinja::value::ValueKind::Number => f64::try_from(v.clone()).map_or_else(|_| KwVal::Other(describe_value(v)), KwVal::Num),
            _ => KwVal::Other(describe_value(v)),
        }
    }
}

/// What a call reads.
#[derive(Clone, Copy)]
struct Env<'a> {
    now_ms: i64,
    window: &'a Window,
    min_coverage_pct: f64,
}

/// Why a call has no value.
enum FnErr {
    NoData(String),
    Error(String),
}

/// A call's result.
enum CallOut {
    Num(f64),
    Bool(bool),
}

/// The per-host value of one series (or several series of one host).
enum HostValue {
    Value(f64),
    NoData(String),
    Error(String),
}

fn window_text(args: &Args, lookback: Option<i64>) -> String {
    match (&args.over_text, lookback) {
        (Some(t), _) => format!("in the last {t}"),
        (None, Some(ms)) => format!("in the last {}", crate::model::Duration::from_std(std::time::Duration::from_millis(ms.max(0) as u64))),
        (None, None) => "ever".into(),
    }
}

fn host_value(f: Fun, args: &Args, data: &CounterData, series: &[&SeriesData], now_ms: i64) -> HostValue {
    let span = match (args.over_ms, data.lookback_ms) {
        (Some(ms), _) | (None, Some(ms)) => Some(ms),
        (None, None) => None,
    };
    let from = span.map_or(i64::MIN, |ms| now_ms.saturating_sub(ms));
    let what = || {
        let host = series.first().map(|s| s.key.host.as_str()).unwrap_or("?");
        format!("{}{{host=\"{host}\"}}", args.counter)
    };
    // One series (the common case): aggregate in place, no copies.
    if let [one] = series {
        let pts = one.between(from, now_ms);
        if let Some((_, Point::Error(e))) = pts.last() {
            return HostValue::Error(format!("{}: {e}", what()));
        }
        let mut values = pts.iter().filter_map(|(ts, p)| match p {
            Point::Value(v) => Some((*ts, *v)),
            Point::Error(_) => None,
        });
        let v = match f {
            Fun::Last => values.next_back().map(|p| p.1),
            Fun::Agg(agg) => aggregate_iter(agg, values),
        };
        return match v {
            Some(v) => HostValue::Value(v),
            None if pts.iter().any(|p| matches!(p.1, Point::Value(_))) => {
                HostValue::NoData(format!("rate of {} needs two samples {}", what(), window_text(args, data.lookback_ms)))
            }
            None => HostValue::NoData(format!("no sample of {} {}", what(), window_text(args, data.lookback_ms))),
        };
    }
    let mut values: Vec<(i64, f64)> = Vec::new();
    let mut newest: Option<(i64, &Point)> = None;
    for s in series {
        let pts = s.between(from, now_ms);
        for (ts, p) in pts {
            if let Point::Value(v) = p {
                values.push((*ts, *v));
            }
        }
        if let Some((ts, p)) = pts.last() {
            if newest.is_none_or(|(t, _)| *ts > t) {
                newest = Some((*ts, p));
            }
        }
    }
    if let Some((_, Point::Error(e))) = newest {
        return HostValue::Error(format!("{}: {e}", what()));
    }
    if values.is_empty() {
        return HostValue::NoData(format!("no sample of {} {}", what(), window_text(args, data.lookback_ms)));
    }
    values.sort_by_key(|p| p.0);
    let v = match f {
        Fun::Last => values.last().map(|p| p.1),
        Fun::Agg(agg) => crate::store::samples::aggregate(agg, &values),
    };
    match v {
        Some(v) => HostValue::Value(v),
        None => HostValue::NoData(format!("rate of {} needs two samples {}", what(), window_text(args, data.lookback_ms))),
    }
}

/// [`crate::store::samples::aggregate`] over an iterator of time-sorted
/// points, without collecting them.
fn aggregate_iter(agg: Agg, pts: impl Iterator<Item = (i64, f64)>) -> Option<f64> {
    let mut n = 0usize;
    let (mut sum, mut min, mut max) = (0.0f64, f64::INFINITY, f64::NEG_INFINITY);
    let (mut first, mut prev, mut increase) = (None::<(i64, f64)>, None::<(i64, f64)>, 0.0f64);
    for (ts, v) in pts {
        n += 1;
        sum += v;
        min = min.min(v);
        max = max.max(v);
        if let Some((_, pv)) = prev {
            let d = v - pv;
            increase += if d >= 0.0 { d } else { v };
        }
        first.get_or_insert((ts, v));
        prev = Some((ts, v));
    }
    if n == 0 {
        return None;
    }
    Some(match agg {
        Agg::Avg => sum / n as f64,
        Agg::Min => min,
        Agg::Max => max,
        Agg::Count => n as f64,
        Agg::Sum => sum,
        Agg::Rate => {
            let (f, l) = (first?, prev?);
            if l.0 <= f.0 {
                return None;
            }
            increase * 1000.0 / (l.0 - f.0) as f64
        }
    })
}

/// The selected series grouped by member (host), each member's value, and
/// the number of members expected.
/// Each member's host and value, and the number of members expected.
type Members<'w> = (Vec<(&'w str, HostValue)>, usize);

fn per_member<'w>(f: Fun, args: &Args, env: &Env<'w>) -> Result<Members<'w>, FnErr> {
    let data = env
        .window
        .counter(&args.counter)
        .ok_or_else(|| FnErr::Error(format!("`{}` is not a counter", args.counter)))?;
    let value = |list: &[&SeriesData]| host_value(f, args, data, list, env.now_ms);
    if let Some(g) = &args.group {
        let set = env
            .window
            .groups
            .get(g)
            .ok_or_else(|| FnErr::Error(format!("no target or group `{g}`")))?;
        let mut by_member: Vec<Vec<&SeriesData>> = vec![Vec::new(); set.members];
        for (alias, i) in &set.alias {
            for s in data.host_series(alias) {
                if !by_member[*i].iter().any(|x| std::ptr::eq(*x, s)) {
                    by_member[*i].push(s);
                }
            }
        }
        let values = by_member
            .iter()
            .map(|list| match list.first() {
                None => ("", HostValue::NoData(format!("no series of {} for a host of `{g}`", args.counter))),
                Some(first) => (first.key.host.as_str(), value(list)),
            })
            .collect();
        return Ok((values, set.members));
    }
    if let Some(h) = &args.host {
        let list: Vec<&SeriesData> = data.host_series(h).collect();
        if list.is_empty() {
            return Ok((Vec::new(), 0));
        }
        return Ok((vec![(list[0].key.host.as_str(), value(&list))], 1));
    }
    let values: Vec<(&str, HostValue)> = data
        .hosts()
        .map(|(host, _)| {
            let list: Vec<&SeriesData> = data.host_series(host).collect();
            (host, value(&list))
        })
        .collect();
    let n = values.len();
    Ok((values, n))
}

fn run_call(p: &Parsed, env: &Env<'_>) -> Result<CallOut, FnErr> {
    let args = &p.args;
    match p.call {
        Call::Series(f) => series_value(f, args, env).map(CallOut::Num),
        Call::Group(mode, f, op, limit) => {
            let (values, expected) = per_member(f, args, env)?;
            let mut per_host: Vec<(String, Outcome)> = values
                .into_iter()
                .map(|(h, v)| {
                    let o = match v {
                        HostValue::Value(x) => compare(op, &Value::Number(x), limit),
                        HostValue::NoData(r) => Outcome::NoData(r),
                        HostValue::Error(r) => Outcome::Error(r),
                    };
                    (h.to_string(), o)
                })
                .collect();
            while per_host.len() < expected {
                per_host.push((String::new(), Outcome::NoData("no series".into())));
            }
            match group_outcome(&per_host, mode, env.min_coverage_pct) {
                Outcome::True => Ok(CallOut::Bool(true)),
                Outcome::False => Ok(CallOut::Bool(false)),
                Outcome::NoData(r) => {
                    let first = per_host.iter().find_map(|(_, o)| match o {
                        Outcome::NoData(r) | Outcome::Error(r) => Some(r.clone()),
                        _ => None,
                    });
                    Err(FnErr::NoData(format!("{r}{}", first.map(|p| format!(" ({p})")).unwrap_or_default())))
                }
                Outcome::Error(r) => Err(FnErr::Error(r)),
            }
        }
    }
}

fn series_value(f: Fun, args: &Args, env: &Env<'_>) -> Result<f64, FnErr> {
    let (values, expected) = per_member(f, args, env)?;
    if values.is_empty() || expected == 0 {
        let scope = match (&args.host, &args.group) {
            (Some(h), _) => format!(" for host {h}"),
            (_, Some(g)) => format!(" in `{g}` (it has no hosts)"),
            _ => String::new(),
        };
        return Err(FnErr::NoData(format!("no series of {}{scope}", args.counter)));
    }
    // One host (no group): its own error or missing data decides.
    if args.group.is_none() && values.len() == 1 {
        return match &values[0].1 {
            HostValue::Value(v) => Ok(*v),
            HostValue::NoData(r) => Err(FnErr::NoData(r.clone())),
            HostValue::Error(r) => Err(FnErr::Error(r.clone())),
        };
    }
    let mut ok = 0usize;
    let (mut sum, mut min, mut max) = (0.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for (_, v) in &values {
        if let HostValue::Value(x) = v {
            ok += 1;
            sum += x;
            min = min.min(*x);
            max = max.max(*x);
        }
    }
    if (ok as f64) * 100.0 < env.min_coverage_pct * (expected as f64) || ok == 0 {
        let first_problem = values.iter().find_map(|(_, v)| match v {
            HostValue::NoData(r) | HostValue::Error(r) => Some(r.clone()),
            HostValue::Value(_) => None,
        });
        return Err(FnErr::NoData(format!(
            "coverage {ok}/{expected} hosts below {}%{}",
            env.min_coverage_pct,
            first_problem.map(|p| format!(" ({p})")).unwrap_or_default()
        )));
    }
    Ok(match f {
        Fun::Last | Fun::Agg(Agg::Avg) => sum / ok as f64,
        Fun::Agg(Agg::Min) => min,
        Fun::Agg(Agg::Max) => max,
        Fun::Agg(Agg::Sum | Agg::Count | Agg::Rate) => sum,
    })
}

/// The minijinja entry point of every trigger function.
fn jinja_fn(state: &State, name: &str, counter: &JValue, kwargs: &Kwargs) -> Result<JValue, Error> {
    let mut list = Vec::new();
    for key in kwargs.args() {
        let v: JValue = kwargs.get(key)?;
        list.push((key.to_string(), KwVal::from_jinja(&v)));
    }
    kwargs.assert_all_used()?;
    let parsed = parse_call(name, counter_name(counter), &list).map_err(fail)?;
    let ctx = ctx_of(state)?;
    let env = Env { now_ms: ctx.now_ms, window: &ctx.window, min_coverage_pct: ctx.min_coverage_pct };
    match run_call(&parsed, &env) {
        Ok(CallOut::Num(n)) => Ok(JValue::from(n)),
        Ok(CallOut::Bool(b)) => Ok(JValue::from(b)),
        Err(FnErr::NoData(r)) => Err(nodata(r)),
        Err(FnErr::Error(r)) => Err(fail(r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Sample, SeriesKey};

    fn window(samples: &[(&str, &str, i64, Option<f64>)]) -> Arc<Window> {
        let mut w = Window::new();
        w.declare("cpu", Some(30_000));
        w.declare("q", None);
        w.declare("web-ok", Some(30_000));
        for (c, h, ts, v) in samples {
            let k = SeriesKey::new(c, h);
            w.insert(&match v {
                Some(v) => Sample::value(k, *ts, *v),
                None => Sample::error(k, *ts, "timed out after 5s"),
            });
        }
        w.groups.insert("web".into(), HostSet::new(vec![vec!["h1".into()], vec!["h2".into()], vec!["h3".into()]]));
        Arc::new(w)
    }

    fn eval_at(src: &str, w: &Arc<Window>, now: i64, cov: f64) -> Outcome {
        let c = Condition::compile(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        c.eval(Scope { now_ms: now, window: w, min_coverage_pct: cov }, &mut Vec::new())
    }

    #[test]
    fn functions_over_a_window() {
        let w = window(&[("cpu", "h1", 1_000, Some(10.0)), ("cpu", "h1", 11_000, Some(20.0)), ("cpu", "h1", 21_000, Some(60.0))]);
        let num = |src: &str, now: i64| Operand::compile(src).and_then(|o| o.number(Scope { now_ms: now, window: &w, min_coverage_pct: 100.0 }).map_err(|e| format!("{e:?}")));
        assert_eq!(num("last(cpu)", 21_000), Ok(60.0));
        assert_eq!(num("last(cpu)", 20_999), Ok(20.0));
        assert_eq!(num("avg(cpu, over=\"30s\")", 21_000), Ok(30.0));
        assert_eq!(num("avg(cpu, over=\"20s\")", 21_000), Ok(40.0), "window is (t-20s, t]: 1s is out");
        assert_eq!(num("min(cpu, over=\"1m\")", 21_000), Ok(10.0));
        assert_eq!(num("max(cpu, over=\"1m\")", 21_000), Ok(60.0));
        assert_eq!(num("count(cpu, over=\"1m\")", 21_000), Ok(3.0));
        assert_eq!(num("sum(cpu, over=\"1m\")", 21_000), Ok(90.0));
        assert_eq!(num("rate(cpu, over=\"1m\")", 21_000), Ok(2.5));
        assert_eq!(num("last(cpu) * 2", 21_000), Ok(120.0));
        // Lookback: 30s after the newest sample it is stale.
        assert!(matches!(eval_at("last(cpu) > 1", &w, 51_000, 100.0), Outcome::NoData(r) if r.contains("no sample of cpu")));
        assert_eq!(eval_at("last(cpu) > 1", &w, 50_999, 100.0), Outcome::True);
    }

    #[test]
    fn errors_and_missing_data_are_not_comparisons() {
        let w = window(&[("cpu", "h1", 1_000, Some(90.0)), ("cpu", "h1", 2_000, None), ("q", "push", 5, Some(3.0))]);
        assert!(matches!(eval_at("last(cpu) > 80", &w, 2_000, 100.0), Outcome::Error(r) if r.contains("timed out")));
        assert_eq!(eval_at("last(cpu) > 80", &w, 1_500, 100.0), Outcome::True);
        assert!(matches!(eval_at("last(cpu) > \"80\"", &w, 1_500, 100.0), Outcome::Error(r) if r.contains("not a number")));
        assert!(matches!(eval_at("last(cpu)", &w, 1_500, 100.0), Outcome::Error(r) if r.contains("not a condition")));
        assert!(matches!(eval_at("cpu > 1", &w, 1_500, 100.0), Outcome::Error(r) if r.contains("not a number")));
        assert!(matches!(eval_at("last(nope) > 1", &w, 1_500, 100.0), Outcome::Error(_)));
        // A pushed value holds until replaced.
        assert_eq!(eval_at("last(q) == 3", &w, 99_000_000, 100.0), Outcome::True);
        assert!(matches!(eval_at("last(\"web-ok\") > 1", &w, 1_500, 100.0), Outcome::NoData(_)));
    }

    #[test]
    fn group_scope_and_coverage() {
        let w = window(&[("cpu", "h1", 1_000, Some(90.0)), ("cpu", "h2", 1_000, Some(10.0)), ("cpu", "h9", 1_000, Some(99.0))]);
        assert!(matches!(eval_at("any(cpu, gt=80, group=\"web\")", &w, 1_000, 100.0), Outcome::NoData(r) if r.contains("coverage 2/3")));
        assert_eq!(eval_at("any(cpu, gt=80, group=\"web\")", &w, 1_000, 66.0), Outcome::True);
        assert_eq!(eval_at("all(cpu, gt=80, group=\"web\")", &w, 1_000, 66.0), Outcome::False);
        assert_eq!(eval_at("avg(cpu, group=\"web\") == 50", &w, 1_000, 60.0), Outcome::True);
        assert_eq!(eval_at("max(cpu, group=\"web\") == 90", &w, 1_000, 60.0), Outcome::True);
        assert!(matches!(eval_at("avg(cpu, group=\"web\") > 1", &w, 1_000, 100.0), Outcome::NoData(_)));
        assert_eq!(eval_at("last(cpu, host=\"h9\") == 99", &w, 1_000, 100.0), Outcome::True);
        assert!(matches!(eval_at("last(cpu, group=\"db\") > 1", &w, 1_000, 100.0), Outcome::Error(r) if r.contains("no target or group `db`")));
    }
}
