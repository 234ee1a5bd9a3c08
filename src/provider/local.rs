//! The `local` provider: nodes are processes on this machine, each with its
//! own directory, log, port and slot lock.
//!
//! A node of project `p` named `web-01` lives in `<state_dir>/nodes/p/web-01/`
//! (`node.log`, `node.json`, `lock`). Its command runs as `/bin/sh -c` in a
//! session of its own and inherits an exclusive `flock` on `lock`: the node is
//! running exactly while that lock is held, which survives scaler crashing at
//! any instant and cannot be fooled by PID reuse.
//!
//! Must not depend on: the store.

mod lock;
mod meta;
mod process;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use serde_json::json;

use super::{Health, LaunchRequest, ObservedNode, Provider, ProviderError};
use crate::model::{LocalLaunch, NodeTemplate};
use meta::NodeMeta;

/// `node.port` is `port_base + index` unless the template says otherwise.
pub const DEFAULT_PORT_BASE: u16 = 18000;
/// How long a readiness check waits by default.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Time between SIGTERM and SIGKILL by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// How long to wait for the lock to be released after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Polling interval of readiness and termination.
const POLL: Duration = Duration::from_millis(50);
/// How long a launch retries a lock that is briefly held by a probe.
const PROBE_RETRY: Duration = Duration::from_millis(200);

/// Runs nodes as local processes under a state directory.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    state_dir: PathBuf,
}

impl LocalProvider {
    /// A provider keeping its nodes under `<state_dir>/nodes/`.
    pub fn new(state_dir: PathBuf) -> LocalProvider {
        LocalProvider { state_dir }
    }

    /// The directory of a project's nodes.
    pub fn project_dir(&self, project: &str) -> PathBuf {
        self.state_dir.join("nodes").join(project)
    }

    /// The directory of one node (`<state_dir>/nodes/<project>/<name>`).
    pub fn node_dir(&self, project: &str, name: &str) -> PathBuf {
        self.project_dir(project).join(name)
    }

    /// Where the logs of terminated nodes go.
    pub fn logs_dir(&self, project: &str) -> PathBuf {
        self.project_dir(project).join(meta::LOGS)
    }

    /// What `describe` reports for one node directory.
    fn observe(&self, project: &str, name: &str) -> Result<ObservedNode, ProviderError> {
        let dir = self.node_dir(project, name);
        let running = lock::is_held(&dir.join(meta::LOCK)).map_err(|e| io_err(name, "probe the node's lock", e))?;
        let meta = meta::read(&dir).map_err(|e| io_err(name, "read `node.json`", e))?;
        let pid = match meta.as_ref().and_then(|m| m.pid) {
            Some(pid) => Some(pid),
            // Crashed right after spawning: the session of the processes
            // holding the lock.
            None if running => infer_session(&dir.join(meta::LOCK)),
            None => None,
        };
        let mut attrs = BTreeMap::new();
        if let Some(pid) = pid {
            attrs.insert("pid".to_string(), json!(pid));
        }
        if let Some(m) = &meta {
            attrs.insert("port".to_string(), json!(m.port));
            attrs.insert("index".to_string(), json!(m.index));
            attrs.insert("token".to_string(), json!(m.token));
            attrs.insert("started_at".to_string(), json!(m.started_at));
        }
        attrs.insert("dir".to_string(), json!(dir.display().to_string()));
        attrs.insert("log".to_string(), json!(dir.join(meta::LOG).display().to_string()));
        Ok(ObservedNode {
            name: name.to_string(),
            group: meta.as_ref().map_or_else(|| meta::group_from_name(name), |m| m.group.clone()),
            provider_id: pid.map(|p| p.to_string()),
            health: if running { Health::Running } else { Health::Stopped },
            address: meta.as_ref().map(|m| format!("127.0.0.1:{}", m.port)),
            attrs,
        })
    }
}

fn io_err(node: &str, what: &str, source: io::Error) -> ProviderError {
    ProviderError::Io { node: node.to_string(), what: what.to_string(), source }
}

fn check_component(node: &str, what: &str, value: &str) -> Result<(), ProviderError> {
    if meta::is_path_component(value) {
        return Ok(());
    }
    Err(ProviderError::Config {
        node: node.to_string(),
        detail: format!("{what} `{value}` cannot be used as a directory name"),
    })
}

