//! The survey report as a value and its files in the output directory:
//!
//! | file | content |
//! |---|---|
//! | `report.json` | [`Report`], format 1 (stable: fields are only ever added) |
//! | `report.md` | the same for people, opening with [`Report::summary_lines`] |
//! | `failures.csv` | `url,reason,status,attempts,error`, one row per failed query, inventory order |
//! | `aggregate.csv` | group-by fields, `hosts`, the three sums, `success_rate`; only when QoS is met |
//! | `responses.ndjson` | one line per query in completion order: `index` (inventory order), `url`, `status` (`null` without an answer), `latency_ms` (the last attempt), `attempts`, then `body` (the status object, top-level numbers as sent) or `reason` + `error` (+ `body` for `missing_field`) |

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::qos::{Fields, Qos, Row, StatusBody};
use super::{Outcome, SurveyError, Target};

/// Version of the `report.json` format.
pub const FORMAT: u32 = 1;
/// `report.json`.
pub const REPORT_JSON: &str = "report.json";
/// `report.md`.
pub const REPORT_MD: &str = "report.md";
/// `aggregate.csv`.
pub const AGGREGATE_CSV: &str = "aggregate.csv";
/// `failures.csv`.
pub const FAILURES_CSV: &str = "failures.csv";
/// `responses.ndjson`.
pub const RESPONSES: &str = "responses.ndjson";
/// Failures listed in `report.md` (all are in `failures.csv` and `report.json`).
const MD_FAILURES: usize = 50;

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    /// QoS met.
    #[serde(rename = "OK")]
    Ok,
    /// QoS not met.
    #[serde(rename = "FAILED")]
    Failed,
}

impl Status {
    /// `OK` or `FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Failed => "FAILED",
        }
    }

    /// `PASS` or `FAIL`, as the summary lines say it.
    pub fn verdict(self) -> &'static str {
        match self {
            Status::Ok => "PASS",
            Status::Failed => "FAIL",
        }
    }
}

/// One failed query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureRow {
    /// Position in the inventory (0-based).
    pub index: usize,
    /// The URL.
    pub url: String,
    /// `timeout`, `connect_refused`, `http_status` ...
    pub reason: String,
    /// HTTP status, when an answer came.
    pub status: Option<u16>,
    /// Attempts made.
    pub attempts: u32,
    /// The detail.
    pub error: String,
}

/// The aggregate: the fields and one row per distinct group-by values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Aggregate {
    /// Which fields were grouped and summed.
    pub fields: Fields,
    /// Sorted by the group-by values.
    pub rows: Vec<Row>,
}

/// The settings a survey ran with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// Per-attempt timeout.
    pub timeout_ms: u64,
    /// Retries after the first attempt.
    pub retries: u32,
    /// Hosts in flight.
    pub concurrency: usize,
    /// Response size cap.
    pub max_body_bytes: usize,
}

/// A finished survey (`report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`FORMAT`].
    pub format: u32,
    /// `OK` when `successful × 100 ≥ expected_qos × total`.
    pub status: Status,
    /// Queries (inventory entries).
    pub total: u64,
    /// Queries answered 200 with a JSON object holding every aggregate field.
    pub successful: u64,
    /// `total - successful`.
    pub failed: u64,
    /// The required QoS in percent, an exact decimal string (`"99.5"`).
    pub expected_qos: Qos,
    /// `successful × 100 / total`, rounded down to two decimals (`"97.25"`).
    pub actual_qos: String,
    /// Failed queries per reason, by reason name.
    pub failures_by_reason: BTreeMap<String, u64>,
    /// Every failed query, in inventory order.
    pub failures: Vec<FailureRow>,
    /// `null` when QoS is not met.
    pub aggregate: Option<Aggregate>,
    /// What the survey ran with.
    pub settings: Settings,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// Wall time of the queries and `responses.ndjson`.
    pub elapsed_ms: u64,
    /// Where the files are.
    pub output_dir: String,
}

impl Report {
    /// The summary lines scripts grep for, in `report.md` and on stdout:
    ///
    /// ```text
    /// Status: PASS
    /// Total queries: 1000
    /// Successful queries: 995
    /// Expected QoS: 99.00%
    /// Actual QoS: 99.50%
    /// ```
    ///
    /// `Status` is `PASS` when QoS is met, `FAIL` when not; the expected QoS
    /// is exact (at least two decimals), the actual one rounded down to two.
    pub fn summary_lines(&self) -> Vec<String> {
        vec![
            format!("Status: {}", self.status.verdict()),
            format!("Total queries: {}", self.total),
            format!("Successful queries: {}", self.successful),
            format!("Expected QoS: {}", self.expected_qos.percent()),
            format!("Actual QoS: {}%", self.actual_qos),
        ]
    }
}

/// Writes one `responses.ndjson` line. `kept_body` is the body of a query
/// that failed after its JSON was read (a missing field).
pub fn write_response(w: &mut impl Write, t: &Target, o: &Outcome, kept_body: Option<&StatusBody>) -> std::io::Result<()> {
    let (reason, error, body) = match &o.result {
        Ok(body) => (None, None, Some(body)),
        Err(f) => (Some(f.reason.as_str()), Some(f.detail.as_str()), kept_body),
    };
    let line = ResponseLine {
        index: t.index,
        url: &t.url,
        status: o.status,
        latency_ms: (o.latency.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
        attempts: o.attempts,
        reason,
        error,
        body,
    };
    serde_json::to_writer(&mut *w, &line)?;
    w.write_all(b"\n")
}

/// One line of `responses.ndjson`; the body's numbers are written as they
/// were sent (see [`StatusBody`]).
#[derive(Serialize)]
struct ResponseLine<'a> {
    index: usize,
    url: &'a str,
    status: Option<u16>,
    latency_ms: f64,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a StatusBody>,
}

