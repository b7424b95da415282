"""``--arch-module`` on every verb that loads a model: a plugin architecture (the hand-wired
``counter`` of tests/known_answer.py) goes the whole way — evaluate, verify, sweep,
trajectory — and a verb that needs the file and lacks it says so in one line.

The verbs run as ``python -m numbench.cli`` in a fresh process, so ``counter`` is
registered only if the named file is loaded (this process may have loaded it already)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from numbench.cli import main

KNOWN_ANSWER = str(Path(__file__).resolve().parent / "known_answer.py")
TINY_ENGINE = ["--engine", "max_steps=6", "--engine", "eval_every=3",
               "--engine", "fits_per_forward=16", "--engine", "eval_chunk=1000"]
MODEL_VERBS = ["train", "accuracy", "evaluate", "verify", "sweep", "trajectory", "check-model"]


def numbench(*args, cwd) -> subprocess.CompletedProcess:
    # one thread, as in this process (conftest.py): threads contending for busy cores made
    # a tiny evaluation ~5x slower
    return subprocess.run([sys.executable, "-m", "numbench.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


@pytest.fixture(scope="module")
def counter_file(tmp_path_factory, multi):
    """The hand-wired counter as a model file (imported here as a test module, so no
    ``--arch-module`` path is recorded in this process)."""
    import known_answer  # noqa: F401  (registers "counter")
    import torch

    from numbench.models import build_model
    from numbench.models.files import save_model

    torch.manual_seed(0)
    model = known_answer.hand_wire(build_model("counter", {}, multi.vocabulary).eval())
    path = tmp_path_factory.mktemp("plugin") / "counter.pt"
    save_model(model, path, task=multi, seed=0)
    return path


@pytest.mark.parametrize("verb", MODEL_VERBS)
def test_every_verb_that_loads_a_model_takes_arch_module(verb):
    res = CliRunner().invoke(main, [verb, "--help"])
    assert res.exit_code == 0 and "--arch-module" in res.output


@pytest.mark.integration
def test_verify_a_plugin_result_with_and_without_its_arch_module(tmp_path, counter_file):
    result = tmp_path / "submissions" / "counter" / "result.json"
    made = numbench("evaluate", counter_file, "--arch-module", KNOWN_ANSWER, "--quick",
                    "--workers", "1", *TINY_ENGINE, "--out", result, cwd=tmp_path)
    assert made.returncode == 0, made.stderr

    missing = numbench("verify", result, counter_file, cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    line, = missing.stderr.strip().splitlines()
    assert "'counter' is not registered" in line and "--arch-module" in line
    assert not (result.parent / "verify.json").exists()

    res = numbench("verify", result, counter_file, "--arch-module", KNOWN_ANSWER, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    record = json.loads((result.parent / "verify.json").read_text())
    assert record["passed"] and record["mismatches"] == 0


@pytest.mark.integration
def test_sweep_passes_arch_module_to_its_jobs_and_records_nothing_of_it(tmp_path, counter_file):
    """The job runs in a spawned worker: it finds ``counter`` only through the option."""
    from numbench.sweep import plan

    doc = {"name": "plugin", "results": str(tmp_path / "results"),
           "evaluate": {"models": [str(counter_file)], "quick": True,
                        "engine": {"max_steps": 6, "eval_every": 3, "fits_per_forward": 16,
                                   "eval_chunk": 1000}}}
    spec = tmp_path / "sweep.json"
    spec.write_text(json.dumps(doc))
    res = numbench("sweep", spec, "--arch-module", KNOWN_ANSWER, "--workers", "1", "--json",
                   cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    outcome, = json.loads(res.stdout)["outcomes"]
    assert outcome["ok"] and not outcome.get("skipped")
    assert outcome["output"] == plan(doc).evaluate[0].output  # the key has no module in it
    assert "known_answer" not in Path(outcome["output"]).read_text()


@pytest.mark.integration
def test_trajectory_passes_arch_module_to_its_jobs(tmp_path, counter_file):
    run = tmp_path / "run.checkpoints"
    run.mkdir()
    (run / "step_000010.pt").write_bytes(counter_file.read_bytes())
    res = numbench("trajectory", run, "--arch-module", KNOWN_ANSWER, "--workers", "1",
                   "--no-plot", "--json", *TINY_ENGINE, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    row, = json.loads(res.stdout)["rows"]
    assert row["step"] == 10 and row["iid"] == 1.0  # the hand-wired counter solves the task
