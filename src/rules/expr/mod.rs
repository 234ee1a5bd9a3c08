//! Trigger condition expressions: `avg(cpu, over="2m") > 80 and last(q) >= 10`.
//!
//! The boolean layer (`and`, `or`, `not`, parentheses, and the comparisons
//! `> >= < <= == !=`) is parsed here, so that a comparison only ever compares
//! numbers and a missing or failed input gives `nodata`/`error` instead of a
//! comparison by type. Each operand is a minijinja expression whose functions
//! read the [`Window`]:
//!
//! | function | value |
//! |---|---|
//! | `last(c)` | newest value (within the counter's lookback) |
//! | `avg/min/max/sum/count(c, over="2m")` | over the window `(t - over, t]` |
//! | `rate(c, over="1m")` | per-second increase of a monotonic counter |
//! | `any(c, gt=80, group="web")`, `all(...)` | per host, then any/all with `min_coverage` |
//!
//! Scope: `host="h"` one host; `group="g"` the hosts of a Target or Group
//! (coverage gated by `min_coverage`); neither: every series of the counter.
//! Across hosts, `avg`/`last` take the mean of the per-host values, `min`
//! the least, `max` the greatest, `sum`/`count`/`rate` the sum.
//! A counter with a dash in its name is written as a string: `last("web-ok")`.
//!
//! ```text
//! parse.rs   source -> tokens -> Node tree of operands (Condition::compile, Operand::compile)
//! calls.rs   the call catalogue: names, arguments, `over` durations (checked once per call)
//! eval.rs    Node tree + Window at an instant -> Outcome, terms (Condition::eval, Operand::number)
//! ```
//!
//! Pure like the rest of `rules`: no IO, no clock.

mod calls;
mod eval;
mod parse;

use std::fmt;
use std::sync::Arc;

use minijinja::Expression;
use serde::{Deserialize, Serialize};

use super::window::Window;

pub use calls::TRIGGER_FUNCTIONS;
pub use eval::check_window;

/// A compiled condition.
pub struct Condition {
    src: String,
    node: parse::Node,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition").field("src", &self.src).finish()
    }
}

/// One operand: a minijinja expression giving a number (or, alone, a boolean).
pub struct Operand {
    text: String,
    literal: Option<f64>,
    /// A plainly written call, compiled without minijinja (the fast path).
    native: Option<Result<calls::Parsed, String>>,
    /// The `over` window (ms) of every trigger function call written in the
    /// operand, nested ones included, where `over` is a literal.
    over_ms: Vec<i64>,
    expr: Expression<'static, 'static>,
}

impl fmt::Debug for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// An operand's value at one evaluation, for explanations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Term {
    /// The operand as written.
    pub expr: String,
    /// Its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Why there is no value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What an evaluation reads: the window at `now_ms`, and the trigger's
/// `min_coverage` for group scope.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The evaluation instant (ms).
    pub now_ms: i64,
    /// The samples.
    pub window: &'a Arc<Window>,
    /// Coverage threshold in percent for group-scoped functions.
    pub min_coverage_pct: f64,
}

impl Condition {
    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// The names its operands use (counter names among them).
    pub fn names(&self) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        self.node.names(&mut out);
        out
    }

    /// The longest `over` any call in the condition reads (ms), 0 when none
    /// does: how much history the window must keep for it (a call without
    /// `over` reads the counter's own lookback).
    pub fn lookback_ms(&self) -> i64 {
        self.node.lookback_ms()
    }
}

impl Operand {
    /// The operand as written.
    pub fn source(&self) -> &str {
        &self.text
    }

    /// The names it uses that it does not define (counter names among
    /// them; the caller keeps those the window knows).
    pub fn names(&self) -> std::collections::BTreeSet<String> {
        self.expr.undeclared_variables(false).into_iter().collect()
    }

    /// Like [`Condition::lookback_ms`], for an operand.
    pub fn lookback_ms(&self) -> i64 {
        self.over_ms.iter().copied().max().unwrap_or(0)
    }
}
