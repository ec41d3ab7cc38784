"""``stylepaste evaluate``: anomaly benchmarks and Cityscapes mIoU for one or two checkpoints.

For every model, dataset and score the evaluator pools all valid pixels of the dataset and computes exact
AUROC, AP and FPR at 95 % TPR (:class:`trainer.metrics.AnomalyMetrics`); on a Cityscapes-layout split it
computes the 19-class mIoU instead (and its change from the base model when one is given). It writes a
results table in the poster's format (markdown, CSV, JSON), ROC and precision-recall curves, and overlays
of the hardest frames (frame, ground truth, anomaly heat map side by side).

Each frame is evaluated in one full-image pass, as Meta-OoD, PEBAL and the poster do for anomaly sets.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from schemas.labels import NUM_CLASSES
from trainer.checkpoint import checkpoint_info, load_checkpoint
from trainer.datasets import AnomalyDataset, Sample, open_dataset
from trainer.metrics import AnomalyMetrics, FalseAlarmsByClass, SegmentationMetrics
from trainer.models import build_model, normalize
from trainer.scores import ScoreName, SMLStatistics, SMLStats, anomaly_score

SEGMENTATION_DATASETS: frozenset[str] = frozenset({"cityscapes_val", "cityscapes"})
"""Dataset names evaluated for segmentation (mIoU) rather than anomaly detection."""

ALL_SCORES: tuple[str, ...] = tuple(s.value for s in ScoreName)
OVERLAY_SCORE_PREFERENCE: tuple[str, ...] = ("energy", "max_logit", "max_min", "sml", "entropy", "msp")
SCORE_TITLES: dict[str, str] = {
    "msp": "MSP", "max_logit": "Max logit", "entropy": "Entropy", "energy": "Energy",
    "sml": "SML", "max_min": "Max-min logit",
}


@dataclass(frozen=True)
class ModelSpec:
    """One model to evaluate.

    Attributes:
        label: Name in the tables (``finetuned``, ``base``, ...).
        checkpoint: fsspec URL of the checkpoint.
        arch: Architecture (``wrn38``, ``r101``, ``small``); ``None`` reads it from our own checkpoints.
        scores: Anomaly scores to compute for this model.
    """

    label: str
    checkpoint: str
    arch: str | None
    scores: tuple[str, ...]


@dataclass(frozen=True)
class EvaluateConfig:
    """Settings of ``stylepaste evaluate``.

    Attributes:
        models: The models; the first is the primary one (its hardest frames are drawn), a model labelled
            like :attr:`base_label` is the reference of the mIoU change.
        datasets: ``(name, root)`` pairs, names as :func:`trainer.datasets.open_dataset` takes them.
        out: Output folder (local path).
        base_label: Label of the model the mIoU change is measured against.
        sml_train: Cityscapes-layout root whose train split gives the SML class statistics.
        sml_frames: Frames of that split used for the statistics.
        smooth_sigma: Gaussian smoothing of every score map (0 = none).
        overlays: Number of hardest frames drawn per anomaly dataset.
        overlay_score: Score used to rank and draw the hardest frames (default: energy, else the first).
        max_frames: Evaluate at most this many frames per dataset (None = all).
        fpr_mode: ``first`` (Fishyscapes/SMIYC) or ``closest`` (PEBAL) FPR at 95 % TPR.
        false_alarm_stride: The false alarms by predicted class are counted on every N-th inlier pixel
            (1 = exact; 0 = not at all).
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: Show progress bars.
    """

    models: tuple[ModelSpec, ...]
    datasets: tuple[tuple[str, str], ...]
    out: str
    base_label: str = "base"
    sml_train: str | None = None
    sml_frames: int = 100
    smooth_sigma: float = 0.0
    overlays: int = 4
    overlay_score: str | None = None
    max_frames: int | None = None
    fpr_mode: str = "first"
    false_alarm_stride: int = 16
    device: str = "auto"
    progress: bool = True


@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured.

    Attributes:
        rows: One dict per (model, score, dataset): ``auroc``, ``ap``, ``fpr95``, pixel counts.
        miou: ``{model: {dataset: mIoU in %}}``.
        miou_change: ``{model: {dataset: change in points from the base model}}``.
        hardest: ``{dataset: [(sample_id, frame AP), ...]}`` of the primary model, hardest first.
        false_alarms: Per (model, dataset) with the overlay score: ``{"model", "score", "dataset",
            "threshold", "stride", "classes": [per-class dict of FalseAlarmsByClass.compute]}``.
        files: Paths of everything written.
        seconds: Wall time.
    """

    rows: list[dict] = field(default_factory=list)
    miou: dict[str, dict[str, float]] = field(default_factory=dict)
    miou_change: dict[str, dict[str, float]] = field(default_factory=dict)
    hardest: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    false_alarms: list[dict] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lookup(self, model: str, score: str, dataset: str) -> dict:
        """The row of one (model, score, dataset).

        Raises:
            KeyError: If it was not evaluated.
        """
        for r in self.rows:
            if (r["model"], r["score"], r["dataset"]) == (model, score, dataset):
                return r
        raise KeyError(f"no result for model={model!r} score={score!r} dataset={dataset!r}")


