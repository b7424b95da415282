"""Fuzzing the readers of untrusted files: model files, result files (as the leaderboard
collects them) and sweep files. Any bytes, and structured mutations of a valid document
(a value replaced, a key dropped, a file's bytes flipped or cut), give either what the
reader gives for a good file or a NumbenchError of one line naming the file: never another
exception, never a hang. Each test runs in a few seconds (modest ``max_examples``)."""

import copy
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numbench.errors import NumbenchError
from numbench.leaderboard import render_markdown
from numbench.models import build_model
from numbench.models.files import load_model, save_model
from numbench.results import seal
from numbench.submissions import collect
from numbench.sweep import plan, read_sweep
from test_bad_inputs import tiny_sweep
from test_board_trust import hand_made_result

#: NUMBENCH_FUZZ_EXAMPLES=2000 fuzzes harder (the default tier keeps each test to seconds)
FUZZ = settings(max_examples=int(os.environ.get("NUMBENCH_FUZZ_EXAMPLES", 60)), deadline=None,
                database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: JSON values, and what JSON parsers admit and writers choke on: NaN, inf, huge ints
LEAF = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                 st.sampled_from([0, -1, 1, 2**31, 2**63, 10**30, 10**400]),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
VALUE = st.recursive(LEAF, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
    max_leaves=10)


def refused_in_one_line(error: NumbenchError, path: Path) -> None:
    msg = str(error)
    assert "\n" not in msg and str(path) in msg, msg


def paths(doc, prefix=()):
    """Every place in a JSON document: tuples of keys and indices."""
    yield prefix
    items = (doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list)
             else ())
    for key, value in items:
        yield from paths(value, (*prefix, key))


