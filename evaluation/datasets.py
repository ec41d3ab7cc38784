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

import io
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import fsspec
import numpy as np

from schemas import cityscapes as cs
from schemas.codecs import DEFAULT_MAX_PIXELS, read_label, read_rgb
from schemas.labels import IGNORE, NUM_CLASSES

IN_DISTRIBUTION: int = 0
"""Common anomaly encoding: in-distribution pixel."""

ANOMALY: int = 1
"""Common anomaly encoding: anomalous pixel."""

VOID: int = IGNORE
"""Common anomaly encoding: pixel excluded from every metric (255)."""

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp")
"""Image file extensions recognised in every layout."""

LAF_ROI_FILENAME: str = "LAF_roi_2048.png"
"""Name of the LostAndFound region-of-interest mask from the SegmentMeIfYouCan benchmark code."""

LAF_SPLITS: tuple[str, ...] = ("train", "test")
"""LostAndFound split folders."""


# --------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------


class MissingLabelError(FileNotFoundError):
    """An image has no label file (or a bundle label has no image)."""


class LabelValueError(ValueError):
    """A label file holds values its dataset's encoding does not allow."""


class SizeMismatchError(ValueError):
    """Image, label (or ROI / overlay) sizes disagree."""


# --------------------------------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Sample:
    """One evaluation frame.

    Attributes:
        sample_id: Identifier within its dataset (bundle: ``"0"``; official layouts: the file stem, e.g.
            ``"validation0000"`` or ``"frankfurt_000000_000294"``).
        image: uint8 array (H, W, 3), RGB.
        label: uint8 array (H, W): anomaly sets {0 in, 1 anomaly, 255 void}; Cityscapes trainIds 0..18 / 255.
        image_url: URL of the image file that was read.
        label_url: URL of the label file that was read.
    """

    sample_id: str
    image: np.ndarray
    label: np.ndarray
    image_url: str
    label_url: str


@dataclass(frozen=True)
class SampleRef:
    """Where one frame's files are (no pixel data).

    Attributes:
        sample_id: Identifier within the dataset.
        image_url: Image file (for Fishyscapes Static official: the Cityscapes base frame).
        label_url: Label file.
        aux_url: Additional file needed to build the image (Fishyscapes Static official: the ``*_rgb.npz``
            overlay), else None.
    """

    sample_id: str
    image_url: str
    label_url: str
    aux_url: str | None = None


# --------------------------------------------------------------------------------------------------------------
# Label value tables
# --------------------------------------------------------------------------------------------------------------


def _lut(mapping: dict[int, int]) -> np.ndarray:
    """Lookup table over 0..255; -1 marks a value the encoding does not allow."""
    table = np.full(256, -1, dtype=np.int16)
    for raw, out in mapping.items():
        table[raw] = out
    return table


_LUT_ANOMALY = _lut({0: IN_DISTRIBUTION, 1: ANOMALY, 255: VOID})
_LUT_ROAD_ANOMALY = _lut({0: IN_DISTRIBUTION, 2: ANOMALY})
_LUT_LAF = _lut({0: VOID, 1: IN_DISTRIBUTION, **{v: ANOMALY for v in range(2, 201)}})
_LUT_TRAIN_IDS = _lut({**{v: v for v in range(NUM_CLASSES)}, IGNORE: IGNORE})


def _describe_allowed(table: np.ndarray) -> str:
    vals = np.flatnonzero(table >= 0).tolist()
    parts: list[str] = []
    start = prev = vals[0]
    for v in vals[1:] + [None]:  # type: ignore[list-item]
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}..{prev}")
        if v is not None:
            start = prev = v
    return "{" + ", ".join(parts) + "}"


