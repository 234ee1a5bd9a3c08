//! The compact series notation of rule tests: `"1x10 5+1x3 _x2 err"`, and
//! series names `cpu{host="web-01",disk="sda"}`.
//!
//! Owns: [`parse_series`], [`Item`], [`parse_name`], [`SeriesName`].
//! Must not depend on: the config, the store, IO.

use std::collections::BTreeMap;

/// One step of a series: a sample, no sample, or a failed collection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Item {
    /// A sample with this value.
    Value(f64),
    /// No sample at this step (`_`).
    Skip,
    /// A failed collection at this step (`err`).
    Error,
}

/// The most items one series may expand to (a typo like `1x1000000000`
/// must not eat the memory).
pub const MAX_ITEMS: usize = 1_000_000;

/// Expands a series: whitespace-separated items, each `V` (one sample),
/// `VxN` (N samples of V), `A+BxN` / `A-BxN` (N samples from A, stepping by
/// B), `_` / `_xN` (no sample), `err` / `errxN` (failed collections).
pub fn parse_series(text: &str) -> Result<Vec<Item>, String> {
    let mut out = Vec::new();
    for word in text.split_whitespace() {
        let items = parse_word(word).map_err(|e| format!("`{word}`: {e}"))?;
        out.extend(items);
        if out.len() > MAX_ITEMS {
            return Err(format!("more than {MAX_ITEMS} samples"));
        }
    }
    if out.is_empty() {
        return Err("empty series: give at least one item (`1`, `1x10`, `_`, `err`)".into());
    }
    Ok(out)
}

fn parse_word(word: &str) -> Result<Vec<Item>, String> {
    let (head, count) = match word.rsplit_once('x') {
        Some((head, n)) => {
            let n: usize = n
                .parse()
                .map_err(|_| format!("expected a count after `x`, found `{n}`"))?;
            if n == 0 {
                return Err("a count of 0 gives no sample; leave the item out".into());
            }
            if n > MAX_ITEMS {
                return Err(format!("count {n} is above {MAX_ITEMS}"));
            }
            (head, Some(n))
        }
        None => (word, None),
    };
    let n = count.unwrap_or(1);
    match head {
        "_" => return Ok(vec![Item::Skip; n]),
        "err" => return Ok(vec![Item::Error; n]),
        "" => return Err("expected a value before `x`".into()),
        _ => {}
    }
    if let Some((start, step)) = split_ramp(head) {
        if count.is_none() {
            return Err("a ramp needs a count: `A+BxN`".into());
        }
        let a = number(start)?;
        let b = number(step)?;
        return Ok((0..n).map(|i| Item::Value(a + b * i as f64)).collect());
    }
    let v = number(head)?;
    Ok(vec![Item::Value(v); n])
}

/// Splits `A+B` / `A-B` (the sign belongs to B); `None` for a plain number.
fn split_ramp(head: &str) -> Option<(&str, &str)> {
    let b = head.as_bytes();
    // Skip a leading sign of A, and signs of an exponent (`1e-3`).
    (1..b.len())
        .find(|&i| (b[i] == b'+' || b[i] == b'-') && !matches!(b[i - 1], b'e' | b'E'))
        .map(|i| (&head[..i], &head[i..]))
}

fn number(text: &str) -> Result<f64, String> {
    let t = text.strip_prefix('+').unwrap_or(text);
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("`{text}` is not a number (items: `V`, `VxN`, `A+BxN`, `A-BxN`, `_`, `_xN`, `err`, `errxN`)")),
    }
}

/// A series name: the counter, its host and other labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesName {
    /// The counter.
    pub counter: String,
    /// The `host` label (default `local`).
    pub host: String,
    /// Other labels.
    pub labels: BTreeMap<String, String>,
}

