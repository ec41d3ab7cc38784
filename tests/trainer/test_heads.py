"""Head-only finetuning: only the head gets gradients, the frozen body stays in eval() with fixed BN statistics."""

from __future__ import annotations

import copy

import pytest
import torch

from trainer.heads import (
    BaseHead,
    freeze_all_but_head,
    head_forward,
    head_loss,
    head_state_dict,
    load_head_state_dict,
)
from trainer.losses import LossConfig, total_loss
from trainer.models import build_model, head_modules


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("small")


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 32, 64, generator=g)
    y = torch.randint(0, 19, (2, 32, 64), generator=g)
    y[:, 8:16, 8:24] = 254
    return x, y


def _buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.named_buffers()}


@pytest.mark.parametrize("head", ["classifier", "final"])
def test_only_the_head_learns_and_frozen_bn_statistics_stay(head: str) -> None:
    model = _model()
    before = copy.deepcopy(model.state_dict())
    params = freeze_all_but_head(model, head)
    head_keys = set(head_state_dict(model, head))
    assert {id(p) for p in params} == {id(p) for m in head_modules(model, head).values() for p in m.parameters()}
    opt = torch.optim.SGD(params, lr=0.1)
    model.train()  # must not wake up the body
    for step in range(3):
        x, y = _batch(step)
        loss, _ = total_loss(head_forward(model, x, head), y, LossConfig(inlier="ce"))
        opt.zero_grad()
        loss.backward()
        for name, p in model.named_parameters():
            in_head = any(name.startswith(prefix + ".") for prefix in head_modules(model, head))
            assert (p.grad is not None) == in_head, name
        opt.step()
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed, "the head did not train"
    assert changed <= head_keys, f"frozen tensors moved: {sorted(changed - head_keys)}"
    if head == "final":  # the head's own BN keeps training; everything else is frozen
        assert any("running_mean" in k for k in changed)
    for name, module in model.named_modules():
        in_head = any(name == p or name.startswith(p + ".") for p in head_modules(model, head))
        if name:
            assert module.training == in_head, name


def test_frozen_body_stays_in_eval_whoever_calls_train() -> None:
    model = _model()
    freeze_all_but_head(model, "classifier")
    stats = _buffers(model)
    model.train(True)
    wrapper = torch.nn.Sequential(model)  # e.g. a DDP-style wrapper switching its children
    wrapper.train()
    with torch.no_grad():
        model(_batch()[0])  # a forward in "train" mode
    assert all(torch.equal(v, stats[k]) for k, v in model.named_buffers())
    assert not model.layer1.training and model.final[6].training
    model.eval()
    assert not model.final[6].training


def test_head_forward_matches_the_full_graph() -> None:
    x, y = _batch()
    ref = _model()
    freeze_all_but_head(ref, "final")
    fast = copy.deepcopy(ref)
    loss_ref, _ = total_loss(ref(x), y, LossConfig(inlier="ce"))
    loss_ref.backward()
    loss_fast, _ = total_loss(head_forward(fast, x, "final"), y, LossConfig(inlier="ce"))
    loss_fast.backward()
    assert torch.allclose(loss_ref, loss_fast, atol=1e-6)
    for (n, a), (_, b) in zip(ref.named_parameters(), fast.named_parameters()):
        if a.requires_grad:
            assert torch.allclose(a.grad, b.grad, atol=1e-6), n


def test_head_state_round_trip_and_errors() -> None:
    model = _model()
    state = head_state_dict(model, "classifier")
    assert set(state) == {"final.6.weight", "final.6.bias"}
    other = build_model("small")
    load_head_state_dict(other, "classifier", state)
    assert torch.equal(other.final[6].weight, model.final[6].weight)
    with pytest.raises(ValueError, match="missing"):
        load_head_state_dict(other, "final", state)
    with pytest.raises(ValueError, match="unknown head"):
        freeze_all_but_head(model, "backbone")


@pytest.mark.parametrize("head", ["classifier", "final"])
def test_base_head_gives_the_untrained_models_logits_after_training(head: str) -> None:
    x, y = _batch()
    ref = _model().eval()
    with torch.no_grad():
        want = ref(x)
    model = _model()
    params = freeze_all_but_head(model, head)
    base = BaseHead(model, head)
    opt = torch.optim.SGD(params, lr=0.5)
    for _ in range(2):
        with torch.no_grad():
            feats = model.forward_features(x, head)
        loss, parts = head_loss(model, feats, x.shape[-2:], y, LossConfig(), head, base)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert parts["anchor"].item() > 0  # the head has moved away from the base
    with torch.no_grad():
        feats = model.forward_features(x, head)
        got = base(feats, x.shape[-2:])
        live = model.classify(feats, x.shape[-2:], head)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(live, want, atol=1e-3)
    # the live head's modes are untouched by the base call (BN of the final block stays in train mode)
    assert all(m.training for m in head_modules(model, head).values())


def test_head_loss_needs_the_base_for_distill() -> None:
    model = _model()
    freeze_all_but_head(model, "classifier")
    x, y = _batch()
    with torch.no_grad():
        feats = model.forward_features(x, "classifier")
    with pytest.raises(ValueError, match="BaseHead"):
        head_loss(model, feats, x.shape[-2:], y, LossConfig(inlier="distill"), "classifier")
    loss, parts = head_loss(model, feats, x.shape[-2:], y, LossConfig(inlier="ce"), "classifier")
    assert parts["anchor"].item() == 0.0 and torch.isfinite(loss)