/// The session of a node whose `node.json` lacks the pid (a crash right
/// after spawning): the session of a process holding its lock. `setsid` made
/// the node's first process the leader of a new session, so the session id is
/// that pid, even after the leader itself has exited.
fn infer_session(lock: &Path) -> Option<u32> {
    let own = process::session_of(0);
    lock::holders(lock)
        .into_iter()
        .filter_map(process::session_of)
        .find(|&sid| Some(sid) != own)
        .and_then(|sid| u32::try_from(sid).ok())
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Polls `done` every [`POLL`] until it is true or `timeout` passes.
async fn poll_until(timeout: Duration, mut done: impl FnMut() -> io::Result<bool>) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if done()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// The launch settings of a template, or a `Config` error.
fn local_of<'t>(node: &str, template: &'t NodeTemplate) -> Result<&'t LocalLaunch, ProviderError> {
    template.local.as_ref().ok_or_else(|| ProviderError::Config {
        node: node.to_string(),
        detail: format!("template `{}` has no `local` block, which the local provider needs", template.name),
    })
}

/// A node's command and environment, rendered.
struct Rendered {
    port: u16,
    command: String,
    env: BTreeMap<String, String>,
}

fn render(req: &LaunchRequest, local: &LocalLaunch, dir: &Path) -> Result<Rendered, ProviderError> {
    let node = &req.name;
    let base = local.port_base.unwrap_or(DEFAULT_PORT_BASE);
    let port = u16::try_from(u32::from(base) + req.index).map_err(|_| ProviderError::Config {
        node: node.clone(),
        detail: format!("port {base} + {} is above 65535; lower `local.port_base`", req.index),
    })?;
    let ctx = json!({
        "project": req.project,
        "node": {
            "name": req.name,
            "group": req.group,
            "index": req.index,
            "port": port,
            "dir": dir.display().to_string(),
        },
    });
    let command = crate::template::render_command(&local.command, &ctx).map_err(|detail| ProviderError::Render {
        node: node.clone(),
        what: "command".into(),
        detail,
    })?;
    // Environment values reach the process through execve, not a shell, so
    // they are rendered without shell quoting (quotes would end up in the
    // value); nothing in them is ever interpreted.
    let mut env = BTreeMap::new();
    for (key, value) in &local.env {
        let rendered = crate::template::render_text(value, &ctx).map_err(|detail| ProviderError::Render {
            node: node.clone(),
            what: format!("env `{key}`"),
            detail,
        })?;
        env.insert(key.clone(), rendered);
    }
    Ok(Rendered { port, command, env })
}

#[async_trait::async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn describe(&self, project: &str) -> Result<Vec<ObservedNode>, ProviderError> {
        let dir = self.project_dir(project);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(project, "list local nodes", e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_err(project, "list local nodes", e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if meta::is_path_component(&name) && entry.file_type().is_ok_and(|t| t.is_dir()) {
                names.push(name);
            }
        }
        names.sort();
        names.iter().map(|name| self.observe(project, name)).collect()
    }

    async fn launch(&self, req: &LaunchRequest) -> Result<ObservedNode, ProviderError> {
        let name = req.name.as_str();
        let local = local_of(name, &req.template)?;
        check_component(name, "project", &req.project)?;
        check_component(name, "node name", name)?;
        let dir = self.node_dir(&req.project, name);
        let rendered = render(req, local, &dir)?;

        let fresh = !dir.exists();
        std::fs::create_dir_all(&dir).map_err(|e| io_err(name, "create the node directory", e))?;
        let lock_file = lock::open_for_launch(&dir.join(meta::LOCK)).map_err(|e| io_err(name, "open the node's lock", e))?;
        // A concurrent `describe` probe may hold the lock for an instant, so
        // only a lock that stays held means the node runs.
        let taken = poll_until(PROBE_RETRY, || lock::try_lock_exclusive(&lock_file))
            .await
            .map_err(|e| io_err(name, "lock the node", e))?;
        if !taken {
            tracing::debug!(node = name, "local node already running");
            return self.observe(&req.project, name);
        }

        let ready = local.ready.as_ref().filter(|r| r.tcp).map(|r| ReadyCheck {
            port: rendered.port,
            timeout: r.timeout.as_ref().map_or(DEFAULT_READY_TIMEOUT, |t| t.get()),
        });
        let started = start(req, &rendered, &dir, lock_file, ready.is_some()).await;
        let (mut child, pid) = match started {
            Ok(s) => s,
            Err(e) => {
                // Nothing runs: leave no trace of a slot that never ran. A
                // process forked elsewhere in scaler at this instant holds a
                // copy of the lock until it execs, so a held lock is probed
                // again for a moment before the directory is kept.
                let lock_path = dir.join(meta::LOCK);
                if fresh && poll_until(PROBE_RETRY, || lock::is_held(&lock_path).map(|held| !held)).await.unwrap_or(false) {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                return Err(e);
            }
        };
        if let Some(check) = ready {
            self.wait_ready(name, &mut child, pid, &dir, check).await?;
        }
        self.observe(&req.project, name)
    }

    async fn terminate(&self, project: &str, name: &str, template: Option<&NodeTemplate>) -> Result<(), ProviderError> {
        check_component(name, "project", project)?;
        check_component(name, "node name", name)?;
        let dir = self.node_dir(project, name);
        if !dir.exists() {
            return Ok(());
        }
        let grace = template
            .and_then(|t| t.local.as_ref())
            .and_then(|l| l.grace.as_ref())
            .map_or(DEFAULT_GRACE, |g| g.get());
        let lock_path = dir.join(meta::LOCK);
        if lock::is_held(&lock_path).map_err(|e| io_err(name, "probe the node's lock", e))? {
            self.stop(name, &dir, grace).await?;
        }
        self.clean_up(project, name, &dir).await
    }
}

