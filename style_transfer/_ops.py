"""Small tensor helpers shared by the aligners: input checks, Lab conversion and masked moments.

Everything here is batched, device-agnostic and free of Python loops over pixels.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F

#: Smallest mask weight sum treated as a non-empty region.
MIN_WEIGHT = 1e-6


def check_image(x: torch.Tensor, name: str, channels: int = 3) -> None:
    """Raise unless ``x`` is a float tensor of shape (B, channels, H, W).

    Args:
        x: The tensor to check.
        name: Its argument name, used in the error message.
        channels: The required channel count.

    Raises:
        TypeError: If ``x`` is not a floating-point tensor.
        ValueError: If the shape is not (B, channels, H, W) with B, H, W >= 1.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor with values in [0, 1], got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[1] != channels or min(x.shape) < 1:
        raise ValueError(f"{name} must have shape (B, {channels}, H, W), got {tuple(x.shape)}")


def as_weight(mask: torch.Tensor | None, like: torch.Tensor, name: str) -> torch.Tensor:
    """Convert a mask to float weights in [0, 1] of shape (B, 1, H, W) matching ``like``.

    Bool and integer masks are binary (non-zero = inside); float masks are clamped to [0, 1] and used as
    soft weights. ``None`` means "everything".

    Args:
        mask: (B, 1, H, W) or (B, H, W) mask, or None. A batch of 1 broadcasts.
        like: (B, C, H, W) image the mask belongs to.
        name: Argument name for error messages.

    Returns:
        (B, 1, H, W) float weights on ``like``'s device and dtype.

    Raises:
        ValueError: If the mask's batch or spatial size does not match ``like``.
    """
    b, _, h, w = like.shape
    if mask is None:
        return torch.ones(b, 1, h, w, device=like.device, dtype=like.dtype)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(mask).__name__}")
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)
    if mask.ndim != 4 or mask.shape[1] != 1 or tuple(mask.shape[2:]) != (h, w) or mask.shape[0] not in (1, b):
        raise ValueError(f"{name} must have shape ({b}, 1, {h}, {w}) to match its image, got {tuple(mask.shape)}")
    if mask.dtype == torch.bool or not mask.is_floating_point():
        weight = (mask != 0).to(like.dtype)
    else:
        weight = mask.to(like.dtype).clamp(0.0, 1.0)
    return weight.to(like.device).expand(b, 1, h, w)


def batch_like(x: torch.Tensor, b: int, name: str) -> torch.Tensor:
    """Broadcast a batch of 1 to ``b`` items, or check that the batch is already ``b``.

    Raises:
        ValueError: If the batch size is neither 1 nor ``b``.
    """
    if x.shape[0] == b:
        return x
    if x.shape[0] == 1:
        return x.expand(b, *x.shape[1:])
    raise ValueError(f"{name} has batch size {x.shape[0]}, expected 1 or {b} (the content batch)")


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> CIE Lab (L in 0..100, a and b in about -128..127), via kornia, in float32."""
    return kornia.color.rgb_to_lab(rgb.float().clamp(0.0, 1.0))


def lab_to_rgb(lab: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """CIE Lab -> sRGB in [0, 1] (clipped unless ``clip`` is False), via kornia."""
    return kornia.color.lab_to_rgb(lab, clip=clip)


def masked_mean_std(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted per-channel mean and standard deviation.

    Args:
        x: (B, C, H, W) values.
        weight: (B, 1, H, W) non-negative weights.
        eps: Floor on the variance before the square root.

    Returns:
        ``(mean, std)``, each (B, C). Items whose weights sum to zero get the unweighted moments.
    """
    total = weight.sum(dim=(2, 3))  # (B, 1)
    empty = total <= MIN_WEIGHT
    weight = torch.where(empty[:, :, None, None], torch.ones_like(weight), weight)
    total = weight.sum(dim=(2, 3))
    mean = (x * weight).sum(dim=(2, 3)) / total
    var = ((x - mean[:, :, None, None]) ** 2 * weight).sum(dim=(2, 3)) / total
    return mean, var.clamp_min(eps).sqrt()


def erode(weight: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """Min-filter a (B, 1, H, W) mask with a (2r+1) square window (outside the image counts as inside)."""
    return -dilate(-weight, radius)


def dilate(weight: torch.Tensor, radius: int) -> torch.Tensor:
    """Max-filter a (B, 1, H, W) mask with a (2r+1) square window (separable: rows, then columns)."""
    if radius <= 0:
        return weight
    k = 2 * radius + 1
    rows = F.max_pool2d(weight, kernel_size=(1, k), stride=1, padding=(0, radius))
    return F.max_pool2d(rows, kernel_size=(k, 1), stride=1, padding=(radius, 0))


def composite(content: torch.Tensor, restyled: torch.Tensor, weight: torch.Tensor, strength: float) -> torch.Tensor:
    """``content + strength * weight * (restyled - content)``: only masked pixels change."""
    return content + (strength * weight) * (restyled.to(content.dtype) - content)


_M32 = 0xFFFFFFFF


def _mulmod32(x: torch.Tensor, m: int) -> torch.Tensor:
    """``(x * m) mod 2**32`` for int64 ``x`` in [0, 2**32) without int64 overflow."""
    lo = x & 0xFFFF
    hi = x >> 16
    return (lo * m + (((hi * m) & 0xFFFF) << 16)) & _M32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixer (xor-shift-multiply, "lowbias32" constants) on int64 tensors in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = _mulmod32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mulmod32(x, 0x846CA68B)
    return x ^ (x >> 16)


def hash_normal(seeds: list[int], h: int, w: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normal noise that is a pure function of (seed, row, column).

    Each value hashes its item's seed and its pixel coordinates with integer arithmetic (exact on every
    device) into two uniforms and applies the Box-Muller transform, so the noise of an item does not depend
    on the batch it is in, on the size of the canvas it is padded to (the top-left h x w block is always the
    same), on the device, or on any generator state.

    Args:
        seeds: One non-negative integer (< 2**64) per item.
        h: Rows.
        w: Columns.
        device: Where to compute.

    Returns:
        (B, h, w) float32 noise.
    """
    for s in seeds:
        if not 0 <= int(s) < 1 << 64:
            raise ValueError(f"noise seeds must be integers in [0, 2**64), got {s!r}")
    lo = torch.tensor([int(s) & _M32 for s in seeds], dtype=torch.int64, device=device)
    hi = torch.tensor([(int(s) >> 32) & _M32 for s in seeds], dtype=torch.int64, device=device)
    key = _hash32(lo ^ _hash32(hi ^ 0x9E3779B9))[:, None, None]
    ys = torch.arange(h, dtype=torch.int64, device=device)[None, :, None]
    pairs = torch.arange((w + 1) // 2, dtype=torch.int64, device=device)[None, None, :]
    cell = _hash32(_hash32(key ^ ys) ^ pairs)  # one cell per two horizontally adjacent pixels
    u1 = (_hash32(cell ^ 0x68E31DA4).to(torch.float64) + 0.5) * (1.0 / 4294967296.0)
    u2 = cell.to(torch.float64) * (2.0 * math.pi / 4294967296.0)
    radius = torch.sqrt(-2.0 * torch.log(u1)).float()
    angle = u2.float()
    both = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1)  # Box-Muller pair
    return both.flatten(-2)[..., :w].contiguous()
