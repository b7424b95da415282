"""numbench train: a model file with its training summary, checkpoints on request."""

import json

from click.testing import CliRunner

from numbench.cli import main
from numbench.models.files import load_model


def test_train_writes_model_and_periodic_checkpoints(tmp_path):
    out = tmp_path / "g.pt"
    res = CliRunner().invoke(main, [
        "train", "--arch", "gru", "--task", "single_object", "--seed", "3", "--out", str(out),
        "--config", "d_embed=8", "--config", "d_hidden=8", "--config", "d_readout=16",
        "--max-steps", "6", "--save-every", "3", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["steps"] == 6 and set(doc["accuracy"]) == {"iid", "holdout", "void"}
    model, meta = load_model(out)
    assert meta.seed == 3 and meta.training["steps"] == 6 and model.config.d_hidden == 8
    ckpts = sorted(p.name for p in (tmp_path / "g.checkpoints").iterdir())
    assert ckpts == ["step_000003.pt", "step_000006.pt"]
    assert load_model(tmp_path / "g.checkpoints" / "step_000003.pt")[1].training["step"] == 3


def test_train_rejects_unknown_config_key(tmp_path):
    res = CliRunner().invoke(main, ["train", "--arch", "gru", "--task", "multi_object",
                                    "--out", str(tmp_path / "g.pt"), "--config", "width=3"])
    assert res.exit_code == 2 and "unknown config key 'width'" in res.output
