//! The trigger state machine, exactly as DESIGN §3 states it.
//!
//! At each evaluation at `t` (samples' clock, milliseconds):
//! - condition false, or any input missing/erroneous: `pending_since` is cleared;
//! - otherwise `pending_since` is set if unset, and the trigger fires when
//!   `t - pending_since >= for` and (`last_fired` unset or `t - last_fired >= cooldown`);
//!   firing sets `last_fired = t` and clears `pending_since`.
//!
//! Durations are differences of timestamps, never sample counts; `>=` is
//! inclusive; pending time keeps running during a cooldown. An evaluation at
//! or before `last_fired` (a replay of the fire instant, or a clock that went
//! back) changes nothing, so a trigger never fires twice for one instant.

use serde::{Deserialize, Serialize};

use super::condition::Outcome;
use crate::model::{Duration, Trigger};

/// What a trigger shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StateKind {
    /// The condition does not hold.
    #[default]
    Inactive,
    /// The condition holds; waiting for `for` to elapse.
    Pending,
    /// Fired at this evaluation.
    Firing,
    /// Fired recently: the condition does not hold, or it has held for `for`
    /// but the cooldown has not passed yet.
    Cooldown,
    /// An input is missing; see the reason.
    NoData,
    /// An input is erroneous; see the reason.
    Error,
}

/// A trigger's state between evaluations (persisted by the caller).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TriggerState {
    /// Since when the condition has held without a fire (ms), if it holds.
    pub pending_since: Option<i64>,
    /// The last fire instant (ms).
    pub last_fired: Option<i64>,
    /// What the trigger shows.
    pub state: StateKind,
    /// Why, for `nodata` and `error` (and for `inactive`/`cooldown` while
    /// the condition holds only on samples that counted toward the last fire).
    pub reason: Option<String>,
}

/// A fire: the trigger's actions are due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fire {
    /// The fire instant (ms); with the trigger's name, the idempotency key.
    pub at_ms: i64,
    /// Since when the condition had held (ms).
    pub pending_since_ms: i64,
}

/// A trigger's timing, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long the condition must hold before firing.
    pub for_ms: i64,
    /// No new fire until this long after the last one.
    pub cooldown_ms: i64,
}

