"""Head-only finetuning: freeze everything but the named head, keep the frozen body in ``eval()``.

``freeze_all_but_head(model, head)`` is the one call a training loop needs before building its optimizer:

* every parameter outside the head gets ``requires_grad=False``;
* the body is put in ``eval()`` (frozen BatchNorm statistics, no WRN38 dropout, no batch-size-1 failure of the
  ASPP image-pooling BN) and *stays* there: the model's ``train(mode)`` is replaced on the instance so that it
  only switches the head's modules, whoever calls it (a training loop, a wrapper, ``DistributedDataParallel``);
* the returned list holds only the head's parameters, for the optimizer.

:func:`head_forward` computes the frozen body's features under ``torch.no_grad()`` (no activations kept for
backward) and runs only the head with autograd, which is what makes a head-only step cost little more than a
forward pass. It relies on the models' ``forward_features(x, head)`` / ``classify(feats, size, head)``
contract (``forward(x) == classify(forward_features(x), x.shape[-2:])``).

:class:`BaseHead` keeps a frozen copy of the head as it was before training, so that a loss can compare the
trained head's logits with the base model's on the same features (the ``distill`` inlier anchor) without a second
body pass; :func:`head_loss` is the one loss computation of every head-training loop (``stylepaste finetune``,
the study's cached path, the demo), from features to ``(loss, parts)``.
"""

from __future__ import annotations

import types
from collections.abc import Sequence

import torch
from torch import nn

from trainer.losses import LossConfig, total_loss
from trainer.models import HEADS, head_modules

_HEAD_ATTR = "_stylepaste_head"


def _head_only_train(self: nn.Module, mode: bool = True) -> nn.Module:
    """Replacement of ``nn.Module.train`` on a head-finetuned model: the body stays in ``eval()``."""
    if not isinstance(mode, bool):
        raise ValueError(f"training mode must be a bool, got {mode!r}")
    nn.Module.train(self, False)
    for module in head_modules(self, getattr(self, _HEAD_ATTR)).values():
        module.train(mode)
    return self


def freeze_all_but_head(model: nn.Module, head: str = "classifier") -> list[nn.Parameter]:
    """Freeze all but ``head``, keep the rest in ``eval()`` for good, and return the head's parameters.

    After this call ``model.train()`` puts only the head in training mode and ``model.eval()`` everything in
    evaluation mode; the frozen modules never leave ``eval()``.

    Args:
        model: A :class:`trainer.models.SegmentationModel` (it names its heads in ``head_names``).
        head: ``"classifier"`` (the final 1x1 conv: ``final.6`` for wrn38/small, ``final2.0`` for r101) or
            ``"final"`` (the whole final block).

    Returns:
        The head's parameters, all with ``requires_grad=True``, in module order. The head is in ``train()``.

    Raises:
        ValueError: For an unknown head, or a model that does not name its heads.
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; allowed: {', '.join(HEADS)}")
    if not hasattr(model, "head_names"):
        raise ValueError(f"{type(model).__name__} does not name its heads (no head_names attribute)")
    modules = head_modules(model, head)
    for p in model.parameters():
        p.requires_grad_(False)
    params: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in modules.values():
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                p.requires_grad_(True)
                params.append(p)
    object.__setattr__(model, _HEAD_ATTR, head)
    object.__setattr__(model, "train", types.MethodType(_head_only_train, model))
    model.train()
    return params


def head_state_dict(model: nn.Module, head: str) -> dict[str, torch.Tensor]:
    """The head's parameters and buffers under their full model keys (e.g. ``final.6.weight``).

    Args:
        model: The model.
        head: Head name.

    Returns:
        ``{model key: tensor}`` (detached clones on the CPU), a subset of ``model.state_dict()``.
    """
    out: dict[str, torch.Tensor] = {}
    for prefix, module in head_modules(model, head).items():
        for key, value in module.state_dict().items():
            out[f"{prefix}.{key}"] = value.detach().cpu().clone()
    return out


def load_head_state_dict(model: nn.Module, head: str, state: dict[str, torch.Tensor]) -> None:
    """Load :func:`head_state_dict` output back into ``model`` (exact key match).

    Raises:
        ValueError: If the keys differ from the head's, naming the missing and unexpected ones.
    """
    mine = set(head_state_dict(model, head))
    if set(state) != mine:
        raise ValueError(f"head {head!r} state keys differ: missing {sorted(mine - set(state))}, "
                         f"unexpected {sorted(set(state) - mine)}")
    full = model.state_dict()
    with torch.no_grad():
        for key, value in state.items():
            full[key].copy_(value)


def head_forward(model: nn.Module, x: torch.Tensor, head: str) -> torch.Tensor:
    """Logits with the frozen body run under ``no_grad`` and only ``head`` tracked by autograd.

    Args:
        model: A model prepared by :func:`freeze_all_but_head`.
        x: Normalised images [B, 3, H, W].
        head: The trained head.

    Returns:
        Logits [B, C, H, W]; gradients reach only the head's parameters.
    """
    with torch.no_grad():
        feats = model.forward_features(x, head)
    return model.classify(feats, x.shape[-2:], head)


class _Classify(nn.Module):
    """``model.classify(feats, size, head)`` as a module's ``forward``, for :func:`torch.func.functional_call`."""

    def __init__(self, model: nn.Module, head: str) -> None:
        super().__init__()
        self.model = model
        self.head = head

    def forward(self, feats: torch.Tensor, out_size: Sequence[int]) -> torch.Tensor:
        return self.model.classify(feats, out_size, self.head)


