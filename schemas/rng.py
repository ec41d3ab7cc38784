"""Deterministic, key-addressed random number generation.

Every random choice in stylepaste comes from a generator seeded by the run's seed and a stable hash of the
element's key (frame id, annotation id), so results never depend on worker count, runner or order.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_hash(key: object) -> int:
    """Hash a key to a 63-bit integer that is identical across processes and Python versions.

    Unlike :func:`hash`, the value does not depend on ``PYTHONHASHSEED``.

    Args:
        key: A string, integer, bytes, or tuple of these.

    Returns:
        Non-negative integer below 2**63.

    Raises:
        TypeError: If the key has an unsupported type.
    """
    digest = hashlib.blake2b(_key_bytes(key), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def _key_bytes(key: object) -> bytes:
    if isinstance(key, bytes):
        return b"b" + key
    if isinstance(key, str):
        return b"s" + key.encode("utf-8")
    if isinstance(key, bool):
        return b"o" + bytes([int(key)])
    if isinstance(key, (int, np.integer)):
        return b"i" + str(int(key)).encode("ascii")
    if isinstance(key, tuple):
        parts = [_key_bytes(k) for k in key]
        return b"t" + b"".join(len(p).to_bytes(4, "little") + p for p in parts)
    raise TypeError(f"stable_hash supports str, int, bytes and tuples of them, got {type(key).__name__}")


def rng_for(seed: int, key: object) -> np.random.Generator:
    """Return the generator for one element: ``np.random.default_rng([seed, stable_hash(key)])``.

    Args:
        seed: The run's seed (non-negative integer).
        key: The element's id (frame id, annotation id, or a tuple such as ``("paste", frame_id)``).

    Returns:
        A fresh :class:`numpy.random.Generator`.

    Raises:
        ValueError: If the seed is negative.
    """
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return np.random.default_rng([int(seed), stable_hash(key)])
