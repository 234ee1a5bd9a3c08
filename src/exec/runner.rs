//! The playbook runner: hosts in rolling batches (`serial`), `forks` hosts
//! at once within a batch, steps in order on each host, a host stops at its
//! first failure, and the run stops between batches once more than
//! `max_fail_percentage` of the hosts run so far failed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::{json, Map, Value};
use tokio::sync::{Mutex, Semaphore};

use super::result::{HostResult, RunResult, Status, StepResult};
use super::{CommandOutput, CommandRequest, ExecError, HostSpec, LocalTransport, PromptAnswer, PutOptions, SshTransport, Transport};
use crate::config::read_secret;
use crate::model::{Get, Playbook, Prompt, Put, Serial, Step, Sudo};
use crate::template;

/// Default hosts at once for a playbook.
pub const DEFAULT_FORKS: usize = 10;
/// Default wait between retries.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(1);

/// Watches a run (the CLI prints progress with it).
pub trait Progress: Send + Sync {
    /// A batch starts.
    fn batch(&self, _number: usize, _hosts: &[String]) {}
    /// A step finished on a host.
    fn step(&self, _host: &str, _total: usize, _step: &StepResult) {}
    /// A host finished.
    fn host(&self, _result: &HostResult) {}
}

/// Progress that shows nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Answers `prompt` steps.
pub trait Prompter: Send + Sync {
    /// Whether a person can answer.
    fn interactive(&self) -> bool;
    /// Asks; `Err` when no answer can be read.
    fn ask(&self, text: &str, default: Option<&str>) -> Result<String, String>;
}

/// Asks on the terminal (stdin), one question at a time.
pub struct TerminalPrompter {
    lock: StdMutex<()>,
    interactive: bool,
}

impl TerminalPrompter {
    /// Interactive when stdin is a terminal.
    pub fn new() -> TerminalPrompter {
        use std::io::IsTerminal;
        TerminalPrompter { lock: StdMutex::new(()), interactive: std::io::stdin().is_terminal() }
    }
}

impl Default for TerminalPrompter {
    fn default() -> Self {
        TerminalPrompter::new()
    }
}

impl Prompter for TerminalPrompter {
    fn interactive(&self) -> bool {
        self.interactive
    }

    fn ask(&self, text: &str, default: Option<&str>) -> Result<String, String> {
        use std::io::{BufRead, Write};
        let _guard = self.lock.lock().map_err(|_| "prompt lock poisoned".to_string())?;
        let mut err = std::io::stderr().lock();
        let _ = match default {
            Some(d) => write!(err, "{text} [{d}]: "),
            None => write!(err, "{text}: "),
        };
        let _ = err.flush();
        let mut line = String::new();
        let n = std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("cannot read the answer: {e}"))?;
        if n == 0 {
            return default.map(str::to_string).ok_or_else(|| "no answer (end of input)".to_string());
        }
        let answer = line.trim_end_matches(['\n', '\r']).to_string();
        match (answer.is_empty(), default) {
            (true, Some(d)) => Ok(d.to_string()),
            _ => Ok(answer),
        }
    }
}

/// How to run.
pub struct RunOptions {
    /// The config repo root (`put` sources, secret files).
    pub root: PathBuf,
    /// The target selector, for the result.
    pub target: String,
    /// `--var k=v`.
    pub vars: BTreeMap<String, String>,
    /// Show what would run; change nothing.
    pub check: bool,
    /// Override the playbook's `forks`.
    pub forks: Option<usize>,
    /// Command timeout when a step gives none.
    pub default_timeout: Option<Duration>,
    /// Hosts of the steps' `on:` selectors (each resolves to one host).
    pub delegates: BTreeMap<String, HostSpec>,
}

enum Action {
    Run { command: String, literal: bool },
    Sudo { command: String, user: Option<String>, password: Option<SecretString> },
    Local(String),
    Put(Put),
    Get(Get),
    Prompt(Prompt),
    Abort(String),
}

struct Compiled {
    index: usize,
    name: String,
    kind: &'static str,
    action: Action,
    step: Step,
}

