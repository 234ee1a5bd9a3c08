//! Starting a node's process so that it owns the slot lock and its own
//! session, and signalling its process group.
//!
//! Must not depend on: `node.json` or the provider's types.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;
use std::process::Stdio;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// What to start.
pub(super) struct Spawn<'a> {
    /// The rendered command, run with `/bin/sh -c`.
    pub command: &'a str,
    /// Extra environment.
    pub env: &'a BTreeMap<String, String>,
    /// Working directory.
    pub dir: &'a Path,
    /// The log, opened for appending; stdout and stderr go there.
    pub log: File,
    /// The slot lock, locked by this process; the child inherits it.
    pub lock: &'a File,
}

/// Starts the node: `/bin/sh -c <command>` in a new session, stdin null,
/// inheriting the locked lock descriptor.
pub(super) fn spawn(s: Spawn<'_>) -> io::Result<tokio::process::Child> {
    let stderr = s.log.try_clone()?;
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(s.command)
        .current_dir(s.dir)
        .envs(s.env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(s.log))
        .stderr(Stdio::from(stderr))
        .kill_on_drop(false);
    let lock_fd = s.lock.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe functions may be called: it calls `setsid(2)` and
    // `fcntl(2)` and allocates nothing (errors are raw OS error codes).
    unsafe {
        cmd.pre_exec(move || {
            // Its own session and process group: the node survives scaler
            // (and the terminal's Ctrl-C), and terminate signals the group.
            nix::unistd::setsid().map_err(errno_to_io)?;
            // SAFETY: `lock_fd` is open in the child: it was open in the
            // parent at fork time (the parent keeps `s.lock` alive until
            // `spawn` returns) and nothing closed it since.
            let fd = BorrowedFd::borrow_raw(lock_fd);
            // Clear FD_CLOEXEC so the shell and its children keep the lock.
            nix::fcntl::fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map_err(errno_to_io)?;
            Ok(())
        });
    }
    cmd.spawn()
}

fn errno_to_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Sends `sig` to the process group `pgid`. `Ok(false)` when the group no
/// longer exists.
pub(super) fn signal_group(pgid: i32, sig: Signal) -> io::Result<bool> {
    if pgid <= 1 {
        // Never signal "every process" or init's group by accident.
        return Ok(false);
    }
    match nix::sys::signal::killpg(Pid::from_raw(pgid), sig) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Sends `sig` to the single process `pid`; a process already gone is fine.
pub(super) fn signal_process(pid: i32, sig: Signal) -> io::Result<()> {
    if pid <= 1 {
        return Ok(());
    }
    match nix::sys::signal::kill(Pid::from_raw(pid), sig) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// The session of `pid` (0: this process), if it still exists.
pub(super) fn session_of(pid: i32) -> Option<i32> {
    nix::unistd::getsid(Some(Pid::from_raw(pid))).ok().map(Pid::as_raw)
}
