"""Pure COCO functions of the object bank (pipelines.coco): validation, grouping, masks, crops, outcomes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bank_fixtures import DUPLICATE_ID, EXPECTED, INPUTS, write_toy_coco
from pycocotools import mask as mask_utils

from pipelines.coco import (
    DEFAULT_EXCLUDE, CutRules, Filtered, InvalidSegmentation, Kept, Rejected, category_table, crop_box,
    cut_image_objects, decode_segmentation, group_by_image, mask_extent, read_instances, resolve_excluded,
)
from schemas.arrow import OBJECT_BANK, table_from_rows
from schemas.codecs import ImageDecodeError, decode_png, read_rgb


class _Stats:
    def __init__(self, rgb: np.ndarray) -> None:
        self.mean = float(rgb.mean())

    def to_record(self) -> dict:
        return {"src_lab_mean": [self.mean] * 3, "src_lab_std": [1.0] * 3, "src_sharpness": 0.5,
                "src_noise": 0.1, "src_blockiness": 1.0}


def _rules(data: dict, **kw) -> CutRules:
    cats = category_table(data)
    return CutRules(cats, resolve_excluded(DEFAULT_EXCLUDE, cats, strict=False), min_area=16, min_side=4, **kw)


def test_read_instances_refuses_missing_and_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_instances(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(ValueError, match="categories"):
        read_instances(str(bad))
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_instances(str(bad))


def test_category_table_and_exclusions():
    data = {"categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]}
    cats = category_table(data)
    assert cats == {1: "person", 18: "dog"}
    assert resolve_excluded(DEFAULT_EXCLUDE, cats, strict=False) == frozenset({1})
    with pytest.raises(ValueError, match="dgo"):
        resolve_excluded(["dgo"], cats)
    with pytest.raises(ValueError, match="duplicate category id 1"):
        category_table({"categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]})


def test_group_by_image_sorts_dedupes_and_rejects_orphans(tmp_path):
    data = write_toy_coco(str(tmp_path))
    tasks, rejects, inputs = group_by_image(data)
    assert inputs == INPUTS
    assert [t["image"]["id"] for t in tasks] == [1, 2, 3, 4, 5, 6]  # image 7 has no annotation
    for t in tasks:
        ids = [a["id"] for a in t["annotations"]]
        assert ids == sorted(ids)
    task5 = next(t for t in tasks if t["image"]["id"] == 5)
    kept_504 = [a for a in task5["annotations"] if a["id"] == DUPLICATE_ID]
    assert len(kept_504) == 1 and kept_504[0]["category_id"] == 18  # the first occurrence
    assert sorted(r.reason for r in rejects) == ["duplicate_annotation", "unknown_image"]
    with pytest.raises(ValueError, match="duplicate image id 1"):
        group_by_image({"images": [{"id": 1}, {"id": 1}], "annotations": [], "categories": []})


def test_decode_segmentation_matches_pycocotools_and_names_bad_input():
    h, w = 20, 30
    poly = [[2.0, 3.0, 20.0, 3.0, 20.0, 15.0, 2.0, 15.0]]
    want = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(poly, h, w)))
    np.testing.assert_array_equal(decode_segmentation(poly, h, w), want)
    rle = mask_utils.encode(np.asfortranarray(want))
    np.testing.assert_array_equal(decode_segmentation({"size": [h, w], "counts": rle["counts"].decode()}, h, w), want)

    cases = [
        ([[1.0, 2.0, 3.0, 4.0]], "invalid_polygon", "4 coordinates"),  # pycocotools would read this as a box
        ([[1.0, 2.0, 3.0, 4.0, 5.0]], "invalid_polygon", "5 coordinates"),
        ([[1.0, 2.0, float("nan"), 4.0, 5.0, 6.0]], "invalid_polygon", "non-finite"),
        ([], "invalid_polygon", "empty"),
        ("oops", "invalid_polygon", "polygon list or an RLE"),
        ({"size": [h, w + 1], "counts": [h * (w + 1)]}, "invalid_rle", "differs from the image size"),
        ({"size": [h, w], "counts": [5, 6]}, "invalid_rle", "sum to 11"),
        ({"size": [h, w], "counts": [-1, h * w + 1]}, "invalid_rle", "non-negative"),
    ]
    for segm, reason, message in cases:
        with pytest.raises(InvalidSegmentation, match=message) as info:
            decode_segmentation(segm, h, w)
        assert info.value.reason == reason


def test_crop_box_covers_box_and_mask_with_margin_inside_the_image():
    mask = np.zeros((50, 60), np.uint8)
    mask[10:20, 30:50] = 1
    extent = mask_extent(mask)
    assert extent == (30, 10, 50, 20)
    assert mask_extent(np.zeros((4, 4), np.uint8)) is None
    box = crop_box((31.2, 10.5, 18.0, 9.0), extent, 0.1, 50, 60)
    assert box == (28, 8, 52, 22)  # pad = ceil(0.1 * 20) = 2
    assert crop_box((0.0, 0.0, 60.0, 50.0), (0, 0, 60, 50), 0.1, 50, 60) == (0, 0, 60, 50)
    assert crop_box((31.2, 10.5, 18.0, 9.0), extent, 0.0, 50, 60) == (30, 10, 50, 20)


def test_cut_image_objects_gives_every_annotation_one_outcome(tmp_path):
    root = str(tmp_path)
    data = write_toy_coco(root)
    rules = _rules(data)
    tasks, group_rejects, _ = group_by_image(data)
    reads: list[str] = []

    def read(url: str) -> np.ndarray:
        reads.append(url.rsplit("/", 1)[-1])
        return read_rgb(url)

    outcomes = []
    for task in tasks:
        outcomes += cut_image_objects(task, rules, f"{root}/train2017/{task['image']['file_name']}", read, _Stats)
    got = {}
    for o in outcomes:
        if isinstance(o, Kept):
            got[o.row["object_id"]] = "written"
        elif isinstance(o, Filtered):
            got[o.annotation_id] = f"filtered/{o.reason}"
        else:
            assert isinstance(o, Rejected) and o.detail
            got[o.element["annotation_id"]] = f"rejected/{o.reason}"
    got.update({r.element["annotation_id"]: f"rejected/{r.reason}" for r in group_rejects
                if r.reason == "unknown_image"})
    assert got == EXPECTED
    # each image that has a wanted annotation is read once, the others never
    assert sorted(reads) == sorted(["a.jpg", "b.jpg", "corrupt.jpg", "missing.jpg", "c.jpg", "d.jpg"])

    rows = [o.row for o in outcomes if isinstance(o, Kept)]
    table_from_rows(rows, OBJECT_BANK)  # every row fits the schema
    row = next(r for r in rows if r["object_id"] == 103)  # the compressed-RLE bottle
    x0, y0, x1, y1 = row["crop_box"]
    mask = decode_png(row["mask"])
    assert mask.shape == (row["height"], row["width"]) == (y1 - y0, x1 - x0)
    assert set(np.unique(mask)) == {0, 1} and int(mask.sum()) == row["area"]
    full = read_rgb(f"{root}/train2017/a.jpg")
    np.testing.assert_array_equal(decode_png(row["image"]), full[y0:y1, x0:x1])
    assert row["src_lab_mean"][0] == pytest.approx(full.mean())


def test_rules_options_change_outcomes(tmp_path):
    data = write_toy_coco(str(tmp_path))
    tasks, _, _ = group_by_image(data)
    task1 = next(t for t in tasks if t["image"]["id"] == 1)
    task2 = next(t for t in tasks if t["image"]["id"] == 2)
    url = f"{tmp_path}/train2017/"

    def outcomes(task, rules):
        return {(o.row["object_id"] if isinstance(o, Kept) else o.annotation_id):
                ("written" if isinstance(o, Kept) else o.reason)
                for o in cut_image_objects(task, rules, url + task["image"]["file_name"], read_rgb, _Stats)}

    assert outcomes(task2, _rules(data, exclude_images=True)) == {201: "excluded_image", 202: "excluded_category"}
    assert outcomes(task1, _rules(data, keep_crowd=True))[104] == "written"
    assert outcomes(task1, _rules(data))[104] == "crowd"


def test_unreadable_image_is_told_from_a_missing_one(tmp_path):
    data = write_toy_coco(str(tmp_path))
    tasks, _, _ = group_by_image(data)
    task = next(t for t in tasks if t["image"]["id"] == 1)

    def broken(url: str) -> np.ndarray:
        raise ImageDecodeError(f"{url}: truncated")

    out = cut_image_objects(task, _rules(data), "x/a.jpg", broken, _Stats)
    assert {o.reason for o in out if isinstance(o, Rejected)} == {"image_unreadable"}

    def flaky(url: str) -> np.ndarray:
        raise ConnectionError("transient")  # not an input error: must propagate so the runner retries

    with pytest.raises(ConnectionError):
        cut_image_objects(task, _rules(data), "x/a.jpg", flaky, _Stats)


def test_image_records_that_escape_the_folder_or_declare_too_many_pixels_are_rejected_before_any_allocation():
    import tracemalloc

    images = [{"id": 1, "file_name": "ok.jpg", "width": 64, "height": 48},
              {"id": 2, "file_name": "huge.jpg", "width": 40000, "height": 40000},
              {"id": 3, "file_name": "/etc/passwd", "width": 64, "height": 48},
              {"id": 4, "file_name": "../../secret.jpg", "width": 64, "height": 48},
              {"id": 5, "file_name": "s3://other-bucket/x.jpg", "width": 64, "height": 48}]
    anns = [{"id": 10 + i, "image_id": i, "category_id": 1, "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 0,
             "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]]} for i in range(1, 6)]
    tracemalloc.start()
    tasks, rejects, _ = group_by_image({"images": images, "annotations": anns, "categories": []})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [t["image"]["id"] for t in tasks] == [1]
    reasons = {r.element["image_id"]: (r.reason, r.detail) for r in rejects}
    assert {k: v[0] for k, v in reasons.items()} == {i: "invalid_image" for i in (2, 3, 4, 5)}
    assert "1600000000 pixels" in reasons[2][1] and "leaves the images folder" in reasons[3][1]
    assert peak < 10_000_000  # nothing of the declared 40000 x 40000 size was allocated
