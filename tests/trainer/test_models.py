"""Model architectures: state-dict layout and logits against the published references.

The reference files (``../shared/checkpoints``) hold each public architecture's key manifest,
a fixed input, and the logits under a documented deterministic weight fill; tests that need
them skip when the folder is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from trainer.models import (
    HEADS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SmallConfig,
    build_model,
    denormalize,
    head_modules,
    normalize,
)
from trainer.models.reference import manifest_entries, param_checksums, reference_fill

BIG_ARCHS = ("wrn38", "r101")


@pytest.fixture(scope="module")
def checkpoints_dir() -> Path:
    """``../shared/checkpoints`` (or env STYLEPASTE_CHECKPOINTS); skip when absent."""
    default = Path(__file__).resolve().parents[2].parent / "shared" / "checkpoints"
    root = Path(os.environ.get("STYLEPASTE_CHECKPOINTS", default))
    if not (root / "wrn38_state_dict_manifest.json").is_file():
        pytest.skip(f"reference manifests not found in {root}")
    return root


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    """The references were computed with 2 threads; keep the run comparable and light."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=BIG_ARCHS)
def reference_case(request, checkpoints_dir):
    """(arch, model filled with the primary fill in eval mode, manifest entries, reference dict)."""
    arch = request.param
    entries = manifest_entries(checkpoints_dir / f"{arch}_state_dict_manifest.json")
    ref = torch.load(checkpoints_dir / f"{arch}_reference.pt", map_location="cpu", weights_only=True)
    model = build_model(arch)
    model.load_state_dict(reference_fill(entries, "lecun_randbn_v1"), strict=True)
    model.eval()
    yield arch, model, entries, ref
    del model


def test_state_dict_matches_manifest(reference_case):
    arch, model, entries, _ = reference_case
    got = [(k, tuple(v.shape), v.dtype) for k, v in model.state_dict().items()]
    assert got == entries, f"{arch}: state_dict keys/shapes/dtypes differ from the manifest"


def test_reference_fills_match_checksums(reference_case):
    arch, _, entries, ref = reference_case
    cases = (("lecun_randbn_v1", ref["param_checksums"]), ("n002_idbn", ref["secondary"]["param_checksums"]))
    for fill, expected in cases:
        sums = param_checksums(reference_fill(entries, fill))
        assert sums.keys() == expected.keys()
        for key, want in expected.items():
            assert sums[key]["first3"] == want["first3"], (arch, fill, key)
            assert sums[key]["sum"] == pytest.approx(want["sum"], rel=1e-9, abs=1e-9), (arch, fill, key)
            assert sums[key]["abs_sum"] == pytest.approx(want["abs_sum"], rel=1e-9, abs=1e-9), (arch, fill, key)


def test_forward_matches_reference_logits(reference_case):
    arch, model, _, ref = reference_case
    x = ref["input"]
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
        pre = model.classifier(feats)
    assert isinstance(logits, torch.Tensor)
    assert logits.shape == ref["logits"].shape == (1, 19, 64, 128)
    diff = (logits - ref["logits"]).abs().max().item()
    assert diff <= 1e-4, f"{arch}: max |logits - ref| = {diff}"
    assert (feats - ref["penultimate_features"]).abs().max().item() <= 1e-4
    assert (pre - ref["logits_pre_upsample"]).abs().max().item() <= 1e-4


def test_forward_matches_secondary_reference(reference_case):
    arch, _, entries, ref = reference_case
    with torch.device("meta"):
        model = build_model(arch)
    model.load_state_dict(reference_fill(entries, "n002_idbn"), strict=True, assign=True)
    model.eval()
    with torch.no_grad():
        logits = model(ref["input"])
    want = ref["secondary"]["logits"]
    diff = (logits - want).abs().max().item()
    tol = 1e-4 * want.abs().max().item()
    assert diff <= tol, f"{arch}: secondary fill max diff {diff} > {tol}"


def test_features_then_classify_equals_forward(reference_case):
    _, model, _, ref = reference_case
    x = ref["input"]
    with torch.no_grad():
        logits = model(x)
        for head in HEADS:
            feats = model.forward_features(x, head)
            assert torch.equal(model.classify(feats, x.shape[-2:], head), logits), head


