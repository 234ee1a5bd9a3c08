//! Fleet survey (DESIGN §10): poll `GET http://<host>/status` on every host of
//! an inventory at once, judge the answers against a QoS threshold in exact
//! arithmetic, aggregate the status JSON by fields, and write a report.
//!
//! ```text
//! inventory::parse + merge_repeats -> fetch::survey (one task per host, a semaphore bounds the
//! hosts in flight, keep-alive per host, retries on connection failures and
//! timeouts) -> Outcome stream -> responses.ndjson + qos::extract/Aggregator
//! -> Report (verdict, failures by reason, aggregate) -> report::write
//! ```
//!
//! | file | owns |
//! |---|---|
//! | [`inventory`] | the inventory format -> [`inventory::Target`]s (pure) |
//! | [`fetch`] | the HTTP client side: connect, request, size cap, timeouts, retries, fd limit |
//! | [`qos`] | the exact QoS verdict, field extraction and the aggregate (pure) |
//! | [`report`] | the report value and the files: `report.md`, `report.json`, `aggregate.csv`, `failures.csv` |
//!
//! Must not depend on `config`, `store`, `plan`, `apply` or `cli`; it prints
//! nothing (progress goes through [`Progress`]).

pub mod fetch;
pub mod inventory;
pub mod qos;
pub mod report;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use fetch::{default_concurrency, raise_fd_limit, FdLimit};
pub use inventory::{Repeat, Target, UrlDefaults};
pub use qos::{Fields, Qos, StatusBody};
pub use report::{FailureRow, Report, Status};

/// Default per-attempt timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default retries after the first attempt.
pub const DEFAULT_RETRIES: u32 = 3;
/// Default response size cap (bytes).
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

/// Errors of a survey. [`SurveyError::is_usage`] tells the ones caused by the
/// arguments (exit code 2 at the command line).
#[derive(Debug, thiserror::Error)]
pub enum SurveyError {
    /// The inventory cannot be read.
    #[error("cannot read inventory `{path}`: {source}")]
    ReadInventory {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Lines of the inventory are not hosts or URLs.
    #[error("invalid inventory `{path}`:\n{}", lines.iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n"))]
    BadInventory {
        /// The file.
        path: PathBuf,
        /// Every bad line.
        lines: Vec<inventory::LineError>,
    },
    /// The inventory lists no host.
    #[error("inventory `{path}` lists no hosts")]
    EmptyInventory {
        /// The file.
        path: PathBuf,
    },
    /// The output directory cannot be created or written.
    #[error("cannot create output directory `{path}`: {source}")]
    OutputDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A report file cannot be written.
    #[error("cannot write `{path}`: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl SurveyError {
    /// True for errors in the arguments (missing inventory, bad output dir ...).
    pub fn is_usage(&self) -> bool {
        !matches!(self, SurveyError::Write { .. })
    }
}

/// Why a query failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// No answer within the timeout (connect, request and body together).
    Timeout,
    /// The port refused the connection.
    ConnectRefused,
    /// Another connection failure: unreachable, reset, closed before the answer.
    Connection,
    /// The host name did not resolve.
    Dns,
    /// The answer was not HTTP/1.x.
    Protocol,
    /// An HTTP status other than 200.
    HttpStatus,
    /// The body exceeded the size cap.
    TooLarge,
    /// The body is not a JSON object.
    BadJson,
    /// A field needed for the aggregate is missing or mistyped.
    MissingField,
}

impl Reason {
    /// Whether another attempt may help: connection failures and timeouts
    /// only, never an HTTP status or a bad body.
    pub fn is_retryable(self) -> bool {
        matches!(self, Reason::Timeout | Reason::ConnectRefused | Reason::Connection)
    }

    /// The name used in reports (`connect_refused`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::ConnectRefused => "connect_refused",
            Reason::Connection => "connection",
            Reason::Dns => "dns",
            Reason::Protocol => "protocol",
            Reason::HttpStatus => "http_status",
            Reason::TooLarge => "too_large",
            Reason::BadJson => "bad_json",
            Reason::MissingField => "missing_field",
        }
    }
}

/// A failed query: the reason and a readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The class.
    pub reason: Reason,
    /// What happened (`HTTP 500`, `connection refused` ...).
    pub detail: String,
}

/// The result of querying one target.
#[derive(Debug)]
pub struct Outcome {
    /// The target's index in the inventory.
    pub index: usize,
    /// HTTP status of the last answer, if any.
    pub status: Option<u16>,
    /// Duration of the last attempt.
    pub latency: Duration,
    /// Attempts made (1 + retries used).
    pub attempts: u32,
    /// The status answer, or why there is none.
    pub result: Result<StatusBody, Failure>,
}

/// Everything a survey needs besides the targets.
#[derive(Debug, Clone)]
pub struct Options {
    /// Per-attempt timeout (connect, request and body).
    pub timeout: Duration,
    /// Retries after the first attempt, on connection failures and timeouts.
    pub retries: u32,
    /// Hosts queried at once.
    pub concurrency: usize,
    /// Required share of successful queries.
    pub qos: Qos,
    /// Fields to group by and to sum.
    pub fields: Fields,
    /// Response size cap in bytes.
    pub max_body: usize,
    /// Where the files go (created by [`prepare_output`]).
    pub output_dir: PathBuf,
}

