"""Head training on cached body features: the steps of ``stylepaste finetune`` without a body pass per step.

Head-only finetuning trains only the head; the body is frozen in ``eval()`` and deterministic, so with whole
frames and no geometric augmentation its output ``model.forward_features(x, head)`` is a fixed function of the
frame. :func:`compute_features` runs the body once per frame (a :class:`FeatureCache`, on disk with
:func:`save_cache`), and :func:`finetune_cached` then trains the head with the very step of ``stylepaste
finetune``: the same :class:`trainer.finetune.FinetuneConfig`, the same data order (the batches
:class:`trainer.data.StreamLoader` would yield for those settings, reproduced from the stream's plan),
:func:`trainer.heads.head_loss` (with the frozen :class:`trainer.heads.BaseHead` for the ``distill`` anchor) and
the same optimizer. ``tests/trainer/test_cached.py`` checks that both paths give the same head.

:func:`check_cacheable` says which settings qualify (no crop, rescale or flip, no validation shards, no autocast,
one process); :func:`run_cached` is ``stylepaste finetune --cache-features``: it writes the same ``head.pt``,
``model.pt`` and ``train_log.jsonl`` as :func:`trainer.finetune.run`. On the demo's corpus (300 frames at
256x512) the cached path trains 200 head steps in a fraction of the streamed path's time (the README gives the
figures).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import torch
from tqdm import tqdm

from evaluation.datasets import open_dataset
from schemas.arrow import FRAME
from schemas.manifest import join_url, open_shard, resolve_shards
from trainer.checkpoint import load_checkpoint
from trainer.data import Augment, ShardStream
from trainer.heads import BaseHead, freeze_all_but_head, head_loss, head_state_dict
from trainer.models import build_model, normalize
from trainer.subsets import filter_rows, require_pastes
from trainer.training import (
    FinetuneConfig,
    make_optimizer,
    optimizer_step,
    remove_partial_run,
    save_finetuned,
    write_log,
)

# ------------------------------------------------------------------------------------------- data order


def batch_order(stream: ShardStream, batch_size: int, num_workers: int, steps: int) -> list[list[tuple[int, int]]]:
    """The (shard index, row in shard) of every frame of the first ``steps`` batches a
    :class:`trainer.data.StreamLoader` over ``stream`` yields (``epochs=None``, a fresh start).

    Worker ``w`` of ``W`` streams its plan epoch after epoch; the ``j``-th batch comes from worker ``j mod W``.

    Args:
        stream: The stream (its seed, shuffle buffer and rank layout define the order).
        batch_size: Frames per batch.
        num_workers: ``DataLoader`` workers (0: in-process).
        steps: Number of batches.

    Returns:
        ``steps`` lists of ``batch_size`` (shard, row) pairs.
    """
    w_count = max(int(num_workers), 1)

    def rows(worker: int) -> Iterator[tuple[int, int]]:
        epoch = stream.epoch
        while True:
            units, order = stream.worker_plan(epoch, worker, num_workers)
            for upos, row in order:
                u = units[int(upos)]
                yield u.shard, u.first_row + int(row)
            epoch += 1

    gens = [rows(w) for w in range(w_count)]
    return [[next(gens[j % w_count]) for _ in range(batch_size)] for j in range(steps)]


def shard_frame_ids(stream: ShardStream) -> list[list[str]]:
    """The ``frame_id`` column of every shard of ``stream`` (row order)."""
    return [open_shard(url, FRAME).read(columns=["frame_id"]).column("frame_id").to_pylist() for url in stream.urls]


# ------------------------------------------------------------------------------------------- feature caches


@dataclass
class FeatureCache:
    """Body features of a set of frames, with their labels.

    Attributes:
        feats: ``[N, C, h, w]`` (float32 or float16) features ``model.forward_features(x, head)``.
        labels: ``[N, H, W]`` uint8 labels.
        ids: Frame ids, in the order of ``feats``.
        size: Frame (H, W).
    """

    feats: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    size: tuple[int, int]

    def index(self) -> dict[str, int]:
        """frame id -> position.

        Raises:
            ValueError: If a frame id repeats.
        """
        out = {fid: i for i, fid in enumerate(self.ids)}
        if len(out) != len(self.ids):
            raise ValueError("frame ids repeat in the cache; it needs one row per frame")
        return out


@torch.no_grad()
def compute_features(model: torch.nn.Module, frames: Iterator[tuple[str, np.ndarray, np.ndarray]], head: str,
                     dtype: torch.dtype, batch: int = 1) -> FeatureCache:
    """Run the frozen body over frames.

    Args:
        model: Model in ``eval()``.
        frames: ``(frame id, uint8 image (H, W, 3), uint8 label (H, W))``.
        head: The head whose input is computed.
        dtype: Storage dtype.
        batch: Frames per forward.

    Returns:
        The cache.
    """
    feats: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    ids: list[str] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        if pending:
            x = torch.from_numpy(np.stack(pending)).permute(0, 3, 1, 2)
            feats.append(model.forward_features(normalize(x), head).to(dtype))
            pending.clear()

    size: tuple[int, int] | None = None
    for fid, image, label in frames:
        if size is None:
            size = tuple(image.shape[:2])
        elif tuple(image.shape[:2]) != size:
            raise ValueError(f"frame {fid}: size {image.shape[:2]} differs from {size}; the cache needs one size")
        pending.append(np.ascontiguousarray(image))
        labels.append(torch.from_numpy(np.ascontiguousarray(label)))
        ids.append(fid)
        if len(pending) >= batch:
            flush()
    flush()
    if not ids:
        raise ValueError("no frames to cache")
    return FeatureCache(torch.cat(feats), torch.stack(labels), ids, size)


def shard_frames(urls: Sequence[str]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Every frame of augmented-frame shards, in shard order, decoded."""
    stream = ShardStream(list(urls), shuffle=False, rank=0, world_size=1, uneven="none", epochs=1)
    for item in stream:
        yield item["frame_id"], item["image"].permute(1, 2, 0).numpy(), item["label"].numpy()