def map_label_values(raw: np.ndarray, table: np.ndarray, *, url: str, encoding: str) -> np.ndarray:
    """Check a raw label map against an encoding and map it to the common encoding.

    Args:
        raw: Integer array (H, W) as decoded from the label file.
        table: int16 lookup table of 256 entries; ``-1`` marks values that are not allowed.
        url: The label file (named in errors).
        encoding: Human-readable name of the raw encoding (named in errors).

    Returns:
        uint8 array (H, W) in the common encoding.

    Raises:
        LabelValueError: If the map holds values outside 0..255 or values the table does not allow.
    """
    arr = np.asarray(raw)
    if arr.dtype != np.uint8:
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
            raise LabelValueError(
                f"{url}: unexpected label values in range {int(arr.min())}..{int(arr.max())} for {encoding}; "
                f"allowed values are {_describe_allowed(table)}"
            )
        arr = arr.astype(np.uint8)
    counts = np.bincount(arr.ravel(), minlength=256)
    bad = np.flatnonzero((counts > 0) & (table < 0))
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:16].tolist()) + (", ..." if bad.size > 16 else "")
        raise LabelValueError(
            f"{url}: unexpected label values [{shown}] ({int(counts[bad].sum())} pixels) for {encoding}; "
            f"allowed values are {_describe_allowed(table)}"
        )
    return table[arr].astype(np.uint8)


# --------------------------------------------------------------------------------------------------------------
# File-system helpers
# --------------------------------------------------------------------------------------------------------------


class _Dir:
    """A folder reached through fsspec: ``url`` keeps the caller's protocol, ``path`` is the fs-internal path."""

    def __init__(self, fs: Any, url: str, path: str) -> None:
        self.fs = fs
        self.url = url.rstrip("/") or url
        self.path = path.rstrip("/") or path
        self._listing: tuple[dict[str, str], set[str]] | None = None

    @classmethod
    def open(cls, url: str) -> _Dir:
        fs, path = fsspec.core.url_to_fs(str(url))
        return cls(fs, str(url), path)

    def sub(self, *parts: str) -> _Dir:
        rel = "/".join(p.strip("/") for p in parts if p)
        if not rel:
            return self
        return _Dir(self.fs, f"{self.url}/{rel}", f"{self.path}/{rel}")

    def file_url(self, name: str) -> str:
        return f"{self.url}/{name}"

    def _list(self) -> tuple[dict[str, str], set[str]]:
        if self._listing is None:
            files: dict[str, str] = {}
            dirs: set[str] = set()
            try:
                entries = self.fs.ls(self.path, detail=True)
            except (FileNotFoundError, NotADirectoryError):
                entries = []
            for entry in entries:
                name = str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]
                if entry.get("type") == "directory":
                    dirs.add(name)
                else:
                    files[name] = self.file_url(name)
            self._listing = (files, dirs)
        return self._listing

    def files(self) -> dict[str, str]:
        """File names in this folder -> URLs (empty when the folder does not exist)."""
        return self._list()[0]

    def dirs(self) -> set[str]:
        """Sub-folder names (empty when the folder does not exist)."""
        return self._list()[1]

    def isdir(self) -> bool:
        return bool(self.fs.isdir(self.path))


def _natural_key(text: str) -> tuple[Any, ...]:
    """Sort key ordering embedded integers numerically: ``2 < 10``, ``validation_2 < validation_10``."""
    parts = re.split(r"(\d+)", text)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)) + (text,)


def _split_ext(name: str) -> tuple[str, str]:
    stem, dot, ext = name.rpartition(".")
    return (stem, "." + ext.lower()) if dot else (name, "")


def _images_by_stem(folder: _Dir) -> dict[str, str]:
    """Map image stems to URLs; two images with one stem (``0.png`` and ``0.jpg``) are an error."""
    out: dict[str, str] = {}
    for name, url in folder.files().items():
        stem, ext = _split_ext(name)
        if ext not in IMAGE_EXTENSIONS:
            continue
        if stem in out:
            raise ValueError(
                f"two images share the stem {stem!r} in {folder.url}: {out[stem]} and {url}; keep one"
            )
        out[stem] = url
    return out


# --------------------------------------------------------------------------------------------------------------
# Dataset base
# --------------------------------------------------------------------------------------------------------------


