"""Sweep of the generic ``det-adabin`` recipe over the detector configs mmdet 3.3.0 ships.

For every config of :data:`CONFIGS` (detectors with a conv backbone, each distinct type at least
once: single-stage anchor-based, anchor-free, YOLO-style, two-stage, query-based and DETR-style),
loaded offline with autobin's config loader (pretrained downloads stripped, random weights), on
the CPU at a small input (128 pixels, or 256 where the float detector cannot run at 128; an
SSD at its anchors' input size):

1. build the float detector and run it once in ``mode='tensor'``;
2. binarize it with ``det-adabin`` (:func:`binarize_detector`);
3. check the roles: the stem (the first conv to run on the image, seen on the float detector)
   and every prediction layer of the *binarized* detector (the conv or linear layers nearest to
   its returned tensors, :func:`prediction_layers_of`, and those named like a prediction layer)
   stay float, some conv is binary, and the backbone and neck give the heads feature maps of
   the float detector's shapes (a binarized conv that changed a map by one pixel would break a
   neck's add or concat, or shift a head's grid);
4. one training step: ``loss`` on a real batch of two ``mnist-det-small`` images (digits and
   their boxes, made by autobin's generator) and ``backward``: finite losses, finite gradients
   on the binary convs' latent weights;
5. one ``predict`` on the same images: finite boxes for every image.

Prints one line per config, the failures grouped by cause and the pass rate (goal: >= 95 %).

    python benchmarks/mmdet_sweep.py                        # every config of CONFIGS
    python benchmarks/mmdet_sweep.py --configs fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py
    python benchmarks/mmdet_sweep.py --kinds two-stage detr --json sweep.json
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import signal
import sys
import tempfile
import time
import traceback
import warnings
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import sweep_pool
import torch

GOAL_PASS = 0.95
SIZES = (128, 256)  # input sides tried in order for detectors without an anchor input size
RECIPE = "det-adabin"

# mmdet 3.3.0's own configs (mmdet::<path>), by detector type; every size variant is not here,
# one or two configs per method
CONFIGS: dict[str, str] = {
    # single-stage, anchor-based
    "retinanet/retinanet_r18_fpn_1x_coco.py": "single-stage",
    "pascal_voc/ssd300_voc0712.py": "single-stage",
    "ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py": "single-stage",
    "atss/atss_r50_fpn_1x_coco.py": "single-stage",
    "gfl/gfl_r50_fpn_1x_coco.py": "single-stage",
    "fsaf/fsaf_r50_fpn_1x_coco.py": "single-stage",
    "free_anchor/freeanchor_r50_fpn_1x_coco.py": "single-stage",
    "ghm/retinanet_r50_fpn_ghm-1x_coco.py": "single-stage",
    "paa/paa_r50_fpn_1x_coco.py": "single-stage",
    "yolof/yolof_r50-c5_8xb8-1x_coco.py": "single-stage",
    "tood/tood_r50_fpn_1x_coco.py": "single-stage",
    "vfnet/vfnet_r50_fpn_1x_coco.py": "single-stage",
    "sabl/sabl-retinanet_r50_fpn_1x_coco.py": "single-stage",
    "guided_anchoring/ga-retinanet_r50_fpn_1x_coco.py": "single-stage",
    "ddod/ddod_r50_fpn_1x_coco.py": "single-stage",
    "pisa/retinanet-r50_fpn_pisa_1x_coco.py": "single-stage",
    "nas_fpn/retinanet_r50_nasfpn_crop640-50e_coco.py": "single-stage",
    "dyhead/atss_r50_fpn_dyhead_1x_coco.py": "single-stage",
    "efficientnet/retinanet_effb3_fpn_8xb4-crop896-1x_coco.py": "single-stage",
    "regnet/retinanet_regnetx-800MF_fpn_1x_coco.py": "single-stage",
    # anchor-free
    "fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py": "anchor-free",
    "fcos/fcos_r18_fpn_gn-head-center-normbbox-centeronreg-giou_8xb8-amp-lsj-200e_coco.py": (
        "anchor-free"
    ),
    "foveabox/fovea_r50_fpn_4xb4-1x_coco.py": "anchor-free",
    "centernet/centernet_r18_8xb16-crop512-140e_coco.py": "anchor-free",
    "centernet/centernet-update_r50-caffe_fpn_ms-1x_coco.py": "anchor-free",
    "autoassign/autoassign_r50-caffe_fpn_1x_coco.py": "anchor-free",
    "reppoints/reppoints-moment_r50_fpn_1x_coco.py": "anchor-free",
    "nas_fcos/nas-fcos_r50-caffe_fpn_nashead-gn-head_4xb4-1x_coco.py": "anchor-free",
    "cornernet/cornernet_hourglass104_8xb6-210e-mstest_coco.py": "anchor-free",
    # YOLO-style
    "yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py": "yolo",
    "yolo/yolov3_d53_8xb8-320-273e_coco.py": "yolo",
    "yolox/yolox_tiny_8xb8-300e_coco.py": "yolo",
    "yolox/yolox_s_8xb8-300e_coco.py": "yolo",
    "rtmdet/rtmdet_tiny_8xb32-300e_coco.py": "yolo",
    "rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py": "yolo",
    # two-stage (and an RPN alone)
    "rpn/rpn_r50_fpn_1x_coco.py": "two-stage",
    "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py": "two-stage",
    "faster_rcnn/faster-rcnn_r50-caffe_c4-1x_coco.py": "two-stage",
    "mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py": "two-stage",
    "cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py": "two-stage",
    "libra_rcnn/libra-faster-rcnn_r50_fpn_1x_coco.py": "two-stage",
    "double_heads/dh-faster-rcnn_r50_fpn_1x_coco.py": "two-stage",
    "grid_rcnn/grid-rcnn_r50_fpn_gn-head_1x_coco.py": "two-stage",
    "dynamic_rcnn/dynamic-rcnn_r50_fpn_1x_coco.py": "two-stage",
    "cascade_rpn/cascade-rpn_faster-rcnn_r50-caffe_fpn_1x_coco.py": "two-stage",
    "pafpn/faster-rcnn_r50_pafpn_1x_coco.py": "two-stage",
    "hrnet/faster-rcnn_hrnetv2p-w18-1x_coco.py": "two-stage",
    "ms_rcnn/ms-rcnn_r50-caffe_fpn_1x_coco.py": "two-stage",
    "tridentnet/tridentnet_r50-caffe_1x_coco.py": "two-stage",
    "dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py": "two-stage",
    "point_rend/point-rend_r50-caffe_fpn_ms-1x_coco.py": "two-stage",
    "yolact/yolact_r50_1xb8-55e_coco.py": "single-stage",
    "sparse_rcnn/sparse-rcnn_r50_fpn_1x_coco.py": "query",
    # DETR-style over a ResNet
    "detr/detr_r18_8xb2-500e_coco.py": "detr",
    "deformable_detr/deformable-detr_r50_16xb2-50e_coco.py": "detr",
    "conditional_detr/conditional-detr_r50_8xb2-50e_coco.py": "detr",
    "dab_detr/dab-detr_r50_8xb2-50e_coco.py": "detr",
    "dino/dino-4scale_r50_8xb2-12e_coco.py": "detr",
    "ddq/ddq-detr-4scale_r50_8xb2-12e_coco.py": "detr",
}

# a cross-check of the prediction layers by name (mmdet's names for final cls/box/quality
# layers); the check itself does not depend on it
PREDICTION_NAME = re.compile(
    r"(^|\.)(conv|fc|retina|atss|gfl|rtm|vfnet|rpn|tood)_(cls|reg|centerness|obj|objectness)"
    r"(\.\d+)?$|(^|\.)convs_pred\.\d+$|(^|\.)multi_level_conv_(cls|reg|obj)\.\d+$"
)


@dataclass
class Result:
    config: str
    kind: str
    status: str = "failed"  # ok | failed | skipped (the float detector fails there too)
    stage: str = ""  # load | build | float | binarize | roles | train | predict | timeout
    reason: str = ""
    input_size: int | None = None
    binary_mac_share: float | None = None
    binarized_layers: int | None = None
    float_layers: int | None = None
    untraced_regions: int | None = None
    prediction_layers: list[str] = field(default_factory=list)
    seconds: float | None = None  # CPU time of this thread


class Timeout(BaseException):
    """The config ran past its time budget (a BaseException: code under test must not catch it)."""


def _alarm(_signum, _frame):
    raise Timeout("ran past the per-config CPU-time budget")


def _one_line(exc: BaseException) -> str:
    return sweep_pool.one_line(exc, 220)


def cause(res: Result) -> str:
    """A failure's cause: its stage and its message with numbers and names abstracted."""
    return sweep_pool.failure_cause(res.stage, res.reason, 140)


