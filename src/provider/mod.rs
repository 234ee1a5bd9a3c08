//! The provider seam: describe, launch and terminate nodes.
//!
//! A provider knows nothing about state: `describe` reports what really runs,
//! `launch` is idempotent per node slot (launching a slot that already runs
//! returns the running node), `terminate` is graceful and idempotent.
//!
//! Providers: [`local`] (local processes). `ec2` comes later behind the same
//! trait. Must not depend on: the store.

pub mod local;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use local::LocalProvider;

/// Errors of providers.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The node's command template failed to render.
    #[error("node `{node}`: cannot render {what}: {detail}")]
    Render {
        /// The node.
        node: String,
        /// What was rendered (`command`, `env X`).
        what: String,
        /// The template error.
        detail: String,
    },
    /// An IO error on the node's directory, log or process.
    #[error("node `{node}`: {what}: {source}")]
    Io {
        /// The node.
        node: String,
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The node did not become ready in time.
    #[error("node `{node}` did not become ready within {timeout:?}: {detail}")]
    NotReady {
        /// The node.
        node: String,
        /// The timeout.
        timeout: std::time::Duration,
        /// What was seen (the exit status, the last log line).
        detail: String,
    },
    /// The node's process exited during launch.
    #[error("node `{node}` exited during launch ({status}); see its log `{log}`")]
    Exited {
        /// The node.
        node: String,
        /// Exit status text.
        status: String,
        /// Log file path.
        log: String,
    },
    /// The template does not fit this provider.
    #[error("node `{node}`: {detail}")]
    Config {
        /// The node.
        node: String,
        /// What is wrong.
        detail: String,
    },
}

impl ProviderError {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ProviderError::Io { .. } | ProviderError::NotReady { .. })
    }
}

/// What to launch: one slot of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchRequest {
    /// The project (tags, directory names).
    pub project: String,
    /// The group.
    pub group: String,
    /// The node's name (`web-03`).
    pub name: String,
    /// The slot number (3).
    pub index: u32,
    /// Idempotency token (EC2 `ClientToken`): the same token for the same slot.
    pub token: String,
    /// The template.
    pub template: crate::model::NodeTemplate,
}

/// Whether an observed node is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Running.
    Running,
    /// Known to the provider but not running (exited, stopped, terminated).
    Stopped,
}

/// A node as the provider sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedNode {
    /// The node's name.
    pub name: String,
    /// Its group.
    pub group: String,
    /// Provider id (pid, instance id).
    pub provider_id: Option<String>,
    /// Alive or not.
    pub health: Health,
    /// Address to reach it.
    pub address: Option<String>,
    /// Provider-specific attributes (pid, log path, port...).
    pub attrs: BTreeMap<String, serde_json::Value>,
}

/// A node provider.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    /// `local`, `ec2`.
    fn name(&self) -> &'static str;
    /// Every node of this project the provider knows, alive or not.
    async fn describe(&self, project: &str) -> Result<Vec<ObservedNode>, ProviderError>;
    /// Launches the slot, or returns it if it already runs.
    async fn launch(&self, req: &LaunchRequest) -> Result<ObservedNode, ProviderError>;
    /// Stops the node gracefully and forgets it; a node already gone is fine.
    async fn terminate(&self, project: &str, name: &str, template: Option<&crate::model::NodeTemplate>) -> Result<(), ProviderError>;
}

/// The address scaler reaches `node` at, by the template's `address`
/// setting: `private_ip`, `public_ip`, or a template over the node and what
/// the provider reports; without the setting, the provider's address.
pub fn node_address(template: &crate::model::NodeTemplate, node: &ObservedNode, index: u32) -> Result<Option<String>, ProviderError> {
    let Some(setting) = template.address.as_deref() else {
        return Ok(node.address.clone());
    };
    let attr = |k: &str| node.attrs.get(k).cloned().unwrap_or(serde_json::Value::Null);
    let missing = |what: &str| ProviderError::Config {
        node: node.name.clone(),
        detail: format!("`address: {what}`: the provider reports no {what} for this node"),
    };
    match setting {
        "private_ip" | "public_ip" => match attr(setting) {
            serde_json::Value::String(s) if !s.is_empty() => Ok(Some(s)),
            _ => Err(missing(setting)),
        },
        text => {
            let ctx = serde_json::json!({
                "node": { "name": node.name, "group": node.group, "index": index },
                "address": node.address,
                "private_ip": attr("private_ip"),
                "public_ip": attr("public_ip"),
                "tags": attr("tags"),
                "attrs": node.attrs,
            });
            let rendered = crate::template::render_text(text, &ctx).map_err(|detail| ProviderError::Render {
                node: node.name.clone(),
                what: "address".into(),
                detail,
            })?;
            Ok(Some(rendered.trim().to_string()).filter(|s| !s.is_empty()))
        }
    }
}
