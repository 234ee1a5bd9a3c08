//! The scanner behind `architecture`: which top-level modules each module of a
//! source tree uses, checked against an allow-list. It reads a tree on disk
//! (`<root>/src/lib.rs` and the module files it declares, plus `src/main.rs`),
//! so it runs on the real crate and on invented trees in temp dirs alike.
//!
//! A use is any path that reaches another top-level module: `crate::x::..`,
//! `super::super::x` (resolved from the file's own module path), the items of
//! `use crate::{x, y::Z}` groups, and fully qualified paths in code
//! (`crate::store::Sample::new`). In `main.rs` the library is `<package>::x`.
//! Comments, string and char literals, and `#[cfg(test)]` items (with the
//! files of a `#[cfg(test)] mod x;`) are not code and are skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What one top-level module may use: the other modules of the crate, and
/// extra things it must not name (`tokio`, `std::fs`, `println!`, a type).
#[derive(Clone, Copy)]
pub struct Rule {
    pub module: &'static str,
    pub may_use: &'static [&'static str],
    /// Lists of things the module must not name. A path (`std::fs`,
    /// `crate::store::sqlite`) matches every path it begins, through `use`
    /// groups (`use std::{fs, io}`) too; anything else matches the code text
    /// where no identifier character comes right before it.
    pub forbid: &'static [&'static [&'static str]],
    /// `(file, thing)`: `thing` of `forbid` is allowed in the files whose
    /// path ends with `file`.
    pub except: &'static [(&'static str, &'static str)],
}

pub const fn rule(module: &'static str, may_use: &'static [&'static str]) -> Rule {
    Rule { module, may_use, forbid: &[], except: &[] }
}

impl Rule {
    pub const fn forbid(self, forbid: &'static [&'static [&'static str]]) -> Rule {
        Rule { forbid, ..self }
    }

    pub const fn except(self, except: &'static [(&'static str, &'static str)]) -> Rule {
        Rule { except, ..self }
    }
}

/// Every broken rule of the tree at `root`, one line each, in file order.
pub fn check(root: &Path, rules: &[Rule]) -> Vec<String> {
    let src = root.join("src");
    let lib = match std::fs::read_to_string(src.join("lib.rs")) {
        Ok(text) => text,
        Err(e) => return vec![format!("{}: {e}", src.join("lib.rs").display())],
    };
    let mut modules = declared_modules(&lib);
    let main = src.join("main.rs");
    if main.is_file() {
        modules.push("main".to_string());
    }
    let mut bad = Vec::new();
    for r in rules {
        if !modules.iter().any(|m| m == r.module) {
            bad.push(format!("allow-list names module `{}`, which src/lib.rs does not declare", r.module));
        }
        for u in r.may_use.iter().filter(|u| !modules.iter().any(|m| m == *u)) {
            bad.push(format!("allow-list of `{}` names module `{u}`, which src/lib.rs does not declare", r.module));
        }
    }
    let package = package_name(root);
    for module in &modules {
        let Some(r) = rules.iter().find(|r| r.module == module) else {
            bad.push(format!("module `{module}` is not in the allow-list"));
            continue;
        };
        let files = if module == "main" { vec![main.clone()] } else { module_files(&src, module) };
        let mut scanned: Vec<(PathBuf, Scanned)> = Vec::new();
        for f in files {
            match std::fs::read_to_string(&f) {
                Ok(text) => scanned.push((f, scan(&text))),
                Err(e) => bad.push(format!("{}: {e}", f.display())),
            }
        }
        let test_only: Vec<PathBuf> = scanned.iter().flat_map(|(f, s)| s.test_mods.iter().map(|m| child_dir(f).join(m))).collect();
        for (f, s) in &scanned {
            if s.test_file || test_only.iter().any(|t| f.starts_with(t) || *f == t.with_extension("rs")) {
                continue;
            }
            let rel = f.strip_prefix(root).unwrap_or(f).display().to_string();
            let root_alias = if module == "main" { package.as_deref() } else { Some("crate") };
            let modpath = if module == "main" { Vec::new() } else { module_path(&src, f) };
            bad.extend(violations(&rel, s, r, &modules, &modpath, root_alias));
        }
    }
    bad
}

/// `mod x;` declarations at the top of a crate root (not `#[cfg(test)]` ones).
fn declared_modules(lib: &str) -> Vec<String> {
    let s = scan(lib);
    let t = &s.toks;
    let mut depth = 0usize;
    let mut out = Vec::new();
    for (i, tok) in t.iter().enumerate() {
        match tok.s.as_str() {
            "{" => depth += 1,
            "}" => depth = depth.saturating_sub(1),
            "mod" if depth == 0 && t.get(i + 2).is_some_and(|x| x.is(";")) => {
                if let Some(name) = t.get(i + 1).filter(|x| x.is_ident()) {
                    out.push(name.s.to_string());
                }
            }
            _ => {}
        }
    }
    out
}

/// The `[package]` name of `Cargo.toml`, as a path (`my-app` -> `my_app`).
fn package_name(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join("Cargo.toml")).ok()?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if let Some(v) = line.strip_prefix("name").map(str::trim_start).and_then(|l| l.strip_prefix('=')).filter(|_| in_package) {
            return Some(v.trim().trim_matches('"').replace('-', "_"));
        }
    }
    None
}

