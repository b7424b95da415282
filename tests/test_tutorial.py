"""docs/adding-an-architecture.md and its worked example, docs/examples/gru2.py: the
tutorial shows the file verbatim and only commands and flags that exist; the file loads as a
plugin and passes every check ``numbench check-model`` runs, its site being the whole state
but not the output; the fidelity gate refuses a drift of 3e-5; and ``numbench train`` trains
it into a model file that passes the checks too.

The plugin is loaded in this process (through ``load_arch_module`` and the CLI's
``--arch-module``) and unregistered again after this module's tests."""

import json
import re
import shlex
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from numbench.cli import main
from numbench.models import Resumable, build_model, load_arch_module
from numbench.models import registry
from numbench.models.checks import FIXES, ContractViolation, check_resume, run_checks
from numbench.sequences import generate

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "adding-an-architecture.md"
EXAMPLE = ROOT / "docs" / "examples" / "gru2.py"
MARKER = "<!-- example: docs/examples/gru2.py -->"
SMALL = {"d_embed": 8, "d_hidden": 6, "d_readout": 16}


def code_block_after(text: str, marker: str) -> str:
    """The fenced block that follows ``marker``: its lines between the fences."""
    assert text.count(marker) == 1, f"the tutorial holds {marker!r} {text.count(marker)} times"
    rest = text.split(marker, 1)[1]
    match = re.match(r"\s*```python\n(.*?)^```$", rest, re.S | re.M)
    assert match, f"no ```python block right after {marker!r}"
    return match.group(1)


