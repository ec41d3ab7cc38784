"""The object-bank pipeline (pipelines.bank) end to end: Beam, the synthetic city, the real COCO samples."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import apache_beam as beam
import fsspec
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from bank_fixtures import EXPECTED, INPUTS, write_toy_coco

from pipelines import bank, beam_io
from pipelines.coco import DEFAULT_EXCLUDE
from schemas.arrow import OBJECT_BANK
from schemas.codecs import decode_png, read_rgb
from schemas.manifest import read_manifest, read_shard, shard_urls

TOY_RULES = ["--min-area", "16", "--min-side", "4"]


def _rows(out: str) -> list[dict]:
    rows = []
    for url in shard_urls(out, kind=OBJECT_BANK):
        rows += read_shard(url, OBJECT_BANK).to_pylist()
    return rows


def _expected_counts() -> list[tuple[str, int]]:
    counts: dict[str, int] = {"inputs": INPUTS, "rejected/duplicate_annotation": 1,
                              "images/annotated": 6, "images/read": 6, "per_category/dog": 2,
                              "per_category/bottle": 1, "per_category/chair": 1}
    for outcome in EXPECTED.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    return sorted(counts.items())


def test_pipeline_on_toy_coco_with_test_pipeline(tmp_path):
    root = f"memory://bank-toy-{uuid.uuid4().hex}"
    write_toy_coco(root)
    cfg = bank.BankConfig(coco=root, out=f"{root}/out", min_area=16, min_side=4, num_shards=3)
    work = f"{root}/work"
    with BeamTestPipeline() as p:
        out = bank.build_pipeline(p, cfg, work)
        assert_that(out.rows | beam.Map(lambda r: r["object_id"]),
                    equal_to([k for k, v in EXPECTED.items() if v == "written"]), label="KeptIds")
        assert_that(out.counts, equal_to(_expected_counts()), label="Counts")
        assert_that(out.rejects | beam.Map(lambda r: (r["stage"], r["reason"])),
                    equal_to([("coco", v.split("/")[1]) for v in EXPECTED.values() if v.startswith("rejected/")]
                             + [("coco", "duplicate_annotation")]), label="Rejects")
        assert_that(out.shards | beam.Map(lambda s: s["path"]),
                    equal_to([beam_io.shard_name(i, 3) for i in range(3)]), label="ShardFiles")


def test_main_writes_bank_rejects_and_manifest_in_memory(capsys):
    root = f"memory://bank-main-{uuid.uuid4().hex}"
    write_toy_coco(root)
    out = f"{root}/bank"
    assert bank.main(["--coco", root, "--out", out, "--num-shards", "2", *TOY_RULES]) == 0
    printed = capsys.readouterr().out
    assert f"inputs {INPUTS} = written 4 + filtered 5" in printed and "rejected 8" in printed

    fs, path = fsspec.core.url_to_fs(out)
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)) == [
        "README.md", "_manifest.json", "_rejects.jsonl", "shard-00000-of-00002.parquet",
        "shard-00001-of-00002.parquet"]
    with fsspec.open(f"{out}/README.md", "r") as f:
        card = f.read()
    assert card.startswith("---\npretty_name: \"stylepaste object bank\"") and "## Licences" in card
    man = read_manifest(out, kind=OBJECT_BANK)
    assert all(s.sha256 and s.bytes for s in man.shards) and man.written_by["stylepaste"]
    assert man.rows == 4 and man.counts["inputs"] == INPUTS
    assert man.counts["per_category"] == {"bottle": 1, "chair": 1, "dog": 2}
    assert man.counts["filtered"] == {"crowd": 1, "empty_mask": 1, "excluded_category": 2, "too_small": 1}
    assert man.parameters["excluded_categories"] == ["car", "person"]  # the default names the toy set has
    with fsspec.open(f"{out}/_rejects.jsonl", "r") as f:
        rejects = [json.loads(line) for line in f.read().splitlines()]
    by_id = {r["element"]["annotation_id"]: r for r in rejects if r["reason"] != "duplicate_annotation"}
    assert {k: "rejected/" + r["reason"] for k, r in by_id.items()} == {
        k: v for k, v in EXPECTED.items() if v.startswith("rejected/")}
    assert "corrupt.jpg" in by_id[301]["detail"] and "missing.jpg" in by_id[401]["detail"]
    assert "4 coordinates" in by_id[501]["detail"]

    rows = _rows(out)
    assert sorted(r["object_id"] for r in rows) == [101, 103, 201, 504]
    for r in rows:
        full = read_rgb(r["source_file"])
        x0, y0, x1, y1 = r["crop_box"]
        np.testing.assert_array_equal(decode_png(r["image"]), full[y0:y1, x0:x1])
        assert len(r["src_lab_mean"]) == 3 and r["src_sharpness"] >= 0 and r["src_noise"] >= 0

    # A second run refuses the non-empty folder; --overwrite replaces it.
    assert bank.main(["--coco", root, "--out", out, *TOY_RULES]) == 2
    assert "not empty" in capsys.readouterr().err
    assert bank.main(["--coco", root, "--out", out, "--exclude", "--keep-crowd", "--overwrite", *TOY_RULES]) == 0
    ids = sorted(r["object_id"] for r in _rows(out))
    assert ids == [101, 102, 103, 104, 201, 202, 504]


def test_main_refuses_bad_settings_before_running(tmp_path, capsys):
    root = str(tmp_path / "coco")
    write_toy_coco(root)
    out = str(tmp_path / "bank")
    assert bank.main(["--coco", root, "--out", out, "--exclude", "dgo"]) == 2
    assert "dgo" in capsys.readouterr().err
    mem = f"memory://bank-mp-{uuid.uuid4().hex}/out"
    assert bank.main(["--coco", root, "--out", mem, "--direct_running_mode", "multi_processing"]) == 2
    assert "memory://" in capsys.readouterr().err
    assert bank.main(["--coco", str(tmp_path / "nowhere"), "--out", out]) == 2
    assert not Path(out).exists()


def test_failed_run_leaves_nothing_behind(tmp_path, monkeypatch):
    root = str(tmp_path / "coco")
    write_toy_coco(root)
    out = tmp_path / "bank"
    cfg = bank.BankConfig(coco=root, out=str(out), min_area=16, min_side=4, num_shards=2)

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    with monkeypatch.context() as m:
        m.setattr(bank, "cut_image_objects", broken)
        with pytest.raises(Exception, match="disk on fire"):
            bank.run(cfg)
    assert not out.exists()

    first = bank.run(cfg)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with monkeypatch.context() as m:
        m.setattr(bank, "cut_image_objects", broken)
        with pytest.raises(Exception, match="disk on fire"):
            bank.run(bank.BankConfig(**{**cfg.__dict__, "overwrite": True, "num_shards": 5}))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert first.rows == 4


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> str:
    """COCO layout of a tiny synthetic city (synthetic.world)."""
    world = pytest.importorskip("synthetic.world")
    root = tmp_path_factory.mktemp("world")
    world.generate_world(world.WorldConfig(out=str(root), train=0, val=0, anomaly=0, coco_images=5,
                                           coco_min_side=128, coco_max_side=160, workers=1))
    return str(root / "coco")


def test_test_pipeline_on_the_synthetic_city(tiny_world, tmp_path):
    from pycocotools.coco import COCO

    api = COCO(f"{tiny_world}/annotations/instances_train2017.json")
    cfg = bank.BankConfig(coco=tiny_world, out=str(tmp_path / "out"), num_shards=2)
    excluded = {c["id"] for c in api.cats.values() if c["name"] in DEFAULT_EXCLUDE}
    expected = {}  # independent oracle: pycocotools masks and the documented rules
    for a in api.anns.values():
        if a["category_id"] in excluded:
            reason = "filtered/excluded_category"
        elif a["iscrowd"]:
            reason = "filtered/crowd"
        else:
            m = api.annToMask(a)
            ys, xs = np.nonzero(m)
            small = m.sum() < cfg.min_area or min(np.ptp(xs) + 1, np.ptp(ys) + 1) < cfg.min_side
            reason = "filtered/too_small" if small else "written"
        expected[a["id"]] = reason
    assert "written" in expected.values() and "filtered/excluded_category" in expected.values()
    outcome_counts = {}
    for v in expected.values():
        outcome_counts[v] = outcome_counts.get(v, 0) + 1

    with BeamTestPipeline() as p:
        out = bank.build_pipeline(p, cfg, str(tmp_path / "work"))
        assert_that(out.rows | beam.Map(lambda r: r["object_id"]),
                    equal_to([k for k, v in expected.items() if v == "written"]), label="KeptIds")
        assert_that(out.rows | beam.Map(lambda r: r["category_id"] in excluded), equal_to(
            [False] * outcome_counts["written"]), label="NoExcludedCategory")
        assert_that(out.counts | beam.Filter(lambda kv: kv[0] == "inputs" or kv[0].startswith("filtered/")
                                            or kv[0] == "written"),
                    equal_to([("inputs", len(expected)), *outcome_counts.items()]), label="Accounting")
        assert_that(out.rejects, equal_to([]), label="NoRejects")


def test_rows_do_not_depend_on_worker_count(tmp_path):
    root = str(tmp_path / "coco")
    write_toy_coco(root)
    outs = {}
    for workers, mode in ((1, "in_memory"), (2, "multi_processing")):
        out = tmp_path / f"bank{workers}"
        assert bank.main(["--coco", root, "--out", str(out), "--num-shards", "3", "--direct_num_workers",
                          str(workers), "--direct_running_mode", mode, *TOY_RULES]) == 0
        outs[workers] = out
    files = sorted(p.name for p in outs[1].iterdir())
    assert files == sorted(p.name for p in outs[2].iterdir())
    assert len([f for f in files if f.endswith(".parquet")]) == 3
    for name in files:
        if name != "_manifest.json":  # the manifest names its own output folder
            assert (outs[1] / name).read_bytes() == (outs[2] / name).read_bytes(), name
    assert read_manifest(str(outs[1])).counts == read_manifest(str(outs[2])).counts
    assert len(_rows(str(outs[2]))) == 4


@pytest.mark.parametrize("extra", [[], ["--exclude", "--keep-crowd"]], ids=["defaults", "everything"])
def test_real_coco_masks_equal_pycocotools(samples_dir, tmp_path, extra):
    from pycocotools.coco import COCO

    coco_root = samples_dir / "coco"
    ann_file = coco_root / "annotations" / "instances_val2017_subset.json"
    out = tmp_path / "bank"
    assert bank.main(["--coco", str(coco_root), "--split", "val2017", "--annotations", str(ann_file),
                      "--out", str(out), "--num-shards", "2", *extra]) == 0
    api = COCO(str(ann_file))
    rows = _rows(str(out))
    man = read_manifest(str(out), kind=OBJECT_BANK)
    assert man.counts["inputs"] == 77 and man.rows == len(rows) > 0
    assert man.counts["rejected"] == {}
    for r in rows:
        ann = api.anns[r["object_id"]]
        assert (ann["image_id"], ann["category_id"]) == (r["image_id"], r["category_id"])
        full = api.annToMask(ann)
        x0, y0, x1, y1 = r["crop_box"]
        np.testing.assert_array_equal(decode_png(r["mask"]), full[y0:y1, x0:x1])
        assert r["area"] == full.sum()  # nothing of the mask is cut off by the crop
        assert r["category_name"] == api.cats[r["category_id"]]["name"]
    crowd = [a["id"] for a in api.anns.values() if a["iscrowd"]]
    if extra:
        assert set(crowd) <= {r["object_id"] for r in rows}  # the crowd RLE decodes too
        assert "person" in man.counts["per_category"]
    else:
        assert not {r["category_name"] for r in rows} & set(DEFAULT_EXCLUDE)
        assert not set(crowd) & {r["object_id"] for r in rows}
        assert sum(man.counts["filtered"].values()) + man.rows == 77
