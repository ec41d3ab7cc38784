"""Building blocks shared by the DeepLabv3+ models.

Everything here is written from the architecture description of the public Cityscapes
checkpoints (see ``../shared/checkpoints/README.md``); the module and parameter names are
chosen so that ``state_dict()`` keys match those checkpoints exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: Head names understood by :meth:`SegmentationModel.forward_features` and friends.
HEADS: tuple[str, ...] = ("classifier", "final")

#: Batch-norm epsilon of every public checkpoint.
BN_EPS: float = 1e-5


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize with ``align_corners=True``, the convention of the public checkpoints.

    Args:
        x: Feature map [B, C, h, w].
        size: Target (H, W).

    Returns:
        Resized map [B, C, H, W]. ``x`` itself when it already has that size.
    """
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def conv_bn_relu(
    in_ch: int, out_ch: int, kernel_size: int = 1, *, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    """``Sequential(0 Conv2d(no bias), 1 BatchNorm2d, 2 ReLU)`` with 'same' padding.

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        kernel_size: 1 or 3.
        stride: Convolution stride.
        dilation: Convolution dilation (padding = dilation * (kernel_size // 2)).

    Returns:
        The block; maps [B, in_ch, H, W] to [B, out_ch, H/stride, W/stride].
    """
    return nn.Sequential(
        nn.Conv2d(
            in_ch,
            out_ch,
            kernel_size,
            stride=stride,
            padding=dilation * (kernel_size // 2),
            dilation=dilation,
            bias=False,
        ),
        nn.BatchNorm2d(out_ch, eps=BN_EPS),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with an image-pooling branch.

    Parameter names: ``features.0`` (1x1), ``features.1..n`` (3x3 dilated), ``img_conv``
    (registered after ``features``, as in the public checkpoints). Every branch is
    conv (no bias) -> BN -> ReLU. The output concatenates **the image-pooling branch first**,
    then the 1x1 branch, then the dilated branches.

    Args:
        in_ch: Input channels.
        branch_ch: Channels per branch; the output has ``branch_ch * (2 + len(rates))``.
        rates: Dilations of the 3x3 branches (12, 24, 36 for the public OS8 models).
    """

    def __init__(self, in_ch: int, branch_ch: int = 256, rates: Sequence[int] = (12, 24, 36)) -> None:
        super().__init__()
        branches = [conv_bn_relu(in_ch, branch_ch, 1)]
        branches += [conv_bn_relu(in_ch, branch_ch, 3, dilation=int(r)) for r in rates]
        self.features = nn.ModuleList(branches)
        self.img_pooling = nn.AdaptiveAvgPool2d(1)
        self.img_conv = conv_bn_relu(in_ch, branch_ch, 1)
        self.out_channels = branch_ch * (2 + len(rates))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the pyramid.

        Args:
            x: Trunk features [B, in_ch, h, w].

        Returns:
            [B, out_channels, h, w].
        """
        pooled = resize(self.img_conv(self.img_pooling(x)), x.shape[-2:])
        return torch.cat([pooled] + [branch(x) for branch in self.features], dim=1)


class SegmentationModel(nn.Module):
    """Base class: a DeepLabv3+ whose last block (the *head*) can be run separately.

    A subclass provides

    * :meth:`decode`: input -> input of the ``final`` head (the decoder concatenation),
    * :meth:`penultimate`: input of ``final`` -> input of the classifier conv,
    * ``head_names``: ``{"classifier": (name,), "final": (names...)}`` (dotted module paths).

    ``forward(x) == classify(forward_features(x), x.shape[-2:])`` holds exactly, for either head,
    which lets a head-only finetuner cache the frozen body's output.

    Attributes:
        arch: Architecture name understood by :func:`trainer.models.build_model`.
        num_classes: Number of output channels of the classifier.
        head_names: Module paths of each head (see :data:`HEADS`).
    """

    arch: str
    num_classes: int
    head_names: dict[str, tuple[str, ...]]

    def decode(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Run the body up to the input of the ``final`` head.

        Args:
            x: Normalised images [B, 3, H, W].

        Returns:
            Decoder features [B, C_dec, h, w] at the decoder's resolution.
        """
        raise NotImplementedError

    def penultimate(self, dec: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Run the ``final`` head up to (excluding) the classifier conv.

        Args:
            dec: Output of :meth:`decode` [B, C_dec, h, w].

        Returns:
            Penultimate features [B, C_pen, h, w].
        """
        raise NotImplementedError

    @property
    def classifier(self) -> nn.Conv2d:
        """The final 1x1 classifier convolution (``head_names['classifier']``)."""
        return self.get_submodule(self.head_names["classifier"][0])

    def forward_features(self, x: torch.Tensor, head: str = "classifier") -> torch.Tensor:
        """Everything that is frozen when only ``head`` is trained.

        Args:
            x: Normalised images [B, 3, H, W].
            head: ``"classifier"`` (returns the input of the 1x1 classifier conv) or
                ``"final"`` (returns the input of the whole final block).

        Returns:
            Features [B, C, h, w] at the head's native resolution (1/2 of the input for
            wrn38, 1/4 for r101 and small).
        """
        dec = self.decode(x)
        if _check_head(head) == "final":
            return dec
        return self.penultimate(dec)

    def classify(self, feats: torch.Tensor, out_size: Sequence[int], head: str = "classifier") -> torch.Tensor:
        """Apply ``head`` to features from :meth:`forward_features` and resize the logits.

        Args:
            feats: [B, C, h, w] from ``forward_features(x, head)``.
            out_size: Output (H, W), normally the input image size.
            head: The same head name given to :meth:`forward_features`.

        Returns:
            Raw logits [B, num_classes, H, W] (bilinear, ``align_corners=True``).
        """
        if _check_head(head) == "final":
            feats = self.penultimate(feats)
        return resize(self.classifier(feats), out_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment images.

        Args:
            x: Normalised images [B, 3, H, W] (see :func:`trainer.models.normalize`).

        Returns:
            Raw logits [B, num_classes, H, W] at the input resolution.
        """
        return self.classify(self.forward_features(x), x.shape[-2:])


def _check_head(head: str) -> str:
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; allowed: {', '.join(HEADS)}")
    return head
