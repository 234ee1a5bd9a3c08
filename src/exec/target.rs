//! Target resolution: `TARGET`, `TARGET/HOST`, `TARGET/newest` or `local`
//! to a list of hosts (asked of the [`Fleet`]) with their merged SSH
//! settings (project defaults < target < command-line flags).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::SshParams;
use crate::config::Config;
use crate::fleet::{Fleet, Origin};
use crate::model::{HostKeyPolicy, SshSettings};

/// Default SSH connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// SSH settings given on the command line; they win over the config.
#[derive(Debug, Clone, Default)]
pub struct SshOverrides {
    /// Remote user.
    pub user: Option<String>,
    /// Private key file.
    pub key: Option<PathBuf>,
    /// known_hosts file.
    pub known_hosts: Option<PathBuf>,
    /// Unknown host keys.
    pub host_key_policy: Option<HostKeyPolicy>,
    /// Connect timeout.
    pub connect_timeout: Option<Duration>,
}

/// What part of a target to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSelection {
    /// Every host.
    All,
    /// One host, by name or address.
    Host(String),
    /// The newest node of a group target.
    Newest,
}

/// One host to run on.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSpec {
    /// Shown in results: the node name, or the static entry as written.
    pub name: String,
    /// How to reach it; `None` is the scaler host itself.
    pub ssh: Option<SshParams>,
}

/// Splits `web/web-02` into (`web`, `Host("web-02")`).
pub fn parse_selector(text: &str) -> (String, TargetSelection) {
    match text.split_once('/') {
        None => (text.to_string(), TargetSelection::All),
        Some((t, "newest")) => (t.to_string(), TargetSelection::Newest),
        Some((t, h)) => (t.to_string(), TargetSelection::Host(h.to_string())),
    }
}

fn expand(root: &Path, p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    root.join(p)
}

/// Merges SSH settings: project defaults < target < flags.
fn merge(config: &Config, target: Option<&SshSettings>, cli: &SshOverrides) -> Merged {
    let mut m = Merged::default();
    let root = &config.root;
    let defaults = config.project.spec.defaults.as_ref().and_then(|d| d.ssh.as_ref());
    for s in [defaults, target].into_iter().flatten() {
        m.user = s.user.clone().or(m.user);
        m.port = s.port.or(m.port);
        m.key = s.key.as_deref().map(|k| expand(root, k)).or(m.key);
        m.known_hosts = s.known_hosts.as_deref().map(|k| expand(root, k)).or(m.known_hosts);
        m.policy = s.host_key_policy.or(m.policy);
        m.connect_timeout = s.connect_timeout.as_ref().map(|d| d.get()).or(m.connect_timeout);
    }
    m.user = cli.user.clone().or(m.user);
    m.key = cli.key.clone().or(m.key);
    m.known_hosts = cli.known_hosts.clone().or(m.known_hosts);
    m.policy = cli.host_key_policy.or(m.policy);
    m.connect_timeout = cli.connect_timeout.or(m.connect_timeout);
    m
}

#[derive(Default)]
struct Merged {
    user: Option<String>,
    port: Option<u16>,
    key: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    policy: Option<HostKeyPolicy>,
    connect_timeout: Option<Duration>,
}

impl Merged {
    fn params(&self, address: String, port: Option<u16>) -> SshParams {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
        SshParams {
            address,
            port: port.or(self.port).unwrap_or(22),
            user: self
                .user
                .clone()
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "root".into()),
            key: self.key.clone(),
            known_hosts: self.known_hosts.clone().unwrap_or_else(|| home.join(".ssh").join("known_hosts")),
            host_key_policy: self.policy.unwrap_or(HostKeyPolicy::Strict),
            connect_timeout: self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        }
    }
}

/// How to reach a new node over SSH while it is provisioned: the project's
/// SSH defaults, then its template's `ssh`. The port is `ssh.port`, else
/// the port of the node's address, else 22.
pub fn node_ssh_params(config: &Config, template: Option<&SshSettings>, host: String, address_port: Option<u16>) -> SshParams {
    let merged = merge(config, template, &SshOverrides::default());
    let port = merged.port.or(address_port);
    merged.params(host, port)
}

/// Resolves a target selector (`web`, `web/web-02`, `web/newest`, `local`)
/// to hosts: the target's hosts in the fleet.
pub fn resolve(fleet: &Fleet<'_>, selector: &str, cli: &SshOverrides) -> Result<Vec<HostSpec>, String> {
    let config = fleet.config();
    if selector == "local" && !config.targets.contains_key("local") {
        return Ok(vec![HostSpec { name: "local".into(), ssh: None }]);
    }
    let (name, selection) = parse_selector(selector);
    let target = fleet.target(&name).map_err(|e| e.to_string())?;
    let mut members = fleet.hosts_of(&name).map_err(|e| e.to_string())?;
    match (&target.hosts, &target.group) {
        (Some(_), _) if selection == TargetSelection::Newest => {
            return Err(format!("`{name}/newest` needs a target with a `group`; `{name}` lists static hosts"));
        }
        (None, Some(group)) => {
            if selection == TargetSelection::Newest {
                let created = |h: &crate::fleet::Host| match h.origin {
                    Origin::Node { created_at, .. } => Some(created_at),
                    Origin::Static => None,
                };
                members = members.into_iter().max_by_key(created).into_iter().collect();
            }
            if members.is_empty() {
                return Err(format!("target `{name}`: group `{group}` has no running node with an address"));
            }
        }
        _ => {}
    }
    let merged = merge(config, target.ssh.as_ref(), cli);
    let mut hosts: Vec<HostSpec> = members
        .into_iter()
        .map(|h| {
            // A static entry's port is SSH's; a node's recorded port is its service's.
            let port = match h.origin {
                Origin::Static => h.endpoint.port,
                Origin::Node { .. } => None,
            };
            HostSpec { name: h.name, ssh: Some(merged.params(h.endpoint.host, port)) }
        })
        .collect();
    if let TargetSelection::Host(h) = &selection {
        hosts.retain(|s| &s.name == h || s.ssh.as_ref().is_some_and(|p| &p.address == h));
        if hosts.is_empty() {
            return Err(format!("target `{name}` has no host `{h}`"));
        }
    }
    if hosts.is_empty() {
        return Err(format!("target `{name}` has no hosts"));
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        assert_eq!(parse_selector("web"), ("web".into(), TargetSelection::All));
        assert_eq!(parse_selector("web/newest"), ("web".into(), TargetSelection::Newest));
        assert_eq!(parse_selector("web/web-02"), ("web".into(), TargetSelection::Host("web-02".into())));
    }
}
