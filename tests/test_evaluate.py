"""numbench evaluate end to end on a tiny real model: gate, cells, scores, determinism,
resume, the result schema and the CLI. A small engine budget keeps it fast."""

import dataclasses
import json

import pytest
from click.testing import CliRunner

from numbench.cli import main
from numbench.errors import NumbenchError
from numbench.evaluate import Settings, evaluate
from numbench.results import validate_result
from numbench.protocol import BUDGET, PROTOCOL_VERSION, RANKED_ALIGNMENTS, engine_config

from evaluate_helpers import TINY_ENGINE, tiny_settings


@pytest.fixture(scope="module")
def model_file(tiny_model_file):
    return tiny_model_file


@pytest.fixture(scope="module")
def result(tiny_result):
    return tiny_result


def test_result_has_every_ranked_cell_and_control(result):
    validate_result(result)
    cells = result["cells"]
    ranked = [c for c in cells if c["control"] is None and c["alignment"] in ("orthogonal", "linear")]
    assert {(c["program"], c["variable"]) for c in ranked} == {
        ("up_down", "count"), ("up_down", "phase"), ("up_up", "demo_count"),
        ("up_up", "resp_count"), ("up_up", "phase")}
    assert all(c["k"] == 4 for c in ranked)  # ranked k = min(16, d/2) with d = 8
    for c in ranked:
        controls = {x["control"] for x in cells if x["program"] == c["program"]
                    and x["variable"] == c["variable"] and x["alignment"] == c["alignment"]}
        assert controls == {None, "permuted", "random_init"}
    assert result["gate"]["passed"]
    assert set(result["task_accuracy"]) == {"iid", "holdout", "void"}


def test_scores_follow_the_protocol(result):
    s = result["summary"]
    for program, p in s["programs"].items():
        iias = [e["test_iia"] for per in p["variables"].values() for e in per.values()]
        assert p["alignment_score"] == pytest.approx(sum(iias) / len(iias))
        for per in p["variables"].values():
            for e in per.values():
                floor = max(e["permuted_iia"], e["no_interchange_iia"])
                assert e["selectivity"] == pytest.approx(e["test_iia"] - floor)
                program_none = result["no_interchange"][program]
                assert e["no_interchange_iia"] in [v["test"] for v in program_none.values()]
    best = max(s["programs"], key=lambda q: s["programs"][q]["alignment_score"])
    assert s["symbol_score"] == s["programs"][best]["alignment_score"]


def test_result_records_versions_hashes_and_seeds(result, model_file):
    from numbench.models.files import model_sha256

    assert result["model"]["sha256"] == model_sha256(model_file)
    assert result["versions"]["protocol"] == PROTOCOL_VERSION == "2" and len(result["versions"]["protocol_sha256"]) == 64
    assert len(result["task"]["split_sha256"]) == 3
    assert all(len(h) == 64 for h in result["pairs"].values())
    assert result["settings"]["seed"] == 0
    assert {"task_accuracy", "gate", "fits", "controls", "total"} <= set(result["wall_seconds"])


def test_same_model_and_seed_give_identical_numbers(result, model_file):
    again = evaluate(model_file, settings=tiny_settings())
    strip = lambda doc: [{k: v for k, v in c.items()} for c in doc["cells"]]
    assert strip(again) == strip(result)
    assert again["summary"] == result["summary"]


@pytest.mark.parametrize("schedule", ["lockstep", pytest.param("continuous", marks=pytest.mark.integration)])
def test_resume_reuses_completed_runs_and_matches(result, model_file, tmp_path, schedule):
    """Interrupted after its first training stage, a run resumes from the partial file.
    Lockstep: the main fits, then the random-init controls (interrupted there). Continuous:
    a one-site model's main fits and controls train as one stage, so the run is stopped in
    the --sweep stage after it."""
    partial = tmp_path / "result.json.partial"
    stages = []
    settings = Settings(engine=dataclasses.replace(TINY_ENGINE, schedule=schedule),
                        sweep=schedule == "continuous")
    first, later = (("fits at", "random-init") if schedule == "lockstep"
                    else ("fits and random-init", "k-sweep"))

    class Stop(Exception):
        pass

    def interrupt(stage, details):
        stages.append(stage)
        if stage.startswith(later):
            raise Stop

    with pytest.raises(Stop):
        evaluate(model_file, settings=settings, progress=interrupt, partial_path=partial)
    assert partial.exists() and not (tmp_path / "result.json").exists()
    assert any(s.startswith(first) for s in stages)
    seen, told = [], []
    resumed = evaluate(model_file, settings=settings, partial_path=partial,
                       progress=lambda stage, d: seen.append(stage) or told.append(d.get("reused")))
    assert told[seen.index("resume")] >= 1  # it says what it reuses
    assert not any(s.startswith(first) for s in seen)  # the completed stage was not redone
    assert any(s.startswith(later) for s in seen)
    mine = {c["key"]: c for c in resumed["cells"]}
    assert [mine[c["key"]] for c in result["cells"]] == result["cells"]  # nor does the schedule


