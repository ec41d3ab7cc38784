"""Deterministic weight fills used to check the models against published reference logits.

The reference files in ``../shared/checkpoints`` (``*_reference.pt``) hold an input, the logits
of the public architectures under a documented fill of their state dict, and per-key checksums.
The fills are pure functions of the key names and shapes, so any reimplementation can be checked
without the real (non-downloadable) checkpoints:

* ``lecun_randbn_v1`` (primary): conv/linear weights ``randn / sqrt(fan_in)``, BN gamma
  ``1 + 0.1 randn``, biases, BN beta and running means ``0.1 randn``, running variances
  ``0.5 + rand``.
* ``n002_idbn`` (secondary): conv/linear weights ``0.02 randn``; BN identity; biases zero.

Both draw from one ``torch.Generator`` seeded with 0, once per key (``num_batches_tracked``
excepted), iterating ``sorted(keys)``. Fill the keys of the *manifest* (e.g. R101's ``dsn.*``
keys take part in the draw order) and load the result into the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

FILLS: tuple[str, ...] = ("lecun_randbn_v1", "n002_idbn")

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "int64": torch.int64}


def manifest_entries(path: str | Path) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """Read ``keys_in_module_registration_order`` from a state-dict manifest.

    Args:
        path: A ``*_state_dict_manifest.json`` file.

    Returns:
        ``(key, shape, dtype)`` in registration (= ``state_dict()``) order.
    """
    data = json.loads(Path(path).read_text())
    try:
        rows = data["keys_in_module_registration_order"]
    except KeyError:
        raise ValueError(f"{path}: no 'keys_in_module_registration_order' list in this manifest") from None
    out = []
    for row in rows:
        if row["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: key {row['name']!r} has dtype {row['dtype']!r}; allowed: {sorted(_DTYPES)}")
        out.append((row["name"], tuple(int(s) for s in row["shape"]), _DTYPES[row["dtype"]]))
    return out


def reference_fill(
    entries: Iterable[tuple[str, tuple[int, ...], torch.dtype]], fill: str = "lecun_randbn_v1"
) -> dict[str, torch.Tensor]:
    """Build a state dict from key names and shapes with a documented deterministic fill.

    Args:
        entries: ``(key, shape, dtype)`` triples, keys without a ``module.`` prefix.
        fill: One of :data:`FILLS`.

    Returns:
        ``{key: tensor}`` in the order of ``entries``.

    Raises:
        ValueError: Unknown fill, or a key whose suffix the fill does not cover.
    """
    if fill not in FILLS:
        raise ValueError(f"unknown fill {fill!r}; allowed: {', '.join(FILLS)}")
    entries = list(entries)
    out = {name: torch.empty(shape, dtype=dtype) for name, shape, dtype in entries}
    g = torch.Generator(device="cpu")
    g.manual_seed(0)
    primary = fill == "lecun_randbn_v1"
    for name in sorted(out):
        t = out[name]
        shape = tuple(t.shape)
        if name.endswith(".num_batches_tracked"):
            t.zero_()
            continue
        if name.endswith(".weight") and t.dim() >= 2:
            v = torch.randn(shape, generator=g, dtype=torch.float32)
            v = v * (1.0 / math.sqrt(math.prod(shape[1:]))) if primary else v * 0.02
        elif name.endswith(".weight"):
            v = 1.0 + 0.1 * torch.randn(shape, generator=g, dtype=torch.float32) if primary else torch.ones(shape)
        elif name.endswith((".bias", ".running_mean")):
            v = 0.1 * torch.randn(shape, generator=g, dtype=torch.float32) if primary else torch.zeros(shape)
        elif name.endswith(".running_var"):
            v = 0.5 + torch.rand(shape, generator=g, dtype=torch.float32) if primary else torch.ones(shape)
        else:
            raise ValueError(f"fill {fill!r} does not know how to fill key {name!r}")
        t.copy_(v)
    return out


def param_checksums(state_dict: Mapping[str, torch.Tensor]) -> dict[str, dict[str, object]]:
    """Per-key checksums in the reference files' format.

    Args:
        state_dict: ``{key: tensor}``.

    Returns:
        ``{key: {"sum": float, "abs_sum": float, "first3": [float, ...]}}`` computed in float64.
    """
    out: dict[str, dict[str, object]] = {}
    for name, t in state_dict.items():
        d = t.detach().to(torch.float64).reshape(-1)
        out[name] = {"sum": float(d.sum()), "abs_sum": float(d.abs().sum()), "first3": d[:3].tolist()}
    return out