def resolve_device(name: str) -> torch.device:
    """Map ``auto``/``cpu``/``cuda`` to a device.

    Raises:
        RuntimeError: If ``cuda`` is asked for and no GPU is visible.
        ValueError: For other names.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {name} was asked for, but torch sees no CUDA device")
        return torch.device(name)
    raise ValueError(f"device must be auto, cpu or cuda[:N], got {name!r}")


def load_model(spec: ModelSpec, device: torch.device) -> torch.nn.Module:
    """Build ``spec``'s architecture, load its checkpoint strictly and put it in eval mode."""
    arch = spec.arch
    if arch is None:
        info = checkpoint_info(spec.checkpoint)
        arch = info.get("arch")
        if not arch:
            raise ValueError(f"{spec.checkpoint}: the checkpoint does not record its architecture; pass --arch")
    model = build_model(arch)
    load_checkpoint(model, spec.checkpoint)
    return model.eval().to(device)


@torch.no_grad()
def predict(model: torch.nn.Module, image: np.ndarray, device: torch.device) -> torch.Tensor:
    """Logits of one frame.

    Args:
        model: A model from :func:`trainer.models.build_model` in eval mode.
        image: uint8 (H, W, 3).
        device: Where the model lives.

    Returns:
        float32 logits [1, C, H, W] on the CPU.
    """
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(device)
    return model(normalize(x)).float().cpu()


def _iter_samples(ds: AnomalyDataset, limit: int | None) -> Iterator[Sample]:
    n = len(ds) if limit is None else min(len(ds), limit)
    for i in range(n):
        yield ds[i]


def _progress(it, total: int, desc: str, enabled: bool):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, unit="frame", dynamic_ncols=True, leave=False, file=sys.stderr)


def gather_sml_stats(model: torch.nn.Module, root: str, frames: int, device: torch.device,
                     progress: bool) -> SMLStatistics:
    """Class-wise max-logit statistics over a Cityscapes-layout train split (SML's first step)."""
    from schemas.cityscapes import list_frames, read_image

    stats = SMLStats(num_classes=19)
    todo = list_frames(root, "train")[: max(1, frames)]
    for fr in _progress(todo, len(todo), "sml statistics", progress):
        stats.update(predict(model, read_image(fr), device))
    return stats.compute(fill_missing=True)


