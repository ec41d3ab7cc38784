"""Trainer speed figures, measured in one run and printed as ratios.

1. **Head-only step vs forward-only pass.** A head-only finetuning step (frozen body under ``no_grad``, head
   forward + backward + Adam step, loss ``CE + L_ood``) against an inference forward pass of the same batch, for
   ``--head classifier`` and ``--head final``; a full-model training step for scale.
2. **Stream decode throughput vs decoding the same PNGs directly.** Frames per second of
   :class:`trainer.data.ShardStream` (Parquet row groups -> decoded uint8 tensors, in-process and with
   ``DataLoader`` workers) against a plain loop over the same PNG bytes with :func:`schemas.codecs.decode_png`.

Usage::

    python benchmarks/train.py [--arch small] [--size 256,512] [--batch 4] [--frames 64] [--workers 2]

Frames are generated (smooth gradients, blobs and mild noise, so PNG sizes are realistic) unless
``--cityscapes ROOT`` points to a Cityscapes layout whose train frames are used instead.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from schemas.arrow import FRAME, table_from_rows  # noqa: E402
from schemas.codecs import decode_image, decode_png, encode_png  # noqa: E402
from schemas.labels import OOD  # noqa: E402
from schemas.manifest import Manifest, shard_info, write_manifest  # noqa: E402
from trainer.data import ShardStream  # noqa: E402
from trainer.heads import BaseHead, freeze_all_but_head, head_loss  # noqa: E402
from trainer.losses import LossConfig, total_loss  # noqa: E402
from trainer.models import build_model  # noqa: E402


def _timeit(fns: dict[str, Callable[[], None]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, measured in interleaved rounds (fair under a noisy load)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_head_step(arch: str, size: tuple[int, int], batch: int, repeats: int) -> None:
    """Print the cost of head-only steps relative to a forward pass."""
    torch.manual_seed(0)
    h, w = size
    x = torch.randn(batch, 3, h, w)
    y = torch.randint(0, 19, (batch, h, w))
    y[:, h // 3: h // 2, w // 3: w // 2] = OOD
    cfg = LossConfig()

    model = build_model(arch).eval()

    def forward() -> None:
        with torch.no_grad():
            model(x)

    fns = {"forward only (no_grad, eval)": forward}
    for head in ("classifier", "final"):
        m = build_model(arch)
        params = freeze_all_but_head(m, head)
        base = BaseHead(m, head)
        opt = torch.optim.Adam(params, lr=1e-4)

        def step(m=m, opt=opt, head=head, base=base) -> None:
            with torch.no_grad():
                feats = m.forward_features(x, head)
            loss, _ = head_loss(m, feats, x.shape[-2:], y, cfg, head, base)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        fns[f"head-only step, head={head}"] = step
    full = build_model(arch).train()
    full_opt = torch.optim.Adam(full.parameters(), lr=1e-4)

    def full_step() -> None:
        loss, _ = total_loss(full(x), y, LossConfig(inlier="ce"))
        full_opt.zero_grad(set_to_none=True)
        loss.backward()
        full_opt.step()

    fns["full-model training step"] = full_step
    res = _timeit(fns, repeats)
    t_fwd = res["forward only (no_grad, eval)"]
    print(f"\n[1] head-only step vs forward: arch={arch}, batch {batch} x {h}x{w}, {torch.get_num_threads()} "
          f"threads, median of {repeats} interleaved rounds")
    for name, t in res.items():
        print(f"  {name:<34} {1000 * t:9.1f} ms   x{t / t_fwd:5.2f} of forward")


def _synthetic_frame(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.empty((h, w, 3), np.float32)
    for c in range(3):
        a, b, d = rng.uniform(-1, 1, 3)
        image[..., c] = 128 + 60 * np.sin(a * xx / 40 + b * yy / 30 + d)
    label = np.zeros((h, w), np.uint8)
    for k in range(12):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(h // 16, h // 4)
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        label[blob] = k % 19
        image[blob] = rng.uniform(20, 235, 3)
    label[h // 2: h // 2 + h // 10, w // 3: w // 3 + w // 10] = OOD
    image += rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


def _frames(args: argparse.Namespace) -> list[tuple[str, bytes, bytes]]:
    out = []
    if args.cityscapes:
        from schemas.cityscapes import list_frames, read_image, read_train_ids

        for f in list_frames(args.cityscapes, "train")[: args.frames]:
            out.append((f.frame_id, encode_png(read_image(f)), encode_png(read_train_ids(f))))
        return out
    rng = np.random.default_rng(0)
    for i in range(args.frames):
        image, label = _synthetic_frame(rng, *args.size)
        out.append((f"bench_{i:06d}_000019", encode_png(image), encode_png(label)))
    return out


def bench_stream(args: argparse.Namespace) -> None:
    """Print stream decode throughput against a direct PNG decode loop over the same bytes."""
    frames = _frames(args)
    h, w = decode_png(frames[0][2]).shape
    with tempfile.TemporaryDirectory() as tmp:
        rows = [{
            "frame_id": fid, "split": "train", "image": img, "label": lab, "height": h, "width": w,
            "ood_pixels": 0, "objects": [], "aligner": "none", "aligner_params": "{}", "seed": 0,
            "source_image": "", "source_label": "",
        } for fid, img, lab in frames]
        infos = []
        per = max(1, len(rows) // 4)
        for s in range(0, len(rows), per):
            path = f"{tmp}/part-{s // per:05d}.parquet"
            pq.write_table(table_from_rows(rows[s: s + per], FRAME), path, row_group_size=args.row_group)
            infos.append(shard_info(path))
        write_manifest(tmp, Manifest(kind=FRAME.name, schema_version=FRAME.version, shards=tuple(infos)))
        mb = sum(len(i) + len(lab) for _, i, lab in frames) / len(frames) / 1e6

        def direct() -> None:
            for fid, img, lab in frames:
                decode_image(img, name=fid)
                decode_png(lab, name=fid)

        n = len(frames)

        def endless(workers: int):
            s = ShardStream(tmp, seed=0, shuffle_buffer=16, rank=0, world_size=1, epochs=None)
            return iter(DataLoader(s, batch_size=args.batch, num_workers=workers,
                                   prefetch_factor=2 if workers else None))

        it0 = endless(0)

        def in_process() -> None:
            for _ in range(n // args.batch):
                next(it0)

        res = _timeit({"direct": direct, "in-process": in_process}, args.repeats)
        t_direct, t0 = res["direct"], res["in-process"]
        del it0
        # Workers decode in the background, so they are timed alone (nothing else running), in steady state:
        # after a warm-up, over args.repeats epochs; the prefetch queue (2 batches per worker) at the start
        # flatters the figure by at most 2 * workers / (repeats * n / batch).
        itw = endless(args.workers)
        for _ in range(2 * 2 * args.workers):
            next(itw)
        t = time.perf_counter()
        for _ in range(args.repeats * (n // args.batch)):
            next(itw)
        tw = (time.perf_counter() - t) / args.repeats
        del itw
    print(f"\n[2] stream decode: {n} frames of {h}x{w} ({mb:.2f} MB PNG image+label each), row groups of "
          f"{args.row_group}, stream batches of {args.batch}, median of {args.repeats}")
    print(f"  {'direct decode_png loop (1 process)':<40} {n / t_direct:8.1f} frames/s")
    print(f"  {'ShardStream, in-process':<40} {n / t0:8.1f} frames/s   x{t_direct / t0:5.2f} of direct")
    print(f"  {f'ShardStream, DataLoader {args.workers} workers':<40} {n / tw:8.1f} frames/s   "
          f"x{t_direct / tw:5.2f} of direct")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="small", choices=("small", "r101", "wrn38"))
    p.add_argument("--size", type=lambda t: tuple(int(v) for v in t.split(",")), default=(256, 512))
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--frames", type=int, default=128)
    p.add_argument("--row-group", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cityscapes", default="", help="use the train frames of this Cityscapes layout")
    p.add_argument("--skip", choices=("step", "stream"), default=None, help="skip one of the benchmarks")
    args = p.parse_args(argv)
    if args.skip != "step":
        bench_head_step(args.arch, args.size, args.batch, args.repeats)
    if args.skip != "stream":
        bench_stream(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
