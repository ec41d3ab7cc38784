"""Crash-safe output folders: atomic file writes, run owners, and the journaled commit that replaces a folder's
contents.

**Atomic writes.** :func:`atomic_write` puts a file under a temporary name beside its destination, flushes it
to disk and renames it over the destination (local disks), or sends it in one request (object stores, where a
PUT is atomic). A reader sees the old file or the new one, never a prefix; a full disk leaves the old file and
raises. Checkpoints, manifests, reports and corpus cards are written this way.

**Output folders.** A run writes into ``<out>/_temporary/<run id>/`` and records its owner (host, process id,
start time) in ``_owner.json`` there. :func:`commit_replace` then replaces the folder's contents with a journal
so that a kill at any instant can be repaired:

1. ``<out>/_temporary/<run id>.commit.json`` is written (atomically) with the names of the old entries, the new
   files and the SHA-256 of the new manifest;
2. the old entries move aside into ``<out>/_temporary/<run id>.previous/``, the old manifest first, so the folder
   never looks complete while half replaced;
3. the new files move in, and the new manifest is written last (atomically): this is the commit point;
4. the aside folder, the work folder and, last, the journal are removed.

:func:`recover` (called by every run that begins on a folder and by :func:`settle`, which readers call when a
folder has no manifest) finishes a commit whose manifest was written and rolls back any other (new files out,
old entries back in, manifest last), once the committing process is dead: on this host its process id is
gone, elsewhere it started more than :data:`STALE_SECONDS` ago. It also removes the work folders of dead runs.
While the committer is alive a reader waits for it (:func:`settle`). So at every instant the folder either holds
a complete output with its manifest, or it is between the two and the journal says how to get back to one.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

MANIFEST_NAME = "_manifest.json"
"""The file that makes a folder a complete stylepaste output (written last)."""

WORK_DIR = "_temporary"
"""Folder inside an output folder that holds runs in progress, journals and set-aside contents."""

OWNER_NAME = "_owner.json"
JOURNAL_SUFFIX = ".commit.json"
ASIDE_SUFFIX = ".previous"

STALE_SECONDS = 24 * 3600.0
"""A run owned by another host counts as dead this long after it started (its process cannot be asked)."""


class InterruptedCommitError(RuntimeError):
    """A folder holds an interrupted commit whose committer still runs (or cannot be repaired)."""

    user_error = True


def atomic_write(url: str, data: bytes) -> None:
    """Write ``data`` to ``url`` so that readers see the old file or the new one, never a part.

    Local paths: a temporary file in the same folder, flushed and fsync-ed, then ``os.replace``; on failure (a
    full disk) the temporary file is removed and the destination is untouched. Other filesystems: one
    ``pipe_file`` request (atomic on object stores).

    Raises:
        OSError: If the write fails; the destination keeps its previous content.
    """
    fs, path = fsspec.core.url_to_fs(url)
    if not isinstance(fs, LocalFileSystem):
        fs.pipe_file(path, data)
        return
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def new_run_id() -> str:
    """A sortable, unique run id: ``<UTC time>-<random hex>``."""
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Owner:
    """Who runs a write: host, process id and start time (UNIX seconds)."""

    host: str
    pid: int
    started: float

    @classmethod
    def me(cls) -> Owner:
        """This process."""
        return cls(socket.gethostname(), os.getpid(), time.time())

    def alive(self, now: float | None = None) -> bool:
        """Whether the owner may still run: on this host, whether its process exists; elsewhere, whether it
        started less than :data:`STALE_SECONDS` ago."""
        if self.host != socket.gethostname():
            return (time.time() if now is None else now) - self.started < STALE_SECONDS
        if self.pid == os.getpid():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _read_json(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, Any] | None:
    try:
        with fs.open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None


def write_owner(work_url: str) -> Owner:
    """Record this process as the owner of a work folder."""
    me = Owner.me()
    atomic_write(posixpath.join(work_url, OWNER_NAME), json.dumps(asdict(me)).encode("utf-8"))
    return me


def _owner_of(record: dict[str, Any] | None) -> Owner | None:
    try:
        return Owner(str(record["host"]), int(record["pid"]), float(record["started"]))
    except (TypeError, KeyError, ValueError):
        return None


def _names(fs: fsspec.AbstractFileSystem, path: str) -> list[str]:
    try:
        if not fs.isdir(path):
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)
                      if p.rstrip("/") != path.rstrip("/"))
    except FileNotFoundError:
        return []


def _mv(fs: fsspec.AbstractFileSystem, src: str, dst: str) -> None:
    fs.mv(src, dst, recursive=True)


def commit_replace(out_url: str, work_url: str, new_names: Sequence[str], manifest_text: str, *,
                   marker: str = MANIFEST_NAME) -> None:
    """Replace the contents of ``out_url`` (all but ``_temporary``) by the files ``new_names`` of ``work_url``
    and the manifest ``manifest_text``, with the journal of the module docstring.

    ``marker`` names the file written last (the commit point): ``_manifest.json`` for shard folders, the results
    table for an evaluation report.

    Raises:
        Exception: Whatever the filesystem raises; the old contents are restored before it propagates (and
            :func:`recover` restores them after a kill).
    """
    fs, out = fsspec.core.url_to_fs(out_url)
    _, work = fsspec.core.url_to_fs(work_url)
    run = posixpath.basename(work.rstrip("/"))
    aside = posixpath.join(out, WORK_DIR, run + ASIDE_SUFFIX)
    old = [n for n in _names(fs, out) if n != WORK_DIR]
    record = {"version": 1, "run": run, "old": old, "new": list(new_names), "marker": marker,
              "manifest_sha256": hashlib.sha256(manifest_text.encode("utf-8")).hexdigest(),
              "owner": asdict(Owner.me())}
    _journaled(fs, out, work, record, manifest_text, aside)


def commit_add(out_url: str, work_url: str, new_names: Sequence[str], manifest_text: str, *,
               marker: str = MANIFEST_NAME) -> None:
    """Add the files ``new_names`` of ``work_url`` to ``out_url`` (none may exist there) and replace its manifest by
    ``manifest_text``, journaled like :func:`commit_replace`: until the new manifest is written the folder reads as
    before (the old manifest does not list the new files), and a kill before that point is rolled back by removing
    only the added files; existing files are never moved or rewritten.

    Raises:
        FileExistsError: If a new name exists in ``out_url`` already.
    """
    fs, out = fsspec.core.url_to_fs(out_url)
    _, work = fsspec.core.url_to_fs(work_url)
    clash = [n for n in new_names if fs.exists(posixpath.join(out, n))]
    if clash:
        raise FileExistsError(f"{out_url} already holds {', '.join(clash[:3])}; nothing was added")
    run = posixpath.basename(work.rstrip("/"))
    record = {"version": 1, "run": run, "old": [], "new": list(new_names), "marker": marker, "mode": "add",
              "manifest_sha256": hashlib.sha256(manifest_text.encode("utf-8")).hexdigest(),
              "owner": asdict(Owner.me())}
    _journaled(fs, out, work, record, manifest_text, None)


def _journaled(fs: fsspec.AbstractFileSystem, out: str, work: str, record: dict[str, Any], manifest_text: str,
               aside: str | None) -> None:
    """The journaled steps of a commit: journal, old entries aside (marker first, when ``aside``), new files in,
    marker last; rolled back on any error, finished on success."""
    marker = record["marker"]
    atomic_write(_url(fs, posixpath.join(out, WORK_DIR, record["run"] + JOURNAL_SUFFIX)),
                 json.dumps(record).encode("utf-8"))
    try:
        if aside is not None and record["old"]:
            fs.makedirs(aside, exist_ok=True)
            for name in sorted(record["old"], key=lambda n: n != marker):  # the marker first
                _mv(fs, posixpath.join(out, name), posixpath.join(aside, name))
        for name in record["new"]:
            _mv(fs, posixpath.join(work, name), posixpath.join(out, name))
        atomic_write(_url(fs, posixpath.join(out, marker)), manifest_text.encode("utf-8"))
    except BaseException:
        _roll_back(fs, out, record)
        raise
    _finish(fs, out, record)


def _url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)


def _rm(fs: fsspec.AbstractFileSystem, path: str) -> None:
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass


def _finish(fs: fsspec.AbstractFileSystem, out: str, record: dict[str, Any]) -> None:
    """The commit reached its manifest: drop the old contents, the work folder and, last, the journal."""
    tmp = posixpath.join(out, WORK_DIR)
    _rm(fs, posixpath.join(tmp, record["run"] + ASIDE_SUFFIX))
    _rm(fs, posixpath.join(tmp, record["run"]))
    _rm(fs, posixpath.join(tmp, record["run"] + JOURNAL_SUFFIX))
    remove_if_empty(fs, tmp)


def _roll_back(fs: fsspec.AbstractFileSystem, out: str, record: dict[str, Any]) -> None:
    """Undo a commit that did not reach its manifest: new files out, old entries back (manifest last)."""
    tmp = posixpath.join(out, WORK_DIR)
    aside = posixpath.join(tmp, record["run"] + ASIDE_SUFFIX)
    marker = record.get("marker", MANIFEST_NAME)
    in_aside = set(_names(fs, aside))
    if record.get("mode") == "add":  # only files were added; the old manifest stayed in place
        for name in record["new"]:
            _rm(fs, posixpath.join(out, name))
    elif set(record["old"]) <= in_aside:
        # every old entry was set aside before any new file moved in: what is in the folder now is new
        for name in [*record["new"], marker]:
            _rm(fs, posixpath.join(out, name))
    for name in sorted(in_aside, key=lambda n: n == marker):  # the marker last
        _mv(fs, posixpath.join(aside, name), posixpath.join(out, name))
    _rm(fs, aside)
    _rm(fs, posixpath.join(tmp, record["run"]))
    _rm(fs, posixpath.join(tmp, record["run"] + JOURNAL_SUFFIX))
    remove_if_empty(fs, tmp)


def remove_if_empty(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Remove a folder if it exists and is empty."""
    try:
        if fs.isdir(path) and not fs.ls(path, detail=False):
            fs.rmdir(path)
    except (FileNotFoundError, OSError):
        pass


