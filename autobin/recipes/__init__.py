"""Recipes: which layers of a model to binarize, how, and what to change around them.

A recipe is a YAML file with a versioned schema (``schema_version: 1``), read with
``yaml.safe_load`` only and validated on load; every mistake raises :class:`RecipeError`, whose
message names the file, the key path (e.g. ``rules[2].match.kernel_size``), the allowed values
and a fix. Built-in recipes: ``adabin`` (default), ``adabin-full``, ``bnn``, ``xnor``.

Precedence: ``rules`` are evaluated top to bottom for every conv and linear layer; the first
rule whose every ``match`` condition holds decides the layer (binarize or float); a layer that
no rule matches stays float with reason "no rule matched". A recipe that ``extends`` another
has its own rules evaluated before the inherited ones.

Example:
    >>> from autobin.recipes import LayerInfo, load_recipe
    >>> recipe = load_recipe("adabin")
    >>> stem = LayerInfo("conv1", "Conv2d", "conv", (7, 7), 1, 3, 64, is_first=True)
    >>> recipe.decide(stem).action
    'float'

A recipe by example (``match`` keys: ``type``, ``name``, ``kernel_size``, ``groups``,
``depthwise``, ``pointwise``, ``in_channels``, ``out_channels``, ``first``, ``last``,
``shortcut``)::

    schema_version: 1
    name: my-recipe
    defaults: {method: adabin, weight_estimator: ede, act_form: paper}
    rules:
      - {name: stem, match: {first: true}, action: float}
      - {match: {name: "blocks.*.mlp.fc1"}, action: binarize, options: {weight_estimator: ste}}
      - {match: {type: conv, kernel_size: 3}, action: binarize}
    activations: {replace: [relu, prelu], with: maxout, scope: after_binary}
    shortcuts: {bireal: true}

This layer imports only ``yaml``: no torch, no torch.fx.
"""

from ..nn.activation_kinds import ACTIVATION_KINDS
from .errors import RecipeError
from .loader import RecipeLike, as_recipe, list_recipes, load_recipe
from .recipe import Recipe
from .schema import (
    LAYER_CLASSES,
    NEVER_REPLACEABLE,
    ActivationPolicy,
    BinarizeDefaults,
    Decision,
    LayerInfo,
    Match,
    Rule,
    ShortcutPolicy,
)

__all__ = [
    "ACTIVATION_KINDS",
    "LAYER_CLASSES",
    "NEVER_REPLACEABLE",
    "ActivationPolicy",
    "BinarizeDefaults",
    "Decision",
    "LayerInfo",
    "Match",
    "Recipe",
    "RecipeError",
    "RecipeLike",
    "Rule",
    "ShortcutPolicy",
    "as_recipe",
    "list_recipes",
    "load_recipe",
]
