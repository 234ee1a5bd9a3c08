//! Trigger condition expressions: `avg(cpu, over="2m") > 80 and last(q) >= 10`.
//!
//! The boolean layer (`and`, `or`, `not`, parentheses, and the comparisons
//! `> >= < <= == !=`) is parsed here, so that a comparison only ever compares
//! numbers and a missing or failed input gives `nodata`/`error` instead of a
//! comparison by type. Each operand is a minijinja expression whose functions
//! read the [`Window`]:
//!
//! | function | value |
//! |---|---|
//! | `last(c)` | newest value (within the counter's lookback) |
//! | `avg/min/max/sum/count(c, over="2m")` | over the window `(t - over, t]` |
//! | `rate(c, over="1m")` | per-second increase of a monotonic counter |
//! | `any(c, gt=80, group="web")`, `all(...)` | per host, then any/all with `min_coverage` |
//!
//! Scope: `host="h"` one host; `group="g"` the hosts of a Target or Group
//! (coverage gated by `min_coverage`); neither: every series of the counter.
//! Across hosts, `avg`/`last` take the mean of the per-host values, `min`
//! the least, `max` the greatest, `sum`/`count`/`rate` the sum.
//! A counter with a dash in its name is written as a string: `last("web-ok")`.

use std::fmt;
use std::sync::{Arc, LazyLock};

use minijinja::value::{Kwargs, Object, Value as JValue};
use minijinja::{Environment, Error, ErrorKind, Expression, State};
use serde::{Deserialize, Serialize};

use super::condition::{combine, compare, group_outcome, GroupMode, Op, Outcome, Value};
use super::window::{CounterData, HostSet, Point, SeriesData, Window};
use crate::model::Duration;
use crate::store::Agg;

/// Prefix of a function error that means "no data" (not "error").
const NODATA: &str = "\u{1}nodata:";

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = crate::template::expr_env();
    for name in TRIGGER_FUNCTIONS {
        env.add_function(name, move |state: &State, counter: JValue, kwargs: Kwargs| jinja_fn(state, name, &counter, &kwargs));
    }
    env
});

#[derive(Debug, Clone, Copy)]
enum Fun {
    Last,
    Agg(Agg),
}

/// The longest `over="..."` window an expression names (ms), so the window
/// keeps enough samples.
pub fn longest_over(src: &str) -> Option<i64> {
    static OVER: LazyLock<Option<regex::Regex>> =
        LazyLock::new(|| regex::Regex::new(r#"over\s*=\s*["']([^"']+)["']"#).ok());
    let re = OVER.as_ref()?;
    re.captures_iter(src)
        .filter_map(|c| Duration::parse(&c[1]).ok())
        .map(|d| i64::try_from(d.get().as_millis()).unwrap_or(i64::MAX))
        .max()
}

/// A compiled condition.
pub struct Condition {
    src: String,
    node: Node,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition").field("src", &self.src).finish()
    }
}

enum Node {
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    Cmp(Box<Operand>, Op, Box<Operand>),
    Bool(Box<Operand>),
}

/// One operand: a minijinja expression giving a number (or, alone, a boolean).
pub struct Operand {
    text: String,
    literal: Option<f64>,
    /// A plainly written call, compiled without minijinja (the fast path).
    native: Option<Result<Parsed, String>>,
    expr: Expression<'static, 'static>,
}

impl fmt::Debug for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// An operand's value at one evaluation, for explanations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Term {
    /// The operand as written.
    pub expr: String,
    /// Its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Why there is no value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What an evaluation reads: the window at `now_ms`, and the trigger's
/// `min_coverage` for group scope.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The evaluation instant (ms).
    pub now_ms: i64,
    /// The samples.
    pub window: &'a Arc<Window>,
    /// Coverage threshold in percent for group-scoped functions.
    pub min_coverage_pct: f64,
}

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
    /// Parses and compiles an expression.
    pub fn compile(src: &str) -> Result<Condition, String> {
        let tokens = lex(src)?;
        let mut p = Parser { tokens: &tokens, pos: 0 };
        let node = p.or()?;
        if let Some(t) = p.tokens.get(p.pos) {
            return Err(format!("unexpected {t} after a complete condition"));
        }
        Ok(Condition { src: src.to_string(), node })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.src
    }

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
    /// Compiles one operand (also used for `target_value.metric`).
    pub fn compile(text: &str) -> Result<Operand, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("expected a value".into());
        }
        let expr = ENV
            .compile_expression_owned(text.to_string())
            .map_err(|e| crate::template::describe_error(&e))?;
        Ok(Operand { text: text.to_string(), literal: text.parse::<f64>().ok(), native: native_call(text), expr })
    }

    /// The operand as written.
    pub fn source(&self) -> &str {
        &self.text
    }

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

