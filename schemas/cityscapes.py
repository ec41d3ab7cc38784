"""Reader of the official Cityscapes on-disk layout through fsspec.

The layout (``cityscapesScripts`` conventions)::

    <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png   (made by createTrainIdLabelImgs)
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_color.png

``root`` may be a local path or any fsspec URL (``memory://...``, ``s3://...``). The synthetic city written by
``stylepaste world`` and the real dataset are read by the same code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import fsspec
import numpy as np

from schemas.codecs import read_label, read_rgb
from schemas.labels import IGNORE, NUM_CLASSES, LabelValueError, label_ids_to_train_ids

SPLITS: tuple[str, ...] = ("train", "val", "test", "train_extra")
"""Split folder names used by Cityscapes (``train_extra`` holds the coarse-only frames)."""

IMAGE_SUFFIX: str = "_leftImg8bit.png"
_FRAME_RE = re.compile(r"^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})_leftImg8bit\.png$")


@dataclass(frozen=True)
class CityscapesFrame:
    """One Cityscapes frame and the URLs of its files.

    Attributes:
        frame_id: ``"<city>_<seq>_<frame>"``, e.g. ``"aachen_000000_000019"``.
        city: City folder name.
        split: Split folder name (``train``, ``val``, ...).
        image_url: ``*_leftImg8bit.png``.
        label_ids_url: ``*_gtFine_labelIds.png``.
        train_ids_url: ``*_gtFine_labelTrainIds.png`` (the file may not exist; then trainIds are derived).
        instance_ids_url: ``*_gtFine_instanceIds.png``.
        color_url: ``*_gtFine_color.png``.
    """

    frame_id: str
    city: str
    split: str
    image_url: str
    label_ids_url: str
    train_ids_url: str
    instance_ids_url: str
    color_url: str


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def frame_paths(root: str, split: str, city: str, frame_id: str) -> CityscapesFrame:
    """Build the record of one frame from its parts (no file system access).

    Args:
        root: Dataset root (local path or fsspec URL).
        split: Split folder name.
        city: City folder name.
        frame_id: ``"<city>_<seq>_<frame>"``.

    Returns:
        The :class:`CityscapesFrame` with all URLs filled in.
    """
    gt = _join(root, "gtFine", split, city, frame_id)
    return CityscapesFrame(
        frame_id=frame_id,
        city=city,
        split=split,
        image_url=_join(root, "leftImg8bit", split, city, frame_id + IMAGE_SUFFIX),
        label_ids_url=gt + "_gtFine_labelIds.png",
        train_ids_url=gt + "_gtFine_labelTrainIds.png",
        instance_ids_url=gt + "_gtFine_instanceIds.png",
        color_url=gt + "_gtFine_color.png",
    )


def list_frames(root: str, split: str) -> list[CityscapesFrame]:
    """List the frames of one split, sorted by ``frame_id``.

    Frames are found from ``leftImg8bit/<split>/<city>/*_leftImg8bit.png``; the ``gtFine`` URLs are derived
    from them (their existence is checked when they are read).

    Args:
        root: Dataset root, a local path or an fsspec URL (``memory://bucket/cityscapes``).
        split: Split folder name, usually ``train`` or ``val``.

    Returns:
        The frames, sorted by ``frame_id``.

    Raises:
        FileNotFoundError: If ``<root>/leftImg8bit/<split>`` does not exist or holds no frame.
        ValueError: If ``split`` is empty or contains a path separator.
    """
    if not split or "/" in split or "\\" in split:
        raise ValueError(f"split must be a single folder name such as {SPLITS}, got {split!r}")
    fs, base = fsspec.core.url_to_fs(str(root))
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    img_dir = _join(base, "leftImg8bit", split)
    if not fs.isdir(img_dir):
        raise FileNotFoundError(
            f"Cityscapes split folder not found: {_join(str(root), 'leftImg8bit', split)} "
            f"(expected <root>/leftImg8bit/<split>/<city>/*{IMAGE_SUFFIX})"
        )
    frames: list[CityscapesFrame] = []
    for path in fs.glob(_join(img_dir, "*", "*" + IMAGE_SUFFIX)):
        path = str(path)
        name = path.rsplit("/", 1)[-1]
        city = path.rsplit("/", 2)[-2]
        m = _FRAME_RE.match(name)
        if m is None or m.group("city") != city:
            continue
        frame_id = name[: -len(IMAGE_SUFFIX)]
        frames.append(frame_paths(str(root), split, city, frame_id))
    if not frames:
        raise FileNotFoundError(
            f"no Cityscapes frames in {_join(str(root), 'leftImg8bit', split)} "
            f"(expected <city>/<city>_<seq:06d>_<frame:06d>{IMAGE_SUFFIX}); protocol {protocol!r}"
        )
    frames.sort(key=lambda f: f.frame_id)
    return frames


def read_image(frame: CityscapesFrame) -> np.ndarray:
    """Read the frame's RGB image.

    Args:
        frame: The frame.

    Returns:
        uint8 array (H, W, 3).

    Raises:
        FileNotFoundError: Naming the missing file.
        schemas.codecs.ImageDecodeError: If the file cannot be decoded.
    """
    return read_rgb(frame.image_url)


def _read_single_channel(url: str, kind: str) -> np.ndarray:
    arr = read_label(url)
    if arr.ndim != 2:
        raise ValueError(f"{url}: expected a single-channel {kind} map, got shape {arr.shape}")
    return arr


def read_label_ids(frame: CityscapesFrame) -> np.ndarray:
    """Read the frame's ``labelIds`` map.

    Args:
        frame: The frame.

    Returns:
        uint8 array (H, W) of Cityscapes labelIds (0..33).

    Raises:
        FileNotFoundError: Naming the missing ``*_gtFine_labelIds.png``.
        ValueError: If the file holds values outside 0..255.
    """
    arr = _read_single_channel(frame.label_ids_url, "labelIds")
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(
                f"{frame.label_ids_url}: labelIds must lie in 0..255, found {int(arr.min())}..{int(arr.max())}"
            )
        arr = arr.astype(np.uint8)
    return arr


def check_train_ids(arr: np.ndarray, name: str) -> None:
    """Refuse a trainId map with a value that is neither a train class (0..18) nor 255 (ignore).

    Raises:
        LabelValueError: Naming the file and the values found.
    """
    flat = np.asarray(arr).ravel()
    allowed = f"allowed values are {{0..{NUM_CLASSES - 1}, {IGNORE}}}"
    if flat.size == 0:
        return
    if flat.min() < 0 or flat.max() > 255:
        raise LabelValueError(f"{name}: unexpected label values in range {int(flat.min())}..{int(flat.max())} for "
                              f"labelTrainIds; {allowed}")
    counts = np.bincount(flat.astype(np.uint8, copy=False), minlength=256)
    counts[:NUM_CLASSES] = 0
    counts[IGNORE] = 0
    bad = np.flatnonzero(counts)
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:16]) + (", ..." if bad.size > 16 else "")
        raise LabelValueError(f"{name}: unexpected label values [{shown}] ({int(counts.sum())} pixels) for "
                              f"labelTrainIds; {allowed}")


def read_train_ids(frame: CityscapesFrame) -> np.ndarray:
    """Read the frame's ``trainIds``: the shipped ``labelTrainIds`` file, else converted ``labelIds``.

    Args:
        frame: The frame.

    Returns:
        uint8 array (H, W) with trainIds 0..18 and 255 (ignore).

    Raises:
        FileNotFoundError: If neither ``*_gtFine_labelTrainIds.png`` nor ``*_gtFine_labelIds.png`` exists
            (the message names both).
        LabelValueError: If the ``labelTrainIds`` file holds a value that is neither a train class nor 255.
    """
    fs, path = fsspec.core.url_to_fs(frame.train_ids_url)
    if fs.exists(path):
        arr = _read_single_channel(frame.train_ids_url, "labelTrainIds")
        check_train_ids(arr, frame.train_ids_url)
        return arr.astype(np.uint8) if arr.dtype != np.uint8 else arr
    try:
        return label_ids_to_train_ids(read_label_ids(frame))
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"no ground truth for frame {frame.frame_id}: neither {frame.train_ids_url} nor "
            f"{frame.label_ids_url} exists"
        ) from err


def read_instance_ids(frame: CityscapesFrame) -> np.ndarray:
    """Read the frame's ``instanceIds`` map.

    Args:
        frame: The frame.

    Returns:
        Integer array (H, W): labelId for stuff, ``labelId * 1000 + k`` for thing instances.

    Raises:
        FileNotFoundError: Naming the missing ``*_gtFine_instanceIds.png``.
    """
    return _read_single_channel(frame.instance_ids_url, "instanceIds")
