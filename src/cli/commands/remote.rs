//! What `scaler exec` and `scaler run` share: SSH flags, target
//! resolution against the config and recorded nodes, progress and result
//! printing.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cli::workspace::{load_config, location};
use crate::cli::{Failure, Ui};
use crate::config::Config;
use crate::exec::{self, HostResult, HostSpec, RunResult, SshOverrides, Status, StepResult};
use crate::fleet::Fleet;
use crate::model::HostKeyPolicy;
use crate::store::NodeRecord;

/// Exit code for a bad playbook, parameters or target (nothing ran).
pub const BAD_INPUT: u8 = 4;

/// `--host-key-policy` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PolicyArg {
    /// Refuse hosts whose key is not in known_hosts.
    Strict,
    /// Record unknown keys on first use (a changed key is still refused).
    AcceptNew,
}

/// Flags shared by `exec` and `run`.
#[derive(Debug, clap::Args)]
pub struct RemoteArgs {
    /// SSH user (overrides the config).
    #[arg(long)]
    pub user: Option<String>,
    /// SSH private key file (overrides the config).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// known_hosts file (overrides the config).
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// What to do with an unknown host key (overrides the config).
    #[arg(long, value_enum)]
    pub host_key_policy: Option<PolicyArg>,
    /// SSH connect timeout (`10s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub connect_timeout: Option<Duration>,
    /// How many hosts at once.
    #[arg(long)]
    pub forks: Option<usize>,
    /// Print the full result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl RemoteArgs {
    /// The SSH overrides from the flags.
    pub fn overrides(&self) -> SshOverrides {
        SshOverrides {
            user: self.user.clone(),
            key: self.key.clone(),
            known_hosts: self.known_hosts.clone(),
            host_key_policy: self.host_key_policy.map(|p| match p {
                PolicyArg::Strict => HostKeyPolicy::Strict,
                PolicyArg::AcceptNew => HostKeyPolicy::AcceptNew,
            }),
            connect_timeout: self.connect_timeout,
        }
    }
}

/// Loads the config; a broken config is bad input (exit 4).
pub fn load(ui: &Ui) -> Result<Config, Failure> {
    load_config(None, None, ui).map_err(|f| Failure { code: BAD_INPUT, message: f.message })
}

/// Bad input: exit 4.
pub fn bad(message: impl Into<String>) -> Failure {
    Failure { code: BAD_INPUT, message: message.into() }
}

/// Resolves a selector against the fleet; reads recorded nodes only for
/// group targets.
pub fn resolve(config: &Config, selector: &str, overrides: &SshOverrides) -> Result<Vec<HostSpec>, Failure> {
    let (name, _) = exec::target::parse_selector(selector);
    let needs_nodes = config.targets.get(&name).is_some_and(|t| t.spec.group.is_some());
    let nodes = if needs_nodes { recorded_nodes(config)? } else { Vec::new() };
    exec::resolve(&Fleet::new(config, &nodes), selector, overrides).map_err(bad)
}

fn recorded_nodes(config: &Config) -> Result<Vec<NodeRecord>, Failure> {
    let at = location(config)?;
    if !at.exists() {
        return Ok(Vec::new());
    }
    let store = crate::store::open(&at)?;
    Ok(store.run_blocking(|db| db.snapshot())?.nodes)
}

/// Live progress on a terminal: one line per finished step and host.
pub struct LiveProgress {
    on: bool,
    lock: Mutex<()>,
}

impl LiveProgress {
    /// On when stderr is a terminal and output is neither quiet nor JSON.
    pub fn new(ui: &Ui, json: bool) -> LiveProgress {
        LiveProgress { on: !ui.quiet && !json && std::io::stderr().is_terminal(), lock: Mutex::new(()) }
    }
}

impl exec::Progress for LiveProgress {
    fn batch(&self, number: usize, hosts: &[String]) {
        if self.on {
            let _g = self.lock.lock();
            eprintln!("batch {number}: {}", hosts.join(", "));
        }
    }

    fn step(&self, host: &str, total: usize, s: &StepResult) {
        if self.on {
            let _g = self.lock.lock();
            eprintln!("{host}  [{}/{total}] {}  {} ({} ms)", s.index, s.name, s.status.as_str(), s.duration_ms);
        }
    }

    fn host(&self, r: &HostResult) {
        if self.on {
            let _g = self.lock.lock();
            eprintln!("{}  done: {}", r.host, r.status.as_str());
        }
    }
}

