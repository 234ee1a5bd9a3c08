//! `scaler schema`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{CmdResult, Failure, Ui};
use crate::model::Kind;

/// Print the JSON Schema (draft 2020-12) of a kind, or of the plan format.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  scaler schema              list the kinds\n  scaler schema Group        the schema of Group documents\n  scaler schema plan         the schema of `scaler plan --json`\n  scaler schema --write schema/   write every schema file\n\nEditors: put `# yaml-language-server: $schema=schema/group.schema.json` at the top of a file.")]
pub struct Args {
    /// A kind (`Group`, `group`...) or `plan`.
    pub kind: Option<String>,
    /// Write every schema into this directory instead.
    #[arg(long, value_name = "DIR", conflicts_with = "kind")]
    pub write: Option<PathBuf>,
}

/// Runs the command.
pub fn run(args: Args, ui: &Ui) -> CmdResult {
    if let Some(dir) = args.write {
        crate::config::write_schemas(&dir).map_err(|e| Failure::new(format!("cannot write schemas to `{}`: {e}", dir.display())))?;
        crate::plan::write_schema(&dir).map_err(|e| Failure::new(format!("cannot write the plan schema: {e}")))?;
        ui.info(&format!("wrote {} schemas to {}", Kind::ALL.len() + 1, dir.display()));
        return Ok(ExitCode::SUCCESS);
    }
    match args.kind.as_deref() {
        None => {
            let mut text = String::from("Kinds (print one with `scaler schema KIND`):\n");
            for k in Kind::ALL {
                text.push_str(&format!("  {:<13} schema/{}.schema.json\n", k.as_str(), k.slug()));
            }
            text.push_str("  plan          schema/plan.schema.json (the `scaler plan --json` format)\n");
            ui.out(&text);
        }
        Some("plan") => ui.out(&serde_json::to_string_pretty(&crate::plan::schema())?),
        Some(k) => {
            let kind = Kind::parse(k).ok_or_else(|| {
                let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                Failure { code: 2, message: format!("unknown kind `{k}`; expected one of {} or `plan`", names.join(", ")) }
            })?;
            ui.out(&serde_json::to_string_pretty(&crate::config::schema_for(kind))?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
