//! Guardrails evaluated against a plan: each `Policy` rule is a minijinja
//! expression over the plan that denies it when true.
//!
//! Pure: no IO. The built-in rules (`policies/default.yaml`) are embedded in
//! the binary and always evaluated after the repo's own policies.
//! Must not depend on: the store, providers, apply, the CLI.

use chrono::{DateTime, Datelike, Local, Timelike, Utc};
use minijinja::context;
use minijinja::value::{Serde, Value as MjValue};
use serde_json::{json, Value};

use crate::model::{Policy, PolicyScope};
use crate::plan::{Plan, Violation};
use crate::template;

/// The built-in policy file, as shipped.
pub const BUILTIN: &str = include_str!("../../policies/default.yaml");

/// The built-in policies.
pub fn builtin() -> Result<Vec<Policy>, crate::config::Diagnostics> {
    crate::config::parse_policies("policies/default.yaml", BUILTIN)
}

fn now_value(now: DateTime<Utc>) -> Value {
    let local = now.with_timezone(&Local);
    json!({
        "iso": now.to_rfc3339(),
        "date": local.format("%Y-%m-%d").to_string(),
        "weekday": local.format("%a").to_string(),
        "weekday_number": local.weekday().number_from_monday(),
        "hour": local.hour(),
        "minute": local.minute(),
    })
}

/// Evaluates `policies` against `plan`; returns the denials. A rule that
/// fails to evaluate denies the plan too (fail closed), with the error.
pub fn check(plan: &Plan, policies: &[Policy]) -> Vec<Violation> {
    let changes: Vec<Value> = plan
        .changes
        .iter()
        .map(|c| {
            json!({
                "address": c.address, "kind": c.kind, "name": c.name,
                "action": c.action, "reason": c.reason,
                "group": c.node.as_ref().map(|n| n.group.clone()),
            })
        })
        .collect();
    let base = json!({
        "plan": {
            "operation": plan.operation,
            "summary": plan.summary,
            "changes": changes,
            "groups": plan.groups,
            "revision": plan.revision,
        },
        "flags": plan.flags,
        "now": now_value(plan.created_at),
    });
    // Converted once: minijinja values share their data, so each scope below
    // only adds its own variable.
    let base = MjValue::from(Serde(&base));
    let env = template::expr_env();
    let mut out = Vec::new();
    for policy in policies {
        for rule in &policy.rules {
            let deny = |message: String| Violation { policy: policy.name.clone(), rule: rule.name.clone(), message };
            let expr = match env.compile_expression(&rule.deny) {
                Ok(e) => e,
                Err(e) => {
                    out.push(deny(format!("rule cannot be evaluated (denied to be safe): {}", template::describe_error(&e))));
                    continue;
                }
            };
            let scopes: Vec<MjValue> = match rule.each.unwrap_or(PolicyScope::Plan) {
                PolicyScope::Plan => vec![base.clone()],
                PolicyScope::Group => plan
                    .groups
                    .iter()
                    .map(|g| context! { group => MjValue::from(Serde(g)), ..base.clone() })
                    .collect(),
                PolicyScope::Change => changes
                    .iter()
                    .map(|c| context! { change => MjValue::from(Serde(c)), ..base.clone() })
                    .collect(),
            };
            for ctx in scopes {
                match expr.eval(ctx.clone()) {
                    Ok(v) if v.is_true() => {
                        let message = env
                            .render_str(&rule.message, ctx)
                            .unwrap_or_else(|e| format!("{} (message failed to render: {})", rule.message, template::describe_error(&e)));
                        out.push(deny(message));
                    }
                    Ok(_) => {}
                    Err(e) => out.push(deny(format!(
                        "rule cannot be evaluated (denied to be safe): {}",
                        template::describe_error(&e)
                    ))),
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Flags, GroupPlan, Operation, Plan, Summary};

    fn plan(before: u32, after: u32, destroy: u32, min: u32, flags: Flags) -> Plan {
        Plan {
            format_version: "1".into(),
            created_at: Utc::now(),
            operation: Operation::Apply,
            root: ".".into(),
            lineage: "l".into(),
            serial: 1,
            config_digest: "d".into(),
            revision: "none".into(),
            filters: Default::default(),
            flags,
            changes: vec![],
            summary: Summary::default(),
            groups: vec![GroupPlan {
                name: "web".into(),
                min,
                max: 4,
                desired: after,
                nodes_before: before,
                nodes_after: after,
                create: 0,
                destroy,
                prevent_destroy: false,
                removed: false,
            }],
            errors: vec![],
            violations: vec![],
            group_errors: vec![],
            warnings: vec![],
            refresh: vec![],
            digest: String::new(),
        }
    }

    fn rules(v: &[Violation]) -> Vec<&str> {
        v.iter().map(|v| v.rule.as_str()).collect()
    }

    #[test]
    fn builtin_rules_parse_and_guard() {
        let builtin = builtin().unwrap();
        assert!(check(&plan(2, 1, 1, 1, Flags::default()), &builtin).is_empty());
        // Nothing destroyed (a new group, or its nodes filtered out): allowed.
        assert!(check(&plan(0, 0, 0, 1, Flags::default()), &builtin).is_empty());
        assert_eq!(rules(&check(&plan(2, 0, 2, 1, Flags::default()), &builtin)), ["keep-one-node", "no-total-destroy"]);
        assert_eq!(rules(&check(&plan(2, 0, 2, 0, Flags::default()), &builtin)), ["no-total-destroy"]);
        assert!(check(&plan(2, 0, 2, 1, Flags { allow_destroy_all: true }), &builtin).is_empty());
        let v = check(&plan(5, 5, 0, 1, Flags::default()), &builtin);
        assert_eq!(v[0].message, "group `web` would have 5 nodes, above its max of 4");
    }

    #[test]
    fn a_rule_that_cannot_evaluate_denies() {
        let p: Vec<Policy> = crate::config::parse_policies(
            "x.yaml",
            "kind: Policy\nname: x\nrules:\n  - name: bad\n    deny: plan.nope.deeper > 1\n    message: m\n",
        )
        .unwrap();
        let v = check(&plan(1, 1, 0, 1, Flags::default()), &p);
        assert_eq!(v.len(), 1);
        assert!(v[0].message.starts_with("rule cannot be evaluated"), "{}", v[0].message);
    }
}
