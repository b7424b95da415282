"""Bad input gets one line and exit code 2, and nothing is written: training options and
model size, ``show``/``pairs -n``, sweep files, ``tasks/pairs.lock``, unwritable outputs.

Every input here is fed through the CLI as a user would give it; none trains or evaluates
for more than a few steps of a tiny model, even when the check it tests is missing."""

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from numbench.cli import main
from numbench.errors import NumbenchError
from numbench.models.registry import build_model, count_parameters
from numbench.training import MAX_PARAMETERS, TrainConfig
from hostile_files import HOSTILE
from test_board_trust import hand_made_result

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def error_line(res) -> str:
    """The one line that says what is wrong (click's usage errors add a usage hint above
    it); exit code 2 and no traceback."""
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    lines = [l for l in res.output.splitlines() if l.lower().startswith("error:")]
    assert len(lines) == 1, res.output
    if lines[0].startswith("error:"):  # a NumbenchError: that line is all there is
        assert res.output.strip() == lines[0], res.output
    return lines[0]


# --- numbench train ------------------------------------------------------------------------

TINY = ("--config", "d_embed=8", "--config", "d_readout=8")


@pytest.mark.parametrize("args, says", [
    (("--batch-size", "0"), "'--batch-size': 0 is not in the range x>=1"),
    (("--lr", "nan"), "'--lr': nan is not a finite number"),
    (("--lr", "inf"), "'--lr': inf is not a finite number"),
    (("--lr", "-0.01"), "'--lr': -0.01 is not in the range x>0"),
    (("--lr", "0"), "'--lr': 0.0 is not in the range x>0"),
    (("--void-p", "5"), "'--void-p': 5.0 is not in the range 0<=x<=1"),
    (("--void-p", "nan"), "'--void-p': nan is not a finite number"),
    (("--target-accuracy", "1.5"), "'--target-accuracy'"),
    (("--max-steps", "-5"), "'--max-steps': -5 is not in the range x>=1"),
    (("--max-steps", "0"), "'--max-steps': 0 is not in the range x>=1"),
    (("--seed", "-1"), "'--seed': -1 is not in the range x>=0"),
    (("--save-every", "-2"), "'--save-every'"),
    (("--config", "d_hidden=1000000000"), "more than 100,000,000 parameters, over "
                                          "numbench's cap of 50,000,000"),
    (("--config", "d_hidden=5000"), "parameters, over numbench's cap of 50,000,000"),
    (("--config", "d_hidden=0"), "cannot build gru with config {'d_embed': 8, 'd_readout': 8, "
                                 "'d_hidden': 0}: hidden_size must be greater than zero"),
])
def test_train_refuses_bad_settings_and_keeps_the_old_model(tmp_path, args, says):
    out = tmp_path / "model.pt"
    out.write_bytes(b"the model trained yesterday")
    res = run("train", "--arch", "gru", "--task", "single_object", "--out", out,
              "--max-steps", "2", *TINY, *args)
    assert says in error_line(res)
    assert out.read_bytes() == b"the model trained yesterday"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no checkpoints either


