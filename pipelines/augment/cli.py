"""The ``stylepaste augment`` command line: the parser (defaults from :class:`AugmentConfig`), the settings
it builds, and the contact sheet of a run."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
from PIL import Image

from pipelines import beam_io, running
from pipelines.augment.config import REJECT_REASONS, AugmentConfig
from pipelines.augment.graph import no_paste_warning, run
from pipelines.paste import BLEND_MODES, SLOT_PASTED, PasteConfig
from schemas.arrow import FRAME
from schemas.codecs import IMAGE_CODECS, decode_image, decode_png
from schemas.manifest import Manifest
from schemas.labels import LABEL_BY_NAME, TRAIN_CLASSES, colorize_train_ids
from style_transfer.registry import AlignerSpec

# ---------------------------------------------------------------------------------------------- inspection
BOX_COLOR: tuple[int, int, int] = (255, 0, 0)
"""Colour of the object boxes drawn by :func:`contact_sheet`."""


def contact_sheet(rows: Iterable[dict[str, Any]], tile_height: int = 256, gap: int = 4) -> np.ndarray:
    """A picture of FRAME rows for eyeballing: per row, the image with each pasted object's box in red, and the
    trainIds map coloured with the Cityscapes palette (pasted OoD pixels white, ignore black).

    Args:
        rows: FRAME rows (dicts with ``image``, ``label``, ``objects``, ``height``, ``width``).
        tile_height: Height of each line in pixels.
        gap: Black gap between the two halves and between lines.

    Returns:
        (H, W, 3) uint8 image; lines are left-aligned.
    """
    lines = []
    for row in rows:
        rgb = decode_image(row["image"], name=f"{row.get('frame_id')} image")
        lab = decode_png(row["label"], name=f"{row.get('frame_id')} label")
        h, w = lab.shape
        th = int(tile_height)
        tw = max(1, int(round(w * th / h)))
        img = np.array(Image.fromarray(rgb).resize((tw, th), Image.Resampling.BILINEAR))
        col = np.array(Image.fromarray(colorize_train_ids(lab)).resize((tw, th), Image.Resampling.NEAREST))
        sy, sx = th / h, tw / w
        for o in row.get("objects") or []:
            x0, y0, x1, y1 = o["box"]
            a0, b0 = int(np.floor(x0 * sx)), int(np.floor(y0 * sy))
            a1, b1 = min(tw, max(a0 + 1, int(np.ceil(x1 * sx)))), min(th, max(b0 + 1, int(np.ceil(y1 * sy))))
            img[b0:b1, a0:min(a0 + 2, a1)] = BOX_COLOR
            img[b0:b1, max(a1 - 2, a0):a1] = BOX_COLOR
            img[b0:min(b0 + 2, b1), a0:a1] = BOX_COLOR
            img[max(b1 - 2, b0):b1, a0:a1] = BOX_COLOR
        lines.append(np.concatenate([img, np.zeros((th, gap, 3), np.uint8), col], axis=1))
    if not lines:
        return np.zeros((tile_height, tile_height, 3), np.uint8)
    width = max(line.shape[1] for line in lines)
    out = []
    for i, line in enumerate(lines):
        if i:
            out.append(np.zeros((gap, width, 3), np.uint8))
        out.append(np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0))))
    return np.concatenate(out, axis=0)


# ---------------------------------------------------------------------------------------------------- CLI
def _range(text: str, kind: type, name: str) -> tuple[Any, Any]:
    parts = text.replace(":", "-").split("-") if kind is int else text.split("-")
    try:
        if len(parts) == 1:
            v = kind(parts[0])
            return v, v
        if len(parts) == 2:
            return kind(parts[0]), kind(parts[1])
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{name} must be 'MIN-MAX' or one value, got {text!r}")


def parse_surfaces(text: str) -> tuple[tuple[int, float], ...]:
    """``"road:0.8,sidewalk:0.1,terrain:0.1"`` (train class names or trainIds) -> ``((0, 0.8), ...)``."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, weight = part.partition(":")
        name = name.strip()
        try:
            tid = int(name) if name.isdigit() else TRAIN_CLASSES.index(name)
            w = float(weight) if weight else 1.0
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--surfaces entry {part!r}: expected <train class or trainId>:<weight>, classes are "
                f"{', '.join(TRAIN_CLASSES)}") from None
        out.append((tid, w))
    if not out:
        raise argparse.ArgumentTypeError("--surfaces needs at least one <class>:<weight>")
    return tuple(out)


