#!/usr/bin/env python3
"""Generate a large scaler config repo for benchmarks.

Usage: gen_repo.py DIR [--objects 5000] [--nodes 1000]

Writes one Project, 20 NodeTemplates (local: `exec sleep 86400`), enough Groups
to hold --nodes nodes (20 per group), one Target per group, and Counters,
Triggers and Playbooks up to --objects documents in all, spread over files of
100 documents each.
"""
import argparse
import os

p = argparse.ArgumentParser()
p.add_argument("dir")
p.add_argument("--objects", type=int, default=5000)
p.add_argument("--nodes", type=int, default=1000)
a = p.parse_args()
os.makedirs(a.dir, exist_ok=True)

docs = ["kind: Project\nname: bench\nstate: { lock_ttl: 5m }\napply: { parallelism: 32 }\n"]
templates = 20
for t in range(templates):
    docs.append(
        f"kind: NodeTemplate\nname: tpl-{t}\nprovider: local\nlocal:\n"
        f"  command: exec sleep 86400\n  port_base: {30000 + t * 100}\n  grace: 1s\n"
    )
per_group = 20
groups = max(1, (a.nodes + per_group - 1) // per_group)
left = a.nodes
for g in range(groups):
    n = min(per_group, left)
    left -= n
    docs.append(
        f"kind: Group\nname: g{g}\ntemplate: tpl-{g % templates}\nmin: 0\nmax: 99\ndesired: {n}\n"
        f"scale_in: {{ pick: oldest }}\n"
    )
    docs.append(f"kind: Target\nname: g{g}\ngroup: g{g}\nlabels: {{ tier: t{g % 5} }}\n")
i = 0
while len(docs) < a.objects:
    g = i % groups
    kind = i % 5
    if kind in (0, 1, 2):
        docs.append(
            f"kind: Counter\nname: c{i}\nsource:\n  ssh: {{ command: \"cut -d' ' -f1 /proc/loadavg\" }}\n"
            f"targets: [g{g}]\ninterval: 10s\nparse: number\n"
        )
    elif kind == 3:
        docs.append(
            f"kind: Trigger\nname: t{i}\nwhen: avg(c{i - 3}, over=\"2m\") > 80\nfor: 60s\ncooldown: 5m\n"
            f"then:\n  - scale: {{ group: g{g}, by: 1 }}\n"
        )
    else:
        docs.append(
            f"kind: Playbook\nname: p{i}\nparams:\n  version: {{ required: true }}\nsteps:\n"
            f"  - run: /opt/app/install.sh {{{{ version }}}}\n    register: out\n"
            f"  - abort: \"failed on {{{{ host }}}}\"\n    when: out.exit_code != 0\n"
        )
    i += 1
for f in range(0, len(docs), 100):
    with open(os.path.join(a.dir, f"part-{f // 100:03d}.yaml"), "w") as fh:
        fh.write("---\n".join(docs[f : f + 100]))
with open(os.path.join(a.dir, ".gitignore"), "w") as fh:
    fh.write(".scaler/\n")
print(f"{len(docs)} documents, {a.nodes} nodes in {groups} groups -> {a.dir}")
