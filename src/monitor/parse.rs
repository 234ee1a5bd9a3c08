//! Parsers: turn a collection's output into numbers, strictly.
//!
//! A parser either yields readings (a value plus the labels that tell its
//! series apart) or an error; it never guesses a number. The whole output of a
//! `number` parser must be one number (`"42.5\n"` is 42.5, `"12\n34\n"` is
//! ambiguous, `"abc"` and empty output are errors). [`RateTracker`] turns a
//! monotonic counter into a per-second rate.
//!
//! Pure: no IO.

use std::collections::{BTreeMap, HashMap};

use regex::Regex;

use crate::model::Parse;

/// One parsed value and the labels that identify its series within the
/// counter (empty for single-valued parsers).
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Extra series labels (`field` for regex groups, `key` for JSON
    /// wildcards, `index` for SNMP walks).
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

impl Reading {
    /// A reading without labels.
    pub fn plain(value: f64) -> Reading {
        Reading { labels: BTreeMap::new(), value }
    }

    /// A reading with one label.
    pub fn labelled(key: &str, label: impl Into<String>, value: f64) -> Reading {
        Reading { labels: BTreeMap::from([(key.to_string(), label.into())]), value }
    }
}

/// Why output could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// Nothing (or only whitespace) was printed.
    #[error("empty output")]
    Empty,
    /// Text that is not a finite number.
    #[error("not a number: `{0}`")]
    NotANumber(String),
    /// Several lines where one number was expected.
    #[error("ambiguous output: {0} lines where one number was expected")]
    Ambiguous(usize),
    /// The regex did not match.
    #[error("regex `{0}` does not match the output")]
    NoMatch(String),
    /// The regex is invalid or has no named group.
    #[error("bad regex `{pattern}`: {detail}")]
    BadRegex {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        detail: String,
    },
    /// The output is not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The JSON path is malformed.
    #[error("bad JSON path `{path}`: {detail}")]
    BadPath {
        /// The path.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// Nothing at the JSON path.
    #[error("nothing at JSON path `{0}`")]
    PathNotFound(String),
    /// A JSON value that is not a number.
    #[error("`{path}` is {found}, not a number")]
    NotNumeric {
        /// Where.
        path: String,
        /// What was found (`a string "12"`, `null`...).
        found: String,
    },
    /// The key (or perfdata label) is missing.
    #[error("no `{0}` in the output")]
    MissingKey(String),
    /// The key appears more than once.
    #[error("`{0}` appears more than once")]
    DuplicateKey(String),
    /// The perfdata value is `U` (undetermined).
    #[error("perfdata `{0}` is undetermined (`U`)")]
    Undetermined(String),
}

/// A compiled parser.
#[derive(Debug, Clone)]
pub enum Parser {
    /// The whole output, trimmed, is one number.
    Number,
    /// Named groups of a regex; label `field` = the group's name.
    Regex(Regex),
    /// A JSON path.
    Json(JsonPath),
    /// `key<sep>value` lines.
    Kv {
        /// The key.
        key: String,
        /// The separator.
        sep: String,
    },
    /// Nagios perfdata; the value of this label.
    Perfdata(String),
}

impl Parser {
    /// Compiles a parser from the config.
    pub fn compile(parse: &Parse) -> Result<Parser, ParseError> {
        Ok(match parse {
            Parse::Number => Parser::Number,
            Parse::Regex(pattern) => {
                let re = Regex::new(pattern).map_err(|e| ParseError::BadRegex { pattern: pattern.clone(), detail: e.to_string() })?;
                if re.capture_names().flatten().next().is_none() {
                    return Err(ParseError::BadRegex {
                        pattern: pattern.clone(),
                        detail: "no named group; write `(?P<name>...)`".into(),
                    });
                }
                Parser::Regex(re)
            }
            Parse::Json(path) => Parser::Json(JsonPath::parse(path)?),
            Parse::Kv(kv) => Parser::Kv { key: kv.key.clone(), sep: kv.sep.clone().unwrap_or_else(|| "=".into()) },
            Parse::Perfdata(label) => Parser::Perfdata(label.clone()),
        })
    }

    /// Parses text output.
    pub fn parse(&self, output: &str) -> Result<Vec<Reading>, ParseError> {
        match self {
            Parser::Number => number(output).map(|v| vec![Reading::plain(v)]),
            Parser::Regex(re) => regex_groups(re, output),
            Parser::Json(path) => {
                let doc: serde_json::Value = serde_json::from_str(output).map_err(|e| ParseError::NotJson(e.to_string()))?;
                path.extract(&doc)
            }
            Parser::Kv { key, sep } => kv(output, key, sep).map(|v| vec![Reading::plain(v)]),
            Parser::Perfdata(label) => perfdata_value(output, label).map(|v| vec![Reading::plain(v)]),
        }
    }
}

/// The whole output, trimmed, as one finite number.
pub fn number(output: &str) -> Result<f64, ParseError> {
    let text = output.trim();
    if text.is_empty() {
        return Err(ParseError::Empty);
    }
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
    if lines > 1 {
        return Err(ParseError::Ambiguous(lines));
    }
    scalar(text)
}

/// One token as a finite number (`inf`, `NaN` and hex are refused).
fn scalar(text: &str) -> Result<f64, ParseError> {
    let t = text.trim();
    let plausible = !t.is_empty()
        && t.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
        && t.bytes().any(|b| b.is_ascii_digit());
    match t.parse::<f64>() {
        Ok(v) if plausible && v.is_finite() => Ok(v),
        _ => Err(ParseError::NotANumber(shorten(t))),
    }
}

fn shorten(t: &str) -> String {
    let mut s: String = t.chars().take(60).collect();
    if t.chars().count() > 60 {
        s.push('…');
    }
    s
}

fn regex_groups(re: &Regex, output: &str) -> Result<Vec<Reading>, ParseError> {
    let caps = re.captures(output).ok_or_else(|| ParseError::NoMatch(re.as_str().to_string()))?;
    let mut out = Vec::new();
    for name in re.capture_names().flatten() {
        match caps.name(name) {
            Some(m) => out.push(Reading::labelled("field", name, scalar(m.as_str())?)),
            None => return Err(ParseError::MissingKey(name.to_string())),
        }
    }
    Ok(out)
}

fn kv(output: &str, key: &str, sep: &str) -> Result<f64, ParseError> {
    let mut found = None;
    for line in output.lines() {
        let Some((k, v)) = line.split_once(sep) else { continue };
        if k.trim() == key {
            if found.is_some() {
                return Err(ParseError::DuplicateKey(key.to_string()));
            }
            found = Some(v);
        }
    }
    scalar(found.ok_or_else(|| ParseError::MissingKey(key.to_string()))?)
}

/// One perfdata item: `'label'=value[UOM];[warn];[crit];[min];[max]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PerfItem {
    /// The label.
    pub label: String,
    /// The value (`None` for `U`).
    pub value: Option<f64>,
    /// The unit of measure (`s`, `%`, `B`, `c`...), possibly empty.
    pub unit: String,
}

