"""Throughput of the style aligners: aligned objects per second at 256x256, batch 1 and batch 16.

Run from the repository root::

    .venv/bin/python benchmarks/style.py                 # CPU (and the GPU too when one exists)
    .venv/bin/python benchmarks/style.py --device cuda --threads 1

Every aligner gets the augment pipeline's inputs: a 256x256 object crop with its mask, a 256x512 thumbnail
of the destination frame, the source image's statistics and the destination's full-resolution statistics.
All figures of one table come from one run on one machine; the last column is the batch-16 over batch-1
speed-up. It also times the object-bank entry point ``image_style_stats`` on a 640x480 image, seam blending
and the visibility measure.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from style_transfer import blend, get_aligner, image_style_stats, style_stats, visibility  # noqa: E402
from style_transfer.learned import ColorShiftGenerator, LearnedAligner  # noqa: E402

ALIGNERS: list[tuple[str, str, dict]] = [
    ("none", "none", {}),
    ("reinhard (image)", "reinhard", {"mode": "image"}),
    ("reinhard (object)", "reinhard", {"mode": "object"}),
    ("sensor", "sensor", {}),
    ("sensor + jpeg q80", "sensor", {"compression": 80}),
    ("histogram (image)", "histogram", {"mode": "image"}),
    ("histogram (object)", "histogram", {"mode": "object"}),
    ("fda (beta 0.01)", "fda", {"beta": 0.01}),
    ("reinhard+sensor", "reinhard+sensor", {}),
    ("learned (1x1 toy)", "learned", {}),
]


@dataclass(frozen=True)
class Settings:
    """Benchmark settings."""

    device: str
    size: int
    batches: tuple[int, ...]
    min_seconds: float
    threads: int | None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(fn: Callable[[], object], items: int, device: torch.device, min_seconds: float) -> float:
    """Items per second of ``fn`` (one warm-up call, then repeat for at least ``min_seconds``)."""
    fn()
    _sync(device)
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        _sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and calls >= 3:
            return calls * items / elapsed


def _inputs(b: int, size: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(b)
    content = torch.rand(b, 3, size // 8, size // 8, generator=g)
    content = torch.nn.functional.interpolate(content, size=(size, size), mode="bilinear", align_corners=False)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    mask = (((yy - size / 2) / (size * 0.35)) ** 2 + ((xx - size / 2) / (size * 0.3)) ** 2 < 1)[None, None]
    style = torch.rand(1, 3, 32, 64, generator=g)
    style = torch.nn.functional.interpolate(style, size=(size, 2 * size), mode="bilinear", align_corners=False)
    dst = style_stats(style).expand(b, -1).clone()
    dst[:, 7] = 2.0  # a noisier destination, so the sensor aligner adds noise
    dst[:, 6] = dst[:, 6] * 0.5  # and a blurrier one
    return {
        "content": content.to(device),
        "mask": mask.expand(b, 1, size, size).to(device),
        "style": style.expand(b, -1, -1, -1).to(device),
        "source_stats": style_stats(content).to(device),
        "style_stats": dst.to(device),
        "noise_seeds": list(range(b)),
        "content_scale": torch.full((b,), 0.5, device=device),
    }


def _build(name: str, params: dict) -> torch.nn.Module:
    if name == "learned":
        return LearnedAligner(ColorShiftGenerator())
    return get_aligner(name, **params)


def run(settings: Settings, device: torch.device) -> None:
    print(f"\n== aligned objects per second, {settings.size}x{settings.size} crops, device {device} "
          f"({torch.get_num_threads()} CPU threads) ==")
    header = f"{'aligner':<22}" + "".join(f"{'batch ' + str(b):>12}" for b in settings.batches) + f"{'ratio':>8}"
    print(header)
    data = {b: _inputs(b, settings.size, device) for b in settings.batches}
    for label, name, params in ALIGNERS:
        aligner = _build(name, params).to(device).eval()
        rates = []
        for b in settings.batches:
            d = data[b]

            def call(d=d) -> torch.Tensor:
                with torch.inference_mode():
                    return aligner(
                        d["content"], d["mask"], d["style"], None, d["source_stats"],
                        style_stats=d["style_stats"], noise_seeds=d["noise_seeds"], content_scale=d["content_scale"],
                    )

            rates.append(_rate(call, b, device, settings.min_seconds))
        ratio = rates[-1] / rates[0]
        print(f"{label:<22}" + "".join(f"{r:>12.1f}" for r in rates) + f"{ratio:>8.2f}")

    print(f"\n== other steps, objects per second at batch {settings.batches[-1]}, device {device} ==")
    d = data[settings.batches[-1]]
    b = settings.batches[-1]
    bg = d["style"][..., : settings.size].contiguous()
    for mode in ("feather", "laplacian"):
        rate = _rate(lambda mode=mode: blend(bg, d["content"], d["mask"], mode=mode), b, device, settings.min_seconds)
        print(f"{'blend ' + mode:<22}{rate:>12.1f}")
    rate = _rate(lambda: visibility(bg, d["mask"]), b, device, settings.min_seconds)
    print(f"{'visibility':<22}{rate:>12.1f}")


def bank_stats(min_seconds: float) -> None:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    from PIL import Image

    img = np.asarray(Image.fromarray(small).resize((640, 480), Image.BILINEAR))
    rate = _rate(lambda: image_style_stats(img), 1, torch.device("cpu"), min_seconds)
    print(f"\n== image_style_stats on a 640x480 uint8 image (CPU, {torch.get_num_threads()} threads): "
          f"{1000.0 / rate:.1f} ms per image ==")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"],
                        help="cpu, cuda, or auto (CPU, plus the GPU when one exists)")
    parser.add_argument("--size", type=int, default=256, help="crop side in pixels (default 256)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="batch sizes (default 1 16)")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="time per measurement (default 1.0)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    settings = Settings(args.device, args.size, tuple(args.batches), args.min_seconds, args.threads)
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    if settings.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was requested but torch.cuda.is_available() is False")
    devices = []
    if settings.device in ("cpu", "auto"):
        devices.append(torch.device("cpu"))
    if settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available()):
        devices.append(torch.device("cuda"))
    print(f"torch {torch.__version__}; CPU threads {torch.get_num_threads()}; "
          f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    for device in devices:
        run(settings, device)
    bank_stats(settings.min_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
