//! `scaler trace start|stop|list`: stream counters run by a detached
//! worker; every line is committed as soon as it is read, so `kill -9` of
//! the worker keeps every line read so far.

use std::time::Duration;

use scaler::store::{SampleStore, Selector, SqliteStore};
use serde_json::Value;

use crate::harness::{scaler, stderr, stdout, wait_until};

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("scaler.yaml"),
        r#"kind: Project
name: t
---
kind: Counter
name: ticks
source: { stream: { command: "i=0; while :; do echo $i; i=$((i+1)); sleep 0.02; done", via: local } }
---
kind: Counter
name: three
source: { stream: { command: "printf '1\nx\n3\n'", via: local } }
---
kind: Counter
name: remote
source: { stream: { command: "vmstat 1" } }
targets: [t]
---
kind: Target
name: t
hosts: [h1]
"#,
    )
    .unwrap();
    dir
}

pub(crate) fn tasks(dir: &std::path::Path) -> Vec<Value> {
    let out = scaler(dir, &["trace", "list", "--json", "."]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

pub(crate) fn start(dir: &std::path::Path, counter: &str) -> Value {
    let out = scaler(dir, &["trace", "start", "--json", counter, "."]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn events(dir: &std::path::Path, id: &str) -> Vec<String> {
    let st = SqliteStore::open(&dir.join(".scaler/state.db")).unwrap();
    st.events(&format!("trace:{id}"), i64::MIN, i64::MAX, 1_000_000).unwrap().into_iter().map(|e| e.text).collect()
}

#[test]
fn kill_9_of_the_worker_keeps_every_line_read_so_far() {
    let dir = repo();
    let task = start(dir.path(), "ticks");
    let id = task["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    wait_until(Duration::from_secs(20), "20 lines stored", || events(dir.path(), &id).len() >= 20);
    let listed = tasks(dir.path());
    assert_eq!(listed[0]["status"], "running");
    let worker = listed[0]["worker_pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(worker), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_until(Duration::from_secs(10), "the worker to be reported dead", || tasks(dir.path())[0]["status"] == "dead");
    // every line read is there, in order, without gaps
    let lines = events(dir.path(), &id);
    assert!(lines.len() >= 20);
    let expected: Vec<String> = (0..lines.len()).map(|i| i.to_string()).collect();
    assert_eq!(lines, expected);
    // ... and so is a sample per line
    let st = SqliteStore::open(&dir.path().join(".scaler/state.db")).unwrap();
    let raw = st.raw(&Selector::counter("ticks"), i64::MIN, i64::MAX).unwrap();
    assert_eq!(raw[0].1.len(), lines.len());
    // stop by an 8-character prefix
    let out = scaler(dir.path(), &["trace", "stop", &id[..8], "."]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), format!("Stopped trace {id}."));
    assert_eq!(tasks(dir.path())[0]["status"], "stopped");
}

pub(crate) fn alive(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn a_tracers_command_dies_with_its_worker() {
    let dir = repo();
    let id = start(dir.path(), "ticks")["id"].as_str().unwrap().to_string();
    wait_until(Duration::from_secs(20), "the command to start", || tasks(dir.path())[0]["pid"].as_i64().is_some() && !events(dir.path(), &id).is_empty());
    let t = &tasks(dir.path())[0];
    let (worker, command) = (t["worker_pid"].as_i64().unwrap(), t["pid"].as_i64().unwrap());
    assert!(alive(command));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(worker as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_until(Duration::from_secs(10), "the command to die with its worker", || !alive(command));
}

#[test]
fn a_running_tracer_is_not_started_twice_and_stop_last_stops_the_newest() {
    let dir = repo();
    let first = start(dir.path(), "ticks")["id"].as_str().unwrap().to_string();
    // Again, alone and with another counter named twice: skipped and said.
    let out = scaler(dir.path(), &["trace", "start", "ticks", "."]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("Trace of `ticks` is already running (task {first}); skipped.")), "{}", stdout(&out));
    let out = scaler(dir.path(), &["trace", "start", "--json", "ticks", "three", "three", "."]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 2, "{v}");
    assert_eq!((items[0]["skipped"].clone(), items[0]["running"].clone()), (Value::Bool(true), Value::from(first.clone())));
    assert_eq!(items[1]["counter"], "three");
    let newest = items[1]["id"].as_str().unwrap().to_string();
    assert_eq!(tasks(dir.path()).len(), 2, "one task per counter");
    // --last stops the newest; with an id it is a usage error.
    let out = scaler(dir.path(), &["trace", "stop", "--last", &first, "."]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = scaler(dir.path(), &["trace", "stop", "--json", "--last", "."]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stopped: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(stopped["id"], newest.as_str());
    let out = scaler(dir.path(), &["trace", "stop", &first, "."]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_stream_that_ends_is_exited_with_its_lines_and_failures() {
    let dir = repo();
    let id = start(dir.path(), "three")["id"].as_str().unwrap().to_string();
    wait_until(Duration::from_secs(20), "the task to end", || tasks(dir.path())[0]["status"] == "exited");
    let t = &tasks(dir.path())[0];
    assert_eq!(t["lines"], 3);
    assert!(t["detail"].as_str().unwrap().ends_with("after 3 lines"), "{t}");
    assert_eq!(events(dir.path(), &id), ["1", "x", "3"]);
    let st = SqliteStore::open(&dir.path().join(".scaler/state.db")).unwrap();
    let latest = st.failures(&Selector::counter("three"), i64::MIN, i64::MAX).unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].2, "not a number: `x`");
    assert_eq!(st.raw(&Selector::counter("three"), i64::MIN, i64::MAX).unwrap()[0].1.iter().map(|p| p.1).collect::<Vec<_>>(), [1.0, 3.0]);
    let out = scaler(dir.path(), &["trace", "stop", &id, "."]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("had already ended (exited)"), "{}", stdout(&out));
}

#[test]
fn task_lookup_errors_are_clear() {
    let dir = repo();
    let out = scaler(dir.path(), &["trace", "stop", "abc", "."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("`abc` is too short: give at least 8 characters of the trace task id"), "{}", stderr(&out));
    let out = scaler(dir.path(), &["trace", "stop", "00000000", "."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no trace task `00000000`; see `scaler trace list`"), "{}", stderr(&out));
    let out = scaler(dir.path(), &["trace", "list", "."]);
    assert!(stdout(&out).contains("(no trace tasks)"));
    // `via: ssh` (the default) on a host that cannot be reached: the task fails, naming the host
    let id = start(dir.path(), "remote")["id"].as_str().unwrap().to_string();
    wait_until(Duration::from_secs(20), "the task to fail", || tasks(dir.path())[0]["status"] == "failed");
    let t = &tasks(dir.path())[0];
    assert_eq!((t["id"].as_str(), t["host"].as_str()), (Some(id.as_str()), Some("h1")));
    assert!(t["detail"].as_str().unwrap().starts_with("`h1`: cannot connect to `h1`: "), "{t}");
}
