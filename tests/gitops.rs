//! `scaler daemon` follows its config source (issue 11, first slice): a
//! watched directory reloads on an edit, a git branch is fetched and its new
//! commits are applied, an invalid revision changes nothing, and a fetch
//! that fails is retried while the daemon keeps running. Real processes,
//! real git repositories, the local provider.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::daemon::{status, trigger, Daemon, TOKEN};
use crate::harness::git::git_command;
use crate::harness::{Cli, GitDaemon, GitRepo};

pub(crate) fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
}

/// Polls `f` for up to 30 s; on a timeout, fails with the daemon's log.
pub(crate) fn wait_for(dir: &Path, what: &str, mut f: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(std::time::Instant::now() < end, "timed out waiting for {what}; the daemon's log:\n{}", log(dir));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the daemon's log holds `needle` `n` times.
pub(crate) fn wait_log(dir: &Path, needle: &str, n: usize) {
    wait_for(dir, &format!("the daemon log to show `{needle}` {n} time(s)"), || log(dir).matches(needle).count() >= n);
}

const NOTIFY: &str = "then:\n  - notify: { webhook: { url: \"http://127.0.0.1:9/hook\" } }\n";

fn edited(threshold: &str) -> String {
    format!("kind: Trigger\nname: edited\nwhen: last(queue) > {threshold}\nfor: 1h\n{NOTIFY}")
}

#[test]
fn a_directory_edit_reloads_its_trigger_and_an_invalid_edit_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("token.txt"), TOKEN).unwrap();
    std::fs::write(dir.join("scaler.yaml"), "kind: Project\nname: t\ndaemon:\n  token: { file: token.txt }\n").unwrap();
    std::fs::write(
        dir.join("triggers.yaml"),
        format!("kind: Counter\nname: queue\nsource: {{ push: {{}} }}\n---\nkind: Trigger\nname: deep\nwhen: last(queue) > 10\nfor: 1h\n{NOTIFY}"),
    )
    .unwrap();
    std::fs::write(dir.join("edited.yaml"), edited("100")).unwrap();
    let cli = Cli::new();
    let mut d = Daemon::start(&cli, dir, &[]);
    // The first revision is the tree the daemon started with.
    wait_log(dir, "has the objects that run; nothing restarts", 1);
    // auto_apply is off: the config's objects are planned, not applied.
    wait_log(dir, "plan held (4 to add, 0 to change, 0 to destroy)", 1);

    assert_eq!(d.push("queue", "50").0, 200);
    let mut pending_since = None;
    wait_for(dir, "`deep` pending and `edited` evaluated inactive", || {
        let s = status(&cli, dir);
        pending_since = trigger(&s, "deep")["pending_since_ms"].as_i64();
        let e = trigger(&s, "edited");
        trigger(&s, "deep")["state"] == "pending" && e["state"] == "inactive" && e["evaluated_ms"].as_i64().is_some()
    });

    // Lowering the threshold reloads the trigger, without a restart of the
    // process: 50 > 10 holds at once. The other trigger keeps its pending time.
    std::fs::write(dir.join("edited.yaml"), edited("10")).unwrap();
    wait_log(dir, "running revision ", 1);
    wait_for(dir, "`edited` to be pending under the new threshold", || {
        trigger(&status(&cli, dir), "edited")["state"] == "pending"
    });
    let s = status(&cli, dir);
    assert_eq!(trigger(&s, "deep")["pending_since_ms"].as_i64(), pending_since, "{s}");
    assert_eq!(trigger(&s, "deep")["state"], "pending");
    let running = log(dir);
    let running = running.split("running revision ").nth(1).unwrap()[..12].to_string();
    // `scaler status` says what runs, and that its plan is held.
    wait_for(dir, "status to show the running revision and its held plan", || {
        let src = &status(&cli, dir)["source"];
        src["running"]["revision"].as_str().is_some_and(|r| r.starts_with(&running))
            && src["last_settled"]["revision"] == src["running"]["revision"]
            && src["last_settled"]["detail"] == "plan held (4 to add, 0 to change, 0 to destroy)"
    });
    assert_eq!(status(&cli, dir)["source"]["source"], format!("directory {}", dir.display()));

    // An invalid edit is refused with its file:line:column; the old revision keeps running.
    std::fs::write(dir.join("edited.yaml"), format!("kind: Trigger\nname: edited\nwhen: last(queue) > 10\nfor: soon\n{NOTIFY}")).unwrap();
    let out = cli.run(dir, &["validate", "."]);
    assert_eq!(out.status.code(), Some(1));
    let validate = String::from_utf8_lossy(&out.stderr).to_string();
    let first = validate.lines().find(|l| l.starts_with("error: edited.yaml:4:")).unwrap_or_else(|| panic!("{validate}"));
    wait_log(dir, "is invalid and is not run", 1);
    let text = log(dir);
    assert!(text.contains(&format!("still running {running}:")), "{text}");
    assert!(text.contains(first), "the daemon's log names {first:?}:\n{text}");
    assert!(d.child.try_wait().unwrap().is_none(), "the daemon is still running");
    assert_eq!(d.push("queue", "60").0, 200, "the running revision still receives");
    assert_eq!(text.matches("running revision ").count(), 1, "nothing was restarted:\n{text}");

    // A good edit after it runs; so does a file written right after its
    // directory was made (which may give no event of its own).
    std::fs::write(dir.join("edited.yaml"), edited("20")).unwrap();
    wait_log(dir, "running revision ", 2);
    std::fs::create_dir(dir.join("more")).unwrap();
    std::fs::write(dir.join("more/third.yaml"), format!("kind: Trigger\nname: third\nwhen: last(queue) > 1\nfor: 1h\n{NOTIFY}")).unwrap();
    wait_log(dir, "triggers=3", 1);
    wait_for(dir, "`third` to be evaluated", || trigger(&status(&cli, dir), "third")["state"] == "pending");
    assert_eq!(trigger(&status(&cli, dir), "deep")["pending_since_ms"].as_i64(), pending_since);
}

