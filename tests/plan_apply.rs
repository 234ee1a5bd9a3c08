//! plan / apply / destroy / state / unlock end to end, through the real
//! binary, with local nodes as real processes on loopback.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use scaler::store::{SqliteStore, Store};

use crate::harness::wait_until;

/// A temp copy of a config repo whose local nodes use a private port range.
/// Dropping it destroys every node it launched.
struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    /// A copy of `examples/<name>`.
    fn example(name: &str) -> Repo {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
        let repo = Repo { dir: tempfile::tempdir().unwrap() };
        copy_dir(&src, repo.path());
        repo.fresh_ports();
        repo
    }

    /// A repo with these files.
    fn with(files: &[(&str, &str)]) -> Repo {
        let repo = Repo { dir: tempfile::tempdir().unwrap() };
        for (name, text) in files {
            repo.write(name, text);
        }
        repo.fresh_ports();
        repo
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, text: &str) {
        let p = self.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path().join(name)).unwrap()
    }

    /// Rewrites every `port_base:` to a free range.
    fn fresh_ports(&self) {
        for entry in std::fs::read_dir(self.path()).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&p).unwrap();
                if text.contains("port_base:") {
                    let base = free_port_base(10);
                    let out: Vec<String> = text
                        .lines()
                        .map(|l| match l.find("port_base:") {
                            Some(i) => format!("{}port_base: {base}", &l[..i]),
                            None => l.to_string(),
                        })
                        .collect();
                    std::fs::write(&p, out.join("\n") + "\n").unwrap();
                }
            }
        }
    }

    fn scaler(&self, args: &[&str]) -> Output {
        scaler_in(self.path(), args, None)
    }

    /// Starts `scaler ARGS` in the background (to kill it mid-way).
    fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_scaler"))
            .args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.scaler(args);
        assert!(out.status.success(), "scaler {args:?} failed:\nstdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    fn plan_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["plan", "--json", "."])).unwrap()
    }

    fn store(&self) -> SqliteStore {
        SqliteStore::open(&self.path().join(".scaler/state.db")).unwrap()
    }

    fn running_nodes(&self) -> Vec<scaler::store::NodeRecord> {
        let snap = self.store().snapshot().unwrap();
        snap.nodes.into_iter().filter(|n| n.status == scaler::store::NodeStatus::Ready).collect()
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        if self.path().join(".scaler/state.db").exists() {
            let _ = scaler_in(self.path(), &["destroy", "--auto-approve", "--allow-destroy-all", "."], None);
        }
        // Anything left (a group removed from config, a killed apply).
        let nodes = self.path().join(".scaler/nodes");
        if let Ok(projects) = std::fs::read_dir(&nodes) {
            for p in projects.flatten() {
                for n in std::fs::read_dir(p.path()).into_iter().flatten().flatten() {
                    if let Ok(pid) = std::fs::read_to_string(n.path().join("pid")) {
                        if let Ok(pid) = pid.trim().parse::<i32>() {
                            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                        }
                    }
                }
            }
        }
    }
}

fn scaler_in(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scaler"));
    cmd.args(args).current_dir(dir).env("NO_COLOR", "1").env_remove("SCALER_LOG");
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn copy_dir(src: &Path, dst: &Path) {
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_name() == ".scaler" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), to).unwrap();
        }
    }
}

/// The first port of `n` consecutive free loopback ports, at random, in
/// 21000-32767: above the harness's `free_port` range and below the
/// kernel's ephemeral range (32768-60999), where any outgoing connection
/// of a parallel test may take a port between this check and the node's bind.
fn free_port_base(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16).wrapping_mul(31);
    loop {
        let k = NEXT.fetch_add(1, Ordering::SeqCst);
        let base = 21000 + (seed.wrapping_add(k.wrapping_mul(37)) % 290) * 40;
        if (0..n).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn changes(plan: &serde_json::Value) -> Vec<(String, String)> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["action"].as_str().unwrap().to_string(), c["address"].as_str().unwrap().to_string()))
        .collect()
}

