"""``stylepaste demo``: the main job end to end on the embedded synthetic city.

world -> object bank (Beam) -> style-aligned augmentation (Beam) -> head-only finetuning (top-k one-vs-rest)
-> evaluation of the base model against the finetuned one on the synthetic anomaly set, plus the mIoU change on
the synthetic val split. The base model is the committed demo checkpoint (``trainer/assets/demo_small.pt``),
trained by ``stylepaste pretrain`` on the city that ``stylepaste world --seed 0`` writes with its defaults.

Every stage is the same command a user runs by hand; the demo only chains them and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines.world import add_world_size_arguments

DEMO_CHECKPOINT = Path(__file__).resolve().parents[1] / "trainer" / "assets" / "demo_small.pt"
"""The committed base model: ``small`` pretrained on the default synthetic city (seed 0)."""

BASE_SCORES: tuple[str, ...] = ("msp", "max_logit", "entropy", "energy", "sml", "max_min")
FINETUNED_SCORES: tuple[str, ...] = ("max_logit", "energy", "max_min")


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo run. The defaults are the documented demo; tests shrink them.

    Attributes:
        out: Output folder (local path); ``world/``, ``bank/``, ``augmented/``, ``finetune/``, ``report/`` inside.
        seed: Seed of the synthetic city and of every later stage.
        checkpoint: Base model (default: the committed demo checkpoint).
        train: Synthetic train frames. The committed base model was trained on the default 300.
        val: Synthetic val frames (mIoU).
        anomaly: Synthetic anomaly frames (the test set).
        height: Frame height.
        width: Frame width.
        coco_images: COCO-like photographs the object bank is cut from.
        aligner: Style aligner of the augmentation.
        k: Top-k of the one-vs-rest loss.
        steps: Finetuning steps.
        batch_size: Finetuning batch size.
        lr: Finetuning learning rate.
        workers: Worker processes for the world and DataLoader workers for finetuning.
        overlays: Hardest frames drawn in the report.
        progress: Show progress bars.
        keep: Keep existing stage outputs in ``out`` and reuse them (default: start afresh).
    """

    out: str = "runs/demo"
    seed: int = 0
    checkpoint: str = str(DEMO_CHECKPOINT)
    train: int = 300
    val: int = 50
    anomaly: int = 100
    height: int = 256
    width: int = 512
    coco_images: int = 120
    aligner: str = "reinhard+sensor"
    k: int = 5
    steps: int = 200
    batch_size: int = 8
    lr: float = 1e-3
    workers: int = 2
    overlays: int = 4
    progress: bool = True
    keep: bool = False


