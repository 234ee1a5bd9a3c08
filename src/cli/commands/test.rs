//! `scaler test`: run rule test files (`*.test.yaml`) and print `ok`/`FAIL`
//! per case with a diff of expected and actual fires and states.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::ui::plural;
use crate::cli::{CmdResult, Failure, Ui};
use crate::ruletest::{collect_files, render, run_file};

/// Run rule unit tests: input series on a virtual clock, expected states and fires.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  scaler test examples/quickstart/tests/triggers.test.yaml
  scaler test examples/quickstart            every *.test.yaml below the directory
  scaler test --json tests/ | jq '.[].ok'

The test file format is in docs/config.md (\"Rule tests\").
Exit codes: 0 every test passed, 1 a test failed or a test file is bad, 2 usage error.")]
pub struct Args {
    /// Test files, or directories to search for `*.test.yaml` (default: the
    /// config repo of `-C DIR`, SCALER_DIR, else found from here up).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let roots = if args.files.is_empty() { vec![crate::cli::workspace::repo_dir(None)?] } else { args.files };
    let files = collect_files(&roots).map_err(Failure::new)?;
    let reports: Vec<_> = files.iter().map(|f| run_file(f)).collect();
    let failed = reports.iter().filter(|r| !r.ok).count();
    if args.json {
        ui.out(&serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            ui.out(&render(r, ui.color));
        }
        let cases: usize = reports.iter().map(|r| r.cases.len()).sum();
        let bad_cases: usize = reports.iter().map(|r| r.cases.iter().filter(|c| !c.ok).count()).sum();
        let summary = format!(
            "{}, {}: {} passed, {bad_cases} failed{}",
            plural(reports.len(), "file"),
            plural(cases, "case"),
            cases - bad_cases,
            match reports.iter().filter(|r| !r.errors.is_empty()).count() {
                0 => String::new(),
                n => format!(", {} could not run", plural(n, "file")),
            }
        );
        ui.out(&if failed == 0 { ui.green(&summary) } else { summary });
    }
    if failed == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::printed(1))
    }
}
