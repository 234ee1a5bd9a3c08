//! JSON Schemas (draft 2020-12) for the eight kinds, generated from the model
//! types with schemars, and the validators built from them.
//!
//! Owns: [`schema_for`], [`write_schemas`], [`Validators`].
//! Must not depend on: the store, the network, the rest of `config` except
//! the diagnostics it produces through `schema_errors`.

use std::path::Path;
use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Value};

use super::explain::{explain, Problem};
use super::yaml::Segment;
use crate::model::{self, Kind};

/// The `$id` of a kind's schema.
pub fn schema_id(kind: Kind) -> String {
    format!("https://scaler.dev/schema/{}.schema.json", kind.slug())
}

/// The JSON Schema of one kind, with `$schema`, `$id`, `title` and a required
/// `kind` property holding the kind's name.
pub fn schema_for(kind: Kind) -> Value {
    match kind {
        Kind::Project => finish::<model::Project>(kind),
        Kind::NodeTemplate => finish::<model::NodeTemplate>(kind),
        Kind::Group => finish::<model::Group>(kind),
        Kind::Target => finish::<model::Target>(kind),
        Kind::Counter => finish::<model::Counter>(kind),
        Kind::Playbook => finish::<model::Playbook>(kind),
        Kind::Trigger => finish::<model::Trigger>(kind),
        Kind::Policy => finish::<model::Policy>(kind),
    }
}

fn finish<T: JsonSchema>(kind: Kind) -> Value {
    let generated = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value();
    let Value::Object(generated) = generated else {
        return generated;
    };
    // Put the header keys first, then the generated body.
    let mut out = serde_json::Map::new();
    out.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    out.insert("$id".into(), json!(schema_id(kind)));
    out.insert("title".into(), json!(kind.as_str()));
    for (k, v) in generated {
        if k == "$schema" || k == "title" {
            continue;
        }
        out.insert(k, v);
    }
    if let Some(Value::Object(props)) = out.get_mut("properties") {
        let mut with_kind = serde_json::Map::new();
        with_kind.insert(
            "kind".into(),
            json!({ "description": "The document kind.", "const": kind.as_str() }),
        );
        for (k, mut v) in std::mem::take(props) {
            if k == "name" {
                if let Value::Object(o) = &mut v {
                    o.insert("pattern".into(), json!(model::NAME_PATTERN));
                }
            }
            with_kind.insert(k, v);
        }
        *props = with_kind;
    }
    if let Some(Value::Array(req)) = out.get_mut("required") {
        req.insert(0, json!("kind"));
    } else {
        out.insert("required".into(), json!(["kind"]));
    }
    Value::Object(out)
}

/// The file name of a kind's schema (`group.schema.json`).
pub fn file_name(kind: Kind) -> String {
    format!("{}.schema.json", kind.slug())
}

/// The schema as written to disk: pretty JSON and a trailing newline.
pub fn schema_text(kind: Kind) -> String {
    let mut text = serde_json::to_string_pretty(&schema_for(kind)).unwrap_or_default();
    text.push('\n');
    text
}

/// Writes `<slug>.schema.json` for every kind into `dir`.
pub fn write_schemas(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for kind in Kind::ALL {
        std::fs::write(dir.join(file_name(kind)), schema_text(kind))?;
    }
    Ok(())
}

/// The compiled validators of every kind, built once per process.
pub(crate) struct Validators {
    kinds: Vec<(Kind, Value, jsonschema::Validator)>,
}

