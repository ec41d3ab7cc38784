"""SegmentMeIfYouCan component-level metrics (:class:`ComponentMetrics`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from evaluation.metrics.common import SIOU_THRESHOLDS, _STATE_VERSION, _all_gather_1d, _anomaly_masks, _check_finite, _check_frames, _check_state, _dist_ready, _score_dtype, _state_array, _to_numpy





# ----------------------------------------------------------------------------------------------------
# SegmentMeIfYouCan component-level metrics
# ----------------------------------------------------------------------------------------------------


def _frame_components(
    scores: np.ndarray, labels: np.ndarray, threshold: float, min_gt_size: int, min_pred_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sIoU of each ground-truth component, sIoU and PPV of each predicted component, for one frame."""
    from scipy import ndimage

    structure = np.ones((3, 3), dtype=bool)  # 8-connectivity, as the benchmark
    void = labels == 255
    gt_ids, n_gt = ndimage.label(labels == 1, structure=structure)
    pred_ids, n_pred = ndimage.label((scores >= threshold) & ~void, structure=structure)

    pred_size = np.bincount(pred_ids.ravel(), minlength=n_pred + 1)
    keep = pred_size >= min_pred_size
    keep[0] = False
    pred_ids = (np.arange(n_pred + 1) * keep)[pred_ids]  # drop small predicted components

    gt_size = np.bincount(gt_ids.ravel(), minlength=n_gt + 1)
    small_gt = gt_size < min_gt_size
    small_gt[0] = False
    roi = ~void & ~small_gt[gt_ids]  # small ground-truth components become void

    g = gt_ids[roi].astype(np.int64)
    p = pred_ids[roi].astype(np.int64)
    touched = (g > 0) | (p > 0)
    keys, counts = np.unique(g[touched] * (n_pred + 1) + p[touched], return_counts=True)
    kg, kp = keys // (n_pred + 1), keys % (n_pred + 1)
    # Contingency table C[g, p] as sparse triplets (kg, kp, counts); g = 0 / p = 0 is background.
    size_g = np.bincount(kg, weights=counts, minlength=n_gt + 1)
    size_p = np.bincount(kp, weights=counts, minlength=n_pred + 1)
    bg_of_p = np.bincount(kp[kg == 0], weights=counts[kg == 0], minlength=n_pred + 1)  # C[0, p]
    bg_of_g = np.bincount(kg[kp == 0], weights=counts[kp == 0], minlength=n_gt + 1)  # C[g, 0]
    both = (kg > 0) & (kp > 0)
    inter_g = np.bincount(kg[both], weights=counts[both], minlength=n_gt + 1)
    inter_p = np.bincount(kp[both], weights=counts[both], minlength=n_pred + 1)
    # sIoU(k) = |k ∩ K'| / |(k ∪ K') \ A(k)|, K' = union of the other side's components touching k,
    # A(k) = pixels of the same side's other components. Outside A(k), K' only adds its background.
    extra_g = np.bincount(kg[both], weights=bg_of_p[kp[both]], minlength=n_gt + 1)
    extra_p = np.bincount(kp[both], weights=bg_of_g[kg[both]], minlength=n_pred + 1)

    gt_present = np.flatnonzero(size_g[1:] > 0) + 1
    pred_present = np.flatnonzero(size_p[1:] > 0) + 1
    siou_gt = inter_g[gt_present] / (size_g[gt_present] + extra_g[gt_present])
    siou_pred = inter_p[pred_present] / (size_p[pred_present] + extra_p[pred_present])
    ppv = inter_p[pred_present] / size_p[pred_present]
    return siou_gt, siou_pred, ppv