/// Parses the perfdata of Nagios plugin output: everything after the first
/// `|` of the first line, plus the part after a `|` on later lines (long
/// output). Values are kept in the unit the plugin printed.
pub fn perfdata(output: &str) -> Result<Vec<PerfItem>, ParseError> {
    let mut text = String::new();
    let mut lines = output.lines();
    if let Some(first) = lines.next() {
        if let Some((_, perf)) = first.split_once('|') {
            text.push_str(perf);
        }
    }
    let mut in_perf = false;
    for line in lines {
        if in_perf {
            text.push(' ');
            text.push_str(line);
        } else if let Some((_, perf)) = line.split_once('|') {
            in_perf = true;
            text.push(' ');
            text.push_str(perf);
        }
    }
    let mut items = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (label, after) = if let Some(quoted) = rest.strip_prefix('\'') {
            // '' inside a quoted label is a literal quote
            let mut label = String::new();
            let mut chars = quoted.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if matches!(chars.peek(), Some((_, '\''))) {
                        label.push('\'');
                        chars.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    label.push(c);
                }
            }
            let end = end.ok_or_else(|| ParseError::NotANumber(shorten(rest)))?;
            (label, &quoted[end..])
        } else {
            let eq = rest.find('=').ok_or_else(|| ParseError::NotANumber(shorten(rest)))?;
            (rest[..eq].to_string(), &rest[eq..])
        };
        let after = after.strip_prefix('=').ok_or_else(|| ParseError::NotANumber(shorten(rest)))?;
        let token_end = after.find(char::is_whitespace).unwrap_or(after.len());
        let token = &after[..token_end];
        rest = after[token_end..].trim_start();
        let raw = token.split(';').next().unwrap_or("");
        let item = if raw == "U" {
            PerfItem { label, value: None, unit: String::new() }
        } else {
            let split = raw.find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))).unwrap_or(raw.len());
            let (num, unit) = raw.split_at(split);
            let value = scalar(num).map_err(|_| ParseError::NotANumber(shorten(raw)))?;
            PerfItem { label, value: Some(value), unit: unit.to_string() }
        };
        items.push(item);
    }
    Ok(items)
}

