"""``stylepaste study`` at a tiny size: the cached head training equals ``stylepaste finetune``, and the report's
tables hold every setting with mean ± std computed from the per-run JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines import bank
from stylepaste import study
from style_transfer.registry import AlignerSpec
from synthetic import world
from trainer import cached, finetune
from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.data import ShardStream, StreamLoader
from trainer.heads import head_state_dict
from trainer.losses import LossConfig
from trainer.models import build_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("study")
    assert world.main(["--out", str(root / "world"), "--seed", "0", "--train", "8", "--val", "2", "--anomaly", "3",
                       "--height", "64", "--width", "128", "--coco-images", "6", "--workers", "1",
                       "--no-progress"]) == 0
    assert bank.main(["--coco", str(root / "world" / "coco"), "--split", "train2017", "--out", str(root / "bank"),
                      "--num-shards", "1"]) == 0
    torch.manual_seed(0)
    base = root / "base.pt"
    save_checkpoint(build_model("small"), str(base), arch="small")
    cfg = study.StudyConfig(world=str(root / "world"), bank=str(root / "bank"), bases=(str(base),),
                            out=str(root / "out"), alignments=("none", "reinhard+sensor"), ks=(5, 19),
                            heads=("classifier",), inliers=("distill", "ce"), seeds=(0, 1), steps=4, batch_size=2,
                            probe_steps=20, progress=False)
    doc = study.run(cfg)
    return {"root": root, "cfg": cfg, "doc": doc, "base": str(base)}


def test_batch_order_matches_stream_loader(tiny):
    shards = str(Path(tiny["cfg"].out) / "corpora" / "none")
    stream = ShardStream([shards], seed=3, shuffle_buffer=4, rank=0, world_size=1, uneven="pad", epochs=None)
    ids = cached.shard_frame_ids(stream)
    want = cached.batch_order(stream, 3, 2, 7)  # 7 batches of 3 over 8 frames: crosses epochs
    loader = iter(StreamLoader(stream, 3, num_workers=2))
    got = [next(loader)["frame_id"] for _ in range(7)]
    assert got == [[ids[s][r] for s, r in b] for b in want]


# Adam turns float noise in near-zero gradients into +-lr steps, so the whole-block case compares under SGD
# (its per-step losses are still compared, which pins the forward pass and the data order).
@pytest.mark.parametrize(("head", "workers", "k", "optimizer", "inlier"),
                         [("classifier", 2, 5, "adam", "distill"), ("final", 0, None, "sgd", "distill"),
                          ("classifier", 0, 5, "adam", "ce"), ("classifier", 2, 3, "sgd", "true_bce")])
def test_cached_finetune_equals_finetune_run(tiny, tmp_path, head, workers, k, optimizer, inlier):
    shards = str(Path(tiny["cfg"].out) / "corpora" / "reinhard+sensor")
    cfg = finetune.FinetuneConfig(shards=(shards,), checkpoint=tiny["base"], out=str(tmp_path / "ft"), arch="small",
                                  head=head, loss=LossConfig(k=k, inlier=inlier), steps=3, lr=1e-2, optimizer=optimizer, batch_size=2,
                                  flip=False, shuffle_buffer=4, workers=workers, seed=1, device="cpu", progress=False)
    losses: list[dict] = []
    finetune.run(cfg, on_step=lambda step, parts: losses.append(parts))
    ref = build_model("small")
    load_checkpoint(ref, str(tmp_path / "ft" / "model.pt"))

    base = build_model("small")
    load_checkpoint(base, tiny["base"])
    base.eval()
    cache = cached.compute_features(base, cached.shard_frames([shards]), head, torch.float32, batch=4)
    model, log = cached.finetune_cached(cfg, cache)
    assert len(log) == len(losses) == 3
    for a, b in zip(log, losses, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)
    mine, theirs = head_state_dict(model, head), head_state_dict(ref, head)
    assert set(mine) == set(theirs)
    for key in mine:
        torch.testing.assert_close(mine[key], theirs[key], rtol=1e-4, atol=1e-5)
    # the head really moved
    start = head_state_dict(base, head)
    assert any(not torch.equal(mine[key], start[key]) for key in mine)


def test_cached_path_refuses_augmentation(tiny):
    shards = str(Path(tiny["cfg"].out) / "corpora" / "none")
    cfg = finetune.FinetuneConfig(shards=(shards,), checkpoint=tiny["base"], out="x", arch="small", flip=True)
    with pytest.raises(ValueError, match="flip=True"):
        cached.check_cacheable(cfg)


def _cells(md: str, section: str) -> dict[str, list[str]]:
    part = md.split(section, 1)[1].split("###", 1)[0]
    rows = [line for line in part.splitlines() if line.startswith("| ") and not line.startswith("| Setting")]
    return {r.split(" | ")[0][2:]: [c.strip() for c in r.strip("| ").split(" | ")] for r in rows}


def test_report_tables_hold_every_setting_with_mean_and_std(tiny):
    cfg, out = tiny["cfg"], Path(tiny["cfg"].out)
    md = (out / "study.md").read_text()
    doc = json.loads((out / "study.json").read_text())
    runs = doc["runs"]
    assert len(runs) == 4 * 2  # (r+s k5 ce, none k5, r+s k5, r+s k19) x 2 seeds; the shared default runs once
    assert len(doc["base_runs"]) == 1
    tables = {
        "Inlier term": ["CE + logit distillation to the base (default)", "CE only (the loss as the poster writes it)"],
        "Style alignment": ["none", "reinhard+sensor (default)"],
        "Top-k": ["k = 5 (default)", "k = 19 (C, plain one-vs-rest)"],
        "Trained part": ["1x1 classifier (default)"],
    }
    default = "reinhard-sensor_k5_classifier_distill"
    keys = {"none": "none_k5_classifier_distill", "reinhard+sensor (default)": default,
            "k = 5 (default)": default, "k = 19 (C, plain one-vs-rest)": "reinhard-sensor_k19_classifier_distill",
            "1x1 classifier (default)": default, "CE + logit distillation to the base (default)": default,
            "CE only (the loss as the poster writes it)": "reinhard-sensor_k5_classifier_ce"}
    for section, labels in tables.items():
        cells = _cells(md, "### " + section)
        assert list(cells)[0].startswith("base models (no finetuning")
        assert list(cells)[1:] == labels
        base = doc["base_runs"][0]
        assert cells[list(cells)[0]][2] == f"{base['metrics']['max_logit']['auroc']:.2f}"
        for label in labels:
            mine = [r for r in runs if r["key"] == keys[label]]
            assert len(mine) == 2 and cells[label][1] == "2"
            col = 2
            for s in study.SCORES:
                for m in study.METRICS:
                    vals = np.array([r["metrics"][s][m] for r in mine])
                    assert cells[label][col] == f"{vals.mean():.2f} ± {vals.std(ddof=1):.2f}"
                    col += 1
            road = np.array([r["false_alarms"]["energy"][0]["fpr"] for r in mine])
            assert cells[label][col] == f"{road.mean():.2f} ± {road.std(ddof=1):.2f}"
            d = np.array([r["miou"] for r in mine]) - base["miou"]
            assert cells[label][col + 1] == f"{d.mean():.2f} ± {d.std(ddof=1):.2f}"
    # rerunning continues: nothing is repeated and the report is the same
    again = study.run(cfg)
    assert again["runs"] == runs


def test_report_marks_missing_runs(tiny, tmp_path):
    cfg = study.StudyConfig(world=tiny["cfg"].world, bank=tiny["cfg"].bank, bases=(tiny["base"],),
                            out=tiny["cfg"].out, alignments=("none", "fda"), ks=(5,), heads=("classifier",),
                            seeds=(0, 1), steps=4, batch_size=2, progress=False)
    study.run(cfg, report_only=True)
    md = (Path(cfg.out) / "study.md").read_text()
    assert re.search(r"\| fda \| 0 \| not run", md)


def test_cli_help(capsys):
    from stylepaste import cli

    with pytest.raises(SystemExit) as exc:
        study.main(["--help"])
    assert exc.value.code == 0
    assert "--base" in capsys.readouterr().out
    assert cli.STAGES.get("study", ("stylepaste.study",))[0] == "stylepaste.study"


def test_per_base_table_keeps_each_base_apart():
    cfg = study.StudyConfig(world="w", bank="b", bases=("runs/a/model.pt", "runs/b/model.pt"),
                            alignments=("none",), ks=(5,), heads=("classifier",), seeds=(0, 1))

    def metrics(v):
        return {s: {m: v + i for i, m in enumerate(study.METRICS)} for s in study.SCORES}

    bases = [{"kind": "base", "base": f"runs/{n}/model.pt", "base_sha": n, "metrics": metrics(v)}
             for n, v in (("b", 20.0), ("a", 10.0))]
    runs = [{"kind": "finetune", "key": st.key, "base_sha": b, "seed": seed, "metrics": metrics(v)}
            for st in cfg.settings() for b, vals in (("a", (1.0, 3.0)), ("b", (5.0, 5.0)))
            for seed, v in zip((0, 1), vals)]
    runs = [r for r in runs if not (r["key"] == "none_k5_classifier_distill" and r["base_sha"] == "b")]
    rows = _cells(study.per_base_table(cfg, bases, runs), "| Setting")
    head = "| Setting | a: Max logit AP↑"
    assert study.per_base_table(cfg, bases, runs).startswith(head)  # bases sorted by path, named by folder
    ap = study.METRICS.index("ap")
    fpr = study.METRICS.index("fpr95")
    assert rows["base model (no finetuning)"][1:5] == [f"{10 + ap:.2f}"] * 3 + [f"{10 + fpr:.2f}"]
    # base a: seeds 1 and 3 -> mean 2 ± std 1.41; base b: two equal runs -> ± 0.00; missing -> "not run"
    assert rows["none"][1] == f"{2 + ap:.2f} ± 1.41" and rows["none"][5] == "not run"
    default = "CE + logit distillation to the base (default)"  # the default setting, named by its first group
    assert rows[default][5] == f"{5 + ap:.2f} ± 0.00"
    assert rows["none"][-1] == "2/0" and rows[default][-1] == "2/2"


def test_learned_generator_joins_the_alignment_group(tiny, tmp_path):
    import warnings

    from style_transfer.learned import ColorShiftGenerator

    torch.manual_seed(0)
    gen = ColorShiftGenerator(hidden=4).eval()
    path = tmp_path / "gen.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(gen), str(path))
    params = json.dumps({"path": str(path), "kind": "torchscript"})
    learned = AlignerSpec("learned", {"path": str(path), "kind": "torchscript"})
    with pytest.raises(ValueError, match="needs the generator"):
        study.StudyConfig(world="w", bank="b", bases=("x",), alignments=("learned",))
    with pytest.raises(ValueError, match="JSON object with a 'path'"):
        study.config_from_args(study.build_parser().parse_args(["--base", "x", "--learned-params", '{"kind": "x"}']))
    with pytest.raises(ValueError, match="aligner-params must be a JSON object"):
        study.config_from_args(study.build_parser().parse_args(["--base", "x", "--learned-params", "[1]"]))
    assert study.config_from_args(study.build_parser().parse_args(["--base", "x", "--learned-params", params])
                                  ).learned == learned
    t = tiny["cfg"]
    cfg = study.StudyConfig(world=t.world, bank=t.bank, bases=t.bases, out=t.out, alignments=("none",),
                            learned=learned, ks=(5,), heads=("classifier",), seeds=(0,), steps=4,
                            batch_size=2, progress=False)
    assert cfg.alignments == ("none", "learned")
    doc = study.run(cfg)
    manifest = json.loads((Path(t.out) / "corpora" / "learned" / "_manifest.json").read_text())
    assert manifest["parameters"]["aligner"] == {"name": "learned", "params": {"kind": "torchscript",
                                                                               "path": str(path), "strength": 1.0}}
    assert [r["seed"] for r in doc["runs"] if r["key"] == "learned_k5_classifier_distill"] == [0]
    cells = _cells((Path(t.out) / "study.md").read_text(), "### Style alignment")
    assert list(cells)[1:] == ["none", "learned"] and cells["learned"][1] == "1"


def test_false_alarm_table_and_old_records_run_again(tiny):
    cfg, out = tiny["cfg"], Path(tiny["cfg"].out)
    doc = study.run(cfg, report_only=True)
    runs = doc["runs"]
    fa = runs[0]["false_alarms"]["energy"]
    assert len(fa) == 19
    total = sum(c["inlier_share"] or 0 for c in fa)
    assert total == pytest.approx(100.0)
    fpr = sum((c["fpr"] or 0) * (c["inlier_share"] or 0) / 100 for c in fa)
    assert fpr == pytest.approx(runs[0]["metrics"]["energy"]["fpr95"])  # exact: every inlier pixel counted
    cells = _cells((out / "study.md").read_text(), "### Where the false alarms are")
    mine = [r for r in runs if r["key"] == "none_k5_classifier_distill"]
    road = np.array([r["false_alarms"]["energy"][0]["fpr"] for r in mine], dtype=float)
    assert cells["none"][1] == "2" and cells["none"][2] == f"{road.mean():.2f} ± {road.std(ddof=1):.2f}"
    # a record of an older version is run again (same numbers: the training is deterministic)
    rec = out / "runs" / next(p.name for p in (out / "runs").glob("none_k5_classifier_distill_base*_seed0.json"))
    old = json.loads(rec.read_text())
    stale = {k: v for k, v in old.items() if k not in ("record_version", "false_alarms")}
    rec.write_text(json.dumps(stale))
    study.run(cfg)
    new = json.loads(rec.read_text())
    assert new["record_version"] == study.RECORD_VERSION and "false_alarms" in new
    assert new["metrics"] == old["metrics"] and new["head_sha256"] == old["head_sha256"]


def test_head_only_ceiling_probes(tiny):
    out = Path(tiny["cfg"].out)
    doc = json.loads((out / "study.json").read_text())
    (probe,) = doc["probes"]
    assert probe["kind"] == "probe" and probe["steps"] == 20
    for part in ("pastes", "test_cv"):
        assert 0.0 <= probe[part]["ap"] <= 100.0 and 0.0 <= probe[part]["auroc"] <= 100.0
    md = (out / "study.md").read_text()
    assert "### Head-only ceiling" in md
    row = next(line for line in md.split("### Head-only ceiling", 1)[1].splitlines() if line.startswith("| ")
               and not line.startswith("| Base model") and not line.startswith("|---"))
    cells = [c.strip() for c in row.strip("| ").split(" | ")]
    assert cells[1] == f"{doc['base_runs'][0]['metrics']['energy']['ap']:.2f}"
    assert cells[3] == f"{probe['pastes']['ap']:.2f}" and cells[6] == f"{probe['test_cv']['ap']:.2f}"


def test_probe_separates_a_linearly_separable_target():
    """On features where one channel marks the positives, the probe's AP is ~100 (it can learn what is there)."""
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(6, 4, 8, 16, generator=g)
    labels = torch.zeros(6, 32, 64, dtype=torch.uint8)
    labels[:, 8:16, 16:32] = 1
    labels[:, :2] = 255
    up = torch.nn.functional.interpolate(labels[:, None].float(), size=(8, 16), mode="nearest")[:, 0]
    feats[:, 2] += 6.0 * (up == 1).float()
    cache = cached.FeatureCache(feats, labels, [str(i) for i in range(6)], (32, 64))
    probe = study.train_probe(cache, range(6), 1, 19, steps=200, seed=0)
    m = study.probe_metrics([(probe, range(6))], cache)
    assert m["ap"] > 90.0
    with pytest.raises(ValueError, match="positive"):
        study.train_probe(cache, range(6), 254, 19, steps=1)


