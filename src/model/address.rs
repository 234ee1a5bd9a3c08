//! `host[:port]` as written in a Target's `hosts` or recorded for a node:
//! the one parser (config validation, exec, collection and the rules'
//! host sets all use it; `fleet` re-exports it).

use std::fmt;

/// A host and, when given, its port: `web1`, `10.0.0.5:8080`, `[::1]:161`,
/// or a bare IPv6 address (`::1`, no port).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// The name or address, without brackets.
    pub host: String,
    /// The port, when the text gives one (never 0).
    pub port: Option<u16>,
}

impl HostPort {
    /// Parses `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6
    /// address (several `:` and no brackets: no port). An empty host, a
    /// space, a missing `]` or a port that is not 1-65535 is an error.
    pub fn parse(text: &str) -> Result<HostPort, String> {
        if text.is_empty() {
            return Err("empty host".into());
        }
        if text.chars().any(char::is_whitespace) {
            return Err(format!("`{text}` is not a host: it has a space"));
        }
        let port = |p: &str| -> Result<u16, String> {
            if p.is_empty() {
                return Err(format!("`{text}`: no port after `:`"));
            }
            match p.parse::<u16>() {
                Ok(0) | Err(_) => Err(format!("`{text}`: `{p}` is not a port number (1-65535)")),
                Ok(n) => Ok(n),
            }
        };
        if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| format!("`{text}`: missing `]`"))?;
            if host.is_empty() {
                return Err(format!("`{text}`: no address between `[` and `]`"));
            }
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(p) => Some(port(p)?),
                    None => return Err(format!("`{text}`: expected `:PORT` after `]`")),
                },
            };
            return Ok(HostPort { host: host.to_string(), port });
        }
        match text.rsplit_once(':') {
            Some(("", _)) => Err(format!("`{text}`: no host before `:`")),
            Some((host, p)) if !host.contains(':') => Ok(HostPort { host: host.to_string(), port: Some(port(p)?) }),
            _ => Ok(HostPort { host: text.to_string(), port: None }),
        }
    }
}

impl fmt::Display for HostPort {
    /// `host`, `host:port`, `[v6]:port`; a bare IPv6 address without a port.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.port, self.host.contains(':')) {
            (None, _) => f.write_str(&self.host),
            (Some(p), true) => write!(f, "[{}]:{p}", self.host),
            (Some(p), false) => write!(f, "{}:{p}", self.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> (String, Option<u16>) {
        let h = HostPort::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        (h.host, h.port)
    }

    fn err(text: &str) -> String {
        match HostPort::parse(text) {
            Ok(h) => panic!("`{text}` parsed as {h:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn forms() {
        assert_eq!(ok("a.example"), ("a.example".into(), None));
        assert_eq!(ok("web1"), ("web1".into(), None));
        assert_eq!(ok("127.0.0.1:2222"), ("127.0.0.1".into(), Some(2222)));
        assert_eq!(ok("127.0.0.1:8080"), ("127.0.0.1".into(), Some(8080)));
        assert_eq!(ok("[::1]:161"), ("::1".into(), Some(161)));
        assert_eq!(ok("[::1]:22"), ("::1".into(), Some(22)));
        assert_eq!(ok("[::1]"), ("::1".into(), None));
        assert_eq!(ok("::1"), ("::1".into(), None));
        assert_eq!(ok("fe80::1:8080"), ("fe80::1:8080".into(), None), "a bare IPv6 address has no port");
        assert_eq!(ok("h:65535"), ("h".into(), Some(65535)));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(err("h:x"), "`h:x`: `x` is not a port number (1-65535)");
        assert_eq!(err("h:0"), "`h:0`: `0` is not a port number (1-65535)");
        assert_eq!(err("h:65536"), "`h:65536`: `65536` is not a port number (1-65535)");
        assert_eq!(err("h:"), "`h:`: no port after `:`");
        assert_eq!(err(":80"), "`:80`: no host before `:`");
        assert_eq!(err("[::1"), "`[::1`: missing `]`");
        assert_eq!(err("[]:80"), "`[]:80`: no address between `[` and `]`");
        assert_eq!(err("[::1]80"), "`[::1]80`: expected `:PORT` after `]`");
        assert_eq!(err("[::1]:x"), "`[::1]:x`: `x` is not a port number (1-65535)");
        assert_eq!(err("a b"), "`a b` is not a host: it has a space");
        assert_eq!(err(""), "empty host");
    }

    #[test]
    fn display_round_trips() {
        for text in ["web1", "10.0.0.5:8080", "[::1]:161", "::1"] {
            assert_eq!(HostPort::parse(text).map(|h| h.to_string()).as_deref(), Ok(text));
        }
    }
}
