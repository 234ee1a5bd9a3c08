//! Field-level differences between two versions of a config object.

use serde_json::Value;
use similar::{ChangeTag, TextDiff};

/// Flattens `v` into `path: value` lines (`then[0].scale.by: 1`), one per
/// leaf, in the object's field order.
fn flatten(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                flatten(child, &p, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, child) in items.iter().enumerate() {
                flatten(child, &format!("{path}[{i}]"), out);
            }
        }
        leaf => {
            let text = match leaf {
                Value::String(s) => s.replace('\n', "\\n"),
                other => other.to_string(),
            };
            out.push(format!("{path}: {text}"));
        }
    }
}

/// The changed lines between `before` and `after`, each starting with `- `
/// or `+ `. Empty when equal.
pub fn field_diff(before: &Value, after: &Value) -> Vec<String> {
    let mut a = Vec::new();
    let mut b = Vec::new();
    flatten(before, "", &mut a);
    flatten(after, "", &mut b);
    let a = a.join("\n") + "\n";
    let b = b.join("\n") + "\n";
    let diff = TextDiff::from_lines(&a, &b);
    diff.iter_all_changes()
        .filter_map(|c| {
            let line = c.value().trim_end_matches('\n');
            match c.tag() {
                ChangeTag::Delete => Some(format!("- {line}")),
                ChangeTag::Insert => Some(format!("+ {line}")),
                ChangeTag::Equal => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shows_only_changed_fields() {
        let before = json!({"name": "web-hot", "when": "cpu > 80", "for": "60s", "then": [{"scale": {"group": "web", "by": 1}}]});
        let after = json!({"name": "web-hot", "when": "cpu > 80", "for": "120s", "then": [{"scale": {"group": "web", "by": 2}}]});
        assert_eq!(
            field_diff(&before, &after),
            vec!["- for: 60s", "+ for: 120s", "- then[0].scale.by: 1", "+ then[0].scale.by: 2"]
        );
    }

    #[test]
    fn equal_is_empty() {
        let v = json!({"a": [1, {"b": null}], "c": {}});
        assert!(field_diff(&v, &v).is_empty());
    }

    #[test]
    fn added_field() {
        assert_eq!(field_diff(&json!({"a": 1}), &json!({"a": 1, "b": "x\ny"})), vec!["+ b: x\\ny"]);
    }
}
