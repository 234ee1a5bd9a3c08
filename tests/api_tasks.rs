//! The API's tasks through the real `scaler daemon` process: `POST` a
//! run, a command, a trigger fire, a plan, an approval -> 202 and a task
//! id; the task ends with its result in the state store, across a daemon
//! restart; held plans approved through the API and `scaler approve` are
//! applied (a real local node launched).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::daemon::{http, Daemon, TOKEN};
use crate::harness::{wait_until, Cli};

const READ_TOKEN: &str = "read-only-token-9876543210";

fn write_config(dir: &Path, desired: u32) {
    write_config_with(dir, desired, "");
}

/// The config, with `extra` YAML documents appended to the playbooks.
fn write_config_with(dir: &Path, desired: u32, extra: &str) {
    std::fs::write(dir.join("token.txt"), TOKEN).unwrap();
    std::fs::write(dir.join("read.txt"), READ_TOKEN).unwrap();
    std::fs::write(
        dir.join("scaler.yaml"),
        "kind: Project\nname: t\ndaemon:\n  token: { file: token.txt }\n  read_token: { file: read.txt }\n  jobs: { lease: 2s, backoff: 100ms, max_attempts: 1 }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("playbooks.yaml"),
        String::from("kind: Playbook\nname: three\non: local\nsteps:\n  - run: echo one\n  - run: exit 3\n  - run: echo three\n---\n\
         kind: Playbook\nname: fine\non: local\nparams:\n  who: { required: true }\nsteps:\n  - run: echo fine-{{ who }}\n---\n\
         kind: Playbook\nname: slow\non: local\nsteps:\n  - run: sleep 30\n    timeout: 60s\n---\n\
         kind: Counter\nname: queue\nsource: { push: {} }\n---\n\
         kind: Trigger\nname: deep\nwhen: last(queue) > 10\nfor: 1h\nthen:\n  - run: { playbook: fine, vars: { who: trigger } }\n  - run: { playbook: three }\n  - run: { playbook: fine, vars: { who: never } }\n") + extra,
    )
    .unwrap();
    std::fs::write(
        dir.join("fleet.yaml"),
        format!(
            "kind: NodeTemplate\nname: sleeper\nprovider: local\nlocal: {{ command: exec sleep 600, grace: 1s }}\n---\n\
             kind: Group\nname: web\ntemplate: sleeper\nmin: 0\nmax: 5\ndesired: {desired}\n"
        ),
    )
    .unwrap();
}

fn post(d: &Daemon, path: &str, body: &str) -> (u16, Value) {
    let (status, text) = http(d.port, "POST", path, body, Some(TOKEN));
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {text}")))
}

