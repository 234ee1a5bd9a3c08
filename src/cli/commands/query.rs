//! `scaler query`: print a counter's series over a time range.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use crate::cli::workspace::Workspace;
use crate::cli::{CmdResult, Failure, Ui};
use crate::store::{Location, RangeQuery, SeriesPoints, Selector};

/// Print a counter's stored series: one point per step, `null` where there
/// is no data.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  scaler query load1 .                                   the last hour, 60 points per series
  scaler query load1 . --host web-01 --from now-24h --step 10m
  scaler query req_rate . --from 2024-05-01T00:00:00Z --to 2024-05-02T00:00:00Z --json

Times: `now`, `now-DURATION` (`now-90m`), RFC 3339, or epoch milliseconds.
The range is half-open, [from, to): 24 h at `--step 1m` is 1,440 points.
Each point is the mean of the samples in [t, t + step); failures are not values (see `scaler collect`).
Exit codes: 0 printed (even with no data), 1 error, 2 usage error.")]
pub struct Args {
    /// The counter.
    pub counter: String,
    /// The config repo (default: `-C DIR`, SCALER_DIR, else found from here up).
    pub dir: Option<PathBuf>,
    /// Only this host (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Start of the range.
    #[arg(long, default_value = "now-1h")]
    pub from: String,
    /// End of the range (excluded).
    #[arg(long, default_value = "now")]
    pub to: String,
    /// Distance between points (default: the range / 60).
    #[arg(long)]
    pub step: Option<String>,
    /// Use this state database instead of the config's.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Print JSON: `[{series, unit, points: [[epoch_ms, value|null], ...]}]`.
    #[arg(long)]
    pub json: bool,
}

pub use crate::clock::parse_time;

/// A one-line chart of the points.
pub fn sparkline(points: &[(i64, Option<f64>)]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let values: Vec<f64> = points.iter().filter_map(|p| p.1).collect();
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    points
        .iter()
        .map(|p| match p.1 {
            None => ' ',
            Some(v) if hi > lo => BARS[(((v - lo) / (hi - lo)) * 7.0).round().clamp(0.0, 7.0) as usize],
            Some(_) => BARS[3],
        })
        .collect()
}

fn render(series: &[SeriesPoints], chart: bool) -> String {
    let mut out = String::new();
    for s in series {
        let values: Vec<f64> = s.points.iter().filter_map(|p| p.1).collect();
        out.push_str(&s.series.display());
        if values.is_empty() {
            out.push_str("  (no data in range)\n");
            continue;
        }
        let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
        let last = values.last().copied().unwrap_or(f64::NAN);
        out.push_str(&format!("  min {lo}  max {hi}  last {last}\n"));
        if chart {
            out.push_str(&format!("  {}\n", sparkline(&s.points)));
        } else {
            for (t, v) in &s.points {
                let time = chrono::DateTime::from_timestamp_millis(*t).map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)).unwrap_or_default();
                match v {
                    Some(v) => out.push_str(&format!("  {time}  {v}\n")),
                    None => out.push_str(&format!("  {time}  -\n")),
                }
            }
        }
    }
    out
}

/// Runs the command.
pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let mut counter = None;
    let at = match &args.state {
        Some(p) => Location::Sqlite(p.clone()),
        None => {
            let ws = Workspace::load(args.dir.as_deref(), None, ui)?;
            // An unknown counter is an error, not an empty answer.
            if !ws.config.counters.contains_key(&args.counter) {
                return Err(Failure::new(crate::config::unknown_name("counter", &args.counter, ws.config.counters.keys().map(String::as_str))));
            }
            counter = ws.config.counters.get(&args.counter).map(|c| c.spec.clone());
            ws.location
        }
    };
    if !at.exists() {
        return Err(Failure::new(format!("no state at `{}` yet; `scaler collect` creates it", at.label())));
    }
    let store = crate::store::open(&at)?;
    let now = chrono::Utc::now().timestamp_millis();
    let from = parse_time(&args.from, now).map_err(Failure::new)?;
    let to = parse_time(&args.to, now).map_err(Failure::new)?;
    if to < from {
        return Err(Failure { code: 2, message: format!("`--to` ({}) is before `--from` ({})", args.to, args.from) });
    }
    let step = match &args.step {
        Some(s) => humantime::parse_duration(s).map_err(|e| Failure { code: 2, message: format!("`--step {s}`: {e}") })?.as_millis() as i64,
        None => ((to - from) / 60).max(1000),
    };
    if step <= 0 {
        return Err(Failure { code: 2, message: "`--step` must be positive".into() });
    }
    if (to - from) / step > 100_000 {
        return Err(Failure { code: 2, message: format!("{} points is too many; use a larger `--step`", (to - from) / step) });
    }
    let mut selector = Selector::counter(&args.counter);
    if !args.hosts.is_empty() {
        selector.hosts = Some(args.hosts.clone());
    }
    let series = store.run_blocking(|db| db.range(&RangeQuery { selector, from_ms: from, to_ms: to, step_ms: step }))?;
    if args.json {
        // Each series carries its unit (a regex group's own, else the counter's).
        let unit = |s: &SeriesPoints| counter.as_ref().and_then(|c| c.unit_of(&s.series.labels)).map(str::to_string);
        let v: Vec<_> = series
            .iter()
            .map(|s| json!({"series": s.series, "unit": unit(s), "points": s.points.iter().map(|(t, v)| json!([t, v])).collect::<Vec<_>>()}))
            .collect();
        ui.out(&serde_json::to_string_pretty(&v)?);
    } else if series.is_empty() {
        ui.out(&format!("no series of counter `{}`{}", args.counter, if args.hosts.is_empty() { String::new() } else { format!(" on {}", args.hosts.join(", ")) }));
    } else {
        ui.out(render(&series, std::io::stdout().is_terminal()).trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines() {
        assert_eq!(sparkline(&[(0, Some(0.0)), (1, None), (2, Some(7.0)), (3, Some(3.5))]), "▁ █▅");
        assert_eq!(sparkline(&[(0, Some(2.0)), (1, Some(2.0))]), "▄▄");
    }
}
