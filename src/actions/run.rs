//! The `run` action: a playbook on a target through the exec runner, with
//! no terminal. `vars` values are templates rendered with the action
//! context; a prompt without a var or default fails before any host runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{ActionContext, ActionError, ActionOutput, Executor};
use crate::exec::{self, NoProgress, Prompter, RunOptions, RunResult, Runner, SshOverrides, Status};
use crate::fleet::Fleet;
use crate::config::Config;
use crate::model::RunAction;
use crate::store::NodeRecord;

/// Default command timeout when neither the step nor the project sets one.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Nobody can answer a prompt: the runner then demands a var or a default.
struct NoTerminal;

impl Prompter for NoTerminal {
    fn interactive(&self) -> bool {
        false
    }

    fn ask(&self, _text: &str, _default: Option<&str>) -> Result<String, String> {
        Err("no terminal: a trigger action cannot answer prompts".into())
    }
}

/// Renders every `vars` value: strings are templates, other JSON values are
/// passed as their JSON text (`3`, `true`).
fn render_vars(ctx: &ActionContext, vars: &BTreeMap<String, Value>) -> Result<BTreeMap<String, String>, ActionError> {
    let mut out = BTreeMap::new();
    for (k, v) in vars {
        let text = match v {
            Value::String(s) => super::render(&format!("run: var `{k}`"), s, ctx)?,
            other => other.to_string(),
        };
        out.insert(k.clone(), text);
    }
    Ok(out)
}

pub(super) async fn execute(ex: &Executor, ctx: &ActionContext, a: &RunAction) -> Result<ActionOutput, ActionError> {
    let nodes = ex.snapshot().await?.nodes;
    let vars = render_vars(ctx, &a.vars)?;
    let req = RunRequest { playbook: &a.playbook, target: a.on.as_deref(), vars, default_timeout: default_timeout(&ex.config) };
    let result = run_playbook(&ex.config, &nodes, req).await.map_err(|e| ActionError::permanent(format!("run: {e}")))?;
    outcome(&result)
}

/// A playbook run with no terminal (a trigger's `run`, the API's `POST /api/v1/runs`).
#[derive(Debug, Clone)]
pub struct RunRequest<'a> {
    /// The playbook.
    pub playbook: &'a str,
    /// The target selector (`None`: the playbook's `on`).
    pub target: Option<&'a str>,
    /// Parameters and prompt answers.
    pub vars: BTreeMap<String, String>,
    /// Command timeout when a step sets none.
    pub default_timeout: Duration,
}

/// Runs a playbook on its target's hosts (given the recorded `nodes`);
/// every host and step is in the result. An error: nothing ran (an
/// unknown playbook or target, a step that names no one host, a prompt
/// without a var or default).
pub async fn run_playbook(config: &Config, nodes: &[NodeRecord], req: RunRequest<'_>) -> Result<RunResult, String> {
    let pb = config.playbooks.get(req.playbook).map(|p| p.spec.clone()).ok_or_else(|| format!("no playbook `{}` in the config", req.playbook))?;
    let target = req
        .target
        .map(str::to_string)
        .or_else(|| pb.on.clone())
        .ok_or_else(|| format!("playbook `{}` has no `on` and none is given", pb.name))?;
    let fleet = Fleet::new(config, nodes);
    let overrides = SshOverrides::default();
    let hosts = exec::resolve(&fleet, &target, &overrides).map_err(|e| format!("run `{}`: {e}", pb.name))?;
    let mut delegates = BTreeMap::new();
    for on in pb.steps.iter().filter_map(|s| s.on.as_ref()) {
        if on == "local" || delegates.contains_key(on) {
            continue;
        }
        let mut hs = exec::resolve(&fleet, on, &overrides).map_err(|e| format!("run `{}`: {e}", pb.name))?;
        match (hs.pop(), hs.is_empty()) {
            (Some(h), true) => {
                delegates.insert(on.clone(), h);
            }
            _ => return Err(format!("run `{}`: step `on: {on}` must name one host (`TARGET/HOST`, `TARGET/newest`)", pb.name)),
        }
    }
    let opts = RunOptions {
        root: config.root.clone(),
        target: target.clone(),
        vars: req.vars,
        check: false,
        forks: None,
        default_timeout: Some(req.default_timeout),
        delegates,
    };
    let runner = Runner::new(&pb, opts, Arc::new(NoProgress), Arc::new(NoTerminal)).map_err(|e| format!("run `{}`: {e}", pb.name))?;
    Ok(runner.run(hosts).await)
}