class AnomalyDataset(Sequence[Sample]):
    """A benchmark dataset: a sorted list of frames that are decoded on access.

    Supports ``len()``, integer indexing (negative too) and iteration; each access reads the files again (no
    pixel cache), so the object is cheap to copy into DataLoader workers.

    Attributes:
        name: Canonical dataset name (see :data:`DATASET_NAMES`).
        layout: Detected layout: ``"bundle"``, ``"official"`` or ``"exported"``.
        root: URL of the resolved dataset folder.
        label_encoding: ``"anomaly"`` ({0, 1, 255}) or ``"train_ids"`` (Cityscapes 0..18, 255).
        refs: The frames' file locations, in dataset order.
        skipped: Images present but not part of the evaluated set (SMIYC test images without public labels).
    """

    name: ClassVar[str] = "anomaly"
    label_encoding: ClassVar[str] = "anomaly"

    def __init__(self, root: str, layout: str, refs: Sequence[SampleRef], *, skipped: Sequence[str] = (),
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.root = root
        self.layout = layout
        self.refs: tuple[SampleRef, ...] = tuple(refs)
        self.skipped: tuple[str, ...] = tuple(skipped)
        self.max_pixels = max_pixels
        self._index = {ref.sample_id: i for i, ref in enumerate(self.refs)}
        if not self.refs:
            raise FileNotFoundError(f"{self.name}: no frames found in {root} (layout {layout})")

    # -- sequence protocol ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"{self.name}: index must be an int, got {type(index).__name__}")
        n = len(self.refs)
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"{self.name}: index {i} out of range for {n} frames")
        return self.read(self.refs[i])

    def __iter__(self) -> Iterator[Sample]:
        for ref in self.refs:
            yield self.read(ref)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, layout={self.layout!r}, root={self.root!r}, n={len(self)})"

    @property
    def sample_ids(self) -> list[str]:
        """Sample ids in dataset order."""
        return [ref.sample_id for ref in self.refs]

    def get(self, sample_id: str) -> Sample:
        """Read the frame with this id.

        Raises:
            KeyError: If the id is not in the dataset.
        """
        if sample_id not in self._index:
            raise KeyError(
                f"{self.name}: no sample {sample_id!r} (have {len(self)} samples, e.g. {self.sample_ids[:3]})"
            )
        return self.read(self.refs[self._index[sample_id]])

    # -- reading -------------------------------------------------------------------------------------------
    def read(self, ref: SampleRef) -> Sample:
        """Decode one frame and its label in the common encoding.

        Args:
            ref: One of :attr:`refs`.

        Returns:
            The :class:`Sample`.

        Raises:
            FileNotFoundError: Naming a missing file.
            LabelValueError: If the label holds values the dataset's encoding does not allow.
            SizeMismatchError: If image and label sizes differ.
        """
        image = self.read_image(ref)
        label = self.read_label(ref)
        if image.shape[:2] != label.shape[:2]:
            raise SizeMismatchError(
                f"{self.name}: image {ref.image_url} is {image.shape[1]}x{image.shape[0]} (WxH) but label "
                f"{ref.label_url} is {label.shape[1]}x{label.shape[0]}; they must have the same size"
            )
        return Sample(ref.sample_id, image, label, ref.image_url, ref.label_url)

    def read_image(self, ref: SampleRef) -> np.ndarray:
        """Decode the frame's RGB image, uint8 (H, W, 3)."""
        return read_rgb(ref.image_url, max_pixels=self.max_pixels)

    def read_label(self, ref: SampleRef) -> np.ndarray:
        """Decode the frame's label in the common encoding, uint8 (H, W)."""
        raise NotImplementedError

    def _read_raw_label(self, url: str) -> np.ndarray:
        try:
            return read_label(url, max_pixels=self.max_pixels)
        except FileNotFoundError as err:
            raise MissingLabelError(f"{self.name}: label file not found: {url}") from err


# --------------------------------------------------------------------------------------------------------------
# Root resolution
# --------------------------------------------------------------------------------------------------------------

_Detector = Callable[[_Dir], bool]


