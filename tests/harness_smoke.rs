//! The harness itself: sshd accepts our key and only our host key, git repos
//! commit with isolated config, the CLI runner isolates `HOME`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::harness::{self, free_port, wait_until, GitRepo, Sshd};

#[test]
fn sshd_runs_a_command_for_the_client_key() {
    let sshd = Sshd::start();
    let out = sshd.ssh_command().arg("echo hello").output().unwrap();
    assert!(
        out.status.success(),
        "ssh failed: {}\n--- sshd log\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    let known = std::fs::read_to_string(sshd.known_hosts()).unwrap();
    assert_eq!(known, format!("[127.0.0.1]:{} {}\n", sshd.port(), sshd.host_public_key()));
    assert!(sshd.host_public_key().starts_with("ssh-ed25519 "));
}

#[test]
fn sshd_is_refused_when_known_hosts_has_another_key() {
    let sshd = Sshd::start();
    let other = tempfile::tempdir().unwrap();
    let wrong_key = harness::sshd::new_key(&other.path().join("other"));
    let known_hosts = other.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("[127.0.0.1]:{} {wrong_key}\n", sshd.port())).unwrap();
    let out = sshd
        .ssh_command_with_known_hosts(&known_hosts)
        .arg("echo hello")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "the command did not run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HOST IDENTIFICATION HAS CHANGED"), "{err}");
}

#[test]
fn git_repo_commits_with_isolated_config() {
    let repo = GitRepo::new();
    repo.write("config/project.yaml", "kind: Project\nname: demo\n");
    let first = repo.commit("first");
    assert_eq!(first.len(), 40, "{first}");
    assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
    repo.write("config/project.yaml", "kind: Project\nname: demo2\n");
    let second = repo.commit("second");
    assert_ne!(first, second);
    assert_eq!(repo.head(), second);
    assert_eq!(repo.git(&["rev-parse", "--abbrev-ref", "HEAD"]), "main");
    assert_eq!(repo.git(&["log", "-1", "--format=%an <%ae>"]), "Scaler Test <test@scaler.invalid>");
    assert_eq!(repo.git(&["show", &format!("{first}:config/project.yaml")]), "kind: Project\nname: demo");
}

#[test]
fn the_cli_runs_the_built_binary_in_the_given_dir() {
    assert!(harness::scaler_bin().is_file());
    let dir = tempfile::tempdir().unwrap();
    let out = harness::scaler(dir.path(), &[]);
    // The CLI is still a placeholder; this only shows that the runner works.
    assert!(out.status.code().is_some(), "{out:?}");
}

#[test]
fn wait_until_returns_once_the_condition_holds_and_panics_on_timeout() {
    let mut n = 0;
    wait_until(Duration::from_secs(5), "three polls", || {
        n += 1;
        n == 3
    });
    assert_eq!(n, 3);
    let err = std::panic::catch_unwind(|| wait_until(Duration::from_millis(50), "the impossible", || false)).unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("the impossible"), "{msg}");
    assert_ne!(free_port(), 0);
}
