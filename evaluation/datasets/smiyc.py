"""SegmentMeIfYouCan readers (RoadAnomaly21 and RoadObstacle21)."""

from __future__ import annotations

from typing import ClassVar


from schemas.codecs import DEFAULT_MAX_PIXELS
from evaluation.datasets.base import IMAGE_EXTENSIONS, MissingLabelError, SampleRef, _BUNDLE_DESC, _Detector, _Dir, _bundle_refs, _has_dirs, _images_by_stem, _natural_key, _resolve
from evaluation.datasets.fishyscapes import _AnomalyLabels

# --------------------------------------------------------------------------------------------------------------
# SegmentMeIfYouCan
# --------------------------------------------------------------------------------------------------------------

_SMIYC_LABEL_SUFFIX = "_labels_semantic.png"


def _smiyc_official(folder: _Dir) -> bool:
    return _has_dirs("images", "labels_masks")(folder) and any(
        n.endswith(_SMIYC_LABEL_SUFFIX) for n in folder.sub("labels_masks").files()
    )


class _SMIYC(_AnomalyLabels):
    subfolders: ClassVar[tuple[str, ...]] = ()

    def __init__(self, root: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        detectors: list[tuple[str, _Detector, str]] = [
            ("official", _smiyc_official, "images/<fid>.{jpg,webp} + labels_masks/<fid>_labels_semantic.png"),
            ("bundle", _has_dirs("images", "labels_masks"), _BUNDLE_DESC),
        ]
        folder, layout = _resolve(self.name, root, detectors, self.subfolders)
        skipped: list[str] = []
        if layout == "bundle":
            refs = _bundle_refs(self.name, folder)
        else:
            refs, skipped = self._official_refs(folder)
        super().__init__(folder.url, layout, refs, skipped=skipped, max_pixels=max_pixels)

    def _official_refs(self, folder: _Dir) -> tuple[list[SampleRef], list[str]]:
        images = _images_by_stem(folder.sub("images"))
        labels_dir = folder.sub("labels_masks")
        refs = []
        labelled: set[str] = set()
        for name, url in labels_dir.files().items():
            if not name.endswith(_SMIYC_LABEL_SUFFIX):
                continue
            fid = name[: -len(_SMIYC_LABEL_SUFFIX)]
            if fid not in images:
                raise MissingLabelError(
                    f"{self.name}: label {url} has no image: expected {folder.sub('images').url}/{fid}"
                    f"{{{','.join(IMAGE_EXTENSIONS)}}}"
                )
            labelled.add(fid)
            refs.append(SampleRef(fid, images[fid], url))
        refs.sort(key=lambda r: _natural_key(r.sample_id))
        skipped = sorted((url for stem, url in images.items() if stem not in labelled), key=_natural_key)
        return refs, skipped


class SMIYCAnomaly(_SMIYC):
    """SegmentMeIfYouCan RoadAnomaly21 (AnomalyTrack): official or bundle ``RoadAnomaly21``.

    Args:
        root: Dataset folder or its parent.
        max_pixels: Decompression-bomb limit per image.
    """

    name: ClassVar[str] = "smiyc_anomaly"
    subfolders: ClassVar[tuple[str, ...]] = ("RoadAnomaly21", "dataset_AnomalyTrack")


class SMIYCObstacle(_SMIYC):
    """SegmentMeIfYouCan RoadObstacle21 (ObstacleTrack): official or bundle ``RoadObsticle21`` (sic).

    Args:
        root: Dataset folder or its parent.
        max_pixels: Decompression-bomb limit per image.
    """

    name: ClassVar[str] = "smiyc_obstacle"
    subfolders: ClassVar[tuple[str, ...]] = ("RoadObsticle21", "RoadObstacle21", "dataset_ObstacleTrack")
