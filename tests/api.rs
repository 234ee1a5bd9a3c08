//! The daemon's read API and `/metrics`, through the real `scaler daemon`
//! process: a config repo with a group applied (a real local node), a
//! static target, push counters and a trigger that fires.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::daemon::{Daemon, TOKEN};
use crate::harness::{wait_until, Cli};

/// The read-only token (`daemon.read_token`).
const READ_TOKEN: &str = "read-only-token-9876543210";

/// Every route that needs the token.
const ROUTES: [&str; 15] = [
    "/metrics",
    "/api/v1/status",
    "/api/v1/targets",
    "/api/v1/targets/db",
    "/api/v1/counters",
    "/api/v1/counters/queue",
    "/api/v1/series?counter=queue",
    "/api/v1/triggers",
    "/api/v1/triggers/deep",
    "/api/v1/jobs",
    "/api/v1/jobs/1",
    "/api/v1/nodes",
    "/api/v1/nodes/web-01",
    "/api/v1/groups",
    "/api/v1/groups/web",
];

/// An HTTP answer: status, headers (lower-case names) and body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no `error` in {}", self.body)).to_string()
    }
}

/// One request with an optional `Authorization` header value and body.
pub(crate) fn call(port: u16, method: &str, path: &str, authorization: Option<&str>, body: &str) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = authorization.map(|a| format!("authorization: {a}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{auth}content-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: BTreeMap<String, String> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    assert_ne!(headers.get("transfer-encoding").map(String::as_str), Some("chunked"), "this client reads plain bodies only");
    Reply { status, headers, body: body.to_string() }
}

fn get(port: u16, path: &str) -> Reply {
    call(port, "GET", path, Some(&format!("Bearer {TOKEN}")), "")
}

fn ok_json(port: u16, path: &str) -> Value {
    let r = get(port, path);
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    assert!(r.headers["content-type"].starts_with("application/json"), "{path}: {:?}", r.headers);
    r.json()
}

fn names(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap_or_else(|| panic!("no items: {list}")).iter().map(|i| i["name"].as_str().unwrap_or("?").to_string()).collect()
}

fn write_config(dir: &Path) {
    std::fs::write(dir.join("token.txt"), TOKEN).unwrap();
    std::fs::write(dir.join("read.txt"), READ_TOKEN).unwrap();
    std::fs::write(
        dir.join("scaler.yaml"),
        "kind: Project\nname: t\ndaemon:\n  token: { file: token.txt }\n  read_token: { file: read.txt }\n  jobs: { lease: 2s, backoff: 100ms, max_attempts: 2 }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("fleet.yaml"),
        "kind: NodeTemplate\nname: sleeper\nprovider: local\nlocal: { command: exec sleep 600, grace: 1s }\n---\n\
         kind: Group\nname: web\ntemplate: sleeper\nmin: 1\nmax: 2\ndesired: 1\n---\n\
         kind: Target\nname: web\ngroup: web\n---\n\
         kind: Target\nname: db\nhosts: [\"db1:5432\", db2]\n---\n\
         kind: Counter\nname: queue\ndescription: jobs waiting\nsource: { push: {} }\n---\n\
         kind: Counter\nname: disk\nsource: { push: {} }\n---\n\
         kind: Trigger\nname: deep\nwhen: last(queue) > 10\nfor: 500ms\ncooldown: 1h\nthen:\n  - notify: { webhook: { url: \"http://127.0.0.1:9/never\" } }\n",
    )
    .unwrap();
}

/// One sample line of the text format: `name{labels} value`.
fn sample_line() -> regex::Regex {
    let label = r#"[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*""#;
    regex::Regex::new(&format!(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{{{label}(?:,{label})*\}})? (-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?|NaN|\+Inf|-Inf)$"))
        .unwrap()
}

/// Checks every line of a Prometheus text exposition (0.0.4) and returns
/// its samples as `name{labels}` -> value. Each family is declared once
/// (`# HELP`, then `# TYPE`) before its samples, and no sample repeats.
fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    let sample = sample_line();
    let mut samples = BTreeMap::new();
    let mut declared: Vec<String> = Vec::new();
    let mut helped: Option<String> = None;
    let mut histogram = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default().to_string();
            helped = Some(name);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line `{line}`"));
            assert!(["counter", "gauge", "untyped", "histogram"].contains(&kind), "`{line}`");
            assert_eq!(helped.as_deref(), Some(name), "HELP then TYPE: `{line}`");
            assert!(!declared.contains(&name.to_string()), "family `{name}` declared twice");
            declared.push(name.to_string());
            histogram = kind == "histogram";
        } else {
            let caps = sample.captures(line).unwrap_or_else(|| panic!("not a sample line: `{line}`"));
            let name = &caps[1];
            let family = declared.last().map(String::as_str).unwrap_or_default();
            let of_family = if histogram {
                ["_bucket", "_sum", "_count"].iter().any(|s| name.strip_suffix(s) == Some(family))
            } else {
                name == family
            };
            assert!(of_family, "sample outside its family: `{line}`");
            let key = format!("{name}{}", caps.get(2).map_or("", |m| m.as_str()));
            let value: f64 = caps[3].replace("+Inf", "inf").parse().unwrap();
            assert!(samples.insert(key, value).is_none(), "sample repeated: `{line}`");
        }
    }
    samples
}

