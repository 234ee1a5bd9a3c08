//! Secret-valued collection settings against real servers: a Redis
//! password, an SNMP community, HTTP headers and a Jolokia (JMX) password,
//! from `{ env: }` and `{ file: }`. Each is read once when the jobs are
//! planned; an unreadable one fails its counters with the setting named; the
//! value never shows in `collect --json`, stderr or the stored failures.

use scaler::store::{SampleStore, Selector, SqliteStore};
use serde_json::Value;

use crate::collect::{collect_once_with, error, repo, value};
use crate::harness::{Cli, HttpServer, Server};

/// Writes `secrets/NAME` in the repo.
fn write_secret(dir: &std::path::Path, name: &str, text: impl AsRef<[u8]>) {
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets").join(name), text).unwrap();
}

/// Asserts no secret shows in what `collect` printed or stored as failures.
fn assert_hidden(dir: &std::path::Path, samples: &[Value], stderr: &str, secrets: &[&str]) {
    let printed = serde_json::to_string(samples).unwrap();
    let st = SqliteStore::open(&dir.join(".scaler/state.db")).unwrap();
    let counters: std::collections::BTreeSet<&str> = samples.iter().filter_map(|x| x["counter"].as_str()).collect();
    let stored: Vec<String> = counters.iter().flat_map(|c| st.failures(&Selector::counter(c), i64::MIN, i64::MAX).unwrap()).map(|f| f.2).collect();
    assert!(!stored.is_empty(), "the failures are stored");
    for s in secrets {
        assert!(!printed.contains(s), "`{s}` printed: {printed}");
        assert!(!stderr.contains(s), "`{s}` on stderr: {stderr}");
        assert!(stored.iter().all(|e| !e.contains(s)), "`{s}` stored: {stored:?}");
    }
}

#[test]
fn a_redis_password_from_a_secret_is_sent_and_never_shown() {
    let redis = Server::redis_with_password(Some("r3dis-Pa55word"));
    redis.redis_cmd(&["RPUSH", "jobs", "a", "b"]);
    let yaml = format!(
        r#"
kind: Target
name: good
hosts: ["127.0.0.1"]
redis: {{ port: {port}, password: {{ env: REDIS_PASS }} }}
---
kind: Target
name: wrong
hosts: ["127.0.0.1"]
redis: {{ port: {port}, password: {{ file: secrets/redis }} }}
---
kind: Target
name: unset
hosts: ["127.0.0.1"]
redis: {{ port: {port}, password: {{ env: REDIS_PASS_NEVER_SET }} }}
---
kind: Target
name: none
hosts: ["127.0.0.1"]
redis: {{ port: {port} }}
---
kind: Counter
name: queue
source: {{ redis: {{ llen: jobs }} }}
targets: [good]
---
kind: Counter
name: queue-wrong
source: {{ redis: {{ llen: jobs }} }}
targets: [wrong]
---
kind: Counter
name: queue-unset
source: {{ redis: {{ llen: jobs }} }}
targets: [unset]
---
kind: Counter
name: queue-none
source: {{ redis: {{ llen: jobs }} }}
targets: [none]
"#,
        port = redis.port
    );
    let dir = repo(&yaml);
    write_secret(dir.path(), "redis", "Not-the-Pa55word\n");
    let cli = Cli::new().env("REDIS_PASS", "r3dis-Pa55word");
    let (s, stderr) = collect_once_with(&cli, dir.path(), &[]);
    assert_eq!(value(&s, "queue", "127.0.0.1"), 2.0);
    let wrong = error(&s, "queue-wrong", "127.0.0.1");
    assert_eq!(wrong, format!("redis `127.0.0.1:{}`: Password authentication failed - AuthenticationFailed", redis.port));
    assert_eq!(error(&s, "queue-unset", "127.0.0.1"), "target `unset` `redis.password`: secret environment variable `REDIS_PASS_NEVER_SET` is not set");
    let none = error(&s, "queue-none", "127.0.0.1");
    assert!(none.contains("NOAUTH") || none.contains("uthentication required"), "{none}");
    assert_hidden(dir.path(), &s, &stderr, &["r3dis-Pa55word", "Not-the-Pa55word"]);
}