def _marker_sha(fs: fsspec.AbstractFileSystem, out: str, marker: str) -> str | None:
    try:
        with fs.open(posixpath.join(out, marker), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None


def recover(out_url: str, *, keep: str | None = None) -> list[str]:
    """Repair what dead runs left in ``out_url``: finish or roll back their interrupted commits, remove their
    work folders. Live runs' files are left alone.

    Args:
        out_url: An output folder.
        keep: A run id never to touch (the caller's own).

    Returns:
        One line per repair, for the log.

    Raises:
        InterruptedCommitError: If a journal cannot be read (it names the file).
    """
    fs, out = fsspec.core.url_to_fs(out_url)
    tmp = posixpath.join(out, WORK_DIR)
    done: list[str] = []
    names = _names(fs, tmp)
    for name in [n for n in names if n.endswith(JOURNAL_SUFFIX)]:
        path = posixpath.join(tmp, name)
        record = _read_json(fs, path)
        if record is None or not {"run", "old", "new", "manifest_sha256"} <= set(record):
            raise InterruptedCommitError(f"{_url(fs, path)}: unreadable commit journal; inspect {out_url} by hand")
        owner = _owner_of(record.get("owner"))
        if record["run"] == keep or (owner is not None and owner.alive()):
            continue
        if _marker_sha(fs, out, record.get("marker", MANIFEST_NAME)) == record["manifest_sha256"]:
            _finish(fs, out, record)
            done.append(f"{out_url}: finished the interrupted commit of run {record['run']} (its manifest was written)")
        else:
            _roll_back(fs, out, record)
            done.append(f"{out_url}: rolled back the interrupted commit of run {record['run']}; the previous "
                        "output is restored")
    journals = {n[: -len(JOURNAL_SUFFIX)] for n in _names(fs, tmp) if n.endswith(JOURNAL_SUFFIX)}
    for name in _names(fs, tmp):
        path = posixpath.join(tmp, name)
        if name == keep or name in journals or name.endswith(JOURNAL_SUFFIX) or not fs.isdir(path):
            continue
        if name.endswith(ASIDE_SUFFIX) and name[: -len(ASIDE_SUFFIX)] in journals:
            continue
        if name.endswith(ASIDE_SUFFIX):
            # contents set aside without a journal (a commit of an older version): never deleted here
            done.append(f"{out_url}: {WORK_DIR}/{name} holds contents set aside by an interrupted commit without a "
                        "journal; left as it is, inspect it by hand")
            continue
        run = name
        owner = _owner_of(_read_json(fs, posixpath.join(tmp, run, OWNER_NAME)))
        if owner is not None and owner.alive():
            continue
        _rm(fs, path)
        done.append(f"{out_url}: removed {WORK_DIR}/{name}, left by a run that is no longer running")
    remove_if_empty(fs, tmp)
    return done


def settle(out_url: str, *, timeout: float = 120.0, poll: float = 0.5) -> list[str]:
    """Make a folder readable after an interrupted commit: repair dead runs' commits (:func:`recover`) and wait
    (up to ``timeout`` seconds) for a live one to finish. Readers call it when a folder has no manifest.

    Raises:
        InterruptedCommitError: If a live commit is still in progress after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    fs, out = fsspec.core.url_to_fs(out_url)
    tmp = posixpath.join(out, WORK_DIR)
    while True:
        done = recover(out_url)
        if not any(n.endswith(JOURNAL_SUFFIX) for n in _names(fs, tmp)):
            return done
        if time.monotonic() >= deadline:
            raise InterruptedCommitError(f"{out_url}: a commit by another running process is still in progress")
        time.sleep(poll)
