//! Reading a monscale export: recognising each object (`./manage.py
//! export` form or Django `dumpdata` form), typed access to its fields with
//! a JSON path for every problem, and lookups by name and by primary key.
//!
//! Owns: [`Export`] and the object records. Must not depend on: IO, the
//! scaler side of the mapping.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Number, Value};

use crate::import::Problem;

/// The object types of a monscale export.
pub const KNOWN_TYPES: [&str; 4] = ["ScaleAction", "Threshold", "ServiceInfrastructure", "MonitoredService"];

/// Runtime-state models a `dumpdata` may hold; they carry no configuration
/// and are skipped.
pub(super) const RUNTIME_TYPES: [&str; 3] = ["ExecutedAction", "AlarmIndicator", "ActionIndicator"];

/// How monscale's releases (0.5 to 0.12, the ones on PyPI) spell a
/// Threshold's `assessment`; later sources spell it right.
pub(super) const OLD_ASSESSMENT: &str = "assesment";

/// monscale's default `wisdom_time` (seconds).
pub(super) const DEFAULT_WISDOM: u64 = 120;

/// Problems found so far.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<Problem>);

impl Problems {
    pub(super) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { path: path.into(), message: message.into() });
    }

    pub(super) fn dedup(self) -> Vec<Problem> {
        let mut seen = HashSet::new();
        self.0.into_iter().filter(|p| seen.insert((p.path.clone(), p.message.clone()))).collect()
    }
}

/// One object of the export, with its type recognised.
pub(super) struct Raw<'a> {
    pub(super) index: usize,
    pub(super) ty: &'static str,
    pub(super) pk: Option<&'a Value>,
    /// Path of the object's fields (`$[3]` or `$[3].fields`).
    pub(super) path: String,
    pub(super) fields: &'a Map<String, Value>,
}

pub(super) use crate::model::json_type as type_of;

pub(super) fn known_list(items: &[&str]) -> String {
    items.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
}

pub(super) fn read_objects(text: &str, p: &mut Problems) -> Vec<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items,
        Ok(other) => {
            p.push("$", format!("expected a JSON array of monscale objects (the output of `./manage.py export`), found {}", type_of(&other)));
            Vec::new()
        }
        Err(e) => {
            p.push("$", format!("not valid JSON: {e}"));
            Vec::new()
        }
    }
}

/// Recognises one array item: monscale's export form (`type`) or Django's
/// `dumpdata` form (`model`, `pk`, `fields`).
pub(super) fn recognise<'a>(index: usize, item: &'a Value, p: &mut Problems) -> Option<Raw<'a>> {
    let at = format!("$[{index}]");
    let Value::Object(obj) = item else {
        p.push(at, format!("expected an object, found {}", type_of(item)));
        return None;
    };
    if let Some(ty) = obj.get("type") {
        let Some(name) = ty.as_str() else {
            p.push(format!("{at}.type"), format!("expected a string, found {}", type_of(ty)));
            return None;
        };
        let Some(known) = KNOWN_TYPES.iter().find(|k| **k == name) else {
            p.push(at, format!("unknown object type `{name}` (known types: {})", known_list(&KNOWN_TYPES)));
            return None;
        };
        return Some(Raw { index, ty: known, pk: None, path: at, fields: obj });
    }
    if let Some(model) = obj.get("model") {
        return recognise_dumpdata(index, obj, model, p);
    }
    p.push(at, "object has neither `type` (a monscale export) nor `model` (a Django dumpdata)");
    None
}

