//! Passive inputs end to end: the push and Alertmanager endpoints served on a
//! real 127.0.0.1 port, traps sent with Debian's `snmptrap`/`snmpinform` to
//! a real UDP receiver, and every accepted value read back from a real
//! SQLite store, timed by its receipt.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scaler::inputs::{self, InputConfig, InputSink, SharedConfig, TrapReceiver};
use scaler::model::{AlertSource, CommandSource, Counter, PushSource, Source, TrapSource};
use scaler::store::{Sample, SampleStore, SampleValue, SeriesKey, Selector, SqliteStore};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::harness::wait_until;

/// The daemon's sink, minus the evaluator: append to a real store.
struct StoreSink(Mutex<SqliteStore>);

impl InputSink for StoreSink {
    fn accept(&self, samples: Vec<Sample>) -> Result<(), String> {
        self.0.lock().unwrap().append(&samples).map_err(|e| e.to_string())
    }
}

fn counter(name: &str, source: Source) -> Counter {
    Counter {
        name: name.into(),
        description: None,
        source,
        targets: vec![],
        interval: None,
        timeout: None,
        parse: None,
        rate: false,
        unit: None,
        units: Default::default(),
        labels: BTreeMap::new(),
    }
}

fn push(name: &str) -> Counter {
    counter(name, Source::Push(PushSource {}))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Inputs served on 127.0.0.1 with a store in a temp dir.
struct Inputs {
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    db: PathBuf,
    cfg: SharedConfig,
    sink: Arc<dyn InputSink>,
    base: String,
    client: reqwest::Client,
}

impl Inputs {
    fn start(cfg: InputConfig) -> Inputs {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let sink: Arc<dyn InputSink> = Arc::new(StoreSink(Mutex::new(SqliteStore::open(&db).unwrap())));
        let cfg = inputs::shared(cfg);
        let router = inputs::router(cfg.clone(), sink.clone(), scaler::clock::system());
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move { axum::serve(listener, router).await });
        Inputs { rt, _dir: dir, db, cfg, sink, base: format!("http://{addr}"), client: crate::harness::http_client() }
    }

    /// Starts a trap receiver on a free UDP port with the same config and sink.
    fn traps(&self) -> SocketAddr {
        let receiver = self
            .rt
            .block_on(TrapReceiver::bind("127.0.0.1:0", self.cfg.clone(), self.sink.clone(), scaler::clock::system()))
            .unwrap();
        let addr = receiver.local_addr();
        self.rt.spawn(receiver.run());
        addr
    }

    fn store(&self) -> SqliteStore {
        SqliteStore::open(&self.db).unwrap()
    }

    /// Sends a request; returns status, headers and the JSON body.
    fn send(&self, method: &str, path: &str, token: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, reqwest::header::HeaderMap, Value) {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.request(method.parse().unwrap(), url).body(body);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        self.rt.block_on(async {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            assert_eq!(headers.get("content-type").map(|v| v.to_str().unwrap()), Some("application/json"), "{method} {path}: every answer is JSON");
            let text = resp.text().await.unwrap();
            let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
            (status, headers, value)
        })
    }

    fn put(&self, path: &str, body: &str) -> (u16, Value) {
        let (s, _, v) = self.send("PUT", path, None, body.to_string());
        (s, v)
    }

    /// Every sample of a counter: (series, ts, value or error).
    fn samples(&self, counter: &str) -> Vec<(SeriesKey, i64, SampleValue)> {
        let st = self.store();
        let mut out: Vec<_> = st
            .raw(&Selector::counter(counter), 0, i64::MAX)
            .unwrap()
            .into_iter()
            .flat_map(|(k, pts)| pts.into_iter().map(move |(t, v)| (k.clone(), t, SampleValue::Value(v))))
            .collect();
        out.extend(st.failures(&Selector::counter(counter), 0, i64::MAX).unwrap().into_iter().map(|(k, t, e)| (k, t, SampleValue::Error(e))));
        out.sort_by_key(|s| s.1);
        out
    }

    /// Asserts that the server still serves (after an error answer).
    fn still_serves(&self) {
        let (status, _, body) = self.send("GET", "/api/v1/nothing-here", None, "");
        assert_eq!(status, 404, "{body}");
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn push_accepts_text_json_numbers_and_objects_timed_by_receipt() {
    let mut queue = push("queue-depth");
    queue.labels = labels(&[("team", "ops")]);
    let srv = Inputs::start(InputConfig::from_counters(&[queue]));

    let before = now_ms();
    let (status, body) = srv.put("/api/v1/push/queue-depth", "42.5\n");
    let after = now_ms();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["series"], "queue-depth{host=\"push\",team=\"ops\"}");
    let received = body["received_ms"].as_i64().unwrap();
    assert!(before <= received && received <= after, "{before} <= {received} <= {after}");

    assert_eq!(srv.put("/api/v1/push/queue-depth", "7").0, 200, "a JSON number is a number as text");
    let (status, body) = srv.put("/api/v1/push/queue-depth", r#"{"value": 3, "host": "web-01", "labels": {"disk": "sda"}}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["series"], "queue-depth{host=\"web-01\",disk=\"sda\",team=\"ops\"}");

    let got = srv.samples("queue-depth");
    let push_host = SeriesKey { counter: "queue-depth".into(), host: "push".into(), labels: labels(&[("team", "ops")]) };
    let web = SeriesKey { counter: "queue-depth".into(), host: "web-01".into(), labels: labels(&[("disk", "sda"), ("team", "ops")]) };
    assert_eq!(got.len(), 3);
    assert_eq!((&got[0].0, got[0].1, &got[0].2), (&push_host, received, &SampleValue::Value(42.5)), "stored at the receipt time it answered");
    assert_eq!((&got[1].0, &got[1].2), (&push_host, &SampleValue::Value(7.0)));
    assert_eq!((&got[2].0, &got[2].2), (&web, &SampleValue::Value(3.0)));
    assert!(got[2].1 >= received && got[2].1 <= now_ms());
}

#[test]
fn push_refuses_bad_values_with_400_and_keeps_serving() {
    let srv = Inputs::start(InputConfig::from_counters(&[push("q")]));
    for (body, says) in [
        ("", "empty body"),
        ("forty-two", "not a number: received \"forty-two\""),
        ("NaN", "finite"),
        ("inf", "finite"),
        (r#"{"value": "42"}"#, "must be a JSON number"),
        (r#"{"value": 1,"#, "bad JSON"),
        (r#"{"valeu": 1}"#, "unknown field `valeu`"),
    ] {
        let (status, resp) = srv.put("/api/v1/push/q", body);
        assert_eq!(status, 400, "{body:?}: {resp}");
        let error = resp["error"].as_str().unwrap();
        assert!(error.contains(says), "{body:?}: {error}");
        srv.still_serves();
    }
    let long = "x".repeat(5000);
    let (status, resp) = srv.put("/api/v1/push/q", &long);
    assert_eq!(status, 400);
    assert!(resp["error"].as_str().unwrap().len() < 400, "the echo of a bad value is cut: {resp}");
    assert!(srv.samples("q").is_empty(), "nothing stored for a bad value");
    assert_eq!(srv.put("/api/v1/push/q", "1").0, 200, "still accepting good values");
}

#[test]
fn push_to_an_unknown_name_is_404_with_the_reason_or_a_suggestion() {
    let srv = Inputs::start(InputConfig::from_counters(&[
        push("queue-depth"),
        counter("load", Source::Local(CommandSource { command: "cat /proc/loadavg".into() })),
    ]));
    let (status, body) = srv.put("/api/v1/push/queue-dept", "1");
    assert_eq!(status, 404);
    assert_eq!(body["error"], "no counter `queue-dept` with source `push`, did you mean `queue-depth`?");
    let (status, body) = srv.put("/api/v1/push/load", "1");
    assert_eq!(status, 404);
    assert_eq!(body["error"], "counter `load` has source `local`, not `push`: it does not accept pushed values");
    let (status, body) = srv.put("/api/v1/push/zzz", "1");
    assert_eq!((status, body["error"].as_str().unwrap()), (404, "no counter `zzz` with source `push`"));
    srv.still_serves();
    assert!(srv.samples("load").is_empty());
}

#[test]
fn wrong_methods_are_405_with_allow_and_unknown_paths_json_404() {
    let srv = Inputs::start(InputConfig::from_counters(&[push("q")]));
    for method in ["GET", "POST", "DELETE"] {
        let (status, headers, body) = srv.send(method, "/api/v1/push/q", None, "1");
        assert_eq!(status, 405, "{method}: {body}");
        assert_eq!(headers["allow"], "PUT");
        assert!(body["error"].as_str().unwrap().contains("PUT"));
    }
    let (status, headers, _) = srv.send("PUT", "/api/v1/alerts", None, "{}");
    assert_eq!((status, headers["allow"].to_str().unwrap()), (405, "POST"));
    let (status, _, body) = srv.send("GET", "/api/v1/pushh/q", None, "");
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("unknown path `/api/v1/pushh/q`"), "{body}");
    assert!(srv.samples("q").is_empty());
    assert_eq!(srv.put("/api/v1/push/q", "1").0, 200);
}

#[test]
fn a_configured_token_is_required_401() {
    let mut cfg = InputConfig::from_counters(&[push("q")]);
    cfg.token = Some(SecretString::from("s3cret"));
    let srv = Inputs::start(cfg);
    let (status, headers, body) = srv.send("PUT", "/api/v1/push/q", None, "1");
    assert_eq!(status, 401, "{body}");
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert!(body["error"].as_str().unwrap().contains("missing bearer token"));
    let (status, _, body) = srv.send("PUT", "/api/v1/push/q", Some("s3cre"), "1");
    assert_eq!((status, body["error"].as_str().unwrap()), (401, "wrong bearer token"));
    let (status, _, _) = srv.send("POST", "/api/v1/alerts", Some("nope"), "{}");
    assert_eq!(status, 401, "the alert webhook needs it too");
    assert!(srv.samples("q").is_empty());
    let (status, _, body) = srv.send("PUT", "/api/v1/push/q", Some("s3cret"), "1");
    assert_eq!(status, 200, "{body}");
    assert_eq!(srv.samples("q").len(), 1);
}

#[test]
fn bodies_over_64_kib_are_413_and_the_server_keeps_serving() {
    let srv = Inputs::start(InputConfig::from_counters(&[push("q")]));
    let big = format!("{{\"value\": 1, \"host\": \"h\", \"labels\": {{\"x\": \"{}\"}}}}", "y".repeat(100 * 1024));
    let (status, _, body) = srv.send("PUT", "/api/v1/push/q", None, big.clone());
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().unwrap().contains("65536 bytes"));
    // without a Content-Length (chunked), the limit holds while reading
    let status = chunked_request(&srv.base, "/api/v1/alerts", big.as_bytes());
    assert_eq!(status, 413);
    assert!(srv.samples("q").is_empty());
    srv.still_serves();
    assert_eq!(srv.put("/api/v1/push/q", "2").0, 200);
}

/// Sends a chunked HTTP/1.1 POST by hand (no Content-Length) and returns
/// the answer's status code.
fn chunked_request(base: &str, path: &str, body: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    let mut wire = head.into_bytes();
    for chunk in body.chunks(8192) {
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    // the server may answer and close before it read everything
    let _ = conn.write_all(&wire);
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or_default().to_string();
    assert!(text.contains("application/json"), "JSON answer expected: {text}");
    status_line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status line in {text:?}"))
}

// ---------------------------------------------------------------- Alertmanager

fn alert(status: &str, fingerprint: &str, labels: Value) -> Value {
    let ends = if status == "resolved" { "2024-05-01T10:05:00Z" } else { "0001-01-01T00:00:00Z" };
    json!({
        "status": status,
        "labels": labels,
        "annotations": { "summary": "request latency is high", "description": "p99 above 500ms for 5m" },
        "startsAt": "2024-05-01T10:00:00.000Z",
        "endsAt": ends,
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=latency%3E0.5&g0.tab=1",
        "fingerprint": fingerprint
    })
}

/// A notification in the documented version 4 shape.
fn notification(status: &str, alerts: Vec<Value>) -> String {
    json!({
        "receiver": "scaler",
        "status": status,
        "alerts": alerts,
        "groupLabels": { "alertname": "HighLatency" },
        "commonLabels": { "alertname": "HighLatency", "job": "node" },
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "version": "4",
        "groupKey": "{}/{severity=~\"page|info\"}:{alertname=\"HighLatency\"}",
        "truncatedAlerts": 0
    })
    .to_string()
}

fn alert_counter(name: &str, alertname: &str, match_labels: &[(&str, &str)]) -> Counter {
    counter(name, Source::Alertmanager(AlertSource { alertname: alertname.into(), labels: labels(match_labels) }))
}

#[test]
fn alertmanager_firing_resend_and_resolve() {
    let srv = Inputs::start(InputConfig::from_counters(&[
        alert_counter("latency-page", "HighLatency", &[("severity", "page")]),
        alert_counter("latency-any", "HighLatency", &[]),
    ]));
    let page = |status| alert(status, "1a30ba71cca2921f", json!({"alertname": "HighLatency", "instance": "web-01:9100", "job": "node", "severity": "page"}));
    let info = |status| alert(status, "c6eadffa33fcdf37", json!({"alertname": "HighLatency", "job": "node", "severity": "info"}));
    let other = alert("firing", "bc97ff14869b13e3", json!({"alertname": "DiskFull", "instance": "web-01:9100"}));
    let post = |body: String| srv.send("POST", "/api/v1/alerts", None, body);

    let before = now_ms();
    let (status, _, body) = post(notification("firing", vec![page("firing"), info("firing"), other.clone()]));
    let after = now_ms();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"accepted": 3, "duplicates": 0, "unmatched": 1}), "page matches both counters, info only the one without a severity");

    // Alertmanager re-sends the group on repeat_interval: nothing new
    let (status, _, body) = post(notification("firing", vec![page("firing"), info("firing"), other.clone()]));
    assert_eq!(status, 200);
    assert_eq!(body, json!({"accepted": 0, "duplicates": 2, "unmatched": 1}));

    let before_resolve = now_ms();
    let (status, _, body) = post(notification("firing", vec![page("resolved"), info("firing")]));
    let after_resolve = now_ms();
    assert_eq!((status, body), (200, json!({"accepted": 2, "duplicates": 1, "unmatched": 0})));

    let web = |c: &str| SeriesKey::new(c, "web-01:9100");
    let page_samples = srv.samples("latency-page");
    assert_eq!(page_samples.iter().map(|s| (s.0.clone(), s.2.clone())).collect::<Vec<_>>(), vec![
        (web("latency-page"), SampleValue::Value(1.0)),
        (web("latency-page"), SampleValue::Value(0.0)),
    ]);
    assert!(before <= page_samples[0].1 && page_samples[0].1 <= after, "timed by receipt");
    assert!(before_resolve <= page_samples[1].1 && page_samples[1].1 <= after_resolve);
    let any = srv.samples("latency-any");
    let mut got: Vec<_> = any.iter().map(|s| (s.0.host.clone(), s.2.clone())).collect();
    got.sort_by(|a, b| a.0.cmp(&b.0).then(format!("{:?}", b.1).cmp(&format!("{:?}", a.1))));
    assert_eq!(got, vec![
        ("alertmanager".to_string(), SampleValue::Value(1.0)),
        ("web-01:9100".to_string(), SampleValue::Value(1.0)),
        ("web-01:9100".to_string(), SampleValue::Value(0.0)),
    ], "an alert without `instance` is host `alertmanager`; resolved is 0");
    assert!(srv.samples("DiskFull").is_empty());

    // firing again after resolved is a change: recorded
    let (_, _, body) = post(notification("firing", vec![page("firing")]));
    assert_eq!(body, json!({"accepted": 2, "duplicates": 0, "unmatched": 0}));
    assert_eq!(srv.samples("latency-page").len(), 3);
}

#[test]
fn alertmanager_refuses_other_versions_and_garbage_with_400() {
    let srv = Inputs::start(InputConfig::from_counters(&[alert_counter("down", "Down", &[])]));
    let v3 = notification("firing", vec![alert("firing", "f1", json!({"alertname": "Down"}))]).replace("\"version\":\"4\"", "\"version\":\"3\"");
    assert!(v3.contains("\"version\":\"3\""));
    let no_fingerprint = notification("firing", vec![json!({"status": "firing", "labels": {"alertname": "Down"}, "annotations": {}, "startsAt": "2024-05-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z"})]);
    let bad_status = notification("firing", vec![alert("pending", "f1", json!({"alertname": "Down"}))]);
    for (body, says) in [
        (v3, "unsupported Alertmanager webhook payload version `3`"),
        ("this is not json".to_string(), "body is not JSON"),
        ("".to_string(), "body is not JSON"),
        ("[]".to_string(), "a JSON object"),
        (r#"{"status": "firing"}"#.to_string(), "missing `version`"),
        (no_fingerprint, "missing field `fingerprint`"),
        (bad_status, "unknown variant `pending`"),
    ] {
        let (status, _, resp) = srv.send("POST", "/api/v1/alerts", None, body.clone());
        assert_eq!(status, 400, "{body}: {resp}");
        assert!(resp["error"].as_str().unwrap().contains(says), "{body}: {resp}");
        srv.still_serves();
    }
    assert!(srv.samples("down").is_empty(), "nothing recorded from a refused payload");
    let (status, _, body) = srv.send("POST", "/api/v1/alerts", None, notification("firing", vec![alert("firing", "f1", json!({"alertname": "Down"}))]));
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(1)));
}

