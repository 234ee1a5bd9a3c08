//! Running the built `scaler` binary: `NO_COLOR=1`, `HOME` in a temp dir, no
//! inherited `SCALER_*` variables, a chosen working directory, and a
//! deadline (a hung command fails the test instead of hanging CI).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long one `scaler` invocation may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The `scaler` binary Cargo built for these tests.
pub fn scaler_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_scaler"))
}

/// An isolated way of running `scaler`: its own `HOME`, extra environment
/// variables, a timeout. Keep one `Cli` for several commands that should
/// share a `HOME`.
pub struct Cli {
    home: TempDir,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl Default for Cli {
    fn default() -> Cli {
        Cli::new()
    }
}

impl Cli {
    /// A fresh `HOME`, no extra environment, [`DEFAULT_TIMEOUT`].
    pub fn new() -> Cli {
        Cli {
            home: tempfile::tempdir().expect("temp HOME"),
            env: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Adds an environment variable to every command.
    pub fn env(mut self, key: &str, value: &str) -> Cli {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets the per-command timeout.
    pub fn timeout(mut self, timeout: Duration) -> Cli {
        self.timeout = timeout;
        self
    }

    /// The temp `HOME`.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The command that [`Cli::run`] runs, for callers that need more control
    /// (spawning a daemon, say).
    pub fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(scaler_bin());
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("SCALER_")) {
                cmd.env_remove(key);
            }
        }
        cmd.args(args)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("RUST_LOG")
            .env("HOME", self.home.path())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    /// Runs `scaler ARGS` in `dir` with stdin closed.
    pub fn run(&self, dir: &Path, args: &[&str]) -> Output {
        self.run_inner(dir, args, None)
    }

    /// Runs `scaler ARGS` in `dir` with `stdin` piped in.
    pub fn run_with_stdin(&self, dir: &Path, args: &[&str], stdin: &str) -> Output {
        self.run_inner(dir, args, Some(stdin))
    }

    fn run_inner(&self, dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.command(dir, args);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", scaler_bin().display()));
        let input = stdin.map(|text| {
            let mut pipe = child.stdin.take().expect("piped stdin");
            let text = text.to_string();
            // A writer thread: the child may not read stdin before it fills
            // its stdout pipe. A closed pipe (child did not read) is fine.
            std::thread::spawn(move || {
                let _ = pipe.write_all(text.as_bytes());
            })
        });
        let out = drain(child.stdout.take().expect("piped stdout"));
        let err = drain(child.stderr.take().expect("piped stderr"));
        let status = wait_with_deadline(&mut child, self.timeout, args);
        if let Some(t) = input {
            let _ = t.join();
        }
        let stdout = out.join().expect("stdout reader");
        let stderr = err.join().expect("stderr reader");
        if status.is_none() {
            panic!(
                "`scaler {}` did not finish within {:?}\n--- stdout\n{}\n--- stderr\n{}",
                args.join(" "),
                self.timeout,
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        }
        Output { status: status.expect("checked above"), stdout, stderr }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Waits for the child; kills it and returns `None` after `timeout`.
fn wait_with_deadline(child: &mut std::process::Child, timeout: Duration, args: &[&str]) -> Option<ExitStatus> {
    let end = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Err(e) => panic!("waiting for `scaler {}`: {e}", args.join(" ")),
        }
    }
}

/// Runs `scaler ARGS` in `dir` with a fresh [`Cli`].
pub fn scaler(dir: &Path, args: &[&str]) -> Output {
    Cli::new().run(dir, args)
}

/// Runs `scaler ARGS` in `dir` with a fresh [`Cli`] and `stdin` piped in.
pub fn scaler_with_stdin(dir: &Path, args: &[&str], stdin: &str) -> Output {
    Cli::new().run_with_stdin(dir, args, stdin)
}

/// The output's stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The output's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
