from __future__ import annotations

import pytest
import torch

from style_transfer import Blender, blend, get_aligner, style_stats, visibility


@pytest.fixture
def pair(scenes, blobs):
    bg = scenes(2, 45, 61, seed=40)  # odd sizes on purpose
    fg = scenes(2, 45, 61, seed=41)
    mask = blobs(2, 45, 61, seed=40)
    return bg, fg, mask


@pytest.mark.parametrize("mode", ["none", "feather", "laplacian"])
def test_blend_keeps_the_background_outside_the_silhouette(pair, mode):
    bg, fg, mask = pair
    out = blend(bg, fg, mask, mode=mode)
    assert out.shape == bg.shape
    outside = ~mask.expand_as(bg)
    assert torch.equal(out[outside], bg[outside])
    assert (out - bg).abs().max() > 0.05


def test_none_mode_is_the_hard_composite(pair):
    bg, fg, mask = pair
    out = blend(bg, fg, mask, mode="none")
    torch.testing.assert_close(out, torch.where(mask, fg, bg))
    torch.testing.assert_close(blend(bg, fg, mask, mode="laplacian", levels=1), out)


def test_feather_softens_only_near_the_edge():
    bg = torch.zeros(1, 3, 40, 40)
    fg = torch.ones(1, 3, 40, 40)
    mask = torch.zeros(1, 1, 40, 40, dtype=torch.bool)
    mask[..., 8:32, 8:32] = True
    out = blend(bg, fg, mask, mode="feather", feather_sigma=1.5)
    assert out[0, 0, 20, 20] == pytest.approx(1.0, abs=1e-4)  # deep inside: the foreground
    edge = out[0, 0, 20, 8].item()
    assert 0.3 < edge < 0.7  # at the silhouette: about half
    assert out[0, 0, 20, 7].item() == 0.0


def test_laplacian_harmonises_low_frequencies_near_the_seam():
    bg = torch.full((1, 3, 64, 64), 0.2)
    fg = torch.full((1, 3, 64, 64), 0.8)
    mask = torch.zeros(1, 1, 64, 64, dtype=torch.bool)
    mask[..., 16:48, 16:48] = True
    out = blend(bg, fg, mask, mode="laplacian", levels=3)
    assert out[0, 0, 32, 32] == pytest.approx(0.8, abs=0.02)  # centre keeps the foreground
    assert 0.25 < out[0, 0, 32, 16].item() < 0.75  # the seam is a transition, not a step
    deeper = blend(bg, fg, mask, mode="laplacian", levels=5)
    assert deeper[0, 0, 32, 32] < out[0, 0, 32, 32]  # more levels reach further into the object
    assert torch.equal(out[..., :16, :], bg[..., :16, :])


def test_blend_batched_equals_one_by_one_and_module(pair):
    bg, fg, mask = pair
    for mode in ("feather", "laplacian"):
        together = blend(bg, fg, mask, mode=mode)
        for i in range(2):
            torch.testing.assert_close(blend(bg[i : i + 1], fg[i : i + 1], mask[i : i + 1], mode=mode)[0], together[i])
        torch.testing.assert_close(Blender(mode)(bg, fg, mask), together)


def test_blend_errors(pair):
    bg, fg, mask = pair
    with pytest.raises(ValueError, match="blend mode"):
        blend(bg, fg, mask, mode="poisson")
    with pytest.raises(ValueError, match="shape"):
        blend(bg, fg[..., :10], mask)
    with pytest.raises(ValueError, match="levels"):
        blend(bg, fg, mask, mode="laplacian", levels=0)


def test_visibility_separates_distinct_from_camouflaged_objects(scenes, blobs):
    frame = scenes(1, 64, 64, seed=50, palette=(0.3, 0.4))
    mask = blobs(1, 64, 64, seed=50)
    red = frame.clone()
    red[:, 0][mask[:, 0]] = 0.9
    red[:, 1:][mask[:, 0:1].expand(-1, 2, -1, -1)] = 0.1
    camouflaged = frame  # the "object" is just the background
    scores = visibility(torch.cat([red, camouflaged]), torch.cat([mask, mask]))
    assert scores.shape == (2,)
    assert scores[0] > 5.0
    assert scores[1] < scores[0] / 5
    # batched equals one by one; empty mask scores 0
    torch.testing.assert_close(visibility(red, mask), scores[:1])
    assert visibility(red, torch.zeros_like(mask)).item() == 0.0
    with pytest.raises(ValueError, match="ring_width"):
        visibility(red, mask, ring_width=0)


def test_object_mode_alignment_lowers_visibility_more_than_image_mode(scenes, blobs):
    """The failure the design warns about: object-mode transfer to the ring camouflages the object."""
    frame = scenes(2, 64, 64, seed=51, palette=(0.35, 0.5))
    obj = scenes(2, 64, 64, seed=52, palette=(0.05, 0.95))
    mask = blobs(2, 64, 64, seed=51)
    ring = torch.nn.functional.max_pool2d(mask.float(), 17, 1, 8).bool() & ~mask
    source = style_stats(scenes(2, 96, 96, seed=53))
    image_mode = get_aligner("reinhard", mode="image")(obj, mask, frame, source_stats=source)
    object_mode = get_aligner("reinhard", mode="object")(obj, mask, frame, ring)
    paste = lambda x: torch.where(mask, x, frame)  # noqa: E731
    v_image = visibility(paste(image_mode), mask)
    v_object = visibility(paste(object_mode), mask)
    assert (v_object < 0.5).all()
    assert (v_image > 2 * v_object).all()