/// A store that refuses the first write (a full disk, a locked database).
struct RefusesOnce(StoreSink, std::sync::atomic::AtomicBool);

impl InputSink for RefusesOnce {
    fn accept(&self, samples: Vec<Sample>) -> Result<(), String> {
        if self.1.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err("database is locked".into());
        }
        self.0.accept(samples)
    }
}

#[test]
fn a_refused_write_is_503_and_the_resent_alert_is_not_a_duplicate() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let sink = Arc::new(RefusesOnce(StoreSink(Mutex::new(SqliteStore::open(&db).unwrap())), true.into()));
    let cfg = InputConfig::from_counters(&[alert_counter("down", "Down", &[])]);
    let router = inputs::router(inputs::shared(cfg), sink, scaler::clock::system());
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}/api/v1/alerts", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, router).await });
    let body = notification("firing", vec![alert("firing", "f1", json!({"alertname": "Down", "instance": "db-01"}))]);
    let post = || {
        rt.block_on(async {
            let resp = crate::harness::http_client().post(&url).body(body.clone()).send().await.unwrap();
            (resp.status().as_u16(), serde_json::from_str::<Value>(&resp.text().await.unwrap()).unwrap())
        })
    };
    let (status, resp) = post();
    assert_eq!(status, 503, "{resp}");
    assert!(resp["error"].as_str().unwrap().contains("database is locked"));
    assert!(SqliteStore::open(&db).unwrap().raw(&Selector::counter("down"), 0, i64::MAX).unwrap().is_empty());
    let (status, resp) = post();
    assert_eq!((status, resp), (200, json!({"accepted": 1, "duplicates": 0, "unmatched": 0})), "Alertmanager's retry is recorded, not taken as a duplicate");
    assert_eq!(SqliteStore::open(&db).unwrap().raw(&Selector::counter("down"), 0, i64::MAX).unwrap()[0].1.len(), 1);
}

