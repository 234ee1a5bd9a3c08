//! Comparing a run with a case's expectations, and the readable diff.
//!
//! Owns: [`Mismatch`], [`compare`], [`render_mismatches`].
//! Must not depend on: IO.

use anstyle::{AnsiColor, Style};
use serde::Serialize;

use super::run::{ms, CaseRun};
use super::spec::Case;
use crate::rules::engine::state_word;

/// One difference between what a case expects and what happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mismatch {
    /// An expected fire did not happen.
    MissingFire {
        /// The instant (ms).
        at_ms: i64,
        /// The trigger.
        trigger: String,
    },
    /// A fire happened that the case does not list.
    UnexpectedFire {
        /// The instant (ms).
        at_ms: i64,
        /// The trigger.
        trigger: String,
    },
    /// A fire happened with other actions than expected.
    Actions {
        /// The instant (ms).
        at_ms: i64,
        /// The trigger.
        trigger: String,
        /// Expected summaries.
        expected: Vec<String>,
        /// The trigger's summaries.
        got: Vec<String>,
    },
    /// A trigger was in another state than expected.
    State {
        /// The instant (ms).
        at_ms: i64,
        /// The trigger.
        trigger: String,
        /// The expected state.
        expected: String,
        /// Text the reason should contain.
        #[serde(skip_serializing_if = "Option::is_none")]
        expected_reason: Option<String>,
        /// The state it was in.
        got: String,
        /// Its reason.
        #[serde(skip_serializing_if = "Option::is_none")]
        got_reason: Option<String>,
    },
}

impl Mismatch {
    fn at_ms(&self) -> i64 {
        match self {
            Mismatch::MissingFire { at_ms, .. }
            | Mismatch::UnexpectedFire { at_ms, .. }
            | Mismatch::Actions { at_ms, .. }
            | Mismatch::State { at_ms, .. } => *at_ms,
        }
    }
}

/// Every difference, ordered by instant. Fires are matched by trigger and
/// instant: each expected fire must happen, and every fire must be expected.
pub fn compare(case: &Case, run: &CaseRun) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mut used = vec![false; run.fires.len()];
    for e in &case.fires {
        let found = run
            .fires
            .iter()
            .enumerate()
            .find(|(i, g)| !used[*i] && g.trigger == e.trigger && g.at_ms == e.at_ms)
            .map(|(i, _)| i);
        match found {
            Some(i) => {
                used[i] = true;
                let got = &run.fires[i].actions;
                if let Some(expected) = &e.actions {
                    if expected != got {
                        out.push(Mismatch::Actions { at_ms: e.at_ms, trigger: e.trigger.clone(), expected: expected.clone(), got: got.clone() });
                    }
                }
            }
            None => out.push(Mismatch::MissingFire { at_ms: e.at_ms, trigger: e.trigger.clone() }),
        }
    }
    for (i, g) in run.fires.iter().enumerate() {
        if !used[i] {
            out.push(Mismatch::UnexpectedFire { at_ms: g.at_ms, trigger: g.trigger.clone() });
        }
    }
    for e in &case.states {
        let Some(g) = run.states.iter().find(|g| g.at_ms == e.at_ms && g.trigger == e.trigger) else { continue };
        let reason_ok = match &e.reason {
            Some(want) => g.reason.as_deref().is_some_and(|r| r.contains(want.as_str())),
            None => true,
        };
        if g.kind() != e.state || !reason_ok {
            out.push(Mismatch::State {
                at_ms: e.at_ms,
                trigger: e.trigger.clone(),
                expected: state_word(e.state).to_string(),
                expected_reason: e.reason.clone(),
                got: g.state.to_string(),
                got_reason: g.reason.clone(),
            });
        }
    }
    // Stable: at one instant, fires before states, expected before got.
    out.sort_by_key(Mismatch::at_ms);
    out
}

/// The diff: `- ` what the case expected, `+ ` what happened, one line each,
/// indented by `indent`.
pub fn render_mismatches(list: &[Mismatch], indent: &str, color: bool) -> String {
    let red = Style::new().fg_color(Some(AnsiColor::Red.into()));
    let green = Style::new().fg_color(Some(AnsiColor::Green.into()));
    let paint = |style: Style, text: String| {
        if color {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text
        }
    };
    let mut out = String::new();
    let mut line = |style: Style, text: String| {
        out.push_str(indent);
        out.push_str(&paint(style, text));
        out.push('\n');
    };
    for m in list {
        match m {
            Mismatch::MissingFire { at_ms, trigger } => line(red, format!("- {} {trigger} fired", ms(*at_ms))),
            Mismatch::UnexpectedFire { at_ms, trigger } => line(green, format!("+ {} {trigger} fired", ms(*at_ms))),
            Mismatch::Actions { at_ms, trigger, expected, got } => {
                line(red, format!("- {} {trigger} fired: {}", ms(*at_ms), actions(expected)));
                line(green, format!("+ {} {trigger} fired: {}", ms(*at_ms), actions(got)));
            }
            Mismatch::State { at_ms, trigger, expected, expected_reason, got, got_reason } => {
                let want = match expected_reason {
                    Some(r) => format!("{expected} (reason containing {r:?})"),
                    None => expected.clone(),
                };
                let have = match got_reason {
                    Some(r) => format!("{got}: {r}"),
                    None => got.clone(),
                };
                line(red, format!("- {} {trigger} {want}", ms(*at_ms)));
                line(green, format!("+ {} {trigger} {have}", ms(*at_ms)));
            }
        }
    }
    out
}

fn actions(list: &[String]) -> String {
    if list.is_empty() {
        "(no actions)".into()
    } else {
        list.join("; ")
    }
}
