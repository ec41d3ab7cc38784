"""A tiny COCO-layout dataset with one annotation per outcome of the object-bank pipeline."""

from __future__ import annotations

import io
import json

import fsspec
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
    {"id": 18, "name": "dog", "supercategory": "animal"},
    {"id": 44, "name": "bottle", "supercategory": "kitchen"},
    {"id": 62, "name": "chair", "supercategory": "furniture"},
    {"id": 88, "name": "teddy bear", "supercategory": "indoor"},
]

# annotation id -> expected outcome with the default rules of the tests (min_area 16, min_side 4)
EXPECTED = {
    101: "written", 102: "filtered/excluded_category", 103: "written", 104: "filtered/crowd",
    105: "filtered/too_small", 106: "filtered/empty_mask",
    201: "written", 202: "filtered/excluded_category",
    301: "rejected/image_unreadable", 401: "rejected/image_missing",
    501: "rejected/invalid_polygon", 502: "rejected/box_outside_image", 503: "rejected/unknown_category",
    504: "written",
    601: "rejected/size_mismatch", 701: "rejected/unknown_image",
}
DUPLICATE_ID = 504  # occurs twice: the second copy is rejected as duplicate_annotation
INPUTS = len(EXPECTED) + 1


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _bbox_of(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    counts, current, run = [], 0, 0
    for v in mask.flatten(order="F").tolist():
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return counts


def _image(h: int, w: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([(xx * 255 // w), (yy * 255 // h), np.full_like(xx, 90)], axis=-1).astype(np.uint8)
    arr = np.clip(arr + rng.integers(-12, 13, arr.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def write_toy_coco(root: str, split: str = "train2017") -> dict:
    """Write ``root/<split>/*.jpg`` and ``root/annotations/instances_<split>.json``; return the JSON."""
    h, w = 64, 96
    blob = np.zeros((h, w), np.uint8, order="F")
    blob[30:50, 60:90] = 1
    blob[40:60, 70:80] = 1
    compressed = mask_utils.encode(blob)
    compressed = {"size": list(compressed["size"]), "counts": compressed["counts"].decode("ascii")}
    crowd = np.zeros((h, w), np.uint8)
    crowd[5:20, 50:70] = 1
    counts = _uncompressed_counts(crowd)

    images = [
        {"id": 1, "file_name": "a.jpg", "width": w, "height": h},
        {"id": 2, "file_name": "b.jpg", "width": w, "height": h},
        {"id": 3, "file_name": "corrupt.jpg", "width": w, "height": h},
        {"id": 4, "file_name": "missing.jpg", "width": w, "height": h},
        {"id": 5, "file_name": "c.jpg", "width": w, "height": h},
        {"id": 6, "file_name": "d.jpg", "width": w + 8, "height": h},  # the file is w x h
        {"id": 7, "file_name": "e.jpg", "width": w, "height": h},  # no annotations: never read
    ]

    def ann(aid, iid, cid, segm, bbox=None, crowd_flag=0):
        if bbox is None:
            bbox = _bbox_of(mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(segm, h, w))))
        return {"id": aid, "image_id": iid, "category_id": cid, "segmentation": segm, "bbox": bbox,
                "area": float(bbox[2] * bbox[3]), "iscrowd": crowd_flag}

    annotations = [
        ann(101, 1, 18, [[8.0, 8.0, 40.0, 10.0, 36.0, 40.0, 10.0, 34.0]]),
        ann(102, 1, 1, _rect(44, 5, 58, 30)),
        {"id": 103, "image_id": 1, "category_id": 44, "segmentation": compressed, "bbox": _bbox_of(blob),
         "area": float(blob.sum()), "iscrowd": 0},
        {"id": 104, "image_id": 1, "category_id": 62, "segmentation": {"counts": counts, "size": [h, w]},
         "bbox": _bbox_of(crowd), "area": float(crowd.sum()), "iscrowd": 1},
        ann(105, 1, 88, _rect(2, 50, 4.5, 52.5)),
        {"id": 106, "image_id": 1, "category_id": 88, "segmentation": {"counts": [h * w], "size": [h, w]},
         "bbox": [0.0, 0.0, 1.0, 1.0], "area": 0.0, "iscrowd": 0},
        ann(201, 2, 62, _rect(10, 10, 50, 50)),
        ann(202, 2, 3, _rect(55, 20, 90, 40)),
        ann(301, 3, 18, _rect(10, 10, 40, 40)),
        ann(401, 4, 44, _rect(10, 10, 40, 40)),
        {"id": 501, "image_id": 5, "category_id": 18, "segmentation": [[1.0, 2.0, 30.0, 4.0]],
         "bbox": [1.0, 2.0, 29.0, 2.0], "area": 10.0, "iscrowd": 0},
        ann(502, 5, 18, _rect(10, 10, 40, 40), bbox=[80.0, 10.0, 40.0, 30.0]),
        ann(503, 5, 999, _rect(10, 10, 40, 40)),
        ann(504, 5, 18, _rect(30.5, 20.5, 70.5, 55.5)),
        ann(504, 5, 62, _rect(1, 1, 20, 20)),
        ann(601, 6, 18, _rect(10, 10, 40, 40)),
        ann(701, 12345, 18, _rect(10, 10, 40, 40)),
    ]
    data = {"info": {"description": "toy"}, "licenses": [], "categories": CATEGORIES, "images": images,
            "annotations": annotations}

    def put(path: str, payload: bytes) -> None:
        fs, p = fsspec.core.url_to_fs(f"{root.rstrip('/')}/{path}")
        fs.makedirs(p.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(p, "wb") as f:
            f.write(payload)

    for i, name in enumerate(["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]):
        put(f"{split}/{name}", _image(h, w, i))
    put(f"{split}/corrupt.jpg", b"\xff\xd8\xff\xe0 this is not a jpeg" + bytes(range(256)))
    put(f"annotations/instances_{split}.json", json.dumps(data).encode())
    return data
