//! `scaler trace` with `stream` counters `via: ssh` against real OpenSSH
//! servers on loopback: the command runs on every host of the counter's
//! targets, each line it prints is stored (events and samples, per host) as
//! it arrives, and `trace stop` (or the worker's death) ends the remote
//! command, even one that prints nothing more.

use std::path::Path;
use std::time::Duration;

use scaler::store::{SampleStore, Selector, SqliteStore};

use crate::harness::{scaler, sshd, stderr, stdout, wait_until, Sshd};
use crate::trace::{alive, start, tasks};

/// A repo whose counter `remote` streams on every sshd of `sshds`: it
/// records its shell's and its `sleep`'s pids in `pids-PORT`, prints the
/// port, then 1, 2, 3, then waits silently for a long `sleep`.
fn repo(sshds: &[Sshd], known_hosts: &str) -> tempfile::TempDir {
    let dir = sshd::web_repo(sshds, known_hosts, "");
    std::fs::write(
        dir.path().join("counter.yaml"),
        format!(
            r#"kind: Counter
name: remote
source:
  stream:
    command: "p={dir}/pids-$(echo {{{{ host }}}} | cut -d: -f2); echo $$ > $p; echo {{{{ host }}}} | cut -d: -f2; for i in 1 2 3; do echo $i; done; sleep 600 & echo $! >> $p; wait"
    via: ssh
targets: [web]
"#,
            dir = dir.path().display(),
        ),
    )
    .unwrap();
    dir
}

/// The pids a host's command recorded (its shell, then its `sleep`).
fn pids(dir: &Path, sshd: &Sshd) -> Vec<i64> {
    std::fs::read_to_string(dir.join(format!("pids-{}", sshd.port()))).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// The task's stored lines, per host, in order.
fn lines_of(dir: &Path, id: &str, host: &str) -> Vec<String> {
    let st = SqliteStore::open(&dir.join(".scaler/state.db")).unwrap();
    st.events(&format!("trace:{id}"), i64::MIN, i64::MAX, 1_000_000).unwrap().into_iter().filter(|e| e.host == host).map(|e| e.text).collect()
}

/// Starts `remote` and waits until every host printed its four lines and
/// started its silent `sleep`.
fn start_remote(dir: &Path, sshds: &[Sshd]) -> String {
    let task = start(dir, "remote");
    let id = task["id"].as_str().unwrap().to_string();
    let hosts: Vec<String> = sshds.iter().map(|s| format!("127.0.0.1:{}", s.port())).collect();
    assert_eq!(task["host"], hosts.join(","), "{task}");
    for (sshd, host) in sshds.iter().zip(&hosts) {
        wait_until(Duration::from_secs(30), "the remote lines to be stored", || lines_of(dir, &id, host).len() >= 4 && pids(dir, sshd).len() == 2);
        assert_eq!(lines_of(dir, &id, host), [sshd.port().to_string(), "1".into(), "2".into(), "3".into()]);
    }
    id
}

#[test]
fn a_via_ssh_stream_runs_on_every_host_and_stop_ends_the_remote_commands() {
    let (sshds, known) = sshd::fleet(2);
    let dir = repo(&sshds, &known);
    let id = start_remote(dir.path(), &sshds);
    // a sample per line, one series per host
    let st = SqliteStore::open(&dir.path().join(".scaler/state.db")).unwrap();
    let raw = st.raw(&Selector::counter("remote"), i64::MIN, i64::MAX).unwrap();
    assert_eq!(raw.len(), 2);
    for (series, points) in &raw {
        let port: f64 = series.host.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(points.iter().map(|p| p.1).collect::<Vec<_>>(), [port, 1.0, 2.0, 3.0], "{series:?}");
    }
    let t = &tasks(dir.path())[0];
    assert_eq!(t["status"], "running");
    assert_eq!(t["lines"], 8);
    let worker = t["worker_pid"].as_i64().unwrap();
    // stop: every remote command (its shell and the silent sleep) ends, and so does the worker
    let out = scaler(dir.path(), &["trace", "stop", &id, "."]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), format!("Stopped trace {id}."));
    for sshd in &sshds {
        let remote = pids(dir.path(), sshd);
        wait_until(Duration::from_secs(15), "the remote command to end", || remote.iter().all(|p| !alive(*p)));
    }
    wait_until(Duration::from_secs(15), "the worker to exit", || !alive(worker));
    assert_eq!(tasks(dir.path())[0]["status"], "stopped");
}

#[test]
fn a_via_ssh_streams_remote_command_dies_with_its_worker() {
    let (sshds, known) = sshd::fleet(1);
    let dir = repo(&sshds, &known);
    start_remote(dir.path(), &sshds);
    let worker = tasks(dir.path())[0]["worker_pid"].as_i64().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(worker as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let remote = pids(dir.path(), &sshds[0]);
    wait_until(Duration::from_secs(15), "the remote command to die with its worker", || remote.iter().all(|p| !alive(*p)));
    assert_eq!(tasks(dir.path())[0]["status"], "dead");
}
