"""Where torch runs: the one device resolver and the one thread policy of worker processes.

Every stage takes ``--device auto|cpu|cuda|cuda:N`` and resolves it here; every Beam DoFn or model handler that
runs torch takes its threads here, so that worker processes side by side on the same cores do not oversubscribe
them and float reductions do not depend on the core count.
"""

from __future__ import annotations

import os
import socket
import threading

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
