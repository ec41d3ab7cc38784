from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import augment
from pipelines.augment import AugmentConfig, contact_sheet
from pipelines.paste import VOID_LABEL_IDS, PasteConfig
from schemas.arrow import FRAME
from schemas.codecs import decode_image, decode_png, encode_png, read_label, read_rgb
from schemas.labels import IGNORE, OOD, label_ids_to_train_ids
from schemas.manifest import open_shard, read_manifest
from style_transfer.registry import AlignerSpec

DUCKDB_QUERY = """
SELECT o.category_name            AS category,
       count(*)                   AS objects,
       sum(o.ood_pixels)          AS ood_pixels,
       round(avg(o.scale), 3)     AS mean_scale
FROM (SELECT unnest(objects) AS o FROM read_parquet('{shards}'))
GROUP BY category
ORDER BY ood_pixels DESC, category
"""


def build_bank(coco_root: Path, split: str, out: Path, *, annotations: Path | None = None, min_area: int = 64,
               min_side: int = 4, num_shards: int = 2) -> int:
    """An object bank made by the bank pipeline (``stylepaste bank``) from a COCO layout."""
    from pipelines.bank import BankConfig
    from pipelines.bank import run as run_bank

    cfg = BankConfig(coco=str(coco_root), out=str(out), split=split,
                     annotations=None if annotations is None else str(annotations), min_area=min_area,
                     min_side=min_side, num_shards=num_shards, row_group_rows=4)
    return run_bank(cfg, _options(1)).rows


def _options(workers: int = 1) -> PipelineOptions:
    mode = "in_memory" if workers == 1 else "multi_processing"
    return PipelineOptions(["--runner=DirectRunner", f"--direct_num_workers={workers}",
                            f"--direct_running_mode={mode}"])


PASTE_FIELDS = {f.name for f in dataclasses.fields(PasteConfig)}


def _cfg(world: Path, out: Path | str, **kw) -> AugmentConfig:
    """Test settings; paste-plan keywords go to the composed PasteConfig, an aligner name to an AlignerSpec."""
    base = dict(cityscapes=str(world / "cityscapes"), bank=str(world / "bank"), out=str(out), num_shards=2,
                row_group_rows=2, device="cpu", seed=5)
    paste = dict(paste_prob=0.75, scale_min=0.12, scale_max=0.45)
    paste.update({k: kw.pop(k) for k in list(kw) if k in PASTE_FIELDS})
    if isinstance(kw.get("aligner"), str):
        kw["aligner"] = AlignerSpec(kw["aligner"])
    base.update(kw)
    return AugmentConfig(**base, paste=PasteConfig(**paste))


def _rows(out: Path) -> list[dict]:
    rows = []
    for shard in sorted(out.glob("*.parquet")):
        rows += open_shard(str(shard), FRAME).read().to_pylist()
    return rows


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from synthetic import world as world_stage

    root = tmp_path_factory.mktemp("world")
    rc = world_stage.main(["--out", str(root), "--train", "6", "--val", "0", "--anomaly", "0", "--height", "64",
                           "--width", "128", "--coco-images", "8", "--workers", "1", "--no-progress"])
    assert rc == 0
    n = build_bank(root / "coco", "train2017", root / "bank", min_area=16, min_side=3)
    assert n >= 4
    return root


@pytest.fixture(scope="module")
def run1(world, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("aug") / "out"
    augment.run(_cfg(world, out), _options(1))
    return out


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        augment.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--cityscapes", "--split", "--bank", "--out", "--aligner", "--align-strength", "--blend",
                "--paste-prob", "--objects-per-frame", "--scale-range", "--seed", "--num-shards", "--device",
                "--min-contrast", "--class-balanced", "--perspective", "--candidates-per-slot", "--runner",
                "--direct_num_workers"):
        assert opt in text
    from stylepaste.cli import STAGES

    assert STAGES["augment"][0] == "pipelines.augment"


