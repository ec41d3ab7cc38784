"""COCO instances: load and validate the annotation JSON, group it by image, decode masks, cut objects.

Pure functions (no Beam) at the core of the object-bank pipeline (:mod:`pipelines.bank`). Every annotation of
the JSON ends in exactly one of three outcomes:

* **kept**: an object-bank row (:data:`schemas.arrow.OBJECT_BANK`);
* **filtered** (a deliberate choice, counted): :data:`FILTER_REASONS`;
* **rejected** (an error in the input, written to the rejects file with its reason): :data:`REJECT_REASONS`.

Rules are applied in this order, the first that applies wins: ``invalid_annotation``, ``unknown_category``,
``excluded_category``, ``excluded_licence``, ``excluded_image``, ``crowd``, ``box_outside_image``, ``invalid_polygon`` /
``invalid_rle``, ``empty_mask``, ``too_small``, then, only for annotations still wanted, the image is read once
(``image_missing``, ``image_unreadable``, ``size_mismatch``). Images none of whose annotations survive the
pixel-free rules are never read. Annotations that cannot be grouped (``duplicate_annotation`` ids,
``unknown_image`` ids, records without an integer ``id``) are rejected while grouping, and so are those of an
``invalid_image`` record (no usable ``file_name``, one leaving the images folder, a size that is not positive
or that declares more pixels than :data:`schemas.codecs.DEFAULT_MAX_PIXELS`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
from pycocotools import mask as mask_utils

from schemas.codecs import DEFAULT_MAX_PIXELS, PNG_COMPRESS_LEVEL, ImageDecodeError, encode_png

DEFAULT_EXCLUDE: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "bus", "train", "truck", "traffic light", "stop sign",
)
"""COCO categories that overlap Cityscapes classes and so are not out-of-distribution."""

FILTER_REASONS: tuple[str, ...] = ("excluded_category", "excluded_licence", "excluded_image", "crowd", "empty_mask",
                                   "too_small")
"""Why an annotation was deliberately left out (counted, not rejected)."""

REJECT_REASONS: tuple[str, ...] = (
    "invalid_annotation", "duplicate_annotation", "unknown_image", "invalid_image", "unknown_category",
    "box_outside_image", "invalid_polygon", "invalid_rle", "image_missing", "image_unreadable", "size_mismatch",
)
"""Why an annotation could not be used (errors in the input; written to the rejects file)."""

STAGE = "coco"
"""Stage name recorded in reject records."""


@dataclass(frozen=True)
class CutRules:
    """The rules that decide which annotations become objects, and how they are cut.

    Attributes:
        categories: COCO category id -> name (the JSON's ``categories``).
        excluded_ids: Category ids that are never kept.
        exclude_images: Also drop every annotation of an image that contains an excluded category.
        keep_crowd: Keep ``iscrowd=1`` annotations (skipped by default).
        min_area: Smallest kept mask area in pixels.
        min_side: Smallest kept side (pixels) of the mask's tight box.
        margin: Crop margin around the box as a fraction of its longer side (at least 1 pixel when > 0).
        box_tolerance: How far (pixels) a COCO bbox may reach outside the image before it is rejected.
        png_level: zlib level of the stored PNGs.
        excluded_licences: COCO licence ids whose images give no object (an image of unknown licence neither,
            when any is given).
    """

    categories: Mapping[int, str]
    excluded_ids: frozenset[int] = frozenset()
    exclude_images: bool = False
    keep_crowd: bool = False
    min_area: int = 256
    min_side: int = 8
    margin: float = 0.1
    box_tolerance: float = 1.0
    png_level: int = PNG_COMPRESS_LEVEL
    excluded_licences: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if self.min_area < 0 or self.min_side < 0:
            raise ValueError(f"min_area and min_side must be >= 0, got {self.min_area} and {self.min_side}")
        if not 0.0 <= self.margin <= 2.0:
            raise ValueError(f"margin must be a fraction in [0, 2] of the box's longer side, got {self.margin}")
        if self.box_tolerance < 0:
            raise ValueError(f"box_tolerance must be >= 0 pixels, got {self.box_tolerance}")
        if not 0 <= self.png_level <= 9:
            raise ValueError(f"png_level must be in 0..9, got {self.png_level}")


@dataclass(frozen=True)
class Kept:
    """An annotation that became an object-bank row (``row`` has exactly the OBJECT_BANK fields)."""

    row: dict[str, Any]


@dataclass(frozen=True)
class Filtered:
    """An annotation left out on purpose; ``reason`` is one of :data:`FILTER_REASONS`."""

    annotation_id: int
    reason: str


@dataclass(frozen=True)
class Rejected:
    """An annotation that could not be used; ``reason`` is one of :data:`REJECT_REASONS`.

    Attributes:
        element: JSON-able identification of the annotation (ids, file).
        reason: Machine-readable reason.
        detail: Human-readable explanation naming the bad value.
    """

    element: dict[str, Any]
    reason: str
    detail: str


Outcome = Kept | Filtered | Rejected


class InvalidSegmentation(ValueError):
    """A segmentation that cannot be decoded; ``reason`` is ``invalid_polygon`` or ``invalid_rle``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------------------------------------------
# Loading and grouping


def read_instances(url: str) -> tuple[dict[str, Any], str]:
    """Read and structurally validate a COCO ``instances_*.json`` through fsspec.

    Args:
        url: fsspec URL or local path of the JSON.

    Returns:
        The parsed JSON, and the BLAKE2b-128 hex digest of the file's bytes (provenance).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not JSON, or lacks the ``images``, ``annotations`` and ``categories`` lists.
    """
    try:
        with fsspec.open(url, "rb") as f:
            raw = f.read()
    except FileNotFoundError as err:
        raise FileNotFoundError(f"COCO annotation file not found: {url}") from err
    digest = hashlib.blake2b(raw, digest_size=16).hexdigest()
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise ValueError(f"{url}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{url}: expected a JSON object with images, annotations and categories, "
                         f"found {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{url}: a COCO instances file needs a list {key!r}, "
                             f"found {type(data.get(key)).__name__}")
    return data, digest


def category_table(data: Mapping[str, Any], *, where: str = "annotations") -> dict[int, str]:
    """Category id -> name from the JSON's ``categories``.

    Raises:
        ValueError: For a category without an integer ``id`` and a string ``name``, or a duplicate id.
    """
    table: dict[int, str] = {}
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")) or not isinstance(cat.get("name"), str):
            raise ValueError(f"{where}: categories[{i}] needs an integer 'id' and a string 'name', got {cat!r}")
        cid = int(cat["id"])
        if cid in table:
            raise ValueError(f"{where}: duplicate category id {cid} ({table[cid]!r} and {cat['name']!r})")
        table[cid] = cat["name"]
    return table


def resolve_excluded(names: Iterable[str], categories: Mapping[int, str], *, strict: bool = True) -> frozenset[int]:
    """Category ids of the excluded category names.

    Args:
        names: Category names to exclude.
        categories: Category id -> name.
        strict: Raise for names the dataset does not have (typos); when False they are ignored (used for the
            default list, which names categories a small dataset may lack).

    Returns:
        The ids of every category whose name is in ``names``.

    Raises:
        ValueError: In strict mode, for a name that is not a category, listing the known names.
    """
    wanted = list(names)
    known = set(categories.values())
    unknown = [n for n in wanted if n not in known]
    if unknown and strict:
        raise ValueError(f"cannot exclude unknown categories {unknown}; the dataset's categories are "
                         f"{sorted(known)}")
    return frozenset(cid for cid, name in categories.items() if name in set(wanted))


def group_by_image(data: Mapping[str, Any], *, where: str = "annotations"
                   ) -> tuple[list[dict[str, Any]], list[Rejected], int]:
    """Group a COCO JSON's annotations by image, so that each image is read once.

    Args:
        data: Parsed instances JSON (see :func:`read_instances`).
        where: File name used in messages.

    Returns:
        ``(tasks, rejects, inputs)``: tasks sorted by image id, each
        ``{"image": {"id", "file_name", "width", "height"}, "annotations": [...]}`` with the annotations sorted
        by id (images without annotations are left out); rejects for annotations without an integer id, with
        a duplicate id (every occurrence after the first) or an unknown / malformed image; and the number of
        annotation records (the run's inputs).

    Raises:
        ValueError: For a duplicate image id.
    """
    licenses = _licenses(data.get("licenses"), where)
    images: dict[int, dict[str, Any] | str] = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not _is_int(img.get("id")):
            raise ValueError(f"{where}: images[{i}] has no integer 'id': {_short(img)}")
        iid = int(img["id"])
        if iid in images:
            raise ValueError(f"{where}: duplicate image id {iid}")
        problem = _image_record_problem(img)
        images[iid] = problem if problem else {
            "id": iid, "file_name": img["file_name"], "width": int(img["width"]), "height": int(img["height"]),
            **_provenance(img, licenses),
        }

    rejects: list[Rejected] = []
    seen: set[int] = set()
    by_image: dict[int, list[dict[str, Any]]] = {}
    annotations = data["annotations"]
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict) or not _is_int(ann.get("id")):
            rejects.append(Rejected({"index": i}, "invalid_annotation",
                                    f"annotations[{i}] has no integer 'id': {_short(ann)}"))
            continue
        aid = int(ann["id"])
        element = {"annotation_id": aid, "image_id": _jsonable(ann.get("image_id"))}
        if aid in seen:
            rejects.append(Rejected(element, "duplicate_annotation",
                                    f"annotation id {aid} occurs again at annotations[{i}]; the first is kept"))
            continue
        seen.add(aid)
        iid = ann.get("image_id")
        image = images.get(int(iid)) if _is_int(iid) else None
        if image is None:
            rejects.append(Rejected(element, "unknown_image",
                                    f"annotation {aid} refers to image_id {iid!r}, which is not in 'images'"))
        elif isinstance(image, str):
            rejects.append(Rejected(element, "invalid_image", f"annotation {aid}: image {iid} {image}"))
        else:
            by_image.setdefault(image["id"], []).append(ann)

    tasks = [
        {"image": images[iid], "annotations": sorted(anns, key=lambda a: int(a["id"]))}
        for iid, anns in sorted(by_image.items())
    ]
    return tasks, rejects, len(annotations)


