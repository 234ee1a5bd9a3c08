//! Config loading against fixture repositories: every invalid fixture's
//! diagnostics are snapshot-tested; every valid fixture loads cleanly.

// Test helpers outside `#[test]` functions may panic freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use scaler::config::{self, Diagnostics};
use scaler::model::{Action, Kind, Parse, Sudo};

/// Fixture directories relative to the package root, so that messages
/// naming the root are the same on every machine.
fn fixtures(kind: &str) -> Vec<(String, PathBuf)> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind);
    let mut cases: Vec<(String, PathBuf)> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let rel = PathBuf::from("tests/fixtures").join(kind).join(&name);
            (name, rel)
        })
        .collect();
    cases.sort();
    cases
}

fn in_package_root<T>(f: impl FnOnce() -> T) -> T {
    // cargo runs integration tests in the package root already; make sure.
    assert!(
        Path::new("tests/fixtures").is_dir(),
        "tests must run from the package root"
    );
    f()
}

#[test]
fn invalid_fixtures_report_every_problem() {
    in_package_root(|| {
        let cases = fixtures("invalid");
        assert!(cases.len() >= 45, "only {} invalid fixtures", cases.len());
        for (name, dir) in cases {
            let err: Diagnostics = match config::load(&dir) {
                Ok(_) => panic!("fixture `{name}` loaded without errors"),
                Err(e) => e,
            };
            assert!(!err.is_empty(), "fixture `{name}` has no diagnostics");
            for d in &err.0 {
                assert!(
                    !d.message.ends_with('.'),
                    "{name}: message ends with a period: {}",
                    d.message
                );
                let first = d.message.chars().next().unwrap();
                assert!(
                    !first.is_uppercase(),
                    "{name}: message starts uppercase: {}",
                    d.message
                );
            }
            let rendered = err.render(false);
            insta::with_settings!({ omit_expression => true }, {
                insta::assert_snapshot!(name.as_str(), rendered);
            });
        }
    });
}

#[test]
fn valid_fixtures_load_without_diagnostics() {
    in_package_root(|| {
        let cases = fixtures("valid");
        assert!(cases.len() >= 3);
        for (name, dir) in cases {
            if let Err(e) = config::load(&dir) {
                panic!("fixture `{name}` has errors:\n{}", e.render(false));
            }
        }
    });
}

