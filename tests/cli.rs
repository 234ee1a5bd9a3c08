//! The command line's conventions, through the real binary: one way to name
//! the config repo (`-C DIR`/`--dir DIR`, `SCALER_DIR`, discovery from the
//! working directory up, the positional DIR where a command has one) and one
//! did-you-mean message for a name the config lacks.

use std::path::Path;

use crate::harness::{stderr, stdout, Cli};

fn quickstart() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart")
}

#[test]
fn the_repo_is_found_from_a_subdirectory_like_git() {
    // examples/quickstart/tests has no Project document; its parent does.
    let out = Cli::new().run(&quickstart().join("tests"), &["validate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Valid: 13 objects"), "{}", stdout(&out));
}

#[test]
fn dash_c_and_scaler_dir_name_the_repo_on_any_command() {
    let elsewhere = tempfile::tempdir().unwrap();
    let qs = quickstart();
    let qs = qs.to_str().unwrap();
    for args in [vec!["-C", qs, "validate"], vec!["validate", "--dir", qs], vec!["validate", "-C", qs]] {
        let out = Cli::new().run(elsewhere.path(), &args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).contains("Valid: 13 objects"), "{args:?}: {}", stdout(&out));
    }
    let out = Cli::new().env("SCALER_DIR", qs).run(elsewhere.path(), &["validate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // the flag wins over the environment
    let out = Cli::new().env("SCALER_DIR", "/nonexistent").run(elsewhere.path(), &["-C", qs, "validate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // `exec` and `run` take it too (they had a `--dir` of their own)
    let out = Cli::new().run(elsewhere.path(), &["run", "--check", "--dir", qs, "nosuchplaybook"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("no playbook `nosuchplaybook` in the config"), "{}", stderr(&out));
}

#[test]
fn no_repo_found_says_where_it_looked_and_how_to_name_one() {
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Cli::new().run(elsewhere.path(), &["status"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no config repo found"), "{err}");
    assert!(err.contains(&elsewhere.path().display().to_string()), "{err}");
    assert!(err.contains("-C DIR") && err.contains("SCALER_DIR"), "{err}");
}

#[test]
fn the_repo_named_twice_is_a_usage_error() {
    let elsewhere = tempfile::tempdir().unwrap();
    let qs = quickstart();
    let out = Cli::new().run(elsewhere.path(), &["-C", qs.to_str().unwrap(), "validate", elsewhere.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("named twice"), "{}", stderr(&out));
}

#[test]
fn unknown_names_get_one_did_you_mean() {
    let qs = quickstart();
    let cli = Cli::new();
    let cases: [(&[&str], u8, &str); 4] = [
        (&["query", "lod1"], 1, "no counter `lod1` in the config; did you mean `load1`?"),
        (&["scale", "wbe", "--to", "1"], 1, "no group `wbe` in the config; did you mean `web`?"),
        (&["run", "--check", "anounce"], 4, "no playbook `anounce` in the config; did you mean `announce`?"),
        (&["exec", "wbe", "--", "true"], 4, "no target `wbe` in the config; did you mean `web`?"),
    ];
    for (args, code, want) in cases {
        let out = cli.run(&qs, args);
        assert_eq!(out.status.code(), Some(i32::from(code)), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn a_format_word_where_a_path_is_meant_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let qs = quickstart();
    let export = qs.join("../monscale/export.json");
    std::fs::write(dir.path().join("fleet.txt"), "127.0.0.1:1\n").unwrap();
    let cases: [&[&str]; 3] = [
        &["survey", "-i", "fleet.txt", "-o", "json"],
        &["import", "monscale", export.to_str().unwrap(), "--out", "yaml"],
        &["-C", qs.to_str().unwrap(), "plan", "-o", "json"],
    ];
    for args in cases {
        let out = Cli::new().run(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("looks like an output format") && stderr(&out).contains("--json"), "{args:?}: {}", stderr(&out));
    }
    // nothing was written under the format's name
    assert!(!dir.path().join("json").exists() && !dir.path().join("yaml").exists());
}

#[test]
fn plan_quiet_prints_only_the_summary_line() {
    let qs = quickstart();
    // a fresh state: the repo copy's own `.scaler/` would be shared
    let repo = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&qs).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), repo.path().join(e.file_name())).unwrap();
        }
    }
    let out = Cli::new().run(repo.path(), &["plan", "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Plan: 15 to add, 0 to change, 0 to destroy.\n");
    assert_eq!(stderr(&out), "");
    let full = Cli::new().run(repo.path(), &["plan"]);
    assert!(stdout(&full).lines().count() > 15, "{}", stdout(&full));
}

#[test]
fn import_errors_are_printed_once_and_a_misspelled_field_once() {
    let dir = tempfile::tempdir().unwrap();
    let export = std::fs::read_to_string(quickstart().join("../monscale/export.json")).unwrap();
    let typo = export.replacen("\"time_limit\": 120", "\"time_limt\": 120", 1);
    assert_ne!(typo, export, "the shipped export changed; pick another field");
    std::fs::write(dir.path().join("typo.json"), typo).unwrap();
    let out = Cli::new().run(dir.path(), &["import", "monscale", "typo.json", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    // the JSON carries the errors; stderr does not repeat them
    assert_eq!(stderr(&out), "");
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let errors: Vec<&str> = doc["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(errors.iter().any(|e| e.contains("unknown field `time_limt` of Threshold, did you mean `time_limit`?")), "{errors:#?}");
    assert!(!errors.iter().any(|e| e.contains("missing field `time_limit`")), "{errors:#?}");
    // without --json: on stderr, once each
    let out = Cli::new().run(dir.path(), &["import", "monscale", "typo.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().filter(|l| l.contains("time_limt")).count(), 1, "{}", stderr(&out));
}
