//! The monscale converter: a monscale export (JSON) to scaler YAML text.
//!
//! monscale (<https://github.com/jpardobl/monscale>, a Django app) keeps
//! `ScaleAction`, `Threshold`, `ServiceInfrastructure` and `MonitoredService`
//! objects. `./manage.py export` writes them as one JSON array of
//! `{"type": "Threshold", ...}` objects that refer to each other by name;
//! Django's `./manage.py dumpdata monscale` writes
//! `{"model": "monscale.threshold", "pk": 1, "fields": {...}}` objects that
//! refer to each other by primary key. Both are read.
//!
//! Each active MonitoredService becomes one file: a Target and a Counter per
//! metric its thresholds use, and one Trigger (thresholds ANDed, `for` = the
//! longest `time_limit`, `cooldown` = `wisdom_time`, `then` from its actions).
//! The mapping table is in docs/import.md.
//!
//! Owns: [`convert`]. Must not depend on: IO, printing.

mod export;
mod groups;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::{Map, Value};

use super::render::{comment, flow, literal_template, quote};
use super::{counter_name, sanitize_name, Conversion, Counts, DocName, ImportError, OutFile};
use export::{found, known_list, read_objects, Action, Export, Infra, Problems, Service, Threshold};
pub use export::KNOWN_TYPES;
use groups::{Needs, Use};
pub use groups::support_docs;

/// The metric kinds (`Threshold.metric`) that have a scaler source.
pub const METRICS: [&str; 3] = ["snmp_oid", "snmp_oid_service_avg", "redis_list_length"];

/// The action kinds (`ScaleAction.action`) that have a scaler action.
pub const ACTIONS: [&str; 5] = [
    "launch_cloudforms_vmachine",
    "destroy_cloudforms_vmachine",
    "publish_msg_to_sns_topic",
    "add_f5_pool_members",
    "del_f5_pool_members",
];

/// Converts the text of a monscale export. `file` names the export in
/// messages and in the header of every generated file. Every problem is
/// reported at once; nothing is produced when there is one.
pub fn convert(file: &str, text: &str) -> Result<Conversion, ImportError> {
    let mut p = Problems::default();
    let objects = read_objects(text, &mut p);
    let export = Export::index(&objects, &mut p);
    let label = Path::new(file).file_name().map_or_else(|| file.to_string(), |n| n.to_string_lossy().into_owned());
    let counts = Counts {
        actions: export.actions.len(),
        thresholds: export.thresholds.len(),
        infrastructures: export.infras.len(),
        services: export.services.len(),
    };
    let mut conv = Conversion { objects: objects.len(), counts, export: label.clone(), ..Conversion::default() };
    let mut taken: HashMap<(&'static str, String), String> = HashMap::new();
    let mut needs = Needs::default();
    for svc in &export.services {
        if !svc.active {
            conv.skipped.push(format!("`{}` (object {}): inactive", svc.name, svc.index));
            continue;
        }
        if let Some((out, uses)) = convert_service(&export, svc, &label, &mut p) {
            claim_names(&out, svc, &mut taken, &mut p);
            needs.add(&out, uses);
            conv.files.push(out);
        }
    }
    (conv.groups, conv.refers_to) = needs.into_parts();
    if p.0.is_empty() {
        Ok(conv)
    } else {
        Err(ImportError::Invalid { file: file.to_string(), problems: p.dedup() })
    }
}

/// What a metric kind turns into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    /// `snmp_oid`: GET one OID from one host.
    SnmpOid,
    /// `snmp_oid_service_avg`: the OID on every node of the infrastructure, averaged.
    SnmpAvg,
    /// `redis_list_length`: LLEN of a list.
    RedisLlen,
}

impl Metric {
    fn parse(kind: &str) -> Result<Metric, String> {
        match kind {
            "snmp_oid" => Ok(Metric::SnmpOid),
            "snmp_oid_service_avg" => Ok(Metric::SnmpAvg),
            "redis_list_length" => Ok(Metric::RedisLlen),
            "http_content" => Err("metric `http_content` (1 when a page's body equals a text) has no scaler source: the `http` source reads numbers from JSON; write a `local` counter by hand".to_string()),
            "http_response_time" => Err("metric `http_response_time` was never implemented by monscale and has no scaler source".to_string()),
            other => Err(format!("unknown metric `{other}` (known: {})", known_list(&METRICS))),
        }
    }

    /// Suffix of names when a service uses several metrics.
    fn tag(self) -> &'static str {
        match self {
            Metric::SnmpOid => "snmp",
            Metric::SnmpAvg => "snmpavg",
            Metric::RedisLlen => "llen",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Metric::SnmpOid => "snmp_oid",
            Metric::SnmpAvg => "snmp_oid_service_avg",
            Metric::RedisLlen => "redis_list_length",
        }
    }
}