#[test]
fn an_snmp_community_from_a_secret_reads_an_agent_that_refuses_public() {
    let snmpd = Server::snmpd_with_community("n0t-publ1c-c0mm");
    let yaml = format!(
        r#"
kind: Target
name: sw
hosts: ["127.0.0.1"]
snmp: {{ port: {port}, community: {{ env: SNMP_COMMUNITY }} }}
---
kind: Target
name: public
hosts: ["127.0.0.1"]
snmp: {{ port: {port} }}
---
kind: Target
name: missing
hosts: ["127.0.0.1"]
snmp: {{ port: {port}, community: {{ file: secrets/absent }} }}
---
kind: Counter
name: uptime
source: {{ snmp: {{ oid: "1.3.6.1.2.1.1.3.0" }} }}
targets: [sw]
---
kind: Counter
name: if-in
source: {{ snmp: {{ oid: "1.3.6.1.2.1.2.2.1.10", walk: true }} }}
targets: [sw]
---
kind: Counter
name: uptime-public
source: {{ snmp: {{ oid: "1.3.6.1.2.1.1.3.0" }} }}
targets: [public]
timeout: 2s
---
kind: Counter
name: uptime-missing
source: {{ snmp: {{ oid: "1.3.6.1.2.1.1.3.0" }} }}
targets: [missing]
"#,
        port = snmpd.port
    );
    let dir = repo(&yaml);
    let cli = Cli::new().env("SNMP_COMMUNITY", "n0t-publ1c-c0mm");
    let (s, stderr) = collect_once_with(&cli, dir.path(), &[]);
    assert!(value(&s, "uptime", "127.0.0.1").as_f64().unwrap() >= 0.0);
    assert!(s.iter().any(|x| x["counter"] == "if-in" && x["value"].is_number()), "a WALK with the secret community: {s:?}");
    // the agent ignores `public`: no answer, a failure
    let public = error(&s, "uptime-public", "127.0.0.1");
    assert!(public == "timed out after 2s" || public.starts_with("snmp GET `1.3.6.1.2.1.1.3.0`: "), "{public}");
    assert!(error(&s, "uptime-missing", "127.0.0.1").starts_with("target `missing` `snmp.community`: secret file `secrets/absent`: "), "{s:?}");
    assert_hidden(dir.path(), &s, &stderr, &["n0t-publ1c-c0mm"]);
}

