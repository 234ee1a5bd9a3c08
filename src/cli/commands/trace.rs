//! `scaler trace start|stop|list`: long-running `stream` counters run by a
//! detached worker, one task each.

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;

use serde_json::json;

use crate::cli::workspace::Workspace;
use crate::cli::{CmdResult, Failure, Ui};
use crate::model::{Source, StreamVia};
use crate::clock::SystemClock;
use crate::monitor::stream::{follow, spawn, LineParser};
use crate::monitor::stream_ssh::{self, HostEnd, RemoteHost};
use crate::monitor::CounterSpec;
use crate::store::{Backend, TraceStatus, TraceTask};

/// Trace tasks: stream counters whose every output line is stored at once.
#[derive(Debug, clap::Subcommand)]
pub enum TraceCommand {
    /// Start `stream` counters in the background; prints each task id.
    #[command(after_help = "Examples:\n  scaler trace start vmstat .\n  scaler trace start vmstat iostat .\n  scaler trace start --json vmstat . | jq -r .id\n\nThe last argument is the config repo when it is `.`, contains `/`, or is a directory.\nA counter whose tracer is already running is skipped, and said (once, even if named twice).\nEvery stdout line is committed as soon as it is read (a raw event plus its samples); the\ncommand is killed if its worker dies.\n--json prints the task (an array of tasks, or of {counter, skipped, running}, for several).\nExit codes: 0 started (or skipped), 1 error, 2 usage error.")]
    Start(StartArgs),
    /// Stop a task (by id or a unique prefix of at least 8 characters, or `--last`).
    #[command(after_help = "Examples:\n  scaler trace stop 3f2a9c1e .\n  scaler trace stop --last .\n\nExit codes: 0 stopped (or already ended), 1 not found, ambiguous or error, 2 usage error.")]
    Stop(StopArgs),
    /// List tasks, newest first.
    #[command(after_help = "Examples:\n  scaler trace list .\n  scaler trace list --json .\n\nA task whose worker died (kill -9) shows as `dead`; the lines it read are kept.")]
    List(ListArgs),
    /// Runs a task (started by `trace start`; not for direct use).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// `trace start`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// The `stream` counters, then optionally the config repo (default `.`).
    #[arg(required = true, value_name = "COUNTER... [DIR]")]
    pub names: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `trace stop`.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Task id or a unique prefix (at least 8 characters).
    #[arg(required_unless_present = "last")]
    pub id: Option<String>,
    /// The config repo (default: `-C DIR`, SCALER_DIR, else found from here up).
    pub dir: Option<PathBuf>,
    /// Stop the newest task instead of naming one (`stop --last [DIR]`).
    #[arg(long)]
    pub last: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `trace list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The config repo (default: `-C DIR`, SCALER_DIR, else found from here up).
    pub dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `trace worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Task id.
    pub id: String,
    /// The config repo.
    pub dir: PathBuf,
}

