//! The `local` provider against real processes: launch, idempotence, describe,
//! terminate (TERM, then KILL), readiness, quoting, sessions and locks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use scaler::model::{Duration as ConfigDuration, LocalLaunch, NodeTemplate, ProviderKind, Ready};
use scaler::provider::{Health, LaunchRequest, LocalProvider, ObservedNode, Provider, ProviderError};
use tempfile::TempDir;

use crate::harness::{free_port, wait_until};

const PROJECT: &str = "demo";
const WAIT: Duration = Duration::from_secs(20);

/// A provider in a temp state dir. On drop, SIGKILLs every node still
/// running, so a failing test leaves no processes behind.
struct Fixture {
    state: TempDir,
    provider: LocalProvider,
}

impl Fixture {
    fn new() -> Fixture {
        let state = tempfile::tempdir().unwrap();
        let provider = LocalProvider::new(state.path().to_path_buf());
        Fixture { state, provider }
    }

    fn node_dir(&self, name: &str) -> PathBuf {
        self.provider.node_dir(PROJECT, name)
    }

    async fn node(&self, name: &str) -> ObservedNode {
        self.provider
            .describe(PROJECT)
            .await
            .unwrap()
            .into_iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("`{name}` not described"))
    }
}

impl Drop for Fixture {
    /// SIGKILLs every process in the session of each node this fixture
    /// started (nodes are session leaders), so a failing test leaves nothing
    /// behind, not even a process that moved to another process group.
    fn drop(&mut self) {
        let own = nix::unistd::getsid(None).ok();
        let sessions: Vec<Pid> = walk_nodes(self.state.path())
            .filter_map(|node| {
                let text = std::fs::read_to_string(node.join("node.json")).ok()?;
                let pid = serde_json::from_str::<serde_json::Value>(&text).ok()?["pid"].as_i64()?;
                Some(Pid::from_raw(i32::try_from(pid).ok()?))
            })
            .filter(|sid| Some(*sid) != own)
            .collect();
        if sessions.is_empty() {
            return;
        }
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            let pid = Pid::from_raw(pid);
            if nix::unistd::getsid(Some(pid)).is_ok_and(|sid| sessions.contains(&sid)) {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            }
        }
    }
}

/// Every node directory under a state dir.
fn walk_nodes(state: &Path) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(state.join("nodes"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|project| std::fs::read_dir(project.path()).into_iter().flatten().flatten())
        .map(|node| node.path())
}

fn template(command: &str) -> NodeTemplate {
    NodeTemplate {
        name: "t".into(),
        description: None,
        provider: ProviderKind::Local,
        local: Some(LocalLaunch {
            command: command.into(),
            port_base: Some(free_port()),
            env: BTreeMap::new(),
            ready: None,
            grace: None,
        }),
        ec2: None,
        ssh: None,
        provision: None,
        address: None,
        timeouts: None,
    }
}

fn with_ready(mut t: NodeTemplate, timeout: Option<&str>) -> NodeTemplate {
    let local = t.local.as_mut().unwrap();
    local.ready = Some(Ready { tcp: true, timeout: timeout.map(|s| ConfigDuration::parse(s).unwrap()) });
    t
}

fn with_grace(mut t: NodeTemplate, grace: &str) -> NodeTemplate {
    t.local.as_mut().unwrap().grace = Some(ConfigDuration::parse(grace).unwrap());
    t
}

fn request(name: &str, template: NodeTemplate) -> LaunchRequest {
    LaunchRequest {
        project: PROJECT.into(),
        group: "web".into(),
        name: name.into(),
        index: 0,
        token: format!("token-{name}"),
        template,
    }
}

fn pid_of(node: &ObservedNode) -> i32 {
    node.provider_id.as_deref().expect("a pid").parse().expect("a numeric pid")
}

/// Whether some process holds the lock, probed like an outsider would: a
/// fresh descriptor and `LOCK_EX|LOCK_NB` (closed, hence released, at once).
fn lock_held(path: &Path) -> bool {
    let Ok(file) = File::open(path) else { return false };
    #[allow(deprecated)]
    let r = nix::fcntl::flock(file.as_raw_fd(), nix::fcntl::FlockArg::LockExclusiveNonblock);
    match r {
        Ok(()) => false,
        Err(nix::errno::Errno::EWOULDBLOCK) => true,
        Err(e) => panic!("flock {}: {e}", path.display()),
    }
}

