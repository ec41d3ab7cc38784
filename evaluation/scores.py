"""Per-pixel anomaly scores from segmentation logits.

Every score maps logits ``[B, C, H, W]`` to a score map ``[B, H, W]`` in which **higher means more
anomalous**, so that all of them feed :class:`evaluation.metrics.AnomalyMetrics` unchanged:

============  ==========================================================================================
``msp``       ``1 - max_c softmax(logits)_c``, computed as ``r / (1 + r)`` with ``r`` the sum of
              ``exp(l_c - l_max)`` over the other classes, which keeps its resolution where the maximum
              probability rounds to 1 in float32 (a plain ``1 - p`` would tie all those pixels at 0)
``max_logit`` ``-max_c logits_c``
``entropy``   ``-sum_c p_c log p_c`` of the softmax, computed as ``logsumexp - sum_c p_c logits_c``
``energy``    the free energy ``-T logsumexp(logits / T)`` (``T = 1`` by default)
``max_min``   ``min_c logits_c - max_c logits_c``: minus the "max-min logit" margin (a large margin
              means a confident, in-distribution pixel)
``sml``       minus the Standardized Max Logit (Jung et al., ICCV 2021): the max logit standardised by
              the mean and standard deviation of the max logit of its predicted class on training data
              (:class:`SMLStats`), then boundary suppression and dilated smoothing
============  ==========================================================================================

Each function takes ``smooth_sigma``: a Gaussian blur (standard deviation in pixels) of the final map.
Half-precision logits are computed in float32; float64 stays float64.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


class ScoreName(enum.StrEnum):
    """Names of the anomaly scores, for command lines and reports."""

    MSP = "msp"
    MAX_LOGIT = "max_logit"
    ENTROPY = "entropy"
    ENERGY = "energy"
    MAX_MIN = "max_min"
    SML = "sml"


ALL_SCORES: tuple[str, ...] = tuple(s.value for s in ScoreName)
"""Every score name, in :class:`ScoreName` order."""
SCORE_TITLES: dict[str, str] = {
    "msp": "MSP", "max_logit": "Max logit", "entropy": "Entropy", "energy": "Energy",
    "sml": "SML", "max_min": "Max-min logit",
}
"""The one set of score titles of every table and figure."""


# ----------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------


def _logits(logits: torch.Tensor) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.ndim != 4 or logits.shape[1] < 2:
        raise ValueError(f"logits must have shape [B, C, H, W] with C >= 2, got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be floating point, got {logits.dtype}")
    if logits.dtype in (torch.float16, torch.bfloat16):
        return logits.float()
    return logits


def _gaussian_kernel1d(sigma: float, radius: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def gaussian_smooth(scores: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur score maps with a normalised Gaussian (separable, radius ``ceil(3 sigma)``, replicate border).

    Args:
        scores: Score maps ``[B, H, W]``.
        sigma: Standard deviation in pixels; 0 returns ``scores`` unchanged.

    Returns:
        Blurred maps ``[B, H, W]``, same dtype.

    Raises:
        ValueError: If ``sigma`` is negative or not finite, or ``scores`` is not 3-D.
    """
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"smooth_sigma must be a finite number >= 0, got {sigma}")
    if scores.ndim != 3:
        raise ValueError(f"scores must have shape [B, H, W], got {tuple(scores.shape)}")
    if sigma == 0:
        return scores
    radius = max(1, math.ceil(3.0 * sigma))
    k = _gaussian_kernel1d(sigma, radius, scores.dtype, scores.device)
    x = scores.unsqueeze(1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
    return x.squeeze(1)


# ----------------------------------------------------------------------------------------------------
# Scores
# ----------------------------------------------------------------------------------------------------


def msp(logits: torch.Tensor, *, smooth_sigma: float = 0.0) -> torch.Tensor:
    """One minus the maximum softmax probability.

    Args:
        logits: ``[B, C, H, W]``.
        smooth_sigma: Gaussian blur of the result in pixels (0 = none).

    Returns:
        ``[B, H, W]`` in [0, 1 - 1/C]; higher = more anomalous.
    """
    x = _logits(logits)
    top, arg = x.max(dim=1, keepdim=True)
    # 1 - p_max = r / (1 + r) with r = sum over the other classes of exp(l_c - l_max): no cancellation.
    rest = torch.exp(x - top).scatter(1, arg, 0.0).sum(dim=1)
    return gaussian_smooth(rest / (1.0 + rest), smooth_sigma)


def max_logit(logits: torch.Tensor, *, smooth_sigma: float = 0.0) -> torch.Tensor:
    """Negative maximum logit (Hendrycks et al., 2022). ``[B, C, H, W] -> [B, H, W]``."""
    return gaussian_smooth(-_logits(logits).amax(dim=1), smooth_sigma)


def entropy(logits: torch.Tensor, *, smooth_sigma: float = 0.0) -> torch.Tensor:
    """Entropy of the softmax distribution in nats. ``[B, C, H, W] -> [B, H, W]``, in [0, log C]."""
    x = _logits(logits)
    p = torch.softmax(x, dim=1)
    score = torch.logsumexp(x, dim=1) - (p * x).sum(dim=1)
    return gaussian_smooth(score.clamp_min(0), smooth_sigma)


def energy(logits: torch.Tensor, *, temperature: float = 1.0, smooth_sigma: float = 0.0) -> torch.Tensor:
    """Free energy ``-T logsumexp(logits / T)`` (Liu et al., NeurIPS 2020). ``[B, C, H, W] -> [B, H, W]``.

    Raises:
        ValueError: If ``temperature`` is not a positive finite number.
    """
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    x = _logits(logits)
    return gaussian_smooth(-temperature * torch.logsumexp(x / temperature, dim=1), smooth_sigma)


def max_min(logits: torch.Tensor, *, smooth_sigma: float = 0.0) -> torch.Tensor:
    """Negative max-min logit margin, ``min logit - max logit``. ``[B, C, H, W] -> [B, H, W]``, <= 0."""
    x = _logits(logits)
    return gaussian_smooth(x.amin(dim=1) - x.amax(dim=1), smooth_sigma)


# ----------------------------------------------------------------------------------------------------
# Standardized Max Logits
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SMLStatistics:
    """Per-class mean and standard deviation of the max logit, indexed by predicted class.

    Attributes:
        mean: ``[C]`` float64.
        std: ``[C]`` float64, positive.
        count: ``[C]`` int64, pixels each class was estimated from (informative only).
    """

    mean: torch.Tensor
    std: torch.Tensor
    count: torch.Tensor

    def __post_init__(self) -> None:
        for name in ("mean", "std", "count"):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor) or value.ndim != 1:
                raise ValueError(f"SMLStatistics.{name} must be a 1-D tensor, got {value!r}")
        if not (self.mean.numel() == self.std.numel() == self.count.numel()):
            raise ValueError(
                f"SMLStatistics: mean, std and count must have the same length, got "
                f"{self.mean.numel()}, {self.std.numel()}, {self.count.numel()}"
            )
        if not torch.isfinite(self.mean).all() or not (torch.isfinite(self.std) & (self.std > 0)).all():
            raise ValueError("SMLStatistics: mean must be finite and std finite and positive for every class")

    @property
    def num_classes(self) -> int:
        """Number of classes C."""
        return int(self.mean.numel())

    @classmethod
    def from_mean_var(cls, mean: Any, var: Any) -> SMLStatistics:
        """Build from per-class means and variances (the form SML's published statistics take)."""
        m = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        v = torch.as_tensor(var, dtype=torch.float64).reshape(-1)
        return cls(m, v.sqrt(), torch.zeros(m.numel(), dtype=torch.int64))

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        """JSON-serialisable form: ``{"mean": [...], "std": [...], "count": [...]}``."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "count": self.count.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SMLStatistics:
        """Inverse of :meth:`to_dict` (also accepts tensors, e.g. from ``torch.load(weights_only=True)``).

        Raises:
            ValueError: If a key is missing or the values are invalid.
        """
        missing = [k for k in ("mean", "std") if k not in data]
        if missing:
            raise ValueError(f"SMLStatistics.from_dict: missing keys {missing}; got {sorted(data)}")
        mean = torch.as_tensor(data["mean"], dtype=torch.float64).reshape(-1)
        count = data.get("count", [0] * mean.numel())
        return cls(
            mean, torch.as_tensor(data["std"], dtype=torch.float64).reshape(-1), torch.as_tensor(count, dtype=torch.int64).reshape(-1)
        )


class SMLStats:
    """Streaming per-class statistics of the max logit, grouped by predicted (arg-max) class.

    Run it over a training split, as SML does, then call :meth:`compute`. Means and variances are
    accumulated in float64 with the parallel (Chan et al.) update, so the result does not depend on how
    pixels are split into batches or ranks. The standard deviation uses the unbiased variance.

    Args:
        num_classes: Number of classes C of the logits.
    """

    def __init__(self, num_classes: int = 19):
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = int(num_classes)
        self.count = torch.zeros(self.num_classes, dtype=torch.int64)
        self.mean = torch.zeros(self.num_classes, dtype=torch.float64)
        self.m2 = torch.zeros(self.num_classes, dtype=torch.float64)

    def _combine(self, count: torch.Tensor, mean: torch.Tensor, m2: torch.Tensor) -> None:
        total = self.count + count
        n_a, n_b = self.count.double(), count.double()
        n = total.double().clamp_min(1)
        delta = mean - self.mean
        self.mean = torch.where(total > 0, self.mean + delta * n_b / n, self.mean)
        self.m2 = self.m2 + m2 + delta**2 * n_a * n_b / n
        self.count = total

    @torch.no_grad()
    def update(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add pixels.

        Args:
            logits: ``[B, C, H, W]`` on any device.
            mask: Optional bool ``[B, H, W]``; only pixels where it is True count (e.g. exclude void).

        Raises:
            ValueError: Wrong number of classes, mask shape, or non-finite logits.
        """
        x = _logits(logits)
        if x.shape[1] != self.num_classes:
            raise ValueError(f"SMLStats expects {self.num_classes} classes, got logits {tuple(x.shape)}")
        top, pred = x.max(dim=1)
        if mask is not None:
            if tuple(mask.shape) != tuple(top.shape):
                raise ValueError(f"mask must have shape {tuple(top.shape)}, got {tuple(mask.shape)}")
            m = mask.to(device=top.device, dtype=torch.bool)
            top, pred = top[m], pred[m]
        top = top.reshape(-1).double()
        pred = pred.reshape(-1)
        if not torch.isfinite(top).all():
            raise ValueError("SMLStats.update: logits contain NaN or infinite values")
        c = self.num_classes
        count = torch.bincount(pred, minlength=c)
        total = torch.zeros(c, dtype=torch.float64, device=top.device).index_add_(0, pred, top)
        mean = total / count.clamp_min(1)
        m2 = torch.zeros(c, dtype=torch.float64, device=top.device).index_add_(0, pred, (top - mean[pred]) ** 2)
        self._combine(count.cpu(), mean.cpu(), m2.cpu())

    def compute(self, *, fill_missing: bool = False) -> SMLStatistics:
        """Per-class mean and standard deviation.

        Args:
            fill_missing: Give classes that were predicted for fewer than 2 pixels (or have zero
                variance) the mean and standard deviation of all pixels pooled, instead of raising.
                Such classes keep their small ``count`` in the result, which tells them apart.

        Raises:
            ValueError: If a class was predicted for fewer than 2 pixels or has zero variance (unless
                ``fill_missing``), or when even the pooled pixels cannot give a positive deviation.
        """
        n = self.count.double()
        std = (self.m2 / (n - 1).clamp_min(1)).sqrt()
        bad = (self.count < 2) | ~(std > 0)
        if bad.any() and not fill_missing:
            short = torch.nonzero(self.count < 2).flatten().tolist()
            flat = torch.nonzero((self.count >= 2) & ~(std > 0)).flatten().tolist()
            raise ValueError(
                f"SMLStats: classes {short} were predicted for fewer than 2 pixels and classes {flat} have zero "
                "variance; gather statistics on more training data or pass fill_missing=True"
            )
        mean = self.mean.clone()
        if bad.any():
            total = int(self.count.sum())
            pooled_mean = float((self.mean * n).sum()) / max(total, 1)
            pooled_m2 = float((self.m2 + n * (self.mean - pooled_mean) ** 2).sum())
            pooled_std = math.sqrt(pooled_m2 / (total - 1)) if total >= 2 else 0.0
            if not pooled_std > 0:
                raise ValueError(f"SMLStats: {total} pixels in all cannot give a positive standard deviation")
            mean[bad], std[bad] = pooled_mean, pooled_std
        return SMLStatistics(mean, std, self.count.clone())

    def merge(self, other: SMLStats) -> SMLStats:
        """Add the pixels of ``other``; returns ``self``."""
        if not isinstance(other, SMLStats) or other.num_classes != self.num_classes:
            raise ValueError("SMLStats.merge expects an SMLStats with the same number of classes")
        self._combine(other.count.clone(), other.mean.clone(), other.m2.clone())
        return self

    def state_dict(self) -> dict[str, Any]:
        """Tensors ``count``, ``mean``, ``m2`` (``torch.save`` / ``weights_only`` friendly)."""
        return {"num_classes": self.num_classes, "count": self.count.clone(), "mean": self.mean.clone(), "m2": self.m2.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the state with ``state`` from :meth:`state_dict`.

        Raises:
            ValueError: Wrong number of classes or missing keys.
        """
        missing = [k for k in ("num_classes", "count", "mean", "m2") if k not in state]
        if missing:
            raise ValueError(f"SMLStats.load_state_dict: missing keys {missing}")
        if int(state["num_classes"]) != self.num_classes:
            raise ValueError(f"SMLStats.load_state_dict: {state['num_classes']} classes, expected {self.num_classes}")
        self.count = torch.as_tensor(state["count"], dtype=torch.int64).clone().reshape(self.num_classes)
        self.mean = torch.as_tensor(state["mean"], dtype=torch.float64).clone().reshape(self.num_classes)
        self.m2 = torch.as_tensor(state["m2"], dtype=torch.float64).clone().reshape(self.num_classes)

    def sync(self, process_group: Any = None) -> None:
        """Combine the statistics of all ranks (every rank ends with the same result); no-op if not distributed."""
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()):
            return
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(process_group) == "nccl" else torch.device("cpu")
        local = torch.stack([self.count.double(), self.mean, self.m2]).to(device)
        parts = [torch.empty_like(local) for _ in range(dist.get_world_size(process_group))]
        dist.all_gather(parts, local, group=process_group)
        self.count.zero_()
        self.mean.zero_()
        self.m2.zero_()
        for part in parts:
            part = part.cpu()
            self._combine(part[0].round().long(), part[1], part[2])


def _cross_max(x: torch.Tensor) -> torch.Tensor:
    """Grey dilation with the 4-neighbour cross; the image border does not add values. ``[B,1,H,W]``."""
    return torch.maximum(F.max_pool2d(x, (3, 1), 1, (1, 0)), F.max_pool2d(x, (1, 3), 1, (0, 1)))


def _square_min(x: torch.Tensor) -> torch.Tensor:
    """Grey erosion with the 3x3 square; the image border does not add values. ``[B,1,H,W]``."""
    return -F.max_pool2d(-x, 3, 1, 1)


def _diamond_dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation of a float {0,1} mask ``[B,1,H,W]`` by the L1 ball of ``radius``."""
    if radius == 0:
        return mask
    r = torch.arange(-radius, radius + 1, device=mask.device)
    kernel = ((r.view(-1, 1).abs() + r.view(1, -1).abs()) <= radius).to(mask.dtype)
    return (F.conv2d(mask, kernel[None, None], padding=radius) > 0.5).to(mask.dtype)


def suppress_boundaries(scores: torch.Tensor, prediction: torch.Tensor, *, width: int = 4, iterations: int = 4) -> torch.Tensor:
    """SML boundary suppression: replace scores near class boundaries by those of their interior neighbours.

    The boundary of the predicted class map is where its cross dilation and 3x3 erosion differ (two
    pixels wide). In ``iterations`` steps the band around it shrinks from ``width - 1`` extra pixels to
    none (by ``width / iterations`` per step); each step sets every pixel of the current band to the mean
    of the pixels outside the band in its 3x3 neighbourhood (replicate border), if there is any, so
    interior values propagate into the boundary from both sides.

    Args:
        scores: ``[B, H, W]`` floating.
        prediction: ``[B, H, W]`` integer class map.
        width: Initial extra width of the band; 0 leaves only the 2-pixel boundary.
        iterations: Number of steps; 0 disables suppression. ``width`` must be a multiple of it.

    Returns:
        ``[B, H, W]``.

    Raises:
        ValueError: For negative arguments, ``width`` not divisible by ``iterations`` or shape mismatch.
    """
    if width < 0 or iterations < 0:
        raise ValueError(f"boundary width and iterations must be >= 0, got {width}, {iterations}")
    if iterations and width % iterations:
        raise ValueError(f"boundary width {width} must be a multiple of the number of iterations {iterations}")
    if tuple(prediction.shape) != tuple(scores.shape):
        raise ValueError(f"prediction {tuple(prediction.shape)} and scores {tuple(scores.shape)} must have the same shape")
    if iterations == 0:
        return scores
    labels = prediction.unsqueeze(1).to(scores.dtype)
    boundary = (_cross_max(labels) != _square_min(labels)).to(scores.dtype)
    step = width // iterations
    out = scores.unsqueeze(1)
    ones = torch.ones(1, 1, 3, 3, dtype=scores.dtype, device=scores.device)
    for i in range(iterations):
        radius = 0 if (width == 0 or i == iterations - 1) else width - step * i - 1
        interior = 1.0 - _diamond_dilate(boundary, radius)
        total = F.conv2d(F.pad(out * interior, (1, 1, 1, 1), mode="replicate"), ones)
        count = F.conv2d(F.pad(interior, (1, 1, 1, 1), mode="replicate"), ones).round()
        mean = torch.where(count > 0, total / count.clamp_min(1), out)
        out = torch.where(interior > 0, out, mean)
    return out.squeeze(1)


def dilated_smoothing(scores: torch.Tensor, *, kernel_size: int = 7, dilation: int = 6, sigma: float = 1.0) -> torch.Tensor:
    """SML dilated smoothing of score maps ``[B, H, W] -> [B, H, W]``.

    A normalised ``kernel_size`` x ``kernel_size`` Gaussian (standard deviation ``sigma`` in kernel
    taps) applied with ``dilation`` between taps and a replicate border.

    Raises:
        ValueError: For an even or non-positive kernel size, dilation < 1 or sigma <= 0.
    """
    if kernel_size < 1 or kernel_size % 2 == 0 or dilation < 1 or not sigma > 0:
        raise ValueError(f"need an odd kernel_size >= 1, dilation >= 1 and sigma > 0, got {kernel_size}, {dilation}, {sigma}")
    half = kernel_size // 2
    k = _gaussian_kernel1d(sigma, half, scores.dtype, scores.device)
    kernel = (k.view(-1, 1) * k.view(1, -1))[None, None]
    pad = dilation * half
    x = F.pad(scores.unsqueeze(1), (pad, pad, pad, pad), mode="replicate")
    return F.conv2d(x, kernel, dilation=dilation).squeeze(1)


def sml(
    logits: torch.Tensor,
    stats: SMLStatistics,
    *,
    boundary_width: int = 4,
    boundary_iterations: int = 4,
    smoothing_kernel_size: int = 7,
    smoothing_dilation: int = 6,
    smoothing_sigma: float = 1.0,
    dilated: bool = True,
    smooth_sigma: float = 0.0,
) -> torch.Tensor:
    """Negative Standardized Max Logit with SML's post-processing.

    ``z = (max_c logits_c - mean[k]) / std[k]`` with ``k`` the arg-max class; then
    :func:`suppress_boundaries` (width 4, 4 iterations by default; ``boundary_iterations=0`` disables
    it) and :func:`dilated_smoothing` (7x7 Gaussian, sigma 1, dilation 6; ``dilated=False`` disables
    it), the defaults of SML's evaluation; the score is ``-z`` (higher = more anomalous). Since both
    post-processing steps are weighted averages, negating before or after them is the same.

    Args:
        logits: ``[B, C, H, W]``.
        stats: Per-class statistics with C classes (:meth:`SMLStats.compute`).
        boundary_width, boundary_iterations: Boundary suppression settings.
        smoothing_kernel_size, smoothing_dilation, smoothing_sigma, dilated: Dilated smoothing settings.
        smooth_sigma: Extra Gaussian blur of the final map (0 = none).

    Returns:
        ``[B, H, W]``.

    Raises:
        ValueError: If ``stats`` has a different number of classes, or for invalid settings.
    """
    x = _logits(logits)
    if stats.num_classes != x.shape[1]:
        raise ValueError(f"SML statistics have {stats.num_classes} classes, logits have {x.shape[1]}")
    top, pred = x.max(dim=1)
    mean = stats.mean.to(device=x.device, dtype=x.dtype)
    std = stats.std.to(device=x.device, dtype=x.dtype)
    z = (top - mean[pred]) / std[pred]
    z = suppress_boundaries(z, pred, width=boundary_width, iterations=boundary_iterations)
    if dilated:
        z = dilated_smoothing(z, kernel_size=smoothing_kernel_size, dilation=smoothing_dilation, sigma=smoothing_sigma)
    return gaussian_smooth(-z, smooth_sigma)


def anomaly_score(
    name: ScoreName | str,
    logits: torch.Tensor,
    *,
    sml_stats: SMLStatistics | None = None,
    temperature: float = 1.0,
    smooth_sigma: float = 0.0,
) -> torch.Tensor:
    """Compute the score called ``name`` (see :class:`ScoreName`). ``[B, C, H, W] -> [B, H, W]``.

    Args:
        name: One of :class:`ScoreName` (or its string value).
        logits: ``[B, C, H, W]``.
        sml_stats: Required for ``sml``.
        temperature: Energy temperature (``energy`` only).
        smooth_sigma: Gaussian blur of the final map.

    Raises:
        ValueError: For an unknown name, or ``sml`` without statistics.
    """
    try:
        kind = ScoreName(name)
    except ValueError:
        raise ValueError(f"unknown score {name!r}; choose from {[s.value for s in ScoreName]}") from None
    if kind is ScoreName.MSP:
        return msp(logits, smooth_sigma=smooth_sigma)
    if kind is ScoreName.MAX_LOGIT:
        return max_logit(logits, smooth_sigma=smooth_sigma)
    if kind is ScoreName.ENTROPY:
        return entropy(logits, smooth_sigma=smooth_sigma)
    if kind is ScoreName.ENERGY:
        return energy(logits, temperature=temperature, smooth_sigma=smooth_sigma)
    if kind is ScoreName.MAX_MIN:
        return max_min(logits, smooth_sigma=smooth_sigma)
    if sml_stats is None:
        raise ValueError("the 'sml' score needs sml_stats (per-class max-logit statistics from SMLStats)")
    return sml(logits, sml_stats, smooth_sigma=smooth_sigma)