fn paint(ui: &Ui, s: Status) -> String {
    match s {
        Status::Ok | Status::Changed => ui.green(s.as_str()),
        Status::Skipped => s.as_str().to_string(),
        Status::Failed | Status::Unreachable => ui.bold(s.as_str()),
    }
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

/// The summary table: host, status, steps, duration, message.
pub fn summary_table(ui: &Ui, r: &RunResult) -> String {
    let width = r.hosts.iter().map(|h| h.host.chars().count()).max().unwrap_or(4).max(4);
    let mut out = format!("{:<width$}  {:<11}  {:>5}  {:>9}  MESSAGE\n", "HOST", "STATUS", "STEPS", "DURATION");
    for h in &r.hosts {
        let status = format!("{:<11}", h.status.as_str());
        let status = status.replacen(h.status.as_str(), &paint(ui, h.status), 1);
        out.push_str(&format!(
            "{:<width$}  {status}  {:>5}  {:>7}ms  {}\n",
            h.host,
            h.steps.len(),
            h.duration_ms,
            h.message.as_deref().unwrap_or("").replace('\n', " ")
        ));
    }
    let count = |s: Status| r.hosts.iter().filter(|h| h.status == s).count();
    out.push_str(&format!(
        "{}: {} ok, {} changed, {} failed, {} unreachable, {} skipped; overall {}",
        crate::cli::ui::plural(r.hosts.len(), "host"),
        count(Status::Ok),
        count(Status::Changed),
        count(Status::Failed),
        count(Status::Unreachable),
        count(Status::Skipped),
        r.status.as_str()
    ));
    if let Some(s) = &r.stopped {
        out.push_str(&format!("\nstopped: {s}"));
    }
    out
}

/// Check mode: every step per host, rendered.
pub fn check_report(r: &RunResult) -> String {
    let mut out = String::new();
    for h in &r.hosts {
        out.push_str(&format!("== {} (check mode: nothing changed)\n", h.host));
        if let Some(m) = &h.message {
            if h.steps.is_empty() || matches!(h.status, Status::Unreachable) {
                out.push_str(&format!("  {m}\n"));
            }
        }
        for s in &h.steps {
            out.push_str(&format!("  [{}] {} ({})\n", s.index, s.name, s.kind));
            if let Some(a) = &s.action {
                out.push_str(&indent(a, "      "));
            }
            if let Some(d) = &s.diff {
                out.push_str(&indent(d, "      "));
            }
            if let Some(m) = &s.message {
                out.push_str(&format!("      ({m})\n"));
            }
        }
    }
    out
}

/// Output of every host's steps (for `exec`, and failures of `run`).
pub fn outputs(r: &RunResult, only_failed: bool) -> String {
    let mut out = String::new();
    for h in &r.hosts {
        if only_failed && !matches!(h.status, Status::Failed | Status::Unreachable) {
            continue;
        }
        let code = h.exit_code.map_or(String::new(), |c| format!(" | exit {c}"));
        out.push_str(&format!("{} | {}{code} | {} ms\n", h.host, h.status.as_str(), h.duration_ms));
        for s in &h.steps {
            if only_failed && s.status != Status::Failed {
                continue;
            }
            out.push_str(&indent(&s.stdout, "  "));
            out.push_str(&indent(&s.stderr, "  ! "));
        }
        if h.steps.is_empty() || matches!(h.status, Status::Unreachable) {
            if let Some(m) = &h.message {
                out.push_str(&format!("  {m}\n"));
            }
        }
    }
    out
}

/// Prints a result and returns its exit code.
pub fn finish(ui: &Ui, r: &RunResult, json: bool, show_all_output: bool) -> Result<ExitCode, Failure> {
    if json {
        ui.out(&serde_json::to_string_pretty(r)?);
    } else {
        if r.check {
            ui.out(&check_report(r));
        } else {
            let o = outputs(r, !show_all_output);
            if !o.is_empty() {
                ui.out(&o);
            }
        }
        ui.out(&summary_table(ui, r));
    }
    Ok(ExitCode::from(exec::exit_code_for(r)))
}

/// `k=v` pairs from `--var`.
pub fn parse_vars(vars: &[String]) -> Result<std::collections::BTreeMap<String, String>, Failure> {
    let mut map = std::collections::BTreeMap::new();
    for v in vars {
        let (k, val) = v.split_once('=').ok_or_else(|| bad(format!("`--var {v}`: expected NAME=VALUE")))?;
        map.insert(k.to_string(), val.to_string());
    }
    Ok(map)
}

/// The default command timeout: the project's `defaults.timeout`, else 10s.
pub fn default_timeout(config: &Config) -> Duration {
    config
        .project
        .spec
        .defaults
        .as_ref()
        .and_then(|d| d.timeout.as_ref())
        .map_or(Duration::from_secs(10), |d| d.get())
}

/// Shared setup for a runner.
pub fn options(config: &Config, target: &str, timeout: Option<Duration>, forks: Option<usize>) -> exec::RunOptions {
    exec::RunOptions {
        root: config.root.clone(),
        target: target.to_string(),
        vars: Default::default(),
        check: false,
        forks,
        default_timeout: Some(timeout.unwrap_or_else(|| default_timeout(config))),
        delegates: Default::default(),
    }
}

/// A progress observer for the CLI.
pub fn progress(ui: &Ui, json: bool) -> Arc<dyn exec::Progress> {
    Arc::new(LiveProgress::new(ui, json))
}