def _resolve(dataset: str, root: str, detectors: Sequence[tuple[str, _Detector, str]],
             subfolders: Sequence[str]) -> tuple[_Dir, str]:
    """Find the folder and layout: ``root`` itself first, then the known sub-folders (exactly one may match).

    Args:
        dataset: Dataset name (errors).
        root: The caller's URL.
        detectors: ``(layout, predicate, description)`` in priority order.
        subfolders: Relative sub-folder names to try when ``root`` itself matches no layout.

    Returns:
        The dataset folder and the layout name.

    Raises:
        FileNotFoundError: If neither ``root`` nor a sub-folder holds a known layout.
        ValueError: If several sub-folders match.
    """
    base = _Dir.open(root)
    if not base.isdir():
        raise FileNotFoundError(f"{dataset}: root folder not found: {root}")

    def detect(folder: _Dir) -> str | None:
        for layout, predicate, _ in detectors:
            if predicate(folder):
                return layout
        return None

    layout = detect(base)
    if layout is not None:
        return base, layout
    matches: list[tuple[_Dir, str]] = []
    for sub in subfolders:
        folder = base.sub(sub)
        if folder.isdir():
            found = detect(folder)
            if found is not None:
                matches.append((folder, found))
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ValueError(
            f"{dataset}: {root} holds several candidate datasets: "
            + ", ".join(f"{m.url} ({lay})" for m, lay in matches)
            + "; pass the one you mean as root"
        )
    expected = "; ".join(f"{lay}: {desc}" for lay, _, desc in detectors)
    raise FileNotFoundError(
        f"{dataset}: no known layout in {root} nor in its sub-folders {list(subfolders)}; expected {expected}"
    )


def _has_dirs(*names: str) -> _Detector:
    return lambda d: all(n in d.dirs() for n in names)


# --------------------------------------------------------------------------------------------------------------
# Bundle and paired-folder layouts
# --------------------------------------------------------------------------------------------------------------


def _paired_refs(dataset: str, folder: _Dir, image_dir: str, label_dir: str,
                 label_name: Callable[[str], str]) -> list[SampleRef]:
    """Pair ``<image_dir>/<stem>.<ext>`` with ``<label_dir>/label_name(stem)``; both directions must match."""
    images = _images_by_stem(folder.sub(image_dir))
    labels = folder.sub(label_dir).files()
    refs: list[SampleRef] = []
    for stem, url in images.items():
        name = label_name(stem)
        if name not in labels:
            raise MissingLabelError(
                f"{dataset}: missing label for image {url}: expected {folder.sub(label_dir).file_url(name)}"
            )
        refs.append(SampleRef(stem, url, labels[name]))
    expected_names = {label_name(stem) for stem in images}
    for name, url in labels.items():
        if name.lower().endswith(".png") and name not in expected_names:
            stem = name[: -len(".png")]
            raise MissingLabelError(
                f"{dataset}: label {url} has no image: expected {folder.sub(image_dir).url}/{stem}"
                f"{{{','.join(IMAGE_EXTENSIONS)}}}"
            )
    refs.sort(key=lambda r: _natural_key(r.sample_id))
    return refs


def _bundle_refs(dataset: str, folder: _Dir) -> list[SampleRef]:
    return _paired_refs(dataset, folder, "images", "labels_masks", lambda stem: stem + ".png")


_BUNDLE_DESC = "images/<i>.{png,jpg,webp} + labels_masks/<i>.png"
_EXPORTED_DESC = "original/<name>.png + labels/<name>.png"


# --------------------------------------------------------------------------------------------------------------
# Fishyscapes
# --------------------------------------------------------------------------------------------------------------

_FS_LABEL_RE = re.compile(r"^(?P<fs_id>\d+)_(?P<base_id>.+)_labels\.png$")
_LAF_IMAGE_RE = re.compile(r"^(?P<fid>(?P<scene>\d{2}_.+)_\d{6}_\d{6})_leftImg8bit\.(?:png|webp|jpg|jpeg)$")
_CS_ID_RE = re.compile(r"^(?P<city>.+)_\d{6}_\d{6}$")


def _has_fs_labels(folder: _Dir) -> bool:
    return any(_FS_LABEL_RE.match(name) for name in folder.files())


def _fs_official_labels(folder: _Dir) -> list[tuple[str, str, str, str]]:
    """``(sample_id, fs_id, base_id, label_url)`` for every ``<NNNN>_<baseId>_labels.png``."""
    out = []
    for name, url in folder.files().items():
        m = _FS_LABEL_RE.match(name)
        if m:
            out.append((name[: -len("_labels.png")], m.group("fs_id"), m.group("base_id"), url))
    out.sort(key=lambda t: (int(t[1]), t[0]))
    return out


