//! One fleet view: a group target's hosts are its `running` nodes. A
//! `creating` or `terminating` node recorded in state is neither collected
//! nor run on (issue 10: counters used to be collected from them).

use scaler::store::{Mutation, NodeStatus, SqliteStore, Store};
use serde_json::Value;

use crate::harness::{scaler, stderr, stdout, HttpServer, Sshd};
use crate::store_conformance::node;

/// A repo with group `web` (local nodes), target `web` reaching its nodes
/// over `sshd`, an `http` counter on it, and three recorded nodes: `web-01`
/// running, `web-02` creating, `web-03` terminating, each at its own HTTP
/// server.
fn repo(sshd: &Sshd, http: &[HttpServer; 3]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"kind: Project
name: t
---
kind: NodeTemplate
name: web-node
provider: local
local: {{ command: "sleep 100" }}
---
kind: Group
name: web
template: web-node
min: 0
max: 4
---
kind: Target
name: web
group: web
ssh: {{ user: {user}, key: "{key}", known_hosts: "{known}", port: {port}, connect_timeout: 5s }}
---
kind: Counter
name: up
source: {{ http: {{}} }}
targets: [web]
timeout: 2s
parse: {{ json: "$.up" }}
"#,
        user = sshd.user(),
        key = sshd.client_key().display(),
        known = sshd.known_hosts().display(),
        port = sshd.port(),
    );
    std::fs::write(dir.path().join("scaler.yaml"), yaml).unwrap();
    let mut store = SqliteStore::open(&dir.path().join(".scaler/state.db")).unwrap();
    let nodes: Vec<Mutation> = [NodeStatus::Ready, NodeStatus::Creating, NodeStatus::Terminating]
        .into_iter()
        .zip(http)
        .enumerate()
        .map(|(i, (status, server))| {
            let mut n = node("web", i as u32 + 1);
            n.status = status;
            n.address = Some(format!("127.0.0.1:{}", server.port));
            Mutation::PutNode(n)
        })
        .collect();
    store.commit(&nodes).unwrap();
    dir
}

fn json_lines(out: &std::process::Output) -> Vec<Value> {
    stdout(out).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

#[test]
fn only_running_nodes_of_a_group_are_collected_and_run_on() {
    let sshd = Sshd::start();
    let http = [1, 2, 3].map(|n| HttpServer::start(vec![("/status", 200, format!(r#"{{"up": {n}}}"#))]));
    let dir = repo(&sshd, &http);

    let out = scaler(dir.path(), &["collect", "--once", "--json", "."]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), stdout(&out));
    let got: Vec<(String, Value)> = json_lines(&out).iter().map(|s| (s["host"].as_str().unwrap_or("").to_string(), s["value"].clone())).collect();
    assert_eq!(got, vec![(format!("127.0.0.1:{}", http[0].port), Value::from(1.0))], "only web-01 is running");

    let out = scaler(dir.path(), &["exec", "web", "--json", "--", "echo", "hi"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let hosts: Vec<(&str, &str)> = v["hosts"].as_array().unwrap().iter().map(|h| (h["host"].as_str().unwrap(), h["status"].as_str().unwrap())).collect();
    assert_eq!(hosts, vec![("web-01", "changed")], "{v}");

    // `newest` is the newest host, not the newest record (web-03 is terminating).
    let out = scaler(dir.path(), &["exec", "web/newest", "--json", "--", "true"]);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    assert_eq!(v["hosts"][0]["host"], "web-01", "{v}");
    // A node being created cannot be picked by name either.
    let out = scaler(dir.path(), &["exec", "web/web-02", "--", "true"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("target `web` has no host `web-02`"), "{}", stderr(&out));
}

#[test]
fn each_host_result_names_its_own_host_address_and_port() {
    let sshd = Sshd::start();
    let http = [1, 2, 3].map(|n| HttpServer::start(vec![("/status", 200, format!(r#"{{"up": {n}}}"#))]));
    let dir = repo(&sshd, &http);
    // web-02 runs too: both nodes are reached at 127.0.0.1 on the target's
    // one SSH port, so they share an address and a port.
    let mut store = SqliteStore::open(&dir.path().join(".scaler/state.db")).unwrap();
    let mut n = node("web", 2);
    n.status = NodeStatus::Ready;
    n.address = Some(format!("127.0.0.1:{}", http[1].port));
    store.commit(&[Mutation::PutNode(n)]).unwrap();
    let out = scaler(dir.path(), &["exec", "web", "--json", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let hosts: Vec<(String, String, u64)> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["host"].as_str().unwrap().to_string(), h["address"].as_str().unwrap().to_string(), h["port"].as_u64().unwrap()))
        .collect();
    let port = u64::from(sshd.port());
    assert_eq!(hosts, vec![("web-01".into(), "127.0.0.1".into(), port), ("web-02".into(), "127.0.0.1".into(), port)], "{v}");

    // The SSH port is dead: each host's error is its own, not web-01's.
    let cfg = std::fs::read_to_string(dir.path().join("scaler.yaml")).unwrap();
    let dead = crate::harness::free_port();
    std::fs::write(dir.path().join("scaler.yaml"), cfg.replace(&format!("port: {}", sshd.port()), &format!("port: {dead}"))).unwrap();
    let out = scaler(dir.path(), &["exec", "web", "--json", "--", "true"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    for (i, name) in ["web-01", "web-02"].iter().enumerate() {
        let h = &v["hosts"][i];
        assert_eq!(h["host"], *name, "{v}");
        assert_eq!(h["status"], "unreachable", "{v}");
        assert_eq!(h["port"], dead, "{v}");
        let other = if i == 0 { "web-02" } else { "web-01" };
        assert!(!h["message"].as_str().unwrap_or("").contains(other), "{name} reports {other}'s error: {v}");
    }
}
