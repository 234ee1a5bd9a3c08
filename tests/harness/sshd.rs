//! A real OpenSSH server on 127.0.0.1 for tests: temp ed25519 host and client
//! keys, `authorized_keys`, a matching `known_hosts`, and an `sshd_config`
//! that works as root under `/tmp` (see `DEPS.md`). Killed on drop.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::wait::free_port;

/// Where Debian's `openssh-server` puts the daemon.
pub const SSHD: &str = "/usr/sbin/sshd";
const INSTALL_HINT: &str = "sshd not found: run scripts/test.sh or `apt-get install -y openssh-server`";
/// How long sshd may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A running sshd; killed on drop.
pub struct Sshd {
    child: Child,
    dir: TempDir,
    port: u16,
    user: String,
    client_key: PathBuf,
    known_hosts: PathBuf,
    host_public_key: String,
}

impl Sshd {
    /// Starts sshd on a free loopback port and waits until it sends its
    /// `SSH-2.0` banner. Panics with an install hint if sshd is missing and
    /// with sshd's log if it does not come up.
    pub fn start() -> Sshd {
        if !Path::new(SSHD).exists() {
            panic!("{INSTALL_HINT}");
        }
        // sshd (as root) refuses to start without its privilege separation
        // directory. If it cannot be made here, sshd's own error ends up in
        // the panic message below.
        let _ = std::fs::create_dir_all("/run/sshd");
        // The port was free a moment ago; retry if another process took it.
        let mut last = String::new();
        for _ in 0..5 {
            match Sshd::try_start() {
                Ok(sshd) => return sshd,
                Err(log) if log.contains("Address already in use") => last = log,
                Err(log) => panic!("{log}"),
            }
        }
        panic!("sshd could not get a free port; last attempt:\n{last}");
    }

