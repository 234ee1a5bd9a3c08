//! The config format: one serde + JSON Schema type per document kind.
//!
//! These types are the contract for every other module. The JSON Schemas in
//! `schema/` are generated from them (`scaler schema --write schema/`), and a
//! test fails when the checked-in files are stale. Values here are exactly what
//! the YAML says; defaults and cross-references are resolved by `config`.
//!
//! Must not depend on: any IO, tokio, the store or providers.

mod address;
mod duration;
mod kinds;

pub use address::HostPort;
pub use duration::{Duration, Percent, DURATION_PATTERN, PERCENT_PATTERN};
pub use kinds::*;

/// The eight document kinds, in dependency order (a kind may only refer to
/// kinds before it, except `Target` which may name a `Group`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    Project,
    NodeTemplate,
    Group,
    Target,
    Counter,
    Playbook,
    Trigger,
    Policy,
}

impl Kind {
    /// Every kind, in dependency order.
    pub const ALL: [Kind; 8] = [
        Kind::Project,
        Kind::NodeTemplate,
        Kind::Group,
        Kind::Target,
        Kind::Counter,
        Kind::Playbook,
        Kind::Trigger,
        Kind::Policy,
    ];

    /// The name used in YAML (`kind: NodeTemplate`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Project => "Project",
            Kind::NodeTemplate => "NodeTemplate",
            Kind::Group => "Group",
            Kind::Target => "Target",
            Kind::Counter => "Counter",
            Kind::Playbook => "Playbook",
            Kind::Trigger => "Trigger",
            Kind::Policy => "Policy",
        }
    }

    /// The lowercase word used in plan addresses (`group.web`) and file names
    /// (`schema/group.schema.json`).
    pub fn slug(self) -> &'static str {
        match self {
            Kind::Project => "project",
            Kind::NodeTemplate => "nodetemplate",
            Kind::Group => "group",
            Kind::Target => "target",
            Kind::Counter => "counter",
            Kind::Playbook => "playbook",
            Kind::Trigger => "trigger",
            Kind::Policy => "policy",
        }
    }

    /// Parses either spelling (`NodeTemplate` or `nodetemplate`).
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s || k.slug() == s.to_ascii_lowercase())
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The pattern every `name` must match.
pub const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9-]{0,62}$";

/// A JSON value's type for messages: `null`, `a boolean`, `a number`,
/// `a string`, `an array`, `an object`.
pub fn json_type(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Returns true when `name` is a valid object name.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name("web"));
        assert!(is_valid_name("0web-1"));
        assert!(!is_valid_name("-web"));
        assert!(!is_valid_name("Web"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name(&"a".repeat(64)));
        assert!(is_valid_name(&"a".repeat(63)));
    }

    #[test]
    fn kinds_parse_both_spellings() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            assert_eq!(Kind::parse(k.slug()), Some(k));
        }
        assert_eq!(Kind::parse("Nope"), None);
    }
}
