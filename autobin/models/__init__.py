"""The AdaBin paper's CIFAR architectures, registered in timm's model registry.

``import autobin.models`` registers ``resnet18_cifar``, ``resnet20_cifar`` and
``vgg_small_cifar``; afterwards ``timm.create_model("resnet20_cifar")`` builds them like any
timm model (``num_classes``, ``in_chans``, ``pretrained_cfg``, ``get_classifier``). autobin's
own commands that build a model by name (``autobin train``, ``explain``, ``binarize``, the zoo)
import this package first. ``import autobin`` does not import timm (it would double its import
time): it registers these models the moment timm is imported, or at once if timm already is.

The models are float: binarize them with a recipe. ``adabin-reference`` turns them into the
released code's binary networks (module names included, so its checkpoints load with
:func:`autobin.compat.load_reference_checkpoint`)::

    import timm, autobin
    bnn = autobin.binarize(timm.create_model("resnet20_cifar"), recipe="adabin-reference")
    autobin.compat.load_reference_checkpoint(bnn, "resnet20_1w1a/model.th")
"""

from .cifar_resnet import CifarBasicBlock, CifarResNet, OptionAShortcut
from .registry import CIFAR_MODELS, NoPretrainedWeightsError
from .vgg_small import VGGSmall

__all__ = [
    "CIFAR_MODELS",
    "CifarBasicBlock",
    "CifarResNet",
    "NoPretrainedWeightsError",
    "OptionAShortcut",
    "VGGSmall",
]
