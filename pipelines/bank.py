"""``stylepaste bank``: COCO instance masks -> an object bank of Parquet shards (Apache Beam).

Pipeline (DirectRunner by default; Dataflow, Flink or Spark with the usual Beam options)::

    AnnotationsUrl -> GroupByImage -> SpreadImages -> CutObjects --rows--> WriteShards  (object_bank shards)
                           |                              |-----rejects--> WriteRejects (_rejects.jsonl)
                           +---------rejects, counts------+-----counts---> WriteCounts  (_counts.json)

``GroupByImage`` reads ``annotations/instances_<split>.json`` once (fsspec) and emits one element per image
with its annotations; ``CutObjects`` decides every annotation (:mod:`pipelines.coco`), reads and decodes each
image at most once, computes its style statistics once (:func:`style_transfer.stats.image_style_stats`) and
emits one object-bank row per kept object (object id = annotation id). The driver then commits the work
folder (:class:`pipelines.run_folder.RunFolder`): shards + ``_rejects.jsonl``, then ``_manifest.json``, and prints
``inputs = written + filtered (by reason) + rejected (by reason)``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import beam_io, run_folder, running
from pipelines.coco import (
    DEFAULT_EXCLUDE,
    FILTER_REASONS,
    REJECT_REASONS,
    STAGE,
    CutRules,
    Filtered,
    Kept,
    Rejected,
    category_table,
    cut_image_objects,
    group_by_image,
    read_instances,
    resolve_excluded,
)
from schemas.arrow import OBJECT_BANK
from schemas.codecs import PNG_COMPRESS_LEVEL, read_rgb
from schemas.corpus import parse_licence_ids
from schemas.manifest import Manifest, join_url
from schemas.runtime import acquire_torch_threads, release_torch_threads
from style_transfer.stats import image_style_stats


@dataclass(frozen=True)
class BankConfig:
    """Settings of an object-bank run.

    Attributes:
        coco: COCO root URL (holds ``annotations/`` and ``<split>/``).
        out: Output folder URL.
        split: COCO split name (``train2017``, ``val2017``).
        annotations: Annotation JSON URL; default ``<coco>/annotations/instances_<split>.json``.
        images: Image folder URL; default ``<coco>/<split>``.
        exclude_licences: COCO licence ids whose images give no object (``excluded_licence`` filter; images of
            unknown licence are left out too when any id is given).
        exclude: Category names never kept; None = :data:`pipelines.coco.DEFAULT_EXCLUDE` (names the dataset
            lacks are then ignored; explicitly given names must exist), () = exclude nothing.
        exclude_images: Drop every annotation of an image that contains an excluded category (Meta-OoD).
        keep_crowd: Keep ``iscrowd`` annotations.
        min_area: Smallest kept mask area (pixels).
        min_side: Smallest kept side of the mask's tight box (pixels).
        margin: Crop margin as a fraction of the box's longer side.
        num_shards: Number of Parquet shards.
        row_group_rows: Rows per Parquet row group.
        png_level: zlib level of the stored PNGs.
        overwrite: Replace a non-empty output folder (after a successful run only).
    """

    coco: str
    out: str
    split: str = "train2017"
    annotations: str | None = None
    images: str | None = None
    exclude: tuple[str, ...] | None = None
    exclude_images: bool = False
    exclude_licences: tuple[int, ...] = ()
    keep_crowd: bool = False
    min_area: int = 256
    min_side: int = 8
    margin: float = 0.1
    num_shards: int = 8
    row_group_rows: int = beam_io.DEFAULT_ROW_GROUP_ROWS
    png_level: int = PNG_COMPRESS_LEVEL
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not self.coco and not (self.annotations and self.images):
            raise ValueError("give the COCO root (--coco) or both --annotations and --images")
        if not self.out:
            raise ValueError("an output folder (--out) is required")
        if not self.split or "/" in self.split:
            raise ValueError(f"split must be a folder name such as train2017, got {self.split!r}")
        if self.num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {self.num_shards}")
        if self.row_group_rows < 1:
            raise ValueError(f"row_group_rows must be >= 1, got {self.row_group_rows}")
        if self.exclude is not None:
            object.__setattr__(self, "exclude", tuple(self.exclude))
        CutRules({}, min_area=self.min_area, min_side=self.min_side, margin=self.margin,
                 png_level=self.png_level)  # range checks

    @property
    def annotations_url(self) -> str:
        """URL of the annotation JSON."""
        return self.annotations or join_url(self.coco, "annotations", f"instances_{self.split}.json")

    @property
    def images_url(self) -> str:
        """URL of the image folder."""
        return self.images or join_url(self.coco, self.split)


@dataclass(frozen=True)
class Catalog:
    """What the driver learns from the annotation JSON before the pipeline starts.

    Attributes:
        categories: Category id -> name.
        excluded_ids: Excluded category ids.
        digest: BLAKE2b-128 of the JSON bytes (provenance for the manifest).
    """

    categories: dict[int, str]
    excluded_ids: frozenset[int]
    digest: str

    def rules(self, cfg: BankConfig) -> CutRules:
        """The cut rules of a run."""
        return CutRules(self.categories, self.excluded_ids, exclude_images=cfg.exclude_images,
                        keep_crowd=cfg.keep_crowd, min_area=cfg.min_area, min_side=cfg.min_side,
                        margin=cfg.margin, png_level=cfg.png_level,
                        excluded_licences=frozenset(cfg.exclude_licences))


def load_catalog(cfg: BankConfig) -> Catalog:
    """Read and validate the annotation JSON in the driver (fails fast, before any worker starts).

    Raises:
        FileNotFoundError: If the JSON does not exist.
        ValueError: If it is malformed, or an explicitly excluded category does not exist.
    """
    data, digest = read_instances(cfg.annotations_url)
    categories = category_table(data, where=cfg.annotations_url)
    names = DEFAULT_EXCLUDE if cfg.exclude is None else cfg.exclude
    excluded = resolve_excluded(names, categories, strict=cfg.exclude is not None)
    return Catalog(categories, excluded, digest)


class BankOutputs(NamedTuple):
    """PCollections of a bank pipeline.

    Attributes:
        rows: Object-bank row dicts.
        rejects: Reject records.
        counts: ``(key, total)`` accounting pairs.
        shards: One dict per written shard (``path``, ``rows``, ``row_groups``, ``row_group_rows``).
    """

    rows: beam.PCollection
    rejects: beam.PCollection
    counts: beam.PCollection
    shards: beam.PCollection


class GroupImagesFn(running.WorkerDoFn):
    """Annotation JSON URL -> one ``{"image", "annotations"}`` task per image; grouping rejects and the input
    count on the side outputs."""

    def process(self, url: str):
        data, _ = read_instances(url)
        tasks, rejects, inputs = group_by_image(data, where=url)
        yield beam_io.tagged_count(beam_io.INPUTS, inputs)
        reasons = Counter()
        for r in rejects:
            reasons[r.reason] += 1
            yield beam_io.tagged_reject(r.element, STAGE, r.reason, r.detail)
        for reason, n in sorted(reasons.items()):
            yield beam_io.tagged_count(f"{beam_io.REJECTED}/{reason}", n)
        yield beam_io.tagged_count("images/annotated", len(tasks))
        yield from tasks


class CutObjectsFn(running.WorkerDoFn):
    """One image task -> object-bank rows (main output), rejects and counts (side outputs).

    Args:
        rules: Selection and crop rules.
        images_url: Folder holding the images (``file_name`` is relative to it).
    """

    def __init__(self, rules: CutRules, images_url: str) -> None:
        self._rules = rules
        self._images_url = images_url
        self._stats = None
        self._threads = False

    def setup(self) -> None:
        super().setup()
        self._threads = acquire_torch_threads(1)
        self._stats = image_style_stats

    def teardown(self) -> None:
        release_torch_threads(self._threads)

    def process(self, task: dict[str, Any]):
        reads = []

        def read_image(url: str):
            reads.append(url)
            return read_rgb(url)

        url = join_url(self._images_url, task["image"]["file_name"])
        outcomes = cut_image_objects(task, self._rules, url, read_image, self._stats)
        counts: Counter[str] = Counter()
        for o in outcomes:
            if isinstance(o, Kept):
                counts[beam_io.WRITTEN] += 1
                counts[f"per_category/{o.row['category_name']}"] += 1
                yield o.row
            elif isinstance(o, Filtered):
                counts[f"{beam_io.FILTERED}/{o.reason}"] += 1
            elif isinstance(o, Rejected):
                counts[f"{beam_io.REJECTED}/{o.reason}"] += 1
                yield beam_io.tagged_reject(o.element, STAGE, o.reason, o.detail)
        if reads:
            counts["images/read"] += 1
        for key, n in sorted(counts.items()):
            yield beam_io.tagged_count(key, n)


def build_pipeline(p: beam.Pipeline, cfg: BankConfig, work_url: str, catalog: Catalog | None = None) -> BankOutputs:
    """Add the object-bank steps to a pipeline; shards, rejects and counts go into ``work_url``.

    Args:
        p: The pipeline (a ``TestPipeline`` in tests).
        cfg: Run settings.
        work_url: Folder the run writes into (see :class:`pipelines.run_folder.RunFolder`).
        catalog: Categories and exclusions; read from the annotation JSON when None.

    Returns:
        The pipeline's PCollections.
    """
    catalog = catalog or load_catalog(cfg)
    grouped = (
        p
        | "AnnotationsUrl" >> beam.Create([cfg.annotations_url])
        | "GroupByImage" >> beam.ParDo(GroupImagesFn()).with_outputs(beam_io.REJECTS, beam_io.COUNTS, main="tasks")
    )
    cut = (
        grouped.tasks
        | "SpreadImages" >> beam.Reshuffle()
        | "CutObjects" >> beam.ParDo(CutObjectsFn(catalog.rules(cfg), cfg.images_url)).with_outputs(
            beam_io.REJECTS, beam_io.COUNTS, main="rows")
    )
    rejects = (grouped[beam_io.REJECTS], cut[beam_io.REJECTS]) | "AllRejects" >> beam.Flatten()
    counts = (grouped[beam_io.COUNTS], cut[beam_io.COUNTS]) | "AllCounts" >> beam.Flatten()
    shards = cut.rows | "WriteShards" >> beam_io.WriteShards(
        OBJECT_BANK, work_url, cfg.num_shards, key="object_id", row_group_rows=cfg.row_group_rows)
    _ = rejects | "WriteRejects" >> beam_io.WriteRejects(work_url)
    totals = counts | "WriteCounts" >> beam_io.WriteCounts(work_url)
    return BankOutputs(cut.rows, rejects, totals, shards)


def run(cfg: BankConfig, options: PipelineOptions | None = None) -> Manifest:
    """Run the object-bank pipeline and commit its output.

    Args:
        cfg: Run settings.
        options: Beam pipeline options (DirectRunner, in memory, when None).

    Returns:
        The manifest written to ``<out>/_manifest.json``.

    Raises:
        ValueError / FileNotFoundError: For bad settings or inputs, before the pipeline starts.
        FileExistsError: If the output folder is not empty and ``cfg.overwrite`` is False.
    """
    options = options or PipelineOptions(["--runner=DirectRunner"])
    running.check_shared_storage([cfg.coco, cfg.annotations_url, cfg.images_url, cfg.out], options)
    catalog = load_catalog(cfg)
    folder = run_folder.RunFolder.begin(cfg.out, overwrite=cfg.overwrite, kind=OBJECT_BANK,
                                     inputs=[cfg.coco, cfg.annotations_url, cfg.images_url])
    try:
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, cfg, folder.work_url, catalog)
        running.run_to_completion(pipeline)
        parameters = asdict(cfg)
        parameters["excluded_categories"] = sorted(catalog.categories[i] for i in catalog.excluded_ids)
        return folder.commit(
            OBJECT_BANK,
            parameters=parameters,
            seed=None,
            source={"coco": cfg.coco, "split": cfg.split, "annotations": cfg.annotations_url,
                    "annotations_blake2b": catalog.digest, "images": cfg.images_url},
            overwrite=cfg.overwrite,
        )
    except BaseException:
        folder.discard()
        raise


_EPILOG = f"""
outcomes of every annotation (inputs = written + filtered + rejected, printed at the end):
  filtered (counted):          {', '.join(FILTER_REASONS)}
  rejected (_rejects.jsonl):   {', '.join(REJECT_REASONS)}