#[test]
fn a_reloaded_config_takes_effect_without_a_restart() {
    let srv = Inputs::start(InputConfig::from_counters(&[push("old")]));
    assert_eq!(srv.put("/api/v1/push/new", "1").0, 404);
    inputs::replace(&srv.cfg, InputConfig::from_counters(&[push("new")]));
    assert_eq!(srv.put("/api/v1/push/new", "1").0, 200);
    assert_eq!(srv.put("/api/v1/push/old", "1").0, 404);
    assert_eq!(srv.samples("new").len(), 1);
}

// ---------------------------------------------------------------- SNMP traps

/// Runs one of Debian's net-snmp tools (package `snmp`).
fn snmp_tool(tool: &str, args: &[&str]) -> std::process::Output {
    Command::new(tool)
        .env("MIBS", "")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{tool}` ({e}); install Debian's `snmp` package: apt-get install snmp"))
}

fn trap_counter(name: &str, oid: &str, value_oid: Option<&str>) -> Counter {
    counter(name, Source::Trap(TrapSource { oid: oid.into(), value_oid: value_oid.map(str::to_string) }))
}

const ENTERPRISE: &str = "1.3.6.1.4.1.8072.2.3";
const VALUE_OID: &str = "1.3.6.1.4.1.8072.2.3.2.1";

fn wait_for(srv: &Inputs, counter: &str, n: usize) -> Vec<(SeriesKey, i64, SampleValue)> {
    wait_until(Duration::from_secs(10), &format!("{n} samples of `{counter}`"), || srv.samples(counter).len() >= n);
    srv.samples(counter)
}

#[test]
fn snmp_traps_v1_v2c_and_informs_become_samples_and_garbage_is_survived() {
    let mut cfg = InputConfig::from_counters(&[
        trap_counter("v2-level", &format!(".{ENTERPRISE}.0.1"), Some(&format!(".{VALUE_OID}"))),
        trap_counter("v2-count", &format!("{ENTERPRISE}.0.1"), None),
        trap_counter("v1-level", &format!("{ENTERPRISE}.0.17"), Some(VALUE_OID)),
        trap_counter("link-down", "1.3.6.1.6.3.1.1.5.3", None),
    ]);
    cfg.trap_community = SecretString::from("trapsecret");
    let srv = Inputs::start(cfg);
    let addr = srv.traps();
    let target = addr.to_string();
    let v2_trap_oid = format!("{ENTERPRISE}.0.1");
    let v2c = |community: &str, value: &[&str]| {
        let mut args = vec!["-v", "2c", "-c", community, &target, "", &v2_trap_oid, VALUE_OID];
        args.extend_from_slice(value);
        let out = snmp_tool("snmptrap", &args);
        assert!(out.status.success(), "snmptrap: {}", String::from_utf8_lossy(&out.stderr));
    };

    // a wrong community, then garbage, then a good trap: only the good one counts
    v2c("public", &["i", "99"]);
    let garbage = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    garbage.send_to(b"\x30\x03\x02\x01garbage that is not BER", addr).unwrap();
    garbage.send_to(&[0xff; 16], addr).unwrap();
    let before = now_ms();
    v2c("trapsecret", &["i", "42"]);
    let level = wait_for(&srv, "v2-level", 1);
    let after = now_ms();
    assert_eq!(level.len(), 1, "the wrong community was dropped: {level:?}");
    assert_eq!((&level[0].0, &level[0].2), (&SeriesKey::new("v2-level", "127.0.0.1"), &SampleValue::Value(42.0)));
    assert!(before <= level[0].1 && level[0].1 <= after, "timed by receipt");
    assert_eq!(srv.samples("v2-count").iter().map(|s| s.2.clone()).collect::<Vec<_>>(), vec![SampleValue::Value(1.0)]);

    // a string where the value should be is an error sample, never a number
    v2c("trapsecret", &["s", "42"]);
    let level = wait_for(&srv, "v2-level", 2);
    assert!(matches!(&level[1].2, SampleValue::Error(e) if e.contains("a string")), "{level:?}");

    // v1: enterprise-specific trap 17 is `enterprise.0.17` (RFC 3584 §3)
    let out = snmp_tool("snmptrap", &["-v", "1", "-c", "trapsecret", &target, ENTERPRISE, "127.0.0.1", "6", "17", "", VALUE_OID, "i", "7"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v1 = wait_for(&srv, "v1-level", 1);
    assert_eq!((&v1[0].0, &v1[0].2), (&SeriesKey::new("v1-level", "127.0.0.1"), &SampleValue::Value(7.0)));
    // v1 generic linkDown (2) is snmpTraps.3
    let out = snmp_tool("snmptrap", &["-v", "1", "-c", "trapsecret", &target, ENTERPRISE, "127.0.0.1", "2", "0", ""]);
    assert!(out.status.success());
    assert_eq!(wait_for(&srv, "link-down", 1)[0].2, SampleValue::Value(1.0));

    // an inform is answered (snmpinform exits 0 only on a response) and recorded
    let out = snmp_tool("snmpinform", &["-v", "2c", "-c", "trapsecret", "-t", "3", "-r", "1", &target, "", &v2_trap_oid, VALUE_OID, "i", "5"]);
    assert!(out.status.success(), "inform not acknowledged: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(wait_for(&srv, "v2-level", 3)[2].2, SampleValue::Value(5.0));
    // with a wrong community it is neither answered nor recorded
    let out = snmp_tool("snmpinform", &["-v", "2c", "-c", "public", "-t", "0.5", "-r", "0", &target, "", &v2_trap_oid, VALUE_OID, "i", "6"]);
    assert!(!out.status.success(), "an inform with a wrong community must not be answered");
    v2c("trapsecret", &["i", "8"]);
    let level = wait_for(&srv, "v2-level", 4);
    assert_eq!(level.iter().map(|s| s.2.clone()).collect::<Vec<_>>()[2..], [SampleValue::Value(5.0), SampleValue::Value(8.0)], "6 was never recorded");
}
