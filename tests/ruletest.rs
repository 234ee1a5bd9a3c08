//! `scaler test`: rule unit tests run through the real binary, on the
//! examples' tests (they must pass), on fixtures that pin the timing
//! semantics (tests/fixtures/ruletests/pass), and on failing and bad test
//! files (tests/fixtures/ruletests/fail).

use std::path::Path;

use serde_json::Value;

use crate::harness::{scaler, stderr, stdout};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["test", "--json"];
    all.extend(args);
    let out = scaler(root(), &all);
    let v = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    (out.status.code().unwrap_or(-1), v)
}

/// `(trigger, fire instant ms)` of one case.
type Fires = Vec<(String, i64)>;

/// The fires of a file's cases, per case.
fn fires(report: &Value) -> Vec<Fires> {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["fires"].as_array().unwrap().iter().map(|f| (f["trigger"].as_str().unwrap().to_string(), f["at_ms"].as_i64().unwrap())).collect()
        })
        .collect()
}

#[test]
fn every_example_ships_rule_tests_that_pass_and_still_validates() {
    let mut examples = 0;
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let dir = entry.unwrap().path();
        // Config repos only (examples/monscale holds an export to import).
        if !dir.join("scaler.yaml").is_file() {
            continue;
        }
        examples += 1;
        let rel = dir.strip_prefix(root()).unwrap().display().to_string();
        let out = scaler(root(), &["test", &rel]);
        assert!(out.status.success(), "{rel}: {}{}", stdout(&out), stderr(&out));
        assert!(!stdout(&out).contains("FAIL"), "{}", stdout(&out));
        // The loader leaves *.test.yaml out of the config.
        let out = scaler(root(), &["validate", &rel]);
        assert!(out.status.success(), "{rel}: {}", stderr(&out));
    }
    assert!(examples >= 1);
}

#[test]
fn the_quickstart_tests_pin_exact_fire_instants() {
    let (code, v) = json(&["examples/quickstart/tests/triggers.test.yaml"]);
    assert_eq!(code, 0, "{v:#}");
    let busy = |at| ("web-busy".to_string(), at);
    assert_eq!(fires(&v[0]), vec![vec![busy(280_000), busy(580_000), ("web-idle".to_string(), 1_590_000)], vec![busy(260_000)]]);
    let f = &v[0]["cases"][0]["fires"][0];
    assert_eq!(f["actions"], serde_json::json!(["scale web by 1", "run announce on local"]));
    assert_eq!(f["pending_since_ms"], 160_000);
    assert_eq!(f["terms"][0]["expr"], "avg(load1, over=\"1m\")");
}

#[test]
fn timing_fixtures_pass_with_the_stated_fire_instants() {
    let out = scaler(root(), &["test", "tests/fixtures/ruletests/pass"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).ends_with("7 files, 9 cases: 9 passed, 0 failed\n"), "{}", stdout(&out));
    let (code, v) = json(&["tests/fixtures/ruletests/pass"]);
    assert_eq!(code, 0);
    let by_file: Vec<(String, Vec<Fires>)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (Path::new(r["file"].as_str().unwrap()).file_name().unwrap().to_string_lossy().to_string(), fires(r)))
        .collect();
    let t = |name: &str, ats: &[i64]| ats.iter().map(|a| (name.to_string(), *a)).collect::<Vec<_>>();
    assert_eq!(
        by_file,
        vec![
            ("boundary.test.yaml".into(), vec![t("edge", &[40_000])]),
            ("breach.test.yaml".into(), vec![t("breach", &[30_000, 90_000, 150_000, 210_000, 270_000])]),
            ("dip.test.yaml".into(), vec![t("dip", &[120_000])]),
            ("error.test.yaml".into(), vec![t("flaky", &[70_000])]),
            ("group.test.yaml".into(), vec![t("any-hot", &[70_000]), vec![], t("any-hot", &[20_000])]),
            ("push.test.yaml".into(), vec![t("backlog", &[55_000])]),
            ("zero-for.test.yaml".into(), vec![t("instant", &[10_000, 30_000, 50_000])]),
        ]
    );
}

#[test]
fn a_failing_test_prints_a_diff_per_instant_and_exits_1() {
    let out = scaler(root(), &["test", "tests/fixtures/ruletests/fail/wrong-fire.test.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "FAIL tests/fixtures/ruletests/fail/wrong-fire.test.yaml (11 evaluations to 1m40s, 2 fires)
     expected (-) and got (+):
       - 20s breach inactive
       + 20s breach pending
       + 30s breach fired
       - 40s breach fired
       - 1m30s breach fired: notify webhook example.com
       + 1m30s breach fired: notify webhook 127.0.0.1:9
1 file, 1 case: 0 passed, 1 failed
"
    );
    let (code, v) = json(&["tests/fixtures/ruletests/fail/wrong-fire.test.yaml"]);
    assert_eq!(code, 1);
    assert_eq!(v[0]["ok"], false);
    let kinds: Vec<&str> = v[0]["cases"][0]["mismatches"].as_array().unwrap().iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["state", "unexpected_fire", "missing_fire", "actions"]);
}