class ComponentMetrics:
    """SegmentMeIfYouCan component-level metrics: sIoU (gt), PPV, mean F1.

    Per frame, the prediction is ``score >= threshold`` outside void pixels; ground-truth anomalies
    (label 1) and the prediction are split into 8-connected components (``scipy.ndimage.label`` with a
    3x3 structure). As in the benchmark's official code, predicted components smaller than
    ``min_pred_size`` pixels are dropped, ground-truth components smaller than ``min_gt_size`` pixels are
    turned into void, and everything is then restricted to the non-void region. For a ground-truth
    component ``k`` with ``K'`` the union of predicted components that intersect it and ``A(k)`` the pixels
    of the other ground-truth components::

        sIoU(k) = |k ∩ K'| / |(k ∪ K') \\ A(k)|

    and symmetrically for predicted components (``sIoU_pred``). The PPV of a predicted component is the
    fraction of its pixels on ground-truth anomalies. Over a data set: ``siou_gt`` is the mean over all
    ground-truth components, ``ppv`` the mean over all predicted components, and for each threshold
    ``t`` in :data:`SIOU_THRESHOLDS` ``TP = #{sIoU_gt >= t}``, ``FN = #{sIoU_gt < t}``,
    ``FP = #{PPV < t}``, ``F1 = 2 TP / (2 TP + FN + FP)``; ``f1_mean`` averages F1 over the thresholds.

    Departures from the official code (road-anomaly-benchmark, ``metrics/instance_segmentation.py``):
    the prediction is ``score >= threshold`` (the official code uses ``>``), matching the threshold
    semantics of :class:`AnomalyMetrics` (``best_f1_threshold`` is the threshold the benchmark uses);
    the official code can also void the *background* when the whole background is smaller than
    ``min_gt_size`` pixels (a quirk of a loop that includes label 0), which is not reproduced. Undefined
    values (no component at all) are NaN instead of a division error.

    Args:
        threshold: Score threshold; pixels with ``score >= threshold`` are predicted anomalous.
        min_gt_size: Ground-truth components smaller than this are ignored (void); 100 on the
            SMIYC anomaly track, 10 on the obstacle track.
        min_pred_size: Predicted components smaller than this are dropped; 500 (anomaly track),
            50 (obstacle track).
        siou_thresholds: Thresholds for the F1 average.

    Raises:
        ValueError: For a non-finite threshold, negative sizes or thresholds outside [0, 1].
    """

    def __init__(
        self,
        threshold: float,
        *,
        min_gt_size: int = 100,
        min_pred_size: int = 500,
        siou_thresholds: Sequence[float] = SIOU_THRESHOLDS,
    ):
        if not math.isfinite(float(threshold)):
            raise ValueError(f"threshold must be finite, got {threshold}")
        if int(min_gt_size) < 0 or int(min_pred_size) < 0:
            raise ValueError(f"min_gt_size and min_pred_size must be >= 0, got {min_gt_size}, {min_pred_size}")
        ts = tuple(float(t) for t in siou_thresholds)
        if not ts or any(not 0.0 <= t <= 1.0 for t in ts):
            raise ValueError(f"siou_thresholds must be a non-empty list of values in [0, 1], got {list(ts)}")
        self.threshold = float(threshold)
        self.min_gt_size = int(min_gt_size)
        self.min_pred_size = int(min_pred_size)
        self.siou_thresholds = ts
        self.reset()

    @classmethod
    def anomaly_track(cls, threshold: float) -> ComponentMetrics:
        """Settings of the SMIYC RoadAnomaly21 track: min GT size 100, min predicted size 500."""
        return cls(threshold, min_gt_size=100, min_pred_size=500)

    @classmethod
    def obstacle_track(cls, threshold: float) -> ComponentMetrics:
        """Settings of the SMIYC RoadObstacle21 track: min GT size 10, min predicted size 50."""
        return cls(threshold, min_gt_size=10, min_pred_size=50)

    def reset(self) -> None:
        """Forget every frame seen so far."""
        self._siou_gt: list[np.ndarray] = []
        self._siou_pred: list[np.ndarray] = []
        self._ppv: list[np.ndarray] = []
        self.num_frames = 0

    def update(self, scores: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> None:
        """Add frames.

        Args:
            scores: Anomaly scores (higher = more anomalous), shape (H, W) or (B, H, W).
            labels: Same shape; 0 = in-distribution, 1 = anomaly, 255 = void.

        Raises:
            ValueError: Shape mismatch, labels outside {0, 1, 255}, non-finite scores outside void.
        """
        s = _to_numpy(scores, "scores")
        y = _to_numpy(labels, "labels")
        _check_frames(s, y, "ComponentMetrics")
        _score_dtype(s.dtype)
        _anomaly_masks(y, "ComponentMetrics")
        if s.ndim == 2:
            s, y = s[None], y[None]
        for frame_s, frame_y in zip(s, y):
            _check_finite(frame_s[frame_y != 255], "ComponentMetrics", "non-void pixels")
            gt, pred, ppv = _frame_components(frame_s, frame_y, self.threshold, self.min_gt_size, self.min_pred_size)
            self._siou_gt.append(gt)
            self._siou_pred.append(pred)
            self._ppv.append(ppv)
            self.num_frames += 1

    def component_values(self) -> dict[str, np.ndarray]:
        """Per-component values over all frames: ``siou_gt``, ``siou_pred``, ``ppv`` (float64 arrays)."""
        cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0)  # noqa: E731
        return {"siou_gt": cat(self._siou_gt), "siou_pred": cat(self._siou_pred), "ppv": cat(self._ppv)}

    def compute(self) -> dict[str, float | int]:
        """Aggregate over all frames.

        Returns:
            ``siou_gt``, ``siou_pred``, ``ppv`` (means over components), ``f1_mean``, ``f1_25``,
            ``f1_50``, ``f1_75`` and ``tp_*`` / ``fn_*`` / ``fp_*`` at those sIoU thresholds (when they
            are in ``siou_thresholds``; ``*_mean`` average over all thresholds), ``num_gt_components``,
            ``num_pred_components``, ``num_frames``. NaN where a value is undefined.
        """
        v = self.component_values()
        gt, ppv = v["siou_gt"], v["ppv"]
        mean = lambda a: float(a.mean()) if a.size else float("nan")  # noqa: E731
        out: dict[str, float | int] = {
            "siou_gt": mean(gt),
            "siou_pred": mean(v["siou_pred"]),
            "ppv": mean(ppv),
        }
        sums = {"tp": 0.0, "fn": 0.0, "fp": 0.0, "f1": 0.0}
        for t in self.siou_thresholds:
            tp = int(np.count_nonzero(gt >= t))
            fn = int(gt.size - tp)
            fp = int(np.count_nonzero(ppv < t))
            f1 = 2 * tp / (2 * tp + fn + fp) if (2 * tp + fn + fp) else float("nan")
            for key, value in (("tp", tp), ("fn", fn), ("fp", fp), ("f1", f1)):
                sums[key] += value
            pct = round(t * 100)
            if pct in (25, 50, 75) and abs(t * 100 - pct) < 1e-6:
                out.update({f"tp_{pct}": tp, f"fn_{pct}": fn, f"fp_{pct}": fp, f"f1_{pct}": f1})
        n = len(self.siou_thresholds)
        out.update({f"{k}_mean": s / n for k, s in sums.items()})
        out.update(
            {"num_gt_components": int(gt.size), "num_pred_components": int(ppv.size), "num_frames": self.num_frames}
        )
        return out

    def _settings(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "min_gt_size": self.min_gt_size,
            "min_pred_size": self.min_pred_size,
            "siou_thresholds": list(self.siou_thresholds),
        }

    def state_dict(self) -> dict[str, Any]:
        """Settings and per-component values (tensors), ``torch.save`` / ``weights_only`` friendly."""
        v = self.component_values()
        return {
            "kind": "ComponentMetrics",
            "version": _STATE_VERSION,
            **self._settings(),
            "num_frames": self.num_frames,
            **{k: torch.from_numpy(a.astype(np.float64)) for k, a in v.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the state with ``state``; its settings must equal this metric's.

        Raises:
            ValueError: Wrong kind/version/keys, different settings, or bad arrays.
        """
        keys = ("threshold", "min_gt_size", "min_pred_size", "siou_thresholds", "num_frames", "siou_gt", "siou_pred", "ppv")
        _check_state(state, "ComponentMetrics", keys)
        theirs = {k: state[k] for k in self._settings()}
        theirs["siou_thresholds"] = [float(t) for t in theirs["siou_thresholds"]]
        if theirs != self._settings():
            raise ValueError(f"ComponentMetrics.load_state_dict: settings {theirs} differ from {self._settings()}")
        f64 = (np.dtype(np.float64),)
        arrays = {k: _state_array(state[k], "ComponentMetrics", k, f64).copy() for k in ("siou_gt", "siou_pred", "ppv")}
        if arrays["siou_pred"].size != arrays["ppv"].size:
            raise ValueError("ComponentMetrics.load_state_dict: siou_pred and ppv must have the same length")
        self.reset()
        self._siou_gt, self._siou_pred, self._ppv = [arrays["siou_gt"]], [arrays["siou_pred"]], [arrays["ppv"]]
        self.num_frames = int(state["num_frames"])

    def merge(self, other: ComponentMetrics) -> ComponentMetrics:
        """Add the frames of ``other`` (same settings required); returns ``self``."""
        if not isinstance(other, ComponentMetrics):
            raise TypeError(f"ComponentMetrics.merge expects a ComponentMetrics, got {type(other).__name__}")
        if other._settings() != self._settings():
            raise ValueError(f"ComponentMetrics.merge: settings {other._settings()} differ from {self._settings()}")
        if other is self:
            raise ValueError("ComponentMetrics.merge: cannot merge a metric with itself")
        self._siou_gt += other._siou_gt
        self._siou_pred += other._siou_pred
        self._ppv += other._ppv
        self.num_frames += other.num_frames
        return self

    def sync(self, process_group: Any = None) -> None:
        """Replace the local state by the union over all ranks; no-op without ``torch.distributed``."""
        if not _dist_ready():
            return
        v = self.component_values()
        gathered = {k: _all_gather_1d(a.astype(np.float64), process_group) for k, a in v.items()}
        frames = _all_gather_1d(np.array([self.num_frames], dtype=np.int64), process_group)
        self._siou_gt, self._siou_pred, self._ppv = gathered["siou_gt"], gathered["siou_pred"], gathered["ppv"]
        self.num_frames = int(sum(int(f[0]) for f in frames))
