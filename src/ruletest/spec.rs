//! The rule test file format (`*.test.yaml`), read with positions so that
//! every problem names its `line:column` and field.
//!
//! Owns: [`TestFile`], [`Case`] and the expectations, [`parse`].
//! Must not depend on: the config (names are checked by the runner), IO.

use std::collections::BTreeMap;

use serde::Serialize;

use super::series::{parse_name, parse_series, Item, SeriesName};
use crate::config::yaml::{self, Key, Node, Pos, Value};
use crate::model::Duration;
use crate::rules::StateKind;

/// A problem in a test file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// The field (`series["cpu{host=\"a\"}"]`, `expect.fires[2].at`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem at `pos` in `field`.
    pub fn new(pos: Pos, field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { line: pos.line, column: pos.column, field: field.into(), message: message.into() }
    }
}

/// A parsed test file.
#[derive(Debug, Clone)]
pub struct TestFile {
    /// `config:` as written, relative to the file, with its position.
    pub config: Option<(String, Pos)>,
    /// The cases: the file itself, or each item of `tests:`.
    pub cases: Vec<Case>,
}

/// One test case.
#[derive(Debug, Clone)]
pub struct Case {
    /// `name:`, else `tests[i]`, else empty (the file is the case).
    pub name: String,
    /// Where the case starts.
    pub pos: Pos,
    /// Spacing of series samples (ms).
    pub interval_ms: i64,
    /// The virtual clock's tick (ms).
    pub evaluation_interval_ms: i64,
    /// How long to run (ms); `None`: until the last input + 1 interval.
    pub duration_ms: Option<i64>,
    /// Members of targets and groups, by name.
    pub hosts: Vec<HostsSpec>,
    /// Input series.
    pub series: Vec<SeriesSpec>,
    /// Pushed values.
    pub pushes: Vec<PushSpec>,
    /// Expected states at chosen instants.
    pub states: Vec<StateExpect>,
    /// Every expected fire, in order.
    pub fires: Vec<FireExpect>,
}

/// `hosts: { NAME: [h1, h2] }`.
#[derive(Debug, Clone)]
pub struct HostsSpec {
    /// The target or group.
    pub name: String,
    /// Its members.
    pub hosts: Vec<String>,
    /// Where it is written.
    pub pos: Pos,
}

/// One input series.
#[derive(Debug, Clone)]
pub struct SeriesSpec {
    /// The series key as written.
    pub text: String,
    /// Counter, host, labels.
    pub name: SeriesName,
    /// Its items; item k is at k x interval.
    pub items: Vec<Item>,
    /// Where it is written.
    pub pos: Pos,
}

/// What a push carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Pushed {
    /// A number.
    Value(f64),
    /// A non-numeric value (an error point, as the push endpoint records it).
    Text(String),
}

/// One pushed value, timed by its receipt time.
#[derive(Debug, Clone)]
pub struct PushSpec {
    /// The counter.
    pub counter: String,
    /// Receipt time (ms from t0).
    pub at_ms: i64,
    /// The value.
    pub value: Pushed,
    /// The series host (default `push`, as the push endpoint records it).
    pub host: String,
    /// Other labels.
    pub labels: BTreeMap<String, String>,
    /// Where it is written.
    pub pos: Pos,
}

/// An expected state.
#[derive(Debug, Clone)]
pub struct StateExpect {
    /// The instant (ms from t0).
    pub at_ms: i64,
    /// The trigger.
    pub trigger: String,
    /// The state.
    pub state: StateKind,
    /// Text the state's reason must contain.
    pub reason: Option<String>,
    /// Where it is written.
    pub pos: Pos,
}

/// An expected fire.
#[derive(Debug, Clone)]
pub struct FireExpect {
    /// The trigger.
    pub trigger: String,
    /// The fire instant (ms from t0).
    pub at_ms: i64,
    /// The actions' one-line summaries, when given.
    pub actions: Option<Vec<String>>,
    /// Where it is written.
    pub pos: Pos,
}

