//! `scaler collect` and `scaler query` against real servers on loopback:
//! local commands (Nagios plugins too), HTTP, a host that accepts TCP and
//! never answers, redis-server and snmpd.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{scaler, stderr, stdout, Cli, HttpServer, HungServer, Server};

pub(crate) fn repo(yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scaler.yaml"), format!("kind: Project\nname: t\n---\n{yaml}")).unwrap();
    dir
}

/// `collect --once --json`: one JSON object per sample.
fn collect_once(dir: &std::path::Path, extra: &[&str]) -> Vec<Value> {
    collect_once_with(&Cli::new(), dir, extra).0
}

/// [`collect_once`] through `cli` (its environment); also returns stderr.
pub(crate) fn collect_once_with(cli: &Cli, dir: &std::path::Path, extra: &[&str]) -> (Vec<Value>, String) {
    let mut args = vec!["collect", "--once", "--json", "."];
    args.extend_from_slice(extra);
    let out = cli.run(dir, &args);
    assert!(out.status.success(), "collect failed: {}\n{}", stderr(&out), stdout(&out));
    (stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect(), stderr(&out))
}

pub(crate) fn find<'a>(samples: &'a [Value], counter: &str, host: &str) -> Vec<&'a Value> {
    samples.iter().filter(|s| s["counter"] == counter && s["host"] == host).collect()
}

pub(crate) fn value(samples: &[Value], counter: &str, host: &str) -> Value {
    let found = find(samples, counter, host);
    assert_eq!(found.len(), 1, "{counter}@{host}: {found:?}");
    found[0]["value"].clone()
}

pub(crate) fn error(samples: &[Value], counter: &str, host: &str) -> String {
    let found = find(samples, counter, host);
    assert_eq!(found.len(), 1, "{counter}@{host}: {found:?}");
    assert!(found[0]["value"].is_null(), "a failure is never a number: {:?}", found[0]);
    found[0]["error"].as_str().unwrap().to_string()
}

