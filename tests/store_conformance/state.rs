//! Recorded state: lineage and serial, atomic commits, exact round-trips of
//! objects, nodes and desired counts, concurrent writers.

use std::sync::Barrier;

use chrono::DateTime;
use scaler::store::{BackendErrorKind, Mutation, NodeStatus, StoreError, StoredObject};
use serde_json::json;

use super::{at, node, put_object, Harness};

pub(super) fn lineage_is_fixed_at_creation_and_differs_between_states<H: Harness>() {
    let h = H::new();
    let first = h.connect().snapshot().expect("snapshot").meta;
    assert_eq!(first.serial, 0);
    assert_eq!(first.revision, None);
    assert_eq!(first.config_digest, None);
    uuid::Uuid::parse_str(&first.lineage).expect("lineage is a uuid");

    let mut store = h.connect();
    store.commit(&[put_object("group", "web", json!({}))]).expect("commit");
    drop(store);
    assert_eq!(h.connect().snapshot().expect("snapshot").meta.lineage, first.lineage);

    let other = H::new().connect().snapshot().expect("snapshot").meta;
    assert_ne!(other.lineage, first.lineage);
}

pub(super) fn serial_grows_by_one_per_commit_keeps_still_on_empty_ones_and_persists<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    assert_eq!(store.commit(&[]).expect("empty commit"), 0);
    for expected in 1..=3 {
        let serial = store.commit(&[Mutation::SetDesired { group: "web".into(), desired: Some(expected), base: None }]).expect("commit");
        assert_eq!(serial, u64::from(expected));
    }
    // many mutations, one commit, one step
    let serial = store
        .commit(&[put_object("group", "a", json!(1)), put_object("group", "b", json!(2)), put_object("group", "c", json!(3))])
        .expect("commit");
    assert_eq!(serial, 4);
    assert_eq!(store.commit(&[]).expect("empty commit"), 4);
    drop(store);

    let mut store = h.connect();
    assert_eq!(store.snapshot().expect("snapshot").meta.serial, 4);
    assert_eq!(store.commit(&[Mutation::DeleteNode { name: "none".into() }]).expect("commit"), 5);
}

pub(super) fn a_commit_with_a_failing_mutation_changes_nothing<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    store.commit(&[put_object("group", "web", json!({"max": 3})), Mutation::PutNode(node("web", 1))]).expect("first commit");
    let before = store.snapshot().expect("snapshot");

    // A second node in slot web/1 breaks the one-node-per-slot rule, after
    // several mutations that would each succeed on their own.
    let mut twin = node("web", 1);
    twin.name = "web-01-twin".into();
    let err = store
        .commit(&[
            put_object("group", "web", json!({"max": 9})),
            put_object("counter", "load1", json!({})),
            Mutation::SetDesired { group: "web".into(), desired: Some(4), base: None },
            Mutation::SetRevision { revision: "abc123".into(), config_digest: "sha256:def".into() },
            Mutation::DeleteNode { name: "web-01".into() },
            Mutation::PutNode(node("web", 2)),
            Mutation::PutNode(node("web", 1)),
            Mutation::PutNode(twin),
        ])
        .expect_err("the slot is taken twice");
    assert!(matches!(err, StoreError::Backend { kind: BackendErrorKind::Constraint, .. }), "{err:?}");
    assert!(!err.is_retryable(), "{err:?}");

    assert_eq!(store.snapshot().expect("snapshot"), before);
    assert_eq!(h.connect().snapshot().expect("snapshot from a new connection"), before);
    // the store stays usable, and the failed commit did not use up a serial
    assert_eq!(store.commit(&[Mutation::PutNode(node("web", 2))]).expect("commit"), 2);
}

