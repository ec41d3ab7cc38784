"""Style aligners: restyle a pasted object to the camera and scene look of its destination frame.

Every aligner is an :class:`torch.nn.Module` with one call signature (see :meth:`Aligner.forward`)::

    restyled = aligner(content, content_mask, style, style_mask=None, source_stats=None)

``content`` is the object's crop (the object and some of its source image around it), ``style`` the
destination frame (whole, possibly downscaled, or any region of it selected by ``style_mask``) and
``source_stats`` the :mod:`style_transfer.stats` vector of the object's whole source image as the object
bank stores it. *Style* is the camera and scene look (colour response, light, sharpness, noise,
compression), not the object's own colours: the default transforms are estimated between the source image
and the destination frame and then applied to the object, so it keeps its own contrast against the scene.

Output contract shared by all aligners: same shape as ``content``; only pixels inside ``content_mask``
change (``out = content + strength * mask * (restyled - content)``, soft masks blend), so pixels outside
the mask are returned unchanged and ``strength = 0`` or the ``none`` aligner give the identity. Values stay
in [0, 1]. Work is done in float32 and returned in the content's dtype. Everything is batched and runs on
the inputs' device; ``style`` and ``source_stats`` with a batch of 1 broadcast over the content batch.

This module holds the interface (:class:`Aligner`, :class:`AlignInputs`), ``none`` and chains; the colour aligners
are in :mod:`style_transfer.colour`, the sensor aligner in :mod:`style_transfer.sensor`, the registry by name in
:mod:`style_transfer.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from dataclasses import dataclass, field

import torch
from torch import nn

from style_transfer._ops import (
    as_weight,
    batch_like,
    check_image,
    composite,
    masked_mean_std,
    rgb_to_lab,
)
from style_transfer.stats import (
    NUM_STATS,
    style_stats,
)

#: Default chain for the augment pipeline: colour response (image-mode Reinhard), then sensor look.
DEFAULT_ALIGNER = "reinhard+sensor"

def _check_strength(strength: float) -> float:
    value = float(strength)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength!r}")
    return value


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def _stats_batch(x: torch.Tensor | None, b: int, name: str, device: torch.device) -> torch.Tensor | None:
    if x is None:
        return None
    t = torch.as_tensor(x, dtype=torch.float32, device=device)
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[1] != NUM_STATS:
        raise ValueError(f"{name} must have shape (B, {NUM_STATS}) or ({NUM_STATS},), got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains non-finite values")
    return batch_like(t, b, name)


@dataclass
class AlignInputs:
    """Validated float32 inputs of one aligner call, with lazily computed statistics.

    Attributes:
        content: (B, 3, H, W) float32 in [0, 1].
        weight: (B, 1, H, W) float32 object mask weights.
        style: (B, 3, h, w) float32 or None (only with ``style_stats`` and an aligner that needs no pixels).
        style_weight: (B, 1, h, w) float32 or None.
        source_stats: (B, 9) or None.
        style_stats: (B, 9) precomputed destination statistics or None.
        content_scale: (B,) factor by which the object was resized from its source image.
        noise_seeds: One seed per item.
        style_broadcast: Whether one style image (batch 1) serves the whole batch; statistics of it are then
            computed once.
    """

    content: torch.Tensor
    weight: torch.Tensor
    style: torch.Tensor | None
    style_weight: torch.Tensor | None
    source_stats: torch.Tensor | None
    style_stats: torch.Tensor | None
    content_scale: torch.Tensor
    noise_seeds: list[int]
    style_broadcast: bool = False
    _cache: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def batch(self) -> int:
        return self.content.shape[0]

    def src_full(self) -> torch.Tensor:
        """(B, 9) statistics of the source image: ``source_stats``, else the whole content crop's."""
        if self.source_stats is not None:
            return self.source_stats
        if "src" not in self._cache:
            self._cache["src"] = style_stats(self.content)
        return self._cache["src"]

    def src_moments(self) -> torch.Tensor:
        """(B, 6) Lab mean and std of the source image (``source_stats`` or the whole content crop)."""
        if self.source_stats is not None:
            return self.source_stats[:, :6]
        if "src" in self._cache:
            return self._cache["src"][:, :6]
        mean, std = masked_mean_std(rgb_to_lab(self.content), torch.ones_like(self.weight))
        return torch.cat([mean, std], dim=1)

    def dst_full(self) -> torch.Tensor:
        """(B, 9) destination statistics: ``style_stats``, else computed from ``style`` (in ``style_mask``)."""
        if self.style_stats is not None:
            return self.style_stats
        if "dst" not in self._cache:
            style, weight = self.style_unique()
            self._cache["dst"] = style_stats(style, weight).expand(self.batch, -1)
        return self._cache["dst"]

    def dst_moments(self) -> torch.Tensor:
        """(B, 6) Lab mean and std of the destination (``style_stats`` or ``style`` in ``style_mask``)."""
        if self.style_stats is not None:
            return self.style_stats[:, :6]
        if "dst" in self._cache:
            return self._cache["dst"][:, :6]
        return _moments(*self.style_unique()).expand(self.batch, -1)

    def style_unique(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(style, style_weight)`` with batch 1 when one style serves the batch, else batch B."""
        style = self.require_style()
        weight = self.style_weight
        if self.style_broadcast:
            style = style[:1]
            weight = None if weight is None else weight[:1]
        return style, weight

    def require_style(self) -> torch.Tensor:
        if self.style is None:
            raise ValueError("this aligner needs the style pixels, but style is None")
        return self.style


class Aligner(nn.Module):
    """Base class of every aligner: input checks, the mask composite and ``strength``.

    Subclasses implement :meth:`restyle`, which returns the restyled crop (any values outside the mask).

    Args:
        strength: Blend of the result with the input, in [0, 1] (0 = identity).
    """

    def __init__(self, strength: float = 1.0) -> None:
        super().__init__()
        self.strength = _check_strength(strength)

    @classmethod
    def pixels_needed(cls, params: Mapping[str, Any]) -> bool:
        """Whether an aligner of this class built with ``params`` needs ``style`` even when ``style_stats`` is
        given; answered without building it (:attr:`needs_style_pixels` of the instance)."""
        return True

    @property
    def needs_style_pixels(self) -> bool:
        """Whether :meth:`forward` needs ``style`` even when ``style_stats`` is given."""
        return self.pixels_needed({})

    @property
    def needs_style(self) -> bool:
        """Whether :meth:`forward` needs ``style`` or ``style_stats`` at all."""
        return True

    def forward(
        self,
        content: torch.Tensor,
        content_mask: torch.Tensor | None,
        style: torch.Tensor | None,
        style_mask: torch.Tensor | None = None,
        source_stats: torch.Tensor | None = None,
        *,
        style_stats: torch.Tensor | None = None,
        content_scale: torch.Tensor | float | Sequence[float] | None = None,
        noise_seeds: Sequence[int] | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Restyle the masked object in ``content`` to the look of ``style``.

        Args:
            content: (B, 3, H, W) float RGB in [0, 1]: the object's crop.
            content_mask: (B, 1, H, W) object mask (bool/int: non-zero inside; float: soft weights), or None
                for the whole crop.
            style: (B, 3, h, w) float RGB in [0, 1]: the destination frame (or a thumbnail of it). May be
                None when ``style_stats`` is given and :attr:`needs_style_pixels` is False.
            style_mask: (B, 1, h, w) region of ``style`` to take statistics from (default: all of it).
            source_stats: (B, 9) style statistics of each object's whole source image
                (:meth:`style_transfer.stats.StyleStats.to_tensor` order). None: image-mode aligners use
                the whole content crop's statistics instead.
            style_stats: (B, 9) destination statistics computed beforehand, e.g. on the full-resolution frame
                when ``style`` is a thumbnail (sharpness and noise depend on resolution). Overrides the
                statistics of ``style``/``style_mask`` wherever an aligner needs only statistics.
            content_scale: (B,) or scalar: size of the object in ``content`` over its size in the source
                image (paste scale). Used by ``sensor`` to bring the source's blur and noise to the crop's
                resolution. Default 1.
            noise_seeds: One integer seed per item for aligners that draw noise (``sensor``); the noise of an
                item depends only on its seed and size, never on the batch or device. Default: the
                aligner's own ``seed`` for every item.

        Returns:
            (B, 3, H, W) restyled content, same dtype and device as ``content``.

        Raises:
            TypeError: If an image is not a float tensor.
            ValueError: If shapes disagree, ``source_stats``/``style_stats`` are not (B, 9), or ``style`` is
                missing where it is needed.
        """
        inputs = self.prepare(
            content, content_mask, style, style_mask, source_stats,
            style_stats=style_stats, content_scale=content_scale, noise_seeds=noise_seeds,
        )
        restyled = self.restyle(inputs).clamp(0.0, 1.0)
        return composite(inputs.content, restyled, inputs.weight, self.strength).to(content.dtype)

    def prepare(
        self,
        content: torch.Tensor,
        content_mask: torch.Tensor | None,
        style: torch.Tensor | None,
        style_mask: torch.Tensor | None,
        source_stats: torch.Tensor | None,
        *,
        style_stats: torch.Tensor | None,
        content_scale: torch.Tensor | float | Sequence[float] | None,
        noise_seeds: Sequence[int] | torch.Tensor | None,
    ) -> AlignInputs:
        """Check and convert the arguments of :meth:`forward` (see there)."""
        check_image(content, "content")
        b = content.shape[0]
        device = content.device
        c32 = content.float()
        weight = as_weight(content_mask, c32, "content_mask")
        dst = _stats_batch(style_stats, b, "style_stats", device)
        if style is None:
            if self.needs_style_pixels or (dst is None and self.needs_style):
                raise ValueError(
                    f"{type(self).__name__} needs style pixels: pass style as a (B, 3, h, w) float tensor"
                    + ("" if self.needs_style_pixels else " or give style_stats")
                )
            s32 = None
            style_weight = None
            broadcast = False
        else:
            check_image(style, "style")
            s32 = batch_like(style.float().to(device), b, "style")
            style_weight = None if style_mask is None else as_weight(style_mask, s32, "style_mask")
            broadcast = style.shape[0] == 1 and (style_mask is None or style_mask.shape[0] == 1)
        if content_scale is None:
            scale = torch.ones(b, device=device)
        else:
            scale = torch.as_tensor(content_scale, dtype=torch.float32, device=device).flatten()
            if scale.numel() == 1:
                scale = scale.expand(b)
            if scale.numel() != b or not bool((scale > 0).all()):
                raise ValueError(f"content_scale must be one positive number or {b} of them, got {content_scale!r}")
        if noise_seeds is None:
            seeds = [int(getattr(self, "seed", 0))] * b
        else:
            seeds = [int(s) for s in (noise_seeds.tolist() if isinstance(noise_seeds, torch.Tensor) else noise_seeds)]
            if len(seeds) != b:
                raise ValueError(f"noise_seeds must have one seed per item ({b}), got {len(seeds)}")
        return AlignInputs(
            content=c32,
            weight=weight,
            style=s32,
            style_weight=style_weight,
            source_stats=_stats_batch(source_stats, b, "source_stats", device),
            style_stats=dst,
            content_scale=scale,
            noise_seeds=seeds,
            style_broadcast=broadcast,
        )

    def restyle(self, inputs: AlignInputs) -> torch.Tensor:
        """Return the restyled (B, 3, H, W) crop; the base class composites it with the mask."""
        raise NotImplementedError

def _moments(image: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    w = weight if weight is not None else torch.ones_like(image[:, :1])
    mean, std = masked_mean_std(rgb_to_lab(image), w)
    return torch.cat([mean, std], dim=1)

class NoAlign(Aligner):
    """The identity (``none``): returns the content unchanged; ``style`` may be None."""

    @classmethod
    def pixels_needed(cls, params: Mapping[str, Any]) -> bool:
        return False

    @property
    def needs_style(self) -> bool:
        return False

    def restyle(self, inputs: AlignInputs) -> torch.Tensor:
        return inputs.content

class Compose(Aligner):
    """Apply aligners one after another (each sees the previous one's output as content).

    All steps get the same ``content_mask``, ``style``, ``style_mask``, ``source_stats`` and keyword
    arguments. ``strength`` blends the chain's final output with the original input.

    Args:
        steps: The aligners, in order.
        strength: Blend of the whole chain with the input, in [0, 1].
    """

    def __init__(self, steps: Sequence[Aligner], strength: float = 1.0) -> None:
        super().__init__(strength)
        if not steps:
            raise ValueError("Compose needs at least one aligner")
        for step in steps:
            if not isinstance(step, Aligner):
                raise TypeError(f"Compose steps must be Aligner modules, got {type(step).__name__}")
        self.steps = nn.ModuleList(steps)

    @property
    def needs_style_pixels(self) -> bool:
        return any(step.needs_style_pixels for step in self.steps)

    @property
    def needs_style(self) -> bool:
        return any(step.needs_style for step in self.steps)

    def forward(self, content, content_mask, style, style_mask=None, source_stats=None, **kwargs):  # type: ignore[override]
        """Run every step in order; same arguments and result as :meth:`Aligner.forward`."""
        check_image(content, "content")
        x = content
        for step in self.steps:
            x = step(x, content_mask, style, style_mask, source_stats, **kwargs)
        return (content + self.strength * (x - content)).to(content.dtype)


def chain(*steps: Aligner, strength: float = 1.0) -> Compose:
    """``Compose(list(steps), strength)``: e.g. ``chain(Reinhard("image"), Sensor())``."""
    return Compose(list(steps), strength=strength)
