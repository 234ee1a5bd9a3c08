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
        for _ in 0..5 {
            let port = super::free_port();
            // Its own process group: `git` runs `git-daemon` as a child, and
            // a drop stops both.
            let mut child = git_command(parent)
                .process_group(0)
                .args(["daemon", "--reuseaddr", "--listen=127.0.0.1", &format!("--port={port}"), "--export-all", "--informative-errors"])
                .arg(format!("--base-path={}", parent.display()))
                .arg(repo)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run `git daemon`: {e} (install it: `apt-get install -y git`)"));
            let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < end {
                if child.try_wait().ok().flatten().is_some() {
                    break; // the port was taken: try another
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return GitDaemon { child, url: format!("git://127.0.0.1:{port}/{name}") };
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            stop(&mut child);
        }
        panic!("`git daemon` did not start on 127.0.0.1");
    }
}

fn stop(child: &mut std::process::Child) {
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