/// A keyword argument's value.
#[derive(Debug, Clone)]
enum KwVal {
    Str(String),
    Num(f64),
    Other(String),
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

/// What a function call computes.
#[derive(Debug, Clone, Copy)]
enum Call {
    /// `last`, `avg`... : a number.
    Series(Fun),
    /// `any`/`all`: per host `agg` compared, then any/all.
    Group(GroupMode, Fun, Op, f64),
}

/// A function call with its arguments checked: compiled once for calls
/// written plainly, or per evaluation inside larger minijinja expressions.
#[derive(Debug, Clone)]
struct Parsed {
    call: Call,
    args: Args,
}

/// Parsed scope arguments.
#[derive(Debug, Clone)]
struct Args {
    counter: String,
    over_ms: Option<i64>,
    over_text: Option<String>,
    host: Option<String>,
    group: Option<String>,
}

fn fun_named(name: &str) -> Option<Fun> {
    Some(match name {
        "last" => Fun::Last,
        "avg" => Fun::Agg(Agg::Avg),
        "min" => Fun::Agg(Agg::Min),
        "max" => Fun::Agg(Agg::Max),
        "sum" => Fun::Agg(Agg::Sum),
        "count" => Fun::Agg(Agg::Count),
        "rate" => Fun::Agg(Agg::Rate),
        _ => return None,
    })
}

/// Checks a call's arguments: the same rules for both evaluation paths.
fn parse_call(name: &str, counter: Result<String, String>, kwargs: &[(String, KwVal)]) -> Result<Parsed, String> {
    let counter = counter?;
    let mode = match name {
        "any" => Some(GroupMode::Any),
        "all" => Some(GroupMode::All),
        _ => None,
    };
    let mut args = Args { counter, over_ms: None, over_text: None, host: None, group: None };
    let mut threshold = None;
    let mut agg = Fun::Last;
    let text = |key: &str, v: &KwVal| match v {
        KwVal::Str(s) => Ok(s.clone()),
        KwVal::Num(n) => Err(format!("{name}(): `{key}` must be a string, found {n}")),
        KwVal::Other(d) => Err(format!("{name}(): `{key}` must be a string, found {d}")),
    };
    for (key, v) in kwargs {
        match key.as_str() {
            "over" => {
                let t = text(key, v)?;
                let d = Duration::parse(&t).map_err(|e| format!("{name}(): `over`: {e}"))?;
                let ms = i64::try_from(d.get().as_millis()).unwrap_or(i64::MAX);
                if ms == 0 {
                    return Err(format!("{name}(): `over` must be longer than 0s"));
                }
                args.over_ms = Some(ms);
                args.over_text = Some(t);
            }
            "host" => args.host = Some(text(key, v)?),
            "group" => args.group = Some(text(key, v)?),
            "gt" | "ge" | "lt" | "le" | "eq" | "ne" if mode.is_some() => {
                if threshold.is_some() {
                    return Err(format!("{name}(): give one of gt, ge, lt, le, eq, ne"));
                }
                let op = match key.as_str() {
                    "gt" => Op::Gt,
                    "ge" => Op::Ge,
                    "lt" => Op::Lt,
                    "le" => Op::Le,
                    "eq" => Op::Eq,
                    _ => Op::Ne,
                };
                let KwVal::Num(n) = v else {
                    return Err(format!("{name}(): `{key}` must be a number"));
                };
                threshold = Some((op, *n));
            }
            "agg" if mode.is_some() => {
                let t = text(key, v)?;
                agg = fun_named(&t).ok_or_else(|| format!("{name}(): `agg` is one of last, avg, min, max, sum, count, rate; found {t:?}"))?;
            }
            other => return Err(format!("{name}(): unknown keyword argument `{other}`")),
        }
    }
    if args.host.is_some() && args.group.is_some() {
        return Err(format!("{name}(): give `host` or `group`, not both"));
    }
    let call = match (mode, fun_named(name)) {
        (Some(m), _) => {
            let (op, limit) = threshold.ok_or_else(|| format!("{name}(): give a comparison: gt=, ge=, lt=, le=, eq= or ne="))?;
            Call::Group(m, agg, op, limit)
        }
        (None, Some(f)) => Call::Series(f),
        (None, None) => return Err(format!("`{name}` is not a trigger function")),
    };
    Ok(Parsed { call, args })
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

/// Compiles a plainly written call (`avg(cpu, over="2m", host="h")`)
/// without minijinja; `None` when the text is anything else.
fn native_call(text: &str) -> Option<Result<Parsed, String>> {
    let (name, rest) = text.split_once('(')?;
    let name = name.trim();
    if !TRIGGER_FUNCTIONS.contains(&name) {
        return None;
    }
    let inner = rest.trim_end().strip_suffix(')')?;
    let mut parts = split_args(inner)?.into_iter();
    let first = parts.next()?;
    let counter = if let Some(s) = unquote(first) {
        s
    } else if is_ident(first) {
        first.to_string()
    } else {
        return None;
    };
    let mut kwargs = Vec::new();
    for p in parts {
        let (k, v) = p.split_once('=')?;
        let (k, v) = (k.trim(), v.trim());
        if !is_ident(k) {
            return None;
        }
        let val = if let Some(s) = unquote(v) {
            KwVal::Str(s)
        } else {
            KwVal::Num(v.parse::<f64>().ok().filter(|n| n.is_finite())?)
        };
        kwargs.push((k.to_string(), val));
    }
    Some(parse_call(name, Ok(counter), &kwargs))
}

/// The function names a trigger expression may use.
pub const TRIGGER_FUNCTIONS: [&str; 9] = ["last", "avg", "min", "max", "sum", "count", "rate", "any", "all"];

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_') && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// `"text"` or `'text'` without escapes.
fn unquote(s: &str) -> Option<String> {
    let q = s.chars().next()?;
    if q != '"' && q != '\'' {
        return None;
    }
    let body = s.strip_prefix(q)?.strip_suffix(q)?;
    if body.contains(q) || body.contains('\\') {
        return None;
    }
    Some(body.to_string())
}

/// Splits `a, k="x,y", n=1` at top-level commas; `None` on brackets.
fn split_args(s: &str) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | ')' | '[' | ']' | '{' | '}') => return None,
            (None, ',') => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if quote.is_some() {
        return None;
    }
    out.push(s[start..].trim());
    Some(out)
}


