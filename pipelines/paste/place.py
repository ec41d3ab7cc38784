"""Objects and their placement: crops tightened to their masks, resized and flipped, placed on the first anchor
where they touch no forbidden pixel and no earlier slot (:func:`place_candidates`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from pipelines.paste.plan import Candidate, DROP_MISSING_OBJECT, DROP_NO_PLACEMENT, FramePlan

# -------------------------------------------------------------------------------------------------- objects
@dataclass(frozen=True)
class ObjectMeta:
    """What a frame row records about a pasted bank object.

    Attributes:
        object_id: Bank object id.
        category_id: COCO category id.
        category_name: COCO category name.
        source_file: URL of the object's source image.
        image_id: COCO id of the source image.
        license_id: COCO licence id of the source image (``None`` when unknown).
    """

    object_id: int
    category_id: int = 0
    category_name: str = ""
    source_file: str = ""
    image_id: int = 0
    license_id: int | None = None


@dataclass(frozen=True)
class ObjectCrop:
    """A bank object tightened to its mask.

    Attributes:
        object_id: Bank object id.
        rgb: (h, w, 3) uint8 pixels of the mask's bounding box.
        mask: (h, w) bool object mask.
        category_id: COCO category id.
        category_name: COCO category name.
        source_stats: (9,) float32 style statistics of the object's whole source image
            (:meth:`style_transfer.stats.StyleStats.to_tensor` order).
        source_file: URL of the source image.
        image_id: COCO id of the source image.
        license_id: COCO licence id of the source image (``None`` when the bank does not record it).
    """

    object_id: int
    rgb: np.ndarray
    mask: np.ndarray
    category_id: int = 0
    category_name: str = ""
    source_stats: np.ndarray = field(default_factory=lambda: np.zeros(9, dtype=np.float32))
    source_file: str = ""
    image_id: int = 0
    license_id: int | None = None

    @property
    def meta(self) -> ObjectMeta:
        """The object's :class:`ObjectMeta`."""
        return ObjectMeta(self.object_id, self.category_id, self.category_name, self.source_file, self.image_id,
                          self.license_id)


def tighten(object_id: int, rgb: np.ndarray, mask: np.ndarray, **meta: object) -> ObjectCrop:
    """Crop an object's image and mask to the mask's bounding box.

    Args:
        object_id: Bank object id.
        rgb: (h, w, 3) uint8 crop from the bank.
        mask: (h, w) mask, non-zero on the object.
        **meta: Other :class:`ObjectCrop` fields.

    Returns:
        The tightened :class:`ObjectCrop`.

    Raises:
        ValueError: If the shapes disagree or the mask is empty.
    """
    rgb = np.asarray(rgb)
    mask = np.asarray(mask) != 0
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[:2] != mask.shape:
        raise ValueError(f"object {object_id}: image {rgb.shape} and mask {mask.shape} do not match")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError(f"object {object_id}: the mask is empty")
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return ObjectCrop(object_id, np.ascontiguousarray(rgb[y0:y1, x0:x1]), np.ascontiguousarray(mask[y0:y1, x0:x1]),
                      **meta)  # type: ignore[arg-type]


def object_size(mask_hw: tuple[int, int], scale: float, frame_height: int, min_px: int = 1) -> tuple[int, int]:
    """Pasted size (h, w) of an object whose longer side becomes ``scale * frame_height`` pixels.

    Args:
        mask_hw: (h, w) of the tight object crop.
        scale: Longer side as a fraction of the frame height.
        frame_height: H.
        min_px: Smallest longer side in pixels.

    Returns:
        (h, w), both at least 1, aspect ratio kept.
    """
    h, w = mask_hw
    longer = max(int(min_px), int(round(scale * frame_height)))
    if h >= w:
        return longer, max(1, int(round(w * longer / h)))
    return max(1, int(round(h * longer / w))), longer


