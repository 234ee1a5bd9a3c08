//! What the generated documents use besides each other: the Groups their
//! scale actions scale and their Targets read, and the playbooks they run;
//! and the NodeTemplate + Group written for a group the repository lacks.
//!
//! Owns: [`Needs`], [`Use`], [`support_docs`]. Must not depend on: IO.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::super::render::{comment, flow, quote};
use super::super::{GroupNeed, Need, OutFile};

/// monscale's defaults for a ServiceInfrastructure's `min_nodes` and
/// `max_nodes`, used for a group that comes from a CloudForms tag (monscale
/// 0.5 to 0.12 had no ServiceInfrastructure, hence no bounds).
pub(super) const DEFAULT_MIN: u64 = 1;
/// See [`DEFAULT_MIN`].
pub(super) const DEFAULT_MAX: u64 = 8;

/// The value the generated NodeTemplate leaves for the user to fill in.
const FILL_IN: &str = "REPLACE-ME";

/// One thing a service's documents use.
pub(super) enum Use {
    /// The service's ServiceInfrastructure, which is Group `name`.
    Infrastructure { name: String, origin: String, min: u64, max: u64 },
    /// A scale action scales Group `name`. `origin` says where the name
    /// comes from when it is not the service's infrastructure; `launch` is
    /// the data of an action that adds nodes.
    Group { name: String, origin: Option<String>, launch: Option<Map<String, Value>> },
    /// Target `target` reads the nodes of Group `name`.
    GroupTarget { name: String, target: String },
    /// A `run:` action runs this playbook.
    Playbook(&'static str),
}

/// The uses of every service, merged by name.
#[derive(Default)]
pub(super) struct Needs {
    infras: HashMap<String, (String, u64, u64)>,
    groups: Vec<GroupNeed>,
    playbooks: Vec<Need>,
}

impl Needs {
    /// Adds what the documents of `out` use.
    pub(super) fn add(&mut self, out: &OutFile, uses: Vec<Use>) {
        let trigger = out.docs.iter().find(|d| d.kind == "Trigger").map(|d| format!("Trigger `{}`", d.name)).unwrap_or_default();
        for u in uses {
            match u {
                Use::Infrastructure { name, origin, min, max } => {
                    self.infras.entry(name).or_insert((origin, min, max));
                }
                Use::Group { name, origin, launch } => self.group(name, origin, launch, &trigger),
                Use::GroupTarget { name, target } => self.group(name, None, None, &format!("Target `{target}`")),
                Use::Playbook(name) => {
                    let at = match self.playbooks.iter().position(|n| n.name == name) {
                        Some(i) => i,
                        None => {
                            self.playbooks.push(Need { kind: "Playbook", name: name.to_string(), users: Vec::new() });
                            self.playbooks.len() - 1
                        }
                    };
                    push_new(&mut self.playbooks[at].users, &trigger);
                }
            }
        }
    }

    fn group(&mut self, name: String, origin: Option<String>, launch: Option<Map<String, Value>>, user: &str) {
        let at = match self.groups.iter().position(|g| g.name == name) {
            Some(i) => i,
            None => {
                let need = GroupNeed { name, min: DEFAULT_MIN, max: DEFAULT_MAX, origin: String::new(), launch: None, users: Vec::new() };
                self.groups.push(need);
                self.groups.len() - 1
            }
        };
        let g = &mut self.groups[at];
        if let (true, Some(o)) = (g.origin.is_empty(), origin) {
            g.origin = o;
        }
        if g.launch.is_none() {
            g.launch = launch.filter(|l| !l.is_empty());
        }
        push_new(&mut g.users, user);
    }

