"""``stylepaste demo``: the main job end to end on the embedded synthetic city.

world -> object bank (Beam) -> style-aligned augmentation (Beam) -> head-only finetuning (top-k one-vs-rest with
the inlier logits anchored to the base model) -> evaluation of the base model against the finetuned one on the
synthetic anomaly set, plus the mIoU change on the synthetic val split. The base model is the committed demo
checkpoint (``trainer/assets/demo_small.pt``), trained by ``stylepaste pretrain`` on the city that ``stylepaste
world --seed 0`` writes with its defaults.

Every stage is the same code a user runs by hand; the demo only chains them and prints a summary. The finetune
stage trains the head on cached body features (``stylepaste finetune --cache-features``: the same steps, no body
pass per step), which needs whole frames without flips; ``--no-cache-features`` streams the shards instead.
"""

from __future__ import annotations

import argparse
import logging
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from apache_beam.options.pipeline_options import PipelineOptions

from evaluation.report import false_alarm_tables, markdown_table
from evaluation.results import EvaluateConfig, ModelSpec
from pipelines import augment, bank
from pipelines.augment import AugmentConfig
from pipelines.bank import BankConfig
from style_transfer.aligners import DEFAULT_ALIGNER
from style_transfer.registry import AlignerSpec
from synthetic.world import WorldConfig, add_world_size_arguments, format_summary, generate_world
from trainer import finetune
from trainer.cached import run_cached
from trainer.evaluate import evaluate
from trainer.losses import INLIER_KINDS, LossConfig

DEMO_CHECKPOINT = Path(__file__).resolve().parents[1] / "trainer" / "assets" / "demo_small.pt"
"""The committed base model: ``small`` pretrained on the default synthetic city (seed 0)."""

BASE_SCORES: tuple[str, ...] = ("msp", "max_logit", "entropy", "energy", "sml", "max_min")
FINETUNED_SCORES: tuple[str, ...] = ("max_logit", "energy", "max_min")