/// SIGKILLs the node's process group and every process of its session that
/// holds its lock (one that moved to another group). A process that left the
/// session (its own `setsid`) is not the node's to kill: its lock then stays
/// held and terminate reports it.
fn kill_session(name: &str, sid: Option<i32>, lock_path: &Path) -> Result<(), ProviderError> {
    let Some(sid) = sid else {
        return Ok(());
    };
    process::signal_group(sid, Signal::SIGKILL).map_err(|e| io_err(name, "send SIGKILL", e))?;
    for pid in lock::holders(lock_path) {
        if process::session_of(pid) == Some(sid) {
            process::signal_process(pid, Signal::SIGKILL).map_err(|e| io_err(name, "send SIGKILL", e))?;
        }
    }
    Ok(())
}

/// Starts a node whose lock `lock_file` holds: records `node.json`, spawns,
/// closes this process's copy of the lock, records the pid. Returns the child
/// and its pid (which is also its session and process group id).
async fn start(
    req: &LaunchRequest,
    r: &Rendered,
    dir: &Path,
    lock_file: std::fs::File,
    port_must_be_free: bool,
) -> Result<(tokio::process::Child, u32), ProviderError> {
    let name = req.name.as_str();
    if port_must_be_free && port_accepts(r.port).await {
        return Err(io_err(
            name,
            &format!("check port {}", r.port),
            io::Error::new(io::ErrorKind::AddrInUse, "something already listens there"),
        ));
    }
    let mut record = NodeMeta {
        name: name.to_string(),
        group: req.group.clone(),
        index: req.index,
        port: r.port,
        token: req.token.clone(),
        pid: None,
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        command: r.command.clone(),
    };
    meta::write(dir, &record).map_err(|e| io_err(name, "write `node.json`", e))?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(meta::LOG))
        .map_err(|e| io_err(name, "open the node's log", e))?;
    let line = format!("# scaler: starting node `{name}` at {}\n", record.started_at);
    io::Write::write_all(&mut log, line.as_bytes()).map_err(|e| io_err(name, "write the node's log", e))?;

    let spawned = process::spawn(process::Spawn { command: &r.command, env: &r.env, dir, log, lock: &lock_file });
    // The node holds the lock now (or nothing does, if spawning failed):
    // close this process's copy without unlocking.
    drop(lock_file);
    let child = spawned.map_err(|e| io_err(name, "start `/bin/sh`", e))?;
    let pid = child.id().ok_or_else(|| {
        io_err(name, "start `/bin/sh`", io::Error::other("the child has no pid (already reaped)"))
    })?;
    record.pid = Some(pid);
    tracing::info!(node = name, pid, port = r.port, "local node started");
    meta::write(dir, &record).map_err(|e| io_err(name, "write `node.json`", e))?;
    Ok((child, pid))
}