#[test]
fn full_fixture_has_every_kind_and_variant() {
    let c = in_package_root(|| config::load(Path::new("tests/fixtures/valid/full"))).unwrap();
    assert_eq!(c.project.spec.name, "shop");
    assert_eq!(c.project.file, "scaler.yaml");
    assert_eq!((c.project.line, c.project.column), (2, 1));
    assert_eq!(c.templates.len(), 2);
    assert_eq!(c.groups["web"].spec.desired, Some(3));
    assert_eq!(c.groups["web"].file, "groups.yaml");
    assert_eq!(c.groups["workers"].line, 13);
    assert_eq!(c.targets["db"].spec.hosts.as_ref().unwrap().len(), 3);
    assert_eq!(c.targets["web"].spec.group.as_deref(), Some("web"));

    let sources: Vec<&str> = c
        .counters
        .values()
        .map(|l| l.spec.source.name())
        .collect();
    for s in [
        "ssh",
        "local",
        "http",
        "jmx",
        "snmp",
        "redis",
        "stream",
        "push",
        "alertmanager",
        "trap",
    ] {
        assert!(sources.contains(&s), "no `{s}` counter");
    }
    let parses: Vec<&str> = c
        .counters
        .values()
        .filter_map(|l| l.spec.parse.as_ref())
        .map(|p| match p {
            Parse::Number => "number",
            Parse::Regex(_) => "regex",
            Parse::Json(_) => "json",
            Parse::Kv(_) => "kv",
            Parse::Perfdata(_) => "perfdata",
        })
        .collect();
    for p in ["number", "regex", "json", "kv", "perfdata"] {
        assert!(parses.contains(&p), "no `{p}` parser");
    }
    assert_eq!(
        c.counters["disk"].spec.parse,
        Some(Parse::Regex("(?P<used>[0-9]+)%".into()))
    );

    let steps = &c.playbooks["deploy-app"].spec.steps;
    assert_eq!(steps.len(), 9);
    assert!(matches!(steps[0].sudo, Some(Sudo::Command(_))));
    assert!(matches!(steps[6].sudo, Some(Sudo::Full(_))));
    assert!(steps[1].put.is_some() && steps[3].get.is_some() && steps[5].prompt.is_some());
    assert!(steps[4].local.is_some() && steps[7].abort.is_some());
    assert_eq!(steps[2].retries, Some(2));
    assert_eq!(steps[2].delay.as_ref().unwrap().get().as_secs(), 5);

    let hot = &c.triggers["web-hot"].spec;
    assert_eq!(hot.for_.as_ref().unwrap().as_str(), "60s");
    assert_eq!(hot.min_coverage.unwrap().get(), 90.0);
    assert!(matches!(&hot.then[0], Action::Scale(s) if s.by == Some(1)));
    assert_eq!(c.triggers["web-cold"].spec.when.exprs().len(), 2);
    let actions: Vec<&Action> = c
        .triggers
        .values()
        .flat_map(|t| t.spec.then.iter())
        .collect();
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Scale(s) if s.target_value.is_some())));
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Scale(s) if s.percent == Some(50.0))));
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Scale(s) if s.to == Some(3))));
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Run(r) if r.on.as_deref() == Some("web/newest"))));
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Notify(n) if n.webhook.is_some())));
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Notify(n) if n.sns.is_some())));
    assert_eq!(c.policies["guardrails"].spec.rules.len(), 4);

    // Every object, the Project first, kinds in order, then names.
    let objects = c.objects();
    assert_eq!(objects[0].0, Kind::Project);
    let kinds: Vec<Kind> = objects.iter().map(|o| o.0).collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(kinds, sorted);
    assert_eq!(objects.len(), 1 + 2 + 2 + 4 + 14 + 4 + 4 + 1);
    assert_eq!(c.digest.len(), 64);
    assert!(
        c.revision == "none" || c.revision.len() >= 40,
        "{}",
        c.revision
    );
}

#[test]
fn digest_ignores_layout_and_comments() {
    let (a, b) = in_package_root(|| {
        (
            config::load(Path::new("tests/fixtures/valid/layout-one-file")).unwrap(),
            config::load(Path::new("tests/fixtures/valid/layout-many-files")).unwrap(),
        )
    });
    assert_eq!(a.objects(), b.objects());
    assert_eq!(a.digest, b.digest);
    let full = config::load(Path::new("tests/fixtures/valid/full")).unwrap();
    assert_ne!(a.digest, full.digest);
}

#[test]
fn diagnostics_as_json() {
    let err = config::load(Path::new("tests/fixtures/invalid/unknown-field-nested")).unwrap_err();
    let json = err.to_json();
    let first = &json[0];
    assert_eq!(first["code"], "unknown-field");
    assert_eq!(first["file"], "groups.yaml");
    assert!(first["line"].as_u64().unwrap() > 0);
    assert!(first["field"].as_str().unwrap().contains('.'));
    let coloured = err.render(true);
    assert!(coloured.contains("\u{1b}["));
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn revisions_and_load_rev() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    let cfg = repo.join("fleet");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("scaler.yaml"), "kind: Project\nname: demo\n").unwrap();
    std::fs::write(
        cfg.join("group.yaml"),
        "kind: NodeTemplate\nname: n\nprovider: local\nlocal: { command: sleep 1000 }\n---\nkind: Group\nname: g\ntemplate: n\nmin: 1\nmax: 2\n",
    )
    .unwrap();
    // Outside git: no revision.
    assert_eq!(config::load(&cfg).unwrap().revision, "none");

    git(repo, &["init", "-q", "-b", "main"]);
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "one"]);
    let head = String::from_utf8(
        std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(repo)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let clean = config::load(&cfg).unwrap();
    assert_eq!(clean.revision, head);

    // A change in the working tree makes it dirty, and load_rev still sees HEAD.
    std::fs::write(
        cfg.join("group.yaml"),
        "kind: NodeTemplate\nname: n\nprovider: local\nlocal: { command: sleep 1000 }\n---\nkind: Group\nname: g\ntemplate: n\nmin: 1\nmax: 3\n",
    )
    .unwrap();
    let dirty = config::load(&cfg).unwrap();
    assert_eq!(dirty.revision, format!("{head}-dirty"));
    assert_eq!(dirty.groups["g"].spec.max, 3);
    let committed = config::load_rev(&cfg, "HEAD").unwrap();
    assert_eq!(committed.revision, head);
    assert_eq!(committed.groups["g"].spec.max, 2);
    assert_eq!(committed.digest, clean.digest);
    assert_ne!(committed.digest, dirty.digest);
    assert_eq!(config::load_rev(&cfg, &head[..10]).unwrap().revision, head);

    // A broken commit is reported with positions from the committed text.
    git(repo, &["commit", "-q", "-am", "two"]);
    std::fs::write(
        cfg.join("group.yaml"),
        "kind: Group\nname: g\ntemplate: nope\nmin: 1\nmax: 3\n",
    )
    .unwrap();
    git(repo, &["commit", "-q", "-am", "three"]);
    let err = config::load_rev(&cfg, "HEAD").unwrap_err();
    assert!(
        err.render(false)
            .contains("group.yaml:3:1: unknown node template `nope`"),
        "{}",
        err.render(false)
    );
    assert!(config::load_rev(&cfg, "HEAD~1").is_ok());
    let err = config::load_rev(&cfg, "no-such-branch").unwrap_err();
    assert_eq!(err.0[0].code, "git");
}

