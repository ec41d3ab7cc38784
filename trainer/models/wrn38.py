"""DeepLabv3+ with a WiderResNet-38 (A2) trunk, key-compatible with NVIDIA's ``cityscapes_best.pth``.

Architecture (output stride 8, pre-activation residual blocks):

========  ===============================================  ===========
module    content                                          resolution
========  ===============================================  ===========
mod1      conv3x3 3->64 (no BN)                            1
pool2     MaxPool 3/2/1                                    1/2
mod2      3 blocks (128, 128) -> skip feature m2           1/2
pool3     MaxPool 3/2/1                                    1/4
mod3      3 blocks (256, 256)                              1/4
mod4      6 blocks (512, 512), block1 stride 2             1/8
mod5      3 blocks (512, 1024), dilation 2                 1/8
mod6      1 bottleneck (512, 1024, 2048), dil 4, drop .3   1/8
mod7      1 bottleneck (1024, 2048, 4096), dil 4, drop .5  1/8
aspp      5 x 256 = 1280 (image pooling first)             1/8
bot_aspp  conv1x1 1280->256 (no BN/ReLU), upsampled        1/2
bot_fine  conv1x1 128->48 on m2 (no BN/ReLU)               1/2
final     conv3x3 304->256,BN,ReLU,conv3x3,BN,ReLU,        1/2
          conv1x1 256->C (no bias) = ``final.6``
========  ===============================================  ===========

The logits are resized to the input size (bilinear, ``align_corners=True``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from trainer.models.common import ASPP, BN_EPS, SegmentationModel, resize


def _bn_relu(ch: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(ch, eps=BN_EPS), nn.ReLU(inplace=True))


class IdentityResidualBlock(nn.Module):
    """Pre-activation residual block: ``b = ReLU(BN(x)); out = convs(b) + (proj_conv(b) or x)``.

    Two-conv form (``channels=(c0, c1)``): ``conv1`` 3x3 (stride, dilation) -> ``bn2`` -> ``conv2``
    3x3 (dilation). Bottleneck form (``channels=(c0, c1, c2)``): ``conv1`` 1x1 -> ``bn2`` ->
    ``conv2`` 3x3 (stride, dilation) -> ``bn3`` -> ``conv3`` 1x1. Optional Dropout2d before the last
    conv. ``proj_conv`` (1x1, stride) exists when the stride or the channel count changes.

    Args:
        in_ch: Input channels.
        channels: Output channels of each conv (2 or 3 values).
        stride: Stride of the block.
        dilation: Dilation (and padding) of the 3x3 convs.
        dropout: Dropout2d probability, or None.
    """

    def __init__(
        self,
        in_ch: int,
        channels: Sequence[int],
        stride: int = 1,
        dilation: int = 1,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        if len(channels) not in (2, 3):
            raise ValueError(f"channels must have 2 or 3 values, got {tuple(channels)}")
        self.bn1 = _bn_relu(in_ch)
        layers: list[tuple[str, nn.Module]]
        if len(channels) == 2:
            layers = [
                ("conv1", nn.Conv2d(in_ch, channels[0], 3, stride, dilation, dilation, bias=False)),
                ("bn2", _bn_relu(channels[0])),
                ("conv2", nn.Conv2d(channels[0], channels[1], 3, 1, dilation, dilation, bias=False)),
            ]
        else:
            layers = [
                ("conv1", nn.Conv2d(in_ch, channels[0], 1, bias=False)),
                ("bn2", _bn_relu(channels[0])),
                ("conv2", nn.Conv2d(channels[0], channels[1], 3, stride, dilation, dilation, bias=False)),
                ("bn3", _bn_relu(channels[1])),
                ("conv3", nn.Conv2d(channels[1], channels[2], 1, bias=False)),
            ]
        if dropout is not None:
            layers.insert(len(layers) - 1, ("dropout", nn.Dropout2d(dropout)))
        self.convs = nn.Sequential(OrderedDict(layers))
        if stride != 1 or in_ch != channels[-1]:
            self.proj_conv = nn.Conv2d(in_ch, channels[-1], 1, stride, bias=False)
        else:
            self.proj_conv = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: [B, in_ch, H, W].

        Returns:
            [B, channels[-1], H/stride, W/stride].
        """
        b = self.bn1(x)
        shortcut = x if self.proj_conv is None else self.proj_conv(b)
        return self.convs(b) + shortcut


