"""The evaluation loop over built models: one accumulator of logits, used by ``stylepaste evaluate``, the
finetune validation and the study.

:class:`LogitsEvaluator` takes batches of logits with their labels and accumulates, exactly, the pooled anomaly
metrics of each score (:class:`evaluation.metrics.AnomalyMetrics`), the false alarms by predicted class at a score's
95 % TPR threshold and the 19-class mIoU. :func:`evaluate` runs it over datasets for models that the caller builds
(the trainer loads checkpoints; this package never does), then writes the report.

Each frame is evaluated in one full-image pass, as Meta-OoD, PEBAL and the poster do for anomaly sets.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from evaluation import report
from evaluation.datasets import AnomalyDataset, Sample, open_dataset
from evaluation.metrics import AnomalyMetrics, FalseAlarmsByClass, FprMode, SegmentationMetrics
from evaluation.results import SEGMENTATION_DATASETS, EvaluateConfig, EvaluationResult, ModelSpec
from evaluation.scores import ALL_SCORES, SCORE_TITLES, SMLStatistics, SMLStats, anomaly_score
from schemas.cityscapes import list_frames, read_image
from schemas.labels import NUM_CLASSES

Predictor = Callable[[np.ndarray], torch.Tensor]
"""A built model: uint8 frame ``[H, W, 3]`` -> float32 logits ``[1, C, H, W]`` on the CPU."""

OVERLAY_SCORE_PREFERENCE: tuple[str, ...] = ("energy", "max_logit", "max_min", "sml", "entropy", "msp")


@dataclass(frozen=True)
class BuiltModel:
    """A model ready to evaluate.

    Attributes:
        predict: Frame -> logits (:data:`Predictor`).
        num_classes: Classes of its logits.
    """

    predict: Predictor
    num_classes: int = NUM_CLASSES


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class LogitsEvaluator:
    """Exact pooled anomaly metrics, false alarms by predicted class and mIoU from batches of logits.

    Args:
        scores: Anomaly scores to measure (:data:`evaluation.scores.ALL_SCORES`).
        num_classes: Classes C of the logits.
        fpr_mode: FPR95 convention (``first`` or ``closest``).
        alarm_scores: Scores whose false alarms by predicted class are counted.
        alarm_stride: Count them on every N-th inlier pixel (1 = exact).
        sml_stats: Class statistics of the ``sml`` score.
        smooth_sigma: Gaussian smoothing of every score map.
    """

    def __init__(self, scores: Sequence[str], *, num_classes: int = NUM_CLASSES, fpr_mode: FprMode = "first",
                 alarm_scores: Sequence[str] = (), alarm_stride: int = 1, sml_stats: SMLStatistics | None = None,
                 smooth_sigma: float = 0.0) -> None:
        bad = [s for s in (*scores, *alarm_scores) if s not in ALL_SCORES]
        if bad:
            raise ValueError(f"unknown scores {bad}; allowed: {list(ALL_SCORES)}")
        self.scores = tuple(scores)
        self.num_classes = num_classes
        self.sml_stats, self.smooth_sigma = sml_stats, smooth_sigma
        self.anomaly = {s: AnomalyMetrics(fpr_mode=fpr_mode) for s in self.scores}
        self.alarms = {s: FalseAlarmsByClass(num_classes=num_classes, stride=alarm_stride)
                       for s in alarm_scores if s in self.scores}
        self.segmentation = SegmentationMetrics(num_classes=num_classes)
        self.segmented = False
        self.raw: dict[str, dict[str, Any]] = {}
        """What :meth:`anomaly_results` last computed per score (``AnomalyMetrics.compute``, fractions)."""

    def update_anomaly(self, logits: torch.Tensor, labels: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
        """Add a batch of an anomaly set.

        Args:
            logits: ``[B, C, H, W]``.
            labels: ``[B, H, W]``: 0 inlier, 1 anomaly, 255 void.

        Returns:
            The score maps ``{score: [B, H, W]}``.
        """
        logits = logits.float()
        labels = _as_numpy(labels)
        pred = logits.argmax(1).cpu().numpy() if self.alarms else None
        maps = {}
        for s in self.scores:
            smap = _as_numpy(anomaly_score(s, logits, sml_stats=self.sml_stats, smooth_sigma=self.smooth_sigma))
            self.anomaly[s].update(smap, labels)
            if s in self.alarms:
                self.alarms[s].update(smap, labels, pred)
            maps[s] = smap
        return maps

    def update_segmentation(self, logits: torch.Tensor, labels: np.ndarray | torch.Tensor) -> None:
        """Add a batch of a segmentation split: logits ``[B, C, H, W]``, trainIds ``[B, H, W]``."""
        self.segmentation.update(logits.argmax(1).cpu().numpy(), _as_numpy(labels))
        self.segmented = True

    def anomaly_results(self) -> dict[str, dict[str, Any]]:
        """Per score: ``auroc``, ``ap``, ``fpr95`` in %, ``num_pos``, ``num_neg``, ``fpr95_threshold`` and, for
        the alarm scores, ``false_alarms`` (:meth:`FalseAlarmsByClass.compute` at that threshold, fractions)."""
        out = {}
        for s, m in self.anomaly.items():
            v = self.raw[s] = m.compute()
            out[s] = {"auroc": 100.0 * float(v["auroc"]), "ap": 100.0 * float(v["ap"]),
                      "fpr95": 100.0 * float(v["fpr95"]), "num_pos": int(v["num_pos"]),
                      "num_neg": int(v["num_neg"]), "fpr95_threshold": float(v["fpr95_threshold"])}
            if s in self.alarms and v["num_pos"] and v["num_neg"]:
                out[s]["false_alarms"] = self.alarms[s].compute(v["fpr95_threshold"])
        return out

    def miou(self) -> float | None:
        """mIoU in % of the segmentation batches (``None`` without any)."""
        return 100.0 * float(self.segmentation.compute()["miou"]) if self.segmented else None


def evaluate_batches(model: Callable[[torch.Tensor], torch.Tensor], anomaly: Iterable[tuple[Any, Any]],
                     segmentation: Iterable[tuple[Any, Any]] = (), *, scores: Sequence[str],
                     num_classes: int = NUM_CLASSES, alarm_scores: Sequence[str] = ()) -> dict[str, Any]:
    """Run :class:`LogitsEvaluator` over ``(inputs, labels)`` batches of an anomaly set and a segmentation split.

    Args:
        model: ``inputs -> logits [B, C, H, W]`` (whatever the inputs are: frames, cached features).
        anomaly: Batches whose labels are 0 / 1 / 255.
        segmentation: Batches whose labels are trainIds.
        scores: Anomaly scores.
        num_classes: Classes of the logits.
        alarm_scores: Scores whose false alarms by predicted class are counted (exactly).

    Returns:
        ``{"metrics": LogitsEvaluator.anomaly_results(), "miou": float | None}``.
    """
    ev = LogitsEvaluator(scores, num_classes=num_classes, alarm_scores=alarm_scores, alarm_stride=1)
    with torch.no_grad():
        for inputs, labels in anomaly:
            ev.update_anomaly(model(inputs), labels)
        for inputs, labels in segmentation:
            ev.update_segmentation(model(inputs), labels)
    return {"metrics": ev.anomaly_results(), "miou": ev.miou()}


def _progress(it: Iterable, total: int, desc: str, enabled: bool) -> Iterable:
    if not enabled:
        return it
    return tqdm(it, total=total, desc=desc, unit="frame", dynamic_ncols=True, leave=False, file=sys.stderr)


def _iter_samples(ds: AnomalyDataset, limit: int | None) -> Iterator[Sample]:
    n = len(ds) if limit is None else min(len(ds), limit)
    for i in range(n):
        yield ds[i]


def gather_sml_stats(predict: Predictor, root: str, frames: int, progress: bool,
                     num_classes: int = NUM_CLASSES) -> SMLStatistics:
    """Class-wise max-logit statistics over a Cityscapes-layout train split (SML's first step)."""
    stats = SMLStats(num_classes=num_classes)
    todo = list_frames(root, "train")[: max(1, frames)]
    for fr in _progress(todo, len(todo), "sml statistics", progress):
        stats.update(predict(read_image(fr)))
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


def is_segmentation(name: str) -> bool:
    """Whether a dataset name is evaluated for mIoU (:data:`SEGMENTATION_DATASETS`)."""
    return name.lower().replace("-", "_") in SEGMENTATION_DATASETS


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80]


