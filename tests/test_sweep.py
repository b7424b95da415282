"""Sweeps: jobs keyed by spec hash, skip on re-run, redo only what is missing, failures
reported without stopping the others; and alignment over training (trajectory) on a tiny
real run. These run whole jobs, so they are integration tests: in this process
(``in_process_jobs``), through a real process pool, Dask and submitit. The default tier
checks the plans and the sweep file's errors."""

import hashlib
import json
import os

import pytest
from click.testing import CliRunner

from numbench.cli import main
from numbench.jobs import Job, run_job
from numbench.submissions import collect
from numbench.sweep import plan

from evaluate_helpers import MINE

TINY_TRAIN = {"max_steps": 30, "eval_every": 10_000, "valid_size": 10, "pool_size": 500, "lr": 3e-3}
TINY_ENGINE = {"max_steps": 6, "eval_every": 3, "fits_per_forward": 16, "eval_chunk": 1000}


def sweep_doc(tmp_path, seeds=(0, 1), extra_models=()):
    return {
        "name": "tiny",
        "results": str(tmp_path / "submissions" / "tiny"),
        "models_dir": str(tmp_path / "runs"),
        "train": {"archs": ["gru"], "tasks": ["multi_object"], "seeds": list(seeds), "widths": [8],
                  "config": {"d_embed": 8, "d_readout": 16}, **TINY_TRAIN},
        "evaluate": {"models": list(extra_models), "seeds": [0], "engine": TINY_ENGINE},
    }


def write(tmp_path, doc):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_plan_keys_jobs_by_their_spec(tmp_path):
    p = plan(sweep_doc(tmp_path))
    assert [j.kind for j in p.train] == ["train", "train"]
    assert [os.path.basename(j.output) for j in p.train] == ["gru_multi_object_w8_s0.pt",
                                                            "gru_multi_object_w8_s1.pt"]
    assert [j.spec["model"] for j in p.evaluate] == [j.output for j in p.train]
    again = plan(sweep_doc(tmp_path))
    assert [j.key for j in again.evaluate] == [j.key for j in p.evaluate]  # stable
    other = Job("evaluate", dict(p.evaluate[0].spec, seed=5))
    assert other.key != p.evaluate[0].key
    assert p.evaluate[0].key[:8] in p.evaluate[0].output


def test_a_sweep_names_extra_methods_and_the_very_code_that_defines_them(tmp_path, registry_kept):
    mine = tmp_path / "mine.py"
    mine.write_text(MINE)
    doc = sweep_doc(tmp_path)
    doc["evaluate"] |= {"alignments": ["mine", "pca"], "alignment_modules": [str(mine)]}
    p = plan(doc)
    sha = hashlib.sha256(MINE.encode()).hexdigest()
    for job in p.evaluate:
        assert job.spec["alignments"] == ["mine", "pca"]
        assert job.spec["alignment_modules"] == [{"path": str(mine), "sha256": sha}]
    plain = plan(sweep_doc(tmp_path))
    assert "alignments" not in plain.evaluate[0].spec  # a sweep without methods keeps its keys
    assert "alignment_modules" not in plain.evaluate[0].spec
    assert plain.evaluate[0].key != p.evaluate[0].key
    mine.write_text(MINE + "# edited\n")  # edited code: new jobs, not the old results
    assert plan(doc).evaluate[0].key != p.evaluate[0].key
    # a job whose file changed after planning fails, naming it, before anything runs
    outcome = run_job(p.evaluate[0].to_json())
    assert not outcome["ok"] and "changed since it was loaded" in outcome["error"]
    assert "mine.py" in outcome["error"]


@pytest.mark.parametrize("evaluate, words", [
    ({"alignments": ["nope"]}, "nope"),
    ({"alignments": ["orthogonal"]}, "fitted by the protocol already"),
    ({"alignments": 3}, "a method name or a list of them"),
    ({"alignment_modules": ["missing.py"]}, "no such alignment module"),
])
def test_bad_methods_in_a_sweep_file_are_refused_in_one_line(tmp_path, registry_kept, evaluate,
                                                              words):
    doc = sweep_doc(tmp_path)
    doc["evaluate"] |= evaluate
    res = CliRunner().invoke(main, ["sweep", write(tmp_path, doc), "--dry-run"])
    assert res.exit_code == 2 and words in res.output and "Traceback" not in res.output
    assert "evaluate.alignment" in res.output  # names the key


