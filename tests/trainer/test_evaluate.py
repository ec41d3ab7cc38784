from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from synthetic import world
from trainer.checkpoint import save_checkpoint
from trainer.evaluate import EvaluateConfig, ModelSpec, evaluate, main
from trainer.models import build_model
from evaluation.report import overlay_panels


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    assert world.main(["--out", str(out), "--train", "3", "--val", "2", "--anomaly", "3", "--height", "64",
                       "--width", "128", "--coco-images", "2", "--workers", "1", "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model("small")
        path = out / f"small_{seed}.pt"
        save_checkpoint(model, str(path))
        paths.append(str(path))
    return paths


def test_evaluate_writes_tables_curves_and_overlays(tiny_world, checkpoints, tmp_path):
    out = tmp_path / "eval"
    rc = main([
        "--checkpoint", checkpoints[0], "--arch", "small", "--scores", "max_logit,energy", "max_min",
        "--base-checkpoint", checkpoints[1], "--base-scores", "all", "--sml-train", str(tiny_world / "cityscapes"),
        "--dataset", f"synthetic={tiny_world}", "--dataset", f"cityscapes_val={tiny_world / 'cityscapes'}",
        "--overlays", "2", "--out", str(out), "--no-progress",
    ])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    got = {(r["model"], r["score"]) for r in res["rows"]}
    assert got == {("finetuned", s) for s in ("max_logit", "energy", "max_min")} | {
        ("base", s) for s in ("msp", "max_logit", "entropy", "energy", "max_min", "sml")}
    for r in res["rows"]:
        assert 0.0 <= r["auroc"] <= 100.0 and 0.0 <= r["ap"] <= 100.0 and 0.0 <= r["fpr95"] <= 100.0
        assert r["num_pos"] > 0 and r["num_neg"] > r["num_pos"]
    assert set(res["miou"]) == {"finetuned", "base"}
    change = res["miou_change"]["finetuned"]["cityscapes_val"]
    assert change == pytest.approx(res["miou"]["finetuned"]["cityscapes_val"] - res["miou"]["base"]["cityscapes_val"])
    md = (out / "results.md").read_text()
    assert "synthetic AUROC" in md and "Max-min logit" in md and "ΔmIoU" in md
    # false alarms by predicted class: both models (energy), one anomaly dataset, shares that add up
    fas = res["false_alarms"]
    assert [(f["model"], f["score"], f["dataset"]) for f in fas] == [
        ("finetuned", "energy", "synthetic"), ("base", "energy", "synthetic")]
    for f in fas:
        row = next(r for r in res["rows"] if (r["model"], r["score"], r["dataset"]) == (f["model"], "energy",
                                                                                      "synthetic"))
        assert len(f["classes"]) == 19 and f["stride"] == 16
        assert sum(c["sampled"] for c in f["classes"]) == -(-row["num_neg"] // 16)
        assert sum(c["inlier_share"] or 0 for c in f["classes"]) == pytest.approx(1.0)
        assert sum(c["alarm_share"] or 0 for c in f["classes"]) == pytest.approx(1.0)
        fpr = sum((c["fpr"] or 0) * (c["inlier_share"] or 0) for c in f["classes"])
        assert fpr == pytest.approx(row["fpr95"] / 100, abs=0.05)  # a 1-in-16 sample of the inliers
    assert "## Where the false alarms are" in md and "finetuned Energy: FPR" in md
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == len(res["rows"]) + 2
    for kind in ("roc", "pr"):
        img = np.asarray(Image.open(out / "curves" / f"synthetic_{kind}.png").convert("L"))
        assert img.std() > 5  # lines were drawn
    overlays = sorted((out / "overlays" / "synthetic").glob("*.png"))
    assert len(overlays) == 2
    hardest = res["hardest"]["synthetic"]
    assert [h[1] for h in hardest] == sorted(h[1] for h in hardest)
    frame = np.asarray(Image.open(next((tiny_world / "fishyscapes_lostandfound").rglob("images/0.png"))))
    panel = np.asarray(Image.open(overlays[0]))
    assert panel.shape == (frame.shape[0], 4 * frame.shape[1], 3)  # frame, truth, finetuned, base
    w = frame.shape[1]
    assert not np.array_equal(panel[20:, 2 * w:3 * w], panel[20:, 3 * w:])  # two models, two heat maps


def test_overlay_marks_the_anomaly_where_the_label_has_it():
    rng = np.random.default_rng(0)
    gray = rng.integers(60, 200, (40, 60, 1), dtype=np.uint8)
    image = np.repeat(gray, 3, axis=2)
    label = np.zeros((40, 60), np.uint8)
    label[10:20, 30:40] = 1
    label[35:] = 255
    scores = np.zeros((40, 60), np.float32)
    scores[10:20, 30:40] = 5.0
    panel = overlay_panels(image, label, scores)
    assert panel.shape == (40, 180, 3)
    gt = panel[:, 60:120].astype(int)
    redness = gt[..., 0] - (gt[..., 1] + gt[..., 2]) / 2
    assert redness[label == 1].min() > redness[label == 0].max() + 50
    assert redness[label == 1].mean() > redness[label == 0].mean() + 80
    heat = panel[:, 120:].astype(int).sum(-1)
    assert heat[label == 1].mean() > heat[label == 0].mean() + 200
    with pytest.raises(ValueError, match="differ in size"):
        overlay_panels(image, label[:-1], scores)


def test_sml_without_training_split_is_a_clear_error(tiny_world, checkpoints, tmp_path):
    cfg = EvaluateConfig(models=(ModelSpec("m", checkpoints[0], "small", ("sml",)),),
                         datasets=(("synthetic", str(tiny_world)),), out=str(tmp_path), progress=False)
    with pytest.raises(ValueError, match="--sml-train"):
        evaluate(cfg)


def test_report_folder_overwrite_rules_and_no_partial_report(tmp_path, monkeypatch):
    from evaluation import loop as eval_loop
    from trainer.evaluate import _begin_report, _discard_report

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    cfg = EvaluateConfig(models=(ModelSpec("m", "x.pt", "small", ("energy",)),), datasets=(("synthetic", "x"),),
                         out=str(precious), overwrite=True)
    with pytest.raises(FileExistsError, match="no results.json"):
        _begin_report(cfg)
    assert sorted(p.name for p in precious.iterdir()) == ["notes.txt"]

    report = tmp_path / "report"
    report.mkdir()
    (report / "results.json").write_text("{}")
    (report / "old_curve.png").write_text("old")
    with pytest.raises(FileExistsError, match="--overwrite"):
        _begin_report(dataclasses.replace(cfg, out=str(report), overwrite=False))

    # a run that fails half way leaves the previous report exactly as it was
    def boom(cfg, load):
        (Path(cfg.out) / "curves").mkdir()
        (Path(cfg.out) / "curves" / "half.png").write_text("partial")
        raise RuntimeError("killed half way")

    monkeypatch.setattr(eval_loop, "evaluate", boom)
    with pytest.raises(RuntimeError, match="half way"):
        evaluate(dataclasses.replace(cfg, out=str(report)))
    assert sorted(p.name for p in report.iterdir()) == ["old_curve.png", "results.json"]
    work, created = _begin_report(dataclasses.replace(cfg, out=str(tmp_path / "fresh")))
    _discard_report(str(tmp_path / "fresh"), work, created)
    assert not (tmp_path / "fresh").exists()


@pytest.fixture(scope="module")
def fault_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalworld")
    assert world.main(["--out", str(root / "w"), "--train", "1", "--val", "1", "--anomaly", "2", "--height", "64",
                       "--width", "128", "--coco-images", "0", "--workers", "1", "--no-progress"]) == 0
    torch.manual_seed(0)
    save_checkpoint(build_model("small"), str(root / "small.pt"))
    return root


def _broken_copy(fault_world, tmp_path, fault):
    import shutil

    from schemas.codecs import encode_png, read_label

    root = tmp_path / "w"
    shutil.copytree(fault_world / "w", root)
    fs_dir = root / "fishyscapes_lostandfound" / "FS_LostFound_full"
    label = fs_dir / "labels_masks" / "0.png"
    if fault == "label value 7":
        arr = read_label(str(label)).copy()
        arr[0, 0] = 7
        label.write_bytes(encode_png(arr))
    elif fault == "wrong-size label":
        label.write_bytes(encode_png(np.zeros((32, 64), np.uint8)))
    elif fault == "missing label":
        label.unlink()
    elif fault == "empty dataset":
        for p in (fs_dir / "images").iterdir():
            p.unlink()
        for p in (fs_dir / "labels_masks").iterdir():
            p.unlink()
    elif fault == "no anomaly pixel":
        for p in (fs_dir / "labels_masks").iterdir():
            arr = read_label(str(p)).copy()
            arr[arr == 1] = 0
            p.write_bytes(encode_png(arr))
    elif fault == "missing root":
        shutil.rmtree(root)
    return root


@pytest.mark.parametrize("fault, expected", [
    ("label value 7", "7"), ("wrong-size label", "0.png"), ("missing label", "0.png"),
    ("empty dataset", "synthetic"), ("no anomaly pixel", "anomal"), ("missing root", "w"), ("wrong arch", "r101"),
])
def test_evaluate_faults_end_in_one_line_errors(fault_world, tmp_path, capsys, fault, expected):
    from stylepaste import cli

    root = _broken_copy(fault_world, tmp_path, fault)
    arch = "r101" if fault == "wrong arch" else "small"
    rc = cli.main(["evaluate", "--checkpoint", str(fault_world / "small.pt"), "--arch", arch, "--dataset",
                   f"synthetic={root}", "--out", str(tmp_path / "eval"), "--no-progress", "--overlays", "0"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and err[0].startswith("stylepaste evaluate: error: "), err
    assert expected in err[0]
    assert not (tmp_path / "eval").exists()  # no partial report
