"""A corpus as a shared dataset: licences from the COCO json to the frame rows, info, verify, the card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from schemas.corpus import corpus_info, verify_corpus
from schemas.manifest import read_manifest
from stylepaste import cli
from synthetic.world import COCO_LICENSES


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    assert cli.main(["world", "--out", str(root / "world"), "--seed", "0", "--train", "8", "--val", "0", "--anomaly",
                     "0", "--height", "64", "--width", "128", "--coco-images", "10", "--workers", "1",
                     "--no-progress"]) == 0
    assert cli.main(["bank", "--coco", str(root / "world" / "coco"), "--out", str(root / "bank"),
                     "--num-shards", "2"]) == 0
    assert cli.main(["augment", "--cityscapes", str(root / "world" / "cityscapes"), "--bank", str(root / "bank"),
                     "--out", str(root / "aug"), "--num-shards", "2", "--paste-prob", "1.0"]) == 0
    return root


def test_licences_travel_from_the_coco_json_to_the_frame_rows(corpus):
    import pyarrow.parquet as pq

    doc = json.loads((corpus / "world" / "coco" / "annotations" / "instances_train2017.json").read_text())
    licence_of = {img["id"]: img["license"] for img in doc["images"]}
    names = {lid: name for lid, name, _ in COCO_LICENSES}
    bank = pq.read_table(str(corpus / "bank"), ignore_prefixes=["README", "_", "."]).to_pylist()
    assert bank and all(r["license_id"] == licence_of[r["image_id"]] for r in bank)
    assert all(r["license_name"] == names[r["license_id"]] for r in bank)
    by_object = {r["object_id"]: r for r in bank}
    frames = pq.read_table(str(corpus / "aug"), ignore_prefixes=["README", "_", "."]).to_pylist()
    pasted = [o for f in frames for o in f["objects"]]
    assert pasted
    for o in pasted:
        assert o["image_id"] == by_object[o["object_id"]]["image_id"]
        assert o["license_id"] == by_object[o["object_id"]]["license_id"]
    assert all(f["frame_terms"].startswith("Cityscapes terms") for f in frames)


def test_info_counts_categories_and_licences(corpus, capsys):
    info = corpus_info(str(corpus / "aug"))
    man = read_manifest(str(corpus / "aug"))
    assert info["rows"] == man.rows == 8 and info["kind"] == "augmented_frame" and info["schema_version"] == 2
    assert sum(v["pixels"] for v in info["categories"].values()) == man.counts["pixels"]["ood"]
    assert sum(v["pixels"] for v in info["licenses"].values()) == man.counts["pixels"]["ood"]
    assert abs(sum(v["pixel_share"] for v in info["licenses"].values()) - 100) < 1e-6
    assert all(v["name"] for v in info["licenses"].values())
    assert cli.main(["corpus", "info", str(corpus / "aug"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 8


def test_verify_catches_a_flipped_byte_and_a_missing_shard(corpus, tmp_path, capsys):
    copy = tmp_path / "aug"
    shutil.copytree(corpus / "aug", copy)
    assert verify_corpus(str(copy)) == []
    assert cli.main(["corpus", "verify", str(copy)]) == 0
    shards = sorted(copy.glob("shard-*.parquet"))
    data = bytearray(shards[0].read_bytes())
    data[len(data) // 2] ^= 0x01
    shards[0].write_bytes(bytes(data))
    shards[1].unlink()
    problems = verify_corpus(str(copy))
    assert len(problems) == 2 and "content differs" in problems[0] and shards[0].name in problems[0]
    assert "missing" in problems[1]
    assert cli.main(["corpus", "verify", str(copy)]) == 1
    assert shards[0].name in capsys.readouterr().err


def test_the_card_is_a_dataset_card_and_the_corpus_loads_with_datasets_and_duckdb(corpus, tmp_path, monkeypatch):
    import duckdb

    for name in ("bank", "aug"):
        card = (corpus / name / "README.md").read_text()
        _, header, body = card.split("---", 2)
        meta = yaml.safe_load(header)
        assert meta["configs"][0]["data_files"][0]["path"] == "*.parquet" and meta["license"] == "other"
        assert "## Licences" in body and "stylepaste corpus verify" in body
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(corpus / "aug" / "*.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == 8 and "objects" in ds.column_names
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{corpus / 'aug'}/*.parquet')").fetchall()[0][0]
    assert n == 8


def test_a_finetune_excludes_noncommercial_objects_and_records_it(corpus, tmp_path, capsys):
    import pyarrow.parquet as pq
    import torch

    from trainer.cached import run_cached
    from trainer.checkpoint import checkpoint_info, save_checkpoint
    from trainer.data import ShardStream
    from trainer.subsets import PasteFilter
    from trainer.finetune import FinetuneConfig, run
    from trainer.models import build_model

    frames = pq.read_table(str(corpus / "aug"), ignore_prefixes=["README", "_", "."]).to_pylist()
    nc = {1, 2, 3}
    expected_skip = {f["frame_id"] for f in frames if any(o["license_id"] in nc for o in f["objects"])}
    assert expected_skip and len(expected_skip) < len(frames)  # the fixture has both kinds

    flt = PasteFilter(exclude_licences=(1, 2, 3))
    stream = ShardStream([str(corpus / "aug")], shuffle=False, rank=0, world_size=1, epochs=1, paste_filter=flt)
    seen = {item["frame_id"] for item in stream}
    assert seen == {f["frame_id"] for f in frames} - expected_skip
    assert stream.filter_counts["skipped"] == len(expected_skip) == stream.filter_counts["skipped_licence"]
    dropped = frames[0]["objects"][0]["category_name"]
    allowed = tuple(sorted({o["category_name"] for f in frames for o in f["objects"]} - {dropped}))
    cats = PasteFilter(categories=allowed)
    without = {f["frame_id"] for f in frames if all(o["category_name"] != dropped for o in f["objects"])}
    assert frames[0]["frame_id"] not in without
    assert {i["frame_id"] for i in ShardStream([str(corpus / "aug")], shuffle=False, rank=0, world_size=1,
                                               epochs=1, paste_filter=cats)} == without

    torch.manual_seed(0)
    base = str(tmp_path / "base.pt")
    save_checkpoint(build_model("small"), base)
    assert cli.main(["finetune", "--shards", str(corpus / "aug"), "--checkpoint", base, "--arch", "small", "--out",
                     str(tmp_path / "ft"), "--steps", "2", "--batch-size", "2", "--workers", "0", "--no-flip",
                     "--exclude-licences", "1,2,3", "--no-progress"]) == 0
    assert f"skipped {len(expected_skip)}" in capsys.readouterr().err
    meta = checkpoint_info(str(tmp_path / "ft" / "model.pt"))["metadata"]["metadata"]
    assert meta["paste_filter"]["exclude_licences"] == [1, 2, 3]
    assert meta["paste_filter"]["frames"]["skipped"] == len(expected_skip)
    cfg = FinetuneConfig(shards=(str(corpus / "aug"),), checkpoint=base, out=str(tmp_path / "cached"), arch="small",
                         steps=2, batch_size=2, workers=0, flip=False, progress=False, paste_filter=flt)
    run_cached(cfg)
    assert checkpoint_info(str(tmp_path / "cached" / "model.pt"))["metadata"]["metadata"]["paste_filter"]["frames"] == \
        meta["paste_filter"]["frames"]
    assert run  # the streamed path is the CLI run above


def test_the_bank_can_leave_out_licences_at_build_time(corpus, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "bank_commercial"
    assert cli.main(["bank", "--coco", str(corpus / "world" / "coco"), "--out", str(out), "--num-shards", "1",
                     "--exclude-licences", "1,2,3"]) == 0
    rows = pq.read_table(str(out), ignore_prefixes=["README", "_", "."]).to_pylist()
    full = pq.read_table(str(corpus / "bank"), ignore_prefixes=["README", "_", "."]).to_pylist()
    assert rows and all(r["license_id"] not in (1, 2, 3) for r in rows)
    assert {r["object_id"] for r in rows} == {r["object_id"] for r in full if r["license_id"] not in (1, 2, 3)}
    man = read_manifest(str(out))
    # every annotation of those images is counted there, also ones a later rule (too small, ...) would drop
    assert man.counts["filtered"]["excluded_licence"] >= len(full) - len(rows) > 0


def test_append_grows_a_corpus_without_rewriting_a_shard(corpus, tmp_path):
    import hashlib

    import torch

    from trainer.cached import run_cached
    from trainer.checkpoint import save_checkpoint
    from trainer.data import ShardStream
    from trainer.finetune import FinetuneConfig, run
    from trainer.models import build_model

    aug = tmp_path / "aug"
    shutil.copytree(corpus / "aug", aug)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in aug.glob("*.parquet")}
    old = read_manifest(str(aug))
    # a finetune started before the append
    torch.manual_seed(0)
    base = str(tmp_path / "base.pt")
    save_checkpoint(build_model("small"), base)
    cfg = FinetuneConfig(shards=(str(aug),), checkpoint=base, out=str(tmp_path / "ft"), arch="small", steps=4,
                         batch_size=2, workers=0, flip=False, progress=False, save_every=2)

    class Stop(Exception):
        pass

    def stop(step, _):
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        run(cfg, on_step=stop)
    assert cli.main(["augment", "--cityscapes", str(corpus / "world" / "cityscapes"), "--bank", str(corpus / "bank"),
                     "--out", str(aug), "--num-shards", "2", "--paste-prob", "1.0", "--seed", "7", "--append"]) == 0
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in aug.glob("*.parquet")}
    assert {k: after[k] for k in before} == before  # the old shards byte for byte
    assert sorted(set(after) - set(before)) == ["append1-00000-of-00002.parquet", "append1-00001-of-00002.parquet"]
    man = read_manifest(str(aug))
    assert man.rows == 2 * old.rows and [s.path for s in man.shards[:2]] == [s.path for s in old.shards]
    assert man.counts["inputs"] == 2 * old.counts["inputs"] and man.source["appends"][0]["seed"] == 7
    assert verify_corpus(str(aug)) == []
    assert (aug / "_rejects.append1.jsonl").exists()
    # the grown corpus streams deterministically, twice the frames
    a = [i["frame_id"] for i in ShardStream([str(aug)], seed=3, rank=0, world_size=1, epochs=1)]
    b = [i["frame_id"] for i in ShardStream([str(aug)], seed=3, rank=0, world_size=1, epochs=1)]
    assert a == b and len(a) == man.rows
    # resuming the run started before the append is refused
    with pytest.raises(ValueError, match="corpus changed since the run started"):
        run(FinetuneConfig(**{**cfg.__dict__, "resume": True}))
    # the cached path trains on a corpus that holds each frame twice
    assert run_cached(FinetuneConfig(**{**cfg.__dict__, "out": str(tmp_path / "cached"), "steps": 2}))["step"] == 2
