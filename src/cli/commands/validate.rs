//! `scaler validate`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{CmdResult, Failure, Ui};

/// Check a config repo and report every error with file:line:column.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  scaler validate examples/quickstart\n  scaler validate --json . | jq '.diagnostics[].message, .warnings[].field'\n  scaler validate --rev HEAD~1 .\n\nSettings this build accepts but ignores (`daemon.source`, `daemon.auto_apply`, `provision`,
`provider: ec2`, ...) are warnings at their file:line:column; they do not make the config invalid.
Exit codes: 0 valid (with or without warnings), 1 invalid.")]
pub struct Args {
    /// The config repo (default: `-C DIR`, SCALER_DIR, else found from here up).
    pub dir: Option<PathBuf>,
    /// Validate this git revision instead of the working tree.
    #[arg(long)]
    pub rev: Option<String>,
    /// Print diagnostics, warnings and a summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let dir = crate::cli::workspace::repo_dir(args.dir.as_deref())?;
    if !dir.is_dir() {
        return Err(Failure::new(format!("`{}` is not a directory", dir.display())));
    }
    let result = match &args.rev {
        Some(r) => crate::config::load_rev(&dir, r),
        None => crate::config::load(&dir),
    };
    match result {
        Ok(cfg) => {
            let count = cfg.objects().len();
            if args.json {
                ui.out(&serde_json::to_string_pretty(&serde_json::json!({
                    "valid": true, "objects": count, "digest": cfg.digest, "revision": cfg.revision, "diagnostics": [],
                    "warnings": cfg.warnings.to_json()
                }))?);
            } else {
                if !ui.quiet {
                    eprint!("{}", cfg.warnings.render_warnings(ui.err_color));
                }
                let warnings = match cfg.warnings.len() {
                    0 => String::new(),
                    1 => ", 1 warning".to_string(),
                    n => format!(", {n} warnings"),
                };
                ui.out(&format!("{} {count} objects, no errors{warnings}.", ui.green("Valid:")));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(d) => {
            // Warnings are only known for a config that compiles.
            if args.json {
                ui.out(&serde_json::to_string_pretty(&serde_json::json!({
                    "valid": false, "diagnostics": d.to_json(), "warnings": []
                }))?);
            } else {
                eprint!("{}", d.render(ui.err_color));
            }
            Err(Failure::printed(1))
        }
    }
}
