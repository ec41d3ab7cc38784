"""``stylepaste pretrain`` on a tiny Cityscapes layout: reproducible, loadable, evaluated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from schemas.codecs import encode_png
from trainer.checkpoint import load_checkpoint, read_checkpoint
from trainer.models import build_model
from trainer.pretrain import PretrainConfig, lr_factor, main, run

# labelIds of road, building, vegetation, sky, car and their colours in the tiny world.
_CLASSES = {7: (128, 64, 128), 11: (70, 70, 70), 21: (107, 142, 35), 23: (70, 130, 180), 26: (0, 0, 142)}


def _write_city(root: Path, split: str, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        ids = np.full((32, 48), 23, np.uint8)
        ids[12:20] = 11
        ids[14:20, int(rng.integers(0, 30)):][:, :10] = 21
        ids[20:] = 7
        ids[22:28, int(rng.integers(0, 36)):][:, :10] = 26
        ids[0, :4] = 0  # unlabeled -> ignore
        image = np.zeros((32, 48, 3), np.uint8)
        for lid, colour in _CLASSES.items():
            image[ids == lid] = colour
        image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
        name = f"tiny_{i:06d}_000019"
        (root / "leftImg8bit" / split / "tiny").mkdir(parents=True, exist_ok=True)
        (root / "gtFine" / split / "tiny").mkdir(parents=True, exist_ok=True)
        (root / "leftImg8bit" / split / "tiny" / f"{name}_leftImg8bit.png").write_bytes(encode_png(image))
        (root / "gtFine" / split / "tiny" / f"{name}_gtFine_labelIds.png").write_bytes(encode_png(ids))


def test_pretrain_is_reproducible_and_loadable(tmp_path: Path) -> None:
    root = tmp_path / "cityscapes"
    _write_city(root, "train", 6, 0)
    _write_city(root, "val", 2, 1)
    kw = dict(cityscapes=str(root), steps=2, batch_size=2, crop=(24, 32), scale=(0.8, 1.25), warmup=1,
              lr=1e-3, progress=False)
    a = run(PretrainConfig(out=str(tmp_path / "a"), workers=2, **kw))
    b = run(PretrainConfig(out=str(tmp_path / "b"), workers=0, **kw))
    sa = read_checkpoint(a["model"])["state_dict"]
    sb = read_checkpoint(b["model"])["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # same seed -> same weights, whatever the workers
    model = build_model("small")
    info = load_checkpoint(model, a["model"])
    assert info["metadata"]["metadata"]["val"]["frames"] == 2
    init = build_model("small")
    assert any(not torch.equal(v, init.state_dict()[k]) for k, v in model.state_dict().items())
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert 0.0 <= metrics["val"]["miou"] <= 1.0 and len(metrics["val"]["iou"]) == 19
    assert Path(a["model"]).stat().st_size < 10_000_000


def test_schedule_and_command_line(tmp_path: Path) -> None:
    cfg = PretrainConfig(cityscapes="x", out="y", steps=100, warmup=10)
    assert lr_factor(0, cfg) == 0.1 and lr_factor(9, cfg) == 1.0
    assert lr_factor(55, cfg) < 1.0 and lr_factor(100, cfg) == 0.0
    try:
        main(["--cityscapes", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--steps", "1"])
    except FileNotFoundError as err:
        assert "missing" in str(err)
    else:
        raise AssertionError("a missing dataset must be an error")
