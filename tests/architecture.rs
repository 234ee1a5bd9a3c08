//! Module rules from STYLE.md, enforced by scanning the source: every
//! top-level module of `src/` is on an allow-list naming the other modules it
//! may use, plus things it must not touch (IO in pure modules, printing in
//! the library, concrete backends outside the composition roots). A module
//! missing from the list, or a use outside it, fails the test.
//!
//! The list is what the code does today. Where that breaks STYLE.md's
//! layering the entry says so with `// debt:`; such an entry is a debt to
//! pay back, not a precedent.

mod scan;

use scan::{check, rule, Rule};
use std::path::Path;

/// IO and ambient state a pure module must not reach: files, network,
/// processes, the environment, tasks, clocks (time comes in as a value).
const IO: &[&str] = &[
    "tokio", "std::fs", "std::net", "std::process", "std::env", "reqwest", "rusqlite", "git2",
    "Utc::now", "SystemTime::now", "Instant::now", "chrono::Local",
];
/// The library never prints: progress goes through observers, output through the CLI.
const PRINT: &[&str] = &["println!", "eprintln!", "print!", "eprint!", "std::io::stdout", "std::io::stderr"];
/// Only the store (and the composition roots) name a store backend.
const STORE_BACKEND: &[&str] = &["SqliteStore", "crate::store::sqlite", "crate::store::open"];
/// Only the provider module (and the composition roots) name a provider implementation.
const PROVIDER_IMPL: &[&str] = &["LocalProvider", "crate::provider::local"];
/// The network, for modules that must not use it.
const NETWORK: &[&str] = &["std::net", "reqwest", "hyper", "tokio::net"];