fn perfdata_value(output: &str, label: &str) -> Result<f64, ParseError> {
    let items = perfdata(output)?;
    let mut matching = items.iter().filter(|i| i.label == label);
    let item = matching.next().ok_or_else(|| ParseError::MissingKey(label.to_string()))?;
    if matching.next().is_some() {
        return Err(ParseError::DuplicateKey(label.to_string()));
    }
    item.value.ok_or_else(|| ParseError::Undetermined(label.to_string()))
}

/// A step of a JSON path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    /// Every element or member; adds a label `key` (the index or member name).
    Wildcard,
}

/// A JSON path: `$`, then `.name`, `['name']`, `[N]`, `[*]` or `.*`. A
/// wildcard yields one reading per element, labelled `key` (at most one
/// wildcard per path).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses a path.
    pub fn parse(text: &str) -> Result<JsonPath, ParseError> {
        let bad = |detail: &str| ParseError::BadPath { path: text.to_string(), detail: detail.to_string() };
        let mut rest = text.strip_prefix('$').ok_or_else(|| bad("must start with `$`"))?;
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let name = &r[..end];
                if name.is_empty() {
                    return Err(bad("empty member name after `.`"));
                }
                steps.push(if name == "*" { Step::Wildcard } else { Step::Key(name.to_string()) });
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').ok_or_else(|| bad("missing `]`"))?;
                let inner = r[..end].trim();
                let step = if inner == "*" {
                    Step::Wildcard
                } else if let Some(q) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                    Step::Key(q.to_string())
                } else if let Some(q) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    Step::Key(q.to_string())
                } else {
                    Step::Index(inner.parse().map_err(|_| bad("expected an index, `*` or a quoted name in `[]`"))?)
                };
                steps.push(step);
                rest = &r[end + 1..];
            } else {
                return Err(bad("expected `.` or `[`"));
            }
        }
        if steps.iter().filter(|s| **s == Step::Wildcard).count() > 1 {
            return Err(bad("at most one wildcard"));
        }
        Ok(JsonPath { text: text.to_string(), steps })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Extracts the numbers at the path.
    pub fn extract(&self, doc: &serde_json::Value) -> Result<Vec<Reading>, ParseError> {
        let mut found: Vec<(Option<String>, &serde_json::Value)> = vec![(None, doc)];
        for step in &self.steps {
            let mut next = Vec::new();
            for (label, v) in found {
                match step {
                    Step::Key(k) => {
                        if let Some(c) = v.get(k.as_str()) {
                            next.push((label, c));
                        }
                    }
                    Step::Index(i) => {
                        if let Some(c) = v.get(*i) {
                            next.push((label, c));
                        }
                    }
                    Step::Wildcard => match v {
                        serde_json::Value::Array(a) => next.extend(a.iter().enumerate().map(|(i, c)| (Some(i.to_string()), c))),
                        serde_json::Value::Object(m) => next.extend(m.iter().map(|(k, c)| (Some(k.clone()), c))),
                        _ => {}
                    },
                }
            }
            found = next;
        }
        if found.is_empty() {
            return Err(ParseError::PathNotFound(self.text.clone()));
        }
        found
            .into_iter()
            .map(|(label, v)| {
                let value = json_number(v).ok_or_else(|| ParseError::NotNumeric {
                    path: match &label {
                        Some(l) => format!("{}[{l}]", self.text),
                        None => self.text.clone(),
                    },
                    found: describe_json(v),
                })?;
                Ok(match label {
                    Some(l) => Reading::labelled("key", l, value),
                    None => Reading::plain(value),
                })
            })
            .collect()
    }
}

