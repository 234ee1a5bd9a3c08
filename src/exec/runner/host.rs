//! Per-host steps: one host's steps in order, each gated by `when`, run on
//! the host, a delegate (`on:`) or locally (`run`, `sudo`, `local`, `abort`,
//! and `prompt`/`put`/`get` handed to their files), retried, judged
//! (`warn`, `failed_when`, `changed_when`) and registered; the host stops
//! at its first failed or unreachable step. In check mode nothing runs and
//! registered results are not known, so what depends on them is decided at
//! run time.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::compile::{Action, Compiled};
use super::{ms, Inner, DEFAULT_DELAY};
use crate::exec::{
    CommandOutput, CommandRequest, ExecError, HostResult, HostSpec, LocalTransport, PromptAnswer, SshTransport, Status, StepResult, Transport,
};
use crate::template;

/// What one attempt of an action produced.
pub(super) enum Outcome {
    Ran(CommandOutput),
    Done { changed: bool },
    Skipped(String),
    Failed(String),
    Unreachable(String),
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Names an expression may use without defining them (minijinja globals).
const GLOBALS: &[&str] = &["range", "dict", "namespace", "debug", "true", "false", "none", "True", "False", "None", "loop"];

/// The first top-level name `expr` uses that `ctx` does not define.
fn first_undefined(expr: &str, ctx: &Map<String, Value>, extra: &[&str]) -> Option<String> {
    template::expression_variables(expr)
        .ok()?
        .into_iter()
        .find(|v| !ctx.contains_key(v) && !GLOBALS.contains(&v.as_str()) && !extra.contains(&v.as_str()))
}

impl Inner {
    async fn transport(&self, host: &HostSpec) -> Arc<dyn Transport> {
        let mut pool = self.pool.lock().await;
        // One connection per host: two hosts that share an address and
        // port (nodes behind one forwarder) still get their own, so each
        // result and error names its own host.
        let key = match &host.ssh {
            Some(p) => format!("ssh:{}:{}@{}:{}", host.name, p.user, p.address, p.port),
            None => "local".to_string(),
        };
        pool.entry(key)
            .or_insert_with(|| match &host.ssh {
                Some(p) => Arc::new(SshTransport::new(host.name.clone(), p.clone())) as Arc<dyn Transport>,
                None => Arc::new(LocalTransport::new()) as Arc<dyn Transport>,
            })
            .clone()
    }

    fn host_vars(&self, host: &HostSpec) -> Map<String, Value> {
        let mut ctx = self.vars.clone();
        ctx.insert("host".into(), json!(host.name));
        ctx.insert("target".into(), json!(self.opts.target));
        if let Some(p) = &host.ssh {
            ctx.insert("address".into(), json!(p.address));
            ctx.insert("port".into(), json!(p.port));
            ctx.insert("user".into(), json!(p.user));
        } else {
            ctx.insert("address".into(), json!("127.0.0.1"));
        }
        ctx.insert("check".into(), json!(self.opts.check));
        ctx
    }