/// Told about progress while a survey runs (a progress bar, say).
pub trait Progress {
    /// The number of targets, once.
    fn begin(&self, _total: usize) {}
    /// One target is done.
    fn advance(&self, _ok: bool) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Default)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// An inventory read: the targets, each line queried once, and the lines
/// merged into an earlier one.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// What to query, in inventory order.
    pub targets: Vec<Target>,
    /// Lines that repeat an earlier line (the caller warns about each).
    pub repeats: Vec<Repeat>,
}

/// Reads and parses an inventory file, merging repeated lines; an empty
/// one is an error.
pub fn load_inventory(path: &Path, defaults: &UrlDefaults) -> Result<Inventory, SurveyError> {
    let bytes = std::fs::read(path).map_err(|source| SurveyError::ReadInventory { path: path.to_path_buf(), source })?;
    let text = String::from_utf8_lossy(&bytes);
    let targets = inventory::parse(&text, defaults).map_err(|lines| SurveyError::BadInventory { path: path.to_path_buf(), lines })?;
    if targets.is_empty() {
        return Err(SurveyError::EmptyInventory { path: path.to_path_buf() });
    }
    let (targets, repeats) = inventory::merge_repeats(targets);
    Ok(Inventory { targets, repeats })
}

/// Creates the output directory and checks that it takes files.
pub fn prepare_output(dir: &Path) -> Result<(), SurveyError> {
    let err = |source| SurveyError::OutputDir { path: dir.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(err)?;
    let probe = dir.join(".scaler-survey-probe");
    std::fs::write(&probe, b"").map_err(err)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Runs a survey of `targets`: queries every one, streams raw answers to
/// `responses.ndjson`, then writes the report files. Exit status policy is
/// the caller's: [`Report::status`].
pub async fn run(targets: &[Target], opts: &Options, progress: &dyn Progress) -> Result<Report, SurveyError> {
    let started_at = chrono::Utc::now();
    let clock = Instant::now();
    progress.begin(targets.len());
    let ndjson_path = opts.output_dir.join(report::RESPONSES);
    let werr = |source| SurveyError::Write { path: ndjson_path.clone(), source };
    let mut ndjson = std::io::BufWriter::new(std::fs::File::create(&ndjson_path).map_err(werr)?);

    let mut rx = fetch::survey(targets, opts);
    let mut ok = 0u64;
    let mut by_reason: BTreeMap<Reason, u64> = BTreeMap::new();
    let mut failures: Vec<FailureRow> = Vec::new();
    let mut agg = qos::Aggregator::default();
    while let Some(mut outcome) = rx.recv().await {
        let Some(target) = targets.get(outcome.index) else { continue };
        // A body that lacks an aggregate field fails the host but is still kept.
        let mut kept_body = None;
        if let Ok(body) = &outcome.result {
            match qos::extract(body, &opts.fields) {
                Ok(sample) => agg.add(sample),
                Err(f) => kept_body = std::mem::replace(&mut outcome.result, Err(f)).ok(),
            }
        }
        report::write_response(&mut ndjson, target, &outcome, kept_body.as_ref()).map_err(werr)?;
        match &outcome.result {
            Ok(_) => ok += 1,
            Err(_) => note_failure(&outcome, target, &mut by_reason, &mut failures),
        }
        progress.advance(outcome.result.is_ok());
    }
    ndjson.flush().map_err(werr)?;
    failures.sort_by_key(|f| f.index);

    let total = targets.len() as u64;
    let met = opts.qos.met(ok, total);
    let report = Report {
        format: report::FORMAT,
        status: if met { Status::Ok } else { Status::Failed },
        total,
        successful: ok,
        failed: total - ok,
        expected_qos: opts.qos,
        actual_qos: qos::actual_percent(ok, total),
        failures_by_reason: by_reason.into_iter().map(|(r, n)| (r.as_str().to_string(), n)).collect(),
        aggregate: met.then(|| report::Aggregate { fields: opts.fields.clone(), rows: agg.rows() }),
        failures,
        settings: report::Settings {
            timeout_ms: opts.timeout.as_millis() as u64,
            retries: opts.retries,
            concurrency: opts.concurrency,
            max_body_bytes: opts.max_body,
        },
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        elapsed_ms: clock.elapsed().as_millis() as u64,
        output_dir: opts.output_dir.display().to_string(),
    };
    report::write(&opts.output_dir, &report)?;
    Ok(report)
}

fn note_failure(o: &Outcome, t: &Target, by_reason: &mut BTreeMap<Reason, u64>, failures: &mut Vec<FailureRow>) {
    if let Err(f) = &o.result {
        *by_reason.entry(f.reason).or_default() += 1;
        failures.push(FailureRow {
            index: t.index,
            url: t.url.clone(),
            reason: f.reason.as_str().to_string(),
            status: o.status,
            attempts: o.attempts,
            error: f.detail.clone(),
        });
    }
}