fn get(d: &Daemon, path: &str) -> Value {
    let (status, text) = http(d.port, "GET", path, "", Some(TOKEN));
    assert_eq!(status, 200, "GET {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// POSTs and returns the task id of the 202.
fn start(d: &Daemon, path: &str, body: &str) -> String {
    let (status, v) = post(d, path, body);
    assert_eq!(status, 202, "POST {path}: {v}");
    v["task"].as_str().unwrap_or_else(|| panic!("no task in {v}")).to_string()
}

/// Waits for the task to end and returns it.
fn ended(d: &Daemon, dir: &Path, id: &str) -> Value {
    let mut task = Value::Null;
    wait_until(Duration::from_secs(60), &format!("task {id} to end"), || {
        task = get(d, &format!("/api/v1/tasks/{id}"));
        ["success", "failure", "cancelled"].contains(&task["state"].as_str().unwrap_or(""))
    });
    let _ = dir;
    task
}

fn words(v: &Value, field: &str) -> Vec<String> {
    v.as_array().unwrap_or_else(|| panic!("not a list: {v}")).iter().map(|s| s[field].as_str().unwrap_or("?").to_string()).collect()
}

#[test]
fn each_post_gives_202_and_a_task_that_ends_with_its_result() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_config(dir, 0);
    let cli = Cli::new();
    let d = Daemon::start(&cli, dir, &[]);

    // A run with a failing middle step: every host and step is listed, the
    // step after the failure `skipped`, each with its own id and state.
    let id = start(&d, "/api/v1/runs", r#"{"playbook": "three", "target": "local", "vars": {}}"#);
    let t = ended(&d, dir, &id);
    assert_eq!((t["kind"].as_str(), t["state"].as_str()), (Some("run"), Some("failure")), "{t}");
    assert_eq!(t["error"], "1 of 1 hosts did not succeed", "{t}");
    let host = &t["result"]["hosts"][0];
    assert_eq!((host["id"].as_str(), host["state"].as_str()), (Some("local"), Some("failure")), "{t}");
    assert_eq!(words(&host["steps"], "id"), ["local#1", "local#2", "local#3"]);
    assert_eq!(words(&host["steps"], "state"), ["changed", "failure", "skipped"], "a command that ran is `changed`");
    assert_eq!(host["steps"][0]["stdout"].as_str().map(str::trim), Some("one"));
    for f in ["created_ms", "started_ms", "finished_ms"] {
        assert!(t[f].as_i64().is_some(), "{f}: {t}");
    }
    assert_eq!(t["request"], serde_json::json!({"playbook": "three", "target": "local", "vars": {}}));

    // vars reach the run; the playbook's `on` is the default target
    let t = ended(&d, dir, &start(&d, "/api/v1/runs", r#"{"playbook": "fine", "vars": {"who": "api"}}"#));
    assert_eq!(t["state"], "success", "{t}");
    assert_eq!(t["result"]["hosts"][0]["steps"][0]["stdout"].as_str().map(str::trim), Some("fine-api"), "{t}");

    // an ad-hoc command
    let t = ended(&d, dir, &start(&d, "/api/v1/exec", r#"{"target": "local", "command": "echo hello"}"#));
    assert_eq!((t["kind"].as_str(), t["state"].as_str()), (Some("exec"), Some("success")), "{t}");
    assert_eq!(t["result"]["hosts"][0]["steps"][0]["stdout"].as_str().map(str::trim), Some("hello"));

    // a manual trigger fire: the job view lists every action; those after
    // the failed one are `skipped`
    let t = ended(&d, dir, &start(&d, "/api/v1/triggers/deep/fire", ""));
    assert_eq!((t["kind"].as_str(), t["state"].as_str()), (Some("trigger"), Some("failure")), "{t}");
    assert_eq!(t["result"]["status"], "dead", "{t}");
    assert_eq!(words(&t["result"]["actions"], "state"), ["success", "failure", "skipped"], "{t}");
    assert_eq!(words(&t["result"]["actions"], "type"), ["run", "run", "run"]);

    // a plan: held in the plan store
    let t = ended(&d, dir, &start(&d, "/api/v1/plans", ""));
    assert_eq!(t["state"], "success", "{t}");
    let plan = t["result"]["plan"].as_str().unwrap_or_else(|| panic!("{t}")).to_string();
    let p = get(&d, &format!("/api/v1/plans/{plan}"));
    assert_eq!(p["state"], "held", "{p}");
    assert!(p["summary"]["add"].as_u64().unwrap() > 0 && p["diff"].as_str().unwrap().contains("+ group         web"), "{p}");
    assert!(!p["diff"].as_str().unwrap().contains('\u{1b}'), "no colour");

    // Bodies are checked; unknown names are 404 with a suggestion.
    for (path, body, status, needle) in [
        ("/api/v1/runs", r#"{"playbook": "thre"}"#, 404, "no playbook `thre`; did you mean `three`?"),
        ("/api/v1/runs", r#"{"playbook": "three", "target": "webb"}"#, 404, "no target `webb`"),
        ("/api/v1/runs", r#"{"playbook": "three", "extra": 1}"#, 400, "unknown field `extra`"),
        ("/api/v1/runs", "not json", 400, "the body must be JSON"),
        ("/api/v1/exec", r#"{"target": "local"}"#, 400, "missing field `command`"),
        ("/api/v1/exec", r#"{"target": "local", "command": " "}"#, 400, "`command` must not be empty"),
        ("/api/v1/triggers/deeep/fire", "", 404, "did you mean `deep`?"),
        ("/api/v1/plans/nope/approve", "", 404, "no plan `nope`"),
        ("/api/v1/plans/nope/apply", "", 404, "no plan `nope`"),
    ] {
        let (s, v) = post(&d, path, body);
        assert_eq!(s, status, "POST {path} {body}: {v}");
        assert!(v["error"].as_str().unwrap_or("").contains(needle), "POST {path} {body}: {v}");
    }

    // The read-only token gets 403 on every POST, and starts nothing.
    let before = get(&d, "/api/v1/tasks")["items"].as_array().unwrap().len();
    for path in ["/api/v1/runs", "/api/v1/exec", "/api/v1/triggers/deep/fire", "/api/v1/plans", &format!("/api/v1/plans/{plan}/approve"), &format!("/api/v1/plans/{plan}/apply")] {
        let (s, text) = http(d.port, "POST", path, r#"{"playbook": "fine", "target": "local", "command": "true"}"#, Some(READ_TOKEN));
        assert_eq!(s, 403, "POST {path} with the read token: {text}");
    }
    assert_eq!(get(&d, "/api/v1/tasks")["items"].as_array().unwrap().len(), before);
    assert_eq!(get(&d, &format!("/api/v1/plans/{plan}"))["state"], "held", "the read token approved nothing");

    // Lists: newest first, by kind and state; runs are the run and exec tasks.
    let all = get(&d, "/api/v1/tasks");
    assert_eq!(words(&all["items"], "kind"), ["plan", "trigger", "exec", "run", "run"], "{all}");
    assert_eq!(words(&get(&d, "/api/v1/tasks?kind=run")["items"], "state"), ["success", "failure"]);
    assert_eq!(words(&get(&d, "/api/v1/tasks?state=failure")["items"], "kind"), ["trigger", "run"]);
    assert_eq!(words(&get(&d, "/api/v1/runs")["items"], "kind"), ["exec", "run", "run"]);
    let page = get(&d, "/api/v1/tasks?limit=2");
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap().to_string();
    assert_eq!(words(&get(&d, &format!("/api/v1/tasks?page={next}"))["items"], "kind"), ["exec", "run", "run"]);
    assert_eq!(http(d.port, "GET", "/api/v1/tasks?kind=dance", "", Some(TOKEN)).0, 400);
    assert_eq!(http(d.port, "GET", "/api/v1/tasks/nope", "", Some(TOKEN)).0, 404);
    assert_eq!(http(d.port, "GET", &format!("/api/v1/runs/{plan}"), "", Some(TOKEN)).0, 404, "a plan id is no run");
    assert!(get(&d, "/api/v1/traces")["items"].as_array().unwrap().is_empty());
}

#[test]
fn tasks_survive_a_daemon_restart_and_a_running_one_ends_daemon_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_config(dir, 0);
    let cli = Cli::new();
    let d = Daemon::start(&cli, dir, &[]);
    let done = start(&d, "/api/v1/exec", r#"{"target": "local", "command": "echo kept"}"#);
    let done = ended(&d, dir, &done);
    let slow = start(&d, "/api/v1/runs", r#"{"playbook": "slow"}"#);
    wait_until(Duration::from_secs(20), "the slow run to be running", || get(&d, &format!("/api/v1/tasks/{slow}"))["state"] == "running");
    d.kill9();

    let d = Daemon::start(&cli, dir, &[]);
    let t = get(&d, &format!("/api/v1/tasks/{slow}"));
    assert_eq!((t["state"].as_str(), t["error"].as_str()), (Some("failure"), Some("daemon stopped")), "{t}");
    assert!(t["finished_ms"].as_i64().is_some(), "{t}");
    assert_eq!(get(&d, &format!("/api/v1/tasks/{}", done["id"].as_str().unwrap())), done, "an ended task is kept as it was");
}

fn nodes(d: &Daemon) -> Vec<String> {
    words(&get(d, "/api/v1/nodes")["items"], "name")
}

/// A GET that may find the listener restarting (a new revision restarts the task set).
fn try_get(d: &Daemon, path: &str) -> Option<Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", d.port)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{}\r\nauthorization: Bearer {TOKEN}\r\nconnection: close\r\n\r\n", d.port).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    serde_json::from_str(out.split_once("\r\n\r\n")?.1).ok()
}

fn newest_held(d: &Daemon, not: &[&str]) -> String {
    let mut id = String::new();
    wait_until(Duration::from_secs(30), "a new held plan", || {
        let Some(plans) = try_get(d, "/api/v1/plans") else { return false };
        match plans["items"].as_array().unwrap().first() {
            Some(p) if p["state"] == "held" && !not.contains(&p["id"].as_str().unwrap_or("")) => {
                id = p["id"].as_str().unwrap().to_string();
                true
            }
            _ => false,
        }
    });
    id
}

#[test]
fn held_plans_are_applied_when_approved_through_the_api_or_scaler_approve() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_config(dir, 1);
    let cli = Cli::new();
    let d = Daemon::start(&cli, dir, &[]);
    // auto_apply is off: the start-up revision's plan is held
    let p1 = newest_held(&d, &[]);
    let p = get(&d, &format!("/api/v1/plans/{p1}"));
    assert_eq!(p["reason"], "`daemon.auto_apply` is off", "{p}");
    assert!(p["changes"].as_array().unwrap().iter().any(|c| c["address"] == "node.web/web-01"), "{p}");
    assert!(nodes(&d).is_empty());

    // A newer plan supersedes it: approving the old one is a conflict.
    let t = ended(&d, dir, &start(&d, "/api/v1/plans", ""));
    let p2 = t["result"]["plan"].as_str().unwrap().to_string();
    let old = get(&d, &format!("/api/v1/plans/{p1}"));
    assert_eq!((old["state"].as_str(), old["reason"].as_str()), (Some("superseded"), Some(format!("superseded by plan {p2}").as_str())), "{old}");
    let (s, v) = post(&d, &format!("/api/v1/plans/{p1}/approve"), "");
    assert_eq!(s, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("superseded"), "{v}");
    assert_eq!(words(&get(&d, "/api/v1/plans")["items"], "id")[..2], [p2.clone(), p1.clone()], "newest first");

    // Approved through the API: the daemon applies it; a real node runs.
    let t = ended(&d, dir, &start(&d, &format!("/api/v1/plans/{p2}/approve"), ""));
    assert_eq!((t["kind"].as_str(), t["state"].as_str()), (Some("apply"), Some("success")), "{t}");
    assert_eq!(get(&d, &format!("/api/v1/plans/{p2}"))["state"], "applied");
    assert_eq!(nodes(&d), ["web-01"]);
    let (s, v) = post(&d, &format!("/api/v1/plans/{p2}/approve"), "");
    assert_eq!(s, 409, "an applied plan is not approved again: {v}");

    // A new revision (one more playbook) is held; `scaler approve` applies it.
    // (A node change of a new revision is the reconciler's: a group with a
    // recorded desired count follows the config at once.)
    write_config_with(dir, 1, "---\nkind: Playbook\nname: extra1\non: local\nsteps:\n  - run: \"true\"\n");
    let p3 = newest_held(&d, &[&p1, &p2]);
    let serial = get(&d, "/api/v1/status")["state_serial"].as_u64();
    let out = cli.run(dir, &["approve"]);
    assert_eq!(out.status.code(), Some(1), "no terminal and no --yes: refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --yes"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli.command(dir, &["approve", "--yes", "--daemon", &format!("127.0.0.1:{}", d.port)]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("plan {p3}")) && stdout.contains("1 to add"), "{stdout}");
    let p = get(&d, &format!("/api/v1/plans/{p3}"));
    assert_eq!(p["state"], "applied", "{p}");
    assert!(get(&d, "/api/v1/status")["state_serial"].as_u64() > serial, "the apply committed");

    // A plan whose base state moved (a manual apply) is refused and planned again.
    write_config_with(dir, 1, "---\nkind: Playbook\nname: extra2\non: local\nsteps:\n  - run: \"true\"\n");
    let p4 = newest_held(&d, &[&p1, &p2, &p3]);
    let out = cli.run(dir, &["apply", "--auto-approve", "."]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = ended(&d, dir, &start(&d, &format!("/api/v1/plans/{p4}/apply"), ""));
    assert_eq!(t["state"], "failure", "{t}");
    assert!(t["error"].as_str().unwrap().contains(&format!("plan `{p4}` is stale and was not applied")), "{t}");
    let p = get(&d, &format!("/api/v1/plans/{p4}"));
    assert_eq!(p["state"], "failed", "{p}");
    assert_eq!(nodes(&d), ["web-01"]);
}
