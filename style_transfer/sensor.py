"""The sensor aligner: the destination camera's sharpness, noise and compression, estimated from the source image
and the destination frame, applied to the object (:class:`Sensor`)."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import kornia
import numpy as np
import torch
from PIL import Image

from style_transfer._ops import (
    hash_normal,
    lab_to_rgb,
    rgb_to_lab,
)
from style_transfer.stats import (
    IDX_BLOCKINESS,
    IDX_NOISE,
    IDX_SHARPNESS,
    edge_scale,
)
from style_transfer.aligners import AlignInputs, Aligner, _check_choice

#: Blockiness of :func:`style_transfer.stats.style_stats` against PIL JPEG quality, measured on
#: Cityscapes frames (1024x512) encoded at each quality (mean of four frames).
JPEG_BLOCKINESS_TABLE: tuple[tuple[float, int], ...] = (
    (1.08, 95), (1.15, 90), (1.28, 80), (1.38, 70), (1.55, 50), (1.84, 30), (3.0, 10),
)

class Sensor(Aligner):
    """Match only the destination's sharpness, noise and compression; the object's colours are kept.

    With ``s(x) = 1 / sharpness(x)`` the blur length of :mod:`style_transfer.stats` (the sigma of the
    Gaussian blur the image looks to carry) and ``f = content_scale`` (object size in the crop over its size in the source image):

    * **Blur.** The source's blur length at the crop's resolution is ``f * s(src)``. The object is blurred
      with a Gaussian of ``sigma = sqrt(max(0, s(dst)^2 - (f s(src))^2))``, capped at ``max_sigma``. It is
      never sharpened. The blur is normalised by the blurred mask, so no source background bleeds in.
    * **Noise.** The source's noise at the crop's resolution is ``noise(src) * min(f, 1)`` (downscaling
      averages it away; upscaling does not add any), further reduced by ``1 / (2 sqrt(pi) sigma)`` when the
      blur above was applied. Gaussian noise of ``sqrt(max(0, noise(dst)^2 - that^2))`` L units is added to
      the L channel (so a and b, the colours, are untouched and the mean is kept in expectation). The noise
      is :func:`style_transfer._ops.hash_normal` of the item's ``noise_seeds`` entry (default: ``seed``):
      a pure function of (seed, row, column), so it is the same for any batch composition, padding, device
      or worker.
    * **Compression.** ``compression="auto"`` estimates the destination's JPEG quality from its blockiness
      (:data:`JPEG_BLOCKINESS_TABLE`) and, when it is 95 or lower and lower than the source's, round-trips
      the crop through PIL's JPEG encoder at that quality; an integer in [1, 100] forces that quality,
      ``"off"`` (default) skips it. The round trip runs on the CPU item by item (about 1 ms for 256x256).

    ``source_stats`` (or the crop's own statistics when None) and the destination's statistics (``style`` or
    ``style_stats``; give ``style_stats`` from the full-resolution frame when ``style`` is a thumbnail) are
    needed; style pixels are not, when ``style_stats`` is given.

    Args:
        strength: Blend with the input, in [0, 1].
        blur: Whether to match sharpness.
        noise: Whether to match the noise level.
        compression: "off", "auto" or a JPEG quality in [1, 100].
        max_sigma: Cap on the blur sigma in pixels.
        seed: Default noise seed for items without ``noise_seeds``.
    """

    def __init__(
        self,
        strength: float = 1.0,
        blur: bool = True,
        noise: bool = True,
        compression: str | int = "off",
        max_sigma: float = 3.0,
        seed: int = 0,
    ) -> None:
        super().__init__(strength)
        if isinstance(compression, str):
            _check_choice("compression", compression, ("off", "auto"))
        elif not (isinstance(compression, (int, np.integer)) and 1 <= int(compression) <= 100):
            raise ValueError(f"compression must be 'off', 'auto' or a JPEG quality in [1, 100], got {compression!r}")
        if not float(max_sigma) >= 0.0:
            raise ValueError(f"max_sigma must be >= 0, got {max_sigma!r}")
        self.blur = bool(blur)
        self.noise = bool(noise)
        self.compression = compression if isinstance(compression, str) else int(compression)
        self.max_sigma = float(max_sigma)
        self.seed = int(seed)

    @classmethod
    def pixels_needed(cls, params: Mapping[str, Any]) -> bool:
        return False

    def plan(self, inputs: AlignInputs) -> tuple[torch.Tensor, torch.Tensor, list[int | None]]:
        """Per-item blur sigma (B,), noise sigma in L units (B,) and JPEG quality (None = no round trip)."""
        src, dst = inputs.src_full(), inputs.dst_full()
        f = inputs.content_scale
        sigma = torch.zeros_like(f)
        if self.blur:
            s_src = edge_scale(src[:, IDX_SHARPNESS]) * f
            s_dst = edge_scale(dst[:, IDX_SHARPNESS])
            ok = (src[:, IDX_SHARPNESS] > 0) & (dst[:, IDX_SHARPNESS] > 0)
            sigma = torch.where(ok, (s_dst**2 - s_src**2).clamp_min(0.0).sqrt(), sigma).clamp(max=self.max_sigma)
        noise = torch.zeros_like(f)
        if self.noise:
            attenuation = torch.where(sigma > 0, 1.0 / (2.0 * math.sqrt(math.pi) * sigma.clamp_min(1e-6)), 1.0)
            src_noise = src[:, IDX_NOISE] * f.clamp(max=1.0) * attenuation.clamp(max=1.0)
            noise = (dst[:, IDX_NOISE] ** 2 - src_noise**2).clamp_min(0.0).sqrt()
        qualities: list[int | None] = [None] * inputs.batch
        if self.compression == "auto":
            q_dst = [jpeg_quality_from_blockiness(v) for v in dst[:, IDX_BLOCKINESS].tolist()]
            q_src = [jpeg_quality_from_blockiness(v) for v in src[:, IDX_BLOCKINESS].tolist()]
            qualities = [qd if qd <= 95 and qd < qs else None for qd, qs in zip(q_dst, q_src)]
        elif isinstance(self.compression, int):
            qualities = [self.compression] * inputs.batch
        return sigma, noise, qualities

    def restyle(self, inputs: AlignInputs) -> torch.Tensor:
        sigma, noise, qualities = self.plan(inputs)
        x = inputs.content
        if bool((sigma > 0.05).any()):
            x = masked_gaussian_blur(x, inputs.weight, sigma)
        if bool((noise > 0).any()):
            lab = rgb_to_lab(x)
            field_ = hash_normal(inputs.noise_seeds, x.shape[-2], x.shape[-1], x.device)
            lab = torch.cat([lab[:, :1] + noise[:, None, None, None] * field_[:, None], lab[:, 1:]], dim=1)
            x = lab_to_rgb(lab)
        if any(q is not None for q in qualities):
            x = jpeg_roundtrip(x, qualities)
        return x

    def extra_repr(self) -> str:
        return (
            f"strength={self.strength}, blur={self.blur}, noise={self.noise}, "
            f"compression={self.compression!r}, max_sigma={self.max_sigma}, seed={self.seed}"
        )


def jpeg_quality_from_blockiness(blockiness: float) -> int:
    """JPEG quality whose typical blockiness is ``blockiness`` (100 below the table's first entry)."""
    xs = [b for b, _ in JPEG_BLOCKINESS_TABLE]
    ys = [q for _, q in JPEG_BLOCKINESS_TABLE]
    if blockiness < xs[0]:
        return 100
    return int(round(float(np.interp(blockiness, xs, ys))))


def masked_gaussian_blur(x: torch.Tensor, weight: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur with a per-item sigma, normalised inside the mask (no bleeding from outside).

    Args:
        x: (B, C, H, W) image.
        weight: (B, 1, H, W) mask weights.
        sigma: (B,) sigma in pixels (0 leaves the item unchanged).

    Returns:
        (B, C, H, W): ``blur(x * w) / blur(w)`` where the blurred mask is non-zero, ``x`` elsewhere.
    """
    radius = max(1, int(math.ceil(3.0 * float(sigma.max()))))
    k = 2 * radius + 1
    s = sigma.clamp_min(1e-2).to(x.dtype)
    s2 = torch.stack([s, s], dim=1)
    stacked = torch.cat([x * weight, weight], dim=1)
    # zero padding: outside the crop counts as outside the mask, so padding a crop changes nothing
    blurred = kornia.filters.gaussian_blur2d(stacked, (k, k), s2, border_type="constant")
    num, den = blurred[:, :-1], blurred[:, -1:]
    return torch.where(den > 1e-4, num / den.clamp_min(1e-4), x)


def jpeg_roundtrip(x: torch.Tensor, qualities: Sequence[int | None]) -> torch.Tensor:
    """Encode and decode each item through PIL's JPEG at its quality (None = unchanged), on the CPU.

    Args:
        x: (B, 3, H, W) float RGB in [0, 1].
        qualities: One JPEG quality in [1, 100] or None per item.

    Returns:
        (B, 3, H, W) on ``x``'s device; round-tripped items are quantised to 1/255.
    """
    out = []
    cpu = x.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    for i, q in enumerate(qualities):
        if q is None:
            out.append(x[i])
            continue
        buf = io.BytesIO()
        Image.fromarray(cpu[i]).save(buf, format="JPEG", quality=int(q))
        buf.seek(0)
        dec = np.asarray(Image.open(buf).convert("RGB"), dtype=np.uint8)
        out.append(torch.from_numpy(dec.copy()).permute(2, 0, 1).to(x.device, x.dtype) / 255.0)
    return torch.stack(out)