const RULES: &[Rule] = &[
    // the foundations: no other module
    rule("model", &[]).forbid(&[IO, PRINT]),
    rule("template", &[]).forbid(&[IO, PRINT])
        // debt: `template::fuel` reads `SCALER_TEMPLATE_FUEL` from the environment in a pure module
        .except(&[("src/template/mod.rs", "std::env")]),
    rule("clock", &[]).forbid(&[PRINT]),
    rule("tls", &[]).forbid(&[PRINT]),
    rule("redact", &["template"]).forbid(&[PRINT, STORE_BACKEND, PROVIDER_IMPL]),
    rule("store", &[]).forbid(&[PRINT, PROVIDER_IMPL]),

    // reconcile: config -> plan -> policy -> apply
    rule("config", &["model", "redact", "rules", "template"]).forbid(&[&["tokio"], NETWORK, PRINT, STORE_BACKEND, PROVIDER_IMPL]),
    rule("fleet", &["config", "model", "store"]).forbid(&[&["tokio", "std::fs"], PRINT, STORE_BACKEND, PROVIDER_IMPL]),
    rule("provider", &["model", "template"]).forbid(&[PRINT, STORE_BACKEND]),
    // debt: pure `plan` takes `config::Config`/`config::Diagnostic` from the loader (STYLE: compile -> `model::Config`)
    rule("plan", &["config", "model", "provider", "store"]).forbid(&[IO, PRINT, STORE_BACKEND, PROVIDER_IMPL])
        // plan files are the plan's own (STYLE: `plan` owns "plan files"): the one file that reads and writes them
        .except(&[("src/plan/file.rs", "std::fs")]),
    // debt: pure `policy` parses its built-in rules and reports with `config` (`parse_policies`, `Diagnostics`)
    rule("policy", &["config", "model", "plan", "template"]).forbid(&[IO, PRINT, STORE_BACKEND, PROVIDER_IMPL])
        // debt: `now.local` in policy expressions converts with `chrono::Local` (reads the machine's time zone)
        .except(&[("src/policy/mod.rs", "chrono::Local")]),
    rule("apply", &["config", "exec", "model", "plan", "provider", "store", "template"]).forbid(&[PRINT, STORE_BACKEND, PROVIDER_IMPL]),
    rule("reconcile", &["apply", "config", "model", "plan", "policy", "provider", "store"]).forbid(&[PRINT, STORE_BACKEND, PROVIDER_IMPL]),
    rule("exec", &["config", "fleet", "model", "redact", "template"]).forbid(&[PRINT, STORE_BACKEND, PROVIDER_IMPL])
        // debt: `TerminalPrompter` (asks on stderr, reads stdin) is the CLI's terminal, only `cli run` builds it
        .except(&[("src/exec/runner/prompt.rs", "std::io::stderr")]),

    // monitoring: collect -> rules -> jobs -> actions
    rule("monitor", &["clock", "config", "exec", "fleet", "model", "redact", "store", "template", "tls"]).forbid(&[PRINT, STORE_BACKEND, PROVIDER_IMPL]),
    rule("inputs", &["clock", "config", "model", "monitor", "store"]).forbid(&[PRINT, STORE_BACKEND, PROVIDER_IMPL]),
    // debt: pure `rules` takes `Sample`/`SeriesKey`/`Agg` and calls `store::samples::aggregate` from the store module
    rule("rules", &["model", "store", "template"]).forbid(&[IO, PRINT, STORE_BACKEND, PROVIDER_IMPL]),
    rule("jobs", &["clock", "model", "store"]).forbid(&[PRINT, STORE_BACKEND, PROVIDER_IMPL]),
    rule("actions", &["config", "exec", "fleet", "jobs", "model", "plan", "redact", "store", "template", "tls"])
        .forbid(&[PRINT, STORE_BACKEND, PROVIDER_IMPL, &["crate::jobs::worker", "crate::jobs::run_worker"]]),

    // tools beside the pipelines
    rule("ruletest", &["config", "fleet", "model", "monitor", "rules", "store"]).forbid(&[&["tokio"], PRINT, STORE_BACKEND, PROVIDER_IMPL]),
    rule("import", &["config", "model"]).forbid(&[&["tokio"], PRINT, STORE_BACKEND, PROVIDER_IMPL]),
    rule("survey", &["model"]).forbid(&[PRINT, STORE_BACKEND, PROVIDER_IMPL]),

    // config sources for the daemon (a watched directory, a fetched git branch)
    rule("gitops", &["clock", "config", "model", "reconcile", "redact"]).forbid(&[PRINT, STORE_BACKEND, PROVIDER_IMPL]),

    // the daemon's read API and /metrics
    rule("api", &["clock", "config", "fleet", "gitops", "inputs", "model", "plan", "redact", "rules", "store"]).forbid(&[PRINT, STORE_BACKEND, PROVIDER_IMPL]),

    // the web UI's embedded page and assets (it reads the API over HTTP only)
    rule("web", &[]).forbid(&[PRINT, STORE_BACKEND, PROVIDER_IMPL]),

    // composition roots
    rule("daemon", &["actions", "api", "apply", "clock", "config", "exec", "fleet", "gitops", "inputs", "jobs", "model", "monitor", "plan", "reconcile", "redact", "rules", "store", "web"]).forbid(&[PRINT]),
    rule("cli", &[
        "api", "apply", "clock", "config", "daemon", "exec", "fleet", "gitops", "import", "jobs", "model", "monitor", "plan", "provider", "reconcile",
        "redact", "rules", "ruletest", "store", "survey", "template", "tls",
    ]),
    rule("main", &["cli"]),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn modules_keep_to_their_lanes() {
    let bad = check(root(), RULES);
    assert!(bad.is_empty(), "module rules broken:\n{}", bad.join("\n"));
}

#[test]
fn the_allow_list_has_no_cycles() {
    // Two modules that may use each other are one module: the layers only point down.
    fn reaches(from: &str, to: &str, seen: &mut Vec<String>) -> bool {
        let Some(r) = RULES.iter().find(|r| r.module == from) else { return false };
        r.may_use.iter().any(|u| {
            if *u == to {
                return true;
            }
            if seen.iter().any(|s| s == u) {
                return false;
            }
            seen.push(u.to_string());
            reaches(u, to, seen)
        })
    }
    let cycles: Vec<&str> = RULES.iter().map(|r| r.module).filter(|m| reaches(m, m, &mut Vec::new())).collect();
    assert!(cycles.is_empty(), "modules on a dependency cycle: {cycles:?}");
}

#[test]
fn the_scanner_finds_a_forbidden_use() {
    // The rule check itself can fail: `apply` does use `store`.
    let strict: Vec<Rule> = RULES
        .iter()
        .map(|r| if r.module == "apply" { rule("apply", &["config", "exec", "model", "plan", "provider", "template"]) } else { *r })
        .collect();
    let bad = check(root(), &strict);
    assert!(bad.contains(&"src/apply/mod.rs:28: module `apply` may not use `store` (allowed: config, exec, model, plan, provider, template)".to_string()), "{bad:?}");
    assert!(bad.iter().all(|b| b.starts_with("src/apply/") && b.contains("may not use `store`")), "{bad:?}");
}

/// An invented crate in a temp dir: `files` are `(path, text)` under it.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

#[test]
fn a_use_outside_the_allow_list_is_reported_with_its_line() {
    let dir = tree(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("src/a/mod.rs", "//! a\nuse crate::c::Y;\n\npub fn f() -> crate::b::X {\n    crate::b::X\n}\n"),
        ("src/b.rs", "pub struct X;\n"),
        ("src/c.rs", "pub struct Y;\n"),
    ]);
    let bad = check(dir.path(), &[rule("a", &["c"]), rule("b", &[]), rule("c", &[])]);
    assert_eq!(bad, [
        "src/a/mod.rs:4: module `a` may not use `b` (allowed: c)",
        "src/a/mod.rs:5: module `a` may not use `b` (allowed: c)",
    ]);
}

