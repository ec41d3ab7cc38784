"""Benchmark: object-bank throughput (objects per second) with 1 and 2 DirectRunner workers.

Runs ``stylepaste bank`` (:func:`pipelines.bank.run`) on the synthetic city's COCO layout (written first by
:mod:`synthetic.world`, ``--images`` photographs) or on ``--coco ROOT``, once per configuration:

* ``core``: the pure per-image function (:func:`pipelines.coco.cut_image_objects` + style statistics) in a
  loop in this process, one torch thread: the work without Beam;
* ``in_memory x1``: the DirectRunner in this process;
* ``multi_processing x1`` and ``x2``: the DirectRunner with 1 and 2 worker processes.

Each pipeline time is the whole ``run`` (pipeline construction, worker start, execution, commit), i.e. what
a user waits for. The script prints objects/s per configuration, the ratio of 2 to 1 multi-processing
workers, and checks that every run wrote byte-identical shards.

Usage: ``python benchmarks/bank.py [--images 400] [--coco ROOT] [--repeats 1]`` (from the repository root).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from pipelines import bank  # noqa: E402
from pipelines.coco import cut_image_objects, group_by_image, read_instances  # noqa: E402
from schemas.codecs import read_rgb  # noqa: E402
from schemas.manifest import join_url  # noqa: E402


def shard_digest(out: Path) -> str:
    """One digest over the shard files and the rejects file of an output folder."""
    h = hashlib.sha256()
    for p in sorted(out.iterdir()):
        if p.name != "_manifest.json":
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def core_rate(cfg: bank.BankConfig) -> tuple[int, float]:
    """Objects and seconds of the pure per-image function over the whole dataset, one torch thread."""
    import torch

    from style_transfer.stats import image_style_stats

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rules = bank.load_catalog(cfg).rules(cfg)
        data, _ = read_instances(cfg.annotations_url)
        tasks, _, _ = group_by_image(data)
        start = time.perf_counter()
        kept = 0
        for task in tasks:
            url = join_url(cfg.images_url, task["image"]["file_name"])
            kept += sum(1 for o in cut_image_objects(task, rules, url, read_rgb, image_style_stats)
                        if type(o).__name__ == "Kept")
        return kept, time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--coco", default=None, help="COCO root (default: write a synthetic city first)")
    p.add_argument("--split", default="train2017")
    p.add_argument("--images", type=int, default=400, help="synthetic photographs when --coco is not given")
    p.add_argument("--num-shards", type=int, default=8)
    p.add_argument("--repeats", type=int, default=1, help="runs per configuration (the best is kept)")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bank-bench-") as tmp:
        coco = args.coco
        if coco is None:
            from synthetic import world

            t = time.perf_counter()
            world.generate_world(world.WorldConfig(out=f"{tmp}/world", train=0, val=0, anomaly=0,
                                                   coco_images=args.images))
            coco = f"{tmp}/world/coco"
            print(f"synthetic COCO: {args.images} photographs written in {time.perf_counter() - t:.1f} s")
        print(f"machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f} at start")

        base = bank.BankConfig(coco=coco, out=f"{tmp}/out", split=args.split, num_shards=args.num_shards)
        kept, seconds = core_rate(base)
        results: list[tuple[str, int, float]] = [("core (no Beam), 1 thread", kept, seconds)]
        digests = set()
        for label, workers, mode in (("in_memory x1", 1, "in_memory"), ("multi_processing x1", 1, "multi_processing"),
                                     ("multi_processing x2", 2, "multi_processing")):
            best = float("inf")
            for r in range(args.repeats):
                out = Path(tmp) / f"out-{mode}-{workers}-{r}"
                cfg = bank.BankConfig(**{**base.__dict__, "out": str(out)})
                opts = PipelineOptions([f"--direct_num_workers={workers}", f"--direct_running_mode={mode}"])
                t = time.perf_counter()
                manifest = bank.run(cfg, opts)
                best = min(best, time.perf_counter() - t)
                digests.add(shard_digest(out))
            results.append((label, manifest.rows, best))

        print(f"\n{'configuration':<28} {'objects':>8} {'seconds':>8} {'objects/s':>10}")
        for label, n, s in results:
            print(f"{label:<28} {n:>8} {s:>8.2f} {n / s:>10.1f}")
        rate = {label: n / s for label, n, s in results}
        print(f"\nratio multi_processing x2 / x1: {rate['multi_processing x2'] / rate['multi_processing x1']:.2f}")
        print(f"ratio multi_processing x2 / in_memory x1: {rate['multi_processing x2'] / rate['in_memory x1']:.2f}")
        print(f"identical shards across runs: {len(digests) == 1}")
        print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0 if len(digests) == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