/// Writes `report.json`, `report.md`, `failures.csv` and, when QoS is met,
/// `aggregate.csv` (a stale one from an earlier run is removed otherwise).
pub fn write(dir: &Path, r: &Report) -> Result<(), SurveyError> {
    let put = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| SurveyError::Write { path, source })
    };
    let mut json = serde_json::to_vec_pretty(r).map_err(|e| SurveyError::Write { path: dir.join(REPORT_JSON), source: e.into() })?;
    json.push(b'\n');
    put(REPORT_JSON, &json)?;
    put(REPORT_MD, markdown(r).as_bytes())?;
    put(FAILURES_CSV, failures_csv(&r.failures).as_bytes())?;
    match &r.aggregate {
        Some(a) => put(AGGREGATE_CSV, aggregate_csv(a).as_bytes())?,
        None => {
            let path = dir.join(AGGREGATE_CSV);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(SurveyError::Write { path, source: e }),
                _ => {}
            }
        }
    }
    Ok(())
}

/// RFC 4180 quoting where needed.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_line(fields: &[String]) -> String {
    let mut line = fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
    line.push('\n');
    line
}

/// `aggregate.csv`: a header of the group-by field names, `hosts`, the three
/// summed field names and `success_rate`, then one row per group.
pub fn aggregate_csv(a: &Aggregate) -> String {
    let mut header = a.fields.group_by.clone();
    header.extend(["hosts".to_string(), a.fields.success.clone(), a.fields.requests.clone(), a.fields.errors.clone(), "success_rate".to_string()]);
    let mut out = csv_line(&header);
    for row in &a.rows {
        let mut cells = row.values.clone();
        cells.extend([
            row.hosts.to_string(),
            row.success.to_string(),
            row.requests.to_string(),
            row.errors.to_string(),
            row.success_rate.clone().unwrap_or_default(),
        ]);
        out.push_str(&csv_line(&cells));
    }
    out
}

/// `failures.csv`.
pub fn failures_csv(failures: &[FailureRow]) -> String {
    let mut out = csv_line(&["url", "reason", "status", "attempts", "error"].map(String::from));
    for f in failures {
        out.push_str(&csv_line(&[
            f.url.clone(),
            f.reason.clone(),
            f.status.map(|s| s.to_string()).unwrap_or_default(),
            f.attempts.to_string(),
            f.error.clone(),
        ]));
    }
    out
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// `report.md`.
pub fn markdown(r: &Report) -> String {
    let mut out = format!("# Fleet survey: {}\n\n", r.status.as_str());
    out.push_str(&format!("```text\n{}\n```\n\n", r.summary_lines().join("\n")));
    out.push_str("| | |\n|---|---|\n");
    for (k, v) in [
        ("failed queries", r.failed.to_string()),
        ("started", r.started_at.clone()),
        ("elapsed", format!("{:.3} s", r.elapsed_ms as f64 / 1000.0)),
        ("timeout / retries / concurrency", format!("{} ms / {} / {}", r.settings.timeout_ms, r.settings.retries, r.settings.concurrency)),
    ] {
        out.push_str(&format!("| {k} | {} |\n", md(&v)));
    }
    out.push_str("\n## Failures by reason\n\n");
    if r.failures_by_reason.is_empty() {
        out.push_str("None.\n");
    } else {
        out.push_str("| reason | queries |\n|---|---|\n");
        for (reason, n) in &r.failures_by_reason {
            out.push_str(&format!("| {reason} | {n} |\n"));
        }
    }
    out.push_str("\n## Aggregate\n\n");
    match &r.aggregate {
        None => out.push_str("Not computed: QoS not met.\n"),
        Some(a) => {
            let f = &a.fields;
            let mut head: Vec<String> = f.group_by.iter().map(|s| md(s)).collect();
            head.extend(["hosts".into(), md(&f.success), md(&f.requests), md(&f.errors), "success rate".into()]);
            out.push_str(&format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len())));
            for row in &a.rows {
                let mut cells: Vec<String> = row.values.iter().map(|s| md(s)).collect();
                cells.extend([
                    row.hosts.to_string(),
                    row.success.to_string(),
                    row.requests.to_string(),
                    row.errors.to_string(),
                    row.success_rate.clone().unwrap_or_else(|| "-".into()),
                ]);
                out.push_str(&format!("| {} |\n", cells.join(" | ")));
            }
        }
    }
    out.push_str("\n## Failures\n\n");
    if r.failures.is_empty() {
        out.push_str("None.\n");
    } else {
        out.push_str("| url | reason | attempts | error |\n|---|---|---|---|\n");
        for f in r.failures.iter().take(MD_FAILURES) {
            out.push_str(&format!("| {} | {} | {} | {} |\n", md(&f.url), f.reason, f.attempts, md(&f.error)));
        }
        if r.failures.len() > MD_FAILURES {
            out.push_str(&format!("\n{} more in `{FAILURES_CSV}`.\n", r.failures.len() - MD_FAILURES));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("app1"), "app1");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn aggregate_csv_has_field_names_in_the_header() {
        let a = Aggregate {
            fields: Fields::default(),
            rows: vec![Row {
                values: vec!["app1".into(), "1.10".into()],
                hosts: 2,
                success: 3,
                requests: 4,
                errors: 1,
                success_rate: Some("0.750000".into()),
            }],
        };
        assert_eq!(
            aggregate_csv(&a),
            "Application,Version,hosts,Success_Count,Request_Count,Error_Count,success_rate\napp1,1.10,2,3,4,1,0.750000\n"
        );
    }
}
