"""The demo chain end to end at a tiny size: world -> bank -> augment -> finetune -> evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from stylepaste import cli
from stylepaste.demo import DEMO_CHECKPOINT, DemoConfig, run
from synthetic.world import WorldConfig
from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.models import build_model


@pytest.mark.slow
def test_demo_chain_runs_end_to_end(tmp_path):
    torch.manual_seed(0)
    base = tmp_path / "base.pt"
    save_checkpoint(build_model("small"), str(base))
    world = WorldConfig(out="world", train=6, val=2, anomaly=3, height=64, width=128, coco_images=6)
    cfg = DemoConfig(out=str(tmp_path / "demo"), checkpoint=str(base), world=world, steps=3, batch_size=2, workers=1, overlays=1, progress=False)
    summary = run(cfg)
    out = tmp_path / "demo"
    assert set(summary["seconds"]) == {"world", "bank", "augment", "finetune", "evaluate"}
    rows = {(r["model"].split(" ")[0], r["score"]) for r in summary["rows"]}
    assert rows == {("finetuned", s) for s in ("max_logit", "energy", "max_min")} | {
        ("base", s) for s in ("msp", "max_logit", "entropy", "energy", "sml", "max_min")}
    assert "cityscapes_val" in summary["miou_change"]["finetuned (k=5, reinhard+sensor)"]
    augmented = json.loads((out / "augmented" / "_manifest.json").read_text())
    assert augmented["counts"]["written"] == 6
    # Only the classifier changed: every other tensor of the finetuned model equals the base model's.
    a, b = build_model("small"), build_model("small")
    load_checkpoint(a, str(base))
    load_checkpoint(b, str(out / "finetune" / "model.pt"))
    sa, sb = a.state_dict(), b.state_dict()
    changed = sorted(k for k in sa if not torch.equal(sa[k], sb[k]))
    assert changed and all(k.startswith("final.6.") for k in changed)
    report = (out / "report" / "README.md").read_text()
    assert "| base | Energy |" in report and "ΔmIoU" in report
    # the head was trained on cached body features, with the anchored loss, and the targets are reported
    log = [json.loads(line) for line in (out / "finetune" / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["cached_features"] == 6 and log[0]["config"]["loss"]["inlier"] == "distill"
    targets = summary["targets"]
    base_ap = next(r["ap"] for r in summary["rows"] if r["model"] == "base" and r["score"] == "energy")
    ft_ap = next(r["ap"] for r in summary["rows"] if r["model"].startswith("finetuned") and r["score"] == "energy")
    assert targets["ap_ratio"] == pytest.approx(ft_ap / base_ap)
    assert targets["met"]["ap"] == (ft_ap / base_ap >= 4.0)
    assert set(targets["road_fpr"]) == {"base", "finetuned"} and "road FPR" in report
    overlay = next((out / "report" / "overlays" / "synthetic").glob("*.png"))
    assert np.asarray(Image.open(overlay)).shape == (64, 4 * 128, 3)  # frame, truth, finetuned, base


def test_demo_help_and_committed_checkpoint(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--help"])
    assert exc.value.code == 0
    assert "world -> object bank" in capsys.readouterr().out
    model = build_model("small")
    info = load_checkpoint(model, str(DEMO_CHECKPOINT))
    assert DEMO_CHECKPOINT.stat().st_size <= 20 * 1024 * 1024
    meta = info["metadata"]
    assert meta["model_config"]["output_stride"] == 8
    # the calibrated base model: val mIoU 67.0 on the synthetic val split, as the README records (target 70)
    assert meta["metadata"]["val"]["miou"] >= 0.665 and meta["metadata"]["val"]["frames"] == 50


def test_every_stage_help_is_clean_in_a_fresh_interpreter():
    """``stylepaste <stage> --help`` exits 0 for every stage and writes nothing to stderr (no import noise)."""
    import subprocess
    import sys

    script = (
        "import contextlib, io, sys\n"
        "from stylepaste import cli\n"
        "for stage in cli.STAGES:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            cli.main([stage, '--help'])\n"
        "        except SystemExit as e:\n"
        "            assert e.code == 0, (stage, e.code)\n"
        "    assert 'usage: stylepaste ' + stage in out.getvalue(), stage\n"
        "print('ok', len(cli.STAGES))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"ok {len(cli.STAGES)}"
    assert done.stderr == ""