def check_config(cfg: EvaluateConfig) -> None:
    """Refuse settings the loop cannot run.

    Raises:
        ValueError: Without models or datasets, for unknown scores, or ``sml`` without ``sml_train``.
    """
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


def _finite(logits: torch.Tensor, spec: ModelSpec, dataset: str, sample: Sample) -> torch.Tensor:
    """The logits of one frame, refused when any is NaN or infinite (no metric is computed from them).

    Raises:
        ValueError: Naming the model, the dataset and the frame.
    """
    bad = int((~torch.isfinite(logits)).sum())
    if bad:
        raise ValueError(f"model {spec.label!r} gives {bad} non-finite logits on {dataset} frame "
                         f"{sample.sample_id}; no metric is computed from them")
    return logits


def _evaluate_dataset(cfg: EvaluateConfig, spec: ModelSpec, built: BuiltModel, name: str, ds: AnomalyDataset,
                      sml: SMLStatistics | None, overlay_score: str, result: EvaluationResult,
                      frame_aps: list[tuple[float, int, str]] | None,
                      curves: dict[str, list[tuple[str, dict[str, np.ndarray], dict]]]) -> None:
    """One (model, dataset): mIoU on a segmentation split, else the anomaly rows, curves and false alarms."""
    n = len(ds) if cfg.max_frames is None else min(len(ds), cfg.max_frames)
    it = _progress(_iter_samples(ds, cfg.max_frames), n, f"{spec.label}/{name}", cfg.progress)
    alarm = (overlay_score,) if cfg.false_alarm_stride > 0 and overlay_score in spec.scores else ()
    ev = LogitsEvaluator(spec.scores, num_classes=built.num_classes, fpr_mode=cfg.fpr_mode, alarm_scores=alarm,
                         alarm_stride=max(1, cfg.false_alarm_stride), sml_stats=sml, smooth_sigma=cfg.smooth_sigma)
    if is_segmentation(name):
        for sample in it:
            ev.update_segmentation(_finite(built.predict(sample.image), spec, name, sample), sample.label[None])
        result.miou.setdefault(spec.label, {})[name] = ev.miou()
        return
    for idx, sample in enumerate(it):
        maps = ev.update_anomaly(_finite(built.predict(sample.image), spec, name, sample), sample.label[None])
        if frame_aps is not None:
            frame_aps.append((frame_ap(maps[overlay_score][0], sample.label), idx, sample.sample_id))
    for s, values in ev.anomaly_results().items():
        result.rows.append({"model": spec.label, "score": s, "dataset": name,
                            **{k: values[k] for k in ("auroc", "ap", "fpr95", "num_pos", "num_neg")}})
        curves.setdefault(name, []).append(
            (f"{spec.label} {SCORE_TITLES[s]}", report.thin_curves(ev.anomaly[s].curves()), ev.raw[s]))
        if "false_alarms" in values:
            result.false_alarms.append({
                "model": spec.label, "score": s, "dataset": name, "threshold": values["fpr95_threshold"],
                "stride": cfg.false_alarm_stride, "classes": values["false_alarms"]})


