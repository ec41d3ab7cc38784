"""``_manifest.json`` beside the shards, and validated shard access through fsspec.

The manifest records what a run wrote (schema and version, shard list with row and row-group counts), with
which parameters, seed and source, and the run's accounting (written, filtered by reason, rejected).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import posixpath
from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.arrow import SchemaMismatchError, ShardKind, missing_in, validate_schema
from schemas.storage import MANIFEST_NAME, atomic_write, settle

REJECTS_NAME = "_rejects.jsonl"


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardInfo:
    """One Parquet shard.

    Attributes:
        path: Path relative to the manifest's folder.
        rows: Number of rows.
        row_groups: Number of row groups.
        row_group_rows: Rows of each row group.
        bytes: File size (``None`` in manifests written before it was recorded).
        sha256: SHA-256 of the file's bytes, recorded at write time (``None`` likewise).
    """

    path: str
    rows: int
    row_groups: int
    row_group_rows: tuple[int, ...] = ()
    bytes: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Manifest:
    """Contents of ``_manifest.json``.

    Attributes:
        kind: Shard kind name (``object_bank`` or ``augmented_frame``).
        schema_version: Version of the kind's schema the shards carry.
        shards: The shards, in order.
        parameters: The run's settings (JSON-able).
        seed: The run's seed.
        source: Where the inputs came from (URLs).
        counts: Accounting: ``inputs``, ``written``, ``filtered`` (by reason), ``rejected`` (by reason), and
            per-kind extras such as counts per category.
        written_by: The code that wrote the shards (``{"stylepaste": version}``).
    """

    kind: str
    schema_version: int
    shards: tuple[ShardInfo, ...]
    parameters: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    source: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    written_by: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Total rows over all shards."""
        return sum(s.rows for s in self.shards)

    def to_json(self) -> str:
        """Serialise to the JSON text stored in ``_manifest.json``."""
        data = asdict(self)
        data["rows"] = self.rows
        data["shards"] = [dict(asdict(s), row_group_rows=list(s.row_group_rows)) for s in self.shards]
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, where: str = MANIFEST_NAME) -> Manifest:
        """Parse manifest JSON.

        Raises:
            ValueError: If required keys are missing or malformed.
        """
        try:
            data = json.loads(text)
            shards = tuple(
                ShardInfo(s["path"], int(s["rows"]), int(s["row_groups"]), tuple(s.get("row_group_rows", ())),
                          None if s.get("bytes") is None else int(s["bytes"]), s.get("sha256"))
                for s in data["shards"]
            )
            return cls(
                kind=str(data["kind"]),
                schema_version=int(data["schema_version"]),
                shards=shards,
                parameters=dict(data.get("parameters", {})),
                seed=data.get("seed"),
                source=dict(data.get("source", {})),
                counts=dict(data.get("counts", {})),
                written_by=dict(data.get("written_by", {})),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{where}: not a valid stylepaste manifest ({type(err).__name__}: {err})") from err


def join_url(base: str, *parts: str) -> str:
    """Join URL/path parts with ``/`` without touching the protocol (``memory://x`` + ``a`` -> ``memory://x/a``)."""
    out = base.rstrip("/")
    for p in parts:
        out = posixpath.join(out, p) if out else p
    return out


def shard_info(url: str) -> ShardInfo:
    """Describe a shard (path is the basename): its footer's row counts, its size and SHA-256."""
    with fsspec.open(url, "rb") as f:
        meta = pq.ParquetFile(f).metadata
        rg = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    digest, size = file_sha256(url)
    return ShardInfo(posixpath.basename(url), meta.num_rows, meta.num_row_groups, rg, size, digest)


def file_sha256(url: str, chunk: int = 1 << 22) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with fsspec.open(url, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def code_version() -> dict[str, str]:
    """The ``written_by`` record of a manifest: the installed stylepaste version."""
    try:
        return {"stylepaste": importlib.metadata.version("stylepaste")}
    except importlib.metadata.PackageNotFoundError:
        return {"stylepaste": "unknown (not installed)"}


def write_manifest(folder: str, manifest: Manifest) -> str:
    """Write ``folder/_manifest.json`` atomically (:func:`schemas.storage.atomic_write`) and return its URL."""
    url = join_url(folder, MANIFEST_NAME)
    atomic_write(url, manifest.to_json().encode("utf-8"))
    return url


def _read_text(url: str) -> str:
    with fsspec.open(url, "r") as f:
        return f.read()


def read_manifest(folder: str, *, kind: ShardKind | None = None) -> Manifest:
    """Read ``folder/_manifest.json`` and, when ``kind`` is given, check its schema name and version.

    A folder without a manifest that holds an interrupted commit is repaired (or waited for) first
    (:func:`schemas.storage.settle`).

    Raises:
        FileNotFoundError: If there is no manifest.
        SchemaMismatchError: If the manifest names another kind or version.
        schemas.storage.InterruptedCommitError: If another process is still committing into the folder.
    """
    url = join_url(folder, MANIFEST_NAME)
    try:
        text = _read_text(url)
    except FileNotFoundError:
        settle(folder)
        try:
            text = _read_text(url)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"no {MANIFEST_NAME} in {folder}: not a stylepaste shard folder") from err
    man = Manifest.from_json(text, where=url)
    if kind is not None and (man.kind != kind.name or kind.version_of(man.schema_version) is None):
        also = "".join(f" or {k.tag}" for k in kind.previous)
        raise SchemaMismatchError(
            f"{url}: expected shards of {kind.tag}{also}, the manifest says {man.kind} v{man.schema_version}")
    return man


def shard_urls(folder: str, *, kind: ShardKind | None = None) -> list[str]:
    """URLs of the shards a folder's manifest lists, in manifest order."""
    man = read_manifest(folder, kind=kind)
    return [join_url(folder, s.path) for s in man.shards]


def resolve_shards(urls: str | list[str], kind: ShardKind) -> list[str]:
    """Expand shard folders (with a manifest) and glob patterns to a sorted list of Parquet URLs.

    Args:
        urls: One or more URLs: a folder holding ``_manifest.json``, a ``*.parquet`` file, or a glob.
        kind: Expected shard kind (checked against each folder's manifest).

    Returns:
        Shard URLs (protocol kept).

    Raises:
        FileNotFoundError: If a URL matches nothing.
    """
    out: list[str] = []
    for url in [urls] if isinstance(urls, str) else list(urls):
        fs, path = fsspec.core.url_to_fs(url)
        proto = url.split("://", 1)[0] + "://" if "://" in url else ""
        if any(ch in path for ch in "*?["):
            found = sorted(fs.glob(path))
            if not found:
                raise FileNotFoundError(f"no shard matches {url}")
            out.extend(proto + p if proto and not p.startswith(proto) else p for p in found)
        elif fs.isdir(path):
            out.extend(shard_urls(url, kind=kind))
        elif fs.exists(path):
            out.append(url)
        else:
            raise FileNotFoundError(f"shard or shard folder not found: {url}")
    return out


def open_shard(url: str, kind: ShardKind) -> pq.ParquetFile:
    """Open a Parquet shard through fsspec and validate its schema.

    The returned file keeps its fsspec handle open for the object's lifetime.

    Raises:
        FileNotFoundError: If the shard does not exist.
        SchemaMismatchError: Naming the expected and the found schema and version.
    """
    fs, path = fsspec.core.url_to_fs(url)
    if not fs.exists(path):
        raise FileNotFoundError(f"shard not found: {url}")
    handle = fs.open(path, "rb")
    try:
        pf = pq.ParquetFile(handle)
    except (pa.ArrowInvalid, OSError) as err:
        handle.close()
        raise SchemaMismatchError(f"{url}: not a Parquet file ({err})") from err
    found = validate_schema(pf.schema_arrow, kind, where=url)
    if found is not kind:
        _note_older(url, found, kind)
    return pf


_NOTED: set[str] = set()


def _note_older(url: str, found: ShardKind, kind: ShardKind) -> None:
    """Say once per folder that shards of an earlier version are read, and what they lack."""
    folder = posixpath.dirname(url.rstrip("/"))
    if folder in _NOTED:
        return
    _NOTED.add(folder)
    log.warning("%s: shards of %s (the current version is %s) are read as they are; they lack %s", folder,
                found.tag, kind.tag, ", ".join(missing_in(found, kind)) or "no top-level field")


def read_shard(url: str, kind: ShardKind, columns: list[str] | None = None) -> pa.Table:
    """Read a whole shard as a validated table."""
    pf = open_shard(url, kind)
    return pf.read(columns=columns)
