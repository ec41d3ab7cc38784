"""Readers for the anomaly-segmentation benchmarks and Cityscapes val, in their official on-disk layouts and in
the widely used renumbered "Validation_Dataset" bundle layout, through fsspec URLs.

Every reader yields :class:`Sample` objects: an RGB image and a label map in one **common encoding**

* anomaly sets: ``0`` = in-distribution, ``1`` = anomaly, ``255`` = void (ignored by every metric);
* Cityscapes: trainIds ``0..18`` and ``255`` = ignore.

Open a dataset with :func:`open_dataset` (``open_dataset("road_anomaly", "/data/RoadAnomaly_jpg")``) or with the
reader class. The layout (official or bundle) is detected from the files present. ``root`` may be the dataset
folder itself or its parent (e.g. the bundle root holding ``FS_LostFound_full/``, ``fs_static/``, ...): the
known sub-folder names listed below are tried when ``root`` itself holds no known layout. When more than one
sub-folder matches, the call fails and asks for the specific folder.

Layouts and label mappings (raw file value -> common encoding)
--------------------------------------------------------------

``fishyscapes_lostandfound`` (alias ``fs_lost_and_found``), Fishyscapes Lost & Found validation (100 frames):

* bundle: ``images/<i>.png`` + ``labels_masks/<i>.png`` (sub-folder ``FS_LostFound_full``); 0/1/255 kept.
* official release (``fishyscapes_lostandfound.zip`` from the Fishyscapes site, the file the ``bdlb`` TFDS
  builder downloads): a flat folder of ``<NNNN>_<lafId>_labels.png`` (e.g.
  ``0000_04_Maurener_Weg_8_000000_000030_labels.png``), values 0/1/255. The zip holds labels only; the images
  are the LostAndFound frames ``<laf_root>/leftImg8bit/{train,test}/<scene>/<lafId>_leftImg8bit.png``
  (``laf_root`` option, default: ``root`` when it has a ``leftImg8bit/`` folder).
* exported per-split folders read by the Meta-OoD / PEBAL / RPL loaders: ``original/<name>.png`` +
  ``labels/<name>.png`` (sub-folder ``LostAndFound``); 0/1/255 kept.

``fishyscapes_static`` (alias ``fs_static``), Fishyscapes Static validation (30 frames):

* bundle: ``images/<i>.jpg`` + ``labels_masks/<i>.png`` (sub-folder ``fs_static``); 0/1/255 kept.
* official release (``fs_val_v3.zip``, read by the ``bdlb`` TFDS builder): a flat folder of
  ``<NNNN>_<cityscapesId>_labels.png`` + ``<NNNN>_<cityscapesId>_rgb.npz``. The npz holds an integer overlay
  ``rgb`` (H, W, 3) that is added to the Cityscapes val frame ``leftImg8bit/val/<city>/<cityscapesId>_leftImg8bit.png``
  and clipped to 0..255 (``cityscapes_root`` option, default: ``root`` when it has ``leftImg8bit/``). The npz is
  read with ``allow_pickle=False``.
* exported per-split folders ``original/`` + ``labels/`` (sub-folder ``Static``); 0/1/255 kept.

``road_anomaly``, Road Anomaly (Lis et al. 2019, 60 frames):

* official ``RoadAnomaly_jpg``: ``frame_list.json`` (JSON list of ``"<name>.jpg"``) + ``frames/<name>.jpg`` +
  ``frames/<name>.labels/labels_semantic.png`` with 0 = background, 2 = anomaly (no void); mapped 0 -> 0,
  2 -> 1. Without ``frame_list.json`` the frames are found by listing ``frames/``.
* bundle ``RoadAnomaly/images/<i>.jpg`` + ``labels_masks/<i>.png``: the same 0/2 files, same mapping.

``smiyc_anomaly`` (SegmentMeIfYouCan RoadAnomaly21 / AnomalyTrack) and ``smiyc_obstacle`` (RoadObstacle21 /
ObstacleTrack); labels 0 = in-distribution (ObstacleTrack: road), 1 = anomaly, 255 = void, kept:

* official: ``images/<fid>.{jpg,webp}`` + ``labels_masks/<fid>_labels_semantic.png`` (AnomalyTrack
  ``validation0000.jpg``, ObstacleTrack ``validation_1.webp``). The release also ships the test images whose
  labels are withheld: the evaluated frames are those with a label file; every label needs its image.
* bundle: renumbered ``images/<i>.png|webp`` + ``labels_masks/<i>.png`` (sub-folders ``RoadAnomaly21`` and
  ``RoadObsticle21``, the bundle's spelling; ``RoadObstacle21`` is accepted too).

``lostandfound``, LostAndFound (Pinggera et al. 2016), official layout only:

* ``leftImg8bit/<split>/<scene>/<fid>_leftImg8bit.{png,webp,jpg}`` +
  ``gtCoarse/<split>/<scene>/<fid>_gtCoarse_labelIds.png``
  with 0 = ignore, 1 = free space (road), 2..200 = obstacle ids, mapped 0 -> 255, 1 -> 0, 2..200 -> 1
  (the SegmentMeIfYouCan benchmark code's mapping). ``split`` defaults to ``test``.
* Evaluation is restricted to the region of interest ``LAF_roi_2048.png`` shipped with the SegmentMeIfYouCan
  benchmark code (255 = evaluated, 0 = ego vehicle / sensor artefacts): pixels outside it become 255.
  ``roi="auto"`` (default) uses ``<root>/LAF_roi_2048.png`` and fails when it is absent; pass a URL, or
  ``roi=None`` to evaluate without it. ``eval_region="roi"`` gives the benchmark code's "anomaly" variant
  instead: every ROI pixel is in-distribution except the obstacles.

``cityscapes_val``: the official Cityscapes layout through :mod:`schemas.cityscapes` (``split`` option, default
``val``); labels are trainIds (``*_gtFine_labelTrainIds.png``, else converted ``*_gtFine_labelIds.png``).

``synthetic``: the anomaly set of the synthetic city (``stylepaste world``), which is the Fishyscapes bundle
layout ``<DIR>/fishyscapes_lostandfound/FS_LostFound_full/{images,labels_masks}/<i>.png``; ``root`` may be
``<DIR>``, ``<DIR>/fishyscapes_lostandfound`` or the ``FS_LostFound_full`` folder.

Order: bundles sort numerically (``0, 1, 2, 10``), other layouts in natural order of their ids. Discovery lists
each folder once and fails early, naming the file and what was expected, when an image has no label (or a
bundle label no image). Reading checks label values against the encoding the dataset allows and that image and
label sizes agree.
"""