/// The service's `data`, read with problems at `<service>.data.<key>`.
struct Data<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl Data<'_> {
    fn string(&self, key: &str, p: &mut Problems) -> Option<Option<String>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s.clone())),
            Some(v) => {
                p.push(format!("{}.{key}", self.path), format!("expected a string, found {}", found(v)));
                None
            }
        }
    }

    fn required(&self, key: &str, why: &str, p: &mut Problems) -> Option<String> {
        let v = self.string(key, p)?;
        if v.is_none() {
            p.push(self.path.clone(), format!("missing `{key}` in `data` ({why})"));
        }
        v
    }

    fn int(&self, key: &str, max: u64, p: &mut Problems) -> Option<Option<u64>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Some(None),
            Some(v) => {
                let n = v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
                match n.filter(|n| *n <= max) {
                    Some(n) => Some(Some(n)),
                    None => {
                        p.push(format!("{}.{key}", self.path), format!("expected a whole number from 0 to {max}, found {}", found(v)));
                        None
                    }
                }
            }
        }
    }
}

/// A generated Target + Counter and the expression reading the counter.
struct Source {
    target: String,
    counter: String,
    target_yaml: Vec<String>,
    counter_yaml: Vec<String>,
    /// The left side of each condition (`last(webqueue)`).
    operand: String,
    notes: Vec<String>,
    /// Whether the Target reads the nodes of the service's group.
    reads_group: bool,
}

fn is_numeric_oid(oid: &str) -> bool {
    let body = oid.strip_prefix('.').unwrap_or(oid);
    !body.is_empty() && body.split('.').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

struct Names {
    target: String,
    counter: String,
    group: Option<String>,
}

fn source_for(metric: Metric, svc: &Service, names: &Names, p: &mut Problems) -> Option<Source> {
    let data = Data { map: &svc.data, path: format!("{}.data", svc.path) };
    let mut notes = Vec::new();
    let mut target_yaml = vec!["kind: Target".to_string(), format!("name: {}", quote(&names.target))];
    target_yaml.push(format!("description: {}", quote(&format!("monscale {} of service `{}`", metric.kind(), svc.name))));
    let (source, operand) = match metric {
        Metric::SnmpOid | Metric::SnmpAvg => {
            let oid = data.required("snmp_variable", "the OID to read", p)?;
            let community = data.string("snmp_read_comunity", p)?;
            if !is_numeric_oid(&oid) {
                p.push(format!("{}.snmp_variable", data.path), format!("`{oid}` is not a numeric OID; scaler reads numeric OIDs (translate it with `snmptranslate -On`)"));
                return None;
            }
            if metric == Metric::SnmpOid {
                let host = data.string("host", p)?.unwrap_or_else(|| "localhost".to_string());
                let port = data.int("port", 65535, p)?;
                target_yaml.push(format!("hosts: [{}]", quote(&host)));
                let mut snmp = Map::new();
                if let Some(c) = community {
                    snmp.insert("community".into(), Value::String(c));
                }
                match port {
                    Some(port) => {
                        snmp.insert("port".into(), Value::from(port));
                    }
                    None => notes.push("monscale's default SNMP port was 514 (the syslog port); the import uses SNMP's 161. Set `snmp.port` if your agents really listen on 514".to_string()),
                }
                if !snmp.is_empty() {
                    target_yaml.push(format!("snmp: {}", flow(&Value::Object(snmp))));
                }
                (format!("{{ snmp: {{ oid: {} }} }}", quote(&oid)), format!("last({})", names.counter))
            } else {
                let Some(group) = &names.group else {
                    p.push(format!("{}.infrastructure", svc.path), "metric `snmp_oid_service_avg` averages over the service's infrastructure, but the service has none");
                    return None;
                };
                target_yaml.push(format!("group: {}", quote(group)));
                if let Some(c) = community {
                    target_yaml.push(format!("snmp: {{ community: {} }}", quote(&c)));
                }
                notes.push("monscale's `snmp_oid_service_avg` always read .1.3.6.1.4.1.2021.11.9.0 on port 514 whatever `snmp_variable` said, and counted no answer as 0; scaler reads `snmp_variable` on port 161 and reports no answer as `nodata`".to_string());
                (format!("{{ snmp: {{ oid: {} }} }}", quote(&oid)), format!("avg({}, group={})", names.counter, quote(group)))
            }
        }
        Metric::RedisLlen => {
            let list = data.required("redis_list_name", "the list to measure", p)?;
            let host = data.string("redis_host", p)?.unwrap_or_else(|| "localhost".to_string());
            let (port, db) = (data.int("redis_port", 65535, p)?, data.int("redis_db", u64::from(u32::MAX), p)?);
            target_yaml.push(format!("hosts: [{}]", quote(&host)));
            let mut redis = Map::new();
            if let Some(port) = port {
                redis.insert("port".into(), Value::from(port));
            }
            if let Some(db) = db {
                redis.insert("db".into(), Value::from(db));
            }
            if !redis.is_empty() {
                target_yaml.push(format!("redis: {}", flow(&Value::Object(redis))));
            }
            (format!("{{ redis: {{ llen: {} }} }}", quote(&list)), format!("last({})", names.counter))
        }
    };
    let counter_yaml = vec![
        "kind: Counter".to_string(),
        format!("name: {}", quote(&names.counter)),
        format!("description: {}", quote(&format!("monscale metric {} of service `{}`", metric.kind(), svc.name))),
        format!("source: {source}"),
        format!("targets: [{}]", quote(&names.target)),
    ];
    let reads_group = metric == Metric::SnmpAvg;
    Some(Source { target: names.target.clone(), counter: names.counter.clone(), target_yaml, counter_yaml, operand, notes, reads_group })
}

fn operator(op: &str) -> Option<&'static str> {
    Some(match op {
        ">" => ">",
        "<" => "<",
        "=" | "==" => "==",
        "<=" => "<=",
        ">=" => ">=",
        "!=" => "!=",
        _ => return None,
    })
}

