//! Importing configurations of older tools into scaler YAML.
//!
//! ```text
//! monscale export (JSON) -> monscale::convert (pure) -> Conversion (files as text)
//!   -> write::check (refuse a second import) -> write::write_all (temp files + rename)
//! ```
//!
//!
//! Between the two, [`repo::complete`] looks at the config repository the
//! files go into and adds what the imported documents need that it lacks:
//! a Group (and its NodeTemplate) for every group a scale action scales, a
//! Project when there is none; a playbook it cannot write is listed to add.
//!
//! Owns: [`Conversion`], [`OutFile`], [`ImportError`], [`sanitize_name`], the
//! monscale converter ([`monscale`]), the repository side ([`repo`]) and the
//! all-or-nothing writer ([`write`]).
//! Must not depend on: the CLI, printing (the caller reports), the store.

pub mod monscale;
mod render;
pub mod repo;
pub mod write;

use std::fmt;
use std::path::PathBuf;

/// One problem in an export file, at a JSON path (`$[3].threshold[0]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the export, as a JSON path from the top-level array.
    pub path: String,
    /// What is wrong (lowercase, no trailing period).
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// How many objects of each kind an export held (`2 actions, 3 thresholds,
/// 1 infrastructure, 3 services`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Counts {
    /// ScaleAction objects.
    pub actions: usize,
    /// Threshold objects.
    pub thresholds: usize,
    /// ServiceInfrastructure objects.
    pub infrastructures: usize,
    /// MonitoredService objects (active or not).
    pub services: usize,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = |count: usize, one: &str, many: &str| format!("{count} {}", if count == 1 { one } else { many });
        write!(
            f,
            "{}, {}, {}, {}",
            n(self.actions, "action", "actions"),
            n(self.thresholds, "threshold", "thresholds"),
            n(self.infrastructures, "infrastructure", "infrastructures"),
            n(self.services, "service", "services")
        )
    }
}

/// A Group that imported documents use (a scale action scales it, a Target
/// reads its nodes): the repository must declare it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupNeed {
    /// The group's name.
    pub name: String,
    /// Fewest nodes.
    pub min: u64,
    /// Most nodes.
    pub max: u64,
    /// Where the group comes from in the export (`ServiceInfrastructure `logstash` (object 5)`).
    pub origin: String,
    /// The launch parameters of the first action that adds nodes to it, if any.
    pub launch: Option<serde_json::Map<String, serde_json::Value>>,
    /// The generated documents that use it (`Trigger `logstash-backlog``).
    pub users: Vec<String>,
}

/// A document the imported ones refer to but the import does not write
/// (a Playbook): the repository must declare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// `Playbook`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// The generated documents that use it.
    pub users: Vec<String>,
}

/// A generated config document: its kind and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocName {
    /// `Target`, `Counter`, `Trigger`, `Group`, `NodeTemplate` or `Project`.
    pub kind: &'static str,
    /// The document's name.
    pub name: String,
}

/// One YAML file to write.
#[derive(Debug, Clone, PartialEq)]
pub struct OutFile {
    /// File name (`monscale-<service>.yaml`), relative to the output directory.
    pub file_name: String,
    /// The imported object it comes from (the monscale service's name).
    pub source: String,
    /// The documents it declares.
    pub docs: Vec<DocName>,
    /// The file's text: a header comment, then YAML documents.
    pub text: String,
}

/// What an import produces: files as text, nothing written yet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Conversion {
    /// The export's file name, as the generated files' headers name it.
    pub export: String,
    /// One file per imported service, in export order.
    pub files: Vec<OutFile>,
    /// How many objects the export holds.
    pub objects: usize,
    /// Services not imported, with the reason (`` `web` (object 3): inactive ``).
    pub skipped: Vec<String>,
    /// How many objects of each kind the export held.
    pub counts: Counts,
    /// Groups the generated documents use, in order of first use.
    pub groups: Vec<GroupNeed>,
    /// Other documents the generated ones refer to (playbooks).
    pub refers_to: Vec<Need>,
    /// Files for the documents the generated ones need and the repository
    /// lacks (Groups, NodeTemplates, a Project), written with them; filled
    /// by [`repo::complete`].
    pub support: Vec<OutFile>,
    /// Documents the generated ones need, that the repository lacks and the
    /// import cannot write (`Playbook `f5-add-pool-members` (run by Trigger `web`)`);
    /// filled by [`repo::complete`].
    pub to_add: Vec<String>,
}

