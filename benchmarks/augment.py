"""Throughput of the augment pipeline: frames per second at 2048x1024 and at the demo resolution (256x512)
with 1 and 2 DirectRunner workers, and the share of worker time in decode, align, paste and encode.

Run from the repository root::

    .venv/bin/python benchmarks/augment.py                       # defaults below, a few minutes on 2 cores
    .venv/bin/python benchmarks/augment.py --full-frames 8 --demo-frames 32 --workers 1

Inputs: the full-resolution frames are the real Cityscapes samples in ``../shared/samples`` copied under new
frame ids (or, without the samples, synthetic-city frames rendered at 2048x1024); the demo frames are the
synthetic city at its default 256x512; the object bank is cut by the bank pipeline from the synthetic city's
COCO-like photographs. Every run uses the pipeline's defaults (paste probability 0.5, 1-3 objects,
``reinhard+sensor``, feather blending, PNG level 1, one torch thread per worker).

Figures: wall-clock time of the whole pipeline run (graph start to the last shard written, not counting the
driver's listing and commit), frames per second, the steady-state frames per second measured between a run
on N/4 and one on N frames (which removes the fixed start-up cost: worker processes import torch and Beam),
and the steady-state speed-up of 2 workers over 1. The load average is printed: on a shared machine other
jobs take cores away from the 2-worker runs. The phase shares come
from the pipeline's own Beam Metrics in the 1-worker run (``stylepaste_time`` counters around decode, plan,
placement, destination style statistics, paste and encode; RunInference's batch latency for alignment);
"other" is the wall time none of them covers (shuffles, pickling, Parquet writing, runner overhead).
All figures of one table come from one run on one machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import apache_beam as beam  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from pipelines import augment, run_folder  # noqa: E402
from pipelines.bank import BankConfig  # noqa: E402
from pipelines.bank import run as run_bank  # noqa: E402
from schemas.arrow import FRAME  # noqa: E402

SAMPLES = Path(os.environ.get("STYLEPASTE_SAMPLES", Path(__file__).resolve().parents[2] / "shared" / "samples"))
PHASES = ("decode", "plan", "place", "style", "align", "paste", "encode")


def options(workers: int) -> PipelineOptions:
    mode = "in_memory" if workers == 1 else "multi_processing"
    return PipelineOptions(["--runner=DirectRunner", f"--direct_num_workers={workers}",
                            f"--direct_running_mode={mode}"])


def full_res_city(root: Path, n: int) -> str:
    """``n`` 2048x1024 frames: the real samples under new ids, else synthetic frames at that size."""
    src = SAMPLES / "cityscapes"
    if not (src / "leftImg8bit" / "train").is_dir():
        from synthetic import world

        world.main(["--out", str(root / "world_full"), "--train", str(n), "--val", "0", "--anomaly", "0",
                    "--height", "1024", "--width", "2048", "--coco-images", "0", "--no-progress"])
        return str(root / "world_full" / "cityscapes")
    frames = sorted((src / "leftImg8bit" / "train").glob("*/*_leftImg8bit.png"))
    out = root / "city_full"
    for i in range(n):
        img = frames[i % len(frames)]
        stem = img.name[: -len("_leftImg8bit.png")]
        city = img.parent.name
        fid = f"bench_{i:06d}_000019"
        gt = src / "gtFine" / "train" / city
        (out / "leftImg8bit" / "train" / "bench").mkdir(parents=True, exist_ok=True)
        (out / "gtFine" / "train" / "bench").mkdir(parents=True, exist_ok=True)
        shutil.copy(img, out / "leftImg8bit" / "train" / "bench" / f"{fid}_leftImg8bit.png")
        for kind in ("labelIds", "labelTrainIds"):
            shutil.copy(gt / f"{stem}_gtFine_{kind}.png", out / "gtFine" / "train" / "bench" / f"{fid}_gtFine_{kind}.png")
    return str(out)


def metric_sums(result: beam.runners.runner.PipelineResult) -> dict[str, float]:
    """Seconds per phase from the run's Beam Metrics."""
    out = {k: 0.0 for k in PHASES}
    res = result.metrics().query()
    for c in res["counters"]:
        ns, name = c.key.metric.namespace, c.key.metric.name
        if ns == augment.TIME_NAMESPACE and name.endswith("_us"):
            out[name[:-3]] = out.get(name[:-3], 0.0) + (c.committed or c.attempted or 0) / 1e6
    for d in res["distributions"]:
        if d.key.metric.name.endswith("inference_batch_latency_micro_secs"):
            value = d.committed or d.attempted
            out["align"] += (value.sum if value else 0) / 1e6
    return out


