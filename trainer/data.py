"""Streaming of augmented-frame shards for training: :class:`ShardStream` and :class:`StreamLoader`.

The unit of work is one Parquet row group of one shard (a *unit*). Everything about the order in which rows
come out is a pure function of the shard metadata (row-group sizes), the seed and the epoch:

1. **Units of an epoch.** All (shard, row group) units are permuted with
   ``rng_for(seed, ("units", epoch))``.
2. **Ranks.** The permuted list is split over ``world_size`` ranks with *equal unit counts*, like
   ``torch.utils.data.DistributedSampler``: ``uneven="pad"`` (default) wraps around to the start of the
   permutation until the length is a multiple of ``world_size`` (every row is seen at least once, a few twice),
   ``uneven="drop"`` truncates to a multiple (every row at most once), ``uneven="none"`` gives unequal counts (for
   evaluation). Rank ``r`` takes every ``world_size``-th unit from position ``r``. When the unit count is a
   multiple of ``world_size`` the modes agree and every row is read exactly once per epoch over all ranks.
3. **Workers.** A rank's units are dealt round-robin to its ``DataLoader`` workers.
4. **Shuffle buffer.** A worker streams its units' rows through a shuffle buffer of ``shuffle_buffer`` rows
   driven by ``rng_for(seed, ("shuffle", epoch, rank, world_size, worker, num_workers))``. The buffer is
   simulated on row *indices* from the metadata alone, so the order is known before any byte is read and
   skipping ``n`` rows on resume costs nothing. A row group is read when its first row is due and dropped once
   its last row has been yielded, so memory holds about ``shuffle_buffer`` encoded rows.
5. **Augmentation.** Random scale, crop and horizontal flip act on the decoded arrays with
   ``rng_for(seed, ("augment", epoch, frame_id, shard_index, row))``, which does not depend on the rank or worker
   layout.

Every shard's schema is validated (``augmented_frame`` v1) when it is opened: once when the stream is built
(to read the footers) and again in every worker.

**Exact resume.** :class:`ShardStream` state is the start epoch plus, per worker, the number of samples
already consumed; a worker skips exactly those (over epoch boundaries when ``epochs`` is ``None``).
:class:`StreamLoader` wraps the ``DataLoader``: it counts consumed samples per worker from each batch's
``worker`` field and yields batches in a fixed round-robin worker order (worker ``j mod num_workers`` for the
``j``-th batch), holding back at most ``num_workers - 1`` batches, so the batch sequence after a resume is the
one an uninterrupted run would have seen. Resuming needs the same shards, seed, batch size, number of workers
and world size; a mismatch is a ``ValueError`` naming both values.
"""

from __future__ import annotations

import argparse
import math
import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from schemas.arrow import FRAME
from schemas.codecs import decode_image, decode_png
from schemas.labels import IGNORE, NUM_CLASSES, OOD
from schemas.manifest import open_shard, resolve_shards
from schemas.rng import rng_for, stable_hash
from trainer.subsets import PasteFilter, filter_rows

#: Columns read from the shards (the others, such as ``objects``, are never decoded).
COLUMNS: tuple[str, ...] = ("frame_id", "image", "label")

#: RGB fill of padded image borders: the ImageNet mean, so padding normalises to about zero.
PAD_RGB: tuple[int, int, int] = (124, 116, 104)

UNEVEN_MODES: tuple[str, ...] = ("pad", "drop", "none")

#: Parquet files a worker keeps open at once.
MAX_OPEN_SHARDS = 8

STATE_VERSION = 1


@dataclass(frozen=True)
class Augment:
    """Random geometric augmentation of a frame and its label map.

    Attributes:
        scale: (low, high) range of the uniform random rescale factor; ``(1.0, 1.0)`` disables rescaling.
        crop: (height, width) of the random crop, or ``None`` for the whole (rescaled) frame. A frame smaller
            than the crop is padded (image with :data:`PAD_RGB`, label with ``IGNORE``) before cropping.
        flip: Whether to flip horizontally with probability 0.5.
    """

    scale: tuple[float, float] = (1.0, 1.0)
    crop: tuple[int, int] | None = None
    flip: bool = False

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.scale)
        if not 0 < lo <= hi:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {self.scale}")
        if self.crop is not None and (len(self.crop) != 2 or min(self.crop) < 1):
            raise ValueError(f"crop must be (height, width) with positive sides or None, got {self.crop}")


NO_AUGMENT = Augment()


