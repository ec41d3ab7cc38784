"""What every head-training path shares: the finetune settings, the optimizer, the log and the checkpoint writer.

``stylepaste finetune`` (:mod:`trainer.finetune`, streaming the shards) and the cached-feature path
(:mod:`trainer.cached`, used by ``--cache-features``, the demo and the study) both build their optimizer, write
their log and save their head here; the loss of a step is :func:`trainer.heads.head_loss`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import fsspec
import torch

from schemas.labels import NUM_CLASSES
from schemas.manifest import join_url
from schemas.storage import remove_if_empty
from trainer.checkpoint import save_checkpoint
from trainer.data import Augment
from trainer.heads import load_head_state_dict
from trainer.losses import LossConfig
from trainer.models import ARCHS, HEADS
from trainer.subsets import PasteFilter

STATE_FORMAT = "stylepaste-finetune/1"
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
AMP_MODES: tuple[str, ...] = ("auto", "off", "bf16", "fp16")
VAL_SCORES: tuple[str, ...] = ("energy", "max_logit")

#: Settings that may change between an interrupted run and its ``--resume`` without breaking exactness of the
#: training itself (they only affect logging, validation, files and the stopping point).
RESUMABLE_CHANGES: frozenset[str] = frozenset({
    "steps", "resume", "progress", "save_every", "log_every", "val_every", "val_shards", "val_score",
    "val_max_frames", "device", "amp", "out", "allow_no_pastes",
})


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of ``stylepaste finetune``.

    Attributes:
        shards: Augmented-frame shard URLs (folders with a manifest, files or globs).
        checkpoint: URL of the base model's checkpoint.
        out: Output folder URL.
        arch: ``wrn38``, ``r101`` or ``small``.
        num_classes: Classes of the base model.
        head: ``classifier`` (the final 1x1 conv) or ``final`` (the whole final block).
        loss: Loss settings.
        steps: Total optimizer steps.
        lr: Learning rate (constant).
        optimizer: ``adam`` or ``sgd`` (momentum 0.9).
        weight_decay: Weight decay.
        batch_size: Frames per step and rank.
        crop: Random crop (height, width), or ``None`` for whole frames.
        scale: Random rescale range (low, high).
        flip: Random horizontal flips.
        shuffle_buffer: Rows in the stream's shuffle buffer.
        workers: ``DataLoader`` workers per rank.
        seed: Seed of the data order and augmentation.
        save_every: Steps between resume checkpoints.
        log_every: Steps between log lines.
        val_shards: Held-out augmented-frame shards for validation (empty: no validation).
        val_every: Steps between validations.
        val_score: Anomaly score for validation: ``energy`` (-logsumexp) or ``max_logit`` (-max).
        val_max_frames: Use at most this many validation frames (``None``: all).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        amp: ``auto`` (bf16 on CUDA when supported, else fp16; off on CPU), ``off``, ``bf16`` or ``fp16``.
        resume: Continue from ``out/last.pt`` when it exists.
        progress: Show a progress bar (rank 0).
        allow_no_pastes: Train on shards without a single pasted pixel (refused by default: the OoD term would
            never act).
        paste_filter: Frames to skip by their pasted objects' licences or categories
            (:class:`trainer.data.PasteFilter`); the counts kept / skipped are recorded with the checkpoint.
    """

    shards: tuple[str, ...]
    checkpoint: str
    out: str
    arch: str = "wrn38"
    num_classes: int = NUM_CLASSES
    head: str = "classifier"
    loss: LossConfig = field(default_factory=LossConfig)
    steps: int = 200
    lr: float = 1e-4
    optimizer: str = "adam"
    weight_decay: float = 0.0
    batch_size: int = 8
    crop: tuple[int, int] | None = None
    scale: tuple[float, float] = (1.0, 1.0)
    flip: bool = True
    shuffle_buffer: int = 64
    workers: int = 2
    seed: int = 0
    save_every: int = 100
    log_every: int = 10
    val_shards: tuple[str, ...] = ()
    val_every: int = 50
    val_score: str = "energy"
    val_max_frames: int | None = None
    device: str = "auto"
    amp: str = "auto"
    resume: bool = False
    progress: bool = True
    allow_no_pastes: bool = False
    paste_filter: PasteFilter = field(default_factory=PasteFilter)

    def __post_init__(self) -> None:
        if not self.shards:
            raise ValueError("shards: give at least one augmented-frame shard URL")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.val_score not in VAL_SCORES:
            raise ValueError(f"val_score must be one of {VAL_SCORES}, got {self.val_score!r}")
        for name in ("steps", "batch_size", "save_every", "log_every", "val_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        Augment(scale=self.scale, crop=self.crop, flip=self.flip)  # validates

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON-able values (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _amp_dtype(cfg: FinetuneConfig, device: torch.device) -> torch.dtype | None:
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return None
    if cfg.amp == "fp16":
        return torch.float16
    if cfg.amp == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def make_optimizer(cfg: FinetuneConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer of ``cfg`` (Adam, or SGD with momentum 0.9) over the head's parameters."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def _sha256(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def write_log(url: str, record: dict[str, Any], *, new: bool = False) -> None:
    """Append one JSON line to ``train_log.jsonl`` (``new``: start the file afresh)."""
    fs, path = fsspec.core.url_to_fs(url)
    if new:
        fs.makedirs(fs._parent(path), exist_ok=True)
    mode = "ab" if fs.exists(path) and not new else "wb"
    with fs.open(path, mode) as f:
        f.write((json.dumps(record, sort_keys=True) + "\n").encode())


def save_finetuned(model: torch.nn.Module, cfg: FinetuneConfig, head: dict[str, torch.Tensor], step: int,
                   steps: int, best: dict[str, Any] | None, filter_counts: dict[str, int] | None = None) -> str:
    """Write ``head.pt`` (the head's tensors) and ``model.pt`` (the model with that head) to ``cfg.out``.

    Args:
        model: The model; its head is set to ``head`` for the ``model.pt`` file and left so.
        cfg: The run's settings (recorded in the metadata).
        head: The head's state (:func:`trainer.heads.head_state_dict`) to save.
        step: Step at which ``head`` was taken.
        steps: Steps run.
        best: Best validation result, or ``None``.
        filter_counts: Frames kept and skipped by ``cfg.paste_filter`` (recorded in the metadata).

    Returns:
        The SHA-256 of ``head``.
    """
    meta = {"head": cfg.head, "step": step, "steps": steps, "base_checkpoint": cfg.checkpoint, "best": best,
            "config": cfg.to_json(), "paste_filter": {**dataclasses.asdict(cfg.paste_filter),
                                                      "frames": filter_counts}}
    save_checkpoint(head, join_url(cfg.out, "head.pt"), metadata=meta, arch=cfg.arch, num_classes=cfg.num_classes)
    load_head_state_dict(model, cfg.head, head)
    save_checkpoint(model, join_url(cfg.out, "model.pt"), metadata=meta, arch=cfg.arch,
                    num_classes=cfg.num_classes)
    return _sha256(head)


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or weight; the run stops (its last checkpoint stays as it was)."""

    user_error = True


def check_finite_params(params: Iterable[torch.Tensor], what: str = "weights") -> None:
    """Raise :class:`NonFiniteError` if any tensor holds NaN or infinity (one reduction and one sync)."""
    params = [p for p in params]
    if not params:
        return
    bad = torch.stack([(~torch.isfinite(p.detach())).sum() for p in params]).sum()
    if int(bad):
        raise NonFiniteError(f"{int(bad)} non-finite {what} after the optimizer step (learning rate too high?)")


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler | None = None,
                   after_backward: Callable[[], None] | None = None, *, check: bool = True) -> None:
    """The one training step after the forward pass, shared by finetune, its cached path and pretrain.

    Clears the gradients, back-propagates ``loss`` (scaled when a gradient scaler is given), runs
    ``after_backward`` (e.g. averaging gradients over DDP ranks) and steps the optimizer (through the scaler).
    Then, with ``check``, stops on a non-finite loss or weight: training on NaN only writes NaN checkpoints.

    Args:
        loss: Scalar loss of this step.
        optimizer: The optimizer.
        scaler: fp16 gradient scaler, or ``None``.
        after_backward: Called between backward and step.
        check: Refuse a non-finite loss and check the trained weights after the step.

    Raises:
        NonFiniteError: On a non-finite loss (before any weight changes) or weight (after the step).
    """
    if check and not bool(torch.isfinite(loss.detach())):
        raise NonFiniteError(f"the loss is {float(loss.detach()):g}; the weights were not updated")
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()
    if after_backward is not None:
        after_backward()
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    if check:
        check_finite_params(p for group in optimizer.param_groups for p in group["params"])


def remove_partial_run(out_url: str) -> None:
    """After a failed run that created ``out_url``: remove what it wrote unless a resumable ``last.pt`` is there
    (then everything stays for ``--resume``)."""
    fs, out = fsspec.core.url_to_fs(out_url)
    if fs.exists(posixpath.join(out, "last.pt")):
        return
    for name in ("train_log.jsonl", "head.pt", "model.pt"):
        path = posixpath.join(out, name)
        if fs.exists(path):
            fs.rm(path)
    remove_if_empty(fs, out)
