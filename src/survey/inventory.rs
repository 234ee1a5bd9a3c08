//! The inventory: one host per line (`host`, `host:port` or a full `http://`
//! URL), blank lines, surrounding whitespace and `#` comments ignored. A
//! line that repeats an earlier one is merged with it ([`merge_repeats`]).
//!
//! Pure: parses text into [`Target`]s. Reading the file is the caller's job.

use std::fmt;
use std::str::FromStr;

use http::uri::{Authority, PathAndQuery, Uri};

/// How a bare `host` or `host:port` line becomes a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlDefaults {
    /// The scheme (only `http` is supported).
    pub scheme: String,
    /// Path and query, starting with `/` (default `/status`).
    pub path: String,
}

impl Default for UrlDefaults {
    fn default() -> UrlDefaults {
        UrlDefaults { scheme: "http".to_string(), path: "/status".to_string() }
    }
}

/// One URL to query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Position among the targets (0-based), the order of the inventory.
    pub index: usize,
    /// Line number in the inventory (1-based).
    pub line: usize,
    /// The full URL, as reported.
    pub url: String,
    /// Host name or IP address, without IPv6 brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The `Host` header value (`host` or `host:port` as written).
    pub authority: String,
    /// Path and query sent in the request line.
    pub path: String,
    /// The line's entry as written (comment and surrounding whitespace removed).
    pub entry: String,
}

impl Target {
    /// The connection key: targets with the same key share a keep-alive connection.
    pub fn host_key(&self) -> (String, u16) {
        (self.host.to_ascii_lowercase(), self.port)
    }

    /// `host:port` (`[::1]:81` for an IPv6 address).
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// An inventory line that repeats an earlier one: it is queried once, as the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeat {
    /// The repeating line (1-based).
    pub line: usize,
    /// The first line with the same entry.
    pub first: usize,
    /// The host, as `host:port`.
    pub host_port: String,
}

impl fmt::Display for Repeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "inventory line {} repeats line {} ({}): merged", self.line, self.first, self.host_port)
    }
}

/// Drops every target whose entry is the same text as an earlier one's
/// and renumbers the rest (`index` stays the position among the targets).
/// Lines that spell one URL differently (`web` and `http://web/status`) are
/// not repeats: each is queried, as written.
pub fn merge_repeats(targets: Vec<Target>) -> (Vec<Target>, Vec<Repeat>) {
    let mut first: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut kept = Vec::with_capacity(targets.len());
    let mut repeats = Vec::new();
    for mut t in targets {
        match first.get(&t.entry) {
            Some(&line) => repeats.push(Repeat { line: t.line, first: line, host_port: t.host_port() }),
            None => {
                first.insert(t.entry.clone(), t.line);
                t.index = kept.len();
                kept.push(t);
            }
        }
    }
    (kept, repeats)
}

/// A line that is not a host, `host:port` or URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// Line number (1-based).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Checks a `--path` value: it must start with `/` and be a valid path and query.
pub fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("path `{path}` must start with `/`"));
    }
    PathAndQuery::from_str(path).map(|_| ()).map_err(|e| format!("invalid path `{path}`: {e}"))
}

/// Parses inventory text. Every bad line is reported, in order.
pub fn parse(text: &str, defaults: &UrlDefaults) -> Result<Vec<Target>, Vec<LineError>> {
    let mut targets = Vec::new();
    let mut errors = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let entry = strip_comment(raw).trim();
        if entry.is_empty() {
            continue;
        }
        match parse_entry(entry, defaults) {
            Ok(mut t) => {
                t.index = targets.len();
                t.line = n + 1;
                t.entry = entry.to_string();
                targets.push(t);
            }
            Err(message) => errors.push(LineError { line: n + 1, message }),
        }
    }
    if errors.is_empty() {
        Ok(targets)
    } else {
        Err(errors)
    }
}

/// Cuts a `#` comment: at the start of the line or after whitespace (so a
/// `#` inside a URL token stays part of it and is then rejected).
fn strip_comment(line: &str) -> &str {
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_space {
            return &line[..i];
        }
        prev_space = c.is_whitespace();
    }
    line
}

fn parse_entry(entry: &str, defaults: &UrlDefaults) -> Result<Target, String> {
    if entry.split_whitespace().nth(1).is_some() {
        return Err(format!("expected one host per line, got `{entry}`"));
    }
    if entry.contains("://") {
        let uri = Uri::from_str(entry).map_err(|e| format!("invalid URL `{entry}`: {e}"))?;
        let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
        check_scheme(&scheme, entry)?;
        let authority = uri.authority().ok_or_else(|| format!("URL `{entry}` has no host"))?;
        let path = uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let path = if path.is_empty() { "/" } else { path };
        target(authority, &scheme, path)
    } else {
        check_scheme(&defaults.scheme, entry)?;
        let authority = Authority::from_str(entry).map_err(|e| format!("invalid host `{entry}`: {e}"))?;
        target(&authority, &defaults.scheme, &defaults.path)
    }
}