# ----------------------------------------------------------------------------- data
def write_images(root: Path) -> Path:
    """Four mnist-det-small images (two per split) under ``root``: real digits and boxes."""
    from autobin.data.mnist_det import write_preset

    return write_preset("mnist-det-small", root, trainval=2, test=2)


def read_images(root: Path, count: int = 2) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``count`` trainval images of a mnist-det root as (HxWx3 uint8 RGB, boxes, labels)."""
    from PIL import Image

    from autobin.data.mnist_det import CLASSES, SPLIT_FILES, SUB_ROOT

    base = Path(root) / SUB_ROOT
    ids = (base / SPLIT_FILES["trainval"]).read_text().split()[:count]
    images = []
    for image_id in ids:
        pixels = np.asarray(Image.open(base / "JPEGImages" / f"{image_id}.jpg").convert("RGB"))
        boxes, labels = [], []
        for obj in ET.parse(base / "Annotations" / f"{image_id}.xml").getroot().iter("object"):
            box = obj.find("bndbox")
            x0, y0, x1, y1 = (float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append([x0 - 1, y0 - 1, x1, y1])  # VOC boxes are 1-based and inclusive
            labels.append(CLASSES.index(obj.find("name").text))
        images.append((pixels, np.array(boxes, np.float32), np.array(labels, np.int64)))
    return images


def make_batch(images, size: int) -> dict:
    """An mmdet batch (``inputs``, ``data_samples``) of ``images`` resized to ``size``: BGR
    uint8 tensors as mmdet's loader gives them, boxes, labels and box masks per image."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    from PIL import Image

    inputs, samples = [], []
    for index, (pixels, boxes, labels) in enumerate(images):
        height, width = pixels.shape[:2]
        scale = (size / width, size / height)
        if (height, width) != (size, size):
            pixels = np.asarray(Image.fromarray(pixels).resize((size, size), Image.BILINEAR))
        boxes = boxes * np.array([*scale, *scale], np.float32)
        inputs.append(torch.from_numpy(np.ascontiguousarray(pixels[..., ::-1])).permute(2, 0, 1))
        masks = np.zeros((len(boxes), size, size), np.uint8)
        for mask, (x0, y0, x1, y1) in zip(masks, boxes.round().astype(int)):
            mask[y0:y1, x0:x1] = 1
        sample = DetDataSample(metainfo={
            "img_id": index, "img_path": f"{index}.jpg", "ori_shape": (height, width),
            "img_shape": (size, size), "scale_factor": scale, "flip": False,
            "flip_direction": None,
            # where the image lies in its canvas (top, bottom, left, right), as CenterNet's and
            # CornerNet's test-time crop-and-pad records it: here the canvas is the image
            "border": (0, size, 0, size)})  # fmt: skip
        sample.gt_instances = InstanceData(
            bboxes=torch.from_numpy(boxes), labels=torch.from_numpy(labels),
            masks=BitmapMasks(masks, size, size))  # fmt: skip
        sample.ignored_instances = InstanceData(
            bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))  # fmt: skip
        samples.append(sample)
    return {"inputs": inputs, "data_samples": samples}