def frame_ap(scores: np.ndarray, label: np.ndarray) -> float:
    """Exact AP of one frame, NaN when it has no anomaly or no inlier pixel."""
    pos = int((label == 1).sum())
    neg = int((label == 0).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    m = AnomalyMetrics(num_threads=1)
    m.update(scores, label)
    return float(m.compute()["ap"])


def _pick_overlay_score(scores: tuple[str, ...], wanted: str | None) -> str:
    if wanted is not None:
        if wanted not in scores:
            raise ValueError(f"--overlay-score {wanted!r} is not among the primary model's scores {list(scores)}")
        return wanted
    return next((s for s in OVERLAY_SCORE_PREFERENCE if s in scores), scores[0])


def evaluate(cfg: EvaluateConfig) -> EvaluationResult:
    """Run the evaluation and write the report.

    Args:
        cfg: Settings.

    Returns:
        The measured numbers and written files.

    Raises:
        ValueError: For unknown scores or datasets, or ``sml`` without ``sml_train``.
    """
    from trainer import report

    start = time.perf_counter()
    if not cfg.models:
        raise ValueError("evaluate needs at least one model")
    if not cfg.datasets:
        raise ValueError("evaluate needs at least one --dataset NAME=ROOT")
    for spec in cfg.models:
        bad = [s for s in spec.scores if s not in ALL_SCORES]
        if bad:
            raise ValueError(f"unknown scores {bad} for model {spec.label!r}; allowed: {list(ALL_SCORES)}")
        if "sml" in spec.scores and cfg.sml_train is None:
            raise ValueError("the sml score needs --sml-train ROOT (a Cityscapes-layout folder with a train split)")
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    datasets = [(name, open_dataset(name, root)) for name, root in cfg.datasets]
    result = EvaluationResult()
    primary = cfg.models[0]
    overlay_score = _pick_overlay_score(primary.scores, cfg.overlay_score)
    frame_aps: dict[str, list[tuple[float, int, str]]] = {}
    curves_by_ds: dict[str, list[tuple[str, dict[str, np.ndarray], dict]]] = {}

    reference = None
    for spec in cfg.models:
        model = load_model(spec, device)
        sml_stats = None
        if "sml" in spec.scores:
            sml_stats = gather_sml_stats(model, cfg.sml_train, cfg.sml_frames, device, cfg.progress)
        for name, ds in datasets:
            n = len(ds) if cfg.max_frames is None else min(len(ds), cfg.max_frames)
            it = _progress(_iter_samples(ds, cfg.max_frames), n, f"{spec.label}/{name}", cfg.progress)
            if _is_segmentation(name):
                seg = SegmentationMetrics(num_classes=19)
                for sample in it:
                    seg.update(predict(model, sample.image, device).argmax(1)[0].numpy(), sample.label)
                result.miou.setdefault(spec.label, {})[name] = 100.0 * float(seg.compute()["miou"])
                continue
            metrics = {s: AnomalyMetrics(fpr_mode=cfg.fpr_mode) for s in spec.scores}
            alarms = None
            if cfg.false_alarm_stride > 0 and overlay_score in spec.scores:
                alarms = FalseAlarmsByClass(num_classes=getattr(model, "num_classes", NUM_CLASSES),
                                            stride=cfg.false_alarm_stride)
            for idx, sample in enumerate(it):
                logits = predict(model, sample.image, device)
                for s in spec.scores:
                    smap = anomaly_score(s, logits, sml_stats=sml_stats, smooth_sigma=cfg.smooth_sigma)[0].numpy()
                    metrics[s].update(smap, sample.label)
                    if alarms is not None and s == overlay_score:
                        alarms.update(smap, sample.label, logits.argmax(1)[0].numpy())
                    if spec is primary and s == overlay_score:
                        frame_aps.setdefault(name, []).append((frame_ap(smap, sample.label), idx, sample.sample_id))
            for s, m in metrics.items():
                values = m.compute()
                result.rows.append({
                    "model": spec.label, "score": s, "dataset": name,
                    "auroc": 100.0 * float(values["auroc"]), "ap": 100.0 * float(values["ap"]),
                    "fpr95": 100.0 * float(values["fpr95"]),
                    "num_pos": int(values["num_pos"]), "num_neg": int(values["num_neg"]),
                })
                curves_by_ds.setdefault(name, []).append(
                    (f"{spec.label} {SCORE_TITLES[s]}", report.thin_curves(m.curves()), values))
                if alarms is not None and s == overlay_score and values["num_pos"] and values["num_neg"]:
                    result.false_alarms.append({
                        "model": spec.label, "score": s, "dataset": name,
                        "threshold": float(values["fpr95_threshold"]), "stride": cfg.false_alarm_stride,
                        "classes": alarms.compute(values["fpr95_threshold"])})
        if spec is primary:
            primary_model, primary_sml = model, sml_stats
        elif spec.label == cfg.base_label and overlay_score in spec.scores and cfg.overlays > 0:
            reference = (spec, model, sml_stats)  # its heat map goes beside the primary one in the overlays
        else:
            del model

    base = cfg.base_label
    if base in result.miou:
        for label, per_ds in result.miou.items():
            if label == base:
                continue
            result.miou_change[label] = {
                d: v - result.miou[base][d] for d, v in per_ds.items() if d in result.miou[base]}

    for name, ds in datasets:
        ranked = sorted((x for x in frame_aps.get(name, []) if not math.isnan(x[0])), key=lambda x: (x[0], x[1]))
        hardest = ranked[: cfg.overlays]
        result.hardest[name] = [(sid, ap) for ap, _, sid in hardest]
        for rank, (ap, idx, sid) in enumerate(hardest):
            sample = ds[idx]
            logits = predict(primary_model, sample.image, device)
            smap = anomaly_score(overlay_score, logits, sml_stats=primary_sml,
                                 smooth_sigma=cfg.smooth_sigma)[0].numpy()
            maps = [smap]
            titles = [f"{primary.label} {SCORE_TITLES[overlay_score]} | frame AP {100 * ap:.1f}"]
            if reference is not None:
                ref_spec, ref_model, ref_sml = reference
                rmap = anomaly_score(overlay_score, predict(ref_model, sample.image, device), sml_stats=ref_sml,
                                     smooth_sigma=cfg.smooth_sigma)[0].numpy()
                maps.append(rmap)
                titles.append(f"{ref_spec.label} | frame AP {100 * frame_ap(rmap, sample.label):.1f}")
            path = out / "overlays" / name / f"{rank:02d}_{_safe(sid)}.png"
            report.write_overlay(path, sample.image, sample.label, maps, title=titles)
            result.files.append(str(path))

    result.seconds = time.perf_counter() - start
    result.files += report.write_tables(out, result, cfg)
    result.files += report.write_curves(out, curves_by_ds)
    return result


def _is_segmentation(name: str) -> bool:
    return name.lower().replace("-", "_") in SEGMENTATION_DATASETS


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80]


