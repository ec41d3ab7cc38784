"""Paste plans: the settings, the drop reasons and :func:`plan_frame`, which draws a frame's slots, candidates and
anchors from the run seed and the frame id alone."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from schemas.labels import IGNORE, LABELS
from schemas.rng import rng_for


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
