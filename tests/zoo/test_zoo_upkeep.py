"""Zoo mistakes and accidents: a zoo_dir that is a file, a deleted index, interrupted
publishes, and the one-file checkpoint ``autobin binarize -o`` writes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
import timm
import torch

import autobin
from autobin.zoo import (
    ModelNotFoundError,
    ZooError,
    ZooFormatError,
    ZooIntegrityError,
    ZooNameError,
    clean_interrupted,
    list_models,
    load,
    load_file,
    publish,
    rebuild_index,
    save_file,
    verify,
)


def _publish(kit, zoo, name, seed=0):
    model, x = kit.make("tiny-cnn", seed=seed)
    publish(model, name, zoo_dir=zoo, arch="tiny-cnn", recipe=kit.sample_recipe(),
            rebuild=kit.rebuild)  # fmt: skip
    return model, x


# ------------------------------------------------------------------------------ zoo_dir a file
def test_zoo_dir_that_is_a_file_is_an_error(tmp_path, kit):
    not_a_dir = tmp_path / "zoo"
    not_a_dir.write_text("oops")
    model, _ = kit.make("tiny-cnn")
    calls = [
        lambda: list_models(not_a_dir),
        lambda: load("x", zoo_dir=not_a_dir, rebuild=kit.rebuild),
        lambda: verify("x", zoo_dir=not_a_dir),
        lambda: publish(model, "x", zoo_dir=not_a_dir, arch="tiny-cnn", rebuild=kit.rebuild),
        lambda: rebuild_index(not_a_dir),
    ]
    for call in calls:
        with pytest.raises(ZooFormatError, match="is a file, not a directory"):
            call()
    assert not_a_dir.read_text() == "oops"


# ------------------------------------------------------------------------------ deleted index
def test_deleted_index_is_rebuilt_from_the_entries(zoo, kit):
    model_a, x = _publish(kit, zoo, "a-cnn", seed=0)
    _publish(kit, zoo, "b-cnn", seed=1)
    before = (zoo / "index.json").read_text()
    (zoo / "index.json").unlink()
    missing = r"index.json is missing but .* holds 2 entry folder\(s\) \(a-cnn, b-cnn\)"
    with pytest.raises(ZooIntegrityError, match=missing + ".*autobin zoo --zoo-dir .* reindex"):
        list_models(zoo)  # not an empty list while entries exist
    with pytest.raises(ZooIntegrityError, match="reindex"):  # an index of one would hide two
        _publish(kit, zoo, "c-cnn")
    assert list_models(zoo / "absent") == []
    with pytest.raises(ModelNotFoundError, match="reindex"):
        load("a-cnn", zoo_dir=zoo, rebuild=kit.rebuild)
    done = rebuild_index(zoo)
    assert done["indexed"] == ["a-cnn", "b-cnn"] and done["skipped"] == {}
    assert (zoo / "index.json").read_text() == before  # the same record as publishing wrote
    loaded = load("a-cnn", zoo_dir=zoo, rebuild=kit.rebuild)
    with torch.no_grad():
        assert torch.equal(loaded(x), model_a(x))


def test_rebuild_leaves_out_a_corrupt_entry_and_says_why(zoo, kit):
    _publish(kit, zoo, "good")
    _publish(kit, zoo, "bad", seed=3)
    weights = zoo / "bad" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    (zoo / "index.json").unlink()
    done = rebuild_index(zoo)
    assert done["indexed"] == ["good"]
    assert (
        "sha256 mismatch" in done["skipped"]["bad"]
        and "model.safetensors" in done["skipped"]["bad"]
    )
    assert weights.exists()  # reported, never deleted


# ------------------------------------------------------------------------------ interrupted
def test_folders_of_interrupted_publishes_are_cleaned_up(zoo, kit):
    _publish(kit, zoo, "first")
    # a publish killed after writing its temporary folder: its process no longer exists
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    import socket

    stale = zoo / ".publish-second-abc123"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    (stale / ".owner").write_text(f"{socket.gethostname()} {dead.stdout.strip()}\n")
    replaced = zoo / ".replaced-first-xyz"
    (replaced / "first").mkdir(parents=True)
    live = zoo / ".publish-third-live"  # a publish still running in this process
    live.mkdir()
    (live / ".owner").write_text(f"{socket.gethostname()} {os.getpid()}\n")
    assert sorted(p.name for p in clean_interrupted(zoo)) == [stale.name, replaced.name]
    assert not stale.exists() and not replaced.exists() and live.exists()
    _publish(kit, zoo, "fourth")  # publish cleans up too, and leaves no folder of its own
    leftovers = [p.name for p in zoo.iterdir() if p.name.startswith((".publish", ".replaced"))]
    assert leftovers == [live.name]
    assert not (zoo / "fourth" / ".owner").exists()


# ------------------------------------------------------------------------------ one-file checkpoint
def _binarized(in_chans=1):
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=4, in_chans=in_chans)
    return autobin.binarize(model, example_inputs=torch.randn(1, in_chans, 32, 32))


def test_one_file_checkpoint_round_trip(tmp_path):
    bnn = _binarized().eval()
    path = save_file(bnn, tmp_path / "bnn.pt")
    assert path.read_bytes()[8:9] == b"{"  # safetensors (a JSON header), not a pickle
    x = torch.randn(2, 1, 32, 32)
    for loaded in (autobin.load(path), load_file(path), autobin.load(path, keep_latent=True)):
        assert loaded.autobin_zoo_config["architecture"]["kwargs"] == {"num_classes": 4,
                                                                        "in_chans": 1}  # fmt: skip
        with torch.no_grad():
            assert torch.equal(loaded.eval()(x), bnn(x))
    assert verify(path)["checked_against"].endswith("(embedded sha256)")


def test_one_file_checkpoint_damage_is_refused(tmp_path):
    path = save_file(_binarized(), tmp_path / "bnn.safetensors")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ZooIntegrityError, match="corrupt"):
        autobin.load(path)
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ZooFormatError, match="not a readable safetensors file"):
        autobin.load(path)
    with pytest.raises(IsADirectoryError):
        save_file(_binarized(), tmp_path)
    assert issubclass(ZooError, autobin.AutobinError)


def _rewrite_header(path, change) -> None:
    """Apply ``change`` to the parsed safetensors header of ``path``; same length, same data."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    change(header)
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= n
    path.write_bytes(data[:8] + text.ljust(n) + data[8 + n :])


