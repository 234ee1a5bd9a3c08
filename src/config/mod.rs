//! TEMPORARY stub matching the config API being written on branch wt-config.
#![allow(missing_docs, dead_code)]
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use crate::model::*;

#[derive(Debug, Clone)]
pub struct Located<T> { pub spec: T, pub file: String, pub line: usize, pub column: usize }

#[derive(Debug, Clone)]
pub struct Config {
    pub root: PathBuf,
    pub project: Located<Project>,
    pub templates: BTreeMap<String, Located<NodeTemplate>>,
    pub groups: BTreeMap<String, Located<Group>>,
    pub targets: BTreeMap<String, Located<Target>>,
    pub counters: BTreeMap<String, Located<Counter>>,
    pub playbooks: BTreeMap<String, Located<Playbook>>,
    pub triggers: BTreeMap<String, Located<Trigger>>,
    pub policies: BTreeMap<String, Located<Policy>>,
    pub digest: String,
    pub revision: String,
}
impl Config { pub fn objects(&self) -> Vec<(Kind, String, serde_json::Value)> { vec![] } }

#[derive(Debug, Clone)]
pub struct Diagnostic { pub code: &'static str, pub message: String, pub file: String, pub line: usize, pub column: usize, pub field: String, pub help: Option<String> }
#[derive(Debug, Clone)]
pub struct Diagnostics(pub Vec<Diagnostic>);
impl std::fmt::Display for Diagnostics { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{} errors", self.0.len()) } }
impl std::error::Error for Diagnostics {}
impl Diagnostics {
    pub fn render(&self, _color: bool) -> String { String::new() }
    pub fn to_json(&self) -> serde_json::Value { serde_json::Value::Null }
}
pub fn load(_root: &Path) -> Result<Config, Diagnostics> { Err(Diagnostics(vec![])) }
pub fn load_rev(_root: &Path, _rev: &str) -> Result<Config, Diagnostics> { Err(Diagnostics(vec![])) }
pub fn schema_for(_kind: Kind) -> serde_json::Value { serde_json::Value::Null }
pub fn write_schemas(_dir: &Path) -> std::io::Result<()> { Ok(()) }
pub fn parse_policies(_file_name: &str, _text: &str) -> Result<Vec<Policy>, Diagnostics> { Ok(vec![]) }
