//! `scaler survey`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{CmdResult, Failure, Ui};
use crate::survey::{self, Fields, Options, Qos, Report, Status, SurveyError, UrlDefaults};

const AFTER_HELP: &str = "\
Examples:
  scaler survey -i fleet.txt            poll http://<host>/status on every host; files in ./survey/
  scaler survey -i fleet.txt -o out --qos 99.5 --timeout 500ms --retries 1
  scaler survey -i fleet.txt --path /health --aggregate app,region \\
      --success-field ok --request-field total --error-field errors
  scaler survey -i fleet.txt --json | jq '.failures_by_reason'

Inventory: one `host`, `host:port` or `http://host[:port]/path` per line; blank lines,
surrounding whitespace and `#` comments are ignored; a line that repeats an earlier one is
merged into it (queried once, with a warning). `--path`/`--scheme` apply to bare hosts.
Only plain http is supported (no https).
A query succeeds on HTTP 200 with a JSON object that has every aggregate field. Otherwise it
fails with a reason: timeout, connect_refused, connection, dns, protocol, http_status,
too_large, bad_json, missing_field. Only connection failures and timeouts are retried
(backoff 20, 40, 80 ms ...); one keep-alive connection per host serves all of its URLs.
QoS is met when successful x 100 >= qos x total, in exact decimal arithmetic.
Files in DIR: report.md, report.json, failures.csv, responses.ndjson, and aggregate.csv
(only when QoS is met). report.md and stdout have the lines `Status: PASS` (or `FAIL`),
`Total queries: N`, `Successful queries: N`, `Expected QoS: 99.00%`, `Actual QoS: 99.50%`.

Exit codes: 0 QoS met, 1 QoS not met (or a file could not be written), 2 usage error.";

/// Poll the `/status` endpoint of every host in an inventory, check the share
/// that answered against a QoS, aggregate the answers and write a report.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The inventory file.
    #[arg(short, long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// Directory for the report files (created when missing).
    #[arg(short, long, value_name = "DIR", default_value = "survey")]
    pub output: PathBuf,
    /// Required percentage of successful queries, in (0, 100]: `99`, `99.5`.
    #[arg(long, value_name = "PCT", default_value = "99", value_parser = parse_qos)]
    pub qos: Qos,
    /// Timeout of one attempt (connect, request and body): `1s`, `500ms`.
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Retries after the first attempt, on connection failures and timeouts only.
    #[arg(long, value_name = "N", default_value_t = survey::DEFAULT_RETRIES)]
    pub retries: u32,
    /// Hosts queried at once [default: 1024 per CPU core, bounded by the open-file limit].
    #[arg(long, value_name = "N", value_parser = parse_concurrency)]
    pub concurrency: Option<usize>,
    /// Path (and query) for bare `host` and `host:port` lines.
    #[arg(long, value_name = "PATH", default_value = "/status", value_parser = parse_path)]
    pub path: String,
    /// Scheme for bare `host` and `host:port` lines (only `http` is supported).
    #[arg(long, value_name = "SCHEME", default_value = "http", value_parser = ["http"])]
    pub scheme: String,
    /// Status fields to group by, in order (values are opaque strings).
    #[arg(long, value_name = "FIELD,...", value_delimiter = ',', default_value = "Application,Version")]
    pub aggregate: Vec<String>,
    /// Status field summed as successes.
    #[arg(long, value_name = "FIELD", default_value = "Success_Count")]
    pub success_field: String,
    /// Status field summed as requests (the success rate's denominator).
    #[arg(long, value_name = "FIELD", default_value = "Request_Count")]
    pub request_field: String,
    /// Status field summed as errors.
    #[arg(long, value_name = "FIELD", default_value = "Error_Count")]
    pub error_field: String,
    /// Largest response body accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = survey::DEFAULT_MAX_BODY, value_parser = parse_max_body)]
    pub max_body: usize,
    /// Print the report JSON (the content of `report.json`, on one line) on stdout.
    #[arg(long)]
    pub json: bool,
}

fn parse_qos(s: &str) -> Result<Qos, String> {
    s.parse()
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = match s.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration such as `1s` or `500ms`: {e}"))?,
    };
    if d.is_zero() {
        return Err("the timeout must be greater than zero".to_string());
    }
    Ok(d)
}

fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("concurrency must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a positive number")),
    }
}

fn parse_path(s: &str) -> Result<String, String> {
    survey::inventory::check_path(s).map(|()| s.to_string())
}

fn parse_max_body(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("the size cap must be at least 1 byte".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a number of bytes")),
    }
}

fn usage(e: SurveyError) -> Failure {
    Failure { code: if e.is_usage() { 2 } else { 1 }, message: e.to_string() }
}

/// A progress bar on stderr when it is a terminal.
struct Bar(Option<ProgressBar>);