impl Timing {
    /// `for` and the cooldown of a trigger, both `0s` by default. The
    /// cooldown is `cooldown_up` when every scale action of the trigger grows
    /// its group (`by` or `percent` above 0), `cooldown_down` when every one
    /// shrinks it, and `cooldown` otherwise (no scale action, mixed
    /// directions, or `to`/`target_value`, whose direction is only known
    /// when the action runs); an unset specific cooldown falls back to
    /// `cooldown`.
    pub fn from_trigger(trigger: &Trigger) -> Timing {
        let general = trigger.cooldown.as_ref().map_or(0, ms);
        let specific = match scale_direction(trigger) {
            Some(Direction::Up) => trigger.cooldown_up.as_ref(),
            Some(Direction::Down) => trigger.cooldown_down.as_ref(),
            None => None,
        };
        Timing { for_ms: trigger.for_.as_ref().map_or(0, ms), cooldown_ms: specific.map_or(general, ms) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

/// The one direction all of a trigger's scale actions go, if there is one.
fn scale_direction(trigger: &Trigger) -> Option<Direction> {
    let mut seen = None;
    for action in &trigger.then {
        let crate::model::Action::Scale(s) = action else { continue };
        let dir = match (s.by, s.percent) {
            (Some(by), _) if by > 0 => Direction::Up,
            (Some(by), _) if by < 0 => Direction::Down,
            (None, Some(p)) if p > 0.0 => Direction::Up,
            (None, Some(p)) if p < 0.0 => Direction::Down,
            _ => return None,
        };
        match seen {
            None => seen = Some(dir),
            Some(d) if d == dir => {}
            Some(_) => return None,
        }
    }
    seen
}

/// A trigger's `min_coverage` in percent (default 100).
pub fn min_coverage_pct(trigger: &Trigger) -> f64 {
    trigger.min_coverage.map_or(100.0, |p| p.get())
}

fn ms(d: &Duration) -> i64 {
    i64::try_from(d.get().as_millis()).unwrap_or(i64::MAX)
}

/// One evaluation at `now_ms` with what the conditions gave; `newest_input_ms`
/// is the newest sample time among the trigger's inputs (`None`: unknown).
/// Pure: the same inputs give the same state and fire.
///
/// A sample that counted toward a fire never counts toward the next one:
/// after a fire, pending restarts only when an input sample is newer than
/// the fire.
pub fn step(now_ms: i64, outcome: &Outcome, timing: &Timing, prev: &TriggerState, newest_input_ms: Option<i64>) -> (TriggerState, Option<Fire>) {
    if prev.last_fired.is_some_and(|lf| now_ms <= lf) {
        return (prev.clone(), None);
    }
    let in_cooldown = prev
        .last_fired
        .is_some_and(|lf| now_ms.saturating_sub(lf) < timing.cooldown_ms);
    let cleared = |state: StateKind, reason: Option<String>| TriggerState {
        pending_since: None,
        last_fired: prev.last_fired,
        state,
        reason,
    };
    match outcome {
        Outcome::False => {
            let state = if in_cooldown { StateKind::Cooldown } else { StateKind::Inactive };
            (cleared(state, None), None)
        }
        Outcome::NoData(r) => (cleared(StateKind::NoData, Some(r.clone())), None),
        Outcome::Error(r) => (cleared(StateKind::Error, Some(r.clone())), None),
        Outcome::True => {
            let stale = prev.pending_since.is_none()
                && prev.last_fired.zip(newest_input_ms).is_some_and(|(fired, newest)| newest <= fired);
            if stale {
                let state = if in_cooldown { StateKind::Cooldown } else { StateKind::Inactive };
                return (cleared(state, Some("holds only on samples that counted toward the last fire; waits for a newer one".into())), None);
            }
            let since = prev.pending_since.unwrap_or(now_ms);
            let held = now_ms.saturating_sub(since) >= timing.for_ms;
            if held && !in_cooldown {
                let next = TriggerState {
                    pending_since: None,
                    last_fired: Some(now_ms),
                    state: StateKind::Firing,
                    reason: None,
                };
                return (next, Some(Fire { at_ms: now_ms, pending_since_ms: since }));
            }
            let state = if held { StateKind::Cooldown } else { StateKind::Pending };
            let next = TriggerState {
                pending_since: Some(since),
                last_fired: prev.last_fired,
                state,
                reason: None,
            };
            (next, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{combine, compare, group_outcome, GroupMode, Op, Value};
    use Outcome::{False as F, True as T};
    use StateKind::*;

    const S: i64 = 1_000;

    fn timing(for_s: i64, cooldown_s: i64) -> Timing {
        Timing { for_ms: for_s * S, cooldown_ms: cooldown_s * S }
    }

    /// Drives `step` over `(instant, outcome)` from the default state; returns
    /// the fires and the state after each instant.
    fn run(t: Timing, evals: &[(i64, Outcome)]) -> (Vec<Fire>, Vec<StateKind>, TriggerState) {
        run_from(t, TriggerState::default(), evals)
    }

    fn run_from(t: Timing, start: TriggerState, evals: &[(i64, Outcome)]) -> (Vec<Fire>, Vec<StateKind>, TriggerState) {
        let mut st = start;
        let mut fires = Vec::new();
        let mut states = Vec::new();
        for (now, o) in evals {
            let (next, fire) = step(*now, o, &t, &st, None);
            fires.extend(fire);
            states.push(next.state);
            st = next;
        }
        (fires, states, st)
    }

    fn at(fires: &[Fire]) -> Vec<i64> {
        fires.iter().map(|f| f.at_ms).collect()
    }

    /// Evaluations every `every_s` seconds from `from_s` to `to_s` inclusive.
    fn every(from_s: i64, to_s: i64, every_s: i64, o: Outcome) -> Vec<(i64, Outcome)> {
        (from_s..=to_s).step_by(every_s as usize).map(|s| (s * S, o.clone())).collect()
    }

    #[test]
    fn continuous_breach_fires_at_for_then_every_cooldown() {
        // for 60s, cooldown 300s, true every 10s for 700s.
        let (fires, _, _) = run(timing(60, 300), &every(0, 700, 10, T));
        // 60s: pending since 0. 360s: pending since 70s (after the first fire),
        // held long ago, cooldown ends at 60+300. 660s: pending since 370s.
        assert_eq!(at(&fires), vec![60 * S, 360 * S, 660 * S]);
        assert_eq!(fires[0].pending_since_ms, 0);
        assert_eq!(fires[1].pending_since_ms, 70 * S);
        assert_eq!(fires[2].pending_since_ms, 370 * S);
    }

    #[test]
    fn continuous_breach_state_sequence() {
        let (fires, states, _) = run(timing(20, 40), &every(0, 100, 10, T));
        assert_eq!(at(&fires), vec![20 * S, 60 * S, 100 * S]);
        // 0,10 pending; 20 fire; 30,40 pending (since 30); 50 held but cooling
        // down until 20+40; 60 fire; 70,80 pending; 90 cooling down; 100 fire.
        assert_eq!(
            states,
            vec![Pending, Pending, Firing, Pending, Pending, Cooldown, Firing, Pending, Pending, Cooldown, Firing]
        );
    }

    #[test]
    fn a_single_dip_resets_pending() {
        let mut evals = every(0, 20, 10, T);
        evals.push((30 * S, F));
        evals.extend(every(40, 120, 10, T));
        let (fires, states, _) = run(timing(60, 0), &evals);
        assert_eq!(at(&fires), vec![100 * S]);
        assert_eq!(fires[0].pending_since_ms, 40 * S);
        assert_eq!(states[3], Inactive);
    }

    #[test]
    fn the_for_boundary_is_inclusive() {
        let (fires, states, _) = run(timing(60, 0), &[(0, T), (59_999, T), (60_000, T)]);
        assert_eq!(at(&fires), vec![60_000]);
        assert_eq!(states, vec![Pending, Pending, Firing]);
    }

    #[test]
    fn one_millisecond_short_does_not_fire() {
        let (fires, states, st) = run(timing(60, 0), &[(1, T), (60_000, T)]);
        assert!(fires.is_empty());
        assert_eq!(states, vec![Pending, Pending]);
        assert_eq!(st.pending_since, Some(1));
    }

    #[test]
    fn the_cooldown_boundary_is_inclusive() {
        // for 0, cooldown 30s: fires at 0, then at 30s exactly, not at 29.999s.
        let (fires, states, _) = run(timing(0, 30), &[(0, T), (29_999, T), (30_000, T)]);
        assert_eq!(at(&fires), vec![0, 30_000]);
        assert_eq!(states, vec![Firing, Cooldown, Firing]);
    }

    #[test]
    fn zero_for_fires_on_the_first_true() {
        let (fires, states, _) = run(timing(0, 0), &[(0, F), (5 * S, F), (7 * S, T)]);
        assert_eq!(at(&fires), vec![7 * S]);
        assert_eq!(fires[0].pending_since_ms, 7 * S);
        assert_eq!(states, vec![Inactive, Inactive, Firing]);
    }

    #[test]
    fn zero_for_zero_cooldown_fires_at_every_later_instant_but_once_per_instant() {
        let (fires, states, _) = run(timing(0, 0), &[(0, T), (0, T), (10 * S, T), (10 * S, T), (20 * S, T)]);
        assert_eq!(at(&fires), vec![0, 10 * S, 20 * S]);
        assert_eq!(states, vec![Firing, Firing, Firing, Firing, Firing]);
    }

    #[test]
    fn replaying_the_fire_instant_changes_nothing() {
        let t = timing(60, 0);
        let (fires, _, st) = run(t, &every(0, 60, 10, T));
        assert_eq!(at(&fires), vec![60 * S]);
        let (again, fire) = step(60 * S, &T, &t, &st, None);
        assert_eq!(fire, None);
        assert_eq!(again, st);
        // Pending restarts at the next instant, not at the replayed one.
        let (next, _) = step(70 * S, &T, &t, &again, None);
        assert_eq!(next.pending_since, Some(70 * S));
        assert_eq!(next.state, Pending);
    }

    #[test]
    fn an_instant_before_the_last_fire_is_ignored() {
        let st = TriggerState { pending_since: None, last_fired: Some(100 * S), state: Firing, reason: None };
        let (next, fire) = step(90 * S, &Outcome::Error("late".into()), &timing(0, 0), &st, None);
        assert_eq!(fire, None);
        assert_eq!(next, st);
    }

    #[test]
    fn cooldown_keeps_pending_time_and_fires_at_cooldown_end() {
        // for 60s, cooldown 120s: fire at 60s; false until 90s; true from 100s.
        let mut evals = every(0, 60, 10, T);
        evals.extend(every(70, 90, 10, F));
        evals.extend(every(100, 200, 10, T));
        let (fires, states, _) = run(timing(60, 120), &evals);
        // Pending since 100s; `for` held at 160s; cooldown ends at 60+120=180s.
        assert_eq!(at(&fires), vec![60 * S, 180 * S]);
        assert_eq!(fires[1].pending_since_ms, 100 * S);
        // 70..90 false inside the cooldown: shown as cooldown.
        assert_eq!(&states[7..10], &[Cooldown, Cooldown, Cooldown]);
        // 100..150 pending; 160, 170 held but cooling down; 180 fires.
        assert_eq!(&states[10..19], &[Pending, Pending, Pending, Pending, Pending, Pending, Cooldown, Cooldown, Firing]);
    }

    #[test]
    fn pending_started_in_cooldown_fires_when_for_elapses_after_it() {
        // Same, true from 150s: `for` elapses at 210s, after the cooldown (180s).
        let mut evals = every(0, 60, 10, T);
        evals.extend(every(70, 140, 10, F));
        evals.extend(every(150, 220, 10, T));
        let (fires, _, _) = run(timing(60, 120), &evals);
        assert_eq!(at(&fires), vec![60 * S, 210 * S]);
    }

    #[test]
    fn false_after_the_cooldown_is_inactive() {
        let (_, states, st) = run(timing(0, 30), &[(0, T), (10 * S, F), (29_999, F), (30_000, F)]);
        assert_eq!(states, vec![Firing, Cooldown, Cooldown, Inactive]);
        assert_eq!(st.last_fired, Some(0));
    }

    #[test]
    fn an_error_sample_clears_pending_with_the_reason() {
        let evals = vec![
            (0, T),
            (10 * S, T),
            (20 * S, Outcome::Error("ssh web-01: timeout".into())),
            (30 * S, T),
            (80 * S, T),
            (90 * S, T),
        ];
        let t = timing(60, 0);
        let (fires, states, _) = run(t, &evals);
        assert_eq!(at(&fires), vec![90 * S]);
        assert_eq!(fires[0].pending_since_ms, 30 * S);
        assert_eq!(states, vec![Pending, Pending, Error, Pending, Pending, Firing]);
        let (_, _, st) = run(t, &evals[..3]);
        assert_eq!(st.pending_since, None);
        assert_eq!(st.reason.as_deref(), Some("ssh web-01: timeout"));
    }

    #[test]
    fn no_data_clears_pending_with_the_reason() {
        let evals = vec![(0, T), (30 * S, Outcome::NoData("no sample of `cpu`".into())), (40 * S, T), (100 * S, T)];
        let (fires, states, _) = run(timing(60, 0), &evals);
        assert_eq!(at(&fires), vec![100 * S]);
        assert_eq!(states, vec![Pending, NoData, Pending, Firing]);
        let (_, _, st) = run(timing(60, 0), &evals[..2]);
        assert_eq!(st, TriggerState { pending_since: None, last_fired: None, state: NoData, reason: Some("no sample of `cpu`".into()) });
    }

    #[test]
    fn the_reason_is_cleared_when_data_returns() {
        let (_, _, st) = run(timing(60, 0), &[(0, Outcome::NoData("x".into())), (10 * S, F)]);
        assert_eq!(st.reason, None);
        assert_eq!(st.state, Inactive);
    }

    #[test]
    fn non_numeric_input_is_an_error_state() {
        let o = compare(Op::Gt, &Value::Text("n/a".into()), 80.0);
        let (fires, states, st) = run(timing(0, 0), &[(0, o)]);
        assert!(fires.is_empty());
        assert_eq!(states, vec![Error]);
        assert_eq!(st.reason.as_deref(), Some("\"n/a\" is not a number"));
    }

    /// With `for` 0, whether a value of exactly 80 fires against `op 80`.
    fn fires_at_threshold(op: Op) -> bool {
        let o = compare(op, &Value::Number(80.0), 80.0);
        !run(timing(0, 0), &[(0, o)]).0.is_empty()
    }

    #[test]
    fn gt_at_the_threshold_does_not_fire() {
        assert!(!fires_at_threshold(Op::Gt));
        assert_eq!(compare(Op::Gt, &Value::Number(80.000_001), 80.0), T);
    }

    #[test]
    fn ge_at_the_threshold_fires() {
        assert!(fires_at_threshold(Op::Ge));
        assert_eq!(compare(Op::Ge, &Value::Number(79.999_999), 80.0), F);
    }

    #[test]
    fn lt_at_the_threshold_does_not_fire() {
        assert!(!fires_at_threshold(Op::Lt));
        assert_eq!(compare(Op::Lt, &Value::Number(79.999_999), 80.0), T);
    }

    #[test]
    fn le_at_the_threshold_fires() {
        assert!(fires_at_threshold(Op::Le));
        assert_eq!(compare(Op::Le, &Value::Number(80.000_001), 80.0), F);
    }

    #[test]
    fn eq_at_the_threshold_fires() {
        assert!(fires_at_threshold(Op::Eq));
        assert_eq!(compare(Op::Eq, &Value::Number(80.000_001), 80.0), F);
    }

    #[test]
    fn ne_at_the_threshold_does_not_fire() {
        assert!(!fires_at_threshold(Op::Ne));
        assert_eq!(compare(Op::Ne, &Value::Number(80.000_001), 80.0), T);
    }

    #[test]
    fn irregular_sampling_measures_by_timestamps() {
        // Four samples, uneven gaps: fires at the first instant 60s after 0.
        let (fires, states, _) = run(timing(60, 0), &[(0, T), (7 * S, T), (45 * S, T), (61 * S, T), (62 * S, T)]);
        assert_eq!(at(&fires), vec![61 * S]);
        assert_eq!(states, vec![Pending, Pending, Pending, Firing, Pending]);
    }

    #[test]
    fn two_samples_far_apart_are_enough() {
        let (fires, _, _) = run(timing(60, 0), &[(0, T), (60 * S, T)]);
        assert_eq!(at(&fires), vec![60 * S]);
        // Many samples within less than `for` are not.
        let (none, _, _) = run(timing(60, 0), &(0..100).map(|i| (i * 500, T)).collect::<Vec<_>>());
        assert!(none.is_empty());
    }

    #[test]
    fn and_of_conditions_holds_only_at_the_same_instant() {
        // cpu > 80 holds at 0 and 20; mem > 90 at 10 and 20: both only at 20.
        let cpu = [T, F, T, T];
        let mem = [F, T, T, T];
        let evals: Vec<(i64, Outcome)> = (0..4).map(|i| (i * 10 * S, combine(&[cpu[i as usize].clone(), mem[i as usize].clone()]))).collect();
        let (fires, states, _) = run(timing(10, 0), &evals);
        assert_eq!(states, vec![Inactive, Inactive, Pending, Firing]);
        assert_eq!(at(&fires), vec![30 * S]);
    }

    #[test]
    fn a_missing_input_in_an_and_clears_pending() {
        let evals = vec![
            (0, combine(&[T, T])),
            (10 * S, combine(&[F, Outcome::NoData("no `mem`".into())])),
            (20 * S, combine(&[T, T])),
        ];
        let (_, states, st) = run(timing(60, 0), &evals);
        assert_eq!(states, vec![Pending, NoData, Pending]);
        assert_eq!(st.pending_since, Some(20 * S));
    }

    #[test]
    fn a_group_trigger_fires_once_for_the_group() {
        // Any host of three above 80: two hosts hot at once still give one fire.
        let hot = |a: bool, b: bool, c: bool| {
            let o = |x: bool| if x { T } else { F };
            vec![("web-01".to_string(), o(a)), ("web-02".to_string(), o(b)), ("web-03".to_string(), o(c))]
        };
        let evals: Vec<(i64, Outcome)> = vec![
            (0, group_outcome(&hot(true, true, false), GroupMode::Any, 100.0)),
            (30 * S, group_outcome(&hot(true, true, false), GroupMode::Any, 100.0)),
            (40 * S, group_outcome(&hot(false, true, true), GroupMode::Any, 100.0)),
            (50 * S, group_outcome(&hot(false, false, false), GroupMode::Any, 100.0)),
        ];
        let (fires, states, _) = run(timing(30, 60), &evals);
        assert_eq!(at(&fires), vec![30 * S]);
        // Re-armed: after the fire, pending restarts for the whole group.
        assert_eq!(states, vec![Pending, Firing, Pending, Cooldown]);
    }

    #[test]
    fn a_group_trigger_all_needs_every_reporting_host() {
        let g = |c: Outcome| vec![("a".to_string(), T), ("b".to_string(), T), ("c".to_string(), c)];
        let evals = vec![
            (0, group_outcome(&g(F), GroupMode::All, 100.0)),
            (10 * S, group_outcome(&g(T), GroupMode::All, 100.0)),
            (20 * S, group_outcome(&g(T), GroupMode::All, 100.0)),
        ];
        let (fires, states, _) = run(timing(10, 0), &evals);
        assert_eq!(at(&fires), vec![20 * S]);
        assert_eq!(states, vec![Inactive, Pending, Firing]);
    }

    #[test]
    fn coverage_below_min_is_nodata_and_clears_pending() {
        let g = |c: Outcome| vec![("a".to_string(), T), ("b".to_string(), T), ("c".to_string(), c)];
        let evals = vec![
            (0, group_outcome(&g(T), GroupMode::Any, 100.0)),
            (10 * S, group_outcome(&g(Outcome::NoData("no sample".into())), GroupMode::Any, 100.0)),
            (20 * S, group_outcome(&g(T), GroupMode::Any, 100.0)),
            (40 * S, group_outcome(&g(T), GroupMode::Any, 100.0)),
        ];
        let (fires, states, _) = run(timing(20, 0), &evals);
        assert_eq!(states, vec![Pending, NoData, Pending, Firing]);
        assert_eq!(at(&fires), vec![40 * S]);
        let (_, _, st) = run(timing(20, 0), &evals[..2]);
        assert_eq!(st.reason.as_deref(), Some("coverage 2/3 hosts (66.7%) below 100%"));
    }

    #[test]
    fn coverage_at_min_keeps_pending() {
        let g = |c: Outcome| vec![("a".to_string(), T), ("b".to_string(), T), ("c".to_string(), c), ("d".to_string(), T)];
        let evals = vec![
            (0, group_outcome(&g(T), GroupMode::All, 75.0)),
            (10 * S, group_outcome(&g(Outcome::Error("timeout".into())), GroupMode::All, 75.0)),
            (20 * S, group_outcome(&g(T), GroupMode::All, 75.0)),
        ];
        let (fires, states, _) = run(timing(20, 0), &evals);
        assert_eq!(states, vec![Pending, Pending, Firing]);
        assert_eq!(fires, vec![Fire { at_ms: 20 * S, pending_since_ms: 0 }]);
    }

    #[test]
    fn resuming_from_saved_state_gives_the_same_fire() {
        let t = timing(60, 300);
        let all = every(0, 700, 10, T);
        let (straight, _, _) = run(t, &all);
        // Stop after 35 evaluations (340s, inside the cooldown), save, load, continue.
        let (first, _, mid) = run(t, &all[..35]);
        let saved = serde_json::to_string(&mid).unwrap();
        let loaded: TriggerState = serde_json::from_str(&saved).unwrap();
        assert_eq!(loaded, mid);
        let (rest, _, _) = run_from(t, loaded, &all[35..]);
        let mut joined = first;
        joined.extend(rest);
        assert_eq!(joined, straight);
    }

    #[test]
    fn state_serializes_with_lowercase_kinds() {
        let st = TriggerState { pending_since: Some(5), last_fired: None, state: NoData, reason: Some("x".into()) };
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(v, serde_json::json!({"pending_since": 5, "last_fired": null, "state": "nodata", "reason": "x"}));
    }

    #[test]
    fn timing_comes_from_the_trigger_with_zero_defaults() {
        let tr: Trigger = serde_json::from_value(serde_json::json!({"name": "t", "when": "last(cpu) > 80", "then": []}))
            .unwrap();
        assert_eq!(Timing::from_trigger(&tr), Timing { for_ms: 0, cooldown_ms: 0 });
        assert_eq!(min_coverage_pct(&tr), 100.0);
        let mut tr2 = tr.clone();
        tr2.for_ = Duration::parse("1m30s").ok();
        tr2.cooldown = Duration::parse("250ms").ok();
        tr2.min_coverage = crate::model::Percent::parse("90%").ok();
        assert_eq!(Timing::from_trigger(&tr2), Timing { for_ms: 90_000, cooldown_ms: 250 });
        assert_eq!(min_coverage_pct(&tr2), 90.0);
    }

    #[test]
    fn scale_direction_picks_cooldown_up_or_down() {
        let trigger = |then: serde_json::Value| -> Trigger {
            serde_json::from_value(serde_json::json!({
                "name": "t", "when": "last(cpu) > 80", "cooldown": "5m",
                "cooldown_up": "1m", "cooldown_down": "15m", "then": then
            }))
            .unwrap()
        };
        let cd = |then| Timing::from_trigger(&trigger(then)).cooldown_ms;
        assert_eq!(cd(serde_json::json!([{"scale": {"group": "web", "by": 2}}])), 60_000);
        assert_eq!(cd(serde_json::json!([{"scale": {"group": "web", "percent": 50.0}}])), 60_000);
        assert_eq!(cd(serde_json::json!([{"scale": {"group": "web", "by": -1}}])), 900_000);
        // Mixed directions, `to`, or no scale action: the general cooldown.
        assert_eq!(cd(serde_json::json!([{"scale": {"group": "web", "by": 1}}, {"scale": {"group": "db", "by": -1}}])), 300_000);
        assert_eq!(cd(serde_json::json!([{"scale": {"group": "web", "to": 3}}])), 300_000);
        assert_eq!(cd(serde_json::json!([{"run": {"playbook": "x"}}])), 300_000);
        // A specific cooldown that is not set falls back to `cooldown`.
        let mut t = trigger(serde_json::json!([{"scale": {"group": "web", "by": 1}}]));
        t.cooldown_up = None;
        assert_eq!(Timing::from_trigger(&t).cooldown_ms, 300_000);
    }

    #[test]
    fn a_sample_counts_toward_one_fire_only() {
        // A 60 s-sampled input on a 10 s clock, `for: 0s`, no cooldown:
        // fires at the sample's tick, then waits for the next sample.
        let t = timing(0, 0);
        let mut st = TriggerState::default();
        let mut fires = Vec::new();
        for now in (0..=130).step_by(10) {
            let newest = Some((now / 60) * 60 * S);
            let (next, fire) = step(now * S, &T, &t, &st, newest);
            fires.extend(fire.map(|f| f.at_ms / S));
            st = next;
        }
        assert_eq!(fires, vec![0, 60, 120]);
        assert_eq!(st.state, Inactive);
        assert!(st.reason.as_deref().unwrap_or("").contains("counted toward the last fire"), "{st:?}");
    }
}
