//! Config diagnostics: one problem at a `file:line:column`, with the field
//! path and a hint, rendered for people (with the source line and a caret) or
//! as JSON for machines.
//!
//! Owns: [`Diagnostic`], [`Diagnostics`], their rendering.
//! Must not depend on: the rest of `config` (it is the leaf every stage uses).

use std::fmt;

use anstyle::{AnsiColor, Style};

/// One problem found in the config.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Diagnostic {
    /// What kind of problem: `yaml`, `schema`, `unknown-field`,
    /// `missing-field`, `type`, `reference`, `duplicate`, `range`, `duration`,
    /// `percent`, `name`, `one-of`, `template`, `expression`, `regex`, `kind`,
    /// `project`, `io`, `git`; for warnings `ignored` (a setting this build
    /// does not act on).
    pub code: &'static str,
    /// What is wrong: lowercase, no trailing period, names in backticks.
    pub message: String,
    /// Path of the file relative to the config root, `/`-separated (empty when
    /// the problem concerns no single file).
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column in characters (0 when unknown).
    pub column: usize,
    /// The offending field (`then[0].scale.group`); empty for the document.
    pub field: String,
    /// A hint on how to fix it.
    pub help: Option<String>,
    /// The source line at `line`, filled by the loader so that [`Diagnostics::render`]
    /// can show it without reading files again (not part of the JSON form).
    #[serde(skip)]
    pub source_line: Option<String>,
}

impl Diagnostic {
    /// A diagnostic without a position.
    pub fn new(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            message: message.into(),
            ..Diagnostic::default()
        }
    }

    /// Sets the file and position.
    pub fn at(mut self, file: &str, line: usize, column: usize) -> Diagnostic {
        self.file = file.to_string();
        self.line = line;
        self.column = column;
        self
    }

    /// Sets the field path.
    pub fn field(mut self, field: impl Into<String>) -> Diagnostic {
        self.field = field.into();
        self
    }

    /// Sets the hint.
    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Sets the hint when there is one.
    pub fn maybe_help(mut self, help: Option<String>) -> Diagnostic {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    /// `file:line:column`, shortened when parts are unknown.
    pub fn location(&self) -> String {
        match (self.file.is_empty(), self.line) {
            (true, _) => String::new(),
            (false, 0) => self.file.clone(),
            (false, line) => format!("{}:{}:{}", self.file, line, self.column.max(1)),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loc = self.location();
        if loc.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{loc}: {}", self.message)
        }
    }
}

/// Every problem found in one load, sorted by file, line and column.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Sorts (file, line, column, message) and drops exact repeats.
    pub fn sorted(mut self) -> Diagnostics {
        self.0.sort_by(|a, b| {
            (&a.file, a.line, a.column, &a.message).cmp(&(&b.file, b.line, b.column, &b.message))
        });
        self.0.dedup_by(|a, b| {
            a.file == b.file && a.line == b.line && a.column == b.column && a.message == b.message
        });
        self
    }

    /// True when there is no problem.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Human-readable text: per problem a first line
    /// `error: <file>:<line>:<column>: <message>`, the source line with a caret,
    /// `field:` and `help:` lines, and a final `N errors` line. Colours only when
    /// `color` is true.
    pub fn render(&self, color: bool) -> String {
        let mut out = self.render_all(color, Level::Error);
        let n = self.0.len();
        let summary = format!("{n} {}", if n == 1 { "error" } else { "errors" });
        out.push_str(&Painter { color }.paint(ERROR, &summary));
        out.push('\n');
        out
    }

    /// The same form as [`Diagnostics::render`] for warnings: each first
    /// line starts `warning:`, and there is no summary line.
    pub fn render_warnings(&self, color: bool) -> String {
        self.render_all(color, Level::Warning)
    }

    fn render_all(&self, color: bool, level: Level) -> String {
        let mut out = String::new();
        for d in &self.0 {
            render_one(&mut out, d, Painter { color }, level);
            out.push('\n');
        }
        out
    }

    /// A JSON array of `{code, message, file, line, column, field, help}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.0
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "code": d.code,
                        "message": d.message,
                        "file": d.file,
                        "line": d.line,
                        "column": d.column,
                        "field": d.field,
                        "help": d.help,
                    })
                })
                .collect(),
        )
    }
}

