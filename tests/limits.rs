//! Bounded inputs through the real binary: a config file over the size
//! limit, a file with too many YAML nodes, and a template loop that would
//! run until killed each end with a clear error naming the setting that
//! raises the limit.

use std::path::Path;
use std::time::Duration;

use crate::harness::{scaler, stderr, stdout, Cli};

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scaler.yaml"), "kind: Project\nname: t\n").unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn a_config_file_over_the_size_limit_is_refused_before_it_is_parsed() {
    let dir = repo();
    // 5 MiB of comments: over the 4 MiB default.
    let line = format!("# {}\n", "x".repeat(1021));
    write(dir.path(), "huge.yaml", &line.repeat(5 * 1024));
    let out = scaler(dir.path(), &["validate", "."]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out) + &stdout(&out);
    assert!(err.contains("huge.yaml") && err.contains("over the limit of 4194304 bytes"), "{err}");
    assert!(err.contains("SCALER_MAX_CONFIG_BYTES"), "{err}");
    // Raised: the file is read (and is only comments, so it is fine).
    let out = Cli::new().env("SCALER_MAX_CONFIG_BYTES", "8388608").run(dir.path(), &["validate", "."]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_file_with_too_many_nodes_is_refused_at_the_node_that_crosses_the_limit() {
    let dir = repo();
    let mut text = String::from("kind: Target\nname: big\nlabels:\n");
    for i in 0..300_000 {
        text.push_str(&format!("  k{i}: v\n"));
    }
    write(dir.path(), "big.yaml", &text);
    let out = scaler(dir.path(), &["validate", "."]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out) + &stdout(&out);
    assert!(err.contains("big.yaml:") && err.contains("more than 250000 YAML nodes"), "{err}");
    assert!(err.contains("SCALER_MAX_CONFIG_NODES"), "{err}");
    let out = Cli::new().env("SCALER_MAX_CONFIG_NODES", "100").run(dir.path(), &["validate", "."]);
    let err = stderr(&out) + &stdout(&out);
    assert!(err.contains("big.yaml:") && err.contains("more than 100 YAML nodes"), "{err}");
}

#[test]
fn a_runaway_template_loop_stops_with_an_error_naming_the_limit() {
    let dir = repo();
    write(
        dir.path(),
        "pb.yaml",
        "kind: Playbook\nname: loop\non: local\nsteps:\n  - run: \"echo {% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}x{% endfor %}{% endfor %}{% endfor %}\"\n",
    );
    let out = Cli::new().timeout(Duration::from_secs(60)).run(dir.path(), &["run", "loop", "--json"]);
    let all = stdout(&out) + &stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("more than 1000000 instructions") && all.contains("SCALER_TEMPLATE_FUEL"), "{all}");
}
