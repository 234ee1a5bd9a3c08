//! The state lock lease: refused while live, taken over at its expiry,
//! renewed, broken on purpose, and kept by a holder that was killed.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use scaler::store::StoreError;
use serde_json::json;

use super::{at, locked_by, put_object, request, Harness};

pub(super) fn a_second_handle_is_refused_with_the_holders_lease<H: Harness>() {
    let h = H::new();
    let mut first = h.connect();
    let mut second = h.connect();
    let held = first.lock(&request("ann@box", Duration::from_secs(600))).expect("lock");
    assert_eq!(held.id.len(), 32);
    assert_eq!(held.owner, "ann@box");
    assert_eq!(held.operation, "apply");
    assert_eq!(held.pid, std::process::id());
    assert_eq!(held.expires - held.created, TimeDelta::seconds(600));

    let holder = locked_by(second.lock(&request("bob@box", Duration::from_secs(60))));
    assert_eq!(holder, held);
    assert_eq!(second.current_lock().expect("current lock"), Some(held.clone()));
    // the holder itself does not get it twice either
    assert_eq!(locked_by(first.lock(&request("ann@box", Duration::from_secs(60)))), held);

    first.unlock(&held.id).expect("unlock");
    assert_eq!(second.current_lock().expect("current lock"), None);
    let taken = second.lock(&request("bob@box", Duration::from_secs(60))).expect("lock after unlock");
    assert_ne!(taken.id, held.id);
    // unlocking a lease that is already gone is fine
    first.unlock(&held.id).expect("unlock again");
}

pub(super) fn an_expired_lease_is_taken_over_and_its_holder_loses_it<H: Harness>() {
    let h = H::new();
    let mut first = h.connect();
    let mut second = h.connect();
    let t0 = at(0, 0);
    let ttl = Duration::from_secs(30);

    let held = first.lock_at(&request("ann@box", ttl), t0).expect("lock");
    assert_eq!(held.expires, at(30, 0));
    let just_before = held.expires - TimeDelta::nanoseconds(1);
    assert_eq!(locked_by(second.lock_at(&request("bob@box", ttl), just_before)), held);

    let taken = second.lock_at(&request("bob@box", ttl), held.expires).expect("take over at expiry");
    assert_eq!(taken.owner, "bob@box");
    assert_eq!(taken.created, held.expires);
    assert_ne!(taken.id, held.id);

    match first.renew_at(&held.id, ttl, at(31, 0)) {
        Err(StoreError::LockLost(id)) => assert_eq!(id, held.id),
        other => panic!("expected `LockLost`, got {other:?}"),
    }
    // the old holder's unlock does not release the new lease
    first.unlock(&held.id).expect("unlock");
    assert_eq!(first.current_lock().expect("current lock"), Some(taken));
}

pub(super) fn renewing_extends_the_lease_from_now<H: Harness>() {
    let h = H::new();
    let mut first = h.connect();
    let mut second = h.connect();
    let ttl = Duration::from_secs(30);
    let held = first.lock_at(&request("ann@box", ttl), at(0, 0)).expect("lock");

    let renewed = first.renew_at(&held.id, ttl, at(20, 0)).expect("renew");
    assert_eq!(renewed.expires, at(50, 0));
    assert_eq!((renewed.id.as_str(), renewed.created), (held.id.as_str(), held.created));
    assert_eq!(second.current_lock().expect("current lock"), Some(renewed.clone()));
    // past the original expiry the lease still holds
    assert_eq!(locked_by(second.lock_at(&request("bob@box", ttl), at(40, 0))), renewed);
    // renewing with the real clock works too
    assert!(first.renew(&held.id, ttl).expect("renew").expires > Utc::now());
    match first.renew(&"f".repeat(32), ttl) {
        Err(StoreError::LockLost(_)) => {}
        other => panic!("expected `LockLost`, got {other:?}"),
    }
}