struct Inner {
    name: String,
    steps: Vec<Compiled>,
    vars: Map<String, Value>,
    serial: Option<Serial>,
    max_fail_percentage: u8,
    forks: usize,
    opts: RunOptions,
    progress: Arc<dyn Progress>,
    prompter: Arc<dyn Prompter>,
    pool: Mutex<HashMap<String, Arc<dyn Transport>>>,
    /// Answers given on the terminal for `prompt` steps whose text is the same
    /// for every host are asked once.
    answers: StdMutex<HashMap<(String, String), String>>,
}

/// A prepared run: the playbook checked, parameters bound, secrets read.
pub struct Runner {
    inner: Arc<Inner>,
}

fn summary(text: &str) -> String {
    let first = text.lines().next().unwrap_or("");
    if first.chars().count() > 60 || text.lines().count() > 1 {
        format!("{}…", first.chars().take(60).collect::<String>())
    } else {
        first.to_string()
    }
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

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn compile_step(index: usize, step: &Step, root: &Path) -> Result<Compiled, String> {
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
fn bind_params(pb: &Playbook, given: &BTreeMap<String, String>, prompt_vars: &BTreeSet<String>) -> Result<Map<String, Value>, String> {
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

/// What one attempt of an action produced.
enum Outcome {
    Ran(CommandOutput),
    Done { changed: bool },
    Skipped(String),
    Failed(String),
    Unreachable(String),
}

impl Runner {
    /// Checks the playbook and binds parameters. Every error here is a bad
    /// playbook or bad parameters (exit code 4): no host was touched.
    pub fn new(pb: &Playbook, opts: RunOptions, progress: Arc<dyn Progress>, prompter: Arc<dyn Prompter>) -> Result<Runner, String> {
        let mut steps = Vec::new();
        for (i, s) in pb.steps.iter().enumerate() {
            steps.push(compile_step(i + 1, s, &opts.root)?);
        }
        let prompt_vars: BTreeSet<String> = pb.steps.iter().filter_map(|s| s.prompt.as_ref().map(|p| p.var.clone())).collect();
        let vars = bind_params(pb, &opts.vars, &prompt_vars)?;
        if !prompter.interactive() {
            for s in pb.steps.iter().filter_map(|s| s.prompt.as_ref()) {
                if !vars.contains_key(&s.var) && s.default.is_none() {
                    return Err(format!(
                        "prompt `{}` needs an answer and there is no terminal to ask on: pass `--var {}=VALUE`",
                        s.var, s.var
                    ));
                }
            }
        }
        for s in &pb.steps {
            if let Some(on) = &s.on {
                if on != "local" && !opts.delegates.contains_key(on) {
                    return Err(format!("step `on: {on}` was not resolved to a host"));
                }
            }
        }
        let forks = opts.forks.or(pb.forks.map(|f| f as usize)).unwrap_or(DEFAULT_FORKS).max(1);
        Ok(Runner {
            inner: Arc::new(Inner {
                name: pb.name.clone(),
                steps,
                vars,
                serial: pb.serial.clone(),
                max_fail_percentage: pb.max_fail_percentage.unwrap_or(0),
                forks,
                opts,
                progress,
                prompter,
                pool: Mutex::new(HashMap::new()),
                answers: StdMutex::new(HashMap::new()),
            }),
        })
    }

    /// An ad-hoc command (`scaler exec`): one `run` step whose text is used
    /// as written, not templated.
    pub fn adhoc(command: &str, opts: RunOptions, progress: Arc<dyn Progress>) -> Result<Runner, String> {
        let step = Step {
            name: Some(summary(command)),
            run: Some(command.to_string()),
            sudo: None,
            local: None,
            put: None,
            get: None,
            prompt: None,
            abort: None,
            when: None,
            register: None,
            warn: false,
            retries: None,
            delay: None,
            timeout: None,
            failed_when: None,
            changed_when: None,
            on: None,
        };
        let forks = opts.forks.unwrap_or(DEFAULT_FORKS).max(1);
        Ok(Runner {
            inner: Arc::new(Inner {
                name: "exec".into(),
                steps: vec![Compiled {
                    index: 1,
                    name: summary(command),
                    kind: "run",
                    action: Action::Run { command: command.to_string(), literal: true },
                    step,
                }],
                vars: Map::new(),
                serial: None,
                max_fail_percentage: 100,
                forks,
                opts,
                progress,
                prompter: Arc::new(NonInteractive),
                pool: Mutex::new(HashMap::new()),
                answers: StdMutex::new(HashMap::new()),
            }),
        })
    }

    /// Runs on `hosts` and returns every result.
    pub async fn run(&self, hosts: Vec<HostSpec>) -> RunResult {
        let inner = &self.inner;
        let start = Instant::now();
        let total = hosts.len();
        let size = match &inner.serial {
            None => total.max(1),
            Some(Serial::Count(n)) => (*n as usize).max(1),
            Some(Serial::Percent(p)) => ((total as f64 * p.get() / 100.0).ceil() as usize).max(1),
        };
        let mut results: Vec<HostResult> = Vec::new();
        let mut stopped = None;
        let batches: Vec<Vec<HostSpec>> = hosts.chunks(size).map(<[HostSpec]>::to_vec).collect();
        let n_batches = batches.len();
        for (b, batch) in batches.into_iter().enumerate() {
            let number = b + 1;
            if let Some(reason) = &stopped {
                for h in batch {
                    results.push(HostResult {
                        host: h.name.clone(),
                        batch: number,
                        status: Status::Skipped,
                        exit_code: None,
                        message: Some(format!("not run: {reason}")),
                        duration_ms: 0,
                        steps: Vec::new(),
                    });
                }
                continue;
            }
            inner.progress.batch(number, &batch.iter().map(|h| h.name.clone()).collect::<Vec<_>>());
            let sem = Arc::new(Semaphore::new(inner.forks));
            let mut set = tokio::task::JoinSet::new();
            for (i, host) in batch.iter().cloned().enumerate() {
                let inner = self.inner.clone();
                let sem = sem.clone();
                set.spawn(async move {
                    let _permit = sem.acquire_owned().await;
                    let r = inner.run_host(&host, number).await;
                    inner.progress.host(&r);
                    (i, r)
                });
            }
            let mut batch_results: Vec<Option<HostResult>> = vec![None; batch.len()];
            while let Some(joined) = set.join_next().await {
                if let Ok((i, r)) = joined {
                    if let Some(slot) = batch_results.get_mut(i) {
                        *slot = Some(r);
                    }
                }
            }
            for (i, r) in batch_results.into_iter().enumerate() {
                results.push(r.unwrap_or_else(|| HostResult {
                    host: batch.get(i).map(|h| h.name.clone()).unwrap_or_default(),
                    batch: number,
                    status: Status::Failed,
                    exit_code: None,
                    message: Some("internal error: the host's task ended abnormally".into()),
                    duration_ms: 0,
                    steps: Vec::new(),
                }));
            }
            let failed = results.iter().filter(|r| matches!(r.status, Status::Failed | Status::Unreachable)).count();
            let pct = failed as f64 * 100.0 / results.len().max(1) as f64;
            if number < n_batches && failed > 0 && pct > f64::from(inner.max_fail_percentage) {
                stopped = Some(format!(
                    "max_fail_percentage {}% exceeded: {failed} of {} hosts failed ({pct:.0}%)",
                    inner.max_fail_percentage,
                    results.len()
                ));
            }
        }
        let pool: Vec<Arc<dyn Transport>> = inner.pool.lock().await.drain().map(|(_, t)| t).collect();
        for t in pool {
            t.close().await;
        }
        RunResult {
            playbook: inner.name.clone(),
            target: inner.opts.target.clone(),
            check: inner.opts.check,
            status: RunResult::overall(&results),
            stopped,
            duration_ms: ms(start.elapsed()),
            hosts: results,
        }
    }
}

struct NonInteractive;
impl Prompter for NonInteractive {
    fn interactive(&self) -> bool {
        false
    }
    fn ask(&self, _: &str, _: Option<&str>) -> Result<String, String> {
        Err("no terminal".into())
    }
}

impl Inner {
    async fn transport(&self, host: &HostSpec) -> Arc<dyn Transport> {
        let mut pool = self.pool.lock().await;
        let key = match &host.ssh {
            Some(p) => format!("ssh:{}@{}:{}", p.user, p.address, p.port),
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

    async fn run_host(&self, host: &HostSpec, batch: usize) -> HostResult {
        let start = Instant::now();
        let mut ctx = self.host_vars(host);
        let mut steps: Vec<StepResult> = Vec::new();
        let mut registered: BTreeSet<String> = BTreeSet::new();
        let mut status = Status::Skipped;
        let mut message = None;
        let total = self.steps.len();
        for c in &self.steps {
            let r = self.run_step(host, c, &mut ctx, &registered).await;
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
            steps.push(r);
            if stop {
                break;
            }
        }
        HostResult {
            host: host.name.clone(),
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
        let mut r = StepResult {
            index: c.index,
            name: c.name.clone(),
            kind: c.kind,
            status: Status::Ok,
            warning: false,
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            duration_ms: 0,
            attempts: 0,
            action: None,
            diff: None,
            message: None,
        };
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

    fn render_failure(&self, what: &str, tmpl: &str, err: String, registered: &BTreeSet<String>) -> Outcome {
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
            Action::Prompt(p) => {
                if let Some(v) = ctx.get(&p.var) {
                    r.action = Some(format!("{} = {}", p.var, v.as_str().map_or_else(|| v.to_string(), str::to_string)));
                    return Outcome::Done { changed: false };
                }
                let text = match template::render_text(&p.text, &vctx) {
                    Ok(t) => t,
                    Err(e) => return self.render_failure("the prompt", &p.text, e, registered),
                };
                let answer = if self.prompter.interactive() {
                    let key = (p.var.clone(), text.clone());
                    let known = self.answers.lock().ok().and_then(|a| a.get(&key).cloned());
                    match known {
                        Some(a) => Ok(a),
                        None => {
                            let prompter = self.prompter.clone();
                            let (q, d) = (text.clone(), p.default.clone());
                            let asked = tokio::task::spawn_blocking(move || prompter.ask(&q, d.as_deref()))
                                .await
                                .unwrap_or_else(|e| Err(e.to_string()));
                            if let (Ok(a), Ok(mut map)) = (&asked, self.answers.lock()) {
                                map.insert(key, a.clone());
                            }
                            asked
                        }
                    }
                } else {
                    p.default.clone().ok_or_else(|| format!("prompt `{}` needs an answer: pass `--var {}=VALUE`", p.var, p.var))
                };
                match answer {
                    Ok(a) => {
                        r.action = Some(format!("{} = {a}", p.var));
                        ctx.insert(p.var.clone(), Value::String(a));
                        Outcome::Done { changed: false }
                    }
                    Err(e) => Outcome::Failed(format!("prompt `{}`: {e}", p.var)),
                }
            }
            Action::Put(p) => self.put(p, &vctx, t, r, registered).await,
            Action::Get(g) => self.get(host, g, &vctx, t, r, registered).await,
        }
    }

    fn transport_failure(&self, e: ExecError) -> Outcome {
        if e.is_unreachable() {
            Outcome::Unreachable(e.to_string())
        } else {
            Outcome::Failed(e.to_string())
        }
    }

    async fn put(&self, p: &Put, vctx: &Value, t: &dyn Transport, r: &mut StepResult, registered: &BTreeSet<String>) -> Outcome {
        let src = match template::render_text(&p.src, vctx) {
            Ok(s) => s,
            Err(e) => return self.render_failure("`put.src`", &p.src, e, registered),
        };
        let dest = match template::render_text(&p.dest, vctx) {
            Ok(s) => s,
            Err(e) => return self.render_failure("`put.dest`", &p.dest, e, registered),
        };
        let path = self.opts.root.join(&src);
        let raw = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) => return Outcome::Failed(format!("cannot read `{}`: {e}", path.display())),
        };
        let data = if p.template {
            let text = match String::from_utf8(raw) {
                Ok(t) => t,
                Err(_) => return Outcome::Failed(format!("`{src}` is not UTF-8 text and cannot be rendered (`template: true`)")),
            };
            match render_file(&text, vctx) {
                Ok(s) => s.into_bytes(),
                Err(e) => return self.render_failure(&format!("`{src}`"), &text, e, registered),
            }
        } else {
            raw
        };
        let mode = p.mode.as_deref().and_then(|m| u32::from_str_radix(m, 8).ok());
        let mut shown = format!("upload {src} -> {dest} ({} bytes", data.len());
        if let Some(m) = &p.mode {
            shown.push_str(&format!(", mode {m}"));
        }
        if let Some(o) = &p.owner {
            shown.push_str(&format!(", owner {o}"));
        }
        shown.push(')');
        r.action = Some(shown);
        if self.opts.check {
            match t.read_if_exists(&dest).await {
                Ok(old) => r.diff = Some(diff(&dest, old.as_deref(), &data)),
                Err(e) => return self.transport_failure(e),
            }
            return Outcome::Skipped("check mode: not uploaded".into());
        }
        match t.put(&data, &dest, &PutOptions { mode, owner: p.owner.clone() }).await {
            Ok(()) => Outcome::Done { changed: true },
            Err(e) => self.transport_failure(e),
        }
    }

    async fn get(&self, host: &HostSpec, g: &Get, vctx: &Value, t: &dyn Transport, r: &mut StepResult, registered: &BTreeSet<String>) -> Outcome {
        let src = match template::render_text(&g.src, vctx) {
            Ok(s) => s,
            Err(e) => return self.render_failure("`get.src`", &g.src, e, registered),
        };
        let dest = match template::render_text(&g.dest, vctx) {
            Ok(s) => s,
            Err(e) => return self.render_failure("`get.dest`", &g.dest, e, registered),
        };
        r.action = Some(format!("download {src} -> {dest}"));
        if self.opts.check {
            return Outcome::Skipped("check mode: not downloaded".into());
        }
        let data = match t.get(&src).await {
            Ok(d) => d,
            Err(e) => return self.transport_failure(e),
        };
        let dest_path = PathBuf::from(&dest);
        let changed = std::fs::read(&dest_path).map_or(true, |old| old != data);
        match super::local::write_atomic(&dest_path, &data, None) {
            Ok(()) => Outcome::Done { changed },
            Err(e) => Outcome::Failed(format!("cannot write `{dest}` (from `{}`): {e}", host.name)),
        }
    }
}

/// Renders an uploaded file: like [`template::render_text`], keeping a
/// trailing newline.
fn render_file(text: &str, ctx: &Value) -> Result<String, String> {
    let mut env = template::expr_env();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
        .map_err(|e| template::describe_error(&e))?;
    env.set_syntax(syntax);
    env.render_str(text, minijinja::Value::from(minijinja::value::Serde(ctx))).map_err(|e| template::describe_error(&e))
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

/// A unified diff of the remote file against the rendered one.
fn diff(path: &str, old: Option<&[u8]>, new: &[u8]) -> String {
    let new_text = std::str::from_utf8(new);
    match (old, new_text) {
        (None, Ok(n)) => {
            let d = similar::TextDiff::from_lines("", n);
            format!("{}", d.unified_diff().header("/dev/null", &format!("{path} (new)")))
        }
        (Some(o), Ok(n)) => match std::str::from_utf8(o) {
            Ok(o) if o == n => "no change".to_string(),
            Ok(o) => {
                let d = similar::TextDiff::from_lines(o, n);
                format!("{}", d.unified_diff().header(&format!("{path} (remote)"), &format!("{path} (rendered)")))
            }
            Err(_) => format!("binary remote file ({} bytes) would be replaced ({} bytes)", o.len(), n.len()),
        },
        (Some(o), Err(_)) if o == new => "no change".to_string(),
        (o, Err(_)) => format!(
            "binary file: {} -> {} bytes",
            o.map_or("absent".to_string(), |o| o.len().to_string()),
            new.len()
        ),
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

    #[test]
    fn diffs() {
        assert_eq!(diff("/f", Some(b"a\n"), b"a\n"), "no change");
        let d = diff("/f", Some(b"a\nb\n"), b"a\nc\n");
        assert!(d.contains("-b") && d.contains("+c") && d.contains("/f (remote)"), "{d}");
        assert!(diff("/f", None, b"x\n").contains("+x"));
    }
}
