from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import labels
from schemas.arrow import FRAME, OBJECT_BANK, SchemaMismatchError, table_from_rows, validate_schema
from schemas.codecs import (
    ImageDecodeError,
    decode_image,
    decode_png,
    encode_image,
    encode_png,
    open_image,
    read_label,
)
from schemas.manifest import Manifest, ShardInfo, open_shard, read_manifest, shard_info, write_manifest
from schemas.rng import rng_for, stable_hash


def test_label_table_is_official():
    assert len(labels.LABELS) == 34
    assert [lab.id for lab in labels.LABELS] == list(range(34))
    assert len(labels.TRAIN_CLASSES) == 19
    assert labels.TRAIN_CLASSES[0] == "road" and labels.TRAIN_CLASSES[18] == "bicycle"
    ids = np.arange(256, dtype=np.uint8)
    train = labels.label_ids_to_train_ids(ids)
    assert train[7] == 0 and train[26] == 13 and train[33] == 18
    assert train[1] == labels.IGNORE and train[34] == labels.IGNORE and train[255] == labels.IGNORE
    assert sorted(set(train.tolist()) - {labels.IGNORE}) == list(range(19))
    with pytest.raises(ValueError, match="0..255"):
        labels.label_ids_to_train_ids(np.array([300]))


def test_label_ids_to_train_ids_on_real_cityscapes(samples_dir):
    from PIL import Image

    files = sorted((samples_dir / "cityscapes" / "gtFine").rglob("*_gtFine_labelIds.png"))
    assert files
    for f in files:
        ids = np.asarray(Image.open(f))
        shipped = np.asarray(Image.open(str(f).replace("_labelIds", "_labelTrainIds")))
        ours = labels.label_ids_to_train_ids(ids)
        agree = (ours == shipped).mean()
        assert agree >= 0.99, f"{f.name}: only {agree:.4f} of pixels agree"


def test_png_codecs_round_trip_exactly():
    rng = np.random.default_rng(0)
    for arr in (
        rng.integers(0, 256, (17, 31), dtype=np.uint8),
        rng.integers(0, 256, (17, 31, 3), dtype=np.uint8),
        rng.integers(0, 65536, (17, 31), dtype=np.uint16),
    ):
        out = decode_png(encode_png(arr))
        assert out.dtype == arr.dtype and np.array_equal(out, arr)
    with pytest.raises(ValueError, match="float32"):
        encode_png(np.zeros((3, 3), np.float32))
    with pytest.raises(ImageDecodeError, match="expected PNG"):
        decode_png(b"not an image", name="row 3")


def test_lossy_codec_requires_high_quality_and_is_close():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:32, 0:48]
    img = np.stack([yy * 6, xx * 4, (yy + xx) * 3], -1).astype(np.uint8)
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    for codec in ("jpeg", "webp"):
        out = decode_image(encode_image(img, codec))
        assert out.shape == img.shape
        assert np.abs(out.astype(int) - img).mean() < 8
    with pytest.raises(ValueError, match="95..100"):
        encode_image(img, "jpeg", quality=80)


def test_decompression_bomb_is_refused():
    big = encode_png(np.zeros((300, 400), np.uint8), compress_level=9)
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        open_image(big, name="bomb.png", max_pixels=1000)
    assert read_label(big).shape == (300, 400)


def test_stable_hash_and_rng_are_reproducible():
    assert stable_hash("frame_1") == stable_hash("frame_1")
    assert stable_hash("frame_1") != stable_hash("frame_2")
    assert stable_hash(5) != stable_hash("5")
    a = rng_for(3, ("paste", "x")).random(4)
    b = rng_for(3, ("paste", "x")).random(4)
    c = rng_for(4, ("paste", "x")).random(4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError, match="seed"):
        rng_for(-1, "x")


def _bank_row(i: int) -> dict:
    img = np.full((4, 5, 3), i, np.uint8)
    return {
        "object_id": i, "image_id": 100 + i, "category_id": 44, "category_name": "bottle",
        "image": encode_png(img), "mask": encode_png(np.ones((4, 5), np.uint8)), "height": 4, "width": 5,
        "crop_box": [0, 0, 5, 4], "bbox": [0.0, 0.0, 5.0, 4.0], "area": 20.0, "iscrowd": False,
        "source_file": "x.jpg", "source_height": 10, "source_width": 10,
        "src_lab_mean": [50.0, 0.0, 0.0], "src_lab_std": [10.0, 5.0, 5.0],
        "src_sharpness": 1.0, "src_noise": 0.5, "src_blockiness": 1.0,
        "license_id": 2, "license_name": "Attribution-NonCommercial License",
        "license_url": "http://creativecommons.org/licenses/by-nc/2.0/", "coco_url": None, "flickr_url": None,
    }