from __future__ import annotations

from typing import Any

from evaluation.datasets.base import (
    ANOMALY,
    IMAGE_EXTENSIONS,
    IN_DISTRIBUTION,
    LAF_ROI_FILENAME,
    LAF_SPLITS,
    VOID,
    AnomalyDataset,
    LabelValueError,
    MissingLabelError,
    Sample,
    SampleRef,
    SizeMismatchError,
    map_label_values,
)
from evaluation.datasets.cityscapes import CityscapesVal, SyntheticAnomaly
from evaluation.datasets.fishyscapes import FishyscapesLostAndFound, FishyscapesStatic
from evaluation.datasets.lostandfound import LostAndFound
from evaluation.datasets.road_anomaly import RoadAnomaly
from evaluation.datasets.smiyc import SMIYCAnomaly, SMIYCObstacle

# --------------------------------------------------------------------------------------------------------------
# Registry by name
# --------------------------------------------------------------------------------------------------------------

DATASETS: dict[str, type[AnomalyDataset]] = {
    "fishyscapes_lostandfound": FishyscapesLostAndFound,
    "fishyscapes_static": FishyscapesStatic,
    "road_anomaly": RoadAnomaly,
    "smiyc_anomaly": SMIYCAnomaly,
    "smiyc_obstacle": SMIYCObstacle,
    "lostandfound": LostAndFound,
    "cityscapes_val": CityscapesVal,
    "synthetic": SyntheticAnomaly,
}
"""Reader class of every canonical dataset name."""

ALIASES: dict[str, str] = {
    "fs_lost_and_found": "fishyscapes_lostandfound",
    "fs_lostandfound": "fishyscapes_lostandfound",
    "fs_static": "fishyscapes_static",
    "roadanomaly21": "smiyc_anomaly",
    "road_anomaly21": "smiyc_anomaly",
    "roadobstacle21": "smiyc_obstacle",
    "road_obstacle21": "smiyc_obstacle",
    "lost_and_found": "lostandfound",
    "laf": "lostandfound",
    "cityscapes": "cityscapes_val",
}
"""Other accepted spellings (matched case-insensitively, ``-`` read as ``_``)."""

DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)
"""Canonical dataset names accepted by :func:`open_dataset`."""


def canonical_name(name: str) -> str:
    """Canonical dataset name for a name or alias.

    Raises:
        ValueError: For an unknown name (the message lists the accepted names).
    """
    key = str(name).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; expected one of {list(DATASET_NAMES)} or an alias {sorted(ALIASES)}"
        )
    return key


def open_dataset(name: str, root: str, **options: Any) -> AnomalyDataset:
    """Open a benchmark dataset by name, detecting its layout.

    Args:
        name: One of :data:`DATASET_NAMES` or an alias in :data:`ALIASES`.
        root: The dataset folder or its parent (local path or fsspec URL).
        **options: Reader options: ``laf_root`` (fishyscapes_lostandfound, official layout),
            ``cityscapes_root`` (fishyscapes_static, official layout), ``split`` / ``roi`` / ``eval_region``
            (lostandfound), ``split`` (cityscapes_val), ``max_pixels`` (all).

    Returns:
        The dataset, sorted deterministically.

    Raises:
        ValueError: For an unknown name, an option the reader does not take, or an ambiguous root.
        FileNotFoundError: If no known layout is found, or a frame's label or image is missing.
    """
    cls = DATASETS[canonical_name(name)]
    try:
        return cls(root, **options)
    except TypeError as err:
        if "unexpected keyword argument" in str(err):
            raise ValueError(f"{cls.name}: unsupported option(s) {sorted(options)}: {err}") from err
        raise


__all__ = [
    "ALIASES", "ANOMALY", "DATASETS", "DATASET_NAMES", "IMAGE_EXTENSIONS", "IN_DISTRIBUTION", "LAF_ROI_FILENAME",
    "LAF_SPLITS", "VOID", "AnomalyDataset", "CityscapesVal",
    "FishyscapesLostAndFound", "FishyscapesStatic", "LabelValueError", "LostAndFound", "MissingLabelError",
    "RoadAnomaly", "SMIYCAnomaly", "SMIYCObstacle", "Sample", "SampleRef", "SizeMismatchError", "SyntheticAnomaly",
    "canonical_name", "map_label_values", "open_dataset",
]
