//! Turns JSON Schema validation errors into messages for people: one clear
//! message per problem, `oneOf`/`anyOf` failures narrowed to the branch the
//! user meant (or summarised in one line), durations and percentages named.
//!
//! Owns: [`explain`] and [`Problem`].
//! Must not depend on: positions or files (the caller places problems), IO.

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use jsonschema::{JsonType, ValidationError};
use serde_json::Value;

use super::diag::{backticked, did_you_mean, suggestion_suffix};
use super::yaml::Segment;
use crate::model::{DURATION_PATTERN, NAME_PATTERN, PERCENT_PATTERN};

/// A schema problem at a path inside a document.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Diagnostic code.
    pub code: &'static str,
    /// The message.
    pub message: String,
    /// Where, inside the document (for unknown fields: the unknown key).
    pub path: Vec<Segment>,
    /// A hint.
    pub help: Option<String>,
}

const DURATION_DEF: &str = "/$defs/Duration";
const PERCENT_DEF: &str = "/$defs/Percent";
const DURATION_EXAMPLES: &str = "expected e.g. \"90s\", \"5m\", \"1h30m\"";
const PERCENT_EXAMPLES: &str = "expected e.g. \"90%\" or a number from 0 to 100";

/// Explains one validation error against the kind's `root` schema, appending
/// to `out`.
pub fn explain(err: &ValidationError<'_>, root: &Value, out: &mut Vec<Problem>) {
    let path = segments(err);
    let instance: &Value = err.instance();
    let schema_path = err.schema_path().as_str();
    let problem = |code: &'static str, message: String| Problem {
        code,
        message,
        path: path.clone(),
        help: None,
    };
    match err.kind() {
        ValidationErrorKind::Type { kind } => {
            if schema_path.starts_with(DURATION_DEF) {
                out.push(duration_problem(instance, path.clone()));
                return;
            }
            let expected = expected_types(kind);
            let mut p = problem(
                "type",
                format!("expected {expected}, found {}", found(instance)),
            );
            p.help = type_help(root, schema_path, kind, instance);
            out.push(p);
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let allowed = allowed_properties(root, schema_path);
            for name in unexpected {
                let mut p = path.clone();
                p.push(Segment::Key(name.clone()));
                let suggestion = did_you_mean(name, allowed.iter().map(String::as_str));
                let help = if name == "<<" {
                    Some("YAML merge keys (`<<`) are not supported; repeat the fields".to_string())
                } else if suggestion.is_none() && !allowed.is_empty() {
                    Some(format!(
                        "allowed fields: {}",
                        backticked(allowed.iter().map(String::as_str))
                    ))
                } else {
                    None
                };
                out.push(Problem {
                    code: "unknown-field",
                    message: format!(
                        "unknown field `{name}`{}",
                        suggestion_suffix(suggestion.as_deref())
                    ),
                    path: p,
                    help,
                });
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_string);
            out.push(problem(
                "missing-field",
                format!("missing required field `{name}`"),
            ));
        }
        ValidationErrorKind::Pattern { pattern } => {
            out.push(pattern_problem(pattern, instance, path.clone()))
        }
        ValidationErrorKind::Minimum { limit }
        | ValidationErrorKind::ExclusiveMinimum { limit } => {
            if schema_path.starts_with(PERCENT_DEF) {
                out.push(percent_problem(instance, path.clone()));
                return;
            }
            let op = if matches!(err.kind(), ValidationErrorKind::Minimum { .. }) {
                "at least"
            } else {
                "more than"
            };
            out.push(problem(
                "range",
                format!("expected {op} {limit}, found {}", found(instance)),
            ));
        }
        ValidationErrorKind::Maximum { limit }
        | ValidationErrorKind::ExclusiveMaximum { limit } => {
            if schema_path.starts_with(PERCENT_DEF) {
                out.push(percent_problem(instance, path.clone()));
                return;
            }
            let op = if matches!(err.kind(), ValidationErrorKind::Maximum { .. }) {
                "at most"
            } else {
                "less than"
            };
            out.push(problem(
                "range",
                format!("expected {op} {limit}, found {}", found(instance)),
            ));
        }
        ValidationErrorKind::MinItems { limit } => out.push(problem(
            "range",
            format!("expected at least {limit} {}", plural(*limit, "item")),
        )),
        ValidationErrorKind::MaxItems { limit } => out.push(problem(
            "range",
            format!("expected at most {limit} {}", plural(*limit, "item")),
        )),
        ValidationErrorKind::Constant { expected_value } => out.push(problem(
            "schema",
            format!(
                "expected {}, found {}",
                literal(expected_value),
                found(instance)
            ),
        )),
        ValidationErrorKind::Enum { options } => {
            let names: Vec<String> = options
                .as_array()
                .map(|a| a.iter().map(literal_bare).collect())
                .unwrap_or_default();
            out.push(one_of_values(&names, instance, path.clone()));
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            explain_alternatives(err, context, root, out);
        }
        ValidationErrorKind::OneOfMultipleValid { context } => {
            let alts = alternatives(root, schema_path);
            let matched: Vec<String> = context
                .iter()
                .enumerate()
                .filter(|(_, errs)| errs.is_empty())
                .filter_map(|(i, _)| alts.get(i).and_then(Alt::name).map(str::to_string))
                .collect();
            let names: Vec<String> = alts
                .iter()
                .filter_map(Alt::name)
                .map(str::to_string)
                .collect();
            let found_part = if matched.is_empty() {
                "several match".to_string()
            } else {
                format!("found {}", and_list(&matched))
            };
            out.push(problem(
                "one-of",
                format!(
                    "expected exactly one of {}, {found_part}",
                    backticked(names.iter().map(String::as_str))
                ),
            ));
        }
        _ => {
            let text = err.to_string();
            let mut chars = text.chars();
            let message = match chars.next() {
                Some(c) => c.to_lowercase().chain(chars).collect(),
                None => text,
            };
            out.push(problem("schema", message.trim_end_matches('.').to_string()));
        }
    }
}

