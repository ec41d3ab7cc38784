"""DeepLabv3+ ResNet-101 (SML ``DeepR101V3PlusD_OS8``), key-compatible with ``r101_os8_base_cty.pth``.

Architecture (output stride 8, post-activation bottlenecks, stride on the 3x3 conv):

========  ======================================================  ==========
module    content                                                 resolution
========  ======================================================  ==========
layer0    conv3x3 3->64 s2,BN,ReLU,conv 64->64,BN,ReLU,           1/4
          conv 64->128,BN,ReLU, MaxPool 3/2/1 (indices 0..9)
layer1    3 bottlenecks, 256 out -> skip feature                  1/4
layer2    4 bottlenecks, 512 out, stride 2                        1/8
layer3    23 bottlenecks, 1024 out, stride 1, conv2 dilation 2    1/8
layer4    3 bottlenecks, 2048 out, stride 1, conv2 dilation 4     1/8
aspp      5 x 256 = 1280 (image pooling first)                    1/8
bot_aspp  conv1x1 1280->256, BN, ReLU; upsampled                  1/4
bot_fine  conv1x1 256->48, BN, ReLU                               1/4
final1    2 x (conv3x3, BN, ReLU), 304->256->256                  1/4
final2    conv1x1 256->C with bias = ``final2.0``                 1/4
dsn       aux head on layer3 (training loss only, unused here)    1/8
========  ======================================================  ==========

``forward`` returns the logits only (SML's eval forward also returns an anomaly score).
"""

from __future__ import annotations

import torch
from torch import nn

from trainer.models.common import ASPP, BN_EPS, SegmentationModel, conv_bn_relu, resize


class Bottleneck(nn.Module):
    """Post-activation ResNet bottleneck (1x1 -> 3x3 (stride, dilation) -> 1x1, expansion 4).

    Args:
        in_ch: Input channels.
        planes: Width of the 3x3 conv; the output has ``4 * planes`` channels.
        stride: Stride of the 3x3 conv and of the projection.
        dilation: Dilation (and padding) of the 3x3 conv.
    """

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch, eps=BN_EPS)
            )
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: [B, in_ch, H, W].

        Returns:
            [B, 4 * planes, H/stride, W/stride].
        """
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def _layer(in_ch: int, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
    layers = [Bottleneck(in_ch, planes, stride, dilation)]
    layers += [Bottleneck(planes * Bottleneck.expansion, planes, 1, dilation) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class DeepR101V3PlusD_OS8(SegmentationModel):  # noqa: N801 - the public model's name
    """DeepLabv3+ ResNet-101 with a deep 3x3 stem (SML / RobustNet variant 'D'), output stride 8.

    ``state_dict()`` keys equal ``r101_state_dict_manifest.json`` (701 keys, 64,197,446
    parameters for 19 classes), including the training-only auxiliary head ``dsn`` (on layer3),
    which :meth:`forward` does not use. Heads: ``classifier`` = ``final2.0`` (1x1 with bias),
    ``final`` = ``final1`` + ``final2``. The decoder runs at 1/4 of the input resolution.

    Args:
        num_classes: Output classes (19 for Cityscapes).
    """

    arch = "r101"
    head_names = {"classifier": ("final2.0",), "final": ("final1", "final2")}

    def __init__(self, num_classes: int = 19) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        stem = []
        for i, (cin, cout) in enumerate(((3, 64), (64, 64), (64, 128))):
            stem += list(conv_bn_relu(cin, cout, 3, stride=2 if i == 0 else 1))
        self.layer0 = nn.Sequential(*stem, nn.MaxPool2d(3, stride=2, padding=1))
        self.layer1 = _layer(128, 64, 3, stride=1, dilation=1)
        self.layer2 = _layer(256, 128, 4, stride=2, dilation=1)
        self.layer3 = _layer(512, 256, 23, stride=1, dilation=2)
        self.layer4 = _layer(1024, 512, 3, stride=1, dilation=4)
        self.aspp = ASPP(2048, 256, rates=(12, 24, 36))
        self.bot_fine = conv_bn_relu(256, 48, 1)
        self.bot_aspp = conv_bn_relu(self.aspp.out_channels, 256, 1)
        final1 = list(conv_bn_relu(256 + 48, 256, 3)) + list(conv_bn_relu(256, 256, 3))
        self.final1 = nn.Sequential(*final1)
        self.final2 = nn.Sequential(nn.Conv2d(256, self.num_classes, 1, bias=True))
        self.dsn = nn.Sequential(
            nn.Conv2d(1024, 512, 3, padding=1, bias=True),
            nn.BatchNorm2d(512, eps=BN_EPS),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.1),
            nn.Conv2d(512, self.num_classes, 1, bias=True),
        )

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Body up to the input of ``final1``.

        Args:
            x: Normalised images [B, 3, H, W].

        Returns:
            ``cat([bot_fine(layer1), up(bot_aspp(aspp))])`` [B, 304, h, w] at 1/4 resolution.
        """
        low = self.layer1(self.layer0(x))
        y = self.layer4(self.layer3(self.layer2(low)))
        y = resize(self.bot_aspp(self.aspp(y)), low.shape[-2:])
        return torch.cat([self.bot_fine(low), y], dim=1)

    def penultimate(self, dec: torch.Tensor) -> torch.Tensor:
        """``final1``.

        Args:
            dec: [B, 304, h, w] from :meth:`decode`.

        Returns:
            [B, 256, h, w], the input of ``final2.0``.
        """
        return self.final1(dec)

    def forward_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Main and auxiliary (``dsn``) logits, for training the whole network.

        Args:
            x: Normalised images [B, 3, H, W].

        Returns:
            ``(logits, aux_logits)``, both [B, num_classes, H, W].
        """
        low = self.layer1(self.layer0(x))
        mid = self.layer3(self.layer2(low))
        y = resize(self.bot_aspp(self.aspp(self.layer4(mid))), low.shape[-2:])
        dec = torch.cat([self.bot_fine(low), y], dim=1)
        logits = self.classify(self.penultimate(dec), x.shape[-2:])
        return logits, resize(self.dsn(mid), x.shape[-2:])