/// Runs `trace ...`.
pub fn run(cmd: TraceCommand, ui: &Ui) -> CmdResult {
    match cmd {
        TraceCommand::Start(a) => start(a, ui),
        TraceCommand::Stop(a) => stop(a, ui),
        TraceCommand::List(a) => list(a, ui),
        TraceCommand::Worker(a) => worker(a, ui),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn alive(pid: Option<u32>) -> bool {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else { return false };
    // a zombie is not alive
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// `running`, or `dead` when a running task's worker is gone.
fn shown_status(t: &TraceTask) -> &'static str {
    if t.status == TraceStatus::Running && t.worker_pid.is_some() && !alive(t.worker_pid) {
        "dead"
    } else {
        t.status.as_str()
    }
}

fn stream_spec(ws: &Workspace, name: &str) -> Result<(Arc<CounterSpec>, String), Failure> {
    let counter = ws.config.counters.get(name).ok_or_else(|| Failure::new(crate::config::unknown_name("counter", name, ws.config.counters.keys().map(String::as_str))))?;
    let Source::Stream(src) = &counter.spec.source else {
        return Err(Failure::new(format!("counter `{name}` is not a `stream` counter; `scaler collect` collects it")));
    };
    let command = match src.via {
        Some(StreamVia::Local) => crate::template::render_command(&src.command, &json!({ "host": crate::monitor::LOCAL_HOST })).map_err(|e| Failure::new(format!("command of `{name}`: {e}")))?,
        // `via: ssh` (the default): as written; each host renders its own (`remote_hosts`)
        _ => src.command.clone(),
    };
    let spec = CounterSpec::compile(&counter.spec).map_err(|e| Failure::new(e.to_string()))?;
    Ok((Arc::new(spec), command))
}

/// `COUNTER... [DIR]`: the counters, and the config repo (the last
/// argument when it is `.`, contains `/`, or is a directory).
fn split_names(names: &[String]) -> (Vec<String>, Option<PathBuf>) {
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() && (last == "." || last.contains('/') || std::path::Path::new(last).is_dir()) => {
            (rest.to_vec(), Some(PathBuf::from(last)))
        }
        _ => (names.to_vec(), None),
    }
}

fn start(args: StartArgs, ui: &Ui) -> CmdResult {
    let (counters, dir) = split_names(&args.names);
    let ws = Workspace::load(dir.as_deref(), None, ui)?;
    let mut wanted: Vec<(String, String)> = Vec::new();
    for name in &counters {
        if wanted.iter().any(|(n, _)| n == name) {
            continue;
        }
        let (_, command) = stream_spec(&ws, name)?;
        wanted.push((name.clone(), command));
    }
    let store = ws.store()?;
    let mut shown = Vec::new();
    for (counter, command) in wanted {
        let running = store.run_blocking(|db| db.traces())?.into_iter().find(|t| t.counter == counter && shown_status(t) == "running");
        if let Some(t) = running {
            if !args.json {
                ui.out(&format!("Trace of `{counter}` is already running (task {}); skipped.", t.id));
            }
            shown.push(json!({ "counter": counter, "skipped": true, "running": t.id }));
            continue;
        }
        let task = start_one(&ws, &store, &counter, command)?;
        if !args.json {
            ui.out(&format!("Started trace {} ({}: {}).", task.id, task.counter, task.command));
        }
        shown.push(serde_json::to_value(&task)?);
    }
    if args.json {
        let v = if shown.len() == 1 { shown.remove(0) } else { serde_json::Value::Array(shown) };
        ui.out(&serde_json::to_string_pretty(&v)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Records a task for `counter` and starts its detached worker.
fn start_one(ws: &Workspace, store: &crate::store::StateStore, counter: &str, command: String) -> Result<TraceTask, Failure> {
    store.run_blocking_as(|store| -> Result<TraceTask, Failure> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut task = TraceTask {
        id: id.clone(),
        counter: counter.to_string(),
        host: task_host(ws, store, counter)?,
        command,
        worker_pid: None,
        pid: None,
        started_ms: now_ms(),
        ended_ms: None,
        status: TraceStatus::Running,
        detail: None,
    };
    store.put_trace(&task)?;
    let logs = ws.state_dir.join("traces");
    std::fs::create_dir_all(&logs).map_err(|e| Failure::new(format!("`{}`: {e}", logs.display())))?;
    let log = std::fs::File::create(logs.join(format!("{id}.log"))).map_err(|e| Failure::new(format!("trace log: {e}")))?;
    let err = log.try_clone().map_err(|e| Failure::new(format!("trace log: {e}")))?;
    let exe = std::env::current_exe().map_err(|e| Failure::new(format!("cannot find the scaler binary: {e}")))?;
    let root = ws.config.root.clone();
    use std::os::unix::process::CommandExt;
    let child = std::process::Command::new(exe)
        .args(["trace", "worker", &id])
        .arg(&root)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| Failure::new(format!("cannot start the trace worker: {e}")))?;
    task.worker_pid = Some(child.id());
    // the worker may already have recorded its command's pid: keep it
    if let Ok(current) = store.find_trace(&id) {
        task.pid = current.pid;
        task.status = current.status;
        task.ended_ms = current.ended_ms;
        task.detail = current.detail;
    }
    store.put_trace(&task)?;
    Ok(task)
    })
}

fn stop(mut args: StopArgs, ui: &Ui) -> CmdResult {
    // `stop --last DIR`: the one positional is the config repo.
    if args.last && args.dir.is_none() {
        if let Some(id) = args.id.take_if(|id| id == "." || id.contains('/') || std::path::Path::new(id).is_dir()) {
            args.dir = Some(PathBuf::from(id));
        }
    }
    let ws = Workspace::load(args.dir.as_deref(), None, ui)?;
    let store = ws.store()?;
    store.run_blocking_as(|store| -> CmdResult {
    let mut task = match (&args.id, args.last) {
        (Some(id), false) => store.find_trace(id)?,
        // `traces` lists newest first.
        (None, true) => store.traces()?.into_iter().next().ok_or_else(|| Failure::new("no trace tasks to stop"))?,
        _ => return Err(Failure { code: 2, message: "give a task id or `--last`, not both".into() }),
    };
    let was = shown_status(&task);
    if task.status == TraceStatus::Running {
        task.status = TraceStatus::Stopped;
        task.ended_ms = Some(now_ms());
        task.detail = Some(if was == "dead" { "stopped after its worker died".into() } else { "stopped by `scaler trace stop`".into() });
        store.put_trace(&task)?;
        if let Some(pid) = task.pid.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
    }
    if args.json {
        ui.out(&serde_json::to_string_pretty(&task)?);
    } else if was == "running" || was == "dead" {
        ui.out(&format!("Stopped trace {}.", task.id));
    } else {
        ui.out(&format!("Trace {} had already ended ({was}).", task.id));
    }
    Ok(ExitCode::SUCCESS)
    })
}

fn list(args: ListArgs, ui: &Ui) -> CmdResult {
    let ws = Workspace::load(args.dir.as_deref(), None, ui)?;
    if !ws.store_exists() {
        ui.out(if args.json { "[]" } else { "(no trace tasks)" });
        return Ok(ExitCode::SUCCESS);
    }
    let store = ws.store()?;
    store.run_blocking_as(|store| -> CmdResult {
    let tasks = store.traces()?;
    if args.json {
        let v: Vec<_> = tasks
            .iter()
            .map(|t| {
                let lines = store.events(&format!("trace:{}", t.id), i64::MIN, i64::MAX, usize::MAX >> 1).map(|e| e.len()).unwrap_or(0);
                let mut v = serde_json::to_value(t).unwrap_or_default();
                v["status"] = json!(shown_status(t));
                v["lines"] = json!(lines);
                v
            })
            .collect();
        ui.out(&serde_json::to_string_pretty(&v)?);
    } else if tasks.is_empty() {
        ui.out("(no trace tasks)");
    } else {
        let mut text = String::new();
        for t in &tasks {
            let started = chrono::DateTime::from_timestamp_millis(t.started_ms).map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default();
            text.push_str(&format!("{}  {:8}  {:16}  {}  {}\n", t.id, shown_status(t), t.counter, started, t.command));
        }
        ui.out(text.trim_end());
    }
    Ok(ExitCode::SUCCESS)
    })
}

fn worker(args: WorkerArgs, ui: &Ui) -> CmdResult {
    let ws = Workspace::load(Some(&args.dir), None, ui)?;
    let store = ws.store()?;
    let label = store.label().to_string();
    store.run_blocking_as(|store| -> CmdResult {
    let mut task = store.find_trace(&args.id)?;
    let (spec, _) = stream_spec(&ws, &task.counter)?;
    let result = match remote_hosts(&ws, store, &task.counter)? {
        Some(hosts) => run_remote(store, &mut task, spec, hosts, &label),
        None => run_task(store, &mut task, spec, &label),
    };
    let mut latest = store.find_trace(&task.id)?;
    if latest.status == TraceStatus::Running {
        latest.ended_ms = Some(now_ms());
        match &result {
            Ok(detail) => {
                latest.status = TraceStatus::Exited;
                latest.detail = Some(detail.clone());
            }
            Err(e) => {
                latest.status = TraceStatus::Failed;
                latest.detail = Some(e.message.clone());
            }
        }
        store.put_trace(&latest)?;
    }
    result.map(|_| ExitCode::SUCCESS)
    })
}

/// The hosts of a `via: ssh` stream counter (the fleet as recorded now);
/// `None` for `via: local`.
fn remote_hosts(ws: &Workspace, store: &mut dyn Backend, counter: &str) -> Result<Option<Vec<RemoteHost>>, Failure> {
    let Some(c) = ws.config.counters.get(counter) else { return Ok(None) };
    if matches!(&c.spec.source, Source::Stream(s) if s.via == Some(StreamVia::Local)) {
        return Ok(None);
    }
    let nodes = store.snapshot()?.nodes;
    let fleet = crate::fleet::Fleet::new(&ws.config, &nodes);
    stream_ssh::remote_hosts(&fleet, &c.spec).map(Some).map_err(Failure::new)
}

/// Where a task's command runs: `local`, or its hosts (`a,b`).
fn task_host(ws: &Workspace, store: &mut dyn Backend, counter: &str) -> Result<String, Failure> {
    Ok(match remote_hosts(ws, store, counter)? {
        Some(hosts) => hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(","),
        None => crate::monitor::LOCAL_HOST.into(),
    })
}

/// Runs a `via: ssh` stream on every host and commits every line; returns
/// how each host ended (an error when none could run). The worker holds the
/// connections, so it is the task's process: `trace stop` sends it SIGTERM,
/// and it stops every remote command.
fn run_remote(store: &mut dyn Backend, task: &mut TraceTask, spec: Arc<CounterSpec>, hosts: Vec<RemoteHost>, label: &str) -> Result<String, Failure> {
    let mut current = store.find_trace(&task.id)?;
    current.pid = Some(std::process::id());
    current.worker_pid = Some(std::process::id());
    store.put_trace(&current)?;
    if current.status != TraceStatus::Running {
        return Ok("stopped before it started".into());
    }
    *task = current;
    let rt = crate::cli::workspace::runtime()?;
    let stop = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let source = format!("trace:{}", task.id);
    let ends = stream_ssh::follow_ssh(&rt, hosts, spec, &source, Arc::new(SystemClock), stop, |line| {
        store.append_events(std::slice::from_ref(&line.event), &line.samples)
    })
    .map_err(|e| Failure::new(format!("`{label}`: {e}")))?;
    let detail = ends.iter().map(HostEnd::describe).collect::<Vec<_>>().join("; ");
    if ends.iter().all(|e| e.result.is_err()) {
        return Err(Failure::new(detail));
    }
    Ok(detail)
}

/// Runs the command and commits every line; returns how it ended.
fn run_task(store: &mut dyn Backend, task: &mut TraceTask, spec: Arc<CounterSpec>, label: &str) -> Result<String, Failure> {
    let mut child = spawn(&task.command)?;
    let mut current = store.find_trace(&task.id)?;
    current.pid = Some(child.id());
    current.worker_pid = Some(std::process::id());
    store.put_trace(&current)?;
    if current.status != TraceStatus::Running {
        // stopped before the command started
        let _ = child.kill();
        let _ = child.wait();
        return Ok("stopped before it started".into());
    }
    *task = current;
    let stdout = child.stdout.take().ok_or_else(|| Failure::new("no stdout from the stream command"))?;
    let mut parser = LineParser::new(spec, &task.host, &format!("trace:{}", task.id));
    let lines = follow(stdout, &mut parser, &SystemClock, |line| store.append_events(std::slice::from_ref(&line.event), &line.samples))
        .map_err(|e| Failure::new(format!("`{label}`: {e}")))?;
    let status = child.wait().map_err(|e| Failure::new(format!("waiting for the stream command: {e}")))?;
    Ok(format!("{status} after {lines} lines"))
}
