//! `scaler survey` (issue 3) against real HTTP servers on loopback: mixed
//! answers, exact QoS boundaries, retries counted server-side, keep-alive,
//! 1,000 hosts, exact `aggregate.csv`, usage errors, `--json`; numeric
//! versions kept as sent, repeated inventory lines merged, the summary lines
//! scripts grep for.

mod server;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use server::{ok, refused_port, Behaviour, Fleet};

use crate::harness::{scaler, stderr, stdout, wait_until, HungServer};

/// Slow handlers answer after this; every client timeout in these tests is far shorter.
const SLOW: Duration = Duration::from_secs(30);

/// Runs `scaler survey` on `inventory`; files land in `dir/out`. Unless the
/// test sets one, the timeout is generous so that a loaded machine does not
/// turn a healthy test server into a timeout.
fn survey(dir: &Path, inventory: &str, args: &[&str]) -> Output {
    std::fs::write(dir.join("inventory.txt"), inventory).unwrap();
    let mut all = vec!["survey", "-i", "inventory.txt", "-o", "out"];
    if !args.contains(&"--timeout") {
        all.extend(["--timeout", "10s"]);
    }
    all.extend_from_slice(args);
    scaler(dir, &all)
}

fn report(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("out/report.json")).unwrap()).unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn explain(out: &Output) -> String {
    format!("exit {:?}\n--- stdout\n{}\n--- stderr\n{}", out.status.code(), stdout(out), stderr(out))
}