// ------------------------------------------------------------------ parsing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    And,
    Or,
    Not,
    Cmp(Op),
    Text(String),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Open => f.write_str("`(`"),
            Tok::Close => f.write_str("`)`"),
            Tok::And => f.write_str("`and`"),
            Tok::Or => f.write_str("`or`"),
            Tok::Not => f.write_str("`not`"),
            Tok::Cmp(op) => write!(f, "`{op}`"),
            Tok::Text(t) => write!(f, "`{t}`"),
        }
    }
}

/// Splits the top level of an expression into boolean tokens and operand
/// text. Brackets, strings and function calls stay inside operands; a
/// parenthesis opens a group only when it holds a comparison or a boolean
/// word at its own top level.
fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let b = src.as_bytes();
    let mut toks = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    let flush = |text: &mut String, toks: &mut Vec<Tok>| {
        let t = text.trim();
        if !t.is_empty() {
            toks.push(Tok::Text(t.to_string()));
        }
        text.clear();
    };
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' {
            let end = skip_string(b, i)?;
            text.push_str(&src[i..end]);
            i = end;
            continue;
        }
        if c == b'(' || c == b'[' || c == b'{' {
            let end = matching(b, i)?;
            let prev = text.trim_end().chars().last();
            let call = c != b'(' || prev.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == ')' || p == ']');
            if !call && has_boolean_top(&src[i + 1..end - 1]) {
                flush(&mut text, &mut toks);
                toks.push(Tok::Open);
                toks.extend(lex(&src[i + 1..end - 1])?);
                toks.push(Tok::Close);
            } else {
                text.push_str(&src[i..end]);
            }
            i = end;
            continue;
        }
        if c == b')' || c == b']' || c == b'}' {
            return Err(format!("unbalanced `{}` at column {}", c as char, i + 1));
        }
        if let Some((op, len)) = cmp_at(b, i) {
            flush(&mut text, &mut toks);
            toks.push(Tok::Cmp(op));
            i += len;
            continue;
        }
        if let Some((tok, len)) = word_at(src, i) {
            flush(&mut text, &mut toks);
            toks.push(tok);
            i += len;
            continue;
        }
        let ch = src[i..].chars().next().unwrap_or(' ');
        text.push(ch);
        i += ch.len_utf8();
    }
    flush(&mut text, &mut toks);
    Ok(toks)
}

fn skip_string(b: &[u8], start: usize) -> Result<usize, String> {
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            c if c == q => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(format!("unterminated string starting at column {}", start + 1))
}

fn matching(b: &[u8], start: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                i = skip_string(b, i)?;
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(format!("`{}` at column {} is never closed", b[start] as char, start + 1))
}

