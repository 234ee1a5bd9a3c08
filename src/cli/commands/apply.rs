//! `scaler apply` and `scaler destroy`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::plan::PlanFlags;
use crate::apply::{ApplyError, Held};
use crate::reconcile::{ReconcileError, Session};
use crate::cli::ui::Progress;
use crate::cli::workspace::{runtime, warn_ignored, Workspace};
use crate::cli::{CmdResult, Failure, Ui};
use crate::plan::{self, Flags, Operation, Plan, RenderOptions};

/// Make the changes. Without a plan file: plan, show, ask, apply. With a plan
/// file (from `scaler plan -o FILE`): apply exactly that plan, refused with
/// "plan is stale" if the state or the config moved since.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  scaler apply --auto-approve examples/quickstart\n  scaler plan -o web.plan . && scaler apply web.plan\n  scaler apply --target group.web .\n\nThe state lock is a lease: a killed apply holds it until it expires (state.lock_ttl,\ndefault 2m); `scaler unlock ID` breaks it on purpose.\nA group whose provider is not in this build is left out; the other changes are applied, the config\nrevision is not recorded, and the exit code is 1.\nExit codes: 0 applied (or nothing to do), 1 error (nothing or only part applied; state says what).")]
pub struct Args {
    /// A config repo directory, or a saved plan file (default: the repo of
    /// `-C DIR`, SCALER_DIR, else found from here up). With a plan file, `-C DIR`
    /// names its repo (default: the one the plan was made from).
    pub path: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunFlags,
    #[command(flatten)]
    pub flags: PlanFlags,
}

/// Remove every node of every group (config objects stay recorded). Groups
/// with `prevent_destroy: true` make the plan fail; leave them out with
/// `--exclude group.NAME`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  scaler destroy examples/quickstart\n  scaler destroy --auto-approve --exclude group.db .\n\nExit codes: 0 destroyed (or nothing to do), 1 error or refused.")]
pub struct DestroyArgs {
    /// The config repo (default: `-C DIR`, SCALER_DIR, else found from here up).
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunFlags,
    #[command(flatten)]
    pub flags: PlanFlags,
}

/// Flags shared by `apply` and `destroy`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunFlags {
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Node changes running at once (default: project `apply.parallelism`, else 4).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub parallelism: Option<u32>,
    /// Print the plan and the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs `apply`.
pub fn run(args: Args, ui: &Ui) -> CmdResult {
    if let Some(file) = args.path.as_ref().filter(|p| p.is_file()) {
        let plan = plan::load(file).map_err(|e| Failure::new(format!("cannot read plan `{}`: {e}", file.display())))?;
        // The plan's own repo unless `-C`/SCALER_DIR name another.
        let dir = crate::cli::workspace::named_dir().unwrap_or_else(|| PathBuf::from(&plan.root));
        let ws = Workspace::load(Some(&dir), None, ui)?;
        if !args.run.json {
            warn_ignored(&ws.config, ui);
            ui.out(&plan::render(&plan, RenderOptions { color: ui.color }));
        }
        // A saved plan was approved when it was saved; apply checks it is
        // not stale once it holds the lock.
        let rt = runtime()?;
        let session = ws.session()?;
        return execute(&ws, &rt, &session, None, &plan, &args.run, ui);
    }
    let ws = Workspace::load(args.path.as_deref(), args.flags.rev.as_deref(), ui)?;
    plan_confirm_execute(&ws, Operation::Apply, &args.flags, &args.run, ui)
}

/// Runs `destroy`.
pub fn run_destroy(args: DestroyArgs, ui: &Ui) -> CmdResult {
    let ws = Workspace::load(args.dir.as_deref(), args.flags.rev.as_deref(), ui)?;
    plan_confirm_execute(&ws, Operation::Destroy, &args.flags, &args.run, ui)
}

/// Takes the state lock, plans, shows, asks, applies, releases: the lock is
/// held from before the plan is made until the apply ends, so two applies
/// never both decide (the second is refused as locked before it plans).
fn plan_confirm_execute(ws: &Workspace, operation: Operation, flags: &PlanFlags, run: &RunFlags, ui: &Ui) -> CmdResult {
    if !run.json {
        warn_ignored(&ws.config, ui);
    }
    let rt = runtime()?;
    let session = ws.session()?;
    let held = rt.block_on(session.lock(operation))?;
    let result = decide_and_execute(ws, &rt, &session, &held, operation, flags, run, ui);
    rt.block_on(held.release());
    result
}

