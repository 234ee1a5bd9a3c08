//! A new node's whole life without a cloud (DESIGN §5): local-provider nodes
//! whose command runs a real sshd on `node.port`, reached over SSH (host key
//! recorded by `accept-new`), provisioned with Debian's `puppet-agent`
//! (`puppet apply --detailed-exitcodes`: 0 and 2 succeed, 4 and 6 fail the
//! node with Puppet's output), then the bootstrap playbook on that node only.

use std::path::Path;

use scaler::store::{NodeStatus, SqliteStore, Store};
use serde_json::Value;

use crate::harness::{free_port, scaler, stderr, stdout, Sshd};

const PUPPET: &str = "/usr/bin/puppet";

/// A repo whose group `web` has one node: an sshd using `keys`' host key,
/// client key and config, on its own port. sshd closes the file descriptors
/// it inherits, so the node's shell stays in front of it to hold the node's
/// lock (no `exec`). `manifest` is `puppet/site.pp`
/// (`DIR` in it is the repo directory).
fn repo(keys: &Sshd, manifest: &str) -> tempfile::TempDir {
    assert!(Path::new(PUPPET).exists(), "puppet not found: run scripts/test.sh or `apt-get install -y puppet-agent`");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    std::fs::create_dir_all(dir.path().join("puppet")).unwrap();
    std::fs::write(dir.path().join("puppet/site.pp"), manifest.replace("DIR", &d)).unwrap();
    std::fs::write(dir.path().join("known_hosts"), "").unwrap();
    let yaml = format!(
        r#"kind: Project
name: prov
state: {{ lock_ttl: 4s }}
defaults:
  ssh: {{ user: {user}, key: {key}, known_hosts: known_hosts, host_key_policy: accept-new }}
---
kind: NodeTemplate
name: n
provider: local
local:
  command: /usr/sbin/sshd -D -e -f {conf} -p {{{{ node.port }}}} -o PidFile={{{{ node.dir }}}}/sshd.pid; echo "sshd exited $?"
  port_base: {base}
  ready: {{ tcp: true, timeout: 20s }}
  grace: 2s
provision:
  puppet: {{ manifest: puppet/site.pp }}
  playbook: bootstrap
timeouts: {{ provisioned: 90s }}
---
kind: Playbook
name: bootstrap
steps:
  - name: after puppet
    run: test -f {d}/puppet.marker && echo "boot {{{{ host }}}}" >> {d}/boot.log
---
kind: Playbook
name: drain
steps:
  - name: drain
    run: echo "drained {{{{ host }}}}" >> {d}/drain.log && DRAIN_RESULT
---
kind: Group
name: web
template: n
min: 1
max: 2
desired: 1
scale_in: {{ pick: oldest, drain: drain, drain_timeout: 20s }}
"#,
        user = keys.user(),
        key = keys.client_key().display(),
        conf = keys.dir().join("sshd_config").display(),
        base = free_port() - 2,
    );
    std::fs::write(dir.path().join("scaler.yaml"), yaml.replace("DRAIN_RESULT", "true")).unwrap();
    dir
}

