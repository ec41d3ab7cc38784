"""Settings and result types of the evaluator (:func:`evaluation.loop.evaluate`)."""

from __future__ import annotations

from dataclasses import dataclass, field

SEGMENTATION_DATASETS: frozenset[str] = frozenset({"cityscapes_val", "cityscapes"})
"""Dataset names evaluated for segmentation (mIoU) rather than anomaly detection."""

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
        datasets: ``(name, root)`` pairs, names as :func:`evaluation.datasets.open_dataset` takes them.
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
        overwrite: Replace a previous report in ``out`` (only a folder holding ``results.json``, or an empty one).
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
    overwrite: bool = False


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