output folder: shard-NNNNN-of-MMMMM.parquet (object_bank schema v{OBJECT_BANK.version}), _rejects.jsonl, and
_manifest.json (written last: counts per category and per reason, parameters, source). Workers write into
<out>/_temporary/<run id>/; a failed run leaves nothing behind.

examples:
  stylepaste bank --coco /data/coco --split train2017 --out runs/bank
  stylepaste bank --coco /data/coco --split val2017 --out s3://bucket/bank --exclude-images \\
      --direct_num_workers 2 --direct_running_mode multi_processing
"""


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``stylepaste bank``."""
    p = argparse.ArgumentParser(
        prog="stylepaste bank",
        description="Cut COCO instance masks into an object bank of Parquet shards (Apache Beam).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--coco", required=True, help="COCO root URL (local path, memory://, s3://, gs://)")
    p.add_argument("--split", default=BankConfig.split, help="split name (default: %(default)s)")
    p.add_argument("--annotations", default=None,
                   help="annotation JSON URL (default: <coco>/annotations/instances_<split>.json)")
    p.add_argument("--images", default=None, help="image folder URL (default: <coco>/<split>)")
    p.add_argument("--out", required=True, help="output folder URL")
    p.add_argument("--exclude", nargs="*", metavar="CATEGORY", default=None,
                   help="COCO category names to leave out, replacing the default Cityscapes-overlapping list "
                        f"({', '.join(DEFAULT_EXCLUDE)}); give the flag with no names to exclude nothing")
    p.add_argument("--exclude-licences", default="", metavar="IDS",
                   help="COCO licence ids whose images give no object, e.g. 1,2,3 (COCO's NonCommercial ones); "
                        "images without a licence are left out too when any id is given")
    p.add_argument("--exclude-images", action="store_true",
                   help="drop every image that contains an excluded category (as Meta-OoD does)")
    p.add_argument("--keep-crowd", action="store_true", help="keep iscrowd annotations (skipped by default)")
    p.add_argument("--min-area", type=int, default=BankConfig.min_area, metavar="PX",
                   help="smallest mask area in pixels (default: %(default)s)")
    p.add_argument("--min-side", type=int, default=BankConfig.min_side, metavar="PX",
                   help="smallest side of the mask's tight box in pixels (default: %(default)s)")
    p.add_argument("--margin", type=float, default=BankConfig.margin,
                   help="crop margin as a fraction of the box's longer side (default: %(default)s)")
    p.add_argument("--num-shards", type=int, default=BankConfig.num_shards,
                   help="number of Parquet shards (default: %(default)s)")
    p.add_argument("--row-group-rows", type=int, default=BankConfig.row_group_rows,
                   help="rows per Parquet row group (default: %(default)s)")
    p.add_argument("--png-level", type=int, default=BankConfig.png_level,
                   help="zlib level 0..9 of the stored PNGs (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty output folder (only once the new run has succeeded)")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="log level, Beam's included (default: %(default)s)")
    running.add_beam_arguments(p)
    return p