/// One `then:` item, with a comment naming its source.
struct ThenItem {
    yaml: String,
    notes: Vec<String>,
    /// The group it scales or the playbook it runs.
    uses: Option<Use>,
}

fn describe_action(a: &Action) -> String {
    match &a.pk {
        Some(pk) => format!("ScaleAction `{}` (object {}, pk {pk})", a.name, a.index),
        None => format!("ScaleAction `{}` (object {})", a.name, a.index),
    }
}

/// The group a CloudForms action scales when the service has no
/// infrastructure (monscale 0.5 to 0.12 had none): the VMs tagged
/// `monitoredservice/<name>`, from the action's `data.monitoredservice`.
fn tagged_group(a: &Action, svc: &Service, data: &Data<'_>, p: &mut Problems) -> Option<String> {
    let Some(tag) = data.string("monitoredservice", p)? else {
        let msg = format!(
            "{} scales the service's infrastructure, but the service has none and the action's `data` has no `monitoredservice` (the CloudForms tag that monscale 0.5 to 0.12 scaled)",
            describe_action(a)
        );
        p.push(format!("{}.infrastructure", svc.path), msg);
        return None;
    };
    let Some(group) = sanitize_name(&tag) else {
        p.push(format!("{}.monitoredservice", data.path), format!("`{tag}` has no letter or digit to make a group name from"));
        return None;
    };
    Some(group)
}

fn action_for(a: &Action, group: Option<&str>, svc: &Service, p: &mut Problems) -> Option<ThenItem> {
    let data = Data { map: &a.data, path: format!("{}.data", a.path) };
    let mut notes = Vec::new();
    let mut uses = None;
    let yaml = match a.kind.as_str() {
        "launch_cloudforms_vmachine" | "destroy_cloudforms_vmachine" => {
            let (group, origin) = match group {
                Some(g) => (g.to_string(), None),
                None => {
                    let g = tagged_group(a, svc, &data, p)?;
                    notes.push(format!("ScaleAction `{}` scales the CloudForms VMs tagged `monitoredservice/{g}` (the service has no ServiceInfrastructure): Group `{g}`", a.name));
                    (g, Some(format!("the `monitoredservice` of {}", describe_action(a))))
                }
            };
            let by = if a.kind.starts_with("launch") { 1 } else { -1 };
            if by > 0 && !a.data.is_empty() {
                notes.push(format!("the launch parameters of ScaleAction `{}` ({}) belong in the NodeTemplate of group `{group}`", a.name, comment(&Value::Object(a.data.clone()).to_string())));
            }
            let yaml = format!("scale: {{ group: {}, by: {by} }}", quote(&group));
            let launch = (by > 0).then(|| a.data.clone());
            uses = Some(Use::Group { name: group, origin, launch });
            yaml
        }
        "publish_msg_to_sns_topic" => {
            let topic = data.required("topic", "the SNS topic ARN", p);
            let message = data.required("message", "the message", p);
            let region = data.string("region", p);
            let (Some(topic), Some(message), Some(region)) = (topic, message, region) else { return None };
            if a.data.keys().any(|k| k.starts_with("aws_")) {
                notes.push(format!("the AWS keys of ScaleAction `{}` were not imported: scaler uses the AWS credential chain", a.name));
            }
            if a.data.contains_key("subject") {
                notes.push(format!("the `subject` of ScaleAction `{}` was dropped: scaler's SNS action has a message only", a.name));
            }
            let mut sns = Map::new();
            sns.insert("topic_arn".into(), Value::String(topic));
            if let Some(r) = region {
                sns.insert("region".into(), Value::String(r));
            }
            sns.insert("message".into(), Value::String(literal_template(&message)));
            format!("notify: {{ sns: {} }}", flow(&Value::Object(sns)))
        }
        "add_f5_pool_members" | "del_f5_pool_members" => {
            let playbook = if a.kind.starts_with("add") { "f5-add-pool-members" } else { "f5-del-pool-members" };
            uses = Some(Use::Playbook(playbook));
            let mut vars = Map::new();
            for (k, v) in &a.data {
                if k == "f5_password" {
                    notes.push(format!("the `f5_password` of ScaleAction `{}` was not imported: give playbook `{playbook}` a secret", a.name));
                    continue;
                }
                vars.insert(k.clone(), literal_strings(v));
            }
            format!("run: {{ playbook: {}, on: local, vars: {} }}", quote(playbook), flow(&Value::Object(vars)))
        }
        other => {
            p.push(format!("{}.action", a.path), format!("{}: action kind `{other}` has no scaler equivalent (known: {})", describe_action(a), known_list(&ACTIONS)));
            return None;
        }
    };
    Some(ThenItem { yaml, notes, uses })
}

