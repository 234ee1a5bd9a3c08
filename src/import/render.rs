//! Writing YAML text for imported documents: every string double-quoted
//! (JSON string syntax is valid YAML), flow collections for small values,
//! comments made safe.
//!
//! Owns: [`quote`], [`flow`], [`literal_template`], [`comment`].
//! Must not depend on: IO.

use serde_json::Value;

/// A YAML double-quoted scalar (JSON string syntax, which YAML 1.2 reads
/// the same way): `web` -> `"web"`.
pub fn quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// A value as YAML flow syntax (`{ a: "x", b: [1, 2] }`), strings quoted.
pub fn flow(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(flow).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(map) => {
            if map.is_empty() {
                return "{}".to_string();
            }
            let parts: Vec<String> = map.iter().map(|(k, v)| format!("{}: {}", key(k), flow(v))).collect();
            format!("{{ {} }}", parts.join(", "))
        }
    }
}

/// A map key: plain when it is a simple word that YAML reads as a string,
/// quoted otherwise.
fn key(k: &str) -> String {
    let simple = k.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let special = ["true", "false", "null", "yes", "no", "y", "n", "on", "off"].contains(&k);
    if simple && !special {
        k.to_string()
    } else {
        quote(k)
    }
}

/// Text that a minijinja template must render as is: wrapped in
/// `{% raw %}` when it contains template syntax.
pub fn literal_template(s: &str) -> String {
    if s.contains("{{") || s.contains("{%") || s.contains("{#") {
        format!("{{% raw %}}{s}{{% endraw %}}")
    } else {
        s.to_string()
    }
}

/// Text safe inside a `#` comment line: line breaks become spaces.
pub fn comment(s: &str) -> String {
    s.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_are_quoted_yaml_scalars() {
        assert_eq!(quote("yes"), "\"yes\"");
        assert_eq!(quote("a \"b\"\n"), "\"a \\\"b\\\"\\n\"");
    }

    #[test]
    fn flow_values() {
        assert_eq!(flow(&json!({"group": "web", "by": -1})), "{ group: \"web\", by: -1 }");
        assert_eq!(flow(&json!(["10.0.0.1:80", 2.5, true, null])), "[\"10.0.0.1:80\", 2.5, true, null]");
        assert_eq!(flow(&json!({})), "{}");
        assert_eq!(flow(&json!({"on": 1, "Pool Name": 2})), "{ \"on\": 1, \"Pool Name\": 2 }");
    }

    #[test]
    fn template_syntax_is_kept_literal() {
        assert_eq!(literal_template("plain"), "plain");
        assert_eq!(literal_template("a {{ b }}"), "{% raw %}a {{ b }}{% endraw %}");
    }
}
