from __future__ import annotations

import math

import kornia
import pytest
import torch

from style_transfer import Compose, Reinhard, Sensor, chain, get_aligner, style_stats
from style_transfer.colour import FDA, match_cdf
from style_transfer.sensor import JPEG_BLOCKINESS_TABLE, jpeg_quality_from_blockiness

ALL = [
    ("none", {}),
    ("reinhard", {"mode": "image"}),
    ("reinhard", {"mode": "object"}),
    ("sensor", {"compression": 60}),
    ("histogram", {"mode": "image"}),
    ("histogram", {"mode": "object", "space": "rgb"}),
    ("fda", {"beta": 0.05}),
    ("reinhard+sensor", {}),
]


def _lab(x: torch.Tensor) -> torch.Tensor:
    return kornia.color.rgb_to_lab(x)


def _masked_moments(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item Lab mean and std over a bool mask; (B, 3) each."""
    lab = _lab(x)
    means, stds = [], []
    for i in range(x.shape[0]):
        sel = lab[i][:, mask[i, 0]]
        means.append(sel.mean(dim=1))
        stds.append(sel.std(dim=1, unbiased=False))
    return torch.stack(means), torch.stack(stds)


def _blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    k = 2 * math.ceil(3 * sigma) + 1
    return kornia.filters.gaussian_blur2d(img, (k, k), (sigma, sigma), border_type="reflect")


def _with_l_noise(img: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    lab = _lab(img)
    g = torch.Generator().manual_seed(seed)
    lab = torch.cat([lab[:, :1] + sigma * torch.randn(lab[:, :1].shape, generator=g), lab[:, 1:]], dim=1)
    return kornia.color.lab_to_rgb(lab)


@pytest.fixture
def batch(scenes, blobs):
    content = scenes(3, 40, 48, seed=10)
    mask = blobs(3, 40, 48, seed=10)
    style = scenes(3, 36, 60, seed=11, palette=(0.3, 0.6))
    source = style_stats(scenes(3, 64, 80, seed=12))
    return content, mask, style, source


@pytest.mark.parametrize("name,params", ALL)
def test_only_masked_pixels_change_and_strength_zero_is_identity(batch, name, params):
    content, mask, style, source = batch
    out = get_aligner(name, **params)(content, mask, style, source_stats=source)
    assert out.shape == content.shape and out.dtype == content.dtype
    assert out.min() >= 0 and out.max() <= 1
    outside = ~mask.expand_as(content)
    assert torch.equal(out[outside], content[outside])
    if name != "none":
        assert (out - content).abs().max() > 1e-3  # it does something
    still = get_aligner(name, **{**params, "strength": 0.0})(content, mask, style, source_stats=source)
    torch.testing.assert_close(still, content, rtol=0, atol=0)


@pytest.mark.parametrize("name,params", ALL)
def test_batched_equals_one_by_one(batch, name, params):
    content, mask, style, source = batch
    aligner = get_aligner(name, **params)
    seeds = [3, 4, 5]
    together = aligner(content, mask, style, source_stats=source, noise_seeds=seeds)
    for i in range(3):
        one = aligner(
            content[i : i + 1], mask[i : i + 1], style[i : i + 1], source_stats=source[i : i + 1],
            noise_seeds=seeds[i : i + 1],
        )
        torch.testing.assert_close(one[0], together[i], rtol=1e-5, atol=1e-5)


def test_none_is_exact_identity_and_needs_no_style(batch):
    content, mask, _, _ = batch
    aligner = get_aligner("none")
    assert torch.equal(aligner(content, mask, None), content)


def test_strength_blends_linearly(batch):
    content, mask, style, source = batch
    full = get_aligner("reinhard")(content, mask, style, source_stats=source)
    half = get_aligner("reinhard", strength=0.5)(content, mask, style, source_stats=source)
    torch.testing.assert_close(half, content + 0.5 * (full - content), rtol=1e-5, atol=1e-5)


def test_reinhard_object_mode_matches_style_region_moments(batch, blobs):
    """Tolerance: masked Lab mean within 0.1 and std within 0.1 Lab units of the style region's.

    The only loss is the clip of out-of-gamut Lab values, which these in-gamut scenes avoid.
    """
    content, mask, style, _ = batch
    style_mask = blobs(3, 36, 60, seed=13)
    out = Reinhard(mode="object")(content, mask, style, style_mask)
    got_mean, got_std = _masked_moments(out, mask)
    want_mean, want_std = _masked_moments(style, style_mask)
    torch.testing.assert_close(got_mean, want_mean, rtol=0, atol=0.1)
    torch.testing.assert_close(got_std, want_std, rtol=0, atol=0.1)


def test_reinhard_image_mode_keeps_the_objects_offset_scaled_by_the_std_ratio(batch):
    """(out object mean - dst mean) == (object mean - src mean) * dst std / src std, within 0.15 Lab units."""
    content, mask, style, source = batch
    out = Reinhard(mode="image")(content, mask, style, source_stats=source)
    obj_in, _ = _masked_moments(content, mask)
    obj_out, obj_out_std = _masked_moments(out, mask)
    dst = style_stats(style)
    mu_s, sd_s, mu_d, sd_d = source[:, :3], source[:, 3:6], dst[:, :3], dst[:, 3:6]
    torch.testing.assert_close(obj_out - mu_d, (obj_in - mu_s) * sd_d / sd_s, rtol=0, atol=0.15)
    # unlike object mode, the object does not take the destination's mean colour
    _, obj_in_std = _masked_moments(content, mask)
    torch.testing.assert_close(obj_out_std, obj_in_std * sd_d / sd_s, rtol=0.02, atol=0.1)


def test_reinhard_image_mode_falls_back_to_the_crops_statistics(batch):
    content, mask, style, _ = batch
    implicit = Reinhard()(content, mask, style)
    explicit = Reinhard()(content, mask, style, source_stats=style_stats(content))
    torch.testing.assert_close(implicit, explicit, rtol=1e-4, atol=1e-4)


def test_reinhard_image_mode_runs_on_stats_alone(batch):
    content, mask, style, source = batch
    dst = style_stats(style)
    with_pixels = Reinhard()(content, mask, style, source_stats=source)
    stats_only = Reinhard()(content, mask, None, source_stats=source, style_stats=dst)
    torch.testing.assert_close(with_pixels, stats_only, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="style pixels"):
        Reinhard(mode="object")(content, mask, None, style_stats=dst)


def _ks(a: torch.Tensor, b: torch.Tensor) -> float:
    """Kolmogorov-Smirnov distance between two samples' empirical CDFs."""
    grid = torch.cat([a, b]).sort().values
    fa = torch.searchsorted(a.sort().values, grid, right=True) / a.numel()
    fb = torch.searchsorted(b.sort().values, grid, right=True) / b.numel()
    return float((fa - fb).abs().max())


def test_histogram_object_mode_makes_masked_cdfs_match(batch, blobs):
    """Kolmogorov-Smirnov distance of every masked channel below 0.01 (RGB) / 0.03 (Lab, after the gamut
    clip), from above 0.2 before."""
    content, mask, style, _ = batch
    # noise breaks the ties of the flat synthetic regions (atoms would bound the KS distance from below)
    g = torch.Generator().manual_seed(2)
    content = (content + 0.01 * torch.randn(content.shape, generator=g)).clamp(0, 1)
    style = (style + 0.01 * torch.randn(style.shape, generator=g)).clamp(0, 1)
    style_mask = blobs(3, 36, 60, seed=14)
    for space, tol in (("rgb", 0.01), ("lab", 0.03)):
        out = get_aligner("histogram", mode="object", space=space)(content, mask, style, style_mask)
        conv = (lambda t: t) if space == "rgb" else _lab
        o, s, c0 = conv(out), conv(style), conv(content)
        for i in range(3):
            for c in range(3):
                want = s[i, c][style_mask[i, 0]]
                assert _ks(o[i, c][mask[i, 0]], want) < tol, (space, i, c)
                assert _ks(c0[i, c][mask[i, 0]], want) > 0.2, (space, i, c)


def test_match_cdf_is_exact_for_equal_counts():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 5, 8, generator=g)
    ref = torch.randn(2, 1, 8, 5, generator=g)
    valid = torch.ones(2, 1, 5, 8, dtype=torch.bool)
    out = match_cdf(x, valid, ref, torch.ones(2, 1, 8, 5, dtype=torch.bool))
    for i in range(2):
        assert torch.equal(out[i].flatten().sort().values, ref[i].flatten().sort().values)
        # monotone: the order of the pixels is kept
        assert torch.equal(out[i].flatten().argsort(), x[i].flatten().argsort())


