//! `scaler run`.

use std::sync::Arc;

use super::remote::{self, RemoteArgs};
use crate::cli::{CmdResult, Ui};
use crate::exec::{Runner, TerminalPrompter};

const AFTER_HELP: &str = "\
Examples:
  scaler run deploy-app --on web --var version=1.4
  scaler run deploy-app --on web/newest --var version=1.4 --check
  scaler run restart --on web/web-02 --json | jq '.hosts[].status'

Steps run in order on each host; a host stops at its first failed step.
`serial` rolls through the hosts in batches; the run stops between batches
once more than `max_fail_percentage` of the hosts so far failed; `forks`
hosts run at once. Every `{{ }}` in `run`/`sudo`/`local` is shell-quoted
(`| safe` opts out) and an undefined variable is an error. A `prompt` asks on
a terminal; otherwise it takes `--var NAME=VALUE` or its default, or the run
refuses to start. `--check` renders every command, upload (with a diff
against the remote file) and download per host and changes nothing.

Exit codes (worst wins): 0 every host ok or changed; 2 some host failed or
aborted; 3 some host unreachable; 4 bad playbook, parameters or target
(nothing ran); 1 other errors.";

/// Run a playbook on a target.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The playbook's name.
    pub playbook: String,
    /// `TARGET`, `TARGET/HOST`, `TARGET/newest` or `local` (default: the playbook's `on`).
    #[arg(long)]
    pub on: Option<String>,
    /// A parameter or prompt answer: `--var name=value` (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Show what would run on each host; change nothing.
    #[arg(long)]
    pub check: bool,
    /// Command timeout when a step sets none; default: the project's `defaults.timeout`, else 10s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Runs the command.
pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let config = remote::load(ui)?;
    let pb = config.playbooks.get(&args.playbook).map(|p| p.spec.clone()).ok_or_else(|| {
        remote::bad(crate::config::unknown_name("playbook", &args.playbook, config.playbooks.keys().map(String::as_str)))
    })?;
    let target = args
        .on
        .clone()
        .or_else(|| pb.on.clone())
        .ok_or_else(|| remote::bad(format!("playbook `{}` has no `on`: pass `--on TARGET`", pb.name)))?;
    let overrides = args.remote.overrides();
    let hosts = remote::resolve(&config, &target, &overrides)?;
    let mut opts = remote::options(&config, &target, args.timeout, args.remote.forks);
    opts.vars = remote::parse_vars(&args.vars)?;
    opts.check = args.check;
    for on in pb.steps.iter().filter_map(|s| s.on.as_ref()) {
        if on == "local" || opts.delegates.contains_key(on) {
            continue;
        }
        let mut hs = remote::resolve(&config, on, &overrides)?;
        if hs.len() != 1 {
            return Err(remote::bad(format!("step `on: {on}` must name one host (`TARGET/HOST`, `TARGET/newest`); it has {}", hs.len())));
        }
        if let Some(h) = hs.pop() {
            opts.delegates.insert(on.clone(), h);
        }
    }
    let runner = Runner::new(&pb, opts, remote::progress(ui, args.remote.json), Arc::new(TerminalPrompter::new())).map_err(remote::bad)?;
    let rt = crate::cli::workspace::runtime()?;
    let result = rt.block_on(runner.run(hosts));
    remote::finish(ui, &result, args.remote.json, false)
}
