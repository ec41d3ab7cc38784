"""``stylepaste pretrain``: train a segmentation model from scratch on a Cityscapes-layout train split.

Cross-entropy (ignore 255) on random scale / crop / flip of the train frames, AdamW with a linear warm-up and a
polynomial decay, then the val mIoU (19 classes) on whole frames. With ``--class-balance p > 0`` the
cross-entropy weighs class c by ``w_c = (median_f / f_c)^p`` (f_c: the class's pixel frequency in the train
labels, median over the classes that occur; normalised so that ``Σ_c f_c w_c = 1``, capped at
:data:`MAX_CLASS_WEIGHT`), which lets thin and rare classes (poles, lights, people, riders, bicycles) be
learned in a short CPU run. ``--val-every N`` logs the val mIoU every N steps (model selection happens on the
val split only). The run is reproducible: the
weights come from ``torch.manual_seed(seed)``, the frame order of each epoch from
``rng_for(seed, ("order", epoch))`` and each sample's augmentation from
``rng_for(seed, ("augment", epoch, frame_id))``, so neither depends on the number of ``DataLoader`` workers.
(Bit-identical weights across runs also need the same torch build and thread count.)

Writes to ``--out``: ``model.pt`` (``save_checkpoint`` format, loads with
:func:`trainer.checkpoint.load_checkpoint`; its metadata holds the settings and the val metrics),
``metrics.json`` (val mIoU and per-class IoU) and ``train_log.jsonl``.

This is how the demo's ``small`` model is made from the synthetic city (``stylepaste world``); the README
records the settings, the time and the val mIoU of the committed one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from schemas.cityscapes import CityscapesFrame, list_frames, read_image, read_train_ids
from schemas.labels import IGNORE, NUM_CLASSES
from schemas.manifest import join_url
from schemas.rng import rng_for
from schemas.runtime import resolve_device
from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.data import Augment, augment_frame, parse_pair
from evaluation.metrics import SegmentationMetrics
from trainer.models import ARCHS, build_model, normalize
from trainer.training import optimizer_step


@dataclass(frozen=True)
class PretrainConfig:
    """Settings of ``stylepaste pretrain``.

    Attributes:
        cityscapes: Root of the Cityscapes layout (local path or fsspec URL).
        out: Output folder URL.
        arch: Architecture (``small`` for the demo).
        num_classes: Classes (19 trainIds).
        train_split: Split to train on.
        val_split: Split to evaluate on (empty: no evaluation).
        steps: Optimizer steps.
        batch_size: Crops per step.
        crop: Random crop (height, width).
        scale: Random rescale range (low, high).
        flip: Random horizontal flips.
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        warmup: Linear warm-up steps.
        power: Exponent of the polynomial decay after the warm-up.
        class_balance: Exponent p of the class weights (0: plain cross-entropy).
        init: Checkpoint to start from instead of the random initialisation (``None``: from scratch); its weights
            are loaded, the optimizer and schedule start afresh.
        seed: Seed of weights, data order and augmentation.
        workers: ``DataLoader`` workers.
        threads: torch CPU threads (``None``: torch's default).
        log_every: Steps between log lines.
        val_every: Steps between val mIoU evaluations logged to ``train_log.jsonl`` (``None``: only at the end).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        progress: Show a progress bar.
    """

    cityscapes: str
    out: str
    arch: str = "small"
    num_classes: int = NUM_CLASSES
    train_split: str = "train"
    val_split: str = "val"
    steps: int = 600
    batch_size: int = 8
    crop: tuple[int, int] = (256, 256)
    scale: tuple[float, float] = (0.75, 1.5)
    flip: bool = True
    lr: float = 4e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    power: float = 0.9
    class_balance: float = 0.0
    init: str | None = None
    seed: int = 0
    workers: int = 2
    threads: int | None = None
    log_every: int = 25
    val_every: int | None = None
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        for name in ("steps", "batch_size", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0 or self.warmup < 0:
            raise ValueError(f"workers and warmup must be >= 0, got {self.workers}, {self.warmup}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.class_balance <= 1.0:
            raise ValueError(f"class_balance must be in [0, 1], got {self.class_balance}")
        if self.val_every is not None and self.val_every < 1:
            raise ValueError(f"val_every must be >= 1 or None, got {self.val_every}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads}")
        Augment(scale=self.scale, crop=self.crop, flip=self.flip)  # validates

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON-able values."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


class EpochSampler(Sampler):
    """Endless ``(index, epoch)`` pairs: each epoch is ``rng_for(seed, ("order", epoch)).permutation(n)``.

    Args:
        n: Number of frames.
        seed: Seed.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = int(n), int(seed)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = 0
        while True:
            for i in rng_for(self.seed, ("order", epoch)).permutation(self.n):
                yield int(i), epoch
            epoch += 1


class CityscapesCrops(Dataset):
    """Augmented crops of Cityscapes-layout frames, indexed by ``(frame index, epoch)``.

    Args:
        frames: The frames (from :func:`schemas.cityscapes.list_frames`).
        augment: Augmentation.
        seed: Seed of the augmentation.
    """

    def __init__(self, frames: list[CityscapesFrame], augment: Augment, seed: int) -> None:
        self.frames, self.augment, self.seed = frames, augment, int(seed)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, epoch = key
        frame = self.frames[index]
        image, label = read_image(frame), read_train_ids(frame)
        rng = rng_for(self.seed, ("augment", int(epoch), frame.frame_id))
        image, label = augment_frame(image, label, rng, self.augment)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), torch.from_numpy(label)


