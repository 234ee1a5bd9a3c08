//! `scaler plan`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::workspace::{runtime, warn_ignored, Workspace};
use crate::cli::{CmdResult, Failure, Ui};
use crate::plan::{self, Filters, Flags, Operation, Plan, RenderOptions};

/// Flags shared by `plan`, `apply` and `destroy`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanFlags {
    /// Only plan these addresses (repeatable): `group.web` (with its nodes),
    /// `node.web/web-02`, `counter.load1`, `node.` (every node).
    #[arg(long = "target", value_name = "ADDRESS")]
    pub targets: Vec<String>,
    /// Leave these addresses out (repeatable).
    #[arg(long = "exclude", value_name = "ADDRESS")]
    pub excludes: Vec<String>,
    /// Allow a plan that destroys every node of a group (the built-in policy
    /// refuses it otherwise).
    #[arg(long)]
    pub allow_destroy_all: bool,
    /// Plan the config of this git revision instead of the working tree.
    #[arg(long)]
    pub rev: Option<String>,
}

impl PlanFlags {
    /// The filters.
    pub fn filters(&self) -> Filters {
        Filters { targets: self.targets.clone(), excludes: self.excludes.clone() }
    }
}

/// Show what `apply` would change: config objects, and nodes against what the
/// providers report (a node that died outside scaler is replaced).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  scaler plan examples/quickstart\n  scaler plan -o web.plan . && scaler apply web.plan\n  scaler plan --json . > plan.json\n  scaler plan --target group.web --detailed-exitcode .\n\nSettings this build ignores are warned about on stderr first (in --json: `warnings`). A group whose
provider is not in this build is left out with an error naming it; the other changes are planned
and can be applied.\n\nExit codes: 0 success (with --detailed-exitcode: no changes), 1 error, plan denied by a policy or a\ngroup left out, 2 changes present (--detailed-exitcode only).")]
pub struct Args {
    /// The config repo (default: `-C DIR`, SCALER_DIR, else found from here up).
    pub dir: Option<PathBuf>,
    /// Plan the removal of every node instead.
    #[arg(long)]
    pub destroy: bool,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Print the plan as JSON (format: `scaler schema plan`).
    #[arg(long)]
    pub json: bool,
    /// Save the plan to FILE for `scaler apply FILE`.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub flags: PlanFlags,
}

/// Makes a plan of `ws`.
pub fn make_plan(ws: &Workspace, operation: Operation, flags: &PlanFlags) -> Result<Plan, Failure> {
    let rt = runtime()?;
    let plan_flags = Flags { allow_destroy_all: flags.allow_destroy_all || operation == Operation::Destroy };
    let session = ws.session()?;
    Ok(rt.block_on(session.plan(operation, flags.filters(), plan_flags))?)
}

/// Runs the command.
pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let ws = Workspace::load(args.dir.as_deref(), args.flags.rev.as_deref(), ui)?;
    let operation = if args.destroy { Operation::Destroy } else { Operation::Apply };
    if !args.json {
        warn_ignored(&ws.config, ui);
    }
    if let Some(path) = &args.out {
        crate::cli::ui::not_a_format("-o`/`--out", "saves the plan to a FILE", path)?;
    }
    let plan = make_plan(&ws, operation, &args.flags)?;
    if let Some(path) = &args.out {
        plan::save(&plan, path).map_err(|e| Failure::new(format!("cannot save the plan to `{}`: {e}", path.display())))?;
    }
    if args.json {
        ui.out(&serde_json::to_string_pretty(&plan)?);
    } else {
        if ui.quiet {
            // `-q`: the summary line and errors only.
            ui.out(plan::render_summary(&plan, RenderOptions { color: ui.color }, false).trim_start());
        } else {
            ui.out(&plan::render(&plan, RenderOptions { color: ui.color }));
        }
        if let Some(path) = &args.out.as_ref().filter(|_| !ui.quiet) {
            if plan.is_allowed() && plan.has_changes() {
                ui.out(&format!("\nSaved the plan to {}. Apply exactly this plan with:\n  scaler apply {}", path.display(), path.display()));
            }
        }
    }
    if !plan.is_allowed() || !plan.group_errors.is_empty() {
        return Err(Failure::printed(1));
    }
    Ok(if args.detailed_exitcode && plan.has_changes() { ExitCode::from(2) } else { ExitCode::SUCCESS })
}