impl Conversion {
    /// Every file to write: one per service, then the support files.
    pub fn all_files(&self) -> impl Iterator<Item = &OutFile> {
        self.files.iter().chain(&self.support)
    }
}

/// Why an import failed. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The export could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The export file.
        path: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The export has problems; every one is listed.
    #[error("{}", render_problems(file, problems))]
    Invalid {
        /// The export file.
        file: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
    /// The import was done before: files or names already exist.
    #[error("refusing to import again (nothing written):\n  {}", conflicts.join("\n  "))]
    Exists {
        /// What already exists, one line each.
        conflicts: Vec<String>,
    },
    /// Writing the output failed; files written by this run were removed.
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

impl ImportError {
    /// Every problem as its own line (`file: $[3].x: message`), for reporting
    /// one per line.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ImportError::Invalid { file, problems } => {
                problems.iter().map(|p| format!("{file}: {p}")).collect()
            }
            ImportError::Exists { conflicts } => conflicts
                .iter()
                .map(|c| format!("refusing to import again: {c}"))
                .collect(),
            other => vec![other.to_string()],
        }
    }
}

fn render_problems(file: &str, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("{file}: {p}")).collect();
    lines.join("\n")
}

/// Most characters of a scaler name.
const NAME_MAX: usize = 63;

/// Turns free text into a scaler name `[a-z0-9][a-z0-9-]{0,62}`: lowercase,
/// every run of other characters becomes one `-`, no leading or trailing
/// `-`, at most 63 characters. `None` when nothing is left.
pub fn sanitize_name(raw: &str) -> Option<String> {
    let mut out = String::new();
    let mut gap = false;
    for c in raw.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            if gap && !out.is_empty() {
                out.push('-');
            }
            gap = false;
            out.push(c);
        } else {
            gap = true;
        }
    }
    out.truncate(NAME_MAX);
    let out = out.trim_end_matches('-').to_string();
    (!out.is_empty()).then_some(out)
}

/// Words a counter may not be called: trigger functions and minijinja
/// keywords and constants (a counter is a variable in `when:` expressions).
const RESERVED: [&str; 20] = [
    "last", "avg", "min", "max", "sum", "count", "rate", "any", "all", "and", "or", "not", "in",
    "is", "if", "else", "true", "false", "none", "loop",
];

/// A counter name usable as a variable in `when:` expressions: a sanitised
/// name without `-` (which means minus there), not starting with a digit and
/// not a reserved word (prefixed with `m` when it would be).
pub fn counter_name(raw: &str) -> Option<String> {
    let base: String = sanitize_name(raw)?.chars().filter(|c| *c != '-').collect();
    let starts_with_digit = base.chars().next().is_some_and(|c| c.is_ascii_digit());
    let mut name = if starts_with_digit || RESERVED.contains(&base.as_str()) {
        format!("m{base}")
    } else {
        base
    };
    name.truncate(NAME_MAX);
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitised_to_the_scaler_pattern() {
        assert_eq!(sanitize_name("Web Queue").as_deref(), Some("web-queue"));
        assert_eq!(sanitize_name("  --logstash__indexer!! ").as_deref(), Some("logstash-indexer"));
        assert_eq!(sanitize_name("Ñandú 2").as_deref(), Some("and-2"));
        assert_eq!(sanitize_name("!!!"), None);
        let long = sanitize_name(&"ab-".repeat(40)).unwrap();
        assert!(long.len() <= 63 && !long.ends_with('-'), "{long}");
    }

    #[test]
    fn counter_names_are_expression_variables() {
        assert_eq!(counter_name("Web Queue").as_deref(), Some("webqueue"));
        assert_eq!(counter_name("5xx rate").as_deref(), Some("m5xxrate"));
        assert_eq!(counter_name("avg").as_deref(), Some("mavg"));
        assert_eq!(counter_name("--"), None);
    }
}
