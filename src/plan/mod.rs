//! The plan: `diff(desired, recorded, observed) -> Plan`, a value that is
//! printed, saved to a file, checked by policies and applied.
//!
//! Pure: no IO, but for the plan files (`file.rs`: save, load, schema).
//! Desired = the compiled config; recorded = the store snapshot;
//! observed = what providers report. Must not depend on: store backends,
//! providers' implementations, the CLI.

pub mod desired;
mod diff;
mod fields;
mod file;
mod render;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use diff::{diff, lifecycle_error, node_name, DiffInput, LIFECYCLE_ERROR};
pub use fields::field_diff;
pub use file::{digest, load, save, schema, write_schema};
pub use render::{render, render_summary, RenderOptions};

/// The version of the plan JSON format (`schema/plan.schema.json`).
pub const FORMAT_VERSION: &str = "1";

/// What the plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Make the fleet match the config.
    Apply,
    /// Remove every node.
    Destroy,
}

/// What happens to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// New.
    Create,
    /// Changed in place.
    Update,
    /// Removed and created again (same slot).
    Replace,
    /// Removed.
    Delete,
}

impl Action {
    /// The Terraform-like symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
        }
    }
}

/// Node details of a node change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeChange {
    /// The group.
    pub group: String,
    /// Slot number.
    pub index: u32,
    /// The template new nodes are made from (None when only deleting).
    pub template: Option<String>,
    /// Provider name.
    pub provider: String,
    /// The node is alive now (a delete destroys a live node).
    pub was_alive: bool,
}

/// One change in a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Change {
    /// `counter.load1`, `node.web/web-03`.
    pub address: String,
    /// `counter`, `node`...
    pub kind: String,
    /// Object name (`load1`, `web-03`).
    pub name: String,
    /// What happens.
    pub action: Action,
    /// Why (drift, scaling), when not obvious.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A one-line description (`ssh on web, every 10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Field-level differences of an update (`- for: 60s` / `+ for: 120s`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<String>,
    /// The object as recorded (config objects only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// The object as desired (config objects only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
    /// Node details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeChange>,
}

/// Counts of a plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// Objects added (a replace counts once here).
    pub add: usize,
    /// Objects changed in place.
    pub change: usize,
    /// Objects destroyed (a replace counts once here).
    pub destroy: usize,
}

/// A policy rule that denied the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Violation {
    /// The Policy's name (`builtin` for `policies/default.yaml`).
    pub policy: String,
    /// The rule's name.
    pub rule: String,
    /// The rendered message.
    pub message: String,
}

/// Per-group figures, used by policies and the summary line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GroupPlan {
    /// The group.
    pub name: String,
    /// `min` (from config, or as recorded when the group was removed).
    pub min: u32,
    /// `max`.
    pub max: u32,
    /// The desired count after this plan.
    pub desired: u32,
    /// Live nodes before.
    pub nodes_before: u32,
    /// Live nodes after.
    pub nodes_after: u32,
    /// Nodes created (replacements included).
    pub create: u32,
    /// Live nodes destroyed.
    pub destroy: u32,
    /// `prevent_destroy` is set.
    pub prevent_destroy: bool,
    /// The group is no longer in the config.
    pub removed: bool,
}

/// A group this plan leaves out, and why (its template's provider is not in
/// this build). Unlike [`Plan::errors`] it does not stop the plan: the other
/// groups' changes can still be applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GroupError {
    /// The group.
    pub group: String,
    /// What is wrong (`group `web`: provider `ec2` is not in this build`).
    pub message: String,
}

/// A config setting this build accepts but does not act on: what `scaler
/// validate` warns about (`config::ignored`), at its place in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigWarning {
    /// `ignored`.
    pub code: String,
    /// What this build does instead.
    pub message: String,
    /// The file, relative to the config root.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The setting (`daemon.source`).
    pub field: String,
    /// A hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl From<&crate::config::Diagnostic> for ConfigWarning {
    fn from(d: &crate::config::Diagnostic) -> ConfigWarning {
        ConfigWarning {
            code: d.code.to_string(),
            message: d.message.clone(),
            file: d.file.clone(),
            line: d.line,
            column: d.column,
            field: d.field.clone(),
            help: d.help.clone(),
        }
    }
}

/// Options that change what is planned.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Filters {
    /// Only addresses matching one of these (exact, or a prefix ending at `.`
    /// or `/`; `group.web` also covers its nodes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// Leave out addresses matching one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
}