#[allow(clippy::too_many_arguments)]
fn decide_and_execute(
    ws: &Workspace,
    rt: &tokio::runtime::Runtime,
    session: &Session,
    held: &Held,
    operation: Operation,
    flags: &PlanFlags,
    run: &RunFlags,
    ui: &Ui,
) -> CmdResult {
    let json = run.json;
    let plan_flags = Flags { allow_destroy_all: flags.allow_destroy_all || operation == Operation::Destroy };
    let plan = rt.block_on(session.plan(operation, flags.filters(), plan_flags))?;
    if !json {
        ui.out(&plan::render(&plan, RenderOptions { color: ui.color }));
    }
    if !plan.is_allowed() {
        if json {
            ui.out(&serde_json::to_string_pretty(&serde_json::json!({ "plan": plan, "applied": false }))?);
        }
        return Err(Failure::new("the plan is refused (see above); nothing was changed"));
    }
    if !plan.has_changes() {
        if json {
            ui.out(&serde_json::to_string_pretty(&serde_json::json!({ "plan": plan, "applied": true, "report": null }))?);
        }
        return left_out(&plan, "nothing else to change");
    }
    if !run.auto_approve {
        confirm(operation)?;
    }
    execute(ws, rt, session, Some(held), &plan, run, ui)
}

fn confirm(operation: Operation) -> Result<(), Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            "refusing to ask for confirmation: stdin is not a terminal; review the plan and pass --auto-approve, or save it with `scaler plan -o FILE` and run `scaler apply FILE`",
        ));
    }
    let what = match operation {
        Operation::Apply => "apply these changes",
        Operation::Destroy => "destroy these nodes",
    };
    eprint!("\nDo you want to {what}? Only 'yes' will be accepted: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|e| Failure::new(format!("cannot read the answer: {e}")))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(Failure::new("cancelled; nothing was changed"))
    }
}

/// Applies `plan`, under `held` when the lock was taken before planning.
fn execute(ws: &Workspace, rt: &tokio::runtime::Runtime, session: &Session, held: Option<&Held>, plan: &Plan, run: &RunFlags, ui: &Ui) -> CmdResult {
    let (parallelism, json) = (run.parallelism, run.json);
    let interrupted = Arc::new(AtomicBool::new(false));
    let progress = Progress::new(ui);
    let result = rt.block_on(async {
        let flag = interrupted.clone();
        let watcher = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                flag.store(true, Ordering::SeqCst);
            }
        });
        let parallelism = parallelism.map(|p| p as usize);
        let r = match held {
            Some(h) => session.apply_held(plan, parallelism, interrupted.clone(), &progress, h).await,
            None => session.apply(plan, parallelism, interrupted.clone(), &progress).await,
        };
        watcher.abort();
        r
    });
    progress.finish();
    match result {
        Ok(report) => {
            if json {
                ui.out(&serde_json::to_string_pretty(&serde_json::json!({ "plan": plan, "applied": true, "report": report }))?);
            } else {
                let s = plan.summary;
                let word = if plan.operation == Operation::Destroy { "Destroy" } else { "Apply" };
                ui.out(&format!(
                    "\n{} {} added, {} changed, {} destroyed. State serial {}.",
                    ui.green(&format!("{word} complete!")),
                    s.add,
                    s.change,
                    s.destroy,
                    report.serial
                ));
            }
            left_out(plan, "every other change was applied")
        }
        Err(ReconcileError::Apply(ApplyError::Failed { done, total, failed, report })) => {
            if json {
                ui.out(&serde_json::to_string_pretty(&serde_json::json!({ "plan": plan, "applied": false, "report": report, "error": failed }))?);
            }
            Err(Failure::new(format!(
                "apply stopped: {done} of {total} changes done, {} not started; {failed}\nstate records exactly what was done; run `scaler plan {}` to see what remains",
                report.skipped.len(),
                shown_dir(&ws.config.root)
            )))
        }
        Err(e) => Err(Failure::new(e.to_string())),
    }
}

/// Success, or exit 1 naming the groups the plan left out (`done` says what
/// happened to the rest).
fn left_out(plan: &Plan, done: &str) -> CmdResult {
    if plan.group_errors.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let why: Vec<&str> = plan.group_errors.iter().map(|e| e.message.as_str()).collect();
    Err(Failure::new(format!("{}\n{done}; the config revision is not recorded as applied while a group is left out", why.join("\n"))))
}

fn shown_dir(root: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    match cwd.as_deref().and_then(|c| root.strip_prefix(c).ok()) {
        Some(rel) if rel.as_os_str().is_empty() => ".".to_string(),
        Some(rel) => rel.display().to_string(),
        None => root.display().to_string(),
    }
}