def test_bad_arguments_are_reported(world, tmp_path, capsys):
    rc = augment.main(["--cityscapes", str(world / "cityscapes"), "--bank", str(world / "bank"),
                       "--out", str(tmp_path / "o"), "--scale-range", "0.5-0.1"])
    assert rc == 2 and "scale range" in capsys.readouterr().err
    rc = augment.main(["--cityscapes", str(world / "nowhere"), "--bank", str(world / "bank"),
                       "--out", str(tmp_path / "o")])
    assert rc == 2 and "not found" in capsys.readouterr().err
    with pytest.raises(ValueError, match="aligner-params"):
        AlignerSpec.parse("reinhard", "[1]")
    with pytest.raises(ValueError, match="unknown aligner 'issa'"):
        _cfg(world, tmp_path, aligner="reinhard+issa")
    with pytest.raises(ValueError, match="align-strength"):
        _cfg(world, tmp_path, aligner=AlignerSpec("reinhard", {"strength": 0.5}))


def test_world_run_writes_valid_pasted_frames(world, run1):
    man = read_manifest(str(run1), kind=FRAME)
    counts = man.counts
    assert counts["inputs"] == counts["written"] == man.rows == 6
    assert not counts["rejected"]
    slots = counts["slots"]
    assert slots["planned"] == sum(v for k, v in slots.items() if k != "planned") > 0
    assert slots.get("pasted", 0) > 0
    assert sum(counts["per_category"].values()) == slots["pasted"]
    assert len(man.shards) == 2 and all(s.row_groups >= 1 for s in man.shards if s.rows)
    assert (run1 / "_rejects.jsonl").read_text() == ""

    rows = _rows(run1)
    assert sorted(r["frame_id"] for r in rows) == sorted({r["frame_id"] for r in rows})
    # the aligner as it ran, in one shape in the manifest and in every row's provenance
    ran = AlignerSpec.from_json(man.parameters["aligner"])
    assert ran == AlignerSpec("reinhard+sensor", {"strength": 1.0})
    for row in rows:
        prov = json.loads(row["aligner_params"])
        assert AlignerSpec(prov["aligner"], prov["params"]) == ran
    total_ood = 0
    for row in rows:
        src_img = read_rgb(row["source_image"])
        lid_url = row["source_image"].replace("leftImg8bit/", "gtFine/").replace(
            "_leftImg8bit.png", "_gtFine_labelIds.png")
        lid = read_label(lid_url)
        tid = label_ids_to_train_ids(lid)
        img, lab = decode_image(row["image"]), decode_png(row["label"])
        assert img.shape == (row["height"], row["width"], 3) and lab.shape == (row["height"], row["width"])
        ood = lab == OOD
        assert ood.sum() == row["ood_pixels"] == sum(o["ood_pixels"] for o in row["objects"])
        total_ood += int(ood.sum())
        # non-pasted pixels keep their trainIds; nothing lands on the ego vehicle or other void labels
        assert np.array_equal(lab[~ood], tid[~ood])
        assert not np.isin(lid[ood], VOID_LABEL_IDS).any()
        assert row["aligner"].startswith("reinhard+sensor") and json.loads(row["aligner_params"])["blend"] == "feather"
        assert row["seed"] == 5 and row["split"] == "train"
        if not row["objects"]:
            assert np.array_equal(img, src_img)
            continue
        inside = np.zeros(ood.shape, bool)
        boxes = np.zeros(ood.shape, bool)
        for o in row["objects"]:
            x0, y0, x1, y1 = o["box"]
            assert ood[y0:y1, x0:x1].sum() >= o["ood_pixels"] > 0  # boxes may overlap, masks never do
            assert o["contrast"] >= 0.5 and 0 < o["scale"] <= 0.45 + 1 / 64
            boxes[y0:y1, x0:x1] = True
            inside[max(0, y0 - 8):y1 + 8, max(0, x0 - 8):x1 + 8] = True
        assert not (ood & ~boxes).any()
        # pixels away from the pasted objects are untouched; the objects changed the image
        assert np.array_equal(img[~inside], src_img[~inside])
        assert np.abs(img[ood].astype(int) - src_img[ood]).mean() > 10
    assert counts["pixels"]["ood"] == total_ood > 0


