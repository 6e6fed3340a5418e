"""Rewrite: apply an annotated plan to a model (the second half of :func:`autobin.binarize`).

Every entry of the plan applies itself (:meth:`~autobin.graph.plan.Entry.apply`) through a
:class:`Rewrite`, which knows where each qualified name lives (in a traced part's GraphModule or
in the module tree):

* a compute layer to binarize is swapped for its binary layer at the same qualified name;
* an activation module becomes a :class:`~autobin.nn.Maxout` at the same name;
* a functional activation node, and each call of an activation module that a graph calls at
  several sites, becomes a call of a new Maxout submodule ``maxout_<node>``;
* a Bi-Real shortcut inserts ``add(norm_out, conv_in)`` after the binarized conv's norm.

Then the edited graphs are recompiled and the model family installs each traced part
(:meth:`~autobin.graph.families.ModelFamily.install`). Names are deterministic, so binarizing a
fresh copy of the same architecture with the same recipe gives the same ``state_dict`` keys.
"""

from __future__ import annotations

from torch import fx, nn

from ..module_tools import set_module
from .families import ModelFamily
from .plan import Plan


class Rewrite:
    """The model being rewritten: where each name lives, and which graphs were edited."""

    def __init__(self, plan: Plan, model: nn.Module) -> None:
        self.model = model
        self.graphs = {r.name: r.graph_module for r in plan.regions if r.graph_module is not None}
        self._by_depth = sorted(self.graphs, key=len, reverse=True)
        self.touched: set[str] = set()
        param = next(model.parameters(), None)
        self.device = param.device if param is not None else None

    def _owner(self, name: str) -> tuple[nn.Module, str]:
        """The module ``name`` is reached from (its traced part's graph, else the model) and
        the name relative to it."""
        for region in self._by_depth:
            if not region:
                return self.graphs[region], name
            if name.startswith(region + "."):
                return self.graphs[region], name[len(region) + 1 :]
        return self.model, name

    def get(self, name: str) -> nn.Module:
        """The module at qualified ``name`` as the rewritten model will run it."""
        owner, relative = self._owner(name)
        return owner.get_submodule(relative)

    def replace(self, name: str, module: nn.Module) -> None:
        """Put ``module`` at qualified ``name``."""
        owner, relative = self._owner(name)
        set_module(owner, relative, module)

    def graph(self, region: str) -> fx.GraphModule:
        """The GraphModule of traced part ``region``, marked as edited."""
        self.touched.add(region)
        return self.graphs[region]


def rewrite(plan: Plan, model: nn.Module, family: ModelFamily) -> nn.Module:
    """Apply ``plan`` (made by :func:`annotate` on ``model``) and return the binarized module.

    ``model``'s modules are reused: pass a copy unless it may be modified.
    """
    work = Rewrite(plan, model)
    for entry in plan.entries:
        entry.apply(work)
    for name in work.touched:
        gm = work.graphs[name]
        gm.graph.lint()
        gm.recompile()
    root = model
    for region in plan.regions:
        if region.graph_module is not None:
            root = family.install(root, region.name, region.module, region.graph_module)
    return root


__all__ = ["Rewrite", "rewrite"]