def build_parser() -> argparse.ArgumentParser:
    """The demo's command-line parser."""
    d = DemoConfig()
    p = argparse.ArgumentParser(
        prog="stylepaste demo",
        description="Run the main job on the embedded synthetic city: world -> object bank -> style-aligned "
        "augmentation -> head-only top-k finetuning -> evaluation. Prints the base model (MSP, max logit, "
        "entropy, energy, SML, max-min) against the finetuned model (max logit, energy, max-min) on the synthetic "
        "anomaly set and the mIoU change on the val split, and writes a report folder (markdown table, ROC/PR "
        "curves, overlays of hard frames).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", default=d.out, help="output folder")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of every stage")
    p.add_argument("--checkpoint", default=d.checkpoint, help="base model checkpoint")
    add_world_size_arguments(p, d)
    p.add_argument("--aligner", default=d.aligner, help="style aligner of the augmentation")
    p.add_argument("--k", type=int, default=d.k, help="top-k of the one-vs-rest loss")
    p.add_argument("--steps", type=int, default=d.steps, help="finetuning steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="finetuning batch size")
    p.add_argument("--lr", type=float, default=d.lr, help="finetuning learning rate")
    p.add_argument("--workers", type=int, default=d.workers, help="worker processes")
    p.add_argument("--overlays", type=int, default=d.overlays, help="hard frames drawn in the report")
    p.add_argument("--keep", action="store_true", help="reuse stage outputs already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


class _Stages:
    """Prints ``[demo i/n] name`` with timings."""

    def __init__(self, total: int):
        self.total, self.i, self.t0 = total, 0, time.perf_counter()
        self.times: dict[str, float] = {}

    def start(self, name: str, detail: str) -> float:
        self.i += 1
        print(f"\n[demo {self.i}/{self.total}] {name}: {detail}", flush=True)
        return time.perf_counter()

    def done(self, name: str, t: float) -> None:
        self.times[name] = time.perf_counter() - t
        print(f"[demo {self.i}/{self.total}] {name} done in {self.times[name]:.1f} s", flush=True)


def _check(rc: int, stage: str) -> None:
    if rc != 0:
        raise RuntimeError(f"demo stage {stage!r} failed with exit code {rc}")


def run(cfg: DemoConfig) -> dict:
    """Run the demo chain.

    Args:
        cfg: Demo settings.

    Returns:
        Summary: stage times, the evaluation rows, mIoU and its change, and the report folder.

    Raises:
        FileNotFoundError: If the base checkpoint is missing.
        RuntimeError: If a stage fails.
    """
    import logging

    from pipelines import augment, bank, world
    from trainer import finetune
    from trainer.evaluate import EvaluateConfig, ModelSpec, evaluate
    from trainer.report import false_alarm_tables, markdown_table

    if not Path(cfg.checkpoint).is_file():
        raise FileNotFoundError(f"base checkpoint not found: {cfg.checkpoint}")
    out = Path(cfg.out)
    if out.exists() and not cfg.keep:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    logging.getLogger().setLevel(logging.WARNING)
    quiet = [] if cfg.progress else ["--no-progress"]
    st = _Stages(5)
    wdir, bdir, adir, fdir, rdir = (out / n for n in ("world", "bank", "augmented", "finetune", "report"))

    t = st.start("world", f"synthetic city, {cfg.train} train / {cfg.val} val / {cfg.anomaly} anomaly frames "
                 f"at {cfg.height}x{cfg.width}, {cfg.coco_images} COCO-like photographs -> {wdir}")
    if not (cfg.keep and (wdir / "world.json").exists()):
        _check(world.main(["--out", str(wdir), "--seed", str(cfg.seed), "--train", str(cfg.train), "--val",
                           str(cfg.val), "--anomaly", str(cfg.anomaly), "--height", str(cfg.height), "--width",
                           str(cfg.width), "--coco-images", str(cfg.coco_images), "--workers", str(cfg.workers),
                           "--overwrite", *quiet]), "world")
    st.done("world", t)

    t = st.start("bank", f"COCO instance masks -> object bank shards (Beam) -> {bdir}")
    if not (cfg.keep and (bdir / "_manifest.json").exists()):
        _check(bank.main(["--coco", str(wdir / "coco"), "--split", "train2017", "--out", str(bdir),
                          "--num-shards", "2", "--overwrite"]), "bank")
    st.done("bank", t)

    t = st.start("augment", f"style-aligned ({cfg.aligner}) copy-paste into the train frames (Beam) -> {adir}")
    if not (cfg.keep and (adir / "_manifest.json").exists()):
        _check(augment.main(["--cityscapes", str(wdir / "cityscapes"), "--split", "train", "--bank", str(bdir),
                             "--out", str(adir), "--aligner", cfg.aligner, "--seed", str(cfg.seed),
                             "--num-shards", "4", "--overwrite"]), "augment")
    st.done("augment", t)

    t = st.start("finetune", f"head-only, top-{cfg.k} one-vs-rest, {cfg.steps} steps -> {fdir}")
    _check(finetune.main(["--shards", str(adir), "--checkpoint", cfg.checkpoint, "--arch", "small", "--out",
                          str(fdir), "--k", str(cfg.k), "--steps", str(cfg.steps), "--batch-size",
                          str(cfg.batch_size), "--lr", str(cfg.lr), "--seed", str(cfg.seed), "--workers",
                          str(cfg.workers), "--log-every", str(max(1, cfg.steps // 4)), *quiet]), "finetune")
    st.done("finetune", t)

    t = st.start("evaluate", f"base vs finetuned on the synthetic anomaly set and val split -> {rdir}")
    ecfg = EvaluateConfig(
        models=(ModelSpec("finetuned (k=%d, %s)" % (cfg.k, cfg.aligner), str(fdir / "model.pt"), "small",
                          FINETUNED_SCORES),
                ModelSpec("base", cfg.checkpoint, "small", BASE_SCORES)),
        datasets=(("synthetic", str(wdir)), ("cityscapes_val", str(wdir / "cityscapes"))),
        out=str(rdir), base_label="base", sml_train=str(wdir / "cityscapes"), sml_frames=min(100, cfg.train),
        overlays=cfg.overlays, progress=cfg.progress)
    result = evaluate(ecfg)
    st.done("evaluate", t)

    table = markdown_table(result)
    total = sum(st.times.values())
    summary = {
        "config": asdict(cfg), "seconds": st.times, "total_seconds": total, "rows": result.rows,
        "miou": result.miou, "miou_change": result.miou_change, "report": str(rdir),
    }
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    _write_report(rdir, cfg, table, st.times, false_alarm_tables(result))
    print("\n" + table)
    print(f"\nstylepaste demo finished in {total:.0f} s. Report: {rdir / 'README.md'} (table, ROC/PR curves, "
          f"overlays of the hardest frames).")
    return summary


def _write_report(rdir: Path, cfg: DemoConfig, table: str, times: dict[str, float], alarms: str) -> None:
    curves = sorted(p.name for p in (rdir / "curves").glob("*.png"))
    overlays = sorted(str(p.relative_to(rdir)) for p in (rdir / "overlays").rglob("*.png"))
    lines = [
        "# stylepaste demo report", "",
        f"Base model: `{Path(cfg.checkpoint).name}` (small DeepLabv3+ pretrained on the synthetic city). "
        f"Finetuned: the same model with only its 1x1 classifier trained for {cfg.steps} steps with the top-{cfg.k} "
        f"one-vs-rest loss on frames with `{cfg.aligner}`-aligned pasted objects.",
        "", "Anomaly metrics are pooled over all valid pixels of the synthetic anomaly set (in %); mIoU on the "
        "synthetic val split.", "", table, "",
        "Stage times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()), "", "## Curves", "",
    ]
    lines += [f"![{c}](curves/{c})" for c in curves]
    if alarms:
        lines += ["", "## Where the false alarms are", "", alarms]
    lines += ["", "## Hardest frames", "",
              "Frame | ground truth (anomaly red, void dark) | energy of the finetuned model | energy of the base "
              "model; each heat map is scaled between its own 1st and 99.9th percentile.", ""]
    lines += [f"![{o}]({o})" for o in overlays]
    (rdir / "README.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``stylepaste demo``."""
    a = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    cfg = DemoConfig(out=a.out, seed=a.seed, checkpoint=a.checkpoint, train=a.train, val=a.val, anomaly=a.anomaly,
                     height=a.height, width=a.width, coco_images=a.coco_images, aligner=a.aligner, k=a.k,
                     steps=a.steps, batch_size=a.batch_size, lr=a.lr, workers=a.workers, overlays=a.overlays,
                     progress=not a.no_progress, keep=a.keep)
    run(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
