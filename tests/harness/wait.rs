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

/// A TCP port on 127.0.0.1 that was free a moment ago. Ports come from
/// 10000-19999, below the kernel's ephemeral range (32768-60999 on Linux)
/// and `plan_apply`'s own port bases (21000 and up):
/// a port handed out by `bind(0)` (the harness's own servers) or taken by an
/// outgoing connection can never be one of them, and one process hands each
/// out once, so parallel tests do not collide; each port is 8 apart from the
/// last one given, so `port + index` of a few local nodes stays the
/// caller's. Another process may still take it; servers started by the
/// harness retry with a new port then.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Start at a point of the span that differs per process, so that two
    // test processes at once rarely try the same ports.
    let start = std::process::id() % SPAN;
    const STRIDE: u32 = 8;
    for _ in 0..SPAN / STRIDE {
        let n = NEXT.fetch_add(STRIDE, Ordering::Relaxed);
        let port = (LOW + (start + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}
