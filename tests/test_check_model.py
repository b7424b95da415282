"""``numbench check-model``: a shipped model and a plugin pass every check; a hand-broken
plugin fails the check it breaks, with exit code 1 and that check's fix line.

Plugins run as ``python -m numbench.cli`` in a fresh process, so the architectures they
register do not leak into this one (nor into other tests)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from numbench.cli import main
from numbench.models.checks import FIXES, TOLERANCE

ROOT = Path(__file__).resolve().parents[1]
GRU_FILE = ROOT / "baselines" / "gru_multi_object_s0.pt"
KNOWN_ANSWER = ROOT / "tests" / "known_answer.py"
CHECKS = list(FIXES)

# subclasses of the shipped GRU, each breaking one thing
BROKEN = textwrap.dedent('''
    import torch

    from numbench.models import register_architecture
    from numbench.models.gru import GRUModel


    @register_architecture
    class NoisyGRU(GRUModel):
        """An edited run adds noise: an identity edit no longer reproduces the logits."""
        arch = "noisy_gru"

        def run(self, ids, site=None, pos=None, edit=None, mode="single"):
            out = super().run(ids, site, pos, edit, mode)
            return out if edit is None else out + 1e-3 * torch.randn_like(out)


    @register_architecture
    class LeakyGRU(GRUModel):
        """What an edit changes leaks into position 0, before the edit (an identity edit
        changes nothing, so it leaks nothing)."""
        arch = "leaky_gru"

        def run(self, ids, site=None, pos=None, edit=None, mode="single"):
            out = super().run(ids, site, pos, edit, mode)
            if edit is None:
                return out
            leak = (out - super().run(ids)).mean(1)  # (B, V)
            return torch.cat([out[:, :1] + leak[:, None], out[:, 1:]], 1)
''')


def check_model(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "numbench.cli", "check-model", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def results(res: subprocess.CompletedProcess) -> dict[str, dict]:
    return {c["check"]: c for c in json.loads(res.stdout)["checks"]}


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plugins") / "broken.py"
    path.write_text(BROKEN)
    return path


def test_the_checks_use_the_gates_tolerance():
    from numbench.gate import GATE_TOLERANCE

    assert TOLERANCE == GATE_TOLERANCE


def test_the_gru_baseline_passes_every_check():
    """In this process: a shipped model registers nothing."""
    res = CliRunner().invoke(main, ["check-model", str(GRU_FILE)], terminal_width=200)
    assert res.exit_code == 0, res.output
    for name in CHECKS:  # the table names every check, each passed
        assert any(line.split("│")[1:3] == [f" {name:<14} ", " pass   "]
                   for line in res.stdout.splitlines() if "│" in line), name


@pytest.mark.integration  # a plugin: a fresh process
def test_the_counter_plugin_passes_by_name():
    res = check_model("--arch-module", KNOWN_ANSWER, "counter", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    got = results(res)
    assert list(got) == CHECKS and all(c["result"] == "pass" for c in got.values())


@pytest.mark.integration  # a plugin: a fresh process
def test_noise_in_an_edited_run_fails_no_op_fidelity(broken):
    res = check_model("--arch-module", broken, "noisy_gru", "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    got = results(res)
    assert got["shapes"]["result"] == "pass"
    assert got["no-op fidelity"]["result"] == "fail"
    assert "identity edit" in got["no-op fidelity"]["detail"]
    assert got["no-op fidelity"]["fix"] == FIXES["no-op fidelity"]


@pytest.mark.integration  # a plugin: a fresh process
def test_an_edit_leaking_before_its_position_fails_the_hook_oracle(broken):
    res = check_model("--arch-module", broken, "leaky_gru", "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    got = results(res)
    assert got["no-op fidelity"]["result"] == "pass"  # an identity edit leaks nothing
    assert got["hook oracle"]["result"] == "fail"
    assert got["hook oracle"]["fix"] == FIXES["hook oracle"]
    table = check_model("--arch-module", broken, "leaky_gru")  # the table prints the fix
    assert table.returncode == 1 and "fix: call `edit` once per row" in table.stdout


@pytest.mark.parametrize("args, says", [
    (["nope"], "'nope' is not registered"),
    (["missing.pt"], "no such model file"),
    ([KNOWN_ANSWER], "not a model file"),
])
def test_bad_input_exits_2_in_one_line(args, says):
    """In this process: nothing here registers an architecture."""
    res = CliRunner().invoke(main, ["check-model", *map(str, args)])
    assert res.exit_code == 2 and "Traceback" not in res.stderr, res.output
    line, = res.stderr.strip().splitlines()
    assert says in line
