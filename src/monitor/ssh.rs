//! The `ssh` source: a command on each target host over SSH, parsed like a
//! `local` command's output (exit status != 0, empty, ambiguous or
//! non-numeric output is a failure).
//!
//! Connections are reused: one [`SshTransport`] (one SSH connection, opened
//! on first use, reopened when it drops) per host, shared by every counter
//! of that host; each collection is a channel on it. Host keys are checked
//! by the transport against known_hosts (`host_key_policy`).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::Mutex;

use super::local::{interpret, CommandOutput};
use super::{CollectError, Collector, Job, Outcome};
use crate::exec::{CommandRequest, ExecError, SshParams, SshTransport, Transport};
use crate::model::Source;

/// Runs commands over SSH, one connection per host.
#[derive(Default)]
pub struct SshCollector {
    transports: Mutex<HashMap<String, Arc<SshTransport>>>,
}

fn key(host: &str, p: &SshParams) -> String {
    format!("{host}|{}@{}:{}", p.user, p.address, p.port)
}

impl SshCollector {
    async fn transport(&self, job: &Job, params: &SshParams) -> Arc<SshTransport> {
        let mut map = self.transports.lock().await;
        map.entry(key(&job.host, params)).or_insert_with(|| Arc::new(SshTransport::new(job.host.clone(), params.clone()))).clone()
    }

    /// Hosts with a transport (for tests and `--stats`).
    pub async fn connections(&self) -> usize {
        self.transports.lock().await.len()
    }
}

fn exec_error(job: &Job, e: ExecError) -> CollectError {
    let text = e.to_string();
    match e {
        ExecError::Timeout { .. } => CollectError::Timeout(job.timeout),
        ExecError::Connect { .. } | ExecError::ConnectTimeout { .. } => CollectError::Connect { addr: job.host.clone(), detail: text },
        _ => CollectError::Protocol(text),
    }
}

#[async_trait]
impl Collector for SshCollector {
    async fn collect(&self, job: &Job) -> Vec<Outcome> {
        let Some(params) = job.ssh.as_ref() else {
            return job.counters.iter().map(|_| Err(CollectError::Config(format!("no SSH settings for `{}`", job.host)))).collect();
        };
        let transport = self.transport(job, params).await;
        let mut outcomes = Vec::with_capacity(job.counters.len());
        for spec in &job.counters {
            let Source::Ssh(src) = &spec.counter.source else {
                outcomes.push(Err(CollectError::Config("not an ssh source".into())));
                continue;
            };
            let outcome = async {
                let command = crate::template::render_command(&src.command, &json!({ "host": job.host }))
                    .map_err(|e| CollectError::Config(format!("command template of `{}`: {e}", spec.name())))?;
                let req = CommandRequest { command: command.clone(), timeout: Some(job.timeout), ..CommandRequest::default() };
                let out = transport.run(&req).await.map_err(|e| exec_error(job, e))?;
                interpret(&command, &CommandOutput { code: out.exit_code, stdout: out.stdout, stderr: out.stderr }, &spec.parser)
            }
            .await;
            outcomes.push(outcome);
        }
        outcomes
    }
}