@pytest.mark.parametrize(
    ("arch", "classifier", "final", "bias", "in_ch"),
    [
        ("wrn38", ("final.6",), ("final",), False, 256),
        ("r101", ("final2.0",), ("final1", "final2"), True, 256),
        ("small", ("final.6",), ("final",), True, SmallConfig().decoder_channels),
    ],
)
def test_head_modules(arch, classifier, final, bias, in_ch):
    with torch.device("meta"):
        model = build_model(arch, num_classes=7)
    heads = head_modules(model, "classifier")
    assert tuple(heads) == classifier
    conv = heads[classifier[0]]
    assert isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (1, 1)
    assert (conv.out_channels, conv.in_channels, conv.bias is not None) == (7, in_ch, bias)
    assert tuple(head_modules(model, "final")) == final
    assert model.classifier is conv
    with pytest.raises(ValueError, match="unknown head"):
        head_modules(model, "body")


def test_r101_keeps_dsn_but_forward_returns_logits_only():
    model = build_model("r101", num_classes=5).eval()
    assert "dsn" in dict(model.named_children())
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        out = model(x)
        main, aux = model.forward_aux(x)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 5, 32, 48)
    assert torch.equal(main, out) and aux.shape == out.shape


def test_build_model_rejects_unknown_arch():
    with pytest.raises(ValueError, match="unknown arch 'resnet50'.*wrn38"):
        build_model("resnet50")
    with pytest.raises(ValueError, match="num_classes"):
        build_model("small", num_classes=0)


# ---------------------------------------------------------------------------- small model


def test_small_model_size_and_shapes():
    model = build_model("small")
    n_params = sum(p.numel() for p in model.parameters())
    n_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert n_params <= 2_500_000 and n_bytes <= 10_000_000
    model.eval()
    x = torch.randn(2, 3, 70, 130)  # not a multiple of the output stride
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (2, 19, 70, 130)
        for head in HEADS:
            feats = model.forward_features(x, head)
            assert feats.shape[-2:] == (18, 33)  # 1/4 resolution
            assert torch.equal(model.classify(feats, (70, 130), head), logits)


def test_small_model_output_stride_8_config():
    from trainer.models import SmallDeepLab

    model = SmallDeepLab(3, SmallConfig(output_stride=8)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="output_stride"):
        SmallConfig(output_stride=4)


def test_small_model_learns_from_scratch():
    torch.manual_seed(0)
    model = build_model("small", num_classes=3)
    x = torch.rand(4, 3, 64, 96)
    y = torch.zeros(4, 64, 96, dtype=torch.long)
    y[:, :, 32:] = 1
    y[:, 40:, :] = 2
    x[:, 0] += 0.8 * (y == 1)  # red on the right, blue at the bottom
    x[:, 2] += 0.8 * (y == 2)
    x = normalize(x.clamp(0, 1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


# ---------------------------------------------------------------------------- normalisation


def test_normalize_uint8_and_float_agree():
    img = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8)
    a = normalize(img)
    b = normalize(img.float() / 255)
    assert a.dtype == torch.float32 and torch.allclose(a, b)
    mean_pixel = torch.tensor(IMAGENET_MEAN).view(3, 1, 1).expand(3, 2, 2)
    assert normalize(mean_pixel).abs().max() < 1e-6
    one = normalize(torch.ones(3, 1, 1))
    assert torch.allclose(one.flatten(), (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD))
    assert torch.allclose(denormalize(b), img.float() / 255, atol=1e-6)


@pytest.mark.parametrize("bad", [torch.zeros(4, 4, 4, dtype=torch.uint8), torch.zeros(3, 4, dtype=torch.uint8)])
def test_normalize_rejects_bad_shapes(bad):
    with pytest.raises(ValueError, match="RGB"):
        normalize(bad)


def test_normalize_rejects_int_dtype():
    with pytest.raises(ValueError, match="dtype"):
        normalize(torch.zeros(3, 2, 2, dtype=torch.int32))
