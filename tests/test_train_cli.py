"""numbench train: a model file with its training summary, checkpoints on request."""

import json
import re

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


def test_train_off_a_terminal_logs_timestamped_progress_lines(tmp_path):
    """CliRunner's stderr is not a terminal, like a batch job's log: plain lines from the
    first step to the last, no progress bar drawn at the end."""
    res = CliRunner().invoke(main, [
        "train", "--arch", "gru", "--task", "single_object", "--out", str(tmp_path / "g.pt"),
        "--config", "d_embed=8", "--config", "d_hidden=8", "--config", "d_readout=16",
        "--max-steps", "4", "--json"])
    assert res.exit_code == 0, res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 2, res.stderr  # the first step; the last (under a minute apart)
    line = re.compile(r"\[ +\d+ s\] train: step (\d)/4 · loss \d+\.\d{4} · valid acc (-|[01]\.\d{3})$")
    (first, acc0), (last, acc) = (line.fullmatch(x).groups() for x in lines)
    assert (first, acc0, last) == ("1", "-", "4") and acc != "-"  # validated at the last step
    assert "━" not in res.stderr and json.loads(res.stdout)["steps"] == 4


def test_train_log_prints_a_line_a_minute_and_the_last_step(capsys):
    from numbench.cli.train_cmd import TrainLog

    now = [0.0]
    log = TrainLog(every=60, clock=lambda: now[0])
    for t, step, acc in ((0, 1, None), (30, 2, None), (61, 3, 0.5), (70, 4, 0.5), (80, 5, 0.9)):
        now[0] = t
        log("train", {"step": step, "total": 5, "loss": 1 / step, "acc": acc})
    log.done()
    log.done()  # once only
    assert capsys.readouterr().err.splitlines() == [
        "[     0 s] train: step 1/5 · loss 1.0000 · valid acc -",
        "[    61 s] train: step 3/5 · loss 0.3333 · valid acc 0.500",
        "[    80 s] train: step 5/5 · loss 0.2000 · valid acc 0.900"]