pub(super) fn force_unlock_takes_the_full_id_or_a_prefix_of_eight<H: Harness>() {
    let h = H::new();
    let mut holder = h.connect();
    let mut operator = h.connect();
    let ttl = Duration::from_secs(600);

    let held = holder.lock(&request("ann@box", ttl)).expect("lock");
    for wrong in [&held.id[..7], "", "ffffffff", &format!("{}0", held.id)] {
        match operator.force_unlock(wrong) {
            Err(StoreError::NoSuchLock(id)) => assert_eq!(id, wrong),
            other => panic!("`{wrong}`: expected `NoSuchLock`, got {other:?}"),
        }
    }
    assert_eq!(operator.current_lock().expect("current lock"), Some(held.clone()));

    assert_eq!(operator.force_unlock(&held.id[..8]).expect("break by prefix"), held);
    assert_eq!(operator.current_lock().expect("current lock"), None);
    match holder.renew(&held.id, ttl) {
        Err(StoreError::LockLost(_)) => {}
        other => panic!("expected `LockLost`, got {other:?}"),
    }

    let held = holder.lock(&request("ann@box", ttl)).expect("lock again");
    assert_eq!(operator.force_unlock(&held.id).expect("break by full id"), held);
    match operator.force_unlock(&held.id) {
        Err(StoreError::NoSuchLock(_)) => {}
        other => panic!("expected `NoSuchLock`, got {other:?}"),
    }
}

pub(super) fn unlocking_someone_elses_id_leaves_their_lease<H: Harness>() {
    let h = H::new();
    let mut holder = h.connect();
    let mut other = h.connect();
    let held = holder.lock(&request("ann@box", Duration::from_secs(600))).expect("lock");
    other.unlock(&"0".repeat(32)).expect("unlock of another id");
    // a prefix is not enough for a plain unlock
    other.unlock(&held.id[..8]).expect("unlock of a prefix");
    assert_eq!(other.current_lock().expect("current lock"), Some(held.clone()));
    assert_eq!(locked_by(other.lock(&request("bob@box", Duration::from_secs(60)))), held);
}

/// Set for the child process of [`a_killed_holders_lease_is_refused_until_it_expires`]:
/// the address of the store it locks.
const HOLDER_STORE_ENV: &str = "SCALER_TEST_LOCK_HOLDER_STORE";

/// The lock holder that [`a_killed_holders_lease_is_refused_until_it_expires`]
/// runs in a child process and kills. It commits, takes the lock, says so,
/// and waits.
pub(super) fn lock_holder_child_process<H: Harness>() {
    let Ok(address) = std::env::var(HOLDER_STORE_ENV) else {
        return;
    };
    let mut store = H::connect_to(&address);
    let serial = store.commit(&[put_object("group", "web", json!({"written": "before the kill"}))]).expect("commit");
    let held = store.lock(&request("child@box", Duration::from_secs(3600))).expect("lock");
    println!("LOCKED {} {serial}", held.id);
    // Hold on until killed (or until the parent goes away and stdin closes).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// `suite` is the `module_path!()` of the suite's instance, which holds
/// the child's test `lock_holder_child_process`.
pub(super) fn a_killed_holders_lease_is_refused_until_it_expires<H: Harness>(suite: &str) {
    use std::os::unix::process::ExitStatusExt;

    let h = H::new();
    // the test's name inside the binary: the module path without the crate
    let suite = suite.split_once("::").map_or(suite, |(_, rest)| rest);
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([&format!("{suite}::lock_holder_child_process"), "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(HOLDER_STORE_ENV, h.address())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the lock holder");
    let stdout = child.stdout.take().expect("child stdout");
    let mut reported = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child stdout");
        // libtest may print `test NAME ... ` on the same line first
        if let Some((_, rest)) = line.split_once("LOCKED ") {
            reported = Some(rest.to_owned());
            break;
        }
    }
    // Killed while holding the lock: no unlock, no destructor, no exit code.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill -9");
    let status = child.wait().expect("wait");
    let reported = reported.expect("the child took the lock before it was killed");
    assert_eq!(status.signal(), Some(9), "{status}");
    let (id, serial) = reported.split_once(' ').expect("`ID SERIAL`");

    let mut store = h.connect();
    // its commit survived the kill
    let snapshot = store.snapshot().expect("snapshot");
    assert_eq!(snapshot.meta.serial.to_string(), serial);
    assert_eq!(snapshot.objects[0].spec, json!({"written": "before the kill"}));
    // its lease is still there, refused while live
    let lease = store.current_lock().expect("current lock").expect("the dead holder's lease");
    assert_eq!((lease.id.as_str(), lease.pid), (id, child.id()));
    let req = request("ann@box", Duration::from_secs(60));
    assert_eq!(locked_by(store.lock(&req)), lease);
    let just_before = lease.expires - TimeDelta::milliseconds(1);
    assert_eq!(locked_by(store.lock_at(&req, just_before)), lease);
    // and taken over once it expires
    let taken = store.lock_at(&req, lease.expires).expect("take over");
    assert_eq!(taken.pid, std::process::id());
    assert_eq!(store.current_lock().expect("current lock"), Some(taken));
}
