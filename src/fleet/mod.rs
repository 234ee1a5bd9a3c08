//! The fleet view: which hosts a Target names. Collection (`plan_jobs`),
//! `exec`/`run`, the `run` action and the rules' host sets all ask here.
//!
//! ```text
//! config::Config (Target: static `hosts` | `group`) + recorded nodes (store snapshot)
//!   -> Fleet::new (the nodes that are hosts, by group)
//!   -> Fleet::hosts_of(target) -> [Host { name, address, endpoint, origin }]
//!   -> Fleet::host_sets()      -> every Target and Group -> its members' names (the rules' window)
//! ```
//!
//! One rule decides which recorded nodes are hosts ([`is_host`]): only a
//! node that is up and usable, i.e. `ready` with an address that parses.
//! A node in an earlier stage of its life (`creating`, `running`,
//! `reachable`, `provisioned`) or `terminating` is unfinished work, never capacity:
//! it is not collected, not run on and not counted in coverage. One parser
//! reads every `host[:port]` ([`HostPort`]).
//!
//! Must not depend on: the CLI, tokio, the file system, the store's
//! backends (callers read the nodes and hand them in).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::model::Target;
use crate::store::{NodeRecord, NodeStatus};

pub use crate::model::HostPort;

/// Why a target's hosts cannot be given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FleetError {
    /// The config has no such target.
    #[error("{}", crate::config::unknown_name("target", name, known.iter().map(String::as_str)))]
    UnknownTarget {
        /// The name asked for.
        name: String,
        /// The targets the config has.
        known: Vec<String>,
    },
    /// A static host does not parse (config validation rejects this; only
    /// a config built without it gets here).
    #[error("target `{target}`: {detail}")]
    BadHost {
        /// The target.
        target: String,
        /// What is wrong with the entry.
        detail: String,
    },
}

/// Where a host comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A Target's static `hosts` entry: its port (if any) is the one to use.
    Static,
    /// A running node of a group: its recorded port is its service's.
    Node {
        /// The group.
        group: String,
        /// When it was launched (`TARGET/newest`).
        created_at: DateTime<Utc>,
    },
}

/// One host of a target.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// The node's name (`web-03`), or the static entry as written (`db1:5432`).
    pub name: String,
    /// The address as written in `hosts` or recorded for the node
    /// (`127.0.0.1:18001`): what series of network sources carry.
    pub address: String,
    /// `address`, parsed.
    pub endpoint: HostPort,
    /// Static entry or node.
    pub origin: Origin,
}

impl Host {
    /// Every name a series of this host may carry: its name, its address
    /// and the address without its port, each once.
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(3);
        for n in [&self.name, &self.address, &self.endpoint.host] {
            if !out.contains(n) {
                out.push(n.clone());
            }
        }
        out
    }
}

/// The one rule: a recorded node is a host when it is up and usable,
/// i.e. `ready` with an address that parses.
pub fn is_host(node: &NodeRecord) -> bool {
    node_host(node).is_ok()
}

/// A recorded node as a host, or why it is not one.
fn node_host(node: &NodeRecord) -> Result<Host, String> {
    match node.status {
        NodeStatus::Ready => {}
        other => return Err(format!("it is {}", other.as_str())),
    }
    let address = node.address.as_ref().ok_or("it has no address yet")?;
    let endpoint = HostPort::parse(address).map_err(|e| format!("its recorded address does not parse: {e}"))?;
    Ok(Host {
        name: node.name.clone(),
        address: address.clone(),
        endpoint,
        origin: Origin::Node { group: node.group.clone(), created_at: node.created_at },
    })
}

/// The config's targets and the recorded nodes that are hosts.
#[derive(Debug, Clone)]
pub struct Fleet<'a> {
    config: &'a Config,
    /// The hosts of each group, in recorded order.
    groups: BTreeMap<String, Vec<Host>>,
}

