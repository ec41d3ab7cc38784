"""``stylepaste finetune``: train only the classification head on augmented-frame shards.

The body of a segmentation model (loaded from ``--checkpoint``, any layout :func:`trainer.checkpoint.load_checkpoint`
reads) is frozen and kept in ``eval()``; its features are computed under ``torch.no_grad()`` and only the head
(``--head classifier``: the final 1x1 conv, or ``--head final``: the whole final block) is trained with
``L_in + w * L_ood`` (:mod:`trainer.losses`; ``L_in`` anchors the inlier logits to the base model's by
default) on frames streamed from Parquet shards (:mod:`trainer.data`).

Multi-process: ``torchrun --nproc_per_node N -m trainer.finetune ...`` (or ``torchrun ... $(which stylepaste)
finetune ...``). Each rank streams its own share of the row groups; head gradients are averaged over ranks with one
all-reduce per step (and the head's BN statistics, for ``--head final``), so all ranks hold identical weights.
``gloo`` on CPU; ``nccl`` and autocast (bf16, or fp16 with a gradient scaler) on CUDA. Only rank 0 writes files.

Files in ``--out``:

* ``last.pt``: resume state (under torchrun every rank reads it on ``--resume``, so ``--out`` must be a shared
  folder or object store), written every ``--save-every`` steps and at the end: head tensors, optimizer state,
  every rank's stream position, step, best validation result and the best head, the settings (JSON). Plain
  tensors and JSON-able values only (``torch.load(weights_only=True)``). ``--resume`` continues from it exactly.
* ``head.pt``: the finetuned head (``save_checkpoint`` format, head keys only; ``load_checkpoint(model, url,
  strict=False)`` puts it into a model).
* ``model.pt``: the full model with the finetuned head, loadable by ``load_checkpoint``.
* ``train_log.jsonl``: one JSON object per line (``step``, ``val``, ``checkpoint``, ``end`` events).

With ``--val-shards`` (held-out pasted frames) the head is evaluated every ``--val-every`` steps by the
pasted-pixel average precision (positives: pixels labelled 254; negatives: other labelled pixels; score:
``--val-score``) and ``head.pt`` / ``model.pt`` hold the best head, not the last one (longer head training can
score worse).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import fsspec
import torch
from fsspec.implementations.local import LocalFileSystem
from torch.utils.data import DataLoader
from tqdm import tqdm

from evaluation.loop import LogitsEvaluator
from schemas.arrow import FRAME
from schemas.corpus import parse_licence_ids
from schemas.labels import IGNORE, NUM_CLASSES, OOD
from schemas.manifest import join_url, resolve_shards
from schemas.storage import atomic_write
from trainer.cached import check_cacheable, run_cached
from trainer.checkpoint import load_checkpoint, read_checkpoint
from trainer.data import Augment, ShardStream, StreamLoader, parse_pair
from trainer.distributed import (
    DistInfo,
    average_buffers,
    average_gradients,
    barrier,
    broadcast_module,
    gather_objects,
    init_distributed,
    mean_over_ranks,
    shutdown,
)
from trainer.heads import (
    BaseHead,
    freeze_all_but_head,
    head_loss,
    head_state_dict,
    load_head_state_dict,
)
from trainer.losses import INLIER_KINDS, LOSS_KINDS, LossConfig
from trainer.models import ARCHS, HEADS, build_model, head_modules, normalize
from trainer.subsets import PasteFilter, filter_line, require_pastes
from trainer.training import (
    AMP_MODES,
    OPTIMIZERS,
    RESUMABLE_CHANGES,
    STATE_FORMAT,
    VAL_SCORES,
    FinetuneConfig,
    NonFiniteError,
    _amp_dtype,
    _sha256,
    make_optimizer,
    optimizer_step,
    remove_partial_run,
    save_finetuned,
    write_log,
)

# ------------------------------------------------------------------------------------------- validation


def to_anomaly_labels(labels: torch.Tensor) -> torch.Tensor:
    """Augmented-frame labels -> anomaly labels: 254 -> 1, class ids -> 0, 255 -> 255."""
    labels = labels.long()
    out = torch.zeros_like(labels)
    out[labels == OOD] = 1
    out[labels == IGNORE] = IGNORE
    return out.to(torch.uint8)


@torch.no_grad()
def evaluate_pasted_ap(model: torch.nn.Module, urls: Sequence[str], *, score: str = "energy",
                       device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None,
                       max_frames: int | None = None, workers: int = 0) -> dict[str, float]:
    """Pasted-pixel AP of a model on held-out augmented frames (whole frames, batch 1, shard order).

    Args:
        model: The segmentation model (put in ``eval()`` for the call, then restored).
        urls: Augmented-frame shard URLs.
        score: ``energy`` or ``max_logit``.
        device: Device of the model.
        amp_dtype: Autocast dtype, or ``None``.
        max_frames: Stop after this many frames.
        workers: ``DataLoader`` workers.

    Returns:
        ``{"ap", "frames", "ood_pixels"}``.
    """
    was_training = model.training
    model.eval()
    device = torch.device(device)
    stream = ShardStream(list(urls), shuffle=False, rank=0, world_size=1, uneven="none", epochs=1)
    ev = LogitsEvaluator((score,))
    metric = ev.anomaly[score]
    frames = ood = 0
    loader = DataLoader(stream, batch_size=1, num_workers=workers)
    for batch in loader:
        x = normalize(batch["image"].to(device))
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(x)
        ev.update_anomaly(logits.float(), to_anomaly_labels(batch["label"]))
        frames += 1
        ood += int((batch["label"] == OOD).sum())
        if max_frames is not None and frames >= max_frames:
            break
    model.train(was_training)
    if metric.num_pos == 0 or metric.num_neg == 0:
        raise ValueError(f"validation shards {list(urls)} need pasted (254) and other labelled pixels; found "
                         f"{metric.num_pos} pasted and {metric.num_neg} other pixels in {frames} frames")
    return {"ap": float(metric.compute()["ap"]), "frames": frames, "ood_pixels": ood}


# ------------------------------------------------------------------------------------------- training


def shard_identity(urls: Sequence[str]) -> list[str]:
    """What the shards of a run are, independent of how they were typed: every resolved shard URL, local paths
    made absolute with links resolved (``runs/aug`` and ``/work/runs/aug/`` are the same shards)."""
    out = []
    for url in resolve_shards(list(urls), FRAME):
        fs, path = fsspec.core.url_to_fs(url)
        out.append(os.path.realpath(path) if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path))
    return out


def _check_resume_config(saved: dict[str, Any], cfg: FinetuneConfig, url: str,
                         saved_shards: list[str] | None = None) -> None:
    """Refuse a resume whose settings differ from the saved run's (beyond :data:`RESUMABLE_CHANGES`). The shards
    are compared by :func:`shard_identity` when the saved state records it, else as typed."""
    mine = cfg.to_json()
    same_shards = saved_shards is not None and saved_shards == shard_identity(cfg.shards)
    diffs = [f"{k}: saved {saved.get(k)!r}, now {mine[k]!r}" for k in mine
             if k not in RESUMABLE_CHANGES and saved.get(k) != mine[k] and not (k == "shards" and same_shards)]
    if saved_shards is not None and not same_shards and not any(d.startswith("shards:") for d in diffs):
        diffs.append("shards: the corpus changed since the run started (grown by stylepaste augment --append, or "
                     "rewritten); start a new run on it")
    if diffs:
        raise ValueError(f"cannot resume from {url}: settings differ ({'; '.join(diffs)}); only "
                         f"{sorted(RESUMABLE_CHANGES)} may change")


def run(cfg: FinetuneConfig, *, on_step: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Finetune the head (see the module docstring); call under ``torchrun`` for several processes.

    Args:
        cfg: Settings.
        on_step: Called on every rank after each optimizer step with (step, {"loss", "ce", "anchor", "ood"}) (the losses
            of this rank's batch). An exception raised there stops the run as an interruption would (the last
            periodic checkpoint stays).

    Returns:
        ``{"step", "best", "head_sha256", "out", "rank"}`` (the final head hash of this rank, and the best
        validation result as ``{"step", "ap"}`` or ``None``).

    Raises:
        FileExistsError: ``out`` already holds a run and ``resume`` is off.
        ValueError: Settings that do not fit the saved run on resume, or bad inputs.
    """
    info = init_distributed(cfg.device)
    fs, out = fsspec.core.url_to_fs(cfg.out)
    existed = fs.exists(out)
    try:
        return _run(cfg, info, on_step)
    except BaseException:
        if info.main and not existed:
            remove_partial_run(cfg.out)
        raise
    finally:
        shutdown(info)



