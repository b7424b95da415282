"""``--device``: which device a command computes on, what the engine does there, what a
result records, and where ``verify`` replays. CI has no GPU: these tests hold the
plumbing on the CPU (and on torch's ``meta`` device, which computes nothing); the GPU
itself is checked by ``benchmarks/gpu_check.sh``."""

import dataclasses

import pytest
import torch
from click.testing import CliRunner

from numbench.cli import main
from numbench.device import device_name, resolve_device
from numbench.engine import Engine, speed_defaults
from numbench.engine.paths import Cut, Resumed
from numbench.errors import NumbenchError
from numbench.evaluate import Settings
from numbench.machine import cpu_description
from numbench.protocol import engine_config
from numbench.verify import replay_device

NO_CUDA = not torch.cuda.is_available()


def test_auto_is_the_cpu_without_a_gpu_and_the_gpu_with_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")


@pytest.mark.parametrize("spec,words", [("cuda", "no CUDA device"), ("cuda:3", "no CUDA device"),
                                        ("tpu", "unknown device 'tpu'"), ("cuda:x", "unknown device")])
def test_a_device_this_machine_lacks_is_one_clear_line(monkeypatch, spec, words):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(NumbenchError, match=words) as e:
        resolve_device(spec)
    assert "\n" not in str(e.value)


@pytest.mark.skipif(not NO_CUDA, reason="this machine has a GPU")
@pytest.mark.parametrize("command", ["evaluate", "accuracy", "train"])
def test_the_cli_refuses_a_gpu_it_cannot_use_with_exit_2(command, tiny_model_file, tmp_path):
    args = {"evaluate": [str(tiny_model_file), "--quick", "--out", str(tmp_path / "r.json")],
            "accuracy": [str(tiny_model_file)],
            "train": ["--arch", "gru", "--task", "multi_object", "--out", str(tmp_path / "m.pt")]}
    res = CliRunner().invoke(main, [command, *args[command], "--device", "cuda"])
    assert res.exit_code == 2, res.output
    assert "no CUDA device" in res.output and "Traceback" not in res.output
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("command", ["train", "accuracy", "evaluate", "verify", "sweep", "trajectory"])
def test_every_command_that_computes_takes_a_device(command):
    res = CliRunner().invoke(main, [command, "--help"])
    assert res.exit_code == 0 and "--device" in res.output


def test_speed_settings_follow_the_device(monkeypatch):
    cpu = speed_defaults("cpu")
    assert cpu == {k: getattr(engine_config(), k) for k in cpu}  # the engine's own defaults
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    gpu = speed_defaults("cuda")
    assert gpu["workers"] == 1 and gpu["schedule"] == "lockstep" and gpu["train_precision"] == "bf16"
    assert gpu["fits_per_forward"] > cpu["fits_per_forward"]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert speed_defaults("cuda")["train_precision"] == "fp32"
    # the budget is the protocol's on every device: a GPU result is ranked like a CPU one
    assert Settings.make(device="cpu").ranked
    gpu_settings = Settings.make(device="meta")  # any non-CPU device takes the GPU's speed
    assert gpu_settings.ranked and gpu_settings.engine.workers == 1


def test_the_engine_picks_its_machinery_by_the_models_device(multi):
    """On a device other than the CPU: no worker processes, no fused CPU kernels and no
    padded rows, lockstep only; the paths autocast on the model's device. torch's
    ``meta`` device stands in for a GPU: it builds everything and computes nothing."""
    from models_helpers import tiny

    model = tiny("gru", multi)
    cpu = Engine(model, "hidden", config=engine_config(train_precision="fp32", workers=1))
    assert cpu.device.type == "cpu" and cpu.train_path.extra.get("fused")
    meta = tiny("gru", multi).to("meta")
    with pytest.raises(ValueError, match="workers > 1 is for CPUs"):
        Engine(meta, "hidden", config=engine_config(workers=2))
    engine = Engine(meta, "hidden", config=engine_config(workers=1, train_precision="bf16"))
    assert engine.device.type == "meta" and not engine.continuous and not engine.padded
    assert isinstance(engine.train_path, Resumed) and engine.train_path.extra == {}
    assert engine.train_path.device_type == "meta" and engine.train_path.bf16
    assert not engine.score_path.bf16  # scoring is float32 everywhere
    prefix = Engine(meta, "hidden", "prefix", config=engine_config(workers=1))
    assert isinstance(prefix.train_path, Cut) and prefix.train_path.device_type == "meta"


def test_pair_tensors_move_to_the_engines_device_once(multi):
    """Prepared pair sets know their tensors by identity (shared bases are prepared once),
    so each tensor is moved once and the moved copy reused."""
    from models_helpers import tiny
    from test_das import data

    model = tiny("gru", multi)
    engine = Engine(model, "hidden", config=engine_config(workers=1))
    tr, va, te = data(multi, "up_down", "count", n_train=64, n_eval=32)
    moved = engine._prepared.on_device(tr)
    assert all(getattr(moved, f.name) is getattr(tr, f.name) for f in dataclasses.fields(tr))
    engine._prepared.device = torch.device("meta")  # as on a GPU: copies, made once each
    a, b = engine._prepared.on_device(tr), engine._prepared.on_device(tr)
    assert a.base_ids.device.type == "meta" and a.base_ids is b.base_ids
    shared = engine._prepared.on_device(dataclasses.replace(va, base_ids=tr.base_ids))
    assert shared.base_ids is a.base_ids


def test_a_result_records_its_device(tiny_result):
    assert tiny_result["versions"]["device"] == "cpu"
    assert tiny_result["versions"]["device_name"] == cpu_description() == device_name(torch.device("cpu"))


def test_verify_replays_on_the_recorded_kind_of_device_or_says_why_not(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert replay_device({"device": "cpu"}) == torch.device("cpu")
    with pytest.raises(NumbenchError, match=r"computed on cpu .*not --device cuda"):
        replay_device({"device": "cpu"}, "cuda")
    with pytest.raises(NumbenchError, match=r"computed on cuda \(NVIDIA H100 80GB HBM3\).*no CUDA"):
        replay_device({"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3"})


def test_verify_of_a_gpu_result_on_a_cpu_machine_is_refused_in_one_line(submitted_result,
                                                                        tiny_model_file, monkeypatch):
    import json

    from numbench.results import write_json_atomic

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    doc = json.loads(submitted_result.read_text())
    doc["versions"] |= {"device": "cuda", "device_name": "NVIDIA H200"}
    write_json_atomic(submitted_result, doc)
    res = CliRunner().invoke(main, ["verify", str(submitted_result), str(tiny_model_file)])
    assert res.exit_code == 2 and "computed on cuda (NVIDIA H200)" in res.output
    assert "versions.device" in res.output and len(res.output.strip().splitlines()) == 1
    assert not (submitted_result.parent / "verify.json").exists()


def test_a_resume_survives_another_number_of_workers():
    one, two = Settings.make(engine={"workers": 1}), Settings.make(engine={"workers": 2})
    assert one.fingerprint() == two.fingerprint() and one.to_json() != two.to_json()
    assert Settings.make(engine={"lr": 1e-3}).fingerprint() != one.fingerprint()


def test_worker_processes_on_a_gpu_are_refused_in_one_line():
    with pytest.raises(NumbenchError, match="workers=2: on meta the fits train in one process"):
        Settings.make(engine={"workers": 2}, device="meta")
