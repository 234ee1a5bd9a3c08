//! Git repositories in temp dirs with isolated config: no global or system
//! config, a fixed author and committer, `main` as the default branch; and
//! `git daemon` serving one of them on loopback ([`GitDaemon`]).

use std::path::Path;
use std::os::unix::process::CommandExt;
use std::process::Command;

use tempfile::TempDir;

/// A git repository in a temp dir, removed on drop.
pub struct GitRepo {
    dir: TempDir,
}

impl Default for GitRepo {
    fn default() -> GitRepo {
        GitRepo::new()
    }
}

impl GitRepo {
    /// `git init` on branch `main` in a new temp dir.
    pub fn new() -> GitRepo {
        let repo = GitRepo { dir: tempfile::tempdir().expect("temp dir for a git repo") };
        repo.git(&["init", "--quiet"]);
        repo
    }

    /// The work tree.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `git ARGS` with isolated config, in the repo; panics with git's output
    /// on failure and returns its stdout, trimmed.
    pub fn git(&self, args: &[&str]) -> String {
        let out = git_command(self.path())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run git: {e} (install it: `apt-get install -y git`)"));
        assert!(
            out.status.success(),
            "`git {}` failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Writes `text` to `path` (relative to the work tree), creating parent
    /// directories.
    pub fn write(&self, path: &str, text: &str) {
        let full = self.path().join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).expect("create parent dirs");
        }
        std::fs::write(&full, text).unwrap_or_else(|e| panic!("write {}: {e}", full.display()));
    }

    /// Removes `path` (a file or a directory) from the work tree.
    pub fn remove(&self, path: &str) {
        let full = self.path().join(path);
        if full.is_dir() {
            std::fs::remove_dir_all(&full).expect("remove dir");
        } else {
            std::fs::remove_file(&full).expect("remove file");
        }
    }

    /// Stages everything and commits (empty commits allowed); returns the
    /// commit id.
    pub fn commit(&self, msg: &str) -> String {
        self.git(&["add", "--all"]);
        self.git(&["commit", "--quiet", "--allow-empty", "-m", msg]);
        self.head()
    }

    /// The id of `HEAD`.
    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }
}

/// A `git` command with isolated config, run in `dir`.
pub fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Scaler Test")
        .env("GIT_AUTHOR_EMAIL", "test@scaler.invalid")
        .env("GIT_COMMITTER_NAME", "Scaler Test")
        .env("GIT_COMMITTER_EMAIL", "test@scaler.invalid")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .args(["-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]);
    cmd
}

/// `git daemon` serving one repository read-only on 127.0.0.1 (the
/// `git://` transport), stopped when dropped.
pub struct GitDaemon {
    child: std::process::Child,
    /// The URL of the served repository.
    pub url: String,
}

impl GitDaemon {
    /// Serves `repo` (its work tree) at `git://127.0.0.1:PORT/NAME`.
    pub fn serve(repo: &Path) -> GitDaemon {
        let parent = repo.parent().expect("a repository below a directory");
        let name = repo.file_name().expect("a repository name").to_string_lossy().to_string();
        // Its own process group: `git` runs `git-daemon` as a child, and a
        // drop stops both.
        let (child, port) = listening("`git daemon`", |port| {
            git_command(parent)
                .process_group(0)
                .args(["daemon", "--reuseaddr", "--listen=127.0.0.1", &format!("--port={port}"), "--export-all", "--informative-errors"])
                .arg(format!("--base-path={}", parent.display()))
                .arg(repo)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run `git daemon`: {e} (install it: `apt-get install -y git`)"))
        });
        GitDaemon { child, url: format!("git://127.0.0.1:{port}/{name}") }
    }
}

/// Starts a server with `spawn(port)` on a free port until one listens on
/// 127.0.0.1 (a server that exits at once found its port taken); the child
/// and its port.
fn listening(what: &str, mut spawn: impl FnMut(u16) -> std::process::Child) -> (std::process::Child, u16) {
    for _ in 0..5 {
        let port = super::free_port();
        let mut child = spawn(port);
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < end {
            if child.try_wait().ok().flatten().is_some() {
                break; // the port was taken: try another
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (child, port);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        stop(&mut child);
    }
    panic!("{what} did not start on 127.0.0.1");
}

fn stop(child: &mut std::process::Child) {
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
}

/// `git http-backend` behind HTTP Basic auth on 127.0.0.1 (the `http://`
/// transport; `git_http_backend.py`), stopped when dropped.
pub struct GitHttp {
    child: std::process::Child,
    /// The URL of the served repository.
    pub url: String,
}

impl GitHttp {
    /// Serves the bare repository `repo` at `http://127.0.0.1:PORT/NAME`,
    /// to `user` with `password` only.
    pub fn serve(repo: &Path, user: &str, password: &str) -> GitHttp {
        let parent = repo.parent().expect("a repository below a directory");
        let name = repo.file_name().expect("a repository name").to_string_lossy().to_string();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/harness/git_http_backend.py");
        let (child, port) = listening("the git http-backend server", |port| {
            Command::new("python3")
                .process_group(0)
                .arg(&script)
                .arg(parent)
                .arg(port.to_string())
                .args([user, password])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run python3: {e} (install it: `apt-get install -y python3`)"))
        });
        GitHttp { child, url: format!("http://127.0.0.1:{port}/{name}") }
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
