"""Worker processes stop with their run: at once on SIGTERM, by themselves when their
parent is killed outright, and a pool is stopped without waiting for its running tasks."""

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest

from numbench.lifeline import terminate

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _gone(pids, within: float = 15.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            pass
    return out


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_terminate_stops_a_pool_without_waiting_for_its_running_task():
    pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"))
    task = pool.submit(time.sleep, 120)
    while not task.running():
        time.sleep(0.05)
    pids = list(pool._processes)
    assert pids and all(_alive(p) for p in pids)
    terminate(pool)
    assert _gone(pids)


def test_a_worker_exits_once_its_parent_is_killed_outright(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, signal, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from multiprocessing import get_context\n"
        "from numbench.lifeline import exit_with_parent\n"
        "if __name__ == '__main__':\n"
        "    pool = ProcessPoolExecutor(1, mp_context=get_context('spawn'),\n"
        "                               initializer=exit_with_parent, initargs=(os.getpid(),))\n"
        "    task = pool.submit(time.sleep, 120)\n"
        "    while not task.running():\n"
        "        time.sleep(0.05)\n"
        "    print(*pool._processes, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == -signal.SIGKILL
    pids = [int(p) for p in run.stdout.split()]
    assert pids  # the worker was running its task when its parent died
    assert _gone(pids)


def test_sigterm_stops_evaluate_and_its_workers_leaving_no_result(tmp_path):
    """The reference GRU under the full budget: its worker's first fits train for minutes,
    so a stop that waited for them would run past the wait below."""
    out = tmp_path / "result.json"
    model = Path(__file__).parents[1] / "baselines" / "gru_multi_object_s0.pt"
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "numbench.cli", "evaluate", str(model),
                             "--out", str(out), "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen = ""
        while "fits" not in seen:  # training has started
            line = proc.stderr.readline()
            assert line, f"evaluate ended before training: {seen}"
            seen = line
        workers = [p for p in _children(proc.pid) if "spawn_main" in _cmdline(p)]
        assert workers
        start = sum(map(_cpu_seconds, workers))
        while sum(map(_cpu_seconds, workers)) < start + 3:  # the worker is training too
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        rest = proc.stderr.read()
    finally:
        proc.kill()
    assert rc == 128 + signal.SIGTERM
    assert rest.strip().splitlines()[-1] == "terminated"
    assert _gone(workers)
    assert not out.exists()


def test_the_cli_puts_back_the_callers_sigterm_handler():
    from click.testing import CliRunner

    from numbench.cli import main

    before = signal.getsignal(signal.SIGTERM)
    assert CliRunner().invoke(main, ["tasks", "--json"]).exit_code == 0
    assert signal.getsignal(signal.SIGTERM) is before