def _demo_world() -> WorldConfig:
    return WorldConfig(out="world")


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo run. The defaults are the documented demo; tests shrink them.

    The stages' own settings are composed, not copied: ``world`` gives the city's size (its ``out``, ``seed``,
    ``workers`` and ``overwrite`` are set by the demo), ``loss`` the finetuning loss.

    Attributes:
        out: Output folder (local path); ``world/``, ``bank/``, ``augmented/``, ``finetune/``, ``report/`` inside.
        seed: Seed of the synthetic city and of every later stage.
        checkpoint: Base model (default: the committed demo checkpoint).
        world: Size of the synthetic city (frames per split, frame size, photographs). The committed base model
            was trained on the default 300 train frames.
        aligner: Style aligner of the augmentation.
        loss: Finetuning loss (top-k of the one-vs-rest term, inlier term, weights).
        cache_features: Train the head on cached body features (flips off).
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
    world: WorldConfig = field(default_factory=_demo_world)
    aligner: str = DEFAULT_ALIGNER
    loss: LossConfig = field(default_factory=LossConfig)
    cache_features: bool = True
    steps: int = 200
    batch_size: int = 8
    lr: float = 1e-3
    workers: int = 2
    overlays: int = 4
    progress: bool = True
    keep: bool = False

    @property
    def finetuned_label(self) -> str:
        """Name of the finetuned model in the tables."""
        return "finetuned (k=%s, %s)" % (self.loss.k if self.loss.k is not None else "C", self.aligner)


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
    add_world_size_arguments(p, d.world)
    p.add_argument("--aligner", default=d.aligner, help="style aligner of the augmentation")
    p.add_argument("--k", type=int, default=d.loss.k, help="top-k of the one-vs-rest loss")
    p.add_argument("--inlier", default=d.loss.inlier, choices=INLIER_KINDS, help="inlier term of the loss")
    p.add_argument("--no-cache-features", action="store_true",
                   help="stream the shards through the frozen body at every step instead of caching its features")
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
    if not Path(cfg.checkpoint).is_file():
        raise FileNotFoundError(f"base checkpoint not found: {cfg.checkpoint}")
    out = Path(cfg.out)
    if out.exists() and not cfg.keep:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.keep and (out / "finetune").exists():
        shutil.rmtree(out / "finetune")  # the finetune stage always runs again
    logging.getLogger().setLevel(logging.WARNING)
    beam = PipelineOptions(["--runner=DirectRunner"])  # in memory, in this process
    st = _Stages(5)
    wdir, bdir, adir, fdir, rdir = (out / n for n in ("world", "bank", "augmented", "finetune", "report"))

    w = replace(cfg.world, out=str(wdir), seed=cfg.seed, workers=cfg.workers, overwrite=True)
    t = st.start("world", f"synthetic city, {w.train} train / {w.val} val / {w.anomaly} anomaly frames "
                 f"at {w.height}x{w.width}, {w.coco_images} COCO-like photographs -> {wdir}")
    if not (cfg.keep and (wdir / "world.json").exists()):
        summary = generate_world(w, progress=cfg.progress and sys.stderr.isatty())
        print(format_summary(summary))
    st.done("world", t)

    t = st.start("bank", f"COCO instance masks -> object bank shards (Beam) -> {bdir}")
    if not (cfg.keep and (bdir / "_manifest.json").exists()):
        manifest = bank.run(BankConfig(coco=str(wdir / "coco"), split="train2017", out=str(bdir), num_shards=2,
                                       overwrite=True), beam)
        print(bank.summary_lines(manifest, str(bdir)))
    st.done("bank", t)

    t = st.start("augment", f"style-aligned ({cfg.aligner}) copy-paste into the train frames (Beam) -> {adir}")
    if not (cfg.keep and (adir / "_manifest.json").exists()):
        manifest = augment.run(AugmentConfig(
            cityscapes=str(wdir / "cityscapes"), split="train", bank=str(bdir), out=str(adir),
            aligner=AlignerSpec(cfg.aligner), seed=cfg.seed, num_shards=4, overwrite=True), beam)
        print(augment.summary_lines(manifest, str(adir)))
    st.done("augment", t)

    how = "on cached body features" if cfg.cache_features else "streaming the shards"
    t = st.start("finetune", f"head-only, top-{cfg.loss.k} one-vs-rest + {cfg.loss.inlier} inlier term, {cfg.steps} steps, "
                 f"{how} -> {fdir}")
    fcfg = finetune.FinetuneConfig(
        shards=(str(adir),), checkpoint=cfg.checkpoint, out=str(fdir), arch="small",
        loss=cfg.loss, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
        flip=not cfg.cache_features, seed=cfg.seed, workers=cfg.workers, log_every=max(1, cfg.steps // 4),
        device="cpu" if cfg.cache_features else "auto", progress=cfg.progress)
    if cfg.cache_features:
        res = run_cached(fcfg)
        print(f"[demo] body features of {res['frames']} frames cached in {res['seconds']['features']:.1f} s; "
              f"{cfg.steps} head steps on them in {res['seconds']['train']:.1f} s", flush=True)
    else:
        finetune.run(fcfg)
    st.done("finetune", t)

    t = st.start("evaluate", f"base vs finetuned on the synthetic anomaly set and val split -> {rdir}")
    ecfg = EvaluateConfig(
        models=(ModelSpec(cfg.finetuned_label, str(fdir / "model.pt"), "small",
                          FINETUNED_SCORES),
                ModelSpec("base", cfg.checkpoint, "small", BASE_SCORES)),
        datasets=(("synthetic", str(wdir)), ("cityscapes_val", str(wdir / "cityscapes"))),
        out=str(rdir), base_label="base", sml_train=str(wdir / "cityscapes"), sml_frames=min(100, w.train),
        overlays=cfg.overlays, progress=cfg.progress, overwrite=True)
    result = evaluate(ecfg)
    st.done("evaluate", t)

    table = markdown_table(result)
    verdict = target_lines(result, cfg.finetuned_label, "base")
    total = sum(st.times.values())
    summary = {
        "config": asdict(cfg), "seconds": st.times, "total_seconds": total, "rows": result.rows,
        "miou": result.miou, "miou_change": result.miou_change, "report": str(rdir), "targets": verdict,
    }
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    _write_report(rdir, cfg, table, st.times, false_alarm_tables(result), verdict)
    print("\n" + table)
    print("\nAgainst the poster's targets (energy score, synthetic anomaly set):")
    for line in verdict["lines"]:
        print("  " + line)
    print(f"\nstylepaste demo finished in {total:.0f} s. Report: {rdir / 'README.md'} (table, ROC/PR curves, "
          f"overlays of the hardest frames).")
    return summary


def target_lines(result, finetuned: str, base: str, dataset: str = "synthetic",
                 val: str = "cityscapes_val") -> dict:
    """The finetuned model against the poster's targets: energy AP at least 4x the base's, road FPR at the 95 %
    TPR threshold not above the base's, ΔmIoU at least -0.5.

    Args:
        result: :class:`trainer.evaluate.EvaluationResult` with both models, the energy score and false alarms.
        finetuned: Label of the finetuned model.
        base: Label of the base model.
        dataset: Anomaly dataset.
        val: Segmentation dataset of the mIoU change.

    Returns:
        ``{"ap_ratio", "road_fpr": {"base", "finetuned"}, "miou_change", "met": {...}, "lines": [...]}`` (road FPR
        and ratios in %, ``None`` where not measured).
    """
    ap = {m: result.lookup(m, "energy", dataset)["ap"] for m in (finetuned, base)}
    road = {m: next((100 * fa["classes"][0]["fpr"] for fa in result.false_alarms
                     if fa["model"] == m and fa["dataset"] == dataset and fa["score"] == "energy"), None)
            for m in (finetuned, base)}
    dm = result.miou_change.get(finetuned, {}).get(val)
    ratio = ap[finetuned] / ap[base] if ap[base] > 0 else None
    ratio = None if ratio is None else float(ratio)
    road = {m: None if v is None else float(v) for m, v in road.items()}
    dm = None if dm is None else float(dm)
    met = {"ap": bool(ratio is not None and ratio >= 4.0),
           "road_fpr": bool(None not in road.values() and road[finetuned] <= road[base]),
           "miou": bool(dm is not None and dm >= -0.5)}
    word = {True: "met", False: "NOT met"}
    lines = [f"energy AP {ap[base]:.2f} -> {ap[finetuned]:.2f}, x{ratio:.2f} the base (target >= 4): "
             f"{word[met['ap']]}" if ratio is not None else "energy AP of the base is 0: no ratio"]
    if None not in road.values():
        lines.append(f"road FPR at 95 % TPR {road[base]:.1f} % -> {road[finetuned]:.1f} % (target: not above the "
                     f"base): {word[met['road_fpr']]}")
    if dm is not None:
        lines.append(f"ΔmIoU {dm:+.2f} (target >= -0.5): {word[met['miou']]}")
    return {"ap_ratio": ratio, "road_fpr": {"base": road[base], "finetuned": road[finetuned]}, "miou_change": dm,
            "met": met, "lines": lines}


def _write_report(rdir: Path, cfg: DemoConfig, table: str, times: dict[str, float], alarms: str,
                  verdict: dict) -> None:
    curves = sorted(p.name for p in (rdir / "curves").glob("*.png"))
    overlays = sorted(str(p.relative_to(rdir)) for p in (rdir / "overlays").rglob("*.png"))
    lines = [
        "# stylepaste demo report", "",
        f"Base model: `{Path(cfg.checkpoint).name}` (small DeepLabv3+ pretrained on the synthetic city). "
        f"Finetuned: the same model with only its 1x1 classifier trained for {cfg.steps} steps with the "
        f"top-{cfg.loss.k} one-vs-rest loss and the `{cfg.loss.inlier}` inlier term on frames with `{cfg.aligner}`-aligned pasted "
        f"objects" + (", on cached body features." if cfg.cache_features else "."),
        "", "Anomaly metrics are pooled over all valid pixels of the synthetic anomaly set (in %); mIoU on the "
        "synthetic val split.", "", table, "", "Against the poster's targets:", "",
        *[f"- {line}" for line in verdict["lines"]], "",
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
    world = replace(DemoConfig().world, train=a.train, val=a.val, anomaly=a.anomaly, height=a.height,
                    width=a.width, coco_images=a.coco_images)
    cfg = DemoConfig(out=a.out, seed=a.seed, checkpoint=a.checkpoint, world=world, aligner=a.aligner,
                     loss=replace(DemoConfig().loss, k=a.k, inlier=a.inlier), cache_features=not a.no_cache_features,
                     steps=a.steps, batch_size=a.batch_size, lr=a.lr, workers=a.workers, overlays=a.overlays,
                     progress=not a.no_progress, keep=a.keep)
    run(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
