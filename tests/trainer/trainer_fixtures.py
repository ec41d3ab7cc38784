"""Builders of tiny augmented-frame shards for the trainer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from schemas.arrow import FRAME, table_from_rows
from schemas.codecs import encode_png
from schemas.labels import OOD
from schemas.manifest import Manifest, shard_info, write_manifest


def frame_row(frame_id: str, rng: np.random.Generator, size: tuple[int, int] = (16, 32),
              num_classes: int = 19) -> dict:
    """One augmented-frame row with random pixels, random class labels and a pasted (254) square."""
    h, w = size
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    label = rng.integers(0, num_classes, (h, w)).astype(np.uint8)
    label[rng.random((h, w)) < 0.05] = 255
    y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
    label[y0:y0 + h // 3, x0:x0 + w // 4] = OOD
    image[label == OOD] = (250, 20, 200)
    return {
        "frame_id": frame_id, "split": "train", "image": encode_png(image), "label": encode_png(label),
        "height": h, "width": w, "ood_pixels": int((label == OOD).sum()), "objects": [], "aligner": "none",
        "aligner_params": "{}", "seed": 0, "source_image": f"mem://{frame_id}.png",
        "source_label": f"mem://{frame_id}_label.png", "frame_terms": "synthetic test frame",
    }


def write_frame_shards(folder: Path, *, shards: int = 2, rows: int = 8, row_group_size: int = 2,
                       size: tuple[int, int] = (16, 32), seed: int = 0, prefix: str = "f") -> Path:
    """Write ``shards`` Parquet shards of ``rows`` frames each (row groups of ``row_group_size``) + manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    infos = []
    for s in range(shards):
        table = table_from_rows([frame_row(f"{prefix}city_{s:06d}_{r:06d}", rng, size) for r in range(rows)], FRAME)
        path = folder / f"part-{s:05d}.parquet"
        pq.write_table(table, path, row_group_size=row_group_size)
        infos.append(shard_info(str(path)))
    write_manifest(str(folder), Manifest(kind=FRAME.name, schema_version=FRAME.version, shards=tuple(infos),
                                         seed=seed))
    return folder