fn json_number(v: &serde_json::Value) -> Option<f64> {
    v.as_f64().filter(|f| f.is_finite())
}

/// `a string "12"`, `null`, `an object`... for messages.
pub fn describe_json(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "null".into(),
        serde_json::Value::Bool(b) => format!("a boolean ({b})"),
        serde_json::Value::Number(n) => format!("the number {n}"),
        serde_json::Value::String(s) => format!("a string \"{}\"", shorten(s)),
        serde_json::Value::Array(_) => "an array".into(),
        serde_json::Value::Object(_) => "an object".into(),
    }
}

/// Turns readings of a monotonic counter into per-second rates, per series.
///
/// - The first reading of a series only sets the baseline (no rate).
/// - A reading lower than the previous one is a counter reset (the process
///   restarted or the counter wrapped): it becomes the new baseline and yields
///   no rate, because how much was counted between the reset and the reading
///   is unknown; the next reading yields a rate again.
/// - A reading at the same or an earlier timestamp is ignored.
#[derive(Debug, Default)]
pub struct RateTracker {
    last: HashMap<String, (i64, f64)>,
}

impl RateTracker {
    /// A tracker with no baselines.
    pub fn new() -> RateTracker {
        RateTracker::default()
    }

    /// Feeds the reading `value` at `ts_ms` for the series `key`; returns the
    /// per-second rate since the previous reading, if there is one.
    pub fn observe(&mut self, key: &str, ts_ms: i64, value: f64) -> Option<f64> {
        match self.last.get(key).copied() {
            None => {
                self.last.insert(key.to_string(), (ts_ms, value));
                None
            }
            Some((prev_ts, _)) if ts_ms <= prev_ts => None,
            Some((prev_ts, prev)) => {
                self.last.insert(key.to_string(), (ts_ms, value));
                if value < prev {
                    return None;
                }
                Some((value - prev) * 1000.0 / (ts_ms - prev_ts) as f64)
            }
        }
    }

