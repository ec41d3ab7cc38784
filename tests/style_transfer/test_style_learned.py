from __future__ import annotations

import io
import warnings

import fsspec
import pytest
import torch
from torch import nn

from style_transfer import get_aligner
from style_transfer.learned import ColorShiftGenerator, LearnedAligner, load_generator

CLASS = "style_transfer.learned:ColorShiftGenerator"


def _generator(seed: int = 0) -> ColorShiftGenerator:
    torch.manual_seed(seed)
    gen = ColorShiftGenerator(hidden=4)
    with torch.no_grad():  # move away from the identity so the round trip is visible
        for p in gen.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return gen.eval()


def _write(url: str, data: bytes) -> str:
    with fsspec.open(url, "wb") as fh:
        fh.write(data)
    return url


def _inputs(scenes, blobs):
    content = scenes(2, 24, 32, seed=60)
    mask = blobs(2, 24, 32, seed=60)
    style = scenes(2, 20, 40, seed=61)
    return content, mask, style


def _expected(gen: nn.Module, content, mask, style) -> torch.Tensor:
    with torch.no_grad():
        return torch.where(mask, gen(content, style).clamp(0, 1), content)


def test_torchscript_round_trip_through_memory_fs(scenes, blobs):
    gen = _generator()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        buf = io.BytesIO()
        torch.jit.save(torch.jit.script(gen), buf)
    url = _write("memory://stylepaste-tests/gen.ts", buf.getvalue())
    aligner = get_aligner("learned", path=url, kind="torchscript")
    assert isinstance(aligner, LearnedAligner)
    content, mask, style = _inputs(scenes, blobs)
    with torch.no_grad():
        out = aligner(content, mask, style)
    torch.testing.assert_close(out, _expected(gen, content, mask, style))
    assert (out - content).abs().max() > 1e-3


def test_export_round_trip_local_file(tmp_path, scenes, blobs):
    gen = _generator(1)
    content, mask, style = _inputs(scenes, blobs)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(gen, (content, style), dynamic_shapes=({0: batch}, {0: batch}))
    path = tmp_path / "gen.pt2"
    torch.export.save(program, str(path))
    aligner = get_aligner("learned", path=str(path), kind="export").to("cpu").eval()  # as the Beam handler does
    with torch.no_grad():
        torch.testing.assert_close(aligner(content, mask, style), _expected(gen, content, mask, style))
        # a program exported for batch 1 runs item by item
        one = torch.export.export(gen, (content[:1], style[:1]))
        torch.export.save(one, str(tmp_path / "one.pt2"))
        per_item = get_aligner("learned", path=str(tmp_path / "one.pt2"), kind="export", per_item=True)
        torch.testing.assert_close(per_item(content, mask, style), _expected(gen, content, mask, style))


def test_state_dict_round_trip_with_named_class(tmp_path, scenes, blobs):
    gen = _generator(2)
    path = tmp_path / "gen.pth"
    torch.save({"state_dict": gen.state_dict(), "epoch": torch.tensor(3)}, path)
    aligner = get_aligner(
        "learned", path=str(path), kind="state_dict", module_class=CLASS,
        module_kwargs={"hidden": 4}, state_dict_key="state_dict", strength=0.5,
    )
    content, mask, style = _inputs(scenes, blobs)
    full = _expected(gen, content, mask, style)
    with torch.no_grad():
        torch.testing.assert_close(aligner(content, mask, style), content + 0.5 * (full - content))


def test_bad_and_mismatched_checkpoints_fail_clearly(tmp_path):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"not a checkpoint at all")
    for kind, message in (("torchscript", "TorchScript"), ("export", "torch.export"), ("state_dict", "weights-only")):
        extra = {"module_class": CLASS} if kind == "state_dict" else {}
        with pytest.raises(ValueError, match=message):
            load_generator(str(garbage), kind, **extra)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_generator(str(tmp_path / "missing.pth"), "state_dict", module_class=CLASS)
    with pytest.raises(ValueError, match="kind"):
        load_generator(str(garbage), "onnx")
    with pytest.raises(ValueError, match="module_class"):
        load_generator(str(garbage), "state_dict")
    with pytest.raises(ValueError, match="ClassName"):
        load_generator(str(garbage), "state_dict", module_class="style_transfer.learned.ColorShiftGenerator")
    with pytest.raises(ValueError, match="no attribute"):
        load_generator(str(garbage), "state_dict", module_class="style_transfer.learned:Nope")

    wrong_keys = tmp_path / "wrong_keys.pth"
    torch.save({"conv.weight": torch.zeros(3, 3, 1, 1)}, wrong_keys)
    with pytest.raises(ValueError, match=r"missing keys \['mix.bias'"):
        load_generator(str(wrong_keys), "state_dict", module_class=CLASS)
    wrong_shape = tmp_path / "wrong_shape.pth"
    torch.save(ColorShiftGenerator(hidden=16).state_dict(), wrong_shape)
    with pytest.raises(ValueError, match="size mismatch"):
        load_generator(str(wrong_shape), "state_dict", module_class=CLASS, module_kwargs={"hidden": 4})
    nested = tmp_path / "nested.pth"
    torch.save({"model": ColorShiftGenerator().state_dict()}, nested)
    with pytest.raises(ValueError, match="no entry 'state_dict'"):
        load_generator(str(nested), "state_dict", module_class=CLASS, state_dict_key="state_dict")


class _Shrinks(nn.Module):
    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return content[..., ::2, ::2]


def test_wrong_output_shape_fails_clearly(scenes, blobs):
    content, mask, style = _inputs(scenes, blobs)
    with pytest.raises(ValueError, match="shaped like content"):
        LearnedAligner(_Shrinks())(content, mask, style)
    with pytest.raises(ValueError, match="style pixels"):
        LearnedAligner(ColorShiftGenerator())(content, mask, None, style_stats=torch.zeros(9))


def test_style_size_resizes_the_style_for_the_generator(scenes, blobs):
    seen = {}

    class Spy(nn.Module):
        def forward(self, content, style):
            seen["style"] = tuple(style.shape)
            return content

    content, mask, style = _inputs(scenes, blobs)
    LearnedAligner(Spy(), style_size=(16, 16))(content, mask, style)
    assert seen["style"] == (2, 3, 16, 16)