def resize_object(rgb: np.ndarray, mask: np.ndarray, size_hw: tuple[int, int],
                  flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Resize an object (bilinear with antialiasing) and its mask (bilinear, thresholded at 0.5), then flip.

    Args:
        rgb: (h, w, 3) uint8.
        mask: (h, w) bool or uint8 (non-zero inside).
        size_hw: Target (H', W').
        flip: Flip horizontally after resizing.

    Returns:
        ``(rgb, mask)``: (H', W', 3) uint8 and (H', W') bool.
    """
    th, tw = int(size_hw[0]), int(size_hw[1])
    if rgb.shape[:2] == (th, tw):
        out_rgb = np.asarray(rgb, dtype=np.uint8)
        out_mask = np.asarray(mask) != 0
    else:
        out_rgb = np.asarray(Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).resize(
            (tw, th), Image.Resampling.BILINEAR))
        m8 = np.where(np.asarray(mask) != 0, 255, 0).astype(np.uint8)
        out_mask = np.asarray(Image.fromarray(m8).resize((tw, th), Image.Resampling.BILINEAR)) >= 128
    if flip:
        out_rgb, out_mask = out_rgb[:, ::-1], out_mask[:, ::-1]
    return np.array(out_rgb, dtype=np.uint8, order="C"), np.array(out_mask, dtype=bool, order="C")


# ---------------------------------------------------------------------------------------------- placement
@dataclass(frozen=True)
class Placement:
    """A candidate resized and placed in the frame (before style alignment).

    Attributes:
        slot: Slot index.
        candidate: Candidate index within the slot.
        object_id: Bank object id.
        box: (x0, y0, x1, y1) in frame pixels, exclusive ends; the object's resized crop fills it.
        scale: Pasted longer side / frame height (the drawn scale, reduced by ``max_upscale`` and rounding).
        flip: Whether the object is flipped.
        anchor: Index of the anchor that succeeded.
        rgb: (y1-y0, x1-x0, 3) uint8 resized object pixels (before alignment).
        mask: (y1-y0, x1-x0) bool resized object mask.
    """

    slot: int
    candidate: int
    object_id: int
    box: tuple[int, int, int, int]
    scale: float
    flip: bool
    anchor: int
    rgb: np.ndarray
    mask: np.ndarray

    @property
    def key(self) -> tuple[int, int]:
        """``(slot, candidate)``."""
        return self.slot, self.candidate


@dataclass(frozen=True)
class Drop:
    """A candidate or slot that was not pasted, and why (one of :data:`DROP_REASONS`)."""

    slot: int
    candidate: int
    object_id: int
    reason: str


def _try_anchors(crop: ObjectCrop, cand: Candidate, frame_hw: tuple[int, int], blocked: np.ndarray,
                 min_px: int, slot: int, cidx: int, max_upscale: float = 0.0) -> Placement | None:
    h, w = frame_hw
    cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    longest = max(crop.mask.shape)
    for ai, anchor in enumerate(cand.anchors):
        scale = anchor.scale
        if max_upscale > 0:
            scale = min(scale, max_upscale * longest / h)
        size = object_size(crop.mask.shape, scale, h, min_px)
        if size[0] > h or size[1] > w:
            continue
        if size not in cache:
            cache[size] = resize_object(crop.rgb, crop.mask, size, cand.flip)
        rgb, mask = cache[size]
        if not mask.any():
            continue
        oh, ow = size
        x0, y1 = anchor.x - ow // 2, anchor.y + 1
        y0, x1 = y1 - oh, x0 + ow
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            continue
        if bool((blocked[y0:y1, x0:x1] & mask).any()):
            continue
        return Placement(slot, cidx, crop.object_id, (int(x0), int(y0), int(x1), int(y1)), max(oh, ow) / h,
                         cand.flip, ai, rgb, mask)
    return None


def place_candidates(plan: FramePlan, crops: Mapping[int, ObjectCrop], forbidden: np.ndarray,
                     min_object_px: int = 4, max_upscale: float = 0.0) -> tuple[list[Placement], list[Drop]]:
    """Place every candidate of a plan, slot by slot.

    A candidate takes its first anchor at which the resized object lies inside the frame and none of its mask
    pixels covers a forbidden pixel or a pixel claimed by a candidate of an earlier slot. All placed candidates
    of a slot claim their pixels (whichever is pasted later), so the final objects never overlap whatever the
    visibility check decides.

    Args:
        plan: The frame's plan.
        crops: Tight object crops by object id (missing ids are dropped as ``missing_object``).
        forbidden: (H, W) bool from :func:`forbidden_mask`.
        min_object_px: Smallest pasted longer side in pixels.
        max_upscale: Largest enlargement over the object's source size (0: no limit).

    Returns:
        ``(placements, drops)`` in slot then candidate order.

    Raises:
        ValueError: If the forbidden mask does not have the plan's frame size.
    """
    if forbidden.shape != (plan.height, plan.width):
        raise ValueError(f"forbidden mask {forbidden.shape} does not match the plan's frame "
                         f"{(plan.height, plan.width)}")
    blocked = np.array(forbidden, dtype=bool, copy=True)
    placements: list[Placement] = []
    drops: list[Drop] = []
    for slot in plan.slots:
        placed_here: list[Placement] = []
        for ci, cand in enumerate(slot.candidates):
            crop = crops.get(cand.object_id)
            if crop is None:
                drops.append(Drop(slot.index, ci, cand.object_id, DROP_MISSING_OBJECT))
                continue
            p = _try_anchors(crop, cand, (plan.height, plan.width), blocked, min_object_px, slot.index, ci,
                             max_upscale)
            if p is None:
                drops.append(Drop(slot.index, ci, cand.object_id, DROP_NO_PLACEMENT))
            else:
                placed_here.append(p)
        for p in placed_here:
            x0, y0, x1, y1 = p.box
            blocked[y0:y1, x0:x1] |= p.mask
        placements.extend(placed_here)
    return placements, drops