def test_one_and_two_workers_write_identical_bytes(world, run1, tmp_path):
    out2 = tmp_path / "out2"
    augment.run(_cfg(world, out2), _options(2))
    names1 = sorted(p.name for p in run1.iterdir())
    names2 = sorted(p.name for p in out2.iterdir())
    assert names1 == names2 and "_manifest.json" in names1
    for name in names1:
        a, b = (run1 / name).read_bytes(), (out2 / name).read_bytes()
        if name == "_manifest.json":  # identical but for the output folder it names
            ma, mb = json.loads(a), json.loads(b)
            assert ma["parameters"].pop("out") != mb["parameters"].pop("out")
            assert ma == mb
        else:
            assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest(), name
    assert sum(name.endswith(".parquet") for name in names1) == 2


def test_other_seed_changes_the_plan(world, run1, tmp_path):
    out = tmp_path / "seed"
    augment.run(_cfg(world, out, seed=6, blend="laplacian", aligner="reinhard", max_frames=3), _options(1))
    rows = {r["frame_id"]: r for r in _rows(out)}
    base = {r["frame_id"]: r for r in _rows(run1)}
    assert len(rows) == 3 and set(rows) <= set(base)
    assert any(rows[f]["objects"] != base[f]["objects"] for f in rows)
    assert all(json.loads(r["aligner_params"])["blend"] == "laplacian" for r in rows.values())


def test_invisible_pastes_are_counted_not_kept(world, tmp_path):
    out = tmp_path / "inv"
    man = augment.run(_cfg(world, out, paste_prob=1.0, min_contrast=1e6), _options(1))
    slots = man.counts["slots"]
    assert slots["planned"] > 0 and slots.get("pasted", 0) == 0
    assert slots.get("invisible", 0) > 0
    assert slots["planned"] == sum(v for k, v in slots.items() if k != "planned")
    assert man.counts["candidates"]["invisible"] >= slots["invisible"]
    rows = _rows(out)
    assert len(rows) == 6 and all(r["ood_pixels"] == 0 and not r["objects"] for r in rows)


def _copy_tree(src: Path, dst: Path) -> None:
    import shutil

    shutil.copytree(src, dst)


def test_rejects_and_accounting(world, tmp_path):
    city = tmp_path / "city"
    _copy_tree(world / "cityscapes", city)
    images = sorted((city / "leftImg8bit" / "train").glob("*/*.png"))
    gt = lambda img, kind: Path(str(img).replace("leftImg8bit/", "gtFine/").replace(  # noqa: E731
        "_leftImg8bit.png", f"_gtFine_{kind}.png"))
    for kind in ("labelIds", "labelTrainIds"):  # 0: no label at all
        gt(images[0], kind).unlink()
    gt(images[1], "labelTrainIds").unlink()  # 1: labelIds only -> converted, and mismatching in size
    gt(images[1], "labelIds").write_bytes(encode_png(np.zeros((32, 64), np.uint8)))
    images[2].write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)  # 2: unreadable image
    gt(images[3], "labelTrainIds").unlink()  # 3: fine, trainIds converted from labelIds
    out = tmp_path / "out"
    man = augment.run(_cfg(world, out, cityscapes=str(city), paste_prob=1.0), _options(1))
    c = man.counts
    assert c["inputs"] == 6 and c["written"] == 3
    assert c["rejected"] == {"missing_label": 1, "size_mismatch": 1, "unreadable_image": 1}
    lines = [json.loads(line) for line in (out / "_rejects.jsonl").read_text().splitlines()]
    assert sorted(r["reason"] for r in lines) == ["missing_label", "size_mismatch", "unreadable_image"]
    assert all(r["stage"] == "augment" and r["element"]["frame_id"] for r in lines)
    row3 = next(r for r in _rows(out) if r["source_image"] == str(images[3]))
    assert row3["source_label"].endswith("_gtFine_labelIds.png")


