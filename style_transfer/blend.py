"""Seam blending: composite a (restyled) foreground onto a background along a mask.

Usable after any aligner: the augment pipeline places the aligner's output on a frame-sized (or crop-sized)
canvas and blends it into the destination frame. The object's silhouette is always kept: pixels where the
mask is 0 are exactly the background, so labels painted from the mask stay correct.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from style_transfer._ops import as_weight, check_image

#: Accepted blending modes.
BLEND_MODES: tuple[str, ...] = ("none", "feather", "laplacian")


def blend(
    background: torch.Tensor,
    foreground: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "feather",
    feather_sigma: float = 1.5,
    levels: int = 4,
) -> torch.Tensor:
    """Composite ``foreground`` onto ``background`` inside ``mask``.

    Modes:

    * ``"none"``: ``bg + m * (fg - bg)`` (a soft mask gives a linear blend).
    * ``"feather"``: inner feathering, ``alpha = m * blur(m, feather_sigma)``: the alpha falls from 1 inside
      to about 0.5 at the silhouette over a band of about ``2 * feather_sigma`` pixels, and is 0 outside.
    * ``"laplacian"``: multi-band blending (Burt and Adelson 1983; binomial 5-tap REDUCE/EXPAND): the
      foreground is first filled with the background outside the mask, both images are split into
      ``levels`` Laplacian bands, band ``k`` is mixed with the ``k``-th Gaussian level of the mask, and the
      result is collapsed; then restricted to the mask (``bg + m * (result - bg)``). Low frequencies
      (overall light and colour) near the seam move towards the background over about ``2 ** levels``
      pixels while fine detail keeps a sharp seam. Images are replicate-padded to a multiple of
      ``2 ** (levels - 1)`` and cropped back.

    Args:
        background: (B, 3, H, W) float in [0, 1].
        foreground: (B, 3, H, W) float in [0, 1], aligned with the background.
        mask: (B, 1, H, W) object mask (bool/int non-zero inside, or float weights).
        mode: One of :data:`BLEND_MODES`.
        feather_sigma: Gaussian sigma in pixels for ``"feather"`` (> 0).
        levels: Number of pyramid levels for ``"laplacian"`` (>= 1; 1 equals ``"none"``).

    Returns:
        (B, 3, H, W) composite in the background's dtype.

    Raises:
        ValueError: For an unknown mode, bad parameters or mismatched shapes.
    """
    check_image(background, "background")
    check_image(foreground, "foreground")
    if foreground.shape != background.shape:
        raise ValueError(
            f"foreground {tuple(foreground.shape)} must have the background's shape {tuple(background.shape)}"
        )
    if mode not in BLEND_MODES:
        raise ValueError(f"blend mode must be one of {list(BLEND_MODES)}, got {mode!r}")
    bg = background.float()
    fg = foreground.float().to(bg.device)
    m = as_weight(mask, bg, "mask")
    if mode == "none":
        out = bg + m * (fg - bg)
    elif mode == "feather":
        if not float(feather_sigma) > 0:
            raise ValueError(f"feather_sigma must be > 0, got {feather_sigma!r}")
        radius = max(1, int(math.ceil(3.0 * float(feather_sigma))))
        k = 2 * radius + 1
        soft = kornia.filters.gaussian_blur2d(m, (k, k), (float(feather_sigma),) * 2, border_type="replicate")
        alpha = m * soft
        out = bg + alpha * (fg - bg)
    else:
        if not (isinstance(levels, int) and levels >= 1):
            raise ValueError(f"levels must be an integer >= 1, got {levels!r}")
        filled = bg + m * (fg - bg)
        out = _laplacian_blend(bg, filled, m, levels)
        out = bg + m * (out - bg)
    return out.clamp(0.0, 1.0).to(background.dtype)


def _binomial_blur(x: torch.Tensor) -> torch.Tensor:
    """Separable [1, 4, 6, 4, 1] / 16 blur of (B, C, H, W) with replicated borders (shifted sums)."""
    h, w = x.shape[-2:]
    p = F.pad(x, (2, 2, 2, 2), mode="replicate")
    r = (p[..., :, 0:w] + p[..., :, 4 : w + 4]) * 0.0625 + (p[..., :, 1 : w + 1] + p[..., :, 3 : w + 3]) * 0.25
    r = r + p[..., :, 2 : w + 2] * 0.375
    out = (r[..., 0:h, :] + r[..., 4 : h + 4, :]) * 0.0625 + (r[..., 1 : h + 1, :] + r[..., 3 : h + 3, :]) * 0.25
    return out + r[..., 2 : h + 2, :] * 0.375


def _down(x: torch.Tensor) -> torch.Tensor:
    """Burt-Adelson REDUCE: blur, keep every second row and column (even sizes in, halved sizes out)."""
    return _binomial_blur(x)[..., ::2, ::2]


def _up(x: torch.Tensor) -> torch.Tensor:
    """Burt-Adelson EXPAND: insert zeros between samples, blur, scale by 4 (doubles both sizes)."""
    b, c, h, w = x.shape
    z = x.new_zeros(b, c, 2 * h, 2 * w)
    z[..., ::2, ::2] = x
    return 4.0 * _binomial_blur(z)


def _laplacian_blend(bg: torch.Tensor, fg: torch.Tensor, m: torch.Tensor, levels: int) -> torch.Tensor:
    h, w = bg.shape[-2:]
    # Stop early if the image gets too small to halve.
    levels = max(1, min(levels, int(math.floor(math.log2(max(1, min(h, w))))) - 1))
    stride = 1 << (levels - 1)
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        pad = (0, pw, 0, ph)
        bg, fg, m = (F.pad(t, pad, mode="replicate") for t in (bg, fg, m))
    gauss = [torch.cat([bg, fg], dim=1)]
    masks = [m]
    for _ in range(levels - 1):
        gauss.append(_down(gauss[-1]))
        masks.append(_down(masks[-1]))
    out = None
    for k in range(levels - 1, -1, -1):
        band = gauss[k] if k == levels - 1 else gauss[k] - _up(gauss[k + 1])
        b_bg, b_fg = band[:, :3], band[:, 3:]
        mixed = b_bg + masks[k] * (b_fg - b_bg)
        out = mixed if out is None else mixed + _up(out)
    return out[..., :h, :w]


class Blender(nn.Module):
    """:func:`blend` with fixed settings as a module (for batching next to an aligner on the GPU).

    Args:
        mode: One of :data:`BLEND_MODES`.
        feather_sigma: See :func:`blend`.
        levels: See :func:`blend`.
    """

    def __init__(self, mode: str = "feather", feather_sigma: float = 1.5, levels: int = 4) -> None:
        super().__init__()
        if mode not in BLEND_MODES:
            raise ValueError(f"blend mode must be one of {list(BLEND_MODES)}, got {mode!r}")
        self.mode = mode
        self.feather_sigma = float(feather_sigma)
        self.levels = int(levels)

    def forward(self, background: torch.Tensor, foreground: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) background, foreground and (B, 1, H, W) mask -> (B, 3, H, W) composite."""
        return blend(background, foreground, mask, self.mode, self.feather_sigma, self.levels)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, feather_sigma={self.feather_sigma}, levels={self.levels}"
