//! Compiles checked documents into a [`Config`]: one Project, unique names
//! per kind, typed objects with their source positions, cross-object checks,
//! a content digest. All problems of all files are collected.
//!
//! Owns: [`Config`], [`Located`], [`compile`], [`parse_policies`].
//! Must not depend on: the store, the network, providers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::checks::{self, At, Ctx, Names};
use super::diag::{Diagnostic, Diagnostics};
use super::document::{place, read_documents, Document};
use super::ignored;
use super::schema::Validators;
use super::source::SourceFile;
use crate::model::{
    Counter, Group, Kind, NodeTemplate, Playbook, Policy, Project, Target, Trigger,
};

/// An object with the place it was declared.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    /// The object as written.
    pub spec: T,
    /// Its file, relative to the config root, `/`-separated.
    pub file: String,
    /// 1-based line of the document's first key.
    pub line: usize,
    /// 1-based column of the document's first key.
    pub column: usize,
}

/// A loaded, validated config repository.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory it was loaded from.
    pub root: PathBuf,
    /// The one Project.
    pub project: Located<Project>,
    /// NodeTemplates by name.
    pub templates: BTreeMap<String, Located<NodeTemplate>>,
    /// Groups by name.
    pub groups: BTreeMap<String, Located<Group>>,
    /// Targets by name.
    pub targets: BTreeMap<String, Located<Target>>,
    /// Counters by name.
    pub counters: BTreeMap<String, Located<Counter>>,
    /// Playbooks by name.
    pub playbooks: BTreeMap<String, Located<Playbook>>,
    /// Triggers by name.
    pub triggers: BTreeMap<String, Located<Trigger>>,
    /// Policies by name.
    pub policies: BTreeMap<String, Located<Policy>>,
    /// Hex SHA-256 over the canonical objects (independent of file layout,
    /// comments and formatting).
    pub digest: String,
    /// The git commit the config came from (`-dirty` when the working tree
    /// differs), or `none`.
    pub revision: String,
    /// Settings this build accepts but does not act on (see
    /// [`super::ignored`]), as warnings at their `file:line:column`, sorted,
    /// with source lines. Never errors: the config is valid.
    pub warnings: Diagnostics,
}

fn canonical<T: Serialize>(spec: &T) -> serde_json::Value {
    serde_json::to_value(spec).unwrap_or(serde_json::Value::Null)
}

fn push_all<T: Serialize>(
    out: &mut Vec<(Kind, String, serde_json::Value)>,
    kind: Kind,
    map: &BTreeMap<String, Located<T>>,
) {
    for (name, l) in map {
        out.push((kind, name.clone(), canonical(&l.spec)));
    }
}

impl Config {
    /// Every object (the Project included) as canonical JSON, in
    /// [`Kind::ALL`] order, then by name.
    pub fn objects(&self) -> Vec<(Kind, String, serde_json::Value)> {
        let mut out = Vec::new();
        for kind in Kind::ALL {
            match kind {
                Kind::Project => out.push((
                    kind,
                    self.project.spec.name.clone(),
                    canonical(&self.project.spec),
                )),
                Kind::NodeTemplate => push_all(&mut out, kind, &self.templates),
                Kind::Group => push_all(&mut out, kind, &self.groups),
                Kind::Target => push_all(&mut out, kind, &self.targets),
                Kind::Counter => push_all(&mut out, kind, &self.counters),
                Kind::Playbook => push_all(&mut out, kind, &self.playbooks),
                Kind::Trigger => push_all(&mut out, kind, &self.triggers),
                Kind::Policy => push_all(&mut out, kind, &self.policies),
            }
        }
        out
    }

    /// Hex SHA-256 of [`Config::objects`].
    pub fn compute_digest(&self) -> String {
        digest_of(&self.objects())
    }
}

fn digest_of(objects: &[(Kind, String, serde_json::Value)]) -> String {
    let mut h = Sha256::new();
    for (kind, name, value) in objects {
        h.update(kind.as_str().as_bytes());
        h.update([0]);
        h.update(name.as_bytes());
        h.update([0]);
        h.update(value.to_string().as_bytes());
        h.update([b'\n']);
    }
    hex::encode(h.finalize())
}

