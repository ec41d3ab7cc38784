"""``stylepaste study``: the poster's ablations on the embedded benchmark (the synthetic city).

Four groups of settings, each finetuned from every base model with every finetune seed and evaluated on the
synthetic anomaly set (pooled pixels, exact AUROC / AP / FPR95 with :class:`trainer.metrics.AnomalyMetrics`, scores
max logit, energy and max-min logit; the road FPR at the energy's 95 % TPR threshold) and on the synthetic val split
(mIoU change from the base model):

* **inlier term** of the loss (:data:`trainer.losses.INLIER_KINDS`: ``distill`` = our default, ``ce`` = the loss
  as the poster writes it, ``true_bce``, ``ovr_bce``), default alignment, top-5, head only;
* **alignment** of the pasted objects (``none``, ``sensor``, ``reinhard``, ``reinhard+sensor`` = our default,
  ``reinhard_object`` = Reinhard statistics of the object itself, ``histogram``, ``fda``), top-5, head only;
* **top-k** of the one-vs-rest loss, k in {1, 3, 5, 7, C} (``k = C`` is plain one-vs-rest), default alignment;
* **trained part**: the 1x1 classifier (``--head classifier``) against the whole final block (``--head final``),
  default alignment, k = 5.

Beside them, the **head-only ceiling** of each base model (:func:`head_only_ceiling`): a linear probe on the frozen
classifier-input features, trained on the pastes and cross-validated on the test anomalies.

One augmented corpus per alignment (``stylepaste augment`` with a fixed seed, Beam in memory), shared by every
base model and finetune seed. Every run is evaluated on the test world (``--world``, reported only) and, with
``--eval-world`` (a world drawn with another seed, ``stylepaste world --seed 1``), on the validation world, where
choices are made; the report shows the validation world first. The train corpora always come from ``--world``.

**Cached body features** (:mod:`trainer.cached`). The body is frozen, so the study computes its output once per
(base model, corpus) (and once per base model for the test and val frames), stores it in ``cache/`` (float32 by
default, float16 with ``--cache-dtype float16``) and trains the head on it with the very step of ``stylepaste
finetune``. The only difference from the demo's finetune settings is ``flip=False`` (a flipped frame's features
are not the flipped features; flips would double the cache).

Outputs in ``--out``: ``corpora/<alignment>/`` (augmented shards), ``cache/``, ``runs/<run>.json`` (one file per
finetune run or probe, so an interrupted study continues where it stopped), ``study.json`` (every run and the
aggregates) and ``study.md`` (tables in the poster's format: rows = setting, columns = score metrics, mean ± sample
standard deviation over the (base, seed) runs; the base models' own numbers first).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from schemas.labels import NUM_CLASSES, TRAIN_CLASSES
from trainer.checkpoint import load_checkpoint
from trainer.cached import FeatureCache, compute_features, dataset_frames, finetune_cached, load_cache, save_cache, \
    shard_frames
from trainer.finetune import FinetuneConfig
from trainer.heads import head_state_dict
from trainer.losses import INLIER_KINDS, LossConfig
from trainer.metrics import AnomalyMetrics, FalseAlarmsByClass, SegmentationMetrics
from trainer.models import build_model, resize
from trainer.scores import anomaly_score

#: Alignment settings of the ablation: name -> (aligner, aligner parameters as ``stylepaste augment`` takes them).
ALIGNMENTS: dict[str, tuple[str, str]] = {
    "none": ("none", "{}"),
    "sensor": ("sensor", "{}"),
    "reinhard": ("reinhard", "{}"),
    "reinhard+sensor": ("reinhard+sensor", "{}"),
    "reinhard_object": ("reinhard", '{"mode": "object"}'),
    "histogram": ("histogram", "{}"),
    "fda": ("fda", "{}"),
}
LEARNED = "learned"
"""Alignment setting of a trained style generator (``StudyConfig.learned_params``)."""
DEFAULT_ALIGNMENT = "reinhard+sensor"
SCORES: tuple[str, ...] = ("max_logit", "energy", "max_min")
SCORE_TITLES: dict[str, str] = {"max_logit": "Max logit", "energy": "Energy", "max_min": "Max-min"}
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
        learned_params: JSON parameters of the ``learned`` aligner (the trained style generator, e.g.
            ``{"path": "gen.ts", "kind": "torchscript"}``); when set, ``learned`` joins the alignment group.
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
    """

    world: str
    bank: str
    bases: tuple[str, ...]
    eval_world: str = ""
    out: str = "runs/study"
    arch: str = "small"
    num_classes: int = NUM_CLASSES
    alignments: tuple[str, ...] = tuple(ALIGNMENTS)
    learned_params: str = ""
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

    def __post_init__(self) -> None:
        if not self.bases:
            raise ValueError("give at least one --base CHECKPOINT")
        if self.learned_params:
            try:
                params = json.loads(self.learned_params)
            except json.JSONDecodeError as err:
                raise ValueError(f"learned_params must be a JSON object, got {self.learned_params!r}: {err}") from None
            if not isinstance(params, dict) or "path" not in params:
                raise ValueError(f"learned_params must be a JSON object with a 'path', got {self.learned_params!r}")
            if LEARNED not in self.alignments:
                object.__setattr__(self, "alignments", (*self.alignments, LEARNED))
        for a in (*self.alignments, self.default_alignment):
            if a == LEARNED and not self.learned_params:
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

    def alignment_spec(self, alignment: str) -> tuple[str, str]:
        """``(aligner name, JSON parameters)`` of an alignment setting for ``stylepaste augment``."""
        if alignment == LEARNED:
            return "learned", self.learned_params
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