@pytest.mark.integration  # whole evaluation jobs
def test_a_sweep_trains_and_scores_extra_methods(tmp_path, tiny_model_file, in_process_jobs,
                                                 registry_kept):
    mine = tmp_path / "mine.py"
    mine.write_text(MINE)
    doc = {"name": "methods", "results": str(tmp_path / "submissions" / "methods"),
           "evaluate": {"models": [str(tiny_model_file)], "quick": True, "engine": TINY_ENGINE,
                        "alignments": ["mine", "pca"], "alignment_modules": [str(mine)]}}
    res = CliRunner().invoke(main, ["sweep", write(tmp_path, doc), "--json"])
    assert res.exit_code == 0, res.output
    result, = (tmp_path / "submissions" / "methods").rglob("result.json")
    doc = json.loads(result.read_text())
    recorded = {a["name"]: a for a in doc["settings"]["alignments"]}
    assert list(recorded) == ["mine", "pca"]
    assert recorded["mine"]["sha256"] == hashlib.sha256(MINE.encode()).hexdigest()
    for method in ("mine", "pca"):  # trained and scored, with their controls
        cells = [c for c in doc["cells"] if c["alignment"] == method]
        assert {c["control"] for c in cells} == {None, "permuted", "random_init"}
        assert set(doc["summary"]["methods"][method]) == {"up_down", "up_up"}


@pytest.mark.integration  # whole training and evaluation jobs
def test_sweep_runs_skips_and_redoes_only_missing_jobs_and_reports_failures(tmp_path,
                                                                          in_process_jobs):
    """The sweep verb end to end, its jobs in this process: one train, one evaluation and a
    broken model (its process-pool twins below are integration tests)."""
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a model")
    spec = write(tmp_path, sweep_doc(tmp_path, seeds=(0,), extra_models=[str(bad)]))
    runner = CliRunner()

    def outcomes(res):
        return {o["label"]: o for o in json.loads(res.stdout)["outcomes"]}

    first = runner.invoke(main, ["sweep", spec, "--json"])
    assert first.exit_code == 1, first.output
    done = outcomes(first)
    broken = done.pop("evaluate broken (seed 0)")
    assert not broken["ok"] and "broken.pt" in broken["error"]
    assert len(done) == 2 and all(o["ok"] and not o.get("skipped") for o in done.values())
    subs, problems = collect(tmp_path / "submissions")
    assert len(subs) == 1 and not problems  # the leaderboard picks it up
    result, = (tmp_path / "submissions" / "tiny").rglob("result.json")
    stamp = result.stat().st_mtime_ns

    again = outcomes(runner.invoke(main, ["sweep", spec, "--json"]))
    assert not again.pop("evaluate broken (seed 0)")["ok"]  # a failed job is tried again
    assert all(o.get("skipped") for o in again.values())  # the others: no work
    assert result.stat().st_mtime_ns == stamp

    result.unlink()  # as if the sweep had been killed before this job finished
    third = outcomes(runner.invoke(main, ["sweep", spec, "--json"]))
    third.pop("evaluate broken (seed 0)")
    ran = [o for o in third.values() if not o.get("skipped")]
    assert len(ran) == 1 and ran[0]["ok"] and ran[0]["output"] == str(result) and result.exists()


@pytest.mark.integration
def test_sweep_runs_skips_and_redoes_only_missing_jobs(tmp_path):
    spec = write(tmp_path, sweep_doc(tmp_path))
    runner = CliRunner()
    first = runner.invoke(main, ["sweep", spec, "--workers", "2", "--json"])
    assert first.exit_code == 0, first.output
    outcomes = json.loads(first.stdout)["outcomes"]
    assert len(outcomes) == 4 and all(o["ok"] and not o.get("skipped") for o in outcomes)
    subs, problems = collect(tmp_path / "submissions")
    assert len(subs) == 2 and not problems  # the leaderboard picks them up
    results = sorted((tmp_path / "submissions" / "tiny").rglob("result.json"))
    stamps = [r.stat().st_mtime_ns for r in results]

    again = json.loads(runner.invoke(main, ["sweep", spec, "--json"]).stdout)["outcomes"]
    assert all(o.get("skipped") for o in again)  # no work
    assert [r.stat().st_mtime_ns for r in results] == stamps

    results[1].unlink()  # as if the sweep had been killed before this job finished
    third = json.loads(runner.invoke(main, ["sweep", spec, "--workers", "1", "--json"]).stdout)["outcomes"]
    ran = [o for o in third if not o.get("skipped")]
    assert len(ran) == 1 and ran[0]["output"] == str(results[1]) and results[1].exists()
    assert results[0].stat().st_mtime_ns == stamps[0]


