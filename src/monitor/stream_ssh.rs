//! `stream` counters `via: ssh`: the command runs on every host of the
//! counter's targets at once, over SSH (one [`SshTransport`] per host), and
//! each stdout line becomes a raw event plus its samples ([`LineParser`]),
//! as a local stream's lines do.
//!
//! [`follow_ssh`] hands every line to the caller's `commit` on the calling
//! thread, and reads a host's next line only once `commit` has returned for
//! the one before, so a line that was read has been committed (a `kill -9`
//! keeps every line read so far). Stopping sends EOF to every command, which
//! [`crate::exec::OutputStream`]'s wrapper turns into SIGTERM for the
//! command's process group; the same happens when the connection drops or
//! the reading process dies. A remote command's stderr lines are logged.
//!
//! Must not depend on: the store (the caller commits), the CLI.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{oneshot, watch};

use super::stream::{Line, LineParser};
use super::CounterSpec;
use crate::clock::Clock;
use crate::exec::{CommandRequest, SshOverrides, SshParams, SshTransport, StreamEvent, Transport};
use crate::fleet::Fleet;
use crate::model::{Counter, Source};

/// How long a stopped command may take to end (and print its last lines).
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// One host of a `via: ssh` stream.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteHost {
    /// The host's name (its series' and events' `host`).
    pub name: String,
    /// How to reach it.
    pub ssh: SshParams,
    /// The command, rendered for this host.
    pub command: String,
}

/// The hosts of a `via: ssh` stream counter: every host of its targets (in
/// order, each once), each with the command rendered for it (`{{ host }}`).
pub fn remote_hosts(fleet: &Fleet<'_>, counter: &Counter) -> Result<Vec<RemoteHost>, String> {
    let Source::Stream(src) = &counter.source else {
        return Err(format!("counter `{}` is not a `stream` counter", counter.name));
    };
    if counter.targets.is_empty() {
        return Err(format!("counter `{}` has no `targets`: a `via: ssh` stream runs on its targets' hosts", counter.name));
    }
    let mut hosts: Vec<RemoteHost> = Vec::new();
    for target in &counter.targets {
        for h in crate::exec::resolve(fleet, target, &SshOverrides::default())? {
            let Some(ssh) = h.ssh else {
                return Err(format!("counter `{}`: host `{}` is the scaler host; use `via: local`", counter.name, h.name));
            };
            if hosts.iter().any(|x| x.name == h.name) {
                continue;
            }
            let command = crate::template::render_command(&src.command, &json!({ "host": h.name }))
                .map_err(|e| format!("command of `{}` for `{}`: {e}", counter.name, h.name))?;
            hosts.push(RemoteHost { name: h.name, ssh, command });
        }
    }
    Ok(hosts)
}

/// How the stream ended on one host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostEnd {
    /// The host.
    pub host: String,
    /// Lines read (and committed).
    pub lines: u64,
    /// The command's exit code (`None`: killed by a signal), or why it
    /// could not run or was lost.
    pub result: Result<Option<i32>, String>,
}

impl HostEnd {
    /// `` `h1`: exit code 0 after 3 lines ``, `` `h2`: ended by a signal after 5 lines ``,
    /// `` `h3`: cannot connect ... ``.
    pub fn describe(&self) -> String {
        match &self.result {
            Ok(Some(code)) => format!("`{}`: exit code {code} after {} lines", self.host, self.lines),
            Ok(None) => format!("`{}`: ended by a signal after {} lines", self.host, self.lines),
            Err(e) => format!("`{}`: {e} (after {} lines)", self.host, self.lines),
        }
    }
}

enum Msg {
    Line(Line, oneshot::Sender<()>),
    End(HostEnd),
}

/// Runs the stream on every host at once (on `rt`) until each command ends
/// or `stop` completes; every line goes to `commit` (events tagged
/// `source`), on this thread. Returns how each host ended, in `hosts`'
/// order, or `commit`'s first error (the commands are then killed when the
/// caller drops `rt`).
pub fn follow_ssh<E>(
    rt: &tokio::runtime::Runtime,
    hosts: Vec<RemoteHost>,
    spec: Arc<CounterSpec>,
    source: &str,
    clock: Arc<dyn Clock>,
    stop: impl Future<Output = ()> + Send + 'static,
    mut commit: impl FnMut(&Line) -> Result<(), E>,
) -> Result<Vec<HostEnd>, E> {
    let (stop_tx, stop_rx) = watch::channel(false);
    rt.spawn(async move {
        stop.await;
        let _ = stop_tx.send(true);
    });
    let (tx, rx) = std::sync::mpsc::channel::<Msg>();
    let order: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    for host in hosts {
        let parser = LineParser::new(spec.clone(), &host.name, source);
        rt.spawn(run_host(host, parser, clock.clone(), stop_rx.clone(), tx.clone()));
    }
    drop(tx);
    let mut ends = Vec::new();
    // Ends when every host task has dropped its sender.
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Line(line, ack) => {
                commit(&line)?;
                let _ = ack.send(());
            }
            Msg::End(end) => ends.push(end),
        }
    }
    ends.sort_by_key(|e| order.iter().position(|h| h == &e.host));
    Ok(ends)
}

/// Completes once the stream is stopped (never if the stop can no longer come).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let gone = stop.wait_for(|s| *s).await.is_err();
    if gone {
        std::future::pending::<()>().await;
    }
}

/// One host: connect, start, forward lines (waiting for each commit), end.
async fn run_host(host: RemoteHost, mut parser: LineParser, clock: Arc<dyn Clock>, mut stop: watch::Receiver<bool>, tx: std::sync::mpsc::Sender<Msg>) {
    let transport = SshTransport::new(host.name.clone(), host.ssh.clone());
    let mut lines = 0;
    let result = async {
        let req = CommandRequest { command: host.command.clone(), ..CommandRequest::default() };
        let mut stream = tokio::select! {
            s = transport.exec_stream(&req) => s.map_err(|e| e.to_string())?,
            _ = stopped(&mut stop) => return Ok(None),
        };
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let event = tokio::select! {
                e = stream.next() => e,
                _ = stopped(&mut stop), if deadline.is_none() => {
                    deadline = Some(tokio::time::Instant::now() + STOP_GRACE);
                    stream.stop().await.map_err(|e| e.to_string())?;
                    continue;
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                    return Err(format!("still running {} after it was stopped; the connection is closed", humantime::format_duration(STOP_GRACE)));
                }
            };
            match event {
                Some(StreamEvent::Stdout(text)) => {
                    let ts = parser.stamp(clock.now_ms());
                    let (ack, acked) = oneshot::channel();
                    if tx.send(Msg::Line(parser.line(&text, ts), ack)).is_err() || acked.await.is_err() {
                        return Err("the reader stopped".to_string());
                    }
                    lines += 1;
                }
                Some(StreamEvent::Stderr(text)) => tracing::warn!(host = %host.name, line = %text, "stream command wrote to stderr"),
                Some(StreamEvent::Exit(code)) => return Ok(code),
                None => return Ok(None),
            }
        }
    }
    .await;
    transport.close().await;
    let _ = tx.send(Msg::End(HostEnd { host: host.name, lines, result }));
}