@dataclass(frozen=True)
class Unit:
    """One (shard, row group) unit.

    Attributes:
        shard: Index into the stream's shard URLs.
        row_group: Row-group index inside the shard.
        rows: Number of rows in the row group.
        first_row: Index of the row group's first row inside the shard.
    """

    shard: int
    row_group: int
    rows: int
    first_row: int


def parse_pair(kind: type, text: str, name: str) -> tuple:
    """Parse a command-line pair such as ``--crop 512,1024`` (or ``512x1024``) or ``--scale 0.5,2``.

    Args:
        kind: Element type (``int`` or ``float``).
        text: The option's text.
        name: The option's name, for the error.

    Raises:
        argparse.ArgumentTypeError: If ``text`` is not two values of ``kind``.
    """
    parts = text.replace("x", ",").split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"{name} must be two values like 512,1024, got {text!r}")
    try:
        return tuple(kind(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name} must be two {kind.__name__} values, got {text!r}") from None


def augment_frame(image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                  aug: Augment) -> tuple[np.ndarray, np.ndarray]:
    """Apply random scale, crop and flip to a frame and its label map.

    Draw order (fixed, so results depend only on the generator): scale, crop offsets, flip.

    Args:
        image: uint8 (H, W, 3) RGB.
        label: uint8 (H, W) label map.
        rng: The row's generator.
        aug: Augmentation settings.

    Returns:
        ``(image, label)``: uint8 (h, w, 3) and uint8 (h, w), contiguous; (h, w) is the crop size when cropping.

    Raises:
        ValueError: If image and label sizes differ.
    """
    if image.shape[:2] != label.shape:
        raise ValueError(f"image {image.shape[:2]} and label {label.shape} sizes differ")
    h, w = label.shape
    lo, hi = aug.scale
    s = float(rng.uniform(lo, hi)) if hi > lo else float(lo)
    if s != 1.0:
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        image = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
        label = np.asarray(Image.fromarray(label).resize((nw, nh), Image.NEAREST))
        h, w = nh, nw
    if aug.crop is not None:
        ch, cw = int(aug.crop[0]), int(aug.crop[1])
        if h < ch or w < cw:
            ph, pw = max(ch - h, 0), max(cw - w, 0)
            padded = np.empty((h + ph, w + pw, 3), np.uint8)
            padded[:] = np.asarray(PAD_RGB, np.uint8)
            padded[:h, :w] = image
            plabel = np.full((h + ph, w + pw), IGNORE, np.uint8)
            plabel[:h, :w] = label
            image, label, h, w = padded, plabel, h + ph, w + pw
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
        image = image[y0:y0 + ch, x0:x0 + cw]
        label = label[y0:y0 + ch, x0:x0 + cw]
    if aug.flip and rng.random() < 0.5:
        image = image[:, ::-1]
        label = label[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


def shuffle_order(lengths: Sequence[int], buffer: int, rng: np.random.Generator | None) -> np.ndarray:
    """Order in which a shuffle buffer emits rows that arrive unit by unit.

    Rows arrive in unit order (unit 0's rows 0..n-1, then unit 1's ...). While the buffer holds fewer than
    ``buffer`` rows, arriving rows are added; once full, a uniformly chosen slot is emitted and replaced by the
    arriving row. At the end the remaining rows are emitted in a random order.

    Args:
        lengths: Rows per unit, in arrival order.
        buffer: Buffer size in rows; ``<= 1`` or ``rng is None`` keeps the arrival order.
        rng: Generator of the buffer's draws.

    Returns:
        int64 array (N, 2) of (unit position, row in unit), N = sum(lengths).
    """
    n = int(sum(lengths))
    arrivals = np.empty((n, 2), np.int64)
    pos = 0
    for u, k in enumerate(lengths):
        arrivals[pos:pos + k, 0] = u
        arrivals[pos:pos + k, 1] = np.arange(k)
        pos += k
    if rng is None or buffer <= 1 or n <= 1:
        return arrivals
    out = np.empty_like(arrivals)
    slots = list(range(min(buffer, n)))  # indices into arrivals
    nxt = len(slots)
    o = 0
    picks = rng.integers(0, len(slots), size=n - nxt) if n > nxt else np.empty(0, np.int64)
    for p in picks:
        out[o] = arrivals[slots[p]]
        o += 1
        slots[p] = nxt
        nxt += 1
    tail = rng.permutation(len(slots))
    for p in tail:
        out[o] = arrivals[slots[p]]
        o += 1
    return out


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class ShardStream(IterableDataset):
    """An ``IterableDataset`` of augmented frames from Parquet shards (see the module docstring).

    Each item is a dict:

    * ``image``: uint8 tensor [3, H, W] (RGB, channels first, a view of the decoded (H, W, 3) array; normalise on
      the device),
    * ``label``: uint8 tensor [H, W] (trainIds, 254 = pasted OoD, 255 = ignore),
    * ``frame_id``: str, ``epoch``: int, ``worker``: int (the ``DataLoader`` worker that produced it).

    Args:
        urls: Shard folder(s) with ``_manifest.json``, Parquet file URL(s) or glob(s) (any fsspec protocol).
        seed: Seed of every random choice.
        augment: Geometric augmentation (default: none).
        shuffle: Permute units and shuffle rows (``False``: shard order, for evaluation).
        shuffle_buffer: Rows held by the shuffle buffer.
        rank: This process's rank (default: from ``torch.distributed`` or ``RANK``, else 0).
        world_size: Number of ranks (default: from ``torch.distributed`` or ``WORLD_SIZE``, else 1).
        uneven: ``"pad"``, ``"drop"`` or ``"none"`` (see the module docstring).
        epochs: Epochs each iteration runs through, starting at :attr:`epoch`; ``None`` streams forever.
        max_pixels: Largest decoded frame accepted (decompression-bomb guard).

    Raises:
        FileNotFoundError: If a URL matches nothing.
        schemas.arrow.SchemaMismatchError: If a shard is not an ``augmented_frame`` v1 shard.
        ValueError: For bad settings, naming the value and what is allowed.
    """

    def __init__(self, urls: str | Sequence[str], *, seed: int = 0, augment: Augment = NO_AUGMENT,
                 shuffle: bool = True, shuffle_buffer: int = 64, rank: int | None = None,
                 world_size: int | None = None, uneven: str = "pad", epochs: int | None = 1,
                 max_pixels: int | None = None, paste_filter: PasteFilter | None = None) -> None:
        super().__init__()
        if uneven not in UNEVEN_MODES:
            raise ValueError(f"uneven must be one of {UNEVEN_MODES}, got {uneven!r}")
        if int(seed) < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be >= 1 or None (forever), got {epochs}")
        d_rank, d_world = _dist_rank_world()
        self.rank = d_rank if rank is None else int(rank)
        self.world_size = d_world if world_size is None else int(world_size)
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={self.rank}, world_size={self.world_size}")
        self.urls: list[str] = resolve_shards(list(urls) if not isinstance(urls, str) else urls, FRAME)
        if not self.urls:
            raise FileNotFoundError(f"no shards found in {urls}")
        self.seed = int(seed)
        self.augment = augment
        self.shuffle = bool(shuffle)
        self.shuffle_buffer = int(shuffle_buffer)
        self.uneven = uneven
        self.epochs = epochs
        self.max_pixels = max_pixels
        units: list[Unit] = []
        for i, url in enumerate(self.urls):
            meta = open_shard(url, FRAME).metadata  # validates the schema
            first = 0
            for g in range(meta.num_row_groups):
                rows = meta.row_group(g).num_rows
                if rows:
                    units.append(Unit(i, g, rows, first))
                first += rows
        if not units:
            raise ValueError(f"the shards hold no rows: {self.urls}")
        self.units: tuple[Unit, ...] = tuple(units)
        per_rank = len(units) // self.world_size if uneven == "drop" else math.ceil(len(units) / self.world_size)
        if per_rank == 0:
            raise ValueError(
                f"{len(units)} row groups cannot be split over world_size={self.world_size} with uneven='drop'; "
                "write smaller row groups or use uneven='pad'")
        self.fingerprint = stable_hash(tuple((os.path.basename(self.urls[u.shard]), u.row_group, u.rows)
                                             for u in units))
        self.paste_filter = paste_filter if paste_filter is not None and paste_filter.active else None
        self.skipped_rows: dict[int, frozenset[int]] = {}
        self.filter_counts: dict[str, int] = {"kept": self.num_rows, "skipped": 0}
        if self.paste_filter is not None:
            self.skipped_rows, self.filter_counts = filter_rows(self.urls, self.paste_filter)
            if not self.filter_counts["kept"]:
                raise ValueError(f"the paste filter {self.paste_filter} skips every frame of {self.urls}")
            self.fingerprint = stable_hash((self.fingerprint, repr(self.paste_filter)))
        self.epoch = 0
        self._skip: tuple[int, ...] = ()
        self._skip_workers = 0

    # -- the plan: pure functions of metadata, seed, epoch and layout -------------------------------------------

    @property
    def num_rows(self) -> int:
        """Rows over all shards (one epoch of all ranks without padding)."""
        return sum(u.rows for u in self.units)

    def set_epoch(self, epoch: int) -> None:
        """Start the next iteration at ``epoch`` (clears any resume position)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)
        self._skip = ()

    def rank_units(self, epoch: int) -> list[Unit]:
        """Units of this rank in ``epoch``, in stream order.

        Args:
            epoch: The epoch.

        Returns:
            The units; equal counts on every rank unless ``uneven="none"``.
        """
        n = len(self.units)
        order = rng_for(self.seed, ("units", int(epoch))).permutation(n) if self.shuffle else np.arange(n)
        if self.uneven == "pad":
            total = math.ceil(n / self.world_size) * self.world_size
            order = np.resize(order, total)  # wraps around
        elif self.uneven == "drop":
            order = order[: (n // self.world_size) * self.world_size]
        return [self.units[i] for i in order[self.rank::self.world_size]]

    def worker_units(self, epoch: int, worker: int, num_workers: int) -> list[Unit]:
        """Units that ``worker`` of ``num_workers`` reads in ``epoch`` (round-robin over the rank's units)."""
        return self.rank_units(epoch)[worker::max(num_workers, 1)]

    def worker_plan(self, epoch: int, worker: int, num_workers: int) -> tuple[list[Unit], np.ndarray]:
        """The rows a worker yields in one epoch, in order.

        Args:
            epoch: The epoch.
            worker: Worker index (0 for in-process loading).
            num_workers: Number of ``DataLoader`` workers (0 counts as 1).

        Returns:
            ``(units, order)``: the worker's units and an int64 array (N, 2) of (index into units, row in unit).
        """
        units = self.worker_units(epoch, worker, num_workers)
        rng = None
        if self.shuffle:
            rng = rng_for(self.seed, ("shuffle", int(epoch), self.rank, self.world_size, int(worker),
                                      max(int(num_workers), 1)))
        order = shuffle_order([u.rows for u in units], self.shuffle_buffer, rng)
        if self.skipped_rows and len(order):  # rows the paste filter skips leave the plan, the rest keep their order
            keep = np.array([u.first_row + int(r) not in self.skipped_rows.get(u.shard, ())
                             for u, r in ((units[int(p)], r) for p, r in order)], dtype=bool)
            order = order[keep]
        return units, order

    def worker_samples(self, epoch: int, worker: int, num_workers: int) -> int:
        """Number of samples ``worker`` yields in ``epoch``."""
        if self.skipped_rows:
            return len(self.worker_plan(epoch, worker, num_workers)[1])
        return sum(u.rows for u in self.worker_units(epoch, worker, num_workers))

    # -- state ------------------------------------------------------------------------------------------------

    def state_dict(self, consumed: Sequence[int] | None = None, num_workers: int | None = None) -> dict[str, Any]:
        """The position to resume from.

        Args:
            consumed: Samples consumed per worker since the start of :attr:`epoch` (default: the skip counts
                loaded last, i.e. the position the current iteration started from).
            num_workers: Number of ``DataLoader`` workers those counts refer to (0 for in-process).

        Returns:
            A JSON-able dict: ``version``, ``seed``, ``epoch``, ``consumed``, ``num_workers``, ``rank``,
            ``world_size``, ``uneven``, ``fingerprint``.
        """
        if consumed is None:
            consumed, num_workers = self._skip, self._skip_workers
        return {
            "version": STATE_VERSION,
            "seed": self.seed,
            "epoch": self.epoch,
            "consumed": [int(c) for c in consumed],
            "num_workers": int(num_workers or 0),
            "rank": self.rank,
            "world_size": self.world_size,
            "uneven": self.uneven,
            "fingerprint": str(self.fingerprint),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next iteration skips exactly the consumed samples per worker.

        Raises:
            ValueError: If the state belongs to other shards, seed, rank layout or split mode.
        """
        if int(state.get("version", -1)) != STATE_VERSION:
            raise ValueError(f"stream state version {state.get('version')!r}, expected {STATE_VERSION}")
        checks = {"seed": self.seed, "rank": self.rank, "world_size": self.world_size, "uneven": self.uneven,
                  "fingerprint": str(self.fingerprint)}
        for key, mine in checks.items():
            if state.get(key) != mine:
                raise ValueError(
                    f"cannot resume the stream: saved {key}={state.get(key)!r}, this stream has {key}={mine!r}")
        self.epoch = int(state["epoch"])
        self._skip = tuple(int(c) for c in state["consumed"])
        self._skip_workers = int(state["num_workers"])

    # -- iteration --------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, num_workers = (0, 0) if info is None else (info.id, info.num_workers)
        skip = 0
        if self._skip:
            if max(num_workers, 1) != max(self._skip_workers, 1) or len(self._skip) != max(num_workers, 1):
                raise ValueError(
                    f"cannot resume: the saved position is for num_workers={self._skip_workers}, "
                    f"this DataLoader has num_workers={num_workers}")
            skip = self._skip[worker]
        epoch = self.epoch
        last = None if self.epochs is None else self.epoch + self.epochs
        if self.epochs is None and self.worker_samples(epoch, worker, num_workers) == 0:
            raise ValueError(
                f"worker {worker} of {num_workers} gets no row group on rank {self.rank}: use at most "
                f"{len(self.rank_units(epoch))} workers or write smaller row groups")
        files: dict[int, Any] = {}
        while last is None or epoch < last:
            units, order = self.worker_plan(epoch, worker, num_workers)
            if skip >= len(order):
                skip -= len(order)
                epoch += 1
                continue
            yield from self._epoch_rows(epoch, worker, units, order[skip:], files)
            skip = 0
            epoch += 1

    def _epoch_rows(self, epoch: int, worker: int, units: list[Unit], order: np.ndarray,
                    files: dict[int, Any]) -> Iterator[dict[str, Any]]:
        remaining = np.bincount(order[:, 0], minlength=len(units)) if len(order) else np.zeros(0, np.int64)
        tables: dict[int, dict[str, list]] = {}
        for upos, row in order:
            upos, row = int(upos), int(row)
            unit = units[upos]
            if upos not in tables:
                if unit.shard not in files:
                    if len(files) >= MAX_OPEN_SHARDS:
                        files.pop(next(iter(files)))  # close the least recently opened shard
                    files[unit.shard] = open_shard(self.urls[unit.shard], FRAME)
                tables[upos] = files[unit.shard].read_row_group(unit.row_group, columns=list(COLUMNS)).to_pydict()
            t = tables[upos]
            image_bytes, label_bytes = t["image"][row], t["label"][row]
            t["image"][row] = t["label"][row] = None  # hold only rows still due
            yield self._decode(epoch, worker, unit, row, t["frame_id"][row], image_bytes, label_bytes)
            remaining[upos] -= 1
            if remaining[upos] == 0:
                del tables[upos]

    def _decode(self, epoch: int, worker: int, unit: Unit, row: int, frame_id: str, image_bytes: bytes,
                label_bytes: bytes) -> dict[str, Any]:
        where = f"{self.urls[unit.shard]} row {unit.first_row + row} ({frame_id})"
        kw = {} if self.max_pixels is None else {"max_pixels": self.max_pixels}
        image = decode_image(image_bytes, name=f"{where} field image", **kw)
        label = decode_png(label_bytes, name=f"{where} field label", **kw)
        if label.ndim != 2 or label.dtype != np.uint8:
            raise ValueError(f"{where}: label must be a uint8 (H, W) PNG, got {label.dtype} {label.shape}")
        if label.shape != image.shape[:2]:
            raise ValueError(f"{where}: image {image.shape[:2]} and label {label.shape} sizes differ")
        counts = np.bincount(label.ravel(), minlength=256)
        counts[:NUM_CLASSES] = counts[OOD] = counts[IGNORE] = 0
        if counts.any():
            bad = np.flatnonzero(counts)
            raise ValueError(f"{where}: label values must be 0..{NUM_CLASSES - 1}, {OOD} (pasted) or {IGNORE}; found "
                             f"{', '.join(str(int(v)) for v in bad[:8])} ({int(counts.sum())} pixels)")
        if self.augment != NO_AUGMENT:
            rng = rng_for(self.seed, ("augment", int(epoch), frame_id, unit.shard, unit.first_row + row))
            image, label = augment_frame(image, label, rng, self.augment)
        return {
            "image": torch.from_numpy(image).permute(2, 0, 1),  # a view: collation makes the one copy
            "label": torch.from_numpy(label),
            "frame_id": frame_id,
            "epoch": int(epoch),
            "worker": int(worker),
        }


class StreamLoader:
    """Batches of a :class:`ShardStream` through a ``DataLoader``, with an exact resumable position.

    Batches are formed inside each worker (``DataLoader`` semantics) and yielded in the fixed order worker 0,
    1, ..., ``num_workers - 1``, 0, ... (the ``DataLoader``'s own order from a fresh start); after
    :meth:`load_state_dict` the order continues where it stopped. Call :meth:`state_dict` between batches.

    Args:
        stream: The stream; ``stream.epochs`` must be ``None`` (the loader runs until the training loop stops).
        batch_size: Samples per batch (every batch is full: ``drop_last`` is implied by the endless stream).
        num_workers: ``DataLoader`` worker processes (0: load in this process).
        pin_memory: Pin batches for faster host-to-GPU copies.
        prefetch_factor: Batches each worker prepares ahead (``num_workers > 0`` only).

    Raises:
        ValueError: For a finite stream or a non-positive batch size.
    """

    def __init__(self, stream: ShardStream, batch_size: int, *, num_workers: int = 0, pin_memory: bool = False,
                 prefetch_factor: int | None = None) -> None:
        if stream.epochs is not None:
            raise ValueError("StreamLoader needs an endless stream: build the ShardStream with epochs=None")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        units = len(stream.rank_units(stream.epoch))
        if num_workers > units:
            raise ValueError(f"num_workers={num_workers} is more than the {units} row groups of rank {stream.rank}: "
                             "every worker needs at least one; use fewer workers or write smaller row groups")
        self.stream = stream
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = pin_memory
        self.prefetch_factor = prefetch_factor
        self.batches = 0
        self._consumed = [0] * max(self.num_workers, 1)
        self._start = stream.state_dict(self._consumed, self.num_workers)

    def state_dict(self) -> dict[str, Any]:
        """Position after the batches yielded so far: the stream state plus ``batch_size`` and ``batches``.

        ``epoch`` is the oldest epoch some worker is still in; ``consumed`` counts per worker from its start.
        """
        base = dict(self._start)
        consumed = [s + c for s, c in zip(self._start["consumed"], self._consumed)]
        epoch = int(base["epoch"])
        w = max(self.num_workers, 1)
        while True:  # move whole epochs that every worker has finished into ``epoch``
            sizes = [self.stream.worker_samples(epoch, i, self.num_workers) for i in range(w)]
            if not all(c >= n for c, n in zip(consumed, sizes)):
                break
            consumed = [c - n for c, n in zip(consumed, sizes)]
            epoch += 1
        base["epoch"] = epoch
        base["consumed"] = consumed
        base["batch_size"] = self.batch_size
        base["batches"] = int(self._start.get("batches", 0)) + self.batches
        return base

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict` (before iterating).

        Raises:
            ValueError: If batch size or worker count differ from the saved ones, or the stream does not match.
        """
        for key, mine in (("batch_size", self.batch_size), ("num_workers", self.num_workers)):
            if int(state.get(key, -1)) != mine:
                raise ValueError(f"cannot resume the loader: saved {key}={state.get(key)!r}, now {key}={mine}")
        self.stream.load_state_dict(state)
        self._start = dict(state)
        self.batches = 0
        self._consumed = [0] * max(self.num_workers, 1)

    def _loader(self) -> DataLoader:
        kw: dict[str, Any] = {}
        if self.num_workers > 0:
            kw["prefetch_factor"] = self.prefetch_factor or 2
            kw["persistent_workers"] = False
        # The stream copy in the workers starts from the loaded position.
        self.stream.load_state_dict(self._start)
        return DataLoader(self.stream, batch_size=self.batch_size, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, drop_last=True, **kw)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._start = self.state_dict()  # a new iteration continues from everything consumed so far
        self.batches = 0
        self._consumed = [0] * max(self.num_workers, 1)
        w = max(self.num_workers, 1)
        start_batches = int(self._start["batches"])
        pending: dict[int, deque] = {i: deque() for i in range(w)}
        want = start_batches % w
        for batch in self._loader():
            src = int(batch["worker"][0])
            pending[src].append(batch)
            while pending[want]:
                out = pending[want].popleft()
                self._consumed[want] += self.batch_size
                self.batches += 1
                want = (want + 1) % w
                yield out

