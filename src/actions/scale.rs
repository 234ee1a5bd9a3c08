//! The `scale` action: a new desired count for a group, always within
//! min..max. [`scale_target`] is the pure arithmetic; the executor reads the
//! current desired count from state and returns a `SetDesired` mutation.

use serde::Serialize;
use serde_json::json;

use super::{ActionContext, ActionError, ActionOutput, Executor};
use crate::model::ScaleAction;
use crate::store::Mutation;

/// The outcome of the scaling arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ScaleDecision {
    /// The desired count before.
    pub from: u32,
    /// The desired count after (within min..max).
    pub to: u32,
    /// What the action asked for, before clamping.
    pub wanted: i64,
    /// True when `wanted` was outside min..max.
    pub clamped: bool,
}

/// Rounds away from zero, ignoring floating-point noise below 1e-9
/// (`7 * 30 / 100` is 2.1 and rounds to 3; 3.0000000000000004 stays 3).
fn ceil_away_from_zero(x: f64) -> f64 {
    let cleaned = (x * 1e9).round() / 1e9;
    if cleaned >= 0.0 {
        cleaned.ceil()
    } else {
        cleaned.floor()
    }
}

/// Computes the new desired count of a group whose desired count is
/// `current`:
/// - `by: N`: `current + N`;
/// - `to: N`: `N`;
/// - `percent: P`: `current + current * P / 100`, the change rounded away from
///   zero and at least one node when `P != 0`;
/// - `target_value`: `ceil(metric / target * current)`, a `current` of 0
///   counting as 1; `metric` must be a finite number.
///
/// The result is always clamped to `min..=max`.
pub fn scale_target(a: &ScaleAction, current: u32, min: u32, max: u32, metric: Option<f64>) -> Result<ScaleDecision, String> {
    if min > max {
        return Err(format!("group `{}` has min {min} above max {max}", a.group));
    }
    let cur = i64::from(current);
    let modes = [a.by.is_some(), a.to.is_some(), a.percent.is_some(), a.target_value.is_some()];
    if modes.iter().filter(|m| **m).count() != 1 {
        return Err("`scale` needs exactly one of `by`, `to`, `percent`, `target_value`".into());
    }
    let wanted: i64 = if let Some(by) = a.by {
        cur.saturating_add(by)
    } else if let Some(to) = a.to {
        i64::from(to)
    } else if let Some(p) = a.percent {
        if !p.is_finite() {
            return Err(format!("`percent` must be a finite number, found {p}"));
        }
        // Float to int `as` saturates; counts are far below its range.
        let mut delta = ceil_away_from_zero(current as f64 * p / 100.0) as i64;
        if delta == 0 && p != 0.0 {
            delta = if p > 0.0 { 1 } else { -1 };
        }
        cur.saturating_add(delta)
    } else if let Some(tv) = &a.target_value {
        if !(tv.target.is_finite() && tv.target > 0.0) {
            return Err(format!("`target_value.target` must be a number above 0, found {}", tv.target));
        }
        let m = match metric {
            Some(m) if m.is_finite() => m,
            Some(m) => return Err(format!("metric `{}` is not a finite number ({m})", tv.metric)),
            None => return Err(format!("metric `{}` has no value", tv.metric)),
        };
        let base = current.max(1) as f64;
        let raw = m / tv.target * base;
        let cleaned = (raw * 1e9).round() / 1e9;
        cleaned.ceil() as i64
    } else {
        cur
    };
    let to = wanted.clamp(i64::from(min), i64::from(max));
    let to = u32::try_from(to).map_err(|_| format!("desired count {to} is out of range"))?;
    Ok(ScaleDecision { from: current, to, wanted, clamped: i64::from(to) != wanted })
}

/// Reads the current desired count, computes, and returns the mutation.
pub(super) async fn execute(ex: &Executor, ctx: &ActionContext, a: &ScaleAction) -> Result<ActionOutput, ActionError> {
    let group = ex
        .config
        .groups
        .get(&a.group)
        .map(|g| g.spec.clone())
        .ok_or_else(|| ActionError::permanent(format!("scale: no group `{}` in the config", a.group)))?;
    let metric = match &a.target_value {
        Some(tv) => Some(metric_value(ctx, &tv.metric)?),
        None => None,
    };
    let snap = ex.snapshot().await?;
    let current = crate::plan::desired::current(&group, &snap);
    let d = scale_target(a, current, group.min, group.max, metric)
        .map_err(|e| ActionError::permanent(format!("scale `{}`: {e}", group.name)))?;
    let mutations = if d.to == d.from {
        Vec::new()
    } else {
        let base = Some(crate::plan::desired::config_value(&group));
        vec![Mutation::SetDesired { group: group.name.clone(), desired: Some(d.to), base }]
    };
    let mut result = json!({
        "group": group.name,
        "from": d.from,
        "to": d.to,
        "wanted": d.wanted,
        "clamped": d.clamped,
        "changed": d.to != d.from,
    });
    if let (Some(m), Some(tv)) = (metric, &a.target_value) {
        result["metric"] = json!({"expression": tv.metric, "value": m, "target": tv.target});
    }
    Ok(ActionOutput { result, mutations })
}

