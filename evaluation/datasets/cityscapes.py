"""Cityscapes val split as a segmentation set (mIoU) and the synthetic anomaly set of ``stylepaste world``."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from schemas import cityscapes as cs
from schemas.codecs import DEFAULT_MAX_PIXELS
from evaluation.datasets.base import AnomalyDataset, MissingLabelError, SampleRef, _BUNDLE_DESC, _Detector, _LUT_TRAIN_IDS, _bundle_refs, _has_dirs, _resolve, map_label_values
from evaluation.datasets.fishyscapes import _AnomalyLabels

# --------------------------------------------------------------------------------------------------------------
# Cityscapes val and the synthetic anomaly set
# --------------------------------------------------------------------------------------------------------------


class CityscapesVal(AnomalyDataset):
    """Cityscapes semantic-segmentation frames (for mIoU) through :mod:`schemas.cityscapes`.

    Args:
        root: Cityscapes root (holding ``leftImg8bit/`` and ``gtFine/``) or its parent (sub-folder ``cityscapes``).
        split: Split folder, ``"val"`` by default.
        max_pixels: Decompression-bomb limit per image.
    """

    name: ClassVar[str] = "cityscapes_val"
    label_encoding: ClassVar[str] = "train_ids"
    subfolders: ClassVar[tuple[str, ...]] = ("cityscapes",)

    def __init__(self, root: str, *, split: str = "val", max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        detectors: list[tuple[str, _Detector, str]] = [
            ("official", _has_dirs("leftImg8bit", "gtFine"),
             "leftImg8bit/<split>/<city>/*_leftImg8bit.png + gtFine/<split>/<city>/*_gtFine_labelIds.png"),
        ]
        folder, layout = _resolve(self.name, root, detectors, self.subfolders)
        self.split = split
        self._frames: dict[str, cs.CityscapesFrame] = {}
        refs = []
        gt = folder.sub("gtFine", split)
        for frame in cs.list_frames(folder.url, split):
            gt_files = gt.sub(frame.city).files()
            if frame.train_ids_url.rsplit("/", 1)[-1] in gt_files:
                label_url = frame.train_ids_url
            elif frame.label_ids_url.rsplit("/", 1)[-1] in gt_files:
                label_url = frame.label_ids_url
            else:
                raise MissingLabelError(
                    f"{self.name}: missing label for image {frame.image_url}: expected "
                    f"{frame.train_ids_url} or {frame.label_ids_url}"
                )
            self._frames[frame.frame_id] = frame
            refs.append(SampleRef(frame.frame_id, frame.image_url, label_url))
        super().__init__(folder.url, layout, refs, max_pixels=max_pixels)

    def read_image(self, ref: SampleRef) -> np.ndarray:
        return cs.read_image(self._frames[ref.sample_id])

    def read_label(self, ref: SampleRef) -> np.ndarray:
        try:
            train_ids = cs.read_train_ids(self._frames[ref.sample_id])
        except FileNotFoundError as err:
            raise MissingLabelError(f"{self.name}: {err}") from err
        return map_label_values(train_ids, _LUT_TRAIN_IDS, url=ref.label_url,
                                encoding="Cityscapes trainIds (0..18, 255 ignore)")


class SyntheticAnomaly(_AnomalyLabels):
    """The synthetic city's anomaly set: the Fishyscapes Lost & Found bundle layout.

    Args:
        root: ``<DIR>`` written by ``stylepaste world``, ``<DIR>/fishyscapes_lostandfound`` or the
            ``FS_LostFound_full`` folder itself.
        max_pixels: Decompression-bomb limit per image.
    """

    name: ClassVar[str] = "synthetic"
    subfolders: ClassVar[tuple[str, ...]] = ("FS_LostFound_full", "fishyscapes_lostandfound/FS_LostFound_full")

    def __init__(self, root: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        detectors: list[tuple[str, _Detector, str]] = [
            ("bundle", _has_dirs("images", "labels_masks"), _BUNDLE_DESC),
        ]
        folder, layout = _resolve(self.name, root, detectors, self.subfolders)
        super().__init__(folder.url, layout, _bundle_refs(self.name, folder), max_pixels=max_pixels)
