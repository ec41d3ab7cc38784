"""LostAndFound reader (with the SegmentMeIfYouCan region of interest)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from schemas.codecs import DEFAULT_MAX_PIXELS, read_label
from evaluation.datasets.base import ANOMALY, AnomalyDataset, IN_DISTRIBUTION, LAF_ROI_FILENAME, LAF_SPLITS, MissingLabelError, SampleRef, SizeMismatchError, VOID, _Detector, _Dir, _LUT_LAF, _has_dirs, _natural_key, _resolve, map_label_values
from evaluation.datasets.fishyscapes import _LAF_IMAGE_RE

# --------------------------------------------------------------------------------------------------------------
# LostAndFound
# --------------------------------------------------------------------------------------------------------------

EVAL_REGIONS: tuple[str, ...] = ("free_space", "roi")
"""LostAndFound label variants: ``free_space`` (LAF labels, obstacles on the road) and ``roi`` (whole ROI)."""


class LostAndFound(AnomalyDataset):
    """LostAndFound in its official layout, with the SegmentMeIfYouCan ROI.

    Args:
        root: LostAndFound root (holding ``leftImg8bit/`` and ``gtCoarse/``) or its parent.
        split: ``"test"`` (default) or ``"train"``.
        roi: ``"auto"`` (``<root>/LAF_roi_2048.png``, which must exist), a URL of the ROI mask, or None for no ROI.
        eval_region: ``"free_space"`` (default): 0 -> 255, 1 -> 0, 2..200 -> 1, then 255 outside the ROI;
            ``"roi"``: 0 inside the ROI, 255 outside, 1 on obstacles (LAF ids 2..200).
        max_pixels: Decompression-bomb limit per image.
    """

    name: ClassVar[str] = "lostandfound"
    subfolders: ClassVar[tuple[str, ...]] = ("dataset_LostAndFound", "LostAndFound", "lostandfound")

    def __init__(self, root: str, *, split: str = "test", roi: str | None = "auto",
                 eval_region: str = "free_space", max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        if split not in LAF_SPLITS:
            raise ValueError(f"{self.name}: split must be one of {LAF_SPLITS}, got {split!r}")
        if eval_region not in EVAL_REGIONS:
            raise ValueError(f"{self.name}: eval_region must be one of {EVAL_REGIONS}, got {eval_region!r}")
        detectors: list[tuple[str, _Detector, str]] = [
            ("official", _has_dirs("leftImg8bit", "gtCoarse"),
             "leftImg8bit/<split>/<scene>/<fid>_leftImg8bit.png + "
             "gtCoarse/<split>/<scene>/<fid>_gtCoarse_labelIds.png"),
        ]
        folder, layout = _resolve(self.name, root, detectors, self.subfolders)
        self.split = split
        self.eval_region = eval_region
        if roi == "auto":
            if LAF_ROI_FILENAME not in folder.files():
                raise FileNotFoundError(
                    f"{self.name}: ROI mask not found: {folder.file_url(LAF_ROI_FILENAME)} (LostAndFound is "
                    f"evaluated inside the SegmentMeIfYouCan ROI {LAF_ROI_FILENAME}); copy it there, pass "
                    "roi=<URL of the mask>, or roi=None to evaluate without a ROI"
                )
            roi = folder.file_url(LAF_ROI_FILENAME)
        self.roi_url: str | None = roi
        self._roi: np.ndarray | None = None
        super().__init__(folder.url, layout, self._official_refs(folder, split), max_pixels=max_pixels)

    def _official_refs(self, folder: _Dir, split: str) -> list[SampleRef]:
        img_split = folder.sub("leftImg8bit", split)
        gt_split = folder.sub("gtCoarse", split)
        if not img_split.isdir():
            raise FileNotFoundError(
                f"{self.name}: split folder not found: {img_split.url} "
                "(expected leftImg8bit/<split>/<scene>/<fid>_leftImg8bit.png)"
            )
        refs = []
        chosen: dict[str, str] = {}
        for scene in sorted(img_split.dirs()):
            gt_files = gt_split.sub(scene).files()
            for name, url in sorted(img_split.sub(scene).files().items()):
                m = _LAF_IMAGE_RE.match(name)
                if m is None:
                    continue
                fid = m.group("fid")
                if fid in chosen:
                    if name.endswith(".png"):  # prefer PNG when a frame exists in several formats
                        chosen[fid] = url
                    continue
                chosen[fid] = url
                label_name = f"{fid}_gtCoarse_labelIds.png"
                if label_name not in gt_files:
                    raise MissingLabelError(
                        f"{self.name}: missing label for image {url}: expected "
                        f"{gt_split.sub(scene).file_url(label_name)}"
                    )
        for fid, url in chosen.items():
            scene = url.rsplit("/", 2)[-2]
            refs.append(SampleRef(fid, url, gt_split.sub(scene).file_url(f"{fid}_gtCoarse_labelIds.png")))
        refs.sort(key=lambda r: _natural_key(r.sample_id))
        return refs

    def roi_mask(self) -> np.ndarray | None:
        """The ROI as a bool array (H, W) (True = evaluated), or None when no ROI is used."""
        if self.roi_url is None:
            return None
        if self._roi is None:
            raw = read_label(self.roi_url, max_pixels=self.max_pixels)
            if raw.ndim != 2:
                raise ValueError(f"{self.roi_url}: expected a single-channel ROI mask, got shape {raw.shape}")
            self._roi = raw > 0
        return self._roi

    def read_label(self, ref: SampleRef) -> np.ndarray:
        raw = self._read_raw_label(ref.label_url)
        mapped = map_label_values(
            raw, _LUT_LAF, url=ref.label_url, encoding="lostandfound (0 ignore, 1 free space, 2..200 obstacles)"
        )
        roi = self.roi_mask()
        if roi is not None and roi.shape != mapped.shape:
            raise SizeMismatchError(
                f"{self.name}: ROI {self.roi_url} is {roi.shape[1]}x{roi.shape[0]} (WxH) but label "
                f"{ref.label_url} is {mapped.shape[1]}x{mapped.shape[0]}; they must have the same size"
            )
        if self.eval_region == "roi":
            out = np.full(mapped.shape, VOID, dtype=np.uint8)
            if roi is None:
                out[:] = IN_DISTRIBUTION
            else:
                out[roi] = IN_DISTRIBUTION
            out[mapped == ANOMALY] = ANOMALY
            return out
        if roi is not None:
            mapped[~roi] = VOID
        return mapped