const FILE_KEYS: &[&str] = &["config", "tests"];
const CASE_KEYS: &[&str] = &["name", "interval", "evaluation_interval", "duration", "hosts", "series", "pushes", "expect"];

/// Parses a test file's text; every problem is returned.
pub fn parse(text: &str) -> Result<TestFile, Vec<Problem>> {
    let parsed = yaml::parse(text);
    let mut p = Reader { problems: Vec::new() };
    if let Some(e) = parsed.fatal {
        return Err(vec![Problem::new(e.pos, "", e.message)]);
    }
    for d in &parsed.docs {
        for e in &d.errors {
            p.problems.push(Problem::new(e.pos, "", e.message.clone()));
        }
    }
    if parsed.docs.len() != 1 {
        let pos = parsed.docs.get(1).map_or(Pos::default(), |d| d.root.pos);
        p.problems.push(Problem::new(pos, "", format!("a test file holds one YAML document, found {}", parsed.docs.len())));
        return Err(p.problems);
    }
    let root = &parsed.docs[0].root;
    let Some(entries) = p.map(root, "") else { return Err(p.problems) };
    let has_tests = root.get("tests").is_some();
    if has_tests {
        p.known_keys(entries, "", FILE_KEYS);
    } else {
        let mut keys = FILE_KEYS.to_vec();
        keys.extend(CASE_KEYS);
        p.known_keys(entries, "", &keys);
    }
    let config = root.get("config").and_then(|(_, n)| p.string(n, "config").map(|s| (s, n.pos)));
    let mut cases = Vec::new();
    match root.get("tests") {
        Some((_, n)) => {
            if let Some(items) = p.seq(n, "tests") {
                if items.is_empty() {
                    p.problems.push(Problem::new(n.pos, "tests", "no test cases"));
                }
                for (i, item) in items.iter().enumerate() {
                    let field = format!("tests[{i}]");
                    if let Some(e) = p.map(item, &field) {
                        p.known_keys(e, &field, CASE_KEYS);
                        cases.push(p.case(item, &field, format!("tests[{i}]")));
                    }
                }
            }
        }
        None => cases.push(p.case(root, "", String::new())),
    }
    if p.problems.is_empty() {
        Ok(TestFile { config, cases })
    } else {
        Err(p.problems)
    }
}

struct Reader {
    problems: Vec<Problem>,
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

impl Reader {
    fn bad(&mut self, pos: Pos, field: &str, message: impl Into<String>) {
        self.problems.push(Problem::new(pos, field, message));
    }

