//! `scaler collect`: run collection in the foreground.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cli::workspace::{runtime, Workspace};
use crate::cli::{CmdResult, Failure, Ui};
use crate::config::Config;
use crate::clock::{Clock, SystemClock};
use crate::fleet::Fleet;
use crate::monitor::scheduler::{self, Options};
use crate::monitor::{plan_jobs, Collector, JobFilter, Sources};
use crate::store::{Backend, Retention, Sample, SampleValue, SeriesKey};

/// How often a long collection seals heads and applies retention.
const MAINTAIN_EVERY: Duration = Duration::from_secs(300);

/// Collect every counter at its interval (or once) and store the samples.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  scaler collect .                         collect until Ctrl-C (a live table on a terminal)
  scaler collect --once --counter load1 .  one round of one counter
  scaler collect --once --on web --json .  one round on target `web`, one JSON object per sample

A failed collection is stored and printed as a failure with its error, never as a number.
Exit codes: 0 collected (failures included), 1 error (config, state, nothing to collect), 2 usage error.")]
pub struct Args {
    /// The config repo (default: `-C DIR`, SCALER_DIR, else found from here up).
    pub dir: Option<PathBuf>,
    /// One round of every counter, then exit.
    #[arg(long)]
    pub once: bool,
    /// Only this counter.
    #[arg(long, value_name = "NAME")]
    pub counter: Option<String>,
    /// Only this target.
    #[arg(long = "on", value_name = "TARGET")]
    pub on: Option<String>,
    /// Collections running at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Print one JSON object per sample.
    #[arg(long)]
    pub json: bool,
}

/// The retention configured for a project.
pub fn retention(config: &Config) -> Retention {
    let d = Retention::default();
    let Some(r) = config.project.spec.state.as_ref().and_then(|s| s.retention.as_ref()) else { return d };
    Retention {
        raw: r.raw.as_ref().map_or(d.raw, |x| x.get()),
        rollup_step: r.rollup_step.as_ref().map_or(d.rollup_step, |x| x.get()),
        rollup: r.rollup.as_ref().map_or(d.rollup, |x| x.get()),
    }
}

/// One sample as a JSON object.
pub fn sample_json(s: &Sample) -> serde_json::Value {
    let mut v = json!({
        "ts_ms": s.ts_ms,
        "time": chrono::DateTime::from_timestamp_millis(s.ts_ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        "counter": s.series.counter,
        "host": s.series.host,
        "labels": s.series.labels,
    });
    match &s.value {
        SampleValue::Value(x) => v["value"] = json!(x),
        SampleValue::Error(e) => {
            v["value"] = serde_json::Value::Null;
            v["error"] = json!(e);
        }
    }
    v
}

/// One sample as a line: `TIME  SERIES  VALUE | error: ...`.
pub fn sample_line(s: &Sample) -> String {
    let time = chrono::DateTime::from_timestamp_millis(s.ts_ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)).unwrap_or_default();
    match &s.value {
        SampleValue::Value(v) => format!("{time}  {}  {v}", s.series.display()),
        SampleValue::Error(e) => format!("{time}  {}  error: {e}", s.series.display()),
    }
}

fn table(latest: &BTreeMap<SeriesKey, Sample>) -> String {
    let width = latest.keys().map(|k| k.display().len()).max().unwrap_or(6).max(6);
    let mut out = format!("\x1b[H\x1b[2J{:width$}  {:>12}  {}\n", "series", "value", "age");
    let now = chrono::Utc::now().timestamp_millis();
    for (k, s) in latest {
        let value = match &s.value {
            SampleValue::Value(v) => format!("{v:>12}"),
            SampleValue::Error(e) => format!("{:>12}  {e}", "FAILED"),
        };
        out.push_str(&format!("{:width$}  {value}  {}s\n", k.display(), (now - s.ts_ms) / 1000));
    }
    out
}