def test_gate_failure_refuses_to_score(model_file, monkeypatch):
    import numbench.evaluate as ev

    real = ev.run_gate
    monkeypatch.setattr(ev, "run_gate", lambda *a: dict(real(*a), passed=False))
    with pytest.raises(ev.GateFailed, match="fidelity gate"):
        evaluate(model_file, settings=tiny_settings())
    res = CliRunner().invoke(main, ["evaluate", str(model_file), "--quick", "--out", "x/r.json",
                                    "--workers", "1"])
    assert res.exit_code == 1 and "fidelity gate" in res.output


def test_cli_writes_result_atomically_and_prints_json(model_file, tmp_path, monkeypatch):
    import numbench.evaluate as ev

    monkeypatch.setattr(ev.Settings, "make", classmethod(lambda cls, **kw: Settings(
        seed=kw.get("seed", 0), quick=kw.get("quick", False),
        engine=dataclasses.replace(TINY_ENGINE, **kw.get("engine", {})))))
    out = tmp_path / "sub" / "result.json"
    res = CliRunner().invoke(main, ["evaluate", str(model_file), "--out", str(out), "--json",
                                    "--workers", "1"])  # one process: the default tier spawns none
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["settings"]["engine"]["workers"] == 1  # not the CPU's default of 2: recorded
    assert json.loads(out.read_text()) == doc
    assert not list(out.parent.glob("*.partial")) and not list(out.parent.glob(".*tmp"))
    table = CliRunner().invoke(main, ["evaluate", str(model_file), "--out", str(out), "--quick",
                                      "--workers", "1"])
    assert "QUICK RUN (unranked)" in table.output and "symbol score" in table.output
    # stderr is no terminal here: progress comes as plain lines, one as each stage starts
    lines = table.stderr.splitlines()
    for stage in ("task accuracy", "fidelity gate", "fits and random-init controls at hidden"):
        assert sum(line.split("] ", 1)[-1].startswith(stage) for line in lines) == 1, lines
    assert "fits training · best valid IIA" in table.stderr