PROVENANCE_FIELDS: tuple[str, ...] = ("license_id", "license_name", "license_url", "coco_url", "flickr_url")
"""Object-bank fields that say where an object's image came from and under which licence."""


def _licenses(records: Any, where: str) -> dict[int, tuple[str | None, str | None]]:
    """The json's ``licenses``: id -> (name, url). Absent is allowed (every licence is then unknown).

    Raises:
        ValueError: If it is not a list of records with integer ids.
    """
    if records is None:
        return {}
    if not isinstance(records, list):
        raise ValueError(f"{where}: 'licenses' must be a list, got {type(records).__name__}")
    out = {}
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not _is_int(rec.get("id")):
            raise ValueError(f"{where}: licenses[{i}] has no integer 'id': {_short(rec)}")
        name, url = rec.get("name"), rec.get("url")
        out[int(rec["id"])] = (name if isinstance(name, str) else None, url if isinstance(url, str) and url else None)
    return out


def _provenance(img: Mapping[str, Any], licenses: Mapping[int, tuple[str | None, str | None]]) -> dict[str, Any]:
    """An image's licence (id, and name / url from ``licenses``) and source URLs; ``None`` where unknown."""
    lid = int(img["license"]) if _is_int(img.get("license")) else None
    name, url = licenses.get(lid, (None, None)) if lid is not None else (None, None)

    def text(key: str) -> str | None:
        v = img.get(key)
        return v if isinstance(v, str) and v else None

    return {"license_id": lid, "license_name": name, "license_url": url, "coco_url": text("coco_url"),
            "flickr_url": text("flickr_url")}


