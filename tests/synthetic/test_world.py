from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from synthetic.world import WorldConfig, generate_world, main
from synthetic.coco import CAT_ID, mask_to_polygons, mask_to_uncompressed_rle, render_coco_photo
from schemas.cityscapes import list_frames, read_image, read_instance_ids, read_label_ids, read_train_ids
from schemas.labels import NUM_CLASSES, label_ids_to_train_ids
from schemas.rng import rng_for

TINY = dict(train=4, val=2, anomaly=3, height=64, width=128, coco_images=6, coco_min_side=96, coco_max_side=144)
EXCLUDED = ("person", "car", "bicycle", "truck", "train", "traffic light", "stop sign")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for name, seed, workers in (("a", 3, 1), ("b", 3, 2), ("c", 4, 1)):
        root = tmp_path_factory.mktemp(f"world_{name}")
        generate_world(WorldConfig(out=str(root), seed=seed, workers=workers, **TINY))
        out[name] = root
    return out


def test_same_seed_same_bytes_any_worker_count_and_other_seed_differs(worlds):
    a, b, c = (_files(worlds[k]) for k in "abc")
    assert len(a) == 4 * 5 + 2 * 5 + 3 * 2 + 6 + 1 + 1  # city files, anomaly pairs, jpgs, json, world.json
    assert a == b
    assert a.keys() == c.keys()
    differing = [k for k in a if a[k] != c[k]]
    assert len(differing) > len(a) // 2


def test_cityscapes_layout_read_by_the_shared_reader(worlds):
    root = str(worlds["a"] / "cityscapes")
    train, val = list_frames(root, "train"), list_frames(root, "val")
    assert len(train) == 4 and len(val) == 2
    assert not {f.city for f in train} & {f.city for f in val}
    seen = np.zeros(256, bool)
    with_cars = 0
    for f in train + val:
        img, lab = read_image(f), read_label_ids(f)
        assert img.shape == (64, 128, 3) and lab.shape == (64, 128)
        assert np.array_equal(read_train_ids(f), label_ids_to_train_ids(lab))
        inst = read_instance_ids(f)
        assert inst.dtype == np.uint16
        assert np.array_equal(np.where(inst >= 1000, inst // 1000, inst), lab)
        with_cars += bool(((inst >= 26000) & (inst < 27000)).any())  # car instances
        assert (lab == 1).any()  # ego vehicle
        assert np.asarray(Image.open(f.color_url)).shape == (64, 128, 3)
        seen[read_train_ids(f)] = True
    assert int(seen[:NUM_CLASSES].sum()) >= 12
    assert with_cars >= 3


def test_coco_json_is_valid_and_every_annotation_decodes(worlds):
    path = worlds["a"] / "coco" / "annotations" / "instances_train2017.json"
    doc = json.loads(path.read_text())
    assert set(doc) == {"info", "licenses", "images", "annotations", "categories"}
    coco = COCO(str(path))
    names = {c["id"]: c["name"] for c in doc["categories"]}
    assert names[1] == "person" and names[3] == "car" and names[44] == "bottle" and len(names) == 80
    for img in doc["images"]:
        assert img["file_name"] == f"{img['id']:012d}.jpg"
        with Image.open(worlds["a"] / "coco" / "train2017" / img["file_name"]) as im:
            assert im.format == "JPEG" and im.size == (img["width"], img["height"])
    assert len({a["id"] for a in doc["annotations"]}) == len(doc["annotations"]) > 0
    for ann in doc["annotations"]:
        m = coco.annToMask(ann)
        assert int(m.sum()) == round(ann["area"]) > 0
        x, y, w, h = ann["bbox"]
        ys, xs = np.nonzero(m)
        assert abs(xs.min() - x) <= 1 and abs(ys.min() - y) <= 1 and abs(xs.max() + 1 - (x + w)) <= 1
    used = {names[a["category_id"]] for a in doc["annotations"]}
    assert len(used) >= 4


def test_coco_polygons_follow_the_rendered_objects():
    cats, crowd, multi = set(), 0, 0
    for i in range(21):
        photo = render_coco_photo(rng_for(0, ("coco", i)), i, 96, 160)
        for obj in photo.objects:
            cats.add(obj.category)
            if obj.iscrowd:
                crowd += 1
                assert set(obj.segmentation) == {"counts", "size"}
                rle = mask_utils.frPyObjects(obj.segmentation, photo.height, photo.width)
            else:
                multi += len(obj.segmentation) >= 2
                rle = mask_utils.merge(mask_utils.frPyObjects(obj.segmentation, photo.height, photo.width))
            m = mask_utils.decode(rle).astype(bool)
            iou = (m & obj.mask).sum() / (m | obj.mask).sum()
            assert iou > (0.999 if obj.iscrowd else 0.8), (i, obj.category, iou)
    assert set(EXCLUDED) <= cats  # categories that overlap Cityscapes are drawn too
    assert len(cats - set(EXCLUDED)) >= 10
    assert crowd >= 2 and multi >= 1


def test_mask_helpers_round_trip():
    mask = np.zeros((20, 30), bool)
    mask[2:9, 3:12] = True
    mask[12:18, 20:28] = True
    rle = mask_to_uncompressed_rle(mask)
    assert sum(rle["counts"]) == 600
    assert np.array_equal(mask_utils.decode(mask_utils.frPyObjects(rle, 20, 30)).astype(bool), mask)
    polys = mask_to_polygons(mask)
    assert len(polys) == 2
    dec = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, 20, 30))).astype(bool)
    assert (dec & mask).sum() / (dec | mask).sum() > 0.9