/// Edits the repo's `scaler.yaml`.
fn edit(dir: &Path, from: &str, to: &str) {
    let path = dir.join("scaler.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

fn nodes(dir: &Path) -> Vec<(String, NodeStatus)> {
    let snap = SqliteStore::open(&dir.join(".scaler/state.db")).unwrap().snapshot().unwrap();
    snap.nodes.into_iter().map(|n| (n.name, n.status)).collect()
}

fn apply(dir: &Path) -> std::process::Output {
    scaler(dir, &["apply", "--auto-approve", "."])
}

/// Two ready nodes of the drain repo, then scaled in to one: `web-01`
/// (oldest) goes. Returns the repo and web-01's pid.
fn two_nodes_then_scale_in(keys: &Sshd, drain: &str) -> (tempfile::TempDir, i32) {
    let dir = repo(keys, "file { 'DIR/puppet.marker': content => \"x\\n\" }\n");
    edit(dir.path(), "desired: 1", "desired: 2");
    edit(dir.path(), "&& true", &format!("&& {drain}"));
    let out = apply(dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let snap = SqliteStore::open(&dir.path().join(".scaler/state.db")).unwrap().snapshot().unwrap();
    let pid = snap.nodes.iter().find(|n| n.name == "web-01").and_then(|n| n.provider_id.clone()).unwrap().parse().unwrap();
    edit(dir.path(), "desired: 2", "desired: 1");
    let plan = stdout(&scaler(dir.path(), &["plan", "."]));
    assert!(plan.contains("web/web-01") && plan.contains("drain with drain, then terminate; scale in to 1, oldest first"), "{plan}");
    (dir, pid)
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

#[test]
fn scale_in_drains_the_picked_node_while_it_runs_then_terminates_exactly_it() {
    let keys = Sshd::start();
    let (dir, pid) = two_nodes_then_scale_in(&keys, "true");
    let _cleanup = Destroy(dir.path());
    let out = apply(dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    // The drain ran over SSH on the node itself (so it was still running),
    // and only then was the node terminated.
    assert_eq!(std::fs::read_to_string(dir.path().join("drain.log")).unwrap(), "drained web-01\n");
    assert!(!alive(pid), "web-01 was terminated after its drain");
    assert_eq!(nodes(dir.path()), [("web-02".to_string(), NodeStatus::Ready)]);
    assert_eq!(plan_changes(dir.path()), []);
}

#[test]
fn a_failed_drain_is_reported_and_the_node_keeps_running_unless_the_group_says_terminate() {
    let keys = Sshd::start();
    let (dir, pid) = two_nodes_then_scale_in(&keys, "exit 3");
    let _cleanup = Destroy(dir.path());
    let out = apply(dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("node `web-01` was not drained, so it keeps running") && err.contains("playbook `drain` failed"), "{err}");
    // State still tells the truth: both nodes ready, web-01 still runs,
    // and the scale-in is still to do.
    assert_eq!(nodes(dir.path()), [("web-01".to_string(), NodeStatus::Ready), ("web-02".to_string(), NodeStatus::Ready)]);
    assert!(alive(pid));
    assert_eq!(plan_changes(dir.path()).iter().map(|c| (c.0.as_str(), c.1.as_str())).collect::<Vec<_>>(), [("delete", "node.web/web-01")]);

    edit(dir.path(), "drain_timeout: 20s", "drain_timeout: 20s, drain_failure: terminate");
    let out = apply(dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(dir.path().join("drain.log")).unwrap(), "drained web-01\ndrained web-01\n");
    assert!(!alive(pid), "terminated anyway");
    assert_eq!(nodes(dir.path()), [("web-02".to_string(), NodeStatus::Ready)]);
}

fn node(dir: &Path) -> scaler::store::NodeRecord {
    let snap = SqliteStore::open(&dir.join(".scaler/state.db")).unwrap().snapshot().unwrap();
    assert_eq!(snap.nodes.len(), 1, "{:?}", snap.nodes);
    snap.nodes.into_iter().next().unwrap()
}

fn plan_changes(dir: &Path) -> Vec<(String, String, String)> {
    let out = scaler(dir, &["plan", "--json", "."]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["action"].as_str().unwrap().into(), c["address"].as_str().unwrap().into(), c["reason"].as_str().unwrap_or("").into()))
        .collect()
}

/// Stops every node the repo launched.
struct Destroy<'a>(&'a Path);
impl Drop for Destroy<'_> {
    fn drop(&mut self) {
        let _ = scaler(self.0, &["destroy", "--auto-approve", "--allow-destroy-all", "."]);
    }
}

#[test]
fn a_new_node_is_reached_over_ssh_provisioned_by_puppet_then_bootstrapped_and_only_then_ready() {
    let keys = Sshd::start();
    let dir = repo(&keys, "file { 'DIR/puppet.marker': content => \"puppet was here\\n\" }\n");
    let _cleanup = Destroy(dir.path());
    let validate = scaler(dir.path(), &["validate", "."]);
    assert_eq!((validate.status.code(), stderr(&validate)), (Some(0), String::new()), "no setting is ignored");

    let out = scaler(dir.path(), &["apply", "--auto-approve", "."]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let n = node(dir.path());
    assert_eq!(n.status, NodeStatus::Ready);
    // Puppet changed something (exit 2: success), then the playbook ran on
    // this node only, after Puppet.
    assert_eq!(std::fs::read_to_string(dir.path().join("puppet.marker")).unwrap(), "puppet was here\n");
    assert_eq!(std::fs::read_to_string(dir.path().join("boot.log")).unwrap(), "boot web-01\n");
    // The node's host key was recorded by policy on first contact.
    let known = std::fs::read_to_string(dir.path().join("known_hosts")).unwrap();
    let port = n.address.as_deref().unwrap().rsplit(':').next().unwrap().to_string();
    assert!(known.contains(&format!("[127.0.0.1]:{port}")) && known.contains(keys.host_public_key()), "{known}");
    // Done: nothing left, and a second apply provisions nothing again.
    assert_eq!(plan_changes(dir.path()), []);
    assert!(scaler(dir.path(), &["apply", "--auto-approve", "."]).status.success());
    assert_eq!(std::fs::read_to_string(dir.path().join("boot.log")).unwrap().lines().count(), 1);
    let list = stdout(&scaler(dir.path(), &["state", "list", "."]));
    assert!(list.contains("node.web/web-01  ready  127.0.0.1:"), "{list}");
}

#[test]
fn a_failing_manifest_fails_the_node_with_puppets_output_and_the_next_plan_replaces_it() {
    let keys = Sshd::start();
    let dir = repo(&keys, "exec { 'broken-on-purpose': command => '/bin/false' }\n");
    let _cleanup = Destroy(dir.path());
    let out = scaler(dir.path(), &["apply", "--auto-approve", "."]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}\n{err}", stdout(&out));
    assert!(err.contains("node `web-01` did not become provisioned"), "{err}");
    assert!(err.contains("`puppet apply puppet/site.pp` exited 4") || err.contains("`puppet apply puppet/site.pp` exited 6"), "{err}");
    assert!(err.contains("broken-on-purpose"), "Puppet's own output is shown: {err}");
    // Reached, not provisioned: not a host, the playbook never ran.
    let n = node(dir.path());
    assert_eq!(n.status, NodeStatus::Reachable);
    assert_eq!(n.attrs["lifecycle_error"]["stage"], "provisioned");
    assert!(!dir.path().join("boot.log").exists());
    let changes = plan_changes(dir.path());
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!((changes[0].0.as_str(), changes[0].1.as_str()), ("replace", "node.web/web-01"));
    assert!(changes[0].2.starts_with("stuck `reachable`: `provisioned` failed: `puppet apply puppet/site.pp` exited"), "{changes:?}");
}
