"""Sweep scaling: wall time of ≥ 8 evaluation jobs with 1 vs 2 local workers, and the
per-job overhead of the Dask backend against local processes, measured in one run.

    python benchmarks/sweep_scaling.py [--jobs 8]

The jobs evaluate small trained GRUs (d=16) under a small engine budget so the whole
benchmark takes a few minutes; each configuration writes into a fresh folder, so nothing is
skipped. Workers run one torch thread each.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from numbench.backends import DaskBackend, LocalBackend
from numbench.jobs import Job, evaluate_job, evaluate_spec, run_job, train_spec
from numbench.sweep import run_jobs

ENGINE = {"max_steps": 60, "eval_every": 20, "fits_per_forward": 16}


def timed(jobs: list[Job], backend) -> float:
    t = time.perf_counter()
    outcomes = run_jobs(jobs, backend)
    assert all(o["ok"] and not o.get("skipped") for o in outcomes), outcomes
    return time.perf_counter() - t


def dask_timed(jobs: list[Job], trim: bool) -> float:
    """A 2-worker LocalCluster on loopback. Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536
    in its workers by default (and in this process); ``trim=False`` leaves it out."""
    import dask
    from distributed import LocalCluster

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    if not trim:
        env.pop("MALLOC_TRIM_THRESHOLD_", None)
        os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address=None) as cluster:
        backend = DaskBackend(cluster.scheduler_address)
        t = timed(jobs, backend)
        backend.close()
    return t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = []
        for seed in range(2):
            spec = train_spec("gru", "multi_object", seed, {"d_hidden": 16}, {"max_steps": 300})
            job = Job("train", spec, str(tmp / f"gru16_s{seed}.pt"))
            assert run_job(job.to_json())["ok"]
            models.append(job.output)
        specs = [evaluate_spec(models[i % 2], seed=i // 2, engine=ENGINE) for i in range(args.jobs)]
        jobs = lambda name: [evaluate_job(s, tmp / name) for s in specs]
        t1 = timed(jobs("local1"), LocalBackend(1))
        t2 = timed(jobs("local2"), LocalBackend(2))
        td = dask_timed(jobs("dask2"), trim=True)
        td_plain = dask_timed(jobs("dask2-plain"), trim=False)
    n = args.jobs
    print(f"{n} evaluation jobs (d=16 GRU, engine {ENGINE}):")
    print(f"  local, 1 worker : {t1:6.1f} s ({t1 / n:.1f} s/job)")
    print(f"  local, 2 workers: {t2:6.1f} s ({t2 / n:.1f} s/job)  speed-up {t1 / t2:.2f}x")
    print(f"  dask,  2 workers: {td:6.1f} s  overhead vs local {(td - t2) / n:+.2f} s/job "
          f"(cluster already running; Dask's default worker env, MALLOC_TRIM_THRESHOLD_=65536)")
    print(f"  dask,  2 workers: {td_plain:6.1f} s  overhead vs local {(td_plain - t2) / n:+.2f} s/job "
          f"(workers without MALLOC_TRIM_THRESHOLD_, as local processes run)")


if __name__ == "__main__":
    main()