/// Runs one command on a target's hosts, with no terminal (the API's `POST /api/v1/exec`).
pub async fn run_command(config: &Config, nodes: &[NodeRecord], target: &str, command: &str, timeout: Duration) -> Result<RunResult, String> {
    let fleet = Fleet::new(config, nodes);
    let hosts = exec::resolve(&fleet, target, &SshOverrides::default())?;
    let opts = RunOptions {
        root: config.root.clone(),
        target: target.to_string(),
        vars: BTreeMap::new(),
        check: false,
        forks: None,
        default_timeout: Some(timeout),
        delegates: BTreeMap::new(),
    };
    let runner = Runner::adhoc(command, opts, Arc::new(NoProgress))?;
    Ok(runner.run(hosts).await)
}

/// The project's `defaults.timeout`, else 10s.
pub fn default_timeout(config: &Config) -> Duration {
    config.project.spec.defaults.as_ref().and_then(|d| d.timeout.as_ref()).map_or(DEFAULT_TIMEOUT, |d| d.get())
}

/// The per-host summary; a failed or unreachable host makes a retryable error.
fn outcome(r: &RunResult) -> Result<ActionOutput, ActionError> {
    let hosts: Vec<Value> = r
        .hosts
        .iter()
        .map(|h| {
            json!({
                "host": h.host,
                "status": h.status.as_str(),
                "exit_code": h.exit_code,
                "message": h.message,
                "duration_ms": h.duration_ms,
            })
        })
        .collect();
    let result = json!({
        "playbook": r.playbook,
        "target": r.target,
        "status": r.status.as_str(),
        "stopped": r.stopped,
        "duration_ms": r.duration_ms,
        "hosts": hosts,
    });
    let bad: Vec<String> = r
        .hosts
        .iter()
        .filter(|h| matches!(h.status, Status::Failed | Status::Unreachable))
        .map(|h| match &h.message {
            Some(m) => format!("{} {} ({})", h.host, h.status.as_str(), super::snippet(m, 120)),
            None => format!("{} {}", h.host, h.status.as_str()),
        })
        .collect();
    if bad.is_empty() && matches!(r.status, Status::Ok | Status::Changed | Status::Skipped) {
        return Ok(ActionOutput { result, mutations: Vec::new() });
    }
    Err(ActionError::transient(format!(
        "run `{}` on `{}`: {} of {} hosts did not succeed: {}",
        r.playbook,
        r.target,
        bad.len(),
        r.hosts.len(),
        bad.join("; ")
    ))
    .with_result(result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::HostResult;

    fn host(name: &str, status: Status, message: Option<&str>) -> HostResult {
        HostResult { id: String::new(), state: "", host: name.into(), address: None, port: None, batch: 1, status, exit_code: Some(0), message: message.map(str::to_string), duration_ms: 5, steps: Vec::new() }
    }

    fn result(hosts: Vec<HostResult>) -> RunResult {
        RunResult { playbook: "pb".into(), target: "web".into(), check: false, status: RunResult::overall(&hosts), stopped: None, duration_ms: 9, hosts }
    }

    #[test]
    fn all_good_hosts_succeed_with_a_summary() {
        let out = outcome(&result(vec![host("a", Status::Ok, None), host("b", Status::Changed, None)])).unwrap();
        assert_eq!(out.result["status"], "changed");
        assert_eq!(out.result["hosts"][1]["host"], "b");
        assert_eq!(out.result["hosts"][1]["status"], "changed");
        assert!(out.mutations.is_empty());
    }

    #[test]
    fn a_failed_host_is_retryable_and_named() {
        let e = outcome(&result(vec![host("a", Status::Ok, None), host("b", Status::Failed, Some("step 1: exit 3"))])).unwrap_err();
        assert!(e.retryable);
        assert_eq!(e.message, "run `pb` on `web`: 1 of 2 hosts did not succeed: b failed (step 1: exit 3)");
    }

    #[test]
    fn vars_render_strings_and_pass_other_values() {
        let ctx = ActionContext {
            trigger: "t".into(),
            fired_at_ms: 0,
            job_key: "k".into(),
            action_index: 0,
            revision: None,
            values: json!({"cpu": 93}),
        };
        let vars: BTreeMap<String, Value> =
            [("a".to_string(), json!("{{ trigger }}:{{ values.cpu }}")), ("n".to_string(), json!(3))].into_iter().collect();
        let out = render_vars(&ctx, &vars).unwrap();
        assert_eq!(out["a"], "t:93");
        assert_eq!(out["n"], "3");
        let bad: BTreeMap<String, Value> = [("a".to_string(), json!("{{ nope }}"))].into_iter().collect();
        let e = render_vars(&ctx, &bad).unwrap_err();
        assert!(!e.retryable);
        assert!(e.message.starts_with("run: var `a`: undefined value"), "{}", e.message);
    }
}
