"""Benchmark: exact streaming ``AnomalyMetrics`` against sklearn on the pooled pixels.

A Fishyscapes Lost & Found-like evaluation: ``--pixels`` labelled pixels (default 2x10^8, as 1024x2048
frames) with about 1 % anomaly pixels in a few rectangular objects per frame, about 12 % void and
float32 scores. Each side runs in its own subprocess on the same deterministic frames:

* ``ours``: frames are generated one at a time and fed to ``AnomalyMetrics.update``; then ``compute``.
* ``sklearn``: the valid pixels of all frames are pooled into two arrays (float32 scores, uint8 labels),
  then ``roc_auc_score`` and ``average_precision_score`` run on them.

Time counts only the metric calls (not frame generation). Peak extra memory is the growth of the
process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) over its resident set
when the measured part starts: for sklearn after the pooled input arrays exist, for ours after the
first frame exists (generating the following frames stays inside the measurement). The
script prints both, their ratios, and whether AUROC and AP agree within 1e-9.

Usage: ``python benchmarks/metrics.py [--pixels 2e8] [--seed 0]`` (run from the repository root).
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from schemas.rng import rng_for  # noqa: E402

TOLERANCE = 1e-9


@dataclass(frozen=True)
class Settings:
    """Benchmark settings.

    Attributes:
        pixels: Total labelled pixels (rounded to whole frames).
        height, width: Frame size.
        seed: Seed of the frame generator.
    """

    pixels: int = 200_000_000
    height: int = 1024
    width: int = 2048
    seed: int = 0

    @property
    def frames(self) -> int:
        return max(1, round(self.pixels / (self.height * self.width)))

    @property
    def frame_shape(self) -> tuple[int, int]:
        if self.pixels < self.height * self.width:  # small runs: one shorter frame
            return max(8, self.pixels // self.width), self.width
        return self.height, self.width


def make_frame(settings: Settings, index: int) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic frame: (scores float32 [H, W], labels uint8 [H, W]) with 0 / 1 / 255 labels."""
    rng = rng_for(settings.seed, ("metrics-benchmark", index))
    h, w = settings.frame_shape
    labels = np.zeros((h, w), dtype=np.uint8)
    labels[: h // 10] = 255  # a void band (ego vehicle / out of region)
    labels[rng.random((h, w), dtype=np.float32) < 0.02] = 255
    target = 0.01 * h * w
    while np.count_nonzero(labels == 1) < target:  # a few objects of varied size
        oh = int(rng.integers(max(2, h // 60), max(3, h // 10)))
        ow = int(rng.integers(max(2, w // 120), max(3, w // 20)))
        y0, x0 = int(rng.integers(h // 10, h - oh)), int(rng.integers(0, w - ow))
        labels[y0 : y0 + oh, x0 : x0 + ow] = 1
    scores = rng.standard_normal((h, w), dtype=np.float32)
    scores += np.float32(2.5) * (labels == 1)
    scores += np.float32(rng.normal(0.0, 0.3))  # frame-level offset, as real score maps have
    return scores, labels


class PeakMemory:
    """Peak resident memory growth of this process, from ``/proc/self/status``."""

    @staticmethod
    def _status(field: str) -> int:
        text = Path("/proc/self/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024

    def start(self) -> None:
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
        self.base = self._status("VmRSS")

    def extra(self) -> int:
        return self._status("VmHWM") - self.base


def run_ours(settings: Settings) -> dict:
    from evaluation.metrics import AnomalyMetrics

    metric = AnomalyMetrics()
    scores, labels = make_frame(settings, 0)
    probe = PeakMemory()
    probe.start()  # the baseline holds one input frame, as sklearn's holds all its input
    seconds = 0.0
    for i in range(settings.frames):
        if i:
            scores, labels = make_frame(settings, i)
        t0 = time.perf_counter()
        metric.update(scores, labels)
        seconds += time.perf_counter() - t0
        del scores, labels
    update_seconds = seconds
    t0 = time.perf_counter()
    result = metric.compute()
    seconds += time.perf_counter() - t0
    return {"seconds": seconds, "update_seconds": update_seconds, "extra_bytes": probe.extra(), "auroc": result["auroc"], "ap": result["ap"],
            "valid_pixels": result["num_pos"] + result["num_neg"], "num_pos": result["num_pos"]}


def run_sklearn(settings: Settings) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    ys, ss = [], []
    for i in range(settings.frames):
        scores, labels = make_frame(settings, i)
        valid = labels != 255
        ys.append((labels[valid] == 1).astype(np.uint8))
        ss.append(scores[valid])
    y, s = np.concatenate(ys), np.concatenate(ss)
    del ys, ss
    probe = PeakMemory()
    probe.start()
    t0 = time.perf_counter()
    auroc = roc_auc_score(y, s)
    ap = average_precision_score(y, s)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "extra_bytes": probe.extra(), "auroc": float(auroc), "ap": float(ap),
            "valid_pixels": int(y.size), "num_pos": int(y.sum())}


def _worker(settings: Settings, side: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--pixels", str(settings.pixels),
           "--height", str(settings.height), "--width", str(settings.width), "--seed", str(settings.seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{side} worker failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pixels", type=float, default=Settings.pixels, help="labelled pixels in total (default 2e8)")
    parser.add_argument("--height", type=int, default=Settings.height, help="frame height (default 1024)")
    parser.add_argument("--width", type=int, default=Settings.width, help="frame width (default 2048)")
    parser.add_argument("--seed", type=int, default=Settings.seed, help="frame generator seed")
    parser.add_argument("--worker", choices=["ours", "sklearn"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pixels < 1 or args.height < 8 or args.width < 8:
        parser.error("--pixels must be >= 1 and the frame at least 8x8")
    settings = Settings(int(args.pixels), args.height, args.width, args.seed)
    if args.worker:
        out = run_ours(settings) if args.worker == "ours" else run_sklearn(settings)
        print("RESULT " + json.dumps(out), flush=True)
        return 0

    h, w = settings.frame_shape
    print(f"{settings.frames} frames of {h}x{w} = {settings.frames * h * w:,} labelled pixels ({asdict(settings)})")
    ours = _worker(settings, "ours")
    ref = _worker(settings, "sklearn")
    gib = 1024**3
    print(f"valid pixels {ours['valid_pixels']:,}, anomaly pixels {ours['num_pos']:,}")
    for name, r in (("AnomalyMetrics", ours), ("sklearn roc_auc_score + average_precision_score", ref)):
        print(f"{name:>48}: {r['seconds']:8.2f} s, peak extra memory {r['extra_bytes'] / gib:6.2f} GiB "
              f"({r['extra_bytes'] / r['valid_pixels']:5.1f} B/valid pixel), AUROC {r['auroc']:.12f}, AP {r['ap']:.12f}")
    print(f"AnomalyMetrics split: update {ours['update_seconds']:.2f} s over {settings.frames} frames, "
          f"compute {ours['seconds'] - ours['update_seconds']:.2f} s")
    print(f"speed-up: {ref['seconds'] / ours['seconds']:.1f}x, memory ratio sklearn/ours: "
          f"{ref['extra_bytes'] / max(1, ours['extra_bytes']):.1f}x")
    d_auc, d_ap = abs(ours["auroc"] - ref["auroc"]), abs(ours["ap"] - ref["ap"])
    same = d_auc <= TOLERANCE and d_ap <= TOLERANCE and ours["valid_pixels"] == ref["valid_pixels"]
    print(f"equal within {TOLERANCE:g}: {same} (|dAUROC| = {d_auc:.2e}, |dAP| = {d_ap:.2e})")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
