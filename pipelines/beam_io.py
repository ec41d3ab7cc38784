"""Beam I/O shared by the pipelines: deterministic Parquet shards, rejects, accounting and the output commit.

Everything is generic over :class:`schemas.arrow.ShardKind`. A pipeline run follows one pattern::

    folder = run_folder.RunFolder.begin(out_url, overwrite=cfg.overwrite, kind=KIND)  # pipelines.run_folder
    try:
        with beam.Pipeline(options=options) as p:                    # or running.run_to_completion(p)
            rows, rejects, counts = ...                              # the stage's own transforms
            rows | "WriteShards" >> WriteShards(KIND, folder.work_url, cfg.num_shards, key="frame_id")
            rejects | "WriteRejects" >> WriteRejects(folder.work_url)
            counts | "WriteCounts" >> WriteCounts(folder.work_url)
        manifest = folder.commit(KIND, parameters=..., seed=..., source=..., overwrite=cfg.overwrite)
    except BaseException:
        folder.discard()
        raise
    print(accounting_line(manifest.counts))

Workers write only into ``<out>/_temporary/<run id>/``; the driver's commit moves the shards and
``_rejects.jsonl`` into ``<out>`` and writes ``_manifest.json`` last, so a folder with a manifest is always
complete, and a failed run leaves nothing behind.

Elements and outputs:

* Stage DoFns emit their rows on the main output, rejects with :func:`tagged_reject` (tag :data:`REJECTS`)
  and accounting with :func:`tagged_count` (tag :data:`COUNTS`, ``(key, n)`` pairs that are also Beam Metrics
  counters). Count keys are ``"inputs"``, ``"written"``, ``"filtered/<reason>"``, ``"rejected/<reason>"`` and
  any ``"<group>/<name>"`` extra (e.g. ``"per_category/<name>"``); :func:`nest_counts` turns them into the
  manifest's ``counts``. The accounting is a PCollection (``CombinePerKey``), so it works on every runner.
* Shard ``i`` of ``n`` holds the rows with ``stable_hash(key) % n == i``, sorted by key, in row groups of
  ``row_group_rows``; every index is written, even when empty. File names and bytes are therefore a
  function of the rows and the settings only, whatever the runner, worker count or bundle split.

Storage goes through fsspec (local paths, ``file://``, ``memory://``, ``s3://``, ``gs://``); Beam's own file
IO is not used. ``memory://`` lives in one process: it works with the DirectRunner in ``in_memory`` or
``multi_threading`` mode only (:func:`pipelines.running.check_shared_storage` refuses it otherwise), because the worker
processes of ``multi_processing`` mode (and of any remote runner) each see their own empty memory
filesystem.
"""

from __future__ import annotations

import json
import logging
import math
import posixpath
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import apache_beam as beam
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from pipelines import running
from schemas.arrow import ShardKind, table_from_rows
from schemas.manifest import (
    REJECTS_NAME, ShardInfo, join_url,
)
from schemas.rng import stable_hash

log = logging.getLogger(__name__)

REJECTS = "rejects"
"""Tag of the rejects side output."""

COUNTS = "counts"
"""Tag of the accounting side output: ``(key, n)`` pairs."""

COUNTS_NAME = "_counts.json"
"""Accounting file the pipeline writes into the work folder (the commit folds it into the manifest)."""

METRICS_NAMESPACE = "stylepaste"
"""Namespace of the Beam Metrics counters."""

INPUTS = "inputs"
WRITTEN = "written"
FILTERED = "filtered"
REJECTED = "rejected"

DEFAULT_ROW_GROUP_ROWS = 64
"""Default rows per Parquet row group (a streaming unit of the readers)."""

DEFAULT_COMPRESSION = "snappy"
"""Parquet compression: PNG bytes do not compress further, so a cheap codec is enough."""

"""The DirectRunner's running modes."""


# --------------------------------------------------------------------------------------------------------------
# Rejects and counts


def reject_record(element: Any, stage: str, reason: str, detail: str) -> dict[str, Any]:
    """A reject record ``{"element", "stage", "reason", "detail"}`` with a JSON-safe element.

    Args:
        element: What was rejected (ids, URLs); non-JSON values become strings, non-finite floats too.
        stage: The pipeline step that rejected it (e.g. ``"coco"``).
        reason: Machine-readable reason (e.g. ``"image_missing"``).
        detail: Human-readable explanation naming the bad value.
    """
    return {"element": _json_safe(element), "stage": str(stage), "reason": str(reason), "detail": str(detail)}