fn cmp_at(b: &[u8], i: usize) -> Option<(Op, usize)> {
    let two = b.get(i..i + 2);
    for (s, op) in [(">=", Op::Ge), ("<=", Op::Le), ("==", Op::Eq), ("!=", Op::Ne)] {
        if two == Some(s.as_bytes()) {
            return Some((op, 2));
        }
    }
    match b[i] {
        b'>' => Some((Op::Gt, 1)),
        b'<' => Some((Op::Lt, 1)),
        _ => None,
    }
}

fn word_at(src: &str, i: usize) -> Option<(Tok, usize)> {
    let b = src.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if i > 0 && ident(b[i - 1]) {
        return None;
    }
    for (w, tok) in [("and", Tok::And), ("or", Tok::Or), ("not", Tok::Not)] {
        if src[i..].starts_with(w) && !b.get(i + w.len()).is_some_and(|c| ident(*c) || *c == b'(') {
            return Some((tok, w.len()));
        }
    }
    None
}

fn has_boolean_top(inner: &str) -> bool {
    lex(inner).is_ok_and(|t| t.iter().any(|t| !matches!(t, Tok::Text(_))))
}

struct Parser<'a> {
    tokens: &'a [Tok],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn or(&mut self) -> Result<Node, String> {
        let mut list = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            list.push(self.and()?);
        }
        Ok(if list.len() == 1 { list.remove(0) } else { Node::Or(list) })
    }

    fn and(&mut self) -> Result<Node, String> {
        let mut list = vec![self.not()?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            list.push(self.not()?);
        }
        Ok(if list.len() == 1 { list.remove(0) } else { Node::And(list) })
    }

    fn not(&mut self) -> Result<Node, String> {
        if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            return Ok(Node::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Node, String> {
        match self.peek().cloned() {
            Some(Tok::Open) => {
                self.pos += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err("expected `)`".into());
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Tok::Text(t)) => {
                self.pos += 1;
                let left = Operand::compile(&t)?;
                if let Some(Tok::Cmp(op)) = self.peek().cloned() {
                    self.pos += 1;
                    let right = match self.peek().cloned() {
                        Some(Tok::Text(r)) => {
                            self.pos += 1;
                            Operand::compile(&r)?
                        }
                        Some(other) => return Err(format!("expected a value after `{op}`, found {other}")),
                        None => return Err(format!("expected a value after `{op}`")),
                    };
                    if let Some(Tok::Cmp(op2)) = self.peek() {
                        return Err(format!("chained comparison `{op}` ... `{op2}`: join two comparisons with `and`"));
                    }
                    return Ok(Node::Cmp(Box::new(left), op, Box::new(right)));
                }
                Ok(Node::Bool(Box::new(left)))
            }
            Some(other) => Err(format!("expected a condition, found {other}")),
            None => Err("expected a condition, found the end".into()),
        }
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
    fn parses_boolean_structure() {
        for ok in [
            "last(cpu) > 80",
            "avg(cpu, over=\"2m\") >= 80 and last(q) < 3",
            "not (last(cpu) > 80 or last(q) == 0)",
            "(avg(cpu) + max(cpu)) / 2 > 50",
            "any(cpu, gt=80, group=\"web\")",
            "last(\"web-ok\") != 1",
            "max(cpu, over='1m') <= 10 or (last(q) > 1 and last(q) < 5)",
        ] {
            assert!(Condition::compile(ok).is_ok(), "{ok}");
        }
        for (bad, msg) in [
            ("last(cpu) >", "expected a value after `>`"),
            ("1 < last(cpu) < 3", "chained comparison"),
            ("(last(cpu) > 1", "never closed"),
            ("last(cpu) > 1)", "unbalanced"),
            ("and last(cpu) > 1", "expected a condition"),
            ("last(cpu) > 1 last(q)", "unexpected"),
        ] {
            let e = Condition::compile(bad).err().unwrap_or_default();
            assert!(e.contains(msg), "{bad}: {e}");
        }
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

    #[test]
    fn check_catches_bad_arguments_not_missing_data() {
        let w = check_window(["cpu"], ["web"]);
        let check = |s: &str| Condition::compile(s).and_then(|c| c.check(&w));
        assert_eq!(check("avg(cpu, over=\"2m\", group=\"web\") > 1"), Ok(()));
        assert_eq!(check("any(cpu, gt=1, group=\"web\")"), Ok(()));
        for bad in [
            "avg(cpu, ovr=\"2m\") > 1",
            "avg(cpu, over=\"2 minutes\") > 1",
            "avg(cpu, group=\"db\") > 1",
            "any(cpu, group=\"web\")",
            "any(cpu, gt=\"x\", group=\"web\")",
            "last(cpu, host=\"a\", group=\"web\") > 1",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
