//! Semantic checks of typed objects, beyond what the schema says: references
//! between objects, ranges, "exactly one of" rules, templates, expressions
//! and regexes. Every problem is reported at the offending field.
//!
//! Owns: [`Ctx`] and one `check_*` function per kind.
//! Must not depend on: IO, the store, the network.

use std::collections::{BTreeMap, HashMap};

use minijinja::Environment;

use super::diag::{did_you_mean, suggestion_suffix, Diagnostic};
use super::document::place;
use super::yaml::{Node, Pos, Segment};
use crate::model::*;

/// Builds a field path: `path!["then", i, "scale"]`.
macro_rules! path {
    ($($s:expr),* $(,)?) => { [$(Segment::from($s)),*] };
}

impl From<&str> for Segment {
    fn from(s: &str) -> Segment {
        Segment::Key(s.to_string())
    }
}

impl From<&String> for Segment {
    fn from(s: &String) -> Segment {
        Segment::Key(s.clone())
    }
}

impl From<usize> for Segment {
    fn from(i: usize) -> Segment {
        Segment::Index(i)
    }
}

/// Functions usable in trigger expressions besides counters.
pub use crate::rules::expr::TRIGGER_FUNCTIONS;

/// Every declared name per kind, with where it was first declared.
#[derive(Debug, Default)]
pub struct Names {
    by_kind: HashMap<Kind, BTreeMap<String, (String, Pos)>>,
}

impl Names {
    /// Records a name; returns where it was first declared when it is a
    /// duplicate.
    pub fn declare(
        &mut self,
        kind: Kind,
        name: &str,
        file: &str,
        pos: Pos,
    ) -> Option<(String, Pos)> {
        let names = self.by_kind.entry(kind).or_default();
        if let Some(first) = names.get(name) {
            return Some(first.clone());
        }
        names.insert(name.to_string(), (file.to_string(), pos));
        None
    }

    /// True when an object `kind`/`name` is declared.
    pub fn contains(&self, kind: Kind, name: &str) -> bool {
        self.by_kind
            .get(&kind)
            .is_some_and(|m| m.contains_key(name))
    }

    fn names(&self, kind: Kind) -> impl Iterator<Item = &str> {
        self.by_kind
            .get(&kind)
            .into_iter()
            .flat_map(|m| m.keys().map(String::as_str))
    }
}

/// Shared state of the checks.
pub struct Ctx<'a> {
    /// Declared names.
    pub names: &'a Names,
    /// False when references cannot be checked (a file failed to parse, or
    /// a built-in policy file).
    pub refs: bool,
    /// Problems found.
    pub out: Vec<Diagnostic>,
    /// Settings found that this build ignores ([`super::ignored`]).
    pub warnings: Vec<Diagnostic>,
    env: Environment<'static>,
    check_window: Option<std::sync::Arc<crate::rules::Window>>,
    /// The repository root, when files it names can be checked.
    pub repo_root: Option<std::path::PathBuf>,
}

/// The document being checked.
#[derive(Clone, Copy)]
pub struct At<'a> {
    /// Its file.
    pub file: &'a str,
    /// Its tree.
    pub root: &'a Node,
}

/// The kind as a word in messages (`node template`).
pub fn kind_word(kind: Kind) -> &'static str {
    match kind {
        Kind::Project => "project",
        Kind::NodeTemplate => "node template",
        Kind::Group => "group",
        Kind::Target => "target",
        Kind::Counter => "counter",
        Kind::Playbook => "playbook",
        Kind::Trigger => "trigger",
        Kind::Policy => "policy",
    }
}

