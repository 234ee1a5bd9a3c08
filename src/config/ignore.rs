//! `.scalerignore`: gitignore-like patterns that keep paths out of the config.
//!
//! Supported: blank lines and `#` comments, `*`, `?`, `[...]`, `**` (any
//! number of directories), a trailing `/` (directories only), a leading or
//! inner `/` (anchored at the root, otherwise the pattern matches a name at
//! any depth), and `!` to re-include. The last matching line wins. An ignored
//! directory hides everything below it.
//!
//! Owns: [`Ignore`]. Must not depend on: IO (the caller reads the file).

use regex::Regex;

/// The parsed patterns of one `.scalerignore`.
#[derive(Debug, Default)]
pub struct Ignore {
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct Rule {
    regex: Regex,
    negate: bool,
    dir_only: bool,
}

impl Ignore {
    /// Parses the file's text. Lines that are not valid patterns are skipped.
    pub fn parse(text: &str) -> Ignore {
        let rules = text
            .lines()
            .filter_map(|line| {
                let line = line.trim_end();
                if line.is_empty() || line.starts_with('#') {
                    return None;
                }
                let (negate, pat) = match line.strip_prefix('!') {
                    Some(rest) => (true, rest),
                    None => (false, line.strip_prefix('\\').unwrap_or(line)),
                };
                let (dir_only, pat) = match pat.strip_suffix('/') {
                    Some(rest) => (true, rest),
                    None => (false, pat),
                };
                if pat.is_empty() {
                    return None;
                }
                let anchored = pat.contains('/');
                let pat = pat.strip_prefix('/').unwrap_or(pat);
                let body = glob_to_regex(pat);
                let full = if anchored {
                    format!("^{body}$")
                } else {
                    format!("^(?:.*/)?{body}$")
                };
                Regex::new(&full).ok().map(|regex| Rule {
                    regex,
                    negate,
                    dir_only,
                })
            })
            .collect();
        Ignore { rules }
    }

    /// True when `path` (relative to the root, `/`-separated) is ignored.
    pub fn is_ignored(&self, path: &str, is_dir: bool) -> bool {
        let mut ignored = false;
        for r in &self.rules {
            if r.dir_only && !is_dir {
                continue;
            }
            if r.regex.is_match(path) {
                ignored = !r.negate;
            }
        }
        ignored
    }
}

fn glob_to_regex(pat: &str) -> String {
    let chars: Vec<char> = pat.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                let at_start = i == 0 || chars[i - 1] == '/';
                let slash_after = chars.get(i + 2) == Some(&'/');
                if at_start && slash_after {
                    out.push_str("(?:.*/)?");
                    i += 3;
                } else {
                    out.push_str(".*");
                    i += 2;
                }
                continue;
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '[' => {
                if let Some(end) = chars[i + 1..].iter().position(|c| *c == ']') {
                    let class: String = chars[i + 1..i + 1 + end].iter().collect();
                    let class = match class.strip_prefix('!') {
                        Some(rest) => format!("^{rest}"),
                        None => class,
                    };
                    out.push('[');
                    out.push_str(&class.replace('\\', "\\\\"));
                    out.push(']');
                    i += end + 2;
                    continue;
                }
                out.push_str("\\[");
            }
            other => out.push_str(&regex::escape(&other.to_string())),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitignore_like() {
        let ig = Ignore::parse(
            "# comment\n\n*.tmp.yaml\ndrafts/\n/top.yaml\nexamples/**/old-*.yml\n**/generated/**\nkeep*\n!keep-me.yaml\n",
        );
        assert!(ig.is_ignored("a.tmp.yaml", false));
        assert!(ig.is_ignored("x/y/a.tmp.yaml", false));
        assert!(ig.is_ignored("drafts", true));
        assert!(ig.is_ignored("x/drafts", true));
        assert!(!ig.is_ignored("drafts", false));
        assert!(ig.is_ignored("top.yaml", false));
        assert!(!ig.is_ignored("sub/top.yaml", false));
        assert!(ig.is_ignored("examples/old-a.yml", false));
        assert!(ig.is_ignored("examples/x/y/old-a.yml", false));
        assert!(!ig.is_ignored("examples/new-a.yml", false));
        assert!(ig.is_ignored("a/generated/b.yaml", false));
        assert!(ig.is_ignored("keep-it.yaml", false));
        assert!(!ig.is_ignored("keep-me.yaml", false));
        assert!(!ig.is_ignored("groups.yaml", false));
    }

    #[test]
    fn classes_and_single_chars() {
        let ig = Ignore::parse("t[0-9].yaml\nv?.yaml\nn[!a].yaml\n");
        assert!(ig.is_ignored("t1.yaml", false));
        assert!(!ig.is_ignored("tx.yaml", false));
        assert!(ig.is_ignored("v1.yaml", false));
        assert!(!ig.is_ignored("v10.yaml", false));
        assert!(ig.is_ignored("nb.yaml", false));
        assert!(!ig.is_ignored("na.yaml", false));
    }
}
