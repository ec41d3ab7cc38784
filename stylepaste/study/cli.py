"""The ``stylepaste study`` command line."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from schemas.labels import NUM_CLASSES
from stylepaste.study.config import ALIGNMENTS, DEFAULT_ALIGNMENT, DEFAULT_INLIER, LEARNED, StudyConfig
from stylepaste.study.runner import run
from style_transfer.registry import AlignerSpec
from trainer.finetune import parse_paste_filter
from trainer.losses import INLIER_KINDS

def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def build_parser() -> argparse.ArgumentParser:
    """The ``stylepaste study`` argument parser."""
    d = StudyConfig(world="", bank="", bases=("x",))
    p = argparse.ArgumentParser(
        prog="stylepaste study",
        description="The poster's ablations on the synthetic city: inlier term, style alignment, top-k and "
                    "trained part, with a head-only ceiling (linear probes), "
                    "finetuned from every --base with every seed on cached body features, evaluated on the "
                    "synthetic anomaly set (AUROC/AP/FPR95 for max logit, energy, max-min) and the val mIoU; "
                    "writes study.md (mean ± std tables) and study.json (every run).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--world", default="runs/world0", help="folder written by stylepaste world")
    p.add_argument("--eval-world", default="",
                   help="validation world (stylepaste world --seed 1): its anomaly set and val split are evaluated "
                        "beside --world's and the report shows them first, as the place where choices are made; "
                        "the train corpora always come from --world")
    p.add_argument("--bank", default="runs/bank0", help="object bank folder (stylepaste bank)")
    p.add_argument("--base", action="append", required=True, help="base model checkpoint (repeat for several)")
    p.add_argument("--out", default=d.out, help="output folder")
    p.add_argument("--arch", default=d.arch, help="architecture of the base models")
    p.add_argument("--alignments", type=_names, default=d.alignments,
                   help=f"alignment settings, comma-separated, from {', '.join(ALIGNMENTS)} (and {LEARNED}, "
                        "with --learned-params)")
    p.add_argument("--learned-params", default="",
                   help='parameters of a trained style generator as JSON, e.g. \'{"path": "gen.ts", "kind": '
                        '"torchscript"}\' (see style_transfer.learned); adds the alignment "learned"')
    p.add_argument("--default-alignment", default=d.default_alignment, help="alignment of the top-k and head rows")
    p.add_argument("--inliers", type=_names, default=d.inliers,
                   help=f"inlier terms of the inlier rows, comma-separated, from {', '.join(INLIER_KINDS)}")
    p.add_argument("--inlier", default=d.inlier, choices=INLIER_KINDS,
                   help="inlier term of the alignment, top-k and head rows")
    p.add_argument("--inlier-weight", type=float, default=d.inlier_weight, help="weight of the inlier anchor")
    p.add_argument("--probe-steps", type=int, default=d.probe_steps,
                   help="steps of the head-only ceiling's linear probes (0: no probes)")
    p.add_argument("--ks", type=_ints, default=d.ks, help="k values of the top-k rows")
    p.add_argument("--heads", type=_names, default=d.heads, help="heads of the head rows")
    p.add_argument("--seeds", type=_ints, default=d.seeds, help="finetune seeds")
    p.add_argument("--steps", type=int, default=d.steps, help="finetune steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="finetune batch size")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate")
    p.add_argument("--order-workers", type=int, default=d.order_workers,
                   help="finetune --workers whose data order is reproduced")
    p.add_argument("--augment-seed", type=int, default=d.augment_seed, help="seed of the augmented corpora")
    p.add_argument("--max-train-frames", type=int, default=None, help="augment only the first N train frames")
    p.add_argument("--max-test-frames", type=int, default=None, help="evaluate at most N anomaly frames")
    p.add_argument("--max-val-frames", type=int, default=None, help="mIoU on at most N val frames")
    p.add_argument("--cache-dtype", default=d.cache_dtype, choices=("float32", "float16"),
                   help="storage of cached features")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--quick", action="store_true",
                   help="a tiny study: inlier distill,ce; alignments none,reinhard+sensor; k 5,19; classifier head; "
                        "seed 0; 20 steps; 50 probe steps")
    p.add_argument("--report-only", action="store_true", help="only aggregate the runs already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress lines")
    p.add_argument("--exclude-licences", default="", metavar="IDS",
                   help="skip frames with an object of these COCO licence ids (as stylepaste finetune)")
    p.add_argument("--categories", default=None, metavar="NAMES",
                   help="train only on frames whose pastes are all of these categories (as stylepaste finetune)")
    return p


def _learned(params_json: str) -> AlignerSpec | None:
    """``--learned-params JSON`` -> the ``learned`` aligner (``None`` when empty)."""
    if not params_json:
        return None
    spec = AlignerSpec.parse(LEARNED, params_json)
    if "path" not in spec.params:
        raise ValueError(f"--learned-params must be a JSON object with a 'path', got {params_json!r}")
    return spec


def config_from_args(a: argparse.Namespace) -> StudyConfig:
    """Build the :class:`StudyConfig` from parsed arguments."""
    cfg = StudyConfig(
        paste_filter=parse_paste_filter(a.exclude_licences, a.categories),
        world=a.world, eval_world=a.eval_world, bank=a.bank, bases=tuple(a.base), out=a.out, arch=a.arch, alignments=tuple(a.alignments),
        learned=_learned(a.learned_params), default_alignment=a.default_alignment, inliers=tuple(a.inliers),
        inlier=a.inlier, inlier_weight=a.inlier_weight, probe_steps=a.probe_steps, ks=tuple(a.ks),
        heads=tuple(a.heads), seeds=tuple(a.seeds),
        steps=a.steps, batch_size=a.batch_size, lr=a.lr, order_workers=a.order_workers,
        augment_seed=a.augment_seed, max_train_frames=a.max_train_frames, max_test_frames=a.max_test_frames,
        max_val_frames=a.max_val_frames, cache_dtype=a.cache_dtype, threads=a.threads, progress=not a.no_progress)
    if a.quick:
        cfg = replace(cfg, alignments=("none", DEFAULT_ALIGNMENT), ks=(5, NUM_CLASSES), heads=("classifier",),
                      inliers=(DEFAULT_INLIER, "ce"), seeds=(0,), steps=20, probe_steps=50)
    return cfg


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``stylepaste study``."""
    parser = build_parser()
    a = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = config_from_args(a)
    except ValueError as err:
        parser.error(str(err))
    for b in cfg.bases:
        if not Path(b).is_file():
            print(f"stylepaste study: error: base checkpoint not found: {b}", file=sys.stderr)
            return 2
    doc = run(cfg, report_only=a.report_only)
    print((Path(cfg.out) / "study.md").read_text())
    return 0 if doc else 1


if __name__ == "__main__":
    raise SystemExit(main())
