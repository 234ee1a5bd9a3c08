//! Polling with a deadline and free loopback ports.

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// Polls `f` every 20 ms until it returns true; panics with `what` when
/// `deadline` has passed.
pub fn wait_until(deadline: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return;
        }
        if Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read the
/// port, close). Another process may take it before you do; servers started
/// by the harness retry with a new port when that happens.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}
