//! A new node's life (DESIGN §5): `creating` -> `running` (the provider
//! says so) -> `reachable` (SSH answers when it is provisioned, else its
//! `local.ready` port) -> `provisioned` (Puppet manifest, then bootstrap
//! playbook: [`super::provision`]) -> `ready`, each stage with its own
//! timeout and recorded in state as soon as it is reached.
//!
//! A crash leaves the node at the last recorded stage: the next plan shows
//! it as unfinished work and this driver resumes it there. A failed or
//! timed-out stage is recorded on the node (`lifecycle_error`), and the next
//! plan replaces it.
//!
//! Must not depend on: CLI printing.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::Config;
use crate::model::{HostPort, NodeTemplate};
use crate::plan::LIFECYCLE_ERROR;
use crate::provider::{node_address, LaunchRequest, Provider, ProviderError};
use crate::store::{Mutation, NodeRecord, NodeStatus, StateStore, StoreError};

/// Until the provider says the node runs, by default.
pub const DEFAULT_RUNNING_TIMEOUT: Duration = Duration::from_secs(600);
/// Until the node answers, by default.
pub const DEFAULT_REACHABLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Until provisioning is done, by default.
pub const DEFAULT_PROVISIONED_TIMEOUT: Duration = Duration::from_secs(1800);
/// Time between two reachability probes.
const PROBE_EVERY: Duration = Duration::from_millis(200);

/// Why a node's life cycle stopped.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The launch failed (nothing recorded beyond `creating`).
    #[error(transparent)]
    Launch(#[from] ProviderError),
    /// A stage failed or timed out; recorded on the node.
    #[error("node `{node}` did not become {stage}: {detail}")]
    Stage {
        /// The node.
        node: String,
        /// The stage it did not reach.
        stage: &'static str,
        /// What happened.
        detail: String,
    },
    /// The drain playbook failed or timed out: the node was not terminated.
    #[error("node `{node}` was not drained, so it keeps running (set `scale_in.drain_failure: terminate` to terminate it anyway): {detail}")]
    Drain {
        /// The node.
        node: String,
        /// What happened.
        detail: String,
    },
    /// Recording a stage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The per-stage timeouts of a template.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    running: Duration,
    reachable: Duration,
    provisioned: Duration,
}

impl Timeouts {
    fn of(t: &NodeTemplate) -> Timeouts {
        let set = t.timeouts.as_ref();
        let get = |d: Option<&crate::model::Duration>, default: Duration| d.map_or(default, |d| d.get());
        // The local readiness wait happens inside the launch: give it room.
        let local_ready = t.local.as_ref().and_then(|l| l.ready.as_ref()).and_then(|r| r.timeout.as_ref()).map(|d| d.get());
        let running = get(set.and_then(|s| s.running.as_ref()), DEFAULT_RUNNING_TIMEOUT);
        Timeouts {
            running: local_ready.map_or(running, |r| running.max(r + Duration::from_secs(10))),
            reachable: get(set.and_then(|s| s.reachable.as_ref()), local_ready.unwrap_or(DEFAULT_REACHABLE_TIMEOUT)),
            provisioned: get(set.and_then(|s| s.provisioned.as_ref()), DEFAULT_PROVISIONED_TIMEOUT),
        }
    }
}

/// Drives one node through its life.
pub(super) struct NodeLife {
    /// Where each stage is recorded.
    pub store: StateStore,
    /// The node's provider.
    pub provider: Arc<dyn Provider>,
    /// The config (SSH defaults, the repo root, playbooks).
    pub config: Arc<Config>,
    /// The node's template.
    pub template: NodeTemplate,
}

