"""Losses equal explicit per-pixel computations; k = C is plain one-vs-rest."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.losses import (
    INLIER_KINDS,
    LossConfig,
    distill_loss,
    energy_margin_loss,
    entropy_loss,
    inlier_cross_entropy,
    ovr_bce,
    topk_ovr_loss,
    total_loss,
    true_class_bce,
)


def _data(seed: int = 0, c: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(2, c, 5, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (2, 5, 6), generator=g)
    labels[0, :2, :3] = 254
    labels[1, 4, :] = 254
    labels[1, 0, :2] = 255
    return logits, labels


def _pixels(logits, labels, keep):
    b, c, h, w = logits.shape
    for i in range(b):
        for y in range(h):
            for x in range(w):
                if keep(int(labels[i, y, x])):
                    yield [float(v) for v in logits[i, :, y, x]], int(labels[i, y, x])


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v)) if v < 30 else v


@pytest.mark.parametrize(("k", "s"), [(1, 1.0), (3, 1.0), (3, 2.5), (5, 0.5)])
def test_topk_ovr_equals_explicit_per_pixel_sum(k: int, s: float) -> None:
    logits, labels = _data()
    terms = []
    for lam, _ in _pixels(logits, labels, lambda v: v == 254):
        top = sorted(lam, reverse=True)[:k]
        terms.append(sum(_softplus(s * v) for v in top))
    expected = sum(terms) / (k * len(terms))
    assert topk_ovr_loss(logits, labels, k, s).item() == pytest.approx(expected, rel=1e-6)


def test_k_equal_to_classes_is_plain_one_vs_rest() -> None:
    logits, labels = _data(1)
    c = logits.shape[1]
    ood = logits.permute(0, 2, 3, 1)[labels == 254]
    plain = -torch.log(1 - torch.sigmoid(2.0 * ood)).mean()  # BCE to "not this class" on every class
    assert topk_ovr_loss(logits, labels, c, 2.0).item() == pytest.approx(plain.item(), rel=1e-6)
    assert topk_ovr_loss(logits, labels, None, 2.0).item() == pytest.approx(plain.item(), rel=1e-6)
    assert topk_ovr_loss(logits, labels, 5, 2.0).item() != pytest.approx(plain.item(), rel=1e-3)


def test_cross_entropy_only_on_inliers() -> None:
    logits, labels = _data(2)
    terms = []
    for lam, t in _pixels(logits, labels, lambda v: v < 254):
        terms.append(-(lam[t] - math.log(sum(math.exp(v) for v in lam))))
    assert inlier_cross_entropy(logits, labels).item() == pytest.approx(sum(terms) / len(terms), rel=1e-6)


def test_total_is_ce_plus_weighted_ood_term() -> None:
    logits, labels = _data(3)
    cfg = LossConfig(k=3, s=1.5, w=0.7, inlier="ce")
    loss, parts = total_loss(logits, labels, cfg)
    expected = inlier_cross_entropy(logits, labels) + 0.7 * topk_ovr_loss(logits, labels, 3, 1.5)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert parts["loss"].item() == pytest.approx(loss.item())


def test_entropy_and_energy_baselines_equal_explicit_formulas() -> None:
    logits, labels = _data(4)
    ent = []
    for lam, _ in _pixels(logits, labels, lambda v: v == 254):
        lse = math.log(sum(math.exp(v) for v in lam))
        ent.append(-sum(v - lse for v in lam) / len(lam))
    assert entropy_loss(logits, labels).item() == pytest.approx(sum(ent) / len(ent), rel=1e-6)

    m_in, m_out = -2.0, 1.0
    e_in, e_out = [], []
    for lam, t in _pixels(logits, labels, lambda v: v != 255):
        e = -math.log(sum(math.exp(v) for v in lam))
        (e_out if t == 254 else e_in).append(e)
    expected = (sum(max(e - m_in, 0) ** 2 for e in e_in) / len(e_in)
                + sum(max(m_out - e, 0) ** 2 for e in e_out) / len(e_out))
    assert energy_margin_loss(logits, labels, m_in, m_out).item() == pytest.approx(expected, rel=1e-6)
    # Uniform logits are the entropy optimum: zero gradient there.
    flat = torch.zeros(1, 4, 2, 2, requires_grad=True)
    entropy_loss(flat, torch.full((1, 2, 2), 254)).backward()
    assert torch.allclose(flat.grad, torch.zeros_like(flat.grad), atol=1e-7)


def test_batches_without_ood_pixels_still_backpropagate() -> None:
    logits, labels = _data(5)
    labels[labels == 254] = 3
    logits.requires_grad_(True)
    for kind in ("topk_ovr", "entropy", "energy"):
        loss, parts = total_loss(logits, labels, LossConfig(kind=kind), base_logits=logits.detach() + 0.5)
        if kind != "energy":
            assert parts["ood"].item() == 0.0
        loss.backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all()
    only_void = torch.full_like(labels, 255)
    assert inlier_cross_entropy(logits, only_void).item() == 0.0


def test_bad_inputs_are_errors() -> None:
    logits, labels = _data()
    with pytest.raises(ValueError, match="labels must be"):
        inlier_cross_entropy(logits, torch.full_like(labels, 200))
    with pytest.raises(ValueError, match="to match the logits"):
        topk_ovr_loss(logits, labels[:, :3])
    with pytest.raises(ValueError, match="loss kind"):
        LossConfig(kind="focal")
    with pytest.raises(ValueError, match="k must be"):
        LossConfig(k=0)
    assert LossConfig(kind="entropy").weight == 9.0 and LossConfig(kind="energy", w=0.5).weight == 0.5


def test_anchor_terms_equal_explicit_per_pixel_formulas() -> None:
    logits, labels = _data(6)
    base = logits.detach() + torch.randn(logits.shape, generator=torch.Generator().manual_seed(1),
                                         dtype=logits.dtype)
    c = logits.shape[1]
    mse, tbce, obce = [], [], []
    for i in range(2):
        for y in range(5):
            for x in range(6):
                t = int(labels[i, y, x])
                if t >= c:
                    continue
                lam = [float(v) for v in logits[i, :, y, x]]
                lam0 = [float(v) for v in base[i, :, y, x]]
                mse.append(sum((a - b) ** 2 for a, b in zip(lam, lam0)) / c)
                tbce.append(_softplus(-lam[t]))
                obce.append(sum(_softplus(-v) if k == t else _softplus(v) for k, v in enumerate(lam)) / c)
    assert distill_loss(logits, labels, base).item() == pytest.approx(sum(mse) / len(mse), rel=1e-6)
    assert true_class_bce(logits, labels).item() == pytest.approx(sum(tbce) / len(tbce), rel=1e-6)
    assert ovr_bce(logits, labels).item() == pytest.approx(sum(obce) / len(obce), rel=1e-6)
    cfg = LossConfig(k=3, w=0.5, inlier="distill", inlier_weight=2.0)
    loss, parts = total_loss(logits, labels, cfg, base)
    expected = (inlier_cross_entropy(logits, labels) + 2.0 * distill_loss(logits, labels, base)
                + 0.5 * topk_ovr_loss(logits, labels, 3))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert parts["anchor"].item() == pytest.approx(distill_loss(logits, labels, base).item(), rel=1e-6)


@pytest.mark.parametrize("inlier", INLIER_KINDS)
def test_only_anchored_terms_see_a_uniform_logit_shift_on_inliers(inlier: str) -> None:
    """CE is blind to ``λ + a·1`` on inlier pixels (the level max logit and energy measure); every anchor sees it.

    ``distill`` and ``true_bce`` are also monotone in the right direction: lowering the level of every inlier
    logit (what a CE-only head did on the demo) always costs more. ``ovr_bce`` has its own optimal level, which
    need not be the current one, so only its sensitivity is checked.
    """
    logits, labels = _data(7)
    labels[labels == 254] = 255  # inliers and void only: the OoD term plays no part
    base = logits.detach().clone()
    cfg = LossConfig(inlier=inlier)
    shift = torch.zeros((), dtype=logits.dtype, requires_grad=True)
    loss0, _ = total_loss(logits, labels, cfg, base)
    moved, parts = total_loss(logits - 2.0 + shift, labels, cfg, base)  # every inlier logit lowered by 2
    moved.backward()
    if inlier == "ce":
        assert moved.item() == pytest.approx(loss0.item(), rel=1e-6)  # CE computes in float32
        assert abs(shift.grad.item()) < 1e-6
        return
    assert abs(moved.item() - loss0.item()) > 1e-3 and abs(shift.grad.item()) > 1e-3
    assert parts["anchor"].item() > 0
    if inlier in ("distill", "true_bce"):
        assert moved.item() > loss0.item()
        assert shift.grad.item() < 0  # the gradient pushes the level back up


def test_inlier_settings_are_checked() -> None:
    logits, labels = _data()
    with pytest.raises(ValueError, match="inlier term"):
        LossConfig(inlier="mse")
    with pytest.raises(ValueError, match="inlier_weight"):
        LossConfig(inlier_weight=-1.0)
    with pytest.raises(ValueError, match="base model's logits"):
        total_loss(logits, labels, LossConfig(inlier="distill"))
    with pytest.raises(ValueError, match="shape"):
        distill_loss(logits, labels, logits[:, :3])
    assert LossConfig().inlier == "distill" and LossConfig().needs_base and not LossConfig(inlier="ce").needs_base
