//! What a condition gave at one instant: comparisons, the AND of several
//! conditions, and group scope with coverage.

use std::fmt;

/// The result of evaluating conditions at one instant.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// An input is missing (no sample, not enough hosts reported); the reason.
    NoData(String),
    /// An input is erroneous (failed collection, non-numeric value); the reason.
    Error(String),
}

/// An operand as the expression layer produced it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number.
    Number(f64),
    /// Text: never coerced to a number, never compared.
    Text(String),
    /// No value (no sample in the window).
    Missing,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    /// Parses `>`, `>=`, `<`, `<=`, `==`, `!=`.
    pub fn parse(text: &str) -> Option<Op> {
        Some(match text {
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            _ => return None,
        })
    }

    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares `left op right`. Only numbers compare: text is an error (never a
/// comparison by type), a missing value is no data, and NaN is an error.
pub fn compare(op: Op, left: &Value, right: f64) -> Outcome {
    let l = match left {
        Value::Number(n) if n.is_nan() => return Outcome::Error("value NaN is not a number".into()),
        Value::Number(n) => *n,
        Value::Text(s) => return Outcome::Error(format!("{s:?} is not a number")),
        Value::Missing => return Outcome::NoData("no value".into()),
    };
    if right.is_nan() {
        return Outcome::Error("threshold NaN is not a number".into());
    }
    let holds = match op {
        Op::Gt => l > right,
        Op::Ge => l >= right,
        Op::Lt => l < right,
        Op::Le => l <= right,
        Op::Eq => l == right,
        Op::Ne => l != right,
    };
    if holds {
        Outcome::True
    } else {
        Outcome::False
    }
}

/// The AND of conditions evaluated at the same instant: any error gives an
/// error (reasons joined), else any missing input gives no data, else true
/// when all hold. No conditions at all is an error.
pub fn combine(outcomes: &[Outcome]) -> Outcome {
    if outcomes.is_empty() {
        return Outcome::Error("no condition to evaluate".into());
    }
    let errors: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Error(r) => Some(r.as_str()),
            _ => None,
        })
        .collect();
    if !errors.is_empty() {
        return Outcome::Error(errors.join("; "));
    }
    let missing: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::NoData(r) => Some(r.as_str()),
            _ => None,
        })
        .collect();
    if !missing.is_empty() {
        return Outcome::NoData(missing.join("; "));
    }
    if outcomes.iter().all(|o| *o == Outcome::True) {
        Outcome::True
    } else {
        Outcome::False
    }
}

/// How a group-scoped condition combines its hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupMode {
    /// True when any reporting host holds.
    Any,
    /// True when every reporting host holds.
    All,
}

/// A group-scoped condition from per-host outcomes. Coverage is the share of
/// hosts that gave true or false; below `min_coverage_pct` (inclusive: equal
/// is enough) the group has no data. Hosts with no data or an error count
/// only against coverage. An empty group has no data.
pub fn group_outcome(per_host: &[(String, Outcome)], mode: GroupMode, min_coverage_pct: f64) -> Outcome {
    let total = per_host.len();
    if total == 0 {
        return Outcome::NoData("group has no hosts".into());
    }
    let reporting: Vec<bool> = per_host
        .iter()
        .filter_map(|(_, o)| match o {
            Outcome::True => Some(true),
            Outcome::False => Some(false),
            _ => None,
        })
        .collect();
    let n = reporting.len();
    // Integer counts times 100 against the threshold times the total: no
    // rounding of the share itself decides the boundary.
    if (n as f64) * 100.0 < min_coverage_pct * (total as f64) {
        let share = n as f64 * 100.0 / total as f64;
        return Outcome::NoData(format!(
            "coverage {n}/{total} hosts ({}%) below {}%",
            pct(share),
            pct(min_coverage_pct)
        ));
    }
    if n == 0 {
        // Only reachable with a 0% threshold: nothing reported, nothing holds.
        return Outcome::NoData(format!("coverage 0/{total} hosts"));
    }
    let holds = match mode {
        GroupMode::Any => reporting.iter().any(|b| *b),
        GroupMode::All => reporting.iter().all(|b| *b),
    };
    if holds {
        Outcome::True
    } else {
        Outcome::False
    }
}

