//! Module rules from STYLE.md, enforced by scanning the source: each module
//! may not reach into what it must not depend on.

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The non-test source of a file (everything before `#[cfg(test)]`).
fn code(p: &Path) -> String {
    let text = std::fs::read_to_string(p).unwrap();
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn check(module: &str, forbidden: &[&str], except: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(module);
    let mut all = Vec::new();
    if root.is_dir() {
        files(&root, &mut all);
    }
    let mut bad = Vec::new();
    for f in all {
        let rel = f.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap().display().to_string();
        if except.iter().any(|e| rel.ends_with(e)) {
            continue;
        }
        let src = code(&f);
        for needle in forbidden {
            for (n, line) in src.lines().enumerate() {
                let l = line.trim_start();
                if l.starts_with("//") {
                    continue;
                }
                if l.contains(needle) {
                    bad.push(format!("{rel}:{}: `{module}` must not use `{needle}`", n + 1));
                }
            }
        }
    }
    bad
}

#[test]
fn modules_keep_to_their_lanes() {
    let mut bad = Vec::new();
    bad.extend(check("model", &["tokio", "std::fs", "crate::store", "crate::provider", "crate::config", "crate::cli"], &[]));
    bad.extend(check("config", &["crate::store", "crate::provider", "crate::plan", "crate::apply", "crate::cli", "tokio"], &[]));
    bad.extend(check("plan", &["SqliteStore", "crate::provider::local", "LocalProvider", "tokio", "crate::cli", "std::fs"], &["plan/file.rs"]));
    bad.extend(check("policy", &["std::fs", "tokio", "crate::store", "crate::provider", "crate::cli", "crate::apply"], &[]));
    bad.extend(check("store", &["crate::plan", "crate::policy", "crate::apply", "crate::cli", "crate::provider"], &[]));
    bad.extend(check("provider", &["crate::store", "crate::cli", "crate::plan", "crate::apply"], &[]));
    bad.extend(check("apply", &["crate::cli", "println!", "eprintln!"], &[]));
    bad.extend(check("monitor", &["crate::rules", "crate::cli", "crate::plan", "crate::apply", "SqliteStore"], &[]));
    bad.extend(check("rules", &["std::fs", "tokio", "crate::store::sqlite", "SqliteStore", "crate::cli", "crate::config", "crate::monitor"], &[]));
    bad.extend(check("fleet", &["crate::cli", "tokio", "std::fs", "crate::store::sqlite", "SqliteStore"], &[]));
    bad.extend(check("actions", &["crate::cli", "println!", "eprintln!"], &[]));
    bad.extend(check("inputs", &["crate::cli", "crate::rules", "println!", "eprintln!"], &[]));
    bad.extend(check("api", &["crate::cli", "println!", "eprintln!", "crate::store::sqlite", "SqliteStore", "crate::provider"], &[]));
    bad.extend(check("ruletest", &["tokio", "crate::store::sqlite", "SqliteStore", "crate::cli", "crate::provider", "crate::apply", "crate::exec"], &[]));
    bad.extend(check("template", &["std::fs", "tokio", "crate::"], &[]));
    bad.extend(check("import", &["crate::cli", "println!", "eprintln!", "crate::store", "tokio"], &[]));
    bad.extend(check("jobs", &["crate::cli", "println!", "eprintln!"], &[]));
    bad.extend(check("tls", &["crate::"], &[]));
    assert!(bad.is_empty(), "module rules broken:\n{}", bad.join("\n"));
}

#[test]
fn the_scanner_finds_a_forbidden_use() {
    // The rule check itself can fail: `apply` does use `crate::store`.
    assert!(!check("apply", &["crate::store"], &[]).is_empty());
}