fn segments(err: &ValidationError<'_>) -> Vec<Segment> {
    err.instance_path()
        .iter()
        .map(|s| match s {
            LocationSegment::Property(p) => Segment::Key(p.to_string()),
            LocationSegment::Index(i) => Segment::Index(i),
        })
        .collect()
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

/// `a`, `a` and `b`, `a`, `b` and `c` (backticked).
fn and_list(items: &[String]) -> String {
    let ticked: Vec<String> = items.iter().map(|s| format!("`{s}`")).collect();
    match ticked.as_slice() {
        [] => "none".to_string(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// How a value is shown in "found ...".
pub fn found(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) if n.is_i64() || n.is_u64() => format!("integer {n}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {}", quoted(s)),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "a mapping".to_string(),
    }
}

/// A string in double quotes, shortened when long.
fn quoted(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() > MAX {
        let short: String = s.chars().take(MAX).collect();
        format!("{:?}", format!("{short}..."))
    } else {
        format!("{s:?}")
    }
}

/// A scalar shown in backticks (`5x`) for "is not a ..." messages.
fn bare(v: &Value) -> String {
    match v {
        Value::String(s) if s.chars().count() > 40 => {
            format!("{}...", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn literal(v: &Value) -> String {
    format!("`{}`", literal_bare(v))
}

fn literal_bare(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn type_name(t: JsonType) -> &'static str {
    match t {
        JsonType::Null => "null",
        JsonType::Boolean => "boolean",
        JsonType::Integer => "integer",
        JsonType::Number => "number",
        JsonType::String => "string",
        JsonType::Array => "a list",
        JsonType::Object => "a mapping",
    }
}

fn expected_types(kind: &TypeKind) -> String {
    let types: Vec<JsonType> = match kind {
        TypeKind::Single(t) => vec![*t],
        TypeKind::Multiple(set) => set.iter().collect(),
    };
    // `Option<T>` fields allow null; saying so only adds noise.
    let useful: Vec<&str> = types
        .iter()
        .filter(|t| **t != JsonType::Null || types.len() == 1)
        .map(|t| type_name(*t))
        .collect();
    useful.join(" or ")
}

/// A hint for scalars YAML typed differently than the user meant.
fn type_help(root: &Value, schema_path: &str, kind: &TypeKind, instance: &Value) -> Option<String> {
    let wants_string = match kind {
        TypeKind::Single(t) => *t == JsonType::String,
        TypeKind::Multiple(set) => set.contains(JsonType::String),
    };
    if !wants_string || !(instance.is_number() || instance.is_boolean()) {
        return None;
    }
    let parent = schema_path
        .strip_suffix("/type")
        .and_then(|p| root.pointer(p));
    let pattern = parent
        .and_then(|s| s.get("pattern"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if pattern.contains("[0-7]") {
        return Some(
            "YAML reads an unquoted `0644` as the number 644; quote it: `mode: \"0644\"`"
                .to_string(),
        );
    }
    Some(format!("quote it to make it a string: `\"{instance}\"`"))
}

fn duration_problem(instance: &Value, path: Vec<Segment>) -> Problem {
    let help = match instance {
        Value::Number(n) => Some(format!("add a unit: `{n}s`")),
        _ => Some("units: `ms`, `s`, `m`, `h`, `d`".to_string()),
    };
    Problem {
        code: "duration",
        message: format!(
            "`{}` is not a duration ({DURATION_EXAMPLES})",
            bare(instance)
        ),
        path,
        help,
    }
}

fn percent_problem(instance: &Value, path: Vec<Segment>) -> Problem {
    Problem {
        code: "percent",
        message: format!(
            "`{}` is not a percentage ({PERCENT_EXAMPLES})",
            bare(instance)
        ),
        path,
        help: None,
    }
}

fn pattern_problem(pattern: &str, instance: &Value, path: Vec<Segment>) -> Problem {
    let v = bare(instance);
    let (code, message, help) = if pattern == DURATION_PATTERN {
        return duration_problem(instance, path);
    } else if pattern == PERCENT_PATTERN {
        return percent_problem(instance, path);
    } else if pattern == NAME_PATTERN {
        (
            "name",
            format!("invalid name `{v}`"),
            Some("names use lowercase letters, digits and `-`, start with a letter or digit, and have at most 63 characters".to_string()),
        )
    } else if pattern.contains(r"[0-9]+(\.[0-9]+)*") {
        (
            "schema",
            format!("`{v}` is not a numeric OID (expected e.g. `1.3.6.1.2.1.1.3.0`)"),
            None,
        )
    } else if pattern.contains("[0-7]") {
        (
            "schema",
            format!("`{v}` is not a file mode (expected e.g. \"0644\")"),
            Some("quote it: `mode: \"0644\"`".to_string()),
        )
    } else if pattern.starts_with("^[a-z0-9][a-z0-9-]") {
        (
            "name",
            format!("invalid prefix `{v}`"),
            Some(
                "use lowercase letters, digits and `-`, starting with a letter or digit"
                    .to_string(),
            ),
        )
    } else {
        (
            "schema",
            format!("`{v}` does not match the pattern `{pattern}`"),
            None,
        )
    };
    Problem {
        code,
        message,
        path,
        help,
    }
}

fn one_of_values(names: &[String], instance: &Value, path: Vec<Segment>) -> Problem {
    let suggestion = instance
        .as_str()
        .and_then(|s| did_you_mean(s, names.iter().map(String::as_str)));
    Problem {
        code: "schema",
        message: format!(
            "expected one of {}, found {}",
            backticked(names.iter().map(String::as_str)),
            found(instance)
        ),
        path,
        help: suggestion.map(|s| format!("did you mean `{s}`?")),
    }
}

/// The properties allowed by the object schema whose `additionalProperties`
/// keyword is at `schema_path`.
fn allowed_properties(root: &Value, schema_path: &str) -> Vec<String> {
    let parent = schema_path
        .strip_suffix("/additionalProperties")
        .unwrap_or(schema_path);
    root.pointer(parent)
        .map(|s| resolve(root, s))
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|props| {
            props
                .keys()
                .filter(|k| k.as_str() != "kind")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Follows `$ref`s (local ones only).
fn resolve<'a>(root: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..16 {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => match r.strip_prefix('#').and_then(|p| root.pointer(p)) {
                Some(target) => schema = target,
                None => break,
            },
            None => break,
        }
    }
    schema
}

/// One alternative of a `oneOf`/`anyOf`.
#[derive(Debug)]
enum Alt {
    /// An object with exactly this key (an externally tagged variant).
    Tag(String),
    /// A `{required: [key]}` rule (one of several keys of a struct).
    Required(String),
    /// A constant string.
    Const(String),
    /// Anything else, described for people.
    Other(String),
}

impl Alt {
    fn name(&self) -> Option<&str> {
        match self {
            Alt::Tag(k) | Alt::Required(k) | Alt::Const(k) => Some(k),
            Alt::Other(_) => None,
        }
    }
}

fn alternatives(root: &Value, schema_path: &str) -> Vec<Alt> {
    root.pointer(schema_path)
        .and_then(Value::as_array)
        .map(|alts| alts.iter().map(|a| classify(root, a)).collect())
        .unwrap_or_default()
}

fn classify(root: &Value, alt: &Value) -> Alt {
    let a = resolve(root, alt);
    if let Some(c) = a.get("const").and_then(Value::as_str) {
        return Alt::Const(c.to_string());
    }
    let required: Vec<&str> = a
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let props = a.get("properties").and_then(Value::as_object);
    if required.len() == 1 && a.get("anyOf").is_none() {
        match props {
            None => return Alt::Required(required[0].to_string()),
            Some(p) if p.len() == 1 => return Alt::Tag(required[0].to_string()),
            Some(_) => {}
        }
    }
    Alt::Other(describe(root, alt))
}

/// "a string", "a list of strings", "a duration", "a mapping"...
fn describe(root: &Value, schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        if r.ends_with(DURATION_DEF) {
            return "a duration".into();
        }
        if r.ends_with(PERCENT_DEF) {
            return "a percentage".into();
        }
    }
    let s = resolve(root, schema);
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = s.get(key).and_then(Value::as_array) {
            let mut parts: Vec<String> = Vec::new();
            for a in alts {
                let d = describe(root, a);
                if !d.is_empty() && !parts.contains(&d) {
                    parts.push(d);
                }
            }
            return parts.join(" or ");
        }
    }
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let parts: Vec<String> = types
        .iter()
        .filter(|t| **t != "null" || types.len() == 1)
        .map(|t| match *t {
            "string" => "a string".to_string(),
            "integer" => "an integer".to_string(),
            "number" => "a number".to_string(),
            "boolean" => "true or false".to_string(),
            "array" => match s.get("items").map(|i| describe(root, i)) {
                Some(item) if item == "a string" => "a list of strings".to_string(),
                _ => "a list".to_string(),
            },
            "object" => "a mapping".to_string(),
            other => other.to_string(),
        })
        .collect();
    parts.join(" or ")
}

/// Errors of a branch that say "this is the wrong shape altogether": a wrong
/// type or constant at the branch's own location, or a nested union whose
/// every branch has the wrong shape.
fn wrong_type(errors: &[ValidationError<'static>], here: &str) -> bool {
    errors.iter().any(|e| {
        e.instance_path().as_str() == here
            && match e.kind() {
                ValidationErrorKind::Type { .. }
                | ValidationErrorKind::Constant { .. }
                | ValidationErrorKind::Enum { .. } => true,
                ValidationErrorKind::AnyOf { context }
                | ValidationErrorKind::OneOfNotValid { context } => {
                    context.iter().all(|b| wrong_type(b, here))
                }
                _ => false,
            }
    })
}

/// Errors of a branch that say "this is another variant": a missing key or
/// extra keys right at the branch's location.
fn wrong_variant(errors: &[ValidationError<'static>], here: &str) -> bool {
    errors.iter().any(|e| {
        e.instance_path().as_str() == here
            && matches!(
                e.kind(),
                ValidationErrorKind::Required { .. }
                    | ValidationErrorKind::AdditionalProperties { .. }
            )
    })
}

fn explain_alternatives(
    err: &ValidationError<'_>,
    context: &[Vec<ValidationError<'static>>],
    root: &Value,
    out: &mut Vec<Problem>,
) {
    let here = err.instance_path().as_str();
    let schemas = root
        .pointer(err.schema_path().as_str())
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let is_null_alt = |i: usize| {
        schemas
            .get(i)
            .is_some_and(|s| s.get("type") == Some(&Value::from("null")))
    };
    // `Option<T>` wraps T in `anyOf: [T, null]`: for a non-null value, only T matters.
    let candidates: Vec<usize> = (0..context.len()).filter(|i| !is_null_alt(*i)).collect();
    if candidates.len() == 1 && !err.instance().is_null() {
        for e in &context[candidates[0]] {
            explain(e, root, out);
        }
        return;
    }
    let typed: Vec<usize> = (0..context.len())
        .filter(|i| !wrong_type(&context[*i], here))
        .collect();
    let chosen = match typed.as_slice() {
        [one] => Some(*one),
        [] => None,
        many => {
            let fitting: Vec<usize> = many
                .iter()
                .copied()
                .filter(|i| !wrong_variant(&context[*i], here))
                .collect();
            match fitting.as_slice() {
                [one] => Some(*one),
                _ => None,
            }
        }
    };
    if let Some(i) = chosen {
        for e in &context[i] {
            explain(e, root, out);
        }
        return;
    }
    out.push(summarise(err, root));
}

fn summarise(err: &ValidationError<'_>, root: &Value) -> Problem {
    let instance: &Value = err.instance();
    let schema_path = err.schema_path().as_str();
    let path = segments(err);
    if schema_path.starts_with(PERCENT_DEF) {
        return percent_problem(instance, path);
    }
    if schema_path.starts_with(DURATION_DEF) {
        return duration_problem(instance, path);
    }
    let alts = alternatives(root, schema_path);
    let names: Vec<String> = alts
        .iter()
        .filter_map(Alt::name)
        .map(str::to_string)
        .collect();
    if !names.is_empty() && names.len() == alts.len() {
        let all_const = alts.iter().all(|a| matches!(a, Alt::Const(_)));
        if all_const {
            return one_of_values(&names, instance, path);
        }
        let (found_part, suggestion) = match instance {
            Value::Object(map) => {
                let keys: Vec<String> = map.keys().filter(|k| names.contains(k)).cloned().collect();
                let unknown: Vec<&String> = map.keys().filter(|k| !names.contains(k)).collect();
                let suggestion = unknown
                    .first()
                    .and_then(|u| did_you_mean(u, names.iter().map(String::as_str)));
                let tagged = alts
                    .iter()
                    .all(|a| matches!(a, Alt::Tag(_) | Alt::Const(_)));
                let shown: Vec<String> = if keys.is_empty() && tagged {
                    map.keys().cloned().collect()
                } else {
                    keys
                };
                (format!("found {}", and_list(&shown)), suggestion)
            }
            Value::String(s) if alts.iter().any(|a| matches!(a, Alt::Tag(t) if t == s)) => {
                return Problem {
                    code: "type",
                    message: format!(
                        "`{s}` needs its settings: expected a mapping `{s}: ...`, found {}",
                        found(instance)
                    ),
                    path,
                    help: Some(format!("write `{s}:` followed by its settings")),
                };
            }
            Value::String(s) => (
                format!("found {}", found(instance)),
                did_you_mean(s, names.iter().map(String::as_str)).filter(|m| m != s),
            ),
            other => (format!("found {}", found(other)), None),
        };
        let lead = if instance.is_object() {
            "expected exactly one of"
        } else {
            "expected one of"
        };
        return Problem {
            code: "one-of",
            message: format!(
                "{lead} {}, {found_part}",
                backticked(names.iter().map(String::as_str))
            ),
            path,
            help: suggestion.map(|s| format!("did you mean `{s}`?")),
        };
    }
    let mut parts: Vec<String> = Vec::new();
    for a in &alts {
        let d = match a {
            Alt::Tag(k) | Alt::Required(k) => format!("a mapping with `{k}`"),
            Alt::Const(c) => format!("`{c}`"),
            Alt::Other(d) => d.clone(),
        };
        if !d.is_empty() && !parts.contains(&d) {
            parts.push(d);
        }
    }
    let expected = if parts.is_empty() {
        "another value".to_string()
    } else {
        parts.join(" or ")
    };
    Problem {
        code: "type",
        message: format!("expected {expected}, found {}", found(instance)),
        path,
        help: None,
    }
}
