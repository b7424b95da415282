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
from .lifeline import exit_with_parent, terminate

Runner = Callable[[dict], dict]


def _lost(job: dict, e: BaseException) -> dict:
    """The outcome of a job whose worker died (killed, out of memory, past its time)."""
    return {"key": job["key"], "ok": False, "seconds": 0.0, "output": job["output"],
            "error": f"worker lost: {type(e).__name__}: {e}"}


def _init_worker(parent: int) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    exit_with_parent(parent)


class LocalBackend:
    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or os.cpu_count() or 1)

    def run(self, fn: Runner, jobs: list[dict]) -> Iterator[dict]:
        if not jobs:
            return
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(jobs)),
                                   mp_context=get_context("spawn"), initializer=_init_worker,
                                   initargs=(os.getpid(),))
        try:
            futures = {pool.submit(fn, job): job for job in jobs}
            for f in as_completed(futures):
                try:
                    yield f.result()
                except Exception as e:  # the process died: report it, go on with the rest
                    yield _lost(futures[f], e)
        except BaseException:  # interrupted, or the caller stopped reading: not left running
            terminate(pool)
            raise
        pool.shutdown()


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
        job_of = {f.key: j for f, j in zip(futures, jobs)}
        for f in dask_completed(futures):
            try:
                yield f.result()
            except Exception as e:
                yield _lost(job_of[f.key], e)

    def close(self) -> None:
        self.client.close()


class SlurmBackend:
    name = "slurm"

    def __init__(self, folder: str, *, partition: str | None, time_min: int, mem_gb: int,
                 cluster: str | None = None):
        """``cluster`` is submitit's: None picks Slurm when ``sbatch`` exists; ``"local"``
        runs the same submission path in local subprocesses (the tests use it)."""
        try:
            import submitit
        except ImportError:
            raise NumbenchError("the Slurm backend needs submitit: pip install 'numbench[slurm]'") from None
        self.executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        params = {"timeout_min": time_min, "mem_gb": mem_gb, "cpus_per_task": 1}
        if partition:
            params["slurm_partition"] = partition
        self.executor.update_parameters(**params)

    def run(self, fn: Runner, jobs: list[dict]) -> Iterator[dict]:
        if not jobs:
            return
        from submitit.helpers import as_completed as submitit_completed

        handles = self.executor.map_array(fn, jobs)
        job_of = {h.job_id: j for h, j in zip(handles, jobs)}
        for h in submitit_completed(handles):
            try:
                yield h.result()
            except Exception as e:  # timed out, out of memory, cancelled
                yield _lost(job_of[h.job_id], e)