def run_once(cfg: augment.AugmentConfig, workers: int) -> tuple[float, dict[str, float], dict]:
    frames, bank_urls, _ = augment.resolve_inputs(cfg)
    folder = run_folder.RunFolder.begin(cfg.out, overwrite=True)
    p = beam.Pipeline(options=options(workers))
    augment.write_outputs(augment.build_pipeline(p, cfg, frames, bank_urls), cfg, folder.work_url)
    start = time.perf_counter()
    result = p.run()
    result.wait_until_finish()
    wall = time.perf_counter() - start
    man = folder.commit(FRAME, parameters={}, seed=cfg.seed, overwrite=True)
    return wall, metric_sums(result), man.counts


def steady_rate(n: int, small: int, wall_n: float, wall_small: float, min_share: float = 0.05) -> float | None:
    """Frames per second without the fixed start-up cost: ``(n - small) / (wall(n) - wall(small))``, or ``None``
    when the difference is within the noise (not above ``min_share`` of ``wall(n)``): then the run is too short to
    tell, and no ratio is printed rather than a meaningless one."""
    delta = wall_n - wall_small
    if n <= small or delta <= min_share * wall_n:
        return None
    return (n - small) / delta


def _cell(value: float | None, width: int, fmt: str) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width}{fmt}}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full-frames", type=int, default=16, help="frames at 2048x1024")
    ap.add_argument("--demo-frames", type=int, default=64, help="frames at 256x512")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="DirectRunner worker counts")
    ap.add_argument("--keep", default=None, help="keep the inputs and outputs in this folder")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # the 1-worker runs execute in this process: one torch thread, like each worker

    root = Path(args.keep or tempfile.mkdtemp(prefix="bench_augment_"))
    root.mkdir(parents=True, exist_ok=True)
    from synthetic import world

    t0 = time.perf_counter()
    world.main(["--out", str(root / "world"), "--train", str(args.demo_frames), "--val", "0", "--anomaly", "0",
                "--coco-images", "40", "--no-progress", "--overwrite"])
    run_bank(BankConfig(coco=str(root / "world" / "coco"), out=str(root / "bank"), num_shards=2, overwrite=True),
             options(1))
    full_city = full_res_city(root, args.full_frames)
    print(f"inputs ready in {time.perf_counter() - t0:.1f} s under {root}; "
          f"full-resolution frames from {'the real samples' if 'city_full' in full_city else 'the synthetic city'}")

    datasets = [("2048x1024", full_city, args.full_frames), ("256x512 (demo)", str(root / "world" / "cityscapes"),
                                                               args.demo_frames)]
    print(f"load average before the runs: {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
          f"on {os.cpu_count()} cores")
    print(f"\n{'resolution':<16}{'workers':>8}{'frames':>8}{'pasted':>8}{'wall s':>9}{'frames/s':>10}"
          f"{'steady f/s':>12}{'speed-up':>10}")
    shares_rows = []
    for label, city, n in datasets:
        base = None
        small = max(1, n // 4)
        for w in args.workers:
            walls = {}
            for m in (small, n):
                cfg = augment.AugmentConfig(cityscapes=city, bank=str(root / "bank"),
                                            out=str(root / f"out_{label[:4]}_{m}_{w}"), device="cpu", num_shards=4,
                                            max_frames=m, overwrite=True)
                walls[m], phases, counts = run_once(cfg, w)
            wall = walls[n]
            fps = counts["written"] / wall
            steady = steady_rate(n, small, walls[n], walls[small])
            if w == args.workers[0]:
                base = steady
            pasted = counts.get("frames", {}).get("with_objects", 0)
            ratio = steady / base if steady is not None and base else None
            print(f"{label:<16}{w:>8}{counts['written']:>8}{pasted:>8}{wall:>9.2f}{fps:>10.2f}"
                  f"{_cell(steady, 12, '.2f')}{_cell(ratio, 9, '.2f')}{'x' if ratio is not None else ' '}",
                  flush=True)
            if w == 1:
                shares_rows.append((label, wall, phases))
    print(f"(steady f/s = (N - N/4) / (wall(N) - wall(N/4)): throughput without the fixed start-up cost; "
          f"speed-up is of steady f/s against the first worker count; n/a: wall(N) - wall(N/4) within the noise, "
          f"use more frames; load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())})")
    print("\nshare of the 1-worker wall time per phase (pipeline Beam Metrics):")
    print(f"{'resolution':<16}" + "".join(f"{k:>8}" for k in (*PHASES, "other")))
    for label, wall, phases in shares_rows:
        other = max(0.0, wall - sum(phases.values()))
        print(f"{label:<16}" + "".join(f"{100 * phases[k] / wall:>7.1f}%" for k in PHASES)
              + f"{100 * other / wall:>7.1f}%")
        per = {k: 1000 * v for k, v in phases.items()}
        print(f"{'':<16}" + "".join(f"{per[k]:>6.0f}ms" for k in PHASES) + "  (totals)")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