def test_finetune_cache_features_cli_writes_the_streamed_head(tiny, tmp_path, capsys):
    from trainer.checkpoint import read_checkpoint, split_checkpoint

    shards = str(Path(tiny["cfg"].out) / "corpora" / "reinhard+sensor")
    common = ["--shards", shards, "--checkpoint", tiny["base"], "--arch", "small", "--steps", "3", "--batch-size",
              "2", "--lr", "0.01", "--shuffle-buffer", "4", "--workers", "2", "--seed", "2", "--no-flip",
              "--device", "cpu", "--no-progress"]
    assert finetune.main([*common, "--out", str(tmp_path / "streamed")]) == 0
    assert finetune.main([*common, "--out", str(tmp_path / "cached"), "--cache-features"]) == 0
    assert "cached body features" in capsys.readouterr().err
    heads = [split_checkpoint(read_checkpoint(str(tmp_path / d / "head.pt")))[1] for d in ("streamed", "cached")]
    assert set(heads[0]) == set(heads[1]) == {"final.6.weight", "final.6.bias"}
    for key in heads[0]:
        torch.testing.assert_close(heads[1][key], heads[0][key], rtol=1e-4, atol=1e-5)
    model = build_model("small")
    load_checkpoint(model, str(tmp_path / "cached" / "model.pt"))  # a full model, loadable
    log = [json.loads(line) for line in (tmp_path / "cached" / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "start" and log[-1]["event"] == "end"
    assert {"ce", "anchor", "ood", "loss"} <= set(log[1])
    with pytest.raises(SystemExit) as exc:  # flips cannot be cached
        finetune.main([*[a for a in common if a != "--no-flip"], "--out", str(tmp_path / "x"), "--cache-features"])
    assert exc.value.code == 2
    assert "flip=True" in capsys.readouterr().err


def test_validation_world_is_evaluated_beside_the_test_world(tiny, tmp_path):
    """With ``eval_world`` every run is evaluated on both worlds: the test world's numbers stay where they were (equal
    to a study without a validation world), the validation world's equal a direct evaluation there, and the report
    shows the validation world first."""
    from dataclasses import replace

    w1 = tmp_path / "world1"
    assert world.main(["--out", str(w1), "--seed", "1", "--train", "2", "--val", "2", "--anomaly", "3",
                       "--height", "64", "--width", "128", "--coco-images", "2", "--workers", "1",
                       "--no-progress"]) == 0
    cfg = replace(tiny["cfg"], eval_world=str(w1), out=str(tmp_path / "out"), alignments=("none",), ks=(5,),
                  inliers=("distill",), seeds=(0,), probe_steps=0, default_alignment="none")
    doc = study.run(cfg)
    (run,) = doc["runs"]
    (base_rec,) = doc["base_runs"]
    plain = [r for r in tiny["doc"]["runs"] if r["key"] == run["key"] and r["seed"] == 0]
    assert plain and run["metrics"] == plain[0]["metrics"] and run["miou"] == plain[0]["miou"]
    assert run["validation"]["metrics"] != run["metrics"]
    assert run["validation"]["miou_change"] == pytest.approx(run["validation"]["miou"] - base_rec["validation"]["miou"])

    model = build_model("small")
    load_checkpoint(model, tiny["base"])
    model.eval()
    test = cached.compute_features(model, cached.dataset_frames("synthetic", str(w1), None), "classifier",
                                   torch.float32, 1)
    val = cached.compute_features(model, cached.dataset_frames("cityscapes_val", str(w1 / "cityscapes"), None),
                                  "classifier", torch.float32, 1)
    direct = study.evaluate_cached(model, "classifier", test, val)
    assert base_rec["validation"]["metrics"] == direct["metrics"]
    assert base_rec["validation"]["miou"] == pytest.approx(direct["miou"])

    (vbase,), (vrun,) = study.collect(cfg, "validation")
    assert vrun["metrics"] == run["validation"]["metrics"] and vbase["miou_change"] == 0.0
    assert doc["summary_validation"]["settings"][run["key"]]["n"] == 1
    md = (Path(cfg.out) / "study.md").read_text()
    assert 0 <= md.index("## On the validation world") < md.index("## On the test world")
    with pytest.raises(ValueError, match="split must be one of"):
        study.split_view(run, "train")
