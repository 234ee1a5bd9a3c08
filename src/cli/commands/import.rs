//! `scaler import monscale FILE.json`.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use crate::cli::{CmdResult, Failure, Ui};
use crate::import::{monscale, repo, write, Conversion, ImportError};

const MONSCALE_HELP: &str = "\
Examples:
  scaler import monscale export.json --out monitoring/    write monitoring/monscale-<service>.yaml
  scaler import monscale export.json --dry-run            print the YAML, write nothing
  scaler import monscale examples/monscale/export.json --out /tmp/x --json

Reads `./manage.py export` output (objects with \"type\") or `./manage.py dumpdata monscale`
output (objects with \"model\"), of monscale's releases (0.5 to 0.12: `assesment`, no
ServiceInfrastructure) and of its later sources. Each active MonitoredService becomes one file
with a Target and a Counter per metric and one Trigger: thresholds ANDed, `for` = the longest
time_limit, `cooldown` = wisdom_time, `then` from its ScaleActions. Field mapping: docs/import.md.
A Group that the triggers scale and the repository (the nearest directory from --out up with a
scaler.yaml) lacks is written with a placeholder NodeTemplate; so is a Project when there is
none. A playbook the triggers run and the repository lacks is named as a document to add.
Every problem is reported at once; with any problem nothing is written. A second import of the
same services (a file or a Target/Counter/Trigger name already in --out) is refused.
Exit codes: 0 imported (or printed), 1 error or refused, 2 usage error.";

/// Importers.
#[derive(Debug, clap::Subcommand)]
pub enum ImportCommand {
    /// Convert a monscale JSON export (MonitoredService, Threshold, ScaleAction) to YAML.
    #[command(after_help = MONSCALE_HELP)]
    Monscale(MonscaleArgs),
}

/// `import monscale`.
#[derive(Debug, clap::Args)]
pub struct MonscaleArgs {
    /// The export (JSON).
    pub file: PathBuf,
    /// Directory to write `monscale-<service>.yaml` files into (created when missing).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Print the YAML instead of writing it (conflicts are still checked).
    #[arg(long)]
    pub dry_run: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(cmd: ImportCommand, ui: &Ui) -> CmdResult {
    match cmd {
        ImportCommand::Monscale(a) => run_monscale(a, ui),
    }
}

fn run_monscale(args: MonscaleArgs, ui: &Ui) -> CmdResult {
    crate::cli::ui::not_a_format("--out", "names the DIR to write into", &args.out)?;
    let label = args.file.display().to_string();
    let result = std::fs::read_to_string(&args.file)
        .map_err(|source| ImportError::Read { path: label.clone(), source })
        .and_then(|text| monscale::convert(&label, &text))
        .and_then(|mut conv| {
            repo::complete(&args.out, &mut conv);
            let written = if args.dry_run {
                write::check(&args.out, &conv)?;
                Vec::new()
            } else {
                write::write_all(&args.out, &conv)?
            };
            Ok((conv, written))
        });
    let (conv, written) = match result {
        Ok(ok) => ok,
        Err(e) => return Err(report_error(&e, args.json, ui)),
    };
    let planned: Vec<String> = conv.all_files().map(|f| args.out.join(&f.file_name).display().to_string()).collect();
    let written: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    let read = format!("Read {} from {} objects.", conv.counts, conv.objects);
    if args.json {
        ui.out(&serde_json::to_string_pretty(&json!({
            "written": written,
            "files": planned,
            "objects": conv.objects,
            "counts": conv.counts,
            "services": conv.files.iter().map(|f| f.source.clone()).collect::<Vec<_>>(),
            "support": conv.support.iter().map(|f| args.out.join(&f.file_name).display().to_string()).collect::<Vec<_>>(),
            "to_add": conv.to_add,
            "skipped": conv.skipped,
            "dry_run": args.dry_run,
        }))?);
        return Ok(ExitCode::SUCCESS);
    }
    if args.dry_run {
        print_yaml(&conv, &planned, ui);
        ui.info(&read);
    } else {
        for s in &conv.skipped {
            ui.warn(&format!("skipped service {s}"));
        }
        for w in &written {
            ui.out(&format!("wrote {w}"));
        }
        ui.out(&read);
    }
    for d in &conv.to_add {
        ui.warn(&format!("add {d} to the config repo: the import does not write it"));
    }
    if !args.dry_run {
        ui.info(&format!("Imported {} services. Run `scaler validate` on the config repo.", conv.files.len()));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_yaml(conv: &Conversion, planned: &[String], ui: &Ui) {
    for s in &conv.skipped {
        ui.warn(&format!("skipped service {s}"));
    }
    let parts: Vec<String> = conv
        .all_files()
        .zip(planned)
        .map(|(f, path)| format!("# ==> {path} <==\n{}", f.text))
        .collect();
    if !parts.is_empty() {
        ui.out(&parts.join("---\n"));
    }
}

fn report_error(e: &ImportError, as_json: bool, ui: &Ui) -> Failure {
    let lines = e.lines();
    if as_json {
        // The JSON carries the errors: they are not printed a second time
        // on stderr.
        let doc = json!({ "written": [], "errors": lines });
        if let Ok(text) = serde_json::to_string_pretty(&doc) {
            ui.out(&text);
        }
        return Failure::printed(1);
    }
    for l in &lines {
        ui.error(l);
    }
    if matches!(e, ImportError::Invalid { .. } | ImportError::Exists { .. }) {
        ui.info("nothing was written");
    }
    Failure::printed(1)
}
