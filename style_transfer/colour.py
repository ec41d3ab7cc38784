"""Colour aligners: Reinhard's Lab statistics transfer (image or object mode), histogram matching and FDA's
low-frequency Fourier amplitude swap. Each follows :class:`style_transfer.aligners.Aligner`'s contract."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import math

import torch
import torch.nn.functional as F

from style_transfer._ops import (
    lab_to_rgb,
    masked_mean_std,
    rgb_to_lab,
)
from style_transfer.aligners import AlignInputs, Aligner, _check_choice, _moments

class Reinhard(Aligner):
    """Lab mean/std transfer (Reinhard et al. 2001) with kornia's Lab.

    ``mode="image"`` (default) estimates the per-channel affine map from the source image's Lab statistics
    (``source_stats``; without them the whole content crop's) to the destination's (``style`` in
    ``style_mask``, or ``style_stats``) and applies it to the object:
    ``out = (x - mu_src) * sigma_dst / sigma_src + mu_dst``. The object's offset from its source image's mean
    is kept, scaled by the std ratio, so it keeps its contrast against the scene.

    ``mode="object"`` maps the object's own masked statistics onto the style region's: the object takes the
    region's mean colour and spread (it camouflages; kept for comparison).

    The std ratio is clamped to [1 / max_ratio, max_ratio] (default: 4 in image mode, where a grey source
    image would otherwise blow up chroma noise; no clamp in object mode, the textbook transfer). Lab values
    outside the sRGB gamut are clipped by the conversion back; with those two exceptions the statistics hit
    their targets exactly.

    Args:
        mode: "image" or "object".
        strength: Blend with the input, in [0, 1].
        max_ratio: Largest std ratio applied (>= 1), or None for the mode's default.
    """

    def __init__(self, mode: str = "image", strength: float = 1.0, max_ratio: float | None = None) -> None:
        super().__init__(strength)
        self.mode = _check_choice("reinhard mode", mode, ("image", "object"))
        if max_ratio is None:
            max_ratio = 4.0 if self.mode == "image" else math.inf
        if not float(max_ratio) >= 1.0:
            raise ValueError(f"max_ratio must be >= 1, got {max_ratio!r}")
        self.max_ratio = float(max_ratio)

    @classmethod
    def pixels_needed(cls, params: Mapping[str, Any]) -> bool:
        return params.get("mode", "image") == "object"

    @property
    def needs_style_pixels(self) -> bool:
        return self.pixels_needed({"mode": self.mode})

    def restyle(self, inputs: AlignInputs) -> torch.Tensor:
        lab = rgb_to_lab(inputs.content)
        if self.mode == "image":
            src = inputs.src_moments()
            dst = inputs.dst_moments()
        else:
            mean, std = masked_mean_std(lab, inputs.weight)
            src = torch.cat([mean, std], dim=1)
            dst = _moments(*inputs.style_unique()).expand(inputs.batch, -1)
        mu_s, sd_s = src[:, :3, None, None], src[:, 3:, None, None]
        mu_d, sd_d = dst[:, :3, None, None], dst[:, 3:, None, None]
        ratio = (sd_d / sd_s.clamp_min(1e-3)).clamp(1.0 / self.max_ratio, self.max_ratio)
        return lab_to_rgb((lab - mu_s) * ratio + mu_d)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, strength={self.strength}, max_ratio={self.max_ratio}"

class Histogram(Aligner):
    """Masked per-channel histogram (CDF) matching.

    Each channel value is given its mid-rank quantile among the source pixels and replaced by the reference
    quantile function at that quantile (linear interpolation between sorted reference values), all batched
    with sorts and ``searchsorted``.

    ``mode="image"`` (default): the source distribution is the whole content crop (the object and its
    surrounding source image: the stored source statistics hold moments, not histograms) and the reference is
    ``style`` within ``style_mask``. ``mode="object"``: the source is the masked object, so the object's
    masked CDFs become the style region's (it camouflages; kept for comparison).

    Pixels outside the object that a soft mask still partly covers (weight <= 0.5) keep their value in
    object mode.

    Args:
        mode: "image" or "object".
        space: "lab" (default; L, a, b matched independently) or "rgb".
        strength: Blend with the input, in [0, 1].
        max_reference: The style region is thinned to about this many pixels with a fixed stride before
            its quantile function is taken (None: use every pixel).
    """

    def __init__(
        self, mode: str = "image", space: str = "lab", strength: float = 1.0, max_reference: int | None = 32768
    ) -> None:
        super().__init__(strength)
        self.mode = _check_choice("histogram mode", mode, ("image", "object"))
        self.space = _check_choice("histogram space", space, ("lab", "rgb"))
        if max_reference is not None and int(max_reference) < 1:
            raise ValueError(f"max_reference must be a positive integer or None, got {max_reference!r}")
        self.max_reference = None if max_reference is None else int(max_reference)

    def restyle(self, inputs: AlignInputs) -> torch.Tensor:
        to_space = rgb_to_lab if self.space == "lab" else (lambda t: t)
        x = to_space(inputs.content)
        style, style_weight = inputs.style_unique()
        ref = to_space(style)
        src_valid = (inputs.weight > 0.5) if self.mode == "object" else torch.ones_like(inputs.weight, dtype=torch.bool)
        ref_valid = style_weight > 0.5 if style_weight is not None else torch.ones_like(ref[:, :1], dtype=torch.bool)
        out = match_cdf(x, src_valid, ref, ref_valid, self.max_reference)
        return lab_to_rgb(out) if self.space == "lab" else out

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, space={self.space!r}, strength={self.strength}"


def match_cdf(
    x: torch.Tensor,
    x_valid: torch.Tensor,
    ref: torch.Tensor,
    ref_valid: torch.Tensor,
    max_reference: int | None = None,
) -> torch.Tensor:
    """Per-channel CDF matching of ``x`` (distribution over ``x_valid``) to ``ref`` (over ``ref_valid``).

    A valid pixel of rank ``r`` among the ``n`` valid source values (ties share their mid-rank) gets the
    reference quantile at ``(r + 0.5) / n``, by linear interpolation between sorted reference values.
    One sort per side, no search: ranks come from the sort itself.

    Args:
        x: (B, C, H, W) values to map.
        x_valid: (B, 1, H, W) bool: pixels that define the source distribution and get mapped; the others
            keep their value.
        ref: (B, C, h, w) reference values.
        ref_valid: (B, 1, h, w) bool: pixels that define the reference distribution.
        max_reference: If set, the reference is thinned to about this many pixels per item with a fixed
            stride before sorting (a quantile function needs far fewer samples than a frame has).

    Returns:
        (B, C, H, W) mapped values. Items with an empty reference are returned unchanged.
    """
    b, c, h, w = x.shape
    n_px = h * w
    dtype = x.dtype
    flat = x.reshape(b * c, n_px)
    xv = x_valid.expand(b, c, h, w).reshape(b * c, n_px)
    n = xv.sum(dim=1, keepdim=True)
    values, order = torch.sort(torch.where(xv, flat, torch.full_like(flat, math.inf)), dim=1)
    pos = torch.arange(n_px, device=x.device).expand(b * c, n_px)
    new_group = torch.ones_like(values, dtype=torch.bool)
    new_group[:, 1:] = values[:, 1:] != values[:, :-1]
    start = torch.cummax(torch.where(new_group, pos, torch.zeros_like(pos)), dim=1).values
    last = torch.ones_like(new_group)
    last[:, :-1] = new_group[:, 1:]
    end = torch.flip(
        torch.cummin(torch.flip(torch.where(last, pos, torch.full_like(pos, n_px)), dims=[1]), dim=1).values, dims=[1]
    )
    quantile_sorted = (start + end + 1).to(dtype) / (2.0 * n.clamp_min(1).to(dtype))

    rb, _, rh, rw = ref.shape
    rflat = ref.reshape(rb * c, rh * rw)
    rv = ref_valid.expand(rb, c, rh, rw).reshape(rb * c, rh * rw)
    if max_reference is not None and rh * rw > max_reference:
        step = int(math.ceil(rh * rw / max_reference))
        rflat, rv = rflat[:, ::step], rv[:, ::step]
    m = rv.sum(dim=1, keepdim=True)
    ref_sorted = torch.sort(torch.where(rv, rflat, torch.full_like(rflat, math.inf)), dim=1).values
    if rb != b:  # one reference for the whole batch: rows are (item, channel), so repeat per item
        ref_sorted, m = ref_sorted.repeat(b, 1), m.repeat(b, 1)
    p = (quantile_sorted * m.to(dtype) - 0.5).clamp_min(0.0)
    p = torch.minimum(p, (m - 1).clamp_min(0).to(dtype))
    i0 = p.floor().long()
    i1 = torch.minimum(i0 + 1, (m - 1).clamp_min(0))
    frac = p - i0.to(dtype)
    v0 = torch.gather(ref_sorted, 1, i0)
    v1 = torch.gather(ref_sorted, 1, i1)
    mapped_sorted = v0 + frac * (v1 - v0)
    mapped = torch.empty_like(flat).scatter_(1, order, mapped_sorted)
    mapped = torch.where(xv & (m > 0), mapped, flat)
    return mapped.reshape(b, c, h, w)


class FDA(Aligner):
    """Fourier domain adaptation (Yang and Soatto, CVPR 2020): swap the low-frequency amplitude.

    ``style`` is resized to the content's size (bilinear, antialiased); in the 2-D Fourier transform of each
    RGB channel of the whole content crop, the amplitude of the frequencies ``|k_y| <= b`` and ``|k_x| <= b``
    with ``b = floor(beta * min(H, W))`` (including the DC term, so the mean colour) is replaced by the
    style's, and the content's phase is kept everywhere. ``style_mask`` is ignored.

    Args:
        beta: Size of the low band as a fraction of the shorter side, in [0, 0.5].
        strength: Blend with the input, in [0, 1].

    :meth:`swap` gives the unclipped transform (``forward`` clips to [0, 1]).
    """

    def __init__(self, beta: float = 0.01, strength: float = 1.0) -> None:
        super().__init__(strength)
        if not 0.0 <= float(beta) <= 0.5:
            raise ValueError(f"fda beta must be in [0, 0.5], got {beta!r}")
        self.beta = float(beta)

    def band(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """(H, W//2+1) bool mask of the swapped low band in ``torch.fft.rfft2`` layout."""
        b = int(math.floor(self.beta * min(h, w)))
        ky = (torch.fft.fftfreq(h, device=device) * h).round().abs()
        kx = (torch.fft.rfftfreq(w, device=device) * w).round()
        return (ky[:, None] <= b) & (kx[None, :] <= b)

    def swap(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Unclipped FDA of (B, 3, H, W) content with (B, 3, h, w) style; returns (B, 3, H, W)."""
        h, w = content.shape[-2:]
        if style.shape[-2:] != (h, w):
            style = F.interpolate(style, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        fc = torch.fft.rfft2(content)
        fs = torch.fft.rfft2(style)
        band = self.band(h, w, content.device)
        amp = torch.where(band, fs.abs(), fc.abs())
        return torch.fft.irfft2(torch.polar(amp, fc.angle()), s=(h, w))

    def restyle(self, inputs: AlignInputs) -> torch.Tensor:
        return self.swap(inputs.content, inputs.require_style())

    def extra_repr(self) -> str:
        return f"beta={self.beta}, strength={self.strength}"
