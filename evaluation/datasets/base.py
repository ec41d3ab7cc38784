"""Shared parts of the benchmark readers: the common label encoding, errors, sample records, label tables, file
helpers and the dataset base class with its root resolution and folder layouts."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import fsspec
import numpy as np

from schemas.codecs import DEFAULT_MAX_PIXELS, read_label, read_rgb

from schemas.labels import IGNORE, NUM_CLASSES, LabelValueError

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