class _Run:
    """One rank's finetune run: model and head, shard stream, optimizer, resume state, validation and log.

    :meth:`train` runs the steps; :meth:`finish` checks that every rank holds the same head and saves it.
    """

    def __init__(self, cfg: FinetuneConfig, info: DistInfo,
                 on_step: Callable[[int, dict[str, float]], None] | None) -> None:
        self.cfg, self.info, self.on_step = cfg, info, on_step
        self.device = device = info.device
        self.amp_dtype = _amp_dtype(cfg, device)
        self.last_url = join_url(cfg.out, "last.pt")
        self.log_url = join_url(cfg.out, "train_log.jsonl")
        fs, last_path = fsspec.core.url_to_fs(self.last_url)
        has_last = fs.exists(last_path)
        if has_last and not cfg.resume:
            raise FileExistsError(f"{cfg.out} already holds a finetune run ({self.last_url}); pass --resume to "
                                  "continue it or choose another --out")

        torch.manual_seed(cfg.seed)
        self.model = model = build_model(cfg.arch, cfg.num_classes)
        load_checkpoint(model, cfg.checkpoint)
        model.to(device)
        self.params = freeze_all_but_head(model, cfg.head)
        self.heads = head_modules(model, cfg.head)
        # captured before a resumed head is loaded
        self.base_head = BaseHead(model, cfg.head) if cfg.loss.needs_base else None
        self.optimizer = make_optimizer(cfg, self.params)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        stream = ShardStream(list(cfg.shards), seed=cfg.seed, augment=Augment(cfg.scale, cfg.crop, cfg.flip),
                             shuffle_buffer=cfg.shuffle_buffer, rank=info.rank, world_size=info.world_size,
                             uneven="pad", epochs=None, paste_filter=cfg.paste_filter)
        self.filter_counts = stream.filter_counts
        if stream.paste_filter is not None and info.main:
            print(f"finetune: paste filter {filter_line(cfg.paste_filter, stream.filter_counts)}", file=sys.stderr)
        require_pastes(stream.urls, cfg.allow_no_pastes)
        self.shard_ids = shard_identity(cfg.shards)
        self.loader = StreamLoader(stream, cfg.batch_size, num_workers=cfg.workers,
                                   pin_memory=device.type == "cuda")
        self.step = 0
        self.best: dict[str, Any] | None = None
        self.best_head: dict[str, torch.Tensor] = {}
        resumed = bool(cfg.resume and has_last)
        if resumed:
            self._resume()
        for module in self.heads.values():
            broadcast_module(module, info)
        if info.main:
            write_log(self.log_url, {"event": "start", "step": self.step, "world_size": info.world_size,
                                     "device": str(device), "amp": str(self.amp_dtype), "config": cfg.to_json(),
                                     "resumed": resumed}, new=not resumed)
        self.bar = tqdm(total=cfg.steps, initial=self.step, disable=not (info.main and cfg.progress),
                        dynamic_ncols=True, desc="finetune", unit="step") if info.main else None

    def _resume(self) -> None:
        """Load head, optimizer, scaler, stream position and best validation result from ``last.pt``."""
        cfg, info, url = self.cfg, self.info, self.last_url
        state = read_checkpoint(url)
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"{url} is not a {STATE_FORMAT} resume file")
        saved_shards = json.loads(state["shard_identity"]) if state.get("shard_identity") else None
        _check_resume_config(json.loads(state["config"]), cfg, url, saved_shards)
        if len(state["stream"]) != info.world_size:
            raise ValueError(f"cannot resume from {url}: it was written by {len(state['stream'])} ranks, "
                             f"this run has {info.world_size}")
        load_head_state_dict(self.model, cfg.head, state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.loader.load_state_dict(json.loads(state["stream"][info.rank]))
        self.step = int(state["step"])
        self.best = json.loads(state["best"]) if state.get("best") else None
        self.best_head = dict(state.get("best_head") or {})

    def save_state(self) -> None:
        """Write ``last.pt`` (rank 0, atomically) with every rank's stream position."""
        cfg = self.cfg
        streams = gather_objects(json.dumps(self.loader.state_dict()), self.info)
        if not self.info.main:
            return
        payload = {
            "format": STATE_FORMAT,
            "step": self.step,
            "config": json.dumps(cfg.to_json()),
            "shard_identity": json.dumps(self.shard_ids),
            "head_name": cfg.head,
            "head": head_state_dict(self.model, cfg.head),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "stream": streams,
            "best": json.dumps(self.best) if self.best else "",
            "best_head": self.best_head,
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        atomic_write(self.last_url, buf.getvalue())
        write_log(self.log_url, {"event": "checkpoint", "step": self.step, "url": self.last_url})

    def validate(self) -> None:
        """Pasted-pixel AP on the validation shards (rank 0); keeps the best head."""
        cfg = self.cfg
        if self.info.main:
            res = evaluate_pasted_ap(self.model, cfg.val_shards, score=cfg.val_score, device=self.device,
                                     amp_dtype=self.amp_dtype, max_frames=cfg.val_max_frames)
            best = self.best
            if best is None or (not math.isnan(res["ap"]) and res["ap"] > best["ap"]):
                self.best = best = {"step": self.step, "ap": res["ap"]}
                self.best_head = head_state_dict(self.model, cfg.head)
            write_log(self.log_url, {"event": "val", "step": self.step, **res, "best_step": best["step"],
                                     "best_ap": best["ap"]})
            if self.bar is not None:
                self.bar.write(f"step {self.step}: pasted-pixel AP {res['ap']:.4f} (best {best['ap']:.4f} at step "
                               f"{best['step']})")
        barrier(self.info)

    def _log_window(self, parts_sum: torch.Tensor, window_steps: int, seconds: float, epoch: int) -> None:
        """The mean losses of the last ``window_steps`` steps over every rank, and the throughput."""
        cfg, info = self.cfg, self.info
        mean = mean_over_ranks(parts_sum / window_steps, info).tolist()
        ips = window_steps * cfg.batch_size * info.world_size / max(seconds, 1e-9)
        if info.main:
            write_log(self.log_url, {"event": "step", "step": self.step, "loss": mean[0], "ce": mean[1],
                                     "anchor": mean[2], "ood": mean[3], "lr": self.optimizer.param_groups[0]["lr"],
                                     "images_per_s": ips, "epoch": epoch})
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{mean[0]:.4f}", ood=f"{mean[3]:.4f}", img_s=f"{ips:.1f}")

    def train(self) -> None:
        """Run the remaining steps, with periodic logs, validation and ``last.pt``."""
        cfg, info, model = self.cfg, self.info, self.model
        model.train()
        if cfg.val_shards and self.step == 0 and self.best is None:
            self.validate()  # the base model's AP: a finetune that does not beat it keeps the base head
        window_t0, window_steps, paused = time.perf_counter(), 0, 0.0
        parts_sum = torch.zeros(4, device=self.device)
        batches = iter(self.loader)
        while self.step < cfg.steps:
            batch = next(batches)
            x = normalize(batch["image"].to(self.device, non_blocking=True))
            y = batch["label"].to(self.device, non_blocking=True).long()
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                with torch.no_grad():
                    feats = model.forward_features(x, cfg.head)
                loss, parts = head_loss(model, feats, x.shape[-2:], y, cfg.loss, cfg.head, self.base_head)
            try:
                optimizer_step(loss, self.optimizer, self.scaler, lambda: average_gradients(self.params, info))
            except NonFiniteError as err:
                fs, last = fsspec.core.url_to_fs(self.last_url)
                kept = f"{self.last_url} keeps the last good state" if fs.exists(last) else "nothing was saved"
                raise NonFiniteError(f"finetune stopped at step {self.step + 1}: {err}; {kept}") from None
            if cfg.head == "final":
                for module in self.heads.values():
                    average_buffers(module, info)
            self.step += 1
            window_steps += 1
            parts_sum += torch.stack([parts["loss"], parts["ce"], parts["anchor"], parts["ood"]])
            if self.on_step is not None:
                self.on_step(self.step, {k: float(v) for k, v in parts.items()})
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                # validation and checkpoint time excluded from the throughput
                self._log_window(parts_sum, window_steps, time.perf_counter() - window_t0 - paused,
                                 int(batch["epoch"].max()))
                window_t0, window_steps, paused = time.perf_counter(), 0, 0.0
                parts_sum.zero_()
            if self.bar is not None:
                self.bar.update(1)
            t_pause = time.perf_counter()
            if cfg.val_shards and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                self.validate()
            if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                self.save_state()
            paused += time.perf_counter() - t_pause
        if self.bar is not None:
            self.bar.close()

    def finish(self) -> dict[str, Any]:
        """Check that every rank holds the same head, save the chosen one (best validated, else final)."""
        cfg, info = self.cfg, self.info
        final = head_state_dict(self.model, cfg.head)
        hashes = gather_objects(_sha256(final), info)
        if info.main:
            if len(set(hashes)) != 1:
                raise RuntimeError(f"ranks finished with different head weights: {hashes}")
            chosen, chosen_step = final, self.step
            if self.best is not None and self.best_head:
                chosen, chosen_step = self.best_head, self.best["step"]
            save_finetuned(self.model, cfg, chosen, chosen_step, self.step, self.best, self.filter_counts)
            load_head_state_dict(self.model, cfg.head, final)
            write_log(self.log_url, {"event": "end", "step": self.step, "head_sha256_per_rank": hashes,
                                     "best": self.best, "saved_head_step": chosen_step})
        barrier(info)
        return {"step": self.step, "best": self.best, "head_sha256": hashes[info.rank], "out": cfg.out,
                "rank": info.rank}


def _run(cfg: FinetuneConfig, info: DistInfo, on_step: Callable[[int, dict[str, float]], None] | None
         ) -> dict[str, Any]:
    run_ = _Run(cfg, info, on_step)
    run_.train()
    return run_.finish()


# ------------------------------------------------------------------------------------------- command line


def parse_paste_filter(licences: str, categories: str | None) -> PasteFilter:
    """``--exclude-licences 1,2,3`` and ``--categories dog,cow`` as a :class:`trainer.data.PasteFilter`.

    Raises:
        ValueError: For a licence id that is not an integer, or an empty category list.
    """
    ids = parse_licence_ids(licences)
    cats = None
    if categories is not None:
        cats = tuple(sorted({v.strip() for v in categories.split(",") if v.strip()}))
        if not cats:
            raise ValueError("--categories needs at least one category name")
    return PasteFilter(ids, cats)


def build_parser() -> argparse.ArgumentParser:
    """The ``stylepaste finetune`` argument parser."""
    p = argparse.ArgumentParser(
        prog="stylepaste finetune",
        description="Finetune only the classification head of a segmentation model on augmented-frame shards "
                    "with an inlier term (CE + distillation to the frozen base head by default) + w * (top-k "
                    "one-vs-rest | entropy | energy) on pasted pixels. Runs under "
                    "torchrun for several processes (DDP: gloo on CPU, nccl + autocast on CUDA).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--shards", nargs="+", required=True, help="augmented-frame shard folder(s), file(s) or glob(s)")
    p.add_argument("--checkpoint", required=True, help="base model checkpoint URL (public or stylepaste layout)")
    p.add_argument("--arch", default="wrn38", choices=ARCHS, help="model architecture")
    p.add_argument("--num-classes", type=int, default=NUM_CLASSES, help="classes of the base model")
    p.add_argument("--out", required=True, help="output folder URL")
    p.add_argument("--head", default="classifier", choices=HEADS,
                   help="what is trained: the final 1x1 classifier conv, or the whole final block")
    p.add_argument("--loss", default="topk_ovr", choices=LOSS_KINDS,
                   help="OoD term: top-k one-vs-rest (ours), Meta-OoD entropy, or energy margin")
    p.add_argument("--inlier", default=LossConfig.inlier, choices=INLIER_KINDS,
                   help="inlier term: CE + MSE distillation of inlier logits to the frozen base head (distill), "
                        "CE alone (ce, as the poster writes it), CE + BCE on the true class (true_bce), CE + "
                        "one-vs-rest BCE on all classes (ovr_bce)")
    p.add_argument("--inlier-weight", type=float, default=LossConfig.inlier_weight,
                   help="weight of the inlier anchor (beta)")
    p.add_argument("--k", type=int, default=5, help="top-k classes per OoD pixel (topk_ovr)")
    p.add_argument("--ovr", action="store_true", help="plain one-vs-rest over all classes (k = C)")
    p.add_argument("--s", type=float, default=1.0, help="logit scale inside the softplus (topk_ovr)")
    p.add_argument("--w", type=float, default=None,
                   help="weight of the OoD term (default: 1 topk_ovr, 9 entropy, 0.1 energy)")
    p.add_argument("--m-in", type=float, default=-25.0, help="inlier energy margin (energy)")
    p.add_argument("--m-out", type=float, default=-7.0, help="OoD energy margin (energy)")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (constant)")
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS, help="optimizer")
    p.add_argument("--weight-decay", type=float, default=0.0, help="weight decay")
    p.add_argument("--batch-size", type=int, default=8, help="frames per step and process")
    p.add_argument("--crop", type=lambda t: parse_pair(int, t, "--crop"), default=None,
                   help="random crop HEIGHT,WIDTH (default: whole frames)")
    p.add_argument("--scale", type=lambda t: parse_pair(float, t, "--scale"), default=(1.0, 1.0),
                   help="random rescale range LOW,HIGH")
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    p.add_argument("--shuffle-buffer", type=int, default=64, help="rows in the stream's shuffle buffer")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers per process")
    p.add_argument("--seed", type=int, default=0, help="seed of data order and augmentation")
    p.add_argument("--save-every", type=int, default=100, help="steps between resume checkpoints")
    p.add_argument("--log-every", type=int, default=10, help="steps between log lines")
    p.add_argument("--val-shards", nargs="*", default=(), help="held-out augmented-frame shards for validation")
    p.add_argument("--val-every", type=int, default=50, help="steps between validations")
    p.add_argument("--val-score", default="energy", choices=VAL_SCORES, help="anomaly score for validation")
    p.add_argument("--val-max-frames", type=int, default=None, help="validate on at most this many frames")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", default="auto", choices=AMP_MODES, help="autocast on CUDA")
    p.add_argument("--exclude-licences", default="", metavar="IDS",
                   help="skip frames with an object whose COCO licence id is in this list (e.g. 1,2,3: COCO's "
                        "NonCommercial licences; objects of unknown licence are skipped too)")
    p.add_argument("--categories", default=None, metavar="NAMES",
                   help="train only on frames whose pasted objects are all of these COCO categories (comma list)")
    p.add_argument("--allow-no-pastes", action="store_true",
                   help="train even when the shards hold no pasted pixel (refused by default)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt when it exists")
    p.add_argument("--cache-features", action="store_true",
                   help="compute the frozen body's features once per frame and train the head on them (the same "
                        "steps, much faster on a CPU); needs --no-flip, no --crop/--scale, no --val-shards, one "
                        "process")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    """Turn parsed arguments into a :class:`FinetuneConfig`."""
    loss = LossConfig(kind=args.loss, k=None if args.ovr else args.k, s=args.s, w=args.w, m_in=args.m_in,
                      m_out=args.m_out, inlier=args.inlier, inlier_weight=args.inlier_weight)
    return FinetuneConfig(
        shards=tuple(args.shards), checkpoint=args.checkpoint, out=args.out, arch=args.arch,
        num_classes=args.num_classes, head=args.head, loss=loss, steps=args.steps, lr=args.lr,
        optimizer=args.optimizer, weight_decay=args.weight_decay, batch_size=args.batch_size,
        crop=tuple(args.crop) if args.crop else None, scale=tuple(args.scale), flip=not args.no_flip,
        shuffle_buffer=args.shuffle_buffer, workers=args.workers, seed=args.seed, save_every=args.save_every,
        log_every=args.log_every, val_shards=tuple(args.val_shards or ()), val_every=args.val_every,
        val_score=args.val_score, val_max_frames=args.val_max_frames, device=args.device, amp=args.amp,
        resume=args.resume, progress=not args.no_progress, allow_no_pastes=args.allow_no_pastes,
        paste_filter=parse_paste_filter(args.exclude_licences, args.categories))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``stylepaste finetune`` (and ``python -m trainer.finetune`` under torchrun)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as err:
        parser.error(str(err))
    if args.cache_features:
        try:
            check_cacheable(cfg)
        except ValueError as err:
            parser.error(f"--cache-features: {err}")
        result = run_cached(cfg)
        print(f"finetune: cached body features of {len(cfg.shards)} shard source(s) in "
              f"{result['seconds']['features']:.1f} s, head trained in {result['seconds']['train']:.1f} s",
              file=sys.stderr)
    else:
        result = run(cfg)
    if result["rank"] == 0:
        best = result["best"]
        extra = f", best pasted-pixel AP {best['ap']:.4f} at step {best['step']}" if best else ""
        print(f"finetune: {result['step']} steps, head in {join_url(cfg.out, 'head.pt')}{extra}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
