"""Generated scenes for the style_transfer tests (no files needed)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

# pytest puts tests/ on sys.path, where tests/style_transfer/ would shadow the real package as a namespace
# package under a bare `pytest` run; the repository root must come first (python -m pytest adds it anyway).
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

import kornia  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


def make_scene(
    h: int, w: int, seed: int, palette: tuple[float, float] = (0.15, 0.85), blur: float = 0.7, shapes: int = 12
) -> torch.Tensor:
    """A (3, h, w) scene in [0, 1]: a smooth gradient with random flat rectangles and disks, slightly blurred.

    Colours are drawn from ``palette`` (low, high) per channel, which keeps them inside the sRGB gamut.
    """
    return _scene(h, w, seed, tuple(palette), blur, shapes).clone()


@functools.lru_cache(maxsize=256)
def _scene(h: int, w: int, seed: int, palette: tuple[float, float], blur: float, shapes: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lo, hi = palette
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = lo + (hi - lo) * torch.rand(3, 1, 1, generator=g)
    tilt = 0.15 * (torch.rand(3, 1, 1, generator=g) - 0.5)
    img = base + tilt * (yy + xx)
    for _ in range(shapes):
        colour = lo + (hi - lo) * torch.rand(3, 1, 1, generator=g)
        cy, cx = (torch.rand(2, generator=g) * torch.tensor([h, w])).tolist()
        ry, rx = (torch.rand(2, generator=g) * torch.tensor([h, w]) * 3.0 / shapes**0.5 * 0.25 + 2).tolist()
        if torch.rand(1, generator=g).item() < 0.5:
            inside = ((yy * h - cy).abs() < ry) & ((xx * w - cx).abs() < rx)
        else:
            inside = ((yy * h - cy) / ry) ** 2 + ((xx * w - cx) / rx) ** 2 < 1
        img = torch.where(inside, colour, img)
    img = img.clamp(0, 1)[None]
    if blur > 0:
        k = 2 * int(3 * blur + 0.5) + 1
        img = kornia.filters.gaussian_blur2d(img, (k, k), (blur, blur), border_type="reflect")
    return img[0]


def make_blob_mask(h: int, w: int, seed: int) -> torch.Tensor:
    """A (1, h, w) bool ellipse-like object mask covering roughly a third of the crop."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    cy = h * (0.4 + 0.2 * torch.rand(1, generator=g).item())
    cx = w * (0.4 + 0.2 * torch.rand(1, generator=g).item())
    ry = h * (0.25 + 0.1 * torch.rand(1, generator=g).item())
    rx = w * (0.25 + 0.1 * torch.rand(1, generator=g).item())
    return (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1)[None]


@pytest.fixture
def scenes():
    """Factory fixture: ``scenes(b, h, w, seed, **kw) -> (B, 3, H, W)``."""

    def build(b: int, h: int, w: int, seed: int = 0, **kw) -> torch.Tensor:
        return torch.stack([make_scene(h, w, seed * 1000 + i, **kw) for i in range(b)])

    return build


@pytest.fixture
def blobs():
    """Factory fixture: ``blobs(b, h, w, seed) -> (B, 1, H, W) bool``."""

    def build(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
        return torch.stack([make_blob_mask(h, w, seed * 1000 + i) for i in range(b)])

    return build
