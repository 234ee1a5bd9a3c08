//! Trace tasks (`TraceStore`): stored and replaced by id, listed newest
//! first, found by id or by a unique prefix of at least 8 characters.

use scaler::store::{StoreError, TraceStatus, TraceTask};

use super::Harness;

fn task(id: &str, started_ms: i64) -> TraceTask {
    TraceTask {
        id: id.into(),
        counter: "ticks".into(),
        host: "local".into(),
        command: "vmstat 1".into(),
        worker_pid: Some(4242),
        pid: Some(4243),
        started_ms,
        ended_ms: None,
        status: TraceStatus::Running,
        detail: None,
    }
}

pub(super) fn trace_tasks_are_replaced_by_id_and_listed_newest_first<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    assert_eq!(store.traces().unwrap(), []);
    let (old, new, twin) = (task("aaaaaaaa00000000", 1_000), task("bbbbbbbb00000000", 3_000), task("cccccccc00000000", 3_000));
    for t in [&old, &twin, &new] {
        store.put_trace(t).unwrap();
    }
    let ids = |tasks: Vec<TraceTask>| tasks.into_iter().map(|t| t.id).collect::<Vec<_>>();
    // same start: by id
    assert_eq!(ids(store.traces().unwrap()), [new.id.as_str(), &twin.id, &old.id]);

    // every status and every optional field round-trips, through another connection
    for (status, detail) in [(TraceStatus::Stopped, None), (TraceStatus::Exited, Some("exit 0 after 3 lines")), (TraceStatus::Failed, Some("spawn: no such file"))] {
        let ended = TraceTask { status, detail: detail.map(String::from), ended_ms: Some(9_000), worker_pid: None, pid: None, ..old.clone() };
        store.put_trace(&ended).unwrap();
        let listed = h.connect().traces().unwrap();
        assert_eq!(listed.len(), 3, "replaced, not added");
        assert_eq!(listed[2], ended);
    }
    assert_eq!(h.connect().traces().unwrap()[..2], [new, twin]);
}

pub(super) fn trace_tasks_are_found_by_id_or_a_unique_prefix_of_eight<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    for t in [task("0123456789abcdef", 1), task("01234567ffffffff", 2), task("abcdef0123456789", 3)] {
        store.put_trace(&t).unwrap();
    }
    let store = h.connect();
    assert_eq!(store.find_trace("abcdef01").unwrap(), task("abcdef0123456789", 3));
    assert_eq!(store.find_trace("0123456789abcdef").unwrap().id, "0123456789abcdef");
    assert!(matches!(store.find_trace("01234567"), Err(StoreError::AmbiguousTrace { count: 2, .. })));
    assert!(matches!(store.find_trace("abc"), Err(StoreError::TracePrefixTooShort(_))));
    assert!(matches!(store.find_trace("99999999"), Err(StoreError::NoSuchTrace(_))));
}
