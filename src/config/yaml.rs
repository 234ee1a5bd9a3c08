//! YAML with positions: a small spanned tree built from `saphyr-parser`
//! events, scalars resolved with the YAML 1.2 core schema, converted to
//! `serde_json::Value` for schema validation and serde.
//!
//! Owns: [`parse`], [`Node`], [`Pos`], [`Segment`] (JSON-pointer walking).
//! Must not depend on: the model, the schema or anything else in `config`.

use std::collections::{BTreeMap, HashMap};

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};

/// A 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Pos {
    fn from_span(span: &Span) -> Pos {
        // saphyr: lines are 1-based, columns 0-based.
        Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

/// A YAML value with the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the value starts.
    pub pos: Pos,
    /// The value.
    pub value: Value,
}

/// A map key with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// The key.
    pub name: String,
    /// Where the key starts.
    pub pos: Pos,
}

/// A resolved YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer (decimal, `0x`, `0o`).
    Int(i128),
    /// A float (including `.inf`, `.nan`).
    Float(f64),
    /// A string.
    String(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order, keys unique.
    Map(Vec<(Key, Node)>),
}

/// A problem in the YAML itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// What is wrong (lowercase, no trailing period).
    pub message: String,
    /// Where.
    pub pos: Pos,
    /// A hint.
    pub help: Option<String>,
}

/// The documents of one file. `fatal` is true when the parser stopped early
/// (a syntax error): later documents of the file are lost.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Documents in order, each with the YAML errors found inside it.
    pub docs: Vec<Doc>,
    /// A syntax error that stopped parsing.
    pub fatal: Option<YamlError>,
}

/// One document.
#[derive(Debug)]
pub struct Doc {
    /// Its root (`Value::Null` for an empty document).
    pub root: Node,
    /// Duplicate keys, non-string keys, bad aliases found in it.
    pub errors: Vec<YamlError>,
}

/// Most YAML nodes one file may hold, aliases expanded (guards memory and
/// time against huge files and alias bombs); `SCALER_MAX_CONFIG_NODES`
/// raises it.
pub const DEFAULT_MAX_NODES: usize = 250_000;

/// The node limit in force: `SCALER_MAX_CONFIG_NODES`, else the default.
pub fn max_nodes() -> usize {
    std::env::var("SCALER_MAX_CONFIG_NODES").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(DEFAULT_MAX_NODES)
}

/// Parses every document of `text`.
pub fn parse(text: &str) -> Parsed {
    let mut b = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        docs: Vec::new(),
        errors: Vec::new(),
        nodes: 0,
        budget: max_nodes(),
    };
    let mut parsed = Parsed::default();
    for item in Parser::new_from_str(text) {
        match item {
            Ok((event, span)) => {
                if let Err(e) = b.event(event, span) {
                    parsed.fatal = Some(e);
                    break;
                }
            }
            Err(e) => {
                parsed.fatal = Some(scan_error(&e, text));
                break;
            }
        }
    }
    parsed.docs = b.docs;
    parsed
}

fn scan_error(e: &ScanError, text: &str) -> YamlError {
    let m = e.marker();
    let pos = Pos {
        line: m.line().max(1),
        column: m.col() + 1,
    };
    let info = e.info();
    let mut message = format!("invalid YAML: {info}");
    let mut help = None;
    let line_text = text.lines().nth(pos.line.saturating_sub(1)).unwrap_or("");
    let leading: String = line_text
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .collect();
    if info.contains("tab") || leading.contains('\t') {
        message = "invalid YAML: tabs are not allowed for indentation".to_string();
        help = Some("indent with spaces".to_string());
    } else if info.contains("unclosed quoted scalar") || info.contains("quoted scalar") {
        help = Some("close the quote on the same value, or use a block scalar (`|`)".to_string());
    } else if info.contains("mapping values are not allowed") {
        help = Some(
            "a value containing `: ` must be quoted; otherwise check the indentation".to_string(),
        );
    } else if info.contains("indicator")
        || info.contains("expected ',' or")
        || info.contains("flow")
    {
        help = Some("check the lines above for an unclosed `[`, `{` or quote".to_string());
    }
    YamlError { message, pos, help }
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Key, Node)>,
        pending_key: Option<Key>,
        /// Index of each key, to find duplicates fast.
        seen: HashMap<String, Pos>,
    },
}

struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    docs: Vec<Doc>,
    errors: Vec<YamlError>,
    nodes: usize,
    budget: usize,
}

impl Builder {
    /// Counts one more node; past the budget the file is refused.
    fn count(&mut self, pos: Pos) -> Result<(), YamlError> {
        self.nodes += 1;
        if self.nodes > self.budget {
            return Err(YamlError {
                message: format!("the file has more than {} YAML nodes", self.budget),
                pos,
                help: Some("split it into smaller files, or raise the limit with SCALER_MAX_CONFIG_NODES".into()),
            });
        }
        Ok(())
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), YamlError> {
        let pos = Pos::from_span(&span);
        match event {
            Event::Nothing | Event::StreamStart | Event::StreamEnd => {}
            Event::DocumentStart(_) => {
                self.anchors.clear();
                self.errors.clear();
            }
            Event::DocumentEnd => {}
            Event::Alias(id) => {
                let node = match self.anchors.get(&id) {
                    Some((node, size)) => {
                        self.nodes = self.nodes.saturating_add(*size);
                        if self.nodes > self.budget {
                            return Err(YamlError {
                                message: "too many alias expansions (alias bomb?)".into(),
                                pos,
                                help: Some("avoid nesting aliases".into()),
                            });
                        }
                        let mut n = node.clone();
                        n.pos = pos;
                        n
                    }
                    None => {
                        self.errors.push(YamlError {
                            message: "unknown alias".into(),
                            pos,
                            help: None,
                        });
                        Node {
                            pos,
                            value: Value::Null,
                        }
                    }
                };
                self.push_node(node);
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(pos)?;
                let value = self.resolve(&text, style, tag.as_deref(), pos);
                let node = Node { pos, value };
                if anchor > 0 {
                    self.anchors.insert(anchor, (node.clone(), 1));
                }
                self.push_node(node);
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), "seq", pos);
                self.count(pos)?;
                self.stack.push(Frame::Seq {
                    pos,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), "map", pos);
                self.count(pos)?;
                self.stack.push(Frame::Map {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    pending_key: None,
                    seen: HashMap::new(),
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { pos, anchor, items }) => (
                        Node {
                            pos,
                            value: Value::Seq(items),
                        },
                        anchor,
                    ),
                    Some(Frame::Map {
                        pos,
                        anchor,
                        entries,
                        ..
                    }) => (
                        Node {
                            pos,
                            value: Value::Map(entries),
                        },
                        anchor,
                    ),
                    None => return Ok(()),
                };
                if anchor > 0 {
                    let size = count_nodes(&node);
                    self.anchors.insert(anchor, (node.clone(), size));
                }
                self.push_node(node);
            }
        }
        Ok(())
    }

    fn check_collection_tag(&mut self, tag: Option<&Tag>, expected: &str, pos: Pos) {
        if let Some(t) = tag {
            if !(t.is_yaml_core_schema() && t.suffix == expected) {
                self.errors.push(YamlError {
                    message: format!("unsupported tag `{}{}`", t.handle, t.suffix),
                    pos,
                    help: Some("remove the tag".into()),
                });
            }
        }
    }

    fn resolve(&mut self, text: &str, style: ScalarStyle, tag: Option<&Tag>, pos: Pos) -> Value {
        if let Some(t) = tag {
            if !t.is_yaml_core_schema() {
                self.errors.push(YamlError {
                    message: format!("unsupported tag `{}{}`", t.handle, t.suffix),
                    pos,
                    help: Some("remove the tag".into()),
                });
                return Value::String(text.to_string());
            }
            let resolved = resolve_plain(text);
            let ok = match (t.suffix.as_str(), &resolved) {
                ("str", _) => return Value::String(text.to_string()),
                ("null", Value::Null) | ("bool", Value::Bool(_)) | ("int", Value::Int(_)) => true,
                ("float", Value::Float(_)) => true,
                ("float", Value::Int(i)) => return Value::Float(*i as f64),
                _ => false,
            };
            if !ok {
                self.errors.push(YamlError {
                    message: format!("`{text}` is not a valid `!!{}`", t.suffix),
                    pos,
                    help: None,
                });
                return Value::String(text.to_string());
            }
            return resolved;
        }
        match style {
            ScalarStyle::Plain => resolve_plain(text),
            _ => Value::String(text.to_string()),
        }
    }

    fn push_node(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                let errors = std::mem::take(&mut self.errors);
                self.docs.push(Doc { root: node, errors });
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                seen,
                ..
            }) => match pending_key.take() {
                None => {
                    let key = match node.value {
                        Value::String(s) => Key {
                            name: s,
                            pos: node.pos,
                        },
                        other => {
                            let name = scalar_text(&other);
                            self.errors.push(YamlError {
                                message: match &name {
                                    Some(n) => format!("keys must be strings, found `{n}`"),
                                    None => "keys must be strings, found a collection".into(),
                                },
                                pos: node.pos,
                                help: name.map(|n| format!("quote the key: `\"{n}\"`")),
                            });
                            // Keep parsing; the entry is dropped below.
                            Key {
                                name: String::new(),
                                pos: Pos::default(),
                            }
                        }
                    };
                    *pending_key = Some(key);
                }
                Some(key) => {
                    if key.pos == Pos::default() && key.name.is_empty() {
                        return;
                    }
                    if let Some(first) = seen.get(&key.name) {
                        self.errors.push(YamlError {
                            message: format!(
                                "duplicate key `{}` (first defined at line {})",
                                key.name, first.line
                            ),
                            pos: key.pos,
                            help: Some("remove one of them".into()),
                        });
                        return;
                    }
                    seen.insert(key.name.clone(), key.pos);
                    entries.push((key, node));
                }
            },
        }
    }
}

