"""Model files: round trips in both encodings, and one refusal per way a file can be bad.

Each bad file must give a one-line NumbenchError naming the file. Nothing in a file may
run: the malicious-pickle test also shows that its payload *does* run under plain pickle,
so the test would fail if load_model ever unpickled it.
"""

import ast
import dataclasses
import hashlib
import json
import resource
import time
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import numbench.models.files as files
from numbench.errors import NumbenchError
from numbench.models import build_model
from numbench.models.files import FORMAT_VERSION, ModelMeta, load_model, model_sha256, save_model
from numbench.tasks import load_task
from numbench.training import MAX_PARAMETERS
from hostile_files import HOSTILE

CONFIGS = {
    "gru": {"d_embed": 8, "d_hidden": 8, "d_readout": 16},
    "lstm": {"d_embed": 8, "d_hidden": 8, "d_readout": 16},
    "transformer": {"d_model": 16, "d_mlp": 32},
}
SUFFIXES = (".pt", ".safetensors")
KEYS = {"format", "format_version", "arch", "config", "task", "vocabulary", "seed", "training",
        "state_dict"}


def tiny(arch, task, seed=0):
    torch.manual_seed(seed)
    return build_model(arch, CONFIGS[arch], task.vocabulary).eval()


@pytest.fixture(scope="module")
def ids(multi):
    return torch.from_numpy(multi.split("iid").ids[:4])


def saved(tmp_path, task, suffix, arch="gru", name="model"):
    path = tmp_path / f"{name}{suffix}"
    save_model(tiny(arch, task), path, task=task, seed=0, training={"steps": 1})
    return path


def read_raw(path: Path) -> dict:
    """The file's content as docs/model-files.md defines it (these are our own files)."""
    if path.suffix == ".pt":
        return torch.load(path, map_location="cpu", weights_only=True)
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["numbench"])
        return {**meta, "state_dict": {k: f.get_tensor(k) for k in f.keys()}}


def write_raw(raw, path: Path) -> None:
    if path.suffix == ".pt":
        torch.save(raw, path)
    else:
        meta = {k: v for k, v in raw.items() if k != "state_dict"}
        save_file(raw["state_dict"], str(path), metadata={"numbench": json.dumps(meta)})


def expect_error(path, phrase, **kwargs) -> str:
    with pytest.raises(NumbenchError) as info:
        load_model(path, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and phrase in msg, msg
    return msg


# --- good files ----------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("arch", CONFIGS)
def test_round_trip_reproduces_logits(arch, suffix, multi, ids, tmp_path):
    model = tiny(arch, multi, seed=1)
    path = tmp_path / f"m{suffix}"
    save_model(model, path, task=multi, seed=1)
    loaded, meta = load_model(path, task=multi)
    assert type(loaded) is type(model) and not loaded.training and meta.arch == arch
    with torch.no_grad():
        want = model.run(ids)
        assert torch.equal(loaded.run(ids), want)
        assert not torch.equal(tiny(arch, multi, seed=2).run(ids), want)  # weights matter


def test_metadata_round_trip_is_the_same_in_both_encodings(multi, tmp_path):
    model = tiny("transformer", multi)
    training = {"steps": 3, "loss": 0.25, "schedule": [1, 2], "note": None, "ok": True,
                "nested": {"lr": 1e-3}}
    want = ModelMeta(arch="transformer", config=model.config_dict(), task_name="multi_object",
                     task_version=multi.version, vocabulary=multi.vocabulary, seed=7,
                     training=training, format_version=FORMAT_VERSION)
    for suffix in SUFFIXES:
        save_model(model, tmp_path / f"m{suffix}", task=multi, seed=7, training=training)
        assert load_model(tmp_path / f"m{suffix}")[1] == want


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_file_holds_exactly_the_documented_keys(suffix, multi, tmp_path):
    path = saved(tmp_path, multi, suffix)
    raw = read_raw(path)
    assert set(raw) == KEYS
    assert raw["format"] == "numbench-model" and raw["format_version"] == 1
    assert raw["task"] == {"name": "multi_object", "version": multi.version}
    assert raw["vocabulary"] == list(multi.vocabulary) and raw["seed"] == 0
    if suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            assert set(f.metadata()) == {"numbench"}


def test_model_sha256_is_the_file_hash(multi, tmp_path):
    path = saved(tmp_path, multi, ".pt")
    assert model_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(NumbenchError, match="no such model file"):
        model_sha256(tmp_path / "absent.pt")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_save_leaves_no_temp_files_and_overwrites(suffix, multi, tmp_path):
    path = saved(tmp_path, multi, suffix)
    save_model(tiny("lstm", multi), path, task=multi, seed=3)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert load_model(path)[1].arch == "lstm"


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_failed_save_keeps_the_old_file(suffix, multi, tmp_path, monkeypatch):
    path = saved(tmp_path, multi, suffix)
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(NumbenchError, match="cannot write model file") as info:
        save_model(tiny("lstm", multi), path, task=multi, seed=3)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_save_refuses_what_load_would_refuse(multi, tmp_path):
    model = tiny("gru", multi)
    with pytest.raises(NumbenchError, match=r"unsupported model file suffix '\.bin'"):
        save_model(model, tmp_path / "m.bin", task=multi, seed=0)
    with pytest.raises(NumbenchError, match="differs from task same_object"):
        save_model(model, tmp_path / "m.pt", task=load_task("same_object"), seed=0)
    with pytest.raises(NumbenchError, match="not plain JSON"):
        save_model(model, tmp_path / "m.pt", task=multi, seed=0, training={"x": object()})
    with pytest.raises(NumbenchError, match="field 'seed': must be int"):
        save_model(model, tmp_path / "m.pt", task=multi, seed="0")
    assert list(tmp_path.iterdir()) == []


# --- files that cannot be read ---------------------------------------------------------------

def test_missing_file(tmp_path):
    expect_error(tmp_path / "absent.safetensors", "no such model file")


def test_unknown_suffix(multi, tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(saved(tmp_path, multi, ".pt").read_bytes())
    expect_error(path, "unsupported model file suffix '.bin'")


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("cut", ["half", "empty"])
def test_truncated_file(cut, suffix, multi, tmp_path):
    path = saved(tmp_path, multi, suffix)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if cut == "half" else b"")
    expect_error(path, "truncated or corrupt file (not loaded)")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_random_bytes(suffix, tmp_path):
    path = tmp_path / f"noise{suffix}"
    noise = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0))
    path.write_bytes(bytes(noise.tolist()))
    msg = expect_error(path, "(not loaded)")
    assert "truncated or corrupt" in msg or "unsafe or unsupported content" in msg


