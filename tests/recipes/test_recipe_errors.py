"""Every kind of recipe mistake raises RecipeError naming the file, key path and allowed values."""

from __future__ import annotations

import pickle
import textwrap
from pathlib import Path

import pytest

from autobin.recipes import Recipe, RecipeError, list_recipes, load_recipe

VALID_RULES = """\
rules:
  - {name: stem, match: {first: true}, action: float}
  - {name: ds, match: {shortcut: true}, action: float}
  - {name: convs, match: {type: conv, kernel_size: 3}, action: binarize}
"""


def load_text(tmp_path: Path, body: str) -> RecipeError:
    path = tmp_path / "bad_recipe.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    return info.value


def check(err: RecipeError, key: str, *allowed: str) -> str:
    message = str(err)
    assert "bad_recipe.yaml" in message
    assert err.key_path == key
    assert f": {key}: " in message
    for word in allowed:
        assert word in message, (word, message)
    assert isinstance(err, ValueError)
    return message


def test_unknown_top_level_key(tmp_path):
    err = load_text(tmp_path, "schema_version: 1\nrulez: []\n" + VALID_RULES)
    message = check(err, "rulez", "schema_version", "rules", "activations", "shortcuts")
    assert "did you mean 'rules'" in message
    assert err.line == 2


def test_unknown_match_key(tmp_path):
    body = VALID_RULES.replace("{type: conv, kernel_size: 3}", "{type: conv, kernelsize: 3}")
    err = load_text(tmp_path, "schema_version: 1\n" + body)
    check(err, "rules[2].match.kernelsize", "kernel_size", "depthwise", "shortcut")


def test_wrong_type(tmp_path):
    body = VALID_RULES.replace("kernel_size: 3", "kernel_size: big")
    err = load_text(tmp_path, "schema_version: 1\n" + body)
    message = check(err, "rules[2].match.kernel_size", "[kh, kw]", "integer k")
    assert "'big' (a string)" in message


def test_wrong_type_bool(tmp_path):
    body = VALID_RULES.replace("first: true", "first: 1")
    err = load_text(tmp_path, "schema_version: 1\n" + body)
    check(err, "rules[0].match.first", "true | false")


def test_ambiguous_flat_kernel_list(tmp_path):
    body = VALID_RULES.replace("kernel_size: 3", "kernel_size: [1, 3, 5]")
    err = load_text(tmp_path, "schema_version: 1\n" + body)
    check(err, "rules[2].match.kernel_size", "[kh, kw]", "[[1, 1], [3, 3], [5, 5]]")


def test_bad_regex(tmp_path):
    body = VALID_RULES.replace("{first: true}", "{name: 're:layer[1'}")
    err = load_text(tmp_path, "schema_version: 1\n" + body)
    message = check(err, "rules[0].match.name", "regular expression", "glob")
    assert "re:layer[1" in message


def test_bad_regex_in_list(tmp_path):
    body = VALID_RULES.replace("{first: true}", "{name: [conv1, 're:(a']}")
    err = load_text(tmp_path, "schema_version: 1\n" + body)
    check(err, "rules[0].match.name[1]", "regular expression")


def test_unknown_layer_type(tmp_path):
    body = VALID_RULES.replace("type: conv", "type: [conv, conv2d]")
    err = load_text(tmp_path, "schema_version: 1\n" + body)
    message = check(err, "rules[2].match.type[1]", "conv | linear", "Conv2dSame", "Linear")
    assert "did you mean 'Conv2d'" in message


def test_unknown_method(tmp_path):
    body = VALID_RULES.replace("action: binarize", "action: binarize, method: dorefa")
    err = load_text(tmp_path, "schema_version: 1\n" + body)
    check(err, "rules[2].method", "adabin | sign | xnor")


def test_unknown_action(tmp_path):
    body = VALID_RULES.replace("action: binarize", "action: quantize")
    err = load_text(tmp_path, "schema_version: 1\n" + body)
    check(err, "rules[2].action", "binarize | float")


def test_unknown_estimator(tmp_path):
    err = load_text(
        tmp_path, "schema_version: 1\ndefaults: {weight_estimator: ste2}\n" + VALID_RULES
    )
    check(err, "defaults.weight_estimator", "ste | ede")


def test_unknown_estimator_in_rule_options(tmp_path):
    body = VALID_RULES.replace(
        "action: binarize", "action: binarize, options: {weight_estimator: tanh}"
    )
    err = load_text(tmp_path, "schema_version: 1\n" + body)
    check(err, "rules[2].options.weight_estimator", "ste | ede")


def test_act_form_with_non_adabin_method(tmp_path):
    body = VALID_RULES.replace(
        "action: binarize", "action: binarize, method: sign, options: {act_form: code}"
    )
    err = load_text(tmp_path, "schema_version: 1\n" + body)
    check(err, "rules[2].options.act_form", "method: adabin")


def test_options_on_float_rule(tmp_path):
    body = VALID_RULES.replace(
        "first: true}, action: float", "first: true}, action: float, method: sign"
    )
    err = load_text(tmp_path, "schema_version: 1\n" + body)
    check(err, "rules[0].method", "name | match | reason")


