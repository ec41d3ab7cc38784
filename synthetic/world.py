"""``stylepaste world``: write a small synthetic dataset in the real on-disk formats.

Three parts are written under ``--out``:

* ``cityscapes/``: driving scenes in the official Cityscapes layout (``leftImg8bit`` + ``gtFine`` labelIds,
  labelTrainIds, instanceIds, color) for the ``train`` and ``val`` splits;
* ``coco/``: COCO-like photographs (``train2017/<12-digit id>.jpg``) and ``annotations/instances_train2017.json``
  with polygons, crowd RLEs and the real COCO category list, including categories that overlap Cityscapes;
* ``fishyscapes_lostandfound/``: test frames with small unknown objects on the road, in the Fishyscapes
  "Validation_Dataset" bundle layout (``FS_LostFound_full/images/<i>.png`` + ``labels_masks/<i>.png`` with
  0 = in-distribution, 1 = anomaly, 255 = void).

The COCO-like photographs come from a different "camera" (front-left studio light, saturated colours, hard
sharpened edges, blotchy chroma noise, stronger JPEG) than the city (sun from the side or behind, five scene
styles, lens blur, luminance noise, mild JPEG), while the test anomalies are rendered inside city frames
before the city's camera. An unaligned paste therefore carries camera cues that a network can learn as a
shortcut, which is the gap style alignment has to close.

Every frame and photograph is drawn from ``rng_for(seed, key)`` with its own key, so the files are
byte-identical for a given seed whatever the number of workers.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field

import fsspec
import numpy as np

from schemas.codecs import encode_png
from schemas.labels import IGNORE, NUM_CLASSES, TRAIN_CLASSES, colorize_label_ids, label_ids_to_train_ids
from schemas.rng import rng_for, stable_hash
from synthetic.city import render_city_frame
from synthetic.coco import CAT_ID, COCO_CATEGORIES, render_coco_photo

TRAIN_CITIES: tuple[str, ...] = ("ashbourne", "brackwater", "coldmere", "dunholt")
"""Invented city names of the train split."""
VAL_CITIES: tuple[str, ...] = ("eastwick", "fernlow")
"""Invented city names of the val split (disjoint from train, as in Cityscapes)."""
FRAME_NUMBER: int = 19
"""Frame number of every annotated frame (Cityscapes annotates the 20th frame of each snippet)."""
FISHY_TOP_VOID: float = 0.05
"""Fraction of rows at the top of each anomaly frame marked void (255), as in the real bundle."""
VOID_LABEL_IDS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
"""Cityscapes void labelIds that become 255 in the anomaly labels."""
PARTS: tuple[str, ...] = ("cityscapes", "coco", "fishyscapes_lostandfound")
MIN_ANOMALY_PIXELS: int = 4
"""Fewest anomaly pixels an anomaly frame must show; otherwise the scene is drawn again with a new key."""
MAX_ANOMALY_ATTEMPTS: int = 8
ANOMALY_SCALE: float = 3.5
"""Default factor on the test anomalies' physical size, calibrated so that their longest sides span as many cells
of the default model's 1/8 features at 256x512 as the Fishyscapes Lost&Found obstacles span of WRN38's 1/8
features at 2048x1024 (21-62 px there, 2.6-7.8 cells; measured on the real label masks by
``benchmarks/anomaly_extents.py``). A real frame has 16 times the pixels of a default synthetic one, so the
objects are bigger in the world's metres than real lost cargo; in feature cells, which is what a segmentation
head sees, they match."""
FEATURE_STRIDE: int = 8
"""Output stride of the model whose feature cells the world's summary counts (the default ``small`` model and
the public WRN38 / R101 models all have 8)."""


def component_extents(mask: np.ndarray) -> list[tuple[int, int]]:
    """Longest bounding-box side and area (pixels) of each 8-connected component of a boolean mask.

    Args:
        mask: bool (H, W).

    Returns:
        ``[(longest side, area), ...]`` in component label order (row-major first pixel).
    """
    from scipy import ndimage

    lab, n = ndimage.label(np.asarray(mask, dtype=bool), structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return []
    areas = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    return [(max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start), int(a))
            for sl, a in zip(ndimage.find_objects(lab), areas)]


def extent_summary(extents: list[tuple[int, int]], stride: int) -> dict[str, float]:
    """Quantiles of component extents in feature cells of a given stride.

    Args:
        extents: ``(longest side, area)`` pairs in pixels (:func:`component_extents`).
        stride: Feature stride in pixels per cell.

    Returns:
        ``{"objects", "stride", "longest_cells": {"min", "p10", "median", "p90", "max"}, "sqrt_area_cells":
        {...}}``; the quantiles are NaN without objects.
    """
    longest = np.asarray([e[0] for e in extents], dtype=np.float64) / stride
    side = np.sqrt(np.asarray([e[1] for e in extents], dtype=np.float64)) / stride

    def q(a: np.ndarray) -> dict[str, float]:
        if a.size == 0:
            return {k: math.nan for k in ("min", "p10", "median", "p90", "max")}
        return {"min": float(a.min()), "p10": float(np.percentile(a, 10)), "median": float(np.median(a)),
                "p90": float(np.percentile(a, 90)), "max": float(a.max())}

    return {"objects": len(extents), "stride": int(stride), "longest_cells": q(longest), "sqrt_area_cells": q(side)}


@dataclass(frozen=True)
class WorldConfig:
    """Settings of ``stylepaste world``.

    Attributes:
        out: Output root (local path or fsspec URL).
        seed: Run seed; same seed, same bytes.
        train: Number of Cityscapes-like train frames.
        val: Number of Cityscapes-like val frames.
        anomaly: Number of Fishyscapes-like anomaly frames.
        height: Frame height H in pixels.
        width: Frame width W in pixels.
        coco_images: Number of COCO-like photographs.
        coco_min_side: Smallest side of a photograph.
        coco_max_side: Largest side of a photograph.
        anomaly_scale: Factor on the test anomalies' physical size (:data:`ANOMALY_SCALE`).
        workers: Worker processes (0 = all CPU cores, 1 = in-process).
        overwrite: Replace existing parts under ``out`` instead of refusing.
    """

    out: str
    seed: int = 0
    train: int = 300
    val: int = 50
    anomaly: int = 100
    height: int = 256
    width: int = 512
    coco_images: int = 120
    coco_min_side: int = 320
    coco_max_side: int = 480
    anomaly_scale: float = ANOMALY_SCALE
    workers: int = 0
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not str(self.out):
            raise ValueError("out must be a non-empty path or URL")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        for name in ("train", "val", "anomaly", "coco_images", "workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (32 <= self.height <= 4096 and 64 <= self.width <= 8192):
            raise ValueError(f"frame size must be 32..4096 x 64..8192 (H x W), got {self.height}x{self.width}")
        if not 0.1 <= self.anomaly_scale <= 20.0:
            raise ValueError(f"anomaly_scale must be in [0.1, 20], got {self.anomaly_scale}")
        if not 64 <= self.coco_min_side <= self.coco_max_side <= 4096:
            raise ValueError("photograph sides must satisfy 64 <= coco_min_side <= coco_max_side <= 4096, got "
                             f"{self.coco_min_side}..{self.coco_max_side}")


@dataclass(frozen=True)
class WorldSummary:
    """What :func:`generate_world` wrote.

    Attributes:
        out: Output root.
        files: Number of files written per part.
        frames: Number of frames / photographs per part and split.
        class_pixel_frequency: Fraction of all Cityscapes-like pixels per train class (ignore included in
            the denominator).
        classes_present: Number of train classes that occur at all.
        category_counts: Non-crowd annotations per COCO category name.
        crowd_annotations: Number of ``iscrowd: 1`` annotations.
        anomaly_pixel_fraction: Anomaly pixels / non-void pixels in the anomaly set.
        anomaly_extents: :func:`extent_summary` of the anomaly set's objects (8-connected components) in cells
            of :data:`FEATURE_STRIDE`.
        styles: Frames per scene style.
        seconds: Wall-clock time of the run.
    """

    out: str
    files: dict[str, int]
    frames: dict[str, int]
    class_pixel_frequency: dict[str, float]
    classes_present: int
    category_counts: dict[str, int]
    crowd_annotations: int
    anomaly_pixel_fraction: float
    anomaly_extents: dict = field(default_factory=dict)
    styles: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------------- tasks
def city_frame_id(split: str, index: int) -> tuple[str, str]:
    """City and frame id of the ``index``-th frame of a split.

    Args:
        split: ``train`` or ``val``.
        index: Frame index within the split.

    Returns:
        ``(city, "<city>_<seq:06d>_<frame:06d>")``.
    """
    cities = TRAIN_CITIES if split == "train" else VAL_CITIES
    city = cities[index % len(cities)]
    return city, f"{city}_{index // len(cities):06d}_{FRAME_NUMBER:06d}"


def _city_task(seed: int, split: str, index: int, height: int, width: int) -> dict:
    city, fid = city_frame_id(split, index)
    frame = render_city_frame(rng_for(seed, ("cityscapes", split, index)), height, width)
    train_ids = label_ids_to_train_ids(frame.label_ids)
    gt = f"cityscapes/gtFine/{split}/{city}/{fid}_gtFine_"
    files = [
        (f"cityscapes/leftImg8bit/{split}/{city}/{fid}_leftImg8bit.png", encode_png(frame.image, compress_level=3)),
        (gt + "labelIds.png", encode_png(frame.label_ids, compress_level=6)),
        (gt + "labelTrainIds.png", encode_png(train_ids, compress_level=6)),
        (gt + "instanceIds.png", encode_png(frame.instance_ids, compress_level=6)),
        (gt + "color.png", encode_png(colorize_label_ids(frame.label_ids), compress_level=6)),
    ]
    hist = np.bincount(train_ids.reshape(-1), minlength=256)
    return {"part": "cityscapes", "files": files, "hist": hist, "style": frame.style}


def fishyscapes_labels(label_ids: np.ndarray, anomaly: np.ndarray) -> np.ndarray:
    """Fishyscapes labels of an anomaly frame: 1 anomaly, 255 void, 0 in-distribution.

    Void is the ego vehicle and other Cityscapes void labels, plus the top :data:`FISHY_TOP_VOID` of rows.

    Args:
        label_ids: uint8 (H, W) labelIds of the frame.
        anomaly: bool (H, W) anomaly pixels.

    Returns:
        uint8 (H, W) with values in {0, 1, 255}.
    """
    out = np.zeros(label_ids.shape, dtype=np.uint8)
    out[np.isin(label_ids, VOID_LABEL_IDS)] = 255
    out[: int(round(FISHY_TOP_VOID * label_ids.shape[0]))] = 255
    out[anomaly] = 1
    return out


def _anomaly_task(seed: int, index: int, height: int, width: int, anomaly_scale: float = 1.0) -> dict:
    # Redraw (with a new key) the rare scene in which every anomaly ended up hidden or sub-pixel.
    for attempt in range(MAX_ANOMALY_ATTEMPTS):
        rng = rng_for(seed, ("fishyscapes", index) if attempt == 0 else ("fishyscapes", index, attempt))
        n = int(rng.choice([1, 1, 2, 2, 3]))
        frame = render_city_frame(rng, height, width, n_anomalies=n, anomaly_scale=anomaly_scale)
        lab = fishyscapes_labels(frame.label_ids, frame.anomaly)
        if int((lab == 1).sum()) >= MIN_ANOMALY_PIXELS:
            break
    base = "fishyscapes_lostandfound/FS_LostFound_full"
    files = [(f"{base}/images/{index}.png", encode_png(frame.image, compress_level=3)),
             (f"{base}/labels_masks/{index}.png", encode_png(lab, compress_level=6))]
    return {"part": "fishyscapes_lostandfound", "files": files, "anomaly_px": int((lab == 1).sum()),
            "valid_px": int((lab != 255).sum()), "style": frame.style, "extents": component_extents(lab == 1)}


COCO_LICENSES: tuple[tuple[int, str, str], ...] = (
    (1, "Attribution-NonCommercial-ShareAlike License", "http://creativecommons.org/licenses/by-nc-sa/2.0/"),
    (2, "Attribution-NonCommercial License", "http://creativecommons.org/licenses/by-nc/2.0/"),
    (3, "Attribution-NonCommercial-NoDerivs License", "http://creativecommons.org/licenses/by-nc-nd/2.0/"),
    (4, "Attribution License", "http://creativecommons.org/licenses/by/2.0/"),
    (5, "Attribution-ShareAlike License", "http://creativecommons.org/licenses/by-sa/2.0/"),
    (6, "Attribution-NoDerivs License", "http://creativecommons.org/licenses/by-nd/2.0/"),
    (7, "No known copyright restrictions", "http://flickr.com/commons/usage/"),
    (8, "United States Government Work", "http://www.usa.gov/copyright.shtml"),
)
"""The ``licenses`` list of the official COCO 2017 annotations (ids 1-3 are NonCommercial). The synthetic
photographs are procedurally generated; each is labelled with one of these so that licence provenance and
licence filters can be exercised end to end as on real COCO."""


def photo_license(seed: int, index: int) -> int:
    """The COCO licence id given to photograph ``index`` (a hash of seed and index: no draw from the photo's
    random stream, so its pixels do not depend on it)."""
    return 1 + stable_hash(("license", int(seed), int(index))) % len(COCO_LICENSES)


def coco_image_id(index: int) -> int:
    """COCO image id of the ``index``-th photograph."""
    return index + 1


def _coco_task(seed: int, index: int, min_side: int, max_side: int) -> dict:
    from pycocotools import mask as mask_utils

    photo = render_coco_photo(rng_for(seed, ("coco", index)), index, min_side, max_side)
    image_id = coco_image_id(index)
    name = f"{image_id:012d}.jpg"
    image = {"license": photo_license(seed, index), "file_name": name, "coco_url": "", "height": photo.height, "width": photo.width,
             "date_captured": "2026-01-01 00:00:00", "flickr_url": "", "id": image_id}
    anns = []
    for k, obj in enumerate(photo.objects):
        if obj.iscrowd:
            rle = mask_utils.frPyObjects(obj.segmentation, photo.height, photo.width)
            area = int(mask_utils.area(rle))
        else:
            rle = mask_utils.merge(mask_utils.frPyObjects(obj.segmentation, photo.height, photo.width))
            area = float(mask_utils.area(rle))
        bbox = [round(float(v), 2) for v in mask_utils.toBbox(rle)]
        anns.append({"segmentation": obj.segmentation, "area": area, "iscrowd": int(obj.iscrowd),
                     "image_id": image_id, "bbox": bbox, "category_id": CAT_ID[obj.category],
                     "id": image_id * 1000 + k})
    return {"part": "coco", "files": [(f"coco/train2017/{name}", photo.jpeg)], "image": image,
            "annotations": anns}


def _run_task(task: tuple) -> dict:
    kind = task[0]
    if kind == "city":
        return _city_task(*task[1:])
    if kind == "anomaly":
        return _anomaly_task(*task[1:])
    if kind == "coco":
        return _coco_task(*task[1:])
    raise ValueError(f"unknown task kind {kind!r}")


def _worker_init() -> None:
    # Rendering is numpy-bound; one thread per process keeps several processes from oversubscribing cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# -------------------------------------------------------------------------------------------------- run
def coco_json(images: list[dict], annotations: list[dict]) -> dict:
    """Assemble a COCO instances document with the full real category list.

    Args:
        images: Image entries.
        annotations: Annotation entries.

    Returns:
        The document (info, licenses, images, annotations, categories).
    """
    return {
        "info": {"description": "stylepaste synthetic world: COCO-like photographs", "url": "",
                 "version": "1.0", "year": 2026, "contributor": "stylepaste world",
                 "date_created": "2026/01/01"},
        "licenses": [{"url": url, "id": lid, "name": name} for lid, name, url in COCO_LICENSES],
        "images": images,
        "annotations": annotations,
        "categories": [{"supercategory": sup, "id": cid, "name": name} for cid, name, sup in COCO_CATEGORIES],
    }


def _tasks(cfg: WorldConfig) -> list[tuple]:
    tasks: list[tuple] = []
    tasks += [("city", cfg.seed, "train", i, cfg.height, cfg.width) for i in range(cfg.train)]
    tasks += [("city", cfg.seed, "val", i, cfg.height, cfg.width) for i in range(cfg.val)]
    tasks += [("anomaly", cfg.seed, i, cfg.height, cfg.width, cfg.anomaly_scale) for i in range(cfg.anomaly)]
    tasks += [("coco", cfg.seed, i, cfg.coco_min_side, cfg.coco_max_side) for i in range(cfg.coco_images)]
    return tasks


def _write(fs, root: str, rel: str, data: bytes, made_dirs: set[str]) -> None:
    """Write one file of the world under ``root``, creating its folder once."""
    d = f"{root}/{rel.rsplit('/', 1)[0]}"
    if d not in made_dirs:
        fs.makedirs(d, exist_ok=True)
        made_dirs.add(d)
    fs.pipe_file(f"{root}/{rel}", data)


class _Tally:
    """What the world's tasks produced, added up in task order: files per part, label histogram, styles, anomaly
    pixels and extents, COCO images and annotations."""

    def __init__(self) -> None:
        self.files: Counter = Counter()
        self.styles: Counter = Counter()
        self.hist = np.zeros(256, dtype=np.int64)
        self.anomaly_px = self.valid_px = 0
        self.extents: list[tuple[int, int]] = []
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.made_dirs: set[str] = set()

    def add(self, res: dict, write) -> None:
        """Write the files of one task result with ``write(rel, data)`` and add up its statistics."""
        for rel, data in res["files"]:
            write(rel, data)
            self.files[res["part"]] += 1
        if "hist" in res:
            self.hist += res["hist"]
        if "style" in res:
            self.styles[res["style"]] += 1
        if res["part"] == "fishyscapes_lostandfound":
            self.anomaly_px += res["anomaly_px"]
            self.valid_px += res["valid_px"]
            self.extents.extend(tuple(e) for e in res["extents"])
        if res["part"] == "coco":
            self.images.append(res["image"])
            self.annotations.extend(res["annotations"])

    def summary(self, cfg: WorldConfig) -> WorldSummary:
        """The run's summary (``seconds`` 0)."""
        hist = self.hist
        total = int(hist.sum())
        freq = {name: (float(hist[i]) / total if total else 0.0) for i, name in enumerate(TRAIN_CLASSES)}
        freq["ignore"] = float(hist[IGNORE]) / total if total else 0.0
        names = {cid: name for cid, name, _ in COCO_CATEGORIES}
        cat_counts = Counter(names[a["category_id"]] for a in self.annotations if not a["iscrowd"])
        return WorldSummary(
            out=str(cfg.out),
            files={p: int(self.files[p]) for p in PARTS},
            frames={"cityscapes/train": cfg.train, "cityscapes/val": cfg.val, "coco/train2017": cfg.coco_images,
                    "fishyscapes_lostandfound": cfg.anomaly},
            class_pixel_frequency=freq,
            classes_present=int(sum(1 for i in range(NUM_CLASSES) if hist[i] > 0)),
            category_counts=dict(sorted(cat_counts.items())),
            crowd_annotations=int(sum(a["iscrowd"] for a in self.annotations)),
            anomaly_pixel_fraction=float(self.anomaly_px) / self.valid_px if self.valid_px else 0.0,
            anomaly_extents=extent_summary(self.extents, FEATURE_STRIDE),
            styles=dict(sorted(self.styles.items())),
            seconds=0.0,
        )



