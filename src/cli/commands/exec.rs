//! `scaler exec`.


use super::remote::{self, RemoteArgs};
use crate::cli::{CmdResult, Ui};
use crate::exec::Runner;

const AFTER_HELP: &str = "\
Examples:
  scaler exec web -- uptime                      every host of target `web`
  scaler exec web/web-02 -- systemctl status app one host of the target
  scaler exec db --dir ~/fleet --json -- df -h   another repo, JSON result
  scaler exec local -- hostname                  the scaler host itself

The command is passed to the remote shell as written (like `ssh host CMD`); it
is not a template. Hosts: the target's static `hosts`, or the running nodes of
its `group` recorded in state. SSH settings: project `defaults.ssh` < the
target's `ssh` < these flags. Host keys are checked against known_hosts; an
unknown key is refused unless `host_key_policy: accept-new`, and a changed
key is always refused.

Exit codes (worst wins): 0 every host ok; 2 some host failed (non-zero exit
or timeout); 3 some host unreachable (connection, host key, authentication);
4 bad config or target (nothing ran); 1 other errors.";

/// Run a shell command on every host of a target (or on one host).
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// `TARGET`, `TARGET/HOST`, `TARGET/newest` or `local`.
    pub target: String,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
    /// Per-host command timeout (`30s`); default: the project's `defaults.timeout`, else 10s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Runs the command.
pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let config = remote::load(ui)?;
    let hosts = remote::resolve(&config, &args.target, &args.remote.overrides())?;
    let forks = Some(args.remote.forks.unwrap_or(50));
    let opts = remote::options(&config, &args.target, args.timeout, forks);
    let command = args.command.join(" ");
    let runner = Runner::adhoc(&command, opts, remote::progress(ui, args.remote.json)).map_err(remote::bad)?;
    let rt = crate::cli::workspace::runtime()?;
    let result = rt.block_on(runner.run(hosts));
    let code = remote::finish(ui, &result, args.remote.json, true)?;
    Ok(code)
}
