"""``stylepaste evaluate``: anomaly benchmarks and Cityscapes mIoU for one or two checkpoints.

For every model, dataset and score the evaluator pools all valid pixels of the dataset and computes exact
AUROC, AP and FPR at 95 % TPR (:class:`evaluation.metrics.AnomalyMetrics`); on a Cityscapes-layout split it
computes the 19-class mIoU instead (and its change from the base model when one is given). It writes a
results table in the poster's format (markdown, CSV, JSON), ROC and precision-recall curves, and overlays
of the hardest frames (frame, ground truth, anomaly heat map side by side).

This module builds the models from their checkpoints; the loop and the report are :mod:`evaluation.loop`.
"""

from __future__ import annotations

import argparse
import json
import logging
import posixpath
import sys
from dataclasses import asdict, replace

import fsspec
import numpy as np
import torch

from evaluation import loop
from evaluation.loop import BuiltModel
from evaluation.report import markdown_table
from evaluation.results import EvaluateConfig, EvaluationResult, ModelSpec
from evaluation.scores import ALL_SCORES
from schemas.labels import NUM_CLASSES
from schemas.manifest import join_url
from schemas.runtime import resolve_device
from schemas.storage import (
    OWNER_NAME, WORK_DIR, atomic_write, commit_replace, new_run_id, recover, remove_if_empty, write_owner,
)
from trainer.checkpoint import checkpoint_info, load_checkpoint
from trainer.models import build_model, normalize


log = logging.getLogger(__name__)

def load_model(spec: ModelSpec, device: torch.device) -> torch.nn.Module:
    """Build ``spec``'s architecture, load its checkpoint strictly and put it in eval mode."""
    arch = spec.arch
    if arch is None:
        info = checkpoint_info(spec.checkpoint)
        arch = info.get("arch")
        if not arch:
            raise ValueError(f"{spec.checkpoint}: the checkpoint does not record its architecture; pass --arch")
    model = build_model(arch)
    load_checkpoint(model, spec.checkpoint)
    return model.eval().to(device)


@torch.no_grad()
def predict(model: torch.nn.Module, image: np.ndarray, device: torch.device) -> torch.Tensor:
    """Logits of one frame.

    Args:
        model: A model from :func:`trainer.models.build_model` in eval mode.
        image: uint8 (H, W, 3).
        device: Where the model lives.

    Returns:
        float32 logits [1, C, H, W] on the CPU.
    """
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(device)
    return model(normalize(x)).float().cpu()


def built_model(spec: ModelSpec, device: torch.device) -> BuiltModel:
    """``spec``'s checkpoint as a :class:`evaluation.loop.BuiltModel`."""
    model = load_model(spec, device)
    return BuiltModel(predict=lambda image: predict(model, image, device),
                      num_classes=getattr(model, "num_classes", NUM_CLASSES))


RESULTS_NAME = "results.json"
"""The report file written last: a folder holding it is a complete ``stylepaste evaluate`` report."""


def evaluate(cfg: EvaluateConfig) -> EvaluationResult:
    """Load every model of ``cfg`` from its checkpoint, run :func:`evaluation.loop.evaluate` and write the report.

    The report is written into ``<out>/_temporary/<run id>/`` and committed into ``out`` at the end
    (:func:`schemas.storage.commit_replace`, ``results.json`` last), so a failed run leaves no partial report and
    an interrupted one is repaired by the next run. ``out`` must be empty, or hold a previous report and
    ``cfg.overwrite`` be set.

    Raises:
        ValueError: For unknown scores or datasets, or ``sml`` without ``sml_train``.
        FileExistsError: For a non-empty ``out`` without ``overwrite``, or one that holds no report.
    """
    loop.check_config(cfg)
    device = resolve_device(cfg.device)
    work, created = _begin_report(cfg)
    try:
        result = loop.evaluate(replace(cfg, out=work), lambda spec: built_model(spec, device))
        atomic_write(join_url(work, "config.json"), json.dumps(asdict(cfg), indent=2).encode("utf-8"))
        fs, wpath = fsspec.core.url_to_fs(work)
        names = sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(wpath, detail=False))
        with fs.open(posixpath.join(wpath, RESULTS_NAME), "rb") as f:
            text = f.read().decode("utf-8")
        fs.rm(posixpath.join(wpath, RESULTS_NAME))
        commit_replace(cfg.out, work, [n for n in names if n not in (RESULTS_NAME, OWNER_NAME)], text,
                       marker=RESULTS_NAME)
    except BaseException:
        _discard_report(cfg.out, work, created)
        raise
    result.files = [f.replace(work, cfg.out.rstrip("/"), 1) for f in result.files]
    return result


def _begin_report(cfg: EvaluateConfig) -> tuple[str, bool]:
    """Check ``cfg.out`` (see :func:`evaluate`), repair what dead runs left there and make this run's work
    folder. Returns the work folder URL and whether ``out`` was created."""
    fs, out = fsspec.core.url_to_fs(cfg.out)
    if fs.exists(out) and not fs.isdir(out):
        raise FileExistsError(f"output {cfg.out} is a file, not a folder")
    for line in recover(cfg.out):
        log.warning(line)
    names = [posixpath.basename(p.rstrip("/")) for p in (fs.ls(out, detail=False) if fs.exists(out) else [])]
    names = sorted(n for n in names if n != WORK_DIR)
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    if names and not cfg.overwrite:
        raise FileExistsError(f"output folder {cfg.out} is not empty ({shown}); pass --overwrite to replace a "
                              "previous report")
    if names and RESULTS_NAME not in names:
        raise FileExistsError(f"output folder {cfg.out} holds {shown} but no {RESULTS_NAME}: it is not a "
                              "stylepaste evaluate report, and --overwrite replaces only those (or an empty folder)")
    created = not fs.exists(out)
    work = join_url(cfg.out, WORK_DIR, new_run_id())
    fs.makedirs(fsspec.core.url_to_fs(work)[1], exist_ok=True)
    write_owner(work)
    return work, created