    pub(super) async fn run_host(&self, host: &HostSpec, batch: usize) -> HostResult {
        let start = Instant::now();
        let mut ctx = self.host_vars(host);
        let mut steps: Vec<StepResult> = Vec::new();
        let mut registered: BTreeSet<String> = BTreeSet::new();
        let mut status = Status::Skipped;
        let mut message = None;
        let total = self.steps.len();
        let mut failed_at: Option<String> = None;
        for (i, c) in self.steps.iter().enumerate() {
            // After a failure every later step is listed, not run.
            if let Some(why) = &failed_at {
                steps.push(c.not_run(why));
                continue;
            }
            // A command may print a secret (its sudo password, a token):
            // masked before it is registered, shown or stored.
            let r = match (c.step.on.as_deref(), self.once.get(i)) {
                // Delegated to one host: once per run, by the first host to
                // get here (with its variables); the others share the result.
                (Some(sel), Some(cell)) if sel != "local" && self.opts.delegates.contains_key(sel) => {
                    let (by, r) = cell
                        .get_or_init(|| async { (host.name.clone(), self.run_step(host, c, &mut ctx, &registered).await.scrubbed()) })
                        .await;
                    let mut r = r.clone();
                    if *by != host.name {
                        let note = format!("ran once for the run (on `{sel}`, for host `{by}`)");
                        r.message = Some(match r.message.take() {
                            Some(m) => format!("{note}: {m}"),
                            None => note,
                        });
                    }
                    r
                }
                _ => self.run_step(host, c, &mut ctx, &registered).await.scrubbed(),
            };
            if let Some(name) = &c.step.register {
                if !self.opts.check {
                    ctx.insert(
                        name.clone(),
                        json!({
                            "stdout": r.stdout, "stderr": r.stderr, "exit_code": r.exit_code,
                            "changed": r.status == Status::Changed, "failed": r.status == Status::Failed,
                            "skipped": r.status == Status::Skipped, "status": r.status.as_str(),
                        }),
                    );
                }
                registered.insert(name.clone());
            }
            self.progress.step(&host.name, total, &r);
            status = status.max(r.status);
            let stop = matches!(r.status, Status::Failed | Status::Unreachable);
            if stop {
                message = r.message.clone().or_else(|| Some(format!("step {} `{}` failed", c.index, c.name)));
            }
            let name = format!("step {} ({}) failed", c.index, c.kind);
            steps.push(r);
            if stop {
                failed_at = Some(if matches!(steps.last().map(|s| s.status), Some(Status::Unreachable)) { "the host is unreachable".into() } else { name });
            }
        }
        HostResult {
                        id: String::new(),
                        state: "",
            host: host.name.clone(),
            address: host.ssh.as_ref().map(|p| p.address.clone()),
            port: host.ssh.as_ref().map(|p| p.port),
            batch,
            status,
            exit_code: steps.iter().rev().find_map(|s| s.exit_code),
            message,
            duration_ms: ms(start.elapsed()),
            steps,
        }
    }

    async fn run_step(&self, host: &HostSpec, c: &Compiled, ctx: &mut Map<String, Value>, registered: &BTreeSet<String>) -> StepResult {
        let start = Instant::now();
        let mut r = c.blank();
        let uses_registered = |vars: Result<BTreeSet<String>, String>| -> Option<String> {
            vars.ok().and_then(|v| v.intersection(registered).next().cloned())
        };
        let mut note = None;
        if let Some(w) = &c.step.when {
            let undefined = first_undefined(w, ctx, &[]);
            let evaluated = match &undefined {
                Some(name) => Err(format!("undefined value: `{name}` is not defined")),
                None => template::eval_expression(w, &Value::Object(ctx.clone())),
            };
            match evaluated {
                Ok(v) if !truthy(&v) => {
                    r.status = Status::Skipped;
                    r.message = Some(format!("`when: {w}` is false"));
                    return r;
                }
                Ok(_) => {}
                Err(e) => {
                    if self.opts.check && undefined.is_some() && uses_registered(template::expression_variables(w)).is_some() {
                        note = Some(format!("runs only if `{w}` (decided at run time from a registered result)"));
                    } else {
                        r.status = Status::Failed;
                        r.message = Some(format!("`when: {w}`: {e}"));
                        return r;
                    }
                }
            }
        }
        let transport = match (&c.action, c.step.on.as_deref()) {
            (Action::Local(_), _) | (_, Some("local")) => self.transport(&HostSpec { name: "local".into(), ssh: None }).await,
            (_, Some(sel)) => match self.opts.delegates.get(sel) {
                Some(h) => self.transport(h).await,
                None => {
                    r.status = Status::Failed;
                    r.message = Some(format!("`on: {sel}` is not resolved"));
                    return r;
                }
            },
            _ => self.transport(host).await,
        };
        let retries = c.step.retries.unwrap_or(0);
        let delay = c.step.delay.as_ref().map_or(DEFAULT_DELAY, |d| d.get());
        let timeout = c.step.timeout.as_ref().map(|d| d.get()).or(self.opts.default_timeout);
        loop {
            r.attempts += 1;
            let outcome = self.attempt(host, c, ctx, registered, transport.as_ref(), timeout, &mut r).await;
            self.judge(c, ctx, outcome, &mut r);
            let again = r.status == Status::Failed && r.attempts <= retries && !self.opts.check;
            if !again {
                break;
            }
            tracing::info!(host = %host.name, step = c.index, attempt = r.attempts, "step failed; retrying");
            tokio::time::sleep(delay).await;
        }
        if let Some(note) = note {
            r.message = Some(match r.message.take() {
                Some(m) => format!("{note}; {m}"),
                None => note,
            });
        }
        r.duration_ms = ms(start.elapsed());
        r
    }