pub(super) fn objects_nodes_and_desired_counts_round_trip_exactly_in_order<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();

    let spec = json!({
        "name": "web-hot",
        "zeta": [1, 2.5, -3, null, true, "ünïcødé ✓"],
        "alpha": {"nested": {"b": 1, "a": 2}},
        "big": 18_446_744_073_709_551_615_u64,
        "empty": {},
    });
    let mut db = node("db", 10);
    db.provider = "ec2".into();
    db.provider_id = Some("i-0123456789abcdef0".into());
    db.status = NodeStatus::Running;
    db.address = Some("10.0.0.7".into());
    db.created_at = at(0, 1); // one nanosecond past the second
    db.attrs = json!({"zone": "eu-west-1a", "tags": {"team": "db", "Name": "db-10"}, "ebs": [8, 100]});
    let mut web2 = node("web", 2);
    web2.status = NodeStatus::Terminating;
    web2.created_at = DateTime::from_timestamp(0, 999_999_999).expect("instant");
    let web10 = node("web", 10);

    let serial = store
        .commit(&[
            put_object("trigger", "web-hot", spec.clone()),
            put_object("counter", "load1", json!({"every": "10s"})),
            put_object("counter", "conns", json!(null)),
            Mutation::PutNode(web10.clone()),
            Mutation::PutNode(db.clone()),
            Mutation::PutNode(web2.clone()),
            Mutation::SetDesired { group: "web".into(), desired: Some(3), base: None },
            Mutation::SetDesired { group: "db".into(), desired: Some(0), base: None },
            Mutation::SetRevision { revision: "0123abc".into(), config_digest: "sha256:feed".into() },
        ])
        .expect("commit");
    assert_eq!(serial, 1);
    // a later commit rewrites one object: only it carries the new serial
    let newer = json!({"every": "30s"});
    assert_eq!(store.commit(&[put_object("counter", "load1", newer.clone())]).expect("commit"), 2);
    drop(store);

    let snapshot = h.connect().snapshot().expect("snapshot");
    assert_eq!(snapshot.meta.serial, 2);
    assert_eq!(snapshot.meta.revision.as_deref(), Some("0123abc"));
    assert_eq!(snapshot.meta.config_digest.as_deref(), Some("sha256:feed"));
    let object = |kind: &str, name: &str, spec: serde_json::Value, serial| StoredObject { kind: kind.into(), name: name.into(), spec, serial };
    assert_eq!(
        snapshot.objects,
        vec![object("counter", "conns", json!(null), 1), object("counter", "load1", newer, 2), object("trigger", "web-hot", spec.clone(), 1)]
    );
    // key order inside specs and attrs is kept, not sorted
    assert_eq!(snapshot.objects[2].spec.to_string(), spec.to_string());
    assert_eq!(snapshot.nodes, vec![db.clone(), web2, web10]);
    assert_eq!(snapshot.nodes[0].attrs.to_string(), db.attrs.to_string());
    assert_eq!(snapshot.desired.into_iter().collect::<Vec<_>>(), vec![("db".to_owned(), 0), ("web".to_owned(), 3)]);
    assert!(snapshot.desired_base.is_empty(), "{:?}", snapshot.desired_base);
}

pub(super) fn desired_counts_remember_the_base_they_were_set_against<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    let set = |group: &str, desired, base| Mutation::SetDesired { group: group.into(), desired, base };
    store.commit(&[set("web", Some(5), Some(3)), set("db", Some(2), None), set("cache", Some(1), Some(1))]).expect("commit");
    let snap = h.connect().snapshot().expect("snapshot");
    assert_eq!(snap.desired.into_iter().collect::<Vec<_>>(), [("cache".to_owned(), 1), ("db".to_owned(), 2), ("web".to_owned(), 5)]);
    assert_eq!(snap.desired_base.into_iter().collect::<Vec<_>>(), [("cache".to_owned(), 1), ("web".to_owned(), 3)]);

    // a new count replaces the base with its own (none included); forgetting
    // the count forgets its base
    store.commit(&[set("web", Some(6), None), set("db", Some(2), Some(4)), set("cache", None, Some(9))]).expect("commit");
    let snap = h.connect().snapshot().expect("snapshot");
    assert_eq!(snap.desired.into_iter().collect::<Vec<_>>(), [("db".to_owned(), 2), ("web".to_owned(), 6)]);
    assert_eq!(snap.desired_base.into_iter().collect::<Vec<_>>(), [("db".to_owned(), 4)]);
}

