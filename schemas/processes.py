"""Processes that must not outlive the pipeline driver that started them.

:func:`mark_driver` (called before a pipeline runs) records the driver's process id in the environment its
workers inherit (:data:`DRIVER_ENV`) and starts a small reaper (this module run as ``python -m
schemas.processes <driver pid>``) that, once the driver is gone, kills every process still carrying its id.
:func:`exit_with_driver` (called by every worker ``DoFn``'s ``setup``) adds a watchdog thread inside each Beam
worker. Neither imports torch, so the reaper starts in a fraction of a second.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

_LOCK = threading.Lock()

_WATCHDOG: threading.Thread | None = None
_SHELLS = {"sh", "bash", "dash", "zsh"}

DRIVER_ENV = "STYLEPASTE_DRIVER_PID"
"""Environment variable through which a pipeline's driver tells its worker processes its process id."""


_REAPER: subprocess.Popen | None = None



def mark_driver() -> None:
    """Record this process as the driver of the workers it starts from now on (:data:`DRIVER_ENV`), and start
    (once, on Linux) a reaper: a small detached process that, when this process dies however it dies (SIGKILL
    included), kills every process that still carries this driver's id in its environment. It covers the
    workers that die with their driver on their own (:func:`exit_with_driver`) and those that never ran any of
    our code (a worker still starting when the driver was killed)."""
    global _REAPER
    os.environ[DRIVER_ENV] = str(os.getpid())
    if _REAPER is not None or not os.path.isdir("/proc/self"):
        return
    _REAPER = subprocess.Popen([sys.executable, "-m", "schemas.processes", str(os.getpid())],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True, close_fds=True)


def _parent_of(pid: int) -> int | None:
    """Parent pid of ``pid`` from ``/proc`` (Linux), or ``None``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _name_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return True  # no /proc: the signal test is all there is


def is_beam_worker() -> bool:
    """Whether this process is a Beam SDK worker started by a local runner (``multi_processing`` mode), not the
    driver: such a worker runs ``apache_beam.runners.worker.sdk_worker_main``."""
    return "sdk_worker_main" in (sys.argv[0] if sys.argv else "") and "CONTROL_API_SERVICE_DESCRIPTOR" in os.environ


def exit_with_driver(poll: float = 1.0) -> bool:
    """In a Beam worker process, start (once) a daemon thread that ends the process when its driver dies, so that
    killing ``stylepaste augment`` never leaves workers running. The driver is the process that called
    :func:`mark_driver` before starting the pipeline, else the nearest ancestor that is not a shell (local runners
    start workers through ``sh -c``). Does nothing in the driver itself.

    Returns:
        Whether the watchdog runs in this process.
    """
    global _WATCHDOG
    if not is_beam_worker():
        return False
    with _LOCK:
        if _WATCHDOG is not None:
            return True
        marked = os.environ.get(DRIVER_ENV, "")
        driver = int(marked) if marked.isdigit() and int(marked) != os.getpid() else os.getppid()
        while not marked and _name_of(driver) in _SHELLS:
            up = _parent_of(driver)
            if up is None or up <= 1:
                break
            driver = up
        original_parent = os.getppid()

        def watch() -> None:
            while True:
                time.sleep(poll)
                if not _alive(driver) or (not marked and os.getppid() != original_parent):
                    os._exit(1)

        _WATCHDOG = threading.Thread(target=watch, name="exit-with-driver", daemon=True)
        _WATCHDOG.start()
    return True


def reap(driver: int, poll: float = 1.0) -> int:
    """Wait until ``driver`` is gone, then kill every other process whose environment carries its id.

    Returns:
        How many processes were killed.
    """
    me, tag = os.getpid(), f"{DRIVER_ENV}={driver}".encode()
    while _alive(driver):
        time.sleep(poll)
    killed = 0
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in (me, driver):
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if tag in f.read().split(b"\0"):
                    os.kill(int(name), signal.SIGKILL)
                    killed += 1
        except OSError:
            pass
    return killed


if __name__ == "__main__":
    reap(int(sys.argv[1]))
