//! The config repository an import goes into: where its root is, which
//! documents it declares, and what the imported documents need from it.
//!
//! [`complete`] adds to a [`Conversion`] the files for what the repository
//! lacks and the import can write (a Group and a placeholder NodeTemplate
//! for every group that a scale action scales or a Target reads; a Project
//! when there is none), and lists what it cannot write (playbooks), so that
//! `scaler validate` passes on the result or the user knows exactly which
//! documents to add.
//!
//! Owns: [`root`], [`complete`], reading declared names. Must not depend on:
//! the CLI, printing. Reads only; [`super::write`] writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{monscale, sanitize_name, Conversion, DocName, OutFile};
use crate::config::yaml;

/// The file that marks a config repository's root (`scaler init` writes it).
pub const PROJECT_FILE: &str = "scaler.yaml";

/// The nearest of `out` and its parents that holds `scaler.yaml`, if any.
pub fn root(out: &Path) -> Option<PathBuf> {
    let abs = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    abs.ancestors().find(|d| d.join(PROJECT_FILE).is_file()).map(Path::to_path_buf)
}

/// Adds to `conv` what the repository that `out` is in lacks (see the
/// module docs): support files in `conv.support`, the documents to add by
/// hand in `conv.to_add`. The repository's root is [`root`], else `out`.
pub fn complete(out: &Path, conv: &mut Conversion) {
    let found = root(out);
    let declared = declared_names(found.as_deref().unwrap_or(out));
    let has = |kind: &str, name: &str| declared.contains_key(&(kind.to_string(), name.to_string()));
    let mut support = Vec::new();
    for g in conv.groups.iter().filter(|g| !has("Group", &g.name)) {
        let template = (1..)
            .map(|i| if i == 1 { format!("{}-node", g.name) } else { format!("{}-node-{i}", g.name) })
            .find(|t| !has("NodeTemplate", t))
            .unwrap_or_default();
        support.push(OutFile {
            file_name: format!("monscale-{}.group.yaml", g.name),
            source: format!("Group `{}`", g.name),
            docs: vec![DocName { kind: "NodeTemplate", name: template.clone() }, DocName { kind: "Group", name: g.name.clone() }],
            text: monscale::support_docs(g, &template, &conv.export),
        });
    }
    if found.is_none() && !declared.keys().any(|(kind, _)| kind == "Project") {
        let abs = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
        let name = abs.file_name().and_then(|n| sanitize_name(&n.to_string_lossy())).unwrap_or_else(|| "monscale".to_string());
        support.push(OutFile {
            file_name: PROJECT_FILE.to_string(),
            source: "the repository's Project".to_string(),
            docs: vec![DocName { kind: "Project", name: name.clone() }],
            text: format!(
                "# Written by `scaler import monscale`: no `{PROJECT_FILE}` in `{}` or above, so this directory is the config repository.\nkind: Project\nname: \"{name}\"\n",
                out.display()
            ),
        });
    }
    conv.support = support;
    conv.to_add = conv
        .refers_to
        .iter()
        .filter(|n| !has(n.kind, &n.name))
        .map(|n| format!("{} `{}` (used by {})", n.kind, n.name, n.users.join(", ")))
        .collect();
}

/// `(kind, name)` of every document in the `*.yaml`/`*.yml` files below
/// `dir` (hidden paths skipped), with the file that declares it (`dir`
/// joined with its relative path). Files that cannot be read or parsed are
/// skipped: `scaler validate` reports them.
pub(super) fn declared_names(dir: &Path) -> HashMap<(String, String), PathBuf> {
    let mut out = HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let listing = if d.as_os_str().is_empty() { Path::new(".") } else { d.as_path() };
        let Ok(entries) = std::fs::read_dir(listing) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = d.join(&name);
            if entry.path().is_dir() {
                stack.push(path);
                continue;
            }
            let yaml_ext = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
            let Some(text) = yaml_ext.then(|| std::fs::read_to_string(entry.path()).ok()).flatten() else { continue };
            for doc in yaml::parse(&text).docs {
                let field = |k: &str| match doc.root.get(k) {
                    Some((_, yaml::Node { value: yaml::Value::String(s), .. })) => Some(s.clone()),
                    _ => None,
                };
                if let (Some(kind), Some(name)) = (field("kind"), field("name")) {
                    out.entry((kind, name)).or_insert_with(|| path.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{GroupNeed, Need};

    fn needs() -> Conversion {
        Conversion {
            export: "export.json".into(),
            groups: vec![GroupNeed { name: "web".into(), min: 1, max: 8, origin: "o".into(), launch: None, users: vec!["Trigger `t`".into()] }],
            refers_to: vec![Need { kind: "Playbook", name: "f5-add-pool-members".into(), users: vec!["Trigger `t`".into()] }],
            ..Conversion::default()
        }
    }

    #[test]
    fn an_empty_directory_gets_a_group_a_template_and_a_project() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("Fleet One");
        let mut conv = needs();
        complete(&out, &mut conv);
        let files: Vec<(&str, Vec<(&str, &str)>)> =
            conv.support.iter().map(|f| (f.file_name.as_str(), f.docs.iter().map(|d| (d.kind, d.name.as_str())).collect())).collect();
        assert_eq!(
            files,
            [("monscale-web.group.yaml", vec![("NodeTemplate", "web-node"), ("Group", "web")]), ("scaler.yaml", vec![("Project", "fleet-one")])]
        );
        assert_eq!(conv.to_add, ["Playbook `f5-add-pool-members` (used by Trigger `t`)"]);
    }

    #[test]
    fn what_the_repository_declares_is_not_written_and_names_stay_free() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PROJECT_FILE), "kind: Project\nname: p\n").unwrap();
        std::fs::write(dir.path().join("t.yaml"), "kind: NodeTemplate\nname: web-node\n---\nkind: Playbook\nname: f5-add-pool-members\n").unwrap();
        let out = dir.path().join("monitoring/deep");
        let mut conv = needs();
        complete(&out, &mut conv);
        assert_eq!(conv.support.len(), 1, "no Project: the repository above has one");
        assert_eq!(conv.support[0].docs[0].name, "web-node-2");
        assert!(conv.to_add.is_empty());
        std::fs::write(dir.path().join("g.yaml"), "kind: Group\nname: web\n").unwrap();
        complete(&out, &mut conv);
        assert!(conv.support.is_empty());
    }
}
