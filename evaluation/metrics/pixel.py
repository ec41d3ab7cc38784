"""Pixel-level anomaly metrics: exact pooled AUROC, AP and FPR at 95 % TPR (:class:`AnomalyMetrics`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from evaluation.metrics.common import FprMode, _STATE_VERSION, _ScoreStore, _all_gather_1d, _all_reduce_max_int, _anomaly_masks, _check_finite, _check_frames, _check_state, _default_threads, _dist_ready, _distinct_sorted, _rank_counts, _score_dtype, _state_array, _to_numpy





# ----------------------------------------------------------------------------------------------------
# Pixel-level anomaly metrics
# ----------------------------------------------------------------------------------------------------


class AnomalyMetrics:
    """Exact pixel-level AUROC, AP and FPR at 95 % TPR, streamed over frames and mergeable.

    Scores: higher = more anomalous. Labels: 0 = in-distribution (negative), 1 = anomaly (positive),
    255 = void (ignored). Every metric is pooled over all valid pixels of all frames.

    FPR at 95 % TPR, ``fpr_mode``:

    * ``"first"`` (default; Fishyscapes and SegmentMeIfYouCan): the FPR at the *highest* threshold
      whose TPR is at least 0.95, on the curve over all distinct thresholds. This is
      ``fpr[np.flatnonzero(tpr >= 0.95)[0]]`` on ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.
      (On sklearn's default ``drop_intermediate=True`` curve the same formula can land on a later
      vertex when the crossing point is collinear with its neighbours, and so give a larger FPR.)
    * ``"closest"`` (PEBAL and the Outlier Exposure code it reuses): the point whose TPR is closest to
      0.95 among the distinct thresholds from the highest one down to the first that reaches full
      recall; ties go to the *lowest* such threshold, i.e. to the largest FPR among points with the same
      TPR. This is ``np.argmin(np.abs(tpr - 0.95))`` over those points listed from low to high
      threshold. It differs from ``argmin`` on sklearn's ascending ``roc_curve`` arrays, which picks the
      smallest FPR among points of equal TPR.

    Memory: the scores themselves, in their dtype (float32: 4 bytes per valid pixel); float16 and bool
    scores are stored as float32 and integer scores as float64 (both exact).

    Args:
        fpr_mode: ``"first"`` or ``"closest"``, see above.
        tpr_target: The TPR level of the FPR metric, in (0, 1]; 0.95 by default.
        num_threads: Threads for sorting and counting at :meth:`compute`; default ``min(8, cpu_count)``.

    Raises:
        ValueError: For an unknown ``fpr_mode``, a ``tpr_target`` outside (0, 1] or ``num_threads < 1``.
    """

    def __init__(self, *, fpr_mode: FprMode = "first", tpr_target: float = 0.95, num_threads: int | None = None):
        if fpr_mode not in ("first", "closest"):
            raise ValueError(f"fpr_mode must be 'first' or 'closest', got {fpr_mode!r}")
        if not 0.0 < float(tpr_target) <= 1.0:
            raise ValueError(f"tpr_target must be in (0, 1], got {tpr_target}")
        if num_threads is not None and int(num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        self.fpr_mode: FprMode = fpr_mode
        self.tpr_target = float(tpr_target)
        self.num_threads = int(num_threads) if num_threads is not None else _default_threads()
        self._pos = _ScoreStore()
        self._neg = _ScoreStore()
        # One dtype for both stores (float32 unless float64 / integer scores arrived), so that rank
        # queries compare values of the same type without converting the large negative store.

    # -- accumulation ---------------------------------------------------------------------------------

    @property
    def num_pos(self) -> int:
        """Number of anomaly pixels seen so far."""
        return self._pos.count

    @property
    def num_neg(self) -> int:
        """Number of in-distribution pixels seen so far."""
        return self._neg.count

    def reset(self) -> None:
        """Forget every pixel seen so far."""
        self._pos.clear()
        self._neg.clear()

    def update(self, scores: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> None:
        """Add frames.

        Args:
            scores: Anomaly scores, shape (H, W) or (B, H, W), a floating (or integer / bool) numpy
                array or torch tensor on any device. Must be finite wherever the label is not void.
            labels: Same shape; 0 = in-distribution, 1 = anomaly, 255 = void.

        Raises:
            ValueError: Shapes differ or are not 2-D/3-D, labels outside {0, 1, 255}, or a non-finite
                score on a valid pixel.
            TypeError: Unsupported input types or dtypes.
        """
        s = _to_numpy(scores, "scores")
        y = _to_numpy(labels, "labels")
        _check_frames(s, y, "AnomalyMetrics")
        dtype = _score_dtype(s.dtype)
        pos_mask, neg_mask = _anomaly_masks(y, "AnomalyMetrics")
        common = self._widen(dtype)
        flat = s.reshape(-1)
        written = []
        for mask, store, what in ((pos_mask, self._pos, "anomaly pixels"), (neg_mask, self._neg, "in-distribution pixels")):
            mask = mask.reshape(-1)
            view = store.reserve(int(np.count_nonzero(mask)))
            if flat.dtype == common:
                np.compress(mask, flat, out=view)  # straight into the buffer, no temporary
            else:
                view[...] = flat[mask]
            _check_finite(view, "AnomalyMetrics", what)
            written.append(view)
        for view, store in zip(written, (self._pos, self._neg)):  # commit only when both are valid
            view += 0  # -0.0 + 0 == +0.0: one representation of zero
            store.commit(view.size)

    def _widen(self, dtype: np.dtype) -> np.dtype:
        """Make both stores able to hold ``dtype`` exactly (float32 -> float64 when needed)."""
        common = np.result_type(self._pos.dtype, dtype)
        self._pos.widen(common)
        self._neg.widen(common)
        return common

    def _append(self, pos: np.ndarray, neg: np.ndarray) -> None:
        """Append finite float scores of both classes."""
        self._widen(np.result_type(pos.dtype, neg.dtype))
        for values, store in ((pos, self._pos), (neg, self._neg)):
            view = store.reserve(values.size)
            view[...] = values
            view += 0
            store.commit(values.size)

    # -- results --------------------------------------------------------------------------------------

    def _curve_counts(self, pool: ThreadPoolExecutor) -> dict[str, Any]:
        """Counts at the distinct anomaly scores ``u`` (ascending); see the module docstring."""
        n_pos, n_neg = self.num_pos, self.num_neg
        if n_pos == 0 or n_neg == 0:
            raise ValueError(
                "AnomalyMetrics needs at least one anomaly pixel (label 1) and one in-distribution pixel "
                f"(label 0) to compute AUROC/AP/FPR; got num_pos={n_pos}, num_neg={n_neg}"
            )
        pos_runs = self._pos.sorted_runs(pool, self.num_threads)
        distinct = [_distinct_sorted(r) for r in pos_runs]
        u = distinct[0] if len(distinct) == 1 else np.unique(np.concatenate(distinct))
        del distinct
        pos_lt, pos_le = _rank_counts(pos_runs, u, pool)
        count = pos_le - pos_lt  # c_j = #{pos == u_j}
        del pos_le
        tp = np.subtract(n_pos, pos_lt, out=pos_lt)  # #{pos >= u_j}
        neg_runs = self._neg.sorted_runs(pool, self.num_threads)
        neg_lt, neg_le = _rank_counts(neg_runs, u, pool)
        # Twice the Mann-Whitney U (half credit for ties), exact in integers when it fits in int64.
        if 2 * n_pos * n_neg < 2**62:
            twice_u: int | float = int(np.dot(count, neg_lt)) + int(np.dot(count, neg_le))
        else:
            twice_u = float(np.dot(count.astype(np.float64), neg_lt + neg_le.astype(np.float64)))
        return {
            "u": u,
            "count": count,
            "tp": tp,
            "fp": np.subtract(n_neg, neg_lt, out=neg_lt),  # #{neg >= u_j}
            "fp_gt": np.subtract(n_neg, neg_le, out=neg_le),  # #{neg > u_j}
            "twice_u": twice_u,
            "neg_runs": neg_runs,
            "n_pos": n_pos,
            "n_neg": n_neg,
        }

    def compute(self) -> dict[str, float | int | str]:
        """Compute the metrics over every pixel seen so far (the state is kept; more updates may follow).

        Returns:
            ``auroc``, ``ap``, ``fpr95`` (FPR at ``tpr_target``, by ``fpr_mode``) and
            ``fpr95_threshold`` (its score threshold: pixels with ``score >= threshold`` are flagged),
            ``best_f1`` / ``best_f1_threshold`` (maximum pixel F1 over thresholds, used by SMIYC to
            threshold component predictions), ``num_pos``, ``num_neg``, ``fpr_mode`` and ``tpr_target``.
            Rates are fractions in [0, 1], not percentages.

        Raises:
            ValueError: If no anomaly or no in-distribution pixel was seen.
        """
        with ThreadPoolExecutor(self.num_threads) as pool:
            c = self._curve_counts(pool)
            u, tp, fp = c["u"], c["tp"], c["fp"]
            n_pos, n_neg = c["n_pos"], c["n_neg"]
            auroc = c["twice_u"] / (2 * n_pos * n_neg)

            # AP: the recall steps by c_j / P at each distinct anomaly score u_j; precision there.
            tp_f = tp.astype(np.float64)
            work = np.add(tp_f, fp)
            np.divide(tp_f, work, out=work)  # precision
            ap = float(np.dot(c["count"], work)) / n_pos

            np.add(tp_f, fp, out=work)  # F1 = 2 TP / (TP + FP + P)
            work += n_pos
            np.divide(tp_f, work, out=work)
            work *= 2
            k = int(np.argmax(work))
            best_f1 = float(work[k])
            del work

            tpr = np.divide(tp_f, n_pos, out=tp_f)
            if self.fpr_mode == "first":
                j = int(np.flatnonzero(tpr >= self.tpr_target)[-1])
                fpr_count, threshold = int(fp[j]), u[j].item()
            else:
                fpr_count, threshold = self._closest_point(c, tpr)
        return {
            "auroc": float(auroc),
            "ap": ap,
            "fpr95": fpr_count / n_neg,
            "fpr95_threshold": float(threshold),
            "best_f1": best_f1,
            "best_f1_threshold": float(u[k].item()),
            "num_pos": int(n_pos),
            "num_neg": int(n_neg),
            "fpr_mode": self.fpr_mode,
            "tpr_target": self.tpr_target,
        }

    def _closest_point(self, c: dict[str, Any], tpr: np.ndarray) -> tuple[int, float]:
        """PEBAL's point: TPR closest to the target, ties to the lowest threshold (largest FPR)."""
        u, fp, fp_gt, neg_runs = c["u"], c["fp"], c["fp_gt"], c["neg_runs"]
        # Candidate j (ascending u) stands for the lowest threshold that still has TPR tpr[j]: just above
        # u[j-1] (for j = 0, u[0] itself: the candidates stop at the first point of full recall).
        # The last candidate is the run of TPR 0 above the highest anomaly score, if a negative is there.
        dist = np.abs(tpr - self.tpr_target)
        if fp_gt[-1] > 0:
            dist = np.append(dist, abs(0.0 - self.tpr_target))
        j = int(np.argmin(dist))  # first minimum = lowest threshold
        if j == 0:
            return int(fp[0]), u[0].item()
        below = u[j - 1]
        # Threshold of that point: the smallest score above u[j-1] (an anomaly score u[j] or a negative).
        above = [r[i] for r in neg_runs if (i := int(np.searchsorted(r, below, side="right"))) < r.size]
        candidates = ([u[j].item()] if j < u.size else []) + [float(v) for v in above]
        return int(fp_gt[j - 1]), min(candidates)

    def curves(self) -> dict[str, np.ndarray]:
        """Exact ROC and precision-recall curves, for plots.

        Returns:
            ``fpr``, ``tpr``: the corners of the ROC curve over all distinct thresholds (two per
            distinct anomaly score; some may coincide), from (0, 0) to (1, 1); ``np.trapezoid(tpr, fpr)``
            is the AUROC.
            ``precision``, ``recall``, ``pr_thresholds``: one point per distinct anomaly score, by
            decreasing threshold (AP is ``sum(diff(recall, prepend=0) * precision)``).

        Raises:
            ValueError: If no anomaly or no in-distribution pixel was seen.
        """
        with ThreadPoolExecutor(self.num_threads) as pool:
            c = self._curve_counts(pool)
        u, tp, fp, fp_gt = c["u"], c["tp"], c["fp"], c["fp_gt"]
        n_pos, n_neg = c["n_pos"], c["n_neg"]
        tp_d, fp_d = tp[::-1], fp[::-1]
        # After the run at u_j (descending), false positives grow to #{neg > u_{j+1}} before the next step.
        run_end = np.append(fp_gt[::-1][1:], n_neg)
        fpr_v = np.concatenate(([0, fp_gt[-1]], np.stack([fp_d, run_end], axis=1).ravel())) / n_neg
        tpr_v = np.concatenate(([0, 0], np.repeat(tp_d, 2))) / n_pos
        tp_f = tp_d.astype(np.float64)
        return {
            "fpr": fpr_v,
            "tpr": tpr_v,
            "precision": tp_f / (tp_f + fp_d),
            "recall": tp_f / n_pos,
            "pr_thresholds": u[::-1].copy(),
        }

    # -- state ----------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The accumulated scores as a dict of 1-D tensors (``torch.save`` / ``weights_only`` friendly).

        The tensors share memory with the metric (no copy of a possibly large state); do not modify
        them, and expect a later :meth:`compute` to reorder them (it sorts in place; the values stay).
        """
        return {
            "kind": "AnomalyMetrics",
            "version": _STATE_VERSION,
            "pos": torch.from_numpy(self._pos.values()),
            "neg": torch.from_numpy(self._neg.values()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the accumulated scores with those of ``state`` (from :meth:`state_dict`).

        Raises:
            ValueError: Wrong kind, version, keys, shapes or dtypes, or non-finite scores.
        """
        _check_state(state, "AnomalyMetrics", ("pos", "neg"))
        floats = (np.dtype(np.float32), np.dtype(np.float64))
        pos = _state_array(state["pos"], "AnomalyMetrics", "pos", floats)
        neg = _state_array(state["neg"], "AnomalyMetrics", "neg", floats)
        _check_finite(pos, "AnomalyMetrics", "anomaly pixels of the loaded state")
        _check_finite(neg, "AnomalyMetrics", "in-distribution pixels of the loaded state")
        self.reset()
        self._append(pos, neg)

    def merge(self, other: AnomalyMetrics) -> AnomalyMetrics:
        """Add every pixel of ``other`` (which is left unchanged) to this metric; returns ``self``."""
        if not isinstance(other, AnomalyMetrics):
            raise TypeError(f"AnomalyMetrics.merge expects an AnomalyMetrics, got {type(other).__name__}")
        if other is self:
            raise ValueError("AnomalyMetrics.merge: cannot merge a metric with itself")
        self._append(other._pos.values(), other._neg.values())
        return self

    def sync(self, process_group: Any = None) -> None:
        """Replace the local state by the union of the states of all ranks (all-gather).

        A no-op when ``torch.distributed`` is not initialised. Call it once, on every rank, before
        :meth:`compute`; afterwards every rank holds every pixel of the data set.
        """
        if not _dist_ready():
            return
        use64 = _all_reduce_max_int(int(self._pos.dtype == np.float64), process_group)
        dtype = np.dtype(np.float64 if use64 else np.float32)
        self._pos.widen(dtype)
        self._neg.widen(dtype)
        pos = _all_gather_1d(self._pos.values(), process_group)
        neg = _all_gather_1d(self._neg.values(), process_group)
        self.reset()
        for p, n in zip(pos, neg):
            self._append(p, n)
