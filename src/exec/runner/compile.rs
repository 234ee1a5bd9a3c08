//! Preparing a run before any host is touched: each step checked (exactly
//! one action, templates and expressions compile, file modes parse, sudo
//! passwords read) and the playbook's parameters bound.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use secrecy::SecretString;
use serde_json::{Map, Value};

use crate::config::read_secret;
use crate::model::{Get, Playbook, Prompt, Put, Step, Sudo};
use crate::template;

/// What a step does, with its secrets read.
pub(super) enum Action {
    Run { command: String, literal: bool },
    Sudo { command: String, user: Option<String>, password: Option<SecretString> },
    Local(String),
    Put(Put),
    Get(Get),
    Prompt(Prompt),
    Abort(String),
}

/// A checked step.
pub(super) struct Compiled {
    pub(super) index: usize,
    pub(super) name: String,
    pub(super) kind: &'static str,
    pub(super) action: Action,
    pub(super) step: Step,
}

impl Compiled {
    /// A result for this step before it runs (`ok`, nothing captured).
    pub(super) fn blank(&self) -> crate::exec::StepResult {
        crate::exec::StepResult {
            id: String::new(),
            state: "",
            index: self.index,
            name: self.name.clone(),
            kind: self.kind,
            status: crate::exec::Status::Ok,
            warning: false,
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            duration_ms: 0,
            attempts: 0,
            action: None,
            diff: None,
            message: None,
        }
    }

    /// The result of a step that was not run, and why.
    pub(super) fn not_run(&self, why: &str) -> crate::exec::StepResult {
        crate::exec::StepResult { status: crate::exec::Status::Skipped, message: Some(format!("not run: {why}")), ..self.blank() }
    }
}

/// The first line of `text`, cut to 60 characters (`…` when cut).
pub(super) fn summary(text: &str) -> String {
    let first = text.lines().next().unwrap_or("");
    if first.chars().count() > 60 || text.lines().count() > 1 {
        format!("{}…", first.chars().take(60).collect::<String>())
    } else {
        first.to_string()
    }
}

pub(super) fn compile_step(index: usize, step: &Step, root: &Path) -> Result<Compiled, String> {
    let at = |msg: String| format!("step {index}{}: {msg}", step.name.as_ref().map(|n| format!(" (`{n}`)")).unwrap_or_default());
    let mut actions = Vec::new();
    if let Some(c) = &step.run {
        actions.push(("run", Action::Run { command: c.clone(), literal: false }, c.clone()));
    }
    if let Some(s) = &step.sudo {
        let (command, user, password) = match s {
            Sudo::Command(c) => (c.clone(), None, None),
            Sudo::Full(f) => (f.command.clone(), f.user.clone(), f.password.clone()),
        };
        let password = match password {
            Some(r) => Some(read_secret(root, &r).map_err(at)?),
            None => None,
        };
        actions.push(("sudo", Action::Sudo { command: command.clone(), user, password }, command));
    }
    if let Some(c) = &step.local {
        actions.push(("local", Action::Local(c.clone()), c.clone()));
    }
    if let Some(p) = &step.put {
        actions.push(("put", Action::Put(p.clone()), format!("{} -> {}", p.src, p.dest)));
    }
    if let Some(g) = &step.get {
        actions.push(("get", Action::Get(g.clone()), format!("{} -> {}", g.src, g.dest)));
    }
    if let Some(p) = &step.prompt {
        actions.push(("prompt", Action::Prompt(p.clone()), p.var.clone()));
    }
    if let Some(a) = &step.abort {
        actions.push(("abort", Action::Abort(a.clone()), a.clone()));
    }
    if actions.len() != 1 {
        return Err(at(format!(
            "needs exactly one of `run`, `sudo`, `local`, `put`, `get`, `prompt`, `abort` (found {})",
            actions.len()
        )));
    }
    let Some((kind, action, text)) = actions.pop() else {
        return Err(at("no action".into()));
    };
    // Templates and expressions must at least compile before any host runs.
    let templates: Vec<&str> = match &action {
        Action::Run { command, .. } | Action::Sudo { command, .. } | Action::Local(command) | Action::Abort(command) => vec![command],
        Action::Put(p) => vec![&p.src, &p.dest],
        Action::Get(g) => vec![&g.src, &g.dest],
        Action::Prompt(p) => vec![&p.text],
    };
    for t in templates {
        template::check_template(t).map_err(|e| at(format!("template `{}`: {e}", summary(t))))?;
    }
    for e in [&step.when, &step.failed_when, &step.changed_when].into_iter().flatten() {
        template::check_expression(e).map_err(|err| at(format!("expression `{e}`: {err}")))?;
    }
    if let Action::Put(p) = &action {
        if let Some(m) = &p.mode {
            u32::from_str_radix(m, 8).map_err(|_| at(format!("mode `{m}` is not an octal file mode")))?;
        }
    }
    Ok(Compiled { index, name: step.name.clone().unwrap_or_else(|| format!("{kind} {}", summary(&text))), kind, action, step: step.clone() })
}

/// Binds parameters: `--var`, else the default; a required one without a
/// value, or a `--var` the playbook does not know, is an error.
pub(super) fn bind_params(pb: &Playbook, given: &BTreeMap<String, String>, prompt_vars: &BTreeSet<String>) -> Result<Map<String, Value>, String> {
    let mut vars = Map::new();
    for k in given.keys() {
        if !pb.params.contains_key(k) && !prompt_vars.contains(k) {
            let known: Vec<String> = pb.params.keys().chain(prompt_vars.iter()).map(|k| format!("`{k}`")).collect();
            return Err(format!(
                "playbook `{}` has no parameter `{k}`{}",
                pb.name,
                if known.is_empty() { String::new() } else { format!("; it takes {}", known.join(", ")) }
            ));
        }
    }
    for (name, p) in &pb.params {
        match (given.get(name), &p.default) {
            (Some(v), _) => {
                vars.insert(name.clone(), Value::String(v.clone()));
            }
            (None, Some(d)) => {
                vars.insert(name.clone(), d.clone());
            }
            (None, None) if p.required => {
                return Err(format!("playbook `{}` needs parameter `{name}`: pass `--var {name}=VALUE`", pb.name));
            }
            (None, None) => {}
        }
    }
    for v in prompt_vars {
        if let Some(x) = given.get(v) {
            vars.insert(v.clone(), Value::String(x.clone()));
        }
    }
    Ok(vars)
}
