//! From files to checked documents: YAML parsing, `kind`/`name` detection and
//! JSON Schema validation of every document, with all problems collected.
//!
//! Owns: [`Document`], [`read_documents`], placing a field path at a
//! position ([`place`]).
//! Must not depend on: cross-document rules (that is `compile`), IO.

use serde_json::Value;

use super::diag::{backticked, did_you_mean, suggestion_suffix, Diagnostic};
use super::schema::Validators;
use super::source::SourceFile;
use super::yaml::{self, field_path, Node, Pos, Segment};
use crate::model::Kind;

/// One YAML document with a known kind.
#[derive(Debug)]
pub struct Document {
    /// Index of its file.
    pub file: usize,
    /// The tree, for positions.
    pub root: Node,
    /// Its kind.
    pub kind: Kind,
    /// Its name and the position of the `name` key, when it is a string.
    pub name: Option<(String, Pos)>,
    /// The document as JSON without `kind`, when it passed the schema.
    pub json: Option<Value>,
}

/// Everything read from a set of files.
#[derive(Debug, Default)]
pub struct Documents {
    /// The documents whose kind is known, in file order.
    pub docs: Vec<Document>,
    /// Problems found so far.
    pub diags: Vec<Diagnostic>,
    /// True when a file could not be parsed completely, so some documents
    /// are missing (reference checks would only add noise).
    pub incomplete: bool,
}

/// A diagnostic at `path` inside `root` (the key's position; for sequence
/// items the item's), in file `file`.
pub fn place(
    code: &'static str,
    message: impl Into<String>,
    file: &str,
    root: &Node,
    path: &[Segment],
) -> Diagnostic {
    let (found, _) = root.walk(path);
    Diagnostic::new(code, message)
        .at(file, found.key.line, found.key.column)
        .field(field_path(path))
}

/// Parses and validates every document of `files`.
pub fn read_documents(files: &[SourceFile], validators: &Validators) -> Documents {
    let mut out = Documents::default();
    for (index, file) in files.iter().enumerate() {
        read_file(index, file, validators, &mut out);
    }
    out
}

fn read_file(index: usize, file: &SourceFile, validators: &Validators, out: &mut Documents) {
    let parsed = yaml::parse(&file.text);
    if let Some(e) = &parsed.fatal {
        out.incomplete = true;
        out.diags.push(
            Diagnostic::new("yaml", e.message.clone())
                .at(&file.path, e.pos.line, e.pos.column)
                .maybe_help(e.help.clone()),
        );
    }
    for doc in parsed.docs {
        if doc.root.value == yaml::Value::Null {
            continue;
        }
        let yaml_ok = doc.errors.is_empty();
        for e in &doc.errors {
            out.diags.push(
                Diagnostic::new("yaml", e.message.clone())
                    .at(&file.path, e.pos.line, e.pos.column)
                    .maybe_help(e.help.clone()),
            );
        }
        if let Some(d) = read_doc(index, file, doc.root, yaml_ok, validators, out) {
            out.docs.push(d);
        }
    }
}

fn read_doc(
    index: usize,
    file: &SourceFile,
    root: Node,
    yaml_ok: bool,
    validators: &Validators,
    out: &mut Documents,
) -> Option<Document> {
    let diag = |code, msg: String, path: &[Segment]| place(code, msg, &file.path, &root, path);
    if !matches!(root.value, yaml::Value::Map(_)) {
        let json = root.to_json();
        out.diags.push(diag(
            "type",
            format!(
                "expected a mapping with `kind` and `name`, found {}",
                super::explain::found(&json)
            ),
            &[],
        ));
        return None;
    }
    let kind = match root.get("kind") {
        None => {
            out.diags.push(
                diag("kind", "missing `kind`".to_string(), &[])
                    .help(format!("add `kind:` with one of {}", all_kinds())),
            );
            None
        }
        Some((_, v)) => match &v.value {
            yaml::Value::String(s) => match Kind::ALL.into_iter().find(|k| k.as_str() == s) {
                Some(k) => Some(k),
                None => {
                    let suggestion = did_you_mean(s, Kind::ALL.iter().map(|k| k.as_str()));
                    let mut d = diag(
                        "kind",
                        format!(
                            "unknown kind `{s}`{}",
                            suggestion_suffix(suggestion.as_deref())
                        ),
                        &[Segment::Key("kind".into())],
                    );
                    if suggestion.is_none() {
                        d = d.help(format!("kinds: {}", all_kinds()));
                    }
                    out.diags.push(d);
                    None
                }
            },
            _ => {
                out.diags.push(
                    diag(
                        "kind",
                        format!(
                            "expected `kind` to be a string, found {}",
                            super::explain::found(&v.to_json())
                        ),
                        &[Segment::Key("kind".into())],
                    )
                    .help(format!("kinds: {}", all_kinds())),
                );
                None
            }
        },
    };
    let name = root.get("name").and_then(|(k, v)| match &v.value {
        yaml::Value::String(s) => Some((s.clone(), k.pos)),
        _ => None,
    });
    let kind = kind?;
    let mut json = None;
    if yaml_ok {
        let mut value = root.to_json();
        let problems = validators.check(kind, &value);
        if problems.is_empty() {
            if let Value::Object(map) = &mut value {
                map.shift_remove("kind");
            }
            json = Some(value);
        }
        for p in problems {
            out.diags
                .push(diag(p.code, p.message, &p.path).maybe_help(p.help));
        }
    }
    Some(Document {
        file: index,
        root,
        kind,
        name,
        json,
    })
}

fn all_kinds() -> String {
    backticked(Kind::ALL.iter().map(|k| k.as_str()))
}