def _laf_image_index(laf_root: _Dir) -> dict[str, str]:
    """``lafId -> image URL`` over ``leftImg8bit/{train,test}/<scene>/`` (PNG preferred over WebP/JPEG)."""
    index: dict[str, str] = {}
    rank = {".png": 0, ".webp": 1, ".jpg": 2, ".jpeg": 3}
    chosen: dict[str, int] = {}
    for split in LAF_SPLITS:
        split_dir = laf_root.sub("leftImg8bit", split)
        for scene in sorted(split_dir.dirs()):
            for name, url in split_dir.sub(scene).files().items():
                m = _LAF_IMAGE_RE.match(name)
                if m is None:
                    continue
                r = rank[_split_ext(name)[1]]
                if m.group("fid") not in chosen or r < chosen[m.group("fid")]:
                    index[m.group("fid")] = url
                    chosen[m.group("fid")] = r
    return index


class _AnomalyLabels(AnomalyDataset):
    """Datasets whose label files already use the common {0, 1, 255} encoding."""

    raw_encoding: ClassVar[str] = "the anomaly encoding (0 in-distribution, 1 anomaly, 255 void)"

    def read_label(self, ref: SampleRef) -> np.ndarray:
        raw = self._read_raw_label(ref.label_url)
        return map_label_values(raw, _LUT_ANOMALY, url=ref.label_url, encoding=f"{self.name} ({self.raw_encoding})")


class _Fishyscapes(_AnomalyLabels):
    """Shared layout detection of the Fishyscapes readers: bundle, official (label files whose images live in
    another dataset, ``images_root``) or exported (``original/`` + ``labels/``)."""

    official_desc: ClassVar[str] = ""

    def _open_layouts(self, root: str, images_root: str | None, max_pixels: int) -> None:
        folder, layout = _resolve(self.name, root, self._detectors(), self.subfolders)
        if layout == "bundle":
            refs = _bundle_refs(self.name, folder)
        elif layout == "exported":
            refs = _paired_refs(self.name, folder, "original", "labels", lambda stem: stem + ".png")
        else:
            refs = self._official_refs(folder, images_root)
        super().__init__(folder.url, layout, refs, max_pixels=max_pixels)

    @classmethod
    def _detectors(cls) -> list[tuple[str, _Detector, str]]:
        return [
            ("bundle", _has_dirs("images", "labels_masks"), _BUNDLE_DESC),
            ("official", _has_fs_labels, cls.official_desc),
            ("exported", _has_dirs("original", "labels"), _EXPORTED_DESC),
        ]

    def _official_refs(self, folder: _Dir, images_root: str | None) -> list[SampleRef]:
        raise NotImplementedError


