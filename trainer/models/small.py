"""A light DeepLabv3+ for CPU work: trains from scratch at 256x512 in minutes.

Same layout and naming conventions as the public models, with a ResNet-18-like trunk of
basic blocks and reduced widths (defaults give 2,289,195 parameters for 19 classes, a 9.2 MB float32
checkpoint):

========  ====================================================  ==========
module    content                                               resolution
========  ====================================================  ==========
layer0    conv3x3 3->24 s2,BN,ReLU, conv3x3 24->32,BN,ReLU,     1/4
          MaxPool 3/2/1 (indices 0..6)
layer1    2 basic blocks, 32 ch -> skip feature                 1/4
layer2    2 basic blocks, 64 ch, stride 2                       1/8
layer3    2 basic blocks, 128 ch, stride 1, dilation 2          1/8
layer4    2 basic blocks, 160 ch, stride 1, dilation 4          1/8
aspp      5 x 96 = 480 (image pooling first), rates 12/24/36    1/8
bot_aspp  conv1x1 480->96, BN, ReLU; upsampled                  1/4
bot_fine  conv1x1 32->32, BN, ReLU                              1/4
final     conv3x3 128->96,BN,ReLU,conv3x3 96->96,BN,ReLU,       1/4
          conv1x1 96->C **with bias** = ``final.6``
========  ====================================================  ==========

The default output stride is 8, as in the public WRN38 and R101 models, so that an object covers as many
cells of the trunk's features as it does for them (``SmallConfig(output_stride=16)`` gives layer3 stride 2 and
layer4 dilation 2 at 1/16, about 1.45x cheaper to train). The stride changes no parameter shape: a checkpoint
records its :class:`SmallConfig` and :func:`trainer.checkpoint.load_checkpoint` refuses one saved with another.

Heads follow the WRN38 convention: ``classifier`` = ``final.6``, ``final`` = ``final``. Unlike
WRN38, ``final.6`` has a bias (the model is trained from scratch, and a bias lets a head-only
finetune shift all logits of a class at once).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from trainer.models.common import ASPP, BN_EPS, SegmentationModel, conv_bn_relu, resize


@dataclass(frozen=True)
class SmallConfig:
    """Widths and strides of :class:`SmallDeepLab`.

    Attributes:
        stem: Channels of the two stem convs.
        widths: Channels of layer1..layer4.
        blocks: Basic blocks per layer.
        output_stride: 16 (layer4 dilated) or 8 (layer3 and layer4 dilated).
        aspp_channels: Channels per ASPP branch.
        aspp_rates: Dilations of the 3x3 ASPP branches at output stride 16 (doubled at 8).
        fine_channels: Channels of ``bot_fine`` (the skip projection).
        decoder_channels: Channels of ``bot_aspp`` and of the ``final`` convs.
    """

    stem: tuple[int, int] = (24, 32)
    widths: tuple[int, int, int, int] = (32, 64, 128, 160)
    blocks: tuple[int, int, int, int] = (2, 2, 2, 2)
    output_stride: int = 8
    aspp_channels: int = 96
    aspp_rates: tuple[int, int, int] = (6, 12, 18)
    fine_channels: int = 32
    decoder_channels: int = 96

    def __post_init__(self) -> None:
        if self.output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {self.output_stride}")
        if len(self.widths) != 4 or len(self.blocks) != 4 or min(self.blocks) < 1:
            raise ValueError(f"widths and blocks need 4 values (blocks >= 1), got {self.widths}, {self.blocks}")


class BasicBlock(nn.Module):
    """Post-activation ResNet basic block (two 3x3 convs).

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        stride: Stride of the first conv and of the projection.
        dilation: Dilation (and padding) of both convs.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, dilation, dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
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
            [B, out_ch, H/stride, W/stride].
        """
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class SmallDeepLab(SegmentationModel):
    """Light DeepLabv3+ (ResNet-18-like trunk) for CPU training from scratch.

    Heads: ``classifier`` = ``final.6`` (1x1 with bias), ``final`` = ``final``. The decoder
    runs at 1/4 of the input resolution. Weights use the usual He initialisation for convs
    and identity BN.

    Args:
        num_classes: Output classes.
        config: Widths and strides; defaults give about 2.3M parameters.
    """

    arch = "small"
    head_names = {"classifier": ("final.6",), "final": ("final",)}

    def __init__(self, num_classes: int = 19, config: SmallConfig | None = None) -> None:
        super().__init__()
        cfg = config or SmallConfig()
        self.config = cfg
        self.num_classes = int(num_classes)
        s0, s1 = cfg.stem
        self.layer0 = nn.Sequential(
            *conv_bn_relu(3, s0, 3, stride=2), *conv_bn_relu(s0, s1, 3), nn.MaxPool2d(3, stride=2, padding=1)
        )
        strides = (1, 2, 2, 1) if cfg.output_stride == 16 else (1, 2, 1, 1)
        dilations = (1, 1, 1, 2) if cfg.output_stride == 16 else (1, 1, 2, 4)
        in_ch = s1
        for i in range(4):
            blocks = []
            for b in range(cfg.blocks[i]):
                blocks.append(BasicBlock(in_ch, cfg.widths[i], strides[i] if b == 0 else 1, dilations[i]))
                in_ch = cfg.widths[i]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        scale = 16 // cfg.output_stride
        self.aspp = ASPP(in_ch, cfg.aspp_channels, rates=tuple(r * scale for r in cfg.aspp_rates))
        self.bot_fine = conv_bn_relu(cfg.widths[0], cfg.fine_channels, 1)
        self.bot_aspp = conv_bn_relu(self.aspp.out_channels, cfg.decoder_channels, 1)
        d = cfg.decoder_channels
        self.final = nn.Sequential(
            *conv_bn_relu(cfg.fine_channels + d, d, 3),
            *conv_bn_relu(d, d, 3),
            nn.Conv2d(d, self.num_classes, 1, bias=True),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Small residual branches at init make the from-scratch start well conditioned.
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
        nn.init.normal_(self.classifier.weight, std=0.01)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Body up to the input of ``final``.

        Args:
            x: Normalised images [B, 3, H, W].

        Returns:
            ``cat([bot_fine(layer1), up(bot_aspp(aspp))])`` [B, fine + decoder channels, h, w]
            at 1/4 resolution.
        """
        low = self.layer1(self.layer0(x))
        y = self.layer4(self.layer3(self.layer2(low)))
        y = resize(self.bot_aspp(self.aspp(y)), low.shape[-2:])
        return torch.cat([self.bot_fine(low), y], dim=1)

    def penultimate(self, dec: torch.Tensor) -> torch.Tensor:
        """``final.0`` .. ``final.5``.

        Args:
            dec: [B, C_dec, h, w] from :meth:`decode`.

        Returns:
            [B, decoder_channels, h, w], the input of ``final.6``.
        """
        for layer in list(self.final)[:-1]:
            dec = layer(dec)
        return dec