def generate_world(cfg: WorldConfig, progress: bool = False) -> WorldSummary:
    """Write the synthetic world described by ``cfg``.

    Args:
        cfg: Settings.
        progress: Show a progress bar on stderr.

    Returns:
        Counts, class frequencies and timing of what was written.

    Raises:
        FileExistsError: If a part already exists under ``cfg.out`` and ``cfg.overwrite`` is False.
    """
    t0 = time.perf_counter()
    fs, root = fsspec.core.url_to_fs(str(cfg.out))
    root = root.rstrip("/")
    existing = [p for p in PARTS if fs.exists(f"{root}/{p}")]
    if existing and not cfg.overwrite:
        raise FileExistsError(f"{cfg.out} already holds {', '.join(existing)}; pass --overwrite to replace them")
    for p in existing:
        fs.rm(f"{root}/{p}", recursive=True)
    fs.makedirs(root, exist_ok=True)

    tasks = _tasks(cfg)
    workers = cfg.workers or (os.cpu_count() or 1)
    workers = max(1, min(workers, len(tasks) or 1))
    if workers == 1:
        results = map(_run_task, tasks)
        pool = None
    else:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_init)
        results = pool.map(_run_task, tasks, chunksize=max(1, min(8, len(tasks) // (workers * 4) or 1)))
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=len(tasks), desc="world", unit="item", file=sys.stderr)

    tally = _Tally()
    try:
        for res in results:
            tally.add(res, lambda rel, data: _write(fs, root, rel, data, tally.made_dirs))
    finally:
        if pool is not None:
            pool.shutdown()

    if cfg.coco_images:
        fs.makedirs(f"{root}/coco/annotations", exist_ok=True)
        doc = coco_json(tally.images, tally.annotations)
        fs.pipe_file(f"{root}/coco/annotations/instances_train2017.json",
                     json.dumps(doc, separators=(",", ":")).encode("utf-8"))
        tally.files["coco"] += 1
    summary = tally.summary(cfg)
    # A record of what was written, without timing so that it is byte-identical across runs.
    record = {"config": {k: v for k, v in asdict(cfg).items() if k not in ("out", "workers", "overwrite")},
              "summary": {k: v for k, v in asdict(summary).items() if k not in ("out", "seconds")}}
    fs.pipe_file(f"{root}/world.json", json.dumps(record, indent=1, sort_keys=True).encode("utf-8"))
    return WorldSummary(**{**asdict(summary), "seconds": time.perf_counter() - t0})


def format_summary(s: WorldSummary) -> str:
    """Human-readable report of a run."""
    lines = [f"stylepaste world: wrote {sum(s.files.values())} files to {s.out} in {s.seconds:.1f} s"]
    lines.append(f"  {s.out}/cityscapes/               {s.frames['cityscapes/train']} train + "
                 f"{s.frames['cityscapes/val']} val frames ({s.files['cityscapes']} files: leftImg8bit, gtFine "
                 "labelIds/labelTrainIds/instanceIds/color)")
    lines.append(f"  {s.out}/coco/                     {s.frames['coco/train2017']} photographs in train2017/ + "
                 f"annotations/instances_train2017.json ({sum(s.category_counts.values())} objects, "
                 f"{s.crowd_annotations} crowd regions)")
    lines.append(f"  {s.out}/fishyscapes_lostandfound/ {s.frames['fishyscapes_lostandfound']} anomaly frames in "
                 f"FS_LostFound_full/images|labels_masks (anomaly = {100 * s.anomaly_pixel_fraction:.2f} % of "
                 "non-void pixels)")
    if s.anomaly_extents.get("objects"):
        e = s.anomaly_extents
        lo, ar = e["longest_cells"], e["sqrt_area_cells"]
        lines.append(f"  anomaly extents ({e['objects']} objects, cells of 1/{e['stride']} features): longest side "
                     f"median {lo['median']:.1f} (p10 {lo['p10']:.1f}, p90 {lo['p90']:.1f}), sqrt(area) median "
                     f"{ar['median']:.1f} (p10 {ar['p10']:.1f}, p90 {ar['p90']:.1f})")
    lines.append(f"  scene styles: {', '.join(f'{k} {v}' for k, v in s.styles.items())}")
    lines.append(f"  train classes present: {s.classes_present}/{NUM_CLASSES}; pixel share: "
                 + ", ".join(f"{k} {100 * v:.1f}%" for k, v in s.class_pixel_frequency.items() if v > 0))
    lines.append("  COCO categories: " + ", ".join(f"{k} {v}" for k, v in s.category_counts.items()))
    lines.append(f"  record of the run: {s.out}/world.json")
    return "\n".join(lines)


def add_world_size_arguments(p: argparse.ArgumentParser, d) -> None:
    """Add the synthetic city's size options (frames per split, frame size, photographs) to a parser.

    Args:
        p: Parser to extend.
        d: Object with the defaults as attributes ``train``, ``val``, ``anomaly``, ``height``, ``width`` and
            ``coco_images`` (a :class:`WorldConfig` or a config that embeds one).
    """
    p.add_argument("--train", type=int, default=d.train, help="Cityscapes-like train frames")
    p.add_argument("--val", type=int, default=d.val, help="Cityscapes-like val frames")
    p.add_argument("--anomaly", type=int, default=d.anomaly, help="Fishyscapes-like anomaly frames")
    p.add_argument("--height", type=int, default=d.height, help="frame height in pixels")
    p.add_argument("--width", type=int, default=d.width, help="frame width in pixels")
    p.add_argument("--coco-images", type=int, default=d.coco_images, help="COCO-like photographs")


def build_parser() -> argparse.ArgumentParser:
    """The ``stylepaste world`` argument parser."""
    d = WorldConfig(out="-")
    p = argparse.ArgumentParser(
        prog="stylepaste world",
        description="Write a small synthetic dataset in the real on-disk formats: Cityscapes-like driving "
                    "frames (train/val), COCO-like photographs with an instances json (polygons, crowd RLE, "
                    "categories that overlap Cityscapes included), and a Fishyscapes Lost&Found-like anomaly "
                    "set. The photographs come from a visibly different camera than the city, the anomalies "
                    "are rendered in the city's own style. Same seed, same bytes, whatever --workers.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="output root, a local folder or an fsspec URL (memory://...)")
    p.add_argument("--seed", type=int, default=d.seed, help="run seed")
    add_world_size_arguments(p, d)
    p.add_argument("--coco-min-side", type=int, default=d.coco_min_side, help="smallest photograph side")
    p.add_argument("--coco-max-side", type=int, default=d.coco_max_side, help="largest photograph side")
    p.add_argument("--anomaly-scale", type=float, default=d.anomaly_scale,
                   help="factor on the test anomalies' physical size (calibrated to Fishyscapes L&F in feature cells)")
    p.add_argument("--workers", type=int, default=d.workers, help="worker processes (0 = all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace parts that already exist under --out")
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``stylepaste world``.

    Args:
        argv: Command-line arguments (defaults to ``sys.argv[1:]``).

    Returns:
        Process exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = WorldConfig(out=args.out, seed=args.seed, train=args.train, val=args.val, anomaly=args.anomaly,
                          height=args.height, width=args.width, coco_images=args.coco_images,
                          coco_min_side=args.coco_min_side, coco_max_side=args.coco_max_side,
                          anomaly_scale=args.anomaly_scale, workers=args.workers, overwrite=args.overwrite)
        summary = generate_world(cfg, progress=not args.no_progress and sys.stderr.isatty())
    except (ValueError, FileExistsError) as err:
        parser.error(str(err))
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