class FishyscapesLostAndFound(_Fishyscapes):
    """Fishyscapes Lost & Found validation: bundle, official (labels zip + LostAndFound images) or exported.

    Args:
        root: Dataset folder or its parent (URL or local path).
        laf_root: LostAndFound root holding ``leftImg8bit/`` (official layout only; default ``root``).
        max_pixels: Decompression-bomb limit per image.
    """

    name: ClassVar[str] = "fishyscapes_lostandfound"
    subfolders: ClassVar[tuple[str, ...]] = (
        "FS_LostFound_full", "LostAndFound", "fishyscapes_lostandfound",
        "fishyscapes_lostandfound/FS_LostFound_full",
    )

    official_desc: ClassVar[str] = "<NNNN>_<lafId>_labels.png (+ LostAndFound leftImg8bit/)"

    def __init__(self, root: str, *, laf_root: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self._open_layouts(root, laf_root, max_pixels)

    def _official_refs(self, folder: _Dir, laf_root: str | None) -> list[SampleRef]:
        if laf_root is None:
            if "leftImg8bit" not in folder.dirs():
                raise FileNotFoundError(
                    f"{self.name}: {folder.url} holds the official Fishyscapes label files, whose images are "
                    "LostAndFound frames; pass laf_root=<LostAndFound root with leftImg8bit/{train,test}/> "
                    f"or put leftImg8bit/ into {folder.url}"
                )
            laf = folder
        else:
            laf = _Dir.open(laf_root)
        index = _laf_image_index(laf)
        refs = []
        for sample_id, _, laf_id, label_url in _fs_official_labels(folder):
            if laf_id not in index:
                scene = laf_id.rsplit("_", 2)[0]
                raise FileNotFoundError(
                    f"{self.name}: no LostAndFound image for label {label_url}: expected "
                    f"{laf.url}/leftImg8bit/{{train,test}}/{scene}/{laf_id}_leftImg8bit.png"
                )
            refs.append(SampleRef(sample_id, index[laf_id], label_url))
        return refs


class FishyscapesStatic(_Fishyscapes):
    """Fishyscapes Static validation: bundle, official (labels + overlay npz + Cityscapes val) or exported.

    Args:
        root: Dataset folder or its parent.
        cityscapes_root: Cityscapes root holding ``leftImg8bit/val/`` (official layout only; default ``root``).
        max_pixels: Decompression-bomb limit per image.
    """

    name: ClassVar[str] = "fishyscapes_static"
    subfolders: ClassVar[tuple[str, ...]] = ("fs_static", "FS_Static", "Static")

    official_desc: ClassVar[str] = (
        "<NNNN>_<cityscapesId>_labels.png + <NNNN>_<cityscapesId>_rgb.npz (+ Cityscapes leftImg8bit/val/)")

    def __init__(self, root: str, *, cityscapes_root: str | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self._open_layouts(root, cityscapes_root, max_pixels)

    def _official_refs(self, folder: _Dir, cityscapes_root: str | None) -> list[SampleRef]:
        if cityscapes_root is None:
            if "leftImg8bit" not in folder.dirs():
                raise FileNotFoundError(
                    f"{self.name}: {folder.url} holds the official Fishyscapes Static files, whose images are "
                    "overlays on Cityscapes val frames; pass cityscapes_root=<Cityscapes root with "
                    f"leftImg8bit/val/> or put leftImg8bit/ into {folder.url}"
                )
            cs_root = folder.url
        else:
            cs_root = str(cityscapes_root)
        files = folder.files()
        refs = []
        for sample_id, fs_id, cs_id, label_url in _fs_official_labels(folder):
            npz_name = f"{sample_id}_rgb.npz"
            if npz_name not in files:
                alternatives = sorted(n for n in files if n.startswith(fs_id + "_") and n.endswith("rgb.npz"))
                if len(alternatives) != 1:
                    raise FileNotFoundError(
                        f"{self.name}: missing overlay for label {label_url}: expected {folder.file_url(npz_name)}"
                    )
                npz_name = alternatives[0]
            m = _CS_ID_RE.match(cs_id)
            if m is None:
                raise ValueError(
                    f"{self.name}: {label_url}: cannot read a Cityscapes frame id (<city>_<seq>_<frame>) "
                    f"from {cs_id!r}"
                )
            frame = cs.frame_paths(cs_root, "val", m.group("city"), cs_id)
            refs.append(SampleRef(sample_id, frame.image_url, label_url, aux_url=folder.file_url(npz_name)))
        return refs

    def read_image(self, ref: SampleRef) -> np.ndarray:
        base = super().read_image(ref)
        if ref.aux_url is None:
            return base
        overlay = _read_overlay(ref.aux_url)
        if overlay.shape != base.shape:
            raise SizeMismatchError(
                f"{self.name}: overlay {ref.aux_url} has shape {overlay.shape} but the Cityscapes frame "
                f"{ref.image_url} has shape {base.shape}; they must match"
            )
        return np.clip(base.astype(np.int32) + overlay, 0, 255).astype(np.uint8)


def _read_overlay(url: str) -> np.ndarray:
    """Read the ``rgb`` integer overlay (H, W, 3) of a Fishyscapes Static ``*_rgb.npz`` (no pickles)."""
    try:
        with fsspec.open(url, "rb") as f:
            data = f.read()
    except FileNotFoundError as err:
        raise FileNotFoundError(f"Fishyscapes Static overlay not found: {url}") from err
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if "rgb" not in npz.files:
                raise ValueError(f"{url}: expected an array named 'rgb' in the npz, found {npz.files}")
            arr = np.asarray(npz["rgb"])
    except ValueError:
        raise
    except Exception as err:  # zipfile / format errors
        raise ValueError(f"{url}: cannot read the overlay npz ({type(err).__name__}: {err})") from err
    if arr.ndim != 3 or arr.shape[2] != 3 or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{url}: expected a numeric (H, W, 3) overlay 'rgb', got {arr.dtype} {arr.shape}")
    return arr.astype(np.int32)


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