pub(super) fn recognise_dumpdata<'a>(index: usize, obj: &'a Map<String, Value>, model: &'a Value, p: &mut Problems) -> Option<Raw<'a>> {
    let at = format!("$[{index}]");
    let Some(name) = model.as_str() else {
        p.push(format!("{at}.model"), format!("expected a string, found {}", type_of(model)));
        return None;
    };
    let short = name.rsplit('.').next().unwrap_or(name);
    let app_ok = name.starts_with("monscale.");
    let all: Vec<&'static str> = KNOWN_TYPES.iter().chain(RUNTIME_TYPES.iter()).copied().collect();
    let Some(ty) = all.iter().copied().find(|t| app_ok && t.eq_ignore_ascii_case(short)) else {
        let known: Vec<String> = KNOWN_TYPES.iter().map(|t| format!("monscale.{}", t.to_lowercase())).collect();
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        p.push(at, format!("unknown object type `{name}` (known types: {})", known_list(&known)));
        return None;
    };
    for key in obj.keys().filter(|k| !["model", "pk", "fields"].contains(&k.as_str())) {
        p.push(format!("{at}.{key}"), format!("unknown key `{key}` in a dumpdata object (known: `model`, `pk`, `fields`)"));
    }
    if RUNTIME_TYPES.contains(&ty) {
        return None;
    }
    match obj.get("fields") {
        Some(Value::Object(fields)) => Some(Raw { index, ty, pk: obj.get("pk"), path: format!("{at}.fields"), fields }),
        Some(other) => {
            p.push(format!("{at}.fields"), format!("expected an object, found {}", type_of(other)));
            None
        }
        None => {
            p.push(at, "missing field `fields`");
            None
        }
    }
}

/// Typed access to an object's fields, recording every problem.
pub(super) struct Fields<'a, 'p> {
    pub(super) raw: &'a Raw<'a>,
    pub(super) p: &'p mut Problems,
    /// The fields [`Fields::only`] found unknown: a required field they
    /// misspell is reported once, as the unknown one.
    pub(super) unknown: Vec<String>,
}

impl<'a> Fields<'a, '_> {
    pub(super) fn path(&self, key: &str) -> String {
        format!("{}.{key}", self.raw.path)
    }

    /// Reports fields other than `known` (and `type`).
    pub(super) fn only(&mut self, known: &[&str]) {
        for key in self.raw.fields.keys() {
            if key != "type" && !known.contains(&key.as_str()) {
                let msg = match crate::config::did_you_mean(key, known.iter().copied().filter(|k| !self.raw.fields.contains_key(*k))) {
                    Some(s) => format!("unknown field `{key}` of {}, did you mean `{s}`?", self.raw.ty),
                    None => format!("unknown field `{key}` of {} (known: {})", self.raw.ty, known_list(known)),
                };
                self.p.push(self.path(key), msg);
                self.unknown.push(key.clone());
            }
        }
    }

    pub(super) fn get(&mut self, key: &str, required: bool) -> Option<&'a Value> {
        match self.raw.fields.get(key) {
            // a misspelling of it was reported as unknown, with this name
            None if required && crate::config::did_you_mean(key, self.unknown.iter().map(String::as_str)).is_some() => None,
            None if required => {
                let msg = format!("missing field `{key}` of {}", self.raw.ty);
                self.p.push(self.raw.path.clone(), msg);
                None
            }
            v => v,
        }
    }

    pub(super) fn string(&mut self, key: &str) -> Option<String> {
        let v = self.get(key, true)?;
        match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.p.push(self.path(key), format!("expected a string, found {}", type_of(v)));
                None
            }
        }
    }

    /// A Threshold's name: `assessment`, or `assesment` as monscale's
    /// releases (0.5 to 0.12) spelled it; exactly one of the two.
    pub(super) fn assessment(&mut self) -> Option<String> {
        let fields = self.raw.fields;
        match (fields.contains_key("assessment"), fields.contains_key(OLD_ASSESSMENT)) {
            (_, false) => self.string("assessment"),
            (false, true) => self.string(OLD_ASSESSMENT),
            (true, true) => {
                let msg = format!("both `assessment` and `{OLD_ASSESSMENT}` (its spelling in monscale's releases) are given; keep one");
                self.p.push(self.path(OLD_ASSESSMENT), msg);
                None
            }
        }
    }

    pub(super) fn count(&mut self, key: &str, default: Option<u64>) -> Option<u64> {
        let Some(v) = self.get(key, default.is_none()) else {
            return default;
        };
        match v.as_u64() {
            Some(n) => Some(n),
            None => {
                self.p.push(self.path(key), format!("expected a whole number of 0 or more, found {}", found(v)));
                None
            }
        }
    }

    pub(super) fn number(&mut self, key: &str) -> Option<Number> {
        match self.get(key, true)? {
            Value::Number(n) => Some(n.clone()),
            v => {
                self.p.push(self.path(key), format!("expected a number, found {}", found(v)));
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, key: &str, default: bool) -> Option<bool> {
        match self.get(key, false) {
            None => Some(default),
            Some(Value::Bool(b)) => Some(*b),
            Some(v) => {
                self.p.push(self.path(key), format!("expected true or false, found {}", found(v)));
                None
            }
        }
    }

    /// A reference: a name (export form) or a primary key (dumpdata).
    pub(super) fn reference(&mut self, key: &str, v: &'a Value) -> Option<Ref> {
        match v {
            Value::String(s) => Some(Ref { path: key.to_string(), key: RefKey::Name(s.clone()) }),
            Value::Number(_) => Some(Ref { path: key.to_string(), key: RefKey::Pk(v.to_string()) }),
            other => {
                self.p.push(key.to_string(), format!("expected a name or a primary key, found {}", found(other)));
                None
            }
        }
    }

    pub(super) fn references(&mut self, key: &str) -> Option<Vec<Ref>> {
        let v = self.get(key, true)?;
        let Value::Array(items) = v else {
            self.p.push(self.path(key), format!("expected an array, found {}", found(v)));
            return None;
        };
        let base = self.path(key);
        Some(items.iter().enumerate().filter_map(|(i, item)| self.reference(&format!("{base}[{i}]"), item)).collect())
    }

    /// The JSON `data` field: an object, or a string holding one (dumpdata).
    pub(super) fn data(&mut self, key: &str) -> Option<Map<String, Value>> {
        let v = self.get(key, true)?;
        let parsed = match v {
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(inner) => inner,
                Err(e) => {
                    self.p.push(self.path(key), format!("`{key}` holds no valid JSON: {e}"));
                    return None;
                }
            },
            other => other.clone(),
        };
        match parsed {
            Value::Object(m) => Some(m),
            other => {
                self.p.push(self.path(key), format!("expected a JSON object, found {}", found(&other)));
                None
            }
        }
    }
}