#[derive(Default)]
struct Objects {
    project: Option<Located<Project>>,
    templates: BTreeMap<String, Located<NodeTemplate>>,
    groups: BTreeMap<String, Located<Group>>,
    targets: BTreeMap<String, Located<Target>>,
    counters: BTreeMap<String, Located<Counter>>,
    playbooks: BTreeMap<String, Located<Playbook>>,
    triggers: BTreeMap<String, Located<Trigger>>,
    policies: BTreeMap<String, Located<Policy>>,
}

/// What `compile` needs besides the files.
pub struct Input<'a> {
    /// The config root (for `Config::root` and messages).
    pub root: &'a Path,
    /// The files, sorted by path.
    pub files: &'a [SourceFile],
    /// The revision to record.
    pub revision: String,
    /// Problems already found while reading the files.
    pub diags: Vec<Diagnostic>,
}

fn validators() -> Result<&'static Validators, Diagnostics> {
    Validators::get().map_err(|e| Diagnostics(vec![Diagnostic::new("schema", e)]))
}

/// Compiles files into a Config, or every problem found.
pub fn compile(input: Input<'_>) -> Result<Config, Diagnostics> {
    let Input {
        root,
        files,
        revision,
        mut diags,
    } = input;
    let read = read_documents(files, validators()?);
    // A file that could not be read or parsed completely hides its objects:
    // reference checks would then only report noise.
    let refs = !read.incomplete && diags.is_empty();
    diags.extend(read.diags);

    // Names first (from every document that has one, valid or not), so that
    // references to an invalid object do not add noise.
    let mut names = Names::default();
    let mut keep = vec![true; read.docs.len()];
    let mut first_project: Option<usize> = None;
    for (i, doc) in read.docs.iter().enumerate() {
        let file = &files[doc.file].path;
        if doc.kind == Kind::Project {
            match first_project {
                None => first_project = Some(i),
                Some(first) => {
                    let f = &read.docs[first];
                    diags.push(
                        place(
                            "project",
                            format!(
                                "a second `Project` document (the first is at {}:{})",
                                files[f.file].path, f.root.pos.line
                            ),
                            file,
                            &doc.root,
                            &[],
                        )
                        .help("a repository has exactly one `Project`; merge them"),
                    );
                    keep[i] = false;
                }
            }
            continue;
        }
        if let Some((name, pos)) = &doc.name {
            if let Some((first_file, first_pos)) = names.declare(doc.kind, name, file, *pos) {
                diags.push(
                    Diagnostic::new(
                        "duplicate",
                        format!(
                            "duplicate {} name `{name}` (first defined at {first_file}:{})",
                            checks::kind_word(doc.kind),
                            first_pos.line
                        ),
                    )
                    .at(file, pos.line, pos.column)
                    .field("name")
                    .help("names are unique per kind; rename or remove one of them"),
                );
                keep[i] = false;
            }
        }
    }
    if first_project.is_none() && refs {
        diags.push(
            Diagnostic::new(
                "project",
                format!("no `Project` document in `{}`", root.display()),
            )
            .help("add a `scaler.yaml` with `kind: Project` and `name: <project>`"),
        );
    }

    let mut ctx = Ctx::new(&names, refs);
    ctx.repo_root = Some(root.to_path_buf());
    let mut objects = Objects::default();
    for (i, doc) in read.docs.iter().enumerate() {
        if keep[i] {
            add(
                &mut ctx,
                &mut diags,
                &mut objects,
                doc,
                &files[doc.file].path,
            );
        }
    }
    diags.extend(ctx.out);

    match objects.project {
        Some(project) if diags.is_empty() => {
            let warnings = finish(ctx.warnings, files);
            let mut config = Config {
                root: root.to_path_buf(),
                project,
                templates: objects.templates,
                groups: objects.groups,
                targets: objects.targets,
                counters: objects.counters,
                playbooks: objects.playbooks,
                triggers: objects.triggers,
                policies: objects.policies,
                digest: String::new(),
                revision,
                warnings,
            };
            config.digest = config.compute_digest();
            Ok(config)
        }
        _ => Err(finish(diags, files)),
    }
}

/// Sorts the diagnostics and attaches source lines.
pub fn finish(diags: Vec<Diagnostic>, files: &[SourceFile]) -> Diagnostics {
    let mut diags = Diagnostics::from(diags);
    for d in &mut diags.0 {
        if d.line == 0 || d.source_line.is_some() {
            continue;
        }
        if let Ok(i) = files.binary_search_by(|f| f.path.as_str().cmp(d.file.as_str())) {
            d.source_line = files[i].text.lines().nth(d.line - 1).map(str::to_string);
        } else if let Some(f) = files.iter().find(|f| f.path == d.file) {
            d.source_line = f.text.lines().nth(d.line - 1).map(str::to_string);
        }
    }
    diags
}