MAX_CLASS_WEIGHT: float = 20.0
"""Cap of a class weight of :func:`class_weights`."""


def class_weights(frames: list[CityscapesFrame], num_classes: int, power: float) -> torch.Tensor:
    """Cross-entropy class weights ``w_c = (median_f / f_c)^power`` from the train labels' pixel frequencies.

    Args:
        frames: Train frames (their ``labelTrainIds`` are read).
        num_classes: Classes C.
        power: Exponent p (0 gives all ones).

    Returns:
        Float32 [C]: normalised so that ``Σ_c f_c w_c = 1`` (the loss keeps its scale), capped at
        :data:`MAX_CLASS_WEIGHT`; classes that never occur get weight 1 (they contribute nothing).

    Raises:
        ValueError: If no frame has a labelled pixel.
    """
    counts = np.zeros(num_classes, dtype=np.int64)
    for frame in frames:
        label = read_train_ids(frame)
        counts += np.bincount(label[label < num_classes].ravel(), minlength=num_classes)[:num_classes]
    if counts.sum() == 0:
        raise ValueError(f"no labelled pixel in the {len(frames)} train frames; cannot weigh classes")
    freq = counts / counts.sum()
    present = freq > 0
    w = np.ones(num_classes, dtype=np.float64)
    w[present] = (np.median(freq[present]) / freq[present]) ** float(power)
    w[present] /= float((freq[present] * w[present]).sum())
    return torch.from_numpy(np.minimum(w, MAX_CLASS_WEIGHT).astype(np.float32))


def _write_val(log: Any, step: int, miou: float) -> None:
    """One ``val`` line of ``train_log.jsonl``."""
    log.write((json.dumps({"event": "val", "step": step, "miou": miou}) + "\n").encode())
    log.flush()