#[test]
fn http_headers_from_secrets_are_sent_and_an_echoed_one_is_masked() {
    let token = "Bearer t0ken-s3cret-42";
    let http = HttpServer::requiring(Some(("X-Token", token.to_string())), vec![("/status", 200, r#"{"v": 7, "echo": "{{header:x-token}}", "plain": "{{header:x-plain}}"}"#.to_string())]);
    let yaml = format!(
        r#"
kind: Target
name: api
hosts: ["127.0.0.1:{port}"]
http: {{ headers: {{ X-Token: {{ env: API_TOKEN }}, X-Plain: inline-value }} }}
---
kind: Target
name: from-file
hosts: ["127.0.0.1:{port}"]
http: {{ headers: {{ X-Token: {{ file: secrets/token }} }} }}
---
kind: Target
name: anonymous
hosts: ["127.0.0.1:{port}"]
---
kind: Target
name: unset
hosts: ["127.0.0.1:{port}"]
http: {{ headers: {{ X-Token: {{ env: API_TOKEN_NEVER_SET }} }} }}
---
kind: Counter
name: v
source: {{ http: {{}} }}
targets: [api]
parse: {{ json: "$.v" }}
---
kind: Counter
name: echo
source: {{ http: {{}} }}
targets: [api]
parse: {{ json: "$.echo" }}
---
kind: Counter
name: plain
source: {{ http: {{}} }}
targets: [api]
parse: {{ json: "$.plain" }}
---
kind: Counter
name: v-file
source: {{ http: {{}} }}
targets: [from-file]
parse: {{ json: "$.v" }}
---
kind: Counter
name: v-anonymous
source: {{ http: {{}} }}
targets: [anonymous]
---
kind: Counter
name: v-unset
source: {{ http: {{}} }}
targets: [unset]
"#,
        port = http.port
    );
    let dir = repo(&yaml);
    write_secret(dir.path(), "token", format!("{token}\n"));
    let cli = Cli::new().env("API_TOKEN", token);
    let (s, stderr) = collect_once_with(&cli, dir.path(), &[]);
    let host = format!("127.0.0.1:{}", http.port);
    assert_eq!(value(&s, "v", &host), 7.0);
    assert_eq!(value(&s, "v-file", &host), 7.0);
    // the server echoed the secret header: the error shows it masked; an inline header is not a secret
    assert_eq!(error(&s, "echo", &host), "`$.echo` is a string \"***\", not a number");
    assert_eq!(error(&s, "plain", &host), "`$.plain` is a string \"inline-value\", not a number");
    assert_eq!(error(&s, "v-anonymous", &host), format!("HTTP 401 from `http://{host}/status`"));
    assert_eq!(error(&s, "v-unset", &host), "target `unset` `http.headers.X-Token`: secret environment variable `API_TOKEN_NEVER_SET` is not set");
    assert_hidden(dir.path(), &s, &stderr, &["t0ken-s3cret-42"]);
}

#[test]
fn a_jmx_password_from_a_secret_passes_jolokias_basic_auth() {
    let jvm = Server::jolokia_with_auth(Some(("monitor", "jmx-Pa55w0rd")));
    let yaml = format!(
        r#"
kind: Target
name: jvm
hosts: ["127.0.0.1"]
jmx: {{ port: {port}, user: monitor, password: {{ env: JMX_PASS }} }}
---
kind: Target
name: wrong
hosts: ["127.0.0.1"]
jmx: {{ port: {port}, user: monitor, password: {{ file: secrets/jmx }} }}
---
kind: Target
name: anonymous
hosts: ["127.0.0.1"]
jmx: {{ port: {port} }}
---
kind: Counter
name: threads
source: {{ jmx: {{ mbean: "java.lang:type=Threading", attribute: ThreadCount }} }}
targets: [jvm]
---
kind: Counter
name: heap
source: {{ jmx: {{ mbean: "java.lang:type=Memory", attribute: HeapMemoryUsage, path: used }} }}
targets: [jvm]
---
kind: Counter
name: threads-wrong
source: {{ jmx: {{ mbean: "java.lang:type=Threading", attribute: ThreadCount }} }}
targets: [wrong]
---
kind: Counter
name: threads-anonymous
source: {{ jmx: {{ mbean: "java.lang:type=Threading", attribute: ThreadCount }} }}
targets: [anonymous]
"#,
        port = jvm.port
    );
    let dir = repo(&yaml);
    write_secret(dir.path(), "jmx", "Wr0ng-Pa55w0rd\n");
    let cli = Cli::new().env("JMX_PASS", "jmx-Pa55w0rd");
    let (s, stderr) = collect_once_with(&cli, dir.path(), &[]);
    assert!(value(&s, "threads", "127.0.0.1").as_f64().unwrap() >= 1.0);
    assert!(value(&s, "heap", "127.0.0.1").as_f64().unwrap() > 0.0, "both counters in one authenticated bulk request");
    let url = format!("http://127.0.0.1:{}/jolokia/", jvm.port);
    assert_eq!(error(&s, "threads-wrong", "127.0.0.1"), format!("HTTP 401 from `{url}`"));
    assert_eq!(error(&s, "threads-anonymous", "127.0.0.1"), format!("HTTP 401 from `{url}`"));
    assert_hidden(dir.path(), &s, &stderr, &["jmx-Pa55w0rd", "Wr0ng-Pa55w0rd"]);
}