impl Validators {
    /// The shared validators (compiled on first use).
    pub(crate) fn get() -> Result<&'static Validators, String> {
        static CELL: OnceLock<Result<Validators, String>> = OnceLock::new();
        CELL.get_or_init(Validators::build)
            .as_ref()
            .map_err(Clone::clone)
    }

    fn build() -> Result<Validators, String> {
        let mut kinds = Vec::new();
        for kind in Kind::ALL {
            let schema = schema_for(kind);
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .build(&schema)
                .map_err(|e| format!("the built-in schema of `{kind}` does not compile: {e}"))?;
            kinds.push((kind, schema, validator));
        }
        Ok(Validators { kinds })
    }

    /// Validates `doc` (a whole document, `kind` included) as `kind`; returns
    /// the problems, explained.
    pub(crate) fn check(&self, kind: Kind, doc: &Value) -> Vec<Problem> {
        let Some((_, schema, validator)) = self.kinds.iter().find(|(k, _, _)| *k == kind) else {
            return Vec::new();
        };
        if validator.is_valid(doc) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for err in validator.iter_errors(doc) {
            explain(&err, schema, &mut out);
        }
        // An unknown field already says what is wrong with a mapping; a
        // "needs exactly one of" summary at the same place only adds noise.
        let unknown_parents: Vec<Vec<Segment>> = out
            .iter()
            .filter(|p| p.code == "unknown-field")
            .map(|p| p.path[..p.path.len().saturating_sub(1)].to_vec())
            .collect();
        out.retain(|p| !(p.code == "one-of" && unknown_parents.contains(&p.path)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(kind: Kind, doc: Value) -> Vec<String> {
        Validators::get()
            .unwrap()
            .check(kind, &doc)
            .into_iter()
            .map(|p| {
                let help = p.help.map(|h| format!(" [help: {h}]")).unwrap_or_default();
                format!(
                    "{} {}: {}{help}",
                    p.code,
                    super::super::yaml::field_path(&p.path),
                    p.message
                )
            })
            .collect()
    }

    #[test]
    fn schemas_have_header_and_kind() {
        for kind in Kind::ALL {
            let s = schema_for(kind);
            assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
            assert_eq!(
                s["$id"],
                format!("https://scaler.dev/schema/{}.schema.json", kind.slug())
            );
            assert_eq!(s["title"], kind.as_str());
            assert_eq!(s["properties"]["kind"]["const"], kind.as_str());
            assert_eq!(s["required"][0], "kind");
            assert_eq!(s["properties"]["name"]["pattern"], model::NAME_PATTERN);
        }
    }

    /// The checked-in `schema/*.schema.json` must match the types. Regenerate
    /// with `SCALER_UPDATE_SCHEMAS=1 cargo test schemas_are_up_to_date`.
    #[test]
    fn schemas_are_up_to_date() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
        if std::env::var_os("SCALER_UPDATE_SCHEMAS").is_some() {
            write_schemas(&dir).unwrap();
        }
        let mut stale = Vec::new();
        for kind in Kind::ALL {
            let path = dir.join(file_name(kind));
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            if on_disk != schema_text(kind) {
                stale.push(path.display().to_string());
            }
        }
        assert!(
            stale.is_empty(),
            "stale JSON Schemas: {stale:?}\nregenerate them with: SCALER_UPDATE_SCHEMAS=1 cargo test schemas_are_up_to_date"
        );
    }

    #[test]
    fn explains_common_mistakes() {
        let got = problems(
            Kind::Group,
            json!({"kind":"Group","name":"Web_1","template":"t","mn":1,"max":"abc",
                   "scale_in":{"pik":"newest","pick":"biggest"}, "naming": {"digits": 9}}),
        );
        assert_eq!(
            got,
            vec![
                "missing-field : missing required field `min`",
                "name name: invalid name `Web_1` [help: names use lowercase letters, digits and `-`, start with a letter or digit, and have at most 63 characters]",
                "type max: expected integer, found string \"abc\"",
                "schema scale_in.pick: expected one of `newest`, `oldest`, `least-busy`, found string \"biggest\"",
                "unknown-field scale_in.pik: unknown field `pik`, did you mean `pick`?",
                "range naming.digits: expected at most 6, found integer 9",
                "unknown-field mn: unknown field `mn`, did you mean `min`?",
            ]
        );
    }

    #[test]
    fn explains_unions_in_one_line() {
        let got = problems(
            Kind::Counter,
            json!({"kind":"Counter","name":"c","source":{"sshh":{"command":"x"}},"interval":"5x",
                   "parse": "numbr"}),
        );
        assert_eq!(
            got,
            vec![
                "one-of source: expected exactly one of `ssh`, `local`, `http`, `jmx`, `snmp`, `redis`, `stream`, `push`, `alertmanager`, `trap`, found `sshh` [help: did you mean `ssh`?]",
                "duration interval: `5x` is not a duration (expected e.g. \"90s\", \"5m\", \"1h30m\") [help: units: `ms`, `s`, `m`, `h`, `d`]",
                "one-of parse: expected one of `number`, `regex`, `json`, `kv`, `perfdata`, found string \"numbr\" [help: did you mean `number`?]",
            ]
        );
        let got = problems(
            Kind::Counter,
            json!({"kind":"Counter","name":"c","source":{"ssh":{"comand":"x"}}, "parse": {"regex": 5}}),
        );
        assert_eq!(
            got,
            vec![
                "unknown-field source.ssh.comand: unknown field `comand`, did you mean `command`?",
                "missing-field source.ssh: missing required field `command`",
                "type parse.regex: expected string, found integer 5 [help: quote it to make it a string: `\"5\"`]",
            ]
        );
    }

    #[test]
    fn explains_actions_steps_and_percentages() {
        let got = problems(
            Kind::Trigger,
            json!({"kind":"Trigger","name":"t","when":5,"min_coverage":"90","for": 60,
                   "then":[{"scale":{"group":"w","byy":1}}, {"bogus": 1}, {"run": {"playbook": "x"}, "notify": {}}]}),
        );
        assert_eq!(
            got,
            vec![
                "type when: expected a string or a list of strings, found integer 5",
                "percent min_coverage: `90` is not a percentage (expected e.g. \"90%\" or a number from 0 to 100)",
                "duration for: `60` is not a duration (expected e.g. \"90s\", \"5m\", \"1h30m\") [help: add a unit: `60s`]",
                "unknown-field then[0].scale.byy: unknown field `byy`, did you mean `by`?",
                "one-of then[1]: expected exactly one of `scale`, `run`, `notify`, found `bogus`",
                "one-of then[2]: expected exactly one of `scale`, `run`, `notify`, found `run` and `notify`",
            ]
        );
        let got = problems(
            Kind::Playbook,
            json!({"kind":"Playbook","name":"p","serial":true,"steps":[{"name":"a"}, {"run":"a","sudo":"b"},
                   {"sudo": {"command": "x", "usr": "y"}}, {"rn": "x"}]}),
        );
        assert_eq!(
            got,
            vec![
                "type serial: expected an integer or a percentage, found boolean true",
                "one-of steps[0]: expected exactly one of `run`, `sudo`, `local`, `put`, `get`, `prompt`, `abort`, found none",
                "one-of steps[1]: expected exactly one of `run`, `sudo`, `local`, `put`, `get`, `prompt`, `abort`, found `run` and `sudo`",
                "unknown-field steps[2].sudo.usr: unknown field `usr`, did you mean `user`?",
                "unknown-field steps[3].rn: unknown field `rn`, did you mean `run`?",
            ]
        );
    }
}