#[test]
fn the_read_api_answers_json_behind_the_token_and_metrics_parse() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_config(dir);
    let cli = Cli::new();
    let d = Daemon::applied(&cli, dir);
    let port = d.port;

    // /healthz needs no token; everything else does.
    let h = call(port, "GET", "/healthz", None, "");
    assert_eq!((h.status, h.json()), (200, serde_json::json!({"status": "ok"})));
    for route in ROUTES {
        for auth in [None, Some("Bearer wrong-token"), Some(&format!("Basic {TOKEN}") as &str)] {
            let r = call(port, "GET", route, auth, "");
            assert_eq!(r.status, 401, "GET {route} with {auth:?}: {}", r.body);
            assert_eq!(r.headers.get("www-authenticate").map(String::as_str), Some("Bearer"), "{route}");
            assert!(!r.error().is_empty());
        }
    }
    // A token in the URL is refused, with or without the header, on every route.
    for path in ["/api/v1/status?token=x", "/metrics?access_token=x", "/healthz?token=x", format!("/api/v1/triggers?limit=1&token={TOKEN}").as_str()] {
        let r = get(port, path);
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.error().contains("a token in the URL"), "{}", r.body);
        assert!(!r.body.contains(TOKEN), "the answer does not repeat the token");
    }
    let r = call(port, "PUT", &format!("/api/v1/push/queue?token={TOKEN}"), None, "5");
    assert_eq!(r.status, 400, "the receivers refuse it too: {}", r.body);

    // Scopes: the read-only token reads every route and changes nothing (403);
    // the token reads and changes.
    let read = format!("Bearer {READ_TOKEN}");
    for route in ROUTES {
        let r = call(port, "GET", route, Some(&read), "");
        assert!([200, 404].contains(&r.status), "GET {route} with the read token: {} {}", r.status, r.body);
        assert_eq!(r.status, get(port, route).status, "{route}: both tokens read the same");
    }
    for (method, path, body) in [("PUT", "/api/v1/push/queue", "5"), ("POST", "/api/v1/alerts", "{}"), ("POST", "/api/v1/status", "")] {
        let r = call(port, method, path, Some(&read), body);
        assert_eq!(r.status, 403, "{method} {path} with the read token: {}", r.body);
        assert!(r.error().contains("read-only"), "{}", r.body);
        assert_eq!(call(port, method, path, None, body).status, 401, "{method} {path} without a token");
    }
    assert!(ok_json(port, "/api/v1/series?counter=queue")["items"].as_array().unwrap().is_empty(), "the refused push stored nothing");

    // status
    let s = ok_json(port, "/api/v1/status");
    assert_eq!(s["revision"], "none", "{s}");
    assert_eq!(Path::new(s["config_root"].as_str().unwrap()).canonicalize().unwrap(), dir.canonicalize().unwrap());
    assert_eq!(s["roles"], serde_json::json!(["collect", "evaluate", "receive", "work", "reconcile"]));
    assert_eq!(s["listen"], format!("127.0.0.1:{port}"));
    assert!(chrono::DateTime::parse_from_rfc3339(s["started_at"].as_str().unwrap()).is_ok(), "{s}");
    assert_eq!(s["counts"]["triggers"], 1);
    assert!(s["state_serial"].as_u64().unwrap() >= 1, "the apply committed: {s}");
    assert_eq!(s["token_scope"], "write", "{s}");
    assert_eq!(call(port, "GET", "/api/v1/status", Some(&read), "").json()["token_scope"], "read", "the read token is told its scope");

    // targets with their hosts: static ones as written, a group's running node by name
    let t = ok_json(port, "/api/v1/targets");
    assert_eq!(names(&t), ["db", "web"]);
    assert_eq!(t["next"], Value::Null);
    let db = &t["items"][0];
    assert_eq!(db["hosts"][0], serde_json::json!({"name": "db1:5432", "address": "db1:5432", "origin": "static", "group": null}));
    let web = ok_json(port, "/api/v1/targets/web");
    assert_eq!(web["hosts"][0]["name"], "web-01", "{web}");
    assert_eq!(web["hosts"][0]["origin"], "node");
    assert_eq!(web["hosts"][0]["group"], "web");

    // counters, nodes, groups
    let c = ok_json(port, "/api/v1/counters/queue");
    assert_eq!((c["source"].as_str(), c["description"].as_str()), (Some("push"), Some("jobs waiting")));
    let n = ok_json(port, "/api/v1/nodes");
    assert_eq!(names(&n), ["web-01"]);
    assert_eq!(n["items"][0]["status"], "ready");
    assert!(n["items"][0].get("attrs").is_none(), "provider attributes (a local node's token) are not shown");
    let g = ok_json(port, "/api/v1/groups/web");
    assert_eq!((g["min"].as_u64(), g["max"].as_u64(), g["desired"].as_u64()), (Some(1), Some(2), Some(1)));
    assert_eq!(g["nodes"], serde_json::json!({"ready": 1}));
    assert_eq!(g["hosts"], serde_json::json!(["web-01"]));

    // Pages: limit and after; a capped limit; bad and unknown parameters are 400.
    let first = ok_json(port, "/api/v1/counters?limit=1");
    assert_eq!((names(&first), first["next"].as_str()), (vec!["disk".to_string()], Some("disk")));
    let second = ok_json(port, "/api/v1/counters?limit=1&after=disk");
    assert_eq!((names(&second), second["next"].clone()), (vec!["queue".to_string()], Value::Null));
    assert_eq!(names(&ok_json(port, "/api/v1/counters?limit=100000")), ["disk", "queue"], "a large limit is capped, not refused");
    for bad in ["/api/v1/counters?limit=0", "/api/v1/counters?limit=x", "/api/v1/counters?limt=1", "/api/v1/jobs?status=running", "/api/v1/jobs?after=abc"] {
        let r = get(port, bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(!r.error().is_empty());
    }

    // Unknown names: 404 with a suggestion; unknown paths and methods are JSON too.
    let r = get(port, "/api/v1/series?counter=queu");
    assert_eq!((r.status, r.error()), (404, "no counter `queu`; did you mean `queue`?".to_string()));
    let r = get(port, "/api/v1/triggers/dep");
    assert_eq!((r.status, r.error()), (404, "no trigger `dep`; did you mean `deep`?".to_string()));
    assert_eq!(get(port, "/api/v1/jobs/nope@1").status, 404);
    assert_eq!(get(port, "/api/v1/series").status, 400, "`counter` is required");
    let r = get(port, "/api/v2/status");
    assert_eq!((r.status, r.error()), (404, "unknown path `/api/v2/status`".to_string()));
    let r = call(port, "POST", "/api/v1/status", Some(&format!("Bearer {TOKEN}")), "");
    assert_eq!((r.status, r.headers.get("allow").map(String::as_str)), (405, Some("GET")), "{}", r.body);

    // A pushed value: in the series (half-open range) and in /metrics.
    let (code, body) = d.push("queue", "50");
    assert_eq!(code, 200, "{body}");
    let received: i64 = serde_json::from_str::<Value>(&body).unwrap()["received_ms"].as_i64().unwrap();
    let series = |from: i64, to: i64, step: &str| ok_json(port, &format!("/api/v1/series?counter=queue&host=push&from={from}&to={to}&step={step}"));
    let s = series(received - 1000, received, "1000");
    assert_eq!(s["items"][0]["series"], serde_json::json!({"counter": "queue", "host": "push"}), "{s}");
    assert_eq!(s["items"][0]["points"], serde_json::json!([[received - 1000, null]]), "a sample at `to` is outside [from, to)");
    let s = series(received - 1000, received + 1, "1000");
    assert_eq!(s["items"][0]["points"], serde_json::json!([[received - 1000, null], [received, 50.0]]), "the last bucket is cut at `to`");
    let s = series(received, received + 3000, "1s");
    assert_eq!(s["items"][0]["points"], serde_json::json!([[received, 50.0], [received + 1000, null], [received + 2000, null]]));
    assert_eq!((s["from_ms"].as_i64(), s["to_ms"].as_i64(), s["step_ms"].as_i64()), (Some(received), Some(received + 3000), Some(1000)));
    assert_eq!(get(port, &format!("/api/v1/series?counter=queue&from={received}&to={received}")).status, 400, "an empty range");
    assert_eq!(get(port, "/api/v1/series?counter=queue&from=now-30d&step=1s").status, 400, "too many points");
    assert_eq!(get(port, &format!("/api/v1/series?counter=queue&from={}", i64::MIN)).status, 400, "not a time");
    assert_eq!(get(port, "/api/v1/series?counter=queue&from=now-99999999y").status, 400, "too far back");
    let one = ok_json(port, &format!("/api/v1/series?counter=queue&host=push&from={}&to={}&step={}", received - 500, received + 500, i64::MAX));
    assert_eq!(one["items"][0]["points"], serde_json::json!([[received - 500, 50.0]]), "a step longer than the range is the range: {one}");
    assert_eq!(one["step_ms"], 1000);
    assert!(ok_json(port, "/api/v1/series?counter=disk")["items"].as_array().unwrap().is_empty(), "a configured counter without data");

    // A label value with a quote and a backslash is escaped in /metrics.
    let (code, body) = d.push("disk", r#"{"value": 3, "host": "web-01", "labels": {"mount": "a\"b\\c"}}"#);
    assert_eq!(code, 200, "{body}");

    // The trigger fires (for: 500ms) and its job is listed, by key and by id.
    wait_until(Duration::from_secs(15), "the trigger to fire and cool down", || ok_json(port, "/api/v1/triggers/deep")["state"] == "cooldown");
    let t = ok_json(port, "/api/v1/triggers");
    assert_eq!(t["items"][0]["name"], "deep");
    assert_eq!(t["items"][0]["last_fire"]["terms"][0]["value"], 50.0, "{t}");
    let jobs = ok_json(port, "/api/v1/jobs");
    let job = &jobs["items"][0];
    let key = job["key"].as_str().unwrap();
    assert_eq!(key, format!("deep@{}", t["items"][0]["last_fired_ms"]));
    assert_eq!(ok_json(port, &format!("/api/v1/jobs/{key}"))["id"], job["id"]);
    assert_eq!(ok_json(port, &format!("/api/v1/jobs/{}", job["id"]))["key"], key);
    assert_eq!(ok_json(port, "/api/v1/jobs?trigger=deep&limit=1")["next"], Value::Null, "one job only");

    // /metrics: the text format, the pushed values, the daemon's own counters.
    let m = get(port, "/metrics");
    assert_eq!(m.status, 200, "{}", m.body);
    assert_eq!(m.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let samples = parse_exposition(&m.body);
    let value = |k: &str| samples.get(k).copied().unwrap_or_else(|| panic!("no `{k}` in\n{}", m.body));
    assert_eq!(value(r#"scaler_series_value{counter="queue",host="push"}"#), 50.0);
    assert_eq!(value(r#"scaler_series_value{counter="disk",host="web-01",mount="a\"b\\c"}"#), 3.0);
    assert_eq!(value(r#"scaler_series_failing{counter="queue",host="push"}"#), 0.0);
    assert_eq!(value(r#"scaler_series_timestamp_seconds{counter="queue",host="push"}"#), received as f64 / 1000.0);
    assert_eq!(value(r#"scaler_trigger_fires_total{trigger="deep"}"#), 1.0);
    assert_eq!(value(r#"scaler_trigger_state{trigger="deep",state="cooldown"}"#), 1.0);
    assert_eq!(value(r#"scaler_nodes{group="web",status="ready"}"#), 1.0);
    assert_eq!(value(r#"scaler_collection_errors_total{counter="queue"}"#), 0.0);
    assert_eq!(value(r#"scaler_build_info{version="0.1.0",revision="none"}"#), 1.0);
    assert!(value("scaler_samples_stored_total") >= 2.0);
    assert!(value("scaler_trigger_evaluations_total") >= 1.0);
    assert!(value("scaler_uptime_seconds") > 0.0);
    let jobs_total: f64 = ["queued", "leased", "done", "dead"].iter().map(|s| value(&format!("scaler_jobs{{status=\"{s}\"}}"))).sum();
    assert_eq!(jobs_total, 1.0);
    assert!(value(r#"scaler_http_responses_total{code="401"}"#) >= 45.0, "the refused requests above were counted");
    assert_eq!(value(r#"scaler_http_responses_total{code="403"}"#), 3.0);
    assert!(!m.body.contains(TOKEN) && !m.body.contains(READ_TOKEN));

    drop(d);
    let out = cli.run(dir, &["destroy", "--auto-approve", "."]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_exposition_checker_refuses_what_prometheus_would() {
    assert_eq!(parse_exposition("# HELP a x\n# TYPE a gauge\na{k=\"v\\\"w\"} 1.5\n")["a{k=\"v\\\"w\"}"], 1.5);
    for bad in [
        "a 1\n",                                                  // no TYPE
        "# HELP a x\n# TYPE a gauge\na{k=\"v\"w\"} 1\n",          // unescaped quote
        "# HELP a x\n# TYPE a gauge\na{1k=\"v\"} 1\n",            // bad label name
        "# HELP a x\n# TYPE a gauge\na 1\na 2\n",                 // repeated sample
        "# HELP a x\n# TYPE a gauge\n# HELP a x\n# TYPE a gauge\n", // declared twice
        "# HELP a x\n# TYPE a gauge\na one\n",                    // not a number
    ] {
        assert!(std::panic::catch_unwind(|| parse_exposition(bad)).is_err(), "accepted {bad:?}");
    }
}