#[test]
fn local_commands_parse_strictly_and_understand_nagios_plugins() {
    let dir = repo(
        r#"
kind: Counter
name: num
source: { local: { command: "printf '  42.5 \n'" } }
---
kind: Counter
name: ambiguous
source: { local: { command: "printf '12\n34\n'" } }
---
kind: Counter
name: word
source: { local: { command: "echo abc" } }
---
kind: Counter
name: failing
source: { local: { command: "echo 5; echo 'no such thing' >&2; exit 2" } }
---
kind: Counter
name: plugin
source: { local: { command: "echo 'WARNING - load 5.2|load1=5.2;5;10;0 load5=3;4;6;0'; exit 1" } }
parse: { perfdata: load1 }
---
kind: Counter
name: unknown
source: { local: { command: "echo 'UNKNOWN - cannot read'; exit 3" } }
parse: { perfdata: load1 }
---
kind: Counter
name: loadavg
source: { local: { command: "echo 'load average: 0.52, 0.58, 0.59'" } }
parse: { regex: 'load average: (?P<load1>[\d.]+), (?P<load5>[\d.]+)' }
unit: load
units: { load5: load-5m }
"#,
    );
    let s = collect_once(dir.path(), &[]);
    assert_eq!(value(&s, "num", "local"), 42.5);
    assert_eq!(error(&s, "ambiguous", "local"), "ambiguous output: 2 lines where one number was expected");
    assert_eq!(error(&s, "word", "local"), "not a number: `abc`");
    assert_eq!(error(&s, "failing", "local"), "`echo 5; echo 'no such thing' >&2; exit 2` exited with 2: no such thing");
    let plugin = find(&s, "plugin", "local");
    assert_eq!(plugin.len(), 2);
    assert_eq!(plugin.iter().find(|p| p["labels"]["nagios"].is_null()).unwrap()["value"], 5.2);
    assert_eq!(plugin.iter().find(|p| p["labels"]["nagios"] == "state").unwrap()["value"], 1.0);
    assert!(error(&s, "unknown", "local").ends_with("reported UNKNOWN: UNKNOWN - cannot read"));
    let load: Vec<(String, f64)> = find(&s, "loadavg", "local").iter().map(|p| (p["labels"]["field"].as_str().unwrap().to_string(), p["value"].as_f64().unwrap())).collect();
    assert_eq!(load, vec![("load1".to_string(), 0.52), ("load5".to_string(), 0.58)]);

    // stored: query shows the value, and nothing for the failures
    let out = scaler(dir.path(), &["query", "num", ".", "--json", "--from", "now-1m", "--step", "1m"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let q: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(q[0]["series"]["host"], "local");
    assert!(q[0]["points"].as_array().unwrap().iter().any(|p| p[1] == 42.5), "{q}");
    let out = scaler(dir.path(), &["query", "word", ".", "--json", "--from", "now-1m", "--step", "1m"]);
    let q: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(q[0]["points"].as_array().unwrap().iter().all(|p| p[1].is_null()), "a failure is not a value: {q}");
    // Ranges are half-open, [from, to): 24 h at 1 m is 1,440 points, and the
    // default (the last hour) is the 60 points the help promises.
    let points = |args: &[&str]| -> usize {
        let out = scaler(dir.path(), &[&["query", "num", ".", "--json"], args].concat());
        assert!(out.status.success(), "{}", stderr(&out));
        let q: Value = serde_json::from_str(&stdout(&out)).unwrap();
        q[0]["points"].as_array().unwrap().len()
    };
    assert_eq!(points(&["--from", "now-24h", "--step", "1m"]), 1_440);
    assert_eq!(points(&[]), 60);
    assert_eq!(points(&["--from", "0", "--to", "3000", "--step", "1s"]), 3);
    // Each regex group carries its own unit in `query --json`.
    let out = scaler(dir.path(), &["query", "loadavg", ".", "--json", "--from", "now-1m", "--step", "1m"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let q: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let mut units: Vec<(String, String)> =
        q.as_array().unwrap().iter().map(|s| (s["series"]["labels"]["field"].as_str().unwrap().to_string(), s["unit"].as_str().unwrap().to_string())).collect();
    units.sort();
    assert_eq!(units, vec![("load1".into(), "load".into()), ("load5".into(), "load-5m".into())], "{q}");
    // An unknown counter is an error with a suggestion, not "no series".
    let out = scaler(dir.path(), &["query", "nmu", "."]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("no counter `nmu` in the config; did you mean `num`?"), "{}", stderr(&out));
    // --counter picks one
    let s = collect_once(dir.path(), &["--counter", "num"]);
    assert_eq!(s.len(), 1);
    let out = scaler(dir.path(), &["collect", "--once", ".", "--counter", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no counter `nope` in the config"), "{}", stderr(&out));
}

#[test]
fn http_values_by_json_path_and_errors_as_failures() {
    let http = HttpServer::start(vec![
        ("/status", 200, r#"{"load": {"avg1": 0.25}, "name": "web", "queues": [3, 4]}"#.to_string()),
        ("/broken", 500, r#"{"load": {"avg1": 9}}"#.to_string()),
        ("/html", 200, "<html>hi</html>".to_string()),
    ]);
    let hung = HungServer::start();
    let yaml = format!(
        r#"
kind: Target
name: web
hosts: ["127.0.0.1:{ok}", "127.0.0.1:{dead}"]
---
kind: Target
name: closed
hosts: ["127.0.0.1:1"]
---
kind: Counter
name: load
source: {{ http: {{}} }}
targets: [web, closed]
timeout: 2s
parse: {{ json: "$.load.avg1" }}
---
kind: Counter
name: queues
source: {{ http: {{ url: "http://{{{{ host }}}}/status" }} }}
targets: [web]
timeout: 2s
parse: {{ json: "$.queues[*]" }}
---
kind: Counter
name: name
source: {{ http: {{}} }}
targets: [web]
timeout: 2s
parse: {{ json: "$.name" }}
---
kind: Counter
name: broken
source: {{ http: {{ url: "http://{{{{ host }}}}/broken" }} }}
targets: [web]
timeout: 2s
parse: {{ json: "$.load.avg1" }}
---
kind: Counter
name: html
source: {{ http: {{ url: "http://{{{{ host }}}}/html" }} }}
targets: [web]
timeout: 2s
"#,
        ok = http.port,
        dead = hung.port
    );
    let dir = repo(&yaml);
    let started = Instant::now();
    let s = collect_once(dir.path(), &[]);
    let took = started.elapsed();
    let ok = format!("127.0.0.1:{}", http.port);
    let dead = format!("127.0.0.1:{}", hung.port);
    assert_eq!(value(&s, "load", &ok), 0.25);
    let queues: Vec<(String, f64)> = find(&s, "queues", &ok).iter().map(|p| (p["labels"]["key"].as_str().unwrap().to_string(), p["value"].as_f64().unwrap())).collect();
    assert_eq!(queues, vec![("0".to_string(), 3.0), ("1".to_string(), 4.0)]);
    assert_eq!(error(&s, "name", &ok), "`$.name` is a string \"web\", not a number");
    assert_eq!(error(&s, "broken", &ok), format!("HTTP 500 from `http://{ok}/broken`"));
    assert!(error(&s, "html", &ok).starts_with("not JSON"), "{}", error(&s, "html", &ok));
    // the host that accepts and never answers: every counter times out on its own
    for c in ["load", "queues", "name", "broken", "html"] {
        assert_eq!(error(&s, c, &dead), "timed out after 2s");
    }
    assert!(hung.accepted() >= 1);
    // a closed port is a connect failure (retried, then reported)
    assert!(error(&s, "load", "127.0.0.1:1").starts_with("cannot connect to `http://127.0.0.1:1/status`"), "{}", error(&s, "load", "127.0.0.1:1"));
    // all ran at once: the round took about one timeout, not one per hung counter
    assert!(took < Duration::from_secs(8), "{took:?}");
    // --on picks a target
    let s = collect_once(dir.path(), &["--on", "closed"]);
    assert_eq!(s.len(), 1);
}

#[test]
fn a_hung_host_never_delays_the_others_in_a_running_collect() {
    let http = HttpServer::start(vec![("/status", 200, r#"{"v": 1}"#.to_string())]);
    let hung = HungServer::start();
    let yaml = format!(
        r#"
kind: Target
name: web
hosts: ["127.0.0.1:{ok}", "127.0.0.1:{dead}"]
---
kind: Counter
name: v
source: {{ http: {{}} }}
targets: [web]
interval: 200ms
timeout: 3s
parse: {{ json: "$.v" }}
"#,
        ok = http.port,
        dead = hung.port
    );
    let dir = repo(&yaml);
    let cli = Cli::new();
    let mut child = cli.command(dir.path(), &["collect", "--json", "."]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ok = format!("127.0.0.1:{}", http.port);
    let mut healthy = Vec::new();
    let mut hung_failures = 0;
    for line in lines {
        let s: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if s["host"] == ok {
            assert_eq!(s["value"], 1.0);
            healthy.push(s["ts_ms"].as_i64().unwrap());
        } else {
            assert_eq!(s["error"], "timed out after 3s");
            hung_failures += 1;
        }
        if healthy.len() == 8 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    // eight healthy collections, 200 ms apart, while the hung host's first
    // collection was still waiting for its 3 s timeout
    assert_eq!(hung_failures, 0);
    let span = healthy[7] - healthy[0];
    assert!((1200..2600).contains(&span), "7 intervals of 200 ms took {span} ms");
}

#[test]
fn redis_list_lengths_and_numeric_replies() {
    let redis = Server::redis();
    redis.redis_cmd(&["RPUSH", "jobs", "a", "b", "c"]);
    redis.redis_cmd(&["SADD", "online", "x", "y"]);
    redis.redis_cmd(&["SET", "word", "abc"]);
    redis.redis_cmd(&["SET", "num", "17"]);
    let yaml = format!(
        r#"
kind: Target
name: r
hosts: ["127.0.0.1"]
redis: {{ port: {port} }}
---
kind: Counter
name: queue
source: {{ redis: {{ llen: jobs }} }}
targets: [r]
---
kind: Counter
name: online
source: {{ redis: {{ command: [SCARD, online] }} }}
targets: [r]
---
kind: Counter
name: num
source: {{ redis: {{ command: [GET, num] }} }}
targets: [r]
---
kind: Counter
name: word
source: {{ redis: {{ command: [GET, word] }} }}
targets: [r]
---
kind: Counter
name: missing
source: {{ redis: {{ command: [GET, nothing] }} }}
targets: [r]
"#,
        port = redis.port
    );
    let dir = repo(&yaml);
    let s = collect_once(dir.path(), &[]);
    assert_eq!(value(&s, "queue", "127.0.0.1"), 3.0);
    assert_eq!(value(&s, "online", "127.0.0.1"), 2.0);
    assert_eq!(value(&s, "num", "127.0.0.1"), 17.0);
    assert_eq!(error(&s, "word", "127.0.0.1"), "not a number: `abc`");
    assert_eq!(error(&s, "missing", "127.0.0.1"), "redis replied nil (no such key?)");
    redis.redis_cmd(&["RPUSH", "jobs", "d"]);
    assert_eq!(value(&collect_once(dir.path(), &["--counter", "queue"]), "queue", "127.0.0.1"), 4.0);
}

#[test]
fn snmp_get_and_walk_v1_and_v2c_with_typed_values() {
    let snmpd = Server::snmpd();
    let yaml = format!(
        r#"
kind: Target
name: sw
hosts: ["127.0.0.1"]
snmp: {{ port: {port}, version: v2c, community: public }}
---
kind: Target
name: old
hosts: ["127.0.0.1:{port}"]
snmp: {{ version: v1 }}
---
kind: Counter
name: uptime
source: {{ snmp: {{ oid: "1.3.6.1.2.1.1.3.0" }} }}
targets: [sw, old]
---
kind: Counter
name: descr
source: {{ snmp: {{ oid: "1.3.6.1.2.1.1.1.0" }} }}
targets: [sw]
---
kind: Counter
name: nothing
source: {{ snmp: {{ oid: "1.3.6.1.2.1.1.99.0" }} }}
targets: [sw]
---
kind: Counter
name: if-in
source: {{ snmp: {{ oid: "1.3.6.1.2.1.2.2.1.10", walk: true }} }}
targets: [sw, old]
---
kind: Counter
name: if-descr
source: {{ snmp: {{ oid: "1.3.6.1.2.1.2.2.1.2", walk: true }} }}
targets: [sw]
"#,
        port = snmpd.port
    );
    let dir = repo(&yaml);
    let s = collect_once(dir.path(), &[]);
    assert!(value(&s, "uptime", "127.0.0.1").as_f64().unwrap() >= 0.0);
    assert!(value(&s, "uptime", &format!("127.0.0.1:{}", snmpd.port)).as_f64().is_some(), "v1 GET");
    assert!(error(&s, "descr", "127.0.0.1").contains("is a string"), "a string is never a number");
    assert!(error(&s, "nothing", "127.0.0.1").contains("noSuch"), "{}", error(&s, "nothing", "127.0.0.1"));
    for host in ["127.0.0.1".to_string(), format!("127.0.0.1:{}", snmpd.port)] {
        let walked = find(&s, "if-in", &host);
        assert!(!walked.is_empty(), "{s:?}");
        assert!(walked.iter().all(|w| w["value"].is_number() && w["labels"]["index"].is_string()), "{walked:?}");
        let lo = walked.iter().find(|w| w["labels"]["index"] == "1");
        assert!(lo.is_some(), "interface 1 (lo) is walked: {walked:?}");
    }
    assert!(error(&s, "if-descr", "127.0.0.1").contains("is a string"));
}

#[test]
fn collect_and_query_help_teach_with_examples() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["collect", "query"] {
        let out = scaler(dir.path(), &[cmd, "--help"]);
        assert!(out.status.success());
        let text = stdout(&out);
        assert!(text.contains("Examples:") && text.contains("Exit codes:"), "{text}");
        insta::assert_snapshot!(format!("help_{cmd}"), text);
    }
}

#[test]
fn jmx_reads_mbean_attributes_in_one_bulk_jolokia_request() {
    let jvm = Server::jolokia();
    let yaml = format!(
        r#"
kind: Target
name: jvm
hosts: ["127.0.0.1"]
jmx: {{ port: {port} }}
---
kind: Counter
name: heap
source: {{ jmx: {{ mbean: "java.lang:type=Memory", attribute: HeapMemoryUsage, path: used }} }}
targets: [jvm]
---
kind: Counter
name: threads
source: {{ jmx: {{ mbean: "java.lang:type=Threading", attribute: ThreadCount }} }}
targets: [jvm]
---
kind: Counter
name: nope
source: {{ jmx: {{ mbean: "java.lang:type=Nope", attribute: X }} }}
targets: [jvm]
---
kind: Counter
name: vm
source: {{ jmx: {{ mbean: "java.lang:type=Runtime", attribute: VmName }} }}
targets: [jvm]
---
kind: Counter
name: composite
source: {{ jmx: {{ mbean: "java.lang:type=Memory", attribute: HeapMemoryUsage }} }}
targets: [jvm]
"#,
        port = jvm.port
    );
    let dir = repo(&yaml);
    let s = collect_once(dir.path(), &[]);
    assert!(value(&s, "heap", "127.0.0.1").as_f64().unwrap() > 0.0);
    assert!(value(&s, "threads", "127.0.0.1").as_f64().unwrap() >= 1.0);
    assert!(error(&s, "nope", "127.0.0.1").starts_with("jolokia 404 for `java.lang:type=Nope` `X`: javax.management.InstanceNotFoundException"), "{}", error(&s, "nope", "127.0.0.1"));
    assert!(error(&s, "vm", "127.0.0.1").contains("is a string"), "{}", error(&s, "vm", "127.0.0.1"));
    assert!(error(&s, "composite", "127.0.0.1").contains("set `path`"));
    // a closed port: every counter of the bulk fails, none becomes a number
    drop(jvm);
    let s = collect_once(dir.path(), &[]);
    assert!(s.iter().all(|x| x["value"].is_null() && x["error"].as_str().unwrap().starts_with("cannot connect")), "{s:?}");
}

#[test]
fn ssh_counters_share_one_connection_per_host() {
    let (sshds, known) = crate::harness::sshd::fleet(2);
    let dir = crate::harness::sshd::web_repo(
        &sshds,
        &known,
        r#"---
kind: Counter
name: seven
source: { ssh: { command: "echo 7" } }
targets: [web]
---
kind: Counter
name: host-echo
source: { ssh: { command: "echo {{ host }} | cut -d: -f2" } }
targets: [web]
---
kind: Counter
name: broken
source: { ssh: { command: "echo 1; exit 3" } }
targets: [web]
---
kind: Counter
name: words
source: { ssh: { command: "echo twelve" } }
targets: [web]
"#,
    );
    let s = collect_once(dir.path(), &[]);
    for sshd in &sshds {
        let host = format!("127.0.0.1:{}", sshd.port());
        assert_eq!(value(&s, "seven", &host), 7.0);
        assert_eq!(value(&s, "host-echo", &host), f64::from(sshd.port()));
        assert_eq!(error(&s, "broken", &host), "`echo 1; exit 3` exited with 3");
        assert_eq!(error(&s, "words", &host), "not a number: `twelve`");
        // four counters, one SSH connection (one authentication) per host
        let log = sshd.log();
        assert_eq!(log.matches("Accepted publickey").count(), 1, "{log}");
    }
}

#[test]
fn counters_reading_the_same_url_share_one_request_per_host() {
    let http = HttpServer::start(vec![("/status", 200, r#"{"a": 1, "b": 2, "c": 3}"#.to_string())]);
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = format!("kind: Project\nname: t\n---\nkind: Target\nname: web\nhosts: [\"127.0.0.1:{}\"]\n", http.port);
    for k in ["a", "b", "c"] {
        yaml.push_str(&format!("---\nkind: Counter\nname: {k}\nsource: {{ http: {{}} }}\ntargets: [web]\nparse: {{ json: \"$.{k}\" }}\n"));
    }
    std::fs::write(dir.path().join("scaler.yaml"), yaml).unwrap();
    let s = collect_once(dir.path(), &[]);
    let host = format!("127.0.0.1:{}", http.port);
    assert_eq!([value(&s, "a", &host), value(&s, "b", &host), value(&s, "c", &host)], [1.0, 2.0, 3.0]);
    assert_eq!(http.requests(), 1, "three counters of one URL made one GET");
}

#[test]
fn collect_says_a_passive_counter_arrives_through_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("scaler.yaml"),
        "kind: Project\nname: t\n---\nkind: Counter\nname: queue\nsource: { push: {} }\n---\nkind: Counter\nname: num\nsource: { local: { command: \"echo 1\" } }\n",
    )
    .unwrap();
    let (samples, err) = collect_once_with(&Cli::new(), dir.path(), &[]);
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert!(err.contains("source `push` is passive: its values arrive through `PUT /api/v1/push/NAME` on `scaler daemon`"), "{err}");
    assert!(!err.contains("not collected by this build"), "{err}");
}