class BaseHead:
    """The model's head as it is now, frozen: the base model's logits from the frozen body's features.

    Build it right after loading the base checkpoint (before any training step, and before a resume file's head is
    loaded). Calling it runs ``model.classify`` with the saved head tensors in place of the live ones
    (:func:`torch.func.functional_call`) and the head's modules in ``eval()`` (the base model's inference: BN
    running statistics for ``--head final``), under ``no_grad``; the live head is not touched.

    Args:
        model: The model, on its device, with the base head loaded.
        head: The head that will be trained.
    """

    def __init__(self, model: nn.Module, head: str) -> None:
        self.head = head
        self._wrapper = _Classify(model, head)
        self._state = {f"model.{prefix}.{key}": value.detach().clone()
                       for prefix, module in head_modules(model, head).items()
                       for key, value in module.state_dict().items()}

    @torch.no_grad()
    def __call__(self, feats: torch.Tensor, out_size: Sequence[int]) -> torch.Tensor:
        """Base logits [B, C, H, W] of ``feats`` (from ``model.forward_features(x, head)``)."""
        if any(v.device != feats.device for v in self._state.values()):
            self._state = {k: v.to(feats.device) for k, v in self._state.items()}
        modules = list(head_modules(self._wrapper.model, self.head).values())
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        try:
            return torch.func.functional_call(self._wrapper, self._state, (feats, out_size))
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)


def head_loss(model: nn.Module, feats: torch.Tensor, out_size: Sequence[int], labels: torch.Tensor,
              loss: LossConfig, head: str, base: BaseHead | None = None
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one head-training batch: the head on frozen features, then :func:`trainer.losses.total_loss`.

    Args:
        model: A model prepared by :func:`freeze_all_but_head`.
        feats: ``model.forward_features(x, head)`` [B, C_f, h, w], computed without gradient.
        out_size: Logit size (H, W), the labels' size.
        labels: [B, H, W] integer labels.
        loss: Loss settings.
        head: The trained head.
        base: The frozen base head; required when ``loss.needs_base``.

    Returns:
        ``(loss, parts)`` of :func:`trainer.losses.total_loss`.

    Raises:
        ValueError: ``loss.needs_base`` without ``base``, or bad shapes / labels.
    """
    logits = model.classify(feats, out_size, head).float()
    base_logits = None
    if loss.needs_base:
        if base is None:
            raise ValueError(f"inlier term {loss.inlier!r} needs the frozen base head (BaseHead)")
        base_logits = base(feats, out_size).float()
    return total_loss(logits, labels, loss, base_logits)
