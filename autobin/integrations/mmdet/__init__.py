"""MMDetection integration: binarize mmdet detectors, train them with distillation in
mmengine's Runner, evaluate them with mmdet's own metrics, publish them to the zoo.

Importing this module (``custom_imports = dict(imports=['autobin.integrations.mmdet'])`` in a
config) registers ``autobin.BinarizedDetector`` in mmengine's model registry (scope
``autobin``) and registers the mmdet model family (:mod:`.family`), so that
:func:`autobin.binarize` works on detectors and :func:`autobin.zoo.load` rebuilds them. It is
the only part of
autobin that imports mmengine, mmcv or mmdet; nothing in mmdet is patched.

Python::

    from autobin.integrations.mmdet import build_float_detector, binarize_detector, load_config
    cfg = load_config("mmdet::pascal_voc/ssd300_voc0712.py")
    detector = build_float_detector(cfg.model)
    print(explain_detector(detector, "ssd300-adabin"))
    binary = binarize_detector(detector, "ssd300-adabin")

Shell: ``autobin mmdet-data mnist-det data/mnist-det``, ``autobin mmdet-config ... -o cfg.py``,
``autobin mmdet-train cfg.py``, ``autobin mmdet-test cfg.py work_dirs/cfg/epoch_N.pth``,
``autobin search cfg.py --data mnist-det --teacher CKPT --max-float-macs N -o r.yaml``.

Importing it also registers the detectors' objective of :func:`autobin.search`
(:mod:`.search`): ``autobin.search(detector, "data/mnist-det-small", "det-adabin", ...)``.
"""

from ...graph import register_family
from ...search.objective import register_objective
from .binarize import binarize_detector, explain_detector, prediction_convs
from .build import build_float_detector
from .config import (
    float_config,
    load_config,
    make_binarized_config,
    point_at_voc,
    write_config,
)
from .distill import DistillConfig
from .errors import (
    DetectorConfigError,
    MMDetIntegrationError,
    RecipeMatchError,
    TeacherCheckpointError,
)
from .family import MMDetFamily
from .model import MODELS, BinarizedDetector
from .offline import fix_predict, mmengine_checkpoints, strip_pretrained
from .publish import DetectorPublishError, publish_detector
from .runner import test, train
from .search import DetectorObjective, search_detector

register_family(MMDetFamily())
register_objective(MMDetFamily.name, DetectorObjective())

__all__ = [
    "MODELS",
    "BinarizedDetector",
    "DetectorConfigError",
    "DetectorObjective",
    "DetectorPublishError",
    "DistillConfig",
    "MMDetFamily",
    "MMDetIntegrationError",
    "RecipeMatchError",
    "TeacherCheckpointError",
    "binarize_detector",
    "build_float_detector",
    "explain_detector",
    "fix_predict",
    "float_config",
    "load_config",
    "make_binarized_config",
    "mmengine_checkpoints",
    "point_at_voc",
    "prediction_convs",
    "publish_detector",
    "search_detector",
    "strip_pretrained",
    "test",
    "train",
    "write_config",
]