    /// Sets status, exit code and output from an outcome, applying `warn`,
    /// `failed_when` and `changed_when`.
    fn judge(&self, c: &Compiled, ctx: &Map<String, Value>, outcome: Outcome, r: &mut StepResult) {
        match outcome {
            Outcome::Skipped(m) => {
                r.status = Status::Skipped;
                r.message = Some(m);
            }
            Outcome::Unreachable(m) => {
                r.status = Status::Unreachable;
                r.message = Some(m);
            }
            Outcome::Failed(m) => {
                r.status = Status::Failed;
                r.message = Some(m);
            }
            Outcome::Done { changed } => {
                r.status = if changed { Status::Changed } else { Status::Ok };
                r.message = None;
            }
            Outcome::Ran(out) => {
                r.exit_code = out.exit_code;
                r.stdout = out.stdout;
                r.stderr = out.stderr;
                r.message = None;
                r.warning = false;
                let mut eval_ctx = ctx.clone();
                let result = json!({"stdout": r.stdout, "stderr": r.stderr, "exit_code": r.exit_code});
                eval_ctx.insert("result".into(), result.clone());
                if let Some(name) = &c.step.register {
                    eval_ctx.insert(name.clone(), result);
                }
                let eval_ctx = Value::Object(eval_ctx);
                let nonzero = r.exit_code != Some(0);
                let undefined = [&c.step.failed_when, &c.step.changed_when]
                    .into_iter()
                    .flatten()
                    .find_map(|e| first_undefined(e, eval_ctx.as_object().unwrap_or(&Map::new()), &[]).map(|n| (e.clone(), n)));
                if let Some((e, name)) = undefined {
                    r.status = Status::Failed;
                    r.message = Some(format!("`{e}`: undefined value: `{name}` is not defined"));
                    return;
                }
                let failed = match &c.step.failed_when {
                    Some(e) => match template::eval_expression(e, &eval_ctx) {
                        Ok(v) => truthy(&v),
                        Err(err) => {
                            r.status = Status::Failed;
                            r.message = Some(format!("`failed_when: {e}`: {err}"));
                            return;
                        }
                    },
                    None if nonzero && c.step.warn => {
                        r.warning = true;
                        false
                    }
                    None => nonzero,
                };
                if failed {
                    r.status = Status::Failed;
                    r.message = Some(match r.exit_code {
                        Some(code) if c.step.failed_when.is_none() => format!("exit code {code}"),
                        None if c.step.failed_when.is_none() => "killed by a signal".to_string(),
                        _ => format!("`failed_when: {}` is true", c.step.failed_when.as_deref().unwrap_or_default()),
                    });
                    return;
                }
                let changed = match &c.step.changed_when {
                    Some(e) => match template::eval_expression(e, &eval_ctx) {
                        Ok(v) => truthy(&v),
                        Err(err) => {
                            r.status = Status::Failed;
                            r.message = Some(format!("`changed_when: {e}`: {err}"));
                            return;
                        }
                    },
                    None => true,
                };
                r.status = if changed { Status::Changed } else { Status::Ok };
                if r.warning {
                    r.message = Some(format!("warning: exit code {}", r.exit_code.map_or("none".into(), |c| c.to_string())));
                }
            }
        }
    }