#[test]
fn a_module_missing_from_the_allow_list_is_reported() {
    let dir = tree(&[
        ("src/lib.rs", "pub mod a;\nmod b;\n"),
        ("src/a.rs", "use crate::b::X;\n"),
        ("src/b.rs", "pub struct X;\n"),
        ("src/main.rs", "fn main() {}\n"),
    ]);
    let bad = check(dir.path(), &[rule("a", &["b"]), rule("main", &[]), rule("gone", &[])]);
    assert_eq!(bad, ["allow-list names module `gone`, which src/lib.rs does not declare", "module `b` is not in the allow-list"]);
}

#[test]
fn groups_super_paths_and_the_binary_resolve_to_modules() {
    let dir = tree(&[
        ("Cargo.toml", "[package]\nname = \"my-app\"\n\n[dependencies]\nname = \"not this\"\n"),
        ("src/lib.rs", "pub mod a;\npub mod b;\npub mod c;\npub mod cli;\n"),
        ("src/a/mod.rs", "mod deep;\nuse crate::{\n    b::X,\n    c::{self, Y},\n};\n"),
        // `super::super` from `a::deep` is the crate root; one `super` is `a` itself
        ("src/a/deep.rs", "use super::super::b::X;\nuse super::Thing;\nfn f() { let _ = super::super::c::Y; }\n"),
        ("src/b.rs", "mod inner {\n    use super::super::c::Y;\n}\n"),
        ("src/c.rs", ""),
        ("src/cli.rs", ""),
        ("src/main.rs", "fn main() { my_app::cli::main(); my_app::b::f(); }\n"),
    ]);
    let bad = check(dir.path(), &[rule("a", &[]), rule("b", &[]), rule("c", &[]), rule("cli", &[]), rule("main", &["cli"])]);
    assert_eq!(bad, [
        "src/a/deep.rs:1: module `a` may not use `b` (allowed: none)",
        "src/a/deep.rs:3: module `a` may not use `c` (allowed: none)",
        "src/a/mod.rs:3: module `a` may not use `b` (allowed: none)",
        "src/a/mod.rs:4: module `a` may not use `c` (allowed: none)",
        "src/b.rs:2: module `b` may not use `c` (allowed: none)",
        "src/main.rs:1: module `main` may not use `b` (allowed: cli)",
    ]);
}

#[test]
fn comments_literals_and_test_code_are_not_uses() {
    let dir = tree(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\n"),
        ("src/a.rs", concat!(
            "//! Not `crate::b`, see [`crate::b::X`].\n",
            "/* crate::b::X /* nested */ crate::b::X */\n",
            "const S: &str = \"crate::b::X\";\n",
            "const R: &str = r#\"crate::b::X \"quoted\"\"#;\n",
            "const C: char = '\"'; const D: u8 = b'\\''; fn f<'x>(s: &'x str) -> &'x str { s }\n",
            "#[cfg(test)]\nmod tests {\n    use crate::b::X;\n    fn g() { println!(\"{}\", 1) }\n}\n",
            "#[cfg(test)]\nmod more;\n",
            "pub fn after() { crate::b::f() }\n",
        )),
        ("src/a/more.rs", "use crate::b::X;\n"),
        ("src/b.rs", ""),
    ]);
    let bad = check(dir.path(), &[rule("a", &[]).forbid(&[&["println!", "std::fs"]]), rule("b", &[])]);
    assert_eq!(bad, ["src/a.rs:13: module `a` may not use `b` (allowed: none)"]);
}

#[test]
fn forbidden_paths_and_text_are_reported_outside_their_exceptions() {
    let dir = tree(&[
        ("src/lib.rs", "pub mod a;\n"),
        ("src/a/mod.rs", "use std::{\n    fs,\n    io,\n};\nfn f() { eprintln!(\"x\"); my_println!(); }\n"),
        ("src/a/file.rs", "fn g() { std::fs::write(\"p\", \"\").ok(); }\n"),
    ]);
    let rules = [rule("a", &[]).forbid(&[&["std::fs", "println!", "eprintln!"]]).except(&[("a/file.rs", "std::fs")])];
    assert_eq!(check(dir.path(), &rules), [
        "src/a/mod.rs:2: module `a` must not use `std::fs`",
        "src/a/mod.rs:5: module `a` must not use `eprintln!`",
    ]);
}
