"""The side-by-side PNG of detections: boxes are drawn where the detections are, the image is
untouched elsewhere, and a column per detector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autobin.integrations.mmdet.figures import GAP, HEADER, PALETTE, Detection, draw_side_by_side

pytestmark = pytest.mark.mmdet


def test_boxes_are_drawn_where_the_detections_are(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    source = tmp_path / "img.png"
    pixels = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(source)
    box = Detection(label=3, score=0.87, box=(10.0, 20.0, 30.0, 35.0))
    out = draw_side_by_side(
        [source], {"float": [[box]], "binary": [[]]}, tmp_path / "d.png", scale=2
    )
    sheet = np.asarray(Image.open(out).convert("RGB"))
    assert sheet.shape == (HEADER + 80 + 2 * GAP, 2 * 100 + 3 * GAP, 3)
    enlarged = np.asarray(Image.fromarray(pixels).resize((100, 80), Image.Resampling.NEAREST))
    left = sheet[HEADER : HEADER + 80, GAP : GAP + 100]
    right = sheet[HEADER : HEADER + 80, 2 * GAP + 100 : 2 * GAP + 200]
    # no detections: the enlarged image exactly
    assert np.array_equal(right, enlarged)
    # the box outline (scaled by 2: x 20..60, y 40..70) is drawn in class 3's colour
    assert (left[55, 20] == PALETTE[3]).all() and (left[55, 60] == PALETTE[3]).all()
    assert (left[70, 40] == PALETTE[3]).all()
    # inside the box, away from the label, and outside it the image is unchanged
    assert np.array_equal(left[50:68, 23:58], enlarged[50:68, 23:58])
    assert np.array_equal(left[:, 65:], enlarged[:, 65:])
    changed = np.any(left != enlarged, axis=2)
    assert changed[40:71, 20:61].sum() > 100 and not changed[72:, :].any()


def test_one_list_of_detections_per_image(tmp_path: Path) -> None:
    source = tmp_path / "img.png"
    Image.new("RGB", (8, 8)).save(source)
    with pytest.raises(ValueError, match=r"column 'float' has detections for 2 images, expected 1"):
        draw_side_by_side([source], {"float": [[], []]}, tmp_path / "d.png")
    assert not (tmp_path / "d.png").exists()
