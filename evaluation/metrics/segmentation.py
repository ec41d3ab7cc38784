"""Semantic segmentation metrics (:class:`SegmentationMetrics`) and false alarms by predicted class
(:class:`FalseAlarmsByClass`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from evaluation.metrics.common import _STATE_VERSION, _anomaly_masks, _check_frames, _check_state, _comm_device, _dist_ready, _to_numpy





class FalseAlarmsByClass:
    """Where an anomaly score's false alarms are: inlier pixels flagged at a threshold, by predicted class.

    Keeps the score and the predicted class of every ``stride``-th in-distribution pixel (label 0, in raster
    order over all frames, so the sample is uniform), which costs ``5 / stride`` bytes per pixel. With
    ``stride=1`` the result is exact. Use it with the threshold of :class:`AnomalyMetrics` (``fpr95_threshold``)
    to see which in-distribution classes the score confuses with anomalies.

    Args:
        num_classes: Predicted classes (19 for Cityscapes trainIds).
        stride: Keep every ``stride``-th inlier pixel (>= 1).

    Raises:
        ValueError: For ``num_classes < 1`` or ``stride < 1``.
    """

    def __init__(self, num_classes: int = 19, stride: int = 16) -> None:
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if int(stride) < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.num_classes, self.stride = int(num_classes), int(stride)
        self._scores: list[np.ndarray] = []
        self._classes: list[np.ndarray] = []
        self._seen = 0

    def update(self, scores: Any, labels: Any, predicted: Any) -> None:
        """Add frames.

        Args:
            scores: (H, W) or (B, H, W) anomaly scores (higher = more anomalous).
            labels: Same shape, 0 in-distribution, 1 anomaly, 255 void.
            predicted: Same shape, the predicted class of each pixel (0 .. num_classes - 1).

        Raises:
            ValueError: For shapes that differ, labels outside {0, 1, 255} or classes out of range.
        """
        s = _to_numpy(scores, "scores")
        y = _to_numpy(labels, "labels")
        c = _to_numpy(predicted, "predicted")
        _check_frames(s, y, "FalseAlarmsByClass")
        if c.shape != y.shape:
            raise ValueError(f"FalseAlarmsByClass.update: predicted has shape {tuple(c.shape)}, labels "
                             f"{tuple(y.shape)}; they must match")
        _, neg = _anomaly_masks(y, "FalseAlarmsByClass")
        inl_s, inl_c = s[neg], c[neg]
        if inl_c.size and (int(inl_c.min()) < 0 or int(inl_c.max()) >= self.num_classes):
            raise ValueError(f"FalseAlarmsByClass.update: predicted classes must be in 0..{self.num_classes - 1}, "
                             f"got {int(inl_c.min())}..{int(inl_c.max())}")
        first = (-self._seen) % self.stride
        self._scores.append(np.asarray(inl_s[first::self.stride], dtype=np.float32))
        self._classes.append(np.asarray(inl_c[first::self.stride], dtype=np.uint8))
        self._seen += inl_s.size

    def compute(self, threshold: float) -> list[dict[str, float]]:
        """Per predicted class at ``threshold`` (pixels with ``score >= threshold`` are flagged).

        Returns:
            One dict per class: ``inlier_share`` (fraction of the sampled inlier pixels predicted as the class),
            ``fpr`` (fraction of them flagged), ``alarm_share`` (their fraction of all flagged inlier pixels)
            and ``sampled`` (pixel count). Fractions are NaN where undefined.
        """
        s = np.concatenate(self._scores) if self._scores else np.zeros(0, np.float32)
        c = np.concatenate(self._classes) if self._classes else np.zeros(0, np.uint8)
        flagged = s >= np.float32(threshold)
        n = np.bincount(c, minlength=self.num_classes).astype(np.float64)
        f = np.bincount(c[flagged], minlength=self.num_classes).astype(np.float64)
        total, alarms = n.sum(), f.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            return [{"inlier_share": n[k] / total if total else math.nan,
                     "fpr": f[k] / n[k] if n[k] else math.nan,
                     "alarm_share": f[k] / alarms if alarms else math.nan,
                     "sampled": int(n[k])} for k in range(self.num_classes)]


# ----------------------------------------------------------------------------------------------------
# Semantic segmentation
# ----------------------------------------------------------------------------------------------------


class SegmentationMetrics:
    """Confusion matrix, per-class IoU and mIoU (Cityscapes protocol), mergeable.

    Args:
        num_classes: Number of evaluated classes (19 for Cityscapes trainIds).
        ignore_labels: Target values that are not evaluated: 255 (ignore) and 254 (pasted OoD) by default.

    Raises:
        ValueError: For ``num_classes < 1`` or ignore labels inside ``[0, num_classes)``.
    """

    def __init__(self, num_classes: int = 19, ignore_labels: Sequence[int] = (255, 254)):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        ignore = tuple(sorted({int(v) for v in ignore_labels}))
        if any(0 <= v < num_classes for v in ignore):
            raise ValueError(f"ignore_labels {list(ignore)} overlap the class ids 0..{num_classes - 1}")
        self.num_classes = int(num_classes)
        self.ignore_labels = ignore
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        """``confusion[t, p]``: number of pixels of true class ``t`` predicted as ``p``."""

    def reset(self) -> None:
        """Zero the confusion matrix."""
        self.confusion[:] = 0

    def update(self, preds: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor) -> None:
        """Add frames.

        Args:
            preds: Predicted class ids, shape (H, W) or (B, H, W) (integer), or logits of shape
                (C, H, W) / (B, C, H, W) (floating; the arg-max over C is taken).
            targets: True class ids, shape (H, W) or (B, H, W): ``0..num_classes-1`` or an ignore label.

        Raises:
            ValueError: Shape mismatch or values outside the allowed ranges.
        """
        nc = self.num_classes
        if isinstance(preds, torch.Tensor) or isinstance(targets, torch.Tensor):
            p = preds if isinstance(preds, torch.Tensor) else torch.from_numpy(np.asarray(preds))
            t = targets if isinstance(targets, torch.Tensor) else torch.from_numpy(np.asarray(targets))
            t = t.to(p.device)
            if p.is_floating_point():
                p = self._argmax(p, tuple(t.shape), lambda x: x.argmax(dim=-3))
            self._check_shapes(tuple(p.shape), tuple(t.shape))
            t = t.long()
            p = p.long()
            valid = (t >= 0) & (t < nc)
            ignored = torch.zeros_like(valid)
            for v in self.ignore_labels:
                ignored |= t == v
            self._check_values(
                int((~(valid | ignored)).sum()), lambda: torch.unique(t[~(valid | ignored)])[:10].tolist(),
                int(((p < 0) | (p >= nc))[valid].sum()), lambda: torch.unique(p[valid & ((p < 0) | (p >= nc))])[:10].tolist(),
            )
            counts = torch.bincount(t[valid] * nc + p[valid], minlength=nc * nc)
            self.confusion += counts.cpu().numpy().reshape(nc, nc)
            return
        p = np.asarray(preds)
        t = np.asarray(targets)
        if p.dtype.kind == "f":
            p = self._argmax(p, t.shape, lambda x: x.argmax(axis=-3))
        self._check_shapes(p.shape, t.shape)
        t = t.astype(np.int64, copy=False)
        valid = (t >= 0) & (t < nc)
        ignored = np.isin(t, self.ignore_labels)
        bad_p = ((p < 0) | (p >= nc)) & valid
        self._check_values(
            int(np.count_nonzero(~(valid | ignored))), lambda: np.unique(t[~(valid | ignored)])[:10].tolist(),
            int(np.count_nonzero(bad_p)), lambda: np.unique(p[bad_p])[:10].tolist(),
        )
        counts = np.bincount(t[valid] * nc + p[valid].astype(np.int64), minlength=nc * nc)
        self.confusion += counts.reshape(nc, nc)

    def _argmax(self, logits: Any, target_shape: tuple[int, ...], argmax: Any) -> Any:
        if logits.ndim != len(target_shape) + 1 or logits.shape[-3] != self.num_classes:
            raise ValueError(
                f"SegmentationMetrics.update: logits of shape {tuple(logits.shape)} do not match targets "
                f"{tuple(target_shape)} with {self.num_classes} classes (expected (B, C, H, W) or (C, H, W))"
            )
        return argmax(logits)

    @staticmethod
    def _check_shapes(p: tuple[int, ...], t: tuple[int, ...]) -> None:
        if p != t or len(t) not in (2, 3):
            raise ValueError(
                f"SegmentationMetrics.update: predictions {p} and targets {t} must have the same shape "
                "(H, W) or (B, H, W)"
            )

    def _check_values(self, n_bad_t: int, bad_t: Any, n_bad_p: int, bad_p: Any) -> None:
        if n_bad_t:
            raise ValueError(
                f"SegmentationMetrics.update: {n_bad_t} target pixels are neither a class id "
                f"0..{self.num_classes - 1} nor an ignore label {list(self.ignore_labels)}, e.g. {bad_t()}"
            )
        if n_bad_p:
            raise ValueError(
                f"SegmentationMetrics.update: {n_bad_p} predictions are outside 0..{self.num_classes - 1}, e.g. {bad_p()}"
            )

    def compute(self) -> dict[str, Any]:
        """Per-class IoU and their mean.

        Returns:
            ``miou`` (mean over classes that occur in targets or predictions; NaN if none),
            ``iou`` (list, NaN for classes that never occur), ``pixel_accuracy``, ``mean_accuracy``
            (over classes present in the targets) and ``num_pixels`` (evaluated pixels).
        """
        cm = self.confusion.astype(np.float64)
        tp = np.diag(cm)
        union = cm.sum(0) + cm.sum(1) - tp
        gt = cm.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
            acc = np.where(gt > 0, tp / gt, np.nan)
        total = float(cm.sum())
        nanmean = lambda a: float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")  # noqa: E731
        return {
            "miou": nanmean(iou),
            "iou": [float(v) for v in iou],
            "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
            "mean_accuracy": nanmean(acc),
            "num_pixels": int(total),
        }

    def state_dict(self) -> dict[str, Any]:
        """Settings and the confusion matrix (int64 tensor)."""
        return {
            "kind": "SegmentationMetrics",
            "version": _STATE_VERSION,
            "num_classes": self.num_classes,
            "ignore_labels": list(self.ignore_labels),
            "confusion": torch.from_numpy(self.confusion.copy()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the confusion matrix with that of ``state`` (same number of classes required)."""
        _check_state(state, "SegmentationMetrics", ("num_classes", "ignore_labels", "confusion"))
        if int(state["num_classes"]) != self.num_classes:
            raise ValueError(
                f"SegmentationMetrics.load_state_dict: state has {state['num_classes']} classes, expected {self.num_classes}"
            )
        cm = _to_numpy(state["confusion"], "confusion")
        if cm.shape != self.confusion.shape or cm.dtype != np.int64 or (cm < 0).any():
            raise ValueError(
                f"SegmentationMetrics.load_state_dict: confusion must be a non-negative int64 "
                f"{self.confusion.shape} matrix, got {cm.dtype} {tuple(cm.shape)}"
            )
        self.confusion = np.array(cm, copy=True)

    def merge(self, other: SegmentationMetrics) -> SegmentationMetrics:
        """Add the confusion matrix of ``other``; returns ``self``."""
        if not isinstance(other, SegmentationMetrics):
            raise TypeError(f"SegmentationMetrics.merge expects a SegmentationMetrics, got {type(other).__name__}")
        if other.num_classes != self.num_classes:
            raise ValueError(f"SegmentationMetrics.merge: {other.num_classes} classes vs {self.num_classes}")
        self.confusion = self.confusion + other.confusion
        return self

    def sync(self, process_group: Any = None) -> None:
        """Sum the confusion matrices of all ranks (all-reduce); no-op without ``torch.distributed``."""
        if not _dist_ready():
            return
        t = torch.from_numpy(self.confusion.copy()).to(_comm_device(process_group))
        torch.distributed.all_reduce(t, group=process_group)
        self.confusion = t.cpu().numpy()