/// A value for a message: short values shown, long ones named by type.
pub(super) fn found(v: &Value) -> String {
    let text = v.to_string();
    if text.len() <= 40 {
        format!("`{text}`")
    } else {
        type_of(v).to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum RefKey {
    Name(String),
    Pk(String),
}

/// A reference from one object to another, with its own JSON path.
#[derive(Debug, Clone)]
pub(super) struct Ref {
    pub(super) path: String,
    pub(super) key: RefKey,
}

pub(super) struct Action {
    pub(super) index: usize,
    pub(super) pk: Option<String>,
    pub(super) path: String,
    pub(super) name: String,
    pub(super) kind: String,
    pub(super) data: Map<String, Value>,
}

pub(super) struct Threshold {
    pub(super) index: usize,
    pub(super) path: String,
    pub(super) assessment: String,
    pub(super) time_limit: u64,
    pub(super) metric: String,
    pub(super) operand: String,
    pub(super) value: Number,
}

pub(super) struct Infra {
    pub(super) index: usize,
    pub(super) name: String,
    pub(super) min: u64,
    pub(super) max: u64,
}

pub(super) struct Service {
    pub(super) index: usize,
    pub(super) path: String,
    pub(super) name: String,
    pub(super) thresholds: Vec<Ref>,
    pub(super) actions: Vec<Ref>,
    pub(super) active: bool,
    pub(super) wisdom: u64,
    pub(super) data: Map<String, Value>,
    pub(super) infra: Option<Ref>,
}

/// Everything read from the export, with lookups by name and by pk.
#[derive(Default)]
pub(super) struct Export {
    pub(super) actions: Vec<Action>,
    pub(super) thresholds: Vec<Threshold>,
    pub(super) infras: Vec<Infra>,
    pub(super) services: Vec<Service>,
    pub(super) keys: HashMap<(&'static str, RefKey), usize>,
}

impl Export {
    pub(super) fn index(items: &[Value], p: &mut Problems) -> Export {
        let raws: Vec<Raw<'_>> = items.iter().enumerate().filter_map(|(i, item)| recognise(i, item, p)).collect();
        let mut ex = Export::default();
        for raw in &raws {
            ex.read(raw, p);
        }
        ex
    }

    pub(super) fn read(&mut self, raw: &Raw<'_>, p: &mut Problems) {
        let mut f = Fields { raw, p, unknown: Vec::new() };
        let pk = raw.pk.map(Value::to_string);
        let (name, slot) = match raw.ty {
            "ScaleAction" => {
                f.only(&["name", "action", "data"]);
                let (name, kind, data) = (f.string("name"), f.string("action"), f.data("data"));
                let (Some(name), Some(kind), Some(data)) = (name, kind, data) else { return };
                self.actions.push(Action { index: raw.index, pk: pk.clone(), path: raw.path.clone(), name: name.clone(), kind, data });
                (name, self.actions.len() - 1)
            }
            "Threshold" => {
                f.only(&["assessment", "assesment", "time_limit", "metric", "operand", "value"]);
                let a = f.assessment();
                let t = f.count("time_limit", None);
                let (m, o, v) = (f.string("metric"), f.string("operand"), f.number("value"));
                let (Some(assessment), Some(time_limit), Some(metric), Some(operand), Some(value)) = (a, t, m, o, v) else { return };
                let path = raw.path.clone();
                self.thresholds.push(Threshold { index: raw.index, path, assessment: assessment.clone(), time_limit, metric, operand, value });
                (assessment, self.thresholds.len() - 1)
            }
            "ServiceInfrastructure" => {
                f.only(&["name", "max_nodes", "min_nodes"]);
                let (n, max, min) = (f.string("name"), f.count("max_nodes", Some(8)), f.count("min_nodes", Some(1)));
                let (Some(name), Some(max), Some(min)) = (n, max, min) else { return };
                self.infras.push(Infra { index: raw.index, name: name.clone(), min, max });
                (name, self.infras.len() - 1)
            }
            _ => {
                f.only(&["name", "threshold", "action", "active", "wisdom_time", "data", "infrastructure", "scale_type"]);
                let (n, t, a) = (f.string("name"), f.references("threshold"), f.references("action"));
                let (active, wisdom, data) = (f.boolean("active", true), f.count("wisdom_time", Some(DEFAULT_WISDOM)), f.data("data"));
                let infra = match f.get("infrastructure", false) {
                    None | Some(Value::Null) => None,
                    Some(v) => {
                        let at = f.path("infrastructure");
                        f.reference(&at, v)
                    }
                };
                let (Some(name), Some(thresholds), Some(actions), Some(active), Some(wisdom), Some(data)) = (n, t, a, active, wisdom, data) else { return };
                let path = raw.path.clone();
                self.services.push(Service { index: raw.index, path, name: name.clone(), thresholds, actions, active, wisdom, data, infra });
                (name, self.services.len() - 1)
            }
        };
        let natural = (raw.ty, RefKey::Name(name.clone()));
        if let Some(first) = self.keys.get(&natural) {
            p.push(format!("{}.{}", raw.path, natural_key(raw.ty)), format!("duplicate {} `{name}` (the first is object {first} of its type)", raw.ty));
        } else {
            self.keys.insert(natural, slot);
        }
        if let Some(pk) = pk {
            self.keys.insert((raw.ty, RefKey::Pk(pk)), slot);
        }
    }

    pub(super) fn lookup(&self, ty: &'static str, r: &Ref, p: &mut Problems) -> Option<usize> {
        let found = self.keys.get(&(ty, r.key.clone())).copied();
        if found.is_none() {
            let what = match &r.key {
                RefKey::Name(n) => format!("no {ty} with {} `{n}` in the export", natural_key(ty)),
                RefKey::Pk(pk) => format!("no {ty} with pk {pk} in the export"),
            };
            p.push(r.path.clone(), what);
        }
        found
    }
}

pub(super) fn natural_key(ty: &str) -> &'static str {
    if ty == "Threshold" {
        "assessment"
    } else {
        "name"
    }
}