def test_fda_keeps_phase_and_replaces_the_low_band(scenes):
    content = scenes(2, 32, 40, seed=20)
    style = scenes(2, 32, 40, seed=21, palette=(0.2, 0.5))
    fda = FDA(beta=0.1)
    out = fda.swap(content, style)
    fo, fc, fs = torch.fft.rfft2(out), torch.fft.rfft2(content), torch.fft.rfft2(style)
    band = fda.band(32, 40, content.device)
    assert band.sum() == (2 * 3 + 1) * (3 + 1)  # |ky| <= 3, 0 <= kx <= 3 with b = floor(0.1 * 32)
    torch.testing.assert_close(fo.abs()[..., band], fs.abs()[..., band], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(fo.abs()[..., ~band], fc.abs()[..., ~band], rtol=1e-4, atol=1e-3)
    strong = fc.abs() > 1e-2
    dphase = torch.angle(fo * fc.conj())[strong]
    assert dphase.abs().max() < 1e-3
    # forward = clipped swap where the mask covers the crop
    full = torch.ones(2, 1, 32, 40, dtype=torch.bool)
    torch.testing.assert_close(fda(content, full, style), out.clamp(0, 1), rtol=1e-5, atol=1e-5)


def _stats_with(base: torch.Tensor, sharpness: float | None = None, noise: float | None = None,
                blockiness: float | None = None) -> torch.Tensor:
    out = base.clone()
    if sharpness is not None:
        out[:, 6] = sharpness
    if noise is not None:
        out[:, 7] = noise
    if blockiness is not None:
        out[:, 8] = blockiness
    return out


def test_sensor_keeps_colours_and_matches_blur_and_noise(scenes):
    """Masked Lab mean within 1.0 units; output sharpness and noise within 25 % of the destination's."""
    content = scenes(2, 112, 112, seed=30, shapes=60)
    mask = torch.zeros(2, 1, 112, 112, dtype=torch.bool)
    mask[..., 8:-8, 8:-8] = True  # an object inside its crop, as pasted objects are
    src = style_stats(content)
    dst_img = _with_l_noise(_blur(scenes(2, 128, 128, seed=31, shapes=60), 2.0), 1.5)
    dst = style_stats(dst_img)
    out = Sensor(seed=7)(content, mask, None, source_stats=src, style_stats=dst)
    got = style_stats(out, mask)
    m_in, _ = _masked_moments(content, mask)
    m_out, _ = _masked_moments(out, mask)
    assert (m_out - m_in).abs().max() < 1.0
    assert (got[:, 6] - dst[:, 6]).abs().max() < 0.25 * dst[:, 6].min()
    assert (got[:, 7] - dst[:, 7]).abs().max() < 0.25 * dst[:, 7].min()
    assert (got[:, 6] < src[:, 6]).all()


def test_sensor_never_sharpens_and_scales_source_noise_with_resolution(scenes):
    content = scenes(1, 64, 64, seed=32)
    mask = torch.ones(1, 1, 64, 64, dtype=torch.bool)
    src = style_stats(content)
    sharper = _stats_with(src, sharpness=float(src[0, 6]) * 3, noise=0.0)
    out = Sensor()(content, mask, None, source_stats=src, style_stats=sharper)
    assert torch.equal(out, content)
    s = Sensor()
    inputs = s.prepare(content, mask, None, None, _stats_with(src, noise=4.0),
                       style_stats=_stats_with(src, noise=3.0), content_scale=None, noise_seeds=None)
    _, noise_same, _ = s.plan(inputs)
    inputs.content_scale = torch.tensor([0.5])
    sigma_half, noise_half, _ = s.plan(inputs)
    assert noise_same.item() == 0.0  # the source is noisier than the destination: nothing added
    assert noise_half.item() == pytest.approx(math.sqrt(9 - 4), rel=1e-3) or sigma_half.item() > 0


def test_sensor_noise_is_deterministic_per_seed(batch):
    content, mask, style, source = batch
    dst = _stats_with(style_stats(style), noise=3.0)
    s = Sensor(blur=False)
    a = s(content, mask, None, source_stats=source, style_stats=dst, noise_seeds=[1, 2, 3])
    b = s(content, mask, None, source_stats=source, style_stats=dst, noise_seeds=[1, 2, 3])
    c = s(content, mask, None, source_stats=source, style_stats=dst, noise_seeds=[9, 2, 3])
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], c[0]) and torch.equal(a[1:], c[1:])


