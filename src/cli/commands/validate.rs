//! `scaler validate`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{CmdResult, Failure, Ui};

/// Check a config repo and report every error with file:line:column.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  scaler validate examples/quickstart\n  scaler validate --json . | jq '.[].message'\n  scaler validate --rev HEAD~1 .\n\nExit codes: 0 valid, 1 invalid.")]
pub struct Args {
    /// The config repo.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Validate this git revision instead of the working tree.
    #[arg(long)]
    pub rev: Option<String>,
    /// Print diagnostics (or a summary) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(args: Args, ui: &Ui) -> CmdResult {
    if !args.dir.is_dir() {
        return Err(Failure::new(format!("`{}` is not a directory", args.dir.display())));
    }
    let result = match &args.rev {
        Some(r) => crate::config::load_rev(&args.dir, r),
        None => crate::config::load(&args.dir),
    };
    match result {
        Ok(cfg) => {
            let count = cfg.objects().len();
            if args.json {
                ui.out(&serde_json::to_string_pretty(&serde_json::json!({
                    "valid": true, "objects": count, "digest": cfg.digest, "revision": cfg.revision, "diagnostics": []
                }))?);
            } else {
                ui.out(&format!("{} {count} objects, no errors.", ui.green("Valid:")));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(d) => {
            if args.json {
                ui.out(&serde_json::to_string_pretty(&serde_json::json!({
                    "valid": false, "diagnostics": d.to_json()
                }))?);
            } else {
                eprint!("{}", d.render(ui.err_color));
            }
            Err(Failure::printed(1))
        }
    }
}