@pytest.mark.integration
def test_failed_jobs_are_reported_and_the_others_finish(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a model")
    spec = write(tmp_path, sweep_doc(tmp_path, seeds=(0,), extra_models=[str(bad)]))
    res = CliRunner().invoke(main, ["sweep", spec, "--workers", "2", "--json"])
    assert res.exit_code == 1
    outcomes = {o["label"]: o for o in json.loads(res.stdout)["outcomes"]}
    assert not outcomes["evaluate broken (seed 0)"]["ok"]
    assert "broken.pt" in outcomes["evaluate broken (seed 0)"]["error"]
    assert outcomes["evaluate gru_multi_object_w8_s0 (seed 0)"]["ok"]


@pytest.mark.integration
def test_sweep_runs_on_a_real_dask_scheduler(tmp_path):
    distributed = pytest.importorskip("distributed")
    spec = write(tmp_path, sweep_doc(tmp_path, seeds=(0,)))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        res = CliRunner().invoke(main, ["sweep", spec, "--scheduler", cluster.scheduler_address,
                                        "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["backend"] == "dask" and len(doc["outcomes"]) == 2
    assert all(o["ok"] for o in doc["outcomes"])
    assert len(list((tmp_path / "submissions").rglob("result.json"))) == 1


@pytest.mark.integration
def test_sweep_runs_through_submitit(tmp_path):
    """The Slurm backend's submission path, on submitit's local executor (no sbatch here)."""
    pytest.importorskip("submitit")
    from numbench.backends import SlurmBackend
    from numbench.sweep import run_plan

    p = plan(sweep_doc(tmp_path, seeds=(0,)))
    backend = SlurmBackend(str(tmp_path / "logs"), partition="debug", time_min=10, mem_gb=2,
                           cluster="local")
    outcomes = run_plan(p, backend)
    assert [o["kind"] for o in outcomes] == ["train", "evaluate"]
    assert all(o["ok"] and not o.get("skipped") for o in outcomes), outcomes
    subs, problems = collect(tmp_path / "submissions")
    assert len(subs) == 1 and not problems
    assert list((tmp_path / "logs").iterdir())  # submitit wrote its job folders there


def test_bad_sweep_files_get_one_line_errors(tmp_path):
    runner = CliRunner()
    path = tmp_path / "s.toml"
    path.write_text("name = 'x'\n[evaluate]\nmodels = ['nothing/*.pt']\n")
    res = runner.invoke(main, ["sweep", str(path)])
    assert res.exit_code == 2 and "no model file matches" in res.output
    path.write_text("[train\n")
    res = runner.invoke(main, ["sweep", str(path)])
    assert res.exit_code == 2 and "not a valid sweep file" in res.output and "Traceback" not in res.output


def train_with_checkpoints(run, task, save_every):
    from numbench.models.files import save_model
    from numbench.training import TrainConfig, train

    run.mkdir(parents=True)
    train("gru", task, 0, config={"d_embed": 8, "d_hidden": 8, "d_readout": 16},
          train_config=TrainConfig(**TINY_TRAIN, save_every=save_every),
          on_checkpoint=lambda step, m: save_model(m, run / f"step_{step:06d}.pt", task=task, seed=0))


def trajectory_json(run, engine, *extra):
    engine_args = [a for k, v in engine.items() for a in ("--engine", f"{k}={v}")]
    res = CliRunner().invoke(main, ["trajectory", str(run), "--no-plot", "--json", *extra,
                                    *engine_args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.mark.integration  # whole training and evaluation jobs
def test_trajectory_over_checkpoints_in_process(tmp_path, multi, in_process_jobs):
    from numbench.trajectory import summarize, trajectory_plan, trajectory_rows

    run = tmp_path / "run" / "tiny.checkpoints"
    train_with_checkpoints(run, multi, save_every=15)
    engine = {"max_steps": 6, "eval_every": 3, "fits_per_forward": 16, "eval_chunk": 1000}
    doc = trajectory_json(run, engine)
    assert [r["step"] for r in doc["rows"]] == [15, 30]
    assert doc["accuracy_vs_symbol_score"]["n"] == 2  # too few points for a correlation
    p = trajectory_plan(run, engine=engine)
    assert summarize(trajectory_rows(p))["rows"] == doc["rows"]  # re-read, nothing re-run
    three = summarize([{"iid": x, "symbol_score": y} for x, y in ((0.2, 0.1), (0.5, 0.3), (0.9, 0.8))])
    assert three["accuracy_vs_symbol_score"]["spearman_rho"] == pytest.approx(1.0)


@pytest.mark.integration
def test_trajectory_over_checkpoints(tmp_path, multi):
    from numbench.trajectory import summarize, trajectory_plan, trajectory_rows

    run = tmp_path / "run" / "tiny.checkpoints"
    train_with_checkpoints(run, multi, save_every=10)
    doc = trajectory_json(run, {"max_steps": 6, "eval_every": 3}, "--workers", "1")
    assert [r["step"] for r in doc["rows"]] == [10, 20, 30]
    assert doc["accuracy_vs_symbol_score"]["n"] == 3
    p = trajectory_plan(run, engine={"max_steps": 6, "eval_every": 3})
    assert summarize(trajectory_rows(p))["rows"] == doc["rows"]  # re-read, nothing re-run
