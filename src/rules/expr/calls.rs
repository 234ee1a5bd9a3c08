//! The call catalogue: the trigger function names, their keyword
//! arguments and how they are checked (the same rules whether a call is
//! compiled natively or runs inside minijinja), and the `over` durations
//! calls read.

use super::parse::{matching, skip_string};
use crate::model::Duration;
use crate::rules::condition::{GroupMode, Op};
use crate::store::Agg;

/// What a series function computes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Fun {
    Last,
    Agg(Agg),
}

/// A keyword argument's value.
#[derive(Debug, Clone)]
pub(super) enum KwVal {
    Str(String),
    Num(f64),
    Other(String),
}

/// What a function call computes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Call {
    /// `last`, `avg`... : a number.
    Series(Fun),
    /// `any`/`all`: per host `agg` compared, then any/all.
    Group(GroupMode, Fun, Op, f64),
}

/// A function call with its arguments checked: compiled once for calls
/// written plainly, or per evaluation inside larger minijinja expressions.
#[derive(Debug, Clone)]
pub(super) struct Parsed {
    pub(super) call: Call,
    pub(super) args: Args,
}

/// Parsed scope arguments.
#[derive(Debug, Clone)]
pub(super) struct Args {
    pub(super) counter: String,
    pub(super) over_ms: Option<i64>,
    pub(super) over_text: Option<String>,
    pub(super) host: Option<String>,
    pub(super) group: Option<String>,
}

pub(super) fn fun_named(name: &str) -> Option<Fun> {
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
pub(super) fn parse_call(name: &str, counter: Result<String, String>, kwargs: &[(String, KwVal)]) -> Result<Parsed, String> {
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
                let ms = millis(&d);
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

/// Compiles a plainly written call (`avg(cpu, over="2m", host="h")`)
/// without minijinja; `None` when the text is anything else.
pub(super) fn native_call(text: &str) -> Option<Result<Parsed, String>> {
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

/// The `over` window (ms) of every trigger function call in an operand,
/// nested calls included; strings are skipped, so a duration in a string
/// (`host="over='9h'"`) is not a window. A call whose arguments are all
/// literals counts only when it compiles; inside other calls, only a
/// literal `over` counts.
pub(super) fn overs_in(text: &str) -> Vec<i64> {
    let b = text.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' || b[i] == b'\'' {
            i = skip_string(b, i).unwrap_or(b.len());
            continue;
        }
        if !(b[i].is_ascii_alphabetic() || b[i] == b'_') || (i > 0 && ident(b[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && ident(b[i]) {
            i += 1;
        }
        let open = i + text[i..].len() - text[i..].trim_start().len();
        // `x.max(...)` is a method and `x | max(...)` a filter, not a trigger function.
        let method = matches!(text[..start].trim_end().chars().last(), Some('.' | '|'));
        if b.get(open) != Some(&b'(') || method || !TRIGGER_FUNCTIONS.contains(&&text[start..i]) {
            continue;
        }
        let Ok(end) = matching(b, open) else { break };
        match native_call(&text[start..end]) {
            Some(Ok(parsed)) => out.extend(parsed.args.over_ms),
            Some(Err(_)) => {}
            None => out.extend(literal_over(&text[open + 1..end - 1])),
        }
        // Scan the arguments too: they may hold calls.
        i = open + 1;
    }
    out
}

/// A literal `over="..."` among a call's arguments (ms).
fn literal_over(args: &str) -> Option<i64> {
    let b = args.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let mut over = None;
    while i <= b.len() {
        match b.get(i) {
            Some(b'"' | b'\'') => i = skip_string(b, i).ok()?,
            Some(b'(' | b'[' | b'{') => i = matching(b, i).ok()?,
            Some(b',') | None => {
                let arg = args[start..i].split_once('=').filter(|(k, _)| k.trim() == "over");
                if let Some(d) = arg.and_then(|(_, v)| unquote(v.trim())).and_then(|t| Duration::parse(&t).ok()) {
                    over = Some(millis(&d)).filter(|ms| *ms > 0);
                }
                i += 1;
                start = i;
            }
            Some(_) => i += 1,
        }
    }
    over
}

fn millis(d: &Duration) -> i64 {
    i64::try_from(d.get().as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::super::{check_window, Condition, Operand};

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

    fn lookback(src: &str) -> i64 {
        Condition::compile(src).map(|c| c.lookback_ms()).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    #[test]
    fn lookback_is_the_longest_over_of_any_call() {
        assert_eq!(lookback("last(cpu) > 80"), 0, "no over");
        assert_eq!(lookback("1 > 0"), 0, "no calls");
        assert_eq!(lookback("avg(cpu, over=\"2m\") > 80"), 120_000);
        assert_eq!(lookback("avg(cpu, over='90s') > 80"), 90_000, "single quotes");
        // Several calls: the longest wins, wherever it sits in the boolean tree.
        assert_eq!(lookback("avg(cpu, over=\"2m\") > 80 and not (max(q, over=\"10m\") > 1 or rate(cpu, over=\"1m\") > 2)"), 600_000);
        // Calls inside arithmetic, lists and filters, on either side of a comparison.
        assert_eq!(lookback("(avg(cpu, over=\"2m\") + max(cpu, over=\"5m\")) / 2 > 50"), 300_000);
        assert_eq!(lookback("last(q) < [sum(cpu, over=\"3m\"), 1] | max"), 180_000);
        // A call nested in another call's arguments.
        assert_eq!(lookback("any(cpu, gt=avg(q, over=\"15m\"), over=\"1m\", group=\"web\")"), 900_000);
        assert_eq!(lookback("any(cpu, gt=last(q), over=\"20m\", group=\"web\")"), 1_200_000);
        // A group scope, a host and a counter written as a string.
        assert_eq!(lookback("all(cpu, le=20, agg=\"avg\", over=\"4m\", group=\"web\")"), 240_000);
        assert_eq!(lookback("last(\"web-ok\", host=\"h1\") != 1"), 0);
    }

    #[test]
    fn a_duration_in_a_string_is_not_a_lookback() {
        // The label value and the string literal hold `over="..."` text; no call reads it.
        assert_eq!(lookback("last(cpu, host=\"over='9h'\") > 1"), 0);
        assert_eq!(lookback("avg(cpu, over=\"1m\", group=\"over='9h'\") > 1"), 60_000);
        assert_eq!(lookback("last(cpu) > 1 and \"avg(cpu, over='9h')\" != \"\""), 0);
        assert_eq!(lookback("last(\"avg(x, over='9h')\") > 1"), 0);
        // `over` given to what is not a trigger function: a filter, a method, another function.
        assert_eq!(lookback("[1] | max(over=\"9h\") > 1"), 0);
        assert_eq!(lookback("cpu.max(over=\"9h\") > 1"), 0);
        assert_eq!(lookback("range(over=\"9h\") | length > 1"), 0);
        // A bad or zero `over` reads nothing (the condition is an error when checked).
        assert_eq!(lookback("avg(cpu, over=\"2 minutes\") > 1"), 0);
        assert_eq!(lookback("avg(cpu, over=\"0s\") > 1"), 0);
    }

    #[test]
    fn an_operand_has_a_lookback_too() {
        let op = |s: &str| Operand::compile(s).map(|o| o.lookback_ms()).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(op("avg(cpu, over=\"3m\") * 2"), 180_000);
        assert_eq!(op("max(cpu, over=\"1h\", host=\"a\")"), 3_600_000);
        assert_eq!(op("42"), 0);
    }
}
