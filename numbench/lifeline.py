"""Worker processes that do not outlive their use: stopped at once on an interrupt, and
gone by themselves once the process that started them is.

Both the engine's workers (``engine/parallel.py``) and the local job backend (``backends``) run
``concurrent.futures`` process pools. Left alone, a pool's shutdown waits for the tasks
its workers are running (a lockstep part can train for an hour), and a worker whose parent
was killed outright trains on, for nobody, until its task ends.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor


def terminate(executor: ProcessPoolExecutor) -> None:
    """Stop ``executor``'s worker processes now, without waiting for their running tasks."""
    if hasattr(executor, "terminate_workers"):  # Python 3.14
        executor.terminate_workers()
        return
    for process in list((executor._processes or {}).values()):
        process.terminate()
    executor.shutdown(wait=False, cancel_futures=True)


def exit_with_parent(parent: int, every: float = 0.5) -> None:
    """In a worker process (its pool's initializer, given the pool owner's pid): exit once
    ``parent`` is no longer its parent, checked every ``every`` seconds on a daemon thread.
    The pid comes from the owner, so a parent that dies before the worker starts counts."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()