def test_shards_read_without_our_code(run1):
    import duckdb
    import pandas as pd

    # plain pyarrow / pandas over the folder (the dataset card README.md and the _files are skipped)
    skip = ["README", "_", "."]
    table = pq.read_table(str(run1), ignore_prefixes=skip)
    assert table.num_rows == 6
    assert table.schema.field("objects").type == FRAME.schema.field("objects").type
    assert table.schema.metadata[b"stylepaste.schema"] == b"augmented_frame"
    df = pd.read_parquet(str(run1), ignore_prefixes=skip)
    assert len(df) == 6 and set(df["frame_id"]) == set(table.column("frame_id").to_pylist())
    assert int(df["ood_pixels"].sum()) == read_manifest(str(run1)).counts["pixels"]["ood"]
    res = duckdb.sql(DUCKDB_QUERY.format(shards=f"{run1}/*.parquet")).fetchall()
    per_cat = read_manifest(str(run1)).counts["per_category"]
    assert {r[0]: r[1] for r in res} == per_cat
    assert sum(r[2] for r in res) == int(df["ood_pixels"].sum())
    assert [r[2] for r in res] == sorted((r[2] for r in res), reverse=True)
    # image bytes are plain PNG any reader decodes
    from PIL import Image
    import io

    first = df.iloc[0]
    assert Image.open(io.BytesIO(first["image"])).size == (first["width"], first["height"])
    assert pa.types.is_binary(table.schema.field("label").type)


def test_real_samples_full_resolution(samples_dir, tmp_path):
    bank = tmp_path / "bank"
    n = build_bank(samples_dir / "coco", "val2017", bank,
                   annotations=samples_dir / "coco" / "annotations" / "instances_val2017_subset.json")
    assert n > 5
    out = tmp_path / "out"
    cfg = AugmentConfig(cityscapes=str(samples_dir / "cityscapes"), bank=str(bank), out=str(out),
                        paste=PasteConfig(paste_prob=1.0, objects_min=2, objects_max=3, scale_min=0.08, scale_max=0.3),
                        max_frames=3, num_shards=1, device="cpu", seed=1)
    man = augment.run(cfg, _options(1))
    assert man.counts["written"] == 3 and man.counts["slots"].get("pasted", 0) >= 3
    rows = _rows(out)
    assert all((r["height"], r["width"]) == (1024, 2048) for r in rows)
    sheet = contact_sheet(rows, tile_height=256)
    (tmp_path / "contact_sheet.png").write_bytes(encode_png(sheet))
    assert sheet.shape == (3 * 256 + 2 * 4, 2 * 512 + 4, 3)
    for i, row in enumerate(rows):
        top = i * (256 + 4)
        img_tile = sheet[top:top + 256, :512].astype(int)
        lab_tile = sheet[top:top + 256, 516:1028]
        assert img_tile.std() > 20  # a real street scene, not a blank tile
        white = (lab_tile == 255).all(axis=2)
        # the white (OoD) share of the label tile matches the row's pasted pixels
        assert abs(white.mean() - row["ood_pixels"] / (1024 * 2048)) < 0.01
        lab = decode_png(row["label"])
        src = read_rgb(row["source_image"])
        img = decode_image(row["image"])
        for o in row["objects"]:
            x0, y0, x1, y1 = o["box"]
            a0, b0 = x0 // 4, y0 // 4
            assert tuple(sheet[top + b0, a0]) == (255, 0, 0)  # the box is drawn
            sel = lab[y0:y1, x0:x1] == OOD
            assert sel.sum() == o["ood_pixels"]
            # the object is visible in the frame and differs from the street it covers
            assert np.abs(img[y0:y1, x0:x1][sel].astype(int) - src[y0:y1, x0:x1][sel]).mean() > 8
            assert (decode_png(row["label"])[y0:y1, x0:x1][sel] == OOD).all()
        assert not (lab == OOD)[read_label(row["source_label"].replace("labelTrainIds", "labelIds")) == 1].any()
        assert (lab[lab != OOD] != OOD).all() and lab.max() <= IGNORE


