"""autobin.search on a small trained net: the written recipe, budgets, determinism."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
import yaml

import autobin
from autobin.nn import BinaryLayer
from autobin.search import SearchError, make_budget
from autobin.search.api import keeps_base
from autobin.search.selection import Item, Knapsack

EXAMPLE = (torch.zeros(2, 1, 28, 28),)
BUDGET_TOTALS = {
    "max_float_macs": "flops",
    "max_ops": "ops",
    "min_binary_share": "binary_mac_share",
    "max_size": "packed_size_bytes",
}


def float_layers(model_or_report) -> list[str]:
    """Conv/linear layers left float: by module type in a model, by decision in a report."""
    if isinstance(model_or_report, torch.nn.Module):
        return [
            name
            for name, m in model_or_report.named_modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and not isinstance(m, BinaryLayer)
        ]
    return [e.name for e in model_or_report.layers("float") if e.kind in ("conv", "linear")]


@pytest.fixture(scope="module")
def adabin_totals(trained_net):
    return autobin.explain(trained_net, "adabin", example_inputs=EXAMPLE).totals


@pytest.fixture(scope="module")
def searched(trained_net, mnist_train, adabin_totals, tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "my-recipe.yaml"
    result = autobin.search(
        trained_net,
        mnist_train,
        max_float_macs=adabin_totals["flops"],
        calibration_size=128,
        output=out,
        progress=False,
    )
    return result, out


def test_written_recipe_round_trips_through_binarize_and_explain(trained_net, searched):
    result, path = searched
    bnn = autobin.binarize(trained_net, path, example_inputs=EXAMPLE)
    assert sorted(float_layers(bnn)) == sorted(result.float_layers)
    assert autobin.load_recipe(path).rules == result.recipe.rules
    assert float_layers(autobin.explain(trained_net, str(path), example_inputs=EXAMPLE)) == (
        result.float_layers
    )
    # an ordinary recipe: extends the base, one named rule per decided layer, with a comment
    doc = yaml.safe_load(path.read_text())
    assert doc["extends"] == "adabin"
    names = [r["name"] for r in doc["rules"]]
    expected = [f"search-float-{n}" for n in result.float_layers]
    assert [n for n in names if n.startswith("search-float-")] == expected
    base_float = {"stem.0", "downsample.0", "dw", "fc"}
    made_binary = [n.removeprefix("search-binary-") for n in names if "binary" in n]
    assert sorted(made_binary) == sorted(base_float - set(result.float_layers))
    comments = [line for line in path.read_text().splitlines() if "KL only-binary" in line]
    assert len(comments) == len(doc["rules"])
    # no leftovers beside it; the report next to it
    assert sorted(p.name for p in path.parent.iterdir()) == ["my-recipe.search", "my-recipe.yaml"]
    folder = path.parent / "my-recipe.search"
    assert sorted(p.name for p in folder.iterdir()) == ["layers.txt", "pareto.png", "search.json"]
    assert (folder / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((folder / "search.json").read_text())
    assert data["float_layers"] == result.float_layers
    assert [row["name"] for row in data["layers"]] == [
        "stem.0", "conv1", "conv2", "downsample.0", "dw", "conv3", "fc"
    ]  # fmt: skip


def test_budget_is_met_and_no_important_layer_that_fits_is_left_out(searched, adabin_totals):
    result, _ = searched
    assert result.totals["flops"] <= adabin_totals["flops"]
    assert result.searched.value == result.totals["flops"]
    # the base recipe meets this budget: the answer never measures worse than it
    assert result.searched.measured_loss <= result.base.measured_loss
    assert result.knapsack_loss is None  # here the knapsack's own set measured better
    spent = sum(result.costs[n] for n in result.float_layers)
    capacity = adabin_totals["flops"] - result.all_binary_totals["flops"]
    for s in result.layers:
        name = s.candidate.name
        if name not in result.float_layers and s.importance > 0:
            assert spent + result.costs[name] > capacity, name


def test_measurements_are_consistent(searched, adabin_totals):
    result, _ = searched
    for s in result.layers:
        assert s.damage == pytest.approx(s.only_binary - result.all_float_loss, abs=1e-12)
        assert s.gain == pytest.approx(result.all_binary_loss - s.only_float, abs=1e-12)
        assert s.importance >= 0
        assert result.costs[s.candidate.name] == s.candidate.macs  # float MACs: its own MACs
    gap = result.all_binary_loss - result.all_float_loss
    assert sum(s.importance for s in result.layers) == pytest.approx(gap, rel=1e-9)
    assert result.base.value == adabin_totals["flops"]
    assert result.base.float_layers == ("stem.0", "downsample.0", "dw", "fc")
    # the Pareto front: cheaper never predicts lower loss
    front = result.front
    assert all(a.value < b.value for a, b in itertools.pairwise(front))
    assert all(a.predicted_loss > b.predicted_loss for a, b in itertools.pairwise(front))


@pytest.mark.parametrize("kind", list(BUDGET_TOTALS))
def test_every_budget_kind_is_respected_exactly(trained_net, mnist_train, searched, kind):
    result, _ = searched
    all_binary = result.all_binary_totals[BUDGET_TOTALS[kind]]
    base = result.base_totals[BUDGET_TOTALS[kind]]
    limit = (all_binary + base) / 2  # between everything binary and the hand policy
    found = autobin.search(
        trained_net, mnist_train, calibration_size=128, progress=False, **{kind: limit}
    )
    value = found.totals[BUDGET_TOTALS[kind]]
    assert value >= limit if kind == "min_binary_share" else value <= limit
    report = autobin.explain(trained_net, found.recipe, example_inputs=EXAMPLE)
    assert report.totals[BUDGET_TOTALS[kind]] == value
    assert float_layers(report) == found.float_layers
    bnn = autobin.binarize(trained_net, found.recipe, example_inputs=EXAMPLE)
    assert sorted(float_layers(bnn)) == sorted(found.float_layers)
    assert [s.importance for s in found.layers] == [s.importance for s in result.layers]
    # the limit reached exactly is allowed: everything binary is the cheapest recipe
    exact = autobin.search(
        trained_net, mnist_train, calibration_size=128, progress=False, **{kind: all_binary}
    )
    assert exact.totals[BUDGET_TOTALS[kind]] == all_binary


def test_recipe_for_another_budget_uses_the_same_measurements(trained_net, searched):
    result, _ = searched
    limit = result.all_binary_totals["flops"] + 60_000
    recipe = result.recipe_for(max_float_macs=limit)
    report = autobin.explain(trained_net, recipe, example_inputs=EXAMPLE)
    assert report.totals["flops"] <= limit
    chosen = [r.name.removeprefix("search-float-") for r in recipe.rules
              if r.name and r.name.startswith("search-float-")]  # fmt: skip
    assert chosen and float_layers(report) == chosen


def test_same_seed_same_result_other_seed_other_images(trained_net, mnist_train, searched):
    result, _ = searched
    again = autobin.search(
        trained_net,
        mnist_train,
        max_float_macs=result.budget.limit,
        calibration_size=128,
        progress=False,
    )
    assert [(s.only_binary, s.only_float) for s in again.layers] == [
        (s.only_binary, s.only_float) for s in result.layers
    ]
    assert again.float_layers == result.float_layers
    assert again.recipe.rules == result.recipe.rules
    other = autobin.search(
        trained_net,
        mnist_train,
        max_float_macs=result.budget.limit,
        calibration_size=128,
        seed=1,
        progress=False,
    )
    assert other.all_binary_loss != result.all_binary_loss


def test_the_float_model_is_not_modified(trained_net, mnist_train):
    before = {k: v.clone() for k, v in trained_net.state_dict().items()}
    trained_net.train()
    autobin.search(trained_net, mnist_train, max_ops=1e9, calibration_size=16, progress=False)
    assert trained_net.training
    trained_net.eval()
    after = trained_net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_progress_is_reported_per_configuration(trained_net, mnist_train):
    seen = []
    autobin.search(
        trained_net,
        mnist_train,
        max_float_macs=0,
        calibration_size=16,
        progress=lambda done, total, what: seen.append((done, total, what)),
    )
    total = 2 + 2 * 7 + 2
    assert [d for d, _, _ in seen] == list(range(1, total + 1))
    assert {t for _, t, _ in seen} == {total}
    assert seen[0][2] == "all candidates float" and seen[2][2] == "only stem.0 binary"


def test_cancelling_leaves_the_old_recipe_untouched(trained_net, mnist_train, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("old\n")

    def cancel(done, total, what):
        if done == total - 1:  # after the search, while checking the chosen recipe
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        autobin.search(trained_net, mnist_train, max_float_macs=1e5, calibration_size=16,
                       output=path, progress=cancel)  # fmt: skip
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]


def test_the_base_recipes_float_layers_win_where_it_fits_and_measured_better():
    share = make_budget(min_binary_share=0.95)
    fits, misses = {"binary_mac_share": 0.96}, {"binary_mac_share": 0.94}
    assert keeps_base(share, fits, base_loss=1.0, knapsack_loss=1.5)
    assert not keeps_base(share, fits, base_loss=1.5, knapsack_loss=1.0)
    assert not keeps_base(share, fits, base_loss=1.0, knapsack_loss=1.0)  # ties: the knapsack
    assert not keeps_base(share, misses, base_loss=0.1, knapsack_loss=1.5)  # over the budget
    macs = make_budget(max_float_macs=1000)
    assert keeps_base(macs, {"flops": 1000}, base_loss=0.2, knapsack_loss=0.3)
    assert not keeps_base(macs, {"flops": 1001}, base_loss=0.2, knapsack_loss=0.3)


def test_knapsack_finds_the_best_set_within_the_capacity():
    costs = [5.0, 4.0, 3.0, 2.5, 1.0, 7.0]
    values = [10.0, 7.0, 6.0, 4.0, 1.0, 13.0]
    items = [Item(f"l{i}", c, v) for i, (c, v) in enumerate(zip(costs, values))]
    knapsack = Knapsack(items)
    for capacity in (0.0, 1.0, 3.5, 6.0, 9.0, 10.5, 12.0, 20.0, 23.0):
        best = max(
            (
                subset
                for r in range(len(items) + 1)
                for subset in itertools.combinations(items, r)
                if sum(i.cost for i in subset) <= capacity
            ),
            key=lambda s: sum(i.value for i in s),
        )
        chosen = knapsack.choose(capacity)
        assert knapsack.cost(chosen) <= capacity
        assert knapsack.value(chosen) == sum(i.value for i in best), capacity
    # thinned to a few sets, the choice still fits and stays close
    thin = Knapsack(items, max_states=4)
    for capacity in (6.0, 10.5, 20.0):
        assert thin.cost(thin.choose(capacity)) <= capacity


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "no budget"),
        ({"max_float_macs": 1, "max_ops": 2}, "several budgets"),
        ({"min_binary_share": 1.5}, "between 0 and 1"),
        ({"max_size": -1}, "finite number >= 0"),
    ],
)
def test_bad_budgets_are_one_clear_error(trained_net, mnist_train, kwargs, message):
    with pytest.raises(SearchError, match=message) as info:
        autobin.search(trained_net, mnist_train, **kwargs)
    assert "\n" not in str(info.value)


def test_empty_calibration_set_is_a_clear_error(trained_net):
    with pytest.raises(SearchError, match="calibration set is empty") as info:
        autobin.search(trained_net, torch.zeros(0, 1, 28, 28), max_float_macs=1e5)
    assert isinstance(info.value, autobin.AutobinError)


def test_an_output_that_is_a_directory_is_refused_first(trained_net, tmp_path):
    with pytest.raises(SearchError, match="is a directory; give a file name"):
        autobin.search(trained_net, "no-such-data", max_float_macs=1e5, output=tmp_path)


def test_a_model_without_class_logits_is_refused_first(mnist_train):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())  # a feature map
    with pytest.raises(SearchError, match=r"compares class logits \(N, classes\)"):
        autobin.search(model, mnist_train, max_float_macs=1e5, calibration_size=8)


def test_a_model_with_nothing_to_search_is_a_clear_error(mnist_train):
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten())
    with pytest.raises(SearchError, match=r"nothing to search.*conv or linear"):
        autobin.search(model, mnist_train, max_float_macs=1e5, calibration_size=8)


def test_a_budget_below_what_cannot_be_binarized_names_the_minimum(mnist_train):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(4, 4, 2, stride=2),  # autobin cannot binarize it
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 10),
    )
    floor = autobin.explain(model, "adabin", example_inputs=EXAMPLE).layers("float")
    unsupported = sum(e.macs for e in floor if e.rule == "unsupported")
    assert unsupported > 0
    seen = []
    with pytest.raises(SearchError, match=rf"impossible budget.*at least {unsupported:,}"):
        autobin.search(model, mnist_train, max_float_macs=unsupported - 1, calibration_size=8,
                       progress=lambda *step: seen.append(step))  # fmt: skip
    assert seen == []  # refused before measuring anything
    ok = autobin.search(model, mnist_train, max_float_macs=unsupported, calibration_size=8)
    assert ok.totals["flops"] == unsupported
