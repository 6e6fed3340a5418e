"""publish / load / list / show / verify / publish_run (autobin.zoo) on hand-built models."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import autobin.zoo.publishing as zoo_publishing
from autobin.zoo import (
    ModelNotFoundError,
    ZooError,
    ZooFormatError,
    ZooIntegrityError,
    list_models,
    load,
    publish,
    publish_run,
    read_index,
    show,
    verify,
)
from autobin.zoo.index import sha256_file

METRICS = {"top1": 61.25, "top5": 83.5}


def _publish(kit, zoo, arch="tiny-cnn", name="tiny", **kw):
    model, x = kit.make(arch)
    kw.setdefault("metrics", METRICS)
    path = publish(model, name, zoo_dir=zoo, arch=arch, arch_kwargs={}, **kw)
    return model, x, path


def _rewrite_index_hash(zoo, name, fname):
    index = json.loads((zoo / "index.json").read_text())
    index["models"][name]["files"][fname] = sha256_file(zoo / name / fname)
    (zoo / "index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("arch", ["tiny-cnn", "tiny-baselines", "tiny-tokens"])
def test_publish_load_identical_outputs(kit, zoo, arch):
    model, x, path = _publish(kit, zoo, arch, name=f"{arch}-v1")
    assert sorted(p.name for p in path.iterdir()) == [
        "README.md", "SHA256SUMS", "config.json", "model.safetensors",
    ]  # fmt: skip
    loaded = load(f"{arch}-v1", zoo_dir=zoo, rebuild=kit.rebuild)
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.autobin_zoo_config["architecture"]["name"] == arch
    by_path = load(path, zoo_dir=zoo, rebuild=kit.rebuild)  # checked against SHA256SUMS
    with torch.no_grad():
        assert torch.equal(by_path(x), model(x))


def test_index_config_and_listing(kit, zoo):
    _publish(kit, zoo, dataset="mnist", teacher={"arch": "resnet34"}, schedule={"epochs": 3})
    index = read_index(zoo)
    entry = index["models"]["tiny"]
    assert entry["path"] == "tiny" and entry["metrics"] == METRICS and entry["created"]
    for fname, digest in entry["files"].items():
        assert sha256_file(zoo / "tiny" / fname) == digest
    assert [m["name"] for m in list_models(zoo)] == ["tiny"]
    config = show("tiny", zoo_dir=zoo)
    assert config["format_version"] == 1 and config["autobin_version"]
    assert config["architecture"] == {"library": "timm", "name": "tiny-cnn", "kwargs": {}}
    assert config["dataset"] == "mnist" and config["teacher"] == {"arch": "resnet34"}
    assert config["schedule"] == {"epochs": 3} and config["metrics"] == METRICS
    w = config["weights"]
    assert w["file"] == "model.safetensors" and w["float_dtype"] == "float32"
    assert (
        w["binary_layers"] == 5
        and w["file_bytes"] == (zoo / "tiny/model.safetensors").stat().st_size
    )
    report = verify("tiny", zoo_dir=zoo)
    assert report["name"] == "tiny" and set(report["files"]) >= {"config.json", "README.md"}
    assert list_models(zoo / "nowhere") == []


def test_model_card(kit, zoo):
    _publish(kit, zoo, dataset="imagenet-1k", license="mit")
    text = (zoo / "tiny" / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["library_name"] == "autobin" and meta["license"] == "mit"
    assert "binary-neural-network" in meta["tags"] and meta["datasets"] == ["imagenet-1k"]
    results = meta["model-index"][0]["results"][0]
    assert {m["type"]: m["value"] for m in results["metrics"]} == METRICS
    body = text.split("---\n", 2)[2]
    for needle in (
        "| top1 | 61.25 |",
        "share of MACs binary",
        "BOPs",
        "FLOPs",
        "OPs = BOPs/64 + FLOPs",
        "float32",
        "compression",
        'autobin.zoo.load("tiny")',
    ):
        assert needle in body, needle


def test_card_shows_report_totals(kit, zoo):
    model, _ = kit.make("tiny-cnn")

    class Report:
        def to_dict(self):
            return {
                "totals": {
                    "binary_mac_share": 0.9,
                    "bops": 64_000_000,
                    "flops": 2_000_000,
                    "ops": 3_000_000.0,
                    "float_size_bytes": 1000,
                    "packed_size_bytes": 100,
                },
                "layers": [],
            }

    from autobin.model_info import ModelInfo, attach_info

    attach_info(model, ModelInfo("plain", None, None, Report()))
    publish(model, "r", zoo_dir=zoo, arch="tiny-cnn", arch_kwargs={})
    assert show("r", zoo_dir=zoo)["report"]["totals"]["bops"] == 64_000_000
    body = (zoo / "r" / "README.md").read_text()
    assert "| share of MACs binary | 90.0 % |" in body and "64.00 M" in body


def test_float16_and_keep_latent_entries(kit, zoo):
    model, x, _ = _publish(kit, zoo, name="f32")
    _publish(kit, zoo, name="f16", float_dtype="float16")
    _publish(kit, zoo, name="latent", keep_latent=True)
    sizes = {n: show(n, zoo_dir=zoo)["weights"]["file_bytes"] for n in ("f32", "f16", "latent")}
    assert sizes["f16"] < sizes["f32"] < sizes["latent"]
    f16 = load("f16", zoo_dir=zoo, rebuild=kit.rebuild)
    with torch.no_grad():
        torch.testing.assert_close(f16(x), model(x), rtol=0.05, atol=0.05)
    trainable = load("latent", zoo_dir=zoo, rebuild=kit.rebuild, keep_latent=True)
    assert not trainable[3].frozen and trainable[3].weight.requires_grad
    with torch.no_grad():
        assert torch.equal(trainable(x), model(x))
    with pytest.raises(ZooFormatError, match="without latent weights"):
        load("f32", zoo_dir=zoo, rebuild=kit.rebuild, keep_latent=True)


# ----------------------------------------------------------------------------- corruption
def _flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("by", ["name", "path"])
def test_flipped_byte_is_refused(kit, zoo, by):
    _, _, path = _publish(kit, zoo)
    weights = path / "model.safetensors"
    _flip_byte(weights, weights.stat().st_size - 10)
    target = "tiny" if by == "name" else path
    with pytest.raises(ZooIntegrityError, match=r"model\.safetensors: sha256 mismatch"):
        load(target, zoo_dir=zoo, rebuild=kit.rebuild)
    with pytest.raises(ZooIntegrityError, match=r"model\.safetensors"):
        verify(target, zoo_dir=zoo)


def test_truncated_file_is_refused(kit, zoo):
    _, _, path = _publish(kit, zoo)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ZooIntegrityError, match=r"model\.safetensors: sha256 mismatch"):
        load("tiny", zoo_dir=zoo, rebuild=kit.rebuild)
    # without hash checks the format check still refuses it, naming the file
    _rewrite_index_hash(zoo, "tiny", "model.safetensors")
    with pytest.raises(ZooFormatError, match=r"model\.safetensors"):
        load("tiny", zoo_dir=zoo, rebuild=kit.rebuild, verify=False)


def test_edited_config_is_refused(kit, zoo):
    _, _, path = _publish(kit, zoo)
    config = json.loads((path / "config.json").read_text())
    config["metrics"]["top1"] = 99.9
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ZooIntegrityError, match=r"config\.json: sha256 mismatch"):
        load("tiny", zoo_dir=zoo, rebuild=kit.rebuild)
    with pytest.raises(ZooIntegrityError, match=r"config\.json"):
        show("tiny", zoo_dir=zoo)


def test_wrong_hash_in_index_is_refused(kit, zoo):
    _publish(kit, zoo)
    index = json.loads((zoo / "index.json").read_text())
    index["models"]["tiny"]["files"]["model.safetensors"] = "0" * 64
    (zoo / "index.json").write_text(json.dumps(index))
    with pytest.raises(ZooIntegrityError, match=r"model\.safetensors: sha256 mismatch"):
        load("tiny", zoo_dir=zoo, rebuild=kit.rebuild)


def test_tampered_readme_and_missing_file(kit, zoo):
    _, _, path = _publish(kit, zoo)
    (path / "README.md").write_text("hello")
    with pytest.raises(ZooIntegrityError, match=r"README\.md"):
        verify("tiny", zoo_dir=zoo)
    (path / "README.md").unlink()
    with pytest.raises(ZooIntegrityError, match=r"README\.md: file listed in .* is missing"):
        verify("tiny", zoo_dir=zoo)


def test_edited_recipe_is_refused_even_with_fixed_hashes(kit, zoo):
    _, _, path = _publish(kit, zoo, recipe=kit.sample_recipe(), rebuild=kit.rebuild)
    config = json.loads((path / "config.json").read_text())
    assert config["recipe"] == kit.sample_recipe() and len(config["recipe_sha256"]) == 64
    config["recipe_sha256"] = "f" * 64
    (path / "config.json").write_text(json.dumps(config))
    _rewrite_index_hash(zoo, "tiny", "config.json")
    with pytest.raises(ZooFormatError, match=r"config\.json: the embedded recipe's sha256"):
        load("tiny", zoo_dir=zoo, rebuild=kit.rebuild)


def test_invalid_config_is_refused_naming_key(kit, zoo):
    _, _, path = _publish(kit, zoo)
    config = json.loads((path / "config.json").read_text())
    config["format_version"] = 99
    (path / "config.json").write_text(json.dumps(config))
    _rewrite_index_hash(zoo, "tiny", "config.json")
    with pytest.raises(ZooFormatError, match=r"config\.json: entry format version 99"):
        show("tiny", zoo_dir=zoo)
    del config["architecture"]
    config["format_version"] = 1
    (path / "config.json").write_text(json.dumps(config))
    _rewrite_index_hash(zoo, "tiny", "config.json")
    with pytest.raises(ZooFormatError, match=r"missing required key .architecture\.library."):
        show("tiny", zoo_dir=zoo)


# ----------------------------------------------------------------------------- atomicity
def _zoo_state(zoo):
    return sorted(p.relative_to(zoo).as_posix() for p in zoo.rglob("*") if p.name != ".index.lock")


def test_interrupted_publish_leaves_zoo_consistent(kit, zoo, monkeypatch):
    model, _, _ = _publish(kit, zoo, name="keep")
    index_before = (zoo / "index.json").read_bytes()
    state_before = _zoo_state(zoo)

    def boom(*args, **kwargs):
        raise RuntimeError("interrupted")

    for where in ("render_card", "write_index", "save_packed"):
        with monkeypatch.context() as m:
            m.setattr(zoo_publishing, where, boom)
            with pytest.raises(RuntimeError, match="interrupted"):
                publish(model, "new", zoo_dir=zoo, arch="tiny-cnn", arch_kwargs={})
        assert (zoo / "index.json").read_bytes() == index_before, where
        assert _zoo_state(zoo) == state_before, where
    verify("keep", zoo_dir=zoo)
    # the new name is free: nothing half-written blocks it
    publish(model, "new", zoo_dir=zoo, arch="tiny-cnn", arch_kwargs={})
    assert [e["name"] for e in list_models(zoo)] == ["keep", "new"]


def test_interrupted_overwrite_keeps_old_entry(kit, zoo, monkeypatch):
    model, x, _ = _publish(kit, zoo, name="keep")
    index_before = (zoo / "index.json").read_bytes()
    other, _ = kit.make("tiny-cnn", seed=5)
    monkeypatch.setattr(
        zoo_publishing, "write_index", lambda *a, **k: (_ for _ in ()).throw(OSError("disk"))
    )
    with pytest.raises(OSError, match="disk"):
        publish(other, "keep", zoo_dir=zoo, arch="tiny-cnn", arch_kwargs={}, overwrite=True)
    monkeypatch.undo()
    assert (zoo / "index.json").read_bytes() == index_before
    loaded = load("keep", zoo_dir=zoo, rebuild=kit.rebuild)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_overwrite(kit, zoo):
    _publish(kit, zoo, name="m")
    other, x = kit.make("tiny-cnn", seed=3)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        publish(other, "m", zoo_dir=zoo, arch="tiny-cnn", arch_kwargs={})
    publish(
        other, "m", zoo_dir=zoo, arch="tiny-cnn", arch_kwargs={}, overwrite=True, metrics={"a": 1}
    )
    assert list_models(zoo)[0]["metrics"] == {"a": 1}
    with torch.no_grad():
        assert torch.equal(load("m", zoo_dir=zoo, rebuild=kit.rebuild)(x), other(x))
    assert _zoo_state(zoo) == sorted(
        ["index.json", "m", "m/README.md", "m/SHA256SUMS", "m/config.json", "m/model.safetensors"]
    )


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("name", ["", "../evil", "a/b", ".hidden", "x" * 129, "sp ace", "a..b"])
def test_bad_names_are_refused(kit, zoo, name):
    model, _ = kit.make("tiny-cnn")
    with pytest.raises(ValueError, match="invalid zoo model name"):
        publish(model, name, zoo_dir=zoo, arch="tiny-cnn")
    assert not zoo.exists()


def test_publish_argument_errors(kit, zoo):
    model, _ = kit.make("tiny-cnn")
    with pytest.raises(ValueError, match="pass arch="):
        publish(model, "a", zoo_dir=zoo)
    with pytest.raises(ValueError, match="finite number"):
        publish(model, "a", zoo_dir=zoo, arch="x", metrics={"top1": "high"})
    with pytest.raises(ValueError, match="dataset must be JSON"):
        publish(model, "a", zoo_dir=zoo, arch="x", dataset=object())
    with pytest.raises(ValueError, match="float_dtype"):
        publish(model, "a", zoo_dir=zoo, arch="x", float_dtype="int8")
    with pytest.raises(ValueError, match="no binary layers"):
        publish(torch.nn.Linear(2, 2), "a", zoo_dir=zoo, arch="x")
    with pytest.raises(ValueError, match="arch_kwargs"):  # rebuild check catches wrong kwargs
        publish(
            model,
            "a",
            zoo_dir=zoo,
            arch="tiny-cnn",
            arch_kwargs={"num_classes": 9},
            rebuild=kit.rebuild,
        )
    assert list_models(zoo) == []


def test_unknown_model(kit, zoo):
    _publish(kit, zoo)
    with pytest.raises(ModelNotFoundError, match=r"no model 'nope'.*\['tiny'\]"):
        load("nope", zoo_dir=zoo, rebuild=kit.rebuild)


def test_entry_without_recipe_needs_rebuild(kit, zoo):
    _publish(kit, zoo)
    with pytest.raises(ZooError, match=r"embeds no recipe.*rebuild="):
        load("tiny", zoo_dir=zoo)


def test_unknown_timm_architecture_is_explained(kit, zoo):
    with pytest.raises(ZooFormatError, match="'tiny-cnn' is not a timm architecture"):
        _publish(kit, zoo, recipe=kit.sample_recipe())
    _publish(kit, zoo, recipe=kit.sample_recipe(), check_rebuild=False)
    with pytest.raises(ZooFormatError, match="not a timm architecture"):
        load("tiny", zoo_dir=zoo)


# ----------------------------------------------------------------------------- runs
def test_publish_run(kit, zoo, tmp_path):
    model, x = kit.make("tiny-cnn", seed=2)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": model.state_dict(), "epoch": 3}, run / "best.pt")
    (run / "metrics.json").write_text(json.dumps({"top1": 55.5, "epoch": 3, "note": "x"}))
    spec = {
        "arch": "tiny-cnn",
        "arch_kwargs": {},
        "recipe": kit.sample_recipe(),
        "dataset": "mnist",
        "teacher": None,
        "schedule": {"epochs": 3},
    }
    (run / "run.json").write_text(json.dumps(spec))
    path = publish_run(run, "from-run", zoo_dir=zoo, rebuild=kit.rebuild)
    config = show("from-run", zoo_dir=zoo)
    assert config["metrics"] == {"top1": 55.5, "epoch": 3}
    assert config["recipe"] == spec["recipe"] and config["dataset"] == "mnist"
    loaded = load(path, rebuild=kit.rebuild)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    (run / "run.json").write_text(json.dumps({**spec, "archh": 1}))
    with pytest.raises(ZooFormatError, match="unknown keys"):
        publish_run(run, "bad", zoo_dir=zoo, rebuild=kit.rebuild)