def test_sensor_noise_does_not_depend_on_padding(scenes):
    content = scenes(1, 30, 34, seed=34)
    mask = torch.zeros(1, 1, 30, 34, dtype=torch.bool)
    mask[..., 3:27, 2:34] = True  # touches the right border
    src = _stats_with(style_stats(content), noise=0.0)
    dst = _stats_with(src, sharpness=float(src[0, 6]) / 2, noise=3.0)
    s = Sensor()
    alone = s(content, mask, None, source_stats=src, style_stats=dst, noise_seeds=[11])
    padded = torch.nn.functional.pad(content, (0, 14, 0, 6), mode="replicate")
    padded_mask = torch.nn.functional.pad(mask, (0, 14, 0, 6))
    big = s(padded, padded_mask, None, source_stats=src, style_stats=dst, noise_seeds=[11])
    torch.testing.assert_close(big[..., :30, :34], alone, rtol=1e-5, atol=1e-5)
    assert (alone - content).abs().max() > 0.01


def test_sensor_compression(scenes):
    content = scenes(1, 64, 64, seed=33)
    mask = torch.ones(1, 1, 64, 64, dtype=torch.bool)
    src = style_stats(content)
    blocky = _stats_with(src, blockiness=1.6)
    auto = Sensor(blur=False, noise=False, compression="auto")
    out = auto(content, mask, None, source_stats=src, style_stats=blocky)
    assert style_stats(out)[0, 8] > src[0, 8] + 0.1
    off = Sensor(blur=False, noise=False)(content, mask, None, source_stats=src, style_stats=blocky)
    assert torch.equal(off, content)
    assert jpeg_quality_from_blockiness(1.0) == 100
    assert jpeg_quality_from_blockiness(JPEG_BLOCKINESS_TABLE[2][0]) == JPEG_BLOCKINESS_TABLE[2][1]
    with pytest.raises(ValueError, match="compression"):
        Sensor(compression="max")