#[test]
fn bad_series_syntax_is_an_error_naming_the_item_and_its_line() {
    let out = scaler(root(), &["test", "tests/fixtures/ruletests/fail/bad-series.test.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("tests/fixtures/ruletests/fail/bad-series.test.yaml:3:11: series[\"breach\"]: series `breach`: `9y`: `9y` is not a number"),
        "{text}"
    );
    assert!(text.contains("1 could not run") || text.contains("1 file could not run"), "{text}");
}

#[test]
fn unknown_counters_and_triggers_are_errors_with_suggestions() {
    let out = scaler(root(), &["test", "tests/fixtures/ruletests/fail/bad-names.test.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("bad-names.test.yaml:3:3: series[\"breech\"]: unknown counter `breech`; did you mean `breach`?"), "{text}");
    assert!(text.contains("bad-names.test.yaml:6:7: expect.fires[0].trigger: unknown trigger `breack`; did you mean `breach`?"), "{text}");
}

#[test]
fn usage_errors_exit_2_missing_files_exit_1_and_no_file_means_the_repo() {
    // No FILE: the config repo's tests; outside any repo, an error saying so.
    let out = scaler(root(), &["test"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no config repo found"), "{}", stderr(&out));
    let out = scaler(&root().join("examples/quickstart/tests"), &["test"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("triggers.test.yaml"), "{}", stdout(&out));
    let out = scaler(root(), &["test", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = scaler(root(), &["test", "tests/fixtures/ruletests/nope.test.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("nope.test.yaml: cannot read"), "{}", stdout(&out));
    let dir = tempfile::tempdir().unwrap();
    let out = scaler(dir.path(), &["test", "."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no `*.test.yaml` files below `.`"), "{}", stderr(&out));
}

#[test]
fn config_is_found_relative_to_the_test_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    std::fs::create_dir_all(cfg.join("deep/er")).unwrap();
    std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
    std::fs::write(
        cfg.join("scaler.yaml"),
        "kind: Project\nname: p\n---\nkind: Counter\nname: q\nsource: { push: {} }\n---\nkind: Trigger\nname: any-q\nwhen: last(q) > 0\nthen:\n  - notify: { webhook: { url: \"https://hooks.example.com/x\" } }\n",
    )
    .unwrap();
    // Judged at the receipt instant (15s), not at the next tick.
    let body = "pushes:\n  - { counter: q, at: 15s, value: 1 }\nexpect:\n  fires:\n    - { trigger: any-q, at: 15s, actions: [\"notify webhook hooks.example.com\"] }\n";
    // Nearest parent holding scaler.yaml.
    std::fs::write(cfg.join("deep/er/a.test.yaml"), body).unwrap();
    // `config:` relative to the test file.
    std::fs::write(dir.path().join("elsewhere/b.test.yaml"), format!("config: ../cfg\n{body}")).unwrap();
    let out = scaler(dir.path(), &["test", "cfg/deep/er/a.test.yaml", "elsewhere/b.test.yaml"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("2 files, 2 cases: 2 passed, 0 failed"), "{}", stdout(&out));
    let (_, v) = {
        let out = scaler(dir.path(), &["test", "--json", "cfg/deep/er/a.test.yaml"]);
        (0, serde_json::from_str::<Value>(&stdout(&out)).unwrap())
    };
    assert_eq!(v[0]["config"], "cfg");
}

#[test]
fn a_sample_counts_toward_one_fire_only_in_scaler_test() {
    // A counter sampled every 60 s, evaluated every 10 s, no `for`, no
    // cooldown: each sample fires once, at the tick it arrives; the ticks
    // after it see the same sample and do not fire again.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("scaler.yaml"),
        "kind: Project\nname: p\n---\nkind: Counter\nname: sparse\ninterval: 60s\nsource: { local: { command: \"echo 0\" } }\n---\nkind: Trigger\nname: sparse-high\nwhen: last(sparse) > 5\nthen:\n  - notify: { webhook: { url: \"https://hooks.example.com/x\" } }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sparse.test.yaml"),
        "interval: 60s\nevaluation_interval: 10s\nduration: 150s\nseries:\n  sparse: \"9 9 9\"\nexpect:\n  states:\n    - { at: 10s, trigger: sparse-high, state: inactive }\n  fires:\n    - { trigger: sparse-high, at: 0s }\n    - { trigger: sparse-high, at: 60s }\n    - { trigger: sparse-high, at: 120s }\n",
    )
    .unwrap();
    let out = scaler(dir.path(), &["test", "sparse.test.yaml"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("1 passed, 0 failed"), "{}", stdout(&out));
}

#[test]
fn scaler_test_judges_pushes_at_their_receipt_instants_as_the_daemon_does() {
    // The same inputs as daemon_timing's dip test: the dip at 12s resets
    // pending, so the fire is at 50s, not at 40s.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("scaler.yaml"),
        "kind: Project\nname: p\n---\nkind: Counter\nname: queue\nsource: { push: {} }\n---\nkind: Trigger\nname: deep\nwhen: last(queue) > 10\nfor: 30s\ncooldown: 5m\nthen:\n  - notify: { webhook: { url: \"https://hooks.example.com/x\" } }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("dip.test.yaml"),
        "evaluation_interval: 10s\nduration: 1m\npushes:\n  - { counter: queue, at: 1s, value: 50 }\n  - { counter: queue, at: 12s, value: 1 }\n  - { counter: queue, at: 15s, value: 50 }\nexpect:\n  fires:\n    - { trigger: deep, at: 50s }\n",
    )
    .unwrap();
    // A push after the last tick of the run is judged too.
    std::fs::write(
        dir.path().join("late.test.yaml"),
        "evaluation_interval: 10s\nduration: 25s\npushes:\n  - { counter: queue, at: 22s, value: 50 }\n  - { counter: queue, at: 24s, value: 60 }\nexpect:\n  fires: []\n  states:\n    - { at: 20s, trigger: deep, state: nodata }\n",
    )
    .unwrap();
    let out = scaler(dir.path(), &["test", "--json", "dip.test.yaml", "late.test.yaml"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v[1]["cases"][0]["evaluations"], 5, "ticks at 0, 10, 20s and the receipts at 22 and 24s: {v}");
}