fn typed<T: DeserializeOwned>(
    doc: &Document,
    file: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Located<T>> {
    let json = doc.json.clone()?;
    match serde_json::from_value::<T>(json) {
        Ok(spec) => Some(Located {
            spec,
            file: file.to_string(),
            line: doc.root.pos.line,
            column: doc.root.pos.column,
        }),
        Err(e) => {
            diags.push(place(
                "schema",
                format!("invalid {}: {e}", doc.kind.as_str()),
                file,
                &doc.root,
                &[],
            ));
            None
        }
    }
}

fn add(
    ctx: &mut Ctx<'_>,
    diags: &mut Vec<Diagnostic>,
    objects: &mut Objects,
    doc: &Document,
    file: &str,
) {
    let at = At {
        file,
        root: &doc.root,
    };
    checks::check_repo_files(ctx, at);
    macro_rules! insert {
        ($map:ident, $ty:ty, $check:path) => {{
            if let Some(l) = typed::<$ty>(doc, file, diags) {
                $check(ctx, at, &l.spec);
                objects.$map.insert(l.spec.name.clone(), l);
            }
        }};
        ($map:ident, $ty:ty, $check:path, $ignored:path) => {{
            if let Some(l) = typed::<$ty>(doc, file, diags) {
                $check(ctx, at, &l.spec);
                ctx.warnings.extend($ignored(at, &l.spec));
                objects.$map.insert(l.spec.name.clone(), l);
            }
        }};
    }
    match doc.kind {
        Kind::Project => {
            if let Some(l) = typed::<Project>(doc, file, diags) {
                ctx.warnings.extend(ignored::project(at, &l.spec));
                objects.project = Some(l);
            }
        }
        Kind::NodeTemplate => insert!(templates, NodeTemplate, checks::check_node_template, ignored::node_template),
        Kind::Group => insert!(groups, Group, checks::check_group, ignored::group),
        Kind::Target => insert!(targets, Target, checks::check_target),
        Kind::Counter => insert!(counters, Counter, checks::check_counter),
        Kind::Playbook => insert!(playbooks, Playbook, checks::check_playbook),
        Kind::Trigger => insert!(triggers, Trigger, checks::check_trigger),
        Kind::Policy => insert!(policies, Policy, checks::check_policy),
    }
}

/// Parses a built-in policy file (embedded in the binary): the same YAML,
/// schema and expression checks as a repository, without references. Every
/// document must be a `Policy`.
pub fn parse_policies(file_name: &str, text: &str) -> Result<Vec<Policy>, Diagnostics> {
    let files = [SourceFile {
        path: file_name.to_string(),
        text: text.to_string(),
    }];
    let read = read_documents(&files, validators()?);
    let mut diags = read.diags;
    let names = Names::default();
    let mut ctx = Ctx::new(&names, false);
    let mut seen = Names::default();
    let mut out = Vec::new();
    for doc in &read.docs {
        if doc.kind != Kind::Policy {
            diags.push(place(
                "kind",
                format!(
                    "expected only `Policy` documents, found `{}`",
                    doc.kind.as_str()
                ),
                file_name,
                &doc.root,
                &[super::yaml::Segment::Key("kind".into())],
            ));
            continue;
        }
        if let Some((name, pos)) = &doc.name {
            if let Some((_, first)) = seen.declare(Kind::Policy, name, file_name, *pos) {
                diags.push(
                    Diagnostic::new(
                        "duplicate",
                        format!(
                            "duplicate policy name `{name}` (first defined at {file_name}:{})",
                            first.line
                        ),
                    )
                    .at(file_name, pos.line, pos.column)
                    .field("name"),
                );
                continue;
            }
        }
        if let Some(l) = typed::<Policy>(doc, file_name, &mut diags) {
            checks::check_policy(
                &mut ctx,
                At {
                    file: file_name,
                    root: &doc.root,
                },
                &l.spec,
            );
            out.push(l.spec);
        }
    }
    diags.extend(ctx.out);
    if diags.is_empty() {
        Ok(out)
    } else {
        Err(finish(diags, &files))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<SourceFile> {
        let mut v: Vec<SourceFile> = list
            .iter()
            .map(|(p, t)| SourceFile {
                path: (*p).to_string(),
                text: (*t).to_string(),
            })
            .collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    fn run(list: &[(&str, &str)]) -> Result<Config, Diagnostics> {
        let files = files(list);
        compile(Input {
            root: Path::new("repo"),
            files: &files,
            revision: "none".into(),
            diags: Vec::new(),
        })
    }

    const PROJECT: (&str, &str) = ("scaler.yaml", "kind: Project\nname: p\n");
    const NODES: (&str, &str) = (
        "nodes.yaml",
        "kind: NodeTemplate\nname: n\nprovider: local\nlocal: { command: run }\n---\nkind: Group\nname: g\ntemplate: n\nmin: 1\nmax: 3\n",
    );

    fn summary(d: &Diagnostics) -> Vec<String> {
        d.0.iter()
            .map(|d| {
                format!(
                    "{} {}:{}:{} {}",
                    d.code, d.file, d.line, d.column, d.message
                )
            })
            .collect()
    }

    #[test]
    fn every_file_reports_at_once_sorted() {
        let err = run(&[
            PROJECT,
            NODES,
            ("b.yaml", "kind: Group\nname: h\ntemplate: n\nmin: 1\nmax: 3\ndesired: 9\n"),
            ("a.yaml", "kind: Target\nname: t\ngroup: gg\n---\nkind: Target\nname: t\nhosts: [x]\n"),
            ("c.yaml", "kind: Counter\nname: c\nsource: { ssh: { command: x } }\ntargets: [t]\ninterval: 3\n"),
        ])
        .unwrap_err();
        assert_eq!(
            summary(&err),
            vec![
                "reference a.yaml:3:1 unknown group `gg`, did you mean `g`?",
                "duplicate a.yaml:6:1 duplicate target name `t` (first defined at a.yaml:2)",
                "range b.yaml:6:1 `desired` (9) is outside `min`..`max` (1..3)",
                "duration c.yaml:5:1 `3` is not a duration (expected e.g. \"90s\", \"5m\", \"1h30m\")",
            ]
        );
        assert_eq!(err.0[0].source_line.as_deref(), Some("group: gg"));
    }

    #[test]
    fn syntax_errors_silence_reference_checks_only() {
        let err = run(&[
            ("broken.yaml", "kind: Group\nname: [g\n"),
            ("t.yaml", "kind: Target\nname: t\ngroup: g\n---\nkind: Group\nname: x\ntemplate: n\nmin: 3\nmax: 1\n"),
        ])
        .unwrap_err();
        let codes: Vec<&str> = err.0.iter().map(|d| d.code).collect();
        assert_eq!(codes, vec!["yaml", "range"]);
    }

    #[test]
    fn objects_and_digest_ignore_layout() {
        let a = run(&[PROJECT, NODES]).unwrap();
        let b = run(&[
            ("z.yaml", "# comment\nname: p\nkind: Project\n"),
            (
                "g.yaml",
                "kind: Group\nname: g\nmax: 3\nmin: 1\ntemplate: n\n",
            ),
            (
                "n.yaml",
                "kind: NodeTemplate\nname: n\nprovider: local\nlocal:\n  command: run\n",
            ),
        ])
        .unwrap();
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.digest.len(), 64);
        let names: Vec<(Kind, String)> = a.objects().into_iter().map(|(k, n, _)| (k, n)).collect();
        assert_eq!(
            names,
            vec![
                (Kind::Project, "p".to_string()),
                (Kind::NodeTemplate, "n".to_string()),
                (Kind::Group, "g".to_string()),
            ]
        );
        assert_eq!(
            (a.groups["g"].file.as_str(), a.groups["g"].line),
            ("nodes.yaml", 6)
        );
        let c = run(&[PROJECT, ("g.yaml", &NODES.1.replace("max: 3", "max: 4"))]).unwrap();
        assert_ne!(a.digest, c.digest);
    }

    #[test]
    fn projects_exactly_one() {
        let err = run(&[NODES]).unwrap_err();
        assert_eq!(
            summary(&err),
            vec!["project :0:0 no `Project` document in `repo`"]
        );
        let err = run(&[PROJECT, ("x.yaml", "kind: Project\nname: q\n")]).unwrap_err();
        assert_eq!(
            summary(&err),
            vec!["project x.yaml:1:1 a second `Project` document (the first is at scaler.yaml:1)"]
        );
    }
}