/// Alive and not a zombie (a node killed while the test process is its
/// parent stays a zombie until reaped).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn launch_starts_the_command_in_the_node_directory_with_its_context() {
    let f = Fixture::new();
    let t = template("echo \"{{ project }} {{ node.group }} {{ node.name }} {{ node.index }} {{ node.port }} $PWD\" > out; exec sleep 600");
    let port = t.local.as_ref().unwrap().port_base.unwrap();
    let node = f.provider.launch(&request("web-00", t)).await.unwrap();
    let dir = f.node_dir("web-00");
    let out = dir.join("out");
    wait_until(WAIT, "the node to write `out`", || read(&out).ends_with('\n'));
    assert_eq!(read(&out), format!("demo web web-00 0 {port} {}\n", dir.display()));

    assert_eq!(node.name, "web-00");
    assert_eq!(node.group, "web");
    assert_eq!(node.health, Health::Running);
    assert_eq!(node.address.as_deref(), Some(format!("127.0.0.1:{port}").as_str()));
    let pid = pid_of(&node);
    assert!(alive(pid));
    assert_eq!(node.attrs["pid"], serde_json::json!(pid));
    assert_eq!(node.attrs["port"], serde_json::json!(port));
    assert_eq!(node.attrs["dir"], serde_json::json!(dir.display().to_string()));
    assert_eq!(node.attrs["log"], serde_json::json!(dir.join("node.log").display().to_string()));

    let meta: serde_json::Value = serde_json::from_str(&read(&dir.join("node.json"))).unwrap();
    assert_eq!(meta["pid"], serde_json::json!(pid));
    assert_eq!(meta["token"], "token-web-00");
    assert_eq!(meta["group"], "web");
    assert!(meta["command"].as_str().unwrap().starts_with("echo \"demo web web-00 0"), "{meta}");

    f.provider.terminate(PROJECT, "web-00", None).await.unwrap();
    assert!(!alive(pid));
}

