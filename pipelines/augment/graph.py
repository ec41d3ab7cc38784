"""The augment pipeline's graph (``build_pipeline``) and its run (``run``): frames, the bank join, alignment
under ``RunInference``, the paste and the deterministic shard writer."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import beam_io, run_folder, running
from pipelines.augment.config import ALIGN, CLEAN, AugmentConfig
from pipelines.augment.dofns import (
    EncodeCleanFn,
    PasteObjectsFn,
    PlaceObjectsFn,
    PlanFrameFn,
    ReadBankObjectsFn,
    ReadFrameFn,
    attach_objects,
    index_arrays,
    key_by_frame,
    read_bank_index,
)
from schemas.arrow import FRAME, OBJECT_BANK
from schemas.cityscapes import CityscapesFrame, list_frames
from schemas.manifest import Manifest, open_shard, read_manifest, resolve_shards
from style_transfer.beam import AlignerModelHandler

# -------------------------------------------------------------------------------------------------- graph
def make_handler(cfg: AugmentConfig):
    """The ``RunInference`` model handler that restyles the placed objects.

    ``batch_shape="group"`` runs only equal-size crops together, so an object's result (its sensor noise
    field included) never depends on which other objects share its batch: shards stay byte-identical for
    any worker count or bundling. Torch's thread count is set by the paste steps fused with it
    (``--torch-threads``, worker processes only).
    """
    return AlignerModelHandler(cfg.aligner_run, device=cfg.device, batch_shape="group",
                               max_batch_size=cfg.align_batch_size)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AugmentOutputs:
    """PCollections of a built graph: FRAME rows, reject records and ``(key, n)`` counts."""

    rows: beam.PCollection
    rejects: beam.PCollection
    counts: beam.PCollection


def build_pipeline(p: beam.Pipeline, cfg: AugmentConfig, frames: Sequence[CityscapesFrame],
                   bank_urls: Sequence[str], handler: Any = None) -> AugmentOutputs:
    """Add the augment graph to a pipeline (no writing; see :func:`write_outputs`).

    Args:
        p: The pipeline.
        cfg: Settings.
        frames: Frames to process (listed on the driver with :func:`schemas.cityscapes.list_frames`).
        bank_urls: Object-bank shard URLs.
        handler: ``RunInference`` model handler (default :func:`make_handler`).

    Returns:
        The rows, rejects and counts PCollections.
    """

    handler = handler or make_handler(cfg)
    style_pixels = cfg.aligner.needs_style_pixels

    shards = p | "BankShards" >> beam.Create(list(bank_urls))
    index = (
        shards
        | "ReadBankIndex" >> beam.FlatMap(read_bank_index)
        | "CollectBankIndex" >> beam.combiners.ToList()
        | "BankIndex" >> beam.Map(index_arrays)
    )
    read = (
        p
        | "ListFrames" >> beam.Create(list(frames))
        | "SpreadFrames" >> beam.Reshuffle()
        | "ReadFrame" >> beam.ParDo(ReadFrameFn()).with_outputs(beam_io.REJECTS, beam_io.COUNTS, main="frames")
    )
    planned = read.frames | "PlanFrame" >> beam.ParDo(
        PlanFrameFn(cfg), beam.pvalue.AsSingleton(index)).with_outputs(CLEAN, beam_io.COUNTS, main="pasting")
    clean = planned[CLEAN] | "EncodeClean" >> beam.ParDo(EncodeCleanFn(cfg)).with_outputs(
        beam_io.REJECTS, beam_io.COUNTS, main="rows")

    requests = planned.pasting | "ExplodeRequests" >> beam.FlatMap(
        lambda kv: [(oid, kv[0]) for oid in kv[1].plan.object_ids()])
    wanted = (
        requests
        | "RequestedIds" >> beam.Keys()
        | "CollectRequestedIds" >> beam.combiners.ToSet()
    )
    bank_rows = shards | "ReadBankObjects" >> beam.ParDo(ReadBankObjectsFn(), beam.pvalue.AsSingleton(wanted))
    per_frame = (
        {"req": requests, "obj": bank_rows}
        | "JoinObjects" >> beam.CoGroupByKey()
        | "AttachObjects" >> beam.FlatMap(attach_objects)
    )
    placed = (
        {"job": planned.pasting, "objs": per_frame}
        | "RegroupFrames" >> beam.CoGroupByKey()
        | "PlaceObjects" >> beam.ParDo(PlaceObjectsFn(cfg, style_pixels)).with_outputs(
            ALIGN, beam_io.REJECTS, beam_io.COUNTS, main="placed")
    )
    aligned = (
        placed[ALIGN]
        | "AlignObjects" >> RunInference(handler)
        | "KeyByFrame" >> beam.Map(key_by_frame)
    )
    pasted = (
        {"job": placed.placed, "aligned": aligned}
        | "RegroupAligned" >> beam.CoGroupByKey()
        | "PasteObjects" >> beam.ParDo(PasteObjectsFn(cfg)).with_outputs(beam_io.COUNTS, main="rows")
    )
    rows = (clean.rows, pasted.rows) | "FrameRows" >> beam.Flatten()
    rejects = (read[beam_io.REJECTS], clean[beam_io.REJECTS], placed[beam_io.REJECTS]) | "Rejects" >> beam.Flatten()
    counts = (read[beam_io.COUNTS], planned[beam_io.COUNTS], clean[beam_io.COUNTS], placed[beam_io.COUNTS],
              pasted[beam_io.COUNTS]) | "Counts" >> beam.Flatten()
    return AugmentOutputs(rows, rejects, counts)


def write_outputs(outputs: AugmentOutputs, cfg: AugmentConfig, work_url: str, prefix: str = "shard") -> None:
    """Write rows, rejects and counts into a run's work folder (:class:`pipelines.run_folder.RunFolder`); shard
    files are named ``<prefix>-NNNNN-of-MMMMM.parquet``."""
    outputs.rows | "WriteShards" >> beam_io.WriteShards(FRAME, work_url, cfg.num_shards, key="frame_id",
                                                        row_group_rows=cfg.row_group_rows, prefix=prefix)
    outputs.rejects | "WriteRejects" >> beam_io.WriteRejects(work_url)
    outputs.counts | "WriteCounts" >> beam_io.WriteCounts(work_url)


def resolve_inputs(cfg: AugmentConfig) -> tuple[list[CityscapesFrame], list[str], dict[str, Any]]:
    """List the frames and bank shards on the driver.

    Returns:
        ``(frames, bank_urls, source)``: the source record for the manifest.

    Raises:
        FileNotFoundError: If the split or the bank cannot be found.
    """
    frames = list_frames(cfg.cityscapes, cfg.split)
    if cfg.max_frames is not None:
        frames = frames[: cfg.max_frames]
    bank_urls = resolve_shards(cfg.bank, OBJECT_BANK)
    source: dict[str, Any] = {"cityscapes": cfg.cityscapes, "split": cfg.split, "frames": len(frames),
                              "bank": cfg.bank, "bank_shards": len(bank_urls)}
    try:
        man = read_manifest(cfg.bank, kind=OBJECT_BANK)
        source["bank_rows"] = man.rows
        source["bank_seed"] = man.seed
        source["bank_source"] = man.source
        source["bank_shard_sha256"] = [s.sha256 for s in man.shards]
    except (FileNotFoundError, NotADirectoryError, ValueError):
        pass
    source["licenses"] = bank_licenses(bank_urls)
    return frames, bank_urls, source


def bank_licenses(urls: Sequence[str]) -> dict[str, str | None]:
    """Licence id -> name over the bank's objects (read from the small licence columns; {} for a v1 bank)."""
    out: dict[str, str | None] = {}
    for url in urls:
        pf = open_shard(url, OBJECT_BANK)
        if "license_id" not in pf.schema_arrow.names:
            continue
        for row in pf.read(columns=["license_id", "license_name"]).to_pylist():
            if row["license_id"] is not None:
                out.setdefault(str(row["license_id"]), row["license_name"])
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def run(cfg: AugmentConfig, options: beam.options.pipeline_options.PipelineOptions | None = None):
    """Run the augment pipeline and commit its output folder.

    Args:
        cfg: Settings.
        options: Beam pipeline options (default: DirectRunner, in memory).

    Returns:
        The committed :class:`schemas.manifest.Manifest`.
    """
    options = options or PipelineOptions(["--runner=DirectRunner"])
    running.check_shared_storage([cfg.out, cfg.cityscapes, cfg.bank], options)
    frames, bank_urls, source = resolve_inputs(cfg)
    inputs = [cfg.cityscapes, cfg.bank]
    prefix = "shard"
    if cfg.append:
        folder, prefix = run_folder.RunFolder.begin_append(cfg.out, FRAME, inputs)
    else:
        folder = run_folder.RunFolder.begin(cfg.out, overwrite=cfg.overwrite, kind=FRAME, inputs=inputs)
    try:
        p = beam.Pipeline(options=options)
        write_outputs(build_pipeline(p, cfg, frames, bank_urls), cfg, folder.work_url, prefix)
        running.run_to_completion(p)
        if cfg.append:
            manifest = folder.commit_append(FRAME, parameters=cfg.manifest_parameters(), seed=cfg.seed,
                                            source=source)
        else:
            manifest = folder.commit(FRAME, parameters=cfg.manifest_parameters(), seed=cfg.seed, source=source,
                                     overwrite=cfg.overwrite)
    except BaseException:
        folder.discard()
        raise
    warning = no_paste_warning(manifest)
    if warning:
        log.warning(warning)
    return manifest


def no_paste_warning(manifest: Manifest) -> str | None:
    """A loud warning when a run wrote frames but pasted no object into any (an empty bank, ``paste_prob`` 0,
    every slot dropped): such a corpus cannot teach anything about anomalies."""
    counts = manifest.counts
    if manifest.rows and not counts.get("frames", {}).get("with_objects", 0):
        return (f"WARNING: no object was pasted into any of the {manifest.rows} frames (the bank is empty, "
                "paste_prob is 0 or every slot was dropped); finetuning on this corpus refuses to start "
                "without --allow-no-pastes")
    return None