/// `ctx.values.metrics[<expression>]` as a number.
fn metric_value(ctx: &ActionContext, expr: &str) -> Result<f64, ActionError> {
    let v = ctx.values.get("metrics").and_then(|m| m.get(expr)).ok_or_else(|| {
        ActionError::permanent(format!("scale: metric `{expr}` is not among the trigger's values (`values.metrics`)"))
    })?;
    let n = v.as_f64().ok_or_else(|| ActionError::permanent(format!("scale: metric `{expr}` is not a number: {v}")))?;
    if !n.is_finite() {
        return Err(ActionError::permanent(format!("scale: metric `{expr}` is not a finite number")));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TargetValue;

    fn by(n: i64) -> ScaleAction {
        ScaleAction { group: "web".into(), by: Some(n), to: None, percent: None, target_value: None }
    }
    fn to(n: u32) -> ScaleAction {
        ScaleAction { group: "web".into(), by: None, to: Some(n), percent: None, target_value: None }
    }
    fn pct(p: f64) -> ScaleAction {
        ScaleAction { group: "web".into(), by: None, to: None, percent: Some(p), target_value: None }
    }
    fn tv(target: f64) -> ScaleAction {
        ScaleAction {
            group: "web".into(),
            by: None,
            to: None,
            percent: None,
            target_value: Some(TargetValue { metric: "avg(cpu)".into(), target }),
        }
    }
    fn d(from: u32, to: u32, wanted: i64, clamped: bool) -> ScaleDecision {
        ScaleDecision { from, to, wanted, clamped }
    }

    #[test]
    fn by_n_up_down_and_clamped() {
        assert_eq!(scale_target(&by(1), 3, 1, 10, None).unwrap(), d(3, 4, 4, false));
        assert_eq!(scale_target(&by(-2), 3, 1, 10, None).unwrap(), d(3, 1, 1, false));
        assert_eq!(scale_target(&by(-5), 3, 1, 10, None).unwrap(), d(3, 1, -2, true));
        assert_eq!(scale_target(&by(20), 3, 1, 10, None).unwrap(), d(3, 10, 23, true));
        assert_eq!(scale_target(&by(i64::MAX), 3, 1, 10, None).unwrap(), d(3, 10, i64::MAX, true));
    }

    #[test]
    fn to_n_and_clamped() {
        assert_eq!(scale_target(&to(5), 3, 1, 10, None).unwrap(), d(3, 5, 5, false));
        assert_eq!(scale_target(&to(0), 3, 1, 10, None).unwrap(), d(3, 1, 0, true));
        assert_eq!(scale_target(&to(50), 3, 1, 10, None).unwrap(), d(3, 10, 50, true));
        assert_eq!(scale_target(&to(3), 3, 1, 10, None).unwrap(), d(3, 3, 3, false));
    }

    #[test]
    fn percent_rounds_away_from_zero() {
        // 10 * 15% = 1.5 -> 2; 10 * 12% = 1.2 -> 2; 10 * -12% = -1.2 -> -2
        assert_eq!(scale_target(&pct(15.0), 10, 1, 100, None).unwrap(), d(10, 12, 12, false));
        assert_eq!(scale_target(&pct(12.0), 10, 1, 100, None).unwrap(), d(10, 12, 12, false));
        assert_eq!(scale_target(&pct(-12.0), 10, 1, 100, None).unwrap(), d(10, 8, 8, false));
        // exact products stay exact despite float noise: 10 * 30% = 3, 7 * 100% = 7
        assert_eq!(scale_target(&pct(30.0), 10, 1, 100, None).unwrap(), d(10, 13, 13, false));
        assert_eq!(scale_target(&pct(100.0), 7, 1, 100, None).unwrap(), d(7, 14, 14, false));
        assert_eq!(scale_target(&pct(-50.0), 10, 1, 100, None).unwrap(), d(10, 5, 5, false));
    }

    #[test]
    fn percent_moves_at_least_one_node() {
        // 3 * 10% = 0.3 -> 1; from 0 nodes, +50% still adds one
        assert_eq!(scale_target(&pct(10.0), 3, 0, 100, None).unwrap(), d(3, 4, 4, false));
        assert_eq!(scale_target(&pct(-10.0), 3, 0, 100, None).unwrap(), d(3, 2, 2, false));
        assert_eq!(scale_target(&pct(50.0), 0, 0, 100, None).unwrap(), d(0, 1, 1, false));
        assert_eq!(scale_target(&pct(0.0), 5, 0, 100, None).unwrap(), d(5, 5, 5, false));
    }

    #[test]
    fn percent_is_clamped() {
        assert_eq!(scale_target(&pct(200.0), 4, 1, 8, None).unwrap(), d(4, 8, 12, true));
        assert_eq!(scale_target(&pct(-100.0), 4, 2, 8, None).unwrap(), d(4, 2, 0, true));
        assert!(scale_target(&pct(f64::NAN), 4, 2, 8, None).is_err());
    }

    #[test]
    fn target_value_is_ceil_of_metric_over_target_times_current() {
        // 90 / 60 * 4 = 6
        assert_eq!(scale_target(&tv(60.0), 4, 1, 20, Some(90.0)).unwrap(), d(4, 6, 6, false));
        // 61 / 60 * 4 = 4.07 -> 5
        assert_eq!(scale_target(&tv(60.0), 4, 1, 20, Some(61.0)).unwrap(), d(4, 5, 5, false));
        // 30 / 60 * 4 = 2
        assert_eq!(scale_target(&tv(60.0), 4, 1, 20, Some(30.0)).unwrap(), d(4, 2, 2, false));
        // 0.7 / 0.1 * 3 = 21 exactly (not 22 from float noise)
        assert_eq!(scale_target(&tv(0.1), 3, 1, 50, Some(0.7)).unwrap(), d(3, 21, 21, false));
    }

    #[test]
    fn target_value_treats_zero_nodes_as_one() {
        assert_eq!(scale_target(&tv(50.0), 0, 0, 20, Some(120.0)).unwrap(), d(0, 3, 3, false));
        assert_eq!(scale_target(&tv(50.0), 0, 0, 20, Some(0.0)).unwrap(), d(0, 0, 0, false));
    }

    #[test]
    fn target_value_is_clamped() {
        assert_eq!(scale_target(&tv(10.0), 10, 2, 12, Some(100.0)).unwrap(), d(10, 12, 100, true));
        assert_eq!(scale_target(&tv(10.0), 10, 2, 12, Some(1.0)).unwrap(), d(10, 2, 1, true));
        assert_eq!(scale_target(&tv(10.0), 10, 2, 12, Some(-50.0)).unwrap(), d(10, 2, -50, true));
        assert_eq!(scale_target(&tv(1e-300), 10, 2, 12, Some(1e300)).unwrap(), d(10, 12, i64::MAX, true));
    }

    #[test]
    fn target_value_needs_a_finite_metric() {
        assert_eq!(scale_target(&tv(60.0), 4, 1, 20, None).unwrap_err(), "metric `avg(cpu)` has no value");
        assert_eq!(
            scale_target(&tv(60.0), 4, 1, 20, Some(f64::INFINITY)).unwrap_err(),
            "metric `avg(cpu)` is not a finite number (inf)"
        );
        assert!(scale_target(&tv(60.0), 4, 1, 20, Some(f64::NAN)).is_err());
        assert!(scale_target(&tv(0.0), 4, 1, 20, Some(5.0)).is_err());
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(scale_target(&by(1), 3, 5, 2, None).unwrap_err().contains("min 5 above max 2"));
        let none = ScaleAction { group: "web".into(), by: None, to: None, percent: None, target_value: None };
        assert!(scale_target(&none, 3, 1, 5, None).is_err());
        let two = ScaleAction { to: Some(2), ..by(1) };
        assert!(scale_target(&two, 3, 1, 5, None).is_err());
    }

    #[test]
    fn current_outside_the_limits_is_pulled_back() {
        // min/max changed in git since the count was recorded
        assert_eq!(scale_target(&by(0), 15, 1, 10, None).unwrap(), d(15, 10, 15, true));
    }
}