# ----------------------------------------------------------------------------- checks
def first_conv(detector: torch.nn.Module, images: torch.Tensor, samples: list) -> str:
    """The name of the first conv the float detector runs on the image (its stem)."""
    order: list[str] = []
    handles = [m.register_forward_hook(lambda *_a, n=n: order.append(n))
               for n, m in detector.named_modules() if isinstance(m, torch.nn.Conv2d)]  # fmt: skip
    try:
        with torch.no_grad():
            detector.eval()(images, samples)
    finally:
        for h in handles:
            h.remove()
    return order[0]


def feature_shapes(detector, images) -> list[tuple[int, ...]]:
    """Shapes of the feature maps the backbone and neck give the heads."""
    from autobin.graph.eager_pass import tensors_in

    with torch.no_grad():
        return [tuple(t.shape) for t in tensors_in(detector.eval().extract_feat(images))]


def check_roles(float_det, binary, stem: str, images, samples) -> list[str]:
    """Prediction layers of the binarized detector; raises if any role is broken."""
    from autobin.integrations.mmdet.family import prediction_layers_of
    from autobin.nn import BinaryLayer

    modules = dict(binary.named_modules())
    if isinstance(modules[stem], BinaryLayer):
        raise AssertionError(f"the stem {stem} is binary")
    found = prediction_layers_of(binary, images, samples)
    layers = (torch.nn.Conv2d, torch.nn.Linear)
    by_name = [n for n, m in modules.items() if isinstance(m, layers) and PREDICTION_NAME.search(n)]
    binary_predictions = [n for n in dict.fromkeys([*found, *by_name])
                          if isinstance(modules[n], BinaryLayer)]  # fmt: skip
    if binary_predictions:
        raise AssertionError(f"prediction layer(s) binary: {binary_predictions[:4]}")
    if not any(isinstance(m, BinaryLayer) for m in modules.values()):
        raise AssertionError("no binary layer")
    want, got = feature_shapes(float_det, images), feature_shapes(binary, images)
    if want != got:
        raise AssertionError(f"feature map shapes differ: float {want}, binary {got}")
    return found


