"""Record the sha256 of every standard pair set in tasks/pairs.lock (maintainers only).

    python scripts/freeze_pairs.py [TASK ...]

Run it when a task is added or a task version is bumped. A mismatch on an existing entry
means pair generation changed: that needs a new protocol or task version, not a re-freeze.
"""

import json
import sys

from numbench.pairs import lock_path, make_pairs, read_lock, standard_pair_keys
from numbench.tasks import load_task, task_names


def main(names: list[str]) -> None:
    lock = read_lock()
    for name in names or task_names():
        task = load_task(name)
        for program, variables, split, mode, permuted in standard_pair_keys(task):
            p = make_pairs(task, program, variables, split, mode=mode, permuted=permuted,
                           verify=False)
            if lock.get(p.key, p.sha256) != p.sha256:
                sys.exit(f"{lock_path()}: {p.key} changed — bump a version instead")
            lock[p.key] = p.sha256
        print(f"{name}: {len(standard_pair_keys(task))} pair sets")
    lock_path().write_text(json.dumps(dict(sorted(lock.items())), indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