#[test]
fn mixed_fleet_reports_every_failure_with_its_reason() {
    let fleet = Fleet::start(vec![
        ok("web", "1.0", 9, 10),
        ok("web", "1.0", 5, 5),
        Behaviour::Status(500),
        Behaviour::Slow(SLOW),
        Behaviour::Body("<html>not json</html>".into()),
        Behaviour::Body("[1, 2]".into()),
        Behaviour::Body("{\"Application\": \"web\", \"Version\": \"1.0\", \"Request_Count\": 3, \"Error_Count\": 0}".into()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let inventory = format!("# mixed\n{}\n  127.0.0.1:{}  # refused\n", fleet.inventory(), refused_port());
    let out = survey(dir.path(), &inventory, &["--timeout", "1s", "--retries", "1"]);
    assert_eq!(code(&out), 1, "{}", explain(&out));
    let r = report(dir.path());
    assert_eq!(r["status"], "FAILED");
    assert_eq!((r["total"].as_u64(), r["successful"].as_u64(), r["failed"].as_u64()), (Some(8), Some(2), Some(6)));
    assert_eq!(r["expected_qos"], "99");
    assert_eq!(r["actual_qos"], "25.00");
    assert_eq!(
        r["failures_by_reason"],
        serde_json::json!({"timeout": 1, "connect_refused": 1, "http_status": 1, "bad_json": 2, "missing_field": 1})
    );
    let failures: Vec<(String, String, u64)> = r["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["reason"].as_str().unwrap().to_string(), f["error"].as_str().unwrap().to_string(), f["attempts"].as_u64().unwrap()))
        .collect();
    assert_eq!(failures[0], ("http_status".into(), "HTTP 500 Internal Server Error".into(), 1));
    assert_eq!(failures[1], ("timeout".into(), "no answer within 1s".into(), 2));
    assert_eq!(failures[2].0, "bad_json");
    assert_eq!(failures[3].1, "expected a JSON object, got an array");
    assert_eq!(failures[4], ("missing_field".into(), "`Success_Count` is missing".into(), 1));
    assert_eq!(failures[5], ("connect_refused".into(), "connection refused".into(), 2));
    assert!(r["aggregate"].is_null());
    // QoS failed: no aggregate, but the failure list and the raw answers
    assert!(!dir.path().join("out/aggregate.csv").exists());
    let csv = std::fs::read_to_string(dir.path().join("out/failures.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7, "{csv}");
    assert!(csv.starts_with("url,reason,status,attempts,error\n"), "{csv}");
    let ndjson = std::fs::read_to_string(dir.path().join("out/responses.ndjson")).unwrap();
    let mut lines: Vec<Value> = ndjson.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    lines.sort_by_key(|l| l["index"].as_u64());
    assert_eq!(lines.len(), 8);
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["body"]["Success_Count"], 9);
    assert!(lines[0]["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(lines[2]["status"], 500);
    assert_eq!(lines[2]["reason"], "http_status");
    assert!(lines[3]["status"].is_null() && lines[3]["error"] == "no answer within 1s");
    assert_eq!(lines[6]["body"]["Request_Count"], 3, "a body that lacks a field is kept");
    let md = std::fs::read_to_string(dir.path().join("out/report.md")).unwrap();
    assert!(md.starts_with("# Fleet survey: FAILED\n"), "{md}");
    assert!(md.contains("| connect_refused | 1 |"), "{md}");
    assert!(stdout(&out).contains("Survey FAILED: 2 of 8 queries succeeded (25.00 % < 99 % required)"), "{}", explain(&out));
}

#[test]
fn retries_are_counted_by_the_server_and_only_for_timeouts_and_connect_failures() {
    let fleet = Fleet::start(vec![Behaviour::Slow(SLOW), Behaviour::Status(500), Behaviour::Status(503), Behaviour::Body("nope".into())]);
    let dir = tempfile::tempdir().unwrap();
    let out = survey(dir.path(), &fleet.inventory(), &["--timeout", "400ms", "--retries", "3"]);
    assert_eq!(code(&out), 1, "{}", explain(&out));
    // the slow handler sees the first attempt and 3 retries: 4 requests, on 4 connections
    let slow = &fleet.endpoints[0];
    wait_until(Duration::from_secs(5), "4 requests at the slow endpoint", || slow.requests() == 4);
    assert_eq!(slow.connections(), 4);
    // an HTTP error status and a bad body are answers: exactly one request each
    for ep in &fleet.endpoints[1..] {
        assert_eq!(ep.requests(), 1, "port {}", ep.port);
    }
    let r = report(dir.path());
    assert_eq!(r["failures"][0]["attempts"], 4);
    assert_eq!(r["failures"][1]["attempts"], 1);
    assert_eq!(r["failures"][2]["error"], "HTTP 503 Service Unavailable");
    // --retries 0: one attempt only
    let out = survey(dir.path(), &fleet.endpoints[0].addr(), &["--timeout", "300ms", "--retries", "0"]);
    assert_eq!(code(&out), 1, "{}", explain(&out));
    wait_until(Duration::from_secs(5), "the fifth request", || slow.requests() == 5);
    assert_eq!(report(dir.path())["failures"][0]["attempts"], 1);
}

#[test]
fn qos_boundaries_are_exact() {
    let mut behaviours: Vec<Behaviour> = (0..57).map(|i| ok("app", "1", i, 100)).collect();
    behaviours.extend((0..43).map(|_| Behaviour::Status(500)));
    let fleet = Fleet::start(behaviours);
    let dir = tempfile::tempdir().unwrap();
    let all = fleet.inventory();
    // 57 of 100 at qos 57 passes
    let out = survey(dir.path(), &all, &["--qos", "57"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let r = report(dir.path());
    assert_eq!((r["status"].as_str(), r["successful"].as_u64(), r["actual_qos"].as_str()), (Some("OK"), Some(57), Some("57.00")));
    assert!(dir.path().join("out/aggregate.csv").exists());
    // ... and at 57.000 too; at 57.01 it does not
    assert_eq!(code(&survey(dir.path(), &all, &["--qos", "57.000"])), 0);
    let out = survey(dir.path(), &all, &["--qos", "57.01"]);
    assert_eq!(code(&out), 1, "{}", explain(&out));
    assert_eq!(report(dir.path())["expected_qos"], "57.01");
    assert!(!dir.path().join("out/aggregate.csv").exists(), "a stale aggregate is removed when QoS fails");
    // 56 of 100 at qos 57 fails: drop one OK host, add a refused one
    let mut lines: Vec<String> = all.lines().skip(1).map(String::from).collect();
    lines.push(format!("127.0.0.1:{}", refused_port()));
    let out = survey(dir.path(), &lines.join("\n"), &["--qos", "57", "--retries", "0"]);
    assert_eq!(code(&out), 1, "{}", explain(&out));
    let r = report(dir.path());
    assert_eq!((r["status"].as_str(), r["total"].as_u64(), r["successful"].as_u64()), (Some("FAILED"), Some(100), Some(56)));
    assert_eq!(code(&survey(dir.path(), &lines.join("\n"), &["--qos", "56", "--retries", "0"])), 0);
}

#[test]
fn aggregate_csv_has_exact_contents() {
    let fleet = Fleet::start(vec![
        ok("web", "1.10", 90, 100),
        ok("web", "1.1", 10, 10),
        ok("api", "2.0", 1, 3),
        ok("web", "1.10", 45, 50),
        ok("api", "2.0", 2, 3),
        ok("db", "9", 0, 0),
        Behaviour::Status(500),
        Behaviour::Body("{\"Application\": \"web\", \"Version\": \"1.1\", \"Request_Count\": 1000, \"Error_Count\": 0}".into()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let out = survey(dir.path(), &fleet.inventory(), &["--qos", "75"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let csv = std::fs::read_to_string(dir.path().join("out/aggregate.csv")).unwrap();
    assert_eq!(
        csv,
        "Application,Version,hosts,Success_Count,Request_Count,Error_Count,success_rate\n\
         api,2.0,2,3,6,3,0.500000\n\
         db,9,1,0,0,0,\n\
         web,1.1,1,10,10,0,1.000000\n\
         web,1.10,2,135,150,15,0.900000\n"
    );
    let rows = &report(dir.path())["aggregate"]["rows"];
    assert_eq!(rows[3], serde_json::json!({"values": ["web", "1.10"], "hosts": 2, "success": 135, "requests": 150, "errors": 15, "success_rate": "0.900000"}));
    assert!(stdout(&out).contains("Survey OK: 6 of 8"), "{}", explain(&out));
}

#[test]
fn aggregate_fields_are_configurable() {
    let body = |region: &str, good: u64| format!("{{\"app\": \"x\", \"region\": \"{region}\", \"ok\": {good}, \"total\": 10, \"bad\": {}}}", 10 - good);
    let fleet = Fleet::start(vec![Behaviour::Body(body("eu", 7)), Behaviour::Body(body("us", 9)), Behaviour::Body(body("eu", 8))]);
    let dir = tempfile::tempdir().unwrap();
    let args = ["--aggregate", "region,app", "--success-field", "ok", "--request-field", "total", "--error-field", "bad", "--path", "/health"];
    let out = survey(dir.path(), &fleet.inventory(), &args);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let csv = std::fs::read_to_string(dir.path().join("out/aggregate.csv")).unwrap();
    assert_eq!(csv, "region,app,hosts,ok,total,bad,success_rate\neu,x,2,15,20,5,0.750000\nus,x,1,9,10,1,0.900000\n");
    assert_eq!(fleet.endpoints[0].paths.lock().unwrap().as_slice(), ["/health"]);
    // the default fields are missing from these bodies: every host fails with the reason
    let out = survey(dir.path(), &fleet.inventory(), &[]);
    assert_eq!(code(&out), 1, "{}", explain(&out));
    let r = report(dir.path());
    assert_eq!(r["failures_by_reason"], serde_json::json!({"missing_field": 3}));
    assert_eq!(r["failures"][0]["error"], "`Application` is missing");
}

#[test]
fn one_connection_serves_every_path_of_a_host() {
    let fleet = Fleet::start(vec![ok("web", "1", 1, 1)]);
    let dir = tempfile::tempdir().unwrap();
    let a = fleet.endpoints[0].addr();
    let inventory = format!("http://{a}/status\nhttp://{a}/status?probe=2\n{a}\nhttp://{a}/other\n");
    let out = survey(dir.path(), &inventory, &[]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(report(dir.path())["total"], 4);
    assert_eq!(fleet.endpoints[0].requests(), 4);
    assert_eq!(fleet.endpoints[0].connections(), 1, "keep-alive: one connection for four requests");
    assert_eq!(fleet.endpoints[0].paths.lock().unwrap().as_slice(), ["/status", "/status?probe=2", "/status", "/other"]);
}

#[test]
fn responses_over_the_size_cap_fail() {
    let big = format!("{{\"Application\": \"a\", \"Version\": \"1\", \"Success_Count\": 1, \"Request_Count\": 1, \"Error_Count\": 0, \"pad\": \"{}\"}}", "x".repeat(5000));
    let fleet = Fleet::start(vec![Behaviour::Body(big)]);
    let dir = tempfile::tempdir().unwrap();
    let out = survey(dir.path(), &fleet.inventory(), &["--max-body", "4096"]);
    assert_eq!(code(&out), 1, "{}", explain(&out));
    assert_eq!(report(dir.path())["failures"][0]["reason"], "too_large");
    assert_eq!(code(&survey(dir.path(), &fleet.inventory(), &["--max-body", "8192"])), 0);
}

#[test]
fn a_thousand_hosts() {
    let behaviours: Vec<Behaviour> = (0..1000u64).map(|i| ok(&format!("app{}", i % 3), &format!("1.{}", i % 2), i, 1000)).collect();
    let fleet = Fleet::start(behaviours);
    let dir = tempfile::tempdir().unwrap();
    let out = survey(dir.path(), &fleet.inventory(), &["--qos", "100"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let r = report(dir.path());
    assert_eq!((r["total"].as_u64(), r["successful"].as_u64()), (Some(1000), Some(1000)));
    let rows = r["aggregate"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    let expected: u64 = (0..1000u64).filter(|i| i % 3 == 0 && i % 2 == 1).sum();
    assert_eq!(rows[1]["values"], serde_json::json!(["app0", "1.1"]));
    assert_eq!(rows[1]["success"].as_u64(), Some(expected));
    assert_eq!(rows.iter().map(|r| r["hosts"].as_u64().unwrap()).sum::<u64>(), 1000);
    assert!(fleet.endpoints.iter().all(|e| e.requests() == 1));
    let ndjson = std::fs::read_to_string(dir.path().join("out/responses.ndjson")).unwrap();
    assert_eq!(ndjson.lines().count(), 1000);
}

#[test]
fn json_prints_the_report() {
    let fleet = Fleet::start(vec![ok("web", "1.0", 9, 10), Behaviour::Status(502)]);
    let dir = tempfile::tempdir().unwrap();
    let out = survey(dir.path(), &fleet.inventory(), &["--json", "--qos", "50", "--concurrency", "1", "--timeout", "5s"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "format", "status", "total", "successful", "failed", "expected_qos", "actual_qos", "failures_by_reason", "failures",
            "aggregate", "settings", "started_at", "elapsed_ms", "output_dir"
        ]
    );
    assert_eq!(v["format"], 1);
    assert_eq!(v["status"], "OK");
    assert_eq!(v["failures_by_reason"], serde_json::json!({"http_status": 1}));
    assert_eq!(
        v["failures"][0],
        serde_json::json!({"index": 1, "url": format!("http://{}/status", fleet.endpoints[1].addr()), "reason": "http_status", "status": 502, "attempts": 1, "error": "HTTP 502 Bad Gateway"})
    );
    assert_eq!(v["aggregate"]["fields"], serde_json::json!({"group_by": ["Application", "Version"], "success": "Success_Count", "requests": "Request_Count", "errors": "Error_Count"}));
    assert_eq!(v["settings"], serde_json::json!({"timeout_ms": 5000, "retries": 3, "concurrency": 1, "max_body_bytes": 65536}));
    assert_eq!(v, report(dir.path()), "stdout and report.json agree");
}

#[test]
fn usage_errors_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("hosts.txt"), "127.0.0.1:1\n").unwrap();
    std::fs::write(d.join("empty.txt"), "# nothing here\n\n   \n").unwrap();
    std::fs::write(d.join("bad.txt"), "ok-host\nhttps://secure/status\ntwo hosts\n").unwrap();
    std::fs::write(d.join("a-file"), "").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["-i", "missing.txt"], "cannot read inventory `missing.txt`"),
        (&["-i", "empty.txt"], "inventory `empty.txt` lists no hosts"),
        (&["-i", "bad.txt"], "line 2: `https://secure/status`: https is not supported"),
        (&["-i", "hosts.txt", "--qos", "0"], "qos `0` must be in (0, 100]"),
        (&["-i", "hosts.txt", "--qos", "100.5"], "qos `100.5` must be in (0, 100]"),
        (&["-i", "hosts.txt", "--qos", "ninety"], "is not a percentage"),
        (&["-i", "hosts.txt", "--concurrency", "0"], "concurrency must be at least 1"),
        (&["-i", "hosts.txt", "--timeout", "soon"], "is not a duration"),
        (&["-i", "hosts.txt", "--path", "status"], "must start with `/`"),
        (&["-i", "hosts.txt", "-o", "a-file/out"], "cannot create output directory `a-file/out`"),
        (&["-o", "out"], "--inventory"),
    ];
    for (args, message) in cases {
        let mut all = vec!["survey"];
        all.extend_from_slice(args);
        let out = scaler(d, &all);
        assert_eq!(code(&out), 2, "{args:?}: {}", explain(&out));
        assert!(stderr(&out).contains(message), "{args:?}: expected {message:?} in\n{}", stderr(&out));
    }
    assert!(!d.join("survey").exists(), "no output before the arguments are valid");
}

#[test]
fn help_has_examples_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = scaler(dir.path(), &["survey", "--help"]);
    assert_eq!(code(&out), 0);
    insta::assert_snapshot!("survey_help", stdout(&out));
}

#[test]
fn host_names_are_resolved() {
    let fleet = Fleet::start(vec![ok("web", "1", 1, 1)]);
    let dir = tempfile::tempdir().unwrap();
    // `localhost` may resolve to ::1 first, where nobody listens: the next address is tried
    let out = survey(dir.path(), &format!("localhost:{}\n", fleet.endpoints[0].port), &["--qos", "100"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(fleet.endpoints[0].requests(), 1);
}

/// A numeric `Version` keeps its text: `1.10` and `1.1` are two versions,
/// in the aggregate, the report and the raw responses.
#[test]
fn a_numeric_version_keeps_the_text_it_was_sent_as() {
    let body = |v: &str, good: u64| format!("{{\"Application\": \"web\", \"Version\": {v}, \"Success_Count\": {good}, \"Request_Count\": 10, \"Error_Count\": 0}}");
    let fleet = Fleet::start(vec![Behaviour::Body(body("1.10", 10)), Behaviour::Body(body("1.1", 9)), Behaviour::Body(body(" 1.10 ", 10))]);
    let dir = tempfile::tempdir().unwrap();
    let out = survey(dir.path(), &fleet.inventory(), &["--qos", "100"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let csv = std::fs::read_to_string(dir.path().join("out/aggregate.csv")).unwrap();
    assert_eq!(csv, "Application,Version,hosts,Success_Count,Request_Count,Error_Count,success_rate\nweb,1.1,1,9,10,0,0.900000\nweb,1.10,2,20,20,0,1.000000\n");
    let rows = &report(dir.path())["aggregate"]["rows"];
    assert_eq!(rows[1]["values"], serde_json::json!(["web", "1.10"]));
    assert!(stdout(&out).contains("  web          1.10     2      20             1.000000\n"), "{}", explain(&out));
    let ndjson = std::fs::read_to_string(dir.path().join("out/responses.ndjson")).unwrap();
    assert_eq!(ndjson.matches("\"Version\":1.10,").count(), 2, "{ndjson}");
    assert_eq!(ndjson.matches("\"Version\":1.1,").count(), 1, "{ndjson}");
}

/// One hanging host listed 20 times is queried once: the server sees the
/// connections of one query's attempts, not of 20, and each repeated line
/// is a warning.
#[test]
fn repeated_inventory_lines_are_merged_with_a_warning() {
    let hung = HungServer::start();
    let dir = tempfile::tempdir().unwrap();
    let line = format!("127.0.0.1:{}", hung.port);
    let inventory = format!("# the same host, 20 times\n{}\n", vec![line.as_str(); 20].join("\n"));
    let out = survey(dir.path(), &inventory, &["--timeout", "300ms", "--retries", "1"]);
    assert_eq!(code(&out), 1, "{}", explain(&out));
    let r = report(dir.path());
    assert_eq!((r["total"].as_u64(), r["failed"].as_u64()), (Some(1), Some(1)));
    assert_eq!(r["failures"][0]["attempts"], 2);
    assert_eq!(r["failures"][0]["reason"], "timeout");
    wait_until(Duration::from_secs(5), "the two attempts' connections", || hung.accepted() >= 2);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(hung.accepted(), 2, "one query (an attempt and a retry), not 20");
    let err = stderr(&out);
    assert_eq!(err.matches(": merged\n").count(), 19, "{err}");
    assert!(err.contains(&format!("warning: inventory line 3 repeats line 2 ({line}): merged\n")), "{err}");
    assert!(err.contains(&format!("warning: inventory line 21 repeats line 2 ({line}): merged\n")), "{err}");
}

/// The lines users of the old tool grep for, in report.md and on stdout.
#[test]
fn summary_lines_are_in_the_report_and_on_stdout() {
    let mut behaviours: Vec<Behaviour> = (0..199).map(|i| ok("app", "1", i, 200)).collect();
    behaviours.push(Behaviour::Status(500));
    let fleet = Fleet::start(behaviours);
    let dir = tempfile::tempdir().unwrap();
    let out = survey(dir.path(), &fleet.inventory(), &["--qos", "99"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let lines = "Status: PASS\nTotal queries: 200\nSuccessful queries: 199\nExpected QoS: 99.00%\nActual QoS: 99.50%\n";
    let md = std::fs::read_to_string(dir.path().join("out/report.md")).unwrap();
    assert!(md.contains(lines), "{md}");
    assert!(stdout(&out).contains(lines), "{}", explain(&out));

    let out = survey(dir.path(), &fleet.inventory(), &["--qos", "99.75"]);
    assert_eq!(code(&out), 1, "{}", explain(&out));
    let lines = "Status: FAIL\nTotal queries: 200\nSuccessful queries: 199\nExpected QoS: 99.75%\nActual QoS: 99.50%\n";
    assert!(std::fs::read_to_string(dir.path().join("out/report.md")).unwrap().contains(lines));
    assert!(stdout(&out).contains(lines), "{}", explain(&out));
}
