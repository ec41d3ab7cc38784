"""``stylepaste demo``: the main job end to end on the embedded synthetic city."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo run.

    Attributes:
        out: Output folder (local path).
        seed: Seed of the synthetic city and every later stage.
    """

    out: str = "runs/demo"
    seed: int = 0


def build_parser() -> argparse.ArgumentParser:
    """The demo's command-line parser."""
    p = argparse.ArgumentParser(
        prog="stylepaste demo",
        description="Run the main job on the embedded synthetic city: write the city in real dataset layouts "
        "and summarise it.",
    )
    p.add_argument("--out", default=DemoConfig.out, help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=DemoConfig.seed, help="seed of every stage (default: %(default)s)")
    return p


def run(cfg: DemoConfig) -> int:
    """Run the demo chain.

    Args:
        cfg: Demo settings.

    Returns:
        Process exit code.
    """
    from pipelines import world

    start = time.perf_counter()
    print(f"[demo 1/1] synthetic city -> {cfg.out}/world", flush=True)
    rc = world.main(["--out", f"{cfg.out}/world", "--seed", str(cfg.seed)])
    print(f"[demo] finished in {time.perf_counter() - start:.1f} s", flush=True)
    return rc


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``stylepaste demo``."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return run(DemoConfig(out=args.out, seed=args.seed))