impl<'a> Fleet<'a> {
    /// The fleet of `config` given the nodes recorded in state. A running
    /// node whose address does not parse is not a host (logged).
    pub fn new(config: &'a Config, nodes: &[NodeRecord]) -> Fleet<'a> {
        let mut groups: BTreeMap<String, Vec<Host>> = BTreeMap::new();
        for n in nodes {
            match node_host(n) {
                Ok(h) => groups.entry(n.group.clone()).or_default().push(h),
                Err(why) if n.status == NodeStatus::Ready => tracing::warn!(node = %n.name, "node is not a host: {why}"),
                Err(_) => {}
            }
        }
        Fleet { config, groups }
    }

    /// The config the fleet was built from.
    pub fn config(&self) -> &'a Config {
        self.config
    }

    /// A target of the config.
    pub fn target(&self, name: &str) -> Result<&'a Target, FleetError> {
        self.config.targets.get(name).map(|t| &t.spec).ok_or_else(|| FleetError::UnknownTarget {
            name: name.to_string(),
            known: self.config.targets.keys().cloned().collect(),
        })
    }

    /// The hosts of a group: its running nodes with an address.
    pub fn group_hosts(&self, group: &str) -> &[Host] {
        self.groups.get(group).map(Vec::as_slice).unwrap_or_default()
    }

    /// The hosts a target names: its static `hosts`, or the hosts of its
    /// group (none yet is not an error).
    pub fn hosts_of(&self, target: &str) -> Result<Vec<Host>, FleetError> {
        let t = self.target(target)?;
        match (&t.hosts, &t.group) {
            (Some(list), _) => list
                .iter()
                .map(|h| {
                    let endpoint = HostPort::parse(h).map_err(|detail| FleetError::BadHost { target: target.to_string(), detail })?;
                    Ok(Host { name: h.clone(), address: h.clone(), endpoint, origin: Origin::Static })
                })
                .collect(),
            (None, Some(g)) => Ok(self.group_hosts(g).to_vec()),
            (None, None) => Ok(Vec::new()),
        }
    }

    /// Every Group and Target by name (a Target wins over a Group of the
    /// same name) with its members, each as the names its series may carry
    /// ([`Host::names`]): the host sets of the rules' window.
    pub fn host_sets(&self) -> Result<BTreeMap<String, Vec<Vec<String>>>, FleetError> {
        let mut sets = BTreeMap::new();
        for g in self.config.groups.keys() {
            sets.insert(g.clone(), self.group_hosts(g).iter().map(Host::names).collect());
        }
        for t in self.config.targets.keys() {
            sets.insert(t.clone(), self.hosts_of(t)?.iter().map(Host::names).collect());
        }
        Ok(sets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const CONFIG: &str = "kind: Project\nname: p\n---\nkind: NodeTemplate\nname: t\nprovider: local\nlocal: { command: sleep 100 }\n---\n\
        kind: Group\nname: web\ntemplate: t\nmin: 0\nmax: 9\n---\nkind: Target\nname: web\ngroup: web\n---\n\
        kind: Target\nname: db\nhosts: [\"db1:5432\", db2, \"[::1]:6379\"]\n";

    fn config() -> Config {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("scaler.yaml"), CONFIG).unwrap();
        crate::config::load(dir.path()).unwrap_or_else(|d| panic!("{}", d.render(false)))
    }

    fn node(index: u32, status: NodeStatus, address: Option<&str>) -> NodeRecord {
        NodeRecord {
            name: format!("web-{index:02}"),
            group: "web".into(),
            index,
            provider: "local".into(),
            provider_id: None,
            status,
            created_at: Utc.timestamp_opt(1_700_000_000 + i64::from(index), 0).unwrap(),
            template_digest: "sha256:x".into(),
            address: address.map(str::to_string),
            attrs: serde_json::json!({}),
        }
    }

    #[test]
    fn only_ready_nodes_with_an_address_are_hosts() {
        assert!(is_host(&node(1, NodeStatus::Ready, Some("127.0.0.1:18001"))));
        for stage in [NodeStatus::Running, NodeStatus::Reachable, NodeStatus::Provisioned] {
            assert_eq!(node_host(&node(6, stage, Some("127.0.0.1:18006"))).unwrap_err(), format!("it is {}", stage.as_str()));
        }
        assert!(!is_host(&node(2, NodeStatus::Creating, Some("127.0.0.1:18002"))));
        assert!(!is_host(&node(3, NodeStatus::Terminating, Some("127.0.0.1:18003"))));
        assert!(!is_host(&node(4, NodeStatus::Ready, None)), "not reachable yet");
        assert!(!is_host(&node(5, NodeStatus::Ready, Some("127.0.0.1:x"))), "not usable");
        assert_eq!(node_host(&node(2, NodeStatus::Creating, None)).unwrap_err(), "it is creating");
    }

    #[test]
    fn a_group_target_names_its_running_nodes() {
        let cfg = config();
        let nodes = vec![
            node(1, NodeStatus::Ready, Some("127.0.0.1:18001")),
            node(2, NodeStatus::Creating, Some("127.0.0.1:18002")),
            node(3, NodeStatus::Terminating, Some("127.0.0.1:18003")),
            node(4, NodeStatus::Ready, Some("127.0.0.1:18004")),
        ];
        let fleet = Fleet::new(&cfg, &nodes);
        let hosts = fleet.hosts_of("web").unwrap();
        let names: Vec<(&str, &str)> = hosts.iter().map(|h| (h.name.as_str(), h.address.as_str())).collect();
        assert_eq!(names, vec![("web-01", "127.0.0.1:18001"), ("web-04", "127.0.0.1:18004")]);
        assert_eq!(hosts[0].endpoint, HostPort { host: "127.0.0.1".into(), port: Some(18001) });
        assert_eq!(hosts[0].origin, Origin::Node { group: "web".into(), created_at: nodes[0].created_at });
        assert!(Fleet::new(&cfg, &[]).hosts_of("web").unwrap().is_empty(), "no nodes yet is no hosts, not an error");
    }

    #[test]
    fn a_static_target_names_its_hosts_as_written() {
        let cfg = config();
        let hosts = Fleet::new(&cfg, &[]).hosts_of("db").unwrap();
        let got: Vec<(&str, &str, Option<u16>)> = hosts.iter().map(|h| (h.name.as_str(), h.endpoint.host.as_str(), h.endpoint.port)).collect();
        assert_eq!(got, vec![("db1:5432", "db1", Some(5432)), ("db2", "db2", None), ("[::1]:6379", "::1", Some(6379))]);
        assert!(hosts.iter().all(|h| h.origin == Origin::Static));
    }

    #[test]
    fn unknown_targets_and_bad_static_hosts_are_errors() {
        let mut cfg = config();
        let fleet = Fleet::new(&cfg, &[]);
        assert_eq!(fleet.hosts_of("nope").unwrap_err().to_string(), "no target `nope` in the config; targets: `db`, `web`");
        if let Some(t) = cfg.targets.get_mut("db") {
            t.spec.hosts = Some(vec!["db1:x".into()]);
        }
        let fleet = Fleet::new(&cfg, &[]);
        assert_eq!(fleet.hosts_of("db").unwrap_err().to_string(), "target `db`: `db1:x`: `x` is not a port number (1-65535)");
        assert!(fleet.host_sets().is_err());
        cfg.targets.clear();
        assert_eq!(Fleet::new(&cfg, &[]).hosts_of("db").unwrap_err().to_string(), "no target `db` in the config (it has no targets)");
    }

    #[test]
    fn host_sets_hold_every_group_and_target_with_their_names() {
        let cfg = config();
        let nodes = vec![node(1, NodeStatus::Ready, Some("127.0.0.1:18001")), node(2, NodeStatus::Creating, Some("127.0.0.1:18002"))];
        let sets = Fleet::new(&cfg, &nodes).host_sets().unwrap();
        let web = vec![vec!["web-01".to_string(), "127.0.0.1:18001".into(), "127.0.0.1".into()]];
        assert_eq!(sets["web"], web);
        assert_eq!(
            sets["db"],
            vec![vec!["db1:5432".to_string(), "db1".into()], vec!["db2".to_string()], vec!["[::1]:6379".to_string(), "::1".into()]]
        );
        assert_eq!(sets.len(), 2, "group `web` and target `web` share a name: {sets:?}");
    }
}