#: (blocks, channels, stride of block1, dilation, dropout) of mod2..mod7 (wider_resnet38_a2, dilated).
_STAGES: tuple[tuple[int, tuple[int, ...], int, int, float | None], ...] = (
    (3, (128, 128), 1, 1, None),
    (3, (256, 256), 1, 1, None),
    (6, (512, 512), 2, 1, None),
    (3, (512, 1024), 1, 2, None),
    (1, (512, 1024, 2048), 1, 4, 0.3),
    (1, (1024, 2048, 4096), 1, 4, 0.5),
)


class DeepWV3Plus(SegmentationModel):
    """DeepLabv3+ WRN38 (NVIDIA semantic-segmentation ``DeepWV3Plus``), output stride 8.

    ``state_dict()`` keys equal ``wrn38_state_dict_manifest.json`` (268 keys, 137,103,936
    parameters for 19 classes). Heads: ``classifier`` = ``final.6`` (1x1, no bias), ``final`` =
    the whole ``final`` block. The decoder (and so :meth:`forward_features`) runs at 1/2 of the
    input resolution.

    Args:
        num_classes: Output classes (19 for Cityscapes; PEBAL's checkpoint uses 20).
    """

    arch = "wrn38"
    head_names = {"classifier": ("final.6",), "final": ("final",)}

    def __init__(self, num_classes: int = 19) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.mod1 = nn.Sequential(OrderedDict([("conv1", nn.Conv2d(3, 64, 3, 1, 1, bias=False))]))
        self.pool2 = nn.MaxPool2d(3, stride=2, padding=1)
        self.pool3 = nn.MaxPool2d(3, stride=2, padding=1)
        in_ch = 64
        for idx, (blocks, channels, stride, dilation, dropout) in enumerate(_STAGES):
            mod = []
            for b in range(blocks):
                block = IdentityResidualBlock(
                    in_ch, channels, stride=stride if b == 0 else 1, dilation=dilation, dropout=dropout
                )
                mod.append((f"block{b + 1}", block))
                in_ch = channels[-1]
            setattr(self, f"mod{idx + 2}", nn.Sequential(OrderedDict(mod)))
        self.aspp = ASPP(in_ch, 256, rates=(12, 24, 36))
        self.bot_fine = nn.Conv2d(128, 48, 1, bias=False)
        self.bot_aspp = nn.Conv2d(self.aspp.out_channels, 256, 1, bias=False)
        self.final = nn.Sequential(
            nn.Conv2d(256 + 48, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256, eps=BN_EPS),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256, eps=BN_EPS),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, self.num_classes, 1, bias=False),
        )

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Body up to the input of ``final``.

        Args:
            x: Normalised images [B, 3, H, W].

        Returns:
            ``cat([bot_fine(m2), up(bot_aspp(aspp))])`` [B, 304, ceil(H/2), ceil(W/2)].
        """
        m2 = self.mod2(self.pool2(self.mod1(x)))
        y = self.mod3(self.pool3(m2))
        y = self.mod7(self.mod6(self.mod5(self.mod4(y))))
        y = resize(self.bot_aspp(self.aspp(y)), m2.shape[-2:])
        return torch.cat([self.bot_fine(m2), y], dim=1)

    def penultimate(self, dec: torch.Tensor) -> torch.Tensor:
        """``final.0`` .. ``final.5``.

        Args:
            dec: [B, 304, h, w] from :meth:`decode`.

        Returns:
            [B, 256, h, w], the input of ``final.6``.
        """
        for layer in list(self.final)[:-1]:
            dec = layer(dec)
        return dec