impl NodeLife {
    /// Launches (when `launch` is given: the record is `creating`) or
    /// resumes the node from its recorded stage, up to `ready`. Returns the
    /// `ready` record, not yet committed.
    pub async fn drive(&self, mut rec: NodeRecord, launch: Option<&LaunchRequest>) -> Result<NodeRecord, LifecycleError> {
        let t = Timeouts::of(&self.template);
        if let Some(req) = launch {
            let node = match tokio::time::timeout(t.running, self.provider.launch(req)).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(LifecycleError::Stage {
                        node: rec.name.clone(),
                        stage: NodeStatus::Running.as_str(),
                        detail: format!("the launch took longer than {}", humantime::format_duration(t.running)),
                    })
                }
            };
            rec.status = NodeStatus::Running;
            rec.provider_id = node.provider_id.clone();
            rec.attrs = serde_json::to_value(&node.attrs).unwrap_or(Value::Null);
            match node_address(&self.template, &node, rec.index) {
                Ok(a) => rec.address = a,
                Err(e) => return Err(self.failed(&mut rec, NodeStatus::Reachable, e.to_string()).await),
            }
            self.record(&rec).await?;
        }
        if rec.status == NodeStatus::Running {
            let work = self.reach(rec.clone());
            self.stage(&mut rec, NodeStatus::Reachable, t.reachable, work).await?;
        }
        if rec.status == NodeStatus::Reachable {
            let work = super::provision::provision(self.config.clone(), self.template.clone(), rec.clone());
            self.stage(&mut rec, NodeStatus::Provisioned, t.provisioned, work).await?;
        }
        if rec.status == NodeStatus::Provisioned {
            rec.status = NodeStatus::Ready;
            clear_error(&mut rec);
        }
        Ok(rec)
    }

    async fn record(&self, rec: &NodeRecord) -> Result<(), StoreError> {
        self.store.commit(vec![Mutation::PutNode(rec.clone())]).await.map(|_| ())
    }

    /// Runs one stage under its timeout; records the stage reached, or the
    /// failure on the node.
    async fn stage(
        &self,
        rec: &mut NodeRecord,
        next: NodeStatus,
        timeout: Duration,
        work: impl std::future::Future<Output = Result<(), String>>,
    ) -> Result<(), LifecycleError> {
        let result = match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {}", humantime::format_duration(timeout))),
        };
        match result {
            Ok(()) => {
                tracing::info!(node = %rec.name, stage = next.as_str(), "node stage reached");
                rec.status = next;
                clear_error(rec);
                self.record(rec).await?;
                Ok(())
            }
            Err(detail) => Err(self.failed(rec, next, detail).await),
        }
    }

    /// Records a failed stage on the node and makes the error.
    async fn failed(&self, rec: &mut NodeRecord, stage: NodeStatus, detail: String) -> LifecycleError {
        tracing::warn!(node = %rec.name, stage = stage.as_str(), error = %detail, "node stage failed");
        if !rec.attrs.is_object() {
            rec.attrs = json!({});
        }
        if let Some(m) = rec.attrs.as_object_mut() {
            m.insert(LIFECYCLE_ERROR.to_string(), json!({ "stage": stage.as_str(), "error": detail }));
        }
        if let Err(e) = self.record(rec).await {
            return e.into();
        }
        LifecycleError::Stage { node: rec.name.clone(), stage: stage.as_str(), detail }
    }

    /// Waits until the node answers: SSH (`true` runs) when it is
    /// provisioned, else TCP on its address when `local.ready` asks for
    /// it; otherwise there is nothing to wait for.
    fn reach(&self, rec: NodeRecord) -> impl std::future::Future<Output = Result<(), String>> + 'static {
        let config = self.config.clone();
        let template = self.template.clone();
        async move {
            let address = rec.address.clone().ok_or("the provider reports no address to reach it at")?;
            let endpoint = HostPort::parse(&address).map_err(|e| format!("address `{address}`: {e}"))?;
            if template.provision.is_some() {
                let params = crate::exec::node_ssh_params(&config, template.ssh.as_ref(), endpoint.host.clone(), endpoint.port);
                return super::provision::wait_for_ssh(&rec.name, params, PROBE_EVERY).await;
            }
            let tcp = template.local.as_ref().and_then(|l| l.ready.as_ref()).is_some_and(|r| r.tcp);
            if !tcp {
                return Ok(());
            }
            let port = endpoint.port.ok_or_else(|| format!("address `{address}` has no port to probe"))?;
            loop {
                let connect = tokio::net::TcpStream::connect((endpoint.host.as_str(), port));
                if matches!(tokio::time::timeout(Duration::from_secs(1), connect).await, Ok(Ok(_))) {
                    return Ok(());
                }
                tokio::time::sleep(PROBE_EVERY).await;
            }
        }
    }
}

fn clear_error(rec: &mut NodeRecord) {
    if let Some(m) = rec.attrs.as_object_mut() {
        m.remove(LIFECYCLE_ERROR);
    }
}
