"""Crash safety of output folders: atomic writes, the journaled commit killed at every step, dead runs' leftovers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import fsspec
import pytest

from schemas import storage
from schemas.manifest import read_manifest

REPO = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _folder(root: Path, files: dict[str, str], manifest: str | None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    if manifest is not None:
        (root / storage.MANIFEST_NAME).write_text(manifest)


def _contents(root: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(root.iterdir()) if p.name != storage.WORK_DIR}


OLD = {"shard-0.parquet": "old 0", "shard-1.parquet": "old 1", "_rejects.jsonl": "old rejects"}
NEW = {"shard-0.parquet": "new 0", "_rejects.jsonl": "new rejects", "shard-9.parquet": "new 9"}


def _commit_script(out: Path, work: Path, kill_at: int) -> str:
    """A process that commits NEW over OLD and dies (os._exit) at its ``kill_at``-th filesystem step."""
    return textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from schemas import storage
        calls = [0]
        def step(fn):
            def wrapped(*a, **k):
                calls[0] += 1
                if calls[0] == {kill_at}:
                    os._exit(9)
                return fn(*a, **k)
            return wrapped
        storage._mv = step(storage._mv)
        storage.atomic_write = step(storage.atomic_write)
        storage._rm = step(storage._rm)
        storage.commit_replace({str(out)!r}, {str(work)!r}, {sorted(NEW)!r}, "new manifest")
        print("STEPS", calls[0])
    """)


def test_a_commit_killed_at_any_step_leaves_the_old_or_the_new_output(tmp_path):
    steps = None
    kill_at = 1
    outcomes = set()
    while steps is None or kill_at <= steps + 1:
        out = tmp_path / f"out{kill_at}"
        _folder(out, OLD, "old manifest")
        work = out / storage.WORK_DIR / "run-1"
        _folder(work, NEW, None)
        (work / storage.OWNER_NAME).write_text(json.dumps({"host": "x", "pid": 1, "started": 0.0}))
        proc = subprocess.run([sys.executable, "-c", _commit_script(out, work, kill_at)], capture_output=True,
                              text=True, timeout=60)
        if proc.returncode == 0:
            steps = int(proc.stdout.split()[-1])
        elif steps is None:
            assert proc.returncode == 9, proc.stderr
        # a reader (or the next run) repairs the folder; the committer is dead
        storage.settle(str(out), timeout=5)
        now = _contents(out)
        if now.get(storage.MANIFEST_NAME) == "new manifest":
            assert now == {**NEW, storage.MANIFEST_NAME: "new manifest"}, kill_at
            outcomes.add("new")
        else:
            assert now == {**OLD, storage.MANIFEST_NAME: "old manifest"}, kill_at
            outcomes.add("old")
        assert not (out / storage.WORK_DIR).exists(), kill_at
        kill_at += 1
    assert outcomes == {"old", "new"} and steps >= 8


def test_a_live_commit_is_not_touched_and_a_reader_waits_for_it(tmp_path):
    out = tmp_path / "out"
    _folder(out, OLD, None)  # the old manifest is already set aside ...
    tmp = out / storage.WORK_DIR
    (tmp / "run-2.previous").mkdir(parents=True)
    (tmp / "run-2.previous" / storage.MANIFEST_NAME).write_text("old manifest")
    (tmp / "run-2.commit.json").write_text(json.dumps({
        "version": 1, "run": "run-2", "old": [storage.MANIFEST_NAME], "new": [], "manifest_sha256": "0" * 64,
        "owner": {"host": socket.gethostname(), "pid": os.getpid(), "started": 0.0}}))  # ... by a live process
    assert storage.recover(str(out)) == []
    with pytest.raises(storage.InterruptedCommitError, match="still in progress"):
        storage.settle(str(out), timeout=0.2, poll=0.05)
    # once its owner is gone, a reader restores the old output
    record = json.loads((tmp / "run-2.commit.json").read_text())
    record["owner"]["pid"] = _dead_pid()
    (tmp / "run-2.commit.json").write_text(json.dumps(record))
    with pytest.raises(ValueError):  # "old manifest" is not JSON, but it is back and is what the reader opens
        read_manifest(str(out))
    assert (out / storage.MANIFEST_NAME).read_text() == "old manifest"


def test_dead_runs_work_folders_are_removed_live_ones_kept(tmp_path):
    out = tmp_path / "out"
    tmp = out / storage.WORK_DIR
    for run, pid in (("dead", _dead_pid()), ("live", os.getpid())):
        (tmp / run).mkdir(parents=True)
        (tmp / run / "part.parquet").write_text("x")
        (tmp / run / storage.OWNER_NAME).write_text(json.dumps(
            {"host": socket.gethostname(), "pid": pid, "started": 0.0}))
    (tmp / "old.previous").mkdir()  # set aside by a commit without a journal: never deleted
    lines = storage.recover(str(out))
    assert not (tmp / "dead").exists() and (tmp / "live" / "part.parquet").exists()
    assert (tmp / "old.previous").exists()
    assert any("dead" in line for line in lines) and any("old.previous" in line for line in lines)


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "model.pt"
    storage.atomic_write(str(target), b"good")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        storage.atomic_write(str(target), b"new and longer")
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left


def test_atomic_write_on_an_object_store_url():
    url = "memory://storage-test/a/b.json"
    storage.atomic_write(url, b"{}")
    with fsspec.open(url, "rb") as f:
        assert f.read() == b"{}"
