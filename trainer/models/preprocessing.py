"""Input normalisation shared by all models (ImageNet statistics, RGB order)."""

from __future__ import annotations

import torch

#: Per-channel RGB mean of the public checkpoints' preprocessing (ToTensor scale, [0, 1]).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: Per-channel RGB standard deviation.
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Turn RGB images into model input: ``(images / 255 - mean) / std``.

    Matches PIL ``.convert('RGB')`` -> ``ToTensor`` -> ``Normalize(mean, std)`` of the public
    checkpoints.

    Args:
        images: RGB, channels first, [3, H, W] or [B, 3, H, W]; ``uint8`` in [0, 255] or a
            floating dtype already scaled to [0, 1].

    Returns:
        float32 (or the input's floating dtype) tensor of the same shape, normalised.

    Raises:
        ValueError: Wrong channel count, rank or dtype.
    """
    if images.dim() not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"images must be [3, H, W] or [B, 3, H, W] RGB, got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        x = images.to(torch.float32) / 255.0
    elif images.is_floating_point():
        x = images
    else:
        raise ValueError(f"images must be uint8 in [0, 255] or float in [0, 1], got dtype {images.dtype}")
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize` for floating input.

    Args:
        x: Normalised images [..., 3, H, W].

    Returns:
        RGB in [0, 1] (not clamped), same shape and dtype.
    """
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return x * std + mean
