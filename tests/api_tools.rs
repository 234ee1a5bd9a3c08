//! The daemon's API and `/metrics` checked by the tools people point at
//! them: schemathesis (PyPI) fuzzes every operation of the OpenAPI
//! document against the running daemon; `promtool check metrics` lints the
//! exposition; a real Prometheus scrapes the daemon with the bearer token.
//! `scripts/test.sh` installs all three.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::daemon::{Daemon, TOKEN};
use crate::harness::{free_port, wait_until, Cli};

fn write_config(dir: &Path) {
    std::fs::write(dir.join("token.txt"), TOKEN).unwrap();
    std::fs::write(dir.join("scaler.yaml"), "kind: Project\nname: t\ndaemon:\n  token: { file: token.txt }\n").unwrap();
    std::fs::write(
        dir.join("fleet.yaml"),
        "kind: Target\nname: db\nhosts: [\"127.0.0.1:1\"]\n---\n\
         kind: Counter\nname: queue\nsource: { push: {} }\n---\n\
         kind: Trigger\nname: deep\nwhen: last(queue) > 10\ncooldown: 1h\nthen:\n  - notify: { webhook: { url: \"http://127.0.0.1:9/never\" } }\n",
    )
    .unwrap();
}

fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{auth}connection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

fn tool(program: &str, hint: &str) -> Command {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {program}")).output().map(|o| o.status.success()).unwrap_or(false);
    assert!(found, "`{program}` is not installed: {hint} (scripts/test.sh does it)");
    Command::new(program)
}

#[test]
fn schemathesis_finds_nothing_wrong_with_the_openapi_document() {
    let ok = Command::new("python3").args(["-m", "schemathesis.cli", "--version"]).output().map(|o| o.status.success()).unwrap_or(false);
    assert!(ok, "schemathesis is not installed: `python3 -m pip install schemathesis==4.32.5` (scripts/test.sh does it)");
    let tmp = tempfile::tempdir().unwrap();
    write_config(tmp.path());
    let cli = Cli::new();
    let d = Daemon::start(&cli, tmp.path(), &["--no-collect"]);
    let url = format!("http://127.0.0.1:{}/api/v1/openapi.json", d.port);
    let out = Command::new("python3")
        .args(["-m", "schemathesis.cli", "run", &url, "-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--max-examples", "15", "--max-time", "30", "--mode", "positive", "--generation-deterministic"])
        // Every check but "a schema-valid request is accepted": a schema
        // cannot say that `to` comes after `from` or that a step gives at
        // most 11000 points, so such requests rightly get 400.
        .args(["--phases", "examples,coverage,fuzzing", "--request-timeout", "10", "--checks", "all", "--exclude-checks", "positive_data_acceptance"])
        .env("NO_COLOR", "1")
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Tested: 18") || text.contains("Tested:"), "{text}");
}

#[test]
fn promtool_accepts_the_metrics_and_prometheus_scrapes_them() {
    let promtool = || tool("promtool", "`apt-get install prometheus`");
    let tmp = tempfile::tempdir().unwrap();
    write_config(tmp.path());
    let cli = Cli::new();
    let d = Daemon::start(&cli, tmp.path(), &["--no-collect"]);
    let (code, _) = crate::daemon::http(d.port, "PUT", "/api/v1/push/queue", "5", Some(TOKEN));
    assert_eq!(code, 200);
    let (code, text) = get(d.port, "/metrics", Some(TOKEN));
    assert_eq!(code, 200, "{text}");
    let mut lint = promtool().args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    lint.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(out.status.success(), "promtool check metrics:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // promtool lints too: it must have nothing to say.
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "", "{}", String::from_utf8_lossy(&out.stderr));

    let prom = free_port();
    let dir = tmp.path().join("prom");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s }}\nscrape_configs:\n  - job_name: scaler\n    scrape_interval: 1s\n    \
             authorization: {{ type: Bearer, credentials_file: {} }}\n    static_configs:\n      - targets: [\"127.0.0.1:{}\"]\n",
            dir.join("token").display(),
            d.port
        ),
    )
    .unwrap();
    let out = promtool().args(["check", "config"]).arg(dir.join("prometheus.yml")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut server = tool("prometheus", "`apt-get install prometheus`")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    let query = |q: &str| -> Value {
        let mut s = match TcpStream::connect(("127.0.0.1", prom)) {
            Ok(s) => s,
            Err(_) => return Value::Null,
        };
        let _ = write!(s, "GET /api/v1/query?query={q} HTTP/1.1\r\nhost: 127.0.0.1:{prom}\r\nconnection: close\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or(Value::Null)
    };
    let first = |v: &Value| v["data"]["result"][0]["value"][1].as_str().map(str::to_string);
    let scraped = std::panic::catch_unwind(|| {
        wait_until(Duration::from_secs(30), "Prometheus to scrape the daemon (up == 1)", || first(&query("up")).as_deref() == Some("1"));
        wait_until(Duration::from_secs(10), "a scaler metric in Prometheus", || {
            first(&query("scaler_series_value%7Bcounter%3D%22queue%22%7D")).as_deref() == Some("5")
        });
        first(&query("scaler_leader"))
    });
    let _ = server.kill();
    let _ = server.wait();
    let leader = scraped.unwrap_or_else(|_| panic!("Prometheus log:\n{}", std::fs::read_to_string(dir.join("log")).unwrap_or_default()));
    assert_eq!(leader.as_deref(), Some("1"));
}