def _discard_report(out_url: str, work: str, created: bool) -> None:
    fs, wpath = fsspec.core.url_to_fs(work)
    _, out = fsspec.core.url_to_fs(out_url)
    if fs.exists(wpath):
        fs.rm(wpath, recursive=True)
    remove_if_empty(fs, posixpath.join(out, WORK_DIR))
    if created:
        remove_if_empty(fs, out)


def parse_dataset(text: str) -> tuple[str, str]:
    """Parse ``NAME=ROOT``.

    Raises:
        argparse.ArgumentTypeError: If there is no ``=`` or either side is empty.
    """
    name, sep, root = text.partition("=")
    if not sep or not name or not root:
        raise argparse.ArgumentTypeError(f"expected NAME=ROOT (e.g. fishyscapes_lostandfound=/data/fs), got {text!r}")
    return name, root


def _parse_scores(values: list[str], sml_available: bool) -> tuple[str, ...]:
    out: list[str] = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if part == "all":
                out += [s for s in ALL_SCORES if s != "sml" or sml_available]
            elif part:
                out.append(part)
    return tuple(dict.fromkeys(out))


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``stylepaste evaluate``."""
    p = argparse.ArgumentParser(
        prog="stylepaste evaluate",
        description="Evaluate checkpoints on anomaly benchmarks (exact pooled AUROC, AP, FPR95) and on Cityscapes "
        "(mIoU); write a results table (markdown, CSV, JSON), ROC/PR curves and overlays of the hardest frames.",
        epilog="Datasets: fishyscapes_lostandfound, fishyscapes_static, road_anomaly, smiyc_anomaly, smiyc_obstacle, "
        "lostandfound, synthetic (anomaly sets) and cityscapes_val (mIoU). Example: stylepaste evaluate "
        "--checkpoint runs/ft/model.pt --arch wrn38 --dataset fishyscapes_lostandfound=/data/fs_lf "
        "--base-checkpoint cityscapes_best.pth --dataset cityscapes_val=/data/cityscapes --out runs/eval",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint to evaluate (fsspec URL)")
    p.add_argument("--arch", default=None, choices=["wrn38", "r101", "small"],
                   help="architecture (read from the checkpoint when it records it)")
    p.add_argument("--label", default="finetuned", help="name of this model in the tables (default: %(default)s)")
    p.add_argument("--scores", nargs="+", default=["all"],
                   help=f"scores of the model: 'all' or any of {', '.join(ALL_SCORES)} (default: all; sml only "
                   "with --sml-train)")
    p.add_argument("--base-checkpoint", default=None, help="reference model for comparison and the mIoU change")
    p.add_argument("--base-arch", default=None, choices=["wrn38", "r101", "small"],
                   help="architecture of the base model (default: --arch)")
    p.add_argument("--base-label", default="base", help="name of the base model (default: %(default)s)")
    p.add_argument("--base-scores", nargs="+", default=None, help="scores of the base model (default: --scores)")
    p.add_argument("--dataset", action="append", type=parse_dataset, required=True, metavar="NAME=ROOT",
                   help="dataset to evaluate on (repeatable)")
    p.add_argument("--sml-train", default=None, help="Cityscapes-layout root whose train split gives SML statistics")
    p.add_argument("--sml-frames", type=int, default=100, help="frames for the SML statistics (default: %(default)s)")
    p.add_argument("--smooth-sigma", type=float, default=0.0, help="Gaussian smoothing of score maps (default: none)")
    p.add_argument("--overlays", type=int, default=4, help="hardest frames drawn per dataset (default: %(default)s)")
    p.add_argument("--overlay-score", default=None, help="score used to rank and draw hard frames (default: energy)")
    p.add_argument("--max-frames", type=int, default=None, help="at most this many frames per dataset")
    p.add_argument("--fpr-mode", choices=["first", "closest"], default="first",
                   help="FPR95 convention: first threshold with TPR>=0.95 (Fishyscapes/SMIYC) or closest (PEBAL)")
    p.add_argument("--false-alarm-stride", type=int, default=16,
                   help="count the false alarms by predicted class on every N-th inlier pixel (1 = exact, 0 = off; "
                        "default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--out", required=True, help="output folder (empty, or a previous report with --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a previous report in --out (a folder without results.json is never replaced)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(args: argparse.Namespace) -> EvaluateConfig:
    """Build the settings from parsed arguments."""
    sml = args.sml_train is not None
    scores = _parse_scores(args.scores, sml)
    models = [ModelSpec(args.label, args.checkpoint, args.arch, scores)]
    if args.base_checkpoint:
        base_scores = _parse_scores(args.base_scores, sml) if args.base_scores else scores
        models.append(ModelSpec(args.base_label, args.base_checkpoint, args.base_arch or args.arch, base_scores))
    return EvaluateConfig(
        models=tuple(models), datasets=tuple(args.dataset), out=args.out, base_label=args.base_label,
        sml_train=args.sml_train, sml_frames=args.sml_frames, smooth_sigma=args.smooth_sigma,
        overlays=args.overlays, overlay_score=args.overlay_score, max_frames=args.max_frames,
        fpr_mode=args.fpr_mode, false_alarm_stride=args.false_alarm_stride, device=args.device,
        progress=not args.no_progress, overwrite=args.overwrite,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``stylepaste evaluate``."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_args(args)
    result = evaluate(cfg)
    print(markdown_table(result))
    print(f"\nwrote {len(result.files)} files to {cfg.out} in {result.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
