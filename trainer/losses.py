"""Training losses: cross-entropy on inliers plus an out-of-distribution term on pasted pixels (label 254).

All functions take raw logits [B, C, H, W] and a label map [B, H, W] (trainIds 0..C-1, ``OOD`` = 254 for
pasted pixels, ``IGNORE`` = 255) and return a scalar. The total is ``L_in + w * L_ood``.

**Inlier term** ``L_in`` (``LossConfig.inlier``, weight β = ``inlier_weight``), over the inlier pixels I (a class
label) with logits λ_i, true class y_i and, for ``distill``, the frozen base model's logits λ°_i:

* ``distill`` (the default): ``L_in = CE + β/(C|I|) Σ_i ||λ_i - λ°_i||²``, cross-entropy plus MSE distillation of
  the inlier logits to the base model's. For head-only finetuning λ° comes from the original head on the same
  frozen features (:class:`trainer.heads.BaseHead`), so it costs one more head forward and no body pass.
* ``ce``: ``L_in = CE`` alone, as the poster writes the loss.
* ``true_bce``: ``L_in = CE + β/|I| Σ_i softplus(-λ_{i,y_i})``, a sigmoid "this class" target on the true class.
* ``ovr_bce``: ``L_in = CE + β/(C|I|) Σ_i Σ_c BCE(σ(λ_ic), [c = y_i])``, one-vs-rest BCE on every class.

Why an anchor: softmax cross-entropy is blind to adding one constant to all logits of a pixel
(``CE(λ + a·1) = CE(λ)``), and max logit and energy measure exactly that level. With CE alone the OoD term is free
to push the level down wherever features resemble the pastes (on the demo, 91 % of a CE-only head update was such
a common shift; the finetuned head flagged 96 % of the road). Every other inlier term here penalises a uniform
shift; ``distill`` penalises any departure from the base model, in both directions.

**OoD term** ``L_ood`` (``LossConfig.kind``):

* ``topk_ovr`` (ours, the default): for OoD pixels i with logits λ_i,
  ``L_ood = 1/(K |N_ood|) Σ_i Σ_{k ∈ topK(λ_i)} softplus(s λ_{i,k})`` — a one-vs-rest "not this class"
  target on the K largest logits of each pasted pixel (``softplus(sλ) = -log σ(-sλ)``). Defaults K=5, s=1,
  w=1. ``k = C`` (or ``k=None``) is plain one-vs-rest over all classes.
* ``entropy`` (Meta-OoD, Chan et al. 2021): cross-entropy of the softmax to the uniform distribution on OoD
  pixels, ``L_ood = mean_i -1/C Σ_c log softmax(λ_i)_c`` (entropy maximisation up to the constant log C).
  Meta-OoD writes the total as ``(1-λ) CE + λ L_ood`` with λ = 0.9, which is ``CE + w L_ood`` with
  ``w = λ/(1-λ) = 9`` and the learning rate scaled by ``1-λ``; the default ``w`` for this kind is 9.
* ``energy`` (energy margin, Liu et al. 2020, as used for segmentation by PEBAL): with the free energy
  ``E(λ) = -logsumexp(λ)``, ``L_ood = mean_in relu(E - m_in)^2 + mean_ood relu(m_out - E)^2`` (squared hinges
  that push inlier energies below ``m_in`` and OoD energies above ``m_out``). Liu et al.'s defaults:
  ``m_in = -25``, ``m_out = -7``, ``w = 0.1``. The margins are in logit units: set them from the base model's
  energy distribution when its logits are on another scale.

Cross-entropy ignores 255 and 254 and is averaged over the remaining pixels; every term is 0 (and still part of
the autograd graph) when it has no pixels, so a batch without pasted objects trains the inliers only.
The total is ``CE + β·A + w·L_ood`` where A is the anchor part of ``L_in`` (0 for ``ce``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from evaluation.scores import energy
from schemas.labels import IGNORE, OOD

LOSS_KINDS: tuple[str, ...] = ("topk_ovr", "entropy", "energy")
INLIER_KINDS: tuple[str, ...] = ("distill", "ce", "true_bce", "ovr_bce")
"""Inlier terms; the first is the default (chosen on the validation world, see the README's study section)."""

#: Default OoD weight ``w`` of each loss kind (``LossConfig.w = None`` picks it).
DEFAULT_WEIGHTS: dict[str, float] = {"topk_ovr": 1.0, "entropy": 9.0, "energy": 0.1}


@dataclass(frozen=True)
class LossConfig:
    """Settings of the training loss.

    Attributes:
        kind: ``"topk_ovr"`` (default), ``"entropy"`` (Meta-OoD) or ``"energy"`` (energy margin).
        k: Classes per OoD pixel in ``topk_ovr``; ``None`` means all classes (plain one-vs-rest).
        s: Logit scale inside the softplus of ``topk_ovr``.
        w: Weight of the OoD term; ``None`` picks :data:`DEFAULT_WEIGHTS` for the kind.
        m_in: Energy margin of inliers (``energy``).
        m_out: Energy margin of OoD pixels (``energy``).
        inlier: Inlier term, one of :data:`INLIER_KINDS`.
        inlier_weight: Weight β of the inlier anchor (unused for ``ce``).
    """

    kind: str = "topk_ovr"
    k: int | None = 5
    s: float = 1.0
    w: float | None = None
    m_in: float = -25.0
    m_out: float = -7.0
    inlier: str = "distill"
    inlier_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in LOSS_KINDS:
            raise ValueError(f"loss kind must be one of {LOSS_KINDS}, got {self.kind!r}")
        if self.inlier not in INLIER_KINDS:
            raise ValueError(f"inlier term must be one of {INLIER_KINDS}, got {self.inlier!r}")
        if not (self.inlier_weight >= 0 and math.isfinite(self.inlier_weight)):
            raise ValueError(f"inlier_weight must be a finite number >= 0, got {self.inlier_weight}")
        if self.k is not None and int(self.k) < 1:
            raise ValueError(f"k must be >= 1 (or None for all classes), got {self.k}")
        if not self.s > 0:
            raise ValueError(f"s must be > 0, got {self.s}")
        if self.w is not None and self.w < 0:
            raise ValueError(f"w must be >= 0, got {self.w}")

    @property
    def needs_base(self) -> bool:
        """Whether the loss needs the frozen base model's logits (``distill``)."""
        return self.inlier == "distill"

    @property
    def weight(self) -> float:
        """The effective OoD weight ``w``."""
        return DEFAULT_WEIGHTS[self.kind] if self.w is None else float(self.w)


def _check(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.dim() != 4:
        raise ValueError(f"logits must be [B, C, H, W], got shape {tuple(logits.shape)}")
    if labels.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"labels must be [B, H, W] = {(logits.shape[0], *logits.shape[2:])} to match the logits, "
                         f"got {tuple(labels.shape)}")


def _pixels(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits of the masked pixels [N, C]."""
    return logits.permute(0, 2, 3, 1)[mask]


def _zero(logits: torch.Tensor) -> torch.Tensor:
    return logits.sum() * 0.0


def inlier_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over pixels with a class label (not 254, not 255).

    Args:
        logits: [B, C, H, W].
        labels: [B, H, W] integer labels.

    Returns:
        Scalar; 0 when no pixel has a class label.

    Raises:
        ValueError: For mismatched shapes, or labels that are neither a class, 254 nor 255.
    """
    _check(logits, labels)
    labels = labels.long()
    c = logits.shape[1]
    valid = labels < c
    bad = ~valid & (labels != OOD) & (labels != IGNORE)
    if bool(bad.any()):
        raise ValueError(f"labels must be 0..{c - 1}, {OOD} or {IGNORE}; found {int(labels[bad][0])}")
    n = valid.sum().clamp_min(1)  # no host sync; the sum is 0 when no pixel is valid
    target = torch.where(valid, labels, torch.full_like(labels, IGNORE))
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE, reduction="sum") / n


def topk_ovr_loss(logits: torch.Tensor, labels: torch.Tensor, k: int | None = 5, s: float = 1.0) -> torch.Tensor:
    """Top-k one-vs-rest loss on OoD pixels: ``1/(K|N|) Σ_i Σ_{k∈topK(λ_i)} softplus(s λ_{i,k})``.

    Args:
        logits: [B, C, H, W].
        labels: [B, H, W]; pixels equal to 254 are the OoD set N.
        k: K; ``None`` or ``k >= C`` uses all C classes (plain one-vs-rest).
        s: Logit scale.

    Returns:
        Scalar; 0 when there is no OoD pixel.
    """
    _check(logits, labels)
    ood = _pixels(logits, labels == OOD).float()
    if ood.shape[0] == 0:
        return _zero(logits)
    c = logits.shape[1]
    kk = c if k is None else min(int(k), c)
    top = ood if kk == c else ood.topk(kk, dim=1).values
    return F.softplus(s * top).sum() / (kk * ood.shape[0])


def entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Meta-OoD term: cross-entropy to the uniform distribution on OoD pixels, ``mean_i -mean_c log p_ic``.

    Args:
        logits: [B, C, H, W].
        labels: [B, H, W]; 254 marks OoD pixels.

    Returns:
        Scalar (at least log C when there are OoD pixels); 0 when there is none.
    """
    _check(logits, labels)
    ood = _pixels(logits, labels == OOD).float()
    if ood.shape[0] == 0:
        return _zero(logits)
    return -F.log_softmax(ood, dim=1).mean()


def energy_margin_loss(logits: torch.Tensor, labels: torch.Tensor, m_in: float = -25.0,
                       m_out: float = -7.0) -> torch.Tensor:
    """Energy margin term: ``mean_in relu(E - m_in)^2 + mean_ood relu(m_out - E)^2``.

    Args:
        logits: [B, C, H, W].
        labels: [B, H, W]; class labels are inliers, 254 is OoD, 255 is ignored.
        m_in: Inlier energy margin.
        m_out: OoD energy margin.

    Returns:
        Scalar; a side without pixels contributes 0.
    """
    _check(logits, labels)
    e = energy(logits)
    labels = labels.long()
    inl = labels < logits.shape[1]
    ood = labels == OOD
    loss = _zero(logits)
    if bool(inl.any()):
        loss = loss + F.relu(e[inl] - m_in).pow(2).mean()
    if bool(ood.any()):
        loss = loss + F.relu(m_out - e[ood]).pow(2).mean()
    return loss


def _inliers(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mask [B, H, W] of pixels with a class label (validated by :func:`inlier_cross_entropy`)."""
    return labels.long() < logits.shape[1]


def _inlier_logits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 logits [N, C] and true classes [N] of the inlier pixels (shapes checked)."""
    _check(logits, labels)
    mask = _inliers(logits, labels)
    return _pixels(logits, mask).float(), labels.long()[mask]


def distill_loss(logits: torch.Tensor, labels: torch.Tensor, base_logits: torch.Tensor) -> torch.Tensor:
    """Anchor of ``distill``: ``1/(C|I|) Σ_{i∈I} ||λ_i - λ°_i||²`` over inlier pixels.

    Args:
        logits: [B, C, H, W] of the model being trained.
        labels: [B, H, W]; class labels mark the inlier set I.
        base_logits: [B, C, H, W] of the frozen base model (no gradient flows into them).

    Returns:
        Scalar; 0 when there is no inlier pixel.

    Raises:
        ValueError: If ``base_logits`` has another shape than ``logits``.
    """
    _check(logits, labels)
    if base_logits.shape != logits.shape:
        raise ValueError(f"base logits must have the logits' shape {tuple(logits.shape)}, got "
                         f"{tuple(base_logits.shape)}")
    mask = _inliers(logits, labels)
    n = mask.sum()
    # a masked sum over [B, H, W] instead of gathering the inlier pixels: the same value without two index copies
    # and their backward (the step's largest cost on CPU)
    sq = (logits.float() - base_logits.detach().float()).square().sum(1)
    return torch.where(mask, sq, torch.zeros((), dtype=sq.dtype)).sum() / (n.clamp_min(1) * logits.shape[1])


def true_class_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Anchor of ``true_bce``: ``1/|I| Σ_{i∈I} softplus(-λ_{i,y_i})`` (= -log σ(λ_{i,y_i})).

    Args:
        logits: [B, C, H, W].
        labels: [B, H, W] integer labels.

    Returns:
        Scalar; 0 when there is no inlier pixel.
    """
    lam, y = _inlier_logits(logits, labels)
    if lam.shape[0] == 0:
        return _zero(logits)
    return F.softplus(-lam.gather(1, y[:, None])).mean()


def ovr_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Anchor of ``ovr_bce``: one-vs-rest BCE on every class, ``1/(C|I|) Σ_i Σ_c BCE(σ(λ_ic), [c = y_i])``.

    Args:
        logits: [B, C, H, W].
        labels: [B, H, W] integer labels.

    Returns:
        Scalar; 0 when there is no inlier pixel.
    """
    lam, y = _inlier_logits(logits, labels)
    if lam.shape[0] == 0:
        return _zero(logits)
    target = F.one_hot(y, logits.shape[1]).float()
    return F.binary_cross_entropy_with_logits(lam, target)


def inlier_anchor(logits: torch.Tensor, labels: torch.Tensor, cfg: LossConfig,
                  base_logits: torch.Tensor | None = None) -> torch.Tensor:
    """The anchor part A of ``L_in = CE + β A`` for ``cfg.inlier`` (unweighted; 0 for ``ce``).

    Raises:
        ValueError: ``distill`` without ``base_logits``.
    """
    if cfg.inlier == "ce":
        return _zero(logits)
    if cfg.inlier == "distill":
        if base_logits is None:
            raise ValueError("the distill inlier term needs the frozen base model's logits (base_logits); "
                             "compute them with trainer.heads.BaseHead")
        return distill_loss(logits, labels, base_logits)
    if cfg.inlier == "true_bce":
        return true_class_bce(logits, labels)
    return ovr_bce(logits, labels)


def ood_loss(logits: torch.Tensor, labels: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """The OoD term ``L_ood`` of ``cfg.kind`` (unweighted)."""
    if cfg.kind == "topk_ovr":
        return topk_ovr_loss(logits, labels, cfg.k, cfg.s)
    if cfg.kind == "entropy":
        return entropy_loss(logits, labels)
    return energy_margin_loss(logits, labels, cfg.m_in, cfg.m_out)


def total_loss(logits: torch.Tensor, labels: torch.Tensor, cfg: LossConfig,
               base_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``CE + β A + w L_ood`` (see the module docstring).

    Args:
        logits: [B, C, H, W] raw logits (any float dtype; computed in float32).
        labels: [B, H, W] integer labels (uint8 or int64).
        cfg: Loss settings.
        base_logits: [B, C, H, W] logits of the frozen base model; needed when ``cfg.needs_base``.

    Returns:
        ``(loss, parts)``: the scalar loss and ``{"ce", "anchor", "ood", "loss"}`` as detached scalars for logging.

    Raises:
        ValueError: Bad shapes or labels, or a missing ``base_logits``.
    """
    ce = inlier_cross_entropy(logits, labels)
    anchor = inlier_anchor(logits, labels, cfg, base_logits)
    lo = ood_loss(logits, labels, cfg)
    loss = ce + cfg.inlier_weight * anchor + cfg.weight * lo
    return loss, {"ce": ce.detach(), "anchor": anchor.detach(), "ood": lo.detach(), "loss": loss.detach()}