    /// Forgets the baseline of `key` (the next reading sets a new one).
    pub fn forget(&mut self, key: &str) {
        self.last.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KvParse;

    fn p(parse: Parse, out: &str) -> Result<Vec<Reading>, ParseError> {
        Parser::compile(&parse)?.parse(out)
    }

    fn one(parse: Parse, out: &str) -> Result<f64, ParseError> {
        let r = p(parse, out)?;
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(r[0].labels.is_empty());
        Ok(r[0].value)
    }

    #[test]
    fn number_takes_the_whole_trimmed_output() {
        assert_eq!(number("42.5\n"), Ok(42.5));
        assert_eq!(number("  17 \n"), Ok(17.0));
        assert_eq!(number("-3"), Ok(-3.0));
        assert_eq!(number("1e3\n"), Ok(1000.0));
        assert_eq!(number("0"), Ok(0.0));
        assert_eq!(number("\n\n5\n\n"), Ok(5.0));
    }

    #[test]
    fn number_refuses_anything_else() {
        assert_eq!(number("abc"), Err(ParseError::NotANumber("abc".into())));
        assert_eq!(number("12\n34\n"), Err(ParseError::Ambiguous(2)));
        assert_eq!(number(""), Err(ParseError::Empty));
        assert_eq!(number(" \n\t"), Err(ParseError::Empty));
        assert_eq!(number("12 34"), Err(ParseError::NotANumber("12 34".into())));
        assert_eq!(number("42%"), Err(ParseError::NotANumber("42%".into())));
        assert_eq!(number("inf"), Err(ParseError::NotANumber("inf".into())));
        assert_eq!(number("NaN"), Err(ParseError::NotANumber("NaN".into())));
        assert_eq!(number("0x10"), Err(ParseError::NotANumber("0x10".into())));
        assert_eq!(number("1e999"), Err(ParseError::NotANumber("1e999".into())));
        assert_eq!(number("."), Err(ParseError::NotANumber(".".into())));
    }

    #[test]
    fn regex_gives_one_series_per_named_group() {
        let out = "load average: 0.52, 0.58, 0.59\n";
        let r = p(Parse::Regex(r"load average: (?P<load1>[\d.]+), (?P<load5>[\d.]+), (?P<load15>[\d.]+)".into()), out).unwrap();
        assert_eq!(
            r,
            vec![
                Reading::labelled("field", "load1", 0.52),
                Reading::labelled("field", "load5", 0.58),
                Reading::labelled("field", "load15", 0.59),
            ]
        );
    }

    #[test]
    fn regex_errors() {
        assert_eq!(p(Parse::Regex(r"x=(?P<x>\d+)".into()), "y=1"), Err(ParseError::NoMatch(r"x=(?P<x>\d+)".into())));
        assert!(matches!(p(Parse::Regex(r"(\d+)".into()), "1"), Err(ParseError::BadRegex { .. })));
        assert!(matches!(p(Parse::Regex(r"(?P<x>".into()), "1"), Err(ParseError::BadRegex { .. })));
        assert_eq!(p(Parse::Regex(r"v=(?P<v>\S+)".into()), "v=abc"), Err(ParseError::NotANumber("abc".into())));
        assert_eq!(p(Parse::Regex(r"a=(?P<a>\d+)|b=(?P<b>\d+)".into()), "b=2"), Err(ParseError::MissingKey("a".into())));
    }

    #[test]
    fn json_paths() {
        let doc = r#"{"load": {"avg1": 0.25, "avg5": 1}, "queues": [{"n": 3}, {"n": 4}], "weird key": 7, "s": "12", "nul": null, "b": true}"#;
        assert_eq!(one(Parse::Json("$.load.avg1".into()), doc), Ok(0.25));
        assert_eq!(one(Parse::Json("$['load']['avg5']".into()), doc), Ok(1.0));
        assert_eq!(one(Parse::Json("$.queues[1].n".into()), doc), Ok(4.0));
        assert_eq!(one(Parse::Json("$[\"weird key\"]".into()), doc), Ok(7.0));
        assert_eq!(
            p(Parse::Json("$.queues[*].n".into()), doc),
            Ok(vec![Reading::labelled("key", "0", 3.0), Reading::labelled("key", "1", 4.0)])
        );
        assert_eq!(
            p(Parse::Json("$.load.*".into()), doc),
            Ok(vec![Reading::labelled("key", "avg1", 0.25), Reading::labelled("key", "avg5", 1.0)])
        );
        assert_eq!(one(Parse::Json("$".into()), "12.5"), Ok(12.5));
    }

    #[test]
    fn json_errors_are_specific() {
        let doc = r#"{"s": "12", "nul": null, "b": true, "o": {}}"#;
        assert_eq!(p(Parse::Json("$.missing".into()), doc), Err(ParseError::PathNotFound("$.missing".into())));
        assert_eq!(
            p(Parse::Json("$.s".into()), doc),
            Err(ParseError::NotNumeric { path: "$.s".into(), found: "a string \"12\"".into() })
        );
        assert_eq!(p(Parse::Json("$.nul".into()), doc), Err(ParseError::NotNumeric { path: "$.nul".into(), found: "null".into() }));
        assert_eq!(
            p(Parse::Json("$.b".into()), doc),
            Err(ParseError::NotNumeric { path: "$.b".into(), found: "a boolean (true)".into() })
        );
        assert_eq!(p(Parse::Json("$.o.*".into()), doc), Err(ParseError::PathNotFound("$.o.*".into())));
        assert!(matches!(p(Parse::Json("$.a".into()), "<html>"), Err(ParseError::NotJson(_))));
        assert!(matches!(JsonPath::parse("load.avg1"), Err(ParseError::BadPath { .. })));
        assert!(matches!(JsonPath::parse("$.a[x]"), Err(ParseError::BadPath { .. })));
        assert!(matches!(JsonPath::parse("$.a[1"), Err(ParseError::BadPath { .. })));
        assert!(matches!(JsonPath::parse("$.*.b[*]"), Err(ParseError::BadPath { .. })));
        assert!(matches!(JsonPath::parse("$..a"), Err(ParseError::BadPath { .. })));
    }

    #[test]
    fn key_value_lines() {
        let kv = |key: &str, sep: Option<&str>| Parse::Kv(KvParse { key: key.into(), sep: sep.map(Into::into) });
        let out = "connected_clients=12\nused_memory = 1024\nname=x\n";
        assert_eq!(one(kv("connected_clients", None), out), Ok(12.0));
        assert_eq!(one(kv("used_memory", None), out), Ok(1024.0));
        assert_eq!(one(kv("used", Some(":")), "total: 10\nused: 4\n"), Ok(4.0));
        assert_eq!(one(kv("missing", None), out), Err(ParseError::MissingKey("missing".into())));
        assert_eq!(one(kv("name", None), out), Err(ParseError::NotANumber("x".into())));
        assert_eq!(one(kv("a", None), "a=1\na=2\n"), Err(ParseError::DuplicateKey("a".into())));
    }

    #[test]
    fn nagios_perfdata() {
        let out = "OK - load average: 0.52, 0.58, 0.59|load1=0.520;5.000;10.000;0; load5=0.580;4.000;6.000;0; 'disk /var'=85%;90;95;0;100 time=12ms\n";
        let items = perfdata(out).unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(items[2], PerfItem { label: "disk /var".into(), value: Some(85.0), unit: "%".into() });
        assert_eq!(items[3], PerfItem { label: "time".into(), value: Some(12.0), unit: "ms".into() });
        assert_eq!(one(Parse::Perfdata("load5".into()), out), Ok(0.58));
        assert_eq!(one(Parse::Perfdata("disk /var".into()), out), Ok(85.0));
        assert_eq!(one(Parse::Perfdata("nope".into()), out), Err(ParseError::MissingKey("nope".into())));
        assert_eq!(one(Parse::Perfdata("x".into()), "UNKNOWN | x=U;1;2"), Err(ParseError::Undetermined("x".into())));
        assert_eq!(one(Parse::Perfdata("it's".into()), "OK | 'it''s'=3c"), Ok(3.0));
        // long output: perfdata continues on later lines after a `|`
        let long = "OK - fine | a=1\nline two\nmore | b=2s\nc=3\n";
        assert_eq!(one(Parse::Perfdata("b".into()), long), Ok(2.0));
        assert_eq!(one(Parse::Perfdata("c".into()), long), Ok(3.0));
        assert_eq!(one(Parse::Perfdata("a".into()), "OK - no perfdata"), Err(ParseError::MissingKey("a".into())));
        assert_eq!(one(Parse::Perfdata("a".into()), "OK | a=abc"), Err(ParseError::NotANumber("abc".into())));
    }

    #[test]
    fn rate_first_reading_sets_the_baseline() {
        let mut r = RateTracker::new();
        assert_eq!(r.observe("s", 10_000, 100.0), None);
        assert_eq!(r.observe("s", 20_000, 150.0), Some(5.0));
        assert_eq!(r.observe("s", 30_000, 150.0), Some(0.0));
        assert_eq!(r.observe("s", 30_500, 151.0), Some(2.0));
        // other series are independent
        assert_eq!(r.observe("t", 30_500, 1.0), None);
    }

    #[test]
    fn rate_counter_reset_becomes_a_new_baseline() {
        let mut r = RateTracker::new();
        assert_eq!(r.observe("s", 0, 1000.0), None);
        assert_eq!(r.observe("s", 1000, 10.0), None, "a decrease is a reset, not a negative rate");
        assert_eq!(r.observe("s", 2000, 30.0), Some(20.0));
        // same or older timestamps are ignored and keep the baseline
        assert_eq!(r.observe("s", 2000, 40.0), None);
        assert_eq!(r.observe("s", 1500, 40.0), None);
        assert_eq!(r.observe("s", 3000, 40.0), Some(10.0));
        r.forget("s");
        assert_eq!(r.observe("s", 4000, 50.0), None);
    }
}
