"""Visibility of a pasted object: Lab contrast between the object and a ring of background around it.

The augment pipeline uses it to reject pastes that alignment made invisible (an object-mode transfer can
turn an object into a patch of road). Definition, per item, on CIE Lab (kornia, L in 0..100):

* object ``O``: pixels with mask > 0.5; ring ``R``: pixels within ``ring_width`` pixels of ``O`` (square
  neighbourhood) that are not in ``O``;
* ``mu``, ``sigma``: per-channel mean and standard deviation of (L, a, b) over each region;
* ``visibility = sqrt(|mu_O - mu_R|^2 + |sigma_O - sigma_R|^2) / sqrt(|sigma_R|^2 + eps^2)``.

The numerator is a Delta E (CIE76) between the two regions' colour *distributions* summarised by mean and
spread (a textured object on a flat road is visible even with the road's mean colour); the denominator
measures it in units of the background's own variation, so the same colour step counts less on a busy
background. ``eps`` (1 Lab unit, about a just noticeable difference) keeps flat backgrounds finite. 0 for
an empty object or ring. :data:`DEFAULT_MIN_VISIBILITY` is a suggested rejection threshold.
"""

from __future__ import annotations

import torch

from style_transfer._ops import as_weight, check_image, dilate, masked_mean_std, rgb_to_lab

#: Suggested threshold: pastes scoring below it are hard to tell from their surroundings.
DEFAULT_MIN_VISIBILITY = 0.5


def visibility(
    composite: torch.Tensor, mask: torch.Tensor, ring_width: int = 8, eps: float = 1.0
) -> torch.Tensor:
    """Lab contrast between each pasted object and a ring of background around it (module docstring).

    Pass a crop around the object with a margin of at least ``ring_width`` to save work on large frames.

    Args:
        composite: (B, 3, H, W) float RGB in [0, 1]: the frame (or crop) after pasting.
        mask: (B, 1, H, W) pasted object's mask (bool/int non-zero inside, float > 0.5 inside).
        ring_width: Ring width in pixels (>= 1).
        eps: Floor of the ring's spread in Lab units (> 0).

    Returns:
        (B,) float32 visibility scores (>= 0), on the composite's device.

    Raises:
        ValueError: For a ring width below 1, a non-positive eps or mismatched shapes.
    """
    check_image(composite, "composite")
    if not (isinstance(ring_width, int) and ring_width >= 1):
        raise ValueError(f"ring_width must be an integer >= 1, got {ring_width!r}")
    if not float(eps) > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    image = composite.float()
    inside = (as_weight(mask, image, "mask") > 0.5).to(image.dtype)
    ring = dilate(inside, ring_width) * (1.0 - inside)
    lab = rgb_to_lab(image)
    mu_o, sd_o = masked_mean_std(lab, inside, eps=0.0)
    mu_r, sd_r = masked_mean_std(lab, ring, eps=0.0)
    num = ((mu_o - mu_r) ** 2).sum(dim=1) + ((sd_o - sd_r) ** 2).sum(dim=1)
    den = (sd_r**2).sum(dim=1) + float(eps) ** 2
    score = torch.sqrt(num / den)
    valid = (inside.sum(dim=(1, 2, 3)) > 0) & (ring.sum(dim=(1, 2, 3)) > 0)
    return torch.where(valid, score, torch.zeros_like(score))
