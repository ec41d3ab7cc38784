"""Exact, streaming, mergeable evaluation metrics.

Three accumulators share one life cycle: ``update`` on any number of frames, ``compute`` at the end,
``state_dict`` / ``load_state_dict`` / ``merge`` to combine partial results, and ``sync`` to combine them
across the processes of a ``torch.distributed`` job (gloo or NCCL).

* :class:`AnomalyMetrics`: pixel-level AUROC, average precision (AP) and FPR at 95 % TPR, pooled over
  all valid pixels of a data set (anomaly = positive, void ignored). The values are *exact*: they equal
  ``sklearn.metrics.roc_auc_score`` and ``average_precision_score`` on the pooled pixels (ties
  included), without binning and without casting scores to a lower precision. Memory is the score
  itself (4 bytes per valid pixel for float32 scores), against about 60 bytes per pixel for sklearn.
* :class:`ComponentMetrics`: the component-level metrics of the SegmentMeIfYouCan benchmark
  (Chan et al., NeurIPS 2021 Datasets and Benchmarks): sIoU of ground-truth components, positive
  predictive value (PPV) of predicted components and the F1 score averaged over sIoU thresholds.
* :class:`SegmentationMetrics`: confusion matrix, per-class IoU and mIoU for the 19 Cityscapes classes.

Label conventions (anomaly benchmarks): 0 = in-distribution, 1 = anomaly, 255 = void.

How AnomalyMetrics stays exact with little memory
-------------------------------------------------
``update`` appends the scores of anomaly pixels and of in-distribution pixels to two growable buffers
in their float dtype (``-0.0`` is normalised to ``+0.0``). ``compute`` sorts the buffers in place, in a
few contiguous runs sorted by parallel threads, and never merges the runs: every quantity the curves
need is a count of scores below or equal to one of the *distinct anomaly scores* ``u_j``, and such a
count is a sum of ``searchsorted`` results over the sorted runs.
With ``tp_j = #{pos >= u_j}``, ``fp_j = #{neg >= u_j}`` and ``c_j = #{pos == u_j}``:

* AUROC (trapezoidal rule on the ROC curve over all distinct thresholds, which is what
  ``roc_auc_score`` computes) equals the Mann-Whitney statistic with half credit for ties,
  ``sum_j c_j (#{neg < u_j} + #{neg <= u_j}) / (2 P N)``, evaluated in exact integer arithmetic.
* AP (sklearn's step-wise definition ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds) only
  gains terms where the recall changes, i.e. at the ``u_j``: ``sum_j (c_j / P) * tp_j / (tp_j + fp_j)``.
* FPR at the highest threshold whose TPR reaches 0.95 is ``fp_j / N`` at the largest ``u_j`` with
  ``tp_j / P >= 0.95``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import torch

FprMode = Literal["first", "closest"]
"""How FPR at 95 % TPR picks its operating point, see :class:`AnomalyMetrics`."""

SIOU_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.linspace(0.25, 0.75, 11, endpoint=True))
"""sIoU / PPV thresholds over which SMIYC averages the component F1 score (0.25, 0.30, ..., 0.75)."""

_STATE_VERSION = 1
_MIN_RUN = 1 << 20  # do not split a sort into runs shorter than this many scores


# ----------------------------------------------------------------------------------------------------
# Input helpers
# ----------------------------------------------------------------------------------------------------


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """Return a numpy view (or copy, for GPU / bfloat16 tensors) of an array-like input."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")


def _score_dtype(dtype: np.dtype, name: str = "scores") -> np.dtype:
    """Storage dtype for scores of ``dtype``: float32/float64 kept, float16/bool widened, ints to float64."""
    if dtype == np.float32 or dtype == np.float64:
        return dtype
    if dtype == np.float16 or dtype == np.bool_:
        return np.dtype(np.float32)
    if np.issubdtype(dtype, np.integer):
        return np.dtype(np.float64)
    raise TypeError(f"{name} must have a real floating, integer or bool dtype, got {dtype}")


