//! The README tells the truth: every `sh` block of its tour (from `## A
//! tour` to the end) runs, as written, with `bash -e -o pipefail` in a temp
//! copy of the repository (each block from its root), the built binary on
//! `PATH` as `scaler`. A block that cannot run in a test is preceded by
//! `<!-- readme-test: skip (why) -->`; a skip without a reason fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::scaler_bin;

/// A shell block: its first line number in the README, its text, and the
/// skip reason if marked.
struct Block {
    line: usize,
    text: String,
    skip: Option<String>,
}

fn tour_blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut in_tour = false;
    let mut skip: Option<String> = None;
    let mut current: Option<Block> = None;
    for (i, line) in readme.lines().enumerate() {
        if let Some(b) = current.as_mut() {
            if line.trim_start() == "```" {
                blocks.push(current.take().unwrap());
            } else {
                b.text.push_str(line);
                b.text.push('\n');
            }
            continue;
        }
        if line.starts_with("## ") {
            in_tour = in_tour || line == "## A tour";
        }
        if !in_tour {
            continue;
        }
        if let Some(rest) = line.trim().strip_prefix("<!-- readme-test: skip") {
            let why = rest.trim().trim_end_matches("-->").trim().trim_start_matches('(').trim_end_matches(')').trim();
            assert!(!why.is_empty(), "README.md:{}: a skip marker needs a reason: `<!-- readme-test: skip (why) -->`", i + 1);
            skip = Some(why.to_string());
        } else if line.trim_start() == "```sh" {
            current = Some(Block { line: i + 1, text: String::new(), skip: skip.take() });
        } else if !line.trim().is_empty() {
            // a marker applies to the block right after it
            skip = None;
        }
    }
    blocks
}

fn copy_repo(src: &Path, dst: &Path) {
    for name in ["examples", "schema", "policies", "docs", "README.md"] {
        copy(&src.join(name), &dst.join(name));
    }
}

fn copy(src: &Path, dst: &Path) {
    if src.is_dir() {
        std::fs::create_dir_all(dst).unwrap();
        for e in std::fs::read_dir(src).unwrap() {
            let e = e.unwrap();
            if e.file_name() != ".scaler" {
                copy(&e.path(), &dst.join(e.file_name()));
            }
        }
    } else {
        std::fs::copy(src, dst).unwrap();
    }
}

#[test]
fn every_shell_block_of_the_readme_tour_runs() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = tour_blocks(&readme);
    let runnable = blocks.iter().filter(|b| b.skip.is_none()).count();
    assert!(runnable >= 4, "the tour has {runnable} runnable sh blocks; did the parser break?");
    assert!(blocks.len() - runnable <= 6, "too many skipped README blocks: keep exceptions minimal");

    let repo = tempfile::tempdir().unwrap();
    copy_repo(&root, repo.path());
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(scaler_bin(), bin.path().join("scaler")).unwrap();
    let home = tempfile::tempdir().unwrap();
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());

    let mut failures = Vec::new();
    for b in blocks.iter().filter(|b| b.skip.is_none()) {
        let mut cmd = Command::new("bash");
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("SCALER_")) {
                cmd.env_remove(key);
            }
        }
        let out = cmd
            .args(["-e", "-o", "pipefail", "-c", &b.text])
            .current_dir(repo.path())
            .env("PATH", &path)
            .env("HOME", home.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if !out.status.success() {
            failures.push(format!(
                "README.md:{}: block failed ({})\n{}--- stdout\n{}--- stderr\n{}",
                b.line,
                out.status,
                b.text,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    // The tour's first block launches local nodes; leave none running even
    // when a later step failed.
    if repo.path().join("myfleet").is_dir() {
        let _ = Command::new(scaler_bin()).args(["destroy", "--auto-approve"]).current_dir(repo.path().join("myfleet")).output();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_skip_marker_applies_to_the_next_block_only() {
    let text = "## A tour\n<!-- readme-test: skip (needs ssh) -->\n```sh\nssh x\n```\n\n```sh\necho ok\n```\n";
    let blocks = tour_blocks(text);
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].skip.as_deref(), Some("needs ssh"));
    assert_eq!(blocks[1].skip, None);
    assert_eq!(blocks[1].text, "echo ok\n");
}