def _image_record_problem(img: Mapping[str, Any], max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """Why an ``images`` record cannot be used ('' when it can): a missing or escaping ``file_name`` (absolute,
    a URL, or ``..``: it must stay inside the images folder), a size that is not positive, or one of more than
    ``max_pixels`` pixels (checked before any mask or image of that size is allocated)."""
    name = img.get("file_name")
    if not isinstance(name, str) or not name:
        return f"has no 'file_name' (got {name!r})"
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or "://" in name or ".." in parts or (len(name) > 1 and name[1] == ":"):
        return f"has file_name {name!r}, which leaves the images folder (it must be a relative path inside it)"
    for key in ("width", "height"):
        if not _is_int(img.get(key)) or int(img[key]) <= 0:
            return f"has no positive integer {key!r} (got {img.get(key)!r})"
    w, h = int(img["width"]), int(img["height"])
    if w * h > max_pixels:
        return (f"declares {w}x{h} = {w * h} pixels, more than the allowed {max_pixels} (possible decompression "
                "bomb); nothing of that size is allocated")
    return ""


# --------------------------------------------------------------------------------------------------------------
# Masks and boxes


def decode_segmentation(segm: Any, height: int, width: int) -> np.ndarray:
    """Decode a COCO segmentation (polygons, uncompressed or compressed RLE) with pycocotools.

    Args:
        segm: ``[[x0, y0, x1, y1, ...], ...]`` polygons, or ``{"counts": [...] | str, "size": [h, w]}``.
        height: Image height.
        width: Image width.

    Returns:
        uint8 mask (height, width), 1 inside the object.

    Raises:
        InvalidSegmentation: With reason ``invalid_polygon`` for polygon lists that are empty, have a polygon
            of fewer than 3 points, an odd number of coordinates or a non-finite / non-numeric coordinate, or
            that pycocotools refuses; ``invalid_rle`` for an RLE of another size, negative or non-integer
            counts, counts that do not sum to height*width, or undecodable compressed counts.
    """
    if isinstance(segm, list):
        if not segm:
            raise InvalidSegmentation("invalid_polygon", "empty polygon list")
        polys: list[list[float]] = []
        for j, poly in enumerate(segm):
            if not isinstance(poly, list):
                raise InvalidSegmentation("invalid_polygon", f"polygon {j} is a {type(poly).__name__}, not a list")
            if len(poly) < 6 or len(poly) % 2:
                raise InvalidSegmentation(
                    "invalid_polygon", f"polygon {j} has {len(poly)} coordinates; a polygon needs an even "
                    "number and at least 3 points (6 coordinates)")
            if not all(_is_number(v) and math.isfinite(v) for v in poly):
                bad = next(v for v in poly if not (_is_number(v) and math.isfinite(v)))
                raise InvalidSegmentation("invalid_polygon", f"polygon {j} has a non-finite or non-numeric "
                                          f"coordinate {bad!r}")
            polys.append([float(v) for v in poly])
        try:
            rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
        except Exception as err:  # pycocotools raises bare Exceptions
            raise InvalidSegmentation("invalid_polygon", f"pycocotools cannot rasterise the polygons: {err}") from err
    elif isinstance(segm, dict) and "counts" in segm and "size" in segm:
        size = segm["size"]
        if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
            raise InvalidSegmentation("invalid_rle", f"RLE size must be [height, width], got {size!r}")
        if [int(size[0]), int(size[1])] != [height, width]:
            raise InvalidSegmentation("invalid_rle", f"RLE size {size} differs from the image size "
                                      f"[{height}, {width}]")
        counts = segm["counts"]
        if isinstance(counts, list):
            if not all(_is_int(c) and c >= 0 for c in counts):
                raise InvalidSegmentation("invalid_rle", "uncompressed RLE counts must be non-negative integers")
            total = sum(int(c) for c in counts)
            if total != height * width:
                raise InvalidSegmentation("invalid_rle", f"uncompressed RLE counts sum to {total}, expected "
                                          f"height*width = {height * width}")
            try:
                rle = mask_utils.frPyObjects({"counts": [int(c) for c in counts], "size": [height, width]},
                                             height, width)
            except Exception as err:
                raise InvalidSegmentation("invalid_rle", f"pycocotools refuses the RLE: {err}") from err
        elif isinstance(counts, (str, bytes)):
            rle = {"counts": counts.encode("ascii") if isinstance(counts, str) else counts, "size": [height, width]}
            try:
                area = int(mask_utils.area(rle))
            except Exception as err:
                raise InvalidSegmentation("invalid_rle", f"compressed RLE counts cannot be decoded: {err}") from err
            if not 0 <= area <= height * width:
                raise InvalidSegmentation("invalid_rle", f"compressed RLE decodes to area {area}, outside "
                                          f"0..{height * width}")
        else:
            raise InvalidSegmentation("invalid_rle", f"RLE counts must be a list or a string, got "
                                      f"{type(counts).__name__}")
    else:
        raise InvalidSegmentation("invalid_polygon", f"segmentation must be a polygon list or an RLE dict, got "
                                  f"{_short(segm)}")
    try:
        mask = mask_utils.decode(rle)
    except Exception as err:
        raise InvalidSegmentation("invalid_rle" if isinstance(segm, dict) else "invalid_polygon",
                                  f"pycocotools cannot decode the mask: {err}") from err
    if mask.shape != (height, width):
        raise InvalidSegmentation("invalid_rle", f"mask decodes to {mask.shape}, expected {(height, width)}")
    return np.ascontiguousarray(mask, dtype=np.uint8)


def mask_extent(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box ``(x0, y0, x1, y1)`` (exclusive ends) of a mask's non-zero pixels, or None when empty.

    Args:
        mask: (H, W) array.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def crop_box(bbox: tuple[float, float, float, float], extent: tuple[int, int, int, int], margin: float,
             height: int, width: int) -> tuple[int, int, int, int]:
    """The crop of an object: the union of its COCO bbox and its mask extent, plus a margin, inside the image.

    Args:
        bbox: COCO ``(x, y, w, h)`` in pixels (floats).
        extent: Tight mask box ``(x0, y0, x1, y1)``, exclusive ends.
        margin: Fraction of the union's longer side added on every side (at least 1 pixel when > 0).
        height: Image height.
        width: Image width.

    Returns:
        ``(x0, y0, x1, y1)`` integer pixels, exclusive ends, clipped to the image, never empty when ``extent``
        is not.
    """
    x, y, w, h = bbox
    x0 = min(math.floor(x), extent[0])
    y0 = min(math.floor(y), extent[1])
    x1 = max(math.ceil(x + w), extent[2])
    y1 = max(math.ceil(y + h), extent[3])
    pad = max(1, math.ceil(margin * max(x1 - x0, y1 - y0))) if margin > 0 else 0
    return max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad)


# --------------------------------------------------------------------------------------------------------------
# One image -> outcomes


_Wanted = tuple[dict[str, Any], tuple[int, int, int, int], np.ndarray, float]
"""An annotation to cut: the annotation, its crop box (x0, y0, x1, y1), the mask in that box, the mask's area."""


def _select_annotation(ann: dict[str, Any], image: Mapping[str, Any], image_url: str, rules: CutRules,
                       excluded_here: bool) -> Outcome | _Wanted:
    """One annotation's fate before the image is read: a reject or filter outcome, or what to cut (the
    annotation, its crop box, the mask inside that box and the mask's area)."""
    height, width = int(image["height"]), int(image["width"])
    aid = int(ann["id"])
    element = {"annotation_id": aid, "image_id": image["id"], "category_id": _jsonable(ann.get("category_id")),
               "file": image_url}
    problem = _annotation_problem(ann)
    if problem:
        return Rejected(element, "invalid_annotation", f"annotation {aid}: {problem}")
    cid = int(ann["category_id"])
    if cid not in rules.categories:
        return Rejected(element, "unknown_category",
                        f"annotation {aid}: category_id {cid} is not in 'categories'")
    if cid in rules.excluded_ids:
        return Filtered(aid, "excluded_category")
    if rules.excluded_licences and (image.get("license_id") is None or image["license_id"] in rules.excluded_licences):
        return Filtered(aid, "excluded_licence")
    if excluded_here:
        return Filtered(aid, "excluded_image")
    if bool(ann.get("iscrowd", 0)) and not rules.keep_crowd:
        return Filtered(aid, "crowd")
    x, y, w, h = (float(v) for v in ann["bbox"])
    tol = rules.box_tolerance
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        return Rejected(element, "box_outside_image",
                        f"annotation {aid}: bbox {[x, y, w, h]} reaches outside the {width}x{height} "
                        f"image by more than {tol} px")
    try:
        mask = decode_segmentation(ann["segmentation"], height, width)
    except InvalidSegmentation as err:
        return Rejected(element, err.reason, f"annotation {aid}: {err}")
    extent = mask_extent(mask)
    if extent is None:
        return Filtered(aid, "empty_mask")
    area = int(mask.sum(dtype=np.int64))
    if area < rules.min_area or min(extent[2] - extent[0], extent[3] - extent[1]) < rules.min_side:
        return Filtered(aid, "too_small")
    box = crop_box((x, y, w, h), extent, rules.margin, height, width)
    return ann, box, mask[box[1]:box[3], box[0]:box[2]].copy(), float(area)


def cut_image_objects(
    task: Mapping[str, Any],
    rules: CutRules,
    image_url: str,
    read_image: Callable[[str], np.ndarray],
    style_stats: Callable[[np.ndarray], Any],
) -> list[Outcome]:
    """Decide every annotation of one image, reading and describing the image at most once.

    Args:
        task: One element of :func:`group_by_image`.
        rules: Selection and crop rules.
        image_url: URL of the image file.
        read_image: Decodes a URL to uint8 RGB (H, W, 3); raises FileNotFoundError for a missing file and
            :class:`schemas.codecs.ImageDecodeError` for an undecodable one (any other exception propagates,
            so that a runner retries transient storage errors).
        style_stats: Style statistics of the whole image, an object with ``to_record()`` giving the
            ``src_*`` fields (:func:`style_transfer.stats.image_style_stats`).

    Returns:
        One outcome per annotation, in annotation-id order (filtered and rejected ones first, then kept or
        image-level rejects, each group in id order).
    """
    image = task["image"]
    height, width = int(image["height"]), int(image["width"])
    anns = list(task["annotations"])
    excluded_here = rules.exclude_images and any(
        _is_int(a.get("category_id")) and int(a["category_id"]) in rules.excluded_ids for a in anns)

    outcomes: list[Outcome] = []
    wanted: list[_Wanted] = []
    for ann in anns:
        picked = _select_annotation(ann, image, image_url, rules, excluded_here)
        if isinstance(picked, tuple):
            wanted.append(picked)
        else:
            outcomes.append(picked)

    if not wanted:
        return outcomes

    def reject_all(reason: str, detail: str) -> list[Outcome]:
        return [Rejected({"annotation_id": int(a["id"]), "image_id": image["id"], "category_id": int(a["category_id"]),
                          "file": image_url}, reason, detail) for a, _, _, _ in wanted]

    try:
        rgb = read_image(image_url)
    except FileNotFoundError as err:
        return outcomes + reject_all("image_missing", str(err))
    except ImageDecodeError as err:
        return outcomes + reject_all("image_unreadable", str(err))
    if rgb.shape[:2] != (height, width):
        return outcomes + reject_all(
            "size_mismatch", f"{image_url}: the JSON says {width}x{height}, the file is {rgb.shape[1]}x{rgb.shape[0]}")

    src = style_stats(rgb).to_record()
    for ann, box, mask_crop, area in wanted:
        x0, y0, x1, y1 = box
        cid = int(ann["category_id"])
        row = {
            "object_id": int(ann["id"]),
            "image_id": int(image["id"]),
            "category_id": cid,
            "category_name": rules.categories[cid],
            "image": encode_png(np.ascontiguousarray(rgb[y0:y1, x0:x1]), compress_level=rules.png_level),
            "mask": encode_png(mask_crop, compress_level=rules.png_level),
            "height": y1 - y0,
            "width": x1 - x0,
            "crop_box": [x0, y0, x1, y1],
            "bbox": [float(v) for v in ann["bbox"]],
            "area": area,
            "iscrowd": bool(ann.get("iscrowd", 0)),
            "source_file": image_url,
            "source_height": height,
            "source_width": width,
            **src,
            **{k: image.get(k) for k in PROVENANCE_FIELDS},
        }
        outcomes.append(Kept(row))
    return outcomes


def _annotation_problem(ann: Mapping[str, Any]) -> str:
    if not _is_int(ann.get("category_id")):
        return f"'category_id' must be an integer, got {ann.get('category_id')!r}"
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) and math.isfinite(v) for v in bbox)):
        return f"'bbox' must be 4 finite numbers [x, y, w, h], got {_short(bbox)}"
    if bbox[2] < 0 or bbox[3] < 0:
        return f"'bbox' has a negative width or height: {bbox}"
    if ann.get("iscrowd", 0) not in (0, 1, True, False):
        return f"'iscrowd' must be 0 or 1, got {ann.get('iscrowd')!r}"
    if "segmentation" not in ann:
        return "no 'segmentation'"
    return ""


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, str)):
        return v
    if _is_int(v):
        return int(v)
    if _is_number(v):
        return float(v)
    return _short(v)


def _short(v: Any, limit: int = 120) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[:limit] + "..."