def test_pickled_module_is_refused(multi, tmp_path):
    path = tmp_path / "module.pt"
    torch.save(tiny("gru", multi), path)  # a whole nn.Module: loading it would import code
    expect_error(path, "unsafe or unsupported content (not loaded)")


class _RunsCode:
    """Unpickling this calls exec: what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def test_code_in_a_pickle_never_runs(multi, tmp_path):
    path, marker = saved(tmp_path, multi, ".pt"), tmp_path / "marker"
    raw = read_raw(path)
    raw["training"] = {"note": _RunsCode(marker)}  # otherwise a well-formed file
    torch.save(raw, path)
    expect_error(path, "unsafe or unsupported content (not loaded)")
    assert not marker.exists()
    torch.load(path, weights_only=False)  # non-vacuity: plain unpickling runs the payload
    assert marker.read_text() == "ran"


# --- well-formed files with bad content ------------------------------------------------------

def _drop(key):
    return lambda raw: {k: v for k, v in raw.items() if k != key}


def _set(key, value):
    return lambda raw: {**raw, key: value}


def _config(**changes):
    return lambda raw: {**raw, "config": {**raw["config"], **changes}}


def _tensor(key, value):
    return lambda raw: {**raw, "state_dict": {**raw["state_dict"], key: value}}


def _drop_tensor(key):
    return lambda raw: {**raw, "state_dict": {k: v for k, v in raw["state_dict"].items()
                                              if k != key}}


def _nan(raw):
    t = raw["state_dict"]["readout.2.bias"].clone()
    t[3] = float("nan")
    return _tensor("readout.2.bias", t)(raw)


# (name, mutation of the file's dict, phrase the error must contain, only for .pt)
BAD_CONTENT = [
    ("top-level-list", lambda raw: list(raw), "not a numbench model file", True),
    ("wrong-format", _set("format", "other-model"), "not a numbench model file", False),
    ("format-version-2", _set("format_version", 2), "unsupported format_version 2", False),
    ("format-version-bool", _set("format_version", True), "unsupported format_version True",
     False),
    ("missing-seed", _drop("seed"), "field 'seed': missing key", False),
    ("missing-state-dict", _drop("state_dict"), "field 'state_dict': missing key", True),
    ("extra-key", _set("extra", 1), "field 'extra': unexpected key", False),
    ("seed-str", _set("seed", "0"), "field 'seed': must be int", False),
    ("arch-int", _set("arch", 3), "field 'arch': must be str", False),
    ("task-no-version", _set("task", {"name": "multi_object"}), "field 'task'", False),
    ("empty-vocabulary", _set("vocabulary", []), "field 'vocabulary'", False),
    ("training-list", _set("training", [1]), "field 'training': must be dict", False),
    ("tensor-in-config", _config(d_hidden=torch.tensor(8)), "field 'config': must be plain",
     True),
    ("non-tensor-weight", _tensor("embed.weight", [[0.0]]), "field 'state_dict'", True),
    ("unknown-arch", _set("arch", "nope"), "architecture 'nope' is not registered", False),
    ("unknown-config-key", _config(d_nope=1), "unknown config key 'd_nope'", False),
    ("config-wrong-type", _config(d_hidden="8"), "config key 'd_hidden' of gru must be int",
     False),
    ("config-bad-value", _config(d_hidden=0), "cannot build gru from config", False),
    ("missing-tensor", _drop_tensor("embed.weight"), "missing 1 tensor(s) of gru: embed.weight",
     False),
    ("extra-tensor", _tensor("extra.weight", torch.zeros(2)),
     "1 unexpected tensor(s) for gru: extra.weight", False),
    ("mis-shaped", _tensor("embed.weight", torch.zeros(9, 7)),
     "tensor 'embed.weight' has shape (9, 7), expected (9, 8)", False),
    ("int-tensor", _tensor("embed.weight", torch.zeros(9, 8, dtype=torch.int64)),
     "tensor 'embed.weight' has dtype torch.int64, expected torch.float32", False),
    ("nan", _nan, "tensor 'readout.2.bias' has NaN or inf values", False),
    ("inf", _tensor("rnn.bias_hh_l0", torch.full((24,), float("inf"))),
     "tensor 'rnn.bias_hh_l0' has NaN or inf values", False),
    ("meta-tensor", _tensor("embed.weight", torch.zeros(9, 8, device="meta")),
     "tensor 'embed.weight' holds no data (meta device)", True),
    ("nested-tensor", _tensor("rnn.bias_hh_l0", torch.nested.nested_tensor([torch.zeros(24)])),
     "tensor 'rnn.bias_hh_l0' is not a dense tensor", True),
    ("float8-tensor", _tensor("embed.weight", torch.zeros(9, 8).to(torch.float8_e4m3fn)),
     "tensor 'embed.weight' has dtype torch.float8_e4m3fn", False),
]


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("name,mutate,phrase,pt_only", BAD_CONTENT,
                         ids=[c[0] for c in BAD_CONTENT])
def test_bad_content_is_refused(name, mutate, phrase, pt_only, suffix, multi, tmp_path):
    if pt_only and suffix != ".pt":
        pytest.skip("safetensors cannot hold this (tensors only; metadata is JSON)")
    path = saved(tmp_path, multi, suffix)
    load_model(path)  # the file was good before the mutation
    write_raw(mutate(read_raw(path)), path)
    expect_error(path, phrase)


def _write_safetensors_metadata(path, metadata):
    state = tiny("gru", load_task("multi_object")).state_dict()
    save_file({k: v.clone() for k, v in state.items()}, str(path), metadata=metadata)


@pytest.mark.parametrize("metadata,phrase", [
    (None, "no 'numbench' metadata"),
    ({"numbench": "{not json"}, "'numbench' metadata is not valid JSON"),
    ({"numbench": "[1, 2]"}, "must be a JSON object without 'state_dict'"),
    ({"numbench": json.dumps({"state_dict": {}})}, "without 'state_dict'"),
])
def test_bad_safetensors_metadata(metadata, phrase, tmp_path):
    path = tmp_path / "model.safetensors"
    _write_safetensors_metadata(path, metadata)
    expect_error(path, phrase)


# --- hostile files: refused in one line, before they cost time or memory --------------------

@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_file_is_refused_before_it_costs_anything(name, multi, tmp_path, monkeypatch):
    """Nothing is unpacked beyond the cap and no real model is built for a file whose config
    outgrows its tensors: both are made to fail here, so a refusal that came only after
    them would fail the test rather than spend gigabytes. Each refusal takes well under
    a second and no memory to speak of (see ``hostile_files``)."""
    make, phrase = HOSTILE[name]
    path = make(tmp_path, multi)
    real_load = torch.load

    def load_small(f, *args, **kwargs):  # the zip directory was checked before this
        assert sum(i.file_size for i in zipfile.ZipFile(f).infolist()) < 2**30, "unpacked"
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(files.torch, "load", load_small)
    if "declaring" in name:
        monkeypatch.setattr(files, "build_model", lambda *a: pytest.fail("built a real model"))
    start, peak = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    expect_error(path, phrase)
    assert time.perf_counter() - start < 5
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert grew_mb < 200, f"the refusal took {grew_mb:.0f} MB"


@pytest.mark.parametrize("limit", ["file", "unpacked", "pickle"])
def test_the_size_caps(limit, multi, tmp_path, monkeypatch):
    """Each cap refuses by size alone (lowered here: the real ones are 400 MB and 16 MB)."""
    path = saved(tmp_path, multi, ".pt")
    size = path.stat().st_size
    if limit == "file":
        monkeypatch.setattr(files, "MAX_MODEL_BYTES", size - 1)
        expect_error(path, f"{size:,} bytes, more than the {size - 1:,} a model file may have")
    elif limit == "unpacked":  # deflated, the file itself is under the cap
        save_model(tiny("gru", multi), path, task=multi, seed=0, training={"notes": "x" * 10**5})
        deflated = tmp_path / "deflated.pt"
        with zipfile.ZipFile(path) as zin, zipfile.ZipFile(deflated, "w") as zout:
            for info in zin.infolist():
                zout.writestr(info.filename, zin.read(info), zipfile.ZIP_DEFLATED)
        load_model(deflated)  # torch reads a deflated zip: the cap is what stands in between
        monkeypatch.setattr(files, "MAX_MODEL_BYTES", deflated.stat().st_size + 1)
        expect_error(deflated, "more than the")
        assert "unpacks to" in expect_error(deflated, "(not unpacked)")
    else:
        monkeypatch.setattr(files, "MAX_PICKLE_BYTES", 100)
        expect_error(path, "data.pkl) unpacks to")
    monkeypatch.undo()
    load_model(path)


def test_the_caps_admit_the_largest_model_numbench_trains():
    assert files.MAX_MODEL_BYTES >= MAX_PARAMETERS * 8  # float64, the widest dtype a file may have


def test_a_plain_json_training_record_of_sane_depth_loads(multi, tmp_path):
    """The non-vacuous side of the depth and NaN checks."""
    nested = {"loss": [0.5, 1e308, -0.0]}
    for _ in range(files.MAX_DEPTH - 4):  # training, list, these, {"loss"}, its list
        nested = {"a": nested}
    for suffix in SUFFIXES:
        path = tmp_path / f"model{suffix}"
        save_model(tiny("gru", multi), path, task=multi, seed=0, training={"x": [nested]})
        assert load_model(path)[1].training == {"x": [nested]}


@pytest.mark.parametrize("rope_base", [1.0, 500, 1e6])
def test_a_positive_finite_rope_base_loads(rope_base, multi, tmp_path):
    model = build_model("transformer", {**CONFIGS["transformer"], "rope_base": rope_base},
                        multi.vocabulary)
    path = tmp_path / "model.safetensors"
    save_model(model, path, task=multi, seed=0)
    assert load_model(path)[0].config.rope_base == float(rope_base)


# --- the task the file was trained on -------------------------------------------------------

@pytest.mark.parametrize("suffix", SUFFIXES)
def test_file_vocabulary_must_match_the_task(suffix, multi, tmp_path):
    path = saved(tmp_path, multi, suffix)
    raw = read_raw(path)
    raw["vocabulary"] = raw["vocabulary"][::-1]  # same size: the model itself still builds
    write_raw(raw, path)
    load_model(path)  # fine on its own
    expect_error(path, "differs from task multi_object's", task=multi)


def test_task_name_and_version_must_match(multi, tmp_path):
    path = saved(tmp_path, multi, ".pt")
    expect_error(path, "trained on task 'multi_object', not 'multi_object_mod4'",
                 task=load_task("multi_object_mod4"))
    newer = dataclasses.replace(multi, version=multi.version + 1)
    expect_error(path, f"version {multi.version}, not {multi.version + 1}", task=newer)


# --- the source itself -----------------------------------------------------------------------

def test_files_py_never_unpickles_without_weights_only():
    tree = ast.parse(Path(files.__file__).read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    names = [ast.unparse(c.func) for c in calls]
    assert not {"pickle.load", "pickle.loads", "pickle.Unpickler"} & set(names)
    torch_loads = [c for c, n in zip(calls, names) if n == "torch.load"]
    assert torch_loads  # non-vacuity: the check below looked at something
    for call in torch_loads:
        kw = {k.arg: k.value for k in call.keywords}
        flag = kw.get("weights_only")
        assert isinstance(flag, ast.Constant) and flag.value is True, ast.unparse(call)
