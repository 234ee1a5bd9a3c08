//! Settings this build accepts but does not act on (issue 10 item 7):
//! `scaler validate` names each one at its `file:line:column` as a warning,
//! keeps exit code 0, and says nothing for a config without them.

use std::path::Path;

use serde_json::Value;

use crate::harness::{scaler, stderr, stdout};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `file:line:column field` of every warning in `validate --json`.
fn warnings(json: &Value) -> Vec<String> {
    json["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| format!("{}:{}:{} {}", w["file"].as_str().unwrap(), w["line"], w["column"], w["field"].as_str().unwrap()))
        .collect()
}

#[test]
fn validate_warns_about_every_ignored_setting_at_its_place_and_exits_0() {
    // The full fixture sets each of them.
    let out = scaler(root(), &["validate", "--json", "tests/fixtures/valid/full"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(
        warnings(&json),
        vec![
            // `daemon.source` (its push webhook included),
            // `daemon.auto_apply`, `provision` and `scale_in.pick` are built:
            // no warning for them.
            "templates.yaml:4:1 provider",
        ]
    );
    assert!(json["warnings"].as_array().unwrap().iter().all(|w| w["code"] == "ignored"));

    let out = scaler(root(), &["validate", "tests/fixtures/valid/full"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "Valid: 32 objects, no errors, 1 warning.");
    insta::assert_snapshot!("validate_warnings_full_fixture", stderr(&out));

    // `--quiet` keeps only errors.
    let out = scaler(root(), &["validate", "--quiet", "tests/fixtures/valid/full"]);
    assert_eq!((out.status.code(), stderr(&out)), (Some(0), String::new()));
}

#[test]
fn a_config_without_ignored_settings_validates_without_a_warning() {
    let out = scaler(root(), &["validate", "examples/quickstart"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert!(stdout(&out).contains("no errors."), "{}", stdout(&out));
    let out = scaler(root(), &["validate", "--json", "examples/quickstart"]);
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["warnings"], serde_json::json!([]));
}