def _swap_two_same_shaped_tensors(header) -> tuple[str, str]:
    by_shape: dict = {}
    for name, info in header.items():
        if name != "__metadata__":
            by_shape.setdefault((info["dtype"], tuple(info["shape"])), []).append(name)
    a, b = next(names for names in by_shape.values() if len(names) >= 2)[:2]
    header[a]["data_offsets"], header[b]["data_offsets"] = (
        header[b]["data_offsets"], header[a]["data_offsets"]
    )  # fmt: skip
    return a, b


def test_one_file_checkpoint_with_swapped_tensor_offsets_fails_verify(tmp_path):
    path = save_file(_binarized(), tmp_path / "bnn.safetensors")
    _rewrite_header(path, _swap_two_same_shaped_tensors)
    with pytest.raises(ZooIntegrityError, match=r"sha256 of the file .* corrupt or was modified"):
        verify(path)
    with pytest.raises(ZooIntegrityError):
        autobin.load(path)
    # the embedded config is covered too
    path = save_file(_binarized(), tmp_path / "bnn2.safetensors")

    def rename(header):
        meta = header["__metadata__"]
        meta["autobin_config"] = meta["autobin_config"].replace('"bnn2"', '"bnn3"')

    _rewrite_header(path, rename)
    with pytest.raises(ZooIntegrityError):
        verify(path)


def test_one_file_checkpoint_of_the_earlier_format_still_loads(tmp_path):
    """Files written before the whole-file sha256 carry ``data_sha256`` of the tensor bytes."""
    bnn = _binarized().eval()
    path = save_file(bnn, tmp_path / "old.safetensors")
    data = path.read_bytes()
    tensor_bytes = data[8 + int.from_bytes(data[:8], "little") :]

    def to_legacy(header):
        meta = header["__metadata__"]
        del meta["file_sha256"]
        meta["data_sha256"] = hashlib.sha256(tensor_bytes).hexdigest()

    _rewrite_header(path, to_legacy)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(autobin.load(path)(x), bnn(x))


@pytest.mark.parametrize("name", ["resnet18-adabin\n", "a\n", "resnet18\nb"])
def test_zoo_names_with_a_newline_are_refused(zoo, kit, name):
    model, _ = kit.make("tiny-cnn")
    with pytest.raises(ZooNameError, match="invalid zoo model name"):
        publish(model, name, zoo_dir=zoo, arch="tiny-cnn", rebuild=kit.rebuild)
    assert not zoo.exists() or not any(zoo.iterdir())


def _write_probe(tmp_path, kind):
    path = tmp_path / {"torch": "model.pt", "garbage": "model.bin", "float": "weights.safetensors",
                       "empty": "empty.safetensors", "missing": "missing.safetensors",
                       "folder": "folder"}[kind]  # fmt: skip
    if kind == "torch":
        torch.save({"weight": torch.zeros(3)}, path)
    elif kind == "garbage":
        path.write_bytes(b"hello, this is not a checkpoint")
    elif kind == "float":
        from safetensors.torch import save_file as save_plain

        save_plain({"weight": torch.zeros(3)}, path)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "folder":
        path.mkdir()
    return path


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("missing", ModelNotFoundError, r"missing.safetensors: no such file or folder; give an "),
        ("torch", ZooFormatError, r"model.pt: a PyTorch checkpoint \(torch.save\), not an autob"),
        ("garbage", ZooFormatError, r"model.bin: not a safetensors file \(no JSON header"),
        ("float", ZooFormatError, r"weights.safetensors: a safetensors file without autobin's"),
        ("empty", ZooFormatError, r"empty.safetensors: file is 0 bytes, too short"),
        ("folder", ModelNotFoundError, r"folder is a folder but not a zoo entry \(it has no SHA"),
    ],
)
def test_autobin_load_of_what_is_not_an_autobin_file_says_what_it_is(tmp_path, kind, error,
                                                                      message):  # fmt: skip
    path = _write_probe(tmp_path, kind)
    with pytest.raises(error, match=message) as err:
        autobin.load(path, zoo_dir=tmp_path / "zoo")
    assert "\n" not in str(err.value)