fn count_nodes(n: &Node) -> usize {
    match &n.value {
        Value::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Map(entries) => 1 + entries.iter().map(|(_, v)| count_nodes(v)).sum::<usize>(),
        _ => 1,
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("null".into()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Seq(_) | Value::Map(_) => None,
    }
}

/// Resolves a plain scalar with the YAML 1.2 core schema.
pub fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Ok(i) = i128::from_str_radix(hex, 16) {
                return Value::Int(i);
            }
        }
        return Value::String(text.to_string());
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if !oct.is_empty() && oct.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            if let Ok(i) = i128::from_str_radix(oct, 8) {
                return Value::Int(i);
            }
        }
        return Value::String(text.to_string());
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = text.parse::<i128>() {
            return Value::Int(i);
        }
        if let Ok(f) = text.parse::<f64>() {
            return Value::Float(f);
        }
    }
    if is_core_float(digits) {
        if let Ok(f) = text.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::String(text.to_string())
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` (sign already removed).
fn is_core_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let int_digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let exp = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    i == b.len()
}

/// One step of a JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A map key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Where a pointer leads: the key (or the item, in a sequence) and the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The key's position, or the item's for sequence items and the root.
    pub key: Pos,
    /// The value's position.
    pub value: Pos,
}

impl Node {
    /// Converts to JSON. Non-finite floats become their YAML spelling as a
    /// string, since JSON has no such numbers.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => {
                if let Ok(v) = i64::try_from(*i) {
                    J::from(v)
                } else if let Ok(v) = u64::try_from(*i) {
                    J::from(v)
                } else {
                    serde_json::Number::from_f64(*i as f64).map_or(J::Null, J::Number)
                }
            }
            Value::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => J::Number(n),
                None if f.is_nan() => J::String(".nan".into()),
                None if *f > 0.0 => J::String(".inf".into()),
                None => J::String("-.inf".into()),
            },
            Value::String(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// The value of `key` in a map.
    pub fn get(&self, key: &str) -> Option<(&Key, &Node)> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.name == key)
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// Follows `path` as far as it goes; returns where the last reached step
    /// is and how many steps were followed.
    pub fn walk(&self, path: &[Segment]) -> (Found, usize) {
        let mut found = Found {
            key: self.pos,
            value: self.pos,
        };
        let mut node = self;
        for (i, seg) in path.iter().enumerate() {
            let next = match (seg, &node.value) {
                (Segment::Key(k), Value::Map(entries)) => entries
                    .iter()
                    .find(|(key, _)| &key.name == k)
                    .map(|(key, v)| (key.pos, v)),
                (Segment::Index(idx), Value::Seq(items)) => items.get(*idx).map(|v| (v.pos, v)),
                _ => None,
            };
            match next {
                Some((key_pos, v)) => {
                    found = Found {
                        key: key_pos,
                        value: v.pos,
                    };
                    node = v;
                }
                None => return (found, i),
            }
        }
        (found, path.len())
    }

    /// Every JSON pointer in the tree (`""` for the root) with the position of
    /// its key and its value.
    pub fn pointers(&self) -> BTreeMap<String, Found> {
        let mut out = BTreeMap::new();
        fn visit(n: &Node, ptr: String, key: Pos, out: &mut BTreeMap<String, Found>) {
            match &n.value {
                Value::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        visit(item, format!("{ptr}/{i}"), item.pos, out);
                    }
                }
                Value::Map(entries) => {
                    for (k, v) in entries {
                        let esc = k.name.replace('~', "~0").replace('/', "~1");
                        visit(v, format!("{ptr}/{esc}"), k.pos, out);
                    }
                }
                _ => {}
            }
            out.insert(ptr, Found { key, value: n.pos });
        }
        visit(self, String::new(), self.pos, &mut out);
        out
    }
}

/// Splits a JSON pointer (`/then/0/scale`) into segments. Numeric segments are
/// indexes (keys in this format are never purely numeric where it matters;
/// [`Node::walk`] treats a segment as a key when the node is a map).
pub fn split_pointer(ptr: &str) -> Vec<Segment> {
    if ptr.is_empty() {
        return Vec::new();
    }
    ptr.trim_start_matches('/')
        .split('/')
        .map(|s| {
            let s = s.replace("~1", "/").replace("~0", "~");
            match s.parse::<usize>() {
                Ok(i) => Segment::Index(i),
                Err(_) => Segment::Key(s),
            }
        })
        .collect()
}

/// The dotted field path for people: `then[0].scale.group`.
pub fn field_path(path: &[Segment]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Node {
        let p = parse(text);
        assert!(p.fatal.is_none(), "{:?}", p.fatal);
        assert_eq!(p.docs.len(), 1);
        assert!(p.docs[0].errors.is_empty(), "{:?}", p.docs[0].errors);
        p.docs.into_iter().next().unwrap().root
    }

    #[test]
    fn core_schema_scalars() {
        for (t, v) in [
            ("~", Value::Null),
            ("null", Value::Null),
            ("NULL", Value::Null),
            ("", Value::Null),
            ("true", Value::Bool(true)),
            ("False", Value::Bool(false)),
            ("42", Value::Int(42)),
            ("-7", Value::Int(-7)),
            ("+3", Value::Int(3)),
            ("0x1F", Value::Int(31)),
            ("0o17", Value::Int(15)),
            ("1.5", Value::Float(1.5)),
            ("-.5", Value::Float(-0.5)),
            ("1e3", Value::Float(1000.0)),
            ("2.", Value::Float(2.0)),
            (".inf", Value::Float(f64::INFINITY)),
            ("-.Inf", Value::Float(f64::NEG_INFINITY)),
        ] {
            assert_eq!(resolve_plain(t), v, "{t:?}");
        }
        assert!(matches!(resolve_plain(".nan"), Value::Float(f) if f.is_nan()));
        // YAML 1.1 spellings are strings in 1.2.
        for s in [
            "yes", "no", "on", "off", "0644x", "0x", "0o8", "1.2.3", "10.0.0.1", "1e", "e3", "90s",
            "5%",
        ] {
            assert_eq!(resolve_plain(s), Value::String(s.into()), "{s:?}");
        }
        // 0644 is decimal in YAML 1.2.
        assert_eq!(resolve_plain("0644"), Value::Int(644));
    }

    #[test]
    fn quoted_scalars_are_strings() {
        let n = one("a: '42'\nb: \"true\"\nc: !!str 7\nd: |\n  null\ne: !!float 3\n");
        assert_eq!(
            n.to_json(),
            json!({"a": "42", "b": "true", "c": "7", "d": "null\n", "e": 3.0})
        );
    }

    #[test]
    fn positions_are_one_based() {
        let n = one("kind: Group\nname: web\nscale_in:\n  pick: newest\nlist:\n  - a\n  - b: 1\n");
        let (f, depth) = n.walk(&split_pointer("/scale_in/pick"));
        assert_eq!(depth, 2);
        assert_eq!(f.key, Pos { line: 4, column: 3 });
        assert_eq!(f.value, Pos { line: 4, column: 9 });
        let (f, _) = n.walk(&split_pointer("/list/1/b"));
        assert_eq!(f.key, Pos { line: 7, column: 5 });
        let (f, _) = n.walk(&split_pointer("/list/1"));
        assert_eq!(f.key, Pos { line: 7, column: 5 });
        let (f, _) = n.walk(&split_pointer("/name"));
        assert_eq!(
            (f.key, f.value),
            (Pos { line: 2, column: 1 }, Pos { line: 2, column: 7 })
        );
        // A missing tail stops at the deepest existing node.
        let (f, depth) = n.walk(&split_pointer("/scale_in/nope/x"));
        assert_eq!((depth, f.key), (1, Pos { line: 3, column: 1 }));
    }

    #[test]
    fn pointer_map() {
        let n = one("then:\n  - scale: { group: web, by: 1 }\nx~/y: 1\n");
        let map = n.pointers();
        assert_eq!(
            map["/then/0/scale/group"].key,
            Pos {
                line: 2,
                column: 14
            }
        );
        assert_eq!(
            map["/then/0/scale/group"].value,
            Pos {
                line: 2,
                column: 21
            }
        );
        assert_eq!(map["/then/0"].key, Pos { line: 2, column: 5 });
        assert_eq!(map["/x~0~1y"].key, Pos { line: 3, column: 1 });
        assert!(map.contains_key(""));
        assert_eq!(
            field_path(&split_pointer("/then/0/scale/group")),
            "then[0].scale.group"
        );
    }

    #[test]
    fn duplicate_keys_are_errors_at_the_second() {
        let p = parse("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n");
        let errs = &p.docs[0].errors;
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].pos, Pos { line: 4, column: 3 });
        assert!(
            errs[0].message.contains("duplicate key `c`"),
            "{}",
            errs[0].message
        );
        assert_eq!(errs[1].pos, Pos { line: 5, column: 1 });
        // The first value is kept.
        assert_eq!(p.docs[0].root.to_json(), json!({"a": 1, "b": {"c": 1}}));
    }

    #[test]
    fn non_string_keys_are_errors() {
        let p = parse("1: a\ntrue: b\nok: c\n");
        let errs = &p.docs[0].errors;
        assert_eq!(errs.len(), 2);
        assert!(errs[0].message.contains("keys must be strings, found `1`"));
        assert_eq!(p.docs[0].root.to_json(), json!({"ok": "c"}));
    }

    #[test]
    fn multi_document_and_empty_documents() {
        let p = parse("---\na: 1\n---\n---\nb: 2\n...\n");
        assert!(p.fatal.is_none());
        let values: Vec<_> = p.docs.iter().map(|d| d.root.to_json()).collect();
        assert_eq!(values, vec![json!({"a": 1}), json!(null), json!({"b": 2})]);
        assert_eq!(p.docs[2].root.pos.line, 5);
        assert!(parse("").docs.is_empty());
        assert_eq!(parse("# just a comment\n").docs.len(), 0);
    }

    #[test]
    fn aliases_resolve_and_bombs_are_stopped() {
        let n = one("base: &b { x: 1, y: [1, 2] }\ncopy: *b\n");
        assert_eq!(n.to_json()["copy"], json!({"x": 1, "y": [1, 2]}));
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            let items = [prev.as_str(); 10].join(", ");
            bomb.push_str(&format!("a{i}: &a{i} [{items}]\n"));
        }
        let p = parse(&bomb);
        let err = p.fatal.expect("alias bomb must fail");
        assert!(err.message.contains("alias"), "{}", err.message);
    }

    #[test]
    fn syntax_errors_keep_earlier_documents() {
        let p = parse("a: 1\n---\nb: \"unclosed\n");
        assert_eq!(p.docs.len(), 1);
        let err = p.fatal.unwrap();
        assert!(err.message.starts_with("invalid YAML"), "{}", err.message);
        let p = parse("a:\n\tb: 1\n");
        let err = p.fatal.unwrap();
        assert!(err.message.contains("tabs"), "{}", err.message);
        assert_eq!(err.pos.line, 2);
    }
}