def reject_line(record: Mapping[str, Any]) -> str:
    """One JSON line of the rejects file (sorted keys, so equal records give equal lines)."""
    return json.dumps(record, sort_keys=True, allow_nan=False, ensure_ascii=False)


def tagged_reject(element: Any, stage: str, reason: str, detail: str) -> beam.pvalue.TaggedOutput:
    """A reject for the :data:`REJECTS` side output (see :func:`reject_record`)."""
    return beam.pvalue.TaggedOutput(REJECTS, reject_record(element, stage, reason, detail))


def tagged_count(key: str, n: int = 1) -> beam.pvalue.TaggedOutput:
    """Count ``n`` under ``key`` on the :data:`COUNTS` side output, and in the Beam Metrics counter ``key``.

    Args:
        key: ``"inputs"``, ``"written"``, ``"filtered/<reason>"``, ``"rejected/<reason>"`` or
            ``"<group>/<name>"``.
        n: Amount.
    """
    Metrics.counter(METRICS_NAMESPACE, key).inc(int(n))
    return beam.pvalue.TaggedOutput(COUNTS, (key, int(n)))


def nest_counts(flat: Mapping[str, int]) -> dict[str, Any]:
    """Turn ``{"filtered/crowd": 3, "written": 5, ...}`` into the manifest's nested ``counts``.

    Returns:
        ``{"inputs": n, "written": n, "filtered": {reason: n}, "rejected": {reason: n}, <group>: {name: n}}``
        with sorted keys; ``inputs``, ``written``, ``filtered`` and ``rejected`` are always present.

    Raises:
        ValueError: For a key that is both a total and a group, or nested more than once.
    """
    out: dict[str, Any] = {INPUTS: 0, WRITTEN: 0, FILTERED: {}, REJECTED: {}}
    for key in sorted(flat):
        n = int(flat[key])
        if "/" in key:
            group, name = key.split("/", 1)
            if "/" in name or not isinstance(out.setdefault(group, {}), dict):
                raise ValueError(f"count key {key!r} must be '<total>' or '<group>/<name>'")
            out[group][name] = out[group].get(name, 0) + n
        else:
            if isinstance(out.get(key), dict):
                raise ValueError(f"count key {key!r} is a group of counts, not a total")
            out[key] = out.get(key, 0) + n
    return {k: (dict(sorted(v.items())) if isinstance(v, dict) else v) for k, v in sorted(out.items())}


def add_counts(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Two runs' nested counts added up (keys of either; numbers summed, dicts merged recursively)."""
    out: dict[str, Any] = {}
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, Mapping) or isinstance(y, Mapping):
            out[key] = add_counts(x or {}, y or {})
        else:
            out[key] = (x or 0) + (y or 0)
    return out


def check_accounting(counts: Mapping[str, Any]) -> None:
    """Check that ``inputs = written + filtered + rejected`` in nested counts.

    Raises:
        RuntimeError: If the sides differ (an element was lost or counted twice), with the accounting line.
    """
    filtered = sum(counts.get(FILTERED, {}).values())
    rejected = sum(counts.get(REJECTED, {}).values())
    if counts.get(INPUTS, 0) != counts.get(WRITTEN, 0) + filtered + rejected:
        raise RuntimeError(f"accounting does not balance: {accounting_line(counts)}")


def accounting_line(counts: Mapping[str, Any]) -> str:
    """The closing line of a run, e.g. ``inputs 77 = written 30 + filtered 46 (crowd 1, ...) + rejected 1 (...)``."""
    def part(name: str) -> str:
        by_reason = counts.get(name, {})
        total = sum(by_reason.values())
        inner = ", ".join(f"{k} {v}" for k, v in sorted(by_reason.items()) if v)
        return f"{name} {total}" + (f" ({inner})" if inner else "")

    return f"inputs {counts.get(INPUTS, 0)} = written {counts.get(WRITTEN, 0)} + {part(FILTERED)} + {part(REJECTED)}"


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else repr(float(value))
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _json_safe(value.item())
    return repr(value)


# --------------------------------------------------------------------------------------------------------------
# Deterministic Parquet shards


def shard_name(index: int, num_shards: int, prefix: str = "shard") -> str:
    """File name of shard ``index`` of ``num_shards``: ``<prefix>-00003-of-00016.parquet``."""
    return f"{prefix}-{index:05d}-of-{num_shards:05d}.parquet"


def shard_of(key: object, num_shards: int) -> int:
    """Shard index of a row key: ``stable_hash(key) % num_shards`` (process- and runner-independent)."""
    return stable_hash(key) % num_shards


