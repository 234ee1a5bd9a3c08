//! `scaler daemon` end to end: real processes, killed with SIGKILL at the
//! worst moments, against a real HTTP receiver and the real state store.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{free_port, wait_until, Cli};

pub(crate) const TOKEN: &str = "test-token-0123456789";

/// A webhook receiver that records every request's idempotency key.
struct Hooks {
    port: u16,
    keys: Arc<Mutex<Vec<String>>>,
}

impl Hooks {
    fn start() -> Hooks {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let keys = Arc::new(Mutex::new(Vec::new()));
        let k = keys.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut len = 0usize;
                let mut key = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("idempotency-key:") {
                        key = line["idempotency-key:".len()..].trim().to_string();
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                k.lock().unwrap().push(key);
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            }
        });
        Hooks { port, keys }
    }

    fn keys(&self) -> Vec<String> {
        self.keys.lock().unwrap().clone()
    }
}

/// A running daemon in its own process group (so a kill takes its children).
pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) port: u16,
}

impl Daemon {
    pub(crate) fn start(cli: &Cli, dir: &Path, extra: &[&str]) -> Daemon {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["daemon", ".", "--listen", &listen, "--evaluation-interval", "250ms"];
        args.extend_from_slice(extra);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("daemon.log")).unwrap();
        let child = cli
            .command(dir, &args)
            .env("SCALER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        let d = Daemon { child, port };
        if !extra.contains(&"worker") {
            wait_until(Duration::from_secs(20), "the daemon to listen", || TcpStream::connect(("127.0.0.1", port)).is_ok());
        }
        d
    }

    /// `scaler apply --auto-approve .` in `dir`, then a daemon on it.
    pub(crate) fn applied(cli: &Cli, dir: &Path) -> Daemon {
        let out = cli.run(dir, &["apply", "--auto-approve", "."]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Daemon::start(cli, dir, &[])
    }

    pub(crate) fn kill9(mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL).unwrap();
        let _ = self.child.wait();
    }