def dataset_frames(name: str, root: str, limit: int | None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Frames of an evaluation dataset (:func:`evaluation.datasets.open_dataset`)."""
    ds = open_dataset(name, root)
    n = len(ds) if limit is None else min(limit, len(ds))
    for i in range(n):
        s = ds[i]
        yield s.sample_id, s.image, s.label


def save_cache(cache: FeatureCache, path: Path) -> None:
    """Write a cache (tensors with ``torch.save``, ids as JSON inside; read back with ``weights_only=True``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")  # streamed to a temporary name, then renamed: atomic without a second copy
    torch.save({"feats": cache.feats, "labels": cache.labels, "ids": json.dumps(cache.ids),
                "size": list(cache.size)}, tmp)
    tmp.replace(path)


def load_cache(path: Path) -> FeatureCache:
    """Read :func:`save_cache` output."""
    d = torch.load(path, weights_only=True, mmap=True)
    return FeatureCache(d["feats"], d["labels"], json.loads(d["ids"]), tuple(d["size"]))


# ------------------------------------------------------------------------------------------- cached finetune


def check_cacheable(cfg: FinetuneConfig) -> None:
    """Refuse finetune settings the cached path cannot reproduce.

    Raises:
        ValueError: For geometric augmentation, validation shards, autocast or a non-CPU device.
    """
    if Augment(cfg.scale, cfg.crop, cfg.flip) != Augment():
        raise ValueError(f"cached features need whole frames without augmentation; got scale={cfg.scale}, "
                         f"crop={cfg.crop}, flip={cfg.flip}")
    if cfg.val_shards:
        raise ValueError("the cached path does not validate on held-out shards (val_shards must be empty)")
    if cfg.amp not in ("off", "auto"):
        raise ValueError(f"the cached path runs in float32 on the CPU; amp={cfg.amp!r}")
    if cfg.device not in ("auto", "cpu"):
        raise ValueError(f"the cached path runs on the CPU; device={cfg.device!r}")


def finetune_cached(cfg: FinetuneConfig, cache: FeatureCache, *, model: torch.nn.Module | None = None,
                    on_step: Any = None, progress: bool = False) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """Train the head of ``cfg`` on cached body features: the steps ``trainer.finetune.run(cfg)`` takes.

    The batches are the ones :class:`trainer.data.StreamLoader` yields for ``cfg`` (shards, seed, shuffle buffer,
    batch size, workers; one rank); each step is :func:`trainer.heads.head_loss` -> backward -> optimizer step.

    Args:
        cfg: Finetune settings (no augmentation, no validation).
        cache: Features of every frame of ``cfg.shards`` (any order; matched by frame id).
        model: The base model with its checkpoint loaded (default: built and loaded from ``cfg.checkpoint``).
        on_step: Called with (step, {"loss", "ce", "anchor", "ood"}) after each step.
        progress: Show a progress bar.

    Returns:
        ``(model, log)``: the model with the trained head (head in ``train()`` mode) and the per-step losses.
    """
    check_cacheable(cfg)
    if model is None:
        model = build_model(cfg.arch, cfg.num_classes)
        load_checkpoint(model, cfg.checkpoint)
    params = freeze_all_but_head(model, cfg.head)
    base = BaseHead(model, cfg.head) if cfg.loss.needs_base else None
    optimizer = make_optimizer(cfg, params)
    stream = ShardStream(list(cfg.shards), seed=cfg.seed, shuffle_buffer=cfg.shuffle_buffer, rank=0, world_size=1,
                         uneven="pad", epochs=None, paste_filter=cfg.paste_filter)
    ids = shard_frame_ids(stream)
    batches = batch_order(stream, cfg.batch_size, cfg.workers, cfg.steps)
    if cache.ids == [fid for shard in ids for fid in shard]:
        # the cache holds exactly these shards' rows in order: a row's position is its index (this also serves a
        # corpus that holds a frame twice, e.g. one grown by augment --append)
        offsets = np.cumsum([0] + [len(shard) for shard in ids])
        order = [[int(offsets[s]) + r for s, r in b] for b in batches]
    else:
        where = cache.index()
        try:
            order = [[where[ids[s][r]] for s, r in b] for b in batches]
        except KeyError as err:
            raise ValueError(f"frame {err} of {list(cfg.shards)} is not in the feature cache") from None
    log: list[dict[str, float]] = []
    model.train()
    for step, idx in enumerate(tqdm(order, disable=not progress, desc="finetune (cached)", unit="step",
                                    dynamic_ncols=True), start=1):
        ix = torch.tensor(idx)
        feats = cache.feats[ix].float()
        y = cache.labels[ix].long()
        loss, parts = head_loss(model, feats, cache.size, y, cfg.loss, cfg.head, base)
        optimizer_step(loss, optimizer)
        rec = {k: float(v) for k, v in parts.items()}
        log.append(rec)
        if on_step is not None:
            on_step(step, rec)
    return model, log


def run_cached(cfg: FinetuneConfig, *, feature_batch: int = 4) -> dict[str, Any]:
    """``stylepaste finetune --cache-features``: cache the body's features of ``cfg.shards``, train the head on
    them and write ``head.pt``, ``model.pt`` and ``train_log.jsonl`` as :func:`trainer.finetune.run` does.

    Args:
        cfg: Finetune settings that :func:`check_cacheable` accepts.
        feature_batch: Frames per body forward while caching.

    Returns:
        ``{"step", "best", "head_sha256", "out", "rank", "frames", "seconds": {"features", "train"}}``.

    Raises:
        ValueError: Settings the cached path cannot reproduce, or bad inputs.
        FileExistsError: ``out`` already holds a run.
    """
    check_cacheable(cfg)
    if cfg.resume:
        raise ValueError("the cached path has no resume (it is short); run without --resume")
    log_url = join_url(cfg.out, "train_log.jsonl")
    fs, path = fsspec.core.url_to_fs(join_url(cfg.out, "head.pt"))
    if fs.exists(path):
        raise FileExistsError(f"{cfg.out} already holds a finetune run; choose another --out")
    require_pastes(resolve_shards(list(cfg.shards), FRAME), cfg.allow_no_pastes)
    existed = fs.exists(fsspec.core.url_to_fs(cfg.out)[1])
    try:
        return _run_cached(cfg, log_url, feature_batch)
    except BaseException:
        if not existed:
            remove_partial_run(cfg.out)
        raise


def _run_cached(cfg: FinetuneConfig, log_url: str, feature_batch: int) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, cfg.num_classes)
    load_checkpoint(model, cfg.checkpoint)
    model.eval()
    t = time.perf_counter()
    cache = compute_features(model, shard_frames(cfg.shards), cfg.head, torch.float32, feature_batch)
    t_feat = time.perf_counter() - t
    write_log(log_url, {"event": "start", "step": 0, "world_size": 1, "device": "cpu", "amp": "None",
                        "config": cfg.to_json(), "resumed": False, "cached_features": len(cache.ids)}, new=True)
    t = time.perf_counter()
    model, log = finetune_cached(cfg, cache, model=model, progress=cfg.progress)
    t_train = time.perf_counter() - t
    for start in range(0, len(log), cfg.log_every):
        window = log[start:start + cfg.log_every]
        write_log(log_url, {"event": "step", "step": start + len(window),
                            **{k: float(np.mean([r[k] for r in window])) for k in window[0]},
                            "images_per_s": len(log) * cfg.batch_size / max(t_train, 1e-9)})
    final = head_state_dict(model, cfg.head)
    counts = filter_rows(resolve_shards(list(cfg.shards), FRAME), cfg.paste_filter)[1] if cfg.paste_filter.active \
        else None
    sha = save_finetuned(model, cfg, final, cfg.steps, cfg.steps, None, counts)
    write_log(log_url, {"event": "end", "step": cfg.steps, "head_sha256_per_rank": [sha], "best": None,
                        "saved_head_step": cfg.steps, "seconds": {"features": t_feat, "train": t_train}})
    return {"step": cfg.steps, "best": None, "head_sha256": sha, "out": cfg.out, "rank": 0, "frames": len(cache.ids),
            "seconds": {"features": t_feat, "train": t_train}}
