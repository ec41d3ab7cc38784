from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

apache_beam = pytest.importorskip("apache_beam")
from apache_beam.ml.inference.base import RunInference  # noqa: E402
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline  # noqa: E402
from apache_beam.testing.util import assert_that  # noqa: E402

from style_transfer import get_aligner, style_stats  # noqa: E402
from style_transfer.beam import AlignerModelHandler, AlignRequest, resolve_device  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


class CountingHandler(AlignerModelHandler):
    """Leaves one marker file per load_model and per run_inference call in ``marker_dir``."""

    def __init__(self, marker_dir: str, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.marker_dir = marker_dir

    def load_model(self):
        (Path(self.marker_dir) / f"load-{uuid.uuid4().hex}").touch()
        return super().load_model()

    def run_inference(self, batch, model, inference_args=None):
        (Path(self.marker_dir) / f"batch-{uuid.uuid4().hex}").touch()
        return super().run_inference(batch, model, inference_args)


def _u8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _requests(scenes, blobs, n: int = 5, with_style: bool = True) -> list[tuple[tuple[str, int], AlignRequest]]:
    frame = scenes(1, 48, 64, seed=70)[0]
    frame_stats = style_stats(frame[None])[0].numpy().copy()
    frame_stats[7] = 3.0  # a noisy destination: sensor adds seeded noise, which padding must not change
    frame_stats[6] *= 0.5  # and a blurry one
    sizes = [(20, 24), (32, 28), (20, 24), (17, 40), (26, 26), (20, 24)][:n]
    out = []
    for i, (h, w) in enumerate(sizes):
        content = scenes(1, h, w, seed=71 + i)[0]
        mask = blobs(1, h, w, seed=71 + i)[0, 0]
        source = style_stats(scenes(1, 40, 40, seed=90 + i))[0].numpy()
        req = AlignRequest(
            content=_u8(content),
            mask=mask.numpy().astype(np.uint8),
            style=_u8(frame) if with_style else None,
            style_stats=frame_stats,
            source_stats=source,
            content_scale=0.5 + 0.1 * i,
            seed=1000 + i,
        )
        out.append((("frame-7", i), req))
    return out


def _direct(aligner, req: AlignRequest) -> np.ndarray:
    """What the aligner gives for one request on its own."""
    to_t = lambda a: torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    with torch.no_grad():
        out = aligner(
            to_t(req.content),
            torch.from_numpy(req.mask != 0)[None, None],
            None if req.style is None else to_t(req.style),
            source_stats=torch.from_numpy(req.source_stats),
            style_stats=torch.from_numpy(req.style_stats),
            content_scale=req.content_scale,
            noise_seeds=[req.seed],
        )
    return _u8(out[0])


def test_run_inference_loads_once_and_matches_the_aligner(tmp_path, scenes, blobs):
    requests = _requests(scenes, blobs)
    aligner = get_aligner("reinhard+sensor")
    expected = {key: _direct(aligner, req) for key, req in requests}
    handler = CountingHandler(str(tmp_path), "reinhard+sensor", device="cpu", min_batch_size=2, max_batch_size=3)

    def check(results):
        got = dict(results)
        assert set(got) == set(expected)
        for key, arr in got.items():
            assert arr.dtype == np.uint8 and arr.shape == expected[key].shape
            assert np.abs(arr.astype(int) - expected[key].astype(int)).max() <= 1, key  # float rounding only

    with BeamTestPipeline() as p:
        results = p | "Create" >> apache_beam.Create(requests) | "Align" >> RunInference(handler)
        assert_that(results, check)
    assert len(list(tmp_path.glob("batch-*"))) >= 2  # several batches ...
    assert len(list(tmp_path.glob("load-*"))) == 1  # ... one load


def test_batching_modes(scenes, blobs):
    requests = _requests(scenes, blobs, n=6)
    fda = get_aligner("fda", beta=0.1)
    group = AlignerModelHandler("fda", {"beta": 0.1}, device="cpu", batch_shape="group")
    out = group.run_inference(requests, group.load_model())
    for (key, req), (key2, arr) in zip(requests, out):
        assert key == key2
        assert np.abs(arr.astype(int) - _direct(fda, req).astype(int)).max() <= 1  # exact up to rounding
    resize = AlignerModelHandler("histogram", device="cpu", batch_shape="resize", crop_size=(24, 24))
    out = resize.run_inference(requests, resize.load_model())
    for (_, req), (_, arr) in zip(requests, out):
        assert arr.shape == req.content.shape
        outside = req.mask == 0
        assert np.array_equal(arr[outside], req.content[outside])
        assert not np.array_equal(arr, req.content)


def test_stats_only_requests(scenes, blobs):
    requests = _requests(scenes, blobs, n=3, with_style=False)
    handler = AlignerModelHandler("reinhard+sensor", device="cpu")
    model = handler.load_model()
    out = handler.run_inference(requests, model)
    for (_, req), (_, arr) in zip(requests, out):
        assert np.abs(arr.astype(int) - _direct(model, req).astype(int)).max() <= 1
    needs_pixels = AlignerModelHandler("histogram", device="cpu")
    with pytest.raises(ValueError, match="style pixels"):
        needs_pixels.run_inference(requests, needs_pixels.load_model())


def test_handler_settings_and_errors():
    handler = AlignerModelHandler("none", min_batch_size=2, max_batch_size=8)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 2, "max_batch_size": 8}
    assert handler.share_model_across_processes() is False
    assert AlignerModelHandler("none", share_model_across_processes=True).share_model_across_processes()
    with pytest.raises(ValueError, match="device"):
        AlignerModelHandler("none", device="tpu")
    with pytest.raises(ValueError, match="unknown aligner"):
        AlignerModelHandler("issa")
    with pytest.raises(ValueError, match="crop_size"):
        AlignerModelHandler("none", batch_shape="resize")
    with pytest.raises(ValueError, match="style image, style_stats"):
        AlignRequest(content=np.zeros((4, 4, 3), np.uint8), mask=np.ones((4, 4), np.uint8))
    with pytest.raises(ValueError, match="mask"):
        AlignRequest(content=np.zeros((4, 4, 3), np.uint8), mask=np.ones((3, 4), np.uint8), style_stats=np.zeros(9))
    with pytest.raises(TypeError, match="AlignRequest"):
        handler.run_inference([("k", "not a request")], handler.load_model())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_asking_for_a_missing_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="no usable CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(RuntimeError, match="cuda"):
        AlignerModelHandler("none", device="cuda").load_model()
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu(scenes, blobs):
    requests = _requests(scenes, blobs, n=4)
    cpu = AlignerModelHandler("reinhard+sensor", device="cpu")
    gpu = AlignerModelHandler("reinhard+sensor", device="cuda")
    a = cpu.run_inference(requests, cpu.load_model())
    b = gpu.run_inference(requests, gpu.load_model())
    for (_, x), (_, y) in zip(a, b):
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 2


def test_package_import_does_not_import_beam():
    code = "import sys, style_transfer, style_transfer.learned; print('apache_beam' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