def lr_factor(step: int, cfg: PretrainConfig) -> float:
    """Learning-rate multiplier at ``step`` (0-based): linear warm-up, then ``(1 - t)^power``."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return max(1.0 - t, 0.0) ** cfg.power


@torch.no_grad()
def evaluate_miou(model: torch.nn.Module, frames: list[CityscapesFrame], device: torch.device,
                  num_classes: int = NUM_CLASSES) -> dict[str, Any]:
    """mIoU of a model on whole frames (batch 1).

    Args:
        model: The model (evaluated in ``eval()``).
        frames: Frames with ground truth.
        device: Device of the model.
        num_classes: Evaluated classes.

    Returns:
        :meth:`evaluation.metrics.SegmentationMetrics.compute` plus ``frames``.
    """
    was = model.training
    model.eval()
    metric = SegmentationMetrics(num_classes)
    for frame in frames:
        image = torch.from_numpy(np.ascontiguousarray(read_image(frame).transpose(2, 0, 1)))[None].to(device)
        target = torch.from_numpy(read_train_ids(frame))[None]
        metric.update(model(normalize(image)).argmax(1).cpu(), target)
    model.train(was)
    return {**metric.compute(), "frames": len(frames)}


def run(cfg: PretrainConfig) -> dict[str, Any]:
    """Train and evaluate (see the module docstring).

    Returns:
        ``{"model", "val"}``: the checkpoint URL and the val metrics (``None`` without a val split).
    """
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    train = list_frames(cfg.cityscapes, cfg.train_split)
    val = list_frames(cfg.cityscapes, cfg.val_split) if cfg.val_split else []
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, cfg.num_classes)
    if cfg.init:
        load_checkpoint(model, cfg.init)
    model = model.to(device)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    weight = class_weights(train, cfg.num_classes, cfg.class_balance).to(device) if cfg.class_balance > 0 else None
    data = CityscapesCrops(train, Augment(cfg.scale, cfg.crop, cfg.flip), cfg.seed)
    kw: dict[str, Any] = {"persistent_workers": True, "prefetch_factor": 4} if cfg.workers > 0 else {}
    loader = DataLoader(data, batch_size=cfg.batch_size, sampler=EpochSampler(len(train), cfg.seed),
                        num_workers=cfg.workers, drop_last=True, pin_memory=device.type == "cuda", **kw)
    log_url = join_url(cfg.out, "train_log.jsonl")
    fs, log_path = fsspec.core.url_to_fs(log_url)
    fs.makedirs(fs._parent(log_path), exist_ok=True)
    log = fs.open(log_path, "wb")
    bar = tqdm(total=cfg.steps, disable=not cfg.progress, desc="pretrain", unit="step", dynamic_ncols=True)
    t0, window, loss_sum = time.perf_counter(), 0, 0.0
    batches = iter(loader)
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(step, cfg)
        image, label = next(batches)
        x = normalize(image.to(device, non_blocking=True))
        y = label.to(device, non_blocking=True).long()
        loss = F.cross_entropy(model(x), y, weight=weight, ignore_index=IGNORE)
        optimizer_step(loss, opt)
        loss_sum += float(loss.detach())
        window += 1
        bar.update(1)
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            dt = time.perf_counter() - t0
            rec = {"event": "step", "step": step + 1, "loss": loss_sum / window, "lr": opt.param_groups[0]["lr"],
                   "images_per_s": window * cfg.batch_size / max(dt, 1e-9)}
            log.write((json.dumps(rec) + "\n").encode())
            log.flush()
            bar.set_postfix(loss=f"{rec['loss']:.3f}", img_s=f"{rec['images_per_s']:.1f}")
            t0, window, loss_sum = time.perf_counter(), 0, 0.0
        if val and cfg.val_every and (step + 1) % cfg.val_every == 0 and step + 1 < cfg.steps:
            t_val = time.perf_counter()
            miou = evaluate_miou(model, val, device, cfg.num_classes)["miou"]
            _write_val(log, step + 1, miou)
            bar.write(f"step {step + 1}: val mIoU {100 * miou:.1f}")
            t0 += time.perf_counter() - t_val
    bar.close()
    del batches
    metrics = evaluate_miou(model, val, device, cfg.num_classes) if val else None
    if metrics is not None:
        _write_val(log, cfg.steps, metrics["miou"])
    log.close()
    model_url = join_url(cfg.out, "model.pt")
    save_checkpoint(model.cpu(), model_url, metadata={"config": cfg.to_json(), "val": metrics,
                                                      "train_frames": len(train)})
    with fsspec.open(join_url(cfg.out, "metrics.json"), "w") as f:
        json.dump({"val": metrics, "config": cfg.to_json()}, f, indent=2, allow_nan=True)
    return {"model": model_url, "val": metrics}


def build_parser() -> argparse.ArgumentParser:
    """The ``stylepaste pretrain`` argument parser."""
    d = PretrainConfig(cityscapes="", out="")
    p = argparse.ArgumentParser(
        prog="stylepaste pretrain",
        description="Train a segmentation model from scratch with plain cross-entropy on a Cityscapes-layout "
                    "train split (e.g. the synthetic city of `stylepaste world`), then report the val mIoU.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cityscapes", required=True, help="Cityscapes layout root (e.g. WORLD/cityscapes)")
    p.add_argument("--out", required=True, help="output folder URL")
    p.add_argument("--arch", default=d.arch, choices=ARCHS, help="architecture")
    p.add_argument("--train-split", default=d.train_split, help="split to train on")
    p.add_argument("--val-split", default=d.val_split, help="split to evaluate on ('' for none)")
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="crops per step")
    p.add_argument("--crop", type=lambda t: parse_pair(int, t, "--crop"), default=d.crop, help="crop HEIGHT,WIDTH")
    p.add_argument("--scale", type=lambda t: parse_pair(float, t, "--scale"), default=d.scale,
                   help="random rescale range LOW,HIGH")
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    p.add_argument("--lr", type=float, default=d.lr, help="peak AdamW learning rate")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    p.add_argument("--warmup", type=int, default=d.warmup, help="linear warm-up steps")
    p.add_argument("--class-balance", type=float, default=d.class_balance,
                   help="exponent p of the class weights (median_f / f_c)^p of the cross-entropy (0: plain)")
    p.add_argument("--val-every", type=int, default=None, help="steps between logged val mIoU evaluations")
    p.add_argument("--init", default=None, help="checkpoint to start from (weights only; default: from scratch)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of weights, data order and augmentation")
    p.add_argument("--workers", type=int, default=d.workers, help="DataLoader workers")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads of the training process")
    p.add_argument("--log-every", type=int, default=d.log_every, help="steps between log lines")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``stylepaste pretrain``."""
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        cfg = PretrainConfig(
            cityscapes=a.cityscapes, out=a.out, arch=a.arch, train_split=a.train_split, val_split=a.val_split,
            steps=a.steps, batch_size=a.batch_size, crop=tuple(a.crop), scale=tuple(a.scale), flip=not a.no_flip,
            lr=a.lr, weight_decay=a.weight_decay, warmup=a.warmup, class_balance=a.class_balance, init=a.init,
            seed=a.seed, workers=a.workers,
            threads=a.threads, log_every=a.log_every, val_every=a.val_every, device=a.device, progress=not a.no_progress)
    except ValueError as err:
        parser.error(str(err))
    result = run(cfg)
    val = result["val"]
    miou = f", val mIoU {100 * val['miou']:.1f} on {val['frames']} frames" if val else ""
    print(f"pretrain: {cfg.steps} steps, model in {result['model']}{miou}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
