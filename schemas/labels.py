"""Cityscapes label table and the label conventions every stage shares.

Cityscapes annotates 34 ``labelIds`` (plus the ``-1`` license plate, which never appears in the
released PNGs); 19 of them are evaluated and mapped to ``trainIds`` 0..18, every other label maps to
:data:`IGNORE`. Pasted out-of-distribution pixels are labelled :data:`OOD`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OOD: int = 254
"""Label of pasted out-of-distribution pixels in augmented frames."""

IGNORE: int = 255
"""Label of pixels that take part in no loss and no metric."""

NUM_CLASSES: int = 19
"""Number of Cityscapes train classes."""


@dataclass(frozen=True)
class Label:
    """One row of the official Cityscapes label table.

    Attributes:
        name: Class name as Cityscapes spells it.
        id: ``labelId`` stored in ``*_gtFine_labelIds.png``.
        train_id: ``trainId`` (0..18), or :data:`IGNORE` for classes that are not evaluated.
        category: Cityscapes category (flat, construction, ...).
        has_instances: Whether instances of this class are annotated individually.
        ignore_in_eval: Whether the class is excluded from evaluation.
        color: RGB colour of the class in ``*_gtFine_color.png``.
    """

    name: str
    id: int
    train_id: int
    category: str
    has_instances: bool
    ignore_in_eval: bool
    color: tuple[int, int, int]


LABELS: tuple[Label, ...] = (
    Label("unlabeled", 0, IGNORE, "void", False, True, (0, 0, 0)),
    Label("ego vehicle", 1, IGNORE, "void", False, True, (0, 0, 0)),
    Label("rectification border", 2, IGNORE, "void", False, True, (0, 0, 0)),
    Label("out of roi", 3, IGNORE, "void", False, True, (0, 0, 0)),
    Label("static", 4, IGNORE, "void", False, True, (0, 0, 0)),
    Label("dynamic", 5, IGNORE, "void", False, True, (111, 74, 0)),
    Label("ground", 6, IGNORE, "void", False, True, (81, 0, 81)),
    Label("road", 7, 0, "flat", False, False, (128, 64, 128)),
    Label("sidewalk", 8, 1, "flat", False, False, (244, 35, 232)),
    Label("parking", 9, IGNORE, "flat", False, True, (250, 170, 160)),
    Label("rail track", 10, IGNORE, "flat", False, True, (230, 150, 140)),
    Label("building", 11, 2, "construction", False, False, (70, 70, 70)),
    Label("wall", 12, 3, "construction", False, False, (102, 102, 156)),
    Label("fence", 13, 4, "construction", False, False, (190, 153, 153)),
    Label("guard rail", 14, IGNORE, "construction", False, True, (180, 165, 180)),
    Label("bridge", 15, IGNORE, "construction", False, True, (150, 100, 100)),
    Label("tunnel", 16, IGNORE, "construction", False, True, (150, 120, 90)),
    Label("pole", 17, 5, "object", False, False, (153, 153, 153)),
    Label("polegroup", 18, IGNORE, "object", False, True, (153, 153, 153)),
    Label("traffic light", 19, 6, "object", False, False, (250, 170, 30)),
    Label("traffic sign", 20, 7, "object", False, False, (220, 220, 0)),
    Label("vegetation", 21, 8, "nature", False, False, (107, 142, 35)),
    Label("terrain", 22, 9, "nature", False, False, (152, 251, 152)),
    Label("sky", 23, 10, "sky", False, False, (70, 130, 180)),
    Label("person", 24, 11, "human", True, False, (220, 20, 60)),
    Label("rider", 25, 12, "human", True, False, (255, 0, 0)),
    Label("car", 26, 13, "vehicle", True, False, (0, 0, 142)),
    Label("truck", 27, 14, "vehicle", True, False, (0, 0, 70)),
    Label("bus", 28, 15, "vehicle", True, False, (0, 60, 100)),
    Label("caravan", 29, IGNORE, "vehicle", True, True, (0, 0, 90)),
    Label("trailer", 30, IGNORE, "vehicle", True, True, (0, 0, 110)),
    Label("train", 31, 16, "vehicle", True, False, (0, 80, 100)),
    Label("motorcycle", 32, 17, "vehicle", True, False, (0, 0, 230)),
    Label("bicycle", 33, 18, "vehicle", True, False, (119, 11, 32)),
)
"""The 34 Cityscapes labels in ``labelId`` order."""

LABEL_BY_NAME: dict[str, Label] = {lab.name: lab for lab in LABELS}
LABEL_BY_ID: dict[int, Label] = {lab.id: lab for lab in LABELS}

TRAIN_CLASSES: tuple[str, ...] = tuple(
    lab.name for lab in sorted((x for x in LABELS if x.train_id != IGNORE), key=lambda x: x.train_id)
)
"""Names of the 19 train classes, indexed by ``trainId``."""

TRAIN_COLORS: np.ndarray = np.array(
    [LABEL_BY_NAME[n].color for n in TRAIN_CLASSES], dtype=np.uint8
)
"""RGB colours of the 19 train classes, shape (19, 3)."""

# Lookup tables over the full uint8 range: unknown ids map to IGNORE.
_ID_TO_TRAIN = np.full(256, IGNORE, dtype=np.uint8)
for _lab in LABELS:
    _ID_TO_TRAIN[_lab.id] = _lab.train_id
_ID_TO_COLOR = np.zeros((256, 3), dtype=np.uint8)
for _lab in LABELS:
    _ID_TO_COLOR[_lab.id] = _lab.color
_TRAIN_TO_COLOR = np.zeros((256, 3), dtype=np.uint8)
_TRAIN_TO_COLOR[: NUM_CLASSES] = TRAIN_COLORS
_TRAIN_TO_COLOR[OOD] = (255, 255, 255)

EGO_VEHICLE_ID: int = LABEL_BY_NAME["ego vehicle"].id
"""labelId of the ego vehicle, where nothing may be pasted."""


class LabelValueError(ValueError):
    """A label file holds values its encoding does not allow."""


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map Cityscapes ``labelIds`` to ``trainIds`` with the official table.

    Args:
        label_ids: Integer array of any shape with values in 0..255.

    Returns:
        uint8 array of the same shape; labels outside the 19 train classes become :data:`IGNORE`.

    Raises:
        ValueError: If the array holds values outside 0..255.
    """
    arr = np.asarray(label_ids)
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(
                f"labelIds must lie in 0..255, found range {int(arr.min())}..{int(arr.max())}"
            )
        arr = arr.astype(np.uint8)
    return _ID_TO_TRAIN[arr]


def colorize_label_ids(label_ids: np.ndarray) -> np.ndarray:
    """Colour a ``labelIds`` map as Cityscapes' ``*_gtFine_color.png`` does.

    Args:
        label_ids: uint8 array (H, W).

    Returns:
        uint8 RGB array (H, W, 3).
    """
    return _ID_TO_COLOR[np.asarray(label_ids, dtype=np.uint8)]


def colorize_train_ids(train_ids: np.ndarray) -> np.ndarray:
    """Colour a ``trainIds`` map; :data:`OOD` is white and :data:`IGNORE` black.

    Args:
        train_ids: uint8 array (H, W).

    Returns:
        uint8 RGB array (H, W, 3).
    """
    return _TRAIN_TO_COLOR[np.asarray(train_ids, dtype=np.uint8)]
