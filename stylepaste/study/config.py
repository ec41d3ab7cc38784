"""Settings of ``stylepaste study``: the groups of settings, their labels and the study's typed configuration."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from schemas.labels import NUM_CLASSES
from style_transfer.aligners import DEFAULT_ALIGNER
from style_transfer.registry import AlignerSpec
from trainer.subsets import PasteFilter
from trainer.losses import INLIER_KINDS, LossConfig

ALIGNMENTS: dict[str, AlignerSpec] = {
    "none": AlignerSpec("none"),
    "sensor": AlignerSpec("sensor"),
    "reinhard": AlignerSpec("reinhard"),
    DEFAULT_ALIGNER: AlignerSpec(DEFAULT_ALIGNER),
    "reinhard_object": AlignerSpec("reinhard", {"mode": "object"}),
    "histogram": AlignerSpec("histogram"),
    "fda": AlignerSpec("fda"),
}
"""Alignment settings of the ablation: name -> the aligner ``stylepaste augment`` runs."""
LEARNED = "learned"
"""Alignment setting of a trained style generator (``StudyConfig.learned``)."""
DEFAULT_ALIGNMENT = DEFAULT_ALIGNER
SCORES: tuple[str, ...] = ("max_logit", "energy", "max_min")
METRICS: tuple[str, ...] = ("auroc", "ap", "fpr95")
METRIC_TITLES: dict[str, str] = {"auroc": "AUROC↑", "ap": "AP↑", "fpr95": "FPR95↓"}
GROUPS: tuple[str, ...] = ("inlier", "alignment", "topk", "head")
RECORD_VERSION = 4
"""Version of the per-run records; older records are run again (2: false alarms by predicted class; 3: the inlier
term is part of the setting, default ``distill``; 4: the test world is always evaluated, the validation world
beside it under ``"validation"``)."""
SPLITS: tuple[str, ...] = ("validation", "test")
"""Where a run is evaluated: the validation world (``StudyConfig.eval_world``, choices are made there) and the
test world (``StudyConfig.world``, only reported)."""
DEFAULT_INLIER = LossConfig.inlier
INLIER_TITLES: dict[str, str] = {
    "distill": "CE + logit distillation to the base",
    "ce": "CE only (the loss as the poster writes it)",
    "true_bce": "CE + true-class BCE",
    "ovr_bce": "CE + one-vs-rest BCE on all classes",
}
ALARM_SCORE = "energy"
"""Score of the false-alarm table (the poster's score)."""
ALARM_CLASSES: tuple[int, ...] = (0, 1, 2, 8, 13, 10)
"""trainIds shown in the false-alarm table: road, sidewalk, building, vegetation, car, sky."""
GROUP_TITLES: dict[str, str] = {
    "inlier": "Inlier term ({align}, top-5 one-vs-rest, head only)",
    "alignment": "Style alignment (top-5 one-vs-rest, {inlier}, head only)",
    "topk": "Top-k of the one-vs-rest loss ({align}, {inlier}, head only; k = C is plain one-vs-rest)",
    "head": "Trained part ({align}, top-5, {inlier}): 1x1 classifier vs whole final block",
}


@dataclass(frozen=True)
class Setting:
    """One finetune setting of the study.

    Attributes:
        alignment: Key of :data:`ALIGNMENTS`.
        k: Top-k (``num_classes`` means plain one-vs-rest).
        head: ``classifier`` or ``final``.
        inlier: Inlier term of the loss (:data:`trainer.losses.INLIER_KINDS`).
    """

    alignment: str
    k: int
    head: str
    inlier: str = DEFAULT_INLIER

    @property
    def key(self) -> str:
        """File-name-safe identifier."""
        return f"{self.alignment.replace('+', '-')}_k{self.k}_{self.head}_{self.inlier}"

    def label(self, group: str, num_classes: int) -> str:
        """Row name in the group's table."""
        if group == "inlier":
            return INLIER_TITLES[self.inlier] + (" (default)" if self.inlier == DEFAULT_INLIER else "")
        if group == "alignment":
            return self.alignment + (" (default)" if self.alignment == DEFAULT_ALIGNMENT else "")
        if group == "topk":
            return f"k = {self.k}" + (" (C, plain one-vs-rest)" if self.k >= num_classes else "") + (
                " (default)" if self.k == 5 else "")
        return {"classifier": "1x1 classifier (default)", "final": "whole final block"}[self.head]


@dataclass(frozen=True)
class StudyConfig:
    """Settings of ``stylepaste study``.

    Attributes:
        world: Folder written by ``stylepaste world`` (``cityscapes/``, the anomaly set).
        eval_world: The validation world: another world (drawn with another seed) whose anomaly set and val split
            are evaluated beside ``world``'s, and on which choices are made; ``world``'s anomaly set and val split
            only report (empty: no validation world). The train corpora always come from ``world``.
        bank: Object-bank folder (``stylepaste bank``).
        bases: Base model checkpoints (one per pretraining seed).
        out: Output folder.
        arch: Architecture of the base models.
        num_classes: Classes of the base models.
        alignments: Alignment settings of the alignment group (keys of :data:`ALIGNMENTS`, or ``learned``).
        learned: The ``learned`` aligner (a trained style generator, e.g. ``AlignerSpec("learned", {"path":
            "gen.ts", "kind": "torchscript"})``); when set, ``learned`` joins the alignment group.
        default_alignment: Alignment of the inlier, top-k and head groups.
        inliers: Inlier terms of the inlier group (``ce`` is the loss as the poster writes it).
        inlier: Inlier term of the alignment, top-k and head groups.
        inlier_weight: Weight β of the inlier anchor.
        probe_steps: Steps of the linear probes of the head-only ceiling (0: no probes).
        ks: k values of the top-k group.
        heads: Heads of the head group.
        seeds: Finetune seeds.
        steps: Finetune steps.
        batch_size: Finetune batch size.
        lr: Learning rate.
        optimizer: ``adam`` or ``sgd``.
        shuffle_buffer: Rows in the stream's shuffle buffer (as ``stylepaste finetune``).
        order_workers: ``DataLoader`` workers whose batch order is reproduced (``stylepaste finetune --workers``).
        augment_seed: Seed of every augmented corpus.
        max_train_frames: Augment only the first N train frames (``None``: all).
        max_test_frames: Evaluate at most N anomaly frames (``None``: all).
        max_val_frames: mIoU on at most N val frames (``None``: all).
        cache_dtype: ``float32`` or ``float16`` storage of cached features.
        feature_batch: Frames per body forward when caching train features.
        threads: ``torch.set_num_threads`` (``None``: leave torch's default).
        progress: Print a line per run.
        paste_filter: Frames of the corpora to skip by their pasted objects' licences or categories
            (:class:`trainer.data.PasteFilter`); a run recorded under another filter is run again.
    """

    world: str
    bank: str
    bases: tuple[str, ...]
    eval_world: str = ""
    out: str = "runs/study"
    arch: str = "small"
    num_classes: int = NUM_CLASSES
    alignments: tuple[str, ...] = tuple(ALIGNMENTS)
    learned: AlignerSpec | None = None
    default_alignment: str = DEFAULT_ALIGNMENT
    inliers: tuple[str, ...] = INLIER_KINDS
    inlier: str = DEFAULT_INLIER
    inlier_weight: float = 1.0
    probe_steps: int = 300
    ks: tuple[int, ...] = (1, 3, 5, 7, NUM_CLASSES)
    heads: tuple[str, ...] = ("classifier", "final")
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 200
    batch_size: int = 8
    lr: float = 1e-3
    optimizer: str = "adam"
    shuffle_buffer: int = 64
    order_workers: int = 2
    augment_seed: int = 0
    max_train_frames: int | None = None
    max_test_frames: int | None = None
    max_val_frames: int | None = None
    cache_dtype: str = "float32"
    feature_batch: int = 4
    threads: int | None = None
    progress: bool = True
    paste_filter: PasteFilter = field(default_factory=PasteFilter)

    def __post_init__(self) -> None:
        if not self.bases:
            raise ValueError("give at least one --base CHECKPOINT")
        if self.learned is not None:
            if self.learned.name != LEARNED or "path" not in self.learned.params:
                raise ValueError(f"the learned alignment must be AlignerSpec('learned', {{'path': ...}}), got "
                                 f"{self.learned}")
            if LEARNED not in self.alignments:
                object.__setattr__(self, "alignments", (*self.alignments, LEARNED))
        for a in (*self.alignments, self.default_alignment):
            if a == LEARNED and self.learned is None:
                raise ValueError("alignment 'learned' needs the generator: --learned-params '{\"path\": ...}'")
            if a not in ALIGNMENTS and a != LEARNED:
                raise ValueError(f"unknown alignment {a!r}; allowed: {', '.join(ALIGNMENTS)}, {LEARNED}")
        for i in (*self.inliers, self.inlier):
            if i not in INLIER_KINDS:
                raise ValueError(f"unknown inlier term {i!r}; allowed: {', '.join(INLIER_KINDS)}")
        if self.probe_steps < 0:
            raise ValueError(f"probe_steps must be >= 0, got {self.probe_steps}")
        for k in self.ks:
            if not 1 <= int(k) <= self.num_classes:
                raise ValueError(f"k must be in 1..{self.num_classes}, got {k}")
        for h in self.heads:
            if h not in ("classifier", "final"):
                raise ValueError(f"head must be classifier or final, got {h!r}")
        if not self.seeds:
            raise ValueError("give at least one finetune seed")
        if self.cache_dtype not in ("float32", "float16"):
            raise ValueError(f"cache_dtype must be float32 or float16, got {self.cache_dtype!r}")
        for name in ("steps", "batch_size", "feature_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def alignment_spec(self, alignment: str) -> AlignerSpec:
        """The aligner of an alignment setting."""
        if alignment == LEARNED:
            return self.learned
        return ALIGNMENTS[alignment]

    def groups(self) -> dict[str, list[Setting]]:
        """The settings of each group, in table order."""
        d, i = self.default_alignment, self.inlier
        return {
            "inlier": [Setting(d, 5, "classifier", x) for x in self.inliers],
            "alignment": [Setting(a, 5, "classifier", i) for a in self.alignments],
            "topk": [Setting(d, int(k), "classifier", i) for k in self.ks],
            "head": [Setting(d, 5, h, i) for h in self.heads],
        }

    def settings(self) -> list[Setting]:
        """Every distinct setting (shared rows, such as the default, run once)."""
        seen: dict[Setting, None] = {}
        for rows in self.groups().values():
            for s in rows:
                seen.setdefault(s, None)
        return list(seen)


def checkpoint_tag(path: str) -> str:
    """First 12 hex digits of the checkpoint's SHA-256, hashed once per (path, size, mtime)."""
    st = Path(path).stat()
    return _tag_of(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _tag_of(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]