pub(super) fn putting_a_node_again_replaces_it_by_name<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    store.commit(&[Mutation::PutNode(node("web", 1))]).expect("commit");
    let mut launched = node("web", 1);
    launched.status = NodeStatus::Running;
    launched.provider_id = Some("4242".into());
    launched.address = Some("127.0.0.1:18001".into());
    launched.attrs = json!({"dir": "/tmp/web-01"});
    store.commit(&[Mutation::PutNode(launched.clone())]).expect("commit");
    assert_eq!(store.snapshot().expect("snapshot").nodes, vec![launched]);
}

pub(super) fn every_life_cycle_status_round_trips<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    for status in NodeStatus::STAGES.into_iter().chain([NodeStatus::Terminating]) {
        let mut n = node("web", 1);
        n.status = status;
        store.commit(&[Mutation::PutNode(n)]).expect("commit");
        assert_eq!(store.snapshot().expect("snapshot").nodes[0].status, status);
    }
}

pub(super) fn deletes_remove_exactly_what_they_name<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    store
        .commit(&[
            put_object("group", "web", json!({})),
            put_object("group", "db", json!({})),
            put_object("counter", "web", json!({})),
            Mutation::PutNode(node("web", 1)),
            Mutation::PutNode(node("web", 2)),
            Mutation::SetDesired { group: "web".into(), desired: Some(2), base: None },
            Mutation::SetDesired { group: "db".into(), desired: Some(1), base: None },
        ])
        .expect("commit");
    let serial = store
        .commit(&[
            Mutation::DeleteObject { kind: "group".into(), name: "web".into() },
            Mutation::DeleteNode { name: "web-01".into() },
            Mutation::SetDesired { group: "web".into(), desired: None, base: None },
            // deleting what is not there is not an error
            Mutation::DeleteNode { name: "web-09".into() },
            Mutation::DeleteObject { kind: "trigger".into(), name: "web".into() },
            Mutation::SetDesired { group: "cache".into(), desired: None, base: None },
        ])
        .expect("commit");
    assert_eq!(serial, 2);
    let snapshot = store.snapshot().expect("snapshot");
    let objects: Vec<_> = snapshot.objects.iter().map(|o| (o.kind.as_str(), o.name.as_str())).collect();
    assert_eq!(objects, vec![("counter", "web"), ("group", "db")]);
    assert_eq!(snapshot.nodes, vec![node("web", 2)]);
    assert_eq!(snapshot.desired.into_iter().collect::<Vec<_>>(), vec![("db".to_owned(), 1)]);
}

pub(super) fn two_threads_committing_on_separate_handles_never_lose_a_commit<H: Harness>() {
    const EACH: u64 = 50;
    let h = H::new();
    let start = Barrier::new(2);
    let mut serials = Vec::new();
    std::thread::scope(|s| {
        let workers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|worker| {
                let (h, start) = (&h, &start);
                s.spawn(move || -> Result<Vec<u64>, StoreError> {
                    start.wait();
                    // both also race to create the fresh store
                    let mut store = h.connect();
                    (0..EACH).map(|i| store.commit(&[put_object(worker, &i.to_string(), json!(i))])).collect()
                })
            })
            .collect();
        for worker in workers {
            let got = worker.join().expect("worker panicked").expect("worker failed");
            assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
            serials.extend(got);
        }
    });
    serials.sort_unstable();
    assert_eq!(serials, (1..=2 * EACH).collect::<Vec<_>>());
    let snapshot = h.connect().snapshot().expect("snapshot");
    assert_eq!(snapshot.meta.serial, 2 * EACH);
    assert_eq!(snapshot.objects.len() as u64, 2 * EACH);
}