#[tokio::test]
async fn output_goes_to_the_log_and_the_log_is_kept_after_terminate() {
    let f = Fixture::new();
    let t = template("echo to-stdout; echo to-stderr >&2; exec sleep 600");
    f.provider.launch(&request("web-00", t)).await.unwrap();
    let log = f.node_dir("web-00").join("node.log");
    wait_until(WAIT, "both lines in the log", || read(&log).contains("to-stdout") && read(&log).contains("to-stderr"));

    f.provider.terminate(PROJECT, "web-00", None).await.unwrap();
    assert!(!f.node_dir("web-00").exists(), "the node directory is removed");
    let logs: Vec<PathBuf> = std::fs::read_dir(f.provider.logs_dir(PROJECT)).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let file_name = logs[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(file_name.starts_with("web-00.") && file_name.ends_with(".log"), "{file_name}");
    assert!(read(&logs[0]).contains("to-stderr"));
    assert!(f.provider.describe(PROJECT).await.unwrap().is_empty(), "`.logs` is not a node");
}

#[tokio::test]
async fn launching_a_running_slot_again_returns_it_and_starts_nothing() {
    let f = Fixture::new();
    // Readiness makes `launch` return only after the marker was appended.
    let t = with_ready(template("echo start >> starts; exec python3 -m http.server {{ node.port }} --bind 127.0.0.1"), None);
    let first = f.provider.launch(&request("web-00", t.clone())).await.unwrap();
    let second = f.provider.launch(&request("web-00", t)).await.unwrap();
    assert_eq!(pid_of(&first), pid_of(&second));
    assert_eq!(second.health, Health::Running);
    assert_eq!(read(&f.node_dir("web-00").join("starts")), "start\n", "started exactly once");
    f.provider.terminate(PROJECT, "web-00", None).await.unwrap();
}

#[tokio::test]
async fn a_stopped_slot_is_started_again() {
    let f = Fixture::new();
    let t = template("echo start >> starts; exec sleep 600");
    let first = f.provider.launch(&request("web-00", t.clone())).await.unwrap();
    let starts = f.node_dir("web-00").join("starts");
    wait_until(WAIT, "the first start", || read(&starts) == "start\n");
    nix::sys::signal::kill(Pid::from_raw(pid_of(&first)), Signal::SIGKILL).unwrap();
    wait_until(WAIT, "the node to be stopped", || !lock_held(&f.node_dir("web-00").join("lock")));

    let second = f.provider.launch(&request("web-00", t)).await.unwrap();
    assert_ne!(pid_of(&first), pid_of(&second));
    wait_until(WAIT, "the second start", || read(&starts) == "start\nstart\n");
    f.provider.terminate(PROJECT, "web-00", None).await.unwrap();
}

#[tokio::test]
async fn describe_reports_running_then_stopped_after_an_external_kill() {
    let f = Fixture::new();
    assert!(f.provider.describe(PROJECT).await.unwrap().is_empty(), "no project dir yet");
    let node = f.provider.launch(&request("web-00", template("exec sleep 600"))).await.unwrap();
    let pid = pid_of(&node);
    assert_eq!(f.node("web-00").await.health, Health::Running);

    nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = f.node("web-00").await;
        if seen.health == Health::Stopped {
            assert_eq!(seen.provider_id.as_deref(), Some(pid.to_string().as_str()));
            assert_eq!(seen.group, "web");
            break;
        }
        assert!(Instant::now() < deadline, "still running after kill -9");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Terminating a stopped node only cleans up.
    f.provider.terminate(PROJECT, "web-00", None).await.unwrap();
    assert!(f.provider.describe(PROJECT).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_node_is_running_while_any_of_its_processes_lives() {
    let f = Fixture::new();
    // The shell exits at once; its background child keeps the lock.
    let t = template("sleep 600 & echo $! > child.pid");
    let node = f.provider.launch(&request("web-00", t)).await.unwrap();
    let child_pid = f.node_dir("web-00").join("child.pid");
    wait_until(WAIT, "the child's pid", || read(&child_pid).ends_with('\n'));
    let child: i32 = read(&child_pid).trim().parse().unwrap();
    wait_until(WAIT, "the shell to exit", || !alive(pid_of(&node)));
    assert_eq!(f.node("web-00").await.health, Health::Running);

    f.provider.terminate(PROJECT, "web-00", None).await.unwrap();
    assert!(!alive(child), "terminate reached the background process");
}

#[tokio::test]
async fn terminate_sends_sigterm_to_the_process_group() {
    let f = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("got-term");
    let t = template(&format!(
        "trap 'echo term > {}; exit 0' TERM; touch trapped; while :; do sleep 0.1; done",
        marker.display()
    ));
    let node = f.provider.launch(&request("web-00", t.clone())).await.unwrap();
    let trapped = f.node_dir("web-00").join("trapped");
    wait_until(WAIT, "the trap to be installed", || trapped.exists());

    let started = Instant::now();
    f.provider.terminate(PROJECT, "web-00", Some(&t)).await.unwrap();
    assert_eq!(read(&marker), "term\n");
    assert!(started.elapsed() < Duration::from_secs(4), "no need to wait for the 5s grace: {:?}", started.elapsed());
    assert!(!alive(pid_of(&node)));
    assert!(!f.node_dir("web-00").exists());
}

#[tokio::test]
async fn terminate_escalates_to_sigkill_when_sigterm_is_ignored() {
    let f = Fixture::new();
    let t = with_grace(template("trap '' TERM; touch trapped; while :; do sleep 0.1; done"), "300ms");
    let node = f.provider.launch(&request("web-00", t.clone())).await.unwrap();
    let trapped = f.node_dir("web-00").join("trapped");
    wait_until(WAIT, "the trap to be installed", || trapped.exists());

    let started = Instant::now();
    f.provider.terminate(PROJECT, "web-00", Some(&t)).await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "SIGKILL only after the grace period: {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(!alive(pid_of(&node)));
    assert!(!f.node_dir("web-00").exists());
    assert!(f.provider.describe(PROJECT).await.unwrap().is_empty());
}

#[tokio::test]
async fn terminating_an_unknown_node_is_ok() {
    let f = Fixture::new();
    f.provider.terminate(PROJECT, "web-42", None).await.unwrap();
    f.provider.terminate("no-such-project", "web-42", Some(&template("true"))).await.unwrap();
}

#[tokio::test]
async fn readiness_waits_for_the_port() {
    let f = Fixture::new();
    let t = with_ready(template("exec python3 -m http.server {{ node.port }} --bind 127.0.0.1"), Some("30s"));
    let port = t.local.as_ref().unwrap().port_base.unwrap();
    let node = f.provider.launch(&request("web-00", t)).await.unwrap();
    assert_eq!(node.health, Health::Running);
    // Ready means it accepts connections now, without waiting.
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("the node accepts connections once launched");
    f.provider.terminate(PROJECT, "web-00", None).await.unwrap();
}

#[tokio::test]
async fn a_node_that_exits_before_it_is_ready_is_an_exited_error() {
    let f = Fixture::new();
    let t = with_ready(template("echo bye; exit 3"), Some("30s"));
    let started = Instant::now();
    let err = f.provider.launch(&request("web-00", t)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "noticed the exit early");
    match &err {
        ProviderError::Exited { node, status, log } => {
            assert_eq!(node, "web-00");
            assert!(status.contains('3'), "{status}");
            assert!(read(Path::new(log)).contains("bye"), "{log}");
        }
        other => panic!("expected Exited, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(f.node("web-00").await.health, Health::Stopped);
}

#[tokio::test]
async fn a_node_that_never_listens_is_killed_and_not_ready() {
    let f = Fixture::new();
    let t = with_ready(template("echo waiting; exec sleep 600"), Some("300ms"));
    let err = f.provider.launch(&request("web-00", t)).await.unwrap_err();
    match &err {
        ProviderError::NotReady { node, timeout, detail } => {
            assert_eq!(node, "web-00");
            assert_eq!(*timeout, Duration::from_millis(300));
            assert!(detail.contains("waiting"), "the last log line: {detail}");
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert_eq!(f.node("web-00").await.health, Health::Stopped, "killed on timeout");
}

#[tokio::test]
async fn a_template_without_a_local_block_is_a_config_error() {
    let f = Fixture::new();
    let mut t = template("true");
    t.local = None;
    t.provider = ProviderKind::Ec2;
    let err = f.provider.launch(&request("web-00", t)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("`local`"), "{err}");
}

#[tokio::test]
async fn names_that_are_not_directory_names_are_refused() {
    let f = Fixture::new();
    for name in ["../escape", ".hidden", ""] {
        let err = f.provider.launch(&request(name, template("true"))).await.unwrap_err();
        assert!(matches!(err, ProviderError::Config { .. }), "{name:?}: {err:?}");
    }
    assert!(!f.state.path().join("nodes/escape").exists());
}

#[tokio::test]
async fn rendered_values_cannot_inject_shell_commands() {
    let f = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    let via_group = outside.path().join("via-group");
    let via_env = outside.path().join("via-env");
    let mut t = template("echo {{ project }} {{ node.group }} > out; echo \"$EVIL\" >> out; echo $EVIL >> out; exec sleep 600");
    t.local.as_mut().unwrap().env.insert("EVIL".into(), format!("$(touch {}); touch {}", via_env.display(), via_env.display()));
    let mut req = request("web-00", t);
    req.project = "p; touch via-project".into();
    req.group = format!("g; touch {}", via_group.display());
    f.provider.launch(&req).await.unwrap();
    let dir = f.provider.node_dir(&req.project, "web-00");
    let out = dir.join("out");
    wait_until(WAIT, "the node to write `out`", || read(&out).lines().count() == 3);
    let text = read(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("p; touch via-project g; touch {}", via_group.display()));
    assert_eq!(lines[1], format!("$(touch {0}); touch {0}", via_env.display()));
    assert!(!via_group.exists() && !via_env.exists() && !dir.join("via-project").exists());
    f.provider.terminate(&req.project, "web-00", None).await.unwrap();
}

#[tokio::test]
async fn env_values_are_rendered_as_plain_text() {
    let f = Fixture::new();
    let mut t = template("echo \"$GREETING\" > out; exec sleep 600");
    t.local.as_mut().unwrap().env.insert("GREETING".into(), "hello {{ node.name }} of {{ project }}".into());
    let mut req = request("web-00", t);
    req.project = "my project".into();
    f.provider.launch(&req).await.unwrap();
    let out = f.provider.node_dir(&req.project, "web-00").join("out");
    wait_until(WAIT, "the node to write `out`", || read(&out).ends_with('\n'));
    assert_eq!(read(&out), "hello web-00 of my project\n", "no shell quotes inside the value");
    f.provider.terminate(&req.project, "web-00", None).await.unwrap();
}

#[tokio::test]
async fn a_template_error_is_a_render_error() {
    let f = Fixture::new();
    let err = f.provider.launch(&request("web-00", template("echo {{ node.nope }}"))).await.unwrap_err();
    assert!(matches!(&err, ProviderError::Render { what, .. } if what == "command"), "{err:?}");
    assert!(f.provider.describe(PROJECT).await.unwrap().is_empty(), "no trace of a node that never ran");
}

#[tokio::test]
async fn a_busy_port_is_an_error_and_nothing_starts() {
    let f = Fixture::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut t = with_ready(template("echo started > started; exec sleep 600"), Some("5s"));
    t.local.as_mut().unwrap().port_base = Some(listener.local_addr().unwrap().port());
    let err = f.provider.launch(&request("web-00", t)).await.unwrap_err();
    match &err {
        ProviderError::Io { source, .. } => assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse, "{err}"),
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(!f.node_dir("web-00").exists());
    assert!(f.provider.describe(PROJECT).await.unwrap().is_empty());
}

#[tokio::test]
async fn terminate_reaches_processes_that_left_the_process_group() {
    let f = Fixture::new();
    // A child in a process group of its own (same session) ignores the
    // group's signals; SIGKILL after the grace period still finds it.
    let t = with_grace(
        template("python3 -c 'import os,time; os.setpgid(0,0); open(\"moved\",\"w\").write(str(os.getpid())); time.sleep(600)' & wait"),
        "300ms",
    );
    f.provider.launch(&request("web-00", t.clone())).await.unwrap();
    let moved = f.node_dir("web-00").join("moved");
    wait_until(WAIT, "the child to move to its own group", || !read(&moved).is_empty());
    let child: i32 = read(&moved).parse().unwrap();
    assert_eq!(nix::unistd::getpgid(Some(Pid::from_raw(child))).unwrap().as_raw(), child);

    f.provider.terminate(PROJECT, "web-00", Some(&t)).await.unwrap();
    assert!(!alive(child));
    assert!(f.provider.describe(PROJECT).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_node_has_its_own_session_and_holds_its_lock() {
    let f = Fixture::new();
    let node = f.provider.launch(&request("web-00", template("exec sleep 600"))).await.unwrap();
    let pid = pid_of(&node);
    // Its own session (and process group): it does not die with scaler's
    // session or terminal, and scaler's Ctrl-C does not reach it.
    let sid = nix::unistd::getsid(Some(Pid::from_raw(pid))).unwrap();
    assert_eq!(sid.as_raw(), pid);
    assert_ne!(sid, nix::unistd::getsid(None).unwrap());
    // The lock is held by the node itself, not by this process: no
    // descriptor of this process refers to it any more.
    let lock = f.node_dir("web-00").join("lock");
    assert!(lock_held(&lock));
    let lock_ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&lock).unwrap());
    let ours = std::fs::read_dir("/proc/self/fd").unwrap().flatten().any(|fd| {
        std::fs::metadata(fd.path()).is_ok_and(|m| std::os::unix::fs::MetadataExt::ino(&m) == lock_ino)
    });
    assert!(!ours, "the launching process closed its copy of the lock");
    f.provider.terminate(PROJECT, "web-00", None).await.unwrap();
    assert!(!lock_held(&lock));
}

/// Kills (and reaps) a helper process when the test ends, passing or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_node_without_node_json_is_still_described_and_terminated() {
    // As after a crash between taking the lock and writing `node.json`: a
    // process in a session of its own holds the lock of `api-07`.
    let f = Fixture::new();
    let dir = f.node_dir("api-07");
    std::fs::create_dir_all(&dir).unwrap();
    let holder = KillOnDrop(
        std::process::Command::new("python3")
            .args(["-c", "import fcntl,os,time; os.setsid(); f=open('lock','a'); fcntl.flock(f, fcntl.LOCK_EX); open('locked','w').close(); time.sleep(600)"])
            .current_dir(&dir)
            .spawn()
            .unwrap(),
    );
    let pid = i32::try_from(holder.0.id()).unwrap();
    wait_until(WAIT, "the helper to take the lock", || dir.join("locked").exists());

    let seen = f.node("api-07").await;
    assert_eq!(seen.group, "api", "inferred from the name");
    assert_eq!(seen.health, Health::Running);
    assert_eq!(seen.provider_id, Some(pid.to_string()), "inferred from the lock's holder");
    assert_eq!(seen.address, None, "the port is unknown");

    f.provider.terminate(PROJECT, "api-07", None).await.unwrap();
    assert!(!alive(pid), "terminate found the process through the lock");
    assert!(!dir.exists());
    drop(holder);
}