    pub(crate) fn push(&self, counter: &str, body: &str) -> (u16, String) {
        http(self.port, "PUT", &format!("/api/v1/push/{counter}"), body, Some(TOKEN))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request; the status and body.
pub(crate) fn http(port: u16, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{auth}content-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

pub(crate) fn status(cli: &Cli, dir: &Path) -> Value {
    let out = cli.run(dir, &["status", ".", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub(crate) fn trigger<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["triggers"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap()
}

pub(crate) fn write_config(dir: &Path, then: &str, extra: &str) {
    std::fs::write(dir.join("token.txt"), TOKEN).unwrap();
    std::fs::write(
        dir.join("scaler.yaml"),
        "kind: Project\nname: t\ndaemon:\n  token: { file: token.txt }\n  jobs: { lease: 2s, backoff: 100ms, max_attempts: 3 }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("triggers.yaml"),
        format!("kind: Counter\nname: queue\nsource: {{ push: {{}} }}\n---\nkind: Trigger\nname: deep\nwhen: last(queue) > 10\nfor: 8s\ncooldown: 1h\nthen:\n{then}\n{extra}"),
    )
    .unwrap();
}

/// The `for` of trigger `deep` is 8s: long enough that a kill and a restart
/// fit inside it on a loaded machine.
/// Next multiple of 250 ms at or after `t` (the daemon's evaluation grid).
fn grid(t: i64) -> i64 {
    (t + 249).div_euclid(250) * 250
}

#[test]
fn a_restart_resumes_pending_and_never_fires_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let hooks = Hooks::start();
    write_config(dir, &format!("  - notify: {{ webhook: {{ url: \"http://127.0.0.1:{}/hook\" }} }}", hooks.port), "");
    let cli = Cli::new();

    let d = Daemon::start(&cli, dir, &[]);
    assert_eq!(d.push("queue", "50").0, 200);
    let mut pending_since = 0;
    wait_until(Duration::from_secs(10), "the trigger to be pending", || {
        let s = status(&cli, dir);
        let t = trigger(&s, "deep");
        pending_since = t["pending_since_ms"].as_i64().unwrap_or(0);
        t["state"] == "pending"
    });
    d.kill9();
    // The pending state survived the kill.
    let s = status(&cli, dir);
    assert_eq!(trigger(&s, "deep")["pending_since_ms"].as_i64(), Some(pending_since));

    let d = Daemon::start(&cli, dir, &[]);
    let restarted = chrono::Utc::now().timestamp_millis();
    assert!(restarted < pending_since + 8_000, "the restart took too long for this test to mean anything");
    wait_until(Duration::from_secs(20), "the job to be done", || {
        let s = status(&cli, dir);
        s["jobs"].as_array().is_some_and(|j| j.len() == 1 && j[0]["status"] == "done")
    });
    let s = status(&cli, dir);
    let job = &s["jobs"][0];
    // The fire happened at the instant the first run would have fired: the
    // first evaluation at least `for` after pending began.
    let fired = job["fired_at_ms"].as_i64().unwrap();
    assert_eq!(fired, grid(pending_since + 8_000));
    assert_eq!(trigger(&s, "deep")["last_fired_ms"].as_i64(), Some(fired));
    assert_eq!(job["values"]["terms"][0]["value"], 50.0, "{job}");
    assert_eq!(job["values"]["pending_since_ms"].as_i64(), Some(pending_since));
    assert_eq!(hooks.keys(), vec![format!("deep@{fired}#0")]);

    // Killed after the fire and restarted, it does not fire again: the
    // condition holds past `for` but the cooldown (1h) was saved.
    d.kill9();
    let d = Daemon::start(&cli, dir, &[]);
    assert_eq!(d.push("queue", "5").0, 200);
    wait_until(Duration::from_secs(10), "the trigger to see the low value", || trigger(&status(&cli, dir), "deep")["state"] == "cooldown");
    assert_eq!(d.push("queue", "60").0, 200);
    wait_until(Duration::from_secs(15), "the condition to hold past `for` inside the cooldown", || {
        let s = status(&cli, dir);
        let t = trigger(&s, "deep");
        t["state"] == "cooldown" && t["pending_since_ms"].as_i64().is_some_and(|p| chrono::Utc::now().timestamp_millis() - p > 8_500)
    });
    let s = status(&cli, dir);
    assert_eq!(s["jobs"].as_array().map(Vec::len), Some(1));
    assert_eq!(hooks.keys().len(), 1);
    drop(d);
}

#[test]
fn a_worker_killed_mid_job_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = dir.join("actions.log");
    write_config(
        dir,
        "  - run: { playbook: slow, on: local }",
        &format!(
            "---\nkind: Playbook\nname: slow\nsteps:\n  - local: echo start >> {p} && sleep 3 && echo end >> {p}\n",
            p = log.display()
        ),
    );
    let cli = Cli::new();
    let d = Daemon::start(&cli, dir, &[]);
    assert_eq!(d.push("queue", "50").0, 200);
    wait_until(Duration::from_secs(20), "the action to start", || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("start")));
    // SIGKILL the whole daemon (and the running action) mid-job.
    d.kill9();
    let s = status(&cli, dir);
    assert_eq!(s["jobs"][0]["status"], "leased", "{s}");
    // A worker-only process takes the job over once the lease (2s) runs out.
    let _w = Daemon::start(&cli, dir, &["--role", "worker"]);
    wait_until(Duration::from_secs(30), "the job to be done", || status(&cli, dir)["jobs"][0]["status"] == "done");
    let s = status(&cli, dir);
    assert_eq!(s["jobs"].as_array().map(Vec::len), Some(1), "one fire, one job");
    assert_eq!(s["jobs"][0]["attempts"], 2);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().filter(|l| *l == "start").count(), 2, "{text}");
    assert_eq!(text.lines().filter(|l| *l == "end").count(), 1, "{text}");
}

#[test]
fn receivers_reject_bad_input_and_keep_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_config(dir, "  - notify: { webhook: { url: \"http://127.0.0.1:9/never\" } }", "");
    let cli = Cli::new();
    let d = Daemon::start(&cli, dir, &[]);
    let (code, body) = http(d.port, "PUT", "/api/v1/push/queue", "5", None);
    assert_eq!(code, 401, "{body}");
    assert_eq!(d.push("queue", "lots").0, 400);
    assert_eq!(d.push("nope", "1").0, 404);
    assert_eq!(http(d.port, "GET", "/api/v1/push/queue", "", Some(TOKEN)).0, 405);
    assert_eq!(d.push("queue", "7").0, 200, "still serving");
    wait_until(Duration::from_secs(10), "the trigger to see the value", || {
        let s = status(&cli, dir);
        let t = trigger(&s, "deep");
        t["state"] == "inactive" && t["values"][0]["value"] == 7.0
    });
}

#[test]
fn a_scale_action_records_desired_and_the_daemon_applies_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_config(
        dir,
        "  - scale: { group: web, by: 1 }",
        "---\nkind: NodeTemplate\nname: sleeper\nprovider: local\nlocal: { command: exec sleep 600, grace: 1s }\n---\nkind: Group\nname: web\ntemplate: sleeper\nmin: 1\nmax: 2\ndesired: 1\n",
    );
    let cli = Cli::new();
    let out = cli.run(dir, &["apply", "--auto-approve", "."]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let nodes = |cli: &Cli| -> Vec<Value> {
        let out = cli.run(dir, &["state", "list", "--json", "."]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["nodes"].as_array().cloned().unwrap_or_default()
    };
    assert_eq!(nodes(&cli).len(), 1);
    let d = Daemon::start(&cli, dir, &[]);
    assert_eq!(d.push("queue", "50").0, 200);
    wait_until(Duration::from_secs(30), "the daemon to launch the second node", || {
        nodes(&cli).iter().filter(|n| n["status"] == "ready").count() == 2
    });
    let s = status(&cli, dir);
    let job = &s["jobs"][0];
    assert_eq!(job["status"], "done", "{s}");
    assert_eq!(job["result"][0]["from"], 1, "{job}");
    assert_eq!(job["result"][0]["to"], 2, "{job}");
    // Clamped at max: a second fire would not grow the group past 2.
    drop(d);
    let out = cli.run(dir, &["destroy", "--auto-approve", "."]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_alertmanager_alert_fires_a_trigger() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let hooks = Hooks::start();
    write_config(
        dir,
        "  - notify: { webhook: { url: \"http://127.0.0.1:1/unused\" } }",
        &format!(
            "---\nkind: Counter\nname: latency\nsource:\n  alertmanager: {{ alertname: HighLatency }}\n---\nkind: Trigger\nname: paged\nwhen: last(latency) == 1\ncooldown: 1h\nthen:\n  - notify: {{ webhook: {{ url: \"http://127.0.0.1:{}/hook\" }} }}\n",
            hooks.port
        ),
    );
    let cli = Cli::new();
    let d = Daemon::start(&cli, dir, &[]);
    let alert = |status: &str| {
        format!(
            r#"{{"version":"4","groupKey":"{{}}:{{alertname=\"HighLatency\"}}","truncatedAlerts":0,"status":"{status}","receiver":"scaler","groupLabels":{{"alertname":"HighLatency"}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am","alerts":[{{"status":"{status}","labels":{{"alertname":"HighLatency","instance":"web-01"}},"annotations":{{}},"startsAt":"2026-11-21T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prom","fingerprint":"abc123"}}]}}"#
        )
    };
    let (code, body) = http(d.port, "POST", "/api/v1/alerts", &alert("firing"), Some(TOKEN));
    assert_eq!(code, 200, "{body}");
    wait_until(Duration::from_secs(15), "the alert's trigger to fire and notify", || hooks.keys().len() == 1);
    assert!(hooks.keys()[0].starts_with("paged@"), "{:?}", hooks.keys());
    let (code, _) = http(d.port, "POST", "/api/v1/alerts", &alert("resolved"), Some(TOKEN));
    assert_eq!(code, 200);
    wait_until(Duration::from_secs(10), "the resolved alert to clear the trigger", || {
        let s = status(&cli, dir);
        let t = trigger(&s, "paged");
        t["state"] == "cooldown" && t["values"][0]["value"] == 0.0
    });
}

#[test]
fn snmp_traps_fire_a_trigger_through_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let hooks = Hooks::start();
    let trap_port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    std::fs::write(dir.join("token.txt"), TOKEN).unwrap();
    std::fs::write(
        dir.join("scaler.yaml"),
        format!("kind: Project\nname: t\ndaemon:\n  token: {{ file: token.txt }}\n  traps: {{ listen: \"127.0.0.1:{trap_port}\" }}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("traps.yaml"),
        format!(
            "kind: Counter\nname: linkdown\nsource:\n  trap: {{ oid: 1.3.6.1.6.3.1.1.5.3 }}\n---\nkind: Trigger\nname: flapping\nwhen: count(linkdown, over=\"1m\") >= 2\ncooldown: 1h\nthen:\n  - notify: {{ webhook: {{ url: \"http://127.0.0.1:{}/hook\" }} }}\n",
            hooks.port
        ),
    )
    .unwrap();
    let cli = Cli::new();
    let _d = Daemon::start(&cli, dir, &[]);
    let target = format!("127.0.0.1:{trap_port}");
    let send = || {
        let out = std::process::Command::new("snmptrap")
            .env("MIBS", "")
            .args(["-v", "2c", "-c", "public", &target, "", "1.3.6.1.6.3.1.1.5.3"])
            .output()
            .expect("snmptrap (Debian package `snmp`)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    send();
    wait_until(Duration::from_secs(10), "one trap to be counted", || {
        let s = status(&cli, dir);
        trigger(&s, "flapping")["values"][0]["value"] == 1.0
    });
    assert!(hooks.keys().is_empty(), "one trap is not enough");
    send();
    wait_until(Duration::from_secs(15), "the second trap to fire the trigger", || hooks.keys().len() == 1);
    assert!(hooks.keys()[0].starts_with("flapping@"));
}

#[test]
fn a_scale_that_a_policy_refuses_is_recorded_but_not_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_config(
        dir,
        "  - scale: { group: web, by: 1 }",
        "---\nkind: NodeTemplate\nname: sleeper\nprovider: local\nlocal: { command: exec sleep 600, grace: 1s }\n---\nkind: Group\nname: web\ntemplate: sleeper\nmin: 1\nmax: 3\ndesired: 1\n---\nkind: Policy\nname: small\nrules:\n  - name: one-node\n    each: group\n    deny: \"group.nodes_after > 1\"\n    message: \"group `{{ group.name }}` stays at one node\"\n",
    );
    let cli = Cli::new();
    let out = cli.run(dir, &["apply", "--auto-approve", "."]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d = Daemon::start(&cli, dir, &[]);
    assert_eq!(d.push("queue", "50").0, 200);
    wait_until(Duration::from_secs(30), "the reconciler to refuse the plan", || {
        std::fs::read_to_string(dir.join("daemon.log")).is_ok_and(|t| t.contains("refused by policy") && t.contains("stays at one node"))
    });
    let state: Value = serde_json::from_slice(&cli.run(dir, &["state", "list", "--json", "."]).stdout).unwrap();
    assert_eq!(state["desired"]["web"], 2, "the scale is recorded: {state}");
    assert_eq!(state["nodes"].as_array().map(Vec::len), Some(1), "but not applied: {state}");
    assert_eq!(status(&cli, dir)["jobs"][0]["status"], "done");
    drop(d);
    let out = cli.run(dir, &["destroy", "--auto-approve", "."]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_start_up_lines_warn_about_settings_this_build_ignores() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_config(dir, "  - notify: { webhook: { url: \"http://127.0.0.1:9/hook\" } }", "");
    let project = std::fs::read_to_string(dir.join("scaler.yaml")).unwrap();
    // `auto_apply` and a `file://` source are built: no warning for them.
    std::fs::write(
        dir.join("scaler.yaml"),
        project + "  auto_apply: true\n  source: { git: https://git.example/fleet.git }\n",
    )
    .unwrap();
    let cli = Cli::new();
    let daemon = Daemon::start(&cli, dir, &[]);
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap();
    drop(daemon);
    let start = log.find("scaler daemon:").unwrap_or_else(|| panic!("{log}"));
    let after: Vec<&str> = log[start..].lines().skip(1).take(1).collect();
    assert_eq!(
        after,
        [
            "warning: scaler.yaml:7:13: `daemon.source.git` is an https remote, which this build cannot fetch (libgit2 is built without https and ssh): every fetch fails and the daemon keeps running the config it has",
        ],
        "{log}"
    );
    assert!(!log.contains("`daemon.auto_apply`"), "{log}");
}

#[test]
fn a_daemon_with_its_state_on_postgres_fires_once_and_runs_the_job() {
    let pg = crate::harness::pg::PgSchema::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let hooks = Hooks::start();
    std::fs::write(dir.join("token.txt"), TOKEN).unwrap();
    std::fs::write(
        dir.join("scaler.yaml"),
        format!(
            "kind: Project\nname: t\nstate: {{ url: \"{}\" }}\ndaemon:\n  token: {{ file: token.txt }}\n---\nkind: Counter\nname: queue\nsource: {{ push: {{}} }}\n---\n\
             kind: Trigger\nname: deep\nwhen: last(queue) > 10\ncooldown: 1h\nthen:\n  - notify: {{ webhook: {{ url: \"http://127.0.0.1:{}/hook\" }} }}\n",
            pg.url(),
            hooks.port
        ),
    )
    .unwrap();
    let cli = Cli::new();
    let d = Daemon::start(&cli, dir, &[]);
    // the push receiver writes the sample from inside the daemon's runtime
    assert_eq!(d.push("queue", "50").0, 200);
    wait_until(Duration::from_secs(20), "the job to be done", || {
        status(&cli, dir)["jobs"].as_array().is_some_and(|j| j.len() == 1 && j[0]["status"] == "done")
    });
    drop(d);
    assert_eq!(hooks.keys().len(), 1, "{:?}", hooks.keys());
    // it all went to PostgreSQL, nothing to a SQLite file
    let store = scaler::store::PostgresStore::connect(&pg.url(), None).unwrap();
    use scaler::store::{JobStore, SampleStore};
    assert_eq!(store.jobs(&Default::default()).unwrap().len(), 1);
    assert_eq!(store.trigger_states().unwrap().iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["deep"]);
    assert_eq!(store.series(&scaler::store::Selector::counter("queue")).unwrap().len(), 1);
    assert!(!dir.join(".scaler").join("state.db").exists());
}

#[test]
fn a_pushed_host_with_quotes_and_braces_makes_an_unambiguous_series_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_config(dir, "  - notify: { webhook: { url: \"http://127.0.0.1:9/hook\" } }", "");
    let cli = Cli::new();
    let d = Daemon::start(&cli, dir, &[]);
    let (code, body) = d.push("queue", r#"{"value": 1, "host": "a\"b{}"}"#);
    assert_eq!(code, 200, "{body}");
    drop(d);
    let out = cli.run(dir, &["query", "queue", ".", "--from", "now-1m", "--step", "1m"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains(r#"queue{host="a\"b{}"}"#), "the host is escaped in the key: {text}");
    let out = cli.run(dir, &["query", "queue", ".", "--json", "--from", "now-1m", "--step", "1m"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["series"]["host"], "a\"b{}", "the host itself is kept as sent");
}
