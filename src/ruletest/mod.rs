//! Rule unit tests for users (`scaler test FILE...`), as `promtool test
//! rules` is for Prometheus: compact input series and pushes, a virtual
//! clock, expected trigger states and every expected fire.
//!
//! ```text
//! *.test.yaml -> spec::parse (positions) -> config::load + Engine::compile
//!   -> run::run_case (window as the daemon builds it, virtual clock)
//!   -> report::compare -> FileReport (ok | mismatches | problems)
//! ```
//!
//! Owns: the test file format, the runner, the diff. Reads the test file
//! and the config directory; everything after that is pure.
//! Must not depend on: the store's backends, the CLI, tokio.

mod report;
mod run;
pub mod series;
pub mod spec;

use std::path::{Path, PathBuf};

use anstyle::{AnsiColor, Style};
use serde::Serialize;

pub use report::{compare, render_mismatches, Mismatch};
pub use run::{action_summary, lookback_ms, ms, run_case, window_for, CaseRun, GotFire, GotState};
pub use spec::{parse, Case, Problem, TestFile};

use crate::rules::Engine;

/// Whether a file name is a rule test file (`*.test.yaml`, `*.test.yml`).
pub fn is_test_file(name: &str) -> bool {
    name.ends_with(".test.yaml") || name.ends_with(".test.yml")
}

/// The result of one test file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The file, as given.
    pub file: String,
    /// The config directory used (when it was found).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Every case passed and the file is good.
    pub ok: bool,
    /// Why the file could not run (bad file, bad config), one line each,
    /// `file:line:column: field: message` where known.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// The cases that ran.
    pub cases: Vec<CaseReport>,
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// The case's name (empty when the file is the case).
    pub name: String,
    /// No mismatch.
    pub ok: bool,
    /// Evaluations run.
    pub evaluations: usize,
    /// The last instant evaluated (ms from t0).
    pub duration_ms: i64,
    /// Every fire that happened.
    pub fires: Vec<GotFire>,
    /// The differences from the expectations.
    pub mismatches: Vec<Mismatch>,
}

/// Runs every case of a test file.
pub fn run_file(path: &Path) -> FileReport {
    let file = path.display().to_string();
    let mut report = FileReport { file: file.clone(), config: None, ok: false, errors: Vec::new(), cases: Vec::new() };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            report.errors.push(format!("{file}: cannot read: {e}"));
            return report;
        }
    };
    let spec = match spec::parse(&text) {
        Ok(s) => s,
        Err(problems) => {
            report.errors = problems.iter().map(|p| located(&file, p)).collect();
            return report;
        }
    };
    let dir = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    let config_dir = match &spec.config {
        Some((c, _)) => dir.join(c),
        None => find_config_dir(&dir),
    };
    report.config = Some(config_dir.display().to_string());
    let config = match crate::config::load(&config_dir) {
        Ok(c) => c,
        Err(d) => {
            let at = spec.config.as_ref().map_or(String::new(), |(_, p)| format!(":{}:{}", p.line, p.column));
            report.errors.push(format!("{file}{at}: config `{}` is invalid ({} problems):", config_dir.display(), d.len()));
            report.errors.extend(d.render(false).lines().map(|l| format!("  {l}")));
            return report;
        }
    };
    let engine = match Engine::compile(config.triggers.values().map(|t| &t.spec)) {
        Ok(e) => e,
        Err(errs) => {
            report.errors.extend(errs.into_iter().map(|e| format!("{file}: config `{}`: {e}", config_dir.display())));
            return report;
        }
    };
    for case in &spec.cases {
        match run_case(&config, &engine, case) {
            Ok(run) => {
                let mismatches = compare(case, &run);
                report.cases.push(CaseReport {
                    name: case.name.clone(),
                    ok: mismatches.is_empty(),
                    evaluations: run.evaluations,
                    duration_ms: run.duration_ms,
                    fires: run.fires,
                    mismatches,
                });
            }
            Err(problems) => report.errors.extend(problems.iter().map(|p| located(&file, p))),
        }
    }
    report.ok = report.errors.is_empty() && report.cases.iter().all(|c| c.ok);
    report
}

/// `file:line:column: field: message`.
fn located(file: &str, p: &Problem) -> String {
    let at = if p.line > 0 { format!("{file}:{}:{}", p.line, p.column) } else { file.to_string() };
    if p.field.is_empty() {
        format!("{at}: {}", p.message)
    } else {
        format!("{at}: {}: {}", p.field, p.message)
    }
}

/// The nearest directory from `dir` upwards holding `scaler.yaml` (or
/// `scaler.yml`); `dir` itself when there is none.
pub fn find_config_dir(dir: &Path) -> PathBuf {
    let has = |d: &Path| d.join("scaler.yaml").is_file() || d.join("scaler.yml").is_file();
    // Lexical parents first, so that messages show the path as given.
    for d in dir.ancestors() {
        let d = if d.as_os_str().is_empty() { Path::new(".") } else { d };
        if has(d) {
            return d.to_path_buf();
        }
    }
    if let Ok(abs) = dir.canonicalize() {
        if let Some(d) = abs.ancestors().find(|d| has(d)) {
            return d.to_path_buf();
        }
    }
    dir.to_path_buf()
}

/// The test files named by `paths`: files as given, and every
/// `*.test.yaml`/`*.test.yml` below a directory (hidden paths left out),
/// sorted. A directory without test files is an error.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let before = out.len();
            walk(p, &mut out).map_err(|e| format!("cannot read `{}`: {e}", p.display()))?;
            if out.len() == before {
                return Err(format!("no `*.test.yaml` files below `{}`", p.display()));
            }
            out[before..].sort();
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(&entry.path(), out)?;
        } else if is_test_file(&name) {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// The human report of one file: `ok`/`FAIL` per case, the diff under a
/// failing case, the problems of a bad file.
pub fn render(report: &FileReport, color: bool) -> String {
    let paint = |style: Style, text: &str| {
        if color {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_string()
        }
    };
    let ok = paint(Style::new().fg_color(Some(AnsiColor::Green.into())).bold(), "ok  ");
    let fail = paint(Style::new().fg_color(Some(AnsiColor::Red.into())).bold(), "FAIL");
    let mut out = String::new();
    if !report.errors.is_empty() {
        out.push_str(&format!("{fail} {}: cannot run\n", report.file));
        for e in &report.errors {
            out.push_str(&format!("     {e}\n"));
        }
        return out;
    }
    for c in &report.cases {
        let name = if c.name.is_empty() { report.file.clone() } else { format!("{}: {}", report.file, c.name) };
        let fires = match c.fires.len() {
            1 => "1 fire".to_string(),
            n => format!("{n} fires"),
        };
        out.push_str(&format!("{} {name} ({} evaluations to {}, {fires})\n", if c.ok { &ok } else { &fail }, c.evaluations, ms(c.duration_ms)));
        if !c.ok {
            out.push_str("     expected (-) and got (+):\n");
            out.push_str(&render_mismatches(&c.mismatches, "       ", color));
        }
    }
    out
}
