//! Tasks and stored plans (`TaskStore`): tasks replaced by id, listed
//! newest first by kind and state and paged by id; interrupted tasks
//! ended at start-up; a new plan supersedes the held ones; plan moves are
//! conditional on the state found.

use scaler::store::{PlanMove, PlanRecord, PlanState, TaskFilter, TaskKind, TaskRecord, TaskState};
use serde_json::json;

use super::Harness;

fn task(id: &str, kind: TaskKind, state: TaskState, created_ms: i64) -> TaskRecord {
    TaskRecord {
        id: id.into(),
        kind,
        state,
        created_ms,
        started_ms: None,
        finished_ms: None,
        request: json!({"playbook": "deploy", "vars": {"v": "1.4"}}),
        result: None,
        error: None,
    }
}

fn plan(id: &str, revision: &str, created_ms: i64) -> PlanRecord {
    PlanRecord {
        id: id.into(),
        revision: revision.into(),
        state: PlanState::Held,
        reason: Some("`daemon.auto_apply` is off".into()),
        created_ms,
        updated_ms: created_ms,
        plan: json!({"summary": {"add": 1, "change": 0, "destroy": 0}, "digest": "abc"}),
    }
}

fn ids<T>(items: Vec<T>, id: impl Fn(&T) -> &str) -> Vec<String> {
    items.iter().map(|i| id(i).to_string()).collect()
}

pub(super) fn tasks_round_trip_are_replaced_by_id_and_listed_newest_first_by_kind_and_state<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    assert_eq!(store.tasks(&TaskFilter::default()).unwrap(), []);
    assert_eq!(store.task("nope").unwrap(), None);
    let a = task("aaaa", TaskKind::Run, TaskState::Pending, 1_000);
    let b = task("bbbb", TaskKind::Exec, TaskState::Running, 2_000);
    let c = task("cccc", TaskKind::Run, TaskState::Success, 2_000);
    let d = task("dddd", TaskKind::Plan, TaskState::Failure, 3_000);
    for t in [&a, &b, &c, &d] {
        store.put_task(t).unwrap();
    }
    let other = h.connect();
    let list = |f: TaskFilter| ids(other.tasks(&f).unwrap(), |t| &t.id);
    // same created_ms: the greater id first
    assert_eq!(list(TaskFilter::default()), ["dddd", "cccc", "bbbb", "aaaa"]);
    assert_eq!(list(TaskFilter { kinds: vec![TaskKind::Run], ..TaskFilter::default() }), ["cccc", "aaaa"]);
    assert_eq!(list(TaskFilter { kinds: vec![TaskKind::Run, TaskKind::Exec], ..TaskFilter::default() }), ["cccc", "bbbb", "aaaa"]);
    assert_eq!(list(TaskFilter { state: Some(TaskState::Running), ..TaskFilter::default() }), ["bbbb"]);
    assert_eq!(list(TaskFilter { limit: Some(2), ..TaskFilter::default() }), ["dddd", "cccc"]);
    assert_eq!(list(TaskFilter { before: Some("cccc".into()), limit: Some(2), ..TaskFilter::default() }), ["bbbb", "aaaa"]);
    assert_eq!(list(TaskFilter { before: Some("aaaa".into()), ..TaskFilter::default() }), Vec::<String>::new());

    // every field round-trips, and a put replaces
    let ended = TaskRecord {
        state: TaskState::Failure,
        started_ms: Some(1_100),
        finished_ms: Some(1_900),
        result: Some(json!({"hosts": [{"host": "h1", "steps": [{"id": "h1#1", "state": "failure"}]}]})),
        error: Some("1 of 1 hosts failed".into()),
        ..a.clone()
    };
    store.put_task(&ended).unwrap();
    assert_eq!(other.task("aaaa").unwrap(), Some(ended));
    assert_eq!(other.tasks(&TaskFilter::default()).unwrap().len(), 4, "replaced, not added");
    assert_eq!(other.task("dddd").unwrap(), Some(d));
}