    /// A template that does not render: in check mode, one that uses a
    /// registered result (unknown until run time) skips the step instead.
    pub(super) fn render_failure(&self, what: &str, tmpl: &str, err: String, registered: &BTreeSet<String>) -> Outcome {
        if self.opts.check {
            if let Some(name) = template::template_variables(tmpl).ok().and_then(|v| v.intersection(registered).next().cloned()) {
                return Outcome::Skipped(format!("{what} uses the registered result `{name}`: rendered at run time"));
            }
        }
        Outcome::Failed(format!("cannot render {what}: {err}"))
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        host: &HostSpec,
        c: &Compiled,
        ctx: &mut Map<String, Value>,
        registered: &BTreeSet<String>,
        t: &dyn Transport,
        timeout: Option<Duration>,
        r: &mut StepResult,
    ) -> Outcome {
        let vctx = Value::Object(ctx.clone());
        let check = self.opts.check;
        match &c.action {
            Action::Run { command, .. } | Action::Sudo { command, .. } | Action::Local(command) => {
                let rendered = if matches!(c.action, Action::Run { literal: true, .. }) {
                    command.clone()
                } else {
                    match template::render_command(command, &vctx) {
                        Ok(s) => s,
                        Err(e) => return self.render_failure("the command", command, e, registered),
                    }
                };
                let (line, shown, answer) = match &c.action {
                    Action::Sudo { user, password, .. } => {
                        let inner = format!("exec </dev/null; {rendered}");
                        let as_user = user.as_ref().map(|u| format!(" -u {}", template::shell_quote(u))).unwrap_or_default();
                        match password {
                            Some(secret) => {
                                let marker = format!("[scaler-sudo-{}]", uuid::Uuid::new_v4().simple());
                                let line = format!(
                                    "sudo -S -p {}{as_user} -- sh -c {}",
                                    template::shell_quote(&marker),
                                    template::shell_quote(&inner)
                                );
                                let shown = format!("sudo{as_user} (password: ********): {rendered}");
                                (line, shown, Some(PromptAnswer { marker, secret: secret.clone() }))
                            }
                            None => (
                                format!("sudo -n{as_user} -- sh -c {}", template::shell_quote(&inner)),
                                format!("sudo{as_user}: {rendered}"),
                                None,
                            ),
                        }
                    }
                    _ => (rendered.clone(), rendered, None),
                };
                r.action = Some(shown);
                if check {
                    return Outcome::Skipped("check mode: not run".into());
                }
                let req = CommandRequest { command: line, timeout, answer, ..Default::default() };
                match t.run(&req).await {
                    Ok(out) => Outcome::Ran(out),
                    Err(e) => self.transport_failure(e),
                }
            }
            Action::Abort(msg) => match template::render_text(msg, &vctx) {
                Ok(m) if check => Outcome::Skipped(format!("check mode: would abort: {m}")),
                Ok(m) => Outcome::Failed(format!("aborted: {m}")),
                Err(e) => self.render_failure("the abort message", msg, e, registered),
            },
            Action::Prompt(p) => self.prompt(p, ctx, &vctx, r, registered).await,
            Action::Put(p) => self.put(p, &vctx, t, r, registered).await,
            Action::Get(g) => self.get(host, g, &vctx, t, r, registered).await,
        }
    }

    pub(super) fn transport_failure(&self, e: ExecError) -> Outcome {
        if e.is_unreachable() {
            Outcome::Unreachable(e.to_string())
        } else {
            Outcome::Failed(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truthiness() {
        assert!(!truthy(&json!(null)) && !truthy(&json!(0)) && !truthy(&json!("")) && !truthy(&json!(false)));
        assert!(truthy(&json!(1)) && truthy(&json!("x")) && truthy(&json!(true)));
    }
}
