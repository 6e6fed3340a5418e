"""autobin: turn PyTorch vision models into AdaBin binary neural networks.

Quick start::

    import timm, autobin
    model = timm.create_model("resnet18")
    print(autobin.explain(model))          # dry run: every layer, its decision and why
    bnn = autobin.binarize(model)          # recipe "adabin"
    autobin.info(bnn)                      # family, architecture, recipe, report, float model

``import autobin`` stays light: the training loop (:func:`autobin.finetune`), the zoo
(:mod:`autobin.zoo`), packed inference (:func:`autobin.deploy`), the float-layer search
(:func:`autobin.search`) and the CIFAR architectures (:mod:`autobin.models`, registered in timm
the moment timm is imported) are imported on first use,
and nothing here imports mmdet or mmengine.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

from . import nn
from .errors import AutobinError
from .graph import BinarizeReport, binarize, explain, info
from .recipes import Recipe, RecipeError, list_recipes, load_recipe
from .version import __version__

_LAZY = {
    "compat": ("autobin.compat", None),
    "deploy": ("autobin.deploy", None),  # a callable package: autobin.deploy(model)
    "finetune": ("autobin.train", "finetune"),
    "load": ("autobin.zoo", "load"),
    "models": ("autobin.models", None),  # imports timm: registers the CIFAR architectures
    "search": ("autobin.search", None),  # a callable package: autobin.search(model, data, ...)
    "zoo": ("autobin.zoo", None),
}


class _RegisterWithTimm(importlib.abc.MetaPathFinder):
    """Registers the CIFAR architectures (:mod:`autobin.models`) as soon as timm is imported.

    ``import autobin`` does not import timm (it would double the import time); with this finder
    ``timm.create_model("resnet20_cifar")`` works in any process that imported autobin, whether
    timm was imported before or after it.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "timm":
            return None
        sys.meta_path.remove(self)  # find timm's own spec, once
        spec = importlib.util.find_spec("timm")
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            importlib.import_module("autobin.models")

        spec.loader.exec_module = exec_then_register
        return spec


if "timm" in sys.modules:
    importlib.import_module("autobin.models")
elif not any(isinstance(f, _RegisterWithTimm) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWithTimm())


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        value = getattr(module, attr) if attr else module
        globals()[name] = value
        return value
    raise AttributeError(f"module 'autobin' has no attribute {name!r}")


__all__ = [
    "AutobinError",
    "BinarizeReport",
    "Recipe",
    "RecipeError",
    "__version__",
    "binarize",
    "compat",
    "deploy",
    "explain",
    "finetune",
    "info",
    "list_recipes",
    "load",
    "load_recipe",
    "models",
    "nn",
    "search",
    "zoo",
]
