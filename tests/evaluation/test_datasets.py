"""Benchmark dataset readers: real sample files and generated fixtures in every supported layout."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import numpy as np
import pytest
from PIL import Image

from schemas.codecs import read_label
from schemas.labels import label_ids_to_train_ids
from evaluation import datasets as ds
from evaluation.datasets import base as ds_base
from evaluation.datasets import (
    LabelValueError,
    MissingLabelError,
    SizeMismatchError,
    open_dataset,
)

H, W = 12, 20
_LAF_GT = "02_Hanns_Klemm_Str_44/02_Hanns_Klemm_Str_44_000000_000010_gtCoarse_labelIds.png"


# ----------------------------------------------------------------------------------------------------------------
# fixture writers
# ----------------------------------------------------------------------------------------------------------------


def _image(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _write(path: Path, arr: np.ndarray, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr)
    if fmt == "JPEG":
        img.save(path, format="JPEG", quality=95)
    elif fmt == "WEBP":
        img.save(path, format="WEBP", lossless=True)
    else:
        img.save(path, format="PNG")
    return path


def _anomaly_label(seed: int, h: int = H, w: int = W, values: tuple[int, int, int] = (0, 1, 255)) -> np.ndarray:
    lab = np.full((h, w), values[0], dtype=np.uint8)
    lab[: h // 4] = values[2]  # void band on top
    r = np.random.default_rng(seed)
    y, x = int(r.integers(h // 2, h - 3)), int(r.integers(0, w - 3))
    lab[y: y + 3, x: x + 3] = values[1]
    return lab


def _bundle(folder: Path, stems: list[str], ext: str = "png", label_values=(0, 1, 255)) -> dict[str, tuple]:
    out = {}
    fmt = {"png": None, "jpg": "JPEG", "webp": "WEBP"}[ext]
    for i, stem in enumerate(stems):
        img, lab = _image(i), _anomaly_label(i, values=label_values)
        _write(folder / "images" / f"{stem}.{ext}", img, fmt)
        _write(folder / "labels_masks" / f"{stem}.png", lab)
        out[stem] = (img, lab)
    return out


def _cityscapes(root: Path, split: str, frames: list[str], train_ids_file: bool) -> dict[str, tuple]:
    """Tiny Cityscapes layout; returns frame_id -> (image, labelIds)."""
    out = {}
    for k, frame_id in enumerate(frames):
        city = frame_id.split("_")[0]
        img = _image(100 + k)
        ids = np.random.default_rng(k).choice(np.array([0, 1, 7, 8, 11, 21, 23, 24, 26], np.uint8), size=(H, W))
        _write(root / "leftImg8bit" / split / city / f"{frame_id}_leftImg8bit.png", img)
        gt = root / "gtFine" / split / city
        _write(gt / f"{frame_id}_gtFine_labelIds.png", ids)
        if train_ids_file:
            _write(gt / f"{frame_id}_gtFine_labelTrainIds.png", label_ids_to_train_ids(ids))
        out[frame_id] = (img, ids)
    return out


def _laf(root: Path, split: str, frames: list[str], h: int = H, w: int = W, ext: str = "png") -> dict[str, tuple]:
    """Tiny LostAndFound layout; frames are ``<scene>_<seq>_<frame>``; returns fid -> (image, raw labelIds)."""
    out = {}
    for k, fid in enumerate(frames):
        scene = fid.rsplit("_", 2)[0]
        img = _image(200 + k, h, w)
        raw = np.zeros((h, w), np.uint8)  # 0 = ignore (top)
        raw[h // 3:] = 1  # free space
        raw[h - h // 4 - 2: h - h // 4, w // 2: w // 2 + 3] = 5 + k  # an obstacle id
        fmt = {"png": None, "webp": "WEBP", "jpg": "JPEG"}[ext]
        _write(root / "leftImg8bit" / split / scene / f"{fid}_leftImg8bit.{ext}", img, fmt)
        _write(root / "gtCoarse" / split / scene / f"{fid}_gtCoarse_labelIds.png", raw)
        out[fid] = (img, raw)
    return out


def _values(arr: np.ndarray) -> set[int]:
    return set(np.unique(arr).tolist())


# ----------------------------------------------------------------------------------------------------------------
# real sample files
# ----------------------------------------------------------------------------------------------------------------


def _check_identity_bundle(d: ds.AnomalyDataset, expected_ids: list[str], shape: tuple[int, int]) -> list[int]:
    assert d.layout == "bundle"
    assert d.sample_ids == expected_ids
    counts = []
    for s in d:
        assert s.image.dtype == np.uint8 and s.image.shape == (*shape, 3)
        assert s.label.dtype == np.uint8 and s.label.shape == shape
        assert _values(s.label) <= {0, 1, 255}
        np.testing.assert_array_equal(s.label, read_label(s.label_url))  # 0/1/255 kept as they are
        counts.append(int((s.label == 1).sum()))
        assert (s.label == 0).any() and (s.label == 255).any()
    assert all(c > 0 for c in counts)
    return counts


def test_samples_fishyscapes_lostandfound(samples_dir):
    parent = samples_dir / "fishyscapes_lostandfound"
    d = open_dataset("fishyscapes_lostandfound", str(parent))  # parent folder of FS_LostFound_full
    assert d.root.endswith("FS_LostFound_full")
    counts = _check_identity_bundle(d, ["0", "67"], (1024, 2048))
    assert counts[0] == 823  # PROVENANCE: "823 px of 2 M in 0.png"
    same = open_dataset("fs_lost_and_found", str(parent / "FS_LostFound_full"))
    assert same.sample_ids == d.sample_ids and same.root == d.root


def test_samples_fishyscapes_static(samples_dir):
    d = open_dataset("fs_static", str(samples_dir / "fishyscapes_static"))
    _check_identity_bundle(d, ["0", "1"], (1024, 2048))
    assert d[0].image_url.endswith("images/0.jpg")


def test_samples_smiyc(samples_dir):
    root = str(samples_dir / "segmentmeifyoucan")
    ra = open_dataset("smiyc_anomaly", root)
    assert ra.root.endswith("RoadAnomaly21")
    _check_identity_bundle(ra, ["1", "4"], (720, 1280))
    ro = open_dataset("smiyc_obstacle", root)
    assert ro.root.endswith("RoadObsticle21")  # the bundle's spelling
    counts = _check_identity_bundle(ro, ["0", "5"], (1080, 1920))
    assert all(c < 1000 for c in counts)  # obstacles are tiny (~60-130 px)
    assert all((ro[i].label == 255).mean() > 0.5 for i in range(2))  # void covers most of the frame


def test_samples_road_anomaly_official(samples_dir):
    d = open_dataset("road_anomaly", str(samples_dir / "road_anomaly"))  # parent of RoadAnomaly_jpg
    assert d.layout == "official" and d.root.endswith("RoadAnomaly_jpg")
    listed = json.loads((samples_dir / "road_anomaly/RoadAnomaly_jpg/frame_list.json").read_text())
    assert d.sample_ids == sorted(n[: -len(".jpg")] for n in listed)
    for s in d:
        raw = read_label(s.label_url)
        assert _values(raw) == {0, 2}
        assert s.label.shape == (720, 1280) and s.image.shape == (720, 1280, 3)
        assert _values(s.label) == {0, 1}
        np.testing.assert_array_equal(s.label == 1, raw == 2)
        assert s.label_url.endswith(f"frames/{s.sample_id}.labels/labels_semantic.png")


def test_samples_lostandfound_roi(samples_dir, tmp_path):
    roi_url = str(samples_dir / "lostandfound" / ds.LAF_ROI_FILENAME)
    roi = read_label(roi_url) > 0
    assert roi.shape == (1024, 2048) and 0.85 < roi.mean() < 0.95
    frames = _laf(tmp_path, "test", ["04_Maurener_Weg_8_000000_000030"], h=1024, w=2048)
    raw = next(iter(frames.values()))[1]
    raw[-1, :] = 7  # an obstacle row at the very bottom, which the ROI excludes (ego vehicle)
    _write(tmp_path / "gtCoarse/test/04_Maurener_Weg_8/04_Maurener_Weg_8_000000_000030_gtCoarse_labelIds.png", raw)
    s = open_dataset("lostandfound", str(tmp_path), roi=roi_url)[0]
    assert (s.label[~roi] == 255).all()
    inside = s.label[roi]
    np.testing.assert_array_equal(inside, np.select([raw[roi] == 0, raw[roi] == 1], [255, 0], 1))
    assert (s.label == 1).any() and not (s.label[-1] == 1).any()
    alt = ds.LostAndFound(str(tmp_path), roi=roi_url, eval_region="roi")[0].label
    assert (alt[~roi & (raw < 2)] == 255).all()
    assert (alt[roi & (raw < 2)] == 0).all()  # the whole ROI counts as in-distribution
    assert (alt[(raw >= 2)] == 1).all()


def test_samples_cityscapes_val(samples_dir):
    d = open_dataset("cityscapes_val", str(samples_dir / "cityscapes_mmseg_pseudo"))
    assert d.label_encoding == "train_ids" and d.sample_ids == ["frankfurt_000000_000294"]
    s = d[0]
    assert s.image.shape == (128, 256, 3) and s.label.shape == (128, 256)
    assert s.label_url.endswith("_gtFine_labelTrainIds.png")
    np.testing.assert_array_equal(s.label, read_label(s.label_url))
    assert _values(s.label) <= set(range(19)) | {255}
    train = ds.CityscapesVal(str(samples_dir / "cityscapes"), split="train")
    assert train.sample_ids == sorted(train.sample_ids) and len(train) >= 3
    assert _values(train[0].label) <= set(range(19)) | {255}


# ----------------------------------------------------------------------------------------------------------------
# generated fixtures: bundle layouts
# ----------------------------------------------------------------------------------------------------------------


def test_bundle_numeric_order_and_content(tmp_path):
    written = _bundle(tmp_path / "FS_LostFound_full", ["10", "2", "0", "1"])
    d = open_dataset("fishyscapes_lostandfound", str(tmp_path))
    assert d.sample_ids == ["0", "1", "2", "10"]
    assert len(d) == 4 and d[-1].sample_id == "10"
    for s in d:
        img, lab = written[s.sample_id]
        np.testing.assert_array_equal(s.image, img)
        np.testing.assert_array_equal(s.label, lab)
    assert [s.sample_id for s in d] == d.sample_ids
    np.testing.assert_array_equal(d.get("2").label, written["2"][1])
    with pytest.raises(IndexError, match="out of range"):
        d[4]
    with pytest.raises(KeyError, match="no sample"):
        d.get("3")
    with pytest.raises(TypeError, match="int"):
        d["0"]


@pytest.mark.parametrize(
    ("name", "sub", "ext"),
    [
        ("fishyscapes_static", "fs_static", "jpg"),
        ("smiyc_anomaly", "RoadAnomaly21", "png"),
        ("smiyc_obstacle", "RoadObsticle21", "webp"),
        ("smiyc_obstacle", "RoadObstacle21", "webp"),
    ],
)
def test_bundles_of_the_validation_dataset(tmp_path, name, sub, ext):
    written = _bundle(tmp_path / sub, ["0", "3", "11"], ext=ext)
    for root in (tmp_path, tmp_path / sub):
        d = open_dataset(name, str(root))
        assert d.layout == "bundle" and d.sample_ids == ["0", "3", "11"]
        s = d[2]
        np.testing.assert_array_equal(s.label, written["11"][1])
        if ext == "jpg":  # lossy: compare with the decoded file
            np.testing.assert_array_equal(s.image, np.asarray(Image.open(s.image_url).convert("RGB")))
            assert s.image_url.endswith("images/11.jpg")
        else:
            np.testing.assert_array_equal(s.image, written["11"][0])


def test_road_anomaly_bundle(tmp_path):
    written = _bundle(tmp_path / "RoadAnomaly", ["0", "1"], ext="jpg", label_values=(0, 2, 0))
    d = open_dataset("road_anomaly", str(tmp_path))
    assert d.layout == "bundle"
    for s in d:
        raw = written[s.sample_id][1]
        assert _values(s.label) == {0, 1}
        np.testing.assert_array_equal(s.label == 1, raw == 2)


def test_synthetic_roots(tmp_path):
    world = tmp_path / "world"
    written = _bundle(world / "fishyscapes_lostandfound" / "FS_LostFound_full", ["0", "1", "2"])
    roots = [world, world / "fishyscapes_lostandfound", world / "fishyscapes_lostandfound" / "FS_LostFound_full"]
    for root in roots:
        d = open_dataset("synthetic", str(root))
        assert d.name == "synthetic" and d.sample_ids == ["0", "1", "2"]
        np.testing.assert_array_equal(d[1].label, written["1"][1])
    # the same files through the Fishyscapes reader (root = <DIR>)
    assert open_dataset("fishyscapes_lostandfound", str(world)).sample_ids == ["0", "1", "2"]


def test_memory_filesystem(tmp_path):
    written = _bundle(tmp_path / "src", ["0", "1"])
    mem = fsspec.filesystem("memory")
    for p in (tmp_path / "src").rglob("*.png"):
        rel = p.relative_to(tmp_path / "src").as_posix()
        mem.pipe(f"/bench/FS_LostFound_full/{rel}", p.read_bytes())
    try:
        d = open_dataset("fishyscapes_lostandfound", "memory://bench")
        assert d.sample_ids == ["0", "1"]
        assert d[0].image_url == "memory://bench/FS_LostFound_full/images/0.png"
        np.testing.assert_array_equal(d[1].image, written["1"][0])
    finally:
        mem.rm("/bench", recursive=True)


# ----------------------------------------------------------------------------------------------------------------
# generated fixtures: official layouts
# ----------------------------------------------------------------------------------------------------------------


def test_fishyscapes_lostandfound_official(tmp_path):
    laf = tmp_path / "LostAndFound"
    frames = _laf(laf, "test", ["04_Maurener_Weg_8_000000_000030", "13_Elly_Beinhorn_Str_000002_000090"])
    frames |= _laf(laf, "train", ["01_Hanns_Klemm_Str_45_000011_000050"])
    _laf(laf, "test", ["02_Hanns_Klemm_Str_44_000000_000010"])  # a LAF frame that is not in the subset
    fs_dir = tmp_path / "fishyscapes_lostandfound"
    labels = {}
    for k, fid in enumerate(["04_Maurener_Weg_8_000000_000030", "01_Hanns_Klemm_Str_45_000011_000050",
                             "13_Elly_Beinhorn_Str_000002_000090"]):
        labels[fid] = _anomaly_label(k)
        _write(fs_dir / f"{k:04d}_{fid}_labels.png", labels[fid])
    d = open_dataset("fishyscapes_lostandfound", str(fs_dir), laf_root=str(laf))
    assert d.layout == "official"
    assert d.sample_ids == [
        "0000_04_Maurener_Weg_8_000000_000030",
        "0001_01_Hanns_Klemm_Str_45_000011_000050",
        "0002_13_Elly_Beinhorn_Str_000002_000090",
    ]
    for s in d:
        fid = s.sample_id[5:]
        np.testing.assert_array_equal(s.image, frames[fid][0])
        np.testing.assert_array_equal(s.label, labels[fid])
    assert "/train/01_Hanns_Klemm_Str_45/" in d[1].image_url
    with pytest.raises(FileNotFoundError, match="laf_root"):
        open_dataset("fishyscapes_lostandfound", str(fs_dir))
    (laf / "leftImg8bit/test/13_Elly_Beinhorn_Str/13_Elly_Beinhorn_Str_000002_000090_leftImg8bit.png").unlink()
    with pytest.raises(FileNotFoundError, match="13_Elly_Beinhorn_Str_000002_000090_leftImg8bit.png"):
        open_dataset("fishyscapes_lostandfound", str(fs_dir), laf_root=str(laf))


@pytest.mark.parametrize(("name", "split"), [("fishyscapes_lostandfound", "LostAndFound"),
                                             ("fishyscapes_static", "Static")])
def test_fishyscapes_exported_folders(tmp_path, name, split):
    for k, stem in enumerate(["b_frame", "a_frame"]):
        _write(tmp_path / split / "original" / f"{stem}.png", _image(k))
        _write(tmp_path / split / "labels" / f"{stem}.png", _anomaly_label(k))
    d = open_dataset(name, str(tmp_path))
    assert d.layout == "exported" and d.sample_ids == ["a_frame", "b_frame"]
    np.testing.assert_array_equal(d[1].image, _image(0))
    np.testing.assert_array_equal(d[1].label, _anomaly_label(0))


def test_fishyscapes_static_official(tmp_path):
    cityscapes = tmp_path / "cityscapes"
    base = _cityscapes(cityscapes, "val", ["frankfurt_000000_000294", "lindau_000001_000019"], True)
    fs_dir = tmp_path / "fs_val_v3"
    fs_dir.mkdir()
    expected = {}
    for k, cs_id in enumerate(["lindau_000001_000019", "frankfurt_000000_000294"]):
        overlay = np.random.default_rng(k).integers(-300, 300, size=(H, W, 3)).astype(np.int64)
        np.savez(fs_dir / f"{k:04d}_{cs_id}_rgb.npz", rgb=overlay)
        lab = _anomaly_label(k)
        _write(fs_dir / f"{k:04d}_{cs_id}_labels.png", lab)
        expected[f"{k:04d}_{cs_id}"] = (np.clip(base[cs_id][0].astype(int) + overlay, 0, 255).astype(np.uint8), lab)
    d = open_dataset("fishyscapes_static", str(fs_dir), cityscapes_root=str(cityscapes))
    assert d.layout == "official"
    assert d.sample_ids == ["0000_lindau_000001_000019", "0001_frankfurt_000000_000294"]
    for s in d:
        np.testing.assert_array_equal(s.image, expected[s.sample_id][0])
        np.testing.assert_array_equal(s.label, expected[s.sample_id][1])
    assert d[0].image_url.endswith("leftImg8bit/val/lindau/lindau_000001_000019_leftImg8bit.png")
    with pytest.raises(FileNotFoundError, match="cityscapes_root"):
        open_dataset("fishyscapes_static", str(fs_dir))
    np.savez(fs_dir / "0000_lindau_000001_000019_rgb.npz", rgb=np.zeros((H, W + 1, 3), np.int16))
    with pytest.raises(SizeMismatchError, match="overlay"):
        d[0]
    (fs_dir / "0001_frankfurt_000000_000294_rgb.npz").unlink()
    with pytest.raises(FileNotFoundError, match="0001_frankfurt_000000_000294_rgb.npz"):
        open_dataset("fishyscapes_static", str(fs_dir), cityscapes_root=str(cityscapes))


@pytest.mark.parametrize("with_list", [True, False])
def test_road_anomaly_official(tmp_path, with_list):
    root = tmp_path / "RoadAnomaly_jpg"
    names = ["vehicle02_Skid", "animals10_cattle", "animals03_Zebras"]
    raw = {}
    for k, n in enumerate(names):
        _write(root / "frames" / f"{n}.jpg", _image(k), "JPEG")
        raw[n] = _anomaly_label(k, values=(0, 2, 0))
        _write(root / "frames" / f"{n}.labels" / "labels_semantic.png", raw[n])
        _write(root / "frames" / f"{n}.labels" / "labels_instance.png", (raw[n] == 2).astype(np.uint8))
    if with_list:
        (root / "frame_list.json").write_text(json.dumps([f"{n}.jpg" for n in names], indent="\t"))
    d = open_dataset("road_anomaly", str(tmp_path))
    assert d.layout == "official" and d.sample_ids == sorted(names)
    for s in d:
        np.testing.assert_array_equal(s.label, (raw[s.sample_id] == 2).astype(np.uint8))
        assert s.image.shape == (H, W, 3)
    if with_list:
        (root / "frame_list.json").write_text(json.dumps(["missing_frame.jpg"]))
        with pytest.raises(FileNotFoundError, match="missing_frame.jpg"):
            open_dataset("road_anomaly", str(root))


def test_smiyc_anomaly_official(tmp_path):
    root = tmp_path / "dataset_AnomalyTrack"
    labels = {}
    for k in range(3):
        fid = f"validation{k:04d}"
        _write(root / "images" / f"{fid}.jpg", _image(k), "JPEG")
        labels[fid] = _anomaly_label(k)
        _write(root / "labels_masks" / f"{fid}_labels_semantic.png", labels[fid])
        _write(root / "labels_masks" / f"{fid}_labels_semantic_color.png", _image(k))  # shipped visualisation
    _write(root / "images" / "airplane0000.jpg", _image(9), "JPEG")  # test image, labels withheld
    d = open_dataset("smiyc_anomaly", str(tmp_path))
    assert d.layout == "official" and d.sample_ids == ["validation0000", "validation0001", "validation0002"]
    assert len(d.skipped) == 1 and d.skipped[0].endswith("airplane0000.jpg")
    for s in d:
        np.testing.assert_array_equal(s.label, labels[s.sample_id])
    (root / "images" / "validation0001.jpg").unlink()
    with pytest.raises(MissingLabelError, match="validation0001_labels_semantic.png has no image"):
        open_dataset("smiyc_anomaly", str(root))


def test_smiyc_obstacle_official(tmp_path):
    root = tmp_path / "dataset_ObstacleTrack"
    images = {}
    for k in (10, 2, 1):
        fid = f"validation_{k}"
        images[fid] = _image(k)
        _write(root / "images" / f"{fid}.webp", images[fid], "WEBP")
        _write(root / "labels_masks" / f"{fid}_labels_semantic.png", _anomaly_label(k))
    d = open_dataset("smiyc_obstacle", str(root))
    assert d.layout == "official" and d.sample_ids == ["validation_1", "validation_2", "validation_10"]
    np.testing.assert_array_equal(d[2].image, images["validation_10"])
    assert d[2].label_url.endswith("labels_masks/validation_10_labels_semantic.png")


def test_lostandfound_official(tmp_path):
    root = tmp_path / "dataset_LostAndFound"
    test = _laf(root, "test", ["02_Hanns_Klemm_Str_44_000000_000010", "02_Hanns_Klemm_Str_44_000000_000004",
                               "07_Festplatz_Flugfeld_000003_000120"])
    train = _laf(root, "train", ["01_Hanns_Klemm_Str_45_000000_000080"], ext="webp")
    roi = np.full((H, W), 255, np.uint8)
    roi[-2:] = 0  # ego vehicle
    _write(root / ds.LAF_ROI_FILENAME, roi)
    d = open_dataset("lostandfound", str(tmp_path))
    assert d.layout == "official" and d.split == "test"
    assert d.sample_ids == sorted(test)
    for s in d:
        raw = test[s.sample_id][1]
        exp = np.select([raw == 0, raw == 1], [255, 0], 1).astype(np.uint8)
        exp[-2:] = 255
        np.testing.assert_array_equal(s.label, exp)
        np.testing.assert_array_equal(s.image, test[s.sample_id][0])
        assert (s.label == 1).any()
    no_roi = ds.LostAndFound(str(root), roi=None)[0]
    assert (no_roi.label[-2:] != 255).any()
    tr = ds.LostAndFound(str(root), split="train")
    assert tr.sample_ids == list(train) and tr[0].image_url.endswith(".webp")
    (root / ds.LAF_ROI_FILENAME).unlink()
    with pytest.raises(FileNotFoundError, match="LAF_roi_2048.png"):
        open_dataset("lostandfound", str(root))
    _write(root / ds.LAF_ROI_FILENAME, np.full((H + 1, W), 255, np.uint8))
    with pytest.raises(SizeMismatchError, match="ROI"):
        open_dataset("lostandfound", str(root))[0]
    with pytest.raises(ValueError, match="split"):
        ds.LostAndFound(str(root), split="val")


@pytest.mark.parametrize("train_ids_file", [True, False])
def test_cityscapes_val_generated(tmp_path, train_ids_file):
    written = _cityscapes(tmp_path / "cityscapes", "val", ["munster_000001_000019", "lindau_000000_000019"],
                          train_ids_file)
    d = open_dataset("cityscapes", str(tmp_path))
    assert d.name == "cityscapes_val" and d.sample_ids == ["lindau_000000_000019", "munster_000001_000019"]
    suffix = "_gtFine_labelTrainIds.png" if train_ids_file else "_gtFine_labelIds.png"
    for s in d:
        assert s.label_url.endswith(suffix)
        np.testing.assert_array_equal(s.label, label_ids_to_train_ids(written[s.sample_id][1]))
        np.testing.assert_array_equal(s.image, written[s.sample_id][0])


# ----------------------------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------------------------


def test_missing_label_and_orphan_label(tmp_path):
    folder = tmp_path / "FS_LostFound_full"
    _bundle(folder, ["0", "1"])
    (folder / "labels_masks" / "1.png").unlink()
    with pytest.raises(MissingLabelError, match=r"missing label for image .*images/1.png.*labels_masks/1.png"):
        open_dataset("fishyscapes_lostandfound", str(folder))
    _write(folder / "labels_masks" / "1.png", _anomaly_label(1))
    _write(folder / "labels_masks" / "7.png", _anomaly_label(7))
    with pytest.raises(MissingLabelError, match=r"labels_masks/7.png has no image"):
        open_dataset("fishyscapes_lostandfound", str(folder))


def test_missing_label_official_layouts(tmp_path):
    _laf(tmp_path / "laf", "test", ["02_Hanns_Klemm_Str_44_000000_000010"])
    (tmp_path / "laf/gtCoarse/test" / _LAF_GT).unlink()
    with pytest.raises(MissingLabelError, match="_gtCoarse_labelIds.png"):
        ds.LostAndFound(str(tmp_path / "laf"), roi=None)
    root = tmp_path / "ra"
    _write(root / "frames" / "x.jpg", _image(0), "JPEG")
    with pytest.raises(MissingLabelError, match=r"x.labels/labels_semantic.png"):
        open_dataset("road_anomaly", str(root))
    _cityscapes(tmp_path / "cs", "val", ["lindau_000000_000019"], True)
    for p in (tmp_path / "cs" / "gtFine").rglob("*.png"):
        p.unlink()
    with pytest.raises(MissingLabelError, match="labelTrainIds.png or .*labelIds.png"):
        open_dataset("cityscapes_val", str(tmp_path / "cs"))


@pytest.mark.parametrize(
    ("name", "sub", "bad_value"),
    [("fishyscapes_lostandfound", "FS_LostFound_full", 2), ("smiyc_obstacle", "RoadObsticle21", 254),
     ("road_anomaly", "RoadAnomaly", 1)],
)
def test_bad_label_values(tmp_path, name, sub, bad_value):
    values = (0, 2, 0) if name == "road_anomaly" else (0, 1, 255)
    _bundle(tmp_path / sub, ["0"], label_values=values)
    lab = _anomaly_label(0, values=values)
    lab[0, :5] = bad_value
    _write(tmp_path / sub / "labels_masks" / "0.png", lab)
    d = open_dataset(name, str(tmp_path))
    msg = rf"labels_masks/0.png: unexpected label values \[{bad_value}\] \(5 pixels\)"
    with pytest.raises(LabelValueError, match=msg):
        d[0]


def test_bad_label_values_laf_and_cityscapes(tmp_path):
    _laf(tmp_path / "laf", "test", ["02_Hanns_Klemm_Str_44_000000_000010"])
    bad = np.full((H, W), 201, np.uint8)
    _write(tmp_path / "laf/gtCoarse/test" / _LAF_GT, bad)
    with pytest.raises(LabelValueError, match=r"\[201\].*allowed values are \{0\.\.200\}"):
        ds.LostAndFound(str(tmp_path / "laf"), roi=None)[0]
    _cityscapes(tmp_path / "cs", "val", ["lindau_000000_000019"], True)
    bad_train = np.full((H, W), 19, np.uint8)
    _write(tmp_path / "cs/gtFine/val/lindau/lindau_000000_000019_gtFine_labelTrainIds.png", bad_train)
    with pytest.raises(LabelValueError, match=r"\[19\].*\{0\.\.18, 255\}"):
        open_dataset("cityscapes_val", str(tmp_path / "cs"))[0]
    _bundle(tmp_path / "b16" / "FS_LostFound_full", ["0"])
    Image.fromarray(np.full((H, W), 300, np.uint16)).save(tmp_path / "b16/FS_LostFound_full/labels_masks/0.png")
    with pytest.raises(LabelValueError, match="300"):
        open_dataset("fishyscapes_lostandfound", str(tmp_path / "b16"))[0]


def test_size_mismatch(tmp_path):
    folder = tmp_path / "RoadAnomaly21"
    _bundle(folder, ["0"])
    _write(folder / "labels_masks" / "0.png", np.zeros((H, W + 4), np.uint8))
    with pytest.raises(SizeMismatchError, match=rf"images/0.png is {W}x{H}.*labels_masks/0.png is {W + 4}x{H}"):
        open_dataset("smiyc_anomaly", str(tmp_path))[0]


def test_root_resolution_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="root folder not found"):
        open_dataset("road_anomaly", str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no known layout"):
        open_dataset("smiyc_anomaly", str(tmp_path / "empty"))
    _bundle(tmp_path / "both" / "FS_LostFound_full", ["0"])
    _write(tmp_path / "both" / "LostAndFound" / "original" / "a.png", _image(0))
    _write(tmp_path / "both" / "LostAndFound" / "labels" / "a.png", _anomaly_label(0))
    with pytest.raises(ValueError, match="several candidate datasets"):
        open_dataset("fishyscapes_lostandfound", str(tmp_path / "both"))
    assert open_dataset("fishyscapes_lostandfound", str(tmp_path / "both" / "LostAndFound")).layout == "exported"
    with pytest.raises(ValueError, match="unknown dataset 'coco'"):
        open_dataset("coco", str(tmp_path))
    with pytest.raises(ValueError, match="unsupported option"):
        open_dataset("synthetic", str(tmp_path / "both"), split="val")
    _bundle(tmp_path / "dup" / "RoadAnomaly21", ["0"])
    _write(tmp_path / "dup" / "RoadAnomaly21" / "images" / "0.jpg", _image(0), "JPEG")
    with pytest.raises(ValueError, match="two images share the stem '0'"):
        open_dataset("smiyc_anomaly", str(tmp_path / "dup"))


def test_names_and_aliases():
    assert set(ds.DATASET_NAMES) == {
        "fishyscapes_lostandfound", "fishyscapes_static", "road_anomaly", "smiyc_anomaly", "smiyc_obstacle",
        "lostandfound", "cityscapes_val", "synthetic",
    }
    assert ds.canonical_name("fs_lost_and_found") == "fishyscapes_lostandfound"
    assert ds.canonical_name("FS-Static") == "fishyscapes_static"
    assert ds.canonical_name("RoadAnomaly21") == "smiyc_anomaly"
    assert ds.canonical_name("RoadObstacle21") == "smiyc_obstacle"


def test_trainer_does_not_import_beam():
    import subprocess
    import sys

    code = "import sys, evaluation.datasets; print('apache_beam' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False"


def test_map_label_values_describes_allowed():
    with pytest.raises(LabelValueError, match=r"allowed values are \{0, 2\}"):
        ds.map_label_values(np.array([[3]], np.uint8), ds_base._LUT_ROAD_ANOMALY, url="x.png", encoding="ra")
    out = ds.map_label_values(np.array([[0, 1, 200]], np.uint8), ds_base._LUT_LAF, url="x.png", encoding="laf")
    assert out.tolist() == [[255, 0, 1]]


def test_an_overlay_npz_declaring_a_huge_array_is_refused_before_allocation(tmp_path):
    import io as _io
    import tracemalloc
    import zipfile

    from numpy.lib import format as npformat

    from evaluation.datasets.fishyscapes import _read_overlay

    # a 9000 x 9000 x 3 header with almost no data behind it: a tiny file that would take 1.4 GB
    header = _io.BytesIO()
    npformat.write_array_header_1_0(header, {"descr": "<i2", "fortran_order": False, "shape": (9000, 9000, 3)})
    path = tmp_path / "0000_x_rgb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("rgb.npy", npformat.MAGIC_PREFIX + b"\x01\x00" + header.getvalue()[8:] + b"\x00" * 64)
    tracemalloc.start()
    with pytest.raises(ValueError, match="declares 9000x9000 = 81000000 pixels"):
        _read_overlay(str(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert path.stat().st_size < 10_000 and peak < 50_000_000