def commands(text: str) -> list[list[str]]:
    """Every ``numbench ...`` line of the tutorial's bash blocks, continuations joined."""
    out = []
    for block in re.findall(r"^```bash\n(.*?)^```$", text, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("numbench "):
                out.append(shlex.split(line, comments=True))
    return out


@pytest.fixture(scope="module")
def gru2():
    """The example's class, registered while this module runs."""
    added = load_arch_module(EXAMPLE)
    assert added == ["gru2"]
    try:
        yield registry.get_architecture("gru2")
    finally:  # leave the registry (and the paths handed to worker processes) as they were
        registry._ARCHITECTURES.pop("gru2", None)
        path = str(EXAMPLE.resolve())
        if path in registry._plugin_paths:
            registry._plugin_paths.remove(path)
        sys.modules.pop("numbench_plugin_gru2", None)


@pytest.fixture(scope="module")
def ids(multi):
    return torch.from_numpy(generate(multi, 6, seed=1, void_p=0.2).ids)


def small(cls, multi):
    torch.manual_seed(0)
    return cls(cls.Config(**SMALL), multi.vocabulary).eval()


def check_model(*args: str) -> dict:
    res = CliRunner().invoke(main, ["check-model", "--arch-module", str(EXAMPLE), *args, "--json"])
    assert res.exit_code in (0, 1), res.output
    return json.loads(res.stdout)


# --- the tutorial ------------------------------------------------------------------------

def test_the_tutorial_shows_the_example_file_verbatim():
    shown = code_block_after(TUTORIAL.read_text(), MARKER)
    assert shown == EXAMPLE.read_text()


def test_every_command_of_the_tutorial_exists_with_its_flags_and_arguments():
    cmds = commands(TUTORIAL.read_text())
    verbs = {c[1] for c in cmds}
    assert {"train", "check-model", "evaluate", "verify", "leaderboard"} <= verbs
    for tokens in cmds:
        cmd = main.get_command(None, tokens[1])
        assert cmd is not None, f"no such verb: {' '.join(tokens)}"
        options = {o: p for p in cmd.params if p.param_type_name == "option"
                   for o in (*p.opts, *p.secondary_opts)}
        arguments = [p for p in cmd.params if p.param_type_name == "argument"]
        positional, rest = [], iter(tokens[2:])
        for tok in rest:
            if tok.startswith("-"):
                name, _, inline = tok.partition("=")
                assert name in options, f"{tokens[1]} has no option {name}"
                param = options[name]
                value = None if param.is_flag else (inline or next(rest, None))
                assert param.is_flag or value is not None, f"{name} needs a value"
                if name == "--arch-module":
                    assert (ROOT / value).is_file(), f"--arch-module {value}: no such file"
            else:
                positional.append(tok)
        assert len(positional) == len(arguments), \
            f"{' '.join(tokens)}: {len(positional)} arguments, {tokens[1]} takes {len(arguments)}"
    # the plugin's file goes with every command that loads a model
    for tokens in cmds:
        if tokens[1] in ("train", "check-model", "accuracy", "evaluate", "verify"):
            assert "--arch-module" in tokens, " ".join(tokens)


# --- the example -------------------------------------------------------------------------

def test_the_example_passes_every_check_of_check_model(gru2):
    doc = check_model("gru2")
    got = {c["check"]: c for c in doc["checks"]}
    assert list(got) == list(FIXES)  # every check ran, in order
    assert all(c["result"] == "pass" for c in got.values()), got  # none failed, none n/a
    assert doc["passed"] and doc["arch"] == "gru2"


def test_the_site_is_the_whole_state_but_not_the_output(gru2, multi, ids):
    model = small(gru2, multi)
    d = SMALL["d_hidden"]
    assert isinstance(model, Resumable) and model.state_sites == ("state",)
    assert model.sites == {"state": 2 * d}
    site = model.activations(ids, "state")
    layer0, _ = model.layer0(model.embed(ids))
    layer1, _ = model.layer1(layer0)
    assert torch.equal(site, torch.cat([layer0, layer1], -1))  # both layers' states
    assert torch.equal(model.run(ids), model.readout(layer1))  # the readout reads h1 only
    assert (model.readout(layer0) - model.run(ids)).abs().max() > 1e-3


def test_a_site_missing_layer_0_could_not_be_resumed(gru2, multi, ids):
    """Why the site is concat(h0, h1): restarting from h1 alone (h0 lost) breaks resume."""

    class TopOnly(gru2):
        def state_from_site(self, site):
            h0, h1 = super().state_from_site(site)
            return torch.zeros_like(h0), h1

    pos = torch.tensor([3, 1, 2, 6, 5, 4])
    check_resume(small(gru2, multi), ids, pos)  # the whole state: it restarts exactly
    with pytest.raises(ContractViolation, match="resume from position"):
        check_resume(small(TopOnly, multi), ids, pos)


@pytest.mark.parametrize("drift, passes", [(3e-5, False), (5e-6, True)])
def test_the_gate_refuses_a_restart_that_drifts_by_3e_5(gru2, multi, ids, drift, passes):
    """A restart through other kernels, standing in as a constant offset of its logits:
    3e-5 (what the reference LSTM's kernel mix once drifted) fails the 1e-5 gate."""

    class Drifting(gru2):
        def resume(self, *args, **kwargs):
            return super().resume(*args, **kwargs) + drift

    got = {c["check"]: c for c in run_checks(small(Drifting, multi), multi)}
    assert (got["fidelity gate"]["result"] == "pass") is passes, got["fidelity gate"]
    assert (got["no-op fidelity"]["result"] == "pass") is passes, got["no-op fidelity"]
    if not passes:
        assert "tolerance 1e-05" in got["fidelity gate"]["detail"]
        assert got["fidelity gate"]["fix"] == FIXES["fidelity gate"]


def test_numbench_train_makes_a_model_file_that_passes_the_checks(gru2, tmp_path):
    """``numbench train`` of the plugin, a few steps of a tiny one (a few seconds)."""
    out = tmp_path / "gru2.pt"
    config = [a for k, v in SMALL.items() for a in ("--config", f"{k}={v}")]
    res = CliRunner().invoke(main, ["train", "--arch-module", str(EXAMPLE), "--arch", "gru2",
                                    "--task", "multi_object", "--seed", "0", *config,
                                    "--max-steps", "5", "--batch-size", "8", "--out", str(out),
                                    "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["arch"] == "gru2" and doc["config"] == SMALL and doc["steps"] == 5

    from numbench.models.files import load_model

    model, meta = load_model(out)
    assert meta.arch == "gru2" and type(model).__name__ == "TwoLayerGRU"
    torch.manual_seed(0)  # as ``train`` seeds its initial weights
    start = build_model("gru2", SMALL, model.vocabulary)
    moved = [float((a - b).abs().max()) for a, b in
             zip(model.state_dict().values(), start.state_dict().values())]
    assert min(moved) > 0  # five steps moved every parameter
    checked = check_model(str(out))
    assert checked["passed"] and checked["task"] == "multi_object"
    assert all(c["result"] == "pass" for c in checked["checks"])