def train_step(detector, batch: dict) -> None:
    """One loss + backward on ``batch``; finite losses and binary-weight gradients."""
    from autobin.nn import BinaryLayer

    detector.train()
    data = detector.data_preprocessor(batch, True)
    losses = detector(**data, mode="loss")
    total, _ = detector.parse_losses(losses)
    if not torch.isfinite(total):
        raise AssertionError(f"loss not finite: { {k: v for k, v in losses.items()} }")
    total.backward()
    grads = [m.weight.grad for m in detector.modules() if isinstance(m, BinaryLayer)]
    if not any(g is not None for g in grads):
        raise AssertionError("no binary layer got a gradient")
    if not all(torch.isfinite(g).all() for g in grads if g is not None):
        raise AssertionError("a binary layer's gradient is not finite")
    detector.zero_grad(set_to_none=True)


def predict(detector, batch: dict) -> None:
    detector.eval()
    with torch.no_grad():
        data = detector.data_preprocessor(batch, False)
        results = detector(**data, mode="predict")
    if len(results) != len(batch["inputs"]):
        raise AssertionError(f"{len(results)} results for {len(batch['inputs'])} images")
    for result in results:
        boxes = result.pred_instances.bboxes
        if boxes.dim() != 2 or boxes.shape[1] != 4 or not torch.isfinite(boxes).all():
            raise AssertionError(f"bad predicted boxes of shape {tuple(boxes.shape)}")