impl<'a> Ctx<'a> {
    /// A context over `names`.
    pub fn new(names: &'a Names, refs: bool) -> Ctx<'a> {
        Ctx {
            names,
            refs,
            out: Vec::new(),
            warnings: Vec::new(),
            env: crate::template::expr_env(),
            check_window: None,
            repo_root: None,
        }
    }

    fn push(
        &mut self,
        at: At<'_>,
        code: &'static str,
        message: String,
        path: &[Segment],
    ) -> &mut Diagnostic {
        self.out.push(place(code, message, at.file, at.root, path));
        let last = self.out.len() - 1;
        &mut self.out[last]
    }

    fn reference(&mut self, at: At<'_>, path: &[Segment], kind: Kind, name: &str) {
        if !self.refs || self.names.contains(kind, name) {
            return;
        }
        let suggestion = did_you_mean(name, self.names.names(kind));
        let help = if suggestion.is_none() {
            Some(format!("no `{}` named `{name}` is defined", kind.as_str()))
        } else {
            None
        };
        let d = self.push(
            at,
            "reference",
            format!(
                "unknown {} `{name}`{}",
                kind_word(kind),
                suggestion_suffix(suggestion.as_deref())
            ),
            path,
        );
        d.help = help;
    }

    /// `local`, `TARGET`, `TARGET/newest`, `TARGET/HOST`.
    fn on(&mut self, at: At<'_>, path: &[Segment], on: &str) {
        if on == "local" || on.contains("{{") {
            return;
        }
        let target = on.split('/').next().unwrap_or(on);
        if target.is_empty() {
            self.push(
                at,
                "reference",
                format!("`{on}` is not a place to run (expected `local`, `TARGET`, `TARGET/newest` or `TARGET/HOST`)"),
                path,
            );
            return;
        }
        self.reference(at, path, Kind::Target, target);
    }

    fn template(&mut self, at: At<'_>, path: &[Segment], src: &str) {
        if !src.contains("{{") && !src.contains("{%") && !src.contains("{#") {
            return;
        }
        if let Err(e) = self.env.template_from_str(src) {
            let msg = crate::template::describe_error(&e);
            self.push(at, "template", format!("invalid template: {msg}"), path);
        }
    }

    /// Checks that every variable `src` uses is one the template gets
    /// (`shape`: the context's names, with placeholder values).
    fn template_variables(&mut self, at: At<'_>, path: &[Segment], src: &str, shape: &serde_json::Value) {
        for name in crate::template::undefined_variables(src, shape) {
            let known = dotted_names(shape);
            let suggestion = did_you_mean(&name, known.iter().map(String::as_str));
            let d = self.push(at, "template", format!("undefined variable `{name}`{}", suggestion_suffix(suggestion.as_deref())), path);
            d.help = Some(format!("this template gets: {}", known.join(", ")));
        }
    }

    fn expression(&mut self, at: At<'_>, path: &[Segment], src: &str) -> Option<Vec<String>> {
        match self.env.compile_expression(src) {
            Ok(expr) => Some(expr.undeclared_variables(false).into_iter().collect()),
            Err(e) => {
                let msg = crate::template::describe_error(&e);
                self.push(at, "expression", format!("invalid expression: {msg}"), path);
                None
            }
        }
    }

    /// A trigger expression: it compiles and only names counters and the
    /// trigger functions.
    fn trigger_expression(&mut self, at: At<'_>, path: &[Segment], src: &str, operand: bool) {
        let Some(vars) = self.expression(at, path, src) else {
            return;
        };
        let compiled = if operand {
            crate::rules::Operand::compile(src).map(Ok)
        } else {
            crate::rules::Condition::compile(src).map(Err)
        };
        let compiled = match compiled {
            Ok(c) => c,
            Err(e) => {
                self.push(at, "expression", format!("invalid condition: {e}"), path);
                return;
            }
        };
        if !self.refs {
            return;
        }
        let mut vars = vars;
        vars.sort();
        let unknown = vars
            .iter()
            .any(|v| !TRIGGER_FUNCTIONS.contains(&v.as_str()) && !self.names.contains(Kind::Counter, v));
        if !unknown {
            let names = self.names;
            let window = self.check_window.get_or_insert_with(|| {
                crate::rules::expr::check_window(
                    names.names(Kind::Counter),
                    names.names(Kind::Target).chain(names.names(Kind::Group)),
                )
            });
            let checked = match &compiled {
                Ok(operand) => operand.check(window),
                Err(condition) => condition.check(window),
            };
            if let Err(e) = checked {
                self.push(at, "expression", format!("invalid condition: {e}"), path);
            }
        }
        for v in vars {
            if TRIGGER_FUNCTIONS.contains(&v.as_str()) || self.names.contains(Kind::Counter, &v) {
                continue;
            }
            let candidates: Vec<&str> = self
                .names
                .names(Kind::Counter)
                .chain(TRIGGER_FUNCTIONS)
                .collect();
            let suggestion = did_you_mean(&v, candidates.iter().copied());
            let dashed = self
                .names
                .names(Kind::Counter)
                .find(|c| c.contains('-') && c.split('-').any(|part| part == v));
            let help = if let Some(c) = dashed {
                Some(format!(
                    "`-` means minus in expressions: `{c}` is read as `{}`",
                    c.replace('-', " - ")
                ))
            } else if suggestion.is_none() {
                Some(format!(
                    "expressions may use counters and the functions {}",
                    super::diag::backticked(TRIGGER_FUNCTIONS)
                ))
            } else {
                None
            };
            let d = self.push(
                at,
                "reference",
                format!(
                    "unknown counter `{v}` in expression{}",
                    suggestion_suffix(suggestion.as_deref())
                ),
                path,
            );
            d.help = help;
        }
    }

    /// Exactly one of `options` (key name, present) must be given.
    fn exactly_one(&mut self, at: At<'_>, base: &[Segment], what: &str, options: &[(&str, bool)]) {
        let given: Vec<&str> = options
            .iter()
            .filter(|(_, p)| *p)
            .map(|(n, _)| *n)
            .collect();
        if given.len() == 1 {
            return;
        }
        let names = super::diag::backticked(options.iter().map(|(n, _)| *n));
        let (found, path) = match given.as_slice() {
            [] => ("none".to_string(), base.to_vec()),
            [first, second, ..] => {
                let mut p = base.to_vec();
                p.push(Segment::Key((*second).to_string()));
                (format!("`{first}` and `{second}`"), p)
            }
            [_] => return,
        };
        self.push(
            at,
            "one-of",
            format!("{what} needs exactly one of {names}, found {found}"),
            &path,
        );
    }
}

/// Every leaf of `shape` as a dotted name (`node.port`).
fn dotted_names(shape: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, child) in m {
                    let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(child, &name, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let mut out = Vec::new();
    walk(shape, "", &mut out);
    out
}

fn child(base: &[Segment], more: &[Segment]) -> Vec<Segment> {
    let mut p = base.to_vec();
    p.extend_from_slice(more);
    p
}

/// Checks a NodeTemplate.
pub fn check_node_template(ctx: &mut Ctx<'_>, at: At<'_>, t: &NodeTemplate) {
    let (own, other, has_own, has_other) = match t.provider {
        ProviderKind::Local => ("local", "ec2", t.local.is_some(), t.ec2.is_some()),
        ProviderKind::Ec2 => ("ec2", "local", t.ec2.is_some(), t.local.is_some()),
    };
    if !has_own {
        ctx.push(
            at,
            "missing-field",
            format!("provider `{own}` needs `{own}:` settings"),
            &path!["provider"],
        )
        .help = Some(format!("add `{own}:` with the {own} launch settings"));
    }
    if has_other {
        ctx.push(
            at,
            "one-of",
            format!("`{other}:` settings given but the provider is `{own}`"),
            &path![other],
        );
    }
    if let Some(local) = &t.local {
        let shape = crate::model::local_node_variables();
        ctx.template(at, &path!["local", "command"], &local.command);
        ctx.template_variables(at, &path!["local", "command"], &local.command, &shape);
        for (k, v) in &local.env {
            ctx.template(at, &path!["local", "env", k], v);
            ctx.template_variables(at, &path!["local", "env", k], v, &shape);
        }
    }
    if let Some(ec2) = &t.ec2 {
        if let Some(ud) = &ec2.user_data {
            ctx.template(at, &path!["ec2", "user_data"], ud);
        }
    }
    if let Some(pb) = t.provision.as_ref().and_then(|p| p.playbook.as_deref()) {
        ctx.reference(at, &path!["provision", "playbook"], Kind::Playbook, pb);
    }
    if let Some(address) = &t.address {
        ctx.template(at, &path!["address"], address);
    }
    // A manifest or module directory that is not there fails every new
    // node at its provisioning stage: say so now.
    if let (Some(puppet), Some(root)) = (t.provision.as_ref().and_then(|p| p.puppet.as_ref()), ctx.repo_root.clone()) {
        let named = [("manifest", Some(&puppet.manifest)), ("modulepath", puppet.modulepath.as_ref())];
        for (key, rel) in named {
            let Some(rel) = rel else { continue };
            if let Err(e @ super::repo::RepoPathError::Unreadable { .. }) = super::repo::resolve(&root, rel) {
                ctx.push(at, "path", format!("puppet {key} `{rel}` cannot be read: {}", e.reason()), &path!["provision", "puppet", key]);
            }
        }
    }
}

/// Checks a Group.
pub fn check_group(ctx: &mut Ctx<'_>, at: At<'_>, g: &Group) {
    ctx.reference(at, &path!["template"], Kind::NodeTemplate, &g.template);
    if g.min > g.max {
        ctx.push(
            at,
            "range",
            format!("`min` ({}) is greater than `max` ({})", g.min, g.max),
            &path!["min"],
        );
    } else if let Some(d) = g.desired {
        if d < g.min || d > g.max {
            ctx.push(
                at,
                "range",
                format!(
                    "`desired` ({d}) is outside `min`..`max` ({}..{})",
                    g.min, g.max
                ),
                &path!["desired"],
            );
        }
    }
    if let Some(si) = &g.scale_in {
        if let Some(drain) = &si.drain {
            ctx.reference(at, &path!["scale_in", "drain"], Kind::Playbook, drain);
        }
        if let Some(c) = &si.counter {
            ctx.reference(at, &path!["scale_in", "counter"], Kind::Counter, c);
        }
        if si.pick == Some(Pick::LeastBusy) && si.counter.is_none() {
            ctx.push(
                at,
                "missing-field",
                "`pick: least-busy` needs `scale_in.counter`".to_string(),
                &path!["scale_in", "pick"],
            )
            .help = Some("name the counter whose lowest value goes first".to_string());
        }
    }
}

/// Checks a Target.
pub fn check_target(ctx: &mut Ctx<'_>, at: At<'_>, t: &Target) {
    ctx.exactly_one(
        at,
        &[],
        "a target",
        &[("hosts", t.hosts.is_some()), ("group", t.group.is_some())],
    );
    if let Some(g) = &t.group {
        ctx.reference(at, &path!["group"], Kind::Group, g);
    }
    if t.hosts.as_ref().is_some_and(Vec::is_empty) {
        ctx.push(at, "range", "`hosts` is empty".to_string(), &path!["hosts"]);
    }
    for (i, h) in t.hosts.iter().flatten().enumerate() {
        if let Err(e) = HostPort::parse(h) {
            ctx.push(at, "host", e, &path!["hosts", i]).help =
                Some("write `host`, `host:port` (port 1-65535), `[v6]:port` or a bare IPv6 address".to_string());
        }
    }
}

/// Checks a Counter.
pub fn check_counter(ctx: &mut Ctx<'_>, at: At<'_>, c: &Counter) {
    for (i, t) in c.targets.iter().enumerate() {
        ctx.reference(at, &path!["targets", i], Kind::Target, t);
    }
    if !c.units.is_empty() {
        // `units` names the groups of a regex parse: each key must be one.
        let groups: Vec<String> = match &c.parse {
            Some(Parse::Regex(pattern)) => regex::Regex::new(pattern)
                .map(|re| re.capture_names().flatten().map(str::to_string).collect())
                .unwrap_or_default(),
            _ => {
                ctx.push(at, "units", "`units` gives the unit of each named group of a `regex` parse; this counter does not parse with `regex` (use `unit`)".into(), &path!["units"]);
                Vec::new()
            }
        };
        if matches!(&c.parse, Some(Parse::Regex(_))) {
            for k in c.units.keys().filter(|k| !groups.contains(k)) {
                let suggestion = did_you_mean(k, groups.iter().map(String::as_str));
                ctx.push(at, "units", format!("`units.{k}`: the regex has no group `{k}`{}", suggestion_suffix(suggestion.as_deref())), &path!["units", k]);
            }
        }
    }
    let (kind, needs_targets) = match &c.source {
        Source::Ssh(cmd) => {
            ctx.template(at, &path!["source", "ssh", "command"], &cmd.command);
            ("ssh", true)
        }
        Source::Local(cmd) => {
            ctx.template(at, &path!["source", "local", "command"], &cmd.command);
            ("local", false)
        }
        Source::Http(h) => {
            if let Some(url) = &h.url {
                ctx.template(at, &path!["source", "http", "url"], url);
            }
            ("http", true)
        }
        Source::Jmx(_) => ("jmx", true),
        Source::Snmp(_) => ("snmp", true),
        Source::Redis(r) => {
            ctx.exactly_one(
                at,
                &path!["source", "redis"],
                "a redis source",
                &[("llen", r.llen.is_some()), ("command", r.command.is_some())],
            );
            ("redis", true)
        }
        Source::Stream(s) => {
            ctx.template(at, &path!["source", "stream", "command"], &s.command);
            ("stream", s.via != Some(StreamVia::Local))
        }
        Source::Push(_) => ("push", false),
        Source::Alertmanager(_) => ("alertmanager", false),
        Source::Trap(_) => ("trap", false),
    };
    if needs_targets && c.targets.is_empty() {
        ctx.push(
            at,
            "missing-field",
            format!("a counter with source `{kind}` needs at least one target"),
            &path!["source"],
        )
        .help = Some("add `targets: [TARGET]`".to_string());
    }
    if let Some(Parse::Regex(re)) = &c.parse {
        let p = path!["parse", "regex"];
        match regex::Regex::new(re) {
            Ok(compiled) => {
                if compiled.capture_names().flatten().next().is_none() {
                    ctx.push(at, "regex", format!("regex `{re}` has no named group"), &p)
                        .help = Some("name each value: `(?P<load1>[0-9.]+)`".to_string());
                }
            }
            Err(e) => {
                let detail = e.to_string();
                let last = detail.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
                let last = last.trim().trim_start_matches("error: ");
                ctx.push(at, "regex", format!("invalid regex: {last}"), &p);
            }
        }
    }
}

fn check_step(ctx: &mut Ctx<'_>, at: At<'_>, base: &[Segment], s: &Step) {
    let p = |more: &[Segment]| child(base, more);
    if let Some(run) = &s.run {
        ctx.template(at, &p(&path!["run"]), run);
    }
    match &s.sudo {
        Some(Sudo::Command(cmd)) => ctx.template(at, &p(&path!["sudo"]), cmd),
        Some(Sudo::Full(full)) => ctx.template(at, &p(&path!["sudo", "command"]), &full.command),
        None => {}
    }
    if let Some(local) = &s.local {
        ctx.template(at, &p(&path!["local"]), local);
    }
    if let Some(abort) = &s.abort {
        ctx.template(at, &p(&path!["abort"]), abort);
    }
    if let Some(prompt) = &s.prompt {
        ctx.template(at, &p(&path!["prompt", "text"]), &prompt.text);
    }
    if let Some(put) = &s.put {
        ctx.template(at, &p(&path!["put", "dest"]), &put.dest);
    }
    if let Some(get) = &s.get {
        ctx.template(at, &p(&path!["get", "dest"]), &get.dest);
    }
    for (key, expr) in [
        ("when", &s.when),
        ("failed_when", &s.failed_when),
        ("changed_when", &s.changed_when),
    ] {
        if let Some(e) = expr {
            ctx.expression(at, &p(&path![key]), e);
        }
    }
    if let Some(on) = &s.on {
        ctx.on(at, &p(&path!["on"]), on);
    }
}

/// Checks every repository file a document names (`put.src`, `ca_file`,
/// Puppet `manifest`s, `{ file: }` secrets): none may escape the
/// repository root (after `..` and symlinks). Templated paths are checked
/// when they are rendered.
pub fn check_repo_files(ctx: &mut Ctx<'_>, at: At<'_>) {
    let Some(root) = ctx.repo_root.clone() else { return };
    let mut found = Vec::new();
    repo_files(at.root, &mut Vec::new(), &mut found);
    for (path, rel) in found {
        if rel.contains("{{") || rel.contains("{%") {
            continue;
        }
        if let Err(e) = super::repo::check(&root, &rel) {
            ctx.push(at, "path", e.to_string(), &path);
        }
    }
}

/// The paths (and their values) of the repository files below `node`.
fn repo_files(node: &Node, path: &mut Vec<Segment>, out: &mut Vec<(Vec<Segment>, String)>) {
    match &node.value {
        super::yaml::Value::Map(entries) => {
            let parent = match path.last() {
                Some(Segment::Key(k)) => Some(k.clone()),
                _ => None,
            };
            // `{ file: PATH }` is a secret reference wherever it appears.
            let secret = entries.len() == 1;
            for (key, child) in entries {
                let named = match (key.name.as_str(), parent.as_deref()) {
                    ("file", _) => secret,
                    ("src", Some("put")) | ("manifest", Some("puppet")) | ("ca_file", _) => true,
                    _ => false,
                };
                path.push(Segment::Key(key.name.clone()));
                match &child.value {
                    super::yaml::Value::String(rel) if named => out.push((path.clone(), rel.clone())),
                    _ => repo_files(child, path, out),
                }
                path.pop();
            }
        }
        super::yaml::Value::Seq(items) => {
            for (i, child) in items.iter().enumerate() {
                path.push(Segment::Index(i));
                repo_files(child, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Checks a Playbook.
pub fn check_playbook(ctx: &mut Ctx<'_>, at: At<'_>, pb: &Playbook) {
    if let Some(on) = &pb.on {
        ctx.on(at, &path!["on"], on);
    }
    for (i, s) in pb.steps.iter().enumerate() {
        check_step(ctx, at, &path!["steps", i], s);
    }
}

/// Checks a Trigger.
pub fn check_trigger(ctx: &mut Ctx<'_>, at: At<'_>, t: &Trigger) {
    match &t.when {
        Condition::One(e) => ctx.trigger_expression(at, &path!["when"], e, false),
        Condition::All(list) => {
            for (i, e) in list.iter().enumerate() {
                ctx.trigger_expression(at, &path!["when", i], e, false);
            }
        }
    }
    for (i, action) in t.then.iter().enumerate() {
        match action {
            Action::Scale(s) => {
                let base = path!["then", i, "scale"];
                ctx.reference(at, &child(&base, &path!["group"]), Kind::Group, &s.group);
                ctx.exactly_one(
                    at,
                    &base,
                    "`scale`",
                    &[
                        ("by", s.by.is_some()),
                        ("to", s.to.is_some()),
                        ("percent", s.percent.is_some()),
                        ("target_value", s.target_value.is_some()),
                    ],
                );
                if let Some(tv) = &s.target_value {
                    ctx.trigger_expression(
                        at,
                        &child(&base, &path!["target_value", "metric"]),
                        &tv.metric,
                        true,
                    );
                    if tv.target <= 0.0 {
                        ctx.push(
                            at,
                            "range",
                            format!("`target` must be greater than 0, found {}", tv.target),
                            &child(&base, &path!["target_value", "target"]),
                        );
                    }
                }
            }
            Action::Run(r) => {
                let base = path!["then", i, "run"];
                ctx.reference(
                    at,
                    &child(&base, &path!["playbook"]),
                    Kind::Playbook,
                    &r.playbook,
                );
                if let Some(on) = &r.on {
                    ctx.on(at, &child(&base, &path!["on"]), on);
                }
                for (k, v) in &r.vars {
                    if let Some(s) = v.as_str() {
                        ctx.template(at, &child(&base, &path!["vars", k]), s);
                    }
                }
            }
            Action::Notify(n) => {
                let base = path!["then", i, "notify"];
                ctx.exactly_one(
                    at,
                    &base,
                    "`notify`",
                    &[("webhook", n.webhook.is_some()), ("sns", n.sns.is_some())],
                );
                if let Some(body) = n.webhook.as_ref().and_then(|w| w.body.as_ref()) {
                    ctx.template(at, &child(&base, &path!["webhook", "body"]), body);
                }
                if let Some(sns) = &n.sns {
                    ctx.template(at, &child(&base, &path!["sns", "message"]), &sns.message);
                }
            }
        }
    }
}

/// Checks a Policy.
pub fn check_policy(ctx: &mut Ctx<'_>, at: At<'_>, p: &Policy) {
    for (i, rule) in p.rules.iter().enumerate() {
        let scope_var = match rule.each {
            Some(crate::model::PolicyScope::Group) => Some("group"),
            Some(crate::model::PolicyScope::Change) => Some("change"),
            Some(crate::model::PolicyScope::Plan) | None => None,
        };
        let known = |v: &str| ["plan", "flags", "now"].contains(&v) || Some(v) == scope_var;
        let path = path!["rules", i, "deny"];
        if let Some(mut vars) = ctx.expression(at, &path, &rule.deny) {
            vars.sort();
            for v in vars.into_iter().filter(|v| !known(v)) {
                let d = ctx.push(at, "expression", format!("unknown variable `{v}` in policy rule"), &path);
                d.help = Some(match scope_var {
                    Some(s) => format!("policy rules may use `plan`, `flags`, `now` and `{s}` (from `each`)"),
                    None => "policy rules may use `plan`, `flags` and `now`; `each: group` adds `group`, `each: change` adds `change`".to_string(),
                });
            }
        }
        ctx.template(at, &path!["rules", i, "message"], &rule.message);
    }
}
