"""Input checks, distributed helpers and the score multiset shared by the metric accumulators."""

from __future__ import annotations

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
