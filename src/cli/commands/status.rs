//! `scaler status`: every trigger's state, why it last fired, the job queue,
//! and what the daemon says about its config source.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use crate::cli::workspace::Workspace;
use crate::cli::{Failure, CmdResult, Ui};
use crate::daemon::{Noted, SourceStatus};
use crate::rules::engine::{describe, human_ms};
use crate::rules::Record;
use crate::api::views::{rfc3339_ms as time, JobView, TriggerView};
use crate::store::JobFilter;

/// Show every trigger's state (pending time, last fire and the values that
/// made it fire) and the recent jobs with their results.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  scaler status examples/quickstart
  scaler status --jobs 50 .
  scaler status --json . | jq '.triggers[] | select(.state == \"pending\")'

States: inactive, pending (the condition holds; waiting for `for`), firing (fired at the
last evaluation), cooldown, nodata (an input is missing, or a group's coverage is too low),
error (an input failed or is not a number); nodata and error carry the reason.
The source part (the daemon's last word, from .scaler/source.json): what it follows, the
revision it runs, the last refused revision with its diagnostics, the last plan or apply,
a failing fetch, and for a git source the last fetched commit, the time of the next poll
(a push webhook fetches sooner) and the failed fetches.
Exit codes: 0 shown, 1 error (config or state unreadable).")]
pub struct Args {
    /// The config repo (default: `-C DIR`, SCALER_DIR, else found from here up).
    pub dir: Option<PathBuf>,
    /// How many recent jobs to show.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub jobs: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn terms_text(terms: &[crate::rules::Term]) -> String {
    terms
        .iter()
        .map(|t| match (t.value, &t.reason) {
            (Some(v), _) => format!("{} = {v}", t.expr),
            (None, Some(r)) => format!("{}: {r}", t.expr),
            (None, None) => format!("{} = ?", t.expr),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn noted(what: &str, n: &Noted, now: i64) -> String {
    let id = if n.revision.is_empty() { String::new() } else { format!("{} ", crate::gitops::short(&n.revision)) };
    let mut line = format!("  {what}: {id}at {} ({} ago)", time(n.at_ms), human_ms(now - n.at_ms));
    if let Some(d) = &n.detail {
        line.push_str(&format!(": {d}"));
    }
    line.push('\n');
    for d in &n.diagnostics {
        line.push_str(&format!("    {d}\n"));
    }
    line
}

/// The daemon's source, running revision, last refusal, last plan or apply.
fn source_text(s: &SourceStatus, now: i64) -> String {
    let mut out = format!(
        "Source: {} (auto_apply {}; daemon pid {}, last update {} ago)\n",
        s.source,
        if s.auto_apply { "on" } else { "off" },
        s.pid,
        human_ms(now - s.updated_ms)
    );
    match &s.running {
        Some(n) => out.push_str(&noted("running", n, now)),
        None => out.push_str("  running: the config the daemon was started with\n"),
    }
    for (what, n) in [("last plan", &s.last_settled), ("last refused", &s.last_failed), ("source failing", &s.source_error)] {
        if let Some(n) = n {
            out.push_str(&noted(what, n, now));
        }
    }
    if let Some(f) = &s.fetch {
        out.push_str(&fetch_text(f, now));
    }
    out.push('\n');
    out
}

/// The git source's last fetch and next poll.
fn fetch_text(f: &crate::gitops::Fetches, now: i64) -> String {
    let mut out = String::new();
    match (&f.last_fetched, f.fetched_ms) {
        (Some(c), Some(at)) => out.push_str(&format!("  last fetched: {} at {} ({} ago)\n", crate::gitops::short(c), time(at), human_ms(now - at))),
        _ => out.push_str("  last fetched: nothing yet\n"),
    }
    if let Some(next) = f.next_fetch_ms {
        let when = if next >= now { format!("in {}", human_ms(next - now)) } else { format!("due {} ago", human_ms(now - next)) };
        out.push_str(&format!("  next poll: {} ({when})\n", time(next)));
    }
    if f.failed > 0 || f.woken > 0 {
        out.push_str(&format!("  fetches: {} failed, {} started by a webhook\n", f.failed, f.woken));
    }
    out
}

/// Runs the command.
pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let ws = Workspace::load(args.dir.as_deref(), None, ui)?;
    let now = chrono::Utc::now().timestamp_millis();
    let (records, jobs, depth) = if ws.store_exists() {
        ws.store()?.run_blocking_as(|store| -> Result<_, Failure> {
            let records: HashMap<String, Record> = crate::daemon::load_records(store)?;
            let jobs = store.jobs(&JobFilter { limit: Some(args.jobs), ..JobFilter::default() })?;
            Ok((records, jobs, store.queue_depth()?))
        })?
    } else {
        (HashMap::new(), Vec::new(), Default::default())
    };
    let fresh = Record::default();
    if args.json {
        let triggers = TriggerView::all(&ws.config, &records, now);
        let jobs: Vec<JobView> = jobs.iter().map(JobView::from).collect();
        let source = SourceStatus::read(&ws.state_dir);
        ui.out(&serde_json::to_string_pretty(&json!({ "now_ms": now, "triggers": triggers, "jobs": jobs, "queue": depth, "source": source }))?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    if let Some(source) = SourceStatus::read(&ws.state_dir) {
        out.push_str(&source_text(&source, now));
    }
    if ws.config.triggers.is_empty() {
        out.push_str("No triggers in the config.\n");
    }
    let width = ws.config.triggers.keys().map(String::len).max().unwrap_or(7).max(7);
    if !ws.config.triggers.is_empty() {
        out.push_str(&ui.bold(&format!("{:width$}  {:<28}  {}\n", "TRIGGER", "STATE", "LAST FIRE")));
    }
    for name in ws.config.triggers.keys() {
        let r = records.get(name).unwrap_or(&fresh);
        let last = match r.state.last_fired {
            Some(t) => format!("{} ({} ago)", time(t), human_ms(now - t)),
            None => "never".into(),
        };
        let state = if r.evaluated_ms.is_none() { "not evaluated yet".to_string() } else { describe(r, now) };
        out.push_str(&format!("{name:width$}  {state:<28}  {last}\n"));
        if !r.terms.is_empty() {
            out.push_str(&format!("{:width$}    now: {}\n", "", terms_text(&r.terms)));
        }
        if let Some(f) = &r.last_fire {
            out.push_str(&format!(
                "{:width$}    fired because {} held from {} to {} ({})\n",
                "",
                terms_text(&f.terms),
                time(f.pending_since_ms),
                time(f.at_ms),
                human_ms(f.at_ms - f.pending_since_ms)
            ));
        }
    }
    let depth_text: Vec<String> = depth.iter().filter(|(_, v)| **v > 0).map(|(k, v)| format!("{v} {k}")).collect();
    out.push_str(&format!("\nJobs: {}\n", if depth_text.is_empty() { "none".into() } else { depth_text.join(", ") }));
    for j in &jobs {
        let err = j.last_error.as_deref().map(|e| format!("  last error: {e}")).unwrap_or_default();
        out.push_str(&format!(
            "  #{} {} fired {}  {}  attempt {}/{}  actions done {}{}\n",
            j.id,
            j.trigger,
            time(j.fired_at_ms),
            j.status.as_str(),
            j.attempts,
            j.max_attempts,
            j.actions_done,
            err
        ));
    }
    ui.out(out.trim_end());
    Ok(ExitCode::SUCCESS)
}
