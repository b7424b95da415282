"""Record the sha256 of every frozen split in task files (maintainers only).

    python scripts/freeze_tasks.py tasks/my_task.json [...]

Run it once when a task is added or its version is bumped. Never run it to make a hash
mismatch go away on an existing version: that mismatch means the generator changed.
"""

import json
import sys
from pathlib import Path

from numbench.sequences import split_sha256
from numbench.tasks import read_task_file


def freeze(path: Path) -> None:
    task = read_task_file(path, check_hashes=False)
    raw = json.loads(path.read_text())
    for name, spec in task.splits.items():
        raw["splits"][name]["sha256"] = split_sha256(task, spec)
    path.write_text(json.dumps(raw, indent=2) + "\n")
    print(f"{path}: " + ", ".join(f"{n}={s['sha256'][:12]}" for n, s in raw["splits"].items()))


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        freeze(Path(arg))
