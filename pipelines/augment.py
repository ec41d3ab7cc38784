"""``stylepaste augment``: style-aligned copy-paste of object-bank objects into Cityscapes frames.

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
unreadable_image, unreadable_label); frames are never filtered. Extras: ``frames/*``, ``slots/*`` (planned =
pasted + dropped by reason), ``candidates/*``, ``per_category/*`` (pasted objects) and ``pixels/ood``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import apache_beam as beam
import fsspec
import numpy as np
from apache_beam.metrics import Metrics
from PIL import Image

from pipelines import beam_io
from pipelines.paste import (
    BLEND_MODES,
    DEFAULT_SURFACES,
    DROP_BAD_OBJECT,
    DROP_MISSING_OBJECT,
    SLOT_PASTED,
    VOID_LABEL_IDS,
    Drop,
    FramePlan,
    ObjectMeta,
    PasteConfig,
    Placement,
    compose_frame,
    forbidden_mask,
    frame_style,
    place_candidates,
    plan_frame,
    slot_outcomes,
    tighten,
)
from schemas.arrow import FRAME, OBJECT_BANK
from schemas.cityscapes import CityscapesFrame, list_frames, read_label_ids, read_train_ids
from schemas.codecs import (
    DEFAULT_MAX_PIXELS,
    IMAGE_CODECS,
    PNG_COMPRESS_LEVEL,
    ImageDecodeError,
    decode_png,
    encode_image,
    encode_png,
    read_rgb,
)
from schemas.labels import LABEL_BY_NAME, TRAIN_CLASSES
from schemas.manifest import open_shard, read_manifest, resolve_shards
from schemas.rng import rng_for
from schemas.runtime import acquire_torch_threads, process_id, release_torch_threads

STAGE = "augment"
"""Stage name recorded in reject records."""

REJECT_REASONS: tuple[str, ...] = ("missing_label", "size_mismatch", "unreadable_image", "unreadable_label")
"""Why a frame could not be used (written to the rejects file)."""

CLEAN = "clean"
ALIGN = "align"
TIME_NAMESPACE = "stylepaste_time"
"""Beam Metrics namespace of the per-phase wall-clock counters (microseconds): decode, plan, place, style,
paste, encode (alignment time is RunInference's own ``StylepasteAlign`` metrics)."""

DEFAULT_ALIGNER = "reinhard+sensor"
BANK_COLUMNS = ["object_id", "category_id", "category_name", "image", "mask", "source_file", "src_lab_mean",
                "src_lab_std", "src_sharpness", "src_noise", "src_blockiness"]


# --------------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class AugmentConfig:
    """Settings of one augment run (the whole command line except the Beam runner options).

    Attributes:
        cityscapes: Cityscapes root (local path or fsspec URL) in the official layout.
        bank: Object-bank folder (with ``_manifest.json``), a shard, or a glob of shards.
        out: Output folder URL.
        split: Split folder to read (``train``, ``val``, ...).
        aligner: Style aligner name for :func:`style_transfer.aligners.get_aligner` (``"a+b"`` chains).
        aligner_params: JSON object of the aligner's parameters (e.g. ``{"mode": "object"}``).
        align_strength: Blend of the aligned object with the unaligned one, in [0, 1].
        blend: Seam blending: ``feather``, ``laplacian`` or ``none``.
        paste_prob: Probability that a frame gets pastes.
        objects_min: Fewest objects per pasted frame.
        objects_max: Most objects per pasted frame.
        scale_min: Smallest object (longer side / frame height).
        scale_max: Largest object (longer side / frame height).
        flip_prob: Probability of a horizontal flip.
        surfaces: ``(trainId, weight)`` where objects may stand.
        forbidden_label_ids: labelIds no pasted pixel may cover.
        perspective: Tie object size to the anchor row.
        class_balanced: Draw a category uniformly, then an object of it.
        candidates_per_slot: Objects drawn in advance per slot (re-draws + 1).
        placement_tries: Anchors tried per candidate.
        min_contrast: Smallest visibility of a kept paste (:func:`style_transfer.visibility.visibility`).
        min_object_px: Smallest pasted longer side in pixels.
        max_upscale: Largest enlargement of an object over its source size (0: no limit).
        style_height: Height of the destination thumbnail the aligners see.
        seed: Run seed.
        num_shards: Output shards.
        row_group_rows: Rows per Parquet row group.
        image_codec: Shard image codec (png, jpeg, webp).
        image_quality: Quality of a lossy codec (95..100).
        png_level: zlib level of shard PNGs.
        device: Aligner device: cpu, cuda, cuda:N or auto.
        align_batch_size: Largest RunInference batch.
        torch_threads: ``torch.set_num_threads`` in each worker process (None: leave torch's default); the
            process that runs the pipeline in memory keeps its own setting.
        max_frames: Use only the first N frames (sorted by frame id); None for all.
        overwrite: Replace a non-empty output folder after a successful run.
    """

    cityscapes: str
    bank: str
    out: str
    split: str = "train"
    aligner: str = DEFAULT_ALIGNER
    aligner_params: str = "{}"
    align_strength: float = 1.0
    blend: str = "feather"
    paste_prob: float = 0.5
    objects_min: int = 1
    objects_max: int = 3
    scale_min: float = 0.03
    scale_max: float = 0.3
    flip_prob: float = 0.5
    surfaces: tuple[tuple[int, float], ...] = DEFAULT_SURFACES
    forbidden_label_ids: tuple[int, ...] = VOID_LABEL_IDS
    perspective: bool = False
    class_balanced: bool = False
    candidates_per_slot: int = 2
    placement_tries: int = 8
    min_contrast: float = 0.5
    min_object_px: int = 4
    max_upscale: float = 3.0
    style_height: int = 256
    seed: int = 0
    num_shards: int = 4
    row_group_rows: int = 8
    image_codec: str = "png"
    image_quality: int = 95
    png_level: int = PNG_COMPRESS_LEVEL
    device: str = "auto"
    align_batch_size: int = 16
    torch_threads: int | None = 1
    max_frames: int | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        self.paste_config()  # validates the plan settings
        if self.blend not in BLEND_MODES:
            raise ValueError(f"--blend must be one of {BLEND_MODES}, got {self.blend!r}")
        if not 0.0 <= self.align_strength <= 1.0:
            raise ValueError(f"--align-strength must lie in [0, 1], got {self.align_strength}")
        if self.min_contrast < 0:
            raise ValueError(f"--min-contrast must be >= 0, got {self.min_contrast}")
        if self.image_codec not in IMAGE_CODECS:
            raise ValueError(f"--image-codec must be one of {IMAGE_CODECS}, got {self.image_codec!r}")
        if self.image_codec != "png" and not 95 <= self.image_quality <= 100:
            raise ValueError(f"--image-quality must lie in 95..100, got {self.image_quality}")
        if not 0 <= self.png_level <= 9:
            raise ValueError(f"--png-level must lie in 0..9, got {self.png_level}")
        for name in ("num_shards", "row_group_rows", "style_height", "align_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"--torch-threads must be >= 1, got {self.torch_threads}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"--max-frames must be >= 1, got {self.max_frames}")
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {self.seed}")
        self.aligner_param_dict()

    def paste_config(self) -> PasteConfig:
        """The plan and placement settings."""
        return PasteConfig(
            paste_prob=self.paste_prob, objects_min=self.objects_min, objects_max=self.objects_max,
            scale_min=self.scale_min, scale_max=self.scale_max, flip_prob=self.flip_prob, surfaces=self.surfaces,
            forbidden_label_ids=self.forbidden_label_ids, candidates_per_slot=self.candidates_per_slot,
            anchors_per_candidate=self.placement_tries, class_balanced=self.class_balanced,
            perspective=self.perspective, min_object_px=self.min_object_px, max_upscale=self.max_upscale)

    def aligner_param_dict(self) -> dict[str, Any]:
        """The aligner's constructor parameters: ``--aligner-params`` plus ``strength``.

        Raises:
            ValueError: If ``--aligner-params`` is not a JSON object.
        """
        try:
            params = json.loads(self.aligner_params or "{}")
        except json.JSONDecodeError as err:
            raise ValueError(f"--aligner-params must be a JSON object, got {self.aligner_params!r} ({err})") from err
        if not isinstance(params, dict):
            raise ValueError(f"--aligner-params must be a JSON object, got {self.aligner_params!r}")
        if "strength" in params and float(params["strength"]) != self.align_strength:
            raise ValueError("give the strength with --align-strength, not inside --aligner-params")
        return {**params, "strength": self.align_strength}

    def provenance(self) -> tuple[str, str]:
        """The FRAME row's ``aligner`` and ``aligner_params`` fields."""
        params = {
            "aligner": self.aligner,
            "params": self.aligner_param_dict(),
            "blend": self.blend,
            "min_contrast": self.min_contrast,
            "style_height": self.style_height,
            "candidates_per_slot": self.candidates_per_slot,
        }
        return f"{self.aligner}; blend={self.blend}", json.dumps(params, sort_keys=True)


# ------------------------------------------------------------------------------------------- element types
@dataclass(frozen=True)
class BankObject:
    """One object-bank row as the join carries it (encoded pixels, source statistics)."""

    object_id: int
    category_id: int
    category_name: str
    image: bytes
    mask: bytes
    source_file: str
    source_stats: tuple[float, ...]


@dataclass(frozen=True)
class FrameJob:
    """A read and planned frame, with its pixels still encoded.

    Attributes:
        frame: The Cityscapes frame record.
        image: Source image file bytes.
        passthrough: Whether ``image`` is an 8-bit RGB PNG that may be written unchanged.
        height: Frame height.
        width: Frame width.
        label_png: trainIds map encoded as PNG (the FRAME ``label`` when nothing is pasted).
        label_source: URL the trainIds came from.
        forbidden_png: 0/1 map of forbidden pixels as PNG (None for frames without pastes).
        plan: The frame's plan.
    """

    frame: CityscapesFrame
    image: bytes
    passthrough: bool
    height: int
    width: int
    label_png: bytes
    label_source: str
    forbidden_png: bytes | None
    plan: FramePlan


@dataclass(frozen=True)
class PlacedFrame:
    """A frame after placement, waiting for its aligned objects."""

    job: FrameJob
    placements: tuple[Placement, ...]
    drops: tuple[Drop, ...]
    objects: dict[int, ObjectMeta] = field(default_factory=dict)


def _frame_element(frame: CityscapesFrame) -> dict[str, str]:
    return {"frame_id": frame.frame_id, "image": frame.image_url, "label_ids": frame.label_ids_url,
            "train_ids": frame.train_ids_url}


class _Clock:
    """Adds wall-clock microseconds of a phase to a Beam Metrics counter."""

    def __init__(self, phase: str) -> None:
        self.counter = Metrics.counter(TIME_NAMESPACE, f"{phase}_us")
        self.start = 0.0

    def __enter__(self) -> _Clock:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.counter.inc(int((time.perf_counter() - self.start) * 1e6))


# ------------------------------------------------------------------------------------------------- reading
def _read_bytes(url: str) -> bytes:
    with fsspec.open(url, "rb") as f:
        return f.read()


def _exists(url: str) -> bool:
    fs, path = fsspec.core.url_to_fs(url)
    return bool(fs.exists(path))


def inspect_image(data: bytes, name: str) -> tuple[int, int, bool]:
    """Size of an encoded image and whether it is an 8-bit RGB PNG, checking its integrity without decoding.

    PNG chunks (CRCs, the closing IEND) are verified; other formats are decoded once to validate them.

    Returns:
        ``(height, width, passthrough)``.

    Raises:
        ImageDecodeError: If the bytes are not a readable image or declare too many pixels.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            fmt, mode = img.format, img.mode
            if w * h > DEFAULT_MAX_PIXELS:
                raise ImageDecodeError(f"{name}: image declares {w}x{h} pixels, more than {DEFAULT_MAX_PIXELS}")
            if fmt == "PNG":
                img.verify()
            else:
                img.load()
    except ImageDecodeError:
        raise
    except Exception as err:  # PIL raises many types for corrupt data
        raise ImageDecodeError(f"{name}: cannot read image ({type(err).__name__}: {err})") from err
    return h, w, fmt == "PNG" and mode == "RGB"


class ReadFrameFn(beam.DoFn):
    """Frame record -> ``(frame, image bytes, (h, w, passthrough), trainIds, labelIds|None)``; rejects."""

    def process(self, frame: CityscapesFrame) -> Iterable[Any]:
        yield beam_io.tagged_count(beam_io.INPUTS)
        element = _frame_element(frame)

        def reject(reason: str, detail: str) -> list[Any]:
            return [beam_io.tagged_reject(element, STAGE, reason, detail),
                    beam_io.tagged_count(f"{beam_io.REJECTED}/{reason}")]

        with _Clock("decode"):
            try:
                data = _read_bytes(frame.image_url)
                h, w, passthrough = inspect_image(data, frame.image_url)
            except FileNotFoundError as err:
                yield from reject("unreadable_image", f"image file not found: {frame.image_url} ({err})")
                return
            except ImageDecodeError as err:
                yield from reject("unreadable_image", str(err))
                return
            try:
                train_ids = read_train_ids(frame)
                has_train_file = _exists(frame.train_ids_url)
                label_ids = read_label_ids(frame) if _exists(frame.label_ids_url) else None
            except FileNotFoundError as err:
                yield from reject("missing_label", str(err))
                return
            except (ImageDecodeError, ValueError) as err:
                yield from reject("unreadable_label", str(err))
                return
        for name, arr in (("trainIds", train_ids), ("labelIds", label_ids)):
            if arr is not None and arr.shape != (h, w):
                yield from reject("size_mismatch", f"{frame.frame_id}: image is {w}x{h} but its {name} map is "
                                                   f"{arr.shape[1]}x{arr.shape[0]}")
                return
        source = frame.train_ids_url if has_train_file else frame.label_ids_url
        yield frame, data, (h, w, passthrough), train_ids, label_ids, source


class PlanFrameFn(beam.DoFn):
    """Draw the frame's plan; frames without pastes go to the ``clean`` output, the others are keyed by id."""

    def __init__(self, cfg: AugmentConfig) -> None:
        self._cfg = cfg
        self._paste = cfg.paste_config()

    def process(self, element: tuple, index: tuple[np.ndarray, np.ndarray]) -> Iterable[Any]:
        frame, data, (h, w, passthrough), train_ids, label_ids, source = element
        bank_ids, bank_cats = index
        with _Clock("plan"):
            plan = plan_frame(frame.frame_id, train_ids, label_ids, bank_ids, self._paste, self._cfg.seed,
                              bank_cats if self._paste.class_balanced else None)
        with _Clock("encode"):
            label_png = encode_png(train_ids, compress_level=self._cfg.png_level)
            forbidden_png = None
            if plan.pastes:
                forb = forbidden_mask(train_ids, label_ids, self._paste.forbidden_label_ids)
                forbidden_png = encode_png(forb.astype(np.uint8), compress_level=self._cfg.png_level)
        job = FrameJob(frame, data, passthrough, h, w, label_png, source, forbidden_png, plan)
        if plan.pastes:
            yield beam_io.tagged_count("frames/planned_paste")
            yield beam_io.tagged_count("slots/planned", len(plan.slots))
            yield frame.frame_id, job
        else:
            yield beam_io.tagged_count("frames/planned_clean")
            yield beam.pvalue.TaggedOutput(CLEAN, job)


# ---------------------------------------------------------------------------------------------------- bank
def read_bank_index(url: str) -> Iterable[tuple[int, int]]:
    """``(object_id, category_id)`` of every row of one bank shard (schema validated)."""
    pf = open_shard(url, OBJECT_BANK)
    table = pf.read(columns=["object_id", "category_id"])
    yield from zip(table.column("object_id").to_pylist(), table.column("category_id").to_pylist())


def index_arrays(pairs: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique bank ids and their categories (a duplicated id keeps its smallest category id).

    Returns:
        ``(ids, categories)``: int64 and int64 arrays of equal length.
    """
    best: dict[int, int] = {}
    for oid, cat in pairs:
        oid, cat = int(oid), int(cat)
        best[oid] = min(cat, best.get(oid, cat))
    ids = np.array(sorted(best), dtype=np.int64)
    cats = np.array([best[i] for i in ids.tolist()], dtype=np.int64)
    return ids, cats


class ReadBankObjectsFn(beam.DoFn):
    """Bank shard URL -> ``(object_id, BankObject)`` for the objects some plan asked for.

    Row groups none of whose ids is wanted are skipped after reading only their ``object_id`` column.
    """

    def process(self, url: str, wanted: Iterable[int]) -> Iterable[tuple[int, BankObject]]:
        want = wanted if isinstance(wanted, (set, frozenset)) else set(wanted)
        if not want:
            return
        pf = open_shard(url, OBJECT_BANK)
        for rg in range(pf.metadata.num_row_groups):
            ids = pf.read_row_group(rg, columns=["object_id"]).column("object_id").to_pylist()
            if not any(i in want for i in ids):
                continue
            table = pf.read_row_group(rg, columns=BANK_COLUMNS)
            for row in table.to_pylist():
                oid = int(row["object_id"])
                if oid not in want:
                    continue
                stats = (*row["src_lab_mean"], *row["src_lab_std"], row["src_sharpness"], row["src_noise"],
                         row["src_blockiness"])
                yield oid, BankObject(oid, int(row["category_id"]), str(row["category_name"]), row["image"],
                                      row["mask"], str(row["source_file"]), tuple(float(v) for v in stats))


def attach_objects(element: tuple[int, dict[str, list]]) -> Iterable[tuple[str, tuple[int, BankObject | None]]]:
    """Joined ``(object_id, {"req": [frame ids], "obj": [BankObject]})`` -> ``(frame_id, (object_id, obj))``."""
    oid, groups = element
    objs = sorted(groups["obj"], key=lambda o: (o.image, o.mask))  # deterministic if an id is duplicated
    obj = objs[0] if objs else None
    for fid in sorted(set(groups["req"])):
        yield fid, (oid, obj)


# --------------------------------------------------------------------------------------------------- paste
def _decode_object(obj: BankObject):
    rgb = decode_png(obj.image, name=f"bank object {obj.object_id} image")
    mask = decode_png(obj.mask, name=f"bank object {obj.object_id} mask")
    if rgb.ndim != 3 or mask.ndim != 2:
        raise ImageDecodeError(f"bank object {obj.object_id}: expected an RGB image and a gray mask, "
                               f"got {rgb.shape} and {mask.shape}")
    return tighten(obj.object_id, rgb, mask, category_id=obj.category_id, category_name=obj.category_name,
                   source_stats=np.asarray(obj.source_stats, dtype=np.float32), source_file=obj.source_file)


def noise_seed(seed: int, frame_id: str, slot: int, candidate: int) -> int:
    """Seed of the sensor noise of one candidate: from ``rng_for(seed, ("noise", frame_id, slot, candidate))``."""
    return int(rng_for(seed, ("noise", frame_id, slot, candidate)).integers(2**62))


class _RegroupedFrameFn(beam.DoFn):
    """A DoFn over one regrouped frame: sets the worker's torch threads once and checks the regroup's shape."""

    def __init__(self, cfg: AugmentConfig) -> None:
        self._cfg = cfg
        self._launcher = process_id()
        self._threads = False

    def setup(self) -> None:
        self._threads = acquire_torch_threads(self._cfg.torch_threads, launcher=self._launcher)

    def teardown(self) -> None:
        release_torch_threads(self._threads)

    @staticmethod
    def _the_job(fid: str, groups: dict[str, list], what: str) -> Any:
        if len(groups["job"]) != 1:
            raise RuntimeError(f"frame {fid}: expected one {what} frame in the regroup, got {len(groups['job'])}")
        return groups["job"][0]


class PlaceObjectsFn(_RegroupedFrameFn):
    """Regrouped frame -> placed candidates (main) and one ``AlignRequest`` per placed candidate (``align``)."""

    def __init__(self, cfg: AugmentConfig, style_pixels: bool) -> None:
        super().__init__(cfg)
        self._style_pixels = style_pixels

    def process(self, element: tuple[str, dict[str, list]]) -> Iterable[Any]:
        from style_transfer.beam import AlignRequest

        fid, groups = element
        job: FrameJob = self._the_job(fid, groups, "planned")
        crops, metas, bad = {}, {}, set()
        with _Clock("decode"):
            try:
                rgb = read_rgb(job.image, name=job.frame.image_url)
            except ImageDecodeError as err:
                yield beam_io.tagged_reject(_frame_element(job.frame), STAGE, "unreadable_image", str(err))
                yield beam_io.tagged_count(f"{beam_io.REJECTED}/unreadable_image")
                yield beam_io.tagged_count("slots/frame_rejected", len(job.plan.slots))
                return
            forbidden = decode_png(job.forbidden_png, name=f"{fid} forbidden mask") != 0
            for oid, obj in sorted(groups["objs"], key=lambda kv: kv[0]):
                if obj is None:
                    continue
                try:
                    crop = _decode_object(obj)
                except (ImageDecodeError, ValueError):
                    bad.add(oid)
                    continue
                crops[oid] = crop
                metas[oid] = crop.meta
        with _Clock("place"):
            placements, drops = place_candidates(job.plan, crops, forbidden, self._cfg.min_object_px,
                                                 self._cfg.max_upscale)
        drops = [replace(d, reason=DROP_BAD_OBJECT) if d.reason == DROP_MISSING_OBJECT and d.object_id in bad else d
                 for d in drops]
        if placements:
            with _Clock("style"):
                thumb, stats = frame_style(rgb, self._cfg.style_height)
            for p in placements:
                crop = crops[p.object_id]
                scale = max(p.mask.shape) / max(crop.mask.shape)
                request = AlignRequest(
                    content=p.rgb, mask=p.mask, style=thumb if self._style_pixels else None, style_stats=stats,
                    source_stats=crop.source_stats, content_scale=scale,
                    seed=noise_seed(self._cfg.seed, fid, p.slot, p.candidate))
                yield beam.pvalue.TaggedOutput(ALIGN, ((fid, p.slot, p.candidate), request))
        yield beam_io.tagged_count("candidates/aligned", len(placements))
        yield fid, PlacedFrame(job, tuple(placements), tuple(drops), metas)


def key_by_frame(element: tuple[tuple[str, int, int], np.ndarray]) -> tuple[str, tuple[tuple[int, int], np.ndarray]]:
    """RunInference output ``((frame_id, slot, candidate), restyled)`` -> ``(frame_id, ((slot, cand), restyled))``."""
    (fid, slot, cand), restyled = element
    return fid, ((int(slot), int(cand)), restyled)


def _row(cfg: AugmentConfig, job: FrameJob, image: bytes, label: bytes, ood: int,
         objects: list[dict[str, Any]]) -> dict[str, Any]:
    aligner, params = cfg.provenance()
    return {
        "frame_id": job.frame.frame_id,
        "split": job.frame.split,
        "image": image,
        "label": label,
        "height": int(job.height),
        "width": int(job.width),
        "ood_pixels": int(ood),
        "objects": objects,
        "aligner": aligner,
        "aligner_params": params,
        "seed": int(cfg.seed),
        "source_image": job.frame.image_url,
        "source_label": job.label_source,
    }


def _clean_image(cfg: AugmentConfig, job: FrameJob, rgb: np.ndarray | None = None) -> bytes:
    if cfg.image_codec == "png" and job.passthrough:
        return job.image
    if rgb is None:
        rgb = read_rgb(job.image, name=job.frame.image_url)
    return encode_image(rgb, cfg.image_codec, quality=cfg.image_quality, compress_level=cfg.png_level)


class EncodeCleanFn(beam.DoFn):
    """A frame without pastes -> its FRAME row (source PNG bytes unchanged when possible)."""

    def __init__(self, cfg: AugmentConfig) -> None:
        self._cfg = cfg

    def process(self, job: FrameJob) -> Iterable[Any]:
        with _Clock("encode"):
            try:
                image = _clean_image(self._cfg, job)
            except ImageDecodeError as err:
                yield beam_io.tagged_reject(_frame_element(job.frame), STAGE, "unreadable_image", str(err))
                yield beam_io.tagged_count(f"{beam_io.REJECTED}/unreadable_image")
                return
        yield beam_io.tagged_count(beam_io.WRITTEN)
        yield beam_io.tagged_count("frames/without_objects")
        yield _row(self._cfg, job, image, job.label_png, 0, [])


class PasteObjectsFn(_RegroupedFrameFn):
    """Placed frame + aligned candidates -> pasted, visibility-checked and encoded FRAME row."""

    def process(self, element: tuple[str, dict[str, list]]) -> Iterable[Any]:
        fid, groups = element
        placed: PlacedFrame = self._the_job(fid, groups, "placed")
        job = placed.job
        aligned = {tuple(k): v for k, v in groups["aligned"]}
        missing = [p.key for p in placed.placements if p.key not in aligned]
        if missing:  # RunInference returns one result per request; anything else is a bug, never a silent paste
            raise RuntimeError(f"frame {fid}: no aligned result for placed candidates {missing}")
        rgb = None
        for drop in placed.drops:
            yield beam_io.tagged_count(f"candidates/{drop.reason}")
        result = None
        if placed.placements:
            with _Clock("decode"):
                rgb = read_rgb(job.image, name=job.frame.image_url)
                train_ids = decode_png(job.label_png, name=f"{fid} label")
            with _Clock("paste"):
                result = compose_frame(rgb, train_ids, placed.placements, aligned, placed.objects,
                                       blend=self._cfg.blend, min_contrast=self._cfg.min_contrast)
            for drop in result.drops:
                yield beam_io.tagged_count(f"candidates/{drop.reason}")
        for outcome in slot_outcomes(job.plan, placed.drops, result).values():
            yield beam_io.tagged_count(f"slots/{outcome}")
        with _Clock("encode"):
            if result is None or not result.objects:
                image, label, ood, objects = _clean_image(self._cfg, job, rgb), job.label_png, 0, []
                yield beam_io.tagged_count("frames/without_objects")
            else:
                image = encode_image(result.rgb, self._cfg.image_codec, quality=self._cfg.image_quality,
                                     compress_level=self._cfg.png_level)
                label = encode_png(result.label, compress_level=self._cfg.png_level)
                ood, objects = result.ood_pixels, [o.to_record() for o in result.objects]
                yield beam_io.tagged_count("frames/with_objects")
                yield beam_io.tagged_count("pixels/ood", ood)
                for o in result.objects:
                    name = (o.category_name or str(o.category_id)).replace("/", "_")
                    yield beam_io.tagged_count(f"per_category/{name}")
        yield beam_io.tagged_count(beam_io.WRITTEN)
        yield _row(self._cfg, job, image, label, ood, objects)


# -------------------------------------------------------------------------------------------------- graph
def aligner_needs_style_pixels(cfg: AugmentConfig) -> bool:
    """Whether the configured aligner needs the destination thumbnail (not only its statistics)."""
    if cfg.aligner == "learned":
        return True
    from style_transfer.aligners import get_aligner

    return bool(get_aligner(cfg.aligner, **cfg.aligner_param_dict()).needs_style_pixels)


def make_handler(cfg: AugmentConfig):
    """The ``RunInference`` model handler that restyles the placed objects.

    ``batch_shape="group"`` runs only equal-size crops together, so an object's result (its sensor noise
    field included) never depends on which other objects share its batch: shards stay byte-identical for
    any worker count or bundling. Torch's thread count is set by the paste steps fused with it
    (``--torch-threads``, worker processes only).
    """
    from style_transfer.beam import AlignerModelHandler

    return AlignerModelHandler(cfg.aligner, cfg.aligner_param_dict(), device=cfg.device, batch_shape="group",
                               max_batch_size=cfg.align_batch_size)


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
    from apache_beam.ml.inference.base import RunInference

    handler = handler or make_handler(cfg)
    style_pixels = aligner_needs_style_pixels(cfg)

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


def write_outputs(outputs: AugmentOutputs, cfg: AugmentConfig, work_url: str) -> None:
    """Write rows, rejects and counts into a run's work folder (:class:`pipelines.beam_io.RunFolder`)."""
    outputs.rows | "WriteShards" >> beam_io.WriteShards(FRAME, work_url, cfg.num_shards, key="frame_id",
                                                        row_group_rows=cfg.row_group_rows)
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
    except (FileNotFoundError, NotADirectoryError, ValueError):
        pass
    return frames, bank_urls, source


def run(cfg: AugmentConfig, options: beam.options.pipeline_options.PipelineOptions | None = None):
    """Run the augment pipeline and commit its output folder.

    Args:
        cfg: Settings.
        options: Beam pipeline options (default: DirectRunner, in memory).

    Returns:
        The committed :class:`schemas.manifest.Manifest`.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    options = options or PipelineOptions(["--runner=DirectRunner"])
    beam_io.check_shared_storage([cfg.out, cfg.cityscapes, cfg.bank], options)
    frames, bank_urls, source = resolve_inputs(cfg)
    folder = beam_io.RunFolder.begin(cfg.out, overwrite=cfg.overwrite)
    try:
        p = beam.Pipeline(options=options)
        write_outputs(build_pipeline(p, cfg, frames, bank_urls), cfg, folder.work_url)
        beam_io.run_to_completion(p)
        params = asdict(cfg)
        params["aligner_params"] = cfg.aligner_param_dict()
        manifest = folder.commit(FRAME, parameters=params, seed=cfg.seed, source=source, overwrite=cfg.overwrite)
    except BaseException:
        folder.discard()
        raise
    return manifest


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
    from schemas.codecs import decode_image
    from schemas.labels import colorize_train_ids

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
    """The ``stylepaste augment`` command-line parser."""
    d = AugmentConfig("", "", "")
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

    plan = p.add_argument_group("paste plan (drawn per frame from --seed and the frame id)")
    plan.add_argument("--seed", type=int, default=d.seed, help="run seed")
    plan.add_argument("--paste-prob", type=float, default=d.paste_prob, help="probability that a frame gets pastes")
    plan.add_argument("--objects-per-frame", default=f"{d.objects_min}-{d.objects_max}", metavar="MIN-MAX",
                      help="objects per pasted frame (uniform)")
    plan.add_argument("--scale-range", default=f"{d.scale_min}-{d.scale_max}", metavar="MIN-MAX",
                      help="object's longer side as a fraction of the frame height, log-uniform (small objects "
                           "dominate)")
    plan.add_argument("--perspective", action="store_true",
                      help="tie the size to the row: objects lower in the frame are bigger")
    plan.add_argument("--flip-prob", type=float, default=d.flip_prob, help="probability of a horizontal flip")
    plan.add_argument("--class-balanced", action="store_true",
                      help="draw a category uniformly, then an object of it (otherwise objects are uniform)")
    plan.add_argument("--surfaces", type=parse_surfaces,
                      default=",".join(f"{TRAIN_CLASSES[t]}:{w}" for t, w in d.surfaces),
                      help="where an object's bottom centre may stand: <train class or trainId>:<weight>,...")
    plan.add_argument("--forbidden-label-ids", type=parse_label_ids,
                      default=",".join(str(i) for i in d.forbidden_label_ids),
                      help="labelIds no pasted pixel may cover (default: the void category, incl. ego vehicle 1); "
                           "frames without labelIds avoid their ignore (255) trainIds")
    plan.add_argument("--candidates-per-slot", type=int, default=d.candidates_per_slot,
                      help="objects drawn in advance per slot; the first placeable and visible one is pasted")
    plan.add_argument("--placement-tries", type=int, default=d.placement_tries,
                      help="positions tried per candidate before it is dropped (counted)")
    plan.add_argument("--min-object-px", type=int, default=d.min_object_px, help="smallest pasted longer side")
    plan.add_argument("--max-upscale", type=float, default=d.max_upscale,
                      help="largest enlargement of an object over its source size; a larger drawn scale is "
                           "reduced to it (0 = no limit)")

    st = p.add_argument_group("style alignment and pasting")
    st.add_argument("--aligner", default=d.aligner,
                    help="style aligner: none, reinhard, sensor, histogram, fda, learned, or a '+' chain")
    st.add_argument("--aligner-params", default=d.aligner_params, metavar="JSON",
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
    beam_io.add_beam_arguments(p)
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
    return AugmentConfig(
        cityscapes=args.cityscapes, bank=args.bank, out=args.out, split=args.split, aligner=args.aligner,
        aligner_params=args.aligner_params, align_strength=args.align_strength, blend=args.blend,
        paste_prob=args.paste_prob, objects_min=omin, objects_max=omax, scale_min=smin, scale_max=smax,
        flip_prob=args.flip_prob, surfaces=surfaces, forbidden_label_ids=forbidden, perspective=args.perspective,
        class_balanced=args.class_balanced, candidates_per_slot=args.candidates_per_slot,
        placement_tries=args.placement_tries, min_contrast=args.min_contrast, min_object_px=args.min_object_px,
        max_upscale=args.max_upscale,
        style_height=args.style_height, seed=args.seed, num_shards=args.num_shards,
        row_group_rows=args.row_group_rows, image_codec=args.image_codec, image_quality=args.image_quality,
        png_level=args.png_level, device=args.device, align_batch_size=args.align_batch_size,
        torch_threads=args.torch_threads, max_frames=args.max_frames, overwrite=args.overwrite)


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
        options = beam_io.pipeline_options(args, beam_args)
        start = time.perf_counter()
        manifest = run(cfg, options)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"stylepaste augment: error: {err}", file=sys.stderr)
        return 2
    counts = manifest.counts
    print(f"augment: {manifest.rows} frames in {len(manifest.shards)} shards -> {cfg.out} "
          f"({time.perf_counter() - start:.1f} s)")
    slots = counts.get("slots", {})
    if slots:
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(slots.items()) if k not in ("planned", SLOT_PASTED))
        print(f"slots: planned {slots.get('planned', 0)} = pasted {slots.get(SLOT_PASTED, 0)}"
              + (f" + dropped ({dropped})" if dropped else ""))
    print(beam_io.accounting_line(counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
