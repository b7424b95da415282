"""The shipped baselines: loadable, their model cards true, small, regenerable."""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from numbench.cli import main
from numbench.models.files import load_model

from models_helpers import ensure_plugin

ROOT = Path(__file__).resolve().parents[1]
CARDS = sorted((ROOT / "baselines").glob("*.json"))


def test_the_promised_baselines_are_shipped_and_small():
    names = {p.stem for p in CARDS}
    for arch in ("gru", "lstm", "transformer"):
        assert {f"{arch}_multi_object_s{s}" for s in range(3)} <= names
    assert {"rnn_multi_object_s0", "gru_single_object_s0", "gru_same_object_s0",
            "lstm_single_object_s0", "lstm_same_object_s0"} <= names
    total = sum(p.stat().st_size for p in (ROOT / "baselines").rglob("*") if p.is_file())
    assert total <= 20 * 2**20
    for card in CARDS:
        assert card.with_suffix(".pt").exists() and card.with_suffix(".md").exists()


@pytest.mark.integration
@pytest.mark.parametrize("card", CARDS, ids=lambda p: p.stem)
def test_model_card_accuracy_is_what_the_file_scores(card):
    ensure_plugin()
    doc = json.loads(card.read_text())
    args = ["accuracy", str(card.with_suffix(".pt")), "--json"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["accuracy"] == doc["accuracy"]
    if doc["arch"] != "rnn" and doc["task"] == "multi_object":
        assert doc["accuracy"]["iid"] >= 0.95


@pytest.mark.integration
@pytest.mark.parametrize("name", ["gru_multi_object_s0", "lstm_multi_object_s0",
                                  "rnn_multi_object_s0", "transformer_multi_object_s0"])
def test_every_architecture_passes_the_fidelity_gate_on_its_baseline(name, multi):
    """Identity interchanges reproduce the plain logits within the gate's 1e-5, at every
    site, on real trained weights (a tiny random model can hide drift that these show)."""
    from numbench.gate import GATE_TOLERANCE, identity_logit_diff
    from numbench.pairs import make_pairs

    ensure_plugin()
    model, _ = load_model(ROOT / "baselines" / f"{name}.pt")
    p = make_pairs(multi, "up_down", "count", "test")
    ids, pos = torch.from_numpy(p.base.ids[:300]), torch.from_numpy(p.base_pos[:300])
    for site in model.sites:
        assert identity_logit_diff(model, site, ids, pos) <= GATE_TOLERANCE, site


def test_rnn_baseline_needs_its_plugin_named(tmp_path):
    import subprocess
    import sys

    code = ("from numbench.cli import main; main(['accuracy', "
            f"'{ROOT / 'baselines' / 'rnn_multi_object_s0.pt'}'])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 2 and "--arch-module" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_train_reproduces_the_shipped_gru_bit_for_bit(tmp_path):
    torch.set_num_threads(2)  # the baselines were trained with 2 threads
    out = tmp_path / "gru.pt"
    res = CliRunner().invoke(main, ["train", "--arch", "gru", "--task", "multi_object",
                                    "--seed", "0", "--out", str(out)])
    assert res.exit_code == 0, res.output
    a, _ = load_model(ROOT / "baselines" / "gru_multi_object_s0.pt")
    b, _ = load_model(out)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