def key_getter(key: str | Callable[[Mapping[str, Any]], object]) -> Callable[[Mapping[str, Any]], object]:
    """A row-key function from a field name or a callable (a str/int/bytes/tuple-valued key)."""
    if isinstance(key, str):
        field_name = key
        return lambda row: row[field_name]
    if callable(key):
        return key
    raise TypeError(f"key must be a field name or a callable, got {type(key).__name__}")


def write_shard(rows: list[Mapping[str, Any]], url: str, kind: ShardKind, *,
                row_group_rows: int = DEFAULT_ROW_GROUP_ROWS, compression: str = DEFAULT_COMPRESSION) -> ShardInfo:
    """Write rows, in the given order, as one Parquet shard with ``kind``'s explicit schema.

    The file is written under a unique temporary name beside ``url`` and then renamed, so a retried or
    duplicated bundle never leaves a half-written shard. Binary columns get neither dictionary encoding nor
    statistics (PNG bytes are unique and incompressible).

    Args:
        rows: Row dicts with exactly the schema's fields (validated by
            :func:`schemas.arrow.table_from_rows`).
        url: Destination fsspec URL.
        kind: Shard kind.
        row_group_rows: Rows per row group (>= 1).
        compression: Parquet compression codec.

    Returns:
        The shard's :class:`schemas.manifest.ShardInfo` (path = basename).

    Raises:
        ValueError: If ``row_group_rows < 1``.
        schemas.arrow.SchemaMismatchError: If a row does not fit the schema.
    """
    if row_group_rows < 1:
        raise ValueError(f"row_group_rows must be >= 1, got {row_group_rows}")
    schema = kind.schema
    dictionary_cols = [f.name for f in schema if pa.types.is_string(f.type)]
    stats_cols = [f.name for f in schema if _is_flat_non_binary(f.type)]
    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    tmp = f"{path}.inprogress-{uuid.uuid4().hex}"
    counts: list[int] = []
    try:
        with fs.open(tmp, "wb") as f:
            with pq.ParquetWriter(f, schema, compression=compression, use_dictionary=dictionary_cols,
                                  write_statistics=stats_cols) as writer:
                for start in range(0, len(rows), row_group_rows):
                    chunk = table_from_rows(list(rows[start:start + row_group_rows]), kind)
                    writer.write_table(chunk, row_group_size=row_group_rows)
                    counts.append(chunk.num_rows)
        fs.mv(tmp, path)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp)
        raise
    return ShardInfo(posixpath.basename(path), sum(counts), len(counts), tuple(counts))


def _is_flat_non_binary(t: pa.DataType) -> bool:
    return not (pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_nested(t))


def sort_shard_rows(rows: Iterable[Mapping[str, Any]], key_fn: Callable[[Mapping[str, Any]], object],
                    *, where: str = "shard") -> list[Mapping[str, Any]]:
    """Sort a shard's rows by key.

    Raises:
        ValueError: For two rows with the same key (row keys must be unique), or keys that do not compare.
    """
    keyed = [(key_fn(r), r) for r in rows]
    try:
        keyed.sort(key=lambda kr: kr[0])
    except TypeError as err:
        raise ValueError(f"{where}: row keys of different types cannot be ordered ({err})") from err
    for (a, _), (b, _) in zip(keyed, keyed[1:]):
        if a == b:
            raise ValueError(f"{where}: two rows share the key {a!r}; row keys must be unique")
    return [r for _, r in keyed]


class _WriteShardFn(running.WorkerDoFn):
    def __init__(self, kind: ShardKind, work_url: str, num_shards: int, key: str | Callable,
                 row_group_rows: int, compression: str, prefix: str) -> None:
        self._kind = kind
        self._work_url = work_url
        self._num_shards = num_shards
        self._key = key
        self._row_group_rows = row_group_rows
        self._compression = compression
        self._prefix = prefix

    def process(self, element: tuple[int, Iterable[Any]]):
        index, values = element
        name = shard_name(index, self._num_shards, self._prefix)
        rows = sort_shard_rows((v for v in values if v is not None), key_getter(self._key), where=name)
        info = write_shard(rows, join_url(self._work_url, name), self._kind, row_group_rows=self._row_group_rows,
                           compression=self._compression)
        Metrics.counter(METRICS_NAMESPACE, "shard_rows").inc(info.rows)
        yield {"path": info.path, "rows": info.rows, "row_groups": info.row_groups,
               "row_group_rows": list(info.row_group_rows)}


def _key_by_shard(row: Mapping[str, Any], key: str | Callable, num_shards: int) -> tuple[int, Mapping[str, Any]]:
    return shard_of(key_getter(key)(row), num_shards), row


