"""Where torch runs: the one device resolver and the one thread policy of worker processes.

Every stage takes ``--device auto|cpu|cuda|cuda:N`` and resolves it here; every Beam DoFn or model handler that
runs torch takes its threads here, so that worker processes side by side on the same cores do not oversubscribe
them and float reductions do not depend on the core count.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import torch

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
"""Device names every stage accepts (and ``cuda:N``)."""


def check_device_name(device: str) -> str:
    """Return ``device`` if it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ValueError: For any other value.
    """
    if isinstance(device, str) and (device in DEVICES or (device.startswith("cuda:") and device[5:].isdigit())):
        return device
    raise ValueError(f"device must be one of {list(DEVICES)} or 'cuda:N', got {device!r}")


def resolve_device(device: str) -> torch.device:
    """Map ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` to a torch device available here.

    ``auto`` takes the first GPU when torch sees one, else the CPU.

    Raises:
        ValueError: For another value.
        RuntimeError: If a CUDA device is asked for and none (or not that many) is available.
    """
    check_device_name(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was requested but this machine has no usable CUDA GPU "
                           "(torch.cuda.is_available() is False); use --device cpu or --device auto")
    index = int(device[5:]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise RuntimeError(f"device {device!r} was requested but only {torch.cuda.device_count()} GPU(s) exist")
    return torch.device(device)


def process_id() -> tuple[str, int]:
    """``(host name, pid)`` of this process: tells a worker process from the one that launched a pipeline."""
    return socket.gethostname(), os.getpid()


_LOCK = threading.Lock()
_USERS = 0
_SAVED: int | None = None


def acquire_torch_threads(n: int | None = 1, *, launcher: tuple[str, int] | None = None) -> bool:
    """Make torch use ``n`` intra-op threads while a worker-side user (a DoFn, a model handler) lives.

    Reference-counted: the first user saves the process's setting, :func:`release_torch_threads` of the last one
    restores it, so an in-process runner gives the caller its setting back. With ``launcher`` (the
    :func:`process_id` of the process that built the pipeline) the launching process itself is left alone.

    Args:
        n: Threads (``None``: leave torch's default).
        launcher: Process that launched the pipeline, or ``None`` to apply everywhere.

    Returns:
        Whether the setting was taken (pass the same answer to :func:`release_torch_threads`).
    """
    global _USERS, _SAVED
    if n is None or (launcher is not None and process_id() == launcher):
        return False
    if int(n) < 1:
        raise ValueError(f"torch threads must be >= 1, got {n}")
    with _LOCK:
        if _USERS == 0:
            _SAVED = torch.get_num_threads()
        _USERS += 1
        torch.set_num_threads(int(n))
    return True


def release_torch_threads(taken: bool = True) -> None:
    """Undo one :func:`acquire_torch_threads` that returned ``taken`` (call from ``DoFn.teardown``)."""
    global _USERS, _SAVED
    if not taken:
        return
    with _LOCK:
        if _USERS == 0:
            return
        _USERS -= 1
        if _USERS == 0 and _SAVED is not None:
            torch.set_num_threads(_SAVED)
            _SAVED = None


_WATCHDOG: threading.Thread | None = None
_SHELLS = {"sh", "bash", "dash", "zsh"}

DRIVER_ENV = "STYLEPASTE_DRIVER_PID"
"""Environment variable through which a pipeline's driver tells its worker processes its process id."""


_REAPER: subprocess.Popen | None = None

_REAPER_CODE = r"""
import os, signal, sys, time
driver, me = int(sys.argv[1]), os.getpid()
tag = f"{sys.argv[2]}={driver}".encode()
def alive(pid):
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
        return False
while alive(driver):
    time.sleep(1.0)
for name in os.listdir("/proc"):
    if not name.isdigit() or int(name) in (me, driver):
        continue
    try:
        with open(f"/proc/{name}/environ", "rb") as f:
            if tag in f.read().split(b"\0"):
                os.kill(int(name), signal.SIGKILL)
    except OSError:
        pass
"""


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
    _REAPER = subprocess.Popen([sys.executable, "-c", _REAPER_CODE, str(os.getpid()), DRIVER_ENV],
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
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