def test_schema_round_trip_and_version_mismatch(tmp_path):
    table = table_from_rows([_bank_row(i) for i in range(3)], OBJECT_BANK)
    path = tmp_path / "part-0.parquet"
    pq.write_table(table, path)
    pf = open_shard(str(path), OBJECT_BANK)
    back = pf.read()
    assert back.equals(table)
    assert back.schema.metadata[b"stylepaste.schema_version"] == b"2"
    assert back.schema.field("image").metadata[b"codec"] == b"png"
    assert decode_png(back.column("image")[1].as_py())[0, 0, 0] == 1

    with pytest.raises(SchemaMismatchError,
                       match="expected schema augmented_frame v2 or augmented_frame v1, found object_bank v2"):
        open_shard(str(path), FRAME)

    old_meta = dict(table.schema.metadata)
    old_meta[b"stylepaste.schema_version"] = b"0"
    old = table.replace_schema_metadata(old_meta)
    with pytest.raises(SchemaMismatchError, match="expected schema object_bank v2 or object_bank v1, found object_bank v0"):
        validate_schema(old.schema, OBJECT_BANK, where="old.parquet")

    renamed = table.rename_columns([("blockiness" if n == "src_blockiness" else n) for n in table.column_names])
    with pytest.raises(SchemaMismatchError, match="missing fields \\['src_blockiness'\\]"):
        validate_schema(renamed.schema.with_metadata(table.schema.metadata), OBJECT_BANK)

    retyped = table.set_column(0, pa.field("object_id", pa.int32(), nullable=False),
                               table.column(0).cast(pa.int32()))
    with pytest.raises(SchemaMismatchError, match="field 'object_id'"):
        validate_schema(retyped.schema.with_metadata(table.schema.metadata), OBJECT_BANK)

    bad = _bank_row(0)
    del bad["area"]
    with pytest.raises(SchemaMismatchError, match="missing fields \\['area'\\]"):
        table_from_rows([bad], OBJECT_BANK)


def test_manifest_round_trip(tmp_path):
    table = table_from_rows([_bank_row(i) for i in range(5)], OBJECT_BANK)
    pq.write_table(table, tmp_path / "s0.parquet", row_group_size=2)
    info = shard_info(str(tmp_path / "s0.parquet"))
    data = (tmp_path / "s0.parquet").read_bytes()
    assert info == ShardInfo("s0.parquet", 5, 3, (2, 2, 1), len(data), hashlib.sha256(data).hexdigest())
    man = Manifest("object_bank", 1, (info,), {"min_area": 16}, 7, {"coco": "/x"},
                   {"inputs": 6, "written": 5, "filtered": {"crowd": 1}, "rejected": {}})
    write_manifest(str(tmp_path), man)
    back = read_manifest(str(tmp_path), kind=OBJECT_BANK)
    assert back == man and back.rows == 5
    assert json.loads((tmp_path / "_manifest.json").read_text())["rows"] == 5
    with pytest.raises(SchemaMismatchError, match="augmented_frame v1"):
        read_manifest(str(tmp_path), kind=FRAME)
    with pytest.raises(FileNotFoundError, match="not a stylepaste shard folder"):
        read_manifest(str(tmp_path / "nowhere"))


def test_v1_shards_are_still_read_with_a_note(tmp_path, caplog):
    from schemas.arrow import missing_in

    v1 = OBJECT_BANK.version_of(1)
    rows = [{k: v for k, v in _bank_row(i).items() if k in v1.schema.names} for i in range(2)]
    folder = tmp_path / "old_bank"
    folder.mkdir()
    pq.write_table(table_from_rows(rows, v1), folder / "part-0.parquet")
    with caplog.at_level("WARNING"):
        pf = open_shard(str(folder / "part-0.parquet"), OBJECT_BANK)
    assert pf.read().num_rows == 2 and "license_id" not in pf.schema_arrow.names
    assert any("object_bank v1" in r.getMessage() and "license_id" in r.getMessage() for r in caplog.records)
    assert missing_in(v1, OBJECT_BANK) == ["license_id", "license_name", "license_url", "coco_url", "flickr_url"]
    assert missing_in(FRAME.version_of(1), FRAME) == ["frame_terms"]
