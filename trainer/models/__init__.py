"""Segmentation models: DeepLabv3+ WRN38 and R101 (key-compatible with the field's public
Cityscapes checkpoints) and a light DeepLabv3+ for CPU work.

Public API:

* :func:`build_model` (``"wrn38"``, ``"r101"``, ``"small"``) -> :class:`SegmentationModel`,
  whose ``forward`` maps normalised images [B, 3, H, W] to raw logits [B, C, H, W].
* :func:`normalize` and the ImageNet constants :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD`.
* Heads: ``"classifier"`` (the final 1x1 conv: wrn38 ``final.6``, r101 ``final2.0``, small
  ``final.6``) and ``"final"`` (the whole last block: wrn38/small ``final``, r101 ``final1`` +
  ``final2``); :func:`head_modules`, and the model methods
  ``forward_features(x, head)`` / ``classify(feats, out_size, head)`` with
  ``forward(x) == classify(forward_features(x), x.shape[-2:])``.
"""

from __future__ import annotations

from torch import nn

from trainer.models.common import HEADS, SegmentationModel, resize
from trainer.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD, denormalize, normalize
from trainer.models.r101 import DeepR101V3PlusD_OS8
from trainer.models.small import SmallConfig, SmallDeepLab
from trainer.models.wrn38 import DeepWV3Plus

#: Architectures known to :func:`build_model`.
ARCHS: tuple[str, ...] = ("wrn38", "r101", "small")

__all__ = [
    "ARCHS",
    "HEADS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DeepR101V3PlusD_OS8",
    "DeepWV3Plus",
    "SegmentationModel",
    "SmallConfig",
    "SmallDeepLab",
    "build_model",
    "denormalize",
    "head_modules",
    "normalize",
    "resize",
]


def build_model(arch: str, num_classes: int = 19) -> SegmentationModel:
    """Build a segmentation model.

    Args:
        arch: ``"wrn38"`` (DeepWV3Plus, 137M params), ``"r101"`` (DeepR101V3PlusD_OS8, 64M params
            with its training-only ``dsn`` head) or ``"small"`` (2.3M params).
        num_classes: Output classes (19 for Cityscapes trainIds).

    Returns:
        The model in train mode with freshly initialised weights (load a checkpoint with
        :func:`trainer.checkpoint.load_checkpoint`).

    Raises:
        ValueError: Unknown ``arch`` or ``num_classes`` < 1.
    """
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if arch == "wrn38":
        return DeepWV3Plus(num_classes)
    if arch == "r101":
        return DeepR101V3PlusD_OS8(num_classes)
    if arch == "small":
        return SmallDeepLab(num_classes)
    raise ValueError(f"unknown arch {arch!r}; allowed: {', '.join(ARCHS)}")


def head_modules(model: SegmentationModel, head: str) -> dict[str, nn.Module]:
    """The submodules that make up ``head``.

    Args:
        model: A model from :func:`build_model`.
        head: ``"classifier"`` or ``"final"``.

    Returns:
        ``{dotted module path: module}``, e.g. ``{"final.6": Conv2d(256, 19, 1)}`` for wrn38.

    Raises:
        ValueError: Unknown head.
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; allowed: {', '.join(HEADS)}")
    return {name: model.get_submodule(name) for name in model.head_names[head]}