# ----------------------------------------------------------------------------- one config
def run_config(config: str, kind: str, data_root: str, budget: float) -> Result:
    """Build, binarize, check roles, train one step and predict one config (see the module
    docstring); the failure's stage and message on failure."""
    from autobin import info
    from autobin.integrations.mmdet import binarize_detector, build_float_detector, load_config
    from autobin.integrations.mmdet.config import detector_config
    from autobin.integrations.mmdet.family import default_input_size, image_data_samples

    res = Result(config, kind)
    start = time.thread_time()
    signal.signal(signal.SIGPROF, _alarm)  # a CPU-time budget: other jobs slow the wall clock
    signal.setitimer(signal.ITIMER_PROF, budget)
    try:
        res.stage = "load"
        det_cfg = detector_config(load_config(f"mmdet::{config}"))
        # YOLOX's multi-scale training resizes every batch to 480-800 px: the sweep's input
        # size is its own (one small size for train, predict and binarize)
        det_cfg.get("data_preprocessor", {}).pop("batch_augments", None)
        res.stage = "build"
        torch.manual_seed(0)
        detector = build_float_detector(det_cfg, config)
        for module in detector.modules():  # what mmdet's SetEpochInfoHook sets (TOOD's head)
            if hasattr(module, "epoch") and module.epoch is None:
                module.epoch = 0
        has_size = getattr(getattr(detector, "bbox_head", None), "prior_generator", None)
        sizes = [default_input_size(detector)[0]] if hasattr(has_size, "input_size") else SIZES
        res.stage = "float"
        for res.input_size in sizes:  # the smallest size the float detector runs at
            batch = make_batch(read_images(Path(data_root)), res.input_size)
            images = detector.data_preprocessor(batch, False)["inputs"][:1]
            samples = image_data_samples(images)
            try:
                stem = first_conv(detector, images, samples)
                break
            except Exception:
                if res.input_size == sizes[-1]:
                    raise
        res.stage = "binarize"
        binary = binarize_detector(detector, RECIPE, input_size=tuple(images.shape[-2:]))
        totals = info(binary).report.totals
        res.binary_mac_share = round(float(totals["binary_mac_share"]), 3)
        res.binarized_layers = totals["binarized_layers"]
        res.float_layers = totals["float_layers"]
        res.untraced_regions = totals["untraced_regions"]
        res.stage = "roles"
        res.prediction_layers = check_roles(detector, binary, stem, images, samples)
        for res.stage, step in (("train", train_step), ("predict", predict)):
            try:
                step(binary, batch)
            except Exception:
                float_error = _fails(step, detector, batch)
                if float_error is None:
                    raise
                res.status, res.reason = "skipped", f"the float detector fails too: {float_error}"
                return res
        res.status, res.stage = "ok", ""
    except Timeout as exc:
        res.stage, res.reason = "timeout", str(exc)
    except Exception as exc:
        res.reason = _one_line(exc)
        if res.stage == "float":  # mmdet cannot run this detector here: not autobin's to fix
            res.status = "skipped"
        if "--trace" in sys.argv:
            traceback.print_exc()
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        res.seconds = round(time.thread_time() - start, 1)
        gc.collect()
    return res


def _fails(step, detector, batch: dict) -> str | None:
    """The error of ``step`` on the float detector, or None if it runs."""
    try:
        step(detector, batch)
    except Exception as exc:
        return _one_line(exc)
    return None


def _worker_init() -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    import autobin.integrations.mmdet  # noqa: F401  (registers the mmdet family)