/// Strings inside a value made literal for minijinja (playbook vars are templates).
fn literal_strings(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(literal_template(s)),
        Value::Array(items) => Value::Array(items.iter().map(literal_strings).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), literal_strings(v))).collect()),
        other => other.clone(),
    }
}

fn seconds(s: u64) -> String {
    format!("{s}s")
}

/// One service's file and what its documents use.
fn convert_service(ex: &Export, svc: &Service, label: &str, p: &mut Problems) -> Option<(OutFile, Vec<Use>)> {
    let before = p.0.len();
    let Some(base) = sanitize_name(&svc.name) else {
        p.push(format!("{}.name", svc.path), format!("service name `{}` has no letter or digit to make a scaler name from", svc.name));
        return None;
    };
    let counter_base = counter_name(&svc.name)?;
    let infra = svc.infra.as_ref().and_then(|r| ex.lookup("ServiceInfrastructure", r, p)).map(|i| &ex.infras[i]);
    let group = match infra {
        Some(i) => match sanitize_name(&i.name) {
            Some(g) => Some(g),
            None => {
                p.push(format!("$[{}]", i.index), format!("infrastructure name `{}` has no letter or digit to make a group name from", i.name));
                return None;
            }
        },
        None => None,
    };
    let thresholds: Vec<&Threshold> = svc.thresholds.iter().filter_map(|r| ex.lookup("Threshold", r, p)).map(|i| &ex.thresholds[i]).collect();
    let actions: Vec<&Action> = svc.actions.iter().filter_map(|r| ex.lookup("ScaleAction", r, p)).map(|i| &ex.actions[i]).collect();
    if svc.thresholds.is_empty() {
        p.push(format!("{}.threshold", svc.path), format!("service `{}` has no thresholds: a scaler trigger needs at least one condition", svc.name));
    }

    // One Target + Counter per metric kind, in order of first use.
    let mut metrics: Vec<Metric> = Vec::new();
    for t in &thresholds {
        match Metric::parse(&t.metric) {
            Ok(m) if !metrics.contains(&m) => metrics.push(m),
            Ok(_) => {}
            Err(msg) => p.push(format!("{}.metric", t.path), format!("Threshold `{}`: {msg}", t.assessment)),
        }
        if operator(&t.operand).is_none() {
            p.push(format!("{}.operand", t.path), format!("Threshold `{}`: unknown operand `{}` (known: `>`, `<`, `=`, `<=`, `>=`)", t.assessment, t.operand));
        }
    }
    let several = metrics.len() > 1;
    let mut sources: BTreeMap<usize, Source> = BTreeMap::new();
    for (i, m) in metrics.iter().enumerate() {
        let names = Names {
            target: if several { format!("{base}-{}", m.tag()) } else { base.clone() },
            counter: if several { format!("{counter_base}{}", m.tag()) } else { counter_base.clone() },
            group: group.clone(),
        };
        if let Some(s) = source_for(*m, svc, &names, p) {
            sources.insert(i, s);
        }
    }
    let then: Vec<ThenItem> = actions.iter().filter_map(|a| action_for(a, group.as_deref(), svc, p)).collect();
    if p.0.len() > before {
        return None;
    }

    let mut when = Vec::new();
    for t in &thresholds {
        let m = metrics.iter().position(|m| Metric::parse(&t.metric).ok() == Some(*m))?;
        let s = sources.get(&m)?;
        let op = operator(&t.operand)?;
        when.push(format!("  - {}   # Threshold `{}`", quote(&format!("{} {op} {}", s.operand, t.value)), comment(&t.assessment)));
    }
    let longest = thresholds.iter().map(|t| t.time_limit).max().unwrap_or(0);
    let mut trigger = vec![
        "kind: Trigger".to_string(),
        format!("name: {}", quote(&base)),
        format!("description: {}", quote(&format!("monscale MonitoredService `{}`", svc.name))),
        "when:".to_string(),
    ];
    trigger.extend(when);
    trigger.push(format!("for: {}   # the longest Threshold time_limit", quote(&seconds(longest))));
    trigger.push(format!("cooldown: {}   # the service's wisdom_time", quote(&seconds(svc.wisdom))));
    if then.is_empty() {
        trigger.push("then: []   # the service had no actions".to_string());
    } else {
        trigger.push("then:".to_string());
        for (item, a) in then.iter().zip(&actions) {
            trigger.push(format!("  - {}   # ScaleAction `{}`", item.yaml, comment(&a.name)));
        }
    }

    let parts = Parts { thresholds: &thresholds, actions: &actions, infra, group: group.as_deref(), sources: &sources, then: &then };
    let header = header(label, svc, &parts);
    let mut docs = Vec::new();
    let mut text = header;
    for s in sources.values() {
        text.push_str(&s.target_yaml.join("\n"));
        text.push_str("\n---\n");
        text.push_str(&s.counter_yaml.join("\n"));
        text.push_str("\n---\n");
        docs.push(super::DocName { kind: "Target", name: s.target.clone() });
        docs.push(super::DocName { kind: "Counter", name: s.counter.clone() });
    }
    text.push_str(&trigger.join("\n"));
    text.push('\n');
    docs.push(DocName { kind: "Trigger", name: base.clone() });
    let mut uses: Vec<Use> = Vec::new();
    if let (Some(i), Some(g)) = (infra, &group) {
        let origin = format!("ServiceInfrastructure `{}` (object {})", i.name, i.index);
        uses.push(Use::Infrastructure { name: g.clone(), origin, min: i.min, max: i.max });
    }
    for s in sources.values().filter(|s| s.reads_group) {
        if let Some(g) = &group {
            uses.push(Use::GroupTarget { name: g.clone(), target: s.target.clone() });
        }
    }
    uses.extend(then.into_iter().filter_map(|t| t.uses));
    Some((OutFile { file_name: format!("monscale-{base}.yaml"), source: svc.name.clone(), docs, text }, uses))
}

