from __future__ import annotations

import fsspec
import numpy as np
import pytest

from schemas.cityscapes import (
    frame_paths,
    list_frames,
    read_image,
    read_instance_ids,
    read_label_ids,
    read_train_ids,
)
from schemas.codecs import encode_png
from schemas.labels import IGNORE, label_ids_to_train_ids


def test_real_samples_label_ids_agree_with_shipped_train_ids(samples_dir):
    frames = list_frames(str(samples_dir / "cityscapes"), "train")
    assert [f.frame_id for f in frames] == sorted(f.frame_id for f in frames)
    assert len(frames) >= 3
    for f in frames:
        assert f.split == "train" and f.frame_id.startswith(f.city + "_")
        img = read_image(f)
        shipped = read_train_ids(f)
        derived = label_ids_to_train_ids(read_label_ids(f))
        assert img.shape == (1024, 2048, 3) and img.dtype == np.uint8
        assert shipped.shape == (1024, 2048) and shipped.dtype == np.uint8
        assert float((shipped == derived).mean()) >= 0.99
        inst = read_instance_ids(f)
        assert np.array_equal(np.where(inst >= 1000, inst // 1000, inst), read_label_ids(f))


def test_real_mmseg_val_frame(samples_dir):
    frames = list_frames(str(samples_dir / "cityscapes_mmseg_pseudo"), "val")
    assert [f.frame_id for f in frames] == ["frankfurt_000000_000294"]
    t = read_train_ids(frames[0])
    assert t.shape == read_image(frames[0]).shape[:2]
    assert float((t == label_ids_to_train_ids(read_label_ids(frames[0]))).mean()) >= 0.99


def _write_frame(root: str, split: str, city: str, fid: str, label_ids: np.ndarray, with_train: bool) -> None:
    f = frame_paths(root, split, city, fid)
    h, w = label_ids.shape
    with fsspec.open(f.image_url, "wb") as fh:
        fh.write(encode_png(np.full((h, w, 3), 7, np.uint8)))
    with fsspec.open(f.label_ids_url, "wb") as fh:
        fh.write(encode_png(label_ids))
    if with_train:
        with fsspec.open(f.train_ids_url, "wb") as fh:
            fh.write(encode_png(np.full((h, w), 3, np.uint8)))


def test_memory_url_and_train_id_fallback():
    root = "memory://cs_reader_test/cityscapes"
    lab = np.array([[7, 8, 26], [1, 0, 33]], np.uint8)
    _write_frame(root, "val", "zed", "zed_000001_000019", lab, with_train=False)
    _write_frame(root, "val", "abc", "abc_000000_000019", lab, with_train=True)
    frames = list_frames(root, "val")
    assert [f.frame_id for f in frames] == ["abc_000000_000019", "zed_000001_000019"]
    assert np.all(read_train_ids(frames[0]) == 3)  # shipped labelTrainIds wins
    assert read_train_ids(frames[1]).tolist() == [[0, 1, 13], [IGNORE, IGNORE, 18]]  # derived from labelIds
    assert read_image(frames[1]).shape == (2, 3, 3)


def test_missing_split_and_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="leftImg8bit/val"):
        list_frames(str(tmp_path), "val")
    (tmp_path / "leftImg8bit" / "train" / "x").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no Cityscapes frames"):
        list_frames(str(tmp_path), "train")
    with pytest.raises(ValueError, match="split"):
        list_frames(str(tmp_path), "../train")
    f = frame_paths(str(tmp_path), "train", "x", "x_000000_000019")
    with pytest.raises(FileNotFoundError, match="x_000000_000019_gtFine_labelIds.png"):
        read_train_ids(f)
    with pytest.raises(FileNotFoundError, match="x_000000_000019_leftImg8bit.png"):
        read_image(f)