const TWO_NODES: &str = r#"
kind: Project
name: PROJECT
state: { lock_ttl: 4s }
---
kind: NodeTemplate
name: n
provider: local
local:
  command: echo {{ node.name }} >> ../../../../starts.log && sleep 0.3 && exec python3 -m http.server {{ node.port }} --bind 127.0.0.1
  port_base: 20000
  ready: { tcp: true, timeout: 20s }
  grace: 2s
---
kind: Group
name: web
template: n
min: 1
max: 8
desired: DESIRED
"#;

fn fleet(project: &str, desired: u32) -> Repo {
    Repo::with(&[("scaler.yaml", &TWO_NODES.replace("PROJECT", project).replace("DESIRED", &desired.to_string()))])
}

#[test]
fn quickstart_apply_brings_nodes_up_then_plan_is_empty() {
    let repo = Repo::example("quickstart");
    let out = repo.ok(&["apply", "--auto-approve", "."]);
    assert!(out.contains("+ node") && out.contains("web/web-01") && out.contains("web/web-02"), "{out}");
    assert!(out.contains("Apply complete!"), "{out}");
    let nodes = repo.running_nodes();
    assert_eq!(nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["web-01", "web-02"]);
    for n in &nodes {
        let addr = n.address.clone().unwrap();
        let body = http_get(&addr, "/status").unwrap_or_default();
        assert!(body.contains(&format!("\"node\":\"{}\"", n.name)), "{addr}: {body}");
    }
    let plan = repo.scaler(&["plan", "--detailed-exitcode", "."]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stdout));
    assert!(text(&plan.stdout).contains("No changes."));
}