/// What one service was converted into, for its header comment.
struct Parts<'a> {
    thresholds: &'a [&'a Threshold],
    actions: &'a [&'a Action],
    infra: Option<&'a Infra>,
    group: Option<&'a str>,
    sources: &'a BTreeMap<usize, Source>,
    then: &'a [ThenItem],
}

fn header(label: &str, svc: &Service, parts: &Parts<'_>) -> String {
    let Parts { thresholds, actions, infra, group, sources, then } = *parts;
    let list = |items: Vec<String>| if items.is_empty() { "none".to_string() } else { items.join(", ") };
    let mut lines = vec![
        format!("# Imported by `scaler import monscale` from `{}`: MonitoredService `{}` (object {}).", comment(label), comment(&svc.name), svc.index),
        format!("# Thresholds (ANDed): {}.", list(thresholds.iter().map(|t| format!("`{}` (object {})", comment(&t.assessment), t.index)).collect())),
        format!("# Actions: {}.", list(actions.iter().map(|a| format!("`{}` (object {})", comment(&a.name), a.index)).collect())),
        "# `for` is the longest time_limit, `cooldown` the service's wisdom_time.".to_string(),
    ];
    if let (Some(i), Some(g)) = (infra, group) {
        lines.push(format!(
            "# ServiceInfrastructure `{}` (object {}) is Group `{g}`: keep its min {} and max {} there.",
            comment(&i.name),
            i.index,
            i.min,
            i.max
        ));
    }
    let notes = sources.values().flat_map(|s| s.notes.iter()).chain(then.iter().flat_map(|t| t.notes.iter()));
    for n in notes {
        lines.push(format!("# Note: {}.", comment(n)));
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Every generated name must be unique per kind across all services.
fn claim_names(out: &OutFile, svc: &Service, taken: &mut HashMap<(&'static str, String), String>, p: &mut Problems) {
    for d in &out.docs {
        let key = (d.kind, d.name.clone());
        match taken.get(&key) {
            Some(other) if other != &svc.name => p.push(
                format!("{}.name", svc.path),
                format!("services `{other}` and `{}` both become {} `{}`; rename one in monscale or in the export", svc.name, d.kind, d.name),
            ),
            _ => {
                taken.insert(key, svc.name.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(v: Value) -> Vec<String> {
        match convert("export.json", &v.to_string()) {
            Ok(c) => panic!("converted: {c:?}"),
            Err(e @ ImportError::Invalid { .. }) => e.lines(),
            Err(e) => panic!("{e}"),
        }
    }

    fn queue_export() -> Value {
        json!([
            {"type": "ScaleAction", "name": "grow", "action": "launch_cloudforms_vmachine", "data": {}},
            {"type": "ScaleAction", "name": "shrink", "action": "destroy_cloudforms_vmachine", "data": {"monitoredservice": "web"}},
            {"type": "Threshold", "assessment": "long", "time_limit": 60, "metric": "redis_list_length", "operand": ">", "value": 50},
            {"type": "Threshold", "assessment": "very long", "time_limit": 300, "metric": "redis_list_length", "operand": ">=", "value": 70},
            {"type": "ServiceInfrastructure", "name": "Web", "max_nodes": 6, "min_nodes": 2},
            {"type": "MonitoredService", "name": "Web Queue", "threshold": ["long", "very long"], "action": ["grow"],
             "active": true, "wisdom_time": 90, "data": {"redis_host": "10.0.0.5", "redis_port": 6380, "redis_list_name": "jobs"},
             "infrastructure": "Web"}
        ])
    }

    #[test]
    fn a_service_becomes_target_counter_and_trigger() {
        let c = convert("/tmp/x/export.json", &queue_export().to_string()).unwrap();
        assert_eq!(c.objects, 6);
        assert_eq!(c.files.len(), 1);
        let f = &c.files[0];
        assert_eq!(f.file_name, "monscale-web-queue.yaml");
        let names: Vec<(&str, &str)> = f.docs.iter().map(|d| (d.kind, d.name.as_str())).collect();
        assert_eq!(names, [("Target", "web-queue"), ("Counter", "webqueue"), ("Trigger", "web-queue")]);
        let expected = "\
# Imported by `scaler import monscale` from `export.json`: MonitoredService `Web Queue` (object 5).
# Thresholds (ANDed): `long` (object 2), `very long` (object 3).
# Actions: `grow` (object 0).
# `for` is the longest time_limit, `cooldown` the service's wisdom_time.
# ServiceInfrastructure `Web` (object 4) is Group `web`: keep its min 2 and max 6 there.
kind: Target
name: \"web-queue\"
description: \"monscale redis_list_length of service `Web Queue`\"
hosts: [\"10.0.0.5\"]
redis: { port: 6380 }
---
kind: Counter
name: \"webqueue\"
description: \"monscale metric redis_list_length of service `Web Queue`\"
source: { redis: { llen: \"jobs\" } }
targets: [\"web-queue\"]
---
kind: Trigger
name: \"web-queue\"
description: \"monscale MonitoredService `Web Queue`\"
when:
  - \"last(webqueue) > 50\"   # Threshold `long`
  - \"last(webqueue) >= 70\"   # Threshold `very long`
for: \"300s\"   # the longest Threshold time_limit
cooldown: \"90s\"   # the service's wisdom_time
then:
  - scale: { group: \"web\", by: 1 }   # ScaleAction `grow`
";
        assert_eq!(f.text, expected);
    }

    #[test]
    fn every_operand_maps_to_a_comparison() {
        for (monscale, scaler) in [(">", ">"), ("<", "<"), ("=", "=="), ("<=", "<="), (">=", ">=")] {
            let mut v = queue_export();
            v[2]["operand"] = json!(monscale);
            let c = convert("e.json", &v.to_string()).unwrap();
            let want = format!("\"last(webqueue) {scaler} 50\"");
            assert!(c.files[0].text.contains(&want), "{monscale}: {}", c.files[0].text);
        }
        let mut v = queue_export();
        v[2]["operand"] = json!("=~");
        assert_eq!(problems(v), ["export.json: $[2].operand: Threshold `long`: unknown operand `=~` (known: `>`, `<`, `=`, `<=`, `>=`)"]);
    }

    #[test]
    fn destroy_scales_in_and_zero_time_limits_give_zero_for() {
        let mut v = queue_export();
        v[5]["action"] = json!(["shrink", "grow"]);
        v[2]["time_limit"] = json!(0);
        v[3]["time_limit"] = json!(0);
        let text = convert("e.json", &v.to_string()).unwrap().files.remove(0).text;
        assert!(text.contains("for: \"0s\""), "{text}");
        assert!(text.contains("  - scale: { group: \"web\", by: -1 }   # ScaleAction `shrink`\n  - scale: { group: \"web\", by: 1 }   # ScaleAction `grow`\n"), "{text}");
    }

    #[test]
    fn unknown_types_name_the_index_the_type_and_the_known_types() {
        let mut v = queue_export();
        v.as_array_mut().unwrap().push(json!({"type": "Alarm", "name": "x"}));
        v.as_array_mut().unwrap().push(json!({"model": "auth.user", "pk": 1, "fields": {}}));
        let known = "(known types: `ScaleAction`, `Threshold`, `ServiceInfrastructure`, `MonitoredService`)";
        assert_eq!(
            problems(v),
            [
                format!("export.json: $[6]: unknown object type `Alarm` {known}"),
                "export.json: $[7]: unknown object type `auth.user` (known types: `monscale.scaleaction`, `monscale.threshold`, `monscale.serviceinfrastructure`, `monscale.monitoredservice`)".to_string(),
            ]
        );
    }

    #[test]
    fn a_misspelled_field_is_reported_once_with_a_suggestion() {
        let mut v = queue_export();
        let t = v[2].as_object_mut().unwrap();
        let metric = t.remove("metric").unwrap();
        t.insert("metirc".into(), metric);
        let p = problems(v);
        assert_eq!(p[0], "export.json: $[2].metirc: unknown field `metirc` of Threshold, did you mean `metric`?");
        assert!(!p.iter().any(|l| l.contains("missing field `metric`")), "{p:#?}");
    }

    #[test]
    fn missing_and_ill_typed_fields_are_all_reported_with_their_path() {
        let mut v = queue_export();
        v[2].as_object_mut().unwrap().remove("metric");
        v[3]["time_limit"] = json!("5 minutes");
        v[5]["wisdom_time"] = json!(-1);
        v[5]["colour"] = json!("red");
        v[5]["data"]["redis_port"] = json!("http");
        assert_eq!(
            problems(v),
            [
                "export.json: $[2]: missing field `metric` of Threshold",
                "export.json: $[3].time_limit: expected a whole number of 0 or more, found `\"5 minutes\"`",
                "export.json: $[5].colour: unknown field `colour` of MonitoredService (known: `name`, `threshold`, `action`, `active`, `wisdom_time`, `data`, `infrastructure`, `scale_type`)",
                "export.json: $[5].wisdom_time: expected a whole number of 0 or more, found `-1`",
            ]
        );
    }

    #[test]
    fn problems_in_service_data_and_references_are_reported_together() {
        let mut v = queue_export();
        v[5]["data"]["redis_port"] = json!("http");
        v[5]["threshold"] = json!(["long", "gone"]);
        v[5]["action"] = json!(["grow", 7]);
        assert_eq!(
            problems(v),
            [
                "export.json: $[5].threshold[1]: no Threshold with assessment `gone` in the export",
                "export.json: $[5].action[1]: no ScaleAction with pk 7 in the export",
                "export.json: $[5].data.redis_port: expected a whole number from 0 to 65535, found `\"http\"`",
            ]
        );
    }

    #[test]
    fn an_unmappable_action_names_the_object_and_field() {
        let mut v = queue_export();
        v[0]["action"] = json!("reboot_router");
        let p = problems(v);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("export.json: $[0].action: ScaleAction `grow` (object 0): action kind `reboot_router` has no scaler equivalent (known: `launch_cloudforms_vmachine`,"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn unmappable_metrics_fail_only_for_active_services() {
        let mut v = queue_export();
        v[2]["metric"] = json!("http_content");
        let p = problems(v.clone());
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("export.json: $[2].metric: Threshold `long`: metric `http_content`"), "{}", p[0]);
        v[5]["active"] = json!(false);
        let c = convert("e.json", &v.to_string()).unwrap();
        assert!(c.files.is_empty());
        assert_eq!(c.skipped, ["`Web Queue` (object 5): inactive"]);
    }

    #[test]
    fn dumpdata_objects_refer_by_pk_and_hold_data_as_text() {
        let v = json!([
            {"model": "monscale.scaleaction", "pk": 3, "fields": {"name": "grow", "action": "launch_cloudforms_vmachine", "data": "{}"}},
            {"model": "monscale.threshold", "pk": 1, "fields": {"assessment": "busy", "time_limit": 45, "metric": "snmp_oid", "operand": ">", "value": 2.5}},
            {"model": "monscale.serviceinfrastructure", "pk": 9, "fields": {"name": "web", "max_nodes": 4, "min_nodes": 1}},
            {"model": "monscale.alarmindicator", "pk": 1, "fields": {"service": 1, "timestamp": "2014-05-01T10:00:00Z"}},
            {"model": "monscale.monitoredservice", "pk": 1, "fields": {"name": "load", "threshold": [1], "action": [3], "active": true,
             "wisdom_time": 120, "scale_type": "up", "infrastructure": 9,
             "data": "{\"host\": \"10.0.0.9\", \"snmp_variable\": \"1.3.6.1.4.1.2021.10.1.3.1\"}"}}
        ]);
        let c = convert("dump.json", &v.to_string()).unwrap();
        assert_eq!(c.objects, 5);
        let text = &c.files[0].text;
        assert!(text.contains("hosts: [\"10.0.0.9\"]\n"), "{text}");
        assert!(text.contains("source: { snmp: { oid: \"1.3.6.1.4.1.2021.10.1.3.1\" } }"), "{text}");
        assert!(text.contains("  - \"last(load) > 2.5\""), "{text}");
        assert!(text.contains("# Note: monscale's default SNMP port was 514"), "{text}");
        assert!(text.contains("  - scale: { group: \"web\", by: 1 }"), "{text}");
    }

    #[test]
    fn names_that_collide_after_sanitising_are_an_error() {
        let mut v = queue_export();
        let mut twin = v[5].clone();
        twin["name"] = json!("web_queue");
        v.as_array_mut().unwrap().push(twin);
        let p = problems(v);
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(p[0], "export.json: $[6].name: services `Web Queue` and `web_queue` both become Target `web-queue`; rename one in monscale or in the export");
    }

    #[test]
    fn symbolic_oids_and_bad_json_are_refused() {
        let v = json!([
            {"type": "Threshold", "assessment": "t", "time_limit": 1, "metric": "snmp_oid", "operand": ">", "value": 1},
            {"type": "MonitoredService", "name": "s", "threshold": ["t"], "action": [], "active": true, "wisdom_time": 1,
             "data": {"snmp_variable": "UCD-SNMP-MIB::laLoad.1"}, "infrastructure": null}
        ]);
        assert_eq!(problems(v), ["export.json: $[1].data.snmp_variable: `UCD-SNMP-MIB::laLoad.1` is not a numeric OID; scaler reads numeric OIDs (translate it with `snmptranslate -On`)"]);
        let Err(ImportError::Invalid { problems, .. }) = convert("e.json", "[{") else { panic!() };
        assert!(problems[0].to_string().starts_with("$: not valid JSON: "), "{}", problems[0]);
        let Err(ImportError::Invalid { problems, .. }) = convert("e.json", "{}") else { panic!() };
        assert_eq!(problems[0].message, "expected a JSON array of monscale objects (the output of `./manage.py export`), found an object");
    }

    #[test]
    fn releases_spell_assesment_and_scale_the_tagged_vms() {
        let mut v = queue_export();
        for t in [2, 3] {
            let obj = v[t].as_object_mut().unwrap();
            let name = obj.remove("assessment").unwrap();
            obj.insert("assesment".into(), name);
        }
        v.as_array_mut().unwrap().remove(4);
        v[4].as_object_mut().unwrap().remove("infrastructure");
        assert_eq!(
            problems(v.clone()),
            ["export.json: $[4].infrastructure: ScaleAction `grow` (object 0) scales the service's infrastructure, but the service has none and the action's `data` has no `monitoredservice` (the CloudForms tag that monscale 0.5 to 0.12 scaled)"]
        );
        v[0]["data"] = json!({"monitoredservice": "Web Tier", "cores": 2});
        let c = convert("e.json", &v.to_string()).unwrap();
        assert_eq!(c.counts, Counts { actions: 2, thresholds: 2, infrastructures: 0, services: 1 });
        assert!(c.files[0].text.contains("  - \"last(webqueue) > 50\"   # Threshold `long`\n"), "{}", c.files[0].text);
        assert!(c.files[0].text.contains("  - scale: { group: \"web-tier\", by: 1 }"), "{}", c.files[0].text);
        assert_eq!(c.groups.len(), 1);
        assert_eq!((c.groups[0].name.as_str(), c.groups[0].min, c.groups[0].max), ("web-tier", 1, 8));
        assert_eq!(c.groups[0].origin, "the `monitoredservice` of ScaleAction `grow` (object 0)");
        // Both spellings at once is ambiguous.
        v[2]["assessment"] = json!("long");
        assert_eq!(
            problems(v),
            [
                "export.json: $[2].assesment: both `assessment` and `assesment` (its spelling in monscale's releases) are given; keep one",
                "export.json: $[4].threshold[0]: no Threshold with assessment `long` in the export",
            ]
        );
    }

    #[test]
    fn a_service_without_actions_gets_an_empty_then() {
        let mut v = queue_export();
        v[5]["action"] = json!([]);
        let text = convert("e.json", &v.to_string()).unwrap().files.remove(0).text;
        assert!(text.ends_with("then: []   # the service had no actions\n"), "{text}");
    }
}
