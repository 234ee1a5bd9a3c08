//! The web UI in real headless Chromium (Debian's `chromium`, driven by
//! `playwright-core` from `ui/node_modules`) against a real `scaler daemon`
//! with real collected data: a local counter every second, a counter per
//! node of a local-provider group, and a trigger. `ui/tests/browser.mjs`
//! runs one check per scenario and prints one line each; screenshots go to
//! the test's temp dir.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::api::call;
use crate::daemon::{Daemon, TOKEN};
use crate::harness::{wait_until, Cli};

const READ_TOKEN: &str = "read-only-token-9876543210";
const CHROMIUM: &str = "/usr/bin/chromium";

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ui")
}

fn write_config(dir: &Path) {
    std::fs::write(dir.join("token.txt"), TOKEN).unwrap();
    std::fs::write(dir.join("read.txt"), READ_TOKEN).unwrap();
    std::fs::write(dir.join("scaler.yaml"), "kind: Project\nname: t\ndaemon:\n  token: { file: token.txt }\n  read_token: { file: read.txt }\n").unwrap();
    std::fs::write(
        dir.join("fleet.yaml"),
        "kind: NodeTemplate\nname: sleeper\nprovider: local\nlocal: { command: exec sleep 600, grace: 1s }\n---\n\
         kind: Group\nname: web\ntemplate: sleeper\nmin: 1\nmax: 3\ndesired: 2\n---\n\
         kind: Target\nname: web\ngroup: web\n---\n\
         kind: Counter\nname: tick\ndescription: seconds of the minute\nsource:\n  local: { command: \"date +%S\" }\nparse: number\ninterval: 1s\n---\n\
         kind: Counter\nname: per-node\nsource:\n  local: { command: \"echo $(( $(date +%S) % 7 ))\" }\ntargets: [web]\nparse: number\ninterval: 1s\n---\n\
         kind: Trigger\nname: late\ndescription: second 50 or later\nwhen: last(tick) > 50\nfor: 5s\ncooldown: 1m\n\
         then:\n  - notify: { webhook: { url: \"http://127.0.0.1:9/never\" } }\n",
    )
    .unwrap();
}

/// Runs `ui/tests/browser.mjs` with these checks; its output, after
/// asserting that every check passed.
fn browser(port: u16, checks: &[&str], shots: &Path, extra: &[(&str, &str)]) -> String {
    assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} is missing: scripts/test.sh installs Debian's `chromium`");
    assert!(ui_dir().join("node_modules/playwright-core").exists(), "ui/node_modules is missing: building scaler runs `npm ci` in ui/");
    let mut cmd = Command::new("node");
    cmd.arg("tests/browser.mjs")
        .current_dir(ui_dir())
        .env("SCALER_URL", format!("http://127.0.0.1:{port}"))
        .env("SCALER_TOKEN", TOKEN)
        .env("SCALER_READ_TOKEN", READ_TOKEN)
        .env("SCALER_NODES", "web-01,web-02")
        .env("SCALER_COUNTER", "tick")
        .env("SCALER_SHOTS", shots)
        .env("SCALER_CHECKS", checks.join(","));
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("node runs (scripts/test.sh installs nodejs and npm)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for check in checks {
        assert!(stdout.lines().any(|l| l.starts_with(&format!("ok {check}"))), "browser check `{check}` did not pass:\n{stdout}\n{stderr}");
    }
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout
}

#[test]
fn the_web_ui_logs_in_shows_the_fleet_zooms_a_graph_and_hides_changes_from_a_read_token() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_config(dir);
    let cli = Cli::new();
    let d = Daemon::applied(&cli, dir);
    let port = d.port;

    // The page and its assets are public, with their types and cache headers.
    let page = call(port, "GET", "/", None, "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers["cache-control"], "no-cache");
    assert!(page.headers["content-security-policy"].contains("script-src 'self'"), "{:?}", page.headers);
    let assets: Vec<String> = regex::Regex::new(r#"(?:src|href)="(assets/[^"]+)""#).unwrap().captures_iter(&page.body).map(|c| c[1].to_string()).collect();
    assert_eq!(assets.len(), 4, "uPlot's js and css, ours: {}", page.body);
    for a in &assets {
        let r = call(port, "GET", &format!("/{a}"), None, "");
        assert_eq!(r.status, 200, "{a}");
        let want = if a.ends_with(".js") { "text/javascript; charset=utf-8" } else { "text/css; charset=utf-8" };
        assert_eq!(r.headers["content-type"], want, "{a}");
        assert_eq!(r.headers["cache-control"], "public, max-age=31536000, immutable", "{a}: the name holds the content hash");
        assert!(!r.body.is_empty());
    }
    assert_eq!(call(port, "GET", "/assets/nope.js", None, "").status, 404);
    assert_eq!(call(port, "GET", "/api/v1/status", None, "").status, 401, "the data needs the token");

    // Real data before the browser looks: a few seconds of `tick`.
    wait_until(Duration::from_secs(20), "samples of `tick`", || {
        let r = call(port, "GET", "/api/v1/series?counter=tick&from=now-1m&step=1s", Some(&format!("Bearer {TOKEN}")), "");
        r.status == 200 && r.json()["items"][0]["points"].as_array().is_some_and(|p| p.iter().filter(|p| !p[1].is_null()).count() >= 5)
    });

    let out = browser(port, &["login", "overview", "graph", "readonly", "logout"], dir, &[]);
    eprintln!("{out}screenshots in {}", dir.display());
    for shot in ["overview.png", "graph.png", "readonly.png"] {
        assert!(std::fs::metadata(dir.join(shot)).map(|m| m.len() > 1000).unwrap_or(false), "{shot} saved");
    }
    drop(d);
    // The group's local nodes are processes of their own: stop them.
    let out = cli.run(dir, &["destroy", "--auto-approve", "."]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
