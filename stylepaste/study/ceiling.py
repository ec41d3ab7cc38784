"""The head-only ceiling: linear probes on the frozen classifier-input features of a base model."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from evaluation.metrics import AnomalyMetrics
from trainer.cached import FeatureCache
from trainer.models import resize

def _probe_targets(labels: torch.Tensor, positive: int, num_classes: int) -> torch.Tensor:
    """1 where ``labels == positive``, 0 on the negatives, -1 elsewhere.

    Negatives are the class-labelled pixels of augmented frames (``positive`` = 254) or the in-distribution
    pixels (0) of an anomaly set (``positive`` = 1).
    """
    labels = labels.long()
    t = torch.full_like(labels, -1)
    t[labels < num_classes if positive == 254 else labels == 0] = 0
    t[labels == positive] = 1
    return t


def train_probe(cache: FeatureCache, frames: Sequence[int], positive: int, num_classes: int, *, steps: int,
                seed: int = 0, batch: int = 8, lr: float = 0.05) -> Callable[[torch.Tensor], torch.Tensor]:
    """A linear probe on frozen features: one 1x1 conv to an anomaly logit, upsampled as the head's logits are.

    Trained with class-balanced BCE (positives weighted by negatives / positives) and Adam on standardised
    features, on random batches of ``frames``. It is the best a linear readout of these features does on this
    target, which is what a head-only finetune of the 1x1 classifier can at most use.

    Args:
        cache: Features ``[N, C, h, w]`` and labels ``[N, H, W]``.
        frames: Positions in the cache to train on.
        positive: Label value of the positives (254 in augmented frames, 1 in anomaly sets).
        num_classes: Classes C (see :func:`_probe_targets`).
        steps: Optimizer steps.
        seed: Seed of the batch order and the init.
        batch: Frames per step.
        lr: Adam learning rate.

    Returns:
        ``probe(feats [B, C, h, w]) -> logits [B, H, W]`` (no gradient).

    Raises:
        ValueError: If the frames hold no positive or no negative pixel.
    """
    idx = torch.as_tensor(list(frames))
    targets = _probe_targets(cache.labels[idx], positive, num_classes)
    n_pos, n_neg = int((targets == 1).sum()), int((targets == 0).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"probe frames hold {n_pos} positive and {n_neg} negative pixels; need both")
    sample = cache.feats[idx[:: max(1, len(idx) // 32)]].float()
    mean = sample.mean(dim=(0, 2, 3))[:, None, None]
    std = sample.std(dim=(0, 2, 3)).clamp_min(1e-6)[:, None, None]
    g = torch.Generator().manual_seed(seed)
    conv = torch.nn.Conv2d(cache.feats.shape[1], 1, 1)
    with torch.no_grad():
        conv.weight.normal_(0.0, 0.01, generator=g)
        conv.bias.zero_()

    def probe(feats: torch.Tensor) -> torch.Tensor:
        return resize(conv((feats.float() - mean) / std), cache.size)[:, 0]

    opt = torch.optim.Adam(conv.parameters(), lr=lr)
    pos_weight = torch.tensor(n_neg / n_pos)
    for _ in range(steps):
        pick = idx[torch.randint(len(idx), (min(batch, len(idx)),), generator=g)]
        t = _probe_targets(cache.labels[pick], positive, num_classes)
        valid = t >= 0
        if not bool(valid.any()):
            continue
        loss = F.binary_cross_entropy_with_logits(probe(cache.feats[pick])[valid], t[valid].float(),
                                                  pos_weight=pos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return torch.no_grad()(probe)


@torch.no_grad()
def probe_metrics(probes: Sequence[tuple[Callable[[torch.Tensor], torch.Tensor], Sequence[int]]],
                  test: FeatureCache, chunk: int = 4) -> dict[str, float]:
    """AUROC / AP / FPR95 (in %) of probe logits on an anomaly set, pooled over every frame.

    Args:
        probes: ``(probe, frames)`` pairs with disjoint frames: each frame is scored by its pair's probe.
        test: Anomaly-set features (labels 0 in, 1 anomaly, 255 void).
        chunk: Frames per forward.
    """
    metric = AnomalyMetrics()
    for probe, frames in probes:
        frames = list(frames)
        for i in range(0, len(frames), chunk):
            ix = torch.as_tensor(frames[i:i + chunk])
            metric.update(probe(test.feats[ix]).numpy(), test.labels[ix].numpy())
    v = metric.compute()
    return {"auroc": 100.0 * v["auroc"], "ap": 100.0 * v["ap"], "fpr95": 100.0 * v["fpr95"]}


def head_only_ceiling(train: FeatureCache, test: FeatureCache, num_classes: int, steps: int,
                      seed: int = 0) -> dict[str, dict[str, float]]:
    """The linear probe on frozen classifier-input features, two ways.

    * ``pastes``: trained on the pasted objects (254 against class-labelled pixels) of the train corpus and
      evaluated on the anomaly set: the most a linear readout learned from these pastes can show.
    * ``test_cv``: trained on the anomaly set's own labels, 2-fold over frames (even / odd positions), each frame
      scored by the probe that did not see it: how separable the test anomalies are in these features at all.

    Returns:
        ``{"pastes": metrics, "test_cv": metrics}`` (:func:`probe_metrics`).
    """
    everything = list(range(len(test.ids)))
    pastes = train_probe(train, range(len(train.ids)), 254, num_classes, steps=steps, seed=seed)
    folds = [everything[0::2], everything[1::2]]
    cv = [(train_probe(test, folds[1 - f], 1, num_classes, steps=steps, seed=seed + 1 + f), folds[f])
          for f in (0, 1)]
    return {"pastes": probe_metrics([(pastes, everything)], test), "test_cv": probe_metrics(cv, test)}