    /// The groups (bounds and origin from their ServiceInfrastructure when
    /// there is one) and the playbooks, in order of first use.
    pub(super) fn into_parts(self) -> (Vec<GroupNeed>, Vec<Need>) {
        let Needs { infras, mut groups, playbooks } = self;
        for g in &mut groups {
            if let Some((origin, min, max)) = infras.get(&g.name) {
                (g.origin, g.min, g.max) = (origin.clone(), *min, *max);
            }
        }
        (groups, playbooks)
    }
}

fn push_new(list: &mut Vec<String>, item: &str) {
    if !item.is_empty() && !list.iter().any(|x| x == item) {
        list.push(item.to_string());
    }
}

/// A NodeTemplate named `template` and Group `need.name` made from it, as
/// YAML documents with a comment saying why they were written. monscale
/// launched CloudForms VMs, which scaler has no provider for: the template
/// is an EC2 placeholder (`REPLACE-ME` image, type and region) that keeps
/// the launch parameters as tags; `validate` warns at it and `plan` leaves
/// the group out until it is filled in.
pub fn support_docs(need: &GroupNeed, template: &str, export: &str) -> String {
    let g = &need.name;
    let mut lines = vec![
        format!("# Group `{g}`: {}; used by {}.", comment(&need.origin), comment(&need.users.join(", "))),
        format!("# Written by `scaler import monscale` from `{}`: the repository declared no Group `{g}`.", comment(export)),
    ];
    if need.origin.starts_with("the `monitoredservice`") {
        lines.push(format!("# min {DEFAULT_MIN} and max {DEFAULT_MAX} are monscale's later ServiceInfrastructure defaults: monscale 0.5 to 0.12 set no bounds."));
    }
    lines.extend([
        format!("# NodeTemplate `{template}` is a placeholder: monscale launched CloudForms VMs, which scaler cannot."),
        "# Set its image, instance type and region (or write a template of your own) before `scaler apply`;".to_string(),
        "# until then `validate` warns at `provider: ec2` and `plan` leaves the group out.".to_string(),
        "kind: NodeTemplate".to_string(),
        format!("name: {}", quote(template)),
        format!("description: {}", quote(&format!("placeholder for the nodes of group `{g}` (monscale launched CloudForms VMs)"))),
        "provider: ec2".to_string(),
        "ec2:".to_string(),
        format!("  region: {}", quote(FILL_IN)),
        format!("  image: {}", quote(FILL_IN)),
        format!("  instance_type: {}", quote(FILL_IN)),
    ]);
    if let Some(launch) = &need.launch {
        let tags: Map<String, Value> = launch
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.as_str().map_or_else(|| v.to_string(), str::to_string))))
            .collect();
        lines.push(format!("  tags: {}   # the CloudForms launch parameters", flow(&Value::Object(tags))));
    }
    lines.extend([
        "---".to_string(),
        "kind: Group".to_string(),
        format!("name: {}", quote(g)),
        format!("description: {}", quote(&format!("monscale: {}", need.origin))),
        format!("template: {}", quote(template)),
        format!("min: {}", need.min),
        format!("max: {}", need.max),
    ]);
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::DocName;
    use serde_json::json;

    fn file(trigger: &str) -> OutFile {
        OutFile { file_name: String::new(), source: String::new(), docs: vec![DocName { kind: "Trigger", name: trigger.into() }], text: String::new() }
    }

    #[test]
    fn uses_merge_by_name_and_take_bounds_from_the_infrastructure() {
        let mut n = Needs::default();
        let launch = json!({"cores": 2, "os": "l"}).as_object().cloned();
        n.add(
            &file("grow"),
            vec![
                Use::Infrastructure { name: "web".into(), origin: "ServiceInfrastructure `Web` (object 4)".into(), min: 2, max: 6 },
                Use::Group { name: "web".into(), origin: None, launch: launch.clone() },
                Use::Playbook("f5-add-pool-members"),
            ],
        );
        n.add(&file("shrink"), vec![Use::Group { name: "web".into(), origin: None, launch: None }, Use::Playbook("f5-add-pool-members")]);
        n.add(&file("cpu"), vec![Use::GroupTarget { name: "web".into(), target: "cpu".into() }]);
        n.add(&file("old"), vec![Use::Group { name: "idx".into(), origin: Some("the `monitoredservice` of ScaleAction `a` (object 0)".into()), launch: None }]);
        let (groups, playbooks) = n.into_parts();
        assert_eq!(groups.len(), 2);
        assert_eq!((groups[0].min, groups[0].max, groups[0].origin.as_str()), (2, 6, "ServiceInfrastructure `Web` (object 4)"));
        assert_eq!(groups[0].users, ["Trigger `grow`", "Trigger `shrink`", "Target `cpu`"]);
        assert_eq!(groups[0].launch, launch);
        assert_eq!((groups[1].min, groups[1].max), (DEFAULT_MIN, DEFAULT_MAX));
        assert_eq!(playbooks, [Need { kind: "Playbook", name: "f5-add-pool-members".into(), users: vec!["Trigger `grow`".into(), "Trigger `shrink`".into()] }]);
    }

    #[test]
    fn a_missing_group_becomes_a_placeholder_template_and_a_group() {
        let need = GroupNeed {
            name: "web".into(),
            min: 2,
            max: 6,
            origin: "ServiceInfrastructure `Web` (object 4)".into(),
            launch: json!({"cores": 2, "os": "l"}).as_object().cloned(),
            users: vec!["Trigger `grow`".into()],
        };
        let text = support_docs(&need, "web-node", "export.json");
        let expected = "\
# Group `web`: ServiceInfrastructure `Web` (object 4); used by Trigger `grow`.
# Written by `scaler import monscale` from `export.json`: the repository declared no Group `web`.
# NodeTemplate `web-node` is a placeholder: monscale launched CloudForms VMs, which scaler cannot.
# Set its image, instance type and region (or write a template of your own) before `scaler apply`;
# until then `validate` warns at `provider: ec2` and `plan` leaves the group out.
kind: NodeTemplate
name: \"web-node\"
description: \"placeholder for the nodes of group `web` (monscale launched CloudForms VMs)\"
provider: ec2
ec2:
  region: \"REPLACE-ME\"
  image: \"REPLACE-ME\"
  instance_type: \"REPLACE-ME\"
  tags: { cores: \"2\", os: \"l\" }   # the CloudForms launch parameters
---
kind: Group
name: \"web\"
description: \"monscale: ServiceInfrastructure `Web` (object 4)\"
template: \"web-node\"
min: 2
max: 6
";
        assert_eq!(text, expected);
    }
}
