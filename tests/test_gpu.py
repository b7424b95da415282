"""The engine on a CUDA GPU, against the same computation on the CPU. Skipped where torch
sees no GPU (CI has none); ``benchmarks/gpu_check.sh`` runs them on a GPU machine."""

import copy
import json

import pytest
import torch
from click.testing import CliRunner

from numbench.cli import main
from numbench.device import resolve_device
from numbench.engine import Engine, FitSpec, run, speed_defaults
from numbench.protocol import engine_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


@pytest.fixture(scope="module")
def gpu():
    return resolve_device("cuda")


def _config(device, steps=60, **over):
    return engine_config(max_steps=steps, eval_every=20, stop_iia=2.0, patience=10**6,
                         fail_after=10**6, **(speed_defaults(device) | over))


@pytest.mark.parametrize("arch,site", [("gru", "hidden"), ("lstm", "hidden"), ("transformer", "block0")])
def test_fixed_alignments_score_on_the_gpu_as_on_the_cpu(multi, gpu, arch, site):
    """Untrained fits (full, random): float32 scoring without TF32, so the GPU's IIA is
    the CPU's (a pair's correctness can flip only on a float32 tie)."""
    from models_helpers import tiny
    from test_das import data

    model = tiny(arch, multi)
    tr, va, te = data(multi, "up_down", "count", n_train=256, n_eval=200)
    d = model.sites[site]
    specs = [FitSpec("f", "full", d, tr, va, te), FitSpec("r", "random", max(1, d // 2), tr, va, te, seed=3)]
    cpu = run(Engine(model, site, config=_config("cpu", workers=1)), specs)
    cuda = run(Engine(copy.deepcopy(model).to(gpu), site, config=_config(gpu)), specs)
    for a, b in zip(cpu, cuda):
        assert abs(a.test_iia - b.test_iia) <= 0.01 and abs(a.valid_loss - b.valid_loss) <= 1e-4


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("arch,site", [("gru", "hidden"), ("transformer", "block0")])
def test_trained_fits_on_the_gpu_reach_what_they_reach_on_the_cpu_and_repeat_exactly(
        multi, gpu, arch, site, precision):
    from models_helpers import tiny
    from test_das import data

    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    model = tiny(arch, multi)
    tr, va, te = data(multi, "up_down", "count", n_train=512, n_eval=200)
    specs = [FitSpec("o", "orthogonal", 4, tr, va, te, seed=1), FitSpec("l", "linear", 4, tr, va, te, seed=2)]
    cpu = run(Engine(model, site, config=_config("cpu", workers=1, train_precision="fp32")), specs)
    on_gpu = copy.deepcopy(model).to(gpu)
    config = _config(gpu, train_precision=precision)
    first, again = (run(Engine(on_gpu, site, config=config), specs) for _ in range(2))
    for a, b, c in zip(cpu, first, again):
        assert abs(a.test_iia - b.test_iia) <= 0.03
        assert b.valid_loss == c.valid_loss and (b.test_correct == c.test_correct).all()
        assert all(torch.equal(b.state[k], c.state[k]) for k in b.state)
        assert all(v.device.type == "cpu" for v in b.state.values())  # results come back


def test_evaluate_and_verify_on_the_gpu_from_the_command_line(tiny_model_file, tmp_path):
    out = tmp_path / "r" / "result.json"
    res = CliRunner().invoke(main, ["evaluate", str(tiny_model_file), "--quick", "--device", "cuda",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["versions"]["device"] == "cuda" and doc["versions"]["device_name"]
    assert doc["settings"]["engine"]["workers"] == 1
    assert doc["settings"]["engine"]["schedule"] == "lockstep"
    res = CliRunner().invoke(main, ["verify", str(out), str(tiny_model_file)])
    assert res.exit_code == 0, res.output  # same device kind, same numbers
    refused = CliRunner().invoke(main, ["verify", str(out), str(tiny_model_file), "--device", "cpu"])
    assert refused.exit_code == 2 and "computed on cuda" in refused.output


def test_train_on_the_gpu_writes_a_cpu_model_file(tmp_path):
    out = tmp_path / "m.pt"
    res = CliRunner().invoke(main, ["train", "--arch", "gru", "--task", "multi_object", "--out", str(out),
                                    "--config", "d_hidden=16", "--config", "d_embed=8",
                                    "--config", "d_readout=16", "--max-steps", "20", "--device", "cuda"])
    assert res.exit_code == 0, res.output
    from numbench.models.files import load_model

    model, meta = load_model(out)
    assert model.device.type == "cpu" and meta.training["device"] == "cuda"
