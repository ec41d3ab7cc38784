"""Style aligners (torch/kornia, batched, device-agnostic), style statistics, seam blending and visibility.

Public API::

    from style_transfer import get_aligner, style_stats, image_style_stats, StyleStats, blend, visibility

    aligner = get_aligner("reinhard+sensor")           # the augment pipeline's default chain
    out = aligner(content, content_mask, style, style_mask=None, source_stats=None)

The Beam ``ModelHandler`` lives in :mod:`style_transfer.beam`, the only module that imports apache_beam.
"""

from __future__ import annotations

from style_transfer.aligners import DEFAULT_ALIGNER, Aligner, AlignInputs, Compose, NoAlign, chain
from style_transfer.blend import BLEND_MODES, Blender, blend
from style_transfer.colour import FDA, Histogram, Reinhard
from style_transfer.registry import ALIGNER_NAMES, AlignerSpec, get_aligner
from style_transfer.sensor import Sensor
from style_transfer.stats import NUM_STATS, STAT_NAMES, StyleStats, image_style_stats, style_stats
from style_transfer.visibility import DEFAULT_MIN_VISIBILITY, visibility

__all__ = [
    "ALIGNER_NAMES",
    "BLEND_MODES",
    "DEFAULT_ALIGNER",
    "DEFAULT_MIN_VISIBILITY",
    "FDA",
    "NUM_STATS",
    "STAT_NAMES",
    "AlignInputs",
    "AlignerSpec",
    "Aligner",
    "Blender",
    "Compose",
    "Histogram",
    "NoAlign",
    "Reinhard",
    "Sensor",
    "StyleStats",
    "blend",
    "chain",
    "get_aligner",
    "image_style_stats",
    "style_stats",
    "visibility",
]