/// A bootstrap directory whose daemon follows `url` (auto-applying).
fn bootstrap(dir: &Path, url: &str, poll: &str) {
    std::fs::write(dir.join("token.txt"), TOKEN).unwrap();
    std::fs::write(
        dir.join("scaler.yaml"),
        format!("kind: Project\nname: t\ndaemon:\n  token: {{ file: token.txt }}\n  auto_apply: true\n  source: {{ git: \"{url}\", poll: {poll} }}\n"),
    )
    .unwrap();
}

pub(crate) fn fleet(desired: &str) -> String {
    format!(
        "kind: NodeTemplate\nname: sleeper\nprovider: local\nlocal: {{ command: exec sleep 600, grace: 1s }}\n---\nkind: Group\nname: web\ntemplate: sleeper\nmin: 0\nmax: 2\ndesired: {desired}\n"
    )
}

pub(crate) fn running_nodes(cli: &Cli, dir: &Path) -> usize {
    let out = cli.run(dir, &["state", "list", "--json", "."]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["nodes"].as_array().map_or(0, |n| n.iter().filter(|n| n["status"] == "ready").count())
}

/// A repository with the Project and group `web` at `desired`, committed;
/// and the commit id.
pub(crate) fn remote_repo(desired: &str) -> (GitRepo, String) {
    let remote = GitRepo::new();
    remote.write("scaler.yaml", "kind: Project\nname: t\n");
    remote.write("fleet.yaml", &fleet(desired));
    let commit = remote.commit(&format!("desired {desired}"));
    (remote, commit)
}

/// Stops the daemon and retires the nodes it launched.
pub(crate) fn stop_and_destroy(mut d: Daemon, cli: &Cli, dir: &Path) {
    // SIGTERM, not the drop's SIGKILL: an apply in progress (the reconciler
    // may be in one) finishes and gives the state lock back.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while d.child.try_wait().unwrap().is_none() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(d);
    let out = cli.run(dir, &["destroy", "--auto-approve", "."]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(running_nodes(cli, dir), 0);
}

#[test]
fn a_commit_to_the_followed_branch_is_applied_and_an_invalid_one_is_not() {
    let (remote, c1) = remote_repo("0");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    bootstrap(dir, &format!("file://{}", remote.path().display()), "200ms");
    let cli = Cli::new();
    let d = Daemon::start(&cli, dir, &[]);
    wait_log(dir, &format!("running revision {}", &c1[..12]), 1);
    wait_log(dir, &format!("revision {} applied", &c1[..12]), 1);
    assert_eq!(running_nodes(&cli, dir), 0);

    // desired 0 -> 1: the daemon fetches, runs and applies it: a node is launched.
    remote.write("fleet.yaml", &fleet("1"));
    let c2 = remote.commit("one node");
    wait_for(dir, "the daemon to launch the node of the new commit", || running_nodes(&cli, dir) == 1);
    wait_log(dir, &format!("revision {} applied", &c2[..12]), 1);

    // An invalid commit is refused with its place; the node stays.
    remote.write("fleet.yaml", &fleet("lots"));
    let c3 = remote.commit("broken");
    wait_log(dir, &format!("revision {} is invalid and is not run; still running {}", &c3[..12], &c2[..12]), 1);
    assert!(log(dir).contains("error: fleet.yaml:11:1: expected integer"), "{}", log(dir));
    assert_eq!(running_nodes(&cli, dir), 1);
    let src = status(&cli, dir)["source"].clone();
    assert_eq!(src["running"]["revision"], c2.as_str(), "{src}");
    assert_eq!(src["last_failed"]["revision"], c3.as_str(), "{src}");
    assert_eq!(src["last_failed"]["detail"], "invalid: 1 config error", "{src}");
    assert!(src["last_failed"]["diagnostics"][0].as_str().is_some_and(|d| d.starts_with("fleet.yaml:11:1: expected integer")), "{src}");
    assert_eq!(src["last_settled"]["revision"], c2.as_str(), "{src}");
    assert!(src["last_settled"]["detail"].as_str().is_some_and(|d| d.starts_with("applied: 1 added")), "{src}");
    let human = String::from_utf8_lossy(&cli.run(dir, &["status", "."]).stdout).to_string();
    assert!(human.contains(&format!("  last refused: {} at ", &c3[..12])) && human.contains("    fleet.yaml:11:1: expected integer"), "{human}");

    // The next good commit is applied.
    remote.write("fleet.yaml", &fleet("2"));
    let c4 = remote.commit("two nodes");
    wait_for(dir, "the daemon to launch the second node", || running_nodes(&cli, dir) == 2);
    wait_log(dir, &format!("revision {} applied", &c4[..12]), 1);
    stop_and_destroy(d, &cli, dir);
}

#[test]
fn a_branch_served_by_git_daemon_is_fetched_over_git_protocol() {
    let (remote, commit) = remote_repo("1");
    let server = GitDaemon::serve(remote.path());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    bootstrap(dir, &server.url, "200ms");
    let cli = Cli::new();
    let d = Daemon::start(&cli, dir, &[]);
    wait_for(dir, "the daemon to launch the node of the served commit", || running_nodes(&cli, dir) == 1);
    wait_log(dir, &format!("revision {} applied", &commit[..12]), 1);
    stop_and_destroy(d, &cli, dir);
}

#[test]
fn a_fetch_that_fails_is_retried_and_the_daemon_keeps_running() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("daemon");
    std::fs::create_dir(&dir).unwrap();
    let remote = tmp.path().join("remote");
    bootstrap(&dir, &format!("file://{}", remote.display()), "100ms");
    let cli = Cli::new();
    let mut d = Daemon::start(&cli, &dir, &[]);
    wait_log(&dir, "config fetch failed; still running the start-up config", 2);
    let text = log(&dir);
    assert!(text.contains("attempt=1") && text.contains("attempt=2"), "{text}");
    assert!(text.contains("retry_in_ms=200"), "the wait doubles: {text}");
    assert!(d.child.try_wait().unwrap().is_none(), "{text}");
    assert_eq!(d.push("queue", "1").0, 404, "the receivers still answer (no counter `queue` here)");
    let s = status(&cli, &dir);
    assert!(s["triggers"].as_array().is_some_and(Vec::is_empty), "{s}");
    assert_eq!(s["source"]["running"], Value::Null, "the start-up config runs: {s}");
    assert!(s["source"]["source_error"]["detail"].as_str().is_some_and(|d| d.starts_with("cannot fetch `main` from `file://")), "{s}");

    // The remote appears: the next retry fetches it and the daemon runs it.
    let run = |args: &[&str]| {
        let out = git_command(tmp.path()).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["init", "--quiet", "remote"]);
    std::fs::write(remote.join("scaler.yaml"), "kind: Project\nname: t\n").unwrap();
    std::fs::write(remote.join("fleet.yaml"), fleet("0")).unwrap();
    let repo = remote.to_str().unwrap();
    run(&["-C", repo, "add", "--all"]);
    run(&["-C", repo, "commit", "--quiet", "-m", "first"]);
    wait_log(&dir, "running revision ", 1);
    drop(d);
}