def mutate(doc, data, values=VALUE):
    """A deep copy of ``doc`` with one to three places replaced by a drawn value, or
    dropped (a key of an object, an item of a list)."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        places = [p for p in paths(doc) if p]
        if not places:
            return doc
        place = data.draw(st.sampled_from(places), label="place")
        parent = doc
        for key in place[:-1]:
            parent = parent[key]
        if data.draw(st.booleans(), label="drop"):
            del parent[place[-1]]
        else:
            parent[place[-1]] = copy.deepcopy(data.draw(values, label="value"))
    return doc


def dump(doc) -> bytes:
    """JSON as Python writes it (NaN and Infinity included); a huge int as its digits."""
    try:
        return json.dumps(doc).encode()
    except ValueError:  # an int of more than 4300 digits: write it anyway
        return json.dumps(doc, default=str).encode()


def flip(data, blob: bytes) -> bytes:
    """``blob`` cut short, or with a few bytes overwritten."""
    if data.draw(st.booleans(), label="cut"):
        return blob[:data.draw(st.integers(0, len(blob) - 1), label="cut at")]
    blob = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 8), label="flips")):
        at = data.draw(st.integers(0, len(blob) - 1), label="at")
        blob[at] = data.draw(st.integers(0, 255), label="byte")
    return bytes(blob)


# --- model files ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_files(tmp_path_factory, multi):
    """A valid tiny model file of each encoding, its bytes and its raw document."""
    folder = tmp_path_factory.mktemp("fuzz-models")
    model = build_model("gru", {"d_embed": 4, "d_hidden": 4, "d_readout": 8}, multi.vocabulary)
    out = {}
    for suffix in (".pt", ".safetensors"):
        path = folder / f"good{suffix}"
        save_model(model, path, task=multi, seed=0, training={"steps": 1, "loss": [0.5]})
        out[suffix] = path.read_bytes()
    raw = torch.load(folder / "good.pt", weights_only=True)
    return folder, out, raw


def load_or_refuse(path: Path) -> None:
    try:
        model, meta = load_model(path)
    except NumbenchError as e:
        refused_in_one_line(e, path)
        return
    json.dumps(meta.training, allow_nan=False)  # what evaluate writes into a result
    json.dumps(meta.config, allow_nan=False)


@FUZZ
@given(suffix=st.sampled_from([".pt", ".safetensors"]), blob=st.binary(max_size=2000))
def test_model_file_of_any_bytes(model_files, suffix, blob):
    folder = model_files[0]
    path = folder / f"any{suffix}"
    path.write_bytes(blob)
    load_or_refuse(path)


@FUZZ
@given(suffix=st.sampled_from([".pt", ".safetensors"]), data=st.data())
def test_model_file_with_damaged_bytes(model_files, suffix, data):
    folder, good, _ = model_files
    path = folder / f"damaged{suffix}"
    path.write_bytes(flip(data, good[suffix]))
    load_or_refuse(path)


def _shared() -> dict:
    x = [1.0]
    return {"shared": x, "again": x}


#: what a .pt file's pickle may hold besides JSON data: tensors, tuples, shared containers
PT_VALUE = st.one_of(VALUE, st.builds(torch.zeros, st.integers(0, 3)),
                     st.builds(lambda: torch.tensor(float("nan"))),
                     st.builds(lambda: torch.zeros(2, device="meta")),
                     st.tuples(LEAF, LEAF), st.builds(_shared))


@FUZZ
@given(suffix=st.sampled_from([".pt", ".safetensors"]), data=st.data())
def test_model_file_with_mutated_content(model_files, suffix, data):
    folder, _, raw = model_files
    doc = mutate(raw, data, PT_VALUE if suffix == ".pt" else VALUE)
    path = folder / f"mutated{suffix}"
    if suffix == ".pt":
        torch.save(doc, path)
    else:
        from safetensors.torch import save_file

        state = doc.pop("state_dict", {}) if isinstance(doc, dict) else {}
        if not (isinstance(state, dict)
                and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                        and v.device.type == "cpu" for k, v in state.items())):
            state = {}  # what safetensors cannot hold: the metadata is still fuzzed
        save_file(state, str(path), metadata={"numbench": dump(doc).decode()})
    load_or_refuse(path)


# --- result files, as the leaderboard collects them ----------------------------------------

@pytest.fixture(scope="module")
def board(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-board")
    (root / "m").mkdir()
    return root, hand_made_result()


def collect_or_skip(root: Path) -> None:
    """The board never raises for a bad result: it admits it or skips it with one line."""
    subs, problems = collect(root)
    for path, why in problems:
        assert "\n" not in why and str(path) in why, why
    render_markdown(subs, problems)  # an admitted result renders
    for sub in subs:
        sub.ranked, sub.summary, sub.current_protocol  # noqa: B018


@FUZZ
@given(blob=st.binary(max_size=2000))
def test_result_file_of_any_bytes(board, blob):
    root, _ = board
    (root / "m" / "result.json").write_bytes(blob)
    collect_or_skip(root)


@FUZZ
@given(data=st.data(), reseal=st.booleans())
def test_result_file_with_mutated_content(board, data, reseal):
    """Resealed, a mutation gets past the digest to the checks behind it."""
    root, good = board
    doc = mutate(good, data)
    if reseal and isinstance(doc, dict):
        doc = seal(doc)
    (root / "m" / "result.json").write_bytes(dump(doc))
    collect_or_skip(root)


@FUZZ
@given(data=st.data())
def test_result_file_with_damaged_bytes(board, data):
    root, good = board
    (root / "m" / "result.json").write_bytes(flip(data, dump(good)))
    collect_or_skip(root)


# --- sweep files ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-sweeps")
    return folder, tiny_sweep(folder)


def plan_or_refuse(path: Path, monkeypatch_dir: Path) -> None:
    here = os.getcwd()
    os.chdir(monkeypatch_dir)  # its globs match nothing of the repository's
    try:
        plan(read_sweep(path), path)
    except NumbenchError as e:
        refused_in_one_line(e, path)
    finally:
        os.chdir(here)


@FUZZ
@given(suffix=st.sampled_from([".toml", ".json"]), blob=st.binary(max_size=1000))
def test_sweep_file_of_any_bytes(sweeps, suffix, blob):
    folder, _ = sweeps
    path = folder / f"any{suffix}"
    path.write_bytes(blob)
    plan_or_refuse(path, folder)


@FUZZ
@given(suffix=st.sampled_from([".toml", ".json"]), text=st.text(
    alphabet=st.sampled_from(list("[]{}=\"'.,:# \n0123456789abcnrtuefls_-+ix")), max_size=300))
def test_sweep_file_of_toml_like_text(sweeps, suffix, text):
    folder, _ = sweeps
    path = folder / f"like{suffix}"
    path.write_text(text)
    plan_or_refuse(path, folder)


@FUZZ
@given(data=st.data())
def test_sweep_file_with_mutated_content(sweeps, data):
    folder, good = sweeps
    path = folder / "mutated.json"
    path.write_bytes(dump(mutate(good, data)))
    plan_or_refuse(path, folder)


def test_fuzzing_reaches_past_the_first_check(model_files, board, sweeps, multi):
    """The unmutated documents pass, so a mutation that keeps them valid is admitted and
    the checks behind the first one are exercised."""
    folder, good, _ = model_files
    for suffix, blob in good.items():
        (folder / f"ok{suffix}").write_bytes(blob)
        load_model(folder / f"ok{suffix}")
    root, doc = board
    (root / "m" / "result.json").write_bytes(dump(doc))
    assert len(collect(root)[0]) == 1
    sweep_folder, sweep = sweeps
    (sweep_folder / "ok.json").write_text(json.dumps(sweep))
    shutil.rmtree(sweep_folder / "results", ignore_errors=True)
    assert plan(read_sweep(sweep_folder / "ok.json"), sweep_folder / "ok.json").train