@torch.no_grad()
def evaluate_cached(model: torch.nn.Module, head: str, test: FeatureCache, val: FeatureCache | None,
                    scores: Sequence[str] = SCORES, chunk: int = 4) -> dict[str, Any]:
    """Anomaly metrics (in %) on cached test features and mIoU (in %) on cached val features.

    Args:
        model: The model (put in ``eval()``).
        head: Whose input the caches hold.
        test: Anomaly-set features; labels 0 in, 1 anomaly, 255 void.
        val: Val-split features with trainId labels, or ``None``.
        scores: Anomaly scores.
        chunk: Frames per head forward.

    Returns:
        ``{"metrics": {score: {"auroc", "ap", "fpr95", "num_pos", "num_neg"}}, "false_alarms": {score: [per
        predicted class {"inlier_share", "fpr", "alarm_share"} in %, None where undefined]}, "miou": float |
        None}``; the false alarms are the inlier pixels at or above the score's 95 % TPR threshold (exact).
    """
    model.eval()
    metrics = {s: AnomalyMetrics() for s in scores}
    alarms = {s: FalseAlarmsByClass(num_classes=model.num_classes, stride=1) for s in scores}
    for i in range(0, len(test.ids), chunk):
        logits = model.classify(test.feats[i:i + chunk].float(), test.size, head).float()
        labels = test.labels[i:i + chunk].numpy()
        pred = logits.argmax(1).numpy()
        for s in scores:
            smap = anomaly_score(s, logits).numpy()
            metrics[s].update(smap, labels)
            alarms[s].update(smap, labels, pred)
    out: dict[str, Any] = {"metrics": {}, "false_alarms": {}, "miou": None}
    for s, m in metrics.items():
        v = m.compute()
        out["metrics"][s] = {"auroc": 100.0 * v["auroc"], "ap": 100.0 * v["ap"], "fpr95": 100.0 * v["fpr95"],
                             "num_pos": int(v["num_pos"]), "num_neg": int(v["num_neg"])}
        out["false_alarms"][s] = [
            {k: (None if math.isnan(c[k]) else 100.0 * c[k]) for k in ("inlier_share", "fpr", "alarm_share")}
            for c in alarms[s].compute(v["fpr95_threshold"])]
    if val is not None:
        seg = SegmentationMetrics(num_classes=model.num_classes)
        for i in range(0, len(val.ids), chunk):
            logits = model.classify(val.feats[i:i + chunk].float(), val.size, head)
            seg.update(logits.argmax(1).numpy(), val.labels[i:i + chunk].numpy())
        out["miou"] = 100.0 * float(seg.compute()["miou"])
    return out


# ------------------------------------------------------------------------------------------- head-only ceiling


def _probe_targets(labels: torch.Tensor, positive: int, num_classes: int) -> torch.Tensor:
    """1 where ``labels == positive``, 0 on the negatives, -1 elsewhere.

    Negatives are the class-labelled pixels of augmented frames (``positive`` = 254) or the in-distribution
    pixels (0) of an anomaly set (``positive`` = 1).
    """
    labels = labels.long()
    t = torch.full_like(labels, -1)
    t[labels < num_classes if positive == 254 else labels == 0] = 0
    t[labels == positive] = 1
    return t


