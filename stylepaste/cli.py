"""The ``stylepaste`` command: one entry point, one sub-command per stage, ``--help`` on each."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys

from schemas.errors import user_error_message


class _BeamImportNoise(logging.Filter):
    """Drop apache-beam's import-time warning about the optional BigQuery client (apitools), which no stage uses
    and which would otherwise open every ``--help``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()

# Stage name -> (module exposing ``main(argv) -> int``, one-line description).
STAGES: dict[str, tuple[str, str]] = {
    "world": ("synthetic.world", "write the synthetic city in real dataset layouts"),
    "bank": ("pipelines.bank", "cut COCO instance masks into an object bank of Parquet shards (Beam)"),
    "augment": ("pipelines.augment", "paste style-aligned bank objects into Cityscapes frames -> training shards"),
    "study": ("stylepaste.study", "the poster's ablations on the synthetic city (alignment, top-k, head), mean ± std"),
    "pretrain": ("trainer.pretrain", "train a segmentation model from scratch on a Cityscapes layout (demo model)"),
    "finetune": ("trainer.finetune", "finetune only the classification head on augmented-frame shards"),
    "evaluate": ("trainer.evaluate", "anomaly benchmarks (AUROC, AP, FPR95) and mIoU; tables, curves, overlays"),
    "corpus": ("stylepaste.corpus", "describe a bank or frame corpus (info) and check its shards (verify)"),
    "demo": ("stylepaste.demo", "run the main job end to end on the synthetic city"),
}

_OWN_LOG_LEVEL = {"bank", "augment"}
"""Stages whose parser takes ``--log-level`` itself (the others get it removed here)."""


def _pop_log_level(stage: str, rest: list[str]) -> tuple[str, list[str]]:
    """The ``--log-level`` value (default WARNING) and the arguments the stage's parser gets."""
    level, out, i = os.environ.get("STYLEPASTE_LOG_LEVEL", "WARNING"), [], 0
    while i < len(rest):
        arg = rest[i]
        if arg == "--log-level" and i + 1 < len(rest):
            level = rest[i + 1]
            if stage in _OWN_LOG_LEVEL:
                out += rest[i:i + 2]
            i += 2
            continue
        if arg.startswith("--log-level="):
            level = arg.split("=", 1)[1]
            if stage in _OWN_LOG_LEVEL:
                out.append(arg)
            i += 1
            continue
        out.append(arg)
        i += 1
    return level.upper(), out


def _usage() -> str:
    width = max(len(s) for s in STAGES)
    lines = [
        "usage: stylepaste <stage> [options]   (stylepaste <stage> --help for a stage's options)",
        "",
        "Anomaly-aware segmentation by style-aligned out-of-distribution copy-paste.",
        "",
        "stages:",
    ]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in STAGES.items()]
    return "\n".join(lines)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``stylepaste <stage> ...`` to the stage's ``main``.

    Args:
        argv: Arguments without the program name (defaults to ``sys.argv[1:]``).

    Returns:
        The stage's exit code; 2 for an unknown stage or a user error (bad settings, files or data:
        :func:`schemas.errors.user_error_message`), printed on one line. ``--log-level debug`` (any stage) shows
        the traceback instead.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    stage, rest = args[0], args[1:]
    logging.getLogger().addFilter(_BeamImportNoise())
    if stage not in STAGES:
        print(f"stylepaste: unknown stage {stage!r}; choose one of {', '.join(STAGES)}\n", file=sys.stderr)
        print(_usage(), file=sys.stderr)
        return 2
    level, rest = _pop_log_level(stage, rest)
    signal.signal(signal.SIGTERM, _terminate)  # a polite kill unwinds: runs discard their work folders
    module = importlib.import_module(STAGES[stage][0])
    try:
        return int(module.main(rest) or 0)
    except KeyboardInterrupt:
        print(f"stylepaste {stage}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = user_error_message(exc)
        if message is None or level == "DEBUG":
            raise
        print(f"stylepaste {stage}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
