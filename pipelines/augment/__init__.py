"""``stylepaste augment``: style-aligned copy-paste of object-bank objects into Cityscapes frames.

Modules: :mod:`~pipelines.augment.config` (settings), :mod:`~pipelines.augment.elements` (what travels between
steps), :mod:`~pipelines.augment.dofns` (the steps), :mod:`~pipelines.augment.graph` (the graph and the run),
:mod:`~pipelines.augment.cli` (the command line).

Beam pipeline 2. Reads the frames of one split in the official Cityscapes layout through fsspec, draws a
deterministic paste plan per frame (:func:`pipelines.paste.plan_frame`), joins the planned bank objects to their
frames with ``CoGroupByKey`` (the bank never has to fit in one worker), restyles every placed object to its
destination frame with the style handler under ``RunInference``, pastes it with seam blending, labels its
pixels 254, and writes one FRAME row per frame (frames without pastes too: the trainer needs inliers) as
deterministic Parquet shards with ``_manifest.json``, ``_rejects.jsonl`` and the run's accounting.

Graph (step labels)::

    ListFrames -> SpreadFrames -> ReadFrame -> PlanFrame(side input: BankIndex) -+-> EncodeClean ------------+
                                                                                 |                           |
      ExplodeRequests (object_id, frame_id) -> JoinObjects(CoGroupByKey with ReadBankObjects) -> AttachObjects
      -> RegroupFrames(CoGroupByKey by frame_id) -> PlaceObjects -> AlignObjects(RunInference) -> KeyByFrame
      -> RegroupAligned(CoGroupByKey by frame_id) -> PasteObjects -------------------------------------------+
                                                                                   FrameRows -> WriteShards
    Rejects -> WriteRejects;  Counts -> WriteCounts;  the driver commits the run folder (pipelines.beam_io).

Re-draws without a second join: every slot carries ``--candidates-per-slot`` objects drawn in advance; all of
them are placed (without overlapping any candidate of an earlier slot), aligned in the one ``RunInference``
pass, and the first whose paste stays visible (``visibility >= --min-contrast``) is kept. A slot whose
candidates are all invisible, or fit nowhere, is counted under ``slots/<reason>``, never dropped silently.

Frames travel through the shuffles as their encoded source bytes, not as decoded arrays; a frame without a
paste is written with its source PNG bytes unchanged when those are an 8-bit RGB PNG and the shard codec is
PNG (no decode, no encode). Frames with pastes are decoded twice (for placement and style, then for the
paste after alignment).

Accounting: ``inputs`` (frames listed) = ``written`` (rows) + ``rejected`` (missing_label, size_mismatch,
unreadable_image, unreadable_label, invalid_label); frames are never filtered. Extras: ``frames/*``, ``slots/*`` (planned =
pasted + dropped by reason), ``candidates/*``, ``per_category/*`` (pasted objects) and ``pixels/ood``.
"""

from pipelines.augment.cli import (
    build_parser,
    config_from_args,
    contact_sheet,
    main,
    parse_label_ids,
    parse_surfaces,
    summary_lines,
)
from pipelines.augment.config import REJECT_REASONS, STAGE, TIME_NAMESPACE, AugmentConfig
from pipelines.augment.dofns import inspect_image, noise_seed
from pipelines.augment.elements import BankObject, FrameJob, PlacedFrame
from pipelines.augment.graph import AugmentOutputs, build_pipeline, make_handler, resolve_inputs, run, write_outputs

__all__ = [
    "REJECT_REASONS", "STAGE", "TIME_NAMESPACE", "AugmentConfig", "AugmentOutputs", "BankObject", "FrameJob", "PlacedFrame",
    "build_parser", "build_pipeline", "config_from_args", "contact_sheet", "inspect_image", "main", "make_handler",
    "noise_seed", "parse_label_ids", "parse_surfaces", "summary_lines", "resolve_inputs", "run", "write_outputs",
]