def test_chain_equals_steps_in_sequence(batch):
    content, mask, style, source = batch
    composed = get_aligner("reinhard+sensor")
    assert isinstance(composed, Compose)
    dst = _stats_with(style_stats(style), noise=2.0)
    kw = {"source_stats": source, "style_stats": dst, "noise_seeds": [1, 2, 3]}
    got = composed(content, mask, style, **kw)
    want = Sensor()(Reinhard()(content, mask, style, **kw), mask, style, **kw)
    torch.testing.assert_close(got, want)
    explicit = get_aligner("chain", steps=[("reinhard", {"mode": "image"}), ("sensor", {})])
    torch.testing.assert_close(explicit(content, mask, style, **kw), got)
    assert not composed.needs_style_pixels
    torch.testing.assert_close(chain(Reinhard(), Sensor())(content, mask, None, **kw), got, rtol=1e-4, atol=1e-4)


def test_style_batch_of_one_broadcasts(batch):
    content, mask, style, source = batch
    a = get_aligner("histogram")(content, mask, style[:1], source_stats=source)
    b = get_aligner("histogram")(content, mask, style[:1].expand(3, -1, -1, -1), source_stats=source)
    torch.testing.assert_close(a, b)


def test_float64_in_float64_out(batch):
    content, mask, style, source = batch
    out = get_aligner("reinhard")(content.double(), mask, style.double(), source_stats=source)
    assert out.dtype == torch.float64


def test_input_errors_are_clear(batch):
    content, mask, style, source = batch
    aligner = get_aligner("reinhard")
    with pytest.raises(ValueError, match="unknown aligner"):
        get_aligner("issa")
    with pytest.raises(TypeError, match="reinhard"):
        get_aligner("reinhard", beta=0.1)
    with pytest.raises(ValueError, match="mode"):
        get_aligner("reinhard", mode="frame")
    with pytest.raises(ValueError, match="strength"):
        get_aligner("fda", strength=1.5)
    with pytest.raises(TypeError, match="float"):
        aligner((content * 255).to(torch.uint8), mask, style)
    with pytest.raises(ValueError, match="content_mask"):
        aligner(content, mask[:, :, :10], style)
    with pytest.raises(ValueError, match="source_stats"):
        aligner(content, mask, style, source_stats=source[:, :8])
    with pytest.raises(ValueError, match="batch size"):
        aligner(content, mask, style[:2])
    with pytest.raises(ValueError, match="noise_seeds"):
        get_aligner("sensor")(content, mask, style, noise_seeds=[1])
