"""Head finetuning end to end: outputs, exact resume, public checkpoint layouts, 2-process gloo DDP."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.checkpoint import load_checkpoint, read_checkpoint
from trainer.finetune import FinetuneConfig, main, run
from trainer.heads import head_state_dict
from trainer.models import build_model
from trainer_fixtures import write_frame_shards

REPO = Path(__file__).resolve().parents[2]


class Interrupt(Exception):
    """Raised from the step callback to simulate a killed run."""


def _cfg(shards: Path, ckpt: str, out: Path, **kw) -> FinetuneConfig:
    base = dict(shards=(str(shards),), checkpoint=ckpt, out=str(out), arch="small", steps=6, batch_size=2,
                crop=(16, 24), scale=(0.8, 1.2), workers=2, save_every=2, log_every=2, lr=1e-2, progress=False)
    base.update(kw)
    return FinetuneConfig(**base)


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_resume_after_interruption_matches_an_uninterrupted_run(shard_dir: Path, small_checkpoint: str,
                                                                 tmp_path: Path) -> None:
    full = run(_cfg(shard_dir, small_checkpoint, tmp_path / "full"))

    def stop_at_5(step: int, _: dict) -> None:
        if step == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(_cfg(shard_dir, small_checkpoint, tmp_path / "cut"), on_step=stop_at_5)
    assert read_checkpoint(str(tmp_path / "cut" / "last.pt"))["step"] == 4
    with pytest.raises(FileExistsError, match="--resume"):
        run(_cfg(shard_dir, small_checkpoint, tmp_path / "cut"))
    with pytest.raises(ValueError, match="batch_size"):
        run(_cfg(shard_dir, small_checkpoint, tmp_path / "cut", resume=True, batch_size=3))
    other = write_frame_shards(tmp_path / "other", seed=9)
    with pytest.raises(ValueError, match="shards"):
        run(_cfg(other, small_checkpoint, tmp_path / "cut", resume=True))
    # the same shards typed another way (relative to the working folder, trailing slash) resume
    cwd = os.getcwd()
    os.chdir(shard_dir.parent)
    try:
        resumed = run(_cfg(Path(shard_dir.name), small_checkpoint, tmp_path / "cut", resume=True))
    finally:
        os.chdir(cwd)
    assert resumed["step"] == 6
    assert resumed["head_sha256"] == full["head_sha256"]
    a = read_checkpoint(str(tmp_path / "full" / "head.pt"))["state_dict"]
    b = read_checkpoint(str(tmp_path / "cut" / "head.pt"))["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    events = [r["event"] for r in _log(tmp_path / "cut")]
    assert events.count("start") == 2 and events[-1] == "end"


def test_outputs_keep_the_body_and_hold_the_best_head(shard_dir: Path, small_checkpoint: str,
                                                      tmp_path: Path) -> None:
    val = write_frame_shards(tmp_path / "val", shards=1, rows=3, seed=7, prefix="v")
    out = tmp_path / "out"
    result = run(_cfg(shard_dir, small_checkpoint, out, head="final", val_shards=(str(val),), val_every=2,
                      workers=0, steps=4))
    vals = [r for r in _log(out) if r["event"] == "val"]
    assert [r["step"] for r in vals] == [0, 2, 4]
    best = max(vals, key=lambda r: r["ap"])
    assert result["best"] == {"step": best["step"], "ap": best["ap"]}

    base = build_model("small")
    load_checkpoint(base, small_checkpoint)
    tuned = build_model("small")
    load_checkpoint(tuned, str(out / "model.pt"))
    head = read_checkpoint(str(out / "head.pt"))
    assert head["metadata"]["step"] == best["step"]
    head_keys = set(head_state_dict(tuned, "final"))
    assert set(head["state_dict"]) == head_keys
    for key, value in tuned.state_dict().items():
        if key in head_keys:
            assert torch.equal(value, head["state_dict"][key]), key
        else:
            assert torch.equal(value, base.state_dict()[key]), f"frozen {key} changed"
    if best["step"] > 0:
        assert any(not torch.equal(tuned.state_dict()[k], base.state_dict()[k]) for k in head_keys)
    partial = build_model("small")
    report = load_checkpoint(partial, str(out / "head.pt"), strict=False)
    assert set(report["missing_keys"]).isdisjoint(head_keys)


def test_base_checkpoint_in_a_public_layout(shard_dir: Path, small_checkpoint: str, tmp_path: Path) -> None:
    state = read_checkpoint(small_checkpoint)["state_dict"]
    public = {"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 3,
              "mean_iu": np.float64(0.5), "command": "train.py", "optimizer": {}}
    url = str(tmp_path / "cityscapes_best.pth")
    torch.save(public, url)
    result = run(_cfg(shard_dir, url, tmp_path / "out", steps=2, workers=0))
    assert result["step"] == 2 and (tmp_path / "out" / "model.pt").exists()


def test_two_process_gloo_run_ends_with_identical_weights(shard_dir: Path, small_checkpoint: str,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "trainer.finetune", "--shards", str(shard_dir), "--checkpoint", small_checkpoint, "--arch",
           "small", "--out", str(out), "--steps", "4", "--batch-size", "2", "--crop", "16,24", "--workers", "1",
           "--lr", "0.01", "--head", "final", "--save-every", "2", "--log-every", "2", "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = _log(out)
    start = next(r for r in log if r["event"] == "start")
    assert start["world_size"] == 2
    end = log[-1]
    hashes = end["head_sha256_per_rank"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    state = read_checkpoint(str(out / "last.pt"))
    streams = [json.loads(s) for s in state["stream"]]
    assert [s["rank"] for s in streams] == [0, 1] and all(s["batches"] == 4 for s in streams)
    single = run(dataclasses.replace(_cfg(shard_dir, small_checkpoint, tmp_path / "one"), steps=4, workers=1,
                                     head="final", scale=(1.0, 1.0)))
    assert single["head_sha256"] != hashes[0]  # the two ranks trained on different data, averaged


def test_command_line(shard_dir: Path, small_checkpoint: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "--val-shards" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--shards", str(shard_dir), "--checkpoint", small_checkpoint, "--out", str(tmp_path), "--crop", "16"])
    assert exc.value.code == 2
    assert main(["--shards", str(shard_dir), "--checkpoint", small_checkpoint, "--arch", "small", "--out",
                 str(tmp_path / "cli"), "--steps", "1", "--batch-size", "1", "--workers", "0", "--ovr",
                 "--loss", "topk_ovr", "--no-progress"]) == 0
    cfg = json.loads(read_checkpoint(str(tmp_path / "cli" / "last.pt"))["config"])
    assert cfg["loss"]["k"] is None and cfg["batch_size"] == 1