    fn try_start() -> Result<Sshd, String> {
        let dir = tempfile::Builder::new().prefix("sshd-").tempdir().expect("temp dir for sshd");
        let host_key = dir.path().join("host_ed25519");
        let client_key = dir.path().join("client_ed25519");
        keygen(&host_key, "scaler-test-host");
        keygen(&client_key, "scaler-test-client");
        let authorized_keys = dir.path().join("authorized_keys");
        std::fs::write(&authorized_keys, read(&pub_path(&client_key))).expect("write authorized_keys");
        let host_public_key = key_only(&read(&pub_path(&host_key)));

        let port = free_port();
        let conf = dir.path().join("sshd_config");
        std::fs::write(&conf, config(dir.path(), port, &host_key, &authorized_keys)).expect("write sshd_config");
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_public_key}\n")).expect("write known_hosts");
        // A log file, not a pipe: nobody has to drain it.
        let log_file = std::fs::File::create(dir.path().join("sshd.log")).expect("create sshd.log");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup sshd.log"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));
        let mut sshd = Sshd { child, dir, port, user: current_user(), client_key, known_hosts, host_public_key };
        // On failure `sshd` is dropped here, which kills the daemon.
        sshd.wait_ready().map(|()| sshd).map_err(|log| {
            format!("sshd on 127.0.0.1:{port} did not become ready within {READY_TIMEOUT:?}; its log:\n{log}")
        })
    }

    /// Connects until sshd sends its banner; `Err(log)` if it exits or the
    /// deadline passes.
    fn wait_ready(&mut self) -> Result<(), String> {
        let end = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("(sshd exited: {status})\n{}", self.log()));
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 7];
                if stream.read_exact(&mut buf).is_ok() && &buf == b"SSH-2.0" {
                    return Ok(());
                }
            }
            if Instant::now() >= end {
                return Err(self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port sshd listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The user to log in as (the user running the tests).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The client's private key (its `.pub` is next to it).
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// A `known_hosts` with the line `[127.0.0.1]:PORT <host key>`.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// The host's public key: `ssh-ed25519 AAAA…` (no comment).
    pub fn host_public_key(&self) -> &str {
        &self.host_public_key
    }

    /// sshd's temp dir (config, keys, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// The system `ssh` client set up for this server (key, known_hosts,
    /// strict host key checking, batch mode, port), ready for `.arg(CMD)`.
    pub fn ssh_command(&self) -> Command {
        self.ssh_command_with_known_hosts(&self.known_hosts)
    }

    /// [`Sshd::ssh_command`] with another `known_hosts` file (ssh keeps the
    /// first value of an option, so it cannot be overridden afterwards).
    pub fn ssh_command_with_known_hosts(&self, known_hosts: &Path) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-i")
            .arg(&self.client_key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .args(["-o", "GlobalKnownHostsFile=/dev/null", "-F", "/dev/null"])
            .arg("-p")
            .arg(self.port.to_string())
            .arg(format!("{}@127.0.0.1", self.user))
            .stdin(Stdio::null());
        cmd
    }
}

/// `n` sshd that all also accept the first one's client key, and a
/// known_hosts text listing every one (`[127.0.0.1]:PORT key`).
pub fn fleet(n: usize) -> (Vec<Sshd>, String) {
    let sshds: Vec<Sshd> = (0..n).map(|_| Sshd::start()).collect();
    let key_pub = read(&pub_path(sshds[0].client_key()));
    let mut known = String::new();
    for s in &sshds {
        let ak = s.dir().join("authorized_keys");
        let text = read(&ak) + &key_pub;
        std::fs::write(&ak, text).expect("write authorized_keys");
        known.push_str(&format!("[127.0.0.1]:{} {}\n", s.port(), s.host_public_key()));
    }
    (sshds, known)
}

/// A config repo for a [`fleet`]: its `known_hosts`, a Project whose
/// `defaults.ssh` log in with the first sshd's client key, a Target `web`
/// listing every sshd (`127.0.0.1:PORT`), then `documents` (YAML documents,
/// each starting with `---`).
pub fn web_repo(sshds: &[Sshd], known_hosts: &str, documents: &str) -> TempDir {
    let dir = tempfile::tempdir().expect("temp repo");
    std::fs::write(dir.path().join("known_hosts"), known_hosts).expect("write known_hosts");
    let hosts: Vec<String> = sshds.iter().map(|s| format!("\"127.0.0.1:{}\"", s.port())).collect();
    let project = format!(
        "kind: Project\nname: t\ndefaults:\n  ssh: {{ user: {}, key: {}, known_hosts: known_hosts }}\n---\nkind: Target\nname: web\nhosts: [{}]\n",
        sshds[0].user(),
        sshds[0].client_key().display(),
        hosts.join(", ")
    );
    std::fs::write(dir.path().join("scaler.yaml"), project + documents).expect("write scaler.yaml");
    dir
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &Path, port: u16, host_key: &Path, authorized_keys: &Path) -> String {
    format!(
        "Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {pid}
AuthorizedKeysFile {authorized_keys}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
UseDNS no
MaxStartups 1000:30:1000
MaxSessions 100
PrintMotd no
Subsystem sftp internal-sftp
",
        host_key = host_key.display(),
        pid = dir.join("sshd.pid").display(),
        authorized_keys = authorized_keys.display(),
    )
}

fn keygen(path: &Path, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ssh-keygen: {e} (install it: `apt-get install -y openssh-client`)"));
    assert!(out.status.success(), "ssh-keygen failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Generates a fresh ed25519 key pair at `path` (and `path.pub`); returns the
/// public key as `ssh-ed25519 AAAA…`.
pub fn new_key(path: &Path) -> String {
    keygen(path, "scaler-test-other");
    key_only(&read(&pub_path(path)))
}

fn pub_path(key: &Path) -> PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `ssh-ed25519 AAAA… comment` -> `ssh-ed25519 AAAA…`.
fn key_only(line: &str) -> String {
    line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run `id -un`");
    let user = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!user.is_empty(), "cannot tell the current user");
    user
}
