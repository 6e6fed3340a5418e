"""Reading a recipe is bounded and names the file: alias bombs, huge files, non-UTF-8 text,
and every form a recipe argument takes."""

from __future__ import annotations

import time

import pytest

from autobin.errors import AutobinError
from autobin.recipes import RecipeError, as_recipe, load_recipe
from autobin.recipes.loader import MAX_RECIPE_BYTES, MAX_RECIPE_DEPTH, MAX_RECIPE_NODES

BOMB = """\
schema_version: 1
a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
rules: [*i]
"""


def test_alias_expansion_bomb_is_refused_quickly(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    assert path.stat().st_size < 1000  # a few hundred bytes expanding to 9**9 strings
    start = time.perf_counter()
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert time.perf_counter() - start < 5
    msg = str(err.value)
    assert str(path) in msg and f"more than {MAX_RECIPE_NODES} YAML nodes" in msg
    assert "alias" in msg and "fix:" in msg


def test_a_few_aliases_are_fine(tmp_path):
    path = tmp_path / "aliases.yaml"
    path.write_text(
        "schema_version: 1\nname: aliased\nextends: adabin\nrules:\n"
        "  - {match: {name: 'x.*'}, action: binarize, options: &o {weight_estimator: ste}}\n"
        "  - {match: {name: 'y.*'}, action: binarize, options: *o}\n"
    )
    assert load_recipe(path).name == "aliased"


def test_oversized_file_is_refused_without_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"# " + b"x" * MAX_RECIPE_BYTES + b"\nschema_version: 1\n")
    with pytest.raises(RecipeError, match="larger than") as err:
        load_recipe(path)
    assert str(path) in str(err.value)


def test_non_utf8_recipe_names_the_file_and_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("schema_version: 1\nname: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    msg = str(err.value)
    assert f"{path}, line 2" in msg and "not UTF-8" in msg and "0xe9" in msg
    assert isinstance(err.value, AutobinError) and isinstance(err.value, ValueError)


def test_as_recipe_takes_every_form(tmp_path):
    base = load_recipe("adabin")
    path = tmp_path / "r.yaml"
    path.write_text("schema_version: 1\nname: from-file\nextends: adabin\n")
    assert as_recipe(base) is base
    assert as_recipe("adabin").sha256 == base.sha256
    assert as_recipe(path).name == as_recipe(str(path)).name == "from-file"
    assert as_recipe(base.to_dict()).sha256 == base.sha256
    extended = as_recipe({"schema_version": 1, "name": "mine", "extends": "adabin"})
    assert extended.name == "mine" and extended.rules == base.rules
    with pytest.raises(RecipeError, match="rules"):
        as_recipe({"schema_version": 1, "name": "empty"})
    for bad in (3, None, ["adabin"]):
        with pytest.raises(RecipeError, match="a recipe cannot be a"):
            as_recipe(bad)


DEEP = 3000  # far past Python's recursion limit (1000): yaml's composer recursed once a level


@pytest.mark.parametrize(
    "text",
    [
        "schema_version: 1\nrules: " + "[" * DEEP + "]" * DEEP + "\n",
        "schema_version: 1\nrules: " + "{a: " * DEEP + "1" + "}" * DEEP + "\n",
        '{"schema_version": 1, "rules": ' + "[" * DEEP + "]" * DEEP + "}\n",  # JSON is YAML
        "schema_version: 1\nrules:\n" + "".join("  " * i + "- a:\n" for i in range(1, 40)),
    ],
    ids=["flow-lists", "flow-maps", "json", "block-indented"],
)
def test_deeply_nested_recipe_is_one_clear_error(tmp_path, text):
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=f"nested more than {MAX_RECIPE_DEPTH} levels") as err:
        load_recipe(path)
    assert str(path) in str(err.value) and "fix:" in str(err.value)


def test_deeply_nested_mapping_is_one_clear_error():
    rule: dict = {}
    inner = rule
    for _ in range(DEEP):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(RecipeError, match=f"nested more than {MAX_RECIPE_DEPTH} levels"):
        as_recipe({"schema_version": 1, "rules": [rule]})