def parse_label_ids(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` or label names (``"ego vehicle"``) -> labelIds."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part.isdigit():
            out.append(int(part))
        elif part in LABEL_BY_NAME:
            out.append(LABEL_BY_NAME[part].id)
        else:
            raise argparse.ArgumentTypeError(f"--forbidden-label-ids entry {part!r} is neither a labelId nor a "
                                             "Cityscapes label name")
    return tuple(out)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


_EPILOG = f"""
output folder: shard-NNNNN-of-MMMMM.parquet ({FRAME.tag} schema: frame_id, split, image, label, height, width,
ood_pixels, objects[object_id, category_id, category_name, box, scale, flip, ood_pixels, contrast], aligner,
aligner_params, seed, source_image, source_label), _rejects.jsonl and _manifest.json (written last).
Every frame is accounted for: inputs = written + rejected
({', '.join(REJECT_REASONS)}); slots (objects to paste) are counted as
planned = pasted + dropped (no_placement, invisible, missing_object, bad_object).

examples:
  stylepaste augment --cityscapes /data/cityscapes --bank runs/bank --out runs/augment
  stylepaste augment --cityscapes runs/demo/world/cityscapes --bank runs/demo/bank --out runs/demo/augment \\
      --objects-per-frame 1-3 --scale-range 0.03-0.3 --seed 0 --num-shards 8 \\
      --direct_num_workers 2 --direct_running_mode multi_processing
  stylepaste augment ... --runner DataflowRunner --project P --region R --temp_location gs://B/tmp \\
      --sdk_container_image IMAGE --device cuda
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``stylepaste augment`` command-line parser.

    One function on purpose: it is one ``add_argument`` per setting, in the order ``--help`` shows them, with
    every default read from :class:`AugmentConfig`; splitting it would only scatter the option groups.
    """
    d = AugmentConfig("", "", "")
    dp = d.paste
    p = argparse.ArgumentParser(
        prog="stylepaste augment",
        description="Paste style-aligned object-bank objects into Cityscapes frames and write training shards "
                    "(one Parquet row per frame: image, trainIds label with 254 on pasted pixels, provenance). "
                    "Frames without a paste are written too.",
        formatter_class=_HelpFormatter,
        epilog=_EPILOG,
    )
    io_ = p.add_argument_group("inputs and outputs")
    io_.add_argument("--cityscapes", required=True, metavar="ROOT", default=argparse.SUPPRESS,
                     help="Cityscapes root in the official layout (leftImg8bit/, gtFine/); local path or URL")
    io_.add_argument("--split", default=d.split, help="split folder to read")
    io_.add_argument("--bank", required=True, metavar="URL", default=argparse.SUPPRESS,
                     help="object-bank folder (with _manifest.json), shard file or glob")
    io_.add_argument("--out", required=True, metavar="URL", default=argparse.SUPPRESS,
                     help="output folder for the shards")
    io_.add_argument("--num-shards", type=int, default=d.num_shards, help="number of output shards")
    io_.add_argument("--row-group-rows", type=int, default=d.row_group_rows, help="rows per Parquet row group")
    io_.add_argument("--image-codec", choices=IMAGE_CODECS, default=d.image_codec,
                     help="shard image codec (labels are always PNG)")
    io_.add_argument("--image-quality", type=int, default=d.image_quality, help="quality of jpeg/webp (95..100)")
    io_.add_argument("--png-level", type=int, default=d.png_level, help="zlib level of shard PNGs (0..9)")
    io_.add_argument("--max-frames", type=int, default=None,
                     help="use only the first N frames by frame id (None: all)")
    io_.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    io_.add_argument("--append", action="store_true",
                     help="add this run's frames (e.g. drawn with another --seed) to the corpus in --out as new "
                          "shards; existing shards stay byte for byte, the manifest is replaced atomically")

    plan = p.add_argument_group("paste plan (drawn per frame from --seed and the frame id)")
    plan.add_argument("--seed", type=int, default=d.seed, help="run seed")
    plan.add_argument("--paste-prob", type=float, default=dp.paste_prob, help="probability that a frame gets pastes")
    plan.add_argument("--objects-per-frame", default=f"{dp.objects_min}-{dp.objects_max}", metavar="MIN-MAX",
                      help="objects per pasted frame (uniform)")
    plan.add_argument("--scale-range", default=f"{dp.scale_min}-{dp.scale_max}", metavar="MIN-MAX",
                      help="object's longer side as a fraction of the frame height, log-uniform (small objects "
                           "dominate)")
    plan.add_argument("--perspective", action="store_true",
                      help="tie the size to the row: objects lower in the frame are bigger")
    plan.add_argument("--flip-prob", type=float, default=dp.flip_prob, help="probability of a horizontal flip")
    plan.add_argument("--class-balanced", action="store_true",
                      help="draw a category uniformly, then an object of it (otherwise objects are uniform)")
    plan.add_argument("--surfaces", type=parse_surfaces,
                      default=",".join(f"{TRAIN_CLASSES[t]}:{w}" for t, w in dp.surfaces),
                      help="where an object's bottom centre may stand: <train class or trainId>:<weight>,...")
    plan.add_argument("--forbidden-label-ids", type=parse_label_ids,
                      default=",".join(str(i) for i in dp.forbidden_label_ids),
                      help="labelIds no pasted pixel may cover (default: the void category, incl. ego vehicle 1); "
                           "frames without labelIds avoid their ignore (255) trainIds")
    plan.add_argument("--candidates-per-slot", type=int, default=dp.candidates_per_slot,
                      help="objects drawn in advance per slot; the first placeable and visible one is pasted")
    plan.add_argument("--placement-tries", type=int, default=dp.anchors_per_candidate,
                      help="positions tried per candidate before it is dropped (counted)")
    plan.add_argument("--min-object-px", type=int, default=dp.min_object_px, help="smallest pasted longer side")
    plan.add_argument("--max-upscale", type=float, default=dp.max_upscale,
                      help="largest enlargement of an object over its source size; a larger drawn scale is "
                           "reduced to it (0 = no limit)")

    st = p.add_argument_group("style alignment and pasting")
    st.add_argument("--aligner", default=d.aligner.name,
                    help="style aligner: none, reinhard, sensor, histogram, fda, learned, or a '+' chain")
    st.add_argument("--aligner-params", default=json.dumps(dict(d.aligner.params)), metavar="JSON",
                    help='aligner parameters as a JSON object, e.g. \'{"mode": "object"}\' for reinhard')
    st.add_argument("--align-strength", type=float, default=d.align_strength,
                    help="blend of the aligned object with the original (0 = no alignment)")
    st.add_argument("--blend", choices=BLEND_MODES, default=d.blend, help="seam blending")
    st.add_argument("--min-contrast", type=float, default=d.min_contrast,
                    help="smallest visibility (Lab contrast to the surrounding ring) of a kept paste; "
                         "0 keeps every paste")
    st.add_argument("--style-height", type=int, default=d.style_height,
                    help="height of the destination thumbnail the aligner sees")
    st.add_argument("--device", default=d.device, help="aligner device: cpu, cuda, cuda:N or auto")
    st.add_argument("--align-batch-size", type=int, default=d.align_batch_size, help="largest RunInference batch")
    st.add_argument("--torch-threads", type=int, default=d.torch_threads,
                    help="torch threads per worker process (1 suits one worker per core); the launching process "
                         "keeps its own setting")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="log level, Beam's included")
    running.add_beam_arguments(p)
    return p


def config_from_args(args: argparse.Namespace) -> AugmentConfig:
    """Build the :class:`AugmentConfig` from parsed arguments.

    Raises:
        ValueError: For invalid values (the message names the option).
    """
    try:
        omin, omax = _range(args.objects_per_frame, int, "--objects-per-frame")
        smin, smax = _range(args.scale_range, float, "--scale-range")
    except argparse.ArgumentTypeError as err:
        raise ValueError(str(err)) from None
    surfaces = args.surfaces if isinstance(args.surfaces, tuple) else parse_surfaces(args.surfaces)
    forbidden = (args.forbidden_label_ids if isinstance(args.forbidden_label_ids, tuple)
                 else parse_label_ids(args.forbidden_label_ids))
    paste = PasteConfig(
        paste_prob=args.paste_prob, objects_min=omin, objects_max=omax, scale_min=smin, scale_max=smax,
        flip_prob=args.flip_prob, surfaces=surfaces, forbidden_label_ids=forbidden, perspective=args.perspective,
        class_balanced=args.class_balanced, candidates_per_slot=args.candidates_per_slot,
        anchors_per_candidate=args.placement_tries, min_object_px=args.min_object_px, max_upscale=args.max_upscale)
    return AugmentConfig(
        cityscapes=args.cityscapes, bank=args.bank, out=args.out, split=args.split,
        aligner=AlignerSpec.parse(args.aligner, args.aligner_params), align_strength=args.align_strength,
        blend=args.blend, paste=paste, min_contrast=args.min_contrast,
        style_height=args.style_height, seed=args.seed, num_shards=args.num_shards,
        row_group_rows=args.row_group_rows, image_codec=args.image_codec, image_quality=args.image_quality,
        png_level=args.png_level, device=args.device, align_batch_size=args.align_batch_size,
        torch_threads=args.torch_threads, max_frames=args.max_frames, overwrite=args.overwrite, append=args.append)


def main(argv: list[str] | None = None) -> int:
    """``stylepaste augment``: parse the command line, run the pipeline, print the accounting line.

    Returns:
        0 on success, 2 for invalid arguments or missing inputs.
    """
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level), format="%(levelname)s %(name)s: %(message)s",
                        force=True)
    try:
        cfg = config_from_args(args)
        options = running.pipeline_options(args, beam_args)
        start = time.perf_counter()
        manifest = run(cfg, options)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"stylepaste augment: error: {err}", file=sys.stderr)
        return 2
    print(summary_lines(manifest, cfg.out, time.perf_counter() - start))
    return 0


def summary_lines(manifest: Manifest, out: str, seconds: float | None = None) -> str:
    """What a finished augment run prints: rows and shards, the slot outcomes and the accounting line."""
    counts = manifest.counts
    lines = [f"augment: {manifest.rows} frames in {len(manifest.shards)} shards -> {out}"
             + (f" ({seconds:.1f} s)" if seconds is not None else "")]
    slots = counts.get("slots", {})
    if slots:
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(slots.items()) if k not in ("planned", SLOT_PASTED))
        lines.append(f"slots: planned {slots.get('planned', 0)} = pasted {slots.get(SLOT_PASTED, 0)}"
                     + (f" + dropped ({dropped})" if dropped else ""))
    lines.append(beam_io.accounting_line(counts))
    warning = no_paste_warning(manifest)
    if warning:
        lines.append(warning)
    return "\n".join(lines)



if __name__ == "__main__":
    raise SystemExit(main())