fn check_scheme(scheme: &str, entry: &str) -> Result<(), String> {
    match scheme {
        "http" => Ok(()),
        "https" => Err(format!("`{entry}`: https is not supported; use http")),
        other => Err(format!("`{entry}`: unsupported scheme `{other}`; use http")),
    }
}

fn target(authority: &Authority, scheme: &str, path: &str) -> Result<Target, String> {
    let text = authority.as_str();
    if text.contains('@') {
        return Err(format!("`{text}`: user info in a host is not supported"));
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("`{text}` has no host"));
    }
    let port = match authority.port() {
        Some(p) => p.as_u16(),
        None if text.rsplit(']').next().is_some_and(|rest| rest.contains(':')) => {
            return Err(format!("`{text}` has an invalid port"))
        }
        None => 80,
    };
    Ok(Target {
        index: 0,
        line: 0,
        url: format!("{scheme}://{text}{path}"),
        host: host.to_string(),
        port,
        authority: text.to_string(),
        path: path.to_string(),
        entry: String::new(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn urls(text: &str) -> Vec<String> {
        parse(text, &UrlDefaults::default()).unwrap().into_iter().map(|t| t.url).collect()
    }

    #[test]
    fn hosts_ports_urls_comments_and_blanks() {
        let text = "# fleet\n\n  web1  \nweb2:8080 # trailing comment\nhttp://10.0.0.3:9000/health?x=1\n\t\n[::1]:81\nhttp://api\n";
        assert_eq!(
            urls(text),
            vec![
                "http://web1/status",
                "http://web2:8080/status",
                "http://10.0.0.3:9000/health?x=1",
                "http://[::1]:81/status",
                "http://api/",
            ]
        );
    }

    #[test]
    fn targets_carry_host_port_line_and_index() {
        let t = parse("\n# c\nweb1\n[::1]:81\n", &UrlDefaults::default()).unwrap();
        assert_eq!((t[0].index, t[0].line, t[0].host.as_str(), t[0].port, t[0].path.as_str()), (0, 3, "web1", 80, "/status"));
        assert_eq!((t[1].index, t[1].line, t[1].host.as_str(), t[1].port, t[1].authority.as_str()), (1, 4, "::1", 81, "[::1]:81"));
    }

    #[test]
    fn path_and_scheme_apply_to_bare_hosts_only() {
        let d = UrlDefaults { scheme: "http".into(), path: "/healthz".into() };
        let t = parse("a:1\nhttp://b:2/status\n", &d).unwrap();
        assert_eq!(t[0].url, "http://a:1/healthz");
        assert_eq!(t[1].url, "http://b:2/status");
    }

    #[test]
    fn bad_lines_are_all_reported() {
        let errs = parse("ok\nhttps://secure/status\ntwo words\nhost:notaport\nftp://x/\nh:\n", &UrlDefaults::default()).unwrap_err();
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6]);
        assert!(errs[0].message.contains("https is not supported"), "{}", errs[0]);
        assert!(errs[1].message.contains("one host per line"), "{}", errs[1]);
    }

    #[test]
    fn empty_and_comment_only_text_gives_no_targets() {
        assert!(urls("").is_empty());
        assert!(urls("# nothing\n   \n#x\n").is_empty());
    }

    #[test]
    fn same_host_shares_a_key() {
        let t = parse("WEB:80/\nhttp://web:80/a\nhttp://web/b\nweb:81\n".replace("WEB:80/", "WEB:80").as_str(), &UrlDefaults::default()).unwrap();
        assert_eq!(t[0].host_key(), t[1].host_key());
        assert_eq!(t[1].host_key(), t[2].host_key());
        assert_ne!(t[2].host_key(), t[3].host_key());
    }

    #[test]
    fn repeated_lines_are_merged_into_the_first() {
        let text = "web:81\nhttp://web:81/status\n  web:81   # again\n[::1]:82\nweb:81\n[::1]:82\nother\n";
        let (targets, repeats) = merge_repeats(parse(text, &UrlDefaults::default()).unwrap());
        let kept: Vec<(usize, usize, &str)> = targets.iter().map(|t| (t.index, t.line, t.entry.as_str())).collect();
        assert_eq!(kept, [(0, 1, "web:81"), (1, 2, "http://web:81/status"), (2, 4, "[::1]:82"), (3, 7, "other")]);
        let lines: Vec<String> = repeats.iter().map(Repeat::to_string).collect();
        assert_eq!(
            lines,
            [
                "inventory line 3 repeats line 1 (web:81): merged",
                "inventory line 5 repeats line 1 (web:81): merged",
                "inventory line 6 repeats line 4 ([::1]:82): merged",
            ]
        );
    }

    #[test]
    fn path_check() {
        assert!(check_path("/status").is_ok());
        assert!(check_path("/a?b=c").is_ok());
        assert!(check_path("status").is_err());
    }
}