impl From<Vec<Diagnostic>> for Diagnostics {
    fn from(v: Vec<Diagnostic>) -> Diagnostics {
        Diagnostics(v).sorted()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [] => f.write_str("no errors"),
            [one] => write!(f, "{one}"),
            [first, rest @ ..] => write!(f, "{first} (and {} more)", rest.len()),
        }
    }
}

impl std::error::Error for Diagnostics {}

const ERROR: Style = AnsiColor::Red.on_default().bold();
const WARNING: Style = AnsiColor::Yellow.on_default().bold();
const GUTTER: Style = AnsiColor::Blue.on_default().bold();
const BOLD: Style = Style::new().bold();
const HELP: Style = AnsiColor::Cyan.on_default().bold();

#[derive(Clone, Copy)]
struct Painter {
    color: bool,
}

impl Painter {
    fn paint(self, style: Style, text: &str) -> String {
        if self.color {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_string()
        }
    }
}

#[derive(Clone, Copy)]
enum Level {
    Error,
    Warning,
}

fn render_one(out: &mut String, d: &Diagnostic, paint: Painter, level: Level) {
    let (label, mark) = match level {
        Level::Error => ("error", ERROR),
        Level::Warning => ("warning", WARNING),
    };
    let head = d.to_string();
    out.push_str(&paint.paint(mark, label));
    out.push_str(&paint.paint(BOLD, &format!(": {head}")));
    out.push('\n');
    let line_no = d.line.to_string();
    let pad = " ".repeat(line_no.len());
    if let (Some(src), true) = (&d.source_line, d.line > 0) {
        out.push_str(&paint.paint(GUTTER, &format!("{line_no} | ")));
        out.push_str(src);
        out.push('\n');
        // Keep tabs so the caret lines up under the same column.
        let lead: String = src
            .chars()
            .take(d.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&paint.paint(GUTTER, &format!("{pad} | ")));
        out.push_str(&lead);
        out.push_str(&paint.paint(mark, "^"));
        out.push('\n');
    }
    if !d.field.is_empty() {
        out.push_str(&paint.paint(GUTTER, &format!("{pad} = ")));
        out.push_str(&format!("field: {}\n", d.field));
    }
    if let Some(help) = &d.help {
        out.push_str(&paint.paint(GUTTER, &format!("{pad} = ")));
        out.push_str(&paint.paint(HELP, "help"));
        out.push_str(&format!(": {help}\n"));
    }
}

/// The closest of `candidates` to `word`, when it is close enough to be a
/// plausible typo.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = word.to_ascii_lowercase();
    let mut best: Option<(usize, usize, f64, &str)> = None;
    for c in candidates {
        let cl = c.to_ascii_lowercase();
        let dist = strsim::osa_distance(&lower, &cl);
        let jw = strsim::jaro_winkler(&lower, &cl);
        let limit = (cl.chars().count().max(lower.chars().count()) / 3).max(1);
        if dist > limit && jw < 0.9 {
            continue;
        }
        // Ties go to the candidate sharing the longest prefix, then to the
        // most similar one (`rn` is more likely `run` than `on`).
        let prefix = lower
            .chars()
            .zip(cl.chars())
            .take_while(|(a, b)| a == b)
            .count();
        let better = match best {
            None => true,
            Some((d, p, j, _)) => {
                dist < d || (dist == d && (prefix > p || (prefix == p && jw > j)))
            }
        };
        if better {
            best = Some((dist, prefix, jw, c));
        }
    }
    best.map(|(_, _, _, c)| c.to_string())
}