class WriteShards(beam.PTransform):
    """Write rows as ``num_shards`` deterministic Parquet shards of one kind into a work folder.

    Rows go to shard ``stable_hash(key) % num_shards``, are grouped (one ``GroupByKey``), sorted by key and
    written with :func:`write_shard`. Every shard index gets a file, even an empty one, so the file list is a
    function of ``num_shards``; the bytes are a function of the rows, whatever the runner or worker count.
    One worker holds one shard's rows in memory while writing it: pick ``num_shards`` so that a shard fits.

    Args:
        kind: Shard kind (schema) of the rows.
        work_url: Folder the shards are written into (the run's work folder).
        num_shards: Number of shards (>= 1).
        key: Field name or function giving each row's unique key (str, int, bytes or tuple of them).
        row_group_rows: Rows per Parquet row group.
        compression: Parquet compression codec.
        prefix: Shard file-name prefix.

    Returns (from ``expand``):
        A PCollection with one dict per shard: ``path`` (file name), ``rows``, ``row_groups``,
        ``row_group_rows``.
    """

    def __init__(self, kind: ShardKind, work_url: str, num_shards: int, key: str | Callable[[Mapping], object],
                 *, row_group_rows: int = DEFAULT_ROW_GROUP_ROWS, compression: str = DEFAULT_COMPRESSION,
                 prefix: str = "shard") -> None:
        super().__init__()
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        if row_group_rows < 1:
            raise ValueError(f"row_group_rows must be >= 1, got {row_group_rows}")
        key_getter(key)  # type check
        self._kind = kind
        self._work_url = work_url
        self._num_shards = num_shards
        self._key = key
        self._row_group_rows = row_group_rows
        self._compression = compression
        self._prefix = prefix

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        n = self._num_shards
        slots = rows.pipeline | "ShardSlots" >> beam.Create([(i, None) for i in range(n)])
        keyed = rows | "KeyByShard" >> beam.Map(_key_by_shard, self._key, n)
        return (
            (keyed, slots)
            | "AddEmptySlots" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard" >> beam.ParDo(_WriteShardFn(self._kind, self._work_url, n, self._key,
                                                       self._row_group_rows, self._compression, self._prefix))
        )


# --------------------------------------------------------------------------------------------------------------
# Rejects and counts files


def _write_text(url: str, text: str) -> None:
    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    tmp = f"{path}.inprogress-{uuid.uuid4().hex}"
    with fs.open(tmp, "wb") as f:
        f.write(text.encode("utf-8"))
    fs.mv(tmp, path)


def _write_reject_lines(lines: list[str], url: str) -> int:
    ordered = sorted(lines)
    _write_text(url, "".join(line + "\n" for line in ordered))
    return len(ordered)


def _write_counts(pairs: list[tuple[str, int]], url: str) -> dict[str, int]:
    totals = dict(sorted(pairs))
    _write_text(url, json.dumps(totals, indent=2, sort_keys=True) + "\n")
    return totals


class WriteRejects(beam.PTransform):
    """Write reject records (:func:`reject_record` dicts) as sorted JSON lines to ``<work>/_rejects.jsonl``.

    The file is always written (empty when nothing was rejected). All rejects meet in one worker, so this
    suits the rare errors of an input, not a flood.

    Returns (from ``expand``): a one-element PCollection with the number of lines written.
    """

    def __init__(self, work_url: str, name: str = REJECTS_NAME) -> None:
        super().__init__()
        self._url = join_url(work_url, name)

    def expand(self, rejects: beam.PCollection) -> beam.PCollection:
        return (
            rejects
            | "RejectToJson" >> beam.Map(reject_line)
            | "CollectRejects" >> beam.CombineGlobally(beam.combiners.ToListCombineFn())
            | "WriteRejectsFile" >> beam.Map(_write_reject_lines, self._url)
        )


class WriteCounts(beam.PTransform):
    """Sum ``(key, n)`` accounting pairs per key and write them to ``<work>/_counts.json``.

    Returns (from ``expand``): the PCollection of ``(key, total)`` pairs.
    """

    def __init__(self, work_url: str, name: str = COUNTS_NAME) -> None:
        super().__init__()
        self._url = join_url(work_url, name)

    def expand(self, counts: beam.PCollection) -> beam.PCollection:
        totals = counts | "SumPerKey" >> beam.CombinePerKey(sum)
        _ = (
            totals
            | "CollectCounts" >> beam.CombineGlobally(beam.combiners.ToListCombineFn())
            | "WriteCountsFile" >> beam.Map(_write_counts, self._url)
        )
        return totals
