"""Pure core of the augment pipeline: per-frame paste plans, object placement and vectorised pasting.

Everything here is numpy/torch on decoded arrays and has no Beam dependency; :mod:`pipelines.augment` wraps it.

A frame's life:

1. :func:`plan_frame` draws, from ``rng_for(seed, frame_id)`` alone, whether the frame gets pastes, how many
   *slots* (objects) it gets, and for every slot ``K`` *candidates* drawn in advance (bank object, scale, flip
   and a bounded list of anchor points on the drivable area). Drawing the re-draws in advance keeps the
   pipeline to a single join with the bank: the first candidate of a slot that can be placed and stays
   visible after style alignment is used, the others are spares.
2. :func:`place_candidates` resizes each candidate's object (object crop tightened to its mask, longer side =
   ``scale * frame height``, flipped) and tries its anchors in order until the placed mask touches no
   forbidden pixel (ego vehicle and the other Cityscapes *void* labels) and no region claimed by an earlier
   slot's candidates. Candidates that fit nowhere are dropped with reason ``no_placement``.
3. The placed candidates are restyled to the destination frame (at their pasted size) outside this module.
4. :func:`compose_frame` pastes, slot by slot, the first candidate whose paste is visible
   (``visibility >= min_contrast``); the label map gets :data:`~schemas.labels.OOD` (254) where the resized
   object mask is 1. A slot whose candidates are all invisible is dropped with reason ``invisible``.

Every dropped candidate and slot is returned so that the pipeline can count it; nothing is dropped silently.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from schemas.labels import IGNORE, LABELS, OOD
from schemas.rng import rng_for
from style_transfer.blend import blend as blend_tensors
from style_transfer.stats import style_stats
from style_transfer.visibility import visibility

VOID_LABEL_IDS: tuple[int, ...] = tuple(lab.id for lab in LABELS if lab.category == "void")
"""Cityscapes labelIds of the *void* category (unlabeled, ego vehicle, rectification border, out of roi, static,
dynamic, ground): no pasted pixel may land on them by default."""

ROAD, SIDEWALK, TERRAIN = 0, 1, 9
DEFAULT_SURFACES: tuple[tuple[int, float], ...] = ((ROAD, 0.8), (SIDEWALK, 0.1), (TERRAIN, 0.1))
"""Default anchor surfaces: (trainId, weight). Weights are renormalised over the surfaces present in a frame."""

BLEND_MODES: tuple[str, ...] = ("feather", "laplacian", "none")

DROP_NO_PLACEMENT = "no_placement"
DROP_INVISIBLE = "invisible"
DROP_MISSING_OBJECT = "missing_object"
DROP_BAD_OBJECT = "bad_object"
DROP_REASONS: tuple[str, ...] = (DROP_NO_PLACEMENT, DROP_INVISIBLE, DROP_MISSING_OBJECT, DROP_BAD_OBJECT)


# --------------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class PasteConfig:
    """Settings of the per-frame plan and of placement.

    Attributes:
        paste_prob: Probability that a frame gets pastes at all (frames without keep their inlier pixels).
        objects_min: Fewest objects (slots) in a frame that gets pastes.
        objects_max: Most objects (slots) in a frame that gets pastes.
        scale_min: Smallest object size: the object's longer side as a fraction of the frame height.
        scale_max: Largest object size (same unit). Sizes are log-uniform in ``[scale_min, scale_max]``, so small
            objects dominate, as in the real benchmarks.
        flip_prob: Probability of a horizontal flip.
        surfaces: ``(trainId, weight)`` pairs where the object's bottom centre may stand; renormalised over the
            surfaces present in the frame. When none is present, any allowed pixel is used.
        forbidden_label_ids: labelIds no pasted pixel may cover (default: the Cityscapes void category, which
            includes the ego vehicle, id 1). When a frame has no labelIds map, its ignore (255) trainIds are
            forbidden instead.
        candidates_per_slot: ``K`` objects drawn in advance for each slot; the first that can be placed and
            stays visible after alignment is pasted (``K - 1`` re-draws).
        anchors_per_candidate: Placement tries per candidate (bounded re-sampling of the position).
        class_balanced: Draw a category uniformly first, then an object of it; otherwise objects are uniform.
        perspective: Tie the scale to the anchor's height in the frame: lower anchors (closer to the camera)
            get bigger objects. The size stays within ``[scale_min, scale_max]``.
        min_object_px: Smallest pasted longer side in pixels.
        max_upscale: Largest enlargement of an object over its size in the source image; a larger drawn scale
            is reduced to it (upscaled small COCO objects turn into blurry blobs). 0 disables the limit.
    """

    paste_prob: float = 0.5
    objects_min: int = 1
    objects_max: int = 3
    scale_min: float = 0.03
    scale_max: float = 0.3
    flip_prob: float = 0.5
    surfaces: tuple[tuple[int, float], ...] = DEFAULT_SURFACES
    forbidden_label_ids: tuple[int, ...] = VOID_LABEL_IDS
    candidates_per_slot: int = 2
    anchors_per_candidate: int = 8
    class_balanced: bool = False
    perspective: bool = False
    min_object_px: int = 4
    max_upscale: float = 3.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.paste_prob <= 1.0:
            raise ValueError(f"paste_prob must lie in [0, 1], got {self.paste_prob}")
        if not 1 <= self.objects_min <= self.objects_max:
            raise ValueError(
                f"objects per frame must satisfy 1 <= min <= max, got {self.objects_min}-{self.objects_max}")
        if not 0.0 < self.scale_min <= self.scale_max <= 1.0:
            raise ValueError(
                f"scale range must satisfy 0 < min <= max <= 1 (fractions of the frame height), "
                f"got {self.scale_min}-{self.scale_max}")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob must lie in [0, 1], got {self.flip_prob}")
        if not self.surfaces or any(w < 0 for _, w in self.surfaces) or sum(w for _, w in self.surfaces) <= 0:
            raise ValueError(f"surfaces must be (trainId, weight >= 0) pairs with a positive sum, got {self.surfaces}")
        if any(not 0 <= t <= 255 for t, _ in self.surfaces):
            raise ValueError(f"surface trainIds must lie in 0..255, got {self.surfaces}")
        if any(not 0 <= i <= 255 for i in self.forbidden_label_ids):
            raise ValueError(f"forbidden labelIds must lie in 0..255, got {self.forbidden_label_ids}")
        if self.candidates_per_slot < 1:
            raise ValueError(f"candidates_per_slot must be at least 1, got {self.candidates_per_slot}")
        if self.anchors_per_candidate < 1:
            raise ValueError(f"anchors_per_candidate must be at least 1, got {self.anchors_per_candidate}")
        if self.min_object_px < 1:
            raise ValueError(f"min_object_px must be at least 1, got {self.min_object_px}")
        if self.max_upscale < 0 or (0 < self.max_upscale < 1):
            raise ValueError(f"max_upscale must be 0 (no limit) or >= 1, got {self.max_upscale}")


# ------------------------------------------------------------------------------------------------------ plans
@dataclass(frozen=True)
class Anchor:
    """One placement try: the object's bottom-centre pixel and its size there.

    Attributes:
        x: Column of the bottom-centre pixel.
        y: Row of the bottom-centre pixel (the object's lowest row).
        scale: Object's longer side as a fraction of the frame height.
    """

    x: int
    y: int
    scale: float


@dataclass(frozen=True)
class Candidate:
    """One object drawn for a slot.

    Attributes:
        object_id: Bank object id.
        flip: Horizontal flip.
        anchors: Placement tries, in order.
    """

    object_id: int
    flip: bool
    anchors: tuple[Anchor, ...]


@dataclass(frozen=True)
class Slot:
    """One object to paste, with its candidates in preference order."""

    index: int
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class FramePlan:
    """Everything random about one frame, drawn from ``rng_for(seed, frame_id)``.

    Attributes:
        frame_id: The frame.
        seed: Run seed.
        height: Frame height H.
        width: Frame width W.
        slots: Objects to paste (empty: the frame is written unchanged).
    """

    frame_id: str
    seed: int
    height: int
    width: int
    slots: tuple[Slot, ...] = ()

    @property
    def pastes(self) -> bool:
        """Whether the frame gets any paste."""
        return bool(self.slots)

    def object_ids(self) -> list[int]:
        """Sorted distinct bank ids of every candidate."""
        return sorted({c.object_id for s in self.slots for c in s.candidates})


def forbidden_mask(train_ids: np.ndarray, label_ids: np.ndarray | None,
                   forbidden_label_ids: Sequence[int] = VOID_LABEL_IDS) -> np.ndarray:
    """Pixels that no pasted object pixel may cover.

    Args:
        train_ids: (H, W) uint8 trainIds.
        label_ids: (H, W) uint8 labelIds, or None when the frame has none.
        forbidden_label_ids: labelIds to avoid (ego vehicle, void, ...).

    Returns:
        (H, W) bool: True where pasting is forbidden. Without labelIds, every ignore (255) trainId.

    Raises:
        ValueError: If the two maps differ in shape.
    """
    if label_ids is None:
        return np.asarray(train_ids) == IGNORE
    if label_ids.shape != train_ids.shape:
        raise ValueError(f"labelIds {label_ids.shape} and trainIds {train_ids.shape} differ in shape")
    lut = np.zeros(256, dtype=bool)
    lut[list(forbidden_label_ids)] = True
    return lut[np.asarray(label_ids, dtype=np.uint8)]


def _log_scale(cfg: PasteConfig, q: float) -> float:
    lo, hi = math.log(cfg.scale_min), math.log(cfg.scale_max)
    return float(math.exp(lo + (hi - lo) * min(max(q, 0.0), 1.0)))


def plan_frame(frame_id: str, train_ids: np.ndarray, label_ids: np.ndarray | None, bank_ids: np.ndarray,
               cfg: PasteConfig, seed: int, bank_categories: np.ndarray | None = None) -> FramePlan:
    """Draw the paste plan of one frame, deterministically from ``(seed, frame_id)``.

    The draws happen in a fixed order: paste or not; number of slots; the ``slots * K`` objects (uniform without
    replacement when the bank is big enough, or class-balanced); then per candidate flip, a scale quantile and
    the anchors (surface by weight, then a uniform pixel of it, never a forbidden one).

    Args:
        frame_id: Cityscapes frame id (the RNG key).
        train_ids: (H, W) uint8 trainIds of the frame.
        label_ids: (H, W) uint8 labelIds, or None.
        bank_ids: (N,) int64 bank object ids, sorted ascending (the plan depends on the order).
        cfg: Plan settings.
        seed: Run seed.
        bank_categories: (N,) category id of each bank object (needed when ``cfg.class_balanced``).

    Returns:
        The :class:`FramePlan`; ``slots`` is empty when the frame gets no paste or the bank is empty.

    Raises:
        ValueError: If ``bank_ids`` is not sorted, the categories do not match, or the maps are not 2-D.
    """
    train_ids = np.asarray(train_ids)
    if train_ids.ndim != 2:
        raise ValueError(f"train_ids must be (H, W), got shape {train_ids.shape}")
    bank_ids = np.asarray(bank_ids, dtype=np.int64)
    if bank_ids.size > 1 and not bool(np.all(bank_ids[1:] > bank_ids[:-1])):
        raise ValueError("bank_ids must be sorted ascending and unique (the plan depends on their order)")
    if cfg.class_balanced:
        if bank_categories is None or len(bank_categories) != len(bank_ids):
            raise ValueError("class-balanced sampling needs one category per bank id")
    h, w = train_ids.shape
    rng = rng_for(seed, frame_id)
    empty = FramePlan(frame_id, int(seed), h, w)
    if rng.random() >= cfg.paste_prob or bank_ids.size == 0:
        return empty
    n_slots = int(rng.integers(cfg.objects_min, cfg.objects_max + 1))
    k = cfg.candidates_per_slot
    picks = _pick_objects(rng, bank_ids, bank_categories if cfg.class_balanced else None, n_slots * k)

    forbidden = forbidden_mask(train_ids, label_ids, cfg.forbidden_label_ids)
    surfaces, weights = _surface_pixels(train_ids, forbidden, cfg.surfaces)
    top_row = _top_row(surfaces, w, h)

    slots = []
    for s in range(n_slots):
        cands = []
        for c in range(k):
            flip = bool(rng.random() < cfg.flip_prob)
            u = float(rng.random())
            anchors = []
            for _ in range(cfg.anchors_per_candidate):
                if not surfaces:
                    break
                which = int(rng.choice(len(surfaces), p=weights)) if len(surfaces) > 1 else 0
                pix = surfaces[which]
                flat = int(pix[int(rng.integers(pix.size))])
                y, x = divmod(flat, w)
                if cfg.perspective:
                    depth = (y - top_row) / max(h - 1 - top_row, 1)
                    scale = _log_scale(cfg, 0.25 * u + 0.75 * depth)
                else:
                    scale = _log_scale(cfg, u)
                anchors.append(Anchor(int(x), int(y), scale))
            cands.append(Candidate(int(picks[s * k + c]), flip, tuple(anchors)))
        slots.append(Slot(s, tuple(cands)))
    return FramePlan(frame_id, int(seed), h, w, tuple(slots))


def _pick_objects(rng: np.random.Generator, bank_ids: np.ndarray, categories: np.ndarray | None,
                  n: int) -> np.ndarray:
    if categories is None:
        replace = bank_ids.size < n
        return bank_ids[rng.choice(bank_ids.size, size=n, replace=replace)]
    cats = np.asarray(categories)
    uniq = np.unique(cats)
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        members = bank_ids[cats == uniq[int(rng.integers(uniq.size))]]
        out[i] = members[int(rng.integers(members.size))]
    return out


def _surface_pixels(train_ids: np.ndarray, forbidden: np.ndarray,
                    surfaces: Sequence[tuple[int, float]]) -> tuple[list[np.ndarray], np.ndarray]:
    """Flat indices of the allowed pixels of each present surface, and the renormalised weights."""
    allowed = ~forbidden
    found, weights = [], []
    for train_id, weight in surfaces:
        if weight <= 0:
            continue
        idx = np.flatnonzero((train_ids == train_id) & allowed)
        if idx.size:
            found.append(idx)
            weights.append(weight)
    if not found:
        idx = np.flatnonzero(allowed)
        if idx.size:
            return [idx], np.ones(1)
        return [], np.ones(0)
    wts = np.asarray(weights, dtype=np.float64)
    return found, wts / wts.sum()


def _top_row(surfaces: list[np.ndarray], width: int, height: int) -> int:
    """Highest row of any surface pixel (the horizon estimate of the perspective option)."""
    if not surfaces:
        return 0
    return int(min(int(p.min()) for p in surfaces) // width) if height else 0


# -------------------------------------------------------------------------------------------------- objects
@dataclass(frozen=True)
class ObjectMeta:
    """What a frame row records about a pasted bank object.

    Attributes:
        object_id: Bank object id.
        category_id: COCO category id.
        category_name: COCO category name.
        source_file: URL of the object's source image.
    """

    object_id: int
    category_id: int = 0
    category_name: str = ""
    source_file: str = ""


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
    """

    object_id: int
    rgb: np.ndarray
    mask: np.ndarray
    category_id: int = 0
    category_name: str = ""
    source_stats: np.ndarray = field(default_factory=lambda: np.zeros(9, dtype=np.float32))
    source_file: str = ""

    @property
    def meta(self) -> ObjectMeta:
        """The object's :class:`ObjectMeta`."""
        return ObjectMeta(self.object_id, self.category_id, self.category_name, self.source_file)


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


# -------------------------------------------------------------------------------------------------- pasting
BlendFn = Callable[[np.ndarray, np.ndarray, np.ndarray, str], np.ndarray]
"""``blend(background (h,w,3) uint8, foreground (h,w,3) uint8, mask (h,w) bool, mode) -> (h,w,3) uint8``."""

VisibilityFn = Callable[[np.ndarray, np.ndarray], float]
"""``visibility(composite (h,w,3) uint8, mask (h,w) bool) -> float`` (higher = more visible)."""


def blend_pad(mode: str, box_hw: tuple[int, int] | None = None) -> int:
    """Context margin around an object's box that seam blending reads (pixels).

    ``feather`` reads about three blur sigmas (1.5 px by default) beyond the silhouette, ``laplacian`` about
    ``2 ** levels`` (4 levels by default) pixels; ``none`` reads nothing.
    """
    return {"none": 0, "feather": 6, "laplacian": 16}.get(mode, 16)


def paste(frame_rgb: np.ndarray, label: np.ndarray, obj_rgb: np.ndarray, obj_mask: np.ndarray,
          box: tuple[int, int, int, int], blend: str = "feather", *, flip: bool = False,
          blend_fn: BlendFn | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Paste one object into a frame: resize it to ``box``, flip, blend the seam, label the mask 254.

    Args:
        frame_rgb: (H, W, 3) uint8 frame (not modified).
        label: (H, W) uint8 trainIds (not modified).
        obj_rgb: (h, w, 3) uint8 object pixels (resized bilinearly to the box when sizes differ).
        obj_mask: (h, w) object mask (bool or 0/1; resized bilinearly and thresholded at 0.5).
        box: (x0, y0, x1, y1) in frame pixels, exclusive ends, inside the frame.
        blend: Seam blending mode, one of :data:`BLEND_MODES`.
        flip: Flip the object horizontally.
        blend_fn: Blending implementation (default :func:`default_blend`).

    Returns:
        ``(rgb, label, ood_pixels)``: new arrays and the number of pixels labelled 254 by this paste.

    Raises:
        ValueError: For a box outside the frame, mismatched shapes or an unknown blend mode.
    """
    rgb_out = np.array(frame_rgb, dtype=np.uint8, copy=True)
    label_out = np.array(label, dtype=np.uint8, copy=True)
    x0, y0, x1, y1 = (int(v) for v in box)
    obj_rgb, obj_mask = resize_object(obj_rgb, obj_mask, (y1 - y0, x1 - x0), flip)
    n = paste_into(rgb_out, label_out, obj_rgb, obj_mask, (x0, y0, x1, y1), blend, blend_fn=blend_fn)
    return rgb_out, label_out, n


def _check_paste_args(frame_rgb: np.ndarray, label: np.ndarray, obj_rgb: np.ndarray, obj_mask: np.ndarray,
                      box: tuple[int, int, int, int], blend: str) -> None:
    if blend not in BLEND_MODES:
        raise ValueError(f"blend must be one of {BLEND_MODES}, got {blend!r}")
    if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or label.shape != frame_rgb.shape[:2]:
        raise ValueError(f"frame {frame_rgb.shape} and label {label.shape} do not match")
    h, w = label.shape
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ValueError(f"box {box} is not a non-empty box inside the {w}x{h} frame")
    if obj_rgb.shape != (y1 - y0, x1 - x0, 3) or obj_mask.shape != (y1 - y0, x1 - x0):
        raise ValueError(f"object {obj_rgb.shape} / mask {obj_mask.shape} do not fill box {box}")


def composite_region(frame_rgb: np.ndarray, obj_rgb: np.ndarray, obj_mask: np.ndarray,
                     box: tuple[int, int, int, int], blend: str, *, pad: int | None = None,
                     blend_fn: BlendFn | None = None) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """Blend an object into the frame region around its box, without touching the frame.

    Args:
        frame_rgb: (H, W, 3) uint8 frame.
        obj_rgb: (h, w, 3) uint8 object filling ``box``.
        obj_mask: (h, w) bool mask filling ``box``.
        box: (x0, y0, x1, y1).
        blend: Seam blending mode.
        pad: Context margin (default :func:`blend_pad`), clipped to the frame.
        blend_fn: Blending implementation (default :func:`default_blend`).

    Returns:
        ``(region, composite, mask)``: the region (x0, y0, x1, y1) the result covers, its (rh, rw, 3) uint8
        composite, and the object mask (rh, rw) bool in region coordinates.
    """
    h, w = frame_rgb.shape[:2]
    x0, y0, x1, y1 = box
    m = blend_pad(blend, (y1 - y0, x1 - x0)) if pad is None else int(pad)
    rx0, ry0, rx1, ry1 = max(0, x0 - m), max(0, y0 - m), min(w, x1 + m), min(h, y1 + m)
    bg = frame_rgb[ry0:ry1, rx0:rx1]
    fg = bg.copy()
    mask = np.zeros(bg.shape[:2], dtype=bool)
    sy, sx = y0 - ry0, x0 - rx0
    inner = (slice(sy, sy + (y1 - y0)), slice(sx, sx + (x1 - x0)))
    fg[inner][obj_mask] = obj_rgb[obj_mask]
    mask[inner] = obj_mask
    out = (blend_fn or default_blend)(bg, fg, mask, blend)
    return (rx0, ry0, rx1, ry1), out, mask


def paste_into(frame_rgb: np.ndarray, label: np.ndarray, obj_rgb: np.ndarray, obj_mask: np.ndarray,
               box: tuple[int, int, int, int], blend: str = "feather", *,
               blend_fn: BlendFn | None = None) -> int:
    """In-place variant of :func:`paste` for an object already at its box size.

    Args:
        frame_rgb: (H, W, 3) uint8, modified in place.
        label: (H, W) uint8, modified in place (254 where ``obj_mask``).
        obj_rgb: (h, w, 3) uint8 filling ``box``.
        obj_mask: (h, w) bool filling ``box``.
        box: (x0, y0, x1, y1).
        blend: Seam blending mode.
        blend_fn: Blending implementation.

    Returns:
        Number of pixels labelled 254.
    """
    obj_mask = np.asarray(obj_mask) != 0
    _check_paste_args(frame_rgb, label, obj_rgb, obj_mask, box, blend)
    (rx0, ry0, rx1, ry1), out, mask = composite_region(frame_rgb, obj_rgb, obj_mask, box, blend, blend_fn=blend_fn)
    frame_rgb[ry0:ry1, rx0:rx1] = out
    label[ry0:ry1, rx0:rx1][mask] = OOD
    return int(mask.sum())


def default_blend(background: np.ndarray, foreground: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """Seam blending of one region with :func:`style_transfer.blend.blend` (numpy in, numpy out).

    Args:
        background: (h, w, 3) uint8 frame region.
        foreground: (h, w, 3) uint8 region with the object pasted in (background elsewhere).
        mask: (h, w) bool object mask.
        mode: One of :data:`BLEND_MODES`.

    Returns:
        (h, w, 3) uint8 blended region.
    """
    if mode == "none":
        out = background.copy()
        out[mask] = foreground[mask]
        return out
    bg = torch.from_numpy(np.ascontiguousarray(background)).permute(2, 0, 1)[None].float().div_(255.0)
    fg = torch.from_numpy(np.ascontiguousarray(foreground)).permute(2, 0, 1)[None].float().div_(255.0)
    m = torch.from_numpy(np.ascontiguousarray(mask))[None, None].float()
    with torch.no_grad():
        out = blend_tensors(bg, fg, m, mode=mode)
    return to_uint8(out[0])


def to_uint8(image: object) -> np.ndarray:
    """(3, H, W) float tensor/array in [0, 1] -> (H, W, 3) uint8 (rounded)."""
    t = image if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
    return t.detach().float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


@dataclass(frozen=True)
class PastedObject:
    """Provenance of one pasted object (one entry of the FRAME row's ``objects``)."""

    object_id: int
    category_id: int
    category_name: str
    box: tuple[int, int, int, int]
    scale: float
    flip: bool
    ood_pixels: int
    contrast: float
    slot: int = 0
    candidate: int = 0
    source_file: str = ""

    def to_record(self) -> dict[str, object]:
        """The FRAME schema's ``objects`` struct."""
        return {
            "object_id": int(self.object_id),
            "category_id": int(self.category_id),
            "category_name": str(self.category_name),
            "box": [int(v) for v in self.box],
            "scale": float(self.scale),
            "flip": bool(self.flip),
            "ood_pixels": int(self.ood_pixels),
            "contrast": float(self.contrast),
        }


@dataclass(frozen=True)
class ComposeResult:
    """Output of :func:`compose_frame`.

    Attributes:
        rgb: (H, W, 3) uint8 frame after pasting.
        label: (H, W) uint8 trainIds with 254 on pasted pixels.
        objects: Pasted objects in slot order.
        drops: Placed candidates whose paste was invisible (reason ``invisible``), in the order tried; a slot
            is dropped when all of its placed candidates are here (see :func:`slot_outcomes`).
        ood_pixels: Pixels labelled 254.
    """

    rgb: np.ndarray
    label: np.ndarray
    objects: tuple[PastedObject, ...]
    drops: tuple[Drop, ...]
    ood_pixels: int


def compose_frame(frame_rgb: np.ndarray, train_ids: np.ndarray, placements: Sequence[Placement],
                  aligned: Mapping[tuple[int, int], np.ndarray], crops: Mapping[int, ObjectMeta | ObjectCrop], *,
                  blend: str = "feather", min_contrast: float = 0.0,
                  visibility_fn: VisibilityFn | None = None,
                  blend_fn: BlendFn | None = None) -> ComposeResult:
    """Paste, slot by slot, the first placed candidate whose paste is visible.

    Args:
        frame_rgb: (H, W, 3) uint8 frame.
        train_ids: (H, W) uint8 trainIds.
        placements: From :func:`place_candidates`.
        aligned: Restyled object pixels (h, w, 3) uint8 by placement key ``(slot, candidate)``; a placement
            without an entry is pasted unaligned.
        crops: Object metadata (or crops) by id: category and source file of each pasted object.
        blend: Seam blending mode.
        min_contrast: Smallest visibility of a kept paste; below it the slot's next candidate is tried.
        visibility_fn: Visibility measure (default :func:`default_visibility`); only called when
            ``min_contrast > 0`` or to record the contrast.
        blend_fn: Blending implementation.

    Returns:
        The :class:`ComposeResult`.
    """
    rgb = np.array(frame_rgb, dtype=np.uint8, copy=True)
    label = np.array(train_ids, dtype=np.uint8, copy=True)
    vis = visibility_fn or default_visibility
    objects: list[PastedObject] = []
    drops: list[Drop] = []
    by_slot: dict[int, list[Placement]] = {}
    for p in placements:
        by_slot.setdefault(p.slot, []).append(p)
    for slot in sorted(by_slot):
        for p in sorted(by_slot[slot], key=lambda q: q.candidate):
            obj = aligned.get(p.key, p.rgb)
            if obj.shape != p.rgb.shape:
                raise ValueError(f"aligned object for slot {p.slot} candidate {p.candidate} has shape "
                                 f"{obj.shape}, expected {p.rgb.shape}")
            region, comp, mask = composite_region(rgb, obj, p.mask, p.box, blend, blend_fn=blend_fn)
            contrast = float(vis(*_visibility_view(rgb, region, comp, p)))
            if contrast < min_contrast:
                drops.append(Drop(slot, p.candidate, p.object_id, DROP_INVISIBLE))
                continue
            rx0, ry0, rx1, ry1 = region
            rgb[ry0:ry1, rx0:rx1] = comp
            label[ry0:ry1, rx0:rx1][mask] = OOD
            meta = crops.get(p.object_id)
            objects.append(PastedObject(
                p.object_id, meta.category_id if meta else 0, meta.category_name if meta else "", p.box,
                p.scale, p.flip, int(mask.sum()), contrast, p.slot, p.candidate,
                meta.source_file if meta else ""))
            break
    return ComposeResult(rgb, label, tuple(objects), tuple(drops), int((label == OOD).sum()))


VISIBILITY_RING: int = 8
"""Ring width (pixels) of the visibility measure around a pasted object."""


def visibility_region(frame_hw: tuple[int, int], box: tuple[int, int, int, int],
                      ring: int = VISIBILITY_RING) -> tuple[int, int, int, int]:
    """Region around a box that the visibility measure looks at: the box plus its ring (clipped)."""
    h, w = frame_hw
    x0, y0, x1, y1 = box
    r = int(ring) + 1
    return max(0, x0 - r), max(0, y0 - r), min(w, x1 + r), min(h, y1 + r)


def _visibility_view(rgb: np.ndarray, region: tuple[int, int, int, int], comp: np.ndarray,
                     p: Placement) -> tuple[np.ndarray, np.ndarray]:
    """The composite around a placement (blend region and visibility ring) and the object mask in it."""
    rx0, ry0, rx1, ry1 = region
    gx0, gy0, gx1, gy1 = visibility_region(rgb.shape[:2], p.box)
    vx0, vy0, vx1, vy1 = min(rx0, gx0), min(ry0, gy0), max(rx1, gx1), max(ry1, gy1)
    view = rgb[vy0:vy1, vx0:vx1].copy()
    view[ry0 - vy0:ry1 - vy0, rx0 - vx0:rx1 - vx0] = comp
    m = np.zeros(view.shape[:2], dtype=bool)
    x0, y0, x1, y1 = p.box
    m[y0 - vy0:y1 - vy0, x0 - vx0:x1 - vx0] = p.mask
    return view, m


def default_visibility(composite: np.ndarray, mask: np.ndarray) -> float:
    """Visibility of a paste with :func:`style_transfer.visibility.visibility` (numpy in, float out).

    Args:
        composite: (h, w, 3) uint8 region around the object after pasting.
        mask: (h, w) bool object mask in the region.

    Returns:
        The visibility measure (higher = more visible).
    """
    comp = torch.from_numpy(np.ascontiguousarray(composite)).permute(2, 0, 1)[None].float().div_(255.0)
    m = torch.from_numpy(np.ascontiguousarray(mask))[None, None].float()
    with torch.no_grad():
        return float(visibility(comp, m, ring_width=VISIBILITY_RING)[0])


# ------------------------------------------------------------------------------------------------ accounting
SLOT_PASTED = "pasted"


def slot_outcomes(plan: FramePlan, placement_drops: Sequence[Drop], result: ComposeResult | None) -> dict[int, str]:
    """What became of each slot of a plan: ``"pasted"`` or the reason it was dropped.

    A slot none of whose candidates was placed is dropped as ``no_placement`` when at least one candidate
    had an object but no room, else as ``bad_object`` / ``missing_object``; a slot whose placed candidates
    were all invisible after alignment is dropped as ``invisible``.

    Args:
        plan: The frame's plan.
        placement_drops: Drops returned by :func:`place_candidates`.
        result: The :class:`ComposeResult`, or None when nothing was placed.

    Returns:
        Slot index -> outcome, for every slot of the plan.
    """
    pasted = {o.slot for o in result.objects} if result else set()
    invisible = {d.slot for d in result.drops if d.reason == DROP_INVISIBLE} if result else set()
    reasons: dict[int, set[str]] = {}
    for d in placement_drops:
        reasons.setdefault(d.slot, set()).add(d.reason)
    out: dict[int, str] = {}
    for slot in plan.slots:
        s = slot.index
        if s in pasted:
            out[s] = SLOT_PASTED
        elif s in invisible:
            out[s] = DROP_INVISIBLE
        else:
            found = reasons.get(s, set())
            for reason in (DROP_NO_PLACEMENT, DROP_BAD_OBJECT, DROP_MISSING_OBJECT):
                if reason in found:
                    out[s] = reason
                    break
            else:
                out[s] = DROP_NO_PLACEMENT
    return out


# ------------------------------------------------------------------------------------------- frame style
STYLE_WINDOW: int = 512
"""Side of the full-resolution window the sensor statistics (sharpness, noise, blockiness) are measured on."""


def frame_style(rgb: np.ndarray, style_height: int = 256, window: int = STYLE_WINDOW
                ) -> tuple[np.ndarray, np.ndarray]:
    """A destination frame's style thumbnail and its style statistics, for the aligners.

    The colour statistics (Lab mean and std) come from the thumbnail; sharpness, noise and blockiness depend
    on resolution, so they are measured at full resolution on a centred ``window`` x ``window`` crop whose
    corner lies on the frame's 8x8 JPEG grid (about 15x cheaper than the whole 2048x1024 frame).

    Args:
        rgb: (H, W, 3) uint8 frame.
        style_height: Thumbnail height (the frame itself when it is not taller).
        window: Side of the full-resolution window.

    Returns:
        ``(thumbnail, stats)``: (h, w, 3) uint8 with h = min(H, style_height), and (9,) float32 in
        :meth:`style_transfer.stats.StyleStats.to_tensor` order.
    """
    h, w = rgb.shape[:2]
    if h > style_height:
        tw = max(1, int(round(w * style_height / h)))
        thumb = np.array(Image.fromarray(np.ascontiguousarray(rgb)).resize((tw, style_height),
                                                                           Image.Resampling.BILINEAR))
    else:
        thumb = np.array(rgb, dtype=np.uint8, copy=True)
    wh, ww = min(h, window), min(w, window)
    y0, x0 = ((h - wh) // 2) // 8 * 8, ((w - ww) // 2) // 8 * 8
    crop = np.array(rgb[y0:y0 + wh, x0:x0 + ww], dtype=np.uint8, copy=True)

    def as_tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).permute(2, 0, 1)[None].float().div_(255.0)

    with torch.no_grad():
        moments = style_stats(as_tensor(thumb))[0]
        same = h <= style_height and (wh, ww) == (h, w)
        sensor = moments if same else style_stats(as_tensor(crop))[0]
    stats = torch.cat([moments[:6], sensor[6:]]).numpy().astype(np.float32)
    return thumb, stats
