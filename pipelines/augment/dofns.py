"""The augment pipeline's DoFns: each reads its element, calls the pure core (:mod:`pipelines.paste`, the
codecs) and counts."""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import apache_beam as beam
import fsspec
import numpy as np
from apache_beam.metrics import Metrics
from PIL import Image

from pipelines import beam_io, running
from pipelines.augment.config import ALIGN, CLEAN, STAGE, TIME_NAMESPACE, BANK_COLUMNS, AugmentConfig
from pipelines.augment.elements import BankObject, FrameJob, PlacedFrame, frame_element
from pipelines.paste import (
    DROP_BAD_OBJECT,
    DROP_MISSING_OBJECT,
    compose_frame,
    forbidden_mask,
    frame_style,
    place_candidates,
    plan_frame,
    slot_outcomes,
    tighten,
)
from schemas.arrow import OBJECT_BANK
from schemas.cityscapes import CityscapesFrame, read_label_ids, read_train_ids
from schemas.codecs import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_png, encode_image, encode_png, read_rgb
from schemas.labels import LabelValueError
from schemas.manifest import open_shard
from schemas.rng import rng_for
from schemas.runtime import acquire_torch_threads, process_id, release_torch_threads
from style_transfer.beam import AlignRequest

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


class ReadFrameFn(running.WorkerDoFn):
    """Frame record -> ``(frame, image bytes, (h, w, passthrough), trainIds, labelIds|None)``; rejects."""

    def process(self, frame: CityscapesFrame) -> Iterable[Any]:
        yield beam_io.tagged_count(beam_io.INPUTS)
        element = frame_element(frame)

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
            except LabelValueError as err:
                yield from reject("invalid_label", str(err))
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


class PlanFrameFn(running.WorkerDoFn):
    """Draw the frame's plan; frames without pastes go to the ``clean`` output, the others are keyed by id."""

    def __init__(self, cfg: AugmentConfig) -> None:
        self._cfg = cfg
        self._paste = cfg.paste

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


class ReadBankObjectsFn(running.WorkerDoFn):
    """Bank shard URL -> ``(object_id, BankObject)`` for the objects some plan asked for.

    Row groups none of whose ids is wanted are skipped after reading only their ``object_id`` column.
    """

    def process(self, url: str, wanted: Iterable[int]) -> Iterable[tuple[int, BankObject]]:
        want = wanted if isinstance(wanted, (set, frozenset)) else set(wanted)
        if not want:
            return
        pf = open_shard(url, OBJECT_BANK)
        columns = BANK_COLUMNS + (["license_id"] if "license_id" in pf.schema_arrow.names else [])
        for rg in range(pf.metadata.num_row_groups):
            ids = pf.read_row_group(rg, columns=["object_id"]).column("object_id").to_pylist()
            if not any(i in want for i in ids):
                continue
            table = pf.read_row_group(rg, columns=columns)
            for row in table.to_pylist():
                oid = int(row["object_id"])
                if oid not in want:
                    continue
                stats = (*row["src_lab_mean"], *row["src_lab_std"], row["src_sharpness"], row["src_noise"],
                         row["src_blockiness"])
                license_id = row.get("license_id")
                yield oid, BankObject(oid, int(row["category_id"]), str(row["category_name"]), row["image"],
                                      row["mask"], str(row["source_file"]), tuple(float(v) for v in stats),
                                      int(row["image_id"]), None if license_id is None else int(license_id))


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
                   source_stats=np.asarray(obj.source_stats, dtype=np.float32), source_file=obj.source_file,
                   image_id=obj.image_id, license_id=obj.license_id)


def noise_seed(seed: int, frame_id: str, slot: int, candidate: int) -> int:
    """Seed of the sensor noise of one candidate: from ``rng_for(seed, ("noise", frame_id, slot, candidate))``."""
    return int(rng_for(seed, ("noise", frame_id, slot, candidate)).integers(2**62))


class _RegroupedFrameFn(running.WorkerDoFn):
    """A DoFn over one regrouped frame: sets the worker's torch threads once and checks the regroup's shape."""

    def __init__(self, cfg: AugmentConfig) -> None:
        self._cfg = cfg
        self._launcher = process_id()
        self._threads = False

    def setup(self) -> None:
        super().setup()
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
        fid, groups = element
        job: FrameJob = self._the_job(fid, groups, "planned")
        crops, metas, bad = {}, {}, set()
        with _Clock("decode"):
            try:
                rgb = read_rgb(job.image, name=job.frame.image_url)
            except ImageDecodeError as err:
                yield beam_io.tagged_reject(frame_element(job.frame), STAGE, "unreadable_image", str(err))
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
            placements, drops = place_candidates(job.plan, crops, forbidden, self._cfg.paste.min_object_px,
                                                 self._cfg.paste.max_upscale)
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
        "frame_terms": cfg.frame_terms,
    }


def _clean_image(cfg: AugmentConfig, job: FrameJob, rgb: np.ndarray | None = None) -> bytes:
    if cfg.image_codec == "png" and job.passthrough:
        if rgb is None:  # bytes written unchanged are decoded once first: a valid CRC does not mean a whole stream
            read_rgb(job.image, name=job.frame.image_url)
        return job.image
    if rgb is None:
        rgb = read_rgb(job.image, name=job.frame.image_url)
    return encode_image(rgb, cfg.image_codec, quality=cfg.image_quality, compress_level=cfg.png_level)


class EncodeCleanFn(running.WorkerDoFn):
    """A frame without pastes -> its FRAME row (source PNG bytes unchanged when possible)."""

    def __init__(self, cfg: AugmentConfig) -> None:
        self._cfg = cfg

    def process(self, job: FrameJob) -> Iterable[Any]:
        with _Clock("encode"):
            try:
                image = _clean_image(self._cfg, job)
            except ImageDecodeError as err:
                yield beam_io.tagged_reject(frame_element(job.frame), STAGE, "unreadable_image", str(err))
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