def test_memory_urls(world):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.put(str(world / "cityscapes"), "/augtest/cityscapes", recursive=True)
    fs.put(str(world / "bank"), "/augtest/bank", recursive=True)
    cfg = _cfg(world, "memory://augtest/out", cityscapes="memory://augtest/cityscapes",
               bank="memory://augtest/bank", max_frames=2)
    with pytest.raises(ValueError, match="memory://"):
        augment.run(cfg, _options(2))
    man = augment.run(cfg, _options(1))
    assert man.counts["written"] == 2
    assert read_manifest("memory://augtest/out", kind=FRAME).rows == 2
    assert fs.exists("/augtest/out/_rejects.jsonl") and not fs.exists("/augtest/out/_temporary")
    fs.rm("/augtest", recursive=True)


@pytest.mark.gpu
def test_cuda_alignment_keeps_the_placements(world, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    outs = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        augment.run(_cfg(world, out, device=device, min_contrast=0.0), _options(1))
        outs[device] = {r["frame_id"]: r for r in _rows(out)}
    assert outs["cpu"].keys() == outs["cuda"].keys()
    for fid, row in outs["cpu"].items():
        other = outs["cuda"][fid]
        # placement does not depend on the device, so the label maps agree exactly
        assert row["label"] == other["label"]
        assert [o["object_id"] for o in row["objects"]] == [o["object_id"] for o in other["objects"]]
        diff = np.abs(decode_image(row["image"]).astype(int) - decode_image(other["image"]))
        assert diff.mean() < 1.0


def _cut_idat(png: bytes, keep: float) -> bytes:
    """The PNG with its image data cut to ``keep`` of its length, every chunk CRC recomputed (passes a CRC check)."""
    import struct
    import zlib

    out, pos = [png[:8]], 8
    while pos < len(png):
        (n,) = struct.unpack(">I", png[pos:pos + 4])
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + n]
        if kind == b"IDAT":
            data = data[: int(len(data) * keep)]
        out.append(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data)))
        pos += 12 + n
    return b"".join(out)


def test_copied_frames_are_decoded_labels_checked_and_an_empty_run_warns(world, tmp_path, caplog):
    city = tmp_path / "city"
    _copy_tree(world / "cityscapes", city)
    images = sorted((city / "leftImg8bit" / "train").glob("*/*.png"))
    images[0].write_bytes(_cut_idat(images[0].read_bytes(), 0.4))  # CRCs fine, zlib stream cut
    train_ids = Path(str(images[1]).replace("leftImg8bit/", "gtFine/").replace(
        "_leftImg8bit.png", "_gtFine_labelTrainIds.png"))
    bad = read_label(str(train_ids)).copy()
    bad[0, :5] = 77
    train_ids.write_bytes(encode_png(bad))
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        man = augment.run(_cfg(world, out, cityscapes=str(city), paste_prob=0.0), _options(1))
    assert man.counts["rejected"] == {"unreadable_image": 1, "invalid_label": 1}
    lines = {json.loads(line)["reason"]: json.loads(line)["detail"] for line in
             (out / "_rejects.jsonl").read_text().splitlines()}
    assert "77" in lines["invalid_label"] and str(train_ids) in lines["invalid_label"]
    for row in _rows(out):  # every row written decodes
        assert decode_image(row["image"]).shape == (64, 128, 3)
    assert any("no object was pasted" in r.getMessage() for r in caplog.records)
    assert "no object was pasted" in augment.summary_lines(man, str(out))