/// A readiness check: the port, how long to wait.
#[derive(Debug, Clone, Copy)]
struct ReadyCheck {
    port: u16,
    timeout: Duration,
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
async fn port_accepts(port: u16) -> bool {
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
    matches!(tokio::time::timeout(Duration::from_secs(1), connect).await, Ok(Ok(_)))
}

impl LocalProvider {
    /// SIGTERM to the node's process group, SIGKILL to all of it after
    /// `grace`; returns once its lock is released.
    async fn stop(&self, name: &str, dir: &Path, grace: Duration) -> Result<(), ProviderError> {
        let lock_path = dir.join(meta::LOCK);
        // `setsid` made the node's first process the leader of a new
        // session and process group, both with its pid.
        let sid = meta::read(dir)
            .ok()
            .flatten()
            .and_then(|m| m.pid)
            .or_else(|| infer_session(&lock_path))
            .and_then(|p| i32::try_from(p).ok());
        tracing::info!(node = name, ?sid, "stopping local node");
        if let Some(sid) = sid {
            process::signal_group(sid, Signal::SIGTERM).map_err(|e| io_err(name, "send SIGTERM", e))?;
        }
        if self.wait_released(name, &lock_path, grace).await? {
            return Ok(());
        }
        tracing::info!(node = name, ?grace, "local node outlived its grace period; sending SIGKILL");
        // Twice: a process may fork between the `/proc` scan and the kill.
        for _ in 0..2 {
            kill_session(name, sid, &lock_path)?;
            if self.wait_released(name, &lock_path, KILL_WAIT).await? {
                return Ok(());
            }
        }
        Err(io_err(
            name,
            "stop the node",
            io::Error::new(io::ErrorKind::TimedOut, "its lock is still held after SIGKILL"),
        ))
    }

    async fn wait_released(&self, name: &str, lock_path: &Path, timeout: Duration) -> Result<bool, ProviderError> {
        poll_until(timeout, || lock::is_held(lock_path).map(|h| !h))
            .await
            .map_err(|e| io_err(name, "probe the node's lock", e))
    }

    /// Waits until the node accepts TCP connections on its port. If its
    /// processes all exit first: `Exited`; on timeout the node is killed:
    /// `NotReady`.
    async fn wait_ready(
        &self,
        name: &str,
        child: &mut tokio::process::Child,
        pid: u32,
        dir: &Path,
        check: ReadyCheck,
    ) -> Result<(), ProviderError> {
        let ReadyCheck { port, timeout } = check;
        let lock_path = dir.join(meta::LOCK);
        let log_path = dir.join(meta::LOG);
        let deadline = Instant::now() + timeout;
        let mut status = None;
        loop {
            if port_accepts(port).await {
                tracing::info!(node = name, port, "local node ready");
                return Ok(());
            }
            if status.is_none() {
                status = child.try_wait().map_err(|e| io_err(name, "wait for the node", e))?;
            }
            // The shell may have exited leaving background processes that
            // still hold the lock: only all of them gone means exited.
            if let Some(st) = status {
                if !lock::is_held(&lock_path).map_err(|e| io_err(name, "probe the node's lock", e))? {
                    return Err(ProviderError::Exited {
                        node: name.to_string(),
                        status: st.to_string(),
                        log: log_path.display().to_string(),
                    });
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
        kill_session(name, i32::try_from(pid).ok(), &lock_path)?;
        let _ = self.wait_released(name, &lock_path, KILL_WAIT).await?;
        let _ = tokio::time::timeout(KILL_WAIT, child.wait()).await;
        let last = meta::last_log_line(&log_path).unwrap_or_else(|| "(empty log)".into());
        Err(ProviderError::NotReady {
            node: name.to_string(),
            timeout,
            detail: format!("nothing accepted connections on 127.0.0.1:{port}; killed it; last log line: {last}"),
        })
    }

    /// Archives the log and removes the directory of a node that is not
    /// running, holding its lock meanwhile so that no launch races with it.
    async fn clean_up(&self, project: &str, name: &str, dir: &Path) -> Result<(), ProviderError> {
        let lock_path = dir.join(meta::LOCK);
        let guard = if lock_path.exists() {
            let file = lock::open_for_launch(&lock_path).map_err(|e| io_err(name, "open the node's lock", e))?;
            let taken = poll_until(PROBE_RETRY, || lock::try_lock_exclusive(&file))
                .await
                .map_err(|e| io_err(name, "lock the node", e))?;
            if !taken {
                return Err(io_err(
                    name,
                    "clean up the node",
                    io::Error::new(io::ErrorKind::WouldBlock, "it was started again meanwhile"),
                ));
            }
            Some(file)
        } else {
            None
        };
        let archived = meta::archive_log(&self.project_dir(project), dir, name, unix_now())
            .map_err(|e| io_err(name, "archive the node's log", e))?;
        std::fs::remove_dir_all(dir).map_err(|e| io_err(name, "remove the node directory", e))?;
        drop(guard);
        tracing::info!(node = name, log = ?archived, "local node removed");
        Ok(())
    }
}
