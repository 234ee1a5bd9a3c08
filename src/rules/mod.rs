//! Rules: condition evaluation and the trigger state machine (DESIGN §3).
//!
//! Everything here is pure: no IO, no clock, no store access (samples come
//! in as values; their types and the window aggregates are still borrowed
//! from [`crate::store`], a layering debt). Time comes in as
//! `now_ms` (milliseconds on the samples' clock) and state comes in as the
//! previous [`TriggerState`]; the caller persists what comes out.
//!
//! ```text
//! window:          recent samples per series (fed by collectors and pushes)
//! per operand:     expr functions (last/avg/min/max/sum/count/rate/any/all) -> number | nodata | error
//! per condition:   compare(op, value, threshold) -> Outcome; and/or/not
//! per group:       group_outcome(per-host outcomes, any|all, min_coverage) -> Outcome
//! per instant:     combine(outcomes of all conditions) -> Outcome     (AND at one instant)
//! per trigger:     step(now, outcome, timing, prev) -> (TriggerState, Option<Fire>)
//! per config:      Engine::evaluate(now, window, records) -> evaluations (+ why)
//! ```
//!
//! A group-scoped trigger is one state machine: it fires once for the group,
//! and the fire clears pending for the whole group (every host re-arms).

mod condition;
pub mod engine;
pub mod expr;
mod state;
pub mod window;

pub use condition::{combine, compare, group_outcome, GroupMode, Op, Outcome, Value};
pub use engine::{records_from, CompiledTrigger, Engine, Evaluation, FireWhy, Record};
pub use expr::{Condition, Operand, Scope, Term};
pub use state::{min_coverage_pct, step, Fire, StateKind, Timing, TriggerState};
pub use window::{HostSet, Point, Window};