/// Parses `counter` or `counter{host="h",k="v"}`; the host defaults to
/// `default_host`.
pub fn parse_name(text: &str, default_host: &str) -> Result<SeriesName, String> {
    let text = text.trim();
    let (counter, rest) = match text.find('{') {
        Some(i) => (text[..i].trim(), Some(&text[i..])),
        None => (text, None),
    };
    if counter.is_empty() {
        return Err("expected a counter name before `{`".into());
    }
    if counter.chars().any(|c| c.is_whitespace() || "}\"=,".contains(c)) {
        return Err(format!("`{counter}` is not a counter name"));
    }
    let mut labels = BTreeMap::new();
    if let Some(rest) = rest {
        let inner = rest
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .ok_or_else(|| "labels must end with `}`".to_string())?;
        for (k, v) in parse_labels(inner)? {
            if labels.insert(k.clone(), v).is_some() {
                return Err(format!("label `{k}` given twice"));
            }
        }
    }
    let host = labels.remove("host").unwrap_or_else(|| default_host.to_string());
    Ok(SeriesName { counter: counter.to_string(), host, labels })
}

/// `k="v", k2="v2"` (values double-quoted, `\"` and `\\` escapes).
fn parse_labels(inner: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.peek().copied() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || key.is_empty() {
            return Err(format!("expected `name=\"value\"` in the labels, found `{key}`"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('"') {
            return Err(format!("the value of label `{key}` must be in double quotes"));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some(c) => value.push(c),
                    None => return Err(format!("unterminated value of label `{key}`")),
                },
                Some('"') => break,
                Some(c) => value.push(c),
                None => return Err(format!("unterminated value of label `{key}`")),
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Item::{Error as E, Skip as S, Value as V};

    #[test]
    fn expands_every_item_kind() {
        assert_eq!(parse_series("1x3").unwrap(), vec![V(1.0); 3], "our `1x3` is 3 samples (promtool's is 4)");
        assert_eq!(parse_series("7").unwrap(), vec![V(7.0)]);
        assert_eq!(parse_series("80+5x4").unwrap(), vec![V(80.0), V(85.0), V(90.0), V(95.0)]);
        assert_eq!(parse_series("10-2.5x3").unwrap(), vec![V(10.0), V(7.5), V(5.0)]);
        assert_eq!(parse_series("-1-1x2 -3").unwrap(), vec![V(-1.0), V(-2.0), V(-3.0)]);
        assert_eq!(parse_series("1e-3 2e+1x2").unwrap(), vec![V(0.001), V(20.0), V(20.0)]);
        assert_eq!(parse_series("_x2 err _ errx2 1.5").unwrap(), vec![S, S, E, S, E, E, V(1.5)]);
        assert_eq!(parse_series(" 90x2\n70 ").unwrap(), vec![V(90.0), V(90.0), V(70.0)]);
    }

    #[test]
    fn rejects_bad_items_by_name() {
        for (bad, msg) in [
            ("1 9y", "`9y`: `9y` is not a number"),
            ("1x", "`1x`: expected a count after `x`, found ``"),
            ("1x0", "a count of 0"),
            ("x3", "expected a value before `x`"),
            ("5+1", "a ramp needs a count"),
            ("", "empty series"),
            ("nan", "not a number"),
            ("1x2000000", "above"),
        ] {
            let e = parse_series(bad).err().unwrap_or_default();
            assert!(e.contains(msg), "{bad:?}: {e}");
        }
    }

    #[test]
    fn parses_series_names() {
        let n = parse_name("load1", "local").unwrap();
        assert_eq!((n.counter.as_str(), n.host.as_str(), n.labels.len()), ("load1", "local", 0));
        let n = parse_name(r#"cpu{host="web-01", disk="s\"a"}"#, "local").unwrap();
        assert_eq!((n.counter.as_str(), n.host.as_str()), ("cpu", "web-01"));
        assert_eq!(n.labels.get("disk").map(String::as_str), Some("s\"a"));
        assert_eq!(parse_name("web-ok{}", "local").unwrap().counter, "web-ok");
        for (bad, msg) in [
            ("{host=\"a\"}", "expected a counter name"),
            ("cpu{host=a}", "double quotes"),
            ("cpu{host=\"a\"", "must end with"),
            ("cpu{host=\"a\",host=\"b\"}", "given twice"),
            ("cpu{host=\"a}", "unterminated"),
        ] {
            let e = parse_name(bad, "local").err().unwrap_or_default();
            assert!(e.contains(msg), "{bad}: {e}");
        }
    }
}