def evaluate(cfg: EvaluateConfig, load: Callable[[ModelSpec], BuiltModel]) -> EvaluationResult:
    """Evaluate every model of ``cfg`` on every dataset and write the report to ``cfg.out``.

    Args:
        cfg: Settings.
        load: Builds one model (the trainer loads its checkpoint); called once per model, in order.

    Returns:
        The measured numbers and written files.

    Raises:
        ValueError: For unknown scores or datasets, or ``sml`` without ``sml_train``.
    """
    start = time.perf_counter()
    check_config(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    datasets = [(name, open_dataset(name, root)) for name, root in cfg.datasets]
    result = EvaluationResult()
    primary = cfg.models[0]
    overlay_score = _pick_overlay_score(primary.scores, cfg.overlay_score)
    frame_aps: dict[str, list[tuple[float, int, str]]] = {}
    curves: dict[str, list[tuple[str, dict[str, np.ndarray], dict]]] = {}
    reference = None
    for spec in cfg.models:
        built = load(spec)
        sml = gather_sml_stats(built.predict, cfg.sml_train, cfg.sml_frames, cfg.progress,
                               built.num_classes) if "sml" in spec.scores else None
        for name, ds in datasets:
            _evaluate_dataset(cfg, spec, built, name, ds, sml, overlay_score, result,
                              frame_aps.setdefault(name, []) if spec is primary else None, curves)
        if spec is primary:
            primary_model = (built, sml)
        elif spec.label == cfg.base_label and overlay_score in spec.scores and cfg.overlays > 0:
            reference = (spec, built, sml)  # its heat map goes beside the primary one in the overlays
    base = cfg.base_label
    if base in result.miou:
        for label, per_ds in result.miou.items():
            if label != base:
                result.miou_change[label] = {
                    d: v - result.miou[base][d] for d, v in per_ds.items() if d in result.miou[base]}
    for name, ds in datasets:
        _write_overlays(cfg, name, ds, frame_aps.get(name, []), primary, primary_model, reference, overlay_score,
                        out, result)
    result.seconds = time.perf_counter() - start
    result.files += report.write_tables(out, result, cfg)
    result.files += report.write_curves(out, curves)
    return result


def _write_overlays(cfg: EvaluateConfig, name: str, ds: AnomalyDataset, aps: list[tuple[float, int, str]],
                    primary: ModelSpec, primary_model: tuple[BuiltModel, SMLStatistics | None],
                    reference: tuple[ModelSpec, BuiltModel, SMLStatistics | None] | None, overlay_score: str,
                    out: Path, result: EvaluationResult) -> None:
    """Overlays of the primary model's hardest frames of one dataset (the base model's heat map beside)."""
    ranked = sorted((x for x in aps if not math.isnan(x[0])), key=lambda x: (x[0], x[1]))
    hardest = ranked[: cfg.overlays]
    result.hardest[name] = [(sid, ap) for ap, _, sid in hardest]

    def heat(built: BuiltModel, sml: SMLStatistics | None, image: np.ndarray) -> np.ndarray:
        return anomaly_score(overlay_score, built.predict(image), sml_stats=sml,
                             smooth_sigma=cfg.smooth_sigma)[0].numpy()

    for rank, (ap, idx, sid) in enumerate(hardest):
        sample = ds[idx]
        maps = [heat(*primary_model, sample.image)]
        titles = [f"{primary.label} {SCORE_TITLES[overlay_score]} | frame AP {100 * ap:.1f}"]
        if reference is not None:
            ref_spec, ref_model, ref_sml = reference
            maps.append(heat(ref_model, ref_sml, sample.image))
            titles.append(f"{ref_spec.label} | frame AP {100 * frame_ap(maps[-1], sample.label):.1f}")
        path = out / "overlays" / name / f"{rank:02d}_{_safe(sid)}.png"
        report.write_overlay(path, sample.image, sample.label, maps, title=titles)
        result.files.append(str(path))
