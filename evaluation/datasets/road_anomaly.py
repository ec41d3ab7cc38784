"""Road Anomaly reader."""

from __future__ import annotations

import json
from typing import ClassVar

import fsspec
import numpy as np

from schemas.codecs import DEFAULT_MAX_PIXELS
from evaluation.datasets.base import AnomalyDataset, IMAGE_EXTENSIONS, MissingLabelError, SampleRef, _BUNDLE_DESC, _Detector, _Dir, _LUT_ROAD_ANOMALY, _bundle_refs, _has_dirs, _natural_key, _resolve, _split_ext, map_label_values

# --------------------------------------------------------------------------------------------------------------
# Road Anomaly
# --------------------------------------------------------------------------------------------------------------


class RoadAnomaly(AnomalyDataset):
    """Road Anomaly: official ``RoadAnomaly_jpg`` (frame_list.json + frames/) or the renumbered bundle.

    Labels are 0 = background, 2 = anomaly in both layouts and are mapped to 0 / 1; there is no void.

    Args:
        root: Dataset folder or its parent.
        max_pixels: Decompression-bomb limit per image.
    """

    name: ClassVar[str] = "road_anomaly"
    subfolders: ClassVar[tuple[str, ...]] = ("RoadAnomaly_jpg", "RoadAnomaly")

    def __init__(self, root: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        detectors: list[tuple[str, _Detector, str]] = [
            ("official", lambda d: "frames" in d.dirs(),
             "frame_list.json + frames/<name>.jpg + frames/<name>.labels/labels_semantic.png"),
            ("bundle", _has_dirs("images", "labels_masks"), _BUNDLE_DESC),
        ]
        folder, layout = _resolve(self.name, root, detectors, self.subfolders)
        refs = _bundle_refs(self.name, folder) if layout == "bundle" else self._official_refs(folder)
        super().__init__(folder.url, layout, refs, max_pixels=max_pixels)

    def _official_refs(self, folder: _Dir) -> list[SampleRef]:
        frames = folder.sub("frames")
        files = frames.files()
        if "frame_list.json" in folder.files():
            list_url = folder.file_url("frame_list.json")
            with fsspec.open(list_url, "rt", encoding="utf-8") as f:
                try:
                    names = json.load(f)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{self.name}: {list_url} is not valid JSON: {err}") from err
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError(f"{self.name}: {list_url} must be a JSON list of frame file names")
            for n in names:
                if n not in files:
                    raise FileNotFoundError(
                        f"{self.name}: {list_url} lists {n!r} but {frames.file_url(n)} does not exist"
                    )
        else:
            names = [n for n in files if _split_ext(n)[1] in IMAGE_EXTENSIONS]
        refs = []
        for n in names:
            stem = _split_ext(n)[0]
            label_dir = frames.sub(stem + ".labels")
            if "labels_semantic.png" not in label_dir.files():
                raise MissingLabelError(
                    f"{self.name}: missing label for image {frames.file_url(n)}: expected "
                    f"{label_dir.file_url('labels_semantic.png')}"
                )
            refs.append(SampleRef(stem, frames.file_url(n), label_dir.file_url("labels_semantic.png")))
        refs.sort(key=lambda r: _natural_key(r.sample_id))
        return refs

    def read_label(self, ref: SampleRef) -> np.ndarray:
        raw = self._read_raw_label(ref.label_url)
        return map_label_values(
            raw, _LUT_ROAD_ANOMALY, url=ref.label_url, encoding="road_anomaly (0 background, 2 anomaly)"
        )