pub(super) fn interrupted_tasks_are_ended_failure_and_ended_ones_are_left<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    let done = TaskRecord { finished_ms: Some(50), result: Some(json!({"ok": true})), ..task("done", TaskKind::Exec, TaskState::Success, 10) };
    for t in [task("p", TaskKind::Run, TaskState::Pending, 1), task("r", TaskKind::Trigger, TaskState::Running, 2), done.clone()] {
        store.put_task(&t).unwrap();
    }
    assert_eq!(h.connect().end_interrupted_tasks("daemon stopped", 9_000).unwrap(), 2);
    for id in ["p", "r"] {
        let t = store.task(id).unwrap().unwrap();
        assert_eq!((t.state, t.error.as_deref(), t.finished_ms), (TaskState::Failure, Some("daemon stopped"), Some(9_000)), "{id}");
    }
    assert_eq!(store.task("done").unwrap(), Some(done));
    assert_eq!(store.end_interrupted_tasks("daemon stopped", 9_500).unwrap(), 0);
}

pub(super) fn a_new_plan_supersedes_the_held_ones_and_lists_newest_first<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    assert_eq!(store.record_plan(&PlanRecord { state: PlanState::Applied, ..plan("p0", "rev0", 500) }).unwrap(), Vec::<String>::new());
    assert_eq!(store.record_plan(&plan("p1", "rev1", 1_000)).unwrap(), Vec::<String>::new());
    assert_eq!(h.connect().record_plan(&plan("p2", "rev2", 2_000)).unwrap(), ["p1"]);
    let other = h.connect();
    let p1 = other.plan("p1").unwrap().unwrap();
    assert_eq!((p1.state, p1.reason.as_deref(), p1.updated_ms), (PlanState::Superseded, Some("superseded by plan p2"), 2_000));
    assert_eq!(other.plan("p2").unwrap(), Some(plan("p2", "rev2", 2_000)), "exact round trip");
    assert_eq!(other.plan("p0").unwrap().unwrap().state, PlanState::Applied, "only held plans are superseded");
    assert_eq!(other.plan("nope").unwrap(), None);
    assert_eq!(ids(other.plans(None, 10).unwrap(), |p| &p.id), ["p2", "p1", "p0"]);
    assert_eq!(ids(other.plans(None, 1).unwrap(), |p| &p.id), ["p2"]);
    assert_eq!(ids(other.plans(Some("p2"), 10).unwrap(), |p| &p.id), ["p1", "p0"]);
}

pub(super) fn plan_moves_are_conditional_on_the_state_found<H: Harness>() {
    let h = H::new();
    let mut store = h.connect();
    store.record_plan(&plan("p1", "rev1", 1_000)).unwrap();
    let moved = store.move_plan("p1", &[PlanState::Held], PlanState::Approved, None, 1_500).unwrap();
    let PlanMove::Moved(p) = moved else { panic!("{moved:?}") };
    assert_eq!((p.state, p.reason.as_deref(), p.updated_ms), (PlanState::Approved, Some("`daemon.auto_apply` is off"), 1_500), "no reason: the old one stays");
    // a second approval loses: the plan is approved already
    assert_eq!(h.connect().move_plan("p1", &[PlanState::Held], PlanState::Approved, None, 1_600).unwrap(), PlanMove::Was(PlanState::Approved));
    assert_eq!(store.move_plan("nope", &[PlanState::Held], PlanState::Approved, None, 1_600).unwrap(), PlanMove::Missing);
    let failed = store.move_plan("p1", &[PlanState::Approved, PlanState::Applying], PlanState::Failed, Some("state moved"), 1_700).unwrap();
    let PlanMove::Moved(p) = failed else { panic!("{failed:?}") };
    assert_eq!((p.state, p.reason.as_deref()), (PlanState::Failed, Some("state moved")));
    assert_eq!(h.connect().plan("p1").unwrap(), Some(p));
}