def train_probe(cache: FeatureCache, frames: Sequence[int], positive: int, num_classes: int, *, steps: int,
                seed: int = 0, batch: int = 8, lr: float = 0.05) -> Callable[[torch.Tensor], torch.Tensor]:
    """A linear probe on frozen features: one 1x1 conv to an anomaly logit, upsampled as the head's logits are.

    Trained with class-balanced BCE (positives weighted by negatives / positives) and Adam on standardised
    features, on random batches of ``frames``. It is the best a linear readout of these features does on this
    target, which is what a head-only finetune of the 1x1 classifier can at most use.

    Args:
        cache: Features ``[N, C, h, w]`` and labels ``[N, H, W]``.
        frames: Positions in the cache to train on.
        positive: Label value of the positives (254 in augmented frames, 1 in anomaly sets).
        num_classes: Classes C (see :func:`_probe_targets`).
        steps: Optimizer steps.
        seed: Seed of the batch order and the init.
        batch: Frames per step.
        lr: Adam learning rate.

    Returns:
        ``probe(feats [B, C, h, w]) -> logits [B, H, W]`` (no gradient).

    Raises:
        ValueError: If the frames hold no positive or no negative pixel.
    """
    idx = torch.as_tensor(list(frames))
    targets = _probe_targets(cache.labels[idx], positive, num_classes)
    n_pos, n_neg = int((targets == 1).sum()), int((targets == 0).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"probe frames hold {n_pos} positive and {n_neg} negative pixels; need both")
    sample = cache.feats[idx[:: max(1, len(idx) // 32)]].float()
    mean = sample.mean(dim=(0, 2, 3))[:, None, None]
    std = sample.std(dim=(0, 2, 3)).clamp_min(1e-6)[:, None, None]
    g = torch.Generator().manual_seed(seed)
    conv = torch.nn.Conv2d(cache.feats.shape[1], 1, 1)
    with torch.no_grad():
        conv.weight.normal_(0.0, 0.01, generator=g)
        conv.bias.zero_()

    def probe(feats: torch.Tensor) -> torch.Tensor:
        return resize(conv((feats.float() - mean) / std), cache.size)[:, 0]

    opt = torch.optim.Adam(conv.parameters(), lr=lr)
    pos_weight = torch.tensor(n_neg / n_pos)
    for _ in range(steps):
        pick = idx[torch.randint(len(idx), (min(batch, len(idx)),), generator=g)]
        t = _probe_targets(cache.labels[pick], positive, num_classes)
        valid = t >= 0
        if not bool(valid.any()):
            continue
        loss = F.binary_cross_entropy_with_logits(probe(cache.feats[pick])[valid], t[valid].float(),
                                                  pos_weight=pos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return torch.no_grad()(probe)


@torch.no_grad()
def probe_metrics(probes: Sequence[tuple[Callable[[torch.Tensor], torch.Tensor], Sequence[int]]],
                  test: FeatureCache, chunk: int = 4) -> dict[str, float]:
    """AUROC / AP / FPR95 (in %) of probe logits on an anomaly set, pooled over every frame.

    Args:
        probes: ``(probe, frames)`` pairs with disjoint frames: each frame is scored by its pair's probe.
        test: Anomaly-set features (labels 0 in, 1 anomaly, 255 void).
        chunk: Frames per forward.
    """
    metric = AnomalyMetrics()
    for probe, frames in probes:
        frames = list(frames)
        for i in range(0, len(frames), chunk):
            ix = torch.as_tensor(frames[i:i + chunk])
            metric.update(probe(test.feats[ix]).numpy(), test.labels[ix].numpy())
    v = metric.compute()
    return {"auroc": 100.0 * v["auroc"], "ap": 100.0 * v["ap"], "fpr95": 100.0 * v["fpr95"]}


def head_only_ceiling(train: FeatureCache, test: FeatureCache, num_classes: int, steps: int,
                      seed: int = 0) -> dict[str, dict[str, float]]:
    """The linear probe on frozen classifier-input features, two ways.

    * ``pastes``: trained on the pasted objects (254 against class-labelled pixels) of the train corpus and
      evaluated on the anomaly set: the most a linear readout learned from these pastes can show.
    * ``test_cv``: trained on the anomaly set's own labels, 2-fold over frames (even / odd positions), each frame
      scored by the probe that did not see it: how separable the test anomalies are in these features at all.

    Returns:
        ``{"pastes": metrics, "test_cv": metrics}`` (:func:`probe_metrics`).
    """
    everything = list(range(len(test.ids)))
    pastes = train_probe(train, range(len(train.ids)), 254, num_classes, steps=steps, seed=seed)
    folds = [everything[0::2], everything[1::2]]
    cv = [(train_probe(test, folds[1 - f], 1, num_classes, steps=steps, seed=seed + 1 + f), folds[f])
          for f in (0, 1)]
    return {"pastes": probe_metrics([(pastes, everything)], test), "test_cv": probe_metrics(cv, test)}


# ------------------------------------------------------------------------------------------- aggregation


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std of every metric over runs (each with ``metrics`` and ``miou_change``).

    Returns:
        ``{"n", "metrics": {score: {metric: [mean, std]}}, "miou": [mean, std], "miou_change": [mean, std]}``.
    """
    out: dict[str, Any] = {"n": len(runs), "metrics": {}}
    for s in SCORES:
        if all(s in r["metrics"] for r in runs):
            out["metrics"][s] = {m: list(mean_std([r["metrics"][s][m] for r in runs])) for m in METRICS}
    for key in ("miou", "miou_change"):
        vals = [r[key] for r in runs if r.get(key) is not None]
        out[key] = list(mean_std(vals)) if len(vals) == len(runs) else None
    road = [road_fpr(r) for r in runs]
    out["road_fpr"] = list(mean_std(road)) if road and all(v is not None for v in road) else None
    return out


def road_fpr(record: dict[str, Any]) -> float | None:
    """FPR (in %) within the pixels predicted as road at the :data:`ALARM_SCORE`'s 95 % TPR threshold."""
    try:
        return record["false_alarms"][ALARM_SCORE][ALARM_CLASSES[0]]["fpr"]
    except (KeyError, IndexError, TypeError):
        return None


def fmt(ms: Sequence[float] | None, n: int) -> str:
    """``mean ± std`` with two decimals (``mean`` alone for a single run, ``–`` when missing)."""
    if ms is None or math.isnan(ms[0]):
        return "–"
    return f"{ms[0]:.2f}" if n < 2 else f"{ms[0]:.2f} ± {ms[1]:.2f}"


def _table_head(head: Sequence[str]) -> list[str]:
    """Header and alignment row of a markdown table whose first column is text and the others numbers."""
    return ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]


def _setting_label(cfg: StudyConfig, st: Setting) -> str:
    """Row name of a setting in the tables that list every setting once (the label of its first group)."""
    group = next(g for g, rows in cfg.groups().items() if st in rows)
    return st.label(group, cfg.num_classes)


def markdown_tables(summary: dict[str, Any], cfg: StudyConfig) -> str:
    """The report tables (one per group; base models first)."""
    head = (["Setting", "n"] + [f"{SCORE_TITLES[s]} {METRIC_TITLES[m]}" for s in SCORES for m in METRICS]
            + [f"road FPR↓ ({SCORE_TITLES[ALARM_SCORE].lower()})", "ΔmIoU"])
    lines: list[str] = []
    base = summary["base"]
    for group, settings in cfg.groups().items():
        title = GROUP_TITLES[group].format(align=cfg.default_alignment, inlier=INLIER_TITLES[cfg.inlier])
        lines += [f"### {title}", "", *_table_head(head)]
        row = [f"base models (no finetuning; mIoU {fmt(base['miou'], base['n'])})", str(base["n"])]
        row += [fmt(base["metrics"].get(s, {}).get(m), base["n"]) for s in SCORES for m in METRICS]
        row += [fmt(base.get("road_fpr"), base["n"]), "0"]
        lines.append("| " + " | ".join(row) + " |")
        for st in settings:
            agg = summary["settings"].get(st.key)
            n = agg["n"] if agg else 0
            row = [st.label(group, cfg.num_classes), str(n)]
            if agg:
                row += [fmt(agg["metrics"].get(s, {}).get(m), n) for s in SCORES for m in METRICS]
                row += [fmt(agg.get("road_fpr"), n), fmt(agg["miou_change"], n)]
            else:
                row += ["not run"] * (len(head) - 2)
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


PER_BASE_COLUMNS: tuple[tuple[str, str], ...] = (("max_logit", "ap"), ("energy", "ap"), ("max_min", "ap"),
                                                   ("energy", "fpr95"))
"""(score, metric) columns of the per-base table."""


def per_base_table(cfg: StudyConfig, base_runs: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]]) -> str:
    """One row per setting, one column block per base model: mean ± std over that base's finetune seeds.

    Shows whether an ordering between settings holds within each base model, which the pooled tables (mean over
    every (base, seed) run) cannot show.
    """
    bases = sorted(base_runs, key=lambda r: r["base"])
    head = ["Setting"] + [f"{Path(b['base']).parent.name or b['base_sha']}: {SCORE_TITLES[s]} {METRIC_TITLES[m]}"
                          for b in bases for s, m in PER_BASE_COLUMNS] + ["n per base"]
    lines = _table_head(head)
    row = ["base model (no finetuning)"]
    for b in bases:
        row += [fmt([b["metrics"][s][m], 0.0], 1) for s, m in PER_BASE_COLUMNS]
    lines.append("| " + " | ".join(row + ["1"]) + " |")
    for st in cfg.settings():
        row, ns = [_setting_label(cfg, st)], []
        for b in bases:
            mine = [r for r in runs if r["key"] == st.key and r["base_sha"] == b["base_sha"]]
            ns.append(str(len(mine)))
            agg = aggregate(mine) if mine else None
            row += [fmt(agg["metrics"][s][m], agg["n"]) if agg and s in agg["metrics"] else "not run"
                    for s, m in PER_BASE_COLUMNS]
        lines.append("| " + " | ".join(row + ["/".join(ns)]) + " |")
    return "\n".join(lines) + "\n"


def false_alarm_table(cfg: StudyConfig, base_runs: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]]) -> str:
    """Where each setting's false alarms are: for :data:`ALARM_SCORE` at its 95 % TPR threshold, the FPR within
    the inlier pixels predicted as each class of :data:`ALARM_CLASSES`, and road's share of all false alarms
    (mean ± std over the runs that recorded it)."""
    head = (["Setting", "n"] + [f"{TRAIN_CLASSES[k]} FPR↓" for k in ALARM_CLASSES]
            + [f"{TRAIN_CLASSES[ALARM_CLASSES[0]]} share of alarms"])
    lines = _table_head(head)

    def row(label: str, recs: Sequence[dict[str, Any]]) -> str:
        recs = [r for r in recs if ALARM_SCORE in r.get("false_alarms", {})]
        cells = [label, str(len(recs))]
        for k in ALARM_CLASSES:
            vals = [r["false_alarms"][ALARM_SCORE][k]["fpr"] for r in recs]
            cells.append(fmt(mean_std([v for v in vals if v is not None]), len(recs)) if recs else "not run")
        share = [r["false_alarms"][ALARM_SCORE][ALARM_CLASSES[0]]["alarm_share"] for r in recs]
        cells.append(fmt(mean_std([v for v in share if v is not None]), len(recs)) if recs else "not run")
        return "| " + " | ".join(cells) + " |"

    lines.append(row("base models (no finetuning)", base_runs))
    for st in cfg.settings():
        lines.append(row(_setting_label(cfg, st), [r for r in runs if r["key"] == st.key]))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- the study