def parse_dataset(text: str) -> tuple[str, str]:
    """Parse ``NAME=ROOT``.

    Raises:
        argparse.ArgumentTypeError: If there is no ``=`` or either side is empty.
    """
    name, sep, root = text.partition("=")
    if not sep or not name or not root:
        raise argparse.ArgumentTypeError(f"expected NAME=ROOT (e.g. fishyscapes_lostandfound=/data/fs), got {text!r}")
    return name, root


def _parse_scores(values: list[str], sml_available: bool) -> tuple[str, ...]:
    out: list[str] = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if part == "all":
                out += [s for s in ALL_SCORES if s != "sml" or sml_available]
            elif part:
                out.append(part)
    return tuple(dict.fromkeys(out))


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``stylepaste evaluate``."""
    p = argparse.ArgumentParser(
        prog="stylepaste evaluate",
        description="Evaluate checkpoints on anomaly benchmarks (exact pooled AUROC, AP, FPR95) and on Cityscapes "
        "(mIoU); write a results table (markdown, CSV, JSON), ROC/PR curves and overlays of the hardest frames.",
        epilog="Datasets: fishyscapes_lostandfound, fishyscapes_static, road_anomaly, smiyc_anomaly, smiyc_obstacle, "
        "lostandfound, synthetic (anomaly sets) and cityscapes_val (mIoU). Example: stylepaste evaluate "
        "--checkpoint runs/ft/model.pt --arch wrn38 --dataset fishyscapes_lostandfound=/data/fs_lf "
        "--base-checkpoint cityscapes_best.pth --dataset cityscapes_val=/data/cityscapes --out runs/eval",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint to evaluate (fsspec URL)")
    p.add_argument("--arch", default=None, choices=["wrn38", "r101", "small"],
                   help="architecture (read from the checkpoint when it records it)")
    p.add_argument("--label", default="finetuned", help="name of this model in the tables (default: %(default)s)")
    p.add_argument("--scores", nargs="+", default=["all"],
                   help=f"scores of the model: 'all' or any of {', '.join(ALL_SCORES)} (default: all; sml only "
                   "with --sml-train)")
    p.add_argument("--base-checkpoint", default=None, help="reference model for comparison and the mIoU change")
    p.add_argument("--base-arch", default=None, choices=["wrn38", "r101", "small"],
                   help="architecture of the base model (default: --arch)")
    p.add_argument("--base-label", default="base", help="name of the base model (default: %(default)s)")
    p.add_argument("--base-scores", nargs="+", default=None, help="scores of the base model (default: --scores)")
    p.add_argument("--dataset", action="append", type=parse_dataset, required=True, metavar="NAME=ROOT",
                   help="dataset to evaluate on (repeatable)")
    p.add_argument("--sml-train", default=None, help="Cityscapes-layout root whose train split gives SML statistics")
    p.add_argument("--sml-frames", type=int, default=100, help="frames for the SML statistics (default: %(default)s)")
    p.add_argument("--smooth-sigma", type=float, default=0.0, help="Gaussian smoothing of score maps (default: none)")
    p.add_argument("--overlays", type=int, default=4, help="hardest frames drawn per dataset (default: %(default)s)")
    p.add_argument("--overlay-score", default=None, help="score used to rank and draw hard frames (default: energy)")
    p.add_argument("--max-frames", type=int, default=None, help="at most this many frames per dataset")
    p.add_argument("--fpr-mode", choices=["first", "closest"], default="first",
                   help="FPR95 convention: first threshold with TPR>=0.95 (Fishyscapes/SMIYC) or closest (PEBAL)")
    p.add_argument("--false-alarm-stride", type=int, default=16,
                   help="count the false alarms by predicted class on every N-th inlier pixel (1 = exact, 0 = off; "
                        "default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(args: argparse.Namespace) -> EvaluateConfig:
    """Build the settings from parsed arguments."""
    sml = args.sml_train is not None
    scores = _parse_scores(args.scores, sml)
    models = [ModelSpec(args.label, args.checkpoint, args.arch, scores)]
    if args.base_checkpoint:
        base_scores = _parse_scores(args.base_scores, sml) if args.base_scores else scores
        models.append(ModelSpec(args.base_label, args.base_checkpoint, args.base_arch or args.arch, base_scores))
    return EvaluateConfig(
        models=tuple(models), datasets=tuple(args.dataset), out=args.out, base_label=args.base_label,
        sml_train=args.sml_train, sml_frames=args.sml_frames, smooth_sigma=args.smooth_sigma,
        overlays=args.overlays, overlay_score=args.overlay_score, max_frames=args.max_frames,
        fpr_mode=args.fpr_mode, false_alarm_stride=args.false_alarm_stride, device=args.device,
        progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``stylepaste evaluate``."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_args(args)
    result = evaluate(cfg)
    from trainer.report import markdown_table

    print(markdown_table(result))
    print(f"\nwrote {len(result.files)} files to {cfg.out} in {result.seconds:.1f} s")
    (Path(cfg.out) / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