def config_from_args(args: argparse.Namespace) -> BankConfig:
    """The :class:`BankConfig` of parsed arguments."""
    return BankConfig(
        coco=args.coco, out=args.out, split=args.split, annotations=args.annotations, images=args.images,
        exclude=None if args.exclude is None else tuple(args.exclude), exclude_images=args.exclude_images,
        keep_crowd=args.keep_crowd, min_area=args.min_area, min_side=args.min_side, margin=args.margin,
        num_shards=args.num_shards, row_group_rows=args.row_group_rows, png_level=args.png_level,
        overwrite=args.overwrite, exclude_licences=parse_licence_ids(args.exclude_licences),
    )



def main(argv: list[str] | None = None) -> int:
    """Entry point of ``stylepaste bank``; returns 0 on success, 2 for bad settings or inputs."""
    parser = build_parser()
    args, beam_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=getattr(logging, args.log_level), format="%(levelname)s %(name)s: %(message)s",
                        force=True)
    try:
        cfg = config_from_args(args)
        options = running.pipeline_options(args, beam_args)
    except ValueError as err:
        parser.error(str(err))
    try:
        manifest = run(cfg, options)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"stylepaste bank: error: {err}", file=sys.stderr)
        return 2
    print(summary_lines(manifest, cfg.out))
    return 0


def summary_lines(manifest: Manifest, out: str) -> str:
    """What a finished bank run prints: objects and shards, and the accounting line."""
    return (f"stylepaste bank: {manifest.rows} objects in {len(manifest.shards)} shards -> {out}\n"
            + beam_io.accounting_line(manifest.counts))
