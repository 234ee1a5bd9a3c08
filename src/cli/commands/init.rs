//! `scaler init`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{CmdResult, Failure, Ui};

/// Scaffold a config repo that validates and plans: a Project, a local node
/// template, a group of two nodes serving HTTP on loopback, and a target for
/// them. Initialises a git repository unless DIR is already inside one.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  scaler init myfleet && scaler plan myfleet\n  scaler init --name shop .")]
pub struct Args {
    /// Where to create the repo (created if missing; default: `-C DIR` or SCALER_DIR).
    pub dir: Option<PathBuf>,
    /// Project name (default: the directory's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Overwrite existing scaffold files.
    #[arg(long)]
    pub force: bool,
}

fn project_name(dir: &Path, given: Option<&str>) -> Result<String, Failure> {
    if let Some(n) = given {
        if crate::model::is_valid_name(n) {
            return Ok(n.to_string());
        }
        return Err(Failure { code: 2, message: format!("invalid project name `{n}`: use lowercase letters, digits and `-`") });
    }
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let base = abs.file_name().map(|s| s.to_string_lossy().to_lowercase()).unwrap_or_default();
    let mut name: String = base.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    name = name.trim_matches('-').chars().take(63).collect();
    if name.is_empty() || !crate::model::is_valid_name(&name) {
        name = "fleet".to_string();
    }
    Ok(name)
}

/// Runs the command.
pub fn run(mut args: Args, ui: &Ui) -> CmdResult {
    let dir = args.dir.take().or_else(crate::cli::workspace::named_dir).ok_or_else(|| Failure {
        code: 2,
        message: "name the directory to create: `scaler init DIR` (or `-C DIR`, SCALER_DIR)".into(),
    })?;
    let name = project_name(&dir, args.name.as_deref())?;
    std::fs::create_dir_all(&dir).map_err(|e| Failure::new(format!("cannot create `{}`: {e}", dir.display())))?;
    let files: [(&str, String); 3] = [
        ("scaler.yaml", PROJECT.replace("NAME", &name)),
        ("nodes.yaml", NODES.to_string()),
        (".gitignore", ".scaler/\n".to_string()),
    ];
    for (file, _) in &files {
        let p = dir.join(file);
        if p.exists() && !args.force && *file != ".gitignore" {
            return Err(Failure::new(format!("`{}` already exists; pass --force to overwrite", p.display())));
        }
    }
    for (file, text) in &files {
        let p = dir.join(file);
        if *file == ".gitignore" && p.exists() {
            let old = std::fs::read_to_string(&p).unwrap_or_default();
            if !old.lines().any(|l| l.trim() == ".scaler/" || l.trim() == ".scaler") {
                let sep = if old.ends_with('\n') || old.is_empty() { "" } else { "\n" };
                std::fs::write(&p, format!("{old}{sep}.scaler/\n")).map_err(|e| Failure::new(format!("cannot write `{}`: {e}", p.display())))?;
            }
            continue;
        }
        std::fs::write(&p, text).map_err(|e| Failure::new(format!("cannot write `{}`: {e}", p.display())))?;
    }
    let in_repo = git2::Repository::discover(&dir).is_ok();
    if !in_repo {
        git2::Repository::init(&dir).map_err(|e| Failure::new(format!("cannot initialise a git repository: {e}")))?;
    }
    ui.out(&format!(
        "Created project `{name}` in {}{}.\nNext:\n  scaler validate {d}\n  scaler plan {d}\n  scaler apply {d}",
        dir.display(),
        if in_repo { "" } else { " (new git repository)" },
        d = dir.display()
    ));
    Ok(ExitCode::SUCCESS)
}

const PROJECT: &str = r#"# yaml-language-server: $schema=https://scaler.dev/schema/project.schema.json
# Global settings. State lives in .scaler/state.db (git-ignored).
kind: Project
name: NAME
apply:
  parallelism: 4
"#;

const NODES: &str = r#"# A group of local nodes: each is a process serving HTTP on loopback.
kind: NodeTemplate
name: web-node
provider: local
local:
  command: python3 -m http.server {{ node.port }} --bind 127.0.0.1
  port_base: 18000
  ready: { tcp: true, timeout: 20s }
  grace: 5s
---
kind: Group
name: web
template: web-node
min: 1
max: 4
desired: 2
---
kind: Target
name: web
group: web
"#;
