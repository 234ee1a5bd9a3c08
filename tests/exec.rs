//! `scaler exec` and `scaler run` against real OpenSSH servers on loopback:
//! per-host results, unreachable hosts, host keys, sudo with a password,
//! SFTP round trips, serial batches, max_fail_percentage, retries, prompts,
//! abort, check mode, and injection attempts that would leave a marker file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::harness::{free_port, scaler, stderr, stdout, Cli, Sshd};

/// Several sshd on loopback that all accept the first one's client key, and
/// a config repo whose known_hosts lists every host.
struct Fleet {
    sshds: Vec<Sshd>,
    repo: TempDir,
}

impl Fleet {
    fn start(n: usize) -> Fleet {
        let sshds: Vec<Sshd> = (0..n).map(|_| Sshd::start()).collect();
        let key_pub = std::fs::read_to_string(format!("{}.pub", sshds[0].client_key().display())).unwrap();
        let mut known = String::new();
        for s in &sshds {
            let ak = s.dir().join("authorized_keys");
            let mut text = std::fs::read_to_string(&ak).unwrap();
            text.push_str(&key_pub);
            std::fs::write(&ak, text).unwrap();
            known.push_str(&format!("[127.0.0.1]:{} {}\n", s.port(), s.host_public_key()));
        }
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join("known_hosts"), known).unwrap();
        let f = Fleet { sshds, repo };
        f.write(
            "scaler.yaml",
            &format!(
                "kind: Project\nname: t\ndefaults:\n  ssh:\n    user: {}\n    key: {}\n    known_hosts: known_hosts\n",
                f.sshds[0].user(),
                f.sshds[0].client_key().display()
            ),
        );
        f
    }

    fn dir(&self) -> &Path {
        self.repo.path()
    }

    fn write(&self, name: &str, text: &str) {
        let p = self.dir().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn host(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.sshds[i].port())
    }

    /// A target named `name` with these host entries.
    fn target(&self, name: &str, hosts: &[String]) {
        let list: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
        self.write(&format!("target-{name}.yaml"), &format!("kind: Target\nname: {name}\nhosts: [{}]\n", list.join(", ")));
    }

    fn all(&self) -> Vec<String> {
        (0..self.sshds.len()).map(|i| self.host(i)).collect()
    }

    fn run(&self, args: &[&str]) -> Output {
        scaler(self.dir(), args)
    }
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", stdout(out), stderr(out)))
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn host_statuses(v: &Value) -> Vec<String> {
    v["hosts"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap().to_string()).collect()
}