    fn map<'a>(&mut self, node: &'a Node, field: &str) -> Option<&'a [(Key, Node)]> {
        match &node.value {
            Value::Map(e) => Some(e),
            Value::Null => Some(&[]),
            _ => {
                self.bad(node.pos, field, format!("expected a map, found {}", kind(node)));
                None
            }
        }
    }

    fn seq<'a>(&mut self, node: &'a Node, field: &str) -> Option<&'a [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            Value::Null => Some(&[]),
            _ => {
                self.bad(node.pos, field, format!("expected a list, found {}", kind(node)));
                None
            }
        }
    }

    fn known_keys(&mut self, entries: &[(Key, Node)], field: &str, allowed: &[&str]) {
        for (k, _) in entries {
            if !allowed.contains(&k.name.as_str()) {
                let hint = allowed
                    .iter()
                    .map(|a| (strsim::jaro_winkler(a, &k.name), *a))
                    .filter(|(s, _)| *s > 0.8)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, a)| format!("; did you mean `{a}`?"))
                    .unwrap_or_default();
                self.bad(k.pos, &join(field, &k.name), format!("unknown field `{}`{hint} (known: {})", k.name, allowed.join(", ")));
            }
        }
    }

    fn string(&mut self, node: &Node, field: &str) -> Option<String> {
        match &node.value {
            Value::String(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => {
                self.bad(node.pos, field, format!("expected text, found {}", kind(node)));
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, field: &str) -> Option<i64> {
        match &node.value {
            Value::Int(0) => Some(0),
            Value::String(s) => match Duration::parse(s) {
                Ok(d) => Some(i64::try_from(d.get().as_millis()).unwrap_or(i64::MAX)),
                Err(e) => {
                    self.bad(node.pos, field, e);
                    None
                }
            },
            _ => {
                self.bad(node.pos, field, format!("expected a duration from t0 such as `90s` or `2m30s`, found {}", kind(node)));
                None
            }
        }
    }

    fn positive_duration(&mut self, node: &Node, field: &str) -> Option<i64> {
        let ms = self.duration(node, field)?;
        if ms == 0 {
            self.bad(node.pos, field, "must be longer than 0s");
            return None;
        }
        Some(ms)
    }

    fn required<'a>(&mut self, node: &'a Node, field: &str, key: &str) -> Option<&'a Node> {
        let found = node.get(key).map(|(_, n)| n);
        if found.is_none() {
            self.bad(node.pos, field, format!("missing field `{key}`"));
        }
        found
    }

    fn case(&mut self, node: &Node, field: &str, name: String) -> Case {
        let get = |k: &str| node.get(k).map(|(_, n)| n);
        let name = match get("name") {
            Some(n) => self.string(n, &join(field, "name")).unwrap_or(name),
            None => name,
        };
        let interval_ms = get("interval").and_then(|n| self.positive_duration(n, &join(field, "interval"))).unwrap_or(10_000);
        let evaluation_interval_ms = get("evaluation_interval")
            .and_then(|n| self.positive_duration(n, &join(field, "evaluation_interval")))
            .unwrap_or(interval_ms);
        let duration_ms = get("duration").and_then(|n| self.duration(n, &join(field, "duration")));
        let mut case = Case {
            name,
            pos: node.pos,
            interval_ms,
            evaluation_interval_ms,
            duration_ms,
            hosts: Vec::new(),
            series: Vec::new(),
            pushes: Vec::new(),
            states: Vec::new(),
            fires: Vec::new(),
        };
        if let Some(n) = get("hosts") {
            self.hosts(n, &join(field, "hosts"), &mut case);
        }
        match get("series") {
            Some(n) => self.series(n, &join(field, "series"), &mut case),
            None if get("pushes").is_none() => self.bad(node.pos, field, "missing field `series` (or `pushes`): a test needs input"),
            None => {}
        }
        if let Some(n) = get("pushes") {
            self.pushes(n, &join(field, "pushes"), &mut case);
        }
        match get("expect") {
            Some(n) => self.expect(n, &join(field, "expect"), &mut case),
            None => self.bad(node.pos, field, "missing field `expect`"),
        }
        case
    }

    fn hosts(&mut self, node: &Node, field: &str, case: &mut Case) {
        let Some(entries) = self.map(node, field) else { return };
        for (k, v) in entries {
            let f = format!("{field}.{}", k.name);
            let hosts = match &v.value {
                Value::Seq(items) => items.iter().filter_map(|i| self.string(i, &f)).collect(),
                _ => {
                    self.bad(v.pos, &f, format!("expected a list of hosts, found {}", kind(v)));
                    continue;
                }
            };
            case.hosts.push(HostsSpec { name: k.name.clone(), hosts, pos: k.pos });
        }
    }

    fn series(&mut self, node: &Node, field: &str, case: &mut Case) {
        let Some(entries) = self.map(node, field) else { return };
        for (k, v) in entries {
            let f = format!("{field}[{:?}]", k.name);
            let name = match parse_name(&k.name, "local") {
                Ok(n) => n,
                Err(e) => {
                    self.bad(k.pos, &f, format!("series `{}`: {e}", k.name));
                    continue;
                }
            };
            let Some(text) = self.string(v, &f) else { continue };
            match parse_series(&text) {
                Ok(items) => case.series.push(SeriesSpec { text: k.name.clone(), name, items, pos: k.pos }),
                Err(e) => self.bad(v.pos, &f, format!("series `{}`: {e}", k.name)),
            }
        }
    }

    fn pushes(&mut self, node: &Node, field: &str, case: &mut Case) {
        let Some(items) = self.seq(node, field) else { return };
        for (i, item) in items.iter().enumerate() {
            let f = format!("{field}[{i}]");
            let Some(entries) = self.map(item, &f) else { continue };
            self.known_keys(entries, &f, &["counter", "at", "value", "host", "labels"]);
            let counter = self.required(item, &f, "counter").and_then(|n| self.string(n, &join(&f, "counter")));
            let at_ms = self.required(item, &f, "at").and_then(|n| self.duration(n, &join(&f, "at")));
            let value = self.required(item, &f, "value").and_then(|n| match &n.value {
                Value::Int(i) => Some(Pushed::Value(*i as f64)),
                Value::Float(x) if x.is_finite() => Some(Pushed::Value(*x)),
                Value::String(s) => Some(Pushed::Text(s.clone())),
                _ => {
                    self.bad(n.pos, &join(&f, "value"), format!("expected a number (or text, recorded as a non-numeric value), found {}", kind(n)));
                    None
                }
            });
            let host = match item.get("host") {
                Some((_, n)) => self.string(n, &join(&f, "host")),
                None => Some("push".to_string()),
            };
            let mut labels = BTreeMap::new();
            if let Some((_, n)) = item.get("labels") {
                let lf = join(&f, "labels");
                if let Some(e) = self.map(n, &lf) {
                    for (k, v) in e {
                        if let Some(s) = self.string(v, &format!("{lf}.{}", k.name)) {
                            labels.insert(k.name.clone(), s);
                        }
                    }
                }
            }
            if let (Some(counter), Some(at_ms), Some(value), Some(host)) = (counter, at_ms, value, host) {
                case.pushes.push(PushSpec { counter, at_ms, value, host, labels, pos: item.pos });
            }
        }
    }

    fn expect(&mut self, node: &Node, field: &str, case: &mut Case) {
        let Some(entries) = self.map(node, field) else { return };
        self.known_keys(entries, field, &["states", "fires"]);
        if let Some((_, n)) = node.get("states") {
            let sf = join(field, "states");
            for (i, item) in self.seq(n, &sf).unwrap_or_default().iter().enumerate() {
                let f = format!("{sf}[{i}]");
                let Some(e) = self.map(item, &f) else { continue };
                self.known_keys(e, &f, &["at", "trigger", "state", "reason"]);
                let at_ms = self.required(item, &f, "at").and_then(|n| self.duration(n, &join(&f, "at")));
                let trigger = self.required(item, &f, "trigger").and_then(|n| self.string(n, &join(&f, "trigger")));
                let state = self.required(item, &f, "state").and_then(|n| {
                    let word = self.string(n, &join(&f, "state"))?;
                    let s = state_kind(&word);
                    if s.is_none() {
                        self.bad(n.pos, &join(&f, "state"), format!("unknown state `{word}` (inactive, pending, firing, cooldown, nodata, error)"));
                    }
                    s
                });
                let reason = item.get("reason").and_then(|(_, n)| self.string(n, &join(&f, "reason")));
                if let (Some(at_ms), Some(trigger), Some(state)) = (at_ms, trigger, state) {
                    case.states.push(StateExpect { at_ms, trigger, state, reason, pos: item.pos });
                }
            }
        }
        if let Some((_, n)) = node.get("fires") {
            let ff = join(field, "fires");
            for (i, item) in self.seq(n, &ff).unwrap_or_default().iter().enumerate() {
                let f = format!("{ff}[{i}]");
                let Some(e) = self.map(item, &f) else { continue };
                self.known_keys(e, &f, &["trigger", "at", "actions"]);
                let trigger = self.required(item, &f, "trigger").and_then(|n| self.string(n, &join(&f, "trigger")));
                let at_ms = self.required(item, &f, "at").and_then(|n| self.duration(n, &join(&f, "at")));
                let actions = item.get("actions").and_then(|(_, n)| {
                    let af = join(&f, "actions");
                    let list = self.seq(n, &af)?;
                    Some(list.iter().filter_map(|a| self.string(a, &af)).collect())
                });
                if let (Some(trigger), Some(at_ms)) = (trigger, at_ms) {
                    case.fires.push(FireExpect { trigger, at_ms, actions, pos: item.pos });
                }
            }
        }
    }
}

