//! The playbook runner: hosts in rolling batches (`serial`), `forks` hosts
//! at once within a batch, steps in order on each host, a host stops at its
//! first failure, and the run stops between batches once more than
//! `max_fail_percentage` of the hosts run so far failed.
//!
//! ```text
//! Runner::new (compile: steps checked, parameters bound, secrets read)
//!   -> batch (serial, forks, max_fail_percentage -> RunResult)
//!   -> host (one host's steps in order: when, run/sudo/local/abort, retries,
//!            failed_when/changed_when, register; check mode)
//!        -> prompt (`prompt` steps) | transfer (`put`/`get`, diffs in check mode)
//! ```

mod batch;
mod compile;
mod host;
mod prompt;
mod transfer;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::Mutex;

use super::result::{HostResult, StepResult};
use super::{HostSpec, Transport};
use crate::model::{Playbook, Serial, Step};
use compile::{bind_params, compile_step, summary, Action, Compiled};
pub use prompt::NonInteractive;
pub use prompt::{Prompter, TerminalPrompter};

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
    /// Steps delegated with `on: TARGET/HOST` run once per run: the first
    /// host to reach one runs it, the others take its result.
    once: Vec<tokio::sync::OnceCell<(String, StepResult)>>,
}

/// A prepared run: the playbook checked, parameters bound, secrets read.
pub struct Runner {
    inner: Arc<Inner>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
        let steps_len = steps.len();
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
                once: (0..steps_len).map(|_| tokio::sync::OnceCell::new()).collect(),
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
        let steps_len = 1;
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
                once: (0..steps_len).map(|_| tokio::sync::OnceCell::new()).collect(),
            }),
        })
    }
}
