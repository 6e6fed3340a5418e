"""TrainConfig: defaults, validation errors naming key and allowed values, YAML loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from autobin.train import TrainConfig, TrainConfigError, load_train_config


def test_defaults_and_round_trip() -> None:
    config = TrainConfig()
    assert (config.optimizer, config.kd_weight, config.ce_weight) == ("adam", 1.0, 0.0)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.replace(epochs=5).epochs == 5
    assert TrainConfig(lr=1).lr == 1.0 and isinstance(TrainConfig(lr=1).lr, float)


def test_unknown_key_names_key_suggestion_and_allowed() -> None:
    with pytest.raises(TrainConfigError) as info:
        TrainConfig.from_dict({"learning_rate": 0.1, "epochs": 2})
    message = str(info.value)
    assert "'learning_rate'" in message and "Allowed keys" in message and "epochs" in message
    with pytest.raises(TrainConfigError, match="Did you mean 'optimizer'"):
        TrainConfig.from_dict({"optimiser": "sgd"})


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("optimizer", "rmsprop", "one of 'adam', 'sgd'"),
        ("precision", "fp8", "'auto', 'fp32', 'bf16', 'fp16'"),
        ("epochs", 0, "> 0"),
        ("epochs", 2.5, "an integer"),
        ("two_step", "yes", "true or false"),
        ("lr", "fast", "a number"),
        ("step1_fraction", 1.0, "(0, 1)"),
        ("device", "gpu", "'cuda:N'"),
        ("feature_layers", "layer1", "a list of strings"),
    ],
)
def test_bad_values_name_key_and_allowed(key: str, value: object, fragment: str) -> None:
    with pytest.raises(TrainConfigError) as info:
        TrainConfig.from_dict({key: value})
    assert repr(key) in str(info.value) and fragment in str(info.value)


def test_cross_field_checks() -> None:
    with pytest.raises(TrainConfigError, match="at least 2 with two_step"):
        TrainConfig(epochs=1, two_step=True)
    with pytest.raises(TrainConfigError, match="feature_layers"):
        TrainConfig(feature_weight=1.0)
    with pytest.raises(TrainConfigError, match="at least one of kd, ce and feature"):
        TrainConfig(kd_weight=0.0)
    assert TrainConfig(epochs=10, two_step=True, step1_fraction=0.3).step1_epochs == 3


def test_yaml_loading_names_file(tmp_path: Path) -> None:
    good = tmp_path / "train.yaml"
    good.write_text("train:\n  epochs: 3\n  optimizer: sgd\n  feature_layers: [layer1, 're:b.*']\n")
    config = TrainConfig.from_yaml(good, key="train")
    assert (config.epochs, config.optimizer) == (3, "sgd")
    assert config.feature_layers == ("layer1", "re:b.*")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\noptimizer: adamw\n")
    with pytest.raises(TrainConfigError, match=r"bad\.yaml.*'optimizer'.*'adam', 'sgd'"):
        TrainConfig.from_yaml(bad)
    assert load_train_config(None, epochs=2).epochs == 2
    assert load_train_config({"epochs": 4}, lr=0.5) == TrainConfig(epochs=4, lr=0.5)
