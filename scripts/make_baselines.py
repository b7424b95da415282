"""Train every shipped baseline with fixed seeds and write its model card.

    python scripts/make_baselines.py            # all of them (about 10 minutes on 2 cores)
    python scripts/make_baselines.py gru_multi_object_s0   # just the named ones

Each baseline is baselines/<arch>_<task>_s<seed>.pt plus a model card .md beside it, and
baselines/README.md indexes them. Training is deterministic on CPU for a seed, so this
regenerates the shipped files' accuracies (bit-identical weights on the same torch build).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "baselines"
RNN_PLUGIN = "baselines/architectures/rnn.py"

#: (arch, task, seeds)
BASELINES = [
    ("gru", "multi_object", (0, 1, 2)),
    ("lstm", "multi_object", (0, 1, 2)),
    ("transformer", "multi_object", (0, 1, 2)),
    ("rnn", "multi_object", (0,)),
    ("gru", "single_object", (0,)),
    ("gru", "same_object", (0,)),
    ("lstm", "single_object", (0,)),
    ("lstm", "same_object", (0,)),
]


def names() -> list[tuple[str, str, str, int]]:
    return [(f"{a}_{t}_s{s}", a, t, s) for a, t, seeds in BASELINES for s in seeds]


def card(name: str, doc: dict) -> str:
    acc = doc["accuracy"]
    plugin = f" --arch-module {RNN_PLUGIN}" if doc["arch"] == "rnn" else ""
    return f"""# {name}

| | |
|---|---|
| architecture | `{doc['arch']}` |
| parameters | {doc['parameters']:,} |
| task | `{doc['task']}` |
| seed | {doc['seed']} |
| training | {doc['steps']} steps ({doc['stop_reason']}), {doc['wall_seconds']:.0f} s on 2 CPU cores, void_p {doc['void_p']} |
| iid / holdout / void accuracy | {acc['iid']:.3f} / {acc['holdout']:.3f} / {acc['void']:.3f} |

Config:

```json
{json.dumps(doc['config'], indent=2)}
```

Regenerate: `numbench train{plugin} --arch {doc['arch']} --task {doc['task']} --seed {doc['seed']} --out baselines/{name}.pt`
(or `python scripts/make_baselines.py {name}`). Check: `numbench accuracy{plugin} baselines/{name}.pt`.
"""


EXTRAS = """
Also here:

* `runs/gru_multi_object_d32_s0.checkpoints/`: six checkpoints of one training run, for
  `numbench trajectory` (alignment over training). Made by `numbench train --arch gru --task
  multi_object --seed 0 --config d_hidden=32 --max-steps 1500 --save-every 250 --out
  baselines/runs/gru_multi_object_d32_s0.pt` ([docs/sweeps.md](../docs/sweeps.md)).
* `sweep.toml`: an example sweep, `numbench sweep baselines/sweep.toml`.
"""


def index(rows: list[tuple[str, dict]]) -> str:
    lines = ["# Baselines", "",
             "Reference models, trained by `python scripts/make_baselines.py` (fixed seeds, "
             "deterministic on CPU). Each `.pt` is a numbench model file "
             "([docs/model-files.md](../docs/model-files.md)); each `.md` is its model card. "
             f"The `rnn` baseline is a plugin architecture: pass `--arch-module {RNN_PLUGIN}`.", "",
             "| model | arch | task | params | steps | train s | iid | holdout | void |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, d in rows:
        a = d["accuracy"]
        lines.append(f"| [{name}]({name}.md) | {d['arch']} | {d['task']} | {d['parameters']:,} | "
                     f"{d['steps']} | {d['wall_seconds']:.0f} | {a['iid']:.3f} | "
                     f"{a['holdout']:.3f} | {a['void']:.3f} |")
    return "\n".join(lines) + "\n"


def main(only: list[str]) -> None:
    for name, arch, task, seed in names():
        if only and name not in only:
            continue
        cmd = ["numbench", "train", "--arch", arch, "--task", task, "--seed", str(seed),
               "--out", str(OUT / f"{name}.pt"), "--json"]
        if arch == "rnn":
            cmd[2:2] = ["--arch-module", str(ROOT / RNN_PLUGIN)]
        doc = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                        cwd=ROOT).stdout)
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
        (OUT / f"{name}.md").write_text(card(name, doc))
        print(f"{name}: iid {doc['accuracy']['iid']:.3f} in {doc['wall_seconds']:.0f} s", flush=True)
    rows = [(n, json.loads((OUT / f"{n}.json").read_text())) for n, *_ in names()
            if (OUT / f"{n}.json").exists()]
    (OUT / "README.md").write_text(index(rows) + EXTRAS)


if __name__ == "__main__":
    main(sys.argv[1:])
