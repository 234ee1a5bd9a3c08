//! The slot lock: an advisory `flock` on `<node dir>/lock` that the node's
//! processes hold for as long as any of them lives.
//!
//! The kernel releases a `flock` when the last descriptor of its open file
//! description closes, which happens when the last process holding it dies,
//! however it dies. So "the lock is held" means "some process of the node is
//! alive", with no PID-reuse ambiguity. Must not depend on: the provider's
//! types (this is plain file and process plumbing).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::FlockArg;

/// Applies `flock(2)` to `file`.
///
/// `nix::fcntl::Flock` would be the non-deprecated way, but it unlocks on
/// drop; a launch must close its copy of the descriptor WITHOUT unlocking,
/// because the node inherited the same open file description and the lock
/// belongs to it.
fn flock(file: &File, arg: FlockArg) -> Result<(), Errno> {
    #[allow(deprecated)]
    nix::fcntl::flock(file.as_raw_fd(), arg)
}

/// Opens (creating it) the lock file for taking the lock. The descriptor is
/// never 0, 1 or 2, so that the child's stdio redirection cannot clobber it.
pub(super) fn open_for_launch(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    if file.as_raw_fd() <= 2 {
        // `try_clone` duplicates with F_DUPFD_CLOEXEC starting at 3.
        return file.try_clone();
    }
    Ok(file)
}

/// Takes the lock without waiting. `Ok(false)` when someone holds it.
pub(super) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    match flock(file, FlockArg::LockExclusiveNonblock) {
        Ok(()) => Ok(true),
        Err(Errno::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Whether some process holds the lock at `path`, probed from a fresh
/// descriptor that is closed (and so unlocked) at once.
///
/// The probe takes a *shared* lock: it conflicts with a node's exclusive lock
/// but not with another probe, so two concurrent `describe`s never mistake
/// each other for a running node. A missing lock file means not held.
pub(super) fn is_held(path: &Path) -> io::Result<bool> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match flock(&file, FlockArg::LockSharedNonblock) {
        // Closing `file` below releases the probe's lock.
        Ok(()) => Ok(false),
        Err(Errno::EWOULDBLOCK) => Ok(true),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// The processes (other than this one) that have the lock file open, found
/// by scanning `/proc/*/fd`. Used only when `node.json` lacks the pid (a crash
/// right after spawning) and to kill processes that left the node's process
/// group. Unreadable entries are skipped.
pub(super) fn holders(path: &Path) -> Vec<i32> {
    let Ok(target) = std::fs::metadata(path) else {
        return Vec::new();
    };
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::metadata(fd.path()).is_ok_and(|m| m.dev() == target.dev() && m.ino() == target.ino())
        });
        if holds {
            if let Ok(pid) = i32::try_from(pid) {
                pids.push(pid);
            }
        }
    }
    pids.sort_unstable();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_lock_is_seen_from_a_fresh_descriptor_and_released_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        assert!(!is_held(&path).unwrap(), "a missing lock file is not held");
        let file = open_for_launch(&path).unwrap();
        assert!(try_lock_exclusive(&file).unwrap());
        assert!(is_held(&path).unwrap());
        let other = open_for_launch(&path).unwrap();
        assert!(!try_lock_exclusive(&other).unwrap());
        drop(file);
        assert!(!is_held(&path).unwrap());
        assert!(try_lock_exclusive(&other).unwrap());
    }

    #[test]
    fn probes_do_not_conflict_with_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        std::fs::write(&path, "").unwrap();
        let probe = File::open(&path).unwrap();
        flock(&probe, FlockArg::LockSharedNonblock).unwrap();
        assert!(!is_held(&path).unwrap(), "another probe's shared lock is not a node");
    }
}
