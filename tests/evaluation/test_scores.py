from __future__ import annotations

import json
import math

import pytest
import torch

from evaluation.scores import (
    ScoreName,
    SMLStatistics,
    SMLStats,
    anomaly_score,
    dilated_smoothing,
    energy,
    entropy,
    gaussian_smooth,
    max_logit,
    max_min,
    msp,
    sml,
    suppress_boundaries,
)

PLAIN = {"msp": msp, "max_logit": max_logit, "entropy": entropy, "energy": energy, "max_min": max_min}


def _logits(seed: int = 0, shape=(2, 5, 6, 7)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3


def test_scores_equal_their_explicit_formulas():
    x = _logits()
    p = torch.softmax(x, 1)
    assert torch.allclose(msp(x), 1 - p.max(1).values, atol=1e-12)
    assert torch.equal(max_logit(x), -x.max(1).values)
    assert torch.allclose(entropy(x), -(p * p.log()).sum(1), atol=1e-12)
    assert torch.allclose(energy(x), -torch.log(torch.exp(x).sum(1)), atol=1e-12)
    assert torch.allclose(energy(x, temperature=2.0), -2.0 * torch.log(torch.exp(x / 2).sum(1)), atol=1e-12)
    assert torch.equal(max_min(x), x.min(1).values - x.max(1).values)
    for name, fn in PLAIN.items():
        out = fn(x)
        assert out.shape == (2, 6, 7) and out.dtype == torch.float64
        assert torch.equal(anomaly_score(name, x), out)
        assert torch.equal(anomaly_score(ScoreName(name), x), out)


def test_higher_score_means_less_confident():
    # Pixel 0 is confident (large margin), pixel 1 uncertain (flat logits).
    x = torch.tensor([[8.0, 0.0, 0.0, 0.0], [0.1, 0.0, 0.05, 0.0]]).T.reshape(1, 4, 1, 2)
    for name, fn in PLAIN.items():
        s = fn(x)
        assert s[0, 0, 0] < s[0, 0, 1], name
    # Raising the top logit (others fixed) strictly lowers every score.
    base = _logits(1, (1, 4, 3, 3)).float()
    top = base.argmax(1, keepdim=True)
    raised = base.scatter_add(1, top, torch.ones_like(top, dtype=base.dtype))
    for name, fn in PLAIN.items():
        assert (fn(raised) < fn(base)).all(), name


def test_uniform_logits_and_msp_resolution():
    x = torch.zeros(1, 19, 2, 2)
    assert torch.allclose(entropy(x), torch.full((1, 2, 2), math.log(19)))
    assert torch.allclose(msp(x), torch.full((1, 2, 2), 1 - 1 / 19))
    # Margins of 20 and 25 make the max probability round to 1.0 in float32; msp still orders them.
    y = torch.zeros(1, 3, 1, 2)
    y[0, 0, 0, 0], y[0, 0, 0, 1] = 20.0, 25.0
    assert (1 - torch.softmax(y, 1).max(1).values == 0).all()
    s = msp(y)
    assert s[0, 0, 0] > s[0, 0, 1] > 0
    assert msp(y.half()).dtype == torch.float32


def test_gaussian_smoothing():
    x = torch.zeros(1, 21, 21, dtype=torch.float64)
    assert gaussian_smooth(x + 3.0, 2.0).allclose(torch.full_like(x, 3.0))
    x[0, 10, 10] = 1.0
    y = gaussian_smooth(x, 1.5)
    assert y.sum().item() == pytest.approx(1.0)
    assert torch.allclose(y, y.flip(1)) and torch.allclose(y, y.transpose(1, 2))
    k = torch.exp(-0.5 * (torch.arange(-5, 6, dtype=torch.float64) / 1.5) ** 2)
    k /= k.sum()
    assert torch.allclose(y[0, 5:16, 5:16], torch.outer(k, k))
    assert gaussian_smooth(x, 0.0) is x
    assert torch.allclose(max_logit(_logits(), smooth_sigma=1.0), gaussian_smooth(max_logit(_logits()), 1.0))
    with pytest.raises(ValueError, match="smooth_sigma"):
        gaussian_smooth(x, -1.0)


def _stats(c: int) -> SMLStatistics:
    return SMLStatistics.from_mean_var(torch.arange(c, dtype=torch.float64), (torch.arange(c, dtype=torch.float64) + 1) ** 2)


def test_sml_standardisation_with_known_statistics():
    x = _logits(2)
    st = _stats(5)
    out = sml(x, st, boundary_iterations=0, dilated=False)
    top, pred = x.max(1)
    expected = -(top - pred.double()) / (pred.double() + 1)  # mean = c, std = c + 1
    assert torch.allclose(out, expected, atol=1e-12)
    full = anomaly_score("sml", x, sml_stats=st)
    assert full.shape == (2, 6, 7) and not torch.allclose(full, out)


def test_boundary_suppression_replaces_boundary_values_from_both_sides():
    pred = torch.zeros(1, 12, 20, dtype=torch.long)
    pred[:, :, 10:] = 1
    z = torch.full((1, 12, 20), 1.0, dtype=torch.float64)
    z[:, :, 10:] = 5.0
    noisy = z.clone()
    noisy[:, :, 7:13] = torch.randn(1, 12, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 50
    cleaned = suppress_boundaries(noisy, pred, width=4, iterations=4)
    assert torch.allclose(cleaned, z)
    # Without a boundary nothing changes; a constant map stays constant under dilated smoothing.
    flat = torch.randn(1, 12, 20, dtype=torch.float64)
    assert torch.equal(suppress_boundaries(flat, torch.zeros_like(pred)), flat)
    assert torch.allclose(dilated_smoothing(torch.full((1, 12, 20), 2.5)), torch.full((1, 12, 20), 2.5))
    with pytest.raises(ValueError, match="multiple"):
        suppress_boundaries(flat, pred, width=3, iterations=2)


def test_sml_stats_accumulation_merge_and_serialisation():
    c = 4
    x = _logits(3, (3, c, 16, 16))
    top, pred = x.max(1)
    ref_mean = torch.stack([top[pred == k].mean() for k in range(c)])
    ref_std = torch.stack([top[pred == k].std() for k in range(c)])

    whole = SMLStats(c)
    whole.update(x)
    parts = [SMLStats(c), SMLStats(c)]
    parts[0].update(x[:1])
    parts[1].update(x[1:2])
    parts[1].update(x[2:])
    merged = parts[0].merge(parts[1])
    for s in (whole, merged):
        st = s.compute()
        assert torch.allclose(st.mean, ref_mean, atol=1e-12) and torch.allclose(st.std, ref_std, atol=1e-12)
        assert st.count.sum().item() == 3 * 256
    restored = SMLStatistics.from_dict(json.loads(json.dumps(whole.compute().to_dict())))
    assert torch.equal(restored.mean, whole.compute().mean) and torch.equal(restored.std, whole.compute().std)
    again = SMLStats(c)
    again.load_state_dict(whole.state_dict())
    assert torch.equal(again.compute().mean, whole.compute().mean)
    masked = SMLStats(c)
    mask = torch.zeros(3, 16, 16, dtype=torch.bool)
    mask[:, :8] = True
    masked.update(x, mask)
    assert masked.count.sum().item() == 3 * 128


def test_sml_stats_fill_missing_classes_with_pooled_statistics():
    x = torch.full((1, 3, 4, 4), -5.0, dtype=torch.float64)
    x[0, 0, :2] = torch.arange(8, dtype=torch.float64).reshape(2, 4)  # class 0 on the top half
    x[0, 1, 2:] = 10.0 + torch.arange(8, dtype=torch.float64).reshape(2, 4)  # class 1 on the bottom half
    stats = SMLStats(3)
    stats.update(x)
    with pytest.raises(ValueError, match=r"classes \[2\] were predicted"):
        stats.compute()
    st = stats.compute(fill_missing=True)
    top = x.max(1).values.flatten()
    assert st.mean[0].item() == pytest.approx(3.5) and st.mean[1].item() == pytest.approx(13.5)
    assert st.mean[2].item() == pytest.approx(top.mean().item()) and st.std[2].item() == pytest.approx(top.std().item())
    assert st.count.tolist() == [8, 8, 0]


def test_errors():
    x = _logits()
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        msp(x[0])
    with pytest.raises(ValueError, match="unknown score 'odin'"):
        anomaly_score("odin", x)
    with pytest.raises(ValueError, match="needs sml_stats"):
        anomaly_score("sml", x)
    with pytest.raises(ValueError, match="4 classes, logits have 5"):
        sml(x, _stats(4))
    with pytest.raises(ValueError, match="temperature"):
        energy(x, temperature=0.0)
    empty = SMLStats(5)
    empty.update(torch.zeros(1, 5, 2, 2).index_fill_(1, torch.tensor([0]), 1.0))
    with pytest.raises(ValueError, match=r"classes \[1, 2, 3, 4\] were predicted for fewer than 2 pixels"):
        empty.compute()
    with pytest.raises(ValueError, match="positive standard deviation"):
        empty.compute(fill_missing=True)  # four equal max logits: no spread even pooled
    with pytest.raises(ValueError, match="std finite and positive"):
        SMLStatistics.from_mean_var([0.0, 1.0], [1.0, 0.0])