impl Filters {
    /// Whether `address` is in the plan.
    pub fn allows(&self, address: &str) -> bool {
        let hit = |pat: &String| address_matches(pat, address);
        (self.targets.is_empty() || self.targets.iter().any(hit)) && !self.excludes.iter().any(hit)
    }

    /// Whether any filter is set (a partial plan).
    pub fn is_partial(&self) -> bool {
        !self.targets.is_empty() || !self.excludes.is_empty()
    }
}

/// `pattern` covers `address` when equal, when `address` continues it at a
/// `.` or `/`, or when `pattern` is `group.G` and `address` is a node of G.
pub fn address_matches(pattern: &str, address: &str) -> bool {
    if pattern == address {
        return true;
    }
    if let Some(rest) = address.strip_prefix(pattern) {
        if rest.starts_with('.') || rest.starts_with('/') || pattern.ends_with('.') || pattern.ends_with('/') {
            return true;
        }
    }
    if let Some(group) = pattern.strip_prefix("group.") {
        if let Some(node) = address.strip_prefix("node.") {
            return node.split('/').next() == Some(group);
        }
    }
    false
}

/// Flags the operator gave explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Flags {
    /// `--allow-destroy-all` (implied by `scaler destroy`).
    pub allow_destroy_all: bool,
}

/// A plan: a value that is printed, saved, checked and applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    /// [`FORMAT_VERSION`].
    pub format_version: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Apply or destroy.
    pub operation: Operation,
    /// The config root it was made from.
    pub root: String,
    /// State lineage it was made against.
    pub lineage: String,
    /// State serial it was made against.
    pub serial: u64,
    /// Digest of the config it was made from.
    pub config_digest: String,
    /// Revision of the config.
    pub revision: String,
    /// Filters used.
    #[serde(default)]
    pub filters: Filters,
    /// Flags used.
    #[serde(default)]
    pub flags: Flags,
    /// The changes, in apply order.
    pub changes: Vec<Change>,
    /// Counts.
    pub summary: Summary,
    /// Per-group figures.
    pub groups: Vec<GroupPlan>,
    /// Hard errors (`prevent_destroy`); a plan with errors cannot be applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Policy rules that deny the plan; it cannot be applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    /// Groups left out of the plan (a provider this build lacks). The other
    /// changes can be applied, but the applied revision is not recorded and
    /// `plan`/`apply` exit 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_errors: Vec<GroupError>,
    /// Settings of the config this build ignores (the warnings of `scaler
    /// validate`); informational.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<ConfigWarning>,
    /// Node records to bring up to date before applying (launches that
    /// finished but were not recorded); not changes to the fleet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refresh: Vec<crate::store::NodeRecord>,
    /// SHA-256 (hex) over the plan without this field; set when the plan is
    /// saved. A saved plan whose contents do not match it is refused.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
}

impl Plan {
    /// Whether there is anything to do.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty() || !self.refresh.is_empty()
    }

    /// Whether the plan may be applied.
    pub fn is_allowed(&self) -> bool {
        self.errors.is_empty() && self.violations.is_empty()
    }

    /// Whether applying the plan makes the fleet match the whole config: no
    /// `--target`/`--exclude` and no group left out. Only then does apply
    /// record the config revision as applied.
    pub fn is_complete(&self) -> bool {
        !self.filters.is_partial() && self.group_errors.is_empty()
    }

    /// Recounts [`Plan::summary`] from the changes.
    pub fn recount(&mut self) {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Replace => {
                    s.add += 1;
                    s.destroy += 1;
                }
                Action::Delete => s.destroy += 1,
            }
        }
        self.summary = s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_patterns() {
        assert!(address_matches("group.web", "group.web"));
        assert!(address_matches("group.web", "node.web/web-01"));
        assert!(!address_matches("group.web", "node.webx/webx-01"));
        assert!(!address_matches("group.web", "group.webx"));
        assert!(address_matches("node.web", "node.web/web-01"));
        assert!(address_matches("node.", "node.web/web-01"));
        assert!(address_matches("node.web/web-01", "node.web/web-01"));
        assert!(!address_matches("node.web/web-01", "node.web/web-011"));
    }

    #[test]
    fn filters() {
        let f = Filters { targets: vec!["group.web".into()], excludes: vec!["node.web/web-02".into()] };
        assert!(f.allows("node.web/web-01"));
        assert!(!f.allows("node.web/web-02"));
        assert!(!f.allows("counter.cpu"));
        assert!(Filters::default().allows("counter.cpu"));
    }
}
