"""Fishyscapes Lost & Found and Fishyscapes Static readers (official and bundle layouts)."""

from __future__ import annotations

import io
import zipfile
import re
from typing import ClassVar

import fsspec
import numpy as np
from numpy.lib import format as npformat

from schemas import cityscapes as cs
from schemas.codecs import DEFAULT_MAX_PIXELS
from evaluation.datasets.base import AnomalyDataset, LAF_SPLITS, SampleRef, SizeMismatchError, _BUNDLE_DESC, _Detector, _Dir, _EXPORTED_DESC, _LUT_ANOMALY, _bundle_refs, _has_dirs, _paired_refs, _resolve, _split_ext, map_label_values

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
        _check_declared_shape(data, "rgb", url)
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


def _check_declared_shape(data: bytes, name: str, url: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Read the ``.npy`` header of array ``name`` inside an npz and refuse, before anything is allocated, a shape
    that is not (H, W, 3) or holds more than ``max_pixels`` pixels (a small compressed file can declare a huge
    array).

    Raises:
        ValueError: Naming the file, the declared shape and the limit.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        member = f"{name}.npy"
        if member not in zf.namelist():
            return  # reported by the caller with the arrays found
        with zf.open(member) as f:
            version = npformat.read_magic(f)
            read_header = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
            shape, _, _ = read_header(f)
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"{url}: expected a numeric (H, W, 3) overlay 'rgb', the file declares shape {shape}")
    if shape[0] * shape[1] > max_pixels:
        raise ValueError(f"{url}: the overlay declares {shape[1]}x{shape[0]} = {shape[0] * shape[1]} pixels, more "
                         f"than the allowed {max_pixels} (possible decompression bomb); nothing was allocated")
