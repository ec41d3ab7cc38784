"""Anomaly extents in feature cells: how many cells of a model's features each anomaly object spans.

A segmentation head sees an object through its feature cells; a benchmark whose objects are smaller than one
cell measures something else than one whose objects span several. This script measures the objects
(8-connected components of label 1) of Fishyscapes-layout label masks (``labels_masks/*.png``: 0 in, 1 anomaly,
255 void) and prints their longest bounding-box side and the square root of their area, in pixels and in cells of
the given stride, at the masks' own resolution.

Usage::

    python benchmarks/anomaly_extents.py ../shared/samples/fishyscapes_lostandfound/FS_LostFound_full/labels_masks
    python benchmarks/anomaly_extents.py runs/world0/fishyscapes_lostandfound/FS_LostFound_full/labels_masks

The defaults of ``stylepaste world`` (``--anomaly-scale``) were set with it so that the synthetic anomalies span as
many cells of the default model's 1/8 features at 256x512 as the real Fishyscapes Lost&Found obstacles span of
WRN38's 1/8 features at 2048x1024.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from synthetic.world import component_extents, extent_summary  # noqa: E402
from schemas.codecs import decode_png  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Print the extents of every object under the given mask folders."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", help="folders of Fishyscapes-layout label masks (*.png)")
    p.add_argument("--stride", type=int, default=8, help="feature stride in pixels per cell")
    a = p.parse_args(argv)
    for folder in a.folders:
        masks = sorted(Path(folder).glob("*.png"))
        if not masks:
            print(f"{folder}: no *.png label masks", file=sys.stderr)
            return 2
        extents, shapes = [], set()
        for m in masks:
            lab = decode_png(m.read_bytes())
            shapes.add(lab.shape)
            extents += component_extents(lab == 1)
        s = extent_summary(extents, a.stride)
        lo, ar = s["longest_cells"], s["sqrt_area_cells"]
        px = sorted(e[0] for e in extents)
        print(f"{folder}: {len(masks)} masks {sorted(shapes)}, {s['objects']} objects; longest side {px} px")
        print(f"  longest side in cells of 1/{a.stride}: min {lo['min']:.2f}, median {lo['median']:.2f}, "
              f"max {lo['max']:.2f} (p10 {lo['p10']:.2f}, p90 {lo['p90']:.2f})")
        print(f"  sqrt(area) in cells of 1/{a.stride}: min {ar['min']:.2f}, median {ar['median']:.2f}, "
              f"max {ar['max']:.2f} (p10 {ar['p10']:.2f}, p90 {ar['p90']:.2f})")
        if px:
            print(f"  median longest side {np.median(px):.0f} px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