def _check_frames(scores: np.ndarray, labels: np.ndarray, owner: str) -> None:
    if scores.shape != labels.shape:
        raise ValueError(
            f"{owner}.update: scores and labels must have the same shape, got scores {tuple(scores.shape)} "
            f"and labels {tuple(labels.shape)}"
        )
    if scores.ndim not in (2, 3):
        raise ValueError(
            f"{owner}.update: expected frames of shape (H, W) or (B, H, W), got shape {tuple(scores.shape)}"
        )
    if labels.dtype.kind not in "biuf":
        raise TypeError(f"{owner}.update: labels must have an integer, bool or float dtype, got {labels.dtype}")


def _anomaly_masks(labels: np.ndarray, owner: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(positive, negative)`` boolean masks; raise if a label is not 0, 1 or 255."""
    pos = labels == 1
    neg = labels == 0
    n_void = int(np.count_nonzero(labels == 255))
    if int(np.count_nonzero(pos)) + int(np.count_nonzero(neg)) + n_void != labels.size:
        bad = labels[~(pos | neg | (labels == 255))]
        values = np.unique(bad)[:10].tolist()
        raise ValueError(
            f"{owner}.update: labels must be 0 (in-distribution), 1 (anomaly) or 255 (void); "
            f"found {bad.size} pixels with other values, e.g. {values}"
        )
    return pos, neg


def _check_finite(values: np.ndarray, owner: str, what: str) -> None:
    if values.size and not np.isfinite(values).all():
        n_nan = int(np.count_nonzero(np.isnan(values)))
        n_inf = int(np.count_nonzero(np.isinf(values)))
        raise ValueError(
            f"{owner}.update: scores must be finite on {what}; found {n_nan} NaN and {n_inf} infinite values"
        )


def _default_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


# ----------------------------------------------------------------------------------------------------
# torch.distributed helpers
# ----------------------------------------------------------------------------------------------------


def _dist_ready() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _comm_device(process_group: Any) -> torch.device:
    backend = torch.distributed.get_backend(process_group)
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_gather_1d(array: np.ndarray, process_group: Any) -> list[np.ndarray]:
    """All-gather a 1-D array of any length from every rank; returns one array per rank (rank order)."""
    dist = torch.distributed
    world = dist.get_world_size(process_group)
    device = _comm_device(process_group)
    local = torch.from_numpy(np.ascontiguousarray(array)).to(device)
    size = torch.tensor([local.numel()], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size, group=process_group)
    counts = [int(s.item()) for s in sizes]
    longest = max(1, max(counts))
    padded = torch.zeros(longest, dtype=local.dtype, device=device)
    padded[: local.numel()] = local
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded, group=process_group)
    return [g[:n].cpu().numpy() for g, n in zip(gathered, counts)]


def _all_reduce_max_int(value: int, process_group: Any) -> int:
    t = torch.tensor([value], dtype=torch.int64, device=_comm_device(process_group))
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX, group=process_group)
    return int(t.item())


def _check_state(state: dict[str, Any], kind: str, keys: Sequence[str]) -> None:
    if not isinstance(state, dict):
        raise TypeError(f"{kind}.load_state_dict expects a dict, got {type(state).__name__}")
    if state.get("kind") != kind:
        raise ValueError(f"{kind}.load_state_dict: state is of kind {state.get('kind')!r}, expected {kind!r}")
    if state.get("version") != _STATE_VERSION:
        raise ValueError(
            f"{kind}.load_state_dict: state version {state.get('version')!r} is not supported "
            f"(this code reads version {_STATE_VERSION})"
        )
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"{kind}.load_state_dict: state lacks keys {missing}")


def _state_array(value: Any, kind: str, key: str, dtypes: Sequence[np.dtype]) -> np.ndarray:
    arr = _to_numpy(value, f"{kind} state[{key!r}]")
    if arr.ndim != 1:
        raise ValueError(f"{kind}.load_state_dict: state[{key!r}] must be 1-D, got shape {tuple(arr.shape)}")
    if arr.dtype not in dtypes:
        raise ValueError(
            f"{kind}.load_state_dict: state[{key!r}] has dtype {arr.dtype}, allowed: {[str(d) for d in dtypes]}"
        )
    return arr


# ----------------------------------------------------------------------------------------------------
# Score multiset
# ----------------------------------------------------------------------------------------------------


class _ScoreStore:
    """A multiset of finite scores in one growable buffer; answers rank queries after :meth:`sorted_runs`.

    Scores are appended to a single contiguous buffer that grows in place (``ndarray.resize``, i.e.
    ``realloc``, which moves pages instead of copying them for large buffers), doubling while small and
    then by 1/16 of its size, so the resident memory stays within a few percent of the scores. A prefix of the
    buffer is kept as sorted runs; :meth:`sorted_runs` sorts the unsorted tail in place, split into
    runs sorted by parallel threads. Runs are never merged: rank queries add up over runs.
    """

    def __init__(self, dtype: np.dtype = np.dtype(np.float32)) -> None:
        self._buf = np.empty(0, dtype=dtype)
        self.count = 0
        self._runs: list[tuple[int, int]] = []  # sorted runs covering [0, self._sorted)
        self._sorted = 0

    @property
    def dtype(self) -> np.dtype:
        return self._buf.dtype

    def values(self) -> np.ndarray:
        """View of every stored score (sorted run by run up to the last :meth:`sorted_runs`)."""
        return self._buf[: self.count]

    def widen(self, dtype: np.dtype) -> None:
        """Store as ``dtype`` from now on (float32 -> float64 is exact and keeps sorted runs sorted)."""
        if dtype != self._buf.dtype:
            self._buf = self._buf[: self.count].astype(dtype)

    def reserve(self, n: int) -> np.ndarray:
        """Room for ``n`` more scores: a view to fill, then :meth:`commit`; the buffer grows if needed."""
        need = self.count + n
        if need > self._buf.size:
            # Double while small, then grow by 1/16: few reallocations, little unused memory.
            size = max(need, self._buf.size + max(self._buf.size // 16, min(self._buf.size, 1 << 24)), 1 << 16)
            try:
                self._buf.resize(size)  # in place; refuses while a view (e.g. a state_dict tensor) exists
            except ValueError:
                grown = np.empty(size, dtype=self._buf.dtype)
                grown[: self.count] = self._buf[: self.count]
                self._buf = grown
        return self._buf[self.count : need]

    def commit(self, n: int) -> None:
        """Keep the ``n`` scores written into the last :meth:`reserve` view."""
        self.count += n

    def clear(self) -> None:
        self.__init__(self._buf.dtype)

    def sorted_runs(self, pool: ThreadPoolExecutor, threads: int) -> list[np.ndarray]:
        """Sort the unsorted tail in place and return every sorted run (views)."""
        if self.count > self._sorted and len(self._runs) >= 4 * threads:
            self._runs, self._sorted = [], 0  # many small runs from interleaved compute calls: re-sort all
        tail = self.count - self._sorted
        if tail:
            n_runs = max(1, min(threads, tail // _MIN_RUN))
            bounds = np.linspace(self._sorted, self.count, n_runs + 1).astype(np.int64)
            runs = [(int(bounds[i]), int(bounds[i + 1])) for i in range(n_runs)]
            list(pool.map(lambda r: self._buf[r[0] : r[1]].sort(), runs))  # ndarray.sort releases the GIL
            self._runs += runs
            self._sorted = self.count
        return [self._buf[a:b] for a, b in self._runs]


def _rank_counts(
    runs: Sequence[np.ndarray], keys: np.ndarray, pool: ThreadPoolExecutor
) -> tuple[np.ndarray, np.ndarray]:
    """``(#{x < k}, #{x <= k})`` for every key over the union of sorted ``runs``; int64 arrays."""
    lt = np.zeros(keys.size, dtype=np.int64)
    le = np.zeros(keys.size, dtype=np.int64)

    def one(run: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.searchsorted(run, keys, side="left"), np.searchsorted(run, keys, side="right")

    for run_lt, run_le in pool.map(one, runs):
        lt += run_lt
        le += run_le
    return lt, le


def _distinct_sorted(run: np.ndarray) -> np.ndarray:
    if run.size == 0:
        return run
    keep = np.empty(run.size, dtype=bool)
    keep[0] = True
    np.not_equal(run[1:], run[:-1], out=keep[1:])
    return run[keep]


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