#[test]
fn first_plan_of_quickstart_lists_every_object() {
    let repo = Repo::example("quickstart");
    let out = repo.scaler(&["plan", "--detailed-exitcode", "."]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let port_free: String = stdout.lines().collect::<Vec<_>>().join("\n");
    insta::assert_snapshot!("quickstart_first_plan", port_free);
}

#[test]
fn drift_a_dead_node_is_replaced() {
    let repo = fleet("drift", 2);
    repo.ok(&["apply", "--auto-approve", "."]);
    let victim = repo.running_nodes().into_iter().find(|n| n.name == "web-02").unwrap();
    let pid: i32 = victim.provider_id.unwrap().parse().unwrap();
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_until(Duration::from_secs(10), "the killed node to show as dead", || {
        changes(&repo.plan_json()).contains(&("replace".to_string(), "node.web/web-02".to_string()))
    });
    let out = repo.ok(&["plan", "."]);
    assert!(out.contains("-/+ node") && out.contains("process died outside scaler"), "{out}");
    assert!(out.contains("Plan: 1 to add, 0 to change, 1 to destroy."), "{out}");
    repo.ok(&["apply", "--auto-approve", "."]);
    assert!(changes(&repo.plan_json()).is_empty());
    let starts = repo.read("starts.log");
    assert_eq!(starts.lines().filter(|l| *l == "web-02").count(), 2, "{starts}");
    assert_eq!(starts.lines().filter(|l| *l == "web-01").count(), 1, "{starts}");
}

#[test]
fn saved_plan_applies_exactly_and_a_stale_one_is_refused() {
    let repo = fleet("stale", 1);
    repo.ok(&["plan", "-o", "one.plan", "."]);
    repo.ok(&["apply", "one.plan"]);
    assert_eq!(repo.running_nodes().len(), 1);
    // Applying the same saved plan again: the state moved.
    let again = repo.scaler(&["apply", "one.plan"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("plan is stale"), "{}", text(&again.stderr));
    // A plan, then a config change: stale too.
    repo.ok(&["plan", "-o", "two.plan", "."]);
    let cfg = repo.read("scaler.yaml").replace("desired: 1", "desired: 2");
    repo.write("scaler.yaml", &cfg);
    let out = repo.scaler(&["apply", "two.plan"]);
    assert!(text(&out.stderr).contains("plan is stale: the config changed"), "{}", text(&out.stderr));
    // The lock was released: a fresh apply works.
    repo.ok(&["apply", "--auto-approve", "."]);
    assert_eq!(repo.running_nodes().len(), 2);
}

#[test]
fn an_edited_plan_file_is_refused_and_nothing_is_applied() {
    let repo = fleet("edited", 1);
    repo.ok(&["plan", "-o", "one.plan", "."]);
    let saved = repo.read("one.plan");
    assert!(saved.contains("\"digest\""), "{saved}");
    // The diff that was shown says web-01; the edited file would launch another node.
    let edited = saved.replace("web-01", "web-07");
    assert_ne!(edited, saved);
    repo.write("one.plan", &edited);
    let out = repo.scaler(&["apply", "one.plan"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("plan file was modified"), "{}", text(&out.stderr));
    assert!(repo.running_nodes().is_empty(), "nothing may be applied from an edited plan");
    // A file without its digest is refused too.
    let mut v: serde_json::Value = serde_json::from_str(&saved).unwrap();
    v.as_object_mut().unwrap().remove("digest");
    repo.write("one.plan", &serde_json::to_string_pretty(&v).unwrap());
    let out = repo.scaler(&["apply", "one.plan"]);
    assert!(text(&out.stderr).contains("has no `digest`"), "{}", text(&out.stderr));
    // The file as written applies.
    repo.write("one.plan", &saved);
    repo.ok(&["apply", "one.plan"]);
    assert_eq!(repo.running_nodes().len(), 1);
}

#[test]
fn apply_refuses_to_prompt_without_a_terminal() {
    let repo = fleet("noprompt", 1);
    let out = scaler_in(repo.path(), &["apply", "."], Some("yes\n"));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("stdin is not a terminal"), "{}", text(&out.stderr));
    assert!(repo.running_nodes().is_empty());
}

#[test]
fn kill_9_during_apply_loses_nothing_and_doubles_nothing() {
    let repo = fleet("crash", 5);
    let mut child = repo.spawn(&["apply", "--auto-approve", "--parallelism", "1", "."]);
    let db = repo.path().join(".scaler/state.db");
    wait_until(Duration::from_secs(60), "two nodes to be recorded as running", || {
        db.exists() && SqliteStore::open(&db).map(|s| s.snapshot().map(|sn| sn.nodes.iter().filter(|n| n.status == scaler::store::NodeStatus::Ready).count() >= 2).unwrap_or(false)).unwrap_or(false)
    });
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    child.wait().unwrap();

    // The plan shows exactly the remaining work.
    let plan = repo.plan_json();
    // Slots never launched are created; one launched but not ready (killed
    // during its readiness wait) is resumed.
    let creates: Vec<String> = changes(&plan).into_iter().filter(|(a, _)| a == "create" || a == "update").map(|(_, n)| n).collect();
    let started: Vec<String> = repo.read("starts.log").lines().map(str::to_string).collect();
    let alive = plan["groups"][0]["nodes_before"].as_u64().unwrap() as usize;
    assert_eq!(creates.len(), 5 - alive, "plan {creates:?}, started {started:?}");
    assert!((2..5).contains(&alive), "alive {alive}");

    // The killed apply's lease still holds the lock until it expires.
    let locked = repo.scaler(&["apply", "--auto-approve", "."]);
    let err = text(&locked.stderr);
    assert_eq!(locked.status.code(), Some(1), "{err}");
    assert!(err.contains("state is locked") && err.contains("scaler unlock"), "{err}");

    // After expiry the lock can be taken again, and apply finishes the work.
    wait_until(Duration::from_secs(30), "the lease to expire and apply to succeed", || {
        repo.scaler(&["apply", "--auto-approve", "."]).status.success()
    });
    assert!(changes(&repo.plan_json()).is_empty());
    let nodes = repo.running_nodes();
    assert_eq!(nodes.len(), 5);
    let started = repo.read("starts.log");
    for n in 1..=5 {
        let name = format!("web-{n:02}");
        assert_eq!(started.lines().filter(|l| *l == name).count(), 1, "{name} started more than once:\n{started}");
    }
}

#[test]
fn prevent_destroy_refuses_destroy_and_scale_in() {
    let repo = fleet("guarded", 2);
    let cfg = repo.read("scaler.yaml") + "prevent_destroy: true\n";
    repo.write("scaler.yaml", &cfg);
    repo.ok(&["apply", "--auto-approve", "."]);
    let out = repo.scaler(&["destroy", "--auto-approve", "."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("has `prevent_destroy: true`; this plan would destroy node `web-02`"), "{}", text(&out.stdout));
    repo.write("scaler.yaml", &cfg.replace("desired: 2", "desired: 1"));
    let out = repo.scaler(&["plan", "."]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(repo.running_nodes().len(), 2);
    // Lift the guard so the test can clean up.
    repo.write("scaler.yaml", &cfg.replace("prevent_destroy: true\n", ""));
}

#[test]
fn builtin_policy_refuses_destroying_every_node_without_the_flag() {
    let repo = fleet("policy", 1);
    repo.ok(&["apply", "--auto-approve", "."]);
    let cfg = repo.read("scaler.yaml");
    let without_group = cfg.split("---\nkind: Group").next().unwrap().to_string();
    repo.write("scaler.yaml", &without_group);
    let out = repo.scaler(&["plan", "."]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("policy `builtin` rule `no-total-destroy` denies this plan"), "{stdout}");
    let out = repo.ok(&["apply", "--auto-approve", "--allow-destroy-all", "."]);
    assert!(out.contains("Apply complete!"), "{out}");
    assert!(repo.running_nodes().is_empty());
}

#[test]
fn user_policy_denies_with_its_message() {
    let repo = fleet("userpolicy", 3);
    let cfg = repo.read("scaler.yaml")
        + "---\nkind: Policy\nname: small\nrules:\n  - name: at-most-two\n    each: group\n    deny: group.nodes_after > 2\n    message: \"group {{ group.name }} would have {{ group.nodes_after }} nodes\"\n";
    repo.write("scaler.yaml", &cfg);
    let out = repo.scaler(&["apply", "--auto-approve", "."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("policy `small` rule `at-most-two` denies this plan: group web would have 3 nodes"), "{}", text(&out.stdout));
    assert!(repo.running_nodes().is_empty());
}

#[test]
fn target_and_exclude_limit_the_plan() {
    let repo = Repo::example("quickstart");
    let plan: serde_json::Value = serde_json::from_str(&repo.ok(&["plan", "--json", "--target", "group.web", "."])).unwrap();
    let addrs: Vec<String> = changes(&plan).into_iter().map(|(_, a)| a).collect();
    assert_eq!(addrs, ["group.web", "node.web/web-01", "node.web/web-02"]);
    let plan: serde_json::Value =
        serde_json::from_str(&repo.ok(&["plan", "--json", "--target", "group.web", "--exclude", "node.web/web-02", "."])).unwrap();
    let addrs: Vec<String> = changes(&plan).into_iter().map(|(_, a)| a).collect();
    assert_eq!(addrs, ["group.web", "node.web/web-01"]);
}

#[test]
fn plan_json_matches_its_schema_and_changed_objects_show_field_diffs() {
    let repo = Repo::example("quickstart");
    repo.ok(&["apply", "--auto-approve", "--target", "trigger.", "."]);
    let monitoring = repo.read("monitoring.yaml").replace("for: 2m", "for: 3m");
    repo.write("monitoring.yaml", &monitoring);
    let out = repo.ok(&["plan", "--target", "trigger.web-busy", "."]);
    assert!(out.contains("~ trigger") && out.contains("- for: 2m") && out.contains("+ for: 3m"), "{out}");
    assert!(out.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{out}");

    let plan = repo.plan_json();
    assert_eq!(plan["format_version"], "1");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/plan.schema.json")).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&plan).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn validate_names_an_undefined_template_variable_before_apply_can_hit_it() {
    let repo = fleet("undefined", 1);
    let cfg = repo.read("scaler.yaml");
    assert!(cfg.contains("node.port"), "the fleet config uses node.port: {cfg}");
    repo.write("scaler.yaml", &cfg.replacen("node.port", "node.prot", 1));
    let out = repo.scaler(&["validate", "."]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr) + &text(&out.stdout);
    assert!(err.contains("undefined variable `node.prot`") && err.contains("node.port"), "{err}");
    assert!(err.contains("scaler.yaml:") && err.contains("local.command"), "{err}");
    // Nothing was started: apply refuses the config the same way.
    let out = repo.scaler(&["apply", "--auto-approve", "."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(repo.running_nodes().is_empty());
}

#[test]
fn plan_out_refuses_a_format_name_for_a_file() {
    let repo = fleet("outjson", 1);
    let out = repo.scaler(&["plan", "-o", "json", "."]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("looks like an output format") && text(&out.stderr).contains("--json"), "{}", text(&out.stderr));
    assert!(!repo.path().join("json").exists(), "no file named `json` was written");
    repo.ok(&["plan", "-o", "./json", "."]);
    assert!(repo.path().join("json").exists());
}

#[test]
fn a_node_left_creating_is_unfinished_work_not_no_changes() {
    let repo = fleet("unfinished", 1);
    repo.ok(&["apply", "--auto-approve", "."]);
    assert!(repo.ok(&["plan", "."]).contains("No changes"));
    // An apply killed during the readiness wait leaves the live node
    // recorded as `creating`.
    let mut node = repo.running_nodes().remove(0);
    node.status = scaler::store::NodeStatus::Creating;
    repo.store().commit(&[scaler::store::Mutation::PutNode(node)]).unwrap();
    let out = repo.ok(&["plan", "."]);
    assert!(!out.contains("No changes") && out.contains("Unfinished") && out.contains("web/web-01"), "{out}");
    let code = repo.scaler(&["plan", "--detailed-exitcode", "."]).status.code();
    assert_eq!(code, Some(2), "unfinished work is a change for --detailed-exitcode");
    repo.ok(&["apply", "--auto-approve", "."]);
    assert_eq!(repo.running_nodes().len(), 1);
    assert!(repo.ok(&["plan", "."]).contains("No changes"));
}

#[test]
fn kill_9_during_the_readiness_wait_is_unfinished_work_that_apply_resumes() {
    // One node that takes a few seconds before it listens.
    let slow = TWO_NODES.replace("PROJECT", "slow").replace("DESIRED", "1").replace("sleep 0.3", "sleep 4");
    let repo = Repo::with(&[("scaler.yaml", &slow)]);
    let mut child = repo.spawn(&["apply", "--auto-approve", "."]);
    let starts = repo.path().join("starts.log");
    wait_until(Duration::from_secs(30), "the node to start", || std::fs::read_to_string(&starts).is_ok_and(|s| s.contains("web-01")));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    child.wait().unwrap();

    // The node runs but never finished its life cycle: not capacity, not a
    // host, and the plan says what remains.
    let plan = repo.plan_json();
    assert_eq!(changes(&plan), [("update".to_string(), "node.web/web-01".to_string())], "{plan:#}");
    assert_eq!(plan["groups"][0]["nodes_before"], 0, "a node that is not ready is not capacity");
    let human = repo.ok(&["plan", "."]);
    assert!(human.contains("~ node") && human.contains("resume: it is `running`, not ready"), "{human}");
    let recorded = repo.store().snapshot().unwrap().nodes;
    assert_eq!(recorded.len(), 1);
    assert_ne!(recorded[0].status, scaler::store::NodeStatus::Ready);
    let hosts = repo.ok(&["state", "list", "."]);
    assert!(!hosts.contains("ready"), "{hosts}");

    // After the killed apply's lease expires, apply resumes the node.
    wait_until(Duration::from_secs(30), "the lease to expire and apply to succeed", || {
        repo.scaler(&["apply", "--auto-approve", "."]).status.success()
    });
    let nodes = repo.running_nodes();
    assert_eq!(nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["web-01"], "ready");
    assert!(http_get(nodes[0].address.as_deref().unwrap(), "/").is_some(), "it serves");
    assert!(changes(&repo.plan_json()).is_empty());
    assert_eq!(repo.read("starts.log").lines().filter(|l| *l == "web-01").count(), 1, "resumed, not launched again");
}

#[test]
fn least_busy_scale_in_removes_the_node_whose_counter_was_lowest_last() {
    let yaml = TWO_NODES.replace("PROJECT", "busy").replace("DESIRED", "3")
        + "scale_in: { pick: least-busy, counter: sessions }\n---\nkind: Counter\nname: sessions\nsource: { push: {} }\n";
    let repo = Repo::with(&[("scaler.yaml", &yaml)]);
    repo.ok(&["apply", "--auto-approve", "."]);
    // The newest node is the busiest now; web-01 was quiet once but is busy
    // now, so its last value is what counts.
    let now = chrono::Utc::now().timestamp_millis();
    let key = |h: &str| scaler::store::SeriesKey::new("sessions", h);
    let samples = [
        scaler::store::Sample::value(key("web-01"), now - 5000, 0.0),
        scaler::store::Sample::value(key("web-01"), now - 1000, 40.0),
        scaler::store::Sample::value(key("web-02"), now - 1000, 3.0),
        scaler::store::Sample::value(key("web-03"), now - 1000, 90.0),
    ];
    scaler::store::SampleStore::append(&mut repo.store(), &samples).unwrap();
    repo.write("scaler.yaml", &yaml.replace("desired: 3", "desired: 1"));
    let out = repo.ok(&["plan", "."]);
    assert!(out.contains("web/web-01") && out.contains("web/web-02") && !out.contains("web/web-03"), "{out}");
    assert!(out.contains("scale in to 1, least busy first"), "{out}");
    repo.ok(&["apply", "--auto-approve", "."]);
    assert_eq!(repo.running_nodes().iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["web-03"]);
}

#[test]
fn a_held_lock_is_refused_and_unlock_breaks_it() {
    let repo = fleet("unlock", 1);
    repo.ok(&["plan", "."]);
    let mut store = repo.store();
    let lock = store
        .lock(&scaler::store::LockRequest { owner: "someone@elsewhere".into(), operation: "apply".into(), ttl: Duration::from_secs(3600) })
        .unwrap();
    let out = repo.scaler(&["apply", "--auto-approve", "."]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains(&format!("scaler unlock {}", lock.id)) && err.contains("someone@elsewhere"), "{err}");
    // The lock is taken before planning: a locked apply decides nothing.
    assert!(!text(&out.stdout).contains("Plan:") && !text(&out.stdout).contains("to add"), "{}", text(&out.stdout));
    let out = repo.ok(&["unlock", &lock.id[..8], "."]);
    assert!(out.contains(&format!("Broke lock {}", lock.id)), "{out}");
    repo.ok(&["apply", "--auto-approve", "."]);
    assert!(matches!(store.renew(&lock.id, Duration::from_secs(1)), Err(scaler::store::StoreError::LockLost(_))));
}

#[test]
fn scale_records_desired_within_limits() {
    let repo = fleet("scale", 1);
    repo.ok(&["apply", "--auto-approve", "."]);
    let out = repo.scaler(&["scale", "web", "--to", "9", "."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("group `web` is at its limit: 9 nodes asked, max is 8"), "{}", text(&out.stderr));
    repo.ok(&["scale", "web", "--by", "1", "."]);
    let plan = repo.plan_json();
    assert_eq!(changes(&plan), [("create".to_string(), "node.web/web-02".to_string())]);
    repo.ok(&["apply", "--auto-approve", "."]);
    assert_eq!(repo.running_nodes().len(), 2);
    repo.ok(&["scale", "web", "--to", "1", "."]);
    let plan = repo.plan_json();
    assert_eq!(changes(&plan), [("delete".to_string(), "node.web/web-02".to_string())]);
}

/// The one desired-count rule (docs/config.md#group): a scale made after
/// git changed `desired` starts from git's value and is kept by the
/// planner; a later git change overrides it.
#[test]
fn git_changes_desired_then_a_scale_then_apply_keeps_both() {
    let repo = fleet("interleave", 1);
    repo.ok(&["apply", "--auto-approve", "."]);
    assert_eq!(repo.running_nodes().len(), 1);
    // git says 2 (not applied yet), then a scale by 1 on top of it.
    repo.write("scaler.yaml", &repo.read("scaler.yaml").replace("desired: 1", "desired: 2"));
    let out = repo.ok(&["scale", "web", "--by", "1", "--json", "."]);
    let scaled: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((scaled["from"].as_u64(), scaled["to"].as_u64()), (Some(2), Some(3)), "{out}");
    let plan = repo.plan_json();
    let mut creates: Vec<String> = changes(&plan).into_iter().filter(|(a, _)| a == "create").map(|(_, n)| n).collect();
    creates.sort();
    assert_eq!(creates, ["node.web/web-02", "node.web/web-03"], "{plan}");
    repo.ok(&["apply", "--auto-approve", "."]);
    assert_eq!(repo.running_nodes().len(), 3);
    assert!(repo.ok(&["plan", "."]).contains("No changes."));
    // A later change of `desired` in git wins over the runtime count.
    repo.write("scaler.yaml", &repo.read("scaler.yaml").replace("desired: 2", "desired: 1"));
    let plan = repo.plan_json();
    let deletes = changes(&plan).into_iter().filter(|(a, _)| a == "delete").count();
    assert_eq!(deletes, 2, "{plan}");
}

#[test]
fn init_scaffolds_a_repo_that_validates_and_plans() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("my-fleet");
    let out = scaler_in(dir.path(), &["init", "my-fleet"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(std::fs::read_to_string(target.join(".gitignore")).unwrap().contains(".scaler/"));
    assert!(target.join(".git").is_dir());
    let out = scaler_in(&target, &["validate", "."], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = scaler_in(&target, &["plan", "--json", "."], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["summary"]["add"], 6, "{plan}");
    let again = scaler_in(dir.path(), &["init", "my-fleet"], None);
    assert_eq!(again.status.code(), Some(1));
}

#[test]
fn state_list_and_show() {
    let repo = fleet("state", 1);
    repo.ok(&["apply", "--auto-approve", "."]);
    let list = repo.ok(&["state", "list", "."]);
    assert!(list.contains("group.web") && list.contains("node.web/web-01  ready  127.0.0.1:"), "{list}");
    let show: serde_json::Value = serde_json::from_str(&repo.ok(&["state", "show", "--json", "."])).unwrap();
    assert!(show["serial"].as_u64().unwrap() >= 3);
    assert!(show["lock"].is_null());
    let node: serde_json::Value = serde_json::from_str(&repo.ok(&["state", "show", "--json", ".", "node.web/web-01"])).unwrap();
    assert_eq!(node["status"], "ready");
    let missing = repo.scaler(&["state", "show", ".", "node.web/web-09"]);
    assert_eq!(missing.status.code(), Some(1));
    // The address alone (no DIR) is the address, not a directory.
    let node: serde_json::Value = serde_json::from_str(&repo.ok(&["state", "show", "--json", "node.web/web-01"])).unwrap();
    assert_eq!(node["status"], "ready");
}

#[test]
fn help_teaches_with_examples() {
    for cmd in ["init", "validate", "schema", "plan", "apply", "destroy", "scale", "unlock"] {
        let out = scaler_in(Path::new("."), &[cmd, "--help"], None);
        let help = text(&out.stdout);
        assert!(out.status.success() && help.contains("Examples:"), "{cmd}: {help}");
    }
    let out = scaler_in(Path::new("."), &["--help"], None);
    insta::assert_snapshot!("help_main", text(&out.stdout));
}

#[allow(dead_code)]
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_failed_launch_stops_the_apply_and_state_tells_what_was_done() {
    let repo = fleet("failing", 3);
    let cfg = repo.read("scaler.yaml").replace(
        "command: echo",
        "command: test {{ node.index }} -ne 2 || exit 3; echo",
    );
    repo.write("scaler.yaml", &cfg);
    let out = repo.scaler(&["apply", "--auto-approve", "--parallelism", "1", "."]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("`node.web/web-02`: node `web-02` exited during launch"), "{err}");
    assert!(err.contains("1 not started"), "{err}");
    assert_eq!(repo.running_nodes().iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["web-01"]);
    let plan = repo.plan_json();
    assert_eq!(
        changes(&plan),
        [("create".to_string(), "node.web/web-02".to_string()), ("create".to_string(), "node.web/web-03".to_string())]
    );
    assert_eq!(plan["changes"][0]["reason"], "launch did not finish");
    // The lock was released on failure.
    assert!(repo.store().current_lock().unwrap().is_none());
}

#[test]
fn an_ec2_group_is_an_error_naming_it_and_the_other_groups_still_apply() {
    let ec2 = "---\nkind: NodeTemplate\nname: cloud-node\nprovider: ec2\nec2: { region: eu-west-1, image: ami-1, instance_type: t3.small }\n---\nkind: Group\nname: cloud\ntemplate: cloud-node\nmin: 1\nmax: 3\n";
    let repo = fleet("mixed", 1);
    repo.write("scaler.yaml", &(repo.read("scaler.yaml") + ec2));
    let warning = "warning: scaler.yaml:24:1: `provider: ec2` is not in this build";
    let error = "group `cloud`: provider `ec2` is not in this build; its nodes are left out of this plan";

    // plan: the local group's node is planned, the ec2 group is an error naming it; exit 1.
    let out = repo.scaler(&["plan", "--detailed-exitcode", "."]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.starts_with(warning), "{stderr}");
    assert!(stdout.contains("+ node") && stdout.contains("web/web-01") && !stdout.contains("cloud/cloud-01"), "{stdout}");
    assert!(stdout.contains(&format!("Error: {error}")), "{stdout}");
    assert!(stdout.contains("The changes above can still be applied"), "{stdout}");
    let out = repo.scaler(&["plan", "--json", "."]);
    assert_eq!(out.status.code(), Some(1));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["group_errors"], serde_json::json!([{ "group": "cloud", "message": error }]));
    assert_eq!((plan["warnings"][0]["field"].as_str(), plan["warnings"][0]["line"].as_u64()), (Some("provider"), Some(24)));
    assert!(plan.get("errors").is_none(), "{plan}");

    // apply: the local group's node runs; exit 1 names the group left out.
    let out = repo.scaler(&["apply", "--auto-approve", "."]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("Apply complete!"), "{stdout}");
    assert!(stderr.contains(&format!("error: {error}\nevery other change was applied")), "{stderr}");
    assert_eq!(repo.running_nodes().iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["web-01"]);
    // The config is not fully applied, so its revision is not recorded.
    assert_eq!(repo.store().snapshot().unwrap().meta.config_digest, None);

    // Again: nothing else to change, still exit 1; leaving the group out explicitly exits 0.
    let out = repo.scaler(&["apply", "--auto-approve", "."]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("nothing else to change"), "{}", text(&out.stderr));
    let out = repo.scaler(&["plan", "--detailed-exitcode", "--exclude", "group.cloud", "."]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}
