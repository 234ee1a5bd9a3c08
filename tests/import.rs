//! `scaler import monscale` through the real binary: a realistic export
//! becomes files that `scaler validate` accepts and that collect from a real
//! Redis; bad exports and second imports write nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::harness::{scaler, stderr, stdout, Server};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/monscale").join(name)
}

/// A temp config repo: the fixture's scaler.yaml, group and playbook.
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture("repo")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    dir
}

/// Every file below `dir` (relative path -> contents).
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    out
}

fn import(dir: &Path, export: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["import", "monscale", export.to_str().unwrap(), "--out", "monitoring"];
    args.extend_from_slice(extra);
    scaler(dir, &args)
}

#[test]
fn a_monscale_export_becomes_yaml_that_validates() {
    let dir = repo();
    let out = import(dir.path(), &fixture("export.json"), &["--json"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let written: Vec<&str> = summary["written"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(
        written,
        [
            "monitoring/monscale-logstash-queue.yaml",
            "monitoring/monscale-logstash-queue-empty.yaml",
            "monitoring/monscale-indexer-cpu.yaml",
            "monitoring/monscale-broker-load.yaml",
        ]
    );
    assert_eq!(summary["objects"], 16);
    assert_eq!(summary["skipped"], serde_json::json!(["`front page` (object 15): inactive"]));
    let text = std::fs::read_to_string(dir.path().join("monitoring/monscale-logstash-queue.yaml")).unwrap();
    assert!(text.starts_with("# Imported by `scaler import monscale` from `export.json`: MonitoredService `Logstash queue` (object 11).\n"), "{text}");
    assert!(text.contains("for: \"300s\""), "{text}");
    assert!(text.contains("cooldown: \"300s\""), "{text}");

    let v = scaler(dir.path(), &["validate", "--json", "."]);
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
    let report: serde_json::Value = serde_json::from_str(&stdout(&v)).unwrap();
    // 4 fixture documents + 4 services x (Target, Counter, Trigger).
    assert_eq!(report["objects"], 16, "{report}");
}

/// A repo that lacks the group the triggers scale gets it (with a
/// placeholder template) from the import; the playbook it lacks is named as
/// a document to add, and validate reports that one only.
#[test]
fn references_the_repo_lacks_are_written_or_named_to_add() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scaler.yaml"), "kind: Project\nname: bare\n").unwrap();
    let out = import(dir.path(), &fixture("export.json"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("wrote monitoring/monscale-logstash.group.yaml\n"), "{}", stdout(&out));
    assert!(!dir.path().join("monitoring/scaler.yaml").exists(), "the repo has a Project: none is written");
    assert!(
        stderr(&out).contains("warning: add Playbook `f5-add-pool-members` (used by Trigger `indexer-cpu`) to the config repo: the import does not write it"),
        "{}",
        stderr(&out)
    );
    let v = scaler(dir.path(), &["validate", "--json", "."]);
    assert_eq!(v.status.code(), Some(1), "{}", stdout(&v));
    let report: serde_json::Value = serde_json::from_str(&stdout(&v)).unwrap();
    let messages: Vec<&str> = report["diagnostics"].as_array().unwrap().iter().map(|d| d["message"].as_str().unwrap()).collect();
    assert!(!messages.iter().any(|m| m.contains("unknown group")), "{messages:?}");
    assert!(!messages.is_empty() && messages.iter().all(|m| m.contains("unknown playbook `f5-add-pool-members`")), "{messages:?}");
}

/// The shipped example, imported into an empty directory, is a config
/// repo that validates: the group its scale actions scale and a Project
/// are written with it. Counts per kind are printed, as text and as JSON.
#[test]
fn the_example_export_imported_into_an_empty_dir_validates() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/monscale/export.json");
    let out = scaler(dir.path(), &["import", "monscale", example.to_str().unwrap(), "--out", "fleet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Read 2 actions, 3 thresholds, 1 infrastructure, 3 services from 9 objects.\n"), "{text}");
    assert!(text.contains("wrote fleet/monscale-logstash.group.yaml\nwrote fleet/scaler.yaml\n"), "{text}");
    let group = std::fs::read_to_string(dir.path().join("fleet/monscale-logstash.group.yaml")).unwrap();
    assert!(group.contains("kind: Group\nname: \"logstash\"\n"), "{group}");
    assert!(group.contains("template: \"logstash-node\"\nmin: 2\nmax: 8\n"), "{group}");
    let v = scaler(dir.path(), &["validate", "--json", "fleet"]);
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
    let report: serde_json::Value = serde_json::from_str(&stdout(&v)).unwrap();
    // Project, NodeTemplate, Group + 3 services x (Target, Counter, Trigger).
    assert_eq!(report["objects"], 12, "{report}");

    let again = tempfile::tempdir().unwrap();
    let out = scaler(again.path(), &["import", "monscale", example.to_str().unwrap(), "--out", ".", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(summary["counts"], serde_json::json!({"actions": 2, "thresholds": 3, "infrastructures": 1, "services": 3}));
    assert_eq!(summary["support"], serde_json::json!(["./monscale-logstash.group.yaml", "./scaler.yaml"]));
    assert_eq!(summary["to_add"], serde_json::json!([]));
    assert!(scaler(again.path(), &["validate", "."]).status.success());
}

/// monscale's releases (0.5 to 0.12) export `assesment` and have no
/// ServiceInfrastructure: a CloudForms action scales the VMs tagged with
/// its `monitoredservice`, which becomes the group.
#[test]
fn an_export_of_a_monscale_release_imports_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let out = scaler(dir.path(), &["import", "monscale", fixture("export-0.12.json").to_str().unwrap(), "--out", "."]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Read 2 actions, 3 thresholds, 0 infrastructures, 3 services from 8 objects.\n"), "{}", stdout(&out));
    let sessions = std::fs::read_to_string(dir.path().join("monscale-web-sessions.yaml")).unwrap();
    assert!(sessions.contains("# Thresholds (ANDed): `sessions queued` (object 2).\n"), "{sessions}");
    assert!(sessions.contains("  - scale: { group: \"web-front\", by: 1 }   # ScaleAction `add web node`\n"), "{sessions}");
    assert!(sessions.contains("tagged `monitoredservice/web-front`"), "{sessions}");
    let idle = std::fs::read_to_string(dir.path().join("monscale-web-sessions-idle.yaml")).unwrap();
    assert!(idle.contains("  - scale: { group: \"web-front\", by: -1 }"), "{idle}");
    let group = std::fs::read_to_string(dir.path().join("monscale-web-front.group.yaml")).unwrap();
    assert!(group.contains("min: 1\nmax: 8\n"), "{group}");
    assert!(group.contains("tags: { cores: \"2\", megabytes: \"2048\""), "{group}");
    let v = scaler(dir.path(), &["validate", "."]);
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
}

#[test]
fn an_unknown_object_type_is_an_error_and_nothing_is_written() {
    let dir = repo();
    let before = snapshot(dir.path());
    let out = import(dir.path(), &fixture("unknown-type.json"), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    let file = fixture("unknown-type.json").display().to_string();
    assert!(
        err.contains(&format!(
            "error: {file}: $[3]: unknown object type `Alarm` (known types: `ScaleAction`, `Threshold`, `ServiceInfrastructure`, `MonitoredService`)"
        )),
        "{err}"
    );
    // Every problem at once: the ill-typed field of another object too.
    assert!(err.contains(&format!("error: {file}: $[5].wisdom_time: expected a whole number of 0 or more, found `\"soon\"`")), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(snapshot(dir.path()), before);
    assert!(!dir.path().join("monitoring").exists());
}

#[test]
fn a_second_import_is_refused_and_changes_nothing() {
    let dir = repo();
    let first = import(dir.path(), &fixture("export.json"), &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let after_first = snapshot(dir.path());
    assert_eq!(after_first.len(), 6, "{:?}", after_first.keys());

    let again = import(dir.path(), &fixture("export.json"), &[]);
    assert_eq!(again.status.code(), Some(1));
    let err = stderr(&again);
    assert!(err.contains("error: refusing to import again: `monitoring/monscale-logstash-queue.yaml` already exists (service `Logstash queue`)"), "{err}");
    assert!(err.contains("Trigger `broker-load` is already declared in"), "{err}");
    assert_eq!(snapshot(dir.path()), after_first);

    // Renamed files still declare the names: refused, and the file that is
    // gone is not written back.
    std::fs::rename(dir.path().join("monitoring/monscale-broker-load.yaml"), dir.path().join("monitoring/broker.yaml")).unwrap();
    let before = snapshot(dir.path());
    let third = import(dir.path(), &fixture("export.json"), &[]);
    assert_eq!(third.status.code(), Some(1));
    let err = stderr(&third);
    assert!(err.contains("Counter `brokerload` is already declared in `monitoring/broker.yaml` (service `broker load`)"), "{err}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn dry_run_prints_the_yaml_and_writes_nothing() {
    let dir = repo();
    let before = snapshot(dir.path());
    let out = import(dir.path(), &fixture("export.json"), &["--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("# ==> monitoring/monscale-logstash-queue.yaml <==\n# Imported by"), "{text}");
    assert!(text.contains("  - \"avg(indexercpu, group=\\\"logstash\\\") <= 20\"   # Threshold `indexer cpu idle low`\n"), "{text}");
    assert_eq!(text.matches("kind: Trigger").count(), 4);
    assert!(stderr(&out).contains("skipped service `front page` (object 15): inactive"), "{}", stderr(&out));
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn the_example_export_imports_and_its_help_shows_an_example() {
    let dir = repo();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/monscale/export.json");
    let out = import(dir.path(), &example, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = scaler(dir.path(), &["validate", "."]);
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
    let help = scaler(dir.path(), &["import", "monscale", "--help"]);
    let help = stdout(&help);
    assert!(help.contains("scaler import monscale export.json --out monitoring/"), "{help}");
}

/// The imported Target and Counter really collect: the queue length of a
/// real Redis list comes back as the counter's value.
#[test]
fn an_imported_redis_counter_collects_the_list_length() {
    let redis = Server::redis();
    for i in 0..7 {
        redis.redis_cmd(&["RPUSH", "jobs", &i.to_string()]);
    }
    let dir = repo();
    let export = serde_json::json!([
        {"type": "ScaleAction", "name": "grow", "action": "launch_cloudforms_vmachine", "data": {}},
        {"type": "Threshold", "assessment": "busy", "time_limit": 60, "metric": "redis_list_length", "operand": ">", "value": 5},
        {"type": "ServiceInfrastructure", "name": "logstash", "max_nodes": 8, "min_nodes": 1},
        {"type": "MonitoredService", "name": "Jobs", "threshold": ["busy"], "action": ["grow"], "active": true, "wisdom_time": 60,
         "data": {"redis_host": "127.0.0.1", "redis_port": redis.port, "redis_list_name": "jobs"}, "infrastructure": "logstash"}
    ]);
    let path = dir.path().join("export.json");
    std::fs::write(&path, export.to_string()).unwrap();
    let out = import(dir.path(), &path, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let c = scaler(dir.path(), &["collect", "--once", "--counter", "jobs", "--json", "."]);
    assert!(c.status.success(), "{}{}", stdout(&c), stderr(&c));
    let text = stdout(&c);
    let sample: serde_json::Value = serde_json::from_str(text.lines().next().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(sample["value"], 7.0, "{text}");
}