/// `src/x.rs` and every `.rs` file under `src/x/`, sorted.
fn module_files(src: &Path, module: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let file = src.join(format!("{module}.rs"));
    if file.is_file() {
        out.push(file);
    }
    walk(&src.join(module), &mut out);
    out.sort();
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for p in entries.flatten().map(|e| e.path()) {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Where the files of the modules a file declares live.
fn child_dir(f: &Path) -> PathBuf {
    let parent = f.parent().unwrap_or(Path::new(""));
    match f.file_stem().and_then(|s| s.to_str()) {
        Some("mod" | "lib" | "main") | None => parent.to_path_buf(),
        Some(stem) => parent.join(stem),
    }
}

/// `src/config/schema.rs` -> `[config, schema]`, `src/config/mod.rs` -> `[config]`.
fn module_path(src: &Path, f: &Path) -> Vec<String> {
    let rel = f.strip_prefix(src).unwrap_or(f).with_extension("");
    let mut path: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    if path.last().is_some_and(|l| l == "mod") {
        path.pop();
    }
    path
}

fn violations(rel: &str, s: &Scanned, r: &Rule, modules: &[String], file_mod: &[String], root_alias: Option<&str>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut bad = Vec::new();
    let allowed = if r.may_use.is_empty() { "none".to_string() } else { r.may_use.join(", ") };
    let excepted = |needle: &str| r.except.iter().any(|(file, n)| *n == needle && rel.ends_with(file));
    let forbid: Vec<&str> = r.forbid.iter().flat_map(|list| list.iter().copied()).filter(|n| !excepted(n)).collect();
    for (inline, path) in &s.paths {
        let modpath: Vec<&str> = file_mod.iter().chain(inline).map(String::as_str).collect();
        let Some(abs) = absolute(path, &modpath, root_alias) else { continue };
        if let (Some(("crate", _)), Some((used, at))) = (abs.first().map(|(s, a)| (s.as_str(), a)), abs.get(1)) {
            let line = s.line(*at);
            let other = used != r.module && modules.contains(used);
            if other && !r.may_use.contains(&used.as_str()) && seen.insert((line, used.clone())) {
                bad.push((line, format!("{rel}:{line}: module `{}` may not use `{used}` (allowed: {allowed})", r.module)));
            }
        }
        for needle in &forbid {
            let segs: Vec<&str> = needle.split("::").collect();
            if segs.len() > 1 && abs.len() >= segs.len() && abs.iter().zip(&segs).all(|((a, _), b)| a == b) {
                let line = s.line(abs[segs.len() - 1].1);
                if seen.insert((line, needle.to_string())) {
                    bad.push((line, format!("{rel}:{line}: module `{}` must not use `{needle}`", r.module)));
                }
            }
        }
    }
    for needle in &forbid {
        for (n, text) in s.code.lines().enumerate() {
            let starts = text.match_indices(needle).any(|(k, _)| !text[..k].bytes().next_back().is_some_and(ident_char));
            if starts && seen.insert((n + 1, needle.to_string())) {
                bad.push((n + 1, format!("{rel}:{}: module `{}` must not use `{needle}`", n + 1, r.module)));
            }
        }
    }
    bad.sort_by_key(|(line, _)| *line);
    bad.into_iter().map(|(_, b)| b).collect()
}

/// A path made absolute: `crate::..` (the library's name in `main.rs`) and
/// `super` chains that climb to the crate root become `crate::..`; a path
/// outside the crate stays as written (`std::fs`, or a name brought in by
/// `use`); a path inside the file's own top-level module is `None`.
fn absolute(path: &[(String, usize)], modpath: &[&str], root_alias: Option<&str>) -> Option<Path_> {
    let (first, at) = path.first()?;
    let rooted = |rest: &[(String, usize)]| Some(std::iter::once(("crate".to_string(), *at)).chain(rest.iter().cloned()).collect());
    if Some(first.as_str()) == root_alias || first == "$crate" {
        return rooted(&path[1..]);
    }
    match first.as_str() {
        "self" => None,
        "crate" => None, // the binary's own root
        "super" => {
            let ups = path.iter().take_while(|(s, _)| s == "super").count();
            (modpath.len() == ups).then(|| rooted(&path[ups..])).flatten()
        }
        _ => Some(path.to_vec()),
    }
}

/// One file's code without comments, literals and `#[cfg(test)]` items.
struct Scanned {
    /// The text with everything that is not code blanked (lines kept).
    code: String,
    toks: Vec<Tok>,
    /// Every path of two or more segments (use trees expanded), with the
    /// inline `mod x { .. }` blocks around it.
    paths: Vec<(Vec<String>, Path_)>,
    /// `#[cfg(test)] mod x;`: files that are test code.
    test_mods: Vec<String>,
    /// `#![cfg(test)]`: the whole file is test code.
    test_file: bool,
    line_starts: Vec<usize>,
}

/// A path's segments, each with its byte offset.
type Path_ = Vec<(String, usize)>;

impl Scanned {
    fn line(&self, at: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= at)
    }
}

#[derive(Clone)]
struct Tok {
    s: String,
    at: usize,
}

impl Tok {
    fn is(&self, s: &str) -> bool {
        self.s == s
    }

    fn is_ident(&self) -> bool {
        self.s.bytes().next().is_some_and(|b| b == b'_' || b == b'$' || b.is_ascii_alphabetic() || b >= 0x80)
    }
}

fn scan(src: &str) -> Scanned {
    let mut code = strip(src.as_bytes());
    let all = tokens(&code);
    let mut toks = Vec::new();
    let mut test_mods = Vec::new();
    let mut test_file = false;
    let mut i = 0;
    while i < all.len() {
        let inner = all.get(i + 1).is_some_and(|t| t.is("!"));
        let attr = if inner { i + 2 } else { i + 1 };
        let cfg_test = all[i].is("#") && ["[", "cfg", "(", "test", ")", "]"].iter().enumerate().all(|(k, w)| all.get(attr + k).is_some_and(|t| t.is(w)));
        if !cfg_test {
            toks.push(all[i].clone());
            i += 1;
            continue;
        }
        test_file |= inner;
        let end = if inner { attr + 6 } else { item_end(&all, attr + 6) };
        if let [.., m, name, semi] = &all[(attr + 6).min(end)..end] {
            if m.is("mod") && semi.is(";") {
                test_mods.push(name.s.clone());
            }
        }
        let to = all.get(end).map_or(code.len(), |t| t.at);
        blank(&mut code, all[i].at, to);
        i = end;
    }
    let line_starts = std::iter::once(0).chain(src.match_indices('\n').map(|(k, _)| k + 1)).collect();
    let code = String::from_utf8_lossy(&code).into_owned();
    Scanned { code, paths: paths(&toks), toks, test_mods, test_file, line_starts }
}

/// The index after the item starting at `i`: up to its `;`, or its `{..}` block.
fn item_end(t: &[Tok], mut i: usize) -> usize {
    let mut depth = 0usize;
    while let Some(tok) = t.get(i) {
        i += 1;
        match tok.s.as_str() {
            ";" if depth == 0 => return i,
            "{" => depth += 1,
            "}" if depth <= 1 => return i,
            "}" => depth -= 1,
            _ => {}
        }
    }
    i
}

fn paths(t: &[Tok]) -> Vec<(Vec<String>, Path_)> {
    let mut out = Vec::new();
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < t.len() {
        if t[i].is("{") {
            depth += 1;
            if i >= 2 && t[i - 2].is("mod") && t[i - 1].is_ident() {
                inline.push((t[i - 1].s.clone(), depth));
            }
        } else if t[i].is("}") {
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
        } else if t[i].is_ident() && t.get(i + 1).is_some_and(|n| n.is("::")) && (i == 0 || !t[i - 1].is("::")) {
            let mut found = Vec::new();
            i = tree(t, i, Vec::new(), &mut found);
            let names: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
            out.extend(found.into_iter().filter(|p| p.len() > 1).map(|p| (names.clone(), p)));
            continue;
        }
        i += 1;
    }
    out
}

/// One path or use tree from `i`: every full path it names goes to `out`.
fn tree(t: &[Tok], mut i: usize, mut prefix: Path_, out: &mut Vec<Path_>) -> usize {
    loop {
        match t.get(i) {
            Some(tok) if tok.is_ident() => {
                prefix.push((tok.s.clone(), tok.at));
                i += 1;
                if t.get(i).is_some_and(|n| n.is("::")) {
                    i += 1;
                    continue;
                }
            }
            Some(tok) if tok.is("{") => {
                i += 1;
                while let Some(tok) = t.get(i) {
                    if tok.is("}") {
                        return i + 1;
                    } else if tok.is(",") {
                        i += 1;
                    } else {
                        i = tree(t, i, prefix.clone(), out);
                        // `a as b`: on to the next item
                        while t.get(i).is_some_and(|x| !(x.is(",") || x.is("}") || x.is("{"))) {
                            i += 1;
                        }
                    }
                }
                return i;
            }
            Some(tok) if tok.is("*") => i += 1,
            _ => {}
        }
        out.push(prefix);
        return i;
    }
}

/// Identifiers (`$crate` too), `::`, and single punctuation bytes.
fn tokens(code: &[u8]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let start = i;
        if code[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if code[i] == b'$' && code.get(i + 1).is_some_and(|&c| ident_char(c)) {
            i += 1;
        }
        if ident_char(code[i]) {
            while i < code.len() && ident_char(code[i]) {
                i += 1;
            }
        } else if code[i..].starts_with(b"::") {
            i += 2;
        } else {
            i += 1;
        }
        out.push(Tok { s: String::from_utf8_lossy(&code[start..i]).into_owned(), at: start });
    }
    out
}

fn ident_char(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric() || c >= 0x80
}

/// Blank `from..to` but its newlines. Every blanked run starts and ends at an
/// ASCII byte, so the text stays UTF-8 and keeps its byte offsets.
fn blank(code: &mut [u8], from: usize, to: usize) {
    let to = to.min(code.len());
    for b in code[from..to].iter_mut().filter(|b| **b != b'\n') {
        *b = b' ';
    }
}

/// The source with comments and string/char literals blanked.
fn strip(src: &[u8]) -> Vec<u8> {
    let n = src.len();
    let mut out = src.to_vec();
    let mut i = 0;
    while i < n {
        let start = i;
        let c = src[i];
        if src[i..].starts_with(b"//") {
            i = src[i..].iter().position(|&x| x == b'\n').map_or(n, |p| i + p);
        } else if src[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < n {
                if src[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if src[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == b'"' {
            i = quoted(src, i + 1, b'"');
        } else if let Some(end) = (c == b'\'').then(|| char_literal(src, start)).flatten() {
            i = end;
        } else if let Some(end) = prefixed_literal(src, i).filter(|_| ident_char(c) && !c.is_ascii_digit()) {
            i = end;
        } else {
            // a whole identifier or number, so that literal prefixes are
            // only looked for where one starts
            i += 1;
            while ident_char(c) && i < n && ident_char(src[i]) {
                i += 1;
            }
            continue;
        }
        blank(&mut out, start, i);
    }
    out
}

/// The end of a `b".."`, `b'.'`, `c".."`, `r#".."#` (and `br`, `cr`) literal at `i`.
fn prefixed_literal(b: &[u8], i: usize) -> Option<usize> {
    let rest = &b[i..];
    let (pre, raw) = if rest.starts_with(b"br") || rest.starts_with(b"cr") {
        (2, true)
    } else if rest.starts_with(b"r") {
        (1, true)
    } else if rest.starts_with(b"b") || rest.starts_with(b"c") {
        (1, false)
    } else {
        return None;
    };
    let j = i + pre;
    if !raw {
        return match b.get(j) {
            Some(b'"') => Some(quoted(b, j + 1, b'"')),
            Some(b'\'') if pre == 1 && rest[0] == b'b' => char_literal(b, j),
            _ => None,
        };
    }
    let hashes = b[j..].iter().take_while(|&&x| x == b'#').count();
    if b.get(j + hashes) != Some(&b'"') {
        return None;
    }
    let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
    let body = j + hashes + 1;
    Some(b[body..].windows(close.len()).position(|w| w == close.as_slice()).map_or(b.len(), |p| body + p + close.len()))
}

/// The index after a quoted run that starts after its opening quote.
fn quoted(b: &[u8], mut i: usize, quote: u8) -> usize {
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
        } else if b[i] == quote {
            return i + 1;
        } else {
            i += 1;
        }
    }
    b.len()
}

/// `'x'`, `'\n'`, `'\u{..}'` at `i` (a `'`), or `None` for a lifetime.
fn char_literal(b: &[u8], i: usize) -> Option<usize> {
    let first = *b.get(i + 1)?;
    if first == b'\\' {
        return Some(quoted(b, i + 1, b'\''));
    }
    let width = match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    };
    (first != b'\'' && b.get(i + 1 + width) == Some(&b'\'')).then_some(i + 2 + width)
}
