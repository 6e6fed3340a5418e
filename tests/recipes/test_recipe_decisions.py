"""Built-in recipes: loading, decisions on hand-built layers, precedence, name patterns."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from autobin.recipes import LayerInfo, Recipe, list_recipes, load_recipe

BUILTINS = ["adabin", "adabin-full", "bnn", "xnor"]  # classification, Bi-Real shortcuts
ALL_BUILTINS = [*BUILTINS, "adabin-reference", "det-adabin", "ssd-adabin", "ssd300-adabin"]


def conv(name, k=3, cin=64, cout=64, groups=1, type_name="Conv2d", **flags) -> LayerInfo:
    return LayerInfo(name, type_name, "conv", (k, k), groups, cin, cout, **flags)


def linear(name, cin=384, cout=384, **flags) -> LayerInfo:
    return LayerInfo(name, "Linear", "linear", None, 1, cin, cout, **flags)


# A resnet18-like set of layers, plus a depthwise conv and a ViT block linear.
STEM = conv("conv1", k=7, cin=3, is_first=True)
BLOCK_CONV = conv("layer1.0.conv1")
DOWNSAMPLE = conv("layer2.0.downsample.0", k=1, cin=64, cout=128, is_shortcut=True)
FC = linear("fc", cin=512, cout=1000, is_last=True)
DEPTHWISE = conv("blocks.1.conv_dw", cin=96, cout=96, groups=96)
POINTWISE = conv("blocks.1.conv_pw", k=1, cin=96, cout=192)
BLOCK_LINEAR = linear("blocks.0.mlp.fc1", cout=1536)
PATCH_EMBED = conv("patch_embed.proj", k=16, cin=3, cout=384, is_first=True)


def write(tmp_path: Path, body: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def test_list_recipes_lists_the_shipped_recipes():
    assert list_recipes() == sorted(ALL_BUILTINS)


def test_adabin_reference_is_the_released_code():
    ref, adabin = load_recipe("adabin-reference"), load_recipe("adabin")
    assert (ref.defaults.act_form, ref.defaults.weight_estimator) == ("code", "ede")
    assert ref.shortcuts.bireal is False and ref.activations.scope == "all"  # stem Maxout too
    assert ref.rules == adabin.rules  # the same layer policy


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_recipe_loads(name):
    recipe = load_recipe(name)
    assert recipe.name == name
    assert recipe.schema_version == 1
    assert recipe.source is not None and recipe.source.endswith(f"{name}.yaml")
    assert recipe.shortcuts.bireal is True
    assert recipe.replaces_activation("relu")
    assert not recipe.replaces_activation("sigmoid")


def test_load_by_path_equals_load_by_name():
    by_name = load_recipe("adabin")
    assert load_recipe(Path(by_name.source)) == by_name
    assert load_recipe(str(by_name.source)) == by_name


def test_adabin_decisions_on_resnet18_like_layers():
    recipe = load_recipe("adabin")
    stem = recipe.decide(STEM)
    assert (stem.action, stem.method, stem.options, stem.rule) == ("float", None, {}, "stem")
    block = recipe.decide(BLOCK_CONV)
    assert (block.action, block.method, block.rule) == ("binarize", "adabin", "block-convs")
    assert block.options == {
        "weight_estimator": "ede",
        "act_form": "paper",
        "binarize_activations": True,
        "binarize_weights": True,
    }
    assert block.reason == "conv inside a block"
    assert recipe.decide(DOWNSAMPLE).action == "float"
    assert recipe.decide(DOWNSAMPLE).rule == "shortcut"
    assert recipe.decide(FC).action == "float"
    assert recipe.decide(FC).rule == "classifier"
    assert recipe.decide(DEPTHWISE).rule == "depthwise"
    assert recipe.decide(DEPTHWISE).action == "float"
    assert recipe.decide(POINTWISE).action == "binarize"
    assert recipe.decide(BLOCK_LINEAR).action == "float"
    assert recipe.decide(BLOCK_LINEAR).rule == "linears"


def test_adabin_full_binarizes_block_linears_but_not_head_or_patch_embed():
    recipe = load_recipe("adabin-full")
    decision = recipe.decide(BLOCK_LINEAR)
    assert (decision.action, decision.method, decision.rule) == (
        "binarize",
        "adabin",
        "block-linears",
    )
    assert recipe.decide(FC).action == "float"
    assert recipe.decide(PATCH_EMBED).action == "float"
    assert recipe.decide(BLOCK_CONV).action == "binarize"
    assert recipe.decide(DOWNSAMPLE).action == "float"


@pytest.mark.parametrize(("name", "method"), [("bnn", "sign"), ("xnor", "xnor")])
def test_baselines_keep_the_adabin_layer_policy(name, method):
    recipe, adabin = load_recipe(name), load_recipe("adabin")
    for layer in (STEM, BLOCK_CONV, DOWNSAMPLE, FC, DEPTHWISE, POINTWISE, BLOCK_LINEAR):
        ours, ref = recipe.decide(layer), adabin.decide(layer)
        assert (ours.action, ours.rule) == (ref.action, ref.rule)
    decision = recipe.decide(BLOCK_CONV)
    assert decision.method == method
    assert decision.options == {
        "weight_estimator": "ste",
        "binarize_activations": True,
        "binarize_weights": True,
    }
    assert recipe.activations == adabin.activations
    assert recipe.rules == adabin.rules


def test_unmatched_layer_stays_float_with_reason(tmp_path):
    recipe = load_recipe(
        write(
            tmp_path,
            """\
            schema_version: 1
            rules:
              - {match: {type: linear}, action: binarize}
            """,
        )
    )
    decision = recipe.decide(BLOCK_CONV)
    assert (decision.action, decision.rule, decision.reason) == ("float", "-", "no rule matched")
    assert recipe.decide(FC).rule == "rules[0]"
    assert recipe.name == "r"


def _two_rules(tmp_path, first: str, second: str) -> Recipe:
    body = f"""\
        schema_version: 1
        rules:
          - {first}
          - {second}
        """
    return load_recipe(write(tmp_path, body))


NAME_FLOAT = "{name: by-name, match: {name: layer1.0.conv1}, action: float}"
TYPE_BINARIZE = "{name: by-type, match: {type: Conv2d}, action: binarize}"


def test_name_rule_before_type_rule_overrides_it(tmp_path):
    recipe = _two_rules(tmp_path, NAME_FLOAT, TYPE_BINARIZE)
    assert recipe.decide(BLOCK_CONV).rule == "by-name"
    assert recipe.decide(BLOCK_CONV).action == "float"
    assert recipe.decide(conv("layer1.0.conv2")).action == "binarize"


def test_type_rule_before_name_rule_wins(tmp_path):
    recipe = _two_rules(tmp_path, TYPE_BINARIZE, NAME_FLOAT)
    assert recipe.decide(BLOCK_CONV).rule == "by-type"
    assert recipe.decide(BLOCK_CONV).action == "binarize"


def test_every_condition_of_a_rule_must_hold(tmp_path):
    recipe = load_recipe(
        write(
            tmp_path,
            """\
            schema_version: 1
            rules:
              - match: {type: conv, kernel_size: [[1, 1], 3], out_channels: {min: 100}}
                action: binarize
            """,
        )
    )
    assert recipe.decide(DOWNSAMPLE).action == "binarize"  # 1x1, 128 out
    assert recipe.decide(BLOCK_CONV).action == "float"  # 3x3 but 64 out
    assert recipe.decide(conv("x", cout=256)).action == "binarize"
    assert recipe.decide(conv("x", k=5, cout=256)).action == "float"
    assert recipe.decide(linear("y", cout=4096)).action == "float"  # no kernel


def test_kernel_pair_groups_and_exact_class_name(tmp_path):
    recipe = load_recipe(
        write(
            tmp_path,
            """\
            schema_version: 1
            rules:
              - {name: k1x3, match: {kernel_size: [1, 3]}, action: binarize}
              - {name: g2, match: {groups: 2, pointwise: false}, action: binarize}
              - {name: same, match: {type: Conv2dSame}, action: binarize}
            """,
        )
    )
    asym = LayerInfo("a", "Conv2d", "conv", (1, 3), 1, 8, 8)
    assert recipe.decide(asym).rule == "k1x3"
    assert recipe.decide(conv("b", groups=2)).rule == "g2"
    assert recipe.decide(conv("c", type_name="Conv2dSame")).rule == "same"
    assert recipe.decide(conv("d")).rule == "-"


@pytest.mark.parametrize(
    ("pattern", "hits", "misses"),
    [
        ("blocks.*.mlp.fc1", ["blocks.0.mlp.fc1", "blocks.11.mlp.fc1"], ["blocks.0.x.mlp.fc1"]),
        ("layer1.**", ["layer1.0.conv1", "layer1.1.downsample.0"], ["layer10.0.conv1"]),
        ("**.downsample.*", ["layer2.0.downsample.0", "downsample.0"], ["layer2.0.conv1"]),
        ("layer?.0.conv[12]", ["layer3.0.conv2"], ["layer3.0.conv3", "layer10.0.conv1"]),
        ("re:layer[34]\\..*conv2", ["layer3.0.conv2", "layer4.1.conv2"], ["layer3.0.conv1"]),
        ("re:fc", ["fc"], ["fc1", "head.fc"]),  # a regex must match the whole name
        ("blocks.0.attn.qkv", ["blocks.0.attn.qkv"], ["blocks.0.attn.qkvx", "blocks.0.attn"]),
    ],
)
def test_glob_and_regex_name_patterns(tmp_path, pattern, hits, misses):
    recipe = load_recipe(
        write(
            tmp_path,
            f"""\
            schema_version: 1
            rules:
              - {{match: {{name: '{pattern}'}}, action: binarize}}
            """,
        )
    )
    for name in hits:
        assert recipe.decide(conv(name)).action == "binarize", name
    for name in misses:
        assert recipe.decide(conv(name)).action == "float", name


def test_name_list_matches_any(tmp_path):
    recipe = load_recipe(
        write(
            tmp_path,
            """\
            schema_version: 1
            rules:
              - {match: {name: [fc, 're:layer4\\..*']}, action: binarize}
            """,
        )
    )
    assert recipe.decide(conv("layer4.1.conv1")).action == "binarize"
    assert recipe.decide(FC).action == "binarize"
    assert recipe.decide(BLOCK_CONV).action == "float"


def test_rule_options_override_defaults(tmp_path):
    recipe = load_recipe(
        write(
            tmp_path,
            """\
            schema_version: 1
            defaults: {weight_estimator: ede}
            rules:
              - match: {first: true}
                action: binarize
                options: {act_form: code, binarize_weights: false}
              - {match: {type: conv}, action: binarize, method: xnor}
            """,
        )
    )
    assert recipe.decide(STEM).options == {
        "weight_estimator": "ede",
        "act_form": "code",
        "binarize_activations": True,
        "binarize_weights": False,
    }
    decision = recipe.decide(BLOCK_CONV)
    assert decision.method == "xnor"
    assert "act_form" not in decision.options
    assert recipe.activations.replace == ()
    assert recipe.shortcuts.bireal is False


def test_extends_a_local_file_and_builtin(tmp_path):
    write(
        tmp_path,
        """\
        schema_version: 1
        extends: adabin
        shortcuts: {bireal: false}
        activations: {replace: [relu]}
        """,
        name="base.yaml",
    )
    child = load_recipe(
        write(
            tmp_path,
            """\
            schema_version: 1
            extends: base.yaml
            rules:
              - {name: keep-layer1, match: {name: 'layer1.**'}, action: float}
            """,
        )
    )
    adabin = load_recipe("adabin")
    assert child.rules[1:] == adabin.rules
    assert child.decide(BLOCK_CONV).rule == "keep-layer1"
    assert child.decide(conv("layer2.0.conv1")).rule == "block-convs"
    assert child.shortcuts.bireal is False
    assert child.activations.replace == ("relu",)
    assert child.activations.scope == adabin.activations.scope  # merged key by key
    assert child.description == adabin.description


@pytest.mark.parametrize("name", ALL_BUILTINS)
def test_round_trip_and_stable_sha256(name):
    recipe = load_recipe(name)
    data = recipe.to_dict()
    rebuilt = Recipe.from_dict(data)
    assert rebuilt == recipe
    assert rebuilt.to_dict() == data
    assert rebuilt.sha256 == recipe.sha256 == load_recipe(name).sha256
    assert len(recipe.sha256) == 64
    assert "extends" not in data


def test_sha256_changes_with_content():
    data = load_recipe("adabin").to_dict()
    data["shortcuts"]["bireal"] = False
    assert Recipe.from_dict(data).sha256 != load_recipe("adabin").sha256
    assert len({load_recipe(n).sha256 for n in ALL_BUILTINS}) == len(ALL_BUILTINS)


def test_recipe_modules_import_no_torch():
    """The recipe layer is pure data: its modules import neither torch nor higher layers."""
    import ast
    from pathlib import Path

    import autobin.recipes

    for path in Path(autobin.recipes.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            for name in names:
                assert not name.startswith(("torch", "..graph", "..train", "..zoo")), (path, name)