#[test]
fn built_in_policies_parse() {
    let text = "kind: Policy\nname: limits\nrules:\n  - name: max\n    deny: plan.total_nodes > 20\n    message: too many\n";
    let policies = config::parse_policies("limits.yaml", text).unwrap();
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].rules[0].name, "max");

    let bad = "kind: Policy\nname: limits\nrules:\n  - name: max\n    deny: plan.total_nodes >\n    message: too many\n---\nkind: Group\nname: g\n";
    let err = config::parse_policies("limits.yaml", bad).unwrap_err();
    let text = err.render(false);
    assert!(
        text.contains("limits.yaml:5:5: invalid expression"),
        "{text}"
    );
    assert!(
        text.contains("limits.yaml:8:1: expected only `Policy` documents, found `Group`"),
        "{text}"
    );
}

#[test]
fn five_thousand_objects_load_fast() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::write(root.join("scaler.yaml"), "kind: Project\nname: big\n").unwrap();
    std::fs::write(
        root.join("base.yaml"),
        "kind: NodeTemplate\nname: n\nprovider: local\nlocal: { command: sleep 1000 }\n---\nkind: Playbook\nname: drain\nsteps:\n  - run: echo {{ host }}\n",
    )
    .unwrap();
    for f in 0..50 {
        let mut text = String::new();
        for i in 0..25 {
            let n = f * 25 + i;
            text.push_str(&format!(
                "kind: Group\nname: g{n}\ntemplate: n\nmin: 1\nmax: 5\nscale_in: {{ pick: oldest, drain: drain }}\n---\n\
                 kind: Target\nname: t{n}\ngroup: g{n}\n---\n\
                 kind: Counter\nname: c{n}\nsource: {{ ssh: {{ command: \"cat /proc/loadavg\" }} }}\ntargets: [t{n}]\ninterval: 10s\n---\n\
                 kind: Trigger\nname: tr{n}\nwhen: avg(c{n}) > 80\nfor: 1m\nthen:\n  - scale: {{ group: g{n}, by: 1 }}\n---\n"
            ));
        }
        std::fs::write(root.join(format!("f{f:03}.yaml")), text).unwrap();
    }
    let start = std::time::Instant::now();
    let c = config::load(root).unwrap();
    let took = start.elapsed();
    assert_eq!(c.objects().len(), 1 + 1 + 1 + 4 * 1250);
    // Generous for debug builds; a release build takes a small fraction.
    let limit = if cfg!(debug_assertions) { 10.0 } else { 1.0 };
    assert!(
        took.as_secs_f64() < limit,
        "loading 5,000 objects took {took:?}"
    );
    eprintln!("loaded 5,000 objects in {took:?}");
}