/// The one message for a name the config lacks, as every command says it:
/// ``no counter `lod1` in the config; did you mean `load1`?``, else the
/// names there are (up to 10), else ``(it has no counters)``.
pub fn unknown_name<'a, I>(kind: &str, name: &str, known: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    let mut known: Vec<&str> = known.into_iter().collect();
    known.sort_unstable();
    let mut m = format!("no {kind} `{name}` in the config");
    if let Some(s) = did_you_mean(name, known.iter().copied()) {
        m.push_str(&format!("; did you mean `{s}`?"));
    } else if known.is_empty() {
        m.push_str(&format!(" (it has no {kind}s)"));
    } else {
        let more = if known.len() > 10 { ", ..." } else { "" };
        m.push_str(&format!("; {kind}s: {}{more}", backticked(known.iter().take(10).copied())));
    }
    m
}

/// `, did you mean `x`?` or nothing.
pub fn suggestion_suffix(suggestion: Option<&str>) -> String {
    suggestion
        .map(|s| format!(", did you mean `{s}`?"))
        .unwrap_or_default()
}

/// `` `a`, `b`, `c` ``
pub fn backticked<'a, I: IntoIterator<Item = &'a str>>(items: I) -> String {
    items
        .into_iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_suggest_or_list() {
        assert_eq!(unknown_name("counter", "lod1", ["load1", "mem"]), "no counter `lod1` in the config; did you mean `load1`?");
        assert_eq!(unknown_name("target", "zzz", ["web", "db"]), "no target `zzz` in the config; targets: `db`, `web`");
        assert_eq!(unknown_name("group", "web", []), "no group `web` in the config (it has no groups)");
    }

    fn sample() -> Diagnostics {
        Diagnostics::from(vec![
            Diagnostic::new("unknown-field", "unknown field `mn`, did you mean `min`?")
                .at("groups/web.yaml", 12, 3)
                .field("scale_in.mn"),
            Diagnostic {
                source_line: Some("  mn: 2".into()),
                ..Diagnostic::new("type", "expected integer, found string \"abc\"")
                    .at("a.yaml", 4, 8)
                    .field("max")
                    .help("write a number")
            },
        ])
    }

    #[test]
    fn renders_sorted_with_caret() {
        let text = sample().render(false);
        assert_eq!(
            text,
            "error: a.yaml:4:8: expected integer, found string \"abc\"\n\
             4 |   mn: 2\n\
             \x20 |        ^\n\
             \x20 = field: max\n\
             \x20 = help: write a number\n\
             \n\
             error: groups/web.yaml:12:3: unknown field `mn`, did you mean `min`?\n\
             \x20  = field: scale_in.mn\n\
             \n\
             2 errors\n"
        );
        assert!(sample().render(true).contains("\u{1b}["));
        assert!(!text.contains("\u{1b}["));
    }

    #[test]
    fn warnings_render_like_errors_without_a_summary() {
        let w = Diagnostics::from(vec![Diagnostic {
            source_line: Some("  auto_apply: true".into()),
            ..Diagnostic::new("ignored", "`daemon.auto_apply` is ignored by this build").at("scaler.yaml", 4, 3).field("daemon.auto_apply")
        }]);
        assert_eq!(
            w.render_warnings(false),
            "warning: scaler.yaml:4:3: `daemon.auto_apply` is ignored by this build\n\
             4 |   auto_apply: true\n\
             \x20 |   ^\n\
             \x20 = field: daemon.auto_apply\n\
             \n"
        );
        assert!(w.render_warnings(true).contains("\u{1b}[33m"), "{:?}", w.render_warnings(true));
    }

    #[test]
    fn json_form() {
        let j = sample().to_json();
        assert_eq!(j[0]["file"], "a.yaml");
        assert_eq!(j[1]["field"], "scale_in.mn");
        assert_eq!(j[1]["help"], serde_json::Value::Null);
        assert!(j[0].get("source_line").is_none());
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("mn", ["min", "max", "desired"]).as_deref(),
            Some("min")
        );
        assert_eq!(
            did_you_mean("cpuu", ["cpu", "load1"]).as_deref(),
            Some("cpu")
        );
        assert_eq!(did_you_mean("zzzzz", ["cpu", "load1"]), None);
    }
}
