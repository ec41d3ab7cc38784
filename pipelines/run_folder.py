"""The output folder of a pipeline run (:class:`RunFolder`): begin (checks and recovery), the work folder the
pipeline writes into, and the commit that validates it and moves it into place (or adds it, for
``augment --append``) through :mod:`schemas.storage`'s journal, so that a kill at any instant leaves the old or
the new output complete."""

from __future__ import annotations

import json
import logging
import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pipelines.beam_io import (
    COUNTS_NAME, REJECTED, WRITTEN, _json_safe, _write_text, add_counts, check_accounting, nest_counts,
)
from schemas.arrow import KINDS, ShardKind
from schemas.corpus import CARD_NAME, card_text, corpus_info
from schemas.manifest import (
    MANIFEST_NAME, REJECTS_NAME, Manifest, code_version, join_url, open_shard, read_manifest, shard_info,
)
from schemas.storage import (
    WORK_DIR, atomic_write, commit_add, commit_replace, new_run_id, recover, remove_if_empty, write_owner,
)

log = logging.getLogger(__name__)


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