def _sha(path: str) -> str:
    """First 12 hex digits of the checkpoint's SHA-256, hashed once per (path, size, mtime)."""
    st = Path(path).stat()
    return _sha_of(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha_of(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def _log(cfg: StudyConfig, msg: str) -> None:
    if cfg.progress:
        print(f"[study {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def corpus_params(cfg: StudyConfig, alignment: str) -> dict[str, Any]:
    """The augment parameters that define a corpus (compared with an existing corpus's manifest)."""
    aligner, params = cfg.alignment_spec(alignment)
    return {"aligner": aligner, "aligner_params": json.loads(params), "seed": cfg.augment_seed,
            "max_frames": cfg.max_train_frames}


def ensure_corpus(cfg: StudyConfig, alignment: str) -> str:
    """The augmented corpus of ``alignment`` in ``out/corpora/``; built with ``stylepaste augment`` if missing.

    An existing folder is reused when its manifest records the same aligner, parameters, seed and frame limit.

    Raises:
        RuntimeError: If the augment run fails.
    """
    from pipelines import augment

    folder = Path(cfg.out) / "corpora" / alignment
    want = corpus_params(cfg, alignment)
    manifest = folder / "_manifest.json"
    if manifest.exists():
        p = json.loads(manifest.read_text())["parameters"]
        have = {"aligner": p["aligner"], "aligner_params": {k: v for k, v in p["aligner_params"].items()
                                                            if k != "strength"},
                "seed": p["seed"], "max_frames": p.get("max_frames")}
        if have == want:
            return str(folder)
        _log(cfg, f"corpus {folder} was made with {have}, rebuilding for {want}")
    aligner, params = cfg.alignment_spec(alignment)
    argv = ["--cityscapes", str(Path(cfg.world) / "cityscapes"), "--split", "train", "--bank", cfg.bank,
            "--out", str(folder), "--aligner", aligner, "--aligner-params", params, "--seed", str(cfg.augment_seed),
            "--num-shards", "4", "--overwrite", "--log-level", "WARNING", "--direct_running_mode", "in_memory"]
    if cfg.max_train_frames is not None:
        argv += ["--max-frames", str(cfg.max_train_frames)]
    t = time.perf_counter()
    rc = augment.main(argv)
    if rc != 0:
        raise RuntimeError(f"stylepaste augment failed for alignment {alignment!r} (exit code {rc})")
    _log(cfg, f"corpus {alignment}: {time.perf_counter() - t:.1f} s")
    return str(folder)


class _Bases:
    """Per base model: the loaded model and its caches (built lazily, kept on disk)."""

    def __init__(self, cfg: StudyConfig):
        self.cfg = cfg
        self.dtype = torch.float16 if cfg.cache_dtype == "float16" else torch.float32
        self.tag = {b: _sha(b) for b in cfg.bases}
        self._models: dict[str, torch.nn.Module] = {}
        self._mem: dict[tuple[str, str, str], FeatureCache] = {}

    def model(self, base: str) -> torch.nn.Module:
        if base not in self._models:
            m = build_model(self.cfg.arch, self.cfg.num_classes)
            load_checkpoint(m, base)
            self._models[base] = m.eval()
        return self._models[base]

    def fresh(self, base: str) -> torch.nn.Module:
        m = build_model(self.cfg.arch, self.cfg.num_classes)
        m.load_state_dict(self.model(base).state_dict())
        return m

    def cache(self, base: str, what: str, head: str, source: str | None = None) -> FeatureCache:
        """``what``: ``test`` / ``val`` (the test world's anomaly set / val split), ``validation-test`` /
        ``validation-val`` (the validation world's) or ``train:<alignment>`` (``source`` = corpus folder)."""
        key = (base, what, head)
        if key in self._mem:
            return self._mem[key]
        if what.startswith("train:"):
            # keep one train corpus in memory at a time
            for k in [k for k in self._mem if k[1].startswith("train:")]:
                del self._mem[k]
        path = (Path(self.cfg.out) / "cache" / self.tag[base]
                / f"{what.replace(':', '_').replace('+', '-')}_{head}_{self.cfg.cache_dtype}.pt")
        if path.exists():
            c = load_cache(path)
        else:
            t = time.perf_counter()
            model = self.model(base)
            w = Path(self.cfg.eval_world if what.startswith("validation-") else self.cfg.world)
            if what.endswith("test"):
                frames = dataset_frames("synthetic", str(w), self.cfg.max_test_frames)
                c = compute_features(model, frames, head, self.dtype, 1)
            elif what.endswith("val"):
                frames = dataset_frames("cityscapes_val", str(w / "cityscapes"), self.cfg.max_val_frames)
                c = compute_features(model, frames, head, self.dtype, 1)
            else:
                c = compute_features(model, shard_frames([source]), head, self.dtype, self.cfg.feature_batch)
            save_cache(c, path)
            _log(self.cfg, f"cached {what} features ({head}) of {Path(base).name} [{self.tag[base]}]: "
                           f"{len(c.ids)} frames, {time.perf_counter() - t:.1f} s")
        self._mem[key] = c
        return c

    def evaluate(self, model: torch.nn.Module, base: str, head: str) -> dict[str, Any]:
        """:func:`evaluate_cached` on the test world, with the validation world's results under ``"validation"``
        when the study has one."""
        res = evaluate_cached(model, head, self.cache(base, "test", head), self.cache(base, "val", head))
        if self.cfg.eval_world:
            res["validation"] = evaluate_cached(model, head, self.cache(base, "validation-test", head),
                                                self.cache(base, "validation-val", head))
        return res


def run_order(cfg: StudyConfig) -> list[tuple[Setting, str, int]]:
    """Every (setting, base, seed) run, most informative first, so that a study stopped early is still useful.

    First the key comparisons (the default setting, CE only, no alignment, plain one-vs-rest) seed by seed, then every other
    setting seed by seed, cheapest first (other k on the default corpus, then the other head, then the alignments
    that need a corpus of their own); within a seed, base by base.
    """
    d, i = cfg.default_alignment, cfg.inlier
    key = {Setting(d, 5, "classifier", i), Setting(d, 5, "classifier", "ce"), Setting("none", 5, "classifier", i),
           Setting(d, cfg.num_classes, "classifier", i)}
    settings = cfg.settings()
    first = [s for s in settings if s in key]
    rest = sorted((s for s in settings if s not in key), key=lambda s: (s.alignment != d, s.head != "classifier"))
    return [(st, b, seed) for tier in (first, rest) for seed in cfg.seeds for b in cfg.bases for st in tier]


def finetune_config(cfg: StudyConfig, st: Setting, base: str, seed: int, shards: str) -> FinetuneConfig:
    """The ``stylepaste finetune`` settings of one run (flip off, see the module docstring)."""
    k = None if st.k >= cfg.num_classes else st.k
    loss = LossConfig(k=k, inlier=st.inlier, inlier_weight=cfg.inlier_weight)
    return FinetuneConfig(shards=(shards,), checkpoint=base, out="unused://", arch=cfg.arch,
                          num_classes=cfg.num_classes, head=st.head, loss=loss, steps=cfg.steps,
                          lr=cfg.lr, optimizer=cfg.optimizer, batch_size=cfg.batch_size, flip=False,
                          shuffle_buffer=cfg.shuffle_buffer, workers=cfg.order_workers, seed=seed, device="cpu",
                          amp="off", progress=False)


def run(cfg: StudyConfig, *, report_only: bool = False) -> dict[str, Any]:
    """Run (or continue) the study and write ``study.json`` and ``study.md``.

    Runs go seed by seed (every setting and base for the first seed, then the next), so a study stopped early
    has complete rows with fewer seeds. Finished runs (``runs/*.json``) are not repeated.

    Args:
        cfg: Settings.
        report_only: Only aggregate the runs already on disk.

    Returns:
        The summary written to ``study.json``.
    """
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    bases = _Bases(cfg)
    t_start = time.perf_counter()
    timings: dict[str, float] = {"corpora": 0.0, "base_eval": 0.0, "finetune": 0.0, "evaluate": 0.0}

    # The base models' own numbers.
    base_runs: list[dict[str, Any]] = []
    for b in cfg.bases:
        f = out / "runs" / f"base_{bases.tag[b]}.json"
        if _current(f) or (report_only and f.exists()):
            base_runs.append(json.loads(f.read_text()))
            continue
        if report_only:
            continue
        t = time.perf_counter()
        res = bases.evaluate(bases.model(b), b, "classifier")
        if "validation" in res:
            res["validation"]["miou_change"] = 0.0
        rec = {"kind": "base", "record_version": RECORD_VERSION, "base": b, "base_sha": bases.tag[b], **res,
               "miou_change": 0.0}
        f.write_text(json.dumps(rec, indent=1))
        base_runs.append(rec)
        timings["base_eval"] += time.perf_counter() - t
        _log(cfg, f"base {Path(b).name}: " + ", ".join(
            f"{s} AP {res['metrics'][s]['ap']:.2f}" for s in SCORES) + f", mIoU {res['miou']:.2f}")
    base_miou = {r["base"]: r["miou"] for r in base_runs}
    base_val_miou = {r["base"]: r.get("validation", {}).get("miou") for r in base_runs}

    corpora: dict[str, str] = {}
    probing = cfg.probe_steps > 0 and not report_only
    for b in cfg.bases if probing else ():
        f = out / "runs" / f"probe_{bases.tag[b]}.json"
        if _current(f):
            continue
        d = cfg.default_alignment
        if d not in corpora:  # built once, shared with the finetune runs below
            corpora[d] = ensure_corpus(cfg, d)
        t = time.perf_counter()
        res = head_only_ceiling(bases.cache(b, f"train:{d}", "classifier", corpora[d]),
                                bases.cache(b, "test", "classifier"), cfg.num_classes, cfg.probe_steps)
        rec = {"kind": "probe", "record_version": RECORD_VERSION, "base": b, "base_sha": bases.tag[b],
               "alignment": d, "steps": cfg.probe_steps, **res, "seconds": time.perf_counter() - t}
        f.write_text(json.dumps(rec, indent=1))
        _log(cfg, f"probe {Path(b).name}: on the pastes AP {res['pastes']['ap']:.2f}, cross-validated on the "
                  f"test anomalies AP {res['test_cv']['ap']:.2f} ({rec['seconds']:.1f} s)")
    for st, b, seed in run_order(cfg):
        f = out / "runs" / f"{st.key}_base{bases.tag[b]}_seed{seed}.json"
        if _current(f) or report_only:
            continue
        if st.alignment not in corpora:  # built when first needed
            t = time.perf_counter()
            corpora[st.alignment] = ensure_corpus(cfg, st.alignment)
            timings["corpora"] += time.perf_counter() - t
        fcfg = finetune_config(cfg, st, b, seed, corpora[st.alignment])
        cache = bases.cache(b, f"train:{st.alignment}", st.head, corpora[st.alignment])
        t = time.perf_counter()
        model, log = finetune_cached(fcfg, cache, model=bases.fresh(b))
        t_ft = time.perf_counter() - t
        t = time.perf_counter()
        res = bases.evaluate(model, b, st.head)
        if "validation" in res and base_val_miou.get(b) is not None:
            res["validation"]["miou_change"] = res["validation"]["miou"] - base_val_miou[b]
        t_ev = time.perf_counter() - t
        timings["finetune"] += t_ft
        timings["evaluate"] += t_ev
        head_hash = hashlib.sha256(b"".join(
            v.numpy().tobytes() for _, v in sorted(head_state_dict(model, st.head).items()))).hexdigest()[:16]
        rec = {"kind": "finetune", "record_version": RECORD_VERSION, "setting": asdict(st), "key": st.key,
               "base": b, "base_sha": bases.tag[b],
               "seed": seed, **res, "miou_change": res["miou"] - base_miou[b],
               "final_loss": log[-1], "mean_loss_last10": float(np.mean([r["loss"] for r in log[-10:]])),
               "head_sha256": head_hash, "seconds": {"finetune": t_ft, "evaluate": t_ev},
               "finetune_config": fcfg.to_json()}
        f.write_text(json.dumps(rec, indent=1))
        _log(cfg, f"{st.key} base {bases.tag[b]} seed {seed}: finetune {t_ft:.1f} s, eval {t_ev:.1f} s; "
                  + ", ".join(f"{s} AP {res['metrics'][s]['ap']:.2f}" for s in SCORES)
                  + f", ΔmIoU {rec['miou_change']:+.2f}")
        write_report(cfg, timings=timings, seconds=time.perf_counter() - t_start)  # partial results stay readable
    if report_only:
        return write_report(cfg)
    return write_report(cfg, timings=timings, seconds=time.perf_counter() - t_start)


def _current(record: Path) -> bool:
    """Whether a run record exists and is of the current :data:`RECORD_VERSION`."""
    if not record.exists():
        return False
    return json.loads(record.read_text()).get("record_version", 1) >= RECORD_VERSION


def split_view(record: dict[str, Any], split: str) -> dict[str, Any] | None:
    """A run record as seen on one of :data:`SPLITS`: its top-level results are the test world's, the validation
    world's are under ``"validation"`` (``None`` when the record has none)."""
    if split == "test":
        return record
    if split != "validation":
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    v = record.get("validation")
    return None if v is None else {**record, **v}


def collect(cfg: StudyConfig, split: str = "test") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The base and finetune run records in ``out/runs`` that belong to ``cfg`` (its bases, seeds, settings), as
    seen on ``split`` (:func:`split_view`)."""
    tags = {b: _sha(b) for b in cfg.bases}
    keys = {s.key for s in cfg.settings()}
    bases, runs = [], []
    for f in sorted((Path(cfg.out) / "runs").glob("*.json")):
        r = json.loads(f.read_text())
        if r.get("base_sha") not in tags.values() or r["kind"] == "probe":
            continue
        if r["kind"] == "base":
            bases.append(r)
        elif r["key"] in keys and r["seed"] in cfg.seeds and r["finetune_config"]["steps"] == cfg.steps:
            runs.append(r)
    order = {tag: i for i, tag in enumerate(tags.values())}
    bases.sort(key=lambda r: order[r["base_sha"]])
    views = [[v for v in (split_view(r, split) for r in rs) if v is not None] for rs in (bases, runs)]
    return views[0], views[1]


def collect_probes(cfg: StudyConfig) -> list[dict[str, Any]]:
    """The linear-probe records (:func:`head_only_ceiling`) of ``cfg``'s base models, in ``cfg.bases`` order."""
    out = []
    for b in cfg.bases:
        f = Path(cfg.out) / "runs" / f"probe_{_sha(b)}.json"
        if f.exists():
            r = json.loads(f.read_text())
            if r.get("record_version", 1) >= RECORD_VERSION:
                out.append(r)
    return out


def ceiling_table(cfg: StudyConfig, base_runs: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]],
                  probes: Sequence[dict[str, Any]]) -> str:
    """The head-only ceiling per base model beside the default setting's energy AP.

    ``used`` is the share of the headroom between the base model's post-hoc energy AP and the probe trained on the
    pastes that the default finetune takes: ``(AP_finetuned - AP_base) / (AP_probe - AP_base)``.
    """
    default = Setting(cfg.default_alignment, 5, "classifier", cfg.inlier).key
    head = ["Base model", "post-hoc energy AP↑", "probe on the pastes: AUROC↑", "AP↑", "FPR95↓",
            "probe cross-validated on the test anomalies: AUROC↑", "AP↑", "FPR95↓",
            "default finetune: energy AP↑", "headroom used"]
    lines = _table_head(head)
    by_sha = {r["base_sha"]: r for r in base_runs}
    for pr in probes:
        b = by_sha.get(pr["base_sha"])
        if b is None:
            continue
        base_ap = b["metrics"]["energy"]["ap"]
        mine = [r["metrics"]["energy"]["ap"] for r in runs if r["key"] == default and r["base_sha"] == pr["base_sha"]]
        ft = mean_std(mine) if mine else None
        room = pr["pastes"]["ap"] - base_ap
        used = f"{100 * (ft[0] - base_ap) / room:.0f} %" if ft and room > 0 else "–"
        cells = [Path(pr["base"]).parent.name or pr["base_sha"], f"{base_ap:.2f}"]
        cells += [f"{pr[k][m]:.2f}" for k in ("pastes", "test_cv") for m in METRICS]
        cells += [fmt(ft, len(mine)) if ft else "not run", used]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summarize(cfg: StudyConfig, base_runs: list[dict[str, Any]], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregates over (base, seed) runs per setting, and over the base models."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_key.setdefault(r["key"], []).append(r)
    return {"base": aggregate(base_runs) if base_runs else {"n": 0, "metrics": {}, "miou": None},
            "settings": {k: aggregate(v) for k, v in by_key.items()}}


def write_report(cfg: StudyConfig, *, timings: dict[str, float] | None = None,
                 seconds: float | None = None) -> dict[str, Any]:
    """Aggregate the runs on disk into ``study.json`` and ``study.md``.

    With a validation world the report has two parts: the validation world first (where choices are made), then
    the test world (reported only); the probes of the head-only ceiling are on the test world.
    """
    out = Path(cfg.out)
    splits = SPLITS if cfg.eval_world else ("test",)
    views = {sp: collect(cfg, sp) for sp in splits}
    base_runs, runs = views["test"]
    summary = summarize(cfg, base_runs, runs)
    probes = collect_probes(cfg)
    doc = {"config": json.loads(json.dumps(asdict(cfg))), "summary": summary, "base_runs": base_runs,
           "probes": probes, "runs": runs, "timings": timings or {}, "seconds": seconds,
           "groups": {g: [s.key for s in v] for g, v in cfg.groups().items()}}
    if cfg.eval_world:
        doc["summary_validation"] = summarize(cfg, *views["validation"])
    (out / "study.json").write_text(json.dumps(doc, indent=1))
    where = (f"evaluated on the anomaly set and val split of the validation world `{cfg.eval_world}` (where "
             f"choices are made) and of the test world `{cfg.world}` (reported only)" if cfg.eval_world else
             f"evaluated on the anomaly set of `{cfg.world}` ({_count(base_runs)}) and its val split")
    lines = [
        "# stylepaste study: the poster's ablations on the synthetic city", "",
        f"Base models: {len(base_runs)} ({', '.join(Path(r['base']).as_posix() for r in base_runs)}); finetune "
        f"seeds {list(cfg.seeds)}; {cfg.steps} steps, batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.lr}, whole "
        f"frames without flips, head trained on cached body features ({cfg.cache_dtype}). Train corpora from "
        f"`{cfg.world}`; {where}; ΔmIoU against each run's base model. "
        f"Anomaly metrics in %, pooled over all valid pixels, exact; cells are mean ± sample std over the "
        f"(base, seed) runs (n = number of runs).", "",
    ]
    for sp in splits:
        b_runs, f_runs = views[sp]
        if cfg.eval_world:
            world = cfg.eval_world if sp == "validation" else cfg.world
            lines += [f"## On the {sp} world (`{world}`, {_count(b_runs)})"
                      + (": choices are made here" if sp == "validation" else ": reported only"), ""]
        lines.append(markdown_tables(summarize(cfg, b_runs, f_runs), cfg))
        if probes and sp == "test":
            lines += ["### Head-only ceiling (a linear probe on the frozen classifier-input features)", "",
                      f"A 1x1 linear probe to one anomaly logit ({cfg.probe_steps} steps, class-balanced BCE), "
                      f"trained on the pasted objects of the {cfg.default_alignment} corpus, and trained on the test "
                      "anomalies themselves (2-fold over frames, each frame scored by the probe that did not see "
                      "it). The second says how separable the test anomalies are in these features at all; the "
                      "first, what a linear readout of these pastes can reach.", "",
                      ceiling_table(cfg, b_runs, f_runs, probes)]
        if len(b_runs) > 1:
            lines += ["### Per base model (mean ± std over each base's finetune seeds)", "",
                      per_base_table(cfg, b_runs, f_runs)]
        lines += [f"### Where the false alarms are ({SCORE_TITLES[ALARM_SCORE].lower()} at its 95 % TPR threshold)",
                  "", "FPR within the inlier pixels predicted as each class, and that class's share of all false "
                  "alarms, in % (mean ± std over the runs).", "", false_alarm_table(cfg, b_runs, f_runs)]
    spent = [r["seconds"] for r in runs if "seconds" in r]
    if spent:
        ft, ev = sum(s["finetune"] for s in spent), sum(s["evaluate"] for s in spent)
        lines += [f"Compute of the {len(spent)} finetune runs on record: finetuning {ft:.0f} s, evaluation "
                  f"{ev:.0f} s ({ft / len(spent):.1f} s and {ev / len(spent):.1f} s per run).", ""]
    if timings and any(timings.values()):
        lines += ["This invocation (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
                  + (f", total {seconds:.0f}" if seconds is not None else ""), ""]
    (out / "study.md").write_text("\n".join(lines))
    return doc


def _count(base_runs: list[dict[str, Any]]) -> str:
    if not base_runs:
        return "not evaluated"
    m = base_runs[0]["metrics"][SCORES[0]]
    return f"{m['num_pos']} anomaly and {m['num_neg']} inlier pixels"


# ------------------------------------------------------------------------------------------- command line


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def build_parser() -> argparse.ArgumentParser:
    """The ``stylepaste study`` argument parser."""
    d = StudyConfig(world="", bank="", bases=("x",))
    p = argparse.ArgumentParser(
        prog="stylepaste study",
        description="The poster's ablations on the synthetic city: inlier term, style alignment, top-k and "
                    "trained part, with a head-only ceiling (linear probes), "
                    "finetuned from every --base with every seed on cached body features, evaluated on the "
                    "synthetic anomaly set (AUROC/AP/FPR95 for max logit, energy, max-min) and the val mIoU; "
                    "writes study.md (mean ± std tables) and study.json (every run).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--world", default="runs/world0", help="folder written by stylepaste world")
    p.add_argument("--eval-world", default="",
                   help="validation world (stylepaste world --seed 1): its anomaly set and val split are evaluated "
                        "beside --world's and the report shows them first, as the place where choices are made; "
                        "the train corpora always come from --world")
    p.add_argument("--bank", default="runs/bank0", help="object bank folder (stylepaste bank)")
    p.add_argument("--base", action="append", required=True, help="base model checkpoint (repeat for several)")
    p.add_argument("--out", default=d.out, help="output folder")
    p.add_argument("--arch", default=d.arch, help="architecture of the base models")
    p.add_argument("--alignments", type=_names, default=d.alignments,
                   help=f"alignment settings, comma-separated, from {', '.join(ALIGNMENTS)} (and {LEARNED}, "
                        "with --learned-params)")
    p.add_argument("--learned-params", default="",
                   help='parameters of a trained style generator as JSON, e.g. \'{"path": "gen.ts", "kind": '
                        '"torchscript"}\' (see style_transfer.learned); adds the alignment "learned"')
    p.add_argument("--default-alignment", default=d.default_alignment, help="alignment of the top-k and head rows")
    p.add_argument("--inliers", type=_names, default=d.inliers,
                   help=f"inlier terms of the inlier rows, comma-separated, from {', '.join(INLIER_KINDS)}")
    p.add_argument("--inlier", default=d.inlier, choices=INLIER_KINDS,
                   help="inlier term of the alignment, top-k and head rows")
    p.add_argument("--inlier-weight", type=float, default=d.inlier_weight, help="weight of the inlier anchor")
    p.add_argument("--probe-steps", type=int, default=d.probe_steps,
                   help="steps of the head-only ceiling's linear probes (0: no probes)")
    p.add_argument("--ks", type=_ints, default=d.ks, help="k values of the top-k rows")
    p.add_argument("--heads", type=_names, default=d.heads, help="heads of the head rows")
    p.add_argument("--seeds", type=_ints, default=d.seeds, help="finetune seeds")
    p.add_argument("--steps", type=int, default=d.steps, help="finetune steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="finetune batch size")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate")
    p.add_argument("--order-workers", type=int, default=d.order_workers,
                   help="finetune --workers whose data order is reproduced")
    p.add_argument("--augment-seed", type=int, default=d.augment_seed, help="seed of the augmented corpora")
    p.add_argument("--max-train-frames", type=int, default=None, help="augment only the first N train frames")
    p.add_argument("--max-test-frames", type=int, default=None, help="evaluate at most N anomaly frames")
    p.add_argument("--max-val-frames", type=int, default=None, help="mIoU on at most N val frames")
    p.add_argument("--cache-dtype", default=d.cache_dtype, choices=("float32", "float16"),
                   help="storage of cached features")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--quick", action="store_true",
                   help="a tiny study: inlier distill,ce; alignments none,reinhard+sensor; k 5,19; classifier head; "
                        "seed 0; 20 steps; 50 probe steps")
    p.add_argument("--report-only", action="store_true", help="only aggregate the runs already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress lines")
    return p


def config_from_args(a: argparse.Namespace) -> StudyConfig:
    """Build the :class:`StudyConfig` from parsed arguments."""
    cfg = StudyConfig(
        world=a.world, eval_world=a.eval_world, bank=a.bank, bases=tuple(a.base), out=a.out, arch=a.arch, alignments=tuple(a.alignments),
        learned_params=a.learned_params, default_alignment=a.default_alignment, inliers=tuple(a.inliers),
        inlier=a.inlier, inlier_weight=a.inlier_weight, probe_steps=a.probe_steps, ks=tuple(a.ks),
        heads=tuple(a.heads), seeds=tuple(a.seeds),
        steps=a.steps, batch_size=a.batch_size, lr=a.lr, order_workers=a.order_workers,
        augment_seed=a.augment_seed, max_train_frames=a.max_train_frames, max_test_frames=a.max_test_frames,
        max_val_frames=a.max_val_frames, cache_dtype=a.cache_dtype, threads=a.threads, progress=not a.no_progress)
    if a.quick:
        cfg = replace(cfg, alignments=("none", DEFAULT_ALIGNMENT), ks=(5, NUM_CLASSES), heads=("classifier",),
                      inliers=(DEFAULT_INLIER, "ce"), seeds=(0,), steps=20, probe_steps=50)
    return cfg


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``stylepaste study``."""
    parser = build_parser()
    a = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = config_from_args(a)
    except ValueError as err:
        parser.error(str(err))
    for b in cfg.bases:
        if not Path(b).is_file():
            print(f"stylepaste study: error: base checkpoint not found: {b}", file=sys.stderr)
            return 2
    doc = run(cfg, report_only=a.report_only)
    print((Path(cfg.out) / "study.md").read_text())
    return 0 if doc else 1


if __name__ == "__main__":
    raise SystemExit(main())
