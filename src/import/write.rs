//! Writing an import into a config directory, all or nothing: every
//! conflict is found before anything is written, files are written to
//! hidden temporary names (which config loading ignores) and renamed into
//! place; a failure removes what this run wrote.
//!
//! Owns: [`check`], [`write_all`].
//! Must not depend on: the CLI, printing.

use std::path::{Path, PathBuf};

use super::repo::declared_names;
use super::{Conversion, ImportError, OutFile};

/// Finds everything that makes `conv` a second import into `out`: a file to
/// be written (a service's or a support file) that exists, or a document of
/// a generated kind and name already declared by a YAML file below `out`.
/// Reads only.
pub fn check(out: &Path, conv: &Conversion) -> Result<(), ImportError> {
    let mut conflicts = Vec::new();
    let files: Vec<(&OutFile, String)> =
        conv.files.iter().map(|f| (f, format!("service `{}`", f.source))).chain(conv.support.iter().map(|f| (f, f.source.clone()))).collect();
    for (f, what) in &files {
        let path = out.join(&f.file_name);
        if path.exists() {
            conflicts.push(format!("`{}` already exists ({what})", path.display()));
        }
    }
    let declared = declared_names(out);
    for (f, what) in &files {
        for d in &f.docs {
            if let Some(file) = declared.get(&(d.kind.to_string(), d.name.clone())) {
                conflicts.push(format!("{} `{}` is already declared in `{}` ({what})", d.kind, d.name, file.display()));
            }
        }
    }
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(ImportError::Exists { conflicts })
    }
}

/// Checks (see [`check`]) and writes every file of `conv` into `out`
/// (created when missing). Returns the paths written. On any failure,
/// files written by this call are removed again.
pub fn write_all(out: &Path, conv: &Conversion) -> Result<Vec<PathBuf>, ImportError> {
    check(out, conv)?;
    std::fs::create_dir_all(out).map_err(|source| ImportError::Write { path: out.to_path_buf(), source })?;
    let mut temps: Vec<(PathBuf, PathBuf)> = Vec::new();
    let pid = std::process::id();
    for f in conv.all_files() {
        let tmp = out.join(format!(".{}.tmp-{pid}", f.file_name));
        if let Err(source) = std::fs::write(&tmp, &f.text) {
            remove_all(temps.iter().map(|(t, _)| t));
            let _ = std::fs::remove_file(&tmp);
            return Err(ImportError::Write { path: tmp, source });
        }
        temps.push((tmp, out.join(&f.file_name)));
    }
    let mut done: Vec<PathBuf> = Vec::new();
    for (i, (tmp, dest)) in temps.iter().enumerate() {
        // A file that appeared since `check` is not overwritten.
        let clash = dest.exists().then(|| std::io::Error::new(std::io::ErrorKind::AlreadyExists, "appeared during the import"));
        if let Some(source) = clash.map_or_else(|| std::fs::rename(tmp, dest).err(), Some) {
            remove_all(done.iter());
            remove_all(temps[i..].iter().map(|(t, _)| t));
            return Err(ImportError::Write { path: dest.clone(), source });
        }
        done.push(dest.clone());
    }
    Ok(done)
}

fn remove_all<'a>(paths: impl Iterator<Item = &'a PathBuf>) {
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{DocName, OutFile};

    fn conv(files: &[(&str, &str)]) -> Conversion {
        Conversion {
            files: files
                .iter()
                .map(|(name, trigger)| OutFile {
                    file_name: format!("monscale-{name}.yaml"),
                    source: name.to_string(),
                    docs: vec![DocName { kind: "Trigger", name: trigger.to_string() }],
                    text: format!("kind: Trigger\nname: {trigger}\n"),
                })
                .collect(),
            objects: files.len(),
            ..Conversion::default()
        }
    }

    #[test]
    fn writes_every_file_then_refuses_a_second_time() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("imported");
        let c = conv(&[("a", "a"), ("b", "b")]);
        let written = write_all(&out, &c).unwrap();
        assert_eq!(written, vec![out.join("monscale-a.yaml"), out.join("monscale-b.yaml")]);
        assert_eq!(std::fs::read_to_string(&written[1]).unwrap(), "kind: Trigger\nname: b\n");
        let err = write_all(&out, &c).unwrap_err();
        let ImportError::Exists { conflicts } = err else { panic!("{err}") };
        assert_eq!(conflicts.len(), 4, "{conflicts:?}"); // two files, two names
        let names: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "no temp files left: {names:?}");
    }

    #[test]
    fn a_name_declared_elsewhere_refuses_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/mine.yml"), "kind: Counter\nname: x\n---\nkind: Trigger\nname: b\n").unwrap();
        let err = write_all(dir.path(), &conv(&[("a", "a"), ("b", "b")])).unwrap_err();
        let ImportError::Exists { conflicts } = err else { panic!("{err}") };
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert!(conflicts[0].starts_with("Trigger `b` is already declared in"), "{}", conflicts[0]);
        assert!(!dir.path().join("monscale-a.yaml").exists());
    }
}
