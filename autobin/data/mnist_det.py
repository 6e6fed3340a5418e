"""``mnist-det``: a small object-detection dataset in the PASCAL VOC layout, made of real digits.

No VOC or COCO exists offline, so detection is exercised on images composed from the real
handwritten digits of ``mnist5k``: each square RGB image (300x300 by default) places a few
digits (classes ``'0'``..``'9'``) at random positions and scales on a textured background.
Two presets (:data:`PRESETS`): ``mnist-det`` (300x300 images, digits 48-128 px) and
``mnist-det-small`` (128x128 images, digits 20-55 px: the same share of the canvas, sized for
detectors that train to convergence on a few CPU cores; 8,000 trainval images, because a small
SSD overfits 1,000 within ten epochs: its test mAP fell from 0.61 to 0.58 while its training
loss fell 3.5x, where on 4,000 images it rose to 0.89 in the same iterations).
Digits of mnist5k's *train* split only appear in ``trainval`` images and digits of its *test*
split only in ``test`` images. Everything is drawn from one seeded generator, so the same
arguments write byte-identical files on every machine.

Layout (what mmdet's ``VOCDataset`` reads)::

    PATH/
      mnist-det.json                          # manifest: arguments, counts, classes
      VOCdevkit/MNISTDET/
        JPEGImages/<id>.jpg
        Annotations/<id>.xml                  # VOC XML, 1-based pixel boxes
        ImageSets/Main/trainval.txt
        ImageSets/Main/test.txt

The folder is called ``MNISTDET`` rather than ``VOC2007`` so that mmdet does not label the
results with the 20 VOC class names. ``PATH`` appears complete or not at all: the files are
written to a temporary sibling folder that is renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from ..atomic import OWNER_FILE, fsync_dir, owner_gone, write_owner
from ..errors import AutobinError
from .datasets import _mnist5k_arrays, _seeded_split

CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
MANIFEST = "mnist-det.json"
SUB_ROOT = "VOCdevkit/MNISTDET/"
"""The VOC year folder, relative to the dataset root (mmdet's ``data_prefix.sub_data_root``)."""
SPLIT_FILES = {"trainval": "ImageSets/Main/trainval.txt", "test": "ImageSets/Main/test.txt"}
DATASET_FORMAT = "autobin-mnist-det"
DATASET_VERSION = 1


class VOCLayoutError(AutobinError, ValueError):
    """A directory is not a VOC-format dataset (the message says what is missing and the fix)."""


class DatasetPresetError(AutobinError, ValueError):
    """An unknown mnist-det preset or preset argument."""


@dataclass(frozen=True)
class MnistDetSpec:
    """The arguments that decide every byte of a generated ``mnist-det`` dataset.

    Attributes:
        trainval: images in the trainval split (digits from mnist5k's train split).
        test: images in the test split (digits from mnist5k's test split).
        image_size: side of the square images in pixels.
        min_digits, max_digits: digits per image (inclusive range).
        min_scale, max_scale: digit size in pixels (a 28x28 digit is resized to this square).
        seed: seed of the generator.
    """

    trainval: int = 400
    test: int = 100
    image_size: int = 300
    min_digits: int = 1
    max_digits: int = 4
    min_scale: int = 48
    max_scale: int = 128
    seed: int = 0

    def check(self) -> None:
        """Raise ``ValueError`` naming the bad argument."""
        if self.trainval < 1 or self.test < 1:
            raise ValueError(
                f"mnist-det needs at least one image per split, got trainval={self.trainval}, "
                f"test={self.test}"
            )
        if not 1 <= self.min_digits <= self.max_digits:
            raise ValueError(
                f"digits per image must satisfy 1 <= min_digits <= max_digits, got "
                f"{self.min_digits}..{self.max_digits}"
            )
        if not 8 <= self.min_scale <= self.max_scale <= self.image_size // 2:
            raise ValueError(
                f"digit scale must satisfy 8 <= min_scale <= max_scale <= image_size/2 "
                f"({self.image_size // 2}), got {self.min_scale}..{self.max_scale}"
            )


PRESETS: dict[str, MnistDetSpec] = {
    "mnist-det": MnistDetSpec(),
    "mnist-det-small": MnistDetSpec(
        trainval=8000, test=200, image_size=128, min_scale=20, max_scale=55
    ),
}
"""The named datasets of ``autobin mmdet-data NAME PATH`` and ``mmdet-config --data NAME``."""


def preset(name: str, **overrides) -> MnistDetSpec:
    """The spec of the preset ``name`` with ``overrides`` (fields of :class:`MnistDetSpec`).

    Raises:
        DatasetPresetError: unknown preset or field.
    """
    if name not in PRESETS:
        raise DatasetPresetError(
            f"unknown mnist-det preset {name!r}; choose one of {sorted(PRESETS)}"
        )
    fields = set(asdict(PRESETS[name]))
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise DatasetPresetError(
            f"{name}: unknown argument(s) {unknown}; the arguments are {sorted(fields)}"
        )
    return replace(PRESETS[name], **overrides)


def write_preset(
    name: str, root: str | os.PathLike[str], *, overwrite: bool = False, **overrides
) -> Path:
    """Write the preset ``name`` (``mnist-det``, ``mnist-det-small``) to ``root``.

    ``overrides`` change single fields of the preset (e.g. ``trainval=100``); see
    :func:`write_mnist_det` for what is written and when an existing dataset is kept.
    """
    return write_mnist_det(root, **asdict(preset(name, **overrides)), overwrite=overwrite)


# --------------------------------------------------------------------------- drawing
def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured RGB background: smooth colour blobs plus fine grain, float in [0, 255]."""
    from PIL import Image

    cells = int(rng.integers(3, 9))
    coarse = rng.uniform(30, 200, size=(cells, cells, 3)).astype(np.uint8)
    smooth = np.asarray(
        Image.fromarray(coarse, "RGB").resize((size, size), Image.Resampling.BICUBIC),
        dtype=np.float32,
    )
    grain = rng.normal(0.0, float(rng.uniform(4, 18)), size=(size, size, 1)).astype(np.float32)
    stripes = np.zeros((size, size, 1), np.float32)
    if rng.random() < 0.5:  # faint stripes so the texture is not only blobs
        period = float(rng.uniform(8, 40))
        angle = float(rng.uniform(0, np.pi))
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
        stripes[..., 0] = 12.0 * np.sin(phase)
    return np.clip(smooth + grain + stripes, 0, 255)


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def _compose(
    rng: np.random.Generator,
    spec: MnistDetSpec,
    digits: np.ndarray,
    labels: np.ndarray,
    pool: np.ndarray,
) -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int, int]]], list[int]]:
    """One image: background plus digits; returns uint8 HxWx3, ``[(class, box)]`` and the
    mnist5k indices of the digits drawn (in the same order).

    Boxes are 0-based ``(x0, y0, x1, y1)`` with exclusive ends, tight around the ink.
    """
    from PIL import Image

    size = spec.image_size
    canvas = _background(rng, size)
    objects: list[tuple[str, tuple[int, int, int, int]]] = []
    used: list[int] = []
    cells: list[tuple[int, int, int, int]] = []
    wanted = int(rng.integers(spec.min_digits, spec.max_digits + 1))
    for _ in range(wanted):
        index = int(pool[rng.integers(len(pool))])
        scale = int(rng.integers(spec.min_scale, spec.max_scale + 1))
        for _attempt in range(20):  # place without heavy overlap with earlier digits
            x0 = int(rng.integers(0, size - scale + 1))
            y0 = int(rng.integers(0, size - scale + 1))
            cell = (x0, y0, x0 + scale, y0 + scale)
            if all(_iou(cell, other) < 0.1 for other in cells):
                break
        else:
            continue
        glyph = Image.fromarray(digits[index], "L").resize(
            (scale, scale), Image.Resampling.BILINEAR
        )
        alpha = np.asarray(glyph, dtype=np.float32) / 255.0
        ys, xs = np.nonzero(alpha > 0.2)
        if len(xs) == 0:
            continue
        local = canvas[y0 : y0 + scale, x0 : x0 + scale]
        # ink colour: far from the local background so every digit stays visible
        mean = local.reshape(-1, 3).mean(axis=0)
        ink = np.where(mean > 127, rng.uniform(0, 60, 3), rng.uniform(195, 255, 3))
        local[:] = local * (1 - alpha[..., None]) + ink * alpha[..., None]
        cells.append(cell)
        box = (
            x0 + int(xs.min()),
            y0 + int(ys.min()),
            x0 + int(xs.max()) + 1,
            y0 + int(ys.max()) + 1,
        )
        objects.append((CLASSES[int(labels[index])], box))
        used.append(index)
    return canvas.round().astype(np.uint8), objects, used


def _annotation_xml(image_id: str, size: int, objects) -> str:
    parts = [
        "<annotation>",
        "  <folder>MNISTDET</folder>",
        f"  <filename>{image_id}.jpg</filename>",
        f"  <size><width>{size}</width><height>{size}</height><depth>3</depth></size>",
        "  <segmented>0</segmented>",
    ]
    for name, (x0, y0, x1, y1) in objects:
        parts += [
            "  <object>",
            f"    <name>{escape(name)}</name>",
            "    <pose>Unspecified</pose>",
            "    <truncated>0</truncated>",
            "    <difficult>0</difficult>",
            # VOC boxes are 1-based and inclusive
            f"    <bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1}</xmax>"
            f"<ymax>{y1}</ymax></bndbox>",
            "  </object>",
        ]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def _write_split(
    tmp: Path, split: str, count: int, spec: MnistDetSpec, rng, sources: dict[str, list[int]]
) -> int:
    from PIL import Image

    images, labels, _ = _mnist5k_arrays()
    source_split = "train" if split == "trainval" else "test"
    pool = _seeded_split(len(images), 1000, source_split)
    voc = tmp / SUB_ROOT
    ids, objects_written = [], 0
    for i in range(count):
        image_id = f"{split}_{i:06d}"
        pixels, objects, used = _compose(rng, spec, images, labels, pool)
        sources[image_id] = used
        Image.fromarray(pixels, "RGB").save(voc / "JPEGImages" / f"{image_id}.jpg", quality=92)
        (voc / "Annotations" / f"{image_id}.xml").write_text(
            _annotation_xml(image_id, spec.image_size, objects)
        )
        ids.append(image_id)
        objects_written += len(objects)
    (voc / SPLIT_FILES[split]).write_text("\n".join(ids) + "\n")
    return objects_written


# --------------------------------------------------------------------------- public API
def read_manifest(root: str | os.PathLike[str]) -> dict | None:
    """The manifest of a generated dataset at ``root``, or None if there is none."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("format") == DATASET_FORMAT else None


def write_mnist_det(
    root: str | os.PathLike[str],
    *,
    trainval: int = 400,
    test: int = 100,
    image_size: int = 300,
    min_digits: int = 1,
    max_digits: int = 4,
    min_scale: int = 48,
    max_scale: int = 128,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write the ``mnist-det`` VOC-format dataset to ``root`` (see the module docstring).

    If ``root`` already holds an ``mnist-det`` dataset made with the same arguments and none of
    its files is missing, it is kept as it is (generation is deterministic), so calling this
    again is cheap; if files it lists are missing (images deleted), it is written again. Temporary
    folders that an interrupted call left next to ``root`` are removed first.

    Args:
        root: the dataset root (``data_root`` of mmdet's ``VOCDataset``).
        trainval, test: images per split.
        image_size: side of the square images.
        min_digits, max_digits: digits per image.
        min_scale, max_scale: digit size range in pixels.
        seed: generator seed.
        overwrite: replace ``root`` if it exists with other contents.

    Returns:
        ``root`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: bad arguments.
        FileExistsError: ``root`` exists, is not this very dataset and ``overwrite`` is False.
    """
    spec = MnistDetSpec(trainval, test, image_size, min_digits, max_digits, min_scale, max_scale,
                        seed)  # fmt: skip
    spec.check()
    root = Path(root)
    remove_interrupted(root)
    existing = read_manifest(root)
    same = existing is not None and existing.get("spec") == asdict(spec)
    if same and not missing_files(root, existing):
        return root
    if not same and root.exists() and not overwrite and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(
            f"{root} exists and is not an mnist-det dataset made with these arguments; choose "
            "another path or pass overwrite=True (--overwrite) to replace it"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp-"))
    try:
        write_owner(tmp)
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (tmp / SUB_ROOT / sub).mkdir(parents=True)
        rng = np.random.default_rng(spec.seed)
        sources: dict[str, list[int]] = {}
        counts = {
            s: _write_split(tmp, s, getattr(spec, s), spec, rng, sources) for s in SPLIT_FILES
        }
        manifest = {
            "format": DATASET_FORMAT,
            "version": DATASET_VERSION,
            "spec": asdict(spec),
            "classes": list(CLASSES),
            "sub_data_root": SUB_ROOT,
            "images": {"trainval": spec.trainval, "test": spec.test},
            "objects": counts,
            "mnist5k_sources": sources,  # image id -> mnist5k indices of its digits, in order
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        (tmp / OWNER_FILE).unlink()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp made it private
        fsync_dir(tmp)
        if root.exists():
            old = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.old-"))
            write_owner(old)
            os.rename(root, old / "d")
            try:
                os.rename(tmp, root)
            except BaseException:
                os.rename(old / "d", root)
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, root)
        fsync_dir(root.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def missing_files(root: str | os.PathLike[str], manifest: dict) -> list[Path]:
    """Files of the generated dataset at ``root`` that its split files or manifest call for
    but that are absent (split files, images, annotations), in order."""
    voc = Path(root) / SUB_ROOT
    missing: list[Path] = []
    for split, split_file in SPLIT_FILES.items():
        path = voc / split_file
        ids = path.read_text().split() if path.is_file() else []
        if len(ids) != (manifest.get("images") or {}).get(split):
            missing.append(path)  # absent, or lists another number of images
        for image_id in ids:
            for needed in (voc / "JPEGImages" / f"{image_id}.jpg",
                           voc / "Annotations" / f"{image_id}.xml"):  # fmt: skip
                if not needed.is_file():
                    missing.append(needed)
    return missing


def remove_interrupted(root: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary folders an interrupted :func:`write_mnist_det` left next to
    ``root`` (``.NAME.tmp-*``, ``.NAME.old-*`` whose writing process is gone); return them."""
    root = Path(root)
    if not root.parent.is_dir():
        return []
    removed = []
    for prefix in (f".{root.name}.tmp-", f".{root.name}.old-"):
        for folder in sorted(root.parent.glob(prefix + "*")):
            if folder.is_dir() and owner_gone(folder):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed


def check_voc_root(root: str | os.PathLike[str], sub_data_root: str = SUB_ROOT) -> Path:
    """Check that ``root`` is a VOC-format dataset root; return the VOC year folder.

    Raises:
        VOCLayoutError: a required folder or split file is missing, or a split lists an image
            whose JPEG or XML is absent (the message names the path and how to make one).
    """
    root = Path(root)
    voc = root / sub_data_root
    fix = (
        f"point the config at a VOC-format root (VOCdevkit/<year>/JPEGImages, Annotations, "
        f"ImageSets/Main/*.txt) or create one with: autobin mmdet-data mnist-det {root}"
    )
    if not root.is_dir():
        raise VOCLayoutError(f"data root {root} does not exist; {fix}")
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        if not (voc / sub).is_dir():
            raise VOCLayoutError(f"{root} is not VOC-shaped: {voc / sub} is missing; {fix}")
    for split_file in SPLIT_FILES.values():
        path = voc / split_file
        if not path.is_file():
            raise VOCLayoutError(f"{root} is not VOC-shaped: {path} is missing; {fix}")
        ids = path.read_text().split()
        if not ids:
            raise VOCLayoutError(f"{path} lists no images; {fix}")
        first = ids[0]
        for needed in (voc / "JPEGImages" / f"{first}.jpg", voc / "Annotations" / f"{first}.xml"):
            if not needed.is_file():
                raise VOCLayoutError(f"{path} lists {first!r} but {needed} is missing; {fix}")
    return voc


__all__ = [
    "CLASSES",
    "PRESETS",
    "SUB_ROOT",
    "DatasetPresetError",
    "MnistDetSpec",
    "VOCLayoutError",
    "check_voc_root",
    "missing_files",
    "preset",
    "read_manifest",
    "remove_interrupted",
    "write_mnist_det",
    "write_preset",
]