/// Runs the command.
pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let ws = Workspace::load(args.dir.as_deref(), None, ui)?;
    let store = ws.store()?;
    let nodes = store.run_blocking(|db| db.snapshot())?.nodes;
    let fleet = Fleet::new(&ws.config, &nodes);
    if let Some(t) = &args.on {
        fleet.target(t).map_err(|e| Failure::new(e.to_string()))?;
    }
    if let Some(c) = &args.counter {
        if !ws.config.counters.contains_key(c) {
            return Err(Failure::new(crate::config::unknown_name("counter", c, ws.config.counters.keys().map(String::as_str))));
        }
    }
    let (jobs, skipped) = plan_jobs(&fleet, &JobFilter { counter: args.counter.clone(), target: args.on.clone() });
    for s in &skipped {
        ui.warn(&format!("counter `{}` skipped: {}", s.counter, s.reason));
    }
    if jobs.is_empty() {
        return Err(Failure::new("nothing to collect: no counter with a source this build collects has a host (see `scaler validate` and the counters' targets)"));
    }
    let retention = retention(&ws.config);
    let rt = runtime()?;
    let collector: Arc<dyn Collector> = Arc::new(Sources::new()?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let options = Options { concurrency: args.concurrency.max(1), jitter: !args.once };
    if args.once {
        for c in ws.config.counters.values().filter(|c| c.spec.rate) {
            if args.counter.as_ref().is_none_or(|n| n == &c.spec.name) {
                ui.warn(&format!("counter `{}` is a rate: one reading only sets its baseline, so `--once` gives no value for it", c.spec.name));
            }
        }
        let mut samples = rt.block_on(scheduler::run_once(jobs, collector, clock, options));
        samples.sort_by(|a, b| a.series.cmp(&b.series).then(a.ts_ms.cmp(&b.ts_ms)));
        store.run_blocking(|db| db.append(&samples))?;
        print_samples(&samples, args.json, ui)?;
        return Ok(ExitCode::SUCCESS);
    }
    let tty = std::io::stdout().is_terminal() && !args.json;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Sample>>(1024);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    ui.info(&format!("collecting {} jobs; Ctrl-C stops", jobs.len()));
    let json = args.json;
    let writer = std::thread::spawn(move || -> Result<(), Failure> { store.run_blocking_as(|db| write_loop(db, &mut rx, &retention, json, tty)) });
    rt.block_on(async move {
        let sched = tokio::spawn(scheduler::run(jobs, collector, clock, options, tx, stop_rx));
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop_tx.send(true);
        let _ = sched.await;
    });
    writer.join().map_err(|_| Failure::new("the sample writer panicked"))??;
    Ok(ExitCode::SUCCESS)
}

fn print_samples(samples: &[Sample], json: bool, ui: &Ui) -> Result<(), Failure> {
    let mut text = String::new();
    for s in samples {
        if json {
            text.push_str(&serde_json::to_string(&sample_json(s))?);
        } else {
            text.push_str(&sample_line(s));
        }
        text.push('\n');
    }
    ui.out(text.trim_end_matches('\n'));
    Ok(())
}

/// Writes batches as they come (every batch is committed before it is
/// printed), coalescing what is queued; maintains the store now and then.
fn write_loop(store: &mut dyn Backend, rx: &mut tokio::sync::mpsc::Receiver<Vec<Sample>>, retention: &Retention, json: bool, tty: bool) -> Result<(), Failure> {
    use std::io::Write;
    let mut last_maintain = Instant::now();
    let mut latest: BTreeMap<SeriesKey, Sample> = BTreeMap::new();
    let mut last_draw = Instant::now() - Duration::from_secs(1);
    while let Some(mut batch) = rx.blocking_recv() {
        while let Ok(more) = rx.try_recv() {
            batch.extend(more);
        }
        store.append(&batch)?;
        let mut out = std::io::stdout().lock();
        if tty {
            for s in batch {
                latest.insert(s.series.clone(), s);
            }
            if last_draw.elapsed() >= Duration::from_millis(500) {
                let _ = write!(out, "{}", table(&latest));
                last_draw = Instant::now();
            }
        } else {
            for s in &batch {
                let line = if json { serde_json::to_string(&sample_json(s))? } else { sample_line(s) };
                if writeln!(out, "{line}").is_err() {
                    return Ok(());
                }
            }
            let _ = out.flush();
        }
        if last_maintain.elapsed() >= MAINTAIN_EVERY {
            store.maintain(chrono::Utc::now().timestamp_millis(), retention)?;
            last_maintain = Instant::now();
        }
    }
    store.maintain(chrono::Utc::now().timestamp_millis(), retention)?;
    Ok(())
}
