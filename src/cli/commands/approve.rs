//! `scaler approve`: approve a plan the daemon holds; the daemon applies it.
//!
//! The plan is read from the state store (to show it); the approval goes
//! through the daemon's API (`POST /api/v1/plans/{id}/approve`), so the
//! apply runs in the daemon, serialised with `scaler apply` by the state
//! lock, and this command follows the task to its end.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde_json::Value;

use crate::cli::workspace::Workspace;
use crate::cli::{CmdResult, Failure, Ui};
use crate::store::{PlanRecord, PlanState};

/// Approve a held plan (default: the newest); the daemon applies it.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  scaler approve .
  scaler approve 3f2a9c0d4e5b6a7f8091a2b3c4d5e6f7 . --yes

With `daemon.auto_apply: false` the daemon plans every new revision and holds the plan.
This command shows the plan (the newest held one unless PLAN_ID is given), asks on a
terminal unless --yes, and asks the daemon to apply it (`POST /api/v1/plans/ID/approve`
at `daemon.listen`, with the daemon's token), then waits for the apply to end.
A superseded plan (a newer revision was planned since) cannot be approved; a plan whose
base state moved is refused by the daemon and planned again.

Exit codes: 0 applied; 1 not applied (refused, stale, failed) or other errors.")]
pub struct Args {
    /// The plan's id (default: the newest held plan).
    pub plan: Option<String>,
    /// The config repo (default: `-C DIR`, SCALER_DIR, else found from here up).
    pub dir: Option<PathBuf>,
    /// Do not ask.
    #[arg(long)]
    pub yes: bool,
    /// The daemon's address (default: `daemon.listen`, else 127.0.0.1:7878).
    #[arg(long)]
    pub daemon: Option<String>,
    /// How long to wait for the apply to end.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    pub timeout: Duration,
}

fn pick(plans: Vec<PlanRecord>, id: Option<&str>) -> Result<PlanRecord, Failure> {
    match id {
        Some(id) => plans.into_iter().find(|p| p.id == id).ok_or_else(|| Failure::new(format!("no plan `{id}` in the state store"))),
        None => plans.into_iter().find(|p| p.state == PlanState::Held).ok_or_else(|| Failure::new("no plan is held for approval")),
    }
}

fn ask(id: &str) -> Result<(), Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new("refusing to ask for confirmation: stdin is not a terminal; review the plan and pass --yes"));
    }
    eprint!("\nApprove plan {id}? The daemon applies it. Only 'yes' will be accepted: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|e| Failure::new(format!("cannot read the answer: {e}")))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(Failure::new("cancelled; nothing was approved"))
    }
}

/// Runs the command.
pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let ws = Workspace::load(args.dir.as_deref(), None, ui)?;
    let store = ws.store()?;
    let plans = store.run_blocking(|db| db.plans(None, crate::api::MAX_PAGE)).map_err(|e| Failure::new(e.to_string()))?;
    let record = pick(plans, args.plan.as_deref())?;
    let view = crate::api::views::PlanView::from(&record);
    ui.out(&format!(
        "plan {} (revision {}, {}): {} to add, {} to change, {} to destroy\n\n{}",
        view.id, view.revision, view.state, view.summary.add, view.summary.change, view.summary.destroy, view.diff.trim_end()
    ));
    if record.state != PlanState::Held {
        return Err(Failure::new(format!("plan `{}` is {}; only a held plan can be approved", record.id, record.state.as_str())));
    }
    if !args.yes {
        ask(&record.id)?;
    }
    let listen = args
        .daemon
        .clone()
        .or_else(|| ws.config.project.spec.daemon.as_ref().and_then(|d| d.listen.clone()))
        .unwrap_or_else(|| super::daemon::DEFAULT_LISTEN.to_string());
    let base = if listen.starts_with("http://") || listen.starts_with("https://") { listen } else { format!("http://{listen}") };
    let (token, _) = super::daemon::token(&ws)?;
    let rt = crate::cli::workspace::runtime()?;
    let task = rt.block_on(approve(&base, token.expose_secret(), &record.id, args.timeout))?;
    match task["state"].as_str() {
        Some("success") => {
            ui.info(&format!("plan {} applied (task {})", record.id, task["id"].as_str().unwrap_or("?")));
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(Failure::new(format!(
            "plan {} was not applied: {}",
            record.id,
            task["error"].as_str().unwrap_or("the task did not succeed")
        ))),
    }
}

async fn approve(base: &str, token: &str, id: &str, timeout: Duration) -> Result<Value, Failure> {
    let opts = crate::tls::HttpClientOptions { connect_timeout: Duration::from_secs(5), pool_idle_timeout: None, follow_redirects: false };
    let client = crate::tls::http_client(&opts, None).map_err(|e| Failure::new(e.to_string()))?;
    let call = |r: reqwest::RequestBuilder| async move {
        let resp = r.bearer_auth(token).timeout(Duration::from_secs(30)).send().await.map_err(|e| Failure::new(format!("cannot reach the daemon at {base}: {e}")))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| Failure::new(format!("cannot read the daemon's answer: {e}")))?;
        let body: Value = serde_json::from_str(&text).map_err(|e| Failure::new(format!("the daemon's answer is not JSON: {e}")))?;
        if !status.is_success() {
            return Err(Failure::new(format!("the daemon refused ({status}): {}", body["error"].as_str().unwrap_or("?"))));
        }
        Ok(body)
    };
    let accepted = call(client.post(format!("{base}/api/v1/plans/{id}/approve"))).await?;
    let task = accepted["task"].as_str().ok_or_else(|| Failure::new("the daemon's answer names no task"))?.to_string();
    let deadline = Instant::now() + timeout;
    loop {
        let t = call(client.get(format!("{base}/api/v1/tasks/{task}"))).await?;
        if matches!(t["state"].as_str(), Some("success" | "failure" | "cancelled")) {
            return Ok(t);
        }
        if Instant::now() > deadline {
            return Err(Failure::new(format!("the apply (task {task}) did not end within {}; see `GET /api/v1/tasks/{task}`", humantime::format_duration(timeout))));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