/// A percentage for messages: whole numbers bare, else one decimal.
fn pct(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[(&str, Outcome)]) -> Vec<(String, Outcome)> {
        list.iter().map(|(h, o)| (h.to_string(), o.clone())).collect()
    }

    #[test]
    fn text_is_an_error_never_compared() {
        assert_eq!(compare(Op::Gt, &Value::Text("high".into()), 80.0), Outcome::Error("\"high\" is not a number".into()));
        // Even text that looks like a number is not coerced.
        assert_eq!(compare(Op::Eq, &Value::Text("80".into()), 80.0), Outcome::Error("\"80\" is not a number".into()));
    }

    #[test]
    fn missing_is_no_data_and_nan_is_an_error() {
        assert_eq!(compare(Op::Gt, &Value::Missing, 80.0), Outcome::NoData("no value".into()));
        assert!(matches!(compare(Op::Ne, &Value::Number(f64::NAN), 80.0), Outcome::Error(_)));
        assert!(matches!(compare(Op::Ne, &Value::Number(1.0), f64::NAN), Outcome::Error(_)));
    }

    #[test]
    fn op_parses_and_prints_every_operator() {
        for s in [">", ">=", "<", "<=", "==", "!="] {
            assert_eq!(Op::parse(s).map(Op::as_str), Some(s));
        }
        assert_eq!(Op::parse("=>"), None);
    }

    #[test]
    fn combine_is_and_at_one_instant() {
        use Outcome::*;
        assert_eq!(combine(&[True, True]), True);
        assert_eq!(combine(&[True, False]), False);
        assert_eq!(combine(&[False, NoData("a".into())]), NoData("a".into()));
        assert_eq!(combine(&[NoData("a".into()), Error("b".into()), True]), Error("b".into()));
        assert_eq!(combine(&[Error("b".into()), Error("c".into())]), Error("b; c".into()));
        assert_eq!(combine(&[]), Error("no condition to evaluate".into()));
    }

    #[test]
    fn group_any_and_all() {
        use Outcome::*;
        let g = hosts(&[("web-01", True), ("web-02", False), ("web-03", False)]);
        assert_eq!(group_outcome(&g, GroupMode::Any, 100.0), True);
        assert_eq!(group_outcome(&g, GroupMode::All, 100.0), False);
        let all = hosts(&[("web-01", True), ("web-02", True)]);
        assert_eq!(group_outcome(&all, GroupMode::All, 100.0), True);
        let none = hosts(&[("web-01", False), ("web-02", False)]);
        assert_eq!(group_outcome(&none, GroupMode::Any, 100.0), False);
    }

    #[test]
    fn group_all_counts_only_reporting_hosts_when_coverage_is_met() {
        use Outcome::*;
        let g = hosts(&[("a", True), ("b", True), ("c", True), ("d", Error("timeout".into()))]);
        assert_eq!(group_outcome(&g, GroupMode::All, 75.0), True);
        assert!(matches!(group_outcome(&g, GroupMode::All, 76.0), NoData(_)));
    }

    #[test]
    fn coverage_below_threshold_is_no_data_with_the_reason() {
        use Outcome::*;
        let g = hosts(&[
            ("a", True),
            ("b", False),
            ("c", NoData("no sample".into())),
            ("d", Error("timeout".into())),
            ("e", NoData("no sample".into())),
        ]);
        assert_eq!(
            group_outcome(&g, GroupMode::Any, 90.0),
            NoData("coverage 2/5 hosts (40%) below 90%".into())
        );
    }

    #[test]
    fn coverage_at_threshold_is_enough() {
        use Outcome::*;
        let mut list: Vec<(&str, Outcome)> = vec![("h0", NoData("no sample".into()))];
        for h in ["h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8", "h9"] {
            list.push((h, True));
        }
        let g = hosts(&list);
        assert_eq!(group_outcome(&g, GroupMode::All, 90.0), True);
        assert_eq!(
            group_outcome(&g, GroupMode::All, 90.5),
            NoData("coverage 9/10 hosts (90%) below 90.5%".into())
        );
        // 2 of 3 is 66.67%: a fractional share at its boundary.
        let t = hosts(&[("a", True), ("b", True), ("c", NoData("x".into()))]);
        assert_eq!(group_outcome(&t, GroupMode::Any, 200.0 / 3.0), True);
        assert_eq!(
            group_outcome(&t, GroupMode::Any, 70.0),
            NoData("coverage 2/3 hosts (66.7%) below 70%".into())
        );
    }

    #[test]
    fn empty_group_or_nothing_reporting_is_no_data() {
        assert_eq!(group_outcome(&[], GroupMode::Any, 0.0), Outcome::NoData("group has no hosts".into()));
        let g = hosts(&[("a", Outcome::NoData("x".into()))]);
        assert_eq!(group_outcome(&g, GroupMode::All, 0.0), Outcome::NoData("coverage 0/1 hosts".into()));
    }
}
