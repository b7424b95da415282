"""Model files made to hurt the reader, written without the resources they would cost it:
a pickle nesting 50,000 deep (torch.save itself would hit Python's recursion limit), and a
``.pt`` whose 2 MB of deflated zeros unpack to 2 GiB (written in well under a second)."""

import struct
import zipfile
import zlib
from pathlib import Path

MARK = "NESTMARK"  # a string in the file's ``training``, replaced by the hostile value
_CHUNK = 2**24


def rewrite_pt(src: Path, dst: Path, *, pkl: bytes | None = None,
               big: tuple[str, int] | None = None) -> None:
    """Copy the zip ``src`` to ``dst``; ``pkl`` replaces its data.pkl, and ``big=(name,
    nbytes)`` makes that record ``nbytes`` zero bytes, deflated (a multiple of 16 MiB)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if pkl is not None and info.filename.endswith("/data.pkl"):
                zout.writestr(info.filename, pkl)
            elif big and info.filename == big[0]:
                _write_deflated_zeros(zout, info.filename, big[1])
            else:
                zout.writestr(info, zin.read(info))


def _write_deflated_zeros(zout: zipfile.ZipFile, name: str, nbytes: int) -> None:
    """A record of ``nbytes`` zeros: after a full flush, deflate's output for each 16 MiB
    chunk is the same, so it is compressed once and repeated (the CRC is real)."""
    chunk = bytes(_CHUNK)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(nbytes // _CHUNK):
        crc = zlib.crc32(chunk, crc)
    data = block * (nbytes // _CHUNK) + c.flush()
    info = zipfile.ZipInfo(name)
    info.compress_type, info.file_size, info.compress_size, info.CRC = (
        zipfile.ZIP_DEFLATED, nbytes, len(data), crc)
    info.header_offset = zout.fp.tell()
    zout.fp.write(info.FileHeader(zip64=nbytes >= zipfile.ZIP64_LIMIT))
    zout.fp.write(data)
    zout.filelist.append(info)
    zout.NameToInfo[name] = info
    zout.start_dir = zout.fp.tell()


def _pickle(src: Path) -> bytes:
    with zipfile.ZipFile(src) as z:
        return z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))


def deep_pt(src: Path, dst: Path, depth: int) -> None:
    """``src`` (saved with ``MARK`` in its training) with the mark replaced by
    ``{"a": {"a": ... {}}}`` nesting ``depth`` deep, written as pickle opcodes."""
    pkl = _pickle(src)
    mark = b"X" + struct.pack("<I", len(MARK)) + MARK.encode()
    assert pkl.count(mark) == 1
    nested = b"}X\x01\x00\x00\x00a" * depth + b"}" + b"s" * depth  # EMPTY_DICT, key; SETITEM
    rewrite_pt(src, dst, pkl=pkl.replace(mark, nested))


def bomb_pt(src: Path, dst: Path, nbytes: int) -> None:
    """``src`` with its first tensor's storage declared, and stored, as ``nbytes`` bytes:
    zeros, deflated. Without a check, torch.load unpacks all of it and the file loads."""
    with zipfile.ZipFile(src) as z:
        name = next(n for n in z.namelist() if n.endswith("/data/0"))
    pkl = _pickle(src)
    # ('storage', torch.FloatStorage, '0', 'cpu', numel): numel follows 'cpu' and a BINPUT
    i = pkl.index(b"X\x03\x00\x00\x00cpu") + 8 + 2
    width = {b"K": 2, b"M": 3}[pkl[i:i + 1]]  # BININT1 or BININT2
    pkl = pkl[:i] + b"J" + struct.pack("<i", nbytes // 4) + pkl[i + width:]
    rewrite_pt(src, dst, pkl=pkl, big=(name, nbytes))


# --- the files: each with the phrase of its one-line refusal ------------------------------

def _raw(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def _write(raw: dict, path: Path) -> None:
    """Write a file's raw document in the encoding ``path``'s suffix names."""
    import json

    import torch
    from safetensors.torch import save_file

    if path.suffix == ".pt":
        torch.save(raw, path)
    else:
        meta = {k: v for k, v in raw.items() if k != "state_dict"}
        save_file(raw["state_dict"], str(path), metadata={"numbench": json.dumps(meta)})


def _saved(folder: Path, task, arch: str, config: dict, suffix=".pt", training=None) -> Path:
    from numbench.models import build_model
    from numbench.models.files import save_model

    path = folder / f"src_{arch}{suffix}"
    save_model(build_model(arch, config, task.vocabulary), path, task=task, seed=0,
               training=training or {})
    return path


def _deep_safetensors(folder, task, depth=200_000):
    import json

    src = _saved(folder, task, "gru", {"d_embed": 8, "d_hidden": 8, "d_readout": 16})
    raw = _raw(src)
    meta = json.dumps({k: v for k, v in raw.items() if k != "state_dict"})
    meta = meta.replace('"training": {}', '"training": ' + '{"a": ' * depth + "{}" + "}" * depth)
    from safetensors.torch import save_file

    path = folder / "deep.safetensors"
    save_file(raw["state_dict"], str(path), metadata={"numbench": meta})
    return path


def _changed(folder, task, arch, config, suffix, change):
    src = _saved(folder, task, arch, config, suffix=".pt")
    raw = _raw(src)
    change(raw)
    path = folder / f"changed{suffix}"
    _write(raw, path)
    return path


TINY = {"d_embed": 8, "d_hidden": 8, "d_readout": 16}
TINY_TRANSFORMER = {"d_model": 16, "d_mlp": 32}

#: name: (make(folder, task) -> path, the phrase its refusal must hold)
HOSTILE = {
    "pt-training-50000-deep": (
        lambda f, t: (deep_pt(_saved(f, t, "gru", TINY, training={"x": MARK}),
                              f / "deep.pt", 50_000), f / "deep.pt")[1],
        "field 'training': nests more than 64 deep"),
    "safetensors-metadata-200000-deep": (_deep_safetensors, "'numbench' metadata nests too deep"),
    **{f"{suffix[1:]}-training-{name}": (
        lambda f, t, suffix=suffix, value=value: _changed(
            f, t, "gru", TINY, suffix, lambda r: r["training"].update(loss=[0.5, {"x": value}])),
        f"field 'training': must be plain JSON data, without NaN or inf (holds {value})")
       for suffix in (".pt", ".safetensors")
       for name, value in (("nan", float("nan")), ("inf", float("inf")), ("-inf", -float("inf")))},
    **{f"{suffix[1:]}-rope_base-{name}": (
        lambda f, t, suffix=suffix, value=value: _changed(
            f, t, "transformer", TINY_TRANSFORMER, suffix,
            lambda r: r["config"].update(rope_base=value)),
        f"config key 'rope_base' of transformer must be {phrase}" if phrase else
        f"field 'config': must be plain JSON data, without NaN or inf (holds {value})")
       for suffix in (".pt", ".safetensors")
       for name, value, phrase in (
           ("nan", float("nan"), None), ("inf", float("inf"), None),
           ("0", 0.0, "> 0, got 0.0"),
           ("negative", -10000.0, "> 0, got -10000.0"),
           ("10**400", 10**400, "float, got 10000000000"))},
    "pt-training-shared": (
        lambda f, t: _changed(f, t, "gru", TINY, ".pt",
                              lambda r: r["training"].update(a=(x := [1.0]), b=x)),
        "field 'training': must be plain JSON data (an object or list appears twice)"),
    "pt-training-loop": (
        lambda f, t: _changed(f, t, "gru", TINY, ".pt",
                              lambda r: r["training"].update(me=r["training"])),
        "field 'training': must be plain JSON data (an object or list appears twice)"),
    # a 0.7 MB file of a d_hidden=128 GRU: built as declared, 4.8 GB of weights
    "gru-declaring-d_hidden-20000": (
        lambda f, t: _changed(f, t, "gru", {}, ".pt",
                              lambda r: r["config"].update(d_hidden=20000)),
        "config {'d_embed': 128, 'd_hidden': 20000, 'd_readout': 512} declares a model far "
        "larger than the file's 9 tensors"),
    # a 2-layer transformer's file: 200,000 layers take minutes to build, even on meta
    "transformer-declaring-200000-layers": (
        lambda f, t: _changed(f, t, "transformer", TINY_TRANSFORMER, ".pt",
                              lambda r: r["config"].update(n_layers=200_000)),
        "declares a model far larger than the file's 29 tensors"),
    # 2 MB of deflated zeros that torch.load would unpack to 2 GiB
    "pt-deflating-to-2GiB": (
        lambda f, t: (bomb_pt(_saved(f, t, "gru", TINY), f / "bomb.pt", 2**31), f / "bomb.pt")[1],
        "unpacks to 2,147,48"),
}
