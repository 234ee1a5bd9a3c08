//! The command line: parses arguments, builds backends (store, providers) and
//! calls the library. The only place that prints.
//!
//! Exit codes (every command): 0 success; 1 error; 2 usage error, or with
//! `plan --detailed-exitcode`: changes present. `exec` and `run`: 2 some host
//! failed, 3 some host unreachable, 4 bad playbook, parameters or target.

mod commands;
pub(crate) mod ui;
pub(crate) mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub use ui::Ui;

/// An error that ends a command, with its exit code.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// Printed after `error: ` on stderr (empty when already printed).
    pub message: String,
}

impl Failure {
    /// Exit code 1 with a message.
    pub fn new(message: impl Into<String>) -> Failure {
        Failure { code: 1, message: message.into() }
    }

    /// An error whose details were already printed.
    pub fn printed(code: u8) -> Failure {
        Failure { code, message: String::new() }
    }
}

impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::new(e.to_string())
    }
}

/// What a command returns.
pub type CmdResult = Result<ExitCode, Failure>;

/// When to use colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

const AFTER_HELP: &str = "\
Examples:
  scaler init myfleet && cd myfleet    scaffold a config repo
  scaler validate                      check every file; all errors at once
  scaler plan                          show what would change
  scaler apply --auto-approve          make it so
  scaler -C ~/fleet state list         another repo: -C DIR (or --dir DIR, or SCALER_DIR)
  scaler collect --once                one round of every counter
  scaler query load1                   the last hour of a counter
  scaler daemon                        collect, evaluate triggers, run their actions
  scaler status                        every trigger's state and why it last fired
  scaler test                          rule unit tests (*.test.yaml) on a virtual clock

The config repo: the command's DIR argument (where it has one), else -C/--dir DIR,
else SCALER_DIR, else the nearest directory from here up whose YAML files hold a
`kind: Project` document.

Environment:
  SCALER_DIR              the config repo (see above)
  SCALER_LOG              log filter (tracing syntax: `info`, `scaler=debug`); overrides -v/-q
  SCALER_MAX_CONFIG_BYTES largest config file read (default 4 MiB)
  NO_COLOR                set and not empty: no colours (as --color never)

Exit codes: 0 success, 1 error, 2 usage error (and for `plan --detailed-exitcode`: changes
present). `exec` and `run`: 2 some host failed, 3 some host unreachable, 4 bad config,
playbook or target (nothing ran).
Colours only on a terminal; NO_COLOR=1 or --color never turns them off.";

/// scaler runs a fleet of ordinary servers the GitOps way: YAML in a git repo
/// declares targets, counters, triggers, playbooks, node templates, scaling
/// groups and policies; `plan` shows the change, `apply` makes it.
#[derive(Debug, Parser)]
#[command(name = "scaler", version, about, long_about = None, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// The config repo (default: SCALER_DIR, else the nearest directory from
    /// here up with a Project document).
    // (Its id differs from the commands' positional `dir`: clap shares a
    // global argument's id with the subcommands.)
    #[arg(short = 'C', long = "dir", value_name = "DIR", global = true)]
    pub repo: Option<std::path::PathBuf>,
    /// When to colour output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scaffold a config repo that validates and plans.
    Init(commands::init::Args),
    /// Check a config repo: YAML, schemas, references, templates; every error at once.
    Validate(commands::validate::Args),
    /// Print the JSON Schema of a kind (or of the plan format).
    Schema(commands::schema::Args),
    /// Show what apply would change.
    Plan(commands::plan::Args),
    /// Make the changes (plans first unless given a saved plan).
    Apply(commands::apply::Args),
    /// Approve a plan the daemon holds (default: the newest); the daemon applies it.
    Approve(commands::approve::Args),
    /// Remove every node (plans, asks, applies).
    Destroy(commands::apply::DestroyArgs),
    /// Set a group's desired node count (within min..max); apply launches or retires nodes.
    Scale(commands::scale::Args),
    /// Collect, evaluate triggers, run action jobs and receive pushes, alerts and traps, until stopped.
    Daemon(commands::daemon::Args),
    /// Every trigger's state, why it last fired, and the job queue.
    Status(commands::status::Args),
    /// Collect counters at their intervals (or once) into the time-series store.
    Collect(commands::collect::Args),
    /// Print a counter's stored series over a time range.
    Query(commands::query::Args),
    /// Start, stop and list trace tasks (long-running `stream` counters).
    #[command(subcommand)]
    Trace(commands::trace::TraceCommand),
    /// Inspect recorded state.
    #[command(subcommand)]
    State(commands::state::StateCommand),
    /// Break a state lock on purpose.
    Unlock(commands::state::UnlockArgs),
    /// Run a shell command on every host of a target, over SSH.
    Exec(commands::exec::Args),
    /// Run a playbook on a target (`--check` shows what would run).
    Run(commands::run::Args),
    /// Poll `/status` on every host of an inventory: QoS verdict, aggregate, report.
    Survey(commands::survey::Args),
    /// Convert another tool's export into scaler YAML.
    #[command(subcommand)]
    Import(commands::import::ImportCommand),
    /// Run rule unit tests (`*.test.yaml`): input series on a virtual clock, expected states and fires.
    Test(commands::test::Args),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    workspace::set_dir_option(cli.repo.clone());
    let ui = Ui::new(cli.color, cli.quiet);
    let filter = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCALER_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(|| crate::redact::ScrubWriter::new(std::io::stderr()))
        .with_ansi(ui.err_color)
        .try_init();
    let result = match cli.command {
        Command::Init(a) => commands::init::run(a, &ui),
        Command::Validate(a) => commands::validate::run(a, &ui),
        Command::Schema(a) => commands::schema::run(a, &ui),
        Command::Plan(a) => commands::plan::run(a, &ui),
        Command::Apply(a) => commands::apply::run(a, &ui),
        Command::Destroy(a) => commands::apply::run_destroy(a, &ui),
        Command::Approve(a) => commands::approve::run(a, &ui),
        Command::Scale(a) => commands::scale::run(a, &ui),
        Command::Daemon(a) => commands::daemon::run(a, &ui),
        Command::Status(a) => commands::status::run(a, &ui),
        Command::Collect(a) => commands::collect::run(a, &ui),
        Command::Query(a) => commands::query::run(a, &ui),
        Command::Trace(c) => commands::trace::run(c, &ui),
        Command::State(c) => commands::state::run(c, &ui),
        Command::Unlock(a) => commands::state::run_unlock(a, &ui),
        Command::Exec(a) => commands::exec::run(a, &ui),
        Command::Run(a) => commands::run::run(a, &ui),
        Command::Survey(a) => commands::survey::run(a, &ui),
        Command::Import(c) => commands::import::run(c, &ui),
        Command::Test(a) => commands::test::run(a, &ui),
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            if !f.message.is_empty() {
                ui.error(&f.message);
            }
            ExitCode::from(f.code)
        }
    }
}