def test_rule_that_binarizes_nothing(tmp_path):
    body = (
        "schema_version: 1\n"
        "defaults: {binarize_weights: false}\n"
        "rules:\n"
        "  - {match: {type: conv}, action: binarize, options: {binarize_activations: false}}\n"
    )
    err = load_text(tmp_path, body)
    check(err, "rules[0]", "binarize_activations / binarize_weights", "action: float")
    body = body.replace("{binarize_weights: false}", "{}").replace(
        "{binarize_activations: false}", "{binarize_activations: false, binarize_weights: false}"
    )
    err = load_text(tmp_path, body)
    check(err, "rules[0].options", "binarize_activations / binarize_weights", "action: float")


def test_unknown_activation(tmp_path):
    body = "schema_version: 1\nactivations: {replace: [relu, tanh]}\n" + VALID_RULES
    err = load_text(tmp_path, body)
    check(err, "activations.replace[1]", "relu | relu6 | leaky_relu | prelu | gelu | silu")


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("sigmoid", "gate"),
        ("hardsigmoid", "gate"),
        ("softmax", "sum to one"),
        ("layernorm", "norm"),
    ],
)
def test_gate_or_norm_named_as_replaceable(tmp_path, kind, why):
    body = f"schema_version: 1\nactivations: {{replace: [relu, {kind}]}}\n" + VALID_RULES
    err = load_text(tmp_path, body)
    message = check(err, "activations.replace[1]", "hardswish | mish")
    assert f"{kind!r} cannot be replaced" in message
    assert why in message


def test_unknown_activation_scope(tmp_path):
    body = "schema_version: 1\nactivations: {replace: [relu], scope: everywhere}\n" + VALID_RULES
    err = load_text(tmp_path, body)
    check(err, "activations.scope", "after_binary | all")


def test_wrong_schema_version(tmp_path):
    err = load_text(tmp_path, "schema_version: 2\n" + VALID_RULES)
    message = check(err, "schema_version", "allowed: 1")
    assert "unsupported schema_version 2" in message


def test_missing_schema_version(tmp_path):
    err = load_text(tmp_path, VALID_RULES)
    check(err, "schema_version", "allowed: 1", "schema_version: 1")


def test_non_mapping_yaml(tmp_path):
    err = load_text(tmp_path, "- schema_version: 1\n- rules: []\n")
    message = check(err, "(top level)", "a mapping with keys", "schema_version", "rules")
    assert "a list" in message


def test_empty_file(tmp_path):
    err = load_text(tmp_path, "# nothing here\n")
    check(err, "(top level)", "schema_version: 1")


def test_python_object_tag_is_rejected_without_constructing(tmp_path):
    body = "schema_version: 1\ndescription: !!python/object/apply:os.system ['echo pwned']\n"
    err = load_text(tmp_path, body + VALID_RULES)
    message = check(err, "description", "plain data", "mappings, lists, strings")
    assert "tag:yaml.org,2002:python/object/apply:os.system" in message
    assert err.line == 2


def test_python_object_tag_nested(tmp_path):
    body = VALID_RULES.replace("{first: true}", "!!python/object:collections.OrderedDict {}")
    err = load_text(tmp_path, "schema_version: 1\n" + body)
    check(err, "rules[0].match", "mappings, lists, strings, numbers, booleans and null")


def test_duplicate_key(tmp_path):
    err = load_text(tmp_path, "schema_version: 1\nschema_version: 1\n" + VALID_RULES)
    check(err, "schema_version", "each key once")


def test_yaml_syntax_error(tmp_path):
    err = load_text(tmp_path, "schema_version: 1\nrules: [\n")
    assert "bad_recipe.yaml" in str(err)
    assert "not valid YAML" in str(err)


def test_duplicate_rule_name(tmp_path):
    body = VALID_RULES.replace("name: ds", "name: stem")
    err = load_text(tmp_path, "schema_version: 1\n" + body)
    check(err, "rules[1].name", "unique rule names")


def test_bad_channel_range(tmp_path):
    body = VALID_RULES.replace("shortcut: true", "in_channels: {min: 64, max: 8}")
    err = load_text(tmp_path, "schema_version: 1\n" + body)
    check(err, "rules[1].match.in_channels", "min <= max")


def test_unknown_builtin_name_lists_available():
    with pytest.raises(RecipeError) as info:
        load_recipe("adabn")
    message = str(info.value)
    for name in ("adabin", "adabin-full", "bnn", "xnor", "path to a .yaml file"):
        assert name in message
    assert "did you mean 'adabin'" in message


def test_missing_file(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_extends_unknown_and_circular(tmp_path):
    err = load_text(tmp_path, "schema_version: 1\nextends: adabim\n")
    check(err, "extends", " | ".join(list_recipes()))
    (tmp_path / "a.yaml").write_text("schema_version: 1\nextends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("schema_version: 1\nextends: a.yaml\n")
    with pytest.raises(RecipeError, match="circular 'extends'"):
        load_recipe(tmp_path / "a.yaml")


def test_inherited_rule_name_clash(tmp_path):
    body = "schema_version: 1\nextends: adabin\nrules:\n  - {name: stem, action: float}\n"
    err = load_text(tmp_path, body)
    check(err, "rules[1].name", "unique rule names")


def test_from_dict_validates_and_names_source():
    data = load_recipe("adabin").to_dict()
    data["rules"][4]["method"] = "ternary"
    with pytest.raises(RecipeError) as info:
        Recipe.from_dict(data, source="config.json")
    assert str(info.value).startswith("config.json: rules[4].method: ")
    assert "adabin | sign | xnor" in str(info.value)


def test_error_pickles():
    err = RecipeError("f.yaml", "rules[0]", "bad", "x | y", "fix it", 3)
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err)
    assert again.line == 3