def test_excluded_categories_are_in_the_json_categories(worlds):
    doc = json.loads((worlds["a"] / "coco" / "annotations" / "instances_train2017.json").read_text())
    names = {c["name"]: c["id"] for c in doc["categories"]}
    for name in EXCLUDED:
        assert names[name] == CAT_ID[name]


def test_fishyscapes_labels(worlds):
    base = worlds["a"] / "fishyscapes_lostandfound" / "FS_LostFound_full"
    for i in range(3):
        img = np.asarray(Image.open(base / "images" / f"{i}.png"))
        lab_im = Image.open(base / "labels_masks" / f"{i}.png")
        lab = np.asarray(lab_im)
        assert lab_im.mode == "L" and img.shape == (64, 128, 3) and lab.shape == (64, 128)
        assert set(np.unique(lab).tolist()) <= {0, 1, 255}
        assert (lab == 1).sum() >= 4 and (lab == 0).mean() > 0.5
        assert (lab[0] == 255).all() and (lab[-1] == 255).all()  # top rows and ego vehicle are void


def test_cli_help_and_refuses_to_overwrite(worlds, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--coco-images" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(worlds["c"]), "--train", "1", "--val", "0", "--anomaly", "0", "--coco-images", "0"])
    assert exc.value.code == 2
    assert "--overwrite" in capsys.readouterr().err


def test_memory_url_output():
    s = generate_world(WorldConfig(out="memory://world_test/w", seed=1, train=1, val=1, anomaly=1, height=32,
                                   width=64, coco_images=1, coco_min_side=64, coco_max_side=64, workers=1))
    assert s.files == {"cityscapes": 10, "coco": 2, "fishyscapes_lostandfound": 2}
    assert [f.frame_id for f in list_frames("memory://world_test/w/cityscapes", "val")] == ["eastwick_000000_000019"]
    with pytest.raises(ValueError, match="frame size"):
        WorldConfig(out="x", height=8)


def test_component_extents_and_their_summary_in_feature_cells():
    from synthetic.world import component_extents, extent_summary

    mask = np.zeros((40, 80), bool)
    mask[2:5, 3:19] = True  # 3 x 16: longest side 16, area 48
    mask[20:30, 50:54] = True  # 10 x 4: longest 10, area 40
    mask[30, 54] = True  # touches the second one diagonally: 8-connected, same object
    ext = component_extents(mask)
    assert ext == [(16, 48), (11, 41)]
    s = extent_summary(ext, 8)
    assert s["objects"] == 2 and s["stride"] == 8
    assert s["longest_cells"]["min"] == 11 / 8 and s["longest_cells"]["max"] == 2.0
    assert s["sqrt_area_cells"]["median"] == pytest.approx((np.sqrt(48) + np.sqrt(41)) / 16)
    assert np.isnan(extent_summary([], 8)["longest_cells"]["median"])


def test_anomaly_scale_sets_the_extents_the_world_records(tmp_path):
    """The anomalies are drawn ``anomaly_scale`` times larger, and world.json records their extents in cells of
    1/8 features, counted from the written label masks."""
    from synthetic.world import FEATURE_STRIDE, component_extents

    size = dict(train=0, val=0, anomaly=12, height=128, width=256, coco_images=0)
    medians = {}
    for scale in (1.0, 3.5):
        root = tmp_path / f"s{scale}"
        summary = generate_world(WorldConfig(out=str(root), seed=5, workers=1, anomaly_scale=scale, **size))
        record = json.loads((root / "world.json").read_text())["summary"]["anomaly_extents"]
        assert record == json.loads(json.dumps(summary.anomaly_extents))
        masks = sorted((root / "fishyscapes_lostandfound" / "FS_LostFound_full" / "labels_masks").glob("*.png"))
        ext = [e for m in masks for e in component_extents(np.asarray(Image.open(m)) == 1)]
        assert record["objects"] == len(ext) > 0
        assert record["longest_cells"]["median"] == pytest.approx(np.median([e[0] for e in ext]) / FEATURE_STRIDE)
        medians[scale] = record["longest_cells"]["median"]
    assert medians[3.5] > 1.5 * medians[1.0]  # occlusion and placement keep it below 3.5x
    with pytest.raises(ValueError, match="anomaly_scale"):
        WorldConfig(out="x", anomaly_scale=0.0)
