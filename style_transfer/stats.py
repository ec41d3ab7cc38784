"""Style statistics of an image: colour response, sharpness, noise and compression.

These nine numbers describe the *camera and scene look* of a whole image, not the content of any object in
it. The object-bank pipeline stores them once per source (COCO) image; the augment pipeline computes them for
each destination frame; the aligners map one onto the other.

Definitions (all on CIE Lab from :func:`kornia.color.rgb_to_lab`, L in 0..100, a and b in about -128..127;
only pixels inside the optional mask count; a neighbour pair or filter window counts when all its pixels are
inside):

``lab_mean``, ``lab_std``
    Per-channel mean and standard deviation of (L, a, b), weighted by the mask (soft masks are weights).

``noise``
    Robust noise sigma of L in L units, after Immerkaer (1996, "Fast noise variance estimation"): the
    image is filtered with ``N = [[1,-2,1],[-2,4,-2],[1,-2,1]]`` (which cancels locally linear structure and
    has norm 6 on white noise), and ``sigma = median(|L * N|) / (6 * 0.6745)``. The median instead of
    Immerkaer's mean makes the estimate insensitive to edges and texture as long as most pixels are smooth.

``sharpness``
    Inverse blur length ``1 / s`` in 1/pixel, where ``s`` is the sigma in pixels of the Gaussian blur that
    the image looks to carry. It is measured on ``Lp``, L smoothed by the binomial kernel
    ``[1, 4, 6, 4, 1] / 16`` in each direction (variance exactly 1 pixel^2, which takes white noise out of
    the Laplacian): ``R = (E[(lap Lp)^2] - c_lap sigma^2) / (E[|grad Lp|^2] - c_grad sigma^2)`` with the
    5-point Laplacian, forward differences, ``sigma = noise`` and ``c_lap``, ``c_grad`` the exact white-noise
    gains of the two filter chains. ``R`` is a ratio of spectral moments, so contrast does not matter, and
    it falls as ``K^2 / (s^2 + 1)`` with the smoothing's variance 1 included; ``K = 0.83`` was fitted on
    Cityscapes frames blurred with sigma 0 to 3 (between the isolated-edge value ``1/sqrt(2)`` and the
    1/f-spectrum value 1). So ``s = sqrt(max(K^2 / R - 1, 0.25^2))`` and ``sharpness = 1 / s`` (at most 4).
    A Gaussian blur of sigma ``b`` turns ``s`` into about ``sqrt(s^2 + b^2)`` (within 2 % on Cityscapes
    frames for b = 1 to 4). Full-resolution Cityscapes frames give about 0.95 (s = 1.05 px), COCO images
    1.7 to 3.5. 0 when the image has no structure above the noise (then aligners leave sharpness alone).

``blockiness``
    JPEG 8x8 blocking: mean ``|L[x+1] - L[x]|`` across block boundaries (x = 7, 15, ... in each direction)
    divided by the same mean over all other neighbour pairs, each plus 0.05 L units. About 1 for an
    uncompressed image, growing as the JPEG quality drops. The grid is the image's own (top-left) grid.

Sizes below 3x3 leave ``noise`` at 0 and ``blockiness`` at 1, below 7x7 ``sharpness`` at 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from style_transfer._ops import as_weight, check_image, erode, masked_mean_std, rgb_to_lab

#: Number of values in a style-statistics vector (see :meth:`StyleStats.to_tensor`).
NUM_STATS = 9
#: Names of the vector's entries in order.
STAT_NAMES: tuple[str, ...] = (
    "lab_mean_L", "lab_mean_a", "lab_mean_b", "lab_std_L", "lab_std_a", "lab_std_b",
    "sharpness", "noise", "blockiness",
)
#: Indices into the vector.
IDX_MEAN = slice(0, 3)
IDX_STD = slice(3, 6)
IDX_SHARPNESS = 6
IDX_NOISE = 7
IDX_BLOCKINESS = 8

#: ``R * (s^2 + 1) / K^2 = 1``: the calibration constant of the sharpness measure (module docstring).
SHARPNESS_K = 0.83
#: Smallest blur length reported (largest sharpness is its inverse).
MIN_BLUR = 0.25
_BINOMIAL = (1.0 / 16, 4.0 / 16, 6.0 / 16, 4.0 / 16, 1.0 / 16)
_MAD_TO_SIGMA = 0.6744897501960817  # median of |N(0, 1)|
_BLOCK_EPS = 0.05
_MIN_GRAD_ENERGY = 1e-4


@dataclass(frozen=True)
class StyleStats:
    """Style statistics of one image (see the module docstring for the definitions).

    Values are rounded to float32 (the bank's storage type) on construction.

    Attributes:
        lab_mean: Mean (L, a, b).
        lab_std: Standard deviation of (L, a, b).
        sharpness: Inverse blur length in 1/pixel (0 if the image has no structure).
        noise: Noise sigma of L in L units.
        blockiness: JPEG block-boundary discontinuity ratio (about 1 when uncompressed).
    """

    lab_mean: tuple[float, float, float]
    lab_std: tuple[float, float, float]
    sharpness: float
    noise: float
    blockiness: float

    def __post_init__(self) -> None:
        # Held at float32 precision, as the object bank stores them, so every round trip is exact.
        for name in ("lab_mean", "lab_std"):
            value = getattr(self, name)
            if len(value) != 3:
                raise ValueError(f"StyleStats.{name} must have 3 entries (L, a, b), got {value!r}")
            object.__setattr__(self, name, tuple(float(np.float32(v)) for v in value))
        for name in ("sharpness", "noise", "blockiness"):
            object.__setattr__(self, name, float(np.float32(getattr(self, name))))
        values = self.to_tensor()
        if not bool(torch.isfinite(values).all()):
            raise ValueError(f"StyleStats values must be finite, got {values.tolist()}")

    def to_tensor(self) -> torch.Tensor:
        """Return the float32 vector [9]: lab_mean (3), lab_std (3), sharpness, noise, blockiness."""
        return torch.tensor(
            [*self.lab_mean, *self.lab_std, self.sharpness, self.noise, self.blockiness], dtype=torch.float32
        )

    @classmethod
    def from_tensor(cls, values: torch.Tensor | np.ndarray | list[float]) -> StyleStats:
        """Build from a vector [9] in :meth:`to_tensor` order.

        Raises:
            ValueError: If the vector does not have exactly 9 entries.
        """
        v = torch.as_tensor(values, dtype=torch.float64).flatten()
        if v.numel() != NUM_STATS:
            raise ValueError(f"a style-statistics vector has {NUM_STATS} entries, got {v.numel()}")
        x = v.tolist()
        return cls(tuple(x[0:3]), tuple(x[3:6]), x[6], x[7], x[8])  # type: ignore[arg-type]

    def to_record(self) -> dict[str, object]:
        """Return the object-bank fields: src_lab_mean, src_lab_std, src_sharpness, src_noise, src_blockiness."""
        return {
            "src_lab_mean": list(self.lab_mean),
            "src_lab_std": list(self.lab_std),
            "src_sharpness": self.sharpness,
            "src_noise": self.noise,
            "src_blockiness": self.blockiness,
        }

    @classmethod
    def from_record(cls, record: dict[str, object]) -> StyleStats:
        """Inverse of :meth:`to_record` (extra keys are ignored).

        Raises:
            KeyError: If a src_* field is missing.
        """
        return cls(
            tuple(record["src_lab_mean"]),  # type: ignore[arg-type]
            tuple(record["src_lab_std"]),  # type: ignore[arg-type]
            record["src_sharpness"],  # type: ignore[arg-type]
            record["src_noise"],  # type: ignore[arg-type]
            record["src_blockiness"],  # type: ignore[arg-type]
        )


def edge_scale(sharpness: torch.Tensor) -> torch.Tensor:
    """Blur length ``s = 1 / sharpness`` in pixels (0 where sharpness is 0, i.e. unknown)."""
    safe = sharpness.clamp_min(1e-6)
    return torch.where(sharpness > 0, 1.0 / safe, torch.zeros_like(sharpness))


def _smooth_valid(x: torch.Tensor) -> torch.Tensor:
    """Separable binomial [1, 4, 6, 4, 1] / 16 smoothing without padding: (..., H, W) -> (..., H-4, W-4)."""
    h, w = x.shape[-2:]
    rows = sum(c * x[..., :, i : w - 4 + i] for i, c in enumerate(_BINOMIAL))
    return sum(c * rows[..., i : h - 4 + i, :] for i, c in enumerate(_BINOMIAL))


def _noise_gains() -> tuple[float, float]:
    """White-noise energy gains of (smooth, then gradient) and (smooth, then 5-point Laplacian)."""
    impulse = torch.zeros(1, 1, 21, 21, dtype=torch.float64)
    impulse[..., 10, 10] = 1.0
    kernel = torch.nn.functional.pad(impulse, (2, 2, 2, 2))
    g = _smooth_valid(kernel)
    dx = g[..., :, 1:] - g[..., :, :-1]
    lap = g[..., 1:-1, 2:] + g[..., 1:-1, :-2] + g[..., 2:, 1:-1] + g[..., :-2, 1:-1] - 4 * g[..., 1:-1, 1:-1]
    return float(2 * (dx**2).sum()), float((lap**2).sum())


_C_GRAD, _C_LAP = _noise_gains()


def masked_median(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Lower median of each row's valid entries, without a Python loop over rows.

    Invalid entries are replaced by -inf / +inf in the numbers that put the valid lower median at the
    full row's lower-median position, so one ``torch.median`` call answers every row.

    Args:
        values: (B, N) values.
        valid: (B, N) bool.

    Returns:
        (B,) medians; 0 for rows with no valid entry.
    """
    b, n = values.shape
    if n == 0:
        return values.new_zeros(b)
    count = valid.sum(dim=1)
    low = (n - 1) // 2 - (count - 1).clamp_min(0) // 2  # invalid entries to put below
    invalid_rank = torch.cumsum((~valid).to(torch.int64), dim=1) - 1
    fill = torch.where(invalid_rank < low[:, None], -math.inf, math.inf).to(values.dtype)
    med = torch.median(torch.where(valid, values, fill), dim=1).values
    return torch.where(count > 0, med, torch.zeros_like(med))


def _masked_mean(x: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
    """Mean over (C, H, W) of ``x`` where ``m`` is 1 (everywhere when ``m`` is None); (B,), 0 if empty."""
    if m is None:
        return x.mean(dim=(1, 2, 3)) if x.numel() else x.new_zeros(x.shape[0])
    return (x * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp_min(1.0)


def style_stats(images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
    """Style statistics of a batch of images (definitions in the module docstring).

    Args:
        images: (B, 3, H, W) float RGB in [0, 1], any device.
        masks: (B, 1, H, W) region to describe (bool/int: non-zero inside; float: weights, > 0.5 inside for
            the structure measures), or None for the whole image. Items with an empty mask use the whole
            image.

    Returns:
        (B, 9) float32 in :meth:`StyleStats.to_tensor` order, on the images' device.
    """
    check_image(images, "images")
    weight = as_weight(masks, images.float(), "masks")
    empty = weight.sum(dim=(1, 2, 3)) <= 0
    weight = torch.where(empty[:, None, None, None], torch.ones_like(weight), weight)
    lab = rgb_to_lab(images)
    mean, std = masked_mean_std(lab, weight)

    lum = lab[:, :1]
    b = images.shape[0]
    if lum.shape[2] < 3 or lum.shape[3] < 3:
        zeros = lum.new_zeros(b, 1)
        return torch.cat([mean, std, zeros, zeros, torch.ones_like(zeros)], dim=1).float()
    whole = masks is None or bool((weight > 0.5).all())
    inside = None if whole else (weight > 0.5).to(lum.dtype)

    # Noise: robust sigma of Immerkaer's residual (second differences in x, then in y) over inside 3x3 windows.
    d2x = lum[..., :, 2:] - 2.0 * lum[..., :, 1:-1] + lum[..., :, :-2]  # (B, 1, H, W-2)
    residual = d2x[..., 2:, :] - 2.0 * d2x[..., 1:-1, :] + d2x[..., :-2, :]  # (B, 1, H-2, W-2)
    if inside is None:
        med = torch.median(residual.abs().flatten(1), dim=1).values
    else:
        core = erode(inside, 1)[:, :, 1:-1, 1:-1]
        med = masked_median(residual.abs().flatten(1), core.flatten(1) > 0)
    noise = med / (6.0 * _MAD_TO_SIGMA)
    var = noise * noise

    # Sharpness: Laplacian over gradient energy of the smoothed L, white-noise parts removed.
    if lum.shape[2] >= 7 and lum.shape[3] >= 7:
        lp = _smooth_valid(lum)
        in_p = None if inside is None else erode(inside, 2)[:, :, 2:-2, 2:-2]
        gx = lp[..., :, 1:] - lp[..., :, :-1]
        gy = lp[..., 1:, :] - lp[..., :-1, :]
        lap = lp[..., 1:-1, 2:] + lp[..., 1:-1, :-2] + lp[..., 2:, 1:-1] + lp[..., :-2, 1:-1] - 4.0 * lp[..., 1:-1, 1:-1]
        if in_p is None:
            grad_e = _masked_mean(gx * gx, None) + _masked_mean(gy * gy, None)
            lap_e = _masked_mean(lap * lap, None)
        else:
            grad_e = _masked_mean(gx * gx, in_p[..., :, 1:] * in_p[..., :, :-1]) + _masked_mean(
                gy * gy, in_p[..., 1:, :] * in_p[..., :-1, :]
            )
            lap_e = _masked_mean(lap * lap, erode(in_p, 1)[:, :, 1:-1, 1:-1])
        grad_signal = grad_e - _C_GRAD * var
        ratio = (lap_e - _C_LAP * var).clamp_min(0.0) / grad_signal.clamp_min(_MIN_GRAD_ENERGY)
        blur_sq = SHARPNESS_K**2 / ratio.clamp_min(1e-12) - 1.0
        sharpness = 1.0 / blur_sq.clamp_min(MIN_BLUR**2).sqrt()
        sharpness = torch.where((grad_signal > _MIN_GRAD_ENERGY) & (ratio > 0), sharpness, torch.zeros_like(sharpness))
    else:
        sharpness = lum.new_zeros(b)

    # Blockiness: neighbour differences across the 8x8 grid against all other neighbour differences.
    adx = (lum[..., :, 1:] - lum[..., :, :-1]).abs()  # (B, 1, H, W-1): pair (x, x+1)
    ady = (lum[..., 1:, :] - lum[..., :-1, :]).abs()  # (B, 1, H-1, W)
    if inside is None:
        # Column (row) sums first: the grid test then costs nothing per pixel.
        col = adx.sum(dim=(1, 2))  # (B, W-1)
        row = ady.sum(dim=(1, 3))  # (B, H-1)
        ccount = torch.full_like(col, float(adx.shape[2]))
        rcount = torch.full_like(row, float(ady.shape[3]))
    else:
        mx = inside[..., :, 1:] * inside[..., :, :-1]
        my = inside[..., 1:, :] * inside[..., :-1, :]
        col = (adx * mx).sum(dim=(1, 2))
        row = (ady * my).sum(dim=(1, 3))
        ccount = mx.sum(dim=(1, 2))
        rcount = my.sum(dim=(1, 3))
    on_x = (torch.arange(col.shape[-1], device=lum.device) + 1) % 8 == 0
    on_y = (torch.arange(row.shape[-1], device=lum.device) + 1) % 8 == 0
    on_sum = col[:, on_x].sum(dim=1) + row[:, on_y].sum(dim=1)
    on_cnt = ccount[:, on_x].sum(dim=1) + rcount[:, on_y].sum(dim=1)
    off_sum = col[:, ~on_x].sum(dim=1) + row[:, ~on_y].sum(dim=1)
    off_cnt = ccount[:, ~on_x].sum(dim=1) + rcount[:, ~on_y].sum(dim=1)
    on_mean = on_sum / on_cnt.clamp_min(1.0)
    off_mean = off_sum / off_cnt.clamp_min(1.0)
    blockiness = (on_mean + _BLOCK_EPS) / (off_mean + _BLOCK_EPS)
    blockiness = torch.where((on_cnt > 0) & (off_cnt > 0), blockiness, torch.ones_like(blockiness))

    return torch.cat(
        [mean, std, sharpness[:, None], noise[:, None], blockiness[:, None]], dim=1
    ).float()


def image_style_stats(rgb_uint8: np.ndarray, mask: np.ndarray | None = None) -> StyleStats:
    """Style statistics of one decoded image (the object-bank entry point), computed with torch on the CPU.

    Gives the same numbers as :func:`style_stats` on ``rgb_uint8 / 255``.

    Args:
        rgb_uint8: (H, W, 3) uint8 RGB image.
        mask: Optional (H, W) region (bool or integer, non-zero inside).

    Returns:
        The image's :class:`StyleStats`.

    Raises:
        ValueError: If the image is not (H, W, 3) uint8 or the mask is not (H, W).
    """
    arr = np.asarray(rgb_uint8)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"rgb_uint8 must be a uint8 array of shape (H, W, 3), got {arr.dtype} {arr.shape}")
    image = torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1)[None].float().div_(255.0)
    mask_t = None
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != arr.shape[:2]:
            raise ValueError(f"mask must have shape {arr.shape[:2]} to match the image, got {m.shape}")
        mask_t = torch.from_numpy(np.ascontiguousarray(m != 0))[None, None]
    with torch.no_grad():
        return StyleStats.from_tensor(style_stats(image, mask_t)[0])
