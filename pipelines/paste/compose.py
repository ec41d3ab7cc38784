"""Pasting: seam-blended, vectorised pastes, the visibility check, :func:`compose_frame`, the slot accounting and
the destination frame's style statistics."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from schemas.labels import OOD
from style_transfer.blend import blend as blend_tensors
from style_transfer.stats import style_stats
from style_transfer.visibility import visibility
from pipelines.paste.place import Drop, ObjectCrop, ObjectMeta, Placement, resize_object
from pipelines.paste.plan import BLEND_MODES, DROP_BAD_OBJECT, DROP_INVISIBLE, DROP_MISSING_OBJECT, DROP_NO_PLACEMENT, FramePlan

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
    image_id: int = 0
    license_id: int | None = None

    def to_record(self) -> dict[str, object]:
        """The FRAME schema's ``objects`` struct."""
        return {
            "image_id": int(self.image_id),
            "license_id": None if self.license_id is None else int(self.license_id),
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
                meta.source_file if meta else "", meta.image_id if meta else 0, meta.license_id if meta else None))
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