# ----------------------------------------------------------------------------- the sweep
def run_all(configs: dict[str, str], data_root: Path, args) -> list[Result]:
    results: list[Result] = []
    names = list(configs)

    def report(res: Result) -> None:
        results.append(res)
        share = f"{res.binary_mac_share:.2f}" if res.binary_mac_share is not None else "-"
        print(f"[{len(results)}/{len(names)}] {res.config} ({res.kind}, {res.input_size} px): "
              f"{res.status} {res.stage} share={share} binary={res.binarized_layers} "
              f"float={res.float_layers} {res.seconds}s {res.reason}", flush=True)  # fmt: skip

    def collect(index: int, outcome) -> None:
        if isinstance(outcome, Result):
            return report(outcome)
        res = Result(names[index], configs[names[index]])
        if isinstance(outcome, sweep_pool.TimedOut):
            res.stage, res.reason = "timeout", f"worker killed after {outcome.seconds:.0f}s"
        elif isinstance(outcome, sweep_pool.Crashed):
            res.stage, res.reason = "crash", f"the worker process {outcome.how}"
        else:
            res.stage, res.reason = "crash", outcome.text
        report(res)

    sweep_pool.run_pool(
        run_config, [(n, configs[n], str(data_root), args.budget) for n in names], jobs=1,
        task_limit=args.wall_limit, on_result=collect, initializer=_worker_init,
    )  # fmt: skip
    return results


def summarize(results: list[Result]) -> float:
    """Print the table by detector type and by cause; return the pass rate of the configs
    tried (a config whose float detector fails on this machine too is skipped, and listed)."""
    ok = [r for r in results if r.status == "ok"]
    failed = [r for r in results if r.status == "failed"]
    skipped = [r for r in results if r.status == "skipped"]
    tried = len(ok) + len(failed)
    rate = len(ok) / tried if tried else 0.0
    by_kind: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_kind[r.kind].append(r)
    print("\nby detector type (pass / tried, skipped):")
    for kind, rows in by_kind.items():
        passed = sum(r.status == "ok" for r in rows)
        skips = sum(r.status == "skipped" for r in rows)
        print(f"  {kind:<13} {passed}/{len(rows) - skips}  skipped {skips}")
    for title, rows in (("failures", failed), ("skipped", skipped)):
        causes: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            causes[cause(r)].append(r.config)
        print(f"\n{title} by cause:" if causes else f"\n{title} by cause: none")
        for text, configs in sorted(causes.items(), key=lambda kv: -len(kv[1])):
            print(f"  {len(configs):>3}  {text}")
            for c in configs:
                print(f"         {c}")
    shares = [r.binary_mac_share for r in ok if r.binary_mac_share is not None]
    if shares:
        print(f"\nbinary MAC share of the passing configs: median {np.median(shares):.2f}, "
              f"min {min(shares):.2f}")  # fmt: skip
    cpu = sum(r.seconds or 0 for r in results)
    print(f"CPU time of the configs: {cpu:.0f} s")
    print(f"configs: {len(results)}  ok: {len(ok)}  failed: {len(failed)}  skipped: "
          f"{len(skipped)}  pass rate: {100 * rate:.1f}% of {tried} tried "
          f"(goal {100 * GOAL_PASS:.0f}%)")  # fmt: skip
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", help="config paths under mmdet's configs/")
    parser.add_argument("--kinds", nargs="*", help="only these detector types of CONFIGS")
    parser.add_argument("--budget", type=float, default=120, help="CPU seconds per config")
    parser.add_argument(
        "--wall-limit", type=float, default=3600, help="wall seconds before a worker is killed"
    )
    parser.add_argument("--json", metavar="PATH", help="write per-config results here")
    parser.add_argument("--trace", action="store_true", help="print each failure's traceback")
    args = parser.parse_args(argv)
    configs = dict(CONFIGS)
    if args.configs:
        configs = {c: CONFIGS.get(c, "other") for c in args.configs}
    if args.kinds:
        configs = {c: k for c, k in configs.items() if k in args.kinds}
    with tempfile.TemporaryDirectory() as tmp:
        data_root = write_images(Path(tmp) / "mnist-det-small")
        results = run_all(configs, data_root, args)
    rate = summarize(results)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0 if rate >= GOAL_PASS else 1


if __name__ == "__main__":
    sys.exit(main())
