"""Beam I/O shared by the pipelines: deterministic Parquet shards, rejects, accounting and the output commit.

Everything is generic over :class:`schemas.arrow.ShardKind`. A pipeline run follows one pattern::

    folder = RunFolder.begin(out_url, overwrite=cfg.overwrite)      # refuses a non-empty output folder
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
import os
import posixpath
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics
from fsspec.implementations.local import LocalFileSystem

from pipelines import running
from schemas.arrow import KINDS, ShardKind, table_from_rows
from schemas.corpus import CARD_NAME, card_text, corpus_info
from schemas.manifest import (
    MANIFEST_NAME, REJECTS_NAME, Manifest, ShardInfo, code_version, join_url, open_shard, read_manifest, shard_info,
)
from schemas.rng import stable_hash
from schemas.storage import (
    WORK_DIR, atomic_write, commit_add, commit_replace, new_run_id, recover, remove_if_empty, write_owner,
)

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


# --------------------------------------------------------------------------------------------------------------
# Run folder: begin, commit, discard


def _entries(fs: fsspec.AbstractFileSystem, path: str) -> list[str]:
    """Paths directly inside ``path`` except the work folder; [] if ``path`` does not exist."""
    try:
        if not fs.isdir(path):
            return [path] if fs.exists(path) else []
        found = fs.ls(path, detail=False)
    except FileNotFoundError:
        return []
    return sorted(p for p in found if posixpath.basename(p.rstrip("/")) != WORK_DIR and p.rstrip("/") != path)


def _local_or_url(url: str) -> str:
    """A comparable form of a URL: absolute, normalised local paths; other URLs as given, without a final /."""
    fs, path = fsspec.core.url_to_fs(url)
    if isinstance(fs, LocalFileSystem):
        return os.path.realpath(path)
    return fs.unstrip_protocol(path).rstrip("/")


def check_not_an_input(out_url: str, inputs: Sequence[str]) -> None:
    """Refuse an output folder that is one of the run's inputs or holds one.

    Raises:
        ValueError: Naming the output and the input.
    """
    out = _local_or_url(out_url)
    for url in inputs:
        inp = _local_or_url(url)
        if inp == out or inp.startswith(out.rstrip("/") + "/"):
            raise ValueError(f"output folder {out_url} is (or holds) the input {url}; choose another --out")


@dataclass(frozen=True)
class RunFolder:
    """An output folder and the work folder (``<out>/_temporary/<run id>``) a run writes into.

    Attributes:
        out_url: The output folder URL.
        work_url: This run's work folder URL.
        created: Whether the output folder was absent when the run began (then a discarded run removes it).
    """

    out_url: str
    work_url: str
    created: bool

    @classmethod
    def begin(cls, out_url: str, *, overwrite: bool = False, kind: ShardKind | None = None,
              inputs: Sequence[str] = ()) -> RunFolder:
        """Start a run: repair what dead runs left (:func:`schemas.storage.recover`), check the folder, make the
        work folder and record its owner.

        A non-empty folder is refused unless ``overwrite``; with ``overwrite`` it must hold a stylepaste output
        of the same kind (its ``_manifest.json``). Leftover work folders of live runs do not count as content.

        Args:
            out_url: The output folder.
            overwrite: Replace a previous output of the same kind after a successful run.
            kind: The kind of shards this run writes (checked against an existing manifest).
            inputs: The run's input URLs; the output may neither be one nor hold one.

        Raises:
            FileExistsError: If ``out_url`` holds anything and ``overwrite`` is False, holds something other
                than a stylepaste output of ``kind``, or is a file.
            ValueError: If ``out_url`` is or holds an input.
        """
        check_not_an_input(out_url, inputs)
        fs, path = fsspec.core.url_to_fs(out_url)
        if fs.exists(path) and not fs.isdir(path):
            raise FileExistsError(f"output {out_url} is a file, not a folder")
        for line in recover(out_url):
            log.warning(line)
        existing = _entries(fs, path)
        shown = ", ".join(posixpath.basename(p) for p in existing[:5]) + (", ..." if len(existing) > 5 else "")
        if existing and not overwrite:
            raise FileExistsError(f"output folder {out_url} is not empty ({shown}); "
                                  "pass --overwrite to replace it after a successful run")
        if existing:
            _check_replaceable(out_url, kind, shown)
        created = not fs.exists(path)
        work_url = join_url(out_url, WORK_DIR, new_run_id())
        fs.makedirs(fsspec.core.url_to_fs(work_url)[1], exist_ok=True)
        write_owner(work_url)
        return cls(out_url, work_url, created)

    def _validated(self, kind: ShardKind, parameters: Mapping[str, Any] | None, seed: int | None,
                   source: Mapping[str, Any] | None) -> tuple[list[str], Manifest]:
        """Check the work folder (schemas, balanced accounting, rows and rejects as counted) and describe it.

        Returns:
            The shard file names and the manifest of the work folder's shards.

        Raises:
            RuntimeError: If the work folder is incomplete or the accounting does not balance.
        """
        fs, work = fsspec.core.url_to_fs(self.work_url)
        names = sorted(posixpath.basename(p) for p in fs.ls(work, detail=False))
        shard_names = [n for n in names if n.endswith(".parquet")]
        if COUNTS_NAME not in names:
            raise RuntimeError(f"{self.work_url}: the pipeline wrote no {COUNTS_NAME}; the run did not finish")
        with fs.open(posixpath.join(work, COUNTS_NAME), "rb") as f:
            counts = nest_counts(json.loads(f.read().decode("utf-8")))
        check_accounting(counts)
        shards = []
        for name in shard_names:
            url = join_url(self.work_url, name)
            open_shard(url, kind)  # validates the schema
            shards.append(shard_info(url))
        rows = sum(s.rows for s in shards)
        if rows != counts[WRITTEN]:
            raise RuntimeError(f"{self.work_url}: the shards hold {rows} rows but {counts[WRITTEN]} were counted as "
                               "written")
        rejected = sum(counts[REJECTED].values())
        if REJECTS_NAME in names:
            with fs.open(posixpath.join(work, REJECTS_NAME), "rb") as f:
                lines = sum(1 for line in f.read().decode("utf-8").splitlines() if line.strip())
        else:
            lines = 0
            _write_text(join_url(self.work_url, REJECTS_NAME), "")
        if lines != rejected:
            raise RuntimeError(f"{self.work_url}: {REJECTS_NAME} has {lines} lines but {rejected} rejects were counted")
        manifest = Manifest(kind=kind.name, schema_version=kind.version, shards=tuple(shards),
                            parameters=_json_safe(dict(parameters or {})), seed=seed,
                            source=_json_safe(dict(source or {})), counts=counts, written_by=code_version())

        return shard_names, manifest

    @classmethod
    def begin_append(cls, out_url: str, kind: ShardKind, inputs: Sequence[str] = ()) -> tuple[RunFolder, str]:
        """Start a run that adds shards to the output of ``kind`` in ``out_url`` (:meth:`commit_append`).

        Returns:
            The run folder and the file-name prefix of its shards (``append<N>``, N counting the appends), so
            that no existing shard name is reused.

        Raises:
            FileNotFoundError: If ``out_url`` holds no output to add to.
            schemas.arrow.SchemaMismatchError: If it holds another kind.
        """
        check_not_an_input(out_url, inputs)
        for line in recover(out_url):
            log.warning(line)
        man = read_manifest(out_url, kind=kind)
        if man.schema_version != kind.version:
            raise ValueError(f"{out_url} holds {man.kind} v{man.schema_version} shards; appending writes "
                             f"v{kind.version}: rebuild the corpus instead of growing it")
        prefix = f"append{len(man.source.get('appends', [])) + 1}"
        work_url = join_url(out_url, WORK_DIR, new_run_id())
        fs, _ = fsspec.core.url_to_fs(out_url)
        fs.makedirs(fsspec.core.url_to_fs(work_url)[1], exist_ok=True)
        write_owner(work_url)
        return cls(out_url, work_url, False), prefix

    def commit_append(self, kind: ShardKind, *, parameters: Mapping[str, Any] | None = None,
                      seed: int | None = None, source: Mapping[str, Any] | None = None) -> Manifest:
        """Validate the work folder like :meth:`commit`, add its shards to the output and replace the manifest
        by one that lists the old shards, then the new ones (:func:`schemas.storage.commit_add`: no existing
        shard is moved or rewritten). The accounting adds up; the appended run's settings, seed, inputs and
        counts are recorded under ``source["appends"]``; the card is written again.

        Raises:
            RuntimeError: If the work folder is incomplete or its accounting does not balance.
        """
        fs, work = fsspec.core.url_to_fs(self.work_url)
        shard_names, added = self._validated(kind, parameters, seed, source)
        old = read_manifest(self.out_url, kind=kind)
        appends = [*old.source.get("appends", []), {
            "seed": seed, "parameters": added.parameters, "source": added.source, "counts": added.counts,
            "shards": [s.path for s in added.shards], "written_by": added.written_by}]
        merged = Manifest(kind=old.kind, schema_version=old.schema_version, shards=old.shards + added.shards,
                          parameters=old.parameters, seed=old.seed, source={**old.source, "appends": appends},
                          counts=add_counts(old.counts, added.counts), written_by=old.written_by)
        check_accounting(merged.counts)
        # this run's rejects keep their own file beside the first run's: _rejects.<prefix>.jsonl
        prefix = shard_names[0].split("-")[0] if shard_names else "append"
        rejects_name = f"_rejects.{prefix}.jsonl"
        fs.mv(posixpath.join(work, REJECTS_NAME), posixpath.join(work, rejects_name))
        commit_add(self.out_url, self.work_url, [*shard_names, rejects_name], merged.to_json())
        if kind.name in KINDS:
            info = corpus_info(self.out_url, merged)
            atomic_write(join_url(self.out_url, CARD_NAME), card_text(info).encode("utf-8"))
        return merged

    def discard(self) -> None:
        """Remove this run's work folder, the ``_temporary`` folder when empty, and the output folder when
        this run created it and it is empty. Never touches committed files of other runs."""
        fs, work = fsspec.core.url_to_fs(self.work_url)
        _, out = fsspec.core.url_to_fs(self.out_url)
        if fs.exists(work):
            fs.rm(work, recursive=True)
        remove_if_empty(fs, posixpath.join(out, WORK_DIR))
        if self.created:
            remove_if_empty(fs, out)

    def commit(self, kind: ShardKind, *, parameters: Mapping[str, Any] | None = None, seed: int | None = None,
               source: Mapping[str, Any] | None = None, overwrite: bool = False) -> Manifest:
        """Validate the work folder and move it into the output folder; write ``_manifest.json`` last.

        Checks before anything moves: every shard has ``kind``'s schema, ``_counts.json`` exists and balances
        (``inputs = written + filtered + rejected``), the shards hold ``written`` rows, and the rejects file
        holds ``rejected`` lines. The move is :func:`schemas.storage.commit_replace`: journaled, so that a kill
        at any instant is finished or rolled back by the next run or reader.

        Args:
            kind: Shard kind of the run.
            parameters: The run's settings (JSON-able) for the manifest.
            seed: The run's seed.
            source: Input URLs and provenance for the manifest.
            overwrite: Replace a non-empty output folder.

        Returns:
            The manifest written.

        Raises:
            RuntimeError: If the work folder is incomplete or the accounting does not balance.
            FileExistsError: If the output folder got content meanwhile and ``overwrite`` is False, or got
                something other than a stylepaste output of ``kind``.
        """
        fs, work = fsspec.core.url_to_fs(self.work_url)
        _, out = fsspec.core.url_to_fs(self.out_url)
        shard_names, manifest = self._validated(kind, parameters, seed, source)
        extra = []
        if kind.name in KINDS:  # the dataset card of a bank or frame corpus
            info = corpus_info(self.work_url, manifest)
            info["url"] = self.out_url
            _write_text(join_url(self.work_url, CARD_NAME), card_text(info))
            extra.append(CARD_NAME)

        existing = _entries(fs, out)
        if existing and not overwrite:
            raise FileExistsError(f"output folder {self.out_url} got content during the run; nothing was committed")
        if existing:
            _check_replaceable(self.out_url, kind, ", ".join(posixpath.basename(p) for p in existing[:5]))
        commit_replace(self.out_url, self.work_url, [*shard_names, REJECTS_NAME, *extra], manifest.to_json())
        return manifest


def _check_replaceable(out_url: str, kind: ShardKind | None, shown: str) -> None:
    """``--overwrite`` replaces only a stylepaste output (of ``kind`` when given).

    Raises:
        FileExistsError: Naming the folder and what it holds.
    """
    try:
        man = read_manifest(out_url)
    except FileNotFoundError:
        raise FileExistsError(
            f"output folder {out_url} holds {shown} but no {MANIFEST_NAME}: it is not a stylepaste output, and "
            "--overwrite replaces only those (or an empty folder); choose another --out") from None
    except ValueError as err:
        raise FileExistsError(f"output folder {out_url}: its {MANIFEST_NAME} is unreadable ({err}); --overwrite "
                              "replaces only a readable stylepaste output") from None
    if kind is not None and man.kind != kind.name:
        raise FileExistsError(f"output folder {out_url} holds {man.kind} shards; this run writes {kind.name} and "
                              "--overwrite replaces only an output of the same kind")