@pytest.mark.integration  # whole evaluations
def test_cli_resume_says_what_it_reuses(model_file, tmp_path, monkeypatch):
    """--resume with no partial file, or one of another run, says so and starts over."""
    import numbench.evaluate as ev

    monkeypatch.setattr(ev.Settings, "make", classmethod(lambda cls, **kw: Settings(
        seed=kw.get("seed", 0), quick=kw.get("quick", False),
        engine=dataclasses.replace(TINY_ENGINE, **kw.get("engine", {})))))
    out = tmp_path / "result.json"
    args = ["evaluate", str(model_file), "--out", str(out), "--workers", "1", "--resume"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert f"resume: no {out}.partial, nothing to reuse" in " ".join(res.stderr.split())
    out.with_name("result.json.partial").write_text(json.dumps({"fingerprint": {}, "runs": {}}))
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "matches this run" in " ".join(res.stderr.split())


def test_progress_log_prints_each_stage_and_then_once_a_minute(capsys):
    from numbench.cli.evaluate_cmd import ProgressLog

    now = [0.0]
    log = ProgressLog(every=60, clock=lambda: now[0])
    for t, stage in ((0, "gate"), (1, "fits"), (30, "fits"), (62, "fits"), (70, "controls")):
        now[0] = t
        log(stage, {"step": t, "fits": 4, "active": 2} if stage != "gate" else {})
    printed = capsys.readouterr().err.splitlines()
    assert [p.split("] ")[1].split(":")[0] for p in printed] == ["gate", "fits", "fits", "controls"]
    assert printed[2].startswith("[    62 s] fits: step 62 · 2/4 fits training")


def test_validate_result_rejects_tampering(result):
    bad = json.loads(json.dumps(result))
    bad["cells"][0]["test_iia"] = 1.5
    with pytest.raises(NumbenchError, match=r"cells\[0\]\.test_iia"):
        validate_result(bad, "r.json")
    del bad["summary"]
    with pytest.raises(NumbenchError, match="missing field"):
        validate_result(bad, "r.json")


def test_speed_only_settings_keep_a_result_ranked_and_recorded_settings_replay_exactly():
    assert Settings.make(engine={"workers": 3, "train_precision": "fp32", "eval_chunk": 50,
                                 "schedule": "lockstep"}).ranked
    assert not Settings.make(engine={"max_steps": 10}).ranked
    with pytest.raises(NumbenchError, match="train_precision"):
        Settings.make(engine={"train_precision": "fp16"})
    with pytest.raises(NumbenchError, match="workers"):
        Settings.make(engine={"workers": 0})
    with pytest.raises(NumbenchError, match="schedule"):
        Settings.make(engine={"schedule": "eager"})
    for retired in ("train_kernels", "causal_training"):
        with pytest.raises(NumbenchError, match=retired):
            Settings.make(engine={retired: "x"})
    # what a result records replays as it was
    recorded = Settings.make(seed=3, quick=True, engine={"workers": 1}).to_json()
    assert Settings.from_json(recorded).to_json() == recorded
    # numbench 0.2.0 also recorded how the engine trained, which is now the only way
    old = json.loads(json.dumps(recorded))
    old["engine"] |= {"train_kernels": "fused", "causal_training": "cached"}
    assert Settings.from_json(old).to_json() == recorded
    for key, value in (("train_kernels", "autograd"), ("causal_training", "full")):
        with pytest.raises(NumbenchError, match=f"{key} is retired"):
            Settings.from_json(old | {"engine": old["engine"] | {key: value}})
    # nothing else is guessed: a setting missing or unknown is refused by name
    gone = json.loads(json.dumps(recorded))
    del gone["engine"]["workers"]
    with pytest.raises(NumbenchError, match="missing setting.*workers"):
        Settings.from_json(gone)
    with pytest.raises(NumbenchError, match="unknown setting.*speed"):
        Settings.from_json(recorded | {"engine": recorded["engine"] | {"speed": 1}})
    with pytest.raises(NumbenchError, match="settings.engine"):
        Settings.from_json(recorded | {"engine": recorded["engine"] | {"workers": 0}})


def test_the_protocol_owns_the_budget_and_the_engine_takes_it():
    from dataclasses import asdict

    from numbench.engine import BUDGET_KEYS, SPEED_ONLY, Engine
    from numbench.protocol import QUICK_BUDGET

    assert set(BUDGET) == set(BUDGET_KEYS) and not set(BUDGET) & set(SPEED_ONLY)
    engine = asdict(engine_config())
    assert {k: engine[k] for k in BUDGET} == BUDGET
    with pytest.raises(TypeError, match="budget"):  # the engine has no budget of its own
        Engine(None, "hidden")
    assert Settings.make().ranked and not Settings.make(quick=True).ranked
    assert {k: getattr(Settings.make(quick=True).engine, k) for k in QUICK_BUDGET} == QUICK_BUDGET
    assert not Settings.make(engine={"lr": 1e-3}).ranked
    assert Settings.make(engine={"workers": 1}).ranked  # speed only


@pytest.mark.integration  # whole evaluations
def test_cli_engine_overrides_are_typed_recorded_and_never_replace_a_protocol_run(
        model_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = CliRunner().invoke(main, ["evaluate", str(model_file), "--engine", "nope=1"])
    assert bad.exit_code == 2 and "nope=1" in bad.output and "KEY=VALUE" in bad.output
    bad = CliRunner().invoke(main, ["evaluate", str(model_file), "--engine", "max_steps=x"])
    assert bad.exit_code == 2 and "max_steps must be int" in bad.output
    args = ["evaluate", str(model_file), "--workers", "1", "--json"]
    for setting in ("max_steps=6", "eval_every=3", "lr=0.02", "fits_per_forward=16",
                    "eval_chunk=1000"):
        args += ["--engine", setting]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    engine = doc["settings"]["engine"]
    assert (engine["max_steps"], engine["eval_every"], engine["lr"]) == (6, 3, 0.02)
    assert not doc["ranked"]
    written = tmp_path / "submissions" / f"{model_file.stem}_engine" / "result.json"
    assert json.loads(written.read_text()) == doc


CANDIDATE_CONTROLS = {"permuted_sites": "best", "steps": "fit"}


@pytest.fixture(scope="module")
def counter_file(tmp_path_factory, multi):
    """The hand-wired counter (tests/known_answer.py): its fits stop early on the stopping
    IIA where their permuted controls of the phase run on."""
    import torch

    import known_answer
    from numbench.models import build_model
    from numbench.models.files import save_model

    torch.manual_seed(0)
    model = known_answer.hand_wire(build_model("counter", {"encoding": "orthogonal"},
                                               multi.vocabulary).eval())
    path = tmp_path_factory.mktemp("models") / "counter.pt"
    save_model(model, path, task=multi, seed=0, training={})
    return path


def test_control_rules_are_checked_recorded_and_unranked():
    """Other control rules than protocol 2's: each checked in one line, recorded (those
    set), read back, and the result unranked; the protocol's own leave it ranked."""
    with pytest.raises(NumbenchError, match="permuted_sites: 'all' is not one of every, best"):
        Settings.make(controls={"permuted_sites": "all"})
    with pytest.raises(NumbenchError, match="unknown rule 'sites'"):
        Settings.make(controls={"sites": "best"})
    with pytest.raises(NumbenchError, match="patience: 0 is not a positive integer"):
        Settings.make(controls={"patience": 0})
    assert Settings.make(controls={"steps": "own"}).ranked  # the protocol's own rules
    own = Settings.make(controls={"patience": 10, "max_steps": 5000})
    assert not own.ranked and own.to_json()["controls"] == {
        "permuted_sites": "every", "steps": "own", "patience": 10, "max_steps": 5000}
    assert Settings.from_json(own.to_json()).controls == own.controls
    assert "controls" not in Settings.make().to_json()


@pytest.mark.integration  # whole evaluations
def test_other_control_rules_train_each_control_no_longer_than_its_fit(counter_file):
    """Under a budget-study candidate's control rules a control stops at its fit's steps
    (or ``fail_after``): every cell equals the protocol-2 run's where that run's control
    stopped by then, and is cut at the cap where it ran on. The fits do not change (on the
    continuous schedule each trains as it would alone), the rules are recorded, and the
    result is unranked."""
    from numbench.settings import Settings as S

    engine = engine_config(max_steps=60, eval_every=10, fail_after=10, fits_per_forward=16,
                           eval_chunk=1000)
    plain = {c["key"]: c for c in evaluate(counter_file, settings=Settings(engine=engine))["cells"]}
    doc = evaluate(counter_file, settings=Settings(engine=engine, controls=CANDIDATE_CONTROLS))
    validate_result(doc)
    assert not doc["ranked"] and doc["settings"]["controls"] == CANDIDATE_CONTROLS
    assert S.from_json(doc["settings"]).controls == S(controls=CANDIDATE_CONTROLS).controls
    cells = {c["key"]: c for c in doc["cells"]}
    assert cells.keys() == plain.keys()  # one site: the best site is every site
    cut = 0
    for key, c in cells.items():
        if c["control"] is None:
            assert c == plain[key]
            continue
        fit = cells[key.rsplit("/", 1)[0]]
        cap = max(fit["steps"], engine.fail_after)
        if plain[key]["steps"] <= cap:
            assert c == plain[key]
        else:
            cut += 1
            assert (c["steps"], c["stop_reason"]) == (cap, "max_steps")
    assert cut >= 1  # some control did run longer than its fit under protocol 2's rules
    # the controls' own patience and max_steps, here above the fits' budget
    longer = evaluate(counter_file, settings=Settings(engine=engine, controls={
        "permuted_sites": "best", "patience": 6, "max_steps": 90}))["cells"]
    assert all(c == plain[c["key"]] for c in longer if c["control"] is None)
    steps = [c["steps"] for c in longer if c["control"] is not None]
    assert max(steps) > engine.max_steps and max(steps) <= 90


@pytest.mark.integration  # a transformer's three sites
def test_the_permuted_control_at_the_best_site_only(multi, tmp_path):
    """"permuted_sites": "best": one permuted control per ranked cell, at the site whose
    fit has the best valid IIA (where the random-init control is), none elsewhere."""
    from models_helpers import tiny
    from numbench.models.files import save_model
    from numbench.scores import best_site

    path = tmp_path / "tiny_transformer.pt"
    save_model(tiny("transformer", multi), path, task=multi, seed=0, training={})
    engine = engine_config(max_steps=6, eval_every=3, fail_after=3, fits_per_forward=16,
                           eval_chunk=1000)
    doc = evaluate(path, settings=Settings(engine=engine, controls=CANDIDATE_CONTROLS))
    cells = doc["cells"]
    for fit in [c for c in cells if c["control"] is None and c["alignment"] in RANKED_ALIGNMENTS]:
        best = best_site(cells, fit["program"], fit["variable"], fit["alignment"])
        for control in ("permuted", "random_init"):
            sites = [c["site"] for c in cells if c["control"] == control and
                     (c["program"], c["variable"], c["alignment"]) ==
                     (fit["program"], fit["variable"], fit["alignment"])]
            assert sites == [best["site"]]
    assert {c["site"] for c in cells if c["control"] is None} == {"embed", "block0", "block1"}