@pytest.mark.parametrize("config, says", [
    ("rope_base=NaN", "config key 'rope_base' of transformer must be a finite number, got nan"),
    ("rope_base=Infinity", "config key 'rope_base' of transformer must be a finite number, "
                           "got inf"),
    ("rope_base=0", "config key 'rope_base' of transformer must be > 0, got 0.0"),
    ("rope_base=-1", "config key 'rope_base' of transformer must be > 0, got -1.0"),
    ("rope_base=1" + "0" * 400, "config key 'rope_base' of transformer must be float"),
    # counted on the meta device, the count stops at twice the cap: not minutes of building
    ("n_layers=200000", "more than 100,000,000 parameters, over numbench's cap of 50,000,000"),
])
def test_train_refuses_a_bad_transformer_config_at_once(tmp_path, config, says):
    out = tmp_path / "model.pt"
    out.write_bytes(b"the model trained yesterday")
    start = time.perf_counter()
    res = run("train", "--arch", "transformer", "--task", "single_object", "--out", out,
              "--max-steps", "1", "--config", config)
    assert says in error_line(res)
    assert time.perf_counter() - start < 10
    assert out.read_bytes() == b"the model trained yesterday"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_train_still_trains_within_the_limits(tmp_path):
    """The non-vacuous side: the smallest allowed settings train and write a model."""
    out = tmp_path / "model.pt"
    res = run("train", "--arch", "gru", "--task", "single_object", "--out", out, *TINY,
              "--config", "d_hidden=8", "--max-steps", "1", "--batch-size", "1", "--seed", "0",
              "--void-p", "0", "--lr", "1e-3", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["steps"] == 1 and out.exists()


@pytest.mark.parametrize("arch, config", [
    ("gru", {"d_embed": 8, "d_hidden": 12, "d_readout": 16}), ("lstm", {}),
    ("transformer", {"d_model": 16, "n_layers": 3, "d_mlp": 24}), ("transformer", {}),
])
def test_parameters_are_counted_without_allocating_exactly(multi, arch, config):
    """The meta-device count is what the real model has (the oracle: build it)."""
    counted = count_parameters(arch, config, multi.vocabulary)
    assert counted == build_model(arch, config, multi.vocabulary).parameter_count() > 0


def test_the_cap_sits_between_sane_and_absurd(multi):
    assert count_parameters("gru", {"d_hidden": 1024}, multi.vocabulary) < MAX_PARAMETERS
    assert count_parameters("gru", {"d_hidden": 5000}, multi.vocabulary) > MAX_PARAMETERS
    assert count_parameters("gru", {"d_hidden": 10**9}, multi.vocabulary) == math.inf


@pytest.mark.parametrize("setting", [
    {"max_steps": 0}, {"max_steps": 2.5}, {"batch_size": True}, {"eval_every": 0},
    {"valid_size": 0}, {"pool_size": -1}, {"save_every": -1}, {"lr": float("nan")},
    {"lr": 0}, {"grad_clip": float("inf")}, {"target_accuracy": 2}, {"void_p": -0.1},
    {"void_p": "0.5"},
])
def test_train_config_refuses_settings_naming_them(setting):
    """Sweep files and jobs build TrainConfig from plain data, without click's checks."""
    (name, value), = setting.items()
    with pytest.raises(NumbenchError, match=f"field '{name}': must be"):
        TrainConfig(**setting)


# --- model files ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_model_file_is_one_line_and_nothing_is_written(name, multi, tmp_path):
    """Each of hostile_files' model files, given to evaluate: one line naming the file and
    the problem, exit 2, and the result already at --out survives (test_model_files shows
    each is refused before it unpacks or builds anything large)."""
    make, phrase = HOSTILE[name]
    model = make(tmp_path, multi)
    out = tmp_path / "out" / "result.json"
    out.parent.mkdir()
    out.write_text("the result of yesterday")
    line = error_line(run("evaluate", model, "--quick", "--out", out))
    assert line.startswith(f"error: {model}: ") and phrase in line, line
    assert out.read_text() == "the result of yesterday"
    assert list(out.parent.iterdir()) == [out]


# --- numbench show / pairs -n ---------------------------------------------------------------

@pytest.mark.parametrize("verb", ["show", "pairs"])
def test_a_negative_count_is_refused(verb):
    assert "'-n': -5 is not in the range x>=0" in error_line(run(verb, "multi_object", "-n", "-5"))
    res = run(verb, "multi_object", "-n", "2", "--json")  # and a count still counts
    assert res.exit_code == 0
    assert len(json.loads(res.stdout)["sequences" if verb == "show" else "pairs"]) == 2


# --- sweep files ------------------------------------------------------------------------------

TINY_TRAIN = {"max_steps": 3, "eval_every": 10_000, "valid_size": 10, "pool_size": 50}
TINY_ENGINE = {"max_steps": 2, "eval_every": 2, "fits_per_forward": 16, "eval_chunk": 1000}


def tiny_sweep(tmp_path) -> dict:
    """A valid sweep that trains and evaluates in seconds (so a missing check is a fast
    failure, not a long run)."""
    return {"name": "bad", "results": str(tmp_path / "results"),
            "models_dir": str(tmp_path / "runs"),
            "train": {"archs": ["gru"], "tasks": ["single_object"], "seeds": [0], "widths": [8],
                      "config": {"d_embed": 8, "d_readout": 8}, **TINY_TRAIN},
            "evaluate": {"models": [], "seeds": [0], "quick": True, "engine": dict(TINY_ENGINE)}}


def run_sweep(tmp_path, text: str | bytes, suffix: str):
    spec = tmp_path / f"spec{suffix}"
    spec.write_bytes(text if isinstance(text, bytes) else text.encode())
    line = error_line(run("sweep", spec, "--workers", "1"))
    assert line.startswith(f"error: {spec}: ")
    assert not (tmp_path / "results").exists() and not (tmp_path / "runs").exists()
    return line


def test_a_typo_in_a_toml_sweep_is_refused_not_defaulted(tmp_path):
    """`qiuck = true` used to run the full protocol; now it names the key and the table."""
    line = run_sweep(tmp_path, f"""
results = '{tmp_path / "results"}'
models_dir = '{tmp_path / "runs"}'
[train]
archs = ["gru"]
tasks = ["single_object"]
config = {{ d_embed = 8, d_hidden = 8, d_readout = 8 }}
max_steps = 3
[evaluate]
qiuck = true
engine = {{ max_steps = 2, eval_every = 2, fits_per_forward = 16, eval_chunk = 1000 }}
""", ".toml")
    assert "unknown key(s) 'qiuck' in [evaluate] (known: alignment_modules, alignments, arch_modules, engine," in line


@pytest.mark.parametrize("change, says", [
    (lambda d: d["train"].update(seeds="abc"),
     "field 'train.seeds': must be an integer >= 0 or a non-empty list of them, got 'abc'"),
    (lambda d: d["evaluate"].update(seeds=[0, -1]), "field 'evaluate.seeds'"),
    (lambda d: d["train"].update(seeds=[]), "field 'train.seeds'"),
    (lambda d: d["train"].update(config="x"), "field 'train.config': must be a table, got 'x'"),
    (lambda d: d["evaluate"].update(engine="fast"),
     "field 'evaluate.engine': must be a table, got 'fast'"),
    (lambda d: d["evaluate"].update(quick="false"),
     "field 'evaluate.quick': must be true or false"),
    (lambda d: d["train"].update(widths=["8"]), "field 'train.widths'"),
    (lambda d: d["train"].update(arch_modules="plugin.py"), "field 'train.arch_modules'"),
    (lambda d: d.update(name=3), "field 'name': must be a string"),
    (lambda d: d.update(train=[1]), "field 'train': must be a table"),
    (lambda d: d.update(resutls="x"), "unknown key(s) 'resutls' at the top level"),
    (lambda d: d["train"].update(max_step=5), "unknown key(s) 'max_step' in [train]"),
    (lambda d: d["evaluate"].update(qiuck=True, sweeep=True),
     "unknown key(s) 'qiuck', 'sweeep' in [evaluate]"),
    (lambda d: d["train"].pop("archs"), "[train] needs 'archs'"),
    (lambda d: d["train"].update(max_steps=-5),
     "field 'train.max_steps': must be an integer >= 1, got -5"),
    (lambda d: d["train"].update(lr=float("nan")), "field 'train.lr': must be a finite number"),
    (lambda d: d["train"]["config"].update(widht=8),
     "field 'train.config': unknown config key 'widht' for gru"),
    (lambda d: d["train"].update(widths=[10**9]), "over numbench's cap of 50,000,000"),
    (lambda d: d["train"].update(tasks=["single_objet"]),
     "field 'train.tasks': unknown task 'single_objet'"),
    (lambda d: d["evaluate"]["engine"].update(fast=True),
     "field 'evaluate.engine': unknown engine setting(s): fast"),
    (lambda d: d["evaluate"].update(task="nope"), "field 'evaluate.task': unknown task 'nope'"),
])
def test_bad_sweep_keys_and_values_are_named(tmp_path, change, says):
    doc = tiny_sweep(tmp_path)
    change(doc)
    assert says in run_sweep(tmp_path, json.dumps(doc), ".json")


@pytest.mark.parametrize("suffix, content, says", [
    (".toml", b"name = '\xff'", "not a valid sweep file ('utf-8' codec can't decode byte 0xff"),
    (".json", b'{"name": "\xff"}', "not valid JSON ('utf-8' codec can't decode byte 0xff"),
    (".toml", b"a = " + b"[" * 100_000 + b"]" * 100_000, "not a valid sweep file (nested too deep)"),
    (".toml", b"a = " + b"{b=" * 100_000 + b"1" + b"}" * 100_000, "nested too deep"),
    (".json", b"[" * 200_000 + b"]" * 200_000, "JSON nested too deep"),
    (".toml", b"name = " + b"1" * 5000, "not a valid sweep file (Exceeds the limit (4300 digits)"),
    (".json", b'{"name": ' + b"1" * 5000 + b"}", "not valid JSON (Exceeds the limit (4300 digits)"),
    # a key quoted in the message cannot break its one line, nor colour the terminal
    (".json", json.dumps({"train": {"archs": "gru", "tasks": "single_object",
                                    "config": {"x\n\x1b[31my": 1}}}).encode(),
     "unknown config key 'x\\n\\x1b[31my' for gru"),
])
def test_a_malformed_sweep_file_is_one_line(tmp_path, suffix, content, says):
    assert says in run_sweep(tmp_path, content, suffix)


def test_a_sweep_file_that_is_not_a_regular_file_is_refused(tmp_path):
    import os

    spec = tmp_path / "spec.toml"
    os.mkfifo(spec)  # reading it would wait for a writer forever
    assert error_line(run("sweep", spec)) == f"error: {spec}: not a regular file"


def test_a_sweep_file_must_be_a_table(tmp_path):
    line = run_sweep(tmp_path, "[1, 2]", ".json")
    assert "a sweep file holds a table of keys (a JSON object), not a list" in line


def test_every_documented_sweep_key_is_accepted(tmp_path, monkeypatch):
    """docs/sweeps.md's keys, all at once: planned, not refused (nothing runs)."""
    from numbench.sweep import plan

    monkeypatch.chdir(tmp_path)
    doc = tiny_sweep(tmp_path)
    doc["train"].update(archs="gru", tasks="single_object", seeds=1, widths=8, lr=1e-3,
                        batch_size=4, target_accuracy=0.9, void_p=0.0, grad_clip=1.0,
                        save_every=0, arch_modules=[])
    doc["evaluate"].update(task="single_object", sweep=False, seeds=[0, 1], arch_modules=[])
    p = plan(doc, tmp_path / "spec.json")
    assert [j.spec["seed"] for j in p.train] == [1] and len(p.evaluate) == 2
    assert p.train[0].spec["config"]["d_hidden"] == 8


# --- tasks/pairs.lock -----------------------------------------------------------------------

@pytest.fixture
def tasks_copy(tmp_path, monkeypatch):
    """A copy of tasks/ as NUMBENCH_TASKS_DIR, pair sets made afresh against its lock."""
    from numbench import pairs as pairs_mod
    from numbench.tasks import tasks_dir

    copy = tmp_path / "tasks"
    copy.mkdir()
    for f in [*tasks_dir().glob("*.json"), tasks_dir() / "pairs.lock"]:
        shutil.copy(f, copy / f.name)
    monkeypatch.setenv("NUMBENCH_TASKS_DIR", str(copy))
    pairs_mod._make_pairs.cache_clear()
    yield copy
    pairs_mod._make_pairs.cache_clear()


@pytest.mark.parametrize("lock, says", [
    ("[]", "must be a JSON object of pair-set key -> sha256, not a list"),
    ('{"a": 3}', "field 'a': not a sha256 (64 hex digits): 3"),
    ("{", "not a readable JSON file"),
])
def test_a_malformed_lock_is_one_line(tasks_copy, tmp_path, lock, says):
    (tasks_copy / "pairs.lock").write_text(lock)
    line = error_line(run("pairs", "multi_object", "-n", "1"))
    assert line.startswith(f"error: {tasks_copy / 'pairs.lock'}: ") and says in line
    board = tmp_path / "board.md"
    line = error_line(run("leaderboard", "--submissions", tmp_path / "subs", "--out", board))
    assert str(tasks_copy / "pairs.lock") in line and says in line
    assert not board.exists()


def test_a_result_whose_pair_set_is_not_locked_is_refused(tasks_copy, tmp_path, multi):
    """A lock without the entry used to skip the check silently and admit the result."""
    from numbench.pairs import make_pairs
    from numbench.results import write_json_atomic

    p = make_pairs(multi, "up_down", "count", "test")
    write_json_atomic(tmp_path / "subs" / "tiny" / "result.json",
                      hand_made_result(task=multi, pairs={p.key: p.sha256}))
    board = tmp_path / "board.md"
    res = run("leaderboard", "--submissions", tmp_path / "subs", "--out", board, "--json")
    assert res.exit_code == 0 and len(json.loads(res.stdout)["rows"]) == 1  # locked: admitted

    lock = json.loads((tasks_copy / "pairs.lock").read_text())
    del lock[p.key]
    (tasks_copy / "pairs.lock").write_text(json.dumps(lock))
    res = run("leaderboard", "--submissions", tmp_path / "subs", "--out", board, "--json")
    doc = json.loads(res.stdout)
    assert res.exit_code == 0 and doc["rows"] == []
    problem, = doc["skipped"]
    assert problem["problem"] == (f"{tmp_path / 'subs' / 'tiny' / 'result.json'}: field "
                                  f"'pairs.{p.key}': pair set has no entry in tasks/pairs.lock "
                                  f"to check it against")


def test_an_output_under_a_regular_file_is_refused_before_any_work(tmp_path, multi):
    """--out whose folder is a file: one line naming it, exit 2, before training,
    evaluating, plotting or building the board (running as root, a read-only folder would
    still be writable, so the file stands in for every unwritable place)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = blocker / "sub" / "x"
    cases = [
        ["train", "--arch", "gru", "--task", "multi_object", "--out", f"{out}.pt",
         "--max-steps", "1"],
        ["evaluate", str(ROOT / "baselines" / "gru_multi_object_s0.pt"), "--quick", "--out",
         f"{out}.json"],
        ["leaderboard", "--submissions", str(tmp_path / "none"), "--out", f"{out}.md"],
        ["plot", str(ROOT / "submissions" / "gru_multi_object_s0_quick" / "result.json"),
         "--out", str(out)],
    ]
    for args in cases:
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2, (args, res.output)
        line, = res.stderr.strip().splitlines()
        assert "cannot write here" in line and str(blocker) in line, line
    assert blocker.read_text() == "not a folder"


@pytest.mark.integration  # a whole evaluation
def test_a_result_that_cannot_be_written_keeps_the_finished_fits(tmp_path, monkeypatch):
    """A disk that fills before the result is written: the partial file keeps every
    finished stage and the one-line error says how to finish with --resume."""
    import numbench.cli.evaluate_cmd as cmd
    import numbench.evaluate as ev
    from numbench.results import write_json_atomic as real

    from evaluate_helpers import TINY_ENGINE
    from numbench.evaluate import Settings

    monkeypatch.setattr(ev.Settings, "make", classmethod(lambda cls, **kw: Settings(
        quick=True, engine=dataclasses.replace(TINY_ENGINE, **kw.get("engine", {})))))

    def full_disk(path, doc):
        if Path(path).suffix == ".json":
            raise NumbenchError("cannot write (No space left on device)", path=path)
        real(path, doc)

    monkeypatch.setattr(cmd, "write_json_atomic", full_disk)
    out = tmp_path / "r" / "result.json"
    model = tmp_path / "m.pt"
    from models_helpers import tiny
    from numbench.models.files import save_model
    from numbench.tasks import load_task

    task = load_task("multi_object")
    save_model(tiny("gru", task), model, task=task, seed=0)
    res = CliRunner().invoke(main, ["evaluate", str(model), "--out", str(out), "--workers", "1"])
    assert res.exit_code == 2
    line, = res.stderr.strip().splitlines()[-1:]
    assert "No space left" in line and "--resume" in line and f"{out}.partial" in line
    assert Path(f"{out}.partial").exists() and not out.exists()