/// A state word (`pending`, `nodata`...).
pub fn state_kind(word: &str) -> Option<StateKind> {
    Some(match word {
        "inactive" => StateKind::Inactive,
        "pending" => StateKind::Pending,
        "firing" => StateKind::Firing,
        "cooldown" => StateKind::Cooldown,
        "nodata" => StateKind::NoData,
        "error" => StateKind::Error,
        _ => return None,
    })
}

fn kind(node: &Node) -> &'static str {
    match node.value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Int(_) | Value::Float(_) => "a number",
        Value::String(_) => "text",
        Value::Seq(_) => "a list",
        Value::Map(_) => "a map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_single_case_file() {
        let f = parse(
            r#"
config: ..
interval: 10s
evaluation_interval: 5s
hosts: { web: [web-01, web-02] }
series:
  load1: "1x10 5x30"
  'cpu{host="web-02"}': "_x5 err 80+5x4"
pushes:
  - { counter: queue, at: 95s, value: 3 }
expect:
  states:
    - { at: 1m, trigger: web-busy, state: pending }
  fires:
    - { trigger: web-busy, at: 2m30s, actions: ["scale web by 1"] }
"#,
        )
        .unwrap();
        assert_eq!(f.config.as_ref().map(|c| c.0.as_str()), Some(".."));
        let c = &f.cases[0];
        assert_eq!((c.interval_ms, c.evaluation_interval_ms, c.duration_ms), (10_000, 5_000, None));
        assert_eq!(c.series.len(), 2);
        assert_eq!(c.series[0].items.len(), 40);
        assert_eq!(c.series[1].name.host, "web-02");
        assert_eq!((c.pushes[0].at_ms, c.pushes[0].host.as_str()), (95_000, "push"));
        assert_eq!(c.states[0].state, StateKind::Pending);
        assert_eq!(c.fires[0].at_ms, 150_000);
        assert_eq!(c.hosts[0].hosts, vec!["web-01", "web-02"]);
    }

    #[test]
    fn reports_every_problem_with_its_place() {
        let e = parse(
            "series:\n  load1: \"1x10 9y\"\nintervall: 10s\nexpect:\n  fires:\n    - { trigger: a, at: soon }\n  states:\n    - { at: 1m, trigger: a, state: busy }\n",
        )
        .err()
        .unwrap_or_default();
        let text: Vec<String> = e.iter().map(|p| format!("{}:{} {}: {}", p.line, p.column, p.field, p.message)).collect();
        assert_eq!(text.len(), 4, "{text:#?}");
        assert!(text.iter().any(|t| t.starts_with("2:10 series[\"load1\"]: series `load1`: `9y`")), "{text:#?}");
        assert!(text.iter().any(|t| t.starts_with("3:1 intervall: unknown field `intervall`; did you mean `interval`?")), "{text:#?}");
        assert!(text.iter().any(|t| t.contains("expect.fires[0].at: `soon` is not a duration")), "{text:#?}");
        assert!(text.iter().any(|t| t.contains("unknown state `busy`")), "{text:#?}");
    }

    #[test]
    fn reads_several_cases() {
        let f = parse("tests:\n  - name: one\n    series: { a: '1' }\n    expect: {}\n  - series: { a: '2' }\n    expect: {}\n").unwrap();
        let names: Vec<&str> = f.cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["one", "tests[1]"]);
        let e = parse("tests:\n  - series: { a: '1' }\n").err().unwrap_or_default();
        assert_eq!(e[0].message, "missing field `expect`");
        assert_eq!(e[0].field, "tests[0]");
    }
}