impl Bar {
    fn new(ui: &Ui) -> Bar {
        Bar((!ui.quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} hosts {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        }))
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl survey::Progress for Bar {
    fn begin(&self, total: usize) {
        if let Some(bar) = &self.0 {
            bar.set_length(total as u64);
        }
    }

    fn advance(&self, _ok: bool) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }
}

/// Runs the command.
pub fn run(args: Args, ui: &Ui) -> CmdResult {
    if let Some(bad) = [&args.success_field, &args.request_field, &args.error_field].into_iter().chain(&args.aggregate).find(|f| f.trim().is_empty()) {
        return Err(Failure { code: 2, message: format!("field names must not be empty (got `{bad}`)") });
    }
    let defaults = UrlDefaults { scheme: args.scheme.clone(), path: args.path.clone() };
    let inventory = survey::load_inventory(&args.inventory, &defaults).map_err(usage)?;
    crate::cli::ui::not_a_format("-o`/`--output", "names the report DIR", &args.output)?;
    survey::prepare_output(&args.output).map_err(usage)?;
    warn_repeats(&inventory.repeats, ui);
    let targets = inventory.targets;
    let fd = survey::raise_fd_limit();
    let cap = fd.max_in_flight();
    let concurrency = match args.concurrency {
        Some(n) if n > cap => {
            ui.warn(&format!("`--concurrency {n}` needs more open files than the limit ({}) allows; using {cap}", fd.soft));
            cap
        }
        Some(n) => n,
        None => survey::default_concurrency(&fd),
    };
    let opts = Options {
        timeout: args.timeout,
        retries: args.retries,
        concurrency,
        qos: args.qos,
        fields: Fields {
            group_by: args.aggregate.clone(),
            success: args.success_field.clone(),
            requests: args.request_field.clone(),
            errors: args.error_field.clone(),
        },
        max_body: args.max_body,
        output_dir: args.output.clone(),
    };
    tracing::info!(hosts = targets.len(), concurrency, fd_before = fd.before, fd_soft = fd.soft, "survey starting");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start the async runtime: {e}")))?;
    let bar = Bar::new(ui);
    let result = rt.block_on(survey::run(&targets, &opts, &bar));
    bar.finish();
    // A DNS lookup past its deadline may still sit in a blocking thread: do not wait for it.
    rt.shutdown_background();
    let report = result.map_err(usage)?;
    if args.json {
        ui.out(&serde_json::to_string(&report)?);
    } else {
        ui.out(&summary(&report, ui));
    }
    Ok(match report.status {
        Status::Ok => ExitCode::SUCCESS,
        Status::Failed => ExitCode::from(1),
    })
}

/// Repeated inventory lines warned about one by one; past this, in one line.
const REPEATS_SHOWN: usize = 20;

fn warn_repeats(repeats: &[survey::Repeat], ui: &Ui) {
    for r in repeats.iter().take(REPEATS_SHOWN) {
        ui.warn(&r.to_string());
    }
    if repeats.len() > REPEATS_SHOWN {
        ui.warn(&format!("{} more inventory lines repeat earlier lines: merged", repeats.len() - REPEATS_SHOWN));
    }
}

fn summary(r: &Report, ui: &Ui) -> String {
    let verdict = match r.status {
        Status::Ok => ui.green("Survey OK:"),
        Status::Failed => ui.bold("Survey FAILED:"),
    };
    let cmp = if r.status == Status::Ok { ">=" } else { "<" };
    let mut out = format!(
        "{verdict} {} of {} queries succeeded ({} % {cmp} {} % required) in {:.2} s\n",
        r.successful,
        r.total,
        r.actual_qos,
        r.expected_qos,
        r.elapsed_ms as f64 / 1000.0
    );
    for line in r.summary_lines() {
        out.push_str(&line);
        out.push('\n');
    }
    if !r.failures_by_reason.is_empty() {
        let parts: Vec<String> = r.failures_by_reason.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!("failures: {}\n", parts.join(", ")));
    }
    if let Some(a) = &r.aggregate {
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut head = a.fields.group_by.clone();
        head.extend(["hosts".to_string(), a.fields.success.clone(), "success_rate".to_string()]);
        rows.push(head);
        for row in &a.rows {
            let mut cells = row.values.clone();
            cells.extend([row.hosts.to_string(), row.success.to_string(), row.success_rate.clone().unwrap_or_else(|| "-".into())]);
            rows.push(cells);
        }
        let widths: Vec<usize> = (0..rows[0].len()).map(|i| rows.iter().map(|r| r.get(i).map_or(0, |c| c.chars().count())).max().unwrap_or(0)).collect();
        for row in rows {
            let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            out.push_str(&format!("  {}\n", line.join("  ").trim_end()));
        }
    }
    let dir = &r.output_dir;
    out.push_str(&format!(
        "report: {dir}/report.md (also report.json, failures.csv, responses.ndjson{})",
        if r.aggregate.is_some() { ", aggregate.csv" } else { "" }
    ));
    out
}
