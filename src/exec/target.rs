//! Target resolution: `TARGET`, `TARGET/HOST`, `TARGET/newest` or `local`
//! to a list of hosts with their merged SSH settings (project defaults <
//! target < command-line flags).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::SshParams;
use crate::config::Config;
use crate::model::{HostKeyPolicy, SshSettings};

/// Default SSH connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A running node of a group, as recorded in state (the CLI reads the store).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeAddress {
    /// The node's name (`web-03`).
    pub name: String,
    /// Its group.
    pub group: String,
    /// `host` or `host:port` (the port is the node's service port, not SSH's).
    pub address: Option<String>,
    /// When it was launched.
    pub created_at: DateTime<Utc>,
}

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

/// Splits `host`, `host:port` or `[v6]:port`.
fn split_host_port(text: &str) -> Result<(String, Option<u16>), String> {
    let bad_port = |p: &str| format!("`{text}`: `{p}` is not a port number");
    if let Some(rest) = text.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| format!("`{text}`: missing `]`"))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((h.to_string(), Some(p.parse().map_err(|_| bad_port(p))?))),
            None => Ok((h.to_string(), None)),
        };
    }
    match text.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Ok((h.to_string(), Some(p.parse().map_err(|_| bad_port(p))?))),
        _ => Ok((text.to_string(), None)),
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

/// Resolves a target selector (`web`, `web/web-02`, `web/newest`, `local`)
/// to hosts. `nodes` are the running nodes recorded in state.
pub fn resolve(config: &Config, selector: &str, nodes: &[NodeAddress], cli: &SshOverrides) -> Result<Vec<HostSpec>, String> {
    if selector == "local" && !config.targets.contains_key("local") {
        return Ok(vec![HostSpec { name: "local".into(), ssh: None }]);
    }
    let (name, selection) = parse_selector(selector);
    let target = config.targets.get(&name).map(|t| &t.spec).ok_or_else(|| {
        let known: Vec<String> = config.targets.keys().map(|k| format!("`{k}`")).collect();
        if known.is_empty() {
            format!("no target `{name}` in the config (it has no targets)")
        } else {
            format!("no target `{name}` in the config; targets: {}", known.join(", "))
        }
    })?;
    let merged = merge(config, target.ssh.as_ref(), cli);
    let mut hosts = Vec::new();
    if let Some(list) = &target.hosts {
        if selection == TargetSelection::Newest {
            return Err(format!("`{name}/newest` needs a target with a `group`; `{name}` lists static hosts"));
        }
        for h in list {
            let (addr, port) = split_host_port(h)?;
            hosts.push(HostSpec { name: h.clone(), ssh: Some(merged.params(addr, port)) });
        }
    } else if let Some(group) = &target.group {
        let mut members: Vec<&NodeAddress> = nodes.iter().filter(|n| &n.group == group).collect();
        if selection == TargetSelection::Newest {
            members.sort_by_key(|n| n.created_at);
            members = members.into_iter().last().into_iter().collect();
        }
        for n in members {
            let Some(address) = &n.address else { continue };
            let (addr, _service_port) = split_host_port(address)?;
            hosts.push(HostSpec { name: n.name.clone(), ssh: Some(merged.params(addr, None)) });
        }
        if hosts.is_empty() {
            return Err(format!("target `{name}`: group `{group}` has no running node with an address"));
        }
    }
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
    fn host_port_forms() {
        assert_eq!(split_host_port("a.example").unwrap(), ("a.example".into(), None));
        assert_eq!(split_host_port("127.0.0.1:2222").unwrap(), ("127.0.0.1".into(), Some(2222)));
        assert_eq!(split_host_port("[::1]:22").unwrap(), ("::1".into(), Some(22)));
        assert!(split_host_port("h:x").is_err());
    }

    #[test]
    fn selectors() {
        assert_eq!(parse_selector("web"), ("web".into(), TargetSelection::All));
        assert_eq!(parse_selector("web/newest"), ("web".into(), TargetSelection::Newest));
        assert_eq!(parse_selector("web/web-02"), ("web".into(), TargetSelection::Host("web-02".into())));
    }
}
