"""Where jobs run: local processes (default), an existing Dask cluster, or Slurm.

Every backend takes :func:`numbench.jobs.run_job` and a list of job documents and yields
each job's outcome as it finishes. None schedules anything itself: the local backend is a
``concurrent.futures`` process pool (``spawn`` start, one torch thread per worker, workers
= cores by default, so 2 cores never run 4 busy threads), Dask and submitit do the rest.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Callable, Iterator

from .errors import NumbenchError

Runner = Callable[[dict], dict]


def _one_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


class LocalBackend:
    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or os.cpu_count() or 1)

    def run(self, fn: Runner, jobs: list[dict]) -> Iterator[dict]:
        if not jobs:
            return
        with ProcessPoolExecutor(max_workers=min(self.workers, len(jobs)),
                                 mp_context=get_context("spawn"), initializer=_one_thread) as pool:
            futures = [pool.submit(fn, job) for job in jobs]
            for f in as_completed(futures):
                yield f.result()


class DaskBackend:
    name = "dask"

    def __init__(self, address: str):
        try:
            from distributed import Client
        except ImportError:
            raise NumbenchError("the Dask backend needs distributed: pip install 'numbench[dask]'") from None
        try:
            self.client = Client(address, timeout="20s")
        except OSError as e:
            raise NumbenchError(f"cannot reach the Dask scheduler at {address} ({e})") from None

    def run(self, fn: Runner, jobs: list[dict]) -> Iterator[dict]:
        from distributed import as_completed as dask_completed

        futures = self.client.map(fn, jobs, pure=False, key=[f"numbench-{j['key']}" for j in jobs])
        for f in dask_completed(futures):
            yield f.result()

    def close(self) -> None:
        self.client.close()


class SlurmBackend:
    name = "slurm"

    def __init__(self, folder: str, *, partition: str | None, time_min: int, mem_gb: int):
        try:
            import submitit
        except ImportError:
            raise NumbenchError("the Slurm backend needs submitit: pip install 'numbench[slurm]'") from None
        self.executor = submitit.AutoExecutor(folder=folder)
        params = {"timeout_min": time_min, "mem_gb": mem_gb, "cpus_per_task": 1}
        if partition:
            params["slurm_partition"] = partition
        self.executor.update_parameters(**params)

    def run(self, fn: Runner, jobs: list[dict]) -> Iterator[dict]:
        for handle in self.executor.map_array(fn, jobs):
            yield handle.result()