#[test]
fn exec_gives_per_host_results_with_an_unreachable_host_in_the_middle() {
    let f = Fleet::start(3);
    let dead = format!("127.0.0.1:{}", free_port());
    f.target("web", &[f.host(0), dead.clone(), f.host(1), f.host(2)]);
    let out = f.run(&["exec", "web", "--json", "--", "echo", "hello", "from", "$((6*7))"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(host_statuses(&v), ["changed", "unreachable", "changed", "changed"]);
    assert_eq!(v["status"], "unreachable");
    for i in [0, 2, 3] {
        assert_eq!(v["hosts"][i]["steps"][0]["stdout"], "hello from 42\n");
        assert_eq!(v["hosts"][i]["exit_code"], 0);
    }
    assert_eq!(v["hosts"][1]["host"], dead);
    assert!(v["hosts"][1]["message"].as_str().unwrap().contains("cannot connect"), "{v}");

    // One host, a failing command: exit 2 with its exit code and stderr.
    let one = format!("web/{}", f.host(1));
    let out = f.run(&["exec", &one, "--json", "--", "echo oops >&2; exit 7"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["hosts"].as_array().unwrap().len(), 1);
    assert_eq!(v["hosts"][0]["status"], "failed");
    assert_eq!(v["hosts"][0]["exit_code"], 7);
    assert_eq!(v["hosts"][0]["steps"][0]["stderr"], "oops\n");

    // Human output: the host's output and a summary table.
    let out = f.run(&["exec", "web", "--", "hostname"]);
    let text = stdout(&out);
    assert!(text.contains("HOST") && text.contains("unreachable") && text.contains("4 hosts: 0 ok, 3 changed"), "{text}");
}

#[test]
fn exec_times_out_a_command() {
    let f = Fleet::start(1);
    f.target("web", &f.all());
    let out = f.run(&["exec", "web", "--json", "--timeout", "300ms", "--", "sleep", "5"]);
    assert_eq!(code(&out), 2);
    let v = json(&out);
    assert!(v["hosts"][0]["message"].as_str().unwrap().contains("timed out after 300ms"), "{v}");
}

#[test]
fn host_keys_unknown_refused_under_strict_recorded_under_accept_new_changed_always_refused() {
    let f = Fleet::start(1);
    f.target("web", &f.all());
    // Unknown: an empty known_hosts.
    let kh = f.dir().join("empty_known_hosts");
    std::fs::write(&kh, "").unwrap();
    let kh_arg = kh.to_str().unwrap();
    let out = f.run(&["exec", "web", "--json", "--known-hosts", kh_arg, "--", "true"]);
    assert_eq!(code(&out), 3);
    let msg = json(&out)["hosts"][0]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("is not in") && msg.contains("accept-new"), "{msg}");
    // What OpenSSH shows: the key type, its SHA256 fingerprint, and the
    // `[host]:port` name known_hosts needs.
    let offered = f.sshds[0].host_public_key();
    let key_type = offered.split_whitespace().next().unwrap().to_string();
    let fingerprint = {
        use base64::Engine;
        let blob = base64::engine::general_purpose::STANDARD.decode(offered.split_whitespace().nth(1).unwrap()).unwrap();
        format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(&blob)))
    };
    let known_as = format!("[127.0.0.1]:{}", f.sshds[0].port());
    assert!(msg.contains(&key_type) && msg.contains(&fingerprint) && msg.contains(&known_as), "{msg}\nwant {key_type} {fingerprint} {known_as}");
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), "");

    // accept-new records it, and the next strict run accepts it.
    let out = f.run(&["exec", "web", "--json", "--known-hosts", kh_arg, "--host-key-policy", "accept-new", "--", "true"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let recorded = std::fs::read_to_string(&kh).unwrap();
    assert_eq!(recorded.trim(), format!("[127.0.0.1]:{} {}", f.sshds[0].port(), f.sshds[0].host_public_key()));
    let out = f.run(&["exec", "web", "--json", "--known-hosts", kh_arg, "--", "true"]);
    assert_eq!(code(&out), 0);

    // Changed: another key recorded for this host; refused even with accept-new.
    let other = crate::harness::sshd::new_key(&f.dir().join("other_key"));
    std::fs::write(&kh, format!("[127.0.0.1]:{} {other}\n", f.sshds[0].port())).unwrap();
    for policy in ["strict", "accept-new"] {
        let out = f.run(&["exec", "web", "--json", "--known-hosts", kh_arg, "--host-key-policy", policy, "--", "touch", "/tmp/should-not-exist"]);
        assert_eq!(code(&out), 3);
        let msg = json(&out)["hosts"][0]["message"].as_str().unwrap().to_string();
        assert!(msg.contains("CHANGED") && msg.contains("line 1"), "{msg}");
        assert!(msg.contains(&fingerprint) && msg.contains(&known_as), "{msg}");
    }
    assert_eq!(std::fs::read_to_string(&kh).unwrap().lines().count(), 1, "a changed key is never recorded");
}

const SUDO_USER: &str = "scalersudo";
const SUDO_PASSWORD: &str = "s3cret pass'word";

/// A user that may sudo with a password (idempotent; the tests run as root).
fn ensure_sudo_user() {
    assert!(Path::new("/usr/bin/sudo").exists(), "sudo is missing: run scripts/test.sh or `apt-get install -y sudo`");
    let run = |cmd: &str| {
        let out = std::process::Command::new("sh").arg("-c").arg(cmd).output().unwrap();
        assert!(out.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&format!("id -u {SUDO_USER} >/dev/null 2>&1 || useradd -m -s /bin/sh {SUDO_USER}"));
    run(&format!("echo {SUDO_USER}:\"$PW\" | chpasswd").replace("$PW", &SUDO_PASSWORD.replace('\'', "'\\''")).replace('"', "'"));
    run(&format!(
        "printf '%s\\n' '{SUDO_USER} ALL=(ALL) ALL' > /etc/sudoers.d/scalersudo && chmod 0440 /etc/sudoers.d/scalersudo"
    ));
}

#[test]
fn sudo_answers_the_password_prompt_from_a_secret() {
    ensure_sudo_user();
    let f = Fleet::start(1);
    f.target("web", &f.all());
    f.write(
        "pb.yaml",
        "kind: Playbook\nname: as-root\nsteps:\n  - name: whoami\n    run: id -un\n  - name: root\n    sudo: { command: \"id -un; id -un -- {{ who }}\", password: { env: SUDO_PW } }\n    register: r\n  - name: as nobody\n    sudo: { command: id -un, user: nobody, password: { env: SUDO_PW } }\nparams:\n  who: { default: root }\n",
    );
    let cli = Cli::new().env("SUDO_PW", SUDO_PASSWORD);
    let out = cli.run(f.dir(), &["run", "as-root", "--on", "web", "--user", SUDO_USER, "--json"]);
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let v = json(&out);
    let steps = &v["hosts"][0]["steps"];
    assert_eq!(steps[0]["stdout"], format!("{SUDO_USER}\n"));
    assert_eq!(steps[1]["stdout"], "root\nroot\n");
    assert_eq!(steps[2]["stdout"], "nobody\n");
    assert!(!stdout(&out).contains(SUDO_PASSWORD) && !stderr(&out).contains(SUDO_PASSWORD));
    assert!(!stdout(&out).contains("scaler-sudo-"), "the prompt marker is removed: {}", stdout(&out));

    // A wrong password fails the step (and does not hang).
    let cli = Cli::new().env("SUDO_PW", "wrong");
    let out = cli.run(f.dir(), &["run", "as-root", "--on", "web", "--user", SUDO_USER, "--json"]);
    assert_eq!(code(&out), 2);
    let v = json(&out);
    assert_eq!(v["hosts"][0]["steps"][1]["status"], "failed");

    // Check mode masks the password and runs nothing.
    let cli = Cli::new().env("SUDO_PW", SUDO_PASSWORD);
    let out = cli.run(f.dir(), &["run", "as-root", "--on", "web", "--user", SUDO_USER, "--check"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("sudo (password: ********): id -un; id -un -- root"), "{text}");
    assert!(!text.contains(SUDO_PASSWORD));
}

#[test]
fn a_secret_that_a_command_prints_is_masked_in_every_output() {
    ensure_sudo_user();
    let f = Fleet::start(1);
    f.target("web", &f.all());
    f.write(
        "pb.yaml",
        "kind: Playbook\nname: leak\nparams:\n  what: { required: true }\nsteps:\n  - name: echo\n    run: \"printf '%s\\n' {{ what }}; printf %s {{ what }} | base64\"\n  - name: root\n    sudo: { command: id -un, password: { env: SUDO_PW } }\n",
    );
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(SUDO_PASSWORD)
    };
    let cli = Cli::new().env("SUDO_PW", SUDO_PASSWORD);
    for extra in [&["--json"][..], &[][..], &["--check"][..]] {
        let mut args = vec!["run", "leak", "--on", "web", "--user", SUDO_USER, "--var"];
        let var = format!("what={SUDO_PASSWORD}");
        args.push(&var);
        args.extend_from_slice(extra);
        let out = cli.run(f.dir(), &args);
        assert_eq!(code(&out), 0, "{extra:?}: {}\n{}", stdout(&out), stderr(&out));
        let all = stdout(&out) + &stderr(&out);
        assert!(!all.contains(SUDO_PASSWORD) && !all.contains(&b64), "{extra:?}: a secret was shown:\n{all}");
        if !extra.is_empty() {
            // The plain table shows no output; --json and --check show it masked.
            assert!(all.contains("***"), "{extra:?}: {all}");
        }
    }
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn put_and_get_round_trip_a_10_mb_file_atomically() {
    let f = Fleet::start(2);
    f.target("web", &f.all());
    let remote = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    f.write("files/big.bin", "");
    std::fs::write(f.dir().join("files/big.bin"), &big).unwrap();
    f.write("files/app.conf.j2", "host={{ host }}\nversion={{ version }}\n");
    // An older file at the destination is replaced.
    std::fs::write(remote.path().join("big.bin"), b"old").unwrap();
    f.write(
        "pb.yaml",
        &format!(
            "kind: Playbook\nname: files\nparams:\n  version: {{ default: \"1.4\" }}\nsteps:\n  - put: {{ src: files/big.bin, dest: \"{r}/big.bin\", mode: \"0600\" }}\n  - put: {{ src: files/app.conf.j2, dest: \"{r}/app-{{{{ port }}}}.conf\", template: true, mode: \"0644\" }}\n  - get: {{ src: \"{r}/big.bin\", dest: \"got/{{{{ port }}}}.bin\" }}\n",
            r = remote.path().display()
        ),
    );
    let out = f.run(&["run", "files", "--on", "web", "--json"]);
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let want = hex::encode(Sha256::digest(&big));
    assert_eq!(sha256(&remote.path().join("big.bin")), want);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(remote.path().join("big.bin")).unwrap().permissions().mode() & 0o777, 0o600);
    for s in &f.sshds {
        assert_eq!(sha256(&f.dir().join(format!("got/{}.bin", s.port()))), want);
        let conf = std::fs::read_to_string(remote.path().join(format!("app-{}.conf", s.port()))).unwrap();
        assert_eq!(conf, format!("host=127.0.0.1:{}\nversion=1.4\n", s.port()));
    }
    let leftovers: Vec<_> = std::fs::read_dir(remote.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("scaler-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn serial_batches_run_in_order() {
    let f = Fleet::start(4);
    f.target("web", &f.all());
    let log = tempfile::NamedTempFile::new().unwrap();
    f.write(
        "pb.yaml",
        &format!(
            "kind: Playbook\nname: roll\nserial: 2\nsteps:\n  - run: echo start {{{{ host }}}} >> {l}\n  - run: echo end {{{{ host }}}} >> {l}\n",
            l = log.path().display()
        ),
    );
    let out = f.run(&["run", "roll", "--on", "web", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json(&out);
    let batches: Vec<u64> = v["hosts"].as_array().unwrap().iter().map(|h| h["batch"].as_u64().unwrap()).collect();
    assert_eq!(batches, [1, 1, 2, 2]);
    let lines: Vec<String> = std::fs::read_to_string(log.path()).unwrap().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 8, "{lines:?}");
    let pos = |l: &str| lines.iter().position(|x| x == l).unwrap();
    for first in [f.host(0), f.host(1)] {
        for second in [f.host(2), f.host(3)] {
            assert!(pos(&format!("end {first}")) < pos(&format!("start {second}")), "{lines:?}");
        }
    }
}

#[test]
fn max_fail_percentage_stops_the_run_between_batches() {
    let f = Fleet::start(4);
    f.target("web", &f.all());
    f.write(
        "pb.yaml",
        &format!(
            "kind: Playbook\nname: roll\nserial: 1\nmax_fail_percentage: 30\nsteps:\n  - run: test {{{{ host }}}} != {}\n",
            f.host(1)
        ),
    );
    let out = f.run(&["run", "roll", "--on", "web", "--json"]);
    assert_eq!(code(&out), 2);
    let v = json(&out);
    // After host 2 fails, 1 of 2 hosts (50%) failed > 30%: hosts 3 and 4 never run.
    assert_eq!(host_statuses(&v), ["changed", "failed", "skipped", "skipped"]);
    assert!(v["stopped"].as_str().unwrap().contains("max_fail_percentage 30% exceeded"), "{v}");
    // Hosts not run still list every step, skipped, with the reason.
    let steps = v["hosts"][2]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{v}");
    assert_eq!(steps[0]["status"], "skipped");
    assert!(steps[0]["message"].as_str().unwrap().starts_with("not run: max_fail_percentage 30% exceeded"), "{v}");
}

#[test]
fn retries_until_the_step_succeeds() {
    let f = Fleet::start(1);
    f.target("web", &f.all());
    let counter = tempfile::tempdir().unwrap();
    let c = counter.path().join("n");
    f.write(
        "pb.yaml",
        &format!(
            "kind: Playbook\nname: flaky\nparams:\n  need: {{ default: 3 }}\nsteps:\n  - run: n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; [ $n -ge {{{{ need }}}} ]\n    retries: 3\n    delay: 10ms\n",
            c = c.display()
        ),
    );
    let out = f.run(&["run", "flaky", "--on", "web", "--json"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert_eq!(json(&out)["hosts"][0]["steps"][0]["attempts"], 3);
    std::fs::remove_file(&c).unwrap();
    let out = f.run(&["run", "flaky", "--on", "web", "--json", "--var", "need=9"]);
    assert_eq!(code(&out), 2);
    assert_eq!(json(&out)["hosts"][0]["steps"][0]["attempts"], 4);
}

#[test]
fn abort_stops_the_host_with_its_message_and_registered_results_feed_conditions() {
    let f = Fleet::start(2);
    f.target("web", &f.all());
    f.write(
        "pb.yaml",
        &format!(
            "kind: Playbook\nname: guard\nsteps:\n  - run: \"echo {{{{ port }}}}\"\n    register: probe\n    changed_when: \"false\"\n  - abort: \"bad port on {{{{ host }}}}: {{{{ probe.stdout | trim }}}}\"\n    when: \"probe.stdout | trim == '{}'\"\n  - run: \"exit 3\"\n    warn: true\n  - run: \"echo done\"\n    failed_when: \"'done' not in result.stdout\"\n",
            f.sshds[1].port()
        ),
    );
    let out = f.run(&["run", "guard", "--on", "web", "--json"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(host_statuses(&v), ["changed", "failed"]);
    let h0 = &v["hosts"][0]["steps"];
    assert_eq!(h0[0]["status"], "ok");
    assert_eq!(h0[1]["status"], "skipped");
    assert_eq!(h0[2]["warning"], true);
    assert_eq!(h0[3]["status"], "changed");
    assert_eq!(
        v["hosts"][1]["message"],
        format!("aborted: bad port on {}: {}", f.host(1), f.sshds[1].port())
    );
    // Every step is listed: the two after the abort as skipped, with why.
    let h1 = v["hosts"][1]["steps"].as_array().unwrap();
    assert_eq!(h1.len(), 4, "{v}");
    assert_eq!(h1[1]["status"], "failed");
    for s in &h1[2..] {
        assert_eq!(s["status"], "skipped", "{v}");
        assert_eq!(s["message"], "not run: step 2 (abort) failed", "{v}");
    }
}

#[test]
fn a_step_delegated_to_one_host_runs_once_per_run() {
    let f = Fleet::start(3);
    f.target("web", &f.all());
    let marker = tempfile::tempdir().unwrap();
    let log = marker.path().join("once.log");
    f.write(
        "pb.yaml",
        &format!(
            "kind: Playbook\nname: migrate\nsteps:\n  - run: echo {{{{ host }}}} >> {log}\n    on: web/{first}\n  - run: echo each\n",
            log = log.display(),
            first = f.host(0)
        ),
    );
    let out = f.run(&["run", "migrate", "--on", "web", "--json"]);
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines.lines().count(), 1, "the delegated step ran more than once:\n{lines}");
    let v = json(&out);
    let hosts = v["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3);
    let shared = hosts.iter().filter(|h| h["steps"][0]["message"].as_str().unwrap_or("").starts_with("ran once for the run")).count();
    assert_eq!(shared, 2, "the other hosts say they share the one result: {v}");
    assert!(hosts.iter().all(|h| h["steps"][1]["stdout"] == "each\n"), "{v}");
}

#[test]
fn bad_playbooks_and_params_exit_4_before_touching_any_host() {
    let f = Fleet::start(1);
    f.target("web", &f.all());
    let marker = tempfile::tempdir().unwrap();
    let m = marker.path().join("ran");
    f.write(
        "pb.yaml",
        &format!(
            "kind: Playbook\nname: p\nparams:\n  version: {{ required: true }}\nsteps:\n  - run: touch {}\n  - prompt: {{ var: confirm, text: \"go?\" }}\n",
            m.display()
        ),
    );
    let out = f.run(&["run", "p", "--on", "web"]);
    assert_eq!(code(&out), 4);
    assert!(stderr(&out).contains("needs parameter `version`: pass `--var version=VALUE`"), "{}", stderr(&out));
    let out = f.run(&["run", "p", "--on", "web", "--var", "version=1", "--var", "nope=1"]);
    assert_eq!(code(&out), 4);
    assert!(stderr(&out).contains("no parameter `nope`"), "{}", stderr(&out));
    // No terminal, no --var, no default: refuses to start instead of hanging.
    let out = f.run(&["run", "p", "--on", "web", "--var", "version=1"]);
    assert_eq!(code(&out), 4);
    assert!(stderr(&out).contains("prompt `confirm` needs an answer and there is no terminal"), "{}", stderr(&out));
    let out = f.run(&["run", "nothere", "--on", "web"]);
    assert_eq!(code(&out), 4);
    let out = f.run(&["run", "p", "--on", "nowhere", "--var", "version=1"]);
    assert_eq!(code(&out), 4);
    assert!(!m.exists(), "nothing ran");
}

fn prompt_repo(f: &Fleet, out_file: &Path) {
    f.target("web", &f.all());
    f.write(
        "pb.yaml",
        &format!(
            "kind: Playbook\nname: ask\nsteps:\n  - prompt: {{ var: confirm, text: \"Really deploy?\" }}\n  - local: echo {{{{ confirm }}}} > {}\n",
            out_file.display()
        ),
    );
}

#[test]
fn prompt_answered_by_var() {
    let f = Fleet::start(1);
    let o = f.dir().join("answer.txt");
    prompt_repo(&f, &o);
    let out = f.run(&["run", "ask", "--on", "web", "--var", "confirm=from var"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&o).unwrap(), "from var\n");
}

#[test]
fn prompt_answered_on_a_terminal() {
    let f = Fleet::start(1);
    let o = f.dir().join("answer.txt");
    prompt_repo(&f, &o);
    // `script` gives scaler a pseudo-terminal; the answer is typed into it.
    let cmd = format!("{} run ask --on web", crate::harness::scaler_bin().display());
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(f.dir())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"typed yes\n")?;
            child.wait_with_output()
        })
        .expect("run `script` (util-linux)");
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("Really deploy?"), "{shown}");
    assert_eq!(std::fs::read_to_string(&o).unwrap(), "typed yes\n");
}

#[test]
fn check_mode_shows_commands_diffs_and_downloads_and_changes_nothing() {
    let f = Fleet::start(1);
    f.target("web", &f.all());
    let remote = tempfile::tempdir().unwrap();
    let dest = remote.path().join("app.conf");
    std::fs::write(&dest, "host=old\nkeep=1\n").unwrap();
    f.write("files/app.conf.j2", "host={{ host }}\nkeep=1\n");
    let marker = remote.path().join("ran");
    f.write(
        "pb.yaml",
        &format!(
            "kind: Playbook\nname: deploy\nparams:\n  version: {{ required: true }}\nsteps:\n  - name: install\n    run: touch {m}; echo {{{{ version }}}}\n    register: install\n  - put: {{ src: files/app.conf.j2, dest: \"{d}\", template: true }}\n  - get: {{ src: \"{d}\", dest: \"logs/{{{{ port }}}}.conf\" }}\n  - abort: \"install failed\"\n    when: install.exit_code != 0\n",
            m = marker.display(),
            d = dest.display()
        ),
    );
    let out = f.run(&["run", "deploy", "--on", "web", "--var", "version=1.4 beta", "--check"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("touch {}; echo '1.4 beta'", marker.display())), "{text}");
    assert!(text.contains("-host=old") && text.contains(&format!("+host={}", f.host(0))), "{text}");
    assert!(text.contains(&format!("download {} -> logs/{}.conf", dest.display(), f.sshds[0].port())), "{text}");
    assert!(text.contains("decided at run time"), "{text}");
    assert!(!marker.exists());
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "host=old\nkeep=1\n");
    assert!(!f.dir().join("logs").exists());
}

#[test]
fn put_sources_outside_the_repository_are_refused_and_never_shown() {
    let f = Fleet::start(1);
    f.target("web", &f.all());
    let remote = tempfile::tempdir().unwrap();
    let dest = remote.path().join("got");
    std::os::unix::fs::symlink("/etc/passwd", f.dir().join("passwd-link")).unwrap();
    let pb = |name: &str, src: &str| {
        format!("kind: Playbook\nname: {name}\nparams:\n  f: {{ default: x }}\nsteps:\n  - put: {{ src: \"{src}\", dest: \"{}\", template: true }}\n", dest.display())
    };
    f.write("bad.yaml", &[pb("abs", "/etc/passwd"), pb("climb", "files/../../../etc/passwd"), pb("link", "passwd-link")].join("---\n"));
    let out = f.run(&["validate", "."]);
    assert_ne!(code(&out), 0);
    let err = stderr(&out) + &stdout(&out);
    assert_eq!(err.matches("escapes the repository").count(), 3, "{err}");
    for line in [6, 13, 20] {
        assert!(err.contains(&format!("bad.yaml:{line}:")), "line {line}: {err}");
    }
    assert!(err.contains("put.src"), "{err}");
    assert!(!err.contains("root:x"), "{err}");

    // Rendered paths are checked when rendered; includes are confined too.
    std::fs::remove_file(f.dir().join("bad.yaml")).unwrap();
    f.write("files/part.j2", "included={{ host }}\n");
    f.write("files/main.j2", "{% include \"files/part.j2\" %}main\n");
    f.write("files/sneaky.j2", "{% include \"../../../etc/passwd\" %}\n");
    f.write("pb.yaml", &pb("tpl", "{{ f }}"));
    let out = f.run(&["validate", "."]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for (src, why) in [("../../../etc/passwd", "escapes the repository"), ("passwd-link", "escapes the repository"), ("files/sneaky.j2", "escapes the repository")] {
        let out = f.run(&["run", "tpl", "--on", "web", "--var", &format!("f={src}"), "--check", "--json"]);
        assert_eq!(code(&out), 2, "{src}: {}", stderr(&out));
        let all = stdout(&out) + &stderr(&out);
        assert!(all.contains(why), "{src}: {all}");
        assert!(!all.contains("root:x"), "{src}: the file's contents were shown: {all}");
    }
    let out = f.run(&["run", "tpl", "--on", "web", "--var", "f=files/main.j2"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), format!("included={}\nmain\n", f.host(0)));
}

/// Values that would create `marker` if they reached a shell unquoted.
fn payloads(marker: &Path) -> Vec<String> {
    let m = marker.display();
    vec![
        format!("; touch {m}"),
        format!("$(touch {m})"),
        format!("`touch {m}`"),
        format!("'; touch {m}; echo '"),
        format!("\"; touch {m}; echo \""),
        format!("x\ntouch {m}"),
        format!("| touch {m}"),
        format!("&& touch {m}"),
    ]
}

fn home_dir() -> PathBuf {
    let out = std::process::Command::new("sh").arg("-c").arg("getent passwd \"$(id -un)\" | cut -d: -f6").output().unwrap();
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn templated_values_and_file_names_cannot_inject_commands() {
    let f = Fleet::start(1);
    f.target("web", &f.all());
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("pwned");
    // File names cannot hold `/`: their payloads touch a relative marker,
    // which would land in the remote home or the local working directory.
    let rel = format!("pwned-{}", std::process::id());
    let rel_markers = [home_dir().join(&rel), f.dir().join(&rel)];
    f.write("files/x.txt", "x\n");
    f.write(
        "pb.yaml",
        &format!(
            "kind: Playbook\nname: inj\nparams:\n  v: {{ required: true }}\n  n: {{ required: true }}\nsteps:\n  - run: printf '%s' {{{{ v }}}}\n  - local: printf '%s' {{{{ v }}}}\n  - sudo: printf '%s' {{{{ v }}}}\n  - put: {{ src: files/x.txt, dest: \"{t}/f {{{{ n }}}}\", mode: \"0640\" }}\n  - get: {{ src: \"{t}/f {{{{ n }}}}\", dest: \"{t}/back {{{{ n }}}}\" }}\n",
            t = tmp.path().display()
        ),
    );
    for (p, n) in payloads(&marker).into_iter().zip(payloads(Path::new(&rel))) {
        let out = f.run(&["run", "inj", "--on", "web", "--json", "--var", &format!("v={p}"), "--var", &format!("n={n}")]);
        assert_eq!(code(&out), 0, "payload {p:?}: {}\n{}", stdout(&out), stderr(&out));
        let v = json(&out);
        let steps = &v["hosts"][0]["steps"];
        assert_eq!(steps[0]["stdout"], p.as_str(), "remote run prints the value verbatim");
        assert_eq!(steps[1]["stdout"], p.as_str(), "local run prints the value verbatim");
        assert_eq!(steps[2]["stdout"], p.as_str(), "sudo prints the value verbatim");
        assert!(!marker.exists(), "payload {p:?} ran a command");
        assert!(tmp.path().join(format!("f {n}")).exists(), "uploaded under the literal name {n:?}");
        assert!(tmp.path().join(format!("back {n}")).exists(), "downloaded under the literal name {n:?}");
        for m in &rel_markers {
            assert!(!m.exists(), "file name {n:?} ran a command");
        }
    }
}

#[test]
fn host_names_cannot_inject_commands() {
    // A node name comes from state or a provider; give one that is hostile.
    let sshd = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("pwned");
    let rt = tokio::runtime::Runtime::new().unwrap();
    for name in payloads(&marker) {
        let params = scaler::exec::SshParams {
            address: "127.0.0.1".into(),
            port: sshd.port(),
            user: sshd.user().into(),
            key: Some(sshd.client_key().to_path_buf()),
            known_hosts: sshd.known_hosts().to_path_buf(),
            host_key_policy: scaler::model::HostKeyPolicy::Strict,
            connect_timeout: std::time::Duration::from_secs(10),
        };
        let pb: scaler::model::Playbook = serde_json::from_value(serde_json::json!({
            "name": "hosts",
            "steps": [{"run": "printf '%s' {{ host }}"}, {"local": "printf '%s' {{ host }}"}]
        }))
        .unwrap();
        let opts = scaler::exec::RunOptions {
            root: tmp.path().to_path_buf(),
            target: "t".into(),
            vars: BTreeMap::new(),
            check: false,
            forks: None,
            default_timeout: None,
            delegates: BTreeMap::new(),
        };
        let runner = scaler::exec::Runner::new(&pb, opts, Arc::new(scaler::exec::NoProgress), Arc::new(scaler::exec::TerminalPrompter::new())).unwrap();
        let r = rt.block_on(runner.run(vec![scaler::exec::HostSpec { name: name.clone(), ssh: Some(params) }]));
        assert_eq!(r.hosts[0].status, scaler::exec::Status::Changed, "{r:?}");
        assert_eq!(r.hosts[0].steps[0].stdout, name);
        assert_eq!(r.hosts[0].steps[1].stdout, name);
        assert!(!marker.exists(), "host name {name:?} ran a command");
    }
}

#[test]
fn exec_help_teaches() {
    let out = scaler(&PathBuf::from("."), &["exec", "--help"]);
    let text = stdout(&out);
    assert!(text.contains("scaler exec web -- uptime") && text.contains("Exit codes"), "{text}");
    let out = scaler(&PathBuf::from("."), &["run", "--help"]);
    let text = stdout(&out);
    assert!(text.contains("--var") && text.contains("--check") && text.contains("4 bad playbook"), "{text}");
}
