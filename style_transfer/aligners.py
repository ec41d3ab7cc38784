"""Style aligners: restyle a pasted object to the camera and scene look of its destination frame.

Every aligner is an :class:`torch.nn.Module` with one call signature (see :meth:`Aligner.forward`)::

    restyled = aligner(content, content_mask, style, style_mask=None, source_stats=None)

``content`` is the object's crop (the object and some of its source image around it), ``style`` the
destination frame (whole, possibly downscaled, or any region of it selected by ``style_mask``) and
``source_stats`` the :mod:`style_transfer.stats` vector of the object's whole source image as the object
bank stores it. *Style* is the camera and scene look (colour response, light, sharpness, noise,
compression), not the object's own colours: the default transforms are estimated between the source image
and the destination frame and then applied to the object, so it keeps its own contrast against the scene.

Output contract shared by all aligners: same shape as ``content``; only pixels inside ``content_mask``
change (``out = content + strength * mask * (restyled - content)``, soft masks blend), so pixels outside
the mask are returned unchanged and ``strength = 0`` or the ``none`` aligner give the identity. Values stay
in [0, 1]. Work is done in float32 and returned in the content's dtype. Everything is batched and runs on
the inputs' device; ``style`` and ``source_stats`` with a batch of 1 broadcast over the content batch.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from style_transfer._ops import (
    as_weight,
    batch_like,
    check_image,
    composite,
    hash_normal,
    lab_to_rgb,
    masked_mean_std,
    rgb_to_lab,
)
from style_transfer.stats import (
    IDX_BLOCKINESS,
    IDX_NOISE,
    IDX_SHARPNESS,
    NUM_STATS,
    edge_scale,
    style_stats,
)

#: Default chain for the augment pipeline: colour response (image-mode Reinhard), then sensor look.
DEFAULT_ALIGNER = "reinhard+sensor"

#: Blockiness of :func:`style_transfer.stats.style_stats` against PIL JPEG quality, measured on
#: Cityscapes frames (1024x512) encoded at each quality (mean of four frames).
JPEG_BLOCKINESS_TABLE: tuple[tuple[float, int], ...] = (
    (1.08, 95), (1.15, 90), (1.28, 80), (1.38, 70), (1.55, 50), (1.84, 30), (3.0, 10),
)


def _check_strength(strength: float) -> float:
    value = float(strength)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength!r}")
    return value


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def _stats_batch(x: torch.Tensor | None, b: int, name: str, device: torch.device) -> torch.Tensor | None:
    if x is None:
        return None
    t = torch.as_tensor(x, dtype=torch.float32, device=device)
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[1] != NUM_STATS:
        raise ValueError(f"{name} must have shape (B, {NUM_STATS}) or ({NUM_STATS},), got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains non-finite values")
    return batch_like(t, b, name)


@dataclass
class AlignInputs:
    """Validated float32 inputs of one aligner call, with lazily computed statistics.

    Attributes:
        content: (B, 3, H, W) float32 in [0, 1].
        weight: (B, 1, H, W) float32 object mask weights.
        style: (B, 3, h, w) float32 or None (only with ``style_stats`` and an aligner that needs no pixels).
        style_weight: (B, 1, h, w) float32 or None.
        source_stats: (B, 9) or None.
        style_stats: (B, 9) precomputed destination statistics or None.
        content_scale: (B,) factor by which the object was resized from its source image.
        noise_seeds: One seed per item.
        style_broadcast: Whether one style image (batch 1) serves the whole batch; statistics of it are then
            computed once.
    """

    content: torch.Tensor
    weight: torch.Tensor
    style: torch.Tensor | None
    style_weight: torch.Tensor | None
    source_stats: torch.Tensor | None
    style_stats: torch.Tensor | None
    content_scale: torch.Tensor
    noise_seeds: list[int]
    style_broadcast: bool = False
    _cache: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def batch(self) -> int:
        return self.content.shape[0]

    def src_full(self) -> torch.Tensor:
        """(B, 9) statistics of the source image: ``source_stats``, else the whole content crop's."""
        if self.source_stats is not None:
            return self.source_stats
        if "src" not in self._cache:
            self._cache["src"] = style_stats(self.content)
        return self._cache["src"]

    def src_moments(self) -> torch.Tensor:
        """(B, 6) Lab mean and std of the source image (``source_stats`` or the whole content crop)."""
        if self.source_stats is not None:
            return self.source_stats[:, :6]
        if "src" in self._cache:
            return self._cache["src"][:, :6]
        mean, std = masked_mean_std(rgb_to_lab(self.content), torch.ones_like(self.weight))
        return torch.cat([mean, std], dim=1)

    def dst_full(self) -> torch.Tensor:
        """(B, 9) destination statistics: ``style_stats``, else computed from ``style`` (in ``style_mask``)."""
        if self.style_stats is not None:
            return self.style_stats
        if "dst" not in self._cache:
            style, weight = self.style_unique()
            self._cache["dst"] = style_stats(style, weight).expand(self.batch, -1)
        return self._cache["dst"]

    def dst_moments(self) -> torch.Tensor:
        """(B, 6) Lab mean and std of the destination (``style_stats`` or ``style`` in ``style_mask``)."""
        if self.style_stats is not None:
            return self.style_stats[:, :6]
        if "dst" in self._cache:
            return self._cache["dst"][:, :6]
        return _moments(*self.style_unique()).expand(self.batch, -1)

    def style_unique(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(style, style_weight)`` with batch 1 when one style serves the batch, else batch B."""
        style = self.require_style()
        weight = self.style_weight
        if self.style_broadcast:
            style = style[:1]
            weight = None if weight is None else weight[:1]
        return style, weight

    def require_style(self) -> torch.Tensor:
        if self.style is None:
            raise ValueError("this aligner needs the style pixels, but style is None")
        return self.style


class Aligner(nn.Module):
    """Base class of every aligner: input checks, the mask composite and ``strength``.

    Subclasses implement :meth:`restyle`, which returns the restyled crop (any values outside the mask).

    Args:
        strength: Blend of the result with the input, in [0, 1] (0 = identity).
    """

    def __init__(self, strength: float = 1.0) -> None:
        super().__init__()
        self.strength = _check_strength(strength)

    @property
    def needs_style_pixels(self) -> bool:
        """Whether :meth:`forward` needs ``style`` even when ``style_stats`` is given."""
        return True

    @property
    def needs_style(self) -> bool:
        """Whether :meth:`forward` needs ``style`` or ``style_stats`` at all."""
        return True

    def forward(
        self,
        content: torch.Tensor,
        content_mask: torch.Tensor | None,
        style: torch.Tensor | None,
        style_mask: torch.Tensor | None = None,
        source_stats: torch.Tensor | None = None,
        *,
        style_stats: torch.Tensor | None = None,
        content_scale: torch.Tensor | float | Sequence[float] | None = None,
        noise_seeds: Sequence[int] | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Restyle the masked object in ``content`` to the look of ``style``.

        Args:
            content: (B, 3, H, W) float RGB in [0, 1]: the object's crop.
            content_mask: (B, 1, H, W) object mask (bool/int: non-zero inside; float: soft weights), or None
                for the whole crop.
            style: (B, 3, h, w) float RGB in [0, 1]: the destination frame (or a thumbnail of it). May be
                None when ``style_stats`` is given and :attr:`needs_style_pixels` is False.
            style_mask: (B, 1, h, w) region of ``style`` to take statistics from (default: all of it).
            source_stats: (B, 9) style statistics of each object's whole source image
                (:meth:`style_transfer.stats.StyleStats.to_tensor` order). None: image-mode aligners use
                the whole content crop's statistics instead.
            style_stats: (B, 9) destination statistics computed beforehand, e.g. on the full-resolution frame
                when ``style`` is a thumbnail (sharpness and noise depend on resolution). Overrides the
                statistics of ``style``/``style_mask`` wherever an aligner needs only statistics.
            content_scale: (B,) or scalar: size of the object in ``content`` over its size in the source
                image (paste scale). Used by ``sensor`` to bring the source's blur and noise to the crop's
                resolution. Default 1.
            noise_seeds: One integer seed per item for aligners that draw noise (``sensor``); the noise of an
                item depends only on its seed and size, never on the batch or device. Default: the
                aligner's own ``seed`` for every item.

        Returns:
            (B, 3, H, W) restyled content, same dtype and device as ``content``.

        Raises:
            TypeError: If an image is not a float tensor.
            ValueError: If shapes disagree, ``source_stats``/``style_stats`` are not (B, 9), or ``style`` is
                missing where it is needed.
        """
        inputs = self.prepare(
            content, content_mask, style, style_mask, source_stats,
            style_stats=style_stats, content_scale=content_scale, noise_seeds=noise_seeds,
        )
        restyled = self.restyle(inputs).clamp(0.0, 1.0)
        return composite(inputs.content, restyled, inputs.weight, self.strength).to(content.dtype)

    def prepare(
        self,
        content: torch.Tensor,
        content_mask: torch.Tensor | None,
        style: torch.Tensor | None,
        style_mask: torch.Tensor | None,
        source_stats: torch.Tensor | None,
        *,
        style_stats: torch.Tensor | None,
        content_scale: torch.Tensor | float | Sequence[float] | None,
        noise_seeds: Sequence[int] | torch.Tensor | None,
    ) -> AlignInputs:
        """Check and convert the arguments of :meth:`forward` (see there)."""
        check_image(content, "content")
        b = content.shape[0]
        device = content.device
        c32 = content.float()
        weight = as_weight(content_mask, c32, "content_mask")
        dst = _stats_batch(style_stats, b, "style_stats", device)
        if style is None:
            if self.needs_style_pixels or (dst is None and self.needs_style):
                raise ValueError(
                    f"{type(self).__name__} needs style pixels: pass style as a (B, 3, h, w) float tensor"
                    + ("" if self.needs_style_pixels else " or give style_stats")
                )
            s32 = None
            style_weight = None
            broadcast = False
        else:
            check_image(style, "style")
            s32 = batch_like(style.float().to(device), b, "style")
            style_weight = None if style_mask is None else as_weight(style_mask, s32, "style_mask")
            broadcast = style.shape[0] == 1 and (style_mask is None or style_mask.shape[0] == 1)
        if content_scale is None:
            scale = torch.ones(b, device=device)
        else:
            scale = torch.as_tensor(content_scale, dtype=torch.float32, device=device).flatten()
            if scale.numel() == 1:
                scale = scale.expand(b)
            if scale.numel() != b or not bool((scale > 0).all()):
                raise ValueError(f"content_scale must be one positive number or {b} of them, got {content_scale!r}")
        if noise_seeds is None:
            seeds = [int(getattr(self, "seed", 0))] * b
        else:
            seeds = [int(s) for s in (noise_seeds.tolist() if isinstance(noise_seeds, torch.Tensor) else noise_seeds)]
            if len(seeds) != b:
                raise ValueError(f"noise_seeds must have one seed per item ({b}), got {len(seeds)}")
        return AlignInputs(
            content=c32,
            weight=weight,
            style=s32,
            style_weight=style_weight,
            source_stats=_stats_batch(source_stats, b, "source_stats", device),
            style_stats=dst,
            content_scale=scale,
            noise_seeds=seeds,
            style_broadcast=broadcast,
        )

    def restyle(self, inputs: AlignInputs) -> torch.Tensor:
        """Return the restyled (B, 3, H, W) crop; the base class composites it with the mask."""
        raise NotImplementedError


class NoAlign(Aligner):
    """The identity (``none``): returns the content unchanged; ``style`` may be None."""

    @property
    def needs_style_pixels(self) -> bool:
        return False

    @property
    def needs_style(self) -> bool:
        return False

    def restyle(self, inputs: AlignInputs) -> torch.Tensor:
        return inputs.content


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

    @property
    def needs_style_pixels(self) -> bool:
        return self.mode == "object"

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


def _moments(image: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    w = weight if weight is not None else torch.ones_like(image[:, :1])
    mean, std = masked_mean_std(rgb_to_lab(image), w)
    return torch.cat([mean, std], dim=1)


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

    @property
    def needs_style_pixels(self) -> bool:
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


class Compose(Aligner):
    """Apply aligners one after another (each sees the previous one's output as content).

    All steps get the same ``content_mask``, ``style``, ``style_mask``, ``source_stats`` and keyword
    arguments. ``strength`` blends the chain's final output with the original input.

    Args:
        steps: The aligners, in order.
        strength: Blend of the whole chain with the input, in [0, 1].
    """

    def __init__(self, steps: Sequence[Aligner], strength: float = 1.0) -> None:
        super().__init__(strength)
        if not steps:
            raise ValueError("Compose needs at least one aligner")
        for step in steps:
            if not isinstance(step, Aligner):
                raise TypeError(f"Compose steps must be Aligner modules, got {type(step).__name__}")
        self.steps = nn.ModuleList(steps)

    @property
    def needs_style_pixels(self) -> bool:
        return any(step.needs_style_pixels for step in self.steps)

    @property
    def needs_style(self) -> bool:
        return any(step.needs_style for step in self.steps)

    def forward(self, content, content_mask, style, style_mask=None, source_stats=None, **kwargs):  # type: ignore[override]
        """Run every step in order; same arguments and result as :meth:`Aligner.forward`."""
        check_image(content, "content")
        x = content
        for step in self.steps:
            x = step(x, content_mask, style, style_mask, source_stats, **kwargs)
        return (content + self.strength * (x - content)).to(content.dtype)


def chain(*steps: Aligner, strength: float = 1.0) -> Compose:
    """``Compose(list(steps), strength)``: e.g. ``chain(Reinhard("image"), Sensor())``."""
    return Compose(list(steps), strength=strength)
